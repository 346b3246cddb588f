/*
 * vmenc/audit.h - the tamper-evident audit trail: events, sinks, the
 * hash-chained JSON-lines log and its verifier.
 *
 * Every cryptographic operation, and every denied or failed attempt, is
 * described by a vmenc_audit_event: UTC time in milliseconds, principal,
 * operation, target object, key provider alias, key IDs, outcome and reason.
 *
 * EVENTS NEVER CARRY SECRETS. The API takes key *IDs* (the names a KMS gives
 * a key) and never key bytes, wrapped or not; callers must not put key
 * material, passphrases, PINs or tokens into any string field (principal,
 * target, reason ...). Every string is escaped as JSON and bounded in length
 * (VMENC_AUDIT_MAX_*); a string that is too long or not valid UTF-8 is
 * refused, never silently cut.
 *
 * Sinks: a dispatcher (vmenc_audit) delivers each event to callbacks and to
 * any number of logs (vmenc_audit_log). A log is a JSON-lines file: one
 * record per line, each carrying a sequence number, the previous record's
 * hash and a keyed BLAKE2b-256 hash over its own canonical serialisation
 * (which includes that previous hash). The key comes from the caller (in a
 * deployment, from the KMS), is copied into libsodium secure memory and is
 * wiped when the log is freed. vmenc_audit_verify_* walks a log (or a
 * sequence of rotated files) and reports the first record that was edited,
 * deleted, reordered, inserted or duplicated, and a log cut short.
 *
 * Thread safety: a vmenc_audit dispatcher and a vmenc_audit_log may be used
 * from any number of threads at once, except their _free functions, which
 * must not race with other calls on the same object. The verifier and the
 * event helpers keep no state.
 *
 * The file format is described in docs/audit.md.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_AUDIT_H
#define VMENC_AUDIT_H

#include <stdbool.h>

#include "vmenc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmenc_audit vmenc_audit;
typedef struct vmenc_audit_log vmenc_audit_log;

/* Bounds, in bytes of UTF-8 (before JSON escaping). */
#define VMENC_AUDIT_MAX_FIELD 256u   /* principal, operation, target, provider, each key ID */
#define VMENC_AUDIT_MAX_REASON 1024u /* reason */
#define VMENC_AUDIT_MAX_KEY_IDS 16u  /* key IDs per event */
/* Longest possible log line, newline included. */
#define VMENC_AUDIT_MAX_LINE 65536u

/* The chain hash: keyed BLAKE2b with a 32-byte output. */
#define VMENC_AUDIT_HASH_BYTES 32u
/* Bytes of a chain ID: a random value fixed when a chain is created and
 * carried (under the mac) by every record of it, across rotations, so the
 * verifier reports a record of another chain as inserted. */
#define VMENC_AUDIT_CHAIN_ID_BYTES 16u
/* Key length for the chain hash: 16 to 64 bytes, 32 recommended. */
#define VMENC_AUDIT_KEY_BYTES 32u
#define VMENC_AUDIT_KEY_MIN_BYTES 16u
#define VMENC_AUDIT_KEY_MAX_BYTES 64u

/* Latest time an event may carry: 9999-12-31T23:59:59.999Z. */
#define VMENC_AUDIT_MAX_TIME_MS 253402300799999ull

typedef enum vmenc_audit_outcome {
    VMENC_AUDIT_SUCCESS = 0, /* the operation was carried out */
    VMENC_AUDIT_DENIED = 1,  /* policy refused it */
    VMENC_AUDIT_FAILED = 2   /* it was allowed but failed */
} vmenc_audit_outcome;

/*
 * vmenc_audit_event describes one operation. The caller fills it (set
 * struct_size = sizeof(vmenc_audit_event)); the library copies what it needs
 * and keeps no pointer into it after the call returns.
 *
 * - time_ms: milliseconds since the Unix epoch (UTC); 0 means "now".
 * - principal, operation: required, non-empty.
 * - target, key_provider, reason: optional (NULL or "" for none).
 * - key_ids: |num_key_ids| key IDs (not key bytes!), each non-empty; may be
 *   NULL when num_key_ids is 0.
 * - status: the vmenc_status of the operation (0 on success, negative else).
 * All strings are NUL-terminated, valid UTF-8 (control characters are
 * allowed and escaped in the JSON), bounded by VMENC_AUDIT_MAX_*.
 */
