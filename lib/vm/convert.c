/*
 * lib/vm/convert.c - in-place conversion of an open disk: encrypt, decrypt,
 * deep rekey. The protocol and why each step is where it is are in
 * docs/reencryption.md; the data path is in io/extent.c, the state file's
 * slot codec in format/cvt_slot.c.
 *
 * Durable state, in the order it changes:
 *   begin:  extent grown for the new layout (fsync) -> state file with 0
 *           segments done (fsync file + directory) -> [decrypt: configuration
 *           says the disk is plain] -> descriptor with both keys and the
 *           target layout (atomic replace). The descriptor is the commit
 *           point: before it, nothing changed; after it, opening resumes.
 *   step:   segment moved (fdatasync extent) -> slot "k+1 done" (fdatasync
 *           state file) -> guests see it moved.
 *   finish: old layout's leftover removed (fsync) -> descriptor with the new
 *           key and layout only (atomic) -> state file unlinked (fsync dir)
 *           -> configuration's sealed disk list updated.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vm/vm_internal.h"

#define MIN_SEGMENT VM_CVT_SEGMENT_MIN
#define MAX_SEGMENT VM_CVT_SEGMENT_MAX
#define BEGIN_OPTIONS_V1_SIZE (offsetof(vmenc_convert_options, flags) + sizeof(uint32_t))
#define PROGRESS_V1_SIZE (offsetof(vmenc_convert_progress, done) + sizeof(int))

/* ---- the state file ------------------------------------------------------------- */

static vmenc_status write_slot(vm_cvt *c, const vm_cvt_slot *slot) {
    uint8_t img[VM_CVT_SLOT_BYTES];
    vm_cvt_slot_serialize(c->mac_key, slot, img);
    /* slot seq % 2 is the one we overwrite: the other keeps the last
     * durable state if this write tears */
    uint64_t off = (slot->seq % 2 == 1) ? 0 : VM_CVT_SLOT_STRIDE;
    vmenc_status s = vm_io_pwrite_all(c->fd, img, sizeof(img), off);
    if (s == VMENC_OK && c->sync)
        s = vm_io_sync(c->fd);
    return s;
}

/* state_name: "<extent>.<conversion ID>.cvt". The ID in the name lets a
 * rollback write its own state file before its descriptor commits it. */
static vmenc_status state_name(const char *extent, uint64_t id, char *out, size_t cap) {
    VMENC_ENSURE((size_t)snprintf(out, cap, "%s.%llu.cvt", extent, (unsigned long long)id) < cap,
                 VMENC_E_INVALID_ARG);
    return vmenc_fs_name_check(out);
}

