/*
 * lib/vm/extent.c - the block engine under virtual disks and the swap file:
 * byte-granular pread/pwrite over a file of sectors, XTS-AES with tweak =
 * sector number ("plain64") or plain.
 *
 * Concurrency: the XTS context is immutable, so whole-sector reads and
 * writes take no lock at all: the caller's range is read (or encrypted into
 * a private buffer and written) with positional I/O. A write that covers
 * only part of a sector must read, decrypt, patch, encrypt and write the
 * whole sector; it holds that sector's stripe lock meanwhile, so two partial
 * writers of one sector never lose each other's bytes. A whole-sector write
 * racing with a partial write of the same sector may be ordered either way,
 * as overlapping in-flight writes are on any block device.
 *
 * Holes: a sector whose ciphertext is all zeros reads as zeros. That is
 * what an unwritten sector of the sparse extent holds, so a new disk reads
 * as zeros like a new plain disk; a written sector's ciphertext is all zeros
 * with probability 2^-4096. The check costs one 16-byte comparison per
 * sector unless the first 16 bytes are zero. Every written sector is
 * byte-compatible with dm-crypt aes-xts-plain64 under the same key.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vm/vm_internal.h"

#define STRIPES 256u
/* Largest bounce buffer one write call allocates; longer writes loop. */
#define BOUNCE_MAX ((size_t)1 << 20)

struct vm_extent {
    int fd;
    uint64_t capacity;
    uint32_t sector_size;
    uint32_t sector_shift;
    uint32_t flags;
    vmenc_xts *xts; /* NULL = plain */
    pthread_mutex_t stripes[STRIPES];
};

static vmenc_status io_pread_all(int fd, uint8_t *buf, size_t len, uint64_t off) {
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return vm_status_from_errno(errno);
        if (n == 0)
            return VMENC_E_IO; /* the extent ends before its capacity */
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return VMENC_OK;
}

static vmenc_status io_pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t off) {
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return vm_status_from_errno(errno);
        if (n == 0)
            return VMENC_E_IO;
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return VMENC_OK;
}

static bool all_zero(const uint8_t *p, size_t len) {
    uint64_t acc = 0;
    for (size_t i = 0; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        acc |= w;
    }
    return acc == 0;
}

/* decrypt_sectors decrypts |n| whole sectors in place, leaving holes (all-
 * zero ciphertext) as zeros. Runs of real sectors go to XTS in one call. */
static vmenc_status decrypt_sectors(const vm_extent *e, uint64_t first, uint8_t *buf, size_t n) {
    const size_t ss = e->sector_size;
    size_t run_start = 0;
    for (size_t i = 0; i <= n; i++) {
        bool hole = false;
        if (i < n) {
            const uint8_t *s = buf + i * ss;
            uint64_t head[2];
            memcpy(head, s, 16);
            hole = (head[0] | head[1]) == 0 && all_zero(s, ss);
        }
        if (i == n || hole) {
            if (i > run_start)
                VMENC_GUARD(vmenc_xts_decrypt(e->xts, first + run_start, buf + run_start * ss,
                                              buf + run_start * ss, (i - run_start) * ss));
            run_start = i + 1;
        }
    }
    return VMENC_OK;
}

