/*
 * vmenc/vm.h - the VM layer: what an encrypted VM and its virtual disks are
 * on a datastore, and the operations a hypervisor's management plane
 * (vmenc_vm_*) and block layer (vmenc_disk_*) call. Nothing else is needed:
 * keys, key providers, policy and audit are composed here.
 *
 * Objects:
 *  - vmenc_host: one hypervisor host. It borrows the host's key manager
 *    (clusters + KEK cache), policy (inventory, roles, storage policies, host
 *    encryption mode) and audit dispatcher, which must outlive it.
 *  - vmenc_vm: one VM, a home directory holding NAME.vmx and the VM's state
 *    files and disks (format: docs/vm-format.md).
 *  - vmenc_disk: one open virtual disk (descriptor DISK.vmdk + data extent
 *    DISK-flat.vmdk, XTS-AES-256 with tweak = sector number, "plain64").
 *  - vmenc_vm_file: one open VM state file (NVRAM, suspend, snapshot state
 *    and memory: chunked AES-256-GCM; swap: XTS).
 *
 * Every operation that touches keys or encryption state takes the acting
 * principal and is authorize -> act -> audit: the policy decides (switching
 * the host to encryption mode when the principal may), the operation runs,
 * and an audit event records principal, operation, target, key provider,
 * key IDs and outcome - denied and failed attempts too. A NULL or empty
 * principal is refused with VMENC_E_INVALID_ARG (and audited as
 * "(none)"). If the audit event cannot be recorded, the operation's result
 * is still returned but a successful operation reports VMENC_E_AUDIT_SINK.
 *
 * Policy operations used (docs/vm-format.md has the full table):
 *   create -> CREATE_VM, open/unlock/disk open/state files -> POWER_ON,
 *   register -> REGISTER_VM, clone -> CLONE_VM, add disk -> ADD_DISK,
 *   remove disk -> EDIT_SETTINGS, shallow rekey -> REKEY_SHALLOW,
 *   apply an encrypting policy -> ENCRYPT_VM, a plain one -> DECRYPT_VM,
 *   out-of-band access (VMENC_DISK_OPEN_EXPORT, VMENC_VM_FILE_EXPORT) ->
 *   EXPORT_VM when read-only, UPLOAD_FILES and EXPORT_VM when writable,
 *   status -> VIEW.
 *
 * Thread safety: a vmenc_host is safe to share. A vmenc_vm may be used from
 * many threads: management operations on one VM are serialised by a VM
 * lock; disk and state-file I/O do not take it. A vmenc_disk allows any
 * number of concurrent pread/pwrite/flush calls (whole-sector I/O takes no
 * lock; a partial-sector write takes a per-sector lock for its
 * read-modify-write). A vmenc_vm_file serialises its own calls. _free/_close
 * functions must not race with other calls on the same object. Disks and
 * state files keep their VM alive: a VM may be freed while they are open.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_VM_H
#define VMENC_VM_H

#include "vmenc/common.h"
#include "vmenc/keys.h"
#include "vmenc/kms.h"
#include "vmenc/policy.h"
#include "vmenc/audit.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmenc_host vmenc_host;
typedef struct vmenc_vm vmenc_vm;
typedef struct vmenc_disk vmenc_disk;
typedef struct vmenc_vm_file vmenc_vm_file;

/* Bounds. A VM name is 1..VMENC_VM_NAME_MAX bytes of [A-Za-z0-9._-], not
 * starting with '.' or '-': it names the files in the home directory and
 * the VM's inventory object. A disk ID is "scsiB:U" (B 0..3, U 0..15). */
#define VMENC_VM_NAME_MAX 64u
#define VMENC_VM_UUID_LEN 36u            /* canonical 8-4-4-4-12 text, no NUL */
#define VMENC_DISK_ID_MAX 16u
#define VMENC_VM_MAX_DISKS 64u
#define VMENC_DISK_MAX_CAPACITY ((uint64_t)1 << 50) /* 1 PiB */
/* Chunk size of the authenticated state-file format (plaintext bytes). */
#define VMENC_VM_FILE_CHUNK_BYTES 65536u

/* ---- host --------------------------------------------------------------- */

/* vmenc_host_options: set struct_size = sizeof(vmenc_host_options).
 * - host_id: the host's name in |policy| (a VMENC_OBJ_HOST object).
 * - keymgr, policy, audit: borrowed; they must outlive the host. The audit
 *   dispatcher must have at least one sink.
 * - kms_timeout_ms: deadline of each key-manager call; 0 = 10000.
 * - clock_ms/clock_ctx: time source for audit events (ms since the Unix
 *   epoch, UTC); NULL = the system clock.
 * - flags: VMENC_HOST_* below. */
typedef struct vmenc_host_options {
    uint32_t struct_size;
    const char *host_id;
    vmenc_keymgr *keymgr;
    vmenc_policy *policy;
    vmenc_audit *audit;
    uint32_t kms_timeout_ms;
    uint64_t (*clock_ms)(void *clock_ctx);
    void *clock_ctx;
    uint32_t flags;
} vmenc_host_options;

/* Skip fsync on data and metadata writes (tests and benchmarks only: a
 * crash may then lose or tear anything). */
#define VMENC_HOST_NO_SYNC (1u << 0)

