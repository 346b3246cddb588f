/*
 * vmenc/policy.h - who may do what to which VM: privileges, roles,
 * principals and groups, an inventory tree with permissions, authorization
 * decisions with their reason, storage policies (what to encrypt, with which
 * key provider, how to migrate), and the host encryption mode state machine.
 *
 * The model follows vSphere VM Encryption: privileges carry vSphere's API
 * names ("Cryptographer.Decrypt", "VirtualMachine.Interact.PowerOn"), the
 * predefined roles are Admin, NoCryptoAdmin, ReadOnly and NoAccess, and
 * permissions are resolved with vSphere's documented rules (see
 * vmenc_policy_check and docs/policy.md).
 *
 * Thread safety: a vmenc_policy is safe to share between threads. Every
 * reader (check, lookups, save) holds a read lock for the duration of the
 * call and every writer (add, grant, set, reload) a write lock (a writer-
 * preferring pthread rwlock), so a reader sees either the state before or
 * after a whole mutation, never part of one. Results are copied into
 * caller-owned memory before the lock is released, so nothing a call returns
 * refers to the policy's internals.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_POLICY_H
#define VMENC_POLICY_H

#include "vmenc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmenc_policy vmenc_policy;

/* Longest name (role, principal, inventory object, storage policy, key
 * provider) in bytes, without the terminating NUL. Names are 1..255 bytes of
 * UTF-8 without control characters. */
#define VMENC_POLICY_NAME_MAX 255
/* Size of the sentence buffers in decisions and errors (with the NUL). */
#define VMENC_POLICY_MESSAGE_MAX 640
/* Largest JSON policy document vmenc_policy_load_json accepts, in bytes. */
#define VMENC_POLICY_MAX_DOCUMENT ((size_t)64 << 20)
/* Deepest JSON nesting accepted (the schema itself needs 4). */
#define VMENC_POLICY_MAX_JSON_DEPTH 16
/* Bounds on the model (VMENC_E_LIMIT past them). */
#define VMENC_POLICY_MAX_OBJECTS (1u << 20)
#define VMENC_POLICY_MAX_PRINCIPALS (1u << 20)
#define VMENC_POLICY_MAX_ROLES 4096u
#define VMENC_POLICY_MAX_PERMISSIONS (1u << 22)
#define VMENC_POLICY_MAX_STORAGE_POLICIES 4096u
#define VMENC_POLICY_MAX_GROUP_MEMBERS (1u << 22)
/* A principal belongs to at most this many groups, counting nesting. */
#define VMENC_POLICY_MAX_GROUPS_PER_PRINCIPAL 1024u
/* All principals' group sets together hold at most this many entries. */
#define VMENC_POLICY_MAX_GROUP_CLOSURE (1u << 24)
/* The inventory is at most this deep (the root has depth 0). */
#define VMENC_POLICY_MAX_DEPTH 128u

/* ---- privileges ----------------------------------------------------------
 * Stable numbers; new privileges are appended. Names are vSphere's. */
