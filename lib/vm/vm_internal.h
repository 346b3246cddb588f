/*
 * lib/vm/vm_internal.h - the VM layer's private objects: the host, the VM
 * with its disks and keys, the in-place conversion's state, and the
 * authorize -> act -> audit helper every operation goes through. The byte
 * formats are lib/vm/format/, the I/O engine (extents, state files)
 * lib/vm/io/; both sit below this header and never include it.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_VM_VM_INTERNAL_H
#define VMENC_LIB_VM_VM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "control/control.h"
#include "core/fs.h"
#include "vm/format/coredump_format.h"
#include "vm/format/cvt_slot.h"
#include "vm/format/descriptor.h"
#include "vm/format/kv.h"
#include "vm/format/sealed.h"
#include "vm/format/vmx.h"
#include "vm/io/extent.h"
#include "vm/io/io.h"
#include "vm/io/statefile.h"
#include "vmenc/coredump.h"
#include "vmenc/vm.h"
#include "vmenc/xts.h"

/* ---- host ------------------------------------------------------------------ */

/* Cluster mode (issue 22; docs/cluster.md): the workspace installs these so
 * the VM layer asks the control plane without including it. write_ok is
 * the fencing check (an atomic load: called on every data write);
 * before_decide brings the policy cache up to date when its watch is
 * broken; acquire/release count this process's write ownership of a VM
 * (VMENC_E_LOCKED naming the owning host in |why|). */
typedef struct vm_cluster_hooks {
    void *ctx;
    vmenc_status (*write_ok)(void *ctx);
    vmenc_status (*before_decide)(void *ctx);
    vmenc_status (*acquire)(void *ctx, const char *uuid, const char *name, char *why, size_t why_cap);
    void (*release)(void *ctx, const char *uuid);
} vm_cluster_hooks;

struct vmenc_host {
    atomic_uint refs;
    char *host_id;
    vmenc_keymgr *keymgr;
    vmenc_policy *policy;
    vmenc_audit *audit;
    uint32_t timeout_ms;
    uint64_t (*clock_ms)(void *);
    void *clock_ctx;
    uint32_t flags;
    /* ---- the control store (issue 20; lib/vm/authority.c) ---- */
    ctl_store *control;          /* owned; NULL: no authority records (a host made by hand) */
    /* ---- cluster mode (issue 22): NULL in single-host mode ---- */
    const vm_cluster_hooks *cluster;
    /* record writes under one state-file ID before it is renewed; 0 =
     * VM_SF_WRITE_BUDGET (tests lower it: tests/test_vm_statefile_anchor.c) */
    uint64_t sf_write_budget;
};

/* vm_cluster_write_ok: VMENC_OK unless the host is fenced. */
static inline vmenc_status vm_cluster_write_ok(const vmenc_host *host) {
    return host->cluster != NULL ? host->cluster->write_ok(host->cluster->ctx) : VMENC_OK;
}

VMENC_INTERNAL void vm_host_retain(vmenc_host *host);
VMENC_INTERNAL void vm_host_release(vmenc_host *host);
static inline bool vm_host_sync(const vmenc_host *host) {
    return (host->flags & VMENC_HOST_NO_SYNC) == 0;
}

/* ---- authorize -> act -> audit ------------------------------------------- */

/* One operation in flight: what the audit event will say. Key IDs are
 * copied (they may come from records freed before the event is emitted). */
#define VM_OP_MAX_KEYS 8u
typedef struct vm_op {
    vmenc_host *host;
    const char *principal;   /* as given (may be NULL: refused) */
    const char *operation;   /* "vm.create", "disk.open", ... */
    char target[VMENC_AUDIT_MAX_FIELD];
    char provider[VMENC_PROVIDER_ALIAS_MAX + 1];
    char key_ids[VM_OP_MAX_KEYS][VMENC_KEY_ID_MAX + 1];
    size_t num_key_ids;
    bool authorized;
} vm_op;

/* vm_op_init starts an operation record. |target| may be NULL. */
VMENC_INTERNAL void vm_op_init(vm_op *op, vmenc_host *host, const char *principal, const char *operation,
                               const char *target);
/* vm_op_add_key notes a key ID (and the provider) the operation uses;
 * duplicates and overflow beyond VM_OP_MAX_KEYS are dropped. */
