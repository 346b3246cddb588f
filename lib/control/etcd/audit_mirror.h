/*
 * lib/control/etcd/audit_mirror.h - the etcd implementation of the cluster
 * audit mirror (lib/audit/mirror.h): every host's audit records, in order,
 * with the host's chain head, under /vmenc/<cluster>/audit/. Key layout,
 * transactions and lag: docs/cluster.md "Events", docs/audit.md "The
 * cluster mirror".
 *
 *   /vmenc/<c>/audit/head/<host>            "<seq> <64 hex mac>\n" - the host's mirrored head
 *   /vmenc/<c>/audit/rec/<host>/<seq %020>  the record's canonical line (no newline)
 *
 * Safety rule: records reach etcd only in a transaction that compares the
 * host's head with the one the records continue (create_revision 0 for a
 * first record, else the exact value "<first-1> <prev of the first
 * record>") and puts the records and the new head together, so two
 * processes of one host can never fork or duplicate the mirrored chain; an
 * answer that was lost (VMENC_E_OUTCOME_UNKNOWN) is resolved by re-reading
 * the head, never by sending blindly again.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_CONTROL_ETCD_AUDIT_MIRROR_H
#define VMENC_LIB_CONTROL_ETCD_AUDIT_MIRROR_H

#include "audit/mirror.h"
#include "net/etcd.h"

/* etcd's default --max-txn-ops: operations per branch of one transaction. */
#define CTL_AUDIT_MAX_TXN_OPS 128u
/* Bytes of record lines per transaction (etcd's request limit is 1.5 MiB,
 * and base64 adds a third). */
#define CTL_AUDIT_MAX_TXN_BYTES (512u << 10)
/* Records per range request when reading a host's records. */
#define CTL_AUDIT_READ_PAGE 256

/* ---- the codec (audit_mirror_codec.c: pure, fuzzed) ------------------------------------ */

#define CTL_AUDIT_HEAD_VALUE_MAX 96u /* "<seq> <64 hex>\n" and a NUL, with room */
#define CTL_AUDIT_SEQ_DIGITS 20u     /* a record key's last segment */

/* ctl_audit_head_format writes the head value of (|seq|, |hash|) into |out|
 * (NUL-terminated) and returns its length without the NUL. */
VMENC_INTERNAL size_t ctl_audit_head_format(uint64_t seq, const uint8_t hash[VMENC_AUDIT_HASH_BYTES],
                                            char out[CTL_AUDIT_HEAD_VALUE_MAX]);
/* ctl_audit_head_parse accepts exactly what ctl_audit_head_format writes:
 * a decimal without leading zeros, one space, 64 lowercase hex digits, a
 * newline. VMENC_E_PARSE, VMENC_E_TRAILING_DATA; outputs untouched then. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_audit_head_parse(const uint8_t *v, size_t len, uint64_t *out_seq,
                                                                  uint8_t out_hash[VMENC_AUDIT_HASH_BYTES]);
/* ctl_audit_seq_parse reads a record key's sequence number: exactly
 * CTL_AUDIT_SEQ_DIGITS decimal digits (zero-padded), no overflow. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_audit_seq_parse(const uint8_t *s, size_t len, uint64_t *out_seq);

/* Fault injection (tests only): called around each append transaction.
 * BEFORE: a non-OK status is returned as the transaction's result and the
 * transaction is not sent. AFTER (the transaction was sent and answered
 * with |rv|): the returned status replaces |rv| - e.g. a transaction that
 * succeeded reported as VMENC_E_OUTCOME_UNKNOWN (its answer "lost"). */
typedef enum ctl_audit_fault_phase {
    CTL_AUDIT_FAULT_BEFORE = 0,
    CTL_AUDIT_FAULT_AFTER = 1,
} ctl_audit_fault_phase;
typedef vmenc_status (*ctl_audit_fault_fn)(void *ctx, ctl_audit_fault_phase phase, vmenc_status rv);

/* Counters (tests, `cluster status`). */
typedef struct ctl_audit_mirror_stats {
    uint64_t txns;          /* append transactions that stored records */
    uint64_t conflicts;     /* append transactions whose compare failed */
    uint64_t unknown;       /* answers lost (VMENC_E_OUTCOME_UNKNOWN) */
    uint64_t resolved_done; /* ... resolved by the re-read as applied */
    uint64_t resolved_redo; /* ... resolved as not applied, and sent again */
} ctl_audit_mirror_stats;

/*
 * ctl_audit_mirror_new makes the etcd audit mirror of cluster |cluster|
 * (1..64 of [A-Za-z0-9._-]) over |client|; with |own_client| the mirror
 * frees the client in its destroy, else it borrows it. Nothing is
 * contacted yet. VMENC_E_INVALID_ARG, VMENC_E_NOMEM (the client is then
 * not taken). Free with audit_mirror_free.
 *
 * Its calls return, beside the contract's: the etcd client's statuses
 * (VMENC_E_CONTROL_UNAVAILABLE when etcd is down or without quorum;
 * VMENC_E_OUTCOME_UNKNOWN only when even the re-read after a lost answer
 * failed - the next append's catch-up decides then), VMENC_E_INVALID_ARG
 * for a host ID that cannot be a key segment (empty, ".", "..", '/',
 * control characters, longer than AUDIT_MIRROR_HOST_MAX - 1) and
 * VMENC_E_PARSE for a head value in etcd that is not one.
 */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_audit_mirror_new(vmenc_etcd *client, bool own_client,
                                                                  const char *cluster, audit_mirror **out);

/* ctl_audit_mirror_set_fault installs a fault hook (NULL: none). Tests. */
VMENC_INTERNAL void ctl_audit_mirror_set_fault(audit_mirror *m, ctl_audit_fault_fn fn, void *ctx);
VMENC_INTERNAL void ctl_audit_mirror_stats_get(audit_mirror *m, ctl_audit_mirror_stats *out);

#endif /* VMENC_LIB_CONTROL_ETCD_AUDIT_MIRROR_H */
