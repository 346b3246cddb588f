/*
 * integrations/control/ctl_proto.c - encoder and decoder of the control
 * endpoint's frames (format in ctl_proto.h and docs/nbdkit.md, "Control
 * endpoint"). Compiled into the nbdkit plugin, the vmenc CLI and the fuzz
 * harness fuzz/ctl_proto_fuzz.c.
 *
 * Safety rule: a pure parser of untrusted bytes. It reads only through the
 * bounded cursor below (the library's cursor in lib/core/internal.h is
 * private, and tools and integrations use public headers only): every read
 * checks what is left first and leaves the cursor unchanged on failure.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include "ctl_proto.h"

#include <string.h>

/* ---- bounded cursor and writer ------------------------------------------------ */

typedef struct cur {
    const uint8_t *p;
    size_t left;
} cur;

static int cur_u8(cur *c, uint8_t *out) {
    if (c->left < 1)
        return 0;
    *out = c->p[0];
    c->p++;
    c->left--;
    return 1;
}

static int cur_bytes(cur *c, size_t n, const uint8_t **out) {
    if (c->left < n)
        return 0;
    *out = c->p;
    c->p += n;
    c->left -= n;
    return 1;
}

typedef struct wr {
    uint8_t *p;
    size_t len, cap;
    int err; /* sticky */
} wr;

static void wr_bytes(wr *w, const void *b, size_t n) {
    if (w->err || w->cap - w->len < n) {
        w->err = 1;
        return;
    }
    memcpy(w->p + w->len, b, n);
    w->len += n;
}

static void wr_u8(wr *w, uint8_t v) { wr_bytes(w, &v, 1); }

/* ---- fields --------------------------------------------------------------------- */

enum {
    TAG_KIND = 1, TAG_PRINCIPAL, TAG_VM, TAG_UUID, TAG_POLICY, TAG_SEGMENT, TAG_RUNNING, TAG_DISK,
    TAG_BYTES_DONE, TAG_BYTES_TOTAL, TAG_RATE, TAG_DONE, TAG_STATUS, TAG_MESSAGE
};

typedef enum { F_U8, F_U32, F_U64, F_STR } ftype;

typedef struct field {
    uint8_t tag;
    ftype type;
    size_t off;  /* in ctl_msg */
    size_t cap;  /* strings: capacity with the NUL */
} field;

#define FU8(t, m) {t, F_U8, offsetof(ctl_msg, m), 1}
#define FU32(t, m) {t, F_U32, offsetof(ctl_msg, m), 4}
#define FU64(t, m) {t, F_U64, offsetof(ctl_msg, m), 8}
#define FSTR(t, m) {t, F_STR, offsetof(ctl_msg, m), sizeof(((ctl_msg *)0)->m)}

static const field k_convert[] = {FU8(TAG_KIND, kind), FSTR(TAG_PRINCIPAL, principal), FSTR(TAG_VM, vm),
                                  FSTR(TAG_UUID, uuid), FSTR(TAG_POLICY, policy), FU64(TAG_SEGMENT, segment)};
static const field k_request[] = {FSTR(TAG_PRINCIPAL, principal)};
static const field k_progress[] = {FU8(TAG_RUNNING, running), FU8(TAG_KIND, kind), FSTR(TAG_DISK, disk),
                                   FU64(TAG_BYTES_DONE, bytes_done), FU64(TAG_BYTES_TOTAL, bytes_total),
                                   FU64(TAG_RATE, bytes_per_second), FU8(TAG_DONE, done)};
static const field k_result[] = {FU32(TAG_STATUS, status), FSTR(TAG_MESSAGE, message)};

/* fields_of: the schema of |type|, NULL if unknown. */
static const field *fields_of(uint8_t type, size_t *num) {
    switch (type) {
    case CTL_CONVERT: *num = sizeof(k_convert) / sizeof(k_convert[0]); return k_convert;
    case CTL_STATUS:
    case CTL_CANCEL: *num = 1; return k_request;
    case CTL_PROGRESS: *num = sizeof(k_progress) / sizeof(k_progress[0]); return k_progress;
    case CTL_RESULT: *num = sizeof(k_result) / sizeof(k_result[0]); return k_result;
    default: *num = 0; return NULL;
    }
}

static int printable(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return 0;
    return 1;
}

static uint64_t get_be(const uint8_t *b, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | b[i];
    return v;
}

static void put_be(wr *w, uint64_t v, size_t n) {
    for (size_t i = n; i-- > 0;)
        wr_u8(w, (uint8_t)(v >> (8 * i)));
}

static int bool_ok(const ctl_msg *m) {
    return m->running <= 1 && m->done <= 1 && m->kind <= CTL_KIND_RESUME;
}

/* ---- encode ----------------------------------------------------------------------- */

