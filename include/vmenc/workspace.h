/*
 * vmenc/workspace.h - a workspace: one directory that holds everything a
 * host needs to run encrypted VMs, loaded in one call. The CLI, the nbdkit
 * plugin and the language bindings all start here.
 *
 * A workspace directory holds:
 *   vmenc.conf      the configuration (text; format: docs/workspace.md):
 *                   key-provider clusters and their endpoints (file, KMIP,
 *                   PKCS#11), host identity, datastore, policy document,
 *                   audit log and its wrapped chain key. Never a secret in
 *                   clear: passphrases and PINs come from the caller or from
 *                   secret files the configuration names.
 *   keystore.vks    the embedded file key provider (created by
 *                   vmenc_workspace_create; passphrase from the caller)
 *   policy.json     the policy document (docs/policy.md), sealed: the
 *                   canonical JSON, then one "#vmenc-seal v1 ..." line
 *                   carrying a MAC under a key derived from the audit
 *                   chain key, bound to the workspace ID (docs/workspace.md)
 *   audit.log       the hash-chained audit log (docs/audit.md)
 *   datastore/      one folder per VM: datastore/NAME/NAME.vmx ...
 *
 * The audit chain key is a random 64-byte secret, wrapped (AES-256-GCM)
 * under a KEK of the audit key provider and bound to the workspace ID and
 * the purpose "audit-chain"; only the wrapped record is stored (in the
 * configuration). Opening the workspace unwraps it through the key manager,
 * so whoever can verify or extend the log needs the key provider, exactly
 * like whoever can read a VM.
 *
 * vmenc_workspace_open builds, in order: the key manager with one cluster
 * per [kms] section, the audit chain key (unwrapped), the policy (its seal
 * verified, then vmenc_policy_load_json), the audit log and dispatcher, and
 * the vmenc_host. The objects it hands out through the accessors are owned
 * by the workspace and live until vmenc_workspace_free.
 *
 * Persistence: every change to the workspace's policy - a VM created,
 * cloned, registered or removed, a disk added, a grant, a role, a host
 * encryption mode switch - is sealed and written to policy.json atomically
 * (temporary file, fsync, rename, fsync of the directory; no fsync under
 * VMENC_WORKSPACE_OPEN_NO_SYNC) by the call that makes it, before that
 * call returns, whichever front end made it. If the write fails, the call
 * fails and the policy in memory is as it was before. There is nothing to
 * save (vmenc_workspace_save_policy is kept for compatibility only).
 *
 * Many processes may have one workspace open at once; nothing is locked for
 * the life of a handle. Every policy change is a compare-and-swap: under
 * the lock file "<policy>.lock" the call re-reads the document, and if
 * another process committed since, decides (authorization included) and
 * applies its one change on that newer document, then writes the next
 * generation - no update is lost; a change that no longer applies fails
 * with its natural status (VMENC_E_EXISTS, VMENC_E_NOT_FOUND, ...). A key
 * provider added or removed (vmenc.conf) fails with VMENC_E_CONFLICT if
 * another process changed the configuration since this handle read it.
 * The audit log is shared: each record is appended under the log's lock
 * and chained to the file's real last record (VMENC_AUDIT_LOG_SHARED), so
 * all processes write one chain. A writer waits at most
 * vmenc_workspace_open_options.lock_timeout_ms for another process, then
 * fails with VMENC_E_LOCKED; vmenc_workspace_lock_holder names the holder.
 * Reading (status, policy show, audit show) takes no lock beyond the few
 * microseconds of an audit append.
 *
 * Thread safety: the accessors and every object they return are as safe as
 * their own headers say (host, policy, key manager and audit dispatcher are
 * safe to share). vmenc_workspace_add_kms and _remove_kms serialise on an
 * internal mutex; policy changes serialise on the policy's write lock. vmenc_workspace_free must not race with
 * anything.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_WORKSPACE_H
#define VMENC_WORKSPACE_H

#include "vmenc/common.h"
#include "vmenc/audit.h"
#include "vmenc/kms.h"
#include "vmenc/kms_file.h"
#include "vmenc/migration.h"
#include "vmenc/policy.h"
#include "vmenc/vm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmenc_workspace vmenc_workspace;

/* File names inside a workspace directory. */
#define VMENC_WORKSPACE_CONFIG_NAME "vmenc.conf"
/* Largest configuration file accepted (VMENC_E_TOO_LARGE above). */
#define VMENC_WORKSPACE_MAX_CONFIG ((size_t)1 << 20)
/* Longest configuration line, LF excluded (VMENC_E_TOO_LARGE above). */
#define VMENC_WORKSPACE_MAX_LINE 4096u
/* At most this many [kms] sections, endpoints per section, options per
 * section (VMENC_E_LIMIT above). */
#define VMENC_WORKSPACE_MAX_KMS 64u
#define VMENC_WORKSPACE_MAX_ENDPOINTS 16u
#define VMENC_WORKSPACE_MAX_OPTIONS 32u
/* Size of the path and message buffers in vmenc_workspace_error. */
#define VMENC_WORKSPACE_PATH_MAX 1024u
#define VMENC_WORKSPACE_MESSAGE_MAX 512u

