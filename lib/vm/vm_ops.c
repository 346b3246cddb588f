/*
 * lib/vm/vm_ops.c - operations that change a VM's disks or keys: add and
 * remove a disk, shallow rekey, apply a storage policy, clone.
 *
 * Crash safety comes from ordering atomic file replacements so that every
 * intermediate state opens: new files are written before the configuration
 * names them, the configuration forgets files before they are deleted, and
 * each wrapped-key record names its own KEK (docs/vm-format.md).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keys/keys_internal.h"
#include "vm/vm_internal.h"

#define ADD_DISK_OPTIONS_V1_SIZE (offsetof(vmenc_disk_create_options, flags) + sizeof(uint32_t))
#define CLONE_OPTIONS_V1_SIZE (offsetof(vmenc_vm_clone_options, flags) + sizeof(uint32_t))
/* The intent of a new VM - a clone or a create (docs/vm.md "clone"): its
 * name, written durably into its home before anything else. A home that
 * holds it naming the VM (or holds nothing but its temporaries), while the
 * inventory lacks that name (checked first), is a crashed attempt's
 * half-built home: a retry empties it and builds again, instead of failing
 * with VMENC_E_EXISTS. The VM's first resume removes it (sweep_debris): the
 * inventory that names the VM is durable by then, which the create or
 * clone cannot know (the workspace saves it after they return). */
#define CLONE_INTENT "vmenc-clone.intent"
#define COPY_CHUNK ((size_t)1 << 20)

static uint32_t vm_flags(const vmenc_vm *vm) { return vm_is_encrypted(vm) ? VMENC_REQ_VM_ENCRYPTED : 0; }

static const char *vm_alias(const vmenc_vm *vm) { return vmenc_wrapped_key_provider_alias(vm->vmx.key_safe); }
static const char *vm_kek(const vmenc_vm *vm) { return vmenc_wrapped_key_kek_id(vm->vmx.key_safe); }

/* needs_keys fails a locked encrypted VM. */
static vmenc_status needs_keys(const vmenc_vm *vm) {
    return vm_is_encrypted(vm) && (vm->locked || vm->vm_key == NULL) ? VMENC_E_VM_LOCKED : VMENC_OK;
}

/* ---- add / remove a disk ----------------------------------------------------- */

static vmenc_status next_disk_id(const vmenc_vm *vm, char *out, size_t cap) {
    for (unsigned bus = 0; bus < 4; bus++)
        for (unsigned unit = 0; unit < 16; unit++) {
            char id[VMENC_DISK_ID_MAX + 1];
            snprintf(id, sizeof(id), "scsi%u:%u", bus, unit);
            if (vm_find_disk(vm, id) < 0)
                return vm_copy_string(out, cap, id);
        }
    return VMENC_E_LIMIT;
}

