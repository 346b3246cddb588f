/*
 * lib/core/lock.c - advisory locks for every layer (lock.h): whole-file
 * flock with a bounded, backing-off wait, and the image locks' byte-range
 * open-file-description locks, one byte per permission (QEMU's
 * raw_apply_lock_bytes / raw_check_lock_bytes; the bytes: docs/vm.md
 * "Locks"). Both kinds belong to the open file description, so two handles
 * in one process exclude each other as two processes do, and closing the
 * last descriptor is the unlock - a killed process leaves nothing held.
 * Safety rule: a conflict is VMENC_E_LOCKED, never a wait inside an I/O.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "core/fs.h"
#include "core/lock.h"

static void sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000u, (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

vmenc_status vmenc_lock_fd(int fd, uint32_t timeout_ms) {
    VMENC_ENSURE(fd >= 0, VMENC_E_INVALID_ARG);
    uint64_t deadline = vmenc_now_monotonic_ms() + timeout_ms;
    unsigned wait = 1;
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return VMENC_OK;
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK)
            return VMENC_E_IO;
        uint64_t now = vmenc_now_monotonic_ms();
        if (now >= deadline)
            return VMENC_E_LOCKED;
        uint64_t left = deadline - now;
        sleep_ms((unsigned)(left < wait ? left : wait));
        if (wait < 16)
            wait *= 2;
    }
}

vmenc_status vmenc_lock_file(const char *path, uint32_t timeout_ms, int *out_fd) {
    VMENC_ENSURE(path != NULL && out_fd != NULL, VMENC_E_INVALID_ARG);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return vmenc_status_from_errno(errno);
    vmenc_status s = vmenc_lock_fd(fd, timeout_ms);
    if (s != VMENC_OK) {
        close(fd);
        return s;
    }
    *out_fd = fd;
    return VMENC_OK;
}

void vmenc_lock_release(int fd) {
    if (fd >= 0)
        close(fd); /* closing the last descriptor drops the flock */
}

/* ---- image locks: byte-range OFD locks -------------------------------------- */

const char *vmenc_lock_perm_name(uint32_t perm) {
    switch (perm) {
    case VMENC_LOCK_PERM_READ: return "read";
    case VMENC_LOCK_PERM_WRITE: return "write";
    case VMENC_LOCK_PERM_CONVERT: return "convert";
    default: return "?";
    }
}

static int ofd_set(int fd, short type, uint64_t byte) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = (off_t)byte, .l_len = 1};
    for (;;) {
        if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* ofd_taken: does another open file description hold a lock on |byte|?
 * (An exclusive probe conflicts with any lock but our own.) -1: failure. */
static int ofd_taken(int fd, uint64_t byte) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = (off_t)byte, .l_len = 1};
    for (;;) {
        if (fcntl(fd, F_OFD_GETLK, &fl) == 0)
            return fl.l_type != F_UNLCK;
        if (errno != EINTR)
            return -1;
    }
}

/* apply makes exactly the bytes of (uses, denies) held (shared) by |fd|. */
static vmenc_status apply(int fd, uint32_t uses, uint32_t denies) {
    for (unsigned i = 0; i < VMENC_LOCK_NUM_PERMS; i++) {
        uint32_t bit = 1u << i;
        if (ofd_set(fd, (uses & bit) ? F_RDLCK : F_UNLCK, VMENC_LOCK_USE_BYTE(i)) != 0 ||
            ofd_set(fd, (denies & bit) ? F_RDLCK : F_UNLCK, VMENC_LOCK_DENY_BYTE(i)) != 0)
            return errno == EAGAIN || errno == EACCES ? VMENC_E_LOCKED : VMENC_E_IO;
    }
    return VMENC_OK;
}

vmenc_status vmenc_lock_bytes_probe(int fd, uint32_t uses, uint32_t denies, vmenc_lock_conflict *out) {
    VMENC_ENSURE(fd >= 0, VMENC_E_INVALID_ARG);
    for (unsigned i = 0; i < VMENC_LOCK_NUM_PERMS; i++) {
        uint32_t bit = 1u << i;
        /* what we use must not be denied by another; what we deny must
         * not be used by another */
        for (int side = 0; side < 2; side++) {
            bool want = side == 0 ? (uses & bit) != 0 : (denies & bit) != 0;
            if (!want)
                continue;
            int t = ofd_taken(fd, side == 0 ? VMENC_LOCK_DENY_BYTE(i) : VMENC_LOCK_USE_BYTE(i));
            if (t < 0)
                return VMENC_E_IO;
            if (t > 0) {
                if (out != NULL)
                    *out = (vmenc_lock_conflict){.perm = bit, .other_uses = side == 1};
                return VMENC_E_LOCKED;
            }
        }
    }
    return VMENC_OK;
}

vmenc_status vmenc_lock_bytes_set(int fd, uint32_t old_uses, uint32_t old_denies, uint32_t uses, uint32_t denies,
                                  vmenc_lock_conflict *out) {
    VMENC_ENSURE(fd >= 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(((old_uses | old_denies | uses | denies) & ~VMENC_LOCK_PERM_ALL) == 0, VMENC_E_INVALID_ARG);
    vmenc_status s = apply(fd, uses, denies);
    /* Only what is new can conflict: a permission we already used or
     * denied was checked when we took it (and others checked against us
     * since). Checking after locking closes the race between two openers:
     * each sees the other's bytes, so at worst both are refused. */
    if (s == VMENC_OK)
        s = vmenc_lock_bytes_probe(fd, uses & ~old_uses, denies & ~old_denies, out);
    if (s != VMENC_OK)
        (void)apply(fd, old_uses, old_denies);
    return s;
}
