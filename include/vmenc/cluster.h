/*
 * vmenc/cluster.h - cluster mode of a workspace (issue 22): many hosts, one
 * control plane on etcd. A workspace that has joined a cluster (its
 * directory holds cluster.json) keeps its own key providers and audit log
 * but takes its policy and inventory from the cluster's one revisioned
 * document, registers as a host, holds a lease kept alive in the
 * background, owns the VMs it opens for write (another host is refused
 * with VMENC_E_LOCKED naming the owner), and fences itself - refuses every
 * write with VMENC_E_LEASE_EXPIRED - once it could not renew its lease in
 * time. Key layout, transactions, timing and residual risks:
 * docs/cluster.md. A workspace without cluster.json is the single-host
 * workspace, unchanged.
 *
 * Safety rule: cluster membership never weakens a check: every decision
 * still goes through the policy (now the cluster's), every change is
 * audited in the host's log, and a write happens only before the host's
 * fencing deadline.
 *
 * Thread safety: as vmenc/workspace.h; the calls below serialise with the
 * workspace's other configuration changes.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_CLUSTER_H
#define VMENC_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "vmenc/common.h"
#include "vmenc/workspace.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMENC_CLUSTER_NAME_MAX 64u
/* vmenc_cluster_spec.flags */
#define VMENC_CLUSTER_CREATE 1u   /* init: create the cluster's documents if absent */

/* vmenc_cluster_spec: how to reach the cluster (set struct_size). Strings
 * are copied into WORKSPACE/cluster.json. */
typedef struct vmenc_cluster_spec {
    uint32_t struct_size;     /* sizeof(vmenc_cluster_spec) */
    const char *name;         /* the cluster (1..64 of [A-Za-z0-9._-]); NULL: "vmenc" */
    const char *endpoints;    /* etcd client URLs, comma-separated "https://HOST:PORT" */
    const char *ca_file;      /* PEM CA of the etcd members */
    const char *cert_file;    /* this host's client certificate (mutual TLS) */
    const char *key_file;     /* its key */
    const char *key_provider; /* CREATE: alias of the provider whose KEK wraps the cluster key;
                                 every host needs that provider under that alias. NULL: the
                                 workspace's audit key provider */
    uint32_t ttl_s;           /* lease TTL in seconds (0: 5; etcd's minimum is 2) */
    uint32_t flags;           /* VMENC_CLUSTER_CREATE */
} vmenc_cluster_spec;

/* vmenc_workspace_cluster_join makes |ws| a host of cluster |spec->name|
 * on behalf of |principal|, who needs Cryptographer.RegisterHost on the
 * root of this workspace's policy (a refusal is audited as denied).
 * With VMENC_CLUSTER_CREATE it first creates the cluster's documents if
 * they are absent: the cluster key (random, wrapped under a new KEK of
 * |spec->key_provider|) and the policy (this workspace's document). Then
 * it unwraps the cluster key, adds this host to the cluster policy's
 * inventory if missing (beside the first host, or under the root),
 * registers the host (ID, encryption mode, certificate fingerprint),
 * writes WORKSPACE/cluster.json and attaches: from its return on, |ws| is
 * in cluster mode. Audited as "cluster.join" / "cluster.init".
 * VMENC_E_NOT_FOUND: no such cluster (without CREATE);
 * VMENC_E_CONTROL_UNAVAILABLE: etcd unreachable or without quorum;
 * VMENC_E_BAD_STATE: |ws| is in a cluster already; the key manager's
 * statuses for the cluster key; VMENC_E_DENIED. On failure nothing is
 * written in the workspace. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_cluster_join(vmenc_workspace *ws, const char *principal,
                                                                     const vmenc_cluster_spec *spec);

/* vmenc_workspace_cluster_leave deregisters the host, ends this
 * process's session (its ownership keys go with its lease) and removes
 * WORKSPACE/cluster.json; the workspace keeps its local policy document
 * (the one from before it joined). VMENC_E_BAD_STATE when not in a
 * cluster. Other processes of this host keep their sessions until they
 * end. Audited as "cluster.leave". */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_cluster_leave(vmenc_workspace *ws, const char *principal);

/* What vmenc_workspace_cluster_status reports (set struct_size). */
typedef struct vmenc_cluster_status {
    uint32_t struct_size;
    int in_cluster;                       /* 0: single-host workspace (nothing else is set) */
    char name[VMENC_CLUSTER_NAME_MAX + 1];
    char host[VMENC_POLICY_NAME_MAX + 1];
    uint64_t lease;                       /* this process's session lease */
    uint32_t ttl_s;
    int64_t fence_ms_left;                /* ms before the fencing deadline; <= 0: fenced */
    int lease_gone;                       /* etcd said the lease expired: fenced for good */
    int watch_healthy;                    /* the policy cache follows the cluster's document */
    int64_t policy_revision;              /* of the document the cache holds */
    uint64_t keepalives_ok, keepalives_failed;
    uint32_t num_endpoints, num_endpoints_up; /* etcd members answering a status request */
    int has_leader;                       /* some member reports a leader (quorum) */
} vmenc_cluster_status;

