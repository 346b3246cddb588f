/*
 * lib/vm/authority.c - the VM layer's side of the control store
 * (lib/control/control.h; rules in docs/control.md): each VM's authority
 * record is read when the VM is opened, the datastore files are checked
 * against it, and every write of NAME.vmx or a disk descriptor is
 * announced in the record before the file is replaced (the target key
 * record hashes, the pending policy, the disk conversions) and folded into
 * its facts after. Operations that span several writes record their kind
 * and direction through vm_authority_begin_op / _turn_op / _end_op.
 *
 * Safety rule: intent first -- the record that allows a file's new state is
 * durable before the file is replaced, and at open nothing the datastore
 * says is believed unless the record allows it (the facts, or the targets
 * of the operation in progress); anything else is VMENC_E_AUTH with a
 * reason that names the file.
 *
 * Without a control store (a host made by hand, not by a workspace) every
 * function here does nothing and returns VMENC_OK.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vm/vm_internal.h"

_Static_assert(CTL_UUID_LEN == VMENC_VM_UUID_LEN && CTL_VM_NAME_MAX == VMENC_VM_NAME_MAX &&
                   CTL_DISK_ID_MAX == VMENC_DISK_ID_MAX && CTL_MAX_DISKS == VMENC_VM_MAX_DISKS,
               "the control record's limits are the VM layer's");

static const uint8_t k_zero[CTL_HASH_BYTES];

/* ---- small helpers ----------------------------------------------------------- */

/* key_hash: the record hash of |wk|, all zero for NULL (a plain home/disk). */
static vmenc_status key_hash(const vmenc_wrapped_key *wk, uint8_t out[CTL_HASH_BYTES]) {
    if (wk == NULL) {
        memset(out, 0, CTL_HASH_BYTES);
        return VMENC_OK;
    }
    return ctl_key_record_hash(wk, out);
}

static bool hash_eq(const uint8_t *a, const uint8_t *b) { return memcmp(a, b, CTL_HASH_BYTES) == 0; }

/* facts_key: the home key hash the facts allow (zero when plain). */
static const uint8_t *facts_key(const ctl_vm_facts *f) { return f->encrypted ? f->key_hash : k_zero; }

/* disk_target: what a disk entry of the operation allows as the disk's
 * key record: its target DEK record, or (no target) a plain disk. */
static const uint8_t *disk_target(const ctl_disk_op *e) { return e->has_target_dek ? e->target_dek_hash : k_zero; }

static const uint8_t *disk_prev(const ctl_disk_op *e) { return e->prev_has_target_dek ? e->prev_target_dek_hash : k_zero; }

static const uint8_t *disk_fact_key(const ctl_disk_fact *f) { return f->has_dek_hash ? f->dek_hash : k_zero; }

static bool records_equal(const ctl_vm_record *a, const ctl_vm_record *b) {
    uint8_t *ea = NULL, *eb = NULL;
    size_t la = 0, lb = 0;
    ctl_vm_record x = *a, y = *b;
    x.revision = y.revision = 0;
    bool eq = ctl_record_encode(&x, &ea, &la) == VMENC_OK && ctl_record_encode(&y, &eb, &lb) == VMENC_OK &&
              la == lb && memcmp(ea, eb, la) == 0;
    free(ea);
    free(eb);
    return eq;
}

static ctl_store *store_of(const vmenc_vm *vm) { return vm->host->control; }

/* disk_fact_of fills a fact from a descriptor. */
static vmenc_status disk_fact_of(const char *disk_id, const vm_disk_desc *d, ctl_disk_fact *out) {
    memset(out, 0, sizeof(*out));
    snprintf(out->disk_id, sizeof(out->disk_id), "%s", disk_id);
    out->encrypted = d->key_safe != NULL;
    out->has_dek_hash = d->key_safe != NULL;
    return key_hash(d->key_safe, out->dek_hash);
}

/* facts_of: what the VM in memory is (the key generation is the caller's). */
static vmenc_status facts_of(const vmenc_vm *vm, ctl_vm_facts *out) {
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%s", vm->vmx.name);
    out->encrypted = vm->vmx.key_safe != NULL;
    VMENC_GUARD(key_hash(vm->vmx.key_safe, out->key_hash));
    if (out->encrypted) {
        snprintf(out->kek_provider, sizeof(out->kek_provider), "%s",
                 vmenc_wrapped_key_provider_alias(vm->vmx.key_safe));
        snprintf(out->kek_id, sizeof(out->kek_id), "%s", vmenc_wrapped_key_kek_id(vm->vmx.key_safe));
    }
    snprintf(out->storage_policy, sizeof(out->storage_policy), "%s", vm->vmx.storage_policy);
    VMENC_ENSURE(vm->num_disks <= CTL_MAX_DISKS, VMENC_E_LIMIT);
    out->num_disks = vm->num_disks;
    for (size_t i = 0; i < vm->num_disks; i++)
        VMENC_GUARD(disk_fact_of(vm->disks[i].disk_id, &vm->disks[i].desc, &out->disks[i]));
    return VMENC_OK;
}