VMENC_INTERNAL void vm_op_add_key(vm_op *op, const char *provider, const char *kek_id);

/* vm_op_authorize checks |principal| (non-empty, else VMENC_E_INVALID_ARG)
 * and asks the policy about |req| (host defaults to this host). If the
 * decision needs the host switched to encryption mode, it is switched on the
 * principal's behalf (audited as "host.enable_encryption"). A denial or
 * error is audited at once (outcome denied / failed) and returned. */
VMENC_INTERNAL vmenc_status vm_op_authorize(vm_op *op, vmenc_policy_request *req);

/* vm_op_finish audits the outcome of an authorized (or failed-before-
 * authorization) operation: success when |s| is VMENC_OK, else failed with
 * |s| and |reason| (NULL = vmenc_strerror(s)). Returns |s|, or
 * VMENC_E_AUDIT_SINK if |s| was VMENC_OK and the event was not recorded. */
VMENC_INTERNAL vmenc_status vm_op_finish(vm_op *op, vmenc_status s, const char *reason);

/* vm_op_deny audits a refusal decided outside the policy's privilege check
 * (a host not in encryption mode for a host-internal action, a migration
 * mode the policy forbids): outcome denied with |s| and |reason|. Returns
 * |s|. */
VMENC_INTERNAL vmenc_status vm_op_deny(vm_op *op, vmenc_status s, const char *reason);

/* vm_principal_ok: non-empty, at most VMENC_POLICY_NAME_MAX bytes. */
VMENC_INTERNAL bool vm_principal_ok(const char *principal);

/* ---- in-place conversion (convert.c) ------------------------------------------ */

typedef struct vm_cvt {
    int fd;                     /* the state file */
    char name[300];
    vm_cvt_slot slot;           /* the last one made durable */
    uint8_t *mac_key;           /* the slots' MAC key (secure memory; format/cvt_slot.h) */
    uint8_t *buf;               /* one segment */
    vmenc_convert_kind kind;
    uint64_t t0_ns, done_at_t0; /* for the rate */
    char principal[VMENC_POLICY_NAME_MAX + 1]; /* who began or resumed it: the audit events name them */
    bool may_step;              /* that principal holds this kind of conversion's privilege */
    bool sync;
} vm_cvt;

struct vmenc_disk {
    vmenc_vm *vm;
    size_t index_hint; /* the disk's entry when opened (entries may move) */
    char disk_id[VMENC_DISK_ID_MAX + 1];
    vm_extent *ext;
    bool readonly;
    vm_cvt *cvt;       /* an in-place conversion runs */
};

/* vm_disk_set_lock moves |disk|'s image lock to |mode| (CONVERT while an
 * in-place conversion runs, WRITE after; docs/vm.md "Locks"). Without the
 * VM lock. On VMENC_E_LOCKED the holder is noted for
 * vmenc_vm_get_lock_holder and its message copied to |why| (cap |why_cap|;
 * may be NULL) for the audit event's reason. */
VMENC_INTERNAL vmenc_status vm_disk_set_lock(vmenc_disk *disk, vm_lock_mode mode, const char *operation, char *why,
                                             size_t why_cap);

/* vm_disk_file_has_data: does disk entry |i|'s extent hold data? For a
 * key change without a data move: unless this VM has the disk open (then
 * its handle's lock speaks for it), VMENC_E_LOCKED while any other opener
 * has the extent open, the holder noted for vmenc_vm_get_lock_holder. VM
 * lock held. */
VMENC_INTERNAL vmenc_status vm_disk_file_has_data(vmenc_vm *vm, size_t i, bool *out);

/* vm_cvt_resume sets up the interrupted conversion of disk entry |i| on a
 * freshly opened |disk| (VM lock held): reads the state file, starts the
 * extent's second layout, finishes at once if every segment had moved. */
VMENC_INTERNAL vmenc_status vm_cvt_resume(vmenc_disk *disk, size_t i, vm_op *op);
VMENC_INTERNAL void vm_cvt_free(vm_cvt *c);
/* vm_cvt_finish_if_done finishes a resumed conversion whose segments had
 * all moved (a crash during the finish). Without the VM lock. */
VMENC_INTERNAL vmenc_status vm_cvt_finish_if_done(vmenc_disk *disk);

