/*
 * tests/test_kmip_tls.c - the KMIP transport against TLS servers of our own
 * on loopback (OpenSSL, in a thread of this test), for what a real PyKMIP
 * server cannot show: PyKMIP speaks only TLS 1.2 and answers correctly.
 *
 * Covered (issue 9): a TLS 1.3 server that rejects our client certificate
 * after the handshake (none, another CA's, an expired one) is
 * VMENC_E_KMS_AUTH and a cluster does not fail over on it; a server
 * certificate that names the host only in its subject CN is refused; a
 * hostile KMIP server whose GetAttributes reply is about another object or
 * carries two States is refused; name resolution is bounded by the deadline.
 * Issue 23: a server killed mid-exchange (after the handshake, after the
 * request, mid-answer; TLS 1.2 and 1.3) is "unavailable" and a cluster fails
 * over to the next; a Create whose request left is not failed over
 * (VMENC_E_OUTCOME_UNKNOWN); a certificate refusal stays VMENC_E_KMS_AUTH.
 *
 * Certificates are made here with OpenSSL's API in a temp dir (P-256).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/internal.h"
#include "kms/kmip/kmip_conn.h"
#include "net/tls_conn.h"
#include "kms/kmip/kmip_msg.h"
#include "kms/kmip/ttlv.h"
#include "vmenc/kms_kmip.h"

#define T_MS 15000u

static char g_dir[256];

static void path(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", g_dir, name); }

/* ---- certificates ---------------------------------------------------------------- */

static EVP_PKEY *new_key(void) {
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(k);
    return k;
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ex);
    assert_int_equal(X509_add_ext(cert, ex, -1), 1);
    X509_EXTENSION_free(ex);
}

typedef struct cert_spec {
    const char *cn;
    const char *san;      /* NULL: none */
    const char *eku;      /* "serverAuth", "clientAuth" or NULL (a CA) */
    long from_days, to_days;
} cert_spec;

static void write_pem(const char *name, X509 *cert, EVP_PKEY *key) {
    char p[PATH_MAX + 32];
    path(p, sizeof(p), name);
    size_t n = strlen(p);
    strcpy(p + n, ".crt");
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, cert), 1);
    fclose(f);
    strcpy(p + n, ".key");
    f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

/* make_cert makes |spec| signed by (|ca|, |ca_key|), or self-signed (a CA)
 * when |ca| is NULL, and writes NAME.crt / NAME.key. */
