/*
 * lib/control/etcd/cluster.h - cluster semantics on etcd (issue 22): one
 * process's session (a lease kept alive by a background thread, and the
 * fencing deadline it moves), the host registry, VM ownership bound to the
 * session's lease, the cluster-wide policy document (revisioned, edited
 * under a lease-bound lock and a compare-and-swap) and its watch. The key
 * layout, the transactions and the timing are docs/cluster.md; the wire is
 * lib/net/etcd.h.
 *
 * Safety rule: a host writes only before its fencing deadline, which is
 * the monotonic time the last *successful* keepalive was sent plus the
 * lease's TTL minus a margin. The deadline only moves forward on an answer
 * that proves the lease alive, so once it has passed nobody in this
 * process writes until such an answer comes - and if the lease is gone,
 * never again (another host may own the VMs now).
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_CONTROL_ETCD_CLUSTER_H
#define VMENC_LIB_CONTROL_ETCD_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"
#include "net/etcd.h"

#define CTL_CLUSTER_NAME_MAX 64u
#define CTL_CLUSTER_HOST_MAX 64u
#define CTL_CLUSTER_DEFAULT_TTL_S 5u
#define CTL_CLUSTER_DEFAULT_MARGIN_MS 1000u
#define CTL_CLUSTER_INFO_MAX 1024u          /* a host's registration document */
#define CTL_CLUSTER_WHY_MAX 256u

typedef struct ctl_cluster ctl_cluster;

typedef struct ctl_cluster_config {
    const char *name;              /* the cluster (1..64 of [A-Za-z0-9._-]) */
    const char *host_id;           /* this host's inventory name */
    const vmenc_etcd_config *etcd;
    uint32_t ttl_s;                /* session lease TTL (0: CTL_CLUSTER_DEFAULT_TTL_S) */
    uint32_t margin_ms;            /* fencing margin below the TTL (0: default; < ttl) */
} ctl_cluster_config;

/* ctl_cluster_name_ok: 1..64 of [A-Za-z0-9._-]. */
VMENC_INTERNAL bool ctl_cluster_name_ok(const char *name);

/* ctl_cluster_open connects, grants the session lease, writes the session
 * key (/vmenc/C/session/<host>/<lease>) and starts the keepalive thread.
 * VMENC_E_CONTROL_UNAVAILABLE when etcd cannot be reached (nothing left
 * behind); the etcd client's other statuses. ctl_cluster_close stops the
 * threads, deletes the ownership keys this session holds and revokes the
 * lease (best effort: a lease it cannot revoke expires). NULL-safe. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_open(const ctl_cluster_config *cfg, ctl_cluster **out);
VMENC_INTERNAL void ctl_cluster_close(ctl_cluster *c);

/* The unary client (serialised; the keepalive and the watch have their
 * own), for the etcd control store. Lives as long as |c|. */
VMENC_INTERNAL vmenc_etcd *ctl_cluster_etcd(ctl_cluster *c);
VMENC_INTERNAL const char *ctl_cluster_name(const ctl_cluster *c);
VMENC_INTERNAL const char *ctl_cluster_host(const ctl_cluster *c);
VMENC_INTERNAL int64_t ctl_cluster_lease(const ctl_cluster *c);
VMENC_INTERNAL uint32_t ctl_cluster_ttl_s(const ctl_cluster *c);

/* ---- fencing ----------------------------------------------------------------- */

/* ctl_cluster_write_ok: VMENC_OK before the fencing deadline, else
 * VMENC_E_LEASE_EXPIRED. One atomic load and one monotonic clock read. */
VMENC_INTERNAL vmenc_status ctl_cluster_write_ok(const ctl_cluster *c);
/* ctl_cluster_fence_info: milliseconds left before the deadline (negative:
 * fenced since), whether the lease is known to be gone, and the keepalive
 * counters. */
typedef struct ctl_cluster_fence_info {
    int64_t ms_left;
    bool lease_gone;
    uint64_t keepalives_ok;
    uint64_t keepalives_failed;
} ctl_cluster_fence_info;
VMENC_INTERNAL void ctl_cluster_fence_info_get(const ctl_cluster *c, ctl_cluster_fence_info *out);
/* ctl_cluster_fence_deadline: the pure rule (tested without etcd):
 * |sent_ms| + |ttl_s| * 1000 - |margin_ms|, never before |sent_ms|. */
VMENC_INTERNAL uint64_t ctl_cluster_fence_deadline(uint64_t sent_ms, int64_t ttl_s, uint32_t margin_ms);

/* ---- the cluster document and hosts ---------------------------------------------- */

/* ctl_cluster_doc_get reads /vmenc/C/cluster (malloc'd, NUL appended);
 * VMENC_E_NOT_FOUND when the cluster was never initialised.
 * ctl_cluster_doc_create writes it if absent (VMENC_E_EXISTS otherwise). */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_doc_get(ctl_cluster *c, uint8_t **out, size_t *out_len);
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_doc_create(ctl_cluster *c, const uint8_t *doc, size_t len);

