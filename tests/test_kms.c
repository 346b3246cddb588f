/*
 * tests/test_kms.c - the provider ABI guards, clusters (failover, back-off,
 * deadline, health) and the key manager (cache, LRU, lifetime, key check
 * values, remote wrap, thread safety), driven by the fault-injection
 * provider in tests/support. The central property: no fault ever yields a
 * wrong key or a false success.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "fault_provider.h"
#include "keys/keys_internal.h"
#include "kms/kms_internal.h"
#include "vmenc/kms_file.h"
#include "vmenc/vmenc.h"

static void sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000u, (long)(ms % 1000u) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- provider ABI guards ------------------------------------------------------------ */

typedef struct odd_provider {
    vmenc_kms_provider base;
    int behaviour;
} odd_provider;

static vmenc_status odd_create(vmenc_kms_provider *p, const char *name, uint32_t t, char *out_id, size_t cap) {
    odd_provider *o = (odd_provider *)p;
    switch (o->behaviour) {
    case 0:
        memcpy(out_id, "good-id", 8);
        return VMENC_OK;
    case 1:
        return (vmenc_status)7; /* not a vmenc status */
    case 2:
        out_id[0] = '\0'; /* empty ID */
        return VMENC_OK;
    case 3:
        memcpy(out_id, "bad\nid", 7); /* control character */
        return VMENC_OK;
    default:
        memset(out_id, 'A', cap); /* no terminator */
        return VMENC_OK;
    }
}

/* A newer provider: its table is larger than the one this library knows. */
typedef struct ops_v2 {
    vmenc_kms_provider_ops v1;
    vmenc_status (*future_op)(vmenc_kms_provider *p);
} ops_v2;

static const ops_v2 k_ops_v2 = {
    .v1 = {.struct_size = sizeof(ops_v2), .abi_version = 2, .type_name = "odd", .create_kek = odd_create},
    .future_op = NULL,
};

static void test_provider_abi(void **state) {
    odd_provider o = {{sizeof(vmenc_kms_provider), &k_ops_v2.v1}, 0};
    assert_int_equal(vmenc_kms_provider_check(&o.base), VMENC_OK);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_provider_create_kek(&o.base, NULL, 10, id, sizeof(id)), VMENC_OK);
    assert_string_equal(id, "good-id");
    /* NULL members are unimplemented, not crashes. */
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_provider_get_kek(&o.base, "x", 10, &k), VMENC_E_UNIMPLEMENTED);
    assert_int_equal(vmenc_kms_provider_health(&o.base, 10), VMENC_E_UNIMPLEMENTED);
    assert_int_equal(vmenc_kms_provider_revoke_kek(&o.base, "x", 10), VMENC_E_UNIMPLEMENTED);
    vmenc_kms_provider_free(&o.base); /* no free member: nothing happens */

    /* Contract violations become VMENC_E_KMS_PROTOCOL; the output is untouched. */
    for (int b = 1; b <= 4; b++) {
        o.behaviour = b;
        memcpy(id, "untouched", 10);
        assert_int_equal(vmenc_kms_provider_create_kek(&o.base, NULL, 10, id, sizeof(id)), VMENC_E_KMS_PROTOCOL);
        assert_string_equal(id, "untouched");
    }
    /* A too-small caller buffer: no partial ID. */
    o.behaviour = 0;
    char tiny[4] = "abc";
    assert_int_equal(vmenc_kms_provider_create_kek(&o.base, NULL, 10, tiny, sizeof(tiny)), VMENC_E_BUFFER_TOO_SMALL);
    assert_string_equal(tiny, "abc");

    /* Older-than-v1 tables and abi_version 0 are refused. */
    vmenc_kms_provider_ops small = k_ops_v2.v1;
    small.struct_size = offsetof(vmenc_kms_provider_ops, health);
    o.base.ops = &small;
    assert_int_equal(vmenc_kms_provider_check(&o.base), VMENC_E_ABI_VERSION);
    assert_int_equal(vmenc_kms_provider_create_kek(&o.base, NULL, 10, id, sizeof(id)), VMENC_E_ABI_VERSION);
    vmenc_kms_provider_ops zero = k_ops_v2.v1;
    zero.struct_size = sizeof(zero);
    zero.abi_version = 0;
    o.base.ops = &zero;
    assert_int_equal(vmenc_kms_provider_check(&o.base), VMENC_E_ABI_VERSION);
    o.base.ops = NULL;
    assert_int_equal(vmenc_kms_provider_check(&o.base), VMENC_E_INVALID_ARG);
    o.base.ops = &k_ops_v2.v1;
    o.base.struct_size = 4;
    assert_int_equal(vmenc_kms_provider_check(&o.base), VMENC_E_ABI_VERSION);
    assert_int_equal(vmenc_kms_provider_check(NULL), VMENC_E_INVALID_ARG);
}

static void test_fault_corrupt_answers_rejected(void **state) {
    fault_store *s = fault_store_new();
    vmenc_kms_provider *p = NULL, *r = NULL;
    assert_int_equal(fault_provider_new(s, false, &p), VMENC_OK);
    assert_int_equal(fault_provider_new(s, true, &r), VMENC_OK);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_provider_create_kek(p, NULL, 10, id, sizeof(id)), VMENC_OK);
    fault_set_mode(as_fault(p), FAULT_CORRUPT);
    fault_set_mode(as_fault(r), FAULT_CORRUPT);
    char id2[VMENC_KMS_KEY_ID_CAP] = "untouched";
    assert_int_equal(vmenc_kms_provider_create_kek(p, NULL, 10, id2, sizeof(id2)), VMENC_E_KMS_PROTOCOL);
    assert_string_equal(id2, "untouched");
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_provider_get_kek(p, id, 10, &k), VMENC_E_KMS_PROTOCOL);
    assert_null(k);
    uint8_t in[64] = {1}, out[128];
    size_t out_len = 12345;
    vmenc_kms_wrap_params wp = {.struct_size = sizeof(wp), .mech = VMENC_KMS_WRAP_AES_KWP};
    assert_int_equal(vmenc_kms_provider_wrap(r, id, &wp, in, sizeof(in), 10, out, sizeof(out), &out_len),
                     VMENC_E_KMS_PROTOCOL);
    assert_int_equal(vmenc_kms_provider_unwrap(r, id, &wp, in, sizeof(in), 10, out, sizeof(out), &out_len),
                     VMENC_E_KMS_PROTOCOL);
    assert_int_equal(out_len, 12345);
    /* Bad wrap parameters are refused before the provider is called. */
    fault_counts before, after;
    fault_get_counts(as_fault(r), &before);
    wp.mech = VMENC_KMS_WRAP_AES_GCM; /* needs a 12-byte IV */
    assert_int_equal(vmenc_kms_provider_wrap(r, id, &wp, in, sizeof(in), 10, out, sizeof(out), &out_len),
                     VMENC_E_INVALID_ARG);
    wp.mech = (vmenc_kms_wrap_mech)99;
    assert_int_equal(vmenc_kms_provider_wrap(r, id, &wp, in, sizeof(in), 10, out, sizeof(out), &out_len),
                     VMENC_E_BAD_ALGORITHM);
    fault_get_counts(as_fault(r), &after);
    assert_int_equal(before.total, after.total);
    vmenc_kms_provider_free(p);
    vmenc_kms_provider_free(r);
    fault_store_free(s);
}

/* ---- clusters -------------------------------------------------------------------------- */

typedef struct fake_clock {
    uint64_t now;
} fake_clock;

static uint64_t fake_now(void *arg) { return ((fake_clock *)arg)->now; }

typedef struct cl_fixture {
    fault_store *store;
    vmenc_kms_cluster *c;
    fault_provider *ep[3];
    fake_clock clock;
} cl_fixture;

static void make_cluster(cl_fixture *f, size_t n, bool remote, uint32_t initial, uint32_t max) {
    memset(f, 0, sizeof(*f));
    f->store = fault_store_new();
    vmenc_kms_cluster_options o = {.struct_size = sizeof(o), .backoff_initial_ms = initial,
                                   .backoff_max_ms = max, .flags = VMENC_KMS_CLUSTER_NO_JITTER};
    assert_int_equal(vmenc_kms_cluster_new("tenant-a", &o, &f->c), VMENC_OK);
    for (size_t i = 0; i < n; i++) {
        vmenc_kms_provider *p = NULL;
        assert_int_equal(fault_provider_new(f->store, remote, &p), VMENC_OK);
        char name[32];
        snprintf(name, sizeof(name), "kms-%zu", i);
        assert_int_equal(vmenc_kms_cluster_take_endpoint(f->c, name, p), VMENC_OK);
        f->ep[i] = as_fault(p);
    }
    f->clock.now = 1000000;
    vmenc_kms_cluster_set_clock(f->c, fake_now, &f->clock);
}