static void make_cert(const char *name, const cert_spec *spec, X509 *ca, EVP_PKEY *ca_key, X509 **out_cert,
                      EVP_PKEY **out_key) {
    static long serial = 1;
    EVP_PKEY *key = new_key();
    X509 *c = X509_new();
    assert_non_null(c);
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), serial++);
    X509_gmtime_adj(X509_getm_notBefore(c), spec->from_days * 86400L);
    X509_gmtime_adj(X509_getm_notAfter(c), spec->to_days * 86400L);
    X509_NAME *nm = X509_NAME_new();
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)spec->cn, -1, -1, 0);
    X509_set_subject_name(c, nm);
    X509_set_issuer_name(c, ca != NULL ? X509_get_subject_name(ca) : nm);
    X509_NAME_free(nm);
    X509_set_pubkey(c, key);
    X509 *issuer = ca != NULL ? ca : c;
    if (spec->eku == NULL) {
        add_ext(c, issuer, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(c, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(c, issuer, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(c, issuer, NID_key_usage, "critical,digitalSignature");
        add_ext(c, issuer, NID_ext_key_usage, spec->eku);
    }
    if (spec->san != NULL)
        add_ext(c, issuer, NID_subject_alt_name, spec->san);
    assert_true(X509_sign(c, ca_key != NULL ? ca_key : key, EVP_sha256()) > 0);
    write_pem(name, c, key);
    if (out_cert != NULL)
        *out_cert = c;
    else
        X509_free(c);
    if (out_key != NULL)
        *out_key = key;
    else
        EVP_PKEY_free(key);
}

static int group_setup(void **state) {
    snprintf(g_dir, sizeof(g_dir), "/tmp/vmenc-kmip-tls-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    X509 *ca, *other;
    EVP_PKEY *ca_key, *other_key;
    const cert_spec ca_spec = {"vmenc test CA", NULL, NULL, -1, 2};
    make_cert("ca", &ca_spec, NULL, NULL, &ca, &ca_key);
    const cert_spec other_spec = {"unrelated test CA", NULL, NULL, -1, 2};
    make_cert("other-ca", &other_spec, NULL, NULL, &other, &other_key);
    const cert_spec server = {"localhost", "DNS:localhost,IP:127.0.0.1", "serverAuth", -1, 2};
    make_cert("server", &server, ca, ca_key, NULL, NULL);
    const cert_spec server_cn = {"localhost", NULL, "serverAuth", -1, 2};
    make_cert("server-cn-only", &server_cn, ca, ca_key, NULL, NULL);
    const cert_spec client = {"kmip-test-client", NULL, "clientAuth", -1, 2};
    make_cert("client", &client, ca, ca_key, NULL, NULL);
    make_cert("foreign-client", &client, other, other_key, NULL, NULL);
    const cert_spec expired = {"kmip-test-client", NULL, "clientAuth", -30, -1};
    make_cert("expired-client", &expired, ca, ca_key, NULL, NULL);
    X509_free(ca);
    X509_free(other);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(other_key);
    return 0;
}

static int group_teardown(void **state) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- a TLS server in a thread --------------------------------------------------- */

/* answer_fn builds the reply to one KMIP request (|n| = its index on the
 * connection) into |out|; false: hang up instead. */
typedef bool (*answer_fn)(void *arg, int n, vmenc_cbb *out);

/* How a server dies as SIGKILL would end it: the kernel closes its socket
 * with no TLS word (no alert, no close_notify); SO_LINGER 0 makes that a
 * reset, as a close with unread data does. */
typedef enum kill_point {
    KILL_NONE,
    KILL_AFTER_HANDSHAKE,  /* handshake done, our request unread */
    KILL_AFTER_REQUEST,    /* request read, nothing answered */
    KILL_MID_RESPONSE,     /* half of the answer written */
} kill_point;

typedef struct server {
    int lfd, port;
    SSL_CTX *ctx;
    answer_fn answer;  /* NULL: complete the handshake, then hang up */
    void *arg;
    kill_point kill;
    int accepted;      /* SSL_accept result of the last connection (atomic) */
    int connections;
    pthread_t thread;
} server;

static int listen_local(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static bool ssl_read_all(SSL *ssl, uint8_t *buf, size_t len) {
    size_t off = 0;
    while (off < len) {
        size_t n = 0;
        if (SSL_read_ex(ssl, buf + off, len - off, &n) != 1)
            return false;
        off += n;
    }
    return true;
}

/* die_abruptly ends connection |ssl| on |fd| at |sv->kill|. */
static void die_abruptly(server *sv, SSL *ssl, int fd) {
    bool ok = true;
    uint8_t hdr[8];
    if (sv->kill >= KILL_AFTER_REQUEST) {
        ok = ssl_read_all(ssl, hdr, sizeof(hdr));
        uint32_t len = (uint32_t)hdr[4] << 24 | (uint32_t)hdr[5] << 16 | (uint32_t)hdr[6] << 8 | hdr[7];
        uint8_t *body = ok && len <= (1u << 20) ? malloc(len ? len : 1) : NULL;
        ok = body != NULL && ssl_read_all(ssl, body, len);
        free(body);
    }
    vmenc_cbb out;
    if (ok && sv->kill == KILL_MID_RESPONSE && sv->answer != NULL && vmenc_cbb_init(&out, 256) == VMENC_OK) {
        size_t w = 0;
        if (sv->answer(sv->arg, 0, &out) && vmenc_cbb_ok(&out))
            (void)SSL_write_ex(ssl, vmenc_cbb_data(&out), vmenc_cbb_len(&out) / 2, &w);
        vmenc_cbb_cleanup(&out);
    }
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    SSL_free(ssl);
}

static void serve_one(server *sv, int fd) {
    SSL *ssl = SSL_new(sv->ctx);
    SSL_set_fd(ssl, fd);
    int accepted = SSL_accept(ssl);
    __atomic_store_n(&sv->accepted, accepted, __ATOMIC_RELEASE);
    if (accepted == 1 && sv->kill != KILL_NONE) {
        die_abruptly(sv, ssl, fd);
        return;
    }
    for (int n = 0; accepted == 1 && sv->answer != NULL; n++) {
        uint8_t hdr[8];
        if (!ssl_read_all(ssl, hdr, sizeof(hdr)))
            break;
        uint32_t len = (uint32_t)hdr[4] << 24 | (uint32_t)hdr[5] << 16 | (uint32_t)hdr[6] << 8 | hdr[7];
        if (len > (1u << 20))
            break;
        uint8_t *body = malloc(len ? len : 1);
        bool ok = ssl_read_all(ssl, body, len);
        free(body);
        vmenc_cbb out;
        if (!ok || vmenc_cbb_init(&out, 256) != VMENC_OK)
            break;
        if (!sv->answer(sv->arg, n, &out)) {
            vmenc_cbb_cleanup(&out);
            break;
        }
        size_t w = 0;
        ok = vmenc_cbb_ok(&out) && SSL_write_ex(ssl, vmenc_cbb_data(&out), vmenc_cbb_len(&out), &w) == 1;
        vmenc_cbb_cleanup(&out);
        if (!ok)
            break;
    }
    if (accepted == 1) {
        /* Handshake done but nothing (more) to say: in TLS 1.3 a server
         * that rejects the client certificate never gets here (SSL_accept
         * fails and the alert is already sent). This one has accepted the
         * certificate: it reads the request (so its close is a clean FIN
         * after close_notify, not a reset) and hangs up. */
        uint8_t hdr[8];
        if (sv->answer == NULL)
            (void)ssl_read_all(ssl, hdr, sizeof(hdr));
        SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    close(fd);
}

static void *server_main(void *arg) {
    server *sv = arg;
    for (;;) {
        struct pollfd p = {.fd = sv->lfd, .events = POLLIN};
        if (poll(&p, 1, 200) <= 0) {
            if (sv->lfd < 0 || __atomic_load_n(&sv->port, __ATOMIC_ACQUIRE) == 0)
                return NULL;
            continue;
        }
        int fd = accept(sv->lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        __atomic_add_fetch(&sv->connections, 1, __ATOMIC_RELAXED);
        serve_one(sv, fd);
    }
}

/* server_start: TLS between |min_v| and |max_v|, server certificate NAME,
 * client certificates required and verified against ca.crt. */
static void server_start(server *sv, const char *cert_name, int min_v, int max_v) {
    char cert[PATH_MAX + 32], key[PATH_MAX + 32], ca[PATH_MAX + 32], n[64];
    snprintf(n, sizeof(n), "%s.crt", cert_name);
    path(cert, sizeof(cert), n);
    snprintf(n, sizeof(n), "%s.key", cert_name);
    path(key, sizeof(key), n);
    path(ca, sizeof(ca), "ca.crt");
    sv->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(sv->ctx);
    assert_int_equal(SSL_CTX_set_min_proto_version(sv->ctx, min_v), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(sv->ctx, max_v), 1);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(sv->ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(sv->ctx, key, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_load_verify_locations(sv->ctx, ca, NULL), 1);
    SSL_CTX_set_verify(sv->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    sv->accepted = 99;
    sv->lfd = listen_local(&sv->port);
    assert_int_equal(pthread_create(&sv->thread, NULL, server_main, sv), 0);
}

static void server_stop(server *sv) {
    __atomic_store_n(&sv->port, 0, __ATOMIC_RELEASE);
    pthread_join(sv->thread, NULL);
    close(sv->lfd);
    SSL_CTX_free(sv->ctx);
}

/* ---- the client side -------------------------------------------------------------- */

typedef struct client_opts {
    const char *cert;        /* file base name in g_dir; NULL: none */
    const char *host;        /* default 127.0.0.1 */
    const char *version;     /* default 1.4 (no DiscoverVersions round trip) */
    const char *extra;
} client_opts;

static vmenc_status make_client(int port, const client_opts *o, vmenc_kms_provider **out) {
    char ca[PATH_MAX + 32], cert[PATH_MAX + 64], key[PATH_MAX + 64], ver[32], addr[300], n[64];
    const char *opts[8];
    size_t k = 0;
    snprintf(ca, sizeof(ca), "ca=%s/ca.crt", g_dir);
    opts[k++] = ca;
    if (o->cert != NULL) {
        snprintf(n, sizeof(n), "%s.crt", o->cert);
        snprintf(cert, sizeof(cert), "cert=%s/%s", g_dir, n);
        snprintf(n, sizeof(n), "%s.key", o->cert);
        snprintf(key, sizeof(key), "key=%s/%s", g_dir, n);
        opts[k++] = cert;
        opts[k++] = key;
    }
    opts[k++] = "server_name=localhost";
    snprintf(ver, sizeof(ver), "kmip_version=%s", o->version != NULL ? o->version : "1.4");
    opts[k++] = ver;
    if (o->extra != NULL)
        opts[k++] = o->extra;
    opts[k] = NULL;
    snprintf(addr, sizeof(addr), "%s:%d", o->host != NULL ? o->host : "127.0.0.1", port);
    vmenc_kms_endpoint_config cfg = {.struct_size = sizeof(cfg), .type = "kmip", .address = addr,
                                     .options = opts};
    return vmenc_kms_provider_new_builtin(&cfg, out);
}

static vmenc_status health(int port, const client_opts *o, uint32_t timeout_ms) {
    vmenc_kms_provider *p = NULL;
    vmenc_status s = make_client(port, o, &p);
    if (s != VMENC_OK)
        return s;
    s = vmenc_kms_provider_health(p, timeout_ms);
    vmenc_kms_provider_free(p);
    return s;
}

/* ---- issue 9 #2: TLS 1.3 client certificate rejected after the handshake -------- */

static void test_tls13_rejected_client_certificate_is_auth(void **state) {
    server sv = {0};
    server_start(&sv, "server", TLS1_3_VERSION, TLS1_3_VERSION);
    static const char *const refused[] = {NULL, "foreign-client", "expired-client"};
    static const char *const what[] = {"no client certificate", "another CA's", "an expired one"};
    for (size_t i = 0; i < 3; i++) {
        client_opts o = {.cert = refused[i]};
        vmenc_status s = health(sv.port, &o, T_MS);
        print_message("TLS 1.3, %s: %s\n", what[i], vmenc_status_name(s));
        assert_int_equal(s, VMENC_E_KMS_AUTH);
        assert_int_not_equal(__atomic_load_n(&sv.accepted, __ATOMIC_ACQUIRE), 1); /* the server did refuse it */
    }
    /* Control: the right certificate passes the server's check; the server
     * then hangs up without a KMIP answer, which is "unavailable". */
    client_opts good = {.cert = "client"};
    assert_int_equal(health(sv.port, &good, T_MS), VMENC_E_KMS_UNAVAILABLE);
    assert_int_equal(__atomic_load_n(&sv.accepted, __ATOMIC_ACQUIRE), 1);
    server_stop(&sv);
}

/* The same rejection does not make a cluster fail over (the next endpoint
 * would reject the same certificate, and the operator must see "our
 * certificate is rejected", not "KMS down"). */
static void test_tls13_rejection_does_not_fail_over(void **state) {
    server sv = {0};
    server_start(&sv, "server", TLS1_3_VERSION, TLS1_3_VERSION);
    server second = {0};
    server_start(&second, "server", TLS1_2_VERSION, TLS1_3_VERSION);
    vmenc_kms_cluster_options co = {.struct_size = sizeof(co), .flags = VMENC_KMS_CLUSTER_NO_JITTER};
    vmenc_kms_cluster *c = NULL;
    assert_int_equal(vmenc_kms_cluster_new("tls13", &co, &c), VMENC_OK);
    client_opts o = {.cert = "expired-client"};
    vmenc_kms_provider *p = NULL;
    assert_int_equal(make_client(sv.port, &o, &p), VMENC_OK);
    assert_int_equal(vmenc_kms_cluster_take_endpoint(c, "a", p), VMENC_OK);
    assert_int_equal(make_client(second.port, &o, &p), VMENC_OK);
    assert_int_equal(vmenc_kms_cluster_take_endpoint(c, "b", p), VMENC_OK);
    vmenc_kek *k = NULL;
    size_t ep = 99;
    assert_int_equal(vmenc_kms_cluster_get_kek(c, "some-key", T_MS, &k, &ep), VMENC_E_KMS_AUTH);
    assert_null(k);
    assert_int_equal(vmenc_kms_cluster_num_failovers(c), 0);
    vmenc_kms_endpoint_info info = {.struct_size = sizeof(info)};
    assert_int_equal(vmenc_kms_cluster_endpoint_info(c, 0, &info), VMENC_OK);
    assert_int_equal(info.last_status, VMENC_E_KMS_AUTH);
    assert_int_equal(info.consecutive_failures, 0); /* an answer, not an outage: no back-off */
    vmenc_kms_cluster_free(c);
    server_stop(&second);
    server_stop(&sv);
}

/* ---- issue 9 #3: no fallback to the subject CN ------------------------------------ */

static void test_cn_only_server_certificate_is_refused(void **state) {
    for (int v = 0; v < 2; v++) {
        int ver = v == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
        server sv = {0};
        server_start(&sv, "server-cn-only", ver, ver);
        client_opts o = {.cert = "client"};
        assert_int_equal(health(sv.port, &o, T_MS), VMENC_E_KMS_NAME_MISMATCH);
        server_stop(&sv);
        /* Control: the same CA's certificate with the DNS SAN is accepted
         * (the server then hangs up: unavailable, not a name error). */
        server ok = {0};
        server_start(&ok, "server", ver, ver);
        assert_int_equal(health(ok.port, &o, T_MS), VMENC_E_KMS_UNAVAILABLE);
        assert_int_equal(__atomic_load_n(&ok.accepted, __ATOMIC_ACQUIRE), 1);
        server_stop(&ok);
    }
}

/* ---- issue 9 #4: a hostile server's Get + GetAttributes ------------------------- */

typedef enum reply_kind {
    REPLY_GOOD,            /* UID of the request, one State Active */
    REPLY_OTHER_UID,       /* GetAttributes about another object */
    REPLY_NO_UID,          /* GetAttributes without a UID */
    REPLY_TWO_UIDS,        /* GetAttributes with the right UID and another */
    REPLY_TWO_STATES,      /* Active first, then Deactivated */
    REPLY_GET_TWO_UIDS,    /* Get payload with the right UID and another */
} reply_kind;

typedef struct hostile {
    reply_kind kind;
    int major, minor;
} hostile;

static const uint8_t k_material[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                       17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static void add_state(vmenc_cbb *c, const hostile *h, uint32_t state) {
    if (h->major >= 2) {
        vmenc_ttlv_add_enum(c, KMIP_TAG_STATE, state);
        return;
    }
    size_t a = vmenc_ttlv_begin_struct(c, KMIP_TAG_ATTRIBUTE);
    vmenc_ttlv_add_text(c, KMIP_TAG_ATTRIBUTE_NAME, "State", 5);
    vmenc_ttlv_add_enum(c, KMIP_TAG_ATTRIBUTE_VALUE, state);
    vmenc_ttlv_end_struct(c, a);
}

static bool hostile_answer(void *arg, int n, vmenc_cbb *c) {
    const hostile *h = arg;
    const char *id = "key-1";
    size_t m = vmenc_ttlv_begin_struct(c, KMIP_TAG_RESPONSE_MESSAGE);
    size_t hd = vmenc_ttlv_begin_struct(c, KMIP_TAG_RESPONSE_HEADER);
    size_t pv = vmenc_ttlv_begin_struct(c, KMIP_TAG_PROTOCOL_VERSION);
    vmenc_ttlv_add_int(c, KMIP_TAG_PROTOCOL_VERSION_MAJOR, h->major);
    vmenc_ttlv_add_int(c, KMIP_TAG_PROTOCOL_VERSION_MINOR, h->minor);
    vmenc_ttlv_end_struct(c, pv);
    vmenc_ttlv_add_int(c, KMIP_TAG_BATCH_COUNT, 2);
    vmenc_ttlv_end_struct(c, hd);

    size_t it = vmenc_ttlv_begin_struct(c, KMIP_TAG_BATCH_ITEM);
    vmenc_ttlv_add_enum(c, KMIP_TAG_OPERATION, KMIP_OP_GET);
    vmenc_ttlv_add_enum(c, KMIP_TAG_RESULT_STATUS, KMIP_STATUS_SUCCESS);
    size_t pl = vmenc_ttlv_begin_struct(c, KMIP_TAG_RESPONSE_PAYLOAD);
    vmenc_ttlv_add_enum(c, KMIP_TAG_OBJECT_TYPE, KMIP_OBJECT_SYMMETRIC_KEY);
    vmenc_ttlv_add_text(c, KMIP_TAG_UNIQUE_IDENTIFIER, id, strlen(id));
    if (h->kind == REPLY_GET_TWO_UIDS)
        vmenc_ttlv_add_text(c, KMIP_TAG_UNIQUE_IDENTIFIER, "key-2", 5);
    size_t sk = vmenc_ttlv_begin_struct(c, KMIP_TAG_SYMMETRIC_KEY);
    size_t kb = vmenc_ttlv_begin_struct(c, KMIP_TAG_KEY_BLOCK);
    vmenc_ttlv_add_enum(c, KMIP_TAG_KEY_FORMAT_TYPE, KMIP_KEY_FORMAT_RAW);
    size_t kv = vmenc_ttlv_begin_struct(c, KMIP_TAG_KEY_VALUE);
    vmenc_ttlv_add_bytes(c, KMIP_TAG_KEY_MATERIAL, k_material, sizeof(k_material));
    vmenc_ttlv_end_struct(c, kv);
    vmenc_ttlv_add_enum(c, KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, KMIP_ALG_AES);
    vmenc_ttlv_add_int(c, KMIP_TAG_CRYPTOGRAPHIC_LENGTH, 256);
    vmenc_ttlv_end_struct(c, kb);
    vmenc_ttlv_end_struct(c, sk);
    vmenc_ttlv_end_struct(c, pl);
    vmenc_ttlv_end_struct(c, it);

    it = vmenc_ttlv_begin_struct(c, KMIP_TAG_BATCH_ITEM);
    vmenc_ttlv_add_enum(c, KMIP_TAG_OPERATION, KMIP_OP_GET_ATTRIBUTES);
    vmenc_ttlv_add_enum(c, KMIP_TAG_RESULT_STATUS, KMIP_STATUS_SUCCESS);
    pl = vmenc_ttlv_begin_struct(c, KMIP_TAG_RESPONSE_PAYLOAD);
    if (h->kind == REPLY_OTHER_UID)
        vmenc_ttlv_add_text(c, KMIP_TAG_UNIQUE_IDENTIFIER, "key-2", 5);
    else if (h->kind != REPLY_NO_UID)
        vmenc_ttlv_add_text(c, KMIP_TAG_UNIQUE_IDENTIFIER, id, strlen(id));
    if (h->kind == REPLY_TWO_UIDS)
        vmenc_ttlv_add_text(c, KMIP_TAG_UNIQUE_IDENTIFIER, "key-2", 5);
    size_t at = h->major >= 2 ? vmenc_ttlv_begin_struct(c, KMIP_TAG_ATTRIBUTES) : 0;
    add_state(c, h, KMIP_STATE_ACTIVE);
    if (h->kind == REPLY_TWO_STATES)
        add_state(c, h, KMIP_STATE_DEACTIVATED);
    if (h->major >= 2)
        vmenc_ttlv_end_struct(c, at);
    vmenc_ttlv_end_struct(c, pl);
    vmenc_ttlv_end_struct(c, it);
    vmenc_ttlv_end_struct(c, m);
    return true;
}

static vmenc_status hostile_get(reply_kind kind, const char *version) {
    hostile h = {.kind = kind, .major = version[0] - '0', .minor = version[2] - '0'};
    server sv = {.answer = hostile_answer, .arg = &h};
    server_start(&sv, "server", TLS1_2_VERSION, TLS1_3_VERSION);
    client_opts o = {.cert = "client", .version = version};
    vmenc_kms_provider *p = NULL;
    assert_int_equal(make_client(sv.port, &o, &p), VMENC_OK);
    vmenc_kek *k = NULL;
    vmenc_status s = vmenc_kms_provider_get_kek(p, "key-1", T_MS, &k);
    if (s == VMENC_OK) {
        vmenc_kek *want = NULL;
        assert_int_equal(vmenc_kek_new_from_bytes(k_material, sizeof(k_material), &want), VMENC_OK);
        assert_int_equal(vmenc_kek_equal(k, want), VMENC_OK);
        vmenc_kek_free(want);
    } else {
        assert_null(k);
    }
    vmenc_kek_free(k);
    vmenc_kms_provider_free(p);
    server_stop(&sv);
    return s;
}

static void test_get_attributes_must_name_the_key_once(void **state) {
    static const char *const versions[] = {"1.4", "2.0"};
    for (size_t v = 0; v < 2; v++) {
        const char *ver = versions[v];
        assert_int_equal(hostile_get(REPLY_GOOD, ver), VMENC_OK); /* control */
        assert_int_equal(hostile_get(REPLY_OTHER_UID, ver), VMENC_E_KMS_PROTOCOL);
        assert_int_equal(hostile_get(REPLY_NO_UID, ver), VMENC_E_KMS_PROTOCOL);
        assert_int_equal(hostile_get(REPLY_TWO_UIDS, ver), VMENC_E_KMS_PROTOCOL);
        assert_int_equal(hostile_get(REPLY_TWO_STATES, ver), VMENC_E_KMS_PROTOCOL);
        assert_int_equal(hostile_get(REPLY_GET_TWO_UIDS, ver), VMENC_E_KMS_PROTOCOL);
    }
}

/* ---- issue 23: a server killed mid-exchange is an outage, not a refusal ---------- */

/* two_servers: a cluster of a server that dies at |kill| and a good one
 * (TLS 1.2-1.3), both requiring our certificate and accepting it. */
typedef struct pair {
    server dying, good;
    hostile h;
    vmenc_kms_cluster *c;
} pair;

static void pair_start(pair *p, kill_point kill, int tls_version) {
    memset(p, 0, sizeof(*p));
    p->h = (hostile){.kind = REPLY_GOOD, .major = 1, .minor = 4};
    p->dying = (server){.answer = hostile_answer, .arg = &p->h, .kill = kill};
    p->good = (server){.answer = hostile_answer, .arg = &p->h};
    server_start(&p->dying, "server", tls_version, tls_version);
    server_start(&p->good, "server", TLS1_2_VERSION, TLS1_3_VERSION);
    vmenc_kms_cluster_options co = {.struct_size = sizeof(co), .flags = VMENC_KMS_CLUSTER_NO_JITTER};
    assert_int_equal(vmenc_kms_cluster_new("pair", &co, &p->c), VMENC_OK);
    client_opts o = {.cert = "client"};
    vmenc_kms_provider *prov = NULL;
    assert_int_equal(make_client(p->dying.port, &o, &prov), VMENC_OK);
    assert_int_equal(vmenc_kms_cluster_take_endpoint(p->c, "dying", prov), VMENC_OK);
    assert_int_equal(make_client(p->good.port, &o, &prov), VMENC_OK);
    assert_int_equal(vmenc_kms_cluster_take_endpoint(p->c, "good", prov), VMENC_OK);
}

static void pair_stop(pair *p) {
    vmenc_kms_cluster_free(p->c);
    server_stop(&p->good);
    server_stop(&p->dying);
}

/* A Get on a server killed right after the TLS 1.3 handshake, after
 * reading the request, or half-way through its answer (TLS 1.2 and 1.3):
 * VMENC_E_KMS_UNAVAILABLE on that endpoint, and the cluster fails over to
 * the other, which serves the key. (Before issue 23 the reset right after a
 * TLS 1.3 handshake read as VMENC_E_KMS_AUTH: no failover, a failed open.) */
static void test_server_killed_mid_exchange_fails_over(void **state) {
    static const kill_point kills[] = {KILL_AFTER_HANDSHAKE, KILL_AFTER_REQUEST, KILL_MID_RESPONSE};
    static const char *const names[] = {"after the handshake", "after the request", "mid-response"};
    for (int v = 0; v < 2; v++) {
        int ver = v == 0 ? TLS1_3_VERSION : TLS1_2_VERSION;
        for (size_t i = 0; i < 3; i++) {
            pair p;
            pair_start(&p, kills[i], ver);
            vmenc_kek *k = NULL;
            size_t ep = 99;
            vmenc_status s = vmenc_kms_cluster_get_kek(p.c, "key-1", T_MS, &k, &ep);
            vmenc_kms_endpoint_info info = {.struct_size = sizeof(info)};
            assert_int_equal(vmenc_kms_cluster_endpoint_info(p.c, 0, &info), VMENC_OK);
            print_message("TLS 1.%d, killed %s: %s, first endpoint %s\n", v == 0 ? 3 : 2, names[i],
                          vmenc_status_name(s), vmenc_status_name((vmenc_status)info.last_status));
            assert_int_equal(s, VMENC_OK);
            assert_int_equal(ep, 1);
            assert_int_equal(info.last_status, VMENC_E_KMS_UNAVAILABLE);
            assert_int_equal(vmenc_kms_cluster_num_failovers(p.c), 1);
            assert_true(__atomic_load_n(&p.dying.connections, __ATOMIC_RELAXED) >= 1);
            vmenc_kek_free(k);
            pair_stop(&p);
        }
    }
}

/* A Create whose request reached a server that then died is not sent to
 * the next server (it may have made a key there): VMENC_E_OUTCOME_UNKNOWN,
 * and the other server never hears of it. A Create that never left (the
 * server refuses the connection) does fail over. */
static void test_create_is_not_failed_over_once_sent(void **state) {
    for (int v = 0; v < 2; v++) {
        pair p;
        pair_start(&p, KILL_AFTER_REQUEST, v == 0 ? TLS1_3_VERSION : TLS1_2_VERSION);
        char id[VMENC_KMS_KEY_ID_CAP];
        size_t ep = 99;
        assert_int_equal(vmenc_kms_cluster_create_kek(p.c, NULL, T_MS, id, sizeof(id), &ep),
                         VMENC_E_OUTCOME_UNKNOWN);
        assert_int_equal(vmenc_kms_cluster_num_failovers(p.c), 0);
        assert_int_equal(__atomic_load_n(&p.good.connections, __ATOMIC_RELAXED), 0);
        pair_stop(&p);
    }
    /* control: nothing listens on the first endpoint - the Create fails over
     * (the good server's reply is a Get's, so the answer is refused as a
     * protocol error: what matters is that it was asked) */
    pair p;
    pair_start(&p, KILL_NONE, TLS1_3_VERSION);
    __atomic_store_n(&p.dying.port, 0, __ATOMIC_RELEASE);
    pthread_join(p.dying.thread, NULL);
    close(p.dying.lfd);
    char id[VMENC_KMS_KEY_ID_CAP];
    size_t ep = 99;
    vmenc_status s = vmenc_kms_cluster_create_kek(p.c, NULL, T_MS, id, sizeof(id), &ep);
    assert_int_not_equal(s, VMENC_E_OUTCOME_UNKNOWN);
    assert_int_equal(vmenc_kms_cluster_num_failovers(p.c), 1);
    assert_int_equal(__atomic_load_n(&p.good.connections, __ATOMIC_RELAXED), 1);
    vmenc_kms_cluster_free(p.c);
    server_stop(&p.good);
    SSL_CTX_free(p.dying.ctx);
}

/* The other side of the rule: a server that refuses our certificate (it
 * trusts another CA), under TLS 1.2 and 1.3, is VMENC_E_KMS_AUTH with no
 * failover, every time (the alert is read even when the reset of the
 * server's close meets our request first). */
static void test_certificate_refusal_is_auth_every_time(void **state) {
    for (int v = 0; v < 2; v++) {
        int ver = v == 0 ? TLS1_3_VERSION : TLS1_2_VERSION;
        pair p;
        pair_start(&p, KILL_NONE, ver);
        vmenc_kms_cluster_free(p.c);
        assert_int_equal(vmenc_kms_cluster_new("refusing", NULL, &p.c), VMENC_OK);
        client_opts o = {.cert = "foreign-client"};
        vmenc_kms_provider *prov = NULL;
        assert_int_equal(make_client(p.dying.port, &o, &prov), VMENC_OK);
        assert_int_equal(vmenc_kms_cluster_take_endpoint(p.c, "refusing", prov), VMENC_OK);
        assert_int_equal(make_client(p.good.port, &o, &prov), VMENC_OK);
        assert_int_equal(vmenc_kms_cluster_take_endpoint(p.c, "second", prov), VMENC_OK);
        for (int i = 0; i < 20; i++) {
            vmenc_kek *k = NULL;
            vmenc_status s = vmenc_kms_cluster_get_kek(p.c, "key-1", T_MS, &k, NULL);
            if (s != VMENC_E_KMS_AUTH)
                print_message("TLS 1.%d, round %d: %s\n", v == 0 ? 3 : 2, i, vmenc_status_name(s));
            assert_int_equal(s, VMENC_E_KMS_AUTH);
            assert_null(k);
        }
        assert_int_equal(vmenc_kms_cluster_num_failovers(p.c), 0);
        assert_int_equal(__atomic_load_n(&p.good.connections, __ATOMIC_RELAXED), 0);
        pair_stop(&p);
    }
}

/* ---- issue 9 #6: name resolution within the deadline ------------------------------ */

typedef struct slow_resolver {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool release;
    int entered, returned;
} slow_resolver;

static slow_resolver g_slow = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, 0};

/* A resolver that hangs like one waiting for a dead DNS server: until the
 * test releases it (or, so the unfixed code ends too, for 20 s), then
 * fails the way glibc does after its timeouts. */
static int hanging_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                               struct addrinfo **res) {
    pthread_mutex_lock(&g_slow.mu);
    g_slow.entered++;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    while (!g_slow.release)
        if (pthread_cond_timedwait(&g_slow.cv, &g_slow.mu, &until) == ETIMEDOUT)
            break;
    g_slow.returned++;
    pthread_mutex_unlock(&g_slow.mu);
    return EAI_AGAIN;
}

static void test_resolution_is_bounded_by_the_deadline(void **state) {
    int port;
    int lfd = listen_local(&port); /* never reached */
    vmenc_net_set_resolver_for_testing(hanging_getaddrinfo);
    client_opts o = {.cert = "client", .host = "kms.example.invalid"};
    vmenc_status s = health(port, &o, 300);
    pthread_mutex_lock(&g_slow.mu);
    int entered = g_slow.entered, returned = g_slow.returned;
    pthread_mutex_unlock(&g_slow.mu);
    /* The call came back while the resolver still hung. */
    assert_int_equal(entered, 1);
    assert_int_equal(returned, 0);
    assert_int_equal(s, VMENC_E_KMS_TIMEOUT);
    /* Let the abandoned lookup finish; it cleans up after itself. */
    pthread_mutex_lock(&g_slow.mu);
    g_slow.release = true;
    pthread_cond_broadcast(&g_slow.cv);
    pthread_mutex_unlock(&g_slow.mu);
    for (;;) {
        pthread_mutex_lock(&g_slow.mu);
        returned = g_slow.returned;
        pthread_mutex_unlock(&g_slow.mu);
        if (returned == 1)
            break;
        usleep(1000);
    }
    usleep(50000); /* the resolver thread frees its job after returning */
    /* A resolver that answers in time and fails: unavailable. */
    s = health(port, &o, T_MS);
    assert_int_equal(s, VMENC_E_KMS_UNAVAILABLE);
    vmenc_net_set_resolver_for_testing(NULL);
    usleep(50000);
    /* The real resolver, through the thread, finds localhost. */
    server sv = {0};
    server_start(&sv, "server", TLS1_2_VERSION, TLS1_3_VERSION);
    client_opts by_name = {.cert = "client", .host = "localhost"};
    assert_int_equal(health(sv.port, &by_name, T_MS), VMENC_E_KMS_UNAVAILABLE);
    assert_int_equal(__atomic_load_n(&sv.accepted, __ATOMIC_ACQUIRE), 1); /* resolved and connected */
    server_stop(&sv);
    close(lfd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls13_rejected_client_certificate_is_auth),
        cmocka_unit_test(test_tls13_rejection_does_not_fail_over),
        cmocka_unit_test(test_cn_only_server_certificate_is_refused),
        cmocka_unit_test(test_get_attributes_must_name_the_key_once),
        cmocka_unit_test(test_resolution_is_bounded_by_the_deadline),
        cmocka_unit_test(test_server_killed_mid_exchange_fails_over),
        cmocka_unit_test(test_create_is_not_failed_over_once_sent),
        cmocka_unit_test(test_certificate_refusal_is_auth_every_time),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
