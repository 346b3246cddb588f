/*
 * lib/attest/verify.c - the quote verifier the broker runs (OpenSSL 3, no
 * TPM): AK attribute and algorithm check, TPM names, signature over the
 * TPMS_ATTEST bytes, nonce, PCR selection, PCR digest and qualifiedSigner.
 * The checks and what each prevents are listed in docs/attest.md; the
 * reference is tpm2_checkquote and the recipe's verify_quote.py. Its one
 * safety rule: the signature is verified over the exact bytes received,
 * with an AK that passed attest_ak_check, before any parsed field of the
 * quote is looked at.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include "attest/attest.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "attest/attest_internal.h"

#define TPM_RH_ENDORSEMENT 0x4000000bu

const char *attest_refusal_str(attest_refusal r) {
    switch (r) {
    case ATTEST_ACCEPTED: return "accepted";
    case ATTEST_REFUSED_MALFORMED: return "malformed TPM structure";
    case ATTEST_REFUSED_AK_ATTRIBUTES: return "AK is not a restricted, fixed, TPM-generated signing key";
    case ATTEST_REFUSED_AK_ALGORITHM: return "AK algorithm not accepted (RSA-2048 or ECC P-256, SHA-256)";
    case ATTEST_REFUSED_SIGNATURE: return "quote signature does not verify with the AK";
    case ATTEST_REFUSED_NOT_QUOTE: return "signed data is not a TPM-generated quote";
    case ATTEST_REFUSED_NONCE: return "quote nonce is not the one issued (replayed quote)";
    case ATTEST_REFUSED_SELECTION: return "quote PCR selection is not the one required";
    case ATTEST_REFUSED_PCR_DIGEST: return "PCR digest does not match the PCR values";
    case ATTEST_REFUSED_SIGNER: return "quote signer is not the AK under the enrolled EK";
    case ATTEST_REFUSED_EK_CERT: return "EK certificate does not chain to a trusted TPM CA";
    }
    return "unknown refusal";
}

/* ---- names ------------------------------------------------------------- */

vmenc_status attest_sha256(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
                           uint8_t out[ATTEST_DIGEST_BYTES]) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    VMENC_ENSURE(ctx != NULL, VMENC_E_NOMEM);
    bool ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
              (a_len == 0 || EVP_DigestUpdate(ctx, a, a_len) == 1) &&
              (b_len == 0 || EVP_DigestUpdate(ctx, b, b_len) == 1) &&
              EVP_DigestFinal_ex(ctx, out, NULL) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? VMENC_OK : VMENC_E_CRYPTO;
}

static vmenc_status name_of(const attest_public *p, uint8_t out[ATTEST_NAME_BYTES]) {
    VMENC_ENSURE(p->name_alg == ATTEST_ALG_SHA256, VMENC_E_BAD_ALGORITHM);
    out[0] = (uint8_t)(p->name_alg >> 8);
    out[1] = (uint8_t)p->name_alg;
    return attest_sha256(p->tpmt, p->tpmt_len, NULL, 0, out + 2);
}

vmenc_status attest_public_name(const uint8_t *pub, size_t pub_len, uint8_t out_name[ATTEST_NAME_BYTES]) {
    VMENC_ENSURE(pub != NULL && out_name != NULL, VMENC_E_INVALID_ARG);
    attest_public p;
    VMENC_GUARD(attest_public_parse(pub, pub_len, &p));
    uint8_t name[ATTEST_NAME_BYTES];
    VMENC_GUARD(name_of(&p, name));
    memcpy(out_name, name, sizeof name);
    return VMENC_OK;
}

/* ---- AK check ------------------------------------------------------------ */

