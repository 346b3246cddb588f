/*
 * vmenc/core.h - library initialisation, version, CPU features, randomness.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_CORE_H
#define VMENC_CORE_H

#include "vmenc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMENC_VERSION_MAJOR 0
#define VMENC_VERSION_MINOR 5
#define VMENC_VERSION_PATCH 0
#define VMENC_VERSION_STRING "0.5.0"
/* 0xMMmmpp */
#define VMENC_VERSION_NUMBER \
    ((VMENC_VERSION_MAJOR << 16) | (VMENC_VERSION_MINOR << 8) | VMENC_VERSION_PATCH)

/* vmenc_init initialises libsodium and detects the CPU. It is idempotent and
 * thread-safe; every other entry point calls it implicitly where needed, but
 * a host should call it once at start-up to see a failure early.
 * Fails with VMENC_E_NOT_INITIALIZED if libsodium cannot be initialised. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_init(void);

/* vmenc_version_string returns the runtime library version ("0.1.0"). */
VMENC_API const char *vmenc_version_string(void);

/* vmenc_version_number returns the runtime version as 0xMMmmpp. */
VMENC_API uint32_t vmenc_version_number(void);

/* CPU feature bits, as detected (CPUID and, for AVX/AVX-512, XCR0). */
#define VMENC_CPU_AESNI      (1u << 0)
#define VMENC_CPU_PCLMULQDQ  (1u << 1)
#define VMENC_CPU_AVX        (1u << 2)
#define VMENC_CPU_AVX2       (1u << 3)
#define VMENC_CPU_AVX512F    (1u << 4)
#define VMENC_CPU_AVX512VL   (1u << 5)
#define VMENC_CPU_AVX512BW   (1u << 6)
#define VMENC_CPU_VAES       (1u << 7)
#define VMENC_CPU_VPCLMULQDQ (1u << 8)
#define VMENC_CPU_SSSE3      (1u << 9)
#define VMENC_CPU_SSE41      (1u << 10)

/* vmenc_cpu_features returns the VMENC_CPU_* bits the CPU *and* the OS
 * support (AVX bits are cleared when XCR0 says the OS does not save the
 * registers). Calls vmenc_init() if needed; 0 if that failed. */
VMENC_API uint32_t vmenc_cpu_features(void);

/* vmenc_random_bytes fills |out| with |out_len| bytes from libsodium's CSPRNG.
 * Fails with VMENC_E_INVALID_ARG for a NULL |out| with a nonzero length. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_random_bytes(uint8_t *out, size_t out_len);

/* vmenc_memzero wipes |len| bytes in a way the compiler cannot remove. */
VMENC_API void vmenc_memzero(void *p, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* VMENC_CORE_H */
