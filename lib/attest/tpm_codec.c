/*
 * lib/attest/tpm_codec.c - the TPM 2.0 structures the verifier reads from
 * untrusted hosts: TPM2B_PUBLIC (RSA and ECC), TPMS_ATTEST of a quote,
 * TPMT_SIGNATURE and TPML_PCR_SELECTION, plus the text form of a PCR
 * selection ("sha256:0,1,16"). Byte layouts are TPM 2.0 Part 2 (§12.2
 * TPMT_PUBLIC, §10.12 TPMS_ATTEST, §11.3 TPMT_SIGNATURE, §10.9
 * TPML_PCR_SELECTION), summarised in docs/attest.md. Pure: bytes in, struct
 * out, no crypto, no I/O. Its one safety rule: every byte is read through
 * the bounded cursor, every length is bounded by the TPM's own maximum, and
 * a structure must fill its buffer exactly, so parse-then-marshal gives the
 * input back (the fuzz harnesses' oracle).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include "attest/attest.h"

#include <stdlib.h>
#include <string.h>

/* TPM limits (Part 2; the reference implementation's values). */
#define TPM_MAX_DIGEST 64u           /* sizeof(TPMU_HA) */
#define TPM_MAX_NAME (2u + 64u)      /* sizeof(TPMU_NAME) */
#define TPM_MAX_RSA_BYTES 512u       /* TPM2B_PUBLIC_KEY_RSA: 4096 bits */
#define TPM_MAX_ECC_BYTES 66u        /* TPM2B_ECC_PARAMETER: P-521 */
#define TPM_MAX_PUBLIC 1024u         /* bound on a TPMT_PUBLIC we accept */

#define TPM_GENERATED_VALUE 0xff544347u
#define TPM_ST_ATTEST_QUOTE 0x8018u

/* ---- helpers ---------------------------------------------------------- */

static bool get_tpm2b(vmenc_cbs *c, size_t max, const uint8_t **out, size_t *out_len) {
    vmenc_cbs b;
    if (!vmenc_cbs_get_u16_length_prefixed(c, &b))
        return false;
    if (vmenc_cbs_len(&b) > max)
        return false;
    *out = vmenc_cbs_data(&b);
    *out_len = vmenc_cbs_len(&b);
    return true;
}

static void add_tpm2b(vmenc_cbb *b, const uint8_t *data, size_t len) {
    if (len > 0xffffu) {
        b->err = b->err != VMENC_OK ? b->err : VMENC_E_TOO_LARGE;
        return;
    }
    vmenc_cbb_add_u16(b, (uint16_t)len);
    vmenc_cbb_add_bytes(b, data, len);
}

static size_t hash_size(uint16_t alg) {
    switch (alg) {
    case ATTEST_ALG_SHA1: return 20;
    case ATTEST_ALG_SHA256: return 32;
    case ATTEST_ALG_SHA384: return 48;
    case ATTEST_ALG_SHA512: return 64;
    default: return 0;
    }
}

static bool is_sym_alg(uint16_t alg) {
    return alg == ATTEST_ALG_AES || alg == 0x0013u /* SM4 */ || alg == 0x0026u /* CAMELLIA */;
}

/* RSA schemes: RSASSA, RSAPSS, OAEP carry a hash; RSAES carries nothing. */
static int rsa_scheme_kind(uint16_t s) {
    switch (s) {
    case ATTEST_ALG_NULL: return 0;
    case 0x0015u /* RSAES */: return 0;
    case ATTEST_ALG_RSASSA: case ATTEST_ALG_RSAPSS: case 0x0017u /* OAEP */: return 1;
    default: return -1;
    }
}

/* ECC schemes with one hash (ECDAA, which adds a count, is not accepted). */
static int ecc_scheme_kind(uint16_t s) {
    switch (s) {
    case ATTEST_ALG_NULL: return 0;
    case ATTEST_ALG_ECDSA: case 0x0019u /* ECDH */: case 0x001bu /* SM2 */:
    case 0x001cu /* ECSCHNORR */: case 0x001du /* ECMQV */: return 1;
    default: return -1;
    }
}

