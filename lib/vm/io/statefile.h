/*
 * lib/vm/io/statefile.h - the state-file engine: random-access reads and
 * writes of the chunked AEAD files (format in
 * lib/vm/format/statefile_header.h), whole-file conversion between forms,
 * and the streaming writer for core dumps.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_VM_IO_STATEFILE_H
#define VMENC_LIB_VM_IO_STATEFILE_H

#include <stdbool.h>

#include "vm/format/statefile_header.h"
#include "vm/io/imagelock.h"
#include "vmenc/keys.h"
#include "vmenc/vm.h"

/* ---- chunked AEAD state files (statefile.c) ---------------------------------- */

typedef struct vm_sf vm_sf;

/* The GCM random-nonce budget of one file ID (its subkey): record writes
 * sealed under one ID before the file gets a new one. 2^30, a quarter of
 * the 2^32 random-nonce invocations SP 800-38D allows per key. */
#define VM_SF_WRITE_BUDGET ((uint64_t)1 << 30)

/* vm_sf_anchor: how the caller anchors a sealed file's ID outside the
 * datastore (the VM layer: the authority record, docs/control.md "State
 * files"). Every member may be NULL.
 *  - check: may an existing file whose header carries |id| be opened?
 *    Anything but VMENC_OK refuses the open with that status.
 *  - announce: a new file under |id| is about to replace (or become) file
 *    (|cls|, |index|); durable before it returns. Nothing is replaced
 *    unless it returned VMENC_OK.
 *  - settled: the file under |id| replaced the old one (|id| NULL: the file
 *    is now plain), durable on disk.
 * |in_write| is true when called from vm_sf_pwrite (a budget renewal): the
 * caller of the write holds none of the VM layer's locks then.
 * |write_budget| 0 means VM_SF_WRITE_BUDGET (a test lowers it). */
typedef struct vm_sf_anchor {
    vmenc_status (*check)(void *ctx, uint8_t cls, uint32_t index, const uint8_t id[VM_SF_FILE_ID_BYTES]);
    vmenc_status (*announce)(void *ctx, uint8_t cls, uint32_t index, const uint8_t id[VM_SF_FILE_ID_BYTES],
                             bool in_write);
    vmenc_status (*settled)(void *ctx, uint8_t cls, uint32_t index, const uint8_t *id, bool in_write);
    void *ctx;
    uint64_t write_budget;
} vm_sf_anchor;

/* vm_sf_open opens (flags VMENC_VM_FILE_CREATE / _TRUNCATE / _READONLY)
 * file |name| in |dirfd| of class |cls| (1..4: the AEAD classes) with
 * |index|, for VM |uuid| under |vm_key| (NULL: plain). An existing AEAD file
 * has its header checked (magic, version, class, index: VMENC_E_BAD_MAGIC /
 * VMENC_E_BAD_VERSION / VMENC_E_PARSE), and its final record authenticated
 * (VMENC_E_AUTH, VMENC_E_TRUNCATED). |sync| false skips fsyncs. */
VMENC_INTERNAL vmenc_status vm_sf_open(int dirfd, const char *name, uint8_t cls, uint32_t index,
                                       const char *uuid, const vmenc_dek *vm_key, uint32_t flags, bool sync,
                                       vm_sf **out);
/* vm_sf_open_ex is vm_sf_open naming the opener (|owner|, may be NULL) for
 * the image lock every open takes (imagelock.h: READ when read-only, else
 * WRITE) before the file is read: VMENC_E_LOCKED with |*holder| (may be
 * NULL) filled when another opener conflicts; a file that is not a regular
 * file is VMENC_E_BAD_PATH at once (a FIFO is never waited on). */
VMENC_INTERNAL vmenc_status vm_sf_open_ex(int dirfd, const char *name, uint8_t cls, uint32_t index,
                                          const char *uuid, const vmenc_dek *vm_key, uint32_t flags, bool sync,
                                          const vm_lock_owner *owner, vmenc_lock_holder *holder, vm_sf **out);
/* vm_sf_open_anchored is vm_sf_open_ex with an anchor (NULL: none).
 * Every open for write of a sealed file is a write session: the file is
 * first rewritten under a new random file ID (a temporary file renamed
 * over it, announced before and settled after through |anchor|; with
 * CREATE or TRUNCATE the new file is empty), so the ID an anchor names is
 * renewed at each session and an older copy of the file carries an older
 * ID. An existing sealed file's ID goes through |anchor->check| first.
 * During the session, once the record writes under the current ID would
 * pass the write budget, the file is rewritten under a new ID again before
 * the write. */
