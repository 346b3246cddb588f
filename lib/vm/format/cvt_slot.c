/*
 * lib/vm/format/cvt_slot.c - the slots of an in-place conversion's state
 * file (layout in cvt_slot.h and docs/reencryption.md): serialise, parse
 * (bounded cursor; a checksum catches a torn slot write) and pick the
 * newest valid slot of two. Pure: the conversion (lib/vm/convert.c) does
 * the I/O; fuzz/convert_state_fuzz.c feeds it hostile bytes.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <sodium.h>
#include <stdbool.h>

#include "vm/format/cvt_slot.h"

#define SLOT_MAGIC "VMENCCV1"
#define SLOT_BODY 48u
#define SLOT_HASH 16u
#define MIN_SEGMENT VM_CVT_SEGMENT_MIN
#define MAX_SEGMENT VM_CVT_SEGMENT_MAX

static void slot_hash(const uint8_t *body, uint8_t out[SLOT_HASH]) {
    crypto_generichash(out, SLOT_HASH, body, SLOT_BODY, (const uint8_t *)"vmenc-cvt-slot-v1", 17);
}

void vm_cvt_slot_serialize(const vm_cvt_slot *slot, uint8_t out[VM_CVT_SLOT_BYTES]) {
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, out, VM_CVT_SLOT_BYTES);
    vmenc_cbb_add_bytes(&cbb, (const uint8_t *)SLOT_MAGIC, 8);
    vmenc_cbb_add_u64(&cbb, slot->id);
    vmenc_cbb_add_u64(&cbb, slot->seq);
    vmenc_cbb_add_u64(&cbb, slot->done_segs);
    vmenc_cbb_add_u64(&cbb, slot->num_segs);
    vmenc_cbb_add_u64(&cbb, slot->seg_bytes);
    slot_hash(out, out + SLOT_BODY);
}

vmenc_status vm_cvt_slot_parse(const uint8_t *data, size_t len, vm_cvt_slot *out) {
    VMENC_ENSURE(data != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vmenc_cbs cbs;
    vmenc_cbs_init(&cbs, data, len);
    vmenc_cbs magic;
    vm_cvt_slot s;
    VMENC_ENSURE(vmenc_cbs_get_bytes(&cbs, &magic, 8), VMENC_E_TRUNCATED);
    VMENC_ENSURE(vmenc_cbs_mem_equal(&magic, (const uint8_t *)SLOT_MAGIC, 8), VMENC_E_BAD_MAGIC);
    VMENC_ENSURE(vmenc_cbs_get_u64(&cbs, &s.id) && vmenc_cbs_get_u64(&cbs, &s.seq) &&
                     vmenc_cbs_get_u64(&cbs, &s.done_segs) && vmenc_cbs_get_u64(&cbs, &s.num_segs) &&
                     vmenc_cbs_get_u64(&cbs, &s.seg_bytes),
                 VMENC_E_TRUNCATED);
    uint8_t want[SLOT_HASH];
    VMENC_ENSURE(vmenc_cbs_len(&cbs) >= SLOT_HASH, VMENC_E_TRUNCATED);
    slot_hash(data, want);
    vmenc_cbs hash;
    VMENC_ENSURE(vmenc_cbs_get_bytes(&cbs, &hash, SLOT_HASH), VMENC_E_TRUNCATED);
    VMENC_ENSURE(vmenc_cbs_mem_equal(&hash, want, SLOT_HASH), VMENC_E_AUTH);
    VMENC_ENSURE(s.seq > 0 && s.num_segs > 0 && s.done_segs <= s.num_segs, VMENC_E_PARSE);
    VMENC_ENSURE(s.seg_bytes >= MIN_SEGMENT && s.seg_bytes <= MAX_SEGMENT && s.seg_bytes % MIN_SEGMENT == 0,
                 VMENC_E_PARSE);
    *out = s;
    return VMENC_OK;
}

vmenc_status vm_cvt_slot_pick(const uint8_t *slot0, size_t len0, const uint8_t *slot1, size_t len1, uint64_t id,
                              vm_cvt_slot *out) {
    vm_cvt_slot a, b;
    bool ok_a = slot0 != NULL && vm_cvt_slot_parse(slot0, len0, &a) == VMENC_OK && a.id == id && a.seq % 2 == 1;
    bool ok_b = slot1 != NULL && vm_cvt_slot_parse(slot1, len1, &b) == VMENC_OK && b.id == id && b.seq % 2 == 0;
    VMENC_ENSURE(ok_a || ok_b, VMENC_E_INTERRUPTED);
    *out = ok_a && (!ok_b || a.seq > b.seq) ? a : b;
    return VMENC_OK;
}