/* Where a workspace was rejected (caller memory; struct_size first). */
typedef struct vmenc_workspace_error {
    uint32_t struct_size;                   /* sizeof(vmenc_workspace_error) */
    vmenc_status status;                    /* the status the call returned */
    char file[VMENC_WORKSPACE_PATH_MAX];    /* the file at fault, "" if none */
    uint32_t line;                          /* 1-based line in |file|, 0 if not about a line */
    char message[VMENC_WORKSPACE_MESSAGE_MAX]; /* one sentence: the reason */
} vmenc_workspace_error;

/* ---- create --------------------------------------------------------------- */

/* vmenc_workspace_create_options: set struct_size.
 * - passphrase, passphrase_len: the embedded file keystore's passphrase
 *   (1..1024 bytes; required). Never stored.
 * - admin: the user granted the Admin role on the inventory root (required).
 * - host_id: the host's inventory name; NULL = "host1".
 * - key_provider: alias of the embedded file provider; NULL = "native".
 * - folder: the VM folder new VMs go to; NULL = "vms".
 * - kdf_opslimit, kdf_memlimit_kib: Argon2id cost of the keystore; 0 = the
 *   keystore defaults (3 passes, 64 MiB). Lower values are for tests.
 * - flags: VMENC_WORKSPACE_CREATE_* below. */
typedef struct vmenc_workspace_create_options {
    uint32_t struct_size;
    const uint8_t *passphrase;
    size_t passphrase_len;
    const char *admin;
    const char *host_id;
    const char *key_provider;
    const char *folder;
    uint32_t kdf_opslimit;
    uint32_t kdf_memlimit_kib;
    uint32_t flags;
} vmenc_workspace_create_options;

/* Also add the storage policies vSphere ships: "VM Encryption Policy" (VM
 * home and disks, the embedded provider, migration encryption required)
 * and the plain "Datastore Default". */
#define VMENC_WORKSPACE_CREATE_DEFAULT_POLICY (1u << 0)

/* vmenc_workspace_create makes a new workspace in |dir| (created if
 * missing; if it exists it must be empty): the keystore, a KEK for the
 * audit chain key, the policy document (root "root", a datacenter "dc",
 * the host, the VM folder, the admin user with Admin on the root), the
 * configuration, an empty audit log whose first record is
 * "workspace.create", and the datastore folder. Fails with
 * VMENC_E_INVALID_ARG / VMENC_E_ABI_VERSION (bad options), VMENC_E_EXISTS
 * (|dir| not empty), VMENC_E_IO / VMENC_E_NO_SPACE, VMENC_E_NOMEM; |err|
 * (may be NULL) then says which file and why. A failure leaves |dir| as
 * it was only if the call created it (it is removed again). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_create(const char *dir,
                                                               const vmenc_workspace_create_options *opts,
                                                               vmenc_workspace_error *err);

/* ---- open ------------------------------------------------------------------- */

/* vmenc_workspace_open_options: set struct_size.
 * - passphrase, passphrase_len: the passphrase of every file key provider
 *   whose section has no secret_file (the embedded one); may be NULL if
 *   there is none. Copied to secure memory by the providers; the caller may
 *   wipe its copy when the call returns.
 * - audit_log: NULL = the configuration's log; else a file name (no '/')
 *   in the workspace directory: a chain of its own under the same key
 *   (no longer needed to run alongside other processes: the log is shared,
 *   see "Many processes" above).
 * - lock_timeout_ms: how long a write waits for another process's lock
 *   (an audit append, a policy change, a configuration change); 0 = one
 *   try, VMENC_E_LOCKED at once.
 * - flags: VMENC_WORKSPACE_OPEN_* below. */
typedef struct vmenc_workspace_open_options {
    uint32_t struct_size;
    const uint8_t *passphrase;
    size_t passphrase_len;
    const char *audit_log;
    uint32_t lock_timeout_ms;
    uint32_t flags;
} vmenc_workspace_open_options;

/* Skip fsync on VM data and audit records (tests and benchmarks only). */
#define VMENC_WORKSPACE_OPEN_NO_SYNC (1u << 0)

/* vmenc_workspace_open loads the workspace in |dir| (|opts| may be NULL
 * for "no passphrase, defaults"). Fails with:
 *   VMENC_E_NOT_FOUND          no vmenc.conf in |dir|
 *   VMENC_E_PARSE / _TOO_LARGE / _BAD_VERSION / _BAD_ENCODING / _LIMIT /
 *   _EXISTS / _NOT_FOUND       a bad configuration (|err|: file, line, reason)
 *   VMENC_E_POLICY_INVALID ... the policy document (|err|: file, reason and
 *                              the JSON path)
 *   VMENC_E_WRONG_PASSPHRASE   the keystore's passphrase
 *   VMENC_E_AUTH               the audit key record or a keystore tampered;
 *                              or the policy document was not written by
 *                              this workspace's library (a changed byte, a
 *                              document of another workspace, no seal):
 *                              |err->file| names it, |err->message| says how
 *                              to recover (vmenc_workspace_reseal_policy),
 *                              and the refusal is audited ("policy.verify")
 *   VMENC_E_KMS_UNAVAILABLE... the audit key's provider cannot be reached
 *   VMENC_E_LOCKED             the audit log was held by another writer for
 *                              longer than lock_timeout_ms
 *   VMENC_E_AUDIT_TAMPERED     the audit log's last record is damaged
 *   VMENC_E_IO, VMENC_E_NOMEM
 * A key provider other than the audit key's that cannot be built (its
 * secret_file or keystore file missing, a PKCS#11 module absent) does not
 * fail the open: its cluster is added without that endpoint (empty if the
 * secret is missing), VMs that need it open locked (VMENC_E_VM_LOCKED,
 * vmenc_vm_get_missing_key names the provider), and
 * vmenc_workspace_get_kms_info reports it - load_status and a load_detail
 * naming the provider and the file - so it can be listed, fixed or removed
 * (vmenc_workspace_remove_kms). A wrong passphrase or a malformed option
 * still fails the open. On failure |*out| is untouched. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_open(const char *dir,
                                                             const vmenc_workspace_open_options *opts,
                                                             vmenc_workspace_error *err,
                                                             vmenc_workspace **out);

/* vmenc_workspace_free has nothing to save (policy changes were written
 * when they were made), frees the host, the audit dispatcher and log, the policy and the
 * key manager, and wipes the audit key and the passphrase. VMs, disks and
 * state files opened through the host must be freed first. NULL is allowed. */