typedef struct vmenc_audit_event {
    uint32_t struct_size;
    uint64_t time_ms;
    const char *principal;
    const char *operation;
    const char *target;
    const char *key_provider;
    const char *const *key_ids;
    size_t num_key_ids;
    vmenc_audit_outcome outcome;
    int32_t status;
    const char *reason;
} vmenc_audit_event;

/* vmenc_audit_outcome_name returns "success", "denied" or "failed" (or
 * "unknown"). Static lifetime. */
VMENC_API const char *vmenc_audit_outcome_name(vmenc_audit_outcome outcome);

/* vmenc_audit_event_check validates |event| without recording it: every
 * pointer, bound, UTF-8 and the outcome. Fails with VMENC_E_ABI_VERSION
 * (struct_size too small), VMENC_E_INVALID_ARG (missing or empty required
 * field, bad outcome, positive status, time past VMENC_AUDIT_MAX_TIME_MS),
 * VMENC_E_TOO_LARGE (a string or the key ID count over its bound) or
 * VMENC_E_BAD_ENCODING (a string is not valid UTF-8). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_event_check(const vmenc_audit_event *event);

/* vmenc_audit_event_to_json writes the canonical JSON object of |event|
 * (without the chain fields a log adds) to |out| (capacity |out_cap|), NUL
 * terminated, and its length without the NUL to |*out_len|. Fails like
 * vmenc_audit_event_check, or with VMENC_E_BUFFER_TOO_SMALL (|*out_len| then
 * holds the size needed, NUL included); |out| is then unspecified. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_event_to_json(const vmenc_audit_event *event,
                                                                  char *out, size_t out_cap,
                                                                  size_t *out_len);

/* ---- the JSON-lines log sink -------------------------------------------- */

typedef enum vmenc_audit_fsync {
    VMENC_AUDIT_FSYNC_EVERY = 0,   /* fdatasync after every record (default, durable) */
    VMENC_AUDIT_FSYNC_EVERY_N = 1, /* fdatasync after every fsync_every_n records */
    VMENC_AUDIT_FSYNC_NEVER = 2    /* leave it to the OS (also no sync on close) */
} vmenc_audit_fsync;

/* Open flags. */
/* Truncate a torn final partial line (left by a crash in the middle of a
 * write), provided the record before it verifies, then append an
 * "audit.log.recover" event saying how many bytes were discarded. Nothing
 * else is ever truncated or rewritten. */
#define VMENC_AUDIT_LOG_RECOVER (1u << 0)
/* Verify the whole existing file (not only its last record) before
 * appending; refuse with the verifier's status if anything is wrong. */
#define VMENC_AUDIT_LOG_VERIFY_ALL (1u << 1)
/* Share the file with other writers, in this process or others: the file is
 * not locked while the log is open; each append takes the lock (waiting at
 * most lock_timeout_ms), continues the chain from the file's real last
 * record (re-read if another writer made the file grow), writes and
 * releases it. A torn tail another writer left is cut off and recorded as
 * at open if VMENC_AUDIT_LOG_RECOVER is set, else the append fails with
 * VMENC_E_INTERRUPTED. Rotation is not available on a shared log
 * (VMENC_E_UNSUPPORTED). */
#define VMENC_AUDIT_LOG_SHARED (1u << 2)
/* With checkpoint_path: seal a first checkpoint if there is none (only
 * when a log's chain is created, or to adopt a log written before
 * checkpoints, after verifying it). Without this flag a missing checkpoint
 * is never created again, so its removal stays visible to the verifier. */
#define VMENC_AUDIT_LOG_CHECKPOINT_INIT (1u << 3)

