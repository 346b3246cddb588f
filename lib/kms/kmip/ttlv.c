/*
 * lib/kms/kmip/ttlv.c - strict TTLV decoder and encoder (see ttlv.h).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdlib.h>
#include <string.h>

#include "kms/kmip/ttlv.h"

/* ---- UTF-8 ---------------------------------------------------------------- */


/* ---- decoding --------------------------------------------------------------- */

static size_t pad8(size_t len) { return (len + 7u) & ~(size_t)7u; }

static bool tag_ok(uint32_t tag) {
    uint32_t hi = tag >> 16;
    return hi == 0x42 || hi == 0x54;
}

/* check_header validates the type/length pair of an item header. */
static vmenc_status check_header(uint32_t tag, uint8_t type, uint32_t len) {
    VMENC_ENSURE(tag_ok(tag), VMENC_E_PARSE);
    switch (type) {
    case VMENC_TTLV_STRUCTURE:
        VMENC_ENSURE(len % 8 == 0, VMENC_E_PARSE);
        return VMENC_OK;
    case VMENC_TTLV_INTEGER:
    case VMENC_TTLV_ENUMERATION:
    case VMENC_TTLV_INTERVAL:
        VMENC_ENSURE(len == 4, VMENC_E_PARSE);
        return VMENC_OK;
    case VMENC_TTLV_LONG_INTEGER:
    case VMENC_TTLV_DATE_TIME:
    case VMENC_TTLV_BOOLEAN:
        VMENC_ENSURE(len == 8, VMENC_E_PARSE);
        return VMENC_OK;
    case VMENC_TTLV_BIG_INTEGER:
        VMENC_ENSURE(len > 0 && len % 8 == 0, VMENC_E_PARSE);
        return VMENC_OK;
    case VMENC_TTLV_TEXT_STRING:
    case VMENC_TTLV_BYTE_STRING:
        return VMENC_OK;
    default:
        return VMENC_E_PARSE;
    }
}

vmenc_status vmenc_ttlv_message_len(const uint8_t *hdr, size_t hdr_len, size_t max, size_t *out_len) {
    VMENC_ENSURE_REF(hdr);
    VMENC_ENSURE_REF(out_len);
    vmenc_cbs cbs;
    uint32_t tag, len;
    uint8_t type;
    vmenc_cbs_init(&cbs, hdr, hdr_len);
    VMENC_ENSURE(vmenc_cbs_get_u24(&cbs, &tag) && vmenc_cbs_get_u8(&cbs, &type) &&
                     vmenc_cbs_get_u32(&cbs, &len),
                 VMENC_E_TRUNCATED);
    VMENC_GUARD(check_header(tag, type, len));
    size_t total = VMENC_TTLV_HEADER_LEN + pad8(len);
    VMENC_ENSURE(total <= max, VMENC_E_TOO_LARGE);
    *out_len = total;
    return VMENC_OK;
}

static vmenc_status new_node(vmenc_ttlv_doc *d, uint32_t *out) {
    VMENC_ENSURE(d->num < VMENC_TTLV_MAX_NODES, VMENC_E_TOO_LARGE);
    if (d->num == d->cap) {
        uint32_t ncap = d->cap ? d->cap * 2 : 32;
        if (ncap > VMENC_TTLV_MAX_NODES)
            ncap = VMENC_TTLV_MAX_NODES;
        /* Nodes hold only pointers into the input, never secret bytes, so a
         * plain realloc is fine here. */
        vmenc_ttlv_node *nn = realloc(d->nodes, (size_t)ncap * sizeof(*nn));
        VMENC_ENSURE(nn != NULL, VMENC_E_NOMEM);
        d->nodes = nn;
        d->cap = ncap;
    }
    uint32_t idx = d->num++;
    memset(&d->nodes[idx], 0, sizeof(d->nodes[idx]));
    d->nodes[idx].first_child = VMENC_TTLV_NONE;
    d->nodes[idx].next = VMENC_TTLV_NONE;
    *out = idx;
    return VMENC_OK;
}