static void free_cluster(cl_fixture *f) {
    vmenc_kms_cluster_free(f->c);
    fault_store_free(f->store);
}

static uint64_t calls(fault_provider *p) {
    fault_counts c;
    fault_get_counts(p, &c);
    return c.total;
}

static vmenc_kms_endpoint_info info(vmenc_kms_cluster *c, size_t i) {
    vmenc_kms_endpoint_info in = {.struct_size = sizeof(in)};
    assert_int_equal(vmenc_kms_cluster_endpoint_info(c, i, &in), VMENC_OK);
    return in;
}

static void test_cluster_failover_and_backoff(void **state) {
    cl_fixture f;
    make_cluster(&f, 3, false, 100, 400);
    assert_string_equal(vmenc_kms_cluster_alias(f.c), "tenant-a");
    assert_int_equal(vmenc_kms_cluster_num_endpoints(f.c), 3);
    char id[VMENC_KMS_KEY_ID_CAP];
    size_t ep = 99;
    assert_int_equal(vmenc_kms_cluster_create_kek(f.c, NULL, 1000, id, sizeof(id), &ep), VMENC_OK);
    assert_int_equal(ep, 0);

    fault_set_mode(f.ep[0], FAULT_DOWN);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_cluster_get_kek(f.c, id, 1000, &k, &ep), VMENC_OK);
    vmenc_kek_free(k);
    assert_int_equal(ep, 1);
    assert_int_equal(vmenc_kms_cluster_num_failovers(f.c), 1);
    vmenc_kms_endpoint_info i0 = info(f.c, 0);
    assert_string_equal(i0.name, "kms-0");
    assert_string_equal(i0.type_name, "fault");
    assert_int_equal(i0.consecutive_failures, 1);
    assert_int_equal(i0.backoff_remaining_ms, 100);
    assert_int_equal(i0.last_status, VMENC_E_KMS_UNAVAILABLE);

    /* While in back-off, endpoint 0 is not tried: others are healthy. */
    uint64_t c0 = calls(f.ep[0]);
    assert_int_equal(vmenc_kms_cluster_get_kek(f.c, id, 1000, &k, &ep), VMENC_OK);
    vmenc_kek_free(k);
    assert_int_equal(ep, 1);
    assert_int_equal(calls(f.ep[0]), c0);

    /* Exponential back-off with a cap: 100, 200, 400, 400. */
    static const uint64_t expect[] = {200, 400, 400};
    for (size_t r = 0; r < 3; r++) {
        f.clock.now += 1000; /* back-off over: endpoint 0 is first again */
        assert_int_equal(vmenc_kms_cluster_get_kek(f.c, id, 1000, &k, &ep), VMENC_OK);
        vmenc_kek_free(k);
        assert_int_equal(ep, 1);
        assert_int_equal(calls(f.ep[0]), c0 + r + 1);
        assert_int_equal(info(f.c, 0).backoff_remaining_ms, expect[r]);
        assert_int_equal(info(f.c, 0).consecutive_failures, r + 2);
    }
    /* Endpoint 0 recovers: once its back-off ends it answers and is healthy. */
    fault_set_mode(f.ep[0], FAULT_NONE);
    f.clock.now += 1000;
    assert_int_equal(vmenc_kms_cluster_get_kek(f.c, id, 1000, &k, &ep), VMENC_OK);
    vmenc_kek_free(k);
    assert_int_equal(ep, 0);
    assert_int_equal(info(f.c, 0).consecutive_failures, 0);
    assert_int_equal(info(f.c, 0).backoff_remaining_ms, 0);
    free_cluster(&f);
}

static void test_cluster_backoff_endpoints_tried_last(void **state) {
    cl_fixture f;
    make_cluster(&f, 3, false, 1000, 60000);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_cluster_create_kek(f.c, NULL, 1000, id, sizeof(id), NULL), VMENC_OK);
    /* Put 0 into back-off, then let it recover while 1 and 2 go down. */
    fault_set_mode(f.ep[0], FAULT_DOWN);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_cluster_get_kek(f.c, id, 1000, &k, NULL), VMENC_OK);
    vmenc_kek_free(k);
    assert_true(info(f.c, 0).backoff_remaining_ms > 0);
    fault_set_mode(f.ep[0], FAULT_NONE);
    fault_set_mode(f.ep[1], FAULT_DOWN);
    fault_set_mode(f.ep[2], FAULT_TIMEOUT);
    uint64_t c1 = calls(f.ep[1]), c2 = calls(f.ep[2]);
    size_t ep = 99;
    assert_int_equal(vmenc_kms_cluster_get_kek(f.c, id, 1000, &k, &ep), VMENC_OK);
    vmenc_kek_free(k);
    k = NULL;
    assert_int_equal(ep, 0); /* in back-off, so tried only after 1 and 2 failed */
    assert_int_equal(calls(f.ep[1]), c1 + 1);
    assert_int_equal(calls(f.ep[2]), c2 + 1);
    /* Everything down: every endpoint is tried once, then "unavailable". */
    fault_set_mode(f.ep[0], FAULT_DOWN);
    fault_set_mode(f.ep[2], FAULT_DOWN);
    uint64_t before = calls(f.ep[0]) + calls(f.ep[1]) + calls(f.ep[2]);
    assert_int_equal(vmenc_kms_cluster_get_kek(f.c, id, 1000, &k, &ep), VMENC_E_KMS_UNAVAILABLE);
    assert_null(k);
    assert_int_equal(calls(f.ep[0]) + calls(f.ep[1]) + calls(f.ep[2]), before + 3);
    /* Mixed failures also end as "unavailable"; all timeouts as "timeout". */
    fault_set_mode(f.ep[1], FAULT_TIMEOUT);
    assert_int_equal(vmenc_kms_cluster_get_kek(f.c, id, 1000, &k, &ep), VMENC_E_KMS_UNAVAILABLE);
    for (int i = 0; i < 3; i++)
        fault_set_mode(f.ep[i], FAULT_TIMEOUT);
    assert_int_equal(vmenc_kms_cluster_get_kek(f.c, id, 1000, &k, &ep), VMENC_E_KMS_TIMEOUT);
    /* Health checks probe every endpoint and end back-offs. */
    for (int i = 0; i < 3; i++)
        fault_set_mode(f.ep[i], FAULT_NONE);
    size_t healthy = 0;
    assert_int_equal(vmenc_kms_cluster_check_health(f.c, 1000, &healthy), VMENC_OK);
    assert_int_equal(healthy, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(info(f.c, i).backoff_remaining_ms, 0);
    fault_set_mode(f.ep[1], FAULT_DOWN);
    assert_int_equal(vmenc_kms_cluster_check_health(f.c, 1000, &healthy), VMENC_OK);
    assert_int_equal(healthy, 2);
    for (int i = 0; i < 3; i++)
        fault_set_mode(f.ep[i], FAULT_DOWN);
    assert_int_equal(vmenc_kms_cluster_check_health(f.c, 1000, &healthy), VMENC_E_KMS_UNAVAILABLE);
    assert_int_equal(healthy, 0);
    free_cluster(&f);
}

static void test_cluster_definite_answers_do_not_fail_over(void **state) {
    cl_fixture f;
    make_cluster(&f, 2, false, 1000, 60000);
    vmenc_kek *k = NULL;
    uint64_t c1 = calls(f.ep[1]);
    assert_int_equal(vmenc_kms_cluster_get_kek(f.c, "no-such-key", 1000, &k, NULL), VMENC_E_KEY_NOT_FOUND);
    fault_set_mode(f.ep[0], FAULT_REFUSE);
    assert_int_equal(vmenc_kms_cluster_get_kek(f.c, "no-such-key", 1000, &k, NULL), VMENC_E_KMS_REFUSED);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_cluster_create_kek(f.c, NULL, 1000, id, sizeof(id), NULL), VMENC_E_KMS_REFUSED);
    assert_int_equal(calls(f.ep[1]), c1);
    assert_int_equal(vmenc_kms_cluster_num_failovers(f.c), 0);
    /* A refusing endpoint is up: no back-off. */
    assert_int_equal(info(f.c, 0).backoff_remaining_ms, 0);
    /* A garbled answer, though, is the endpoint's fault: fail over. */
    fault_set_mode(f.ep[0], FAULT_CORRUPT);
    size_t ep = 9;
    assert_int_equal(vmenc_kms_cluster_create_kek(f.c, NULL, 1000, id, sizeof(id), &ep), VMENC_OK);
    assert_int_equal(ep, 1);
    free_cluster(&f);
}