/* ---- the VM ----------------------------------------------------------------- */

typedef struct vm_disk_entry {
    char disk_id[VMENC_DISK_ID_MAX + 1];
    char desc_name[256];        /* DISK.vmdk */
    vm_disk_desc desc;          /* parsed descriptor */
    vmenc_dek *dek;             /* unwrapped DEK; NULL when plain or locked */
    vmenc_dek *new_dek;         /* during a conversion to an encrypted form: the new DEK */
    vmenc_status key_status;    /* last unwrap result (VMENC_OK when plain) */
    bool open;                  /* a vmenc_disk handle exists */
    vmenc_disk *handle;         /* that handle (VMENC_APPLY_ONLINE converts through it) */
} vm_disk_entry;

typedef struct vm_missing_key {
    char alias[VMENC_PROVIDER_ALIAS_MAX + 1];
    char kek_id[VMENC_KEY_ID_MAX + 1];
    vmenc_status status;
} vm_missing_key;

struct vmenc_vm {
    atomic_uint refs;
    vmenc_host *host;           /* retained */
    pthread_mutex_t lock;       /* management operations, the disk table, open counts */
    int dirfd;
    char *home_dir;
    char vmx_name[VMENC_VM_NAME_MAX + 8];
    vm_vmx vmx;                 /* parsed configuration (kv owned) */
    vm_kv *secret;              /* opened encryption.data; NULL when plain or locked */
    vmenc_dek *vm_key;          /* NULL when plain or locked */
    vmenc_dek *new_vm_key;      /* during a deep rekey of the home: the next VM key */
    vm_disk_entry *disks;       /* vmx.num_disks entries */
    size_t num_disks;
    /* the holder behind the last VMENC_E_LOCKED of an open or conversion
     * (vmenc_vm_get_lock_holder); under |lock| */
    bool has_lock_holder;
    vmenc_lock_holder lock_holder;
    /* the sentence naming the file behind the last refusal of a disk open
     * or resume (vmenc_vm_get_error_detail; "" = none); under |lock| */
    char error_detail[640];
    vm_missing_key *missing;
    size_t num_missing;
    bool locked;
    uint32_t open_handles;      /* disks and state files open */
    /* ---- the authority record (issue 20; lib/vm/authority.c) ---- */
    ctl_vm_record *ctl;         /* as last read or written; NULL: none (yet) or no control store */
    bool cluster_owned;         /* holds one count of the cluster ownership (released when freed) */
};

/* vm_cluster_own takes the VM's cluster ownership for this VM object (once;
 * released when the object is freed) after the fencing check; VMENC_OK in
 * single-host mode. VMENC_E_LOCKED names the owner in |why|. Lock held. */
VMENC_INTERNAL vmenc_status vm_cluster_own(vmenc_vm *vm, char *why, size_t why_cap);

/* vm_alloc makes an empty VM object over |dirfd| (taken over on success). */
VMENC_INTERNAL vmenc_status vm_alloc(vmenc_host *host, const char *home_dir, int dirfd, vmenc_vm **out);
/* vm_make_home creates directory |dir| or accepts an existing empty one
 * (VMENC_E_EXISTS otherwise) and opens it. */
VMENC_INTERNAL vmenc_status vm_make_home(const char *dir, bool *created, int *out_fd);
/* vm_make_home_intent is vm_make_home for a new VM |name| (create, clone;
 * lib/vm/vm_ops.c): it also accepts the half-built home of a crashed
 * attempt at the same VM (one holding its intent), emptied, and writes
 * the intent durably first. Call only after the inventory lacks |name|. */
VMENC_INTERNAL vmenc_status vm_make_home_intent(const char *dir, const char *name, bool sync, bool *created,
                                                int *out_fd);
/* vm_new_uuid writes a random (version 4) UUID in canonical text. */
VMENC_INTERNAL vmenc_status vm_new_uuid(char out[VMENC_VM_UUID_LEN + 1]);
VMENC_INTERNAL void vm_retain(vmenc_vm *vm);
/* vm_release drops a reference (vmenc_vm_free is this for callers). */
VMENC_INTERNAL void vm_release(vmenc_vm *vm);
VMENC_INTERNAL bool vm_is_encrypted(const vmenc_vm *vm);
/* vm_sealed_encrypted: does the sealed disk list call this disk encrypted
 * (state encrypted or rekeying: every byte is under a key, and will be)? */
