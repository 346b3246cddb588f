/*
 * lib/net/tls_conn.c - a TLS client connection: non-blocking TCP + poll,
 * name resolution bounded by the deadline, TLS through OpenSSL memory BIOs,
 * certificate/name verification and the mapping of transport failures to
 * vmenc statuses (see tls_conn.h). Its first user is the KMIP provider
 * (lib/kms/kmip/kmip_conn.c); the etcd client and the key broker are next.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "net/tls_conn.h"

#define IO_CHUNK 16384

/* ---- TLS context ----------------------------------------------------------- */

typedef struct {
    const uint8_t *pass;
    size_t len;
} pass_arg;

static int pass_cb(char *buf, int size, int rwflag, void *u) {
    const pass_arg *a = u;
    if (a == NULL || a->pass == NULL || size < 0 || a->len > (size_t)size)
        return -1;
    memcpy(buf, a->pass, a->len);
    return (int)a->len;
}

/* client_cert_cb runs only when the server asks for a certificate and none
 * is configured: remember that, so the handshake failure that follows is
 * reported as an authentication failure rather than a generic TLS error. */
static int client_cert_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey) {
    vmenc_tls_conn *c = SSL_get_app_data(ssl);
    if (c != NULL)
        c->cert_requested = true;
    return 0;
}

/* cert_cb runs whenever the server asks for a client certificate (with or
 * without one configured): under TLS 1.3 that tells a reset right after
 * the handshake apart from one on a server that checks no certificate. */
static int cert_cb(SSL *ssl, void *arg) {
    vmenc_tls_conn *c = SSL_get_app_data(ssl);
    if (c != NULL)
        c->cert_asked = true;
    return 1;
}

static void info_cb(const SSL *ssl, int where, int ret) {
    if ((where & SSL_CB_READ_ALERT) != 0) {
        vmenc_tls_conn *c = SSL_get_app_data(ssl);
        if (c != NULL)
            c->alert = ret & 0xff;
    }
}

/* key_is_encrypted: the PEM file holds an encrypted private key (so a
 * failure to load it means a missing or wrong passphrase). */
static bool key_is_encrypted(const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char line[128];
    bool enc = false;
    while (!enc && fgets(line, sizeof(line), f) != NULL)
        enc = strstr(line, "ENCRYPTED") != NULL;
    fclose(f);
    return enc;
}

/* key_mismatch_error: OpenSSL refused the key because it does not belong
 * to the certificate. */
static bool key_mismatch_error(void) {
    unsigned long e;
    while ((e = ERR_get_error()) != 0)
        if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
            (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH || ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH))
            return true;
    return false;
}

static bool file_readable(const char *path) { return path == NULL || access(path, R_OK) == 0; }

vmenc_status vmenc_tls_ctx_new(const char *ca_file, const char *cert_file, const char *key_file,
                                    const uint8_t *pass, size_t pass_len, SSL_CTX **out) {
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE((cert_file == NULL) == (key_file == NULL), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(file_readable(ca_file) && file_readable(cert_file) && file_readable(key_file), VMENC_E_IO);

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    VMENC_ENSURE(ctx != NULL, VMENC_E_NOMEM);
    vmenc_status s = VMENC_E_KMS_TLS;
    /* TLS 1.2 is the floor (no SSLv3/TLS 1.0/1.1); no renegotiation, no
     * compression; OpenSSL wipes its copies of received plaintext, which
     * here includes key material. */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
        goto fail;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CLEANSE_PLAINTEXT);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_verify_depth(ctx, 8);
    SSL_CTX_set_info_callback(ctx, info_cb);
    SSL_CTX_set_cert_cb(ctx, cert_cb, NULL);
    s = VMENC_E_IO;
    if (ca_file != NULL ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
                        : SSL_CTX_set_default_verify_paths(ctx) != 1)
        goto fail;
    if (cert_file != NULL) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
            goto fail;
        pass_arg pa = {pass, pass_len};
        SSL_CTX_set_default_passwd_cb(ctx, pass_cb);
        SSL_CTX_set_default_passwd_cb_userdata(ctx, &pa);
        int ok = SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM);
        SSL_CTX_set_default_passwd_cb(ctx, NULL);
        SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
        if (ok != 1) {
            if (key_mismatch_error())
                s = VMENC_E_INVALID_ARG;
            else if (key_is_encrypted(key_file))
                s = VMENC_E_WRONG_PASSPHRASE;
            goto fail;
        }
        s = VMENC_E_INVALID_ARG;
        if (SSL_CTX_check_private_key(ctx) != 1)
            goto fail;
    } else {
        SSL_CTX_set_client_cert_cb(ctx, client_cert_cb);
    }
    ERR_clear_error();
    *out = ctx;
    return VMENC_OK;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return s;
}

