/*
 * lib/broker/broker.c - the key broker (include/vmenc/broker.h,
 * docs/broker.md): a mutual-TLS listener (OpenSSL, a thread per
 * connection, bounded request size, idle timeout) serving KMIP 1.4
 * (lib/kms/kmip/kmip_server_msg.h) to the hosts of a cluster, with the
 * broker workspace's key provider upstream and the cluster's etcd as the
 * authority: host identity (client certificate SHA-256 = host/<id>
 * cert_sha256), encryption mode, VM ownership (owner/<uuid>) of a VM whose
 * record (vm/<uuid>, MAC checked) names the KEK, and the KEKs the broker
 * created for a host (broker/created/<kek hex>).
 *
 * Safety rule: key material goes into a response only after every check
 * passed on etcd state read (linearizably) for that request and the release
 * was audited - in the broker's log and in etcd; any failure on the way is
 * a refusal, itself audited with its reason.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "attest/attest.h"
#include "broker/broker_internal.h"
#include "control/control.h"
#include "control/etcd/cluster.h"
#include "control/etcd/etcd_store.h"
#include "keys/keys_internal.h"
#include "kms/kmip/kmip_server_msg.h"
#include "net/etcd.h"
#include "vmenc/audit.h"
#include "vmenc/broker.h"
#include "vmenc/keys.h"
#include "vmenc/kms.h"
#include "vmenc/workspace.h"
#include "workspace/ws_cluster.h"
#include "workspace/ws_internal.h"

#define DEFAULT_IDLE_MS 60000u
#define DEFAULT_MAX_CONNS 64u
#define DEFAULT_MAX_REQUEST 65536u
#define KMS_TIMEOUT_MS 10000u
#define DEFAULT_ETCD_REQUEST_MS 2000u
#define STOP_GRACE_MS 3000u
#define REASON_MAX 512u
#define HOST_DOC_MAX 4096u
#define QUOTE_JSON_MAX 6144u /* the hex of nonce, TPMS_ATTEST, TPMT_SIGNATURE and PCR values */

static const char k_record_key_domain[] = "vmenc-cluster-v1 control record key";

typedef struct conn_slot {
    bool used;
    int fd;
    pthread_t th;
    atomic_bool done;
    atomic_bool idle;        /* served a request and waits for the next: may be cut at stop */
    struct vmenc_broker *b;
} conn_slot;

struct vmenc_broker {
    char *provider;
    char *broker_id;
    char *cluster;
    uint32_t idle_ms;
    uint32_t max_conns;
    uint32_t max_request;
    vmenc_workspace *ws;
    vmenc_keymgr *mgr;
    vmenc_audit *audit;
    vmenc_etcd *etcd;
    SSL_CTX *ctx;
    int listen_fd;
    uint16_t port;
    atomic_bool stopping;
    atomic_bool serving;
    atomic_uint_fast64_t n_conns, n_requests, n_releases, n_refusals, n_errors, event_seq;
    pthread_mutex_t mu;          /* slots, store */
    conn_slot *slots;
    ctl_store *store;            /* the VM records (lazy: needs the cluster key) */
    char cluster_kek[VMENC_KEY_ID_MAX + 1];
};

/* ---- etcd helpers --------------------------------------------------------------------- */

/* Each connection thread has its own etcd client (vmenc_etcd_dup): one
 * client serialises its calls, and hosts must not wait behind each other's
 * reads. The VM record store (lazy, shared) keeps the broker's client. */
static _Thread_local vmenc_etcd *tl_etcd;

static vmenc_etcd *etcd_of_b(const struct vmenc_broker *b);

static vmenc_etcd *etcd_of_b(const struct vmenc_broker *b) { return tl_etcd != NULL ? tl_etcd : b->etcd; }

/* The highest etcd revision this thread's reads were served at, since the
 * request began: a release names it in its audit reason, so a checker can
 * replay the cluster's state at that revision (scripts/broker-chaos.sh). */
static _Thread_local int64_t tl_rev;

static void saw_rev(const vmenc_etcd_result *r) {
    if (r->header.revision > tl_rev)
        tl_rev = r->header.revision;
}

static void key_of(const vmenc_broker *b, char *out, size_t cap, const char *rest) {
    snprintf(out, cap, "/vmenc/%s/%s", b->cluster, rest);
}

static void hex_of(const uint8_t *in, size_t len, char *out) {
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * len] = '\0';
}

/* get_one reads one key (linearizable); |*found| false when absent. The
 * value (NUL-terminated) goes to |out| (|cap|), longer ones are an error. */
static vmenc_status get_one(vmenc_broker *b, const char *key, char *out, size_t cap, bool *found,
                            int64_t *out_lease) {
    vmenc_etcd_range_req req = {.key = (const uint8_t *)key, .key_len = strlen(key)};
    vmenc_etcd_result r;
    vmenc_status s = vmenc_etcd_range(etcd_of_b(b), &req, &r);
    *found = false;
    if (s == VMENC_OK)
        saw_rev(&r);
    if (s == VMENC_OK && r.num_kvs == 1) {
        if (r.kvs[0].value_len >= cap)
            s = VMENC_E_TOO_LARGE;
        else {
            memcpy(out, r.kvs[0].value, r.kvs[0].value_len);
            out[r.kvs[0].value_len] = '\0';
            *found = true;
            if (out_lease != NULL)
                *out_lease = r.kvs[0].lease;
        }
    }
    vmenc_etcd_result_cleanup(&r);
    return s;
}

/* json_field extracts the string value of "|name|":"..." from one of the
 * cluster's own flat documents (no escapes in the values we read: host
 * IDs, hex, state names). Exactly one occurrence, else VMENC_E_PARSE. */
vmenc_status broker_json_field(const char *doc, const char *name, char *out, size_t cap) {
    char pat[80];
    snprintf(pat, sizeof(pat), "\"%s\":\"", name);
    const char *p = strstr(doc, pat);
    VMENC_ENSURE(p != NULL && strstr(p + 1, pat) == NULL, VMENC_E_PARSE);
    p += strlen(pat);
    const char *e = strchr(p, '"');
    VMENC_ENSURE(e != NULL && (size_t)(e - p) < cap && memchr(p, '\\', (size_t)(e - p)) == NULL, VMENC_E_PARSE);
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return VMENC_OK;
}

/* ---- the cluster's VM records ----------------------------------------------------------- */

/* ensure_store unwraps the cluster key (through the broker workspace's key
 * manager: the broker holds the shared provider) once, derives the record
 * MAC key as lib/workspace/cluster.c does, and opens the etcd store. */
static vmenc_status ensure_store(vmenc_broker *b) {
    pthread_mutex_lock(&b->mu);
    if (b->store != NULL) {
        pthread_mutex_unlock(&b->mu);
        return VMENC_OK;
    }
    char key[256];
    key_of(b, key, sizeof(key), "cluster");
    char *doc = malloc(HOST_DOC_MAX * 4);
    bool found = false;
    vmenc_status s = doc != NULL ? get_one(b, key, doc, HOST_DOC_MAX * 4, &found, NULL) : VMENC_E_NOMEM;
    if (s == VMENC_OK && !found)
        s = VMENC_E_NOT_FOUND;
    ws_cluster_doc d = {0};
    if (s == VMENC_OK)
        s = ws_cluster_doc_parse((const uint8_t *)doc, strlen(doc), &d);
    vmenc_wrapped_key *wk = NULL;
    vmenc_dek *dek = NULL;
    vmenc_secret *mk = NULL;
    if (s == VMENC_OK)
        s = vmenc_wrapped_key_parse_text(d.key, strlen(d.key), &wk);
    if (s == VMENC_OK) {
        vmenc_wrap_context ctx = {.struct_size = sizeof(ctx), .vm_uuid = d.id, .purpose = WS_CLUSTER_KEY_PURPOSE};
        s = vmenc_keymgr_unwrap_dek(b->mgr, wk, &ctx, KMS_TIMEOUT_MS, &dek);
    }
    if (s == VMENC_OK)
        s = vmenc_secret_new(CTL_MAC_KEY_BYTES, &mk);
    if (s == VMENC_OK &&
        crypto_generichash(mk->bytes, mk->len, (const uint8_t *)k_record_key_domain, sizeof(k_record_key_domain) - 1,
                           vmenc_dek_bytes_internal(dek), VMENC_DEK_BYTES) != 0)
        s = VMENC_E_CRYPTO;
    if (s == VMENC_OK)
        s = ctl_etcd_new(b->etcd, b->cluster, mk->bytes, mk->len, &b->store);
    if (s == VMENC_OK)
        snprintf(b->cluster_kek, sizeof(b->cluster_kek), "%s", vmenc_wrapped_key_kek_id(wk));
    vmenc_secret_free(mk);
    vmenc_dek_free(dek);
    vmenc_wrapped_key_free(wk);
    ws_cluster_doc_cleanup(&d);
    free(doc);
    pthread_mutex_unlock(&b->mu);
    return s;
}

/* ---- authorization ------------------------------------------------------------------------ */

typedef struct host_id {
    char id[CTL_CLUSTER_HOST_MAX + 1];
    char mode[32];
} host_id;

/* find_host: the registered host whose certificate is |fp| (hex SHA-256). */
static vmenc_status find_host(vmenc_broker *b, const char *fp, host_id *out, bool *found) {
    char prefix[256];
    key_of(b, prefix, sizeof(prefix), "host/");
    vmenc_etcd_range_req req = {.key = (const uint8_t *)prefix, .key_len = strlen(prefix), .prefix = true};
    vmenc_etcd_result r;
    *found = false;
    VMENC_GUARD(vmenc_etcd_range(etcd_of_b(b), &req, &r));
    saw_rev(&r);
    for (size_t i = 0; i < r.num_kvs && !*found; i++) {
        const vmenc_etcd_kv *kv = &r.kvs[i];
        char cert[80];
        if (kv->value_len > HOST_DOC_MAX || memchr(kv->value, 0, kv->value_len) != NULL)
            continue;
        if (broker_json_field((const char *)kv->value, "cert_sha256", cert, sizeof(cert)) != VMENC_OK ||
            strcmp(cert, fp) != 0)
            continue;
        size_t idl = kv->key_len - strlen(prefix);
        if (idl == 0 || idl > CTL_CLUSTER_HOST_MAX)
            continue;
        memcpy(out->id, kv->key + strlen(prefix), idl);
        out->id[idl] = '\0';
        char doc_host[CTL_CLUSTER_HOST_MAX + 1];
        if (broker_json_field((const char *)kv->value, "host", doc_host, sizeof(doc_host)) != VMENC_OK ||
            strcmp(doc_host, out->id) != 0)
            continue; /* a document filed under another host's name */
        if (broker_json_field((const char *)kv->value, "encryption_mode", out->mode, sizeof(out->mode)) != VMENC_OK)
            snprintf(out->mode, sizeof(out->mode), "unknown");
        *found = true;
    }
    vmenc_etcd_result_cleanup(&r);
    return VMENC_OK;
}

typedef struct kek_scan {
    const char *kek;
    size_t num;
    char uuids[8][CTL_UUID_LEN + 1];
} kek_scan;

static int scan_fn(void *arg, const ctl_vm_record *rec) {
    kek_scan *k = arg;
    if (rec->facts.encrypted && strcmp(rec->facts.kek_id, k->kek) == 0) {
        if (k->num < 8)
            snprintf(k->uuids[k->num], sizeof(k->uuids[0]), "%s", rec->uuid);
        k->num++;
    }
    return 0;
}

/* host_at: the host named by the first line of <what>/<uuid> - owner/
 * only if the key lives on a lease (a live session), placement/ always. */
