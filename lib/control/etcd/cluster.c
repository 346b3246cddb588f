/*
 * lib/control/etcd/cluster.c - cluster semantics on etcd: a process's
 * session (lease + keepalive thread + fencing deadline), the host registry,
 * VM ownership, the policy document with its lock and its watch
 * (lib/control/etcd/cluster.h). Key layout, transactions and timing:
 * docs/cluster.md.
 *
 * Values this file writes and reads back are short text, one field per
 * line ("HOST\nLEASE\nVM"), split with bounds checks; nothing read from
 * etcd is used as a length or an index.
 *
 * Safety rule: the fencing deadline moves only forward and only on a
 * keepalive answer that proves the lease alive; it is computed from the
 * time the request was *sent*, so it never outlives the lease as etcd
 * counts it.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control/etcd/cluster.h"

#define KEY_MAX 512u
#define MAX_OWNED 256u

typedef struct owned {
    char uuid[40];
    uint32_t count;
    bool ours; /* the key is bound to this session's lease (we created it) */
} owned;

struct ctl_cluster {
    char name[CTL_CLUSTER_NAME_MAX + 1];
    char host[CTL_CLUSTER_HOST_MAX + 1];
    vmenc_etcd *etcd;      /* unary calls of the process */
    vmenc_etcd *ka;        /* the keepalive thread's */
    vmenc_etcd *wc;        /* the watch thread's resyncs */
    int64_t lease;
    uint32_t ttl_s;
    uint32_t margin_ms;
    _Atomic uint64_t deadline_ms;   /* fencing deadline (monotonic ms); 0: fenced */
    atomic_bool lease_gone;
    _Atomic uint64_t ka_ok, ka_failed;
    uint64_t granted_sent_ms;       /* when the grant of |lease| was sent (monotonic ms) */
    pthread_t ka_thread;
    bool ka_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    /* ownership counts */
    owned owned[MAX_OWNED];
    size_t num_owned;
    bool policy_locked;
    /* the watch */
    vmenc_etcd_watch *watch;
    pthread_t watch_thread;
    bool watch_started;
    atomic_bool watch_ok;
    _Atomic int64_t watch_rev;      /* last policy revision handed over */
    ctl_cluster_policy_fn policy_fn;
    void *policy_arg;
};

/* ---- small helpers ------------------------------------------------------------ */

bool ctl_cluster_name_ok(const char *name) {
    if (name == NULL)
        return false;
    size_t n = strlen(name);
    if (n == 0 || n > CTL_CLUSTER_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                  ch == '_' || ch == '-';
        if (!ok)
            return false;
    }
    return name[0] != '.';
}

static vmenc_status key_of(const ctl_cluster *c, char *buf, size_t cap, const char *what, const char *a,
                           const char *b) {
    int n;
    if (a == NULL)
        n = snprintf(buf, cap, "/vmenc/%s/%s", c->name, what);
    else if (b == NULL)
        n = snprintf(buf, cap, "/vmenc/%s/%s/%s", c->name, what, a);
    else
        n = snprintf(buf, cap, "/vmenc/%s/%s/%s/%s", c->name, what, a, b);
    VMENC_ENSURE(n > 0 && (size_t)n < cap, VMENC_E_BUFFER_TOO_SMALL);
    return VMENC_OK;
}

