/*
 * lib/net/etcd.h - a client for etcd 3.4's v3 JSON gateway (grpc-gateway):
 * every call is POST https://HOST:PORT/v3/<service>/<method> with a JSON
 * body, over libcurl with mutual TLS, against several endpoints with
 * failover. Keys and values are bytes (base64 on the wire); 64-bit
 * revisions and IDs travel as JSON strings and are parsed as integers,
 * never through a double; fields that are zero are absent on the wire
 * (a lost compare-and-swap is a 200 without "succeeded"). The wire facts
 * this follows, verbatim requests and responses included, are in
 * docs/cluster.md "The etcd client" and tests/support/etcd/README.md.
 *
 * Safety rule: a write whose request may have reached a server but whose
 * answer did not come back is never retried on another endpoint and never
 * reported as failed: it is VMENC_E_OUTCOME_UNKNOWN, and the caller
 * re-reads (a compare-and-swap on mod_revision makes that safe). Reads
 * fail over freely.
 *
 * Failure categories every call may return (beside the ones it names):
 *   VMENC_E_CONTROL_UNAVAILABLE  no endpoint answered in time (connection
 *                                refused, connect/TLS timeout, 503/14
 *                                "request timed out", 500/2 "context deadline
 *                                exceeded": etcd down or without quorum)
 *   VMENC_E_OUTCOME_UNKNOWN      a write timed out or got 503/500 after it
 *                                was sent: it may or may not have happened
 *   VMENC_E_KMS_CERT_VERIFY      the server certificate is not trusted (the
 *                                TLS statuses are shared with lib/net/tls_conn.h)
 *   VMENC_E_KMS_TLS              TLS failed otherwise (client cert refused,
 *                                unreadable key or certificate file)
 *   VMENC_E_INVALID_ARG          etcd refused the request (400/3) or bad arguments
 *   VMENC_E_PARSE / _BAD_ENCODING / _TOO_LARGE / _DEPTH_LIMIT
 *                                the answer is not a well-formed etcd response
 *   VMENC_E_NOMEM
 *
 * Threads: a vmenc_etcd serialises its unary calls with one mutex (one
 * kept curl handle, hence one kept connection, per endpoint); calls from
 * several threads are safe but wait for each other, and a call during
 * quorum loss may take request_timeout_ms per endpoint. A thread that must
 * not wait behind another's call (a lease keepalive) uses its own client
 * (vmenc_etcd_dup). A watch has its own handle and connection.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_NET_ETCD_H
#define VMENC_LIB_NET_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"

#define VMENC_ETCD_MAX_ENDPOINTS 16u
#define VMENC_ETCD_KEY_MAX (64u << 10)          /* bytes in one key we send or accept */
#define VMENC_ETCD_VALUE_MAX (1536u << 10)      /* etcd's default request limit is 1.5 MiB */
#define VMENC_ETCD_RESPONSE_MAX (64u << 20)     /* bytes in one response body (or one stream message) */
#define VMENC_ETCD_JSON_DEPTH 16                /* nesting the parser accepts */
#define VMENC_ETCD_DEFAULT_CONNECT_TIMEOUT_MS 1000u
#define VMENC_ETCD_DEFAULT_REQUEST_TIMEOUT_MS 5000u

typedef struct vmenc_etcd vmenc_etcd;

/* vmenc_etcd_config: how to reach the cluster. Strings are copied by
 * vmenc_etcd_new. */
typedef struct vmenc_etcd_config {
    uint32_t struct_size;          /* sizeof(vmenc_etcd_config) */
    const char *endpoints;         /* "https://127.0.0.1:23790,https://127.0.0.1:23792" (1..16) */
    const char *ca_file;           /* PEM CA the server certificates chain to */
    const char *cert_file;         /* PEM client certificate (mutual TLS) */
    const char *key_file;          /* PEM client key */
    uint32_t connect_timeout_ms;   /* TCP + TLS handshake per attempt; 0: 1000 */
    uint32_t request_timeout_ms;   /* whole unary request per attempt; 0: 5000 */
    bool http2;                    /* negotiate HTTP/2 (default HTTP/1.1: faster for sequential calls) */
} vmenc_etcd_config;

/* vmenc_etcd_new checks |cfg| (VMENC_E_INVALID_ARG: no endpoint, more than
 * VMENC_ETCD_MAX_ENDPOINTS, a URL that is not https://HOST:PORT, missing
 * file names) and builds a client. Nothing is connected yet: the first
 * call connects. vmenc_etcd_free accepts NULL. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_new(const vmenc_etcd_config *cfg, vmenc_etcd **out);
/* vmenc_etcd_dup builds another client with |c|'s configuration (its own
 * handles, connections and mutex). */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_dup(const vmenc_etcd *c, vmenc_etcd **out);
