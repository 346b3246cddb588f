/*
 * lib/keys/slab.c - secure-memory slots for unwrapped DEKs (see slab.h).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>

#include "keys/slab.h"

struct vmenc_keyslab {
    pthread_mutex_t mu;
    uint8_t *mem;       /* sodium_malloc(VMENC_KEYSLAB_SLOTS * SLOT_BYTES) */
    uint64_t used;      /* bit i set: slot i handed out */
    unsigned refs;      /* live slots + 1 while a pool holds it */
};

struct vmenc_keyslab_pool {
    pthread_mutex_t mu;
    vmenc_keyslab *current; /* the pool holds one reference */
};

_Static_assert(VMENC_KEYSLAB_SLOTS == 64, "the used-slot map is one uint64_t");

static vmenc_status slab_new(vmenc_keyslab **out) {
    vmenc_keyslab *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return VMENC_E_NOMEM;
    s->mem = vmenc_secure_alloc((size_t)VMENC_KEYSLAB_SLOTS * VMENC_KEYSLAB_SLOT_BYTES);
    if (s->mem == NULL || pthread_mutex_init(&s->mu, NULL) != 0) {
        vmenc_secure_free(s->mem);
        free(s);
        return VMENC_E_NOMEM;
    }
    s->refs = 1;
    *out = s;
    return VMENC_OK;
}

static void slab_destroy(vmenc_keyslab *s) {
    pthread_mutex_destroy(&s->mu);
    vmenc_secure_free(s->mem); /* sodium_free wipes the whole region */
    free(s);
}

/* slab_unref drops one reference; the caller must not hold s->mu. */
static void slab_unref(vmenc_keyslab *s) {
    pthread_mutex_lock(&s->mu);
    unsigned left = --s->refs;
    pthread_mutex_unlock(&s->mu);
    if (left == 0)
        slab_destroy(s);
}

/* slab_take claims a free slot of |s|, or returns NULL if it is full. */
static uint8_t *slab_take(vmenc_keyslab *s) {
    uint8_t *slot = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->used != UINT64_MAX) {
        unsigned i = (unsigned)__builtin_ctzll(~s->used);
        s->used |= (uint64_t)1 << i;
        s->refs++;
        slot = s->mem + (size_t)i * VMENC_KEYSLAB_SLOT_BYTES;
    }
    pthread_mutex_unlock(&s->mu);
    return slot;
}

vmenc_status vmenc_keyslab_pool_new(vmenc_keyslab_pool **out) {
    VMENC_ENSURE_REF(out);
    vmenc_keyslab_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return VMENC_E_NOMEM;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return VMENC_E_NOMEM;
    }
    *out = p; /* the first slab is made on the first allocation */
    return VMENC_OK;
}

void vmenc_keyslab_pool_free(vmenc_keyslab_pool *p) {
    if (p == NULL)
        return;
    if (p->current != NULL)
        slab_unref(p->current);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

vmenc_status vmenc_keyslab_alloc(vmenc_keyslab_pool *p, uint8_t **out_slot, vmenc_keyslab **out_slab) {
    VMENC_ENSURE(p != NULL && out_slot != NULL && out_slab != NULL, VMENC_E_INVALID_ARG);
    vmenc_status rv = VMENC_OK;
    pthread_mutex_lock(&p->mu);
    uint8_t *slot = p->current != NULL ? slab_take(p->current) : NULL;
    if (slot == NULL) {
        /* Full (or none yet): start a new slab; the old one lives on until
         * its last slot is released. */
        vmenc_keyslab *fresh = NULL;
        rv = slab_new(&fresh);
        if (rv == VMENC_OK) {
            if (p->current != NULL)
                slab_unref(p->current);
            p->current = fresh;
            slot = slab_take(fresh);
        }
    }
    vmenc_keyslab *slab = p->current;
    pthread_mutex_unlock(&p->mu);
    if (slot == NULL)
        return rv != VMENC_OK ? rv : VMENC_E_INTERNAL;
    *out_slot = slot;
    *out_slab = slab;
    return VMENC_OK;
}

void vmenc_keyslab_release(vmenc_keyslab *s, uint8_t *slot) {
    if (s == NULL || slot == NULL)
        return;
    sodium_memzero(slot, VMENC_KEYSLAB_SLOT_BYTES);
    size_t i = (size_t)(slot - s->mem) / VMENC_KEYSLAB_SLOT_BYTES;
    pthread_mutex_lock(&s->mu);
    s->used &= ~((uint64_t)1 << i);
    unsigned left = --s->refs;
    pthread_mutex_unlock(&s->mu);
    if (left == 0)
        slab_destroy(s);
}