vmenc_status ctl_encode(const ctl_msg *m, uint8_t *out, size_t cap, size_t *out_len) {
    if (m == NULL || out == NULL || out_len == NULL || !bool_ok(m))
        return VMENC_E_INVALID_ARG;
    size_t num;
    const field *fs = fields_of(m->type, &num);
    if (fs == NULL)
        return VMENC_E_INVALID_ARG;
    uint8_t body[CTL_MAX_BODY];
    wr w = {.p = body, .cap = sizeof(body)};
    const uint8_t *base = (const uint8_t *)m;
    for (size_t i = 0; i < num; i++) {
        const field *f = &fs[i];
        wr_u8(&w, f->tag);
        switch (f->type) {
        case F_U8: wr_u8(&w, 1); wr_u8(&w, base[f->off]); break;
        case F_U32: {
            int32_t v;
            memcpy(&v, base + f->off, sizeof(v));
            wr_u8(&w, 4);
            put_be(&w, (uint32_t)v, 4);
            break;
        }
        case F_U64: {
            uint64_t v;
            memcpy(&v, base + f->off, sizeof(v));
            wr_u8(&w, 8);
            put_be(&w, v, 8);
            break;
        }
        case F_STR: {
            const char *s = (const char *)base + f->off;
            size_t n = strnlen(s, f->cap);
            if (n >= f->cap || n > 255 || !printable((const uint8_t *)s, n))
                return VMENC_E_INVALID_ARG;
            wr_u8(&w, (uint8_t)n);
            wr_bytes(&w, s, n);
            break;
        }
        }
    }
    if (w.err)
        return VMENC_E_INVALID_ARG; /* cannot happen with the schemas above: they fit CTL_MAX_BODY */
    if (cap < CTL_HEADER_BYTES + w.len)
        return VMENC_E_BUFFER_TOO_SMALL;
    memcpy(out, CTL_MAGIC, 4);
    out[4] = CTL_VERSION;
    out[5] = m->type;
    out[6] = (uint8_t)(w.len >> 8);
    out[7] = (uint8_t)w.len;
    memcpy(out + CTL_HEADER_BYTES, body, w.len);
    *out_len = CTL_HEADER_BYTES + w.len;
    return VMENC_OK;
}

/* ---- decode ----------------------------------------------------------------------- */

static vmenc_status decode_field(cur *c, const field *f, uint8_t *base) {
    uint8_t tag, n;
    const uint8_t *v;
    if (!cur_u8(c, &tag) || tag != f->tag || !cur_u8(c, &n) || !cur_bytes(c, n, &v))
        return VMENC_E_PARSE;
    switch (f->type) {
    case F_U8:
        if (n != 1)
            return VMENC_E_PARSE;
        base[f->off] = v[0];
        return VMENC_OK;
    case F_U32: {
        if (n != 4)
            return VMENC_E_PARSE;
        int32_t x = (int32_t)(uint32_t)get_be(v, 4);
        memcpy(base + f->off, &x, sizeof(x));
        return VMENC_OK;
    }
    case F_U64: {
        if (n != 8)
            return VMENC_E_PARSE;
        uint64_t x = get_be(v, 8);
        memcpy(base + f->off, &x, sizeof(x));
        return VMENC_OK;
    }
    case F_STR:
        if ((size_t)n >= f->cap || !printable(v, n))
            return VMENC_E_PARSE;
        memcpy(base + f->off, v, n);
        base[f->off + n] = '\0';
        return VMENC_OK;
    }
    return VMENC_E_PARSE;
}

vmenc_status ctl_decode(const uint8_t *in, size_t len, ctl_msg *out, size_t *out_used) {
    if (in == NULL || out == NULL || out_used == NULL)
        return VMENC_E_INVALID_ARG;
    /* judge what has arrived before waiting for more: a wrong magic or
     * version is refused at once */
    if (memcmp(in, CTL_MAGIC, len < 4 ? len : 4) != 0)
        return VMENC_E_BAD_MAGIC;
    if (len >= 5 && in[4] != CTL_VERSION)
        return VMENC_E_BAD_VERSION;
    if (len < CTL_HEADER_BYTES)
        return VMENC_E_TRUNCATED;
    size_t body_len = ((size_t)in[6] << 8) | in[7];
    if (body_len > CTL_MAX_BODY)
        return VMENC_E_TOO_LARGE;
    size_t num;
    const field *fs = fields_of(in[5], &num);
    if (fs == NULL)
        return VMENC_E_PARSE;
    if (len - CTL_HEADER_BYTES < body_len)
        return VMENC_E_TRUNCATED;
    memset(out, 0, sizeof(*out));
    out->type = in[5];
    cur c = {.p = in + CTL_HEADER_BYTES, .left = body_len};
    for (size_t i = 0; i < num; i++) {
        vmenc_status s = decode_field(&c, &fs[i], (uint8_t *)out);
        if (s != VMENC_OK)
            return s;
    }
    if (c.left != 0)
        return VMENC_E_TRAILING_DATA;
    if (!bool_ok(out))
        return VMENC_E_PARSE;
    *out_used = CTL_HEADER_BYTES + body_len;
    return VMENC_OK;
}

const char *ctl_kind_name(uint8_t kind) {
    switch (kind) {
    case CTL_KIND_ENCRYPT: return "encrypt";
    case CTL_KIND_DECRYPT: return "decrypt";
    case CTL_KIND_REKEY_DEEP: return "rekey-deep";
    case CTL_KIND_RESUME: return "resume";
    default: return "none";
    }
}

void ctl_set(char *dst, size_t cap, const char *s) {
    size_t i = 0;
    if (cap == 0)
        return;
    for (; s != NULL && s[i] != '\0' && i + 1 < cap; i++)
        dst[i] = ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) ? '?' : s[i];
    dst[i] = '\0';
}
