/*
 * lib/attest/credential.c - enrolment on the verifier's side: the EK
 * certificate chain check, the EK public area of the TCG EK profile's RSA
 * template, and TPM2_MakeCredential in software (TPM 2.0 Part 1 §24, Part 3
 * §12.6; byte layouts in docs/attest.md). Its one safety rule: the
 * credential is encrypted only to an EK public key taken from a certificate
 * that chained to a trusted TPM CA (or one the caller explicitly trusts),
 * and bound to the AK's name, so only that TPM holding that AK gets the
 * secret back; the seed and derived keys live in secure memory and are
 * wiped.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include "attest/attest.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sodium.h>

#include "attest/attest_internal.h"

/* The TCG EK Credential Profile's default RSA-2048 template (L-1): the
 * policy digest of PolicySecret(TPM_RH_ENDORSEMENT). */
static const uint8_t k_ek_policy[32] = {
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
};
#define EK_ATTRIBUTES 0x000300b2u /* fixedTPM|fixedParent|sensitiveDataOrigin|adminWithPolicy|restricted|decrypt */

vmenc_status attest_ek_public_from_modulus(const uint8_t *n, size_t n_len, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(n != NULL && n_len == 256 && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    attest_public p;
    memset(&p, 0, sizeof p);
    p.type = ATTEST_ALG_RSA;
    p.name_alg = ATTEST_ALG_SHA256;
    p.attributes = EK_ATTRIBUTES;
    p.auth_policy = k_ek_policy;
    p.auth_policy_len = sizeof k_ek_policy;
    p.sym_alg = ATTEST_ALG_AES;
    p.sym_bits = 128;
    p.sym_mode = ATTEST_ALG_CFB;
    p.scheme = ATTEST_ALG_NULL;
    p.rsa_bits = 2048;
    p.rsa_exponent = 0;
    p.rsa_modulus = n;
    p.rsa_modulus_len = n_len;
    return attest_public_marshal(&p, out, out_len);
}

/* ---- EK certificate ------------------------------------------------------ */

/* TPM EK certificates carry extensions OpenSSL does not know (the TCG
 * SubjectAltName directory name may be critical). Their content is not
 * ours to judge here; only the chain and the key are. */
static int ek_verify_cb(int ok, X509_STORE_CTX *ctx) {
    if (!ok && X509_STORE_CTX_get_error(ctx) == X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION)
        return 1;
    return ok;
}

static vmenc_status load_cas(X509_STORE *store, const char *ca_pem) {
    struct stat st;
    VMENC_ENSURE(stat(ca_pem, &st) == 0, VMENC_E_IO);
    if (S_ISDIR(st.st_mode)) {
        /* every *.pem in the directory: load them one by one (no hashed names needed) */
        VMENC_ENSURE(X509_STORE_load_path(store, ca_pem) == 1, VMENC_E_IO);
        return VMENC_OK;
    }
    VMENC_ENSURE(X509_STORE_load_file(store, ca_pem) == 1, VMENC_E_IO);
    return VMENC_OK;
}

vmenc_status attest_ek_cert_check(const uint8_t *der, size_t der_len, const char *ca_pem,
                                  uint8_t **out_ek_public, size_t *out_ek_public_len) {
    VMENC_ENSURE(der != NULL && der_len > 0 && der_len < 65536 && ca_pem != NULL &&
                     out_ek_public != NULL && out_ek_public_len != NULL,
                 VMENC_E_INVALID_ARG);
    const unsigned char *p = der;
    X509 *cert = d2i_X509(NULL, &p, (long)der_len);
    VMENC_ENSURE(cert != NULL, VMENC_E_PARSE);
    vmenc_status rv = VMENC_OK;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    BIGNUM *bn = NULL, *be = NULL;
    VMENC_ENSURE_GOTO(rv, p == der + der_len, VMENC_E_TRAILING_DATA, out);
    store = X509_STORE_new();
    ctx = X509_STORE_CTX_new();
    VMENC_ENSURE_GOTO(rv, store != NULL && ctx != NULL, VMENC_E_NOMEM, out);
    VMENC_GUARD_GOTO(rv, load_cas(store, ca_pem), out);
    X509_STORE_set_verify_cb(store, ek_verify_cb);
    VMENC_ENSURE_GOTO(rv, X509_STORE_CTX_init(ctx, store, cert, NULL) == 1, VMENC_E_CRYPTO, out);
    VMENC_ENSURE_GOTO(rv, X509_verify_cert(ctx) == 1, VMENC_E_AUTH, out);
    /* the key: RSA-2048 with exponent 65537 (the template's) */
    EVP_PKEY *pk = X509_get0_pubkey(cert);
    VMENC_ENSURE_GOTO(rv, pk != NULL && EVP_PKEY_is_a(pk, "RSA") && EVP_PKEY_get_bits(pk) == 2048,
                      VMENC_E_AUTH, out);
    VMENC_ENSURE_GOTO(rv, EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &bn) == 1 &&
                              EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &be) == 1,
                      VMENC_E_CRYPTO, out);
    VMENC_ENSURE_GOTO(rv, BN_is_word(be, 65537), VMENC_E_AUTH, out);
    uint8_t n[256];
    VMENC_ENSURE_GOTO(rv, BN_bn2binpad(bn, n, sizeof n) == (int)sizeof n, VMENC_E_CRYPTO, out);
    rv = attest_ek_public_from_modulus(n, sizeof n, out_ek_public, out_ek_public_len);
