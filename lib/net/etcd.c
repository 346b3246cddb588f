/*
 * lib/net/etcd.c - the etcd v3 JSON-gateway client of lib/net/etcd.h: builds
 * each request's JSON, sends it with libcurl (one kept easy handle, so one
 * kept mutual-TLS connection, per endpoint; a watch on a multi handle of
 * its own), fails over between endpoints and maps what came back to a
 * vmenc_status. The answers are parsed by etcd_parse.c. The gateway's
 * facts (paths, base64, int64 strings, omitted zero fields, stream
 * framing, fault timings) are in tests/support/etcd/README.md; the client's
 * rules in docs/cluster.md "The etcd client".
 *
 * Safety rule: a write is moved to another endpoint only when curl proves
 * nothing of the request was sent (connect or TLS handshake failed); once
 * sent, a timeout or a 5xx answer is VMENC_E_OUTCOME_UNKNOWN, never a
 * failure and never a silent retry, so a caller cannot apply an update
 * twice or believe a write that happened did not.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <curl/curl.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/etcd.h"

#define ETCD_URL_MAX 256u
#define ETCD_ERR_MAX 256u

struct vmenc_etcd {
    char *endpoints_spec;                       /* as configured, for dup */
    char *ca_file, *cert_file, *key_file;
    uint32_t connect_timeout_ms, request_timeout_ms;
    bool http2;
    size_t num_endpoints;
    char endpoints[VMENC_ETCD_MAX_ENDPOINTS][ETCD_URL_MAX];
    pthread_mutex_t mu;                         /* guards everything below */
    CURL *handles[VMENC_ETCD_MAX_ENDPOINTS];    /* lazily made, kept (kept connection) */
    struct curl_slist *headers;
    bool fresh[VMENC_ETCD_MAX_ENDPOINTS];       /* the last attempt failed: next one on a new connection */
    size_t current;                             /* the endpoint that answered last */
    vmenc_etcd_counters counters;
    char last_error[ETCD_ERR_MAX];
};

