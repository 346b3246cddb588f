/*
 * lib/xts/gcm_common.h - what vmenc's two AES-256-GCM engines share
 * (gcm_vaes_avx512.c on 512-bit registers, gcm_vaes_avx2.c on 256-bit
 * ones): the 128-bit GHASH multiplication and reduction, one AES block, and
 * the key set-up (round keys and the powers H^16..H^1 of the hash key). The
 * representation is described in gcm_vaes_avx512.c's header; the key layout
 * in gcm_impl.h.
 *
 * Safety rule: everything here is always_inline into a function that clears
 * the vector registers before it returns (gcm_vregs.h), so no helper leaves
 * key material anywhere but in the caller's key block.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_XTS_GCM_COMMON_H
#define VMENC_LIB_XTS_GCM_COMMON_H

#include <immintrin.h>

#include "xts/gcm_impl.h"
#include "xts/xts_impl.h"

#define GCM_AI static inline __attribute__((always_inline))

/* Reverse the 16 bytes of a block. */
GCM_AI __m128i gcm_bswap128(__m128i v) {
    return _mm_shuffle_epi8(v, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

/* x^63 + x^62 + x^57 in the high half: folds the low half of a product. */
GCM_AI __m128i gcm_poly128(void) { return _mm_set_epi64x((long long)0xc200000000000000ull, 1); }

/* reduce: lo + mi*x^64 + hi*x^128 times x^-128 modulo the (reflected) GHASH
 * polynomial. Linear, so per-lane products may be summed before it. */
GCM_AI __m128i gcm_reduce128(__m128i lo, __m128i mi, __m128i hi) {
    __m128i p = gcm_poly128();
    __m128i t = _mm_clmulepi64_si128(p, lo, 0x01);
    mi = _mm_xor_si128(_mm_xor_si128(mi, _mm_shuffle_epi32(lo, 0x4e)), t);
    t = _mm_clmulepi64_si128(p, mi, 0x01);
    return _mm_xor_si128(_mm_xor_si128(hi, _mm_shuffle_epi32(mi, 0x4e)), t);
}

/* a * h in GHASH's field (a a reflected block, h a key power). */
GCM_AI __m128i gcm_gmul(__m128i a, __m128i h) {
    __m128i lo = _mm_clmulepi64_si128(a, h, 0x00);
    __m128i hi = _mm_clmulepi64_si128(a, h, 0x11);
    __m128i mi = _mm_xor_si128(_mm_clmulepi64_si128(a, h, 0x01), _mm_clmulepi64_si128(a, h, 0x10));
    return gcm_reduce128(lo, mi, hi);
}

/* One block through AES-256. */
GCM_AI __m128i gcm_aes_block(const vmenc_gcm_key *k, __m128i b) {
    b = _mm_xor_si128(b, _mm_loadu_si128((const __m128i *)k->rk[0]));
    for (int r = 1; r < 14; r++)
        b = _mm_aesenc_si128(b, _mm_loadu_si128((const __m128i *)k->rk[r]));
    return _mm_aesenclast_si128(b, _mm_loadu_si128((const __m128i *)k->rk[14]));
}

/* J0 = nonce || 0^31 || 1 (the tag's counter block), built in a register. */
GCM_AI __m128i gcm_j0(const uint8_t nonce[12]) {
    __m128i j = _mm_loadl_epi64((const __m128i *)(const void *)nonce);
    uint32_t w;
    __builtin_memcpy(&w, nonce + 8, 4);
    j = _mm_insert_epi32(j, (int)w, 2);
    return _mm_insert_epi32(j, 0x01000000, 3);
}

/* gcm_key_setup expands |key| into |k|: round keys, then H = E(K, 0^128),
 * reflected, times x (a one-bit left shift with the carry folded back in),
 * and its powers hpow[15] = H^1 ... hpow[0] = H^16. */
GCM_AI void gcm_key_setup(vmenc_gcm_key *k, const uint8_t key[32]) {
    vmenc_aesni_expand_key(key, 32, k->rk);
    __m128i h = gcm_bswap128(gcm_aes_block(k, _mm_setzero_si128()));
    __m128i carry = _mm_srai_epi32(_mm_shuffle_epi32(h, 0xff), 31); /* all ones if bit 127 */
    __m128i hi_bit = _mm_srli_epi64(_mm_slli_si128(h, 8), 63);      /* bit 63 into bit 64 */
    h = _mm_or_si128(_mm_slli_epi64(h, 1), hi_bit);
    h = _mm_xor_si128(h, _mm_and_si128(carry, gcm_poly128()));
    __m128i p = h;
    for (int i = 15; i >= 0; i--) {
        _mm_storeu_si128((__m128i *)k->hpow[i], p);
        p = gcm_gmul(p, h);
    }
}

/* The lengths block and the tag: acc (over AAD and ciphertext) closed with
 * the bit lengths, unreflected, masked with E(K, J0). */
GCM_AI void gcm_finish(const vmenc_gcm_key *k, __m128i acc, __m128i j0, size_t aad_len, size_t len,
                       uint8_t tag[16]) {
    __m128i lens = _mm_set_epi64x((long long)((uint64_t)aad_len * 8), (long long)((uint64_t)len * 8));
    acc = gcm_gmul(_mm_xor_si128(acc, lens), _mm_loadu_si128((const __m128i *)k->hpow[15]));
    _mm_storeu_si128((__m128i *)tag, _mm_xor_si128(gcm_bswap128(acc), gcm_aes_block(k, j0)));
}

#endif /* VMENC_LIB_XTS_GCM_COMMON_H */
