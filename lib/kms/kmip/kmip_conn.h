/*
 * lib/kms/kmip/kmip_conn.h - one KMIP connection: a TLS client connection
 * (lib/net/tls_conn.h: non-blocking TCP, a deadline on every step, TLS 1.2+,
 * chain and name verified, client certificate presented) carrying one TTLV
 * request and its response at a time.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_KMS_KMIP_CONN_H
#define VMENC_LIB_KMS_KMIP_CONN_H

#include <netdb.h>
#include <openssl/ssl.h>

#include "core/internal.h"
#include "net/tls_conn.h"

typedef struct vmenc_kmip_conn {
    vmenc_tls_conn tls;     /* the transport (lib/net/tls_conn.h) */
    uint32_t num_requests;  /* requests completed on this connection */
    bool request_sent;      /* the last roundtrip's request was written out whole: a
                             * server may have executed it even if no answer came */
} vmenc_kmip_conn;

VMENC_INTERNAL void vmenc_kmip_conn_init(vmenc_kmip_conn *c);

/* vmenc_kmip_conn_open connects to |host|:|port| and completes the TLS
 * handshake verifying |server_name| (an IP literal is checked against IP
 * SANs, anything else against DNS names) before |deadline_ms| (monotonic).
 * Errors: VMENC_E_KMS_UNAVAILABLE (resolve/connect failed),
 * VMENC_E_KMS_TIMEOUT, VMENC_E_KMS_CERT_VERIFY, VMENC_E_KMS_NAME_MISMATCH,
 * VMENC_E_KMS_AUTH (server refused our certificate or we have none),
 * VMENC_E_KMS_TLS, VMENC_E_NOMEM. On failure |c| is closed. */
VMENC_INTERNAL vmenc_status vmenc_kmip_conn_open(vmenc_kmip_conn *c, SSL_CTX *ctx, const char *host,
                                                 uint16_t port, const char *server_name,
                                                 uint64_t deadline_ms);

/* vmenc_kmip_conn_roundtrip sends |req| and reads one whole TTLV message
 * (at most VMENC_TTLV_MAX_MESSAGE bytes) into |*out| in secure memory
 * (release with vmenc_secure_free, which wipes). |*out_got_bytes| tells
 * whether any response byte arrived (a request that failed before may be
 * retried on a new connection); |c->request_sent| whether the request
 * left whole (a state-changing request may then have been executed).
 * Errors: VMENC_E_KMS_UNAVAILABLE (peer closed/reset: a transport failure,
 * on which a cluster fails over), VMENC_E_KMS_AUTH (the server's TLS alert
 * refused our certificate, or we had none to give), VMENC_E_KMS_TIMEOUT,
 * VMENC_E_KMS_TLS, VMENC_E_KMS_PROTOCOL (not a TTLV message or too large),
 * VMENC_E_NOMEM. After any error the stream is out of step: close the
 * connection. */
VMENC_INTERNAL vmenc_status vmenc_kmip_conn_roundtrip(vmenc_kmip_conn *c, const uint8_t *req, size_t req_len,
                                                      uint64_t deadline_ms, uint8_t **out, size_t *out_len,
                                                      bool *out_got_bytes);

/* vmenc_kmip_conn_is_open / _is_stale: a connection the peer has closed
 * (readable with EOF, or error) is stale and should be reopened before use. */
VMENC_INTERNAL bool vmenc_kmip_conn_is_open(const vmenc_kmip_conn *c);
VMENC_INTERNAL bool vmenc_kmip_conn_is_stale(const vmenc_kmip_conn *c);

VMENC_INTERNAL void vmenc_kmip_conn_close(vmenc_kmip_conn *c);

#endif /* VMENC_LIB_KMS_KMIP_CONN_H */
