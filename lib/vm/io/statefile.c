/*
 * lib/vm/io/statefile.c - VM state files (NVRAM, suspend, snapshot state and
 * memory): a chunked AES-256-GCM format with random access (layout in
 * lib/vm/format/statefile_header.h and docs/vm-format.md), or raw bytes for
 * a plain VM. This is the engine; the header codec is
 * lib/vm/format/statefile_header.c.
 *
 * Each chunk is a record nonce || ct || tag at a fixed offset. The AAD
 * binds a record to its file's header (hence class, index and the random
 * file ID), to its position and to whether it is the last one; the key is
 * derived from the VM key, the VM UUID and the file ID. So an edit, a
 * truncation, a reordering, or a record or file moved from elsewhere fails
 * authentication. Plaintext is only ever decrypted into one chunk buffer in
 * secure memory, and copied to the caller only after its tag verified;
 * memory use is one chunk whatever the file size.
 *
 * Every open for write is a write session under a new file ID (the file
 * rewritten into a temporary one and renamed over it): the caller's anchor
 * (the VM's authority record) names the ID, so a whole older copy of the
 * file, which carries an older ID, is refused; and the records sealed under
 * one ID stay far below GCM's random-nonce budget (VM_SF_WRITE_BUDGET: a
 * long session renews the ID again before it is reached).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fs.h"
#include "keys/aead.h"
#include "keys/keys_internal.h"
#include "vm/format/descriptor.h"
#include "vm/format/sealed.h"
#include "vm/io/io.h"
#include "vm/io/statefile.h"

#define SF_CHUNK ((uint64_t)VMENC_VM_FILE_CHUNK_BYTES)
#define SF_OVERHEAD (VM_SF_NONCE_BYTES + VM_SF_TAG_BYTES)
#define SF_RECORD (SF_CHUNK + SF_OVERHEAD)
#define SF_AAD_BYTES (32u + 8u + 1u)
/* A bound far above any VM's memory, far below offset overflow. */
#define SF_MAX_SIZE ((uint64_t)1 << 50)
#define SF_FLAGS (VMENC_VM_FILE_CREATE | VMENC_VM_FILE_TRUNCATE | VMENC_VM_FILE_READONLY)

struct vm_sf {
    pthread_mutex_t mu;
    int fd;
    vm_imagelock *lock;        /* taken at open, dropped at close; never per I/O */
    bool plain;
    bool readonly;
    bool sync;
    bool broken;               /* a multi-record write failed half-way */
    uint64_t size;             /* plaintext bytes */
    uint8_t header_hash[32];   /* BLAKE2b-256 of the 64-byte header */
    /* AES-256-GCM keyed once at open (keys/aead.h: OpenSSL's EVP, where
     * its key schedule lives and how it is cleansed). */
    vmenc_aead *aead;
    uint8_t *pt;               /* secure memory: one chunk of plaintext */
    bool cache_valid;          /* pt holds the authenticated chunk cache_index */
    uint64_t cache_index;
    uint8_t *rec;              /* one record as stored (public) */
    /* ---- for a write session's renewal of the file ID ---- */
    int dirfd;                 /* dup'd; -1 when the file is never renewed */
    char name[256];
    uint8_t cls;
    uint32_t index;
    char uuid[VMENC_VM_UUID_LEN + 1];
    const vmenc_dek *key;      /* the VM key: its owner outlives the open file */
    bool has_anchor;
    vm_sf_anchor anchor;
    char owner_host[128], owner_op[64];
    bool has_owner;
    uint8_t file_id[VM_SF_FILE_ID_BYTES];
    uint64_t writes;           /* records sealed under |file_id| */
};

/* ---- geometry ------------------------------------------------------------------ */

static uint64_t num_records(uint64_t size) { return size == 0 ? 1 : (size + SF_CHUNK - 1) / SF_CHUNK; }

static uint64_t chunk_len(uint64_t size, uint64_t i) {
    uint64_t n = num_records(size);
    return i + 1 < n ? SF_CHUNK : size - (n - 1) * SF_CHUNK;
}

static uint64_t record_offset(uint64_t i) { return VM_SF_HEADER_BYTES + i * SF_RECORD; }

static uint64_t disk_size(uint64_t size) {
    uint64_t n = num_records(size);
    return record_offset(n - 1) + SF_OVERHEAD + chunk_len(size, n - 1);
}

/* size_from_disk inverts disk_size: only the lengths it can produce are
 * accepted (any other length is a truncation or an append). */
static vmenc_status size_from_disk(uint64_t disk, uint64_t *out) {
    VMENC_ENSURE(disk >= VM_SF_HEADER_BYTES + SF_OVERHEAD, VMENC_E_TRUNCATED);
    uint64_t body = disk - VM_SF_HEADER_BYTES;
    uint64_t full = body / SF_RECORD, rem = body % SF_RECORD;
    uint64_t size;
    if (rem == 0) {
        size = full * SF_CHUNK;
    } else {
        VMENC_ENSURE(rem >= SF_OVERHEAD, VMENC_E_TRUNCATED);
        /* An empty record after full ones is never written: the previous
         * record would have been the last. */
        VMENC_ENSURE(rem > SF_OVERHEAD || full == 0, VMENC_E_TRUNCATED);
        size = full * SF_CHUNK + (rem - SF_OVERHEAD);
    }
    VMENC_ENSURE(size <= SF_MAX_SIZE, VMENC_E_TOO_LARGE);
    *out = size;
    return VMENC_OK;
}

