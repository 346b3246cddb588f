/*
 * tests/test_attest.c - the verifier of lib/attest without a TPM: real
 * swtpm/tpm2-tools output (tests/tpm/vectors: RSA and ECC AKs, quotes of
 * sha256:0,1,16 on a fresh TPM whose PCRs are zero) and quotes the test
 * signs itself with software keys for what swtpm does not make (RSA-PSS,
 * another attestation type, a bad magic, other hashes). Every check of
 * attest_quote_verify is made to refuse by name; every single-byte change
 * of a real quote or signature is refused; every truncation of a TPM
 * structure fails to parse; the AK attribute and algorithm rules; the PCR
 * selection text; PCR fold and names against independent computations.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "attest/attest.h"
#include "attest/attest_internal.h"

#define VEC VMENC_SOURCE_DIR "/tests/tpm/vectors/"
#define SEL "sha256:0,1,16"

static uint8_t *load(const char *name, size_t *len) {
    char path[512];
    snprintf(path, sizeof path, VEC "%s", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t *buf = malloc(4096);
    *len = fread(buf, 1, 4096, f);
    fclose(f);
    return buf;
}

static const uint8_t k_nonce_rsa[32] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa,
                                        0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
                                        0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
static const uint8_t k_nonce_ecc[2] = {0x00, 0x11};

typedef struct vec {
    uint8_t *ak, *name, *ek, *msg, *sig;
    size_t ak_len, name_len, ek_len, msg_len, sig_len;
} vec;

static void vec_load(vec *v, bool ecc) {
    v->ak = load(ecc ? "akecc.tss" : "ak.tss", &v->ak_len);
    v->name = load(ecc ? "akecc.name" : "ak.name", &v->name_len);
    v->ek = load("ek.pub", &v->ek_len);
    v->msg = load(ecc ? "quote-ecc.msg" : "quote.msg", &v->msg_len);
    v->sig = load(ecc ? "quote-ecc.sig" : "quote.sig", &v->sig_len);
}

static void vec_free(vec *v) {
    free(v->ak);
    free(v->name);
    free(v->ek);
    free(v->msg);
    free(v->sig);
}

static attest_refusal check(const uint8_t *ak, size_t ak_len, const uint8_t *msg, size_t msg_len, const uint8_t *sig,
                            size_t sig_len, const uint8_t *nonce, size_t nonce_len, const char *sel,
                            const uint8_t *values, size_t values_len, const uint8_t *ek, size_t ek_len) {
    attest_quote_result r;
    memset(&r, 0xee, sizeof r);
    vmenc_status s = attest_quote_verify(ak, ak_len, msg, msg_len, sig, sig_len, nonce, nonce_len, sel, values,
                                         values_len, ek, ek_len, &r);
    if (s == VMENC_OK)
        assert_int_equal(r.refusal, ATTEST_ACCEPTED);
    else {
        assert_int_equal(s, VMENC_E_AUTH);
        assert_int_not_equal(r.refusal, ATTEST_ACCEPTED);
    }
    return r.refusal;
}

/* ---- real vectors ----------------------------------------------------------- */

