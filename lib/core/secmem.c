/*
 * lib/core/secmem.c - secure memory for every secret byte: small blocks from
 * the pooled allocator (secpool.c), large ones from libsodium's
 * sodium_malloc (guard pages, canary, mlock, excluded from core dumps).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

void *vmenc_secure_alloc(size_t len) {
    if (len == 0 || vmenc_ensure_init() != VMENC_OK)
        return NULL;
    void *p = sodium_malloc(len);
    if (p != NULL)
        memset(p, 0, len);
    return p;
}

void *vmenc_secure_alloc_pooled(size_t len) {
    if (len == 0 || vmenc_ensure_init() != VMENC_OK)
        return NULL;
    void *p = len <= VMENC_SECPOOL_MAX_SLOT ? vmenc_secpool_alloc(len) : NULL;
    /* Large, or the pool cannot grow (its reserved range used up, or the
     * system refused memory): a sodium_malloc region of its own. */
    return p != NULL ? p : vmenc_secure_alloc(len);
}

void vmenc_secure_free(void *p) {
    if (p == NULL || vmenc_secpool_free(p)) /* the pool wipes its slot */
        return;
    sodium_free(p); /* sodium_free wipes the region before unmapping it */
}

static vmenc_status secret_new(size_t len, bool pooled, vmenc_secret **out) {
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(len > 0, VMENC_E_INVALID_ARG);
    vmenc_secret *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return VMENC_E_NOMEM;
    s->bytes = pooled ? vmenc_secure_alloc_pooled(len) : vmenc_secure_alloc(len);
    if (s->bytes == NULL) {
        free(s);
        return VMENC_E_NOMEM;
    }
    s->len = len;
    *out = s;
    return VMENC_OK;
}

vmenc_status vmenc_secret_new(size_t len, vmenc_secret **out) {
    return secret_new(len, false, out);
}

vmenc_status vmenc_secret_new_pooled(size_t len, vmenc_secret **out) {
    return secret_new(len, true, out);
}

vmenc_status vmenc_secret_from(const uint8_t *data, size_t len, vmenc_secret **out) {
    VMENC_ENSURE_REF(data);
    vmenc_secret *s = NULL;
    VMENC_GUARD(vmenc_secret_new(len, &s));
    memcpy(s->bytes, data, len);
    *out = s;
    return VMENC_OK;
}

vmenc_status vmenc_secret_dup(const vmenc_secret *src, vmenc_secret **out) {
    VMENC_ENSURE_REF(src);
    return vmenc_secret_from(src->bytes, src->len, out);
}

void vmenc_secret_readonly(vmenc_secret *s) {
    /* Only a sodium_malloc region has its own pages to protect. */
    if (s != NULL && s->bytes != NULL && !vmenc_secpool_owns(s->bytes))
        (void)sodium_mprotect_readonly(s->bytes);
}

void vmenc_secret_free(vmenc_secret *s) {
    if (s == NULL)
        return;
    if (s->bytes != NULL) {
        if (!vmenc_secpool_owns(s->bytes))
            (void)sodium_mprotect_readwrite(s->bytes);
        vmenc_secure_free(s->bytes);
    }
    free(s);
}

bool vmenc_ct_equal(const void *a, const void *b, size_t len) {
    return sodium_memcmp(a, b, len) == 0;
}