/* vmenc_workspace_cluster_status fills |out| (asks every member for its
 * status). VMENC_E_ABI_VERSION for a too-small struct. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_cluster_status(vmenc_workspace *ws,
                                                                       vmenc_cluster_status *out);

/* vmenc_cluster_host_callback gets one registered host: its ID, its
 * registration document (JSON: mode, certificate fingerprint, since) and
 * how many processes hold a live session for it (0: down). Strings valid
 * during the call; nonzero stops the walk. */
typedef int (*vmenc_cluster_host_callback)(void *ctx, const char *host, const char *info_json,
                                           uint32_t num_sessions);
/* vmenc_workspace_cluster_hosts walks the registered hosts.
 * VMENC_E_BAD_STATE when not in a cluster; VMENC_E_INTERRUPTED when the
 * callback stopped it. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_cluster_hosts(vmenc_workspace *ws,
                                                                      vmenc_cluster_host_callback cb, void *ctx);

/* vmenc_workspace_vm_owner writes the host that owns VM |name| for write
 * ("" when none) into |out|. VMENC_E_BAD_STATE when not in a cluster. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_vm_owner(vmenc_workspace *ws, const char *name, char *out,
                                                                 size_t out_cap);

/* vmenc_workspace_vm_take_over opens VM |name| for |principal| (who needs
 * Cryptographer.RegisterVM on it) and takes its ownership for this host:
 * the HA restart after the owner's lease expired. VMENC_E_LOCKED while the
 * owner's lease lives (the message names it through
 * vmenc_workspace_lock_holder); VMENC_E_LEASE_EXPIRED when this host is
 * fenced. On success |*out| is the open VM, owned until it is freed.
 * Audited as "vm.take_over". */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_vm_take_over(vmenc_workspace *ws, const char *principal,
                                                                     const char *name, vmenc_vm **out);

/* ---- the migration handover (VMENC_0.5; docs/cluster.md) ------------------------------------ */

/* vmenc_workspace_vm_placement writes the host VM |name| is placed on -
 * the one host of the cluster that may write it ("" when never placed)
 * - into |out|. VMENC_E_BAD_STATE when not in a cluster. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_vm_placement(vmenc_workspace *ws, const char *name, char *out,
                                                                     size_t out_cap);

/* vmenc_workspace_cluster_handover_begin (source host) offers the open
 * VM |vm| to host |dest_host| of the same cluster: it takes the VM's
 * ownership for this process (VMENC_E_LOCKED naming the owner or the host
 * it is placed on), then records the offer in etcd, bound to this
 * process's lease and naming the VM record's revision. |principal| needs
 * Resource.ColdMigrate (+ Cryptographer.Migrate) like a migration.
 * VMENC_E_LOCKED also when another handover of the VM is in progress.
 * From VMENC_OK on the caller must not write the VM: the destination may
 * take it over at any moment. Audited as "migration.handover_begin".
 * VMENC_E_BAD_STATE when not in a cluster. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_cluster_handover_begin(vmenc_workspace *ws,
                                                                               const char *principal, vmenc_vm *vm,
                                                                               const char *dest_host);
/* vmenc_workspace_cluster_handover_wait (source) waits up to |timeout_ms|
 * for the destination's commit. VMENC_OK: the VM is placed on |dest_host|
 * now (and owned there); this process holds nothing of it any more - free
 * |vm| without writing. VMENC_E_KMS_TIMEOUT: no commit in time, the offer
 * was withdrawn and the VM stays here; VMENC_E_CONFLICT: the offer ended
 * without a commit (this process lost its lease). Keep |vm| open until
 * this returns: freeing it releases the ownership the handover compares.
 * Audited as "migration.handover". */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_cluster_handover_wait(vmenc_workspace *ws,
                                                                              const char *principal, vmenc_vm *vm,
                                                                              const char *dest_host,
                                                                              uint32_t timeout_ms);
/* vmenc_workspace_cluster_handover_commit (destination host) takes VM
 * |vm| (received and registered here) over in one etcd transaction that
 * checks the offer names this host and is still the source's, the source
 * still owns the VM under its lease, the VM is placed there and its
 * authority record is the revision the source named - and then places the
 * VM here, binds its owner key to this process's lease and ends the offer.
 * A lost answer is resolved by re-reading. |principal| needs
 * VirtualMachine.Inventory.Register on it. VMENC_OK: the VM is this
 * host's, owned by |vm| until it is freed. VMENC_E_CONFLICT: the VM
 * stayed the source's (the inventory is pointed back at the source; the
 * caller discards what it received); VMENC_E_NOT_FOUND: no offer;
 * VMENC_E_DENIED: the offer names another host. Audited as
 * "migration.handover_commit". */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_workspace_cluster_handover_commit(vmenc_workspace *ws,
                                                                                const char *principal,
                                                                                vmenc_vm *vm);

#ifdef __cplusplus
}
#endif

#endif /* VMENC_CLUSTER_H */