static void sleep_ms(uint32_t ms) {
    struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* line_field copies field |idx| (0-based, LF-separated) of |v| into |out|. */
static void line_field(const uint8_t *v, size_t len, unsigned idx, char *out, size_t cap) {
    size_t start = 0, field = 0;
    out[0] = '\0';
    for (size_t i = 0; i <= len; i++) {
        if (i == len || v[i] == '\n') {
            if (field == idx) {
                size_t n = i - start;
                if (n >= cap)
                    n = cap - 1;
                for (size_t k = 0; k < n; k++) {
                    unsigned char ch = v[start + k];
                    out[k] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
                }
                out[n] = '\0';
                return;
            }
            field++;
            start = i + 1;
        }
    }
}

static const uint8_t *K(const char *s) { return (const uint8_t *)s; }

/* ---- fencing --------------------------------------------------------------------- */

uint64_t ctl_cluster_fence_deadline(uint64_t sent_ms, int64_t ttl_s, uint32_t margin_ms) {
    if (ttl_s <= 0)
        return sent_ms;
    uint64_t life = (uint64_t)ttl_s * 1000u;
    return life > margin_ms ? sent_ms + life - margin_ms : sent_ms;
}

vmenc_status ctl_cluster_write_ok(const ctl_cluster *c) {
    if (c == NULL)
        return VMENC_OK;
    uint64_t d = atomic_load_explicit(&((ctl_cluster *)c)->deadline_ms, memory_order_acquire);
    return vmenc_now_monotonic_ms() < d ? VMENC_OK : VMENC_E_LEASE_EXPIRED;
}

void ctl_cluster_fence_info_get(const ctl_cluster *c, ctl_cluster_fence_info *out) {
    ctl_cluster *m = (ctl_cluster *)c;
    uint64_t d = atomic_load(&m->deadline_ms);
    out->ms_left = (int64_t)d - (int64_t)vmenc_now_monotonic_ms();
    out->lease_gone = atomic_load(&m->lease_gone);
    out->keepalives_ok = atomic_load(&m->ka_ok);
    out->keepalives_failed = atomic_load(&m->ka_failed);
}

/* keepalive_main renews the lease. A renewal is due TTL/3 after the last
 * successful one was *sent*, not TTL/3 after the last attempt ended: the
 * deadline counts from the send time, so a schedule counted from the end
 * of a slow answer (and, for the first renewal, from the start of this
 * thread, after the grant and the session key) could put the next answer
 * past the deadline with every renewal succeeding - a loaded host fenced
 * itself (docs/cluster.md "Leases and fencing"). The first renewal is due
 * TTL/6 after the grant was sent: it also opens this thread's connection
 * (a TLS handshake, the slow part of a renewal). A failed renewal is
 * retried after TTL/12, not a whole interval, while the lease may live. */
static void *keepalive_main(void *arg) {
    ctl_cluster *c = arg;
    uint32_t interval = c->ttl_s * 1000u / 3u;
    if (interval < 200)
        interval = 200;
    pthread_mutex_lock(&c->mu);
    uint64_t due = c->granted_sent_ms + interval / 2u;
    while (!c->stopping) {
        uint64_t now = vmenc_now_monotonic_ms();
        if (now < due) { /* the condition variable runs on CLOCK_MONOTONIC */
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            uint64_t wait = due - now;
            until.tv_sec += (time_t)(wait / 1000u);
            until.tv_nsec += (long)(wait % 1000u) * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            (void)pthread_cond_timedwait(&c->cv, &c->mu, &until);
            continue; /* stopping, due, or woken early: look again */
        }
        pthread_mutex_unlock(&c->mu);
        uint64_t sent = vmenc_now_monotonic_ms();
        int64_t ttl = 0;
        vmenc_status s = atomic_load(&c->lease_gone) ? VMENC_E_LEASE_EXPIRED
                                                     : vmenc_etcd_lease_keepalive_once(c->ka, c->lease, &ttl);
        if (s == VMENC_OK && ttl > 0) {
            uint64_t d = ctl_cluster_fence_deadline(sent, ttl, c->margin_ms);
            uint64_t cur = atomic_load(&c->deadline_ms);
            while (d > cur && !atomic_compare_exchange_weak(&c->deadline_ms, &cur, d)) {
            }
            atomic_fetch_add(&c->ka_ok, 1);
            due = sent + interval;
        } else {
            if (s == VMENC_E_LEASE_EXPIRED || (s == VMENC_OK && ttl <= 0)) {
                /* The lease is gone: another host may own our VMs now. */
                atomic_store(&c->lease_gone, true);
                atomic_store(&c->deadline_ms, 0);
            }
            atomic_fetch_add(&c->ka_failed, 1);
            due = vmenc_now_monotonic_ms() + (atomic_load(&c->lease_gone) ? interval : interval / 4u);
        }
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- open / close --------------------------------------------------------------------- */

static vmenc_status put_session(ctl_cluster *c) {
    char key[KEY_MAX], lease[24];
    snprintf(lease, sizeof(lease), "%016" PRIx64, (uint64_t)c->lease);
    VMENC_GUARD(key_of(c, key, sizeof(key), "session", c->host, lease));
    char val[256];
    time_t now = time(NULL);
    int n = snprintf(val, sizeof(val), "%s\n%" PRId64 "\n%ld\n%s\n%lld", c->host, c->lease, (long)getpid(),
                     program_invocation_short_name, (long long)now);
    vmenc_etcd_put_req p = {.key = K(key), .key_len = strlen(key), .value = K(val),
                            .value_len = n > 0 ? (size_t)n : 0, .lease = c->lease};
    return vmenc_etcd_put(c->etcd, &p, NULL);
}

/* some_leader: does any member report a leader (is there a quorum)? A
 * member without one still answers a status request at once. */
static bool some_leader(vmenc_etcd *e) {
    for (size_t i = 0; i < vmenc_etcd_num_endpoints(e); i++) {
        vmenc_etcd_member_status ms;
        memset(&ms, 0, sizeof(ms));
        if (vmenc_etcd_status(e, i, &ms) == VMENC_OK && ms.leader != 0)
            return true;
    }
    return false;
}

/* wait_leader: some_leader, polled for up to |ms| - a member that just
 * lost its leader reports none until the election ends (about one
 * election timeout, 1 s by default: docs/cluster.md), which is not yet a
 * lost quorum. */
static bool wait_leader(vmenc_etcd *e, uint64_t ms) {
    uint64_t until = vmenc_now_monotonic_ms() + ms;
    for (;;) {
        if (some_leader(e))
            return true;
        if (vmenc_now_monotonic_ms() >= until)
            return false;
        sleep_ms(200);
    }
}

/* retryable: a call that may be repeated safely got no clear answer (a
 * leader election in progress, a member gone mid-request). */
static bool retryable(vmenc_status s) { return s == VMENC_E_OUTCOME_UNKNOWN || s == VMENC_E_CONTROL_UNAVAILABLE; }

/* grant_session: a lease and the session key, retried through a leader
 * election; without quorum VMENC_E_CONTROL_UNAVAILABLE at once. A lease
 * granted by an attempt whose answer was lost is never used and expires. */
static vmenc_status grant_session(ctl_cluster *c, int64_t *out_granted, uint64_t *out_sent) {
    vmenc_status s = VMENC_E_CONTROL_UNAVAILABLE;
    for (int attempt = 0; attempt < 5; attempt++) {
        if (attempt > 0) {
            if (!wait_leader(c->etcd, 3000))
                return VMENC_E_CONTROL_UNAVAILABLE;
            sleep_ms(200);
        }
        *out_sent = vmenc_now_monotonic_ms();
        s = vmenc_etcd_lease_grant(c->etcd, (int64_t)c->ttl_s, 0, &c->lease, out_granted);
        if (s == VMENC_OK) {
            c->granted_sent_ms = *out_sent;
            atomic_store(&c->deadline_ms, ctl_cluster_fence_deadline(*out_sent, *out_granted, c->margin_ms));
            for (int k = 0; k < 5; k++) { /* the session key is a plain put: idempotent */
                s = put_session(c);
                if (!retryable(s))
                    break;
                sleep_ms(200);
            }
            return s;
        }
        if (!retryable(s))
            return s;
    }
    return s == VMENC_E_OUTCOME_UNKNOWN ? VMENC_E_CONTROL_UNAVAILABLE : s;
}

vmenc_status ctl_cluster_open(const ctl_cluster_config *cfg, ctl_cluster **out) {
    VMENC_ENSURE(cfg != NULL && cfg->etcd != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(ctl_cluster_name_ok(cfg->name) && cfg->host_id != NULL && cfg->host_id[0] != '\0' &&
                     strlen(cfg->host_id) <= CTL_CLUSTER_HOST_MAX && strchr(cfg->host_id, '/') == NULL &&
                     strchr(cfg->host_id, '\n') == NULL,
                 VMENC_E_INVALID_ARG);
    ctl_cluster *c = calloc(1, sizeof(*c));
    VMENC_ENSURE(c != NULL, VMENC_E_NOMEM);
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the keepalive waits for a monotonic due time */
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(c->name, sizeof(c->name), "%s", cfg->name);
    snprintf(c->host, sizeof(c->host), "%s", cfg->host_id);
    c->ttl_s = cfg->ttl_s ? cfg->ttl_s : CTL_CLUSTER_DEFAULT_TTL_S;
    c->margin_ms = cfg->margin_ms ? cfg->margin_ms : CTL_CLUSTER_DEFAULT_MARGIN_MS;
    if (c->margin_ms >= c->ttl_s * 1000u)
        c->margin_ms = c->ttl_s * 1000u / 2u;
    vmenc_status s = vmenc_etcd_new(cfg->etcd, &c->etcd);
    /* The keepalive must not wait behind a unary call stuck on a dead
     * quorum: its own client, with requests no longer than its interval. */
    vmenc_etcd_config kc = *cfg->etcd;
    kc.request_timeout_ms = c->ttl_s * 1000u / 3u;
    if (kc.request_timeout_ms < 500)
        kc.request_timeout_ms = 500;
    if (kc.connect_timeout_ms == 0 || kc.connect_timeout_ms > kc.request_timeout_ms)
        kc.connect_timeout_ms = kc.request_timeout_ms;
    if (s == VMENC_OK)
        s = vmenc_etcd_new(&kc, &c->ka);
    if (s == VMENC_OK)
        s = vmenc_etcd_new(cfg->etcd, &c->wc);
    int64_t granted = 0;
    uint64_t sent = 0;
    if (s == VMENC_OK)
        s = grant_session(c, &granted, &sent);
    if (s == VMENC_OK && granted > 0)
        c->ttl_s = (uint32_t)granted;
    if (s == VMENC_OK) {
        if (pthread_create(&c->ka_thread, NULL, keepalive_main, c) != 0)
            s = VMENC_E_NOMEM;
        else
            c->ka_started = true;
    }
    if (s != VMENC_OK) {
        ctl_cluster_close(c);
        return s;
    }
    *out = c;
    return VMENC_OK;
}

static void watch_stop(ctl_cluster *c);

void ctl_cluster_close(ctl_cluster *c) {
    if (c == NULL)
        return;
    watch_stop(c);
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->ka_started)
        pthread_join(c->ka_thread, NULL);
    if (c->lease != 0 && !atomic_load(&c->lease_gone)) {
        /* Revoking deletes every key bound to the lease: ownership, the
         * session, a policy lock. Best effort: if it fails the lease
         * expires after its TTL. */
        vmenc_status s = vmenc_etcd_lease_revoke(c->etcd, c->lease);
        (void)s;
    }
    vmenc_etcd_free(c->wc);
    vmenc_etcd_free(c->ka);
    vmenc_etcd_free(c->etcd);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

vmenc_etcd *ctl_cluster_etcd(ctl_cluster *c) { return c ? c->etcd : NULL; }
const char *ctl_cluster_name(const ctl_cluster *c) { return c ? c->name : ""; }
const char *ctl_cluster_host(const ctl_cluster *c) { return c ? c->host : ""; }
int64_t ctl_cluster_lease(const ctl_cluster *c) { return c ? c->lease : 0; }
uint32_t ctl_cluster_ttl_s(const ctl_cluster *c) { return c ? c->ttl_s : 0; }

/* ---- the cluster document and hosts ------------------------------------------------------ */

static vmenc_status get_one(vmenc_etcd *e, const char *key, bool serializable, uint8_t **out, size_t *out_len,
                            int64_t *out_rev, int64_t *out_lease) {
    vmenc_etcd_range_req r = {.key = K(key), .key_len = strlen(key), .serializable = serializable};
    vmenc_etcd_result res = {0};
    VMENC_GUARD(vmenc_etcd_range(e, &r, &res));
    vmenc_status s = VMENC_OK;
    if (res.num_kvs == 0) {
        s = VMENC_E_NOT_FOUND;
    } else if (out != NULL) {
        uint8_t *b = malloc(res.kvs[0].value_len + 1);
        if (b == NULL) {
            s = VMENC_E_NOMEM;
        } else {
            memcpy(b, res.kvs[0].value, res.kvs[0].value_len);
            b[res.kvs[0].value_len] = '\0';
            *out = b;
            *out_len = res.kvs[0].value_len;
        }
    }
    if (s == VMENC_OK && out_rev != NULL)
        *out_rev = res.kvs[0].mod_revision;
    if (s == VMENC_OK && out_lease != NULL)
        *out_lease = res.kvs[0].lease;
    vmenc_etcd_result_cleanup(&res);
    return s;
}

vmenc_status ctl_cluster_doc_get(ctl_cluster *c, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(c != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    char key[KEY_MAX];
    VMENC_GUARD(key_of(c, key, sizeof(key), "cluster", NULL, NULL));
    return get_one(c->etcd, key, false, out, out_len, NULL, NULL);
}

/* create_if_absent: one txn, compare create_revision == 0, put. */
static vmenc_status create_if_absent(vmenc_etcd *e, const char *key, const uint8_t *val, size_t len, int64_t lease,
                                     vmenc_etcd_txn_result *out) {
    vmenc_etcd_compare cmp = {.target = VMENC_ETCD_CMP_CREATE, .result = VMENC_ETCD_CMP_EQUAL, .key = K(key),
                              .key_len = strlen(key), .number = 0};
    vmenc_etcd_op put = {.type = VMENC_ETCD_OP_PUT,
                         .put = {.key = K(key), .key_len = strlen(key), .value = val, .value_len = len, .lease = lease}};
    vmenc_etcd_op get = {.type = VMENC_ETCD_OP_RANGE, .range = {.key = K(key), .key_len = strlen(key)}};
    vmenc_etcd_txn_req t = {.compares = &cmp, .num_compares = 1, .success = &put, .num_success = 1,
                            .failure = &get, .num_failure = 1};
    return vmenc_etcd_txn(e, &t, out);
}

vmenc_status ctl_cluster_doc_create(ctl_cluster *c, const uint8_t *doc, size_t len) {
    VMENC_ENSURE(c != NULL && doc != NULL, VMENC_E_INVALID_ARG);
    char key[KEY_MAX];
    VMENC_GUARD(key_of(c, key, sizeof(key), "cluster", NULL, NULL));
    vmenc_etcd_txn_result r = {0};
    VMENC_GUARD(create_if_absent(c->etcd, key, doc, len, 0, &r));
    vmenc_status s = r.succeeded ? VMENC_OK : VMENC_E_EXISTS;
    vmenc_etcd_txn_result_cleanup(&r);
    return s;
}

vmenc_status ctl_cluster_host_put(ctl_cluster *c, const char *info_json) {
    VMENC_ENSURE(c != NULL && info_json != NULL && strlen(info_json) <= CTL_CLUSTER_INFO_MAX, VMENC_E_INVALID_ARG);
    VMENC_GUARD(ctl_cluster_write_ok(c));
    char key[KEY_MAX];
    VMENC_GUARD(key_of(c, key, sizeof(key), "host", c->host, NULL));
    vmenc_etcd_put_req p = {.key = K(key), .key_len = strlen(key), .value = K(info_json),
                            .value_len = strlen(info_json)};
    return vmenc_etcd_put(c->etcd, &p, NULL);
}

vmenc_status ctl_cluster_host_get(ctl_cluster *c, const char *host, uint8_t **out, size_t *out_len,
                                  int64_t *out_rev) {
    VMENC_ENSURE(c != NULL && host != NULL && out != NULL && out_len != NULL && out_rev != NULL,
                 VMENC_E_INVALID_ARG);
    char key[KEY_MAX];
    VMENC_GUARD(key_of(c, key, sizeof(key), "host", host, NULL));
    return get_one(c->etcd, key, false, out, out_len, out_rev, NULL);
}

vmenc_status ctl_cluster_host_delete(ctl_cluster *c) {
    VMENC_ENSURE_REF(c);
    char key[KEY_MAX];
    VMENC_GUARD(key_of(c, key, sizeof(key), "host", c->host, NULL));
    vmenc_etcd_delete_req d = {.key = K(key), .key_len = strlen(key)};
    return vmenc_etcd_delete_range(c->etcd, &d, NULL);
}

vmenc_status ctl_cluster_hosts(ctl_cluster *c, ctl_cluster_host_fn fn, void *arg) {
    VMENC_ENSURE(c != NULL && fn != NULL, VMENC_E_INVALID_ARG);
    char hkey[KEY_MAX], skey[KEY_MAX];
    VMENC_GUARD(key_of(c, hkey, sizeof(hkey), "host/", NULL, NULL));
    VMENC_GUARD(key_of(c, skey, sizeof(skey), "session/", NULL, NULL));
    hkey[strlen(hkey)] = '\0';
    vmenc_etcd_range_req hr = {.key = K(hkey), .key_len = strlen(hkey), .prefix = true};
    vmenc_etcd_range_req sr = {.key = K(skey), .key_len = strlen(skey), .prefix = true, .keys_only = true};
    vmenc_etcd_result hres = {0}, sres = {0};
    vmenc_status s = vmenc_etcd_range(c->etcd, &hr, &hres);
    if (s == VMENC_OK)
        s = vmenc_etcd_range(c->etcd, &sr, &sres);
    for (size_t i = 0; s == VMENC_OK && i < hres.num_kvs; i++) {
        const vmenc_etcd_kv *kv = &hres.kvs[i];
        size_t pl = strlen(hkey);
        if (kv->key_len <= pl || kv->key_len - pl > CTL_CLUSTER_HOST_MAX)
            continue;
        char host[CTL_CLUSTER_HOST_MAX + 1];
        memcpy(host, kv->key + pl, kv->key_len - pl);
        host[kv->key_len - pl] = '\0';
        if (memchr(host, '\0', kv->key_len - pl) != NULL)
            continue;
        uint32_t live = 0;
        size_t sl = strlen(skey), hl = strlen(host);
        for (size_t j = 0; j < sres.num_kvs; j++) {
            const vmenc_etcd_kv *sk = &sres.kvs[j];
            if (sk->key_len > sl + hl + 1 && memcmp(sk->key + sl, host, hl) == 0 && sk->key[sl + hl] == '/')
                live++;
        }
        char info[CTL_CLUSTER_INFO_MAX + 1];
        size_t n = kv->value_len < CTL_CLUSTER_INFO_MAX ? kv->value_len : CTL_CLUSTER_INFO_MAX;
        memcpy(info, kv->value, n);
        info[n] = '\0';
        if (fn(arg, host, info, live) != 0) {
            s = VMENC_E_INTERRUPTED;
            break;
        }
    }
    vmenc_etcd_result_cleanup(&hres);
    vmenc_etcd_result_cleanup(&sres);
    return s;
}

/* ---- ownership ----------------------------------------------------------------------------- */

static owned *find_owned(ctl_cluster *c, const char *uuid) {
    for (size_t i = 0; i < c->num_owned; i++)
        if (strcmp(c->owned[i].uuid, uuid) == 0)
            return &c->owned[i];
    return NULL;
}

static int owner_value(const ctl_cluster *c, const char *name, char *out, size_t cap) {
    return snprintf(out, cap, "%s\n%" PRId64 "\n%s", c->host, c->lease, name ? name : "");
}

static void name_owner(const uint8_t *v, size_t len, int64_t lease, char *why, size_t why_cap) {
    if (why == NULL || why_cap == 0)
        return;
    char host[CTL_CLUSTER_HOST_MAX + 1], vm[80];
    line_field(v, len, 0, host, sizeof(host));
    line_field(v, len, 2, vm, sizeof(vm));
    snprintf(why, why_cap, "VM %s is owned by host %s (cluster lease %016" PRIx64 "); it may be taken over only after that "
             "lease expires",
             vm[0] ? vm : "?", host[0] ? host : "?", (uint64_t)lease);
}

static bool owner_is_me(const ctl_cluster *c, const uint8_t *v, size_t len) {
    char host[CTL_CLUSTER_HOST_MAX + 1];
    line_field(v, len, 0, host, sizeof(host));
    return strcmp(host, c->host) == 0;
}

/* Placement (docs/cluster.md "Placement and the migration handover"):
 * /vmenc/C/placement/<uuid> names, without a lease, the host a VM is
 * registered on. Only that host may take the VM's leased owner key; a
 * VM with no placement yet is placed on the first host that takes it; a
 * take-over moves it, and so does a committed migration handover. So a
 * VM always has exactly one host that may write it, across crashes of
 * either side, and the leased owner key says whether that host's
 * process is running it. */
enum own_mode {
    OWN_PLACED_HERE = 0, /* placement == this host */
    OWN_UNPLACED = 1,    /* no placement yet: place it here */
    OWN_TAKE_OVER = 2,   /* the owner's lease expired: place it here, whoever had it */
};

static vmenc_status own_txn(ctl_cluster *c, const char *okey, const char *pkey, const char *val, size_t n,
                            enum own_mode mode, vmenc_etcd_txn_result *r) {
    vmenc_etcd_compare cmp[2] = {
        {.target = VMENC_ETCD_CMP_CREATE, .result = VMENC_ETCD_CMP_EQUAL, .key = K(okey), .key_len = strlen(okey)},
        {.target = mode == OWN_PLACED_HERE ? VMENC_ETCD_CMP_VALUE : VMENC_ETCD_CMP_CREATE,
         .result = VMENC_ETCD_CMP_EQUAL, .key = K(pkey), .key_len = strlen(pkey), .value = K(c->host),
         .value_len = strlen(c->host)},
    };
    vmenc_etcd_op ok[2] = {
        {.type = VMENC_ETCD_OP_PUT,
         .put = {.key = K(okey), .key_len = strlen(okey), .value = K(val), .value_len = n, .lease = c->lease}},
        {.type = VMENC_ETCD_OP_PUT,
         .put = {.key = K(pkey), .key_len = strlen(pkey), .value = K(c->host), .value_len = strlen(c->host)}},
    };
    vmenc_etcd_op get[2] = {
        {.type = VMENC_ETCD_OP_RANGE, .range = {.key = K(okey), .key_len = strlen(okey)}},
        {.type = VMENC_ETCD_OP_RANGE, .range = {.key = K(pkey), .key_len = strlen(pkey)}},
    };
    vmenc_etcd_txn_req t = {.compares = cmp, .num_compares = mode == OWN_TAKE_OVER ? 1 : 2, .success = ok,
                            .num_success = mode == OWN_PLACED_HERE ? 1 : 2, .failure = get, .num_failure = 2};
    return vmenc_etcd_txn(c->etcd, &t, r);
}

static void name_placement(const vmenc_etcd_kv *p, const char *name, char *why, size_t why_cap) {
    if (why == NULL || why_cap == 0)
        return;
    char host[CTL_CLUSTER_HOST_MAX + 1];
    line_field(p->value, p->value_len, 0, host, sizeof(host));
    snprintf(why, why_cap, "VM %s is registered on host %s (cluster placement); it may be written here only after a "
             "migration to this host or a take-over",
             name && name[0] ? name : "?", host[0] ? host : "?");
}

static bool kv_is_host(const vmenc_etcd_kv *kv, const char *host) {
    return kv->value_len == strlen(host) && memcmp(kv->value, host, kv->value_len) == 0;
}

static vmenc_status own(ctl_cluster *c, const char *uuid, const char *name, bool take_over, char *why,
                        size_t why_cap) {
    VMENC_ENSURE(c != NULL && uuid != NULL && strlen(uuid) < sizeof(((owned *)0)->uuid), VMENC_E_INVALID_ARG);
    VMENC_GUARD(ctl_cluster_write_ok(c));
    pthread_mutex_lock(&c->mu);
    owned *o = find_owned(c, uuid);
    if (o != NULL) {
        o->count++;
        pthread_mutex_unlock(&c->mu);
        return VMENC_OK;
    }
    pthread_mutex_unlock(&c->mu);
    char key[KEY_MAX], pkey[KEY_MAX], val[256];
    VMENC_GUARD(key_of(c, key, sizeof(key), "owner", uuid, NULL));
    VMENC_GUARD(key_of(c, pkey, sizeof(pkey), "placement", uuid, NULL));
    int n = owner_value(c, name, val, sizeof(val));
    enum own_mode mode = take_over ? OWN_TAKE_OVER : OWN_PLACED_HERE;
    vmenc_status s = VMENC_E_CONFLICT;
    bool ours = false, done = false;
    for (int round = 0; !done && round < 6; round++) {
        vmenc_etcd_txn_result r = {0};
        s = own_txn(c, key, pkey, val, (size_t)n, mode, &r);
        for (int k = 0; retryable(s) && k < 3; k++) { /* idempotent for us: a lost answer shows our own lease */
            sleep_ms(200);
            vmenc_etcd_txn_result_cleanup(&r);
            s = own_txn(c, key, pkey, val, (size_t)n, mode, &r);
        }
        if (s != VMENC_OK) {
            vmenc_etcd_txn_result_cleanup(&r);
            return s;
        }
        const vmenc_etcd_kv *okv = r.num_responses > 0 && r.responses[0].num_kvs > 0 ? &r.responses[0].kvs[0] : NULL;
        const vmenc_etcd_kv *pkv = r.num_responses > 1 && r.responses[1].num_kvs > 0 ? &r.responses[1].kvs[0] : NULL;
        if (r.succeeded) {
            ours = done = true;
        } else if (okv != NULL && okv->lease == c->lease) {
            ours = done = true; /* an earlier attempt whose answer was lost */
        } else if (okv != NULL && owner_is_me(c, okv->value, okv->value_len)) {
            done = true; /* another process of this host runs it: the image lock orders us */
        } else if (okv != NULL) {
            name_owner(okv->value, okv->value_len, okv->lease, why, why_cap);
            s = VMENC_E_LOCKED;
            done = true;
        } else if (take_over) {
            s = VMENC_E_CONFLICT; /* the owner key came and went: ask again */
        } else if (pkv == NULL) {
            mode = OWN_UNPLACED;
        } else if (kv_is_host(pkv, c->host)) {
            mode = OWN_PLACED_HERE;
        } else {
            name_placement(pkv, name, why, why_cap);
            s = VMENC_E_LOCKED;
            done = true;
        }
        vmenc_etcd_txn_result_cleanup(&r);
    }
    if (!done)
        return VMENC_E_CONFLICT;
    if (s != VMENC_OK)
        return s;
    pthread_mutex_lock(&c->mu);
    o = find_owned(c, uuid);
    if (o == NULL && c->num_owned < MAX_OWNED) {
        o = &c->owned[c->num_owned++];
        memset(o, 0, sizeof(*o));
        snprintf(o->uuid, sizeof(o->uuid), "%s", uuid);
        o->ours = ours;
    }
    if (o != NULL)
        o->count++;
    pthread_mutex_unlock(&c->mu);
    return VMENC_OK;
}

vmenc_status ctl_cluster_acquire(ctl_cluster *c, const char *uuid, const char *name, char *why, size_t why_cap) {
    return own(c, uuid, name, false, why, why_cap);
}

/* delete_if_ours deletes |key| if it is bound to this session's lease. */
static void delete_if_ours(ctl_cluster *c, const char *key) {
    vmenc_etcd_compare cmp = {.target = VMENC_ETCD_CMP_LEASE, .result = VMENC_ETCD_CMP_EQUAL, .key = K(key),
                              .key_len = strlen(key), .number = c->lease};
    vmenc_etcd_op del = {.type = VMENC_ETCD_OP_DELETE, .del = {.key = K(key), .key_len = strlen(key)}};
    vmenc_etcd_txn_req t = {.compares = &cmp, .num_compares = 1, .success = &del, .num_success = 1};
    /* Idempotent (a second delete finds the key gone, or another lease's,
     * and does nothing): retried through a leader election, so a release
     * answered "unknown" does not keep the VM ours until the session ends.
     * Without quorum the key goes with the lease. */
    for (int attempt = 0; attempt < 5; attempt++) {
        if (attempt > 0 && !wait_leader(c->etcd, 3000))
            return;
        vmenc_etcd_txn_result r = {0};
        vmenc_status s = vmenc_etcd_txn(c->etcd, &t, &r);
        vmenc_etcd_txn_result_cleanup(&r);
        if (!retryable(s))
            return;
    }
}

void ctl_cluster_release(ctl_cluster *c, const char *uuid) {
    if (c == NULL || uuid == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    owned *o = find_owned(c, uuid);
    bool drop = false, ours = false;
    if (o != NULL && --o->count == 0) {
        drop = true;
        ours = o->ours;
        *o = c->owned[--c->num_owned];
    }
    pthread_mutex_unlock(&c->mu);
    if (!drop || !ours)
        return;
    char key[KEY_MAX];
    if (key_of(c, key, sizeof(key), "owner", uuid, NULL) == VMENC_OK)
        delete_if_ours(c, key);
}

vmenc_status ctl_cluster_owner(ctl_cluster *c, const char *uuid, char *out_host, size_t cap) {
    VMENC_ENSURE(c != NULL && uuid != NULL && out_host != NULL && cap > 0, VMENC_E_INVALID_ARG);
    char key[KEY_MAX];
    VMENC_GUARD(key_of(c, key, sizeof(key), "owner", uuid, NULL));
    uint8_t *v = NULL;
    size_t len = 0;
    vmenc_status s = get_one(c->etcd, key, false, &v, &len, NULL, NULL);
    out_host[0] = '\0';
    if (s == VMENC_E_NOT_FOUND)
        return VMENC_OK;
    VMENC_GUARD(s);
    line_field(v, len, 0, out_host, cap);
    free(v);
    return VMENC_OK;
}

vmenc_status ctl_cluster_check_owner(ctl_cluster *c, const char *uuid, char *why, size_t why_cap) {
    VMENC_ENSURE(c != NULL && uuid != NULL, VMENC_E_INVALID_ARG);
    char key[KEY_MAX];
    VMENC_GUARD(key_of(c, key, sizeof(key), "owner", uuid, NULL));
    uint8_t *v = NULL;
    size_t len = 0;
    int64_t lease = 0;
    vmenc_status s = get_one(c->etcd, key, false, &v, &len, NULL, &lease);
    if (s == VMENC_E_NOT_FOUND)
        return VMENC_OK;
    VMENC_GUARD(s);
    if (!owner_is_me(c, v, len)) {
        name_owner(v, len, lease, why, why_cap);
        s = VMENC_E_LOCKED;
    }
    free(v);
    return s;
}

vmenc_status ctl_cluster_take_over(ctl_cluster *c, const char *uuid, const char *name, char *why, size_t why_cap) {
    /* An owner key exists exactly as long as its lease: when etcd expired
     * the old owner's lease it deleted the key, so "create if absent" is
     * the whole take-over rule - and it is atomic with the check and with
     * moving the placement here. */
    return own(c, uuid, name, true, why, why_cap);
}

vmenc_status ctl_cluster_placement(ctl_cluster *c, const char *uuid, char *out_host, size_t cap) {
    VMENC_ENSURE(c != NULL && uuid != NULL && out_host != NULL && cap > 0, VMENC_E_INVALID_ARG);
    char key[KEY_MAX];
    VMENC_GUARD(key_of(c, key, sizeof(key), "placement", uuid, NULL));
    uint8_t *v = NULL;
    size_t len = 0;
    out_host[0] = '\0';
    vmenc_status s = get_one(c->etcd, key, false, &v, &len, NULL, NULL);
    if (s == VMENC_E_NOT_FOUND)
        return VMENC_OK;
    VMENC_GUARD(s);
    line_field(v, len, 0, out_host, cap);
    free(v);
    return VMENC_OK;
}

/* ---- the migration handover ---------------------------------------------------------------- */

/* The intent /vmenc/C/migration/<uuid> = "SRC\nSRC_LEASE\nDEST\nRECORD_REV\nID", bound to the
 * source's lease: while it exists the source's session is alive and offers the VM to DEST. */

static vmenc_status migration_keys(const ctl_cluster *c, const char *uuid, char *mkey, char *okey, char *pkey,
                                   char *vkey) {
    VMENC_GUARD(key_of(c, mkey, KEY_MAX, "migration", uuid, NULL));
    VMENC_GUARD(key_of(c, okey, KEY_MAX, "owner", uuid, NULL));
    VMENC_GUARD(key_of(c, pkey, KEY_MAX, "placement", uuid, NULL));
    return key_of(c, vkey, KEY_MAX, "vm", uuid, NULL);
}

vmenc_status ctl_cluster_handover_begin(ctl_cluster *c, const char *uuid, const char *dest, const char *tag,
                                        char *why, size_t why_cap) {
    VMENC_ENSURE(c != NULL && uuid != NULL && dest != NULL && dest[0] != '\0' && strlen(dest) <= CTL_CLUSTER_HOST_MAX &&
                     strchr(dest, '\n') == NULL && tag != NULL && strchr(tag, '\n') == NULL &&
                     strlen(tag) < CTL_CLUSTER_TAG_MAX,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(strcmp(dest, c->host) != 0, VMENC_E_INVALID_ARG);
    VMENC_GUARD(ctl_cluster_write_ok(c));
    char mkey[KEY_MAX], okey[KEY_MAX], pkey[KEY_MAX], vkey[KEY_MAX], val[256];
    VMENC_GUARD(migration_keys(c, uuid, mkey, okey, pkey, vkey));
    uint8_t id[8];
    VMENC_GUARD(vmenc_random_bytes(id, sizeof(id)));
    int n = snprintf(val, sizeof(val), "%s\n%" PRId64 "\n%s\n%s\n%02x%02x%02x%02x%02x%02x%02x%02x", c->host, c->lease,
                     dest, tag, id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7]);
    VMENC_ENSURE(n > 0 && (size_t)n < sizeof(val), VMENC_E_INVALID_ARG);
    /* This session runs the VM (owner key bound to our lease), the VM is
     * placed here, and no other handover of it is in progress. */
    vmenc_etcd_compare cmp[3] = {
        {.target = VMENC_ETCD_CMP_LEASE, .key = K(okey), .key_len = strlen(okey), .number = c->lease},
        {.target = VMENC_ETCD_CMP_VALUE, .key = K(pkey), .key_len = strlen(pkey), .value = K(c->host),
         .value_len = strlen(c->host)},
        {.target = VMENC_ETCD_CMP_CREATE, .key = K(mkey), .key_len = strlen(mkey), .number = 0},
    };
    vmenc_etcd_op put = {.type = VMENC_ETCD_OP_PUT, .put = {.key = K(mkey), .key_len = strlen(mkey), .value = K(val),
                                                            .value_len = (size_t)n, .lease = c->lease}};
    vmenc_etcd_op get = {.type = VMENC_ETCD_OP_RANGE, .range = {.key = K(mkey), .key_len = strlen(mkey)}};
    vmenc_etcd_txn_req t = {.compares = cmp, .num_compares = 3, .success = &put, .num_success = 1, .failure = &get,
                            .num_failure = 1};
    vmenc_etcd_txn_result r = {0};
    vmenc_status s = vmenc_etcd_txn(c->etcd, &t, &r);
    for (int k = 0; retryable(s) && k < 5; k++) { /* a lost answer: the retry finds our own intent */
        sleep_ms(200);
        vmenc_etcd_txn_result_cleanup(&r);
        s = vmenc_etcd_txn(c->etcd, &t, &r);
    }
    VMENC_GUARD(s);
    if (!r.succeeded) {
        const vmenc_etcd_kv *m = r.num_responses > 0 && r.responses[0].num_kvs > 0 ? &r.responses[0].kvs[0] : NULL;
        char to[CTL_CLUSTER_HOST_MAX + 1] = "";
        if (m != NULL)
            line_field(m->value, m->value_len, 2, to, sizeof(to));
        if (m != NULL && m->lease == c->lease && strcmp(to, dest) == 0) {
            s = VMENC_OK; /* ours, from an attempt whose answer was lost */
        } else if (m != NULL) {
            if (why != NULL && why_cap > 0)
                snprintf(why, why_cap, "a handover of this VM to host %s is in progress", to);
            s = VMENC_E_LOCKED;
        } else {
            if (why != NULL && why_cap > 0)
                snprintf(why, why_cap, "this process does not run the VM under its lease, or the VM is not placed on "
                         "host %s", c->host);
            s = VMENC_E_BAD_STATE;
        }
    }
    vmenc_etcd_txn_result_cleanup(&r);
    return s;
}

static bool parse_i64(const char *t, int64_t *out) {
    if (t[0] == '\0')
        return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    if (errno != 0 || end == NULL || *end != '\0')
        return false;
    *out = (int64_t)v;
    return true;
}

/* read_intent: VMENC_E_NOT_FOUND when no handover is in progress;
 * VMENC_E_PARSE for a value this file did not write. */
static vmenc_status read_intent(ctl_cluster *c, const char *mkey, ctl_cluster_handover *out) {
    vmenc_etcd_range_req q = {.key = K(mkey), .key_len = strlen(mkey)};
    vmenc_etcd_result res = {0};
    VMENC_GUARD(vmenc_etcd_range(c->etcd, &q, &res));
    vmenc_status s = VMENC_OK;
    memset(out, 0, sizeof(*out));
    if (res.num_kvs == 0) {
        s = VMENC_E_NOT_FOUND;
    } else {
        const vmenc_etcd_kv *kv = &res.kvs[0];
        char lease[24];
        line_field(kv->value, kv->value_len, 0, out->src, sizeof(out->src));
        line_field(kv->value, kv->value_len, 1, lease, sizeof(lease));
        line_field(kv->value, kv->value_len, 2, out->dest, sizeof(out->dest));
        line_field(kv->value, kv->value_len, 3, out->tag, sizeof(out->tag));
        out->mod_rev = kv->mod_revision;
        out->key_lease = kv->lease;
        if (!parse_i64(lease, &out->src_lease) || out->src[0] == '\0' || out->dest[0] == '\0')
            s = VMENC_E_PARSE;
    }
    vmenc_etcd_result_cleanup(&res);
    return s;
}

vmenc_status ctl_cluster_handover_read(ctl_cluster *c, const char *uuid, ctl_cluster_handover *out) {
    VMENC_ENSURE(c != NULL && uuid != NULL && out != NULL, VMENC_E_INVALID_ARG);
    char mkey[KEY_MAX];
    VMENC_GUARD(key_of(c, mkey, sizeof(mkey), "migration", uuid, NULL));
    return read_intent(c, mkey, out);
}

vmenc_status ctl_cluster_handover_commit(ctl_cluster *c, const char *uuid, const char *name,
                                         const ctl_cluster_handover *h, int64_t record_rev, char *why,
                                         size_t why_cap) {
    VMENC_ENSURE(c != NULL && uuid != NULL && strlen(uuid) < sizeof(((owned *)0)->uuid) && h != NULL &&
                     record_rev >= 0,
                 VMENC_E_INVALID_ARG);
    VMENC_GUARD(ctl_cluster_write_ok(c));
    char mkey[KEY_MAX], okey[KEY_MAX], pkey[KEY_MAX], vkey[KEY_MAX], val[256];
    VMENC_GUARD(migration_keys(c, uuid, mkey, okey, pkey, vkey));
    const ctl_cluster_handover in = *h;
    vmenc_status s;
    if (strcmp(in.dest, c->host) != 0) {
        if (why != NULL && why_cap > 0)
            snprintf(why, why_cap, "the handover in progress names host %s, not %s", in.dest, c->host);
        return VMENC_E_DENIED;
    }
    int n = owner_value(c, name, val, sizeof(val));
    /* One transaction: the intent is the one read and still bound to the
     * source's live lease, the source still runs the VM under that lease,
     * the VM is still placed there, and its authority record is the
     * revision the caller checked against the state the source named - then the placement, the owner key (now
     * bound to our lease) and the end of the intent, together. */
    vmenc_etcd_compare cmp[5] = {
        {.target = VMENC_ETCD_CMP_MOD, .key = K(mkey), .key_len = strlen(mkey), .number = in.mod_rev},
        {.target = VMENC_ETCD_CMP_LEASE, .key = K(mkey), .key_len = strlen(mkey), .number = in.src_lease},
        {.target = VMENC_ETCD_CMP_LEASE, .key = K(okey), .key_len = strlen(okey), .number = in.src_lease},
        {.target = VMENC_ETCD_CMP_VALUE, .key = K(pkey), .key_len = strlen(pkey), .value = K(in.src),
         .value_len = strlen(in.src)},
        {.target = VMENC_ETCD_CMP_MOD, .key = K(vkey), .key_len = strlen(vkey), .number = record_rev},
    };
    vmenc_etcd_op ok[3] = {
        {.type = VMENC_ETCD_OP_PUT,
         .put = {.key = K(pkey), .key_len = strlen(pkey), .value = K(c->host), .value_len = strlen(c->host)}},
        {.type = VMENC_ETCD_OP_PUT,
         .put = {.key = K(okey), .key_len = strlen(okey), .value = K(val), .value_len = (size_t)n, .lease = c->lease}},
        {.type = VMENC_ETCD_OP_DELETE, .del = {.key = K(mkey), .key_len = strlen(mkey)}},
    };
    vmenc_etcd_txn_req t = {.compares = cmp, .num_compares = record_rev > 0 ? 5 : 4, .success = ok,
                            .num_success = 3};
    vmenc_etcd_txn_result r = {0};
    s = vmenc_etcd_txn(c->etcd, &t, &r);
    bool committed = s == VMENC_OK && r.succeeded;
    vmenc_etcd_txn_result_cleanup(&r);
    /* The answer was lost (a leader killed mid-transaction): the placement
     * says whether it happened. Ours and the intent gone: it did. The
     * intent still as read: it did not - send it again (the compare makes
     * that safe). Anything else: it did not and cannot any more. */
    for (int k = 0; retryable(s) && k < 20; k++) {
        sleep_ms(200);
        char at[CTL_CLUSTER_HOST_MAX + 1];
        ctl_cluster_handover now;
        vmenc_status ps = ctl_cluster_placement(c, uuid, at, sizeof(at));
        vmenc_status is = ps == VMENC_OK ? read_intent(c, mkey, &now) : ps;
        if (ps == VMENC_OK && strcmp(at, c->host) == 0 && (is == VMENC_E_NOT_FOUND || now.mod_rev != in.mod_rev)) {
            s = VMENC_OK;
            committed = true;
        } else if (is == VMENC_OK && now.mod_rev == in.mod_rev) {
            s = vmenc_etcd_txn(c->etcd, &t, &r);
            committed = s == VMENC_OK && r.succeeded;
            vmenc_etcd_txn_result_cleanup(&r);
        } else if (is == VMENC_OK || is == VMENC_E_NOT_FOUND || is == VMENC_E_PARSE) {
            s = VMENC_OK;
            committed = false;
        }
    }
    VMENC_GUARD(s);
    if (!committed) {
        if (why != NULL && why_cap > 0)
            snprintf(why, why_cap, "the handover from host %s ended before it could commit (the source stopped, lost "
                     "its lease or the VM changed since it was sent)", in.src);
        return VMENC_E_CONFLICT;
    }
    pthread_mutex_lock(&c->mu);
    owned *o = find_owned(c, uuid);
    if (o == NULL && c->num_owned < MAX_OWNED) {
        o = &c->owned[c->num_owned++];
        memset(o, 0, sizeof(*o));
        snprintf(o->uuid, sizeof(o->uuid), "%s", uuid);
    }
    if (o != NULL)
        o->ours = true; /* count 0: the first acquire of this process counts it; close revokes it */
    pthread_mutex_unlock(&c->mu);
    return VMENC_OK;
}

vmenc_status ctl_cluster_handover_wait(ctl_cluster *c, const char *uuid, const char *dest, uint32_t timeout_ms) {
    VMENC_ENSURE(c != NULL && uuid != NULL && dest != NULL, VMENC_E_INVALID_ARG);
    char mkey[KEY_MAX], okey[KEY_MAX], pkey[KEY_MAX], vkey[KEY_MAX];
    VMENC_GUARD(migration_keys(c, uuid, mkey, okey, pkey, vkey));
    uint64_t until = vmenc_now_monotonic_ms() + timeout_ms;
    vmenc_status s = VMENC_E_KMS_TIMEOUT;
    bool ended = false;
    int withdraw_tries = 0;
    while (!ended) {
        char at[CTL_CLUSTER_HOST_MAX + 1];
        ctl_cluster_handover in;
        vmenc_status ps = ctl_cluster_placement(c, uuid, at, sizeof(at));
        vmenc_status is = ps == VMENC_OK ? read_intent(c, mkey, &in) : ps;
        if (ps == VMENC_OK && strcmp(at, dest) == 0) {
            s = VMENC_OK; /* committed */
            ended = true;
        } else if (is == VMENC_E_NOT_FOUND || (is == VMENC_OK && in.key_lease != c->lease)) {
            /* Our intent is gone. The placement was read before it: a
             * commit in between (it moves the placement and deletes the
             * intent in one transaction) looks the same as an abort, so
             * the placement read now, after the intent, decides. */
            ps = ctl_cluster_placement(c, uuid, at, sizeof(at));
            if (ps == VMENC_OK) {
                s = strcmp(at, dest) == 0 ? VMENC_OK /* committed */
                                          : VMENC_E_CONFLICT; /* the VM stayed: aborted (our lease expired?) */
                ended = true;
            } else if (vmenc_now_monotonic_ms() >= until) {
                s = VMENC_E_CONTROL_UNAVAILABLE; /* neither seen committed nor seen aborted */
                ended = true;
            } else {
                sleep_ms(100); /* unknown: look again (the intent stays gone) */
            }
        } else if (vmenc_now_monotonic_ms() >= until) {
            /* Withdraw the offer; if that loses, the destination committed
             * meanwhile - the placement says so. */
            vmenc_etcd_compare cmp = {.target = VMENC_ETCD_CMP_LEASE, .key = K(mkey), .key_len = strlen(mkey),
                                      .number = c->lease};
            vmenc_etcd_op del = {.type = VMENC_ETCD_OP_DELETE, .del = {.key = K(mkey), .key_len = strlen(mkey)}};
            vmenc_etcd_txn_req t = {.compares = &cmp, .num_compares = 1, .success = &del, .num_success = 1};
            vmenc_etcd_txn_result r = {0};
            vmenc_status ds = vmenc_etcd_txn(c->etcd, &t, &r);
            bool withdrawn = ds == VMENC_OK && r.succeeded;
            vmenc_etcd_txn_result_cleanup(&r);
            if (withdrawn) {
                s = VMENC_E_KMS_TIMEOUT;
                ended = true;
            } else if (++withdraw_tries >= 10) {
                s = VMENC_E_CONTROL_UNAVAILABLE; /* neither withdrawn nor seen committed */
                ended = true;
            } else {
                until = vmenc_now_monotonic_ms() + 2000u; /* unknown or lost: look again */
                sleep_ms(100);
            }
        } else {
            sleep_ms(100);
        }
    }
    if (s == VMENC_OK) {
        /* The VM is the destination's now: this process no longer counts
         * itself an owner (a later acquire asks etcd and is refused). */
        pthread_mutex_lock(&c->mu);
        owned *o = find_owned(c, uuid);
        if (o != NULL)
            *o = c->owned[--c->num_owned];
        pthread_mutex_unlock(&c->mu);
    }
    return s;
}

/* ---- the policy document --------------------------------------------------------------------- */

vmenc_status ctl_cluster_policy_get(ctl_cluster *c, uint8_t **out, size_t *out_len, int64_t *out_rev) {
    VMENC_ENSURE(c != NULL && out != NULL && out_len != NULL && out_rev != NULL, VMENC_E_INVALID_ARG);
    char key[KEY_MAX];
    VMENC_GUARD(key_of(c, key, sizeof(key), "policy", NULL, NULL));
    return get_one(c->etcd, key, false, out, out_len, out_rev, NULL);
}

vmenc_status ctl_cluster_policy_cas(ctl_cluster *c, const uint8_t *json, size_t len, int64_t expected_rev,
                                    int64_t *out_rev) {
    return ctl_cluster_policy_cas_with(c, json, len, expected_rev, NULL, 0, out_rev);
}

vmenc_status ctl_cluster_policy_cas_with(ctl_cluster *c, const uint8_t *json, size_t len, int64_t expected_rev,
                                         const ctl_cluster_put_if *extra, size_t num_extra, int64_t *out_rev) {
    VMENC_ENSURE(c != NULL && json != NULL && out_rev != NULL && num_extra <= CTL_CLUSTER_PUT_IF_MAX &&
                     (extra != NULL || num_extra == 0),
                 VMENC_E_INVALID_ARG);
    VMENC_GUARD(ctl_cluster_write_ok(c));
    char key[KEY_MAX], lkey[KEY_MAX];
    VMENC_GUARD(key_of(c, key, sizeof(key), "policy", NULL, NULL));
    VMENC_GUARD(key_of(c, lkey, sizeof(lkey), "policy.lock", NULL, NULL));
    vmenc_etcd_compare cmp[2 + CTL_CLUSTER_PUT_IF_MAX] = {
        {.target = expected_rev == 0 ? VMENC_ETCD_CMP_CREATE : VMENC_ETCD_CMP_MOD, .result = VMENC_ETCD_CMP_EQUAL,
         .key = K(key), .key_len = strlen(key), .number = expected_rev},
        {.target = VMENC_ETCD_CMP_LEASE, .result = VMENC_ETCD_CMP_EQUAL, .key = K(lkey), .key_len = strlen(lkey),
         .number = c->lease},
    };
    vmenc_etcd_op put[1 + CTL_CLUSTER_PUT_IF_MAX] = {
        {.type = VMENC_ETCD_OP_PUT, .put = {.key = K(key), .key_len = strlen(key), .value = json, .value_len = len}}};
    /* The extra keys change in the same transaction, each only if it is
     * still at the revision the caller read: all or nothing. */
    size_t nc = c->policy_locked ? 2 : 1;
    char xkeys[CTL_CLUSTER_PUT_IF_MAX][KEY_MAX];
    for (size_t i = 0; i < num_extra; i++) {
        VMENC_GUARD(key_of(c, xkeys[i], sizeof(xkeys[i]), extra[i].key, NULL, NULL));
        cmp[nc++] = (vmenc_etcd_compare){.target = VMENC_ETCD_CMP_MOD, .result = VMENC_ETCD_CMP_EQUAL,
                                         .key = K(xkeys[i]), .key_len = strlen(xkeys[i]), .number = extra[i].mod_rev};
        put[1 + i] = (vmenc_etcd_op){.type = VMENC_ETCD_OP_PUT,
                                     .put = {.key = K(xkeys[i]), .key_len = strlen(xkeys[i]),
                                             .value = K(extra[i].value), .value_len = strlen(extra[i].value)}};
    }
    vmenc_etcd_txn_req t = {.compares = cmp, .num_compares = nc, .success = put, .num_success = 1 + num_extra};
    vmenc_etcd_txn_result r = {0};
    vmenc_status s = vmenc_etcd_txn(c->etcd, &t, &r);
    if (retryable(s)) {
        /* Sent, not answered (a leader killed mid-transaction). The lock
         * keeps other writers out, so the document is either ours (it
         * happened) or the one we compared against (it did not: send it
         * again, the compare makes that safe). */
        for (int k = 0; k < 10 && retryable(s); k++) {
            sleep_ms(200);
            uint8_t *cur = NULL;
            size_t cur_len = 0;
            int64_t rev = 0;
            vmenc_status g = get_one(c->etcd, key, false, &cur, &cur_len, &rev, NULL);
            if (g == VMENC_OK && cur_len == len && memcmp(cur, json, len) == 0 && rev != expected_rev) {
                free(cur);
                *out_rev = rev;
                return VMENC_OK;
            }
            free(cur);
            if (g == VMENC_OK || g == VMENC_E_NOT_FOUND) {
                vmenc_etcd_txn_result_cleanup(&r);
                s = vmenc_etcd_txn(c->etcd, &t, &r);
            }
        }
    }
    VMENC_GUARD(s);
    s = r.succeeded ? VMENC_OK : VMENC_E_CONFLICT;
    if (s == VMENC_OK)
        *out_rev = r.num_responses > 0 && r.responses[0].header.revision > 0 ? r.responses[0].header.revision
                                                                             : r.header.revision;
    vmenc_etcd_txn_result_cleanup(&r);
    return s;
}

vmenc_status ctl_cluster_policy_lock(ctl_cluster *c, uint32_t timeout_ms, char *why, size_t why_cap) {
    VMENC_ENSURE_REF(c);
    VMENC_GUARD(ctl_cluster_write_ok(c));
    char key[KEY_MAX], val[128];
    VMENC_GUARD(key_of(c, key, sizeof(key), "policy.lock", NULL, NULL));
    int n = snprintf(val, sizeof(val), "%s\n%" PRId64 "\n%ld", c->host, c->lease, (long)getpid());
    uint64_t until = vmenc_now_monotonic_ms() + timeout_ms;
    uint32_t backoff = 5;
    for (;;) {
        vmenc_etcd_txn_result r = {0};
        vmenc_status s = create_if_absent(c->etcd, key, K(val), (size_t)n, c->lease, &r);
        if (retryable(s) && vmenc_now_monotonic_ms() < until) { /* an election: try again */
            sleep_ms(100);
            continue;
        }
        VMENC_GUARD(s);
        bool got = r.succeeded;
        /* an earlier attempt whose answer was lost may have taken it */
        if (!got && r.num_responses > 0 && r.responses[0].num_kvs > 0 && r.responses[0].kvs[0].lease == c->lease)
            got = true;
        if (!got && why != NULL && why_cap > 0 && r.num_responses > 0 && r.responses[0].num_kvs > 0) {
            char host[CTL_CLUSTER_HOST_MAX + 1];
            line_field(r.responses[0].kvs[0].value, r.responses[0].kvs[0].value_len, 0, host, sizeof(host));
            snprintf(why, why_cap, "the cluster policy is being changed by host %s", host);
        }
        vmenc_etcd_txn_result_cleanup(&r);
        if (got) {
            c->policy_locked = true;
            return VMENC_OK;
        }
        if (vmenc_now_monotonic_ms() >= until)
            return VMENC_E_LOCKED;
        sleep_ms(backoff);
        if (backoff < 50)
            backoff *= 2;
    }
}

void ctl_cluster_policy_unlock(ctl_cluster *c) {
    if (c == NULL || !c->policy_locked)
        return;
    c->policy_locked = false;
    char key[KEY_MAX];
    if (key_of(c, key, sizeof(key), "policy.lock", NULL, NULL) == VMENC_OK)
        delete_if_ours(c, key);
}

/* ---- the watch ---------------------------------------------------------------------------------- */

static int on_watch(void *arg, const vmenc_etcd_watch_msg *m) {
    ctl_cluster *c = arg;
    if (m->created)
        atomic_store(&c->watch_ok, true);
    for (size_t i = 0; i < m->num_events; i++) {
        const vmenc_etcd_event *e = &m->events[i];
        if (e->type != VMENC_ETCD_EVENT_PUT)
            continue;
        if (e->kv.mod_revision <= atomic_load(&c->watch_rev))
            continue;
        atomic_store(&c->watch_rev, e->kv.mod_revision);
        c->policy_fn(c->policy_arg, e->kv.value, e->kv.value_len, e->kv.mod_revision);
    }
    pthread_mutex_lock(&c->mu);
    bool stop = c->stopping;
    pthread_mutex_unlock(&c->mu);
    return stop ? 1 : 0;
}

/* resync reads the document after the stream broke and hands a newer one
 * over; returns the revision to watch from. */
static int64_t resync(ctl_cluster *c) {
    char key[KEY_MAX];
    if (key_of(c, key, sizeof(key), "policy", NULL, NULL) != VMENC_OK)
        return 0;
    uint8_t *v = NULL;
    size_t len = 0;
    int64_t rev = 0;
    if (get_one(c->wc, key, false, &v, &len, &rev, NULL) != VMENC_OK)
        return 0;
    if (rev > atomic_load(&c->watch_rev)) {
        atomic_store(&c->watch_rev, rev);
        c->policy_fn(c->policy_arg, v, len, rev);
    }
    free(v);
    return rev;
}

static void *watch_main(void *arg) {
    ctl_cluster *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        bool stop = c->stopping;
        pthread_mutex_unlock(&c->mu);
        if (stop)
            break;
        vmenc_status s = vmenc_etcd_watch_run(c->watch, on_watch, c);
        atomic_store(&c->watch_ok, false);
        pthread_mutex_lock(&c->mu);
        stop = c->stopping;
        pthread_mutex_unlock(&c->mu);
        if (stop)
            break;
        if (s == VMENC_E_CONFLICT || s == VMENC_E_CONTROL_UNAVAILABLE) {
            /* Compacted or nobody answers: read the document again, then
             * watch from there (a fresh watch object). */
            int64_t rev = resync(c);
            if (rev > 0) {
                char key[KEY_MAX];
                if (key_of(c, key, sizeof(key), "policy", NULL, NULL) == VMENC_OK) {
                    vmenc_etcd_watch_req wr = {.key = K(key), .key_len = strlen(key), .start_revision = rev + 1};
                    vmenc_etcd_watch *nw = NULL;
                    if (vmenc_etcd_watch_new(c->wc, &wr, &nw) == VMENC_OK) {
                        pthread_mutex_lock(&c->mu);
                        if (c->stopping) {
                            vmenc_etcd_watch_free(nw);
                        } else {
                            vmenc_etcd_watch_free(c->watch);
                            c->watch = nw;
                        }
                        pthread_mutex_unlock(&c->mu);
                    }
                }
            }
            sleep_ms(200);
        }
    }
    atomic_store(&c->watch_ok, false);
    return NULL;
}

vmenc_status ctl_cluster_watch_policy(ctl_cluster *c, int64_t from_rev, ctl_cluster_policy_fn fn, void *arg) {
    VMENC_ENSURE(c != NULL && fn != NULL && !c->watch_started, VMENC_E_INVALID_ARG);
    char key[KEY_MAX];
    VMENC_GUARD(key_of(c, key, sizeof(key), "policy", NULL, NULL));
    c->policy_fn = fn;
    c->policy_arg = arg;
    atomic_store(&c->watch_rev, from_rev);
    vmenc_etcd_watch_req wr = {.key = K(key), .key_len = strlen(key), .start_revision = from_rev + 1};
    VMENC_GUARD(vmenc_etcd_watch_new(c->wc, &wr, &c->watch));
    if (pthread_create(&c->watch_thread, NULL, watch_main, c) != 0) {
        vmenc_etcd_watch_free(c->watch);
        c->watch = NULL;
        return VMENC_E_NOMEM;
    }
    c->watch_started = true;
    return VMENC_OK;
}

bool ctl_cluster_watch_healthy(const ctl_cluster *c) {
    return c != NULL && atomic_load_explicit(&((ctl_cluster *)c)->watch_ok, memory_order_acquire);
}

static void watch_stop(ctl_cluster *c) {
    if (!c->watch_started)
        return;
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_broadcast(&c->cv);
    vmenc_etcd_watch_cancel(c->watch); /* under the mutex: the thread swaps it only under it */
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->watch_thread, NULL);
    vmenc_etcd_watch_free(c->watch);
    c->watch = NULL;
    c->watch_started = false;
}
