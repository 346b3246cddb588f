/*
 * lib/workspace/migrate_home.h - the home stream: what a storage migration
 * of a VM home carries inside the encrypted migration stream (the frames
 * are lib/vm/migrate_stream.c's; this is their payload). Documented in
 * docs/migration.md ("The VM home stream"). Pure: bytes in, struct out; the
 * receiver (lib/workspace/migrate.c) decides what to do with them.
 *
 *   DEVICE_STATE, address 0:      "vmenc-migrate 1\nvm NAME\nfiles N\nbytes B\n"
 *   DEVICE_STATE, address 1 + i:  "file NAME SIZE\n"   (file i, 0-based)
 *   DISK, address = file offset:  contents of the last announced file
 *
 * Numbers are canonical decimal (no sign, no leading zero); a file name is
 * 1..255 bytes of [A-Za-z0-9._-], not starting with '.'. Not installed.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_WORKSPACE_MIGRATE_HOME_H
#define VMENC_LIB_WORKSPACE_MIGRATE_HOME_H

#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"

#define MH_NAME_MAX 255u   /* a file name (and a manifest's VM name token) */
#define MH_TEXT_MAX 511u   /* longest manifest or file header */

typedef struct mh_manifest {
    char vm[MH_NAME_MAX + 1];
    uint64_t num_files;
    uint64_t num_bytes;
} mh_manifest;

typedef struct mh_file {
    char name[MH_NAME_MAX + 1];
    uint64_t size;
} mh_file;

/* mh_manifest_parse / mh_file_parse read one chunk's text exactly (no
 * trailing bytes). VMENC_E_PARSE for anything else; |out| is then
 * unspecified. */
VMENC_INTERNAL vmenc_status mh_manifest_parse(const uint8_t *text, size_t len, mh_manifest *out);
VMENC_INTERNAL vmenc_status mh_file_parse(const uint8_t *text, size_t len, mh_file *out);

/* mh_manifest_build / mh_file_build write the text (no NUL) to |out|;
 * VMENC_E_INVALID_ARG for a name the parser would refuse,
 * VMENC_E_BUFFER_TOO_SMALL. */
VMENC_INTERNAL vmenc_status mh_manifest_build(const mh_manifest *m, uint8_t *out, size_t cap, size_t *out_len);
VMENC_INTERNAL vmenc_status mh_file_build(const mh_file *f, uint8_t *out, size_t cap, size_t *out_len);

/* mh_file_name_ok: a name mh_file_parse accepts. */
VMENC_INTERNAL bool mh_file_name_ok(const char *name);

#endif /* VMENC_LIB_WORKSPACE_MIGRATE_HOME_H */
