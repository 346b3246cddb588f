/*
 * lib/core/bytes.c - the bounded read cursor (vmenc_cbs) and the writer with
 * a sticky error bit (vmenc_cbb) that every vmenc parser and serialiser uses.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

/* ---- cbs ---------------------------------------------------------------- */

void vmenc_cbs_init(vmenc_cbs *cbs, const uint8_t *data, size_t len) {
    cbs->data = data;
    cbs->len = data != NULL ? len : 0;
}

size_t vmenc_cbs_len(const vmenc_cbs *cbs) { return cbs->len; }
const uint8_t *vmenc_cbs_data(const vmenc_cbs *cbs) { return cbs->data; }

static bool cbs_get(vmenc_cbs *cbs, const uint8_t **p, size_t n) {
    if (cbs->len < n)
        return false;
    *p = cbs->data;
    cbs->data += n;
    cbs->len -= n;
    return true;
}

bool vmenc_cbs_skip(vmenc_cbs *cbs, size_t len) {
    const uint8_t *p;
    return cbs_get(cbs, &p, len);
}

static bool cbs_get_be(vmenc_cbs *cbs, uint64_t *out, size_t n) {
    const uint8_t *p;
    if (!cbs_get(cbs, &p, n))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    *out = v;
    return true;
}

static bool cbs_get_le(vmenc_cbs *cbs, uint64_t *out, size_t n) {
    const uint8_t *p;
    if (!cbs_get(cbs, &p, n))
        return false;
    uint64_t v = 0;
    for (size_t i = n; i > 0; i--)
        v = (v << 8) | p[i - 1];
    *out = v;
    return true;
}

bool vmenc_cbs_get_u8(vmenc_cbs *cbs, uint8_t *out) {
    uint64_t v;
    if (!cbs_get_be(cbs, &v, 1)) return false;
    *out = (uint8_t)v;
    return true;
}
bool vmenc_cbs_get_u16(vmenc_cbs *cbs, uint16_t *out) {
    uint64_t v;
    if (!cbs_get_be(cbs, &v, 2)) return false;
    *out = (uint16_t)v;
    return true;
}
bool vmenc_cbs_get_u24(vmenc_cbs *cbs, uint32_t *out) {
    uint64_t v;
    if (!cbs_get_be(cbs, &v, 3)) return false;
    *out = (uint32_t)v;
    return true;
}
bool vmenc_cbs_get_u32(vmenc_cbs *cbs, uint32_t *out) {
    uint64_t v;
    if (!cbs_get_be(cbs, &v, 4)) return false;
    *out = (uint32_t)v;
    return true;
}
bool vmenc_cbs_get_u64(vmenc_cbs *cbs, uint64_t *out) { return cbs_get_be(cbs, out, 8); }
bool vmenc_cbs_get_u16_le(vmenc_cbs *cbs, uint16_t *out) {
    uint64_t v;
    if (!cbs_get_le(cbs, &v, 2)) return false;
    *out = (uint16_t)v;
    return true;
}
bool vmenc_cbs_get_u32_le(vmenc_cbs *cbs, uint32_t *out) {
    uint64_t v;
    if (!cbs_get_le(cbs, &v, 4)) return false;
    *out = (uint32_t)v;
    return true;
}
bool vmenc_cbs_get_u64_le(vmenc_cbs *cbs, uint64_t *out) { return cbs_get_le(cbs, out, 8); }

bool vmenc_cbs_get_bytes(vmenc_cbs *cbs, vmenc_cbs *out, size_t len) {
    const uint8_t *p;
    if (!cbs_get(cbs, &p, len))
        return false;
    vmenc_cbs_init(out, p, len);
    return true;
}

bool vmenc_cbs_copy_bytes(vmenc_cbs *cbs, uint8_t *out, size_t len) {
    const uint8_t *p;
    if (!cbs_get(cbs, &p, len))
        return false;
    if (len > 0)
        memcpy(out, p, len);
    return true;
}

static bool cbs_get_prefixed(vmenc_cbs *cbs, vmenc_cbs *out, size_t width) {
    vmenc_cbs saved = *cbs;
    uint64_t len;
    if (!cbs_get_be(cbs, &len, width) || !vmenc_cbs_get_bytes(cbs, out, (size_t)len)) {
        *cbs = saved;
        return false;
    }
    return true;
}

bool vmenc_cbs_get_u8_length_prefixed(vmenc_cbs *cbs, vmenc_cbs *out) { return cbs_get_prefixed(cbs, out, 1); }
bool vmenc_cbs_get_u16_length_prefixed(vmenc_cbs *cbs, vmenc_cbs *out) { return cbs_get_prefixed(cbs, out, 2); }
bool vmenc_cbs_get_u32_length_prefixed(vmenc_cbs *cbs, vmenc_cbs *out) { return cbs_get_prefixed(cbs, out, 4); }

