/*
 * lib/xts/xts_body.h - the XTS-AES engine written once, width-generic.
 *
 * Included by aesni.c (128-bit vectors, 1 block each), vaes_avx2.c (256-bit,
 * 2 blocks) and vaes_avx512.c (512-bit, 4 blocks) after they define the
 * vector mapping below. The instantiations differ only in that mapping, so
 * the ones the test machine can run validate the logic of the others.
 *
 * Required macros:
 *   XB_VEC               vector type
 *   XB_LANES             16-byte blocks per vector
 *   XB_NV                vectors per main-loop iteration (blocks in flight
 *                        = XB_NV * XB_LANES)
 *   XB_LOADU(p) XB_STOREU(p, v) XB_XOR(a, b)
 *   XB_AESENC(v, k) XB_AESENCLAST(v, k) XB_AESDEC(v, k) XB_AESDECLAST(v, k)
 *   XB_BCAST(p)          the 16 bytes at p in every lane
 *   XB_SLLI64(v, n) XB_SRLI64(v, n)   per-64-bit-lane shifts
 *   XB_BSLLI8(v)         shift each 128-bit lane left by 8 bytes
 *   XB_CLMUL01(a, b)     per 128-bit lane: a.hi64 (x) b.lo64, carry-less
 *   XB_POLY()            0x87 in the low 64 bits of each lane
 *   XB_FROM_TWEAK(t)     vector whose lane i is t * alpha^i (t: __m128i)
 *   XB_LANE0(v)          lane 0 as __m128i
 *   XB_NAME              backend name string, XB_BACKEND its table symbol
 *
 *   XB_CPU_REQUIRED      VMENC_CPU_* bits the backend needs
 * Optional:
 *   XB_VECTOR_TWEAKS     compute group tweaks with vector ops (then also
 *                        XB_BSLLI(v, n), XB_BSRLI(v, n) byte shifts within
 *                        128-bit lanes and XB_CLMUL00(a, b)) instead of in
 *                        general-purpose registers
 *
 * Structure: whole sectors go through xb_sectors, which encrypts the tweaks
 * of 8 sectors at once; a data unit's blocks go through xb_blocks: groups of
 * XB_NV vectors (xb_groups: all rounds of the group interleaved, so
 * XB_NV * XB_LANES blocks are in flight), then single vectors, then single
 * blocks, then ciphertext stealing (xb_unit).
 *
 * Tweak arithmetic: the tweak is an element of GF(2^128) mod
 * x^128 + x^7 + x^2 + x + 1, stored little-endian (IEEE 1619 5.2). Inside a
 * group's loop it is advanced one block at a time in two 64-bit general-
 * purpose registers (the vector units are busy with AES), or with
 * XB_VECTOR_TWEAKS by a whole group per step in vector registers. Elsewhere,
 * multiplying a vector by x^k (k <= 57) shifts each 64-bit half left by k,
 * moves the bits that leave the low half into the high half, and folds the k
 * bits that leave the top back in as (those bits) (x) 0x87 - one carry-less
 * multiply. Nothing depends on secret data for a branch or an address.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <immintrin.h>
#include <string.h>

#include "xts/xts_impl.h"

#define XB_INLINE static inline __attribute__((always_inline))
/* Fully unrolled loops let the compiler keep tweaks, data and round keys in
 * registers instead of stack arrays. */
#define XB_UNROLL _Pragma("GCC unroll 16")

/* ---- single blocks (128-bit) ------------------------------------------- */

/* t * alpha, for one 128-bit tweak. */
XB_INLINE __m128i xb_mul_alpha(__m128i t) {
    /* Each 32-bit lane's top bit moves to the next lane's bit 0; bit 127
     * wraps around as 0x87. */
    __m128i carry = _mm_shuffle_epi32(_mm_srai_epi32(t, 31), 0x93);
    carry = _mm_and_si128(carry, _mm_set_epi32(1, 1, 1, 0x87));
    return _mm_xor_si128(_mm_slli_epi32(t, 1), carry);
}

