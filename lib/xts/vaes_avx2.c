/*
 * lib/xts/vaes_avx2.c - the "vaes-avx2" backend: VAES and VPCLMULQDQ on
 * 256-bit registers (2 blocks each), 8 registers = 16 blocks in flight.
 * Compiled with -maes -mpclmul -mavx2 -mvaes -mvpclmulqdq.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <immintrin.h>

#include "xts/vregs.h"
#include "xts/xts_impl.h"

#define XB_VEC __m256i
#define XB_LANES 2
#define XB_NV 8
#define XB_LOADU(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define XB_STOREU(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), (v))
#define XB_XOR(a, b) _mm256_xor_si256((a), (b))
#define XB_AESENC(v, k) _mm256_aesenc_epi128((v), (k))
#define XB_AESENCLAST(v, k) _mm256_aesenclast_epi128((v), (k))
#define XB_AESDEC(v, k) _mm256_aesdec_epi128((v), (k))
#define XB_AESDECLAST(v, k) _mm256_aesdeclast_epi128((v), (k))
#define XB_BCAST(p) _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define XB_SLLI64(v, n) _mm256_slli_epi64((v), (n))
#define XB_SRLI64(v, n) _mm256_srli_epi64((v), (n))
#define XB_BSLLI8(v) _mm256_bslli_epi128((v), 8)
#define XB_CLMUL01(a, b) _mm256_clmulepi64_epi128((a), (b), 0x01)
#define XB_POLY() _mm256_set_epi64x(0, 0x87, 0, 0x87)
#define XB_FROM_TWEAK(t) _mm256_inserti128_si256(_mm256_castsi128_si256(t), xb_mul_alpha(t), 1)
#define XB_LANE0(v) _mm256_castsi256_si128(v)
/* Tweaks in vector registers (VPCLMULQDQ per 128-bit lane), the second half
 * of each group's derived from the first when needed (16 registers). */
#define XB_HALF_TWEAKS 1
#define XB_BSLLI(v, n) _mm256_bslli_epi128((v), (n))
#define XB_BSRLI(v, n) _mm256_bsrli_epi128((v), (n))
#define XB_CLMUL00(a, b) _mm256_clmulepi64_epi128((a), (b), 0x00)
#define XB_BCAST_REG(t) _mm256_broadcastsi128_si256(t)
#define XB_SLLV64(v, c) _mm256_sllv_epi64((v), (c))
#define XB_SRLV64(v, c) _mm256_srlv_epi64((v), (c))
#define XB_LANE_COUNTS(j) _mm256_set_epi64x((j) + 1, (j) + 1, (j), (j))
#define XB_LANE_RCOUNTS(j) _mm256_set_epi64x(63 - (j), 63 - (j), 64 - (j), 64 - (j))
/* Zero every vector register the code may use (vregs.h). */
#define XB_CLEAR_VREGS() VMENC_CLEAR_VREGS16()
#define XB_NAME "vaes-avx2"
#define XB_BACKEND vmenc_xts_backend_vaes_avx2
#define XB_CPU_REQUIRED                                                                    \
    (VMENC_CPU_AESNI | VMENC_CPU_PCLMULQDQ | VMENC_CPU_SSE41 | VMENC_CPU_SSSE3 |             \
     VMENC_CPU_AVX | VMENC_CPU_AVX2 | VMENC_CPU_VAES | VMENC_CPU_VPCLMULQDQ)

#include "xts/xts_body.h"
