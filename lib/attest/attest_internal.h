/*
 * lib/attest/attest_internal.h - helpers shared by the files of lib/attest
 * only (verify.c, credential.c, tpm_esys.c): hashing, the RSA key of a TPM
 * public area, qualified names and KDFa. Formats in docs/attest.md. Its one
 * safety rule: nothing here is used outside lib/attest; callers use
 * attest.h.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_ATTEST_ATTEST_INTERNAL_H
#define VMENC_LIB_ATTEST_ATTEST_INTERNAL_H

#include <openssl/types.h>

#include "attest/attest.h"

/* attest_sha256 writes SHA-256(a || b) to |out| (|out| may alias a or b). */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_sha256(const uint8_t *a, size_t a_len,
                                                           const uint8_t *b, size_t b_len,
                                                           uint8_t out[ATTEST_DIGEST_BYTES]);

/* attest_rsa_pkey: an OpenSSL public key from a big-endian modulus and a
 * TPM exponent (0 = 65537); NULL on failure. EVP_PKEY_free it. */
VMENC_INTERNAL EVP_PKEY *attest_rsa_pkey(const uint8_t *n, size_t n_len, uint32_t exponent);

/* attest_qualified_name: QN of an object (name |ak_name|) whose parent is a
 * primary key (name |ek_name|) of the endorsement hierarchy:
 * QN(EK) = alg || H(TPM_RH_ENDORSEMENT || Name(EK)), QN = alg || H(QN(EK) || Name). */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_qualified_name(const uint8_t ek_name[ATTEST_NAME_BYTES],
                                                                   const uint8_t ak_name[ATTEST_NAME_BYTES],
                                                                   uint8_t out[ATTEST_NAME_BYTES]);

/* attest_kdfa: KDFa(SHA-256, key, label, context_u, context_v, bits) of
 * TPM 2.0 Part 1 §11.4.10.2 (SP 800-108 counter mode with HMAC; |label|
 * is a C string whose terminating NUL is part of the input). |out_len|
 * bytes = bits / 8. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_kdfa(const uint8_t *key, size_t key_len,
                                                         const char *label, const uint8_t *context_u,
                                                         size_t context_u_len, const uint8_t *context_v,
                                                         size_t context_v_len, uint8_t *out,
                                                         size_t out_len);

#endif /* VMENC_LIB_ATTEST_ATTEST_INTERNAL_H */
