/*
 * vmenc/kms_kmip.h - the KMIP key provider: KMIP 1.2, 1.3, 1.4 and 2.0 over
 * TLS 1.2+ with mutual authentication.
 *
 * One provider talks to one KMIP server endpoint over one persistent
 * connection, reopened when the server closes it; a cluster of replicating
 * servers is a vmenc KMS cluster with one KMIP provider per endpoint. Every
 * call takes a deadline (timeout_ms) that bounds connect, TLS handshake,
 * write and read (name resolution aside: configure servers by address).
 *
 * Security: the server certificate must chain to the configured CA and name
 * the endpoint (server_name, default the host: an IP literal is matched
 * against IP SANs, a name against DNS SANs); the client presents its
 * certificate; nothing below TLS 1.2 is spoken and there is no plaintext
 * mode. Key bytes from Get are received into libsodium secure memory and
 * every buffer that held them is wiped. The client private key is loaded by
 * OpenSSL into its own memory (not vmenc secure memory).
 *
 * Thread safety: a provider may be used from several threads; calls on one
 * provider are serialised (one connection).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_KMS_KMIP_H
#define VMENC_KMS_KMIP_H

#include "vmenc/common.h"
#include "vmenc/kms.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMENC_KMIP_DEFAULT_PORT 5696u
#define VMENC_KMIP_CONNECT_TIMEOUT_MS 5000u  /* default cap on connect + TLS handshake */
#define VMENC_KMIP_REQUEST_TIMEOUT_MS 10000u /* default cap on one request/response */

/* Configuration of one KMIP endpoint. Strings are copied; the caller may
 * free them after vmenc_kmip_provider_new returns. */
typedef struct vmenc_kmip_config {
    uint32_t struct_size;     /* sizeof(vmenc_kmip_config) */
    const char *host;         /* IP literal or DNS name */
    uint16_t port;            /* 0: VMENC_KMIP_DEFAULT_PORT (5696) */
    const char *server_name;  /* name the server certificate must carry; NULL: host */
    const char *ca_file;      /* PEM CA bundle to trust; NULL: system trust store */
    const char *cert_file;    /* PEM client certificate (chain); NULL: none */
    const char *key_file;     /* PEM client private key; NULL iff cert_file is NULL */
    const uint8_t *key_passphrase; /* passphrase of an encrypted key_file, or NULL */
    size_t key_passphrase_len;
    uint8_t version_major;    /* 0: negotiate with DiscoverVersions (2.0, 1.4, 1.3, 1.2) */
    uint8_t version_minor;    /* with version_major: force e.g. 1.2 */
    /* Caps within each call's own deadline (0: the defaults above): a
     * connection attempt or a request gives up after this long even if the
     * caller would wait longer, so a cluster can fail over from an
     * endpoint that accepts TCP but never answers. */
    uint32_t connect_timeout_ms;
    uint32_t request_timeout_ms;
} vmenc_kmip_config;

/* vmenc_kmip_provider_new makes a KMIP provider for |cfg| (no network I/O
 * yet: the first call connects). Fails with VMENC_E_INVALID_ARG (missing
 * host, cert without key, unsupported forced version, key not matching the
 * certificate), VMENC_E_IO (a file cannot be read), VMENC_E_KMS_TLS or
 * VMENC_E_NOMEM. Release with vmenc_kms_provider_free. The provider's
 * operations: create_kek (Create AES-256 + Activate, returns the Unique
 * Identifier), get_kek (Get; only an Active AES-256 key is returned, a
 * revoked/destroyed one gives VMENC_E_KEY_STATE, another algorithm or
 * length VMENC_E_KMS_WRONG_KEY), revoke_kek (Revoke, cessation of
 * operation), destroy_kek (Revoke if needed, then Destroy), health (Query). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kmip_provider_new(const vmenc_kmip_config *cfg,
                                                                vmenc_kms_provider **out);

/* vmenc_kmip_locate finds the symmetric keys named |name| (KMIP Locate) and
 * writes the first one's ID, NUL-terminated, to |out_id| (capacity
 * |out_id_cap|, VMENC_KMS_KEY_ID_CAP is enough) and the number found to
 * |*out_num|. No match: VMENC_E_KEY_NOT_FOUND. |p| must be a KMIP provider
 * (else VMENC_E_INVALID_ARG). Other errors as the provider operations. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kmip_locate(vmenc_kms_provider *p, const char *name,
                                                          uint32_t timeout_ms, char *out_id,
                                                          size_t out_id_cap, size_t *out_num);

/* vmenc_kmip_query asks the server which operations it supports (KMIP
 * Query): bit n of |*out_ops| is set if KMIP operation code n (< 64) is
 * supported (e.g. 0x0A Get). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kmip_query(vmenc_kms_provider *p, uint32_t timeout_ms,
                                                         uint64_t *out_ops);

/* vmenc_kmip_protocol_version gives the KMIP version in use, negotiating
 * it first (DiscoverVersions) if that has not happened yet. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kmip_protocol_version(vmenc_kms_provider *p, uint32_t timeout_ms,
                                                                    unsigned *out_major, unsigned *out_minor);

#ifdef __cplusplus
}
#endif
#endif /* VMENC_KMS_KMIP_H */
