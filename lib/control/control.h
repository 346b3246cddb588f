/*
 * lib/control/control.h - the control store (DESIGN.md §11): the one
 * authority, outside the datastore, for what each VM is (encrypted or not,
 * under which key record and key generation, which KEK, which storage
 * policy) and which operation on it is half done. A store is a backend
 * behind an ops table in the style of the KMS providers (struct_size +
 * abi_version, a base struct embedded in the backend's state, the
 * registration table at the end of the backend's file), so the cluster
 * issue can put etcd behind the same interface; today there is the local
 * backend (lib/control/local.c: one MAC'd file per VM under a host
 * directory). Format and rules: docs/control.md.
 *
 * Safety rule: intent first. An operation records what it is about to do
 * (ctl_vm_begin_op) and that write is durable before the caller touches the
 * datastore; open, resume and rollback follow the record, and datastore
 * state that contradicts it is refused with VMENC_E_AUTH.
 *
 * Not installed; not part of the ABI (yet: the shapes are kept so a public
 * backend API can follow).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_CONTROL_CONTROL_H
#define VMENC_LIB_CONTROL_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"
#include "vmenc/keys.h"
#include "vmenc/policy.h"

#define CTL_STORE_ABI_VERSION 1u
#define CTL_HASH_BYTES 32u                 /* BLAKE2b-256 */
#define CTL_MAC_KEY_BYTES 32u
/* The VM layer's limits (include/vmenc/vm.h), repeated here because the
 * control layer sits below it; lib/vm/authority.c checks they agree. */
#define CTL_UUID_LEN 36u                   /* VMENC_VM_UUID_LEN */
#define CTL_VM_NAME_MAX 64u                /* VMENC_VM_NAME_MAX */
#define CTL_DISK_ID_MAX 16u                /* VMENC_DISK_ID_MAX */
#define CTL_MAX_DISKS 64u                  /* VMENC_VM_MAX_DISKS */
#define CTL_MAX_FILES 128u                 /* sealed state files a record anchors */
#define CTL_FILE_ID_BYTES 16u              /* VM_SF_FILE_ID_BYTES */

/* ---- the authority record -------------------------------------------------- */

/* What operation is in progress on the VM. Values are stored: append only. */
typedef enum ctl_op_kind {
    CTL_OP_NONE = 0,
    CTL_OP_CREATE = 1,
    CTL_OP_ENCRYPT = 2,
    CTL_OP_DECRYPT = 3,
    CTL_OP_REKEY_SHALLOW = 4,
    CTL_OP_REKEY_DEEP = 5,
    CTL_OP_APPLY_POLICY = 6,
    CTL_OP_ADD_DISK = 7,
    CTL_OP_REMOVE_DISK = 8,
    CTL_OP_CLONE = 9,
    /* 10 and 11 are reserved (never stored): a home rekey and a host-key
     * rotation of core dumps are not kinds of their own. A home rekey's
     * intent is the record's target key hash and generation, announced
     * before encryption.newKeySafe is written (and each state file's next
     * ID before its replacement), so open refuses any next key the record
     * did not announce and resume finishes the one it did; a core-dump
     * rotation is the host's, not a VM's, and its intent is the rotation
     * mark in the dump directory's coredump.cfg (docs/control.md,
     * "Operations without a kind"). */
} ctl_op_kind;
#define CTL_OP_KIND_MAX CTL_OP_CLONE

/* Which way the operation goes: a rollback records that it turned round, so
 * a retry continues the rollback instead of the operation. */
typedef enum ctl_op_dir {
    CTL_DIR_FORWARD = 0,
    CTL_DIR_ROLLBACK = 1,
} ctl_op_dir;

/* A disk as the authority knows it. |dek_hash| is ctl_key_record_hash of
 * the descriptor's vmenc.keySafe (all zero and has_dek_hash false for a
 * plain disk or when the operation that made it did not record it). */
