/*
 * lib/vm/format/cvt_slot.h - the in-place conversion's state-file slots
 * ("<extent>.<id>.cvt", docs/reencryption.md): a pure codec with a fuzz
 * harness (fuzz/convert_state_fuzz.c). The conversion that writes them is
 * lib/vm/convert.c.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_VM_FORMAT_CVT_SLOT_H
#define VMENC_LIB_VM_FORMAT_CVT_SLOT_H

#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"

/* The state file "<extent>.cvt": two 64-byte slots at offsets 0 and 4096,
 * each magic "VMENCCV1" || u64 id || u64 seq || u64 done segments || u64
 * segments || u64 segment bytes || BLAKE2b-128 of the 48 bytes before
 * (big-endian). Slot seq % 2 is written; the valid slot with the right id
 * and the highest seq wins, so a torn slot write falls back to the other. */
#define VM_CVT_SLOT_BYTES 64u
#define VM_CVT_SLOT_STRIDE 4096u

typedef struct vm_cvt_slot {
    uint64_t id, seq, done_segs, num_segs, seg_bytes;
} vm_cvt_slot;

/* vm_cvt_slot_parse checks one slot (fuzz entry point): VMENC_E_TRUNCATED,
 * VMENC_E_BAD_MAGIC, VMENC_E_AUTH (checksum), VMENC_E_PARSE (done > total,
 * segment size). */
VMENC_INTERNAL vmenc_status vm_cvt_slot_parse(const uint8_t *data, size_t len, vm_cvt_slot *out);
VMENC_INTERNAL void vm_cvt_slot_serialize(const vm_cvt_slot *slot, uint8_t out[VM_CVT_SLOT_BYTES]);
/* vm_cvt_slot_pick chooses from two slot images (either may be invalid) the
 * one with id |id| and the highest seq: VMENC_E_INTERRUPTED if neither. */
VMENC_INTERNAL vmenc_status vm_cvt_slot_pick(const uint8_t *slot0, size_t len0, const uint8_t *slot1,
                                             size_t len1, uint64_t id, vm_cvt_slot *out);

/* Segment sizes a slot may name: a multiple of 1 MiB, 1 MiB .. 1 GiB. */
#define VM_CVT_SEGMENT_MIN ((uint64_t)1 << 20)
#define VM_CVT_SEGMENT_MAX ((uint64_t)1 << 30)

#endif /* VMENC_LIB_VM_FORMAT_CVT_SLOT_H */