/* op_disk_entry finds or adds |disk_id|'s entry in |op| (NULL when full). */
static ctl_disk_op *op_disk_entry(ctl_vm_op *op, const char *disk_id) {
    int i = ctl_vm_op_find_disk(op, disk_id);
    if (i >= 0)
        return &op->disks[i];
    if (op->num_disks >= CTL_MAX_DISKS)
        return NULL;
    ctl_disk_op *e = &op->disks[op->num_disks++];
    memset(e, 0, sizeof(*e));
    snprintf(e->disk_id, sizeof(e->disk_id), "%s", disk_id);
    return e;
}

static void op_remove_disk(ctl_vm_op *op, const char *disk_id) {
    int i = ctl_vm_op_find_disk(op, disk_id);
    if (i < 0)
        return;
    memmove(&op->disks[i], &op->disks[i + 1], (op->num_disks - (size_t)i - 1) * sizeof(op->disks[0]));
    op->num_disks--;
}

/* fresh reads the stored record and checks it is the one this VM last saw
 * (only the revision may have moved): a record another process changed
 * means this VM object is stale (VMENC_E_CONFLICT). */
static vmenc_status fresh(vmenc_vm *vm, ctl_vm_record *out) {
    VMENC_GUARD(ctl_store_get_vm(store_of(vm), vm->vmx.uuid, out));
    VMENC_ENSURE(records_equal(out, vm->ctl), VMENC_E_CONFLICT);
    return VMENC_OK;
}

/* commit puts |next| over |base| if it differs and makes it the VM's copy. */
static vmenc_status commit(vmenc_vm *vm, const ctl_vm_record *base, ctl_vm_record *next) {
    if (records_equal(base, next)) {
        *vm->ctl = *base;
        return VMENC_OK;
    }
    uint64_t rev = 0;
    VMENC_GUARD(ctl_store_put_vm(store_of(vm), next, base->revision, &rev));
    next->revision = rev;
    *vm->ctl = *next;
    return VMENC_OK;
}

/* ---- sealed state files: their IDs ------------------------------------------------- */

/* anchor_files records the ID of every sealed state file now in the home
 * and marks the list complete: trust on first use, for a VM this host
 * had no record of (registration) or a record from before version 2. */
static vmenc_status anchor_files(const vmenc_vm *vm, ctl_vm_facts *f) {
    int fd = dup(vm->dirfd);
    VMENC_ENSURE(fd >= 0, VMENC_E_IO);
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return VMENC_E_IO;
    }
    rewinddir(d);
    vmenc_status s = VMENC_OK;
    struct dirent *de;
    while (s == VMENC_OK && (de = readdir(d)) != NULL) {
        vmenc_vm_file_class cls;
        uint32_t index;
        if (!vm_state_file_class(vm->vmx.name, de->d_name, &cls, &index) || cls > VM_SF_CLASS_MAX)
            continue;
        bool sealed = false;
        uint8_t id[CTL_FILE_ID_BYTES];
        if (vm_sf_read_file_id(vm->dirfd, de->d_name, &sealed, id) != VMENC_OK || !sealed)
            continue; /* not a sealed file: it will not open as one either */
        if (ctl_vm_facts_find_file(f, (uint8_t)cls, index) >= 0)
            continue;
        if (f->num_files >= CTL_MAX_FILES) {
            s = VMENC_E_LIMIT;
            break;
        }
        ctl_file_fact *e = &f->files[f->num_files++];
        memset(e, 0, sizeof(*e));
        e->cls = (uint8_t)cls;
        e->index = index;
        e->has_id = true;
        memcpy(e->file_id, id, CTL_FILE_ID_BYTES);
    }
    closedir(d);
    if (s == VMENC_OK)
        f->files_anchored = true;
    return s;
}

/* settle_files decides, for each state file whose replacement was in
 * flight, which of its two IDs is on disk (a crash between the announce
 * and the record's update), so the record again names one. */
static void settle_files(const vmenc_vm *vm, ctl_vm_facts *f) {
    for (size_t i = 0; i < f->num_files;) {
        ctl_file_fact *e = &f->files[i];
        if (!e->has_next) {
            i++;
            continue;
        }
        char name[VMENC_VM_NAME_MAX + 32];
        bool sealed = false;
        uint8_t id[CTL_FILE_ID_BYTES];
        vmenc_status s = vm_state_file_name(vm->vmx.name, (vmenc_vm_file_class)e->cls, e->index, name, sizeof(name));
        if (s == VMENC_OK)
            s = vm_sf_read_file_id(vm->dirfd, name, &sealed, id);
        if (s == VMENC_OK && sealed && memcmp(id, e->next_id, CTL_FILE_ID_BYTES) == 0) {
            memcpy(e->file_id, e->next_id, CTL_FILE_ID_BYTES); /* the new file made it */
            e->has_id = true;
        } else if (!e->has_id) {
            /* a file being made that never was: forget it */
            memmove(e, e + 1, (f->num_files - i - 1) * sizeof(*e));
            f->num_files--;
            continue;
        }
        /* (anything else - the old file, a missing or foreign one - keeps
         * the recorded ID: only that one opens) */
        e->has_next = false;
        memset(e->next_id, 0, CTL_FILE_ID_BYTES);
        i++;
    }
}