/* create_state writes a new state file: slot 0 = |first|, slot 1 empty. */
static vmenc_status create_state(int dirfd, vm_cvt *c, const vm_cvt_slot *first) {
    int fd = openat(dirfd, c->name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return vmenc_status_from_errno(errno);
    c->fd = fd;
    vmenc_status s = VMENC_OK;
    if (ftruncate(fd, 2 * VM_CVT_SLOT_STRIDE) != 0)
        s = vmenc_status_from_errno(errno);
    if (s == VMENC_OK)
        s = write_slot(c, first);
    if (s == VMENC_OK && c->sync)
        s = vmenc_fs_fsync(fd);
    if (s == VMENC_OK && c->sync)
        s = vmenc_fs_fsync_dir(dirfd);
    if (s != VMENC_OK) {
        close(fd);
        c->fd = -1;
        (void)unlinkat(dirfd, c->name, 0);
        return s;
    }
    c->slot = *first;
    return VMENC_OK;
}

/* read_state opens the state file (|oflags|: O_RDWR for the conversion's
 * owner, O_RDONLY for an observer) and picks its last durable slot. */
static vmenc_status read_state(int dirfd, vm_cvt *c, uint64_t id, int oflags, unsigned *out_num_valid) {
    *out_num_valid = 0;
    int fd = openat(dirfd, c->name, oflags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? VMENC_E_INTERRUPTED : vmenc_status_from_errno(errno);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return VMENC_E_BAD_PATH; /* a FIFO or device planted as the state file */
    }
    uint8_t s0[VM_CVT_SLOT_BYTES], s1[VM_CVT_SLOT_BYTES];
    ssize_t n0 = pread(fd, s0, sizeof(s0), 0), n1 = pread(fd, s1, sizeof(s1), VM_CVT_SLOT_STRIDE);
    vmenc_status s = vm_cvt_slot_pick(c->mac_key, s0, n0 > 0 ? (size_t)n0 : 0, s1, n1 > 0 ? (size_t)n1 : 0, id,
                                      &c->slot, out_num_valid);
    if (s != VMENC_OK) {
        close(fd);
        return s;
    }
    c->fd = fd;
    return VMENC_OK;
}

static vmenc_status persist(void *arg, uint64_t done_segs) {
    vm_cvt *c = arg;
    vm_cvt_slot next = c->slot;
    next.seq++;
    next.done_segs = done_segs;
    VMENC_GUARD(write_slot(c, &next));
    c->slot = next;
    return VMENC_OK;
}

void vm_cvt_free(vm_cvt *c) {
    if (c == NULL)
        return;
    if (c->fd >= 0)
        close(c->fd);
    if (c->buf != NULL) {
        vmenc_memzero(c->buf, (size_t)c->slot.seg_bytes);
        free(c->buf);
    }
    vmenc_secure_free(c->mac_key);
    free(c);
}

static vmenc_status cvt_new(const char *extent, uint64_t id, uint64_t seg_bytes, bool sync, vm_cvt **out) {
    vm_cvt *c = calloc(1, sizeof(*c));
    VMENC_ENSURE(c != NULL, VMENC_E_NOMEM);
    c->fd = -1;
    c->sync = sync;
    c->slot.seg_bytes = seg_bytes;
    vmenc_status s = state_name(extent, id, c->name, sizeof(c->name));
    if (s == VMENC_OK && (c->buf = aligned_alloc(4096, (size_t)seg_bytes)) == NULL)
        s = VMENC_E_NOMEM;
    if (s != VMENC_OK) {
        vm_cvt_free(c);
        return s;
    }
    c->t0_ns = vmenc_now_monotonic_ns();
    *out = c;
    return VMENC_OK;
}

/* ---- the slot key ------------------------------------------------------------------ */

static vmenc_convert_kind kind_of(vmenc_disk_state st);

/* slot_dek: the conversion's key on the encrypted side, from which its slot
 * key is derived (docs/reencryption.md): the new DEK of an encryption, the
 * old DEK of a decryption or deep rekey. Every conversion has one, in a
 * plain VM home as in an encrypted one. */
static const vmenc_dek *slot_dek(vmenc_convert_kind kind, const vmenc_dek *old_dek, const vmenc_dek *new_dek) {
    return kind == VMENC_CONVERT_ENCRYPT ? new_dek : old_dek;
}

/* binding_of fills what the slot key is bound to from a converting
 * descriptor. */
static vmenc_status binding_of(const vm_disk_desc *d, vm_cvt_binding *b) {
    memset(b, 0, sizeof(*b));
    b->vm_uuid = d->vm_uuid;
    b->disk_id = d->disk_id;
    b->id = d->cvt_id;
    b->kind = (uint8_t)kind_of(d->state);
    b->from_offset = d->data_offset;
    b->to_offset = d->cvt_target_offset;
    b->has_old = d->key_safe != NULL;
    b->has_new = d->new_key_safe != NULL;
    if (b->has_old)
        VMENC_GUARD(vm_record_hash(d->key_safe, b->old_record));
    if (b->has_new)
        VMENC_GUARD(vm_record_hash(d->new_key_safe, b->new_record));
    return VMENC_OK;
}

/* cvt_set_key derives |c|'s slot key for converting descriptor |d| whose
 * old and new DEKs are given (VMENC_E_VM_LOCKED if the one needed is not). */
static vmenc_status cvt_set_key(vm_cvt *c, const vm_disk_desc *d, const vmenc_dek *old_dek,
                                const vmenc_dek *new_dek) {
    const vmenc_dek *k = slot_dek(kind_of(d->state), old_dek, new_dek);
    VMENC_ENSURE(k != NULL, VMENC_E_VM_LOCKED);
    vm_cvt_binding b;
    VMENC_GUARD(binding_of(d, &b));
    if (c->mac_key == NULL && (c->mac_key = vmenc_secure_alloc(VM_CVT_SLOT_KEY_BYTES)) == NULL)
        return VMENC_E_NOMEM;
    return vm_cvt_slot_key(k, &b, c->mac_key);
}

/* ---- descriptors of the phases -------------------------------------------------- */

static vmenc_disk_state converting_state(vmenc_convert_kind kind) {
    return kind == VMENC_CONVERT_ENCRYPT ? VMENC_DISK_ENCRYPTING
           : kind == VMENC_CONVERT_DECRYPT ? VMENC_DISK_DECRYPTING
                                           : VMENC_DISK_REKEYING;
}

static vmenc_convert_kind kind_of(vmenc_disk_state st) {
    return st == VMENC_DISK_ENCRYPTING ? VMENC_CONVERT_ENCRYPT
           : st == VMENC_DISK_DECRYPTING ? VMENC_CONVERT_DECRYPT
                                         : VMENC_CONVERT_REKEY;
}

/* final_desc turns a converting descriptor into its end state (the new
 * key and layout); takes the wrapped keys it keeps, frees the rest. */
static void final_desc(vm_disk_desc *d) {
    bool to_plain = d->state == VMENC_DISK_DECRYPTING;
    vmenc_wrapped_key_free(d->key_safe);
    d->key_safe = d->new_key_safe;
    d->new_key_safe = NULL;
    memcpy(d->key_provider, d->new_key_provider, sizeof(d->key_provider));
    memcpy(d->kek_id, d->new_kek_id, sizeof(d->kek_id));
    memset(d->new_key_provider, 0, sizeof(d->new_key_provider));
    memset(d->new_kek_id, 0, sizeof(d->new_kek_id));
    d->state = to_plain ? VMENC_DISK_PLAIN : VMENC_DISK_ENCRYPTED;
    d->encrypted = !to_plain;
    d->data_offset = d->cvt_target_offset;
    d->cvt_id = d->cvt_segment = d->cvt_target_offset = 0;
}

/* copy_desc deep-copies |src| (the wrapped keys included). */
static vmenc_status copy_desc(const vm_disk_desc *src, vm_disk_desc *dst) {
    *dst = *src;
    dst->key_safe = dst->new_key_safe = NULL;
    uint8_t *bin = NULL;
    size_t len = 0;
    vmenc_status s = VMENC_OK;
    if (src->key_safe != NULL && (s = vmenc_wrapped_key_serialize(src->key_safe, &bin, &len)) == VMENC_OK) {
        s = vmenc_wrapped_key_parse(bin, len, &dst->key_safe);
        vmenc_buffer_free(bin);
    }
    if (s == VMENC_OK && src->new_key_safe != NULL &&
        (s = vmenc_wrapped_key_serialize(src->new_key_safe, &bin, &len)) == VMENC_OK) {
        s = vmenc_wrapped_key_parse(bin, len, &dst->new_key_safe);
        vmenc_buffer_free(bin);
    }
    if (s != VMENC_OK)
        vm_disk_desc_cleanup(dst);
    return s;
}

static vm_disk_entry *entry_of(vmenc_disk *disk) {
    int i = vm_find_disk(disk->vm, disk->disk_id);
    return i >= 0 ? &disk->vm->disks[i] : NULL;
}

/* ---- finish ------------------------------------------------------------------------ */

static vmenc_status finish(vmenc_disk *disk, vm_op *op) {
    vmenc_vm *vm = disk->vm;
    vm_cvt *c = disk->cvt;
    VMENC_GUARD(vm_extent_convert_cleanup(disk->ext));
    pthread_mutex_lock(&vm->lock);
    vm_disk_entry *e = entry_of(disk);
    vmenc_status s = e != NULL ? VMENC_OK : VMENC_E_INTERNAL;
    vm_disk_desc d;
    memset(&d, 0, sizeof(d));
    if (s == VMENC_OK)
        s = copy_desc(&e->desc, &d);
    if (s == VMENC_OK) {
        vm_op_add_key(op, d.key_provider, d.kek_id);
        vm_op_add_key(op, d.new_key_provider, d.new_kek_id);
        final_desc(&d);
        s = vm_write_descriptor(vm, e->desc_name, &d); /* the commit point of the end */
    }
    if (s == VMENC_OK) {
        vm_disk_desc_cleanup(&e->desc);
        e->desc = d;
        vmenc_dek_free(e->dek); /* the old DEK is wiped now, not before */
        e->dek = e->new_dek;
        e->new_dek = NULL;
        (void)vmenc_fs_unlink(vm->dirfd, c->name); /* one left is debris: resume removes it */
        if (c->sync)
            (void)vmenc_fs_fsync_dir(vm->dirfd);
        vmenc_xts_free(vm_extent_convert_finish(disk->ext));
        /* the sealed list may now say "encrypted"; a failure here leaves it
         * saying "plain" for an encrypted disk, which opens */
        if (vm_is_encrypted(vm) && vm->vm_key != NULL)
            (void)vm_write_config(vm);
    } else {
        vm_disk_desc_cleanup(&d);
    }
    pthread_mutex_unlock(&vm->lock);
    if (s == VMENC_OK) {
        vm_cvt_free(c);
        disk->cvt = NULL;
        (void)vm_disk_set_lock(disk, VM_LOCK_WRITE, NULL, NULL, 0); /* finished: others may read again */
    }
    return s;
}

/* ---- begin -------------------------------------------------------------------------- */

static vmenc_policy_op policy_op_of(vmenc_convert_kind kind) {
    return kind == VMENC_CONVERT_ENCRYPT ? VMENC_OP_ENCRYPT_VM
           : kind == VMENC_CONVERT_DECRYPT ? VMENC_OP_DECRYPT_VM
                                           : VMENC_OP_REKEY_DEEP;
}

static vmenc_status check_begin(const vmenc_disk *disk, const vm_disk_entry *e, vmenc_convert_kind kind) {
    const vmenc_vm *vm = disk->vm;
    VMENC_ENSURE(!disk->readonly && disk->cvt == NULL && !vm_disk_desc_converting(&e->desc), VMENC_E_BAD_STATE);
    switch (kind) {
    case VMENC_CONVERT_ENCRYPT:
        VMENC_ENSURE(e->desc.state == VMENC_DISK_PLAIN, VMENC_E_BAD_STATE);
        /* disks are encrypted only inside an encrypted VM home */
        VMENC_ENSURE(vm_is_encrypted(vm), VMENC_E_BAD_STATE);
        VMENC_ENSURE(vm->vm_key != NULL, VMENC_E_VM_LOCKED);
        return VMENC_OK;
    case VMENC_CONVERT_DECRYPT:
    case VMENC_CONVERT_REKEY:
        VMENC_ENSURE(e->desc.state == VMENC_DISK_ENCRYPTED, VMENC_E_BAD_STATE);
        VMENC_ENSURE(e->dek != NULL, VMENC_E_VM_LOCKED);
        VMENC_ENSURE(kind == VMENC_CONVERT_DECRYPT || vm->vm_key != NULL, VMENC_E_VM_LOCKED);
        return VMENC_OK;
    }
    return VMENC_E_INVALID_ARG;
}

static uint64_t pick_segment(const vm_disk_desc *d, const vmenc_convert_options *o) {
    if (d->data_offset != 0)
        return d->data_offset; /* the data sits one shift up: keep that shift */
    return o != NULL && o->segment_bytes != 0 ? o->segment_bytes : VMENC_CONVERT_DEFAULT_SEGMENT;
}

/* begin_locked writes everything that makes the conversion exist. */
static vmenc_status begin_locked(vmenc_disk *disk, vm_disk_entry *e, vmenc_convert_kind kind,
                                 const vmenc_convert_options *o, vm_op *op) {
    vmenc_vm *vm = disk->vm;
    VMENC_GUARD(check_begin(disk, e, kind));
    uint64_t seg = pick_segment(&e->desc, o);
    VMENC_ENSURE(seg >= MIN_SEGMENT && seg <= MAX_SEGMENT && seg % MIN_SEGMENT == 0, VMENC_E_INVALID_ARG);
    vm_disk_desc d;
    VMENC_GUARD(copy_desc(&e->desc, &d));
    vmenc_dek *new_dek = NULL;
    vmenc_xts *new_xts = NULL;
    vm_cvt *c = NULL;
    vmenc_status s = VMENC_OK;
    d.state = converting_state(kind);
    d.cvt_segment = seg;
    d.cvt_target_offset = d.data_offset == 0 ? seg : 0;
    VMENC_GUARD_GOTO(s, vmenc_random_bytes((uint8_t *)&d.cvt_id, sizeof(d.cvt_id)), fail);
    d.cvt_id &= ((uint64_t)1 << 62) - 1; /* a canonical positive decimal */
    if (kind != VMENC_CONVERT_DECRYPT) {
        const char *alias = vmenc_wrapped_key_provider_alias(vm->vmx.key_safe);
        const char *kek = vmenc_wrapped_key_kek_id(vm->vmx.key_safe);
        VMENC_GUARD_GOTO(s, vmenc_dek_generate(&new_dek), fail);
        VMENC_GUARD_GOTO(s, vm_new_wrapped(vm->host, alias, kek, new_dek, vm->vmx.uuid, e->disk_id, &d.new_key_safe),
                         fail);
        snprintf(d.new_key_provider, sizeof(d.new_key_provider), "%s", alias);
        snprintf(d.new_kek_id, sizeof(d.new_kek_id), "%s", kek);
        VMENC_GUARD_GOTO(s, vmenc_xts_new_from_dek(new_dek, d.sector_size, &new_xts), fail);
    }
    vm_op_add_key(op, d.key_provider, d.kek_id);
    vm_op_add_key(op, d.new_key_provider, d.new_kek_id);
    /* room for the layout one shift up (sparse: no space used yet) */
    VMENC_GUARD_GOTO(s, vm_extent_reserve(disk->ext, seg + d.capacity, vm_host_sync(vm->host)), fail);
    VMENC_GUARD_GOTO(s, cvt_new(d.extent_file, d.cvt_id, seg, vm_host_sync(vm->host), &c), fail);
    c->kind = kind;
    VMENC_GUARD_GOTO(s, cvt_set_key(c, &d, e->dek, new_dek), fail);
    vm_cvt_slot first = {.id = d.cvt_id, .seq = 1, .done_segs = 0,
                         .num_segs = (d.capacity + seg - 1) / seg, .seg_bytes = seg};
    VMENC_GUARD_GOTO(s, create_state(vm->dirfd, c, &first), fail);
    vm_disk_desc old = e->desc;
    e->desc = d; /* the sealed list follows the table */
    /* The sealed list first: "plain" before the descriptor says decrypting,
     * and the next key record before a descriptor names it (an encryption,
     * a deep rekey), so a descriptor naming any other record is refused. */
    s = vm_write_config(vm);
    if (s != VMENC_OK) {
        e->desc = old;
        goto fail_state;
    }
    s = vm_write_descriptor(vm, e->desc_name, &d);
    if (s != VMENC_OK) {
        e->desc = old;
        /* the descriptor may be in place all the same (a failure after its
         * rename): keep the state file it names (if it is not named, it is
         * debris that vmenc_vm_resume removes) and the sealed list as
         * written (it allows either descriptor) */
        goto fail;
    }
    vm_disk_desc_cleanup(&old);
    s = vm_extent_convert_start(disk->ext, d.data_offset, d.cvt_target_offset, new_xts, seg, 0);
    if (s != VMENC_OK) {
        /* durable and resumable: a reopen picks it up */
        vmenc_xts_free(new_xts);
        e->new_dek = new_dek;
        vm_cvt_free(c);
        return s;
    }
    e->new_dek = new_dek;
    snprintf(c->principal, sizeof(c->principal), "%s", op->principal);
    c->may_step = true; /* authorized by the caller of begin */
    disk->cvt = c;
    return VMENC_OK;
fail_state:
    (void)unlinkat(vm->dirfd, c->name, 0);
fail:
    vm_cvt_free(c);
    vmenc_xts_free(new_xts);
    vmenc_dek_free(new_dek);
    vm_disk_desc_cleanup(&d);
    return s;
}

vmenc_status vmenc_disk_convert_begin(vmenc_disk *disk, const char *principal, vmenc_convert_kind kind,
                                      const vmenc_convert_options *opts) {
    VMENC_ENSURE_REF(disk);
    vmenc_vm *vm = disk->vm;
    vm_op op;
    vm_op_init(&op, vm->host, principal, "disk.convert_begin", NULL);
    snprintf(op.target, sizeof(op.target), "%s/%s", vm->vmx.name, disk->disk_id);
    if ((kind != VMENC_CONVERT_ENCRYPT && kind != VMENC_CONVERT_DECRYPT && kind != VMENC_CONVERT_REKEY) ||
        (opts != NULL && (opts->struct_size < BEGIN_OPTIONS_V1_SIZE || opts->flags != 0)))
        return vm_op_finish(&op, opts != NULL && opts->struct_size < BEGIN_OPTIONS_V1_SIZE ? VMENC_E_ABI_VERSION
                                                                                         : VMENC_E_INVALID_ARG,
                            "bad conversion kind or options");
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = policy_op_of(kind), .vm = vm->vmx.name,
                               .flags = vm_is_encrypted(vm) ? VMENC_REQ_VM_ENCRYPTED : 0};
    VMENC_GUARD(vm_op_authorize(&op, &rq));
    char why[VMENC_LOCK_MESSAGE_MAX] = ""; /* alone on the extent before anything is written */
    vmenc_status s = vm_disk_set_lock(disk, VM_LOCK_CONVERT, "disk.convert", why, sizeof(why));
    pthread_mutex_lock(&vm->lock);
    vm_disk_entry *e = entry_of(disk);
    if (s == VMENC_OK)
        s = e != NULL ? begin_locked(disk, e, kind, opts, &op) : VMENC_E_INTERNAL;
    bool begun = e != NULL && vm_disk_desc_converting(&e->desc);
    pthread_mutex_unlock(&vm->lock);
    if (!begun)
        (void)vm_disk_set_lock(disk, VM_LOCK_WRITE, NULL, NULL, 0); /* nothing began: others may read again */
    return vm_op_finish(&op, s, why[0] != '\0' ? why : NULL);
}

