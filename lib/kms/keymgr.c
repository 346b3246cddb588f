/*
 * lib/kms/keymgr.c - the key manager: clusters by alias, vendor provider
 * types, and the KEK cache (secure memory only, LRU-bounded, optional
 * lifetime, key check values), with the high-level wrap/unwrap calls.
 *
 * Locking: one mutex (mgr->mu) guards the cluster list, the type registry,
 * the cache and the statistics. It is never held while a KMS is called or
 * while a record is opened. A cached KEK is handed out as a reference-
 * counted kek_ref so an entry may be evicted while another thread still
 * unwraps with it; the KEK is wiped when the last reference goes. A cluster
 * slot is reference-counted the same way, so removing a cluster while calls
 * run on it is safe.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "keys/keys_internal.h"
#include "kms/kms_internal.h"

#define DEFAULT_CAPACITY 1024u
#define MAX_CAPACITY (1u << 20)
#define KCV_BYTES VMENC_KEK_CHECK_VALUE_BYTES
#define PIN_BUCKETS 1024u
#define MAX_PINS (1u << 20)

static const uint8_t k_kcv_label[] = "vmenc KEK check value v1";

typedef struct kek_ref {
    vmenc_kek *kek;
    uint32_t refs; /* under mgr->mu */
} kek_ref;

typedef struct cache_entry {
    char alias[VMENC_PROVIDER_ALIAS_MAX + 1];
    char id[VMENC_KEY_ID_MAX + 1];
    uint64_t hash;
    kek_ref *ref;          /* NULL once expired: only the check value remains */
    uint8_t kcv[KCV_BYTES];
    bool verified;         /* a record has opened with this KEK */
    uint64_t expires_at;   /* monotonic ms; 0 = never */
    struct cache_entry *hnext;
    struct cache_entry *prev, *next; /* LRU list, most recent first */
} cache_entry;

typedef struct pin_entry {
    char alias[VMENC_PROVIDER_ALIAS_MAX + 1];
    char id[VMENC_KEY_ID_MAX + 1];
    uint64_t hash;
    uint8_t kcv[KCV_BYTES];
    struct pin_entry *next;
} pin_entry;

typedef enum remote_mode { MODE_UNKNOWN = 0, MODE_LOCAL = 1, MODE_REMOTE = 2 } remote_mode;

typedef struct cluster_slot {
    vmenc_kms_cluster *c;
    uint32_t refs;
    bool removed;
    remote_mode mode;
    struct cluster_slot *next;
} cluster_slot;

typedef struct ptype {
    char name[VMENC_PROVIDER_ALIAS_MAX + 1];
    vmenc_kms_provider_factory factory;
    void *arg;
    struct ptype *next;
} ptype;

struct vmenc_keymgr {
    pthread_mutex_t mu;
    uint32_t capacity;
    uint64_t ttl_ms;
    vmenc_wrap_alg remote_alg;
    bool roundtrip_proof;    /* prove every wrap (VMENC_KEYMGR_NO_ROUNDTRIP_PROOF clears) */
    cluster_slot *clusters;
    ptype *types;
    cache_entry **buckets;
    size_t nbuckets;
    cache_entry *lru_head, *lru_tail;
    size_t count;
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    pin_entry *pins[PIN_BUCKETS];
    size_t num_pins;
    vmenc_keymgr_stats stats;
};

/* ---- small helpers ------------------------------------------------------------ */

static void kcv_of(const vmenc_kek *kek, uint8_t out[KCV_BYTES]) {
    crypto_generichash(out, KCV_BYTES, k_kcv_label, sizeof(k_kcv_label) - 1, vmenc_kek_bytes_internal(kek),
                       VMENC_KEK_BYTES);
}

static bool id_valid(const char *id) {
    if (id == NULL)
        return false;
    size_t n = strnlen(id, VMENC_KEY_ID_MAX + 1);
    return n > 0 && n <= VMENC_KEY_ID_MAX;
}

static uint64_t hash_of(const vmenc_keymgr *m, const char *alias, const char *id) {
    uint8_t buf[VMENC_PROVIDER_ALIAS_MAX + 1 + VMENC_KEY_ID_MAX];
    size_t la = strlen(alias), li = strlen(id);
    memcpy(buf, alias, la);
    buf[la] = 0;
    memcpy(buf + la + 1, id, li);
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, buf, la + 1 + li, m->hash_key);
    return vmenc_load_u64_le(h);
}

static void ref_release_locked(kek_ref *r) {
    if (r != NULL && --r->refs == 0) {
        vmenc_kek_free(r->kek);
        free(r);
    }
}

static void ref_release(vmenc_keymgr *m, kek_ref *r) {
    pthread_mutex_lock(&m->mu);
    ref_release_locked(r);
    pthread_mutex_unlock(&m->mu);
}

/* ---- cache internals (caller holds mu) --------------------------------------------- */

