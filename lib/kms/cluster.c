/*
 * lib/kms/cluster.c - KMS clusters: an ordered list of replicating
 * endpoints with failover, per-endpoint back-off and a per-call deadline
 * (the rules are in kms.h).
 *
 * State (failure counts, back-off deadlines, statistics) lives under one
 * mutex; the mutex is never held while a provider runs, so a slow endpoint
 * does not stall other threads' calls to healthy ones. Endpoints are only
 * ever appended and live as long as the cluster, so a call may keep a
 * provider pointer after dropping the lock.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/kms_internal.h"

#define DEFAULT_BACKOFF_INITIAL_MS 1000u
#define DEFAULT_BACKOFF_MAX_MS 60000u
#define MAX_ENDPOINTS 64u

typedef struct endpoint {
    char *name;
    vmenc_kms_provider *p;
    uint32_t consecutive_failures;
    uint64_t backoff_until_ms;
    vmenc_status last_status;
    uint64_t num_calls;
    uint64_t num_failures;
} endpoint;

struct vmenc_kms_cluster {
    char alias[VMENC_PROVIDER_ALIAS_MAX + 1];
    pthread_mutex_t mu;
    endpoint **eps;
    size_t num;
    uint32_t backoff_initial_ms;
    uint32_t backoff_max_ms;
    uint32_t flags;
    uint64_t failovers;
    vmenc_kms_clock_fn clock;
    void *clock_arg;
};

static uint64_t now_ms(const vmenc_kms_cluster *c) {
    return c->clock != NULL ? c->clock(c->clock_arg) : vmenc_now_monotonic_ms();
}

bool vmenc_kms_alias_valid(const char *alias) {
    if (alias == NULL)
        return false;
    size_t n = strnlen(alias, VMENC_PROVIDER_ALIAS_MAX + 1);
    if (n == 0 || n > VMENC_PROVIDER_ALIAS_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)alias[i] < 0x21 || (unsigned char)alias[i] > 0x7e)
            return false;
    return true;
}

vmenc_status vmenc_kms_cluster_new(const char *alias, const vmenc_kms_cluster_options *opts,
                                   vmenc_kms_cluster **out) {
    VMENC_ENSURE(vmenc_kms_alias_valid(alias), VMENC_E_INVALID_ARG);
    VMENC_ENSURE_REF(out);
    uint32_t initial = DEFAULT_BACKOFF_INITIAL_MS, max = DEFAULT_BACKOFF_MAX_MS, flags = 0;
    if (opts != NULL) {
        VMENC_ENSURE(opts->struct_size >= offsetof(vmenc_kms_cluster_options, flags) + sizeof(uint32_t),
                     VMENC_E_INVALID_ARG);
        VMENC_ENSURE((opts->flags & ~VMENC_KMS_CLUSTER_NO_JITTER) == 0, VMENC_E_INVALID_ARG);
        if (opts->backoff_initial_ms)
            initial = opts->backoff_initial_ms;
        if (opts->backoff_max_ms)
            max = opts->backoff_max_ms;
        flags = opts->flags;
    }
    VMENC_ENSURE(initial <= max, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());
    vmenc_kms_cluster *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return VMENC_E_NOMEM;
    memcpy(c->alias, alias, strlen(alias) + 1);
    pthread_mutex_init(&c->mu, NULL);
    c->backoff_initial_ms = initial;
    c->backoff_max_ms = max;
    c->flags = flags;
    *out = c;
    return VMENC_OK;
}

vmenc_status vmenc_kms_cluster_take_endpoint(vmenc_kms_cluster *c, const char *name, vmenc_kms_provider *provider) {
    VMENC_ENSURE_REF(c);
    VMENC_GUARD(vmenc_kms_provider_check(provider));
    const char *type = provider->ops->type_name ? provider->ops->type_name : "";
    pthread_mutex_lock(&c->mu);
    vmenc_status st = VMENC_OK;
    if (c->num >= MAX_ENDPOINTS)
        st = VMENC_E_LIMIT;
    for (size_t i = 0; st == VMENC_OK && i < c->num; i++) {
        const char *t = c->eps[i]->p->ops->type_name ? c->eps[i]->p->ops->type_name : "";
        if (strcmp(t, type) != 0)
            st = VMENC_E_INVALID_ARG; /* one provider type per cluster */
        if (c->eps[i]->p == provider)
            st = VMENC_E_INVALID_ARG;
    }
    endpoint *e = NULL;
    endpoint **grown = NULL;
    if (st == VMENC_OK) {
        e = calloc(1, sizeof(*e));
        grown = realloc(c->eps, (c->num + 1) * sizeof(*grown));
        if (grown != NULL)
            c->eps = grown;
        char buf[32];
        snprintf(buf, sizeof(buf), "endpoint-%zu", c->num);
        if (e != NULL)
            e->name = strdup(name != NULL ? name : buf);
        if (e == NULL || grown == NULL || e->name == NULL)
            st = VMENC_E_NOMEM;
    }
    if (st == VMENC_OK) {
        e->p = provider;
        e->last_status = VMENC_OK;
        c->eps[c->num++] = e;
    } else if (e != NULL) {
        free(e->name);
        free(e);
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

vmenc_status vmenc_kms_cluster_add_endpoint_config(vmenc_kms_cluster *c, const vmenc_kms_endpoint_config *cfg) {
    VMENC_ENSURE_REF(c);
    vmenc_kms_provider *p = NULL;
    VMENC_GUARD(vmenc_kms_provider_new_builtin(cfg, &p));
    vmenc_status st = vmenc_kms_cluster_take_endpoint(c, cfg->address, p);
    if (st != VMENC_OK)
        vmenc_kms_provider_free(p);
    return st;
}

void vmenc_kms_cluster_free(vmenc_kms_cluster *c) {
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->num; i++) {
        vmenc_kms_provider_free(c->eps[i]->p);
        free(c->eps[i]->name);
        free(c->eps[i]);
    }
    free(c->eps);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

const char *vmenc_kms_cluster_alias(const vmenc_kms_cluster *c) { return c != NULL ? c->alias : NULL; }

size_t vmenc_kms_cluster_num_endpoints(const vmenc_kms_cluster *c) {
    if (c == NULL)
        return 0;
    pthread_mutex_lock((pthread_mutex_t *)&c->mu);
    size_t n = c->num;
    pthread_mutex_unlock((pthread_mutex_t *)&c->mu);
    return n;
}

const char *vmenc_kms_cluster_type_name(vmenc_kms_cluster *c) {
    pthread_mutex_lock(&c->mu);
    const char *t = c->num > 0 ? c->eps[0]->p->ops->type_name : NULL;
    pthread_mutex_unlock(&c->mu);
    return t;
}

vmenc_status vmenc_kms_cluster_endpoint_info(vmenc_kms_cluster *c, size_t index, vmenc_kms_endpoint_info *out) {
    VMENC_ENSURE(c != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= offsetof(vmenc_kms_endpoint_info, num_failures) + sizeof(uint64_t),
                 VMENC_E_INVALID_ARG);
    pthread_mutex_lock(&c->mu);
    vmenc_status st = VMENC_E_INVALID_ARG;
    if (index < c->num) {
        const endpoint *e = c->eps[index];
        uint64_t now = now_ms(c);
        out->name = e->name;
        out->type_name = e->p->ops->type_name;
        out->consecutive_failures = e->consecutive_failures;
        out->backoff_remaining_ms = e->backoff_until_ms > now ? e->backoff_until_ms - now : 0;
        out->last_status = (int32_t)e->last_status;
        out->num_calls = e->num_calls;
        out->num_failures = e->num_failures;
        st = VMENC_OK;
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

uint64_t vmenc_kms_cluster_num_failovers(vmenc_kms_cluster *c) {
    if (c == NULL)
        return 0;
    pthread_mutex_lock(&c->mu);
    uint64_t n = c->failovers;
    pthread_mutex_unlock(&c->mu);
    return n;
}

void vmenc_kms_cluster_set_clock(vmenc_kms_cluster *c, vmenc_kms_clock_fn fn, void *arg) {
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->clock = fn;
    c->clock_arg = arg;
    pthread_mutex_unlock(&c->mu);
}

/* ---- the failover engine --------------------------------------------------- */

static uint64_t backoff_for(const vmenc_kms_cluster *c, uint32_t failures) {
    uint32_t shift = failures > 0 ? failures - 1 : 0;
    if (shift > 30)
        shift = 30;
    uint64_t d = (uint64_t)c->backoff_initial_ms << shift;
    if (d > c->backoff_max_ms)
        d = c->backoff_max_ms;
    if (!(c->flags & VMENC_KMS_CLUSTER_NO_JITTER) && d >= 4) {
        /* Up to a quarter shorter, so hosts that failed together do not
         * all come back at the same instant. */
        d -= randombytes_uniform((uint32_t)(d / 4 > UINT32_MAX ? UINT32_MAX : d / 4) + 1);
    }
    return d;
}

/* record updates endpoint |e| after a call that returned |st|. Caller
 * holds c->mu. */
static void record(vmenc_kms_cluster *c, endpoint *e, vmenc_status st, uint64_t now) {
    e->num_calls++;
    e->last_status = st;
    if (vmenc_kms_status_fails_over(st)) {
        e->num_failures++;
        if (e->consecutive_failures < UINT32_MAX)
            e->consecutive_failures++;
        e->backoff_until_ms = now + backoff_for(c, e->consecutive_failures);
    } else {
        /* Any answer (a definite "no" included) shows the endpoint is up. */
        e->consecutive_failures = 0;
        e->backoff_until_ms = 0;
    }
}

/* plan orders the endpoints to try: those not in back-off in their
 * configured order, then those in back-off, soonest to recover first. */
static size_t plan(vmenc_kms_cluster *c, uint64_t now, size_t *order) {
    size_t n = 0;
    for (size_t i = 0; i < c->num; i++)
        if (c->eps[i]->backoff_until_ms <= now)
            order[n++] = i;
    size_t first_backoff = n;
    for (size_t i = 0; i < c->num; i++)
        if (c->eps[i]->backoff_until_ms > now)
            order[n++] = i;
    /* insertion sort by recovery time (few endpoints) */
    for (size_t i = first_backoff + 1; i < n; i++) {
        size_t v = order[i], j = i;
        while (j > first_backoff && c->eps[order[j - 1]]->backoff_until_ms > c->eps[v]->backoff_until_ms) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
    return n;
}

vmenc_status vmenc_kms_cluster_run(vmenc_kms_cluster *c, vmenc_kms_cluster_op op, void *arg, uint32_t timeout_ms,
                                   size_t *out_endpoint, uint32_t *out_failovers) {
    VMENC_ENSURE(c != NULL && op != NULL, VMENC_E_INVALID_ARG);
    size_t order[MAX_ENDPOINTS];
    vmenc_kms_provider *prov[MAX_ENDPOINTS];
    pthread_mutex_lock(&c->mu);
    uint64_t start = now_ms(c);
    size_t n = plan(c, start, order);
    for (size_t i = 0; i < n; i++)
        prov[i] = c->eps[order[i]]->p;
    pthread_mutex_unlock(&c->mu);
    if (out_failovers != NULL)
        *out_failovers = 0;
    if (n == 0)
        return VMENC_E_KMS_UNAVAILABLE;

    uint64_t deadline = start + timeout_ms;
    vmenc_status first_err = VMENC_OK;
    bool all_same = true;
    uint32_t failovers = 0;
    size_t tried = 0;
    for (size_t k = 0; k < n; k++) {
        uint64_t now = now_ms(c);
        if (k > 0 && now >= deadline)
            break; /* no time left for another endpoint */
        uint32_t left = now >= deadline ? 0 : (uint32_t)(deadline - now);
        vmenc_status st = op(prov[k], left, arg);
        uint64_t after = now_ms(c);
        tried++;
        pthread_mutex_lock(&c->mu);
        record(c, c->eps[order[k]], st, after);
        bool next = vmenc_kms_status_fails_over(st) && k + 1 < n && after < deadline;
        if (next) {
            c->failovers++;
            failovers++;
        }
        pthread_mutex_unlock(&c->mu);
        if (out_failovers != NULL)
            *out_failovers = failovers;
        if (!vmenc_kms_status_fails_over(st)) {
            if (st == VMENC_OK && out_endpoint != NULL)
                *out_endpoint = order[k];
            return st;
        }
        if (first_err == VMENC_OK)
            first_err = st;
        else if (st != first_err)
            all_same = false;
    }
    if (tried < n)
        return VMENC_E_KMS_TIMEOUT; /* the deadline cut the failover short */
    if (all_same)
        return first_err; /* e.g. every endpoint timed out, or served a wrong key */
    return VMENC_E_KMS_UNAVAILABLE;
}

/* ---- operations ---------------------------------------------------------------- */

typedef struct create_op {
    const char *name;
    char *out_id;
    size_t out_id_cap;
} create_op;

static vmenc_status run_create(vmenc_kms_provider *p, uint32_t t, void *varg) {
    create_op *a = varg;
    return vmenc_kms_provider_create_kek(p, a->name, t, a->out_id, a->out_id_cap);
}

vmenc_status vmenc_kms_cluster_create_kek(vmenc_kms_cluster *c, const char *name, uint32_t timeout_ms, char *out_id,
                                          size_t out_id_cap, size_t *out_endpoint) {
    VMENC_ENSURE(c != NULL && out_id != NULL, VMENC_E_INVALID_ARG);
    create_op a = {name, out_id, out_id_cap};
    return vmenc_kms_cluster_run(c, run_create, &a, timeout_ms, out_endpoint, NULL);
}

typedef struct get_op {
    const char *key_id;
    vmenc_kek **out;
} get_op;

static vmenc_status run_get(vmenc_kms_provider *p, uint32_t t, void *varg) {
    get_op *a = varg;
    return vmenc_kms_provider_get_kek(p, a->key_id, t, a->out);
}

vmenc_status vmenc_kms_cluster_get_kek(vmenc_kms_cluster *c, const char *key_id, uint32_t timeout_ms,
                                       vmenc_kek **out, size_t *out_endpoint) {
    VMENC_ENSURE(c != NULL && key_id != NULL && out != NULL, VMENC_E_INVALID_ARG);
    get_op a = {key_id, out};
    return vmenc_kms_cluster_run(c, run_get, &a, timeout_ms, out_endpoint, NULL);
}

typedef struct wrap_op {
    bool unwrap;
    const char *key_id;
    const vmenc_kms_wrap_params *params;
    const uint8_t *in;
    size_t in_len;
    uint8_t *out;
    size_t out_cap;
    size_t *out_len;
} wrap_op;

static vmenc_status run_wrap(vmenc_kms_provider *p, uint32_t t, void *varg) {
    wrap_op *a = varg;
    if (a->unwrap)
        return vmenc_kms_provider_unwrap(p, a->key_id, a->params, a->in, a->in_len, t, a->out, a->out_cap,
                                         a->out_len);
    return vmenc_kms_provider_wrap(p, a->key_id, a->params, a->in, a->in_len, t, a->out, a->out_cap, a->out_len);
}

vmenc_status vmenc_kms_cluster_wrap(vmenc_kms_cluster *c, const char *key_id, const vmenc_kms_wrap_params *params,
                                    const uint8_t *in, size_t in_len, uint32_t timeout_ms, uint8_t *out,
                                    size_t out_cap, size_t *out_len, size_t *out_endpoint) {
    VMENC_ENSURE_REF(c);
    wrap_op a = {false, key_id, params, in, in_len, out, out_cap, out_len};
    return vmenc_kms_cluster_run(c, run_wrap, &a, timeout_ms, out_endpoint, NULL);
}

vmenc_status vmenc_kms_cluster_unwrap(vmenc_kms_cluster *c, const char *key_id, const vmenc_kms_wrap_params *params,
                                      const uint8_t *in, size_t in_len, uint32_t timeout_ms, uint8_t *out,
                                      size_t out_cap, size_t *out_len, size_t *out_endpoint) {
    VMENC_ENSURE_REF(c);
    wrap_op a = {true, key_id, params, in, in_len, out, out_cap, out_len};
    return vmenc_kms_cluster_run(c, run_wrap, &a, timeout_ms, out_endpoint, NULL);
}

typedef struct id_op {
    bool destroy;
    const char *key_id;
} id_op;

static vmenc_status run_id(vmenc_kms_provider *p, uint32_t t, void *varg) {
    id_op *a = varg;
    return a->destroy ? vmenc_kms_provider_destroy_kek(p, a->key_id, t)
                      : vmenc_kms_provider_revoke_kek(p, a->key_id, t);
}

vmenc_status vmenc_kms_cluster_revoke_kek(vmenc_kms_cluster *c, const char *key_id, uint32_t timeout_ms,
                                          size_t *out_endpoint) {
    VMENC_ENSURE_REF(c);
    id_op a = {false, key_id};
    return vmenc_kms_cluster_run(c, run_id, &a, timeout_ms, out_endpoint, NULL);
}

vmenc_status vmenc_kms_cluster_destroy_kek(vmenc_kms_cluster *c, const char *key_id, uint32_t timeout_ms,
                                           size_t *out_endpoint) {
    VMENC_ENSURE_REF(c);
    id_op a = {true, key_id};
    return vmenc_kms_cluster_run(c, run_id, &a, timeout_ms, out_endpoint, NULL);
}

vmenc_status vmenc_kms_cluster_check_health(vmenc_kms_cluster *c, uint32_t timeout_ms, size_t *out_num_healthy) {
    VMENC_ENSURE_REF(c);
    vmenc_kms_provider *prov[MAX_ENDPOINTS];
    pthread_mutex_lock(&c->mu);
    size_t n = c->num;
    for (size_t i = 0; i < n; i++)
        prov[i] = c->eps[i]->p;
    uint64_t deadline = now_ms(c) + timeout_ms;
    pthread_mutex_unlock(&c->mu);
    size_t healthy = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t now = now_ms(c);
        if (i > 0 && now >= deadline)
            break;
        vmenc_status st = vmenc_kms_provider_health(prov[i], now >= deadline ? 0 : (uint32_t)(deadline - now));
        /* A provider that cannot say (no health member) keeps its state. */
        if (st != VMENC_E_UNIMPLEMENTED) {
            pthread_mutex_lock(&c->mu);
            record(c, c->eps[i], st, now_ms(c));
            pthread_mutex_unlock(&c->mu);
        }
        healthy += st == VMENC_OK;
    }
    if (out_num_healthy != NULL)
        *out_num_healthy = healthy;
    return healthy > 0 ? VMENC_OK : VMENC_E_KMS_UNAVAILABLE;
}