/* vmenc_audit_log_options: set struct_size = sizeof(vmenc_audit_log_options).
 * - path: the log file; created (mode 0600) if missing.
 * - key, key_len: the chain key (VMENC_AUDIT_KEY_MIN_BYTES..MAX_BYTES); copied
 *   into secure memory, so the caller may wipe its copy right after open.
 * - fsync, fsync_every_n: durability policy (every_n >= 1 for EVERY_N).
 * - flags: VMENC_AUDIT_LOG_*.
 * - start_seq, start_hash: where the chain continues from when the file is
 *   empty: the last sequence number and hash of the previous file after a
 *   rotation (see vmenc_audit_log_file_tail). start_hash NULL means the
 *   start of a new chain (start_seq must then be 0); ignored for a file that
 *   already holds records, which is resumed from its own last record.
 * - start_chain_id (appended; read if struct_size covers it): with
 *   start_hash, the chain ID the previous file's records carry
 *   (vmenc_audit_log_file_chain_id), so the new file continues the same
 *   chain identity. A new chain (start_hash NULL) gets a random chain ID.
 *   Continuing from start_hash without a chain ID (older callers) writes
 *   records without one (format version 1), as before. */
typedef struct vmenc_audit_log_options {
    uint32_t struct_size;
    const char *path;
    const uint8_t *key;
    size_t key_len;
    vmenc_audit_fsync fsync;
    uint32_t fsync_every_n;
    uint32_t flags;
    uint64_t start_seq;
    const uint8_t *start_hash; /* VMENC_AUDIT_HASH_BYTES or NULL */
    const uint8_t *start_chain_id; /* VMENC_AUDIT_CHAIN_ID_BYTES or NULL (appended) */
    /* VMENC_AUDIT_LOG_SHARED: how long an append (and the open) waits for
     * another writer's lock, in milliseconds; 0 = one try (appended; read if
     * struct_size covers it). */
    uint32_t lock_timeout_ms;
    /* (appended; read if struct_size covers it) the sealed checkpoint of
     * the chain head, a file outside the log (docs/audit.md "The sealed
     * checkpoint"), or NULL for none. The log advances it, under the log's
     * file lock and only forward, in vmenc_audit_log_checkpoint and when it
     * is freed; it never creates a missing one unless
     * VMENC_AUDIT_LOG_CHECKPOINT_INIT is set. */
    const char *checkpoint_path;
} vmenc_audit_log_options;

/*
 * vmenc_audit_log_open opens (or creates) a log for appending and resumes its
 * chain: it reads the last record, checks it under the key, and continues
 * its sequence number and hash. The file is locked (flock, exclusive) for as
 * long as the log is open, so a second writer, in this process or another,
 * gets VMENC_E_LOCKED - unless VMENC_AUDIT_LOG_SHARED is set, in which case
 * the lock is taken per append and any number of shared writers append to
 * one chain. The last path component must not be a symbolic link
 * (O_NOFOLLOW: VMENC_E_IO), so a planted link cannot redirect the log.
 *
 * Fails with VMENC_E_INVALID_ARG / VMENC_E_ABI_VERSION (bad options),
 * VMENC_E_IO (open/read/lock failed), VMENC_E_LOCKED, VMENC_E_INTERRUPTED
 * (the file ends in a torn partial line: open again with
 * VMENC_AUDIT_LOG_RECOVER), VMENC_E_AUDIT_TAMPERED (the last complete line
 * is not a valid record, or with VMENC_AUDIT_LOG_VERIFY_ALL any defect),
 * VMENC_E_AUDIT_TRUNCATED (VERIFY_ALL: torn line), VMENC_E_AUTH (the last
 * record was written under another key) or VMENC_E_NOMEM. Nothing is written
 * to the file on failure. On failure |*out| is untouched.
 */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_log_open(const vmenc_audit_log_options *options,
                                                             vmenc_audit_log **out);

