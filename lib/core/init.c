/*
 * lib/core/init.c - one-time initialisation, version, CPU detection,
 * randomness.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <pthread.h>
#include <sodium.h>

#include "core/internal.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static vmenc_status g_init_status = VMENC_E_NOT_INITIALIZED;
static uint32_t g_cpu_features;

static void do_init(void) {
    g_cpu_features = vmenc_cpu_detect();
    /* sodium_init returns 0 on first success, 1 if already initialised. */
    g_init_status = sodium_init() < 0 ? VMENC_E_NOT_INITIALIZED : VMENC_OK;
}

vmenc_status vmenc_init(void) {
    if (pthread_once(&g_once, do_init) != 0)
        return VMENC_E_NOT_INITIALIZED;
    return g_init_status;
}

vmenc_status vmenc_ensure_init(void) { return vmenc_init(); }

const char *vmenc_version_string(void) { return VMENC_VERSION_STRING; }

uint32_t vmenc_version_number(void) { return VMENC_VERSION_NUMBER; }

uint32_t vmenc_cpu_features(void) {
    if (vmenc_init() != VMENC_OK)
        return 0;
    return g_cpu_features;
}

vmenc_status vmenc_random_bytes(uint8_t *out, size_t out_len) {
    VMENC_ENSURE(out != NULL || out_len == 0, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_init());
    if (out_len > 0)
        randombytes_buf(out, out_len);
    return VMENC_OK;
}

void vmenc_memzero(void *p, size_t len) {
    if (p != NULL && len > 0)
        sodium_memzero(p, len);
}
