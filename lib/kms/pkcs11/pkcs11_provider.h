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

#endif /* VMENC_LIB_KMS_PKCS11_PROVIDER_H */