/* new_record stores a first record for |vm| (facts from memory). */
static vmenc_status new_record(vmenc_vm *vm) {
    ctl_vm_record *r = calloc(1, sizeof(*r));
    VMENC_ENSURE(r != NULL, VMENC_E_NOMEM);
    vmenc_status s = ctl_vm_record_init(r, vm->vmx.uuid, vm->vmx.name);
    if (s == VMENC_OK)
        s = facts_of(vm, &r->facts);
    if (s == VMENC_OK)
        s = anchor_files(vm, &r->facts);
    uint64_t rev = 0;
    if (s == VMENC_OK)
        s = ctl_store_put_vm(store_of(vm), r, 0, &rev);
    if (s != VMENC_OK) {
        free(r);
        return s;
    }
    r->revision = rev;
    vm->ctl = r;
    return VMENC_OK;
}

/* ---- the writes: announce, then fold in ------------------------------------------- */

/* implicit_targets sets the targets an operation-less record needs for the
 * configuration in memory (about to be, or just, written). */
static vmenc_status config_targets(const vmenc_vm *vm, ctl_vm_record *next) {
    ctl_vm_op *op = &next->op;
    uint8_t h[CTL_HASH_BYTES];
    const vmenc_wrapped_key *want = vm->vmx.new_key_safe != NULL ? vm->vmx.new_key_safe : vm->vmx.key_safe;
    VMENC_GUARD(key_hash(want, h));
    if (vm->vmx.new_key_safe != NULL || !hash_eq(h, facts_key(&next->facts))) {
        if (op->has_target_key && !hash_eq(op->target_key_hash, h)) {
            /* the file on disk may still name the target it replaces */
            op->has_prev_target_key = true;
            memcpy(op->prev_target_key_hash, op->target_key_hash, CTL_HASH_BYTES);
        }
        op->has_target_key = true;
        memcpy(op->target_key_hash, h, CTL_HASH_BYTES);
        op->target_generation = next->facts.key_generation + 1;
    }
    const char *pol = vm->vmx.applying_policy[0] != '\0' ? vm->vmx.applying_policy : vm->vmx.storage_policy;
    if (vm->vmx.applying_policy[0] != '\0' || strcmp(pol, next->facts.storage_policy) != 0) {
        op->has_target_policy = true;
        snprintf(op->target_policy, sizeof(op->target_policy), "%s", pol);
    }
    return VMENC_OK;
}

vmenc_status vm_authority_before_config(vmenc_vm *vm) {
    if (store_of(vm) == NULL)
        return VMENC_OK;
    if (vm->ctl == NULL)
        return new_record(vm); /* a new VM: its first record is the config about to be written */
    ctl_vm_record base, next;
    VMENC_GUARD(fresh(vm, &base));
    next = base;
    VMENC_GUARD(config_targets(vm, &next));
    return commit(vm, &base, &next);
}

/* fold_facts makes the record's facts the VM in memory, counting a new home
 * key record as a new key generation. */
static vmenc_status fold_facts(const vmenc_vm *vm, ctl_vm_record *next) {
    ctl_vm_facts f;
    VMENC_GUARD(facts_of(vm, &f));
    f.key_generation = next->facts.key_generation;
    /* the state files' IDs are kept by their own writes */
    f.files_anchored = next->facts.files_anchored;
    f.num_files = next->facts.num_files;
    memcpy(f.files, next->facts.files, next->facts.num_files * sizeof(f.files[0]));
    if (!hash_eq(facts_key(&f), facts_key(&next->facts))) {
        if (next->op.has_target_key && hash_eq(next->op.target_key_hash, facts_key(&f)) &&
            next->op.target_generation > f.key_generation)
            f.key_generation = next->op.target_generation;
        else
            f.key_generation++;
    }
    next->facts = f;
    return VMENC_OK;
}

/* pending_disk_entries keeps the disk entries an operation-less record
 * still needs: disks in conversion. */
