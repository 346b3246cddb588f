/*
 * lib/workspace/cluster.c - a workspace in cluster mode (include/vmenc/cluster.h,
 * docs/cluster.md): join/leave/status, and the attachment that makes an
 * open workspace a cluster host:
 *   - the policy model follows the cluster's one document: the policy's
 *     refresh hook takes the cluster policy lock and re-reads the document
 *     (linearizable), the commit hook writes it with a compare-and-swap on
 *     the revision read, and a watch thread applies other hosts' edits to
 *     the model as they happen, so decisions are local (the model's read
 *     lock) and no edit is lost;
 *   - the VM layer's hooks (vm_cluster_hooks): fencing on every write,
 *     ownership on every write open, a resynchronisation of the policy
 *     before a decision when the watch is broken;
 *   - the VM authority records in etcd (the etcd control store) under a
 *     MAC key derived from the cluster key, which every host unwraps
 *     through its own key manager.
 *
 * Safety rule: the model is replaced only under the policy's write lock
 * and only by a document whose revision is newer than the one it holds;
 * a write that did not compare the revision read never reaches etcd.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control/etcd/cluster.h"
#include "control/etcd/etcd_store.h"
#include "core/fs.h"
#include "keys/keys_internal.h"
#include "policy/policy_commit.h"
#include "policy/policy_internal.h"
#include "vm/vm_internal.h"
#include "vmenc/cluster.h"
#include "workspace/ws_cluster.h"
#include "workspace/ws_internal.h"

#define KMS_TIMEOUT_MS 10000u
#define POLICY_LOCK_MIN_WAIT_MS 5000u

static const char k_record_key_domain[] = "vmenc-cluster-v1 control record key";
static const char k_policy_key_domain[] = "vmenc-cluster-v1 policy mac key";
static const char k_policy_mac_domain[] = "vmenc-cluster-v1 policy\n";
#define POLICY_CACHE_FILE "cluster-policy.sealed"

struct ws_cluster {
    vmenc_workspace *ws;
    ctl_cluster *cl;
    ws_cluster_file file;
    vm_cluster_hooks hooks;
    pthread_mutex_t mu;          /* pending */
    uint8_t *pending;            /* the newest document seen, not yet in the model */
    size_t pending_len;
    int64_t pending_rev;
    uint64_t pending_gen;
    _Atomic int64_t model_rev;   /* the revision the model is in sync with */
    _Atomic uint64_t model_gen;  /* the sealed generation of the document in the model */
    _Atomic uint64_t min_gen;    /* never accept an older generation (rollback) */
    _Atomic int64_t refused_rev; /* the last revision refused (audited once) */
    vmenc_secret *pkey;          /* the policy document's MAC key (from the cluster key) */
    bool writer;                 /* a writer holds the cluster policy lock (under the policy write lock) */
};

/* The watch thread applies a document through policy_write_lock, whose
 * refresh hook must then take it from |pending| and nothing else. */
static _Thread_local bool tl_apply_pending;

/* ---- the policy hooks --------------------------------------------------------------- */

static void stash(ws_cluster *wc, const uint8_t *json, size_t len, int64_t rev, uint64_t gen) {
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return;
    memcpy(copy, json, len);
    pthread_mutex_lock(&wc->mu);
    if (rev > wc->pending_rev) {
        free(wc->pending);
        wc->pending = copy;
        wc->pending_len = len;
        wc->pending_rev = rev;
        wc->pending_gen = gen;
        copy = NULL;
    }
    pthread_mutex_unlock(&wc->mu);
    free(copy);
}

/* take_pending hands the pending document to the policy if it is newer
 * than the model. Under the policy's write lock. */
static void take_pending(ws_cluster *wc, uint8_t **out_json, size_t *out_len) {
    pthread_mutex_lock(&wc->mu);
    if (wc->pending != NULL && wc->pending_rev > atomic_load(&wc->model_rev)) {
        *out_json = wc->pending;
        *out_len = wc->pending_len;
        atomic_store(&wc->model_rev, wc->pending_rev);
        atomic_store(&wc->model_gen, wc->pending_gen);
        wc->pending = NULL;
        wc->pending_len = 0;
    }
    pthread_mutex_unlock(&wc->mu);
}

/* ---- the policy document's seal (docs/cluster.md) ------------------------------------------------- */

/* policy_mac: BLAKE2b-256 keyed with the policy key over the domain, the
 * cluster name (length-prefixed), the generation and the JSON. */
static vmenc_status policy_mac(const vmenc_secret *k, const char *cluster, uint64_t gen, const uint8_t *json,
                               size_t len, uint8_t out[WS_POLICY_SEAL_MAC_BYTES]) {
    crypto_generichash_state st;
    uint8_t nl = (uint8_t)strlen(cluster), g[8];
    for (int i = 0; i < 8; i++)
        g[i] = (uint8_t)(gen >> (56 - 8 * i));
    VMENC_ENSURE(crypto_generichash_init(&st, k->bytes, k->len, WS_POLICY_SEAL_MAC_BYTES) == 0 &&
                     crypto_generichash_update(&st, (const uint8_t *)k_policy_mac_domain,
                                               sizeof(k_policy_mac_domain) - 1) == 0 &&
                     crypto_generichash_update(&st, &nl, 1) == 0 &&
                     crypto_generichash_update(&st, (const uint8_t *)cluster, nl) == 0 &&
                     crypto_generichash_update(&st, g, sizeof(g)) == 0 &&
                     crypto_generichash_update(&st, json, len) == 0 &&
                     crypto_generichash_final(&st, out, WS_POLICY_SEAL_MAC_BYTES) == 0,
                 VMENC_E_CRYPTO);
    return VMENC_OK;
}

static vmenc_status seal_with(const vmenc_secret *k, const char *cluster, const uint8_t *json, size_t len,
                              uint64_t gen, uint8_t **out, size_t *out_len) {
    ws_policy_seal sl = {.gen = gen, .json = json, .json_len = len};
    VMENC_GUARD(policy_mac(k, cluster, gen, json, len, sl.mac));
    return ws_policy_seal_serialize(&sl, out, out_len);
}

/* policy_open checks a sealed document: envelope, MAC, and a generation
 * no older than any this host accepted. Anything else is VMENC_E_AUTH
 * (|why| says what). |*json| points into |v|. */
static vmenc_status policy_open(ws_cluster *wc, const uint8_t *v, size_t len, const uint8_t **json, size_t *json_len,
                                uint64_t *gen, const char **why) {
    ws_policy_seal sl;
    *why = "not a sealed policy document";
    if (ws_policy_seal_parse(v, len, &sl) != VMENC_OK)
        return VMENC_E_AUTH;
    uint8_t mac[WS_POLICY_SEAL_MAC_BYTES];
    VMENC_GUARD(policy_mac(wc->pkey, wc->file.name, sl.gen, sl.json, sl.json_len, mac));
    *why = "its MAC does not verify under the cluster key";
    if (crypto_verify_32(mac, sl.mac) != 0)
        return VMENC_E_AUTH;
    *why = "it is older than a document this host accepted (rollback)";
    if (sl.gen < atomic_load(&wc->min_gen))
        return VMENC_E_AUTH;
    *json = sl.json;
    *json_len = sl.json_len;
    *gen = sl.gen;
    return VMENC_OK;
}

/* accepted: a sealed document passed; remember its generation and keep
 * it as this host's last good copy (WORKSPACE/cluster-policy.sealed). */
static void accepted(ws_cluster *wc, const uint8_t *v, size_t len, uint64_t gen) {
    uint64_t cur = atomic_load(&wc->min_gen);
    while (gen > cur && !atomic_compare_exchange_weak(&wc->min_gen, &cur, gen)) {
    }
    if (gen < cur)
        return;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", wc->ws->dir, POLICY_CACHE_FILE);
    vmenc_status s = ws_write_path(path, v, len, wc->ws->sync);
    (void)s; /* a cache: etcd is the authority */
}