static void test_vectors_accept(void **state) {
    (void)state;
    uint8_t zeros[116] = {0};
    vec v;
    vec_load(&v, false);
    uint8_t name[ATTEST_NAME_BYTES];
    assert_int_equal(attest_ak_check(v.ak, v.ak_len, name, NULL), VMENC_OK);
    assert_int_equal(v.name_len, sizeof name); /* tpm2_createak -n */
    assert_memory_equal(name, v.name, sizeof name);
    assert_int_equal(check(v.ak, v.ak_len, v.msg, v.msg_len, v.sig, v.sig_len, k_nonce_rsa, 32, SEL, zeros, 96, v.ek,
                           v.ek_len),
                     ATTEST_ACCEPTED);
    attest_quote_result r;
    assert_int_equal(attest_quote_verify(v.ak, v.ak_len, v.msg, v.msg_len, v.sig, v.sig_len, k_nonce_rsa, 32, SEL,
                                         zeros, 96, NULL, 0, &r),
                     VMENC_OK);
    uint8_t d[32];
    assert_int_equal(attest_pcr_digest(SEL, zeros, 96, d), VMENC_OK);
    assert_memory_equal(r.pcr_digest, d, 32);
    assert_int_equal(attest_pcr_digest(SEL, zeros, 95, d), VMENC_E_BAD_LENGTH);
    vec_free(&v);

    /* ECC P-256 AK, a selection over an inactive sha1 bank too (read as zeros) */
    vec_load(&v, true);
    assert_int_equal(attest_ak_check(v.ak, v.ak_len, name, NULL), VMENC_OK);
    assert_memory_equal(name, v.name, sizeof name);
    assert_int_equal(check(v.ak, v.ak_len, v.msg, v.msg_len, v.sig, v.sig_len, k_nonce_ecc, 2,
                           "sha256:0,1,16+sha1:16", zeros, 116, v.ek, v.ek_len),
                     ATTEST_ACCEPTED);
    assert_int_equal(check(v.ak, v.ak_len, v.msg, v.msg_len, v.sig, v.sig_len, k_nonce_ecc, 2, SEL, zeros, 96, NULL,
                           0),
                     ATTEST_REFUSED_SELECTION);
    vec_free(&v);
}

static void test_vectors_refusals(void **state) {
    (void)state;
    uint8_t zeros[96] = {0};
    vec v, e;
    vec_load(&v, false);
    vec_load(&e, true);
    uint8_t nonce[32];
    memcpy(nonce, k_nonce_rsa, 32);
    nonce[31] ^= 1;
    assert_int_equal(check(v.ak, v.ak_len, v.msg, v.msg_len, v.sig, v.sig_len, nonce, 32, SEL, zeros, 96, NULL, 0),
                     ATTEST_REFUSED_NONCE);
    assert_int_equal(check(v.ak, v.ak_len, v.msg, v.msg_len, v.sig, v.sig_len, k_nonce_rsa, 31, SEL, zeros, 96, NULL,
                           0),
                     ATTEST_REFUSED_NONCE);
    assert_int_equal(check(v.ak, v.ak_len, v.msg, v.msg_len, v.sig, v.sig_len, k_nonce_rsa, 32, "sha256:0,1,16,17",
                           zeros, 128 - 0, NULL, 0),
                     ATTEST_REFUSED_SELECTION);
    uint8_t ones[96];
    memset(ones, 0, sizeof ones);
    ones[64] = 1;
    assert_int_equal(check(v.ak, v.ak_len, v.msg, v.msg_len, v.sig, v.sig_len, k_nonce_rsa, 32, SEL, ones, 96, NULL, 0),
                     ATTEST_REFUSED_PCR_DIGEST);
    assert_int_equal(check(v.ak, v.ak_len, v.msg, v.msg_len, v.sig, v.sig_len, k_nonce_rsa, 32, SEL, zeros, 64, NULL, 0),
                     ATTEST_REFUSED_PCR_DIGEST);
    /* the ECC AK's signature with the RSA quote, and the other way round */
    assert_int_equal(check(e.ak, e.ak_len, v.msg, v.msg_len, v.sig, v.sig_len, k_nonce_rsa, 32, SEL, zeros, 96, NULL,
                           0),
                     ATTEST_REFUSED_SIGNATURE);
    assert_int_equal(check(v.ak, v.ak_len, e.msg, e.msg_len, e.sig, e.sig_len, k_nonce_ecc, 2, SEL, zeros, 96, NULL,
                           0),
                     ATTEST_REFUSED_SIGNATURE);
    /* an EK that is not the AK's parent: the signer check */
    uint8_t *ek2 = malloc(v.ek_len);
    memcpy(ek2, v.ek, v.ek_len);
    ek2[v.ek_len - 1] ^= 1;
    assert_int_equal(check(v.ak, v.ak_len, v.msg, v.msg_len, v.sig, v.sig_len, k_nonce_rsa, 32, SEL, zeros, 96, ek2,
                           v.ek_len),
                     ATTEST_REFUSED_SIGNER);
    free(ek2);
    /* garbage signature structure */
    assert_int_equal(check(v.ak, v.ak_len, v.msg, v.msg_len, v.sig, v.sig_len - 1, k_nonce_rsa, 32, SEL, zeros, 96,
                           NULL, 0),
                     ATTEST_REFUSED_MALFORMED);
    /* bad arguments are not refusals */
    attest_quote_result r;
    assert_int_equal(attest_quote_verify(v.ak, v.ak_len, v.msg, v.msg_len, v.sig, v.sig_len, k_nonce_rsa, 32, "sha256",
                                         zeros, 96, NULL, 0, &r),
                     VMENC_E_INVALID_ARG);
    vec_free(&v);
    vec_free(&e);
}

