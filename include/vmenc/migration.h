/*
 * vmenc/migration.h - encrypted VM migration streams (encrypted vMotion):
 * a sender and a receiver for a VM's memory pages, device state and disk
 * blocks over a transport the caller owns (a file descriptor or callbacks).
 *
 * Protocol (docs/migration.md):
 *  1. Source: vmenc_migration_sender_new authorizes the migration
 *     (VMENC_OP_MIGRATE_VM, destination = |dest_host|), decides the mode and
 *     makes a one-time 256-bit key, a 96-bit nonce base and a 128-bit
 *     migration ID. vmenc_migration_sender_get_handover gives them, with the
 *     VM's identity and key provider, as a handover blob.
 *  2. The management plane carries the blob to the destination over its own
 *     authenticated, confidential channel (it holds the one-time key).
 *  3. Destination: vmenc_migration_receiver_new checks - before any byte
 *     streams - that this host may and can run the VM: policy
 *     VMENC_OP_MIGRATE_VM on this host (switching it to encryption mode when
 *     the principal may), the VM's KEK fetchable from the same key-provider
 *     cluster, and the mode acceptable. vmenc_migration_receiver_get_ready
 *     gives a ready token (a MAC under the one-time key) for the source.
 *  4. Source: vmenc_migration_sender_begin checks the ready token and only
 *     then writes the stream header; vmenc_migration_send frames each chunk;
 *     vmenc_migration_sender_finish writes the authenticated end of stream.
 *  5. Destination: vmenc_migration_receive returns chunks in order, then the
 *     end of stream.
 * Each frame is sealed with AES-256-GCM; the nonce is the nonce base XOR the
 * frame's sequence number and the AAD carries the migration ID and the
 * frame header (type, kind, length, sequence, address). The receiver fails
 * the migration at the first reordered, replayed, duplicated, dropped,
 * tampered or foreign frame (VMENC_E_AUTH, with the reason in
 * vmenc_migration_receiver_info.failure) and at a stream that ends without
 * its end frame (VMENC_E_TRUNCATED).
 *
 * Modes (vmenc_migration_encryption, from the VM's storage policy; a VM
 * without one is opportunistic, as vSphere's default): disabled - plain;
 * opportunistic - encrypted if both hosts can; required - encrypted, or the
 * migration fails (VMENC_E_UNSUPPORTED). An encrypted VM always migrates
 * encrypted, whatever its policy says. A plain stream carries the same
 * framing with no tag: ordering is checked, nothing is authenticated.
 *
 * Start, end and failure are audited on both sides ("migration.send",
 * "migration.receive").
 *
 * Thread safety: one sender or receiver is used by one thread at a time;
 * different ones are independent.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_MIGRATION_H
#define VMENC_MIGRATION_H

#include "vmenc/common.h"
#include "vmenc/vm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmenc_migration_sender vmenc_migration_sender;
typedef struct vmenc_migration_receiver vmenc_migration_receiver;

/* Largest payload of one chunk (vmenc_migration_send splits nothing). */
#define VMENC_MIGRATION_CHUNK_MAX ((size_t)1 << 20)
/* Capacity that always holds a handover blob. */
#define VMENC_MIGRATION_HANDOVER_MAX 1024u
/* Size of the receiver's ready token. */
#define VMENC_MIGRATION_READY_BYTES 32u
#define VMENC_MIGRATION_ID_BYTES 16u

/* What a chunk holds. */
typedef enum vmenc_migration_kind {
    VMENC_MIGRATION_MEMORY = 1,       /* guest memory pages; address = guest physical address */
    VMENC_MIGRATION_DEVICE_STATE = 2, /* device state; address = the caller's device index */
    VMENC_MIGRATION_DISK = 3          /* disk blocks (storage migration); address = byte offset */
} vmenc_migration_kind;

/* Transport callbacks. write_fn writes all |len| bytes (or fails);
 * read_fn reads up to |cap| bytes into |buf| and sets |*out_len| (0 = end
 * of stream). Both return VMENC_OK or an error status that is passed on. */
typedef vmenc_status (*vmenc_migration_write_fn)(void *io_ctx, const uint8_t *data, size_t len);
typedef vmenc_status (*vmenc_migration_read_fn)(void *io_ctx, uint8_t *buf, size_t cap, size_t *out_len);

