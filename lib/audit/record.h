/*
 * lib/audit/record.h - private: the audit event/record model, its canonical
 * JSON serialisation and strict parser, and the chain key (keyed BLAKE2b).
 *
 * One record is one line:
 *   {"v":1,"seq":N,"time":"YYYY-MM-DDTHH:MM:SS.mmmZ","principal":S,"op":S,
 *    "target":S,"provider":S,"key_ids":[S,...],"outcome":"success|denied|failed",
 *    "status":I,"reason":S,"kid":"<16 hex>","prev":"<64 hex>","mac":"<64 hex>"}\n
 * The parser accepts exactly the bytes the serialiser writes (one encoding
 * per record), so parse(serialise(r)) == r and serialise(parse(l)) == l.
 * mac = BLAKE2b-256(key, "vmenc-audit-v1 record\n" || body) where body is the
 * line up to (not including) ,"mac":
 *
 * Version 2 (issue 9) adds the chain ID, right after the sequence number:
 *   {"v":2,"seq":N,"chain":"<32 hex>","time":...}
 * a random 128-bit value fixed when a chain is created and carried by every
 * record of it (across rotations), inside the mac, so a record of another
 * chain written under the same key is told apart whatever its number.
 * Version 1 records (no chain ID) are still read and verified; a chain
 * started as version 1 goes on as version 1.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_AUDIT_RECORD_H
#define VMENC_LIB_AUDIT_RECORD_H

#include "core/internal.h"
#include "vmenc/audit.h"

#define AUDIT_FORMAT_VERSION 1u
#define AUDIT_KID_BYTES 8u
#define AUDIT_FORMAT_VERSION_CHAIN 2u
#define AUDIT_CHAIN_BYTES VMENC_AUDIT_CHAIN_ID_BYTES

/* A borrowed string. */
typedef struct audit_strv {
    const char *p;
    size_t len;
} audit_strv;

/* The event part of a record, borrowing its strings. */
typedef struct audit_fields {
    uint64_t time_ms;
    audit_strv principal, operation, target, provider;
    audit_strv key_ids[VMENC_AUDIT_MAX_KEY_IDS];
    size_t num_key_ids;
    vmenc_audit_outcome outcome;
    int32_t status;
    audit_strv reason;
} audit_fields;

/* Owning string storage for a parsed record. */
typedef struct audit_field_buf {
    size_t len;
    char s[VMENC_AUDIT_MAX_FIELD + 1];
} audit_field_buf;

/* A parsed record: owns its strings. About 6 KiB: allocate on the heap. */
typedef struct audit_record {
    uint64_t seq;
    uint64_t time_ms;
    audit_field_buf principal, operation, target, provider;
    audit_field_buf key_ids[VMENC_AUDIT_MAX_KEY_IDS];
    size_t num_key_ids;
    vmenc_audit_outcome outcome;
    int32_t status;
    size_t reason_len;
    char reason[VMENC_AUDIT_MAX_REASON + 1];
    bool has_chain;                  /* version 2 */
    uint8_t chain[AUDIT_CHAIN_BYTES];  /* zero in version 1 */
    uint8_t kid[AUDIT_KID_BYTES];
    uint8_t prev[VMENC_AUDIT_HASH_BYTES];
    uint8_t mac[VMENC_AUDIT_HASH_BYTES];
} audit_record;

/* The first version of vmenc_audit_event ends with |reason|. */
#define AUDIT_EVENT_V1_SIZE (offsetof(vmenc_audit_event, reason) + sizeof(const char *))

/* audit_fields_from_event validates |ev| (see vmenc_audit_event_check) and
 * borrows its strings into |out|; |time_ms| replaces ev->time_ms. */
VMENC_INTERNAL vmenc_status audit_fields_from_event(const vmenc_audit_event *ev, uint64_t time_ms,
                                                    audit_fields *out);
/* audit_fields_of_record borrows |r|'s strings. */
VMENC_INTERNAL void audit_fields_of_record(const audit_record *r, audit_fields *out);

/* audit_write_fields writes "time":...,"reason":"..." (no braces). */
VMENC_INTERNAL void audit_write_fields(vmenc_cbb *cbb, const audit_fields *f);
/* audit_write_body writes {"v":1,"seq":N,<fields>,"kid":"..","prev":"..
 * or, with a |chain| ID, {"v":2,"seq":N,"chain":"..",<fields>,... */
VMENC_INTERNAL void audit_write_body(vmenc_cbb *cbb, uint64_t seq, const uint8_t *chain,
                                     const audit_fields *f,
                                     const uint8_t kid[AUDIT_KID_BYTES],
                                     const uint8_t prev[VMENC_AUDIT_HASH_BYTES]);