VMENC_INTERNAL void vmenc_etcd_free(vmenc_etcd *c);

VMENC_INTERNAL size_t vmenc_etcd_num_endpoints(const vmenc_etcd *c);
/* vmenc_etcd_endpoint: the URL of endpoint |i| ("" past the end); lives as
 * long as |c|. */
VMENC_INTERNAL const char *vmenc_etcd_endpoint(const vmenc_etcd *c, size_t i);
/* vmenc_etcd_last_error copies a one-line description of |c|'s last failed
 * call (the endpoint, then curl's or etcd's message; never a key, value or
 * secret) into |buf| (NUL-terminated, truncated to |cap|). */
VMENC_INTERNAL void vmenc_etcd_last_error(vmenc_etcd *c, char *buf, size_t cap);

/* Counters (for tests and benchmarks). */
typedef struct vmenc_etcd_counters {
    uint64_t requests;             /* HTTP requests sent (attempts) */
    uint64_t failovers;            /* attempts moved on to another endpoint */
    uint64_t connects;             /* new connections made (CURLINFO_NUM_CONNECTS summed) */
} vmenc_etcd_counters;
VMENC_INTERNAL void vmenc_etcd_counters_get(vmenc_etcd *c, vmenc_etcd_counters *out);

/* ---- results ----------------------------------------------------------------- */

/* The response header every answer carries. */
typedef struct vmenc_etcd_header {
    uint64_t cluster_id;
    uint64_t member_id;
    int64_t revision;              /* the store's revision when the request was served */
    uint64_t raft_term;
} vmenc_etcd_header;

/* One key-value. |key| and |value| are malloc'd (each with a NUL after its
 * length for convenience; may contain NULs); freed by the owning result's
 * cleanup. Absent numbers are 0. */
typedef struct vmenc_etcd_kv {
    uint8_t *key;
    size_t key_len;
    uint8_t *value;
    size_t value_len;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
} vmenc_etcd_kv;

typedef enum vmenc_etcd_op_type {
    VMENC_ETCD_OP_RANGE = 0,
    VMENC_ETCD_OP_PUT = 1,
    VMENC_ETCD_OP_DELETE = 2,
} vmenc_etcd_op_type;

/* vmenc_etcd_result: the answer to one range, put or delete_range (alone or
 * inside a txn). |kvs| holds: range -> the keys read; put -> the previous
 * key-value if prev_kv was asked and it existed (0 or 1); delete -> the
 * deleted key-values if prev_kv was asked. |header.revision| after a put is
 * the key's new mod_revision. Inside a txn the header carries only the
 * revision. */
typedef struct vmenc_etcd_result {
    vmenc_etcd_op_type type;
    vmenc_etcd_header header;
    vmenc_etcd_kv *kvs;
    size_t num_kvs;
    int64_t count;                 /* range: keys in the range (not only those returned) */
    bool more;                     /* range: more keys past |limit| */
    int64_t deleted;               /* delete: how many keys were deleted */
} vmenc_etcd_result;
/* vmenc_etcd_result_cleanup frees what |r| owns and zeroes it (NULL-safe;
 * a zeroed result is safe to clean up). */
VMENC_INTERNAL void vmenc_etcd_result_cleanup(vmenc_etcd_result *r);

/* ---- requests ------------------------------------------------------------------ */

/* A key range: |key| alone (range_end NULL, prefix false), [key, range_end),
 * or every key starting with |key| (prefix true; range_end must be NULL).
 * A range_end of one zero byte means "every key >= key". */
typedef struct vmenc_etcd_range_req {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *range_end;
    size_t range_end_len;
    bool prefix;
    int64_t limit;                 /* 0: no limit */
    int64_t revision;              /* 0: latest; else read at that past revision */
    bool serializable;             /* local read from the member asked: may be stale, works without quorum */
    bool keys_only;
    bool count_only;
} vmenc_etcd_range_req;

typedef struct vmenc_etcd_put_req {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    int64_t lease;                 /* 0: none; a lease that is gone -> VMENC_E_LEASE_EXPIRED */
    bool prev_kv;
} vmenc_etcd_put_req;

typedef struct vmenc_etcd_delete_req {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *range_end;
    size_t range_end_len;
    bool prefix;
    bool prev_kv;
} vmenc_etcd_delete_req;