/* ---- step and progress ---------------------------------------------------------------- */

static void fill_progress(vmenc_disk *disk, vmenc_convert_progress *out) {
    vmenc_convert_progress p;
    memset(&p, 0, sizeof(p));
    p.struct_size = out->struct_size;
    uint64_t cap = vm_extent_capacity(disk->ext);
    p.bytes_total = cap;
    if (disk->cvt == NULL) {
        pthread_mutex_lock(&disk->vm->lock);
        vm_disk_entry *e = entry_of(disk);
        p.state = e != NULL ? e->desc.state : VMENC_DISK_PLAIN;
        pthread_mutex_unlock(&disk->vm->lock);
        p.bytes_done = cap;
        p.done = 1;
    } else {
        const vm_cvt *c = disk->cvt;
        p.state = converting_state(c->kind);
        vm_extent_convert_position(disk->ext, &p.segments_done, &p.segments_total);
        uint64_t done = p.segments_done * c->slot.seg_bytes;
        p.bytes_done = done < cap ? done : cap;
        uint64_t dt = vmenc_now_monotonic_ns() - c->t0_ns;
        uint64_t moved = (p.segments_done - c->done_at_t0) * c->slot.seg_bytes;
        p.bytes_per_second = dt > 0 ? (uint64_t)((double)moved * 1e9 / (double)dt) : 0;
    }
    memcpy(out, &p, PROGRESS_V1_SIZE);
}

