/*
 * lib/vm/format/migrate_stream.h - the migration stream's pieces below the
 * API: the handover blob, the frame header, and the codec that seals and
 * opens frames (used by lib/vm/migrate.c, the fuzz harness and the tests).
 * Pure: the codec reads through the caller's read function, never a file.
 * Formats: docs/migration.md.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_VM_FORMAT_MIGRATE_STREAM_H
#define VMENC_LIB_VM_FORMAT_MIGRATE_STREAM_H

#include <stdbool.h>

#include "core/internal.h"
#include "keys/aead.h"
#include "vmenc/migration.h"
#include "vmenc/kms.h"
#include "vmenc/policy.h"
#include "vmenc/vm.h"

#define MIG_KEY_BYTES 32u
#define MIG_NONCE_BYTES 12u
#define MIG_TAG_BYTES 16u
#define MIG_HEADER_BYTES 24u
#define MIG_END_PAYLOAD 16u

/* ---- handover blob ------------------------------------------------------------
 *   "VMENCMH1" u8 version (1) u8 flags u8 mode u8 alg (1 = AES-256-GCM)
 *   id[16] key[32] nonce_base[12]
 *   6 x (u8 length, bytes): source host, VM name, VM UUID, storage policy,
 *   key provider, KEK ID
 * flags: bit 0 encrypted stream, bit 1 encrypted VM, bit 2 powered on; other
 * bits, another alg, mode > 2, trailing bytes: VMENC_E_PARSE. An encrypted
 * VM must name its key provider and KEK and have an encrypted stream; a
 * plain VM names neither. */
#define MIG_HO_ENCRYPTED (1u << 0)
#define MIG_HO_VM_ENCRYPTED (1u << 1)
#define MIG_HO_POWERED_ON (1u << 2)

typedef struct mig_handover {
    uint8_t flags;
    vmenc_migration_encryption mode;
    uint8_t id[VMENC_MIGRATION_ID_BYTES];
    uint8_t *key;                               /* secure memory, MIG_KEY_BYTES */
    uint8_t nonce_base[MIG_NONCE_BYTES];
    char source_host[VMENC_POLICY_NAME_MAX + 1];
    char vm_name[VMENC_VM_NAME_MAX + 1];
    char vm_uuid[VMENC_VM_UUID_LEN + 1];
    char storage_policy[VMENC_POLICY_NAME_MAX + 1];
    char key_provider[VMENC_PROVIDER_ALIAS_MAX + 1];
    char kek_id[VMENC_KEY_ID_MAX + 1];
} mig_handover;

VMENC_INTERNAL vmenc_status mig_handover_parse(const uint8_t *data, size_t len, mig_handover *out);
/* mig_handover_build writes the blob into |out| (|cap| bytes). */
VMENC_INTERNAL vmenc_status mig_handover_build(const mig_handover *h, uint8_t *out, size_t cap, size_t *out_len);
/* mig_handover_cleanup wipes and frees the key. */
VMENC_INTERNAL void mig_handover_cleanup(mig_handover *h);

/* ---- frames ----------------------------------------------------------------------
 *   header: u8 type, u8 kind, u16 reserved (0), u32 length, u64 sequence,
 *           u64 address (big-endian), then length payload bytes and, in an
 *           encrypted stream, a 16-byte tag.
 *   type 1 start (seq 0, kind 0, length 0, address 0)
 *   type 2 data  (kind 1..3, length 1..VMENC_MIGRATION_CHUNK_MAX)
 *   type 3 end   (kind 0, length 16: u64 data chunks, u64 payload bytes; address 0)
 * Nonce: nonce_base with its last 8 bytes XOR the sequence number. AAD:
 * "VMENCMS1" || migration ID || header. */
#define MIG_FRAME_START 1u
#define MIG_FRAME_DATA 2u
#define MIG_FRAME_END 3u

typedef struct mig_frame_header {
    uint8_t type, kind;
    uint32_t len;
    uint64_t seq, address;
} mig_frame_header;

/* mig_frame_header_parse checks a header against the rules above
 * (VMENC_E_PARSE, VMENC_E_TOO_LARGE). */
VMENC_INTERNAL vmenc_status mig_frame_header_parse(const uint8_t in[MIG_HEADER_BYTES], mig_frame_header *out);
VMENC_INTERNAL void mig_frame_header_build(const mig_frame_header *h, uint8_t out[MIG_HEADER_BYTES]);

/* One direction of a stream: the keyed cipher (lib/keys/aead.c: its key
 * schedule in secure memory where the VAES engine runs), the sequence
 * counter and a frame buffer (header + largest payload + tag). */
typedef struct mig_codec {
    bool encrypted;
    bool sealing;
    uint8_t id[VMENC_MIGRATION_ID_BYTES];
    uint8_t nonce_base[MIG_NONCE_BYTES];
    vmenc_aead *aead;
    uint64_t seq;          /* next to send / next expected */
    uint64_t num_chunks, num_bytes;
    bool ended;
    uint8_t *buf;
} mig_codec;

/* mig_codec_init keys a codec (|key| MIG_KEY_BYTES; used only when
 * |encrypted|) for sealing or opening. */
VMENC_INTERNAL vmenc_status mig_codec_init(mig_codec *c, bool encrypted, bool sealing, const uint8_t *key,
                                           const uint8_t id[VMENC_MIGRATION_ID_BYTES],
                                           const uint8_t nonce_base[MIG_NONCE_BYTES]);
VMENC_INTERNAL void mig_codec_cleanup(mig_codec *c);
/* mig_codec_seal frames the next frame into c->buf: *out_len bytes to write. */
VMENC_INTERNAL vmenc_status mig_codec_seal(mig_codec *c, uint8_t type, uint8_t kind, uint64_t address,
                                           const uint8_t *data, size_t len, size_t *out_len);
/* mig_codec_next reads and opens the next frame through |read_fn|; on
 * success |out| is the frame (payload at c->buf + MIG_HEADER_BYTES). On
 * failure |*why| says what was wrong. */
VMENC_INTERNAL vmenc_status mig_codec_next(mig_codec *c, vmenc_migration_read_fn read_fn, void *io_ctx,
                                           mig_frame_header *out, vmenc_migration_failure *why);

/* mig_ready_token: keyed BLAKE2b-256 of the migration ID under the key. */
VMENC_INTERNAL vmenc_status mig_ready_token(const uint8_t *key, const uint8_t id[VMENC_MIGRATION_ID_BYTES],
                                            uint8_t out[VMENC_MIGRATION_READY_BYTES]);

#endif /* VMENC_LIB_VM_FORMAT_MIGRATE_STREAM_H */
