/*
 * lib/vm/format/migrate_stream.c - the migration stream's formats: the
 * handover blob and the frame codec (layouts in migrate_stream.h and
 * docs/migration.md). Everything here parses bytes from the network or the
 * management plane, so it goes through the bounded cursor and is fuzzed
 * (fuzz/migration_stream_fuzz.c).
 *
 * The receiver authenticates a frame before it looks at what the sequence
 * number means: a frame that does not authenticate is "tampered"; one that
 * does but carries an old number is a replay or duplicate, a newer one a
 * gap (a drop, or a reordering). Every frame's nonce is unique because the
 * key is used for one migration and the sequence number never repeats.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "vm/format/descriptor.h"
#include "vm/format/migrate_stream.h"

#define HO_MAGIC "VMENCMH1"
#define HO_VERSION 1u
#define HO_ALG_AES256GCM 1u
#define AAD_LABEL "VMENCMS1"
#define AAD_BYTES (8u + VMENC_MIGRATION_ID_BYTES + MIG_HEADER_BYTES)
#define READY_LABEL "vmenc-migration-ready-v1"
#define FRAME_CAP (MIG_HEADER_BYTES + VMENC_MIGRATION_CHUNK_MAX + MIG_TAG_BYTES)

/* ---- handover ---------------------------------------------------------------------- */

static bool get_string(vmenc_cbs *cbs, char *out, size_t cap) {
    vmenc_cbs s;
    if (!vmenc_cbs_get_u8_length_prefixed(cbs, &s) || vmenc_cbs_len(&s) >= cap)
        return false;
    for (size_t i = 0; i < vmenc_cbs_len(&s); i++)
        if (vmenc_cbs_data(&s)[i] < 0x20 || vmenc_cbs_data(&s)[i] == 0x7f)
            return false; /* names, never control bytes (they reach audit events) */
    memcpy(out, vmenc_cbs_data(&s), vmenc_cbs_len(&s));
    out[vmenc_cbs_len(&s)] = '\0';
    return true;
}

static vmenc_status handover_semantics(const mig_handover *h) {
    bool vm_enc = h->flags & MIG_HO_VM_ENCRYPTED, enc = h->flags & MIG_HO_ENCRYPTED;
    VMENC_ENSURE(h->source_host[0] != '\0' && h->vm_name[0] != '\0', VMENC_E_PARSE);
    VMENC_ENSURE(vm_uuid_check(h->vm_uuid) == VMENC_OK, VMENC_E_PARSE);
    VMENC_ENSURE(vm_enc == (h->key_provider[0] != '\0') && vm_enc == (h->kek_id[0] != '\0'), VMENC_E_PARSE);
    VMENC_ENSURE(!vm_enc || enc, VMENC_E_PARSE); /* an encrypted VM always migrates encrypted */
    return VMENC_OK;
}

static vmenc_status handover_fields(vmenc_cbs *cbs, mig_handover *h) {
    vmenc_cbs magic;
    uint8_t version, flags, mode, alg;
    VMENC_ENSURE(vmenc_cbs_get_bytes(cbs, &magic, 8) && memcmp(vmenc_cbs_data(&magic), HO_MAGIC, 8) == 0,
                 VMENC_E_BAD_MAGIC);
    VMENC_ENSURE(vmenc_cbs_get_u8(cbs, &version), VMENC_E_TRUNCATED);
    VMENC_ENSURE(version == HO_VERSION, VMENC_E_BAD_VERSION);
    VMENC_ENSURE(vmenc_cbs_get_u8(cbs, &flags) && vmenc_cbs_get_u8(cbs, &mode) && vmenc_cbs_get_u8(cbs, &alg),
                 VMENC_E_TRUNCATED);
    VMENC_ENSURE((flags & ~(MIG_HO_ENCRYPTED | MIG_HO_VM_ENCRYPTED | MIG_HO_POWERED_ON)) == 0 && mode <= 2,
                 VMENC_E_PARSE);
    VMENC_ENSURE(alg == HO_ALG_AES256GCM, VMENC_E_BAD_ALGORITHM);
    h->flags = flags;
    h->mode = (vmenc_migration_encryption)mode;
    VMENC_ENSURE(vmenc_cbs_copy_bytes(cbs, h->id, sizeof(h->id)) &&
                     vmenc_cbs_copy_bytes(cbs, h->key, MIG_KEY_BYTES) &&
                     vmenc_cbs_copy_bytes(cbs, h->nonce_base, sizeof(h->nonce_base)),
                 VMENC_E_TRUNCATED);
    VMENC_ENSURE(get_string(cbs, h->source_host, sizeof(h->source_host)) &&
                     get_string(cbs, h->vm_name, sizeof(h->vm_name)) &&
                     get_string(cbs, h->vm_uuid, sizeof(h->vm_uuid)) &&
                     get_string(cbs, h->storage_policy, sizeof(h->storage_policy)) &&
                     get_string(cbs, h->key_provider, sizeof(h->key_provider)) &&
                     get_string(cbs, h->kek_id, sizeof(h->kek_id)),
                 VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_len(cbs) == 0, VMENC_E_TRAILING_DATA);
    return handover_semantics(h);
}

