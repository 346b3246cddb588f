/*
 * lib/attest/attest.h - TPM 2.0 attestation for the key broker (issue 23):
 * the host side (tpm2-tss ESAPI: EK, AK, credential activation, quotes, PCR
 * read/extend) and the verifier (OpenSSL only, no TPM: AK name and
 * attributes, MakeCredential, quote verification, EK certificate chain).
 * The protocol and every byte format are in docs/attest.md (TPM 2.0 Part 1
 * §24 for MakeCredential, Part 2 for the structures). Its one safety rule:
 * no field of a quote is trusted before its signature has been verified
 * with an AK whose attributes were checked, and every parser of TPM bytes
 * reads through the bounded cursor (vmenc_cbs).
 *
 * Layer: core < net < xts < keys < attest < kms < ... (scripts/check-includes.sh).
 * Not installed; not part of the ABI. This header is kept stable: the broker
 * (lib/broker) and the KMIP provider code against it.
 *
 * Conventions: the object first, then inputs, then outputs. Byte strings
 * returned through uint8_t ** are malloc'd (release with free()); secrets
 * come as a vmenc_secret (secure memory, release with vmenc_secret_free).
 * On failure every output is left untouched. Byte formats on the wire are
 * the TPM's marshalled structures (big-endian), exactly as tpm2-tools
 * writes them with -f tss: TPM2B_PUBLIC with its size, TPMS_ATTEST without
 * the TPM2B_ATTEST size, TPMT_SIGNATURE, TPM2B_ID_OBJECT and
 * TPM2B_ENCRYPTED_SECRET with their sizes.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_ATTEST_ATTEST_H
#define VMENC_LIB_ATTEST_ATTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"

/* ---- sizes and limits ----------------------------------------------------- */

#define ATTEST_NAME_BYTES 34u        /* TPM2B_NAME body for SHA-256: 000b || H */
#define ATTEST_DIGEST_BYTES 32u      /* SHA-256 */
#define ATTEST_NONCE_MAX 64u         /* TPM2B_DATA in a quote (tpm2-tools refuses 65) */
#define ATTEST_NONCE_BYTES 32u       /* what the broker issues */
#define ATTEST_PCR_BANKS_MAX 16u     /* TPML_PCR_SELECTION.count bound (TPM2_NUM_PCR_BANKS) */
#define ATTEST_PCR_SELECT_MAX 4u     /* sizeofSelect bound: 32 PCRs */
#define ATTEST_PCR_MAX 32u           /* PCR indices 0..31 in a selection string */
#define ATTEST_SECRET_MAX 64u        /* credential secret (TPM2B_DIGEST of SHA-512 at most) */

/* TPM algorithm identifiers and attributes used by callers (TPM 2.0 Part 2). */
#define ATTEST_ALG_RSA 0x0001u
#define ATTEST_ALG_SHA1 0x0004u
#define ATTEST_ALG_SHA256 0x000bu
#define ATTEST_ALG_SHA384 0x000cu
#define ATTEST_ALG_SHA512 0x000du
#define ATTEST_ALG_NULL 0x0010u
#define ATTEST_ALG_RSASSA 0x0014u
#define ATTEST_ALG_RSAPSS 0x0016u
#define ATTEST_ALG_ECDSA 0x0018u
#define ATTEST_ALG_ECC 0x0023u
#define ATTEST_ALG_AES 0x0006u
#define ATTEST_ALG_CFB 0x0043u
#define ATTEST_ECC_NIST_P256 0x0003u

#define ATTEST_OA_FIXED_TPM 0x00000002u
#define ATTEST_OA_FIXED_PARENT 0x00000010u
#define ATTEST_OA_SENSITIVE_DATA_ORIGIN 0x00000020u
#define ATTEST_OA_USER_WITH_AUTH 0x00000040u
#define ATTEST_OA_ADMIN_WITH_POLICY 0x00000080u
#define ATTEST_OA_RESTRICTED 0x00010000u
#define ATTEST_OA_DECRYPT 0x00020000u
#define ATTEST_OA_SIGN 0x00040000u
/* What an AK must have (and it must not have DECRYPT). */
#define ATTEST_AK_REQUIRED_ATTRS                                                    \
    (ATTEST_OA_FIXED_TPM | ATTEST_OA_FIXED_PARENT | ATTEST_OA_SENSITIVE_DATA_ORIGIN | \
     ATTEST_OA_RESTRICTED | ATTEST_OA_SIGN)