VMENC_API void vmenc_workspace_free(vmenc_workspace *ws);

/* ---- accessors (borrowed; they live as long as |ws|; NULL for a NULL |ws|) -- */

/* vmenc_workspace_host returns the host every VM operation goes through. */
VMENC_API vmenc_host *vmenc_workspace_host(const vmenc_workspace *ws);
/* vmenc_workspace_policy returns the policy loaded from the document. */
VMENC_API vmenc_policy *vmenc_workspace_policy(const vmenc_workspace *ws);
/* vmenc_workspace_keymgr returns the key manager (one cluster per [kms]). */
VMENC_API vmenc_keymgr *vmenc_workspace_keymgr(const vmenc_workspace *ws);
/* vmenc_workspace_audit returns the audit dispatcher (the log is its sink). */
VMENC_API vmenc_audit *vmenc_workspace_audit(const vmenc_workspace *ws);
/* vmenc_workspace_dir returns the workspace directory as given to open. */
VMENC_API const char *vmenc_workspace_dir(const vmenc_workspace *ws);
/* vmenc_workspace_datastore_dir returns the datastore directory (absolute
 * or relative to the working directory, as resolved from the config). */
VMENC_API const char *vmenc_workspace_datastore_dir(const vmenc_workspace *ws);
/* vmenc_workspace_folder returns the inventory folder new VMs go to. */
VMENC_API const char *vmenc_workspace_folder(const vmenc_workspace *ws);
/* vmenc_workspace_id returns the workspace's UUID (from the config). */
VMENC_API const char *vmenc_workspace_id(const vmenc_workspace *ws);
/* vmenc_workspace_audit_log_path returns the path of the log this
 * workspace appends to. */
VMENC_API const char *vmenc_workspace_audit_log_path(const vmenc_workspace *ws);

/* vmenc_workspace_lock_holder copies who held the workspace lock this handle
 * last gave up on (a call failed with VMENC_E_LOCKED after waiting
 * lock_timeout_ms): the holder's record - host, PID, program, what it does,
 * since when - and the lock file. VMENC_E_NOT_FOUND if no wait has failed;
 * VMENC_E_BUFFER_TOO_SMALL (nothing copied) if |out_cap| is too small;
 * VMENC_WORKSPACE_MESSAGE_MAX always suffices. Thread-safe. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_lock_holder(vmenc_workspace *ws, char *out, size_t out_cap);
/* vmenc_workspace_audit_key_provider returns the alias of the cluster
 * whose KEK wraps the audit chain key. */
VMENC_API const char *vmenc_workspace_audit_key_provider(const vmenc_workspace *ws);

/* ---- VMs -------------------------------------------------------------------- */

/* vmenc_workspace_vm_home writes the home directory of VM |name|
 * (datastore/NAME) and vmenc_workspace_vm_path its configuration
 * (datastore/NAME/NAME.vmx) to |out| (NUL-terminated, capacity |out_cap|).
 * Neither checks that the VM exists. VMENC_E_BAD_PATH for a name that is
 * not a VM name (vm.h), VMENC_E_BUFFER_TOO_SMALL. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_vm_home(const vmenc_workspace *ws, const char *name,
                                                                char *out, size_t out_cap);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_vm_path(const vmenc_workspace *ws, const char *name,
                                                                char *out, size_t out_cap);

/* vmenc_workspace_open_vm opens VM |name| of the datastore for |principal|
 * (vmenc_vm_open, including the locked case: VMENC_E_VM_LOCKED with |*out|
 * set to a locked VM the caller frees). VMENC_E_NOT_FOUND if there is no
 * such VM in the datastore. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_open_vm(vmenc_workspace *ws, const char *principal,
                                                                const char *name, vmenc_vm **out);

/* vmenc_workspace_vm_callback receives each VM name (valid during the call);
 * a nonzero return stops the walk. */
typedef int (*vmenc_workspace_vm_callback)(void *ctx, const char *name);

/* vmenc_workspace_foreach_vm calls |cb| for every VM in the datastore (a
 * folder NAME holding NAME.vmx), in name order. No policy check: it reads
 * directory names only. VMENC_E_IO, VMENC_E_NOMEM. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_foreach_vm(vmenc_workspace *ws,
                                                                   vmenc_workspace_vm_callback cb,
                                                                   void *ctx);

/* vmenc_workspace_vm_spec describes a VM to create with its disks: set
 * struct_size.
 * - name: the VM's name (vm.h's rules); its home is datastore/NAME.
 * - folder: the inventory folder; NULL = vmenc_workspace_folder.
 * - storage_policy, kek_id, memory_bytes: as vmenc_vm_create_options.
 * - disk_capacities: |num_disks| disk sizes in bytes (may be NULL when
 *   |num_disks| is 0); each a positive multiple of |sector_size| and at
 *   most VMENC_DISK_MAX_CAPACITY.
 * - sector_size: 512 or 4096; 0 = 512.
 * - flags: none defined yet (0). */
