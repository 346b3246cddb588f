/*
 * vmenc/keys.h - data-encryption keys (DEK), key-encryption keys (KEK), and
 * the wrapped-key record that binds a DEK to its KEK and to its owner.
 *
 * Key hierarchy (as in vSphere VM Encryption): every VM and every virtual
 * disk has its own DEK (XTS-AES-256, 64 bytes, generated on the host). A DEK
 * is stored only wrapped by a KEK (AES-256) that lives in a key manager; the
 * record names the key provider (cluster alias) and the KEK ID, so the host
 * can fetch the KEK again after a restart.
 *
 * Key bytes live only in libsodium secure memory (guard pages, mlock,
 * excluded from core dumps) and are wiped on free. A vmenc_dek / vmenc_kek
 * is immutable after creation and may be shared between threads.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_KEYS_H
#define VMENC_KEYS_H

#include "vmenc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMENC_DEK_BYTES 64u /* XTS-AES-256: two distinct AES-256 keys */
#define VMENC_KEK_BYTES 32u /* AES-256 */
#define VMENC_KEY_ID_MAX 255u      /* max bytes of a KEK ID (no NUL) */
#define VMENC_PROVIDER_ALIAS_MAX 63u /* max bytes of a provider alias (no NUL) */
#define VMENC_WRAP_CONTEXT_FIELD_MAX 255u

VMENC_API size_t vmenc_dek_bytes(void);
VMENC_API size_t vmenc_kek_bytes(void);

/* ---- DEK ------------------------------------------------------------- */

/* vmenc_dek_generate makes a fresh random DEK (libsodium CSPRNG; the two
 * halves are guaranteed distinct). Fails with VMENC_E_INVALID_ARG (NULL
 * |out|), VMENC_E_NOT_INITIALIZED, VMENC_E_NOMEM (secure memory or mlock
 * limit) or VMENC_E_RANDOM. Release with vmenc_dek_free. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_dek_generate(vmenc_dek **out);

/* vmenc_dek_new_from_bytes copies |len| (= 64) bytes into a new DEK. Fails
 * with VMENC_E_INVALID_ARG (NULL or length), VMENC_E_WEAK_KEY (equal halves,
 * which includes all-zero) or VMENC_E_NOMEM. The caller should wipe its copy.
 * |*out| is untouched on failure. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_dek_new_from_bytes(const uint8_t *bytes, size_t len,
                                                                 vmenc_dek **out);

/* vmenc_dek_equal compares two DEKs in constant time: VMENC_OK if equal,
 * VMENC_E_KEY_MISMATCH if not, VMENC_E_INVALID_ARG for NULL. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_dek_equal(const vmenc_dek *a, const vmenc_dek *b);

/* vmenc_dek_free wipes and frees |dek|. NULL is allowed. */
VMENC_API void vmenc_dek_free(vmenc_dek *dek);

/* vmenc_xts_new_from_dek builds an XTS-AES-256 context for |sector_size|
 * from |dek| without the key leaving secure memory. Same failures as
 * vmenc_xts_new (VMENC_E_INVALID_ARG also for a NULL |dek|). The context does
 * not reference |dek|: either may be freed first. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_xts_new_from_dek(const vmenc_dek *dek, uint32_t sector_size,
                                                               vmenc_xts **out);

/* ---- KEK ------------------------------------------------------------- */

