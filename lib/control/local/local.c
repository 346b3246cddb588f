/*
 * lib/control/local/local.c - the local control store: the single-host
 * backend behind lib/control/control.h. One file per VM,
 * DIR/vms/<uuid>, holding the record's canonical bytes (record.c)
 * followed by a BLAKE2b-256 MAC under a key the workspace derives from its
 * audit chain key; a lock per record, DIR/vms.lock.<uuid>, serialises
 * every compare-and-swap of that record between threads and processes;
 * reads take no lock (files are replaced whole). A write killed half way
 * leaves its temporary (DIR/vms/<uuid>.tmp-<16 hex>); opening the store
 * removes those, each under its record's lock, which every writer holds
 * while its temporary exists. Files and rules: docs/control.md, "The
 * local backend".
 *
 * Safety rule: a put returns VMENC_OK only after the new file and its
 * directory are on disk (when the store syncs), and nothing of a file is
 * believed before its MAC -- which binds the VM's UUID, so a record cannot
 * be moved to another VM's name -- checks out in constant time.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/control.h"
#include "core/fs.h"
#include "core/lock.h"

#define LOCAL_FILE_MAX ((size_t)512 << 10)
#define LOCAL_LOCK_TIMEOUT_MS 30000u

static const char k_mac_domain[] = "vmenc-control-v1 local record\n";

typedef struct ctl_local {
    ctl_store base;          /* first: the store handle is this */
    char *lock_path;         /* DIR/vms.lock */
    int dirfd;               /* DIR/vms */
    vmenc_secret *key;
    bool sync;
} ctl_local;

static const ctl_store_ops k_ops;

static ctl_local *local_of(ctl_store *s) { return (ctl_local *)s; }

static vmenc_status record_mac(const ctl_local *l, const char *uuid, const uint8_t *body, size_t len,
                               uint8_t out[CTL_HASH_BYTES]) {
    crypto_generichash_state st;
    uint8_t ulen = (uint8_t)strlen(uuid);
    int rc = crypto_generichash_init(&st, l->key->bytes, l->key->len, CTL_HASH_BYTES);
    rc |= crypto_generichash_update(&st, (const uint8_t *)k_mac_domain, sizeof(k_mac_domain) - 1);
    rc |= crypto_generichash_update(&st, &ulen, 1);
    rc |= crypto_generichash_update(&st, (const uint8_t *)uuid, ulen);
    rc |= crypto_generichash_update(&st, body, len);
    rc |= crypto_generichash_final(&st, out, CTL_HASH_BYTES);
    return rc == 0 ? VMENC_OK : VMENC_E_CRYPTO;
}

/* read_record: the stored record of |uuid| (VMENC_E_NOT_FOUND, VMENC_E_AUTH
 * for a MAC that fails or a body that does not parse under a good MAC is
 * impossible -- a parse error there is reported as VMENC_E_AUTH too, since
 * only the library writes these files). */
static vmenc_status read_record(ctl_local *l, const char *uuid, ctl_vm_record *out) {
    VMENC_GUARD(vmenc_fs_name_check(uuid));
    uint8_t *data = NULL;
    size_t len = 0;
    VMENC_GUARD(vmenc_fs_read_file(l->dirfd, uuid, LOCAL_FILE_MAX, &data, &len));
    vmenc_status s = VMENC_E_AUTH;
    if (len > CTL_HASH_BYTES) {
        uint8_t mac[CTL_HASH_BYTES];
        size_t body = len - CTL_HASH_BYTES;
        s = record_mac(l, uuid, data, body, mac);
        if (s == VMENC_OK)
            s = vmenc_ct_equal(mac, data + body, CTL_HASH_BYTES) ? VMENC_OK : VMENC_E_AUTH;
        if (s == VMENC_OK)
            s = ctl_record_decode(data, body, out) == VMENC_OK ? VMENC_OK : VMENC_E_AUTH;
        if (s == VMENC_OK && strcmp(out->uuid, uuid) != 0)
            s = VMENC_E_AUTH;
    }
    free(data);
    return s;
}

static vmenc_status write_record(ctl_local *l, const ctl_vm_record *rec) {
    uint8_t *body = NULL;
    size_t len = 0;
    VMENC_GUARD(ctl_record_encode(rec, &body, &len));
    uint8_t *file = malloc(len + CTL_HASH_BYTES);
    vmenc_status s = file != NULL ? VMENC_OK : VMENC_E_NOMEM;
    if (s == VMENC_OK) {
        memcpy(file, body, len);
        s = record_mac(l, rec->uuid, body, len, file + len);
    }
    if (s == VMENC_OK)
        s = vmenc_fs_atomic_write(l->dirfd, rec->uuid, file, len + CTL_HASH_BYTES, l->sync);
    free(file);
    free(body);
    return s;
}