typedef enum vmenc_policy_privilege {
    VMENC_PRIV_NONE = -1,
    /* Cryptographic operations */
    VMENC_PRIV_CRYPTO_ACCESS = 0,            /* Cryptographer.Access: console, export, NFC of an encrypted VM */
    VMENC_PRIV_CRYPTO_ADD_DISK,              /* Cryptographer.AddDisk */
    VMENC_PRIV_CRYPTO_CLONE,                 /* Cryptographer.Clone */
    VMENC_PRIV_CRYPTO_DECRYPT,               /* Cryptographer.Decrypt */
    VMENC_PRIV_CRYPTO_ENCRYPT,               /* Cryptographer.Encrypt */
    VMENC_PRIV_CRYPTO_ENCRYPT_NEW,           /* Cryptographer.EncryptNew */
    VMENC_PRIV_CRYPTO_MANAGE_ENCRYPTION_POLICY, /* Cryptographer.ManageEncryptionPolicy */
    VMENC_PRIV_CRYPTO_MANAGE_KEY_SERVERS,    /* Cryptographer.ManageKeyServers */
    VMENC_PRIV_CRYPTO_MANAGE_KEYS,           /* Cryptographer.ManageKeys */
    VMENC_PRIV_CRYPTO_MIGRATE,               /* Cryptographer.Migrate */
    VMENC_PRIV_CRYPTO_RECRYPT,               /* Cryptographer.Recrypt */
    VMENC_PRIV_CRYPTO_REGISTER_HOST,         /* Cryptographer.RegisterHost */
    VMENC_PRIV_CRYPTO_REGISTER_VM,           /* Cryptographer.RegisterVM */
    VMENC_PRIV_CRYPTO_READ_KEY_SERVERS_INFO, /* Cryptographer.ReadKeyServersInfo */
    /* System */
    VMENC_PRIV_SYSTEM_ANONYMOUS,             /* System.Anonymous */
    VMENC_PRIV_SYSTEM_VIEW,                  /* System.View */
    VMENC_PRIV_SYSTEM_READ,                  /* System.Read */
    /* Virtual machine */
    VMENC_PRIV_VM_POWER_ON,                  /* VirtualMachine.Interact.PowerOn */
    VMENC_PRIV_VM_POWER_OFF,                 /* VirtualMachine.Interact.PowerOff */
    VMENC_PRIV_VM_SUSPEND,                   /* VirtualMachine.Interact.Suspend */
    VMENC_PRIV_VM_RESET,                     /* VirtualMachine.Interact.Reset */
    VMENC_PRIV_VM_CONSOLE,                   /* VirtualMachine.Interact.ConsoleInteract */
    VMENC_PRIV_VM_CLONE,                     /* VirtualMachine.Provisioning.Clone */
    VMENC_PRIV_VM_GET_FILES,                 /* VirtualMachine.Provisioning.GetVmFiles */
    VMENC_PRIV_VM_PUT_FILES,                 /* VirtualMachine.Provisioning.PutVmFiles */
    VMENC_PRIV_VM_ADD_NEW_DISK,              /* VirtualMachine.Config.AddNewDisk */
    VMENC_PRIV_VM_ADD_EXISTING_DISK,         /* VirtualMachine.Config.AddExistingDisk */
    VMENC_PRIV_VM_REMOVE_DISK,               /* VirtualMachine.Config.RemoveDisk */
    VMENC_PRIV_VM_SETTINGS,                  /* VirtualMachine.Config.Settings */
    VMENC_PRIV_VM_CREATE,                    /* VirtualMachine.Inventory.Create */
    VMENC_PRIV_VM_REGISTER,                  /* VirtualMachine.Inventory.Register */
    VMENC_PRIV_VM_UNREGISTER,                /* VirtualMachine.Inventory.Unregister */
    VMENC_PRIV_VM_DELETE,                    /* VirtualMachine.Inventory.Delete */
    VMENC_PRIV_VM_SNAPSHOT,                  /* VirtualMachine.State.CreateSnapshot */
    /* Resource */
    VMENC_PRIV_RESOURCE_HOT_MIGRATE,         /* Resource.HotMigrate */
    VMENC_PRIV_RESOURCE_COLD_MIGRATE,        /* Resource.ColdMigrate */
    VMENC_PRIV_RESOURCE_ASSIGN_VM_TO_POOL,   /* Resource.AssignVMToPool */
    /* Host */
    VMENC_PRIV_HOST_ADD_TO_CLUSTER,          /* Host.Inventory.AddHostToCluster */
    VMENC_PRIV_HOST_ADD_STANDALONE,          /* Host.Inventory.AddStandaloneHost */
    VMENC_PRIV_HOST_MAINTENANCE,             /* Host.Config.Maintenance */
    /* Datastore */
    VMENC_PRIV_DATASTORE_ALLOCATE_SPACE,     /* Datastore.AllocateSpace */
    VMENC_PRIV_DATASTORE_BROWSE,             /* Datastore.Browse */
    /* Storage profiles */
    VMENC_PRIV_STORAGE_PROFILE_VIEW,         /* StorageProfile.View */
    VMENC_PRIV_STORAGE_PROFILE_UPDATE,       /* StorageProfile.Update */
    /* Authorization */
    VMENC_PRIV_AUTH_MODIFY_PERMISSIONS,      /* Authorization.ModifyPermissions */
    VMENC_PRIV_AUTH_MODIFY_ROLES,            /* Authorization.ModifyRoles */
    VMENC_PRIV_COUNT_                        /* number of privileges (not a privilege) */
} vmenc_policy_privilege;

/* vmenc_policy_privilege_name returns the vSphere name of |priv|
 * ("Cryptographer.Decrypt"), or NULL for a value that names no privilege.
 * Static lifetime. */
VMENC_API const char *vmenc_policy_privilege_name(int priv);

/* vmenc_policy_privilege_from_name looks up a privilege by its exact vSphere
 * name. Fails with VMENC_E_INVALID_ARG for NULL arguments and
 * VMENC_E_NOT_FOUND for an unknown name (|*out| untouched). */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_privilege_from_name(const char *name, vmenc_policy_privilege *out);

/* vmenc_policy_privilege_count returns VMENC_PRIV_COUNT_ of this build. */
VMENC_API size_t vmenc_policy_privilege_count(void);

/* Names of the predefined roles (cannot be redefined or saved):
 * Admin          - every privilege;
 * NoCryptoAdmin  - every privilege except Cryptographer.* ("No cryptography
 *                  administrator": may power on and migrate an encrypted VM,
 *                  may not encrypt, decrypt, open its console, download it
 *                  or configure key managers);
 * ReadOnly       - System.Anonymous, System.View, System.Read;
 * NoAccess       - nothing (an explicit "deny" that overrides inheritance). */
#define VMENC_ROLE_ADMIN "Admin"
#define VMENC_ROLE_NO_CRYPTO_ADMIN "NoCryptoAdmin"
#define VMENC_ROLE_READ_ONLY "ReadOnly"
#define VMENC_ROLE_NO_ACCESS "NoAccess"

