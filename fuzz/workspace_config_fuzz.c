/*
 * fuzz/workspace_config_fuzz.c - libFuzzer harness for the workspace
 * configuration parser (lib/workspace/config.c). Oracle: a text that parses
 * has a canonical form; the canonical form must parse, and its own
 * canonical form must be the same bytes. Every rejection names a reason.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmenc/vmenc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    char *c1 = NULL, *c2 = NULL;
    size_t l1 = 0, l2 = 0;
    vmenc_status st = vmenc_workspace_config_check(data, size, &err, &c1, &l1);
    if (st != VMENC_OK) {
        if (err.status != st || err.message[0] == '\0')
            abort(); /* every rejection says why */
        return 0;
    }
    if (vmenc_workspace_config_check((const uint8_t *)c1, l1, &err, &c2, &l2) != VMENC_OK)
        abort(); /* what we write we must read */
    if (l1 != l2 || memcmp(c1, c2, l1) != 0)
        abort(); /* the writer is not canonical */
    vmenc_buffer_free(c1);
    vmenc_buffer_free(c2);
    return 0;
}