XB_INLINE __m128i xb_enc1(const uint8_t (*rk)[16], unsigned rounds, __m128i b) {
    b = _mm_xor_si128(b, _mm_loadu_si128((const __m128i *)rk[0]));
    XB_UNROLL
    for (unsigned r = 1; r < rounds; r++)
        b = _mm_aesenc_si128(b, _mm_loadu_si128((const __m128i *)rk[r]));
    return _mm_aesenclast_si128(b, _mm_loadu_si128((const __m128i *)rk[rounds]));
}

XB_INLINE __m128i xb_dec1(const uint8_t (*rk)[16], unsigned rounds, __m128i b) {
    b = _mm_xor_si128(b, _mm_loadu_si128((const __m128i *)rk[0]));
    XB_UNROLL
    for (unsigned r = 1; r < rounds; r++)
        b = _mm_aesdec_si128(b, _mm_loadu_si128((const __m128i *)rk[r]));
    return _mm_aesdeclast_si128(b, _mm_loadu_si128((const __m128i *)rk[rounds]));
}

XB_INLINE __m128i xb_crypt1(const uint8_t (*rk)[16], unsigned rounds, bool enc, __m128i b) {
    return enc ? xb_enc1(rk, rounds, b) : xb_dec1(rk, rounds, b);
}

/* ---- vectors ------------------------------------------------------------ */

/* t * x^k in every lane (1 <= k <= 57). */
XB_INLINE XB_VEC xb_mul_xk(XB_VEC t, int k) {
    XB_VEC hi = XB_SRLI64(t, 64 - k);  /* bits leaving each 64-bit half */
    XB_VEC res = XB_SLLI64(t, k);
    res = XB_XOR(res, XB_BSLLI8(hi)); /* low half's overflow into the high half */
    return XB_XOR(res, XB_CLMUL01(hi, XB_POLY())); /* reduce what left bit 127 */
}

/* d[i] = AES(d[i]) for the XB_NV vectors of a group; d[i] already holds the
 * input XORed with the tweak and round key 0. */
XB_INLINE void xb_rounds(XB_VEC *d, const XB_VEC *k, unsigned rounds, bool enc) {
    if (enc) {
        XB_UNROLL
        for (unsigned r = 1; r < rounds; r++)
            XB_UNROLL
            for (int i = 0; i < XB_NV; i++)
                d[i] = XB_AESENC(d[i], k[r]);
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++)
            d[i] = XB_AESENCLAST(d[i], k[rounds]);
    } else {
        XB_UNROLL
        for (unsigned r = 1; r < rounds; r++)
            XB_UNROLL
            for (int i = 0; i < XB_NV; i++)
                d[i] = XB_AESDEC(d[i], k[r]);
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++)
            d[i] = XB_AESDECLAST(d[i], k[rounds]);
    }
}

/* Per-call scratch, owned by the entry points and wiped once per call: the
 * round keys broadcast to every lane, and two groups of tweaks for
 * xb_groups. Tweaks are as sensitive as a key for their sector (with them,
 * blocks can be moved between positions undetected). Keeping the broadcast
 * keys here rather than in a local array means the copies the compiler makes
 * on the stack are these, and they get wiped. */
typedef struct xb_scratch {
    XB_VEC k[VMENC_XTS_MAX_ROUNDS + 1];
    uint64_t t[2][XB_NV * XB_LANES][2] __attribute__((aligned(64)));
} xb_scratch;

XB_INLINE void xb_scratch_init(xb_scratch *sc, const uint8_t (*rk)[16], unsigned rounds) {
#if XB_LANES == 1
    /* 128-bit: the schedule in secure memory already is the vector form;
     * xb_round_keys reads it in place. */
    (void)sc;
    (void)rk;
    (void)rounds;
#else
    XB_UNROLL
    for (unsigned r = 0; r <= rounds; r++)
        sc->k[r] = XB_BCAST(rk[r]);
#endif
}