static vmenc_status pending_disk_entries(const vmenc_vm *vm, ctl_vm_record *next) {
    ctl_vm_op keep = next->op;
    keep.num_disks = 0;
    for (size_t i = 0; i < vm->num_disks; i++) {
        const vm_disk_entry *d = &vm->disks[i];
        if (!vm_disk_desc_converting(&d->desc))
            continue;
        int k = ctl_vm_op_find_disk(&next->op, d->disk_id);
        if (k >= 0)
            keep.disks[keep.num_disks++] = next->op.disks[k];
    }
    next->op.num_disks = keep.num_disks;
    memcpy(next->op.disks, keep.disks, keep.num_disks * sizeof(keep.disks[0]));
    return VMENC_OK;
}

vmenc_status vm_authority_after_config(vmenc_vm *vm) {
    if (store_of(vm) == NULL || vm->ctl == NULL)
        return VMENC_OK;
    ctl_vm_record base, next;
    VMENC_GUARD(fresh(vm, &base));
    next = base;
    VMENC_GUARD(fold_facts(vm, &next));
    next.op.has_prev_target_key = false; /* the write is done: the old file is gone */
    memset(next.op.prev_target_key_hash, 0, CTL_HASH_BYTES);
    if (next.op.kind == CTL_OP_NONE) {
        /* no operation recorded: the targets are exactly what is pending */
        ctl_vm_op disks = next.op;
        memset(&next.op, 0, sizeof(next.op));
        next.op.num_disks = disks.num_disks;
        memcpy(next.op.disks, disks.disks, disks.num_disks * sizeof(disks.disks[0]));
        VMENC_GUARD(config_targets(vm, &next));
        VMENC_GUARD(pending_disk_entries(vm, &next));
    }
    return commit(vm, &base, &next);
}

vmenc_status vm_authority_before_descriptor(vmenc_vm *vm, const vm_disk_desc *d) {
    if (store_of(vm) == NULL)
        return VMENC_OK;
    if (vm->ctl == NULL)
        VMENC_GUARD(new_record(vm));
    ctl_vm_record base, next;
    VMENC_GUARD(fresh(vm, &base));
    next = base;
    uint8_t cur[CTL_HASH_BYTES];
    VMENC_GUARD(key_hash(d->key_safe, cur));
    int fi = ctl_vm_facts_find_disk(&next.facts, d->disk_id);
    bool cur_known = fi >= 0 && hash_eq(cur, disk_fact_key(&next.facts.disks[fi]));
    int ei = ctl_vm_op_find_disk(&next.op, d->disk_id);
    bool converting = vm_disk_desc_converting(d);
    if (converting || !cur_known) {
        ctl_disk_op *e = op_disk_entry(&next.op, d->disk_id);
        VMENC_ENSURE(e != NULL, VMENC_E_LIMIT);
        ctl_disk_op was = *e;
        if (converting && !cur_known && fi >= 0 && next.op.direction == CTL_DIR_ROLLBACK) {
            /* a rollback turning round: the reverse run's key is the
             * forward run's target. The facts take it and the target
             * becomes the forward run's key, so both descriptors open. */
            ctl_disk_fact *f = &next.facts.disks[fi];
            f->encrypted = f->has_dek_hash = d->key_safe != NULL;
            memcpy(f->dek_hash, cur, CTL_HASH_BYTES);
        }
        if (converting) {
            e->cvt_id = d->cvt_id;
            e->has_target_dek = d->new_key_safe != NULL;
            VMENC_GUARD(key_hash(d->new_key_safe, e->target_dek_hash));
        } else {
            /* e->cvt_id stays: the descriptor being replaced may still name
             * that conversion (a crash at a conversion's final commit) */
            e->has_target_dek = d->key_safe != NULL;
            memcpy(e->target_dek_hash, cur, CTL_HASH_BYTES);
        }
        bool changed = e->cvt_id != was.cvt_id || e->has_target_dek != was.has_target_dek ||
                       !hash_eq(e->target_dek_hash, was.target_dek_hash);
        if (ei >= 0 && changed) {
            /* the file on disk may still be the one this entry allowed */
            e->has_prev = true;
            e->prev_has_target_dek = was.has_target_dek;
            memcpy(e->prev_target_dek_hash, was.has_target_dek ? was.target_dek_hash : k_zero, CTL_HASH_BYTES);
            e->prev_cvt_id = was.cvt_id;
        }
    }
    return commit(vm, &base, &next);
}