/* vmenc_kek_generate makes a fresh random AES-256 KEK (for providers that
 * generate keys locally, e.g. the file provider). Fails with
 * VMENC_E_INVALID_ARG, VMENC_E_NOMEM or VMENC_E_CRYPTO (OpenSSL could not
 * key AES-256-GCM). Release with vmenc_kek_free. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kek_generate(vmenc_kek **out);

/* vmenc_kek_new_from_bytes copies |len| (= 32) bytes into a new KEK. Fails
 * with VMENC_E_INVALID_ARG (NULL or length), VMENC_E_WEAK_KEY (all zero: an
 * uninitialised buffer, never a key manager's key), VMENC_E_NOMEM or
 * VMENC_E_CRYPTO. The caller should wipe its copy. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kek_new_from_bytes(const uint8_t *bytes, size_t len,
                                                                 vmenc_kek **out);

/* vmenc_kek_equal: VMENC_OK if equal (constant time), else VMENC_E_KEY_MISMATCH. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kek_equal(const vmenc_kek *a, const vmenc_kek *b);

/* vmenc_kek_free wipes and frees |kek|. NULL is allowed. DEKs unwrapped
 * under |kek| stay valid after it is freed. */
VMENC_API void vmenc_kek_free(vmenc_kek *kek);

/* ---- wrapped-key record -------------------------------------------------- */

typedef enum vmenc_wrap_alg {
    VMENC_WRAP_AES256_GCM = 1, /* default: random 96-bit nonce, 128-bit tag */
    VMENC_WRAP_AES256_KWP = 2  /* RFC 5649 / SP 800-38F KWP, for HSMs/KMIP servers */
} vmenc_wrap_alg;

/* The context a wrapped key is bound to. A record made for one context
 * fails to unwrap (VMENC_E_AUTH) under any other. Strings are UTF-8, at most
 * VMENC_WRAP_CONTEXT_FIELD_MAX bytes; NULL means "". */
typedef struct vmenc_wrap_context {
    uint32_t struct_size; /* sizeof(vmenc_wrap_context) */
    const char *vm_uuid;
    const char *disk_id;
    const char *purpose;  /* e.g. "disk", "vm-home", "core-dump", "migration" */
} vmenc_wrap_context;

/* A parsed or freshly made wrapped-key record (opaque, immutable). */
typedef struct vmenc_wrapped_key vmenc_wrapped_key;

/* vmenc_dek_wrap wraps |dek| under |kek| (locally) with |alg|, naming the
 * key provider |provider_alias| (1..63 bytes) and |kek_id| (1..255 bytes;
 * neither may contain control characters), bound to |ctx| (required; its
 * fields may be NULL). The record format is docs/wrapped-key-format.md.
 * Fails with VMENC_E_INVALID_ARG (NULL, unknown |alg|, bad alias/ID, a
 * context field over VMENC_WRAP_CONTEXT_FIELD_MAX), VMENC_E_ABI_VERSION
 * (|ctx->struct_size| too small), VMENC_E_NOMEM or VMENC_E_CRYPTO; |*out| is
 * untouched on failure. Release with vmenc_wrapped_key_free. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_dek_wrap(const vmenc_dek *dek, const vmenc_kek *kek,
                                                       vmenc_wrap_alg alg, const char *provider_alias,
                                                       const char *kek_id, const vmenc_wrap_context *ctx,
                                                       vmenc_wrapped_key **out);

/* vmenc_wrapped_key_unwrap recovers the DEK. Fails with VMENC_E_AUTH for a
 * wrong KEK, a wrong context or any tampering (header included); never
 * returns a wrong DEK. Also VMENC_E_WEAK_KEY (the record authenticates but
 * holds equal halves), VMENC_E_INVALID_ARG, VMENC_E_ABI_VERSION,
 * VMENC_E_NOMEM. |*out| is untouched on failure. Thread safe: any number of
 * threads may unwrap under one KEK at once. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_wrapped_key_unwrap(const vmenc_wrapped_key *wk,
                                                                 const vmenc_kek *kek,
                                                                 const vmenc_wrap_context *ctx,
                                                                 vmenc_dek **out);

/* vmenc_wrapped_key_parse parses the binary form (exactly |len| bytes; the
 * input is copied, not referenced). Fails with a VMENC_CAT_PARSE status
 * (VMENC_E_BAD_MAGIC, _BAD_VERSION, _BAD_ALGORITHM, _TRUNCATED, _TOO_LARGE,
 * _TRAILING_DATA, _PARSE), VMENC_E_INVALID_ARG or VMENC_E_NOMEM.
 * Authentication happens only on unwrap. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_wrapped_key_parse(const uint8_t *data, size_t len,
                                                                vmenc_wrapped_key **out);

/* vmenc_wrapped_key_parse_text parses the text form "vmwk1:" + base64
 * (standard alphabet, padded) of exactly |len| characters. Strict: no
 * whitespace, newline or NUL is skipped and only the canonical encoding is
 * accepted. Fails like vmenc_wrapped_key_parse, plus VMENC_E_BAD_MAGIC
 * (prefix) and VMENC_E_BAD_ENCODING (base64). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_wrapped_key_parse_text(const char *text, size_t len,
                                                                     vmenc_wrapped_key **out);

/* vmenc_wrapped_key_serialize writes the binary form into a new buffer
 * |*out| of |*out_len| bytes (release with vmenc_buffer_free). Fails with
 * VMENC_E_INVALID_ARG or VMENC_E_NOMEM. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_wrapped_key_serialize(const vmenc_wrapped_key *wk,
                                                                    uint8_t **out, size_t *out_len);

/* vmenc_wrapped_key_to_text writes the NUL-terminated text form into a new
 * string |*out| (release with vmenc_buffer_free). Fails with
 * VMENC_E_INVALID_ARG or VMENC_E_NOMEM. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_wrapped_key_to_text(const vmenc_wrapped_key *wk, char **out);

/* Accessors; returned strings live as long as |wk|. NULL (alg 0) for a NULL
 * |wk|. */