/* vmenc_host_new makes a host. Fails with VMENC_E_INVALID_ARG (NULL, bad
 * host ID, unknown flag), VMENC_E_ABI_VERSION (struct_size too small),
 * VMENC_E_NOT_FOUND / VMENC_E_INVALID_ARG (host_id is not a host of the
 * policy) or VMENC_E_NOMEM. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_host_new(const vmenc_host_options *opts, vmenc_host **out);

/* vmenc_host_free frees the host. VMs opened through it keep a reference
 * and stay usable; the borrowed objects must then still be alive. NULL is
 * allowed. */
VMENC_API void vmenc_host_free(vmenc_host *host);

/* vmenc_host_id returns the host ID (lives as long as |host|). */
VMENC_API const char *vmenc_host_id(const vmenc_host *host);

/* ---- VM lifecycle ------------------------------------------------------------ */

/* vmenc_vm_create_options: set struct_size.
 * - principal: the acting user (required).
 * - home_dir: the VM's home directory; created (its parent must exist) or,
 *   if it exists, it must be empty.
 * - name: NAME (see VMENC_VM_NAME_MAX); also the VM's inventory name, added
 *   to the policy under |folder|.
 * - folder (required), pool, datastore (optional): inventory objects the
 *   policy checks (VMENC_OP_CREATE_VM).
 * - storage_policy: NULL or "" for a plain VM; else the name of a storage
 *   policy of the host's policy; if it encrypts, the VM is encrypted from
 *   birth with a KEK of the policy's key provider.
 * - kek_id: NULL to create a new KEK in that key provider (one per VM, as
 *   vSphere does), or an existing KEK ID there.
 * - memory_bytes: size of the swap file (NAME.vswp) made on first open of
 *   the VSWP class; 0 = 64 MiB.
 * - flags: none defined yet (0). */
typedef struct vmenc_vm_create_options {
    uint32_t struct_size;
    const char *principal;
    const char *home_dir;
    const char *name;
    const char *folder;
    const char *pool;
    const char *datastore;
    const char *storage_policy;
    const char *kek_id;
    uint64_t memory_bytes;
    uint32_t flags;
} vmenc_vm_create_options;

/* vmenc_vm_create makes a new VM: home directory, NAME.vmx (with a fresh VM
 * UUID, and for an encrypted VM a fresh VM key wrapped under the KEK in
 * encryption.keySafe), and an inventory object placed on this host. The
 * wrapped key is proven to unwrap again before anything is written. Fails
 * with VMENC_E_INVALID_ARG / VMENC_E_BAD_PATH (bad options or name),
 * VMENC_E_DENIED / VMENC_E_HOST_MODE (policy), VMENC_E_NOT_FOUND (storage
 * policy, folder), VMENC_E_EXISTS (home not empty, or the name is taken in
 * the inventory), key-manager failures, VMENC_E_IO / VMENC_E_NO_SPACE. On
 * failure nothing is left behind (a directory it created is removed). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_create(vmenc_host *host, const vmenc_vm_create_options *opts,
                                                        vmenc_vm **out);

/* vmenc_vm_open opens the VM whose configuration is |vmx_path| on |host|
 * for |principal| (policy: VMENC_OP_POWER_ON; the VM must be in the
 * inventory - see vmenc_vm_register). It parses NAME.vmx and every disk
 * descriptor, fetches each KEK through the key manager by the IDs in the
 * records and unwraps the VM key.
 *
 * A VM whose KEK cannot be fetched (key provider down, key unknown, refused)
 * opens LOCKED: vmenc_vm_open returns VMENC_E_VM_LOCKED and - the one
 * exception to "failure leaves |*out| untouched" - sets |*out| to a locked
 * VM the caller must free. A locked VM answers status (which lists the
 * missing key IDs) and vmenc_vm_unlock; everything that needs a key fails
 * with VMENC_E_VM_LOCKED. Other failures leave |*out| untouched:
 * VMENC_E_INVALID_ARG, VMENC_E_BAD_PATH, parse statuses (malformed .vmx or
 * descriptor), VMENC_E_AUTH (a record bound to another VM or disk, or a
 * tampered wrapped key or encryption.data), VMENC_E_DENIED /
 * VMENC_E_HOST_MODE, VMENC_E_NOT_FOUND, VMENC_E_IO. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_open(vmenc_host *host, const char *principal,
                                                      const char *vmx_path, vmenc_vm **out);

/* vmenc_vm_register adds an existing VM home (e.g. one created on another
 * host of the same key-provider cluster) to this host: policy
 * VMENC_OP_REGISTER_VM into |folder| (|pool| optional); the VM's inventory
 * object is added under |folder| if missing and placed on this host. Its
 * KEKs are fetched by ID - nothing is re-encrypted. Then as vmenc_vm_open
 * (including the locked case). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_register(vmenc_host *host, const char *principal,
                                                          const char *vmx_path, const char *folder,
                                                          const char *pool, vmenc_vm **out);

/* vmenc_vm_unlock retries fetching the keys of a locked VM (policy
 * VMENC_OP_POWER_ON). VMENC_OK if it is now unlocked (or was not locked);
 * VMENC_E_VM_LOCKED if a key is still missing (status lists which), or the
 * key-manager failure. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_unlock(vmenc_vm *vm, const char *principal);

/* vmenc_vm_free releases the caller's reference; open disks and state files
 * keep the VM alive until they are closed. Wipes the VM key when the last
 * reference goes. NULL is allowed. */
