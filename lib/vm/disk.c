/*
 * lib/vm/disk.c - open virtual disks and VM state files: the handles a
 * hypervisor's block layer and device models do I/O through.
 *
 * A handle keeps its VM alive (a reference) and marks its disk open, so the
 * disk cannot be removed or converted under it. I/O never takes the VM
 * lock: a disk's extent is immutable after open (its XTS context never
 * changes; a shallow rekey changes only the wrapped copy of the DEK).
 *
 * Across processes, every open takes the file's image lock (io/imagelock.h,
 * docs/vm.md "Locks"): read-only handles share, a read-write handle
 * excludes other writers, a conversion (begun, or resumed by a read-write
 * open) excludes everyone. A refusal is VMENC_E_LOCKED; its holder goes to
 * the audit event's reason and to vmenc_vm_get_lock_holder.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm/vm_internal.h"

struct vmenc_vm_file {
    vmenc_vm *vm;
    vm_sf *sf;      /* AEAD or plain classes */
    vm_extent *ext; /* VSWP */
    bool readonly;
};

static vmenc_status authorize_as(vmenc_vm *vm, vm_op *op, vmenc_policy_op what) {
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = what, .vm = vm->vmx.name,
                               .flags = vm_is_encrypted(vm) ? VMENC_REQ_VM_ENCRYPTED : 0};
    return vm_op_authorize(op, &rq);
}

/* open_authorize authorizes and audits the opening of a disk or file. The
 * hypervisor's own path is a power-on. Out-of-band access is a download
 * (EXPORT_VM) and, when the handle can write, an upload (UPLOAD_FILES) as
 * well: a read-write handle reads too, so it needs both (audited as the
 * upload; the refusal's reason names the missing privilege). */
static vmenc_status open_authorize(vmenc_vm *vm, vm_op *op, bool export, bool writable,
                                   const char *export_name, const char *upload_name) {
    if (!export)
        return authorize_as(vm, op, VMENC_OP_POWER_ON);
    if (writable) {
        op->operation = upload_name;
        VMENC_GUARD(authorize_as(vm, op, VMENC_OP_UPLOAD_FILES));
        return authorize_as(vm, op, VMENC_OP_EXPORT_VM);
    }
    op->operation = export_name;
    return authorize_as(vm, op, VMENC_OP_EXPORT_VM);
}

/* note_holder keeps |h| as the VM's last lock holder and copies its
 * message to |why| (may be NULL). VM lock held. */
static void note_holder(vmenc_vm *vm, const vmenc_lock_holder *h, char *why, size_t why_cap) {
    vm->lock_holder = *h;
    vm->has_lock_holder = true;
    if (why != NULL && why_cap > 0)
        snprintf(why, why_cap, "%s", h->message);
}

static vm_lock_owner owner_of(const vmenc_vm *vm, const char *operation) {
    return (vm_lock_owner){.host_id = vm->host->host_id, .operation = operation};
}

vmenc_status vm_disk_set_lock(vmenc_disk *disk, vm_lock_mode mode, const char *operation, char *why,
                              size_t why_cap) {
    vmenc_lock_holder h = {.struct_size = sizeof(h)};
    vmenc_status s = vm_extent_set_lock(disk->ext, mode, operation, &h);
    if (s == VMENC_E_LOCKED) {
        pthread_mutex_lock(&disk->vm->lock);
        note_holder(disk->vm, &h, why, why_cap);
        pthread_mutex_unlock(&disk->vm->lock);
    }
    return s;
}

vmenc_status vm_disk_file_has_data(vmenc_vm *vm, size_t i, bool *out) {
    VMENC_ENSURE(i < vm->num_disks, VMENC_E_INTERNAL);
    const vm_disk_entry *e = &vm->disks[i];
    if (e->open)
        return vm_extent_file_has_data(vm->dirfd, e->desc.extent_file, out);
    vmenc_lock_holder h = {.struct_size = sizeof(h)};
    vmenc_status s = vm_extent_file_has_data_idle(vm->dirfd, e->desc.extent_file, &h, out);
    if (s == VMENC_E_LOCKED)
        note_holder(vm, &h, NULL, 0);
    return s;
}

