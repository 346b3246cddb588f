/*
 * lib/xts/gcm_vaes_avx512.c - AES-256-GCM (NIST SP 800-38D, 12-byte nonces
 * only) on VAES and VPCLMULQDQ with 512-bit registers: 16 counter blocks in
 * flight and GHASH over 16 blocks per reduction with the precomputed powers
 * H^16..H^1. Interface and key layout in gcm_impl.h; lib/keys/aead.c is its
 * only caller and falls back to OpenSSL's EVP where the CPU lacks the
 * instructions. The output is byte for byte standard AES-256-GCM (tested
 * against OpenSSL and the NIST vectors in tests/test_aead.c), so no record
 * format changes with the engine.
 *
 * GHASH works on byte-reflected blocks with the hash key multiplied by x
 * (the representation of the Linux kernel's and Intel's published VPCLMULQDQ
 * GHASH: the product of two such values needs one Montgomery-style
 * reduction by x^128 + x^127 + x^126 + x^121 + 1, and the powers of H stay
 * in that representation). Nothing here is copied from either.
 *
 * Safety rule: key material lives only in the caller's key block (secure
 * memory) and in vector registers, which are cleared before every return;
 * the code keeps no copy of keys, keystream or hash state in memory of its
 * own (the stack-scan test in tests/test_aead.c checks that).
 * Compiled with -mavx512f -mavx512vl -mavx512bw -mvaes -mvpclmulqdq.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <immintrin.h>

#include "xts/gcm_common.h"
#include "xts/vregs.h"

#define AI GCM_AI

/* Reverse the 16 bytes of each 128-bit lane. */
AI __m512i bswap512(__m512i v) {
    const __m512i m = _mm512_broadcast_i32x4(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    return _mm512_shuffle_epi8(v, m);
}

/* x^63 + x^62 + x^57 in the high half: folds the low half of a product. */
AI __m512i poly512(void) {
    return _mm512_set_epi64((long long)0xc200000000000000ull, 1, (long long)0xc200000000000000ull, 1,
                            (long long)0xc200000000000000ull, 1, (long long)0xc200000000000000ull, 1);
}

AI __m512i reduce512(__m512i lo, __m512i mi, __m512i hi) {
    __m512i p = poly512();
    __m512i t = _mm512_clmulepi64_epi128(p, lo, 0x01);
    mi = _mm512_ternarylogic_epi64(mi, _mm512_shuffle_epi32(lo, (_MM_PERM_ENUM)0x4e), t, 0x96);
    t = _mm512_clmulepi64_epi128(p, mi, 0x01);
    return _mm512_ternarylogic_epi64(hi, _mm512_shuffle_epi32(mi, (_MM_PERM_ENUM)0x4e), t, 0x96);
}

/* Sum of the four lanes. */
AI __m128i fold_lanes(__m512i v) {
    __m256i x = _mm256_xor_si256(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    return _mm_xor_si128(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
}

void vmenc_gcm_vaes_avx512_init(vmenc_gcm_key *k, const uint8_t key[32]) {
    gcm_key_setup(k, key);
    VMENC_CLEAR_VREGS32();
}

/* ghash_bytes: acc over |len| bytes (the last block zero-padded), one
 * block at a time (AAD and tails: never more than 15 blocks of data). */
AI __m128i ghash_bytes(const vmenc_gcm_key *k, __m128i acc, const uint8_t *p, size_t len) {
    __m128i h1 = _mm_loadu_si128((const __m128i *)k->hpow[15]);
    for (; len >= 16; p += 16, len -= 16)
        acc = gcm_gmul(_mm_xor_si128(acc, gcm_bswap128(_mm_loadu_si128((const __m128i *)p))), h1);
    if (len > 0) {
        __mmask16 m = (__mmask16)((1u << len) - 1);
        acc = gcm_gmul(_mm_xor_si128(acc, gcm_bswap128(_mm_maskz_loadu_epi8(m, p))), h1);
    }
    return acc;
}

#define ROUND4(i)                                                         \
    do {                                                                  \
        __m512i rk_ = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)k->rk[i])); \
        b0 = _mm512_aesenc_epi128(b0, rk_);                               \
        b1 = _mm512_aesenc_epi128(b1, rk_);                               \
        b2 = _mm512_aesenc_epi128(b2, rk_);                               \
        b3 = _mm512_aesenc_epi128(b3, rk_);                               \
    } while (0)

