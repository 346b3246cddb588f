/*
 * lib/vm/vm.c - the VM object: create, open, register, unlock, status and
 * configuration entries. Keys: one VM key (a DEK) per VM wrapped in
 * encryption.keySafe, one DEK per encrypted disk wrapped in its descriptor,
 * each under a KEK fetched through the host's key manager by the ID its
 * record names. A KEK that cannot be fetched leaves the VM locked, not
 * failed, so it can be unlocked when the key provider is back.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vm/vm_internal.h"

#define VMX_MAX_BYTES ((size_t)1 << 20)
#define DESC_MAX_BYTES ((size_t)64 << 10)
#define DEFAULT_MEMORY ((uint64_t)64 << 20)
#define SEALED_DISK_PREFIX "vmenc.disk."
#define CREATE_OPTIONS_V1_SIZE (offsetof(vmenc_vm_create_options, flags) + sizeof(uint32_t))

/* ---- small helpers ---------------------------------------------------------- */

vmenc_status vm_copy_string(char *out, size_t out_cap, const char *src) {
    size_t n = strlen(src);
    if (n >= out_cap) {
        if (out_cap > 0)
            out[0] = '\0';
        return VMENC_E_BUFFER_TOO_SMALL;
    }
    memcpy(out, src, n + 1);
    return VMENC_OK;
}

void vm_wrap_ctx(vmenc_wrap_context *ctx, const char *uuid, const char *disk_id) {
    ctx->struct_size = sizeof(*ctx);
    ctx->vm_uuid = uuid;
    ctx->disk_id = disk_id != NULL ? disk_id : "";
    ctx->purpose = disk_id != NULL ? "disk" : "vm-home";
}