static vmenc_status host_at(vmenc_broker *b, const char *what, const char *uuid, char *out, size_t cap) {
    char key[256], val[512];
    snprintf(key, sizeof(key), "/vmenc/%s/%s/%s", b->cluster, what, uuid);
    bool found = false;
    int64_t lease = 0;
    out[0] = '\0';
    VMENC_GUARD(get_one(b, key, val, sizeof(val), &found, &lease));
    if (!found || (lease == 0 && strcmp(what, "owner") == 0))
        return VMENC_OK;
    char *nl = strchr(val, '\n');
    if (nl != NULL)
        *nl = '\0';
    size_t n = strlen(val);
    VMENC_ENSURE(n < cap, VMENC_E_PARSE);
    memcpy(out, val, n + 1);
    return VMENC_OK;
}

static void created_key(const vmenc_broker *b, const char *kek, char *out, size_t cap) {
    char hex[2 * VMENC_KEY_ID_MAX + 1];
    hex_of((const uint8_t *)kek, strlen(kek), hex);
    snprintf(out, cap, "/vmenc/%s/broker/created/%s", b->cluster, hex);
}

typedef enum { AUTHZ_ALLOW, AUTHZ_DENY, AUTHZ_FAIL } authz;

/* authorize_host: registered and (if |need_safe|) in encryption mode. */
static authz authorize_host(vmenc_broker *b, const char *fp, bool need_safe, host_id *h, char *why, size_t cap) {
    bool found = false;
    vmenc_status s = find_host(b, fp, h, &found);
    if (s != VMENC_OK) {
        snprintf(why, cap, "cluster %s: control plane unavailable (%s): nothing is released", b->cluster,
                 vmenc_status_name(s));
        return AUTHZ_FAIL;
    }
    if (!found) {
        snprintf(why, cap, "certificate sha256:%.16s... is not a registered host of cluster %s", fp, b->cluster);
        return AUTHZ_DENY;
    }
    if (need_safe && strcmp(h->mode, "safe") != 0) {
        snprintf(why, cap, "host %s is not in encryption mode (state %s)", h->id, h->mode);
        return AUTHZ_DENY;
    }
    return AUTHZ_ALLOW;
}

/* authorize_kek: may host |h| have KEK |kek|? The cluster key's KEK: every
 * host in encryption mode. A KEK that a VM record names: only the owner of
 * such a VM, or - while no host runs it - the host it is placed on. A KEK
 * no record names: the host the broker created it for. */
static authz authorize_kek(vmenc_broker *b, const host_id *h, const char *kek, char *why, size_t cap) {
    vmenc_status s = ensure_store(b);
    /* No cluster document yet (the first host is creating it: it wraps the
     * cluster key under a KEK it just created): no VM record, no cluster
     * KEK - only the KEKs created for the host, below. */
    bool no_cluster = s == VMENC_E_NOT_FOUND;
    if (s != VMENC_OK && !no_cluster) {
        snprintf(why, cap, "cluster %s: VM records unreadable (%s)", b->cluster, vmenc_status_name(s));
        return AUTHZ_FAIL;
    }
    if (!no_cluster && strcmp(kek, b->cluster_kek) == 0) {
        snprintf(why, cap, "the cluster key's KEK, to host %s", h->id);
        return AUTHZ_ALLOW;
    }
    kek_scan k = {.kek = kek};
    s = no_cluster ? VMENC_OK : ctl_store_list_vms(b->store, scan_fn, &k);
    if (s != VMENC_OK) {
        snprintf(why, cap, "cluster %s: VM records unreadable (%s)", b->cluster, vmenc_status_name(s));
        return AUTHZ_FAIL;
    }
    if (k.num > 0) {
        char owner[CTL_CLUSTER_HOST_MAX + 1] = "", placed[CTL_CLUSTER_HOST_MAX + 1] = "";
        for (size_t i = 0; i < k.num && i < 8; i++) {
            s = host_at(b, "owner", k.uuids[i], owner, sizeof(owner));
            if (s == VMENC_OK && owner[0] == '\0')
                s = host_at(b, "placement", k.uuids[i], placed, sizeof(placed));
            if (s != VMENC_OK) {
                snprintf(why, cap, "cluster %s: ownership unreadable (%s)", b->cluster, vmenc_status_name(s));
                return AUTHZ_FAIL;
            }
            if (strcmp(owner, h->id) == 0) {
                snprintf(why, cap, "host %s owns VM %s", h->id, k.uuids[i]);
                return AUTHZ_ALLOW;
            }
            /* No live owner: the host the VM is placed on is the one host
             * that may take its ownership (docs/cluster.md "Placement"), so
             * it is "taking ownership" - it may open the VM. Any other host
             * must move the placement first (take-over, handover). */
            if (owner[0] == '\0' && strcmp(placed, h->id) == 0) {
                snprintf(why, cap, "VM %s is placed on host %s and no host runs it", k.uuids[i], h->id);
                return AUTHZ_ALLOW;
            }
        }
        snprintf(why, cap, "host %s does not own VM %s (owner: %s)", h->id, k.uuids[0],
                 owner[0] != '\0' ? owner : "none");
        return AUTHZ_DENY;
    }
    char key[600], val[512];
    bool found = false;
    created_key(b, kek, key, sizeof(key));
    s = get_one(b, key, val, sizeof(val), &found, NULL);
    if (s != VMENC_OK) {
        snprintf(why, cap, "cluster %s: control plane unavailable (%s)", b->cluster, vmenc_status_name(s));
        return AUTHZ_FAIL;
    }
    char creator[CTL_CLUSTER_HOST_MAX + 1] = "";
    if (found && broker_json_field(val, "host", creator, sizeof(creator)) == VMENC_OK && strcmp(creator, h->id) == 0) {
        snprintf(why, cap, "KEK created through the broker for host %s, named by no VM record", h->id);
        return AUTHZ_ALLOW;
    }
    snprintf(why, cap, "KEK %s protects no VM of cluster %s owned by host %s and was not created for it", kek,
             b->cluster, h->id);
    return AUTHZ_DENY;
}

/* ---- audit (the broker's log; its callback sink mirrors to etcd) --------------------------------- */

/* Set while a refusal caused by an unreachable control plane is audited:
 * the mirror would only wait out etcd's timeout again; the broker's own
 * log has the event. */
static _Thread_local bool tl_no_mirror;

static vmenc_status mirror_sink(void *ctx, const vmenc_audit_event *ev, const char *json, size_t json_len) {
    vmenc_broker *b = ctx;
    if (ev->operation == NULL || strncmp(ev->operation, "broker.", 7) != 0 || tl_no_mirror)
        return VMENC_OK;
    char key[256];
    uint64_t seq = atomic_fetch_add(&b->event_seq, 1);
    snprintf(key, sizeof(key), "/vmenc/%s/broker/events/%s/%016llx-%08llx", b->cluster, b->broker_id,
             (unsigned long long)vmenc_now_realtime_ms(), (unsigned long long)seq);
    vmenc_etcd_put_req req = {.key = (const uint8_t *)key, .key_len = strlen(key), .value = (const uint8_t *)json,
                              .value_len = json_len};
    return vmenc_etcd_put(etcd_of_b(b), &req, NULL);
}

static vmenc_status audit(vmenc_broker *b, const char *principal, const char *op, const char *kek,
                          vmenc_audit_outcome outcome, vmenc_status st, const char *reason) {
    const char *ids[1] = {kek};
    vmenc_audit_event ev = {.struct_size = sizeof(ev),
                            .principal = principal,
                            .operation = op,
                            .target = kek != NULL ? kek : b->cluster,
                            .key_provider = b->provider,
                            .key_ids = kek != NULL ? ids : NULL,
                            .num_key_ids = kek != NULL ? 1 : 0,
                            .outcome = outcome,
                            .status = st,
                            .reason = reason};
    return vmenc_audit_emit(b->audit, &ev);
}

/* ---- one request ---------------------------------------------------------------------------------- */

/* One request's context. The decisions of its items share the etcd
 * reads of the request (a Get comes batched with a Get Attributes of the
 * same KEK): the host is looked up once, a KEK authorized once, fetched
 * upstream once. Nothing outlives the request. */
typedef struct conn_ctx {
    vmenc_broker *b;
    char fp[65];              /* client certificate SHA-256, hex */
    char principal[96];       /* "host:<id>" once known, else "cert:<fp prefix>" */
    bool host_done;
    bool host_need_safe;
    int host_authz;
    host_id host;
    char host_why[REASON_MAX];
    char kek_id[VMENC_KEY_ID_MAX + 1]; /* the KEK decided on in this request, "" if none */
    int kek_authz;
    char kek_why[REASON_MAX];
    vmenc_status kek_upstream;         /* the upstream fetch of |kek_id| (VMENC_E_BAD_STATE: not yet) */
    broker_conn *bc;                   /* the connection's attestation state (NULL: none) */
    bool attest_consumed;              /* per-release: this request used the connection's quote */
} conn_ctx;

static vmenc_kmip_version k_v14 = {1, 4};
static const vmenc_kmip_version k_served[] = {{1, 4}, {1, 3}, {1, 2}};