static void test_cluster_deadline(void **state) {
    cl_fixture f;
    make_cluster(&f, 2, false, 1000, 60000);
    vmenc_kms_cluster_set_clock(f.c, NULL, NULL); /* real time: the slow endpoint really sleeps */
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_cluster_create_kek(f.c, NULL, 1000, id, sizeof(id), NULL), VMENC_OK);
    /* Endpoint 0 would take 60 s; the caller allows 100 ms. It uses it all,
     * so endpoint 1 is never tried and the call ends with a timeout. */
    fault_set_mode(f.ep[0], FAULT_SLOW);
    fault_set_delay_ms(f.ep[0], 60000);
    uint64_t c1 = calls(f.ep[1]);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_cluster_get_kek(f.c, id, 100, &k, NULL), VMENC_E_KMS_TIMEOUT);
    assert_null(k);
    assert_int_equal(calls(f.ep[1]), c1);
    /* Now endpoint 0 is in back-off: endpoint 1 answers first. */
    size_t ep = 9;
    assert_int_equal(vmenc_kms_cluster_get_kek(f.c, id, 100, &k, &ep), VMENC_OK);
    assert_int_equal(ep, 1);
    vmenc_kek_free(k);
    /* A slow-but-in-time endpoint answers. */
    fault_set_mode(f.ep[1], FAULT_SLOW);
    fault_set_delay_ms(f.ep[1], 5);
    assert_int_equal(vmenc_kms_cluster_get_kek(f.c, id, 5000, &k, &ep), VMENC_OK);
    vmenc_kek_free(k);
    free_cluster(&f);
}

static void test_cluster_flapping_and_config(void **state) {
    cl_fixture f;
    make_cluster(&f, 2, false, 1, 1);
    vmenc_kms_cluster_set_clock(f.c, NULL, NULL);
    fault_set_mode(f.ep[0], FAULT_FLAPPING);
    char id[VMENC_KMS_KEY_ID_CAP];
    for (int i = 0; i < 20; i++) {
        assert_int_equal(vmenc_kms_cluster_create_kek(f.c, NULL, 1000, id, sizeof(id), NULL), VMENC_OK);
        vmenc_kek *k = NULL;
        assert_int_equal(vmenc_kms_cluster_get_kek(f.c, id, 1000, &k, NULL), VMENC_OK);
        vmenc_kek_free(k);
        sleep_ms(2); /* let the 1 ms back-off pass so 0 keeps being tried */
    }
    assert_int_equal(fault_store_num_keys(f.store), 20);
    assert_true(vmenc_kms_cluster_num_failovers(f.c) > 0);
    /* One provider type per cluster; a provider is added once. */
    vmenc_kms_provider *fp = NULL;
    char dir[] = "/tmp/vmenc-kms-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/ks", dir);
    vmenc_kms_file_options o = {.struct_size = sizeof(o), .flags = VMENC_KMS_FILE_CREATE, .kdf_opslimit = 1,
                                .kdf_memlimit_kib = 8};
    assert_int_equal(vmenc_kms_file_provider_new(path, (const uint8_t *)"pw", 2, &o, &fp), VMENC_OK);
    assert_int_equal(vmenc_kms_cluster_take_endpoint(f.c, "file", fp), VMENC_E_INVALID_ARG);
    vmenc_kms_provider_free(fp);
    assert_int_equal(vmenc_kms_cluster_take_endpoint(f.c, "again", fault_base(f.ep[0])), VMENC_E_INVALID_ARG);
    vmenc_kms_endpoint_info in = {.struct_size = 4};
    assert_int_equal(vmenc_kms_cluster_endpoint_info(f.c, 0, &in), VMENC_E_INVALID_ARG);
    in.struct_size = sizeof(in);
    assert_int_equal(vmenc_kms_cluster_endpoint_info(f.c, 2, &in), VMENC_E_INVALID_ARG);
    free_cluster(&f);
    unlink(path);
    char lock[80];
    snprintf(lock, sizeof(lock), "%s.lock", path);
    unlink(lock);
    rmdir(dir);

    vmenc_kms_cluster *c = NULL;
    assert_int_equal(vmenc_kms_cluster_new("", NULL, &c), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_kms_cluster_new("has space", NULL, &c), VMENC_E_INVALID_ARG);
    vmenc_kms_cluster_options bad = {.struct_size = sizeof(bad), .backoff_initial_ms = 10, .backoff_max_ms = 5};
    assert_int_equal(vmenc_kms_cluster_new("x", &bad, &c), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_kms_cluster_new("empty", NULL, &c), VMENC_OK);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_cluster_get_kek(c, "id", 100, &k, NULL), VMENC_E_KMS_UNAVAILABLE);
    vmenc_kms_cluster_free(c);
}

/* ---- key manager -------------------------------------------------------------------------- */

typedef struct km_fixture {
    fault_store *store;
    vmenc_keymgr *m;
    fault_provider *ep[2];
} km_fixture;

static void make_keymgr(km_fixture *f, bool remote, uint32_t capacity, uint64_t ttl_ms, uint32_t remote_alg) {
    memset(f, 0, sizeof(*f));
    f->store = fault_store_new();
    vmenc_keymgr_options o = {.struct_size = sizeof(o), .cache_capacity = capacity, .cache_ttl_ms = ttl_ms,
                              .remote_wrap_alg = remote_alg};
    assert_int_equal(vmenc_keymgr_new(&o, &f->m), VMENC_OK);
    assert_int_equal(vmenc_keymgr_register_provider_type(f->m, "fault", fault_provider_factory, f->store), VMENC_OK);
    const char *ropts[] = {"remote=1", NULL};
    vmenc_kms_endpoint_config cfg[2] = {
        {.struct_size = sizeof(cfg[0]), .type = "fault", .address = "kms-a", .options = remote ? ropts : NULL},
        {.struct_size = sizeof(cfg[0]), .type = "fault", .address = "kms-b", .options = remote ? ropts : NULL},
    };
    vmenc_kms_cluster_options co = {.struct_size = sizeof(co), .backoff_initial_ms = 1, .backoff_max_ms = 1};
    assert_int_equal(vmenc_keymgr_add_cluster(f->m, "tenant-a", cfg, 2, &co), VMENC_OK);
}

static vmenc_keymgr *keymgr_with_cluster_flags(fault_store *store, bool remote, uint32_t capacity, uint64_t ttl_ms,
                                               uint32_t flags, fault_provider **ep0, fault_provider **ep1) {
    vmenc_keymgr_options o = {.struct_size = sizeof(o), .cache_capacity = capacity, .cache_ttl_ms = ttl_ms,
                              .flags = flags};
    vmenc_keymgr *m = NULL;
    assert_int_equal(vmenc_keymgr_new(&o, &m), VMENC_OK);
    vmenc_kms_cluster_options co = {.struct_size = sizeof(co), .backoff_initial_ms = 1, .backoff_max_ms = 1,
                                    .flags = VMENC_KMS_CLUSTER_NO_JITTER};
    vmenc_kms_cluster *c = NULL;
    assert_int_equal(vmenc_kms_cluster_new("tenant-a", &co, &c), VMENC_OK);
    vmenc_kms_provider *p = NULL;
    assert_int_equal(fault_provider_new(store, remote, &p), VMENC_OK);
    assert_int_equal(vmenc_kms_cluster_take_endpoint(c, "a", p), VMENC_OK);
    *ep0 = as_fault(p);
    assert_int_equal(fault_provider_new(store, remote, &p), VMENC_OK);
    assert_int_equal(vmenc_kms_cluster_take_endpoint(c, "b", p), VMENC_OK);
    *ep1 = as_fault(p);
    assert_int_equal(vmenc_keymgr_take_cluster(m, c), VMENC_OK);
    return m;
}

static vmenc_keymgr *keymgr_with_cluster(fault_store *store, bool remote, uint32_t capacity, uint64_t ttl_ms,
                                         fault_provider **ep0, fault_provider **ep1) {
    return keymgr_with_cluster_flags(store, remote, capacity, ttl_ms, 0, ep0, ep1);
}

static vmenc_keymgr_stats stats(vmenc_keymgr *m) {
    vmenc_keymgr_stats s = {.struct_size = sizeof(s)};
    assert_int_equal(vmenc_keymgr_get_stats(m, &s), VMENC_OK);
    return s;
}

static const vmenc_wrap_context CTX = {sizeof(vmenc_wrap_context), "vm-1234", "disk-0", "disk"};

