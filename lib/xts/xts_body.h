/*
 * lib/xts/xts_body.h - the XTS-AES engine written once, width-generic.
 *
 * Included by aesni.c (128-bit vectors, 1 block each), vaes_avx2.c (256-bit,
 * 2 blocks) and vaes_avx512.c (512-bit, 4 blocks) after they define the
 * vector mapping below. The instantiations differ only in that mapping, so
 * the ones the test machine can run validate the logic of the others. The
 * format is IEEE 1619-2007 (docs/xts.md). Its one safety rule: no copy of a
 * round key or a tweak is ever made in memory the code does not wipe - round
 * keys stay in the schedule (secure memory) or in vector registers whose
 * address is never taken, and every entry point clears the vector registers
 * before it returns.
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
 *   XB_HALF_TWEAKS       the same with 16 registers: the first half of a
 *                        group's tweaks held, the second half derived and
 *                        parked in the frame for the last round (also
 *                        XB_BSLLI, XB_BSRLI, XB_CLMUL00)
 *   XB_KEYS_IN_REGS      hold the broadcast round keys in XB_VEC locals (32
 *                        vector registers); otherwise every use of a round
 *                        key reads it from the schedule (XB_BCAST)
 *   XB_BCAST_REG(t) XB_SLLV64(v, c) XB_SRLV64(v, c) XB_LANE_COUNTS(j)
 *   XB_LANE_RCOUNTS(j)   t in every lane, variable per-64-bit-lane shifts,
 *                        and vectors whose lane i holds j + i (64 - j - i)
 *                        in both halves: then a sector's first tweaks are
 *                        computed lane by lane in parallel
 *   XB_CLEAR_VREGS()     zero every vector register the code may have used
 *
 * Structure: a one-sector call (the common case: one call per I/O) takes
 * xb_sector1: its tweak encrypted in an xmm register straight from the
 * schedule, its first tweaks expanded in parallel, its groups run. Several
 * sectors go through xb_sectors, which encrypts the tweaks of 8 sectors at
 * once; a data unit's blocks go through xb_blocks: groups of XB_NV vectors
 * (xb_groups: all rounds of the group interleaved, so XB_NV * XB_LANES
 * blocks are in flight), then single vectors, then single blocks, then
 * ciphertext stealing (xb_unit).
 *
 * Tweak arithmetic: the tweak is an element of GF(2^128) mod
 * x^128 + x^7 + x^2 + x + 1, stored little-endian (IEEE 1619 5.2). Inside a
 * group's loop it is advanced one block at a time in two 64-bit general-
 * purpose registers (the vector units are busy with AES), or with
 * XB_VECTOR_TWEAKS / XB_HALF_TWEAKS by a whole group per step in vector
 * registers. Elsewhere,
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

#if !defined(XB_VECTOR_TWEAKS) && !defined(XB_HALF_TWEAKS)
#define XB_GPR_TWEAKS 1 /* tweaks in general-purpose registers, a frame buffer */
#endif
/* Vectors of a group whose tweaks are computed when a set starts (all with
 * XB_VECTOR_TWEAKS and the GPR path, the first half with XB_HALF_TWEAKS). */
#ifdef XB_HALF_TWEAKS
#define XB_TW_LIVE (XB_NV / 2)
#else
#define XB_TW_LIVE XB_NV
#endif

#define XB_INLINE static inline __attribute__((always_inline))
/* Fully unrolled loops let the compiler keep tweaks, data and round keys in
 * registers instead of stack arrays. */
#define XB_UNROLL _Pragma("GCC unroll 16")

#ifndef XB_CLEAR_VREGS
#define XB_CLEAR_VREGS() ((void)0)
#endif
#ifndef XB_OPAQUE /* the compiler no longer knows the vector's value */
#define XB_OPAQUE(v) __asm__("" : "+v"(v))
#endif
#ifndef XB_XOR3
#define XB_XOR3(a, b, c) XB_XOR(XB_XOR((a), (b)), (c))
#endif

/* XB_LAUNDER hides where a pointer came from, so each use of the schedule
 * through it is a fresh load: the compiler can neither keep a round key it
 * loaded for one purpose for another nor hoist it, and so never spills one
 * to the stack. */
#define XB_LAUNDER(p) __asm__ __volatile__("" : "+r"(p))

/* xb_wipe zeroes a buffer of the caller's frame that really held tweaks,
 * with inline vector stores (no out-of-line call, no rep stos start-up).
 * The zero is opaque to the compiler so the loop is not turned back into a
 * memset call, and the barrier keeps the stores. |n| is a constant multiple
 * of 16. */