VMENC_API void vmenc_vm_free(vmenc_vm *vm);

/* ---- status ------------------------------------------------------------- */

typedef enum vmenc_disk_state {
    VMENC_DISK_PLAIN = 0,
    VMENC_DISK_ENCRYPTED = 1,
    /* an in-place conversion is in progress (docs/reencryption.md) */
    VMENC_DISK_ENCRYPTING = 2,
    VMENC_DISK_DECRYPTING = 3,
    VMENC_DISK_REKEYING = 4
} vmenc_disk_state;

/* vmenc_vm_info: set struct_size; filled by vmenc_vm_get_info. */
typedef struct vmenc_vm_info {
    uint32_t struct_size;
    char name[VMENC_VM_NAME_MAX + 1];
    char uuid[VMENC_VM_UUID_LEN + 1];
    int encrypted;                /* VM home encrypted */
    int locked;                   /* a key is missing */
    char key_provider[VMENC_PROVIDER_ALIAS_MAX + 1]; /* of the VM key's KEK, "" if plain */
    char kek_id[VMENC_KEY_ID_MAX + 1];               /* "" if plain */
    uint32_t num_disks;
    uint32_t num_missing_keys;    /* distinct (provider, KEK ID) pairs that could not be fetched */
    char storage_policy[VMENC_POLICY_NAME_MAX + 1];  /* last applied, "" if none */
    /* Since 0.4 (filled when struct_size covers them): the VM key's
     * generation as the VM's authority record keeps it (+1 at every home
     * rekey, shallow or deep; docs/control.md); has_key_generation is 0
     * when the host keeps no record for the VM (no control store). */
    int has_key_generation;
    uint64_t key_generation;
} vmenc_vm_info;

/* vmenc_disk_info: set struct_size; filled by vmenc_vm_get_disk_info. */
typedef struct vmenc_disk_info {
    uint32_t struct_size;
    char disk_id[VMENC_DISK_ID_MAX + 1];
    char file_name[256];                             /* descriptor file, relative to the home */
    uint64_t capacity;                               /* bytes */
    uint32_t sector_size;
    vmenc_disk_state state;
    char key_provider[VMENC_PROVIDER_ALIAS_MAX + 1];
    char kek_id[VMENC_KEY_ID_MAX + 1];
    int locked;                                      /* its KEK is missing */
} vmenc_disk_info;

/* vmenc_vm_get_info fills |out| (no policy check: it reveals no more than
 * the plain .vmx does). Works on a locked VM. VMENC_E_INVALID_ARG /
 * VMENC_E_ABI_VERSION. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_get_info(vmenc_vm *vm, vmenc_vm_info *out);

/* vmenc_vm_get_disk_info fills |out| for disk |index| (0..num_disks-1, in
 * the order of the configuration). VMENC_E_INVALID_ARG for a bad index. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_get_disk_info(vmenc_vm *vm, uint32_t index,
                                                               vmenc_disk_info *out);

/* vmenc_vm_get_missing_key writes the |index|-th missing key of a locked VM
 * as provider alias and KEK ID (NUL-terminated, caps at least
 * VMENC_PROVIDER_ALIAS_MAX + 1 and VMENC_KMS_KEY_ID_CAP) and its last
 * key-manager status to |*out_status| (may be NULL). VMENC_E_INVALID_ARG
 * for a bad index, VMENC_E_BUFFER_TOO_SMALL. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_get_missing_key(vmenc_vm *vm, uint32_t index,
                                                                 char *out_alias, size_t alias_cap,
                                                                 char *out_kek_id, size_t kek_id_cap,
                                                                 vmenc_status *out_status);

/* vmenc_vm_home_dir / vmenc_vm_name / vmenc_vm_uuid: live as long as |vm|. */
VMENC_API const char *vmenc_vm_home_dir(const vmenc_vm *vm);
VMENC_API const char *vmenc_vm_name(const vmenc_vm *vm);
VMENC_API const char *vmenc_vm_uuid(const vmenc_vm *vm);

/* ---- operations on a VM ------------------------------------------------------ */

/* vmenc_disk_create_options: set struct_size.
 * - disk_id: NULL for the next free "scsi0:N", else "scsiB:U".
 * - capacity: bytes, a positive multiple of |sector_size|, at most
 *   VMENC_DISK_MAX_CAPACITY.
 * - sector_size: 512 or 4096 (0 = 512): the XTS data unit.
 * - file_base: NULL for "NAME_N", else the base of DISK.vmdk / DISK-flat.vmdk.
 * - datastore: optional, checked by the policy (Datastore.AllocateSpace).
 * - flags: none yet. */
typedef struct vmenc_disk_create_options {
    uint32_t struct_size;
    const char *disk_id;
    uint64_t capacity;
    uint32_t sector_size;
    const char *file_base;
    const char *datastore;
    uint32_t flags;
} vmenc_disk_create_options;

