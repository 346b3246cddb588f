/*
 * lib/audit/mirror.h - private: the audit mirror, a copy of every host's
 * audit records kept outside the hosts (cluster mode: etcd, wired by the
 * control layer), and what the audit layer does with it: append each
 * host's records in order with its chain head, list every host's events
 * by time (`vmenc audit show --cluster`), and compare a host's local log
 * with its mirrored copy (`vmenc audit verify --cluster`). docs/audit.md
 * "The cluster mirror" documents the contract.
 *
 * A mirror is a base struct embedded in the implementer's state, pointing
 * to a static const vtable that begins with its size (AWS Encryption SDK
 * style, STYLE.md); a member outside that size or NULL is "unimplemented".
 *
 * Safety rule: the mirror never decides what a host's chain is - records
 * come from the local log (under its file lock, in order), and the
 * comparison reports, it never repairs either side.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_AUDIT_MIRROR_H
#define VMENC_LIB_AUDIT_MIRROR_H

#include "audit/record.h"

/* Longest host ID a mirror must accept. */
#define AUDIT_MIRROR_HOST_MAX 256u

typedef struct audit_mirror audit_mirror;

/* Called once per host that has mirrored records. Nonzero stops the walk. */
typedef int (*audit_mirror_host_cb)(void *ctx, const char *host);
/* Called once per mirrored record of a host, in sequence order: the line
 * as the host wrote it, without its newline. Nonzero stops the walk. */
typedef int (*audit_mirror_line_cb)(void *ctx, uint64_t seq, const uint8_t *line, size_t len);

typedef struct audit_mirror_ops {
    size_t struct_size; /* sizeof(audit_mirror_ops) the implementer was built with */
    /*
     * append stores records |first_seq|..|last_seq| of |host|: |lines| holds
     * them in order, each ending in '\n' (|len| bytes), and |head| is the mac
     * of the last one - the host's new chain head. It is a compare-and-swap:
     * only if the mirror's head for |host| is |first_seq| - 1 (0 with no
     * records), else VMENC_E_CONFLICT and nothing stored; all or nothing.
     * Control-plane outages: VMENC_E_KMS_UNAVAILABLE-like provider codes.
     */
    vmenc_status (*append)(audit_mirror *m, const char *host, uint64_t first_seq, uint64_t last_seq,
                           const uint8_t *lines, size_t len, const uint8_t head[VMENC_AUDIT_HASH_BYTES]);
    /* head reports the mirror's head for |host| (0 and zeros: none). */
    vmenc_status (*head)(audit_mirror *m, const char *host, uint64_t *out_seq,
                         uint8_t out_hash[VMENC_AUDIT_HASH_BYTES]);
    /* list_hosts calls |cb| for every host with mirrored records. */
    vmenc_status (*list_hosts)(audit_mirror *m, audit_mirror_host_cb cb, void *ctx);
    /* read calls |cb| for each record of |host| with seq >= |from_seq|, in order. */
    vmenc_status (*read)(audit_mirror *m, const char *host, uint64_t from_seq, audit_mirror_line_cb cb,
                         void *ctx);
    /* destroy frees the implementer's state (NULL: nothing to free). */
    void (*destroy)(audit_mirror *m);
} audit_mirror_ops;

/* AUDIT_MIRROR_HAS_OP: whether mirror |m| implements the optional op
 * |member| (its ops table is long enough to hold it, and it is set). */
#define AUDIT_MIRROR_HAS_OP(m, member)                                                              \
    ((m) != NULL && (m)->ops != NULL &&                                                             \
     (m)->ops->struct_size >= offsetof(audit_mirror_ops, member) + sizeof((m)->ops->member) &&      \
     (m)->ops->member != NULL)

struct audit_mirror {
    const audit_mirror_ops *ops;
};

/* audit_mirror_free calls the implementer's destroy; NULL is fine. */
VMENC_INTERNAL void audit_mirror_free(audit_mirror *m);