vmenc_status mig_handover_parse(const uint8_t *data, size_t len, mig_handover *out) {
    VMENC_ENSURE(out != NULL && (data != NULL || len == 0), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(len <= VMENC_MIGRATION_HANDOVER_MAX, VMENC_E_TOO_LARGE);
    mig_handover h;
    memset(&h, 0, sizeof(h));
    h.key = vmenc_secure_alloc(MIG_KEY_BYTES);
    VMENC_ENSURE(h.key != NULL, VMENC_E_NOMEM);
    vmenc_cbs cbs;
    vmenc_cbs_init(&cbs, data, len);
    vmenc_status s = handover_fields(&cbs, &h);
    if (s != VMENC_OK) {
        mig_handover_cleanup(&h);
        return s;
    }
    *out = h;
    return VMENC_OK;
}

static void add_string(vmenc_cbb *cbb, const char *s) {
    size_t mark = vmenc_cbb_begin_prefix(cbb, 1);
    vmenc_cbb_add_bytes(cbb, (const uint8_t *)s, strlen(s));
    vmenc_cbb_end_prefix(cbb, mark, 1);
}

vmenc_status mig_handover_build(const mig_handover *h, uint8_t *out, size_t cap, size_t *out_len) {
    VMENC_ENSURE(h != NULL && h->key != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(handover_semantics(h));
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, out, cap);
    vmenc_cbb_add_bytes(&cbb, (const uint8_t *)HO_MAGIC, 8);
    vmenc_cbb_add_u8(&cbb, HO_VERSION);
    vmenc_cbb_add_u8(&cbb, h->flags);
    vmenc_cbb_add_u8(&cbb, (uint8_t)h->mode);
    vmenc_cbb_add_u8(&cbb, HO_ALG_AES256GCM);
    vmenc_cbb_add_bytes(&cbb, h->id, sizeof(h->id));
    vmenc_cbb_add_bytes(&cbb, h->key, MIG_KEY_BYTES);
    vmenc_cbb_add_bytes(&cbb, h->nonce_base, sizeof(h->nonce_base));
    add_string(&cbb, h->source_host);
    add_string(&cbb, h->vm_name);
    add_string(&cbb, h->vm_uuid);
    add_string(&cbb, h->storage_policy);
    add_string(&cbb, h->key_provider);
    add_string(&cbb, h->kek_id);
    vmenc_status s = vmenc_cbb_status(&cbb);
    if (s != VMENC_OK) {
        sodium_memzero(out, cap);
        return s == VMENC_E_TOO_LARGE ? VMENC_E_BUFFER_TOO_SMALL : s;
    }
    *out_len = vmenc_cbb_len(&cbb);
    return VMENC_OK;
}

void mig_handover_cleanup(mig_handover *h) {
    if (h == NULL)
        return;
    vmenc_secure_free(h->key);
    sodium_memzero(h, sizeof(*h));
}

/* ---- frame header ------------------------------------------------------------------- */

vmenc_status mig_frame_header_parse(const uint8_t in[MIG_HEADER_BYTES], mig_frame_header *out) {
    vmenc_cbs cbs;
    uint16_t reserved;
    mig_frame_header h;
    vmenc_cbs_init(&cbs, in, MIG_HEADER_BYTES);
    VMENC_ENSURE(vmenc_cbs_get_u8(&cbs, &h.type) && vmenc_cbs_get_u8(&cbs, &h.kind) &&
                     vmenc_cbs_get_u16(&cbs, &reserved) && vmenc_cbs_get_u32(&cbs, &h.len) &&
                     vmenc_cbs_get_u64(&cbs, &h.seq) && vmenc_cbs_get_u64(&cbs, &h.address),
                 VMENC_E_TRUNCATED);
    VMENC_ENSURE(reserved == 0, VMENC_E_PARSE);
    switch (h.type) {
    case MIG_FRAME_START:
        VMENC_ENSURE(h.kind == 0 && h.len == 0 && h.address == 0 && h.seq == 0, VMENC_E_PARSE);
        break;
    case MIG_FRAME_DATA:
        VMENC_ENSURE(h.kind >= VMENC_MIGRATION_MEMORY && h.kind <= VMENC_MIGRATION_DISK && h.len > 0,
                     VMENC_E_PARSE);
        VMENC_ENSURE(h.len <= VMENC_MIGRATION_CHUNK_MAX, VMENC_E_TOO_LARGE);
        break;
    case MIG_FRAME_END:
        VMENC_ENSURE(h.kind == 0 && h.len == MIG_END_PAYLOAD && h.address == 0, VMENC_E_PARSE);
        break;
    default:
        return VMENC_E_PARSE;
    }
    *out = h;
    return VMENC_OK;
}

void mig_frame_header_build(const mig_frame_header *h, uint8_t out[MIG_HEADER_BYTES]) {
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, out, MIG_HEADER_BYTES);
    vmenc_cbb_add_u8(&cbb, h->type);
    vmenc_cbb_add_u8(&cbb, h->kind);
    vmenc_cbb_add_u16(&cbb, 0);
    vmenc_cbb_add_u32(&cbb, h->len);
    vmenc_cbb_add_u64(&cbb, h->seq);
    vmenc_cbb_add_u64(&cbb, h->address);
}