/* lock_record takes the lock that serialises compare-and-swaps of one VM's
 * record (DIR/vms.lock.<uuid>): writers of different VMs never wait for
 * each other, so a process stopped inside one VM's write holds up only
 * writers of that VM. */
static vmenc_status lock_record(const ctl_local *l, const char *uuid, uint32_t timeout_ms, int *out) {
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s.%s", l->lock_path, uuid);
    VMENC_ENSURE(n > 0 && (size_t)n < sizeof(path), VMENC_E_BAD_PATH);
    return vmenc_lock_file(path, timeout_ms, out);
}

/* local_get_vm takes no lock: a record file is only ever replaced whole
 * (atomic rename), so a reader sees the old or the new one, and its MAC
 * decides; readers never wait for a writer. */
static vmenc_status local_get_vm(ctl_store *s, const char *uuid, ctl_vm_record *out) {
    ctl_local *l = local_of(s);
    VMENC_GUARD(vmenc_fs_name_check(uuid));
    return read_record(l, uuid, out);
}

static vmenc_status local_put_vm(ctl_store *s, const ctl_vm_record *rec, uint64_t expected_revision,
                                 uint64_t *out_revision) {
    ctl_local *l = local_of(s);
    VMENC_ENSURE(expected_revision < UINT64_MAX, VMENC_E_LIMIT);
    VMENC_GUARD(vmenc_fs_name_check(rec->uuid));
    int lk = -1;
    VMENC_GUARD(lock_record(l, rec->uuid, LOCAL_LOCK_TIMEOUT_MS, &lk));
    ctl_vm_record cur;
    vmenc_status st = read_record(l, rec->uuid, &cur);
    if (st == VMENC_E_NOT_FOUND)
        st = expected_revision == 0 ? VMENC_OK : VMENC_E_CONFLICT;
    else if (st == VMENC_OK)
        st = cur.revision == expected_revision ? VMENC_OK : VMENC_E_CONFLICT;
    ctl_vm_record next = *rec;
    if (st == VMENC_OK) {
        next.revision = expected_revision + 1;
        st = write_record(l, &next);
    }
    vmenc_lock_release(lk);
    if (st == VMENC_OK)
        *out_revision = next.revision;
    return st;
}

static vmenc_status local_delete_vm(ctl_store *s, const char *uuid, uint64_t expected_revision) {
    ctl_local *l = local_of(s);
    VMENC_GUARD(vmenc_fs_name_check(uuid));
    int lk = -1;
    VMENC_GUARD(lock_record(l, uuid, LOCAL_LOCK_TIMEOUT_MS, &lk));
    ctl_vm_record cur;
    vmenc_status st = read_record(l, uuid, &cur);
    if (st == VMENC_OK && cur.revision != expected_revision)
        st = VMENC_E_CONFLICT;
    if (st == VMENC_OK && unlinkat(l->dirfd, uuid, 0) != 0)
        st = vmenc_status_from_errno(errno);
    if (st == VMENC_OK && l->sync)
        st = vmenc_fs_fsync_dir(l->dirfd);
    vmenc_lock_release(lk);
    return st;
}

static vmenc_status local_list_vms(ctl_store *s, ctl_list_fn fn, void *arg) {
    ctl_local *l = local_of(s);
    int fd = dup(l->dirfd);
    VMENC_ENSURE(fd >= 0, VMENC_E_IO);
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return VMENC_E_IO;
    }
    rewinddir(d);
    vmenc_status st = VMENC_OK;
    struct dirent *de;
    while (st == VMENC_OK && (de = readdir(d)) != NULL) {
        /* only record names: a temporary of an interrupted write is not one */
        if (strlen(de->d_name) != CTL_UUID_LEN || strchr(de->d_name, '.') != NULL)
            continue;
        ctl_vm_record r;
        st = local_get_vm(s, de->d_name, &r);
        if (st == VMENC_E_NOT_FOUND) {
            st = VMENC_OK; /* deleted meanwhile */
            continue;
        }
        if (st == VMENC_OK && fn(arg, &r) != 0)
            st = VMENC_E_INTERRUPTED;
    }
    closedir(d);
    return st;
}