static bool name_in_use(const vmenc_vm *vm, const char *desc, const char *extent) {
    struct stat st;
    return fstatat(vm->dirfd, desc, &st, AT_SYMLINK_NOFOLLOW) == 0 ||
           fstatat(vm->dirfd, extent, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static vmenc_status disk_file_names(const vmenc_vm *vm, const char *base, char *desc, size_t desc_cap,
                                    char *extent, size_t extent_cap) {
    char b[200];
    for (unsigned n = 0; n < 1000; n++) {
        if (base != NULL)
            snprintf(b, sizeof(b), "%s", base);
        else
            snprintf(b, sizeof(b), "%s_%u", vm->vmx.name, n);
        VMENC_ENSURE((size_t)snprintf(desc, desc_cap, "%s.vmdk", b) < desc_cap, VMENC_E_INVALID_ARG);
        VMENC_ENSURE((size_t)snprintf(extent, extent_cap, "%s-flat.vmdk", b) < extent_cap, VMENC_E_INVALID_ARG);
        VMENC_GUARD(vmenc_fs_name_check(desc));
        VMENC_GUARD(vmenc_fs_name_check(extent));
        if (!name_in_use(vm, desc, extent))
            return VMENC_OK;
        if (base != NULL)
            return VMENC_E_EXISTS;
    }
    return VMENC_E_LIMIT;
}

/* disk_policy_encrypts: does the VM's storage policy encrypt disks? An
 * encrypted VM without a recorded policy encrypts them (the default). */
static bool disk_policy_encrypts(const vmenc_vm *vm) {
    if (!vm_is_encrypted(vm))
        return false;
    if (vm->vmx.storage_policy[0] == '\0')
        return true;
    vmenc_vm_disk_state ds = {.encrypted = 0};
    vmenc_vm_crypto_state st = {.struct_size = sizeof(st), .num_disks = 1, .disks = &ds};
    vmenc_policy_action acts[VMENC_POLICY_MAX_ACTIONS(1)];
    size_t n = 0;
    if (vmenc_policy_plan_storage_policy(vm->host->policy, vm->vmx.storage_policy, &st, acts,
                                         VMENC_ARRAY_LEN(acts), &n) != VMENC_OK)
        return true; /* unknown policy: keep the safe default */
    for (size_t i = 0; i < n; i++)
        if (acts[i].type == VMENC_ACTION_ENCRYPT_DISK)
            return true;
    return false;
}

/* encrypt_desc gives descriptor |d| of an empty disk a fresh DEK wrapped
 * under the VM's KEK; the DEK goes to |*out_dek|. */
static vmenc_status encrypt_desc(vmenc_vm *vm, vm_disk_desc *d, vmenc_dek **out_dek) {
    vmenc_dek *dek = NULL;
    VMENC_GUARD(vmenc_dek_generate(&dek));
    vmenc_wrapped_key *wk = NULL;
    vmenc_status s = vm_new_wrapped(vm->host, vm_alias(vm), vm_kek(vm), dek, vm->vmx.uuid, d->disk_id, &wk);
    if (s != VMENC_OK) {
        vmenc_dek_free(dek);
        return s;
    }
    vmenc_wrapped_key_free(d->key_safe);
    d->key_safe = wk;
    d->encrypted = 1;
    d->state = VMENC_DISK_ENCRYPTED;
    snprintf(d->key_provider, sizeof(d->key_provider), "%s", vm_alias(vm));
    snprintf(d->kek_id, sizeof(d->kek_id), "%s", vm_kek(vm));
    *out_dek = dek;
    return VMENC_OK;
}

static vmenc_status append_disk(vmenc_vm *vm, const vm_disk_entry *e) {
    VMENC_ENSURE(vm->num_disks < VMENC_VM_MAX_DISKS, VMENC_E_LIMIT);
    vm_disk_entry *d = realloc(vm->disks, (vm->num_disks + 1) * sizeof(*d));
    VMENC_ENSURE(d != NULL, VMENC_E_NOMEM);
    vm->disks = d;
    d[vm->num_disks++] = *e;
    return VMENC_OK;
}

/* config_names: does NAME.vmx as stored now name descriptor |desc_name|?
 * Unknown (unreadable) counts as yes: keeping a file is the safe mistake. */
static bool config_names(const vmenc_vm *vm, const char *desc_name) {
    uint8_t *buf = NULL;
    size_t len = 0;
    if (vmenc_fs_read_file(vm->dirfd, vm->vmx_name, ((size_t)1 << 20) /* as vm.c reads it */, &buf, &len) != VMENC_OK)
        return true;
    char quoted[300];
    int q = snprintf(quoted, sizeof(quoted), "\"%s\"", desc_name);
    bool found = q > 0 && (size_t)q < sizeof(quoted) && memmem(buf, len, quoted, (size_t)q) != NULL;
    free(buf);
    return found;
}

static vmenc_status add_disk_locked(vmenc_vm *vm, const vmenc_disk_create_options *o, vm_op *op, char *id_out,
                                    size_t id_cap) {
    VMENC_GUARD(needs_keys(vm));
    vm_disk_entry e;
    memset(&e, 0, sizeof(e));
    if (o->disk_id != NULL) {
        VMENC_GUARD(vm_disk_id_check(o->disk_id));
        VMENC_ENSURE(vm_find_disk(vm, o->disk_id) < 0, VMENC_E_EXISTS);
        snprintf(e.disk_id, sizeof(e.disk_id), "%s", o->disk_id);
    } else {
        VMENC_GUARD(next_disk_id(vm, e.disk_id, sizeof(e.disk_id)));
    }
    snprintf(op->target, sizeof(op->target), "%s/%s", vm->vmx.name, e.disk_id);
    vm_disk_desc *d = &e.desc;
    VMENC_GUARD(disk_file_names(vm, o->file_base, e.desc_name, sizeof(e.desc_name), d->extent_file,
                                sizeof(d->extent_file)));
    snprintf(d->disk_id, sizeof(d->disk_id), "%s", e.disk_id);
    snprintf(d->vm_uuid, sizeof(d->vm_uuid), "%s", vm->vmx.uuid);
    d->capacity = o->capacity;
    d->sector_size = o->sector_size != 0 ? o->sector_size : 512;
    d->state = VMENC_DISK_PLAIN;
    vmenc_status s = VMENC_OK;
    if (disk_policy_encrypts(vm)) {
        VMENC_GUARD(encrypt_desc(vm, d, &e.dek));
        vm_op_add_key(op, d->key_provider, d->kek_id);
    }
    /* extent, then descriptor, then the configuration that names them */
    vm_extent *ext = NULL;
    uint32_t xflags = VM_EXTENT_CREATE | (vm_host_sync(vm->host) ? 0 : VM_EXTENT_NO_SYNC);
    VMENC_GUARD_GOTO(s, vm_extent_open(vm->dirfd, d->extent_file, d->capacity, d->sector_size, 0, NULL, xflags, &ext),
                     fail);
    (void)vm_extent_close(ext, false);
    VMENC_GUARD_GOTO(s, vm_write_descriptor(vm, e.desc_name, d), fail_extent);
    VMENC_GUARD_GOTO(s, append_disk(vm, &e), fail_desc);
    s = vm_write_config(vm);
    if (s != VMENC_OK) {
        /* the configuration may name the disk all the same (a failure
         * after its rename): its files stay then; otherwise (a full file
         * system before the rename) the disk leaves nothing behind */
        vm->num_disks--;
        if (!config_names(vm, e.desc_name)) {
            (void)unlinkat(vm->dirfd, e.desc_name, 0);
            (void)unlinkat(vm->dirfd, d->extent_file, 0);
        }
        vm_disk_desc_cleanup(d);
        vmenc_dek_free(e.dek);
        return s;
    }
    if (id_out != NULL)
        (void)vm_copy_string(id_out, id_cap, e.disk_id);
    return VMENC_OK;
fail_desc:
    (void)unlinkat(vm->dirfd, e.desc_name, 0);
fail_extent:
    (void)unlinkat(vm->dirfd, d->extent_file, 0);
fail:
    vmenc_dek_free(e.dek);
    vm_disk_desc_cleanup(d);
    return s;
}

vmenc_status vmenc_vm_add_disk(vmenc_vm *vm, const char *principal, const vmenc_disk_create_options *opts,
                               char *out_disk_id, size_t out_disk_id_cap) {
    VMENC_ENSURE(vm != NULL && opts != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(opts->struct_size >= ADD_DISK_OPTIONS_V1_SIZE, VMENC_E_ABI_VERSION);
    vm_op op;
    vm_op_init(&op, vm->host, principal, "vm.add_disk", vm->vmx.name);
    uint32_t ss = opts->sector_size != 0 ? opts->sector_size : 512;
    if (opts->flags != 0 || (ss != 512 && ss != 4096) || opts->capacity == 0 || opts->capacity % ss != 0 ||
        opts->capacity > VMENC_DISK_MAX_CAPACITY ||
        (out_disk_id != NULL && out_disk_id_cap < VMENC_DISK_ID_MAX + 1))
        return vm_op_finish(&op, VMENC_E_INVALID_ARG, "bad disk options");
    if (vm_is_encrypted(vm))
        vm_op_add_key(&op, vm_alias(vm), vm_kek(vm));
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_ADD_DISK, .vm = vm->vmx.name,
                               .datastore = opts->datastore, .flags = vm_flags(vm)};
    VMENC_GUARD(vm_op_authorize(&op, &rq));
    pthread_mutex_lock(&vm->lock);
    vmenc_status s = add_disk_locked(vm, opts, &op, out_disk_id, out_disk_id_cap);
    pthread_mutex_unlock(&vm->lock);
    return vm_op_finish(&op, s, NULL);
}

vmenc_status vmenc_vm_remove_disk(vmenc_vm *vm, const char *principal, const char *disk_id, uint32_t flags) {
    VMENC_ENSURE_REF(vm);
    vm_op op;
    vm_op_init(&op, vm->host, principal, "vm.remove_disk", vm->vmx.name);
    if (disk_id == NULL || (flags & ~VMENC_VM_REMOVE_DELETE_FILES) != 0)
        return vm_op_finish(&op, VMENC_E_INVALID_ARG, "bad arguments");
    snprintf(op.target, sizeof(op.target), "%s/%s", vm->vmx.name, disk_id);
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_EDIT_SETTINGS, .vm = vm->vmx.name,
                               .flags = vm_flags(vm)};
    VMENC_GUARD(vm_op_authorize(&op, &rq));
    pthread_mutex_lock(&vm->lock);
    vmenc_status s = needs_keys(vm);
    int i = s == VMENC_OK ? vm_find_disk(vm, disk_id) : -1;
    if (s == VMENC_OK && i < 0)
        s = VMENC_E_NOT_FOUND;
    if (s == VMENC_OK && vm->disks[i].open)
        s = VMENC_E_BAD_STATE;
    bool has_data = false; /* another process serving the disk keeps it (VMENC_E_LOCKED, holder named) */
    if (s == VMENC_OK && vm_disk_file_has_data(vm, (size_t)i, &has_data) == VMENC_E_LOCKED)
        s = VMENC_E_LOCKED;
    if (s == VMENC_OK) {
        vm_disk_entry gone = vm->disks[i];
        memmove(&vm->disks[i], &vm->disks[i + 1], (vm->num_disks - (size_t)i - 1) * sizeof(*vm->disks));
        vm->num_disks--;
        /* the configuration forgets the disk before its files go */
        s = vm_write_config(vm);
        if (s != VMENC_OK) {
            memmove(&vm->disks[i + 1], &vm->disks[i], (vm->num_disks - (size_t)i) * sizeof(*vm->disks));
            vm->disks[i] = gone;
            vm->num_disks++;
        } else {
            if (gone.desc.encrypted)
                vm_op_add_key(&op, gone.desc.key_provider, gone.desc.kek_id);
            if (flags & VMENC_VM_REMOVE_DELETE_FILES) {
                if (vm_disk_desc_converting(&gone.desc)) {
                    char cvt[300];
                    snprintf(cvt, sizeof(cvt), "%s.%llu.cvt", gone.desc.extent_file,
                             (unsigned long long)gone.desc.cvt_id);
                    (void)vmenc_fs_unlink(vm->dirfd, cvt);
                }
                (void)vmenc_fs_unlink(vm->dirfd, gone.desc.extent_file);
                (void)vmenc_fs_unlink(vm->dirfd, gone.desc_name);
                if (vm_host_sync(vm->host))
                    (void)vmenc_fs_fsync_dir(vm->dirfd);
            }
            vmenc_dek_free(gone.dek);
            vm_disk_desc_cleanup(&gone.desc);
        }
    }
    pthread_mutex_unlock(&vm->lock);
    return vm_op_finish(&op, s, NULL);
}

/* ---- shallow rekey ------------------------------------------------------------ */

/* rewrap_all re-wraps every key of |vm| under (alias, kek_id): descriptors
 * first, the configuration (VM key) last. Each record is replaced
 * atomically and names its own KEK, so any crash point opens. */
static vmenc_status rewrap_all(vmenc_vm *vm, const char *alias, const char *kek_id, vm_op *op) {
    for (size_t i = 0; i < vm->num_disks; i++) {
        vm_disk_entry *e = &vm->disks[i];
        if (!e->desc.encrypted)
            continue;
        vm_op_add_key(op, e->desc.key_provider, e->desc.kek_id);
        vmenc_wrapped_key *wk = NULL;
        VMENC_GUARD(vm_new_wrapped(vm->host, alias, kek_id, e->dek, vm->vmx.uuid, e->disk_id, &wk));
        vm_disk_desc d = e->desc;
        d.key_safe = wk;
        snprintf(d.key_provider, sizeof(d.key_provider), "%s", alias);
        snprintf(d.kek_id, sizeof(d.kek_id), "%s", kek_id);
        vmenc_status s = vm_write_descriptor(vm, e->desc_name, &d);
        if (s != VMENC_OK) {
            vmenc_wrapped_key_free(wk);
            return s;
        }
        vmenc_wrapped_key_free(e->desc.key_safe);
        e->desc = d;
    }
    vmenc_wrapped_key *wk = NULL;
    VMENC_GUARD(vm_new_wrapped(vm->host, alias, kek_id, vm->vm_key, vm->vmx.uuid, NULL, &wk));
    vmenc_wrapped_key *old = vm->vmx.key_safe;
    vm->vmx.key_safe = wk;
    vmenc_status s = vm_write_config(vm);
    if (s != VMENC_OK) {
        vm->vmx.key_safe = old;
        vmenc_wrapped_key_free(wk);
        return s;
    }
    vmenc_wrapped_key_free(old);
    return VMENC_OK;
}

/* any_converting: does a disk have an in-place conversion in progress? A
 * shallow rekey or a clone then waits for it: the descriptor holds two
 * keys and the extent two layouts (docs/reencryption.md). */
static bool any_converting(const vmenc_vm *vm) {
    if (vm->vmx.new_key_safe != NULL)
        return true; /* a deep rekey of the home is under way */
    for (size_t i = 0; i < vm->num_disks; i++)
        if (vm_disk_desc_converting(&vm->disks[i].desc))
            return true;
    return false;
}

/* drift_check: a shallow rekey to key provider |alias| when the VM's
 * storage policy names another one would leave the policy naming the old
 * provider, and its next application would silently re-key back (issue 24
 * item 4). The VM's record follows the rekey instead: it no longer claims
 * that policy (true: its keys are elsewhere now). |why| gets the sentence
 * for the audit event; *out_drift tells whether the policy must be
 * dropped. */
static void drift_check(vmenc_vm *vm, const char *alias, bool *out_drift, char *why, size_t why_cap) {
    *out_drift = false;
    if (alias == NULL || vm->vmx.storage_policy[0] == '\0')
        return;
    vmenc_vm_disk_state ds = {.encrypted = 0};
    vmenc_vm_crypto_state st = {.struct_size = sizeof(st), .num_disks = 1, .disks = &ds};
    vmenc_policy_action acts[VMENC_POLICY_MAX_ACTIONS(1)];
    size_t n = 0;
    if (vmenc_policy_plan_storage_policy(vm->host->policy, vm->vmx.storage_policy, &st, acts, VMENC_ARRAY_LEN(acts),
                                         &n) != VMENC_OK)
        return; /* a policy that is gone names no provider */
    for (size_t i = 0; i < n; i++) {
        if (acts[i].type != VMENC_ACTION_ENCRYPT_HOME || strcmp(acts[i].key_provider, alias) == 0)
            continue;
        snprintf(why, why_cap,
                 "storage policy \"%.200s\" names key provider \"%.63s\", not \"%.63s\": the VM no longer "
                 "follows it (apply a storage policy that names \"%.63s\" to record one)",
                 vm->vmx.storage_policy, acts[i].key_provider, alias, alias);
        *out_drift = true;
        return;
    }
}

static vmenc_status rekey_locked(vmenc_vm *vm, const char *alias, const char *kek_id, vm_op *op) {
    VMENC_ENSURE(vm_is_encrypted(vm) && !any_converting(vm), VMENC_E_BAD_STATE);
    VMENC_GUARD(needs_keys(vm));
    vm_op_add_key(op, vm_alias(vm), vm_kek(vm));
    char a[VMENC_PROVIDER_ALIAS_MAX + 1], id[VMENC_KMS_KEY_ID_CAP];
    VMENC_GUARD(vm_copy_string(a, sizeof(a), alias != NULL ? alias : vm_alias(vm)));
    if (kek_id != NULL)
        VMENC_GUARD(vm_copy_string(id, sizeof(id), kek_id));
    else
        VMENC_GUARD(vmenc_keymgr_create_kek(vm->host->keymgr, a, vm->vmx.name, vm->host->timeout_ms, id, sizeof(id)));
    vm_op_add_key(op, a, id);
    return rewrap_all(vm, a, id, op);
}

vmenc_status vmenc_vm_rekey_shallow(vmenc_vm *vm, const char *principal, const char *key_provider,
                                    const char *kek_id) {
    VMENC_ENSURE_REF(vm);
    vm_op op;
    vm_op_init(&op, vm->host, principal, "vm.rekey_shallow", vm->vmx.name);
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_REKEY_SHALLOW, .vm = vm->vmx.name,
                               .flags = vm_flags(vm)};
    VMENC_GUARD(vm_op_authorize(&op, &rq));
    pthread_mutex_lock(&vm->lock);
    char why[sizeof(vm->error_detail)] = "", old_policy[sizeof(vm->vmx.storage_policy)];
    bool drift = false;
    drift_check(vm, key_provider, &drift, why, sizeof(why));
    memcpy(old_policy, vm->vmx.storage_policy, sizeof(old_policy));
    if (drift) /* written with the new key records, in the same .vmx write */
        vm->vmx.storage_policy[0] = '\0';
    vmenc_status s = rekey_locked(vm, key_provider, kek_id, &op);
    if (s != VMENC_OK && drift)
        memcpy(vm->vmx.storage_policy, old_policy, sizeof(old_policy));
    pthread_mutex_unlock(&vm->lock);
    return vm_op_finish(&op, s, s == VMENC_OK && drift ? why : NULL);
}

/* ---- state files of the home -------------------------------------------------- */