typedef struct ctl_disk_fact {
    char disk_id[CTL_DISK_ID_MAX + 1];
    bool encrypted;
    bool has_dek_hash;
    uint8_t dek_hash[CTL_HASH_BYTES];
} ctl_disk_fact;

/* A sealed state file (NVRAM, suspend, snapshot state or memory) as the
 * authority knows it: the random file ID in its header, which feeds its
 * subkey and every record's AAD, so a file that opens under the ID named
 * here is the file's current version and not an older copy of it. While
 * a write that replaces the file (a new write session, a conversion) is in
 * flight, |next_id| is the ID the new file carries: the old file or the new
 * one may be on disk after a crash, and the next open settles which. A
 * file being made for the first time has only a next ID. */
typedef struct ctl_file_fact {
    uint8_t cls;                                 /* 1..4: vmenc_vm_file_class of a sealed state file */
    uint32_t index;                              /* snapshot index (0 for NVRAM and suspend state) */
    bool has_id;
    uint8_t file_id[CTL_FILE_ID_BYTES];
    bool has_next;
    uint8_t next_id[CTL_FILE_ID_BYTES];
} ctl_file_fact;

/* The facts: what the VM is now. */
typedef struct ctl_vm_facts {
    char name[CTL_VM_NAME_MAX + 1];
    bool encrypted;                              /* the home is encrypted (has a VM key) */
    uint8_t key_hash[CTL_HASH_BYTES];            /* ctl_key_record_hash(encryption.keySafe); zero when plain */
    uint64_t key_generation;                     /* +1 at every home rekey, shallow or deep */
    char kek_provider[VMENC_PROVIDER_ALIAS_MAX + 1]; /* of the VM key record; "" when plain */
    char kek_id[VMENC_KEY_ID_MAX + 1];
    char storage_policy[VMENC_POLICY_NAME_MAX + 1]; /* in force; "" = none */
    size_t num_disks;                            /* disks the authority knows (0..CTL_MAX_DISKS) */
    ctl_disk_fact disks[CTL_MAX_DISKS];
    /* Record version 2: the sealed state files. |files_anchored| says the
     * list is complete (every sealed state file of the VM is in it); a
     * record written before version 2 has it false and gets it, with the
     * IDs then on disk, at the VM's next open. */
    bool files_anchored;
    size_t num_files;                            /* 0..CTL_MAX_FILES */
    ctl_file_fact files[CTL_MAX_FILES];
} ctl_vm_facts;

/* One disk's part of an operation in progress. */
typedef struct ctl_disk_op {
    char disk_id[CTL_DISK_ID_MAX + 1];
    bool has_target_dek;                         /* the disk gets a new DEK record */
    uint8_t target_dek_hash[CTL_HASH_BYTES];     /* ctl_key_record_hash of its vmenc.newKeySafe / next keySafe */
    uint64_t cvt_id;                             /* the in-place conversion's ID (0: none) */
    /* While one descriptor write is in flight: what the entry allowed
     * before it (the old file may still be the one on disk after a
     * crash). Cleared when the write is done. */
    bool has_prev;
    bool prev_has_target_dek;
    uint8_t prev_target_dek_hash[CTL_HASH_BYTES];
    uint64_t prev_cvt_id;
} ctl_disk_op;

/* The operation in progress. Kind CTL_OP_NONE with targets set is a single
 * file write in flight: the VM layer announces the key record, policy or
 * disk state a file is about to hold before it replaces the file, and
 * clears the announcement after (lib/vm/authority.c). Kind CTL_OP_NONE has
 * no direction. */
typedef struct ctl_vm_op {
    ctl_op_kind kind;
    ctl_op_dir direction;
    bool has_target_key;                         /* the home gets a new VM key record */
    uint8_t target_key_hash[CTL_HASH_BYTES];     /* ctl_key_record_hash of encryption.newKeySafe / next keySafe */
    uint64_t target_generation;                  /* the key generation once it is done */
    bool has_target_policy;                      /* the storage policy being applied */
    char target_policy[VMENC_POLICY_NAME_MAX + 1];
    size_t num_disks;
    ctl_disk_op disks[CTL_MAX_DISKS];
    /* While one .vmx write is in flight: the target key record it
     * replaced (the old file may still name it after a crash). */
    bool has_prev_target_key;
    uint8_t prev_target_key_hash[CTL_HASH_BYTES];
} ctl_vm_op;