/* Every single-byte change of the attest bytes or the signature is refused. */
static void test_every_flip_refused(void **state) {
    (void)state;
    uint8_t zeros[116] = {0};
    for (int ecc = 0; ecc < 2; ecc++) {
        vec v;
        vec_load(&v, ecc);
        const uint8_t *nonce = ecc ? k_nonce_ecc : k_nonce_rsa;
        size_t nonce_len = ecc ? 2 : 32, vals = ecc ? 116 : 96;
        const char *sel = ecc ? "sha256:0,1,16+sha1:16" : SEL;
        for (size_t i = 0; i < v.msg_len; i++) {
            v.msg[i] ^= 0x04;
            assert_int_not_equal(check(v.ak, v.ak_len, v.msg, v.msg_len, v.sig, v.sig_len, nonce, nonce_len, sel, zeros,
                                       vals, NULL, 0),
                                 ATTEST_ACCEPTED);
            v.msg[i] ^= 0x04;
        }
        for (size_t i = 0; i < v.sig_len; i++) {
            v.sig[i] ^= 0x01;
            assert_int_not_equal(check(v.ak, v.ak_len, v.msg, v.msg_len, v.sig, v.sig_len, nonce, nonce_len, sel, zeros,
                                       vals, NULL, 0),
                                 ATTEST_ACCEPTED);
            v.sig[i] ^= 0x01;
        }
        /* and unchanged it still verifies */
        assert_int_equal(check(v.ak, v.ak_len, v.msg, v.msg_len, v.sig, v.sig_len, nonce, nonce_len, sel, zeros, vals,
                               NULL, 0),
                         ATTEST_ACCEPTED);
        vec_free(&v);
    }
}

static void test_truncations_and_round_trips(void **state) {
    (void)state;
    vec v;
    vec_load(&v, true);
    attest_public p;
    attest_quote q;
    attest_sig s;
    uint8_t *out;
    size_t out_len;
    for (size_t n = 0; n < v.ak_len; n++)
        assert_int_not_equal(attest_public_parse(v.ak, n, &p), VMENC_OK);
    for (size_t n = 0; n < v.msg_len; n++)
        assert_int_not_equal(attest_quote_parse(v.msg, n, &q), VMENC_OK);
    for (size_t n = 0; n < v.sig_len; n++)
        assert_int_not_equal(attest_sig_parse(v.sig, n, &s), VMENC_OK);
    assert_int_equal(attest_public_parse(v.ak, v.ak_len, &p), VMENC_OK);
    assert_int_equal(p.type, ATTEST_ALG_ECC);
    assert_int_equal(p.ecc_curve, ATTEST_ECC_NIST_P256);
    assert_int_equal(attest_public_marshal(&p, &out, &out_len), VMENC_OK);
    assert_int_equal(out_len, v.ak_len);
    assert_memory_equal(out, v.ak, out_len);
    free(out);
    assert_int_equal(attest_quote_parse(v.msg, v.msg_len, &q), VMENC_OK);
    assert_int_equal(q.pcr_select.num_banks, 2);
    assert_int_equal(attest_quote_marshal(&q, &out, &out_len), VMENC_OK);
    assert_int_equal(out_len, v.msg_len);
    assert_memory_equal(out, v.msg, out_len);
    free(out);
    assert_int_equal(attest_sig_parse(v.sig, v.sig_len, &s), VMENC_OK);
    assert_int_equal(s.alg, ATTEST_ALG_ECDSA);
    /* one byte too many */
    uint8_t *big = malloc(v.msg_len + 1);
    memcpy(big, v.msg, v.msg_len);
    big[v.msg_len] = 0;
    assert_int_equal(attest_quote_parse(big, v.msg_len + 1, &q), VMENC_E_TRAILING_DATA);
    free(big);
    /* a bad magic is not a quote */
    v.msg[0] ^= 1;
    assert_int_equal(attest_quote_parse(v.msg, v.msg_len, &q), VMENC_E_BAD_MAGIC);
    vec_free(&v);
}

