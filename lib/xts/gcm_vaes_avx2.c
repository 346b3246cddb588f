/*
 * lib/xts/gcm_vaes_avx2.c - AES-256-GCM (NIST SP 800-38D, 12-byte nonces
 * only) on VAES and VPCLMULQDQ with 256-bit registers, for CPUs that have
 * those instructions but no AVX-512 (AMD Zen 3, Intel Alder Lake and later
 * client cores): 16 counter blocks in flight in 8 registers, and GHASH over
 * 16 blocks per reduction with the precomputed powers H^16..H^1, hashed
 * during the AES rounds of the next 16 blocks (encryption) or of the same
 * ones (decryption). The representation of GHASH values is that of
 * gcm_vaes_avx512.c (its header comment); the key layout is gcm_impl.h's,
 * shared helpers in gcm_common.h. The output is byte for byte standard
 * AES-256-GCM (tests/test_aead.c: the GCM specification's vectors and OpenSSL
 * over every length 0-600 and around 16-block groups up to 1 MiB).
 *
 * The hashed blocks are read back from memory (the ciphertext just written,
 * or the input when decrypting), not kept in registers: AVX2 has 16 vector
 * registers, and 8 AES states, the round key, three product accumulators
 * and the running hash fill them. A partial last block is gathered in
 * general registers, so no data or key block is ever written to the stack.
 *
 * Safety rule: key material lives only in the caller's key block (secure
 * memory) and in vector registers, which are cleared before every return
 * (tests/test_xts_residue.c scans registers and stack after each call,
 * tests/xts_disasm.test.sh checks the object code).
 * Compiled with -maes -mpclmul -mavx2 -mvaes -mvpclmulqdq (no AVX-512).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <immintrin.h>

#include "xts/gcm_common.h"
#include "xts/vregs.h"

/* Reverse the 16 bytes of each 128-bit lane. */
GCM_AI __m256i bswap256(__m256i v) {
    return _mm256_shuffle_epi8(
        v, _mm256_broadcastsi128_si256(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)));
}

GCM_AI __m256i round_key(const vmenc_gcm_key *k, int r) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)k->rk[r]));
}

/* load_partial: |n| (1..15) bytes at |p| into the low bytes of a block, the
 * rest zero, through general registers with fixed-size loads only (never
 * past p + n). store_partial writes the low |n| bytes of |v| the same way. */
GCM_AI __m128i load_partial(const uint8_t *p, size_t n) {
    __m128i lo = _mm_setzero_si128();
    if (n >= 8) {
        lo = _mm_loadl_epi64((const __m128i *)(const void *)p); /* straight into a vector register */
        p += 8;
    }
    uint64_t part = 0;
    unsigned sh = 0;
    if (n & 4) {
        uint32_t w;
        __builtin_memcpy(&w, p, 4);
        part = w;
        p += 4;
        sh = 32;
    }
    if (n & 2) {
        uint16_t w;
        __builtin_memcpy(&w, p, 2);
        part |= (uint64_t)w << sh;
        p += 2;
        sh += 16;
    }
    if (n & 1)
        part |= (uint64_t)*p << sh;
    return n >= 8 ? _mm_insert_epi64(lo, (long long)part, 1) : _mm_cvtsi64_si128((long long)part);
}

GCM_AI void store_partial(uint8_t *p, __m128i v, size_t n) {
    uint64_t lo = (uint64_t)_mm_cvtsi128_si64(v), part = lo;
    if (n >= 8) {
        __builtin_memcpy(p, &lo, 8);
        p += 8;
        part = (uint64_t)_mm_extract_epi64(v, 1);
    }
    if (n & 4) {
        uint32_t w = (uint32_t)part;
        __builtin_memcpy(p, &w, 4);
        p += 4;
        part >>= 32;
    }
    if (n & 2) {
        uint16_t w = (uint16_t)part;
        __builtin_memcpy(p, &w, 2);
        p += 2;
        part >>= 16;
    }
    if (n & 1)
        *p = (uint8_t)part;
}

/* ghash_bytes: acc over |len| bytes (the last block zero-padded), one block
 * at a time (the AAD and tails: at most 15 blocks of data). */