static bool uid_of(const vmenc_ttlv_doc *d, uint32_t payload, char *out, size_t cap) {
    const char *s;
    size_t n;
    if (vmenc_ttlv_count(d, payload, KMIP_TAG_UNIQUE_IDENTIFIER) != 1 ||
        vmenc_ttlv_get_text(d, payload, KMIP_TAG_UNIQUE_IDENTIFIER, &s, &n) != VMENC_OK || n == 0 ||
        n > VMENC_KEY_ID_MAX || n >= cap || memchr(s, 0, n) != NULL)
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

static void refuse(conn_ctx *c, vmenc_kmip_response_builder *rb, const vmenc_kmip_request_item *it, const char *op,
                   const char *kek, authz a, const char *why) {
    vmenc_broker *b = c->b;
    atomic_fetch_add(&b->n_refusals, 1);
    tl_no_mirror = a == AUTHZ_FAIL;
    vmenc_status as = audit(b, c->principal, op, kek, a == AUTHZ_FAIL ? VMENC_AUDIT_FAILED : VMENC_AUDIT_DENIED,
                            a == AUTHZ_FAIL ? VMENC_E_CONTROL_UNAVAILABLE : VMENC_E_DENIED, why);
    tl_no_mirror = false;
    (void)as; /* the refusal stands whether or not the mirror took it */
    vmenc_kmip_response_failure(rb, it->operation, it->batch_id, it->batch_id_len,
                                a == AUTHZ_FAIL ? KMIP_REASON_GENERAL_FAILURE : KMIP_REASON_PERMISSION_DENIED, why);
}

static void note_principal(conn_ctx *c, const host_id *h) {
    snprintf(c->principal, sizeof(c->principal), "host:%s", h->id);
}

/* req_host: authorize_host once per request (the stricter check wins). */
static authz req_host(conn_ctx *c, bool need_safe, host_id *h, char *why, size_t cap) {
    if (!c->host_done || (need_safe && !c->host_need_safe)) {
        c->host_authz = authorize_host(c->b, c->fp, need_safe, &c->host, c->host_why, sizeof(c->host_why));
        c->host_done = true;
        c->host_need_safe = need_safe;
        if (c->host_authz == AUTHZ_ALLOW)
            note_principal(c, &c->host);
    }
    *h = c->host;
    snprintf(why, cap, "%s", c->host_why);
    return (authz)c->host_authz;
}

/* req_kek: authorize_kek once per request and KEK. */
static authz req_kek(conn_ctx *c, const host_id *h, const char *kek, char *why, size_t cap) {
    if (strcmp(c->kek_id, kek) != 0) {
        c->kek_authz = authorize_kek(c->b, h, kek, c->kek_why, sizeof(c->kek_why));
        snprintf(c->kek_id, sizeof(c->kek_id), "%s", kek);
        c->kek_upstream = VMENC_E_BAD_STATE;
    }
    snprintf(why, cap, "%s", c->kek_why);
    return (authz)c->kek_authz;
}

/* do_get answers Get (|want_key|) or Get Attributes (State) for one KEK. */
static authz check_attested(conn_ctx *c, broker_conn *bc, const host_id *h, char *why, size_t cap,
                            uint32_t *kmip_reason);

static void do_get(conn_ctx *c, vmenc_kmip_response_builder *rb, const vmenc_kmip_server_request *req,
                   const vmenc_kmip_request_item *it, bool want_key) {
    vmenc_broker *b = c->b;
    const char *op = want_key ? "broker.kek.release" : "broker.kek.state";
    char kek[VMENC_KEY_ID_MAX + 1], why[REASON_MAX];
    if (!uid_of(&req->doc, it->payload, kek, sizeof(kek))) {
        vmenc_kmip_response_failure(rb, it->operation, it->batch_id, it->batch_id_len, KMIP_REASON_INVALID_FIELD,
                                    "one Unique Identifier expected");
        return;
    }
    host_id h;
    authz a = req_host(c, true, &h, why, sizeof(why));
    if (a == AUTHZ_ALLOW)
        a = req_kek(c, &h, kek, why, sizeof(why));
    if (a != AUTHZ_ALLOW) {
        refuse(c, rb, it, op, kek, a, why);
        return;
    }
    uint32_t att_reason = 0;
    /* The cluster key's KEK needs no quote: it authenticates the control
     * plane's records and releases no VM data, and a host refused it could
     * not open its workspace to find its VMs locked and say why
     * (docs/broker.md, "Attestation"). Every other KEK needs one. */
    if (strcmp(kek, b->cluster_kek) != 0)
        a = check_attested(c, c->bc, &h, why, sizeof(why), &att_reason);
    if (a != AUTHZ_ALLOW) {
        atomic_fetch_add(&b->n_refusals, 1);
        tl_no_mirror = a == AUTHZ_FAIL;
        vmenc_status as = audit(b, c->principal, op, kek, a == AUTHZ_FAIL ? VMENC_AUDIT_FAILED : VMENC_AUDIT_DENIED,
                                a == AUTHZ_FAIL ? VMENC_E_CONTROL_UNAVAILABLE : VMENC_E_DENIED, why);
        tl_no_mirror = false;
        (void)as;
        vmenc_kmip_response_failure(rb, it->operation, it->batch_id, it->batch_id_len,
                                    a == AUTHZ_FAIL ? KMIP_REASON_GENERAL_FAILURE : att_reason, why);
        return;
    }
    vmenc_kek *k = NULL;
    vmenc_status s, fs;
    if (!want_key && c->kek_upstream == VMENC_OK) {
        s = VMENC_OK; /* fetched (and found Active) for this request's Get */
    } else {
        /* Fetch fresh: the upstream provider checks the key is Active. */
        fs = vmenc_keymgr_forget(b->mgr, b->provider, kek);
        (void)fs; /* nothing cached is fine too */
        s = vmenc_keymgr_get_kek(b->mgr, b->provider, kek, KMS_TIMEOUT_MS, &k);
        c->kek_upstream = s;
    }
    if (s != VMENC_OK) {
        char msg[REASON_MAX + 64];
        snprintf(msg, sizeof(msg), "upstream key provider %s: %s", b->provider, vmenc_status_name(s));
        atomic_fetch_add(&b->n_refusals, 1);
        (void)audit(b, c->principal, op, kek, VMENC_AUDIT_FAILED, s, msg);
        uint32_t reason = s == VMENC_E_KEY_NOT_FOUND   ? KMIP_REASON_ITEM_NOT_FOUND
                          : s == VMENC_E_KEY_STATE     ? KMIP_REASON_ILLEGAL_OPERATION
                                                       : KMIP_REASON_GENERAL_FAILURE;
        vmenc_kmip_response_failure(rb, it->operation, it->batch_id, it->batch_id_len, reason, msg);
        return;
    }
    if (want_key) {
        /* Audited before the key leaves: no audit, no key. The reason names
         * the etcd revision decided on and the quote (its nonce) used. */
        char nonce[65] = "";
        if (c->attest_consumed && c->bc != NULL)
            hex_of(c->bc->nonce, sizeof(c->bc->nonce), nonce);
        size_t wl = strlen(why);
        snprintf(why + wl, sizeof(why) - wl, " [etcd rev %lld%s%s]", (long long)tl_rev, nonce[0] ? ", quote nonce " : "",
                 nonce);
        s = audit(b, c->principal, op, kek, VMENC_AUDIT_SUCCESS, VMENC_OK, why);
        if (s != VMENC_OK) {
            vmenc_kek_free(k);
            atomic_fetch_add(&b->n_refusals, 1);
            snprintf(why, sizeof(why), "the release could not be audited (%s)", vmenc_status_name(s));
            vmenc_kmip_response_failure(rb, it->operation, it->batch_id, it->batch_id_len,
                                        KMIP_REASON_GENERAL_FAILURE, why);
            return;
        }
        atomic_fetch_add(&b->n_releases, 1);
        vmenc_cbb *cb = &rb->cbb;
        vmenc_kmip_response_success_begin(rb, it->operation, it->batch_id, it->batch_id_len);
        vmenc_ttlv_add_enum(cb, KMIP_TAG_OBJECT_TYPE, KMIP_OBJECT_SYMMETRIC_KEY);
        vmenc_ttlv_add_text(cb, KMIP_TAG_UNIQUE_IDENTIFIER, kek, strlen(kek));
        size_t sk = vmenc_ttlv_begin_struct(cb, KMIP_TAG_SYMMETRIC_KEY);
        size_t kb = vmenc_ttlv_begin_struct(cb, KMIP_TAG_KEY_BLOCK);
        vmenc_ttlv_add_enum(cb, KMIP_TAG_KEY_FORMAT_TYPE, KMIP_KEY_FORMAT_RAW);
        size_t kv = vmenc_ttlv_begin_struct(cb, KMIP_TAG_KEY_VALUE);
        vmenc_ttlv_add_bytes(cb, KMIP_TAG_KEY_MATERIAL, vmenc_kek_bytes_internal(k), VMENC_KEK_BYTES);
        vmenc_ttlv_end_struct(cb, kv);
        vmenc_ttlv_add_enum(cb, KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, KMIP_ALG_AES);
        vmenc_ttlv_add_int(cb, KMIP_TAG_CRYPTOGRAPHIC_LENGTH, 256);
        vmenc_ttlv_end_struct(cb, kb);
        vmenc_ttlv_end_struct(cb, sk);
        vmenc_kmip_response_success_end(rb);
    } else {
        vmenc_cbb *cb = &rb->cbb;
        vmenc_kmip_response_success_begin(rb, it->operation, it->batch_id, it->batch_id_len);
        vmenc_ttlv_add_text(cb, KMIP_TAG_UNIQUE_IDENTIFIER, kek, strlen(kek));
        size_t at = vmenc_ttlv_begin_struct(cb, KMIP_TAG_ATTRIBUTE);
        vmenc_ttlv_add_text(cb, KMIP_TAG_ATTRIBUTE_NAME, "State", 5);
        vmenc_ttlv_add_enum(cb, KMIP_TAG_ATTRIBUTE_VALUE, KMIP_STATE_ACTIVE);
        vmenc_ttlv_end_struct(cb, at);
        vmenc_kmip_response_success_end(rb);
    }
    if (k != NULL) {
        vmenc_kek_free(k);
        fs = vmenc_keymgr_forget(b->mgr, b->provider, kek); /* the broker keeps no key */
        (void)fs;
    }
}

/* create_name reads the Name attribute of a 1.x Create (may be absent). */
static bool create_name(const vmenc_ttlv_doc *d, uint32_t payload, char *out, size_t cap) {
    out[0] = '\0';
    uint32_t ta = vmenc_ttlv_child(d, payload, KMIP_TAG_TEMPLATE_ATTRIBUTE, VMENC_TTLV_NONE);
    if (ta == VMENC_TTLV_NONE)
        return true;
    for (uint32_t a = vmenc_ttlv_child(d, ta, KMIP_TAG_ATTRIBUTE, VMENC_TTLV_NONE); a != VMENC_TTLV_NONE;
         a = vmenc_ttlv_child(d, ta, KMIP_TAG_ATTRIBUTE, a)) {
        const char *n;
        size_t nl;
        if (vmenc_ttlv_get_text(d, a, KMIP_TAG_ATTRIBUTE_NAME, &n, &nl) != VMENC_OK || nl != 4 ||
            memcmp(n, "Name", 4) != 0)
            continue;
        uint32_t v;
        const char *s;
        size_t sl;
        if (vmenc_ttlv_get_struct(d, a, KMIP_TAG_ATTRIBUTE_VALUE, &v) != VMENC_OK ||
            vmenc_ttlv_get_text(d, v, KMIP_TAG_NAME_VALUE, &s, &sl) != VMENC_OK || sl == 0 || sl >= cap ||
            memchr(s, 0, sl) != NULL)
            return false;
        memcpy(out, s, sl);
        out[sl] = '\0';
    }
    return true;
}

static void do_create(conn_ctx *c, vmenc_kmip_response_builder *rb, const vmenc_kmip_server_request *req,
                      const vmenc_kmip_request_item *it) {
    vmenc_broker *b = c->b;
    char why[REASON_MAX], name[256];
    uint32_t ot = 0;
    if (vmenc_ttlv_get_enum(&req->doc, it->payload, KMIP_TAG_OBJECT_TYPE, &ot) != VMENC_OK ||
        ot != KMIP_OBJECT_SYMMETRIC_KEY || !create_name(&req->doc, it->payload, name, sizeof(name))) {
        vmenc_kmip_response_failure(rb, it->operation, it->batch_id, it->batch_id_len, KMIP_REASON_INVALID_FIELD,
                                    "the broker creates AES-256 symmetric keys only");
        return;
    }
    host_id h;
    authz a = req_host(c, true, &h, why, sizeof(why));
    if (a != AUTHZ_ALLOW) {
        refuse(c, rb, it, "broker.kek.create", NULL, a, why);
        return;
    }
    char id[VMENC_KMS_KEY_ID_CAP];
    vmenc_status s = vmenc_keymgr_create_kek(b->mgr, b->provider, name[0] ? name : NULL, KMS_TIMEOUT_MS, id,
                                             sizeof(id));
    char key[600], val[1024];
    if (s == VMENC_OK) {
        created_key(b, id, key, sizeof(key));
        /* the Name (hex: any bytes, no JSON escaping) for Locate by its creator */
        char nhex[2 * sizeof(name) + 1];
        hex_of((const uint8_t *)name, strlen(name), nhex);
        snprintf(val, sizeof(val), "{\"host\":\"%s\",\"broker\":\"%s\",\"time_ms\":%llu,\"name_hex\":\"%s\"}",
                 h.id, b->broker_id, (unsigned long long)vmenc_now_realtime_ms(), nhex);
        vmenc_etcd_put_req pr = {.key = (const uint8_t *)key, .key_len = strlen(key), .value = (const uint8_t *)val,
                                 .value_len = strlen(val)};
        s = vmenc_etcd_put(etcd_of_b(b), &pr, NULL);
    }
    snprintf(why, sizeof(why), "KEK created for host %s", h.id);
    vmenc_status as = audit(b, c->principal, "broker.kek.create", s == VMENC_OK ? id : NULL,
                            s == VMENC_OK ? VMENC_AUDIT_SUCCESS : VMENC_AUDIT_FAILED, s,
                            s == VMENC_OK ? why : vmenc_status_name(s));
    (void)as;
    if (s != VMENC_OK) {
        snprintf(why, sizeof(why), "create failed: %s", vmenc_status_name(s));
        vmenc_kmip_response_failure(rb, it->operation, it->batch_id, it->batch_id_len, KMIP_REASON_GENERAL_FAILURE,
                                    why);
        return;
    }
    vmenc_kmip_response_success_begin(rb, it->operation, it->batch_id, it->batch_id_len);
    vmenc_ttlv_add_enum(&rb->cbb, KMIP_TAG_OBJECT_TYPE, KMIP_OBJECT_SYMMETRIC_KEY);
    vmenc_ttlv_add_text(&rb->cbb, KMIP_TAG_UNIQUE_IDENTIFIER, id, strlen(id));
    vmenc_kmip_response_success_end(rb);
}

/* do_activate: the upstream create already activated the key; an Activate
 * from the host it was created for is answered, anything else refused. */
static void do_activate(conn_ctx *c, vmenc_kmip_response_builder *rb, const vmenc_kmip_server_request *req,
                        const vmenc_kmip_request_item *it) {
    vmenc_broker *b = c->b;
    char kek[VMENC_KEY_ID_MAX + 1], why[REASON_MAX];
    if (!uid_of(&req->doc, it->payload, kek, sizeof(kek))) {
        vmenc_kmip_response_failure(rb, it->operation, it->batch_id, it->batch_id_len, KMIP_REASON_INVALID_FIELD,
                                    "one Unique Identifier expected");
        return;
    }
    host_id h;
    authz a = req_host(c, true, &h, why, sizeof(why));
    if (a == AUTHZ_ALLOW) {
        char key[600], val[512], creator[CTL_CLUSTER_HOST_MAX + 1] = "";
        bool found = false;
        created_key(b, kek, key, sizeof(key));
        vmenc_status s = get_one(b, key, val, sizeof(val), &found, NULL);
        if (s != VMENC_OK) {
            a = AUTHZ_FAIL;
            snprintf(why, sizeof(why), "control plane unavailable (%s)", vmenc_status_name(s));
        } else if (!found || broker_json_field(val, "host", creator, sizeof(creator)) != VMENC_OK ||
                   strcmp(creator, h.id) != 0) {
            a = AUTHZ_DENY;
            snprintf(why, sizeof(why), "KEK %s was not created for host %s", kek, h.id);
        }
    }
    if (a != AUTHZ_ALLOW) {
        refuse(c, rb, it, "broker.kek.activate", kek, a, why);
        return;
    }
    vmenc_kmip_response_success_begin(rb, it->operation, it->batch_id, it->batch_id_len);
    vmenc_ttlv_add_text(&rb->cbb, KMIP_TAG_UNIQUE_IDENTIFIER, kek, strlen(kek));
    vmenc_kmip_response_success_end(rb);
}

/* locate_filter reads a 1.x Locate's attributes: Object Type (must be
 * Symmetric Key when present) and Name (required: the broker locates by
 * name only). Anything else is refused: a filter the broker ignored would
 * answer more than was asked. */
static bool locate_filter(const vmenc_ttlv_doc *d, uint32_t payload, char *name, size_t cap, bool *sym) {
    name[0] = '\0';
    *sym = true;
    for (uint32_t c = d->nodes[payload].first_child; c != VMENC_TTLV_NONE; c = d->nodes[c].next) {
        if (d->nodes[c].tag == KMIP_TAG_MAXIMUM_ITEMS && d->nodes[c].type == VMENC_TTLV_INTEGER)
            continue;
        if (d->nodes[c].tag != KMIP_TAG_ATTRIBUTE)
            return false;
        const char *n;
        size_t nl;
        if (vmenc_ttlv_get_text(d, c, KMIP_TAG_ATTRIBUTE_NAME, &n, &nl) != VMENC_OK)
            return false;
        if (nl == 11 && memcmp(n, "Object Type", 11) == 0) {
            uint32_t ot = 0;
            if (vmenc_ttlv_get_enum(d, c, KMIP_TAG_ATTRIBUTE_VALUE, &ot) != VMENC_OK)
                return false;
            *sym = *sym && ot == KMIP_OBJECT_SYMMETRIC_KEY;
        } else if (nl == 4 && memcmp(n, "Name", 4) == 0 && name[0] == '\0') {
            uint32_t v;
            const char *sv;
            size_t sl;
            if (vmenc_ttlv_get_struct(d, c, KMIP_TAG_ATTRIBUTE_VALUE, &v) != VMENC_OK ||
                vmenc_ttlv_get_text(d, v, KMIP_TAG_NAME_VALUE, &sv, &sl) != VMENC_OK || sl == 0 || sl >= cap ||
                memchr(sv, 0, sl) != NULL)
                return false;
            memcpy(name, sv, sl);
            name[sl] = '\0';
        } else {
            return false;
        }
    }
    return name[0] != '\0';
}

#define LOCATE_MAX 16u

static bool unhex(const char *hex, uint8_t *out, size_t cap, size_t *out_len);

/* do_locate answers Locate by Name with the KEKs created through a broker
 * for the asking host under that Name (broker/created/..., the same rule as
 * a Get of a KEK no VM record names): a host finds again a key whose
 * Create answer it lost, and learns nothing of the KMS's other keys. The
 * host must be registered and in encryption mode; no key leaves, so no
 * quote is asked. */
static void do_locate(conn_ctx *c, vmenc_kmip_response_builder *rb, const vmenc_kmip_server_request *req,
                      const vmenc_kmip_request_item *it) {
    vmenc_broker *b = c->b;
    const char *op = "broker.kek.locate";
    char why[REASON_MAX], name[256];
    bool sym = true;
    if (!locate_filter(&req->doc, it->payload, name, sizeof(name), &sym)) {
        vmenc_kmip_response_failure(rb, it->operation, it->batch_id, it->batch_id_len, KMIP_REASON_INVALID_FIELD,
                                    "the broker locates by Name (and Object Type) only");
        return;
    }
    host_id h;
    authz a = req_host(c, true, &h, why, sizeof(why));
    if (a != AUTHZ_ALLOW) {
        refuse(c, rb, it, op, NULL, a, why);
        return;
    }
    char want[2 * sizeof(name) + 1];
    hex_of((const uint8_t *)name, strlen(name), want);
    char prefix[256];
    key_of(b, prefix, sizeof(prefix), "broker/created/");
    vmenc_etcd_range_req rr = {.key = (const uint8_t *)prefix, .key_len = strlen(prefix), .prefix = true};
    vmenc_etcd_result r;
    vmenc_status s = sym ? vmenc_etcd_range(etcd_of_b(b), &rr, &r) : VMENC_OK;
    if (s != VMENC_OK) {
        snprintf(why, sizeof(why), "cluster %s: control plane unavailable (%s)", b->cluster, vmenc_status_name(s));
        refuse(c, rb, it, op, NULL, AUTHZ_FAIL, why);
        return;
    }
    char ids[LOCATE_MAX][VMENC_KEY_ID_MAX + 1];
    size_t n = 0;
    for (size_t i = 0; sym && i < r.num_kvs && n < LOCATE_MAX; i++) {
        const vmenc_etcd_kv *kv = &r.kvs[i];
        char host[CTL_CLUSTER_HOST_MAX + 1], nh[2 * sizeof(name) + 1];
        size_t hl = kv->key_len - strlen(prefix), idl = 0;
        if (kv->value_len > HOST_DOC_MAX || memchr(kv->value, 0, kv->value_len) != NULL || hl == 0 ||
            hl > 2 * VMENC_KEY_ID_MAX)
            continue;
        char hexid[2 * VMENC_KEY_ID_MAX + 1];
        memcpy(hexid, kv->key + strlen(prefix), hl);
        hexid[hl] = '\0';
        if (broker_json_field((const char *)kv->value, "host", host, sizeof(host)) != VMENC_OK ||
            strcmp(host, h.id) != 0 ||
            broker_json_field((const char *)kv->value, "name_hex", nh, sizeof(nh)) != VMENC_OK ||
            strcmp(nh, want) != 0 || !unhex(hexid, (uint8_t *)ids[n], VMENC_KEY_ID_MAX, &idl))
            continue;
        ids[n][idl] = '\0';
        if (idl > 0 && strlen(ids[n]) == idl)
            n++;
    }
    if (sym)
        vmenc_etcd_result_cleanup(&r);
    snprintf(why, sizeof(why), "host %s located %zu KEK(s) created for it under its name", h.id, n);
    vmenc_status as = audit(b, c->principal, op, n > 0 ? ids[0] : NULL, VMENC_AUDIT_SUCCESS, VMENC_OK, why);
    (void)as;
    vmenc_kmip_response_success_begin(rb, it->operation, it->batch_id, it->batch_id_len);
    for (size_t i = 0; i < n; i++)
        vmenc_ttlv_add_text(&rb->cbb, KMIP_TAG_UNIQUE_IDENTIFIER, ids[i], strlen(ids[i]));
    vmenc_kmip_response_success_end(rb);
}

static void do_discover(vmenc_kmip_response_builder *rb, const vmenc_kmip_server_request *req,
                        const vmenc_kmip_request_item *it) {
    const vmenc_ttlv_doc *d = &req->doc;
    vmenc_kmip_response_success_begin(rb, it->operation, it->batch_id, it->batch_id_len);
    bool any = vmenc_ttlv_child(d, it->payload, KMIP_TAG_PROTOCOL_VERSION, VMENC_TTLV_NONE) != VMENC_TTLV_NONE;
    for (size_t i = 0; i < VMENC_ARRAY_LEN(k_served); i++) {
        bool asked = !any;
        for (uint32_t pv = vmenc_ttlv_child(d, it->payload, KMIP_TAG_PROTOCOL_VERSION, VMENC_TTLV_NONE);
             pv != VMENC_TTLV_NONE && !asked; pv = vmenc_ttlv_child(d, it->payload, KMIP_TAG_PROTOCOL_VERSION, pv)) {
            int32_t maj, min;
            if (vmenc_ttlv_get_int(d, pv, KMIP_TAG_PROTOCOL_VERSION_MAJOR, &maj) == VMENC_OK &&
                vmenc_ttlv_get_int(d, pv, KMIP_TAG_PROTOCOL_VERSION_MINOR, &min) == VMENC_OK &&
                maj == k_served[i].major && min == k_served[i].minor)
                asked = true;
        }
        if (!asked)
            continue;
        size_t m = vmenc_ttlv_begin_struct(&rb->cbb, KMIP_TAG_PROTOCOL_VERSION);
        vmenc_ttlv_add_int(&rb->cbb, KMIP_TAG_PROTOCOL_VERSION_MAJOR, k_served[i].major);
        vmenc_ttlv_add_int(&rb->cbb, KMIP_TAG_PROTOCOL_VERSION_MINOR, k_served[i].minor);
        vmenc_ttlv_end_struct(&rb->cbb, m);
    }
    vmenc_kmip_response_success_end(rb);
}

static void do_query(conn_ctx *c, vmenc_kmip_response_builder *rb, const vmenc_kmip_request_item *it) {
    char why[REASON_MAX];
    host_id h;
    authz a = req_host(c, false, &h, why, sizeof(why));
    if (a != AUTHZ_ALLOW) {
        refuse(c, rb, it, "broker.query", NULL, a, why);
        return;
    }
    static const uint32_t ops[] = {KMIP_OP_CREATE, KMIP_OP_GET,   KMIP_OP_GET_ATTRIBUTES,    KMIP_OP_ACTIVATE,
                                   KMIP_OP_LOCATE, KMIP_OP_QUERY, KMIP_OP_DISCOVER_VERSIONS};
    vmenc_kmip_response_success_begin(rb, it->operation, it->batch_id, it->batch_id_len);
    for (size_t i = 0; i < VMENC_ARRAY_LEN(ops); i++)
        vmenc_ttlv_add_enum(&rb->cbb, KMIP_TAG_OPERATION, ops[i]);
    vmenc_ttlv_add_text(&rb->cbb, KMIP_TAG_VENDOR_IDENTIFICATION, "vmenc key broker", 16);
    vmenc_kmip_response_success_end(rb);
}

static bool version_served(vmenc_kmip_version v) {
    for (size_t i = 0; i < VMENC_ARRAY_LEN(k_served); i++)
        if (vmenc_kmip_version_cmp(v, k_served[i]) == 0)
            return true;
    return false;
}

/* ---- attestation (docs/attest.md for the TPM formats) ------------------------------------------------ */

#define NONCE_TTL_MS 60000u
#define ENROLL_TTL_MS 300000u
#define ATTEST_MODE_OFF 0
#define ATTEST_MODE_PERIOD 1
#define ATTEST_MODE_PER_RELEASE 2

typedef struct attest_cfg {
    int mode;
    uint32_t period_s;
    char pcrs[128];
} attest_cfg;

static bool unhex(const char *hex, uint8_t *out, size_t cap, size_t *out_len) {
    size_t n = strlen(hex);
    if (n % 2 != 0 || n / 2 > cap)
        return false;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return false;
        out[i] = (uint8_t)v;
    }
    *out_len = n / 2;
    return true;
}