/*
 * vmenc_audit_log_append appends one record for |event| with one write()
 * under the log's mutex (the file is opened O_APPEND), so records from
 * concurrent threads never interleave, then syncs as the policy says. The
 * record's sequence number goes to |*out_seq| if |out_seq| is not NULL.
 *
 * Fails like vmenc_audit_event_check (nothing written), or with VMENC_E_IO:
 * if write() failed the partial record is cut off again and the chain is
 * unchanged; if the sync failed the record is in the file but may not be
 * durable, and the log refuses further appends (VMENC_E_BAD_STATE) until it
 * is reopened, which re-reads and checks the tail. Safe to call from any
 * number of threads.
 */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_log_append(vmenc_audit_log *log,
                                                               const vmenc_audit_event *event,
                                                               uint64_t *out_seq);

/* vmenc_audit_log_sync forces an fdatasync now, whatever the policy. Fails
 * with VMENC_E_IO (the log then refuses further appends) or
 * VMENC_E_BAD_STATE. Thread-safe. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_log_sync(vmenc_audit_log *log);

/* vmenc_audit_log_rotate syncs and closes the current file and continues the
 * chain in |new_path|, which must not exist or be empty: its first record
 * links to the last hash of the old file. The old file is left as it is (the
 * caller may rename or archive it). Fails with VMENC_E_INVALID_ARG,
 * VMENC_E_EXISTS (|new_path| holds data), VMENC_E_LOCKED, VMENC_E_IO or
 * VMENC_E_BAD_STATE; on failure the log keeps appending to the old file.
 * Thread-safe. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_log_rotate(vmenc_audit_log *log,
                                                               const char *new_path);

/* vmenc_audit_log_position reports the sequence number and hash of the last
 * record in the chain (0 and the start hash if none yet): what a verifier
 * needs as expected_last_seq, and what the next file continues from.
 * |out_hash| receives VMENC_AUDIT_HASH_BYTES bytes. Thread-safe. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_log_position(vmenc_audit_log *log,
                                                                 uint64_t *out_seq,
                                                                 uint8_t *out_hash);

/* Counters of a log since it was opened. */
typedef struct vmenc_audit_log_stats {
    uint32_t struct_size;
    uint64_t records; /* records appended */
    uint64_t bytes;   /* bytes appended */
    uint64_t syncs;   /* fdatasync calls made */
} vmenc_audit_log_stats;

/* vmenc_audit_log_get_stats fills |out| (whose struct_size the caller sets).
 * Fails with VMENC_E_INVALID_ARG or VMENC_E_ABI_VERSION. Thread-safe. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_log_get_stats(vmenc_audit_log *log,
                                                                  vmenc_audit_log_stats *out);

/* vmenc_audit_log_free syncs (unless the policy is NEVER), unlocks and closes
 * the file and wipes the key. NULL is fine. No other call on |log| may be
 * running. */
VMENC_API void vmenc_audit_log_free(vmenc_audit_log *log);

/*
 * vmenc_audit_log_checkpoint seals the chain head - the sequence number and
 * hash of the file's last record, its chain ID, the file's length up to it
 * and the time - into the log's checkpoint file (checkpoint_path at open),
 * authenticated with a keyed BLAKE2b under the chain key, replaced
 * atomically. It runs under the log's file lock, so concurrent writers
 * (VMENC_AUDIT_LOG_SHARED) never move the checkpoint backwards, and it
 * moves it forward only over records that continue the sealed chain: a log
 * that was cut short, emptied, replaced or rewritten below the sealed head
 * is refused and the old checkpoint is left as evidence. Nothing to do if
 * the head is already sealed. vmenc_audit_log_free calls it (best effort).
 *
 * Fails with VMENC_E_BAD_STATE (no checkpoint_path), VMENC_E_NOT_FOUND (no
 * checkpoint and the log was not opened with
 * VMENC_AUDIT_LOG_CHECKPOINT_INIT), VMENC_E_AUDIT_TAMPERED (the checkpoint
 * does not verify, or the log diverged from it), VMENC_E_AUTH (checkpoint
 * sealed under another key), VMENC_E_AUDIT_TRUNCATED (the log is shorter
 * than the sealed head), VMENC_E_LOCKED, VMENC_E_IO or VMENC_E_NOMEM.
 * Thread-safe.
 */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_log_checkpoint(vmenc_audit_log *log);