/* vmenc_vm_add_disk adds a new, zero-filled (sparse) disk: encrypted with a
 * fresh DEK under the VM's KEK if the VM home is encrypted and its storage
 * policy encrypts disks, else plain (policy VMENC_OP_ADD_DISK). Descriptor
 * and extent are written before the configuration names them, so a crash
 * leaves at worst unreferenced files. Writes the disk ID to |out_disk_id|
 * (capacity >= VMENC_DISK_ID_MAX + 1; may be NULL). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_add_disk(vmenc_vm *vm, const char *principal,
                                                          const vmenc_disk_create_options *opts,
                                                          char *out_disk_id, size_t out_disk_id_cap);

#define VMENC_VM_REMOVE_DELETE_FILES (1u << 0) /* also delete descriptor and extent */

/* vmenc_vm_remove_disk removes disk |disk_id| from the configuration
 * (policy VMENC_OP_EDIT_SETTINGS). VMENC_E_BAD_STATE while the disk is
 * open. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_remove_disk(vmenc_vm *vm, const char *principal,
                                                             const char *disk_id, uint32_t flags);

/* vmenc_vm_rekey_shallow re-wraps the VM key and every disk DEK under a new
 * KEK (policy VMENC_OP_REKEY_SHALLOW): |key_provider| NULL keeps the
 * current provider; |kek_id| NULL creates a new KEK there. The data is not
 * re-encrypted, so open disks keep doing I/O throughout. Every new record is
 * proven to unwrap before it is written; each file is replaced atomically,
 * descriptors first and the .vmx last, and every record names its own KEK,
 * so a crash at any point leaves a VM that opens (with the old KEK for the
 * records not yet rewritten). The old KEK is not destroyed. A rekey to a
 * provider other than the one the VM's storage policy names leaves that
 * policy: the VM's storage policy becomes "" in the same .vmx write (the
 * audit event says why), so nothing re-applies the old policy and re-keys
 * the VM back; vmenc_vm_apply_storage_policy with a policy naming the new
 * provider records one again without re-keying. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_rekey_shallow(vmenc_vm *vm, const char *principal,
                                                               const char *key_provider, const char *kek_id);

/* vmenc_vm_apply_storage_policy brings the VM to storage policy |name|
 * (vmenc_policy_plan_storage_policy): an encrypting policy needs
 * VMENC_OP_ENCRYPT_VM, a plain one VMENC_OP_DECRYPT_VM, a change of key
 * provider VMENC_OP_REKEY_SHALLOW. The VM home's state files are rewritten
 * atomically in their new form. A disk that holds no data yet is switched at
 * once; a disk with data is converted in place (see "in-place conversion"
 * below; vmenc_vm_apply_storage_policy_ex reports progress and can stop).
 * An interrupted conversion of the VM's disks is finished first. No disk may
 * be open (VMENC_E_BAD_STATE). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_apply_storage_policy(vmenc_vm *vm, const char *principal,
                                                                      const char *name);

/* vmenc_vm_clone_options: set struct_size.
 * - home_dir, name, folder, pool, datastore: as for vmenc_vm_create.
 * - storage_policy: NULL = the source's (an encrypted source gives an
 *   encrypted clone); "" or a plain policy = a plain clone (needs
 *   Cryptographer.Decrypt on an encrypted source); an encrypting policy =
 *   an encrypted clone.
 * - flags: VMENC_VM_CLONE_KEEP_KEYS keeps the source's DEKs (the disks'
 *   ciphertext is copied as is, re-wrapped and re-bound to the clone's
 *   UUID); default: new DEKs, every byte re-encrypted. */
typedef struct vmenc_vm_clone_options {
    uint32_t struct_size;
    const char *principal;
    const char *home_dir;
    const char *name;
    const char *folder;
    const char *pool;
    const char *datastore;
    const char *storage_policy;
    uint32_t flags;
} vmenc_vm_clone_options;

#define VMENC_VM_CLONE_KEEP_KEYS (1u << 0)

/* vmenc_vm_clone copies |vm| (powered off: no disk or state file open,
 * VMENC_E_BAD_STATE otherwise) to a new VM (policy VMENC_OP_CLONE_VM) and
 * returns it open in |*out|. On failure the new home is removed. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_clone(vmenc_vm *vm, const vmenc_vm_clone_options *opts,
                                                       vmenc_vm **out);

/* ---- disks ---------------------------------------------------------------- */

#define VMENC_DISK_OPEN_READONLY (1u << 0)
/* Out-of-band access to the decrypted view (a CLI read, an export):
 * policy VMENC_OP_EXPORT_VM (Cryptographer.Access on an encrypted VM)
 * instead of VMENC_OP_POWER_ON; without VMENC_DISK_OPEN_READONLY the
 * handle writes too, so it is also VMENC_OP_UPLOAD_FILES (audited as
 * "disk.open_upload"). */
#define VMENC_DISK_OPEN_EXPORT (1u << 1)

