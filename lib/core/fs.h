/*
 * lib/core/fs.h - file-system plumbing for every layer: errno to status
 * (one mapping), the file-name rule that keeps a file inside its
 * directory, atomic replacement (temporary + fsync + rename or link +
 * directory fsync) and bounded whole-file reads that refuse symbolic links.
 * File locks are lib/core/lock.h.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_CORE_FS_H
#define VMENC_LIB_CORE_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"

/* vmenc_status_from_errno maps an errno: ENOSPC/EDQUOT -> VMENC_E_NO_SPACE,
 * ENOENT -> VMENC_E_NOT_FOUND, EEXIST/ENOTEMPTY -> VMENC_E_EXISTS,
 * ENOMEM -> VMENC_E_NOMEM, ELOOP (O_NOFOLLOW on a link) -> VMENC_E_BAD_PATH,
 * anything else -> VMENC_E_IO. */
VMENC_INTERNAL vmenc_status vmenc_status_from_errno(int err);

/* vmenc_fs_name_check accepts a file name that stays inside its directory:
 * 1..255 bytes of [A-Za-z0-9._-], not starting with '.' or '-', no '/'.
 * Else VMENC_E_BAD_PATH ("..", "/etc/passwd", "a/b", "", control bytes). */
VMENC_INTERNAL vmenc_status vmenc_fs_name_check(const char *name);

/* vmenc_fs_atomic_write replaces file |name| in directory |dirfd| with |len|
 * bytes: write a temporary "<name>.tmp-<random>" (O_CREAT|O_EXCL|O_NOFOLLOW,
 * mode 0600), fsync it, renameat over |name|, fsync the directory (the
 * fsyncs are skipped when |sync| is false). On any failure the temporary is
 * unlinked and |name| is untouched. Errors via vmenc_status_from_errno. */
VMENC_INTERNAL vmenc_status vmenc_fs_atomic_write(int dirfd, const char *name, const uint8_t *data, size_t len,
                                                  bool sync);

/* The steps of a replacement, for crash tests (vmenc_fs_replace's |step|
 * hook): a nonzero return from the hook abandons the write right there,
 * as a crash would (VMENC_E_IO; the temporary is left behind). The numbers
 * are the file key store's VMENC_KMS_FILE_STEP_* (lib/kms/kms_internal.h). */
enum {
    VMENC_FS_STEP_TMP_OPEN = 1, /* temporary file created, empty */
    VMENC_FS_STEP_HALF_WRITTEN, /* half of the bytes written */
    VMENC_FS_STEP_WRITTEN,      /* all bytes written, not yet synced */
    VMENC_FS_STEP_SYNCED,       /* fsync done, not yet renamed */
    VMENC_FS_STEP_RENAMED,      /* renamed (or linked) into place, directory not synced */
    VMENC_FS_STEP_DONE          /* directory synced */
};

typedef struct vmenc_fs_replace {
    int dirfd;          /* |tmp| and |name| are relative to it (AT_FDCWD: paths) */
    const char *tmp;    /* the temporary's name */
    const char *name;   /* the file to replace or create */
    /* the directory to fsync: |sync_dirfd| if >= 0, else |sync_dir| opened */
    int sync_dirfd;
    const char *sync_dir;
    bool sync;          /* fsync the temporary and the directory */
    bool exclusive_tmp; /* create the temporary O_EXCL|O_NOFOLLOW (else O_TRUNC) */
    bool noreplace;     /* link + unlink: an existing |name| is VMENC_E_EXISTS */
    int (*step)(void *arg, int step); /* test hook (VMENC_FS_STEP_*), NULL in the product */
    void *step_arg;
} vmenc_fs_replace;

/* vmenc_fs_replace_file is the one atomic-replacement engine under
 * vmenc_fs_atomic_write and the file key store: write |len| bytes to the
 * temporary (mode 0600), fsync, rename over (or, |noreplace|, link to)
 * |name|, fsync the directory. On a real failure the temporary is unlinked
 * and |name| is untouched; errors via vmenc_status_from_errno. */
VMENC_INTERNAL vmenc_status vmenc_fs_replace_file(const vmenc_fs_replace *r, const uint8_t *data, size_t len);

/* vmenc_fs_read_file reads the whole regular file |name| in |dirfd|
 * (O_NOFOLLOW: a symbolic link is VMENC_E_BAD_PATH) into a new malloc'd
 * buffer (a NUL is appended, not counted). VMENC_E_TOO_LARGE above |max|
 * bytes, VMENC_E_NOT_FOUND, VMENC_E_IO. */
VMENC_INTERNAL vmenc_status vmenc_fs_read_file(int dirfd, const char *name, size_t max, uint8_t **out,
                                               size_t *out_len);

/* vmenc_fs_fsync_dir fsyncs a directory descriptor (VMENC_E_IO on failure). */
VMENC_INTERNAL vmenc_status vmenc_fs_fsync_dir(int dirfd);

/* ---- durable steps under a test hook ---------------------------------------------
 *
 * Every step that changes what survives a crash - a rename (or link) into
 * place, an unlink, an fsync of a file or a directory - goes through
 * vmenc_fs_step_hook when it is set, before the step is taken: the crash
 * sweep counts the steps of an operation, then stops it at each one (a
 * non-OK return fails that step with that status, the step not taken; a
 * test may also _exit there, as a crash would). NULL in the product. |name|
 * is the file concerned (the destination of a rename; NULL for a file or
 * directory fsync known only by its descriptor). */
enum { VMENC_FS_OP_RENAME = 1, VMENC_FS_OP_UNLINK, VMENC_FS_OP_FSYNC, VMENC_FS_OP_FSYNC_DIR };
typedef vmenc_status (*vmenc_fs_step_fn)(int op, const char *name);
VMENC_INTERNAL extern vmenc_fs_step_fn vmenc_fs_step_hook;

/* vmenc_fs_step asks the hook about one step (VMENC_OK without a hook). */
VMENC_INTERNAL vmenc_status vmenc_fs_step(int op, const char *name);
/* vmenc_fs_rename renames |from| over |to| in |dirfd|; vmenc_fs_unlink
 * unlinks |name|; vmenc_fs_fsync fsyncs a file. All through the hook; errors
 * via vmenc_status_from_errno. */
VMENC_INTERNAL vmenc_status vmenc_fs_rename(int dirfd, const char *from, const char *to);
VMENC_INTERNAL vmenc_status vmenc_fs_unlink(int dirfd, const char *name);
VMENC_INTERNAL vmenc_status vmenc_fs_fsync(int fd);

#endif /* VMENC_LIB_CORE_FS_H */