/* ---- AK rules -------------------------------------------------------------- */

static attest_refusal ak_refusal_of(uint8_t *ak, size_t len) {
    uint8_t name[ATTEST_NAME_BYTES];
    attest_refusal r = ATTEST_ACCEPTED;
    vmenc_status s = attest_ak_check(ak, len, name, &r);
    assert_true((s == VMENC_OK) == (r == ATTEST_ACCEPTED));
    return r;
}

static void test_ak_rules(void **state) {
    (void)state;
    vec v;
    vec_load(&v, false);
    /* attributes at offset 6..9: 00 05 00 72 */
    static const struct { int byte; uint8_t mask; bool set; } attrs[] = {
        {7, 0x01, false}, /* restricted */
        {7, 0x04, false}, /* sign */
        {9, 0x02, false}, /* fixedTPM */
        {9, 0x10, false}, /* fixedParent */
        {9, 0x20, false}, /* sensitiveDataOrigin */
        {7, 0x02, true},  /* decrypt */
    };
    for (size_t i = 0; i < VMENC_ARRAY_LEN(attrs); i++) {
        v.ak[attrs[i].byte] ^= attrs[i].mask;
        assert_int_equal(ak_refusal_of(v.ak, v.ak_len), ATTEST_REFUSED_AK_ATTRIBUTES);
        v.ak[attrs[i].byte] ^= attrs[i].mask;
    }
    assert_int_equal(ak_refusal_of(v.ak, v.ak_len), ATTEST_ACCEPTED);
    /* nameAlg SHA-1 */
    v.ak[5] = 0x04;
    assert_int_equal(ak_refusal_of(v.ak, v.ak_len), ATTEST_REFUSED_AK_ALGORITHM);
    v.ak[5] = 0x0b;
    /* scheme hash SHA-384 (offset 16..17: 0014 000b) */
    v.ak[17] = 0x0c;
    assert_int_equal(ak_refusal_of(v.ak, v.ak_len), ATTEST_REFUSED_AK_ALGORITHM);
    v.ak[17] = 0x0b;
    /* exponent 3 (offset 20..23) */
    v.ak[23] = 3;
    assert_int_equal(ak_refusal_of(v.ak, v.ak_len), ATTEST_REFUSED_AK_ALGORITHM);
    v.ak[23] = 0;
    /* key bits 1024 */
    v.ak[18] = 0x04;
    assert_int_equal(ak_refusal_of(v.ak, v.ak_len), ATTEST_REFUSED_AK_ALGORITHM);
    v.ak[18] = 0x08;
    /* an unknown key type */
    v.ak[3] = 0x08; /* KEYEDHASH */
    assert_int_equal(ak_refusal_of(v.ak, v.ak_len), ATTEST_REFUSED_AK_ALGORITHM);
    v.ak[3] = 0x01;
    /* the size prefix disagrees */
    v.ak[1] ^= 1;
    assert_int_equal(ak_refusal_of(v.ak, v.ak_len), ATTEST_REFUSED_MALFORMED);
    v.ak[1] ^= 1;
    assert_int_equal(ak_refusal_of(v.ak, v.ak_len), ATTEST_ACCEPTED);
    /* the reasons are named */
    for (int r = ATTEST_ACCEPTED; r <= ATTEST_REFUSED_EK_CERT; r++)
        assert_string_not_equal(attest_refusal_str((attest_refusal)r), "unknown refusal");
    vec_free(&v);
}

/* ---- software-signed quotes -------------------------------------------------- */

typedef struct sw_ak {
    EVP_PKEY *key;
    uint8_t *pub;
    size_t pub_len;
} sw_ak;

