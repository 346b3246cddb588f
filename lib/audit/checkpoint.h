/*
 * lib/audit/checkpoint.h - private: the sealed checkpoint of an audit
 * chain's head (docs/audit.md "The sealed checkpoint"): its binary format,
 * sealing under the chain key, and the forward-only advance the log runs
 * under its file lock.
 *
 * The file is exactly AUDIT_CHECKPOINT_BYTES bytes, big-endian:
 *   magic "VMENCACP" | version u8 (1) | flags u8 (bit 0: chain ID present)
 *   | seq u64 | hash[32] | chain[16] (zeros without one) | offset u64
 *   | time_ms u64 | kid[8] | mac[32]
 * mac = BLAKE2b-256(chain key, "vmenc-audit-v1 checkpoint\n" || the bytes
 * before it). One encoding per checkpoint: the parser accepts only what
 * the serialiser writes (the fuzz harness checks the round trip).
 *
 * Safety rule: a checkpoint is only ever replaced by one for a later head
 * of the same chain, checked under the log's file lock; anything else
 * leaves the old one in place as evidence.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_AUDIT_CHECKPOINT_H
#define VMENC_LIB_AUDIT_CHECKPOINT_H

#include "audit/record.h"

#define AUDIT_CHECKPOINT_MAGIC "VMENCACP"
#define AUDIT_CHECKPOINT_VERSION 1u
#define AUDIT_CHECKPOINT_BODY_BYTES (8u + 1u + 1u + 8u + 32u + 16u + 8u + 8u + 8u)
#define AUDIT_CHECKPOINT_BYTES (AUDIT_CHECKPOINT_BODY_BYTES + 32u)
/* Larger files are not read (a checkpoint is tiny; this bounds the read). */
#define AUDIT_CHECKPOINT_MAX_FILE 4096u

typedef struct audit_checkpoint {
    uint64_t seq;                          /* the sealed head's sequence number (0: no record yet) */
    uint8_t hash[VMENC_AUDIT_HASH_BYTES];  /* its mac */
    bool has_chain;
    uint8_t chain[AUDIT_CHAIN_BYTES];      /* zeros if !has_chain */
    uint64_t offset;                       /* log bytes up to and including its newline */
    uint64_t time_ms;                      /* when it was sealed (writer's clock) */
    uint8_t kid[AUDIT_KID_BYTES];          /* the chain key's check value */
    uint8_t mac[VMENC_AUDIT_HASH_BYTES];
} audit_checkpoint;

/* audit_checkpoint_serialise writes the AUDIT_CHECKPOINT_BYTES of |cp| as
 * they stand (kid and mac included). */
VMENC_INTERNAL void audit_checkpoint_serialise(vmenc_cbb *cbb, const audit_checkpoint *cp);

/* audit_checkpoint_parse reads one checkpoint through the bounded cursor,
 * structure only (no key). Fails with VMENC_E_TRUNCATED, VMENC_E_BAD_MAGIC,
 * VMENC_E_BAD_VERSION, VMENC_E_PARSE (unknown flag bits, a chain ID without
 * its flag) or VMENC_E_TRAILING_DATA; |out| is then unspecified. */
VMENC_INTERNAL vmenc_status audit_checkpoint_parse(const uint8_t *data, size_t len, audit_checkpoint *out);

/* audit_checkpoint_seal sets |cp|'s kid and mac under |k|. */
VMENC_INTERNAL vmenc_status audit_checkpoint_seal(const audit_key *k, audit_checkpoint *cp);

/* audit_checkpoint_open parses |data| and checks it under |k|: VMENC_E_AUTH
 * if its kid is another key's, VMENC_E_AUDIT_TAMPERED if its mac does not
 * verify, or a parse error. */
VMENC_INTERNAL vmenc_status audit_checkpoint_open(const audit_key *k, const uint8_t *data, size_t len,
                                                  audit_checkpoint *out);

/* audit_checkpoint_load reads and opens the checkpoint at |path|:
 * VMENC_E_NOT_FOUND if there is none, VMENC_E_AUDIT_TAMPERED for one that
 * does not parse or verify (or is too large), VMENC_E_AUTH, VMENC_E_IO. */
VMENC_INTERNAL vmenc_status audit_checkpoint_load(const audit_key *k, const char *path, audit_checkpoint *out);

/*
 * audit_checkpoint_advance seals the head of the log open as |log_fd| into
 * |path|. The caller holds the log's file lock (and its mutex), so the head
 * cannot move meanwhile and no other writer seals at the same time. If a
 * checkpoint exists, the log must continue it: at least |offset| bytes,
 * the records after |offset| chaining from its (seq, hash) - else
 * VMENC_E_AUDIT_TRUNCATED / VMENC_E_AUDIT_TAMPERED and nothing is written.
 * A missing one is created only with |init| (else VMENC_E_NOT_FOUND). With
 * |sync|, the log is synced before and the checkpoint durably replaced.
 */
VMENC_INTERNAL vmenc_status audit_checkpoint_advance(int log_fd, const audit_key *k, const char *path, bool init,
                                                     bool sync);

/*
 * audit_log_adopt_checkpoint writes the first checkpoint of a log that has
 * none (a workspace created before checkpoints existed): under the log's
 * file lock it verifies the whole file as one chain from its first record
 * (|out| filled as vmenc_audit_verify_files does) and, only if that passes,
 * seals the head. History up to that head is then trusted on the chain
 * alone - records cut off the end before adoption cannot be found.
 * VMENC_E_EXISTS if a checkpoint file is there (valid or not: it is never
 * replaced), the verifier's statuses if the chain is not intact,
 * VMENC_E_INTERRUPTED for a torn last line, VMENC_E_BAD_STATE without a
 * checkpoint path, VMENC_E_LOCKED, VMENC_E_IO, VMENC_E_NOMEM.
 */
VMENC_INTERNAL vmenc_status audit_log_adopt_checkpoint(vmenc_audit_log *log, vmenc_audit_verify_result *out);

#endif /* VMENC_LIB_AUDIT_CHECKPOINT_H */