/* The round keys as vectors. For 128-bit vectors that is the schedule itself
 * (16-byte aligned: xts.c checks), so no copy of a key is ever made on the
 * stack and the rounds take their keys as memory operands from secure
 * memory. */
XB_INLINE const XB_VEC *xb_round_keys(const xb_scratch *sc, const uint8_t (*rk)[16]) {
#if XB_LANES == 1
    (void)sc;
    return (const XB_VEC *)(const void *)rk;
#else
    (void)rk;
    return sc->k;
#endif
}

#ifdef XB_VECTOR_TWEAKS
/* Whole groups of XB_NV vectors, tweaks in vector registers: each group's
 * tweaks are the previous group's times x^(8 * XB_GROUP_BYTES_SHIFT), a byte
 * shift and one carry-less multiply per vector, computed before the rounds
 * so they are ready early. Used where PCLMULQDQ does not compete with AES
 * for an execution port and registers are plentiful (AVX-512). Returns the
 * tweak vector of the first block not processed. */
#define XB_GROUP_BYTES_SHIFT (XB_NV * XB_LANES / 8)
_Static_assert((XB_NV * XB_LANES) % 8 == 0 && XB_NV * XB_LANES <= 56,
               "a group must advance the tweak by a whole number of bytes, at most 7");
XB_INLINE XB_VEC xb_groups(const XB_VEC *k, unsigned rounds, bool enc, XB_VEC tv,
                           xb_scratch *buf, const uint8_t **pin, uint8_t **pout,
                           size_t *pnum_blocks) {
    (void)buf;
    const uint8_t *in = *pin;
    uint8_t *out = *pout;
    size_t num_blocks = *pnum_blocks;
    XB_VEC tw[XB_NV];
    XB_UNROLL
    for (int i = 0; i < XB_NV; i++)
        tw[i] = i == 0 ? tv : xb_mul_xk(tv, i * XB_LANES);
    do {
        XB_VEC d[XB_NV], tn[XB_NV];
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++) {
            d[i] = XB_XOR(XB_XOR(XB_LOADU(in + (size_t)i * 16 * XB_LANES), tw[i]), k[0]);
            tn[i] = XB_XOR(XB_BSLLI(tw[i], XB_GROUP_BYTES_SHIFT),
                           XB_CLMUL00(XB_BSRLI(tw[i], 16 - XB_GROUP_BYTES_SHIFT), XB_POLY()));
        }
        xb_rounds(d, k, rounds, enc);
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++) {
            XB_STOREU(out + (size_t)i * 16 * XB_LANES, XB_XOR(d[i], tw[i]));
            tw[i] = tn[i];
        }
        in += (size_t)XB_NV * 16 * XB_LANES;
        out += (size_t)XB_NV * 16 * XB_LANES;
        num_blocks -= XB_NV * XB_LANES;
    } while (num_blocks >= XB_NV * XB_LANES);
    *pin = in;
    *pout = out;
    *pnum_blocks = num_blocks;
    return tw[0];
}
#else
/* t * alpha on a tweak held as two 64-bit halves, branch-free. */
XB_INLINE void xb_gpr_mul_alpha(uint64_t *lo, uint64_t *hi) {
    uint64_t fold = (uint64_t)((int64_t)*hi >> 63) & 0x87;
    *hi = (*hi << 1) | (*lo >> 63);
    *lo = (*lo << 1) ^ fold;
}

/* Whole groups of XB_NV vectors (XB_NV * XB_LANES blocks). The vector units
 * are saturated by AES, so the tweaks are computed in general-purpose
 * registers instead, one group ahead, into a small double buffer that the
 * XORs read as memory operands; they are written a group before they are
 * read, so the wide loads do not wait on the narrow stores. On Zen 3 this
 * beat computing them with vector shifts and PCLMULQDQ by 15-25% (aesni
 * 0.87 -> 1.10x OpenSSL, vaes-avx2 1.74 -> 2.0x at 64 KiB sectors). Returns
 * the tweak vector of the first block not processed. */
