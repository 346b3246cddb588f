/*
 * lib/vm/format/vmx.c - the VM configuration NAME.vmx (schema in vmx.h).
 * Every entry stays in the kv, so entries vmenc does not know survive a
 * rewrite; the struct holds the fields vmenc acts on, and vm_vmx_sync
 * writes them back. The encryption.* and vmenc.* namespaces belong to
 * vmenc: an unknown key there is refused.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/fs.h"
#include "vm/format/descriptor.h"
#include "vm/format/schema.h"
#include "vm/format/sealed.h"
#include "vm/format/vmx.h"

#define MIB ((uint64_t)1 << 20)
/* 16 TiB of guest memory: far above any host, far below overflow. */
#define MEM_MIB_MAX ((uint64_t)1 << 24)
#define DISK_KEY_MAX 32u

static const char *const k_vmenc_keys[] = {"vmenc.version", "vmenc.uuid", "vmenc.storagePolicy",
                                           "vmenc.applyingPolicy"};
static const char *const k_encryption_keys[] = {"encryption.keySafe", "encryption.data", "encryption.kekCheck",
                                                "encryption.newKeySafe"};

vmenc_status vm_vm_name_check(const char *name) {
    VMENC_ENSURE(name != NULL && strlen(name) <= VMENC_VM_NAME_MAX, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(vmenc_fs_name_check(name) == VMENC_OK, VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

/* ---- disks: "scsiB:U.<suffix>" ----------------------------------------------- */

/* split_disk_key: if |key| is "scsiB:U.<suffix>" with a colon (a device,
 * not a controller like "scsi0.virtualDev"), copy "scsiB:U" to |id| and
 * point |*suffix| past the dot. Returns false for other keys; VMENC_E_PARSE
 * through |*rv| for a device ID vmenc cannot represent. */
static bool split_disk_key(const char *key, char id[VMENC_DISK_ID_MAX + 1], const char **suffix,
                           vmenc_status *rv) {
    *rv = VMENC_OK;
    if (strncmp(key, "scsi", 4) != 0)
        return false;
    const char *dot = strchr(key, '.');
    const char *colon = strchr(key, ':');
    if (dot == NULL || colon == NULL || colon > dot)
        return false;
    size_t id_len = (size_t)(dot - key);
    if (id_len > VMENC_DISK_ID_MAX) {
        *rv = VMENC_E_PARSE;
        return true;
    }
    memcpy(id, key, id_len);
    id[id_len] = '\0';
    if (vm_disk_id_check(id) != VMENC_OK)
        *rv = VMENC_E_PARSE;
    *suffix = dot + 1;
    return true;
}

static vmenc_status disk_key(const char *id, const char *suffix, char out[DISK_KEY_MAX]) {
    size_t a = strlen(id), b = strlen(suffix);
    VMENC_ENSURE(a + 1 + b < DISK_KEY_MAX, VMENC_E_INTERNAL);
    memcpy(out, id, a);
    out[a] = '.';
    memcpy(out + a + 1, suffix, b + 1);
    return VMENC_OK;
}

static bool find_disk(const vm_vmx *v, const char *id) {
    for (size_t i = 0; i < v->num_disks; i++)
        if (strcmp(v->disks[i].disk_id, id) == 0)
            return true;
    return false;
}

static vmenc_status parse_present(const char *value, bool *out) {
    VMENC_ENSURE(value != NULL, VMENC_E_PARSE);
    if (strcasecmp(value, "TRUE") == 0)
        *out = true;
    else if (strcasecmp(value, "FALSE") == 0)
        *out = false;
    else
        return VMENC_E_PARSE;
    return VMENC_OK;
}

/* add_disk records disk |id| once, at its first entry, if present. */
static vmenc_status add_disk(vm_vmx *v, const char *id) {
    if (find_disk(v, id))
        return VMENC_OK;
    char key[DISK_KEY_MAX];
    bool present = false;
    VMENC_GUARD(disk_key(id, "present", key));
    const char *pv = vm_kv_get(v->kv, key);
    if (pv == NULL)
        return VMENC_OK; /* a device with no present entry is not attached */
    VMENC_GUARD(parse_present(pv, &present));
    if (!present)
        return VMENC_OK;
    VMENC_ENSURE(v->num_disks < VMENC_VM_MAX_DISKS, VMENC_E_TOO_LARGE);
    VMENC_GUARD(disk_key(id, "fileName", key));
    const char *file = vm_kv_get(v->kv, key);
    VMENC_ENSURE(file != NULL, VMENC_E_PARSE);
    VMENC_GUARD(vmenc_fs_name_check(file));
    vm_vmx_disk *d = &v->disks[v->num_disks];
    VMENC_GUARD(vm_copy_field(d->disk_id, sizeof(d->disk_id), id));
    VMENC_GUARD(vm_copy_field(d->file_name, sizeof(d->file_name), file));
    v->num_disks++;
    return VMENC_OK;
}

/* disk_bit numbers the 64 possible disk IDs, so each is looked at once
 * (a hostile file with thousands of scsi entries stays linear). */
static uint64_t disk_bit(const char *id) {
    unsigned bus = (unsigned)(id[4] - '0');
    unsigned unit = id[7] == '\0' ? (unsigned)(id[6] - '0') : 10u + (unsigned)(id[7] - '0');
    return (uint64_t)1 << (bus * 16u + unit);
}

static vmenc_status parse_disks(vm_vmx *v) {
    uint64_t seen = 0;
    for (size_t i = 0; i < vm_kv_num_entries(v->kv); i++) {
        const char *key = NULL, *suffix = NULL;
        char id[VMENC_DISK_ID_MAX + 1];
        vmenc_status rv;
        vm_kv_entry(v->kv, i, &key, NULL);
        if (!split_disk_key(key, id, &suffix, &rv))
            continue;
        VMENC_GUARD(rv);
        if (seen & disk_bit(id))
            continue;
        seen |= disk_bit(id);
        VMENC_GUARD(add_disk(v, id));
    }
    return VMENC_OK;
}

/* ---- fields --------------------------------------------------------------------- */

static vmenc_status parse_identity(vm_vmx *v) {
    const char *enc = vm_kv_get(v->kv, ".encoding");
    VMENC_ENSURE(enc != NULL && strcmp(enc, "UTF-8") == 0, VMENC_E_PARSE);
    VMENC_ENSURE(vm_kv_get(v->kv, "config.version") != NULL, VMENC_E_PARSE);
    VMENC_GUARD(vm_known_keys_check(v->kv, "vmenc.", k_vmenc_keys, VMENC_ARRAY_LEN(k_vmenc_keys)));
    VMENC_GUARD(vm_known_keys_check(v->kv, "encryption.", k_encryption_keys, VMENC_ARRAY_LEN(k_encryption_keys)));
    const char *version = vm_kv_get(v->kv, "vmenc.version");
    VMENC_ENSURE(version != NULL, VMENC_E_PARSE);
    VMENC_ENSURE(strcmp(version, "1") == 0, VMENC_E_BAD_VERSION);
    const char *name = vm_kv_get(v->kv, "displayName");
    const char *uuid = vm_kv_get(v->kv, "vmenc.uuid");
    VMENC_ENSURE(vm_vm_name_check(name) == VMENC_OK && vm_uuid_check(uuid) == VMENC_OK, VMENC_E_PARSE);
    VMENC_GUARD(vm_copy_field(v->name, sizeof(v->name), name));
    VMENC_GUARD(vm_copy_field(v->uuid, sizeof(v->uuid), uuid));
    uint64_t mib = 0;
    VMENC_GUARD(vm_parse_dec_u64(vm_kv_get(v->kv, "memSize"), &mib));
    VMENC_ENSURE(mib >= 1 && mib <= MEM_MIB_MAX, VMENC_E_PARSE);
    v->memory_bytes = mib * MIB;
    const char *policy = vm_kv_get(v->kv, "vmenc.storagePolicy");
    if (policy != NULL) {
        VMENC_ENSURE(policy[0] != '\0', VMENC_E_PARSE);
        VMENC_GUARD(vm_copy_field(v->storage_policy, sizeof(v->storage_policy), policy));
    }
    const char *applying = vm_kv_get(v->kv, "vmenc.applyingPolicy");
    if (applying != NULL) {
        VMENC_ENSURE(applying[0] != '\0', VMENC_E_PARSE);
        VMENC_GUARD(vm_copy_field(v->applying_policy, sizeof(v->applying_policy), applying));
    }
    return VMENC_OK;
}

/* parse_encryption: encryption.data without encryption.keySafe has no key
 * to open it with; keySafe alone is an encrypted VM without secrets. */
static vmenc_status parse_encryption(vm_vmx *v) {
    const char *key_safe = vm_kv_get(v->kv, "encryption.keySafe");
    const char *data = vm_kv_get(v->kv, "encryption.data");
    const char *kcv = vm_kv_get(v->kv, "encryption.kekCheck");
    const char *new_key_safe = vm_kv_get(v->kv, "encryption.newKeySafe");
    if (key_safe == NULL) {
        VMENC_ENSURE(data == NULL && kcv == NULL && new_key_safe == NULL, VMENC_E_PARSE);
        return VMENC_OK;
    }
    VMENC_GUARD(vm_key_safe_parse(key_safe, &v->key_safe));
    if (new_key_safe != NULL)
        VMENC_GUARD(vm_key_safe_parse(new_key_safe, &v->new_key_safe));
    if (kcv != NULL) {
        VMENC_GUARD(vm_kcv_parse(kcv, v->kek_check));
        v->has_kek_check = true;
    }
    if (data != NULL) {
        VMENC_GUARD(vm_sealed_decode_outer(data, strlen(data)));
        v->sealed_data = data;
    }
    return VMENC_OK;
}

vmenc_status vm_vmx_parse(const uint8_t *text, size_t len, vm_vmx *out) {
    VMENC_ENSURE(out != NULL, VMENC_E_INVALID_ARG);
    vm_vmx *v = calloc(1, sizeof(*v));
    VMENC_ENSURE(v != NULL, VMENC_E_NOMEM);
    vmenc_status rv = vm_kv_parse(text, len, &v->kv);
    if (rv == VMENC_OK)
        rv = parse_identity(v);
    if (rv == VMENC_OK)
        rv = parse_disks(v);
    if (rv == VMENC_OK)
        rv = parse_encryption(v);
    if (rv == VMENC_OK)
        *out = *v;
    else
        vm_vmx_cleanup(v);
    free(v);
    return rv;
}

/* ---- sync ---------------------------------------------------------------------- */

static vmenc_status set_default(vm_kv *kv, const char *key, const char *value) {
    return vm_kv_get(kv, key) != NULL ? VMENC_OK : vm_kv_set(kv, key, value);
}

static vmenc_status remove_if_present(vm_kv *kv, const char *key) {
    vmenc_status rv = vm_kv_remove(kv, key);
    return rv == VMENC_E_NOT_FOUND ? VMENC_OK : rv;
}

/* drop_removed_disks deletes every scsiB:U.* entry of a disk that is
 * attached in the kv (present TRUE) but no longer in the struct's list. */
static vmenc_status drop_removed_disks(vm_vmx *v) {
    size_t i = 0;
    while (i < vm_kv_num_entries(v->kv)) {
        const char *key = NULL, *suffix = NULL;
        char id[VMENC_DISK_ID_MAX + 1], present_key[DISK_KEY_MAX];
        vmenc_status rv;
        bool present = false;
        vm_kv_entry(v->kv, i, &key, NULL);
        if (split_disk_key(key, id, &suffix, &rv) && rv == VMENC_OK && !find_disk(v, id) &&
            disk_key(id, "present", present_key) == VMENC_OK &&
            parse_present(vm_kv_get(v->kv, present_key), &present) == VMENC_OK && present &&
            strcmp(suffix, "present") != 0) {
            VMENC_GUARD(vm_kv_remove(v->kv, key));
            continue;
        }
        i++;
    }
    /* The present entries go last: the loop above needs them to decide. */
    for (i = 0; i < vm_kv_num_entries(v->kv);) {
        const char *key = NULL, *value = NULL, *suffix = NULL;
        char id[VMENC_DISK_ID_MAX + 1];
        vmenc_status rv;
        bool present = false;
        vm_kv_entry(v->kv, i, &key, &value);
        if (split_disk_key(key, id, &suffix, &rv) && rv == VMENC_OK && !find_disk(v, id) &&
            strcmp(suffix, "present") == 0 && parse_present(value, &present) == VMENC_OK && present) {
            VMENC_GUARD(vm_kv_remove(v->kv, key));
            continue;
        }
        i++;
    }
    return VMENC_OK;
}

static vmenc_status sync_disks(vm_vmx *v) {
    VMENC_ENSURE(v->num_disks <= VMENC_VM_MAX_DISKS, VMENC_E_INVALID_ARG);
    for (size_t i = 0; i < v->num_disks; i++) {
        const vm_vmx_disk *d = &v->disks[i];
        VMENC_ENSURE(memchr(d->disk_id, '\0', sizeof(d->disk_id)) != NULL, VMENC_E_INVALID_ARG);
        VMENC_ENSURE(vm_disk_id_check(d->disk_id) == VMENC_OK, VMENC_E_INVALID_ARG);
        VMENC_ENSURE(vmenc_fs_name_check(d->file_name) == VMENC_OK, VMENC_E_BAD_PATH);
        for (size_t j = 0; j < i; j++)
            VMENC_ENSURE(strcmp(v->disks[j].disk_id, d->disk_id) != 0, VMENC_E_INVALID_ARG);
    }
    VMENC_GUARD(drop_removed_disks(v));
    for (size_t i = 0; i < v->num_disks; i++) {
        char key[DISK_KEY_MAX];
        bool present = false;
        VMENC_GUARD(disk_key(v->disks[i].disk_id, "present", key));
        /* Keep the user's spelling ("true") of an attached disk. */
        if (parse_present(vm_kv_get(v->kv, key), &present) != VMENC_OK || !present)
            VMENC_GUARD(vm_kv_set(v->kv, key, "TRUE"));
        VMENC_GUARD(disk_key(v->disks[i].disk_id, "fileName", key));
        VMENC_GUARD(vm_kv_set(v->kv, key, v->disks[i].file_name));
    }
    return VMENC_OK;
}

static vmenc_status sync_identity(vm_vmx *v) {
    VMENC_ENSURE(memchr(v->name, '\0', sizeof(v->name)) != NULL && vm_vm_name_check(v->name) == VMENC_OK,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(vm_uuid_check(v->uuid) == VMENC_OK, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(v->memory_bytes >= MIB && v->memory_bytes % MIB == 0 && v->memory_bytes / MIB <= MEM_MIB_MAX,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(memchr(v->storage_policy, '\0', sizeof(v->storage_policy)) != NULL, VMENC_E_INVALID_ARG);
    /* A new configuration gets the fixed header entries first, in order. */
    VMENC_GUARD(set_default(v->kv, ".encoding", "UTF-8"));
    VMENC_GUARD(set_default(v->kv, "config.version", "8"));
    VMENC_GUARD(vm_kv_set(v->kv, "displayName", v->name));
    VMENC_GUARD(vm_kv_set(v->kv, "vmenc.version", "1"));
    VMENC_GUARD(vm_kv_set(v->kv, "vmenc.uuid", v->uuid));
    char num[21];
    vm_format_u64(v->memory_bytes / MIB, num);
    VMENC_GUARD(vm_kv_set(v->kv, "memSize", num));
    VMENC_ENSURE(memchr(v->applying_policy, '\0', sizeof(v->applying_policy)) != NULL, VMENC_E_INVALID_ARG);
    if (v->applying_policy[0] == '\0')
        VMENC_GUARD(remove_if_present(v->kv, "vmenc.applyingPolicy"));
    else
        VMENC_GUARD(vm_kv_set(v->kv, "vmenc.applyingPolicy", v->applying_policy));
    if (v->storage_policy[0] == '\0')
        return remove_if_present(v->kv, "vmenc.storagePolicy");
    return vm_kv_set(v->kv, "vmenc.storagePolicy", v->storage_policy);
}

static vmenc_status sync_encryption(vm_vmx *v, const char *sealed_data_text) {
    if (sealed_data_text != NULL) {
        VMENC_ENSURE(v->key_safe != NULL, VMENC_E_INVALID_ARG);
        VMENC_ENSURE(vm_sealed_decode_outer(sealed_data_text, strlen(sealed_data_text)) == VMENC_OK,
                     VMENC_E_INVALID_ARG);
    }
    if (v->key_safe == NULL || !v->has_kek_check) {
        VMENC_GUARD(remove_if_present(v->kv, "encryption.kekCheck"));
    } else {
        char hex[2 * VMENC_KEK_CHECK_VALUE_BYTES + 1];
        vm_kcv_format(v->kek_check, hex);
        VMENC_GUARD(vm_kv_set(v->kv, "encryption.kekCheck", hex));
    }
    if (v->key_safe == NULL) {
        VMENC_GUARD(remove_if_present(v->kv, "encryption.keySafe"));
    } else {
        char *text = NULL;
        VMENC_GUARD(vmenc_wrapped_key_to_text(v->key_safe, &text));
        vmenc_status rv = vm_kv_set(v->kv, "encryption.keySafe", text);
        vmenc_buffer_free(text);
        VMENC_GUARD(rv);
    }
    if (v->new_key_safe == NULL || v->key_safe == NULL) {
        VMENC_GUARD(remove_if_present(v->kv, "encryption.newKeySafe"));
    } else {
        char *text = NULL;
        VMENC_GUARD(vmenc_wrapped_key_to_text(v->new_key_safe, &text));
        vmenc_status rv = vm_kv_set(v->kv, "encryption.newKeySafe", text);
        vmenc_buffer_free(text);
        VMENC_GUARD(rv);
    }
    v->sealed_data = NULL; /* the old value may be freed below */
    if (sealed_data_text == NULL)
        return remove_if_present(v->kv, "encryption.data");
    VMENC_GUARD(vm_kv_set(v->kv, "encryption.data", sealed_data_text));
    v->sealed_data = vm_kv_get(v->kv, "encryption.data");
    return VMENC_OK;
}

vmenc_status vm_vmx_sync(vm_vmx *v, const char *sealed_data_text) {
    VMENC_ENSURE(v != NULL, VMENC_E_INVALID_ARG);
    if (v->kv == NULL)
        VMENC_GUARD(vm_kv_new(&v->kv));
    VMENC_GUARD(sync_identity(v));
    VMENC_GUARD(sync_disks(v));
    return sync_encryption(v, sealed_data_text);
}

void vm_vmx_cleanup(vm_vmx *v) {
    if (v == NULL)
        return;
    vm_kv_free(v->kv);
    vmenc_wrapped_key_free(v->key_safe);
    vmenc_wrapped_key_free(v->new_key_safe);
    memset(v, 0, sizeof(*v));
}
