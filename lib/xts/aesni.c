/*
 * lib/xts/aesni.c - the "aesni" backend: AES-NI on 128-bit registers,
 * 8 blocks in flight. Compiled with -maes -mpclmul -msse4.1 -mssse3.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <immintrin.h>

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
/* Zero the 16 vector registers: round keys, tweaks and data must not outlive
 * the call in registers a later signal frame or core dump could save. */
#define XB_CLEAR_VREGS() \
    __asm__ __volatile__( \
        "pxor %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1\n\t" \
        "pxor %%xmm2, %%xmm2\n\tpxor %%xmm3, %%xmm3\n\t" \
        "pxor %%xmm4, %%xmm4\n\tpxor %%xmm5, %%xmm5\n\t" \
        "pxor %%xmm6, %%xmm6\n\tpxor %%xmm7, %%xmm7\n\t" \
        "pxor %%xmm8, %%xmm8\n\tpxor %%xmm9, %%xmm9\n\t" \
        "pxor %%xmm10, %%xmm10\n\tpxor %%xmm11, %%xmm11\n\t" \
        "pxor %%xmm12, %%xmm12\n\tpxor %%xmm13, %%xmm13\n\t" \
        "pxor %%xmm14, %%xmm14\n\tpxor %%xmm15, %%xmm15" \
        ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15")
#define XB_NAME "aesni"
#define XB_BACKEND vmenc_xts_backend_aesni
#define XB_CPU_REQUIRED (VMENC_CPU_AESNI | VMENC_CPU_PCLMULQDQ | VMENC_CPU_SSE41 | VMENC_CPU_SSSE3)

#include "xts/xts_body.h"