/* ctl_vm_record: one VM's authority record. |revision| is the store's
 * revision of the record as read (0: never stored); a put must name it. */
typedef struct ctl_vm_record {
    char uuid[CTL_UUID_LEN + 1];
    ctl_vm_facts facts;
    ctl_vm_op op;
    uint64_t revision;
} ctl_vm_record;

/* ctl_vm_record_init zeroes |rec| and sets its UUID and name (both
 * checked: VMENC_E_INVALID_ARG). */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_vm_record_init(ctl_vm_record *rec, const char *uuid,
                                                                const char *name);

/* ctl_key_record_hash: BLAKE2b-256 (with a domain label) of a wrapped key
 * record's binary form, the value the record keeps for a VM key or DEK
 * record. VMENC_E_INVALID_ARG for NULL; VMENC_E_NOMEM. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_key_record_hash(const vmenc_wrapped_key *wk,
                                                                 uint8_t out[CTL_HASH_BYTES]);

/* ctl_vm_find_disk: index of |disk_id| in the facts / the operation, or -1. */
VMENC_INTERNAL int ctl_vm_facts_find_disk(const ctl_vm_facts *f, const char *disk_id);
VMENC_INTERNAL int ctl_vm_op_find_disk(const ctl_vm_op *op, const char *disk_id);
/* ctl_vm_facts_find_file: index of state file (|cls|, |index|), or -1. */
VMENC_INTERNAL int ctl_vm_facts_find_file(const ctl_vm_facts *f, uint8_t cls, uint32_t index);

VMENC_INTERNAL const char *ctl_op_kind_name(ctl_op_kind kind);

/* ---- the record's bytes (record.c; a parser of stored bytes, fuzzed) ------- */

/* ctl_record_encode writes the canonical binary form of |rec| (revision
 * included; no MAC: the backend adds its own) into a new malloc'd buffer.
 * VMENC_E_INVALID_ARG for a record that breaks a field rule. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_record_encode(const ctl_vm_record *rec, uint8_t **out,
                                                               size_t *out_len);
/* ctl_record_decode parses |len| bytes (bounded cursor; pure) into |out|.
 * VMENC_E_PARSE / VMENC_E_TRUNCATED / VMENC_E_BAD_MAGIC /
 * VMENC_E_BAD_VERSION / VMENC_E_TRAILING_DATA / VMENC_E_TOO_LARGE for
 * anything not canonical; |out| is then zeroed. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_record_decode(const uint8_t *data, size_t len,
                                                               ctl_vm_record *out);

/* ---- the store interface ---------------------------------------------------- */

typedef struct ctl_store ctl_store;

/* ctl_list_fn is called once per record by list; a nonzero return stops
 * the walk (list then returns VMENC_E_INTERRUPTED). */
typedef int (*ctl_list_fn)(void *arg, const ctl_vm_record *rec);

/* A backend's ops. The library calls a member only if it lies within
 * |struct_size| and is non-NULL (else VMENC_E_UNIMPLEMENTED); tables smaller
 * than the first version or with abi_version 0 are refused
 * (VMENC_E_ABI_VERSION). Members are only ever appended. */