/* vm_state_file_class recognises NAME.nvram, NAME.vmss, NAME-SnapshotN.vmsn/.vmem. */
bool vm_state_file_class(const char *vm_name, const char *file, vmenc_vm_file_class *cls, uint32_t *index) {
    size_t n = strlen(vm_name);
    if (strncmp(file, vm_name, n) != 0)
        return false;
    const char *rest = file + n;
    *index = 0;
    if (strcmp(rest, ".nvram") == 0) {
        *cls = VMENC_VM_FILE_NVRAM;
        return true;
    }
    if (strcmp(rest, ".vmss") == 0) {
        *cls = VMENC_VM_FILE_VMSS;
        return true;
    }
    unsigned idx;
    char ext[8];
    int used = 0;
    if (sscanf(rest, "-Snapshot%u.%5[a-z]%n", &idx, ext, &used) == 2 && rest[used] == '\0') {
        char canon[64];
        snprintf(canon, sizeof(canon), "-Snapshot%u.%s", idx, ext);
        if (strcmp(canon, rest) != 0)
            return false;
        *index = idx;
        if (strcmp(ext, "vmsn") == 0)
            *cls = VMENC_VM_FILE_VMSN;
        else if (strcmp(ext, "vmem") == 0)
            *cls = VMENC_VM_FILE_VMEM;
        else
            return false;
        return true;
    }
    return false;
}

typedef vmenc_status (*state_file_fn)(vmenc_vm *vm, const char *file, vmenc_vm_file_class cls, uint32_t index,
                                      void *arg);

/* for_each_state_file calls |fn| for every AEAD-class state file of |vm|. */
static vmenc_status for_each_state_file(vmenc_vm *vm, state_file_fn fn, void *arg) {
    int fd = dup(vm->dirfd);
    VMENC_ENSURE(fd >= 0, VMENC_E_IO);
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return VMENC_E_IO;
    }
    rewinddir(d);
    vmenc_status s = VMENC_OK;
    struct dirent *de;
    while (s == VMENC_OK && (de = readdir(d)) != NULL) {
        vmenc_vm_file_class cls;
        uint32_t index;
        if (vm_state_file_class(vm->vmx.name, de->d_name, &cls, &index))
            s = fn(vm, de->d_name, cls, index, arg);
    }
    closedir(d);
    return s;
}

static bool file_is_aead(int dirfd, const char *name) {
    int fd = -1; /* never a blocking open: a FIFO planted under a state file's name is not waited on */
    if (vm_imagelock_openat(dirfd, name, O_RDONLY, 0, &fd) != VMENC_OK)
        return false;
    uint8_t magic[8];
    bool yes = pread(fd, magic, sizeof(magic), 0) == (ssize_t)sizeof(magic) && memcmp(magic, "VMENCSF1", 8) == 0;
    close(fd);
    return yes;
}

typedef struct convert_arg {
    const vmenc_dek *from;
    const vmenc_dek *to;
} convert_arg;

/* convert_one rewrites one state file into its new form; a file already in
 * that form (an interrupted earlier run) is skipped, so re-applying a policy
 * finishes the job. */
static vmenc_status convert_one(vmenc_vm *vm, const char *file, vmenc_vm_file_class cls, uint32_t index,
                                void *arg) {
    const convert_arg *a = arg;
    bool aead = file_is_aead(vm->dirfd, file);
    if ((a->to != NULL) == aead && a->from == NULL)
        return VMENC_OK;
    if (a->to == NULL && !aead)
        return VMENC_OK;
    vm_sf_anchor anchor;
    vm_authority_sf_anchor(vm, &anchor);
    return vm_sf_convert_anchored(vm->dirfd, file, (uint8_t)cls, index, vm->vmx.uuid, a->from, vm->vmx.uuid, a->to,
                                  vm_host_sync(vm->host), &anchor);
}

/* rekey_one re-seals one state file of the home under the next VM key; a
 * file that already opens under it (an interrupted earlier run) is left. */
static vmenc_status rekey_one(vmenc_vm *vm, const char *file, vmenc_vm_file_class cls, uint32_t index, void *arg) {
    (void)arg;
    vm_sf *probe = NULL;
    vmenc_status s = vm_sf_open(vm->dirfd, file, (uint8_t)cls, index, vm->vmx.uuid, vm->new_vm_key,
                                VMENC_VM_FILE_READONLY, false, &probe);
    if (s == VMENC_OK)
        return vm_sf_close(probe);
    if (s != VMENC_E_AUTH)
        return s;
    vm_sf_anchor anchor;
    vm_authority_sf_anchor(vm, &anchor);
    return vm_sf_convert_anchored(vm->dirfd, file, (uint8_t)cls, index, vm->vmx.uuid, vm->vm_key, vm->vmx.uuid,
                                  vm->new_vm_key, vm_host_sync(vm->host), &anchor);
}

static void drop_swap(vmenc_vm *vm);

/* rekey_home_deep gives the VM home a new VM key (a deep rekey of the home:
 * NVRAM, suspend and snapshot files re-sealed, the sealed configuration
 * too). Crash-safe by ordering, each step atomic: (1) the next key, proven,
 * is written beside the current one (encryption.newKeySafe); (2) each
 * state file is converted (temp + rename) - meanwhile every file opens under
 * one key or the other, the AEAD telling which; (3) the configuration names
 * only the new key and is re-sealed under it. Re-running finishes an
 * interrupted run. VM lock held; the VM powered off. */
static vmenc_status rekey_home_deep(vmenc_vm *vm, vm_op *op) {
    const char *alias = vm_alias(vm), *kek = vm_kek(vm);
    vm_op_add_key(op, alias, kek);
    if (vm->vmx.new_key_safe == NULL) {
        vmenc_dek *next = NULL;
        vmenc_wrapped_key *wk = NULL;
        VMENC_GUARD(vmenc_dek_generate(&next));
        vmenc_status s = vm_new_wrapped(vm->host, alias, kek, next, vm->vmx.uuid, NULL, &wk);
        if (s == VMENC_OK) {
            vm->vmx.new_key_safe = wk;
            vm->new_vm_key = next;
            s = vm_write_config(vm);
            if (s != VMENC_OK) {
                vm->vmx.new_key_safe = NULL;
                vm->new_vm_key = NULL;
            }
        }
        if (s != VMENC_OK) {
            vmenc_wrapped_key_free(wk);
            vmenc_dek_free(next);
            return s;
        }
    }
    VMENC_ENSURE(vm->new_vm_key != NULL, VMENC_E_VM_LOCKED);
    drop_swap(vm);
    VMENC_GUARD(for_each_state_file(vm, rekey_one, NULL));
    vmenc_wrapped_key *old_wk = vm->vmx.key_safe;
    vmenc_dek *old_key = vm->vm_key;
    vm->vmx.key_safe = vm->vmx.new_key_safe;
    vm->vm_key = vm->new_vm_key;
    vm->vmx.new_key_safe = NULL;
    vm->new_vm_key = NULL;
    vmenc_status s = vm_write_config(vm); /* re-sealed under the new key */
    if (s != VMENC_OK) {
        vm->vmx.new_key_safe = vm->vmx.key_safe;
        vm->new_vm_key = vm->vm_key;
        vm->vmx.key_safe = old_wk;
        vm->vm_key = old_key;
        return s;
    }
    vmenc_wrapped_key_free(old_wk);
    vmenc_dek_free(old_key); /* wiped */
    return VMENC_OK;
}

static void drop_swap(vmenc_vm *vm) {
    char name[VMENC_VM_NAME_MAX + 16];
    if (vm_state_file_name(vm->vmx.name, VMENC_VM_FILE_VSWP, 0, name, sizeof(name)) == VMENC_OK)
        (void)vmenc_fs_unlink(vm->dirfd, name); /* swap holds nothing once powered off */
}

/* ---- apply a storage policy ---------------------------------------------------- */

static vmenc_status crypto_state(const vmenc_vm *vm, vmenc_vm_disk_state *disks, vmenc_vm_crypto_state *st) {
    memset(st, 0, sizeof(*st));
    st->struct_size = sizeof(*st);
    st->home_encrypted = vm_is_encrypted(vm);
    st->home_provider = st->home_encrypted ? vm_alias(vm) : NULL;
    st->num_disks = vm->num_disks;
    st->disks = disks;
    for (size_t i = 0; i < vm->num_disks; i++) {
        disks[i].encrypted = vm->disks[i].desc.encrypted;
        disks[i].key_provider = disks[i].encrypted ? vm->disks[i].desc.key_provider : NULL;
    }
    return VMENC_OK;
}

static vmenc_status authorize_plan(vmenc_vm *vm, vm_op *op, const vmenc_policy_action *acts, size_t n) {
    bool enc = false, dec = false, rekey = false;
    for (size_t i = 0; i < n; i++) {
        switch (acts[i].type) {
        case VMENC_ACTION_ENCRYPT_HOME:
        case VMENC_ACTION_ENCRYPT_DISK: enc = true; break;
        case VMENC_ACTION_DECRYPT_HOME:
        case VMENC_ACTION_DECRYPT_DISK: dec = true; break;
        case VMENC_ACTION_REKEY_HOME:
        case VMENC_ACTION_REKEY_DISK: rekey = true; break;
        default: break;
        }
    }
    const vmenc_policy_op ops[3] = {VMENC_OP_ENCRYPT_VM, VMENC_OP_DECRYPT_VM, VMENC_OP_REKEY_SHALLOW};
    const bool need[3] = {enc, dec, rekey};
    /* nothing to change still needs the right to edit the VM's settings */
    if (!enc && !dec && !rekey) {
        vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_EDIT_SETTINGS, .vm = vm->vmx.name,
                                   .flags = vm_flags(vm)};
        return vm_op_authorize(op, &rq);
    }
    for (size_t i = 0; i < 3; i++) {
        if (!need[i])
            continue;
        vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = ops[i], .vm = vm->vmx.name,
                                   .flags = vm_flags(vm)};
        VMENC_GUARD(vm_op_authorize(op, &rq));
    }
    return VMENC_OK;
}

/* policy_encrypts_home: would storage policy |name| encrypt a plain home? */
static bool policy_encrypts_home(const vmenc_vm *vm, const char *name) {
    vmenc_vm_crypto_state st = {.struct_size = sizeof(st)};
    vmenc_policy_action acts[VMENC_POLICY_MAX_ACTIONS(0)];
    size_t n = 0;
    if (vmenc_policy_plan_storage_policy(vm->host->policy, name, &st, acts, VMENC_ARRAY_LEN(acts), &n) != VMENC_OK)
        return false;
    for (size_t i = 0; i < n; i++)
        if (acts[i].type == VMENC_ACTION_ENCRYPT_HOME)
            return true;
    return false;
}

/* check_plan: the VM is powered off (nothing open) and its keys are here;
 * with VMENC_APPLY_ONLINE its disks may be open (they convert through
 * their handles), but no state file may be. Lock held. */
static vmenc_status check_plan_opts(vmenc_vm *vm, const vmenc_apply_options *o) {
    uint32_t disks_open = 0;
    if (o != NULL && (o->flags & VMENC_APPLY_ONLINE) != 0)
        for (size_t i = 0; i < vm->num_disks; i++)
            disks_open += vm->disks[i].open ? 1u : 0u;
    VMENC_ENSURE(vm->open_handles == disks_open, VMENC_E_BAD_STATE);
    return needs_keys(vm);
}

