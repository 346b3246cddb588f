/*
 * lib/vm/io/imagelock.h - image locks on the datastore files the I/O engine
 * opens (extents, state files): one writer per file across processes, a
 * conversion alone, readers shared; the owner record beside each locked
 * file that names the holder in a refusal; and the one way to open a
 * datastore file (never blocking: a FIFO or device planted in a VM home is
 * refused, not waited on). Bytes, modes, record format: docs/vm.md "Locks".
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_VM_IO_IMAGELOCK_H
#define VMENC_LIB_VM_IO_IMAGELOCK_H

#include <sys/types.h>

#include "core/internal.h"
#include "vmenc/vm.h"

/* What an opener does, and so what it lets others do:
 *   READ     uses read;                      lets others read and write
 *   WRITE    uses read, write;               lets others read
 *   CONVERT  uses read, write, convert;      lets nobody in
 * so readers share, a writer excludes writers, a conversion excludes every
 * other opener (and waits for none: it is refused while anyone has the
 * file open). */
typedef enum vm_lock_mode {
    VM_LOCK_NONE = 0,
    VM_LOCK_READ = 1,
    VM_LOCK_WRITE = 2,
    VM_LOCK_CONVERT = 3
} vm_lock_mode;

/* Who we are, for our owner record (both may be NULL). */
typedef struct vm_lock_owner {
    const char *host_id;   /* the vmenc host ID */
    const char *operation; /* "disk.open", ...; NULL = "open" */
} vm_lock_owner;

typedef struct vm_imagelock vm_imagelock;

/* vm_imagelock_openat opens datastore file |name| in |dirfd| with |oflags|
 * (O_RDONLY / O_RDWR, O_CREAT, O_EXCL, O_TRUNC; O_NOFOLLOW, O_CLOEXEC and,
 * for the open itself, O_NONBLOCK are added) and accepts it only if it is
 * a regular file: a FIFO, device, socket or directory is VMENC_E_BAD_PATH
 * at once (O_NONBLOCK: opening a FIFO never waits for a writer), a
 * symbolic link VMENC_E_BAD_PATH; open errors via vmenc_status_from_errno.
 * O_TRUNC is applied only after the type check. The descriptor goes to
 * |*out_fd| (blocking mode restored). */
VMENC_INTERNAL vmenc_status vm_imagelock_openat(int dirfd, const char *name, int oflags, mode_t mode,
                                                int *out_fd);

/* vm_imagelock_take locks the open file |fd| (named |name| in |dirfd|) in
 * |mode| and, best effort, writes the owner record NAME.lck (a writer or a
 * converter always; a reader when no live holder is named there). On a
 * conflict: VMENC_E_LOCKED, |*holder| (may be NULL; struct_size set by the
 * caller) filled from the record and the conflicting permission; nothing
 * held. VMENC_E_IO, VMENC_E_NOMEM. The lock lives until |fd|'s open file
 * description is closed; vm_imagelock_release (before that close) drops
 * the record and frees. |dirfd| is duplicated. */
VMENC_INTERNAL vmenc_status vm_imagelock_take(int fd, int dirfd, const char *name, vm_lock_mode mode,
                                              const vm_lock_owner *owner, vmenc_lock_holder *holder,
                                              vm_imagelock **out);

/* vm_imagelock_probe: would an opener of the open file |fd| (|name| in
 * |dirfd|) in |mode| be refused by another holder? VMENC_OK (no),
 * VMENC_E_LOCKED (yes; |*holder| filled), VMENC_E_IO. Locks nothing. */
VMENC_INTERNAL vmenc_status vm_imagelock_probe(int fd, int dirfd, const char *name, vm_lock_mode mode,
                                               vmenc_lock_holder *holder);

/* vm_imagelock_set_mode moves a held lock to |mode| (an upgrade to
 * CONVERT when a conversion starts or resumes, back to WRITE after it):
 * VMENC_E_LOCKED (|*holder| filled, the old mode kept) if another holder
 * conflicts; the record follows. |operation| NULL keeps the old one. */
VMENC_INTERNAL vmenc_status vm_imagelock_set_mode(vm_imagelock *l, vm_lock_mode mode, const char *operation,
                                                  vmenc_lock_holder *holder);
VMENC_INTERNAL vm_lock_mode vm_imagelock_mode(const vm_imagelock *l);

/* vm_imagelock_release removes our owner record (if it still names us) and
 * frees |l| (NULL allowed). The byte locks go when the file is closed. */
VMENC_INTERNAL void vm_imagelock_release(vm_imagelock *l);

/* vm_imagelock_describe fills |*holder| for a refusal on file |name| in
 * |dirfd| (owner record + the conflicting permission |perm|, used by
 * another holder when |other_uses|) and its message. A record written by
 * the refused lock itself (|self_since|, 0 = none) names nobody. */
VMENC_INTERNAL void vm_imagelock_describe(int dirfd, const char *name, uint32_t perm, bool other_uses,
                                          uint64_t self_since, vmenc_lock_holder *holder);

#endif /* VMENC_LIB_VM_IO_IMAGELOCK_H */