/* KDF schemes of TPMT_KDF_SCHEME: MGF1, KDF1_SP800_56A, KDF2, KDF1_SP800_108. */
static bool is_kdf(uint16_t s) {
    return s == 0x0007u || s == 0x0020u || s == 0x0021u || s == 0x0022u;
}

/* ---- TPM2B_PUBLIC --------------------------------------------------------- */

static vmenc_status parse_tpmt_public(vmenc_cbs *c, attest_public *p) {
    VMENC_ENSURE(vmenc_cbs_get_u16(c, &p->type) && vmenc_cbs_get_u16(c, &p->name_alg) &&
                     vmenc_cbs_get_u32(c, &p->attributes),
                 VMENC_E_TRUNCATED);
    VMENC_ENSURE(get_tpm2b(c, TPM_MAX_DIGEST, &p->auth_policy, &p->auth_policy_len), VMENC_E_PARSE);
    VMENC_ENSURE(p->type == ATTEST_ALG_RSA || p->type == ATTEST_ALG_ECC, VMENC_E_BAD_ALGORITHM);
    /* nameAlg: a hash (names are nameAlg || H), or NULL is not accepted here. */
    VMENC_ENSURE(hash_size(p->name_alg) != 0, VMENC_E_BAD_ALGORITHM);
    /* TPMT_SYM_DEF_OBJECT */
    VMENC_ENSURE(vmenc_cbs_get_u16(c, &p->sym_alg), VMENC_E_TRUNCATED);
    if (p->sym_alg != ATTEST_ALG_NULL) {
        VMENC_ENSURE(is_sym_alg(p->sym_alg), VMENC_E_BAD_ALGORITHM);
        VMENC_ENSURE(vmenc_cbs_get_u16(c, &p->sym_bits) && vmenc_cbs_get_u16(c, &p->sym_mode),
                     VMENC_E_TRUNCATED);
    }
    VMENC_ENSURE(vmenc_cbs_get_u16(c, &p->scheme), VMENC_E_TRUNCATED);
    int kind = p->type == ATTEST_ALG_RSA ? rsa_scheme_kind(p->scheme) : ecc_scheme_kind(p->scheme);
    VMENC_ENSURE(kind >= 0, VMENC_E_BAD_ALGORITHM);
    if (kind == 1)
        VMENC_ENSURE(vmenc_cbs_get_u16(c, &p->scheme_hash), VMENC_E_TRUNCATED);
    if (p->type == ATTEST_ALG_RSA) {
        VMENC_ENSURE(vmenc_cbs_get_u16(c, &p->rsa_bits) && vmenc_cbs_get_u32(c, &p->rsa_exponent),
                     VMENC_E_TRUNCATED);
        VMENC_ENSURE(get_tpm2b(c, TPM_MAX_RSA_BYTES, &p->rsa_modulus, &p->rsa_modulus_len),
                     VMENC_E_PARSE);
    } else {
        VMENC_ENSURE(vmenc_cbs_get_u16(c, &p->ecc_curve) && vmenc_cbs_get_u16(c, &p->ecc_kdf),
                     VMENC_E_TRUNCATED);
        if (p->ecc_kdf != ATTEST_ALG_NULL) {
            VMENC_ENSURE(is_kdf(p->ecc_kdf), VMENC_E_BAD_ALGORITHM);
            VMENC_ENSURE(vmenc_cbs_get_u16(c, &p->ecc_kdf_hash), VMENC_E_TRUNCATED);
        }
        VMENC_ENSURE(get_tpm2b(c, TPM_MAX_ECC_BYTES, &p->ecc_x, &p->ecc_x_len) &&
                         get_tpm2b(c, TPM_MAX_ECC_BYTES, &p->ecc_y, &p->ecc_y_len),
                     VMENC_E_PARSE);
    }
    return VMENC_OK;
}

