/*
 * vmenc/kms.h - the key-manager (KMS) provider interface.
 *
 * A provider talks to one key-manager endpoint (a keystore file, a KMIP
 * server, a PKCS#11 token, or a vendor's own). Vendors plug in their own
 * provider by embedding a vmenc_kms_provider as the first member of their
 * state and pointing it at a static const vmenc_kms_provider_ops built with
 * designated initialisers.
 *
 * ABI rules: the ops table begins with its size and ABI version. vmenc calls
 * a member only if it lies entirely within ops->struct_size and is non-NULL;
 * otherwise the call fails with VMENC_E_UNIMPLEMENTED. Tables larger (newer)
 * than the library knows are accepted; tables smaller than the first
 * version's size, or with abi_version 0, are rejected with
 * VMENC_E_ABI_VERSION. New members are only ever appended.
 *
 * Clusters (a named, ordered list of replicating endpoints — vSphere's "KMS
 * cluster or alias") and the key manager with its in-memory KEK cache are
 * declared further down.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_KMS_H
#define VMENC_KMS_H

#include "vmenc/common.h"
#include "vmenc/keys.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMENC_KMS_PROVIDER_ABI_VERSION 1u
#define VMENC_KMS_KEY_ID_CAP (VMENC_KEY_ID_MAX + 1u) /* buffer size for an ID + NUL */

typedef struct vmenc_kms_provider vmenc_kms_provider;

/* Mechanism for remote wrap/unwrap of a secret inside the key manager. */
typedef enum vmenc_kms_wrap_mech {
    VMENC_KMS_WRAP_AES_KWP = 1,     /* RFC 5649 (SoftHSM: CKM_AES_KEY_WRAP_PAD) */
    VMENC_KMS_WRAP_AES_KW = 2,      /* RFC 3394 (input a multiple of 8 bytes) */
    VMENC_KMS_WRAP_AES_GCM = 3      /* AES-256-GCM, 96-bit IV given by caller, 128-bit tag appended */
} vmenc_kms_wrap_mech;

typedef struct vmenc_kms_wrap_params {
    uint32_t struct_size;       /* sizeof(vmenc_kms_wrap_params) */
    vmenc_kms_wrap_mech mech;
    const uint8_t *iv;          /* GCM only: 12 bytes */
    size_t iv_len;
    const uint8_t *aad;         /* GCM only: additional authenticated data */
    size_t aad_len;
} vmenc_kms_wrap_params;

/*
 * Provider operations. Every operation receives |timeout_ms|, the time the
 * caller can still wait (0 = no wait allowed beyond non-blocking work); a
 * provider that cannot finish in time returns VMENC_E_KMS_TIMEOUT. Providers
 * report connection failures as VMENC_E_KMS_UNAVAILABLE (so a cluster fails
 * over) and definite answers (not found, refused, permission) with their own
 * codes (so a cluster does not). Operations may be called from several
 * threads at once; a provider serialises internally as it needs.
 */
typedef struct vmenc_kms_provider_ops {
    uint32_t struct_size;   /* sizeof(vmenc_kms_provider_ops) the provider was built with */
    uint32_t abi_version;   /* VMENC_KMS_PROVIDER_ABI_VERSION the provider was built with */
    const char *type_name;  /* "file", "kmip", "pkcs11", or a vendor's name */

    /* create_kek creates a new AES-256 KEK named |name| (may be NULL) and
     * writes its ID, NUL-terminated, to |out_id| (capacity |out_id_cap|). */
    vmenc_status (*create_kek)(vmenc_kms_provider *p, const char *name, uint32_t timeout_ms,
                               char *out_id, size_t out_id_cap);

    /* get_kek fetches the KEK |key_id| into a new vmenc_kek. Providers whose
     * KEK never leaves them leave this NULL (or return VMENC_E_UNSUPPORTED)
     * and implement wrap/unwrap. Must return VMENC_E_KEY_NOT_FOUND for an
     * unknown ID and VMENC_E_KEY_STATE for a revoked/destroyed key. */
    vmenc_status (*get_kek)(vmenc_kms_provider *p, const char *key_id, uint32_t timeout_ms,
                            vmenc_kek **out);

    /* wrap encrypts |in| (a secret, e.g. a DEK plus binding data) under KEK
     * |key_id| inside the key manager. */
    vmenc_status (*wrap)(vmenc_kms_provider *p, const char *key_id, const vmenc_kms_wrap_params *params,
                         const uint8_t *in, size_t in_len, uint32_t timeout_ms,
                         uint8_t *out, size_t out_cap, size_t *out_len);

    /* unwrap decrypts |in| inside the key manager into |out| (the caller
     * passes secure memory). Anything inauthentic gives VMENC_E_AUTH. */
    vmenc_status (*unwrap)(vmenc_kms_provider *p, const char *key_id, const vmenc_kms_wrap_params *params,
                           const uint8_t *in, size_t in_len, uint32_t timeout_ms,
                           uint8_t *out, size_t out_cap, size_t *out_len);

    /* revoke_kek marks the key unusable for new wraps (KMIP Revoke). */
    vmenc_status (*revoke_kek)(vmenc_kms_provider *p, const char *key_id, uint32_t timeout_ms);

    /* destroy_kek destroys the key (revoking first where the KMS needs it). */
    vmenc_status (*destroy_kek)(vmenc_kms_provider *p, const char *key_id, uint32_t timeout_ms);

    /* health checks that the endpoint answers (and authenticates us). */
    vmenc_status (*health)(vmenc_kms_provider *p, uint32_t timeout_ms);

    /* free releases the provider and wipes its secrets. */
    void (*free)(vmenc_kms_provider *p);

    /* Members added in later ABI versions go here. */
} vmenc_kms_provider_ops;