/* refused: audit a document that failed its seal (once per revision); it
 * is never cached and never reaches the model. */
static void refused(ws_cluster *wc, int64_t rev, const char *why) {
    if (atomic_exchange(&wc->refused_rev, rev) == rev)
        return;
    char reason[256];
    snprintf(reason, sizeof(reason), "the cluster policy document at revision %" PRId64 " was refused: %s; the last "
             "good document stays in force and policy edits are refused", rev, why);
    vmenc_audit_event ev = {.struct_size = sizeof(ev), .principal = wc->ws->cfg->host_id,
                            .operation = "cluster.policy_refused", .target = wc->file.name,
                            .outcome = VMENC_AUDIT_FAILED, .status = VMENC_E_AUTH, .reason = reason};
    vmenc_status as = vmenc_audit_emit(wc->ws->audit, &ev);
    (void)as;
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n) {
    uint8_t *d = malloc(n ? n : 1);
    if (d != NULL)
        memcpy(d, p, n);
    return d;
}

static vmenc_status cl_refresh(void *ctx, uint8_t **out_json, size_t *out_len) {
    vmenc_workspace *ws = ctx;
    ws_cluster *wc = ws->cluster;
    *out_json = NULL;
    *out_len = 0;
    if (tl_apply_pending) {
        take_pending(wc, out_json, out_len);
        return VMENC_OK;
    }
    /* A writer: the cluster lock first (other hosts' writers wait there),
     * then the document as it is now. */
    uint32_t wait = ws->lock_timeout_ms > POLICY_LOCK_MIN_WAIT_MS ? ws->lock_timeout_ms : POLICY_LOCK_MIN_WAIT_MS;
    char why[CTL_CLUSTER_WHY_MAX] = "";
    vmenc_status s = ctl_cluster_policy_lock(wc->cl, wait, why, sizeof(why));
    if (s == VMENC_E_LOCKED) {
        pthread_mutex_lock(&ws->holder_mu);
        snprintf(ws->lock_holder, sizeof(ws->lock_holder), "%s (waited %u ms)", why, wait);
        pthread_mutex_unlock(&ws->holder_mu);
    }
    VMENC_GUARD(s);
    uint8_t *doc = NULL;
    size_t len = 0;
    int64_t rev = 0;
    s = ctl_cluster_policy_get(wc->cl, &doc, &len, &rev);
    const uint8_t *json = NULL;
    size_t jl = 0;
    uint64_t gen = 0;
    const char *bad = NULL;
    if (s == VMENC_OK && (s = policy_open(wc, doc, len, &json, &jl, &gen, &bad)) == VMENC_E_AUTH)
        refused(wc, rev, bad); /* an edit is never made on a document that fails its seal */
    if (s != VMENC_OK) {
        free(doc);
        ctl_cluster_policy_unlock(wc->cl);
        return s;
    }
    wc->writer = true;
    if (rev != atomic_load(&wc->model_rev)) {
        *out_json = dup_bytes(json, jl);
        *out_len = jl;
        if (*out_json == NULL) {
            free(doc);
            wc->writer = false;
            ctl_cluster_policy_unlock(wc->cl);
            return VMENC_E_NOMEM;
        }
        atomic_store(&wc->model_rev, rev);
        atomic_store(&wc->model_gen, gen);
        accepted(wc, doc, len, gen);
    }
    free(doc);
    return VMENC_OK;
}

static void cl_release(void *ctx) {
    vmenc_workspace *ws = ctx;
    ws_cluster *wc = ws->cluster;
    if (wc != NULL && wc->writer) {
        wc->writer = false;
        ctl_cluster_policy_unlock(wc->cl);
    }
}

/* ---- host encryption mode -> host/<id> (docs/broker.md "Encryption mode") ----------------------
 * A host's registration carries its encryption mode, which the key broker
 * authorizes by. The mode lives in the policy document, so every commit
 * that changes a registered host's mode rewrites that host's registration
 * in the same etcd transaction as the document: the broker never sees a
 * mode the policy does not have, and a change that cannot reach the
 * registration does not happen at all. */

typedef struct mode_sync {
    size_t num;
    ctl_cluster_put_if put[CTL_CLUSTER_PUT_IF_MAX];
    char keys[CTL_CLUSTER_PUT_IF_MAX][CTL_CLUSTER_HOST_MAX + 8];
    char *docs[CTL_CLUSTER_PUT_IF_MAX];
} mode_sync;

static void mode_sync_cleanup(mode_sync *ms) {
    for (size_t i = 0; i < ms->num; i++)
        free(ms->docs[i]);
    memset(ms, 0, sizeof(*ms));
}

/* mode_sync_add: host |name| moves to |st|: if it is registered, its
 * registration with the new mode, compared on the revision read. */
static vmenc_status mode_sync_add(ws_cluster *wc, mode_sync *ms, const char *name, vmenc_host_crypto_state st) {
    uint8_t *doc = NULL;
    size_t len = 0;
    int64_t rev = 0;
    vmenc_status s = ctl_cluster_host_get(wc->cl, name, &doc, &len, &rev);
    if (s == VMENC_E_NOT_FOUND)
        return VMENC_OK; /* not registered: no broker gives it anything */
    VMENC_GUARD(s);
    char *nd = NULL;
    s = ms->num < CTL_CLUSTER_PUT_IF_MAX ? ws_cluster_host_doc_set_mode(doc, len, vmenc_host_crypto_state_name((int)st),
                                                                         &nd)
                                         : VMENC_E_LIMIT;
    free(doc);
    VMENC_GUARD(s);
    size_t i = ms->num++;
    snprintf(ms->keys[i], sizeof(ms->keys[i]), "host/%s", name);
    ms->docs[i] = nd;
    ms->put[i] = (ctl_cluster_put_if){.key = ms->keys[i], .value = nd, .mod_rev = rev};
    return VMENC_OK;
}

/* mode_changes: the registrations to rewrite for the commit of |json|:
 * every host whose mode differs from the last committed document's (or
 * that is new in it). */
static vmenc_status mode_changes(vmenc_workspace *ws, const uint8_t *json, size_t json_len, mode_sync *ms) {
    memset(ms, 0, sizeof(*ms));
    const vmenc_policy *p = ws->policy; /* the commit hook runs under its write lock */
    model *now = NULL, *before = NULL;
    VMENC_GUARD(policy_json_parse(json, json_len, NULL, &now));
    vmenc_status s = p->committed != NULL ? policy_json_parse(p->committed, p->committed_len, NULL, &before)
                                          : VMENC_OK;
    for (uint32_t i = 0; s == VMENC_OK && i < now->num_objects; i++) {
        const object *o = &now->objects[i];
        if (o->type != VMENC_OBJ_HOST || strlen(o->name) > CTL_CLUSTER_HOST_MAX)
            continue;
        uint32_t j = before != NULL ? model_find_object(before, o->name) : INDEX_NONE;
        if (j != INDEX_NONE && before->objects[j].type == VMENC_OBJ_HOST &&
            before->objects[j].crypto_state == o->crypto_state)
            continue;
        s = mode_sync_add(ws->cluster, ms, o->name, o->crypto_state);
        if (s != VMENC_OK) {
            /* The change fails with it: say why, in this host's audit log. */
            char reason[256];
            snprintf(reason, sizeof(reason), "host %s's registration (host/%s) cannot be rewritten with mode %s: %s; "
                     "the change is not made", o->name, o->name, vmenc_host_crypto_state_name((int)o->crypto_state),
                     s == VMENC_E_PARSE ? "it is not a registration document (re-register the host)" : vmenc_strerror(s));
            vmenc_audit_event ev = {.struct_size = sizeof(ev), .principal = ws->cfg->host_id,
                                    .operation = "cluster.host_registration", .target = o->name,
                                    .outcome = VMENC_AUDIT_FAILED, .status = s, .reason = reason};
            vmenc_status as = vmenc_audit_emit(ws->audit, &ev);
            (void)as;
        }
    }
    model_free(now);
    model_free(before);
    if (s != VMENC_OK)
        mode_sync_cleanup(ms);
    return s;
}