XB_INLINE void xb_wipe(void *p, size_t n) {
    uint8_t *b = (uint8_t *)p;
    size_t i = 0;
    XB_VEC zv = XB_BCAST(b); /* reads 16 bytes: n >= 16 */
    zv = XB_XOR(zv, zv);
    XB_OPAQUE(zv);
    XB_UNROLL
    for (; i + sizeof(XB_VEC) <= n; i += sizeof(XB_VEC))
        XB_STOREU(b + i, zv);
    __m128i z = _mm_setzero_si128();
    __asm__("" : "+v"(z));
    XB_UNROLL
    for (; i < n; i += 16)
        _mm_storeu_si128((__m128i *)(void *)(b + i), z);
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

/* ---- single blocks (128-bit) ------------------------------------------- */

/* t * alpha, for one 128-bit tweak. */
XB_INLINE __m128i xb_mul_alpha(__m128i t) {
    /* Each 32-bit lane's top bit moves to the next lane's bit 0; bit 127
     * wraps around as 0x87. */
    __m128i carry = _mm_shuffle_epi32(_mm_srai_epi32(t, 31), 0x93);
    carry = _mm_and_si128(carry, _mm_set_epi32(1, 1, 1, 0x87));
    return _mm_xor_si128(_mm_slli_epi32(t, 1), carry);
}

/* One block, the round keys read from the schedule as memory operands; the
 * laundered pointer keeps the compiler from holding (and spilling) keys
 * loaded by an earlier call. */
XB_INLINE __m128i xb_enc1(const uint8_t (*rk)[16], unsigned rounds, __m128i b) {
    XB_LAUNDER(rk);
    b = _mm_xor_si128(b, _mm_loadu_si128((const __m128i *)rk[0]));
    XB_UNROLL
    for (unsigned r = 1; r < rounds; r++)
        b = _mm_aesenc_si128(b, _mm_loadu_si128((const __m128i *)rk[r]));
    return _mm_aesenclast_si128(b, _mm_loadu_si128((const __m128i *)rk[rounds]));
}

XB_INLINE __m128i xb_dec1(const uint8_t (*rk)[16], unsigned rounds, __m128i b) {
    XB_LAUNDER(rk);
    b = _mm_xor_si128(b, _mm_loadu_si128((const __m128i *)rk[0]));
    XB_UNROLL
    for (unsigned r = 1; r < rounds; r++)
        b = _mm_aesdec_si128(b, _mm_loadu_si128((const __m128i *)rk[r]));
    return _mm_aesdeclast_si128(b, _mm_loadu_si128((const __m128i *)rk[rounds]));
}

XB_INLINE __m128i xb_crypt1(const uint8_t (*rk)[16], unsigned rounds, bool enc, __m128i b) {
    return enc ? xb_enc1(rk, rounds, b) : xb_dec1(rk, rounds, b);
}

/* The encrypted tweak of one sector: 128-bit AES with the round keys read
 * as memory operands from the schedule, so nothing is copied. */
XB_INLINE __m128i xb_sector_tweak(const vmenc_xts_sched *s, unsigned rounds, uint64_t sector) {
    XB_LAUNDER(s);
    return xb_enc1(s->tk, rounds, _mm_cvtsi64_si128((long long)sector));
}

/* ---- round keys ----------------------------------------------------------
 * xb_keys is a local of each entry point, passed only to always-inline
 * functions, so its address never escapes: with XB_KEYS_IN_REGS the
 * compiler keeps the broadcast keys in registers (there is no stack copy to
 * wipe); otherwise it only names the schedule and each use is a load. */
typedef struct xb_keys {
    bool in_regs; /* a constant in every caller: folded away */
    const uint8_t (*rk)[16];
#ifdef XB_KEYS_IN_REGS
    XB_VEC v[VMENC_XTS_MAX_ROUNDS + 1];
#endif
} xb_keys;

/* |in_regs| asks for registers; it is honoured with XB_KEYS_IN_REGS. The
 * data-unit path (groups, single vectors, single blocks, stealing in one
 * function) asks for none: with keys in registers there GCC spilled some. */
XB_INLINE void xb_keys_load(xb_keys *kk, const uint8_t (*rk)[16], unsigned rounds, bool in_regs) {
    kk->rk = rk;
#ifdef XB_KEYS_IN_REGS
    kk->in_regs = in_regs;
    if (in_regs) {
        XB_UNROLL
        for (unsigned r = 0; r <= rounds; r++)
            kk->v[r] = XB_BCAST(rk[r]);
    }
#else
    (void)rounds;
    (void)in_regs;
    kk->in_regs = false;
#endif
}

/* A round key from the schedule, through a laundered pointer: a fresh load
 * at each use, never a value the compiler could keep and spill. */
XB_INLINE XB_VEC xb_key_mem(const uint8_t (*rk)[16], unsigned r) {
    XB_LAUNDER(rk);
    return XB_BCAST(rk[r]);
}

#ifdef XB_KEYS_IN_REGS
#define XB_KEY(kk, r) ((kk)->in_regs ? (kk)->v[(r)] : xb_key_mem((kk)->rk, (r)))
#else
#define XB_KEY(kk, r) xb_key_mem((kk)->rk, (r))
#endif

/* ---- vectors ------------------------------------------------------------ */

/* t * x^k in every lane (1 <= k <= 57). */
XB_INLINE XB_VEC xb_mul_xk(XB_VEC t, int k) {
    XB_VEC hi = XB_SRLI64(t, 64 - k);  /* bits leaving each 64-bit half */
    XB_VEC res = XB_SLLI64(t, k);
    res = XB_XOR(res, XB_BSLLI8(hi)); /* low half's overflow into the high half */
    return XB_XOR(res, XB_CLMUL01(hi, XB_POLY())); /* reduce what left bit 127 */
}

/* tw[i] lane j = t * x^(i * XB_LANES + j): a group's tweaks from the first
 * block's. With variable shifts every lane's power of x is computed from t
 * independently (a broadcast, two shifts, a byte shift, a carry-less
 * multiply), so the whole set is ready a few cycles after t instead of after
 * a chain of dependent steps. */
XB_INLINE void xb_first_tweaks(__m128i t, XB_VEC *tw) {
#if defined(XB_BCAST_REG) && XB_LANES > 1
    const XB_VEC tb = XB_BCAST_REG(t);
    XB_UNROLL
    for (int i = 0; i < XB_TW_LIVE; i++) {
        const XB_VEC c = XB_LANE_COUNTS(i * XB_LANES);
        /* 64 - c per lane; 64 (lane 0 of vector 0: x^0) shifts all out */
        XB_VEC hi = XB_SRLV64(tb, XB_LANE_RCOUNTS(i * XB_LANES));
        XB_VEC res = XB_XOR(XB_SLLV64(tb, c), XB_BSLLI8(hi));
        tw[i] = XB_XOR(res, XB_CLMUL01(hi, XB_POLY()));
    }
#else
    tw[0] = XB_FROM_TWEAK(t);
    XB_UNROLL
    for (int i = 1; i < XB_TW_LIVE; i++)
        tw[i] = xb_mul_xk(tw[0], i * XB_LANES);
#endif
}

/* The same set computed from tw[0] = XB_FROM_TWEAK(t): a short chain, but
 * no shift-count constants, so it needs no extra registers - for the
 * multi-sector stream, which expands the next sector's tweaks while the
 * current rounds run, with all round keys held in registers. */
XB_INLINE void xb_first_tweaks_lean(__m128i t, XB_VEC *tw) {
    tw[0] = XB_FROM_TWEAK(t);
    XB_UNROLL
    for (int i = 1; i < XB_NV; i++)
        tw[i] = xb_mul_xk(tw[0], i * XB_LANES);
}

/* d[i] = AES(d[i]) for the XB_NV vectors of a group; d[i] already holds the
 * input XORed with the tweak and round key 0. */
XB_INLINE void xb_rounds(XB_VEC *d, const xb_keys *kk, unsigned rounds, bool enc) {
    if (enc) {
        XB_UNROLL
        for (unsigned r = 1; r < rounds; r++) {
            const XB_VEC k = XB_KEY(kk, r);
            XB_UNROLL
            for (int i = 0; i < XB_NV; i++)
                d[i] = XB_AESENC(d[i], k);
        }
        const XB_VEC k = XB_KEY(kk, rounds);
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++)
            d[i] = XB_AESENCLAST(d[i], k);
    } else {
        XB_UNROLL
        for (unsigned r = 1; r < rounds; r++) {
            const XB_VEC k = XB_KEY(kk, r);
            XB_UNROLL
            for (int i = 0; i < XB_NV; i++)
                d[i] = XB_AESDEC(d[i], k);
        }
        const XB_VEC k = XB_KEY(kk, rounds);
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++)
            d[i] = XB_AESDECLAST(d[i], k);
    }
}