typedef struct vmenc_workspace_vm_spec {
    uint32_t struct_size;
    const char *name;
    const char *folder;
    const char *storage_policy;
    const char *kek_id;
    uint64_t memory_bytes;
    const uint64_t *disk_capacities;
    size_t num_disks;
    uint32_t sector_size;
    uint32_t flags;
} vmenc_workspace_vm_spec;

/* vmenc_workspace_create_vm creates VM |spec->name| in the datastore for
 * |principal| (vmenc_vm_create, then vmenc_vm_add_disk per disk; each step
 * authorized and audited by the VM layer) - all or nothing. Every argument,
 * every disk size included, is checked before anything is created: a size
 * that is not a multiple of the sector fails with VMENC_E_INVALID_ARG and
 * |err->message| says which disk, the size and the sector. A step that fails
 * later (a denied disk, a full file system, a key provider down) removes
 * what the call made - the disks, the home, the inventory entry, the
 * authority record - so a retry with the same name works; the rollback is
 * audited ("vm.create_rollback"). The KEK a failed create made is not
 * destroyed (it may already be in a provider's backup). Other failures: as
 * vmenc_vm_create and vmenc_vm_add_disk; |err| (may be NULL) names the
 * step. On success |*out| (may be NULL: the VM is closed) is the open VM. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_create_vm(vmenc_workspace *ws, const char *principal,
                                                                  const vmenc_workspace_vm_spec *spec,
                                                                  vmenc_workspace_error *err, vmenc_vm **out);

/* Flags of vmenc_workspace_delete_vm. */
/* Keep the VM's files in the datastore (remove it from the inventory and the
 * control store only, like vmenc_workspace_unregister_vm but audited as a
 * delete and needing VirtualMachine.Inventory.Delete). */
#define VMENC_WORKSPACE_DELETE_KEEP_FILES (1u << 0)
/* Crypto-shredding: also destroy, at its key provider, every KEK the VM
 * uses (its VM key's and its disks') that no other VM and no other record of
 * this workspace uses - not the audit chain key's KEK, not the KEK of
 * another VM's record or configuration. Needs Cryptographer.ManageKeys on
 * the root too. After it no copy of the VM's files - a backup made before
 * the delete included - can be decrypted, unless the provider itself keeps
 * a copy of the key (a keystore backup, an HSM's replica). */
#define VMENC_WORKSPACE_DELETE_DESTROY_KEYS (1u << 1)
/* Decide and plan only: authorize (the decision is audited as usual), fill
 * |out_result| with what would be removed and destroyed, change nothing. */
#define VMENC_WORKSPACE_DELETE_DRY_RUN (1u << 2)

/* What vmenc_workspace_delete_vm did or, under DRY_RUN, would do (caller
 * memory; set struct_size; filled as far as the call got, on failure too). */
typedef struct vmenc_workspace_delete_result {
    uint32_t struct_size;                        /* sizeof(vmenc_workspace_delete_result) */
    uint32_t num_files;                          /* files removed from the VM home */
    uint64_t num_bytes;                          /* their size in bytes */
    uint32_t num_keys;                           /* distinct KEKs the VM uses */
    uint32_t num_keys_destroyed;                 /* of which destroyed at their provider */
    uint32_t num_keys_kept;                      /* of which kept (used elsewhere, or no DESTROY_KEYS) */
    char key_provider[VMENC_PROVIDER_ALIAS_MAX + 1]; /* the VM key's provider; "" for a plain VM */
    char kek_id[VMENC_KEY_ID_MAX + 1];           /* the VM key's KEK ID; "" for a plain VM */
    char message[VMENC_WORKSPACE_MESSAGE_MAX];   /* why a key was kept or the step that failed; "" */
} vmenc_workspace_delete_result;

/* vmenc_workspace_delete_vm removes VM |name| for |principal|: from the
 * datastore (its home and every file in it, unless KEEP_FILES), from this
 * host's control store (its authority record) and from the inventory (the
 * policy document, committed before the call returns). Policy:
 * VirtualMachine.Inventory.Delete on the VM; with DESTROY_KEYS also
 * Cryptographer.ManageKeys on the root (both checked before anything is
 * touched). Audited as "vm.delete" (denied, failed or success, with the
 * VM's key provider and KEK ID) and, per KEK destroyed or kept,
 * "kms.destroy_key". A VM whose keys cannot be fetched (locked) can be
 * deleted. The VM must not be open for writing in another process
 * (VMENC_E_LOCKED names the holder through vmenc_vm_get_lock_holder's
 * rules; nothing is removed). Order: keys first (so a provider that cannot
 * destroy - VMENC_E_UNIMPLEMENTED - fails the call before any file goes),
 * then the files, the record, the inventory entry. Fails with
 * VMENC_E_INVALID_ARG (unknown flag), VMENC_E_BAD_PATH (not a VM name),
 * VMENC_E_NOT_FOUND (no such VM in the inventory or the datastore),
 * VMENC_E_DENIED (|out_result->message| names the privilege), the key
 * provider's failures, VMENC_E_IO. |out_result| may be NULL. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_delete_vm(vmenc_workspace *ws, const char *principal,
                                                                  const char *name, uint32_t flags,
                                                                  vmenc_workspace_delete_result *out_result);

/* vmenc_workspace_unregister_vm removes VM |name| from the inventory and
 * this host's control store and keeps its files and keys (the inverse of
 * vmenc_vm_register: the home can be registered again, here or on another
 * host of the same key providers). Policy VirtualMachine.Inventory.Unregister
 * on the VM; audited "vm.unregister". Fails with VMENC_E_BAD_PATH,
 * VMENC_E_NOT_FOUND (not in the inventory), VMENC_E_DENIED, VMENC_E_LOCKED,
 * VMENC_E_IO. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_unregister_vm(vmenc_workspace *ws, const char *principal,
                                                                      const char *name);

/* ---- policy ----------------------------------------------------------------- */