static vmenc_status cl_commit(void *ctx, const uint8_t *json, size_t json_len) {
    vmenc_workspace *ws = ctx;
    ws_cluster *wc = ws->cluster;
    VMENC_ENSURE(wc != NULL && wc->writer, VMENC_E_INTERNAL);
    int64_t rev = 0;
    uint64_t gen = atomic_load(&wc->model_gen) + 1;
    uint8_t *v = NULL;
    size_t vl = 0;
    VMENC_GUARD(seal_with(wc->pkey, wc->file.name, json, json_len, gen, &v, &vl));
    vmenc_status s;
    for (int attempt = 0;; attempt++) {
        mode_sync ms;
        s = mode_changes(ws, json, json_len, &ms);
        size_t synced = ms.num;
        if (s == VMENC_OK)
            s = ctl_cluster_policy_cas_with(wc->cl, v, vl, atomic_load(&wc->model_rev), ms.put, ms.num, &rev);
        mode_sync_cleanup(&ms);
        /* We hold the policy lock, so a conflict with registrations to
         * write is one of them changing under us (a join, an
         * administrator): read them again. */
        if (s != VMENC_E_CONFLICT || synced == 0 || attempt == 2)
            break;
    }
    if (s == VMENC_OK) {
        atomic_store(&wc->model_rev, rev);
        atomic_store(&wc->model_gen, gen);
        accepted(wc, v, vl, gen);
    }
    free(v);
    return s;
}

/* apply_pending brings the model up to the pending document. */
static vmenc_status apply_pending(ws_cluster *wc) {
    tl_apply_pending = true;
    vmenc_status s = policy_write_lock(wc->ws->policy);
    if (s == VMENC_OK)
        policy_write_unlock(wc->ws->policy);
    tl_apply_pending = false;
    return s;
}

static void on_policy(void *arg, const uint8_t *json, size_t len, int64_t rev) {
    ws_cluster *wc = arg;
    if (rev <= atomic_load(&wc->model_rev))
        return; /* our own commit, or older */
    const uint8_t *doc = NULL;
    size_t dl = 0;
    uint64_t gen = 0;
    const char *bad = NULL;
    if (policy_open(wc, json, len, &doc, &dl, &gen, &bad) != VMENC_OK) {
        refused(wc, rev, bad); /* the last good document stays in force */
        return;
    }
    accepted(wc, json, len, gen);
    stash(wc, doc, dl, rev, gen);
    vmenc_status s = apply_pending(wc);
    (void)s; /* a document the model cannot take fails every later write (policy_write_lock) */
}

/* sync_now reads the document (linearizable) and applies it if newer. */
static vmenc_status sync_now(ws_cluster *wc) {
    uint8_t *doc = NULL;
    size_t len = 0;
    int64_t rev = 0;
    VMENC_GUARD(ctl_cluster_policy_get(wc->cl, &doc, &len, &rev));
    if (rev > atomic_load(&wc->model_rev)) {
        const uint8_t *json = NULL;
        size_t jl = 0;
        uint64_t gen = 0;
        const char *bad = NULL;
        vmenc_status s = policy_open(wc, doc, len, &json, &jl, &gen, &bad);
        if (s != VMENC_OK) {
            refused(wc, rev, bad);
            free(doc);
            /* decide on the last good document if the model holds one */
            return atomic_load(&wc->model_gen) > 0 ? VMENC_OK : s;
        }
        accepted(wc, doc, len, gen);
        stash(wc, json, jl, rev, gen);
    }
    free(doc);
    return apply_pending(wc);
}

/* load_cache puts this host's last good sealed document into the model
 * (at revision 1: any newer document from etcd replaces it) when the one
 * in etcd was refused at attach. */
static vmenc_status load_cache(ws_cluster *wc) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", wc->ws->dir, POLICY_CACHE_FILE);
    uint8_t *v = NULL;
    size_t len = 0;
    VMENC_GUARD(ws_read_path(path, VMENC_ETCD_VALUE_MAX, &v, &len));
    const uint8_t *json = NULL;
    size_t jl = 0;
    uint64_t gen = 0;
    const char *bad = NULL;
    vmenc_status s = policy_open(wc, v, len, &json, &jl, &gen, &bad);
    if (s == VMENC_OK)
        stash(wc, json, jl, 1, gen);
    free(v);
    return s == VMENC_OK ? apply_pending(wc) : s;
}

/* cache_floor: the generation of this host's last good copy is the oldest
 * it accepts from etcd from now on. */
static void cache_floor(ws_cluster *wc) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", wc->ws->dir, POLICY_CACHE_FILE);
    uint8_t *v = NULL;
    size_t len = 0;
    if (ws_read_path(path, VMENC_ETCD_VALUE_MAX, &v, &len) != VMENC_OK)
        return;
    const uint8_t *json = NULL;
    size_t jl = 0;
    uint64_t gen = 0;
    const char *bad = NULL;
    if (policy_open(wc, v, len, &json, &jl, &gen, &bad) == VMENC_OK)
        atomic_store(&wc->min_gen, gen);
    free(v);
}

/* ---- the VM layer's hooks ---------------------------------------------------------------- */

static vmenc_status hk_write_ok(void *ctx) { return ctl_cluster_write_ok(((ws_cluster *)ctx)->cl); }

static vmenc_status hk_before_decide(void *ctx) {
    ws_cluster *wc = ctx;
    if (ctl_cluster_watch_healthy(wc->cl))
        return VMENC_OK;
    return sync_now(wc); /* the watch is broken: decide on the document as it is now */
}

static vmenc_status hk_acquire(void *ctx, const char *uuid, const char *name, char *why, size_t why_cap) {
    return ctl_cluster_acquire(((ws_cluster *)ctx)->cl, uuid, name, why, why_cap);
}

static void hk_release(void *ctx, const char *uuid) { ctl_cluster_release(((ws_cluster *)ctx)->cl, uuid); }

/* ---- the cluster key ------------------------------------------------------------------------- */

static vmenc_wrap_context key_ctx(const char *cluster_id) {
    vmenc_wrap_context c = {.struct_size = sizeof(c), .vm_uuid = cluster_id, .purpose = WS_CLUSTER_KEY_PURPOSE};
    return c;
}

/* derive_key unwraps the cluster key named by the cluster document and
 * derives a key for |domain| from it (secure memory): the control-record
 * MAC key and the policy document's MAC key. */
static vmenc_status derive_key(vmenc_workspace *ws, const ws_cluster_doc *d, const char *domain, vmenc_secret **out) {
    vmenc_wrapped_key *wk = NULL;
    vmenc_dek *dek = NULL;
    vmenc_wrap_context ctx = key_ctx(d->id);
    vmenc_status s = vmenc_wrapped_key_parse_text(d->key, strlen(d->key), &wk);
    if (s == VMENC_OK)
        s = vmenc_keymgr_unwrap_dek(ws->keymgr, wk, &ctx, KMS_TIMEOUT_MS, &dek);
    vmenc_secret *k = NULL;
    if (s == VMENC_OK)
        s = vmenc_secret_new(CTL_MAC_KEY_BYTES, &k);
    if (s == VMENC_OK &&
        crypto_generichash(k->bytes, k->len, (const uint8_t *)domain, strlen(domain), vmenc_dek_bytes_internal(dek),
                           VMENC_DEK_BYTES) != 0)
        s = VMENC_E_CRYPTO;
    vmenc_dek_free(dek);
    vmenc_wrapped_key_free(wk);
    if (s != VMENC_OK) {
        vmenc_secret_free(k);
        return s;
    }
    *out = k;
    return VMENC_OK;
}

