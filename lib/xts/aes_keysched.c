/*
 * lib/xts/aes_keysched.c - AES-128/AES-256 key expansion with AES-NI
 * (AESKEYGENASSIST), shared by the aesni and VAES backends. Compiled with
 * -maes; called only after the CPU has been checked for AES-NI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <immintrin.h>
#include <string.h>

#include "xts/xts_impl.h"

/* One FIPS-197 key-expansion step: w' = w ^ (w << 32) ^ (w << 64) ^ (w << 96)
 * ^ broadcast(word chosen from the AESKEYGENASSIST result). */
static inline __m128i expand_step(__m128i w, __m128i assist) {
    w = _mm_xor_si128(w, _mm_slli_si128(w, 4));
    w = _mm_xor_si128(w, _mm_slli_si128(w, 4));
    w = _mm_xor_si128(w, _mm_slli_si128(w, 4));
    return _mm_xor_si128(w, assist);
}

static void expand128(const uint8_t *key, uint8_t ek[VMENC_XTS_MAX_ROUNDS + 1][16]) {
    __m128i k[11];
    k[0] = _mm_loadu_si128((const __m128i *)key);
/* AESKEYGENASSIST needs its round constant as an immediate. */
#define STEP128(i, rcon) \
    k[i] = expand_step(k[i - 1], _mm_shuffle_epi32(_mm_aeskeygenassist_si128(k[i - 1], rcon), 0xff))
    STEP128(1, 0x01);
    STEP128(2, 0x02);
    STEP128(3, 0x04);
    STEP128(4, 0x08);
    STEP128(5, 0x10);
    STEP128(6, 0x20);
    STEP128(7, 0x40);
    STEP128(8, 0x80);
    STEP128(9, 0x1b);
    STEP128(10, 0x36);
#undef STEP128
    for (int i = 0; i <= 10; i++)
        _mm_storeu_si128((__m128i *)ek[i], k[i]);
    vmenc_memzero(k, sizeof(k));
}

static void expand256(const uint8_t *key, uint8_t ek[VMENC_XTS_MAX_ROUNDS + 1][16]) {
    __m128i k[15];
    k[0] = _mm_loadu_si128((const __m128i *)key);
    k[1] = _mm_loadu_si128((const __m128i *)(key + 16));
/* Even round keys take RotWord(SubWord(w)) ^ rcon of the previous odd key
 * (word 3 of the assist), odd ones SubWord(w) of the previous even key
 * (word 2, with rcon 0). */
#define STEP256(i, rcon)                                                                         \
    do {                                                                                         \
        k[i] = expand_step(k[i - 2],                                                             \
                           _mm_shuffle_epi32(_mm_aeskeygenassist_si128(k[i - 1], rcon), 0xff));  \
        if ((i) + 1 <= 14)                                                                       \
            k[(i) + 1] = expand_step(                                                            \
                k[i - 1], _mm_shuffle_epi32(_mm_aeskeygenassist_si128(k[i], 0x00), 0xaa));       \
    } while (0)
    STEP256(2, 0x01);
    STEP256(4, 0x02);
    STEP256(6, 0x04);
    STEP256(8, 0x08);
    STEP256(10, 0x10);
    STEP256(12, 0x20);
    k[14] = expand_step(k[12], _mm_shuffle_epi32(_mm_aeskeygenassist_si128(k[13], 0x40), 0xff));
#undef STEP256
    for (int i = 0; i <= 14; i++)
        _mm_storeu_si128((__m128i *)ek[i], k[i]);
    vmenc_memzero(k, sizeof(k));
}

void vmenc_aesni_expand_key(const uint8_t *key, size_t key_bytes,
                            uint8_t ek[VMENC_XTS_MAX_ROUNDS + 1][16]) {
    if (key_bytes == 16)
        expand128(key, ek);
    else
        expand256(key, ek);
}

void vmenc_aesni_invert_key(const uint8_t ek[VMENC_XTS_MAX_ROUNDS + 1][16], unsigned rounds,
                            uint8_t dk[VMENC_XTS_MAX_ROUNDS + 1][16]) {
    /* Equivalent inverse cipher (FIPS-197 5.3.5): reversed order, InvMixColumns
     * applied to every round key but the first and the last. */
    memcpy(dk[0], ek[rounds], 16);
    for (unsigned i = 1; i < rounds; i++) {
        __m128i k = _mm_aesimc_si128(_mm_loadu_si128((const __m128i *)ek[rounds - i]));
        _mm_storeu_si128((__m128i *)dk[i], k);
    }
    memcpy(dk[rounds], ek[0], 16);
}
