/*
 * lib/vm/format/sealed.h - the VM key's subkeys and the sealed
 * configuration entries (encryption.data): AEAD over the kv text, pure
 * (no I/O, no locks, no KMS). Format: docs/vm-format.md.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_VM_FORMAT_SEALED_H
#define VMENC_LIB_VM_FORMAT_SEALED_H

#include "vm/format/kv.h"
#include "vmenc/keys.h"

/* ---- key derivation and sealed config (sealed.c) ------------------------- */

/* vm_derive_key derives a 32-byte subkey of the VM key: keyed BLAKE2b-256
 * (key = the 64 DEK bytes) over "vmenc/" || label || 0x00 || ctx. |out| must
 * be secure memory. Labels in use: "statefile-v1", "config-v1". */
VMENC_INTERNAL vmenc_status vm_derive_key(const vmenc_dek *vm_key, const char *label, const uint8_t *ctx,
                                          size_t ctx_len, uint8_t out[32]);

/* vm_sealed_seal seals |secret| (its canonical serialisation) for VM
 * |uuid|: "vmsd1:" + base64(nonce[12] || ciphertext || tag[16]) under
 * AES-256-GCM with vm_derive_key("config-v1", uuid) and AAD
 * "vmenc-config-v1" || uuid. |*out| malloc'd, NUL-terminated. */
VMENC_INTERNAL vmenc_status vm_sealed_seal(const vmenc_dek *vm_key, const char *uuid, const vm_kv *secret,
                                           char **out);
/* vm_sealed_open is the inverse: VMENC_E_BAD_MAGIC, VMENC_E_BAD_ENCODING,
 * VMENC_E_TRUNCATED, VMENC_E_AUTH (any edit, other VM, other key); the
 * plaintext is parsed with vm_kv_parse. */
VMENC_INTERNAL vmenc_status vm_sealed_open(const vmenc_dek *vm_key, const char *uuid, const char *text,
                                           vm_kv **out);
/* vm_sealed_decode_outer checks the text form without a key (for fuzzing):
 * prefix, canonical base64, minimum length. */
VMENC_INTERNAL vmenc_status vm_sealed_decode_outer(const char *text, size_t len);

#endif /* VMENC_LIB_VM_FORMAT_SEALED_H */