vmenc_status vm_authority_after_descriptor(vmenc_vm *vm, const vm_disk_desc *d) {
    if (store_of(vm) == NULL || vm->ctl == NULL)
        return VMENC_OK;
    ctl_vm_record base, next;
    VMENC_GUARD(fresh(vm, &base));
    next = base;
    ctl_disk_fact f;
    VMENC_GUARD(disk_fact_of(d->disk_id, d, &f));
    int fi = ctl_vm_facts_find_disk(&next.facts, d->disk_id);
    if (fi >= 0) {
        next.facts.disks[fi] = f;
    } else {
        VMENC_ENSURE(next.facts.num_disks < CTL_MAX_DISKS, VMENC_E_LIMIT);
        next.facts.disks[next.facts.num_disks++] = f;
    }
    int ei = ctl_vm_op_find_disk(&next.op, d->disk_id);
    if (ei >= 0) {
        ctl_disk_op *e = &next.op.disks[ei];
        e->has_prev = e->prev_has_target_dek = false; /* the write is done: the old file is gone */
        memset(e->prev_target_dek_hash, 0, CTL_HASH_BYTES);
        e->prev_cvt_id = 0;
    }
    if (next.op.kind == CTL_OP_NONE && !vm_disk_desc_converting(d))
        op_remove_disk(&next.op, d->disk_id);
    return commit(vm, &base, &next);
}

/* ---- operations that span several writes ---------------------------------------- */

const ctl_vm_record *vm_authority_record(const vmenc_vm *vm) { return vm->ctl; }

vmenc_status vm_authority_begin_op(vmenc_vm *vm, const ctl_vm_op *op) {
    if (store_of(vm) == NULL)
        return VMENC_OK;
    if (vm->ctl == NULL)
        VMENC_GUARD(new_record(vm));
    ctl_vm_record base;
    VMENC_GUARD(fresh(vm, &base));
    /* targets an earlier write announced stay allowed */
    ctl_vm_op merged = *op;
    if (!merged.has_target_key && base.op.has_target_key) {
        merged.has_target_key = true;
        memcpy(merged.target_key_hash, base.op.target_key_hash, CTL_HASH_BYTES);
        merged.target_generation = base.op.target_generation;
    }
    for (size_t i = 0; i < base.op.num_disks; i++)
        if (ctl_vm_op_find_disk(&merged, base.op.disks[i].disk_id) < 0 && merged.num_disks < CTL_MAX_DISKS)
            merged.disks[merged.num_disks++] = base.op.disks[i];
    if (!merged.has_target_policy && base.op.has_target_policy) {
        merged.has_target_policy = true;
        memcpy(merged.target_policy, base.op.target_policy, sizeof(merged.target_policy));
    }
    /* an implicit intent (no kind) is taken over; another kind is refused */
    ctl_vm_record rec = base;
    VMENC_GUARD(ctl_vm_begin_op(store_of(vm), &rec, &merged));
    *vm->ctl = rec;
    return VMENC_OK;
}

vmenc_status vm_authority_turn_op(vmenc_vm *vm, ctl_op_dir direction) {
    if (store_of(vm) == NULL || vm->ctl == NULL)
        return VMENC_OK;
    ctl_vm_record base;
    VMENC_GUARD(fresh(vm, &base));
    VMENC_GUARD(ctl_vm_turn_op(store_of(vm), &base, direction));
    *vm->ctl = base;
    return VMENC_OK;
}

vmenc_status vm_authority_end_op(vmenc_vm *vm) {
    if (store_of(vm) == NULL || vm->ctl == NULL)
        return VMENC_OK;
    ctl_vm_record base, next;
    VMENC_GUARD(fresh(vm, &base));
    next = base;
    VMENC_GUARD(fold_facts(vm, &next));
    memset(&next.op, 0, sizeof(next.op));
    /* what is still pending in the files stays announced */
    VMENC_GUARD(config_targets(vm, &next));
    for (size_t i = 0; i < vm->num_disks; i++) {
        const vm_disk_entry *d = &vm->disks[i];
        if (!vm_disk_desc_converting(&d->desc))
            continue;
        ctl_disk_op *e = op_disk_entry(&next.op, d->disk_id);
        VMENC_ENSURE(e != NULL, VMENC_E_LIMIT);
        e->cvt_id = d->desc.cvt_id;
        e->has_target_dek = d->desc.new_key_safe != NULL;
        VMENC_GUARD(key_hash(d->desc.new_key_safe, e->target_dek_hash));
    }
    return commit(vm, &base, &next);
}

vmenc_status vm_authority_forget(vmenc_vm *vm) {
    if (store_of(vm) == NULL || vm->ctl == NULL)
        return VMENC_OK;
    vmenc_status s = ctl_store_delete_vm(store_of(vm), vm->vmx.uuid, vm->ctl->revision);
    if (s == VMENC_E_NOT_FOUND)
        s = VMENC_OK;
    if (s == VMENC_OK) {
        free(vm->ctl);
        vm->ctl = NULL;
    }
    return s;
}

/* ---- the state files' anchor (statefile.h vm_sf_anchor) ------------------------------ */

