/*
 * lib/kms/kmip/kmip_conn.c - one KMIP connection: a TLS client connection
 * (lib/net/tls_conn.c) carrying one TTLV request and its response at a
 * time, and the KMIP reading of transport failures after the handshake (a
 * server's verdict on our certificate arrives late under TLS 1.3). See
 * kmip_conn.h.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <openssl/err.h>
#include <string.h>

#include "kms/kmip/kmip_conn.h"
#include "kms/kmip/kmip_msg.h"

/* ---- the connection ---------------------------------------------------------------- */

void vmenc_kmip_conn_init(vmenc_kmip_conn *c) {
    vmenc_tls_conn_init(&c->tls);
    c->num_requests = 0;
    c->request_sent = false;
}

bool vmenc_kmip_conn_is_open(const vmenc_kmip_conn *c) { return vmenc_tls_conn_is_open(&c->tls); }

bool vmenc_kmip_conn_is_stale(const vmenc_kmip_conn *c) { return vmenc_tls_conn_is_stale(&c->tls); }

void vmenc_kmip_conn_close(vmenc_kmip_conn *c) {
    vmenc_tls_conn_close(&c->tls);
    c->num_requests = 0;
}

vmenc_status vmenc_kmip_conn_open(vmenc_kmip_conn *c, SSL_CTX *ctx, const char *host, uint16_t port,
                                  const char *server_name, uint64_t deadline_ms) {
    VMENC_ENSURE_REF(c);
    if (ctx != NULL && host != NULL && server_name != NULL)
        c->num_requests = 0; /* the TLS connection is closed and reopened */
    return vmenc_tls_conn_open(&c->tls, ctx, host, port, server_name, deadline_ms);
}

/* ---- request / response ----------------------------------------------------------- */

/* after_handshake_failure maps an I/O failure after the handshake. Under
 * TLS 1.3 the client's handshake is over before the server has looked at
 * the client certificate, so the server's verdict (certificate_required,
 * unknown_ca, bad_certificate, certificate_expired, ...) arrives as an alert
 * on our first read or write, and the connection then ends. That alert is
 * "our certificate is rejected" (VMENC_E_KMS_AUTH, which a cluster does not
 * fail over on), not "KMS down"; so is any failure of the first request
 * when the server asked for a certificate and we had none to give.
 *
 * Everything else - a reset, an EOF, a close_notify with no alert about
 * certificates, before or after any byte of the answer - is the transport
 * failing (a server killed or restarted, a network cut): availability
 * (VMENC_E_KMS_UNAVAILABLE), on which a cluster fails over. A reset does
 * not hide a rejection's alert: the alert was sent first, and tls_conn.c
 * reads what is queued (salvage_alert) when a write meets the reset. */
static vmenc_status after_handshake_failure(const vmenc_kmip_conn *c, vmenc_status s, bool got_bytes) {
    if (s == VMENC_OK || s == VMENC_E_NOMEM || s == VMENC_E_KMS_TIMEOUT)
        return s;
    if (vmenc_tls_alert_is_about_our_certificate(c->tls.alert))
        return VMENC_E_KMS_AUTH;
    bool first = c->num_requests == 0 && !got_bytes;
    if (first && c->tls.cert_requested && (s == VMENC_E_KMS_UNAVAILABLE || s == VMENC_E_KMS_TLS))
        return VMENC_E_KMS_AUTH;
    return s;
}

vmenc_status vmenc_kmip_conn_roundtrip(vmenc_kmip_conn *c, const uint8_t *req, size_t req_len,
                                       uint64_t deadline_ms, uint8_t **out, size_t *out_len,
                                       bool *out_got_bytes) {
    VMENC_ENSURE(c != NULL && req != NULL && out != NULL && out_len != NULL && out_got_bytes != NULL,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(vmenc_kmip_conn_is_open(c), VMENC_E_BAD_STATE);
    bool got = false;
    *out_got_bytes = false;
    c->request_sent = false;
    vmenc_status s = vmenc_tls_conn_write(&c->tls, req, req_len, deadline_ms);
    uint8_t hdr[VMENC_TTLV_HEADER_LEN];
    if (s == VMENC_OK) {
        c->request_sent = true;
        s = vmenc_tls_conn_read(&c->tls, hdr, sizeof(hdr), deadline_ms, &got);
    }
    *out_got_bytes = got;
    ERR_clear_error();
    VMENC_GUARD(after_handshake_failure(c, s, got));

    size_t total = 0;
    s = vmenc_ttlv_message_len(hdr, sizeof(hdr), VMENC_TTLV_MAX_MESSAGE, &total);
    VMENC_ENSURE(s == VMENC_OK, VMENC_E_KMS_PROTOCOL);
    VMENC_ENSURE(vmenc_load_u32_be(hdr) >> 8 == KMIP_TAG_RESPONSE_MESSAGE && hdr[3] == VMENC_TTLV_STRUCTURE,
                 VMENC_E_KMS_PROTOCOL);
    /* The response may carry key material: receive it straight into
     * secure memory. */
    uint8_t *buf = vmenc_secure_alloc(total);
    VMENC_ENSURE(buf != NULL, VMENC_E_NOMEM);
    memcpy(buf, hdr, sizeof(hdr));
    s = vmenc_tls_conn_read(&c->tls, buf + sizeof(hdr), total - sizeof(hdr), deadline_ms, &got);
    ERR_clear_error();
    if (s != VMENC_OK) {
        vmenc_secure_free(buf);
        return after_handshake_failure(c, s, true);
    }
    c->num_requests++;
    *out = buf;
    *out_len = total;
    return VMENC_OK;
}