XB_INLINE XB_VEC xb_groups(const XB_VEC *k, unsigned rounds, bool enc, XB_VEC tv,
                           xb_scratch *buf, const uint8_t **pin, uint8_t **pout,
                           size_t *pnum_blocks) {
    const uint8_t *in = *pin;
    uint8_t *out = *pout;
    size_t num_blocks = *pnum_blocks;
    /* The first group's tweaks come from vector arithmetic and vector stores
     * (which forward to the same-size loads at once), so a short data unit
     * does not wait for the integer chain. */
    XB_UNROLL
    for (int i = 0; i < XB_NV; i++)
        XB_STOREU(buf->t[0][i * XB_LANES], i == 0 ? tv : xb_mul_xk(tv, i * XB_LANES));
    __m128i t0 = XB_LANE0(xb_mul_xk(tv, XB_NV * XB_LANES));
    uint64_t lo = (uint64_t)_mm_cvtsi128_si64(t0);
    uint64_t hi = (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(t0, t0));
    unsigned cur = 0;
    do {
        const uint64_t(*tw)[2] = buf->t[cur];
        XB_VEC d[XB_NV];
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++)
            d[i] = XB_XOR(XB_XOR(XB_LOADU(in + (size_t)i * 16 * XB_LANES), XB_LOADU(tw[i * XB_LANES])),
                          k[0]);
        XB_UNROLL
        for (int i = 0; i < XB_NV * XB_LANES; i++) {
            buf->t[cur ^ 1][i][0] = lo;
            buf->t[cur ^ 1][i][1] = hi;
            xb_gpr_mul_alpha(&lo, &hi);
        }
        xb_rounds(d, k, rounds, enc);
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++)
            XB_STOREU(out + (size_t)i * 16 * XB_LANES, XB_XOR(d[i], XB_LOADU(tw[i * XB_LANES])));
        cur ^= 1;
        in += (size_t)XB_NV * 16 * XB_LANES;
        out += (size_t)XB_NV * 16 * XB_LANES;
        num_blocks -= XB_NV * XB_LANES;
    } while (num_blocks >= XB_NV * XB_LANES);
    *pin = in;
    *pout = out;
    *pnum_blocks = num_blocks;
    return XB_LOADU(buf->t[cur][0]);
}
#endif

/* En/decrypt |num_blocks| whole blocks with the tweaks t, t*a, t*a^2, ...
 * Returns the tweak of the block after the last one. Round keys are
 * broadcast into registers once per call. */
XB_INLINE __m128i xb_blocks(const uint8_t (*rk)[16], unsigned rounds, bool enc, __m128i t,
                            xb_scratch *buf, const uint8_t *in, uint8_t *out,
                            size_t num_blocks) {
    if (num_blocks >= XB_LANES) {
        const XB_VEC *k = xb_round_keys(buf, rk);
        XB_VEC tv = XB_FROM_TWEAK(t);
        if (num_blocks >= (size_t)XB_NV * XB_LANES)
            tv = xb_groups(k, rounds, enc, tv, buf, &in, &out, &num_blocks);
        while (num_blocks >= XB_LANES) {
            XB_VEC tw = tv;
            tv = xb_mul_xk(tv, XB_LANES);
            XB_VEC d = XB_XOR(XB_XOR(XB_LOADU(in), tw), k[0]);
            if (enc) {
                XB_UNROLL
                for (unsigned r = 1; r < rounds; r++)
                    d = XB_AESENC(d, k[r]);
                d = XB_AESENCLAST(d, k[rounds]);
            } else {
                XB_UNROLL
                for (unsigned r = 1; r < rounds; r++)
                    d = XB_AESDEC(d, k[r]);
                d = XB_AESDECLAST(d, k[rounds]);
            }
            XB_STOREU(out, XB_XOR(d, tw));
            in += 16 * XB_LANES;
            out += 16 * XB_LANES;
            num_blocks -= XB_LANES;
        }
        t = XB_LANE0(tv);
    }
    for (; num_blocks > 0; num_blocks--) {
        __m128i b = _mm_xor_si128(_mm_loadu_si128((const __m128i *)in), t);
        b = _mm_xor_si128(xb_crypt1(rk, rounds, enc, b), t);
        _mm_storeu_si128((__m128i *)out, b);
        t = xb_mul_alpha(t);
        in += 16;
        out += 16;
    }
    return t;
}

