/*
 * lib/vm/host.c - the host object and the authorize -> act -> audit helper
 * every VM operation goes through.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm/vm_internal.h"

#define DEFAULT_TIMEOUT_MS 10000u
#define HOST_FLAGS_KNOWN VMENC_HOST_NO_SYNC
/* First version of vmenc_host_options: everything up to |flags|. */
#define HOST_OPTIONS_V1_SIZE (offsetof(vmenc_host_options, flags) + sizeof(uint32_t))

vmenc_status vmenc_host_new(const vmenc_host_options *opts, vmenc_host **out) {
    VMENC_ENSURE(opts != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(opts->struct_size >= HOST_OPTIONS_V1_SIZE, VMENC_E_ABI_VERSION);
    VMENC_ENSURE(opts->host_id != NULL && opts->keymgr != NULL && opts->policy != NULL && opts->audit != NULL,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE((opts->flags & ~HOST_FLAGS_KNOWN) == 0, VMENC_E_INVALID_ARG);
    size_t id_len = strlen(opts->host_id);
    VMENC_ENSURE(id_len > 0 && id_len <= VMENC_POLICY_NAME_MAX, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());
    /* The host must exist in the policy as a host: asking for its mode
     * checks both (VMENC_E_NOT_FOUND / VMENC_E_INVALID_ARG). */
    vmenc_host_crypto_state st;
    VMENC_GUARD(vmenc_policy_get_host_state(opts->policy, opts->host_id, &st));
    vmenc_host *h = calloc(1, sizeof(*h));
    VMENC_ENSURE(h != NULL, VMENC_E_NOMEM);
    h->host_id = strdup(opts->host_id);
    if (h->host_id == NULL) {
        free(h);
        return VMENC_E_NOMEM;
    }
    atomic_init(&h->refs, 1);
    h->keymgr = opts->keymgr;
    h->policy = opts->policy;
    h->audit = opts->audit;
    h->timeout_ms = opts->kms_timeout_ms != 0 ? opts->kms_timeout_ms : DEFAULT_TIMEOUT_MS;
    h->clock_ms = opts->clock_ms;
    h->clock_ctx = opts->clock_ctx;
    h->flags = opts->flags;
    *out = h;
    return VMENC_OK;
}

void vm_host_retain(vmenc_host *host) { atomic_fetch_add(&host->refs, 1); }

void vm_host_release(vmenc_host *host) {
    if (host == NULL || atomic_fetch_sub(&host->refs, 1) != 1)
        return;
    ctl_store_free(host->control);
    free(host->host_id);
    free(host);
}

void vmenc_host_free(vmenc_host *host) { vm_host_release(host); }

void vm_host_set_control(vmenc_host *host, ctl_store *store) {
    if (host->control != store)
        ctl_store_free(host->control);
    host->control = store;
}

const char *vmenc_host_id(const vmenc_host *host) { return host != NULL ? host->host_id : NULL; }

/* ---- operations ------------------------------------------------------------ */

static bool principal_ok(const char *p) {
    return p != NULL && p[0] != '\0' && strlen(p) <= VMENC_POLICY_NAME_MAX;
}

void vm_op_init(vm_op *op, vmenc_host *host, const char *principal, const char *operation, const char *target) {
    memset(op, 0, sizeof(*op));
    op->host = host;
    op->principal = principal;
    op->operation = operation;
    if (target != NULL)
        snprintf(op->target, sizeof(op->target), "%s", target);
}

void vm_op_add_key(vm_op *op, const char *provider, const char *kek_id) {
    if (provider != NULL && provider[0] != '\0' && op->provider[0] == '\0')
        snprintf(op->provider, sizeof(op->provider), "%s", provider);
    if (kek_id == NULL || kek_id[0] == '\0')
        return;
    for (size_t i = 0; i < op->num_key_ids; i++)
        if (strcmp(op->key_ids[i], kek_id) == 0)
            return;
    if (op->num_key_ids < VM_OP_MAX_KEYS)
        snprintf(op->key_ids[op->num_key_ids++], sizeof(op->key_ids[0]), "%s", kek_id);
}

static vmenc_status emit(vm_op *op, const char *operation, vmenc_audit_outcome outcome, vmenc_status s,
                         const char *reason) {
    const char *ids[VM_OP_MAX_KEYS];
    for (size_t i = 0; i < op->num_key_ids; i++)
        ids[i] = op->key_ids[i];
    vmenc_audit_event ev = {
        .struct_size = sizeof(ev),
        .time_ms = op->host->clock_ms != NULL ? op->host->clock_ms(op->host->clock_ctx) : 0,
        .principal = principal_ok(op->principal) ? op->principal : "(none)",
        .operation = operation,
        .target = op->target,
        .key_provider = op->provider,
        .key_ids = op->num_key_ids > 0 ? ids : NULL,
        .num_key_ids = op->num_key_ids,
        .outcome = outcome,
        .status = (int32_t)s,
        .reason = reason,
    };
    return vmenc_audit_emit(op->host->audit, &ev);
}

vmenc_status vm_op_authorize(vm_op *op, vmenc_policy_request *req) {
    if (!principal_ok(op->principal)) {
        (void)emit(op, op->operation, VMENC_AUDIT_DENIED, VMENC_E_INVALID_ARG, "no principal given");
        return VMENC_E_INVALID_ARG;
    }
    if (req->host == NULL)
        req->host = op->host->host_id;
    if (op->host->cluster != NULL) { /* cluster mode: decide on a policy no older than the watch allows */
        vmenc_status cs = op->host->cluster->before_decide(op->host->cluster->ctx);
        if (cs != VMENC_OK) {
            (void)emit(op, op->operation, VMENC_AUDIT_FAILED, cs, "the cluster policy cannot be brought up to date");
            return cs;
        }
    }
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    vmenc_status s = vmenc_policy_check(op->host->policy, op->principal, req, &d);
    if (s == VMENC_OK && d.enable_host_encryption) {
        /* The whitepaper: host encryption mode switches on automatically
         * when a user with the privilege asks for an encryption operation. */
        vmenc_policy_decision hd = {.struct_size = sizeof(hd)};
        vmenc_status hs = vmenc_policy_enable_host_encryption(op->host->policy, op->principal, d.host, &hd);
        vm_op hop;
        vm_op_init(&hop, op->host, op->principal, "host.enable_encryption", d.host);
        (void)emit(&hop, hop.operation, hs == VMENC_OK ? VMENC_AUDIT_SUCCESS : VMENC_AUDIT_DENIED, hs,
                   hs == VMENC_OK ? "switched on for an encryption operation" : hd.message);
        if (hs != VMENC_OK) {
            (void)emit(op, op->operation, VMENC_AUDIT_DENIED, hs, hd.message);
            return hs;
        }
    }
    if (s == VMENC_E_DENIED || s == VMENC_E_HOST_MODE) {
        (void)emit(op, op->operation, VMENC_AUDIT_DENIED, s, d.message);
        return s;
    }
    if (s != VMENC_OK) {
        char reason[128];
        snprintf(reason, sizeof(reason), "policy check failed: %s", vmenc_strerror(s));
        (void)emit(op, op->operation, VMENC_AUDIT_FAILED, s, reason);
        return s;
    }
    op->authorized = true;
    return VMENC_OK;
}

vmenc_status vm_op_finish(vm_op *op, vmenc_status s, const char *reason) {
    vmenc_status as = emit(op, op->operation, s == VMENC_OK ? VMENC_AUDIT_SUCCESS : VMENC_AUDIT_FAILED, s,
                           s == VMENC_OK ? reason : (reason != NULL ? reason : vmenc_strerror(s)));
    if (s == VMENC_OK && as != VMENC_OK)
        return VMENC_E_AUDIT_SINK;
    return s;
}

vmenc_status vm_op_deny(vm_op *op, vmenc_status s, const char *reason) {
    (void)emit(op, op->operation, VMENC_AUDIT_DENIED, s, reason != NULL ? reason : vmenc_strerror(s));
    return s;
}

bool vm_principal_ok(const char *principal) { return principal_ok(principal); }