VMENC_INTERNAL vmenc_status vm_sf_open_anchored(int dirfd, const char *name, uint8_t cls, uint32_t index,
                                                const char *uuid, const vmenc_dek *vm_key, uint32_t flags,
                                                bool sync, const vm_lock_owner *owner, vmenc_lock_holder *holder,
                                                const vm_sf_anchor *anchor, vm_sf **out);
/* vm_sf_read_file_id reads the file ID of sealed file |name| without a key
 * (never a blocking open): VMENC_OK with |*out_sealed| false for a plain
 * file, VMENC_E_NOT_FOUND, header errors. Unauthenticated: a hint for
 * settling which of two announced IDs is on disk, nothing more. */
VMENC_INTERNAL vmenc_status vm_sf_read_file_id(int dirfd, const char *name, bool *out_sealed,
                                               uint8_t out_id[VM_SF_FILE_ID_BYTES]);
/* vm_sf_writes: record writes sealed under the file's current ID (tests). */
VMENC_INTERNAL uint64_t vm_sf_writes(vm_sf *f);
/* vm_sf_file_id copies the file's current ID (tests); false if plain. */
VMENC_INTERNAL bool vm_sf_file_id(vm_sf *f, uint8_t out[VM_SF_FILE_ID_BYTES]);
/* Same contract as vmenc_vm_file_pread/_pwrite/_get_size/_flush. Calls are
 * serialised by a mutex inside. */
VMENC_INTERNAL vmenc_status vm_sf_pread(vm_sf *f, uint64_t offset, size_t len, uint8_t *out, size_t *out_read);
VMENC_INTERNAL vmenc_status vm_sf_pwrite(vm_sf *f, uint64_t offset, const uint8_t *data, size_t len);
VMENC_INTERNAL vmenc_status vm_sf_size(vm_sf *f, uint64_t *out);
VMENC_INTERNAL vmenc_status vm_sf_flush(vm_sf *f);
/* vm_sf_close flushes unless read-only, frees, returns the flush status. */
VMENC_INTERNAL vmenc_status vm_sf_close(vm_sf *f);

/* vm_sf_convert rewrites file |name| from one form to another (plain ->
 * AEAD, AEAD -> plain, AEAD under one key -> another) by streaming into a
 * temporary file and renaming it over |name| (atomic: a crash leaves the
 * old or the new file, never a mix). |from_key|/|to_key| NULL = plain. */
VMENC_INTERNAL vmenc_status vm_sf_convert(int dirfd, const char *name, uint8_t cls, uint32_t index,
                                          const char *from_uuid, const vmenc_dek *from_key,
                                          const char *to_uuid, const vmenc_dek *to_key, bool sync);
/* vm_sf_convert_anchored is vm_sf_convert with an anchor (NULL: none): the
 * source's ID is checked, the new file's ID announced before the rename
 * and settled after (NULL when converted to plain). */
VMENC_INTERNAL vmenc_status vm_sf_convert_anchored(int dirfd, const char *name, uint8_t cls, uint32_t index,
                                                   const char *from_uuid, const vmenc_dek *from_key,
                                                   const char *to_uuid, const vmenc_dek *to_key, bool sync,
                                                   const vm_sf_anchor *anchor);

/* A streaming writer of the same AEAD format for files written once, front
 * to back (core dumps): constant memory, each record sealed once.
 * vm_sf_writer_new takes over |fd| on success (truncates it and writes the
 * header); the result opens with vm_sf_open(cls, index, uuid, key) once
 * vm_sf_writer_finish has sealed the final record (before that, the file
 * fails to open: VMENC_E_AUTH or VMENC_E_TRUNCATED). A failed write or
 * finish leaves the writer unusable (VMENC_E_BAD_STATE after).
 * vm_sf_writer_free wipes the pending chunk and closes the fd (NULL ok). */
typedef struct vm_sf_writer vm_sf_writer;
VMENC_INTERNAL vmenc_status vm_sf_writer_new(int fd, uint8_t cls, uint32_t index, const char *uuid,
                                             const vmenc_dek *key, bool sync, vm_sf_writer **out);
VMENC_INTERNAL vmenc_status vm_sf_writer_write(vm_sf_writer *w, const uint8_t *data, size_t len);
/* vm_sf_writer_finish seals the final record and fsyncs (when |sync|). */
VMENC_INTERNAL vmenc_status vm_sf_writer_finish(vm_sf_writer *w);
/* vm_sf_writer_size: plaintext bytes written so far. */
VMENC_INTERNAL uint64_t vm_sf_writer_size(const vm_sf_writer *w);
VMENC_INTERNAL void vm_sf_writer_free(vm_sf_writer *w);

#endif /* VMENC_LIB_VM_IO_STATEFILE_H */