out:
    BN_free(bn);
    BN_free(be);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(cert);
    return rv;
}

/* ---- KDFa ------------------------------------------------------------------ */

/* The HMAC implementation, fetched once: an OpenSSL 3 fetch costs more than
 * the HMACs themselves (bench_attest: MakeCredential 10x a bare OAEP with a
 * fetch per call). Lives until exit. */
static EVP_MAC *g_hmac;
static pthread_once_t g_hmac_once = PTHREAD_ONCE_INIT;

static void hmac_fetch(void) { g_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL); }

static EVP_MAC *hmac_impl(void) {
    (void)pthread_once(&g_hmac_once, hmac_fetch);
    return g_hmac;
}

vmenc_status attest_kdfa(const uint8_t *key, size_t key_len, const char *label, const uint8_t *context_u,
                         size_t context_u_len, const uint8_t *context_v, size_t context_v_len,
                         uint8_t *out, size_t out_len) {
    VMENC_ENSURE(key != NULL && label != NULL && out != NULL && out_len > 0 && out_len <= 1024,
                 VMENC_E_INVALID_ARG);
    EVP_MAC *mac = hmac_impl();
    VMENC_ENSURE(mac != NULL, VMENC_E_CRYPTO);
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    vmenc_status rv = ctx != NULL ? VMENC_OK : VMENC_E_NOMEM;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    uint8_t bits[4], block[ATTEST_DIGEST_BYTES];
    vmenc_store_u32_be(bits, (uint32_t)(out_len * 8));
    for (uint32_t i = 1, done = 0; rv == VMENC_OK && done < out_len; i++) {
        uint8_t counter[4];
        size_t got = 0;
        vmenc_store_u32_be(counter, i);
        if (EVP_MAC_init(ctx, key, key_len, params) != 1 ||
            EVP_MAC_update(ctx, counter, 4) != 1 ||
            EVP_MAC_update(ctx, (const uint8_t *)label, strlen(label) + 1) != 1 ||
            (context_u_len && EVP_MAC_update(ctx, context_u, context_u_len) != 1) ||
            (context_v_len && EVP_MAC_update(ctx, context_v, context_v_len) != 1) ||
            EVP_MAC_update(ctx, bits, 4) != 1 || EVP_MAC_final(ctx, block, &got, sizeof block) != 1 ||
            got != sizeof block) {
            rv = VMENC_E_CRYPTO;
            break;
        }
        size_t take = out_len - done < sizeof block ? out_len - done : sizeof block;
        memcpy(out + done, block, take);
        done += (uint32_t)take;
    }
    sodium_memzero(block, sizeof block);
    EVP_MAC_CTX_free(ctx);
    return rv;
}

/* ---- MakeCredential ------------------------------------------------------- */

static vmenc_status hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *a, size_t a_len,
                                const uint8_t *b, size_t b_len, uint8_t out[ATTEST_DIGEST_BYTES]) {
    EVP_MAC *mac = hmac_impl();
    VMENC_ENSURE(mac != NULL, VMENC_E_CRYPTO);
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    size_t got = 0;
    bool ok = ctx != NULL && EVP_MAC_init(ctx, key, key_len, params) == 1 &&
              EVP_MAC_update(ctx, a, a_len) == 1 && EVP_MAC_update(ctx, b, b_len) == 1 &&
              EVP_MAC_final(ctx, out, &got, ATTEST_DIGEST_BYTES) == 1 && got == ATTEST_DIGEST_BYTES;
    EVP_MAC_CTX_free(ctx);
    return ok ? VMENC_OK : VMENC_E_CRYPTO;
}