static vmenc_status encrypt_home(vmenc_vm *vm, const char *provider, vm_op *op) {
    char id[VMENC_KMS_KEY_ID_CAP];
    VMENC_GUARD(vmenc_keymgr_create_kek(vm->host->keymgr, provider, vm->vmx.name, vm->host->timeout_ms, id, sizeof(id)));
    vm_op_add_key(op, provider, id);
    vmenc_dek *key = NULL;
    VMENC_GUARD(vmenc_dek_generate(&key));
    vmenc_wrapped_key *wk = NULL;
    vm_kv *secret = NULL;
    vmenc_status s = vm_new_wrapped(vm->host, provider, id, key, vm->vmx.uuid, NULL, &wk);
    if (s == VMENC_OK)
        s = vm_kv_new(&secret);
    if (s != VMENC_OK) {
        vmenc_dek_free(key);
        vmenc_wrapped_key_free(wk);
        return s;
    }
    vm->vmx.key_safe = wk;
    vm->vm_key = key;
    vm->secret = secret;
    /* configuration first (it holds the key), then the files: a crash
     * between leaves plain files that re-applying the policy converts */
    s = vm_write_config(vm);
    if (s != VMENC_OK) {
        vm->vmx.key_safe = NULL;
        vm->vm_key = NULL;
        vm->secret = NULL;
        vmenc_wrapped_key_free(wk);
        vmenc_dek_free(key);
        vm_kv_free(secret);
        return s;
    }
    drop_swap(vm);
    convert_arg a = {.from = NULL, .to = vm->vm_key};
    return for_each_state_file(vm, convert_one, &a);
}

static vmenc_status decrypt_home(vmenc_vm *vm, vm_op *op) {
    vm_op_add_key(op, vm_alias(vm), vm_kek(vm));
    /* files first, then the configuration drops the key */
    convert_arg a = {.from = vm->vm_key, .to = NULL};
    VMENC_GUARD(for_each_state_file(vm, convert_one, &a));
    drop_swap(vm);
    for (size_t i = 0; i < vm_kv_num_entries(vm->secret); i++) {
        const char *k, *v;
        vm_kv_entry(vm->secret, i, &k, &v);
        if (strncmp(k, "vmenc.", 6) != 0)
            VMENC_GUARD(vm_kv_set(vm->vmx.kv, k, v)); /* secret entries become clear ones */
    }
    vmenc_wrapped_key *old = vm->vmx.key_safe;
    vm->vmx.key_safe = NULL;
    vmenc_status s = vm_write_config(vm);
    if (s != VMENC_OK) {
        vm->vmx.key_safe = old;
        return s;
    }
    vmenc_wrapped_key_free(old);
    vmenc_dek_free(vm->vm_key);
    vm->vm_key = NULL;
    vm_kv_free(vm->secret);
    vm->secret = NULL;
    return VMENC_OK;
}

static vmenc_status encrypt_disk(vmenc_vm *vm, size_t i, vm_op *op) {
    vm_disk_entry *e = &vm->disks[i];
    vm_disk_desc d = e->desc;
    d.key_safe = NULL;
    vmenc_dek *dek = NULL;
    VMENC_GUARD(encrypt_desc(vm, &d, &dek));
    vm_op_add_key(op, d.key_provider, d.kek_id);
    /* descriptor first; the sealed disk list follows with the config */
    vmenc_status s = vm_write_descriptor(vm, e->desc_name, &d);
    if (s != VMENC_OK) {
        vmenc_wrapped_key_free(d.key_safe);
        vmenc_dek_free(dek);
        return s;
    }
    e->desc = d;
    e->dek = dek;
    return vm_write_config(vm);
}

static vmenc_status decrypt_disk(vmenc_vm *vm, size_t i, vm_op *op) {
    vm_disk_entry *e = &vm->disks[i];
    vm_op_add_key(op, e->desc.key_provider, e->desc.kek_id);
    vm_disk_desc d = e->desc;
    d.key_safe = NULL;
    d.encrypted = 0;
    d.state = VMENC_DISK_PLAIN;
    d.key_provider[0] = d.kek_id[0] = '\0';
    /* the sealed list says "plain" before the descriptor does */
    vm_disk_desc old = e->desc;
    e->desc = d;
    vmenc_status s = vm_write_config(vm);
    if (s == VMENC_OK)
        s = vm_write_descriptor(vm, e->desc_name, &d);
    if (s != VMENC_OK) {
        e->desc = old;
        return s;
    }
    vmenc_wrapped_key_free(old.key_safe);
    vmenc_dek_free(e->dek);
    e->dek = NULL;
    return VMENC_OK;
}

/* run_action runs one planned action whose disk (if any) holds no data or
 * needs no data moved. VM lock held. */
static vmenc_status run_action(vmenc_vm *vm, const vmenc_policy_action *a, vm_op *op) {
    switch (a->type) {
    case VMENC_ACTION_ENCRYPT_HOME: return encrypt_home(vm, a->key_provider, op);
    case VMENC_ACTION_DECRYPT_HOME: return decrypt_home(vm, op);
    case VMENC_ACTION_ENCRYPT_DISK: return encrypt_disk(vm, a->disk, op);
    case VMENC_ACTION_DECRYPT_DISK: return decrypt_disk(vm, a->disk, op);
    case VMENC_ACTION_REKEY_HOME: return rekey_locked(vm, a->key_provider, NULL, op);
    case VMENC_ACTION_REKEY_DISK: return VMENC_OK; /* REKEY_HOME re-wraps every disk of the VM's KEK too */
    default: return VMENC_OK; /* core dumps and migration are recorded by the policy name */
    }
}

/* ---- rollback at the VM level ------------------------------------------------------ */

/* The record, sealed (the VM is encrypted while any disk converts):
 * "vmenc.rollback" = "<forward conversion ID> <home back to plain 0|1>
 * <disk ID>". One rollback at a time per VM. */
#define ROLLBACK_KEY "vmenc.rollback"

typedef struct rollback_note {
    unsigned long long forward_id;
    int home_back_plain;
    char disk_id[VMENC_DISK_ID_MAX + 1];
} rollback_note;

static bool rollback_get(const vmenc_vm *vm, rollback_note *out) {
    const char *v = vm->secret != NULL ? vm_kv_get(vm->secret, ROLLBACK_KEY) : NULL;
    memset(out, 0, sizeof(*out));
    int used = 0;
    return v != NULL && sscanf(v, "%llu %d %n", &out->forward_id, &out->home_back_plain, &used) == 2 &&
           used > 0 && vm_copy_string(out->disk_id, sizeof(out->disk_id), v + used) == VMENC_OK &&
           out->disk_id[0] != '\0';
}

vmenc_status vm_rollback_begin(vmenc_vm *vm, const vm_disk_entry *e, bool *out_turned) {
    *out_turned = false;
    rollback_note n;
    if (rollback_get(vm, &n) && strcmp(n.disk_id, e->disk_id) == 0 && n.forward_id != e->desc.cvt_id) {
        *out_turned = true; /* this disk turned round already: go on that way */
        return VMENC_OK;
    }
    VMENC_ENSURE(vm_is_encrypted(vm) && vm->secret != NULL, VMENC_E_VM_LOCKED);
    /* intent first: the authority record says a rollback is under way
     * before any file says so, in one write (a record that says "forward"
     * again between two writes would let a crash there undo the turn: a
     * retried rollback re-begins the operation) */
    ctl_vm_op op = {.kind = vm->vmx.applying_policy[0] != '\0'  ? CTL_OP_APPLY_POLICY
                            : e->desc.state == VMENC_DISK_ENCRYPTING ? CTL_OP_ENCRYPT
                            : e->desc.state == VMENC_DISK_DECRYPTING ? CTL_OP_DECRYPT
                                                                     : CTL_OP_REKEY_DEEP,
                    .direction = CTL_DIR_ROLLBACK};
    VMENC_GUARD(vm_authority_begin_op(vm, &op));
    VMENC_GUARD(vm_authority_turn_op(vm, CTL_DIR_ROLLBACK));
    /* the home goes back to plain if the policy being applied encrypted it:
     * the policy in force before does not encrypt a home */
    bool back_plain = vm->vmx.applying_policy[0] != '\0' &&
                      (vm->vmx.storage_policy[0] == '\0' || !policy_encrypts_home(vm, vm->vmx.storage_policy));
    char val[VMENC_DISK_ID_MAX + 48];
    snprintf(val, sizeof(val), "%llu %d %s", (unsigned long long)e->desc.cvt_id, back_plain ? 1 : 0, e->disk_id);
    const char *was = vm_kv_get(vm->secret, ROLLBACK_KEY);
    char *old = was != NULL ? strdup(was) : NULL;
    VMENC_ENSURE(was == NULL || old != NULL, VMENC_E_NOMEM);
    vmenc_status s = vm_kv_set(vm->secret, ROLLBACK_KEY, val);
    if (s == VMENC_OK)
        s = vm_write_config(vm);
    if (s != VMENC_OK) { /* (a failure after the rename leaves it recorded: as intended) */
        if (old != NULL)
            (void)vm_kv_set(vm->secret, ROLLBACK_KEY, old);
        else
            (void)vm_kv_remove(vm->secret, ROLLBACK_KEY);
    }
    free(old);
    return s;
}

/* record_rolls_back: does the authority record say the operation in
 * progress is being rolled back? */
static bool record_rolls_back(const vmenc_vm *vm) {
    const ctl_vm_record *r = vm_authority_record(vm);
    return r != NULL && r->op.kind != CTL_OP_NONE && r->op.direction == CTL_DIR_ROLLBACK;
}

/* rollback_not_turned: does the record say disk |disk_id|'s conversion is
 * being rolled back while its descriptor still names the forward one? The
 * note names the disk and the forward conversion; without a note, an
 * authority record that says "rollback" is a rollback cut short between
 * its intent and the note (vm_rollback_begin), before any disk turned:
 * the record is followed and the converting disk turned. */
static bool rollback_not_turned(vmenc_vm *vm, const char *disk_id) {
    pthread_mutex_lock(&vm->lock);
    rollback_note n;
    int i = vm_find_disk(vm, disk_id);
    bool converting = i >= 0 && vm_disk_desc_converting(&vm->disks[i].desc);
    bool yes = false;
    if (converting && rollback_get(vm, &n))
        yes = strcmp(n.disk_id, disk_id) == 0 && n.forward_id == vm->disks[i].desc.cvt_id;
    else if (converting)
        yes = record_rolls_back(vm);
    pthread_mutex_unlock(&vm->lock);
    return yes;
}

static bool any_disk_converting(const vmenc_vm *vm) {
    for (size_t i = 0; i < vm->num_disks; i++)
        if (vm_disk_desc_converting(&vm->disks[i].desc))
            return true;
    return false;
}

static bool any_disk_encrypted(const vmenc_vm *vm) {
    for (size_t i = 0; i < vm->num_disks; i++)
        if (vm->disks[i].desc.key_safe != NULL)
            return true;
    return false;
}