/* vmenc_etcd_range reads; the result is the caller's to clean up. Every
 * call that fills a result (range, put, delete_range, txn, status) zeroes
 * it first, so after a failure it is empty and safe to clean up. A missing key is VMENC_OK with num_kvs 0.
 * A revision that was compacted: VMENC_E_CONFLICT. Fails over. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_range(vmenc_etcd *c, const vmenc_etcd_range_req *req,
                                                              vmenc_etcd_result *out);
/* vmenc_etcd_put writes unconditionally (|out| may be NULL).
 * VMENC_E_LEASE_EXPIRED when the lease is gone. A write: see the safety
 * rule. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_put(vmenc_etcd *c, const vmenc_etcd_put_req *req,
                                                            vmenc_etcd_result *out);
/* vmenc_etcd_delete_range deletes (|out| may be NULL); deleting nothing is
 * VMENC_OK with deleted 0. A write. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_delete_range(vmenc_etcd *c, const vmenc_etcd_delete_req *req,
                                                                     vmenc_etcd_result *out);

/* ---- transactions ------------------------------------------------------------------ */

typedef enum vmenc_etcd_cmp_target {
    VMENC_ETCD_CMP_VERSION = 0,
    VMENC_ETCD_CMP_CREATE = 1,     /* create_revision (0: the key does not exist) */
    VMENC_ETCD_CMP_MOD = 2,        /* mod_revision */
    VMENC_ETCD_CMP_VALUE = 3,
    VMENC_ETCD_CMP_LEASE = 4,
} vmenc_etcd_cmp_target;

typedef enum vmenc_etcd_cmp_result {
    VMENC_ETCD_CMP_EQUAL = 0,
    VMENC_ETCD_CMP_GREATER = 1,
    VMENC_ETCD_CMP_LESS = 2,
    VMENC_ETCD_CMP_NOT_EQUAL = 3,
} vmenc_etcd_cmp_result;

/* One compare: |target| of |key| (optionally the range up to range_end)
 * |result| |number| (VERSION, CREATE, MOD, LEASE) or |value| (VALUE). */
typedef struct vmenc_etcd_compare {
    vmenc_etcd_cmp_target target;
    vmenc_etcd_cmp_result result;
    const uint8_t *key;
    size_t key_len;
    const uint8_t *range_end;
    size_t range_end_len;
    int64_t number;
    const uint8_t *value;
    size_t value_len;
} vmenc_etcd_compare;

/* One operation of a branch: the member named by |type| is used. */
typedef struct vmenc_etcd_op {
    vmenc_etcd_op_type type;
    vmenc_etcd_range_req range;
    vmenc_etcd_put_req put;
    vmenc_etcd_delete_req del;
} vmenc_etcd_op;

typedef struct vmenc_etcd_txn_req {
    const vmenc_etcd_compare *compares;
    size_t num_compares;
    const vmenc_etcd_op *success;
    size_t num_success;
    const vmenc_etcd_op *failure;
    size_t num_failure;
} vmenc_etcd_txn_req;

/* vmenc_etcd_txn_result: |succeeded| tells which branch ran; |responses|
 * are its operations' results, in order (each with its own type). */
typedef struct vmenc_etcd_txn_result {
    vmenc_etcd_header header;
    bool succeeded;
    vmenc_etcd_result *responses;
    size_t num_responses;
} vmenc_etcd_txn_result;
VMENC_INTERNAL void vmenc_etcd_txn_result_cleanup(vmenc_etcd_txn_result *r);

/* vmenc_etcd_txn runs a transaction. A transaction whose compares fail is
 * VMENC_OK with succeeded false (the failure branch ran): deciding that
 * this is a lost race (VMENC_E_CONFLICT) is the caller's. A transaction
 * with any put or delete in either branch is a write (see the safety
 * rule); a read-only one fails over. VMENC_E_LEASE_EXPIRED when a put
 * names a lease that is gone. |out| is filled only on VMENC_OK. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_txn(vmenc_etcd *c, const vmenc_etcd_txn_req *req,
                                                            vmenc_etcd_txn_result *out);

/* ---- leases ------------------------------------------------------------------------- */

