/*
 * lib/kms/pkcs11/pkcs11_provider.h - the PKCS#11 provider's entry point for
 * the KMS core: vmenc_kms_provider_new_builtin("pkcs11") calls this factory
 * (through a weak reference, so a build without the provider still links).
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_KMS_PKCS11_PROVIDER_H
#define VMENC_LIB_KMS_PKCS11_PROVIDER_H

#include "core/internal.h"
#include "vmenc/kms.h"
#include "vmenc/kms_pkcs11.h"

/* vmenc_pkcs11_provider_factory has the vmenc_kms_provider_factory
 * signature; |arg| is ignored. Same contract as
 * vmenc_pkcs11_provider_new_from_endpoint. */
VMENC_INTERNAL vmenc_status vmenc_pkcs11_provider_factory(void *arg, const vmenc_kms_endpoint_config *cfg,
                                                          vmenc_kms_provider **out);

/* Where a PKCS#11 return value came from; a few codes mean different things
 * depending on the call (CKR_GENERAL_ERROR from C_UnwrapKey is SoftHSM's
 * answer to a tampered blob, elsewhere a token failure). */
typedef enum vmenc_p11_ctx {
    VMENC_P11_CTX_GENERIC = 0,
    VMENC_P11_CTX_LOGIN = 1,
    VMENC_P11_CTX_UNWRAP = 2, /* C_UnwrapKey, C_Decrypt */
    VMENC_P11_CTX_WRAP = 3    /* C_WrapKey, C_Encrypt */
} vmenc_p11_ctx;

/* vmenc_p11_status maps CK_RV |rv| returned in |ctx| to a vmenc status. */
VMENC_INTERNAL vmenc_status vmenc_p11_status(unsigned long rv, vmenc_p11_ctx ctx);

/* ---- KEK ID strings (keyid.c) ------------------------------------------ */

#define VMENC_P11_CKA_ID_MAX 64u

/* What a KEK ID string names: a CKA_ID (bytes) or a CKA_LABEL (text). */
typedef struct vmenc_p11_key_ref {
    bool by_id;
    uint8_t bytes[VMENC_KEY_ID_MAX];
    size_t len;
} vmenc_p11_key_ref;

/* vmenc_p11_parse_key_id parses |len| bytes: "id:<hex>" (1..64 bytes, either
 * case), "label:<text>", or "<text>" (a label). Labels are 1..255 bytes
 * without control characters. VMENC_E_INVALID_ARG otherwise; |*out| is
 * untouched then. */
VMENC_INTERNAL vmenc_status vmenc_p11_parse_key_id(const uint8_t *s, size_t len, vmenc_p11_key_ref *out);

/* vmenc_p11_format_key_id writes the canonical string for |ref| (no NUL):
 * "id:<lower-case hex>", the bare label, or "label:<label>" when the label
 * itself starts with "id:" or "label:". Never longer than any string that
 * parses to |ref|. Errors stick in |out|. */
VMENC_INTERNAL void vmenc_p11_format_key_id(const vmenc_p11_key_ref *ref, vmenc_cbb *out);

/* ---- endpoint options (config.c) ------------------------------------------ */

/* vmenc_p11_parse_options reads a NULL-terminated "key=value" list (see
 * vmenc_pkcs11_provider_new_from_endpoint) into |pc|'s token_label,
 * mechanism, key_label, max_sessions and flags (string fields point into
 * |options|). Unknown, repeated or malformed options and a missing
 * token_label fail with VMENC_E_INVALID_ARG. */
VMENC_INTERNAL vmenc_status vmenc_p11_parse_options(const char *const *options, vmenc_pkcs11_config *pc);

/* vmenc_p11_format_options writes |pc|'s option fields as the canonical
 * options list, each "key=value" followed by a NUL, in a fixed order,
 * leaving out defaults. Errors stick in |out|. */
VMENC_INTERNAL void vmenc_p11_format_options(const vmenc_pkcs11_config *pc, vmenc_cbb *out);

#endif /* VMENC_LIB_KMS_PKCS11_PROVIDER_H */