vmenc_status vmenc_disk_convert_get_progress(vmenc_disk *disk, vmenc_convert_progress *out) {
    VMENC_ENSURE(disk != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= PROGRESS_V1_SIZE, VMENC_E_ABI_VERSION);
    fill_progress(disk, out);
    return VMENC_OK;
}

/* observe_locked reads where the conversion of entry |e| stands as of its
 * last durable slot, as an observer: no extent opened, no lock bytes, the
 * state file opened read-only and its slot believed only if its MAC
 * verifies. The process converting holds CONVERT on the extent; nothing
 * here takes or waits for it. VM lock held. */
static vmenc_status observe_locked(vmenc_vm *vm, const vm_disk_entry *e, vmenc_convert_progress *p) {
    const vm_disk_desc *d = &e->desc;
    vm_cvt *c = calloc(1, sizeof(*c)); /* no segment buffer: nothing moves */
    VMENC_ENSURE(c != NULL, VMENC_E_NOMEM);
    c->fd = -1;
    unsigned num_valid = 0;
    vmenc_status s = state_name(d->extent_file, d->cvt_id, c->name, sizeof(c->name));
    if (s == VMENC_OK)
        s = cvt_set_key(c, d, e->dek, e->new_dek);
    if (s == VMENC_OK)
        s = read_state(vm->dirfd, c, d->cvt_id, O_RDONLY, &num_valid);
    if (s == VMENC_OK && (d->cvt_segment == 0 || c->slot.seg_bytes != d->cvt_segment ||
                          c->slot.num_segs != (d->capacity + d->cvt_segment - 1) / d->cvt_segment))
        s = VMENC_E_AUTH; /* authentic, yet not this descriptor's geometry */
    if (s == VMENC_OK) {
        p->state = d->state;
        p->segments_done = c->slot.done_segs;
        p->segments_total = c->slot.num_segs;
        uint64_t done = c->slot.done_segs * c->slot.seg_bytes;
        p->bytes_done = done < d->capacity ? done : d->capacity;
        p->bytes_per_second = 0; /* another process moves it: no rate seen here */
        p->done = 0;
    }
    vm_cvt_free(c);
    return s;
}

vmenc_status vmenc_vm_get_convert_progress(vmenc_vm *vm, const char *disk_id, vmenc_convert_progress *out) {
    VMENC_ENSURE(vm != NULL && disk_id != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= PROGRESS_V1_SIZE, VMENC_E_ABI_VERSION);
    vmenc_convert_progress p;
    memset(&p, 0, sizeof(p));
    p.struct_size = out->struct_size;
    pthread_mutex_lock(&vm->lock);
    int i = vm_find_disk(vm, disk_id);
    vmenc_status s = i >= 0 ? VMENC_OK : VMENC_E_NOT_FOUND;
    if (s == VMENC_OK) {
        const vm_disk_entry *e = &vm->disks[i];
        p.bytes_total = e->desc.capacity;
        if (vm_disk_desc_converting(&e->desc)) {
            s = observe_locked(vm, e, &p);
        } else {
            p.state = e->desc.state;
            p.bytes_done = e->desc.capacity;
            p.done = 1;
        }
    }
    pthread_mutex_unlock(&vm->lock);
    if (s == VMENC_OK)
        memcpy(out, &p, PROGRESS_V1_SIZE);
    return s;
}