vmenc_status vm_state_file_name(const char *vm_name, vmenc_vm_file_class cls, uint32_t index, char *out,
                                size_t out_cap) {
    int n;
    switch (cls) {
    case VMENC_VM_FILE_NVRAM: n = snprintf(out, out_cap, "%s.nvram", vm_name); break;
    case VMENC_VM_FILE_VMSS: n = snprintf(out, out_cap, "%s.vmss", vm_name); break;
    case VMENC_VM_FILE_VMSN: n = snprintf(out, out_cap, "%s-Snapshot%u.vmsn", vm_name, index); break;
    case VMENC_VM_FILE_VMEM: n = snprintf(out, out_cap, "%s-Snapshot%u.vmem", vm_name, index); break;
    case VMENC_VM_FILE_VSWP: n = snprintf(out, out_cap, "%s.vswp", vm_name); break;
    default: return VMENC_E_INVALID_ARG;
    }
    VMENC_ENSURE(n > 0 && (size_t)n < out_cap, VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

vmenc_status vm_new_wrapped(vmenc_host *host, const char *alias, const char *kek_id, const vmenc_dek *dek,
                            const char *uuid, const char *disk_id, vmenc_wrapped_key **out) {
    vmenc_wrap_context ctx;
    vm_wrap_ctx(&ctx, uuid, disk_id);
    return vm_new_wrapped_ctx(host, alias, kek_id, dek, &ctx, out);
}

vmenc_status vm_new_wrapped_ctx(vmenc_host *host, const char *alias, const char *kek_id, const vmenc_dek *dek,
                                const vmenc_wrap_context *ctx, vmenc_wrapped_key **out) {
    vmenc_wrapped_key *wk = NULL;
    VMENC_GUARD(vmenc_keymgr_wrap_dek(host->keymgr, alias, kek_id, dek, ctx, host->timeout_ms, &wk));
    /* Never commit a record that does not open again to the same DEK: data
     * written under it would be lost. (The key manager also proves the
     * KEK against a fresh fetch; this checks the record end to end.) */
    vmenc_dek *back = NULL;
    vmenc_status s = vmenc_keymgr_unwrap_dek(host->keymgr, wk, ctx, host->timeout_ms, &back);
    if (s == VMENC_OK)
        s = vmenc_dek_equal(dek, back) == VMENC_OK ? VMENC_OK : VMENC_E_ROUNDTRIP;
    else if (s == VMENC_E_AUTH)
        s = VMENC_E_ROUNDTRIP;
    vmenc_dek_free(back);
    if (s != VMENC_OK) {
        vmenc_wrapped_key_free(wk);
        return s;
    }
    *out = wk;
    return VMENC_OK;
}

vmenc_status vm_xts_for_vswp(const vmenc_dek *vm_key, vmenc_xts **out) {
    uint8_t *k = vmenc_secure_alloc(VMENC_DEK_BYTES);
    VMENC_ENSURE(k != NULL, VMENC_E_NOMEM);
    vmenc_status s = vm_derive_key(vm_key, "vswp-xts-data-v1", NULL, 0, k);
    if (s == VMENC_OK)
        s = vm_derive_key(vm_key, "vswp-xts-tweak-v1", NULL, 0, k + 32);
    if (s == VMENC_OK)
        s = vmenc_xts_new(k, VMENC_DEK_BYTES, 4096, out);
    vmenc_secure_free(k);
    return s;
}

vmenc_status vm_new_uuid(char out[VMENC_VM_UUID_LEN + 1]) {
    uint8_t b[16];
    VMENC_GUARD(vmenc_random_bytes(b, sizeof(b)));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, VMENC_VM_UUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
             b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return VMENC_OK;
}

static bool key_unavailable(vmenc_status s) { return vmenc_status_category_of(s) == VMENC_CAT_PROVIDER; }

/* ---- the object ------------------------------------------------------------- */

vmenc_status vm_alloc(vmenc_host *host, const char *home_dir, int dirfd, vmenc_vm **out) {
    vmenc_vm *vm = calloc(1, sizeof(*vm));
    VMENC_ENSURE(vm != NULL, VMENC_E_NOMEM);
    vm->home_dir = strdup(home_dir);
    if (vm->home_dir == NULL) {
        free(vm);
        return VMENC_E_NOMEM;
    }
    atomic_init(&vm->refs, 1);
    pthread_mutex_init(&vm->lock, NULL);
    vm->dirfd = dirfd;
    vm->host = host;
    vm_host_retain(host);
    *out = vm;
    return VMENC_OK;
}

static void vm_drop_keys(vmenc_vm *vm) {
    vmenc_dek_free(vm->vm_key);
    vm->vm_key = NULL;
    vmenc_dek_free(vm->new_vm_key);
    vm->new_vm_key = NULL;
    vm_kv_free(vm->secret);
    vm->secret = NULL;
    for (size_t i = 0; i < vm->num_disks; i++) {
        vmenc_dek_free(vm->disks[i].dek);
        vm->disks[i].dek = NULL;
        vmenc_dek_free(vm->disks[i].new_dek);
        vm->disks[i].new_dek = NULL;
    }
}

static void vm_drop_disks(vmenc_vm *vm) {
    for (size_t i = 0; i < vm->num_disks; i++) {
        vmenc_dek_free(vm->disks[i].dek);
        vmenc_dek_free(vm->disks[i].new_dek);
        vm_disk_desc_cleanup(&vm->disks[i].desc);
    }
    free(vm->disks);
    vm->disks = NULL;
    vm->num_disks = 0;
}

void vm_retain(vmenc_vm *vm) { atomic_fetch_add(&vm->refs, 1); }

void vm_release(vmenc_vm *vm) {
    if (vm == NULL || atomic_fetch_sub(&vm->refs, 1) != 1)
        return;
    if (vm->cluster_owned && vm->host->cluster != NULL)
        vm->host->cluster->release(vm->host->cluster->ctx, vm->vmx.uuid);
    vm_drop_keys(vm);
    vm_drop_disks(vm);
    vm_vmx_cleanup(&vm->vmx);
    free(vm->ctl);
    free(vm->missing);
    if (vm->dirfd >= 0)
        close(vm->dirfd);
    pthread_mutex_destroy(&vm->lock);
    vm_host_release(vm->host);
    free(vm->home_dir);
    free(vm);
}

void vmenc_vm_free(vmenc_vm *vm) { vm_release(vm); }

bool vm_is_encrypted(const vmenc_vm *vm) { return vm->vmx.key_safe != NULL; }

int vm_find_disk(const vmenc_vm *vm, const char *disk_id) {
    for (size_t i = 0; i < vm->num_disks; i++)
        if (strcmp(vm->disks[i].disk_id, disk_id) == 0)
            return (int)i;
    return -1;
}

const char *vmenc_vm_home_dir(const vmenc_vm *vm) { return vm != NULL ? vm->home_dir : NULL; }
const char *vmenc_vm_name(const vmenc_vm *vm) { return vm != NULL ? vm->vmx.name : NULL; }
const char *vmenc_vm_uuid(const vmenc_vm *vm) { return vm != NULL ? vm->vmx.uuid : NULL; }

/* ---- writing the configuration --------------------------------------------- */

bool vm_sealed_encrypted(const vm_disk_desc *d) {
    return d->state == VMENC_DISK_ENCRYPTED || d->state == VMENC_DISK_REKEYING;
}

/* refresh_sealed_disks rewrites the vmenc.disk.* entries of the sealed data
 * from the disk table, so the disk list is authenticated: a disk swapped
 * for a plain one, added or removed behind vmenc's back is detected. */
static vmenc_status refresh_sealed_disks(vmenc_vm *vm) {
    for (;;) {
        bool removed = false;
        for (size_t i = 0; i < vm_kv_num_entries(vm->secret); i++) {
            const char *k, *v;
            vm_kv_entry(vm->secret, i, &k, &v);
            if (strncmp(k, SEALED_DISK_PREFIX, strlen(SEALED_DISK_PREFIX)) == 0) {
                char key[VM_KV_KEY_MAX + 1];
                snprintf(key, sizeof(key), "%s", k);
                VMENC_GUARD(vm_kv_remove(vm->secret, key));
                removed = true;
                break;
            }
        }
        if (!removed)
            break;
    }
    for (size_t i = 0; i < vm->num_disks; i++) {
        char key[64], val[512];
        snprintf(key, sizeof(key), SEALED_DISK_PREFIX "%s", vm->disks[i].disk_id);
        /* with the geometry and the next key record (format/sealed.c) */
        VMENC_GUARD(vm_sealed_disk_value(vm->disks[i].desc_name, &vm->disks[i].desc,
                                         vm_sealed_encrypted(&vm->disks[i].desc), val, sizeof(val)));
        VMENC_GUARD(vm_kv_set(vm->secret, key, val));
    }
    return VMENC_OK;
}

static vmenc_status sync_vmx_disks(vmenc_vm *vm) {
    VMENC_ENSURE(vm->num_disks <= VMENC_VM_MAX_DISKS, VMENC_E_LIMIT);
    vm->vmx.num_disks = vm->num_disks;
    for (size_t i = 0; i < vm->num_disks; i++) {
        snprintf(vm->vmx.disks[i].disk_id, sizeof(vm->vmx.disks[i].disk_id), "%s", vm->disks[i].disk_id);
        snprintf(vm->vmx.disks[i].file_name, sizeof(vm->vmx.disks[i].file_name), "%s", vm->disks[i].desc_name);
    }
    return VMENC_OK;
}

/* kcv_of sets |*has| and |out| to the check value this host knows for the
 * record's KEK; unknown (a KEK that never leaves its HSM, or never fetched
 * here) clears it rather than keep one that may belong to another KEK. */
static void kcv_of(const vmenc_vm *vm, const vmenc_wrapped_key *wk, bool *has, uint8_t *out) {
    *has = wk != NULL && vmenc_keymgr_kek_check_value(vm->host->keymgr, vmenc_wrapped_key_provider_alias(wk),
                                                      vmenc_wrapped_key_kek_id(wk), out,
                                                      VMENC_KEK_CHECK_VALUE_BYTES) == VMENC_OK;
}

/* pin_kcv tells the key manager what a record's KEK must hash to, from the
 * file, so even the first fetch after a restart is checked: a KMS serving
 * other bytes is then VMENC_E_KMS_WRONG_KEY (the VM opens locked) instead of
 * a record that fails to open. A value the manager already knows wins: a
 * file must not override what this host has seen. */
static void pin_kcv(const vmenc_vm *vm, const vmenc_wrapped_key *wk, bool has, const uint8_t *kcv) {
    uint8_t known[VMENC_KEK_CHECK_VALUE_BYTES];
    if (wk == NULL || !has)
        return;
    const char *alias = vmenc_wrapped_key_provider_alias(wk), *id = vmenc_wrapped_key_kek_id(wk);
    if (vmenc_keymgr_kek_check_value(vm->host->keymgr, alias, id, known, sizeof(known)) == VMENC_OK)
        return;
    vmenc_status s = vmenc_keymgr_pin_check_value(vm->host->keymgr, alias, id, kcv, VMENC_KEK_CHECK_VALUE_BYTES);
    (void)s; /* an unknown provider or a full pin table: the fetch goes unpinned, as before */
}

vmenc_status vm_cluster_own(vmenc_vm *vm, char *why, size_t why_cap) {
    const vm_cluster_hooks *h = vm->host->cluster;
    if (h == NULL)
        return VMENC_OK;
    VMENC_GUARD(h->write_ok(h->ctx));
    if (vm->cluster_owned)
        return VMENC_OK;
    char msg[VMENC_LOCK_MESSAGE_MAX] = "";
    vmenc_status s = h->acquire(h->ctx, vm->vmx.uuid, vm->vmx.name, msg, sizeof(msg));
    if (s == VMENC_E_LOCKED) { /* the owning host, for vmenc_vm_get_lock_holder and the caller's reason */
        memset(&vm->lock_holder, 0, sizeof(vm->lock_holder));
        vm->lock_holder.struct_size = sizeof(vm->lock_holder);
        snprintf(vm->lock_holder.message, sizeof(vm->lock_holder.message), "%s", msg);
        vm->has_lock_holder = true;
        if (why != NULL && why_cap > 0)
            snprintf(why, why_cap, "%s", msg);
    }
    VMENC_GUARD(s);
    vm->cluster_owned = true;
    return VMENC_OK;
}

vmenc_status vm_write_config(vmenc_vm *vm) {
    VMENC_GUARD(vm_cluster_own(vm, NULL, 0)); /* cluster mode: fenced or owned elsewhere -> nothing written */
    VMENC_GUARD(sync_vmx_disks(vm));
    kcv_of(vm, vm->vmx.key_safe, &vm->vmx.has_kek_check, vm->vmx.kek_check);
    char *sealed = NULL;
    if (vm_is_encrypted(vm)) {
        VMENC_ENSURE(vm->vm_key != NULL && vm->secret != NULL, VMENC_E_VM_LOCKED);
        VMENC_GUARD(refresh_sealed_disks(vm));
        VMENC_GUARD(vm_sealed_put_steering(vm->secret, vm->vmx.applying_policy, vm->vmx.new_key_safe));
        VMENC_GUARD(vm_sealed_seal(vm->vm_key, vm->vmx.uuid, vm->secret, &sealed));
    }
    vmenc_status s = vm_vmx_sync(&vm->vmx, sealed);
    free(sealed);
    VMENC_GUARD(s);
    uint8_t *text = NULL;
    size_t len = 0;
    VMENC_GUARD(vm_kv_serialize(vm->vmx.kv, &text, &len));
    /* intent first: the record allows the new file before it replaces the old */
    s = vm_authority_before_config(vm);
    if (s == VMENC_OK)
        s = vmenc_fs_atomic_write(vm->dirfd, vm->vmx_name, text, len, vm_host_sync(vm->host));
    free(text);
    VMENC_GUARD(s);
    return vm_authority_after_config(vm);
}

vmenc_status vm_write_descriptor(vmenc_vm *vm, const char *desc_name, const vm_disk_desc *d) {
    uint8_t *text = NULL;
    size_t len = 0;
    VMENC_GUARD(vm_cluster_own(vm, NULL, 0));
    vm_disk_desc with_kcv = *d; /* shallow: only the check values change */
    kcv_of(vm, d->key_safe, &with_kcv.has_kek_check, with_kcv.kek_check);
    kcv_of(vm, d->new_key_safe, &with_kcv.has_new_kek_check, with_kcv.new_kek_check);
    VMENC_GUARD(vm_disk_desc_serialize(&with_kcv, &text, &len));
    vmenc_status s = vm_authority_before_descriptor(vm, d);
    if (s == VMENC_OK)
        s = vmenc_fs_atomic_write(vm->dirfd, desc_name, text, len, vm_host_sync(vm->host));
    free(text);
    VMENC_GUARD(s);
    return vm_authority_after_descriptor(vm, d);
}

/* ---- loading: configuration, descriptors, keys ------------------------------ */

static vmenc_status load_descriptors(vmenc_vm *vm) {
    size_t n = vm->vmx.num_disks;
    vm->disks = calloc(n > 0 ? n : 1, sizeof(*vm->disks));
    VMENC_ENSURE(vm->disks != NULL, VMENC_E_NOMEM);
    for (size_t i = 0; i < n; i++) {
        vm_disk_entry *d = &vm->disks[i];
        snprintf(d->disk_id, sizeof(d->disk_id), "%s", vm->vmx.disks[i].disk_id);
        snprintf(d->desc_name, sizeof(d->desc_name), "%s", vm->vmx.disks[i].file_name);
        uint8_t *text = NULL;
        size_t len = 0;
        VMENC_GUARD(vmenc_fs_read_file(vm->dirfd, d->desc_name, DESC_MAX_BYTES, &text, &len));
        vmenc_status s = vm_disk_desc_parse(text, len, &d->desc);
        free(text);
        VMENC_GUARD(s);
        vm->num_disks = i + 1; /* from here on the entry is cleaned up with the VM */
        /* A descriptor copied from another VM or slot: refuse it even when
         * plain (an encrypted one would also fail to unwrap). */
        VMENC_ENSURE(strcmp(d->desc.vm_uuid, vm->vmx.uuid) == 0 && strcmp(d->desc.disk_id, d->disk_id) == 0,
                     VMENC_E_CONTEXT_MISMATCH);
    }
    return VMENC_OK;
}

static vmenc_status note_missing(vmenc_vm *vm, const vmenc_wrapped_key *wk, vmenc_status why) {
    const char *alias = vmenc_wrapped_key_provider_alias(wk), *id = vmenc_wrapped_key_kek_id(wk);
    for (size_t i = 0; i < vm->num_missing; i++)
        if (strcmp(vm->missing[i].alias, alias) == 0 && strcmp(vm->missing[i].kek_id, id) == 0) {
            vm->missing[i].status = why;
            return VMENC_OK;
        }
    vm_missing_key *m = realloc(vm->missing, (vm->num_missing + 1) * sizeof(*m));
    VMENC_ENSURE(m != NULL, VMENC_E_NOMEM);
    vm->missing = m;
    vm_missing_key *k = &m[vm->num_missing++];
    snprintf(k->alias, sizeof(k->alias), "%s", alias);
    snprintf(k->kek_id, sizeof(k->kek_id), "%s", id);
    k->status = why;
    return VMENC_OK;
}

/* check_sealed_disks compares the authenticated disk list with the plain
 * configuration and descriptors. */
static vmenc_status check_sealed_disks(const vmenc_vm *vm) {
    size_t sealed_disks = 0;
    for (size_t i = 0; i < vm_kv_num_entries(vm->secret); i++) {
        const char *k, *v;
        vm_kv_entry(vm->secret, i, &k, &v);
        if (strncmp(k, SEALED_DISK_PREFIX, strlen(SEALED_DISK_PREFIX)) == 0)
            sealed_disks++;
    }
    VMENC_ENSURE(sealed_disks == vm->num_disks, VMENC_E_AUTH);
    for (size_t i = 0; i < vm->num_disks; i++) {
        const vm_disk_entry *d = &vm->disks[i];
        char key[64];
        snprintf(key, sizeof(key), SEALED_DISK_PREFIX "%s", d->disk_id);
        /* file, encrypted, geometry, next key record: format/sealed.c */
        VMENC_GUARD(vm_sealed_disk_check(vm_kv_get(vm->secret, key), d->desc_name, &d->desc));
    }
    return VMENC_OK;
}

/* unwrap_record opens one record. The key manager reports any wrong key as
 * VMENC_E_AUTH (it never returns a wrong DEK); when the KEK's check value is
 * pinned, asking for the KEK itself tells a KMS that serves other bytes
 * (VMENC_E_KMS_WRONG_KEY: the VM opens locked, to unlock when the KMS is
 * fixed) from a record that is bad (VMENC_E_AUTH: an error). */
static vmenc_status unwrap_record(vmenc_vm *vm, const vmenc_wrapped_key *wk, const vmenc_wrap_context *ctx,
                                  vmenc_dek **out) {
    vmenc_host *h = vm->host;
    vmenc_status s = vmenc_keymgr_unwrap_dek(h->keymgr, wk, ctx, h->timeout_ms, out);
    if (s != VMENC_E_AUTH)
        return s;
    vmenc_kek *kek = NULL;
    vmenc_status g = vmenc_keymgr_get_kek(h->keymgr, vmenc_wrapped_key_provider_alias(wk),
                                          vmenc_wrapped_key_kek_id(wk), h->timeout_ms, &kek);
    vmenc_kek_free(kek);
    return g == VMENC_E_KMS_WRONG_KEY ? g : s;
}

/* load_keys unwraps every key not yet held. A key provider that cannot give
 * a KEK leaves the VM locked; a record that does not open (tampered, bound
 * elsewhere) is an error. Records each KEK used in |op|. */
static vmenc_status load_keys(vmenc_vm *vm, vm_op *op) {
    vm->num_missing = 0;
    pin_kcv(vm, vm->vmx.key_safe, vm->vmx.has_kek_check, vm->vmx.kek_check);
    for (size_t i = 0; i < vm->num_disks; i++) {
        pin_kcv(vm, vm->disks[i].desc.key_safe, vm->disks[i].desc.has_kek_check, vm->disks[i].desc.kek_check);
        pin_kcv(vm, vm->disks[i].desc.new_key_safe, vm->disks[i].desc.has_new_kek_check,
                vm->disks[i].desc.new_kek_check);
    }
    if (vm->vmx.key_safe != NULL) {
        vm_op_add_key(op, vmenc_wrapped_key_provider_alias(vm->vmx.key_safe),
                      vmenc_wrapped_key_kek_id(vm->vmx.key_safe));
        if (vm->vm_key == NULL) {
            vmenc_wrap_context ctx;
            vm_wrap_ctx(&ctx, vm->vmx.uuid, NULL);
            vmenc_status s = unwrap_record(vm, vm->vmx.key_safe, &ctx, &vm->vm_key);
            if (key_unavailable(s))
                VMENC_GUARD(note_missing(vm, vm->vmx.key_safe, s));
            else if (s != VMENC_OK)
                return s;
        }
        if (vm->vmx.new_key_safe != NULL && vm->new_vm_key == NULL) {
            /* a deep rekey of the home was interrupted: the next VM key too */
            vm_op_add_key(op, vmenc_wrapped_key_provider_alias(vm->vmx.new_key_safe),
                          vmenc_wrapped_key_kek_id(vm->vmx.new_key_safe));
            vmenc_wrap_context ctx;
            vm_wrap_ctx(&ctx, vm->vmx.uuid, NULL);
            vmenc_status s = unwrap_record(vm, vm->vmx.new_key_safe, &ctx, &vm->new_vm_key);
            if (key_unavailable(s))
                VMENC_GUARD(note_missing(vm, vm->vmx.new_key_safe, s));
            else if (s != VMENC_OK)
                return s;
        }
        if (vm->vm_key != NULL && vm->secret == NULL) {
            VMENC_ENSURE(vm->vmx.sealed_data != NULL, VMENC_E_AUTH);
            VMENC_GUARD(vm_sealed_open(vm->vm_key, vm->vmx.uuid, vm->vmx.sealed_data, &vm->secret));
            vmenc_status s = check_sealed_disks(vm);
            if (s == VMENC_OK) /* a pending policy or next key the sealed entries do not name */
                s = vm_sealed_check_steering(vm->secret, vm->vmx.applying_policy, vm->vmx.new_key_safe);
            if (s != VMENC_OK) {
                vm_kv_free(vm->secret);
                vm->secret = NULL;
                return s;
            }
        }
    }
    for (size_t i = 0; i < vm->num_disks; i++) {
        vm_disk_entry *d = &vm->disks[i];
        d->key_status = VMENC_OK;
        /* a disk in conversion may hold two keys: the old and the new */
        const vmenc_wrapped_key *wks[2] = {d->desc.key_safe, d->desc.new_key_safe};
        vmenc_dek **deks[2] = {&d->dek, &d->new_dek};
        for (size_t k = 0; k < 2; k++) {
            if (wks[k] == NULL || *deks[k] != NULL)
                continue;
            vm_op_add_key(op, vmenc_wrapped_key_provider_alias(wks[k]), vmenc_wrapped_key_kek_id(wks[k]));
            vmenc_wrap_context ctx;
            vm_wrap_ctx(&ctx, vm->vmx.uuid, d->disk_id);
            vmenc_status s = unwrap_record(vm, wks[k], &ctx, deks[k]);
            if (s != VMENC_OK)
                d->key_status = s;
            if (key_unavailable(s))
                VMENC_GUARD(note_missing(vm, wks[k], s));
            else if (s != VMENC_OK)
                return s;
        }
    }
    vm->locked = vm->num_missing > 0;
    return VMENC_OK;
}

static void missing_reason(const vmenc_vm *vm, char *out, size_t cap) {
    size_t used = (size_t)snprintf(out, cap, "locked: key provider cannot give");
    for (size_t i = 0; i < vm->num_missing && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s %s/%s (%s)", i == 0 ? "" : ",",
                                 vm->missing[i].alias, vm->missing[i].kek_id,
                                 vmenc_status_name(vm->missing[i].status));
}

/* split_vmx_path opens the directory of |path| and checks the file name is
 * NAME.vmx with a valid NAME. */
static vmenc_status split_vmx_path(const char *path, char *dir, size_t dir_cap, char *file, size_t file_cap,
                                   int *out_dirfd) {
    VMENC_ENSURE(path != NULL && path[0] != '\0', VMENC_E_INVALID_ARG);
    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    size_t dlen = slash != NULL ? (size_t)(slash - path) : 1;
    VMENC_ENSURE(dlen < dir_cap, VMENC_E_INVALID_ARG);
    if (slash == NULL)
        memcpy(dir, ".", 2);
    else if (dlen == 0)
        memcpy(dir, "/", 2);
    else {
        memcpy(dir, path, dlen);
        dir[dlen] = '\0';
    }
    VMENC_GUARD(vmenc_fs_name_check(base));
    size_t blen = strlen(base);
    VMENC_ENSURE(blen > 4 && strcmp(base + blen - 4, ".vmx") == 0 && blen < file_cap, VMENC_E_BAD_PATH);
    memcpy(file, base, blen + 1);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return vmenc_status_from_errno(errno);
    *out_dirfd = fd;
    return VMENC_OK;
}

/* read_config loads NAME.vmx and every descriptor into a new locked VM
 * (no keys yet). */
static vmenc_status read_config(vmenc_host *host, const char *vmx_path, vmenc_vm **out) {
    char dir[PATH_MAX], file[VMENC_VM_NAME_MAX + 8];
    int dirfd = -1;
    VMENC_GUARD(split_vmx_path(vmx_path, dir, sizeof(dir), file, sizeof(file), &dirfd));
    vmenc_vm *vm = NULL;
    vmenc_status s = vm_alloc(host, dir, dirfd, &vm);
    if (s != VMENC_OK) {
        close(dirfd);
        return s;
    }
    snprintf(vm->vmx_name, sizeof(vm->vmx_name), "%s", file);
    uint8_t *text = NULL;
    size_t len = 0;
    VMENC_GUARD_GOTO(s, vmenc_fs_read_file(dirfd, file, VMX_MAX_BYTES, &text, &len), fail);
    s = vm_vmx_parse(text, len, &vm->vmx);
    free(text);
    VMENC_GUARD_GOTO(s, s, fail);
    /* NAME.vmx must configure VM NAME: the file name is what the operator
     * and the inventory see. */
    char expect[VMENC_VM_NAME_MAX + 8];
    snprintf(expect, sizeof(expect), "%s.vmx", vm->vmx.name);
    VMENC_ENSURE_GOTO(s, strcmp(expect, file) == 0, VMENC_E_PARSE, fail);
    VMENC_GUARD_GOTO(s, load_descriptors(vm), fail);
    *out = vm;
    return VMENC_OK;
fail:
    vm_release(vm);
    return s;
}

/* finish_open checks the files against the VM's authority record, fetches
 * the keys and places the VM on this host; shared by open, register and
 * unlock. The inventory learns what the record says, never what the files
 * say (a host without a control store has no record: there the files'
 * view is all there is). VMENC_E_AUTH from the record check comes with
 * |reason| naming the file. */
static vmenc_status finish_open(vmenc_vm *vm, vm_op *op, char *reason, size_t reason_cap) {
    VMENC_GUARD(vm_authority_check_open(vm, reason, reason_cap));
    VMENC_GUARD(load_keys(vm, op));
    VMENC_GUARD(vm_authority_settle_open(vm));
    const ctl_vm_record *rec = vm_authority_record(vm);
    if (rec != NULL || vm->host->control == NULL)
        VMENC_GUARD(vmenc_policy_set_vm_state(vm->host->policy, vm->vmx.name, vm->host->host_id,
                                              rec != NULL ? rec->facts.encrypted : vm_is_encrypted(vm)));
    return vm->locked ? VMENC_E_VM_LOCKED : VMENC_OK;
}

/* finish_refused audits a failed open: a refusal by the authority record
 * as denied with its reason, anything else as failed. */
static vmenc_status finish_refused(vm_op *op, vmenc_status s, const char *reason) {
    if (s == VMENC_E_AUTH && reason[0] != '\0')
        return vm_op_deny(op, s, reason);
    return vm_op_finish(op, s, NULL);
}

static vmenc_status open_common(vmenc_host *host, const char *principal, const char *vmx_path, bool reg,
                                const char *folder, const char *pool, vmenc_vm **out) {
    vm_op op;
    vm_op_init(&op, host, principal, reg ? "vm.register" : "vm.open", vmx_path);
    vmenc_vm *vm = NULL;
    vmenc_status s = VMENC_E_INVALID_ARG;
    if (host == NULL || out == NULL)
        return VMENC_E_INVALID_ARG;
    if (reg && folder == NULL)
        return vm_op_finish(&op, VMENC_E_INVALID_ARG, "register needs a folder");
    s = read_config(host, vmx_path, &vm);
    if (s != VMENC_OK)
        return vm_op_finish(&op, s, NULL);
    snprintf(op.target, sizeof(op.target), "%s", vm->vmx.name);
    vmenc_policy_request rq = {
        .struct_size = sizeof(rq),
        .op = reg ? VMENC_OP_REGISTER_VM : VMENC_OP_POWER_ON,
        .vm = reg ? NULL : vm->vmx.name,
        .folder = reg ? folder : NULL,
        .pool = reg ? pool : NULL,
        .flags = vm_is_encrypted(vm) ? VMENC_REQ_VM_ENCRYPTED : 0,
    };
    if (vm_is_encrypted(vm))
        vm_op_add_key(&op, vmenc_wrapped_key_provider_alias(vm->vmx.key_safe),
                      vmenc_wrapped_key_kek_id(vm->vmx.key_safe));
    s = vm_op_authorize(&op, &rq);
    if (s != VMENC_OK) {
        vm_release(vm);
        return s;
    }
    if (reg) {
        s = vmenc_policy_add_object(host->policy, vm->vmx.name, VMENC_OBJ_VM, folder);
        if (s == VMENC_E_EXISTS)
            s = VMENC_OK; /* known to the inventory already (e.g. moved from another host) */
        if (s != VMENC_OK) {
            vm_release(vm);
            return vm_op_finish(&op, s, "cannot add the VM to the inventory");
        }
    }
    char reason[VMENC_AUDIT_MAX_REASON];
    s = finish_open(vm, &op, reason, sizeof(reason));
    if (s == VMENC_E_VM_LOCKED) {
        missing_reason(vm, reason, sizeof(reason));
        (void)vm_op_finish(&op, s, reason);
        *out = vm; /* the documented exception: a locked VM is returned */
        return s;
    }
    if (s != VMENC_OK) {
        vm_release(vm);
        return finish_refused(&op, s, reason);
    }
    s = vm_op_finish(&op, VMENC_OK, NULL);
    if (s != VMENC_OK) {
        vm_release(vm);
        return s;
    }
    *out = vm;
    return VMENC_OK;
}

vmenc_status vmenc_vm_open(vmenc_host *host, const char *principal, const char *vmx_path, vmenc_vm **out) {
    return open_common(host, principal, vmx_path, false, NULL, NULL, out);
}

vmenc_status vmenc_vm_register(vmenc_host *host, const char *principal, const char *vmx_path, const char *folder,
                               const char *pool, vmenc_vm **out) {
    return open_common(host, principal, vmx_path, true, folder, pool, out);
}

vmenc_status vmenc_vm_unlock(vmenc_vm *vm, const char *principal) {
    VMENC_ENSURE_REF(vm);
    vm_op op;
    vm_op_init(&op, vm->host, principal, "vm.unlock", vm->vmx.name);
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_POWER_ON, .vm = vm->vmx.name,
                               .flags = vm_is_encrypted(vm) ? VMENC_REQ_VM_ENCRYPTED : 0};
    pthread_mutex_lock(&vm->lock);
    vmenc_status s = vm_op_authorize(&op, &rq);
    if (s != VMENC_OK) {
        pthread_mutex_unlock(&vm->lock);
        return s;
    }
    char reason[VMENC_AUDIT_MAX_REASON];
    s = finish_open(vm, &op, reason, sizeof(reason));
    if (s == VMENC_E_VM_LOCKED)
        missing_reason(vm, reason, sizeof(reason));
    pthread_mutex_unlock(&vm->lock);
    if (s != VMENC_OK && s != VMENC_E_VM_LOCKED)
        return finish_refused(&op, s, reason);
    return vm_op_finish(&op, s, s == VMENC_E_VM_LOCKED ? reason : NULL);
}

/* ---- create ------------------------------------------------------------------ */

/* policy_shape tells what storage policy |name| encrypts and with which key
 * provider, by planning it for a plain VM with one plain disk. */
static vmenc_status policy_shape(vmenc_policy *policy, const char *name, bool *home, bool *disks,
                                 char *provider, size_t provider_cap) {
    *home = *disks = false;
    provider[0] = '\0';
    if (name == NULL || name[0] == '\0')
        return VMENC_OK;
    vmenc_vm_disk_state ds = {.encrypted = 0};
    vmenc_vm_crypto_state st = {.struct_size = sizeof(st), .num_disks = 1, .disks = &ds};
    vmenc_policy_action acts[VMENC_POLICY_MAX_ACTIONS(1)];
    size_t n = 0;
    VMENC_GUARD(vmenc_policy_plan_storage_policy(policy, name, &st, acts, VMENC_ARRAY_LEN(acts), &n));
    for (size_t i = 0; i < n; i++) {
        if (acts[i].type == VMENC_ACTION_ENCRYPT_HOME) {
            *home = true;
            VMENC_GUARD(vm_copy_string(provider, provider_cap, acts[i].key_provider));
        } else if (acts[i].type == VMENC_ACTION_ENCRYPT_DISK) {
            *disks = true;
        }
    }
    return VMENC_OK;
}

/* make_home creates |dir| or accepts an existing empty one. */
vmenc_status vm_make_home(const char *dir, bool *created, int *out_fd) {
    *created = false;
    if (mkdir(dir, 0700) == 0)
        *created = true;
    else if (errno != EEXIST)
        return vmenc_status_from_errno(errno);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return vmenc_status_from_errno(errno);
    if (!*created) {
        int probe = dup(fd);
        DIR *d = probe >= 0 ? fdopendir(probe) : NULL;
        bool empty = d != NULL;
        struct dirent *de;
        while (d != NULL && (de = readdir(d)) != NULL)
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                empty = false;
        if (d != NULL)
            closedir(d);
        else if (probe >= 0)
            close(probe);
        if (!empty) {
            close(fd);
            return VMENC_E_EXISTS;
        }
    }
    *out_fd = fd;
    return VMENC_OK;
}

static vmenc_status inventory_name_free(vmenc_host *host, const char *principal, const char *name) {
    int has = 0;
    vmenc_status s = vmenc_policy_has_privilege(host->policy, principal, name, VMENC_PRIV_SYSTEM_READ, &has);
    if (s == VMENC_E_NOT_FOUND)
        return VMENC_OK;
    return s == VMENC_OK ? VMENC_E_EXISTS : s;
}

/* new_vmx builds the configuration of a new VM in |vm|. */
static vmenc_status new_vmx(vmenc_vm *vm, const char *name, uint64_t memory, const char *storage_policy) {
    VMENC_GUARD(vm_kv_new(&vm->vmx.kv));
    VMENC_GUARD(vm_kv_set(vm->vmx.kv, ".encoding", "UTF-8"));
    VMENC_GUARD(vm_kv_set(vm->vmx.kv, "config.version", "8"));
    snprintf(vm->vmx.name, sizeof(vm->vmx.name), "%s", name);
    VMENC_GUARD(vm_new_uuid(vm->vmx.uuid));
    vm->vmx.memory_bytes = memory;
    snprintf(vm->vmx.storage_policy, sizeof(vm->vmx.storage_policy), "%s",
             storage_policy != NULL ? storage_policy : "");
    snprintf(vm->vmx_name, sizeof(vm->vmx_name), "%s.vmx", name);
    return VMENC_OK;
}

/* make_vm_key gives |vm| a fresh VM key wrapped under (alias, kek_id),
 * creating the KEK when |kek_id| is NULL. */
static vmenc_status make_vm_key(vmenc_vm *vm, const char *alias, const char *kek_id, vm_op *op) {
    vmenc_host *h = vm->host;
    char id[VMENC_KMS_KEY_ID_CAP];
    if (kek_id == NULL)
        VMENC_GUARD(vmenc_keymgr_create_kek(h->keymgr, alias, vm->vmx.name, h->timeout_ms, id, sizeof(id)));
    else
        VMENC_GUARD(vm_copy_string(id, sizeof(id), kek_id));
    vm_op_add_key(op, alias, id);
    VMENC_GUARD(vmenc_dek_generate(&vm->vm_key));
    VMENC_GUARD(vm_new_wrapped(h, alias, id, vm->vm_key, vm->vmx.uuid, NULL, &vm->vmx.key_safe));
    return vm_kv_new(&vm->secret);
}

vmenc_status vmenc_vm_create(vmenc_host *host, const vmenc_vm_create_options *opts, vmenc_vm **out) {
    VMENC_ENSURE(host != NULL && opts != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(opts->struct_size >= CREATE_OPTIONS_V1_SIZE, VMENC_E_ABI_VERSION);
    vm_op op;
    vm_op_init(&op, host, opts->principal, "vm.create", opts->name);
    vmenc_status s = VMENC_OK;
    if (opts->flags != 0 || opts->home_dir == NULL || opts->folder == NULL)
        return vm_op_finish(&op, VMENC_E_INVALID_ARG, "bad create options");
    if ((s = vm_vm_name_check(opts->name)) != VMENC_OK)
        return vm_op_finish(&op, s, "bad VM name");
    bool enc_home = false, enc_disks = false;
    char provider[VMENC_PROVIDER_ALIAS_MAX + 1];
    if ((s = policy_shape(host->policy, opts->storage_policy, &enc_home, &enc_disks, provider,
                          sizeof(provider))) != VMENC_OK)
        return vm_op_finish(&op, s, "storage policy");
    if (enc_home)
        vm_op_add_key(&op, provider, opts->kek_id);
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_CREATE_VM, .folder = opts->folder,
                               .pool = opts->pool, .datastore = opts->datastore,
                               .flags = enc_home ? VMENC_REQ_TARGET_ENCRYPTED : 0};
    VMENC_GUARD(vm_op_authorize(&op, &rq));
    if ((s = inventory_name_free(host, opts->principal, opts->name)) != VMENC_OK)
        return vm_op_finish(&op, s, "the name is taken in the inventory");
    bool created = false;
    int dirfd = -1;
    if ((s = vm_make_home_intent(opts->home_dir, opts->name, vm_host_sync(host), &created, &dirfd)) != VMENC_OK)
        return vm_op_finish(&op, s, "cannot make the home directory");
    vmenc_vm *vm = NULL;
    if ((s = vm_alloc(host, opts->home_dir, dirfd, &vm)) != VMENC_OK) {
        (void)unlinkat(dirfd, "vmenc-clone.intent", 0); /* vm_make_home_intent's */
        close(dirfd);
        goto undo_dir;
    }
    bool wrote = false, added = false;
    VMENC_GUARD_GOTO(s, new_vmx(vm, opts->name, opts->memory_bytes != 0 ? opts->memory_bytes : DEFAULT_MEMORY,
                                opts->storage_policy), fail);
    if (enc_home)
        VMENC_GUARD_GOTO(s, make_vm_key(vm, provider, opts->kek_id, &op), fail);
    vm->disks = calloc(1, sizeof(*vm->disks));
    VMENC_ENSURE_GOTO(s, vm->disks != NULL, VMENC_E_NOMEM, fail);
    /* The inventory entry claims the name (a compare-and-swap across
     * processes) before any file is written: a loser of a race for the
     * name fails here and touches nothing of the winner's. */
    VMENC_GUARD_GOTO(s, vmenc_policy_add_object(host->policy, vm->vmx.name, VMENC_OBJ_VM, opts->folder), fail);
    added = true;
    wrote = true;
    VMENC_GUARD_GOTO(s, vm_write_config(vm), fail);
    VMENC_GUARD_GOTO(s, vmenc_policy_set_vm_state(host->policy, vm->vmx.name, host->host_id, enc_home), fail);
    s = vm_op_finish(&op, VMENC_OK, NULL);
    if (s != VMENC_OK) {
        vm_release(vm);
        return s;
    }
    *out = vm;
    return VMENC_OK;
fail:
    if (added && vmenc_policy_remove_object(host->policy, vm->vmx.name) != VMENC_OK)
        (void)0; /* the audit record below says the create failed; the entry is an orphan */
    if (wrote)
        (void)unlinkat(vm->dirfd, vm->vmx_name, 0);
    (void)unlinkat(vm->dirfd, "vmenc-clone.intent", 0); /* vm_make_home_intent's */
    (void)vm_authority_forget(vm); /* the record of a VM that was not made */
    vm_release(vm);
undo_dir:
    if (created)
        (void)rmdir(opts->home_dir);
    return vm_op_finish(&op, s, NULL);
}

/* ---- status ------------------------------------------------------------------- */

#define VM_INFO_V1_SIZE (offsetof(vmenc_vm_info, storage_policy) + VMENC_POLICY_NAME_MAX + 1)
#define DISK_INFO_V1_SIZE (offsetof(vmenc_disk_info, locked) + sizeof(int))

vmenc_status vmenc_vm_get_info(vmenc_vm *vm, vmenc_vm_info *out) {
    VMENC_ENSURE(vm != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= VM_INFO_V1_SIZE, VMENC_E_ABI_VERSION);
    vmenc_vm_info i;
    memset(&i, 0, sizeof(i));
    i.struct_size = out->struct_size;
    pthread_mutex_lock(&vm->lock);
    snprintf(i.name, sizeof(i.name), "%s", vm->vmx.name);
    snprintf(i.uuid, sizeof(i.uuid), "%s", vm->vmx.uuid);
    i.encrypted = vm_is_encrypted(vm);
    i.locked = vm->locked;
    if (i.encrypted) {
        snprintf(i.key_provider, sizeof(i.key_provider), "%s", vmenc_wrapped_key_provider_alias(vm->vmx.key_safe));
        snprintf(i.kek_id, sizeof(i.kek_id), "%s", vmenc_wrapped_key_kek_id(vm->vmx.key_safe));
    }
    i.num_disks = (uint32_t)vm->num_disks;
    i.num_missing_keys = (uint32_t)vm->num_missing;
    snprintf(i.storage_policy, sizeof(i.storage_policy), "%s", vm->vmx.storage_policy);
    const ctl_vm_record *rec = vm_authority_record(vm);
    if (rec != NULL) {
        i.has_key_generation = 1;
        i.key_generation = rec->facts.key_generation;
    }
    pthread_mutex_unlock(&vm->lock);
    memcpy(out, &i, out->struct_size >= sizeof(i) ? sizeof(i) : VM_INFO_V1_SIZE);
    return VMENC_OK;
}

vmenc_status vmenc_vm_get_disk_info(vmenc_vm *vm, uint32_t index, vmenc_disk_info *out) {
    VMENC_ENSURE(vm != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= DISK_INFO_V1_SIZE, VMENC_E_ABI_VERSION);
    vmenc_disk_info i;
    memset(&i, 0, sizeof(i));
    i.struct_size = out->struct_size;
    pthread_mutex_lock(&vm->lock);
    if (index >= vm->num_disks) {
        pthread_mutex_unlock(&vm->lock);
        return VMENC_E_INVALID_ARG;
    }
    const vm_disk_entry *d = &vm->disks[index];
    snprintf(i.disk_id, sizeof(i.disk_id), "%s", d->disk_id);
    snprintf(i.file_name, sizeof(i.file_name), "%s", d->desc_name);
    i.capacity = d->desc.capacity;
    i.sector_size = d->desc.sector_size;
    i.state = d->desc.state;
    snprintf(i.key_provider, sizeof(i.key_provider), "%s", d->desc.key_provider);
    snprintf(i.kek_id, sizeof(i.kek_id), "%s", d->desc.kek_id);
    i.locked = (d->desc.key_safe != NULL && d->dek == NULL) || (d->desc.new_key_safe != NULL && d->new_dek == NULL);
    pthread_mutex_unlock(&vm->lock);
    memcpy(out, &i, DISK_INFO_V1_SIZE);
    return VMENC_OK;
}

vmenc_status vmenc_vm_get_missing_key(vmenc_vm *vm, uint32_t index, char *out_alias, size_t alias_cap,
                                      char *out_kek_id, size_t kek_id_cap, vmenc_status *out_status) {
    VMENC_ENSURE(vm != NULL && out_alias != NULL && out_kek_id != NULL, VMENC_E_INVALID_ARG);
    pthread_mutex_lock(&vm->lock);
    vmenc_status s = VMENC_E_INVALID_ARG;
    if (index < vm->num_missing) {
        const vm_missing_key *m = &vm->missing[index];
        if (strlen(m->alias) >= alias_cap || strlen(m->kek_id) >= kek_id_cap) {
            s = VMENC_E_BUFFER_TOO_SMALL;
        } else {
            memcpy(out_alias, m->alias, strlen(m->alias) + 1);
            memcpy(out_kek_id, m->kek_id, strlen(m->kek_id) + 1);
            if (out_status != NULL)
                *out_status = m->status;
            s = VMENC_OK;
        }
    }
    pthread_mutex_unlock(&vm->lock);
    return s;
}

/* ---- configuration entries --------------------------------------------------- */

static vmenc_status user_key_check(const char *key) {
    VMENC_ENSURE(key != NULL, VMENC_E_INVALID_ARG);
    size_t n = strlen(key);
    VMENC_ENSURE(n > 0 && n <= 128, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(strncmp(key, "encryption.", 11) != 0 && strncmp(key, "vmenc.", 6) != 0, VMENC_E_INVALID_ARG);
    /* keys the vmx schema owns: the disk table and the identity */
    VMENC_ENSURE(strncmp(key, "scsi", 4) != 0 && strcmp(key, "displayName") != 0 && strcmp(key, "memSize") != 0 &&
                     strcmp(key, ".encoding") != 0 && strcmp(key, "config.version") != 0,
                 VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

/* save_entry copies the current value of |key| (NULL if absent). */
static vmenc_status save_entry(const vm_kv *kv, const char *key, char **out) {
    const char *v = vm_kv_get(kv, key);
    *out = NULL;
    if (v != NULL && (*out = strdup(v)) == NULL)
        return VMENC_E_NOMEM;
    return VMENC_OK;
}

static void restore_entry(vm_kv *kv, const char *key, const char *old) {
    vmenc_status s = old != NULL ? vm_kv_set(kv, key, old)
                                 : (vm_kv_get(kv, key) != NULL ? vm_kv_remove(kv, key) : VMENC_OK);
    (void)s; /* it held this value a moment ago: setting it back cannot fail validation */
}

static void free_entry(char *v) {
    if (v != NULL) {
        vmenc_memzero(v, strlen(v));
        free(v);
    }
}

vmenc_status vmenc_vm_config_set(vmenc_vm *vm, const char *principal, const char *key, const char *value,
                                 uint32_t flags) {
    VMENC_ENSURE_REF(vm);
    vm_op op;
    vm_op_init(&op, vm->host, principal, "vm.config_set", vm->vmx.name);
    vmenc_status s = user_key_check(key);
    if (s == VMENC_OK && (flags & ~VMENC_VM_CONFIG_SECRET) != 0)
        s = VMENC_E_INVALID_ARG;
    if (s != VMENC_OK)
        return vm_op_finish(&op, s, "bad configuration key or flags");
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_EDIT_SETTINGS, .vm = vm->vmx.name,
                               .flags = vm_is_encrypted(vm) ? VMENC_REQ_VM_ENCRYPTED : 0};
    VMENC_GUARD(vm_op_authorize(&op, &rq));
    pthread_mutex_lock(&vm->lock);
    bool secret = (flags & VMENC_VM_CONFIG_SECRET) != 0;
    if (secret && !vm_is_encrypted(vm))
        s = VMENC_E_BAD_STATE;
    else if (vm_is_encrypted(vm) && vm->secret == NULL)
        s = VMENC_E_VM_LOCKED;
    vm_kv *target = secret ? vm->secret : vm->vmx.kv;
    vm_kv *other = secret ? vm->vmx.kv : vm->secret;
    char *old_target = NULL, *old_other = NULL;
    if (s == VMENC_OK)
        s = save_entry(target, key, &old_target);
    if (s == VMENC_OK && other != NULL)
        s = save_entry(other, key, &old_other);
    bool changed = false;
    if (s == VMENC_OK) {
        changed = true;
        if (value == NULL) {
            s = vm_kv_remove(target, key);
        } else {
            s = vm_kv_set(target, key, value);
            /* an entry lives in one place: clear or sealed */
            if (s == VMENC_OK && old_other != NULL)
                s = vm_kv_remove(other, key);
        }
    }
    if (s == VMENC_OK)
        s = vm_write_config(vm);
    if (s != VMENC_OK && changed) {
        /* the file was not replaced: the VM must not believe it was */
        restore_entry(target, key, old_target);
        if (other != NULL)
            restore_entry(other, key, old_other);
    }
    free_entry(old_target);
    free_entry(old_other);
    pthread_mutex_unlock(&vm->lock);
    return vm_op_finish(&op, s, NULL);
}

vmenc_status vmenc_vm_config_get(vmenc_vm *vm, const char *principal, const char *key, char *out, size_t out_cap,
                                 size_t *out_len) {
    VMENC_ENSURE(vm != NULL && key != NULL && out != NULL, VMENC_E_INVALID_ARG);
    pthread_mutex_lock(&vm->lock);
    const char *v = vm_kv_get(vm->vmx.kv, key);
    bool secret = false;
    vmenc_status s = VMENC_OK;
    if (v == NULL && vm_is_encrypted(vm)) {
        if (vm->secret == NULL)
            s = VMENC_E_VM_LOCKED;
        else if (strncmp(key, SEALED_DISK_PREFIX, strlen(SEALED_DISK_PREFIX)) != 0 &&
                 (v = vm_kv_get(vm->secret, key)) != NULL)
            secret = true;
    }
    char *copy = NULL;
    if (s == VMENC_OK && v == NULL)
        s = VMENC_E_NOT_FOUND;
    if (s == VMENC_OK && (copy = strdup(v)) == NULL)
        s = VMENC_E_NOMEM;
    pthread_mutex_unlock(&vm->lock);
    if (s == VMENC_OK && secret) {
        /* A sealed entry is guest secret: reading it is console-level access. */
        vm_op op;
        vm_op_init(&op, vm->host, principal, "vm.config_get_secret", vm->vmx.name);
        vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_CONSOLE, .vm = vm->vmx.name,
                                   .flags = VMENC_REQ_VM_ENCRYPTED};
        s = vm_op_authorize(&op, &rq);
        if (s == VMENC_OK)
            s = vm_op_finish(&op, VMENC_OK, NULL);
    }
    if (s == VMENC_OK) {
        size_t n = strlen(copy);
        if (out_len != NULL)
            *out_len = n;
        if (n >= out_cap)
            s = VMENC_E_BUFFER_TOO_SMALL;
        else
            memcpy(out, copy, n + 1);
    }
    if (copy != NULL) {
        vmenc_memzero(copy, strlen(copy));
        free(copy);
    }
    return s;
}