/* ---- parsed structures (views into the caller's bytes) --------------------- */

/* attest_public: a TPM2B_PUBLIC (RSA or ECC). Pointers point into the parsed
 * buffer and live as long as it. */
typedef struct attest_public {
    uint16_t type;              /* ATTEST_ALG_RSA or ATTEST_ALG_ECC */
    uint16_t name_alg;
    uint32_t attributes;
    const uint8_t *auth_policy; /* may be empty */
    size_t auth_policy_len;
    uint16_t sym_alg;           /* ATTEST_ALG_NULL for signing keys, AES for the EK */
    uint16_t sym_bits;          /* when sym_alg != NULL */
    uint16_t sym_mode;          /* when sym_alg != NULL */
    uint16_t scheme;            /* RSASSA/RSAPSS/ECDSA/NULL */
    uint16_t scheme_hash;       /* when scheme != NULL */
    /* RSA */
    uint16_t rsa_bits;
    uint32_t rsa_exponent;      /* 0 means 65537 */
    const uint8_t *rsa_modulus;
    size_t rsa_modulus_len;
    /* ECC */
    uint16_t ecc_curve;
    uint16_t ecc_kdf;           /* ATTEST_ALG_NULL */
    uint16_t ecc_kdf_hash;      /* when ecc_kdf != NULL */
    const uint8_t *ecc_x;
    size_t ecc_x_len;
    const uint8_t *ecc_y;
    size_t ecc_y_len;
    /* the TPMT_PUBLIC bytes (without the TPM2B size): what the name hashes */
    const uint8_t *tpmt;
    size_t tpmt_len;
} attest_public;

/* attest_pcr_sel: a TPML_PCR_SELECTION. */
typedef struct attest_pcr_sel {
    uint32_t num_banks;
    struct {
        uint16_t hash;
        uint8_t size_of_select;
        uint8_t select[ATTEST_PCR_SELECT_MAX];
    } banks[ATTEST_PCR_BANKS_MAX];
} attest_pcr_sel;

/* attest_quote: a TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE. */
typedef struct attest_quote {
    uint32_t magic;                 /* 0xff544347 TPM_GENERATED_VALUE */
    uint16_t type;                  /* 0x8018 TPM_ST_ATTEST_QUOTE */
    const uint8_t *qualified_signer;
    size_t qualified_signer_len;
    const uint8_t *extra_data;      /* the nonce */
    size_t extra_data_len;
    uint64_t clock;
    uint32_t reset_count;
    uint32_t restart_count;
    uint8_t safe;
    uint64_t firmware_version;
    attest_pcr_sel pcr_select;
    const uint8_t *pcr_digest;
    size_t pcr_digest_len;
} attest_quote;

/* attest_sig: a TPMT_SIGNATURE (RSASSA, RSAPSS or ECDSA). */
typedef struct attest_sig {
    uint16_t alg;
    uint16_t hash;
    const uint8_t *rsa_sig;         /* RSASSA / RSAPSS */
    size_t rsa_sig_len;
    const uint8_t *ecdsa_r;         /* ECDSA: unsigned big-endian integers */
    size_t ecdsa_r_len;
    const uint8_t *ecdsa_s;
    size_t ecdsa_s_len;
} attest_sig;

/* ---- parsers and serialisers (pure: bytes in, struct out) -------------- */

/* attest_public_parse parses a TPM2B_PUBLIC that fills |in| exactly.
 * VMENC_E_TRUNCATED / VMENC_E_PARSE / VMENC_E_TRAILING_DATA on malformed
 * input, VMENC_E_BAD_ALGORITHM for a type, scheme or curve it does not know. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_public_parse(const uint8_t *in, size_t in_len,
                                                                 attest_public *out);
/* attest_public_marshal writes |pub| back as a TPM2B_PUBLIC (malloc'd). */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_public_marshal(const attest_public *pub,
                                                                   uint8_t **out, size_t *out_len);
