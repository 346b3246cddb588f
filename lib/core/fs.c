/*
 * lib/core/fs.c - the file-system plumbing of every layer: errno to
 * status, the file-name rule that keeps every VM file inside its home
 * directory, atomic replacement (temp + fsync + rename + directory fsync)
 * and bounded whole-file reads that refuse symbolic links. Used by the VM
 * layer, the workspace and the file key store; one replacement engine
 * (vmenc_fs_replace_file) under all of them.
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

#include "core/fs.h"

#define NAME_MAX_BYTES 255u
/* ".tmp-" + 16 hex digits */
#define TMP_SUFFIX_BYTES 21u

vmenc_status vmenc_status_from_errno(int err) {
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

vmenc_status vmenc_fs_name_check(const char *name) {
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
            return vmenc_status_from_errno(errno);
        }
        data += n;
        len -= (size_t)n;
    }
    return VMENC_OK;
}

vmenc_fs_step_fn vmenc_fs_step_hook;

vmenc_status vmenc_fs_step(int op, const char *name) {
    return vmenc_fs_step_hook != NULL ? vmenc_fs_step_hook(op, name) : VMENC_OK;
}

vmenc_status vmenc_fs_fsync_dir(int dirfd) {
    VMENC_ENSURE(dirfd >= 0, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_fs_step(VMENC_FS_OP_FSYNC_DIR, NULL));
    VMENC_ENSURE(fsync(dirfd) == 0, VMENC_E_IO);
    return VMENC_OK;
}

vmenc_status vmenc_fs_fsync(int fd) {
    VMENC_GUARD(vmenc_fs_step(VMENC_FS_OP_FSYNC, NULL));
    return fsync(fd) == 0 ? VMENC_OK : vmenc_status_from_errno(errno);
}

vmenc_status vmenc_fs_rename(int dirfd, const char *from, const char *to) {
    VMENC_GUARD(vmenc_fs_step(VMENC_FS_OP_RENAME, to));
    return renameat(dirfd, from, dirfd, to) == 0 ? VMENC_OK : vmenc_status_from_errno(errno);
}

