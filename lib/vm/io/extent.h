/*
 * lib/vm/io/extent.h - the extent engine: sector I/O on a flat data file,
 * XTS-encrypted or plain, and the two-layout moves of an in-place
 * conversion (docs/reencryption.md). Used by disks and swap (lib/vm/).
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_VM_IO_EXTENT_H
#define VMENC_LIB_VM_IO_EXTENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"
#include "vm/io/imagelock.h"
#include "vmenc/xts.h"

/* ---- extents: the block engine under disks and swap (extent.c) ------------ */

typedef struct vm_extent vm_extent;

#define VM_EXTENT_READONLY (1u << 0)
#define VM_EXTENT_CREATE (1u << 1)  /* create (O_EXCL) and size to |capacity|, sparse */
#define VM_EXTENT_NO_SYNC (1u << 2)

/* vm_extent_open opens data file |name| in |dirfd| of |capacity| bytes in
 * sectors of |sector_size|, sector 0 at byte |data_offset|. |xts| (taken
 * over on success; NULL = plain) encrypts sector n with tweak n. A file
 * shorter than data_offset + capacity is VMENC_E_TRUNCATED. */
VMENC_INTERNAL vmenc_status vm_extent_open(int dirfd, const char *name, uint64_t capacity, uint32_t sector_size,
                                           uint64_t data_offset, vmenc_xts *xts, uint32_t flags,
                                           vm_extent **out);
/* vm_extent_open_ex is vm_extent_open naming the opener (|owner|, may be
 * NULL) for the image lock every open takes (imagelock.h: READ when
 * read-only, else WRITE), before the size check. A file that is not a
 * regular file is VMENC_E_BAD_PATH at once (never a blocking open); a
 * conflicting lock VMENC_E_LOCKED with |*holder| (may be NULL) filled. */
VMENC_INTERNAL vmenc_status vm_extent_open_ex(int dirfd, const char *name, uint64_t capacity,
                                              uint32_t sector_size, uint64_t data_offset, vmenc_xts *xts,
                                              uint32_t flags, const vm_lock_owner *owner,
                                              vmenc_lock_holder *holder, vm_extent **out);
/* vm_extent_set_lock moves the extent's image lock to |mode| (CONVERT for
 * the length of an in-place conversion): VMENC_E_LOCKED with |*holder|
 * filled when another opener conflicts (nothing changed). */
VMENC_INTERNAL vmenc_status vm_extent_set_lock(vm_extent *e, vm_lock_mode mode, const char *operation,
                                               vmenc_lock_holder *holder);
VMENC_INTERNAL vmenc_status vm_extent_pread(vm_extent *e, uint64_t offset, size_t len, uint8_t *out);
VMENC_INTERNAL vmenc_status vm_extent_pwrite(vm_extent *e, uint64_t offset, const uint8_t *data, size_t len);
VMENC_INTERNAL vmenc_status vm_extent_flush(vm_extent *e);
VMENC_INTERNAL uint64_t vm_extent_capacity(const vm_extent *e);
VMENC_INTERNAL uint32_t vm_extent_sector_size(const vm_extent *e);
VMENC_INTERNAL bool vm_extent_encrypted(const vm_extent *e);
/* vm_extent_has_data reports whether any byte of the file was ever written
 * (SEEK_DATA; a file system without holes reports data). */
VMENC_INTERNAL vmenc_status vm_extent_file_has_data(int dirfd, const char *name, bool *out);
/* vm_extent_file_has_data_idle is vm_extent_file_has_data for a decision
 * that changes the file's key without moving data (an empty disk encrypted
 * or decrypted by its descriptor alone): VMENC_E_LOCKED, |*holder| (may be
 * NULL) filled, when any other opener has the file open - a server writing
 * plaintext into a disk just declared encrypted is what this refuses. */
VMENC_INTERNAL vmenc_status vm_extent_file_has_data_idle(int dirfd, const char *name, vmenc_lock_holder *holder,
                                                         bool *out);
/* In-place conversion (convert.c drives it; docs/reencryption.md).
 * vm_extent_convert_start sets the old layout at |old_offset| (with the
 * extent's own context) and adds the new layout (|new_offset|, |new_xts|
 * taken over on success; NULL = plain) with |done_segs| segments of
 * |seg_bytes| already moved; the two layouts must be |seg_bytes| apart
 * with one at 0. An extent resumed mid-conversion is opened at offset 0
 * (its size checked for that), since after the last segment moved down the
 * old layout's end may already be cut off. */
VMENC_INTERNAL vmenc_status vm_extent_convert_start(vm_extent *e, uint64_t old_offset, uint64_t new_offset,
                                                    vmenc_xts *new_xts, uint64_t seg_bytes, uint64_t done_segs);
/* vm_extent_persist_fn makes "|done_segs| segments moved" durable. */
typedef vmenc_status (*vm_extent_persist_fn)(void *arg, uint64_t done_segs);
/* vm_extent_convert_segment moves the next segment under its exclusive
 * lock: read + decrypt the old form, encrypt + write the new (|buf| holds
 * one segment), fdatasync, |persist|, then guests see it moved. Writes the
 * segment's length to |*out_bytes|. On failure nothing has moved. */
VMENC_INTERNAL vmenc_status vm_extent_convert_segment(vm_extent *e, uint8_t *buf, vm_extent_persist_fn persist,
                                                      void *arg, uint64_t *out_bytes);
VMENC_INTERNAL bool vm_extent_convert_done(const vm_extent *e);
/* vm_extent_reserve grows the file (sparse) to at least |size| bytes. */
VMENC_INTERNAL vmenc_status vm_extent_reserve(vm_extent *e, uint64_t size, bool sync);
VMENC_INTERNAL void vm_extent_convert_position(const vm_extent *e, uint64_t *out_done, uint64_t *out_total);
/* vm_extent_convert_cleanup removes the old layout's leftover (truncate or
 * punch) and fsyncs, once every segment moved. Idempotent. */
VMENC_INTERNAL vmenc_status vm_extent_convert_cleanup(vm_extent *e);
/* vm_extent_convert_reverse turns the conversion around (a rollback): the
 * layouts swap, the direction flips, and the segments not yet moved become
 * the ones moved. */
VMENC_INTERNAL void vm_extent_convert_reverse(vm_extent *e);
/* vm_extent_convert_finish makes the new layout the only one and returns
 * the old XTS context for the caller to free. */
VMENC_INTERNAL vmenc_xts *vm_extent_convert_finish(vm_extent *e);


/* vm_extent_close flushes (unless read-only or |flush| false), frees,
 * wipes the cipher context. Returns the flush status. */
VMENC_INTERNAL vmenc_status vm_extent_close(vm_extent *e, bool flush);

#endif /* VMENC_LIB_VM_IO_EXTENT_H */
