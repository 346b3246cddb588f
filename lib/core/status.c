/*
 * lib/core/status.c - names and categories of vmenc_status values.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include "core/internal.h"

typedef struct {
    int code;
    const char *name;
    const char *text;
} status_entry;

#define E(c, t) { c, #c, t }
static const status_entry k_status[] = {
    E(VMENC_OK, "success"),
    E(VMENC_E_INVALID_ARG, "invalid argument"),
    E(VMENC_E_BUFFER_TOO_SMALL, "output buffer too small"),
    E(VMENC_E_UNSUPPORTED, "operation not supported"),
    E(VMENC_E_NOT_INITIALIZED, "library initialisation failed"),
    E(VMENC_E_UNIMPLEMENTED, "provider does not implement this operation"),
    E(VMENC_E_BAD_STATE, "object is not in a state that allows this call"),
    E(VMENC_E_CPU_UNSUPPORTED, "requested implementation cannot run on this CPU/OS"),
    E(VMENC_E_WEAK_KEY, "weak key rejected (XTS key halves are equal)"),
    E(VMENC_E_BAD_SECTOR_SIZE, "sector size must be a power of two from 512 to 65536"),
    E(VMENC_E_BAD_LENGTH, "data length not valid for this operation"),
    E(VMENC_E_UNKNOWN_IMPL, "unknown implementation name"),
    E(VMENC_E_ABI_VERSION, "structure or vtable older than the supported ABI"),
    E(VMENC_E_PARSE, "malformed input"),
    E(VMENC_E_TRUNCATED, "input truncated"),
    E(VMENC_E_BAD_VERSION, "unsupported format version"),
    E(VMENC_E_TOO_LARGE, "length exceeds limit"),
    E(VMENC_E_TRAILING_DATA, "unexpected trailing data"),
    E(VMENC_E_BAD_ENCODING, "bad text encoding"),
    E(VMENC_E_DEPTH_LIMIT, "nesting too deep"),
    E(VMENC_E_BAD_ALGORITHM, "unknown or unsupported algorithm"),
    E(VMENC_E_BAD_MAGIC, "wrong magic: not a vmenc object of this kind"),
    E(VMENC_E_BAD_PATH, "file name escapes its directory or is not allowed"),
    E(VMENC_E_AUTH, "authentication failed (data tampered or wrong key)"),
    E(VMENC_E_CRYPTO, "cryptographic primitive failed"),
    E(VMENC_E_RANDOM, "random number generator failed"),
    E(VMENC_E_WRONG_PASSPHRASE, "wrong passphrase or tampered keystore"),
    E(VMENC_E_KEY_MISMATCH, "key does not match the one named by the record"),
    E(VMENC_E_CONTEXT_MISMATCH, "wrapped key belongs to another VM, disk or purpose"),
    E(VMENC_E_SELFTEST, "implementation failed its known-answer self-test"),
    E(VMENC_E_ROUNDTRIP, "new wrapped key did not unwrap with a freshly fetched KEK"),
    E(VMENC_E_KMS, "key provider failed"),
    E(VMENC_E_KMS_UNAVAILABLE, "key provider unavailable (connection failed)"),
    E(VMENC_E_KMS_TIMEOUT, "key provider deadline exceeded"),
    E(VMENC_E_KMS_TLS, "TLS handshake or protocol failure with key provider"),
    E(VMENC_E_KMS_CERT_VERIFY, "key provider certificate not trusted"),
    E(VMENC_E_KMS_NAME_MISMATCH, "key provider certificate does not match its address"),
    E(VMENC_E_KMS_AUTH, "key provider refused our credentials"),
    E(VMENC_E_KEY_NOT_FOUND, "key not found"),
    E(VMENC_E_KMS_PROTOCOL, "key provider protocol violation"),
    E(VMENC_E_KMS_REFUSED, "key provider refused the operation"),
    E(VMENC_E_KEY_STATE, "key is not active (revoked, destroyed or pre-active)"),
    E(VMENC_E_TOKEN_NOT_FOUND, "PKCS#11 token not found"),
    E(VMENC_E_PROVIDER_EXISTS, "provider type or cluster alias already registered"),
    E(VMENC_E_NO_SUCH_PROVIDER, "unknown provider type or cluster alias"),
    E(VMENC_E_KMS_PERMISSION, "key provider denied access to this object"),
    E(VMENC_E_PIN_LOCKED, "token PIN locked"),
    E(VMENC_E_KMS_WRONG_KEY, "key provider returned a different key than requested"),
    E(VMENC_E_VM_LOCKED, "VM locked: a key it needs cannot be fetched from its key provider"),
    E(VMENC_E_DENIED, "permission denied"),
    E(VMENC_E_HOST_MODE, "host encryption mode does not allow this"),
    E(VMENC_E_POLICY_INVALID, "invalid policy"),
    E(VMENC_E_NOT_FOUND, "object not found"),
    E(VMENC_E_EXISTS, "object already exists"),
    E(VMENC_E_CYCLE, "cycle in inventory or group graph"),
    E(VMENC_E_ILLEGAL_TRANSITION, "illegal state transition"),
    E(VMENC_E_AUDIT_TAMPERED, "audit log tampered"),
    E(VMENC_E_AUDIT_TRUNCATED, "audit log truncated"),
    E(VMENC_E_AUDIT_SINK, "audit sink failed"),
    E(VMENC_E_NOMEM, "out of memory (or secure memory)"),
    E(VMENC_E_IO, "I/O error"),
    E(VMENC_E_LOCKED, "resource locked by another process"),
    E(VMENC_E_LIMIT, "configured limit reached"),
    E(VMENC_E_INTERRUPTED, "an earlier operation was interrupted; recovery needed"),
    E(VMENC_E_NO_SPACE, "no space left on the file system"),
    E(VMENC_E_CONFLICT, "changed by another writer since it was read"),
    E(VMENC_E_CONTROL_UNAVAILABLE, "control plane unavailable (no endpoint or no quorum)"),
    E(VMENC_E_OUTCOME_UNKNOWN, "write not acknowledged; outcome unknown, re-read"),
    E(VMENC_E_LEASE_EXPIRED, "control-plane lease expired"),
    E(VMENC_E_INTERNAL, "internal error (bug in vmenc)"),
};
#undef E

static const status_entry *find(int status) {
    for (size_t i = 0; i < VMENC_ARRAY_LEN(k_status); i++)
        if (k_status[i].code == status)
            return &k_status[i];
    return NULL;
}

const char *vmenc_strerror(int status) {
    const status_entry *e = find(status);
    return e ? e->text : "unknown vmenc status";
}

const char *vmenc_status_name(int status) {
    const status_entry *e = find(status);
    return e ? e->name : "VMENC_E_UNKNOWN";
}

vmenc_status_category vmenc_status_category_of(int status) {
    if (status == 0)
        return VMENC_CAT_OK;
    if (status > 0 || status < -999)
        return VMENC_CAT_UNKNOWN;
    switch ((-status) / 100) {
    case 1: return VMENC_CAT_USAGE;
    case 2: return VMENC_CAT_PARSE;
    case 3: return VMENC_CAT_CRYPTO;
    case 4: return VMENC_CAT_PROVIDER;
    case 5: return VMENC_CAT_POLICY;
    case 6: return VMENC_CAT_AUDIT;
    case 7: return VMENC_CAT_RESOURCE;
    case 9: return VMENC_CAT_INTERNAL;
    default: return VMENC_CAT_UNKNOWN;
    }
}