vmenc_status vmenc_vm_get_lock_holder(vmenc_vm *vm, vmenc_lock_holder *out) {
    VMENC_ENSURE(vm != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= sizeof(vmenc_lock_holder), VMENC_E_ABI_VERSION);
    pthread_mutex_lock(&vm->lock);
    vmenc_status s = vm->has_lock_holder ? VMENC_OK : VMENC_E_NOT_FOUND;
    if (s == VMENC_OK) {
        uint32_t size = out->struct_size;
        *out = vm->lock_holder;
        out->struct_size = size;
    }
    pthread_mutex_unlock(&vm->lock);
    return s;
}

static vmenc_status disk_open_locked(vmenc_vm *vm, const char *disk_id, uint32_t flags, vm_op *op,
                                     vmenc_disk **out, char *why, size_t why_cap) {
    int i = vm_find_disk(vm, disk_id);
    VMENC_ENSURE(i >= 0, VMENC_E_NOT_FOUND);
    vm_disk_entry *e = &vm->disks[i];
    VMENC_ENSURE(!e->open, VMENC_E_BAD_STATE);
    if (e->desc.encrypted) {
        vm_op_add_key(op, e->desc.key_provider, e->desc.kek_id);
        VMENC_ENSURE(e->dek != NULL, VMENC_E_VM_LOCKED);
    }
    if (e->desc.new_key_safe != NULL)
        VMENC_ENSURE(e->new_dek != NULL, VMENC_E_VM_LOCKED);
    vmenc_disk *d = calloc(1, sizeof(*d));
    VMENC_ENSURE(d != NULL, VMENC_E_NOMEM);
    vmenc_xts *xts = NULL;
    vmenc_status s = VMENC_OK;
    if (e->desc.encrypted)
        VMENC_GUARD_GOTO(s, vmenc_xts_new_from_dek(e->dek, e->desc.sector_size, &xts), fail);
    bool ro = (flags & VMENC_DISK_OPEN_READONLY) != 0;
    uint32_t xflags = (ro ? VM_EXTENT_READONLY : 0) | (vm_host_sync(vm->host) ? 0 : VM_EXTENT_NO_SYNC);
    uint64_t at = vm_disk_desc_converting(&e->desc) ? 0 : e->desc.data_offset; /* see vm_extent_convert_start */
    vm_lock_owner owner = owner_of(vm, op->operation);
    vmenc_lock_holder h = {.struct_size = sizeof(h)};
    s = vm_extent_open_ex(vm->dirfd, e->desc.extent_file, e->desc.capacity, e->desc.sector_size, at, xts, xflags,
                          &owner, &h, &d->ext);
    /* a read-write open of a disk in the middle of a conversion resumes it:
     * it is that conversion's owner from here on, alone on the file */
    if (s == VMENC_OK && !ro && vm_disk_desc_converting(&e->desc) &&
        (s = vm_extent_set_lock(d->ext, VM_LOCK_CONVERT, "disk.convert_resume", &h)) != VMENC_OK) {
        (void)vm_extent_close(d->ext, false);
        xts = NULL; /* the extent took it over */
    }
    if (s == VMENC_E_LOCKED)
        note_holder(vm, &h, why, why_cap);
    if (s != VMENC_OK) {
        vmenc_xts_free(xts);
        goto fail;
    }
    d->vm = vm;
    d->index_hint = (size_t)i;
    d->readonly = ro;
    snprintf(d->disk_id, sizeof(d->disk_id), "%s", disk_id);
    if (vm_disk_desc_converting(&e->desc) && (s = vm_cvt_resume(d, (size_t)i, op)) != VMENC_OK) {
        (void)vm_extent_close(d->ext, false);
        goto fail;
    }
    e->open = true;
    e->handle = d;
    vm->open_handles++;
    vm_retain(vm);
    *out = d;
    return VMENC_OK;
fail:
    free(d);
    return s;
}