/* vmenc_workspace_save_policy is no longer needed and does nothing: every
 * change to the workspace's policy is written by the call that makes it
 * (see "Persistence" above). Kept for ABI and source compatibility; returns
 * VMENC_OK (VMENC_E_INVALID_ARG for NULL). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_save_policy(vmenc_workspace *ws);

/* What vmenc_workspace_reseal_policy did (caller memory; set struct_size). */
typedef struct vmenc_workspace_reseal_result {
    uint32_t struct_size;   /* sizeof(vmenc_workspace_reseal_result) */
    char old_sha256[65];    /* SHA-256 (hex) of policy.json as it was on disk */
    char new_sha256[65];    /* ... and as written */
    uint64_t generation;    /* the new seal's generation */
    int was_sealed;         /* the old file carried a seal line */
    int seal_was_valid;     /* ... which verified */
} vmenc_workspace_reseal_result;

/* vmenc_workspace_reseal_policy is the recovery for a policy document that
 * vmenc_workspace_open refuses with VMENC_E_AUTH (edited by hand, restored
 * from elsewhere, written before sealing): the operator vouches for the
 * document as it is, and an administrator of that document seals it again.
 * It opens the workspace in |dir| like vmenc_workspace_open with |opts| -
 * so the caller must be able to open the key providers (the passphrase) -
 * but takes the policy JSON whatever its seal (a seal line, valid or not,
 * is dropped; the JSON must still load). |principal| must hold every
 * privilege on the root object of that document (the Admin role there);
 * the document is then written in canonical form with a new seal at the
 * next generation. Audited as "policy.reseal" either way, with the SHA-256
 * of the old document (and of the new one on success). |out| may be NULL.
 * Fails with VMENC_E_DENIED (not an administrator of the document; nothing
 * is written), every failure of vmenc_workspace_open except the seal's
 * VMENC_E_AUTH, VMENC_E_IO / VMENC_E_NO_SPACE (the document is unchanged);
 * |err| (may be NULL) names the file and says why. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_reseal_policy(const char *dir,
                                                                      const vmenc_workspace_open_options *opts,
                                                                      const char *principal,
                                                                      vmenc_workspace_error *err,
                                                                      vmenc_workspace_reseal_result *out);

/* vmenc_workspace_authorize decides |rq| for |principal| like
 * vmenc_policy_check (filling |decision|), for operations the workspace's
 * caller carries out itself through lower layers (policy edits, key
 * creation). A denial is audited at once as |operation| on |target| (may be
 * NULL); an allowed call must be followed by vmenc_workspace_audit_result.
 * Returns VMENC_OK, VMENC_E_DENIED, VMENC_E_HOST_MODE or the check's
 * failure. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_authorize(vmenc_workspace *ws, const char *principal,
                                                                  const vmenc_policy_request *rq,
                                                                  const char *operation, const char *target,
                                                                  vmenc_policy_decision *decision);

/* vmenc_workspace_audit_result records the outcome of an operation
 * authorized with vmenc_workspace_authorize: success if |status| is
 * VMENC_OK, else failed with |status|. |key_provider|, |key_id|, |reason|
 * may be NULL. Returns the audit dispatcher's status. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_audit_result(vmenc_workspace *ws, const char *principal,
                                                                     const char *operation, const char *target,
                                                                     const char *key_provider, const char *key_id,
                                                                     vmenc_status status, const char *reason);

/* vmenc_workspace_policy_edit applies |edit| on behalf of |actor| through
 * vmenc_policy_edit_as (the edit rule, vmenc/policy.h) and audits the
 * outcome as "policy.<edit>" ("policy.grant", ...) on the edit's name:
 * success, denied (the reason names the missing privilege and object) or
 * failed. Returns the edit's status, or the audit's if the edit succeeded
 * and the record could not be written; |*decision| as vmenc_policy_edit_as
 * fills it. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_policy_edit(vmenc_workspace *ws, const char *actor,
                                                                    const vmenc_policy_edit *edit,
                                                                    vmenc_policy_decision *decision);

/* vmenc_workspace_policy_show serialises the policy (vmenc_policy_save_json;
 * release |*out| with vmenc_policy_buffer_free) for |principal| if it holds
 * System.Read on the root (VMENC_OP_READ_POLICY). The read is audited as
 * "policy.show", a denial too. VMENC_E_DENIED with |*decision| filled. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_policy_show(vmenc_workspace *ws, const char *principal,
                                                                    uint8_t **out, size_t *out_len,
                                                                    vmenc_policy_decision *decision);

/* vmenc_workspace_audit_read authorizes |principal| to read this
 * workspace's audit log (System.Read on the root, VMENC_OP_READ_POLICY) for
 * |operation| ("audit.show", "audit.tail", "audit.verify"), and audits the
 * read or its denial. VMENC_OK: the caller may read the log;
 * VMENC_E_DENIED with |*decision| filled. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_audit_read(vmenc_workspace *ws, const char *principal,
                                                                   const char *operation,
                                                                   vmenc_policy_decision *decision);

/* ---- key providers ---------------------------------------------------------- */

