/*
 * lib/xts/portable.c - the "portable" backend: OpenSSL's EVP XTS, for CPUs
 * without AES-NI (and as an independent implementation to compare against).
 *
 * OpenSSL's XTS code has no secret-indexed tables on the paths it picks
 * (AES-NI, else bit-sliced or vector-permute AES). The context keeps only the
 * raw key, in secure memory; each call expands it into a fresh
 * EVP_CIPHER_CTX, sets the tweak per sector, and frees the context (OpenSSL
 * cleanses the schedule on free). Nothing is shared between calls, so a
 * context stays immutable and usable from any number of threads.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <openssl/evp.h>

#include "xts/xts_impl.h"

vmenc_status vmenc_xts_portable_init(struct vmenc_xts *x) {
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, x->key_len == VMENC_XTS_KEYBYTES_256 ? "AES-256-XTS"
                                                                                : "AES-128-XTS",
                                     NULL);
    if (c == NULL)
        return VMENC_E_UNSUPPORTED;
    x->evp_cipher = c;
    return VMENC_OK;
}

void vmenc_xts_portable_cleanup(struct vmenc_xts *x) {
    EVP_CIPHER_free((EVP_CIPHER *)x->evp_cipher);
    x->evp_cipher = NULL;
}

static vmenc_status begin(const struct vmenc_xts *x, bool enc, EVP_CIPHER_CTX **out) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        return VMENC_E_NOMEM;
    if (EVP_CipherInit_ex(ctx, (const EVP_CIPHER *)x->evp_cipher, NULL, x->sched->raw, NULL,
                          enc ? 1 : 0) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return VMENC_E_CRYPTO;
    }
    *out = ctx;
    return VMENC_OK;
}

static vmenc_status one_unit(EVP_CIPHER_CTX *ctx, const uint8_t tweak[16], const uint8_t *in,
                             uint8_t *out, size_t len) {
    int out_len = 0;
    if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, tweak, -1) != 1 ||
        EVP_CipherUpdate(ctx, out, &out_len, in, (int)len) != 1 || (size_t)out_len != len)
        return VMENC_E_CRYPTO;
    return VMENC_OK;
}

static vmenc_status portable_sectors(const struct vmenc_xts *x, bool enc, uint64_t first,
                                     const uint8_t *in, uint8_t *out, size_t num_sectors) {
    EVP_CIPHER_CTX *ctx = NULL;
    VMENC_GUARD(begin(x, enc, &ctx));
    vmenc_status rv = VMENC_OK;
    uint8_t tweak[16] = {0};
    for (size_t i = 0; i < num_sectors && rv == VMENC_OK; i++) {
        vmenc_store_u64_le(tweak, first + (uint64_t)i); /* plain64; wraps mod 2^64 */
        rv = one_unit(ctx, tweak, in + i * x->sector_size, out + i * x->sector_size,
                      x->sector_size);
    }
    EVP_CIPHER_CTX_free(ctx);
    return rv;
}

static vmenc_status portable_unit(const struct vmenc_xts *x, bool enc, const uint8_t tweak[16],
                                  const uint8_t *in, uint8_t *out, size_t len) {
    EVP_CIPHER_CTX *ctx = NULL;
    VMENC_GUARD(begin(x, enc, &ctx));
    vmenc_status rv = one_unit(ctx, tweak, in, out, len);
    EVP_CIPHER_CTX_free(ctx);
    return rv;
}

const vmenc_xts_backend vmenc_xts_backend_portable = {
    .name = "portable",
    .cpu_required = 0,
    .sectors = portable_sectors,
    .unit = portable_unit,
};
