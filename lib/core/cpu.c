/*
 * lib/core/cpu.c - CPU feature detection. AVX and AVX-512 are trusted only
 * when CPUID reports OSXSAVE and XCR0 shows the OS saves the YMM (and for
 * AVX-512 the opmask/ZMM) state; otherwise using them would fault.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include "core/internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

uint32_t vmenc_cpu_detect(void) {
    uint32_t a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    const int osxsave = (c >> 27) & 1;
    const int avx_cpu = (c >> 28) & 1;
    if ((c >> 25) & 1) f |= VMENC_CPU_AESNI;
    if ((c >> 1) & 1) f |= VMENC_CPU_PCLMULQDQ;
    if ((c >> 9) & 1) f |= VMENC_CPU_SSSE3;
    if ((c >> 19) & 1) f |= VMENC_CPU_SSE41;

    uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    const int os_ymm = (xcr0 & 0x6) == 0x6;          /* XMM | YMM */
    const int os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0; /* opmask | ZMM_Hi256 | Hi16_ZMM */

    if (avx_cpu && os_ymm) f |= VMENC_CPU_AVX;

    uint32_t max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (os_ymm) {
            if ((b >> 5) & 1) f |= VMENC_CPU_AVX2;
            if ((c >> 9) & 1) f |= VMENC_CPU_VAES;
            if ((c >> 10) & 1) f |= VMENC_CPU_VPCLMULQDQ;
        }
        if (os_zmm) {
            if ((b >> 16) & 1) f |= VMENC_CPU_AVX512F;
            if ((b >> 31) & 1) f |= VMENC_CPU_AVX512VL;
            if ((b >> 30) & 1) f |= VMENC_CPU_AVX512BW;
        }
    }
    return f;
}
#else
uint32_t vmenc_cpu_detect(void) { return 0; }
#endif
