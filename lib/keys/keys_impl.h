/*
 * lib/keys/keys_impl.h - layouts of the keys layer's objects, shared only by
 * the files in lib/keys/. Other layers use keys_internal.h.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_KEYS_KEYS_IMPL_H
#define VMENC_LIB_KEYS_KEYS_IMPL_H

#include <openssl/evp.h>
#include <pthread.h>

#include "keys/keys_internal.h"
#include "keys/slab.h"

struct vmenc_dek {
    const uint8_t *bytes;  /* VMENC_DEK_BYTES in secure memory (secret or slab slot) */
    vmenc_secret *secret;  /* owner when allocated individually, else NULL */
    vmenc_keyslab *slab;   /* owner of the slot when allocated from a slab, else NULL */
};

/* A KEK's AES-256-GCM contexts for one direction. |tmpl| is keyed once
 * when the KEK is made and only ever copied; |idle| keeps up to
 * VMENC_KEK_IDLE_CTX keyed copies that finished an operation, so a wrap or
 * unwrap normally costs one IV reset instead of a context copy, allocation
 * and cleanse. The pool is the only mutable part of a KEK and is guarded by
 * |mu|, so a KEK stays shareable between threads. Expanded key schedules in
 * these contexts live in OpenSSL's heap and are cleansed by OpenSSL when the
 * KEK is freed (see docs/wrapped-key-format.md). */
#define VMENC_KEK_IDLE_CTX 8u
typedef struct vmenc_gcm_pool {
    pthread_mutex_t mu;
    bool mu_ready;
    EVP_CIPHER_CTX *tmpl;
    EVP_CIPHER_CTX *idle[VMENC_KEK_IDLE_CTX];
    unsigned num_idle;
} vmenc_gcm_pool;

struct vmenc_kek {
    vmenc_secret *secret;  /* VMENC_KEK_BYTES, read-only after creation */
    vmenc_gcm_pool dec;    /* for unwrapping */
    vmenc_gcm_pool enc;    /* for wrapping */
    /* Secure-memory slab that DEKs unwrapped under this KEK come from. */
    vmenc_keyslab_pool *pool;
};

/* Record fields (all public). */
struct vmenc_wrapped_key {
    vmenc_wrap_alg alg;
    uint8_t version;
    size_t alias_len;
    size_t kek_id_len;
    size_t nonce_len;
    size_t ct_len;
    char alias[VMENC_PROVIDER_ALIAS_MAX + 1];
    char kek_id[VMENC_KEY_ID_MAX + 1];
    uint8_t nonce[VMENC_WRAP_GCM_NONCE_BYTES];
    uint8_t ct[VMENC_WRAP_MAX_CT_BYTES];
};

#define VMENC_WK_MAGIC "VMWK"
#define VMENC_WK_VERSION 1u
/* Largest binary record: magic, version, alg, alias, ID, nonce, ciphertext. */
#define VMENC_WK_MAX_BYTES                                                                        \
    (4u + 1u + 1u + 1u + VMENC_PROVIDER_ALIAS_MAX + 1u + VMENC_KEY_ID_MAX + 1u +                  \
     VMENC_WRAP_GCM_NONCE_BYTES + 2u + VMENC_WRAP_MAX_CT_BYTES)
/* Largest AAD: the header (record minus ciphertext) plus three
 * length-prefixed context fields and the context label. */
#define VMENC_WK_CTX_LABEL "vmenc-wrap-ctx-v1"
#define VMENC_WK_MAX_AAD_BYTES                                                                    \
    (VMENC_WK_MAX_BYTES - VMENC_WRAP_MAX_CT_BYTES + (sizeof(VMENC_WK_CTX_LABEL) - 1u) +           \
     3u * (1u + VMENC_WRAP_CONTEXT_FIELD_MAX))
#define VMENC_WK_TEXT_PREFIX "vmwk1:"

/* record.c */
VMENC_INTERNAL vmenc_status vmenc_wk_check_name(const char *s, size_t max, size_t *out_len);
VMENC_INTERNAL vmenc_status vmenc_wk_expected_lengths(vmenc_wrap_alg alg, size_t *nonce_len, size_t *ct_len);
/* vmenc_wk_write_header writes everything before the ciphertext bytes. */
VMENC_INTERNAL void vmenc_wk_write_header(const vmenc_wrapped_key *wk, vmenc_cbb *cbb);
/* vmenc_wk_build_aad writes header || label || context into |buf|. */
VMENC_INTERNAL vmenc_status vmenc_wk_build_aad(const vmenc_wrapped_key *wk, const vmenc_wrap_context *ctx,
                                               uint8_t *buf, size_t cap, size_t *out_len);

/* key.c */
/* vmenc_gcm_pool_take returns a keyed context ready for an IV (NULL if out
 * of memory); give it back with vmenc_gcm_pool_give, success or not. */
VMENC_INTERNAL EVP_CIPHER_CTX *vmenc_gcm_pool_take(const vmenc_gcm_pool *pool);
VMENC_INTERNAL void vmenc_gcm_pool_give(const vmenc_gcm_pool *pool, EVP_CIPHER_CTX *ctx);
VMENC_INTERNAL vmenc_status vmenc_dek_check_bytes(const uint8_t *bytes, size_t len);
/* vmenc_dek_adopt_slot makes a DEK owning |slot| of |slab| (its first
 * VMENC_DEK_BYTES are the key). On failure the caller still owns the slot. */
VMENC_INTERNAL vmenc_status vmenc_dek_adopt_slot(vmenc_keyslab *slab, uint8_t *slot, vmenc_dek **out);

#endif /* VMENC_LIB_KEYS_KEYS_IMPL_H */
