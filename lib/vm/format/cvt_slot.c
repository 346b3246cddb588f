/*
 * lib/vm/format/cvt_slot.c - the slots of an in-place conversion's state
 * file (layout in cvt_slot.h and docs/reencryption.md): the slot key,
 * serialise, parse (bounded cursor; a keyed MAC catches both a torn slot
 * write and a forged one) and pick the newest valid slot of two. Pure: the
 * conversion (lib/vm/convert.c) does the I/O; fuzz/convert_state_fuzz.c
 * feeds it hostile bytes. Safety rule: no field of a slot is used before
 * its MAC has verified, compared in constant time.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <sodium.h>
#include <string.h>

#include "vm/format/cvt_slot.h"
#include "vm/format/sealed.h"
#include "vmenc/vm.h"

#define SLOT_MAGIC "VMENCCV2"
#define SLOT_MAGIC_V1 "VMENCCV1"
#define SLOT_BODY 48u
#define SLOT_MAC 16u
#define MIN_SEGMENT VM_CVT_SEGMENT_MIN
#define MAX_SEGMENT VM_CVT_SEGMENT_MAX
/* uuid || len || disk id || id || kind || from || to || 2 x (flag || hash) */
#define BINDING_MAX (VMENC_VM_UUID_LEN + 1 + VMENC_DISK_ID_MAX + 8 + 1 + 8 + 8 + 2 * (1 + VM_CVT_RECORD_HASH_BYTES))

vmenc_status vm_cvt_slot_key(const vmenc_dek *key, const vm_cvt_binding *b, uint8_t out[VM_CVT_SLOT_KEY_BYTES]) {
    VMENC_ENSURE(key != NULL && b != NULL && b->vm_uuid != NULL && b->disk_id != NULL && out != NULL,
                 VMENC_E_INVALID_ARG);
    size_t uuid_len = strlen(b->vm_uuid), id_len = strlen(b->disk_id);
    VMENC_ENSURE(uuid_len == VMENC_VM_UUID_LEN && id_len <= VMENC_DISK_ID_MAX, VMENC_E_INVALID_ARG);
    uint8_t ctx[BINDING_MAX];
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, ctx, sizeof(ctx));
    vmenc_cbb_add_bytes(&cbb, (const uint8_t *)b->vm_uuid, uuid_len);
    vmenc_cbb_add_u8(&cbb, (uint8_t)id_len);
    vmenc_cbb_add_bytes(&cbb, (const uint8_t *)b->disk_id, id_len);
    vmenc_cbb_add_u64(&cbb, b->id);
    vmenc_cbb_add_u8(&cbb, b->kind);
    vmenc_cbb_add_u64(&cbb, b->from_offset);
    vmenc_cbb_add_u64(&cbb, b->to_offset);
    static const uint8_t none[VM_CVT_RECORD_HASH_BYTES];
    vmenc_cbb_add_u8(&cbb, b->has_old ? 1 : 0);
    vmenc_cbb_add_bytes(&cbb, b->has_old ? b->old_record : none, VM_CVT_RECORD_HASH_BYTES);
    vmenc_cbb_add_u8(&cbb, b->has_new ? 1 : 0);
    vmenc_cbb_add_bytes(&cbb, b->has_new ? b->new_record : none, VM_CVT_RECORD_HASH_BYTES);
    VMENC_ENSURE(vmenc_cbb_ok(&cbb), VMENC_E_INTERNAL);
    return vm_derive_key(key, "cvt-slot-v2", ctx, vmenc_cbb_len(&cbb), out);
}

static void slot_mac(const uint8_t key[VM_CVT_SLOT_KEY_BYTES], const uint8_t *body, uint8_t out[SLOT_MAC]) {
    crypto_generichash(out, SLOT_MAC, body, SLOT_BODY, key, VM_CVT_SLOT_KEY_BYTES);
}

void vm_cvt_slot_serialize(const uint8_t mac_key[VM_CVT_SLOT_KEY_BYTES], const vm_cvt_slot *slot,
                           uint8_t out[VM_CVT_SLOT_BYTES]) {
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, out, VM_CVT_SLOT_BYTES);
    vmenc_cbb_add_bytes(&cbb, (const uint8_t *)SLOT_MAGIC, 8);
    vmenc_cbb_add_u64(&cbb, slot->id);
    vmenc_cbb_add_u64(&cbb, slot->seq);
    vmenc_cbb_add_u64(&cbb, slot->done_segs);
    vmenc_cbb_add_u64(&cbb, slot->num_segs);
    vmenc_cbb_add_u64(&cbb, slot->seg_bytes);
    slot_mac(mac_key, out, out + SLOT_BODY);
}