/* ---- sockets ------------------------------------------------------------------ */

void vmenc_tls_conn_init(vmenc_tls_conn *c) {
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->alert = -1;
}

bool vmenc_tls_conn_is_open(const vmenc_tls_conn *c) { return c->fd >= 0 && c->ssl != NULL; }

bool vmenc_tls_conn_is_stale(const vmenc_tls_conn *c) {
    if (!vmenc_tls_conn_is_open(c))
        return true;
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int r = poll(&pfd, 1, 0);
    if (r == 0)
        return false;
    /* Readable between requests: EOF, a reset, or an unsolicited record
     * (e.g. close_notify). None leaves the connection usable. */
    return true;
}

void vmenc_tls_conn_close(vmenc_tls_conn *c) {
    if (c->ssl != NULL)
        SSL_free(c->ssl); /* frees both memory BIOs */
    if (c->fd >= 0)
        close(c->fd);
    vmenc_tls_conn_init(c);
}

static vmenc_status wait_fd(int fd, short events, uint64_t deadline_ms) {
    for (;;) {
        uint64_t now = vmenc_now_monotonic_ms();
        if (now >= deadline_ms)
            return VMENC_E_KMS_TIMEOUT;
        uint64_t left = deadline_ms - now;
        struct pollfd pfd = {.fd = fd, .events = events};
        int r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r > 0)
            return VMENC_OK; /* ready, or an error the next syscall reports */
        if (r == 0)
            return VMENC_E_KMS_TIMEOUT;
        if (errno != EINTR)
            return VMENC_E_KMS_UNAVAILABLE;
    }
}

static vmenc_status connect_one(const struct addrinfo *ai, uint64_t deadline_ms, int *out_fd) {
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    VMENC_ENSURE(fd >= 0, VMENC_E_KMS_UNAVAILABLE);
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS && errno != EINTR) {
            close(fd);
            return VMENC_E_KMS_UNAVAILABLE;
        }
        vmenc_status s = wait_fd(fd, POLLOUT, deadline_ms);
        int err = 0;
        socklen_t len = sizeof(err);
        if (s == VMENC_OK && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0))
            s = VMENC_E_KMS_UNAVAILABLE;
        if (s != VMENC_OK) {
            close(fd);
            return s;
        }
    }
    *out_fd = fd;
    return VMENC_OK;
}

/* ---- name resolution bounded by the deadline ---------------------------------- *
 * getaddrinfo cannot be cancelled and a dead DNS server blocks it for its
 * own timeouts (seconds, times retries, times search domains). It runs in a
 * detached thread; the caller waits on a condition variable until the
 * deadline and, if the answer is late, leaves it to the thread, which frees
 * it when it finishes. IP literals need no thread. */

static vmenc_net_resolver_fn g_resolver = getaddrinfo;

void vmenc_net_set_resolver_for_testing(vmenc_net_resolver_fn fn) {
    g_resolver = fn != NULL ? fn : getaddrinfo;
}

typedef struct resolve_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;                /* caller + thread, under mu */
    bool done;
    int rc;
    vmenc_net_resolver_fn fn;
    struct addrinfo hints;
    struct addrinfo *res;
    char port[8];
    char host[];             /* NUL-terminated */
} resolve_job;

static void job_release(resolve_job *j) {
    pthread_mutex_lock(&j->mu);
    bool last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last)
        return;
    if (j->res != NULL)
        freeaddrinfo(j->res);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static void *resolve_thread(void *arg) {
    resolve_job *j = arg;
    struct addrinfo *res = NULL;
    int rc = j->fn(j->host, j->port, &j->hints, &res);
    pthread_mutex_lock(&j->mu);
    j->rc = rc;
    j->res = res;
    j->done = true;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_release(j);
    return NULL;
}