static vmenc_status sf_check(void *ctx, uint8_t cls, uint32_t index, const uint8_t id[VM_SF_FILE_ID_BYTES]) {
    vmenc_vm *vm = ctx;
    if (store_of(vm) == NULL || vm->ctl == NULL)
        return VMENC_OK;
    const ctl_vm_facts *f = &vm->ctl->facts;
    int i = ctl_vm_facts_find_file(f, cls, index);
    if (i >= 0) {
        const ctl_file_fact *e = &f->files[i];
        if ((e->has_id && memcmp(id, e->file_id, CTL_FILE_ID_BYTES) == 0) ||
            (e->has_next && memcmp(id, e->next_id, CTL_FILE_ID_BYTES) == 0))
            return VMENC_OK;
    } else if (!f->files_anchored) {
        return VMENC_OK; /* a record from before version 2: the next open anchors it */
    }
    char name[VMENC_VM_NAME_MAX + 32] = "";
    (void)vm_state_file_name(vm->vmx.name, (vmenc_vm_file_class)cls, index, name, sizeof(name));
    snprintf(vm->error_detail, sizeof(vm->error_detail),
             i >= 0 ? "%s: its file ID is not the one the VM's record names: an older copy replayed or another "
                      "file put in its place"
                    : "%s: not a state file the VM's record knows: planted or replayed",
             name);
    return VMENC_E_AUTH;
}

/* with_lock runs an update under the VM lock when called from a write */
static vmenc_status sf_update(vmenc_vm *vm, uint8_t cls, uint32_t index, const uint8_t *id, bool announce) {
    if (store_of(vm) == NULL)
        return VMENC_OK;
    if (vm->ctl == NULL)
        VMENC_GUARD(new_record(vm));
    ctl_vm_record base, next;
    VMENC_GUARD(fresh(vm, &base));
    next = base;
    ctl_vm_facts *f = &next.facts;
    int i = ctl_vm_facts_find_file(f, cls, index);
    if (announce) {
        if (i < 0) {
            VMENC_ENSURE(f->num_files < CTL_MAX_FILES, VMENC_E_LIMIT);
            i = (int)f->num_files++;
            memset(&f->files[i], 0, sizeof(f->files[i]));
            f->files[i].cls = cls;
            f->files[i].index = index;
        }
        f->files[i].has_next = true;
        memcpy(f->files[i].next_id, id, CTL_FILE_ID_BYTES);
    } else if (id != NULL) {
        if (i < 0) {
            VMENC_ENSURE(f->num_files < CTL_MAX_FILES, VMENC_E_LIMIT);
            i = (int)f->num_files++;
            memset(&f->files[i], 0, sizeof(f->files[i]));
            f->files[i].cls = cls;
            f->files[i].index = index;
        }
        ctl_file_fact *e = &f->files[i];
        e->has_id = true;
        memcpy(e->file_id, id, CTL_FILE_ID_BYTES);
        e->has_next = false;
        memset(e->next_id, 0, CTL_FILE_ID_BYTES);
    } else if (i >= 0) { /* now plain: no ID */
        memmove(&f->files[i], &f->files[i + 1], (f->num_files - (size_t)i - 1) * sizeof(f->files[0]));
        f->num_files--;
    }
    return commit(vm, &base, &next);
}

static vmenc_status sf_announce(void *ctx, uint8_t cls, uint32_t index, const uint8_t id[VM_SF_FILE_ID_BYTES],
                                bool in_write) {
    vmenc_vm *vm = ctx;
    if (in_write)
        pthread_mutex_lock(&vm->lock);
    vmenc_status s = sf_update(vm, cls, index, id, true);
    if (in_write)
        pthread_mutex_unlock(&vm->lock);
    return s;
}

static vmenc_status sf_settled(void *ctx, uint8_t cls, uint32_t index, const uint8_t *id, bool in_write) {
    vmenc_vm *vm = ctx;
    if (in_write)
        pthread_mutex_lock(&vm->lock);
    vmenc_status s = sf_update(vm, cls, index, id, false);
    if (in_write)
        pthread_mutex_unlock(&vm->lock);
    return s;
}

void vm_authority_sf_anchor(vmenc_vm *vm, vm_sf_anchor *out) {
    memset(out, 0, sizeof(*out));
    out->write_budget = vm->host->sf_write_budget;
    if (store_of(vm) == NULL)
        return;
    out->check = sf_check;
    out->announce = sf_announce;
    out->settled = sf_settled;
    out->ctx = vm;
}

/* ---- open: the files must agree with the record ------------------------------------ */

#define REFUSE(...)                                                                                         \
    do {                                                                                                    \
        snprintf(reason, reason_cap, __VA_ARGS__);                                                          \
        return VMENC_E_AUTH;                                                                                \
    } while (0)

