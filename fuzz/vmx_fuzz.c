/*
 * fuzz/vmx_fuzz.c - the .vmx parser (and the key = "value" layer under
 * it) with a round-trip oracle: the canonical text of anything that parses
 * must parse again to the same fields and the same text, and syncing the
 * parsed struct back into its kv must change nothing. Also the sealed
 * entries' values that steer (docs/vm-format.md "Sealed steering facts"):
 * a vmenc.disk.<id> value that parses formats back to the same bytes.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vm/format/sealed.h"
#include "vm/format/vmx.h"

static uint8_t *serialize_or_die(const vm_kv *kv, size_t *len) {
    uint8_t *out = NULL;
    if (vm_kv_serialize(kv, &out, len) != VMENC_OK)
        abort();
    return out;
}

/* kv_round_trip: canonical text is a fixed point of parse + serialise. */
static void kv_round_trip(const uint8_t *data, size_t size) {
    vm_kv *kv = NULL, *again = NULL;
    if (vm_kv_parse(data, size, &kv) != VMENC_OK) {
        if (kv != NULL)
            abort();
        return;
    }
    size_t len = 0, len2 = 0;
    uint8_t *text = serialize_or_die(kv, &len);
    if (vm_kv_parse(text, len, &again) != VMENC_OK)
        abort();
    uint8_t *text2 = serialize_or_die(again, &len2);
    if (len != len2 || memcmp(text, text2, len) != 0 || vm_kv_num_entries(kv) != vm_kv_num_entries(again) ||
        vm_kv_num_extents(kv) != vm_kv_num_extents(again))
        abort();
    free(text);
    free(text2);
    vm_kv_free(kv);
    vm_kv_free(again);
}

static void same_fields(const vm_vmx *a, const vm_vmx *b) {
    if (strcmp(a->name, b->name) != 0 || strcmp(a->uuid, b->uuid) != 0 || a->memory_bytes != b->memory_bytes ||
        strcmp(a->storage_policy, b->storage_policy) != 0 || a->num_disks != b->num_disks ||
        (a->key_safe == NULL) != (b->key_safe == NULL) || (a->sealed_data == NULL) != (b->sealed_data == NULL))
        abort();
    for (size_t i = 0; i < a->num_disks; i++)
        if (strcmp(a->disks[i].disk_id, b->disks[i].disk_id) != 0 ||
            strcmp(a->disks[i].file_name, b->disks[i].file_name) != 0)
            abort();
    if (a->sealed_data != NULL && strcmp(a->sealed_data, b->sealed_data) != 0)
        abort();
}

static void vmx_round_trip(const uint8_t *data, size_t size) {
    vm_vmx v, again;
    if (vm_vmx_parse(data, size, &v) != VMENC_OK)
        return;
    size_t len = 0, len2 = 0;
    uint8_t *text = serialize_or_die(v.kv, &len);
    if (vm_vmx_parse(text, len, &again) != VMENC_OK)
        abort();
    same_fields(&v, &again);
    /* Writing the unchanged fields back is the identity. */
    if (vm_vmx_sync(&again, again.sealed_data) != VMENC_OK)
        abort();
    uint8_t *text2 = serialize_or_die(again.kv, &len2);
    if (len != len2 || memcmp(text, text2, len) != 0)
        abort();
    free(text);
    free(text2);
    vm_vmx_cleanup(&v);
    vm_vmx_cleanup(&again);
}

/* sealed_disk_round_trip: the input (up to a NUL) as a sealed disk value. */
static void sealed_disk_round_trip(const uint8_t *data, size_t size) {
    char value[1024], again[1024];
    size_t n = size < sizeof(value) - 1 ? size : sizeof(value) - 1;
    memcpy(value, data, n);
    value[n] = '\0';
    vm_sealed_disk d;
    if (vm_sealed_disk_parse(value, &d) != VMENC_OK)
        return;
    if (vm_sealed_disk_format(&d, again, sizeof(again)) != VMENC_OK || strcmp(value, again) != 0)
        abort();
    if (d.has_next && !d.has_geometry)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kv_round_trip(data, size);
    sealed_disk_round_trip(data, size);
    vmx_round_trip(data, size);
    /* The sealed outer form on its own. */
    (void)vm_sealed_decode_outer((const char *)data, size);
    return 0;
}
