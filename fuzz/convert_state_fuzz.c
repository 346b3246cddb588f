/*
 * fuzz/convert_state_fuzz.c - the in-place conversion's state file slots
 * (lib/vm/format/cvt_slot.c, docs/reencryption.md) with a round-trip
 * oracle, under a fixed slot key (bytes 0..31; the corpus is MAC'd with
 * it: hashlib.blake2b(body, digest_size=16, key=bytes(range(32)))): a slot that parses must serialise back
 * to exactly its 64 bytes; the picker, given the input cut into two slot
 * images, must return one of the slots that parse, with the highest
 * sequence number, or nothing; a slot with one bit of its MAC flipped must
 * never parse. Safety rule of the harness: it includes only the codec.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vm/format/cvt_slot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The fuzz key: 32 bytes 0x00, 0x01, ... 0x1f. */
static void fuzz_key(uint8_t key[VM_CVT_SLOT_KEY_BYTES]) {
    for (size_t i = 0; i < VM_CVT_SLOT_KEY_BYTES; i++)
        key[i] = (uint8_t)i;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t key[VM_CVT_SLOT_KEY_BYTES];
    fuzz_key(key);
    vm_cvt_slot a, b;
    bool ok_a = vm_cvt_slot_parse(key, data, size, &a) == VMENC_OK;
    if (ok_a) {
        uint8_t img[VM_CVT_SLOT_BYTES];
        vm_cvt_slot_serialize(key, &a, img);
        if (size < VM_CVT_SLOT_BYTES || memcmp(img, data, VM_CVT_SLOT_BYTES) != 0)
            abort();
        if (a.done_segs > a.num_segs)
            abort();
        img[VM_CVT_SLOT_BYTES - 1] ^= 1; /* a forged MAC never passes */
        if (vm_cvt_slot_parse(key, img, sizeof(img), &b) == VMENC_OK)
            abort();
    }
    /* two slot images from one input: the first 64 bytes and the rest */
    size_t cut = size < VM_CVT_SLOT_BYTES ? size : VM_CVT_SLOT_BYTES;
    ok_a = vm_cvt_slot_parse(key, data, cut, &a) == VMENC_OK;
    bool ok_b = vm_cvt_slot_parse(key, data + cut, size - cut, &b) == VMENC_OK;
    uint64_t id = ok_a ? a.id : ok_b ? b.id : 7;
    vm_cvt_slot pick;
    unsigned num_valid = 0;
    vmenc_status s = vm_cvt_slot_pick(key, data, cut, data + cut, size - cut, id, &pick, &num_valid);
    bool a_eligible = ok_a && a.id == id && a.seq % 2 == 1;
    bool b_eligible = ok_b && b.id == id && b.seq % 2 == 0;
    if ((s == VMENC_OK) != (a_eligible || b_eligible) || num_valid != (unsigned)a_eligible + (unsigned)b_eligible)
        abort();
    if (s == VMENC_OK) {
        uint64_t best = a_eligible && (!b_eligible || a.seq > b.seq) ? a.seq : b.seq;
        if (pick.seq != best || pick.id != id)
            abort();
    }
    return 0;
}