/* Derived keys, in one secure block. */
typedef struct cred_keys {
    uint8_t sym[16];                    /* AES-128 (the EK template's symmetric) */
    uint8_t hmac[ATTEST_DIGEST_BYTES];  /* integrity key */
    uint8_t plain[2 + ATTEST_SECRET_MAX];
} cred_keys;

vmenc_status attest_make_credential_seeded(const uint8_t *seed, size_t seed_len, const uint8_t *ak_name,
                                           size_t ak_name_len, const uint8_t *secret, size_t secret_len,
                                           uint8_t **out_cred_blob, size_t *out_cred_blob_len) {
    VMENC_ENSURE(seed != NULL && seed_len > 0 && seed_len <= 64 && ak_name != NULL &&
                     ak_name_len == ATTEST_NAME_BYTES && secret != NULL && secret_len > 0 &&
                     secret_len <= ATTEST_SECRET_MAX && out_cred_blob != NULL &&
                     out_cred_blob_len != NULL,
                 VMENC_E_INVALID_ARG);
    cred_keys *k = vmenc_secure_alloc_pooled(sizeof *k);
    VMENC_ENSURE(k != NULL, VMENC_E_NOMEM);
    vmenc_status rv;
    uint8_t enc[2 + ATTEST_SECRET_MAX], mac[ATTEST_DIGEST_BYTES];
    size_t enc_len = 2 + secret_len;
    EVP_CIPHER_CTX *cctx = NULL;
    /* symKey = KDFa(nameAlg, seed, "STORAGE", name, NULL, 128) */
    VMENC_GUARD_GOTO(rv, attest_kdfa(seed, seed_len, "STORAGE", ak_name, ak_name_len, NULL, 0, k->sym,
                                     sizeof k->sym), out);
    /* HMACkey = KDFa(nameAlg, seed, "INTEGRITY", NULL, NULL, 256) */
    VMENC_GUARD_GOTO(rv, attest_kdfa(seed, seed_len, "INTEGRITY", NULL, 0, NULL, 0, k->hmac,
                                     sizeof k->hmac), out);
    /* encIdentity = AES-128-CFB(symKey, IV 0, TPM2B_DIGEST(secret)) */
    k->plain[0] = (uint8_t)(secret_len >> 8);
    k->plain[1] = (uint8_t)secret_len;
    memcpy(k->plain + 2, secret, secret_len);
    static const uint8_t zero_iv[16];
    int l1 = 0, l2 = 0;
    cctx = EVP_CIPHER_CTX_new();
    VMENC_ENSURE_GOTO(rv, cctx != NULL, VMENC_E_NOMEM, out);
    VMENC_ENSURE_GOTO(rv,
                      EVP_EncryptInit_ex(cctx, EVP_aes_128_cfb128(), NULL, k->sym, zero_iv) == 1 &&
                          EVP_EncryptUpdate(cctx, enc, &l1, k->plain, (int)enc_len) == 1 &&
                          EVP_EncryptFinal_ex(cctx, enc + l1, &l2) == 1 && (size_t)(l1 + l2) == enc_len,
                      VMENC_E_CRYPTO, out);
    /* outerHMAC = HMAC(HMACkey, encIdentity || name) */
    VMENC_GUARD_GOTO(rv, hmac_sha256(k->hmac, sizeof k->hmac, enc, enc_len, ak_name, ak_name_len, mac),
                     out);
    /* TPM2B_ID_OBJECT = size || TPM2B_DIGEST(outerHMAC) || encIdentity */
    vmenc_cbb b;
    VMENC_GUARD_GOTO(rv, vmenc_cbb_init(&b, 4 + sizeof mac + enc_len), out);
    size_t mark = vmenc_cbb_begin_prefix(&b, 2);
    vmenc_cbb_add_u16(&b, (uint16_t)sizeof mac);
    vmenc_cbb_add_bytes(&b, mac, sizeof mac);
    vmenc_cbb_add_bytes(&b, enc, enc_len);
    vmenc_cbb_end_prefix(&b, mark, 2);
    rv = vmenc_cbb_finish(&b, out_cred_blob, out_cred_blob_len);
out:
    EVP_CIPHER_CTX_free(cctx);
    vmenc_secure_free(k);
    return rv;
}