/* ctl_cluster_host_put registers this host (/vmenc/C/host/<host>: its
 * document, no lease: a registration outlives processes);
 * ctl_cluster_host_delete removes it. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_host_put(ctl_cluster *c, const char *info_json);
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_host_delete(ctl_cluster *c);

/* ctl_cluster_host_fn: one registered host, its document and how many live
 * sessions (processes holding a lease) it has. Nonzero stops. */
typedef int (*ctl_cluster_host_fn)(void *arg, const char *host, const char *info_json, uint32_t num_sessions);
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_hosts(ctl_cluster *c, ctl_cluster_host_fn fn, void *arg);

/* ---- ownership --------------------------------------------------------------------- */

/* ctl_cluster_acquire takes /vmenc/C/owner/<uuid> for this host, bound to
 * the session lease, in one transaction: created if absent and the VM is
 * placed on this host (or not placed yet: then placed here in the same
 * transaction), or already this host's (then left as it is). Counted per
 * UUID in this process. VMENC_E_LOCKED when another host owns it or the VM
 * is placed on another host (|why| names the host); VMENC_E_LEASE_EXPIRED
 * when fenced. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_acquire(ctl_cluster *c, const char *uuid, const char *name,
                                                                 char *why, size_t why_cap);
/* ctl_cluster_release drops one count; the last one deletes the key if it
 * is still bound to this session's lease. */
VMENC_INTERNAL void ctl_cluster_release(ctl_cluster *c, const char *uuid);
/* ctl_cluster_check_owner: VMENC_OK when nobody else owns |uuid| (absent
 * or this host), VMENC_E_LOCKED (|why| names the owner) otherwise. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_check_owner(ctl_cluster *c, const char *uuid, char *why,
                                                                     size_t why_cap);
/* ctl_cluster_take_over moves ownership of |uuid| to this session (the HA
 * restart): allowed when no owner key exists (its lease expired and etcd
 * deleted it) - in one transaction that creates it; VMENC_E_LOCKED naming
 * the owner while its lease lives. |out_prev| (may be NULL) receives the
 * previous owner when the key was already ours. The key is then held until
 * ctl_cluster_close (or a release). */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_take_over(ctl_cluster *c, const char *uuid, const char *name,
                                                                   char *why, size_t why_cap);
/* ctl_cluster_owner reads the owner of |uuid| ("" when none). */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_owner(ctl_cluster *c, const char *uuid, char *out_host,
                                                               size_t cap);

/* ctl_cluster_placement reads the host VM |uuid| is placed on - the one
 * host that may take its owner key ("" when never placed). Acquire
 * places an unplaced VM here; take-over and a committed handover move it. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_placement(ctl_cluster *c, const char *uuid, char *out_host,
                                                                   size_t cap);

/* ---- the migration handover (docs/cluster.md) -------------------------------------------- */

#define CTL_CLUSTER_TAG_MAX 96u

/* An offer as stored: /vmenc/C/migration/<uuid> = "SRC\nSRC_LEASE\nDEST\nTAG\nID". */
typedef struct ctl_cluster_handover {
    char src[CTL_CLUSTER_HOST_MAX + 1];
    char dest[CTL_CLUSTER_HOST_MAX + 1];
    char tag[CTL_CLUSTER_TAG_MAX];   /* the VM state the source sent (the caller's words) */
    int64_t src_lease;
    int64_t mod_rev;                 /* of the offer key */
    int64_t key_lease;               /* the lease the offer key is bound to */
} ctl_cluster_handover;

/* ctl_cluster_handover_begin (source) offers VM |uuid| to host |dest|: it
 * writes /vmenc/C/migration/<uuid> bound to this session's lease, naming
 * the source, its lease, the destination and |tag| (the VM state the
 * stream was made from: the caller's words, no newline) - only if this
 * session holds the owner key, the VM is placed here and no other
 * handover is in progress (VMENC_E_BAD_STATE / VMENC_E_LOCKED, |why| says
 * which). The source writes nothing to the VM after this call. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_handover_begin(ctl_cluster *c, const char *uuid,
                                                                        const char *dest, const char *tag,
                                                                        char *why, size_t why_cap);
/* ctl_cluster_handover_read reads the offer of |uuid| (VMENC_E_NOT_FOUND:
 * none; VMENC_E_PARSE: not an offer this file wrote). */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_handover_read(ctl_cluster *c, const char *uuid,
                                                                       ctl_cluster_handover *out);
