/*
 * lib/kms/file/file_provider.c - the "file" key provider: keystore I/O,
 * locking, atomic replacement, and the provider operations (kms_file.h).
 *
 * Concurrency model. Writers (create, revoke, destroy, restore, passphrase
 * change) take the provider's mutex, then an exclusive flock (core/lock.h) on
 * "<path>.lock" (a separate file, so the keystore itself can be replaced
 * by rename while the lock is held), re-read and decrypt the keystore, apply
 * their change to a copy, and replace the file: write "<path>.tmp", fsync,
 * rename over "<path>", fsync the directory. Only the lock holder touches
 * "<path>.tmp", so a leftover one is stale and simply truncated. Readers take
 * only the mutex: rename is atomic, so they always read a whole file. The
 * decrypted table is cached in secure memory and re-read whenever the file's
 * identity (device, inode, size, mtime) changes, which every rename does.
 * The Argon2id-derived key is cached for the file's salt and limits; the
 * salt changes only with the passphrase, so a process derives once.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fs.h"
#include "core/lock.h"
#include "kms/file/keystore.h"
#include "kms/kms_internal.h"
#include "vmenc/kms_file.h"

/* RFC 9106 section 4, second recommended option: Argon2id, t = 3 passes,
 * m = 64 MiB. libsodium's MODERATE (256 MiB) took seconds per open on a
 * loaded host, and every process that opens the keystore pays it once. */
#define DEFAULT_OPS 3u
#define DEFAULT_MEM_KIB (64u * 1024u)
#define DEFAULT_MAX_OPS 16u
#define DEFAULT_MAX_MEM_KIB (1024u * 1024u)
#define PASS_MAX 4096u

typedef struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
} file_id;

typedef struct file_provider {
    vmenc_kms_provider base;
    pthread_mutex_t mu;
    char *path;
    char *lock_path;
    char *tmp_path;
    char *dir_path;
    vmenc_secret *pass;
    uint32_t flags;
    uint32_t new_ops, new_mem_kib, max_ops, max_mem_kib;
    /* Derived key for (salt, ops, mem) of master_hdr. */
    vmenc_secret *master;
    vmenc_ks_header master_hdr;
    /* Decrypted table of the file with identity cache_id and header cache_hdr. */
    vmenc_ks_store *cache;
    vmenc_ks_header cache_hdr;
    file_id cache_id;
    vmenc_kms_file_hook_fn hook;
    void *hook_arg;
} file_provider;

static const vmenc_kms_provider_ops k_file_ops;

static file_provider *as_file(vmenc_kms_provider *p) {
    if (p == NULL || p->ops != &k_file_ops)
        return NULL;
    return (file_provider *)p;
}

/* ---- options ----------------------------------------------------------------- */

typedef struct kdf_limits {
    uint32_t flags, ops, mem_kib, max_ops, max_mem_kib;
} kdf_limits;