static void test_keymgr_registry(void **state) {
    km_fixture f;
    make_keymgr(&f, false, 0, 0, 0);
    assert_int_equal(vmenc_keymgr_register_provider_type(f.m, "fault", fault_provider_factory, f.store),
                     VMENC_E_PROVIDER_EXISTS);
    assert_int_equal(vmenc_keymgr_register_provider_type(f.m, "file", fault_provider_factory, f.store),
                     VMENC_E_PROVIDER_EXISTS);
    assert_int_equal(vmenc_keymgr_register_provider_type(f.m, "kmip", fault_provider_factory, f.store),
                     VMENC_E_PROVIDER_EXISTS);
    vmenc_kms_endpoint_config cfg = {.struct_size = sizeof(cfg), .type = "fault", .address = "x"};
    assert_int_equal(vmenc_keymgr_add_cluster(f.m, "tenant-a", &cfg, 1, NULL), VMENC_E_PROVIDER_EXISTS);
    assert_int_equal(vmenc_keymgr_add_cluster(f.m, "tenant-b", &cfg, 1, NULL), VMENC_OK);
    cfg.type = "unknown-type";
    assert_int_equal(vmenc_keymgr_add_cluster(f.m, "tenant-c", &cfg, 1, NULL), VMENC_E_NO_SUCH_PROVIDER);
    /* Every built-in type is linked in (a bad configuration, not an unknown type). */
    static const char *const builtins[] = {"file", "kmip", "pkcs11"};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(builtins); i++) {
        vmenc_kms_endpoint_config bad = {.struct_size = sizeof(bad), .type = builtins[i], .address = NULL};
        vmenc_kms_provider *p = NULL;
        vmenc_status st = vmenc_kms_provider_new_builtin(&bad, &p);
        assert_int_not_equal(st, VMENC_OK);
        assert_int_not_equal(st, VMENC_E_NO_SUCH_PROVIDER);
        assert_null(p);
    }
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_keymgr_create_kek(f.m, "tenant-c", NULL, 1000, id, sizeof(id)), VMENC_E_NO_SUCH_PROVIDER);
    /* Keys are addressed as (alias, ID): the same store behind two aliases
     * still yields two separate cache entries. */
    assert_int_equal(vmenc_keymgr_create_kek(f.m, "tenant-a", NULL, 1000, id, sizeof(id)), VMENC_OK);
    vmenc_kek *a = NULL, *b = NULL;
    assert_int_equal(vmenc_keymgr_get_kek(f.m, "tenant-a", id, 1000, &a), VMENC_OK);
    assert_int_equal(vmenc_keymgr_get_kek(f.m, "tenant-b", id, 1000, &b), VMENC_OK);
    assert_int_equal(vmenc_kek_equal(a, b), VMENC_OK);
    assert_int_equal(stats(f.m).cached, 2);
    vmenc_kek_free(a);
    vmenc_kek_free(b);
    assert_int_equal(vmenc_keymgr_remove_cluster(f.m, "tenant-b"), VMENC_OK);
    assert_int_equal(stats(f.m).cached, 1);
    assert_int_equal(vmenc_keymgr_remove_cluster(f.m, "tenant-b"), VMENC_E_NO_SUCH_PROVIDER);
    assert_int_equal(vmenc_keymgr_get_kek(f.m, "tenant-b", id, 1000, &a), VMENC_E_NO_SUCH_PROVIDER);
    char tiny[8];
    assert_int_equal(vmenc_keymgr_create_kek(f.m, "tenant-a", NULL, 1000, tiny, sizeof(tiny)),
                     VMENC_E_BUFFER_TOO_SMALL);
    vmenc_keymgr_free(f.m);
    fault_store_free(f.store);
}

static void test_keymgr_wrap_unwrap_cache_hit(void **state) {
    fault_store *s = fault_store_new();
    fault_provider *e0, *e1;
    vmenc_keymgr *m = keymgr_with_cluster(s, false, 0, 0, &e0, &e1);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_keymgr_create_kek(m, "tenant-a", "vm key", 1000, id, sizeof(id)), VMENC_OK);
    vmenc_dek *dek = NULL, *back = NULL;
    assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
    vmenc_wrapped_key *wk = NULL;
    assert_int_equal(vmenc_keymgr_wrap_dek(m, "tenant-a", id, dek, &CTX, 1000, &wk), VMENC_OK);
    assert_string_equal(vmenc_wrapped_key_provider_alias(wk), "tenant-a");
    assert_string_equal(vmenc_wrapped_key_kek_id(wk), id);
    assert_int_equal(vmenc_wrapped_key_alg(wk), VMENC_WRAP_AES256_GCM);
    uint64_t kms_calls = calls(e0) + calls(e1);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk, &CTX, 1000, &back), VMENC_OK);
        assert_int_equal(vmenc_dek_equal(dek, back), VMENC_OK);
        vmenc_dek_free(back);
        back = NULL;
    }
    assert_int_equal(calls(e0) + calls(e1), kms_calls); /* cache hits: no KMS call */
    vmenc_keymgr_stats st = stats(m);
    assert_true(st.hits >= 11);
    assert_int_equal(st.misses, 1); /* the fetch right after creation */
    assert_int_equal(st.errors, 0);
    /* Another context does not open it. */
    vmenc_wrap_context other = CTX;
    other.disk_id = "disk-1";
    assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk, &other, 1000, &back), VMENC_E_AUTH);
    assert_null(back);
    assert_int_equal(stats(m).errors, 1);
    /* The KEK itself can be had too (a copy the caller frees). */
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_keymgr_get_kek(m, "tenant-a", id, 1000, &k), VMENC_OK);
    vmenc_kek_free(k);
    vmenc_wrapped_key_free(wk);
    vmenc_dek_free(dek);
    vmenc_keymgr_free(m);
    fault_store_free(s);
}

static void test_keymgr_cache_while_kms_down(void **state) {
    fault_store *s = fault_store_new();
    fault_provider *e0, *e1;
    vmenc_keymgr *m = keymgr_with_cluster(s, false, 0, 0, &e0, &e1);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_keymgr_create_kek(m, "tenant-a", NULL, 1000, id, sizeof(id)), VMENC_OK);
    vmenc_dek *dek = NULL, *back = NULL;
    assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
    vmenc_wrapped_key *wk = NULL;
    assert_int_equal(vmenc_keymgr_wrap_dek(m, "tenant-a", id, dek, &CTX, 1000, &wk), VMENC_OK);
    fault_set_mode(e0, FAULT_DOWN);
    fault_set_mode(e1, FAULT_DOWN);
    /* The host keeps unwrapping... */
    assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk, &CTX, 1000, &back), VMENC_OK);
    assert_int_equal(vmenc_dek_equal(dek, back), VMENC_OK);
    vmenc_dek_free(back);
    back = NULL;
    /* ...but cannot wrap (the round-trip proof needs the KMS: a new
     * record is proven with a fresh fetch before any data goes under it)
     * nor create keys. */
    vmenc_wrapped_key *wk2 = NULL;
    assert_int_equal(vmenc_keymgr_wrap_dek(m, "tenant-a", id, dek, &CTX, 1000, &wk2), VMENC_E_KMS_UNAVAILABLE);
    assert_null(wk2);
    wk2 = wk;
    wk = NULL;
    char id2[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_keymgr_create_kek(m, "tenant-a", NULL, 1000, id2, sizeof(id2)),
                     VMENC_E_KMS_UNAVAILABLE);
    /* Once forgotten, the KEK is out of reach until the KMS is back. */
    assert_int_equal(vmenc_keymgr_forget(m, "tenant-a", id), VMENC_OK);
    assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk2, &CTX, 1000, &back), VMENC_E_KMS_UNAVAILABLE);
    assert_null(back);
    vmenc_keymgr_stats st = stats(m);
    assert_int_equal(st.errors, 3);
    assert_true(st.failovers >= 3);
    fault_set_mode(e1, FAULT_NONE);
    sleep_ms(3); /* 1 ms back-off */
    assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk2, &CTX, 1000, &back), VMENC_OK);
    assert_int_equal(vmenc_dek_equal(dek, back), VMENC_OK);
    vmenc_dek_free(back);
    vmenc_wrapped_key_free(wk);
    vmenc_wrapped_key_free(wk2);
    vmenc_dek_free(dek);
    vmenc_keymgr_free(m);
    fault_store_free(s);
}