vmenc_status vm_cvt_slot_parse(const uint8_t mac_key[VM_CVT_SLOT_KEY_BYTES], const uint8_t *data, size_t len,
                               vm_cvt_slot *out) {
    VMENC_ENSURE(mac_key != NULL && data != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vmenc_cbs cbs;
    vmenc_cbs_init(&cbs, data, len);
    vmenc_cbs magic, mac;
    vm_cvt_slot s;
    VMENC_ENSURE(vmenc_cbs_get_bytes(&cbs, &magic, 8), VMENC_E_TRUNCATED);
    VMENC_ENSURE(!vmenc_cbs_mem_equal(&magic, (const uint8_t *)SLOT_MAGIC_V1, 8), VMENC_E_BAD_VERSION);
    VMENC_ENSURE(vmenc_cbs_mem_equal(&magic, (const uint8_t *)SLOT_MAGIC, 8), VMENC_E_BAD_MAGIC);
    VMENC_ENSURE(vmenc_cbs_get_u64(&cbs, &s.id) && vmenc_cbs_get_u64(&cbs, &s.seq) &&
                     vmenc_cbs_get_u64(&cbs, &s.done_segs) && vmenc_cbs_get_u64(&cbs, &s.num_segs) &&
                     vmenc_cbs_get_u64(&cbs, &s.seg_bytes) && vmenc_cbs_get_bytes(&cbs, &mac, SLOT_MAC),
                 VMENC_E_TRUNCATED);
    uint8_t want[SLOT_MAC];
    slot_mac(mac_key, data, want);
    VMENC_ENSURE(vmenc_cbs_mem_equal(&mac, want, SLOT_MAC), VMENC_E_AUTH);
    /* only authenticated fields are looked at from here on */
    VMENC_ENSURE(s.seq > 0 && s.num_segs > 0 && s.done_segs <= s.num_segs, VMENC_E_PARSE);
    VMENC_ENSURE(s.seg_bytes >= MIN_SEGMENT && s.seg_bytes <= MAX_SEGMENT && s.seg_bytes % MIN_SEGMENT == 0,
                 VMENC_E_PARSE);
    *out = s;
    return VMENC_OK;
}

/* slot_state: VMENC_OK if eligible (valid, this ID, the right parity);
 * otherwise why not, as the picker reports it. */
static vmenc_status slot_state(const uint8_t *key, const uint8_t *img, size_t len, uint64_t id, unsigned parity,
                               vm_cvt_slot *out) {
    if (img == NULL || len == 0)
        return VMENC_E_INTERRUPTED;
    bool all_zero = true;
    for (size_t i = 0; i < len && i < VM_CVT_SLOT_BYTES; i++)
        all_zero = all_zero && img[i] == 0;
    if (all_zero)
        return VMENC_E_INTERRUPTED; /* never written */
    vmenc_status s = vm_cvt_slot_parse(key, img, len, out);
    if (s == VMENC_E_BAD_VERSION || s == VMENC_E_INTERRUPTED)
        return s;
    if (s != VMENC_OK || out->id != id || out->seq % 2 != parity)
        return VMENC_E_AUTH; /* damaged, forged, or another conversion's */
    return VMENC_OK;
}

vmenc_status vm_cvt_slot_pick(const uint8_t mac_key[VM_CVT_SLOT_KEY_BYTES], const uint8_t *slot0, size_t len0,
                              const uint8_t *slot1, size_t len1, uint64_t id, vm_cvt_slot *out,
                              unsigned *out_num_valid) {
    VMENC_ENSURE(mac_key != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vm_cvt_slot a, b;
    vmenc_status sa = slot_state(mac_key, slot0, len0, id, 1, &a);
    vmenc_status sb = slot_state(mac_key, slot1, len1, id, 0, &b);
    if (out_num_valid != NULL)
        *out_num_valid = (sa == VMENC_OK) + (sb == VMENC_OK);
    if (sa != VMENC_OK && sb != VMENC_OK) {
        if (sa == VMENC_E_AUTH || sb == VMENC_E_AUTH)
            return VMENC_E_AUTH;
        if (sa == VMENC_E_BAD_VERSION || sb == VMENC_E_BAD_VERSION)
            return VMENC_E_BAD_VERSION;
        return VMENC_E_INTERRUPTED;
    }
    *out = sa == VMENC_OK && (sb != VMENC_OK || a.seq > b.seq) ? a : b;
    return VMENC_OK;
}