/* check_home: NAME.vmx against the record. */
static vmenc_status check_home(const vmenc_vm *vm, const ctl_vm_record *r, char *reason, size_t reason_cap) {
    const ctl_vm_op *op = &r->op;
    uint8_t cur[CTL_HASH_BYTES];
    VMENC_GUARD(key_hash(vm->vmx.key_safe, cur));
    bool by_facts = hash_eq(cur, facts_key(&r->facts));
    bool by_target = (op->has_target_key && hash_eq(cur, op->target_key_hash)) ||
                     (op->has_prev_target_key && hash_eq(cur, op->prev_target_key_hash));
    if (!by_facts && !by_target) {
        if (r->facts.encrypted && vm->vmx.key_safe == NULL)
            REFUSE("%s: the VM is recorded encrypted but its configuration is plain (encryption.* removed)",
                   vm->vmx_name);
        if (!r->facts.encrypted && !op->has_target_key)
            REFUSE("%s: the VM is recorded plain but its configuration carries a key", vm->vmx_name);
        REFUSE("%s: encryption.keySafe is not the VM's recorded key record (generation %llu): replayed or swapped",
               vm->vmx_name, (unsigned long long)r->facts.key_generation);
    }
    if (vm->vmx.new_key_safe != NULL) {
        uint8_t nxt[CTL_HASH_BYTES];
        VMENC_GUARD(key_hash(vm->vmx.new_key_safe, nxt));
        if (!(op->has_target_key && hash_eq(nxt, op->target_key_hash)) &&
            !(op->has_prev_target_key && hash_eq(nxt, op->prev_target_key_hash)))
            REFUSE("%s: encryption.newKeySafe names a key record no recorded operation announced", vm->vmx_name);
    }
    if (vm->vmx.applying_policy[0] != '\0' &&
        (!op->has_target_policy || strcmp(op->target_policy, vm->vmx.applying_policy) != 0))
        REFUSE("%s: vmenc.applyingPolicy \"%s\" is not a policy application the record announced", vm->vmx_name,
               vm->vmx.applying_policy);
    if (strcmp(vm->vmx.storage_policy, r->facts.storage_policy) != 0 &&
        (!op->has_target_policy || strcmp(op->target_policy, vm->vmx.storage_policy) != 0))
        REFUSE("%s: vmenc.storagePolicy \"%s\" is not the recorded policy \"%s\"", vm->vmx_name,
               vm->vmx.storage_policy, r->facts.storage_policy);
    return VMENC_OK;
}

/* check_disk: one descriptor against the record. */
static vmenc_status check_disk(const vm_disk_entry *d, const ctl_vm_record *r, char *reason, size_t reason_cap) {
    int fi = ctl_vm_facts_find_disk(&r->facts, d->disk_id);
    int ei = ctl_vm_op_find_disk(&r->op, d->disk_id);
    const ctl_disk_op *e = ei >= 0 ? &r->op.disks[ei] : NULL;
    uint8_t cur[CTL_HASH_BYTES];
    VMENC_GUARD(key_hash(d->desc.key_safe, cur));
    bool by_facts = fi >= 0 && hash_eq(cur, disk_fact_key(&r->facts.disks[fi]));
    bool by_target = e != NULL && (hash_eq(cur, disk_target(e)) || (e->has_prev && hash_eq(cur, disk_prev(e))));
    if (fi < 0 && e == NULL)
        REFUSE("%s: disk %s is not a disk of the recorded VM", d->desc_name, d->disk_id);
    if (!by_facts && !by_target) {
        if (fi >= 0 && r->facts.disks[fi].encrypted && d->desc.key_safe == NULL)
            REFUSE("%s: disk %s is recorded encrypted but its descriptor is plain", d->desc_name, d->disk_id);
        REFUSE("%s: vmenc.keySafe of disk %s is not its recorded key record: replayed or swapped", d->desc_name,
               d->disk_id);
    }
    /* a recorded rollback announces the reverse run before its descriptor
     * replaces the forward one: until then the forward one stands (its
     * state file is MAC'd under its own conversion ID) */
    bool turning = e != NULL && e->cvt_id != d->desc.cvt_id && r->op.direction == CTL_DIR_ROLLBACK;
    if (vm_disk_desc_converting(&d->desc) && !turning) {
        if (e == NULL || (e->cvt_id != d->desc.cvt_id && !(e->has_prev && e->prev_cvt_id == d->desc.cvt_id)))
            REFUSE("%s: disk %s says it is in conversion %llu, which the record does not announce", d->desc_name,
                   d->disk_id, (unsigned long long)d->desc.cvt_id);
        /* the next key the descriptor names (none: decrypting) must be the
         * announced target of that conversion */
        uint8_t nxt[CTL_HASH_BYTES];
        VMENC_GUARD(key_hash(d->desc.new_key_safe, nxt));
        bool now = e->cvt_id == d->desc.cvt_id && e->has_target_dek == (d->desc.new_key_safe != NULL) &&
                   hash_eq(nxt, disk_target(e));
        bool before = e->has_prev && e->prev_cvt_id == d->desc.cvt_id &&
                      e->prev_has_target_dek == (d->desc.new_key_safe != NULL) && hash_eq(nxt, disk_prev(e));
        if (!now && !before)
            REFUSE(d->desc.new_key_safe != NULL
                       ? "%s: vmenc.newKeySafe of disk %s is not the key record the record announced"
                       : "%s: disk %s says it is being decrypted; the record announced no such thing",
                   d->desc_name, d->disk_id);
    }
    return VMENC_OK;
}

