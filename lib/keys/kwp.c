/*
 * lib/keys/kwp.c - AES key wrap with padding (RFC 5649 = NIST SP 800-38F
 * KWP), built on single-block AES-ECB from OpenSSL EVP.
 *
 * Wrap: A = 0xA65959A6 || be32(MLI); the key data is zero-padded to n
 * 64-bit semiblocks. n = 1: C = AES(K, A || P). n >= 2: the RFC 3394
 * wrapping process W with 6n steps, t = n*j + i xored into A.
 * Unwrap inverts that and accepts only if A's first half is 0xA65959A6,
 * 8(n-1) < MLI <= 8n and every padding byte is zero; these checks are folded
 * into one flag without data-dependent branches, and on failure the output
 * is wiped so nothing unauthenticated escapes.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <openssl/evp.h>
#include <sodium.h>
#include <string.h>

#include "keys/keys_impl.h"

#define KWP_MAX_IN ((size_t)1 << 31)
static const uint8_t k_aiv_prefix[4] = {0xA6, 0x59, 0x59, 0xA6};

static const EVP_CIPHER *ecb_for(size_t kek_len) {
    switch (kek_len) {
    case 16: return EVP_aes_128_ecb();
    case 24: return EVP_aes_192_ecb();
    case 32: return EVP_aes_256_ecb();
    }
    return NULL;
}

/* ecb_new returns an AES-ECB context (no padding) keyed with |kek| for
 * encryption (enc = 1) or decryption (enc = 0), or NULL. */