/* make_doc creates the cluster key under a new KEK of |alias|. */
static vmenc_status make_doc(vmenc_workspace *ws, const char *name, const char *alias, char **out_text) {
    ws_cluster_doc d = {0};
    char id[VMENC_VM_UUID_LEN + 1];
    char kek_id[VMENC_KMS_KEY_ID_CAP];
    char label[96];
    snprintf(label, sizeof(label), "vmenc-cluster-%s", name);
    vmenc_dek *key = NULL;
    vmenc_wrapped_key *wk = NULL;
    char *text = NULL;
    VMENC_GUARD(vm_new_uuid(id));
    vmenc_wrap_context ctx = key_ctx(id);
    vmenc_status s = vmenc_keymgr_create_kek(ws->keymgr, alias, label, KMS_TIMEOUT_MS, kek_id, sizeof(kek_id));
    if (s == VMENC_OK)
        s = vmenc_dek_generate(&key);
    if (s == VMENC_OK)
        s = vmenc_keymgr_wrap_dek(ws->keymgr, alias, kek_id, key, &ctx, KMS_TIMEOUT_MS, &wk);
    if (s == VMENC_OK)
        s = vmenc_wrapped_key_to_text(wk, &text);
    if (s == VMENC_OK) {
        d.name = (char *)name;
        d.id = id;
        d.key_provider = (char *)alias;
        d.key = text;
        s = ws_cluster_doc_serialize(&d, out_text);
    }
    vmenc_buffer_free(text);
    vmenc_wrapped_key_free(wk);
    vmenc_dek_free(key);
    return s;
}

/* ---- attach / detach ----------------------------------------------------------------------------- */

static vmenc_status read_file_at(vmenc_workspace *ws, ws_cluster_file *out, bool *present) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", ws->dir, WS_CLUSTER_FILE);
    uint8_t *buf = NULL;
    size_t len = 0;
    vmenc_status s = ws_read_path(path, 64u << 10, &buf, &len);
    if (s == VMENC_E_NOT_FOUND) {
        *present = false;
        return VMENC_OK;
    }
    VMENC_GUARD(s);
    *present = true;
    s = ws_cluster_file_parse(buf, len, out);
    free(buf);
    return s;
}

static void etcd_cfg_of(const ws_cluster_file *f, vmenc_etcd_config *ec) {
    memset(ec, 0, sizeof(*ec));
    ec->struct_size = sizeof(*ec);
    ec->endpoints = f->endpoints;
    ec->ca_file = f->ca_file;
    ec->cert_file = f->cert_file;
    ec->key_file = f->key_file;
    ec->connect_timeout_ms = 1000;
    ec->request_timeout_ms = 3000;
}

static vmenc_status open_session(const vmenc_workspace *ws, const ws_cluster_file *f, ctl_cluster **out) {
    vmenc_etcd_config ec;
    etcd_cfg_of(f, &ec);
    ctl_cluster_config cc = {.name = f->name, .host_id = ws->cfg->host_id, .etcd = &ec, .ttl_s = f->ttl_s};
    return ctl_cluster_open(&cc, out);
}

static void free_wc(ws_cluster *wc) {
    if (wc == NULL)
        return;
    ctl_cluster_close(wc->cl);
    ws_cluster_file_cleanup(&wc->file);
    vmenc_secret_free(wc->pkey);
    free(wc->pending);
    pthread_mutex_destroy(&wc->mu);
    free(wc);
}

/* host_parent: the parent of this host in the policy model (for adding the
 * host to the cluster's inventory beside its old place). */
static void host_parent(vmenc_policy *p, const char *host, char *out, size_t cap) {
    out[0] = '\0';
    if (pthread_rwlock_rdlock(&p->lock) != 0)
        return;
    const model *m = p->m;
    uint32_t i = model_find_object(m, host);
    if (i < m->num_objects && m->objects[i].parent < m->num_objects)
        snprintf(out, cap, "%s", m->objects[m->objects[i].parent].name);
    pthread_rwlock_unlock(&p->lock);
}

static void root_of(vmenc_policy *p, char *out, size_t cap) {
    out[0] = '\0';
    if (pthread_rwlock_rdlock(&p->lock) != 0)
        return;
    const model *m = p->m;
    if (m->root < m->num_objects)
        snprintf(out, cap, "%s", m->objects[m->root].name);
    pthread_rwlock_unlock(&p->lock);
}

/* attach_with switches |ws| to the cluster of |f| (taken over). With
 * |join_parent| non-NULL a host missing from the cluster policy is added
 * there (join); without, it is an error. */
