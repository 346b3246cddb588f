/*
 * lib/kms/pkcs11/errors.c - PKCS#11 return values to vmenc status codes.
 *
 * The mapping keeps the distinctions a caller acts on: credentials (ask the
 * operator), lock-out, a token or session that went away (a cluster fails
 * over), a missing key, a key whose use is switched off, and an inauthentic
 * blob. Anything else is VMENC_E_KMS.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include "kms/pkcs11/p11.h"
#include "kms/pkcs11/pkcs11_provider.h"

vmenc_status vmenc_p11_status(unsigned long rv, vmenc_p11_ctx ctx) {
    switch (rv) {
    case CKR_OK:
        return VMENC_OK;

    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_EXPIRED:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_USER_PIN_NOT_INITIALIZED:
    case CKR_USER_TYPE_INVALID:
        return VMENC_E_KMS_AUTH;
    case CKR_PIN_LOCKED:
        return VMENC_E_PIN_LOCKED;

    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_DEVICE_REMOVED:
    case CKR_DEVICE_ERROR:
    case CKR_SLOT_ID_INVALID:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
        return VMENC_E_KMS_UNAVAILABLE;

    case CKR_HOST_MEMORY:
    case CKR_DEVICE_MEMORY:
        return VMENC_E_NOMEM;
    case CKR_SESSION_COUNT:
        return VMENC_E_LIMIT;

    case CKR_KEY_HANDLE_INVALID:
    case CKR_OBJECT_HANDLE_INVALID:
        return VMENC_E_KEY_NOT_FOUND;
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
        return VMENC_E_KEY_STATE;
    case CKR_KEY_UNEXTRACTABLE:
    case CKR_KEY_NOT_WRAPPABLE:
    case CKR_ATTRIBUTE_SENSITIVE:
        return VMENC_E_KMS_PERMISSION;
    case CKR_KEY_TYPE_INCONSISTENT:
    case CKR_WRAPPING_KEY_TYPE_INCONSISTENT:
    case CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT:
        return VMENC_E_KMS_REFUSED;

    case CKR_MECHANISM_INVALID:
    case CKR_MECHANISM_PARAM_INVALID:
    case CKR_FUNCTION_NOT_SUPPORTED:
        return VMENC_E_UNSUPPORTED;

    case CKR_BUFFER_TOO_SMALL:
        return VMENC_E_BUFFER_TOO_SMALL;
    case CKR_DATA_LEN_RANGE:
    case CKR_KEY_SIZE_RANGE:
        return VMENC_E_BAD_LENGTH;

    /* An inauthentic blob. SoftHSM 2.6 answers a tampered key-wrap blob with
     * CKR_GENERAL_ERROR, so in the unwrap context that means "tampered" too;
     * elsewhere it stays a token failure. */
    case CKR_ENCRYPTED_DATA_INVALID:
    case CKR_ENCRYPTED_DATA_LEN_RANGE:
    case CKR_WRAPPED_KEY_INVALID:
    case CKR_WRAPPED_KEY_LEN_RANGE:
        return ctx == VMENC_P11_CTX_UNWRAP ? VMENC_E_AUTH : VMENC_E_KMS;
    case CKR_GENERAL_ERROR:
    case CKR_FUNCTION_FAILED:
        return ctx == VMENC_P11_CTX_UNWRAP ? VMENC_E_AUTH : VMENC_E_KMS;

    case CKR_ARGUMENTS_BAD:
    case CKR_OPERATION_ACTIVE:
    case CKR_OPERATION_NOT_INITIALIZED:
        return VMENC_E_INTERNAL;

    default:
        return VMENC_E_KMS;
    }
}
