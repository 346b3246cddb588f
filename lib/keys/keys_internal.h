/*
 * lib/keys/keys_internal.h - the keys layer's private interface for the
 * layers above it (kms, vm): raw access to key bytes that stay in secure
 * memory, and the wrapped-key record codec with the encryption done by a
 * callback, so a KMS provider can seal/open a DEK inside an HSM or KMIP
 * server while vmenc keeps one record format and one context-binding rule.
 *
 * Not installed; not part of the ABI. This header is kept stable: other
 * layers code against it.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_KEYS_KEYS_INTERNAL_H
#define VMENC_LIB_KEYS_KEYS_INTERNAL_H

#include "core/internal.h"
#include "vmenc/keys.h"

/* ---- sizes of the record's cryptographic parts -------------------------- */

#define VMENC_WRAP_GCM_NONCE_BYTES 12u  /* random 96-bit nonce */
#define VMENC_WRAP_GCM_TAG_BYTES 16u    /* appended to the ciphertext */
#define VMENC_WRAP_GCM_CT_BYTES (VMENC_DEK_BYTES + VMENC_WRAP_GCM_TAG_BYTES) /* 80 */
/* KWP has no AAD: the plaintext is DEK || SHA-256(AAD) (see
 * docs/wrapped-key-format.md), which KWP wraps into 8 more bytes. */
#define VMENC_WRAP_KWP_BINDING_BYTES 32u
#define VMENC_WRAP_KWP_PT_BYTES (VMENC_DEK_BYTES + VMENC_WRAP_KWP_BINDING_BYTES) /* 96 */
#define VMENC_WRAP_KWP_CT_BYTES (VMENC_WRAP_KWP_PT_BYTES + 8u)                 /* 104 */
/* Largest plaintext an open callback is asked to produce. */
#define VMENC_WRAP_MAX_PT_BYTES VMENC_WRAP_KWP_PT_BYTES
/* Largest ciphertext a seal callback is asked to produce. */
#define VMENC_WRAP_MAX_CT_BYTES VMENC_WRAP_KWP_CT_BYTES

/* ---- key bytes (they never leave secure memory) ------------------------- */

/* vmenc_dek_bytes_internal returns the DEK's 64 bytes (data key || tweak
 * key), read-only, in secure memory; valid as long as |dek|. NULL for NULL. */
VMENC_INTERNAL const uint8_t *vmenc_dek_bytes_internal(const vmenc_dek *dek);

/* vmenc_kek_bytes_internal returns the KEK's 32 bytes, read-only, in secure
 * memory; valid as long as |kek|. NULL for NULL. */
VMENC_INTERNAL const uint8_t *vmenc_kek_bytes_internal(const vmenc_kek *kek);

/* vmenc_dek_new_take_secret makes a DEK that owns |*secret| (64 bytes, from
 * vmenc_secret_new/_from). On success |*secret| is set to NULL (ownership
 * moved); on failure (VMENC_E_INVALID_ARG for a wrong length,
 * VMENC_E_WEAK_KEY for equal halves, VMENC_E_NOMEM) the caller still owns it. */
VMENC_INTERNAL vmenc_status vmenc_dek_new_take_secret(vmenc_secret **secret, vmenc_dek **out);

/* vmenc_kek_new_take_secret: the same for a 32-byte KEK. */
VMENC_INTERNAL vmenc_status vmenc_kek_new_take_secret(vmenc_secret **secret, vmenc_kek **out);

/* ---- records sealed/opened by a callback (remote wrap) ------------------ */

/*
 * vmenc_wrap_seal_fn encrypts one record payload for |alg| and writes the
 * ciphertext to |out| (capacity |out_cap| >= VMENC_WRAP_MAX_CT_BYTES) and
 * its length to |*out_len|. What it gets, per algorithm:
 *
 *   VMENC_WRAP_AES256_GCM: |nonce| 12 random bytes chosen by vmenc, |aad| the
 *     record's additional data, |in| the 64-byte DEK. Output: ciphertext ||
 *     16-byte tag, 80 bytes (= VMENC_KMS_WRAP_AES_GCM with iv = nonce).
 *   VMENC_WRAP_AES256_KWP: |nonce| NULL / 0, |aad| NULL / 0, |in| the 96
 *     bytes DEK || SHA-256(aad) (vmenc did the binding). Output: the RFC 5649
 *     wrap, 104 bytes (= VMENC_KMS_WRAP_AES_KWP).
 *
 * |in| is in secure memory and must not be kept or copied anywhere but into
 * the key manager. Return VMENC_OK, or any status (it is passed through).
 * A wrong output length fails the seal with VMENC_E_KMS_PROTOCOL.
 */