/* settle_locked: the pending policy is dropped and the note cleared in
 * one configuration write; a home going back to plain has its state files
 * decrypted first (decrypt_home's order), so a crash between leaves the
 * note for the next resume. */
static vmenc_status settle_locked(vmenc_vm *vm, vm_op *op) {
    rollback_note n;
    if (any_disk_converting(vm))
        return VMENC_OK;
    if (!rollback_get(vm, &n)) /* the note went, the record's end did not (a crash between) */
        return record_rolls_back(vm) ? vm_authority_end_op(vm) : VMENC_OK;
    char pending[sizeof(vm->vmx.applying_policy)];
    memcpy(pending, vm->vmx.applying_policy, sizeof(pending));
    char *note = strdup(vm_kv_get(vm->secret, ROLLBACK_KEY));
    VMENC_ENSURE(note != NULL, VMENC_E_NOMEM);
    vm->vmx.applying_policy[0] = '\0';
    vmenc_status s = vm_kv_remove(vm->secret, ROLLBACK_KEY);
    if (s == VMENC_OK && n.home_back_plain && !any_disk_encrypted(vm))
        s = decrypt_home(vm, op);
    else if (s == VMENC_OK)
        s = vm_write_config(vm);
    if (s != VMENC_OK) {
        memcpy(vm->vmx.applying_policy, pending, sizeof(pending));
        if (vm->secret != NULL)
            (void)vm_kv_set(vm->secret, ROLLBACK_KEY, note);
    }
    free(note);
    if (s == VMENC_OK)
        s = vm_authority_end_op(vm);
    if (s == VMENC_OK)
        s = vmenc_policy_set_vm_state(vm->host->policy, vm->vmx.name, vm->host->host_id, vm_is_encrypted(vm));
    return s;
}

vmenc_status vm_rollback_settle(vmenc_vm *vm, const char *principal) {
    pthread_mutex_lock(&vm->lock);
    rollback_note n;
    bool noted = rollback_get(vm, &n);
    bool due = (noted || record_rolls_back(vm)) && !any_disk_converting(vm);
    bool decrypts = due && noted && n.home_back_plain && !any_disk_encrypted(vm);
    pthread_mutex_unlock(&vm->lock);
    if (!due)
        return VMENC_OK;
    vm_op op;
    vm_op_init(&op, vm->host, principal, "vm.rollback", vm->vmx.name);
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = decrypts ? VMENC_OP_DECRYPT_VM : VMENC_OP_EDIT_SETTINGS,
                               .vm = vm->vmx.name, .flags = vm_flags(vm)};
    VMENC_GUARD(vm_op_authorize(&op, &rq));
    pthread_mutex_lock(&vm->lock);
    vmenc_status s = settle_locked(vm, &op);
    pthread_mutex_unlock(&vm->lock);
    return vm_op_finish(&op, s, NULL);
}

/* ---- in-place conversions of a powered-off VM's disks ------------------------------ */

/* one segment per step: the progress callback (and so a caller's Ctrl-C)
 * is heard after every segment */
#define CONVERT_STEP_BYTES 1u
#define APPLY_OPTIONS_V1_SIZE (offsetof(vmenc_apply_options, flags) + sizeof(uint32_t))

static const vmenc_apply_options k_no_apply_options = {.struct_size = sizeof(vmenc_apply_options)};

/* convert_disk runs (or, with |kind| 0, resumes) the conversion of disk
 * |disk_id| to the end through the public disk API, so it is authorized and
 * audited like any caller's. */
static vmenc_status convert_disk(vmenc_vm *vm, const char *principal, const char *disk_id, vmenc_convert_kind kind,
                                 const vmenc_apply_options *o) {
    vmenc_disk *d = NULL;
    if ((o->flags & VMENC_APPLY_ONLINE) != 0) { /* the running VM's own handle, its I/O going on */
        pthread_mutex_lock(&vm->lock);
        int i = vm_find_disk(vm, disk_id);
        d = i >= 0 && vm->disks[i].open ? vm->disks[i].handle : NULL;
        pthread_mutex_unlock(&vm->lock);
    }
    bool own = d == NULL;
    if (own)
        VMENC_GUARD(vmenc_disk_open(vm, principal, disk_id, 0, &d));
    vmenc_convert_progress p = {.struct_size = sizeof(p)};
    vmenc_status s = vmenc_disk_convert_get_progress(d, &p);
    if (s == VMENC_OK && p.done && kind != 0) {
        vmenc_convert_options co = {.struct_size = sizeof(co), .segment_bytes = o->segment_bytes};
        s = vmenc_disk_convert_begin(d, principal, kind, &co);
        p.done = 0;
    }
    /* a rollback recorded but not yet turned round (a crash between the
     * two) is turned now: resume goes the way the record says */
    if (s == VMENC_OK && !p.done && kind == 0 && rollback_not_turned(vm, disk_id))
        s = vmenc_disk_convert_rollback(d, principal);
    /* A resumed conversion whose segments had all moved was finished by the
     * open itself (a crash at its final commit): nothing left to step. */
    while (s == VMENC_OK && !p.done) {
        s = vmenc_disk_convert_step(d, CONVERT_STEP_BYTES, &p);
        if (s == VMENC_OK && o->progress != NULL && o->progress(o->progress_ctx, disk_id, &p) != 0 && !p.done)
            s = VMENC_E_INTERRUPTED;
        if (s == VMENC_OK && p.done)
            break;
    }
    vmenc_status cs = own ? vmenc_disk_close(d) : VMENC_OK;
    return s != VMENC_OK ? s : cs;
}

/* disk_ids_where copies the IDs of the disks matching |want| (VM lock
 * taken inside): the disk table may change while the lock is dropped. */
static size_t disk_ids_where(vmenc_vm *vm, bool (*want)(const vm_disk_desc *),
                             char ids[VMENC_VM_MAX_DISKS][VMENC_DISK_ID_MAX + 1]) {
    size_t n = 0;
    pthread_mutex_lock(&vm->lock);
    for (size_t i = 0; i < vm->num_disks && n < VMENC_VM_MAX_DISKS; i++)
        if (want(&vm->disks[i].desc))
            snprintf(ids[n++], VMENC_DISK_ID_MAX + 1, "%s", vm->disks[i].disk_id);
    pthread_mutex_unlock(&vm->lock);
    return n;
}

static bool is_converting(const vm_disk_desc *d) { return vm_disk_desc_converting(d); }
static bool is_encrypted_disk(const vm_disk_desc *d) { return d->state == VMENC_DISK_ENCRYPTED; }

/* finish_home_rekey completes an interrupted deep rekey of the home, as a
 * deep rekey (policy REKEY_DEEP, audited). */
static vmenc_status finish_home_rekey(vmenc_vm *vm, const char *principal, const vmenc_apply_options *o) {
    pthread_mutex_lock(&vm->lock);
    bool pending = vm->vmx.new_key_safe != NULL;
    pthread_mutex_unlock(&vm->lock);
    if (!pending)
        return VMENC_OK;
    vm_op op;
    vm_op_init(&op, vm->host, principal, "vm.rekey_deep_home", vm->vmx.name);
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_REKEY_DEEP, .vm = vm->vmx.name,
                               .flags = vm_flags(vm)};
    VMENC_GUARD(vm_op_authorize(&op, &rq));
    pthread_mutex_lock(&vm->lock);
    vmenc_status s = check_plan_opts(vm, o);
    if (s == VMENC_OK && vm->vmx.new_key_safe != NULL)
        s = rekey_home_deep(vm, &op);
    pthread_mutex_unlock(&vm->lock);
    return vm_op_finish(&op, s, NULL);
}

static vmenc_status resume_all(vmenc_vm *vm, const char *principal, const vmenc_apply_options *o) {
    char ids[VMENC_VM_MAX_DISKS][VMENC_DISK_ID_MAX + 1];
    size_t n = disk_ids_where(vm, is_converting, ids);
    for (size_t i = 0; i < n; i++)
        VMENC_GUARD(convert_disk(vm, principal, ids[i], 0, o));
    return finish_home_rekey(vm, principal, o);
}