static vmenc_status attach_with(vmenc_workspace *ws, ws_cluster_file *f, const char *join_parent,
                                vmenc_workspace_error *err) {
    ws_cluster *wc = calloc(1, sizeof(*wc));
    if (wc == NULL) {
        ws_cluster_file_cleanup(f);
        return VMENC_E_NOMEM;
    }
    pthread_mutex_init(&wc->mu, NULL);
    wc->ws = ws;
    wc->file = *f;
    memset(f, 0, sizeof(*f));
    const char *cf = WS_CLUSTER_FILE;
    vmenc_status s = open_session(ws, &wc->file, &wc->cl);
    if (s != VMENC_OK) {
        char detail[200] = "";
        ws_set_error(err, s, cf, 0, "cannot reach cluster \"%s\" at %s: %s%s", wc->file.name, wc->file.endpoints,
                     vmenc_strerror(s), detail);
        free_wc(wc);
        return s;
    }
    /* The VM authority records: in etcd, under the cluster key. */
    uint8_t *docb = NULL;
    size_t doclen = 0;
    ws_cluster_doc doc = {0};
    s = ctl_cluster_doc_get(wc->cl, &docb, &doclen);
    if (s == VMENC_OK) {
        s = ws_cluster_doc_parse(docb, doclen, &doc);
        free(docb);
    }
    vmenc_secret *mk = NULL;
    if (s == VMENC_OK)
        s = derive_key(ws, &doc, k_record_key_domain, &mk);
    if (s == VMENC_OK)
        s = derive_key(ws, &doc, k_policy_key_domain, &wc->pkey);
    ctl_store *store = NULL;
    if (s == VMENC_OK)
        s = ctl_etcd_new(ctl_cluster_etcd(wc->cl), wc->file.name, mk->bytes, mk->len, &store);
    vmenc_secret_free(mk);
    if (s != VMENC_OK) {
        ws_set_error(err, s, cf, 0, "cluster \"%s\": cannot open its key or its control store (key provider \"%s\"): %s",
                     wc->file.name, doc.key_provider ? doc.key_provider : "?", vmenc_strerror(s));
        ws_cluster_doc_cleanup(&doc);
        free_wc(wc);
        return s;
    }
    ws_cluster_doc_cleanup(&doc);
    ws->cluster = wc;
    /* The policy: the cluster's document through the hooks from now on. */
    s = policy_set_commit_hook(ws->policy, cl_commit, ws);
    if (s == VMENC_OK)
        s = policy_set_refresh_hook(ws->policy, cl_refresh, cl_release);
    cache_floor(wc);
    if (s == VMENC_OK) {
        s = sync_now(wc);
        if (s == VMENC_E_AUTH && load_cache(wc) == VMENC_OK)
            s = VMENC_OK; /* etcd's document is refused (audited): this host's last good one rules */
    }
    if (s != VMENC_OK) {
        ws_set_error(err, s, cf, 0, "cluster \"%s\": cannot load the cluster policy: %s", wc->file.name,
                     vmenc_strerror(s));
        goto fail;
    }
    vmenc_host_crypto_state st;
    s = vmenc_policy_get_host_state(ws->policy, ws->cfg->host_id, &st);
    if (s == VMENC_E_NOT_FOUND && join_parent != NULL) {
        char root[VMENC_POLICY_NAME_MAX + 1];
        root_of(ws->policy, root, sizeof(root));
        s = vmenc_policy_add_object(ws->policy, ws->cfg->host_id, VMENC_OBJ_HOST, join_parent);
        if (s == VMENC_E_NOT_FOUND || s == VMENC_E_INVALID_ARG)
            s = vmenc_policy_add_object(ws->policy, ws->cfg->host_id, VMENC_OBJ_HOST, root);
    }
    if (s != VMENC_OK) {
        ws_set_error(err, s, cf, 0, "host \"%s\" is not a host of cluster \"%s\"'s policy (%s); join it: vmenc cluster join",
                     ws->cfg->host_id, wc->file.name, vmenc_strerror(s));
        goto fail;
    }
    s = ctl_cluster_watch_policy(wc->cl, atomic_load(&wc->model_rev), on_policy, wc);
    if (s != VMENC_OK) {
        ws_set_error(err, s, cf, 0, "cluster \"%s\": cannot watch the policy: %s", wc->file.name, vmenc_strerror(s));
        goto fail;
    }
    vmenc_etcd_config aec;
    etcd_cfg_of(&wc->file, &aec);
    s = ws_cluster_audit_attach(ws, wc->file.name, &aec); /* this host's audit records, mirrored (ws_audit.c) */
    if (s != VMENC_OK) {
        ws_set_error(err, s, cf, 0, "cluster \"%s\": cannot mirror the audit log: %s", wc->file.name,
                     vmenc_strerror(s));
        goto fail;
    }
    wc->hooks = (vm_cluster_hooks){.ctx = wc, .write_ok = hk_write_ok, .before_decide = hk_before_decide,
                                   .acquire = hk_acquire, .release = hk_release};
    /* The store borrows the cluster's client: ws_cluster_detach takes it
     * from the host before the session (and its client) ends. */
    vm_host_set_control(ws->host, store);
    store = NULL;
    ws->host->cluster = &wc->hooks;
    return VMENC_OK;
fail:
    ws_cluster_audit_detach(ws);
    ctl_store_free(store);
    ws->cluster = NULL;
    free_wc(wc);
    return s;
}

vmenc_status ws_cluster_attach(vmenc_workspace *ws, vmenc_workspace_error *err) {
    ws_cluster_file f;
    bool present = false;
    vmenc_status s = read_file_at(ws, &f, &present);
    if (s != VMENC_OK)
        return ws_set_error(err, s, WS_CLUSTER_FILE, 0, "cannot read the cluster membership: %s", vmenc_strerror(s));
    if (!present)
        return VMENC_OK;
    return attach_with(ws, &f, NULL, err);
}

void ws_cluster_detach(vmenc_workspace *ws) {
    if (ws == NULL || ws->cluster == NULL)
        return;
    ws_cluster_audit_detach(ws); /* the mirror has its own client; later records catch up next time */
    if (ws->host != NULL)
        ws->host->cluster = NULL;
    ws_cluster *wc = ws->cluster;
    if (ws->host != NULL)
        vm_host_set_control(ws->host, NULL); /* the etcd store: it borrows the session's client */
    /* Stop the watch before the hooks go: nothing may apply a document
     * to a policy whose owner is leaving. */
    ctl_cluster_close(wc->cl);
    wc->cl = NULL;
    if (ws->policy != NULL) {
        vmenc_status s = policy_set_commit_hook(ws->policy, NULL, NULL);
        if (s == VMENC_OK)
            s = policy_set_refresh_hook(ws->policy, NULL, NULL);
        (void)s;
    }
    ws->cluster = NULL;
    free_wc(wc);
}

/* ---- join / leave -------------------------------------------------------------------------------- */

static vmenc_status cert_fingerprint(const char *path, char out[65]) {
    snprintf(out, 65, "?");
    FILE *fp = fopen(path, "re");
    VMENC_ENSURE(fp != NULL, VMENC_E_NOT_FOUND);
    X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    VMENC_ENSURE(x != NULL, VMENC_E_PARSE);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    X509_free(x);
    VMENC_ENSURE(n > 0, VMENC_E_PARSE);
    uint8_t h[32];
    crypto_hash_sha256(h, der, (unsigned long long)n);
    OPENSSL_free(der);
    for (size_t i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
    return VMENC_OK;
}

/* register_host writes this host's registration with the mode the
 * cluster's policy gives it, under the policy's write lock (the cluster's
 * policy lock): a mode change by another host is committed either before
 * (the mode read here is the new one) or after (its commit rewrites this
 * registration), never in between. */
static vmenc_status register_host(vmenc_workspace *ws) {
    ws_cluster *wc = ws->cluster;
    char fp[65];
    vmenc_status fs = cert_fingerprint(wc->file.cert_file, fp);
    (void)fs; /* etcd accepted the certificate; "?" only if it changed since */
    VMENC_GUARD(policy_write_lock(ws->policy));
    vmenc_host_crypto_state st = VMENC_HOST_INCAPABLE;
    uint32_t h = model_find_object(ws->policy->m, ws->cfg->host_id);
    if (h != INDEX_NONE && ws->policy->m->objects[h].type == VMENC_OBJ_HOST)
        st = ws->policy->m->objects[h].crypto_state;
    char since[32] = "?";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) != NULL)
        strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
    char info[CTL_CLUSTER_INFO_MAX];
    snprintf(info, sizeof(info),
             "{\"host\":\"%s\",\"encryption_mode\":\"%s\",\"cert_sha256\":\"%s\",\"workspace\":\"%s\",\"since\":\"%s\"}",
             ws->cfg->host_id, vmenc_host_crypto_state_name((int)st), fp, ws->cfg->id, since);
    vmenc_status s = ctl_cluster_host_put(wc->cl, info);
    policy_write_unlock(ws->policy);
    return s;
}

static vmenc_status may_join(vmenc_workspace *ws, const char *who, const char *operation) {
    char root[VMENC_POLICY_NAME_MAX + 1];
    root_of(ws->policy, root, sizeof(root));
    int has = 0;
    vmenc_status s = who != NULL && who[0] != '\0'
                         ? vmenc_policy_has_privilege(ws->policy, who, root, VMENC_PRIV_CRYPTO_REGISTER_HOST, &has)
                         : VMENC_E_INVALID_ARG;
    if (s == VMENC_E_NOT_FOUND)
        s = VMENC_OK, has = 0;
    if (s == VMENC_OK && !has) {
        char reason[640];
        snprintf(reason, sizeof(reason), "'%s' lacks Cryptographer.RegisterHost on '%s'", who, root);
        vmenc_audit_event ev = {.struct_size = sizeof(ev), .principal = who, .operation = operation,
                                .target = ws->cfg->host_id, .outcome = VMENC_AUDIT_DENIED, .status = VMENC_E_DENIED,
                                .reason = reason};
        vmenc_status as = vmenc_audit_emit(ws->audit, &ev);
        (void)as;
        return VMENC_E_DENIED;
    }
    return s;
}

