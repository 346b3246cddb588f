/*
 * fuzz/audit_mirror_head_fuzz.c - the etcd audit mirror's codec
 * (lib/control/etcd/audit_mirror_codec.c, docs/cluster.md "Events"): a
 * host's head value read from etcd, and a record key's sequence segment.
 * Round-trip oracle: a head value that parses formats back to the same
 * bytes (one encoding per head, so the compare-and-swap on the value
 * cannot be dodged), and a sequence segment that parses is the zero-padded
 * decimal of the number.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/etcd/audit_mirror.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint64_t seq = 7;
    uint8_t hash[VMENC_AUDIT_HASH_BYTES];
    memset(hash, 0xA5, sizeof(hash));
    if (ctl_audit_head_parse(data, size, &seq, hash) == VMENC_OK) {
        char out[CTL_AUDIT_HEAD_VALUE_MAX];
        size_t n = ctl_audit_head_format(seq, hash, out);
        if (n != size || memcmp(out, data, size) != 0)
            abort();
    } else if (seq != 7) {
        abort(); /* outputs untouched on failure */
    }
    uint64_t s2 = 0;
    if (ctl_audit_seq_parse(data, size, &s2) == VMENC_OK) {
        char out[32];
        snprintf(out, sizeof(out), "%020" PRIu64, s2);
        if (size != CTL_AUDIT_SEQ_DIGITS || memcmp(out, data, size) != 0)
            abort();
    }
    return 0;
}