/* attest_quote_parse parses TPMS_ATTEST bytes (no TPM2B size) of a quote.
 * A magic other than TPM_GENERATED_VALUE or a type other than QUOTE is
 * VMENC_E_BAD_MAGIC; parse errors as above. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_quote_parse(const uint8_t *in, size_t in_len,
                                                                attest_quote *out);
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_quote_marshal(const attest_quote *q,
                                                                  uint8_t **out, size_t *out_len);
/* attest_sig_parse parses a TPMT_SIGNATURE that fills |in| exactly. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_sig_parse(const uint8_t *in, size_t in_len,
                                                              attest_sig *out);
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_sig_marshal(const attest_sig *sig,
                                                                uint8_t **out, size_t *out_len);

/* attest_pcr_sel_parse parses the text form "sha256:0,1,16" (banks joined
 * by '+', as tpm2-tools: "sha256:0,1+sha1:16"; bank names sha1, sha256,
 * sha384, sha512; indices 0..31, ascending or not, no duplicates).
 * sizeofSelect is 3 (24 PCRs) unless an index above 23 needs 4.
 * VMENC_E_PARSE on anything else. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_pcr_sel_parse(const char *text,
                                                                  attest_pcr_sel *out);
/* attest_pcr_sel_equal compares two selections exactly (count, hash,
 * sizeofSelect, bitmap). */
VMENC_INTERNAL bool attest_pcr_sel_equal(const attest_pcr_sel *a, const attest_pcr_sel *b);
/* attest_pcr_sel_values_len: the byte length of the PCR values of |sel|
 * (digest size of each bank times its selected PCRs); 0 for an unknown hash. */
VMENC_INTERNAL size_t attest_pcr_sel_values_len(const attest_pcr_sel *sel);

/* ---- verifier (OpenSSL, no TPM) -------------------------------------------- */

/* Why a check refused: each value names one check of docs/attest.md. */
typedef enum attest_refusal {
    ATTEST_ACCEPTED = 0,
    ATTEST_REFUSED_MALFORMED,        /* bytes do not parse */
    ATTEST_REFUSED_AK_ATTRIBUTES,    /* AK not restricted|sign|fixedTPM|fixedParent|sensitiveDataOrigin, or decrypt */
    ATTEST_REFUSED_AK_ALGORITHM,     /* AK key type, size, curve or scheme not accepted */
    ATTEST_REFUSED_SIGNATURE,        /* signature does not verify with the AK (tampered bytes, another AK) */
    ATTEST_REFUSED_NOT_QUOTE,        /* magic is not TPM_GENERATED_VALUE or type is not ATTEST_QUOTE */
    ATTEST_REFUSED_NONCE,            /* extraData is not the nonce issued (replay) */
    ATTEST_REFUSED_SELECTION,        /* PCR selection is not the one demanded */
    ATTEST_REFUSED_PCR_DIGEST,       /* digest of the PCR values sent != the quote's pcrDigest */
    ATTEST_REFUSED_SIGNER,           /* qualifiedSigner is not the AK under the expected EK */
    ATTEST_REFUSED_EK_CERT,          /* EK certificate does not chain to a trusted CA / not an RSA-2048 EK */
} attest_refusal;

/* attest_refusal_str: a short static English reason ("PCR digest does not
 * match the PCR values"), for the broker's Reason field and the audit log. */
VMENC_INTERNAL const char *attest_refusal_str(attest_refusal r);