static vmenc_status check_files(const vmenc_vm *vm, const ctl_vm_record *r, char *reason, size_t reason_cap) {
    if (strcmp(r->facts.name, vm->vmx.name) != 0)
        REFUSE("%s: the record of VM %s names it %s", vm->vmx_name, vm->vmx.uuid, r->facts.name);
    VMENC_GUARD(check_home(vm, r, reason, reason_cap));
    for (size_t i = 0; i < vm->num_disks; i++)
        VMENC_GUARD(check_disk(&vm->disks[i], r, reason, reason_cap));
    return VMENC_OK;
}

typedef struct name_probe {
    const char *name, *uuid;
    char other[VMENC_VM_UUID_LEN + 1];
} name_probe;

static int probe_name(void *arg, const ctl_vm_record *rec) {
    name_probe *p = arg;
    if (strcmp(rec->facts.name, p->name) == 0 && strcmp(rec->uuid, p->uuid) != 0) {
        snprintf(p->other, sizeof(p->other), "%s", rec->uuid);
        return 1;
    }
    return 0;
}

/* no_record: a VM this host has no record of. Nothing pending may be
 * believed from plain files, and its name must not be another recorded
 * VM's (a home whose UUID was rewritten to escape its record). */
static vmenc_status check_unrecorded(const vmenc_vm *vm, char *reason, size_t reason_cap) {
    name_probe p = {.name = vm->vmx.name, .uuid = vm->vmx.uuid};
    vmenc_status s = ctl_store_list_vms(store_of(vm), probe_name, &p);
    if (s == VMENC_E_INTERRUPTED)
        REFUSE("%s: VM %s is recorded with UUID %s, not %s", vm->vmx_name, vm->vmx.name, p.other, vm->vmx.uuid);
    if (s == VMENC_E_AUTH)
        REFUSE("control store: a record fails its MAC");
    VMENC_GUARD(s);
    if (vm->vmx.new_key_safe != NULL)
        REFUSE("%s: encryption.newKeySafe pending and this host has no record of the VM", vm->vmx_name);
    if (vm->vmx.applying_policy[0] != '\0')
        REFUSE("%s: vmenc.applyingPolicy pending and this host has no record of the VM", vm->vmx_name);
    for (size_t i = 0; i < vm->num_disks; i++)
        if (vm_disk_desc_converting(&vm->disks[i].desc))
            REFUSE("%s: a conversion is pending and this host has no record of the VM", vm->disks[i].desc_name);
    return VMENC_OK;
}

vmenc_status vm_authority_check_open(vmenc_vm *vm, char *reason, size_t reason_cap) {
    reason[0] = '\0';
    if (store_of(vm) == NULL)
        return VMENC_OK;
    ctl_vm_record *r = calloc(1, sizeof(*r));
    VMENC_ENSURE(r != NULL, VMENC_E_NOMEM);
    vmenc_status s = ctl_store_get_vm(store_of(vm), vm->vmx.uuid, r);
    if (s == VMENC_E_NOT_FOUND) {
        free(r);
        free(vm->ctl);
        vm->ctl = NULL;
        return check_unrecorded(vm, reason, reason_cap);
    }
    if (s == VMENC_E_AUTH)
        snprintf(reason, reason_cap, "control record of VM %s fails its MAC", vm->vmx.uuid);
    if (s == VMENC_OK)
        s = check_files(vm, r, reason, reason_cap);
    if (s != VMENC_OK) {
        free(r);
        return s;
    }
    free(vm->ctl);
    vm->ctl = r;
    return VMENC_OK;
}

vmenc_status vm_authority_settle_open(vmenc_vm *vm) {
    if (store_of(vm) == NULL || vm->locked)
        return VMENC_OK;
    if (vm->ctl == NULL)
        return new_record(vm); /* facts from the files, whose key records the sealed data vouched for */
    {
        /* the state files: a record from before version 2 is anchored now,
         * a replacement a crash cut off is settled */
        ctl_vm_record base, next;
        VMENC_GUARD(fresh(vm, &base));
        next = base;
        if (!next.facts.files_anchored)
            VMENC_GUARD(anchor_files(vm, &next.facts));
        settle_files(vm, &next.facts);
        VMENC_GUARD(commit(vm, &base, &next));
    }
    if (vm->ctl->op.kind != CTL_OP_NONE)
        return VMENC_OK; /* an operation is in progress: its resume ends it */
    /* a crash between a file's replacement and the record's update: fold in */
    return vm_authority_after_config(vm);
}
