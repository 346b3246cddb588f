/*
 * lib/workspace/policy_edit.c - the workspace's audited front door to the
 * policy: authorized edits (vmenc_policy_edit_as) with every outcome -
 * applied, denied with the missing privilege, failed - written to the audit
 * log, and the read privilege (System.Read on the root) for the policy and
 * audit views. The policy layer knows nothing of auditing and the audit
 * layer nothing of policies; this file joins them through the workspace's
 * public accessors only.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdio.h>
#include <string.h>

#include "core/internal.h"
#include "vmenc/audit.h"
#include "vmenc/policy.h"
#include "vmenc/workspace.h"

static const char *edit_target(const vmenc_policy_edit *e) {
    if (e->op == VMENC_EDIT_SET_STORAGE_POLICY)
        return e->storage_policy != NULL ? e->storage_policy->name : NULL;
    return e->name;
}

static const char *nonempty(const char *s) { return s != NULL && s[0] != '\0' ? s : "(none)"; }

vmenc_status vmenc_workspace_policy_edit(vmenc_workspace *ws, const char *actor, const vmenc_policy_edit *edit,
                                         vmenc_policy_decision *decision) {
    VMENC_ENSURE(ws != NULL && edit != NULL && decision != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(edit->struct_size >= sizeof(vmenc_policy_edit), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(decision->struct_size >= sizeof(vmenc_policy_decision), VMENC_E_ABI_VERSION);
    vmenc_status rv = vmenc_policy_edit_as(vmenc_workspace_policy(ws), actor, edit, decision);
    const char *opname = vmenc_policy_edit_op_name(edit->op);
    char operation[64];
    snprintf(operation, sizeof(operation), "policy.%s", opname != NULL ? opname : "edit");
    /* The denial's sentence names the missing privilege and the object; a
     * failure's says what failed. */
    const char *reason = rv == VMENC_OK ? NULL : decision->message[0] ? decision->message : vmenc_strerror(rv);
    vmenc_audit_event ev = {
        .struct_size = sizeof(ev),
        .principal = nonempty(actor),
        .operation = operation,
        .target = edit_target(edit),
        .outcome = rv == VMENC_OK ? VMENC_AUDIT_SUCCESS : rv == VMENC_E_DENIED ? VMENC_AUDIT_DENIED
                                                                              : VMENC_AUDIT_FAILED,
        .status = rv,
        .reason = reason,
    };
    vmenc_status as = vmenc_audit_emit(vmenc_workspace_audit(ws), &ev);
    return rv != VMENC_OK ? rv : as;
}

/* authorize_read: System.Read on the root (VMENC_OP_READ_POLICY) for
 * |operation|; a denial is audited by vmenc_workspace_authorize, a grant
 * here. */
static vmenc_status authorize_read(vmenc_workspace *ws, const char *principal, const char *operation,
                                   const char *target, vmenc_policy_decision *decision) {
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_READ_POLICY};
    VMENC_GUARD(vmenc_workspace_authorize(ws, principal, &rq, operation, target, decision));
    return vmenc_workspace_audit_result(ws, principal, operation, target, NULL, NULL, VMENC_OK, NULL);
}

vmenc_status vmenc_workspace_policy_show(vmenc_workspace *ws, const char *principal, uint8_t **out,
                                         size_t *out_len, vmenc_policy_decision *decision) {
    VMENC_ENSURE(ws != NULL && out != NULL && out_len != NULL && decision != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(decision->struct_size >= sizeof(vmenc_policy_decision), VMENC_E_ABI_VERSION);
    VMENC_GUARD(authorize_read(ws, principal, "policy.show", NULL, decision));
    return vmenc_policy_save_json(vmenc_workspace_policy(ws), out, out_len);
}

vmenc_status vmenc_workspace_audit_read(vmenc_workspace *ws, const char *principal, const char *operation,
                                        vmenc_policy_decision *decision) {
    VMENC_ENSURE(ws != NULL && operation != NULL && decision != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(decision->struct_size >= sizeof(vmenc_policy_decision), VMENC_E_ABI_VERSION);
    return authorize_read(ws, principal, operation, vmenc_workspace_audit_log_path(ws), decision);
}
