/*
 * lib/vm/format/statefile_header.c - the 64-byte header of a chunked AEAD
 * state file (layout in statefile_header.h and docs/vm-format.md): build
 * and parse, pure, through the bounded cursor and builder. The record
 * engine is lib/vm/io/statefile.c; the fuzz harness fuzz/statefile_fuzz.c.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <string.h>

#include "vm/format/statefile_header.h"
#include "vmenc/vm.h"

#define SF_MAGIC "VMENCSF1"
#define SF_VERSION 1u
#define SF_CHUNK ((uint64_t)VMENC_VM_FILE_CHUNK_BYTES)

/* ---- the header --------------------------------------------------------------------- */

void vm_sf_header_build(uint8_t cls, uint32_t index, const uint8_t file_id[VM_SF_FILE_ID_BYTES],
                        uint8_t out[VM_SF_HEADER_BYTES]) {
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, out, VM_SF_HEADER_BYTES);
    vmenc_cbb_add_bytes(&cbb, (const uint8_t *)SF_MAGIC, 8);
    vmenc_cbb_add_u16(&cbb, SF_VERSION);
    vmenc_cbb_add_u8(&cbb, cls);
    vmenc_cbb_add_u8(&cbb, 0);
    vmenc_cbb_add_u32(&cbb, (uint32_t)SF_CHUNK);
    vmenc_cbb_add_u32(&cbb, index);
    vmenc_cbb_add_bytes(&cbb, file_id, VM_SF_FILE_ID_BYTES);
    vmenc_cbb_add_zeros(&cbb, VM_SF_HEADER_BYTES - vmenc_cbb_len(&cbb));
}

/* The AEAD classes: the four VM state classes and the host core dump. */
bool vm_sf_class_is_aead(uint8_t cls) {
    return (cls >= 1 && cls <= VM_SF_CLASS_MAX) || cls == VM_SF_CLASS_COREDUMP;
}

static bool all_zero(const vmenc_cbs *cbs) {
    uint8_t acc = 0;
    for (size_t i = 0; i < vmenc_cbs_len(cbs); i++)
        acc |= vmenc_cbs_data(cbs)[i];
    return acc == 0;
}

vmenc_status vm_sf_parse_header(const uint8_t *data, size_t len, uint8_t *out_cls, uint32_t *out_index,
                                uint8_t out_file_id[16]) {
    VMENC_ENSURE(data != NULL || len == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(len >= VM_SF_HEADER_BYTES, VMENC_E_TRUNCATED);
    vmenc_cbs cbs, magic, file_id;
    uint16_t version;
    uint8_t cls, reserved;
    uint32_t chunk, index;
    vmenc_cbs_init(&cbs, data, VM_SF_HEADER_BYTES);
    VMENC_ENSURE(vmenc_cbs_get_bytes(&cbs, &magic, 8) && memcmp(vmenc_cbs_data(&magic), SF_MAGIC, 8) == 0,
                 VMENC_E_BAD_MAGIC);
    VMENC_ENSURE(vmenc_cbs_get_u16(&cbs, &version), VMENC_E_TRUNCATED);
    VMENC_ENSURE(version == SF_VERSION, VMENC_E_BAD_VERSION);
    VMENC_ENSURE(vmenc_cbs_get_u8(&cbs, &cls) && vmenc_cbs_get_u8(&cbs, &reserved) &&
                     vmenc_cbs_get_u32(&cbs, &chunk) && vmenc_cbs_get_u32(&cbs, &index) &&
                     vmenc_cbs_get_bytes(&cbs, &file_id, VM_SF_FILE_ID_BYTES),
                 VMENC_E_TRUNCATED);
    VMENC_ENSURE(vm_sf_class_is_aead(cls), VMENC_E_PARSE);
    VMENC_ENSURE(reserved == 0 && all_zero(&cbs), VMENC_E_PARSE);
    VMENC_ENSURE(chunk == SF_CHUNK, VMENC_E_PARSE);
    if (out_cls != NULL)
        *out_cls = cls;
    if (out_index != NULL)
        *out_index = index;
    if (out_file_id != NULL)
        memcpy(out_file_id, vmenc_cbs_data(&file_id), VM_SF_FILE_ID_BYTES);
    return VMENC_OK;
}
