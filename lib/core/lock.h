/*
 * lib/core/lock.h - the one lock module: whole-file advisory locks
 * (flock) that every layer takes through here instead of calling flock
 * itself, with one rule for waiting (bounded, backing off 1..16 ms) and one
 * for reporting (a lock held by another process is VMENC_E_LOCKED; errno
 * detail only for real failures). The audit log locks its log file; the
 * file key store locks "<keystore>.lock". The image locks of extents and
 * state files are byte-range open-file-description locks (F_OFD_SETLK),
 * one byte per permission, as QEMU's raw_apply_lock_bytes /
 * raw_check_lock_bytes (vmenc_lock_bytes_*; the bytes and what each opener
 * takes: docs/vm.md "Locks"; lib/vm/io/imagelock.c applies them).
 *
 * Safety rule: a lock module never waits on, reads or writes the data of
 * the file it locks; image locks are taken once per open, never per I/O.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_CORE_LOCK_H
#define VMENC_LIB_CORE_LOCK_H

#include <stdbool.h>
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

/* ---- image locks: one byte per permission ---------------------------------
 *
 * Each permission has two bytes: "holder uses it" (VMENC_LOCK_USE_BYTE)
 * and "holder lets nobody else use it" (VMENC_LOCK_DENY_BYTE). A holder
 * takes a shared (read) OFD lock on the bytes that describe it; a conflict
 * is another open file description's lock on the opposite byte (our use
 * vs their deny, our deny vs their use), found with F_OFD_GETLK. The locks
 * belong to the open file description: they die with the last descriptor
 * (a process killed -9 leaves nothing), and two opens in one process
 * exclude each other as two processes do.
 *
 * The bytes sit at 2^62 and up, far past any byte vmenc writes (an extent
 * ends below 2^51, a state file below 2^51 too): OFD locks are advisory,
 * so they could sit anywhere, but a range no data ever reaches keeps them
 * apart from anything a reader of the file might assume. */
#define VMENC_LOCK_PERM_READ (1u << 0)
#define VMENC_LOCK_PERM_WRITE (1u << 1)
#define VMENC_LOCK_PERM_CONVERT (1u << 2)
#define VMENC_LOCK_PERM_ALL 7u
#define VMENC_LOCK_NUM_PERMS 3u
#define VMENC_LOCK_BYTES_BASE ((uint64_t)1 << 62)
#define VMENC_LOCK_USE_BYTE(i) (VMENC_LOCK_BYTES_BASE + (uint64_t)(i))
#define VMENC_LOCK_DENY_BYTE(i) (VMENC_LOCK_BYTES_BASE + 64u + (uint64_t)(i))

/* What a refused vmenc_lock_bytes_set ran into: |perm| (one
 * VMENC_LOCK_PERM_* bit) and whether another holder uses it while we
 * would deny it (|other_uses| true) or denies it while we would use it. */
typedef struct vmenc_lock_conflict {
    uint32_t perm;
    bool other_uses;
} vmenc_lock_conflict;

/* vmenc_lock_perm_name: "read", "write", "convert" (one bit), else "?". */
VMENC_INTERNAL const char *vmenc_lock_perm_name(uint32_t perm);

/* vmenc_lock_bytes_set moves the image lock of the open file |fd| from
 * (|old_uses|, |old_denies|) to (|uses|, |denies|) (VMENC_LOCK_PERM_* sets;
 * 0, 0 = unlocked): the new bytes are locked first, then checked against
 * every other open file description (so two racing openers both see each
 * other and neither gets in, as in QEMU). On a conflict the old state is
 * put back, |*out| (may be NULL) says which permission, and the result is
 * VMENC_E_LOCKED; VMENC_E_IO on a real failure (also put back as far as
 * the kernel lets us). Dropping bytes never conflicts. */
VMENC_INTERNAL vmenc_status vmenc_lock_bytes_set(int fd, uint32_t old_uses, uint32_t old_denies, uint32_t uses,
                                                 uint32_t denies, vmenc_lock_conflict *out);

/* vmenc_lock_bytes_probe reports (without locking anything) whether an
 * opener asking for (|uses|, |denies|) would conflict with the locks of
 * other open file descriptions of the file: VMENC_OK (no), VMENC_E_LOCKED
 * (yes, |*out| says which), VMENC_E_IO. */
VMENC_INTERNAL vmenc_status vmenc_lock_bytes_probe(int fd, uint32_t uses, uint32_t denies,
                                                   vmenc_lock_conflict *out);

#endif /* VMENC_LIB_CORE_LOCK_H */
