/*
 * lib/workspace/control_local.c - the workspace's control store: the local
 * backend (lib/control/local/local.c) over WORKSPACE/control, keyed with a
 * MAC key derived from the audit chain key the way policy_seal.c derives
 * the policy seal key (another label), and handed to the workspace's host
 * so every VM opened through it follows its authority record. Files and
 * rules: docs/control.md.
 *
 * Safety rule: the MAC key exists only in secure memory and only as long
 * as this function runs (the store keeps its own secure copy); it follows
 * the audit key, so whoever cannot unwrap the audit key cannot forge a
 * record.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <limits.h>
#include <sodium.h>
#include <stdio.h>

#include "vm/vm_internal.h"
#include "workspace/ws_internal.h"

/* Domain separation from the policy seal key (policy_seal.c) and the audit
 * layer's own uses of the chain key. */
static const char k_control_key_domain[] = "vmenc-workspace-v1 control record key";

vmenc_status ws_control_attach(vmenc_workspace *ws, vmenc_workspace_error *err) {
    VMENC_ENSURE(ws != NULL && ws->audit_key != NULL && ws->host != NULL, VMENC_E_INVALID_ARG);
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof(dir), "%s/control", ws->dir) >= (int)sizeof(dir))
        return ws_set_error(err, VMENC_E_BAD_PATH, ws->dir, 0, "workspace path too long for its control store");
    vmenc_secret *k = NULL;
    VMENC_GUARD(vmenc_secret_new(CTL_MAC_KEY_BYTES, &k));
    vmenc_status s = VMENC_OK;
    if (crypto_generichash(k->bytes, k->len, (const uint8_t *)k_control_key_domain, sizeof(k_control_key_domain) - 1,
                           ws->audit_key->bytes, ws->audit_key->len) != 0)
        s = VMENC_E_CRYPTO;
    ctl_store *store = NULL;
    if (s == VMENC_OK)
        s = ctl_local_new(dir, k->bytes, k->len, ws->sync, &store);
    vmenc_secret_free(k);
    if (s != VMENC_OK)
        return ws_set_error(err, s, dir, 0, "cannot open the control store: %s", vmenc_strerror(s));
    vm_host_set_control(ws->host, store);
    return VMENC_OK;
}