/* One data unit with a raw tweak; ciphertext stealing (IEEE 1619 5.3.2 and
 * 5.4.2) when len is not a multiple of 16. Safe in place: the partial tail
 * is read before the bytes over it are written. */
XB_INLINE void xb_unit(const vmenc_xts_sched *s, unsigned rounds, bool enc,
                       const uint8_t tweak[16], const uint8_t *in, uint8_t *out, size_t len) {
    const uint8_t(*rk)[16] = enc ? s->ek : s->dk;
    __m128i t = xb_enc1(s->tk, rounds, _mm_loadu_si128((const __m128i *)tweak));
    size_t full = len / 16, rem = len % 16;
    xb_scratch tbuf;
    xb_scratch_init(&tbuf, rk, rounds);
    if (rem == 0) {
        (void)xb_blocks(rk, rounds, enc, t, &tbuf, in, out, full);
        vmenc_memzero(&tbuf, sizeof(tbuf));
        return;
    }
    t = xb_blocks(rk, rounds, enc, t, &tbuf, in, out, full - 1);
    vmenc_memzero(&tbuf, sizeof(tbuf));
    in += 16 * (full - 1);
    out += 16 * (full - 1);

    /* Encryption: CC = E(P_{m-1}) under T_{m-1}; C_m = CC[0..rem);
     * C_{m-1} = E(P_m || CC[rem..16)) under T_m. Decryption swaps the two
     * tweaks: PP = D(C_{m-1}) under T_m; P_m = PP[0..rem);
     * P_{m-1} = D(C_m || PP[rem..16)) under T_{m-1}. */
    __m128i t_first = enc ? t : xb_mul_alpha(t);
    __m128i t_second = enc ? xb_mul_alpha(t) : t;
    uint8_t buf[16], tail[16];
    __m128i b = _mm_xor_si128(_mm_loadu_si128((const __m128i *)in), t_first);
    b = _mm_xor_si128(xb_crypt1(rk, rounds, enc, b), t_first);
    _mm_storeu_si128((__m128i *)buf, b);
    memcpy(tail, in + 16, rem);
    memcpy(out + 16, buf, rem);
    memcpy(buf, tail, rem);
    b = _mm_xor_si128(_mm_loadu_si128((const __m128i *)buf), t_second);
    b = _mm_xor_si128(xb_crypt1(rk, rounds, enc, b), t_second);
    _mm_storeu_si128((__m128i *)out, b);
    vmenc_memzero(buf, sizeof(buf));
    vmenc_memzero(tail, sizeof(tail));
}

/* ---- whole sectors: one pipeline across sector boundaries --------------
 *
 * A multi-sector call is one stream of groups (XB_NV vectors, XB_NV *
 * XB_LANES blocks; every sector size is a whole number of groups). The
 * tweaks of a group are always ready one group ahead: inside a sector they
 * are the previous group's advanced, and for the first group of the next
 * sector they are expanded from that sector's encrypted tweak while the
 * current group's rounds run. The sectors' initial tweaks are encrypted
 * XB_TB at a time in full-width vectors, one batch ahead of use, so their
 * AES latency overlaps the data rounds instead of stalling each sector. For
 * small sectors this removed what the sector-by-sector loop paid per sector:
 * the tweak encryption's latency and a pipeline fill and drain. */
#define XB_TB 8 /* sectors whose tweaks are encrypted together */
_Static_assert(XB_TB % XB_LANES == 0, "a tweak batch fills whole vectors");
_Static_assert((VMENC_XTS_MIN_SECTOR / 16) % (XB_NV * XB_LANES) == 0,
               "every sector size must be a whole number of groups");