typedef vmenc_status (*vmenc_wrap_seal_fn)(void *arg, vmenc_wrap_alg alg, const uint8_t *nonce,
                                           size_t nonce_len, const uint8_t *aad, size_t aad_len,
                                           const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                                           size_t *out_len);

/*
 * vmenc_wrap_open_fn is the inverse: |in| is the record's ciphertext (80 or
 * 104 bytes), |nonce| and |aad| as for sealing; the plaintext (64 bytes for
 * GCM, 96 for KWP) goes to |out|, which is secure memory of capacity
 * |out_cap| >= VMENC_WRAP_MAX_PT_BYTES. Anything inauthentic must return
 * VMENC_E_AUTH (other statuses are passed through). vmenc checks the length
 * and, for KWP, the binding digest in constant time, and wipes |out|.
 */
typedef vmenc_status (*vmenc_wrap_open_fn)(void *arg, vmenc_wrap_alg alg, const uint8_t *nonce,
                                           size_t nonce_len, const uint8_t *aad, size_t aad_len,
                                           const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                                           size_t *out_len);

/*
 * vmenc_wrapped_key_seal_with builds a record for |dek| naming
 * |provider_alias| (1..63 bytes) and |kek_id| (1..255 bytes; neither may
 * hold control characters), bound to |ctx|, with the encryption done by
 * |seal|(|arg|, ...). vmenc_dek_wrap is this with a local seal. Fails with
 * VMENC_E_INVALID_ARG (NULL, bad alias/ID/context, unknown alg),
 * VMENC_E_KMS_PROTOCOL (callback returned the wrong length), VMENC_E_NOMEM,
 * VMENC_E_RANDOM, or whatever |seal| returned. |*out| untouched on failure.
 */
VMENC_INTERNAL vmenc_status vmenc_wrapped_key_seal_with(vmenc_wrap_alg alg, const char *provider_alias,
                                                        const char *kek_id, const vmenc_wrap_context *ctx,
                                                        const vmenc_dek *dek, vmenc_wrap_seal_fn seal,
                                                        void *arg, vmenc_wrapped_key **out);

/*
 * vmenc_wrapped_key_open_with recovers the DEK of |wk| bound to |ctx| with
 * the decryption done by |open|(|arg|, ...). vmenc_wrapped_key_unwrap is
 * this with a local open. Fails with VMENC_E_AUTH (callback said so, wrong
 * length, KWP binding mismatch), VMENC_E_WEAK_KEY, VMENC_E_INVALID_ARG,
 * VMENC_E_NOMEM, or whatever |open| returned; no DEK bytes survive a failure.
 */
VMENC_INTERNAL vmenc_status vmenc_wrapped_key_open_with(const vmenc_wrapped_key *wk,
                                                        const vmenc_wrap_context *ctx,
                                                        vmenc_wrap_open_fn open, void *arg,
                                                        vmenc_dek **out);

/* vmenc_wrapped_key_ciphertext_internal exposes the record's nonce and
 * ciphertext (public data; valid as long as |wk|). */
VMENC_INTERNAL void vmenc_wrapped_key_ciphertext_internal(const vmenc_wrapped_key *wk, const uint8_t **nonce,
                                                          size_t *nonce_len, const uint8_t **ct,
                                                          size_t *ct_len);

/* ---- buffers handed to callers (released with vmenc_buffer_free) -------- */

/* vmenc_buffer_alloc_internal allocates |len| (> 0) zeroed bytes that the
 * caller releases with vmenc_buffer_free (which wipes all |len| bytes).
 * NULL on failure. Not secure memory: for public or wrapped data only. */
VMENC_INTERNAL void *vmenc_buffer_alloc_internal(size_t len);

#endif /* VMENC_LIB_KEYS_KEYS_INTERNAL_H */
