/*
 * lib/vm/format/kv.h - the `key = "value"` text under .vmx files, disk
 * descriptors and the sealed configuration: a pure codec (bytes in, struct
 * out; no I/O, no locks, no KMS) with a fuzz harness. Format:
 * docs/vm-format.md.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_VM_FORMAT_KV_H
#define VMENC_LIB_VM_FORMAT_KV_H

#include <stdbool.h>

#include "core/internal.h"

/* ---- key = "value" text (kv.c) ------------------------------------------------
 *
 * Grammar (one item per line, LF line ends; a final line without LF is
 * accepted; CR, NUL and other control bytes except TAB are errors):
 *   blank       = *WSP
 *   comment     = *WSP "#" *any-printable
 *   entry       = *WSP key *WSP "=" *WSP DQUOTE value DQUOTE *WSP
 *   extent      = access SP sectors SP type SP DQUOTE file DQUOTE [SP offset]
 *                 access = "RW" / "RDONLY" / "NOACCESS"; type = "FLAT"
 *                 (vmenc's only extent type); sectors, offset decimal u64
 * key: 1..VM_KV_KEY_MAX bytes of [A-Za-z0-9._:-]; value: 0..VM_KV_VALUE_MAX
 * bytes of UTF-8 (validated) without '"', '\\' or control bytes. Keys are
 * case-sensitive; a duplicate key is VMENC_E_PARSE. At most VM_KV_MAX_ITEMS
 * lines and VM_KV_MAX_TEXT bytes (VMENC_E_TOO_LARGE). Comments, blank lines,
 * entries and extents keep their order, so serialise(parse(x)) is the
 * canonical form of x (whitespace normalised to `key = "value"`).
 */
#define VM_KV_KEY_MAX 128u
#define VM_KV_VALUE_MAX 65536u
#define VM_KV_MAX_ITEMS 8192u
#define VM_KV_MAX_TEXT ((size_t)4 << 20)

typedef struct vm_kv vm_kv;

typedef struct vm_kv_extent {
    char access[9];      /* "RW", "RDONLY", "NOACCESS" */
    uint64_t sectors;    /* in 512-byte units, as VMware descriptors count */
    char type[9];        /* "FLAT" */
    char file[256];      /* checked with vmenc_fs_name_check */
    uint64_t offset;
} vm_kv_extent;

VMENC_INTERNAL vmenc_status vm_kv_new(vm_kv **out);
/* vm_kv_parse: failures VMENC_E_PARSE (with no partial result),
 * VMENC_E_BAD_ENCODING (bad UTF-8 / control byte), VMENC_E_TOO_LARGE,
 * VMENC_E_BAD_PATH (an extent file name), VMENC_E_NOMEM. */
VMENC_INTERNAL vmenc_status vm_kv_parse(const uint8_t *text, size_t len, vm_kv **out);
VMENC_INTERNAL void vm_kv_free(vm_kv *kv);
/* vm_kv_get returns the value of |key| (lives until the entry changes or
 * the kv is freed) or NULL. */
VMENC_INTERNAL const char *vm_kv_get(const vm_kv *kv, const char *key);
/* vm_kv_set replaces the value in place or appends the entry; validates
 * key and value (VMENC_E_INVALID_ARG). */
VMENC_INTERNAL vmenc_status vm_kv_set(vm_kv *kv, const char *key, const char *value);
/* vm_kv_remove deletes |key| (VMENC_E_NOT_FOUND if absent). */
VMENC_INTERNAL vmenc_status vm_kv_remove(vm_kv *kv, const char *key);
/* Iteration over entries only (comments and extents skipped), in order. */
VMENC_INTERNAL size_t vm_kv_num_entries(const vm_kv *kv);
VMENC_INTERNAL void vm_kv_entry(const vm_kv *kv, size_t i, const char **out_key, const char **out_value);
/* Extents, in order. vm_kv_add_extent validates like the parser. */
VMENC_INTERNAL size_t vm_kv_num_extents(const vm_kv *kv);
VMENC_INTERNAL const vm_kv_extent *vm_kv_get_extent(const vm_kv *kv, size_t i);
VMENC_INTERNAL vmenc_status vm_kv_add_extent(vm_kv *kv, const vm_kv_extent *e);
/* vm_kv_add_comment appends "# text" (text printable, no newline). */
VMENC_INTERNAL vmenc_status vm_kv_add_comment(vm_kv *kv, const char *text);
/* vm_kv_serialize writes the canonical text (malloc'd, NUL appended, not
 * counted). */
VMENC_INTERNAL vmenc_status vm_kv_serialize(const vm_kv *kv, uint8_t **out, size_t *out_len);

#endif /* VMENC_LIB_VM_FORMAT_KV_H */