/* resolve runs getaddrinfo for |host| within |deadline_ms|. On success the
 * caller frees |*out| with freeaddrinfo. VMENC_E_KMS_TIMEOUT if the
 * resolver has not answered by the deadline, VMENC_E_KMS_UNAVAILABLE if it
 * failed, VMENC_E_NOMEM. */
static vmenc_status resolve(const char *host, const char *port, const struct addrinfo *hints,
                            uint64_t deadline_ms, struct addrinfo **out) {
    VMENC_ENSURE(vmenc_now_monotonic_ms() < deadline_ms, VMENC_E_KMS_TIMEOUT);
    uint8_t lit[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, host, lit) == 1 || inet_pton(AF_INET6, host, lit) == 1) {
        struct addrinfo h = *hints;
        h.ai_flags |= AI_NUMERICHOST; /* answered without a lookup: no thread */
        VMENC_ENSURE(getaddrinfo(host, port, &h, out) == 0 && *out != NULL, VMENC_E_KMS_UNAVAILABLE);
        return VMENC_OK;
    }
    size_t hl = strlen(host);
    resolve_job *j = calloc(1, sizeof(*j) + hl + 1);
    VMENC_ENSURE(j != NULL, VMENC_E_NOMEM);
    memcpy(j->host, host, hl + 1);
    snprintf(j->port, sizeof(j->port), "%s", port);
    j->hints = *hints;
    j->fn = g_resolver;
    j->refs = 2;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_attr_t ta;
    pthread_t t;
    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &ta, resolve_thread, j);
    pthread_attr_destroy(&ta);
    if (rc != 0) {
        j->refs = 1;
        job_release(j);
        return VMENC_E_NOMEM;
    }
    /* vmenc_now_monotonic_ms is CLOCK_MONOTONIC in milliseconds. */
    struct timespec until = {.tv_sec = (time_t)(deadline_ms / 1000),
                             .tv_nsec = (long)(deadline_ms % 1000) * 1000000L};
    vmenc_status s = VMENC_E_KMS_TIMEOUT;
    pthread_mutex_lock(&j->mu);
    while (!j->done) {
        int w = pthread_cond_timedwait(&j->cv, &j->mu, &until);
        if (w == ETIMEDOUT && !j->done)
            break;
    }
    if (j->done) {
        s = j->rc == 0 && j->res != NULL ? VMENC_OK : VMENC_E_KMS_UNAVAILABLE;
        if (s == VMENC_OK) {
            *out = j->res;
            j->res = NULL; /* ours now */
        }
    }
    pthread_mutex_unlock(&j->mu);
    job_release(j);
    return s;
}

static vmenc_status tcp_connect(const char *host, uint16_t port, uint64_t deadline_ms, int *out_fd) {
    char port_str[8];
    snprintf(port_str, sizeof(port_str), "%u", (unsigned)port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
    struct addrinfo *res = NULL;
    VMENC_GUARD(resolve(host, port_str, &hints, deadline_ms, &res));
    vmenc_status s = VMENC_E_KMS_UNAVAILABLE;
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        s = connect_one(ai, deadline_ms, out_fd);
        if (s == VMENC_OK || s == VMENC_E_KMS_TIMEOUT)
            break;
    }
    freeaddrinfo(res);
    return s;
}

/* ---- moving TLS records between the memory BIOs and the socket --------------- */

/* salvage_alert runs after a send failed (the peer reset or closed the
 * connection): a server that refused our certificate wrote its alert before
 * closing, and our request, unread, turned its close into a reset, so the
 * send fails while the alert still waits in our receive queue. Feed what
 * is there to OpenSSL so info_cb records the alert; the connection is dead
 * either way, so any application data read here is dropped (and wiped). */
static void salvage_alert(vmenc_tls_conn *c) {
    uint8_t buf[IO_CHUNK];
    for (int i = 0; i < 64; i++) {
        ssize_t r = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r <= 0)
            break;
        if (BIO_write(SSL_get_rbio(c->ssl), buf, (int)r) != (int)r)
            break;
    }
    size_t n = 0;
    while (c->alert < 0 && SSL_read_ex(c->ssl, buf, sizeof(buf), &n) == 1)
        ;
    OPENSSL_cleanse(buf, sizeof(buf));
    ERR_clear_error();
}