static vmenc_status write_membership(vmenc_workspace *ws, const ws_cluster_file *f) {
    char *text = NULL;
    VMENC_GUARD(ws_cluster_file_serialize(f, &text));
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", ws->dir, WS_CLUSTER_FILE);
    vmenc_status s = ws_write_path(path, (const uint8_t *)text, strlen(text), ws->sync);
    free(text);
    return s;
}

static vmenc_status join_locked(vmenc_workspace *ws, const vmenc_cluster_spec *spec, const char *name) {
    ws_cluster_file f = {0};
    f.name = strdup(name);
    f.endpoints = strdup(spec->endpoints);
    f.ca_file = realpath(spec->ca_file, NULL);
    f.cert_file = realpath(spec->cert_file, NULL);
    f.key_file = realpath(spec->key_file, NULL);
    f.ttl_s = spec->ttl_s;
    vmenc_status s = f.name && f.endpoints ? VMENC_OK : VMENC_E_NOMEM;
    if (s == VMENC_OK && (f.ca_file == NULL || f.cert_file == NULL || f.key_file == NULL))
        s = VMENC_E_NOT_FOUND;
    ctl_cluster *tmp = NULL;
    if (s == VMENC_OK)
        s = open_session(ws, &f, &tmp);
    uint8_t *doc = NULL;
    size_t len = 0;
    if (s == VMENC_OK) {
        s = ctl_cluster_doc_get(tmp, &doc, &len);
        if (s == VMENC_E_NOT_FOUND && (spec->flags & VMENC_CLUSTER_CREATE)) {
            const char *alias = spec->key_provider ? spec->key_provider : ws->cfg->audit_provider;
            char *text = NULL;
            s = make_doc(ws, name, alias, &text);
            if (s == VMENC_OK) {
                s = ctl_cluster_doc_create(tmp, (const uint8_t *)text, strlen(text));
                if (s == VMENC_E_EXISTS) /* another host created it first: join that one */
                    s = VMENC_OK;
            }
            free(text);
        }
        free(doc);
    }
    if (s == VMENC_OK && (spec->flags & VMENC_CLUSTER_CREATE)) {
        /* The cluster's policy starts as this workspace's document. */
        uint8_t *json = NULL;
        size_t jl = 0;
        s = vmenc_policy_save_json(ws->policy, &json, &jl);
        /* sealed under the cluster's policy key, generation 1 */
        uint8_t *cd = NULL, *v = NULL;
        size_t cdl = 0, vl = 0;
        ws_cluster_doc d = {0};
        vmenc_secret *pk = NULL;
        if (s == VMENC_OK)
            s = ctl_cluster_doc_get(tmp, &cd, &cdl);
        if (s == VMENC_OK)
            s = ws_cluster_doc_parse(cd, cdl, &d);
        if (s == VMENC_OK)
            s = derive_key(ws, &d, k_policy_key_domain, &pk);
        if (s == VMENC_OK)
            s = seal_with(pk, name, json, jl, 1, &v, &vl);
        int64_t rev = 0;
        if (s == VMENC_OK) {
            s = ctl_cluster_policy_cas(tmp, v, vl, 0, &rev);
            if (s == VMENC_E_CONFLICT)
                s = VMENC_OK; /* it exists: the cluster's policy wins */
        }
        free(v);
        vmenc_secret_free(pk);
        ws_cluster_doc_cleanup(&d);
        free(cd);
        vmenc_policy_buffer_free(json);
    }
    ctl_cluster_close(tmp);
    char parent[VMENC_POLICY_NAME_MAX + 1];
    host_parent(ws->policy, ws->cfg->host_id, parent, sizeof(parent));
    if (s == VMENC_OK)
        s = write_membership(ws, &f);
    if (s == VMENC_OK) {
        s = attach_with(ws, &f, parent, NULL);
        if (s != VMENC_OK) {
            char path[PATH_MAX];
            snprintf(path, sizeof(path), "%s/%s", ws->dir, WS_CLUSTER_FILE);
            unlink(path);
        }
    }
    if (s == VMENC_OK)
        s = register_host(ws);
    ws_cluster_file_cleanup(&f);
    return s;
}