/*
 * audit_log_set_mirror makes |log| copy every record it appends to |m| as
 * records of |host| (copied), from the append after this call on: under
 * the log's mutex and file lock, so each host's records reach the mirror
 * in chain order whichever process wrote them. A mirror that is behind
 * (it failed before, or another writer of the host had none) is first
 * brought up to date from the local file. An append whose record is in the
 * local log but could not be mirrored succeeds (the local log is the
 * truth): the mirror is behind (audit_log_mirror_state) and the next append
 * catches it up. A mirror ahead of the local log (the log was cut) is never
 * written to (last_rv VMENC_E_AUDIT_TRUNCATED). |m| must outlive the log
 * or be replaced (NULL: stop mirroring). Not owned.
 */
VMENC_INTERNAL vmenc_status audit_log_set_mirror(vmenc_audit_log *log, audit_mirror *m, const char *host);

/* What a log knows of its mirror (audit_log_mirror_state). */
typedef struct audit_log_mirror_info {
    bool installed;        /* a mirror is set */
    bool behind;           /* the last copy failed: the mirror lacks records the log has */
    vmenc_status last_rv;  /* that copy's status (VMENC_OK when up to date) */
    uint64_t failures;     /* copies that failed or were skipped in the back-off */
} audit_log_mirror_info;

/* audit_log_mirror_state reports whether the log's mirror is behind. A
 * failed copy never fails the append (the local log is the truth): this,
 * and `audit verify --cluster` (mirror_seq < log_last_seq), is where the
 * lag shows. */
VMENC_INTERNAL vmenc_status audit_log_mirror_state(vmenc_audit_log *log, audit_log_mirror_info *out);

/* audit_log_set_mirror_backoff: after a failed copy the log does not try
 * the mirror again for |ms| milliseconds (0, the default: at every append),
 * so an unreachable control plane costs one timeout per back-off period,
 * not one per record, under the log's file lock. */
VMENC_INTERNAL void audit_log_set_mirror_backoff(vmenc_audit_log *log, uint32_t ms);

/* audit_log_path returns the path of the log's current file (internal). */
VMENC_INTERNAL const char *audit_log_path(const vmenc_audit_log *log);

/* audit_mirror_catch_up sends the records of the local log file |fd|
 * (|size| bytes) after the mirror's head for |host|, up to the file's last
 * record, in one append. The caller holds the log's file lock. */
VMENC_INTERNAL vmenc_status audit_mirror_catch_up(audit_mirror *m, const char *host, int fd, uint64_t size,
                                                  const audit_key *k);

/* One event of the cluster-wide list. */
typedef struct audit_cluster_event {
    const char *host;
    uint64_t seq;
    uint64_t time_ms;
    const uint8_t *line; /* without the newline; valid during the callback */
    size_t len;
} audit_cluster_event;

typedef int (*audit_cluster_event_cb)(void *ctx, const audit_cluster_event *ev);

/*
 * audit_mirror_merge lists every host's mirrored events by time: each
 * host's records in sequence order, the hosts merged by the records' time
 * (ties: host ID, then sequence), so a host's own order is kept even if its
 * clock stepped back. |cb| sees each event once. Records that do not parse
 * as canonical records are skipped and counted in |*out_skipped|.
 */
VMENC_INTERNAL vmenc_status audit_mirror_merge(audit_mirror *m, audit_cluster_event_cb cb, void *ctx,
                                               uint64_t *out_skipped);

/*
 * audit_mirror_compare holds the local log at |log_path| (chain key |k|) of
 * |host| against its mirrored copy and fills |out|: CUT if the mirror
 * holds records the log no longer has (cut short, or emptied), DIVERGED at
 * the first sequence number whose local record is not byte for byte the
 * mirrored one, MISSING if nothing of |host| is mirrored, else OK (the
 * mirror may be behind: out->mirror_seq < out->log_last_seq). It also
 * walks every host's mirrored records and counts the hosts whose records
 * do not form one chain (sequence numbers one apart, each prev the mac
 * before). Reads only.
 */
VMENC_INTERNAL vmenc_status audit_mirror_compare(audit_mirror *m, const audit_key *k, const char *host,
                                                 const char *log_path, vmenc_audit_cluster_result *out);

#endif /* VMENC_LIB_AUDIT_MIRROR_H */