/* ---- inventory -------------------------------------------------------- */
typedef enum vmenc_policy_object_type {
    VMENC_OBJ_ROOT = 0,        /* the one root folder (the "vCenter root folder") */
    VMENC_OBJ_DATACENTER = 1,
    VMENC_OBJ_FOLDER = 2,
    VMENC_OBJ_CLUSTER = 3,
    VMENC_OBJ_HOST = 4,
    VMENC_OBJ_RESOURCE_POOL = 5,
    VMENC_OBJ_DATASTORE = 6,
    VMENC_OBJ_VM = 7
} vmenc_policy_object_type;

/* Host encryption mode (vSphere's HostCryptoState). Legal transitions:
 *   incapable -> prepared          (prepare: ready to receive keys)
 *   prepared  -> safe              (enable: host key set; runs encrypted VMs)
 *   prepared  -> incapable         (disable before a key was set)
 *   safe      -> pendingIncapable  (disable; refused while the host has
 *                                   encrypted VMs: VMENC_E_HOST_MODE)
 *   pendingIncapable -> incapable  (the reboot that completes the disable)
 * and any state to itself (no-op). Everything else is
 * VMENC_E_ILLEGAL_TRANSITION. */
typedef enum vmenc_host_crypto_state {
    VMENC_HOST_INCAPABLE = 0,
    VMENC_HOST_PREPARED = 1,
    VMENC_HOST_SAFE = 2,
    VMENC_HOST_PENDING_INCAPABLE = 3
} vmenc_host_crypto_state;

/* vmenc_host_crypto_state_name returns "incapable", "prepared", "safe",
 * "pendingIncapable", or NULL for another value. Static lifetime. */
VMENC_API const char *vmenc_host_crypto_state_name(int state);

/* ---- lifecycle ---------------------------------------------------------- */

/* vmenc_policy_new creates an empty policy: the four predefined roles, one
 * root object named |root_name| (type VMENC_OBJ_ROOT), no principals, no
 * permissions. Fails with VMENC_E_INVALID_ARG (bad name, NULL out),
 * VMENC_E_NOMEM, VMENC_E_NOT_INITIALIZED. The caller frees |*out| with
 * vmenc_policy_free. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_policy_new(const char *root_name, vmenc_policy **out);

/* vmenc_policy_free frees |policy| (NULL is fine). No other thread may be
 * using it. */
VMENC_API void vmenc_policy_free(vmenc_policy *policy);

/* ---- programmatic construction (each call takes the write lock) ----------
 * Common failures: VMENC_E_INVALID_ARG (NULL, bad name), VMENC_E_EXISTS (name
 * taken), VMENC_E_NOT_FOUND (a referenced name is unknown), VMENC_E_LIMIT,
 * VMENC_E_NOMEM. A failed call changes nothing. */

/* vmenc_policy_add_role adds a custom role with the |num_privs| privileges in
 * |privs| (duplicates are fine; an empty set is a "no access" role). The
 * predefined role names are taken. */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_add_role(vmenc_policy *policy, const char *name,
                      const vmenc_policy_privilege *privs, size_t num_privs);

/* vmenc_policy_add_user / vmenc_policy_add_group add a principal. Users and
 * groups share one namespace, so a permission names either unambiguously. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_policy_add_user(vmenc_policy *policy, const char *name);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_policy_add_group(vmenc_policy *policy, const char *name);

/* vmenc_policy_add_member makes |member| (a user or a group) a member of
 * |group|. Groups nest; membership is transitive. Fails with
 * VMENC_E_CYCLE if the group graph would get a cycle, VMENC_E_EXISTS if
 * already a direct member, VMENC_E_INVALID_ARG if |group| is a user. */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_add_member(vmenc_policy *policy, const char *group, const char *member);

/* vmenc_policy_add_object adds an inventory object under |parent| (which must
 * exist; objects are never re-parented, so the tree stays acyclic). Only the
 * root has no parent and there is exactly one, so VMENC_OBJ_ROOT is refused
 * (VMENC_E_INVALID_ARG). A VM added here is unencrypted and on no host. */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_add_object(vmenc_policy *policy, const char *name, vmenc_policy_object_type type,
                        const char *parent);

/* vmenc_policy_remove_object takes VM |name| out of the inventory, with the
 * permissions set on it: the undo of vmenc_policy_add_object for an
 * operation that added a VM and then failed. Only a VM can be removed
 * (VMENC_E_INVALID_ARG for any other type or a bad name) and only one
 * without children (VMENC_E_BAD_STATE); VMENC_E_NOT_FOUND if there is no
 * such object. The change is committed like every other (VMENC_E_NOMEM or
 * the commit's failure leave the policy as it was). It removes nothing on
 * the datastore. */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_remove_object(vmenc_policy *policy, const char *name);