vmenc_status vmenc_disk_convert_step(vmenc_disk *disk, uint64_t max_bytes, vmenc_convert_progress *out) {
    VMENC_ENSURE_REF(disk);
    VMENC_ENSURE(out == NULL || out->struct_size >= PROGRESS_V1_SIZE, VMENC_E_ABI_VERSION);
    VMENC_ENSURE(disk->cvt != NULL && !disk->readonly, VMENC_E_BAD_STATE);
    if (!disk->cvt->may_step) {
        vm_op op;
        vm_op_init(&op, disk->vm->host, disk->cvt->principal, "disk.convert_step", NULL);
        snprintf(op.target, sizeof(op.target), "%s/%s", disk->vm->vmx.name, disk->disk_id);
        vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = policy_op_of(disk->cvt->kind),
                                   .vm = disk->vm->vmx.name,
                                   .flags = vm_is_encrypted(disk->vm) ? VMENC_REQ_VM_ENCRYPTED : 0};
        /* asked again, with the event: a denial is recorded, and a
         * privilege granted since the open is honoured */
        VMENC_GUARD(vm_op_authorize(&op, &rq));
        disk->cvt->may_step = true;
    }
    vmenc_status s = VMENC_OK;
    for (uint64_t moved = 0; s == VMENC_OK && !vm_extent_convert_done(disk->ext) && (moved == 0 || moved < max_bytes);) {
        uint64_t n = 0;
        s = vm_extent_convert_segment(disk->ext, disk->cvt->buf, persist, disk->cvt, &n);
        moved += n;
    }
    vm_op op;
    char who[VMENC_POLICY_NAME_MAX + 1]; /* the conversion (and its copy of the name) ends in finish */
    snprintf(who, sizeof(who), "%s", disk->cvt->principal);
    vm_op_init(&op, disk->vm->host, who, "disk.convert_end", NULL);
    snprintf(op.target, sizeof(op.target), "%s/%s", disk->vm->vmx.name, disk->disk_id);
    if (s != VMENC_OK) {
        /* stopped, resumable: say so once, with the reason */
        op.operation = "disk.convert_step";
        return vm_op_finish(&op, s, "conversion stopped; it resumes from the last durable segment");
    }
    if (vm_extent_convert_done(disk->ext)) {
        s = finish(disk, &op);
        s = vm_op_finish(&op, s, NULL);
        if (s == VMENC_OK) /* a rollback's last disk back: the VM goes back too */
            s = vm_rollback_settle(disk->vm, who);
    }
    if (out != NULL)
        fill_progress(disk, out);
    return s;
}

/* ---- rollback ---------------------------------------------------------------------------- */

/* reversed_desc is the descriptor of the same conversion run backwards:
 * layouts, keys and direction swapped. */
static void reversed_desc(vm_disk_desc *d, uint64_t new_id) {
    vmenc_wrapped_key *k = d->key_safe;
    d->key_safe = d->new_key_safe;
    d->new_key_safe = k;
    char provider[sizeof(d->key_provider)], kek[sizeof(d->kek_id)];
    memcpy(provider, d->key_provider, sizeof(provider));
    memcpy(kek, d->kek_id, sizeof(kek));
    memcpy(d->key_provider, d->new_key_provider, sizeof(provider));
    memcpy(d->kek_id, d->new_kek_id, sizeof(kek));
    memcpy(d->new_key_provider, provider, sizeof(provider));
    memcpy(d->new_kek_id, kek, sizeof(kek));
    if (d->state == VMENC_DISK_ENCRYPTING)
        d->state = VMENC_DISK_DECRYPTING;
    else if (d->state == VMENC_DISK_DECRYPTING)
        d->state = VMENC_DISK_ENCRYPTING;
    d->encrypted = d->key_safe != NULL;
    uint64_t off = d->data_offset;
    d->data_offset = d->cvt_target_offset;
    d->cvt_target_offset = off;
    d->cvt_id = new_id;
}

static vmenc_status rollback_locked(vmenc_disk *disk, vm_disk_entry *e, vm_op *op) {
    vmenc_vm *vm = disk->vm;
    vm_cvt *old = disk->cvt;
    uint64_t done = 0, total = 0;
    vm_extent_convert_position(disk->ext, &done, &total);
    VMENC_ENSURE(done < total, VMENC_E_BAD_STATE); /* finished: nothing to roll back */
    bool turned = false; /* a retried rollback goes on the way the first turned */
    VMENC_GUARD(vm_rollback_begin(vm, e, &turned));
    if (turned)
        return VMENC_OK;
    vm_disk_desc d;
    VMENC_GUARD(copy_desc(&e->desc, &d));
    vm_op_add_key(op, d.key_provider, d.kek_id);
    vm_op_add_key(op, d.new_key_provider, d.new_kek_id);
    uint64_t id = 0;
    vmenc_status s = vmenc_random_bytes((uint8_t *)&id, sizeof(id));
    id &= ((uint64_t)1 << 62) - 1;
    reversed_desc(&d, id);
    vm_cvt *c = NULL;
    if (s == VMENC_OK)
        s = cvt_new(d.extent_file, id, d.cvt_segment, old->sync, &c);
    if (s != VMENC_OK) {
        vm_disk_desc_cleanup(&d);
        return s;
    }
    c->kind = kind_of(d.state);
    /* the keys turn round: the reverse run's old DEK is the forward's new */
    s = cvt_set_key(c, &d, e->new_dek, e->dek);
    /* the reverse run's own state file first, then (a run that now ends
     * encrypted) the sealed next key record, then the descriptor (the
     * commit point); a crash between leaves the forward run intact */
    vm_cvt_slot first = {.id = id, .seq = 1, .done_segs = total - done, .num_segs = total,
                         .seg_bytes = d.cvt_segment};
    if (s == VMENC_OK)
        s = create_state(vm->dirfd, c, &first);
    if (s == VMENC_OK && d.new_key_safe != NULL) {
        /* intent first for the disk too: the record allows the reversed
         * descriptor before the configuration's write folds the disk list
         * in memory (the reversed one) into the record's facts - else a
         * crash between that write and the descriptor's leaves a record
         * that allows neither the forward descriptor still on disk nor
         * its key (the VM refused with VMENC_E_AUTH: wedged) */
        s = vm_authority_before_descriptor(vm, &d);
        vm_disk_desc fwd = e->desc;
        e->desc = d;
        if (s == VMENC_OK)
            s = vm_write_config(vm);
        e->desc = fwd;
        if (s != VMENC_OK)
            (void)unlinkat(vm->dirfd, c->name, 0);
    }
    if (s == VMENC_OK) {
        s = vm_write_descriptor(vm, e->desc_name, &d);
        /* on failure the state file stays: the descriptor may have been
         * renamed into place before the failure (vmenc_vm_resume removes
         * it if not) */
    }
    if (s != VMENC_OK) {
        vm_cvt_free(c);
        vm_disk_desc_cleanup(&d);
        return s;
    }
    (void)vmenc_fs_unlink(vm->dirfd, old->name);
    vm_disk_desc_cleanup(&e->desc);
    e->desc = d;
    vmenc_dek *k = e->dek;
    e->dek = e->new_dek;
    e->new_dek = k;
    vm_extent_convert_reverse(disk->ext);
    c->done_at_t0 = first.done_segs;
    snprintf(c->principal, sizeof(c->principal), "%s", op->principal);
    c->may_step = true; /* authorized for the reverse kind by the rollback */
    vm_cvt_free(old);
    disk->cvt = c;
    return VMENC_OK;
}

