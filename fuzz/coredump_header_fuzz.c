/*
 * fuzz/coredump_header_fuzz.c - the core-dump files a host reads back from
 * its datastore: the per-dump key file (host-key and password forms),
 * coredump.cfg, and the dump's chunked-format header. The first byte picks
 * the parser. Oracle: whatever parses serialises to text that parses again
 * to the same serialisation (the canonical form is a fixed point), and the
 * checked fields obey their schema.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vm/format/coredump_format.h"
#include "vm/format/descriptor.h"
#include "vm/format/statefile_header.h"

static void keyfile(const uint8_t *data, size_t size) {
    cd_keyfile k, again;
    if (cd_keyfile_parse(data, size, &k) != VMENC_OK)
        return;
    if (vm_uuid_check(k.dump_id) != VMENC_OK || cd_source_check(k.source) != VMENC_OK)
        abort();
    if (k.password_form && (k.kdf_ops < 1 || k.kdf_ops > CD_KDF_OPS_MAX || k.kdf_mem > CD_KDF_MEM_MAX))
        abort();
    if (!k.password_form && k.key_safe == NULL)
        abort();
    uint8_t *t1 = NULL, *t2 = NULL;
    size_t l1 = 0, l2 = 0;
    if (cd_keyfile_serialize(&k, &t1, &l1) != VMENC_OK || cd_keyfile_parse(t1, l1, &again) != VMENC_OK ||
        cd_keyfile_serialize(&again, &t2, &l2) != VMENC_OK || l1 != l2 || memcmp(t1, t2, l1) != 0)
        abort();
    free(t1);
    free(t2);
    cd_keyfile_cleanup(&again);
    cd_keyfile_cleanup(&k);
}

static void config(const uint8_t *data, size_t size) {
    cd_config c, again;
    if (cd_config_parse(data, size, &c) != VMENC_OK)
        return;
    if (c.rotating && !c.has_key)
        abort();
    uint8_t *t1 = NULL, *t2 = NULL;
    size_t l1 = 0, l2 = 0;
    if (cd_config_serialize(&c, &t1, &l1) != VMENC_OK || cd_config_parse(t1, l1, &again) != VMENC_OK ||
        cd_config_serialize(&again, &t2, &l2) != VMENC_OK || l1 != l2 || memcmp(t1, t2, l1) != 0)
        abort();
    free(t1);
    free(t2);
}

static void data_header(const uint8_t *data, size_t size) {
    uint8_t cls = 0, id[16];
    uint32_t index = 0;
    if (vm_sf_parse_header(data, size, &cls, &index, id) != VMENC_OK)
        return;
    if (!((cls >= 1 && cls <= 4) || cls == VM_SF_CLASS_COREDUMP))
        abort();
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
    case 0: keyfile(data + 1, size - 1); break;
    case 1: config(data + 1, size - 1); break;
    default: data_header(data + 1, size - 1); break;
    }
    return 0;
}