/* vmenc_etcd_lease_grant asks for a lease of |ttl_s| seconds (etcd may
 * raise it to its minimum) with ID |id| (0: etcd picks). |*out_id| the
 * lease, |*out_ttl_s| the TTL granted. A write. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_lease_grant(vmenc_etcd *c, int64_t ttl_s, int64_t id,
                                                                    int64_t *out_id, int64_t *out_ttl_s);
/* vmenc_etcd_lease_keepalive_once refreshes |id| once; |*out_ttl_s| the
 * new TTL. VMENC_E_LEASE_EXPIRED when the lease is gone (etcd answers 200
 * with no TTL). Idempotent, so it fails over like a read. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_lease_keepalive_once(vmenc_etcd *c, int64_t id,
                                                                             int64_t *out_ttl_s);
/* vmenc_etcd_lease_revoke ends |id| and deletes its keys
 * (VMENC_E_LEASE_EXPIRED if it was already gone). A write. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_lease_revoke(vmenc_etcd *c, int64_t id);
/* vmenc_etcd_lease_timetolive: the seconds left (|*out_ttl_s|) and granted
 * (|*out_granted_s|, may be NULL); VMENC_E_LEASE_EXPIRED when gone. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_lease_timetolive(vmenc_etcd *c, int64_t id,
                                                                         int64_t *out_ttl_s, int64_t *out_granted_s);

/* ---- maintenance ------------------------------------------------------------------------ */

typedef struct vmenc_etcd_member_status {
    vmenc_etcd_header header;      /* header.member_id: the member that answered */
    uint64_t leader;               /* 0: the member knows no leader */
    bool is_leader;                /* leader == header.member_id */
    char version[32];
    int64_t db_size;
    uint64_t raft_index;
    uint64_t raft_term;
    size_t num_errors;             /* e.g. "etcdserver: no leader" */
    char first_error[128];
} vmenc_etcd_member_status;

/* vmenc_etcd_status asks endpoint |endpoint| (no failover: the point is
 * that member) for its status. VMENC_E_CONTROL_UNAVAILABLE if it does not
 * answer; VMENC_E_INVALID_ARG for an index past the end. A member without
 * quorum answers VMENC_OK with leader 0 and an error listed. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_status(vmenc_etcd *c, size_t endpoint,
                                                               vmenc_etcd_member_status *out);
/* vmenc_etcd_compact discards history before |revision| (physical). */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_compact(vmenc_etcd *c, int64_t revision);

/* ---- watch -------------------------------------------------------------------------------- */

typedef enum vmenc_etcd_event_type {
    VMENC_ETCD_EVENT_PUT = 0,
    VMENC_ETCD_EVENT_DELETE = 1,
} vmenc_etcd_event_type;

typedef struct vmenc_etcd_event {
    vmenc_etcd_event_type type;
    vmenc_etcd_kv kv;              /* a DELETE carries the key and its mod_revision (the deletion's) */
    bool has_prev_kv;
    vmenc_etcd_kv prev_kv;
} vmenc_etcd_event;

/* One watch stream message ({"result":{...}}). */
typedef struct vmenc_etcd_watch_msg {
    vmenc_etcd_header header;
    int64_t watch_id;
    bool created;
    bool canceled;
    int64_t compact_revision;      /* nonzero with canceled: start_revision was compacted */
    vmenc_etcd_event *events;
    size_t num_events;
} vmenc_etcd_watch_msg;
VMENC_INTERNAL void vmenc_etcd_watch_msg_cleanup(vmenc_etcd_watch_msg *m);

typedef struct vmenc_etcd_watch_req {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *range_end;
    size_t range_end_len;
    bool prefix;
    int64_t start_revision;        /* 0: from now; else replay from that revision */
    bool prev_kv;
} vmenc_etcd_watch_req;

typedef struct vmenc_etcd_watch vmenc_etcd_watch;

/* vmenc_etcd_watch_fn gets each message with events (also the "created"
 * one); the message lives until the callback returns. A nonzero return
 * ends the watch (vmenc_etcd_watch_run then returns VMENC_OK). */
typedef int (*vmenc_etcd_watch_fn)(void *arg, const vmenc_etcd_watch_msg *msg);

/* vmenc_etcd_watch_new prepares a watch of |req| on its own curl handle
 * (copies the request). */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_watch_new(vmenc_etcd *c, const vmenc_etcd_watch_req *req,
                                                                  vmenc_etcd_watch **out);
