/*
 * lib/vm/fsutil.c - the file-system helpers of the VM layer: errno to
 * status, the file-name rule that keeps every VM file inside its home
 * directory, atomic replacement (temp + fsync + rename + directory fsync)
 * and bounded whole-file reads that refuse symbolic links.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vm/vm_format.h"

#define NAME_MAX_BYTES 255u
/* ".tmp-" + 16 hex digits */
#define TMP_SUFFIX_BYTES 21u

vmenc_status vm_status_from_errno(int err) {
    switch (err) {
    case ENOSPC:
    case EDQUOT:
        return VMENC_E_NO_SPACE;
    case ENOENT:
        return VMENC_E_NOT_FOUND;
    case EEXIST:
    case ENOTEMPTY:
        return VMENC_E_EXISTS;
    case ENOMEM:
        return VMENC_E_NOMEM;
    case ELOOP:
        return VMENC_E_BAD_PATH;
    default:
        return VMENC_E_IO;
    }
}

static bool name_char_ok(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

vmenc_status vm_file_name_check(const char *name) {
    VMENC_ENSURE(name != NULL, VMENC_E_BAD_PATH);
    /* A leading '.' rules out "." and ".." (and hidden files); a leading
     * '-' keeps names from reading as options in tools a user may run. */
    VMENC_ENSURE(name[0] != '\0' && name[0] != '.' && name[0] != '-', VMENC_E_BAD_PATH);
    size_t i = 0;
    for (; name[i] != '\0'; i++) {
        VMENC_ENSURE(i < NAME_MAX_BYTES, VMENC_E_BAD_PATH);
        VMENC_ENSURE(name_char_ok(name[i]), VMENC_E_BAD_PATH);
    }
    return VMENC_OK;
}

/* write_all writes |len| bytes at the current position, retrying short
 * writes and EINTR. */
static vmenc_status write_all(int fd, const uint8_t *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return vm_status_from_errno(errno);
        }
        data += n;
        len -= (size_t)n;
    }
    return VMENC_OK;
}

vmenc_status vm_fsync_dir(int dirfd) {
    VMENC_ENSURE(dirfd >= 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(fsync(dirfd) == 0, VMENC_E_IO);
    return VMENC_OK;
}

static vmenc_status tmp_name(const char *name, char *out, size_t cap) {
    uint8_t rnd[8];
    char hex[2 * sizeof(rnd) + 1];
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    size_t name_len = strlen(name);
    /* The temporary must be a legal name too; a name too long to carry the
     * suffix is refused rather than shortened, so two writers can never
     * share a temporary by truncation. */
    VMENC_ENSURE(name_len + TMP_SUFFIX_BYTES <= NAME_MAX_BYTES && name_len + TMP_SUFFIX_BYTES < cap,
                 VMENC_E_BAD_PATH);
    memcpy(out, name, name_len);
    memcpy(out + name_len, ".tmp-", 5);
    memcpy(out + name_len + 5, hex, 16);
    out[name_len + TMP_SUFFIX_BYTES] = '\0';
    return VMENC_OK;
}

static vmenc_status write_tmp(int fd, const uint8_t *data, size_t len, bool sync) {
    VMENC_GUARD(write_all(fd, data, len));
    if (sync && fsync(fd) != 0)
        return vm_status_from_errno(errno);
    return VMENC_OK;
}

vmenc_status vm_atomic_write(int dirfd, const char *name, const uint8_t *data, size_t len, bool sync) {
    VMENC_ENSURE(dirfd >= 0 && (data != NULL || len == 0), VMENC_E_INVALID_ARG);
    VMENC_GUARD(vm_file_name_check(name));
    char tmp[NAME_MAX_BYTES + 1];
    VMENC_GUARD(tmp_name(name, tmp, sizeof(tmp)));
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return vm_status_from_errno(errno);
    vmenc_status rv = write_tmp(fd, data, len, sync);
    if (close(fd) != 0 && rv == VMENC_OK)
        rv = vm_status_from_errno(errno);
    if (rv == VMENC_OK && renameat(dirfd, tmp, dirfd, name) != 0)
        rv = vm_status_from_errno(errno);
    if (rv != VMENC_OK) {
        (void)unlinkat(dirfd, tmp, 0);
        return rv;
    }
    /* The rename is only durable once the directory entry is. */
    return sync ? vm_fsync_dir(dirfd) : VMENC_OK;
}

/* read_fd reads to EOF, at most |max| bytes; one byte more is TOO_LARGE. */
static vmenc_status read_fd(int fd, size_t max, uint8_t **out, size_t *out_len) {
    struct stat st;
    if (fstat(fd, &st) != 0)
        return vm_status_from_errno(errno);
    /* A FIFO, device or directory is never a VM file (and a FIFO would
     * block the reader). */
    VMENC_ENSURE(S_ISREG(st.st_mode), VMENC_E_BAD_PATH);
    VMENC_ENSURE((uint64_t)st.st_size <= max, VMENC_E_TOO_LARGE);
    size_t cap = (size_t)st.st_size + 1;
    uint8_t *buf = malloc(cap + 1);
    VMENC_ENSURE(buf != NULL, VMENC_E_NOMEM);
    size_t len = 0;
    for (;;) {
        if (len == cap) { /* the file grew while we read it: read_fd stays bounded */
            free(buf);
            return VMENC_E_TOO_LARGE;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            vmenc_status rv = vm_status_from_errno(errno);
            free(buf);
            return rv;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > max) {
        free(buf);
        return VMENC_E_TOO_LARGE;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return VMENC_OK;
}

vmenc_status vm_read_file(int dirfd, const char *name, size_t max, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(dirfd >= 0 && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vm_file_name_check(name));
    /* O_NONBLOCK so a FIFO planted under the name cannot hang the open. */
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return vm_status_from_errno(errno);
    vmenc_status rv = read_fd(fd, max, out, out_len);
    (void)close(fd);
    return rv;
}

/* ---- data I/O under the test hooks ---------------------------------------------- */

/* vm_io_hook lets a test put a fault injector under every data write and
 * sync (torn writes, lost fsyncs). NULL in the product. */
const vm_io_hooks *vm_io_hook;

vmenc_status vm_io_sync(int fd) {
    if (vm_io_hook != NULL && vm_io_hook->sync != NULL)
        return vm_io_hook->sync(fd);
    return fdatasync(fd) == 0 ? VMENC_OK : vm_status_from_errno(errno);
}

vmenc_status vm_io_pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t off) {
    if (vm_io_hook != NULL && vm_io_hook->pwrite != NULL)
        return vm_io_hook->pwrite(fd, buf, len, off);
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