/* RSA-OAEP(SHA-256, label "IDENTITY\0") of |seed| to the EK. */
static vmenc_status oaep_to_ek(const attest_public *ek, const uint8_t *seed, size_t seed_len,
                               uint8_t **out, size_t *out_len) {
    EVP_PKEY *pkey = attest_rsa_pkey(ek->rsa_modulus, ek->rsa_modulus_len, ek->rsa_exponent);
    VMENC_ENSURE(pkey != NULL, VMENC_E_CRYPTO);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    vmenc_status rv = VMENC_E_CRYPTO;
    uint8_t ct[512];
    size_t ct_len = sizeof ct;
    unsigned char *label = OPENSSL_malloc(9);
    if (ctx != NULL && label != NULL && EVP_PKEY_encrypt_init(ctx) == 1 &&
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
        EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) == 1 &&
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) == 1) {
        memcpy(label, "IDENTITY", 9); /* with its NUL */
        if (EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, label, 9) == 1) {
            label = NULL; /* owned by ctx */
            if (EVP_PKEY_encrypt(ctx, ct, &ct_len, seed, seed_len) == 1)
                rv = VMENC_OK;
        }
    }
    OPENSSL_free(label);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    VMENC_GUARD(rv);
    vmenc_cbb b;
    VMENC_GUARD(vmenc_cbb_init(&b, 2 + ct_len));
    vmenc_cbb_add_u16(&b, (uint16_t)ct_len);
    vmenc_cbb_add_bytes(&b, ct, ct_len);
    return vmenc_cbb_finish(&b, out, out_len);
}

vmenc_status attest_make_credential(const uint8_t *ek_public, size_t ek_public_len, const uint8_t *ak_name,
                                    size_t ak_name_len, const uint8_t *secret, size_t secret_len,
                                    uint8_t **out_cred_blob, size_t *out_cred_blob_len,
                                    uint8_t **out_enc_secret, size_t *out_enc_secret_len) {
    VMENC_ENSURE(ek_public != NULL && out_cred_blob != NULL && out_cred_blob_len != NULL &&
                     out_enc_secret != NULL && out_enc_secret_len != NULL,
                 VMENC_E_INVALID_ARG);
    attest_public ek;
    VMENC_ENSURE(attest_public_parse(ek_public, ek_public_len, &ek) == VMENC_OK, VMENC_E_INVALID_ARG);
    /* The seed size and KDF follow the EK's nameAlg, the key its symmetric
     * definition: SHA-256 and AES-128-CFB is the RSA template's. */
    VMENC_ENSURE(ek.type == ATTEST_ALG_RSA && ek.name_alg == ATTEST_ALG_SHA256 &&
                     ek.sym_alg == ATTEST_ALG_AES && ek.sym_bits == 128 && ek.sym_mode == ATTEST_ALG_CFB &&
                     (ek.attributes & (ATTEST_OA_DECRYPT | ATTEST_OA_RESTRICTED)) ==
                         (ATTEST_OA_DECRYPT | ATTEST_OA_RESTRICTED) &&
                     ek.rsa_modulus_len >= 256,
                 VMENC_E_BAD_ALGORITHM);
    uint8_t *seed = vmenc_secure_alloc_pooled(ATTEST_DIGEST_BYTES);
    VMENC_ENSURE(seed != NULL, VMENC_E_NOMEM);
    randombytes_buf(seed, ATTEST_DIGEST_BYTES);
    uint8_t *blob = NULL, *enc = NULL;
    size_t blob_len = 0, enc_len = 0;
    vmenc_status rv = attest_make_credential_seeded(seed, ATTEST_DIGEST_BYTES, ak_name, ak_name_len, secret,
                                                    secret_len, &blob, &blob_len);
    if (rv == VMENC_OK)
        rv = oaep_to_ek(&ek, seed, ATTEST_DIGEST_BYTES, &enc, &enc_len);
    vmenc_secure_free(seed);
    if (rv != VMENC_OK) {
        free(blob);
        return rv;
    }
    *out_cred_blob = blob;
    *out_cred_blob_len = blob_len;
    *out_enc_secret = enc;
    *out_enc_secret_len = enc_len;
    return VMENC_OK;
}
