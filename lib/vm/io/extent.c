/*
 * lib/vm/io/extent.c - the block engine under virtual disks and the swap file:
 * byte-granular pread/pwrite over a file of sectors, XTS-AES with tweak =
 * sector number ("plain64") or plain, and the data path of in-place
 * conversion (docs/reencryption.md).
 *
 * Layout: sector n lives at byte data_offset + n * sector_size of the file,
 * encrypted under the layout's XTS context (or plain). Outside a conversion
 * there is one layout. During one there are two, old and new, and the disk
 * is cut into segments: a segment is in one layout or the other as a whole,
 * and moves (is rewritten in the other) under an exclusive segment lock.
 *
 * Concurrency: the XTS contexts are immutable, so whole-sector reads and
 * writes take no lock of their own: the caller's range is read (or
 * encrypted into a per-thread buffer and written) with positional I/O. A
 * write that covers part of a sector reads, decrypts, patches, encrypts and
 * writes the whole sector under that sector's stripe lock, so two partial
 * writers of one sector never lose each other's bytes. A whole-sector write
 * racing with a partial write of the same sector may be ordered either way,
 * as overlapping in-flight writes are on any block device.
 *
 * Every I/O call holds one of MODE_STRIPES reader locks (picked per thread,
 * each on its own cache line, so threads do not bounce one lock word)
 * while it decides which layout to use; starting or finishing a
 * conversion takes all of them for writing. During a conversion an I/O
 * also holds the reader side of each segment lock it touches, so it never
 * sees a segment half moved.
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
#include <linux/falloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fs.h"
#include "vm/io/extent.h"
#include "vm/io/io.h"
#include "vmenc/vm.h"

#define STRIPES 256u
#define MODE_STRIPES 16u
/* Largest bounce buffer a write uses; longer writes loop. */
#define BOUNCE_MAX ((size_t)1 << 20)

typedef struct layout {
    uint64_t offset; /* byte offset of sector 0 in the file */
    vmenc_xts *xts;  /* NULL = plain */
} layout;

typedef struct mode_lock {
    pthread_rwlock_t lock;
    char pad[64 - sizeof(pthread_rwlock_t) % 64];
} mode_lock;

struct vm_extent {
    int fd;
    vm_imagelock *lock; /* taken at open, dropped at close; never per I/O */
    uint64_t capacity;
    uint32_t sector_size;
    uint32_t sector_shift;
    uint32_t flags;
    layout cur; /* outside a conversion: the layout; during one: the old */
    /* conversion (valid while |converting|) */
    bool converting;
    layout next;
    uint64_t seg_bytes;
    uint64_t num_segs;
    bool down;          /* the new layout is below the old: segments move first to last */
    /* segments in the new layout. Only the converting thread changes it,
     * under the moving segment's exclusive lock; I/O threads read it under
     * other segments' shared locks, where its change does not matter
     * (seg_is_new of any other segment is the same before and after), so
     * relaxed atomics suffice: the segment locks order what does. */
    _Atomic uint64_t done_segs;
    pthread_rwlock_t *seg_locks;
    mode_lock modes[MODE_STRIPES];
    pthread_mutex_t stripes[STRIPES];
};

static vmenc_status io_pread_all(int fd, uint8_t *buf, size_t len, uint64_t off) {
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return vmenc_status_from_errno(errno);
        if (n == 0)
            return VMENC_E_IO; /* the extent ends before its capacity */
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
static vmenc_status decrypt_sectors(const vm_extent *e, const layout *l, uint64_t first, uint8_t *buf, size_t n) {
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
                VMENC_GUARD(vmenc_xts_decrypt(l->xts, first + run_start, buf + run_start * ss,
                                              buf + run_start * ss, (i - run_start) * ss));
            run_start = i + 1;
        }
    }
    return VMENC_OK;
}

vmenc_status vm_extent_open(int dirfd, const char *name, uint64_t capacity, uint32_t sector_size,
                            uint64_t data_offset, vmenc_xts *xts, uint32_t flags, vm_extent **out) {
    return vm_extent_open_ex(dirfd, name, capacity, sector_size, data_offset, xts, flags, NULL, NULL, out);
}