VMENC_API vmenc_wrap_alg vmenc_wrapped_key_alg(const vmenc_wrapped_key *wk);
VMENC_API const char *vmenc_wrapped_key_provider_alias(const vmenc_wrapped_key *wk);
VMENC_API const char *vmenc_wrapped_key_kek_id(const vmenc_wrapped_key *wk);

/* vmenc_wrapped_key_free frees |wk| (wiping it). NULL is allowed. */
VMENC_API void vmenc_wrapped_key_free(vmenc_wrapped_key *wk);

/* vmenc_buffer_free releases a buffer vmenc returned (serialised records,
 * text forms): it wipes every byte, then frees. NULL is allowed. vmenc keeps
 * the length in a small header before the returned pointer, so only pointers
 * vmenc returned may be passed (not free()), each once. */
VMENC_API void vmenc_buffer_free(void *buf);

/* ---- raw primitives (exact signatures, for vendors and checks) ----------- */

/* vmenc_aes_kwp_wrap: AES key wrap with padding (RFC 5649, NIST SP 800-38F
 * KWP). |kek_len| 16, 24 or 32; |in_len| 1..2^31; output is
 * ceil(in_len/8)*8 + 8 bytes. Fails with VMENC_E_INVALID_ARG,
 * VMENC_E_BUFFER_TOO_SMALL or VMENC_E_CRYPTO (|out| wiped). The wrap runs in
 * place in |out| (|in| == |out| is allowed), so |out| briefly holds the
 * plaintext: pass secure memory when that matters. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_aes_kwp_wrap(const uint8_t *kek, size_t kek_len,
                                                           const uint8_t *in, size_t in_len, uint8_t *out,
                                                           size_t out_cap, size_t *out_len);

/* vmenc_aes_kwp_unwrap: inverse; anything inauthentic (bad ICV, bad padding
 * length or bytes, wrong key, an |in_len| no wrap produces) returns
 * VMENC_E_AUTH and writes nothing the caller may use (out is wiped,
 * |*out_len| untouched). |out_cap| must be at least |in_len| - 8 (the padded
 * length; VMENC_E_BUFFER_TOO_SMALL otherwise); |in| == |out| is allowed. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_aes_kwp_unwrap(const uint8_t *kek, size_t kek_len,
                                                             const uint8_t *in, size_t in_len, uint8_t *out,
                                                             size_t out_cap, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif /* VMENC_KEYS_H */
