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

#include <stdbool.h>

#include "vm/format/descriptor.h"
#include "vm/format/kv.h"
#include "vmenc/keys.h"

/* ---- key derivation and sealed config (sealed.c) ------------------------- */

/* vm_derive_key derives a 32-byte subkey of the VM key: keyed BLAKE2b-256
 * (key = the 64 DEK bytes) over "vmenc/" || label || 0x00 || ctx. |out| must
 * be secure memory. Labels in use: "statefile-v1", "config-v1",
 * "cvt-slot-v2" (cvt_slot.c). */
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

/* ---- steering facts inside the sealed entries (sealed.c) ----------------
 *
 * What steers an operation lives in the sealed entries, where only a
 * holder of the VM key can write it; the plain .vmx and descriptor copies
 * are hints that must agree (docs/vm-format.md, "Sealed steering facts"):
 *   vmenc.applyingPolicy = "<name>"        a policy application under way
 *   vmenc.nextKeySafe = "<64 hex>"          vm_record_hash of encryption.newKeySafe
 *   vmenc.disk.<id> = "<descriptor> encrypted|plain <sector size> <capacity>
 *                      [next=<64 hex>]"      next = vm_record_hash of the
 *                                            descriptor's vmenc.newKeySafe */

#define VM_RECORD_HASH_BYTES 32u

/* vm_record_hash: BLAKE2b-256 over "vmenc-record-v1" || the record's binary
 * form. A record's identity (not secret). */
VMENC_INTERNAL vmenc_status vm_record_hash(const vmenc_wrapped_key *wk, uint8_t out[VM_RECORD_HASH_BYTES]);

/* A parsed vmenc.disk.<id> value. A version-1 value ("<descriptor>
 * encrypted|plain", written before geometry was sealed) parses with
 * has_geometry false; the next configuration write upgrades it. */
typedef struct vm_sealed_disk {
    char desc_name[256];
    bool encrypted;
    bool has_geometry;
    uint32_t sector_size;
    uint64_t capacity;
    bool has_next;
    uint8_t next_record[VM_RECORD_HASH_BYTES];
} vm_sealed_disk;

/* vm_sealed_disk_value writes the sealed value for a disk whose
 * descriptor is |d| (file |desc_name|); |encrypted| is what the list says
 * (see vm_sealed_encrypted in vm.c). */
VMENC_INTERNAL vmenc_status vm_sealed_disk_value(const char *desc_name, const vm_disk_desc *d, bool encrypted,
                                                 char *out, size_t cap);
/* vm_sealed_disk_format writes |d| as a value (VMENC_E_BUFFER_TOO_SMALL);
 * the inverse of vm_sealed_disk_parse, byte for byte. */
VMENC_INTERNAL vmenc_status vm_sealed_disk_format(const vm_sealed_disk *d, char *out, size_t cap);
/* vm_sealed_disk_parse reads one value (VMENC_E_PARSE if malformed). */
VMENC_INTERNAL vmenc_status vm_sealed_disk_parse(const char *value, vm_sealed_disk *out);
/* vm_sealed_disk_geometry reads the sealed sector size and capacity of
 * disk |disk_id| (VMENC_E_NOT_FOUND: no entry or a version-1 entry). */
VMENC_INTERNAL vmenc_status vm_sealed_disk_geometry(const vm_kv *secret, const char *disk_id,
                                                    uint32_t *out_sector_size, uint64_t *out_capacity);
/* vm_sealed_disk_check compares the sealed value of a disk with its plain
 * descriptor: VMENC_E_AUTH if the descriptor file differs, a disk sealed
 * encrypted is not (state encrypted or rekeying), the geometry differs, or
 * the descriptor names a next key record the sealed entry does not (a
 * conversion's rollback turns keys round, so the sealed next may also be
 * the descriptor's current record). */
VMENC_INTERNAL vmenc_status vm_sealed_disk_check(const char *sealed_value, const char *desc_name,
                                                 const vm_disk_desc *d);
/* vm_sealed_disk_next_is checks strictly that the sealed entry names
 * |d|'s next key record (VMENC_E_AUTH otherwise): for acts that rebuild a
 * conversion's state, which must not trust a descriptor alone. */
VMENC_INTERNAL vmenc_status vm_sealed_disk_next_is(const vm_kv *secret, const char *disk_id,
                                                   const vm_disk_desc *d);

/* vm_sealed_put_steering writes the VM-level steering facts into |secret|
 * (removing those that are unset): the policy being applied ("" none) and
 * the next VM key record (NULL none). */
VMENC_INTERNAL vmenc_status vm_sealed_put_steering(vm_kv *secret, const char *applying_policy,
                                                   const vmenc_wrapped_key *next_vm_key);
/* vm_sealed_pending_policy copies the sealed policy under application
 * ("" if none) into |out| (VMENC_E_BUFFER_TOO_SMALL). */
VMENC_INTERNAL vmenc_status vm_sealed_pending_policy(const vm_kv *secret, char *out, size_t cap);
/* vm_sealed_next_key_hash reads the sealed next VM key record hash;
 * |*out_has| false if none (VMENC_E_PARSE if malformed). */
VMENC_INTERNAL vmenc_status vm_sealed_next_key_hash(const vm_kv *secret, bool *out_has,
                                                    uint8_t out[VM_RECORD_HASH_BYTES]);
/* vm_sealed_check_steering compares the plain .vmx's pending policy and
 * next VM key with the sealed ones: VMENC_E_AUTH on any difference (a
 * forged vmenc.applyingPolicy or encryption.newKeySafe). */
VMENC_INTERNAL vmenc_status vm_sealed_check_steering(const vm_kv *secret, const char *applying_policy,
                                                     const vmenc_wrapped_key *next_vm_key);

#endif /* VMENC_LIB_VM_FORMAT_SEALED_H */