static void test_keymgr_lru_and_ttl(void **state) {
    fault_store *s = fault_store_new();
    fault_provider *e0, *e1;
    vmenc_keymgr *m = keymgr_with_cluster(s, false, 2, 0, &e0, &e1);
    char ids[3][VMENC_KMS_KEY_ID_CAP];
    for (int i = 0; i < 3; i++)
        assert_int_equal(vmenc_keymgr_create_kek(m, "tenant-a", NULL, 1000, ids[i], sizeof(ids[i])), VMENC_OK);
    vmenc_keymgr_stats st = stats(m);
    assert_int_equal(st.cached, 2);
    assert_int_equal(st.evictions, 1);
    /* ids[0] was least recently used and is gone; ids[2] is cached. */
    fault_counts c0;
    fault_get_counts(e0, &c0);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_keymgr_get_kek(m, "tenant-a", ids[2], 1000, &k), VMENC_OK);
    vmenc_kek_free(k);
    fault_counts c1;
    fault_get_counts(e0, &c1);
    assert_int_equal(c1.get, c0.get);
    assert_int_equal(vmenc_keymgr_get_kek(m, "tenant-a", ids[0], 1000, &k), VMENC_OK);
    vmenc_kek_free(k);
    fault_get_counts(e0, &c1);
    assert_int_equal(c1.get, c0.get + 1);
    vmenc_keymgr_free(m);

    /* A lifetime: an expired KEK is fetched again. */
    m = keymgr_with_cluster(s, false, 0, 1, &e0, &e1);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_keymgr_create_kek(m, "tenant-a", NULL, 1000, id, sizeof(id)), VMENC_OK);
    sleep_ms(5);
    fault_get_counts(e0, &c0);
    assert_int_equal(vmenc_keymgr_get_kek(m, "tenant-a", id, 1000, &k), VMENC_OK);
    vmenc_kek_free(k);
    fault_get_counts(e0, &c1);
    assert_int_equal(c1.get, c0.get + 1);
    st = stats(m);
    assert_int_equal(st.expirations, 1);
    assert_int_equal(st.misses, 2);
    vmenc_keymgr_free(m);
    fault_store_free(s);
}

static void test_keymgr_wrong_key_detected(void **state) {
    fault_store *s = fault_store_new();
    fault_provider *e0, *e1;
    /* ttl 1 ms: the KEK material expires, its check value stays. */
    vmenc_keymgr *m = keymgr_with_cluster(s, false, 0, 1, &e0, &e1);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_keymgr_create_kek(m, "tenant-a", NULL, 1000, id, sizeof(id)), VMENC_OK);
    vmenc_dek *dek = NULL, *back = NULL;
    assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
    vmenc_wrapped_key *wk = NULL;
    assert_int_equal(vmenc_keymgr_wrap_dek(m, "tenant-a", id, dek, &CTX, 1000, &wk), VMENC_OK);
    sleep_ms(5);
    /* Endpoint 0 serves wrong bytes: rejected by the check value, and the
     * call fails over to endpoint 1, which is right. */
    fault_set_mode(e0, FAULT_WRONG_KEY);
    assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk, &CTX, 1000, &back), VMENC_OK);
    assert_int_equal(vmenc_dek_equal(dek, back), VMENC_OK);
    vmenc_dek_free(back);
    back = NULL;
    vmenc_keymgr_stats st = stats(m);
    assert_int_equal(st.wrong_keys, 1);
    assert_true(st.failovers >= 1);
    /* Both wrong: no KEK under that ID, and unwrap fails with AUTH. */
    sleep_ms(5);
    fault_set_mode(e1, FAULT_WRONG_KEY);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_keymgr_get_kek(m, "tenant-a", id, 1000, &k), VMENC_E_KMS_WRONG_KEY);
    assert_null(k);
    sleep_ms(5);
    assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk, &CTX, 1000, &back), VMENC_E_AUTH);
    assert_null(back);
    vmenc_keymgr_free(m);

    /* First sight, no check value yet: a wrong key still cannot open the
     * record (AUTH), and it is not kept, so once the KMS is right again the
     * record opens. */
    m = keymgr_with_cluster(s, false, 0, 0, &e0, &e1);
    fault_set_mode(e0, FAULT_WRONG_KEY);
    fault_set_mode(e1, FAULT_WRONG_KEY);
    assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk, &CTX, 1000, &back), VMENC_E_AUTH);
    assert_null(back);
    assert_int_equal(stats(m).cached, 0);
    fault_set_mode(e0, FAULT_NONE);
    fault_set_mode(e1, FAULT_NONE);
    assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk, &CTX, 1000, &back), VMENC_OK);
    assert_int_equal(vmenc_dek_equal(dek, back), VMENC_OK);
    vmenc_dek_free(back);
    vmenc_wrapped_key_free(wk);
    vmenc_dek_free(dek);
    vmenc_keymgr_free(m);
    fault_store_free(s);
}

static void test_keymgr_remote_provider(void **state) {
    for (int alg = VMENC_WRAP_AES256_GCM; alg <= VMENC_WRAP_AES256_KWP; alg++) {
        km_fixture f;
        make_keymgr(&f, true, 0, 0, (uint32_t)alg);
        char id[VMENC_KMS_KEY_ID_CAP];
        assert_int_equal(vmenc_keymgr_create_kek(f.m, "tenant-a", NULL, 1000, id, sizeof(id)), VMENC_OK);
        vmenc_kek *k = NULL;
        assert_int_equal(vmenc_keymgr_get_kek(f.m, "tenant-a", id, 1000, &k), VMENC_E_UNSUPPORTED);
        vmenc_dek *dek = NULL, *back = NULL;
        assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
        vmenc_wrapped_key *wk = NULL;
        assert_int_equal(vmenc_keymgr_wrap_dek(f.m, "tenant-a", id, dek, &CTX, 1000, &wk), VMENC_OK);
        assert_int_equal(vmenc_wrapped_key_alg(wk), alg);
        assert_int_equal(vmenc_keymgr_unwrap_dek(f.m, wk, &CTX, 1000, &back), VMENC_OK);
        assert_int_equal(vmenc_dek_equal(dek, back), VMENC_OK);
        vmenc_dek_free(back);
        back = NULL;
        vmenc_wrap_context other = CTX;
        other.purpose = "vm-home";
        assert_int_equal(vmenc_keymgr_unwrap_dek(f.m, wk, &other, 1000, &back), VMENC_E_AUTH);
        vmenc_keymgr_stats st = stats(f.m);
        assert_int_equal(st.cached, 0); /* nothing of a remote KEK is kept */
        assert_int_equal(st.remote_ops, 4); /* wrap, its proof, two unwraps */
        vmenc_wrapped_key_free(wk);
        vmenc_dek_free(dek);
        vmenc_keymgr_free(f.m);
        fault_store_free(f.store);
    }
}

/* Issue 9 #5: a KMS that served a host wrong bytes for a KEK on first
 * sight (cached since) must not get a wrap the host can never open: the
 * round-trip proof, with the KEK fetched afresh, refuses it with
 * VMENC_E_ROUNDTRIP and hands out nothing. */
static void test_keymgr_roundtrip_proof(void **state) {
    for (int proof = 1; proof >= 0; proof--) {
        fault_store *s = fault_store_new();
        fault_provider *a0, *a1, *h0, *h1;
        vmenc_keymgr *admin = keymgr_with_cluster(s, false, 0, 0, &a0, &a1);
        char id[VMENC_KMS_KEY_ID_CAP];
        assert_int_equal(vmenc_keymgr_create_kek(admin, "tenant-a", NULL, 1000, id, sizeof(id)), VMENC_OK);
        /* A host sees the KEK for the first time while both replicas serve
         * wrong bytes (a restored old backup, say); it caches them. */
        vmenc_keymgr *host = keymgr_with_cluster_flags(s, false, 0, 0, proof ? 0 : VMENC_KEYMGR_NO_ROUNDTRIP_PROOF,
                                                       &h0, &h1);
        fault_set_mode(h0, FAULT_WRONG_KEY);
        fault_set_mode(h1, FAULT_WRONG_KEY);
        vmenc_kek *k = NULL;
        assert_int_equal(vmenc_keymgr_get_kek(host, "tenant-a", id, 1000, &k), VMENC_OK);
        vmenc_kek_free(k);
        /* The replicas are repaired; the host still holds the wrong KEK. */
        fault_set_mode(h0, FAULT_NONE);
        fault_set_mode(h1, FAULT_NONE);
        vmenc_dek *dek = NULL;
        assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
        vmenc_wrapped_key *wk = NULL;
        vmenc_status st = vmenc_keymgr_wrap_dek(host, "tenant-a", id, dek, &CTX, 1000, &wk);
        if (proof) {
            assert_int_equal(st, VMENC_E_ROUNDTRIP);
            assert_null(wk);
            assert_int_equal(stats(host).roundtrip_failures, 1);
            /* The unproven KEK left the cache: the next wrap fetches the
             * right one, proves it, and its record opens anywhere. */
            assert_int_equal(vmenc_keymgr_wrap_dek(host, "tenant-a", id, dek, &CTX, 1000, &wk), VMENC_OK);
            vmenc_dek *back = NULL;
            assert_int_equal(vmenc_keymgr_unwrap_dek(admin, wk, &CTX, 1000, &back), VMENC_OK);
            assert_int_equal(vmenc_dek_equal(dek, back), VMENC_OK);
            vmenc_dek_free(back);
        } else {
            /* Opted out (benchmarks): the wrap "succeeds", and what it made
             * can never be opened - the loss the proof prevents. */
            assert_int_equal(st, VMENC_OK);
            vmenc_dek *back = NULL;
            assert_int_equal(vmenc_keymgr_unwrap_dek(admin, wk, &CTX, 1000, &back), VMENC_E_AUTH);
            assert_null(back);
            assert_int_equal(stats(host).roundtrip_failures, 0);
        }
        vmenc_wrapped_key_free(wk);
        vmenc_dek_free(dek);
        vmenc_keymgr_free(host);
        vmenc_keymgr_free(admin);
        fault_store_free(s);
    }
}

