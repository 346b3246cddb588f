/*
 * lib/keys/slab.c - secure-memory slots for unwrapped DEKs (see slab.h), now
 * a thin layer over the library's one pooled secure allocator
 * (lib/core/secpool.c), which grew out of this file: its slabs are mlocked,
 * excluded from core dumps, fenced by guard pages and wiped slot by slot.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdlib.h>

#include "keys/slab.h"

/* Every slot comes from the core pool, which finds a slot's slab from its
 * address; the handle kept beside a slot only says "release me through the
 * pool". A DEK can therefore outlive the KEK (and the keyslab pool) that
 * unwrapped it. */
struct vmenc_keyslab {
    int unused;
};
struct vmenc_keyslab_pool {
    int unused;
};
static vmenc_keyslab core_pool_slab;

vmenc_status vmenc_keyslab_pool_new(vmenc_keyslab_pool **out) {
    VMENC_ENSURE_REF(out);
    vmenc_keyslab_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return VMENC_E_NOMEM;
    *out = p;
    return VMENC_OK;
}

void vmenc_keyslab_pool_free(vmenc_keyslab_pool *p) { free(p); }

vmenc_status vmenc_keyslab_alloc(vmenc_keyslab_pool *p, uint8_t **out_slot, vmenc_keyslab **out_slab) {
    VMENC_ENSURE(p != NULL && out_slot != NULL && out_slab != NULL, VMENC_E_INVALID_ARG);
    uint8_t *slot = vmenc_secure_alloc_pooled(VMENC_KEYSLAB_SLOT_BYTES);
    if (slot == NULL)
        return VMENC_E_NOMEM;
    *out_slot = slot;
    *out_slab = &core_pool_slab;
    return VMENC_OK;
}

void vmenc_keyslab_release(vmenc_keyslab *s, uint8_t *slot) {
    if (s == NULL || slot == NULL)
        return;
    vmenc_secure_free(slot); /* wipes */
}