/* vmenc_policy_set_vm_state records which host a VM is registered on (NULL:
 * none) and whether it is encrypted. Encrypted VMs may only be placed on a
 * host in safe mode (VMENC_E_HOST_MODE otherwise; enable it first with
 * vmenc_policy_enable_host_encryption). VMENC_E_INVALID_ARG if |vm| is not a
 * VM or |host| not a host. */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_set_vm_state(vmenc_policy *policy, const char *vm, const char *host, int encrypted);

/* vmenc_policy_grant sets the permission of |principal| on |object| to
 * |role|, replacing any permission that principal already had on that very
 * object (as vSphere does). |propagate| nonzero: it applies to descendants
 * too; zero: to the object only. */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_grant(vmenc_policy *policy, const char *principal, const char *object,
                   const char *role, int propagate);

/* vmenc_policy_revoke removes the permission of |principal| on |object|.
 * VMENC_E_NOT_FOUND if there is none. */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_revoke(vmenc_policy *policy, const char *principal, const char *object);

/* vmenc_policy_set_host_state moves |host| to |state| if the transition is
 * legal (see vmenc_host_crypto_state). VMENC_E_ILLEGAL_TRANSITION for an
 * illegal one, VMENC_E_HOST_MODE for safe -> pendingIncapable while an
 * encrypted VM is on the host. This is the administrative path and checks
 * no privileges; vmenc_policy_enable_host_encryption is the checked one. */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_set_host_state(vmenc_policy *policy, const char *host, vmenc_host_crypto_state state);

/* vmenc_policy_get_host_state reads the encryption mode of |host|. */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_get_host_state(vmenc_policy *policy, const char *host, vmenc_host_crypto_state *out);

/* ---- storage policies ------------------------------------------------- */

/* File classes a storage policy encrypts. */
#define VMENC_FILE_VM_HOME    (1u << 0) /* VM state files: NVRAM, swap, suspend, snapshot memory */
#define VMENC_FILE_DISKS      (1u << 1) /* virtual disk data (needs VMENC_FILE_VM_HOME) */
#define VMENC_FILE_CORE_DUMPS (1u << 2) /* core dumps of the VM's process */
#define VMENC_FILE_ALL_ (VMENC_FILE_VM_HOME | VMENC_FILE_DISKS | VMENC_FILE_CORE_DUMPS)

/* Encrypted vMotion. An encrypted VM always migrates encrypted, whatever its
 * policy says. */
typedef enum vmenc_migration_encryption {
    VMENC_MIGRATION_DISABLED = 0,
    VMENC_MIGRATION_OPPORTUNISTIC = 1,
    VMENC_MIGRATION_REQUIRED = 2
} vmenc_migration_encryption;

/* A storage policy as callers describe it (struct_size first). */
typedef struct vmenc_storage_policy_spec {
    uint32_t struct_size;      /* sizeof(vmenc_storage_policy_spec) */
    const char *name;
    int encrypt;               /* nonzero: encrypt |file_classes|; zero: plain */
    uint32_t file_classes;     /* VMENC_FILE_*; must be nonzero iff encrypt */
    const char *key_provider;  /* key provider (KMS cluster alias); required iff encrypt */
    vmenc_migration_encryption migration;
} vmenc_storage_policy_spec;

/* vmenc_policy_set_storage_policy adds or replaces the storage policy named
 * |spec->name|. Fails with VMENC_E_ABI_VERSION for a too-small struct_size
 * and VMENC_E_POLICY_INVALID for an inconsistent spec (encrypt without file
 * classes or provider, disks without VM home, unknown bits, a provider on a
 * plain policy). Pointers are copied; the caller keeps its strings. */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_set_storage_policy(vmenc_policy *policy, const vmenc_storage_policy_spec *spec);

/* The encryption state of one VM as the caller knows it (struct_size first). */
typedef struct vmenc_vm_disk_state {
    int encrypted;
    const char *key_provider;  /* provider of the disk's KEK when encrypted */
} vmenc_vm_disk_state;

typedef struct vmenc_vm_crypto_state {
    uint32_t struct_size;      /* sizeof(vmenc_vm_crypto_state) */
    int home_encrypted;
    const char *home_provider;
    size_t num_disks;
    const vmenc_vm_disk_state *disks;
    int core_dumps_encrypted;
    const char *core_dump_provider;
    vmenc_migration_encryption migration;
} vmenc_vm_crypto_state;

typedef enum vmenc_policy_action_type {
    VMENC_ACTION_ENCRYPT_HOME = 1,
    VMENC_ACTION_ENCRYPT_DISK = 2,
    VMENC_ACTION_ENCRYPT_CORE_DUMPS = 3,
    VMENC_ACTION_DECRYPT_HOME = 4,
    VMENC_ACTION_DECRYPT_DISK = 5,
    VMENC_ACTION_DECRYPT_CORE_DUMPS = 6,
    VMENC_ACTION_REKEY_HOME = 7,       /* shallow rekey: rewrap under a KEK of the new provider */
    VMENC_ACTION_REKEY_DISK = 8,
    VMENC_ACTION_REKEY_CORE_DUMPS = 9,
    VMENC_ACTION_SET_MIGRATION = 10
} vmenc_policy_action_type;

