/*
 * lib/vm/format/schema.h - small field helpers shared by the descriptor and
 * .vmx schemas (descriptor.c defines them). Private to lib/vm/format/.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_VM_FORMAT_SCHEMA_H
#define VMENC_LIB_VM_FORMAT_SCHEMA_H

#include "vm/format/kv.h"
#include "vmenc/keys.h"

/* vm_parse_dec_u64 parses canonical decimal (no sign, no leading zero but
 * "0", no overflow); NULL or anything else is VMENC_E_PARSE. */
VMENC_INTERNAL vmenc_status vm_parse_dec_u64(const char *s, uint64_t *out);
/* vm_format_u64 writes |v| in decimal, NUL-terminated. */
VMENC_INTERNAL void vm_format_u64(uint64_t v, char out[21]);
/* vm_copy_field copies |src| (NULL: VMENC_E_PARSE) into |dst| of |cap|
 * bytes including the NUL (VMENC_E_PARSE if it does not fit). */
VMENC_INTERNAL vmenc_status vm_copy_field(char *dst, size_t cap, const char *src);
/* vm_known_keys_check: every entry whose key starts with |prefix| must be
 * one of |known| (VMENC_E_PARSE otherwise). */
VMENC_INTERNAL vmenc_status vm_known_keys_check(const vm_kv *kv, const char *prefix, const char *const *known,
                                                size_t num_known);
/* vm_key_safe_parse parses a vmwk1 text value (NULL: VMENC_E_PARSE). */
VMENC_INTERNAL vmenc_status vm_key_safe_parse(const char *text, vmenc_wrapped_key **out);

/* vm_kcv_parse reads a key check value: exactly 32 lower-case hex digits
 * (VMENC_E_PARSE otherwise). vm_kcv_format writes one. */
VMENC_INTERNAL vmenc_status vm_kcv_parse(const char *hex, uint8_t out[VMENC_KEK_CHECK_VALUE_BYTES]);
VMENC_INTERNAL void vm_kcv_format(const uint8_t kcv[VMENC_KEK_CHECK_VALUE_BYTES],
                                  char out[2 * VMENC_KEK_CHECK_VALUE_BYTES + 1]);

#endif /* VMENC_LIB_VM_FORMAT_SCHEMA_H */
