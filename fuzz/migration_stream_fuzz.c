/*
 * fuzz/migration_stream_fuzz.c - what a receiving host parses from the
 * network and the management plane: the migration handover blob and the
 * frame stream. The first byte picks: 0 the handover (oracle: what parses
 * builds back to exactly the input), 1 an encrypted stream and 2 a plain
 * stream under a fixed handover (oracle: a frame header that parses builds
 * back to its bytes; the receiver never returns a frame out of sequence,
 * never more data than the end frame counts, and stops at the first
 * failure). The corpus's streams were sealed under the fixed key below.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vm/format/migrate_stream.h"

static const uint8_t k_key[MIG_KEY_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                             17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t k_id[VMENC_MIGRATION_ID_BYTES] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
                                                       0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf};
static const uint8_t k_nonce[MIG_NONCE_BYTES] = {0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5,
                                                 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb};

static void handover(const uint8_t *data, size_t size) {
    mig_handover h;
    if (mig_handover_parse(data, size, &h) != VMENC_OK)
        return;
    uint8_t out[VMENC_MIGRATION_HANDOVER_MAX];
    size_t len = 0;
    if (mig_handover_build(&h, out, sizeof(out), &len) != VMENC_OK || len != size || memcmp(out, data, size) != 0)
        abort();
    mig_handover_cleanup(&h);
}

typedef struct src {
    const uint8_t *data;
    size_t len, pos;
} src;

static vmenc_status src_read(void *ctx, uint8_t *buf, size_t cap, size_t *out_len) {
    src *s = ctx;
    size_t n = s->len - s->pos < cap ? s->len - s->pos : cap;
    memcpy(buf, s->data + s->pos, n);
    s->pos += n;
    *out_len = n;
    return VMENC_OK;
}

static void stream(const uint8_t *data, size_t size, bool encrypted) {
    mig_codec c;
    if (mig_codec_init(&c, encrypted, false, k_key, k_id, k_nonce) != VMENC_OK)
        abort();
    src s = {data, size, 0};
    uint64_t expect = 0;
    for (;;) {
        mig_frame_header h;
        vmenc_migration_failure why = VMENC_MIGRATION_FAIL_NONE;
        vmenc_status st = mig_codec_next(&c, src_read, &s, &h, &why);
        if (st != VMENC_OK) {
            if (why == VMENC_MIGRATION_FAIL_NONE)
                abort(); /* every failure says why */
            break;
        }
        if (h.seq != expect++)
            abort();
        uint8_t again[MIG_HEADER_BYTES];
        mig_frame_header_build(&h, again);
        if (memcmp(again, c.buf, MIG_HEADER_BYTES) != 0)
            abort();
        if (h.type == MIG_FRAME_END)
            break;
    }
    mig_codec_cleanup(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) {
        if (vmenc_init() != VMENC_OK)
            abort();
        init = 1;
    }
    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0: handover(data + 1, size - 1); break;
    case 1: stream(data + 1, size - 1, true); break;
    default: stream(data + 1, size - 1, false); break;
    }
    return 0;
}
