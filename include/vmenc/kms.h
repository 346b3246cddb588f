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

/* ---- clusters ------------------------------------------------------------
 *
 * A cluster (vSphere's "KMS cluster" or key-provider alias) is a named,
 * ordered list of endpoints of one provider type that replicate each other.
 * Every call runs against the endpoints in order until one gives a definite
 * answer:
 *
 *  - endpoints not in back-off are tried first, in the order they were
 *    added; endpoints in back-off are tried only after all others failed,
 *    soonest-to-recover first;
 *  - a connection failure, timeout, TLS/certificate failure, garbled answer
 *    or wrong key (see vmenc_kms_status_fails_over in docs/kms.md) marks the
 *    endpoint failed: its back-off doubles from backoff_initial_ms up to
 *    backoff_max_ms, and the next endpoint is tried;
 *  - a definite answer (key not found, refused, bad credentials, key state,
 *    bad request) is returned at once: another replica would say the same;
 *  - the whole call, failover included, ends by |timeout_ms|: each endpoint
 *    gets the time that is left; past the deadline the call fails with
 *    VMENC_E_KMS_TIMEOUT, and when every endpoint failed without timing out
 *    with VMENC_E_KMS_UNAVAILABLE.
 *
 * |out_endpoint| (may be NULL) receives the index of the endpoint that
 * answered. Thread safety: every cluster call may run from many threads at
 * once; endpoint state is kept under an internal mutex and no lock is held
 * while a provider runs. Adding endpoints while calls run is safe too.
 */
typedef struct vmenc_kms_cluster vmenc_kms_cluster;

#define VMENC_KMS_CLUSTER_NO_JITTER 0x1u /* back-off without random jitter (tests) */

typedef struct vmenc_kms_cluster_options {
    uint32_t struct_size;         /* sizeof(vmenc_kms_cluster_options) */
    uint32_t backoff_initial_ms;  /* first back-off after a failure; 0 = 1000 */
    uint32_t backoff_max_ms;      /* back-off cap; 0 = 60000 */
    uint32_t flags;               /* VMENC_KMS_CLUSTER_* */
} vmenc_kms_cluster_options;

/* vmenc_kms_cluster_new makes an empty cluster named |alias| (1..63 bytes,
 * printable ASCII). |opts| may be NULL (defaults). Fails with
 * VMENC_E_INVALID_ARG (bad alias, options too small or out of range) or
 * VMENC_E_NOMEM. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_cluster_new(const char *alias,
                                                              const vmenc_kms_cluster_options *opts,
                                                              vmenc_kms_cluster **out);

/* vmenc_kms_cluster_take_endpoint appends |provider| as the next endpoint,
 * called |name| (for diagnostics; NULL = "endpoint-N"), and takes ownership
 * of it on success (the cluster frees it). All endpoints of a cluster must
 * share one provider type (VMENC_E_INVALID_ARG otherwise). Fails with
 * VMENC_E_ABI_VERSION / VMENC_E_INVALID_ARG for a bad provider, or
 * VMENC_E_NOMEM; on failure the caller still owns |provider|. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_cluster_take_endpoint(vmenc_kms_cluster *c, const char *name,
                                                                        vmenc_kms_provider *provider);

/* vmenc_kms_cluster_add_endpoint_config makes a built-in provider from
 * |cfg| (vmenc_kms_provider_new_builtin) and appends it, named after its
 * address. Same failures as both. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_cluster_add_endpoint_config(
    vmenc_kms_cluster *c, const vmenc_kms_endpoint_config *cfg);

/* vmenc_kms_cluster_free frees the cluster and its endpoints' providers.
 * NULL is allowed. No call may be running on it. */
VMENC_API void vmenc_kms_cluster_free(vmenc_kms_cluster *c);

/* vmenc_kms_cluster_alias returns the alias (lives as long as |c|). */
VMENC_API const char *vmenc_kms_cluster_alias(const vmenc_kms_cluster *c);