static vmenc_status put_str(vmenc_broker *b, const char *key, const char *val) {
    vmenc_etcd_put_req r = {.key = (const uint8_t *)key, .key_len = strlen(key), .value = (const uint8_t *)val,
                            .value_len = strlen(val)};
    return vmenc_etcd_put(etcd_of_b(b), &r, NULL);
}

/* read_attest_cfg: /vmenc/C/broker/config (absent: attestation off). */
static vmenc_status read_attest_cfg(vmenc_broker *b, attest_cfg *out) {
    char key[256], val[2048], mode[64];
    bool found = false;
    memset(out, 0, sizeof(*out));
    snprintf(out->pcrs, sizeof(out->pcrs), "sha256:0,1,2,3,4,5,6,7");
    key_of(b, key, sizeof(key), "broker/config");
    VMENC_GUARD(get_one(b, key, val, sizeof(val), &found, NULL));
    if (!found)
        return VMENC_OK;
    VMENC_GUARD(broker_json_field(val, "attestation", mode, sizeof(mode)));
    if (broker_json_field(val, "pcrs", out->pcrs, sizeof(out->pcrs)) != VMENC_OK)
        snprintf(out->pcrs, sizeof(out->pcrs), "sha256:0,1,2,3,4,5,6,7");
    if (strcmp(mode, "off") == 0)
        out->mode = ATTEST_MODE_OFF;
    else if (strcmp(mode, "per-release") == 0)
        out->mode = ATTEST_MODE_PER_RELEASE;
    else if (strncmp(mode, "period=", 7) == 0) {
        char *end = NULL;
        unsigned long v = strtoul(mode + 7, &end, 10);
        VMENC_ENSURE(end != NULL && *end == '\0' && v >= 1 && v <= 86400, VMENC_E_PARSE);
        out->mode = ATTEST_MODE_PERIOD;
        out->period_s = (uint32_t)v;
    } else {
        return VMENC_E_PARSE;
    }
    return VMENC_OK;
}