/* sw_rsa_ak: an RSA AK with |scheme|; the key of |same| if not NULL
 * (its reference is shared), else a new one. */
static void sw_rsa_ak(sw_ak *a, uint16_t scheme, const sw_ak *same) {
    if (same != NULL) {
        a->key = same->key;
        EVP_PKEY_up_ref(a->key);
    } else {
        a->key = EVP_RSA_gen(2048);
    }
    assert_non_null(a->key);
    BIGNUM *n = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(a->key, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    static uint8_t nb[256];
    assert_int_equal(BN_bn2binpad(n, nb, 256), 256);
    BN_free(n);
    attest_public p;
    memset(&p, 0, sizeof p);
    p.type = ATTEST_ALG_RSA;
    p.name_alg = ATTEST_ALG_SHA256;
    p.attributes = 0x00050072u;
    p.sym_alg = ATTEST_ALG_NULL;
    p.scheme = scheme;
    p.scheme_hash = ATTEST_ALG_SHA256;
    p.rsa_bits = 2048;
    p.rsa_modulus = nb;
    p.rsa_modulus_len = 256;
    assert_int_equal(attest_public_marshal(&p, &a->pub, &a->pub_len), VMENC_OK);
}

static void sw_ecc_ak(sw_ak *a) {
    a->key = EVP_EC_gen("P-256");
    assert_non_null(a->key);
    uint8_t pt[65];
    size_t pt_len = 0;
    assert_int_equal(EVP_PKEY_get_octet_string_param(a->key, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt, &pt_len), 1);
    assert_int_equal(pt_len, 65);
    static uint8_t xy[64];
    memcpy(xy, pt + 1, 64);
    attest_public p;
    memset(&p, 0, sizeof p);
    p.type = ATTEST_ALG_ECC;
    p.name_alg = ATTEST_ALG_SHA256;
    p.attributes = 0x00050072u;
    p.sym_alg = ATTEST_ALG_NULL;
    p.scheme = ATTEST_ALG_ECDSA;
    p.scheme_hash = ATTEST_ALG_SHA256;
    p.ecc_curve = ATTEST_ECC_NIST_P256;
    p.ecc_kdf = ATTEST_ALG_NULL;
    p.ecc_x = xy;
    p.ecc_x_len = 32;
    p.ecc_y = xy + 32;
    p.ecc_y_len = 32;
    assert_int_equal(attest_public_marshal(&p, &a->pub, &a->pub_len), VMENC_OK);
}

static void sw_free(sw_ak *a) {
    EVP_PKEY_free(a->key);
    free(a->pub);
}

/* A TPMS_ATTEST over |values| for SEL with |nonce|; magic/type given. */
static void sw_attest(uint32_t magic, uint16_t type, const uint8_t *nonce, size_t nonce_len, const uint8_t *values,
                      size_t values_len, uint8_t **out, size_t *out_len) {
    static uint8_t digest[32];
    static const uint8_t signer[34] = {0x00, 0x0b};
    assert_int_equal(attest_sha256(values, values_len, NULL, 0, digest), VMENC_OK);
    attest_quote q;
    memset(&q, 0, sizeof q);
    q.magic = magic;
    q.type = type;
    q.qualified_signer = signer;
    q.qualified_signer_len = sizeof signer;
    q.extra_data = nonce;
    q.extra_data_len = nonce_len;
    q.clock = 12345;
    q.safe = 1;
    assert_int_equal(attest_pcr_sel_parse(SEL, &q.pcr_select), VMENC_OK);
    q.pcr_digest = digest;
    q.pcr_digest_len = 32;
    assert_int_equal(attest_quote_marshal(&q, out, out_len), VMENC_OK);
}

/* Sign |msg| with |a| as a TPM would: RSASSA/RSAPSS or ECDSA, hash |md|. */
static void sw_sign(const sw_ak *a, uint16_t alg, const EVP_MD *md, uint16_t hash_alg, const uint8_t *msg,
                    size_t msg_len, uint8_t **out, size_t *out_len) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    assert_int_equal(EVP_DigestSignInit(ctx, &pctx, md, NULL, a->key), 1);
    if (alg == ATTEST_ALG_RSAPSS) {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST), 1);
    }
    uint8_t sig[512];
    size_t sig_len = sizeof sig;
    assert_int_equal(EVP_DigestSign(ctx, sig, &sig_len, msg, msg_len), 1);
    EVP_MD_CTX_free(ctx);
    attest_sig s;
    memset(&s, 0, sizeof s);
    s.alg = alg;
    s.hash = hash_alg;
    uint8_t r[32], ss[32];
    if (alg == ATTEST_ALG_ECDSA) {
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sig_len);
        assert_non_null(es);
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), r, 32), 32);
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), ss, 32), 32);
        ECDSA_SIG_free(es);
        s.ecdsa_r = r;
        s.ecdsa_r_len = 32;
        s.ecdsa_s = ss;
        s.ecdsa_s_len = 32;
    } else {
        s.rsa_sig = sig;
        s.rsa_sig_len = sig_len;
    }
    assert_int_equal(attest_sig_marshal(&s, out, out_len), VMENC_OK);
}