/* The same for a provider that keeps its KEKs (an HSM): the proof is a
 * remote unwrap, and an HSM that "decrypts" to other bytes is caught. */
static void test_keymgr_roundtrip_proof_remote(void **state) {
    fault_store *s = fault_store_new();
    fault_provider *e0, *e1;
    vmenc_keymgr *m = keymgr_with_cluster(s, true, 0, 0, &e0, &e1);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_keymgr_create_kek(m, "tenant-a", NULL, 1000, id, sizeof(id)), VMENC_OK);
    vmenc_dek *dek = NULL;
    assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
    fault_set_mode(e0, FAULT_WRONG_KEY);
    fault_set_mode(e1, FAULT_WRONG_KEY);
    vmenc_wrapped_key *wk = NULL;
    assert_int_equal(vmenc_keymgr_wrap_dek(m, "tenant-a", id, dek, &CTX, 1000, &wk), VMENC_E_ROUNDTRIP);
    assert_null(wk);
    assert_int_equal(stats(m).roundtrip_failures, 1);
    fault_set_mode(e0, FAULT_NONE);
    fault_set_mode(e1, FAULT_NONE);
    assert_int_equal(vmenc_keymgr_wrap_dek(m, "tenant-a", id, dek, &CTX, 1000, &wk), VMENC_OK);
    vmenc_wrapped_key_free(wk);
    /* Options: an unknown flag is refused; a caller built before the flags
     * field existed (smaller struct_size) gets the proof. */
    vmenc_keymgr *x = NULL;
    vmenc_keymgr_options o = {.struct_size = sizeof(o), .flags = 1u << 5};
    assert_int_equal(vmenc_keymgr_new(&o, &x), VMENC_E_INVALID_ARG);
    o.struct_size = (uint32_t)offsetof(vmenc_keymgr_options, flags);
    assert_int_equal(vmenc_keymgr_new(&o, &x), VMENC_OK);
    vmenc_keymgr_free(x);
    vmenc_dek_free(dek);
    vmenc_keymgr_free(m);
    fault_store_free(s);
}

/* check_record opens |wk| with a brand-new, healthy key manager over
 * |store| and requires exactly |dek|. */
static void check_record(fault_store *store, bool remote, const vmenc_wrapped_key *wk, const vmenc_dek *dek) {
    fault_provider *h0, *h1;
    vmenc_keymgr *h = keymgr_with_cluster(store, remote, 0, 0, &h0, &h1);
    vmenc_dek *back = NULL;
    assert_int_equal(vmenc_keymgr_unwrap_dek(h, wk, &CTX, 1000, &back), VMENC_OK);
    assert_int_equal(vmenc_dek_equal(dek, back), VMENC_OK);
    vmenc_dek_free(back);
    vmenc_keymgr_free(h);
}

/* The central property: whatever the providers do, a key-manager call gives
 * a right answer or an error. Unwrap never yields another DEK; a wrap that
 * succeeds makes a record that opens to the same DEK; a create that succeeds
 * names a key that exists. Every pair of faults on a two-endpoint cluster,
 * local and remote, in three states of the host: KEK cached ("warm"), KEK
 * expired but its check value known ("expired"), and a new host ("fresh").
 * One case cannot be caught and is excluded from the wrap check: a new host
 * that is served a wrong key on first sight wraps under it (nothing to
 * compare with; the record then fails to open with VMENC_E_AUTH — never a
 * wrong DEK). See docs/kms.md. */
static void test_no_fault_yields_wrong_dek(void **state) {
    static const fault_mode modes[] = {FAULT_NONE,      FAULT_DOWN,    FAULT_SLOW,   FAULT_FLAPPING,
                                       FAULT_WRONG_KEY, FAULT_CORRUPT, FAULT_REFUSE, FAULT_TIMEOUT};
    int ok_count = 0, err_count = 0, wraps_ok = 0, creates_ok = 0;
    for (int remote = 0; remote <= 1; remote++) {
        fault_store *s = fault_store_new();
        fault_provider *w0, *w1, *x0, *x1;
        vmenc_keymgr *warm = keymgr_with_cluster(s, remote, 0, 0, &w0, &w1);
        vmenc_keymgr *exp = keymgr_with_cluster(s, remote, 0, 1, &x0, &x1);
        char id[VMENC_KMS_KEY_ID_CAP];
        assert_int_equal(vmenc_keymgr_create_kek(warm, "tenant-a", NULL, 1000, id, sizeof(id)), VMENC_OK);
        vmenc_dek *dek = NULL;
        assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
        vmenc_wrapped_key *wk = NULL;
        assert_int_equal(vmenc_keymgr_wrap_dek(warm, "tenant-a", id, dek, &CTX, 1000, &wk), VMENC_OK);
        vmenc_dek *seen = NULL; /* let "exp" learn the check value */
        assert_int_equal(vmenc_keymgr_unwrap_dek(exp, wk, &CTX, 1000, &seen), VMENC_OK);
        vmenc_dek_free(seen);
        for (size_t a = 0; a < VMENC_ARRAY_LEN(modes); a++) {
            for (size_t b = 0; b < VMENC_ARRAY_LEN(modes); b++) {
                for (int variant = 0; variant < 3; variant++) { /* warm, expired, fresh */
                    fault_provider *t0 = variant == 0 ? w0 : x0, *t1 = variant == 0 ? w1 : x1;
                    vmenc_keymgr *use = variant == 0 ? warm : exp, *tmp = NULL;
                    if (variant == 2)
                        use = tmp = keymgr_with_cluster(s, remote, 0, 0, &t0, &t1);
                    sleep_ms(2); /* back-offs over; "exp" material expired */
                    fault_set_mode(t0, modes[a]);
                    fault_set_mode(t1, modes[b]);
                    fault_set_delay_ms(t0, 1);
                    fault_set_delay_ms(t1, 1);

                    vmenc_dek *back = NULL;
                    vmenc_status st = vmenc_keymgr_unwrap_dek(use, wk, &CTX, 200, &back);
                    if (st == VMENC_OK) {
                        assert_non_null(back);
                        if (vmenc_dek_equal(dek, back) != VMENC_OK)
                            fail_msg("remote=%d modes %d/%d variant %d: WRONG DEK", remote, modes[a], modes[b],
                                     variant);
                        ok_count++;
                    } else {
                        assert_null(back);
                        err_count++;
                    }
                    vmenc_dek_free(back);

                    vmenc_dek *dek2 = NULL;
                    assert_int_equal(vmenc_dek_generate(&dek2), VMENC_OK);
                    vmenc_wrapped_key *wk2 = NULL;
                    vmenc_status ws = vmenc_keymgr_wrap_dek(use, "tenant-a", id, dek2, &CTX, 200, &wk2);
                    char nid[VMENC_KMS_KEY_ID_CAP] = "";
                    vmenc_status cs = vmenc_keymgr_create_kek(use, "tenant-a", NULL, 200, nid, sizeof(nid));
                    fault_set_mode(t0, FAULT_NONE);
                    fault_set_mode(t1, FAULT_NONE);
                    bool first_sight_wrong =
                        variant == 2 && !remote && (modes[a] == FAULT_WRONG_KEY || modes[b] == FAULT_WRONG_KEY);
                    if (ws == VMENC_OK) {
                        assert_non_null(wk2);
                        if (!first_sight_wrong)
                            check_record(s, remote, wk2, dek2);
                        wraps_ok++;
                    } else {
                        assert_null(wk2);
                    }
                    if (cs == VMENC_OK) {
                        /* The new key exists in the KMS: a healthy host can use it. */
                        fault_provider *h0, *h1;
                        vmenc_keymgr *h = keymgr_with_cluster(s, remote, 0, 0, &h0, &h1);
                        vmenc_wrapped_key *wk3 = NULL;
                        assert_int_equal(vmenc_keymgr_wrap_dek(h, "tenant-a", nid, dek2, &CTX, 1000, &wk3), VMENC_OK);
                        vmenc_wrapped_key_free(wk3);
                        vmenc_keymgr_free(h);
                        creates_ok++;
                    } else {
                        assert_string_equal(nid, ""); /* untouched on failure */
                    }
                    vmenc_wrapped_key_free(wk2);
                    vmenc_dek_free(dek2);
                    vmenc_keymgr_free(tmp);
                }
            }
        }
        vmenc_wrapped_key_free(wk);
        vmenc_dek_free(dek);
        vmenc_keymgr_free(warm);
        vmenc_keymgr_free(exp);
        fault_store_free(s);
    }
    /* Both outcomes happened: the matrix is not vacuous. */
    assert_true(ok_count > 0 && err_count > 0 && wraps_ok > 0 && creates_ok > 0);
    print_message("unwrap ok %d, failed %d; wraps ok %d; creates ok %d\n", ok_count, err_count, wraps_ok,
                  creates_ok);
}