typedef struct vmenc_policy_action {
    vmenc_policy_action_type type;
    size_t disk;                                  /* disk index for *_DISK actions, else 0 */
    vmenc_migration_encryption migration;         /* for VMENC_ACTION_SET_MIGRATION */
    char key_provider[VMENC_POLICY_NAME_MAX + 1]; /* target provider of ENCRYPT/REKEY, else "" */
} vmenc_policy_action;

/* Enough room for every action applying a policy to a VM with |n| disks. */
#define VMENC_POLICY_MAX_ACTIONS(n) ((size_t)(n) + 4u)

/* vmenc_policy_plan_storage_policy computes the actions that bring a VM in
 * |state| to storage policy |name|, in the order to perform them (the VM home
 * is encrypted before its disks and decrypted after them), writes them to
 * |out[0..*out_num)|, and sets |*out_num|. No actions means the VM already
 * complies. Fails with VMENC_E_NOT_FOUND (no such policy),
 * VMENC_E_ABI_VERSION, VMENC_E_INVALID_ARG (encrypted disk on a plain VM
 * home, missing provider of an encrypted class), VMENC_E_BUFFER_TOO_SMALL if
 * |out_cap| < VMENC_POLICY_MAX_ACTIONS(state->num_disks); outputs are
 * untouched on failure. */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_plan_storage_policy(vmenc_policy *policy, const char *name,
                                 const vmenc_vm_crypto_state *state,
                                 vmenc_policy_action *out, size_t out_cap, size_t *out_num);

/* ---- decisions ----------------------------------------------------------- */

typedef enum vmenc_policy_op {
    VMENC_OP_ENCRYPT_VM = 1,          /* encrypt an existing VM (or one of its disks) */
    VMENC_OP_CREATE_VM = 2,           /* create a VM; encrypted with VMENC_REQ_TARGET_ENCRYPTED */
    VMENC_OP_DECRYPT_VM = 3,
    VMENC_OP_CLONE_VM = 4,            /* source |vm| -> |folder| (+ |pool|, |datastore|, |host|) */
    VMENC_OP_ADD_DISK = 5,
    VMENC_OP_REKEY_SHALLOW = 6,       /* new KEK, same DEKs */
    VMENC_OP_REKEY_DEEP = 7,          /* new DEKs: re-encrypts the data on |host| */
    VMENC_OP_MIGRATE_VM = 8,          /* |vm| -> |host| / |pool| / |datastore| */
    VMENC_OP_REGISTER_VM = 9,         /* |vm| into |folder| (+ |pool|, |host|) */
    VMENC_OP_REGISTER_HOST = 10,      /* add |host| into |pool| (cluster) */
    VMENC_OP_ENABLE_HOST_ENCRYPTION = 11, /* switch |host| to safe mode */
    VMENC_OP_CONSOLE = 12,
    VMENC_OP_EXPORT_VM = 13,          /* download / export / NFC of the VM's files */
    VMENC_OP_MANAGE_KEYS = 14,        /* on the root */
    VMENC_OP_MANAGE_KEY_SERVERS = 15, /* on the root */
    VMENC_OP_MANAGE_ENCRYPTION_POLICIES = 16, /* on the root */
    VMENC_OP_READ_KEY_SERVERS = 17,   /* on the root */
    VMENC_OP_POWER_ON = 18,
    VMENC_OP_POWER_OFF = 19,
    VMENC_OP_EDIT_SETTINGS = 20,
    VMENC_OP_SNAPSHOT = 21,
    VMENC_OP_VIEW = 22,               /* read the VM's configuration */
    VMENC_OP_UPLOAD_FILES = 23,       /* upload files into the VM's home (vSphere PutVmFiles, NFC) */
    VMENC_OP_READ_POLICY = 24,        /* read the policy document or the audit log: System.Read on the root */
    VMENC_OP_COUNT_ = 25              /* one past the last operation; grows as operations are
                                         appended: never size stored data or a wire format by it */
} vmenc_policy_op;

/* vmenc_policy_op_name returns a short name ("clone_vm") or NULL. Static. */
VMENC_API const char *vmenc_policy_op_name(int op);

/* Request flags. */
#define VMENC_REQ_VM_ENCRYPTED     (1u << 0) /* |vm| (the source) is encrypted */
#define VMENC_REQ_TARGET_ENCRYPTED (1u << 1) /* the result is encrypted (create, clone, register host into an encrypting cluster) */
#define VMENC_REQ_POWERED_ON       (1u << 2) /* migrate: the VM runs (hot migration) */

/* One operation request (struct_size first). Unused object fields are NULL;
 * which ones an operation reads and requires is in docs/policy.md; fields an
 * operation does not read are ignored (not even looked up). |host| is
 * the host that will hold keys for the operation (migrate: the destination);
 * when it is given and the operation needs keys there, the host must be in
 * safe mode or be switchable to it (see vmenc_policy_decision). */
