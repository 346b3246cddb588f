/*
 * lib/keys/aead.c - AES-256-GCM keyed once (interface and key-handling rule
 * in aead.h; the record formats that use it in docs/vm-format.md and
 * docs/migration.md). Three engines, chosen once per object: vmenc's own
 * VAES GCM on 512-bit registers (lib/xts/gcm_vaes_avx512.c) where the CPU
 * has AVX-512, else on 256-bit ones (lib/xts/gcm_vaes_avx2.c) where it has
 * VAES and AVX2 - their key schedule and hash-key powers inside this object,
 * in secure memory -, else one OpenSSL EVP context that serves both
 * directions: each call sets the nonce and the direction without re-keying,
 * so a record costs no key expansion either way.
 *
 * Safety rule: nothing unauthenticated is left in the output of a failed
 * open, and the raw key is never stored.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <openssl/evp.h>
#include <sodium.h>
#include <stdlib.h>

#include <string.h>

#include "keys/aead.h"
#include "xts/gcm_impl.h"

struct vmenc_aead {
    EVP_CIPHER_CTX *ctx;    /* OpenSSL engine: holds the key schedule (OpenSSL's heap; see aead.h) */
    const vmenc_gcm_engine *eng;  /* else one of ours: |gk| holds the key schedule */
    vmenc_gcm_key gk;
};

/* pick: the engine |impl| names (NULL: the first this CPU runs; "openssl":
 * *eng = NULL). An unknown name is INVALID_ARG, a known one the CPU cannot
 * run UNSUPPORTED. */
static vmenc_status pick(const char *impl, const vmenc_gcm_engine **eng) {
    *eng = NULL;
    for (size_t i = 0; i < vmenc_gcm_num_engines; i++) {
        if (impl == NULL && vmenc_gcm_engines[i].usable()) {
            *eng = &vmenc_gcm_engines[i];
            return VMENC_OK;
        }
        if (impl != NULL && strcmp(impl, vmenc_gcm_engines[i].name) == 0) {
            *eng = &vmenc_gcm_engines[i];
            return vmenc_gcm_engines[i].usable() ? VMENC_OK : VMENC_E_UNSUPPORTED;
        }
    }
    return impl == NULL || strcmp(impl, "openssl") == 0 ? VMENC_OK : VMENC_E_INVALID_ARG;
}

vmenc_status vmenc_aead_new_impl(const uint8_t key[VMENC_AEAD_KEY_BYTES], const char *impl, vmenc_aead **out) {
    VMENC_ENSURE_REF(key);
    VMENC_ENSURE_REF(out);
    const vmenc_gcm_engine *eng = NULL;
    VMENC_GUARD(pick(impl, &eng));
    vmenc_aead *a = vmenc_secure_alloc_pooled(sizeof(*a));
    if (a == NULL)
        return VMENC_E_NOMEM;
    memset(a, 0, sizeof(*a));
    if (eng != NULL) {
        a->eng = eng;
        eng->init(&a->gk, key);
        *out = a;
        return VMENC_OK;
    }
    a->ctx = EVP_CIPHER_CTX_new();
    if (a->ctx == NULL) {
        vmenc_secure_free(a);
        return VMENC_E_NOMEM;
    }
    if (EVP_CipherInit_ex(a->ctx, EVP_aes_256_gcm(), NULL, key, NULL, 1) != 1) {
        vmenc_aead_free(a);
        return VMENC_E_CRYPTO;
    }
    *out = a;
    return VMENC_OK;
}

vmenc_status vmenc_aead_new(const uint8_t key[VMENC_AEAD_KEY_BYTES], vmenc_aead **out) {
    /* VMENC_AEAD_IMPL picks the engine like VMENC_XTS_IMPL picks the XTS
     * backend (benchmarks, comparisons); secure_getenv: a setuid host does
     * not let its caller choose. Empty means not set. */
    const char *impl = secure_getenv("VMENC_AEAD_IMPL");
    if (impl != NULL && impl[0] == '\0')
        impl = NULL;
    return vmenc_aead_new_impl(key, impl, out);
}

const char *vmenc_aead_engine(const vmenc_aead *a) {
    return a == NULL ? NULL : a->eng != NULL ? a->eng->name : "openssl";
}