/* attest_ak_check parses an AK's TPM2B_PUBLIC, checks its attributes
 * (ATTEST_AK_REQUIRED_ATTRS, not DECRYPT), its algorithm (RSA 2048 with
 * RSASSA or RSAPSS / SHA-256 or NULL scheme, or ECC NIST P-256 with ECDSA
 * SHA-256 or NULL scheme; nameAlg SHA-256) and writes its name
 * (nameAlg || SHA-256(TPMT_PUBLIC), 34 bytes). VMENC_E_AUTH with
 * |*out_refusal| set when the key is not acceptable; parse errors as
 * attest_public_parse (refusal MALFORMED). |out_refusal| may be NULL. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_ak_check(const uint8_t *ak_public,
                                                             size_t ak_public_len,
                                                             uint8_t out_name[ATTEST_NAME_BYTES],
                                                             attest_refusal *out_refusal);

/* attest_public_name computes the name of any TPM2B_PUBLIC with a SHA-256
 * nameAlg (the EK's too), without checking attributes. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_public_name(const uint8_t *pub, size_t pub_len,
                                                                uint8_t out_name[ATTEST_NAME_BYTES]);

/* attest_ek_public_from_key builds the TPM2B_PUBLIC of an RSA-2048 EK made
 * with the TCG EK profile's default template (L-1: AES-128-CFB, policy
 * PolicySecret(TPM_RH_ENDORSEMENT), attributes 0x000300b2) around the
 * modulus |n| (256 bytes, big-endian). This is the byte string the TPM's
 * own EK public has, so its name matches. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_ek_public_from_modulus(const uint8_t *n,
                                                                           size_t n_len,
                                                                           uint8_t **out,
                                                                           size_t *out_len);

/* attest_ek_cert_check verifies that the DER certificate |der| chains to a
 * CA in |ca_pem| (a PEM file with one or more certificates, or a directory
 * of them; intermediate CAs may be in the same file), that its key is
 * RSA-2048, and returns the EK's TPM2B_PUBLIC built from it with
 * attest_ek_public_from_modulus. TPM EK certificates carry the TCG
 * SubjectAltName and the EK OID extended key usage, which OpenSSL does not
 * know: they are accepted, not checked. VMENC_E_AUTH (refusal EK_CERT)
 * when the chain does not verify; VMENC_E_PARSE for bytes that are not a
 * certificate; VMENC_E_IO when |ca_pem| cannot be read. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_ek_cert_check(const uint8_t *der, size_t der_len,
                                                                  const char *ca_pem,
                                                                  uint8_t **out_ek_public,
                                                                  size_t *out_ek_public_len);

/* attest_make_credential is TPM2_MakeCredential in software (TPM 2.0
 * Part 1 §24): a random seed, RSA-OAEP(SHA-256, label "IDENTITY\0") to the
 * EK (|ek_public|: an RSA TPM2B_PUBLIC with SHA-256 nameAlg and AES-128-CFB
 * symmetric), KDFa(SHA-256, seed, "STORAGE", AK name) for the AES-128-CFB
 * key, KDFa(SHA-256, seed, "INTEGRITY") for the HMAC key; |out_cred_blob| =
 * TPM2B_ID_OBJECT (integrityHMAC || encIdentity), |out_enc_secret| =
 * TPM2B_ENCRYPTED_SECRET. Only the TPM with that EK, holding an object of
 * name |ak_name|, gives |secret| back through ActivateCredential.
 * |secret| 1..ATTEST_SECRET_MAX bytes; |ak_name| ATTEST_NAME_BYTES.
 * VMENC_E_INVALID_ARG / VMENC_E_BAD_ALGORITHM for an EK it cannot use. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_make_credential(
    const uint8_t *ek_public, size_t ek_public_len, const uint8_t *ak_name, size_t ak_name_len,
    const uint8_t *secret, size_t secret_len, uint8_t **out_cred_blob, size_t *out_cred_blob_len,
    uint8_t **out_enc_secret, size_t *out_enc_secret_len);

/* attest_make_credential_seeded: the same with the seed given and the OAEP
 * encryption done by the caller (tests cross-check the identity object
 * against tpm2_makecredential with it). Writes only the TPM2B_ID_OBJECT. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_make_credential_seeded(
    const uint8_t *seed, size_t seed_len, const uint8_t *ak_name, size_t ak_name_len,
    const uint8_t *secret, size_t secret_len, uint8_t **out_cred_blob, size_t *out_cred_blob_len);

/* attest_quote_result: what attest_quote_verify learnt (valid only on
 * VMENC_OK, except refusal which is set on every return). */