typedef struct vmenc_policy_request {
    uint32_t struct_size;      /* sizeof(vmenc_policy_request) */
    vmenc_policy_op op;
    const char *vm;
    const char *folder;
    const char *host;
    const char *pool;          /* resource pool or cluster */
    const char *datastore;
    uint32_t flags;            /* VMENC_REQ_* */
} vmenc_policy_request;

/* A decision, filled by vmenc_policy_check into caller memory (so it lives
 * as long as the caller keeps it and needs no freeing). */
typedef struct vmenc_policy_decision {
    uint32_t struct_size;      /* caller sets sizeof(vmenc_policy_decision) */
    int allowed;               /* 1 allowed, 0 denied */
    vmenc_status status;       /* VMENC_OK, VMENC_E_DENIED or VMENC_E_HOST_MODE */
    vmenc_policy_privilege missing_privilege; /* VMENC_PRIV_NONE unless denied for a privilege */
    char missing_object[VMENC_POLICY_NAME_MAX + 1]; /* where it was missing, else "" */
    int enable_host_encryption; /* allowed, but |host| must first be switched to safe
                                   mode (vmenc_policy_enable_host_encryption) */
    char host[VMENC_POLICY_NAME_MAX + 1]; /* the host concerned by the host mode, else "" */
    char message[VMENC_POLICY_MESSAGE_MAX]; /* one English sentence saying why */
} vmenc_policy_decision;

/* vmenc_policy_check decides whether |principal| may perform |request|.
 *
 * Effective privileges of a principal on an object follow vSphere: walk from
 * the object towards the root; the first object carrying a permission that
 * applies to the principal (any permission on the object itself, only
 * propagating ones on ancestors) decides alone - an explicit permission
 * overrides an inherited one. There, the principal's own permission
 * overrides its groups'; without one, the roles of all its groups
 * (transitively) at that object are united. No permission: no privileges. A
 * principal the policy does not know has no groups and is denied unless a
 * permission names it.
 *
 * Returns VMENC_OK if allowed, VMENC_E_DENIED if a privilege is missing
 * (first missing one in |decision|), VMENC_E_HOST_MODE if the host cannot
 * be (or may not be, without Cryptographer.RegisterHost on it) switched to
 * safe mode. In these three cases |*decision| is filled (this is the one
 * exception to "failure leaves out-params untouched": the decision explains
 * the status). Every object field must name an object of a type it may
 * name: |vm| a VM, |host| a host, |datastore| a datastore, |folder| a
 * folder, datacenter or the root, |pool| a resource pool, cluster or host
 * (for VMENC_OP_REGISTER_HOST: a cluster). A field naming another type is
 * VMENC_E_INVALID_ARG with |*decision| filled too (allowed 0, status
 * VMENC_E_INVALID_ARG, a message naming the field). Other failures leave it
 * untouched: VMENC_E_INVALID_ARG (NULL, malformed name, unknown op or flag,
 * a field the op requires is NULL), VMENC_E_ABI_VERSION (a struct_size too
 * small), VMENC_E_NOT_FOUND (a named object is not in the inventory). Treat
 * anything but VMENC_OK as "no". Read lock only; never blocks another
 * reader. */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_check(vmenc_policy *policy, const char *principal, const vmenc_policy_request *request,
                   vmenc_policy_decision *decision);

/* vmenc_policy_has_privilege answers one question: does |principal| hold
 * |priv| on |object| (*out = 1) or not (0)? Same rules and errors as
 * vmenc_policy_check. */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_has_privilege(vmenc_policy *policy, const char *principal, const char *object,
                           vmenc_policy_privilege priv, int *out);

/* vmenc_policy_enable_host_encryption switches |host| to safe mode on
 * behalf of |principal| (incapable -> prepared -> safe, atomically) if the
 * principal holds Cryptographer.RegisterHost on the host. Safe already: OK.
 * Returns VMENC_E_DENIED without the privilege, VMENC_E_HOST_MODE for a
 * pendingIncapable host (reboot first); |*decision| is filled in these
 * cases and on success, like vmenc_policy_check. */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_enable_host_encryption(vmenc_policy *policy, const char *principal, const char *host,
                                    vmenc_policy_decision *decision);