/* vmenc_etcd_watch_run streams events to |fn| until the callback or
 * vmenc_etcd_watch_cancel ends it (VMENC_OK). A stream that breaks (member
 * killed or stopped with SIGTERM) is reopened on the next endpoint from
 * the revision after the last one delivered, so no event is lost or
 * repeated. Returns VMENC_E_CONFLICT when the revision to resume from was
 * compacted (vmenc_etcd_watch_compact_revision tells which; the caller
 * re-ranges and watches again from the range's revision + 1), and
 * VMENC_E_CONTROL_UNAVAILABLE when no endpoint accepted the watch in one
 * round. A stopped (SIGSTOP) member is not detected by the stream itself:
 * the caller cancels a watch it distrusts. May be called again after it
 * returned; continues from vmenc_etcd_watch_next_revision. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_watch_run(vmenc_etcd_watch *w, vmenc_etcd_watch_fn fn,
                                                                  void *arg);
/* vmenc_etcd_watch_cancel makes a running vmenc_etcd_watch_run return
 * VMENC_OK within about 100 ms. Thread-safe; not async-signal-safe. */
VMENC_INTERNAL void vmenc_etcd_watch_cancel(vmenc_etcd_watch *w);
/* The revision the watch would resume from (last delivered + 1, or the
 * start revision). */
VMENC_INTERNAL int64_t vmenc_etcd_watch_next_revision(const vmenc_etcd_watch *w);
VMENC_INTERNAL int64_t vmenc_etcd_watch_compact_revision(const vmenc_etcd_watch *w);
/* vmenc_etcd_watch_free: only once no vmenc_etcd_watch_run is running on it. NULL-safe. */
VMENC_INTERNAL void vmenc_etcd_watch_free(vmenc_etcd_watch *w);

/* ---- helpers ------------------------------------------------------------------------------- */

/* vmenc_etcd_prefix_end writes the range_end that makes [key, end) the
 * keys starting with |key| (the prefix with its last non-0xff byte
 * incremented and what follows dropped; all 0xff or empty -> one zero
 * byte, "every key >="). |out| holds at least |key_len| (or 1) bytes;
 * |*out_len| its length. */
VMENC_INTERNAL void vmenc_etcd_prefix_end(const uint8_t *key, size_t key_len, uint8_t *out, size_t *out_len);

/* ---- the response parser (etcd_parse.c: pure, bounded, fuzzed) ------------------------------ */

/* Each parses one JSON body of at most VMENC_ETCD_RESPONSE_MAX bytes into a
 * zeroed |out| (cleaned up and zeroed again on failure). Every field is
 * type-checked; absent fields are 0/false/empty; int64 fields are decimal
 * strings (or, accepted too, JSON integers) parsed exactly; keys and
 * values are standard padded base64, bounded by VMENC_ETCD_KEY_MAX /
 * VMENC_ETCD_VALUE_MAX. Unknown fields are ignored (etcd adds fields). */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_parse_result(vmenc_etcd_op_type type, const uint8_t *body,
                                                                     size_t len, vmenc_etcd_result *out);
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_parse_txn(const uint8_t *body, size_t len,
                                                                  vmenc_etcd_txn_result *out);
/* A lease answer (grant, keepalive's stream message, timetolive): ID, TTL,
 * grantedTTL, each 0 when absent. A keepalive message is unwrapped from
 * {"result":...} first. */
typedef struct vmenc_etcd_lease_info {
    vmenc_etcd_header header;
    int64_t id;
    int64_t ttl;
    int64_t granted_ttl;
} vmenc_etcd_lease_info;
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_parse_lease(const uint8_t *body, size_t len, bool stream,
                                                                    vmenc_etcd_lease_info *out);
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_parse_status(const uint8_t *body, size_t len,
                                                                     vmenc_etcd_member_status *out);
/* vmenc_etcd_parse_watch_msg parses one stream line ({"result":{...}}).
 * A stream error line ({"error":{...}}) is VMENC_E_CONTROL_UNAVAILABLE. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_parse_watch_msg(const uint8_t *body, size_t len,
                                                                        vmenc_etcd_watch_msg *out);
/* vmenc_etcd_parse_error reads an error body ({"error","message","code"}
 * or a stream's {"error":{"grpc_code",...}}): the gRPC code and message
 * (copied into |msg|, |msg_cap| bytes, NUL-terminated; may be NULL). */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_etcd_parse_error(const uint8_t *body, size_t len, int *out_code,
                                                                    char *msg, size_t msg_cap);
/* vmenc_etcd_parse_i64 parses a decimal int64 exactly (optional '-', no
 * leading '+', no spaces, no leading zeros but "0"); vmenc_etcd_parse_u64
 * the same for uint64 (no sign). false on anything else or overflow. */
VMENC_INTERNAL bool vmenc_etcd_parse_i64(const char *s, size_t len, int64_t *out);
VMENC_INTERNAL bool vmenc_etcd_parse_u64(const char *s, size_t len, uint64_t *out);

#endif /* VMENC_LIB_NET_ETCD_H */