vmenc_status vmenc_disk_convert_rollback(vmenc_disk *disk, const char *principal) {
    VMENC_ENSURE_REF(disk);
    vmenc_vm *vm = disk->vm;
    vm_op op;
    vm_op_init(&op, vm->host, principal, "disk.convert_rollback", NULL);
    snprintf(op.target, sizeof(op.target), "%s/%s", vm->vmx.name, disk->disk_id);
    if (disk->cvt == NULL || disk->readonly)
        return vm_op_finish(&op, VMENC_E_BAD_STATE, "no conversion to roll back");
    /* rolling back is converting the other way: that kind's privilege */
    vmenc_convert_kind back = disk->cvt->kind == VMENC_CONVERT_ENCRYPT   ? VMENC_CONVERT_DECRYPT
                              : disk->cvt->kind == VMENC_CONVERT_DECRYPT ? VMENC_CONVERT_ENCRYPT
                                                                         : VMENC_CONVERT_REKEY;
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = policy_op_of(back), .vm = vm->vmx.name,
                               .flags = vm_is_encrypted(vm) ? VMENC_REQ_VM_ENCRYPTED : 0};
    VMENC_GUARD(vm_op_authorize(&op, &rq));
    pthread_mutex_lock(&vm->lock);
    vm_disk_entry *e = entry_of(disk);
    vmenc_status s = e != NULL ? rollback_locked(disk, e, &op) : VMENC_E_INTERNAL;
    pthread_mutex_unlock(&vm->lock);
    return vm_op_finish(&op, s, NULL);
}

/* state_problem audits, naming the file, why a conversion's state file
 * was not believed (the caller's own event carries only the status). */
static void state_problem(vmenc_vm *vm, const char *principal, const char *disk_id, const char *file,
                          vmenc_status s) {
    char reason[512];
    const char *why = s == VMENC_E_INTERRUPTED   ? "is missing or empty"
                      : s == VMENC_E_AUTH        ? "fails its MAC (damaged, forged, or another conversion's)"
                      : s == VMENC_E_BAD_VERSION ? "is version 1 (unauthenticated), not believed"
                                                 : "cannot be read";
    snprintf(reason, sizeof(reason), "conversion state file %.300s %s; run 'vmenc disk convert-recover'", file, why);
    /* the same sentence for the caller (vmenc_vm_get_error_detail); the
     * caller of vm_cvt_resume holds vm->lock */
    snprintf(vm->error_detail, sizeof(vm->error_detail), "disk %.64s: %.511s", disk_id, reason);
    vm_op op;
    vm_op_init(&op, vm->host, principal, "disk.convert_state", NULL);
    snprintf(op.target, sizeof(op.target), "%s/%s", vm->vmx.name, disk_id);
    (void)vm_op_finish(&op, s, reason);
}

vmenc_status vmenc_vm_get_error_detail(vmenc_vm *vm, char *out, size_t out_cap) {
    VMENC_ENSURE(vm != NULL && out != NULL && out_cap > 0, VMENC_E_INVALID_ARG);
    pthread_mutex_lock(&vm->lock);
    size_t n = strlen(vm->error_detail);
    vmenc_status s = n == 0 ? VMENC_E_NOT_FOUND : n < out_cap ? VMENC_OK : VMENC_E_BUFFER_TOO_SMALL;
    if (s == VMENC_OK)
        memcpy(out, vm->error_detail, n + 1);
    pthread_mutex_unlock(&vm->lock);
    return s;
}

/* ---- resume on open ------------------------------------------------------------------- */

vmenc_status vm_cvt_resume(vmenc_disk *disk, size_t i, vm_op *op) {
    vmenc_vm *vm = disk->vm;
    vm_disk_entry *e = &vm->disks[i];
    const vm_disk_desc *d = &e->desc;
    vm_cvt *c = NULL;
    VMENC_GUARD(cvt_new(d->extent_file, d->cvt_id, d->cvt_segment, vm_host_sync(vm->host), &c));
    c->kind = kind_of(d->state);
    unsigned num_valid = 0;
    vmenc_status s = cvt_set_key(c, d, e->dek, e->new_dek);
    if (s == VMENC_OK)
        s = read_state(vm->dirfd, c, d->cvt_id, O_RDWR, &num_valid);
    if (s == VMENC_OK && (c->slot.seg_bytes != d->cvt_segment ||
                          c->slot.num_segs != (d->capacity + d->cvt_segment - 1) / d->cvt_segment))
        s = VMENC_E_AUTH; /* authentic, yet not this descriptor's geometry */
    if (s != VMENC_OK && s != VMENC_E_VM_LOCKED && s != VMENC_E_NOMEM)
        state_problem(vm, op->principal, disk->disk_id, c->name, s);
    vmenc_xts *new_xts = NULL;
    if (s == VMENC_OK && e->new_dek != NULL)
        s = vmenc_xts_new_from_dek(e->new_dek, d->sector_size, &new_xts);
    if (s == VMENC_OK)
        s = vm_extent_convert_start(disk->ext, d->data_offset, d->cvt_target_offset, new_xts, d->cvt_segment,
                                    c->slot.done_segs);
    if (s != VMENC_OK) {
        vmenc_xts_free(new_xts);
        vm_cvt_free(c);
        return s;
    }
    c->done_at_t0 = c->slot.done_segs;
    snprintf(c->principal, sizeof(c->principal), "%s", op->principal);
    /* Opening the disk routes I/O through the two layouts (anyone who may
     * run the VM needs that); moving more segments is the conversion
     * itself, so it needs its own privilege. Asked here without an event:
     * a step without it is refused and audited as denied. */
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = policy_op_of(c->kind), .vm = vm->vmx.name,
                               .host = vm->host->host_id,
                               .flags = vm_is_encrypted(vm) ? VMENC_REQ_VM_ENCRYPTED : 0};
    vmenc_policy_decision dd = {.struct_size = sizeof(dd)};
    c->may_step = op->principal != NULL && vmenc_policy_check(vm->host->policy, op->principal, &rq, &dd) == VMENC_OK;
    disk->cvt = c;
    vm_op_add_key(op, d->key_provider, d->kek_id);
    vm_op_add_key(op, d->new_key_provider, d->new_kek_id);
    return VMENC_OK;
}

/* vm_cvt_finish_if_done finishes a resumed conversion whose every segment
 * had moved (a crash during the finish). Called without the VM lock. */
vmenc_status vm_cvt_finish_if_done(vmenc_disk *disk) {
    if (disk->cvt == NULL || disk->readonly || !vm_extent_convert_done(disk->ext))
        return VMENC_OK;
    vm_op op;
    char who[VMENC_POLICY_NAME_MAX + 1]; /* the conversion (and its copy of the name) ends in finish */
    snprintf(who, sizeof(who), "%s", disk->cvt->principal);
    vm_op_init(&op, disk->vm->host, who, "disk.convert_end", NULL);
    snprintf(op.target, sizeof(op.target), "%s/%s", disk->vm->vmx.name, disk->disk_id);
    return vm_op_finish(&op, finish(disk, &op), NULL);
}

/* ---- recovery of a lost state file ------------------------------------------------------ */

#define RECOVERY_V1_SIZE (offsetof(vmenc_convert_recovery, unknown_bytes) + sizeof(uint64_t))
#define SCAN_CHUNK ((size_t)1 << 20)

/* What one segment's two copies say, sector by sector: the copies hold the
 * same data in a sector that is not zero ("anchor": only the last segment
 * moved, or the one in flight, can, since every other segment's old place
 * already holds its neighbour's new copy, and the reverse), or differ
 * somewhere. |agree| (if not NULL, one byte per sector) marks the sectors
 * whose two views are equal. */