void vmenc_gcm_vaes_avx512_crypt(const vmenc_gcm_key *k, bool enc, const uint8_t nonce[12], const uint8_t *aad,
                                 size_t aad_len, const uint8_t *in, uint8_t *out, size_t len, uint8_t tag[16]) {
    /* J0 reflected: the 32-bit counter is the low dword. */
    __m128i j0 = gcm_j0(nonce);
    __m128i j0r = gcm_bswap128(j0);
    __m128i acc = ghash_bytes(k, _mm_setzero_si128(), aad, aad_len);

    __m512i ctr = _mm512_add_epi32(_mm512_broadcast_i32x4(j0r),
                                   _mm512_set_epi32(0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1));
    const __m512i inc4 = _mm512_set_epi32(0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4);
    const __m512i h16 = _mm512_loadu_si512((const void *)k->hpow[0]);
    const __m512i h12 = _mm512_loadu_si512((const void *)k->hpow[4]);
    const __m512i h8 = _mm512_loadu_si512((const void *)k->hpow[8]);
    const __m512i h4 = _mm512_loadu_si512((const void *)k->hpow[12]);
    size_t done = 0;
    /* Encryption hashes each 16 blocks of ciphertext during the next 16
     * blocks' rounds (pending in p0..p3); decryption hashes its input
     * during its own rounds. */
    __m512i p0 = _mm512_setzero_si512(), p1 = p0, p2 = p0, p3 = p0;
    bool pending = false;
    for (; len - done >= 256; done += 256) {
        __m512i c0 = ctr, c1 = _mm512_add_epi32(ctr, inc4);
        __m512i c2 = _mm512_add_epi32(c1, inc4), c3 = _mm512_add_epi32(c2, inc4);
        ctr = _mm512_add_epi32(c3, inc4);
        __m512i rk0 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)k->rk[0]));
        __m512i b0 = _mm512_xor_si512(bswap512(c0), rk0), b1 = _mm512_xor_si512(bswap512(c1), rk0);
        __m512i b2 = _mm512_xor_si512(bswap512(c2), rk0), b3 = _mm512_xor_si512(bswap512(c3), rk0);
        const uint8_t *ip = in + done;
        __m512i d0 = _mm512_loadu_si512((const void *)ip), d1 = _mm512_loadu_si512((const void *)(ip + 64));
        __m512i d2 = _mm512_loadu_si512((const void *)(ip + 128)), d3 = _mm512_loadu_si512((const void *)(ip + 192));
        if (!enc) {
            p0 = bswap512(d0);
            p1 = bswap512(d1);
            p2 = bswap512(d2);
            p3 = bswap512(d3);
            pending = true;
        }
        if (pending) {
            __m512i lo, mi, hi;
            __m512i g0 = _mm512_xor_si512(p0, _mm512_zextsi128_si512(acc));
            lo = _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(g0, h16, 0x00),
                                           _mm512_clmulepi64_epi128(p1, h12, 0x00),
                                           _mm512_clmulepi64_epi128(p2, h8, 0x00), 0x96);
            lo = _mm512_xor_si512(lo, _mm512_clmulepi64_epi128(p3, h4, 0x00));
            ROUND4(1);
            ROUND4(2);
            hi = _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(g0, h16, 0x11),
                                           _mm512_clmulepi64_epi128(p1, h12, 0x11),
                                           _mm512_clmulepi64_epi128(p2, h8, 0x11), 0x96);
            hi = _mm512_xor_si512(hi, _mm512_clmulepi64_epi128(p3, h4, 0x11));
            ROUND4(3);
            ROUND4(4);
            mi = _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(g0, h16, 0x01),
                                           _mm512_clmulepi64_epi128(p1, h12, 0x01),
                                           _mm512_clmulepi64_epi128(p2, h8, 0x01), 0x96);
            mi = _mm512_ternarylogic_epi64(mi, _mm512_clmulepi64_epi128(p3, h4, 0x01),
                                           _mm512_clmulepi64_epi128(g0, h16, 0x10), 0x96);
            ROUND4(5);
            ROUND4(6);
            mi = _mm512_ternarylogic_epi64(mi, _mm512_clmulepi64_epi128(p1, h12, 0x10),
                                           _mm512_clmulepi64_epi128(p2, h8, 0x10), 0x96);
            mi = _mm512_xor_si512(mi, _mm512_clmulepi64_epi128(p3, h4, 0x10));
            ROUND4(7);
            ROUND4(8);
            acc = fold_lanes(reduce512(lo, mi, hi));
            pending = false;
        } else {
            ROUND4(1);
            ROUND4(2);
            ROUND4(3);
            ROUND4(4);
            ROUND4(5);
            ROUND4(6);
            ROUND4(7);
            ROUND4(8);
        }
        ROUND4(9);
        ROUND4(10);
        ROUND4(11);
        ROUND4(12);
        ROUND4(13);
        __m512i rk14 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)k->rk[14]));
        b0 = _mm512_xor_si512(_mm512_aesenclast_epi128(b0, rk14), d0);
        b1 = _mm512_xor_si512(_mm512_aesenclast_epi128(b1, rk14), d1);
        b2 = _mm512_xor_si512(_mm512_aesenclast_epi128(b2, rk14), d2);
        b3 = _mm512_xor_si512(_mm512_aesenclast_epi128(b3, rk14), d3);
        uint8_t *op = out + done;
        _mm512_storeu_si512((void *)op, b0);
        _mm512_storeu_si512((void *)(op + 64), b1);
        _mm512_storeu_si512((void *)(op + 128), b2);
        _mm512_storeu_si512((void *)(op + 192), b3);
        if (enc) {
            p0 = bswap512(b0);
            p1 = bswap512(b1);
            p2 = bswap512(b2);
            p3 = bswap512(b3);
            pending = true;
        }
    }
    if (pending) { /* the last 16 blocks of ciphertext of an encryption */
        __m512i g0 = _mm512_xor_si512(p0, _mm512_zextsi128_si512(acc));
        __m512i lo = _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(g0, h16, 0x00),
                                               _mm512_clmulepi64_epi128(p1, h12, 0x00),
                                               _mm512_clmulepi64_epi128(p2, h8, 0x00), 0x96);
        lo = _mm512_xor_si512(lo, _mm512_clmulepi64_epi128(p3, h4, 0x00));
        __m512i hi = _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(g0, h16, 0x11),
                                               _mm512_clmulepi64_epi128(p1, h12, 0x11),
                                               _mm512_clmulepi64_epi128(p2, h8, 0x11), 0x96);
        hi = _mm512_xor_si512(hi, _mm512_clmulepi64_epi128(p3, h4, 0x11));
        __m512i mi = _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(g0, h16, 0x01),
                                               _mm512_clmulepi64_epi128(p1, h12, 0x01),
                                               _mm512_clmulepi64_epi128(p2, h8, 0x01), 0x96);
        mi = _mm512_ternarylogic_epi64(mi, _mm512_clmulepi64_epi128(p3, h4, 0x01),
                                       _mm512_clmulepi64_epi128(g0, h16, 0x10), 0x96);
        mi = _mm512_ternarylogic_epi64(mi, _mm512_clmulepi64_epi128(p1, h12, 0x10),
                                       _mm512_clmulepi64_epi128(p2, h8, 0x10), 0x96);
        mi = _mm512_xor_si512(mi, _mm512_clmulepi64_epi128(p3, h4, 0x10));
        acc = fold_lanes(reduce512(lo, mi, hi));
    }
    /* Tail: whole blocks, then a partial one, one at a time. */
    __m128i c = _mm512_castsi512_si128(ctr);
    const __m128i one = _mm_set_epi32(0, 0, 0, 1);
    while (done < len) {
        size_t n = len - done < 16 ? len - done : 16;
        __mmask16 m = (__mmask16)(n == 16 ? 0xffffu : (1u << n) - 1);
        __m128i ks = gcm_aes_block(k, gcm_bswap128(c));
        c = _mm_add_epi32(c, one);
        __m128i d = _mm_maskz_loadu_epi8(m, in + done);
        __m128i o = _mm_maskz_mov_epi8(m, _mm_xor_si128(d, ks));
        _mm_mask_storeu_epi8(out + done, m, o);
        __m128i ct = enc ? o : d;
        acc = gcm_gmul(_mm_xor_si128(acc, gcm_bswap128(ct)), _mm_loadu_si128((const __m128i *)k->hpow[15]));
        done += n;
    }
    gcm_finish(k, acc, j0, aad_len, len, tag);
    VMENC_CLEAR_VREGS32();
}

bool vmenc_gcm_vaes_avx512_usable(void) {
    const uint32_t need = VMENC_CPU_AESNI | VMENC_CPU_PCLMULQDQ | VMENC_CPU_SSSE3 | VMENC_CPU_AVX |
                          VMENC_CPU_AVX2 | VMENC_CPU_VAES | VMENC_CPU_VPCLMULQDQ | VMENC_CPU_AVX512F |
                          VMENC_CPU_AVX512VL | VMENC_CPU_AVX512BW;
    return (vmenc_cpu_features() & need) == need;
}
