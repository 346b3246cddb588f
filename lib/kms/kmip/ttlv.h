/*
 * lib/kms/kmip/ttlv.h - the KMIP TTLV (Tag, Type, Length, Value) codec.
 *
 * Decoding is strict so that decode -> encode is byte-identical: every item
 * is tag (3 bytes, 0x42xxxx standard or 0x54xxxx extension), type (1 byte),
 * length (4 bytes, big-endian), value padded with zero bytes to a multiple of
 * 8. Integer, Enumeration and Interval have length 4; Long Integer,
 * Date-Time and Boolean length 8 (Boolean 0 or 1); Big Integer a non-zero
 * multiple of 8; Text String valid UTF-8; a Structure's length is exactly
 * the sum of its padded children. Input is bounded by a maximum size, a
 * maximum nesting depth and a maximum number of items.
 *
 * A decoded document is a flat array of nodes. Text/Byte/Big Integer values
 * point into the input buffer (no copies): the caller keeps the input alive
 * while it uses the document, and wiping the input wipes every value (KMIP
 * responses carry key material).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_KMS_KMIP_TTLV_H
#define VMENC_LIB_KMS_KMIP_TTLV_H

#include "core/internal.h"

/* Item types (KMIP 1.x/2.0 §9.1.1.2). */
enum {
    VMENC_TTLV_STRUCTURE = 0x01,
    VMENC_TTLV_INTEGER = 0x02,
    VMENC_TTLV_LONG_INTEGER = 0x03,
    VMENC_TTLV_BIG_INTEGER = 0x04,
    VMENC_TTLV_ENUMERATION = 0x05,
    VMENC_TTLV_BOOLEAN = 0x06,
    VMENC_TTLV_TEXT_STRING = 0x07,
    VMENC_TTLV_BYTE_STRING = 0x08,
    VMENC_TTLV_DATE_TIME = 0x09,
    VMENC_TTLV_INTERVAL = 0x0A
};

#define VMENC_TTLV_HEADER_LEN 8u
#define VMENC_TTLV_MAX_MESSAGE (1u << 20)  /* 1 MiB: far above any KMIP key response */
#define VMENC_TTLV_MAX_DEPTH 16u
#define VMENC_TTLV_MAX_NODES 4096u
#define VMENC_TTLV_NONE UINT32_MAX           /* "no node" index */

typedef struct vmenc_ttlv_node {
    uint32_t tag;          /* 24-bit tag */
    uint8_t type;          /* VMENC_TTLV_* */
    uint32_t len;          /* value length as encoded (before padding) */
    union {
        int32_t i32;       /* Integer */
        uint32_t u32;      /* Enumeration, Interval */
        int64_t i64;       /* Long Integer, Date-Time */
        bool b;            /* Boolean */
    } v;
    const uint8_t *bytes;  /* Text/Byte String, Big Integer: into the input */
    uint32_t first_child;  /* Structure: first child or VMENC_TTLV_NONE */
    uint32_t next;         /* next sibling or VMENC_TTLV_NONE */
} vmenc_ttlv_node;

typedef struct vmenc_ttlv_doc {
    vmenc_ttlv_node *nodes; /* nodes[0] is the root */
    uint32_t num;
    uint32_t cap;
} vmenc_ttlv_doc;

/* vmenc_ttlv_decode parses exactly one top-level item from |data|. On
 * success |out| holds the document (release with vmenc_ttlv_doc_cleanup);
 * values point into |data|. Errors: VMENC_E_TRUNCATED, VMENC_E_PARSE (bad
 * tag, type, length or padding), VMENC_E_BAD_ENCODING (Text String not
 * UTF-8), VMENC_E_DEPTH_LIMIT, VMENC_E_TOO_LARGE (message or item count),
 * VMENC_E_TRAILING_DATA, VMENC_E_NOMEM. On failure |out| is untouched. */
VMENC_INTERNAL vmenc_status vmenc_ttlv_decode(const uint8_t *data, size_t len, vmenc_ttlv_doc *out);

/* vmenc_ttlv_message_len reads an item header (at least 8 bytes) and gives
 * the total encoded length of the item (header + padded value), so a reader
 * knows how much to receive. Errors as vmenc_ttlv_decode. */