typedef struct attest_quote_result {
    attest_refusal refusal;
    uint8_t pcr_digest[ATTEST_DIGEST_BYTES];  /* the quote's (== digest of the values) */
    uint64_t clock;
    uint32_t reset_count;
    uint32_t restart_count;
    uint64_t firmware_version;
} attest_quote_result;

/* attest_quote_verify checks a quote the way docs/attest.md lists it, in
 * this order: the AK (attest_ak_check), the signature |sig| (TPMT_SIGNATURE)
 * over the exact |attest| bytes (TPMS_ATTEST) with the AK — before any field
 * is trusted —, magic and type, extraData == |nonce|, the selection equals
 * |pcr_sel| (text form), |pcr_values| (concatenated in selection order) hash
 * (with the AK's scheme hash, SHA-256) to the quote's pcrDigest, and, when
 * |ek_public| is not NULL, qualifiedSigner == QN of the AK under that EK.
 * Whether the digest is an approved measurement is the caller's decision
 * (out->pcr_digest). VMENC_OK: accepted. VMENC_E_AUTH: refused, the check
 * in out->refusal. VMENC_E_INVALID_ARG for a bad |pcr_sel| or NULL. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_quote_verify(
    const uint8_t *ak_public, size_t ak_public_len, const uint8_t *attest, size_t attest_len,
    const uint8_t *sig, size_t sig_len, const uint8_t *nonce, size_t nonce_len,
    const char *pcr_sel, const uint8_t *pcr_values, size_t pcr_values_len,
    const uint8_t *ek_public, size_t ek_public_len, attest_quote_result *out);

/* attest_pcr_digest: SHA-256 of |pcr_values| after checking their length
 * against |pcr_sel| (VMENC_E_BAD_LENGTH) — the digest the broker stores as
 * an approved measurement. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_pcr_digest(const char *pcr_sel,
                                                               const uint8_t *pcr_values,
                                                               size_t pcr_values_len,
                                                               uint8_t out[ATTEST_DIGEST_BYTES]);

/* attest_pcr_fold computes the value of a SHA-256 PCR that started at
 * zero after extending it with |num| measurements of 32 bytes each:
 * v = SHA-256(v || m_i) — the golden value of a resettable PCR. */
VMENC_INTERNAL void attest_pcr_fold(const uint8_t (*measurements)[ATTEST_DIGEST_BYTES], size_t num,
                                    uint8_t out[ATTEST_DIGEST_BYTES]);

/* ---- host side (tpm2-tss ESAPI; VMENC_E_UNSUPPORTED without tss2) -------- */

/* attest_tpm: a connection to one TPM (ESYS context). Not thread-safe: one
 * thread at a time. Every object and session a call loads is flushed
 * before it returns, on error paths too, so the TPM's transient slots (3
 * in swtpm, no resource manager) are as before the call. */
typedef struct attest_tpm attest_tpm;

/* attest_tpm_available: whether this build has the host side. */
VMENC_INTERNAL bool attest_tpm_available(void);

/* attest_tpm_open connects to the TPM named by |tcti| (a tctildr string:
 * "swtpm:host=127.0.0.1,port=2321", "device:/dev/tpmrm0"; never NULL: no
 * probing) and sends Startup(CLEAR) (an already started TPM is fine).
 * VMENC_E_UNSUPPORTED without tss2; VMENC_E_KMS_UNAVAILABLE when the TPM
 * cannot be reached; VMENC_E_KMS for other TPM errors. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_tpm_open(const char *tcti, attest_tpm **out);
/* attest_tpm_close flushes what the handle still holds and disconnects; NULL ok. */
VMENC_INTERNAL void attest_tpm_close(attest_tpm *tpm);