/* ctl_cluster_handover_commit (destination) takes the VM over in ONE
 * transaction: compare the offer |h| (as read: its mod_revision, still
 * bound to the source's lease), the owner key (bound to the source's
 * lease), the placement (the source) and the VM record's mod_revision
 * (|record_rev|, which the caller read and checked against |h->tag|; 0:
 * no record); then put the placement = this host, the owner key bound to
 * this session's lease, and delete the offer. An answer lost
 * (VMENC_E_OUTCOME_UNKNOWN) is resolved by re-reading the placement and
 * the offer. VMENC_OK: the VM is this host's; VMENC_E_CONFLICT: it stayed
 * the source's; VMENC_E_DENIED: the offer names another host. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_handover_commit(ctl_cluster *c, const char *uuid,
                                                                         const char *name,
                                                                         const ctl_cluster_handover *h,
                                                                         int64_t record_rev, char *why,
                                                                         size_t why_cap);
/* ctl_cluster_handover_wait (source) waits up to |timeout_ms| for the
 * outcome: VMENC_OK when the placement names |dest| (this process then no
 * longer counts itself an owner); VMENC_E_CONFLICT when the intent is gone
 * and the VM stayed here; on timeout it withdraws the intent (a compare on
 * its lease) and returns VMENC_E_KMS_TIMEOUT - unless the destination
 * committed first, which is then VMENC_OK. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_handover_wait(ctl_cluster *c, const char *uuid,
                                                                       const char *dest, uint32_t timeout_ms);

/* ---- the policy document ------------------------------------------------------------- */

/* ctl_cluster_policy_get reads /vmenc/C/policy (linearizable): its bytes
 * (malloc'd) and mod_revision. VMENC_E_NOT_FOUND when absent. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_policy_get(ctl_cluster *c, uint8_t **out, size_t *out_len,
                                                                    int64_t *out_rev);
/* ctl_cluster_policy_cas writes |json| if the document's mod_revision is
 * still |expected_rev| (0: it must not exist) and the policy lock is this
 * session's; the new revision goes to |*out_rev|. VMENC_E_CONFLICT on a
 * lost race (nothing written). */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_policy_cas(ctl_cluster *c, const uint8_t *json, size_t len,
                                                                    int64_t expected_rev, int64_t *out_rev);
/* ctl_cluster_put_if: one more key written by ctl_cluster_policy_cas_with,
 * |key| relative to /vmenc/C/ (e.g. "host/esx01"), only if its
 * mod_revision is still |mod_rev| (0: it must not exist). */
#define CTL_CLUSTER_PUT_IF_MAX 32
typedef struct ctl_cluster_put_if {
    const char *key;
    const char *value; /* NUL-terminated */
    int64_t mod_rev;
} ctl_cluster_put_if;

/* ctl_cluster_policy_cas_with is ctl_cluster_policy_cas whose transaction
 * also puts |num_extra| (at most CTL_CLUSTER_PUT_IF_MAX) keys, each
 * compared on its revision: all are written or none. VMENC_E_CONFLICT
 * when any compare fails (nothing written). */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_policy_cas_with(ctl_cluster *c, const uint8_t *json,
                                                                         size_t len, int64_t expected_rev,
                                                                         const ctl_cluster_put_if *extra,
                                                                         size_t num_extra, int64_t *out_rev);
/* ctl_cluster_host_get reads /vmenc/C/host/<host> (linearizable): its
 * document (malloc'd) and mod_revision. VMENC_E_NOT_FOUND when absent. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_host_get(ctl_cluster *c, const char *host, uint8_t **out,
                                                                  size_t *out_len, int64_t *out_rev);
/* ctl_cluster_policy_lock takes /vmenc/C/policy.lock (bound to the session
 * lease: a host that dies holding it frees it at expiry), waiting up to
 * |timeout_ms| (VMENC_E_LOCKED, |why| naming the holder).
 * ctl_cluster_policy_unlock deletes it if still ours. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_policy_lock(ctl_cluster *c, uint32_t timeout_ms, char *why,
                                                                     size_t why_cap);
VMENC_INTERNAL void ctl_cluster_policy_unlock(ctl_cluster *c);

/* ctl_cluster_policy_fn receives a newer document seen by the watch (or
 * by a resync after the watch broke). Runs on the watch thread. */
typedef void (*ctl_cluster_policy_fn)(void *arg, const uint8_t *json, size_t len, int64_t rev);
/* ctl_cluster_watch_policy starts the watch thread on /vmenc/C/policy from
 * |from_rev| + 1: every change goes to |fn|; when the stream breaks the
 * thread re-reads the document, hands it over, and watches again.
 * ctl_cluster_watch_healthy: the watch stream is established (decisions may
 * trust the cache). */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_cluster_watch_policy(ctl_cluster *c, int64_t from_rev,
                                                                      ctl_cluster_policy_fn fn, void *arg);
VMENC_INTERNAL bool ctl_cluster_watch_healthy(const ctl_cluster *c);

#endif /* VMENC_LIB_CONTROL_ETCD_CLUSTER_H */