/* What the workspace knows about one [kms] section (a snapshot). */
typedef struct vmenc_workspace_kms_info {
    uint32_t struct_size;                           /* caller sets sizeof(vmenc_workspace_kms_info) */
    char alias[VMENC_PROVIDER_ALIAS_MAX + 1];
    char type[64];                                  /* "file", "kmip", "pkcs11", or a vendor's */
    uint32_t num_endpoints;                         /* configured */
    uint32_t num_loaded;                            /* built at open (the others failed) */
    vmenc_status load_status;                       /* first endpoint failure at open, else VMENC_OK */
    int embedded;                                   /* the workspace's own keystore */
    int audit_key;                                  /* holds the audit chain key's KEK */
    /* Appended (issue 24): filled only if struct_size covers it. One
     * sentence naming the provider, the endpoint or file at fault and why
     * it could not be built ("" when load_status is VMENC_OK). */
    char load_detail[VMENC_WORKSPACE_MESSAGE_MAX];
} vmenc_workspace_kms_info;

/* vmenc_workspace_num_kms returns the number of [kms] sections. */
VMENC_API size_t vmenc_workspace_num_kms(const vmenc_workspace *ws);

/* vmenc_workspace_get_kms_info fills |out| for section |index| (configuration
 * order). VMENC_E_INVALID_ARG for a bad index, VMENC_E_ABI_VERSION. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_get_kms_info(const vmenc_workspace *ws, size_t index,
                                                                 vmenc_workspace_kms_info *out);

/* vmenc_workspace_kms_endpoint writes endpoint |ep| of section |index| (its
 * address as configured) to |out|. VMENC_E_INVALID_ARG for a bad index,
 * VMENC_E_BUFFER_TOO_SMALL. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_kms_endpoint(const vmenc_workspace *ws, size_t index,
                                                                     size_t ep, char *out, size_t out_cap);

/* vmenc_workspace_kms_spec describes a key provider to add: set struct_size.
 * - alias: the cluster alias (1..63 printable bytes, no '"').
 * - type: "file", "kmip" or "pkcs11".
 * - endpoints: |num_endpoints| addresses (file: keystore path, relative to
 *   the workspace or absolute; kmip: host:port; pkcs11: module path).
 * - options: NULL-terminated "key=value" list given to every endpoint (the
 *   provider's documented options), or NULL.
 * - secret_file: a file whose content (one line) is the passphrase / PIN /
 *   client key passphrase, or NULL: a file provider then uses the
 *   workspace passphrase.
 * - flags: VMENC_WORKSPACE_KMS_CREATE: create a file keystore that does not
 *   exist yet. */
typedef struct vmenc_workspace_kms_spec {
    uint32_t struct_size;
    const char *alias;
    const char *type;
    const char *const *endpoints;
    size_t num_endpoints;
    const char *const *options;
    const char *secret_file;
    uint32_t flags;
} vmenc_workspace_kms_spec;

#define VMENC_WORKSPACE_KMS_CREATE (1u << 0)

/* vmenc_workspace_add_kms adds a key provider on behalf of |principal|
 * (policy VMENC_OP_MANAGE_KEY_SERVERS; audited): the cluster is built and
 * added to the key manager, then the configuration is rewritten atomically
 * (canonical form: comments are not kept). Fails with VMENC_E_DENIED,
 * VMENC_E_PROVIDER_EXISTS (alias taken), VMENC_E_INVALID_ARG, the
 * provider's construction failures (nothing is added then), VMENC_E_IO. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_add_kms(vmenc_workspace *ws, const char *principal,
                                                                const vmenc_workspace_kms_spec *spec);

/* vmenc_workspace_remove_kms removes key provider |alias| (policy
 * VMENC_OP_MANAGE_KEY_SERVERS; audited) from the key manager and the
 * configuration. Keys in it are not destroyed. VMENC_E_BAD_STATE for the
 * provider holding the audit key's KEK, VMENC_E_NO_SUCH_PROVIDER. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_remove_kms(vmenc_workspace *ws, const char *principal,
                                                                   const char *alias);

/* vmenc_workspace_kms_backup exports the keystore of file provider |alias|
 * (vmenc_kms_file_export; policy VMENC_OP_MANAGE_KEYS; audited) to
 * |backup_path| under |backup_pass|. VMENC_E_UNSUPPORTED for a provider that
 * is not a file keystore, VMENC_E_EXISTS if |backup_path| exists. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_kms_backup(vmenc_workspace *ws, const char *principal,
                                                                   const char *alias, const char *backup_path,
                                                                   const uint8_t *backup_pass,
                                                                   size_t backup_pass_len);

/* vmenc_workspace_kms_restore restores |backup_path| into the keystore of
 * file provider |alias| (vmenc_kms_file_restore with |mode|; policy
 * VMENC_OP_MANAGE_KEYS; audited); |out_num_added| may be NULL. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_kms_restore(vmenc_workspace *ws, const char *principal,
                                                                    const char *alias, const char *backup_path,
                                                                    const uint8_t *backup_pass,
                                                                    size_t backup_pass_len,
                                                                    vmenc_kms_file_restore_mode mode,
                                                                    size_t *out_num_added);

/* ---- audit ---------------------------------------------------------------- */