/* digest_approved: a measurements/<name> entry has this selection and digest. */
static vmenc_status digest_approved(vmenc_broker *b, const char *pcrs, const char *digest_hex, bool *out) {
    char prefix[256];
    key_of(b, prefix, sizeof(prefix), "measurements/");
    vmenc_etcd_range_req req = {.key = (const uint8_t *)prefix, .key_len = strlen(prefix), .prefix = true};
    vmenc_etcd_result r;
    *out = false;
    VMENC_GUARD(vmenc_etcd_range(etcd_of_b(b), &req, &r));
    saw_rev(&r);
    for (size_t i = 0; i < r.num_kvs && !*out; i++) {
        char d[80], sel[128];
        const char *v = (const char *)r.kvs[i].value;
        if (r.kvs[i].value_len > HOST_DOC_MAX || memchr(v, 0, r.kvs[i].value_len) != NULL)
            continue;
        if (broker_json_field(v, "digest", d, sizeof(d)) == VMENC_OK &&
            broker_json_field(v, "pcrs", sel, sizeof(sel)) == VMENC_OK && strcmp(d, digest_hex) == 0 &&
            strcmp(sel, pcrs) == 0)
            *out = true;
    }
    vmenc_etcd_result_cleanup(&r);
    return VMENC_OK;
}

/* check_attested: the attestation the cluster requires of host |h| for a
 * release on connection |bc|. */
static authz check_attested(conn_ctx *c, broker_conn *bc, const host_id *h, char *why, size_t cap,
                            uint32_t *kmip_reason) {
    vmenc_broker *b = c->b;
    attest_cfg ac;
    vmenc_status s = read_attest_cfg(b, &ac);
    *kmip_reason = KMIP_REASON_ATTESTATION_REQUIRED;
    if (s != VMENC_OK) {
        snprintf(why, cap, "cluster %s: broker configuration unreadable (%s)", b->cluster, vmenc_status_name(s));
        return AUTHZ_FAIL;
    }
    if (ac.mode == ATTEST_MODE_OFF)
        return AUTHZ_ALLOW;
    if (ac.mode == ATTEST_MODE_PER_RELEASE) {
        if (c->attest_consumed)
            return AUTHZ_ALLOW; /* the Get Attributes beside the Get of this request */
        if (bc == NULL || !bc->quote_ok) {
            snprintf(why, cap, "host %s: attestation required: a quote on this connection before each release",
                     h->id);
            return AUTHZ_DENY;
        }
        bc->quote_ok = false;
        c->attest_consumed = true;
        return AUTHZ_ALLOW;
    }
    char key[256], val[QUOTE_JSON_MAX + 768], t[32], res[256], digest[80];
    bool found = false;
    snprintf(key, sizeof(key), "/vmenc/%s/attest/%s", b->cluster, h->id);
    s = get_one(b, key, val, sizeof(val), &found, NULL);
    if (s != VMENC_OK) {
        snprintf(why, cap, "cluster %s: control plane unavailable (%s)", b->cluster, vmenc_status_name(s));
        return AUTHZ_FAIL;
    }
    if (!found || broker_json_field(val, "time_ms", t, sizeof(t)) != VMENC_OK ||
        broker_json_field(val, "result", res, sizeof(res)) != VMENC_OK ||
        broker_json_field(val, "digest", digest, sizeof(digest)) != VMENC_OK) {
        snprintf(why, cap, "host %s has not attested", h->id);
        return AUTHZ_DENY;
    }
    if (strcmp(res, "ok") != 0) {
        *kmip_reason = KMIP_REASON_ATTESTATION_FAILED;
        snprintf(why, cap, "host %s failed its last attestation: %s", h->id, res);
        return AUTHZ_DENY;
    }
    uint64_t at = strtoull(t, NULL, 10), now = vmenc_now_realtime_ms();
    if (now > at + (uint64_t)ac.period_s * 1000u) {
        snprintf(why, cap, "host %s: attestation expired (older than %u s)", h->id, ac.period_s);
        return AUTHZ_DENY;
    }
    bool ok = false;
    s = digest_approved(b, ac.pcrs, digest, &ok);
    if (s != VMENC_OK) {
        snprintf(why, cap, "cluster %s: control plane unavailable (%s)", b->cluster, vmenc_status_name(s));
        return AUTHZ_FAIL;
    }
    if (!ok) {
        *kmip_reason = KMIP_REASON_ATTESTATION_FAILED;
        snprintf(why, cap, "host %s: measurement %.16s... is no longer approved", h->id, digest);
        return AUTHZ_DENY;
    }
    return AUTHZ_ALLOW;
}

static void ext_refuse(conn_ctx *c, vmenc_kmip_response_builder *rb, const vmenc_kmip_request_item *it,
                       const char *op, authz a, uint32_t reason, const char *why) {
    vmenc_broker *b = c->b;
    atomic_fetch_add(&b->n_refusals, 1);
    tl_no_mirror = a == AUTHZ_FAIL;
    vmenc_status as = audit(b, c->principal, op, NULL, a == AUTHZ_FAIL ? VMENC_AUDIT_FAILED : VMENC_AUDIT_DENIED,
                            a == AUTHZ_FAIL ? VMENC_E_CONTROL_UNAVAILABLE : VMENC_E_DENIED, why);
    tl_no_mirror = false;
    (void)as;
    vmenc_kmip_response_failure(rb, it->operation, it->batch_id, it->batch_id_len,
                                a == AUTHZ_FAIL ? KMIP_REASON_GENERAL_FAILURE : reason, why);
}

static bool get_bytes1(const vmenc_ttlv_doc *d, uint32_t payload, uint32_t tag, const uint8_t **out, size_t *len) {
    return vmenc_ttlv_count(d, payload, tag) == 1 && vmenc_ttlv_get_bytes(d, payload, tag, out, len) == VMENC_OK &&
           *len > 0;
}

static void hexdup(const uint8_t *in, size_t len, char *out, size_t cap) {
    if (2 * len + 1 > cap) {
        out[0] = '\0';
        return;
    }
    hex_of(in, len, out);
}

/* Enroll-Begin: AKPublic + EKCertificate (checked against the CA named in
 * broker/config "ek_ca") or EKPublic -> CredentialBlob, EncryptedSecret. */