/* ---- raw I/O --------------------------------------------------------------------- */

static vmenc_status pread_all(int fd, uint8_t *buf, size_t len, uint64_t off, size_t *out_read) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return vmenc_status_from_errno(errno);
        if (n == 0)
            break;
        done += (size_t)n;
    }
    *out_read = done;
    return VMENC_OK;
}


/* reserve allocates the blocks of an extension before any record changes,
 * so a full file system fails the write up front with nothing modified
 * (on file systems that support fallocate; copy-on-write ones may still
 * fail later). */
static vmenc_status reserve(int fd, uint64_t old_disk, uint64_t new_disk) {
    if (new_disk <= old_disk)
        return VMENC_OK;
    if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)old_disk, (off_t)(new_disk - old_disk)) == 0)
        return VMENC_OK;
    int err = errno;
    if (err == EOPNOTSUPP || err == ENOSYS)
        return VMENC_OK;
    (void)ftruncate(fd, (off_t)old_disk); /* release what was reserved */
    return vmenc_status_from_errno(err);
}

/* ---- crypto ---------------------------------------------------------------------- */

static vmenc_status keys_init(vm_sf *f, const vmenc_dek *vm_key, const char *uuid,
                              const uint8_t header[VM_SF_HEADER_BYTES], const uint8_t file_id[VM_SF_FILE_ID_BYTES]) {
    uint8_t ctx[VMENC_VM_UUID_LEN + VM_SF_FILE_ID_BYTES];
    memcpy(ctx, uuid, VMENC_VM_UUID_LEN);
    memcpy(ctx + VMENC_VM_UUID_LEN, file_id, VM_SF_FILE_ID_BYTES);
    VMENC_ENSURE(crypto_generichash(f->header_hash, 32, header, VM_SF_HEADER_BYTES, NULL, 0) == 0,
                 VMENC_E_CRYPTO);
    uint8_t *key = vmenc_secure_alloc(32);
    VMENC_ENSURE(key != NULL, VMENC_E_NOMEM);
    vmenc_status rv = vm_derive_key(vm_key, "statefile-v1", ctx, sizeof(ctx), key);
    /* The context keeps the key schedule; the derived key goes at once. */
    if (rv == VMENC_OK)
        rv = vmenc_aead_new(key, &f->aead);
    vmenc_secure_free(key);
    return rv;
}

static void record_aad(const vm_sf *f, uint64_t i, bool last, uint8_t aad[SF_AAD_BYTES]) {
    memcpy(aad, f->header_hash, 32);
    for (unsigned b = 0; b < 8; b++)
        aad[32 + b] = (uint8_t)(i >> (56 - 8 * b));
    aad[40] = last ? 1 : 0;
}

/* seal_record encrypts |len| bytes of f->pt as record |i| and writes it. */
static vmenc_status seal_record(vm_sf *f, uint64_t i, size_t len, bool last) {
    uint8_t aad[SF_AAD_BYTES];
    uint8_t *nonce = f->rec, *ct = f->rec + VM_SF_NONCE_BYTES, *tag = ct + len;
    record_aad(f, i, last, aad);
    randombytes_buf(nonce, VM_SF_NONCE_BYTES);
    f->writes++; /* counted whether or not the write lands: the nonce is spent */
    VMENC_GUARD(vmenc_aead_seal(f->aead, nonce, aad, sizeof(aad), f->pt, len, ct, tag));
    return vm_io_pwrite_all(f->fd, f->rec, len + SF_OVERHEAD, record_offset(i));
}

/* open_record reads record |i| of |len| plaintext bytes into f->pt and
 * authenticates it. On failure f->pt is wiped: nothing unauthenticated
 * stays where a caller's copy could come from. */
static vmenc_status open_record(vm_sf *f, uint64_t i, size_t len, bool last) {
    size_t got = 0;
    VMENC_GUARD(pread_all(f->fd, f->rec, len + SF_OVERHEAD, record_offset(i), &got));
    VMENC_ENSURE(got == len + SF_OVERHEAD, VMENC_E_TRUNCATED);
    uint8_t aad[SF_AAD_BYTES];
    uint8_t *nonce = f->rec, *ct = f->rec + VM_SF_NONCE_BYTES, *tag = ct + len;
    record_aad(f, i, last, aad);
    vmenc_status rv = vmenc_aead_open(f->aead, nonce, aad, sizeof(aad), ct, len, tag, f->pt);
    if (rv != VMENC_OK)
        sodium_memzero(f->pt, SF_CHUNK);
    return rv;
}

/* load_chunk makes f->pt hold chunk |i| of a file of |size| bytes. */
static vmenc_status load_chunk(vm_sf *f, uint64_t size, uint64_t i) {
    if (f->cache_valid && f->cache_index == i)
        return VMENC_OK;
    f->cache_valid = false;
    VMENC_GUARD(open_record(f, i, (size_t)chunk_len(size, i), i + 1 == num_records(size)));
    f->cache_valid = true;
    f->cache_index = i;
    return VMENC_OK;
}

/* ---- read / write ------------------------------------------------------------------ */