/* vmenc_audit_log_file_tail reads the last record of the log at |path|,
 * checks it under |key| and returns its sequence number and hash: what the
 * next file of a rotated chain continues from (start_seq / start_hash), or
 * what a verifier of the next file alone needs. An empty file gives
 * VMENC_E_NOT_FOUND. Other failures as vmenc_audit_log_open (without
 * locking). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_log_file_tail(const uint8_t *key, size_t key_len,
                                                                  const char *path,
                                                                  uint64_t *out_seq,
                                                                  uint8_t *out_hash);

/* vmenc_audit_log_file_chain_id reads the last record of the log at |path|,
 * checks it under |key|, and writes its chain ID (VMENC_AUDIT_CHAIN_ID_BYTES)
 * to |out|: with vmenc_audit_log_file_tail, what the next file of a rotated
 * chain continues from (start_chain_id). VMENC_E_UNSUPPORTED if the record
 * has none (a log written before chain IDs, format version 1), other
 * failures as vmenc_audit_log_file_tail. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_log_file_chain_id(const uint8_t *key, size_t key_len,
                                                                      const char *path, uint8_t *out);

/* ---- the dispatcher: callbacks and logs ---------------------------------- */

/* A callback sink receives the event (time filled in, strings valid only
 * during the call) and its canonical JSON object (NUL terminated, |json_len|
 * bytes). It may be called from several threads at once. It returns
 * VMENC_OK, or an error that vmenc_audit_emit reports as VMENC_E_AUDIT_SINK.
 * It must not add sinks or free the dispatcher. */
typedef vmenc_status (*vmenc_audit_callback)(void *ctx, const vmenc_audit_event *event,
                                             const char *json, size_t json_len);

/* vmenc_audit_new creates a dispatcher with no sinks. Fails with
 * VMENC_E_INVALID_ARG or VMENC_E_NOMEM; |*out| untouched then. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_new(vmenc_audit **out);

/* vmenc_audit_add_callback adds a callback sink; |ctx| is passed back as is
 * and must outlive the dispatcher. Fails with VMENC_E_INVALID_ARG,
 * VMENC_E_LIMIT (more than 16 sinks) or VMENC_E_NOMEM. Thread-safe. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_add_callback(vmenc_audit *audit,
                                                                 vmenc_audit_callback callback,
                                                                 void *ctx);

/* vmenc_audit_add_log adds a log sink. The dispatcher does not own |log|:
 * it must outlive the dispatcher (free the dispatcher first). Fails like
 * vmenc_audit_add_callback. Thread-safe. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_add_log(vmenc_audit *audit,
                                                            vmenc_audit_log *log);

/*
 * vmenc_audit_emit validates |event|, fills in the time if it is 0, and
 * hands it to every sink in the order they were added. A failing sink does
 * not stop the others. Fails like vmenc_audit_event_check (no sink called),
 * with VMENC_E_BAD_STATE (no sink at all: an event would be lost), or with
 * VMENC_E_AUDIT_SINK if at least one sink failed. Thread-safe.
 */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_emit(vmenc_audit *audit,
                                                         const vmenc_audit_event *event);

/* vmenc_audit_free frees the dispatcher (not its logs). NULL is fine. */
VMENC_API void vmenc_audit_free(vmenc_audit *audit);

/* ---- the verifier ------------------------------------------------------- */

/* What the verifier found first. */
typedef enum vmenc_audit_defect {
    VMENC_AUDIT_DEFECT_NONE = 0,       /* the chain is intact */
    VMENC_AUDIT_DEFECT_EDITED = 1,     /* a record's hash does not match its contents */
    VMENC_AUDIT_DEFECT_MALFORMED = 2,  /* a line is not a well-formed record at all */
    VMENC_AUDIT_DEFECT_DELETED = 3,    /* records are missing before this one */
    VMENC_AUDIT_DEFECT_REORDERED = 4,  /* a valid record of this chain is out of place */
    VMENC_AUDIT_DEFECT_INSERTED = 5,   /* a record that does not belong to this chain */
    VMENC_AUDIT_DEFECT_DUPLICATED = 6, /* the previous record repeated */
    VMENC_AUDIT_DEFECT_TRUNCATED = 7,  /* the log ends before expected_last_seq */
    VMENC_AUDIT_DEFECT_TORN = 8,       /* the last line is partial (no newline) */
    VMENC_AUDIT_DEFECT_WRONG_KEY = 9   /* the first record was made under another key */
} vmenc_audit_defect;