/* The rounds of a group whose inputs already hold data ^ tweak ^ k[0]; the
 * output tweak is folded into the last round key (AESENCLAST and AESDECLAST
 * end with a XOR of the key), off the data's critical path. */
XB_INLINE void xb_rounds_tw(XB_VEC *d, const xb_keys *kk, unsigned rounds, bool enc,
                            const XB_VEC *tw) {
    if (enc) {
        XB_UNROLL
        for (unsigned r = 1; r < rounds; r++) {
            const XB_VEC k = XB_KEY(kk, r);
            XB_UNROLL
            for (int i = 0; i < XB_NV; i++)
                d[i] = XB_AESENC(d[i], k);
        }
        const XB_VEC k = XB_KEY(kk, rounds);
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++)
            d[i] = XB_AESENCLAST(d[i], XB_XOR(k, tw[i]));
    } else {
        XB_UNROLL
        for (unsigned r = 1; r < rounds; r++) {
            const XB_VEC k = XB_KEY(kk, r);
            XB_UNROLL
            for (int i = 0; i < XB_NV; i++)
                d[i] = XB_AESDEC(d[i], k);
        }
        const XB_VEC k = XB_KEY(kk, rounds);
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++)
            d[i] = XB_AESDECLAST(d[i], XB_XOR(k, tw[i]));
    }
}

/* Tweaks of two groups for the general-purpose-register path; the only
 * buffer of the frame that holds secret-dependent values, wiped by the
 * entry points that use it. */
typedef struct xb_tbuf {
    uint64_t t[2][XB_NV * XB_LANES][2] __attribute__((aligned(64)));
} xb_tbuf;

#if defined(XB_VECTOR_TWEAKS) || defined(XB_HALF_TWEAKS)
/* h * (x^7 + x^2 + x + 1) per 128-bit lane, h in the low half: the bits a
 * byte shift moved out past bit 127, folded back with one carry-less
 * multiply. (Three shifts and three XORs instead measured 15-20% slower on
 * Zen 5: they compete for the same vector pipes.) With XB_HALF_TWEAKS the
 * constant is read from memory at each use, as the multiply's memory
 * operand: a register for it would leave the group one too few. */
#ifdef XB_HALF_TWEAKS
static const uint64_t xb_poly_mem[8] __attribute__((aligned(64))) = {
    0x87, 0, 0x87, 0, 0x87, 0, 0x87, 0};