static void do_enroll_begin(conn_ctx *c, vmenc_kmip_response_builder *rb, const vmenc_kmip_server_request *req,
                            const vmenc_kmip_request_item *it) {
    vmenc_broker *b = c->b;
    const char *op = "broker.tpm.enroll";
    char why[REASON_MAX];
    host_id h;
    authz a = req_host(c, false, &h, why, sizeof(why));
    if (a != AUTHZ_ALLOW) {
        ext_refuse(c, rb, it, op, a, KMIP_REASON_PERMISSION_DENIED, why);
        return;
    }
    const vmenc_ttlv_doc *d = &req->doc;
    const uint8_t *akp = NULL, *ekc = NULL, *ekp = NULL;
    size_t akp_len = 0, ekc_len = 0, ekp_len = 0;
    bool have_cert = get_bytes1(d, it->payload, BROKER_TAG_EK_CERTIFICATE, &ekc, &ekc_len);
    bool have_pub = get_bytes1(d, it->payload, BROKER_TAG_EK_PUBLIC, &ekp, &ekp_len);
    if (!get_bytes1(d, it->payload, BROKER_TAG_AK_PUBLIC, &akp, &akp_len) || have_cert == have_pub ||
        akp_len > 1024 || ekc_len > 4096 || ekp_len > 1024) {
        vmenc_kmip_response_failure(rb, it->operation, it->batch_id, it->batch_id_len, KMIP_REASON_INVALID_FIELD,
                                    "AKPublic and one of EKCertificate / EKPublic expected");
        return;
    }
    uint8_t name[ATTEST_NAME_BYTES];
    attest_refusal rf = ATTEST_ACCEPTED;
    vmenc_status s = attest_ak_check(akp, akp_len, name, &rf);
    uint8_t *ek = NULL;
    size_t ek_len = 0;
    if (s == VMENC_OK && have_cert) {
        char cfgv[2048], cfgk[256], ca[512];
        bool found = false;
        key_of(b, cfgk, sizeof(cfgk), "broker/config");
        if (get_one(b, cfgk, cfgv, sizeof(cfgv), &found, NULL) != VMENC_OK || !found ||
            broker_json_field(cfgv, "ek_ca", ca, sizeof(ca)) != VMENC_OK) {
            s = VMENC_E_AUTH;
            rf = ATTEST_REFUSED_EK_CERT;
        } else {
            s = attest_ek_cert_check(ekc, ekc_len, ca, &ek, &ek_len);
            if (s != VMENC_OK)
                rf = ATTEST_REFUSED_EK_CERT;
        }
    } else if (s == VMENC_OK) {
        ek = malloc(ekp_len);
        if (ek == NULL)
            s = VMENC_E_NOMEM;
        else {
            memcpy(ek, ekp, ekp_len);
            ek_len = ekp_len;
        }
    }
    uint8_t secret[32];
    uint8_t *blob = NULL, *encs = NULL;
    size_t blob_len = 0, encs_len = 0;
    randombytes_buf(secret, sizeof(secret));
    if (s == VMENC_OK)
        s = attest_make_credential(ek, ek_len, name, sizeof(name), secret, sizeof(secret), &blob, &blob_len, &encs,
                                   &encs_len);
    if (s == VMENC_OK) {
        uint8_t sh[32], eh[32];
        crypto_hash_sha256(sh, secret, sizeof(secret));
        crypto_hash_sha256(eh, ek, ek_len);
        char *doc = malloc(8192);
        char akhex[2100], namehex[80], shex[65], ehex[65], key[256];
        hexdup(akp, akp_len, akhex, sizeof(akhex));
        hex_of(name, sizeof(name), namehex);
        hex_of(sh, 32, shex);
        hex_of(eh, 32, ehex);
        snprintf(key, sizeof(key), "/vmenc/%s/hosts/%s/enroll", b->cluster, h.id);
        if (doc == NULL)
            s = VMENC_E_NOMEM;
        else {
            snprintf(doc, 8192,
                     "{\"ak_public\":\"%s\",\"ak_name\":\"%s\",\"ek_pub_sha256\":\"%s\",\"secret_sha256\":\"%s\","
                     "\"expires_ms\":\"%llu\"}",
                     akhex, namehex, ehex, shex, (unsigned long long)(vmenc_now_realtime_ms() + ENROLL_TTL_MS));
            s = put_str(b, key, doc);
            free(doc);
        }
    }
    sodium_memzero(secret, sizeof(secret));
    free(ek);
    if (s != VMENC_OK) {
        snprintf(why, sizeof(why), "host %s: enrolment refused: %s", h.id,
                 s == VMENC_E_AUTH ? attest_refusal_str(rf) : vmenc_status_name(s));
        free(blob);
        free(encs);
        ext_refuse(c, rb, it, op, s == VMENC_E_CONTROL_UNAVAILABLE ? AUTHZ_FAIL : AUTHZ_DENY,
                   KMIP_REASON_ATTESTATION_FAILED, why);
        return;
    }
    snprintf(why, sizeof(why), "host %s: enrolment begun (credential issued to its EK for its AK)", h.id);
    (void)audit(b, c->principal, op, NULL, VMENC_AUDIT_SUCCESS, VMENC_OK, why);
    vmenc_kmip_response_success_begin(rb, it->operation, it->batch_id, it->batch_id_len);
    vmenc_ttlv_add_bytes(&rb->cbb, BROKER_TAG_CREDENTIAL_BLOB, blob, blob_len);
    vmenc_ttlv_add_bytes(&rb->cbb, BROKER_TAG_ENCRYPTED_SECRET, encs, encs_len);
    vmenc_kmip_response_success_end(rb);
    free(blob);
    free(encs);
}

/* Enroll-Finish: ActivatedCredential == the secret -> hosts/<id>/tpm,
 * awaiting an administrator's approval. */
static void do_enroll_finish(conn_ctx *c, vmenc_kmip_response_builder *rb, const vmenc_kmip_server_request *req,
                             const vmenc_kmip_request_item *it) {
    vmenc_broker *b = c->b;
    const char *op = "broker.tpm.enroll";
    char why[REASON_MAX];
    host_id h;
    authz a = req_host(c, false, &h, why, sizeof(why));
    if (a != AUTHZ_ALLOW) {
        ext_refuse(c, rb, it, op, a, KMIP_REASON_PERMISSION_DENIED, why);
        return;
    }
    const uint8_t *cred = NULL;
    size_t cred_len = 0;
    if (!get_bytes1(&req->doc, it->payload, BROKER_TAG_ACTIVATED_CREDENTIAL, &cred, &cred_len)) {
        vmenc_kmip_response_failure(rb, it->operation, it->batch_id, it->batch_id_len, KMIP_REASON_INVALID_FIELD,
                                    "ActivatedCredential expected");
        return;
    }
    char key[256], *val = malloc(8192);
    bool found = false;
    snprintf(key, sizeof(key), "/vmenc/%s/hosts/%s/enroll", b->cluster, h.id);
    vmenc_status s = val != NULL ? get_one(b, key, val, 8192, &found, NULL) : VMENC_E_NOMEM;
    char shex[80], exp[32], akhex[2100], namehex[80], ehex[80];
    if (s == VMENC_OK && (!found || broker_json_field(val, "secret_sha256", shex, sizeof(shex)) != VMENC_OK ||
                          broker_json_field(val, "expires_ms", exp, sizeof(exp)) != VMENC_OK ||
                          broker_json_field(val, "ak_public", akhex, sizeof(akhex)) != VMENC_OK ||
                          broker_json_field(val, "ak_name", namehex, sizeof(namehex)) != VMENC_OK ||
                          broker_json_field(val, "ek_pub_sha256", ehex, sizeof(ehex)) != VMENC_OK))
        s = VMENC_E_NOT_FOUND;
    uint8_t want[32], got[32];
    size_t wl = 0;
    if (s == VMENC_OK && (!unhex(shex, want, sizeof(want), &wl) || wl != 32))
        s = VMENC_E_PARSE;
    if (s == VMENC_OK && strtoull(exp, NULL, 10) < vmenc_now_realtime_ms())
        s = VMENC_E_BAD_STATE;
    if (s == VMENC_OK) {
        crypto_hash_sha256(got, cred, cred_len);
        if (sodium_memcmp(got, want, 32) != 0)
            s = VMENC_E_AUTH;
    }
    if (s == VMENC_OK) {
        char *doc = malloc(8192), tkey[256];
        snprintf(tkey, sizeof(tkey), "/vmenc/%s/hosts/%s/tpm", b->cluster, h.id);
        if (doc == NULL)
            s = VMENC_E_NOMEM;
        else {
            snprintf(doc, 8192,
                     "{\"ek_pub_sha256\":\"%s\",\"ak_public\":\"%s\",\"ak_name\":\"%s\",\"bound_at\":\"%llu\","
                     "\"status\":\"awaiting approval\"}",
                     ehex, akhex, namehex, (unsigned long long)vmenc_now_realtime_ms());
            s = put_str(b, tkey, doc);
            free(doc);
        }
        if (s == VMENC_OK) {
            vmenc_etcd_delete_req dr = {.key = (const uint8_t *)key, .key_len = strlen(key)};
            vmenc_status ds = vmenc_etcd_delete_range(etcd_of_b(b), &dr, NULL);
            (void)ds;
        }
    }
    free(val);
    if (s != VMENC_OK) {
        snprintf(why, sizeof(why), "host %s: enrolment not finished: %s", h.id,
                 s == VMENC_E_AUTH       ? "the activated credential is not the secret issued (another TPM or AK)"
                 : s == VMENC_E_BAD_STATE ? "the credential expired"
                 : s == VMENC_E_NOT_FOUND ? "no enrolment in progress"
                                          : vmenc_status_name(s));
        ext_refuse(c, rb, it, op, AUTHZ_DENY, KMIP_REASON_ATTESTATION_FAILED, why);
        return;
    }
    snprintf(why, sizeof(why), "host %s: TPM bound (AK %.16s...), awaiting approval", h.id, namehex);
    (void)audit(b, c->principal, op, NULL, VMENC_AUDIT_SUCCESS, VMENC_OK, why);
    vmenc_kmip_response_success_begin(rb, it->operation, it->batch_id, it->batch_id_len);
    vmenc_ttlv_add_text(&rb->cbb, BROKER_TAG_REASON, "enrolled, awaiting approval", 27);
    vmenc_kmip_response_success_end(rb);
}

static void do_challenge(conn_ctx *c, broker_conn *bc, vmenc_kmip_response_builder *rb,
                         const vmenc_kmip_request_item *it) {
    char why[REASON_MAX];
    host_id h;
    authz a = req_host(c, false, &h, why, sizeof(why));
    attest_cfg ac;
    vmenc_status s = a == AUTHZ_ALLOW ? read_attest_cfg(c->b, &ac) : VMENC_OK;
    if (a == AUTHZ_ALLOW && s != VMENC_OK) {
        a = AUTHZ_FAIL;
        snprintf(why, sizeof(why), "broker configuration unreadable (%s)", vmenc_status_name(s));
    }
    if (a != AUTHZ_ALLOW || bc == NULL) {
        ext_refuse(c, rb, it, "broker.attest", a == AUTHZ_ALLOW ? AUTHZ_DENY : a, KMIP_REASON_PERMISSION_DENIED,
                   why);
        return;
    }
    randombytes_buf(bc->nonce, sizeof(bc->nonce));
    bc->nonce_ms = vmenc_now_monotonic_ms();
    bc->nonce_live = true;
    vmenc_kmip_response_success_begin(rb, it->operation, it->batch_id, it->batch_id_len);
    vmenc_ttlv_add_bytes(&rb->cbb, BROKER_TAG_NONCE, bc->nonce, sizeof(bc->nonce));
    vmenc_ttlv_add_text(&rb->cbb, BROKER_TAG_PCR_SELECTION, ac.pcrs, strlen(ac.pcrs));
    vmenc_kmip_response_success_end(rb);
}

/* record_attest writes attest/<host>; |quote| (may be "") adds the nonce and
 * the quote's bytes, so the record can be verified again independently. */
static void record_attest(vmenc_broker *b, const char *host, const char *digest_hex, const char *result,
                          const char *quote) {
    char key[256], val[QUOTE_JSON_MAX + 768];
    snprintf(key, sizeof(key), "/vmenc/%s/attest/%s", b->cluster, host);
    snprintf(val, sizeof(val), "{\"time_ms\":\"%llu\",\"digest\":\"%s\",\"result\":\"%s\",\"broker\":\"%s\"%s}",
             (unsigned long long)vmenc_now_realtime_ms(), digest_hex, result, b->broker_id, quote);
    vmenc_status s = put_str(b, key, val);
    (void)s; /* the answer to the host stands; the period mode then finds no good result */
}

