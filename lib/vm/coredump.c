/*
 * lib/vm/coredump.c - encrypted host core dumps (vmenc/coredump.h): the
 * store (dump directory + coredump.cfg), streaming writers, privileged
 * readers, password export and host-key rotation.
 *
 * A dump is two files so that the part that changes (the wrapped DEK, on
 * every host-key rotation) is small and replaced atomically, while the part
 * that is large (the dump, tens of GiB) is written once and never touched
 * again - VMware's descriptor-beside-extent split, for the same reason. The
 * data file reuses the VM state-file format (io/statefile.c) with the dump ID
 * in place of the VM UUID, so truncation, edits, reordering and swaps are
 * detected by code that already has its own tests and fuzzer.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keys/keys_internal.h"
#include "vm/format/coredump_format.h"
#include "vm/vm_internal.h"

#define CFG_NAME "coredump.cfg"
#define DATA_SUFFIX ".vmcore"
#define KEY_SUFFIX ".vmcore-key"
#define PW_SUFFIX ".vmcore-pw"
#define PARTIAL_SUFFIX ".vmcore.partial"
#define PURPOSE "coredump"
#define PW_AAD_LABEL "vmenc-coredump-pw-v1"
#define COPY_BYTES ((size_t)1 << 20)
#define EXPORT_OPTIONS_V1_SIZE (offsetof(vmenc_coredump_export_options, flags) + sizeof(uint32_t))
#define INFO_V1_SIZE (offsetof(vmenc_coredump_store_info, num_dumps) + sizeof(uint32_t))

struct vmenc_coredump_store {
    vmenc_host *host; /* retained */
    pthread_mutex_t mu;
    int dirfd;
    cd_config cfg;
};

struct vmenc_coredump_writer {
    vmenc_host *host; /* retained */
    int dirfd;        /* own descriptor: the store may go first */
    char id[VMENC_COREDUMP_ID_LEN + 1];
    char principal[VMENC_POLICY_NAME_MAX + 1];
    char source[CD_SOURCE_MAX + 1];
    char provider[VMENC_PROVIDER_ALIAS_MAX + 1];
    char kek_id[VMENC_KEY_ID_MAX + 1];
    vm_sf_writer *sf;
};

struct vmenc_coredump_reader {
    vm_sf *sf;
    uint64_t pos, size;
};

/* ---- names and small helpers ---------------------------------------------------- */