/* audit_write_mac_tail writes ,"mac":"<hex>"}\n */
VMENC_INTERNAL void audit_write_mac_tail(vmenc_cbb *cbb, const uint8_t mac[VMENC_AUDIT_HASH_BYTES]);
/* audit_record_serialise writes the whole line of |r| (with its own mac). */
VMENC_INTERNAL void audit_record_serialise(vmenc_cbb *cbb, const audit_record *r);

/* audit_record_parse parses one line (|len| bytes, without the newline).
 * On success fills |out| and sets |*out_body_len| to the length of the part
 * the mac covers; on failure |out| holds partial results. Fails with VMENC_E_PARSE, VMENC_E_TOO_LARGE,
 * VMENC_E_BAD_ENCODING, VMENC_E_BAD_VERSION or VMENC_E_TRAILING_DATA. */
VMENC_INTERNAL vmenc_status audit_record_parse(const uint8_t *line, size_t len, audit_record *out,
                                               size_t *out_body_len);

/* audit_record_equal compares two parsed records field by field. */
VMENC_INTERNAL bool audit_record_equal(const audit_record *a, const audit_record *b);

/* ---- the chain key --------------------------------------------------------- */

typedef struct audit_key {
    vmenc_secret *secret;
    uint8_t kid[AUDIT_KID_BYTES]; /* key check value: not secret */
} audit_key;

/* audit_key_init copies |key| into secure memory and derives its key check
 * value. Fails with VMENC_E_INVALID_ARG (NULL, bad length) or VMENC_E_NOMEM. */
VMENC_INTERNAL vmenc_status audit_key_init(audit_key *k, const uint8_t *key, size_t key_len);
VMENC_INTERNAL void audit_key_cleanup(audit_key *k);
/* audit_mac computes the record hash over |body|. */
VMENC_INTERNAL vmenc_status audit_mac(const audit_key *k, const uint8_t *body, size_t body_len,
                                      uint8_t out[VMENC_AUDIT_HASH_BYTES]);

/* audit_check_line parses |line| (no newline) and checks its key check
 * value and mac under |k|. Returns VMENC_OK, the parse error, VMENC_E_AUTH
 * (kid differs: another key) or VMENC_E_AUDIT_TAMPERED (mac differs). */
VMENC_INTERNAL vmenc_status audit_check_line(const audit_key *k, const uint8_t *line, size_t len,
                                             audit_record *rec);

/* ---- shared between log.c, verify.c and audit.c -------------------------- */

/* audit_log_append_fields appends already validated fields to |log|. */
VMENC_INTERNAL vmenc_status audit_log_append_fields(vmenc_audit_log *log, const audit_fields *f,
                                                    uint64_t *out_seq);

/* One file of a chain: bytes in memory (|mem| != NULL), or an open file
 * read with pread (|fd|), |len| bytes long. Files are read through a bounded
 * buffer, never mapped: a file that shrinks while it is verified reads as
 * cut short, it cannot crash the process, and memory stays bounded. */
typedef struct audit_src {
    const uint8_t *mem;
    int fd;
    uint64_t len;
    uint64_t start; /* where the chain begins in this source (0: its start) */
} audit_src;

/* audit_verify_srcs verifies |num| sources as one chain (see
 * vmenc_audit_verify_files) and fills |out|, unless it returns a resource
 * error (VMENC_E_NOMEM, VMENC_E_IO, VMENC_E_CRYPTO). */
VMENC_INTERNAL vmenc_status audit_verify_srcs(const audit_key *k, uint64_t start_seq,
                                              const uint8_t start_hash[VMENC_AUDIT_HASH_BYTES],
                                              uint64_t expected_last_seq, const audit_src *srcs,
                                              size_t num, vmenc_audit_verify_result *out);

/* The last record of a log file, as the writer and the checkpoint see it. */
typedef struct tail_info {
    uint64_t size;       /* file size */
    uint64_t torn_len;   /* bytes after the last newline (a torn record) */
    bool has_record;     /* a complete last record exists */
    uint64_t seq;        /* its sequence number */
    uint8_t hash[VMENC_AUDIT_HASH_BYTES];
    bool has_chain;      /* its chain ID */
    uint8_t chain[AUDIT_CHAIN_BYTES];
} tail_info;

/* audit_read_tail_at finds and checks (under |k|) the last complete record
 * in the first |size| bytes of |fd| and measures any torn partial line
 * after it. VMENC_E_AUDIT_TAMPERED if the last complete line is not a
 * record, VMENC_E_AUTH if it was made under another key, VMENC_E_IO,
 * VMENC_E_NOMEM. (checkpoint.c) */
VMENC_INTERNAL vmenc_status audit_read_tail_at(int fd, const audit_key *k, uint64_t size, tail_info *out);

/* Time helpers (UTC, proleptic Gregorian, 1970..9999). */
VMENC_INTERNAL void audit_format_time(uint64_t ms, char out[25]);
VMENC_INTERNAL bool audit_parse_time(const char *s, size_t len, uint64_t *out_ms);

#endif /* VMENC_LIB_AUDIT_RECORD_H */