static void do_quote(conn_ctx *c, broker_conn *bc, vmenc_kmip_response_builder *rb,
                     const vmenc_kmip_server_request *req, const vmenc_kmip_request_item *it) {
    vmenc_broker *b = c->b;
    const char *op = "broker.attest";
    char why[REASON_MAX];
    host_id h;
    authz a = req_host(c, false, &h, why, sizeof(why));
    if (a != AUTHZ_ALLOW || bc == NULL) {
        ext_refuse(c, rb, it, op, a == AUTHZ_ALLOW ? AUTHZ_DENY : a, KMIP_REASON_PERMISSION_DENIED, why);
        return;
    }
    const vmenc_ttlv_doc *d = &req->doc;
    const uint8_t *nonce, *att, *sig, *pcr;
    size_t nonce_len, att_len, sig_len, pcr_len;
    if (!get_bytes1(d, it->payload, BROKER_TAG_NONCE, &nonce, &nonce_len) ||
        !get_bytes1(d, it->payload, BROKER_TAG_QUOTE_ATTEST, &att, &att_len) ||
        !get_bytes1(d, it->payload, BROKER_TAG_QUOTE_SIGNATURE, &sig, &sig_len) ||
        !get_bytes1(d, it->payload, BROKER_TAG_PCR_VALUES, &pcr, &pcr_len)) {
        vmenc_kmip_response_failure(rb, it->operation, it->batch_id, it->batch_id_len, KMIP_REASON_INVALID_FIELD,
                                    "Nonce, QuoteAttest, QuoteSignature and PCRValues expected");
        return;
    }
    /* the nonce: issued on this connection, unused, fresh - single use either way */
    bool nonce_ok = bc->nonce_live && nonce_len == sizeof(bc->nonce) &&
                    sodium_memcmp(nonce, bc->nonce, sizeof(bc->nonce)) == 0 &&
                    vmenc_now_monotonic_ms() - bc->nonce_ms <= NONCE_TTL_MS;
    uint8_t issued[32];
    memcpy(issued, bc->nonce, sizeof(issued));
    bc->nonce_live = false;
    bc->quote_ok = false;
    if (!nonce_ok) {
        snprintf(why, sizeof(why), "host %s: quote refused: the nonce is not the one issued on this connection "
                 "(replayed, used or expired)", h.id);
        record_attest(b, h.id, "", "refused: replayed or unknown nonce", "");
        ext_refuse(c, rb, it, op, AUTHZ_DENY, KMIP_REASON_ATTESTATION_FAILED, why);
        return;
    }
    attest_cfg ac;
    char key[256], *val = malloc(8192), akhex[2100], status[64];
    bool found = false;
    vmenc_status s = read_attest_cfg(b, &ac);
    snprintf(key, sizeof(key), "/vmenc/%s/hosts/%s/tpm", b->cluster, h.id);
    if (s == VMENC_OK)
        s = val != NULL ? get_one(b, key, val, 8192, &found, NULL) : VMENC_E_NOMEM;
    if (s != VMENC_OK) {
        free(val);
        snprintf(why, sizeof(why), "cluster %s: control plane unavailable (%s)", b->cluster, vmenc_status_name(s));
        ext_refuse(c, rb, it, op, AUTHZ_FAIL, KMIP_REASON_GENERAL_FAILURE, why);
        return;
    }
    uint8_t akp[1024];
    size_t akp_len = 0;
    if (!found || broker_json_field(val, "ak_public", akhex, sizeof(akhex)) != VMENC_OK ||
        broker_json_field(val, "status", status, sizeof(status)) != VMENC_OK ||
        !unhex(akhex, akp, sizeof(akp), &akp_len) || strcmp(status, "approved") != 0) {
        free(val);
        snprintf(why, sizeof(why), "host %s: no approved TPM binding (enrol, then an administrator approves)", h.id);
        record_attest(b, h.id, "", "refused: no approved TPM binding", "");
        ext_refuse(c, rb, it, op, AUTHZ_DENY, KMIP_REASON_ATTESTATION_FAILED, why);
        return;
    }
    free(val);
    char *quote = malloc(QUOTE_JSON_MAX);
    if (quote == NULL) {
        ext_refuse(c, rb, it, op, AUTHZ_FAIL, KMIP_REASON_GENERAL_FAILURE, "out of memory");
        return;
    }
    quote[0] = '\0';
    if (2 * (sizeof(issued) + att_len + sig_len + pcr_len) + 80 < QUOTE_JSON_MAX) {
        char *q = quote;
        q += sprintf(q, ",\"nonce\":\"");
        hex_of(issued, sizeof(issued), q);
        q += strlen(q);
        q += sprintf(q, "\",\"attest\":\"");
        hex_of(att, att_len, q);
        q += strlen(q);
        q += sprintf(q, "\",\"sig\":\"");
        hex_of(sig, sig_len, q);
        q += strlen(q);
        q += sprintf(q, "\",\"pcr_values\":\"");
        hex_of(pcr, pcr_len, q);
        q += strlen(q);
        sprintf(q, "\"");
    }
    attest_quote_result qr;
    memset(&qr, 0, sizeof(qr));
    s = attest_quote_verify(akp, akp_len, att, att_len, sig, sig_len, issued, sizeof(issued), ac.pcrs, pcr, pcr_len,
                            NULL, 0, &qr);
    char dhex[65] = "";
    if (s == VMENC_OK)
        hex_of(qr.pcr_digest, 32, dhex);
    bool approved = false;
    if (s == VMENC_OK) {
        vmenc_status as = digest_approved(b, ac.pcrs, dhex, &approved);
        if (as != VMENC_OK) {
            snprintf(why, sizeof(why), "cluster %s: control plane unavailable (%s)", b->cluster,
                     vmenc_status_name(as));
            free(quote);
            ext_refuse(c, rb, it, op, AUTHZ_FAIL, KMIP_REASON_GENERAL_FAILURE, why);
            return;
        }
    }
    if (s != VMENC_OK || !approved) {
        char res[200];
        snprintf(res, sizeof(res), "refused: %s",
                 s != VMENC_OK ? (s == VMENC_E_AUTH ? attest_refusal_str(qr.refusal) : vmenc_status_name(s))
                               : "measurement not approved");
        snprintf(why, sizeof(why), "host %s: quote %s%s%.16s", h.id, res, s == VMENC_OK ? " (digest " : "",
                 s == VMENC_OK ? dhex : "");
        if (s == VMENC_OK)
            strncat(why, "...)", sizeof(why) - strlen(why) - 1);
        record_attest(b, h.id, dhex, res, quote);
        free(quote);
        ext_refuse(c, rb, it, op, AUTHZ_DENY, KMIP_REASON_ATTESTATION_FAILED, why);
        return;
    }
    record_attest(b, h.id, dhex, "ok", quote);
    free(quote);
    bc->quote_ok = true;
    snprintf(why, sizeof(why), "host %s attested: measurement %.16s... approved", h.id, dhex);
    (void)audit(b, c->principal, op, NULL, VMENC_AUDIT_SUCCESS, VMENC_OK, why);
    vmenc_kmip_response_success_begin(rb, it->operation, it->batch_id, it->batch_id_len);
    uint64_t until = vmenc_now_realtime_ms() / 1000 + (ac.mode == ATTEST_MODE_PERIOD ? ac.period_s : 0);
    vmenc_ttlv_add_datetime(&rb->cbb, BROKER_TAG_VALID_UNTIL, (int64_t)until);
    vmenc_kmip_response_success_end(rb);
}

vmenc_status broker_handle(vmenc_broker *b, broker_conn *bc, const char *fp, const uint8_t *in, size_t in_len,
                           uint8_t **out, size_t *out_len, bool *out_secure) {
    vmenc_kmip_server_request req;
    VMENC_GUARD(vmenc_kmip_server_request_parse(in, in_len, &req));
    conn_ctx c = {.b = b, .kek_upstream = VMENC_E_BAD_STATE, .bc = bc};
    tl_rev = 0;
    snprintf(c.fp, sizeof(c.fp), "%s", fp);
    snprintf(c.principal, sizeof(c.principal), "cert:%.16s", fp);
    bool secure = false;
    for (uint32_t i = 0; i < req.num_items; i++)
        secure = secure || req.items[i].operation == KMIP_OP_GET;
    vmenc_kmip_version v = version_served(req.version) ? req.version : k_v14;
    vmenc_kmip_response_builder rb;
    vmenc_status s = vmenc_kmip_response_begin(&rb, v, (int64_t)(vmenc_now_realtime_ms() / 1000), req.num_items,
                                               secure);
    if (s != VMENC_OK) {
        vmenc_kmip_server_request_cleanup(&req);
        return s;
    }
    for (uint32_t i = 0; i < req.num_items; i++) {
        const vmenc_kmip_request_item *it = &req.items[i];
        if (!version_served(req.version) && it->operation != KMIP_OP_DISCOVER_VERSIONS) {
            vmenc_kmip_response_failure(&rb, it->operation, it->batch_id, it->batch_id_len,
                                        KMIP_REASON_OPERATION_NOT_SUPPORTED, "the broker speaks KMIP 1.2-1.4");
            continue;
        }
        switch (it->operation) {
        case KMIP_OP_DISCOVER_VERSIONS: do_discover(&rb, &req, it); break;
        case KMIP_OP_QUERY: do_query(&c, &rb, it); break;
        case KMIP_OP_GET: do_get(&c, &rb, &req, it, true); break;
        case KMIP_OP_GET_ATTRIBUTES: do_get(&c, &rb, &req, it, false); break;
        case KMIP_OP_CREATE: do_create(&c, &rb, &req, it); break;
        case KMIP_OP_LOCATE: do_locate(&c, &rb, &req, it); break;
        case KMIP_OP_ACTIVATE: do_activate(&c, &rb, &req, it); break;
        case (uint32_t)BROKER_OP_ENROLL_BEGIN: do_enroll_begin(&c, &rb, &req, it); break;
        case (uint32_t)BROKER_OP_ENROLL_FINISH: do_enroll_finish(&c, &rb, &req, it); break;
        case (uint32_t)BROKER_OP_ATTEST_CHALLENGE: do_challenge(&c, bc, &rb, it); break;
        case (uint32_t)BROKER_OP_ATTEST_QUOTE: do_quote(&c, bc, &rb, &req, it); break;
        default:
            vmenc_kmip_response_failure(&rb, it->operation, it->batch_id, it->batch_id_len,
                                        KMIP_REASON_OPERATION_NOT_SUPPORTED,
                                        "not served by the key broker (revoke and destroy at the KMS)");
            break;
        }
    }
    vmenc_kmip_server_request_cleanup(&req);
    *out_secure = secure;
    return vmenc_kmip_response_finish(&rb, out, out_len);
}

/* ---- TLS server and connections --------------------------------------------------------------- */

static vmenc_status server_ctx(const vmenc_broker_config *cfg, SSL_CTX **out) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    VMENC_ENSURE(ctx != NULL, VMENC_E_NOMEM);
    vmenc_status s = VMENC_OK;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1 ||
        SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1)
        s = VMENC_E_KMS_TLS;
    if (s == VMENC_OK) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
        if (names == NULL)
            s = VMENC_E_KMS_TLS;
        else
            SSL_CTX_set_client_CA_list(ctx, names);
    }
    ERR_clear_error();
    if (s != VMENC_OK) {
        SSL_CTX_free(ctx);
        return s;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    *out = ctx;
    return VMENC_OK;
}

static bool read_full(SSL *ssl, uint8_t *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        int n = SSL_read(ssl, buf + got, (int)(len - got));
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return true;
}

static bool write_full(SSL *ssl, const uint8_t *buf, size_t len) {
    size_t off = 0;
    while (off < len) {
        int n = SSL_write(ssl, buf + off, (int)(len - off));
        if (n <= 0)
            return false;
        off += (size_t)n;
    }
    return true;
}