/* vmenc_disk_open opens disk |disk_id| of |vm| for I/O (policy as the flags
 * say; audited). A disk may be open once per VM at a time
 * (VMENC_E_BAD_STATE), and many threads may use that one handle. The open
 * takes the extent's image lock (docs/vm.md "Locks"): read-only shares
 * with every opener but a conversion; read-write excludes other writers;
 * a disk in the middle of a conversion is opened read-write as the
 * conversion's owner and excludes everyone. Fails with VMENC_E_LOCKED
 * (another open file description - another process, or another VM handle
 * in this one - holds a conflicting lock: vmenc_vm_get_lock_holder names
 * it), VMENC_E_BAD_PATH (the extent is not a regular file: a FIFO, a
 * device, a link), VMENC_E_VM_LOCKED, VMENC_E_NOT_FOUND (no such disk),
 * VMENC_E_DENIED, VMENC_E_TRUNCATED (the extent is shorter than the
 * capacity), VMENC_E_IO. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_disk_open(vmenc_vm *vm, const char *principal,
                                                        const char *disk_id, uint32_t flags,
                                                        vmenc_disk **out);

/* vmenc_disk_pread reads |len| bytes at byte |offset| (any alignment) into
 * |out|, decrypted. The range must lie within the capacity
 * (VMENC_E_INVALID_ARG). VMENC_E_IO on a read error or short extent;
 * |out| is then unspecified. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_disk_pread(vmenc_disk *disk, uint64_t offset, size_t len,
                                                         uint8_t *out);

/* vmenc_disk_pwrite writes |len| bytes from |data| at byte |offset| (any
 * alignment), encrypted. Partial sectors are read, modified and written
 * under a per-sector lock, so concurrent writers to one sector never lose
 * each other's bytes. A failed write (VMENC_E_IO, VMENC_E_NO_SPACE) may have
 * written some whole sectors of the range but never a torn or partially
 * encrypted sector beyond what the device itself tears. VMENC_E_BAD_STATE
 * on a read-only disk. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_disk_pwrite(vmenc_disk *disk, uint64_t offset,
                                                          const uint8_t *data, size_t len);

/* vmenc_disk_flush makes every completed write durable (fdatasync). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_disk_flush(vmenc_disk *disk);

/* vmenc_disk_get_size writes the capacity in bytes; vmenc_disk_get_sector_size
 * the sector size. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_disk_get_size(const vmenc_disk *disk, uint64_t *out);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_disk_get_sector_size(const vmenc_disk *disk, uint32_t *out);

/* vmenc_disk_is_encrypted writes 1 (encrypted) or 0 (plain). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_disk_is_encrypted(const vmenc_disk *disk, int *out);

/* vmenc_disk_close flushes (unless read-only), releases the disk and its
 * reference on the VM, and wipes its cipher context. Returns the flush's
 * status; the handle is freed either way. NULL is allowed (VMENC_OK). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_disk_close(vmenc_disk *disk);

/* ---- in-place conversion: encrypt, decrypt, deep rekey (docs/reencryption.md)
 *
 * One engine for the three cases, run on an open disk that stays open for
 * I/O throughout: the disk is cut into segments that move one at a time
 * between two layouts of the extent (data offset 0 and S, S = the segment
 * size), each written in its new form where no data that has not moved yet
 * lives, fdatasync'd, then recorded in a small state file (two checksummed
 * slots, fdatasync'd) before guests see it in its new form. A kill or power
 * loss at any instant leaves every segment readable in its old or new place;
 * opening the disk again resumes. I/O to the segment being moved waits for
 * it (never longer than one segment); all other I/O goes on. */

typedef enum vmenc_convert_kind {
    VMENC_CONVERT_ENCRYPT = 1, /* plain -> encrypted (new DEK under the VM's KEK); policy ENCRYPT_VM */
    VMENC_CONVERT_DECRYPT = 2, /* encrypted -> plain; policy DECRYPT_VM */
    VMENC_CONVERT_REKEY = 3    /* deep rekey: old DEK -> new DEK; policy REKEY_DEEP */
} vmenc_convert_kind;

/* Default segment size (the unit of progress, locking and durability). */
#define VMENC_CONVERT_DEFAULT_SEGMENT ((uint64_t)8 << 20)

/* vmenc_convert_options: set struct_size. segment_bytes: 0 = default; a
 * multiple of 1 MiB from 1 MiB to 1 GiB. A disk converted before keeps its
 * first segment size (its data sits at that offset). flags: none yet. */
typedef struct vmenc_convert_options {
    uint32_t struct_size;
    uint64_t segment_bytes;
    uint32_t flags;
} vmenc_convert_options;

/* vmenc_convert_progress: set struct_size; filled by the calls below. */
typedef struct vmenc_convert_progress {
    uint32_t struct_size;
    vmenc_disk_state state;     /* converting state, or the final state once done */
    uint64_t bytes_done;
    uint64_t bytes_total;       /* the capacity */
    uint64_t segments_done;
    uint64_t segments_total;
    uint64_t bytes_per_second;  /* since this process began or resumed it */
    int done;                   /* 1: finished (descriptor final, old key wiped) */
} vmenc_convert_progress;