/* A check value pinned after a restart closes the first-sight gap. */
/* The round-trip proof's fresh fetch is vetted against a pinned check
 * value: an endpoint serving other bytes fails over there too, instead of
 * failing the proof. Endpoint b is made 3 ms slow so that endpoint a's 1 ms
 * back-off has run out when the proof fetches, and a is asked again. (Seen
 * as a flake of test_keymgr_pinned_check_value under ASan.) */
static void test_keymgr_roundtrip_proof_respects_pin(void **state) {
    fault_store *s = fault_store_new();
    fault_provider *a0, *a1, *b0, *b1;
    vmenc_keymgr *a = keymgr_with_cluster(s, false, 0, 0, &a0, &a1);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_keymgr_create_kek(a, "tenant-a", NULL, 1000, id, sizeof(id)), VMENC_OK);
    uint8_t kcv[VMENC_KEK_CHECK_VALUE_BYTES];
    assert_int_equal(vmenc_keymgr_kek_check_value(a, "tenant-a", id, kcv, sizeof(kcv)), VMENC_OK);
    vmenc_dek *dek = NULL;
    assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
    vmenc_keymgr *b = keymgr_with_cluster(s, false, 0, 0, &b0, &b1);
    assert_int_equal(vmenc_keymgr_pin_check_value(b, "tenant-a", id, kcv, sizeof(kcv)), VMENC_OK);
    fault_set_mode(b0, FAULT_WRONG_KEY);
    fault_set_mode(b1, FAULT_SLOW);
    fault_set_delay_ms(b1, 3);
    for (int i = 0; i < 5; i++) {
        vmenc_wrapped_key *wk = NULL;
        assert_int_equal(vmenc_keymgr_wrap_dek(b, "tenant-a", id, dek, &CTX, 1000, &wk), VMENC_OK);
        check_record(s, false, wk, dek);
        vmenc_wrapped_key_free(wk);
        assert_int_equal(vmenc_keymgr_forget(b, NULL, NULL), VMENC_OK); /* the pin stays */
    }
    assert_int_equal(stats(b).roundtrip_failures, 0);
    vmenc_dek_free(dek);
    vmenc_keymgr_free(a);
    vmenc_keymgr_free(b);
    fault_store_free(s);
}

static void test_keymgr_pinned_check_value(void **state) {
    fault_store *s = fault_store_new();
    fault_provider *a0, *a1;
    vmenc_keymgr *a = keymgr_with_cluster(s, false, 0, 0, &a0, &a1);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_keymgr_create_kek(a, "tenant-a", NULL, 1000, id, sizeof(id)), VMENC_OK);
    uint8_t kcv[VMENC_KEK_CHECK_VALUE_BYTES], kcv2[VMENC_KEK_CHECK_VALUE_BYTES];
    assert_int_equal(vmenc_keymgr_kek_check_value(a, "tenant-a", id, kcv, sizeof(kcv)), VMENC_OK);
    assert_int_equal(vmenc_keymgr_kek_check_value(a, "tenant-a", id, kcv2, 8), VMENC_E_BUFFER_TOO_SMALL);
    assert_int_equal(vmenc_keymgr_kek_check_value(a, "tenant-a", "unknown", kcv2, sizeof(kcv2)),
                     VMENC_E_KEY_NOT_FOUND);
    vmenc_dek *dek = NULL;
    assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);

    /* A restarted host, endpoint 0 serving a wrong key, the pin known. */
    fault_provider *b0, *b1;
    vmenc_keymgr *b = keymgr_with_cluster(s, false, 0, 0, &b0, &b1);
    assert_int_equal(vmenc_keymgr_pin_check_value(b, "tenant-a", id, kcv, sizeof(kcv)), VMENC_OK);
    fault_set_mode(b0, FAULT_WRONG_KEY);
    vmenc_wrapped_key *wk = NULL;
    assert_int_equal(vmenc_keymgr_wrap_dek(b, "tenant-a", id, dek, &CTX, 1000, &wk), VMENC_OK);
    assert_int_equal(stats(b).wrong_keys, 1);
    check_record(s, false, wk, dek); /* wrapped under the right KEK */
    /* Pins outlive forget. */
    assert_int_equal(vmenc_keymgr_forget(b, NULL, NULL), VMENC_OK);
    assert_int_equal(vmenc_keymgr_kek_check_value(b, "tenant-a", id, kcv2, sizeof(kcv2)), VMENC_OK);
    assert_memory_equal(kcv, kcv2, sizeof(kcv));
    fault_set_mode(b1, FAULT_WRONG_KEY);
    vmenc_wrapped_key *wk2 = NULL;
    sleep_ms(2);
    assert_int_equal(vmenc_keymgr_wrap_dek(b, "tenant-a", id, dek, &CTX, 1000, &wk2), VMENC_E_KMS_WRONG_KEY);
    assert_null(wk2);
    vmenc_dek *back = NULL;
    assert_int_equal(vmenc_keymgr_unwrap_dek(b, wk, &CTX, 1000, &back), VMENC_E_AUTH);
    assert_null(back);

    /* A pin that contradicts a cached KEK drops the KEK. */
    fault_set_mode(b0, FAULT_NONE);
    fault_set_mode(b1, FAULT_NONE);
    sleep_ms(2);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_keymgr_get_kek(b, "tenant-a", id, 1000, &k), VMENC_OK);
    vmenc_kek_free(k);
    assert_int_equal(stats(b).cached, 1);
    uint8_t other[VMENC_KEK_CHECK_VALUE_BYTES];
    memcpy(other, kcv, sizeof(other));
    other[0] ^= 1;
    assert_int_equal(vmenc_keymgr_pin_check_value(b, "tenant-a", id, other, sizeof(other)), VMENC_OK);
    assert_int_equal(stats(b).cached, 0);
    k = NULL;
    assert_int_equal(vmenc_keymgr_get_kek(b, "tenant-a", id, 1000, &k), VMENC_E_KMS_WRONG_KEY);
    assert_null(k);
    assert_int_equal(vmenc_keymgr_pin_check_value(b, "tenant-a", id, kcv, 8), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_keymgr_pin_check_value(b, "tenant-z", id, kcv, sizeof(kcv)), VMENC_E_NO_SUCH_PROVIDER);
    /* Destroying the key drops its pin. */
    assert_int_equal(vmenc_keymgr_destroy_kek(b, "tenant-a", id, 1000), VMENC_OK);
    assert_int_equal(vmenc_keymgr_kek_check_value(b, "tenant-a", id, kcv2, sizeof(kcv2)), VMENC_E_KEY_NOT_FOUND);

    vmenc_wrapped_key_free(wk);
    vmenc_dek_free(dek);
    vmenc_keymgr_free(a);
    vmenc_keymgr_free(b);
    fault_store_free(s);
}

static void test_keymgr_revoke_destroy(void **state) {
    fault_store *s = fault_store_new();
    fault_provider *e0, *e1;
    vmenc_keymgr *m = keymgr_with_cluster(s, false, 0, 0, &e0, &e1);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_keymgr_create_kek(m, "tenant-a", NULL, 1000, id, sizeof(id)), VMENC_OK);
    assert_int_equal(stats(m).cached, 1);
    assert_int_equal(vmenc_keymgr_revoke_kek(m, "tenant-a", id, 1000), VMENC_OK);
    assert_int_equal(stats(m).cached, 0); /* dropped at once */
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_keymgr_get_kek(m, "tenant-a", id, 1000, &k), VMENC_E_KEY_STATE);
    assert_int_equal(vmenc_keymgr_destroy_kek(m, "tenant-a", id, 1000), VMENC_OK);
    assert_int_equal(vmenc_keymgr_destroy_kek(m, "tenant-a", "nope", 1000), VMENC_E_KEY_NOT_FOUND);
    size_t healthy = 0;
    assert_int_equal(vmenc_keymgr_check_health(m, "tenant-a", 1000, &healthy), VMENC_OK);
    assert_int_equal(healthy, 2);
    vmenc_keymgr_free(m);
    fault_store_free(s);
}

typedef struct worker {
    vmenc_keymgr *m;
    vmenc_wrapped_key **wks;
    vmenc_dek **deks;
    size_t n;
    int failures;
} worker;