static vmenc_status resolve_options(const vmenc_kms_file_options *o, kdf_limits *out) {
    kdf_limits l = {0, DEFAULT_OPS, DEFAULT_MEM_KIB, DEFAULT_MAX_OPS, DEFAULT_MAX_MEM_KIB};
    if (o != NULL) {
        VMENC_ENSURE(o->struct_size >= offsetof(vmenc_kms_file_options, max_kdf_memlimit_kib) + sizeof(uint32_t),
                     VMENC_E_INVALID_ARG);
        VMENC_ENSURE((o->flags & ~VMENC_KMS_FILE_CREATE) == 0, VMENC_E_INVALID_ARG);
        l.flags = o->flags;
        if (o->kdf_opslimit)
            l.ops = o->kdf_opslimit;
        if (o->kdf_memlimit_kib)
            l.mem_kib = o->kdf_memlimit_kib;
        if (o->max_kdf_opslimit)
            l.max_ops = o->max_kdf_opslimit;
        if (o->max_kdf_memlimit_kib)
            l.max_mem_kib = o->max_kdf_memlimit_kib;
    }
    VMENC_ENSURE(l.ops >= VMENC_KS_OPS_MIN && l.ops <= VMENC_KS_OPS_MAX, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(l.mem_kib >= VMENC_KS_MEM_KIB_MIN && l.mem_kib <= VMENC_KS_MEM_KIB_MAX, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(l.max_ops >= VMENC_KS_OPS_MIN && l.max_ops <= VMENC_KS_OPS_MAX, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(l.max_mem_kib >= VMENC_KS_MEM_KIB_MIN && l.max_mem_kib <= VMENC_KS_MEM_KIB_MAX,
                 VMENC_E_INVALID_ARG);
    /* Never write a file this provider would refuse to open. */
    if (l.max_ops < l.ops)
        l.max_ops = l.ops;
    if (l.max_mem_kib < l.mem_kib)
        l.max_mem_kib = l.mem_kib;
    *out = l;
    return VMENC_OK;
}

static vmenc_status check_pass(const uint8_t *pass, size_t len) {
    VMENC_ENSURE(pass != NULL && len > 0 && len <= PASS_MAX, VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

static vmenc_status check_path(const char *path) {
    VMENC_ENSURE(path != NULL && path[0] != '\0', VMENC_E_INVALID_ARG);
    VMENC_ENSURE(strnlen(path, PATH_MAX) < PATH_MAX - 16, VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

/* ---- small file helpers ----------------------------------------------------- */

static char *str_concat(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s != NULL) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    return s;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static void id_of(const struct stat *st, file_id *out) {
    out->dev = st->st_dev;
    out->ino = st->st_ino;
    out->size = st->st_size;
    out->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static bool id_equal(const file_id *a, const file_id *b) {
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns;
}

/* read_whole reads |path| into a heap buffer. A missing file is
 * VMENC_E_KMS_UNAVAILABLE; an over-long one VMENC_E_TOO_LARGE. If |known|
 * matches the file's identity, nothing is read and *out stays NULL. */
static vmenc_status read_whole(const char *path, const file_id *known, uint8_t **out, size_t *out_len,
                               file_id *out_id) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? VMENC_E_KMS_UNAVAILABLE : VMENC_E_IO;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return VMENC_E_IO;
    }
    id_of(&st, out_id);
    if (known != NULL && id_equal(known, out_id)) {
        close(fd);
        *out = NULL;
        *out_len = 0;
        return VMENC_OK;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > VMENC_KS_HEADER_BYTES + (uint64_t)VMENC_KS_MAX_CT) {
        close(fd);
        return VMENC_E_TOO_LARGE;
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        close(fd);
        return VMENC_E_NOMEM;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    /* A short read means the file changed size under us; treat as damage of
     * this read (the header length check catches it too). */
    *out = buf;
    *out_len = got;
    return VMENC_OK;
}

/* atomic_write puts |data| at |path| through |tmp|: write, fsync, then
 * rename (or, with |noreplace|, link + unlink so an existing |path| is never
 * replaced: VMENC_E_EXISTS), then fsync the directory; the test hook sees
 * each step (lib/core/fs.c's engine numbers them as VMENC_KMS_FILE_STEP_*).
 * The provider reports every other failure as VMENC_E_IO. */
_Static_assert((int)VMENC_FS_STEP_TMP_OPEN == (int)VMENC_KMS_FILE_STEP_TMP_OPEN &&
                   (int)VMENC_FS_STEP_HALF_WRITTEN == (int)VMENC_KMS_FILE_STEP_HALF_WRITTEN &&
                   (int)VMENC_FS_STEP_WRITTEN == (int)VMENC_KMS_FILE_STEP_WRITTEN &&
                   (int)VMENC_FS_STEP_SYNCED == (int)VMENC_KMS_FILE_STEP_SYNCED &&
                   (int)VMENC_FS_STEP_RENAMED == (int)VMENC_KMS_FILE_STEP_RENAMED &&
                   (int)VMENC_FS_STEP_DONE == (int)VMENC_KMS_FILE_STEP_DONE,
               "the key store's crash steps are core/fs.h's");
static vmenc_status atomic_write(const file_provider *fp, const char *path, const char *tmp, const char *dir,
                                 const uint8_t *data, size_t len, bool noreplace) {
    vmenc_fs_replace r = {.dirfd = AT_FDCWD, .tmp = tmp, .name = path, .sync_dirfd = -1, .sync_dir = dir,
                          .sync = true, .exclusive_tmp = noreplace, .noreplace = noreplace};
    if (fp != NULL && fp->hook != NULL) {
        r.step = fp->hook;
        r.step_arg = fp->hook_arg;
    }
    vmenc_status st = vmenc_fs_replace_file(&r, data, len);
    return st == VMENC_OK || (noreplace && st == VMENC_E_EXISTS) ? st : VMENC_E_IO;
}

/* ---- the lock ----------------------------------------------------------------- */

/* lock_acquire takes an exclusive lock on |lock_path| (lib/core/lock.h),
 * waiting at most |timeout_ms|: VMENC_E_KMS_TIMEOUT when it is not free in
 * time, VMENC_E_KMS_UNAVAILABLE when the directory is gone. Returns the
 * descriptor in |*out_fd| (lock_release to unlock). */
static vmenc_status lock_acquire(const char *lock_path, uint32_t timeout_ms, int *out_fd) {
    vmenc_status st = vmenc_lock_file(lock_path, timeout_ms, out_fd);
    switch (st) {
    case VMENC_OK: return VMENC_OK;
    case VMENC_E_LOCKED: return VMENC_E_KMS_TIMEOUT;
    case VMENC_E_NOT_FOUND: return VMENC_E_KMS_UNAVAILABLE;
    default: return VMENC_E_IO;
    }
}

static void lock_release(int fd) { vmenc_lock_release(fd); }

/* ---- loading ---------------------------------------------------------------------- */

static bool same_kdf(const vmenc_ks_header *a, const vmenc_ks_header *b) {
    return a->opslimit == b->opslimit && a->memlimit_kib == b->memlimit_kib &&
           memcmp(a->salt, b->salt, sizeof(a->salt)) == 0;
}

/* master_for returns the derived key for |h| (cached when salt and limits
 * match); refuses headers that ask for more work than allowed. */
static vmenc_status master_for(file_provider *fp, const vmenc_ks_header *h, const vmenc_secret **out) {
    VMENC_ENSURE(h->opslimit <= fp->max_ops && h->memlimit_kib <= fp->max_mem_kib, VMENC_E_TOO_LARGE);
    if (fp->master == NULL || !same_kdf(&fp->master_hdr, h)) {
        vmenc_secret *m = NULL;
        VMENC_GUARD(vmenc_ks_derive(fp->pass, h, &m));
        vmenc_secret_free(fp->master);
        fp->master = m;
        fp->master_hdr = *h;
    }
    *out = fp->master;
    return VMENC_OK;
}

/* parse_file parses a whole keystore file's header. */
static vmenc_status parse_file(const uint8_t *buf, size_t len, vmenc_ks_header *h) {
    vmenc_cbs cbs;
    vmenc_cbs_init(&cbs, buf, len);
    return vmenc_ks_header_parse(&cbs, h);
}

/* load makes fp->cache reflect the file on disk (re-reading it when its
 * identity changed, or always with |force|). Caller holds fp->mu. */
static vmenc_status load(file_provider *fp, bool force) {
    uint8_t *buf = NULL;
    size_t len = 0;
    file_id id;
    VMENC_GUARD(read_whole(fp->path, (force || fp->cache == NULL) ? NULL : &fp->cache_id, &buf, &len, &id));
    if (buf == NULL)
        return VMENC_OK; /* unchanged */
    vmenc_ks_header h;
    vmenc_status st = parse_file(buf, len, &h);
    const vmenc_secret *master = NULL;
    if (st == VMENC_OK)
        st = master_for(fp, &h, &master);
    vmenc_ks_store *s = NULL;
    if (st == VMENC_OK)
        st = vmenc_ks_open(buf, len, &h, master, &s);
    free(buf);
    if (st != VMENC_OK)
        return st;
    vmenc_ks_store_free(fp->cache);
    fp->cache = s;
    fp->cache_hdr = h;
    fp->cache_id = id;
    return VMENC_OK;
}

/* store_write seals |s| under |master| with |h|'s salt and limits and
 * replaces the keystore; on success the cache takes |*s| over. Caller holds
 * fp->mu and the flock. */
static vmenc_status store_write(file_provider *fp, vmenc_ks_store **s, const vmenc_ks_header *h,
                                const vmenc_secret *master) {
    uint8_t *file = NULL;
    size_t file_len = 0;
    VMENC_GUARD(vmenc_ks_seal(*s, master, h, &file, &file_len));
    vmenc_status st = atomic_write(fp, fp->path, fp->tmp_path, fp->dir_path, file, file_len, false);
    vmenc_ks_header written;
    if (st == VMENC_OK)
        st = parse_file(file, file_len, &written);
    free(file);
    if (st != VMENC_OK) {
        /* The file may or may not have been replaced; re-read next time. */
        vmenc_ks_store_free(fp->cache);
        fp->cache = NULL;
        return st;
    }
    struct stat sb;
    vmenc_ks_store_free(fp->cache);
    fp->cache = NULL;
    if (stat(fp->path, &sb) == 0) {
        fp->cache = *s;
        *s = NULL;
        fp->cache_hdr = written;
        id_of(&sb, &fp->cache_id);
    }
    return VMENC_OK;
}

static vmenc_status new_header(uint32_t ops, uint32_t mem_kib, vmenc_ks_header *h) {
    memset(h, 0, sizeof(*h));
    h->version = VMENC_KS_VERSION;
    h->kdf = VMENC_KS_KDF_ARGON2ID13;
    h->aead = VMENC_KS_AEAD_XCHACHA20POLY1305;
    h->opslimit = ops;
    h->memlimit_kib = mem_kib;
    return vmenc_random_bytes(h->salt, sizeof(h->salt));
}

/* write_new_file writes an empty keystore (or |s|) to |path| under a fresh
 * salt, never replacing an existing file. */
static vmenc_status write_new_file(const file_provider *fp, const char *path, const vmenc_secret *pass,
                                   uint32_t ops, uint32_t mem_kib, const vmenc_ks_store *s,
                                   vmenc_secret **out_master, vmenc_ks_header *out_hdr) {
    vmenc_ks_header h;
    VMENC_GUARD(new_header(ops, mem_kib, &h));
    vmenc_secret *master = NULL;
    VMENC_GUARD(vmenc_ks_derive(pass, &h, &master));
    vmenc_ks_store *empty = NULL;
    vmenc_status st = VMENC_OK;
    if (s == NULL) {
        st = vmenc_ks_store_new(&empty);
        s = empty;
    }
    uint8_t *file = NULL;
    size_t file_len = 0;
    if (st == VMENC_OK)
        st = vmenc_ks_seal(s, master, &h, &file, &file_len);
    vmenc_ks_store_free(empty);
    char *tmp = NULL, *dir = NULL;
    if (st == VMENC_OK) {
        /* A name of its own: two processes creating (or exporting to) the
         * same path at once must not write into each other's temp file. */
        uint8_t r[8];
        char suffix[40];
        randombytes_buf(r, sizeof(r));
        snprintf(suffix, sizeof(suffix), ".new.%02x%02x%02x%02x%02x%02x%02x%02x.tmp", r[0], r[1], r[2], r[3], r[4],
                 r[5], r[6], r[7]);
        tmp = str_concat(path, suffix);
        dir = dir_of(path);
        if (tmp == NULL || dir == NULL)
            st = VMENC_E_NOMEM;
    }
    if (st == VMENC_OK)
        st = atomic_write(fp, path, tmp, dir, file, file_len, true);
    free(file);
    free(tmp);
    free(dir);
    if (st == VMENC_OK && out_master != NULL) {
        /* The salt in h is the file's: the derivation is reusable. */
        *out_master = master;
        *out_hdr = h;
        master = NULL;
    }
    vmenc_secret_free(master);
    return st;
}

/* ---- modification under the lock ----------------------------------------------- */

typedef vmenc_status (*mutate_fn)(vmenc_ks_store *s, void *arg);

/* modify runs |fn| on a fresh copy of the keystore and writes the result,
 * all under the flock. */
static vmenc_status modify(file_provider *fp, uint32_t timeout_ms, mutate_fn fn, void *arg) {
    pthread_mutex_lock(&fp->mu);
    int lk = -1;
    vmenc_status st = lock_acquire(fp->lock_path, timeout_ms, &lk);
    if (st == VMENC_OK)
        st = load(fp, true); /* re-read under the lock: others may have written */
    vmenc_ks_store *work = NULL;
    if (st == VMENC_OK)
        st = vmenc_ks_store_dup(fp->cache, &work);
    if (st == VMENC_OK)
        st = fn(work, arg);
    if (st == VMENC_OK) {
        vmenc_ks_header h = fp->cache_hdr;
        const vmenc_secret *master = NULL;
        st = master_for(fp, &h, &master);
        if (st == VMENC_OK)
            st = store_write(fp, &work, &h, master);
    }
    vmenc_ks_store_free(work);
    lock_release(lk);
    pthread_mutex_unlock(&fp->mu);
    return st;
}

/* ---- provider operations ------------------------------------------------------------ */

typedef struct create_arg {
    const char *name;
    char id[37];
} create_arg;

static vmenc_status do_create(vmenc_ks_store *s, void *varg) {
    create_arg *a = varg;
    vmenc_ks_entry *e = vmenc_secure_alloc(sizeof(*e));
    if (e == NULL)
        return VMENC_E_NOMEM;
    vmenc_status st;
    do {
        st = vmenc_ks_new_uuid(a->id);
    } while (st == VMENC_OK && vmenc_ks_store_find(s, a->id) != NULL);
    if (st == VMENC_OK) {
        memcpy(e->id, a->id, sizeof(a->id));
        size_t nn = a->name ? strlen(a->name) : 0;
        memcpy(e->name, a->name ? a->name : "", nn + 1);
        e->state = VMENC_KS_ACTIVE;
        e->created_ms = vmenc_now_realtime_ms();
        randombytes_buf(e->key, sizeof(e->key));
        st = vmenc_ks_store_add(s, e);
    }
    vmenc_secure_free(e);
    return st;
}

static vmenc_status file_create_kek(vmenc_kms_provider *p, const char *name, uint32_t timeout_ms, char *out_id,
                                    size_t out_id_cap) {
    file_provider *fp = as_file(p);
    VMENC_ENSURE_REF(fp);
    if (name != NULL) {
        size_t n = strnlen(name, VMENC_KS_NAME_MAX + 1);
        VMENC_ENSURE(n <= VMENC_KS_NAME_MAX, VMENC_E_INVALID_ARG);
        for (size_t i = 0; i < n; i++)
            VMENC_ENSURE((unsigned char)name[i] >= 0x20 && name[i] != 0x7f, VMENC_E_INVALID_ARG);
    }
    VMENC_ENSURE(out_id_cap >= 37, VMENC_E_BUFFER_TOO_SMALL);
    create_arg a = {name, {0}};
    VMENC_GUARD(modify(fp, timeout_ms, do_create, &a));
    memcpy(out_id, a.id, sizeof(a.id));
    return VMENC_OK;
}

static vmenc_status file_get_kek(vmenc_kms_provider *p, const char *key_id, uint32_t timeout_ms, vmenc_kek **out) {
    file_provider *fp = as_file(p);
    VMENC_ENSURE_REF(fp);
    pthread_mutex_lock(&fp->mu);
    vmenc_status st = load(fp, false);
    if (st == VMENC_OK) {
        const vmenc_ks_entry *e = vmenc_ks_store_find(fp->cache, key_id);
        if (e == NULL)
            st = VMENC_E_KEY_NOT_FOUND;
        else if (e->state != VMENC_KS_ACTIVE)
            st = VMENC_E_KEY_STATE;
        else
            st = vmenc_kek_new_from_bytes(e->key, sizeof(e->key), out);
    }
    pthread_mutex_unlock(&fp->mu);
    return st;
}

static vmenc_status do_revoke(vmenc_ks_store *s, void *arg) {
    vmenc_ks_entry *e = vmenc_ks_store_find(s, arg);
    VMENC_ENSURE(e != NULL, VMENC_E_KEY_NOT_FOUND);
    VMENC_ENSURE(e->state != VMENC_KS_DESTROYED, VMENC_E_KEY_STATE);
    e->state = VMENC_KS_REVOKED;
    return VMENC_OK;
}

static vmenc_status do_destroy(vmenc_ks_store *s, void *arg) {
    vmenc_ks_entry *e = vmenc_ks_store_find(s, arg);
    VMENC_ENSURE(e != NULL, VMENC_E_KEY_NOT_FOUND);
    e->state = VMENC_KS_DESTROYED;
    sodium_memzero(e->key, sizeof(e->key));
    return VMENC_OK;
}

static vmenc_status file_revoke_kek(vmenc_kms_provider *p, const char *key_id, uint32_t timeout_ms) {
    file_provider *fp = as_file(p);
    VMENC_ENSURE_REF(fp);
    return modify(fp, timeout_ms, do_revoke, (void *)key_id);
}

static vmenc_status file_destroy_kek(vmenc_kms_provider *p, const char *key_id, uint32_t timeout_ms) {
    file_provider *fp = as_file(p);
    VMENC_ENSURE_REF(fp);
    return modify(fp, timeout_ms, do_destroy, (void *)key_id);
}

static vmenc_status file_health(vmenc_kms_provider *p, uint32_t timeout_ms) {
    file_provider *fp = as_file(p);
    VMENC_ENSURE_REF(fp);
    pthread_mutex_lock(&fp->mu);
    vmenc_status st = load(fp, false);
    pthread_mutex_unlock(&fp->mu);
    return st;
}

static void file_free(vmenc_kms_provider *p) {
    file_provider *fp = as_file(p);
    if (fp == NULL)
        return;
    vmenc_ks_store_free(fp->cache);
    vmenc_secret_free(fp->master);
    vmenc_secret_free(fp->pass);
    free(fp->path);
    free(fp->lock_path);
    free(fp->tmp_path);
    free(fp->dir_path);
    pthread_mutex_destroy(&fp->mu);
    sodium_memzero(fp, sizeof(*fp));
    free(fp);
}

static const vmenc_kms_provider_ops k_file_ops = {
    .struct_size = sizeof(vmenc_kms_provider_ops),
    .abi_version = VMENC_KMS_PROVIDER_ABI_VERSION,
    .type_name = "file",
    .create_kek = file_create_kek,
    .get_kek = file_get_kek,
    .wrap = NULL, /* KEKs leave the file provider: the key manager wraps locally */
    .unwrap = NULL,
    .revoke_kek = file_revoke_kek,
    .destroy_kek = file_destroy_kek,
    .health = file_health,
    .free = file_free,
};

/* ---- construction ------------------------------------------------------------------ */

vmenc_status vmenc_kms_file_provider_new(const char *path, const uint8_t *pass, size_t pass_len,
                                         const vmenc_kms_file_options *opts, vmenc_kms_provider **out) {
    VMENC_GUARD(check_path(path));
    VMENC_GUARD(check_pass(pass, pass_len));
    VMENC_ENSURE_REF(out);
    kdf_limits l;
    VMENC_GUARD(resolve_options(opts, &l));
    VMENC_GUARD(vmenc_ensure_init());

    file_provider *fp = calloc(1, sizeof(*fp));
    if (fp == NULL)
        return VMENC_E_NOMEM;
    fp->base.struct_size = sizeof(fp->base);
    fp->base.ops = &k_file_ops;
    pthread_mutex_init(&fp->mu, NULL);
    fp->flags = l.flags;
    fp->new_ops = l.ops;
    fp->new_mem_kib = l.mem_kib;
    fp->max_ops = l.max_ops;
    fp->max_mem_kib = l.max_mem_kib;
    fp->path = strdup(path);
    fp->lock_path = str_concat(path, ".lock");
    fp->tmp_path = str_concat(path, ".tmp");
    fp->dir_path = dir_of(path);
    vmenc_status st = VMENC_OK;
    if (fp->path == NULL || fp->lock_path == NULL || fp->tmp_path == NULL || fp->dir_path == NULL)
        st = VMENC_E_NOMEM;
    if (st == VMENC_OK)
        st = vmenc_secret_from(pass, pass_len, &fp->pass);
    if (st == VMENC_OK) {
        pthread_mutex_lock(&fp->mu);
        st = load(fp, true);
        if (st == VMENC_E_KMS_UNAVAILABLE && (fp->flags & VMENC_KMS_FILE_CREATE)) {
            int lk = -1;
            st = lock_acquire(fp->lock_path, 10000, &lk);
            if (st == VMENC_OK) {
                vmenc_secret *master = NULL;
                vmenc_ks_header h;
                st = write_new_file(fp, fp->path, fp->pass, fp->new_ops, fp->new_mem_kib, NULL, &master, &h);
                if (st == VMENC_OK) {
                    vmenc_secret_free(fp->master); /* seed the cache: no second Argon2id run */
                    fp->master = master;
                    fp->master_hdr = h;
                }
                if (st == VMENC_E_EXISTS) /* another process created it first */
                    st = VMENC_OK;
                if (st == VMENC_OK)
                    st = load(fp, true);
            }
            lock_release(lk);
        }
        pthread_mutex_unlock(&fp->mu);
    }
    if (st != VMENC_OK) {
        file_free(&fp->base);
        return st;
    }
    *out = &fp->base;
    return VMENC_OK;
}

vmenc_status vmenc_kms_file_create(const char *path, const uint8_t *pass, size_t pass_len,
                                   const vmenc_kms_file_options *opts) {
    VMENC_GUARD(check_path(path));
    VMENC_GUARD(check_pass(pass, pass_len));
    kdf_limits l;
    VMENC_GUARD(resolve_options(opts, &l));
    VMENC_GUARD(vmenc_ensure_init());
    vmenc_secret *p = NULL;
    VMENC_GUARD(vmenc_secret_from(pass, pass_len, &p));
    vmenc_status st = write_new_file(NULL, path, p, l.ops, l.mem_kib, NULL, NULL, NULL);
    vmenc_secret_free(p);
    return st;
}

static vmenc_status parse_u32_option(const char *const *options, const char *key, uint32_t *out) {
    const char *v = vmenc_kms_config_option(options, key);
    if (v == NULL)
        return VMENC_OK;
    uint64_t n;
    VMENC_ENSURE(vmenc_kms_parse_u64(v, &n) && n <= UINT32_MAX, VMENC_E_INVALID_ARG);
    *out = (uint32_t)n;
    return VMENC_OK;
}

vmenc_status vmenc_file_provider_factory(void *arg, const vmenc_kms_endpoint_config *cfg,
                                         vmenc_kms_provider **out) {
    (void)arg;
    VMENC_ENSURE(cfg != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vmenc_kms_file_options o = {.struct_size = sizeof(o)};
    const char *create = vmenc_kms_config_option(cfg->options, "create");
    if (create != NULL) {
        VMENC_ENSURE(strcmp(create, "1") == 0 || strcmp(create, "0") == 0, VMENC_E_INVALID_ARG);
        if (create[0] == '1')
            o.flags |= VMENC_KMS_FILE_CREATE;
    }
    VMENC_GUARD(parse_u32_option(cfg->options, "kdf_ops", &o.kdf_opslimit));
    VMENC_GUARD(parse_u32_option(cfg->options, "kdf_mem_kib", &o.kdf_memlimit_kib));
    VMENC_GUARD(parse_u32_option(cfg->options, "max_kdf_ops", &o.max_kdf_opslimit));
    VMENC_GUARD(parse_u32_option(cfg->options, "max_kdf_mem_kib", &o.max_kdf_memlimit_kib));
    if (cfg->options != NULL) {
        static const char *const known[] = {"create", "kdf_ops", "kdf_mem_kib", "max_kdf_ops", "max_kdf_mem_kib"};
        for (size_t i = 0; cfg->options[i] != NULL; i++) {
            bool ok = false;
            for (size_t k = 0; k < VMENC_ARRAY_LEN(known) && !ok; k++) {
                size_t kl = strlen(known[k]);
                ok = strncmp(cfg->options[i], known[k], kl) == 0 && cfg->options[i][kl] == '=';
            }
            VMENC_ENSURE(ok, VMENC_E_INVALID_ARG); /* a typo must not pass silently */
        }
    }
    return vmenc_kms_file_provider_new(cfg->address, cfg->secret, cfg->secret_len, &o, out);
}

vmenc_status vmenc_kms_file_set_test_hook(vmenc_kms_provider *p, vmenc_kms_file_hook_fn fn, void *arg) {
    file_provider *fp = as_file(p);
    VMENC_ENSURE_REF(fp);
    pthread_mutex_lock(&fp->mu);
    fp->hook = fn;
    fp->hook_arg = arg;
    pthread_mutex_unlock(&fp->mu);
    return VMENC_OK;
}

/* ---- count, backup, restore, passphrase change ------------------------------------ */

vmenc_status vmenc_kms_file_count(vmenc_kms_provider *p, size_t *out_live, size_t *out_total) {
    file_provider *fp = as_file(p);
    VMENC_ENSURE(fp != NULL && out_live != NULL, VMENC_E_INVALID_ARG);
    pthread_mutex_lock(&fp->mu);
    vmenc_status st = load(fp, false);
    if (st == VMENC_OK) {
        size_t live = 0;
        for (size_t i = 0; i < fp->cache->num; i++)
            live += fp->cache->entries[i].state != VMENC_KS_DESTROYED;
        *out_live = live;
        if (out_total != NULL)
            *out_total = fp->cache->num;
    }
    pthread_mutex_unlock(&fp->mu);
    return st;
}

vmenc_status vmenc_kms_file_export(vmenc_kms_provider *p, const char *backup_path, const uint8_t *backup_pass,
                                   size_t backup_pass_len, const vmenc_kms_file_options *opts,
                                   uint32_t timeout_ms) {
    file_provider *fp = as_file(p);
    VMENC_ENSURE_REF(fp);
    VMENC_GUARD(check_path(backup_path));
    VMENC_GUARD(check_pass(backup_pass, backup_pass_len));
    kdf_limits l;
    VMENC_GUARD(resolve_options(opts, &l));
    vmenc_secret *bp = NULL;
    VMENC_GUARD(vmenc_secret_from(backup_pass, backup_pass_len, &bp));
    pthread_mutex_lock(&fp->mu);
    vmenc_ks_store *snap = NULL;
    vmenc_status st = load(fp, true);
    if (st == VMENC_OK)
        st = vmenc_ks_store_dup(fp->cache, &snap);
    pthread_mutex_unlock(&fp->mu);
    if (st == VMENC_OK)
        st = write_new_file(NULL, backup_path, bp, l.ops, l.mem_kib, snap, NULL, NULL);
    vmenc_ks_store_free(snap);
    vmenc_secret_free(bp);
    return st;
}

/* open_backup reads and decrypts a keystore file with |pass|, within the
 * provider's KDF limits. */
static vmenc_status open_backup(const file_provider *fp, const char *path, const uint8_t *pass, size_t pass_len,
                                vmenc_ks_store **out) {
    uint8_t *buf = NULL;
    size_t len = 0;
    file_id id;
    VMENC_GUARD(read_whole(path, NULL, &buf, &len, &id));
    vmenc_ks_header h;
    vmenc_status st = parse_file(buf, len, &h);
    if (st == VMENC_OK && (h.opslimit > fp->max_ops || h.memlimit_kib > fp->max_mem_kib))
        st = VMENC_E_TOO_LARGE;
    vmenc_secret *bp = NULL, *master = NULL;
    if (st == VMENC_OK)
        st = vmenc_secret_from(pass, pass_len, &bp);
    if (st == VMENC_OK)
        st = vmenc_ks_derive(bp, &h, &master);
    if (st == VMENC_OK)
        st = vmenc_ks_open(buf, len, &h, master, out);
    vmenc_secret_free(master);
    vmenc_secret_free(bp);
    free(buf);
    return st;
}

typedef struct restore_arg {
    const vmenc_ks_store *backup;
    vmenc_kms_file_restore_mode mode;
    size_t added;
} restore_arg;

static vmenc_status do_merge(vmenc_ks_store *s, const vmenc_ks_store *b, size_t *added) {
    /* Check every conflict before changing anything. */
    for (size_t i = 0; i < b->num; i++) {
        const vmenc_ks_entry *be = &b->entries[i];
        const vmenc_ks_entry *ce = vmenc_ks_store_find(s, be->id);
        if (ce == NULL || ce->state == VMENC_KS_DESTROYED || be->state == VMENC_KS_DESTROYED)
            continue;
        VMENC_ENSURE(vmenc_ct_equal(ce->key, be->key, sizeof(ce->key)), VMENC_E_KEY_MISMATCH);
    }
    size_t n = 0;
    for (size_t i = 0; i < b->num; i++) {
        if (vmenc_ks_store_find(s, b->entries[i].id) != NULL)
            continue;
        VMENC_GUARD(vmenc_ks_store_add(s, &b->entries[i]));
        n++;
    }
    *added = n;
    return VMENC_OK;
}

/* do_replace makes |s| a copy of |b|, unless that would drop or change a
 * live key of |s|. */
static vmenc_status do_replace(vmenc_ks_store *s, const vmenc_ks_store *b, size_t *added) {
    size_t n = 0;
    for (size_t i = 0; i < s->num; i++) {
        const vmenc_ks_entry *ce = &s->entries[i];
        const vmenc_ks_entry *be = vmenc_ks_store_find(b, ce->id);
        if (ce->state == VMENC_KS_DESTROYED)
            continue;
        VMENC_ENSURE(be != NULL && be->state != VMENC_KS_DESTROYED, VMENC_E_KEY_MISMATCH);
        VMENC_ENSURE(vmenc_ct_equal(ce->key, be->key, sizeof(ce->key)), VMENC_E_KEY_MISMATCH);
    }
    for (size_t i = 0; i < b->num; i++)
        n += vmenc_ks_store_find(s, b->entries[i].id) == NULL;
    sodium_memzero(s->entries, s->num * sizeof(*s->entries));
    s->num = 0;
    for (size_t i = 0; i < b->num; i++)
        VMENC_GUARD(vmenc_ks_store_add(s, &b->entries[i]));
    *added = n;
    return VMENC_OK;
}

static vmenc_status do_restore(vmenc_ks_store *s, void *varg) {
    restore_arg *a = varg;
    if (a->mode == VMENC_KMS_FILE_RESTORE_MERGE)
        return do_merge(s, a->backup, &a->added);
    return do_replace(s, a->backup, &a->added);
}

vmenc_status vmenc_kms_file_restore(vmenc_kms_provider *p, const char *backup_path, const uint8_t *backup_pass,
                                    size_t backup_pass_len, vmenc_kms_file_restore_mode mode, uint32_t timeout_ms,
                                    size_t *out_num_added) {
    file_provider *fp = as_file(p);
    VMENC_ENSURE_REF(fp);
    VMENC_GUARD(check_path(backup_path));
    VMENC_GUARD(check_pass(backup_pass, backup_pass_len));
    VMENC_ENSURE(mode == VMENC_KMS_FILE_RESTORE_MERGE || mode == VMENC_KMS_FILE_RESTORE_REPLACE,
                 VMENC_E_INVALID_ARG);
    vmenc_ks_store *b = NULL;
    VMENC_GUARD(open_backup(fp, backup_path, backup_pass, backup_pass_len, &b));
    restore_arg a = {b, mode, 0};
    vmenc_status st = modify(fp, timeout_ms, do_restore, &a);
    if (st != VMENC_OK && mode == VMENC_KMS_FILE_RESTORE_REPLACE &&
        (st == VMENC_E_AUTH || st == VMENC_E_KMS_UNAVAILABLE ||
         vmenc_status_category_of(st) == VMENC_CAT_PARSE)) {
        /* The keystore is missing or damaged (not merely locked with another
         * passphrase): there is nothing readable to protect, so write the
         * backup's content as a new keystore under our passphrase. */
        pthread_mutex_lock(&fp->mu);
        int lk = -1;
        st = lock_acquire(fp->lock_path, timeout_ms, &lk);
        if (st == VMENC_OK) {
            vmenc_status again = load(fp, true);
            if (again == VMENC_OK) {
                st = VMENC_E_BAD_STATE; /* it became readable meanwhile: retry the normal way */
            } else {
                vmenc_ks_header h;
                st = new_header(fp->new_ops, fp->new_mem_kib, &h);
                const vmenc_secret *master = NULL;
                if (st == VMENC_OK)
                    st = master_for(fp, &h, &master);
                vmenc_ks_store *copy = NULL;
                if (st == VMENC_OK)
                    st = vmenc_ks_store_dup(b, &copy);
                if (st == VMENC_OK)
                    st = store_write(fp, &copy, &h, master);
                vmenc_ks_store_free(copy);
                a.added = b->num;
            }
        }
        lock_release(lk);
        pthread_mutex_unlock(&fp->mu);
    }
    vmenc_ks_store_free(b);
    if (st == VMENC_OK && out_num_added != NULL)
        *out_num_added = a.added;
    return st;
}

typedef struct rekey_arg {
    file_provider *fp;
    vmenc_secret *new_pass;
    uint32_t ops, mem_kib;
} rekey_arg;

vmenc_status vmenc_kms_file_change_passphrase(vmenc_kms_provider *p, const uint8_t *new_pass, size_t new_pass_len,
                                              const vmenc_kms_file_options *opts, uint32_t timeout_ms) {
    file_provider *fp = as_file(p);
    VMENC_ENSURE_REF(fp);
    VMENC_GUARD(check_pass(new_pass, new_pass_len));
    kdf_limits l;
    VMENC_GUARD(resolve_options(opts, &l));
    VMENC_ENSURE(l.ops <= fp->max_ops && l.mem_kib <= fp->max_mem_kib, VMENC_E_INVALID_ARG);
    vmenc_secret *np = NULL;
    VMENC_GUARD(vmenc_secret_from(new_pass, new_pass_len, &np));
    vmenc_ks_header h;
    vmenc_secret *master = NULL;
    vmenc_status st = new_header(l.ops, l.mem_kib, &h);
    if (st == VMENC_OK)
        st = vmenc_ks_derive(np, &h, &master); /* slow: outside every lock */
    if (st != VMENC_OK) {
        vmenc_secret_free(np);
        return st;
    }
    pthread_mutex_lock(&fp->mu);
    int lk = -1;
    st = lock_acquire(fp->lock_path, timeout_ms, &lk);
    if (st == VMENC_OK)
        st = load(fp, true);
    vmenc_ks_store *work = NULL;
    if (st == VMENC_OK)
        st = vmenc_ks_store_dup(fp->cache, &work);
    if (st == VMENC_OK)
        st = store_write(fp, &work, &h, master);
    if (st == VMENC_OK) {
        vmenc_secret_free(fp->pass);
        fp->pass = np;
        np = NULL;
        vmenc_secret_free(fp->master);
        fp->master = master;
        fp->master_hdr = h;
        master = NULL;
    }
    vmenc_ks_store_free(work);
    lock_release(lk);
    pthread_mutex_unlock(&fp->mu);
    vmenc_secret_free(np);
    vmenc_secret_free(master);
    return st;
}