VMENC_INTERNAL vmenc_status vmenc_ttlv_message_len(const uint8_t *hdr, size_t hdr_len, size_t max,
                                                   size_t *out_len);

VMENC_INTERNAL void vmenc_ttlv_doc_cleanup(vmenc_ttlv_doc *doc);

/* vmenc_ttlv_encode_node re-encodes node |idx| of |doc| (and its subtree). */
VMENC_INTERNAL void vmenc_ttlv_encode_node(vmenc_cbb *cbb, const vmenc_ttlv_doc *doc, uint32_t idx);

/* ---- navigation ---------------------------------------------------------- */

/* vmenc_ttlv_child returns the first child of |parent| with |tag| after
 * |after| (VMENC_TTLV_NONE: from the start), or VMENC_TTLV_NONE. */
VMENC_INTERNAL uint32_t vmenc_ttlv_child(const vmenc_ttlv_doc *doc, uint32_t parent, uint32_t tag,
                                         uint32_t after);
VMENC_INTERNAL uint32_t vmenc_ttlv_count(const vmenc_ttlv_doc *doc, uint32_t parent, uint32_t tag);

/* Typed getters for the first child with |tag|: VMENC_E_KMS_PROTOCOL if it
 * is missing or has another type. */
VMENC_INTERNAL vmenc_status vmenc_ttlv_get_enum(const vmenc_ttlv_doc *doc, uint32_t parent, uint32_t tag,
                                                uint32_t *out);
VMENC_INTERNAL vmenc_status vmenc_ttlv_get_int(const vmenc_ttlv_doc *doc, uint32_t parent, uint32_t tag,
                                               int32_t *out);
/* Text and Byte Strings: |out| points into the decoded input. */
VMENC_INTERNAL vmenc_status vmenc_ttlv_get_text(const vmenc_ttlv_doc *doc, uint32_t parent, uint32_t tag,
                                                const char **out, size_t *out_len);
VMENC_INTERNAL vmenc_status vmenc_ttlv_get_bytes(const vmenc_ttlv_doc *doc, uint32_t parent, uint32_t tag,
                                                 const uint8_t **out, size_t *out_len);
VMENC_INTERNAL vmenc_status vmenc_ttlv_get_struct(const vmenc_ttlv_doc *doc, uint32_t parent, uint32_t tag,
                                                  uint32_t *out);

/* ---- encoding (requests): each writes one item to |cbb| ------------------ */

/* vmenc_ttlv_begin_struct writes a Structure header and returns the mark
 * vmenc_ttlv_end_struct needs to fill in its length. */
VMENC_INTERNAL size_t vmenc_ttlv_begin_struct(vmenc_cbb *cbb, uint32_t tag);
VMENC_INTERNAL void vmenc_ttlv_end_struct(vmenc_cbb *cbb, size_t mark);
VMENC_INTERNAL void vmenc_ttlv_add_int(vmenc_cbb *cbb, uint32_t tag, int32_t v);
VMENC_INTERNAL void vmenc_ttlv_add_long(vmenc_cbb *cbb, uint32_t tag, int64_t v);
VMENC_INTERNAL void vmenc_ttlv_add_enum(vmenc_cbb *cbb, uint32_t tag, uint32_t v);
VMENC_INTERNAL void vmenc_ttlv_add_bool(vmenc_cbb *cbb, uint32_t tag, bool v);
VMENC_INTERNAL void vmenc_ttlv_add_interval(vmenc_cbb *cbb, uint32_t tag, uint32_t v);
VMENC_INTERNAL void vmenc_ttlv_add_datetime(vmenc_cbb *cbb, uint32_t tag, int64_t v);
VMENC_INTERNAL void vmenc_ttlv_add_text(vmenc_cbb *cbb, uint32_t tag, const char *s, size_t len);
VMENC_INTERNAL void vmenc_ttlv_add_bytes(vmenc_cbb *cbb, uint32_t tag, const uint8_t *b, size_t len);
/* Big Integer: |len| must be a non-zero multiple of 8 (two's complement,
 * big-endian, already sign-extended). */
VMENC_INTERNAL void vmenc_ttlv_add_bigint(vmenc_cbb *cbb, uint32_t tag, const uint8_t *b, size_t len);

/* vmenc_utf8_valid (strict UTF-8) is in core/internal.h. */

#endif /* VMENC_LIB_KMS_KMIP_TTLV_H */