vmenc_status vmenc_fs_unlink(int dirfd, const char *name) {
    VMENC_GUARD(vmenc_fs_step(VMENC_FS_OP_UNLINK, name));
    return unlinkat(dirfd, name, 0) == 0 ? VMENC_OK : vmenc_status_from_errno(errno);
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

static bool step_stop(const vmenc_fs_replace *r, int step) {
    return r->step != NULL && r->step(r->step_arg, step) != 0;
}

/* write_tmp writes the temporary; with a step hook, in two halves so the
 * hook sees a half-written file. A hook stop leaves the temporary behind
 * (*out_keep_tmp), as a crash would. */
static vmenc_status write_tmp(const vmenc_fs_replace *r, int fd, const uint8_t *data, size_t len,
                              bool *out_keep_tmp) {
    if (step_stop(r, VMENC_FS_STEP_TMP_OPEN))
        return *out_keep_tmp = true, VMENC_E_IO;
    size_t half = r->step != NULL ? len / 2 : 0;
    VMENC_GUARD(write_all(fd, data, half));
    if (r->step != NULL && step_stop(r, VMENC_FS_STEP_HALF_WRITTEN))
        return *out_keep_tmp = true, VMENC_E_IO;
    VMENC_GUARD(write_all(fd, data + half, len - half));
    if (step_stop(r, VMENC_FS_STEP_WRITTEN))
        return *out_keep_tmp = true, VMENC_E_IO;
    if (r->sync)
        VMENC_GUARD(vmenc_fs_fsync(fd));
    return VMENC_OK;
}

static vmenc_status sync_dir(const vmenc_fs_replace *r) {
    if (r->sync_dirfd >= 0)
        return vmenc_fs_fsync_dir(r->sync_dirfd);
    int fd = open(r->sync_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    VMENC_ENSURE(fd >= 0, VMENC_E_IO);
    vmenc_status rv = vmenc_fs_fsync_dir(fd);
    (void)close(fd);
    return rv;
}

/* put_in_place renames the temporary over |name|, or links it (never
 * replacing) and drops the temporary's name. */
static vmenc_status put_in_place(const vmenc_fs_replace *r) {
    VMENC_GUARD(vmenc_fs_step(VMENC_FS_OP_RENAME, r->name));
    if (!r->noreplace)
        return renameat(r->dirfd, r->tmp, r->dirfd, r->name) == 0 ? VMENC_OK : vmenc_status_from_errno(errno);
    if (linkat(r->dirfd, r->tmp, r->dirfd, r->name, 0) != 0)
        return vmenc_status_from_errno(errno);
    (void)unlinkat(r->dirfd, r->tmp, 0);
    return VMENC_OK;
}

vmenc_status vmenc_fs_replace_file(const vmenc_fs_replace *r, const uint8_t *data, size_t len) {
    VMENC_ENSURE(r != NULL && r->tmp != NULL && r->name != NULL && (data != NULL || len == 0),
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(!r->sync || r->sync_dirfd >= 0 || r->sync_dir != NULL, VMENC_E_INVALID_ARG);
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (r->exclusive_tmp ? O_EXCL | O_NOFOLLOW : O_TRUNC);
    int fd = openat(r->dirfd, r->tmp, flags, 0600);
    if (fd < 0)
        return vmenc_status_from_errno(errno);
    bool keep_tmp = false;
    vmenc_status rv = write_tmp(r, fd, data, len, &keep_tmp);
    if (close(fd) != 0 && rv == VMENC_OK)
        rv = vmenc_status_from_errno(errno);
    if (rv == VMENC_OK && step_stop(r, VMENC_FS_STEP_SYNCED))
        rv = VMENC_E_IO, keep_tmp = true;
    if (rv == VMENC_OK)
        rv = put_in_place(r);
    if (rv != VMENC_OK) {
        if (!keep_tmp)
            (void)unlinkat(r->dirfd, r->tmp, 0);
        return rv;
    }
    VMENC_ENSURE(!step_stop(r, VMENC_FS_STEP_RENAMED), VMENC_E_IO);
    /* The rename is only durable once the directory entry is. */
    if (r->sync)
        VMENC_GUARD(sync_dir(r));
    VMENC_ENSURE(!step_stop(r, VMENC_FS_STEP_DONE), VMENC_E_IO);
    return VMENC_OK;
}

vmenc_status vmenc_fs_atomic_write(int dirfd, const char *name, const uint8_t *data, size_t len, bool sync) {
    VMENC_ENSURE(dirfd >= 0 && (data != NULL || len == 0), VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_fs_name_check(name));
    char tmp[NAME_MAX_BYTES + 1];
    VMENC_GUARD(tmp_name(name, tmp, sizeof(tmp)));
    vmenc_fs_replace r = {.dirfd = dirfd, .tmp = tmp, .name = name, .sync_dirfd = dirfd, .sync = sync,
                          .exclusive_tmp = true};
    return vmenc_fs_replace_file(&r, data, len);
}

/* read_fd reads to EOF, at most |max| bytes; one byte more is TOO_LARGE. */
static vmenc_status read_fd(int fd, size_t max, uint8_t **out, size_t *out_len) {
    struct stat st;
    if (fstat(fd, &st) != 0)
        return vmenc_status_from_errno(errno);
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
            vmenc_status rv = vmenc_status_from_errno(errno);
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

vmenc_status vmenc_fs_read_file(int dirfd, const char *name, size_t max, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(dirfd >= 0 && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_fs_name_check(name));
    /* O_NONBLOCK so a FIFO planted under the name cannot hang the open. */
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return vmenc_status_from_errno(errno);
    vmenc_status rv = read_fd(fd, max, out, out_len);
    (void)close(fd);
    return rv;
}