typedef struct seg_view {
    bool anchor, differs;
    size_t num_sectors;
} seg_view;

typedef struct scan {
    vm_extent *old_l, *new_l;
    uint8_t *a, *b;
    uint64_t capacity, seg;
    uint32_t sector_size;
} scan;

static vmenc_status view_segment(scan *sc, uint64_t index, seg_view *out, uint8_t *agree) {
    out->anchor = out->differs = false;
    uint64_t start = index * sc->seg, end = start + sc->seg < sc->capacity ? start + sc->seg : sc->capacity;
    out->num_sectors = (size_t)((end - start) / sc->sector_size);
    size_t sector = 0;
    for (uint64_t off = start; off < end;) {
        size_t n = end - off < SCAN_CHUNK ? (size_t)(end - off) : SCAN_CHUNK;
        VMENC_GUARD(vm_extent_pread(sc->old_l, off, n, sc->a));
        VMENC_GUARD(vm_extent_pread(sc->new_l, off, n, sc->b));
        for (size_t i = 0; i < n; i += sc->sector_size, sector++) {
            bool same = memcmp(sc->a + i, sc->b + i, sc->sector_size) == 0;
            if (agree != NULL)
                agree[sector] = same;
            if (!same) {
                out->differs = true;
                continue;
            }
            for (size_t j = 0; j < sc->sector_size && !out->anchor; j++)
                out->anchor = sc->a[i + j] != 0;
        }
        off += n;
    }
    return VMENC_OK;
}
static vmenc_status scan_open(vmenc_vm *vm, const vm_disk_entry *e, scan *sc) {
    const vm_disk_desc *d = &e->desc;
    memset(sc, 0, sizeof(*sc));
    sc->capacity = d->capacity;
    sc->seg = d->cvt_segment;
    sc->sector_size = d->sector_size;
    vmenc_xts *ox = NULL, *nx = NULL;
    vmenc_status s = VMENC_OK;
    if (e->dek != NULL)
        s = vmenc_xts_new_from_dek(e->dek, d->sector_size, &ox);
    if (s == VMENC_OK && e->new_dek != NULL)
        s = vmenc_xts_new_from_dek(e->new_dek, d->sector_size, &nx);
    if (s == VMENC_OK && (s = vm_extent_open(vm->dirfd, d->extent_file, d->capacity, d->sector_size,
                                             d->data_offset, ox, VM_EXTENT_READONLY, &sc->old_l)) == VMENC_OK)
        ox = NULL;
    if (s == VMENC_OK && (s = vm_extent_open(vm->dirfd, d->extent_file, d->capacity, d->sector_size,
                                             d->cvt_target_offset, nx, VM_EXTENT_READONLY, &sc->new_l)) == VMENC_OK)
        nx = NULL;
    vmenc_xts_free(ox);
    vmenc_xts_free(nx);
    if (s == VMENC_OK && ((sc->a = malloc(SCAN_CHUNK)) == NULL || (sc->b = malloc(SCAN_CHUNK)) == NULL))
        s = VMENC_E_NOMEM;
    return s;
}

static void scan_close(scan *sc) {
    if (sc->old_l != NULL)
        (void)vm_extent_close(sc->old_l, false);
    if (sc->new_l != NULL)
        (void)vm_extent_close(sc->new_l, false);
    if (sc->a != NULL) {
        vmenc_memzero(sc->a, SCAN_CHUNK); /* guest data */
        free(sc->a);
    }
    if (sc->b != NULL) {
        vmenc_memzero(sc->b, SCAN_CHUNK);
        free(sc->b);
    }
}

/* complementary: with position |q| moved and |q|+1 in flight, each sector
 * of q's old place is still q's (q's views agree) or already q+1's new copy
 * (q+1's views agree there): every sector agrees in one of the two. */
static bool complementary(const uint8_t *aq, size_t nq, const uint8_t *aq1, size_t nq1) {
    size_t n = nq > nq1 ? nq : nq1;
    for (size_t s = 0; s < n; s++)
        if (!((s < nq && aq[s]) || (s < nq1 && aq1[s])))
            return false;
    return true;
}

/* infer_done works out how many segments had moved from the data alone.
 * Segments are taken in the order they move (positions): down = disk
 * order, up = reverse. Exactly one anchor p whose copies agree everywhere:
 * p was the last moved and p+1 had not begun, progress p+1. Exactly two
 * anchors q, q+1, both partial and complementary: q+1 was in flight over
 * q's old place, progress q+1 (q read from its complete new copy, q+1 from
 * its intact old one). Anything else leaves the positions |*out_lo..*out_hi|
 * in doubt: VMENC_E_INTERRUPTED. */
static vmenc_status infer_done(scan *sc, bool down, uint64_t num, uint64_t *out_done, uint64_t *out_lo,
                               uint64_t *out_hi) {
    size_t per_seg = (size_t)(sc->seg / sc->sector_size);
    uint8_t *maps[3] = {calloc(per_seg, 1), calloc(per_seg, 1), calloc(per_seg, 1)};
    vmenc_status s = maps[0] != NULL && maps[1] != NULL && maps[2] != NULL ? VMENC_OK : VMENC_E_NOMEM;
    uint64_t anchors = 0, at[2] = {0, 0}, first_diff = UINT64_MAX, last_diff = 0;
    seg_view kept[2];
    for (uint64_t p = 0; s == VMENC_OK && p < num; p++) {
        seg_view v;
        uint8_t *map = anchors < 2 ? maps[anchors] : maps[2];
        s = view_segment(sc, down ? p : num - 1 - p, &v, map);
        if (s != VMENC_OK)
            break;
        if (v.anchor) {
            if (anchors < 2) {
                at[anchors] = p;
                kept[anchors] = v;
            }
            anchors++;
        }
        if (v.differs) {
            first_diff = first_diff == UINT64_MAX ? p : first_diff;
            last_diff = p;
        }
    }
    if (s == VMENC_OK) {
        if (first_diff == UINT64_MAX) { /* both layouts read the same everywhere */
            *out_done = 0;
        } else if (anchors == 1 && !kept[0].differs) {
            *out_done = at[0] + 1;
        } else if (anchors == 2 && at[1] == at[0] + 1 && kept[0].differs && kept[1].differs &&
                   complementary(maps[0], kept[0].num_sectors, maps[1], kept[1].num_sectors)) {
            *out_done = at[1];
        } else {
            s = VMENC_E_INTERRUPTED;
            if (anchors == 1 || (anchors == 2 && at[1] == at[0] + 1)) { /* the moved and the in-flight one */
                *out_lo = at[0];
                *out_hi = anchors == 2 ? at[1] : at[0];
            } else {
                *out_lo = first_diff;
                *out_hi = last_diff;
            }
        }
    }
    for (size_t i = 0; i < 3; i++)
        free(maps[i]);
    return s;
}

static void report_unknown(const vm_disk_desc *d, bool down, uint64_t num, uint64_t lo, uint64_t hi,
                           vmenc_convert_recovery *r) {
    uint64_t first = down ? lo : num - 1 - hi, last = down ? hi : num - 1 - lo;
    r->unknown_first = first;
    r->unknown_count = last - first + 1;
    r->unknown_offset = first * d->cvt_segment;
    uint64_t end = (last + 1) * d->cvt_segment;
    r->unknown_bytes = (end < d->capacity ? end : d->capacity) - r->unknown_offset;
}