static vmenc_status aead_read(vm_sf *f, uint64_t off, size_t len, uint8_t *out) {
    size_t done = 0;
    while (done < len) {
        uint64_t pos = off + done, i = pos / SF_CHUNK, in = pos % SF_CHUNK;
        size_t n = (size_t)(chunk_len(f->size, i) - in);
        if (n > len - done)
            n = len - done;
        VMENC_GUARD(load_chunk(f, f->size, i));
        memcpy(out + done, f->pt + in, n);
        done += n;
    }
    return VMENC_OK;
}

/* rewrite_chunk builds chunk |i| of the grown file in f->pt - old content
 * (authenticated) where the write does not cover it, zeros past the old
 * end, |data| over [off, end) - and seals it with its new last flag. */
static vmenc_status rewrite_chunk(vm_sf *f, uint64_t new_size, uint64_t i, uint64_t off, const uint8_t *data,
                                  size_t len) {
    uint64_t cs = i * SF_CHUNK, new_len = chunk_len(new_size, i);
    uint64_t old_n = num_records(f->size);
    uint64_t old_len = i < old_n ? chunk_len(f->size, i) : 0;
    uint64_t ds = off > cs ? off : cs, de = off + len < cs + new_len ? off + len : cs + new_len;
    bool covered = ds == cs && de == cs + new_len;
    if (!covered && old_len > 0) {
        VMENC_GUARD(load_chunk(f, f->size, i));
        memset(f->pt + old_len, 0, (size_t)(SF_CHUNK - old_len));
    } else {
        memset(f->pt, 0, (size_t)SF_CHUNK);
    }
    f->cache_valid = false;
    if (de > ds)
        memcpy(f->pt + (ds - cs), data + (ds - off), (size_t)(de - ds));
    VMENC_GUARD(seal_record(f, i, (size_t)new_len, i + 1 == num_records(new_size)));
    f->cache_valid = true;
    f->cache_index = i;
    return VMENC_OK;
}

static vmenc_status sf_renew(vm_sf *f, bool empty, bool in_write);

static uint64_t budget_of(const vm_sf *f) {
    return f->has_anchor && f->anchor.write_budget != 0 ? f->anchor.write_budget : VM_SF_WRITE_BUDGET;
}

static vmenc_status aead_write(vm_sf *f, uint64_t off, const uint8_t *data, size_t len) {
    uint64_t end = off + len;
    if (f->dirfd >= 0) {
        /* the nonce budget: a new file ID before this write would pass it */
        uint64_t from = off / SF_CHUNK, to = (end - 1) / SF_CHUNK;
        if (end > f->size) {
            uint64_t old_last = num_records(f->size) - 1;
            from = from < old_last ? from : old_last;
            to = num_records(end) - 1;
        }
        if (f->writes + (to - from + 1) > budget_of(f))
            VMENC_GUARD(sf_renew(f, false, true));
    }
    uint64_t new_size = end > f->size ? end : f->size;
    uint64_t first = off / SF_CHUNK, last = (end - 1) / SF_CHUNK;
    if (end > f->size) {
        /* Growing: the old last record loses its last flag (rewritten
         * first), every record up to the new end is written. */
        uint64_t old_last = num_records(f->size) - 1;
        first = first < old_last ? first : old_last;
        last = num_records(new_size) - 1;
        VMENC_GUARD(reserve(f->fd, disk_size(f->size), disk_size(new_size)));
    }
    for (uint64_t i = first; i <= last; i++) {
        vmenc_status rv = rewrite_chunk(f, new_size, i, off, data, len);
        if (rv != VMENC_OK) {
            /* After the first record, the file no longer matches f->size. */
            if (i > first)
                f->broken = true;
            return rv;
        }
    }
    f->size = new_size;
    return VMENC_OK;
}

static vmenc_status plain_read(vm_sf *f, uint64_t off, size_t len, uint8_t *out, size_t *out_read) {
    return pread_all(f->fd, out, len, off, out_read);
}

static vmenc_status plain_write(vm_sf *f, uint64_t off, const uint8_t *data, size_t len) {
    uint64_t end = off + len;
    if (end > f->size)
        VMENC_GUARD(reserve(f->fd, f->size, end));
    VMENC_GUARD(vm_io_pwrite_all(f->fd, data, len, off));
    if (end > f->size)
        f->size = end;
    return VMENC_OK;
}

vmenc_status vm_sf_pread(vm_sf *f, uint64_t offset, size_t len, uint8_t *out, size_t *out_read) {
    VMENC_ENSURE(f != NULL && out_read != NULL && (out != NULL || len == 0), VMENC_E_INVALID_ARG);
    pthread_mutex_lock(&f->mu);
    vmenc_status rv = f->broken ? VMENC_E_IO : VMENC_OK;
    size_t n = 0;
    if (rv == VMENC_OK && offset < f->size) {
        n = f->size - offset < len ? (size_t)(f->size - offset) : len;
        rv = f->plain ? plain_read(f, offset, n, out, &n) : aead_read(f, offset, n, out);
    }
    pthread_mutex_unlock(&f->mu);
    if (rv != VMENC_OK) {
        if (len > 0)
            memset(out, 0, len); /* no partial result */
        n = 0;
    }
    *out_read = n;
    return rv;
}