/* ---- libcurl, once ------------------------------------------------------------ */

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_FAILED_INIT;
static void curl_init_once(void) { g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static vmenc_status ensure_curl(void) {
    pthread_once(&g_curl_once, curl_init_once);
    return g_curl_init_rc == CURLE_OK ? VMENC_OK : VMENC_E_INTERNAL;
}

/* ---- configuration ------------------------------------------------------------ */

/* endpoint_ok: "https://HOST:PORT" with nothing after the port (a path
 * would be joined with /v3/...). */
static bool endpoint_ok(const char *url, size_t len) {
    static const char k_scheme[] = "https://";
    if (len <= sizeof(k_scheme) - 1 || len >= ETCD_URL_MAX || strncmp(url, k_scheme, sizeof(k_scheme) - 1) != 0)
        return false;
    const char *host = url + sizeof(k_scheme) - 1;
    size_t rest = len - (sizeof(k_scheme) - 1);
    const char *colon = NULL;
    for (size_t i = 0; i < rest; i++) {
        char ch = host[i];
        if (ch == '/' || ch == '?' || ch == '#' || ch == '@' || ch <= ' ' || ch >= 0x7f)
            return false;
        if (ch == ':')
            colon = host + i;
    }
    if (colon == NULL || colon == host || colon + 1 == host + rest)
        return false;
    uint64_t port = 0;
    return vmenc_etcd_parse_u64(colon + 1, (size_t)(host + rest - colon - 1), &port) && port > 0 && port < 65536;
}

static vmenc_status split_endpoints(vmenc_etcd *c, const char *spec) {
    const char *p = spec;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        VMENC_ENSURE(c->num_endpoints < VMENC_ETCD_MAX_ENDPOINTS, VMENC_E_INVALID_ARG);
        VMENC_ENSURE(endpoint_ok(p, len), VMENC_E_INVALID_ARG);
        memcpy(c->endpoints[c->num_endpoints], p, len);
        c->endpoints[c->num_endpoints][len] = '\0';
        c->num_endpoints++;
        if (end == NULL)
            break;
        p = end + 1;
        VMENC_ENSURE(*p != '\0', VMENC_E_INVALID_ARG);
    }
    VMENC_ENSURE(c->num_endpoints > 0, VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

vmenc_status vmenc_etcd_new(const vmenc_etcd_config *cfg, vmenc_etcd **out) {
    VMENC_ENSURE(cfg != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(cfg->struct_size >= sizeof(*cfg), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(cfg->endpoints != NULL && cfg->ca_file != NULL && cfg->cert_file != NULL && cfg->key_file != NULL,
                 VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());
    VMENC_GUARD(ensure_curl());
    vmenc_etcd *c = calloc(1, sizeof(*c));
    VMENC_ENSURE(c != NULL, VMENC_E_NOMEM);
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return VMENC_E_NOMEM;
    }
    vmenc_status st;
    c->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : VMENC_ETCD_DEFAULT_CONNECT_TIMEOUT_MS;
    c->request_timeout_ms = cfg->request_timeout_ms ? cfg->request_timeout_ms : VMENC_ETCD_DEFAULT_REQUEST_TIMEOUT_MS;
    c->http2 = cfg->http2;
    c->endpoints_spec = strdup(cfg->endpoints);
    c->ca_file = strdup(cfg->ca_file);
    c->cert_file = strdup(cfg->cert_file);
    c->key_file = strdup(cfg->key_file);
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    VMENC_ENSURE_GOTO(st, c->endpoints_spec && c->ca_file && c->cert_file && c->key_file && c->headers,
                      VMENC_E_NOMEM, fail);
    VMENC_GUARD_GOTO(st, split_endpoints(c, cfg->endpoints), fail);
    *out = c;
    return VMENC_OK;
fail:
    vmenc_etcd_free(c);
    return st;
}

vmenc_status vmenc_etcd_dup(const vmenc_etcd *c, vmenc_etcd **out) {
    VMENC_ENSURE(c != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vmenc_etcd_config cfg = {.struct_size = sizeof(cfg),
                             .endpoints = c->endpoints_spec,
                             .ca_file = c->ca_file,
                             .cert_file = c->cert_file,
                             .key_file = c->key_file,
                             .connect_timeout_ms = c->connect_timeout_ms,
                             .request_timeout_ms = c->request_timeout_ms,
                             .http2 = c->http2};
    return vmenc_etcd_new(&cfg, out);
}

void vmenc_etcd_free(vmenc_etcd *c) {
    if (c == NULL)
        return;
    for (size_t i = 0; i < VMENC_ETCD_MAX_ENDPOINTS; i++)
        if (c->handles[i] != NULL)
            curl_easy_cleanup(c->handles[i]);
    curl_slist_free_all(c->headers);
    free(c->endpoints_spec);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

size_t vmenc_etcd_num_endpoints(const vmenc_etcd *c) { return c != NULL ? c->num_endpoints : 0; }

const char *vmenc_etcd_endpoint(const vmenc_etcd *c, size_t i) {
    return c != NULL && i < c->num_endpoints ? c->endpoints[i] : "";
}

void vmenc_etcd_last_error(vmenc_etcd *c, char *buf, size_t cap) {
    if (c == NULL || buf == NULL || cap == 0)
        return;
    pthread_mutex_lock(&c->mu);
    snprintf(buf, cap, "%s", c->last_error);
    pthread_mutex_unlock(&c->mu);
}

void vmenc_etcd_counters_get(vmenc_etcd *c, vmenc_etcd_counters *out) {
    if (c == NULL || out == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    *out = c->counters;
    pthread_mutex_unlock(&c->mu);
}

/* ---- one HTTP exchange ----------------------------------------------------------- */

/* set_error records "<endpoint>: <message>" as the last error (truncated
 * to fit; never holds request or response bytes). Called with c->mu held. */
__attribute__((format(printf, 3, 4))) static void set_error(vmenc_etcd *c, size_t i, const char *fmt, ...) {
    size_t n = strlen(c->endpoints[i]);
    if (n + 2 >= sizeof(c->last_error))
        n = sizeof(c->last_error) - 3;
    memcpy(c->last_error, c->endpoints[i], n);
    memcpy(c->last_error + n, ": ", 2);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->last_error + n + 2, sizeof(c->last_error) - n - 2, fmt, ap);
    va_end(ap);
}

typedef struct body_buf {
    uint8_t *data;
    size_t len, cap;
    bool too_large;
} body_buf;

static bool body_append(body_buf *b, const void *p, size_t n) {
    if (n > VMENC_ETCD_RESPONSE_MAX - b->len) {
        b->too_large = true;
        return false;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (d == NULL)
            return false;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return true;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *arg) {
    size_t n = size * nmemb;
    return body_append(arg, ptr, n) ? n : 0;
}

/* set_tls: the options every handle of |c| shares. */
static void set_common(const vmenc_etcd *c, CURL *h) {
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert_file);
    curl_easy_setopt(h, CURLOPT_SSLKEY, c->key_file);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, c->http2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
}

typedef enum attempt_kind {
    ATTEMPT_OK,           /* HTTP answer in |body| (any status) */
    ATTEMPT_NOT_SENT,     /* nothing of the request left: safe to try elsewhere */
    ATTEMPT_LOST,         /* sent, no complete answer */
    ATTEMPT_FATAL,        /* a local problem another endpoint will not fix */
} attempt_kind;

/* kept_connection_closed: has the server closed the connection kept from
 * the last request (a killed member's kernel sends FIN)? An idle HTTP
 * connection has nothing to read; readable means closed or out of step.
 * Reusing it would send the request into a dead socket and turn a plain
 * "member down" into "outcome unknown". */
static bool kept_connection_closed(CURL *h) {
    curl_socket_t sock = CURL_SOCKET_BAD;
    if (curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &sock) != CURLE_OK || sock == CURL_SOCKET_BAD)
        return false;
    struct pollfd p = {.fd = sock, .events = POLLIN | POLLRDHUP};
    return poll(&p, 1, 0) > 0;
}

/* prereq_cb runs when the connection (new or reused) is ready, just
 * before curl sends the request: from then on the request may reach the
 * server, so a write that fails later has an unknown outcome. Before it,
 * the connection or TLS handshake failed and nothing was sent. */
static int prereq_cb(void *arg, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port) {
    (void)conn_primary_ip;
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    *(bool *)arg = true;
    return CURL_PREREQFUNC_OK;
}

static vmenc_status status_of_curl(CURLcode rc) {
    switch (rc) {
    case CURLE_OUT_OF_MEMORY: return VMENC_E_NOMEM;
    case CURLE_PEER_FAILED_VERIFICATION: return VMENC_E_KMS_CERT_VERIFY;
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED: return VMENC_E_KMS_TLS;
    default: return VMENC_E_CONTROL_UNAVAILABLE;
    }
}

/* attempt: one POST of |body| to |path| at endpoint |i|. */
static attempt_kind attempt(vmenc_etcd *c, size_t i, const char *path, const char *body, size_t body_len,
                            body_buf *resp, long *http_code, vmenc_status *st) {
    *st = VMENC_OK;
    *http_code = 0;
    if (c->handles[i] == NULL) {
        c->handles[i] = curl_easy_init();
        if (c->handles[i] == NULL) {
            *st = VMENC_E_NOMEM;
            return ATTEMPT_FATAL;
        }
        set_common(c, c->handles[i]);
    }
    CURL *h = c->handles[i];
    char url[ETCD_URL_MAX + 64];
    snprintf(url, sizeof(url), "%s%s", c->endpoints[i], path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->request_timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    char errbuf[CURL_ERROR_SIZE];
    errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    resp->len = 0;
    resp->too_large = false;
    bool sent = false;
    if (!c->fresh[i] && kept_connection_closed(h))
        c->fresh[i] = true;
    curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, c->fresh[i] ? 1L : 0L);
    c->fresh[i] = false;
    curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, prereq_cb);
    curl_easy_setopt(h, CURLOPT_PREREQDATA, &sent);
    c->counters.requests++;
    CURLcode rc = curl_easy_perform(h);
    long connects = 0;
    if (curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK && connects > 0)
        c->counters.connects += (uint64_t)connects;
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(h, CURLOPT_PREREQDATA, NULL);
    curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, NULL);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, http_code);
        return ATTEMPT_OK;
    }
    set_error(c, i, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    if (rc == CURLE_WRITE_ERROR) {
        *st = resp->too_large ? VMENC_E_TOO_LARGE : VMENC_E_NOMEM;
        return ATTEMPT_FATAL;
    }
    *st = status_of_curl(rc);
    if (*st == VMENC_E_NOMEM || *st == VMENC_E_KMS_TLS)
        return ATTEMPT_FATAL;
    /* the connection may be half dead: start the next request on a fresh one */
    c->fresh[i] = true;
    return sent ? ATTEMPT_LOST : ATTEMPT_NOT_SENT;
}

/* status_of_error: an etcd error answer (HTTP |http| with gRPC |code|). */
static vmenc_status status_of_error(long http, int code, const char *msg) {
    switch (code) {
    case 3: return VMENC_E_INVALID_ARG;                 /* InvalidArgument */
    case 5: return strstr(msg, "lease") != NULL ? VMENC_E_LEASE_EXPIRED : VMENC_E_NOT_FOUND;
    case 6: return VMENC_E_EXISTS;                      /* AlreadyExists (lease ID taken) */
    case 7:
    case 16: return VMENC_E_DENIED;                     /* PermissionDenied, Unauthenticated */
    case 8: return VMENC_E_TOO_LARGE;                   /* ResourceExhausted: request too large */
    case 9: return VMENC_E_BAD_STATE;                   /* FailedPrecondition */
    case 11: return VMENC_E_CONFLICT;                   /* OutOfRange: revision compacted / in the future */
    case 12: return VMENC_E_UNSUPPORTED;                /* Unimplemented */
    default: break;
    }
    return http >= 500 ? VMENC_E_CONTROL_UNAVAILABLE : VMENC_E_INVALID_ARG;
}

/* retryable: an answer that says "this member cannot serve now" (no
 * leader, quorum lost, request timed out, gateway lost its backend). */
static bool retryable(long http, int code) {
    return http >= 500 || code == 14 || code == 2 || code == 4 || code == 10;
}

typedef enum call_mode {
    CALL_READ,          /* idempotent: fail over on anything transient */
    CALL_WRITE,         /* fail over only while nothing was sent */
} call_mode;

/* call: POST |req| (a JSON object, consumed) to |path| on the current
 * endpoint, failing over as |mode| allows (|only| < num_endpoints: that
 * endpoint alone). On VMENC_OK |*out| is the 200 body (malloc'd, NUL
 * terminated) the caller frees. */
static vmenc_status call(vmenc_etcd *c, const char *path, json_object *req, call_mode mode, size_t only,
                         uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    VMENC_ENSURE(req != NULL, VMENC_E_NOMEM);
    size_t body_len = 0;
    const char *body = json_object_to_json_string_length(req, JSON_C_TO_STRING_PLAIN, &body_len);
    if (body == NULL) {
        json_object_put(req);
        return VMENC_E_NOMEM;
    }
    body_buf resp = {0};
    vmenc_status final = VMENC_E_CONTROL_UNAVAILABLE;
    pthread_mutex_lock(&c->mu);
    size_t n = only < c->num_endpoints ? 1 : c->num_endpoints;
    size_t start = only < c->num_endpoints ? only : c->current;
    vmenc_status tls_seen = VMENC_OK;
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % c->num_endpoints;
        if (k > 0)
            c->counters.failovers++;
        long http = 0;
        vmenc_status st;
        attempt_kind ak = attempt(c, i, path, body, body_len, &resp, &http, &st);
        if (ak == ATTEMPT_FATAL) {
            final = st;
            break;
        }
        if (ak == ATTEMPT_NOT_SENT) {
            if (st == VMENC_E_KMS_CERT_VERIFY)
                tls_seen = st;
            continue;
        }
        if (ak == ATTEMPT_LOST) {
            if (mode == CALL_WRITE) {
                final = VMENC_E_OUTCOME_UNKNOWN;
                break;
            }
            continue;
        }
        if (http == 200) {
            c->current = i;
            c->last_error[0] = '\0';
            *out = resp.data;
            *out_len = resp.len;
            resp.data = NULL;
            final = VMENC_OK;
            break;
        }
        int code = 0;
        char msg[160];
        if (vmenc_etcd_parse_error(resp.data, resp.len, &code, msg, sizeof(msg)) != VMENC_OK) {
            code = 0;
            snprintf(msg, sizeof(msg), "HTTP %ld without an etcd error body", http);
            if (http == 404) {
                /* the gateway does not know the path: not an etcd 3.4 gateway */
                set_error(c, i, "%s", msg);
                final = VMENC_E_UNSUPPORTED;
                break;
            }
        }
        set_error(c, i, "HTTP %ld code %d: %s", http, code, msg);
        if (retryable(http, code)) {
            if (mode == CALL_WRITE) {
                final = VMENC_E_OUTCOME_UNKNOWN;
                break;
            }
            continue;
        }
        c->current = i; /* it answered: it is alive */
        final = status_of_error(http, code, msg);
        break;
    }
    if (final == VMENC_E_CONTROL_UNAVAILABLE && tls_seen != VMENC_OK)
        final = tls_seen;
    pthread_mutex_unlock(&c->mu);
    free(resp.data);
    json_object_put(req);
    return final;
}