vmenc_status vm_extent_open(int dirfd, const char *name, uint64_t capacity, uint32_t sector_size,
                            vmenc_xts *xts, uint32_t flags, vm_extent **out) {
    VMENC_ENSURE(out != NULL && name != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vm_file_name_check(name));
    VMENC_ENSURE(sector_size >= 512 && sector_size <= 65536 && (sector_size & (sector_size - 1)) == 0,
                 VMENC_E_BAD_SECTOR_SIZE);
    VMENC_ENSURE(capacity > 0 && capacity % sector_size == 0 && capacity <= VMENC_DISK_MAX_CAPACITY,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(xts == NULL || vmenc_xts_sector_size(xts) == sector_size, VMENC_E_INVALID_ARG);
    bool ro = (flags & VM_EXTENT_READONLY) != 0;
    int oflags = (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOFOLLOW;
    if (flags & VM_EXTENT_CREATE)
        oflags |= O_CREAT | O_EXCL;
    int fd = openat(dirfd, name, oflags, 0600);
    if (fd < 0)
        return vm_status_from_errno(errno);
    vmenc_status s = VMENC_OK;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        s = vm_status_from_errno(errno);
        goto fail;
    }
    VMENC_ENSURE_GOTO(s, S_ISREG(st.st_mode), VMENC_E_BAD_PATH, fail);
    if (flags & VM_EXTENT_CREATE) {
        if (ftruncate(fd, (off_t)capacity) != 0) {
            s = vm_status_from_errno(errno);
            goto fail_unlink;
        }
        if (!(flags & VM_EXTENT_NO_SYNC) && fsync(fd) != 0) {
            s = vm_status_from_errno(errno);
            goto fail_unlink;
        }
    } else {
        VMENC_ENSURE_GOTO(s, (uint64_t)st.st_size >= capacity, VMENC_E_TRUNCATED, fail);
    }
    vm_extent *e = calloc(1, sizeof(*e));
    VMENC_ENSURE_GOTO(s, e != NULL, VMENC_E_NOMEM, fail_unlink);
    e->fd = fd;
    e->capacity = capacity;
    e->sector_size = sector_size;
    e->sector_shift = (uint32_t)__builtin_ctz(sector_size);
    e->flags = flags;
    e->xts = xts;
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_init(&e->stripes[i], NULL);
    *out = e;
    return VMENC_OK;
fail_unlink:
    if (flags & VM_EXTENT_CREATE)
        (void)unlinkat(dirfd, name, 0);
fail:
    close(fd);
    return s;
}

uint64_t vm_extent_capacity(const vm_extent *e) { return e->capacity; }
uint32_t vm_extent_sector_size(const vm_extent *e) { return e->sector_size; }
bool vm_extent_encrypted(const vm_extent *e) { return e->xts != NULL; }

static vmenc_status check_range(const vm_extent *e, uint64_t offset, size_t len, const void *buf) {
    VMENC_ENSURE(buf != NULL || len == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(offset <= e->capacity && len <= e->capacity - offset, VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

/* read_sectors reads whole sectors [first, first+n) into |buf|, decrypted. */
static vmenc_status read_sectors(const vm_extent *e, uint64_t first, size_t n, uint8_t *buf) {
    VMENC_GUARD(io_pread_all(e->fd, buf, n << e->sector_shift, first << e->sector_shift));
    if (e->xts != NULL)
        VMENC_GUARD(decrypt_sectors(e, first, buf, n));
    return VMENC_OK;
}

vmenc_status vm_extent_pread(vm_extent *e, uint64_t offset, size_t len, uint8_t *out) {
    VMENC_ENSURE_REF(e);
    VMENC_GUARD(check_range(e, offset, len, out));
    if (e->xts == NULL)
        return io_pread_all(e->fd, out, len, offset);
    const uint64_t ss = e->sector_size;
    uint8_t *bounce = NULL;
    vmenc_status s = VMENC_OK;
    while (len > 0) {
        uint64_t sector = offset >> e->sector_shift;
        size_t in_sector = (size_t)(offset & (ss - 1));
        if (in_sector != 0 || len < ss) {
            /* a partial sector at either end goes through one bounce sector */
            if (bounce == NULL && (bounce = malloc(ss)) == NULL)
                return VMENC_E_NOMEM;
            size_t take = (size_t)ss - in_sector;
            if (take > len)
                take = len;
            VMENC_GUARD_GOTO(s, read_sectors(e, sector, 1, bounce), done);
            memcpy(out, bounce + in_sector, take);
            out += take;
            offset += take;
            len -= take;
            continue;
        }
        size_t n = len >> e->sector_shift; /* whole sectors, straight into |out| */
        VMENC_GUARD_GOTO(s, read_sectors(e, sector, n, out), done);
        out += n << e->sector_shift;
        offset += (uint64_t)n << e->sector_shift;
        len -= n << e->sector_shift;
    }
done:
    if (bounce != NULL) {
        vmenc_memzero(bounce, ss);
        free(bounce);
    }
    return s;
}

/* write_partial read-modify-writes one sector under its stripe lock. */
static vmenc_status write_partial(vm_extent *e, uint64_t sector, size_t in_sector, const uint8_t *data,
                                  size_t take, uint8_t *bounce) {
    pthread_mutex_t *m = &e->stripes[sector % STRIPES];
    pthread_mutex_lock(m);
    vmenc_status s = read_sectors(e, sector, 1, bounce);
    if (s == VMENC_OK) {
        memcpy(bounce + in_sector, data, take);
        s = vmenc_xts_encrypt(e->xts, sector, bounce, bounce, e->sector_size);
    }
    if (s == VMENC_OK)
        s = io_pwrite_all(e->fd, bounce, e->sector_size, sector << e->sector_shift);
    pthread_mutex_unlock(m);
    return s;
}

/* Each writing thread keeps one bounce buffer (BOUNCE_MAX bytes) for its
 * lifetime instead of allocating one per call: a 1 MiB malloc is an mmap. */
static pthread_key_t g_bounce_key;
static pthread_once_t g_bounce_once = PTHREAD_ONCE_INIT;
static bool g_bounce_key_ok;

static void bounce_free(void *p) { free(p); }

static void bounce_key_init(void) { g_bounce_key_ok = pthread_key_create(&g_bounce_key, bounce_free) == 0; }

/* bounce_get returns this thread's buffer (NULL if none can be had: the
 * caller then allocates its own). */
static uint8_t *bounce_get(void) {
    pthread_once(&g_bounce_once, bounce_key_init);
    if (!g_bounce_key_ok)
        return NULL;
    uint8_t *b = pthread_getspecific(g_bounce_key);
    if (b == NULL && (b = aligned_alloc(4096, BOUNCE_MAX)) != NULL && pthread_setspecific(g_bounce_key, b) != 0) {
        free(b);
        b = NULL;
    }
    return b;
}

vmenc_status vm_extent_pwrite(vm_extent *e, uint64_t offset, const uint8_t *data, size_t len) {
    VMENC_ENSURE_REF(e);
    VMENC_ENSURE(!(e->flags & VM_EXTENT_READONLY), VMENC_E_BAD_STATE);
    VMENC_GUARD(check_range(e, offset, len, data));
    if (e->xts == NULL)
        return io_pwrite_all(e->fd, data, len, offset);
    const uint64_t ss = e->sector_size;
    size_t cap = BOUNCE_MAX;
    uint8_t *bounce = bounce_get(), *own = NULL;
    if (bounce == NULL) {
        cap = len < BOUNCE_MAX ? len : BOUNCE_MAX;
        if (cap < ss)
            cap = (size_t)ss;
        cap &= ~((size_t)ss - 1);
        bounce = own = malloc(cap);
        VMENC_ENSURE(bounce != NULL, VMENC_E_NOMEM);
    }
    bool held_plaintext = false;
    vmenc_status s = VMENC_OK;
    while (len > 0) {
        uint64_t sector = offset >> e->sector_shift;
        size_t in_sector = (size_t)(offset & (ss - 1));
        size_t take;
        if (in_sector != 0 || len < ss) {
            take = (size_t)ss - in_sector;
            if (take > len)
                take = len;
            held_plaintext = true;
            VMENC_GUARD_GOTO(s, write_partial(e, sector, in_sector, data, take, bounce), done);
        } else {
            take = len & ~((size_t)ss - 1);
            if (take > cap)
                take = cap;
            VMENC_GUARD_GOTO(s, vmenc_xts_encrypt(e->xts, sector, data, bounce, take), done);
            VMENC_GUARD_GOTO(s, io_pwrite_all(e->fd, bounce, take, offset), done);
        }
        data += take;
        offset += take;
        len -= take;
    }
done:
    /* A partial sector passed through the buffer as plaintext: wipe it.
     * Whole sectors leave only ciphertext there. */
    if (held_plaintext)
        vmenc_memzero(bounce, ss);
    if (own != NULL) {
        vmenc_memzero(own, cap);
        free(own);
    }
    return s;
}

vmenc_status vm_extent_flush(vm_extent *e) {
    VMENC_ENSURE_REF(e);
    if ((e->flags & (VM_EXTENT_READONLY | VM_EXTENT_NO_SYNC)) != 0)
        return VMENC_OK;
    if (fdatasync(e->fd) != 0)
        return vm_status_from_errno(errno);
    return VMENC_OK;
}

vmenc_status vm_extent_file_has_data(int dirfd, const char *name, bool *out) {
    VMENC_GUARD(vm_file_name_check(name));
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return vm_status_from_errno(errno);
    off_t pos = lseek(fd, 0, SEEK_DATA);
    int err = errno;
    close(fd);
    if (pos >= 0) {
        *out = true;
        return VMENC_OK;
    }
    if (err == ENXIO) { /* no data at or after offset 0: all holes */
        *out = false;
        return VMENC_OK;
    }
    *out = true; /* SEEK_DATA unsupported: assume data, the safe answer */
    return VMENC_OK;
}

vmenc_status vm_extent_close(vm_extent *e, bool flush) {
    if (e == NULL)
        return VMENC_OK;
    vmenc_status s = flush ? vm_extent_flush(e) : VMENC_OK;
    close(e->fd);
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&e->stripes[i]);
    vmenc_xts_free(e->xts);
    free(e);
    return s;
}