static attest_refusal ak_refusal(const attest_public *p) {
    if ((p->attributes & ATTEST_AK_REQUIRED_ATTRS) != ATTEST_AK_REQUIRED_ATTRS ||
        (p->attributes & ATTEST_OA_DECRYPT) != 0)
        return ATTEST_REFUSED_AK_ATTRIBUTES;
    if (p->name_alg != ATTEST_ALG_SHA256 || p->sym_alg != ATTEST_ALG_NULL)
        return ATTEST_REFUSED_AK_ALGORITHM;
    if (p->scheme != ATTEST_ALG_NULL && p->scheme_hash != ATTEST_ALG_SHA256)
        return ATTEST_REFUSED_AK_ALGORITHM;
    if (p->type == ATTEST_ALG_RSA) {
        if (p->scheme != ATTEST_ALG_NULL && p->scheme != ATTEST_ALG_RSASSA &&
            p->scheme != ATTEST_ALG_RSAPSS)
            return ATTEST_REFUSED_AK_ALGORITHM;
        if (p->rsa_bits != 2048 || p->rsa_modulus_len != 256 || (p->rsa_modulus[0] & 0x80) == 0)
            return ATTEST_REFUSED_AK_ALGORITHM;
        if (p->rsa_exponent != 0 && p->rsa_exponent != 65537)
            return ATTEST_REFUSED_AK_ALGORITHM;
        return ATTEST_ACCEPTED;
    }
    if (p->scheme != ATTEST_ALG_NULL && p->scheme != ATTEST_ALG_ECDSA)
        return ATTEST_REFUSED_AK_ALGORITHM;
    if (p->ecc_curve != ATTEST_ECC_NIST_P256 || p->ecc_kdf != ATTEST_ALG_NULL ||
        p->ecc_x_len == 0 || p->ecc_x_len > 32 || p->ecc_y_len == 0 || p->ecc_y_len > 32)
        return ATTEST_REFUSED_AK_ALGORITHM;
    return ATTEST_ACCEPTED;
}

static vmenc_status ak_parse_check(const uint8_t *ak_public, size_t ak_public_len, attest_public *p,
                                   uint8_t name[ATTEST_NAME_BYTES], attest_refusal *refusal) {
    vmenc_status s = attest_public_parse(ak_public, ak_public_len, p);
    if (s == VMENC_E_BAD_ALGORITHM) {
        *refusal = ATTEST_REFUSED_AK_ALGORITHM;
        return VMENC_E_AUTH;
    }
    if (s != VMENC_OK) {
        *refusal = ATTEST_REFUSED_MALFORMED;
        return s;
    }
    *refusal = ak_refusal(p);
    if (*refusal != ATTEST_ACCEPTED)
        return VMENC_E_AUTH;
    return name_of(p, name);
}

vmenc_status attest_ak_check(const uint8_t *ak_public, size_t ak_public_len,
                             uint8_t out_name[ATTEST_NAME_BYTES], attest_refusal *out_refusal) {
    attest_refusal r = ATTEST_REFUSED_MALFORMED;
    vmenc_status s = VMENC_E_INVALID_ARG;
    if (ak_public != NULL && out_name != NULL) {
        attest_public p;
        uint8_t name[ATTEST_NAME_BYTES];
        s = ak_parse_check(ak_public, ak_public_len, &p, name, &r);
        if (s == VMENC_OK)
            memcpy(out_name, name, sizeof name);
    }
    if (out_refusal != NULL)
        *out_refusal = r;
    return s;
}

/* ---- signature ----------------------------------------------------------- */

static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM_BLD *bld) {
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params != NULL && ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1)
        (void)EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

EVP_PKEY *attest_rsa_pkey(const uint8_t *n, size_t n_len, uint32_t exponent) {
    EVP_PKEY *pkey = NULL;
    BIGNUM *bn = BN_bin2bn(n, (int)n_len, NULL);
    BIGNUM *be = BN_new();
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bn != NULL && be != NULL && bld != NULL && BN_set_word(be, exponent ? exponent : 65537) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1)
        pkey = pkey_from_params("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pkey;
}

