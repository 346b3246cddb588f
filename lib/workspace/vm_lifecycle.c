/*
 * lib/workspace/vm_lifecycle.c - a VM's birth and death in a workspace:
 * create with its disks as one all-or-nothing call, delete (files, control
 * record, inventory entry, and optionally its KEKs at their key provider:
 * crypto-shredding) and unregister. The API is documented in
 * include/vmenc/workspace.h; the operator's view in docs/workspace.md
 * ("Deleting a VM").
 *
 * Safety rule: everything is decided before anything is removed - every
 * privilege, and for DESTROY_KEYS whether each KEK is still used by another
 * VM or record - and a KEK is destroyed only when nothing else of this
 * workspace names it.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdio.h>
#include <string.h>

#include "core/internal.h"
#include "workspace/ws_internal.h"

vmenc_status vmenc_workspace_create_vm(vmenc_workspace *ws, const char *principal,
                                       const vmenc_workspace_vm_spec *spec, vmenc_workspace_error *err,
                                       vmenc_vm **out) {
    (void)ws, (void)principal, (void)spec, (void)err, (void)out;
    return VMENC_E_UNIMPLEMENTED;
}

vmenc_status vmenc_workspace_delete_vm(vmenc_workspace *ws, const char *principal, const char *name,
                                       uint32_t flags, vmenc_workspace_delete_result *out_result) {
    (void)ws, (void)principal, (void)name, (void)flags, (void)out_result;
    return VMENC_E_UNIMPLEMENTED;
}

vmenc_status vmenc_workspace_unregister_vm(vmenc_workspace *ws, const char *principal, const char *name) {
    (void)ws, (void)principal, (void)name;
    return VMENC_E_UNIMPLEMENTED;
}
