/*
 * lib/keys/aead.h - AES-256-GCM keyed once, for the bulk records of VM state
 * files, core dumps and the migration stream (formats: docs/vm-format.md,
 * docs/coredump.md, docs/migration.md). One small interface so the record
 * code names no crypto library. Three engines, standard AES-256-GCM every
 * way: vmenc's own on VAES + VPCLMULQDQ with 512-bit registers
 * (lib/xts/gcm_vaes_avx512.c, 2-4x OpenSSL 3.0's EVP on the CPUs that have
 * it, bench/bench_aead.c) or, without AVX-512, with 256-bit registers
 * (lib/xts/gcm_vaes_avx2.c), else OpenSSL 3's EVP AES-256-GCM (AES-NI with
 * stitched PCLMULQDQ), 2-3x libsodium's.
 *
 * Its one safety rule: the raw key is never kept - it is read once, from the
 * caller's secure memory, into the object. With a VAES engine the round
 * keys and hash-key powers are part of the object, one block of libsodium
 * secure memory, wiped on free. With the OpenSSL engine where the expanded
 * key schedule lives is OpenSSL's choice: the provider allocates its GCM
 * context on OpenSSL's ordinary heap (there is no API to put it in secure
 * memory without replacing the process-wide allocator), so the schedule is
 * not mlocked for the object's life. It is cleansed when the object is freed
 * (EVP_CIPHER_CTX_free -> the provider's freectx -> OPENSSL_clear_free).
 * docs/secure-memory.md records this exception.
 *
 * Not thread-safe: one object per user at a time (a state file holds its
 * own under its mutex).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_KEYS_AEAD_H
#define VMENC_LIB_KEYS_AEAD_H

#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"

#define VMENC_AEAD_KEY_BYTES 32u
#define VMENC_AEAD_NONCE_BYTES 12u
#define VMENC_AEAD_TAG_BYTES 16u
/* Largest plaintext of one call (OpenSSL's update takes an int). */
#define VMENC_AEAD_MAX_BYTES ((size_t)1 << 30)

typedef struct vmenc_aead vmenc_aead;

/* vmenc_aead_new keys AES-256-GCM with the 32 bytes at |key| (read, not
 * kept), on the best engine for the CPU or the one the environment variable
 * VMENC_AEAD_IMPL names ("openssl", "vaes-avx512", "vaes-avx2"; see vmenc_aead_new_impl
 * for its errors). VMENC_E_NOMEM, or VMENC_E_CRYPTO if OpenSSL fails; *out
 * untouched on failure. Free with vmenc_aead_free. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_aead_new(const uint8_t key[VMENC_AEAD_KEY_BYTES],
                                           vmenc_aead **out);

/* vmenc_aead_seal encrypts |len| bytes of |pt| into |ct| (may equal |pt|)
 * under the 12-byte |nonce|, authenticating |aad| too, and writes the 16-byte
 * tag to |tag|. VMENC_E_INVALID_ARG (len > VMENC_AEAD_MAX_BYTES or a NULL
 * with a length), VMENC_E_CRYPTO if OpenSSL fails (|ct| then unspecified). */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_aead_seal(vmenc_aead *a, const uint8_t nonce[VMENC_AEAD_NONCE_BYTES],
                                            const uint8_t *aad, size_t aad_len, const uint8_t *pt,
                                            size_t len, uint8_t *ct,
                                            uint8_t tag[VMENC_AEAD_TAG_BYTES]);

/* vmenc_aead_open decrypts |len| bytes of |ct| into |pt| (may equal |ct|)
 * and checks |tag| over |aad| and the ciphertext. VMENC_E_AUTH if it does not
 * verify: |pt| is then wiped, so nothing unauthenticated stays there;
 * VMENC_E_INVALID_ARG, VMENC_E_CRYPTO (|pt| wiped) as for sealing. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_aead_open(vmenc_aead *a, const uint8_t nonce[VMENC_AEAD_NONCE_BYTES],
                                            const uint8_t *aad, size_t aad_len, const uint8_t *ct,
                                            size_t len, const uint8_t tag[VMENC_AEAD_TAG_BYTES],
                                            uint8_t *pt);

/* vmenc_aead_new_impl is vmenc_aead_new with the engine named: NULL (the
 * best for this CPU, what vmenc_aead_new picks), "openssl" (EVP),
 * "vaes-avx512" or "vaes-avx2" (VMENC_E_UNSUPPORTED where the CPU lacks
 * the instructions); another name
 * is VMENC_E_INVALID_ARG. For the tests and benchmarks. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status vmenc_aead_new_impl(const uint8_t key[VMENC_AEAD_KEY_BYTES],
                                                                 const char *impl, vmenc_aead **out);

/* vmenc_aead_engine names the object's engine ("openssl", "vaes-avx512",
 * "vaes-avx2"). */
VMENC_INTERNAL const char *vmenc_aead_engine(const vmenc_aead *a);

/* vmenc_aead_free cleanses the key schedule and frees; NULL is a no-op. */
VMENC_INTERNAL void vmenc_aead_free(vmenc_aead *a);

#endif /* VMENC_LIB_KEYS_AEAD_H */
