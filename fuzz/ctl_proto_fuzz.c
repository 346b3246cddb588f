/*
 * fuzz/ctl_proto_fuzz.c - the control endpoint's frame decoder
 * (integrations/control/ctl_proto.c, the bytes a caller sends the nbdkit
 * plugin and the plugin sends back to the CLI) with a round-trip oracle:
 * a frame that decodes must re-encode to exactly its own bytes, and a
 * stream of frames must decode frame by frame to the same messages.
 *
 * The codec is compiled in from its one source file, as the plugin and the
 * CLI compile it (they use public headers only, so it is not in libvmenc).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../integrations/control/ctl_proto.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t off = 0;
    while (off < size) {
        ctl_msg m;
        size_t used = 0;
        vmenc_status s = ctl_decode(data + off, size - off, &m, &used);
        if (s != VMENC_OK)
            return 0;
        if (used < CTL_HEADER_BYTES || used > size - off || used > CTL_MAX_FRAME)
            abort();
        uint8_t again[CTL_MAX_FRAME];
        size_t len = 0;
        if (ctl_encode(&m, again, sizeof(again), &len) != VMENC_OK || len != used ||
            memcmp(again, data + off, used) != 0)
            abort();
        /* every proper prefix is incomplete, never a different frame */
        for (size_t cut = 0; cut < used; cut += 1 + cut / 4) {
            ctl_msg p;
            size_t u = 0;
            if (ctl_decode(again, cut, &p, &u) != VMENC_E_TRUNCATED)
                abort();
        }
        off += used;
    }
    return 0;
}