GCM_AI __m128i ghash_bytes(const vmenc_gcm_key *k, __m128i acc, const uint8_t *p, size_t len) {
    __m128i h1 = _mm_loadu_si128((const __m128i *)k->hpow[15]);
    for (; len >= 16; p += 16, len -= 16)
        acc = gcm_gmul(_mm_xor_si128(acc, gcm_bswap128(_mm_loadu_si128((const __m128i *)p))), h1);
    if (len > 0)
        acc = gcm_gmul(_mm_xor_si128(acc, gcm_bswap128(load_partial(p, len))), h1);
    return acc;
}

/* Sum of the two lanes. */
GCM_AI __m128i fold2(__m256i v) {
    return _mm_xor_si128(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

/* GHASH_STEP(j): the products of the j-th pair of the 16 blocks at |hsrc|
 * (the first one plus the running hash) with H^(16-2j), H^(15-2j), added to
 * lo/mi/hi. */
#define GHASH_STEP(j)                                                                              \
    do {                                                                                           \
        __m256i x_ = bswap256(_mm256_loadu_si256((const __m256i *)(const void *)(hsrc + 32 * (j)))); \
        if ((j) == 0)                                                                              \
            x_ = _mm256_xor_si256(x_, _mm256_set_m128i(_mm_setzero_si128(), acc));                 \
        __m256i h_ = _mm256_loadu_si256((const __m256i *)(const void *)k->hpow[2 * (j)]);          \
        lo = _mm256_xor_si256(lo, _mm256_clmulepi64_epi128(x_, h_, 0x00));                        \
        hi = _mm256_xor_si256(hi, _mm256_clmulepi64_epi128(x_, h_, 0x11));                        \
        mi = _mm256_xor_si256(mi, _mm256_xor_si256(_mm256_clmulepi64_epi128(x_, h_, 0x01),         \
                                                   _mm256_clmulepi64_epi128(x_, h_, 0x10)));       \
    } while (0)

#define ROUND8(r)                                                                                  \
    do {                                                                                           \
        __m256i rk_ = round_key(k, (r));                                                           \
        b0 = _mm256_aesenc_epi128(b0, rk_);                                                        \
        b1 = _mm256_aesenc_epi128(b1, rk_);                                                        \
        b2 = _mm256_aesenc_epi128(b2, rk_);                                                        \
        b3 = _mm256_aesenc_epi128(b3, rk_);                                                        \
        b4 = _mm256_aesenc_epi128(b4, rk_);                                                        \
        b5 = _mm256_aesenc_epi128(b5, rk_);                                                        \
        b6 = _mm256_aesenc_epi128(b6, rk_);                                                        \
        b7 = _mm256_aesenc_epi128(b7, rk_);                                                        \
    } while (0)

/* PIN_AES / PIN_ALL: an empty asm that needs the 8 AES states (and the
 * three product sums) in registers at this point of the program. Without
 * them the compiler moves the whole GHASH after the AES rounds and parks
 * half-encrypted counter blocks on the stack; with them each round of the
 * 8 states stays paired with the products of one pair of blocks, and no
 * vector but public data is ever spilled (tests/xts_disasm.test.sh). */
#define PIN_AES()                                                                                  \
    __asm__ __volatile__("" : "+x"(b0), "+x"(b1), "+x"(b2), "+x"(b3), "+x"(b4), "+x"(b5), "+x"(b6), "+x"(b7))
#define PIN_ALL()                                                                                  \
    __asm__ __volatile__("" : "+x"(b0), "+x"(b1), "+x"(b2), "+x"(b3), "+x"(b4), "+x"(b5), "+x"(b6), "+x"(b7), \
                         "+x"(lo), "+x"(mi), "+x"(hi))

/* ghash16: acc over the 16 blocks at |hsrc|, one reduction. */
GCM_AI __m128i ghash16(const vmenc_gcm_key *k, __m128i acc, const uint8_t *hsrc) {
    __m256i lo = _mm256_setzero_si256(), mi = lo, hi = lo;
    /* one pair at a time: products of key powers stay in registers */
#define PIN_SUMS() __asm__ __volatile__("" : "+x"(lo), "+x"(mi), "+x"(hi))
    GHASH_STEP(0);
    PIN_SUMS();
    GHASH_STEP(1);
    PIN_SUMS();
    GHASH_STEP(2);
    PIN_SUMS();
    GHASH_STEP(3);
    PIN_SUMS();
    GHASH_STEP(4);
    PIN_SUMS();
    GHASH_STEP(5);
    PIN_SUMS();
    GHASH_STEP(6);
    PIN_SUMS();
    GHASH_STEP(7);
#undef PIN_SUMS
    return gcm_reduce128(fold2(lo), fold2(mi), fold2(hi));
}

void vmenc_gcm_vaes_avx2_init(vmenc_gcm_key *k, const uint8_t key[32]) {
    gcm_key_setup(k, key);
    VMENC_CLEAR_VREGS16();
}

void vmenc_gcm_vaes_avx2_crypt(const vmenc_gcm_key *k, bool enc, const uint8_t nonce[12], const uint8_t *aad,
                               size_t aad_len, const uint8_t *in, uint8_t *out, size_t len, uint8_t tag[16]) {
    /* J0 reflected: the 32-bit counter is the low dword of each lane. */
    __m128i j0 = gcm_j0(nonce);
    __m128i acc = ghash_bytes(k, _mm_setzero_si128(), aad, aad_len);
    __m256i ctr = _mm256_add_epi32(_mm256_broadcastsi128_si256(gcm_bswap128(j0)), _mm256_set_epi32(0, 0, 0, 2, 0, 0, 0, 1));
    const __m256i inc2 = _mm256_set_epi32(0, 0, 0, 2, 0, 0, 0, 2);
    size_t done = 0;
    for (; len - done >= 256; done += 256) {
        /* The blocks hashed during these rounds: this input when decrypting,
         * the previous 16 blocks of output when encrypting (none the first
         * time). Read before this iteration's stores (in may equal out). */
        const uint8_t *hsrc = !enc ? in + done : done > 0 ? out + done - 256 : NULL;
        /* The round keys and key powers are read from the key block in
         * every iteration: hidden from the compiler here, it cannot hoist
         * them out of the loop (15 broadcast round keys do not fit in the
         * registers and would be parked on the stack). */
        __asm__("" : "+r"(k));
        __m256i rk0 = round_key(k, 0);
        __m256i b0 = _mm256_xor_si256(bswap256(ctr), rk0);
        ctr = _mm256_add_epi32(ctr, inc2);
        __m256i b1 = _mm256_xor_si256(bswap256(ctr), rk0);
        ctr = _mm256_add_epi32(ctr, inc2);
        __m256i b2 = _mm256_xor_si256(bswap256(ctr), rk0);
        ctr = _mm256_add_epi32(ctr, inc2);
        __m256i b3 = _mm256_xor_si256(bswap256(ctr), rk0);
        ctr = _mm256_add_epi32(ctr, inc2);
        __m256i b4 = _mm256_xor_si256(bswap256(ctr), rk0);
        ctr = _mm256_add_epi32(ctr, inc2);
        __m256i b5 = _mm256_xor_si256(bswap256(ctr), rk0);
        ctr = _mm256_add_epi32(ctr, inc2);
        __m256i b6 = _mm256_xor_si256(bswap256(ctr), rk0);
        ctr = _mm256_add_epi32(ctr, inc2);
        __m256i b7 = _mm256_xor_si256(bswap256(ctr), rk0);
        ctr = _mm256_add_epi32(ctr, inc2);
        PIN_AES();
        if (hsrc != NULL) {
            __m256i lo = _mm256_setzero_si256(), mi = lo, hi = lo;
            GHASH_STEP(0);
            ROUND8(1);
            PIN_ALL();
            GHASH_STEP(1);
            ROUND8(2);
            PIN_ALL();
            GHASH_STEP(2);
            ROUND8(3);
            PIN_ALL();
            GHASH_STEP(3);
            ROUND8(4);
            PIN_ALL();
            GHASH_STEP(4);
            ROUND8(5);
            PIN_ALL();
            GHASH_STEP(5);
            ROUND8(6);
            PIN_ALL();
            GHASH_STEP(6);
            ROUND8(7);
            PIN_ALL();
            GHASH_STEP(7);
            ROUND8(8);
            PIN_ALL();
            acc = gcm_reduce128(fold2(lo), fold2(mi), fold2(hi));
        } else {
            for (int r = 1; r <= 8; r++) {
                ROUND8(r);
                PIN_AES();
            }
        }
        for (int r = 9; r <= 13; r++) {
            ROUND8(r);
            PIN_AES();
        }
        __m256i rk14 = round_key(k, 14);
        const __m256i *ip = (const __m256i *)(const void *)(in + done);
        __m256i *op = (__m256i *)(void *)(out + done);
        _mm256_storeu_si256(op, _mm256_xor_si256(_mm256_aesenclast_epi128(b0, rk14), _mm256_loadu_si256(ip)));
        _mm256_storeu_si256(op + 1, _mm256_xor_si256(_mm256_aesenclast_epi128(b1, rk14), _mm256_loadu_si256(ip + 1)));
        _mm256_storeu_si256(op + 2, _mm256_xor_si256(_mm256_aesenclast_epi128(b2, rk14), _mm256_loadu_si256(ip + 2)));
        _mm256_storeu_si256(op + 3, _mm256_xor_si256(_mm256_aesenclast_epi128(b3, rk14), _mm256_loadu_si256(ip + 3)));
        _mm256_storeu_si256(op + 4, _mm256_xor_si256(_mm256_aesenclast_epi128(b4, rk14), _mm256_loadu_si256(ip + 4)));
        _mm256_storeu_si256(op + 5, _mm256_xor_si256(_mm256_aesenclast_epi128(b5, rk14), _mm256_loadu_si256(ip + 5)));
        _mm256_storeu_si256(op + 6, _mm256_xor_si256(_mm256_aesenclast_epi128(b6, rk14), _mm256_loadu_si256(ip + 6)));
        _mm256_storeu_si256(op + 7, _mm256_xor_si256(_mm256_aesenclast_epi128(b7, rk14), _mm256_loadu_si256(ip + 7)));
    }
    if (enc && done > 0) /* the last 16 blocks of ciphertext */
        acc = ghash16(k, acc, out + done - 256);
    /* Tail: whole blocks, then a partial one, one at a time. */
    __m128i c = _mm256_castsi256_si128(ctr);
    const __m128i one = _mm_set_epi32(0, 0, 0, 1);
    const __m128i h1 = _mm_loadu_si128((const __m128i *)k->hpow[15]);
    for (; len - done >= 16; done += 16) {
        __m128i ks = gcm_aes_block(k, gcm_bswap128(c));
        c = _mm_add_epi32(c, one);
        __m128i d = _mm_loadu_si128((const __m128i *)(const void *)(in + done));
        __m128i o = _mm_xor_si128(d, ks);
        _mm_storeu_si128((__m128i *)(void *)(out + done), o);
        acc = gcm_gmul(_mm_xor_si128(acc, gcm_bswap128(enc ? o : d)), h1);
    }
    if (done < len) {
        size_t n = len - done;
        __m128i ks = gcm_aes_block(k, gcm_bswap128(c));
        __m128i d = load_partial(in + done, n);
        __m128i o = _mm_xor_si128(d, ks);
        store_partial(out + done, o, n);
        /* the hashed block is the ciphertext, zero-padded */
        __m128i ct = enc ? load_partial(out + done, n) : d;
        acc = gcm_gmul(_mm_xor_si128(acc, gcm_bswap128(ct)), h1);
    }
    gcm_finish(k, acc, j0, aad_len, len, tag);
    VMENC_CLEAR_VREGS16();
}

bool vmenc_gcm_vaes_avx2_usable(void) {
    const uint32_t need = VMENC_CPU_AESNI | VMENC_CPU_PCLMULQDQ | VMENC_CPU_SSSE3 | VMENC_CPU_SSE41 |
                          VMENC_CPU_AVX | VMENC_CPU_AVX2 | VMENC_CPU_VAES | VMENC_CPU_VPCLMULQDQ;
    return (vmenc_cpu_features() & need) == need;
}