vmenc_status vmenc_workspace_cluster_join(vmenc_workspace *ws, const char *who, const vmenc_cluster_spec *spec) {
    VMENC_ENSURE(ws != NULL && spec != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(spec->struct_size >= sizeof(*spec), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(spec->endpoints != NULL && spec->ca_file != NULL && spec->cert_file != NULL &&
                     spec->key_file != NULL && (spec->flags & ~VMENC_CLUSTER_CREATE) == 0,
                 VMENC_E_INVALID_ARG);
    const char *name = spec->name ? spec->name : "vmenc";
    VMENC_ENSURE(ctl_cluster_name_ok(name), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(spec->ttl_s == 0 || (spec->ttl_s >= 2 && spec->ttl_s <= 3600), VMENC_E_INVALID_ARG);
    const char *op = (spec->flags & VMENC_CLUSTER_CREATE) ? "cluster.init" : "cluster.join";
    VMENC_GUARD(may_join(ws, who, op));
    pthread_mutex_lock(&ws->mu);
    vmenc_status s = ws->cluster != NULL ? VMENC_E_BAD_STATE : join_locked(ws, spec, name);
    pthread_mutex_unlock(&ws->mu);
    char reason[200];
    snprintf(reason, sizeof(reason), "cluster \"%s\" at %s", name, spec->endpoints);
    vmenc_status as = vmenc_workspace_audit_result(ws, who, op, ws->cfg->host_id, NULL, NULL, s,
                                                   s == VMENC_OK ? reason : NULL);
    return s != VMENC_OK ? s : as;
}

vmenc_status vmenc_workspace_cluster_leave(vmenc_workspace *ws, const char *who) {
    VMENC_ENSURE_REF(ws);
    VMENC_GUARD(may_join(ws, who, "cluster.leave"));
    pthread_mutex_lock(&ws->mu);
    vmenc_status s = ws->cluster == NULL ? VMENC_E_BAD_STATE : VMENC_OK;
    char name[CTL_CLUSTER_NAME_MAX + 1] = "";
    if (s == VMENC_OK) {
        snprintf(name, sizeof(name), "%s", ws->cluster->file.name);
        s = ctl_cluster_host_delete(ws->cluster->cl);
    }
    if (s == VMENC_OK) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", ws->dir, WS_CLUSTER_FILE);
        if (unlink(path) != 0 && errno != ENOENT)
            s = vmenc_status_from_errno(errno);
    }
    if (s == VMENC_OK) {
        ws_cluster_detach(ws);
        s = ws_control_attach(ws, NULL); /* the VM records: back to the local store */
        /* Back to the local document: it is "newer" than anything the
         * model holds now, so the refresh hook takes it. */
        ws->policy_gen = 0;
        memset(ws->policy_sha, 0, sizeof(ws->policy_sha));
        if (s == VMENC_OK)
            s = ws_policy_attach(ws);
        if (s == VMENC_OK)
            s = policy_write_lock(ws->policy);
        if (s == VMENC_OK)
            policy_write_unlock(ws->policy);
    }
    pthread_mutex_unlock(&ws->mu);
    vmenc_status as = vmenc_workspace_audit_result(ws, who, "cluster.leave", ws->cfg->host_id, NULL, NULL, s,
                                                   name[0] ? name : NULL);
    return s != VMENC_OK ? s : as;
}

/* ---- status, hosts, owners, take-over ------------------------------------------------------------- */

vmenc_status vmenc_workspace_cluster_status(vmenc_workspace *ws, vmenc_cluster_status *out) {
    VMENC_ENSURE(ws != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= sizeof(*out), VMENC_E_ABI_VERSION);
    uint32_t sz = out->struct_size;
    memset(out, 0, sizeof(*out));
    out->struct_size = sz;
    ws_cluster *wc = ws->cluster;
    if (wc == NULL)
        return VMENC_OK;
    out->in_cluster = 1;
    snprintf(out->name, sizeof(out->name), "%s", wc->file.name);
    snprintf(out->host, sizeof(out->host), "%s", ws->cfg->host_id);
    out->lease = (uint64_t)ctl_cluster_lease(wc->cl);
    out->ttl_s = ctl_cluster_ttl_s(wc->cl);
    ctl_cluster_fence_info fi;
    ctl_cluster_fence_info_get(wc->cl, &fi);
    out->fence_ms_left = fi.ms_left;
    out->lease_gone = fi.lease_gone;
    out->keepalives_ok = fi.keepalives_ok;
    out->keepalives_failed = fi.keepalives_failed;
    out->watch_healthy = ctl_cluster_watch_healthy(wc->cl);
    out->policy_revision = atomic_load(&wc->model_rev);
    vmenc_etcd *e = ctl_cluster_etcd(wc->cl);
    out->num_endpoints = (uint32_t)vmenc_etcd_num_endpoints(e);
    for (size_t i = 0; i < out->num_endpoints; i++) {
        vmenc_etcd_member_status ms;
        memset(&ms, 0, sizeof(ms));
        if (vmenc_etcd_status(e, i, &ms) == VMENC_OK) {
            out->num_endpoints_up++;
            if (ms.leader != 0)
                out->has_leader = 1;
        }
    }
    return VMENC_OK;
}

typedef struct host_walk {
    vmenc_cluster_host_callback cb;
    void *ctx;
} host_walk;

static int host_cb(void *arg, const char *host, const char *info, uint32_t n) {
    host_walk *w = arg;
    return w->cb(w->ctx, host, info, n);
}

vmenc_status vmenc_workspace_cluster_hosts(vmenc_workspace *ws, vmenc_cluster_host_callback cb, void *ctx) {
    VMENC_ENSURE(ws != NULL && cb != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(ws->cluster != NULL, VMENC_E_BAD_STATE);
    host_walk w = {.cb = cb, .ctx = ctx};
    return ctl_cluster_hosts(ws->cluster->cl, host_cb, &w);
}

/* vm_uuid_of reads VM |name|'s UUID from its configuration (no keys, no
 * policy: the UUID only names the ownership key). */
static vmenc_status vm_uuid_of(vmenc_workspace *ws, const char *name, char out[VMENC_VM_UUID_LEN + 1]) {
    char path[VMENC_WORKSPACE_PATH_MAX];
    VMENC_GUARD(vmenc_workspace_vm_path(ws, name, path, sizeof(path)));
    uint8_t *buf = NULL;
    size_t len = 0;
    VMENC_GUARD(ws_read_path(path, 1u << 20, &buf, &len));
    vm_vmx vmx;
    memset(&vmx, 0, sizeof(vmx));
    vmenc_status s = vm_vmx_parse(buf, len, &vmx);
    free(buf);
    VMENC_GUARD(s);
    snprintf(out, VMENC_VM_UUID_LEN + 1, "%s", vmx.uuid);
    vm_vmx_cleanup(&vmx);
    return VMENC_OK;
}

vmenc_status vmenc_workspace_vm_owner(vmenc_workspace *ws, const char *name, char *out, size_t out_cap) {
    VMENC_ENSURE(ws != NULL && name != NULL && out != NULL && out_cap > 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(ws->cluster != NULL, VMENC_E_BAD_STATE);
    char uuid[VMENC_VM_UUID_LEN + 1];
    VMENC_GUARD(vm_uuid_of(ws, name, uuid));
    return ctl_cluster_owner(ws->cluster->cl, uuid, out, out_cap);
}

vmenc_status vmenc_workspace_vm_take_over(vmenc_workspace *ws, const char *who, const char *name,
                                          vmenc_vm **out) {
    VMENC_ENSURE(ws != NULL && name != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(ws->cluster != NULL, VMENC_E_BAD_STATE);
    vmenc_vm *vm = NULL;
    vmenc_status s = vmenc_workspace_open_vm(ws, who, name, &vm);
    if (s == VMENC_E_VM_LOCKED)
        s = VMENC_OK; /* keys later: ownership does not need them */
    char why[CTL_CLUSTER_WHY_MAX] = "";
    if (s == VMENC_OK) {
        vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_REGISTER_VM, .vm = name,
                                   .folder = ws->cfg->folder, .host = ws->cfg->host_id};
        vmenc_policy_decision d = {.struct_size = sizeof(d)};
        s = vmenc_workspace_authorize(ws, who, &rq, "vm.take_over", name, &d);
    }
    if (s == VMENC_OK) {
        pthread_mutex_lock(&vm->lock);
        char uuid[VMENC_VM_UUID_LEN + 1];
        snprintf(uuid, sizeof(uuid), "%s", vm->vmx.uuid);
        /* The take-over proper (the owner key absent = its lease expired;
         * the placement moves here in the same txn), then the VM object's
         * count of it, then drop the extra count the take-over made. */
        s = ctl_cluster_take_over(ws->cluster->cl, uuid, name, why, sizeof(why));
        if (s == VMENC_OK) {
            s = vm_cluster_own(vm, why, sizeof(why));
            ctl_cluster_release(ws->cluster->cl, uuid);
        }
        int enc = vm_is_encrypted(vm);
        pthread_mutex_unlock(&vm->lock);
        if (s == VMENC_OK) {
            /* The inventory follows: the VM runs here now. */
            vmenc_status ps = vmenc_policy_set_vm_state(ws->policy, name, ws->cfg->host_id, enc);
            if (ps == VMENC_E_HOST_MODE) {
                vmenc_policy_decision hd = {.struct_size = sizeof(hd)};
                ps = vmenc_policy_enable_host_encryption(ws->policy, who, ws->cfg->host_id, &hd);
                if (ps == VMENC_OK)
                    ps = vmenc_policy_set_vm_state(ws->policy, name, ws->cfg->host_id, enc);
            }
            s = ps;
        }
        if (s == VMENC_E_LOCKED) {
            pthread_mutex_lock(&ws->holder_mu);
            snprintf(ws->lock_holder, sizeof(ws->lock_holder), "%s", why);
            pthread_mutex_unlock(&ws->holder_mu);
        }
    }
    vmenc_status as = vmenc_workspace_audit_result(ws, who, "vm.take_over", name, NULL, NULL, s,
                                                   s == VMENC_OK ? "ownership taken after the owner's lease expired"
                                                                 : (why[0] ? why : NULL));
    if (s == VMENC_OK && as != VMENC_OK)
        s = as;
    if (s != VMENC_OK) {
        vmenc_vm_free(vm);
        return s;
    }
    *out = vm;
    return VMENC_OK;
}

/* ---- the migration handover ------------------------------------------------------------------------ */

vmenc_status vmenc_workspace_vm_placement(vmenc_workspace *ws, const char *name, char *out, size_t out_cap) {
    VMENC_ENSURE(ws != NULL && name != NULL && out != NULL && out_cap > 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(ws->cluster != NULL, VMENC_E_BAD_STATE);
    char uuid[VMENC_VM_UUID_LEN + 1];
    VMENC_GUARD(vm_uuid_of(ws, name, uuid));
    return ctl_cluster_placement(ws->cluster->cl, uuid, out, out_cap);
}

static void note_holder(vmenc_workspace *ws, const char *why) {
    if (why[0] == '\0')
        return;
    pthread_mutex_lock(&ws->holder_mu);
    snprintf(ws->lock_holder, sizeof(ws->lock_holder), "%s", why);
    pthread_mutex_unlock(&ws->holder_mu);
}

/* record_state: the VM record's revision in the control store and a tag
 * of the VM state it records (encrypted, key generation, the VM key
 * record's hash): what a handover names, so the destination commits only
 * the VM state the source sent. Revision 0 and tag "none" without a record. */
static vmenc_status record_state(vmenc_workspace *ws, const char *uuid, int64_t *out_rev, char *tag, size_t cap) {
    *out_rev = 0;
    snprintf(tag, cap, "none");
    if (ws->host->control == NULL)
        return VMENC_OK;
    ctl_vm_record *rec = malloc(sizeof(*rec));
    VMENC_ENSURE(rec != NULL, VMENC_E_NOMEM);
    vmenc_status s = ctl_store_get_vm(ws->host->control, uuid, rec);
    if (s == VMENC_OK) {
        const uint8_t *h = rec->facts.key_hash;
        *out_rev = (int64_t)rec->revision;
        snprintf(tag, cap, "enc=%d gen=%" PRIu64 " key=%02x%02x%02x%02x%02x%02x%02x%02x op=%d", rec->facts.encrypted ? 1 : 0,
                 rec->facts.key_generation, h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], (int)rec->op.kind);
    } else if (s == VMENC_E_NOT_FOUND) {
        s = VMENC_OK;
    }
    free(rec);
    return s;
}

vmenc_status vmenc_workspace_cluster_handover_begin(vmenc_workspace *ws, const char *who, vmenc_vm *vm,
                                                    const char *dest_host) {
    VMENC_ENSURE(ws != NULL && vm != NULL && dest_host != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(ws->cluster != NULL, VMENC_E_BAD_STATE);
    const char *name = vmenc_vm_name(vm);
    int enc = vm_is_encrypted(vm);
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_MIGRATE_VM, .vm = name, .host = dest_host,
                               .flags = enc ? VMENC_REQ_VM_ENCRYPTED : 0};
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    VMENC_GUARD(vmenc_workspace_authorize(ws, who, &rq, "migration.handover_begin", name, &d));
    char why[CTL_CLUSTER_WHY_MAX] = "";
    pthread_mutex_lock(&vm->lock);
    vmenc_status s = vm_cluster_own(vm, why, sizeof(why));
    char uuid[VMENC_VM_UUID_LEN + 1];
    snprintf(uuid, sizeof(uuid), "%s", vm->vmx.uuid);
    pthread_mutex_unlock(&vm->lock);
    int64_t rev = 0;
    char tag[CTL_CLUSTER_TAG_MAX];
    if (s == VMENC_OK)
        s = record_state(ws, uuid, &rev, tag, sizeof(tag));
    if (s == VMENC_OK)
        s = ctl_cluster_handover_begin(ws->cluster->cl, uuid, dest_host, tag, why, sizeof(why));
    note_holder(ws, why);
    char reason[CTL_CLUSTER_WHY_MAX + 64];
    if (s == VMENC_OK)
        snprintf(reason, sizeof(reason), "offered to host %s (record revision %" PRId64 ", %s)", dest_host, rev, tag);
    else
        snprintf(reason, sizeof(reason), "%s", why);
    vmenc_status as = vmenc_workspace_audit_result(ws, who, "migration.handover_begin", name, NULL, NULL, s,
                                                   reason[0] ? reason : NULL);
    return s != VMENC_OK ? s : as;
}

vmenc_status vmenc_workspace_cluster_handover_wait(vmenc_workspace *ws, const char *who, vmenc_vm *vm,
                                                   const char *dest_host, uint32_t timeout_ms) {
    VMENC_ENSURE(ws != NULL && vm != NULL && dest_host != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(ws->cluster != NULL, VMENC_E_BAD_STATE);
    char uuid[VMENC_VM_UUID_LEN + 1];
    pthread_mutex_lock(&vm->lock);
    snprintf(uuid, sizeof(uuid), "%s", vm->vmx.uuid);
    pthread_mutex_unlock(&vm->lock);
    vmenc_status s = ctl_cluster_handover_wait(ws->cluster->cl, uuid, dest_host, timeout_ms);
    char reason[160];
    snprintf(reason, sizeof(reason), s == VMENC_OK ? "handed over: placed on host %s" : "not taken over by host %s: "
             "the VM stays here", dest_host);
    vmenc_status as = vmenc_workspace_audit_result(ws, who, "migration.handover", vmenc_vm_name(vm), NULL, NULL,
                                                   s, reason);
    return s != VMENC_OK ? s : as;
}

vmenc_status vmenc_workspace_cluster_handover_commit(vmenc_workspace *ws, const char *who, vmenc_vm *vm) {
    VMENC_ENSURE(ws != NULL && vm != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(ws->cluster != NULL, VMENC_E_BAD_STATE);
    const char *name = vmenc_vm_name(vm);
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_REGISTER_VM, .vm = name,
                               .folder = ws->cfg->folder, .host = ws->cfg->host_id};
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    VMENC_GUARD(vmenc_workspace_authorize(ws, who, &rq, "migration.handover_commit", name, &d));
    char uuid[VMENC_VM_UUID_LEN + 1];
    pthread_mutex_lock(&vm->lock);
    snprintf(uuid, sizeof(uuid), "%s", vm->vmx.uuid);
    int enc = vm_is_encrypted(vm);
    pthread_mutex_unlock(&vm->lock);
    char why[CTL_CLUSTER_WHY_MAX + 2 * CTL_CLUSTER_TAG_MAX] = "", src[CTL_CLUSTER_HOST_MAX + 1] = "";
    /* The offer, and the record as it is now: the record must still be
     * the VM state the source sent, and the transaction compares that
     * revision (a write since then makes it fail). */
    ctl_cluster_handover h;
    vmenc_status s = ctl_cluster_handover_read(ws->cluster->cl, uuid, &h);
    if (s == VMENC_E_NOT_FOUND)
        snprintf(why, sizeof(why), "no handover of this VM is in progress (the source ended it or died)");
    if (s == VMENC_OK)
        snprintf(src, sizeof(src), "%s", h.src);
    int64_t rev = 0;
    char tag[CTL_CLUSTER_TAG_MAX];
    if (s == VMENC_OK)
        s = record_state(ws, uuid, &rev, tag, sizeof(tag));
    if (s == VMENC_OK && strcmp(tag, h.tag) != 0) {
        snprintf(why, sizeof(why), "the VM record (%s) is not the state host %s sent (%s)", tag, h.src, h.tag);
        s = VMENC_E_CONFLICT;
    }
    if (s == VMENC_OK)
        s = ctl_cluster_handover_commit(ws->cluster->cl, uuid, name, &h, rev, why, sizeof(why));
    if (s == VMENC_OK) {
        /* count the ownership on |vm|: released when it is freed */
        pthread_mutex_lock(&vm->lock);
        s = vm_cluster_own(vm, why, sizeof(why));
        pthread_mutex_unlock(&vm->lock);
    } else if (src[0] != '\0' && (s == VMENC_E_CONFLICT || s == VMENC_E_DENIED)) {
        /* registering here pointed the inventory at this host: back to where the VM stays */
        vmenc_status ps = vmenc_policy_set_vm_state(ws->policy, name, src, enc);
        (void)ps; /* the inventory's host is informational; the placement decides */
    }
    note_holder(ws, why);
    char reason[sizeof(why) + 64];
    if (s == VMENC_OK)
        snprintf(reason, sizeof(reason), "taken over from host %s in one transaction", src);
    else
        snprintf(reason, sizeof(reason), "%s", why);
    vmenc_status as = vmenc_workspace_audit_result(ws, who, "migration.handover_commit", name, NULL, NULL, s,
                                                   reason[0] ? reason : NULL);
    return s != VMENC_OK ? s : as;
}