/* ---- authorized edits --------------------------------------------------
 * The construction calls above (vmenc_policy_add_role, _grant, _revoke, ...)
 * check no privileges: they are the trusted bootstrap path, for the code
 * that builds a policy on its own authority (workspace creation, a loader,
 * tests) before anyone acts through it. Every edit made on behalf of a
 * principal goes through vmenc_policy_edit_as (or one of the _as calls
 * below, which fill a vmenc_policy_edit and call it), which decides and
 * applies under one write lock.
 *
 * The edit rule (vSphere's, made complete; docs/policy.md "Editing the
 * policy"): the actor needs the edit's privilege on the object it concerns
 * (the table below) AND
 *   - grant: every privilege of the granted role on that object, and of the
 *     role it replaces there if any (Authorization.ModifyPermissions);
 *   - revoke: every privilege of the removed permission's role there;
 *   - add a role (roles are global, so "there" is the root): every
 *     privilege of the role (Authorization.ModifyRoles);
 *   - add a member to a group: for every permission the group, or a group
 *     it is in (transitively), holds, every privilege of its role on that
 *     permission's object (Authorization.ModifyPermissions on the root);
 * and, whatever the edit, no principal may gain or lose a privilege on an
 * existing object that the actor does not hold there itself (an edit that
 * would, through inheritance, group membership or an explicit permission
 * overriding another, is refused naming that privilege and object). So no
 * one reaches a privilege that no holder of it granted, and no one strips
 * privileges (e.g. a crypto administrator's) that they lack.
 *
 *   edit                      needs (besides the above)
 *   ADD_ROLE                  Authorization.ModifyRoles on the root
 *   ADD_USER, ADD_GROUP,
 *   ADD_MEMBER                Authorization.ModifyPermissions on the root
 *   GRANT, REVOKE             Authorization.ModifyPermissions on the object
 *   ADD_OBJECT                on the parent: a VM VirtualMachine.Inventory.Create,
 *                             a host Host.Inventory.AddHostToCluster (parent
 *                             a cluster) or Host.Inventory.AddStandaloneHost,
 *                             any other object Authorization.ModifyPermissions
 *   SET_STORAGE_POLICY        StorageProfile.Update and
 *                             Cryptographer.ManageEncryptionPolicy on the root
 *   DISABLE_HOST_ENCRYPTION   Cryptographer.RegisterHost on the host
 *
 * (Enabling host encryption is vmenc_policy_enable_host_encryption, checked
 * the same way.) */
typedef enum vmenc_policy_edit_op {
    VMENC_EDIT_ADD_ROLE = 1,          /* |name|, |privs|, |num_privs| */
    VMENC_EDIT_ADD_USER = 2,          /* |name| */
    VMENC_EDIT_ADD_GROUP = 3,         /* |name| */
    VMENC_EDIT_ADD_MEMBER = 4,        /* |member| into group |name| */
    VMENC_EDIT_ADD_OBJECT = 5,        /* |name| of |object_type| under |object| */
    VMENC_EDIT_GRANT = 6,             /* |name| (principal) gets |role| on |object|, |propagate| */
    VMENC_EDIT_REVOKE = 7,            /* |name| (principal) loses its permission on |object| */
    VMENC_EDIT_SET_STORAGE_POLICY = 8, /* |storage_policy| */
    VMENC_EDIT_DISABLE_HOST_ENCRYPTION = 9, /* host |name|: prepared -> incapable,
                                             safe -> pendingIncapable */
    VMENC_EDIT_COUNT_ = 10            /* one past the last; grows */
} vmenc_policy_edit_op;

/* One edit (struct_size first); fields an op does not read are ignored. */
typedef struct vmenc_policy_edit {
    uint32_t struct_size;             /* sizeof(vmenc_policy_edit) */
    vmenc_policy_edit_op op;
    const char *name;                 /* see vmenc_policy_edit_op */
    const char *object;               /* grant/revoke: the object; add_object: the parent */
    const char *role;                 /* grant */
    const char *member;               /* add_member */
    int propagate;                    /* grant */
    vmenc_policy_object_type object_type; /* add_object */
    const vmenc_policy_privilege *privs;  /* add_role */
    size_t num_privs;
    const vmenc_storage_policy_spec *storage_policy; /* set_storage_policy */
} vmenc_policy_edit;

/* vmenc_policy_edit_op_name returns a short name for an edit ("grant",
 * "add_role", ...; audit operations use "policy." + it), or NULL. Static. */
VMENC_API const char *vmenc_policy_edit_op_name(int op);

/* vmenc_policy_edit_as applies |edit| on behalf of |actor| if the edit rule
 * above allows it, deciding and applying under one write lock (nothing can
 * change in between), then commits the change (the policy's storage hook).
 * |*decision| is filled whenever the edit was decided: allowed 1 and
 * VMENC_OK when applied; VMENC_E_DENIED with the first missing privilege,
 * the object it is missing on and a sentence; VMENC_E_INVALID_ARG /
 * VMENC_E_NOT_FOUND / VMENC_E_EXISTS / VMENC_E_CYCLE / VMENC_E_HOST_MODE /
 * VMENC_E_ILLEGAL_TRANSITION / VMENC_E_POLICY_INVALID / VMENC_E_LIMIT /
 * VMENC_E_NOMEM (allowed 0, a sentence) when the edit itself failed or the
 * commit failed (then nothing changed). A denied or failed edit changes
 * nothing. An actor the policy does not know holds nothing and is denied.
 * VMENC_E_ABI_VERSION for a too-small struct_size (decision untouched). */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_edit_as(vmenc_policy *policy, const char *actor, const vmenc_policy_edit *edit,
                     vmenc_policy_decision *decision);