typedef struct ctl_store_ops {
    uint32_t struct_size;   /* sizeof(ctl_store_ops) the backend was built with */
    uint32_t abi_version;   /* CTL_STORE_ABI_VERSION */
    const char *type_name;  /* "local", "etcd" */
    /* get_vm: the record and its revision; VMENC_E_NOT_FOUND if none;
     * VMENC_E_AUTH if the stored record fails its MAC. */
    vmenc_status (*get_vm)(ctl_store *s, const char *uuid, ctl_vm_record *out);
    /* put_vm: compare-and-swap. Stores |rec| if the stored revision is
     * |expected_revision| (0: no record may exist), durable before it
     * returns; the new revision goes to |*out_revision|. A lost race is
     * VMENC_E_CONFLICT and changes nothing. */
    vmenc_status (*put_vm)(ctl_store *s, const ctl_vm_record *rec, uint64_t expected_revision,
                           uint64_t *out_revision);
    /* delete_vm: compare-and-swap removal (VMENC_E_NOT_FOUND, VMENC_E_CONFLICT). */
    vmenc_status (*delete_vm)(ctl_store *s, const char *uuid, uint64_t expected_revision);
    /* list_vms: every record (any order). A record failing its MAC stops
     * the walk with VMENC_E_AUTH. */
    vmenc_status (*list_vms)(ctl_store *s, ctl_list_fn fn, void *arg);
    /* destroy frees the backend (NULL-safe at the ctl_store_free level). */
    void (*destroy)(ctl_store *s);
} ctl_store_ops;

/* The base struct a backend embeds first in its state. */
struct ctl_store {
    uint32_t struct_size;   /* sizeof(ctl_store) */
    const ctl_store_ops *ops;
};

/* The front: argument checks, the size/ABI rule, then the backend. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_store_get_vm(ctl_store *s, const char *uuid, ctl_vm_record *out);
/* ctl_store_put_vm: on success |*out_revision| (may be NULL) is the new
 * revision. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_store_put_vm(ctl_store *s, const ctl_vm_record *rec,
                                                              uint64_t expected_revision, uint64_t *out_revision);
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_store_delete_vm(ctl_store *s, const char *uuid,
                                                                 uint64_t expected_revision);
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_store_list_vms(ctl_store *s, ctl_list_fn fn, void *arg);
VMENC_INTERNAL void ctl_store_free(ctl_store *s);

/* ---- intent first (control.c) ------------------------------------------------ */

/* ctl_vm_begin_op records |op| as the operation in progress of |rec| (as
 * read: its revision is the CAS's expected one) and makes it durable; on
 * success |rec| holds the stored record (new revision). VMENC_E_BAD_STATE
 * if another operation is in progress (|op->kind| differs from it or
 * |op->kind| is CTL_OP_NONE); VMENC_E_CONFLICT if the record changed since
 * it was read. The caller touches the datastore only after VMENC_OK. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_vm_begin_op(ctl_store *s, ctl_vm_record *rec,
                                                             const ctl_vm_op *op);
/* ctl_vm_turn_op records that the operation in progress now goes
 * |direction| (a rollback turning round), durably. VMENC_E_BAD_STATE when
 * no operation is in progress. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_vm_turn_op(ctl_store *s, ctl_vm_record *rec, ctl_op_dir direction);
/* ctl_vm_end_op clears the operation in progress and stores the VM's new
 * facts (|facts| NULL: keep rec->facts as the caller edited them), durably.
 * On success |rec| holds the stored record. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_vm_end_op(ctl_store *s, ctl_vm_record *rec,
                                                           const ctl_vm_facts *facts);

/* ---- the local backend (local.c) ---------------------------------------------- */

/* ctl_local_new opens the local store over directory |dir| (created, mode
 * 0700, with a "vms" folder, if missing): one file per VM,
 * DIR/vms/<uuid>, each the record's bytes followed by a BLAKE2b-256 MAC
 * under |mac_key| (CTL_MAC_KEY_BYTES, copied to secure memory). Writes go
 * through vmenc_fs_atomic_write and, when |sync|, are fsync'd with their
 * directory before put returns. A store lock (DIR/vms/.lock, an exclusive
 * lock held for each CAS) serialises processes. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_local_new(const char *dir, const uint8_t *mac_key, size_t key_len,
                                                           bool sync, ctl_store **out);

#endif /* VMENC_LIB_CONTROL_CONTROL_H */
