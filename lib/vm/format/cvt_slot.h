/*
 * lib/vm/format/cvt_slot.h - the in-place conversion's state-file slots
 * ("<extent>.<id>.cvt", docs/reencryption.md): a pure codec with a fuzz
 * harness (fuzz/convert_state_fuzz.c). The conversion that writes them is
 * lib/vm/convert.c. Its one safety rule: a slot is believed only if its MAC
 * verifies under a key the datastore's writers lack, bound to this one
 * conversion (VM, disk, ID, direction, layouts, both key records).
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_VM_FORMAT_CVT_SLOT_H
#define VMENC_LIB_VM_FORMAT_CVT_SLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"
#include "vmenc/keys.h"

/* The state file "<extent>.<id>.cvt": two 64-byte slots at offsets 0 and
 * 4096, each magic "VMENCCV2" || u64 id || u64 seq || u64 done segments ||
 * u64 segments || u64 segment bytes || MAC (big-endian), the MAC being
 * BLAKE2b-128 keyed with the conversion's slot key (vm_cvt_slot_key) over
 * the 48 bytes before it. Slot seq % 2 is written; the valid slot with the
 * right id and the highest seq wins, so a torn slot write falls back to the
 * other. Version 1 ("VMENCCV1", checksum keyed with a public constant) is
 * refused: anyone could forge its progress. */
#define VM_CVT_SLOT_BYTES 64u
#define VM_CVT_SLOT_STRIDE 4096u
#define VM_CVT_SLOT_KEY_BYTES 32u
#define VM_CVT_RECORD_HASH_BYTES 32u

typedef struct vm_cvt_slot {
    uint64_t id, seq, done_segs, num_segs, seg_bytes;
} vm_cvt_slot;

/* What a conversion's slot key is bound to: everything of the descriptor
 * that steers the conversion. A slot copied from another conversion, disk
 * or VM, or kept while the descriptor was edited, does not verify. */
typedef struct vm_cvt_binding {
    const char *vm_uuid;                             /* 36 characters */
    const char *disk_id;                             /* "scsiB:U" */
    uint64_t id;                                     /* vmenc.convert.id */
    uint8_t kind;                                    /* vmenc_convert_kind */
    uint64_t from_offset, to_offset;                 /* the two layouts */
    bool has_old, has_new;                           /* key records present */
    uint8_t old_record[VM_CVT_RECORD_HASH_BYTES];    /* vm_record_hash of keySafe */
    uint8_t new_record[VM_CVT_RECORD_HASH_BYTES];    /* ... of newKeySafe */
} vm_cvt_binding;

/* vm_cvt_slot_key derives the slot MAC key from |key| (the conversion's
 * key on the encrypted side: the old DEK of a decrypt or deep rekey, the
 * new DEK of an encrypt) with vm_derive_key label "cvt-slot-v2" and the
 * binding as context. |out| should be secure memory. */
VMENC_INTERNAL vmenc_status vm_cvt_slot_key(const vmenc_dek *key, const vm_cvt_binding *b,
                                            uint8_t out[VM_CVT_SLOT_KEY_BYTES]);

/* vm_cvt_slot_parse checks one slot (fuzz entry point): VMENC_E_TRUNCATED,
 * VMENC_E_BAD_VERSION (a version 1 slot), VMENC_E_BAD_MAGIC, VMENC_E_AUTH
 * (MAC), VMENC_E_PARSE (done > total, segment size). */
VMENC_INTERNAL vmenc_status vm_cvt_slot_parse(const uint8_t mac_key[VM_CVT_SLOT_KEY_BYTES], const uint8_t *data,
                                              size_t len, vm_cvt_slot *out);
VMENC_INTERNAL void vm_cvt_slot_serialize(const uint8_t mac_key[VM_CVT_SLOT_KEY_BYTES], const vm_cvt_slot *slot,
                                          uint8_t out[VM_CVT_SLOT_BYTES]);
/* vm_cvt_slot_pick chooses from two slot images (either may be invalid) the
 * one with id |id| and the highest seq. With neither valid: VMENC_E_AUTH if
 * a slot was there but failed its MAC or named another conversion,
 * VMENC_E_BAD_VERSION if one is a version 1 slot, else VMENC_E_INTERRUPTED
 * (empty, missing). |*out_num_valid| (may be NULL) gets 0, 1 or 2. */
VMENC_INTERNAL vmenc_status vm_cvt_slot_pick(const uint8_t mac_key[VM_CVT_SLOT_KEY_BYTES], const uint8_t *slot0,
                                             size_t len0, const uint8_t *slot1, size_t len1, uint64_t id,
                                             vm_cvt_slot *out, unsigned *out_num_valid);

/* Segment sizes a slot may name: a multiple of 1 MiB, 1 MiB .. 1 GiB. */
#define VM_CVT_SEGMENT_MIN ((uint64_t)1 << 20)
#define VM_CVT_SEGMENT_MAX ((uint64_t)1 << 30)

#endif /* VMENC_LIB_VM_FORMAT_CVT_SLOT_H */
