/*
 * lib/policy/privileges.c - the fixed vocabularies of the policy layer:
 * privilege names (vSphere's), operation, object type, host state and
 * migration mode names, and the host encryption mode transition table.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <string.h>

#include "policy/policy_internal.h"

static const char *const k_priv_names[VMENC_PRIV_COUNT_] = {
    [VMENC_PRIV_CRYPTO_ACCESS] = "Cryptographer.Access",
    [VMENC_PRIV_CRYPTO_ADD_DISK] = "Cryptographer.AddDisk",
    [VMENC_PRIV_CRYPTO_CLONE] = "Cryptographer.Clone",
    [VMENC_PRIV_CRYPTO_DECRYPT] = "Cryptographer.Decrypt",
    [VMENC_PRIV_CRYPTO_ENCRYPT] = "Cryptographer.Encrypt",
    [VMENC_PRIV_CRYPTO_ENCRYPT_NEW] = "Cryptographer.EncryptNew",
    [VMENC_PRIV_CRYPTO_MANAGE_ENCRYPTION_POLICY] = "Cryptographer.ManageEncryptionPolicy",
    [VMENC_PRIV_CRYPTO_MANAGE_KEY_SERVERS] = "Cryptographer.ManageKeyServers",
    [VMENC_PRIV_CRYPTO_MANAGE_KEYS] = "Cryptographer.ManageKeys",
    [VMENC_PRIV_CRYPTO_MIGRATE] = "Cryptographer.Migrate",
    [VMENC_PRIV_CRYPTO_RECRYPT] = "Cryptographer.Recrypt",
    [VMENC_PRIV_CRYPTO_REGISTER_HOST] = "Cryptographer.RegisterHost",
    [VMENC_PRIV_CRYPTO_REGISTER_VM] = "Cryptographer.RegisterVM",
    [VMENC_PRIV_CRYPTO_READ_KEY_SERVERS_INFO] = "Cryptographer.ReadKeyServersInfo",
    [VMENC_PRIV_SYSTEM_ANONYMOUS] = "System.Anonymous",
    [VMENC_PRIV_SYSTEM_VIEW] = "System.View",
    [VMENC_PRIV_SYSTEM_READ] = "System.Read",
    [VMENC_PRIV_VM_POWER_ON] = "VirtualMachine.Interact.PowerOn",
    [VMENC_PRIV_VM_POWER_OFF] = "VirtualMachine.Interact.PowerOff",
    [VMENC_PRIV_VM_SUSPEND] = "VirtualMachine.Interact.Suspend",
    [VMENC_PRIV_VM_RESET] = "VirtualMachine.Interact.Reset",
    [VMENC_PRIV_VM_CONSOLE] = "VirtualMachine.Interact.ConsoleInteract",
    [VMENC_PRIV_VM_CLONE] = "VirtualMachine.Provisioning.Clone",
    [VMENC_PRIV_VM_GET_FILES] = "VirtualMachine.Provisioning.GetVmFiles",
    [VMENC_PRIV_VM_PUT_FILES] = "VirtualMachine.Provisioning.PutVmFiles",
    [VMENC_PRIV_VM_ADD_NEW_DISK] = "VirtualMachine.Config.AddNewDisk",
    [VMENC_PRIV_VM_ADD_EXISTING_DISK] = "VirtualMachine.Config.AddExistingDisk",
    [VMENC_PRIV_VM_REMOVE_DISK] = "VirtualMachine.Config.RemoveDisk",
    [VMENC_PRIV_VM_SETTINGS] = "VirtualMachine.Config.Settings",
    [VMENC_PRIV_VM_CREATE] = "VirtualMachine.Inventory.Create",
    [VMENC_PRIV_VM_REGISTER] = "VirtualMachine.Inventory.Register",
    [VMENC_PRIV_VM_UNREGISTER] = "VirtualMachine.Inventory.Unregister",
    [VMENC_PRIV_VM_DELETE] = "VirtualMachine.Inventory.Delete",
    [VMENC_PRIV_VM_SNAPSHOT] = "VirtualMachine.State.CreateSnapshot",
    [VMENC_PRIV_RESOURCE_HOT_MIGRATE] = "Resource.HotMigrate",
    [VMENC_PRIV_RESOURCE_COLD_MIGRATE] = "Resource.ColdMigrate",
    [VMENC_PRIV_RESOURCE_ASSIGN_VM_TO_POOL] = "Resource.AssignVMToPool",
    [VMENC_PRIV_HOST_ADD_TO_CLUSTER] = "Host.Inventory.AddHostToCluster",
    [VMENC_PRIV_HOST_ADD_STANDALONE] = "Host.Inventory.AddStandaloneHost",
    [VMENC_PRIV_HOST_MAINTENANCE] = "Host.Config.Maintenance",
    [VMENC_PRIV_DATASTORE_ALLOCATE_SPACE] = "Datastore.AllocateSpace",
    [VMENC_PRIV_DATASTORE_BROWSE] = "Datastore.Browse",
    [VMENC_PRIV_STORAGE_PROFILE_VIEW] = "StorageProfile.View",
    [VMENC_PRIV_STORAGE_PROFILE_UPDATE] = "StorageProfile.Update",
    [VMENC_PRIV_AUTH_MODIFY_PERMISSIONS] = "Authorization.ModifyPermissions",
    [VMENC_PRIV_AUTH_MODIFY_ROLES] = "Authorization.ModifyRoles",
};

const char *vmenc_policy_privilege_name(int priv) {
    if (priv < 0 || priv >= VMENC_PRIV_COUNT_)
        return NULL;
    return k_priv_names[priv];
}

vmenc_status vmenc_policy_privilege_from_name(const char *name, vmenc_policy_privilege *out) {
    VMENC_ENSURE_REF(name);
    VMENC_ENSURE_REF(out);
    for (int i = 0; i < VMENC_PRIV_COUNT_; i++) {
        if (strcmp(k_priv_names[i], name) == 0) {
            *out = (vmenc_policy_privilege)i;
            return VMENC_OK;
        }
    }
    return VMENC_E_NOT_FOUND;
}

size_t vmenc_policy_privilege_count(void) { return VMENC_PRIV_COUNT_; }

bool priv_is_crypto(int p) { return strncmp(k_priv_names[p], "Cryptographer.", 14) == 0; }

static const char *const k_op_names[VMENC_OP_COUNT_] = {
    [VMENC_OP_ENCRYPT_VM] = "encrypt_vm",
    [VMENC_OP_CREATE_VM] = "create_vm",
    [VMENC_OP_DECRYPT_VM] = "decrypt_vm",
    [VMENC_OP_CLONE_VM] = "clone_vm",
    [VMENC_OP_ADD_DISK] = "add_disk",
    [VMENC_OP_REKEY_SHALLOW] = "rekey_shallow",
    [VMENC_OP_REKEY_DEEP] = "rekey_deep",
    [VMENC_OP_MIGRATE_VM] = "migrate_vm",
    [VMENC_OP_REGISTER_VM] = "register_vm",
    [VMENC_OP_REGISTER_HOST] = "register_host",
    [VMENC_OP_ENABLE_HOST_ENCRYPTION] = "enable_host_encryption",
    [VMENC_OP_CONSOLE] = "console",
    [VMENC_OP_EXPORT_VM] = "export_vm",
    [VMENC_OP_MANAGE_KEYS] = "manage_keys",
    [VMENC_OP_MANAGE_KEY_SERVERS] = "manage_key_servers",
    [VMENC_OP_MANAGE_ENCRYPTION_POLICIES] = "manage_encryption_policies",
    [VMENC_OP_READ_KEY_SERVERS] = "read_key_servers",
    [VMENC_OP_POWER_ON] = "power_on",
    [VMENC_OP_POWER_OFF] = "power_off",
    [VMENC_OP_EDIT_SETTINGS] = "edit_settings",
    [VMENC_OP_SNAPSHOT] = "snapshot",
    [VMENC_OP_VIEW] = "view",
    [VMENC_OP_UPLOAD_FILES] = "upload_files",
    [VMENC_OP_READ_POLICY] = "read_policy",
};

const char *vmenc_policy_op_name(int op) {
    if (op <= 0 || op >= VMENC_OP_COUNT_)
        return NULL;
    return k_op_names[op];
}

static const char *const k_type_names[] = {
    [VMENC_OBJ_ROOT] = "root",
    [VMENC_OBJ_DATACENTER] = "datacenter",
    [VMENC_OBJ_FOLDER] = "folder",
    [VMENC_OBJ_CLUSTER] = "cluster",
    [VMENC_OBJ_HOST] = "host",
    [VMENC_OBJ_RESOURCE_POOL] = "resource_pool",
    [VMENC_OBJ_DATASTORE] = "datastore",
    [VMENC_OBJ_VM] = "vm",
};

const char *object_type_name(int t) {
    if (t < 0 || t >= (int)VMENC_ARRAY_LEN(k_type_names))
        return NULL;
    return k_type_names[t];
}

bool object_type_from_name(const char *s, vmenc_policy_object_type *out) {
    for (size_t i = 0; i < VMENC_ARRAY_LEN(k_type_names); i++) {
        if (strcmp(k_type_names[i], s) == 0) {
            *out = (vmenc_policy_object_type)i;
            return true;
        }
    }
    return false;
}

static const char *const k_state_names[] = {
    [VMENC_HOST_INCAPABLE] = "incapable",
    [VMENC_HOST_PREPARED] = "prepared",
    [VMENC_HOST_SAFE] = "safe",
    [VMENC_HOST_PENDING_INCAPABLE] = "pendingIncapable",
};

const char *vmenc_host_crypto_state_name(int state) {
    if (state < 0 || state >= (int)VMENC_ARRAY_LEN(k_state_names))
        return NULL;
    return k_state_names[state];
}

bool host_state_from_name(const char *s, vmenc_host_crypto_state *out) {
    for (size_t i = 0; i < VMENC_ARRAY_LEN(k_state_names); i++) {
        if (strcmp(k_state_names[i], s) == 0) {
            *out = (vmenc_host_crypto_state)i;
            return true;
        }
    }
    return false;
}

static const char *const k_migration_names[] = {
    [VMENC_MIGRATION_DISABLED] = "disabled",
    [VMENC_MIGRATION_OPPORTUNISTIC] = "opportunistic",
    [VMENC_MIGRATION_REQUIRED] = "required",
};

const char *migration_name(int m) {
    if (m < 0 || m >= (int)VMENC_ARRAY_LEN(k_migration_names))
        return NULL;
    return k_migration_names[m];
}

bool migration_from_name(const char *s, vmenc_migration_encryption *out) {
    for (size_t i = 0; i < VMENC_ARRAY_LEN(k_migration_names); i++) {
        if (strcmp(k_migration_names[i], s) == 0) {
            *out = (vmenc_migration_encryption)i;
            return true;
        }
    }
    return false;
}

/* The HostCryptoState machine: prepare, enable, disable (with a reboot to
 * finish it from safe), and nothing that skips a step. Staying is a no-op. */
vmenc_status host_transition_ok(vmenc_host_crypto_state from, vmenc_host_crypto_state to) {
    if (from == to)
        return VMENC_OK;
    switch (from) {
    case VMENC_HOST_INCAPABLE:
        return to == VMENC_HOST_PREPARED ? VMENC_OK : VMENC_E_ILLEGAL_TRANSITION;
    case VMENC_HOST_PREPARED:
        return (to == VMENC_HOST_SAFE || to == VMENC_HOST_INCAPABLE) ? VMENC_OK
                                                                     : VMENC_E_ILLEGAL_TRANSITION;
    case VMENC_HOST_SAFE:
        return to == VMENC_HOST_PENDING_INCAPABLE ? VMENC_OK : VMENC_E_ILLEGAL_TRANSITION;
    case VMENC_HOST_PENDING_INCAPABLE:
        return to == VMENC_HOST_INCAPABLE ? VMENC_OK : VMENC_E_ILLEGAL_TRANSITION;
    }
    return VMENC_E_ILLEGAL_TRANSITION;
}