static EVP_CIPHER_CTX *ecb_new(const uint8_t *kek, size_t kek_len, int enc) {
    const EVP_CIPHER *c = ecb_for(kek_len);
    EVP_CIPHER_CTX *ctx = c != NULL ? EVP_CIPHER_CTX_new() : NULL;
    if (ctx == NULL)
        return NULL;
    if (EVP_CipherInit_ex(ctx, c, NULL, kek, NULL, enc) != 1 || EVP_CIPHER_CTX_set_padding(ctx, 0) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* block runs AES on one 16-byte block in place. */
static bool block(EVP_CIPHER_CTX *ctx, uint8_t b[16]) {
    int n = 0;
    return EVP_CipherUpdate(ctx, b, &n, b, 16) == 1 && n == 16;
}

static void xor_t(uint8_t a[8], uint64_t t) {
    for (int k = 7; k >= 0; k--, t >>= 8)
        a[k] ^= (uint8_t)t;
}

vmenc_status vmenc_aes_kwp_wrap(const uint8_t *kek, size_t kek_len, const uint8_t *in, size_t in_len,
                                uint8_t *out, size_t out_cap, size_t *out_len) {
    VMENC_ENSURE(kek != NULL && in != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(ecb_for(kek_len) != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(in_len >= 1 && in_len <= KWP_MAX_IN, VMENC_E_INVALID_ARG);
    size_t padded = (in_len + 7) / 8 * 8;
    size_t n = padded / 8;
    VMENC_ENSURE(out_cap >= padded + 8, VMENC_E_BUFFER_TOO_SMALL);
    EVP_CIPHER_CTX *ctx = ecb_new(kek, kek_len, 1);
    if (ctx == NULL)
        return VMENC_E_CRYPTO;

    /* out = A || R[1..n]; memmove: |in| may alias |out|. */
    memmove(out + 8, in, in_len);
    memset(out + 8 + in_len, 0, padded - in_len);
    memcpy(out, k_aiv_prefix, 4);
    vmenc_store_u32_be(out + 4, (uint32_t)in_len);

    vmenc_status rv = VMENC_OK;
    uint8_t b[16];
    if (n == 1) {
        memcpy(b, out, 16);
        if (!block(ctx, b))
            rv = VMENC_E_CRYPTO;
        else
            memcpy(out, b, 16);
    } else {
        for (uint64_t j = 0; j < 6 && rv == VMENC_OK; j++) {
            for (size_t i = 1; i <= n; i++) {
                memcpy(b, out, 8);
                memcpy(b + 8, out + 8 * i, 8);
                if (!block(ctx, b)) {
                    rv = VMENC_E_CRYPTO;
                    break;
                }
                xor_t(b, (uint64_t)n * j + i);
                memcpy(out, b, 8);
                memcpy(out + 8 * i, b + 8, 8);
            }
        }
    }
    sodium_memzero(b, sizeof(b));
    EVP_CIPHER_CTX_free(ctx);
    if (rv != VMENC_OK) {
        sodium_memzero(out, padded + 8);
        return rv;
    }
    *out_len = padded + 8;
    return VMENC_OK;
}

/* ct_is_zero_u32 is all-ones if x == 0, else zero, without branches. */
static uint32_t ct_is_zero_u32(uint32_t x) { return (uint32_t)(((uint64_t)x - 1) >> 32); }

vmenc_status vmenc_aes_kwp_unwrap(const uint8_t *kek, size_t kek_len, const uint8_t *in, size_t in_len,
                                  uint8_t *out, size_t out_cap, size_t *out_len) {
    VMENC_ENSURE(kek != NULL && in != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(ecb_for(kek_len) != NULL, VMENC_E_INVALID_ARG);
    /* A wrong length cannot come from a wrap: inauthentic, like a bad ICV. */
    VMENC_ENSURE(in_len >= 16 && in_len % 8 == 0 && in_len - 8 <= KWP_MAX_IN + 7, VMENC_E_AUTH);
    size_t n = in_len / 8 - 1;
    VMENC_ENSURE(out_cap >= 8 * n, VMENC_E_BUFFER_TOO_SMALL);
    EVP_CIPHER_CTX *ctx = ecb_new(kek, kek_len, 0);
    if (ctx == NULL)
        return VMENC_E_CRYPTO;

    vmenc_status rv = VMENC_OK;
    uint8_t a[8], b[16];
    if (n == 1) {
        memcpy(b, in, 16);
        if (!block(ctx, b))
            rv = VMENC_E_CRYPTO;
        memcpy(a, b, 8);
        memcpy(out, b + 8, 8);
    } else {
        memcpy(a, in, 8);
        memmove(out, in + 8, 8 * n); /* R[1..n]; |in| may alias |out| */
        for (uint64_t j = 6; j-- > 0 && rv == VMENC_OK;) {
            for (size_t i = n; i >= 1; i--) {
                memcpy(b, a, 8);
                xor_t(b, (uint64_t)n * j + i);
                memcpy(b + 8, out + 8 * (i - 1), 8);
                if (!block(ctx, b)) {
                    rv = VMENC_E_CRYPTO;
                    break;
                }
                memcpy(a, b, 8);
                memcpy(out + 8 * (i - 1), b + 8, 8);
            }
        }
    }
    EVP_CIPHER_CTX_free(ctx);

    /* One flag for all three checks; no early exit on secret-derived data. */
    uint32_t bad = 0;
    for (int k = 0; k < 4; k++)
        bad |= (uint32_t)(a[k] ^ k_aiv_prefix[k]);
    uint64_t mli = vmenc_load_u32_be(a + 4);
    /* 8(n-1) < MLI <= 8n  <=>  MLI - 8(n-1) - 1 in [0, 7] (unsigned). */
    uint64_t off = mli - 8 * ((uint64_t)n - 1) - 1;
    bad |= (uint32_t)((off >> 3) != 0);
    /* Padding: bytes of the last semiblock at positions >= MLI must be 0. */
    uint64_t last = 8 * ((uint64_t)n - 1);
    for (uint64_t k = 0; k < 8; k++) {
        uint64_t pos = last + k;
        uint32_t below = (uint32_t)((pos - mli) >> 63); /* 1 iff pos < MLI */
        uint32_t is_pad = ct_is_zero_u32(below);
        bad |= out[pos] & is_pad;
    }
    sodium_memzero(a, sizeof(a));
    sodium_memzero(b, sizeof(b));
    if (rv != VMENC_OK || bad != 0) {
        sodium_memzero(out, 8 * n);
        return rv != VMENC_OK ? rv : VMENC_E_AUTH;
    }
    *out_len = (size_t)mli;
    return VMENC_OK;
}