vmenc_status vm_extent_open_ex(int dirfd, const char *name, uint64_t capacity, uint32_t sector_size,
                               uint64_t data_offset, vmenc_xts *xts, uint32_t flags, const vm_lock_owner *owner,
                               vmenc_lock_holder *holder, vm_extent **out) {
    VMENC_ENSURE(out != NULL && name != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_fs_name_check(name));
    VMENC_ENSURE(sector_size >= 512 && sector_size <= 65536 && (sector_size & (sector_size - 1)) == 0,
                 VMENC_E_BAD_SECTOR_SIZE);
    VMENC_ENSURE(capacity > 0 && capacity % sector_size == 0 && capacity <= VMENC_DISK_MAX_CAPACITY,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(data_offset % sector_size == 0 && data_offset <= ((uint64_t)1 << 30), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(xts == NULL || vmenc_xts_sector_size(xts) == sector_size, VMENC_E_INVALID_ARG);
    bool ro = (flags & VM_EXTENT_READONLY) != 0;
    int oflags = ro ? O_RDONLY : O_RDWR;
    if (flags & VM_EXTENT_CREATE)
        oflags |= O_CREAT | O_EXCL;
    /* never blocks (a FIFO planted as an extent is refused at once) and
     * accepts regular files only */
    int fd = -1;
    VMENC_GUARD(vm_imagelock_openat(dirfd, name, oflags, 0600, &fd));
    vm_imagelock *lock = NULL;
    vmenc_status s = vm_imagelock_take(fd, dirfd, name, ro ? VM_LOCK_READ : VM_LOCK_WRITE, owner, holder, &lock);
    if (s != VMENC_OK)
        goto fail_unlink; /* a file we just made and could not lock is ours to remove */
    struct stat st;
    if (fstat(fd, &st) != 0) {
        s = vmenc_status_from_errno(errno);
        goto fail;
    }
    if (flags & VM_EXTENT_CREATE) {
        if (ftruncate(fd, (off_t)(data_offset + capacity)) != 0) {
            s = vmenc_status_from_errno(errno);
            goto fail_unlink;
        }
        if (!(flags & VM_EXTENT_NO_SYNC) && fsync(fd) != 0) {
            s = vmenc_status_from_errno(errno);
            goto fail_unlink;
        }
    } else {
        VMENC_ENSURE_GOTO(s, (uint64_t)st.st_size >= data_offset + capacity, VMENC_E_TRUNCATED, fail);
    }
    vm_extent *e = calloc(1, sizeof(*e));
    VMENC_ENSURE_GOTO(s, e != NULL, VMENC_E_NOMEM, fail_unlink);
    e->fd = fd;
    e->lock = lock;
    e->capacity = capacity;
    e->sector_size = sector_size;
    e->sector_shift = (uint32_t)__builtin_ctz(sector_size);
    e->flags = flags;
    e->cur = (layout){.offset = data_offset, .xts = xts};
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_init(&e->stripes[i], NULL);
    for (size_t i = 0; i < MODE_STRIPES; i++)
        pthread_rwlock_init(&e->modes[i].lock, NULL);
    *out = e;
    return VMENC_OK;
fail_unlink:
    if (flags & VM_EXTENT_CREATE)
        (void)unlinkat(dirfd, name, 0);
fail:
    vm_imagelock_release(lock);
    close(fd);
    return s;
}

vmenc_status vm_extent_set_lock(vm_extent *e, vm_lock_mode mode, const char *operation, vmenc_lock_holder *holder) {
    VMENC_ENSURE_REF(e);
    VMENC_ENSURE(mode != VM_LOCK_READ || (e->flags & VM_EXTENT_READONLY), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(mode == VM_LOCK_READ || !(e->flags & VM_EXTENT_READONLY), VMENC_E_BAD_STATE);
    return vm_imagelock_set_mode(e->lock, mode, operation, holder);
}

uint64_t vm_extent_capacity(const vm_extent *e) { return e->capacity; }
uint32_t vm_extent_sector_size(const vm_extent *e) { return e->sector_size; }
bool vm_extent_encrypted(const vm_extent *e) { return e->cur.xts != NULL; }

static vmenc_status check_range(const vm_extent *e, uint64_t offset, size_t len, const void *buf) {
    VMENC_ENSURE(buf != NULL || len == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(offset <= e->capacity && len <= e->capacity - offset, VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

/* read_sectors reads whole sectors [first, first+n) of layout |l| into
 * |buf|, decrypted. */
static vmenc_status read_sectors(const vm_extent *e, const layout *l, uint64_t first, size_t n, uint8_t *buf) {
    VMENC_GUARD(io_pread_all(e->fd, buf, n << e->sector_shift, l->offset + (first << e->sector_shift)));
    if (l->xts != NULL)
        VMENC_GUARD(decrypt_sectors(e, l, first, buf, n));
    return VMENC_OK;
}

static vmenc_status layout_pread(vm_extent *e, const layout *l, uint64_t offset, size_t len, uint8_t *out) {
    if (l->xts == NULL)
        return io_pread_all(e->fd, out, len, l->offset + offset);
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
            VMENC_GUARD_GOTO(s, read_sectors(e, l, sector, 1, bounce), done);
            memcpy(out, bounce + in_sector, take);
            out += take;
            offset += take;
            len -= take;
            continue;
        }
        size_t n = len >> e->sector_shift; /* whole sectors, straight into |out| */
        VMENC_GUARD_GOTO(s, read_sectors(e, l, sector, n, out), done);
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

/* write_partial read-modify-writes one sector under its stripe lock. */
static vmenc_status write_partial(vm_extent *e, const layout *l, uint64_t sector, size_t in_sector,
                                  const uint8_t *data, size_t take, uint8_t *bounce) {
    pthread_mutex_t *m = &e->stripes[sector % STRIPES];
    pthread_mutex_lock(m);
    vmenc_status s = read_sectors(e, l, sector, 1, bounce);
    if (s == VMENC_OK) {
        memcpy(bounce + in_sector, data, take);
        s = vmenc_xts_encrypt(l->xts, sector, bounce, bounce, e->sector_size);
    }
    if (s == VMENC_OK)
        s = vm_io_pwrite_all(e->fd, bounce, e->sector_size, l->offset + (sector << e->sector_shift));
    pthread_mutex_unlock(m);
    return s;
}

static vmenc_status layout_pwrite(vm_extent *e, const layout *l, uint64_t offset, const uint8_t *data,
                                  size_t len) {
    if (l->xts == NULL)
        return vm_io_pwrite_all(e->fd, data, len, l->offset + offset);
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
            VMENC_GUARD_GOTO(s, write_partial(e, l, sector, in_sector, data, take, bounce), done);
        } else {
            take = len & ~((size_t)ss - 1);
            if (take > cap)
                take = cap;
            VMENC_GUARD_GOTO(s, vmenc_xts_encrypt(l->xts, sector, data, bounce, take), done);
            VMENC_GUARD_GOTO(s, vm_io_pwrite_all(e->fd, bounce, take, l->offset + offset), done);
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

/* ---- routing ------------------------------------------------------------------ */

static pthread_rwlock_t *my_mode_lock(vm_extent *e) {
    static _Thread_local uint8_t anchor;
    uintptr_t a = (uintptr_t)&anchor;
    return &e->modes[(a >> 12 ^ a >> 6) % MODE_STRIPES].lock;
}

/* seg_is_new: is segment |k| in the new layout? Segments move in the
 * order that never overwrites data not yet moved: towards offset 0 from the
 * first segment, towards the shift from the last (docs/reencryption.md). */
static bool seg_is_new(const vm_extent *e, uint64_t k) {
    uint64_t done = atomic_load_explicit(&e->done_segs, memory_order_relaxed);
    return e->down ? k < done : k >= e->num_segs - done;
}

typedef vmenc_status (*piece_fn)(vm_extent *e, const layout *l, uint64_t off, size_t len, void *buf);

static vmenc_status piece_read(vm_extent *e, const layout *l, uint64_t off, size_t len, void *buf) {
    return layout_pread(e, l, off, len, buf);
}

static vmenc_status piece_write(vm_extent *e, const layout *l, uint64_t off, size_t len, void *buf) {
    return layout_pwrite(e, l, off, buf, len);
}

/* route runs |fn| over [offset, offset+len) in the right layout(s). */
static vmenc_status route(vm_extent *e, uint64_t offset, size_t len, uint8_t *buf, piece_fn fn) {
    pthread_rwlock_t *mode = my_mode_lock(e);
    pthread_rwlock_rdlock(mode);
    vmenc_status s = VMENC_OK;
    if (!e->converting) {
        s = fn(e, &e->cur, offset, len, buf);
        pthread_rwlock_unlock(mode);
        return s;
    }
    while (s == VMENC_OK && len > 0) {
        uint64_t k = offset / e->seg_bytes;
        uint64_t seg_end = (k + 1) * e->seg_bytes;
        size_t take = seg_end - offset < len ? (size_t)(seg_end - offset) : len;
        pthread_rwlock_rdlock(&e->seg_locks[k]);
        s = fn(e, seg_is_new(e, k) ? &e->next : &e->cur, offset, take, buf);
        pthread_rwlock_unlock(&e->seg_locks[k]);
        offset += take;
        buf += take;
        len -= take;
    }
    pthread_rwlock_unlock(mode);
    return s;
}

vmenc_status vm_extent_pread(vm_extent *e, uint64_t offset, size_t len, uint8_t *out) {
    VMENC_ENSURE_REF(e);
    VMENC_GUARD(check_range(e, offset, len, out));
    return route(e, offset, len, out, piece_read);
}

vmenc_status vm_extent_pwrite(vm_extent *e, uint64_t offset, const uint8_t *data, size_t len) {
    VMENC_ENSURE_REF(e);
    VMENC_ENSURE(!(e->flags & VM_EXTENT_READONLY), VMENC_E_BAD_STATE);
    VMENC_GUARD(check_range(e, offset, len, data));
    return route(e, offset, len, (uint8_t *)(uintptr_t)data, piece_write);
}

vmenc_status vm_extent_flush(vm_extent *e) {
    VMENC_ENSURE_REF(e);
    if ((e->flags & (VM_EXTENT_READONLY | VM_EXTENT_NO_SYNC)) != 0)
        return VMENC_OK;
    return vm_io_sync(e->fd);
}

/* ---- conversion ---------------------------------------------------------------- */

static void lock_all_modes(vm_extent *e) {
    for (size_t i = 0; i < MODE_STRIPES; i++)
        pthread_rwlock_wrlock(&e->modes[i].lock);
}

static void unlock_all_modes(vm_extent *e) {
    for (size_t i = 0; i < MODE_STRIPES; i++)
        pthread_rwlock_unlock(&e->modes[i].lock);
}

vmenc_status vm_extent_convert_start(vm_extent *e, uint64_t old_offset, uint64_t new_offset, vmenc_xts *new_xts,
                                     uint64_t seg_bytes, uint64_t done_segs) {
    VMENC_ENSURE(e != NULL && !e->converting, VMENC_E_BAD_STATE);
    VMENC_ENSURE(old_offset == e->cur.offset || e->cur.offset == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(seg_bytes > 0 && seg_bytes % e->sector_size == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(new_xts == NULL || vmenc_xts_sector_size(new_xts) == e->sector_size, VMENC_E_INVALID_ARG);
    /* the two layouts are |seg_bytes| apart, one at 0 */
    VMENC_ENSURE((old_offset == 0 && new_offset == seg_bytes) || (old_offset == seg_bytes && new_offset == 0),
                 VMENC_E_INVALID_ARG);
    uint64_t n = (e->capacity + seg_bytes - 1) / seg_bytes;
    VMENC_ENSURE(done_segs <= n, VMENC_E_INVALID_ARG);
    struct stat st;
    VMENC_ENSURE(fstat(e->fd, &st) == 0, VMENC_E_IO);
    VMENC_ENSURE((uint64_t)st.st_size >= seg_bytes + e->capacity || done_segs == n, VMENC_E_TRUNCATED);
    pthread_rwlock_t *locks = calloc(n, sizeof(*locks));
    VMENC_ENSURE(locks != NULL, VMENC_E_NOMEM);
    for (uint64_t i = 0; i < n; i++)
        pthread_rwlock_init(&locks[i], NULL);
    lock_all_modes(e);
    e->cur.offset = old_offset;
    e->next = (layout){.offset = new_offset, .xts = new_xts};
    e->seg_bytes = seg_bytes;
    e->num_segs = n;
    e->down = new_offset < e->cur.offset;
    atomic_store_explicit(&e->done_segs, done_segs, memory_order_relaxed);
    e->seg_locks = locks;
    e->converting = true;
    unlock_all_modes(e);
    return VMENC_OK;
}

/* segment_was_hole: has the old layout's segment |k| never been written
 * (no data in the file there)? Then its new copy can be a hole too, which
 * reads as zeros in either form, and costs no write. */
static bool segment_was_hole(const vm_extent *e, uint64_t start, uint64_t len) {
    off_t next = lseek(e->fd, (off_t)start, SEEK_DATA);
    return next < 0 ? errno == ENXIO : (uint64_t)next >= start + len;
}

static vmenc_status punch(vm_extent *e, uint64_t off, uint64_t len, uint8_t *zeros_buf, size_t buf_len) {
    if (fallocate(e->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return VMENC_OK;
    /* no hole punching here: write zeros (they read as zeros in either form) */
    memset(zeros_buf, 0, buf_len);
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < buf_len ? (size_t)(len - done) : buf_len;
        VMENC_GUARD(vm_io_pwrite_all(e->fd, zeros_buf, n, off + done));
        done += n;
    }
    return VMENC_OK;
}

vmenc_status vm_extent_convert_segment(vm_extent *e, uint8_t *buf, vm_extent_persist_fn persist, void *arg,
                                       uint64_t *out_bytes) {
    VMENC_ENSURE(e != NULL && e->converting, VMENC_E_BAD_STATE);
    uint64_t done = atomic_load_explicit(&e->done_segs, memory_order_relaxed);
    VMENC_ENSURE(done < e->num_segs, VMENC_E_BAD_STATE);
    uint64_t k = e->down ? done : e->num_segs - 1 - done;
    uint64_t start = k * e->seg_bytes;
    uint64_t len = e->capacity - start < e->seg_bytes ? e->capacity - start : e->seg_bytes;
    uint64_t first = start >> e->sector_shift, n = len >> e->sector_shift;
    pthread_rwlock_wrlock(&e->seg_locks[k]);
    vmenc_status s = VMENC_OK;
    if (segment_was_hole(e, e->cur.offset + start, len)) {
        s = punch(e, e->next.offset + start, len, buf, (size_t)e->seg_bytes);
    } else {
        s = read_sectors(e, &e->cur, first, (size_t)n, buf);
        if (s == VMENC_OK && e->next.xts != NULL)
            s = vmenc_xts_encrypt(e->next.xts, first, buf, buf, (size_t)len);
        if (s == VMENC_OK)
            s = vm_io_pwrite_all(e->fd, buf, (size_t)len, e->next.offset + start);
    }
    /* 1st fsync point: the moved segment is durable before the state says
     * so, and before the next segment overwrites this one's old place. */
    if (s == VMENC_OK && !(e->flags & VM_EXTENT_NO_SYNC))
        s = vm_io_sync(e->fd);
    /* 2nd: the caller makes the new count durable; only then do guests see
     * the segment in its new place (their writes there would be lost if a
     * crash made us move it again from the old place). */
    if (s == VMENC_OK)
        s = persist(arg, done + 1);
    if (s == VMENC_OK)
        atomic_store_explicit(&e->done_segs, done + 1, memory_order_relaxed);
    pthread_rwlock_unlock(&e->seg_locks[k]);
    vmenc_memzero(buf, (size_t)len);
    if (s == VMENC_OK && out_bytes != NULL)
        *out_bytes = len;
    return s;
}

bool vm_extent_convert_done(const vm_extent *e) {
    return e->converting && atomic_load_explicit(&e->done_segs, memory_order_relaxed) == e->num_segs;
}

void vm_extent_convert_position(const vm_extent *e, uint64_t *out_done, uint64_t *out_total) {
    *out_done = e->converting ? atomic_load_explicit(&e->done_segs, memory_order_relaxed) : 0;
    *out_total = e->converting ? e->num_segs : 0;
}

vmenc_status vm_extent_convert_cleanup(vm_extent *e) {
    VMENC_ENSURE(vm_extent_convert_done(e), VMENC_E_BAD_STATE);
    /* The old layout's leftover: the shift at the start (moved up) or at
     * the end (moved down) still holds old-form data, plaintext after an
     * encryption. Remove it before the conversion is declared finished. */
    vmenc_status s = VMENC_OK;
    if (e->down) {
        if (ftruncate(e->fd, (off_t)e->capacity) != 0)
            s = vmenc_status_from_errno(errno);
    } else {
        uint8_t *zeros = malloc(BOUNCE_MAX);
        s = zeros != NULL ? punch(e, 0, e->seg_bytes, zeros, BOUNCE_MAX) : VMENC_E_NOMEM;
        free(zeros);
    }
    if (s == VMENC_OK && !(e->flags & VM_EXTENT_NO_SYNC))
        s = vm_io_sync(e->fd);
    return s;
}

void vm_extent_convert_reverse(vm_extent *e) {
    lock_all_modes(e);
    layout t = e->cur;
    e->cur = e->next;
    e->next = t;
    e->down = !e->down;
    atomic_store_explicit(&e->done_segs, e->num_segs - atomic_load_explicit(&e->done_segs, memory_order_relaxed),
                          memory_order_relaxed);
    unlock_all_modes(e);
}

vmenc_xts *vm_extent_convert_finish(vm_extent *e) {
    lock_all_modes(e);
    vmenc_xts *old = e->cur.xts;
    e->cur = e->next;
    e->next = (layout){0};
    e->converting = false;
    pthread_rwlock_t *locks = e->seg_locks;
    uint64_t n = e->num_segs;
    e->seg_locks = NULL;
    e->num_segs = 0;
    atomic_store_explicit(&e->done_segs, 0, memory_order_relaxed);
    unlock_all_modes(e);
    for (uint64_t i = 0; i < n; i++)
        pthread_rwlock_destroy(&locks[i]);
    free(locks);
    return old;
}

vmenc_status vm_extent_reserve(vm_extent *e, uint64_t size, bool sync) {
    VMENC_ENSURE(e != NULL && !(e->flags & VM_EXTENT_READONLY), VMENC_E_BAD_STATE);
    struct stat st;
    if (fstat(e->fd, &st) != 0)
        return vmenc_status_from_errno(errno);
    if ((uint64_t)st.st_size >= size)
        return VMENC_OK;
    if (ftruncate(e->fd, (off_t)size) != 0 || (sync && fsync(e->fd) != 0))
        return vmenc_status_from_errno(errno);
    return VMENC_OK;
}

static vmenc_status has_data(int dirfd, const char *name, bool idle, vmenc_lock_holder *holder, bool *out) {
    VMENC_GUARD(vmenc_fs_name_check(name));
    int fd = -1;
    VMENC_GUARD(vm_imagelock_openat(dirfd, name, O_RDONLY, 0, &fd)); /* a FIFO: refused, not waited on */
    vmenc_status s = idle ? vm_imagelock_probe(fd, dirfd, name, VM_LOCK_CONVERT, holder) : VMENC_OK;
    if (s != VMENC_OK) {
        close(fd);
        return s;
    }
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

vmenc_status vm_extent_file_has_data(int dirfd, const char *name, bool *out) {
    return has_data(dirfd, name, false, NULL, out);
}

vmenc_status vm_extent_file_has_data_idle(int dirfd, const char *name, vmenc_lock_holder *holder, bool *out) {
    return has_data(dirfd, name, true, holder, out);
}

vmenc_status vm_extent_close(vm_extent *e, bool flush) {
    if (e == NULL)
        return VMENC_OK;
    vmenc_status s = flush ? vm_extent_flush(e) : VMENC_OK;
    vm_imagelock_release(e->lock); /* the record first: closing drops the lock */
    close(e->fd);
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&e->stripes[i]);
    for (size_t i = 0; i < MODE_STRIPES; i++)
        pthread_rwlock_destroy(&e->modes[i].lock);
    if (e->seg_locks != NULL) {
        for (uint64_t i = 0; i < e->num_segs; i++)
            pthread_rwlock_destroy(&e->seg_locks[i]);
        free(e->seg_locks);
    }
    vmenc_xts_free(e->cur.xts);
    vmenc_xts_free(e->next.xts);
    free(e);
    return s;
}