bool vmenc_cbs_peek_u8(const vmenc_cbs *cbs, uint8_t *out) {
    if (cbs->len < 1)
        return false;
    *out = cbs->data[0];
    return true;
}

bool vmenc_cbs_mem_equal(const vmenc_cbs *cbs, const uint8_t *data, size_t len) {
    if (cbs->len != len)
        return false;
    return len == 0 || sodium_memcmp(cbs->data, data, len) == 0;
}

/* ---- cbb ---------------------------------------------------------------- */

#define CBB_DEFAULT_MAX ((size_t)1 << 30)

static void cbb_zero(vmenc_cbb *cbb) {
    memset(cbb, 0, sizeof(*cbb));
    cbb->max = CBB_DEFAULT_MAX;
}

vmenc_status vmenc_cbb_init(vmenc_cbb *cbb, size_t initial_cap) {
    VMENC_ENSURE_REF(cbb);
    cbb_zero(cbb);
    if (initial_cap == 0)
        initial_cap = 64;
    cbb->buf = malloc(initial_cap);
    if (cbb->buf == NULL) {
        cbb->err = VMENC_E_NOMEM;
        return VMENC_E_NOMEM;
    }
    cbb->cap = initial_cap;
    return VMENC_OK;
}

vmenc_status vmenc_cbb_init_secure(vmenc_cbb *cbb, size_t initial_cap) {
    VMENC_ENSURE_REF(cbb);
    cbb_zero(cbb);
    cbb->secure = true;
    if (initial_cap == 0)
        initial_cap = 64;
    cbb->buf = vmenc_secure_alloc(initial_cap);
    if (cbb->buf == NULL) {
        cbb->err = VMENC_E_NOMEM;
        return VMENC_E_NOMEM;
    }
    cbb->cap = initial_cap;
    return VMENC_OK;
}

void vmenc_cbb_init_fixed(vmenc_cbb *cbb, uint8_t *buf, size_t cap) {
    cbb_zero(cbb);
    cbb->buf = buf;
    cbb->cap = buf != NULL ? cap : 0;
    cbb->fixed = true;
}

void vmenc_cbb_set_max(vmenc_cbb *cbb, size_t max) { cbb->max = max; }
bool vmenc_cbb_ok(const vmenc_cbb *cbb) { return cbb->err == VMENC_OK; }
vmenc_status vmenc_cbb_status(const vmenc_cbb *cbb) { return cbb->err; }

/* cbb_reserve makes room for |n| more bytes and returns where they go. */
static uint8_t *cbb_reserve(vmenc_cbb *cbb, size_t n) {
    if (cbb->err != VMENC_OK)
        return NULL;
    if (n > cbb->max || cbb->len > cbb->max - n) {
        cbb->err = VMENC_E_TOO_LARGE;
        return NULL;
    }
    size_t need = cbb->len + n;
    if (need > cbb->cap) {
        if (cbb->fixed) {
            cbb->err = VMENC_E_BUFFER_TOO_SMALL;
            return NULL;
        }
        size_t ncap = cbb->cap ? cbb->cap : 64;
        while (ncap < need)
            ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
        uint8_t *nb;
        if (cbb->secure) {
            nb = vmenc_secure_alloc(ncap);
            if (nb != NULL) {
                if (cbb->len)
                    memcpy(nb, cbb->buf, cbb->len);
                vmenc_secure_free(cbb->buf);
            }
        } else {
            /* Not realloc: the old buffer may hold sensitive bytes that a
             * realloc would leave behind unwiped. */
            nb = malloc(ncap);
            if (nb != NULL) {
                if (cbb->len)
                    memcpy(nb, cbb->buf, cbb->len);
                if (cbb->buf != NULL) {
                    sodium_memzero(cbb->buf, cbb->cap);
                    free(cbb->buf);
                }
            }
        }
        if (nb == NULL) {
            cbb->err = VMENC_E_NOMEM;
            return NULL;
        }
        cbb->buf = nb;
        cbb->cap = ncap;
    }
    uint8_t *p = cbb->buf + cbb->len;
    cbb->len += n;
    return p;
}

