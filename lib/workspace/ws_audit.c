/*
 * lib/workspace/ws_audit.c - the workspace's audit trail beyond the log
 * itself: adopting the first sealed checkpoint of a workspace created
 * before checkpoints existed (vmenc_workspace_audit_adopt_checkpoint,
 * `vmenc audit checkpoint --adopt`), and installing the cluster's etcd
 * audit mirror when the workspace is a cluster host (ws_cluster_audit_*,
 * called from cluster.c). Formats and rules: docs/audit.md "The sealed
 * checkpoint" and "The cluster mirror", docs/cluster.md "Events".
 *
 * Safety rule: adoption never replaces a checkpoint that exists (valid or
 * not: a bad one is evidence), seals only a chain verified whole under the
 * log's file lock, and is authorized like re-sealing the policy (every
 * privilege on the root) and audited whatever its outcome.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdio.h>
#include <string.h>

#include "audit/checkpoint.h"
#include "audit/mirror.h"
#include "control/etcd/audit_mirror.h"
#include "policy/policy_internal.h"
#include "workspace/ws_internal.h"

#define OP_ADOPT "audit.checkpoint.adopt"
/* After a failed copy to etcd, the log leaves the mirror alone this long:
 * an unreachable control plane costs one timeout per period, not one per
 * record (docs/cluster.md "Events"). */
#define WS_AUDIT_MIRROR_BACKOFF_MS 10000u
#define WS_AUDIT_MIRROR_CONNECT_MS 500u
#define WS_AUDIT_MIRROR_REQUEST_MS 1000u

/* ---- adopting the first checkpoint ------------------------------------------------------- */

static vmenc_status root_of(vmenc_policy *p, char *out, size_t cap) {
    VMENC_ENSURE(pthread_rwlock_rdlock(&p->lock) == 0, VMENC_E_INTERNAL);
    const model *m = p->m;
    vmenc_status rv = VMENC_E_INTERNAL;
    if (m->root < m->num_objects && strlen(m->objects[m->root].name) < cap) {
        snprintf(out, cap, "%s", m->objects[m->root].name);
        rv = VMENC_OK;
    }
    pthread_rwlock_unlock(&p->lock);
    return rv;
}

/* may_adopt: |who| must hold every privilege on the root - adoption vouches
 * for the whole history, as a re-seal vouches for the whole policy. */
static vmenc_status may_adopt(vmenc_workspace *ws, const char *who, char *reason, size_t cap) {
    char root[VMENC_POLICY_NAME_MAX + 1];
    VMENC_GUARD(root_of(ws->policy, root, sizeof(root)));
    for (int i = 0; i < (int)vmenc_policy_privilege_count(); i++) {
        int has = 0;
        vmenc_status rv = vmenc_policy_has_privilege(ws->policy, who, root, (vmenc_policy_privilege)i, &has);
        if (rv == VMENC_E_NOT_FOUND)
            has = 0;
        else if (rv != VMENC_OK)
            return rv;
        if (!has) {
            snprintf(reason, cap,
                     "'%s' lacks %s on '%s'; only a principal holding every privilege on the root may vouch for "
                     "the audit history",
                     who, vmenc_policy_privilege_name(i), root);
            return VMENC_E_DENIED;
        }
    }
    return VMENC_OK;
}