/* start sets the nonce and direction and authenticates the AAD. */
static bool start(vmenc_aead *a, int enc, const uint8_t *nonce, const uint8_t *aad,
                  size_t aad_len) {
    int n = 0;
    if (EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, nonce, enc) != 1)
        return false;
    return aad_len == 0 || EVP_CipherUpdate(a->ctx, NULL, &n, aad, (int)aad_len) == 1;
}

static bool args_ok(const uint8_t *nonce, const uint8_t *aad, size_t aad_len, const uint8_t *in,
                    size_t len, const uint8_t *out, const uint8_t *tag) {
    return nonce != NULL && tag != NULL && (aad != NULL || aad_len == 0) &&
           ((in != NULL && out != NULL) || len == 0) && len <= VMENC_AEAD_MAX_BYTES &&
           aad_len <= VMENC_AEAD_MAX_BYTES;
}

vmenc_status vmenc_aead_seal(vmenc_aead *a, const uint8_t nonce[VMENC_AEAD_NONCE_BYTES],
                             const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t len,
                             uint8_t *ct, uint8_t tag[VMENC_AEAD_TAG_BYTES]) {
    VMENC_ENSURE_REF(a);
    VMENC_ENSURE(args_ok(nonce, aad, aad_len, pt, len, ct, tag), VMENC_E_INVALID_ARG);
    if (a->eng != NULL) {
        a->eng->crypt(&a->gk, true, nonce, aad, aad_len, pt, ct, len, tag);
        return VMENC_OK;
    }
    int n = 0;
    if (!start(a, 1, nonce, aad, aad_len) ||
        (len > 0 && EVP_CipherUpdate(a->ctx, ct, &n, pt, (int)len) != 1) ||
        EVP_CipherFinal_ex(a->ctx, ct == NULL ? NULL : ct + len, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_GCM_GET_TAG, VMENC_AEAD_TAG_BYTES, tag) != 1)
        return VMENC_E_CRYPTO;
    return VMENC_OK;
}

vmenc_status vmenc_aead_open(vmenc_aead *a, const uint8_t nonce[VMENC_AEAD_NONCE_BYTES],
                             const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t len,
                             const uint8_t tag[VMENC_AEAD_TAG_BYTES], uint8_t *pt) {
    VMENC_ENSURE_REF(a);
    VMENC_ENSURE(args_ok(nonce, aad, aad_len, ct, len, pt, tag), VMENC_E_INVALID_ARG);
    if (a->eng != NULL) {
        uint8_t want[VMENC_AEAD_TAG_BYTES];
        a->eng->crypt(&a->gk, false, nonce, aad, aad_len, ct, pt, len, want);
        bool ok = vmenc_ct_equal(want, tag, sizeof(want));
        sodium_memzero(want, sizeof(want));
        if (!ok) {
            if (len > 0)
                sodium_memzero(pt, len); /* nothing unauthenticated stays readable */
            return VMENC_E_AUTH;
        }
        return VMENC_OK;
    }
    int n = 0;
    /* The tag is set before the data: OpenSSL compares it in constant time
     * in the final call. */
    bool ok = start(a, 0, nonce, aad, aad_len) &&
              EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_GCM_SET_TAG, VMENC_AEAD_TAG_BYTES,
                                  (void *)(uintptr_t)tag) == 1 &&
              (len == 0 || EVP_CipherUpdate(a->ctx, pt, &n, ct, (int)len) == 1);
    if (!ok) {
        if (len > 0)
            sodium_memzero(pt, len);
        return VMENC_E_CRYPTO;
    }
    if (EVP_CipherFinal_ex(a->ctx, pt == NULL ? NULL : pt + len, &n) != 1) {
        if (len > 0)
            sodium_memzero(pt, len);
        return VMENC_E_AUTH;
    }
    return VMENC_OK;
}

void vmenc_aead_free(vmenc_aead *a) {
    if (a == NULL)
        return;
    EVP_CIPHER_CTX_free(a->ctx); /* the provider cleanses its key schedule */
    vmenc_secure_free(a);        /* wipes |gk| */
}
