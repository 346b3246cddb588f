/*
 * lib/vm/format/descriptor.c - the disk descriptor DISK.vmdk (schema in
 * descriptor.h): VMware's descriptor style with one FLAT extent and vmenc's
 * own vmenc.* entries, including the disk's DEK as a vmwk1 record. The
 * schema is checked field by field on top of the kv parser; an unknown
 * vmenc.* key means a newer writer, so it is refused rather than dropped.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdlib.h>
#include <string.h>

#include "core/fs.h"
#include "vm/format/descriptor.h"
#include "vm/format/schema.h"
#include "vm/format/vmx.h"

#define CIPHER_XTS "aes-xts-plain64"
#define VMENC_PREFIX "vmenc."

#define MAX_SHIFT ((uint64_t)1 << 30)
#define SHIFT_UNIT ((uint64_t)1 << 20)

static const char *const k_known_vmenc_keys[] = {
    "vmenc.version",        "vmenc.diskId",         "vmenc.vmUuid",   "vmenc.capacity",
    "vmenc.sectorSize",     "vmenc.cipher",         "vmenc.state",    "vmenc.keyProvider",
    "vmenc.kekId",          "vmenc.keySafe",        "vmenc.convert.id", "vmenc.convert.segment",
    "vmenc.convert.targetOffset", "vmenc.newKeyProvider", "vmenc.newKekId", "vmenc.newKeySafe",
    "vmenc.kekCheck",       "vmenc.newKekCheck",
};

/* A data offset or conversion shift: 0, or a multiple of 1 MiB up to 1 GiB. */
static bool shift_ok(uint64_t v) { return v <= MAX_SHIFT && v % SHIFT_UNIT == 0; }

/* ---- shared field checks (schema.h) ------------------------------------ */

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

vmenc_status vm_kcv_parse(const char *hex, uint8_t out[VMENC_KEK_CHECK_VALUE_BYTES]) {
    VMENC_ENSURE(hex != NULL && strlen(hex) == 2 * VMENC_KEK_CHECK_VALUE_BYTES, VMENC_E_PARSE);
    for (size_t i = 0; i < VMENC_KEK_CHECK_VALUE_BYTES; i++) {
        int v = 0;
        for (size_t j = 0; j < 2; j++) {
            char c = hex[2 * i + j];
            VMENC_ENSURE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'), VMENC_E_PARSE);
            v = v * 16 + (c <= '9' ? c - '0' : c - 'a' + 10);
        }
        out[i] = (uint8_t)v;
    }
    return VMENC_OK;
}

void vm_kcv_format(const uint8_t kcv[VMENC_KEK_CHECK_VALUE_BYTES], char out[2 * VMENC_KEK_CHECK_VALUE_BYTES + 1]) {
    static const char hexd[] = "0123456789abcdef";
    for (size_t i = 0; i < VMENC_KEK_CHECK_VALUE_BYTES; i++) {
        out[2 * i] = hexd[kcv[i] >> 4];
        out[2 * i + 1] = hexd[kcv[i] & 15];
    }
    out[2 * VMENC_KEK_CHECK_VALUE_BYTES] = '\0';
}

/* parse_kcv reads an optional check value, allowed only beside its key. */
static vmenc_status parse_kcv(const vm_kv *kv, const char *key, bool allowed, bool *has, uint8_t *out) {
    const char *v = vm_kv_get(kv, key);
    *has = false;
    if (v == NULL)
        return VMENC_OK;
    VMENC_ENSURE(allowed, VMENC_E_PARSE);
    VMENC_GUARD(vm_kcv_parse(v, out));
    *has = true;
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
    VMENC_ENSURE(strcmp(e->access, "RW") == 0 && strcmp(e->type, "FLAT") == 0, VMENC_E_PARSE);
    VMENC_ENSURE(e->offset <= MAX_SHIFT / 512 && shift_ok(e->offset * 512), VMENC_E_PARSE);
    d->data_offset = e->offset * 512;
    VMENC_ENSURE(e->sectors == d->capacity / 512, VMENC_E_PARSE);
    return vm_copy_field(d->extent_file, sizeof(d->extent_file), e->file);
}