/* vmenc_workspace_audit_verify verifies the audit log file |path| (NULL =
 * this workspace's log) under the workspace's chain key
 * (vmenc_audit_verify_files; for this workspace's own log the expected
 * last sequence number is the open log's position, so records cut off the
 * end are found). Returns and fills |out| as the verifier does. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_audit_verify(vmenc_workspace *ws, const char *path,
                                                                     vmenc_audit_verify_result *out);

/* vmenc_workspace_audit_anchor compares this workspace's audit log with its
 * sealed checkpoint ("<log>.checkpoint", advanced when each workspace
 * handle is freed; docs/audit.md "The sealed checkpoint") and fills |out|
 * as vmenc_audit_checkpoint_check does: a log cut short, emptied, replaced
 * by an older copy or rewritten below the sealed head, and a checkpoint
 * removed or tampered with, each fail (a workspace has a checkpoint from
 * its creation on, so a missing one is VMENC_E_NOT_FOUND, never a pass).
 * Reads only; repairs nothing. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_audit_anchor(vmenc_workspace *ws,
                                                                     vmenc_audit_anchor_result *out);

/* vmenc_workspace_audit_adopt_checkpoint writes the first sealed
 * checkpoint of a workspace created before checkpoints existed (`vmenc
 * audit checkpoint --adopt`; docs/audit.md "Adopting a checkpoint"): it
 * verifies the whole log as one chain under the log's file lock and, if it
 * is intact, seals its head. History up to that head is then trusted on
 * the hash chain alone: records cut off the end before adoption cannot be
 * found. Needs every privilege on the policy's root; audited
 * (audit.checkpoint.adopt) whatever the outcome. |out| receives the
 * verification (filled when it ran). Returns VMENC_OK; VMENC_E_DENIED;
 * VMENC_E_EXISTS when a checkpoint file exists (valid or not, it is never
 * replaced); VMENC_E_AUDIT_TAMPERED / VMENC_E_AUDIT_TRUNCATED / VMENC_E_AUTH
 * when the chain is not intact (or, in cluster mode, disagrees with the
 * cluster's copy) - nothing sealed; VMENC_E_INTERRUPTED for a torn last
 * line; VMENC_E_LOCKED, VMENC_E_IO, VMENC_E_NOMEM. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_audit_adopt_checkpoint(vmenc_workspace *ws,
                                                                               const char *principal,
                                                                               vmenc_audit_verify_result *out);

/* One event of the cluster-wide list: the host that wrote it, its sequence
 * number in that host's chain and the record's JSON line (|len| bytes, no
 * newline, valid during the call). Nonzero stops the listing. */
typedef int (*vmenc_workspace_audit_event_cb)(void *ctx, const char *host, uint64_t seq, const char *line,
                                              size_t len);

/* vmenc_workspace_audit_cluster_show lists every host's audit events from
 * the cluster's audit mirror, by time (each host's own order kept; docs/
 * audit.md "The cluster mirror"). VMENC_E_UNSUPPORTED if the workspace is
 * not in cluster mode (no mirror installed); else the mirror's errors. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_audit_cluster_show(vmenc_workspace *ws,
                                                                           vmenc_workspace_audit_event_cb cb,
                                                                           void *ctx);

/* vmenc_workspace_audit_cluster_verify compares this host's local audit
 * log with its mirrored copy in the cluster and fills |out|: VMENC_OK, or
 * VMENC_E_AUDIT_TRUNCATED (the log was cut short or emptied: the mirror
 * has more), VMENC_E_AUDIT_TAMPERED (a record differs, or some host's
 * mirrored records do not chain), VMENC_E_NOT_FOUND (nothing of this host
 * mirrored) with |out| filled; VMENC_E_UNSUPPORTED without a mirror. Reads
 * only; repairs nothing. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_audit_cluster_verify(vmenc_workspace *ws,
                                                                             vmenc_audit_cluster_result *out);

/* ---- receiving a migrated VM ---------------------------------------------- */

/* vmenc_workspace_migrate_ready_fn delivers the receiver's ready token
 * (|ready_len| = VMENC_MIGRATION_READY_BYTES; valid during the call) to the
 * sender over the management channel and, if the transport is opened
 * lazily, opens it. It runs after every check and before any byte of the
 * stream is read. A status other than VMENC_OK fails the receive (cleaned
 * up like any failure) with that status. */
typedef vmenc_status (*vmenc_workspace_migrate_ready_fn)(void *ctx, const uint8_t *ready, size_t ready_len);

/* vmenc_workspace_migrate_handover_fn fetches the sender's handover blob
 * (at most |cap| = VMENC_MIGRATION_HANDOVER_MAX bytes) into |buf| and sets
 * |*out_len|; for a caller that waits for the blob only once the VM's
 * entry is authorized and its home made. The library wipes |buf| after
 * use. A status other than VMENC_OK fails the receive with that status. */
