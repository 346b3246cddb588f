/*
 * fuzz/migrate_home_fuzz.c - the home stream's text chunks
 * (lib/workspace/migrate_home.c), which a receiving host reads from the
 * migration stream - authenticated in an encrypted stream, from anyone on
 * the wire in a plain one. Every input is tried as a manifest and as a file
 * header. Oracle: what parses builds back to exactly the input, and a file
 * name that parses is one mh_file_name_ok accepts (it cannot leave the
 * home directory).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "workspace/migrate_home.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t out[MH_TEXT_MAX + 1];
    size_t len = 0;
    mh_manifest m;
    if (mh_manifest_parse(data, size, &m) == VMENC_OK) {
        if (mh_manifest_build(&m, out, sizeof(out), &len) != VMENC_OK || len != size || memcmp(out, data, size) != 0)
            abort();
    }
    mh_file f;
    if (mh_file_parse(data, size, &f) == VMENC_OK) {
        if (!mh_file_name_ok(f.name) || strchr(f.name, '/') != NULL)
            abort();
        if (mh_file_build(&f, out, sizeof(out), &len) != VMENC_OK || len != size || memcmp(out, data, size) != 0)
            abort();
    }
    return 0;
}