/* Sender flags. */
#define VMENC_MIGRATION_POWERED_ON (1u << 0)      /* hot migration (Resource.HotMigrate) */
#define VMENC_MIGRATION_PEER_NO_ENCRYPTION (1u << 1) /* the destination cannot do encrypted migration */

/* vmenc_migration_sender_options: set struct_size.
 * - principal: who migrates; dest_host: the destination host's name in the
 *   policy; pool, datastore: optional placement the policy checks.
 * - flags: VMENC_MIGRATION_POWERED_ON, VMENC_MIGRATION_PEER_NO_ENCRYPTION.
 * - transport: write_fn + io_ctx, or (write_fn NULL) the descriptor fd. */
typedef struct vmenc_migration_sender_options {
    uint32_t struct_size;
    const char *principal;
    const char *dest_host;
    const char *pool;
    const char *datastore;
    uint32_t flags;
    int fd;
    vmenc_migration_write_fn write_fn;
    void *io_ctx;
} vmenc_migration_sender_options;

/* vmenc_migration_sender_new starts migrating |vm| (audited: start,
 * denial or failure). Fails with VMENC_E_INVALID_ARG, VMENC_E_ABI_VERSION,
 * VMENC_E_DENIED / VMENC_E_HOST_MODE (policy), VMENC_E_VM_LOCKED (an
 * encrypted VM whose keys are missing), VMENC_E_UNSUPPORTED (encryption is
 * required - by the policy or because the VM is encrypted - and the
 * destination cannot do it), VMENC_E_NOMEM. The sender keeps |vm| alive. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_migration_sender_new(vmenc_vm *vm,
                                                                   const vmenc_migration_sender_options *opts,
                                                                   vmenc_migration_sender **out);

/* vmenc_migration_sender_get_handover writes the handover blob (at most
 * VMENC_MIGRATION_HANDOVER_MAX bytes) to |out| and its length to
 * |*out_len|. It contains the one-time key: send it only over the
 * management channel and wipe it after. VMENC_E_BUFFER_TOO_SMALL. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_migration_sender_get_handover(vmenc_migration_sender *s,
                                                                            uint8_t *out, size_t cap,
                                                                            size_t *out_len);

/* vmenc_migration_sender_begin checks the receiver's ready token (constant
 * time; VMENC_E_AUTH if it is not this migration's) and writes the stream
 * header. No data may be sent before (VMENC_E_BAD_STATE). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_migration_sender_begin(vmenc_migration_sender *s,
                                                                     const uint8_t *ready, size_t ready_len);

/* vmenc_migration_send seals and writes one chunk of 1..VMENC_MIGRATION_
 * CHUNK_MAX bytes. A transport failure fails the migration (audited); the
 * sender then accepts only _free. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_migration_send(vmenc_migration_sender *s, vmenc_migration_kind kind,
                                                             uint64_t address, const uint8_t *data, size_t len);

/* vmenc_migration_sender_finish writes the authenticated end of stream
 * (chunk and byte counts) and audits the end of the migration. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_migration_sender_finish(vmenc_migration_sender *s);

/* vmenc_migration_sender_free wipes the key; a migration neither finished
 * nor failed is audited as abandoned. NULL allowed. */
VMENC_API void vmenc_migration_sender_free(vmenc_migration_sender *s);

/* Why a receiver failed the stream. */
typedef enum vmenc_migration_failure {
    VMENC_MIGRATION_FAIL_NONE = 0,
    VMENC_MIGRATION_FAIL_TAMPERED = 1,  /* a frame did not authenticate (edited, foreign, wrong key) */
    VMENC_MIGRATION_FAIL_REPLAYED = 2,  /* an earlier sequence number again (replay, duplicate) */
    VMENC_MIGRATION_FAIL_GAP = 3,       /* a later sequence number (a frame dropped or reordered) */
    VMENC_MIGRATION_FAIL_TRUNCATED = 4, /* the stream ended before its end frame */
    VMENC_MIGRATION_FAIL_MALFORMED = 5, /* a frame that is not one (bad type, length, header) */
    VMENC_MIGRATION_FAIL_COUNTS = 6,    /* the end frame's counts disagree with what arrived */
    VMENC_MIGRATION_FAIL_TRANSPORT = 7  /* the read callback or descriptor failed */
} vmenc_migration_failure;