static void *unwrap_worker(void *varg) {
    worker *w = varg;
    for (int i = 0; i < 300; i++) {
        size_t j = (size_t)(i * 7 + (int)(uintptr_t)w % 5) % w->n;
        vmenc_dek *back = NULL;
        if (vmenc_keymgr_unwrap_dek(w->m, w->wks[j], &CTX, 5000, &back) != VMENC_OK ||
            vmenc_dek_equal(back, w->deks[j]) != VMENC_OK)
            w->failures++;
        vmenc_dek_free(back);
        if (i % 50 == 0 && vmenc_keymgr_forget(w->m, "tenant-a", NULL) != VMENC_OK)
            w->failures++;
    }
    return NULL;
}

static void test_keymgr_threads(void **state) {
    fault_store *s = fault_store_new();
    fault_provider *e0, *e1;
    /* capacity 2 with 5 keys: evictions race with unwraps using the KEKs. */
    vmenc_keymgr *m = keymgr_with_cluster(s, false, 2, 0, &e0, &e1);
    fault_set_mode(e0, FAULT_FLAPPING);
    enum { N = 5 };
    vmenc_wrapped_key *wks[N];
    vmenc_dek *deks[N];
    for (size_t i = 0; i < N; i++) {
        char id[VMENC_KMS_KEY_ID_CAP];
        vmenc_status st;
        do { /* flapping endpoint 0 may make a create land on endpoint 1 */
            st = vmenc_keymgr_create_kek(m, "tenant-a", NULL, 1000, id, sizeof(id));
        } while (st != VMENC_OK);
        assert_int_equal(vmenc_dek_generate(&deks[i]), VMENC_OK);
        assert_int_equal(vmenc_keymgr_wrap_dek(m, "tenant-a", id, deks[i], &CTX, 1000, &wks[i]), VMENC_OK);
    }
    pthread_t t[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){m, wks, deks, N, 0};
        assert_int_equal(pthread_create(&t[i], NULL, unwrap_worker, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    vmenc_keymgr_stats st = stats(m);
    assert_true(st.evictions > 0);
    assert_true(st.hits > 0 && st.misses > 0);
    assert_true(st.cached <= 2);
    for (size_t i = 0; i < N; i++) {
        vmenc_wrapped_key_free(wks[i]);
        vmenc_dek_free(deks[i]);
    }
    vmenc_keymgr_free(m);
    fault_store_free(s);
}

static void test_keymgr_with_file_provider(void **state) {
    char dir[] = "/tmp/vmenc-kms-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/ks", dir);
    const char *opts[] = {"create=1", "kdf_ops=1", "kdf_mem_kib=8", NULL};
    vmenc_kms_endpoint_config cfg = {.struct_size = sizeof(cfg), .type = "file", .address = path,
                                     .options = opts, .secret = (const uint8_t *)"pass", .secret_len = 4};
    vmenc_keymgr *m = NULL;
    assert_int_equal(vmenc_keymgr_new(NULL, &m), VMENC_OK);
    assert_int_equal(vmenc_keymgr_add_cluster(m, "native", &cfg, 1, NULL), VMENC_OK);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_keymgr_create_kek(m, "native", "host key", 1000, id, sizeof(id)), VMENC_OK);
    vmenc_dek *dek = NULL, *back = NULL;
    assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
    vmenc_wrapped_key *wk = NULL;
    assert_int_equal(vmenc_keymgr_wrap_dek(m, "native", id, dek, &CTX, 1000, &wk), VMENC_OK);
    vmenc_keymgr_free(m);
    /* A new host process: fresh key manager, KEK fetched from the file. */
    m = NULL;
    assert_int_equal(vmenc_keymgr_new(NULL, &m), VMENC_OK);
    assert_int_equal(vmenc_keymgr_add_cluster(m, "native", &cfg, 1, NULL), VMENC_OK);
    assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk, &CTX, 1000, &back), VMENC_OK);
    assert_int_equal(vmenc_dek_equal(dek, back), VMENC_OK);
    vmenc_dek_free(back);
    vmenc_wrapped_key_free(wk);
    vmenc_dek_free(dek);
    vmenc_keymgr_free(m);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Two file providers on one keystore act as replicas; the first sits behind
 * the fault proxy. A real provider must fail over like the fault doubles. */
static void test_keymgr_file_replicas_with_faults(void **state) {
    char dir[] = "/tmp/vmenc-kms-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/ks", dir);
    vmenc_kms_file_options fo = {.struct_size = sizeof(fo), .flags = VMENC_KMS_FILE_CREATE, .kdf_opslimit = 1,
                                 .kdf_memlimit_kib = 8};
    vmenc_kms_provider *a = NULL, *b = NULL, *proxy = NULL;
    assert_int_equal(vmenc_kms_file_provider_new(path, (const uint8_t *)"pw", 2, &fo, &a), VMENC_OK);
    assert_int_equal(vmenc_kms_file_provider_new(path, (const uint8_t *)"pw", 2, &fo, &b), VMENC_OK);
    assert_int_equal(fault_proxy_new(a, &proxy), VMENC_OK);
    fault_provider *fp = as_fault(proxy);
    vmenc_kms_cluster_options co = {.struct_size = sizeof(co), .backoff_initial_ms = 1, .backoff_max_ms = 1,
                                    .flags = VMENC_KMS_CLUSTER_NO_JITTER};
    vmenc_kms_cluster *c = NULL;
    assert_int_equal(vmenc_kms_cluster_new("native", &co, &c), VMENC_OK);
    assert_int_equal(vmenc_kms_cluster_take_endpoint(c, "a", proxy), VMENC_OK);
    assert_int_equal(vmenc_kms_cluster_take_endpoint(c, "b", b), VMENC_OK);
    vmenc_keymgr_options mo = {.struct_size = sizeof(mo), .cache_ttl_ms = 1};
    vmenc_keymgr *m = NULL;
    assert_int_equal(vmenc_keymgr_new(&mo, &m), VMENC_OK);
    assert_int_equal(vmenc_keymgr_take_cluster(m, c), VMENC_OK);

    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_keymgr_create_kek(m, "native", NULL, 5000, id, sizeof(id)), VMENC_OK);
    vmenc_dek *dek = NULL, *back = NULL;
    assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
    vmenc_wrapped_key *wk = NULL;
    assert_int_equal(vmenc_keymgr_wrap_dek(m, "native", id, dek, &CTX, 5000, &wk), VMENC_OK);
    static const fault_mode modes[] = {FAULT_DOWN, FAULT_WRONG_KEY, FAULT_CORRUPT, FAULT_TIMEOUT, FAULT_FLAPPING};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(modes); i++) {
        sleep_ms(3); /* cached KEK expired, back-off over */
        fault_set_mode(fp, modes[i]);
        assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk, &CTX, 5000, &back), VMENC_OK);
        assert_int_equal(vmenc_dek_equal(dek, back), VMENC_OK);
        vmenc_dek_free(back);
        back = NULL;
    }
    vmenc_keymgr_stats st = stats(m);
    assert_int_equal(st.wrong_keys, 1);
    assert_true(st.failovers >= 4);
    assert_int_equal(st.errors, 0);
    vmenc_wrapped_key_free(wk);
    vmenc_dek_free(dek);
    vmenc_keymgr_free(m);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_provider_abi),
        cmocka_unit_test(test_fault_corrupt_answers_rejected),
        cmocka_unit_test(test_cluster_failover_and_backoff),
        cmocka_unit_test(test_cluster_backoff_endpoints_tried_last),
        cmocka_unit_test(test_cluster_definite_answers_do_not_fail_over),
        cmocka_unit_test(test_cluster_deadline),
        cmocka_unit_test(test_cluster_flapping_and_config),
        cmocka_unit_test(test_keymgr_registry),
        cmocka_unit_test(test_keymgr_wrap_unwrap_cache_hit),
        cmocka_unit_test(test_keymgr_cache_while_kms_down),
        cmocka_unit_test(test_keymgr_lru_and_ttl),
        cmocka_unit_test(test_keymgr_wrong_key_detected),
        cmocka_unit_test(test_keymgr_remote_provider),
        cmocka_unit_test(test_keymgr_roundtrip_proof),
        cmocka_unit_test(test_keymgr_roundtrip_proof_remote),
        cmocka_unit_test(test_no_fault_yields_wrong_dek),
        cmocka_unit_test(test_keymgr_pinned_check_value),
        cmocka_unit_test(test_keymgr_roundtrip_proof_respects_pin),
        cmocka_unit_test(test_keymgr_revoke_destroy),
        cmocka_unit_test(test_keymgr_threads),
        cmocka_unit_test(test_keymgr_with_file_provider),
        cmocka_unit_test(test_keymgr_file_replicas_with_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