/* vmenc_disk_convert_begin starts converting an open, writable disk (policy
 * and audit "disk.convert_begin"). ENCRYPT needs a plain disk in an
 * encrypted VM home; DECRYPT and REKEY an encrypted disk. The new DEK is
 * made and proven to unwrap, the state file and the descriptor (both keys,
 * the target layout) written durably; then the disk converts as the caller
 * drives vmenc_disk_convert_step. Fails with VMENC_E_BAD_STATE (already
 * converting, wrong state, read-only), VMENC_E_DENIED, key-manager,
 * VMENC_E_IO / VMENC_E_NO_SPACE statuses (nothing changed). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_disk_convert_begin(vmenc_disk *disk, const char *principal,
                                                                 vmenc_convert_kind kind,
                                                                 const vmenc_convert_options *opts);

/* vmenc_disk_convert_step moves segments until about |max_bytes| (at least
 * one segment) have moved or the conversion is complete, then fills |out|
 * (may be NULL). When the last segment has moved it finishes: the old
 * layout's leftover is removed, the descriptor names only the new key, the
 * state file goes, the old DEK is wiped ("disk.convert_end" audited). A
 * failure (VMENC_E_IO, VMENC_E_NO_SPACE) stops the conversion with nothing
 * lost; call again (or reopen) to resume. VMENC_E_BAD_STATE if no
 * conversion runs. Only one thread may step a disk at a time; any number
 * may do I/O meanwhile. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_disk_convert_step(vmenc_disk *disk, uint64_t max_bytes,
                                                                vmenc_convert_progress *out);

/* vmenc_disk_convert_rollback turns a running conversion around: the
 * segments already moved go back to their old form and layout, as the
 * caller keeps calling vmenc_disk_convert_step, and the disk ends as it was
 * before the conversion began (an encryption rolled back ends plain, with
 * the new DEK discarded). Needs the privilege of the reverse conversion
 * (decrypt for an encryption, encrypt for a decryption, deep rekey for a
 * rekey); audited "disk.convert_rollback". Crash-safe like the rest: the
 * reverse run's state is durable before its descriptor commits it. Not
 * concurrently with vmenc_disk_convert_step. VMENC_E_BAD_STATE if no
 * conversion runs or it has already moved every segment. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_disk_convert_rollback(vmenc_disk *disk, const char *principal);

/* What vmenc_disk_convert_recover found. Set struct_size. */
typedef struct vmenc_convert_recovery {
    uint32_t struct_size;
    char state_file[256];     /* the conversion's state file, in the VM home */
    uint64_t segments_total;
    uint64_t segments_done;   /* VMENC_OK: the progress now on record */
    uint32_t flags;           /* VMENC_RECOVERY_REBUILT: a new state file was written */
    /* VMENC_E_INTERRUPTED: the segments (disk order) whose data may be in
     * either layout, and the same as guest bytes; 0 otherwise */
    uint64_t unknown_first, unknown_count;
    uint64_t unknown_offset, unknown_bytes;
} vmenc_convert_recovery;

#define VMENC_RECOVERY_REBUILT (1u << 0)

/* vmenc_disk_convert_recover rebuilds the state file of disk |disk_id|'s
 * interrupted conversion when it is missing, damaged, forged or of an old
 * version (the disk's open then fails, naming it in the audit log). The
 * disk must not be open. It reads both layouts of every segment through
 * the descriptor's two keys: the one segment whose two copies hold the same
 * data is the last one moved (with a segment in flight, two neighbours that
 * each agree in part), which gives the progress exactly; the new
 * state file is written and the disk opens and resumes as usual. Needs the
 * conversion's privilege (as vmenc_disk_convert_begin); audited
 * "disk.convert_recover". A readable state file is left as it is (VMENC_OK,
 * flags 0). Failures: VMENC_E_INTERRUPTED if the data cannot tell (the
 * range in |out| is the segments in doubt; nothing is changed),
 * VMENC_E_BAD_STATE (no conversion, or the disk is open), VMENC_E_VM_LOCKED
 * (a key is missing), VMENC_E_AUTH (the sealed configuration does not name
 * the descriptor's next key record), VMENC_E_NOT_FOUND, VMENC_E_DENIED. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_disk_convert_recover(vmenc_vm *vm, const char *principal,
                                                                   const char *disk_id,
                                                                   vmenc_convert_recovery *out);

/* vmenc_disk_convert_get_progress fills |out| (done = 1 and the final
 * state if no conversion runs). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_disk_convert_get_progress(vmenc_disk *disk,
                                                                        vmenc_convert_progress *out);

/* vmenc_vm_get_convert_progress reads where the conversion of disk
 * |disk_id| stands without opening the disk: as an observer, it takes no
 * image lock and is never refused or kept waiting by the process that
 * converts (which holds the disk's CONVERT lock) or serves it. It reports
 * the progress as of the last durable slot of the conversion's state file,
 * whose MAC is verified as on open (so the VM's keys must be unlocked:
 * VMENC_E_VM_LOCKED otherwise); bytes_per_second is 0. With no conversion
 * in the descriptor the VM handle read, done = 1 and the state. A state
 * file gone since the VM handle was opened (the conversion finished, or the
 * file was lost) is VMENC_E_INTERRUPTED: open the VM again to tell which.
 * Also VMENC_E_NOT_FOUND, VMENC_E_AUTH (a slot that does not verify). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_get_convert_progress(vmenc_vm *vm, const char *disk_id,
                                                                      vmenc_convert_progress *out);

/* A progress callback for VM-level conversions: return 0 to go on, nonzero
 * to stop (the call then returns VMENC_E_INTERRUPTED; the conversion is
 * resumable by re-applying or vmenc_vm_resume). */
typedef int (*vmenc_progress_fn)(void *ctx, const char *disk_id, const vmenc_convert_progress *progress);

/* vmenc_apply_options: set struct_size. */
typedef struct vmenc_apply_options {
    uint32_t struct_size;
    vmenc_progress_fn progress; /* may be NULL */
    void *progress_ctx;
    uint64_t segment_bytes;     /* as vmenc_convert_options */
    uint32_t flags;             /* VMENC_APPLY_* */
} vmenc_apply_options;