#ifndef XB_XOR3
#define XB_XOR3(a, b, c) XB_XOR(XB_XOR((a), (b)), (c))
#endif

typedef struct xb_sscratch {
    XB_VEC k[VMENC_XTS_MAX_ROUNDS + 1];  /* data key, broadcast */
    XB_VEC tk[VMENC_XTS_MAX_ROUNDS + 1]; /* tweak key, broadcast */
    uint8_t et[2][XB_TB][16] __attribute__((aligned(64))); /* encrypted tweaks, 2 batches */
} xb_sscratch;

/* et[j] = E_tk(sector + j) for j < XB_TB (sector numbers wrap mod 2^64).
 * With XB_SECTOR_VEC(base, j) (a vector of lanes (base + j + lane, 0),
 * built in registers) in full-width vectors; otherwise in 128-bit
 * registers: building a wide vector of sector numbers through memory would
 * make wide loads wait on narrow stores that cannot forward to them, which
 * cost 3% at 512-byte sectors. */
XB_INLINE void xb_tweak_batch(const xb_sscratch *sc, const vmenc_xts_sched *s, unsigned rounds,
                              uint64_t sector, uint8_t et[XB_TB][16]) {
#ifdef XB_SECTOR_VEC
    (void)s;
    XB_VEC v[XB_TB / XB_LANES];
    XB_UNROLL
    for (int i = 0; i < XB_TB / XB_LANES; i++)
        v[i] = XB_XOR(XB_SECTOR_VEC(sector, i * XB_LANES), sc->tk[0]);
    XB_UNROLL
    for (unsigned r = 1; r < rounds; r++)
        XB_UNROLL
        for (int i = 0; i < XB_TB / XB_LANES; i++)
            v[i] = XB_AESENC(v[i], sc->tk[r]);
    XB_UNROLL
    for (int i = 0; i < XB_TB / XB_LANES; i++)
        XB_STOREU(et[i * XB_LANES], XB_AESENCLAST(v[i], sc->tk[rounds]));
#else
    (void)sc;
    __m128i v[XB_TB];
    XB_UNROLL
    for (int i = 0; i < XB_TB; i++)
        v[i] = _mm_xor_si128(_mm_set_epi64x(0, (long long)(sector + (uint64_t)i)),
                             _mm_loadu_si128((const __m128i *)s->tk[0]));
    XB_UNROLL
    for (unsigned r = 1; r < rounds; r++) {
        __m128i k = _mm_loadu_si128((const __m128i *)s->tk[r]);
        XB_UNROLL
        for (int i = 0; i < XB_TB; i++)
            v[i] = _mm_aesenc_si128(v[i], k);
    }
    __m128i klast = _mm_loadu_si128((const __m128i *)s->tk[rounds]);
    XB_UNROLL
    for (int i = 0; i < XB_TB; i++)
        _mm_storeu_si128((__m128i *)(void *)et[i], _mm_aesenclast_si128(v[i], klast));
#endif
}

/* The rounds of a group whose inputs already hold data ^ tweak ^ k[0]; the
 * output tweak is folded into the last round key (AESENCLAST and AESDECLAST
 * end with a XOR of the key), off the data's critical path. */
XB_INLINE void xb_rounds_tw(XB_VEC *d, const XB_VEC *k, unsigned rounds, bool enc,
                            const XB_VEC *tw) {
    if (enc) {
        XB_UNROLL
        for (unsigned r = 1; r < rounds; r++)
            XB_UNROLL
            for (int i = 0; i < XB_NV; i++)
                d[i] = XB_AESENC(d[i], k[r]);
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++)
            d[i] = XB_AESENCLAST(d[i], XB_XOR(k[rounds], tw[i]));
    } else {
        XB_UNROLL
        for (unsigned r = 1; r < rounds; r++)
            XB_UNROLL
            for (int i = 0; i < XB_NV; i++)
                d[i] = XB_AESDEC(d[i], k[r]);
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++)
            d[i] = XB_AESDECLAST(d[i], XB_XOR(k[rounds], tw[i]));
    }
}

