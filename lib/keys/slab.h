/*
 * lib/keys/slab.h - small fixed-size slots of libsodium secure memory for
 * unwrapped DEKs.
 *
 * Why: sodium_malloc costs an mmap, two mprotects and an mlock per call
 * (measured ~40 us here), which would make DEK unwrap 60x slower than the
 * AES-GCM it performs. The slots come from the library's pooled secure
 * allocator (lib/core/secpool.c: mlocked slabs with guard pages, excluded
 * from core dumps, every slot wiped when released), which began as this
 * file's per-KEK slabs. Slots are not made read-only (that would cost the
 * syscalls again).
 *
 * The pool and slab handles are kept so callers stay as they were; a slot
 * is independent of the pool it came from, so a DEK may outlive the KEK
 * that unwrapped it. Both types are thread safe.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_KEYS_SLAB_H
#define VMENC_LIB_KEYS_SLAB_H

#include "core/internal.h"

#define VMENC_KEYSLAB_SLOT_BYTES 128u /* a DEK, or the 96-byte KWP payload */

typedef struct vmenc_keyslab vmenc_keyslab;
typedef struct vmenc_keyslab_pool vmenc_keyslab_pool;

VMENC_INTERNAL vmenc_status vmenc_keyslab_pool_new(vmenc_keyslab_pool **out);
/* vmenc_keyslab_pool_free drops the pool's reference to its current slab;
 * slots still in use keep their slab alive. NULL is fine. */
VMENC_INTERNAL void vmenc_keyslab_pool_free(vmenc_keyslab_pool *pool);

/* vmenc_keyslab_alloc hands out a zeroed slot of VMENC_KEYSLAB_SLOT_BYTES
 * and the slab that owns it (to give back to vmenc_keyslab_release). */
VMENC_INTERNAL vmenc_status vmenc_keyslab_alloc(vmenc_keyslab_pool *pool, uint8_t **out_slot,
                                                vmenc_keyslab **out_slab);

/* vmenc_keyslab_release wipes |slot| and returns it to |slab|. */
VMENC_INTERNAL void vmenc_keyslab_release(vmenc_keyslab *slab, uint8_t *slot);

#endif /* VMENC_LIB_KEYS_SLAB_H */