static EVP_PKEY *p256_pkey(const attest_public *p) {
    uint8_t point[65] = {0x04};
    memcpy(point + 1 + (32 - p->ecc_x_len), p->ecc_x, p->ecc_x_len);
    memcpy(point + 33 + (32 - p->ecc_y_len), p->ecc_y, p->ecc_y_len);
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bld != NULL &&
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point) == 1)
        pkey = pkey_from_params("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

/* ECDSA r, s (TPM2B integers) -> DER ECDSA-Sig-Value, malloc'd by OpenSSL. */
static int ecdsa_der(const attest_sig *sig, unsigned char **der) {
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig->ecdsa_r, (int)sig->ecdsa_r_len, NULL);
    BIGNUM *s = BN_bin2bn(sig->ecdsa_s, (int)sig->ecdsa_s_len, NULL);
    int len = -1;
    if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL; /* owned by es now */
        *der = NULL;
        len = i2d_ECDSA_SIG(es, der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return len;
}

/* verify_sig: VMENC_OK when |sig| is a valid signature by |ak| over |msg|
 * with SHA-256 and a scheme the AK allows; VMENC_E_AUTH otherwise. */
static vmenc_status verify_sig(const attest_public *ak, const attest_sig *sig, const uint8_t *msg,
                               size_t msg_len) {
    VMENC_ENSURE(sig->hash == ATTEST_ALG_SHA256, VMENC_E_AUTH);
    VMENC_ENSURE(ak->scheme == ATTEST_ALG_NULL || ak->scheme == sig->alg, VMENC_E_AUTH);
    bool rsa = ak->type == ATTEST_ALG_RSA;
    VMENC_ENSURE(rsa ? (sig->alg == ATTEST_ALG_RSASSA || sig->alg == ATTEST_ALG_RSAPSS)
                     : sig->alg == ATTEST_ALG_ECDSA,
                 VMENC_E_AUTH);
    EVP_PKEY *pkey = rsa ? attest_rsa_pkey(ak->rsa_modulus, ak->rsa_modulus_len, ak->rsa_exponent)
                         : p256_pkey(ak);
    VMENC_ENSURE(pkey != NULL, VMENC_E_CRYPTO);
    const unsigned char *s = sig->rsa_sig;
    size_t s_len = sig->rsa_sig_len;
    unsigned char *der = NULL;
    vmenc_status rv = VMENC_E_AUTH;
    if (!rsa) {
        int dl = ecdsa_der(sig, &der);
        if (dl <= 0)
            goto out;
        s = der;
        s_len = (size_t)dl;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    if (ctx == NULL) {
        rv = VMENC_E_NOMEM;
        goto out;
    }
    if (EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), NULL, pkey) == 1) {
        bool ok = true;
        if (sig->alg == ATTEST_ALG_RSASSA)
            ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1;
        else if (sig->alg == ATTEST_ALG_RSAPSS)
            ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                 EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) == 1;
        if (ok && EVP_DigestVerify(ctx, s, s_len, msg, msg_len) == 1)
            rv = VMENC_OK;
    }
    EVP_MD_CTX_free(ctx);
out:
    OPENSSL_free(der);
    EVP_PKEY_free(pkey);
    return rv;
}

/* ---- PCRs ------------------------------------------------------------------ */

vmenc_status attest_pcr_digest(const char *pcr_sel, const uint8_t *pcr_values, size_t pcr_values_len,
                               uint8_t out[ATTEST_DIGEST_BYTES]) {
    VMENC_ENSURE(pcr_sel != NULL && out != NULL && (pcr_values != NULL || pcr_values_len == 0),
                 VMENC_E_INVALID_ARG);
    attest_pcr_sel sel;
    VMENC_ENSURE(attest_pcr_sel_parse(pcr_sel, &sel) == VMENC_OK, VMENC_E_INVALID_ARG);
    size_t need = attest_pcr_sel_values_len(&sel);
    VMENC_ENSURE(need != 0 && need == pcr_values_len, VMENC_E_BAD_LENGTH);
    return attest_sha256(pcr_values, pcr_values_len, NULL, 0, out);
}

void attest_pcr_fold(const uint8_t (*measurements)[ATTEST_DIGEST_BYTES], size_t num,
                     uint8_t out[ATTEST_DIGEST_BYTES]) {
    uint8_t v[ATTEST_DIGEST_BYTES] = {0};
    for (size_t i = 0; i < num; i++)
        if (attest_sha256(v, sizeof v, measurements[i], ATTEST_DIGEST_BYTES, v) != VMENC_OK)
            break; /* cannot happen short of OpenSSL failing; the value is then wrong, never trusted */
    memcpy(out, v, sizeof v);
}

/* ---- qualified name ------------------------------------------------------ */

vmenc_status attest_qualified_name(const uint8_t ek_name[ATTEST_NAME_BYTES],
                                   const uint8_t ak_name[ATTEST_NAME_BYTES],
                                   uint8_t out[ATTEST_NAME_BYTES]) {
    uint8_t h[4], qn_ek[ATTEST_NAME_BYTES], qn[ATTEST_NAME_BYTES];
    vmenc_store_u32_be(h, TPM_RH_ENDORSEMENT);
    memcpy(qn_ek, ek_name, 2);
    VMENC_GUARD(attest_sha256(h, sizeof h, ek_name, ATTEST_NAME_BYTES, qn_ek + 2));
    memcpy(qn, ak_name, 2);
    VMENC_GUARD(attest_sha256(qn_ek, sizeof qn_ek, ak_name, ATTEST_NAME_BYTES, qn + 2));
    memcpy(out, qn, sizeof qn);
    return VMENC_OK;
}

/* ---- the quote ------------------------------------------------------------- */

static vmenc_status refuse(attest_quote_result *out, attest_refusal r) {
    out->refusal = r;
    return VMENC_E_AUTH;
}