XB_INLINE void xb_sectors_setup(xb_sscratch *sc, const vmenc_xts_sched *s, unsigned rounds,
                                bool enc) {
    const uint8_t(*rk)[16] = enc ? s->ek : s->dk;
    XB_UNROLL
    for (unsigned r = 0; r <= rounds; r++) {
        sc->k[r] = XB_BCAST(rk[r]);
        sc->tk[r] = XB_BCAST(s->tk[r]);
    }
}

#ifdef XB_VECTOR_TWEAKS
/* A group's tweak vectors from the first block's tweak t: lanes t * a^j. */
XB_INLINE void xb_expand(const uint8_t t[16], XB_VEC *tw) {
    tw[0] = XB_FROM_TWEAK(_mm_loadu_si128((const __m128i *)(const void *)t));
    XB_UNROLL
    for (int i = 1; i < XB_NV; i++)
        tw[i] = xb_mul_xk(tw[0], i * XB_LANES);
}

XB_INLINE void xb_sectors(const vmenc_xts_sched *s, unsigned rounds, bool enc, uint64_t sector,
                          const uint8_t *in, uint8_t *out, size_t num_sectors, size_t sector_size) {
    const size_t groups = sector_size / (16u * XB_NV * XB_LANES); /* per sector */
    xb_sscratch sc;
    xb_sectors_setup(&sc, s, rounds, enc);
    const XB_VEC *k = sc.k;
    xb_tweak_batch(&sc, s, rounds, sector, sc.et[0]);
    XB_VEC tw[XB_NV];
    xb_expand(sc.et[0][0], tw);
    for (size_t i = 0; i < num_sectors; i++) {
        if (i % XB_TB == 0 && i + XB_TB < num_sectors) /* the next batch, a batch ahead */
            xb_tweak_batch(&sc, s, rounds, sector + i + XB_TB, sc.et[(i / XB_TB + 1) & 1]);
        for (size_t g = groups; g > 0; g--) {
            XB_VEC d[XB_NV], tn[XB_NV];
            XB_UNROLL
            for (int v = 0; v < XB_NV; v++)
                d[v] = XB_XOR3(XB_LOADU(in + (size_t)v * 16 * XB_LANES), tw[v], k[0]);
            if (g > 1) {
                XB_UNROLL
                for (int v = 0; v < XB_NV; v++)
                    tn[v] = XB_XOR(XB_BSLLI(tw[v], XB_GROUP_BYTES_SHIFT),
                                   XB_CLMUL00(XB_BSRLI(tw[v], 16 - XB_GROUP_BYTES_SHIFT),
                                              XB_POLY()));
            } else {
                /* The next sector's (the batch it is in was encrypted a
                 * batch ago); past the last sector, a harmless dummy. */
                size_t n = i + 1 < num_sectors ? i + 1 : i;
                xb_expand(sc.et[(n / XB_TB) & 1][n % XB_TB], tn);
            }
            xb_rounds_tw(d, k, rounds, enc, tw);
            XB_UNROLL
            for (int v = 0; v < XB_NV; v++) {
                XB_STOREU(out + (size_t)v * 16 * XB_LANES, d[v]);
                tw[v] = tn[v];
            }
            in += (size_t)XB_NV * 16 * XB_LANES;
            out += (size_t)XB_NV * 16 * XB_LANES;
        }
    }
    vmenc_memzero(&sc, sizeof(sc));
    vmenc_memzero(tw, sizeof(tw));
}
#else
/* With general-purpose-register tweaks (16 vector registers), streaming
 * groups across sector boundaries made GCC spill a data vector inside the
 * rounds and cost 12-14% at 4 and 64 KiB on Zen 4; here each sector runs
 * through xb_blocks, and only the tweak batches are shared with the vector
 * path (wide, a batch ahead). */