static const struct {
    const char *name;
    vmenc_disk_state state;
    int old_key; /* the data not yet converted is encrypted */
    int new_key; /* the converted data is encrypted */
} k_states[] = {
    {"plain", VMENC_DISK_PLAIN, 0, 0},           {"encrypted", VMENC_DISK_ENCRYPTED, 1, 0},
    {"encrypting", VMENC_DISK_ENCRYPTING, 0, 1}, {"decrypting", VMENC_DISK_DECRYPTING, 1, 0},
    {"rekeying", VMENC_DISK_REKEYING, 1, 1},
};

static int state_index(vmenc_disk_state st) {
    for (size_t i = 0; i < VMENC_ARRAY_LEN(k_states); i++)
        if (k_states[i].state == st)
            return (int)i;
    return -1;
}

static vmenc_status parse_cipher(const vm_kv *kv, vm_disk_desc *d) {
    const char *cipher = vm_kv_get(kv, "vmenc.cipher");
    const char *state = vm_kv_get(kv, "vmenc.state");
    VMENC_ENSURE(cipher != NULL && state != NULL, VMENC_E_PARSE);
    for (size_t i = 0; i < VMENC_ARRAY_LEN(k_states); i++) {
        if (strcmp(state, k_states[i].name) != 0)
            continue;
        bool any_key = k_states[i].old_key || k_states[i].new_key;
        VMENC_ENSURE(strcmp(cipher, any_key ? CIPHER_XTS : "none") == 0, VMENC_E_PARSE);
        d->state = k_states[i].state;
        d->encrypted = k_states[i].old_key;
        return VMENC_OK;
    }
    return VMENC_E_PARSE;
}

/* parse_conversion: the conversion fields exist exactly while one runs,
 * and describe a shift between the two layouts 0 and S. */
static vmenc_status parse_conversion(const vm_kv *kv, vm_disk_desc *d) {
    const char *id = vm_kv_get(kv, "vmenc.convert.id");
    const char *seg = vm_kv_get(kv, "vmenc.convert.segment");
    const char *target = vm_kv_get(kv, "vmenc.convert.targetOffset");
    if (!vm_disk_desc_converting(d)) {
        VMENC_ENSURE(id == NULL && seg == NULL && target == NULL, VMENC_E_PARSE);
        return VMENC_OK;
    }
    VMENC_GUARD(vm_parse_dec_u64(id, &d->cvt_id));
    VMENC_GUARD(vm_parse_dec_u64(seg, &d->cvt_segment));
    VMENC_GUARD(vm_parse_dec_u64(target, &d->cvt_target_offset));
    VMENC_ENSURE(d->cvt_segment >= SHIFT_UNIT && shift_ok(d->cvt_segment) && d->cvt_segment % d->sector_size == 0,
                 VMENC_E_PARSE);
    /* one of the two layouts is at 0, the other at the shift */
    VMENC_ENSURE((d->data_offset == 0 && d->cvt_target_offset == d->cvt_segment) ||
                     (d->data_offset == d->cvt_segment && d->cvt_target_offset == 0),
                 VMENC_E_PARSE);
    return VMENC_OK;
}

/* parse_key_triple reads provider, KEK ID and wrapped key under |prefix|
 * ("vmenc." or "vmenc.new"), present iff |want|. */
