/*
 * lib/vm/io/io.h - the VM layer's I/O engine (this folder): the extent
 * engine under disks and swap (extent.c), the state-file engine
 * (statefile.c), and the data-write path they share (io.c) with its
 * test hooks. Everything here reads or writes files on the datastore; the
 * byte formats it writes are lib/vm/format/, the objects and operations
 * that drive it are lib/vm/ (this folder includes neither the root nor
 * anything above the VM layer).
 *
 * The image lock (DESIGN.md §11 "One writer"; docs/vm.md "Locks"): an
 * open-file-description lock on the data file itself, one byte per
 * permission, taken at open and never per I/O (QEMU's
 * raw_apply_lock_bytes), through lib/core/lock.h, is imagelock.c; every
 * datastore file the engines open goes through vm_imagelock_openat.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_VM_IO_IO_H
#define VMENC_LIB_VM_IO_IO_H

#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"

/* Test hooks: when set, every data write and data sync of an extent, a
 * state file and a conversion state file goes through them (a fault
 * injector for torn writes, lost fsyncs, ENOSPC and EIO). NULL in the
 * product. */
typedef struct vm_io_hooks {
    vmenc_status (*pwrite)(int fd, const uint8_t *buf, size_t len, uint64_t off);
    vmenc_status (*sync)(int fd);
} vm_io_hooks;
extern const vm_io_hooks *vm_io_hook;
/* Durable steps (renames, unlinks, fsyncs of files and directories) of
 * every VM path go through lib/core/fs.h's vmenc_fs_step_hook - vm_io_sync
 * included, before the |sync| hook above - so one hook counts and stops
 * the steps of a VM operation (tests/test_vm_crash_sweep.c). VM code
 * renames, unlinks and fsyncs through vmenc_fs_rename / vmenc_fs_unlink /
 * vmenc_fs_fsync / vmenc_fs_fsync_dir, never the raw calls. */

/* vm_io_pwrite_all writes every byte at |off| (EINTR and short writes
 * retried; a write of 0 bytes is VMENC_E_IO); vm_io_sync is fdatasync.
 * Both go through the hooks when set. */
VMENC_INTERNAL vmenc_status vm_io_pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t off);
VMENC_INTERNAL vmenc_status vm_io_sync(int fd);

#endif /* VMENC_LIB_VM_IO_IO_H */
