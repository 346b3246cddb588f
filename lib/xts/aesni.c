/*
 * lib/xts/aesni.c - the "aesni" backend: AES-NI on 128-bit registers,
 * 8 blocks in flight. Compiled with -maes -mpclmul -msse4.1 -mssse3.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <immintrin.h>

#include "xts/vregs.h"

#define XB_VEC __m128i
#define XB_LANES 1
#define XB_NV 8
#define XB_LOADU(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define XB_STOREU(p, v) _mm_storeu_si128((__m128i *)(void *)(p), (v))
#define XB_XOR(a, b) _mm_xor_si128((a), (b))
#define XB_AESENC(v, k) _mm_aesenc_si128((v), (k))
#define XB_AESENCLAST(v, k) _mm_aesenclast_si128((v), (k))
#define XB_AESDEC(v, k) _mm_aesdec_si128((v), (k))
#define XB_AESDECLAST(v, k) _mm_aesdeclast_si128((v), (k))
#define XB_BCAST(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define XB_SLLI64(v, n) _mm_slli_epi64((v), (n))
#define XB_SRLI64(v, n) _mm_srli_epi64((v), (n))
#define XB_BSLLI8(v) _mm_slli_si128((v), 8)
#define XB_CLMUL01(a, b) _mm_clmulepi64_si128((a), (b), 0x01)
#define XB_POLY() _mm_set_epi64x(0, 0x87)
#define XB_FROM_TWEAK(t) (t)
#define XB_LANE0(v) (v)
/* Zero every vector register the code may use (vregs.h). */
#define XB_CLEAR_VREGS() VMENC_CLEAR_VREGS16_SSE()
#define XB_NAME "aesni"
#define XB_BACKEND vmenc_xts_backend_aesni
#define XB_CPU_REQUIRED (VMENC_CPU_AESNI | VMENC_CPU_PCLMULQDQ | VMENC_CPU_SSE41 | VMENC_CPU_SSSE3)

#include "xts/xts_body.h"