static vmenc_status parse_key_triple(const vm_kv *kv, const char *provider_key, const char *kek_key,
                                     const char *safe_key, bool want, char *provider, size_t provider_cap,
                                     char *kek, size_t kek_cap, vmenc_wrapped_key **out) {
    const char *provider_v = vm_kv_get(kv, provider_key);
    const char *kek_v = vm_kv_get(kv, kek_key);
    const char *safe_v = vm_kv_get(kv, safe_key);
    if (!want) {
        VMENC_ENSURE(provider_v == NULL && kek_v == NULL && safe_v == NULL, VMENC_E_PARSE);
        return VMENC_OK;
    }
    VMENC_GUARD(vm_copy_field(provider, provider_cap, provider_v));
    VMENC_GUARD(vm_copy_field(kek, kek_cap, kek_v));
    VMENC_ENSURE(provider[0] != '\0' && kek[0] != '\0', VMENC_E_PARSE);
    VMENC_GUARD(vm_key_safe_parse(safe_v, out));
    VMENC_ENSURE(strcmp(vmenc_wrapped_key_provider_alias(*out), provider) == 0 &&
                     strcmp(vmenc_wrapped_key_kek_id(*out), kek) == 0,
                 VMENC_E_KEY_MISMATCH);
    return VMENC_OK;
}

/* parse_keys: an encrypted disk names its provider and KEK and carries the
 * wrapped DEK, and the plain names must be the record's own (a descriptor
 * edited to point at another KEK is refused here, before any fetch). A
 * conversion to an encrypted form carries the new key the same way. */