static vmenc_status file_name(const char *id, const char *suffix, char out[128]) {
    int n = snprintf(out, 128, "%s%s", id, suffix);
    VMENC_ENSURE(n > 0 && n < 128, VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

static void wrap_ctx(vmenc_wrap_context *ctx, const char *host_id, const char *dump_id) {
    ctx->struct_size = sizeof(*ctx);
    ctx->vm_uuid = host_id;
    ctx->disk_id = dump_id;
    ctx->purpose = PURPOSE;
}

static bool sync_on(const vmenc_host *host) { return vm_host_sync(host); }

static vmenc_status open_dir(const char *dir, int *out) {
    VMENC_ENSURE(dir != NULL && dir[0] != '\0', VMENC_E_INVALID_ARG);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOTDIR ? VMENC_E_BAD_PATH : vmenc_status_from_errno(errno);
    *out = fd;
    return VMENC_OK;
}

/* cd_wrap wraps |dek| under (alias, kek_id) for (host, dump) and proves the
 * record opens again to the same DEK before anyone relies on it. */
static vmenc_status cd_wrap(vmenc_host *host, const char *alias, const char *kek_id, const vmenc_dek *dek,
                            const char *dump_id, vmenc_wrapped_key **out) {
    vmenc_wrap_context ctx;
    wrap_ctx(&ctx, host->host_id, dump_id);
    return vm_new_wrapped_ctx(host, alias, kek_id, dek, &ctx, out);
}

static vmenc_status write_keyfile(int dirfd, const char *name, const cd_keyfile *k, bool sync) {
    uint8_t *text = NULL;
    size_t len = 0;
    VMENC_GUARD(cd_keyfile_serialize(k, &text, &len));
    vmenc_status s = vmenc_fs_atomic_write(dirfd, name, text, len, sync);
    free(text);
    return s;
}

/* read_keyfile reads and parses <id><suffix>, and checks that it belongs to
 * |host_id| (NULL: any) and |dump_id|: a key file of another host or dump
 * is VMENC_E_CONTEXT_MISMATCH. */
static vmenc_status read_keyfile(int dirfd, const char *dump_id, const char *suffix, const char *host_id,
                                 cd_keyfile *out) {
    char name[128];
    uint8_t *text = NULL;
    size_t len = 0;
    VMENC_GUARD(file_name(dump_id, suffix, name));
    VMENC_GUARD(vmenc_fs_read_file(dirfd, name, CD_KEYFILE_MAX, &text, &len));
    vmenc_status s = cd_keyfile_parse(text, len, out);
    free(text);
    VMENC_GUARD(s);
    if (strcmp(out->dump_id, dump_id) != 0 || (host_id != NULL && strcmp(out->host_id, host_id) != 0)) {
        cd_keyfile_cleanup(out);
        return VMENC_E_CONTEXT_MISMATCH;
    }
    return VMENC_OK;
}

static vmenc_status save_config(vmenc_coredump_store *st) {
    uint8_t *text = NULL;
    size_t len = 0;
    VMENC_GUARD(cd_config_serialize(&st->cfg, &text, &len));
    vmenc_status s = vmenc_fs_atomic_write(st->dirfd, CFG_NAME, text, len, sync_on(st->host));
    free(text);
    return s;
}

/* ---- store ---------------------------------------------------------------------- */

static vmenc_status load_config(vmenc_coredump_store *st) {
    uint8_t *text = NULL;
    size_t len = 0;
    vmenc_status s = vmenc_fs_read_file(st->dirfd, CFG_NAME, CD_KEYFILE_MAX, &text, &len);
    if (s == VMENC_E_NOT_FOUND) {
        snprintf(st->cfg.host_id, sizeof(st->cfg.host_id), "%s", st->host->host_id);
        return VMENC_OK;
    }
    VMENC_GUARD(s);
    s = cd_config_parse(text, len, &st->cfg);
    free(text);
    VMENC_GUARD(s);
    VMENC_ENSURE(strcmp(st->cfg.host_id, st->host->host_id) == 0, VMENC_E_CONTEXT_MISMATCH);
    return VMENC_OK;
}

vmenc_status vmenc_coredump_store_open(vmenc_host *host, const char *dir, vmenc_coredump_store **out) {
    VMENC_ENSURE(host != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vmenc_coredump_store *st = calloc(1, sizeof(*st));
    VMENC_ENSURE(st != NULL, VMENC_E_NOMEM);
    st->host = host;
    st->dirfd = -1;
    vmenc_status s = open_dir(dir, &st->dirfd);
    if (s == VMENC_OK)
        s = load_config(st);
    if (s == VMENC_OK && pthread_mutex_init(&st->mu, NULL) != 0)
        s = VMENC_E_NOMEM;
    if (s != VMENC_OK) {
        if (st->dirfd >= 0)
            (void)close(st->dirfd);
        free(st);
        return s;
    }
    vm_host_retain(host);
    *out = st;
    return VMENC_OK;
}

void vmenc_coredump_store_free(vmenc_coredump_store *store) {
    if (store == NULL)
        return;
    (void)close(store->dirfd);
    pthread_mutex_destroy(&store->mu);
    vm_host_release(store->host);
    free(store);
}

/* is_dump_name: "<uuid><suffix>" exactly. */
static bool is_dump_name(const char *name, const char *suffix, char id_out[VMENC_COREDUMP_ID_LEN + 1]) {
    size_t n = strlen(name), sl = strlen(suffix);
    if (n != VMENC_COREDUMP_ID_LEN + sl || strcmp(name + VMENC_COREDUMP_ID_LEN, suffix) != 0)
        return false;
    memcpy(id_out, name, VMENC_COREDUMP_ID_LEN);
    id_out[VMENC_COREDUMP_ID_LEN] = '\0';
    return vm_uuid_check(id_out) == VMENC_OK;
}

static int id_cmp(const void *a, const void *b) { return strcmp(a, b); }

/* list_ids collects the IDs of files "<uuid><suffix>", sorted. |*out| is
 * malloc'd (NULL when empty). */
static vmenc_status list_ids(int dirfd, const char *suffix, char (**out)[VMENC_COREDUMP_ID_LEN + 1],
                             size_t *out_num) {
    int fd = dup(dirfd);
    VMENC_ENSURE(fd >= 0, vmenc_status_from_errno(errno));
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        (void)close(fd);
        return vmenc_status_from_errno(errno);
    }
    rewinddir(d);
    char (*ids)[VMENC_COREDUMP_ID_LEN + 1] = NULL;
    size_t n = 0, cap = 0;
    vmenc_status s = VMENC_OK;
    for (struct dirent *e; s == VMENC_OK && (e = readdir(d)) != NULL;) {
        char id[VMENC_COREDUMP_ID_LEN + 1];
        if (!is_dump_name(e->d_name, suffix, id))
            continue;
        if (n == cap) {
            size_t nc = cap == 0 ? 16 : cap * 2;
            void *p = realloc(ids, nc * sizeof(*ids));
            if (p == NULL) {
                s = VMENC_E_NOMEM;
                break;
            }
            ids = p;
            cap = nc;
        }
        memcpy(ids[n++], id, sizeof(id));
    }
    (void)closedir(d);
    if (s != VMENC_OK) {
        free(ids);
        return s;
    }
    if (n > 1)
        qsort(ids, n, sizeof(*ids), id_cmp);
    *out = ids;
    *out_num = n;
    return VMENC_OK;
}

vmenc_status vmenc_coredump_store_get_info(vmenc_coredump_store *store, vmenc_coredump_store_info *out) {
    VMENC_ENSURE(store != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= INFO_V1_SIZE, VMENC_E_ABI_VERSION);
    char (*ids)[VMENC_COREDUMP_ID_LEN + 1] = NULL;
    size_t n = 0;
    pthread_mutex_lock(&store->mu);
    vmenc_status s = list_ids(store->dirfd, DATA_SUFFIX, &ids, &n);
    if (s == VMENC_OK) {
        const cd_config *c = &store->cfg;
        out->has_host_key = c->has_key;
        snprintf(out->key_provider, sizeof(out->key_provider), "%s", c->provider);
        snprintf(out->kek_id, sizeof(out->kek_id), "%s", c->kek_id);
        out->rotation_pending = c->rotating;
        snprintf(out->old_key_provider, sizeof(out->old_key_provider), "%s", c->old_provider);
        snprintf(out->old_kek_id, sizeof(out->old_kek_id), "%s", c->old_kek_id);
        out->num_dumps = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    }
    pthread_mutex_unlock(&store->mu);
    free(ids);
    return s;
}

vmenc_status vmenc_coredump_list(vmenc_coredump_store *store, uint32_t index, char *out_id, size_t out_id_cap) {
    VMENC_ENSURE(store != NULL && out_id != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out_id_cap >= VMENC_COREDUMP_ID_LEN + 1, VMENC_E_BUFFER_TOO_SMALL);
    char (*ids)[VMENC_COREDUMP_ID_LEN + 1] = NULL;
    size_t n = 0;
    VMENC_GUARD(list_ids(store->dirfd, DATA_SUFFIX, &ids, &n));
    vmenc_status s = index < n ? VMENC_OK : VMENC_E_NOT_FOUND;
    if (s == VMENC_OK)
        memcpy(out_id, ids[index], VMENC_COREDUMP_ID_LEN + 1);
    free(ids);
    return s;
}

/* ---- host key ------------------------------------------------------------------- */

static vmenc_status authorize_host_key(vm_op *op, vmenc_coredump_store *st) {
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_ENABLE_HOST_ENCRYPTION,
                               .host = st->host->host_id};
    return vm_op_authorize(op, &rq);
}

/* obtain_kek resolves the KEK a host key will be - |kek_id| or a new one
 * in |alias| - and fetches it, so a key the host cannot get again is never
 * recorded. */
static vmenc_status obtain_kek(vmenc_host *h, const char *alias, const char *kek_id, char out_id[VMENC_KEY_ID_MAX + 1]) {
    if (kek_id == NULL) {
        VMENC_GUARD(vmenc_keymgr_create_kek(h->keymgr, alias, "host-key", h->timeout_ms, out_id,
                                            VMENC_KEY_ID_MAX + 1));
    } else {
        VMENC_GUARD(vm_copy_string(out_id, VMENC_KEY_ID_MAX + 1, kek_id));
    }
    vmenc_kek *kek = NULL;
    VMENC_GUARD(vmenc_keymgr_get_kek(h->keymgr, alias, out_id, h->timeout_ms, &kek));
    vmenc_kek_free(kek);
    return VMENC_OK;
}

static vmenc_status set_host_key_locked(vmenc_coredump_store *st, vm_op *op, const char *alias, const char *kek_id) {
    VMENC_ENSURE(!st->cfg.has_key, VMENC_E_EXISTS);
    char id[VMENC_KEY_ID_MAX + 1];
    VMENC_GUARD(obtain_kek(st->host, alias, kek_id, id));
    vm_op_add_key(op, alias, id);
    cd_config next = st->cfg;
    next.has_key = true;
    snprintf(next.provider, sizeof(next.provider), "%s", alias);
    snprintf(next.kek_id, sizeof(next.kek_id), "%s", id);
    cd_config old = st->cfg;
    st->cfg = next;
    vmenc_status s = save_config(st);
    if (s != VMENC_OK)
        st->cfg = old;
    return s;
}

vmenc_status vmenc_coredump_set_host_key(vmenc_coredump_store *store, const char *principal,
                                         const char *key_provider, const char *kek_id) {
    VMENC_ENSURE(store != NULL, VMENC_E_INVALID_ARG);
    vm_op op;
    vm_op_init(&op, store->host, principal, "coredump.set_host_key", store->host->host_id);
    if (key_provider == NULL || key_provider[0] == '\0')
        return vm_op_finish(&op, VMENC_E_INVALID_ARG, "no key provider");
    vm_op_add_key(&op, key_provider, kek_id);
    VMENC_GUARD(authorize_host_key(&op, store));
    pthread_mutex_lock(&store->mu);
    vmenc_status s = set_host_key_locked(store, &op, key_provider, kek_id);
    pthread_mutex_unlock(&store->mu);
    return vm_op_finish(&op, s, s == VMENC_E_EXISTS ? "a host key is set: rotate it instead" : NULL);
}

/* ---- rotation ------------------------------------------------------------------- */

/* begin_rotation records the new key with the old one marked "rotating"
 * (or, for a pending rotation, checks the caller asks for the same one). */
static vmenc_status begin_rotation(vmenc_coredump_store *st, const char *alias, const char *kek_id) {
    cd_config *c = &st->cfg;
    VMENC_ENSURE(c->has_key, VMENC_E_BAD_STATE);
    if (c->rotating) {
        VMENC_ENSURE(alias == NULL || strcmp(alias, c->provider) == 0, VMENC_E_BAD_STATE);
        VMENC_ENSURE(kek_id == NULL || strcmp(kek_id, c->kek_id) == 0, VMENC_E_BAD_STATE);
        return VMENC_OK;
    }
    char a[VMENC_PROVIDER_ALIAS_MAX + 1]; /* a copy: c->provider is overwritten below */
    VMENC_GUARD(vm_copy_string(a, sizeof(a), alias != NULL ? alias : c->provider));
    char id[VMENC_KEY_ID_MAX + 1];
    VMENC_GUARD(obtain_kek(st->host, a, kek_id, id));
    VMENC_ENSURE(strcmp(a, c->provider) != 0 || strcmp(id, c->kek_id) != 0, VMENC_E_EXISTS);
    cd_config old = *c;
    c->rotating = true;
    snprintf(c->old_provider, sizeof(c->old_provider), "%s", old.provider);
    snprintf(c->old_kek_id, sizeof(c->old_kek_id), "%s", old.kek_id);
    snprintf(c->provider, sizeof(c->provider), "%s", a);
    snprintf(c->kek_id, sizeof(c->kek_id), "%s", id);
    vmenc_status s = save_config(st);
    if (s != VMENC_OK)
        *c = old;
    return s;
}

/* rewrap_one moves dump |id|'s key file to the current host key; *changed
 * says whether it needed to. */
static vmenc_status rewrap_one(vmenc_coredump_store *st, const char *id, bool *changed) {
    cd_keyfile k;
    *changed = false;
    VMENC_GUARD(read_keyfile(st->dirfd, id, KEY_SUFFIX, st->host->host_id, &k));
    vmenc_status s = VMENC_OK;
    if (k.password_form) {
        s = VMENC_E_PARSE;
    } else if (strcmp(k.key_provider, st->cfg.provider) != 0 || strcmp(k.kek_id, st->cfg.kek_id) != 0) {
        vmenc_wrap_context ctx;
        wrap_ctx(&ctx, st->host->host_id, id);
        vmenc_dek *dek = NULL;
        vmenc_wrapped_key *wk = NULL;
        s = vmenc_keymgr_unwrap_dek(st->host->keymgr, k.key_safe, &ctx, st->host->timeout_ms, &dek);
        if (s == VMENC_OK)
            s = cd_wrap(st->host, st->cfg.provider, st->cfg.kek_id, dek, id, &wk);
        vmenc_dek_free(dek);
        if (s == VMENC_OK) {
            vmenc_wrapped_key_free(k.key_safe);
            k.key_safe = wk;
            snprintf(k.key_provider, sizeof(k.key_provider), "%s", st->cfg.provider);
            snprintf(k.kek_id, sizeof(k.kek_id), "%s", st->cfg.kek_id);
            char name[128];
            s = file_name(id, KEY_SUFFIX, name);
            if (s == VMENC_OK)
                s = write_keyfile(st->dirfd, name, &k, sync_on(st->host));
            *changed = s == VMENC_OK;
        }
    }
    cd_keyfile_cleanup(&k);
    return s;
}

/* is_rotation_tmp: "coredump.cfg.tmp-<16 hex>" or "<id>.vmcore-key.tmp-<16
 * hex>", the temporaries of the atomic replacements a rotation makes. */
static bool is_rotation_tmp(const char *name) {
    size_t n = strlen(name);
    if (n < 22 || memcmp(name + n - 21, ".tmp-", 5) != 0)
        return false;
    for (size_t i = n - 16; i < n; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return false;
    size_t base = n - 21, kl = strlen(KEY_SUFFIX);
    return (base == strlen(CFG_NAME) && memcmp(name, CFG_NAME, base) == 0) ||
           (base > kl && memcmp(name + base - kl, KEY_SUFFIX, kl) == 0);
}

/* sweep_rotation_debris removes what a rotation killed half-way left: the
 * temporaries of its atomic replacements. A key file's temporary holds a
 * DEK wrapped under a live KEK, so it is overwritten with zeros first.
 * Best effort (the dump directory is the host's own). */
static void sweep_rotation_debris(int dirfd) {
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            (void)close(fd);
        return;
    }
    rewinddir(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!is_rotation_tmp(e->d_name))
            continue;
        int t = openat(dirfd, e->d_name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        struct stat sb;
        if (t >= 0 && fstat(t, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 && sb.st_size < (1 << 20)) {
            uint8_t zero[4096] = {0};
            for (off_t off = 0; off < sb.st_size; off += (off_t)sizeof(zero))
                if (pwrite(t, zero, sizeof(zero), off) < 0)
                    break;
        }
        if (t >= 0)
            (void)close(t);
        (void)unlinkat(dirfd, e->d_name, 0);
    }
    (void)closedir(d);
}

static vmenc_status rotate_locked(vmenc_coredump_store *st, vm_op *op, const char *alias, const char *kek_id,
                                  uint32_t fail_after, uint32_t *out_num, char *why, size_t why_cap) {
    /* a rotation killed earlier may have left temporaries: gone before this one */
    sweep_rotation_debris(st->dirfd);
    VMENC_GUARD(begin_rotation(st, alias, kek_id));
    vm_op_add_key(op, st->cfg.old_provider, st->cfg.old_kek_id);
    vm_op_add_key(op, st->cfg.provider, st->cfg.kek_id);
    char (*ids)[VMENC_COREDUMP_ID_LEN + 1] = NULL;
    size_t n = 0;
    VMENC_GUARD(list_ids(st->dirfd, KEY_SUFFIX, &ids, &n));
    vmenc_status s = VMENC_OK;
    for (size_t i = 0; i < n && s == VMENC_OK; i++) {
        if (*out_num == fail_after) {
            snprintf(why, why_cap, "rotation interrupted (test fault) after %u dumps", *out_num);
            s = VMENC_E_INTERRUPTED;
            break;
        }
        bool changed = false;
        s = rewrap_one(st, ids[i], &changed);
        if (s != VMENC_OK)
            snprintf(why, why_cap, "dump %s: %s", ids[i], vmenc_strerror(s));
        *out_num += changed;
    }
    free(ids);
    VMENC_GUARD(s);
    cd_config done = st->cfg;
    done.rotating = false;
    done.old_provider[0] = done.old_kek_id[0] = '\0';
    cd_config old = st->cfg;
    st->cfg = done;
    s = save_config(st);
    if (s != VMENC_OK)
        st->cfg = old;
    return s;
}

vmenc_status cd_rotate(vmenc_coredump_store *store, const char *principal, const char *provider,
                       const char *kek_id, uint32_t fail_after, uint32_t *out_num) {
    VMENC_ENSURE(store != NULL, VMENC_E_INVALID_ARG);
    vm_op op;
    vm_op_init(&op, store->host, principal, "coredump.rotate_host_key", store->host->host_id);
    VMENC_GUARD(authorize_host_key(&op, store));
    uint32_t num = 0;
    char why[160] = "";
    pthread_mutex_lock(&store->mu);
    vmenc_status s = rotate_locked(store, &op, provider, kek_id, fail_after, &num, why, sizeof(why));
    pthread_mutex_unlock(&store->mu);
    if (out_num != NULL)
        *out_num = num;
    if (s == VMENC_OK)
        snprintf(why, sizeof(why), "%u dumps re-wrapped", num);
    return vm_op_finish(&op, s, why[0] != '\0' ? why : NULL);
}

vmenc_status vmenc_coredump_rotate_host_key(vmenc_coredump_store *store, const char *principal,
                                            const char *key_provider, const char *kek_id,
                                            uint32_t *out_num_rewrapped) {
    return cd_rotate(store, principal, key_provider, kek_id, UINT32_MAX, out_num_rewrapped);
}

/* ---- writer --------------------------------------------------------------------- */

static vmenc_status host_mode_safe(vmenc_host *h) {
    vmenc_host_crypto_state st = VMENC_HOST_INCAPABLE;
    VMENC_GUARD(vmenc_policy_get_host_state(h->policy, h->host_id, &st));
    return st == VMENC_HOST_SAFE ? VMENC_OK : VMENC_E_HOST_MODE;
}

/* start_dump makes the DEK, writes the key file, then opens the partial
 * data file under the writer. The key file comes first so a dump never
 * exists without a way to its key. */
static vmenc_status start_dump(vmenc_coredump_store *st, vmenc_coredump_writer *w) {
    char key_name[128], part_name[128];
    VMENC_GUARD(vm_new_uuid(w->id));
    VMENC_GUARD(file_name(w->id, KEY_SUFFIX, key_name));
    VMENC_GUARD(file_name(w->id, PARTIAL_SUFFIX, part_name));
    vmenc_dek *dek = NULL;
    VMENC_GUARD(vmenc_dek_generate(&dek));
    cd_keyfile k;
    memset(&k, 0, sizeof(k));
    snprintf(k.host_id, sizeof(k.host_id), "%s", st->host->host_id);
    memcpy(k.dump_id, w->id, sizeof(k.dump_id));
    memcpy(k.source, w->source, sizeof(k.source));
    memcpy(k.key_provider, w->provider, sizeof(k.key_provider));
    memcpy(k.kek_id, w->kek_id, sizeof(k.kek_id));
    vmenc_status s = cd_wrap(st->host, w->provider, w->kek_id, dek, w->id, &k.key_safe);
    if (s == VMENC_OK)
        s = write_keyfile(w->dirfd, key_name, &k, sync_on(st->host));
    cd_keyfile_cleanup(&k);
    int fd = -1;
    if (s == VMENC_OK) {
        fd = openat(w->dirfd, part_name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            s = vmenc_status_from_errno(errno);
    }
    if (s == VMENC_OK)
        s = vm_sf_writer_new(fd, VM_SF_CLASS_COREDUMP, 0, w->id, dek, sync_on(st->host), &w->sf);
    vmenc_dek_free(dek); /* the writer keeps only the derived key schedule */
    if (s != VMENC_OK) {
        if (fd >= 0) {
            (void)close(fd);
            (void)unlinkat(w->dirfd, part_name, 0);
        }
        (void)unlinkat(w->dirfd, key_name, 0);
    }
    return s;
}

static void writer_release(vmenc_coredump_writer *w) {
    vm_sf_writer_free(w->sf);
    if (w->dirfd >= 0)
        (void)close(w->dirfd);
    if (w->host != NULL)
        vm_host_release(w->host);
    free(w);
}

static vmenc_status writer_checks(vmenc_coredump_store *st, vm_op *op, const char *principal, const char *source) {
    if (!vm_principal_ok(principal))
        return vm_op_deny(op, VMENC_E_INVALID_ARG, "no principal given");
    vmenc_status s = cd_source_check(source);
    if (s != VMENC_OK)
        return vm_op_finish(op, s, "bad dump source");
    if (!st->cfg.has_key)
        return vm_op_finish(op, VMENC_E_BAD_STATE, "the host has no host key");
    vm_op_add_key(op, st->cfg.provider, st->cfg.kek_id);
    s = host_mode_safe(st->host);
    if (s != VMENC_OK)
        return vm_op_deny(op, s, "the host is not in encryption mode");
    return VMENC_OK;
}

vmenc_status vmenc_coredump_writer_new(vmenc_coredump_store *store, const char *principal, const char *source,
                                       vmenc_coredump_writer **out) {
    VMENC_ENSURE(store != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vm_op op;
    vm_op_init(&op, store->host, principal, "coredump.write", source);
    pthread_mutex_lock(&store->mu);
    vmenc_status s = writer_checks(store, &op, principal, source);
    vmenc_coredump_writer *w = NULL;
    if (s == VMENC_OK && (w = calloc(1, sizeof(*w))) == NULL)
        s = vm_op_finish(&op, VMENC_E_NOMEM, NULL);
    if (s == VMENC_OK) {
        w->dirfd = dup(store->dirfd);
        snprintf(w->principal, sizeof(w->principal), "%s", principal);
        snprintf(w->source, sizeof(w->source), "%s", source);
        snprintf(w->provider, sizeof(w->provider), "%s", store->cfg.provider);
        snprintf(w->kek_id, sizeof(w->kek_id), "%s", store->cfg.kek_id);
        s = w->dirfd >= 0 ? start_dump(store, w) : vmenc_status_from_errno(errno);
        if (s != VMENC_OK)
            s = vm_op_finish(&op, s, "could not start the dump");
    }
    pthread_mutex_unlock(&store->mu);
    if (s != VMENC_OK) {
        if (w != NULL)
            writer_release(w);
        return s;
    }
    vm_host_retain(store->host);
    w->host = store->host;
    *out = w;
    return VMENC_OK;
}

const char *vmenc_coredump_writer_id(const vmenc_coredump_writer *w) { return w != NULL ? w->id : NULL; }

vmenc_status vmenc_coredump_write(vmenc_coredump_writer *w, const uint8_t *data, size_t len) {
    VMENC_ENSURE(w != NULL, VMENC_E_INVALID_ARG);
    return vm_sf_writer_write(w->sf, data, len);
}

/* writer_end audits the dump's outcome, removes its files on failure and
 * frees the writer. */
static vmenc_status writer_end(vmenc_coredump_writer *w, vmenc_status s, const char *reason) {
    vm_op op;
    char target[VMENC_AUDIT_MAX_FIELD];
    snprintf(target, sizeof(target), "%s/%s", w->source, w->id);
    vm_op_init(&op, w->host, w->principal, "coredump.write", target);
    vm_op_add_key(&op, w->provider, w->kek_id);
    if (s != VMENC_OK) {
        char name[128];
        if (file_name(w->id, PARTIAL_SUFFIX, name) == VMENC_OK)
            (void)unlinkat(w->dirfd, name, 0);
        if (file_name(w->id, KEY_SUFFIX, name) == VMENC_OK)
            (void)unlinkat(w->dirfd, name, 0);
    }
    char why[96];
    if (s == VMENC_OK) {
        snprintf(why, sizeof(why), "%llu bytes", (unsigned long long)vm_sf_writer_size(w->sf));
        reason = why;
    }
    s = vm_op_finish(&op, s, reason);
    writer_release(w);
    return s;
}

vmenc_status vmenc_coredump_writer_finish(vmenc_coredump_writer *w) {
    VMENC_ENSURE(w != NULL, VMENC_E_INVALID_ARG);
    char part[128], final[128];
    vmenc_status s = vm_sf_writer_finish(w->sf);
    if (s == VMENC_OK)
        s = file_name(w->id, PARTIAL_SUFFIX, part);
    if (s == VMENC_OK)
        s = file_name(w->id, DATA_SUFFIX, final);
    if (s == VMENC_OK && renameat(w->dirfd, part, w->dirfd, final) != 0)
        s = vmenc_status_from_errno(errno);
    if (s == VMENC_OK && vm_host_sync(w->host))
        s = vmenc_fs_fsync_dir(w->dirfd);
    return writer_end(w, s, NULL);
}

void vmenc_coredump_writer_free(vmenc_coredump_writer *w) {
    if (w != NULL)
        (void)writer_end(w, VMENC_E_INTERRUPTED, "dump abandoned before it was finished");
}

/* ---- reader --------------------------------------------------------------------- */

static vmenc_status reader_new(int dirfd, const char *id, const vmenc_dek *dek, vmenc_coredump_reader **out) {
    char name[128];
    VMENC_GUARD(file_name(id, DATA_SUFFIX, name));
    vmenc_coredump_reader *r = calloc(1, sizeof(*r));
    VMENC_ENSURE(r != NULL, VMENC_E_NOMEM);
    vmenc_status s = vm_sf_open(dirfd, name, VM_SF_CLASS_COREDUMP, 0, id, dek, VMENC_VM_FILE_READONLY, false,
                                &r->sf);
    if (s == VMENC_OK)
        s = vm_sf_size(r->sf, &r->size);
    if (s != VMENC_OK) {
        (void)vm_sf_close(r->sf);
        free(r);
        return s;
    }
    *out = r;
    return VMENC_OK;
}

/* unwrap_dump reads dump |id|'s key file and unwraps its DEK with the KEK
 * the file names. */
static vmenc_status unwrap_dump(vmenc_coredump_store *st, vm_op *op, const char *id, cd_keyfile *k,
                                vmenc_dek **out) {
    VMENC_GUARD(read_keyfile(st->dirfd, id, KEY_SUFFIX, st->host->host_id, k));
    VMENC_ENSURE(!k->password_form, VMENC_E_PARSE);
    vm_op_add_key(op, k->key_provider, k->kek_id);
    vmenc_wrap_context ctx;
    wrap_ctx(&ctx, st->host->host_id, id);
    return vmenc_keymgr_unwrap_dek(st->host->keymgr, k->key_safe, &ctx, st->host->timeout_ms, out);
}

static vmenc_status authorize_read(vm_op *op, const char *dump_id) {
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_MANAGE_KEYS};
    VMENC_GUARD(vm_op_authorize(op, &rq));
    if (dump_id == NULL || vm_uuid_check(dump_id) != VMENC_OK)
        return vm_op_finish(op, VMENC_E_INVALID_ARG, "bad dump ID");
    return VMENC_OK;
}

vmenc_status vmenc_coredump_open(vmenc_coredump_store *store, const char *principal, const char *dump_id,
                                 vmenc_coredump_reader **out) {
    VMENC_ENSURE(store != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vm_op op;
    vm_op_init(&op, store->host, principal, "coredump.read", dump_id);
    VMENC_GUARD(authorize_read(&op, dump_id));
    cd_keyfile k;
    memset(&k, 0, sizeof(k));
    vmenc_dek *dek = NULL;
    vmenc_coredump_reader *r = NULL;
    vmenc_status s = unwrap_dump(store, &op, dump_id, &k, &dek);
    if (s == VMENC_OK)
        s = reader_new(store->dirfd, dump_id, dek, &r);
    vmenc_dek_free(dek);
    cd_keyfile_cleanup(&k);
    s = vm_op_finish(&op, s, NULL);
    if (s != VMENC_OK) {
        vmenc_coredump_reader_free(r);
        return s;
    }
    *out = r;
    return VMENC_OK;
}

vmenc_status vmenc_coredump_read(vmenc_coredump_reader *r, uint8_t *out, size_t cap, size_t *out_read) {
    VMENC_ENSURE(r != NULL && out_read != NULL && (out != NULL || cap == 0), VMENC_E_INVALID_ARG);
    size_t n = 0;
    *out_read = 0;
    VMENC_GUARD(vm_sf_pread(r->sf, r->pos, cap, out, &n));
    r->pos += n;
    *out_read = n;
    return VMENC_OK;
}

vmenc_status vmenc_coredump_reader_get_size(vmenc_coredump_reader *r, uint64_t *out) {
    VMENC_ENSURE(r != NULL && out != NULL, VMENC_E_INVALID_ARG);
    *out = r->size;
    return VMENC_OK;
}

void vmenc_coredump_reader_free(vmenc_coredump_reader *r) {
    if (r == NULL)
        return;
    (void)vm_sf_close(r->sf);
    free(r);
}

/* ---- password export -------------------------------------------------------------- */

/* pw_aad binds the sealed DEK to the host, the dump and the KDF parameters,
 * so none of them can be edited to make a weaker or different file. */
static void pw_aad(const cd_keyfile *k, uint8_t out[64 + VMENC_POLICY_NAME_MAX + VMENC_COREDUMP_ID_LEN],
                   size_t *out_len) {
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, out, 64 + VMENC_POLICY_NAME_MAX + VMENC_COREDUMP_ID_LEN);
    vmenc_cbb_add_bytes(&cbb, (const uint8_t *)PW_AAD_LABEL, sizeof(PW_AAD_LABEL) - 1);
    vmenc_cbb_add_u8(&cbb, (uint8_t)strlen(k->host_id));
    vmenc_cbb_add_bytes(&cbb, (const uint8_t *)k->host_id, strlen(k->host_id));
    vmenc_cbb_add_bytes(&cbb, (const uint8_t *)k->dump_id, VMENC_COREDUMP_ID_LEN);
    vmenc_cbb_add_u64(&cbb, k->kdf_ops);
    vmenc_cbb_add_u64(&cbb, k->kdf_mem);
    vmenc_cbb_add_bytes(&cbb, k->salt, CD_SALT_BYTES);
    *out_len = vmenc_cbb_len(&cbb);
}

static vmenc_status pw_derive(const cd_keyfile *k, const uint8_t *pw, size_t pw_len, uint8_t *key32) {
    int rc = crypto_pwhash(key32, 32, (const char *)pw, pw_len, k->salt, k->kdf_ops, (size_t)k->kdf_mem,
                           crypto_pwhash_ALG_ARGON2ID13);
    return rc == 0 ? VMENC_OK : VMENC_E_NOMEM; /* libsodium fails only on memory */
}

static vmenc_status pw_seal(cd_keyfile *k, const vmenc_dek *dek, const uint8_t *pw, size_t pw_len) {
    uint8_t aad[64 + VMENC_POLICY_NAME_MAX + VMENC_COREDUMP_ID_LEN];
    size_t aad_len = 0;
    randombytes_buf(k->salt, sizeof(k->salt));
    pw_aad(k, aad, &aad_len);
    uint8_t *key = vmenc_secure_alloc(32);
    VMENC_ENSURE(key != NULL, VMENC_E_NOMEM);
    vmenc_status s = pw_derive(k, pw, pw_len, key);
    if (s == VMENC_OK) {
        uint8_t *nonce = k->pw_sealed;
        randombytes_buf(nonce, 24);
        if (crypto_aead_xchacha20poly1305_ietf_encrypt(k->pw_sealed + 24, NULL, vmenc_dek_bytes_internal(dek),
                                                       VMENC_DEK_BYTES, aad, aad_len, NULL, nonce, key) != 0)
            s = VMENC_E_CRYPTO;
    }
    vmenc_secure_free(key);
    return s;
}

static vmenc_status pw_open(const cd_keyfile *k, const uint8_t *pw, size_t pw_len, vmenc_dek **out) {
    uint8_t aad[64 + VMENC_POLICY_NAME_MAX + VMENC_COREDUMP_ID_LEN];
    size_t aad_len = 0;
    pw_aad(k, aad, &aad_len);
    uint8_t *key = vmenc_secure_alloc(32 + VMENC_DEK_BYTES);
    VMENC_ENSURE(key != NULL, VMENC_E_NOMEM);
    uint8_t *dek_bytes = key + 32;
    vmenc_status s = pw_derive(k, pw, pw_len, key);
    if (s == VMENC_OK &&
        crypto_aead_xchacha20poly1305_ietf_decrypt(dek_bytes, NULL, NULL, k->pw_sealed + 24,
                                                   CD_PW_SEALED_BYTES - 24, aad, aad_len, k->pw_sealed, key) != 0)
        s = VMENC_E_WRONG_PASSPHRASE;
    if (s == VMENC_OK)
        s = vmenc_dek_new_from_bytes(dek_bytes, VMENC_DEK_BYTES, out);
    vmenc_secure_free(key);
    return s;
}

static vmenc_status copy_fd(int from, int to) {
    uint8_t *buf = malloc(COPY_BYTES); /* ciphertext only */
    VMENC_ENSURE(buf != NULL, VMENC_E_NOMEM);
    vmenc_status s = VMENC_OK;
    for (;;) {
        ssize_t n = read(from, buf, COPY_BYTES);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0)
                s = vmenc_status_from_errno(errno);
            break;
        }
        for (ssize_t done = 0; done < n && s == VMENC_OK;) {
            ssize_t w = write(to, buf + done, (size_t)(n - done));
            if (w < 0 && errno != EINTR)
                s = vmenc_status_from_errno(errno);
            else if (w > 0)
                done += w;
        }
        if (s != VMENC_OK)
            break;
    }
    free(buf);
    return s;
}

/* copy_data copies <id>.vmcore byte for byte into |out_dirfd|. */
static vmenc_status copy_data(int dirfd, int out_dirfd, const char *id, bool sync) {
    char name[128];
    VMENC_GUARD(file_name(id, DATA_SUFFIX, name));
    int in = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    VMENC_ENSURE(in >= 0, vmenc_status_from_errno(errno));
    int outfd = openat(out_dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (outfd < 0) {
        vmenc_status s = vmenc_status_from_errno(errno);
        (void)close(in);
        return s;
    }
    vmenc_status s = copy_fd(in, outfd);
    if (s == VMENC_OK && sync && fsync(outfd) != 0)
        s = vmenc_status_from_errno(errno);
    (void)close(in);
    if (close(outfd) != 0 && s == VMENC_OK)
        s = VMENC_E_IO;
    return s;
}

/* verify_all authenticates every chunk of a dump (streaming). */
static vmenc_status verify_all(vmenc_coredump_reader *r) {
    uint8_t *buf = vmenc_secure_alloc(VMENC_VM_FILE_CHUNK_BYTES);
    VMENC_ENSURE(buf != NULL, VMENC_E_NOMEM);
    vmenc_status s = VMENC_OK;
    size_t n = 0;
    do {
        s = vmenc_coredump_read(r, buf, VMENC_VM_FILE_CHUNK_BYTES, &n);
    } while (s == VMENC_OK && n > 0);
    vmenc_secure_free(buf);
    return s;
}

static vmenc_status export_options_check(const vmenc_coredump_export_options *o) {
    VMENC_ENSURE(o->flags == 0 && o->out_dir != NULL && o->password != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(o->password_len >= 1 && o->password_len <= VMENC_COREDUMP_PASSWORD_MAX, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(o->kdf_ops == 0 || (o->kdf_ops >= crypto_pwhash_OPSLIMIT_MIN && o->kdf_ops <= CD_KDF_OPS_MAX),
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(o->kdf_mem_bytes == 0 || (o->kdf_mem_bytes >= CD_KDF_MEM_MIN && o->kdf_mem_bytes <= CD_KDF_MEM_MAX),
                 VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

/* The audit reasons below spell these bounds out. */
_Static_assert(VMENC_COREDUMP_PASSWORD_MIN == 12 && VMENC_COREDUMP_KDF_OPS_MIN == 2 &&
                   VMENC_COREDUMP_KDF_MEM_MIN == ((uint64_t)64 << 20),
               "update the export_strength_check reasons");

/* utf8_chars counts the code points of |s| (bytes that do not continue a
 * sequence), so a password is measured in characters, not bytes. Invalid
 * UTF-8 counts each stray byte: it is a password, not text to validate. */
static size_t utf8_chars(const uint8_t *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += (s[i] & 0xc0) != 0x80;
    return n;
}

/* export_strength_check refuses a bundle its password guards too weakly:
 * too short a password, or an Argon2id cheap enough to guess through
 * (the defaults, libsodium's "moderate", are above the bounds). Sets
 * |*why| for the audit record. */
static vmenc_status export_strength_check(const vmenc_coredump_export_options *o, const char **why) {
    if (utf8_chars(o->password, o->password_len) < VMENC_COREDUMP_PASSWORD_MIN) {
        *why = "export password shorter than 12 characters"; /* VMENC_COREDUMP_PASSWORD_MIN */
        return VMENC_E_WEAK_KEY;
    }
    uint64_t ops = o->kdf_ops != 0 ? o->kdf_ops : crypto_pwhash_OPSLIMIT_MODERATE;
    uint64_t mem = o->kdf_mem_bytes != 0 ? o->kdf_mem_bytes : crypto_pwhash_MEMLIMIT_MODERATE;
    if (ops < VMENC_COREDUMP_KDF_OPS_MIN || mem < VMENC_COREDUMP_KDF_MEM_MIN) {
        *why = "Argon2id below 2 passes x 64 MiB"; /* VMENC_COREDUMP_KDF_OPS_MIN, _MEM_MIN */
        return VMENC_E_WEAK_KEY;
    }
    return VMENC_OK;
}

/* export_into writes the bundle: the data copy (verified in full from the
 * copy itself), then the password key file. */
static vmenc_status export_into(vmenc_coredump_store *st, const vmenc_coredump_export_options *o, int out_dirfd,
                                cd_keyfile *k, const vmenc_dek *dek) {
    bool sync = sync_on(st->host);
    char pw_name[128];
    VMENC_GUARD(file_name(o->dump_id, PW_SUFFIX, pw_name));
    struct stat sb;
    VMENC_ENSURE(fstatat(out_dirfd, pw_name, &sb, AT_SYMLINK_NOFOLLOW) != 0, VMENC_E_EXISTS);
    VMENC_GUARD(copy_data(st->dirfd, out_dirfd, o->dump_id, sync));
    vmenc_coredump_reader *r = NULL;
    vmenc_status s = reader_new(out_dirfd, o->dump_id, dek, &r);
    if (s == VMENC_OK)
        s = verify_all(r);
    vmenc_coredump_reader_free(r);
    vmenc_wrapped_key_free(k->key_safe);
    k->key_safe = NULL;
    k->password_form = true;
    k->kdf_ops = o->kdf_ops != 0 ? o->kdf_ops : crypto_pwhash_OPSLIMIT_MODERATE;
    k->kdf_mem = o->kdf_mem_bytes != 0 ? o->kdf_mem_bytes : crypto_pwhash_MEMLIMIT_MODERATE;
    if (s == VMENC_OK)
        s = pw_seal(k, dek, o->password, o->password_len);
    if (s == VMENC_OK)
        s = write_keyfile(out_dirfd, pw_name, k, sync);
    if (s != VMENC_OK) {
        char data_name[128];
        if (file_name(o->dump_id, DATA_SUFFIX, data_name) == VMENC_OK)
            (void)unlinkat(out_dirfd, data_name, 0);
    }
    return s;
}

vmenc_status vmenc_coredump_export(vmenc_coredump_store *store, const vmenc_coredump_export_options *opts) {
    VMENC_ENSURE(store != NULL && opts != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(opts->struct_size >= EXPORT_OPTIONS_V1_SIZE, VMENC_E_ABI_VERSION);
    vm_op op;
    vm_op_init(&op, store->host, opts->principal, "coredump.export", opts->dump_id);
    VMENC_GUARD(authorize_read(&op, opts->dump_id));
    vmenc_status s = export_options_check(opts);
    if (s != VMENC_OK)
        return vm_op_finish(&op, s, "bad export options");
    const char *why = NULL;
    if ((s = export_strength_check(opts, &why)) != VMENC_OK)
        return vm_op_finish(&op, s, why);
    int out_dirfd = -1;
    if ((s = open_dir(opts->out_dir, &out_dirfd)) != VMENC_OK)
        return vm_op_finish(&op, s, "output directory");
    cd_keyfile k;
    memset(&k, 0, sizeof(k));
    vmenc_dek *dek = NULL;
    s = unwrap_dump(store, &op, opts->dump_id, &k, &dek);
    if (s == VMENC_OK)
        s = export_into(store, opts, out_dirfd, &k, dek);
    vmenc_dek_free(dek);
    cd_keyfile_cleanup(&k);
    (void)close(out_dirfd);
    return vm_op_finish(&op, s, s == VMENC_OK ? "exported with a password" : NULL);
}

vmenc_status vmenc_coredump_open_exported(const char *dir, const char *dump_id, const uint8_t *password,
                                          size_t password_len, vmenc_coredump_reader **out) {
    VMENC_ENSURE(out != NULL && password != NULL && password_len >= 1 &&
                     password_len <= VMENC_COREDUMP_PASSWORD_MAX,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(dump_id != NULL && vm_uuid_check(dump_id) == VMENC_OK, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());
    int dirfd = -1;
    VMENC_GUARD(open_dir(dir, &dirfd));
    cd_keyfile k;
    memset(&k, 0, sizeof(k));
    vmenc_dek *dek = NULL;
    vmenc_status s = read_keyfile(dirfd, dump_id, PW_SUFFIX, NULL, &k);
    if (s == VMENC_OK && !k.password_form)
        s = VMENC_E_PARSE;
    if (s == VMENC_OK)
        s = pw_open(&k, password, password_len, &dek);
    if (s == VMENC_OK)
        s = reader_new(dirfd, dump_id, dek, out);
    vmenc_dek_free(dek);
    if (k.host_id[0] != '\0' || k.key_safe != NULL)
        cd_keyfile_cleanup(&k);
    (void)close(dirfd);
    return s;
}
