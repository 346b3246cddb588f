/*
 * lib/net/tls_conn.h - one TLS client connection: TCP with non-blocking
 * sockets and poll() for every step (resolve, connect, handshake, write,
 * read), so a deadline bounds each call; TLS 1.2+ through OpenSSL with
 * memory BIOs (we do the socket I/O ourselves: MSG_NOSIGNAL, no SIGPIPE in
 * the host process); server certificate chain and name verified; client
 * certificate presented. Used by the KMIP provider (lib/kms/kmip/); meant
 * for the etcd client and the key broker as well.
 *
 * The statuses are the key-provider ones (VMENC_E_KMS_UNAVAILABLE,
 * _TIMEOUT, _TLS, _CERT_VERIFY, _NAME_MISMATCH, _AUTH): the first user is
 * KMIP, and a later user maps them to its own.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_NET_TLS_CONN_H
#define VMENC_LIB_NET_TLS_CONN_H

#include <netdb.h>
#include <openssl/ssl.h>
#include <stdbool.h>

#include "core/internal.h"

typedef struct vmenc_tls_conn {
    int fd;                 /* -1 when closed */
    SSL *ssl;
    int alert;              /* last TLS alert received from the peer, -1 none */
    bool cert_requested;    /* server asked for a client certificate we lack */
    bool cert_asked;        /* server asked for a client certificate */
} vmenc_tls_conn;

/* vmenc_tls_ctx_new builds the client SSL_CTX: TLS 1.2 minimum, peer
 * verification against |ca_file| (NULL: the system trust store), client
 * certificate chain |cert_file| and key |key_file| (PEM; NULL: none) whose
 * passphrase, if any, is |pass| (|pass_len| bytes). Errors: VMENC_E_IO
 * (unreadable file), VMENC_E_INVALID_ARG (key does not match certificate),
 * VMENC_E_WRONG_PASSPHRASE, VMENC_E_KMS_TLS, VMENC_E_NOMEM. */
VMENC_INTERNAL vmenc_status vmenc_tls_ctx_new(const char *ca_file, const char *cert_file, const char *key_file,
                                              const uint8_t *pass, size_t pass_len, SSL_CTX **out);

VMENC_INTERNAL void vmenc_tls_conn_init(vmenc_tls_conn *c);
/* vmenc_tls_conn_open connects to |host|:|port| and completes the TLS
 * handshake verifying |server_name| (an IP literal is checked against IP
 * SANs, anything else against DNS names) before |deadline_ms| (monotonic).
 * Errors: VMENC_E_KMS_UNAVAILABLE (resolve/connect failed),
 * VMENC_E_KMS_TIMEOUT, VMENC_E_KMS_CERT_VERIFY, VMENC_E_KMS_NAME_MISMATCH,
 * VMENC_E_KMS_AUTH (server refused our certificate or we have none),
 * VMENC_E_KMS_TLS, VMENC_E_NOMEM. On failure |c| is closed. */
VMENC_INTERNAL vmenc_status vmenc_tls_conn_open(vmenc_tls_conn *c, SSL_CTX *ctx, const char *host,
                                                uint16_t port, const char *server_name, uint64_t deadline_ms);
/* vmenc_tls_conn_write sends all |len| bytes and flushes them to the socket;
 * vmenc_tls_conn_read reads exactly |len| bytes, setting |*got_bytes| once
 * any byte arrived. Errors: VMENC_E_KMS_UNAVAILABLE (peer closed/reset;
 * when a send meets the reset, a TLS alert already in the receive queue is
 * read first, so |c->alert| holds it), VMENC_E_KMS_TIMEOUT, VMENC_E_KMS_TLS,
 * VMENC_E_NOMEM. After an error the stream is out of step: close the
 * connection. */
VMENC_INTERNAL vmenc_status vmenc_tls_conn_write(vmenc_tls_conn *c, const uint8_t *buf, size_t len,
                                                 uint64_t deadline_ms);
VMENC_INTERNAL vmenc_status vmenc_tls_conn_read(vmenc_tls_conn *c, uint8_t *buf, size_t len, uint64_t deadline_ms,
                                                bool *got_bytes);
/* vmenc_tls_conn_is_open / _is_stale: a connection the peer has closed
 * (readable with EOF, or error) is stale and should be reopened before use. */
VMENC_INTERNAL bool vmenc_tls_conn_is_open(const vmenc_tls_conn *c);
VMENC_INTERNAL bool vmenc_tls_conn_is_stale(const vmenc_tls_conn *c);
VMENC_INTERNAL void vmenc_tls_conn_close(vmenc_tls_conn *c);

/* vmenc_tls_alert_is_about_our_certificate: is TLS alert |alert| the
 * server's verdict on our client certificate (bad, unsupported, revoked,
 * expired, unknown, unknown CA, access denied, certificate required)? */
VMENC_INTERNAL bool vmenc_tls_alert_is_about_our_certificate(int alert);

/* The resolver vmenc_tls_conn_open uses for names (getaddrinfo's
 * signature). Name resolution runs in a helper thread so the deadline bounds
 * it; vmenc_net_set_resolver_for_testing swaps in another resolver (e.g. a
 * slow one) for tests; NULL restores getaddrinfo. Not thread-safe against
 * concurrent connects. */
typedef int (*vmenc_net_resolver_fn)(const char *node, const char *service, const struct addrinfo *hints,
                                     struct addrinfo **res);
VMENC_INTERNAL void vmenc_net_set_resolver_for_testing(vmenc_net_resolver_fn fn);

#endif /* VMENC_LIB_NET_TLS_CONN_H */