/* The base every provider embeds as its first member. */
struct vmenc_kms_provider {
    uint32_t struct_size;                 /* sizeof(vmenc_kms_provider) */
    const vmenc_kms_provider_ops *ops;
};

/* vmenc_kms_provider_check validates |p| and its ops table per the ABI rules
 * above: VMENC_OK, VMENC_E_INVALID_ARG or VMENC_E_ABI_VERSION. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_provider_check(const vmenc_kms_provider *p);

/* Guarded calls: each validates |p|, checks the member lies within
 * ops->struct_size and is non-NULL (else VMENC_E_UNIMPLEMENTED), calls it,
 * and validates what it returned (e.g. a NUL-terminated ID within the cap). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_provider_create_kek(vmenc_kms_provider *p, const char *name,
                                                                      uint32_t timeout_ms, char *out_id,
                                                                      size_t out_id_cap);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_provider_get_kek(vmenc_kms_provider *p, const char *key_id,
                                                                   uint32_t timeout_ms, vmenc_kek **out);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_provider_wrap(vmenc_kms_provider *p, const char *key_id,
                                                                const vmenc_kms_wrap_params *params,
                                                                const uint8_t *in, size_t in_len,
                                                                uint32_t timeout_ms, uint8_t *out,
                                                                size_t out_cap, size_t *out_len);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_provider_unwrap(vmenc_kms_provider *p, const char *key_id,
                                                                  const vmenc_kms_wrap_params *params,
                                                                  const uint8_t *in, size_t in_len,
                                                                  uint32_t timeout_ms, uint8_t *out,
                                                                  size_t out_cap, size_t *out_len);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_provider_revoke_kek(vmenc_kms_provider *p, const char *key_id,
                                                                      uint32_t timeout_ms);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_provider_destroy_kek(vmenc_kms_provider *p, const char *key_id,
                                                                       uint32_t timeout_ms);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_provider_health(vmenc_kms_provider *p, uint32_t timeout_ms);
/* vmenc_kms_provider_free calls ops->free if present. NULL is allowed. */
VMENC_API void vmenc_kms_provider_free(vmenc_kms_provider *p);

/*
 * Endpoint configuration, used by provider factories (built-in types
 * "file", "kmip", "pkcs11"; vendors register more on a key manager).
 * |options| is a NULL-terminated array of "key=value" strings whose keys
 * each provider documents (e.g. kmip: ca=, cert=, key=, server_name=;
 * pkcs11: token_label=, mechanism=). |secret| (passphrase, PIN) is copied
 * into secure memory by the provider; the caller may wipe its copy after.
 */
typedef struct vmenc_kms_endpoint_config {
    uint32_t struct_size;       /* sizeof(vmenc_kms_endpoint_config) */
    const char *type;           /* provider type name */
    const char *address;        /* file: keystore path; kmip: host:port; pkcs11: module path */
    const char *const *options; /* NULL-terminated "key=value" list, or NULL */
    const uint8_t *secret;      /* passphrase / PIN, or NULL */
    size_t secret_len;
} vmenc_kms_endpoint_config;

/* A factory makes a provider from a configuration. */
typedef vmenc_status (*vmenc_kms_provider_factory)(void *arg, const vmenc_kms_endpoint_config *cfg,
                                                   vmenc_kms_provider **out);

/* vmenc_kms_provider_new_builtin makes a provider of a built-in type from
 * |cfg|: VMENC_E_NO_SUCH_PROVIDER for an unknown type. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_provider_new_builtin(const vmenc_kms_endpoint_config *cfg,
                                                                       vmenc_kms_provider **out);

/* ---- clusters and the key manager are declared below this line ---------- */

#ifdef __cplusplus
}
#endif
#endif /* VMENC_KMS_H */
