/*
 * lib/vm/format/vmx.h - the .vmx configuration schema on top of the kv
 * text: a pure codec with a fuzz harness. Format: docs/vm-format.md.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_VM_FORMAT_VMX_H
#define VMENC_LIB_VM_FORMAT_VMX_H

#include <stdbool.h>

#include "vm/format/kv.h"
#include "vmenc/keys.h"
#include "vmenc/vm.h"

/* ---- .vmx schema (vmx.c) -----------------------------------------------------
 *
 *   .encoding = "UTF-8"
 *   config.version = "8"
 *   displayName = "<NAME>"
 *   vmenc.version = "1"
 *   vmenc.uuid = "<uuid>"
 *   memSize = "<MiB>"                       (swap size)
 *   vmenc.storagePolicy = "<name>"          (optional)
 *   vmenc.applyingPolicy = "<name>"         (only while a policy's application is unfinished;
 *                                            in an encrypted VM a hint that must equal the
 *                                            sealed copy: sealed.h, steering facts)
 *   scsiB:U.present = "TRUE"
 *   scsiB:U.fileName = "<base>.vmdk"        (checked file name)
 *   encryption.keySafe = "vmwk1:..."        (encrypted VM only)
 *   encryption.data = "vmsd1:..."           (encrypted VM only)
 *   encryption.kekCheck = "<32 hex>"         (optional: the KEK's check value)
 *   encryption.newKeySafe = "vmwk1:..."      (only during a deep rekey of the home; its
 *                                            record hash is sealed as vmenc.nextKeySafe)
 *   ... any other entries, kept as they are
 * Unknown "encryption.*" or "vmenc.*" keys are VMENC_E_PARSE. */
typedef struct vm_vmx_disk {
    char disk_id[VMENC_DISK_ID_MAX + 1];
    char file_name[256];
} vm_vmx_disk;

typedef struct vm_vmx {
    vm_kv *kv;                                  /* owned: every entry */
    char name[VMENC_VM_NAME_MAX + 1];
    char uuid[VMENC_VM_UUID_LEN + 1];
    uint64_t memory_bytes;
    char storage_policy[VMENC_POLICY_NAME_MAX + 1];
    /* vmenc.applyingPolicy: a storage policy whose application was begun and
     * not finished (vmenc_vm_resume finishes it); "" if none */
    char applying_policy[VMENC_POLICY_NAME_MAX + 1];
    size_t num_disks;                           /* present disks, in kv order */
    vm_vmx_disk disks[VMENC_VM_MAX_DISKS];
    vmenc_wrapped_key *key_safe;                /* owned; NULL for a plain VM */
    const char *sealed_data;                    /* points into kv, NULL for a plain VM */
    bool has_kek_check;                         /* encryption.kekCheck (32 hex digits) */
    uint8_t kek_check[VMENC_KEK_CHECK_VALUE_BYTES];
    /* encryption.newKeySafe: during a deep rekey of the VM home, the next
     * VM key (same binding as keySafe); owned, NULL otherwise */
    vmenc_wrapped_key *new_key_safe;
} vm_vmx;

/* vm_vm_name_check applies VMENC_VM_NAME_MAX's rule (VMENC_E_INVALID_ARG). */
VMENC_INTERNAL vmenc_status vm_vm_name_check(const char *name);
VMENC_INTERNAL vmenc_status vm_vmx_parse(const uint8_t *text, size_t len, vm_vmx *out);
/* vm_vmx_sync writes the struct's fields back into its kv (so the kv can be
 * serialised): name, uuid, memory, policy, the disks list (scsi* entries of
 * removed disks deleted), key_safe as text, sealed_data_text (NULL = remove
 * encryption.data). */
VMENC_INTERNAL vmenc_status vm_vmx_sync(vm_vmx *v, const char *sealed_data_text);
VMENC_INTERNAL void vm_vmx_cleanup(vm_vmx *v);

#endif /* VMENC_LIB_VM_FORMAT_VMX_H */