XB_INLINE XB_VEC xb_fold(XB_VEC h) {
    const uint64_t *p = xb_poly_mem;
    XB_LAUNDER(p);
    return XB_CLMUL00(h, XB_LOADU(p));
}
#else
XB_INLINE XB_VEC xb_fold(XB_VEC h) {
    return XB_CLMUL00(h, XB_POLY());
}
#endif
#endif

/* Wipes what the group loop stored in |b|: both tweak sets of the GPR
 * path, the second half's tweaks with XB_HALF_TWEAKS, nothing otherwise. */
XB_INLINE void xb_tbuf_wipe(xb_tbuf *b) {
#if defined(XB_GPR_TWEAKS)
    xb_wipe(b, sizeof(*b));
#elif defined(XB_HALF_TWEAKS)
    xb_wipe(b->t[0], (size_t)XB_TW_LIVE * sizeof(XB_VEC));
#else
    (void)b;
#endif
}

#ifdef XB_VECTOR_TWEAKS
/* Whole groups of XB_NV vectors, tweaks in vector registers: each group's
 * tweaks are the previous group's times x^(8 * XB_GROUP_BYTES_SHIFT), a byte
 * shift and one carry-less multiply per vector, computed before the rounds
 * so they are ready early. Used where PCLMULQDQ does not compete with AES
 * for an execution port and registers are plentiful (AVX-512). */
#define XB_GROUP_BYTES_SHIFT (XB_NV * XB_LANES / 8)
_Static_assert((XB_NV * XB_LANES) % 8 == 0 && XB_NV * XB_LANES <= 56,
               "a group must advance the tweak by a whole number of bytes, at most 7");

/* A group's tweaks advanced by one group: times x^(XB_NV * XB_LANES). */
XB_INLINE XB_VEC xb_advance(XB_VEC tw) {
    return XB_XOR(XB_BSLLI(tw, XB_GROUP_BYTES_SHIFT),
                  xb_fold(XB_BSRLI(tw, 16 - XB_GROUP_BYTES_SHIFT)));
}

/* Returns the tweak vector of the first block not processed. */
XB_INLINE XB_VEC xb_groups(const xb_keys *kk, unsigned rounds, bool enc, XB_VEC *tw,
                           xb_tbuf *buf, const uint8_t **pin, uint8_t **pout,
                           size_t *pnum_blocks) {
    (void)buf;
    const uint8_t *in = *pin;
    uint8_t *out = *pout;
    size_t num_blocks = *pnum_blocks;
    for (;;) {
        XB_VEC d[XB_NV];
        const XB_VEC k0 = XB_KEY(kk, 0);
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++)
            d[i] = XB_XOR3(XB_LOADU(in + (size_t)i * 16 * XB_LANES), tw[i], k0);
        xb_rounds_tw(d, kk, rounds, enc, tw);
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++)
            XB_STOREU(out + (size_t)i * 16 * XB_LANES, d[i]);
        in += (size_t)XB_NV * 16 * XB_LANES;
        out += (size_t)XB_NV * 16 * XB_LANES;
        num_blocks -= XB_NV * XB_LANES;
        /* advanced after the rounds: one set of tweaks live across them */
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++)
            tw[i] = xb_advance(tw[i]);
        if (num_blocks < XB_NV * XB_LANES)
            break;
    }
    *pin = in;
    *pout = out;
    *pnum_blocks = num_blocks;
    return tw[0];
}
#elif defined(XB_HALF_TWEAKS)
/* Whole groups of XB_NV vectors with the tweaks computed in vector registers
 * (VPCLMULQDQ per 128-bit lane), for 16 registers: XB_NV data vectors, the
 * first half's tweaks (XB_TW_LIVE vectors), a round key and temporaries fill
 * them. Each second-half tweak is its first-half partner times
 * x^(XB_TW_LIVE * XB_LANES) (a byte shift and one carry-less multiply),
 * computed for the input XOR and parked for the last round in |buf| - four
 * vectors of the frame, written and read back within the group (the store
 * forwards to the load), wiped by the entry point. Recomputing them at the
 * last round instead cost a third more multiplies and measured 5-6% slower
 * at 4 and 64 KiB on Zen 5. A group advances the live tweaks by
 * x^(XB_NV * XB_LANES) after its stores, so one set is live across the
 * rounds. No integer chain: the general-purpose-register design this
 * replaces fell to 0.8x the kernel whenever the other vCPU's load competed
 * for its 16-step chain and 32 narrow stores per group. */
#define XB_HALF_BITS (XB_TW_LIVE * XB_LANES)
#define XB_GROUP_BITS (XB_NV * XB_LANES)
_Static_assert(XB_GROUP_BITS % 8 == 0 && XB_GROUP_BITS <= 56,
               "a group must advance the tweak by a whole number of bytes, at most 7");

/* tw * x^XB_GROUP_BITS, per 128-bit lane */
XB_INLINE XB_VEC xb_advance(XB_VEC tw) {
    return XB_XOR(XB_BSLLI(tw, XB_GROUP_BITS / 8), xb_fold(XB_BSRLI(tw, 16 - XB_GROUP_BITS / 8)));
}

/* tw * x^XB_HALF_BITS, per 128-bit lane: the second half's tweak */
XB_INLINE XB_VEC xb_half_up(XB_VEC tw) {
#if XB_HALF_BITS % 8 == 0
    return XB_XOR(XB_BSLLI(tw, XB_HALF_BITS / 8), xb_fold(XB_BSRLI(tw, 16 - XB_HALF_BITS / 8)));
#else
    return xb_mul_xk(tw, XB_HALF_BITS);
#endif
}