static vmenc_status flush_out(vmenc_tls_conn *c, uint64_t deadline_ms) {
    BIO *wbio = SSL_get_wbio(c->ssl);
    uint8_t buf[IO_CHUNK];
    size_t pending;
    while ((pending = BIO_ctrl_pending(wbio)) > 0) {
        int n = BIO_read(wbio, buf, (int)(pending < sizeof(buf) ? pending : sizeof(buf)));
        VMENC_ENSURE(n > 0, VMENC_E_KMS_TLS);
        size_t off = 0;
        while (off < (size_t)n) {
            ssize_t w = send(c->fd, buf + off, (size_t)n - off, MSG_NOSIGNAL);
            if (w > 0) {
                off += (size_t)w;
            } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                VMENC_GUARD(wait_fd(c->fd, POLLOUT, deadline_ms));
            } else if (w < 0 && errno == EINTR) {
                continue;
            } else {
                salvage_alert(c);
                return VMENC_E_KMS_UNAVAILABLE;
            }
        }
    }
    return VMENC_OK;
}

static vmenc_status fill_in(vmenc_tls_conn *c, uint64_t deadline_ms) {
    uint8_t buf[IO_CHUNK];
    for (;;) {
        VMENC_GUARD(wait_fd(c->fd, POLLIN, deadline_ms));
        ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
        if (r > 0) {
            VMENC_ENSURE(BIO_write(SSL_get_rbio(c->ssl), buf, (int)r) == (int)r, VMENC_E_NOMEM);
            return VMENC_OK;
        }
        if (r == 0)
            return VMENC_E_KMS_UNAVAILABLE; /* peer closed */
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return VMENC_E_KMS_UNAVAILABLE;
    }
}

/* step handles an SSL_* call that did not complete. */
static vmenc_status step(vmenc_tls_conn *c, int ssl_err, uint64_t deadline_ms) {
    switch (ssl_err) {
    case SSL_ERROR_WANT_READ:
        VMENC_GUARD(flush_out(c, deadline_ms));
        return fill_in(c, deadline_ms);
    case SSL_ERROR_WANT_WRITE:
        return flush_out(c, deadline_ms);
    case SSL_ERROR_ZERO_RETURN:
        return VMENC_E_KMS_UNAVAILABLE; /* close_notify */
    default:
        return VMENC_E_KMS_TLS;
    }
}

/* ---- handshake ------------------------------------------------------------------ */

bool vmenc_tls_alert_is_about_our_certificate(int alert) {
    switch (alert) {
    case 42:  /* bad_certificate */
    case 43:  /* unsupported_certificate */
    case 44:  /* certificate_revoked */
    case 45:  /* certificate_expired */
    case 46:  /* certificate_unknown */
    case 48:  /* unknown_ca */
    case 49:  /* access_denied */
    case 116: /* certificate_required (TLS 1.3) */
        return true;
    default:
        return false;
    }
}

static vmenc_status handshake_failure(const vmenc_tls_conn *c, vmenc_status io) {
    if (io == VMENC_E_KMS_TIMEOUT || io == VMENC_E_NOMEM)
        return io;
    long vr = SSL_get_verify_result(c->ssl);
    if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH ||
        vr == X509_V_ERR_EMAIL_MISMATCH)
        return VMENC_E_KMS_NAME_MISMATCH;
    if (vr != X509_V_OK)
        return VMENC_E_KMS_CERT_VERIFY;
    if (c->cert_requested || vmenc_tls_alert_is_about_our_certificate(c->alert))
        return VMENC_E_KMS_AUTH;
    /* The peer closed or reset the connection without a word of TLS (no
     * alert): a server going away, not a TLS failure - let a cluster fail
     * over. */
    if (io == VMENC_E_KMS_UNAVAILABLE && c->alert < 0)
        return VMENC_E_KMS_UNAVAILABLE;
    return VMENC_E_KMS_TLS;
}