XB_INLINE void xb_sectors(const vmenc_xts_sched *s, unsigned rounds, bool enc, uint64_t sector,
                          const uint8_t *in, uint8_t *out, size_t num_sectors, size_t sector_size) {
    const uint8_t(*rk)[16] = enc ? s->ek : s->dk;
    const size_t blocks = sector_size / 16;
    xb_sscratch sc;
    xb_sectors_setup(&sc, s, rounds, enc);
    xb_scratch tbuf;
    xb_scratch_init(&tbuf, rk, rounds);
    xb_tweak_batch(&sc, s, rounds, sector, sc.et[0]);
    for (size_t i = 0; i < num_sectors; i++) {
        if (i % XB_TB == 0 && i + XB_TB < num_sectors)
            xb_tweak_batch(&sc, s, rounds, sector + i + XB_TB, sc.et[(i / XB_TB + 1) & 1]);
        __m128i t = _mm_loadu_si128((const __m128i *)(const void *)sc.et[(i / XB_TB) & 1][i % XB_TB]);
        (void)xb_blocks(rk, rounds, enc, t, &tbuf, in, out, blocks);
        in += sector_size;
        out += sector_size;
    }
    vmenc_memzero(&tbuf, sizeof(tbuf));
    vmenc_memzero(&sc, sizeof(sc));
}
#endif

/* ---- backend entry points: specialised per direction and key size so the
 * round loops unroll with constant bounds. ------------------------------- */

static __attribute__((noinline)) void xb_sectors_e10(const vmenc_xts_sched *s, uint64_t f,
                                                     const uint8_t *in, uint8_t *out, size_t n,
                                                     size_t ss) {
    xb_sectors(s, 10, true, f, in, out, n, ss);
}
static __attribute__((noinline)) void xb_sectors_d10(const vmenc_xts_sched *s, uint64_t f,
                                                     const uint8_t *in, uint8_t *out, size_t n,
                                                     size_t ss) {
    xb_sectors(s, 10, false, f, in, out, n, ss);
}
static __attribute__((noinline)) void xb_sectors_e14(const vmenc_xts_sched *s, uint64_t f,
                                                     const uint8_t *in, uint8_t *out, size_t n,
                                                     size_t ss) {
    xb_sectors(s, 14, true, f, in, out, n, ss);
}
static __attribute__((noinline)) void xb_sectors_d14(const vmenc_xts_sched *s, uint64_t f,
                                                     const uint8_t *in, uint8_t *out, size_t n,
                                                     size_t ss) {
    xb_sectors(s, 14, false, f, in, out, n, ss);
}

static vmenc_status xb_backend_sectors(const struct vmenc_xts *x, bool enc, uint64_t first,
                                       const uint8_t *in, uint8_t *out, size_t num_sectors) {
    if (x->rounds == 14) {
        if (enc)
            xb_sectors_e14(x->sched, first, in, out, num_sectors, x->sector_size);
        else
            xb_sectors_d14(x->sched, first, in, out, num_sectors, x->sector_size);
    } else {
        if (enc)
            xb_sectors_e10(x->sched, first, in, out, num_sectors, x->sector_size);
        else
            xb_sectors_d10(x->sched, first, in, out, num_sectors, x->sector_size);
    }
    return VMENC_OK;
}

static vmenc_status xb_backend_unit(const struct vmenc_xts *x, bool enc, const uint8_t tweak[16],
                                    const uint8_t *in, uint8_t *out, size_t len) {
    if (x->rounds == 14) {
        if (enc)
            xb_unit(x->sched, 14, true, tweak, in, out, len);
        else
            xb_unit(x->sched, 14, false, tweak, in, out, len);
    } else {
        if (enc)
            xb_unit(x->sched, 10, true, tweak, in, out, len);
        else
            xb_unit(x->sched, 10, false, tweak, in, out, len);
    }
    return VMENC_OK;
}

const vmenc_xts_backend XB_BACKEND = {
    .name = XB_NAME,
    .cpu_required = XB_CPU_REQUIRED,
    .sectors = xb_backend_sectors,
    .unit = xb_backend_unit,
};