static bool peer_fingerprint(SSL *ssl, char out[65]) {
    X509 *x = SSL_get1_peer_certificate(ssl);
    if (x == NULL)
        return false;
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    X509_free(x);
    if (n <= 0)
        return false;
    uint8_t h[32];
    crypto_hash_sha256(h, der, (unsigned long long)n);
    OPENSSL_free(der);
    hex_of(h, 32, out);
    return true;
}

static void serve_conn(vmenc_broker *b, conn_slot *slot, int fd) {
    struct timeval tv = {.tv_sec = b->idle_ms / 1000, .tv_usec = (b->idle_ms % 1000) * 1000};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    SSL *ssl = SSL_new(b->ctx);
    char fp[65];
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1 || !peer_fingerprint(ssl, fp)) {
        atomic_fetch_add(&b->n_errors, 1);
        SSL_free(ssl);
        ERR_clear_error();
        return;
    }
    atomic_fetch_add(&b->n_conns, 1);
    vmenc_etcd *mine = NULL;
    if (vmenc_etcd_dup(b->etcd, &mine) == VMENC_OK)
        tl_etcd = mine;
    broker_conn bc;
    memset(&bc, 0, sizeof(bc));
    uint8_t *buf = vmenc_secure_alloc(b->max_request);
    uint64_t served = 0;
    /* At stop a connection is cut only while idle after a request: one cut
     * between its handshake and its first answer would look to the host
     * like a refused certificate (TLS 1.3) and stop its failover. */
    while (buf != NULL && !(atomic_load(&b->stopping) && served > 0)) {
        size_t total = 0;
        atomic_store(&slot->idle, served > 0);
        bool got = read_full(ssl, buf, VMENC_TTLV_HEADER_LEN);
        atomic_store(&slot->idle, false);
        if (!got)
            break;
        if (vmenc_ttlv_message_len(buf, VMENC_TTLV_HEADER_LEN, b->max_request, &total) != VMENC_OK ||
            !read_full(ssl, buf + VMENC_TTLV_HEADER_LEN, total - VMENC_TTLV_HEADER_LEN)) {
            atomic_fetch_add(&b->n_errors, 1);
            break;
        }
        atomic_fetch_add(&b->n_requests, 1);
        uint8_t *resp = NULL;
        size_t resp_len = 0;
        bool secure = false;
        vmenc_status s = broker_handle(b, &bc, fp, buf, total, &resp, &resp_len, &secure);
        sodium_memzero(buf, total);
        if (s != VMENC_OK) {
            atomic_fetch_add(&b->n_errors, 1);
            break; /* not a KMIP request: the stream is out of step */
        }
        bool ok = write_full(ssl, resp, resp_len);
        if (secure)
            vmenc_secure_free(resp);
        else {
            sodium_memzero(resp, resp_len);
            free(resp);
        }
        if (!ok)
            break;
        served++;
    }
    vmenc_secure_free(buf);
    tl_etcd = NULL;
    vmenc_etcd_free(mine);
    (void)SSL_shutdown(ssl);
    SSL_free(ssl);
    ERR_clear_error();
}

static void *conn_main(void *arg) {
    conn_slot *slot = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE); /* a peer gone mid-write is EPIPE, not a dead daemon */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    serve_conn(slot->b, slot, slot->fd);
    pthread_mutex_lock(&slot->b->mu);
    close(slot->fd);
    slot->fd = -1;
    pthread_mutex_unlock(&slot->b->mu);
    atomic_store(&slot->done, true);
    return NULL;
}

static void reap(vmenc_broker *b, bool all) {
    for (uint32_t i = 0; i < b->max_conns; i++) {
        conn_slot *s = &b->slots[i];
        if (!s->used || (!all && !atomic_load(&s->done)))
            continue;
        pthread_join(s->th, NULL);
        s->used = false;
    }
}

vmenc_status vmenc_broker_serve(vmenc_broker *b) {
    VMENC_ENSURE_REF(b);
    bool was = false;
    VMENC_ENSURE(atomic_compare_exchange_strong(&b->serving, &was, true), VMENC_E_BAD_STATE);
    while (!atomic_load(&b->stopping)) {
        struct pollfd p = {.fd = b->listen_fd, .events = POLLIN};
        int r = poll(&p, 1, 100);
        reap(b, false);
        if (r <= 0)
            continue;
        int fd = accept(b->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        conn_slot *slot = NULL;
        for (uint32_t i = 0; i < b->max_conns && slot == NULL; i++)
            if (!b->slots[i].used)
                slot = &b->slots[i];
        if (slot == NULL) {
            atomic_fetch_add(&b->n_errors, 1);
            close(fd);
            continue;
        }
        pthread_mutex_lock(&b->mu);
        slot->used = true;
        slot->fd = fd;
        slot->b = b;
        atomic_store(&slot->done, false);
        atomic_store(&slot->idle, false);
        pthread_mutex_unlock(&b->mu);
        if (pthread_create(&slot->th, NULL, conn_main, slot) != 0) {
            slot->used = false;
            close(fd);
        }
    }
    /* Stop accepting (new connections are refused: hosts fail over), cut
     * idle connections, let the others finish the request they are in -
     * for at most STOP_GRACE_MS, then cut everything. */
    close(b->listen_fd);
    b->listen_fd = -1;
    uint64_t until = vmenc_now_monotonic_ms() + STOP_GRACE_MS;
    for (;;) {
        bool busy = false, all = vmenc_now_monotonic_ms() >= until;
        pthread_mutex_lock(&b->mu);
        for (uint32_t i = 0; i < b->max_conns; i++) {
            conn_slot *sl = &b->slots[i];
            if (!sl->used || sl->fd < 0 || atomic_load(&sl->done))
                continue;
            if (all || atomic_load(&sl->idle))
                (void)shutdown(sl->fd, SHUT_RDWR);
            else
                busy = true;
        }
        pthread_mutex_unlock(&b->mu);
        if (!busy)
            break;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    reap(b, true);
    atomic_store(&b->serving, false);
    return VMENC_OK;
}

void vmenc_broker_stop(vmenc_broker *b) {
    if (b != NULL)
        atomic_store(&b->stopping, true);
}

/* ---- open / close / status -------------------------------------------------------------------------- */

static vmenc_status listen_on(vmenc_broker *b, const char *host, uint16_t port) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", port);
    VMENC_ENSURE(getaddrinfo(host, ps, &hints, &ai) == 0 && ai != NULL, VMENC_E_INVALID_ARG);
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
              bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0;
    freeaddrinfo(ai);
    if (!ok) {
        if (fd >= 0)
            close(fd);
        return VMENC_E_IO;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        b->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    b->listen_fd = fd;
    return VMENC_OK;
}

static bool cfg_ok(const vmenc_broker_config *c) {
    return c->workspace_dir != NULL && c->ca_file != NULL && c->cert_file != NULL && c->key_file != NULL &&
           c->cluster != NULL && c->etcd_endpoints != NULL && c->etcd_ca_file != NULL && c->etcd_cert_file != NULL &&
           c->etcd_key_file != NULL && ctl_cluster_name_ok(c->cluster);
}

vmenc_status vmenc_broker_open(const vmenc_broker_config *cfg, vmenc_broker **out) {
    VMENC_ENSURE(cfg != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(cfg->struct_size >= sizeof(vmenc_broker_config),
                 VMENC_E_ABI_VERSION);
    VMENC_ENSURE(cfg_ok(cfg), VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());
    vmenc_broker *b = calloc(1, sizeof(*b));
    VMENC_ENSURE(b != NULL, VMENC_E_NOMEM);
    b->listen_fd = -1;
    b->idle_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : DEFAULT_IDLE_MS;
    b->max_conns = cfg->max_connections ? cfg->max_connections : DEFAULT_MAX_CONNS;
    b->max_request = cfg->max_request_bytes ? cfg->max_request_bytes : DEFAULT_MAX_REQUEST;
    if (b->max_request < 1024 || b->max_request > VMENC_TTLV_MAX_MESSAGE)
        b->max_request = DEFAULT_MAX_REQUEST;
    pthread_mutex_init(&b->mu, NULL);
    vmenc_status s = VMENC_E_NOMEM;
    b->broker_id = strdup(cfg->broker_id != NULL ? cfg->broker_id : "broker");
    b->cluster = strdup(cfg->cluster);
    b->slots = calloc(b->max_conns, sizeof(*b->slots));
    if (b->broker_id != NULL && b->cluster != NULL && b->slots != NULL) {
        vmenc_workspace_error err;
        memset(&err, 0, sizeof(err));
        err.struct_size = sizeof(err);
        s = vmenc_workspace_open(cfg->workspace_dir, cfg->open_options, &err, &b->ws);
    }
    if (s == VMENC_OK) {
        b->mgr = vmenc_workspace_keymgr(b->ws);
        b->audit = vmenc_workspace_audit(b->ws);
        const ws_config *wc = b->ws->cfg;
        if (cfg->provider != NULL)
            s = ws_config_find_kms(wc, cfg->provider) >= 0 ? VMENC_OK : VMENC_E_NOT_FOUND;
        else
            s = wc->num_kms == 1 ? VMENC_OK : VMENC_E_INVALID_ARG;
        if (s == VMENC_OK) {
            b->provider = strdup(cfg->provider != NULL ? cfg->provider : wc->kms[0].alias);
            s = b->provider != NULL ? VMENC_OK : VMENC_E_NOMEM;
        }
    }
    if (s == VMENC_OK) {
        vmenc_etcd_config ec = {.struct_size = sizeof(ec),
                                .endpoints = cfg->etcd_endpoints,
                                .ca_file = cfg->etcd_ca_file,
                                .cert_file = cfg->etcd_cert_file,
                                .key_file = cfg->etcd_key_file,
                                .connect_timeout_ms = 1000,
                                .request_timeout_ms = cfg->etcd_request_timeout_ms ? cfg->etcd_request_timeout_ms
                                                                                  : DEFAULT_ETCD_REQUEST_MS};
        s = vmenc_etcd_new(&ec, &b->etcd);
    }
    if (s == VMENC_OK)
        s = server_ctx(cfg, &b->ctx);
    if (s == VMENC_OK)
        s = listen_on(b, cfg->listen_host != NULL ? cfg->listen_host : "127.0.0.1", cfg->listen_port);
    if (s == VMENC_OK)
        s = vmenc_audit_add_callback(b->audit, mirror_sink, b);
    if (s != VMENC_OK) {
        vmenc_broker_close(b);
        return s;
    }
    *out = b;
    return VMENC_OK;
}

void vmenc_broker_close(vmenc_broker *b) {
    if (b == NULL)
        return;
    if (b->listen_fd >= 0)
        close(b->listen_fd);
    ctl_store_free(b->store);
    SSL_CTX_free(b->ctx);
    /* the audit callback points at |b|: the workspace (and its dispatcher) goes first */
    vmenc_workspace_free(b->ws);
    vmenc_etcd_free(b->etcd);
    free(b->slots);
    free(b->provider);
    free(b->broker_id);
    free(b->cluster);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

vmenc_status vmenc_broker_get_status(vmenc_broker *b, vmenc_broker_status *out) {
    VMENC_ENSURE(b != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= sizeof(vmenc_broker_status), VMENC_E_ABI_VERSION);
    out->port = b->port;
    out->connections = atomic_load(&b->n_conns);
    out->requests = atomic_load(&b->n_requests);
    out->releases = atomic_load(&b->n_releases);
    out->refusals = atomic_load(&b->n_refusals);
    out->errors = atomic_load(&b->n_errors);
    return VMENC_OK;
}
