/*
 * fuzz/control_record_fuzz.c - libFuzzer harness for the control store's
 * authority record codec (lib/control/record.c; format docs/control.md).
 * Oracle: a record that decodes is canonical -- encoding it again gives
 * the input byte for byte -- and decoding that encoding gives the same
 * bytes once more; a refused input leaves the output zeroed. abort() on any
 * mismatch. Pure: no file, no key.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control/control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ctl_vm_record r, back;
    static const ctl_vm_record zero;
    vmenc_status st = ctl_record_decode(data, size, &r);
    if (st != VMENC_OK) {
        if (memcmp(&r, &zero, sizeof(r)) != 0)
            abort();
        return 0;
    }
    uint8_t *enc = NULL, *enc2 = NULL;
    size_t len = 0, len2 = 0;
    if (ctl_record_encode(&r, &enc, &len) != VMENC_OK)
        abort(); /* the parser accepted what the encoder refuses */
    if (len != size || memcmp(enc, data, size) != 0)
        abort(); /* not canonical */
    if (ctl_record_decode(enc, len, &back) != VMENC_OK || ctl_record_encode(&back, &enc2, &len2) != VMENC_OK ||
        len2 != len || memcmp(enc, enc2, len) != 0)
        abort();
    free(enc);
    free(enc2);
    return 0;
}
