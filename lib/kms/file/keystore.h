/*
 * lib/kms/file/keystore.h - the file provider's keystore format: an
 * in-memory key table kept in secure memory, its plaintext encoding, and
 * the sealed file (Argon2id-derived key, XChaCha20-Poly1305, header as AAD).
 * See docs/kms.md for the byte layout.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_KMS_FILE_KEYSTORE_H
#define VMENC_LIB_KMS_FILE_KEYSTORE_H

#include "core/internal.h"
#include "vmenc/kms.h"

#define VMENC_KS_MAGIC "VMKS"
#define VMENC_KS_VERSION 1u
#define VMENC_KS_KDF_ARGON2ID13 1u
#define VMENC_KS_AEAD_XCHACHA20POLY1305 1u
#define VMENC_KS_SALT_BYTES 16u
#define VMENC_KS_VERIFIER_BYTES 16u
#define VMENC_KS_NONCE_BYTES 24u
#define VMENC_KS_TAG_BYTES 16u
#define VMENC_KS_KEY_BYTES 32u
#define VMENC_KS_HEADER_BYTES (4 + 4 + 4 + 4 + VMENC_KS_SALT_BYTES + VMENC_KS_VERIFIER_BYTES + VMENC_KS_NONCE_BYTES + 4)
#define VMENC_KS_ID_MAX 64u
#define VMENC_KS_NAME_MAX 255u
#define VMENC_KS_MAX_KEYS 65536u
#define VMENC_KS_MAX_CT (16u * 1024u * 1024u)
/* Bounds on the KDF cost any file may ask for, whatever the options say. */
#define VMENC_KS_OPS_MIN 1u
#define VMENC_KS_OPS_MAX 64u
#define VMENC_KS_MEM_KIB_MIN 8u
#define VMENC_KS_MEM_KIB_MAX (4u * 1024u * 1024u)

typedef enum vmenc_ks_state {
    VMENC_KS_ACTIVE = 1,
    VMENC_KS_REVOKED = 2,
    VMENC_KS_DESTROYED = 3 /* tombstone: key bytes are zero */
} vmenc_ks_state;

typedef struct vmenc_ks_entry {
    char id[VMENC_KS_ID_MAX + 1];
    char name[VMENC_KS_NAME_MAX + 1];
    uint8_t state;
    uint64_t created_ms;
    uint8_t key[VMENC_KS_KEY_BYTES];
} vmenc_ks_entry;

/* The key table. |entries| is secure memory. */
typedef struct vmenc_ks_store {
    vmenc_ks_entry *entries;
    size_t num;
    size_t cap;
} vmenc_ks_store;

/* The sealed file's clear header. */
typedef struct vmenc_ks_header {
    uint8_t version;
    uint8_t kdf;
    uint8_t aead;
    uint8_t flags;
    uint32_t opslimit;
    uint32_t memlimit_kib;
    uint8_t salt[VMENC_KS_SALT_BYTES];
    uint8_t verifier[VMENC_KS_VERIFIER_BYTES];
    uint8_t nonce[VMENC_KS_NONCE_BYTES];
    uint32_t ct_len;
} vmenc_ks_header;

VMENC_INTERNAL vmenc_status vmenc_ks_store_new(vmenc_ks_store **out);
VMENC_INTERNAL void vmenc_ks_store_free(vmenc_ks_store *s);
VMENC_INTERNAL vmenc_status vmenc_ks_store_dup(const vmenc_ks_store *s, vmenc_ks_store **out);
/* vmenc_ks_store_add appends a copy of |e| (VMENC_E_LIMIT when full,
 * VMENC_E_EXISTS for a duplicate ID). */
VMENC_INTERNAL vmenc_status vmenc_ks_store_add(vmenc_ks_store *s, const vmenc_ks_entry *e);
VMENC_INTERNAL vmenc_ks_entry *vmenc_ks_store_find(const vmenc_ks_store *s, const char *id);
/* vmenc_ks_store_equal: same entries in the same order (constant time over
 * the key bytes). */
VMENC_INTERNAL bool vmenc_ks_store_equal(const vmenc_ks_store *a, const vmenc_ks_store *b);

/* Plaintext codec: parse strictly (no trailing bytes, no duplicates,
 * destroyed keys all-zero) and serialise into a secure cbb. */
VMENC_INTERNAL vmenc_status vmenc_ks_plain_parse(const uint8_t *data, size_t len, vmenc_ks_store **out);
VMENC_INTERNAL vmenc_status vmenc_ks_plain_serialize(const vmenc_ks_store *s, uint8_t **out, size_t *out_len);

/* Header codec. vmenc_ks_header_parse reads the header and leaves |cbs| at
 * the ciphertext (of header->ct_len bytes, all that must remain). */
VMENC_INTERNAL vmenc_status vmenc_ks_header_parse(vmenc_cbs *cbs, vmenc_ks_header *out);
VMENC_INTERNAL void vmenc_ks_header_write(vmenc_cbb *cbb, const vmenc_ks_header *h);

/* vmenc_ks_derive runs Argon2id over |pass| with the header's salt and
 * limits into a 32-byte secret. */
VMENC_INTERNAL vmenc_status vmenc_ks_derive(const vmenc_secret *pass, const vmenc_ks_header *h,
                                            vmenc_secret **out);

/* vmenc_ks_seal encrypts |s| under |master| (derived for |h|'s salt and
 * limits) into a new heap buffer holding the whole file. A fresh nonce is
 * drawn; |h|'s other fields are used as given. */
VMENC_INTERNAL vmenc_status vmenc_ks_seal(const vmenc_ks_store *s, const vmenc_secret *master,
                                          const vmenc_ks_header *h, uint8_t **out, size_t *out_len);

/* vmenc_ks_open checks |master| against the header's verifier
 * (VMENC_E_WRONG_PASSPHRASE), decrypts (VMENC_E_AUTH) and parses. */
VMENC_INTERNAL vmenc_status vmenc_ks_open(const uint8_t *file, size_t file_len, const vmenc_ks_header *h,
                                          const vmenc_secret *master, vmenc_ks_store **out);

/* vmenc_ks_new_uuid writes a random (version 4) UUID, 36 chars + NUL. */
VMENC_INTERNAL vmenc_status vmenc_ks_new_uuid(char out[37]);

#endif /* VMENC_LIB_KMS_FILE_KEYSTORE_H */