/* vmenc_kms_cluster_num_endpoints returns how many endpoints |c| has. */
VMENC_API size_t vmenc_kms_cluster_num_endpoints(const vmenc_kms_cluster *c);

/* What a cluster knows about one endpoint (a snapshot). */
typedef struct vmenc_kms_endpoint_info {
    uint32_t struct_size;            /* caller sets sizeof(vmenc_kms_endpoint_info) */
    const char *name;                /* lives as long as the cluster */
    const char *type_name;           /* provider type; lives as long as the cluster */
    uint32_t consecutive_failures;   /* 0 = healthy */
    uint64_t backoff_remaining_ms;   /* 0 = not in back-off */
    int32_t last_status;             /* vmenc_status of the last call (VMENC_OK if none) */
    uint64_t num_calls;              /* provider calls made */
    uint64_t num_failures;           /* calls that failed over */
} vmenc_kms_endpoint_info;

/* vmenc_kms_cluster_endpoint_info fills |out| for endpoint |index|. Fails
 * with VMENC_E_INVALID_ARG (bad index, struct_size too small). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_cluster_endpoint_info(vmenc_kms_cluster *c, size_t index,
                                                                        vmenc_kms_endpoint_info *out);

/* vmenc_kms_cluster_num_failovers returns how many times a call moved on to
 * another endpoint since |c| was made. */
VMENC_API uint64_t vmenc_kms_cluster_num_failovers(vmenc_kms_cluster *c);

/* Cluster operations: the provider operations above, run with failover.
 * Failures as the provider's, plus VMENC_E_KMS_UNAVAILABLE (every endpoint
 * failed, or none configured) and VMENC_E_KMS_TIMEOUT (deadline passed).
 * Out-parameters are untouched on failure. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_cluster_create_kek(vmenc_kms_cluster *c, const char *name,
                                                                     uint32_t timeout_ms, char *out_id,
                                                                     size_t out_id_cap, size_t *out_endpoint);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_cluster_get_kek(vmenc_kms_cluster *c, const char *key_id,
                                                                  uint32_t timeout_ms, vmenc_kek **out,
                                                                  size_t *out_endpoint);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_cluster_wrap(vmenc_kms_cluster *c, const char *key_id,
                                                               const vmenc_kms_wrap_params *params,
                                                               const uint8_t *in, size_t in_len,
                                                               uint32_t timeout_ms, uint8_t *out,
                                                               size_t out_cap, size_t *out_len,
                                                               size_t *out_endpoint);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_cluster_unwrap(vmenc_kms_cluster *c, const char *key_id,
                                                                 const vmenc_kms_wrap_params *params,
                                                                 const uint8_t *in, size_t in_len,
                                                                 uint32_t timeout_ms, uint8_t *out,
                                                                 size_t out_cap, size_t *out_len,
                                                                 size_t *out_endpoint);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_cluster_revoke_kek(vmenc_kms_cluster *c, const char *key_id,
                                                                     uint32_t timeout_ms, size_t *out_endpoint);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_cluster_destroy_kek(vmenc_kms_cluster *c, const char *key_id,
                                                                      uint32_t timeout_ms, size_t *out_endpoint);

/* vmenc_kms_cluster_check_health asks every endpoint (those in back-off
 * too) whether it answers, updates their state (a healthy answer ends a
 * back-off), and reports how many answered in |out_num_healthy| (may be
 * NULL). VMENC_OK if at least one did, else VMENC_E_KMS_UNAVAILABLE. The
 * probes run one after another; |timeout_ms| bounds all of them. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_cluster_check_health(vmenc_kms_cluster *c, uint32_t timeout_ms,
                                                                       size_t *out_num_healthy);

/* ---- the key manager -------------------------------------------------------
 *
 * A key manager holds the clusters of a host (one per tenant or key
 * provider), resolves (alias, KEK ID) to a KEK through its cluster, and
 * caches fetched KEKs in secure memory only (never on disk), bounded in
 * number (least recently used goes first) and optionally in lifetime, so a
 * running host keeps unwrapping DEKs while its KMS is down. Creating a KEK
 * always needs the KMS.
 *
 * Key check values: when a KEK is first seen (created through this manager,
 * or fetched), the manager remembers a keyed BLAKE2b digest of it; a later
 * fetch of that ID that yields other bytes is rejected as
 * VMENC_E_KMS_WRONG_KEY (the endpoint fails over; the bytes are never
 * returned or cached). A KEK that no record has yet opened is dropped from
 * the cache when a record fails to open with it, so a wrong key served on
 * first sight is not kept. Unwrap never returns a wrong DEK: any wrong key
 * ends in VMENC_E_AUTH.
 *
 * Providers without get_kek (PKCS#11: the KEK never leaves the token) are
 * used remotely: wrap and unwrap run in the key manager through the
 * cluster, and nothing is cached.
 *
 * Thread safety: every vmenc_keymgr_* call may run concurrently from many
 * threads (one internal mutex guards the cache, the clusters and the
 * statistics; no lock is held while a KMS is called). Only
 * vmenc_keymgr_free must not race with other calls.
 */
