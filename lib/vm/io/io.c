/*
 * lib/vm/io/io.c - the data-write path shared by the extent engine, the
 * state-file engine and the conversion state file: positioned writes of
 * every byte and fdatasync, both under the test hooks (io.h) so a fault
 * injector can tear writes or lose syncs. The hooks are NULL in the product.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <unistd.h>

#include "core/fs.h"
#include "vm/io/io.h"

/* ---- data I/O under the test hooks ---------------------------------------------- */

/* vm_io_hook lets a test put a fault injector under every data write and
 * sync (torn writes, lost fsyncs). NULL in the product. */
const vm_io_hooks *vm_io_hook;

vmenc_status vm_io_sync(int fd) {
    VMENC_GUARD(vmenc_fs_step(VMENC_FS_OP_FSYNC, NULL));
    if (vm_io_hook != NULL && vm_io_hook->sync != NULL)
        return vm_io_hook->sync(fd);
    return fdatasync(fd) == 0 ? VMENC_OK : vmenc_status_from_errno(errno);
}

vmenc_status vm_io_pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t off) {
    if (vm_io_hook != NULL && vm_io_hook->pwrite != NULL)
        return vm_io_hook->pwrite(fd, buf, len, off);
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return vmenc_status_from_errno(errno);
        if (n == 0)
            return VMENC_E_IO;
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return VMENC_OK;
}