/* attest_tpm_ek returns the EK certificate (DER, from NV 0x01c00002; NULL
 * and 0 when the TPM has none) and the RSA EK's TPM2B_PUBLIC (the TCG
 * template L-1 key: the persistent 0x81010001 if present, else
 * CreatePrimary then flush). Either output pointer pair may be NULL to
 * skip it. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_tpm_ek(attest_tpm *tpm, uint8_t **out_ek_cert_der,
                                                           size_t *out_ek_cert_len,
                                                           uint8_t **out_ek_public,
                                                           size_t *out_ek_public_len);

/* attest_tpm_ak_create creates an AK under the RSA EK (restricted RSA-2048
 * signing key, RSASSA-SHA256, attributes fixedTPM|fixedParent|
 * sensitiveDataOrigin|userWithAuth|restricted|sign — as tpm2_createak) and
 * returns its TPM2B_PUBLIC and a blob to load it again (docs/attest.md "AK
 * blob": "VMAK" v1, TPM2B_PUBLIC, TPM2B_PRIVATE; the private part is wrapped
 * by the TPM, not a vmenc secret, but keep its integrity). */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_tpm_ak_create(attest_tpm *tpm,
                                                                  uint8_t **out_ak_public,
                                                                  size_t *out_ak_public_len,
                                                                  uint8_t **out_ak_blob,
                                                                  size_t *out_ak_blob_len);

/* attest_ak_blob_public: the TPM2B_PUBLIC inside an AK blob (a view into
 * |blob|; no TPM needed). VMENC_E_PARSE / VMENC_E_BAD_MAGIC. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_ak_blob_public(const uint8_t *blob, size_t blob_len,
                                                                   const uint8_t **out_public,
                                                                   size_t *out_public_len);

/* attest_tpm_activate loads the AK from |ak_blob| under the EK and runs
 * ActivateCredential (EK authorised by a PolicySecret(TPM_RH_ENDORSEMENT)
 * session) on |cred_blob| (TPM2B_ID_OBJECT) and |enc_secret|
 * (TPM2B_ENCRYPTED_SECRET). The secret comes back in secure memory.
 * VMENC_E_AUTH when the TPM refuses (another TPM's EK, another AK name:
 * TPM_RC_INTEGRITY / TPM_RC_VALUE on the secret). */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_tpm_activate(attest_tpm *tpm, const uint8_t *ak_blob,
                                                                 size_t ak_blob_len,
                                                                 const uint8_t *cred_blob,
                                                                 size_t cred_blob_len,
                                                                 const uint8_t *enc_secret,
                                                                 size_t enc_secret_len,
                                                                 vmenc_secret **out_secret);

/* attest_tpm_quote loads the AK from |ak_blob| and quotes the PCRs of
 * |pcr_sel| (text form) over |nonce| (1..ATTEST_NONCE_MAX bytes): the
 * TPMS_ATTEST bytes, the TPMT_SIGNATURE, and the selected PCR values
 * (concatenated in selection order) read so that they hash to the quote's
 * pcrDigest (read again if a PCR changed between the read and the quote).
 * These are Attest-Quote's QuoteAttest, QuoteSignature and PCRValues.
 * VMENC_E_INVALID_ARG for a bad selection or nonce; VMENC_E_KMS on TPM errors. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_tpm_quote(
    attest_tpm *tpm, const uint8_t *ak_blob, size_t ak_blob_len, const uint8_t *nonce,
    size_t nonce_len, const char *pcr_sel, uint8_t **out_attest, size_t *out_attest_len,
    uint8_t **out_sig, size_t *out_sig_len, uint8_t **out_pcr_values, size_t *out_pcr_values_len);

/* attest_tpm_pcr_read reads the PCRs of |pcr_sel|, concatenated in
 * selection order. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_tpm_pcr_read(attest_tpm *tpm, const char *pcr_sel,
                                                                 uint8_t **out_values,
                                                                 size_t *out_values_len);

/* attest_tpm_pcr_extend extends SHA-256 PCR |pcr| with |digest| (tests
 * simulate a changed "hypervisor binary" with it). */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_tpm_pcr_extend(attest_tpm *tpm, unsigned pcr,
                                                                   const uint8_t digest[ATTEST_DIGEST_BYTES]);

/* attest_tpm_num_transients counts the TPM's transient objects and its
 * sessions, loaded or saved (GetCapability TPM_CAP_HANDLES of those
 * ranges) — tests check that a call leaves the count unchanged. */
VMENC_MUST_CHECK VMENC_INTERNAL vmenc_status attest_tpm_num_transients(attest_tpm *tpm, size_t *out_num);

#endif /* VMENC_LIB_ATTEST_ATTEST_H */