static vmenc_status parse_item(vmenc_cbs *cbs, vmenc_ttlv_doc *d, unsigned depth, uint32_t *out_idx);

static vmenc_status parse_children(vmenc_cbs *body, vmenc_ttlv_doc *d, unsigned depth, uint32_t parent) {
    uint32_t prev = VMENC_TTLV_NONE;
    while (vmenc_cbs_len(body) > 0) {
        uint32_t c;
        vmenc_status s = parse_item(body, d, depth, &c);
        /* A child running past its Structure's end means the Structure's
         * length disagrees with its contents. */
        if (s == VMENC_E_TRUNCATED)
            s = VMENC_E_PARSE;
        VMENC_GUARD(s);
        if (prev == VMENC_TTLV_NONE)
            d->nodes[parent].first_child = c;
        else
            d->nodes[prev].next = c;
        prev = c;
    }
    return VMENC_OK;
}

static vmenc_status parse_item(vmenc_cbs *cbs, vmenc_ttlv_doc *d, unsigned depth, uint32_t *out_idx) {
    uint32_t tag, len;
    uint8_t type;
    VMENC_ENSURE(vmenc_cbs_len(cbs) >= VMENC_TTLV_HEADER_LEN, VMENC_E_TRUNCATED);
    VMENC_ENSURE(vmenc_cbs_get_u24(cbs, &tag) && vmenc_cbs_get_u8(cbs, &type) && vmenc_cbs_get_u32(cbs, &len),
                 VMENC_E_TRUNCATED);
    VMENC_GUARD(check_header(tag, type, len));

    vmenc_cbs val;
    VMENC_ENSURE(vmenc_cbs_get_bytes(cbs, &val, pad8(len)), VMENC_E_TRUNCATED);
    const uint8_t *p = vmenc_cbs_data(&val);
    for (size_t i = len; i < pad8(len); i++)
        VMENC_ENSURE(p[i] == 0, VMENC_E_PARSE);

    uint32_t idx;
    VMENC_GUARD(new_node(d, &idx));
    vmenc_ttlv_node *n = &d->nodes[idx];
    n->tag = tag;
    n->type = type;
    n->len = len;

    vmenc_cbs v;
    vmenc_cbs_init(&v, p, len);
    switch (type) {
    case VMENC_TTLV_STRUCTURE:
        VMENC_ENSURE(depth < VMENC_TTLV_MAX_DEPTH, VMENC_E_DEPTH_LIMIT);
        VMENC_GUARD(parse_children(&v, d, depth + 1, idx));
        break;
    case VMENC_TTLV_INTEGER:
    case VMENC_TTLV_ENUMERATION:
    case VMENC_TTLV_INTERVAL: {
        uint32_t u = vmenc_load_u32_be(p);
        n->v.u32 = u;
        if (type == VMENC_TTLV_INTEGER)
            n->v.i32 = (int32_t)u;
        break;
    }
    case VMENC_TTLV_LONG_INTEGER:
    case VMENC_TTLV_DATE_TIME: {
        uint64_t u;
        (void)vmenc_cbs_get_u64(&v, &u); /* length checked above */
        n->v.i64 = (int64_t)u;
        break;
    }
    case VMENC_TTLV_BOOLEAN: {
        uint64_t u;
        (void)vmenc_cbs_get_u64(&v, &u);
        /* Only 0 and 1 are Booleans; anything else would not re-encode. */
        VMENC_ENSURE(u <= 1, VMENC_E_PARSE);
        n->v.b = u == 1;
        break;
    }
    case VMENC_TTLV_TEXT_STRING:
        VMENC_ENSURE(vmenc_utf8_valid(p, len), VMENC_E_BAD_ENCODING);
        n->bytes = p;
        break;
    default: /* Byte String, Big Integer */
        n->bytes = p;
        break;
    }
    *out_idx = idx;
    return VMENC_OK;
}