/* VMENC_APPLY_ONLINE: the VM runs in this process (e.g. the nbdkit plugin
 * serving its disk, asked through its control endpoint). A disk opened
 * writable through this vmenc_vm is converted through that open handle
 * while its I/O goes on (the in-place engine), instead of the call failing
 * with VMENC_E_BAD_STATE; disks not open are converted as without the flag.
 * An open VM state file still fails with VMENC_E_BAD_STATE. The caller must
 * not close such a disk, nor step or roll back its conversion, until the
 * call returns. Authorization and audit are unchanged. */
#define VMENC_APPLY_ONLINE (1u << 0)

/* vmenc_vm_apply_storage_policy_ex is vmenc_vm_apply_storage_policy that
 * also converts disks holding data in place (the VM powered off: no disk
 * open; VMENC_APPLY_ONLINE: its open disks convert through their handles),
 * reporting progress; it first finishes any interrupted conversion of the
 * VM's disks. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_apply_storage_policy_ex(vmenc_vm *vm, const char *principal,
                                                                         const char *name,
                                                                         const vmenc_apply_options *opts);

/* vmenc_vm_rekey_deep gives every encrypted disk of a powered-off VM a new
 * DEK and re-encrypts it in place, then gives the VM home a new VM key: its
 * state files and sealed configuration are re-sealed under it (policy
 * VMENC_OP_REKEY_DEEP; docs/reencryption.md). Interrupted, the VM still
 * opens (each state file under one key or the other, the AEAD telling
 * which), shallow rekey and clone wait, and vmenc_vm_resume (or calling
 * this again) finishes it. With VMENC_APPLY_ONLINE in |opts| the VM may be
 * running: its open disks are re-encrypted through their handles. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_rekey_deep(vmenc_vm *vm, const char *principal,
                                                            const vmenc_apply_options *opts);

/* vmenc_vm_resume finishes every interrupted conversion of a powered-off
 * VM's disks (each authorized as its kind), an interrupted deep rekey of its
 * home (as VMENC_OP_REKEY_DEEP), and then the storage policy whose
 * application was interrupted, if any (the configuration records it:
 * vmenc.applyingPolicy), as vmenc_vm_apply_storage_policy_ex would. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_resume(vmenc_vm *vm, const char *principal,
                                                        const vmenc_apply_options *opts);

/* ---- VM state files ------------------------------------------------------ */

typedef enum vmenc_vm_file_class {
    VMENC_VM_FILE_NVRAM = 1, /* NAME.nvram */
    VMENC_VM_FILE_VMSS = 2,  /* NAME.vmss (suspend state) */
    VMENC_VM_FILE_VMSN = 3,  /* NAME-SnapshotN.vmsn (snapshot state), N = index */
    VMENC_VM_FILE_VMEM = 4,  /* NAME-SnapshotN.vmem (snapshot memory), N = index */
    VMENC_VM_FILE_VSWP = 5   /* NAME.vswp (swap; XTS, fixed size memory_bytes) */
} vmenc_vm_file_class;

#define VMENC_VM_FILE_CREATE (1u << 0)   /* create if missing */
#define VMENC_VM_FILE_TRUNCATE (1u << 1) /* start empty (not for VSWP) */
#define VMENC_VM_FILE_READONLY (1u << 2)
/* Out-of-band access (a tool copying a state file out or in, not the
 * hypervisor running the VM): with VMENC_VM_FILE_READONLY the open is a
 * download, policy VMENC_OP_EXPORT_VM (VirtualMachine.Provisioning.
 * GetVmFiles); without it the handle can write and read, so it is an
 * upload, VMENC_OP_UPLOAD_FILES (PutVmFiles), and a download too. On an
 * encrypted VM each also needs Cryptographer.Access. Audited as
 * "vm.file_export" / "vm.file_upload". */
#define VMENC_VM_FILE_EXPORT (1u << 3)

/* vmenc_vm_file_open opens state file |cls| (|index| is the snapshot
 * number for VMSN/VMEM, else 0) of |vm| (policy VMENC_OP_POWER_ON - the
 * hypervisor's own path - or, with VMENC_VM_FILE_EXPORT, as that flag
 * says; audited). For an encrypted VM, AEAD classes verify the header and the
 * final chunk on open: a truncated, edited, foreign (another VM, another
 * file) or wrong-class file fails with VMENC_E_AUTH / VMENC_E_BAD_MAGIC /
 * VMENC_E_TRUNCATED / VMENC_E_PARSE (header of another class or index). A
 * plain VM's state files are plain. VMENC_E_VM_LOCKED for a locked VM. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_file_open(vmenc_vm *vm, const char *principal,
                                                           vmenc_vm_file_class cls, uint32_t index,
                                                           uint32_t flags, vmenc_vm_file **out);

/* vmenc_vm_file_pread reads up to |len| bytes at |offset| into |out|; the
 * count read goes to |*out_read| (short only at end of file). Every chunk
 * touched is authenticated first: VMENC_E_AUTH for any tampering, and
 * nothing unauthenticated reaches |out|. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_file_pread(vmenc_vm_file *f, uint64_t offset, size_t len,
                                                            uint8_t *out, size_t *out_read);

/* vmenc_vm_file_pwrite writes |len| bytes at |offset|, extending the file
 * (a gap reads as zeros). VSWP: the range must lie within its fixed size. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_file_pwrite(vmenc_vm_file *f, uint64_t offset,
                                                             const uint8_t *data, size_t len);

/* vmenc_vm_file_get_size writes the plaintext size in bytes. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_file_get_size(vmenc_vm_file *f, uint64_t *out);

/* vmenc_vm_file_flush makes completed writes durable. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_file_flush(vmenc_vm_file *f);

/* vmenc_vm_file_close flushes (unless read-only) and frees; returns the
 * flush's status. NULL is allowed. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_file_close(vmenc_vm_file *f);

/* ---- configuration entries ------------------------------------------------ */