/* vmenc_audit_defect_name returns a short name ("edited", ...). Static. */
VMENC_API const char *vmenc_audit_defect_name(vmenc_audit_defect defect);

/* vmenc_audit_verify_options: set struct_size.
 * - key, key_len: the chain key.
 * - start_seq, start_hash: where the first file's chain starts: NULL/0 for
 *   the first file ever written, or the previous file's last sequence
 *   number and hash (vmenc_audit_log_file_tail) to check a file alone.
 * - expected_last_seq: the last sequence number known to have been written
 *   (vmenc_audit_log_position), or 0 if unknown. Without it, records cut off
 *   the end of the log cannot be detected. */
typedef struct vmenc_audit_verify_options {
    uint32_t struct_size;
    const uint8_t *key;
    size_t key_len;
    uint64_t start_seq;
    const uint8_t *start_hash;
    uint64_t expected_last_seq;
} vmenc_audit_verify_options;

/* vmenc_audit_verify_result: set struct_size; filled by the verifier. */
typedef struct vmenc_audit_verify_result {
    uint32_t struct_size;
    vmenc_audit_defect defect;
    uint64_t num_records;  /* records verified intact (before the defect) */
    size_t bad_file;       /* index of the file holding the defect */
    uint64_t bad_index;    /* 0-based line index of the defect in that file */
    uint64_t bad_offset;   /* byte offset of that line in that file */
    uint64_t bad_seq;      /* sequence number expected at that point */
    uint64_t last_seq;     /* last intact record's sequence number (or start_seq) */
    uint8_t last_hash[VMENC_AUDIT_HASH_BYTES]; /* and its hash (or start_hash) */
} vmenc_audit_verify_result;

/*
 * vmenc_audit_verify_files checks |num_paths| files that together form one
 * chain, oldest first (a rotated log), and fills |out|. Returns VMENC_OK if
 * the chain is intact; VMENC_E_AUDIT_TAMPERED for an edit, deletion,
 * reordering, insertion, duplication or malformed line;
 * VMENC_E_AUDIT_TRUNCATED if the log ends before expected_last_seq or in a
 * torn line; VMENC_E_AUTH if the first record was written under another
 * key. In those cases |out| says what and where. Fails with
 * VMENC_E_INVALID_ARG, VMENC_E_ABI_VERSION, VMENC_E_IO or VMENC_E_NOMEM, and
 * |out| is then untouched. Reads the files only, with pread through a
 * bounded buffer (memory does not grow with the log, and a file truncated
 * meanwhile reads as cut short rather than faulting); a file still being
 * appended to is checked up to its size when the call began. Safe to run
 * while a writer has the log open.
 */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_verify_files(
    const vmenc_audit_verify_options *options, const char *const *paths, size_t num_paths,
    vmenc_audit_verify_result *out);

/* vmenc_audit_verify_buffer is vmenc_audit_verify_files for one log held in
 * memory (|data|, |len| bytes). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_verify_buffer(
    const vmenc_audit_verify_options *options, const uint8_t *data, size_t len,
    vmenc_audit_verify_result *out);

/* ---- the sealed checkpoint ------------------------------------------------ */

