/*
 * lib/xts/vaes_avx512.c - the "vaes-avx512" backend: VAES and VPCLMULQDQ on
 * 512-bit registers (4 blocks each), 4 registers = 16 blocks in flight, all
 * 15 round keys held in zmm registers. The logic is xts_body.h, shared with
 * the 128- and 256-bit backends; this file is only the vector mapping.
 * Compiled with -mavx512f -mavx512vl -mavx512bw -mvaes -mvpclmulqdq.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <immintrin.h>

#include "xts/vregs.h"
#include "xts/xts_impl.h"

/* t * alpha^1..3 into lanes 1..3 of a zmm whose lane 0 is t. */
static inline __attribute__((always_inline)) __m512i xb512_from_tweak(__m128i t);

#define XB_VEC __m512i
#define XB_LANES 4
#define XB_NV 4
#define XB_LOADU(p) _mm512_loadu_si512((const void *)(p))
#define XB_STOREU(p, v) _mm512_storeu_si512((void *)(p), (v))
#define XB_XOR(a, b) _mm512_xor_si512((a), (b))
#define XB_XOR3(a, b, c) _mm512_ternarylogic_epi64((a), (b), (c), 0x96)
/* lanes (base + j + lane, 0): sector numbers for the tweak batch, mod 2^64 */
#define XB_SECTOR_VEC(base, j)                                                          \
    _mm512_add_epi64(_mm512_maskz_set1_epi64(0x55, (long long)(base)),                   \
                     _mm512_set_epi64(0, (j) + 3, 0, (j) + 2, 0, (j) + 1, 0, (j)))
#define XB_AESENC(v, k) _mm512_aesenc_epi128((v), (k))
#define XB_AESENCLAST(v, k) _mm512_aesenclast_epi128((v), (k))
#define XB_AESDEC(v, k) _mm512_aesdec_epi128((v), (k))
#define XB_AESDECLAST(v, k) _mm512_aesdeclast_epi128((v), (k))
#define XB_BCAST(p) _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define XB_SLLI64(v, n) _mm512_slli_epi64((v), (unsigned)(n))
#define XB_SRLI64(v, n) _mm512_srli_epi64((v), (unsigned)(n))
#define XB_BSLLI8(v) _mm512_bslli_epi128((v), 8)
#define XB_CLMUL01(a, b) _mm512_clmulepi64_epi128((a), (b), 0x01)
/* 32 registers hold data, tweaks and round keys, and on Intel VPCLMULQDQ
 * runs on another port than VAES: advance the tweaks in vector registers. */
#define XB_VECTOR_TWEAKS 1
#define XB_BSLLI(v, n) _mm512_bslli_epi128((v), (n))
#define XB_BSRLI(v, n) _mm512_bsrli_epi128((v), (n))
#define XB_CLMUL00(a, b) _mm512_clmulepi64_epi128((a), (b), 0x00)
#define XB_POLY() _mm512_set_epi64(0, 0x87, 0, 0x87, 0, 0x87, 0, 0x87)
#define XB_FROM_TWEAK(t) xb512_from_tweak(t)
/* 32 registers: the 15 broadcast round keys stay in registers. */
#define XB_KEYS_IN_REGS 1
#define XB_BCAST_REG(t) _mm512_broadcast_i32x4(t)
#define XB_SLLV64(v, c) _mm512_sllv_epi64((v), (c))
#define XB_SRLV64(v, c) _mm512_srlv_epi64((v), (c))
#define XB_LANE_COUNTS(j) _mm512_set_epi64((j) + 3, (j) + 3, (j) + 2, (j) + 2, (j) + 1, (j) + 1, (j), (j))
#define XB_LANE_RCOUNTS(j)                                                                 \
    _mm512_set_epi64(61 - (j), 61 - (j), 62 - (j), 62 - (j), 63 - (j), 63 - (j), 64 - (j), 64 - (j))
/* Zero every vector register the code may use (vregs.h). */
#define XB_CLEAR_VREGS() VMENC_CLEAR_VREGS32()
#define XB_LANE0(v) _mm512_castsi512_si128(v)
#define XB_NAME "vaes-avx512"
#define XB_BACKEND vmenc_xts_backend_vaes_avx512
#define XB_CPU_REQUIRED                                                                    \
    (VMENC_CPU_AESNI | VMENC_CPU_PCLMULQDQ | VMENC_CPU_SSE41 | VMENC_CPU_SSSE3 |             \
     VMENC_CPU_AVX | VMENC_CPU_AVX2 | VMENC_CPU_VAES | VMENC_CPU_VPCLMULQDQ |               \
     VMENC_CPU_AVX512F | VMENC_CPU_AVX512VL | VMENC_CPU_AVX512BW)

#include "xts/xts_body.h"

static inline __attribute__((always_inline)) __m512i xb512_from_tweak(__m128i t) {
    __m128i t1 = xb_mul_alpha(t);
    __m128i t2 = xb_mul_alpha(t1);
    __m128i t3 = xb_mul_alpha(t2);
    __m512i v = _mm512_castsi128_si512(t);
    v = _mm512_inserti32x4(v, t1, 1);
    v = _mm512_inserti32x4(v, t2, 2);
    return _mm512_inserti32x4(v, t3, 3);
}