/* |tw| holds the first half's tweaks of the first group; returns the tweak
 * vector of the first block not processed. */
XB_INLINE XB_VEC xb_groups(const xb_keys *kk, unsigned rounds, bool enc, XB_VEC *tw,
                           xb_tbuf *buf, const uint8_t **pin, uint8_t **pout,
                           size_t *pnum_blocks) {
    const uint8_t *in = *pin;
    uint8_t *out = *pout;
    size_t num_blocks = *pnum_blocks;
    for (;;) {
        XB_VEC d[XB_NV];
        const XB_VEC k0 = XB_KEY(kk, 0);
        XB_UNROLL
        for (int i = 0; i < XB_TW_LIVE; i++) {
            const XB_VEC th = xb_half_up(tw[i]);
            XB_STOREU(buf->t[0][i * XB_LANES], th);
            d[i] = XB_XOR3(XB_LOADU(in + (size_t)i * 16 * XB_LANES), tw[i], k0);
            d[i + XB_TW_LIVE] =
                XB_XOR3(XB_LOADU(in + (size_t)(i + XB_TW_LIVE) * 16 * XB_LANES), th, k0);
        }
        if (enc) {
            XB_UNROLL
            for (unsigned r = 1; r < rounds; r++) {
                const XB_VEC k = XB_KEY(kk, r);
                XB_UNROLL
                for (int i = 0; i < XB_NV; i++)
                    d[i] = XB_AESENC(d[i], k);
            }
        } else {
            XB_UNROLL
            for (unsigned r = 1; r < rounds; r++) {
                const XB_VEC k = XB_KEY(kk, r);
                XB_UNROLL
                for (int i = 0; i < XB_NV; i++)
                    d[i] = XB_AESDEC(d[i], k);
            }
        }
        /* The last round with the output tweak folded into its key. The
         * second half's tweaks are read back from the frame through a
         * laundered pointer, so the compiler cannot keep the input XOR's
         * values alive across the rounds (that would need more registers
         * than there are, and it would spill them where nothing wipes). */
        const XB_VEC kl = XB_KEY(kk, rounds);
        XB_UNROLL
        for (int i = 0; i < XB_TW_LIVE; i++) {
            xb_tbuf *b = buf;
            XB_LAUNDER(b);
            const XB_VEC th = XB_LOADU(b->t[0][i * XB_LANES]);
            if (enc) {
                d[i] = XB_AESENCLAST(d[i], XB_XOR(kl, tw[i]));
                d[i + XB_TW_LIVE] = XB_AESENCLAST(d[i + XB_TW_LIVE], XB_XOR(kl, th));
            } else {
                d[i] = XB_AESDECLAST(d[i], XB_XOR(kl, tw[i]));
                d[i + XB_TW_LIVE] = XB_AESDECLAST(d[i + XB_TW_LIVE], XB_XOR(kl, th));
            }
        }
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++)
            XB_STOREU(out + (size_t)i * 16 * XB_LANES, d[i]);
        in += (size_t)XB_NV * 16 * XB_LANES;
        out += (size_t)XB_NV * 16 * XB_LANES;
        num_blocks -= XB_NV * XB_LANES;
        XB_UNROLL
        for (int i = 0; i < XB_TW_LIVE; i++)
            tw[i] = xb_advance(tw[i]);
        if (num_blocks < XB_NV * XB_LANES)
            break;
    }
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
 * registers instead, two groups ahead, into a small double buffer that the
 * XORs read as memory operands; they are written two groups before they are
 * read, so the wide loads do not wait on the narrow stores. On Zen 3 this
 * beat computing them with vector shifts and PCLMULQDQ by 15-25% (aesni
 * 0.87 -> 1.10x OpenSSL, vaes-avx2 1.74 -> 2.0x at 64 KiB sectors). The
 * first two groups' tweaks come from vector arithmetic (stores that forward
 * to the same-size loads at once), so a short unit - a 512-byte sector is
 * two groups on vaes-avx2 - does not wait for the integer chain. |tw| holds
 * the first group's tweaks; returns the tweak vector of the first block not
 * processed. */