/* Receiver flags. */
#define VMENC_MIGRATION_NO_ENCRYPTION (1u << 0) /* this host cannot do encrypted migration */

/* vmenc_migration_receiver_options: set struct_size.
 * - principal: who migrates (policy VMENC_OP_MIGRATE_VM on this host).
 * - handover / handover_len: the sender's blob (copied).
 * - flags: VMENC_MIGRATION_NO_ENCRYPTION.
 * - transport: read_fn + io_ctx, or (read_fn NULL) the descriptor fd. */
typedef struct vmenc_migration_receiver_options {
    uint32_t struct_size;
    const char *principal;
    const uint8_t *handover;
    size_t handover_len;
    uint32_t flags;
    int fd;
    vmenc_migration_read_fn read_fn;
    void *io_ctx;
} vmenc_migration_receiver_options;

/* vmenc_migration_receiver_new checks that |host| can take the VM before
 * any data streams (audited: start, denial or failure): a well-formed
 * handover (VMENC_CAT_PARSE statuses), the policy (VMENC_E_DENIED,
 * VMENC_E_HOST_MODE), the VM's KEK fetched from its key provider here
 * (key-manager failures, VMENC_E_NO_SUCH_PROVIDER), the mode (a plain
 * stream for an encrypted VM or against a policy that requires encryption:
 * VMENC_E_DENIED; encryption this host cannot do: VMENC_E_UNSUPPORTED). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_migration_receiver_new(vmenc_host *host,
                                                                     const vmenc_migration_receiver_options *opts,
                                                                     vmenc_migration_receiver **out);

/* vmenc_migration_receiver_get_ready writes the ready token
 * (VMENC_MIGRATION_READY_BYTES) for the sender. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_migration_receiver_get_ready(vmenc_migration_receiver *r,
                                                                           uint8_t *out, size_t cap);

/* One received chunk; |data| lives until the next receive call or _free. */
typedef struct vmenc_migration_chunk {
    uint32_t struct_size;
    int end;                    /* 1: end of stream (no data; the migration completed) */
    vmenc_migration_kind kind;
    uint64_t address;
    const uint8_t *data;
    size_t len;
} vmenc_migration_chunk;

/* vmenc_migration_receive reads the next frame and fills |out|. On the end
 * frame (authenticated, counts checked) out->end is 1 and the migration is
 * audited as completed; further calls are VMENC_E_BAD_STATE. Failures end
 * the migration (audited): VMENC_E_AUTH (tampered, foreign, replayed,
 * duplicated, reordered, dropped), VMENC_E_TRUNCATED, VMENC_E_PARSE /
 * VMENC_E_TOO_LARGE (malformed), the transport's status. Nothing
 * unauthenticated is ever returned from an encrypted stream. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_migration_receive(vmenc_migration_receiver *r,
                                                                vmenc_migration_chunk *out);

/* vmenc_migration_info: set struct_size; filled by the _get_info calls. */
typedef struct vmenc_migration_info {
    uint32_t struct_size;
    uint8_t migration_id[VMENC_MIGRATION_ID_BYTES];
    int encrypted;                          /* the stream is encrypted */
    int vm_encrypted;
    vmenc_migration_encryption mode;        /* the VM's policy mode */
    uint64_t num_chunks, num_bytes;         /* data chunks and payload bytes so far */
    int finished;                           /* end of stream written / received */
    vmenc_migration_failure failure;        /* receiver: why it failed, else NONE */
} vmenc_migration_info;

VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_migration_sender_get_info(const vmenc_migration_sender *s,
                                                                        vmenc_migration_info *out);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_migration_receiver_get_info(const vmenc_migration_receiver *r,
                                                                          vmenc_migration_info *out);

/* vmenc_migration_receiver_free wipes the key; a stream not completed is
 * audited as failed. NULL allowed. */
VMENC_API void vmenc_migration_receiver_free(vmenc_migration_receiver *r);

#ifdef __cplusplus
}
#endif
#endif /* VMENC_MIGRATION_H */
