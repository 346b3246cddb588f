/*
 * lib/vm/descriptor.c - the disk descriptor DISK.vmdk (schema in
 * vm_format.h): VMware's descriptor style with one FLAT extent and vmenc's
 * own vmenc.* entries, including the disk's DEK as a vmwk1 record. The
 * schema is checked field by field on top of the kv parser; an unknown
 * vmenc.* key means a newer writer, so it is refused rather than dropped.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdlib.h>
#include <string.h>

#include "vm/vm_format.h"
#include "vm/vm_schema.h"

#define CIPHER_XTS "aes-xts-plain64"
#define VMENC_PREFIX "vmenc."

static const char *const k_known_vmenc_keys[] = {
    "vmenc.version",  "vmenc.diskId", "vmenc.vmUuid",      "vmenc.capacity", "vmenc.sectorSize",
    "vmenc.cipher",   "vmenc.state",  "vmenc.keyProvider", "vmenc.kekId",    "vmenc.keySafe",
};

/* ---- shared field checks (vm_schema.h) ------------------------------------ */

vmenc_status vm_disk_id_check(const char *disk_id) {
    VMENC_ENSURE(disk_id != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(strncmp(disk_id, "scsi", 4) == 0, VMENC_E_INVALID_ARG);
    const char *p = disk_id + 4;
    VMENC_ENSURE(p[0] >= '0' && p[0] <= '3' && p[1] == ':', VMENC_E_INVALID_ARG);
    p += 2;
    /* 0..15 without leading zeros, so every disk has one spelling. */
    if (p[0] == '1' && p[1] >= '0' && p[1] <= '5')
        p += 2;
    else if (p[0] >= '0' && p[0] <= '9')
        p += 1;
    else
        return VMENC_E_INVALID_ARG;
    VMENC_ENSURE(*p == '\0', VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

vmenc_status vm_uuid_check(const char *uuid) {
    VMENC_ENSURE(uuid != NULL, VMENC_E_INVALID_ARG);
    for (size_t i = 0; i < VMENC_VM_UUID_LEN; i++) {
        char c = uuid[i];
        if (i == 8 || i == 13 || i == 18 || i == 23)
            VMENC_ENSURE(c == '-', VMENC_E_INVALID_ARG);
        else
            VMENC_ENSURE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'), VMENC_E_INVALID_ARG);
    }
    VMENC_ENSURE(uuid[VMENC_VM_UUID_LEN] == '\0', VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

vmenc_status vm_parse_dec_u64(const char *s, uint64_t *out) {
    VMENC_ENSURE(s != NULL && s[0] != '\0', VMENC_E_PARSE);
    VMENC_ENSURE(s[0] != '0' || s[1] == '\0', VMENC_E_PARSE);
    uint64_t v = 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        VMENC_ENSURE(s[i] >= '0' && s[i] <= '9' && i < 20, VMENC_E_PARSE);
        uint64_t d = (uint64_t)(s[i] - '0');
        VMENC_ENSURE(v <= (UINT64_MAX - d) / 10, VMENC_E_PARSE);
        v = v * 10 + d;
    }
    *out = v;
    return VMENC_OK;
}

void vm_format_u64(uint64_t v, char out[21]) {
    char buf[21];
    size_t i = sizeof(buf);
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    memcpy(out, buf + i, sizeof(buf) - i);
    out[sizeof(buf) - i] = '\0';
}

vmenc_status vm_copy_field(char *dst, size_t cap, const char *src) {
    VMENC_ENSURE(src != NULL, VMENC_E_PARSE);
    size_t len = strlen(src);
    VMENC_ENSURE(len < cap, VMENC_E_PARSE);
    memcpy(dst, src, len + 1);
    return VMENC_OK;
}

vmenc_status vm_known_keys_check(const vm_kv *kv, const char *prefix, const char *const *known,
                                 size_t num_known) {
    size_t prefix_len = strlen(prefix);
    for (size_t i = 0; i < vm_kv_num_entries(kv); i++) {
        const char *key = NULL;
        vm_kv_entry(kv, i, &key, NULL);
        if (strncmp(key, prefix, prefix_len) != 0)
            continue;
        bool found = false;
        for (size_t j = 0; j < num_known && !found; j++)
            found = strcmp(key, known[j]) == 0;
        VMENC_ENSURE(found, VMENC_E_PARSE);
    }
    return VMENC_OK;
}

vmenc_status vm_key_safe_parse(const char *text, vmenc_wrapped_key **out) {
    VMENC_ENSURE(text != NULL, VMENC_E_PARSE);
    return vmenc_wrapped_key_parse_text(text, strlen(text), out);
}

/* ---- descriptor ---------------------------------------------------------------- */

static vmenc_status require(const vm_kv *kv, const char *key, const char *want) {
    const char *v = vm_kv_get(kv, key);
    VMENC_ENSURE(v != NULL && strcmp(v, want) == 0, VMENC_E_PARSE);
    return VMENC_OK;
}

/* parse_geometry: capacity, sector size and the one FLAT extent that
 * covers exactly the capacity from offset 0. */
static vmenc_status parse_geometry(const vm_kv *kv, vm_disk_desc *d) {
    uint64_t sector_size = 0;
    VMENC_GUARD(vm_parse_dec_u64(vm_kv_get(kv, "vmenc.capacity"), &d->capacity));
    VMENC_GUARD(vm_parse_dec_u64(vm_kv_get(kv, "vmenc.sectorSize"), &sector_size));
    VMENC_ENSURE(sector_size == 512 || sector_size == 4096, VMENC_E_PARSE);
    d->sector_size = (uint32_t)sector_size;
    VMENC_ENSURE(d->capacity > 0 && d->capacity <= VMENC_DISK_MAX_CAPACITY, VMENC_E_PARSE);
    VMENC_ENSURE(d->capacity % d->sector_size == 0, VMENC_E_PARSE);
    VMENC_ENSURE(vm_kv_num_extents(kv) == 1, VMENC_E_PARSE);
    const vm_kv_extent *e = vm_kv_get_extent(kv, 0);
    VMENC_ENSURE(strcmp(e->access, "RW") == 0 && strcmp(e->type, "FLAT") == 0 && e->offset == 0,
                 VMENC_E_PARSE);
    VMENC_ENSURE(e->sectors == d->capacity / 512, VMENC_E_PARSE);
    return vm_copy_field(d->extent_file, sizeof(d->extent_file), e->file);
}

static vmenc_status parse_cipher(const vm_kv *kv, vm_disk_desc *d) {
    const char *cipher = vm_kv_get(kv, "vmenc.cipher");
    const char *state = vm_kv_get(kv, "vmenc.state");
    VMENC_ENSURE(cipher != NULL && state != NULL, VMENC_E_PARSE);
    if (strcmp(cipher, CIPHER_XTS) == 0 && strcmp(state, "encrypted") == 0) {
        d->encrypted = 1;
        d->state = VMENC_DISK_ENCRYPTED;
    } else if (strcmp(cipher, "none") == 0 && strcmp(state, "plain") == 0) {
        d->encrypted = 0;
        d->state = VMENC_DISK_PLAIN;
    } else {
        return VMENC_E_PARSE;
    }
    return VMENC_OK;
}

/* parse_keys: an encrypted disk names its provider and KEK and carries the
 * wrapped DEK, and the plain names must be the record's own (a descriptor
 * edited to point at another KEK is refused here, before any fetch). */
static vmenc_status parse_keys(const vm_kv *kv, vm_disk_desc *d) {
    const char *provider = vm_kv_get(kv, "vmenc.keyProvider");
    const char *kek_id = vm_kv_get(kv, "vmenc.kekId");
    const char *key_safe = vm_kv_get(kv, "vmenc.keySafe");
    if (!d->encrypted) {
        VMENC_ENSURE(provider == NULL && kek_id == NULL && key_safe == NULL, VMENC_E_PARSE);
        return VMENC_OK;
    }
    VMENC_GUARD(vm_copy_field(d->key_provider, sizeof(d->key_provider), provider));
    VMENC_GUARD(vm_copy_field(d->kek_id, sizeof(d->kek_id), kek_id));
    VMENC_ENSURE(d->key_provider[0] != '\0' && d->kek_id[0] != '\0', VMENC_E_PARSE);
    VMENC_GUARD(vm_key_safe_parse(key_safe, &d->key_safe));
    VMENC_ENSURE(strcmp(vmenc_wrapped_key_provider_alias(d->key_safe), d->key_provider) == 0 &&
                     strcmp(vmenc_wrapped_key_kek_id(d->key_safe), d->kek_id) == 0,
                 VMENC_E_KEY_MISMATCH);
    return VMENC_OK;
}

static vmenc_status parse_desc(const vm_kv *kv, vm_disk_desc *d) {
    VMENC_GUARD(require(kv, "version", "1"));
    VMENC_GUARD(require(kv, "encoding", "UTF-8"));
    VMENC_GUARD(require(kv, "createType", "vmenc-flat"));
    VMENC_GUARD(vm_known_keys_check(kv, VMENC_PREFIX, k_known_vmenc_keys, VMENC_ARRAY_LEN(k_known_vmenc_keys)));
    const char *version = vm_kv_get(kv, "vmenc.version");
    VMENC_ENSURE(version != NULL, VMENC_E_PARSE);
    VMENC_ENSURE(strcmp(version, "1") == 0, VMENC_E_BAD_VERSION);
    const char *disk_id = vm_kv_get(kv, "vmenc.diskId");
    const char *uuid = vm_kv_get(kv, "vmenc.vmUuid");
    VMENC_ENSURE(vm_disk_id_check(disk_id) == VMENC_OK && vm_uuid_check(uuid) == VMENC_OK, VMENC_E_PARSE);
    VMENC_GUARD(vm_copy_field(d->disk_id, sizeof(d->disk_id), disk_id));
    VMENC_GUARD(vm_copy_field(d->vm_uuid, sizeof(d->vm_uuid), uuid));
    VMENC_GUARD(parse_geometry(kv, d));
    VMENC_GUARD(parse_cipher(kv, d));
    return parse_keys(kv, d);
}

vmenc_status vm_disk_desc_parse(const uint8_t *text, size_t len, vm_disk_desc *out) {
    VMENC_ENSURE(out != NULL, VMENC_E_INVALID_ARG);
    vm_kv *kv = NULL;
    VMENC_GUARD(vm_kv_parse(text, len, &kv));
    vm_disk_desc d;
    memset(&d, 0, sizeof(d));
    vmenc_status rv = parse_desc(kv, &d);
    vm_kv_free(kv);
    if (rv != VMENC_OK) {
        vm_disk_desc_cleanup(&d);
        return rv;
    }
    *out = d;
    return VMENC_OK;
}

/* ---- serialiser ------------------------------------------------------------------ */

static vmenc_status desc_check(const vm_disk_desc *d) {
    VMENC_ENSURE(vm_disk_id_check(d->disk_id) == VMENC_OK && vm_uuid_check(d->vm_uuid) == VMENC_OK,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(d->sector_size == 512 || d->sector_size == 4096, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(d->capacity > 0 && d->capacity <= VMENC_DISK_MAX_CAPACITY &&
                     d->capacity % d->sector_size == 0,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(vm_file_name_check(d->extent_file) == VMENC_OK, VMENC_E_BAD_PATH);
    bool enc_state = d->state == VMENC_DISK_ENCRYPTED;
    VMENC_ENSURE((d->encrypted != 0) == enc_state, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(d->state == VMENC_DISK_ENCRYPTED || d->state == VMENC_DISK_PLAIN, VMENC_E_INVALID_ARG);
    if (!d->encrypted) {
        VMENC_ENSURE(d->key_safe == NULL, VMENC_E_INVALID_ARG);
        return VMENC_OK;
    }
    VMENC_ENSURE(d->key_safe != NULL && d->key_provider[0] != '\0' && d->kek_id[0] != '\0',
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(memchr(d->key_provider, '\0', sizeof(d->key_provider)) != NULL &&
                     memchr(d->kek_id, '\0', sizeof(d->kek_id)) != NULL,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(strcmp(vmenc_wrapped_key_provider_alias(d->key_safe), d->key_provider) == 0 &&
                     strcmp(vmenc_wrapped_key_kek_id(d->key_safe), d->kek_id) == 0,
                 VMENC_E_KEY_MISMATCH);
    return VMENC_OK;
}

static vmenc_status build_desc(const vm_disk_desc *d, vm_kv *kv) {
    char num[21];
    VMENC_GUARD(vm_kv_add_comment(kv, "Disk DescriptorFile"));
    VMENC_GUARD(vm_kv_set(kv, "version", "1"));
    VMENC_GUARD(vm_kv_set(kv, "encoding", "UTF-8"));
    VMENC_GUARD(vm_kv_set(kv, "createType", "vmenc-flat"));
    VMENC_GUARD(vm_kv_add_comment(kv, "Extent description"));
    vm_kv_extent e = {.access = "RW", .sectors = d->capacity / 512, .type = "FLAT", .offset = 0};
    memcpy(e.file, d->extent_file, strlen(d->extent_file) + 1);
    VMENC_GUARD(vm_kv_add_extent(kv, &e));
    VMENC_GUARD(vm_kv_add_comment(kv, "vmenc"));
    VMENC_GUARD(vm_kv_set(kv, "vmenc.version", "1"));
    VMENC_GUARD(vm_kv_set(kv, "vmenc.diskId", d->disk_id));
    VMENC_GUARD(vm_kv_set(kv, "vmenc.vmUuid", d->vm_uuid));
    vm_format_u64(d->capacity, num);
    VMENC_GUARD(vm_kv_set(kv, "vmenc.capacity", num));
    vm_format_u64(d->sector_size, num);
    VMENC_GUARD(vm_kv_set(kv, "vmenc.sectorSize", num));
    VMENC_GUARD(vm_kv_set(kv, "vmenc.cipher", d->encrypted ? CIPHER_XTS : "none"));
    VMENC_GUARD(vm_kv_set(kv, "vmenc.state", d->encrypted ? "encrypted" : "plain"));
    if (!d->encrypted)
        return VMENC_OK;
    VMENC_GUARD(vm_kv_set(kv, "vmenc.keyProvider", d->key_provider));
    VMENC_GUARD(vm_kv_set(kv, "vmenc.kekId", d->kek_id));
    char *text = NULL;
    VMENC_GUARD(vmenc_wrapped_key_to_text(d->key_safe, &text));
    vmenc_status rv = vm_kv_set(kv, "vmenc.keySafe", text);
    vmenc_buffer_free(text);
    return rv;
}

vmenc_status vm_disk_desc_serialize(const vm_disk_desc *d, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(d != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(desc_check(d));
    vm_kv *kv = NULL;
    VMENC_GUARD(vm_kv_new(&kv));
    vmenc_status rv = build_desc(d, kv);
    if (rv == VMENC_OK)
        rv = vm_kv_serialize(kv, out, out_len);
    vm_kv_free(kv);
    return rv;
}

void vm_disk_desc_cleanup(vm_disk_desc *d) {
    if (d == NULL)
        return;
    vmenc_wrapped_key_free(d->key_safe);
    memset(d, 0, sizeof(*d));
}