/* The same edits as calls (each fills a vmenc_policy_edit and calls
 * vmenc_policy_edit_as; same rule, returns and decision). */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_add_role_as(vmenc_policy *policy, const char *actor, const char *name,
                         const vmenc_policy_privilege *privs, size_t num_privs,
                         vmenc_policy_decision *decision);
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_add_user_as(vmenc_policy *policy, const char *actor, const char *name,
                         vmenc_policy_decision *decision);
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_add_group_as(vmenc_policy *policy, const char *actor, const char *name,
                          vmenc_policy_decision *decision);
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_add_member_as(vmenc_policy *policy, const char *actor, const char *group,
                           const char *member, vmenc_policy_decision *decision);
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_add_object_as(vmenc_policy *policy, const char *actor, const char *name,
                           vmenc_policy_object_type type, const char *parent,
                           vmenc_policy_decision *decision);
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_grant_as(vmenc_policy *policy, const char *actor, const char *principal,
                      const char *object, const char *role, int propagate,
                      vmenc_policy_decision *decision);
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_revoke_as(vmenc_policy *policy, const char *actor, const char *principal,
                       const char *object, vmenc_policy_decision *decision);
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_set_storage_policy_as(vmenc_policy *policy, const char *actor,
                                   const vmenc_storage_policy_spec *spec,
                                   vmenc_policy_decision *decision);
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_disable_host_encryption_as(vmenc_policy *policy, const char *actor,
                                        const char *host, vmenc_policy_decision *decision);

/* ---- JSON document ---------------------------------------------------- */

/* Where a document was rejected (caller memory; struct_size first). */
typedef struct vmenc_policy_error {
    uint32_t struct_size;      /* sizeof(vmenc_policy_error) */
    vmenc_status status;       /* the status the load returned */
    char path[VMENC_POLICY_MESSAGE_MAX];    /* JSONPath of the offending value, "$" for the whole document */
    char message[VMENC_POLICY_MESSAGE_MAX]; /* one sentence */
    size_t offset;             /* byte offset for syntax errors, else 0 */
} vmenc_policy_error;

/* vmenc_policy_load_json parses a policy document (format: docs/policy.md)
 * from |json_len| bytes at |json| (no NUL terminator needed; NUL bytes are
 * rejected) and builds a new policy. The document is strictly validated:
 * unknown fields, wrong types, unknown privileges, names of bad length,
 * duplicates, dangling references and cycles are errors. On failure returns
 * the status and, if |err| is not NULL, fills it with the JSON path of the
 * offending value; |*out| is untouched.
 *   VMENC_E_TOO_LARGE       json_len > VMENC_POLICY_MAX_DOCUMENT
 *   VMENC_E_BAD_ENCODING    not JSON, not UTF-8, NUL bytes
 *   VMENC_E_TRUNCATED       the document ends early
 *   VMENC_E_TRAILING_DATA   bytes after the document
 *   VMENC_E_DEPTH_LIMIT     nesting deeper than VMENC_POLICY_MAX_JSON_DEPTH
 *   VMENC_E_BAD_VERSION     "version" is not 1
 *   VMENC_E_POLICY_INVALID  schema violation (unknown field/privilege, type)
 *   VMENC_E_NOT_FOUND       a dangling reference (role, principal, object, host)
 *   VMENC_E_EXISTS          a duplicate name, member or permission
 *   VMENC_E_CYCLE           the inventory or the group graph has a cycle
 *   VMENC_E_HOST_MODE       an encrypted VM on a host not in safe mode
 *   VMENC_E_LIMIT           more objects/principals/... than the limits
 *   VMENC_E_NOMEM           */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_load_json(const uint8_t *json, size_t json_len, vmenc_policy_error *err,
                       vmenc_policy **out);

/* vmenc_policy_reload_json replaces the whole content of |policy| by the
 * document, atomically: readers see the old policy or the new one. On
 * failure (same statuses as vmenc_policy_load_json) |policy| is unchanged. */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_reload_json(vmenc_policy *policy, const uint8_t *json, size_t json_len,
                         vmenc_policy_error *err);

/* vmenc_policy_save_json serialises |policy| canonically (fixed field
 * order, entries in the order they were added, privileges in enum order,
 * predefined roles omitted), so saving what was loaded from a saved document
 * gives the same bytes. |*out| is heap memory of |*out_len| bytes plus a NUL
 * (not counted) that the caller releases with vmenc_policy_buffer_free.
 * Fails with VMENC_E_INVALID_ARG, VMENC_E_NOMEM; outputs untouched. */
VMENC_API VMENC_MUST_CHECK vmenc_status
vmenc_policy_save_json(vmenc_policy *policy, uint8_t **out, size_t *out_len);

/* vmenc_policy_buffer_free frees a buffer from vmenc_policy_save_json. */
VMENC_API void vmenc_policy_buffer_free(uint8_t *buf);

#ifdef __cplusplus
}
#endif
#endif /* VMENC_POLICY_H */