static void cbb_add_be(vmenc_cbb *cbb, uint64_t v, size_t n) {
    uint8_t *p = cbb_reserve(cbb, n);
    if (p == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static void cbb_add_le(vmenc_cbb *cbb, uint64_t v, size_t n) {
    uint8_t *p = cbb_reserve(cbb, n);
    if (p == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void vmenc_cbb_add_u8(vmenc_cbb *cbb, uint8_t v) { cbb_add_be(cbb, v, 1); }
void vmenc_cbb_add_u16(vmenc_cbb *cbb, uint16_t v) { cbb_add_be(cbb, v, 2); }
void vmenc_cbb_add_u24(vmenc_cbb *cbb, uint32_t v) {
    if (v > 0xffffff) {
        if (cbb->err == VMENC_OK) cbb->err = VMENC_E_TOO_LARGE;
        return;
    }
    cbb_add_be(cbb, v, 3);
}
void vmenc_cbb_add_u32(vmenc_cbb *cbb, uint32_t v) { cbb_add_be(cbb, v, 4); }
void vmenc_cbb_add_u64(vmenc_cbb *cbb, uint64_t v) { cbb_add_be(cbb, v, 8); }
void vmenc_cbb_add_u16_le(vmenc_cbb *cbb, uint16_t v) { cbb_add_le(cbb, v, 2); }
void vmenc_cbb_add_u32_le(vmenc_cbb *cbb, uint32_t v) { cbb_add_le(cbb, v, 4); }
void vmenc_cbb_add_u64_le(vmenc_cbb *cbb, uint64_t v) { cbb_add_le(cbb, v, 8); }

void vmenc_cbb_add_bytes(vmenc_cbb *cbb, const uint8_t *data, size_t len) {
    if (len == 0)
        return;
    if (data == NULL) {
        if (cbb->err == VMENC_OK) cbb->err = VMENC_E_INVALID_ARG;
        return;
    }
    uint8_t *p = cbb_reserve(cbb, len);
    if (p != NULL)
        memcpy(p, data, len);
}

void vmenc_cbb_add_zeros(vmenc_cbb *cbb, size_t len) {
    uint8_t *p = cbb_reserve(cbb, len);
    if (p != NULL && len)
        memset(p, 0, len);
}

void vmenc_cbb_add_space(vmenc_cbb *cbb, uint8_t **out, size_t len) {
    uint8_t *p = cbb_reserve(cbb, len);
    if (out != NULL)
        *out = p;
}

size_t vmenc_cbb_begin_prefix(vmenc_cbb *cbb, unsigned width) {
    if (width < 1 || width > 4) {
        if (cbb->err == VMENC_OK) cbb->err = VMENC_E_INTERNAL;
        return 0;
    }
    size_t mark = cbb->len;
    vmenc_cbb_add_zeros(cbb, width);
    return mark;
}

void vmenc_cbb_end_prefix(vmenc_cbb *cbb, size_t mark, unsigned width) {
    if (cbb->err != VMENC_OK)
        return;
    if (width < 1 || width > 4 || mark + width > cbb->len) {
        cbb->err = VMENC_E_INTERNAL;
        return;
    }
    uint64_t body = cbb->len - mark - width;
    if (width < 8 && body >> (8 * width)) {
        cbb->err = VMENC_E_TOO_LARGE;
        return;
    }
    for (unsigned i = 0; i < width; i++)
        cbb->buf[mark + i] = (uint8_t)(body >> (8 * (width - 1 - i)));
}

void vmenc_cbb_patch(vmenc_cbb *cbb, size_t offset, const uint8_t *data, size_t len) {
    if (cbb->err != VMENC_OK)
        return;
    if (offset > cbb->len || len > cbb->len - offset) {
        cbb->err = VMENC_E_INTERNAL;
        return;
    }
    memcpy(cbb->buf + offset, data, len);
}

size_t vmenc_cbb_len(const vmenc_cbb *cbb) { return cbb->len; }
const uint8_t *vmenc_cbb_data(const vmenc_cbb *cbb) { return cbb->buf; }

vmenc_status vmenc_cbb_finish(vmenc_cbb *cbb, uint8_t **out, size_t *out_len) {
    if (cbb->err != VMENC_OK) {
        vmenc_status s = cbb->err;
        vmenc_cbb_cleanup(cbb);
        return s;
    }
    if (out == NULL || out_len == NULL) {
        vmenc_cbb_cleanup(cbb);
        return VMENC_E_INVALID_ARG;
    }
    *out = cbb->buf;
    *out_len = cbb->len;
    cbb->buf = NULL;
    cbb->len = cbb->cap = 0;
    return VMENC_OK;
}

void vmenc_cbb_cleanup(vmenc_cbb *cbb) {
    if (cbb == NULL)
        return;
    if (cbb->buf != NULL && !cbb->fixed) {
        if (cbb->secure) {
            vmenc_secure_free(cbb->buf);
        } else {
            sodium_memzero(cbb->buf, cbb->cap);
            free(cbb->buf);
        }
    }
    cbb->buf = NULL;
    cbb->len = cbb->cap = 0;
}