static bool is_ip_literal(const char *s) {
    uint8_t buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static vmenc_status tls_setup(vmenc_tls_conn *c, SSL_CTX *ctx, const char *server_name) {
    c->ssl = SSL_new(ctx);
    VMENC_ENSURE(c->ssl != NULL, VMENC_E_NOMEM);
    SSL_set_app_data(c->ssl, c);
    BIO *rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new(BIO_s_mem());
    if (rbio == NULL || wbio == NULL) {
        BIO_free(rbio);
        BIO_free(wbio);
        return VMENC_E_NOMEM;
    }
    BIO_set_mem_eof_return(rbio, -1); /* empty = "want read", not EOF */
    SSL_set_bio(c->ssl, rbio, wbio);
    X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
    if (is_ip_literal(server_name)) {
        VMENC_ENSURE(X509_VERIFY_PARAM_set1_ip_asc(param, server_name) == 1, VMENC_E_INVALID_ARG);
    } else {
        /* DNS SANs only (RFC 6125 6.4.4): never fall back to the subject
         * CN, which OpenSSL otherwise does for a certificate without DNS
         * SANs. */
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                                   X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
        VMENC_ENSURE(SSL_set1_host(c->ssl, server_name) == 1, VMENC_E_INVALID_ARG);
        VMENC_ENSURE(SSL_set_tlsext_host_name(c->ssl, server_name) == 1, VMENC_E_INVALID_ARG);
    }
    SSL_set_connect_state(c->ssl);
    return VMENC_OK;
}

static vmenc_status handshake(vmenc_tls_conn *c, uint64_t deadline_ms) {
    for (;;) {
        ERR_clear_error();
        int r = SSL_do_handshake(c->ssl);
        /* Send what the handshake produced, alerts included. */
        vmenc_status fs = flush_out(c, deadline_ms);
        if (r == 1) {
            VMENC_GUARD(fs);
            break;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return handshake_failure(c, VMENC_E_KMS_TLS);
        if (fs != VMENC_OK)
            return handshake_failure(c, fs);
        vmenc_status s = e == SSL_ERROR_WANT_READ ? fill_in(c, deadline_ms) : VMENC_OK;
        if (s != VMENC_OK)
            return handshake_failure(c, s);
    }
    /* SSL_VERIFY_PEER already failed the handshake on a bad chain or name;
     * check again that a verified certificate is really there. */
    X509 *peer = SSL_get1_peer_certificate(c->ssl);
    VMENC_ENSURE(peer != NULL, VMENC_E_KMS_CERT_VERIFY);
    X509_free(peer);
    VMENC_ENSURE(SSL_get_verify_result(c->ssl) == X509_V_OK, VMENC_E_KMS_CERT_VERIFY);
    VMENC_ENSURE(SSL_version(c->ssl) >= TLS1_2_VERSION, VMENC_E_KMS_TLS);
    return VMENC_OK;
}

vmenc_status vmenc_tls_conn_open(vmenc_tls_conn *c, SSL_CTX *ctx, const char *host, uint16_t port,
                                  const char *server_name, uint64_t deadline_ms) {
    VMENC_ENSURE_REF(c);
    VMENC_ENSURE_REF(ctx);
    VMENC_ENSURE_REF(host);
    VMENC_ENSURE_REF(server_name);
    vmenc_tls_conn_close(c);
    vmenc_status s = tcp_connect(host, port, deadline_ms, &c->fd);
    if (s == VMENC_OK)
        s = tls_setup(c, ctx, server_name);
    if (s == VMENC_OK)
        s = handshake(c, deadline_ms);
    ERR_clear_error();
    if (s != VMENC_OK)
        vmenc_tls_conn_close(c);
    return s;
}

/* ---- reading and writing ----------------------------------------------------------- */

vmenc_status vmenc_tls_conn_write(vmenc_tls_conn *c, const uint8_t *buf, size_t len, uint64_t deadline_ms) {
    size_t off = 0;
    while (off < len) {
        size_t n = 0;
        ERR_clear_error();
        if (SSL_write_ex(c->ssl, buf + off, len - off, &n) == 1) {
            off += n;
            continue;
        }
        VMENC_GUARD(step(c, SSL_get_error(c->ssl, 0), deadline_ms));
    }
    return flush_out(c, deadline_ms);
}

vmenc_status vmenc_tls_conn_read(vmenc_tls_conn *c, uint8_t *buf, size_t len, uint64_t deadline_ms,
                                 bool *got_bytes) {
    size_t off = 0;
    while (off < len) {
        size_t n = 0;
        ERR_clear_error();
        if (SSL_read_ex(c->ssl, buf + off, len - off, &n) == 1) {
            off += n;
            *got_bytes = true;
            continue;
        }
        VMENC_GUARD(step(c, SSL_get_error(c->ssl, 0), deadline_ms));
    }
    return VMENC_OK;
}