VMENC_INTERNAL bool vm_sealed_encrypted(const vm_disk_desc *d);
/* vm_find_disk returns the index of |disk_id| or -1. Lock held. */
VMENC_INTERNAL int vm_find_disk(const vmenc_vm *vm, const char *disk_id);
/* vm_wrap_ctx fills a wrap context for the VM home or a disk. */
VMENC_INTERNAL void vm_wrap_ctx(vmenc_wrap_context *ctx, const char *uuid, const char *disk_id);
/* vm_write_config seals the secret entries (encrypted VM), syncs the vmx
 * struct into its kv and replaces NAME.vmx atomically. Lock held. */
VMENC_INTERNAL vmenc_status vm_write_config(vmenc_vm *vm);
/* vm_write_descriptor replaces DISK.vmdk atomically. */
VMENC_INTERNAL vmenc_status vm_write_descriptor(vmenc_vm *vm, const char *desc_name, const vm_disk_desc *d);
/* vm_new_wrapped makes a wrapped key for |dek| under (alias, kek_id) bound
 * to (uuid, disk_id) and proves it opens again to the same DEK. */
VMENC_INTERNAL vmenc_status vm_new_wrapped(vmenc_host *host, const char *alias, const char *kek_id,
                                           const vmenc_dek *dek, const char *uuid, const char *disk_id,
                                           vmenc_wrapped_key **out);
/* vm_new_wrapped_ctx is the same for any wrap context (core dumps, ...). */
VMENC_INTERNAL vmenc_status vm_new_wrapped_ctx(vmenc_host *host, const char *alias, const char *kek_id,
                                               const vmenc_dek *dek, const vmenc_wrap_context *ctx,
                                               vmenc_wrapped_key **out);
/* vm_xts_for_vswp derives the swap file's XTS context from the VM key. */
VMENC_INTERNAL vmenc_status vm_xts_for_vswp(const vmenc_dek *vm_key, vmenc_xts **out);
/* vm_state_file_name writes NAME.nvram / NAME.vmss / NAME-SnapshotN.vmsn /
 * NAME-SnapshotN.vmem / NAME.vswp. */
VMENC_INTERNAL vmenc_status vm_state_file_name(const char *vm_name, vmenc_vm_file_class cls, uint32_t index,
                                               char *out, size_t out_cap);
/* vm_state_file_class: is |file| one of VM |vm_name|'s sealable state
 * files (NAME.nvram, NAME.vmss, NAME-SnapshotN.vmsn/.vmem)? Which? */
VMENC_INTERNAL bool vm_state_file_class(const char *vm_name, const char *file, vmenc_vm_file_class *cls,
                                        uint32_t *index);
/* vm_copy_string copies |src| into |out| (VMENC_E_BUFFER_TOO_SMALL if it
 * does not fit; |out| then holds ""). */
VMENC_INTERNAL vmenc_status vm_copy_string(char *out, size_t out_cap, const char *src);

/* ---- the authority record (authority.c; docs/control.md) --------------------
 * Every function does nothing (VMENC_OK) when the host has no control
 * store. The VM lock is held by the caller. */

/* vm_host_set_control gives |host| a control store (taken over; any
 * previous one is freed). Call before any VM is opened on the host. */
VMENC_INTERNAL void vm_host_set_control(vmenc_host *host, ctl_store *store);

/* vm_authority_check_open reads the VM's record and checks the files read
 * (NAME.vmx, descriptors) against it: VMENC_E_AUTH with |reason| naming
 * the file for a plain home or disk the record calls encrypted, a key
 * record that is neither the recorded one nor an announced target (an
 * older generation: replay), a pending next key, policy or conversion no
 * recorded intent names. No record: nothing pending is believed, and the
 * name must not be another recorded VM's. Needs no key. */
VMENC_INTERNAL vmenc_status vm_authority_check_open(vmenc_vm *vm, char *reason, size_t reason_cap);
/* vm_authority_settle_open, after the keys are loaded (the sealed data
 * verified): creates the record of a VM this host had none of, or folds
 * in a write whose record update a crash cut off. */