static void local_destroy(ctl_store *s) {
    ctl_local *l = local_of(s);
    if (l->dirfd >= 0)
        close(l->dirfd);
    vmenc_secret_free(l->key);
    free(l->lock_path);
    free(l);
}

/* tmp_of: is |name| "<uuid>.tmp-<16 lowercase hex>" (the temporary
 * vmenc_fs_atomic_write makes for a record)? Its UUID part goes to |uuid|. */
static bool tmp_of(const char *name, char uuid[CTL_UUID_LEN + 1]) {
    static const char suffix[] = ".tmp-";
    size_t n = strlen(name), sl = sizeof(suffix) - 1;
    if (n != CTL_UUID_LEN + sl + 16 || memcmp(name + CTL_UUID_LEN, suffix, sl) != 0)
        return false;
    for (size_t i = CTL_UUID_LEN + sl; i < n; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return false;
    memcpy(uuid, name, CTL_UUID_LEN);
    uuid[CTL_UUID_LEN] = '\0';
    return strchr(uuid, '.') == NULL && strchr(uuid, '/') == NULL && vmenc_fs_name_check(uuid) == VMENC_OK;
}

/* sweep_tmp removes the temporaries of record writes that were cut short
 * (a killed process). A writer holds its record's lock from before it
 * creates its temporary until after the rename, so a temporary whose lock
 * is free (one try: never waiting) belongs to nobody alive; one whose lock
 * is held is left for a later open. Best effort: a failure here never
 * stops the store from opening. */
static void sweep_tmp(ctl_local *l) {
    int fd = dup(l->dirfd);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return;
    }
    rewinddir(d);
    bool removed = false;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char uuid[CTL_UUID_LEN + 1];
        if (!tmp_of(de->d_name, uuid))
            continue;
        int lk = -1;
        if (lock_record(l, uuid, 0, &lk) != VMENC_OK)
            continue; /* a live writer's, or the lock cannot be had: left */
        if (unlinkat(l->dirfd, de->d_name, 0) == 0)
            removed = true;
        vmenc_lock_release(lk);
    }
    closedir(d);
    if (removed && l->sync)
        (void)vmenc_fs_fsync_dir(l->dirfd);
}

/* make_dir creates |path| (mode 0700) unless it exists as a directory. */
static vmenc_status make_dir(const char *path) {
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return VMENC_OK;
    return vmenc_status_from_errno(errno);
}

vmenc_status ctl_local_new(const char *dir, const uint8_t *mac_key, size_t key_len, bool sync, ctl_store **out) {
    VMENC_ENSURE(dir != NULL && dir[0] != '\0' && mac_key != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(key_len == CTL_MAC_KEY_BYTES, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());
    char vms[PATH_MAX], lock[PATH_MAX];
    VMENC_ENSURE(snprintf(vms, sizeof(vms), "%s/vms", dir) < (int)sizeof(vms) &&
                     snprintf(lock, sizeof(lock), "%s/vms.lock", dir) < (int)sizeof(lock),
                 VMENC_E_BAD_PATH);
    VMENC_GUARD(make_dir(dir));
    VMENC_GUARD(make_dir(vms));
    ctl_local *l = calloc(1, sizeof(*l));
    VMENC_ENSURE(l != NULL, VMENC_E_NOMEM);
    l->base.struct_size = sizeof(l->base);
    l->base.ops = &k_ops;
    l->dirfd = -1;
    l->sync = sync;
    vmenc_status s = VMENC_OK;
    l->lock_path = strdup(lock);
    VMENC_ENSURE_GOTO(s, l->lock_path != NULL, VMENC_E_NOMEM, fail);
    VMENC_GUARD_GOTO(s, vmenc_secret_from(mac_key, key_len, &l->key), fail);
    l->dirfd = open(vms, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    VMENC_ENSURE_GOTO(s, l->dirfd >= 0, vmenc_status_from_errno(errno), fail);
    sweep_tmp(l);
    *out = &l->base;
    return VMENC_OK;
fail:
    local_destroy(&l->base);
    return s;
}

/* ---- registration ----------------------------------------------------------------- */

static const ctl_store_ops k_ops = {
    .struct_size = sizeof(ctl_store_ops),
    .abi_version = CTL_STORE_ABI_VERSION,
    .type_name = "local",
    .get_vm = local_get_vm,
    .put_vm = local_put_vm,
    .delete_vm = local_delete_vm,
    .list_vms = local_list_vms,
    .destroy = local_destroy,
};