static vmenc_status parse_keys(const vm_kv *kv, vm_disk_desc *d) {
    int si = state_index(d->state);
    VMENC_ENSURE(si >= 0, VMENC_E_PARSE);
    VMENC_GUARD(parse_key_triple(kv, "vmenc.keyProvider", "vmenc.kekId", "vmenc.keySafe", k_states[si].old_key,
                                 d->key_provider, sizeof(d->key_provider), d->kek_id, sizeof(d->kek_id),
                                 &d->key_safe));
    VMENC_GUARD(parse_key_triple(kv, "vmenc.newKeyProvider", "vmenc.newKekId", "vmenc.newKeySafe",
                                 k_states[si].new_key, d->new_key_provider, sizeof(d->new_key_provider),
                                 d->new_kek_id, sizeof(d->new_kek_id), &d->new_key_safe));
    VMENC_GUARD(parse_kcv(kv, "vmenc.kekCheck", k_states[si].old_key, &d->has_kek_check, d->kek_check));
    return parse_kcv(kv, "vmenc.newKekCheck", k_states[si].new_key, &d->has_new_kek_check, d->new_kek_check);
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
    VMENC_GUARD(parse_conversion(kv, d));
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

static vmenc_status key_triple_check(const char *provider, size_t provider_cap, const char *kek, size_t kek_cap,
                                     const vmenc_wrapped_key *wk, bool want) {
    if (!want)
        return wk == NULL ? VMENC_OK : VMENC_E_INVALID_ARG;
    VMENC_ENSURE(wk != NULL && memchr(provider, '\0', provider_cap) != NULL && memchr(kek, '\0', kek_cap) != NULL,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(provider[0] != '\0' && kek[0] != '\0', VMENC_E_INVALID_ARG);
    VMENC_ENSURE(strcmp(vmenc_wrapped_key_provider_alias(wk), provider) == 0 &&
                     strcmp(vmenc_wrapped_key_kek_id(wk), kek) == 0,
                 VMENC_E_KEY_MISMATCH);
    return VMENC_OK;
}

static vmenc_status desc_check(const vm_disk_desc *d) {
    VMENC_ENSURE(vm_disk_id_check(d->disk_id) == VMENC_OK && vm_uuid_check(d->vm_uuid) == VMENC_OK,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(d->sector_size == 512 || d->sector_size == 4096, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(d->capacity > 0 && d->capacity <= VMENC_DISK_MAX_CAPACITY &&
                     d->capacity % d->sector_size == 0,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(vmenc_fs_name_check(d->extent_file) == VMENC_OK, VMENC_E_BAD_PATH);
    VMENC_ENSURE(shift_ok(d->data_offset), VMENC_E_INVALID_ARG);
    int si = state_index(d->state);
    VMENC_ENSURE(si >= 0 && (d->encrypted != 0) == (k_states[si].old_key != 0), VMENC_E_INVALID_ARG);
    if (vm_disk_desc_converting(d))
        VMENC_ENSURE(d->cvt_segment >= SHIFT_UNIT && shift_ok(d->cvt_segment) &&
                         d->cvt_segment % d->sector_size == 0 &&
                         ((d->data_offset == 0 && d->cvt_target_offset == d->cvt_segment) ||
                          (d->data_offset == d->cvt_segment && d->cvt_target_offset == 0)),
                     VMENC_E_INVALID_ARG);
    VMENC_GUARD(key_triple_check(d->key_provider, sizeof(d->key_provider), d->kek_id, sizeof(d->kek_id),
                                 d->key_safe, k_states[si].old_key));
    return key_triple_check(d->new_key_provider, sizeof(d->new_key_provider), d->new_kek_id,
                            sizeof(d->new_kek_id), d->new_key_safe, k_states[si].new_key);
}

static vmenc_status add_key_triple(vm_kv *kv, const char *provider_key, const char *kek_key, const char *safe_key,
                                   const char *provider, const char *kek, const vmenc_wrapped_key *wk) {
    VMENC_GUARD(vm_kv_set(kv, provider_key, provider));
    VMENC_GUARD(vm_kv_set(kv, kek_key, kek));
    char *text = NULL;
    VMENC_GUARD(vmenc_wrapped_key_to_text(wk, &text));
    vmenc_status rv = vm_kv_set(kv, safe_key, text);
    vmenc_buffer_free(text);
    return rv;
}

static vmenc_status build_desc(const vm_disk_desc *d, vm_kv *kv) {
    char num[21];
    VMENC_GUARD(vm_kv_add_comment(kv, "Disk DescriptorFile"));
    VMENC_GUARD(vm_kv_set(kv, "version", "1"));
    VMENC_GUARD(vm_kv_set(kv, "encoding", "UTF-8"));
    VMENC_GUARD(vm_kv_set(kv, "createType", "vmenc-flat"));
    VMENC_GUARD(vm_kv_add_comment(kv, "Extent description"));
    vm_kv_extent e = {.access = "RW", .sectors = d->capacity / 512, .type = "FLAT",
                      .offset = d->data_offset / 512};
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
    int si = state_index(d->state);
    bool any_key = k_states[si].old_key || k_states[si].new_key;
    VMENC_GUARD(vm_kv_set(kv, "vmenc.cipher", any_key ? CIPHER_XTS : "none"));
    VMENC_GUARD(vm_kv_set(kv, "vmenc.state", k_states[si].name));
    if (vm_disk_desc_converting(d)) {
        vm_format_u64(d->cvt_id, num);
        VMENC_GUARD(vm_kv_set(kv, "vmenc.convert.id", num));
        vm_format_u64(d->cvt_segment, num);
        VMENC_GUARD(vm_kv_set(kv, "vmenc.convert.segment", num));
        vm_format_u64(d->cvt_target_offset, num);
        VMENC_GUARD(vm_kv_set(kv, "vmenc.convert.targetOffset", num));
    }
    char hex[2 * VMENC_KEK_CHECK_VALUE_BYTES + 1];
    if (k_states[si].old_key) {
        VMENC_GUARD(add_key_triple(kv, "vmenc.keyProvider", "vmenc.kekId", "vmenc.keySafe", d->key_provider,
                                   d->kek_id, d->key_safe));
        if (d->has_kek_check) {
            vm_kcv_format(d->kek_check, hex);
            VMENC_GUARD(vm_kv_set(kv, "vmenc.kekCheck", hex));
        }
    }
    if (k_states[si].new_key) {
        VMENC_GUARD(add_key_triple(kv, "vmenc.newKeyProvider", "vmenc.newKekId", "vmenc.newKeySafe",
                                   d->new_key_provider, d->new_kek_id, d->new_key_safe));
        if (d->has_new_kek_check) {
            vm_kcv_format(d->new_kek_check, hex);
            VMENC_GUARD(vm_kv_set(kv, "vmenc.newKekCheck", hex));
        }
    }
    return VMENC_OK;
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
    vmenc_wrapped_key_free(d->new_key_safe);
    memset(d, 0, sizeof(*d));
}
