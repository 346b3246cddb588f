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