static void test_software_quotes(void **state) {
    (void)state;
    uint8_t nonce[32], values[96];
    for (size_t i = 0; i < 32; i++)
        nonce[i] = (uint8_t)(i * 3);
    for (size_t i = 0; i < 96; i++)
        values[i] = (uint8_t)i;
    sw_ak pss, ssa, any, ec;
    sw_rsa_ak(&pss, ATTEST_ALG_RSAPSS, NULL);
    sw_rsa_ak(&ssa, ATTEST_ALG_RSASSA, &pss); /* the same key, fixed to RSASSA */
    sw_rsa_ak(&any, ATTEST_ALG_NULL, NULL);
    sw_ecc_ak(&ec);
    uint8_t *msg, *bad_type, *bad_magic, *sig;
    size_t msg_len, bt_len, bm_len, sig_len;
    sw_attest(0xff544347u, 0x8018, nonce, 32, values, 96, &msg, &msg_len);
    sw_attest(0xff544347u, 0x8017 /* ATTEST_CERTIFY */, nonce, 32, values, 96, &bad_type, &bt_len);
    sw_attest(0xff544348u, 0x8018, nonce, 32, values, 96, &bad_magic, &bm_len);

    /* RSA-PSS AK */
    sw_sign(&pss, ATTEST_ALG_RSAPSS, EVP_sha256(), ATTEST_ALG_SHA256, msg, msg_len, &sig, &sig_len);
    assert_int_equal(check(pss.pub, pss.pub_len, msg, msg_len, sig, sig_len, nonce, 32, SEL, values, 96, NULL, 0),
                     ATTEST_ACCEPTED);
    /* a PSS signature under an AK fixed to RSASSA is not one its TPM makes */
    assert_int_equal(check(ssa.pub, ssa.pub_len, msg, msg_len, sig, sig_len, nonce, 32, SEL, values, 96, NULL, 0),
                     ATTEST_REFUSED_SIGNATURE);
    free(sig);
    /* scheme NULL: either RSA scheme */
    sw_sign(&any, ATTEST_ALG_RSASSA, EVP_sha256(), ATTEST_ALG_SHA256, msg, msg_len, &sig, &sig_len);
    assert_int_equal(check(any.pub, any.pub_len, msg, msg_len, sig, sig_len, nonce, 32, SEL, values, 96, NULL, 0),
                     ATTEST_ACCEPTED);
    free(sig);
    /* SHA-384 signatures are refused (the digest rule is SHA-256) */
    sw_sign(&any, ATTEST_ALG_RSASSA, EVP_sha384(), ATTEST_ALG_SHA384, msg, msg_len, &sig, &sig_len);
    assert_int_equal(check(any.pub, any.pub_len, msg, msg_len, sig, sig_len, nonce, 32, SEL, values, 96, NULL, 0),
                     ATTEST_REFUSED_SIGNATURE);
    free(sig);
    /* ECDSA P-256 */
    sw_sign(&ec, ATTEST_ALG_ECDSA, EVP_sha256(), ATTEST_ALG_SHA256, msg, msg_len, &sig, &sig_len);
    assert_int_equal(sig_len, 72);
    assert_int_equal(check(ec.pub, ec.pub_len, msg, msg_len, sig, sig_len, nonce, 32, SEL, values, 96, NULL, 0),
                     ATTEST_ACCEPTED);
    /* an ECDSA signature for an RSA AK */
    assert_int_equal(check(any.pub, any.pub_len, msg, msg_len, sig, sig_len, nonce, 32, SEL, values, 96, NULL, 0),
                     ATTEST_REFUSED_SIGNATURE);
    free(sig);
    /* signed, but not a quote: another attestation type, or not TPM-generated */
    sw_sign(&ec, ATTEST_ALG_ECDSA, EVP_sha256(), ATTEST_ALG_SHA256, bad_type, bt_len, &sig, &sig_len);
    assert_int_equal(check(ec.pub, ec.pub_len, bad_type, bt_len, sig, sig_len, nonce, 32, SEL, values, 96, NULL, 0),
                     ATTEST_REFUSED_NOT_QUOTE);
    free(sig);
    sw_sign(&ec, ATTEST_ALG_ECDSA, EVP_sha256(), ATTEST_ALG_SHA256, bad_magic, bm_len, &sig, &sig_len);
    assert_int_equal(check(ec.pub, ec.pub_len, bad_magic, bm_len, sig, sig_len, nonce, 32, SEL, values, 96, NULL, 0),
                     ATTEST_REFUSED_NOT_QUOTE);
    free(sig);
    free(msg);
    free(bad_type);
    free(bad_magic);
    sw_free(&pss);
    sw_free(&ssa);
    sw_free(&any);
    sw_free(&ec);
}