vmenc_status vm_sf_pwrite(vm_sf *f, uint64_t offset, const uint8_t *data, size_t len) {
    VMENC_ENSURE(f != NULL && (data != NULL || len == 0), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(offset <= SF_MAX_SIZE && len <= SF_MAX_SIZE - offset, VMENC_E_TOO_LARGE);
    VMENC_ENSURE(!f->readonly, VMENC_E_BAD_STATE);
    if (len == 0)
        return VMENC_OK;
    pthread_mutex_lock(&f->mu);
    vmenc_status rv = f->broken ? VMENC_E_IO : VMENC_OK;
    if (rv == VMENC_OK)
        rv = f->plain ? plain_write(f, offset, data, len) : aead_write(f, offset, data, len);
    pthread_mutex_unlock(&f->mu);
    return rv;
}

vmenc_status vm_sf_size(vm_sf *f, uint64_t *out) {
    VMENC_ENSURE(f != NULL && out != NULL, VMENC_E_INVALID_ARG);
    pthread_mutex_lock(&f->mu);
    *out = f->size;
    pthread_mutex_unlock(&f->mu);
    return VMENC_OK;
}

vmenc_status vm_sf_flush(vm_sf *f) {
    VMENC_ENSURE(f != NULL, VMENC_E_INVALID_ARG);
    pthread_mutex_lock(&f->mu);
    vmenc_status rv = f->broken ? VMENC_E_IO : VMENC_OK;
    if (rv == VMENC_OK && f->sync && !f->readonly)
        rv = vmenc_fs_fsync(f->fd);
    pthread_mutex_unlock(&f->mu);
    return rv;
}

/* ---- open / close ------------------------------------------------------------------- */

static void sf_free(vm_sf *f) {
    if (f == NULL)
        return;
    vm_imagelock_release(f->lock); /* the record first: closing drops the lock */
    if (f->fd >= 0)
        (void)close(f->fd);
    if (f->dirfd >= 0)
        (void)close(f->dirfd);
    vmenc_aead_free(f->aead); /* cleanses the key schedule */
    vmenc_secure_free(f->pt);
    free(f->rec);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

vmenc_status vm_sf_close(vm_sf *f) {
    if (f == NULL)
        return VMENC_OK;
    vmenc_status rv = f->readonly ? VMENC_OK : vm_sf_flush(f);
    sf_free(f);
    return rv;
}

/* init_new writes a fresh header (file ID |file_id|) and one empty last
 * record. */
static vmenc_status init_new(vm_sf *f, uint8_t cls, uint32_t index, const char *uuid, const vmenc_dek *vm_key,
                             const uint8_t file_id[VM_SF_FILE_ID_BYTES]) {
    uint8_t header[VM_SF_HEADER_BYTES];
    vm_sf_header_build(cls, index, file_id, header);
    memcpy(f->file_id, file_id, VM_SF_FILE_ID_BYTES);
    f->writes = 0;
    VMENC_GUARD(keys_init(f, vm_key, uuid, header, file_id));
    if (ftruncate(f->fd, 0) != 0)
        return vmenc_status_from_errno(errno);
    VMENC_GUARD(reserve(f->fd, 0, VM_SF_HEADER_BYTES + SF_OVERHEAD));
    VMENC_GUARD(vm_io_pwrite_all(f->fd, header, sizeof(header), 0));
    f->size = 0;
    memset(f->pt, 0, (size_t)SF_CHUNK);
    VMENC_GUARD(seal_record(f, 0, 0, true));
    if (f->sync)
        VMENC_GUARD(vmenc_fs_fsync(f->fd));
    return VMENC_OK;
}

/* load_existing checks the header against what the caller expects, then
 * authenticates the final record: that proves the header and the length
 * (a file cut at a record boundary ends in a record sealed as not last). */
static vmenc_status load_existing(vm_sf *f, uint64_t disk, uint8_t cls, uint32_t index, const char *uuid,
                                  const vmenc_dek *vm_key) {
    uint8_t header[VM_SF_HEADER_BYTES], file_id[VM_SF_FILE_ID_BYTES], got_cls = 0;
    uint32_t got_index = 0;
    size_t got = 0;
    VMENC_GUARD(pread_all(f->fd, header, sizeof(header), 0, &got));
    VMENC_GUARD(vm_sf_parse_header(header, got, &got_cls, &got_index, file_id));
    VMENC_ENSURE(got_cls == cls && got_index == index, VMENC_E_PARSE);
    /* the anchor names the file's current ID: an older copy has another */
    if (f->has_anchor && f->anchor.check != NULL)
        VMENC_GUARD(f->anchor.check(f->anchor.ctx, cls, index, file_id));
    memcpy(f->file_id, file_id, VM_SF_FILE_ID_BYTES);
    f->writes = 0; /* (unknown before this open: the session renews it) */
    VMENC_GUARD(size_from_disk(disk, &f->size));
    VMENC_GUARD(keys_init(f, vm_key, uuid, header, file_id));
    return load_chunk(f, f->size, num_records(f->size) - 1);
}

static vmenc_status open_args_check(const char *name, uint8_t cls, const char *uuid, const vmenc_dek *vm_key,
                                    uint32_t flags) {
    VMENC_GUARD(vmenc_fs_name_check(name));
    VMENC_ENSURE((flags & ~SF_FLAGS) == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(!(flags & VMENC_VM_FILE_READONLY) ||
                     !(flags & (VMENC_VM_FILE_CREATE | VMENC_VM_FILE_TRUNCATE)),
                 VMENC_E_INVALID_ARG);
    if (vm_key == NULL)
        return cls >= 1 && cls <= VM_SF_PLAIN_CLASS_MAX ? VMENC_OK : VMENC_E_INVALID_ARG;
    VMENC_ENSURE(vm_sf_class_is_aead(cls), VMENC_E_INVALID_ARG);
    return vm_uuid_check(uuid);
}

/* open_fd opens (and with CREATE, exclusively creates first, so that only
 * a file made here is initialised: an existing empty file is a truncation,
 * not a new file). Never a blocking open: vm_imagelock_openat refuses
 * anything but a regular file before it could wait (a planted FIFO). */
static vmenc_status open_fd(int dirfd, const char *name, uint32_t flags, int *out_fd, bool *out_created) {
    int mode = (flags & VMENC_VM_FILE_READONLY) ? O_RDONLY : O_RDWR;
    *out_created = false;
    if (flags & VMENC_VM_FILE_CREATE) {
        vmenc_status s = vm_imagelock_openat(dirfd, name, mode | O_CREAT | O_EXCL, 0600, out_fd);
        if (s == VMENC_OK)
            *out_created = true;
        if (s != VMENC_E_EXISTS)
            return s;
    }
    return vm_imagelock_openat(dirfd, name, mode, 0, out_fd);
}

static vmenc_status sf_alloc(bool plain, vm_sf **out) {
    vm_sf *f = calloc(1, sizeof(*f));
    VMENC_ENSURE(f != NULL, VMENC_E_NOMEM);
    f->fd = -1;
    f->dirfd = -1;
    if (pthread_mutex_init(&f->mu, NULL) != 0) {
        free(f);
        return VMENC_E_NOMEM;
    }
    f->plain = plain;
    if (!plain) {
        f->pt = vmenc_secure_alloc((size_t)SF_CHUNK);
        f->rec = malloc((size_t)SF_RECORD);
        if (f->pt == NULL || f->rec == NULL) {
            sf_free(f);
            return VMENC_E_NOMEM;
        }
    }
    *out = f;
    return VMENC_OK;
}

static vmenc_status sf_setup(vm_sf *f, bool created, uint8_t cls, uint32_t index, const char *uuid,
                             const vmenc_dek *vm_key, uint32_t flags) {
    struct stat st;
    if (fstat(f->fd, &st) != 0)
        return vmenc_status_from_errno(errno);
    bool fresh = created || (flags & VMENC_VM_FILE_TRUNCATE);
    if (f->plain) {
        if (fresh && ftruncate(f->fd, 0) != 0)
            return vmenc_status_from_errno(errno);
        f->size = fresh ? 0 : (uint64_t)st.st_size;
        return VMENC_OK;
    }
    if (!fresh)
        VMENC_GUARD(load_existing(f, (uint64_t)st.st_size, cls, index, uuid, vm_key));
    if (f->readonly)
        return VMENC_OK;
    /* a write session: under a new file ID, announced first */
    return sf_renew(f, fresh, false);
}

vmenc_status vm_sf_open(int dirfd, const char *name, uint8_t cls, uint32_t index, const char *uuid,
                        const vmenc_dek *vm_key, uint32_t flags, bool sync, vm_sf **out) {
    return vm_sf_open_ex(dirfd, name, cls, index, uuid, vm_key, flags, sync, NULL, NULL, out);
}

vmenc_status vm_sf_open_ex(int dirfd, const char *name, uint8_t cls, uint32_t index, const char *uuid,
                           const vmenc_dek *vm_key, uint32_t flags, bool sync, const vm_lock_owner *owner,
                           vmenc_lock_holder *holder, vm_sf **out) {
    return vm_sf_open_anchored(dirfd, name, cls, index, uuid, vm_key, flags, sync, owner, holder, NULL, out);
}

/* sf_remember keeps what a write session's renewal needs. */
static vmenc_status sf_remember(vm_sf *f, int dirfd, const char *name, uint8_t cls, uint32_t index, const char *uuid,
                                const vmenc_dek *vm_key, const vm_lock_owner *owner, const vm_sf_anchor *anchor) {
    VMENC_ENSURE(strlen(name) < sizeof(f->name), VMENC_E_BAD_PATH);
    memcpy(f->name, name, strlen(name) + 1);
    f->cls = cls;
    f->index = index;
    memcpy(f->uuid, uuid, VMENC_VM_UUID_LEN);
    f->uuid[VMENC_VM_UUID_LEN] = '\0';
    f->key = vm_key;
    if (anchor != NULL) {
        f->anchor = *anchor;
        f->has_anchor = true;
    }
    if (owner != NULL) {
        f->has_owner = true;
        snprintf(f->owner_host, sizeof(f->owner_host), "%s", owner->host_id != NULL ? owner->host_id : "");
        snprintf(f->owner_op, sizeof(f->owner_op), "%s", owner->operation != NULL ? owner->operation : "");
    }
    if (!f->readonly) {
        f->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
        if (f->dirfd < 0)
            return vmenc_status_from_errno(errno);
    }
    return VMENC_OK;
}

vmenc_status vm_sf_open_anchored(int dirfd, const char *name, uint8_t cls, uint32_t index, const char *uuid,
                                 const vmenc_dek *vm_key, uint32_t flags, bool sync, const vm_lock_owner *owner,
                                 vmenc_lock_holder *holder, const vm_sf_anchor *anchor, vm_sf **out) {
    VMENC_ENSURE(dirfd >= 0 && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(open_args_check(name, cls, uuid, vm_key, flags));
    vm_sf *f = NULL;
    bool created = false;
    VMENC_GUARD(sf_alloc(vm_key == NULL, &f));
    f->readonly = (flags & VMENC_VM_FILE_READONLY) != 0;
    f->sync = sync;
    vmenc_status rv = vm_key != NULL ? sf_remember(f, dirfd, name, cls, index, uuid, vm_key, owner, anchor) : VMENC_OK;
    if (rv == VMENC_OK)
        rv = open_fd(dirfd, name, flags, &f->fd, &created);
    if (rv == VMENC_OK)
        rv = vm_imagelock_take(f->fd, dirfd, name, f->readonly ? VM_LOCK_READ : VM_LOCK_WRITE, owner, holder,
                               &f->lock);
    if (rv == VMENC_OK)
        rv = sf_setup(f, created, cls, index, uuid, vm_key, flags);
    if (rv == VMENC_OK && created && sync)
        rv = vmenc_fs_fsync_dir(dirfd);
    if (rv != VMENC_OK) {
        if (created)
            (void)unlinkat(dirfd, name, 0);
        sf_free(f);
        return rv;
    }
    *out = f;
    return VMENC_OK;
}

/* ---- renewal of the file ID, conversion ------------------------------------------ */

static vmenc_status tmp_name_of(const char *name, char out[256]) {
    uint8_t rnd[8];
    char hex[17];
    size_t len = strlen(name);
    VMENC_ENSURE(len + 21 <= 255, VMENC_E_BAD_PATH);
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    memcpy(out, name, len);
    memcpy(out + len, ".tmp-", 5);
    memcpy(out + len + 5, hex, 17);
    return VMENC_OK;
}

/* sf_create_fresh makes new file |name| (exclusively; image lock WRITE) in
 * |dirfd|: sealed under |vm_key| with file ID |id| and empty, or plain
 * (|vm_key| NULL). Never renewed: the caller renames it into place. */
static vmenc_status sf_create_fresh(int dirfd, const char *name, uint8_t cls, uint32_t index, const char *uuid,
                                    const vmenc_dek *vm_key, bool sync, const vm_lock_owner *owner,
                                    const uint8_t id[VM_SF_FILE_ID_BYTES], vm_sf **out) {
    vm_sf *g = NULL;
    VMENC_GUARD(sf_alloc(vm_key == NULL, &g));
    g->sync = sync;
    vmenc_status rv = vm_imagelock_openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL, 0600, &g->fd);
    if (rv != VMENC_OK) {
        g->fd = -1;
        sf_free(g);
        return rv;
    }
    rv = vm_imagelock_take(g->fd, dirfd, name, VM_LOCK_WRITE, owner, NULL, &g->lock);
    if (rv == VMENC_OK && vm_key != NULL)
        rv = init_new(g, cls, index, uuid, vm_key, id);
    if (rv != VMENC_OK) {
        (void)unlinkat(dirfd, name, 0);
        sf_free(g);
        return rv;
    }
    *out = g;
    return VMENC_OK;
}

/* copy_locked copies every byte of |src| into |dst| (both sealed or not;
 * src's mutex may be held by the caller: no locking here). */
static vmenc_status copy_locked(vm_sf *src, vm_sf *dst, uint8_t *buf) {
    for (uint64_t off = 0; off < src->size;) {
        size_t n = src->size - off < SF_CHUNK ? (size_t)(src->size - off) : (size_t)SF_CHUNK;
        if (src->plain) {
            size_t got = 0;
            VMENC_GUARD(plain_read(src, off, n, buf, &got));
            VMENC_ENSURE(got == n, VMENC_E_TRUNCATED);
        } else {
            VMENC_GUARD(aead_read(src, off, n, buf));
        }
        VMENC_GUARD(dst->plain ? plain_write(dst, off, buf, n) : aead_write(dst, off, buf, n));
        off += n;
    }
    return VMENC_OK;
}

static void swap_guts(vm_sf *a, vm_sf *b) {
#define SWAP(field)                                                                                           \
    do {                                                                                                  \
        __typeof__(a->field) t_ = a->field;                                                               \
        a->field = b->field;                                                                              \
        b->field = t_;                                                                                    \
    } while (0)
    SWAP(fd);
    SWAP(lock);
    SWAP(aead);
    SWAP(size);
    SWAP(writes);
    uint8_t t[32];
    memcpy(t, a->header_hash, 32), memcpy(a->header_hash, b->header_hash, 32), memcpy(b->header_hash, t, 32);
    memcpy(t, a->file_id, 16), memcpy(a->file_id, b->file_id, 16), memcpy(b->file_id, t, 16);
#undef SWAP
    a->cache_valid = b->cache_valid = false;
}

/* sf_renew rewrites the open file |f| under a new file ID - empty when
 * |empty| - into a temporary file, renames it over f's name, and goes on
 * with that one: announced before, settled after, so the anchor allows the
 * old or the new file while the rename is in flight. On failure before the
 * rename |f| is unchanged. */
static vmenc_status sf_renew(vm_sf *f, bool empty, bool in_write) {
    uint8_t id[VM_SF_FILE_ID_BYTES];
    char tmp[256];
    randombytes_buf(id, sizeof(id));
    VMENC_GUARD(tmp_name_of(f->name, tmp));
    const vm_sf_anchor *a = f->has_anchor ? &f->anchor : NULL;
    if (a != NULL && a->announce != NULL)
        VMENC_GUARD(a->announce(a->ctx, f->cls, f->index, id, in_write));
    vm_lock_owner owner = {.host_id = f->owner_host, .operation = f->owner_op[0] != '\0' ? f->owner_op : NULL};
    vm_sf *g = NULL;
    VMENC_GUARD(sf_create_fresh(f->dirfd, tmp, f->cls, f->index, f->uuid, f->key, f->sync,
                                f->has_owner ? &owner : NULL, id, &g));
    vmenc_status rv = VMENC_OK;
    if (!empty) {
        uint8_t *buf = vmenc_secure_alloc((size_t)SF_CHUNK);
        rv = buf != NULL ? copy_locked(f, g, buf) : VMENC_E_NOMEM;
        vmenc_secure_free(buf);
    }
    if (rv == VMENC_OK && f->sync)
        rv = vmenc_fs_fsync(g->fd);
    if (rv == VMENC_OK)
        rv = vmenc_fs_rename(f->dirfd, tmp, f->name);
    if (rv != VMENC_OK) {
        (void)unlinkat(f->dirfd, tmp, 0);
        sf_free(g);
        return rv;
    }
    /* renamed: |g|'s file is f's now, whatever follows */
    swap_guts(f, g);
    f->broken = false;
    sf_free(g); /* the old file's descriptor and lock record */
    vm_imagelock *named = NULL;
    if (vm_imagelock_take(f->fd, f->dirfd, f->name, VM_LOCK_WRITE, f->has_owner ? &owner : NULL, NULL, &named) ==
        VMENC_OK) {
        vm_imagelock_release(f->lock); /* the temporary name's record; the byte locks stay with the fd */
        f->lock = named;
    }
    if (f->sync)
        VMENC_GUARD(vmenc_fs_fsync_dir(f->dirfd));
    if (a != NULL && a->settled != NULL)
        VMENC_GUARD(a->settled(a->ctx, f->cls, f->index, f->file_id, in_write));
    return VMENC_OK;
}

uint64_t vm_sf_writes(vm_sf *f) {
    pthread_mutex_lock(&f->mu);
    uint64_t n = f->writes;
    pthread_mutex_unlock(&f->mu);
    return n;
}

bool vm_sf_file_id(vm_sf *f, uint8_t out[VM_SF_FILE_ID_BYTES]) {
    pthread_mutex_lock(&f->mu);
    memcpy(out, f->file_id, VM_SF_FILE_ID_BYTES);
    bool sealed = !f->plain;
    pthread_mutex_unlock(&f->mu);
    return sealed;
}

vmenc_status vm_sf_read_file_id(int dirfd, const char *name, bool *out_sealed, uint8_t out_id[VM_SF_FILE_ID_BYTES]) {
    VMENC_ENSURE(dirfd >= 0 && out_sealed != NULL && out_id != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_fs_name_check(name));
    int fd = -1;
    VMENC_GUARD(vm_imagelock_openat(dirfd, name, O_RDONLY, 0, &fd));
    uint8_t header[VM_SF_HEADER_BYTES];
    size_t got = 0;
    vmenc_status rv = pread_all(fd, header, sizeof(header), 0, &got);
    (void)close(fd);
    VMENC_GUARD(rv);
    *out_sealed = got >= 8 && memcmp(header, "VMENCSF1", 8) == 0;
    if (!*out_sealed)
        return VMENC_OK;
    return vm_sf_parse_header(header, got, NULL, NULL, out_id);
}

vmenc_status vm_sf_convert(int dirfd, const char *name, uint8_t cls, uint32_t index, const char *from_uuid,
                           const vmenc_dek *from_key, const char *to_uuid, const vmenc_dek *to_key, bool sync) {
    return vm_sf_convert_anchored(dirfd, name, cls, index, from_uuid, from_key, to_uuid, to_key, sync, NULL);
}

vmenc_status vm_sf_convert_anchored(int dirfd, const char *name, uint8_t cls, uint32_t index, const char *from_uuid,
                                    const vmenc_dek *from_key, const char *to_uuid, const vmenc_dek *to_key,
                                    bool sync, const vm_sf_anchor *anchor) {
    VMENC_ENSURE(dirfd >= 0, VMENC_E_INVALID_ARG);
    char tmp[256];
    VMENC_GUARD(vmenc_fs_name_check(name));
    VMENC_GUARD(tmp_name_of(name, tmp));
    VMENC_GUARD(open_args_check(name, cls, to_uuid, to_key, 0));
    vm_sf *src = NULL, *dst = NULL;
    VMENC_GUARD(vm_sf_open_anchored(dirfd, name, cls, index, from_uuid, from_key, VMENC_VM_FILE_READONLY, false,
                                    NULL, NULL, anchor, &src));
    uint8_t id[VM_SF_FILE_ID_BYTES];
    randombytes_buf(id, sizeof(id));
    vmenc_status rv = vm_imagelock_set_mode(src->lock, VM_LOCK_CONVERT, "vm.file_convert", NULL);
    if (rv == VMENC_OK && to_key != NULL && anchor != NULL && anchor->announce != NULL)
        rv = anchor->announce(anchor->ctx, cls, index, id, false);
    if (rv == VMENC_OK)
        rv = sf_create_fresh(dirfd, tmp, cls, index, to_uuid, to_key, sync, NULL, id, &dst);
    uint8_t *buf = vmenc_secure_alloc((size_t)SF_CHUNK);
    if (rv == VMENC_OK && buf == NULL)
        rv = VMENC_E_NOMEM;
    if (rv == VMENC_OK)
        rv = copy_locked(src, dst, buf);
    vmenc_secure_free(buf);
    /* the temporary is durable before the rename */
    if (rv == VMENC_OK && sync)
        rv = vmenc_fs_fsync(dst->fd);
    sf_free(dst);
    /* renamed while the source's conversion lock is still held */
    if (rv == VMENC_OK)
        rv = vmenc_fs_rename(dirfd, tmp, name);
    (void)vm_sf_close(src);
    if (rv != VMENC_OK) {
        if (dst != NULL)
            (void)unlinkat(dirfd, tmp, 0);
        return rv;
    }
    if (sync)
        VMENC_GUARD(vmenc_fs_fsync_dir(dirfd));
    if (anchor != NULL && anchor->settled != NULL)
        VMENC_GUARD(anchor->settled(anchor->ctx, cls, index, to_key != NULL ? id : NULL, false));
    return VMENC_OK;
}

/* ---- streaming writer ------------------------------------------------------------ */

/* A writer is a vm_sf used append-only: f->pt collects the chunk being
 * filled; a full chunk is sealed (not last) only when more data arrives, so
 * the final record - full or not - is sealed as last by finish. Memory is one
 * chunk and one record whatever the stream's length. */
struct vm_sf_writer {
    vm_sf *f;
    uint64_t next_index; /* record the pending chunk will become */
    size_t fill;         /* bytes of f->pt in use */
    bool done;
};

vmenc_status vm_sf_writer_new(int fd, uint8_t cls, uint32_t index, const char *uuid, const vmenc_dek *key,
                              bool sync, vm_sf_writer **out) {
    VMENC_ENSURE(fd >= 0 && key != NULL && out != NULL && vm_sf_class_is_aead(cls), VMENC_E_INVALID_ARG);
    VMENC_GUARD(vm_uuid_check(uuid));
    vm_sf_writer *w = calloc(1, sizeof(*w));
    VMENC_ENSURE(w != NULL, VMENC_E_NOMEM);
    vmenc_status rv = sf_alloc(false, &w->f);
    if (rv != VMENC_OK) {
        free(w);
        return rv;
    }
    w->f->sync = sync;
    uint8_t header[VM_SF_HEADER_BYTES], file_id[VM_SF_FILE_ID_BYTES];
    randombytes_buf(file_id, sizeof(file_id));
    vm_sf_header_build(cls, index, file_id, header);
    rv = keys_init(w->f, key, uuid, header, file_id);
    if (rv == VMENC_OK && ftruncate(fd, 0) != 0)
        rv = vmenc_status_from_errno(errno);
    if (rv == VMENC_OK)
        rv = vm_io_pwrite_all(fd, header, sizeof(header), 0);
    if (rv != VMENC_OK) {
        sf_free(w->f);
        free(w);
        return rv;
    }
    w->f->fd = fd; /* taken over only on success */
    *out = w;
    return VMENC_OK;
}

vmenc_status vm_sf_writer_write(vm_sf_writer *w, const uint8_t *data, size_t len) {
    VMENC_ENSURE(w != NULL && (data != NULL || len == 0), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(!w->done && !w->f->broken, VMENC_E_BAD_STATE);
    while (len > 0) {
        if (w->fill == SF_CHUNK) {
            /* written once, one file ID: a stream past the nonce budget is refused */
            VMENC_ENSURE(w->next_index + 2 <= VM_SF_WRITE_BUDGET, VMENC_E_TOO_LARGE);
            vmenc_status rv = seal_record(w->f, w->next_index, (size_t)SF_CHUNK, false);
            if (rv != VMENC_OK) {
                w->f->broken = true;
                return rv;
            }
            w->next_index++;
            w->fill = 0;
        }
        size_t n = (size_t)SF_CHUNK - w->fill;
        if (n > len)
            n = len;
        memcpy(w->f->pt + w->fill, data, n);
        w->fill += n;
        data += n;
        len -= n;
    }
    w->f->size = w->next_index * SF_CHUNK + w->fill;
    return VMENC_OK;
}

vmenc_status vm_sf_writer_finish(vm_sf_writer *w) {
    VMENC_ENSURE(w != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(!w->done && !w->f->broken, VMENC_E_BAD_STATE);
    vmenc_status rv = seal_record(w->f, w->next_index, w->fill, true);
    if (rv == VMENC_OK && w->f->sync && fsync(w->f->fd) != 0)
        rv = vmenc_status_from_errno(errno);
    if (rv != VMENC_OK) {
        w->f->broken = true;
        return rv;
    }
    w->done = true;
    return VMENC_OK;
}

uint64_t vm_sf_writer_size(const vm_sf_writer *w) { return w != NULL ? w->f->size : 0; }

void vm_sf_writer_free(vm_sf_writer *w) {
    if (w == NULL)
        return;
    sf_free(w->f); /* wipes the pending plaintext; closes the fd */
    free(w);
}
