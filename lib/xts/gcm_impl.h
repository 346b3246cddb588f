/*
 * lib/xts/gcm_impl.h - private interface of vmenc's AES-256-GCM engines on
 * VAES and VPCLMULQDQ: with 512-bit registers (gcm_vaes_avx512.c) and with
 * 256-bit ones (gcm_vaes_avx2.c, for CPUs with VAES but no AVX-512); both
 * use one key layout and share gcm_common.h. Their only user is
 * lib/keys/aead.c, which calls an engine only when its _usable() says the
 * CPU has the instructions, and uses OpenSSL's EVP otherwise.
 *
 * Safety rule: a vmenc_gcm_key holds the expanded AES key and the powers of
 * the hash key - it lives in secure memory and is wiped by its owner.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_XTS_GCM_IMPL_H
#define VMENC_LIB_XTS_GCM_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"

typedef struct vmenc_gcm_key {
    uint8_t rk[15][16];   /* AES-256 round keys, encryption order */
    uint8_t hpow[16][16]; /* H^16 .. H^1, reflected and multiplied by x */
} vmenc_gcm_key;

/* vmenc_gcm_vaes_avx512_usable: does this CPU have what the engine needs
 * (AVX-512 F/VL/BW, VAES, VPCLMULQDQ, AES-NI, with the OS saving zmm)? */
VMENC_INTERNAL bool vmenc_gcm_vaes_avx512_usable(void);

/* vmenc_gcm_vaes_avx512_init expands the 32-byte |key| into |k|. */
VMENC_INTERNAL void vmenc_gcm_vaes_avx512_init(vmenc_gcm_key *k, const uint8_t key[32]);

/* vmenc_gcm_vaes_avx512_crypt en- or decrypts |len| bytes of |in| into |out|
 * (may be equal) with the 12-byte |nonce| and writes the GCM tag over |aad|
 * and the ciphertext to |tag| (on decryption the caller compares it with
 * the received one). No limits beyond GCM's own (len < 2^36 - 32). */
VMENC_INTERNAL void vmenc_gcm_vaes_avx512_crypt(const vmenc_gcm_key *k, bool enc, const uint8_t nonce[12],
                                                const uint8_t *aad, size_t aad_len, const uint8_t *in,
                                                uint8_t *out, size_t len, uint8_t tag[16]);

/* The same three on VAES and VPCLMULQDQ with 256-bit registers (AVX2, no
 * AVX-512 needed); the key block is interchangeable with the one above. */
VMENC_INTERNAL bool vmenc_gcm_vaes_avx2_usable(void);
VMENC_INTERNAL void vmenc_gcm_vaes_avx2_init(vmenc_gcm_key *k, const uint8_t key[32]);
VMENC_INTERNAL void vmenc_gcm_vaes_avx2_crypt(const vmenc_gcm_key *k, bool enc, const uint8_t nonce[12],
                                              const uint8_t *aad, size_t aad_len, const uint8_t *in,
                                              uint8_t *out, size_t len, uint8_t tag[16]);

/* The engines, fastest first (lib/xts/gcm_engines.c): lib/keys/aead.c
 * picks from it, the tests run every entry the CPU has. */
typedef struct vmenc_gcm_engine {
    const char *name; /* "vaes-avx512", "vaes-avx2" (VMENC_AEAD_IMPL) */
    bool (*usable)(void);
    void (*init)(vmenc_gcm_key *k, const uint8_t key[32]);
    void (*crypt)(const vmenc_gcm_key *k, bool enc, const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
                  const uint8_t *in, uint8_t *out, size_t len, uint8_t tag[16]);
} vmenc_gcm_engine;

VMENC_INTERNAL extern const vmenc_gcm_engine vmenc_gcm_engines[];
VMENC_INTERNAL extern const size_t vmenc_gcm_num_engines;

#endif /* VMENC_LIB_XTS_GCM_IMPL_H */