/* ---- codec --------------------------------------------------------------------------- */

vmenc_status mig_codec_init(mig_codec *c, bool encrypted, bool sealing, const uint8_t *key,
                            const uint8_t id[VMENC_MIGRATION_ID_BYTES], const uint8_t nonce_base[MIG_NONCE_BYTES]) {
    memset(c, 0, sizeof(*c));
    c->encrypted = encrypted;
    c->sealing = sealing;
    memcpy(c->id, id, sizeof(c->id));
    memcpy(c->nonce_base, nonce_base, sizeof(c->nonce_base));
    c->buf = malloc(FRAME_CAP); /* frames: ciphertext, or the caller's own plaintext */
    VMENC_ENSURE(c->buf != NULL, VMENC_E_NOMEM);
    if (!encrypted)
        return VMENC_OK;
    return vmenc_aead_new(key, &c->aead);
}

void mig_codec_cleanup(mig_codec *c) {
    if (c == NULL)
        return;
    vmenc_aead_free(c->aead); /* wipes the key schedule */
    if (c->buf != NULL) {
        sodium_memzero(c->buf, FRAME_CAP);
        free(c->buf);
    }
    memset(c, 0, sizeof(*c));
}

static void frame_nonce(const mig_codec *c, uint64_t seq, uint8_t out[MIG_NONCE_BYTES]) {
    memcpy(out, c->nonce_base, MIG_NONCE_BYTES);
    for (unsigned i = 0; i < 8; i++)
        out[MIG_NONCE_BYTES - 1 - i] ^= (uint8_t)(seq >> (8 * i));
}

static void frame_aad(const mig_codec *c, const uint8_t *header, uint8_t out[AAD_BYTES]) {
    memcpy(out, AAD_LABEL, 8);
    memcpy(out + 8, c->id, VMENC_MIGRATION_ID_BYTES);
    memcpy(out + 8 + VMENC_MIGRATION_ID_BYTES, header, MIG_HEADER_BYTES);
}

vmenc_status mig_codec_seal(mig_codec *c, uint8_t type, uint8_t kind, uint64_t address, const uint8_t *data,
                            size_t len, size_t *out_len) {
    VMENC_ENSURE(c->sealing && !c->ended && len <= VMENC_MIGRATION_CHUNK_MAX, VMENC_E_BAD_STATE);
    mig_frame_header h = {.type = type, .kind = kind, .len = (uint32_t)len, .seq = c->seq, .address = address};
    mig_frame_header_build(&h, c->buf);
    uint8_t *body = c->buf + MIG_HEADER_BYTES;
    size_t total = MIG_HEADER_BYTES + len;
    if (!c->encrypted) {
        if (len > 0)
            memcpy(body, data, len);
    } else {
        uint8_t nonce[MIG_NONCE_BYTES], aad[AAD_BYTES];
        frame_nonce(c, c->seq, nonce);
        frame_aad(c, c->buf, aad);
        /* sealed straight from the caller's pages into the frame buffer */
        if (vmenc_aead_seal(c->aead, nonce, aad, sizeof(aad), data, len, body, body + len) != VMENC_OK)
            return VMENC_E_CRYPTO;
        total += MIG_TAG_BYTES;
    }
    c->seq++;
    if (type == MIG_FRAME_DATA) {
        c->num_chunks++;
        c->num_bytes += len;
    }
    c->ended = type == MIG_FRAME_END;
    *out_len = total;
    return VMENC_OK;
}

/* read_exact fills |len| bytes; a clean end before the first byte sets
 * *eof, anywhere else it is a truncation. */
static vmenc_status read_exact(vmenc_migration_read_fn fn, void *ctx, uint8_t *buf, size_t len, bool *eof) {
    size_t done = 0;
    *eof = false;
    while (done < len) {
        size_t n = 0;
        VMENC_GUARD(fn(ctx, buf + done, len - done, &n));
        if (n == 0) {
            *eof = done == 0;
            return VMENC_E_TRUNCATED;
        }
        VMENC_ENSURE(n <= len - done, VMENC_E_INTERNAL);
        done += n;
    }
    return VMENC_OK;
}