static vmenc_status recover_locked(vmenc_vm *vm, vm_disk_entry *e, vmenc_convert_recovery *r) {
    const vm_disk_desc *d = &e->desc;
    VMENC_ENSURE(!e->open, VMENC_E_BAD_STATE);
    uint64_t num = (d->capacity + d->cvt_segment - 1) / d->cvt_segment;
    r->segments_total = num;
    if (vm_is_encrypted(vm)) { /* the descriptor alone does not say which key comes next */
        VMENC_ENSURE(vm->secret != NULL, VMENC_E_VM_LOCKED);
        VMENC_GUARD(vm_sealed_disk_next_is(vm->secret, e->disk_id, d));
    }
    vm_cvt *c = NULL;
    VMENC_GUARD(cvt_new(d->extent_file, d->cvt_id, d->cvt_segment, vm_host_sync(vm->host), &c));
    size_t name_len = strlen(c->name);
    if (name_len >= sizeof(r->state_file))
        name_len = sizeof(r->state_file) - 1;
    memcpy(r->state_file, c->name, name_len);
    r->state_file[name_len] = '\0';
    unsigned num_valid = 0;
    vmenc_status s = cvt_set_key(c, d, e->dek, e->new_dek);
    if (s == VMENC_OK && (e->dek == NULL) != (d->key_safe == NULL))
        s = VMENC_E_VM_LOCKED;
    if (s == VMENC_OK && (e->new_dek == NULL) != (d->new_key_safe == NULL))
        s = VMENC_E_VM_LOCKED;
    vmenc_status rs = s == VMENC_OK ? read_state(vm->dirfd, c, d->cvt_id, O_RDWR, &num_valid) : s;
    if (s == VMENC_OK && rs == VMENC_OK) { /* readable: nothing to do */
        r->segments_done = c->slot.done_segs;
        vm_cvt_free(c);
        return VMENC_OK;
    }
    if (s == VMENC_OK && rs != VMENC_E_INTERRUPTED && rs != VMENC_E_AUTH && rs != VMENC_E_BAD_VERSION)
        s = rs; /* an I/O error or a planted FIFO: not a state file to replace */
    bool down = d->cvt_target_offset < d->data_offset;
    uint64_t done = 0, lo = 0, hi = 0;
    if (s == VMENC_OK) {
        scan sc;
        s = scan_open(vm, e, &sc);
        if (s == VMENC_OK)
            s = infer_done(&sc, down, num, &done, &lo, &hi);
        scan_close(&sc);
    }
    if (s == VMENC_E_INTERRUPTED)
        report_unknown(d, down, num, lo, hi, r);
    if (s == VMENC_OK) {
        (void)unlinkat(vm->dirfd, c->name, 0); /* the bad one (a regular file or nothing: read_state checked) */
        vm_cvt_slot first = {.id = d->cvt_id, .seq = 1, .done_segs = done, .num_segs = num,
                             .seg_bytes = d->cvt_segment};
        s = create_state(vm->dirfd, c, &first);
    }
    if (s == VMENC_OK) {
        r->segments_done = done;
        r->flags |= VMENC_RECOVERY_REBUILT;
    }
    vm_cvt_free(c);
    return s;
}

vmenc_status vmenc_disk_convert_recover(vmenc_vm *vm, const char *principal, const char *disk_id,
                                        vmenc_convert_recovery *out) {
    VMENC_ENSURE_REF(vm);
    vm_op op;
    vm_op_init(&op, vm->host, principal, "disk.convert_recover", vm->vmx.name);
    if (disk_id == NULL || out == NULL || strlen(disk_id) > VMENC_DISK_ID_MAX)
        return vm_op_finish(&op, VMENC_E_INVALID_ARG, "bad arguments");
    if (out->struct_size < RECOVERY_V1_SIZE)
        return vm_op_finish(&op, VMENC_E_ABI_VERSION, "bad recovery struct");
    snprintf(op.target, sizeof(op.target), "%s/%s", vm->vmx.name, disk_id);
    pthread_mutex_lock(&vm->lock);
    int i = vm_find_disk(vm, disk_id);
    vmenc_convert_kind kind = i >= 0 && vm_disk_desc_converting(&vm->disks[i].desc)
                                  ? kind_of(vm->disks[i].desc.state)
                                  : VMENC_CONVERT_ENCRYPT;
    bool found = i >= 0, converting = found && vm_disk_desc_converting(&vm->disks[i].desc);
    pthread_mutex_unlock(&vm->lock);
    if (!found)
        return vm_op_finish(&op, VMENC_E_NOT_FOUND, "no such disk");
    if (!converting)
        return vm_op_finish(&op, VMENC_E_BAD_STATE, "no conversion to recover");
    /* rebuilding the progress steers the conversion: its privilege */
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = policy_op_of(kind), .vm = vm->vmx.name,
                               .flags = vm_is_encrypted(vm) ? VMENC_REQ_VM_ENCRYPTED : 0};
    VMENC_GUARD(vm_op_authorize(&op, &rq));
    vmenc_convert_recovery r;
    memset(&r, 0, sizeof(r));
    r.struct_size = out->struct_size < sizeof(r) ? out->struct_size : sizeof(r);
    pthread_mutex_lock(&vm->lock);
    i = vm_find_disk(vm, disk_id);
    vmenc_status s = VMENC_E_NOT_FOUND;
    if (i >= 0) {
        vm_disk_entry *e = &vm->disks[i];
        vm_op_add_key(&op, e->desc.key_provider, e->desc.kek_id);
        vm_op_add_key(&op, e->desc.new_key_provider, e->desc.new_kek_id);
        s = vm_disk_desc_converting(&e->desc) ? recover_locked(vm, e, &r) : VMENC_E_BAD_STATE;
    }
    pthread_mutex_unlock(&vm->lock);
    size_t n = out->struct_size < sizeof(r) ? out->struct_size : sizeof(r);
    memcpy(out, &r, n);
    char reason[640];
    if (s == VMENC_OK)
        snprintf(reason, sizeof(reason), "%s: %llu of %llu segments moved%s", r.state_file,
                 (unsigned long long)r.segments_done, (unsigned long long)r.segments_total,
                 (r.flags & VMENC_RECOVERY_REBUILT) ? ", state file rebuilt from the data" : ", state file readable");
    else if (s == VMENC_E_INTERRUPTED)
        snprintf(reason, sizeof(reason), "%s: segments %llu..%llu (bytes %llu+%llu) may be in either layout",
                 r.state_file, (unsigned long long)r.unknown_first,
                 (unsigned long long)(r.unknown_first + r.unknown_count - 1), (unsigned long long)r.unknown_offset,
                 (unsigned long long)r.unknown_bytes);
    else
        snprintf(reason, sizeof(reason), "%s: %s", r.state_file[0] != '\0' ? r.state_file : disk_id,
                 vmenc_strerror(s));
    return vm_op_finish(&op, s, reason);
}