vmenc_status vmenc_ttlv_decode(const uint8_t *data, size_t len, vmenc_ttlv_doc *out) {
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(data != NULL || len == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(len <= VMENC_TTLV_MAX_MESSAGE, VMENC_E_TOO_LARGE);
    vmenc_ttlv_doc d = {0};
    vmenc_cbs cbs;
    uint32_t root;
    vmenc_cbs_init(&cbs, data, len);
    vmenc_status s = parse_item(&cbs, &d, 1, &root);
    if (s == VMENC_OK && vmenc_cbs_len(&cbs) != 0)
        s = VMENC_E_TRAILING_DATA;
    if (s != VMENC_OK) {
        vmenc_ttlv_doc_cleanup(&d);
        return s;
    }
    *out = d;
    return VMENC_OK;
}

void vmenc_ttlv_doc_cleanup(vmenc_ttlv_doc *doc) {
    if (doc == NULL)
        return;
    free(doc->nodes);
    doc->nodes = NULL;
    doc->num = doc->cap = 0;
}

/* ---- navigation ------------------------------------------------------------ */

uint32_t vmenc_ttlv_child(const vmenc_ttlv_doc *doc, uint32_t parent, uint32_t tag, uint32_t after) {
    if (doc == NULL || parent >= doc->num || doc->nodes[parent].type != VMENC_TTLV_STRUCTURE)
        return VMENC_TTLV_NONE;
    uint32_t c = after == VMENC_TTLV_NONE ? doc->nodes[parent].first_child : doc->nodes[after].next;
    for (; c != VMENC_TTLV_NONE; c = doc->nodes[c].next)
        if (doc->nodes[c].tag == tag)
            return c;
    return VMENC_TTLV_NONE;
}

uint32_t vmenc_ttlv_count(const vmenc_ttlv_doc *doc, uint32_t parent, uint32_t tag) {
    uint32_t n = 0;
    for (uint32_t c = vmenc_ttlv_child(doc, parent, tag, VMENC_TTLV_NONE); c != VMENC_TTLV_NONE;
         c = vmenc_ttlv_child(doc, parent, tag, c))
        n++;
    return n;
}

static vmenc_status get_typed(const vmenc_ttlv_doc *doc, uint32_t parent, uint32_t tag, uint8_t type,
                              const vmenc_ttlv_node **out) {
    uint32_t c = vmenc_ttlv_child(doc, parent, tag, VMENC_TTLV_NONE);
    VMENC_ENSURE(c != VMENC_TTLV_NONE, VMENC_E_KMS_PROTOCOL);
    VMENC_ENSURE(doc->nodes[c].type == type, VMENC_E_KMS_PROTOCOL);
    *out = &doc->nodes[c];
    return VMENC_OK;
}

vmenc_status vmenc_ttlv_get_enum(const vmenc_ttlv_doc *doc, uint32_t parent, uint32_t tag, uint32_t *out) {
    const vmenc_ttlv_node *n;
    VMENC_GUARD(get_typed(doc, parent, tag, VMENC_TTLV_ENUMERATION, &n));
    *out = n->v.u32;
    return VMENC_OK;
}

vmenc_status vmenc_ttlv_get_int(const vmenc_ttlv_doc *doc, uint32_t parent, uint32_t tag, int32_t *out) {
    const vmenc_ttlv_node *n;
    VMENC_GUARD(get_typed(doc, parent, tag, VMENC_TTLV_INTEGER, &n));
    *out = n->v.i32;
    return VMENC_OK;
}

vmenc_status vmenc_ttlv_get_text(const vmenc_ttlv_doc *doc, uint32_t parent, uint32_t tag, const char **out,
                                 size_t *out_len) {
    const vmenc_ttlv_node *n;
    VMENC_GUARD(get_typed(doc, parent, tag, VMENC_TTLV_TEXT_STRING, &n));
    *out = (const char *)n->bytes;
    *out_len = n->len;
    return VMENC_OK;
}

vmenc_status vmenc_ttlv_get_bytes(const vmenc_ttlv_doc *doc, uint32_t parent, uint32_t tag,
                                  const uint8_t **out, size_t *out_len) {
    const vmenc_ttlv_node *n;
    VMENC_GUARD(get_typed(doc, parent, tag, VMENC_TTLV_BYTE_STRING, &n));
    *out = n->bytes;
    *out_len = n->len;
    return VMENC_OK;
}

vmenc_status vmenc_ttlv_get_struct(const vmenc_ttlv_doc *doc, uint32_t parent, uint32_t tag, uint32_t *out) {
    const vmenc_ttlv_node *n;
    VMENC_GUARD(get_typed(doc, parent, tag, VMENC_TTLV_STRUCTURE, &n));
    *out = (uint32_t)(n - doc->nodes);
    return VMENC_OK;
}

/* ---- encoding -------------------------------------------------------------- */

static void set_err(vmenc_cbb *cbb, vmenc_status s) {
    if (cbb->err == VMENC_OK)
        cbb->err = s;
}

static void add_header(vmenc_cbb *cbb, uint32_t tag, uint8_t type, uint32_t len) {
    if (!tag_ok(tag)) {
        set_err(cbb, VMENC_E_INVALID_ARG);
        return;
    }
    vmenc_cbb_add_u24(cbb, tag);
    vmenc_cbb_add_u8(cbb, type);
    vmenc_cbb_add_u32(cbb, len);
}

size_t vmenc_ttlv_begin_struct(vmenc_cbb *cbb, uint32_t tag) {
    if (!tag_ok(tag)) {
        set_err(cbb, VMENC_E_INVALID_ARG);
        return 0;
    }
    vmenc_cbb_add_u24(cbb, tag);
    vmenc_cbb_add_u8(cbb, VMENC_TTLV_STRUCTURE);
    return vmenc_cbb_begin_prefix(cbb, 4);
}

void vmenc_ttlv_end_struct(vmenc_cbb *cbb, size_t mark) { vmenc_cbb_end_prefix(cbb, mark, 4); }

static void add_u32_item(vmenc_cbb *cbb, uint32_t tag, uint8_t type, uint32_t v) {
    add_header(cbb, tag, type, 4);
    vmenc_cbb_add_u32(cbb, v);
    vmenc_cbb_add_zeros(cbb, 4);
}

static void add_u64_item(vmenc_cbb *cbb, uint32_t tag, uint8_t type, uint64_t v) {
    add_header(cbb, tag, type, 8);
    vmenc_cbb_add_u64(cbb, v);
}

void vmenc_ttlv_add_int(vmenc_cbb *cbb, uint32_t tag, int32_t v) {
    add_u32_item(cbb, tag, VMENC_TTLV_INTEGER, (uint32_t)v);
}
void vmenc_ttlv_add_enum(vmenc_cbb *cbb, uint32_t tag, uint32_t v) {
    add_u32_item(cbb, tag, VMENC_TTLV_ENUMERATION, v);
}
void vmenc_ttlv_add_interval(vmenc_cbb *cbb, uint32_t tag, uint32_t v) {
    add_u32_item(cbb, tag, VMENC_TTLV_INTERVAL, v);
}
void vmenc_ttlv_add_long(vmenc_cbb *cbb, uint32_t tag, int64_t v) {
    add_u64_item(cbb, tag, VMENC_TTLV_LONG_INTEGER, (uint64_t)v);
}
void vmenc_ttlv_add_datetime(vmenc_cbb *cbb, uint32_t tag, int64_t v) {
    add_u64_item(cbb, tag, VMENC_TTLV_DATE_TIME, (uint64_t)v);
}
void vmenc_ttlv_add_bool(vmenc_cbb *cbb, uint32_t tag, bool v) {
    add_u64_item(cbb, tag, VMENC_TTLV_BOOLEAN, v ? 1 : 0);
}

static void add_string_item(vmenc_cbb *cbb, uint32_t tag, uint8_t type, const uint8_t *b, size_t len) {
    if (len > UINT32_MAX) {
        set_err(cbb, VMENC_E_TOO_LARGE);
        return;
    }
    add_header(cbb, tag, type, (uint32_t)len);
    vmenc_cbb_add_bytes(cbb, b, len);
    vmenc_cbb_add_zeros(cbb, pad8(len) - len);
}

void vmenc_ttlv_add_text(vmenc_cbb *cbb, uint32_t tag, const char *s, size_t len) {
    if (s == NULL && len != 0) {
        set_err(cbb, VMENC_E_INVALID_ARG);
        return;
    }
    if (len != 0 && !vmenc_utf8_valid((const uint8_t *)s, len)) {
        set_err(cbb, VMENC_E_BAD_ENCODING);
        return;
    }
    add_string_item(cbb, tag, VMENC_TTLV_TEXT_STRING, (const uint8_t *)s, len);
}

void vmenc_ttlv_add_bytes(vmenc_cbb *cbb, uint32_t tag, const uint8_t *b, size_t len) {
    add_string_item(cbb, tag, VMENC_TTLV_BYTE_STRING, b, len);
}

void vmenc_ttlv_add_bigint(vmenc_cbb *cbb, uint32_t tag, const uint8_t *b, size_t len) {
    if (len == 0 || len % 8 != 0) {
        set_err(cbb, VMENC_E_INVALID_ARG);
        return;
    }
    add_string_item(cbb, tag, VMENC_TTLV_BIG_INTEGER, b, len);
}

void vmenc_ttlv_encode_node(vmenc_cbb *cbb, const vmenc_ttlv_doc *doc, uint32_t idx) {
    if (doc == NULL || idx >= doc->num) {
        set_err(cbb, VMENC_E_INVALID_ARG);
        return;
    }
    const vmenc_ttlv_node *n = &doc->nodes[idx];
    switch (n->type) {
    case VMENC_TTLV_STRUCTURE: {
        size_t mark = vmenc_ttlv_begin_struct(cbb, n->tag);
        /* Recursion depth is bounded by VMENC_TTLV_MAX_DEPTH (decoder). */
        for (uint32_t c = n->first_child; c != VMENC_TTLV_NONE; c = doc->nodes[c].next)
            vmenc_ttlv_encode_node(cbb, doc, c);
        vmenc_ttlv_end_struct(cbb, mark);
        break;
    }
    case VMENC_TTLV_INTEGER: vmenc_ttlv_add_int(cbb, n->tag, n->v.i32); break;
    case VMENC_TTLV_ENUMERATION: vmenc_ttlv_add_enum(cbb, n->tag, n->v.u32); break;
    case VMENC_TTLV_INTERVAL: vmenc_ttlv_add_interval(cbb, n->tag, n->v.u32); break;
    case VMENC_TTLV_LONG_INTEGER: vmenc_ttlv_add_long(cbb, n->tag, n->v.i64); break;
    case VMENC_TTLV_DATE_TIME: vmenc_ttlv_add_datetime(cbb, n->tag, n->v.i64); break;
    case VMENC_TTLV_BOOLEAN: vmenc_ttlv_add_bool(cbb, n->tag, n->v.b); break;
    case VMENC_TTLV_TEXT_STRING: vmenc_ttlv_add_text(cbb, n->tag, (const char *)n->bytes, n->len); break;
    case VMENC_TTLV_BYTE_STRING: vmenc_ttlv_add_bytes(cbb, n->tag, n->bytes, n->len); break;
    case VMENC_TTLV_BIG_INTEGER: vmenc_ttlv_add_bigint(cbb, n->tag, n->bytes, n->len); break;
    default: set_err(cbb, VMENC_E_INTERNAL); break;
    }
}