_Static_assert(2 * XB_NV * XB_LANES <= 57, "the third group's tweak is one vector step away");
XB_INLINE XB_VEC xb_groups(const xb_keys *kk, unsigned rounds, bool enc, const XB_VEC *tw,
                           xb_tbuf *buf, const uint8_t **pin, uint8_t **pout,
                           size_t *pnum_blocks) {
    const uint8_t *in = *pin;
    uint8_t *out = *pout;
    size_t num_blocks = *pnum_blocks;
    XB_UNROLL
    for (int i = 0; i < XB_NV; i++) {
        XB_STOREU(buf->t[0][i * XB_LANES], tw[i]);
        XB_STOREU(buf->t[1][i * XB_LANES], xb_mul_xk(tw[i], XB_NV * XB_LANES));
    }
    __m128i t0 = XB_LANE0(xb_mul_xk(tw[0], 2 * XB_NV * XB_LANES));
    uint64_t lo = (uint64_t)_mm_cvtsi128_si64(t0);
    uint64_t hi = (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(t0, t0));
    unsigned cur = 0;
    do {
        uint64_t(*t)[2] = buf->t[cur];
        XB_VEC d[XB_NV];
        const XB_VEC k0 = XB_KEY(kk, 0);
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++)
            d[i] = XB_XOR(XB_XOR(XB_LOADU(in + (size_t)i * 16 * XB_LANES), XB_LOADU(t[i * XB_LANES])),
                          k0);
        xb_rounds(d, kk, rounds, enc);
        /* Read the tweaks again for the output XOR, through a laundered
         * pointer: otherwise the compiler keeps the input XOR's loads live
         * across the rounds (8 data + 8 tweaks + a key > 16 registers) and
         * spills a tweak and a data block to the stack, unwiped. */
        uint64_t(*t2)[2] = t;
        XB_LAUNDER(t2);
        XB_UNROLL
        for (int i = 0; i < XB_NV; i++)
            XB_STOREU(out + (size_t)i * 16 * XB_LANES, XB_XOR(d[i], XB_LOADU(t2[i * XB_LANES])));
        /* this buffer now takes the group after next */
        XB_UNROLL
        for (int i = 0; i < XB_NV * XB_LANES; i++) {
            t[i][0] = lo;
            t[i][1] = hi;
            xb_gpr_mul_alpha(&lo, &hi);
        }
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
 * Returns the tweak of the block after the last one. */
XB_INLINE __m128i xb_blocks(const uint8_t (*rk)[16], const xb_keys *kk, unsigned rounds, bool enc,
                            __m128i t, xb_tbuf *buf, const uint8_t *in, uint8_t *out,
                            size_t num_blocks) {
    if (num_blocks >= XB_LANES) {
        XB_VEC tv;
        if (num_blocks >= (size_t)XB_NV * XB_LANES) {
            XB_VEC tw[XB_NV];
            xb_first_tweaks(t, tw);
            tv = xb_groups(kk, rounds, enc, tw, buf, &in, &out, &num_blocks);
        } else {
            tv = XB_FROM_TWEAK(t);
        }
        while (num_blocks >= XB_LANES) {
            XB_VEC tw = tv;
            tv = xb_mul_xk(tv, XB_LANES);
            XB_VEC d = XB_XOR3(XB_LOADU(in), tw, XB_KEY(kk, 0));
            if (enc) {
                XB_UNROLL
                for (unsigned r = 1; r < rounds; r++)
                    d = XB_AESENC(d, XB_KEY(kk, r));
                d = XB_AESENCLAST(d, XB_KEY(kk, rounds));
            } else {
                XB_UNROLL
                for (unsigned r = 1; r < rounds; r++)
                    d = XB_AESDEC(d, XB_KEY(kk, r));
                d = XB_AESDECLAST(d, XB_KEY(kk, rounds));
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
    xb_keys kk;
    xb_keys_load(&kk, rk, rounds, false);
    xb_tbuf tbuf;
    if (rem == 0) {
        (void)xb_blocks(rk, &kk, rounds, enc, t, &tbuf, in, out, full);
        if (full >= (size_t)XB_NV * XB_LANES)
            xb_tbuf_wipe(&tbuf);
        return;
    }
    t = xb_blocks(rk, &kk, rounds, enc, t, &tbuf, in, out, full - 1);
    if (full - 1 >= (size_t)XB_NV * XB_LANES)
        xb_tbuf_wipe(&tbuf);
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
    xb_wipe(buf, sizeof(buf));
    xb_wipe(tail, sizeof(tail));
}

/* ---- one sector: the per-I/O call -------------------------------------
 *
 * What a one-sector call costs beyond its rounds is its prefix: the tweak's
 * AES latency, the broadcast of the keys and the first tweaks' expansion.
 * Here the tweak is one 128-bit AES straight from the schedule, the keys are
 * broadcast while it runs, and the first set of tweaks is expanded lane by
 * lane in parallel; no tweak batch, no next-sector tweak, no division, and
 * nothing of the keys stored to the stack. */
#define XB_GROUP_BYTES ((size_t)XB_NV * XB_LANES * 16)
_Static_assert((VMENC_XTS_MIN_SECTOR / 16) % (XB_NV * XB_LANES) == 0,
               "every sector size must be a whole number of groups");

#ifdef XB_VECTOR_TWEAKS
XB_INLINE void xb_sector1(const vmenc_xts_sched *s, unsigned rounds, bool enc, uint64_t sector,
                          const uint8_t *in, uint8_t *out, size_t sector_size) {
    const __m128i t = xb_sector_tweak(s, rounds, sector);
    xb_keys kk;
    xb_keys_load(&kk, enc ? s->ek : s->dk, rounds, true);
    XB_VEC tw[XB_NV];
    xb_first_tweaks(t, tw);
    const uint8_t *end = in + sector_size;
    for (;;) {
        XB_VEC d[XB_NV];
        const XB_VEC k0 = XB_KEY(&kk, 0);
        XB_UNROLL
        for (int v = 0; v < XB_NV; v++)
            d[v] = XB_XOR3(XB_LOADU(in + (size_t)v * 16 * XB_LANES), tw[v], k0);
        xb_rounds_tw(d, &kk, rounds, enc, tw);
        XB_UNROLL
        for (int v = 0; v < XB_NV; v++)
            XB_STOREU(out + (size_t)v * 16 * XB_LANES, d[v]);
        in += XB_GROUP_BYTES;
        out += XB_GROUP_BYTES;
        if (in == end)
            break;
        XB_UNROLL
        for (int v = 0; v < XB_NV; v++)
            tw[v] = xb_advance(tw[v]);
    }
}
#else
XB_INLINE void xb_sector1(const vmenc_xts_sched *s, unsigned rounds, bool enc, uint64_t sector,
                          const uint8_t *in, uint8_t *out, size_t sector_size) {
    const uint8_t(*rk)[16] = enc ? s->ek : s->dk;
    const __m128i t = xb_sector_tweak(s, rounds, sector);
    xb_keys kk;
    xb_keys_load(&kk, rk, rounds, true);
    xb_tbuf tbuf;
    (void)xb_blocks(rk, &kk, rounds, enc, t, &tbuf, in, out, sector_size / 16);
    xb_tbuf_wipe(&tbuf);
}
#endif

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
 * the tweak encryption's latency and a pipeline fill and drain. The
 * encrypted tweaks go through a small buffer in the frame (the one thing
 * stored), wiped before return. */
#define XB_TB 8 /* sectors whose tweaks are encrypted together */
_Static_assert(XB_TB % XB_LANES == 0, "a tweak batch fills whole vectors");

/* et[j] = E_tk(sector + j) for j < XB_TB (sector numbers wrap mod 2^64).
 * With XB_SECTOR_VEC(base, j) (a vector of lanes (base + j + lane, 0),
 * built in registers) in full-width vectors, the tweak key broadcast from
 * the schedule round by round; otherwise in 128-bit registers: building a
 * wide vector of sector numbers through memory would make wide loads wait
 * on narrow stores that cannot forward to them, which cost 3% at 512-byte
 * sectors. */
XB_INLINE void xb_tweak_batch(const vmenc_xts_sched *s, unsigned rounds, uint64_t sector,
                              uint8_t et[XB_TB][16]) {
    XB_LAUNDER(s);
#ifdef XB_SECTOR_VEC
    XB_VEC v[XB_TB / XB_LANES];
    const XB_VEC k0 = XB_BCAST(s->tk[0]);
    XB_UNROLL
    for (int i = 0; i < XB_TB / XB_LANES; i++)
        v[i] = XB_XOR(XB_SECTOR_VEC(sector, i * XB_LANES), k0);
    XB_UNROLL
    for (unsigned r = 1; r < rounds; r++) {
        const XB_VEC k = XB_BCAST(s->tk[r]);
        XB_UNROLL
        for (int i = 0; i < XB_TB / XB_LANES; i++)
            v[i] = XB_AESENC(v[i], k);
    }
    const XB_VEC kl = XB_BCAST(s->tk[rounds]);
    XB_UNROLL
    for (int i = 0; i < XB_TB / XB_LANES; i++)
        XB_STOREU(et[i * XB_LANES], XB_AESENCLAST(v[i], kl));
#else
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

#ifdef XB_VECTOR_TWEAKS
XB_INLINE void xb_sectors(const vmenc_xts_sched *s, unsigned rounds, bool enc, uint64_t sector,
                          const uint8_t *in, uint8_t *out, size_t num_sectors, size_t sector_size) {
    const size_t groups = sector_size / XB_GROUP_BYTES; /* per sector; a shift */
    uint8_t et[2][XB_TB][16] __attribute__((aligned(64)));
    xb_keys kk;
    xb_keys_load(&kk, enc ? s->ek : s->dk, rounds, true);
    xb_tweak_batch(s, rounds, sector, et[0]);
    if (num_sectors > XB_TB)
        xb_tweak_batch(s, rounds, sector + XB_TB, et[1]);
    XB_VEC tw[XB_NV];
    xb_first_tweaks_lean(_mm_loadu_si128((const __m128i *)(const void *)et[0][0]), tw);
    for (size_t i = 0; i < num_sectors; i++) {
        for (size_t g = groups; g > 0; g--) {
            XB_VEC d[XB_NV];
            const XB_VEC k0 = XB_KEY(&kk, 0);
            XB_UNROLL
            for (int v = 0; v < XB_NV; v++)
                d[v] = XB_XOR3(XB_LOADU(in + (size_t)v * 16 * XB_LANES), tw[v], k0);
            xb_rounds_tw(d, &kk, rounds, enc, tw);
            XB_UNROLL
            for (int v = 0; v < XB_NV; v++)
                XB_STOREU(out + (size_t)v * 16 * XB_LANES, d[v]);
            in += XB_GROUP_BYTES;
            out += XB_GROUP_BYTES;
            /* The next group's tweaks, computed after the rounds in program
             * order so only one set is live across them (15 keys, 4 data, 4
             * tweaks: no spill); they do not depend on the rounds, so they
             * are ready long before the next group's first XOR. */
            if (g > 1) {
                XB_UNROLL
                for (int v = 0; v < XB_NV; v++)
                    tw[v] = xb_advance(tw[v]);
            } else if (i + 1 < num_sectors) {
                /* The next sector's, from the batch encrypted a batch ago.
                 * Where a batch starts, the one after it is encrypted first,
                 * into the slot just used up - here, where no tweak is live,
                 * so its registers do not push a round key out. */
                const size_t n = i + 1;
                if (n % XB_TB == 0 && n + XB_TB < num_sectors)
                    xb_tweak_batch(s, rounds, sector + n + XB_TB, et[(n / XB_TB + 1) & 1]);
                xb_first_tweaks_lean(
                    _mm_loadu_si128((const __m128i *)(const void *)et[(n / XB_TB) & 1][n % XB_TB]),
                    tw);
            }
        }
    }
    xb_wipe(et, sizeof(et));
}
#else
/* With general-purpose-register tweaks (16 vector registers), streaming
 * groups across sector boundaries made GCC spill a data vector inside the
 * rounds and cost 12-14% at 4 and 64 KiB on Zen 4; here each sector runs
 * through xb_blocks, and only the tweak batches are shared with the vector
 * path (a batch ahead). */
XB_INLINE void xb_sectors(const vmenc_xts_sched *s, unsigned rounds, bool enc, uint64_t sector,
                          const uint8_t *in, uint8_t *out, size_t num_sectors, size_t sector_size) {
    const uint8_t(*rk)[16] = enc ? s->ek : s->dk;
    const size_t blocks = sector_size / 16;
    uint8_t et[2][XB_TB][16] __attribute__((aligned(64)));
    xb_keys kk;
    xb_keys_load(&kk, rk, rounds, true);
    xb_tbuf tbuf;
    xb_tweak_batch(s, rounds, sector, et[0]);
    for (size_t i = 0; i < num_sectors; i++) {
        if (i % XB_TB == 0 && i + XB_TB < num_sectors)
            xb_tweak_batch(s, rounds, sector + i + XB_TB, et[(i / XB_TB + 1) & 1]);
        __m128i t = _mm_loadu_si128((const __m128i *)(const void *)et[(i / XB_TB) & 1][i % XB_TB]);
        (void)xb_blocks(rk, &kk, rounds, enc, t, &tbuf, in, out, blocks);
        in += sector_size;
        out += sector_size;
    }
    xb_tbuf_wipe(&tbuf);
    xb_wipe(et, sizeof(et));
}
#endif

/* ---- backend entry points: specialised per direction and key size so the
 * round loops unroll with constant bounds. Each clears the vector registers
 * before it returns (round keys, tweaks and data were in them). ---------- */

#define XB_SECTORS_ENTRY(name, R, ENC)                                                        \
    static __attribute__((noinline)) void name##_1(const vmenc_xts_sched *s, uint64_t f,      \
                                                   const uint8_t *in, uint8_t *out,           \
                                                   size_t ss) {                               \
        xb_sector1(s, R, ENC, f, in, out, ss);                                                \
        XB_CLEAR_VREGS();                                                                     \
    }                                                                                         \
    static __attribute__((noinline)) void name##_n(const vmenc_xts_sched *s, uint64_t f,      \
                                                   const uint8_t *in, uint8_t *out, size_t n, \
                                                   size_t ss) {                               \
        xb_sectors(s, R, ENC, f, in, out, n, ss);                                             \
        XB_CLEAR_VREGS();                                                                     \
    }                                                                                         \
    static inline void name(const vmenc_xts_sched *s, uint64_t f, const uint8_t *in,          \
                            uint8_t *out, size_t n, size_t ss) {                              \
        if (n == 1)                                                                           \
            name##_1(s, f, in, out, ss);                                                      \
        else                                                                                  \
            name##_n(s, f, in, out, n, ss);                                                   \
    }
/* One-sector and multi-sector calls are separate functions, so neither's
 * register allocation is shaped by the other's (shared loads hoisted above
 * the branch would otherwise be spilled). */
XB_SECTORS_ENTRY(xb_sectors_e10, 10, true)
XB_SECTORS_ENTRY(xb_sectors_d10, 10, false)
XB_SECTORS_ENTRY(xb_sectors_e14, 14, true)
XB_SECTORS_ENTRY(xb_sectors_d14, 14, false)
#undef XB_SECTORS_ENTRY

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

#define XB_UNIT_ENTRY(name, R, ENC)                                                           \
    static __attribute__((noinline)) void name(const vmenc_xts_sched *s, const uint8_t tweak[16], \
                                               const uint8_t *in, uint8_t *out, size_t len) { \
        xb_unit(s, R, ENC, tweak, in, out, len);                                              \
        XB_CLEAR_VREGS();                                                                     \
    }
XB_UNIT_ENTRY(xb_unit_e10, 10, true)
XB_UNIT_ENTRY(xb_unit_d10, 10, false)
XB_UNIT_ENTRY(xb_unit_e14, 14, true)
XB_UNIT_ENTRY(xb_unit_d14, 14, false)
#undef XB_UNIT_ENTRY

static vmenc_status xb_backend_unit(const struct vmenc_xts *x, bool enc, const uint8_t tweak[16],
                                    const uint8_t *in, uint8_t *out, size_t len) {
    if (x->rounds == 14) {
        if (enc)
            xb_unit_e14(x->sched, tweak, in, out, len);
        else
            xb_unit_d14(x->sched, tweak, in, out, len);
    } else {
        if (enc)
            xb_unit_e10(x->sched, tweak, in, out, len);
        else
            xb_unit_d10(x->sched, tweak, in, out, len);
    }
    return VMENC_OK;
}

const vmenc_xts_backend XB_BACKEND = {
    .name = XB_NAME,
    .cpu_required = XB_CPU_REQUIRED,
    .sectors = xb_backend_sectors,
    .unit = xb_backend_unit,
};