static cache_entry *cache_find(vmenc_keymgr *m, const char *alias, const char *id, uint64_t h) {
    for (cache_entry *e = m->buckets[h & (m->nbuckets - 1)]; e != NULL; e = e->hnext)
        if (e->hash == h && strcmp(e->alias, alias) == 0 && strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

static void lru_unlink(vmenc_keymgr *m, cache_entry *e) {
    if (e->prev)
        e->prev->next = e->next;
    else
        m->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        m->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(vmenc_keymgr *m, cache_entry *e) {
    e->prev = NULL;
    e->next = m->lru_head;
    if (m->lru_head)
        m->lru_head->prev = e;
    m->lru_head = e;
    if (m->lru_tail == NULL)
        m->lru_tail = e;
}

static void entry_drop_material(vmenc_keymgr *m, cache_entry *e) {
    if (e->ref != NULL) {
        ref_release_locked(e->ref);
        e->ref = NULL;
        m->stats.cached--;
    }
}

static void cache_remove(vmenc_keymgr *m, cache_entry *e) {
    cache_entry **pp = &m->buckets[e->hash & (m->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(m, e);
    entry_drop_material(m, e);
    m->count--;
    sodium_memzero(e, sizeof(*e));
    free(e);
}

static bool expired(const vmenc_keymgr *m, const cache_entry *e, uint64_t now) {
    (void)m;
    return e->expires_at != 0 && now >= e->expires_at;
}

/* cache_put records |kek| (whose check value is |kcv|) for (alias, id),
 * taking over |*ref|. */
static vmenc_status cache_put(vmenc_keymgr *m, const char *alias, const char *id, uint64_t h, kek_ref *ref,
                              const uint8_t kcv[KCV_BYTES], bool verified) {
    cache_entry *e = cache_find(m, alias, id, h);
    if (e == NULL) {
        while (m->count >= m->capacity && m->lru_tail != NULL) {
            if (m->lru_tail->ref != NULL)
                m->stats.evictions++;
            cache_remove(m, m->lru_tail);
        }
        e = calloc(1, sizeof(*e));
        if (e == NULL)
            return VMENC_E_NOMEM;
        memcpy(e->alias, alias, strlen(alias) + 1);
        memcpy(e->id, id, strlen(id) + 1);
        e->hash = h;
        size_t b = h & (m->nbuckets - 1);
        e->hnext = m->buckets[b];
        m->buckets[b] = e;
        m->count++;
    } else {
        lru_unlink(m, e);
        entry_drop_material(m, e);
    }
    lru_push_front(m, e);
    ref->refs++;
    e->ref = ref;
    m->stats.cached++;
    memcpy(e->kcv, kcv, KCV_BYTES);
    e->verified = e->verified || verified;
    e->expires_at = m->ttl_ms ? vmenc_now_monotonic_ms() + m->ttl_ms : 0;
    return VMENC_OK;
}

/* ---- pinned check values (caller holds mu) ----------------------------------------------- */

static pin_entry **pin_slot(vmenc_keymgr *m, const char *alias, const char *id, uint64_t h) {
    pin_entry **pp = &m->pins[h % PIN_BUCKETS];
    while (*pp != NULL && !((*pp)->hash == h && strcmp((*pp)->alias, alias) == 0 && strcmp((*pp)->id, id) == 0))
        pp = &(*pp)->next;
    return pp;
}

/* unpin_locked drops pins matching (alias, id or any). */
static void unpin_locked(vmenc_keymgr *m, const char *alias, const char *id) {
    for (size_t b = 0; b < PIN_BUCKETS; b++) {
        for (pin_entry **pp = &m->pins[b]; *pp != NULL;) {
            pin_entry *p = *pp;
            if (strcmp(p->alias, alias) == 0 && (id == NULL || strcmp(p->id, id) == 0)) {
                *pp = p->next;
                free(p);
                m->num_pins--;
            } else {
                pp = &p->next;
            }
        }
    }
}

/* ---- clusters ------------------------------------------------------------------ */

static cluster_slot *slot_find(vmenc_keymgr *m, const char *alias) {
    for (cluster_slot *s = m->clusters; s != NULL; s = s->next)
        if (strcmp(vmenc_kms_cluster_alias(s->c), alias) == 0)
            return s;
    return NULL;
}

static vmenc_status slot_acquire(vmenc_keymgr *m, const char *alias, cluster_slot **out) {
    VMENC_ENSURE(vmenc_kms_alias_valid(alias), VMENC_E_INVALID_ARG);
    pthread_mutex_lock(&m->mu);
    cluster_slot *s = slot_find(m, alias);
    if (s != NULL)
        s->refs++;
    pthread_mutex_unlock(&m->mu);
    VMENC_ENSURE(s != NULL, VMENC_E_NO_SUCH_PROVIDER);
    *out = s;
    return VMENC_OK;
}

static void slot_release(vmenc_keymgr *m, cluster_slot *s) {
    pthread_mutex_lock(&m->mu);
    bool gone = --s->refs == 0 && s->removed;
    pthread_mutex_unlock(&m->mu);
    if (gone) {
        vmenc_kms_cluster_free(s->c);
        free(s);
    }
}

/* ---- construction ------------------------------------------------------------------ */

vmenc_status vmenc_keymgr_new(const vmenc_keymgr_options *opts, vmenc_keymgr **out) {
    VMENC_ENSURE_REF(out);
    uint32_t cap = DEFAULT_CAPACITY;
    uint64_t ttl = 0;
    vmenc_wrap_alg ralg = VMENC_WRAP_AES256_KWP;
    uint32_t flags = 0;
    if (opts != NULL) {
        VMENC_ENSURE(opts->struct_size >= offsetof(vmenc_keymgr_options, remote_wrap_alg) + sizeof(uint32_t),
                     VMENC_E_INVALID_ARG);
        if (opts->cache_capacity)
            cap = opts->cache_capacity;
        ttl = opts->cache_ttl_ms;
        if (opts->remote_wrap_alg) {
            VMENC_ENSURE(opts->remote_wrap_alg == VMENC_WRAP_AES256_KWP ||
                             opts->remote_wrap_alg == VMENC_WRAP_AES256_GCM,
                         VMENC_E_INVALID_ARG);
            ralg = (vmenc_wrap_alg)opts->remote_wrap_alg;
        }
        /* |flags| lies in the first version's padding: only a struct_size
         * that also covers |reserved| (sizeof 32) says the caller knows it;
         * at 24 the bytes are an old caller's padding (issue 24). */
        if (opts->struct_size >= offsetof(vmenc_keymgr_options, reserved) + sizeof(uint32_t)) {
            VMENC_ENSURE(opts->reserved == 0, VMENC_E_INVALID_ARG);
            flags = opts->flags;
        }
    }
    VMENC_ENSURE((flags & ~VMENC_KEYMGR_NO_ROUNDTRIP_PROOF) == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(cap <= MAX_CAPACITY, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());
    vmenc_keymgr *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return VMENC_E_NOMEM;
    m->nbuckets = 16;
    while (m->nbuckets < 2u * cap)
        m->nbuckets *= 2;
    m->buckets = calloc(m->nbuckets, sizeof(*m->buckets));
    if (m->buckets == NULL) {
        free(m);
        return VMENC_E_NOMEM;
    }
    pthread_mutex_init(&m->mu, NULL);
    m->capacity = cap;
    m->ttl_ms = ttl;
    m->remote_alg = ralg;
    m->roundtrip_proof = (flags & VMENC_KEYMGR_NO_ROUNDTRIP_PROOF) == 0;
    randombytes_buf(m->hash_key, sizeof(m->hash_key));
    m->stats.struct_size = sizeof(m->stats);
    *out = m;
    return VMENC_OK;
}

void vmenc_keymgr_free(vmenc_keymgr *m) {
    if (m == NULL)
        return;
    while (m->lru_head != NULL)
        cache_remove(m, m->lru_head);
    for (cluster_slot *s = m->clusters, *n; s != NULL; s = n) {
        n = s->next;
        vmenc_kms_cluster_free(s->c);
        free(s);
    }
    for (ptype *t = m->types, *n; t != NULL; t = n) {
        n = t->next;
        free(t);
    }
    for (size_t b = 0; b < PIN_BUCKETS; b++) {
        for (pin_entry *p = m->pins[b], *n; p != NULL; p = n) {
            n = p->next;
            free(p);
        }
    }
    free(m->buckets);
    pthread_mutex_destroy(&m->mu);
    sodium_memzero(m, sizeof(*m));
    free(m);
}

vmenc_status vmenc_keymgr_register_provider_type(vmenc_keymgr *m, const char *name,
                                                 vmenc_kms_provider_factory factory, void *arg) {
    VMENC_ENSURE(m != NULL && factory != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(vmenc_kms_alias_valid(name), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(!vmenc_kms_builtin_type_name(name), VMENC_E_PROVIDER_EXISTS);
    ptype *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return VMENC_E_NOMEM;
    memcpy(t->name, name, strlen(name) + 1);
    t->factory = factory;
    t->arg = arg;
    pthread_mutex_lock(&m->mu);
    vmenc_status st = VMENC_OK;
    for (ptype *x = m->types; x != NULL; x = x->next)
        if (strcmp(x->name, name) == 0)
            st = VMENC_E_PROVIDER_EXISTS;
    if (st == VMENC_OK) {
        t->next = m->types;
        m->types = t;
    }
    pthread_mutex_unlock(&m->mu);
    if (st != VMENC_OK)
        free(t);
    return st;
}

vmenc_status vmenc_keymgr_new_provider(vmenc_keymgr *m, const vmenc_kms_endpoint_config *cfg,
                                       vmenc_kms_provider **out) {
    VMENC_ENSURE(m != NULL && cfg != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(cfg->struct_size >= offsetof(vmenc_kms_endpoint_config, secret_len) + sizeof(size_t),
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE_REF(cfg->type);
    vmenc_kms_provider_factory f = NULL;
    void *arg = NULL;
    pthread_mutex_lock(&m->mu);
    for (ptype *t = m->types; t != NULL; t = t->next) {
        if (strcmp(t->name, cfg->type) == 0) {
            f = t->factory;
            arg = t->arg;
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (f == NULL)
        return vmenc_kms_provider_new_builtin(cfg, out);
    vmenc_kms_provider *p = NULL;
    vmenc_status st = f(arg, cfg, &p);
    if (st != VMENC_OK)
        return (int)st > 0 ? VMENC_E_KMS_PROTOCOL : st;
    if (vmenc_kms_provider_check(p) != VMENC_OK)
        return VMENC_E_ABI_VERSION; /* the vendor's factory gave us something unusable */
    *out = p;
    return VMENC_OK;
}

vmenc_status vmenc_keymgr_take_cluster(vmenc_keymgr *m, vmenc_kms_cluster *c) {
    VMENC_ENSURE(m != NULL && c != NULL, VMENC_E_INVALID_ARG);
    cluster_slot *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return VMENC_E_NOMEM;
    s->c = c;
    pthread_mutex_lock(&m->mu);
    vmenc_status st = VMENC_OK;
    for (cluster_slot *x = m->clusters; x != NULL; x = x->next)
        if (x->c == c || strcmp(vmenc_kms_cluster_alias(x->c), vmenc_kms_cluster_alias(c)) == 0)
            st = VMENC_E_PROVIDER_EXISTS;
    if (st == VMENC_OK) {
        s->next = m->clusters;
        m->clusters = s;
    }
    pthread_mutex_unlock(&m->mu);
    if (st != VMENC_OK)
        free(s);
    return st;
}

vmenc_status vmenc_keymgr_add_cluster(vmenc_keymgr *m, const char *alias, const vmenc_kms_endpoint_config *configs,
                                      size_t num_configs, const vmenc_kms_cluster_options *opts) {
    VMENC_ENSURE(m != NULL && configs != NULL && num_configs > 0, VMENC_E_INVALID_ARG);
    vmenc_kms_cluster *c = NULL;
    VMENC_GUARD(vmenc_kms_cluster_new(alias, opts, &c));
    vmenc_status st = VMENC_OK;
    for (size_t i = 0; st == VMENC_OK && i < num_configs; i++) {
        vmenc_kms_provider *p = NULL;
        st = vmenc_keymgr_new_provider(m, &configs[i], &p);
        if (st == VMENC_OK) {
            st = vmenc_kms_cluster_take_endpoint(c, configs[i].address, p);
            if (st != VMENC_OK)
                vmenc_kms_provider_free(p);
        }
    }
    if (st == VMENC_OK)
        st = vmenc_keymgr_take_cluster(m, c);
    if (st != VMENC_OK)
        vmenc_kms_cluster_free(c);
    return st;
}

/* forget_locked drops cache entries matching (alias or any, id or any). */
static void forget_locked(vmenc_keymgr *m, const char *alias, const char *id) {
    for (cache_entry *e = m->lru_head, *n; e != NULL; e = n) {
        n = e->next;
        if ((alias == NULL || strcmp(e->alias, alias) == 0) && (id == NULL || strcmp(e->id, id) == 0))
            cache_remove(m, e);
    }
}

vmenc_status vmenc_keymgr_remove_cluster(vmenc_keymgr *m, const char *alias) {
    VMENC_ENSURE(m != NULL && vmenc_kms_alias_valid(alias), VMENC_E_INVALID_ARG);
    pthread_mutex_lock(&m->mu);
    cluster_slot **pp = &m->clusters;
    while (*pp != NULL && strcmp(vmenc_kms_cluster_alias((*pp)->c), alias) != 0)
        pp = &(*pp)->next;
    cluster_slot *s = *pp;
    bool free_now = false;
    if (s != NULL) {
        *pp = s->next;
        s->removed = true;
        free_now = s->refs == 0;
        forget_locked(m, alias, NULL);
        unpin_locked(m, alias, NULL);
    }
    pthread_mutex_unlock(&m->mu);
    VMENC_ENSURE(s != NULL, VMENC_E_NO_SUCH_PROVIDER);
    if (free_now) {
        vmenc_kms_cluster_free(s->c);
        free(s);
    }
    return VMENC_OK;
}

/* ---- fetching KEKs -------------------------------------------------------------------- */

typedef struct fetch_op {
    const char *id;
    bool have_kcv;
    uint8_t kcv[KCV_BYTES];
    uint32_t wrong;
    vmenc_kek *kek;
    uint8_t got_kcv[KCV_BYTES];
} fetch_op;

/* run_fetch gets the KEK from one endpoint and checks it against the known
 * check value; a mismatch is the endpoint's fault (it fails over), and the
 * bytes are wiped at once. */
static vmenc_status run_fetch(vmenc_kms_provider *p, uint32_t t, void *varg) {
    fetch_op *a = varg;
    vmenc_kek *k = NULL;
    VMENC_GUARD(vmenc_kms_provider_get_kek(p, a->id, t, &k));
    uint8_t kcv[KCV_BYTES];
    kcv_of(k, kcv);
    if (a->have_kcv && !vmenc_ct_equal(kcv, a->kcv, KCV_BYTES)) {
        vmenc_kek_free(k);
        a->wrong++;
        return VMENC_E_KMS_WRONG_KEY;
    }
    memcpy(a->got_kcv, kcv, KCV_BYTES);
    a->kek = k;
    return VMENC_OK;
}

static bool is_remote_status(vmenc_status st) {
    return st == VMENC_E_UNIMPLEMENTED || st == VMENC_E_UNSUPPORTED;
}

/* acquire_kek returns a reference to KEK (alias, id): cached, or fetched
 * through |slot|'s cluster and cached. VMENC_E_UNSUPPORTED means the
 * provider keeps its KEKs (use it remotely). |verified_hint| marks a KEK
 * fetched right after its creation. */
static vmenc_status acquire_kek(vmenc_keymgr *m, cluster_slot *slot, const char *alias, const char *id,
                                uint32_t timeout_ms, bool verified_hint, kek_ref **out) {
    VMENC_ENSURE(id_valid(id), VMENC_E_INVALID_ARG);
    uint64_t h = hash_of(m, alias, id);
    fetch_op op = {.id = id};
    pthread_mutex_lock(&m->mu);
    if (slot->mode == MODE_REMOTE) {
        pthread_mutex_unlock(&m->mu);
        return VMENC_E_UNSUPPORTED;
    }
    cache_entry *e = cache_find(m, alias, id, h);
    if (e != NULL && e->ref != NULL && expired(m, e, vmenc_now_monotonic_ms())) {
        entry_drop_material(m, e); /* the check value stays, to vet the refetch */
        m->stats.expirations++;
    }
    if (e != NULL && e->ref != NULL) {
        e->ref->refs++;
        *out = e->ref;
        lru_unlink(m, e);
        lru_push_front(m, e);
        m->stats.hits++;
        pthread_mutex_unlock(&m->mu);
        return VMENC_OK;
    }
    pin_entry *pin = *pin_slot(m, alias, id, h);
    if (pin != NULL) {
        op.have_kcv = true;
        memcpy(op.kcv, pin->kcv, KCV_BYTES);
        verified_hint = true;
    } else if (e != NULL) {
        op.have_kcv = true;
        memcpy(op.kcv, e->kcv, KCV_BYTES);
    }
    m->stats.misses++;
    pthread_mutex_unlock(&m->mu);

    uint32_t failovers = 0;
    vmenc_status st = vmenc_kms_cluster_run(slot->c, run_fetch, &op, timeout_ms, NULL, &failovers);
    kek_ref *ref = NULL;
    if (st == VMENC_OK) {
        ref = calloc(1, sizeof(*ref));
        if (ref == NULL) {
            vmenc_kek_free(op.kek);
            st = VMENC_E_NOMEM;
        } else {
            ref->kek = op.kek;
            ref->refs = 1; /* the caller's */
        }
    }
    pthread_mutex_lock(&m->mu);
    m->stats.failovers += failovers;
    m->stats.wrong_keys += op.wrong;
    if (is_remote_status(st)) {
        slot->mode = MODE_REMOTE;
        st = VMENC_E_UNSUPPORTED;
    } else if (st == VMENC_OK) {
        slot->mode = MODE_LOCAL;
        /* Another thread may have fetched the same KEK meanwhile: the two
         * must agree, or neither is trusted. */
        cache_entry *now = cache_find(m, alias, id, h);
        const pin_entry *pin_now = *pin_slot(m, alias, id, h); /* may have been pinned meanwhile */
        if (pin_now != NULL && !vmenc_ct_equal(pin_now->kcv, op.got_kcv, KCV_BYTES)) {
            m->stats.wrong_keys++;
            ref_release_locked(ref);
            ref = NULL;
            st = VMENC_E_KMS_WRONG_KEY;
        } else if (now != NULL && !vmenc_ct_equal(now->kcv, op.got_kcv, KCV_BYTES)) {
            m->stats.wrong_keys++;
            cache_remove(m, now);
            ref_release_locked(ref);
            ref = NULL;
            st = VMENC_E_KMS_WRONG_KEY;
        } else if (cache_put(m, alias, id, h, ref, op.got_kcv, verified_hint) != VMENC_OK) {
            /* Not cached; the caller still gets its reference. */
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (st != VMENC_OK)
        return st;
    *out = ref;
    return VMENC_OK;
}

/* note_unwrap_result marks a cached KEK verified after a record opened with
 * it, or drops an unverified one that failed to open a record. */
static void note_unwrap_result(vmenc_keymgr *m, const char *alias, const char *id, const kek_ref *ref,
                               vmenc_status st) {
    pthread_mutex_lock(&m->mu);
    cache_entry *e = cache_find(m, alias, id, hash_of(m, alias, id));
    if (e != NULL && e->ref == ref) {
        if (st == VMENC_OK)
            e->verified = true;
        else if (st == VMENC_E_AUTH && !e->verified)
            cache_remove(m, e);
    }
    pthread_mutex_unlock(&m->mu);
}

static vmenc_status count_error(vmenc_keymgr *m, vmenc_status st) {
    if (st != VMENC_OK) {
        pthread_mutex_lock(&m->mu);
        m->stats.errors++;
        pthread_mutex_unlock(&m->mu);
    }
    return st;
}

/* ---- remote wrap / unwrap through the cluster --------------------------------------- */

typedef struct remote_ctx {
    vmenc_keymgr *m;
    cluster_slot *slot;
    const char *id;
    uint32_t timeout_ms;
} remote_ctx;

typedef struct remote_op {
    bool unwrap;
    const char *id;
    vmenc_kms_wrap_params params;
    const uint8_t *in;
    size_t in_len;
    uint8_t *out;
    size_t out_cap;
    size_t *out_len;
} remote_op;

static vmenc_status run_remote(vmenc_kms_provider *p, uint32_t t, void *varg) {
    remote_op *a = varg;
    if (a->unwrap)
        return vmenc_kms_provider_unwrap(p, a->id, &a->params, a->in, a->in_len, t, a->out, a->out_cap, a->out_len);
    return vmenc_kms_provider_wrap(p, a->id, &a->params, a->in, a->in_len, t, a->out, a->out_cap, a->out_len);
}

static vmenc_status remote_call(remote_ctx *rc, bool unwrap, vmenc_wrap_alg alg, const uint8_t *nonce,
                                size_t nonce_len, const uint8_t *aad, size_t aad_len, const uint8_t *in,
                                size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len) {
    remote_op op = {.unwrap = unwrap, .id = rc->id, .in = in, .in_len = in_len, .out = out, .out_cap = out_cap,
                    .out_len = out_len};
    op.params.struct_size = sizeof(op.params);
    if (alg == VMENC_WRAP_AES256_GCM) {
        op.params.mech = VMENC_KMS_WRAP_AES_GCM;
        op.params.iv = nonce;
        op.params.iv_len = nonce_len;
        op.params.aad = aad;
        op.params.aad_len = aad_len;
    } else if (alg == VMENC_WRAP_AES256_KWP) {
        op.params.mech = VMENC_KMS_WRAP_AES_KWP;
    } else {
        return VMENC_E_BAD_ALGORITHM;
    }
    uint32_t failovers = 0;
    vmenc_status st = vmenc_kms_cluster_run(rc->slot->c, run_remote, &op, rc->timeout_ms, NULL, &failovers);
    pthread_mutex_lock(&rc->m->mu);
    rc->m->stats.failovers += failovers;
    rc->m->stats.remote_ops++;
    pthread_mutex_unlock(&rc->m->mu);
    return st;
}

static vmenc_status remote_seal(void *arg, vmenc_wrap_alg alg, const uint8_t *nonce, size_t nonce_len,
                                const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len, uint8_t *out,
                                size_t out_cap, size_t *out_len) {
    return remote_call(arg, false, alg, nonce, nonce_len, aad, aad_len, in, in_len, out, out_cap, out_len);
}

static vmenc_status remote_open(void *arg, vmenc_wrap_alg alg, const uint8_t *nonce, size_t nonce_len,
                                const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len, uint8_t *out,
                                size_t out_cap, size_t *out_len) {
    return remote_call(arg, true, alg, nonce, nonce_len, aad, aad_len, in, in_len, out, out_cap, out_len);
}

/* ---- high-level calls ------------------------------------------------------------------ */

typedef struct create_op {
    const char *name;
    char *out_id;
    size_t cap;
} create_op;

static vmenc_status run_create(vmenc_kms_provider *p, uint32_t t, void *varg) {
    create_op *a = varg;
    return vmenc_kms_provider_create_kek(p, a->name, t, a->out_id, a->cap);
}

vmenc_status vmenc_keymgr_create_kek(vmenc_keymgr *m, const char *alias, const char *name, uint32_t timeout_ms,
                                     char *out_id, size_t out_id_cap) {
    VMENC_ENSURE(m != NULL && out_id != NULL, VMENC_E_INVALID_ARG);
    cluster_slot *slot = NULL;
    VMENC_GUARD(count_error(m, slot_acquire(m, alias, &slot)));
    uint64_t start = vmenc_now_monotonic_ms();
    char id[VMENC_KMS_KEY_ID_CAP];
    create_op op = {name, id, sizeof(id)};
    uint32_t failovers = 0;
    vmenc_status st = vmenc_kms_cluster_run(slot->c, run_create, &op, timeout_ms, NULL, &failovers);
    pthread_mutex_lock(&m->mu);
    m->stats.failovers += failovers;
    pthread_mutex_unlock(&m->mu);
    if (st == VMENC_OK && strlen(id) >= out_id_cap)
        st = VMENC_E_BUFFER_TOO_SMALL;
    if (st == VMENC_OK) {
        /* Fetch it back (where the provider lets KEKs out) to learn its check
         * value and have it cached. A failure here does not undo the create:
         * the key exists, and will be fetched when first used. */
        uint64_t spent = vmenc_now_monotonic_ms() - start;
        uint32_t left = spent >= timeout_ms ? 0 : (uint32_t)(timeout_ms - spent);
        kek_ref *ref = NULL;
        if (acquire_kek(m, slot, alias, id, left, true, &ref) == VMENC_OK)
            ref_release(m, ref);
        memcpy(out_id, id, strlen(id) + 1);
    }
    slot_release(m, slot);
    return count_error(m, st);
}

vmenc_status vmenc_keymgr_get_kek(vmenc_keymgr *m, const char *alias, const char *key_id, uint32_t timeout_ms,
                                  vmenc_kek **out) {
    VMENC_ENSURE(m != NULL && out != NULL, VMENC_E_INVALID_ARG);
    cluster_slot *slot = NULL;
    VMENC_GUARD(count_error(m, slot_acquire(m, alias, &slot)));
    kek_ref *ref = NULL;
    vmenc_status st = acquire_kek(m, slot, alias, key_id, timeout_ms, false, &ref);
    if (st == VMENC_OK) {
        st = vmenc_kek_new_from_bytes(vmenc_kek_bytes_internal(ref->kek), VMENC_KEK_BYTES, out);
        ref_release(m, ref);
    }
    slot_release(m, slot);
    return count_error(m, st);
}

/* ---- round-trip proof ------------------------------------------------------------- */

static uint32_t time_left(uint64_t start, uint32_t timeout_ms) {
    uint64_t spent = vmenc_now_monotonic_ms() - start;
    return spent >= timeout_ms ? 0 : (uint32_t)(timeout_ms - spent);
}

/* roundtrip_failed records a failed proof: the KEK the wrap used is not the
 * one the KMS serves now, so unless a record has already opened with it
 * (then it is the fresh answer that is suspect) it leaves the cache. */
static vmenc_status roundtrip_failed(vmenc_keymgr *m, const char *alias, const char *id) {
    pthread_mutex_lock(&m->mu);
    m->stats.roundtrip_failures++;
    cache_entry *e = cache_find(m, alias, id, hash_of(m, alias, id));
    if (e != NULL && !e->verified)
        cache_remove(m, e);
    pthread_mutex_unlock(&m->mu);
    return VMENC_E_ROUNDTRIP;
}

/* prove_local opens |wk| with the KEK fetched afresh through the cluster
 * (not from the cache, and without vetting it against the cached check
 * value: the question is what the KMS serves now) and compares the DEK. A
 * pinned check value is the operator's word on what the key is, so the
 * fresh fetch is vetted against it: an endpoint serving other bytes fails
 * over, as every other fetch would, instead of failing the proof. */
static vmenc_status prove_local(vmenc_keymgr *m, cluster_slot *slot, const char *alias, const char *id,
                                const vmenc_dek *dek, const vmenc_wrap_context *ctx, const vmenc_wrapped_key *wk,
                                uint32_t timeout_ms) {
    fetch_op op = {.id = id};
    pthread_mutex_lock(&m->mu);
    const pin_entry *pin = *pin_slot(m, alias, id, hash_of(m, alias, id));
    if (pin != NULL) {
        op.have_kcv = true;
        memcpy(op.kcv, pin->kcv, KCV_BYTES);
    }
    pthread_mutex_unlock(&m->mu);
    uint32_t failovers = 0;
    vmenc_status st = vmenc_kms_cluster_run(slot->c, run_fetch, &op, timeout_ms, NULL, &failovers);
    pthread_mutex_lock(&m->mu);
    m->stats.failovers += failovers;
    pthread_mutex_unlock(&m->mu);
    if (st == VMENC_E_KMS_WRONG_KEY)
        return roundtrip_failed(m, alias, id);
    VMENC_GUARD(st);
    vmenc_dek *back = NULL;
    st = vmenc_wrapped_key_unwrap(wk, op.kek, ctx, &back);
    vmenc_kek_free(op.kek);
    if (st == VMENC_OK)
        st = vmenc_dek_equal(dek, back) == VMENC_OK ? VMENC_OK : VMENC_E_ROUNDTRIP;
    else if (st == VMENC_E_AUTH)
        st = VMENC_E_ROUNDTRIP;
    vmenc_dek_free(back);
    return st == VMENC_E_ROUNDTRIP ? roundtrip_failed(m, alias, id) : st;
}

/* prove_remote has the KMS unwrap |wk| and compares the DEK. */
static vmenc_status prove_remote(vmenc_keymgr *m, remote_ctx *rc, const vmenc_dek *dek,
                                 const vmenc_wrap_context *ctx, const vmenc_wrapped_key *wk) {
    vmenc_dek *back = NULL;
    vmenc_status st = vmenc_wrapped_key_open_with(wk, ctx, remote_open, rc, &back);
    if (st == VMENC_OK)
        st = vmenc_dek_equal(dek, back) == VMENC_OK ? VMENC_OK : VMENC_E_ROUNDTRIP;
    else if (st == VMENC_E_AUTH)
        st = VMENC_E_ROUNDTRIP;
    vmenc_dek_free(back);
    if (st == VMENC_E_ROUNDTRIP) {
        pthread_mutex_lock(&m->mu);
        m->stats.roundtrip_failures++;
        pthread_mutex_unlock(&m->mu);
    }
    return st;
}

vmenc_status vmenc_keymgr_wrap_dek(vmenc_keymgr *m, const char *alias, const char *kek_id, const vmenc_dek *dek,
                                   const vmenc_wrap_context *ctx, uint32_t timeout_ms, vmenc_wrapped_key **out) {
    VMENC_ENSURE(m != NULL && dek != NULL && out != NULL, VMENC_E_INVALID_ARG);
    cluster_slot *slot = NULL;
    VMENC_GUARD(count_error(m, slot_acquire(m, alias, &slot)));
    uint64_t start = vmenc_now_monotonic_ms();
    kek_ref *ref = NULL;
    vmenc_wrapped_key *wk = NULL;
    vmenc_status st = acquire_kek(m, slot, alias, kek_id, timeout_ms, false, &ref);
    if (st == VMENC_OK) {
        st = vmenc_dek_wrap(dek, ref->kek, VMENC_WRAP_AES256_GCM, alias, kek_id, ctx, &wk);
        ref_release(m, ref);
        if (st == VMENC_OK && m->roundtrip_proof)
            st = prove_local(m, slot, alias, kek_id, dek, ctx, wk, time_left(start, timeout_ms));
    } else if (st == VMENC_E_UNSUPPORTED) {
        remote_ctx rc = {m, slot, kek_id, timeout_ms};
        st = vmenc_wrapped_key_seal_with(m->remote_alg, alias, kek_id, ctx, dek, remote_seal, &rc, &wk);
        if (st == VMENC_OK && m->roundtrip_proof) {
            rc.timeout_ms = time_left(start, timeout_ms);
            st = prove_remote(m, &rc, dek, ctx, wk);
        }
    }
    if (st == VMENC_OK) {
        *out = wk;
    } else {
        vmenc_wrapped_key_free(wk); /* unproven: never handed out */
    }
    slot_release(m, slot);
    return count_error(m, st);
}

vmenc_status vmenc_keymgr_unwrap_dek(vmenc_keymgr *m, const vmenc_wrapped_key *wk, const vmenc_wrap_context *ctx,
                                     uint32_t timeout_ms, vmenc_dek **out) {
    VMENC_ENSURE(m != NULL && wk != NULL && out != NULL, VMENC_E_INVALID_ARG);
    const char *alias = vmenc_wrapped_key_provider_alias(wk);
    const char *id = vmenc_wrapped_key_kek_id(wk);
    VMENC_ENSURE(alias != NULL && id != NULL, VMENC_E_INVALID_ARG);
    cluster_slot *slot = NULL;
    VMENC_GUARD(count_error(m, slot_acquire(m, alias, &slot)));
    kek_ref *ref = NULL;
    vmenc_status st = acquire_kek(m, slot, alias, id, timeout_ms, false, &ref);
    if (st == VMENC_OK) {
        st = vmenc_wrapped_key_unwrap(wk, ref->kek, ctx, out);
        note_unwrap_result(m, alias, id, ref, st);
        ref_release(m, ref);
    } else if (st == VMENC_E_UNSUPPORTED) {
        remote_ctx rc = {m, slot, id, timeout_ms};
        st = vmenc_wrapped_key_open_with(wk, ctx, remote_open, &rc, out);
    } else if (st == VMENC_E_KMS_WRONG_KEY) {
        /* Every endpoint served bytes that are not this KEK: to the caller
         * that is an unwrap that cannot authenticate. */
        st = VMENC_E_AUTH;
    }
    slot_release(m, slot);
    return count_error(m, st);
}

static vmenc_status revoke_or_destroy(vmenc_keymgr *m, const char *alias, const char *key_id, uint32_t timeout_ms,
                                      bool destroy) {
    VMENC_ENSURE(m != NULL && id_valid(key_id), VMENC_E_INVALID_ARG);
    cluster_slot *slot = NULL;
    VMENC_GUARD(count_error(m, slot_acquire(m, alias, &slot)));
    /* Stop using it here first, whatever the KMS says. */
    pthread_mutex_lock(&m->mu);
    forget_locked(m, alias, key_id);
    if (destroy)
        unpin_locked(m, alias, key_id);
    pthread_mutex_unlock(&m->mu);
    vmenc_status st = destroy ? vmenc_kms_cluster_destroy_kek(slot->c, key_id, timeout_ms, NULL)
                              : vmenc_kms_cluster_revoke_kek(slot->c, key_id, timeout_ms, NULL);
    slot_release(m, slot);
    return count_error(m, st);
}

vmenc_status vmenc_keymgr_revoke_kek(vmenc_keymgr *m, const char *alias, const char *key_id, uint32_t timeout_ms) {
    return revoke_or_destroy(m, alias, key_id, timeout_ms, false);
}

vmenc_status vmenc_keymgr_destroy_kek(vmenc_keymgr *m, const char *alias, const char *key_id, uint32_t timeout_ms) {
    return revoke_or_destroy(m, alias, key_id, timeout_ms, true);
}

vmenc_status vmenc_keymgr_forget(vmenc_keymgr *m, const char *alias, const char *key_id) {
    VMENC_ENSURE_REF(m);
    VMENC_ENSURE(alias != NULL || key_id == NULL, VMENC_E_INVALID_ARG);
    pthread_mutex_lock(&m->mu);
    forget_locked(m, alias, key_id);
    pthread_mutex_unlock(&m->mu);
    return VMENC_OK;
}

vmenc_status vmenc_keymgr_check_health(vmenc_keymgr *m, const char *alias, uint32_t timeout_ms,
                                       size_t *out_num_healthy) {
    VMENC_ENSURE_REF(m);
    cluster_slot *slot = NULL;
    VMENC_GUARD(slot_acquire(m, alias, &slot));
    vmenc_status st = vmenc_kms_cluster_check_health(slot->c, timeout_ms, out_num_healthy);
    slot_release(m, slot);
    return st;
}

vmenc_status vmenc_keymgr_kek_check_value(vmenc_keymgr *m, const char *alias, const char *key_id, uint8_t *out,
                                          size_t out_cap) {
    VMENC_ENSURE(m != NULL && out != NULL && vmenc_kms_alias_valid(alias) && id_valid(key_id), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out_cap >= KCV_BYTES, VMENC_E_BUFFER_TOO_SMALL);
    uint64_t h = hash_of(m, alias, key_id);
    pthread_mutex_lock(&m->mu);
    const pin_entry *pin = *pin_slot(m, alias, key_id, h);
    const cache_entry *e = cache_find(m, alias, key_id, h);
    vmenc_status st = VMENC_OK;
    if (pin != NULL)
        memcpy(out, pin->kcv, KCV_BYTES);
    else if (e != NULL)
        memcpy(out, e->kcv, KCV_BYTES);
    else
        st = VMENC_E_KEY_NOT_FOUND;
    pthread_mutex_unlock(&m->mu);
    return st;
}

vmenc_status vmenc_keymgr_pin_check_value(vmenc_keymgr *m, const char *alias, const char *key_id, const uint8_t *kcv,
                                          size_t kcv_len) {
    VMENC_ENSURE(m != NULL && kcv != NULL && kcv_len == KCV_BYTES, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(vmenc_kms_alias_valid(alias) && id_valid(key_id), VMENC_E_INVALID_ARG);
    uint64_t h = hash_of(m, alias, key_id);
    pthread_mutex_lock(&m->mu);
    vmenc_status st = VMENC_OK;
    if (slot_find(m, alias) == NULL)
        st = VMENC_E_NO_SUCH_PROVIDER;
    pin_entry **pp = pin_slot(m, alias, key_id, h);
    if (st == VMENC_OK && *pp == NULL) {
        if (m->num_pins >= MAX_PINS) {
            st = VMENC_E_LIMIT;
        } else if ((*pp = calloc(1, sizeof(**pp))) == NULL) {
            st = VMENC_E_NOMEM;
        } else {
            memcpy((*pp)->alias, alias, strlen(alias) + 1);
            memcpy((*pp)->id, key_id, strlen(key_id) + 1);
            (*pp)->hash = h;
            m->num_pins++;
        }
    }
    if (st == VMENC_OK) {
        memcpy((*pp)->kcv, kcv, KCV_BYTES);
        cache_entry *e = cache_find(m, alias, key_id, h);
        if (e != NULL && !vmenc_ct_equal(e->kcv, kcv, KCV_BYTES)) {
            m->stats.wrong_keys++; /* what we hold is not the key the pin names */
            cache_remove(m, e);
        }
    }
    pthread_mutex_unlock(&m->mu);
    return st;
}

vmenc_status vmenc_keymgr_get_stats(vmenc_keymgr *m, vmenc_keymgr_stats *out) {
    VMENC_ENSURE(m != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= offsetof(vmenc_keymgr_stats, cached) + sizeof(uint64_t), VMENC_E_INVALID_ARG);
    uint32_t sz = out->struct_size;
    pthread_mutex_lock(&m->mu);
    vmenc_keymgr_stats s = m->stats;
    pthread_mutex_unlock(&m->mu);
    s.struct_size = sz < sizeof(s) ? sz : (uint32_t)sizeof(s);
    memcpy(out, &s, s.struct_size);
    out->struct_size = sz;
    return VMENC_OK;
}