typedef struct vmenc_keymgr vmenc_keymgr;

typedef struct vmenc_keymgr_options {
    uint32_t struct_size;      /* sizeof(vmenc_keymgr_options) */
    uint32_t cache_capacity;   /* KEKs cached at most; 0 = 1024 */
    uint64_t cache_ttl_ms;     /* lifetime of a cached KEK; 0 = until evicted or forgotten */
    uint32_t remote_wrap_alg;  /* vmenc_wrap_alg for providers without get_kek; 0 = AES-256-KWP */
    /* Appended (issue 9). |flags| sits where the first version's padding
     * was (sizeof stayed 24 with it alone), so a struct_size of 24 cannot
     * say whether the caller knew it: it is read only if struct_size also
     * covers |reserved| (sizeof 32, issue 24), and an older caller's
     * padding - garbage included - is ignored. */
    uint32_t flags;            /* VMENC_KEYMGR_* */
    uint32_t reserved;         /* 0 (VMENC_E_INVALID_ARG otherwise) */
} vmenc_keymgr_options;

/* vmenc_keymgr_options.flags: turn off the round-trip proof of
 * vmenc_keymgr_wrap_dek (see there). For benchmarks and tests only: without
 * it a KMS that served wrong bytes for a KEK on first sight yields wrapped
 * keys that can never be opened, and the data encrypted under them is lost. */
#define VMENC_KEYMGR_NO_ROUNDTRIP_PROOF (1u << 0)

typedef struct vmenc_keymgr_stats {
    uint32_t struct_size;      /* caller sets sizeof(vmenc_keymgr_stats) */
    uint64_t hits;             /* KEK served from the cache */
    uint64_t misses;           /* KEK had to be fetched */
    uint64_t failovers;        /* a KMS call moved on to another endpoint */
    uint64_t errors;           /* key-manager calls that failed */
    uint64_t evictions;        /* cached KEKs dropped for capacity */
    uint64_t expirations;      /* cached KEKs dropped for age */
    uint64_t wrong_keys;       /* KMS answers rejected by the key check value */
    uint64_t remote_ops;       /* wraps/unwraps done inside a KMS */
    uint64_t cached;           /* KEKs in the cache now */
    /* Appended (issue 9): copied only if struct_size covers it. */
    uint64_t roundtrip_failures; /* wraps refused with VMENC_E_ROUNDTRIP */
} vmenc_keymgr_stats;

/* vmenc_keymgr_new makes an empty key manager. |opts| may be NULL. Fails
 * with VMENC_E_INVALID_ARG (bad option, unknown flag) or VMENC_E_NOMEM. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_new(const vmenc_keymgr_options *opts, vmenc_keymgr **out);

/* vmenc_keymgr_free frees the manager, its clusters and their providers,
 * and wipes every cached KEK. NULL is allowed. */
VMENC_API void vmenc_keymgr_free(vmenc_keymgr *mgr);