vmenc_status attest_quote_verify(const uint8_t *ak_public, size_t ak_public_len, const uint8_t *attest,
                                 size_t attest_len, const uint8_t *sig, size_t sig_len,
                                 const uint8_t *nonce, size_t nonce_len, const char *pcr_sel,
                                 const uint8_t *pcr_values, size_t pcr_values_len,
                                 const uint8_t *ek_public, size_t ek_public_len,
                                 attest_quote_result *out) {
    VMENC_ENSURE_REF(out);
    attest_quote_result res;
    memset(&res, 0, sizeof res);
    out->refusal = ATTEST_REFUSED_MALFORMED;
    VMENC_ENSURE(ak_public != NULL && attest != NULL && sig != NULL && nonce != NULL &&
                     pcr_sel != NULL && (pcr_values != NULL || pcr_values_len == 0),
                 VMENC_E_INVALID_ARG);
    attest_pcr_sel want;
    VMENC_ENSURE(attest_pcr_sel_parse(pcr_sel, &want) == VMENC_OK, VMENC_E_INVALID_ARG);

    /* 1. The AK: attributes make the magic meaningful (a restricted key signs
     *    only TPM-generated data), the algorithm bounds what we verify. */
    attest_public ak;
    uint8_t ak_name[ATTEST_NAME_BYTES];
    attest_refusal r;
    vmenc_status s = ak_parse_check(ak_public, ak_public_len, &ak, ak_name, &r);
    if (s != VMENC_OK) {
        out->refusal = r;
        return VMENC_E_AUTH;
    }

    /* 2. The signature over the exact bytes, before any field is trusted. */
    attest_sig sg;
    if (attest_sig_parse(sig, sig_len, &sg) != VMENC_OK)
        return refuse(out, ATTEST_REFUSED_MALFORMED);
    s = verify_sig(&ak, &sg, attest, attest_len);
    if (s == VMENC_E_AUTH)
        return refuse(out, ATTEST_REFUSED_SIGNATURE);
    VMENC_GUARD(s);

    /* 3. Magic and type: TPM-generated, a quote (not a certify or a
     *    signature over other TPM data). */
    attest_quote q;
    s = attest_quote_parse(attest, attest_len, &q);
    if (s == VMENC_E_BAD_MAGIC)
        return refuse(out, ATTEST_REFUSED_NOT_QUOTE);
    if (s != VMENC_OK)
        return refuse(out, ATTEST_REFUSED_MALFORMED);

    /* 4. Freshness: the nonce this verifier issued. */
    if (q.extra_data_len != nonce_len || !vmenc_ct_equal(q.extra_data, nonce, nonce_len))
        return refuse(out, ATTEST_REFUSED_NONCE);

    /* 5. The signer is this AK under the enrolled EK (optional). */
    if (ek_public != NULL) {
        uint8_t ek_name[ATTEST_NAME_BYTES], qn[ATTEST_NAME_BYTES];
        if (attest_public_name(ek_public, ek_public_len, ek_name) != VMENC_OK)
            return refuse(out, ATTEST_REFUSED_MALFORMED);
        VMENC_GUARD(attest_qualified_name(ek_name, ak_name, qn));
        if (q.qualified_signer_len != sizeof qn || memcmp(q.qualified_signer, qn, sizeof qn) != 0)
            return refuse(out, ATTEST_REFUSED_SIGNER);
    }

    /* 6. Exactly the PCRs demanded. */
    if (!attest_pcr_sel_equal(&q.pcr_select, &want))
        return refuse(out, ATTEST_REFUSED_SELECTION);

    /* 7. The values sent are the ones quoted (hashed with the signing hash). */
    uint8_t digest[ATTEST_DIGEST_BYTES];
    if (attest_pcr_sel_values_len(&want) != pcr_values_len)
        return refuse(out, ATTEST_REFUSED_PCR_DIGEST);
    VMENC_GUARD(attest_sha256(pcr_values, pcr_values_len, NULL, 0, digest));
    if (q.pcr_digest_len != sizeof digest || memcmp(q.pcr_digest, digest, sizeof digest) != 0)
        return refuse(out, ATTEST_REFUSED_PCR_DIGEST);

    res.refusal = ATTEST_ACCEPTED;
    memcpy(res.pcr_digest, digest, sizeof digest);
    res.clock = q.clock;
    res.reset_count = q.reset_count;
    res.restart_count = q.restart_count;
    res.firmware_version = q.firmware_version;
    *out = res;
    return VMENC_OK;
}
