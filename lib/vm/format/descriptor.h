/*
 * lib/vm/format/descriptor.h - the disk descriptor (DISK.vmdk) schema on
 * top of the kv text: a pure codec with a fuzz harness. Format:
 * docs/vm-format.md.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_VM_FORMAT_DESCRIPTOR_H
#define VMENC_LIB_VM_FORMAT_DESCRIPTOR_H

#include <stdbool.h>

#include "vm/format/kv.h"
#include "vmenc/keys.h"
#include "vmenc/kms.h"
#include "vmenc/vm.h"

/* ---- disk descriptor (descriptor.c) -----------------------------------------
 *
 *   # Disk DescriptorFile
 *   version = "1"
 *   encoding = "UTF-8"
 *   createType = "vmenc-flat"
 *   # Extent description
 *   RW <capacity/512> FLAT "<base>-flat.vmdk" 0
 *   # vmenc
 *   vmenc.version = "1"
 *   vmenc.diskId = "scsi0:0"
 *   vmenc.vmUuid = "<uuid>"
 *   vmenc.capacity = "<bytes>"
 *   vmenc.sectorSize = "512"
 *   vmenc.cipher = "aes-xts-plain64" | "none"
 *   vmenc.state = "encrypted" | "plain"
 *   vmenc.keyProvider = "<alias>"      (encrypted only)
 *   vmenc.kekId = "<id>"               (encrypted only)
 *   vmenc.keySafe = "vmwk1:..."        (encrypted only)
 * During an in-place conversion (docs/reencryption.md):
 *   vmenc.state = "encrypting" | "decrypting" | "rekeying"
 *   vmenc.convert.id = "<u64>"; vmenc.convert.segment = "<bytes>";
 *   vmenc.convert.targetOffset = "<bytes>"
 *   vmenc.newKeyProvider / vmenc.newKekId / vmenc.newKeySafe (encrypting, rekeying)
 * Unknown vmenc.* keys are VMENC_E_PARSE (a newer writer: refuse rather
 * than ignore); other keys are kept. Exactly one extent, FLAT, offset 0 or
 * the conversion shift (a multiple of 1 MiB up to 1 GiB), sectors*512 ==
 * capacity. keyProvider/kekId must equal the record's. */
typedef struct vm_disk_desc {
    char disk_id[VMENC_DISK_ID_MAX + 1];
    char vm_uuid[VMENC_VM_UUID_LEN + 1];
    uint64_t capacity;
    uint32_t sector_size;                       /* 512 or 4096 */
    int encrypted;                              /* the current data key exists (state encrypted,
                                                   decrypting or rekeying): key_safe set */
    vmenc_disk_state state;
    char extent_file[256];                      /* checked name, same directory */
    char key_provider[VMENC_PROVIDER_ALIAS_MAX + 1];
    char kek_id[VMENC_KEY_ID_MAX + 1];
    vmenc_wrapped_key *key_safe;                /* owned; NULL when plain */
    /* Where sector 0 lives in the extent (bytes; the extent line's offset
     * counts 512-byte units). 0, or the conversion shift after an odd
     * number of in-place conversions (docs/reencryption.md). */
    uint64_t data_offset;
    /* In-place conversion (state encrypting, decrypting, rekeying): the
     * target layout and key. |data_offset| and |key_safe| are the old
     * layout and key; |new_key_safe| is set for encrypting and rekeying. */
    uint64_t cvt_id;                            /* random; binds the .cvt state file */
    uint64_t cvt_segment;                       /* segment = shift, bytes */
    uint64_t cvt_target_offset;                 /* 0 or cvt_segment, != data_offset */
    char new_key_provider[VMENC_PROVIDER_ALIAS_MAX + 1];
    char new_kek_id[VMENC_KEY_ID_MAX + 1];
    vmenc_wrapped_key *new_key_safe;            /* owned */
    /* Key check values of the records' KEKs (vmenc.kekCheck,
     * vmenc.newKekCheck: 32 hex digits), so a restarted host can pin them
     * and tell "the KMS served other bytes" from "the record is bad". */
    bool has_kek_check, has_new_kek_check;
    uint8_t kek_check[VMENC_KEK_CHECK_VALUE_BYTES];
    uint8_t new_kek_check[VMENC_KEK_CHECK_VALUE_BYTES];
} vm_disk_desc;

/* vm_disk_desc_converting: is an in-place conversion in progress? */
static inline bool vm_disk_desc_converting(const vm_disk_desc *d) {
    return d->state == VMENC_DISK_ENCRYPTING || d->state == VMENC_DISK_DECRYPTING ||
           d->state == VMENC_DISK_REKEYING;
}

/* vm_disk_id_check accepts "scsiB:U", B 0..3, U 0..15 (VMENC_E_INVALID_ARG). */
VMENC_INTERNAL vmenc_status vm_disk_id_check(const char *disk_id);
/* vm_uuid_check accepts the canonical lower-case 36-character UUID text. */
VMENC_INTERNAL vmenc_status vm_uuid_check(const char *uuid);
VMENC_INTERNAL vmenc_status vm_disk_desc_parse(const uint8_t *text, size_t len, vm_disk_desc *out);
/* vm_disk_desc_serialize validates |d| like the parser and writes the text. */
VMENC_INTERNAL vmenc_status vm_disk_desc_serialize(const vm_disk_desc *d, uint8_t **out, size_t *out_len);
/* vm_disk_desc_cleanup frees key_safe and zeroes |d|. */
VMENC_INTERNAL void vm_disk_desc_cleanup(vm_disk_desc *d);

#endif /* VMENC_LIB_VM_FORMAT_DESCRIPTOR_H */