vmenc_status attest_public_parse(const uint8_t *in, size_t in_len, attest_public *out) {
    VMENC_ENSURE(in != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vmenc_cbs c, area;
    vmenc_cbs_init(&c, in, in_len);
    VMENC_ENSURE(vmenc_cbs_get_u16_length_prefixed(&c, &area), VMENC_E_TRUNCATED);
    VMENC_ENSURE(vmenc_cbs_len(&c) == 0, VMENC_E_TRAILING_DATA);
    VMENC_ENSURE(vmenc_cbs_len(&area) <= TPM_MAX_PUBLIC, VMENC_E_TOO_LARGE);
    attest_public p;
    memset(&p, 0, sizeof p);
    p.tpmt = vmenc_cbs_data(&area);
    p.tpmt_len = vmenc_cbs_len(&area);
    VMENC_GUARD(parse_tpmt_public(&area, &p));
    VMENC_ENSURE(vmenc_cbs_len(&area) == 0, VMENC_E_TRAILING_DATA);
    *out = p;
    return VMENC_OK;
}

static void marshal_tpmt_public(vmenc_cbb *b, const attest_public *p) {
    vmenc_cbb_add_u16(b, p->type);
    vmenc_cbb_add_u16(b, p->name_alg);
    vmenc_cbb_add_u32(b, p->attributes);
    add_tpm2b(b, p->auth_policy, p->auth_policy_len);
    vmenc_cbb_add_u16(b, p->sym_alg);
    if (p->sym_alg != ATTEST_ALG_NULL) {
        vmenc_cbb_add_u16(b, p->sym_bits);
        vmenc_cbb_add_u16(b, p->sym_mode);
    }
    vmenc_cbb_add_u16(b, p->scheme);
    int kind = p->type == ATTEST_ALG_RSA ? rsa_scheme_kind(p->scheme) : ecc_scheme_kind(p->scheme);
    if (kind == 1)
        vmenc_cbb_add_u16(b, p->scheme_hash);
    if (p->type == ATTEST_ALG_RSA) {
        vmenc_cbb_add_u16(b, p->rsa_bits);
        vmenc_cbb_add_u32(b, p->rsa_exponent);
        add_tpm2b(b, p->rsa_modulus, p->rsa_modulus_len);
    } else {
        vmenc_cbb_add_u16(b, p->ecc_curve);
        vmenc_cbb_add_u16(b, p->ecc_kdf);
        if (p->ecc_kdf != ATTEST_ALG_NULL)
            vmenc_cbb_add_u16(b, p->ecc_kdf_hash);
        add_tpm2b(b, p->ecc_x, p->ecc_x_len);
        add_tpm2b(b, p->ecc_y, p->ecc_y_len);
    }
}

vmenc_status attest_public_marshal(const attest_public *pub, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(pub != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(pub->type == ATTEST_ALG_RSA || pub->type == ATTEST_ALG_ECC, VMENC_E_BAD_ALGORITHM);
    vmenc_cbb b;
    VMENC_GUARD(vmenc_cbb_init(&b, 320));
    size_t mark = vmenc_cbb_begin_prefix(&b, 2);
    marshal_tpmt_public(&b, pub);
    vmenc_cbb_end_prefix(&b, mark, 2);
    return vmenc_cbb_finish(&b, out, out_len);
}

/* ---- TPML_PCR_SELECTION ------------------------------------------------- */

static vmenc_status parse_pcr_sel(vmenc_cbs *c, attest_pcr_sel *s) {
    VMENC_ENSURE(vmenc_cbs_get_u32(c, &s->num_banks), VMENC_E_TRUNCATED);
    VMENC_ENSURE(s->num_banks <= ATTEST_PCR_BANKS_MAX, VMENC_E_TOO_LARGE);
    for (uint32_t i = 0; i < s->num_banks; i++) {
        VMENC_ENSURE(vmenc_cbs_get_u16(c, &s->banks[i].hash) &&
                         vmenc_cbs_get_u8(c, &s->banks[i].size_of_select),
                     VMENC_E_TRUNCATED);
        VMENC_ENSURE(s->banks[i].size_of_select <= ATTEST_PCR_SELECT_MAX, VMENC_E_TOO_LARGE);
        VMENC_ENSURE(vmenc_cbs_copy_bytes(c, s->banks[i].select, s->banks[i].size_of_select),
                     VMENC_E_TRUNCATED);
    }
    return VMENC_OK;
}

static void marshal_pcr_sel(vmenc_cbb *b, const attest_pcr_sel *s) {
    vmenc_cbb_add_u32(b, s->num_banks);
    for (uint32_t i = 0; i < s->num_banks && i < ATTEST_PCR_BANKS_MAX; i++) {
        vmenc_cbb_add_u16(b, s->banks[i].hash);
        uint8_t n = s->banks[i].size_of_select;
        if (n > ATTEST_PCR_SELECT_MAX)
            n = ATTEST_PCR_SELECT_MAX;
        vmenc_cbb_add_u8(b, n);
        vmenc_cbb_add_bytes(b, s->banks[i].select, n);
    }
}

bool attest_pcr_sel_equal(const attest_pcr_sel *a, const attest_pcr_sel *b) {
    if (a == NULL || b == NULL || a->num_banks != b->num_banks || a->num_banks > ATTEST_PCR_BANKS_MAX)
        return false;
    for (uint32_t i = 0; i < a->num_banks; i++) {
        if (a->banks[i].hash != b->banks[i].hash ||
            a->banks[i].size_of_select != b->banks[i].size_of_select ||
            a->banks[i].size_of_select > ATTEST_PCR_SELECT_MAX ||
            memcmp(a->banks[i].select, b->banks[i].select, a->banks[i].size_of_select) != 0)
            return false;
    }
    return true;
}

size_t attest_pcr_sel_values_len(const attest_pcr_sel *sel) {
    if (sel == NULL || sel->num_banks > ATTEST_PCR_BANKS_MAX)
        return 0;
    size_t total = 0;
    for (uint32_t i = 0; i < sel->num_banks; i++) {
        size_t hs = hash_size(sel->banks[i].hash);
        if (hs == 0)
            return 0;
        for (unsigned j = 0; j < sel->banks[i].size_of_select && j < ATTEST_PCR_SELECT_MAX; j++)
            total += hs * (size_t)__builtin_popcount(sel->banks[i].select[j]);
    }
    return total;
}

static uint16_t bank_by_name(const char *s, size_t len) {
    static const struct { const char *name; uint16_t alg; } banks[] = {
        {"sha1", ATTEST_ALG_SHA1}, {"sha256", ATTEST_ALG_SHA256},
        {"sha384", ATTEST_ALG_SHA384}, {"sha512", ATTEST_ALG_SHA512},
    };
    for (size_t i = 0; i < VMENC_ARRAY_LEN(banks); i++)
        if (strlen(banks[i].name) == len && memcmp(banks[i].name, s, len) == 0)
            return banks[i].alg;
    return 0;
}

vmenc_status attest_pcr_sel_parse(const char *text, attest_pcr_sel *out) {
    VMENC_ENSURE(text != NULL && out != NULL, VMENC_E_INVALID_ARG);
    attest_pcr_sel s;
    memset(&s, 0, sizeof s);
    const char *p = text;
    for (;;) {
        VMENC_ENSURE(s.num_banks < ATTEST_PCR_BANKS_MAX, VMENC_E_PARSE);
        const char *colon = strchr(p, ':');
        VMENC_ENSURE(colon != NULL, VMENC_E_PARSE);
        uint16_t alg = bank_by_name(p, (size_t)(colon - p));
        VMENC_ENSURE(alg != 0, VMENC_E_PARSE);
        for (uint32_t i = 0; i < s.num_banks; i++)
            VMENC_ENSURE(s.banks[i].hash != alg, VMENC_E_PARSE);
        uint32_t bits = 0;
        p = colon + 1;
        for (;;) {
            VMENC_ENSURE(*p >= '0' && *p <= '9', VMENC_E_PARSE);
            unsigned v = 0;
            int digits = 0;
            while (*p >= '0' && *p <= '9') {
                v = v * 10u + (unsigned)(*p - '0');
                p++;
                VMENC_ENSURE(++digits <= 2, VMENC_E_PARSE);
            }
            VMENC_ENSURE(v < ATTEST_PCR_MAX, VMENC_E_PARSE);
            VMENC_ENSURE((bits & (1u << v)) == 0, VMENC_E_PARSE);
            bits |= 1u << v;
            if (*p != ',')
                break;
            p++;
        }
        s.banks[s.num_banks].hash = alg;
        s.banks[s.num_banks].size_of_select = (bits >> 24) ? 4 : 3;
        for (unsigned j = 0; j < 4; j++)
            s.banks[s.num_banks].select[j] = (uint8_t)(bits >> (8 * j));
        s.num_banks++;
        if (*p == '\0')
            break;
        VMENC_ENSURE(*p == '+', VMENC_E_PARSE);
        p++;
    }
    *out = s;
    return VMENC_OK;
}

/* ---- TPMS_ATTEST (quote) ------------------------------------------------ */

vmenc_status attest_quote_parse(const uint8_t *in, size_t in_len, attest_quote *out) {
    VMENC_ENSURE(in != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vmenc_cbs c;
    vmenc_cbs_init(&c, in, in_len);
    attest_quote q;
    memset(&q, 0, sizeof q);
    VMENC_ENSURE(vmenc_cbs_get_u32(&c, &q.magic) && vmenc_cbs_get_u16(&c, &q.type), VMENC_E_TRUNCATED);
    VMENC_ENSURE(q.magic == TPM_GENERATED_VALUE && q.type == TPM_ST_ATTEST_QUOTE, VMENC_E_BAD_MAGIC);
    VMENC_ENSURE(get_tpm2b(&c, TPM_MAX_NAME, &q.qualified_signer, &q.qualified_signer_len),
                 VMENC_E_PARSE);
    VMENC_ENSURE(get_tpm2b(&c, ATTEST_NONCE_MAX, &q.extra_data, &q.extra_data_len), VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_get_u64(&c, &q.clock) && vmenc_cbs_get_u32(&c, &q.reset_count) &&
                     vmenc_cbs_get_u32(&c, &q.restart_count) && vmenc_cbs_get_u8(&c, &q.safe) &&
                     vmenc_cbs_get_u64(&c, &q.firmware_version),
                 VMENC_E_TRUNCATED);
    VMENC_GUARD(parse_pcr_sel(&c, &q.pcr_select));
    VMENC_ENSURE(get_tpm2b(&c, TPM_MAX_DIGEST, &q.pcr_digest, &q.pcr_digest_len), VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_len(&c) == 0, VMENC_E_TRAILING_DATA);
    *out = q;
    return VMENC_OK;
}

vmenc_status attest_quote_marshal(const attest_quote *q, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(q != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(q->pcr_select.num_banks <= ATTEST_PCR_BANKS_MAX, VMENC_E_INVALID_ARG);
    vmenc_cbb b;
    VMENC_GUARD(vmenc_cbb_init(&b, 160));
    vmenc_cbb_add_u32(&b, q->magic);
    vmenc_cbb_add_u16(&b, q->type);
    add_tpm2b(&b, q->qualified_signer, q->qualified_signer_len);
    add_tpm2b(&b, q->extra_data, q->extra_data_len);
    vmenc_cbb_add_u64(&b, q->clock);
    vmenc_cbb_add_u32(&b, q->reset_count);
    vmenc_cbb_add_u32(&b, q->restart_count);
    vmenc_cbb_add_u8(&b, q->safe);
    vmenc_cbb_add_u64(&b, q->firmware_version);
    marshal_pcr_sel(&b, &q->pcr_select);
    add_tpm2b(&b, q->pcr_digest, q->pcr_digest_len);
    return vmenc_cbb_finish(&b, out, out_len);
}

/* ---- TPMT_SIGNATURE ------------------------------------------------------- */

vmenc_status attest_sig_parse(const uint8_t *in, size_t in_len, attest_sig *out) {
    VMENC_ENSURE(in != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vmenc_cbs c;
    vmenc_cbs_init(&c, in, in_len);
    attest_sig s;
    memset(&s, 0, sizeof s);
    VMENC_ENSURE(vmenc_cbs_get_u16(&c, &s.alg), VMENC_E_TRUNCATED);
    switch (s.alg) {
    case ATTEST_ALG_RSASSA:
    case ATTEST_ALG_RSAPSS:
        VMENC_ENSURE(vmenc_cbs_get_u16(&c, &s.hash), VMENC_E_TRUNCATED);
        VMENC_ENSURE(get_tpm2b(&c, TPM_MAX_RSA_BYTES, &s.rsa_sig, &s.rsa_sig_len), VMENC_E_PARSE);
        break;
    case ATTEST_ALG_ECDSA:
        VMENC_ENSURE(vmenc_cbs_get_u16(&c, &s.hash), VMENC_E_TRUNCATED);
        VMENC_ENSURE(get_tpm2b(&c, TPM_MAX_ECC_BYTES, &s.ecdsa_r, &s.ecdsa_r_len) &&
                         get_tpm2b(&c, TPM_MAX_ECC_BYTES, &s.ecdsa_s, &s.ecdsa_s_len),
                     VMENC_E_PARSE);
        break;
    default:
        return VMENC_E_BAD_ALGORITHM;
    }
    VMENC_ENSURE(vmenc_cbs_len(&c) == 0, VMENC_E_TRAILING_DATA);
    *out = s;
    return VMENC_OK;
}

vmenc_status attest_sig_marshal(const attest_sig *sig, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(sig != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    vmenc_cbb b;
    VMENC_GUARD(vmenc_cbb_init(&b, 300));
    vmenc_cbb_add_u16(&b, sig->alg);
    vmenc_cbb_add_u16(&b, sig->hash);
    if (sig->alg == ATTEST_ALG_ECDSA) {
        add_tpm2b(&b, sig->ecdsa_r, sig->ecdsa_r_len);
        add_tpm2b(&b, sig->ecdsa_s, sig->ecdsa_s_len);
    } else if (sig->alg == ATTEST_ALG_RSASSA || sig->alg == ATTEST_ALG_RSAPSS) {
        add_tpm2b(&b, sig->rsa_sig, sig->rsa_sig_len);
    } else {
        vmenc_cbb_cleanup(&b);
        return VMENC_E_BAD_ALGORITHM;
    }
    return vmenc_cbb_finish(&b, out, out_len);
}

/* ---- AK blob ("VMAK" v1: TPM2B_PUBLIC || TPM2B_PRIVATE) ------------------ */

vmenc_status attest_ak_blob_public(const uint8_t *blob, size_t blob_len, const uint8_t **out_public,
                                   size_t *out_public_len) {
    VMENC_ENSURE(blob != NULL && out_public != NULL && out_public_len != NULL, VMENC_E_INVALID_ARG);
    vmenc_cbs c, pub, priv;
    uint32_t magic;
    uint8_t version;
    vmenc_cbs_init(&c, blob, blob_len);
    VMENC_ENSURE(vmenc_cbs_get_u32(&c, &magic) && vmenc_cbs_get_u8(&c, &version), VMENC_E_TRUNCATED);
    VMENC_ENSURE(magic == 0x564d414bu /* "VMAK" */, VMENC_E_BAD_MAGIC);
    VMENC_ENSURE(version == 1, VMENC_E_BAD_VERSION);
    const uint8_t *pub_start = vmenc_cbs_data(&c);
    VMENC_ENSURE(vmenc_cbs_get_u16_length_prefixed(&c, &pub), VMENC_E_TRUNCATED);
    size_t pub_len = 2 + vmenc_cbs_len(&pub);
    VMENC_ENSURE(vmenc_cbs_get_u16_length_prefixed(&c, &priv), VMENC_E_TRUNCATED);
    VMENC_ENSURE(vmenc_cbs_len(&c) == 0, VMENC_E_TRAILING_DATA);
    *out_public = pub_start;
    *out_public_len = pub_len;
    return VMENC_OK;
}