/* What comparing a log with its sealed checkpoint found. */
typedef enum vmenc_audit_anchor {
    VMENC_AUDIT_ANCHOR_OK = 0,        /* the log holds the sealed head where it was sealed */
    VMENC_AUDIT_ANCHOR_MISSING = 1,   /* there is no checkpoint file */
    VMENC_AUDIT_ANCHOR_CUT = 2,       /* the log ends before the sealed head: cut short or emptied */
    VMENC_AUDIT_ANCHOR_DIVERGED = 3,  /* another record stands where the sealed head was: replaced or rewritten */
    VMENC_AUDIT_ANCHOR_BAD_SEAL = 4,  /* the checkpoint is malformed or its MAC does not verify */
    VMENC_AUDIT_ANCHOR_WRONG_KEY = 5  /* the checkpoint was sealed under another key */
} vmenc_audit_anchor;

/* vmenc_audit_anchor_name returns "ok", "missing", "cut", "diverged",
 * "bad" or "wrong key" ("unknown" else). Static. */
VMENC_API const char *vmenc_audit_anchor_name(vmenc_audit_anchor anchor);

/* vmenc_audit_anchor_result: set struct_size; filled by the check. */
typedef struct vmenc_audit_anchor_result {
    uint32_t struct_size;
    vmenc_audit_anchor state;
    /* What the checkpoint sealed (zero if MISSING or BAD_SEAL). */
    uint64_t sealed_seq;
    uint64_t sealed_time_ms;
    uint64_t sealed_offset;      /* log bytes up to the end of the sealed record */
    uint8_t sealed_hash[VMENC_AUDIT_HASH_BYTES];
    /* What the log has. */
    uint64_t log_bytes;          /* its length */
    uint64_t log_last_seq;       /* its last record's sequence number (0: none readable) */
    bool log_chain_differs;      /* its last record belongs to another chain than the sealed one */
} vmenc_audit_anchor_result;

/*
 * vmenc_audit_checkpoint_check compares the log at |log_path| with the
 * sealed checkpoint at |checkpoint_path| under the chain key and fills
 * |out|: the record that ends where the checkpoint says the sealed head
 * ends must be that record (its sequence number and hash), so a log cut
 * short or emptied (CUT) and one replaced by an older copy or rewritten
 * (CUT if shorter, DIVERGED if written to since) are found. It reads only;
 * together with vmenc_audit_verify_files (which checks every record and
 * link) it proves the log still holds everything up to the sealed head.
 * Returns VMENC_OK for ANCHOR_OK; VMENC_E_NOT_FOUND (MISSING),
 * VMENC_E_AUDIT_TRUNCATED (CUT), VMENC_E_AUDIT_TAMPERED (DIVERGED,
 * BAD_SEAL) or VMENC_E_AUTH (WRONG_KEY), with |out| filled; or fails with
 * VMENC_E_INVALID_ARG, VMENC_E_ABI_VERSION, VMENC_E_IO or VMENC_E_NOMEM
 * (|out| untouched). A missing log file reads as an empty one.
 */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_audit_checkpoint_check(const uint8_t *key, size_t key_len,
                                                                     const char *log_path,
                                                                     const char *checkpoint_path,
                                                                     vmenc_audit_anchor_result *out);

/* ---- the cluster mirror ------------------------------------------------------ */

/* What comparing a host's local log with its copy in the cluster's audit
 * mirror found (vmenc_workspace_audit_cluster_verify; docs/audit.md "The
 * cluster mirror"). |state| reuses vmenc_audit_anchor: OK, MISSING (nothing
 * of this host is mirrored), CUT (the mirror has records the local log no
 * longer has: cut short or emptied), DIVERGED (a local record differs from
 * the mirrored one with its sequence number). */
typedef struct vmenc_audit_cluster_result {
    uint32_t struct_size;
    vmenc_audit_anchor state;
    uint64_t mirror_seq;      /* the mirror's head for this host */
    uint64_t log_last_seq;    /* the local log's last record (0: none) */
    uint64_t diverged_seq;    /* DIVERGED: the first sequence number that differs */
    uint64_t num_hosts;       /* hosts with mirrored records */
    uint64_t num_records;     /* mirrored records, all hosts */
    uint64_t broken_hosts;    /* hosts whose mirrored records do not form one chain */
} vmenc_audit_cluster_result;

#ifdef __cplusplus
}
#endif
#endif /* VMENC_AUDIT_H */
