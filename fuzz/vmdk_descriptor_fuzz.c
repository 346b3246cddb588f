/*
 * fuzz/vmdk_descriptor_fuzz.c - the disk descriptor parser with a
 * round-trip oracle: a parsed descriptor serialises to a text that parses
 * to the same fields and serialises to the same bytes.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vm/format/descriptor.h"

static void same_fields(const vm_disk_desc *a, const vm_disk_desc *b) {
    if (strcmp(a->disk_id, b->disk_id) != 0 || strcmp(a->vm_uuid, b->vm_uuid) != 0 || a->capacity != b->capacity ||
        a->sector_size != b->sector_size || a->encrypted != b->encrypted || a->state != b->state ||
        strcmp(a->extent_file, b->extent_file) != 0 || strcmp(a->key_provider, b->key_provider) != 0 ||
        strcmp(a->kek_id, b->kek_id) != 0 || (a->key_safe == NULL) != (b->key_safe == NULL))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vm_disk_desc d, again;
    if (vm_disk_desc_parse(data, size, &d) != VMENC_OK)
        return 0;
    uint8_t *text = NULL, *text2 = NULL;
    size_t len = 0, len2 = 0;
    if (vm_disk_desc_serialize(&d, &text, &len) != VMENC_OK)
        abort();
    if (vm_disk_desc_parse(text, len, &again) != VMENC_OK)
        abort();
    same_fields(&d, &again);
    if (vm_disk_desc_serialize(&again, &text2, &len2) != VMENC_OK || len != len2 || memcmp(text, text2, len) != 0)
        abort();
    free(text);
    free(text2);
    vm_disk_desc_cleanup(&d);
    vm_disk_desc_cleanup(&again);
    return 0;
}