/* ---- request building ----------------------------------------------------------- */

/* The builders return false on allocation failure; the JSON object then
 * holds what was added so far and is freed by the caller. */
static bool add_b64(json_object *o, const char *name, const uint8_t *p, size_t len) {
    size_t cap = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
    char *b = malloc(cap);
    if (b == NULL)
        return false;
    sodium_bin2base64(b, cap, len ? p : (const uint8_t *)"", len, sodium_base64_VARIANT_ORIGINAL);
    json_object *s = json_object_new_string_len(b, (int)strlen(b));
    free(b);
    return s != NULL && json_object_object_add(o, name, s) == 0;
}

static bool add_i64(json_object *o, const char *name, int64_t v) {
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", (long long)v);
    json_object *s = json_object_new_string(buf);
    return s != NULL && json_object_object_add(o, name, s) == 0;
}

static bool add_bool(json_object *o, const char *name, bool v) {
    json_object *b = json_object_new_boolean(v);
    return b != NULL && json_object_object_add(o, name, b) == 0;
}

static bool add_str(json_object *o, const char *name, const char *v) {
    json_object *s = json_object_new_string(v);
    return s != NULL && json_object_object_add(o, name, s) == 0;
}

static vmenc_status check_key(const uint8_t *key, size_t len) {
    VMENC_ENSURE(key != NULL && len > 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(len <= VMENC_ETCD_KEY_MAX, VMENC_E_TOO_LARGE);
    return VMENC_OK;
}

/* add_range_keys: "key" and, for a range, "range_end". */
static vmenc_status add_range_keys(json_object *o, const uint8_t *key, size_t key_len, const uint8_t *range_end,
                                   size_t range_end_len, bool prefix) {
    VMENC_GUARD(check_key(key, key_len));
    VMENC_ENSURE(!(prefix && range_end != NULL), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(range_end_len <= VMENC_ETCD_KEY_MAX, VMENC_E_TOO_LARGE);
    VMENC_ENSURE(add_b64(o, "key", key, key_len), VMENC_E_NOMEM);
    if (prefix) {
        uint8_t *end = malloc(key_len);
        VMENC_ENSURE(end != NULL, VMENC_E_NOMEM);
        size_t end_len = 0;
        vmenc_etcd_prefix_end(key, key_len, end, &end_len);
        bool ok = add_b64(o, "range_end", end, end_len);
        free(end);
        VMENC_ENSURE(ok, VMENC_E_NOMEM);
    } else if (range_end != NULL) {
        VMENC_ENSURE(range_end_len > 0, VMENC_E_INVALID_ARG);
        VMENC_ENSURE(add_b64(o, "range_end", range_end, range_end_len), VMENC_E_NOMEM);
    }
    return VMENC_OK;
}

static vmenc_status build_range(const vmenc_etcd_range_req *r, json_object *o) {
    VMENC_ENSURE_REF(r);
    VMENC_ENSURE(r->limit >= 0 && r->revision >= 0, VMENC_E_INVALID_ARG);
    VMENC_GUARD(add_range_keys(o, r->key, r->key_len, r->range_end, r->range_end_len, r->prefix));
    bool ok = true;
    if (r->limit > 0)
        ok = ok && add_i64(o, "limit", r->limit);
    if (r->revision > 0)
        ok = ok && add_i64(o, "revision", r->revision);
    if (r->serializable)
        ok = ok && add_bool(o, "serializable", true);
    if (r->keys_only)
        ok = ok && add_bool(o, "keys_only", true);
    if (r->count_only)
        ok = ok && add_bool(o, "count_only", true);
    /* paging relies on key order */
    ok = ok && add_str(o, "sort_order", "ASCEND") && add_str(o, "sort_target", "KEY");
    return ok ? VMENC_OK : VMENC_E_NOMEM;
}

static vmenc_status build_put(const vmenc_etcd_put_req *r, json_object *o) {
    VMENC_ENSURE_REF(r);
    VMENC_GUARD(check_key(r->key, r->key_len));
    VMENC_ENSURE(r->value != NULL || r->value_len == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(r->value_len <= VMENC_ETCD_VALUE_MAX, VMENC_E_TOO_LARGE);
    VMENC_ENSURE(r->lease >= 0, VMENC_E_INVALID_ARG);
    bool ok = add_b64(o, "key", r->key, r->key_len) && add_b64(o, "value", r->value, r->value_len);
    if (r->lease > 0)
        ok = ok && add_i64(o, "lease", r->lease);
    if (r->prev_kv)
        ok = ok && add_bool(o, "prev_kv", true);
    return ok ? VMENC_OK : VMENC_E_NOMEM;
}

static vmenc_status build_delete(const vmenc_etcd_delete_req *r, json_object *o) {
    VMENC_ENSURE_REF(r);
    VMENC_GUARD(add_range_keys(o, r->key, r->key_len, r->range_end, r->range_end_len, r->prefix));
    if (r->prev_kv)
        VMENC_ENSURE(add_bool(o, "prev_kv", true), VMENC_E_NOMEM);
    return VMENC_OK;
}

/* new_obj: an empty JSON object for a request. */
static vmenc_status new_obj(json_object **out) {
    *out = json_object_new_object();
    return *out != NULL ? VMENC_OK : VMENC_E_NOMEM;
}

/* kv_call: |o| (built with status |built|; consumed either way) posted to
 * |path|, its answer parsed as |type| into |out| (NULL: parsed, checked
 * and dropped). */
static vmenc_status kv_call(vmenc_etcd *c, const char *path, call_mode mode, vmenc_etcd_op_type type, json_object *o,
                            vmenc_status built, vmenc_etcd_result *out) {
    if (built != VMENC_OK) {
        json_object_put(o);
        return built;
    }
    uint8_t *body;
    size_t len;
    VMENC_GUARD(call(c, path, o, mode, SIZE_MAX, &body, &len));
    vmenc_etcd_result tmp;
    vmenc_status st = vmenc_etcd_parse_result(type, body, len, out != NULL ? out : &tmp);
    if (out == NULL)
        vmenc_etcd_result_cleanup(&tmp);
    free(body);
    return st;
}

/* ---- kv ---------------------------------------------------------------------------- */

vmenc_status vmenc_etcd_range(vmenc_etcd *c, const vmenc_etcd_range_req *req, vmenc_etcd_result *out) {
    VMENC_ENSURE(c != NULL && req != NULL && out != NULL, VMENC_E_INVALID_ARG);
    memset(out, 0, sizeof(*out));
    json_object *o;
    VMENC_GUARD(new_obj(&o));
    return kv_call(c, "/v3/kv/range", CALL_READ, VMENC_ETCD_OP_RANGE, o, build_range(req, o), out);
}

vmenc_status vmenc_etcd_put(vmenc_etcd *c, const vmenc_etcd_put_req *req, vmenc_etcd_result *out) {
    VMENC_ENSURE(c != NULL && req != NULL, VMENC_E_INVALID_ARG);
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    json_object *o;
    VMENC_GUARD(new_obj(&o));
    return kv_call(c, "/v3/kv/put", CALL_WRITE, VMENC_ETCD_OP_PUT, o, build_put(req, o), out);
}

vmenc_status vmenc_etcd_delete_range(vmenc_etcd *c, const vmenc_etcd_delete_req *req, vmenc_etcd_result *out) {
    VMENC_ENSURE(c != NULL && req != NULL, VMENC_E_INVALID_ARG);
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    json_object *o;
    VMENC_GUARD(new_obj(&o));
    return kv_call(c, "/v3/kv/deleterange", CALL_WRITE, VMENC_ETCD_OP_DELETE, o, build_delete(req, o), out);
}

/* ---- txn ----------------------------------------------------------------------------- */

static const char *const k_targets[] = {"VERSION", "CREATE", "MOD", "VALUE", "LEASE"};
static const char *const k_target_fields[] = {"version", "create_revision", "mod_revision", "value", "lease"};
static const char *const k_results[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};

static vmenc_status build_compare(const vmenc_etcd_compare *cmp, json_object *o) {
    VMENC_ENSURE((unsigned)cmp->target <= VMENC_ETCD_CMP_LEASE && (unsigned)cmp->result <= VMENC_ETCD_CMP_NOT_EQUAL,
                 VMENC_E_INVALID_ARG);
    VMENC_GUARD(add_range_keys(o, cmp->key, cmp->key_len, cmp->range_end, cmp->range_end_len, false));
    bool ok = add_str(o, "target", k_targets[cmp->target]) && add_str(o, "result", k_results[cmp->result]);
    if (cmp->target == VMENC_ETCD_CMP_VALUE) {
        VMENC_ENSURE(cmp->value != NULL || cmp->value_len == 0, VMENC_E_INVALID_ARG);
        VMENC_ENSURE(cmp->value_len <= VMENC_ETCD_VALUE_MAX, VMENC_E_TOO_LARGE);
        ok = ok && add_b64(o, "value", cmp->value, cmp->value_len);
    } else {
        VMENC_ENSURE(cmp->number >= 0, VMENC_E_INVALID_ARG);
        ok = ok && add_i64(o, k_target_fields[cmp->target], cmp->number);
    }
    return ok ? VMENC_OK : VMENC_E_NOMEM;
}

static vmenc_status build_ops(const vmenc_etcd_op *ops, size_t n, json_object *arr, bool *writes) {
    VMENC_ENSURE(n == 0 || ops != NULL, VMENC_E_INVALID_ARG);
    for (size_t i = 0; i < n; i++) {
        json_object *wrap, *inner;
        VMENC_GUARD(new_obj(&wrap));
        if (json_object_array_add(arr, wrap) != 0) {
            json_object_put(wrap);
            return VMENC_E_NOMEM;
        }
        VMENC_GUARD(new_obj(&inner));
        const char *name;
        vmenc_status st;
        switch (ops[i].type) {
        case VMENC_ETCD_OP_RANGE:
            name = "request_range";
            st = build_range(&ops[i].range, inner);
            break;
        case VMENC_ETCD_OP_PUT:
            name = "request_put";
            st = build_put(&ops[i].put, inner);
            *writes = true;
            break;
        case VMENC_ETCD_OP_DELETE:
            name = "request_delete_range";
            st = build_delete(&ops[i].del, inner);
            *writes = true;
            break;
        default:
            name = NULL;
            st = VMENC_E_INVALID_ARG;
            break;
        }
        if (st == VMENC_OK && json_object_object_add(wrap, name, inner) != 0)
            st = VMENC_E_NOMEM;
        if (st != VMENC_OK) {
            json_object_put(inner);
            return st;
        }
    }
    return VMENC_OK;
}

static vmenc_status build_txn(const vmenc_etcd_txn_req *r, json_object *o, bool *writes) {
    VMENC_ENSURE(r->num_compares == 0 || r->compares != NULL, VMENC_E_INVALID_ARG);
    json_object *cmps = json_object_new_array(), *succ = json_object_new_array(), *fail = json_object_new_array();
    bool ok = cmps != NULL && succ != NULL && fail != NULL;
    /* ownership moves to |o| as soon as each is added */
    ok = ok && json_object_object_add(o, "compare", cmps) == 0;
    if (!ok) {
        json_object_put(cmps);
        json_object_put(succ);
        json_object_put(fail);
        return VMENC_E_NOMEM;
    }
    if (json_object_object_add(o, "success", succ) != 0) {
        json_object_put(succ);
        json_object_put(fail);
        return VMENC_E_NOMEM;
    }
    if (json_object_object_add(o, "failure", fail) != 0) {
        json_object_put(fail);
        return VMENC_E_NOMEM;
    }
    for (size_t i = 0; i < r->num_compares; i++) {
        json_object *c;
        VMENC_GUARD(new_obj(&c));
        if (json_object_array_add(cmps, c) != 0) {
            json_object_put(c);
            return VMENC_E_NOMEM;
        }
        VMENC_GUARD(build_compare(&r->compares[i], c));
    }
    VMENC_GUARD(build_ops(r->success, r->num_success, succ, writes));
    VMENC_GUARD(build_ops(r->failure, r->num_failure, fail, writes));
    return VMENC_OK;
}

vmenc_status vmenc_etcd_txn(vmenc_etcd *c, const vmenc_etcd_txn_req *req, vmenc_etcd_txn_result *out) {
    VMENC_ENSURE(c != NULL && req != NULL && out != NULL, VMENC_E_INVALID_ARG);
    memset(out, 0, sizeof(*out));
    json_object *o;
    VMENC_GUARD(new_obj(&o));
    bool writes = false;
    vmenc_status st = build_txn(req, o, &writes);
    if (st != VMENC_OK) {
        json_object_put(o);
        return st;
    }
    uint8_t *body;
    size_t len;
    VMENC_GUARD(call(c, "/v3/kv/txn", o, writes ? CALL_WRITE : CALL_READ, SIZE_MAX, &body, &len));
    st = vmenc_etcd_parse_txn(body, len, out);
    free(body);
    if (st == VMENC_OK) {
        /* the branch that ran answers one response per operation */
        size_t want = out->succeeded ? req->num_success : req->num_failure;
        const vmenc_etcd_op *ops = out->succeeded ? req->success : req->failure;
        bool match = out->num_responses == want;
        for (size_t i = 0; match && i < want; i++)
            match = out->responses[i].type == ops[i].type;
        if (!match) {
            vmenc_etcd_txn_result_cleanup(out);
            st = VMENC_E_PARSE;
        }
    }
    return st;
}

/* ---- leases ---------------------------------------------------------------------------- */

static vmenc_status lease_call(vmenc_etcd *c, const char *path, json_object *o, call_mode mode, bool stream,
                               vmenc_etcd_lease_info *info) {
    uint8_t *body;
    size_t len;
    VMENC_GUARD(call(c, path, o, mode, SIZE_MAX, &body, &len));
    vmenc_status st = vmenc_etcd_parse_lease(body, len, stream, info);
    free(body);
    return st;
}

static vmenc_status lease_obj(int64_t id, json_object **out) {
    VMENC_ENSURE(id > 0, VMENC_E_INVALID_ARG);
    VMENC_GUARD(new_obj(out));
    if (!add_i64(*out, "ID", id)) {
        json_object_put(*out);
        return VMENC_E_NOMEM;
    }
    return VMENC_OK;
}

vmenc_status vmenc_etcd_lease_grant(vmenc_etcd *c, int64_t ttl_s, int64_t id, int64_t *out_id, int64_t *out_ttl_s) {
    VMENC_ENSURE(c != NULL && out_id != NULL && ttl_s > 0 && id >= 0, VMENC_E_INVALID_ARG);
    json_object *o;
    VMENC_GUARD(new_obj(&o));
    if (!add_i64(o, "TTL", ttl_s) || (id > 0 && !add_i64(o, "ID", id))) {
        json_object_put(o);
        return VMENC_E_NOMEM;
    }
    vmenc_etcd_lease_info info;
    VMENC_GUARD(lease_call(c, "/v3/lease/grant", o, CALL_WRITE, false, &info));
    VMENC_ENSURE(info.id > 0 && info.ttl > 0, VMENC_E_PARSE);
    *out_id = info.id;
    if (out_ttl_s != NULL)
        *out_ttl_s = info.ttl;
    return VMENC_OK;
}

vmenc_status vmenc_etcd_lease_keepalive_once(vmenc_etcd *c, int64_t id, int64_t *out_ttl_s) {
    VMENC_ENSURE(c != NULL, VMENC_E_INVALID_ARG);
    json_object *o;
    VMENC_GUARD(lease_obj(id, &o));
    vmenc_etcd_lease_info info;
    VMENC_GUARD(lease_call(c, "/v3/lease/keepalive", o, CALL_READ, true, &info));
    /* a lease that is gone answers 200 without TTL */
    VMENC_ENSURE(info.ttl > 0, VMENC_E_LEASE_EXPIRED);
    VMENC_ENSURE(info.id == id, VMENC_E_PARSE);
    if (out_ttl_s != NULL)
        *out_ttl_s = info.ttl;
    return VMENC_OK;
}

vmenc_status vmenc_etcd_lease_revoke(vmenc_etcd *c, int64_t id) {
    VMENC_ENSURE(c != NULL, VMENC_E_INVALID_ARG);
    json_object *o;
    VMENC_GUARD(lease_obj(id, &o));
    vmenc_etcd_lease_info info;
    return lease_call(c, "/v3/lease/revoke", o, CALL_WRITE, false, &info);
}

vmenc_status vmenc_etcd_lease_timetolive(vmenc_etcd *c, int64_t id, int64_t *out_ttl_s, int64_t *out_granted_s) {
    VMENC_ENSURE(c != NULL && out_ttl_s != NULL, VMENC_E_INVALID_ARG);
    json_object *o;
    VMENC_GUARD(lease_obj(id, &o));
    vmenc_etcd_lease_info info;
    VMENC_GUARD(lease_call(c, "/v3/lease/timetolive", o, CALL_READ, false, &info));
    VMENC_ENSURE(info.ttl >= 0, VMENC_E_LEASE_EXPIRED); /* "TTL":"-1" */
    *out_ttl_s = info.ttl;
    if (out_granted_s != NULL)
        *out_granted_s = info.granted_ttl;
    return VMENC_OK;
}

/* ---- maintenance ------------------------------------------------------------------------- */

vmenc_status vmenc_etcd_status(vmenc_etcd *c, size_t endpoint, vmenc_etcd_member_status *out) {
    VMENC_ENSURE(c != NULL && out != NULL, VMENC_E_INVALID_ARG);
    memset(out, 0, sizeof(*out));
    VMENC_ENSURE(endpoint < c->num_endpoints, VMENC_E_INVALID_ARG);
    json_object *o;
    VMENC_GUARD(new_obj(&o));
    uint8_t *body;
    size_t len;
    VMENC_GUARD(call(c, "/v3/maintenance/status", o, CALL_READ, endpoint, &body, &len));
    vmenc_status st = vmenc_etcd_parse_status(body, len, out);
    free(body);
    return st;
}

vmenc_status vmenc_etcd_compact(vmenc_etcd *c, int64_t revision) {
    VMENC_ENSURE(c != NULL && revision > 0, VMENC_E_INVALID_ARG);
    json_object *o;
    VMENC_GUARD(new_obj(&o));
    if (!add_i64(o, "revision", revision) || !add_bool(o, "physical", true)) {
        json_object_put(o);
        return VMENC_E_NOMEM;
    }
    uint8_t *body;
    size_t len;
    VMENC_GUARD(call(c, "/v3/kv/compaction", o, CALL_WRITE, SIZE_MAX, &body, &len));
    free(body);
    return VMENC_OK;
}

/* ---- watch ----------------------------------------------------------------------------------- */

struct vmenc_etcd_watch {
    vmenc_etcd *client;          /* configuration only (immutable after new): no lock taken */
    uint8_t *key, *range_end;
    size_t key_len, range_end_len;
    bool prev_kv;
    int64_t next_revision;       /* resume point: last delivered + 1 (0: from now) */
    int64_t compact_revision;
    size_t endpoint;
    CURLM *multi;
    atomic_bool cancel;
    pthread_mutex_t mu;          /* guards |multi| against wakeup during free */
    /* per stream */
    body_buf line;
    vmenc_etcd_watch_fn fn;
    void *arg;
    bool created;                /* this stream's watch was created */
    bool stop_cb;                /* the callback asked to stop */
    bool compacted;
    bool broken;                 /* an error line or unparseable line: reconnect */
};

vmenc_status vmenc_etcd_watch_new(vmenc_etcd *c, const vmenc_etcd_watch_req *req, vmenc_etcd_watch **out) {
    VMENC_ENSURE(c != NULL && req != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(check_key(req->key, req->key_len));
    VMENC_ENSURE(!(req->prefix && req->range_end != NULL), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(req->range_end_len <= VMENC_ETCD_KEY_MAX && req->start_revision >= 0, VMENC_E_INVALID_ARG);
    vmenc_etcd_watch *w = calloc(1, sizeof(*w));
    VMENC_ENSURE(w != NULL, VMENC_E_NOMEM);
    w->client = c;
    w->key = malloc(req->key_len);
    w->key_len = req->key_len;
    w->prev_kv = req->prev_kv;
    w->next_revision = req->start_revision;
    pthread_mutex_lock(&c->mu);
    w->endpoint = c->current % c->num_endpoints; /* start where unary calls last succeeded */
    pthread_mutex_unlock(&c->mu);
    atomic_init(&w->cancel, false);
    pthread_mutex_init(&w->mu, NULL);
    bool ok = w->key != NULL;
    if (ok)
        memcpy(w->key, req->key, req->key_len);
    if (ok && req->prefix) {
        w->range_end = malloc(req->key_len);
        ok = w->range_end != NULL;
        if (ok)
            vmenc_etcd_prefix_end(req->key, req->key_len, w->range_end, &w->range_end_len);
    } else if (ok && req->range_end != NULL && req->range_end_len > 0) {
        w->range_end = malloc(req->range_end_len);
        ok = w->range_end != NULL;
        if (ok) {
            memcpy(w->range_end, req->range_end, req->range_end_len);
            w->range_end_len = req->range_end_len;
        }
    }
    w->multi = ok ? curl_multi_init() : NULL;
    if (w->multi == NULL) {
        vmenc_etcd_watch_free(w);
        return VMENC_E_NOMEM;
    }
    *out = w;
    return VMENC_OK;
}

void vmenc_etcd_watch_free(vmenc_etcd_watch *w) {
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    if (w->multi != NULL)
        curl_multi_cleanup(w->multi);
    w->multi = NULL;
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_destroy(&w->mu);
    free(w->line.data);
    free(w->key);
    free(w->range_end);
    free(w);
}

void vmenc_etcd_watch_cancel(vmenc_etcd_watch *w) {
    if (w == NULL)
        return;
    atomic_store(&w->cancel, true);
    pthread_mutex_lock(&w->mu);
    if (w->multi != NULL)
        curl_multi_wakeup(w->multi);
    pthread_mutex_unlock(&w->mu);
}

int64_t vmenc_etcd_watch_next_revision(const vmenc_etcd_watch *w) { return w != NULL ? w->next_revision : 0; }
int64_t vmenc_etcd_watch_compact_revision(const vmenc_etcd_watch *w) { return w != NULL ? w->compact_revision : 0; }

/* watch_line: one complete stream line. */
static void watch_line(vmenc_etcd_watch *w, const uint8_t *p, size_t len) {
    vmenc_etcd_watch_msg m;
    if (vmenc_etcd_parse_watch_msg(p, len, &m) != VMENC_OK) {
        w->broken = true;
        return;
    }
    if (m.canceled) {
        if (m.compact_revision > 0) {
            w->compacted = true;
            w->compact_revision = m.compact_revision;
        } else {
            w->broken = true;
        }
        vmenc_etcd_watch_msg_cleanup(&m);
        return;
    }
    if (m.created) {
        w->created = true;
        /* from now: the watch covers every revision after this header */
        if (w->next_revision == 0)
            w->next_revision = m.header.revision + 1;
    }
    /* skip anything already delivered (a replay overlapping the resume point) */
    size_t first = 0;
    while (first < m.num_events && m.events[first].kv.mod_revision < w->next_revision)
        first++;
    if (m.num_events > 0 && first == m.num_events) {
        vmenc_etcd_watch_msg_cleanup(&m);
        return;
    }
    if (m.num_events > 0 || m.created) {
        vmenc_etcd_watch_msg view = m;
        view.events = m.events + first;
        view.num_events = m.num_events - first;
        if (w->fn(w->arg, &view) != 0)
            w->stop_cb = true;
        if (view.num_events > 0)
            w->next_revision = view.events[view.num_events - 1].kv.mod_revision + 1;
    }
    vmenc_etcd_watch_msg_cleanup(&m);
}

static size_t watch_write_cb(char *ptr, size_t size, size_t nmemb, void *arg) {
    vmenc_etcd_watch *w = arg;
    size_t n = size * nmemb;
    if (atomic_load(&w->cancel) || w->stop_cb || w->compacted || w->broken)
        return 0;
    if (!body_append(&w->line, ptr, n))
        return 0;
    /* deliver every complete line; keep the rest */
    size_t start = 0;
    for (size_t i = 0; i < w->line.len; i++) {
        if (w->line.data[i] != '\n')
            continue;
        if (i > start)
            watch_line(w, w->line.data + start, i - start);
        start = i + 1;
        if (w->stop_cb || w->compacted || w->broken)
            break;
    }
    memmove(w->line.data, w->line.data + start, w->line.len - start);
    w->line.len -= start;
    return (w->stop_cb || w->compacted || w->broken) ? 0 : n;
}

static json_object *watch_body(const vmenc_etcd_watch *w) {
    json_object *o = json_object_new_object(), *cr = json_object_new_object();
    bool ok = o != NULL && cr != NULL && json_object_object_add(o, "create_request", cr) == 0;
    if (!ok) {
        json_object_put(o);
        json_object_put(cr);
        return NULL;
    }
    ok = add_b64(cr, "key", w->key, w->key_len);
    if (ok && w->range_end != NULL)
        ok = add_b64(cr, "range_end", w->range_end, w->range_end_len);
    if (ok && w->next_revision > 0)
        ok = add_i64(cr, "start_revision", w->next_revision);
    if (ok && w->prev_kv)
        ok = add_bool(cr, "prev_kv", true);
    if (!ok) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* watch_stream: one stream on endpoint w->endpoint until it ends. */
static vmenc_status watch_stream(vmenc_etcd_watch *w) {
    const vmenc_etcd *c = w->client;
    json_object *o = watch_body(w);
    VMENC_ENSURE(o != NULL, VMENC_E_NOMEM);
    size_t body_len = 0;
    const char *body = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &body_len);
    CURL *h = body != NULL ? curl_easy_init() : NULL;
    if (h == NULL) {
        json_object_put(o);
        return VMENC_E_NOMEM;
    }
    set_common(c, h);
    char url[ETCD_URL_MAX + 16];
    snprintf(url, sizeof(url), "%s/v3/watch", c->endpoints[w->endpoint]);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, watch_write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    w->line.len = 0;
    w->created = w->broken = false;
    curl_multi_add_handle(w->multi, h);
    int running = 1;
    CURLMcode mc = CURLM_OK;
    while (running > 0 && mc == CURLM_OK && !atomic_load(&w->cancel)) {
        mc = curl_multi_perform(w->multi, &running);
        if (mc == CURLM_OK && running > 0)
            mc = curl_multi_poll(w->multi, NULL, 0, 100, NULL);
    }
    curl_multi_remove_handle(w->multi, h);
    curl_easy_cleanup(h);
    json_object_put(o);
    return mc == CURLM_OK ? VMENC_OK : VMENC_E_NOMEM;
}

vmenc_status vmenc_etcd_watch_run(vmenc_etcd_watch *w, vmenc_etcd_watch_fn fn, void *arg) {
    VMENC_ENSURE(w != NULL && fn != NULL, VMENC_E_INVALID_ARG);
    w->fn = fn;
    w->arg = arg;
    w->stop_cb = false;
    w->compacted = false;
    size_t n = w->client->num_endpoints;
    size_t failures = 0;
    while (!atomic_load(&w->cancel)) {
        VMENC_GUARD(watch_stream(w));
        if (atomic_load(&w->cancel) || w->stop_cb)
            break;
        if (w->compacted)
            return VMENC_E_CONFLICT;
        /* the stream ended or broke: resume on the next endpoint */
        failures = w->created ? 0 : failures + 1;
        if (failures >= n)
            return VMENC_E_CONTROL_UNAVAILABLE;
        w->endpoint = (w->endpoint + 1) % n;
        for (int i = 0; i < 2 && !atomic_load(&w->cancel); i++) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    atomic_store(&w->cancel, false);
    return VMENC_OK;
}