vmenc_status vmenc_disk_open(vmenc_vm *vm, const char *principal, const char *disk_id, uint32_t flags,
                             vmenc_disk **out) {
    VMENC_ENSURE(vm != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vm_op op;
    vm_op_init(&op, vm->host, principal,
               !(flags & VMENC_DISK_OPEN_EXPORT)    ? "disk.open"
               : (flags & VMENC_DISK_OPEN_READONLY) ? "disk.open_export"
                                                    : "disk.open_upload",
               vm->vmx.name);
    if (disk_id == NULL || (flags & ~(VMENC_DISK_OPEN_READONLY | VMENC_DISK_OPEN_EXPORT)) != 0)
        return vm_op_finish(&op, VMENC_E_INVALID_ARG, "bad arguments");
    snprintf(op.target, sizeof(op.target), "%s/%s", vm->vmx.name, disk_id);
    VMENC_GUARD(open_authorize(vm, &op, (flags & VMENC_DISK_OPEN_EXPORT) != 0,
                               (flags & VMENC_DISK_OPEN_READONLY) == 0, "disk.open_export", "disk.open_upload"));
    pthread_mutex_lock(&vm->lock);
    vmenc_disk *d = NULL;
    bool resumed = false;
    char why[VMENC_LOCK_MESSAGE_MAX] = "";
    /* cluster mode: a write open owns the VM first (another host: refused, named) */
    vmenc_status s = (flags & VMENC_DISK_OPEN_READONLY) ? VMENC_OK : vm_cluster_own(vm, why, sizeof(why));
    if (s == VMENC_OK) /* (a refusal noted the owning host as the VM's lock holder) */
        s = disk_open_locked(vm, disk_id, flags, &op, &d, why, sizeof(why));
    if (s == VMENC_OK && d->cvt != NULL) {
        resumed = true;
        op.operation = "disk.open_convert_resume";
    }
    pthread_mutex_unlock(&vm->lock);
    s = vm_op_finish(&op, s, resumed ? "an interrupted in-place conversion resumes" : why[0] != '\0' ? why : NULL);
    if (s == VMENC_OK && resumed)
        s = vm_cvt_finish_if_done(d);
    if (s != VMENC_OK) {
        if (d != NULL) {
            vmenc_status ignored = vmenc_disk_close(d); /* the audit failure is what counts */
            (void)ignored;
        }
        return s;
    }
    *out = d;
    return VMENC_OK;
}

vmenc_status vmenc_disk_pread(vmenc_disk *disk, uint64_t offset, size_t len, uint8_t *out) {
    VMENC_ENSURE_REF(disk);
    return vm_extent_pread(disk->ext, offset, len, out);
}

vmenc_status vmenc_disk_pwrite(vmenc_disk *disk, uint64_t offset, const uint8_t *data, size_t len) {
    VMENC_ENSURE_REF(disk);
    VMENC_ENSURE(!disk->readonly, VMENC_E_BAD_STATE);
    VMENC_GUARD(vm_cluster_write_ok(disk->vm->host)); /* a fenced host writes nothing */
    return vm_extent_pwrite(disk->ext, offset, data, len);
}

vmenc_status vmenc_disk_flush(vmenc_disk *disk) {
    VMENC_ENSURE_REF(disk);
    return vm_extent_flush(disk->ext);
}

vmenc_status vmenc_disk_get_size(const vmenc_disk *disk, uint64_t *out) {
    VMENC_ENSURE(disk != NULL && out != NULL, VMENC_E_INVALID_ARG);
    *out = vm_extent_capacity(disk->ext);
    return VMENC_OK;
}

vmenc_status vmenc_disk_get_sector_size(const vmenc_disk *disk, uint32_t *out) {
    VMENC_ENSURE(disk != NULL && out != NULL, VMENC_E_INVALID_ARG);
    *out = vm_extent_sector_size(disk->ext);
    return VMENC_OK;
}

vmenc_status vmenc_disk_is_encrypted(const vmenc_disk *disk, int *out) {
    VMENC_ENSURE(disk != NULL && out != NULL, VMENC_E_INVALID_ARG);
    *out = vm_extent_encrypted(disk->ext) ? 1 : 0;
    return VMENC_OK;
}

vmenc_status vmenc_disk_close(vmenc_disk *disk) {
    if (disk == NULL)
        return VMENC_OK;
    vmenc_status s = vm_extent_close(disk->ext, !disk->readonly);
    vm_cvt_free(disk->cvt);
    vmenc_vm *vm = disk->vm;
    pthread_mutex_lock(&vm->lock);
    int i = vm_find_disk(vm, disk->disk_id);
    if (i >= 0) {
        vm->disks[i].open = false;
        vm->disks[i].handle = NULL;
    }
    vm->open_handles--;
    pthread_mutex_unlock(&vm->lock);
    free(disk);
    vm_release(vm);
    return s;
}

/* ---- state files ----------------------------------------------------------- */

static vmenc_status file_open_locked(vmenc_vm *vm, vmenc_vm_file_class cls, uint32_t index, uint32_t flags,
                                     vmenc_vm_file *f, const vm_lock_owner *owner, vmenc_lock_holder *h) {
    VMENC_ENSURE(!vm_is_encrypted(vm) || vm->vm_key != NULL, VMENC_E_VM_LOCKED);
    VMENC_ENSURE(vm->vmx.new_key_safe == NULL || vm->new_vm_key != NULL, VMENC_E_VM_LOCKED);
    char name[VMENC_VM_NAME_MAX + 32];
    VMENC_GUARD(vm_state_file_name(vm->vmx.name, cls, index, name, sizeof(name)));
    bool sync = vm_host_sync(vm->host);
    if (cls != VMENC_VM_FILE_VSWP) {
        /* During an interrupted deep rekey of the home each file is wholly
         * under the next key (converted) or the current one (not yet): the
         * AEAD tells which; nothing unauthenticated is ever accepted. */
        /* the record names each sealed file's current ID: an older copy is
         * refused, and a write session gets a new ID (lib/vm/authority.c) */
        vm_sf_anchor anchor;
        vm_authority_sf_anchor(vm, &anchor);
        vm->error_detail[0] = '\0';
        if (vm->new_vm_key != NULL) {
            vmenc_status s = vm_sf_open_anchored(vm->dirfd, name, (uint8_t)cls, index, vm->vmx.uuid,
                                                 vm->new_vm_key,
                                                 flags & ~(uint32_t)(VMENC_VM_FILE_CREATE | VMENC_VM_FILE_TRUNCATE),
                                                 sync, owner, h, &anchor, &f->sf);
            if (s != VMENC_E_AUTH && s != VMENC_E_NOT_FOUND)
                return s; /* (a file made now is made under the current key; finishing converts it) */
        }
        return vm_sf_open_anchored(vm->dirfd, name, (uint8_t)cls, index, vm->vmx.uuid, vm->vm_key, flags, sync, owner,
                                   h, &anchor, &f->sf);
    }
    /* Swap: XTS over a fixed-size file, made on first open. */
    VMENC_ENSURE((flags & VMENC_VM_FILE_TRUNCATE) == 0, VMENC_E_INVALID_ARG);
    uint64_t size = (vm->vmx.memory_bytes + 4095) & ~(uint64_t)4095;
    uint32_t xflags = ((flags & VMENC_VM_FILE_READONLY) ? VM_EXTENT_READONLY : 0) | (sync ? 0 : VM_EXTENT_NO_SYNC);
    vmenc_xts *xts = NULL;
    if (vm->vm_key != NULL)
        VMENC_GUARD(vm_xts_for_vswp(vm->vm_key, &xts));
    vmenc_status s = vm_extent_open_ex(vm->dirfd, name, size, 4096, 0, xts, xflags, owner, h, &f->ext);
    if (s == VMENC_E_NOT_FOUND && (flags & VMENC_VM_FILE_CREATE))
        s = vm_extent_open_ex(vm->dirfd, name, size, 4096, 0, xts, xflags | VM_EXTENT_CREATE, owner, h, &f->ext);
    if (s != VMENC_OK)
        vmenc_xts_free(xts);
    return s;
}

vmenc_status vmenc_vm_file_open(vmenc_vm *vm, const char *principal, vmenc_vm_file_class cls, uint32_t index,
                                uint32_t flags, vmenc_vm_file **out) {
    VMENC_ENSURE(vm != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vm_op op;
    vm_op_init(&op, vm->host, principal,
               !(flags & VMENC_VM_FILE_EXPORT)    ? "vm.file_open"
               : (flags & VMENC_VM_FILE_READONLY) ? "vm.file_export"
                                                  : "vm.file_upload",
               vm->vmx.name);
    const uint32_t known = VMENC_VM_FILE_CREATE | VMENC_VM_FILE_TRUNCATE | VMENC_VM_FILE_READONLY |
                           VMENC_VM_FILE_EXPORT;
    char name[VMENC_VM_NAME_MAX + 32];
    vmenc_status s = vm_state_file_name(vm->vmx.name, cls, index, name, sizeof(name));
    if (s == VMENC_OK && ((flags & ~known) != 0 || ((flags & VMENC_VM_FILE_READONLY) &&
                                                     (flags & (VMENC_VM_FILE_CREATE | VMENC_VM_FILE_TRUNCATE)))))
        s = VMENC_E_INVALID_ARG;
    if (s == VMENC_OK && (cls == VMENC_VM_FILE_VMSS || cls == VMENC_VM_FILE_NVRAM) && index != 0)
        s = VMENC_E_INVALID_ARG;
    if (s != VMENC_OK)
        return vm_op_finish(&op, s, "bad file class, index or flags");
    snprintf(op.target, sizeof(op.target), "%s/%s", vm->vmx.name, name);
    if (vm_is_encrypted(vm))
        vm_op_add_key(&op, vmenc_wrapped_key_provider_alias(vm->vmx.key_safe),
                      vmenc_wrapped_key_kek_id(vm->vmx.key_safe));
    VMENC_GUARD(open_authorize(vm, &op, (flags & VMENC_VM_FILE_EXPORT) != 0,
                               (flags & VMENC_VM_FILE_READONLY) == 0, "vm.file_export", "vm.file_upload"));
    vmenc_vm_file *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return vm_op_finish(&op, VMENC_E_NOMEM, NULL);
    vm_lock_owner owner = owner_of(vm, op.operation);
    vmenc_lock_holder h = {.struct_size = sizeof(h)};
    char why[VMENC_LOCK_MESSAGE_MAX] = "";
    pthread_mutex_lock(&vm->lock);
    s = file_open_locked(vm, cls, index, flags & ~(uint32_t)VMENC_VM_FILE_EXPORT, f, &owner, &h); /* policy only */
    if (s == VMENC_E_LOCKED)
        note_holder(vm, &h, why, sizeof(why));
    if (s == VMENC_E_AUTH && vm->error_detail[0] != '\0') /* the audit names the file refused */
        snprintf(why, sizeof(why), "%s", vm->error_detail);
    if (s == VMENC_OK) {
        vm->open_handles++;
        vm_retain(vm);
        f->vm = vm;
        f->readonly = (flags & VMENC_VM_FILE_READONLY) != 0;
    }
    pthread_mutex_unlock(&vm->lock);
    if (s != VMENC_OK) {
        free(f);
        return vm_op_finish(&op, s, why[0] != '\0' ? why : NULL);
    }
    s = vm_op_finish(&op, VMENC_OK, NULL);
    if (s != VMENC_OK) {
        vmenc_status ignored = vmenc_vm_file_close(f);
        (void)ignored;
        return s;
    }
    *out = f;
    return VMENC_OK;
}

vmenc_status vmenc_vm_file_pread(vmenc_vm_file *f, uint64_t offset, size_t len, uint8_t *out, size_t *out_read) {
    VMENC_ENSURE(f != NULL && out_read != NULL, VMENC_E_INVALID_ARG);
    if (f->sf != NULL)
        return vm_sf_pread(f->sf, offset, len, out, out_read);
    uint64_t cap = vm_extent_capacity(f->ext);
    size_t n = offset >= cap ? 0 : (size_t)(cap - offset < len ? cap - offset : len);
    VMENC_GUARD(vm_extent_pread(f->ext, offset, n, out));
    *out_read = n;
    return VMENC_OK;
}

vmenc_status vmenc_vm_file_pwrite(vmenc_vm_file *f, uint64_t offset, const uint8_t *data, size_t len) {
    if (f != NULL && f->vm != NULL)
        VMENC_GUARD(vm_cluster_write_ok(f->vm->host));
    VMENC_ENSURE_REF(f);
    VMENC_ENSURE(!f->readonly, VMENC_E_BAD_STATE);
    return f->sf != NULL ? vm_sf_pwrite(f->sf, offset, data, len) : vm_extent_pwrite(f->ext, offset, data, len);
}

vmenc_status vmenc_vm_file_get_size(vmenc_vm_file *f, uint64_t *out) {
    VMENC_ENSURE(f != NULL && out != NULL, VMENC_E_INVALID_ARG);
    if (f->sf != NULL)
        return vm_sf_size(f->sf, out);
    *out = vm_extent_capacity(f->ext);
    return VMENC_OK;
}

vmenc_status vmenc_vm_file_flush(vmenc_vm_file *f) {
    VMENC_ENSURE_REF(f);
    return f->sf != NULL ? vm_sf_flush(f->sf) : vm_extent_flush(f->ext);
}

vmenc_status vmenc_vm_file_close(vmenc_vm_file *f) {
    if (f == NULL)
        return VMENC_OK;
    vmenc_status s = f->sf != NULL ? vm_sf_close(f->sf) : vm_extent_close(f->ext, !f->readonly);
    vmenc_vm *vm = f->vm;
    if (vm != NULL) {
        pthread_mutex_lock(&vm->lock);
        vm->open_handles--;
        pthread_mutex_unlock(&vm->lock);
        vm_release(vm);
    }
    free(f);
    return s;
}