/* ---- PCR selection, fold, names ------------------------------------------------ */

static void test_pcr_selection_text(void **state) {
    (void)state;
    attest_pcr_sel s, t;
    assert_int_equal(attest_pcr_sel_parse("sha256:0,1,16", &s), VMENC_OK);
    assert_int_equal(s.num_banks, 1);
    assert_int_equal(s.banks[0].hash, ATTEST_ALG_SHA256);
    assert_int_equal(s.banks[0].size_of_select, 3);
    assert_int_equal(s.banks[0].select[0], 0x03);
    assert_int_equal(s.banks[0].select[1], 0x00);
    assert_int_equal(s.banks[0].select[2], 0x01);
    assert_int_equal(attest_pcr_sel_values_len(&s), 96);
    assert_int_equal(attest_pcr_sel_parse("sha256:16,1,0", &t), VMENC_OK);
    assert_true(attest_pcr_sel_equal(&s, &t));
    assert_int_equal(attest_pcr_sel_parse("sha256:0,1,17", &t), VMENC_OK);
    assert_false(attest_pcr_sel_equal(&s, &t));
    assert_int_equal(attest_pcr_sel_parse("sha256:0+sha1:0,31+sha384:2+sha512:3", &t), VMENC_OK);
    assert_int_equal(t.num_banks, 4);
    assert_int_equal(t.banks[1].size_of_select, 4);
    assert_int_equal(attest_pcr_sel_values_len(&t), 32 + 40 + 48 + 64);
    static const char *bad[] = {"", "sha256", "sha256:", "sha256:0,", "sha256:,0", "sha256:32", "sha256:0,0",
                                "sha256:0+sha256:1", "md5:0", "sha256:0+", "sha256:007", "sha256:-1", "sha256: 0",
                                "sha256:0 ", "SHA256:0"};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(bad); i++)
        assert_int_equal(attest_pcr_sel_parse(bad[i], &t), VMENC_E_PARSE);
}