VMENC_INTERNAL vmenc_status vm_authority_settle_open(vmenc_vm *vm);
/* The write hooks (vm_write_config, vm_write_descriptor): before announces
 * the state about to be written as a target (durable before it returns),
 * after folds the written state into the facts. */
VMENC_INTERNAL vmenc_status vm_authority_before_config(vmenc_vm *vm);
VMENC_INTERNAL vmenc_status vm_authority_after_config(vmenc_vm *vm);
VMENC_INTERNAL vmenc_status vm_authority_before_descriptor(vmenc_vm *vm, const vm_disk_desc *d);
VMENC_INTERNAL vmenc_status vm_authority_after_descriptor(vmenc_vm *vm, const vm_disk_desc *d);
/* Operations that span several writes: begin records |op| (kind,
 * direction, targets; targets already announced are kept) before the
 * first datastore change; turn records a rollback's direction; end folds
 * the VM in memory into the facts and clears the operation (what the
 * files still hold pending stays announced). VMENC_E_BAD_STATE: another
 * operation is recorded; VMENC_E_CONFLICT: the record changed under this
 * VM object (another process). */
VMENC_INTERNAL vmenc_status vm_authority_begin_op(vmenc_vm *vm, const ctl_vm_op *op);
VMENC_INTERNAL vmenc_status vm_authority_turn_op(vmenc_vm *vm, ctl_op_dir direction);
VMENC_INTERNAL vmenc_status vm_authority_end_op(vmenc_vm *vm);
/* vm_authority_record: the VM's record as last read or written (NULL if
 * none); lives until the next authority call on the VM. */
VMENC_INTERNAL const ctl_vm_record *vm_authority_record(const vmenc_vm *vm);
/* vm_authority_sf_anchor fills |out| with the anchor of |vm|'s sealed
 * state files (statefile.h): an existing file's ID must be the one the
 * record names (or the one announced while a write is in flight; a record
 * from before version 2 accepts any until the VM's next open anchors it),
 * else VMENC_E_AUTH with vm->error_detail naming the file; a write
 * session's new ID is announced before and settled after. Callbacks made
 * from a write (|in_write|) take the VM lock; the others expect it held.
 * Without a control store only the write budget is set. */
VMENC_INTERNAL void vm_authority_sf_anchor(vmenc_vm *vm, vm_sf_anchor *out);
/* vm_authority_forget deletes the VM's record (a VM migrated away, a
 * create undone). */
VMENC_INTERNAL vmenc_status vm_authority_forget(vmenc_vm *vm);

/* ---- rollback of a conversion at the VM level (vm_ops.c) ----------------------
 * A rollback says durably which way it goes before it turns a disk round,
 * so a retry continues it instead of turning it back, and once no disk
 * converts any more it takes the VM back too: the storage policy whose
 * application it cancelled is no longer pending, and a home that policy
 * encrypted goes back to plain (docs/reencryption.md). */

/* vm_rollback_begin records (sealed in the configuration, durable) that
 * disk entry |e|'s conversion is being rolled back - unless the record says
 * it has turned already, then *out_turned is set and nothing is written (a
 * retried rollback continues the first). VM lock held. */
VMENC_INTERNAL vmenc_status vm_rollback_begin(vmenc_vm *vm, const vm_disk_entry *e, bool *out_turned);
/* vm_rollback_settle finishes a rollback at the VM level once no disk
 * converts any more (nothing to do otherwise). Takes the VM lock. Audited
 * as "vm.rollback" for |principal|. */
VMENC_INTERNAL vmenc_status vm_rollback_settle(vmenc_vm *vm, const char *principal);

/* ---- core dumps (coredump.c) ------------------------------------------------ */

/* cd_rotate is vmenc_coredump_rotate_host_key with a fault hook for the
 * crash tests: after |fail_after| dumps have been re-wrapped, it stops as a
 * crash would (VMENC_E_INTERRUPTED, rotation left pending). UINT32_MAX =
 * never. */
VMENC_INTERNAL vmenc_status cd_rotate(vmenc_coredump_store *store, const char *principal, const char *provider,
                                      const char *kek_id, uint32_t fail_after, uint32_t *out_num);

#endif /* VMENC_LIB_VM_VM_INTERNAL_H */