static vmenc_status open_body(mig_codec *c, const mig_frame_header *h) {
    uint8_t nonce[MIG_NONCE_BYTES], aad[AAD_BYTES];
    uint8_t *body = c->buf + MIG_HEADER_BYTES;
    frame_nonce(c, h->seq, nonce);
    frame_aad(c, c->buf, aad);
    /* in place; a frame that does not verify is wiped (nothing
     * unauthenticated stays readable) */
    vmenc_status s = vmenc_aead_open(c->aead, nonce, aad, sizeof(aad), body, h->len, body + h->len, body);
    return s == VMENC_OK || s == VMENC_E_AUTH ? s : VMENC_E_CRYPTO;
}

/* check_order: an authenticated frame must be the next one, a start frame
 * first, an end frame with the right counts last. */
static vmenc_status check_order(mig_codec *c, const mig_frame_header *h, vmenc_migration_failure *why) {
    if (h->seq != c->seq) {
        *why = h->seq < c->seq ? VMENC_MIGRATION_FAIL_REPLAYED : VMENC_MIGRATION_FAIL_GAP;
        return VMENC_E_AUTH;
    }
    if ((c->seq == 0) != (h->type == MIG_FRAME_START)) {
        *why = VMENC_MIGRATION_FAIL_MALFORMED;
        return VMENC_E_PARSE;
    }
    if (h->type == MIG_FRAME_END) {
        vmenc_cbs cbs;
        uint64_t chunks = 0, bytes = 0;
        vmenc_cbs_init(&cbs, c->buf + MIG_HEADER_BYTES, MIG_END_PAYLOAD);
        if (!vmenc_cbs_get_u64(&cbs, &chunks) || !vmenc_cbs_get_u64(&cbs, &bytes) || chunks != c->num_chunks ||
            bytes != c->num_bytes) {
            *why = VMENC_MIGRATION_FAIL_COUNTS;
            return VMENC_E_AUTH;
        }
    }
    return VMENC_OK;
}

vmenc_status mig_codec_next(mig_codec *c, vmenc_migration_read_fn read_fn, void *io_ctx, mig_frame_header *out,
                            vmenc_migration_failure *why) {
    VMENC_ENSURE(!c->sealing && !c->ended, VMENC_E_BAD_STATE);
    bool eof = false;
    vmenc_status s = read_exact(read_fn, io_ctx, c->buf, MIG_HEADER_BYTES, &eof);
    if (s != VMENC_OK) {
        *why = s == VMENC_E_TRUNCATED ? VMENC_MIGRATION_FAIL_TRUNCATED : VMENC_MIGRATION_FAIL_TRANSPORT;
        return s;
    }
    mig_frame_header h;
    if ((s = mig_frame_header_parse(c->buf, &h)) != VMENC_OK) {
        *why = VMENC_MIGRATION_FAIL_MALFORMED;
        return s;
    }
    size_t body = h.len + (c->encrypted ? MIG_TAG_BYTES : 0);
    if ((s = read_exact(read_fn, io_ctx, c->buf + MIG_HEADER_BYTES, body, &eof)) != VMENC_OK) {
        *why = s == VMENC_E_TRUNCATED ? VMENC_MIGRATION_FAIL_TRUNCATED : VMENC_MIGRATION_FAIL_TRANSPORT;
        return s;
    }
    if (c->encrypted && (s = open_body(c, &h)) != VMENC_OK) {
        *why = VMENC_MIGRATION_FAIL_TAMPERED;
        return s;
    }
    VMENC_GUARD(check_order(c, &h, why));
    c->seq++;
    if (h.type == MIG_FRAME_DATA) {
        c->num_chunks++;
        c->num_bytes += h.len;
    }
    c->ended = h.type == MIG_FRAME_END;
    *out = h;
    return VMENC_OK;
}

vmenc_status mig_ready_token(const uint8_t *key, const uint8_t id[VMENC_MIGRATION_ID_BYTES],
                             uint8_t out[VMENC_MIGRATION_READY_BYTES]) {
    crypto_generichash_state st;
    if (crypto_generichash_init(&st, key, MIG_KEY_BYTES, VMENC_MIGRATION_READY_BYTES) != 0 ||
        crypto_generichash_update(&st, (const uint8_t *)READY_LABEL, sizeof(READY_LABEL) - 1) != 0 ||
        crypto_generichash_update(&st, id, VMENC_MIGRATION_ID_BYTES) != 0 ||
        crypto_generichash_final(&st, out, VMENC_MIGRATION_READY_BYTES) != 0)
        return VMENC_E_CRYPTO;
    sodium_memzero(&st, sizeof(st));
    return VMENC_OK;
}