static void test_fold_and_names(void **state) {
    (void)state;
    uint8_t m[2][32], v[32], expect[32], buf[64];
    memset(m[0], 0x11, 32);
    memset(m[1], 0x22, 32);
    /* independent: EVP one-shot SHA-256 of (0^32 || m0), then (that || m1) */
    memset(buf, 0, 32);
    memcpy(buf + 32, m[0], 32);
    unsigned int len = 0;
    assert_int_equal(EVP_Digest(buf, 64, expect, &len, EVP_sha256(), NULL), 1);
    memcpy(buf, expect, 32);
    memcpy(buf + 32, m[1], 32);
    assert_int_equal(EVP_Digest(buf, 64, expect, &len, EVP_sha256(), NULL), 1);
    attest_pcr_fold((const uint8_t(*)[32])m, 2, v);
    assert_memory_equal(v, expect, 32);
    attest_pcr_fold((const uint8_t(*)[32])m, 0, v);
    assert_memory_equal(v, (uint8_t[32]){0}, 32);

    /* the EK template rebuilt from the vector EK's modulus is the vector EK */
    vec e;
    vec_load(&e, false);
    attest_public ek;
    assert_int_equal(attest_public_parse(e.ek, e.ek_len, &ek), VMENC_OK);
    uint8_t *again;
    size_t again_len;
    assert_int_equal(attest_ek_public_from_modulus(ek.rsa_modulus, ek.rsa_modulus_len, &again, &again_len), VMENC_OK);
    assert_int_equal(again_len, e.ek_len);
    assert_memory_equal(again, e.ek, again_len);
    free(again);
    /* qualifiedSigner in the real quote = QN(AK under EK) */
    uint8_t ek_name[34], ak_name[34], qn[34];
    assert_int_equal(attest_public_name(e.ek, e.ek_len, ek_name), VMENC_OK);
    assert_int_equal(attest_public_name(e.ak, e.ak_len, ak_name), VMENC_OK);
    assert_int_equal(attest_qualified_name(ek_name, ak_name, qn), VMENC_OK);
    assert_memory_equal(qn, e.msg + 8, 34);
    vec_free(&e);
}

static void test_make_credential_args(void **state) {
    (void)state;
    vec e;
    vec_load(&e, false);
    uint8_t secret[32] = {1}, *c = NULL, *x = NULL;
    size_t cl, xl;
    /* an AK is not an EK (no decrypt, no symmetric) */
    assert_int_equal(attest_make_credential(e.ak, e.ak_len, e.name, 34, secret, 32, &c, &cl, &x, &xl),
                     VMENC_E_BAD_ALGORITHM);
    assert_int_equal(attest_make_credential(e.ek, e.ek_len, e.name, 33, secret, 32, &c, &cl, &x, &xl),
                     VMENC_E_INVALID_ARG);
    assert_int_equal(attest_make_credential(e.ek, e.ek_len, e.name, 34, secret, 65, &c, &cl, &x, &xl),
                     VMENC_E_INVALID_ARG);
    assert_int_equal(attest_make_credential(e.ek, e.ek_len, e.name, 34, secret, 32, &c, &cl, &x, &xl), VMENC_OK);
    /* TPM2B_ID_OBJECT: size, TPM2B_DIGEST(HMAC), encIdentity (2 + secret) */
    assert_int_equal(cl, 2 + 2 + 32 + 2 + 32);
    assert_int_equal(c[0] << 8 | c[1], cl - 2);
    assert_int_equal(c[2] << 8 | c[3], 32);
    assert_int_equal(xl, 2 + 256);
    /* two credentials for the same inputs differ (fresh seed) */
    uint8_t *c2, *x2;
    size_t cl2, xl2;
    assert_int_equal(attest_make_credential(e.ek, e.ek_len, e.name, 34, secret, 32, &c2, &cl2, &x2, &xl2), VMENC_OK);
    assert_int_equal(cl2, cl);
    assert_memory_not_equal(c2, c, cl);
    free(c);
    free(x);
    free(c2);
    free(x2);
    vec_free(&e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_accept),
        cmocka_unit_test(test_vectors_refusals),
        cmocka_unit_test(test_every_flip_refused),
        cmocka_unit_test(test_truncations_and_round_trips),
        cmocka_unit_test(test_ak_rules),
        cmocka_unit_test(test_software_quotes),
        cmocka_unit_test(test_pcr_selection_text),
        cmocka_unit_test(test_fold_and_names),
        cmocka_unit_test(test_make_credential_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