static vmenc_status check_apply_options(const vmenc_apply_options **o) {
    if (*o == NULL) {
        *o = &k_no_apply_options;
        return VMENC_OK;
    }
    VMENC_ENSURE((*o)->struct_size >= APPLY_OPTIONS_V1_SIZE, VMENC_E_ABI_VERSION);
    VMENC_ENSURE(((*o)->flags & ~VMENC_APPLY_ONLINE) == 0, VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

/* ---- resume: the datastore as a restart would find it --------------------------- */

/* swap_state exchanges what two VM objects of the same home know of it
 * (configuration, keys, disks), not their identity (references, host,
 * lock, open handles). */
static void swap_state(vmenc_vm *a, vmenc_vm *b) {
#define SWAP(field)                      \
    do {                                 \
        __typeof__(a->field) t = a->field; \
        a->field = b->field;             \
        b->field = t;                    \
    } while (0)
    SWAP(dirfd);
    SWAP(vmx);
    SWAP(secret);
    SWAP(vm_key);
    SWAP(new_vm_key);
    SWAP(disks);
    SWAP(num_disks);
    SWAP(missing);
    SWAP(num_missing);
    SWAP(locked);
    SWAP(ctl);
#undef SWAP
}

/* reload reads the VM home again, as an open after a restart would: an
 * operation that failed after its last durable step (say an EIO on the
 * directory fsync after a rename) leaves the files saying more than the
 * handle does, and resume must follow the files. Only a VM with nothing
 * open is reloaded (an open disk keeps its entry). */
static vmenc_status reload(vmenc_vm *vm, const char *principal) {
    pthread_mutex_lock(&vm->lock);
    bool busy = vm->open_handles != 0;
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", vm->home_dir, vm->vmx_name);
    pthread_mutex_unlock(&vm->lock);
    if (busy)
        return VMENC_OK;
    VMENC_ENSURE(n > 0 && (size_t)n < sizeof(path), VMENC_E_BAD_PATH);
    vmenc_vm *fresh = NULL;
    vmenc_status s = vmenc_vm_open(vm->host, principal, path, &fresh);
    if (s != VMENC_OK) {
        if (fresh != NULL) { /* what named the file behind it, for vmenc_vm_get_error_detail */
            pthread_mutex_lock(&fresh->lock);
            char detail[sizeof(fresh->error_detail)];
            memcpy(detail, fresh->error_detail, sizeof(detail));
            pthread_mutex_unlock(&fresh->lock);
            pthread_mutex_lock(&vm->lock);
            if (detail[0] != '\0')
                memcpy(vm->error_detail, detail, sizeof(detail));
            pthread_mutex_unlock(&vm->lock);
        }
        vm_release(fresh); /* a locked VM comes back too */
        return s;
    }
    pthread_mutex_lock(&vm->lock);
    if (vm->open_handles == 0)
        swap_state(vm, fresh);
    pthread_mutex_unlock(&vm->lock);
    vm_release(fresh); /* frees the old state */
    return VMENC_OK;
}

/* tmp_base_len: is |name| a temporary of an atomic replacement,
 * "<base>.tmp-<16 hex>"? Then the length of <base>. */
static bool tmp_base_len(const char *name, size_t *out) {
    size_t n = strlen(name);
    if (n < 22 || memcmp(name + n - 21, ".tmp-", 5) != 0)
        return false;
    for (size_t i = n - 16; i < n; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return false;
    *out = n - 21;
    return true;
}

static bool ends_with(const char *s, size_t len, const char *suffix) {
    size_t k = strlen(suffix);
    return len >= k && memcmp(s + len - k, suffix, k) == 0;
}

/* cvt_named: is |name| the conversion state file a descriptor names? */
static bool cvt_named(const vmenc_vm *vm, const char *name) {
    for (size_t i = 0; i < vm->num_disks; i++) {
        const vm_disk_desc *d = &vm->disks[i].desc;
        char cvt[300];
        if (vm_disk_desc_converting(d) &&
            (size_t)snprintf(cvt, sizeof(cvt), "%s.%llu.cvt", d->extent_file, (unsigned long long)d->cvt_id) <
                sizeof(cvt) &&
            strcmp(cvt, name) == 0)
            return true;
    }
    return false;
}

/* stale_owner_record: is |name| an image lock's owner record ("FILE.lck",
 * lib/vm/io/imagelock.c) left by a process that died, for a file that is
 * itself debris (a temporary) or gone? Nobody can hold a lock on such a
 * file, so its record is only clutter. Records of live files stay: the lock
 * decides, the record is a hint that names a dead holder harmlessly. */
static bool stale_owner_record(int dirfd, const char *name) {
    size_t n = strlen(name);
    if (!ends_with(name, n, ".lck") || n - 4 >= 300)
        return false;
    char file[300];
    memcpy(file, name, n - 4);
    file[n - 4] = '\0';
    size_t base = 0;
    if (tmp_base_len(file, &base))
        return true;
    struct stat st;
    return fstatat(dirfd, file, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT;
}

/* wipe_file overwrites a regular file with zeros and syncs it before it is
 * unlinked: a configuration or descriptor temporary may hold a wrapped key
 * (a retired one, still unwrappable under a live KEK). */
static vmenc_status wipe_file(int dirfd, const char *name) {
    int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? VMENC_OK : vmenc_status_from_errno(errno);
    struct stat st;
    vmenc_status s = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? VMENC_OK : VMENC_E_BAD_PATH;
    static const uint8_t zeros[4096];
    for (uint64_t off = 0; s == VMENC_OK && off < (uint64_t)st.st_size; off += sizeof(zeros)) {
        uint64_t left = (uint64_t)st.st_size - off;
        s = vm_io_pwrite_all(fd, zeros, left < sizeof(zeros) ? (size_t)left : sizeof(zeros), off);
    }
    if (s == VMENC_OK)
        s = vmenc_fs_fsync(fd);
    close(fd);
    return s;
}

/* sweep_debris removes what interrupted operations leave in the home:
 * temporaries of atomic replacements ("*.tmp-<hex>", those of the
 * configuration and descriptors wiped first) and conversion state files no
 * descriptor names. Lock held, nothing open. */
static vmenc_status sweep_debris(vmenc_vm *vm) {
    int fd = dup(vm->dirfd);
    VMENC_ENSURE(fd >= 0, VMENC_E_IO);
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return VMENC_E_IO;
    }
    rewinddir(d);
    vmenc_status s = VMENC_OK;
    bool removed = false;
    struct dirent *de;
    while (s == VMENC_OK && (de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        size_t base = 0;
        bool tmp = tmp_base_len(n, &base);
        bool cvt = !tmp && ends_with(n, strlen(n), ".cvt") && !cvt_named(vm, n);
        bool lck = !tmp && !cvt && (stale_owner_record(vm->dirfd, n) || strcmp(n, CLONE_INTENT) == 0);
        if (lck) {
            if (vmenc_fs_name_check(n) != VMENC_OK)
                continue;
            s = vmenc_fs_unlink(vm->dirfd, n);
            if (s == VMENC_E_NOT_FOUND)
                s = VMENC_OK;
            removed = true;
            continue;
        }
        if (!tmp && !cvt)
            continue;
        if (vmenc_fs_name_check(n) != VMENC_OK)
            continue; /* never a name vmenc made */
        if (tmp && (ends_with(n, base, ".vmx") || ends_with(n, base, ".vmdk")))
            s = wipe_file(vm->dirfd, n);
        if (s == VMENC_OK) {
            s = vmenc_fs_unlink(vm->dirfd, n);
            if (s == VMENC_E_NOT_FOUND)
                s = VMENC_OK;
            removed = true;
        }
    }
    closedir(d);
    if (s == VMENC_OK && removed && vm_host_sync(vm->host))
        s = vmenc_fs_fsync_dir(vm->dirfd);
    return s;
}

static vmenc_status clean_home(vmenc_vm *vm) {
    pthread_mutex_lock(&vm->lock);
    vmenc_status s = vm->open_handles == 0 ? sweep_debris(vm) : VMENC_OK;
    pthread_mutex_unlock(&vm->lock);
    return s;
}

vmenc_status vmenc_vm_resume(vmenc_vm *vm, const char *principal, const vmenc_apply_options *opts) {
    VMENC_ENSURE_REF(vm);
    VMENC_GUARD(check_apply_options(&opts));
    VMENC_GUARD(reload(vm, principal));
    VMENC_GUARD(resume_all(vm, principal, opts));
    /* a rollback whose disks are all back takes the VM back (its pending
     * policy cancelled) before any pending policy is looked at */
    VMENC_GUARD(vm_rollback_settle(vm, principal));
    /* a storage policy whose application was interrupted is applied again:
     * what is done is skipped, the rest done (authorized as usual) */
    char pending[VMENC_POLICY_NAME_MAX + 1];
    pthread_mutex_lock(&vm->lock);
    snprintf(pending, sizeof(pending), "%s", vm->vmx.applying_policy);
    pthread_mutex_unlock(&vm->lock);
    if (pending[0] != '\0')
        VMENC_GUARD(vmenc_vm_apply_storage_policy_ex(vm, principal, pending, opts));
    return clean_home(vm);
}

vmenc_status vmenc_vm_rekey_deep(vmenc_vm *vm, const char *principal, const vmenc_apply_options *opts) {
    VMENC_ENSURE_REF(vm);
    vm_op op;
    vm_op_init(&op, vm->host, principal, "vm.rekey_deep", vm->vmx.name);
    vmenc_status s = check_apply_options(&opts);
    if (s != VMENC_OK)
        return vm_op_finish(&op, s, "bad options");
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_REKEY_DEEP, .vm = vm->vmx.name,
                               .flags = vm_flags(vm)};
    VMENC_GUARD(vm_op_authorize(&op, &rq));
    pthread_mutex_lock(&vm->lock);
    s = vm_is_encrypted(vm) ? check_plan_opts(vm, opts) : VMENC_E_BAD_STATE;
    pthread_mutex_unlock(&vm->lock);
    if (s == VMENC_OK)
        s = resume_all(vm, principal, opts);
    char ids[VMENC_VM_MAX_DISKS][VMENC_DISK_ID_MAX + 1];
    size_t n = s == VMENC_OK ? disk_ids_where(vm, is_encrypted_disk, ids) : 0;
    for (size_t i = 0; i < n && s == VMENC_OK; i++)
        s = convert_disk(vm, principal, ids[i], VMENC_CONVERT_REKEY, opts);
    if (s == VMENC_OK) { /* then the home: a new VM key for its files and sealed entries */
        pthread_mutex_lock(&vm->lock);
        s = check_plan_opts(vm, opts);
        if (s == VMENC_OK)
            s = rekey_home_deep(vm, &op);
        pthread_mutex_unlock(&vm->lock);
    }
    return vm_op_finish(&op, s, NULL);
}

/* disk_needs_move: a disk action whose disk holds data moves it in place. */
static vmenc_status disk_needs_move(vmenc_vm *vm, const vmenc_policy_action *a, bool *out) {
    *out = false;
    if (a->type != VMENC_ACTION_ENCRYPT_DISK && a->type != VMENC_ACTION_DECRYPT_DISK)
        return VMENC_OK;
    VMENC_ENSURE(a->disk < vm->num_disks, VMENC_E_INTERNAL);
    return vm_disk_file_has_data(vm, a->disk, out); /* refused while another process has it open */
}

vmenc_status vmenc_vm_apply_storage_policy_ex(vmenc_vm *vm, const char *principal, const char *name,
                                              const vmenc_apply_options *opts) {
    VMENC_ENSURE_REF(vm);
    vm_op op;
    vm_op_init(&op, vm->host, principal, "vm.apply_storage_policy", vm->vmx.name);
    if (name == NULL || name[0] == '\0' || strlen(name) > VMENC_POLICY_NAME_MAX)
        return vm_op_finish(&op, VMENC_E_INVALID_ARG, "no storage policy named");
    vmenc_status s = check_apply_options(&opts);
    if (s != VMENC_OK)
        return vm_op_finish(&op, s, "bad options");
    /* an interrupted conversion is finished first: the plan needs to know
     * each disk's state */
    if ((s = resume_all(vm, principal, opts)) != VMENC_OK)
        return vm_op_finish(&op, s, "an interrupted conversion could not be finished");
    pthread_mutex_lock(&vm->lock);
    vmenc_vm_disk_state disks[VMENC_VM_MAX_DISKS];
    vmenc_vm_crypto_state st;
    vmenc_policy_action acts[VMENC_POLICY_MAX_ACTIONS(VMENC_VM_MAX_DISKS)];
    size_t n = 0;
    s = crypto_state(vm, disks, &st);
    if (s == VMENC_OK)
        s = vmenc_policy_plan_storage_policy(vm->host->policy, name, &st, acts, VMENC_ARRAY_LEN(acts), &n);
    if (s != VMENC_OK) {
        pthread_mutex_unlock(&vm->lock);
        return vm_op_finish(&op, s, "cannot plan the storage policy");
    }
    s = authorize_plan(vm, &op, acts, n);
    if (s != VMENC_OK) {
        pthread_mutex_unlock(&vm->lock);
        return s;
    }
    s = check_plan_opts(vm, opts);
    /* resuming this policy's application: the home may have its key while
     * some state files are still plain (a crash between the two) */
    bool resuming = strcmp(vm->vmx.applying_policy, name) == 0;
    if (s == VMENC_OK && resuming && vm_is_encrypted(vm) && policy_encrypts_home(vm, name)) {
        convert_arg a = {.from = NULL, .to = vm->vm_key};
        s = for_each_state_file(vm, convert_one, &a);
    }
    /* Which disks move, asked of every disk before anything is recorded: a
     * disk another process has open refuses here (VMENC_E_LOCKED), and a
     * refused command must leave no "applying" mark for a later resume to
     * act on (nor rewrite the .vmx under the process that has the VM). */
    bool moves[VMENC_POLICY_MAX_ACTIONS(VMENC_VM_MAX_DISKS)] = {false};
    for (size_t i = 0; i < n && s == VMENC_OK; i++)
        s = disk_needs_move(vm, &acts[i], &moves[i]);
    if (s == VMENC_OK && n > 0 && !resuming) {
        /* Say durably which policy is being applied, so an interruption
         * (a crash, a stop from the progress callback) can be finished by
         * vmenc_vm_resume without the caller remembering it. */
        char before[sizeof(vm->vmx.applying_policy)];
        memcpy(before, vm->vmx.applying_policy, sizeof(before));
        snprintf(vm->vmx.applying_policy, sizeof(vm->vmx.applying_policy), "%s", name);
        s = vm_write_config(vm);
        if (s != VMENC_OK)
            memcpy(vm->vmx.applying_policy, before, sizeof(before));
    }
    for (size_t i = 0; i < n && s == VMENC_OK; i++) {
        bool move = moves[i];
        /* an open disk's extent is read and written through its handle:
         * only the engine may change its key, even when it holds no data */
        if ((opts->flags & VMENC_APPLY_ONLINE) != 0 && acts[i].disk < vm->num_disks &&
            vm->disks[acts[i].disk].open &&
            (acts[i].type == VMENC_ACTION_ENCRYPT_DISK || acts[i].type == VMENC_ACTION_DECRYPT_DISK))
            move = true;
        if (!move) {
            s = run_action(vm, &acts[i], &op);
            continue;
        }
        char id[VMENC_DISK_ID_MAX + 1];
        snprintf(id, sizeof(id), "%s", vm->disks[acts[i].disk].disk_id);
        vmenc_convert_kind kind =
            acts[i].type == VMENC_ACTION_ENCRYPT_DISK ? VMENC_CONVERT_ENCRYPT : VMENC_CONVERT_DECRYPT;
        pthread_mutex_unlock(&vm->lock); /* the disk API takes it itself */
        s = convert_disk(vm, principal, id, kind, opts);
        pthread_mutex_lock(&vm->lock);
    }
    if (s == VMENC_OK) {
        snprintf(vm->vmx.storage_policy, sizeof(vm->vmx.storage_policy), "%s", name);
        vm->vmx.applying_policy[0] = '\0';
        s = vm_write_config(vm);
    }
    if (s == VMENC_OK)
        s = vmenc_policy_set_vm_state(vm->host->policy, vm->vmx.name, vm->host->host_id, vm_is_encrypted(vm));
    pthread_mutex_unlock(&vm->lock);
    return vm_op_finish(&op, s, NULL);
}

vmenc_status vmenc_vm_apply_storage_policy(vmenc_vm *vm, const char *principal, const char *name) {
    return vmenc_vm_apply_storage_policy_ex(vm, principal, name, NULL);
}

/* ---- clone ------------------------------------------------------------------------ */

typedef struct clone_ctx {
    vmenc_vm *src;
    vmenc_vm *dst;
} clone_ctx;

/* copy_state_file re-encrypts one state file into the clone (state files
 * are bound to their VM, so even a clone that keeps keys rewrites them). */
static vmenc_status copy_state_file(vmenc_vm *src, const char *file, vmenc_vm_file_class cls, uint32_t index,
                                    void *arg) {
    clone_ctx *c = arg;
    char dst_name[VMENC_VM_NAME_MAX + 32];
    VMENC_GUARD(vm_state_file_name(c->dst->vmx.name, cls, index, dst_name, sizeof(dst_name)));
    bool sync = vm_host_sync(src->host);
    vm_sf *in = NULL, *out = NULL;
    /* the source's ID is checked against its record (no older copy is
     * cloned), the clone's new file is anchored in the clone's record */
    vm_sf_anchor sa, da;
    vm_authority_sf_anchor(src, &sa);
    vm_authority_sf_anchor(c->dst, &da);
    VMENC_GUARD(vm_sf_open_anchored(src->dirfd, file, (uint8_t)cls, index, src->vmx.uuid, src->vm_key,
                                    VMENC_VM_FILE_READONLY, sync, NULL, NULL, &sa, &in));
    vmenc_status s = vm_sf_open_anchored(c->dst->dirfd, dst_name, (uint8_t)cls, index, c->dst->vmx.uuid,
                                         c->dst->vm_key, VMENC_VM_FILE_CREATE | VMENC_VM_FILE_TRUNCATE, sync, NULL,
                                         NULL, &da, &out);
    uint8_t *buf = s == VMENC_OK ? malloc(COPY_CHUNK) : NULL;
    if (s == VMENC_OK && buf == NULL)
        s = VMENC_E_NOMEM;
    for (uint64_t off = 0; s == VMENC_OK;) {
        size_t got = 0;
        s = vm_sf_pread(in, off, COPY_CHUNK, buf, &got);
        if (s != VMENC_OK || got == 0)
            break;
        s = vm_sf_pwrite(out, off, buf, got);
        off += got;
    }
    if (buf != NULL) {
        vmenc_memzero(buf, COPY_CHUNK);
        free(buf);
    }
    (void)vm_sf_close(in);
    vmenc_status cs = out != NULL ? vm_sf_close(out) : VMENC_OK;
    return s != VMENC_OK ? s : cs;
}

/* copy_extent copies a disk's data, skipping holes (both sides read zeros
 * there), decrypting with the source's cipher and encrypting with the
 * clone's, or byte for byte when both are NULL (raw ciphertext, kept keys). */
static vmenc_status copy_extent(vmenc_vm *src, const vm_disk_desc *sd, vmenc_xts *sx, vmenc_vm *dst,
                                const vm_disk_desc *dd, vmenc_xts *dx) {
    bool sync = vm_host_sync(src->host);
    vm_extent *in = NULL, *out = NULL;
    VMENC_GUARD(vm_extent_open(src->dirfd, sd->extent_file, sd->capacity, sd->sector_size, sd->data_offset, sx,
                               VM_EXTENT_READONLY, &in));
    vmenc_status s = vm_extent_open(dst->dirfd, dd->extent_file, dd->capacity, dd->sector_size, 0, dx,
                                    VM_EXTENT_CREATE | (sync ? 0 : VM_EXTENT_NO_SYNC), &out);
    if (s != VMENC_OK) {
        (void)vm_extent_close(in, false);
        vmenc_xts_free(dx);
        return s;
    }
    int rfd = openat(src->dirfd, sd->extent_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    uint8_t *buf = malloc(COPY_CHUNK);
    if (rfd < 0 || buf == NULL)
        s = rfd < 0 ? vmenc_status_from_errno(errno) : VMENC_E_NOMEM;
    uint64_t off = 0, cap = sd->capacity, ss = sd->sector_size, base = sd->data_offset;
    while (s == VMENC_OK && off < cap) {
        off_t data = lseek(rfd, (off_t)(base + off), SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break; /* only holes remain */
        if (data >= 0) /* (no SEEK_DATA at all: copy everything from here) */
            off = ((uint64_t)data - base) & ~(ss - 1);
        off_t hole = lseek(rfd, (off_t)(base + off), SEEK_HOLE);
        uint64_t end = hole < 0 ? cap : ((uint64_t)hole - base + ss - 1) & ~(ss - 1);
        if (end > cap)
            end = cap;
        while (s == VMENC_OK && off < end) {
            size_t n = (size_t)(end - off < COPY_CHUNK ? end - off : COPY_CHUNK);
            s = vm_extent_pread(in, off, n, buf);
            if (s == VMENC_OK)
                s = vm_extent_pwrite(out, off, buf, n);
            off += n;
        }
    }
    if (rfd >= 0)
        close(rfd);
    if (buf != NULL) {
        vmenc_memzero(buf, COPY_CHUNK);
        free(buf);
    }
    (void)vm_extent_close(in, false);
    vmenc_status cs = vm_extent_close(out, true);
    return s != VMENC_OK ? s : cs;
}

static vmenc_status clone_disk(clone_ctx *c, size_t i, bool keep_keys, vm_op *op) {
    vmenc_vm *src = c->src, *dst = c->dst;
    const vm_disk_entry *se = &src->disks[i];
    vm_disk_entry e;
    memset(&e, 0, sizeof(e));
    snprintf(e.disk_id, sizeof(e.disk_id), "%s", se->disk_id);
    vm_disk_desc *d = &e.desc;
    VMENC_GUARD(disk_file_names(dst, NULL, e.desc_name, sizeof(e.desc_name), d->extent_file, sizeof(d->extent_file)));
    snprintf(d->disk_id, sizeof(d->disk_id), "%s", e.disk_id);
    snprintf(d->vm_uuid, sizeof(d->vm_uuid), "%s", dst->vmx.uuid);
    d->capacity = se->desc.capacity;
    d->sector_size = se->desc.sector_size;
    d->state = VMENC_DISK_PLAIN;
    vmenc_status s = VMENC_OK;
    vmenc_xts *sx = NULL, *dx = NULL;
    bool encrypted = vm_is_encrypted(dst) && (se->desc.encrypted || disk_policy_encrypts(dst));
    if (encrypted && keep_keys && se->desc.encrypted) {
        VMENC_GUARD(vmenc_dek_new_from_bytes(vmenc_dek_bytes_internal(se->dek), VMENC_DEK_BYTES, &e.dek));
        VMENC_GUARD_GOTO(s, vm_new_wrapped(dst->host, vm_alias(dst), vm_kek(dst), e.dek, dst->vmx.uuid, e.disk_id,
                                           &d->key_safe), fail);
        d->encrypted = 1;
        d->state = VMENC_DISK_ENCRYPTED;
        snprintf(d->key_provider, sizeof(d->key_provider), "%s", vm_alias(dst));
        snprintf(d->kek_id, sizeof(d->kek_id), "%s", vm_kek(dst));
        /* same DEK: the ciphertext is copied as it is (sx = dx = NULL) */
    } else {
        if (encrypted)
            VMENC_GUARD_GOTO(s, encrypt_desc(dst, d, &e.dek), fail);
        if (se->desc.encrypted)
            VMENC_GUARD_GOTO(s, vmenc_xts_new_from_dek(se->dek, se->desc.sector_size, &sx), fail);
        if (encrypted)
            VMENC_GUARD_GOTO(s, vmenc_xts_new_from_dek(e.dek, d->sector_size, &dx), fail);
    }
    if (d->encrypted)
        vm_op_add_key(op, d->key_provider, d->kek_id);
    s = copy_extent(src, &se->desc, sx, dst, d, dx);
    sx = dx = NULL; /* taken over by the extents */
    VMENC_GUARD_GOTO(s, s, fail);
    VMENC_GUARD_GOTO(s, vm_write_descriptor(dst, e.desc_name, d), fail);
    VMENC_GUARD_GOTO(s, append_disk(dst, &e), fail);
    return VMENC_OK;
fail:
    vmenc_xts_free(sx);
    vmenc_xts_free(dx);
    vmenc_dek_free(e.dek);
    vm_disk_desc_cleanup(d);
    return s;
}

/* empty_dir deletes every file (not directory) in |dirfd|. */
static void empty_dir(int dirfd) {
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;
    /* a dup shares the directory's offset: a walk before may have left it
     * at the end (vm_make_home_intent's probe), which made this see nothing */
    if (d != NULL)
        rewinddir(d);
    while (d != NULL && (de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            (void)unlinkat(dirfd, de->d_name, 0);
    if (d != NULL)
        closedir(d);
    else if (fd >= 0)
        close(fd);
}

/* remove_home deletes every file vmenc may have made in a clone's home. */
static void remove_home(vmenc_vm *dst, const char *dir, bool created) {
    empty_dir(dst->dirfd);
    if (created)
        (void)rmdir(dir);
}


vmenc_status vm_make_home_intent(const char *dir, const char *name, bool sync, bool *created, int *out_fd) {
    vmenc_status s = vm_make_home(dir, created, out_fd);
    if (s == VMENC_E_EXISTS) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            return VMENC_E_EXISTS;
        uint8_t *buf = NULL;
        size_t len = 0;
        bool ours = vmenc_fs_read_file(fd, CLONE_INTENT, 256, &buf, &len) == VMENC_OK && len == strlen(name) &&
                    memcmp(buf, name, len) == 0;
        free(buf);
        if (!ours) { /* a crash while the intent itself was written: nothing but its temporaries */
            int probe = dup(fd);
            DIR *d = probe >= 0 ? fdopendir(probe) : NULL;
            struct dirent *de;
            size_t seen = 0, temps = 0, base = 0;
            while (d != NULL && (de = readdir(d)) != NULL) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                    continue;
                seen++;
                if (tmp_base_len(de->d_name, &base) && base == strlen(CLONE_INTENT) &&
                    memcmp(de->d_name, CLONE_INTENT, base) == 0)
                    temps++;
            }
            if (d != NULL)
                closedir(d);
            else if (probe >= 0)
                close(probe);
            ours = d != NULL && seen > 0 && seen == temps;
        }
        if (!ours) {
            close(fd);
            return VMENC_E_EXISTS;
        }
        empty_dir(fd); /* the crashed clone's files: built under keys nothing names any more */
        *created = false;
        *out_fd = fd;
        s = VMENC_OK;
    }
    if (s != VMENC_OK)
        return s;
    s = vmenc_fs_atomic_write(*out_fd, CLONE_INTENT, (const uint8_t *)name, strlen(name), sync);
    if (s != VMENC_OK) {
        (void)unlinkat(*out_fd, CLONE_INTENT, 0);
        if (*created)
            (void)rmdir(dir);
        close(*out_fd);
        *out_fd = -1;
    }
    return s;
}

static vmenc_status clone_build(vmenc_vm *src, const vmenc_vm_clone_options *o, bool enc, const char *provider,
                            const char *policy_name, vmenc_vm *dst, vm_op *op) {
    bool keep = (o->flags & VMENC_VM_CLONE_KEEP_KEYS) != 0;
    VMENC_GUARD(vm_kv_new(&dst->vmx.kv));
    /* the clone starts from the source's clear entries */
    for (size_t i = 0; i < vm_kv_num_entries(src->vmx.kv); i++) {
        const char *k, *v;
        vm_kv_entry(src->vmx.kv, i, &k, &v);
        if (strncmp(k, "encryption.", 11) != 0 && strncmp(k, "vmenc.", 6) != 0 && strncmp(k, "scsi", 4) != 0)
            VMENC_GUARD(vm_kv_set(dst->vmx.kv, k, v));
    }
    snprintf(dst->vmx.name, sizeof(dst->vmx.name), "%s", o->name);
    snprintf(dst->vmx_name, sizeof(dst->vmx_name), "%s.vmx", o->name);
    dst->vmx.memory_bytes = src->vmx.memory_bytes;
    snprintf(dst->vmx.storage_policy, sizeof(dst->vmx.storage_policy), "%s", policy_name);
    VMENC_GUARD(vm_new_uuid(dst->vmx.uuid));
    dst->disks = calloc(1, sizeof(*dst->disks));
    VMENC_ENSURE(dst->disks != NULL, VMENC_E_NOMEM);
    if (enc) {
        char id[VMENC_KMS_KEY_ID_CAP];
        if (keep && vm_is_encrypted(src) && strcmp(provider, vm_alias(src)) == 0) {
            VMENC_GUARD(vm_copy_string(id, sizeof(id), vm_kek(src)));
            VMENC_GUARD(vmenc_dek_new_from_bytes(vmenc_dek_bytes_internal(src->vm_key), VMENC_DEK_BYTES, &dst->vm_key));
        } else {
            VMENC_GUARD(vmenc_keymgr_create_kek(dst->host->keymgr, provider, o->name, dst->host->timeout_ms, id,
                                                sizeof(id)));
            VMENC_GUARD(vmenc_dek_generate(&dst->vm_key));
        }
        vm_op_add_key(op, provider, id);
        VMENC_GUARD(vm_new_wrapped(dst->host, provider, id, dst->vm_key, dst->vmx.uuid, NULL, &dst->vmx.key_safe));
        VMENC_GUARD(vm_kv_new(&dst->secret));
        if (src->secret != NULL)
            for (size_t i = 0; i < vm_kv_num_entries(src->secret); i++) {
                const char *k, *v;
                vm_kv_entry(src->secret, i, &k, &v);
                if (strncmp(k, "vmenc.", 6) != 0)
                    VMENC_GUARD(vm_kv_set(dst->secret, k, v));
            }
    } else if (src->secret != NULL) {
        for (size_t i = 0; i < vm_kv_num_entries(src->secret); i++) {
            const char *k, *v;
            vm_kv_entry(src->secret, i, &k, &v);
            if (strncmp(k, "vmenc.", 6) != 0)
                VMENC_GUARD(vm_kv_set(dst->vmx.kv, k, v));
        }
    }
    for (size_t i = 0; i < src->num_disks; i++)
        VMENC_GUARD(clone_disk(&(clone_ctx){src, dst}, i, keep, op));
    clone_ctx c = {src, dst};
    VMENC_GUARD(for_each_state_file(src, copy_state_file, &c));
    return vm_write_config(dst);
}

static vmenc_status clone_target(vmenc_vm *src, const vmenc_vm_clone_options *o, bool *enc, char *provider,
                                 size_t provider_cap, char *policy_name, size_t policy_cap) {
    provider[0] = '\0';
    if (o->storage_policy == NULL) {
        *enc = vm_is_encrypted(src);
        if (*enc)
            VMENC_GUARD(vm_copy_string(provider, provider_cap, vm_alias(src)));
        return vm_copy_string(policy_name, policy_cap, src->vmx.storage_policy);
    }
    VMENC_GUARD(vm_copy_string(policy_name, policy_cap, o->storage_policy));
    *enc = false;
    if (o->storage_policy[0] == '\0')
        return VMENC_OK;
    vmenc_vm_disk_state ds = {.encrypted = 0};
    vmenc_vm_crypto_state st = {.struct_size = sizeof(st), .num_disks = 1, .disks = &ds};
    vmenc_policy_action acts[VMENC_POLICY_MAX_ACTIONS(1)];
    size_t n = 0;
    VMENC_GUARD(vmenc_policy_plan_storage_policy(src->host->policy, o->storage_policy, &st, acts,
                                                 VMENC_ARRAY_LEN(acts), &n));
    for (size_t i = 0; i < n; i++)
        if (acts[i].type == VMENC_ACTION_ENCRYPT_HOME) {
            *enc = true;
            VMENC_GUARD(vm_copy_string(provider, provider_cap, acts[i].key_provider));
        }
    return VMENC_OK;
}

vmenc_status vmenc_vm_clone(vmenc_vm *vm, const vmenc_vm_clone_options *o, vmenc_vm **out) {
    VMENC_ENSURE(vm != NULL && o != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(o->struct_size >= CLONE_OPTIONS_V1_SIZE, VMENC_E_ABI_VERSION);
    vmenc_host *host = vm->host;
    vm_op op;
    vm_op_init(&op, host, o->principal, "vm.clone", vm->vmx.name);
    vmenc_status s;
    if ((o->flags & ~VMENC_VM_CLONE_KEEP_KEYS) != 0 || o->home_dir == NULL || o->folder == NULL)
        return vm_op_finish(&op, VMENC_E_INVALID_ARG, "bad clone options");
    if ((s = vm_vm_name_check(o->name)) != VMENC_OK)
        return vm_op_finish(&op, s, "bad VM name");
    bool enc = false;
    char provider[VMENC_PROVIDER_ALIAS_MAX + 1], policy_name[VMENC_POLICY_NAME_MAX + 1];
    if ((s = clone_target(vm, o, &enc, provider, sizeof(provider), policy_name, sizeof(policy_name))) != VMENC_OK)
        return vm_op_finish(&op, s, "storage policy");
    if ((o->flags & VMENC_VM_CLONE_KEEP_KEYS) && (!enc || !vm_is_encrypted(vm)))
        return vm_op_finish(&op, VMENC_E_INVALID_ARG, "keep_keys needs an encrypted source and clone");
    if (vm_is_encrypted(vm))
        vm_op_add_key(&op, vm_alias(vm), vm_kek(vm));
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_CLONE_VM, .vm = vm->vmx.name,
                               .folder = o->folder, .pool = o->pool, .datastore = o->datastore,
                               .flags = vm_flags(vm) | (enc ? VMENC_REQ_TARGET_ENCRYPTED : 0)};
    VMENC_GUARD(vm_op_authorize(&op, &rq));
    int has = 0;
    s = vmenc_policy_has_privilege(host->policy, o->principal, o->name, VMENC_PRIV_SYSTEM_READ, &has);
    if (s != VMENC_E_NOT_FOUND)
        return vm_op_finish(&op, s == VMENC_OK ? VMENC_E_EXISTS : s, "the name is taken in the inventory");
    pthread_mutex_lock(&vm->lock);
    s = needs_keys(vm);
    if (s == VMENC_OK && (vm->open_handles != 0 || any_converting(vm)))
        s = VMENC_E_BAD_STATE;
    bool created = false;
    vmenc_vm *dst = NULL;
    int dirfd = -1;
    if (s == VMENC_OK)
        s = vm_make_home_intent(o->home_dir, o->name, vm_host_sync(host), &created, &dirfd);
    if (s == VMENC_OK && (s = vm_alloc(host, o->home_dir, dirfd, &dst)) != VMENC_OK)
        close(dirfd);
    if (s == VMENC_OK) {
        s = clone_build(vm, o, enc, provider, policy_name, dst, &op);
        if (s == VMENC_OK)
            s = vmenc_policy_add_object(host->policy, o->name, VMENC_OBJ_VM, o->folder);
        if (s == VMENC_OK)
            s = vmenc_policy_set_vm_state(host->policy, o->name, host->host_id, enc);
        if (s != VMENC_OK) {
            remove_home(dst, o->home_dir, created);
            vm_release(dst);
            dst = NULL;
        }
    } else if (created) {
        (void)rmdir(o->home_dir);
    }
    pthread_mutex_unlock(&vm->lock);
    s = vm_op_finish(&op, s, NULL);
    if (s != VMENC_OK) {
        vm_release(dst);
        return s;
    }
    *out = dst;
    return VMENC_OK;
}