typedef vmenc_status (*vmenc_workspace_migrate_handover_fn)(void *ctx, uint8_t *buf, size_t cap, size_t *out_len);

/* vmenc_workspace_migrate_receive_options: set struct_size.
 * - handover / handover_len: the sender's handover blob (copied; the caller
 *   wipes its copy, which holds the one-time key); or, with handover NULL,
 *   handover_fn + handover_ctx, called after step 2 below.
 * - folder: the inventory folder the VM joins; NULL = the workspace's.
 *   pool: optional resource pool the policy checks.
 * - flags: VMENC_MIGRATION_NO_ENCRYPTION (migration.h).
 * - transport: read_fn + io_ctx, or (read_fn NULL) the descriptor fd; read
 *   only between ready_fn and the end of the stream. A read_fn that
 *   returns VMENC_E_INTERRUPTED cancels the receive.
 * - ready_fn + ready_ctx (required). */
typedef struct vmenc_workspace_migrate_receive_options {
    uint32_t struct_size;
    const uint8_t *handover;
    size_t handover_len;
    vmenc_workspace_migrate_handover_fn handover_fn;
    void *handover_ctx;
    const char *folder;
    const char *pool;
    uint32_t flags;
    int fd;
    vmenc_migration_read_fn read_fn;
    void *io_ctx;
    vmenc_workspace_migrate_ready_fn ready_fn;
    void *ready_ctx;
} vmenc_workspace_migrate_receive_options;

/* vmenc_workspace_migrate_receive_result: set struct_size; filled as far
 * as the receive got, on failure too. |migration| is the receiver's
 * vmenc_migration_info (its own struct_size is set by the library). */
typedef struct vmenc_workspace_migrate_receive_result {
    uint32_t struct_size;
    uint64_t num_files;                 /* files written into the VM home */
    int stream_started;                 /* the ready token was delivered */
    vmenc_migration_info migration;     /* the stream: mode, counts, why it failed */
} vmenc_workspace_migrate_receive_result;

/* vmenc_workspace_migrate_receive receives VM |name| from another host and
 * registers it here, in one call (docs/migration.md, "Receiving a VM"):
 *  1. authorizes the VM's entry into the inventory (VMENC_OP_REGISTER_VM
 *     into the folder; audited "migration.receive_register") and adds its
 *     object under the folder (kept if it is already there);
 *  2. makes the VM home datastore/NAME (it must not exist);
 *  3. takes the handover (from the options or handover_fn) and opens the
 *     receiver (vmenc_migration_receiver_new: policy
 *     VMENC_OP_MIGRATE_VM on this host, the KEK from this host's key
 *     provider, the mode; audited "migration.receive") and hands the ready
 *     token to ready_fn;
 *  4. writes the home stream (docs/migration.md) into the home - plain
 *     files only, names checked, each file synced;
 *  5. registers the VM on this host (vmenc_vm_register).
 * On success *out_vm (may be NULL) is the registered VM. On any failure it
 * removes what it created - the files, the home, the inventory object it
 * added - records the rollback in the audit log
 * ("migration.receive_rollback") and returns the first failure: the
 * argument checks (VMENC_E_INVALID_ARG, VMENC_E_ABI_VERSION), VMENC_E_BAD_PATH
 * (|name| is not a VM name), the policy (VMENC_E_DENIED, VMENC_E_HOST_MODE;
 * nothing is created), VMENC_E_EXISTS (the home exists), the receiver's and
 * the stream's statuses (VMENC_E_AUTH, VMENC_E_TRUNCATED, parse statuses,
 * the transport's), VMENC_E_CONTEXT_MISMATCH (the stream carries another
 * VM), VMENC_E_PARSE (a malformed home stream), VMENC_E_IO /
 * VMENC_E_NO_SPACE, the registration's. The one exception is
 * VMENC_E_VM_LOCKED: the VM arrived and is registered but a key it needs
 * cannot be fetched now; everything is kept and *out_vm (if not NULL) is
 * the locked VM, as vmenc_vm_register does. A host switched to encryption
 * mode by step 3 stays in it. Changes to the policy are committed by the
 * policy itself. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_migrate_receive(
    vmenc_workspace *ws, const char *principal, const char *name,
    const vmenc_workspace_migrate_receive_options *opts, vmenc_workspace_migrate_receive_result *out_result,
    vmenc_vm **out_vm);

/* ---- the configuration parser (exposed for tools and fuzzing) ------------- */

/* vmenc_workspace_config_check parses |len| bytes of configuration text
 * (no NUL needed) and, if it is valid, writes its canonical form to a new
 * buffer |*out_canonical| of |*out_len| bytes plus a NUL (release with
 * vmenc_buffer_free; both may be NULL to only check). A canonical text
 * parses to itself. On failure returns the status and fills |err| (may be
 * NULL; |err->file| is ""): VMENC_E_PARSE (grammar, unknown section or key,
 * missing key, bad value), VMENC_E_NOT_FOUND (the audit key provider has no
 * [kms] section), VMENC_E_EXISTS (duplicate key, section or alias),
 * VMENC_E_TOO_LARGE (file or line), VMENC_E_BAD_ENCODING (not UTF-8, NUL),
 * VMENC_E_BAD_VERSION, VMENC_E_LIMIT, VMENC_E_NOMEM. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_config_check(const uint8_t *text, size_t len,
                                                                     vmenc_workspace_error *err,
                                                                     char **out_canonical, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif /* VMENC_WORKSPACE_H */
