/*
 * lib/core/lock.h - the one lock module: whole-file advisory locks
 * (flock) that every layer takes through here instead of calling flock
 * itself, with one rule for waiting (bounded, backing off 1..16 ms) and one
 * for reporting (a lock held by another process is VMENC_E_LOCKED; errno
 * detail only for real failures). The audit log locks its log file; the
 * file key store locks "<keystore>.lock". The byte-range image locks of the
 * next issue (open-file-description locks, one byte per permission, as
 * QEMU's raw_apply_lock_bytes) belong here too.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_CORE_LOCK_H
#define VMENC_LIB_CORE_LOCK_H

#include <stdint.h>

#include "core/internal.h"

/* vmenc_lock_fd takes an exclusive lock on the open file |fd|, retrying
 * for at most |timeout_ms| (0: one try). VMENC_E_LOCKED when another open
 * file description holds it past the deadline, VMENC_E_IO on any other
 * failure. The lock lives until every descriptor of that open file
 * description is closed (or vmenc_lock_release). */
VMENC_INTERNAL vmenc_status vmenc_lock_fd(int fd, uint32_t timeout_ms);

/* vmenc_lock_file opens (creating it, mode 0600) the lock file |path| and
 * locks it as vmenc_lock_fd does; the descriptor goes to |*out_fd| (give it
 * to vmenc_lock_release). A failed open is reported through
 * vmenc_status_from_errno (VMENC_E_NOT_FOUND: the directory is missing);
 * |*out_fd| is untouched on failure. */
VMENC_INTERNAL vmenc_status vmenc_lock_file(const char *path, uint32_t timeout_ms, int *out_fd);

/* vmenc_lock_release closes a descriptor from vmenc_lock_file, which drops
 * the lock (negative: nothing). */
VMENC_INTERNAL void vmenc_lock_release(int fd);

#endif /* VMENC_LIB_CORE_LOCK_H */
