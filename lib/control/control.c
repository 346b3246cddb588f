/*
 * lib/control/control.c - the control store's front (argument checks and
 * the ops-table size rule, as lib/kms/provider.c does for key providers)
 * and the intent-first helpers every VM operation uses to record what it
 * is about to do before it touches the datastore. Rules: docs/control.md.
 *
 * Safety rule: a helper returns VMENC_OK only when the backend said the
 * record is durable; the caller's copy of the record changes only then.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stddef.h>
#include <string.h>

#include "control/control.h"

/* First version of ctl_store_ops: everything up to |destroy|. */
#define OPS_V1_SIZE (offsetof(ctl_store_ops, destroy) + sizeof(void (*)(ctl_store *)))

/* HAS(s, member): the member lies within the backend's table and is set. */
#define HAS(s, member)                                                                                      \
    ((s)->ops->struct_size >= offsetof(ctl_store_ops, member) + sizeof((s)->ops->member) &&                \
     (s)->ops->member != NULL)

static vmenc_status check_store(const ctl_store *s) {
    VMENC_ENSURE(s != NULL && s->ops != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(s->struct_size >= sizeof(ctl_store), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(s->ops->struct_size >= OPS_V1_SIZE && s->ops->abi_version != 0, VMENC_E_ABI_VERSION);
    return VMENC_OK;
}

static bool uuid_arg_ok(const char *uuid) { return uuid != NULL && strlen(uuid) == CTL_UUID_LEN; }

vmenc_status ctl_store_get_vm(ctl_store *s, const char *uuid, ctl_vm_record *out) {
    VMENC_GUARD(check_store(s));
    VMENC_ENSURE(uuid_arg_ok(uuid) && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(HAS(s, get_vm), VMENC_E_UNIMPLEMENTED);
    ctl_vm_record r;
    VMENC_GUARD(s->ops->get_vm(s, uuid, &r));
    /* a backend must hand back the record it was asked for */
    VMENC_ENSURE(strcmp(r.uuid, uuid) == 0, VMENC_E_AUTH);
    *out = r;
    return VMENC_OK;
}

vmenc_status ctl_store_put_vm(ctl_store *s, const ctl_vm_record *rec, uint64_t expected_revision,
                              uint64_t *out_revision) {
    VMENC_GUARD(check_store(s));
    VMENC_ENSURE(rec != NULL && uuid_arg_ok(rec->uuid), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(HAS(s, put_vm), VMENC_E_UNIMPLEMENTED);
    uint64_t rev = 0;
    VMENC_GUARD(s->ops->put_vm(s, rec, expected_revision, &rev));
    if (out_revision != NULL)
        *out_revision = rev;
    return VMENC_OK;
}

vmenc_status ctl_store_delete_vm(ctl_store *s, const char *uuid, uint64_t expected_revision) {
    VMENC_GUARD(check_store(s));
    VMENC_ENSURE(uuid_arg_ok(uuid), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(HAS(s, delete_vm), VMENC_E_UNIMPLEMENTED);
    return s->ops->delete_vm(s, uuid, expected_revision);
}

vmenc_status ctl_store_list_vms(ctl_store *s, ctl_list_fn fn, void *arg) {
    VMENC_GUARD(check_store(s));
    VMENC_ENSURE(fn != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(HAS(s, list_vms), VMENC_E_UNIMPLEMENTED);
    return s->ops->list_vms(s, fn, arg);
}

void ctl_store_free(ctl_store *s) {
    if (s == NULL || check_store(s) != VMENC_OK || !HAS(s, destroy))
        return;
    s->ops->destroy(s);
}

/* ---- intent first --------------------------------------------------------------- */

/* store_next puts |next| over |rec|'s revision and, on success, makes it
 * the caller's copy. */
static vmenc_status store_next(ctl_store *s, ctl_vm_record *rec, ctl_vm_record *next) {
    uint64_t rev = 0;
    next->revision = rec->revision;
    VMENC_GUARD(ctl_store_put_vm(s, next, rec->revision, &rev));
    next->revision = rev;
    *rec = *next;
    return VMENC_OK;
}

vmenc_status ctl_vm_begin_op(ctl_store *s, ctl_vm_record *rec, const ctl_vm_op *op) {
    VMENC_ENSURE(rec != NULL && op != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(op->kind != CTL_OP_NONE, VMENC_E_BAD_STATE);
    /* One operation at a time: the same kind again is the resume of the
     * one recorded (its targets may be refined), anything else waits. */
    VMENC_ENSURE(rec->op.kind == CTL_OP_NONE || rec->op.kind == op->kind, VMENC_E_BAD_STATE);
    ctl_vm_record next = *rec;
    next.op = *op;
    return store_next(s, rec, &next);
}

vmenc_status ctl_vm_turn_op(ctl_store *s, ctl_vm_record *rec, ctl_op_dir direction) {
    VMENC_ENSURE(rec != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(direction == CTL_DIR_FORWARD || direction == CTL_DIR_ROLLBACK, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(rec->op.kind != CTL_OP_NONE, VMENC_E_BAD_STATE);
    if (rec->op.direction == direction)
        return VMENC_OK;
    ctl_vm_record next = *rec;
    next.op.direction = direction;
    return store_next(s, rec, &next);
}

vmenc_status ctl_vm_end_op(ctl_store *s, ctl_vm_record *rec, const ctl_vm_facts *facts) {
    VMENC_ENSURE(rec != NULL, VMENC_E_INVALID_ARG);
    ctl_vm_record next = *rec;
    if (facts != NULL)
        next.facts = *facts;
    memset(&next.op, 0, sizeof(next.op));
    return store_next(s, rec, &next);
}
