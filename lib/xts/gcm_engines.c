/*
 * lib/xts/gcm_engines.c - the table of vmenc's AES-256-GCM engines
 * (gcm_impl.h), fastest first. Compiled for the baseline CPU: it only
 * names the engines; each one's usable() checks the CPU before anything of
 * it runs.
 *
 * Safety rule: an engine is called only after its usable() said yes.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include "xts/gcm_impl.h"

const vmenc_gcm_engine vmenc_gcm_engines[] = {
    {"vaes-avx512", vmenc_gcm_vaes_avx512_usable, vmenc_gcm_vaes_avx512_init, vmenc_gcm_vaes_avx512_crypt},
    {"vaes-avx2", vmenc_gcm_vaes_avx2_usable, vmenc_gcm_vaes_avx2_init, vmenc_gcm_vaes_avx2_crypt},
};
const size_t vmenc_gcm_num_engines = sizeof(vmenc_gcm_engines) / sizeof(vmenc_gcm_engines[0]);