/* vmenc_keymgr_register_provider_type lets a vendor add a provider type
 * |name| (1..63 bytes) made by |factory|(|arg|, cfg, &provider). |arg| must
 * outlive |mgr|. Registered types shadow nothing: a name that is already
 * registered or built in ("file", "kmip", "pkcs11") fails with
 * VMENC_E_PROVIDER_EXISTS. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_register_provider_type(vmenc_keymgr *mgr, const char *name,
                                                                            vmenc_kms_provider_factory factory,
                                                                            void *arg);

/* vmenc_keymgr_new_provider makes a provider of a registered or built-in
 * type from |cfg| (VMENC_E_NO_SUCH_PROVIDER if neither). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_new_provider(vmenc_keymgr *mgr,
                                                                  const vmenc_kms_endpoint_config *cfg,
                                                                  vmenc_kms_provider **out);

/* vmenc_keymgr_take_cluster adds |c| and takes ownership of it on success.
 * Fails with VMENC_E_PROVIDER_EXISTS if its alias is taken (the caller then
 * still owns |c|). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_take_cluster(vmenc_keymgr *mgr, vmenc_kms_cluster *c);

/* vmenc_keymgr_add_cluster makes cluster |alias| from |num_configs|
 * endpoint configurations (registered or built-in types; all one type) and
 * adds it. |opts| may be NULL. Nothing is added on failure. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_add_cluster(vmenc_keymgr *mgr, const char *alias,
                                                                 const vmenc_kms_endpoint_config *configs,
                                                                 size_t num_configs,
                                                                 const vmenc_kms_cluster_options *opts);

/* vmenc_keymgr_remove_cluster removes cluster |alias| and drops its cached
 * KEKs (calls running on it finish first). VMENC_E_NO_SUCH_PROVIDER if
 * unknown. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_remove_cluster(vmenc_keymgr *mgr, const char *alias);

/* vmenc_keymgr_create_kek creates a KEK in cluster |alias| (a KMS is
 * needed), fetches it back where the provider allows (to learn its check
 * value and prove it is retrievable) and caches it. Writes the new ID,
 * NUL-terminated, to |out_id|. Fails with VMENC_E_NO_SUCH_PROVIDER, the
 * cluster's failures, VMENC_E_BUFFER_TOO_SMALL. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_create_kek(vmenc_keymgr *mgr, const char *alias,
                                                                const char *name, uint32_t timeout_ms,
                                                                char *out_id, size_t out_id_cap);

/* vmenc_keymgr_get_kek returns KEK (|alias|, |key_id|) as a new vmenc_kek
 * the caller frees, from the cache or fetched (and then cached). Fails with
 * VMENC_E_UNSUPPORTED for a provider whose KEKs never leave it, and the
 * cluster's failures (VMENC_E_KMS_WRONG_KEY if every endpoint that answered
 * gave bytes other than the ones known for that ID). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_get_kek(vmenc_keymgr *mgr, const char *alias,
                                                             const char *key_id, uint32_t timeout_ms,
                                                             vmenc_kek **out);

/* vmenc_keymgr_wrap_dek wraps |dek| for KEK (|alias|, |kek_id|) bound to
 * |ctx|: locally with the (cached or fetched) KEK as AES-256-GCM, or, when
 * the provider keeps its KEKs, inside the KMS with the remote algorithm
 * (options). The record names |alias| and |kek_id|.
 *
 * Round-trip proof (on unless VMENC_KEYMGR_NO_ROUNDTRIP_PROOF): before the
 * record is returned - so before the caller can commit it or encrypt any
 * data under |dek| - it is opened again with the KEK fetched afresh from
 * the cluster (bypassing the cache), or, for a provider that keeps its
 * KEKs, unwrapped by the KMS, and the DEK compared. A mismatch fails with
 * VMENC_E_ROUNDTRIP (counted in roundtrip_failures; the unproven cached KEK
 * is dropped); a failed fresh fetch fails with the cluster's status. So
 * wrapping needs the KMS, and costs one more KMS round trip. |*out| is set
 * only on success. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_wrap_dek(vmenc_keymgr *mgr, const char *alias,
                                                              const char *kek_id, const vmenc_dek *dek,
                                                              const vmenc_wrap_context *ctx,
                                                              uint32_t timeout_ms, vmenc_wrapped_key **out);

/* vmenc_keymgr_unwrap_dek opens |wk| (alias and KEK ID read from the
 * record) bound to |ctx|. A cached KEK means no KMS call. Fails with
 * VMENC_E_AUTH (wrong context, tampering, wrong key), the cluster's
 * failures, VMENC_E_NO_SUCH_PROVIDER (alias unknown). Never a wrong DEK. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_unwrap_dek(vmenc_keymgr *mgr, const vmenc_wrapped_key *wk,
                                                                const vmenc_wrap_context *ctx,
                                                                uint32_t timeout_ms, vmenc_dek **out);

/* vmenc_keymgr_revoke_kek / vmenc_keymgr_destroy_kek revoke or destroy the
 * KEK in its KMS and drop it from the cache (dropped even if the KMS call
 * fails, so a host stops using it). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_revoke_kek(vmenc_keymgr *mgr, const char *alias,
                                                                const char *key_id, uint32_t timeout_ms);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_destroy_kek(vmenc_keymgr *mgr, const char *alias,
                                                                 const char *key_id, uint32_t timeout_ms);

/* vmenc_keymgr_forget drops cached KEKs (and their check values): one
 * (|alias|, |key_id|), all of |alias| (|key_id| NULL), or all (both NULL). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_forget(vmenc_keymgr *mgr, const char *alias,
                                                            const char *key_id);

/* vmenc_keymgr_check_health runs vmenc_kms_cluster_check_health on |alias|. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_check_health(vmenc_keymgr *mgr, const char *alias,
                                                                  uint32_t timeout_ms, size_t *out_num_healthy);

#define VMENC_KEK_CHECK_VALUE_BYTES 16u

/* vmenc_keymgr_kek_check_value writes the check value of KEK (|alias|,
 * |key_id|) that this manager knows (learnt at creation or first fetch, or
 * pinned) to |out| (|out_cap| >= VMENC_KEK_CHECK_VALUE_BYTES). It is a keyed
 * hash that reveals nothing about the key: a host may store it beside the
 * KEK ID (e.g. in the VM configuration) and pin it after a restart. Fails
 * with VMENC_E_KEY_NOT_FOUND if the manager knows none (never seen, or
 * forgotten) and VMENC_E_BUFFER_TOO_SMALL. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_kek_check_value(vmenc_keymgr *mgr, const char *alias,
                                                                     const char *key_id, uint8_t *out,
                                                                     size_t out_cap);

/* vmenc_keymgr_pin_check_value tells the manager what KEK (|alias|,
 * |key_id|) must hash to, so even the first fetch after a restart is checked:
 * an endpoint serving other bytes is rejected (VMENC_E_KMS_WRONG_KEY, fail
 * over). A cached KEK that contradicts the pin is dropped. Pins outlive
 * vmenc_keymgr_forget and cache eviction; vmenc_keymgr_destroy_kek and
 * vmenc_keymgr_remove_cluster drop them. |kcv_len| must be
 * VMENC_KEK_CHECK_VALUE_BYTES. Fails with VMENC_E_INVALID_ARG,
 * VMENC_E_NO_SUCH_PROVIDER (alias unknown), VMENC_E_LIMIT (too many pins),
 * VMENC_E_NOMEM. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_pin_check_value(vmenc_keymgr *mgr, const char *alias,
                                                                     const char *key_id, const uint8_t *kcv,
                                                                     size_t kcv_len);

/* vmenc_keymgr_get_stats fills |out| (a snapshot; struct_size set by the
 * caller, VMENC_E_INVALID_ARG if too small). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_keymgr_get_stats(vmenc_keymgr *mgr, vmenc_keymgr_stats *out);


#ifdef __cplusplus
}
#endif
#endif /* VMENC_KMS_H */