#define VMENC_VM_CONFIG_SECRET (1u << 0) /* kept in encryption.data (AEAD), not in clear */

/* vmenc_vm_config_set sets configuration entry |key| ([A-Za-z0-9._:-],
 * 1..128 bytes, not "encryption.*" nor "vmenc.*": those belong to vmenc) to
 * |value| (printable UTF-8 without '"', up to 4096 bytes; NULL removes it),
 * in clear or, with VMENC_VM_CONFIG_SECRET on an encrypted VM, sealed in
 * encryption.data (VMENC_E_BAD_STATE on a plain VM). Policy
 * VMENC_OP_EDIT_SETTINGS. The .vmx is replaced atomically. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_config_set(vmenc_vm *vm, const char *principal,
                                                            const char *key, const char *value,
                                                            uint32_t flags);

/* vmenc_vm_config_get copies entry |key| (clear or secret; a secret one
 * needs VMENC_OP_CONSOLE - Cryptographer.Access) into |out| (NUL-terminated)
 * and its length to |*out_len| (may be NULL). VMENC_E_NOT_FOUND,
 * VMENC_E_BUFFER_TOO_SMALL (|*out_len| = needed length). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_config_get(vmenc_vm *vm, const char *principal,
                                                            const char *key, char *out, size_t out_cap,
                                                            size_t *out_len);

/* ---- image locks (docs/vm.md "Locks") ----------------------------------------- */

#define VMENC_LOCK_FIELD_MAX 256u
#define VMENC_LOCK_MESSAGE_MAX 1024u
/* The holder was named by its owner record (else only the conflicting
 * permission is known: the record was missing, stale or unreadable). */
#define VMENC_LOCK_HOLDER_KNOWN (1u << 0)

/* vmenc_lock_holder: who holds the image lock an open or a conversion of
 * this VM ran into (caller memory; struct_size first). The lock itself is
 * the truth; these fields come from the owner record beside the file
 * (FILE.lck), a hint written by the holder - never trusted to grant
 * anything, shown so an operator knows whom to ask. A front end that finds
 * |access| "writing" or "converting" and |program| its server (e.g.
 * "nbdkit") knows the disk is served by that process. */
typedef struct vmenc_lock_holder {
    uint32_t struct_size;                   /* sizeof(vmenc_lock_holder) */
    uint32_t flags;                         /* VMENC_LOCK_HOLDER_* */
    int64_t pid;                            /* the holder's process ID; 0 = unknown */
    uint64_t since_ms;                      /* UNIX time in ms it took the lock; 0 = unknown */
    char file[VMENC_LOCK_FIELD_MAX];        /* the locked file in the VM home */
    char conflict[16];                      /* the permission refused: "read", "write" or "convert" */
    char access[16];                        /* what the holder does: "reading", "writing", "converting" */
    char host[VMENC_LOCK_FIELD_MAX];        /* the holder's vmenc host ID ("" = unknown) */
    char node[VMENC_LOCK_FIELD_MAX];        /* the holder's machine (uname nodename) */
    char program[VMENC_LOCK_FIELD_MAX];     /* the holder's program ("nbdkit", "vmenc", ...) */
    char operation[VMENC_LOCK_FIELD_MAX];   /* its operation ("disk.open", "disk.convert", ...) */
    char message[VMENC_LOCK_MESSAGE_MAX];   /* one sentence: "in use by another process: ..." */
} vmenc_lock_holder;

/* vmenc_vm_get_lock_holder copies the holder of the lock behind the last
 * VMENC_E_LOCKED that an open, a file open or a conversion of |vm| returned
 * (in any thread) into |*out|. VMENC_E_NOT_FOUND when none did;
 * VMENC_E_ABI_VERSION when out->struct_size is smaller than the first
 * version of the struct. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_get_lock_holder(vmenc_vm *vm, vmenc_lock_holder *out);

/* vmenc_vm_get_error_detail copies into |out| (capacity |out_cap|, NUL
 * terminated) the sentence that explained the last refusal of a disk open
 * or resume of |vm| which a file of its home caused - today a conversion
 * state file (.cvt) that is missing or fails its MAC: it names the disk and
 * the file and the verb that recovers it ('vmenc disk convert-recover').
 * The same sentence is the reason of the audit event. It names files, never
 * key material. VMENC_E_NOT_FOUND when no refusal left one;
 * VMENC_E_BUFFER_TOO_SMALL when it does not fit (640 bytes always do). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_vm_get_error_detail(vmenc_vm *vm, char *out, size_t out_cap);

#ifdef __cplusplus
}
#endif
#endif /* VMENC_VM_H */
