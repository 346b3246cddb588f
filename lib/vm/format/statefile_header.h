/*
 * lib/vm/format/statefile_header.h - the state-file format: the layout of
 * the chunked AEAD files (NVRAM, suspend, snapshot state and memory, host
 * core dumps) and the codec of their 64-byte header, pure (bytes in, fields
 * out) with a fuzz harness. The engine that reads and writes records is
 * lib/vm/io/statefile.c. Format: docs/vm-format.md.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_VM_FORMAT_STATEFILE_HEADER_H
#define VMENC_LIB_VM_FORMAT_STATEFILE_HEADER_H

#include <stdbool.h>

#include "core/internal.h"

/* ---- chunked AEAD state files ------------------------------------------------
 *
 * Layout: a 64-byte header, then chunk records. Header: magic "VMENCSF1",
 * u16 version (1), u8 class, u8 reserved (0), u32 chunk size (65536), u32
 * index, 16-byte random file ID, zeros to 64 bytes (all big-endian; any
 * nonzero reserved byte is VMENC_E_PARSE). Record i: nonce[12] ||
 * ciphertext[n] || tag[16], n = chunk size for every record but the last,
 * 0..chunk size for the last; a file always has at least one record (an
 * empty file has one empty last record), so the header is authenticated.
 * Key: vm_derive_key("statefile-v1", uuid || file ID). Nonce: 96 random
 * bits per record write. AAD: BLAKE2b-256(header) || u64 index || u8 last
 * (1 for the final record). Detected: any edit (header or record),
 * truncation (at or inside a record), appended or reordered records, records
 * or whole files moved between files, VMs or classes. Not detected here:
 * a whole file, or one record of it, rolled back to an older version of
 * itself (same key and AAD); the VM layer refuses whole older files by
 * naming each file's current ID in the VM's authority record and renewing
 * it at every write session (docs/vm-format.md, docs/control.md).
 *
 * A plain file (|vm_key| NULL) is raw bytes with no header.
 */
#define VM_SF_HEADER_BYTES 64u
#define VM_SF_NONCE_BYTES 12u
#define VM_SF_TAG_BYTES 16u

#define VM_SF_FILE_ID_BYTES 16u
/* The classes with an AEAD form: the four VM state classes (1..4) and the
 * host core dump. Class 5 (swap) goes through the state-file engine only
 * in plain form (an encrypted VM's swap is XTS, lib/vm/io/extent.c). */
#define VM_SF_CLASS_MAX 4u
#define VM_SF_PLAIN_CLASS_MAX 5u

/* Class of a host core dump (lib/vm/coredump.c): the same format, |uuid|
 * being the dump ID. Not a VM file class; accepted wherever an AEAD class
 * is. */
#define VM_SF_CLASS_COREDUMP 6u

/* vm_sf_class_is_aead: one of the AEAD classes above? */
VMENC_INTERNAL bool vm_sf_class_is_aead(uint8_t cls);

/* vm_sf_header_build writes a header for |cls|, |index| and |file_id|. */
VMENC_INTERNAL void vm_sf_header_build(uint8_t cls, uint32_t index, const uint8_t file_id[VM_SF_FILE_ID_BYTES],
                                       uint8_t out[VM_SF_HEADER_BYTES]);

/* vm_sf_parse_header checks a header (fuzz entry point): |len| must be at
 * least VM_SF_HEADER_BYTES; outputs may be NULL. */
VMENC_INTERNAL vmenc_status vm_sf_parse_header(const uint8_t *data, size_t len, uint8_t *out_cls,
                                               uint32_t *out_index, uint8_t out_file_id[16]);

#endif /* VMENC_LIB_VM_FORMAT_STATEFILE_HEADER_H */