vmenc_status vmenc_workspace_audit_adopt_checkpoint(vmenc_workspace *ws, const char *who,
                                                    vmenc_audit_verify_result *out) {
    VMENC_ENSURE(ws != NULL && who != NULL && who[0] != '\0' && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= sizeof(*out), VMENC_E_ABI_VERSION);
    char reason[VMENC_WORKSPACE_MESSAGE_MAX] = "";
    vmenc_status rv = may_adopt(ws, who, reason, sizeof(reason));
    if (rv == VMENC_E_DENIED) {
        vmenc_audit_event ev = {.struct_size = sizeof(ev), .principal = who, .operation = OP_ADOPT,
                                .target = ws->audit_path, .outcome = VMENC_AUDIT_DENIED, .status = rv,
                                .reason = reason};
        vmenc_status as = vmenc_audit_emit(ws->audit, &ev);
        (void)as; /* the denial is what the caller must see */
        return rv;
    }
    VMENC_GUARD(rv);
    /* In cluster mode the cluster's copy is a witness too: a log that lost
     * records the cluster holds is not adopted. */
    if (ws->audit_mirror != NULL) {
        vmenc_audit_cluster_result cr = {.struct_size = sizeof(cr)};
        vmenc_status cs = vmenc_workspace_audit_cluster_verify(ws, &cr);
        if (cs == VMENC_E_AUDIT_TRUNCATED || cs == VMENC_E_AUDIT_TAMPERED) {
            snprintf(reason, sizeof(reason), "the cluster's copy of this host's records disagrees with the log (%s)",
                     vmenc_audit_anchor_name(cr.state));
            rv = cs;
        }
    }
    vmenc_audit_verify_result vr;
    memset(&vr, 0, sizeof(vr));
    vr.struct_size = sizeof(vr);
    if (rv == VMENC_OK) {
        rv = audit_log_adopt_checkpoint(ws->log, &vr);
        if (rv == VMENC_E_EXISTS)
            snprintf(reason, sizeof(reason), "a checkpoint exists (%s): adoption never replaces one",
                     ws->audit_cp_path);
        else if (rv != VMENC_OK && vr.defect != VMENC_AUDIT_DEFECT_NONE)
            snprintf(reason, sizeof(reason), "the chain is not intact: %s at line %llu; nothing sealed",
                     vmenc_audit_defect_name(vr.defect), (unsigned long long)vr.bad_index + 1);
        else if (rv == VMENC_OK)
            snprintf(reason, sizeof(reason),
                     "first checkpoint sealed at record %llu; history up to it is trusted on the hash chain alone "
                     "(records cut off its end before adoption cannot be found)",
                     (unsigned long long)vr.last_seq);
    }
    if (rv == VMENC_OK || vr.defect != VMENC_AUDIT_DEFECT_NONE) {
        uint32_t sz = out->struct_size;
        *out = vr;
        out->struct_size = sz;
    }
    vmenc_status as = vmenc_workspace_audit_result(ws, who, OP_ADOPT, ws->audit_path, NULL, NULL, rv,
                                                   reason[0] ? reason : NULL);
    return rv != VMENC_OK ? rv : as;
}

/* ---- the cluster's audit mirror --------------------------------------------------------------- */

vmenc_status ws_cluster_audit_attach(vmenc_workspace *ws, const char *cluster, const vmenc_etcd_config *etcd) {
    VMENC_ENSURE(ws != NULL && cluster != NULL && etcd != NULL, VMENC_E_INVALID_ARG);
    /* A client of its own: copies run under the log's file lock and must
     * not queue behind the session's other calls; and short timeouts, so
     * that an etcd without quorum holds the log for about a second per
     * back-off period (a copy that times out is only a lag). */
    vmenc_etcd_config ec = *etcd;
    ec.connect_timeout_ms = WS_AUDIT_MIRROR_CONNECT_MS;
    ec.request_timeout_ms = WS_AUDIT_MIRROR_REQUEST_MS;
    vmenc_etcd *client = NULL;
    VMENC_GUARD(vmenc_etcd_new(&ec, &client));
    audit_mirror *m = NULL;
    vmenc_status rv = ctl_audit_mirror_new(client, true, cluster, &m);
    if (rv != VMENC_OK) {
        vmenc_etcd_free(client);
        return rv;
    }
    rv = ws_audit_set_mirror(ws, m);
    if (rv != VMENC_OK) {
        audit_mirror_free(m);
        return rv;
    }
    audit_log_set_mirror_backoff(ws->log, WS_AUDIT_MIRROR_BACKOFF_MS);
    return VMENC_OK;
}

void ws_cluster_audit_detach(vmenc_workspace *ws) {
    if (ws == NULL || ws->audit_mirror == NULL)
        return;
    audit_mirror *m = ws->audit_mirror;
    vmenc_status rv = ws_audit_set_mirror(ws, NULL);
    (void)rv; /* only fails without a log, and then nothing holds |m| */
    audit_mirror_free(m);
}
