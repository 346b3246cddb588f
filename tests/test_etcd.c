/*
 * tests/test_etcd.c - the etcd client (lib/net/etcd.{c,h}, etcd_parse.c).
 * First the response parser on the gateway's verbatim answers (from
 * tests/support/etcd/README.md) and on the inputs it must refuse; then
 * every call against a real 3-member mutual-TLS etcd 3.4 cluster this test
 * starts and stops itself: kv, compare-and-swap lost and won, leases
 * (expiry, keepalive on an expired lease), watch (events, resume,
 * compaction, failover), one kept connection, and the faults: one member
 * killed (calls go on), two killed (VMENC_E_CONTROL_UNAVAILABLE in bounded
 * time, writes VMENC_E_OUTCOME_UNKNOWN), the leader SIGSTOPped or
 * SIGKILLed while a write is in flight (outcome unknown, then a re-read
 * decides and the change happens exactly once). Exits 77 (skip) when the
 * cluster cannot start here, after the parser tests ran.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "etcd_cluster.h"
#include "net/etcd.h"
#include "vmenc/vmenc.h"

static etcd_cluster g_cluster;

#define S(x) (const uint8_t *)(x), strlen(x)
#define T(x) (x), strlen(x)

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- parser ------------------------------------------------------------------------ */

#define H "\"header\":{\"cluster_id\":\"11298648575041791775\",\"member_id\":\"4545488353963691586\",\"revision\":\"6\",\"raft_term\":\"2\"}"

static vmenc_status parse_range(const char *s, vmenc_etcd_result *r) {
    return vmenc_etcd_parse_result(VMENC_ETCD_OP_RANGE, (const uint8_t *)s, strlen(s), r);
}

static void test_parse_numbers(void **state) {
    (void)state;
    int64_t v;
    uint64_t u;
    assert_true(vmenc_etcd_parse_i64(T("9223372036854775807"), &v) == true);
    assert_true(v == INT64_MAX);
    assert_true(vmenc_etcd_parse_i64("-9223372036854775808", 20, &v));
    assert_true(v == INT64_MIN);
    assert_false(vmenc_etcd_parse_i64(T("9223372036854775808"), &v));
    assert_true(vmenc_etcd_parse_u64(T("18446744073709551615"), &u));
    assert_true(u == UINT64_MAX);
    assert_false(vmenc_etcd_parse_u64(T("18446744073709551616"), &u));
    /* a member ID above 2^53 survives exactly (a double would round it) */
    assert_true(vmenc_etcd_parse_u64(T("17071207639155495058"), &u));
    assert_true(u == 17071207639155495058ull);
    const char *bad[] = {"", "-", "-0", "01", "+1", " 1", "1 ", "1.0", "1e3", "0x10", "--1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(vmenc_etcd_parse_i64(bad[i], strlen(bad[i]), &v));
    assert_true(vmenc_etcd_parse_i64(T("0"), &v) && v == 0);
}

static void test_parse_verbatim(void **state) {
    (void)state;
    vmenc_etcd_result r;
    /* prefix range, two keys */
    assert_int_equal(parse_range("{" H ",\"kvs\":[{\"key\":\"L3ZtZW5jL3ZtL2E=\",\"create_revision\":\"3\","
                                 "\"mod_revision\":\"3\",\"version\":\"1\",\"value\":\"QQ==\"},"
                                 "{\"key\":\"L3ZtZW5jL3ZtL2I=\",\"create_revision\":\"4\",\"mod_revision\":\"5\","
                                 "\"version\":\"2\",\"value\":\"QjI=\"}],\"count\":\"2\"}",
                                 &r),
                     VMENC_OK);
    assert_int_equal(r.num_kvs, 2);
    assert_memory_equal(r.kvs[1].key, "/vmenc/vm/b", 11);
    assert_int_equal(r.kvs[1].value_len, 2);
    assert_memory_equal(r.kvs[1].value, "B2", 2);
    assert_int_equal(r.kvs[1].mod_revision, 5);
    assert_int_equal(r.count, 2);
    assert_true(r.header.cluster_id == 11298648575041791775ull);
    assert_int_equal(r.header.revision, 6);
    vmenc_etcd_result_cleanup(&r);
    /* a missing key: just the header */
    assert_int_equal(parse_range("{" H "}", &r), VMENC_OK);
    assert_int_equal(r.num_kvs, 0);
    assert_int_equal(r.count, 0);
    vmenc_etcd_result_cleanup(&r);

    /* a won CAS and a lost one (no "succeeded" at all) */
    vmenc_etcd_txn_result t;
    const char *won = "{" H ",\"succeeded\":true,\"responses\":[{\"response_put\":{\"header\":{\"revision\":\"6\"}}}]}";
    assert_int_equal(vmenc_etcd_parse_txn((const uint8_t *)won, strlen(won), &t), VMENC_OK);
    assert_true(t.succeeded);
    assert_int_equal(t.num_responses, 1);
    assert_int_equal(t.responses[0].type, VMENC_ETCD_OP_PUT);
    assert_int_equal(t.responses[0].header.revision, 6);
    vmenc_etcd_txn_result_cleanup(&t);
    const char *lost = "{" H ",\"responses\":[{\"response_range\":{\"header\":{\"revision\":\"6\"},\"kvs\":[{\"key\":"
                       "\"L3ZtZW5jL3BvbGljeQ==\",\"create_revision\":\"2\",\"mod_revision\":\"6\",\"version\":\"2\","
                       "\"value\":\"eyJ2IjoyfQ==\"}],\"count\":\"1\"}}]}";
    assert_int_equal(vmenc_etcd_parse_txn((const uint8_t *)lost, strlen(lost), &t), VMENC_OK);
    assert_false(t.succeeded);
    assert_int_equal(t.responses[0].type, VMENC_ETCD_OP_RANGE);
    assert_int_equal(t.responses[0].kvs[0].mod_revision, 6);
    vmenc_etcd_txn_result_cleanup(&t);

    /* keepalive: alive, then expired (no TTL) */
    vmenc_etcd_lease_info li;
    const char *ka = "{\"result\":{" H ",\"ID\":\"5639248120169562391\",\"TTL\":\"3\"}}\n";
    assert_int_equal(vmenc_etcd_parse_lease((const uint8_t *)ka, strlen(ka), true, &li), VMENC_OK);
    assert_true(li.id == 5639248120169562391ll);
    assert_int_equal(li.ttl, 3);
    const char *gone = "{\"result\":{" H ",\"ID\":\"5639248120169562391\"}}";
    assert_int_equal(vmenc_etcd_parse_lease((const uint8_t *)gone, strlen(gone), true, &li), VMENC_OK);
    assert_int_equal(li.ttl, 0);

    /* watch: a DELETE event, a compacted resume */
    vmenc_etcd_watch_msg m;
    const char *del = "{\"result\":{" H ",\"events\":[{\"type\":\"DELETE\",\"kv\":{\"key\":\"L3ZtZW5jL3ZtL2M=\","
                      "\"mod_revision\":\"15\"}}]}}";
    assert_int_equal(vmenc_etcd_parse_watch_msg((const uint8_t *)del, strlen(del), &m), VMENC_OK);
    assert_int_equal(m.num_events, 1);
    assert_int_equal(m.events[0].type, VMENC_ETCD_EVENT_DELETE);
    vmenc_etcd_watch_msg_cleanup(&m);
    const char *cmp = "{\"result\":{" H ",\"canceled\":true,\"compact_revision\":\"10\"}}";
    assert_int_equal(vmenc_etcd_parse_watch_msg((const uint8_t *)cmp, strlen(cmp), &m), VMENC_OK);
    assert_true(m.canceled);
    assert_int_equal(m.compact_revision, 10);
    vmenc_etcd_watch_msg_cleanup(&m);
    const char *serr = "{\"error\":{\"grpc_code\":13,\"http_code\":500,\"message\":\"server closed the stream "
                       "without sending trailers\",\"http_status\":\"Internal Server Error\"}}";
    assert_int_equal(vmenc_etcd_parse_watch_msg((const uint8_t *)serr, strlen(serr), &m),
                     VMENC_E_CONTROL_UNAVAILABLE);
    int code = 0;
    char msg[64];
    assert_int_equal(vmenc_etcd_parse_error((const uint8_t *)serr, strlen(serr), &code, msg, sizeof(msg)), VMENC_OK);
    assert_int_equal(code, 13);
    const char *uerr = "{\"error\":\"etcdserver: request timed out\",\"message\":\"etcdserver: request timed out\","
                       "\"code\":14}";
    assert_int_equal(vmenc_etcd_parse_error((const uint8_t *)uerr, strlen(uerr), &code, msg, sizeof(msg)), VMENC_OK);
    assert_int_equal(code, 14);
    assert_string_equal(msg, "etcdserver: request timed out");

    /* status without quorum */
    vmenc_etcd_member_status ms;
    const char *st = "{" H ",\"version\":\"3.4.23\",\"dbSize\":\"20480\",\"raftIndex\":\"34\",\"errors\":"
                     "[\"etcdserver: no leader\"]}";
    assert_int_equal(vmenc_etcd_parse_status((const uint8_t *)st, strlen(st), &ms), VMENC_OK);
    assert_true(ms.leader == 0 && !ms.is_leader);
    assert_int_equal(ms.num_errors, 1);
    assert_string_equal(ms.first_error, "etcdserver: no leader");
    assert_string_equal(ms.version, "3.4.23");
}

static void test_parse_refuses(void **state) {
    (void)state;
    vmenc_etcd_result r;
    const char *bad[] = {
        "",                                                         /* empty */
        "[]",                                                       /* not an object */
        "{" H ",\"count\":2.0}",                                    /* a double */
        "{" H ",\"count\":\"-1\"}",                                 /* negative count */
        "{\"header\":{\"revision\":\"99999999999999999999\"}}",     /* overflow */
        "{\"header\":{\"revision\":6.5}}",                          /* a double */
        "{\"header\":{\"member_id\":1e30}}",                        /* a double */
        "{" H ",\"kvs\":[{\"key\":\"QQ\"}],\"count\":\"1\"}",       /* unpadded base64 */
        "{" H ",\"kvs\":[{\"key\":\"Q!==\"}],\"count\":\"1\"}",     /* bad base64 */
        "{" H ",\"kvs\":[{\"value\":\"QQ==\"}],\"count\":\"1\"}",   /* no key */
        "{" H ",\"kvs\":[{\"key\":\"QQ==\"}]}",                     /* more kvs than count */
        "{" H ",\"kvs\":{}}",                                       /* wrong type */
        "{" H ",\"more\":\"true\"}",                                /* wrong type */
        "{" H "} x",                                                /* trailing data */
        "{" H,                                                      /* truncated */
        "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", /* depth */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        vmenc_status st = parse_range(bad[i], &r);
        if (st == VMENC_OK)
            fail_msg("accepted: %s", bad[i]);
        assert_int_equal(r.num_kvs, 0);
        assert_null(r.kvs);
    }
    /* a txn answer naming two kinds in one response, or a nested txn */
    vmenc_etcd_txn_result t;
    const char *two = "{\"responses\":[{\"response_put\":{},\"response_range\":{}}]}";
    assert_int_not_equal(vmenc_etcd_parse_txn((const uint8_t *)two, strlen(two), &t), VMENC_OK);
    const char *nested = "{\"responses\":[{\"response_txn\":{}}]}";
    assert_int_not_equal(vmenc_etcd_parse_txn((const uint8_t *)nested, strlen(nested), &t), VMENC_OK);
    /* a NUL inside the body */
    const char nul[] = "{\"header\":{}\0}";
    assert_int_not_equal(vmenc_etcd_parse_result(VMENC_ETCD_OP_RANGE, (const uint8_t *)nul, sizeof(nul) - 1, &r),
                         VMENC_OK);
}

static void test_prefix_end(void **state) {
    (void)state;
    uint8_t out[16];
    size_t n;
    vmenc_etcd_prefix_end(S("/vmenc/vm/"), out, &n);
    assert_int_equal(n, 10);
    assert_memory_equal(out, "/vmenc/vm0", 10);
    const uint8_t ff[] = {'a', 0xff, 0xff};
    vmenc_etcd_prefix_end(ff, 3, out, &n);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 'b');
    const uint8_t all[] = {0xff};
    vmenc_etcd_prefix_end(all, 1, out, &n);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 0);
}

static void test_config_rules(void **state) {
    (void)state;
    vmenc_etcd *c = NULL;
    vmenc_etcd_config cfg = {.struct_size = sizeof(cfg), .ca_file = "a", .cert_file = "b", .key_file = "c"};
    const char *bad[] = {"", "http://127.0.0.1:1", "https://127.0.0.1", "https://127.0.0.1:0",
                         "https://127.0.0.1:70000", "https://127.0.0.1:1/v3", "https://127.0.0.1:1,",
                         "https://a:1,https://b:2,https://c:3,https://d:4,https://e:5,https://f:6,https://g:7,"
                         "https://h:8,https://i:9,https://j:10,https://k:11,https://l:12,https://m:13,https://n:14,"
                         "https://o:15,https://p:16,https://q:17"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.endpoints = bad[i];
        assert_int_equal(vmenc_etcd_new(&cfg, &c), VMENC_E_INVALID_ARG);
    }
    cfg.endpoints = "https://127.0.0.1:1,https://localhost:2";
    assert_int_equal(vmenc_etcd_new(&cfg, &c), VMENC_OK);
    assert_int_equal(vmenc_etcd_num_endpoints(c), 2);
    assert_string_equal(vmenc_etcd_endpoint(c, 1), "https://localhost:2");
    vmenc_etcd_free(c);
}

/* ---- against the cluster --------------------------------------------------------------- */

typedef struct {
    vmenc_etcd *c;
    char pfx[64]; /* a key prefix of this test's own */
} fx;

static int fx_setup(void **state) {
    static int n;
    fx *f = calloc(1, sizeof(*f));
    vmenc_etcd_config cfg;
    etcd_cluster_config(&g_cluster, &cfg);
    cfg.request_timeout_ms = 2000;
    assert_int_equal(vmenc_etcd_new(&cfg, &f->c), VMENC_OK);
    snprintf(f->pfx, sizeof(f->pfx), "/t%d-%d/", (int)getpid(), n++);
    *state = f;
    return 0;
}

static int fx_teardown(void **state) {
    fx *f = *state;
    vmenc_etcd_free(f->c);
    free(f);
    return 0;
}

static const char *k(fx *f, const char *name) {
    static char buf[4][128];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s%s", f->pfx, name);
    return buf[i];
}

static int64_t put_str(fx *f, const char *key, const char *value) {
    vmenc_etcd_put_req p = {.key = S(key), .value = (const uint8_t *)value, .value_len = strlen(value)};
    vmenc_etcd_result r;
    vmenc_status st = vmenc_etcd_put(f->c, &p, &r);
    if (st != VMENC_OK) {
        char err[256];
        vmenc_etcd_last_error(f->c, err, sizeof(err));
        fail_msg("put %s: %s (%s)", key, vmenc_status_name(st), err);
    }
    int64_t rev = r.header.revision;
    vmenc_etcd_result_cleanup(&r);
    return rev;
}

static void test_kv(void **state) {
    fx *f = *state;
    /* bytes, not strings: NUL and 0xff in key and value */
    const uint8_t bkey[] = {'/', 'b', 0, 0xff, 'x'};
    uint8_t key[64];
    size_t plen = strlen(f->pfx);
    memcpy(key, f->pfx, plen);
    memcpy(key + plen, bkey, sizeof(bkey));
    const uint8_t val[] = {0, 1, 2, 0xff, 0xfe};
    vmenc_etcd_put_req p = {.key = key, .key_len = plen + sizeof(bkey), .value = val, .value_len = sizeof(val)};
    vmenc_etcd_result r;
    assert_int_equal(vmenc_etcd_put(f->c, &p, &r), VMENC_OK);
    int64_t rev1 = r.header.revision;
    assert_true(rev1 > 0);
    assert_int_equal(r.num_kvs, 0); /* no prev_kv asked */
    vmenc_etcd_result_cleanup(&r);
    vmenc_etcd_range_req q = {.key = key, .key_len = p.key_len};
    assert_int_equal(vmenc_etcd_range(f->c, &q, &r), VMENC_OK);
    assert_int_equal(r.num_kvs, 1);
    assert_int_equal(r.kvs[0].value_len, sizeof(val));
    assert_memory_equal(r.kvs[0].value, val, sizeof(val));
    assert_int_equal(r.kvs[0].key_len, p.key_len);
    assert_memory_equal(r.kvs[0].key, key, p.key_len);
    assert_int_equal(r.kvs[0].mod_revision, rev1);
    assert_int_equal(r.kvs[0].create_revision, rev1);
    assert_int_equal(r.kvs[0].version, 1);
    vmenc_etcd_result_cleanup(&r);
    /* put with prev_kv returns the old value */
    p.prev_kv = true;
    p.value = (const uint8_t *)"v2";
    p.value_len = 2;
    assert_int_equal(vmenc_etcd_put(f->c, &p, &r), VMENC_OK);
    assert_true(r.header.revision > rev1);
    assert_int_equal(r.num_kvs, 1);
    assert_memory_equal(r.kvs[0].value, val, sizeof(val));
    vmenc_etcd_result_cleanup(&r);
    /* a read at the old revision still sees the old value */
    q.revision = rev1;
    assert_int_equal(vmenc_etcd_range(f->c, &q, &r), VMENC_OK);
    assert_memory_equal(r.kvs[0].value, val, sizeof(val));
    vmenc_etcd_result_cleanup(&r);
    /* missing key: OK and empty */
    vmenc_etcd_range_req miss = {.key = S(k(f, "none"))};
    assert_int_equal(vmenc_etcd_range(f->c, &miss, &r), VMENC_OK);
    assert_int_equal(r.num_kvs, 0);
    vmenc_etcd_result_cleanup(&r);

    /* prefix range, paging, keys_only, count_only, serializable */
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof(name), "p/%d", i);
        put_str(f, k(f, name), "x");
    }
    vmenc_etcd_range_req pr = {.key = S(k(f, "p/")), .prefix = true, .limit = 2};
    assert_int_equal(vmenc_etcd_range(f->c, &pr, &r), VMENC_OK);
    assert_int_equal(r.num_kvs, 2);
    assert_true(r.more);
    assert_int_equal(r.count, 5);
    assert_memory_equal(r.kvs[0].key, k(f, "p/0"), strlen(k(f, "p/0")));
    assert_memory_equal(r.kvs[1].key, k(f, "p/1"), strlen(k(f, "p/1")));
    vmenc_etcd_result_cleanup(&r);
    pr.limit = 0;
    pr.keys_only = true;
    pr.serializable = true;
    assert_int_equal(vmenc_etcd_range(f->c, &pr, &r), VMENC_OK);
    assert_int_equal(r.num_kvs, 5);
    assert_false(r.more);
    assert_int_equal(r.kvs[4].value_len, 0);
    vmenc_etcd_result_cleanup(&r);
    pr.keys_only = false;
    pr.count_only = true;
    assert_int_equal(vmenc_etcd_range(f->c, &pr, &r), VMENC_OK);
    assert_int_equal(r.num_kvs, 0);
    assert_int_equal(r.count, 5);
    vmenc_etcd_result_cleanup(&r);

    /* delete one with prev_kv, then the prefix */
    vmenc_etcd_delete_req d = {.key = S(k(f, "p/0")), .prev_kv = true};
    assert_int_equal(vmenc_etcd_delete_range(f->c, &d, &r), VMENC_OK);
    assert_int_equal(r.deleted, 1);
    assert_int_equal(r.num_kvs, 1);
    assert_memory_equal(r.kvs[0].value, "x", 1);
    vmenc_etcd_result_cleanup(&r);
    vmenc_etcd_delete_req dp = {.key = S(k(f, "p/")), .prefix = true};
    assert_int_equal(vmenc_etcd_delete_range(f->c, &dp, &r), VMENC_OK);
    assert_int_equal(r.deleted, 4);
    vmenc_etcd_result_cleanup(&r);
    assert_int_equal(vmenc_etcd_delete_range(f->c, &dp, &r), VMENC_OK);
    assert_int_equal(r.deleted, 0);
    vmenc_etcd_result_cleanup(&r);

    /* etcd refuses what it must: a read in the future of the store */
    vmenc_etcd_range_req fut = {.key = S(k(f, "x")), .revision = INT64_MAX / 2};
    assert_int_equal(vmenc_etcd_range(f->c, &fut, &r), VMENC_E_CONFLICT);
    /* and we refuse an empty key before sending */
    vmenc_etcd_range_req empty = {.key = (const uint8_t *)"", .key_len = 0};
    assert_int_equal(vmenc_etcd_range(f->c, &empty, &r), VMENC_E_INVALID_ARG);
}

static void test_txn(void **state) {
    fx *f = *state;
    const char *key = k(f, "doc");
    /* create-if-absent: won, then lost (200 without "succeeded") */
    vmenc_etcd_compare absent = {.target = VMENC_ETCD_CMP_CREATE, .key = S(key), .number = 0};
    vmenc_etcd_op put1 = {.type = VMENC_ETCD_OP_PUT, .put = {.key = S(key), .value = S("v1")}};
    vmenc_etcd_op read = {.type = VMENC_ETCD_OP_RANGE, .range = {.key = S(key)}};
    vmenc_etcd_txn_req t = {.compares = &absent, .num_compares = 1, .success = &put1, .num_success = 1,
                            .failure = &read, .num_failure = 1};
    vmenc_etcd_txn_result res;
    assert_int_equal(vmenc_etcd_txn(f->c, &t, &res), VMENC_OK);
    assert_true(res.succeeded);
    int64_t rev = res.responses[0].header.revision;
    assert_true(rev > 0);
    vmenc_etcd_txn_result_cleanup(&res);
    assert_int_equal(vmenc_etcd_txn(f->c, &t, &res), VMENC_OK);
    assert_false(res.succeeded);
    assert_int_equal(res.num_responses, 1);
    assert_int_equal(res.responses[0].kvs[0].mod_revision, rev);
    vmenc_etcd_txn_result_cleanup(&res);

    /* CAS on mod_revision: a stale revision loses, the current one wins */
    vmenc_etcd_compare mod = {.target = VMENC_ETCD_CMP_MOD, .key = S(key), .number = rev - 1};
    vmenc_etcd_op put2 = {.type = VMENC_ETCD_OP_PUT, .put = {.key = S(key), .value = S("v2")}};
    t.compares = &mod;
    t.success = &put2;
    assert_int_equal(vmenc_etcd_txn(f->c, &t, &res), VMENC_OK);
    assert_false(res.succeeded);
    assert_memory_equal(res.responses[0].kvs[0].value, "v1", 2);
    vmenc_etcd_txn_result_cleanup(&res);
    mod.number = rev;
    assert_int_equal(vmenc_etcd_txn(f->c, &t, &res), VMENC_OK);
    assert_true(res.succeeded);
    int64_t rev2 = res.responses[0].header.revision;
    assert_true(rev2 > rev);
    vmenc_etcd_txn_result_cleanup(&res);

    /* VALUE, VERSION, GREATER/LESS/NOT_EQUAL, several compares at once */
    vmenc_etcd_compare many[] = {
        {.target = VMENC_ETCD_CMP_VALUE, .key = S(key), .value = S("v2")},
        {.target = VMENC_ETCD_CMP_VERSION, .key = S(key), .number = 2},
        {.target = VMENC_ETCD_CMP_MOD, .result = VMENC_ETCD_CMP_GREATER, .key = S(key), .number = rev},
        {.target = VMENC_ETCD_CMP_CREATE, .result = VMENC_ETCD_CMP_LESS, .key = S(key), .number = rev2},
        {.target = VMENC_ETCD_CMP_LEASE, .key = S(key), .number = 0},
        {.target = VMENC_ETCD_CMP_VALUE, .result = VMENC_ETCD_CMP_NOT_EQUAL, .key = S(key), .value = S("v1")},
    };
    vmenc_etcd_op del = {.type = VMENC_ETCD_OP_DELETE, .del = {.key = S(key), .prev_kv = true}};
    vmenc_etcd_txn_req t2 = {.compares = many, .num_compares = 6, .success = &del, .num_success = 1};
    assert_int_equal(vmenc_etcd_txn(f->c, &t2, &res), VMENC_OK);
    assert_true(res.succeeded);
    assert_int_equal(res.responses[0].type, VMENC_ETCD_OP_DELETE);
    assert_int_equal(res.responses[0].deleted, 1);
    assert_memory_equal(res.responses[0].kvs[0].value, "v2", 2);
    vmenc_etcd_txn_result_cleanup(&res);
    /* the same compares now fail: nothing in the failure branch */
    assert_int_equal(vmenc_etcd_txn(f->c, &t2, &res), VMENC_OK);
    assert_false(res.succeeded);
    assert_int_equal(res.num_responses, 0);
    vmenc_etcd_txn_result_cleanup(&res);
    /* a read-only txn */
    vmenc_etcd_txn_req t3 = {.success = &read, .num_success = 1};
    assert_int_equal(vmenc_etcd_txn(f->c, &t3, &res), VMENC_OK);
    assert_true(res.succeeded);
    assert_int_equal(res.responses[0].num_kvs, 0);
    vmenc_etcd_txn_result_cleanup(&res);
}

static bool key_exists(fx *f, const char *key) {
    vmenc_etcd_range_req q = {.key = S(key)};
    vmenc_etcd_result r;
    assert_int_equal(vmenc_etcd_range(f->c, &q, &r), VMENC_OK);
    bool e = r.num_kvs > 0;
    vmenc_etcd_result_cleanup(&r);
    return e;
}

static void test_lease(void **state) {
    fx *f = *state;
    int64_t id = 0, ttl = 0, granted = 0;
    assert_int_equal(vmenc_etcd_lease_grant(f->c, 30, 0, &id, &ttl), VMENC_OK);
    assert_true(id > 0);
    assert_int_equal(ttl, 30);
    vmenc_etcd_put_req p = {.key = S(k(f, "owner")), .value = S("host-1"), .lease = id};
    assert_int_equal(vmenc_etcd_put(f->c, &p, NULL), VMENC_OK);
    vmenc_etcd_range_req q = {.key = S(k(f, "owner"))};
    vmenc_etcd_result r;
    assert_int_equal(vmenc_etcd_range(f->c, &q, &r), VMENC_OK);
    assert_true(r.kvs[0].lease == id); /* a 64-bit ID, exactly */
    vmenc_etcd_result_cleanup(&r);
    assert_int_equal(vmenc_etcd_lease_timetolive(f->c, id, &ttl, &granted), VMENC_OK);
    assert_true(ttl > 0 && ttl <= 30);
    assert_int_equal(granted, 30);
    assert_int_equal(vmenc_etcd_lease_keepalive_once(f->c, id, &ttl), VMENC_OK);
    assert_int_equal(ttl, 30);
    /* revoke deletes the keys; the lease is then gone for every call */
    assert_int_equal(vmenc_etcd_lease_revoke(f->c, id), VMENC_OK);
    assert_false(key_exists(f, k(f, "owner")));
    assert_int_equal(vmenc_etcd_lease_revoke(f->c, id), VMENC_E_LEASE_EXPIRED);
    assert_int_equal(vmenc_etcd_put(f->c, &p, NULL), VMENC_E_LEASE_EXPIRED);

    /* expiry: a short lease not kept alive takes its key with it */
    int64_t id2 = 0;
    assert_int_equal(vmenc_etcd_lease_grant(f->c, 1, 0, &id2, &ttl), VMENC_OK);
    assert_true(ttl >= 1); /* etcd raises it to its minimum (2 s here) */
    p.key = (const uint8_t *)k(f, "owner2");
    p.key_len = strlen((const char *)p.key);
    p.lease = id2;
    assert_int_equal(vmenc_etcd_put(f->c, &p, NULL), VMENC_OK);
    assert_true(key_exists(f, k(f, "owner2")));
    uint64_t t0 = now_ms();
    while (key_exists(f, k(f, "owner2")) && now_ms() - t0 < 10000)
        sleep_ms(100);
    assert_false(key_exists(f, k(f, "owner2")));
    /* keepalive on the expired lease: 200 without TTL -> lease expired */
    assert_int_equal(vmenc_etcd_lease_keepalive_once(f->c, id2, &ttl), VMENC_E_LEASE_EXPIRED);
    assert_int_equal(vmenc_etcd_lease_timetolive(f->c, id2, &ttl, NULL), VMENC_E_LEASE_EXPIRED);
    assert_int_equal(vmenc_etcd_put(f->c, &p, NULL), VMENC_E_LEASE_EXPIRED);
}

/* ---- watch ------------------------------------------------------------------------------ */

typedef struct {
    vmenc_etcd_watch *w;
    int stop_after;      /* events; 0: never */
    int num;
    char values[64][16];
    int types[64];
    int64_t revs[64];
    bool created;
    vmenc_status rc;
    pthread_mutex_t mu; /* the watch thread writes, the test thread polls */
} watch_log;

static void log_init(watch_log *l, int stop_after) {
    memset(l, 0, sizeof(*l));
    l->stop_after = stop_after;
    pthread_mutex_init(&l->mu, NULL);
}

static int log_num(watch_log *l) {
    pthread_mutex_lock(&l->mu);
    int n = l->num;
    pthread_mutex_unlock(&l->mu);
    return n;
}

static bool log_created(watch_log *l) {
    pthread_mutex_lock(&l->mu);
    bool c = l->created;
    pthread_mutex_unlock(&l->mu);
    return c;
}

static int watch_cb_locked(watch_log *l, const vmenc_etcd_watch_msg *m);
static int watch_cb(void *arg, const vmenc_etcd_watch_msg *m) {
    watch_log *l = arg;
    pthread_mutex_lock(&l->mu);
    int rc = watch_cb_locked(l, m);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

static int watch_cb_locked(watch_log *l, const vmenc_etcd_watch_msg *m) {
    if (m->created)
        l->created = true;
    for (size_t i = 0; i < m->num_events && l->num < 64; i++) {
        const vmenc_etcd_event *e = &m->events[i];
        snprintf(l->values[l->num], sizeof(l->values[0]), "%.*s", (int)e->kv.value_len, (const char *)e->kv.value);
        l->types[l->num] = e->type;
        l->revs[l->num] = e->kv.mod_revision;
        l->num++;
    }
    return l->stop_after > 0 && l->num >= l->stop_after;
}

static void *watch_thread(void *arg) {
    watch_log *l = arg;
    l->rc = vmenc_etcd_watch_run(l->w, watch_cb, l);
    return NULL;
}

static void test_watch_replay_and_resume(void **state) {
    fx *f = *state;
    int64_t r1 = put_str(f, k(f, "w/a"), "a1");
    put_str(f, k(f, "w/b"), "b1");
    put_str(f, k(f, "other"), "not watched");
    vmenc_etcd_delete_req d = {.key = S(k(f, "w/a"))};
    assert_int_equal(vmenc_etcd_delete_range(f->c, &d, NULL), VMENC_OK);
    /* replay from r1: three events of the prefix, in order */
    vmenc_etcd_watch_req wr = {.key = S(k(f, "w/")), .prefix = true, .start_revision = r1, .prev_kv = true};
    watch_log l;
    log_init(&l, 3);
    assert_int_equal(vmenc_etcd_watch_new(f->c, &wr, &l.w), VMENC_OK);
    assert_int_equal(vmenc_etcd_watch_run(l.w, watch_cb, &l), VMENC_OK);
    assert_int_equal(l.num, 3);
    assert_string_equal(l.values[0], "a1");
    assert_string_equal(l.values[1], "b1");
    assert_int_equal(l.types[2], VMENC_ETCD_EVENT_DELETE);
    int64_t next = vmenc_etcd_watch_next_revision(l.w);
    assert_int_equal(next, l.revs[2] + 1);
    /* changes while nobody watches are delivered on resume, once */
    put_str(f, k(f, "w/c"), "c1");
    put_str(f, k(f, "w/c"), "c2");
    l.num = 0;
    l.stop_after = 2;
    assert_int_equal(vmenc_etcd_watch_run(l.w, watch_cb, &l), VMENC_OK);
    assert_int_equal(l.num, 2);
    assert_string_equal(l.values[0], "c1");
    assert_string_equal(l.values[1], "c2");
    vmenc_etcd_watch_free(l.w);
}

static void test_watch_live_cancel(void **state) {
    fx *f = *state;
    vmenc_etcd_watch_req wr = {.key = S(k(f, "live/")), .prefix = true};
    watch_log l;
    log_init(&l, 0);
    assert_int_equal(vmenc_etcd_watch_new(f->c, &wr, &l.w), VMENC_OK);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, watch_thread, &l), 0);
    uint64_t t0 = now_ms();
    while (!log_created(&l) && now_ms() - t0 < 5000)
        sleep_ms(10);
    put_str(f, k(f, "live/1"), "one");
    put_str(f, k(f, "live/2"), "two");
    t0 = now_ms();
    while (log_num(&l) < 2 && now_ms() - t0 < 5000)
        sleep_ms(10);
    /* cancel from another thread ends the run promptly */
    uint64_t tc = now_ms();
    vmenc_etcd_watch_cancel(l.w);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(now_ms() - tc < 1000);
    assert_int_equal(l.rc, VMENC_OK);
    assert_int_equal(l.num, 2);
    assert_string_equal(l.values[1], "two");
    vmenc_etcd_watch_free(l.w);
}

static void test_watch_compacted(void **state) {
    fx *f = *state;
    int64_t r1 = put_str(f, k(f, "cw/a"), "1");
    int64_t r2 = put_str(f, k(f, "cw/a"), "2");
    assert_int_equal(vmenc_etcd_compact(f->c, r2), VMENC_OK);
    vmenc_etcd_watch_req wr = {.key = S(k(f, "cw/")), .prefix = true, .start_revision = r1};
    watch_log l;
    log_init(&l, 1);
    assert_int_equal(vmenc_etcd_watch_new(f->c, &wr, &l.w), VMENC_OK);
    assert_int_equal(vmenc_etcd_watch_run(l.w, watch_cb, &l), VMENC_E_CONFLICT);
    assert_int_equal(vmenc_etcd_watch_compact_revision(l.w), r2);
    assert_int_equal(l.num, 0);
    vmenc_etcd_watch_free(l.w);
    /* and a read at the compacted revision says so too */
    vmenc_etcd_range_req q = {.key = S(k(f, "cw/a")), .revision = r1};
    vmenc_etcd_result r;
    assert_int_equal(vmenc_etcd_range(f->c, &q, &r), VMENC_E_CONFLICT);
}

/* One kept connection: many calls, one connect. */
static void test_kept_connection(void **state) {
    fx *f = *state;
    vmenc_etcd_counters before, after;
    put_str(f, k(f, "kc"), "x");
    vmenc_etcd_counters_get(f->c, &before);
    for (int i = 0; i < 50; i++)
        assert_true(key_exists(f, k(f, "kc")));
    vmenc_etcd_counters_get(f->c, &after);
    assert_int_equal(after.requests - before.requests, 50);
    assert_int_equal(after.connects - before.connects, 0);
    assert_int_equal(after.failovers - before.failovers, 0);
    /* HTTP/2 works too */
    vmenc_etcd_config cfg;
    etcd_cluster_config(&g_cluster, &cfg);
    cfg.http2 = true;
    vmenc_etcd *h2 = NULL;
    assert_int_equal(vmenc_etcd_new(&cfg, &h2), VMENC_OK);
    fx f2 = *f;
    f2.c = h2;
    assert_true(key_exists(&f2, k(f, "kc")));
    vmenc_etcd_free(h2);
}

static void test_tls_refused(void **state) {
    (void)state;
    vmenc_etcd_config cfg;
    etcd_cluster_config(&g_cluster, &cfg);
    /* the client cert as CA: no server certificate chains to it */
    cfg.ca_file = g_cluster.cert;
    vmenc_etcd *c = NULL;
    assert_int_equal(vmenc_etcd_new(&cfg, &c), VMENC_OK);
    vmenc_etcd_range_req q = {.key = S("/x")};
    vmenc_etcd_result r;
    assert_int_equal(vmenc_etcd_range(c, &q, &r), VMENC_E_KMS_CERT_VERIFY);
    vmenc_etcd_free(c);
    /* nothing listening: unavailable, at once */
    etcd_cluster_config(&g_cluster, &cfg);
    cfg.endpoints = "https://127.0.0.1:1";
    assert_int_equal(vmenc_etcd_new(&cfg, &c), VMENC_OK);
    uint64_t t0 = now_ms();
    memset(&r, 0xab, sizeof(r)); /* a caller's uninitialised result */
    assert_int_equal(vmenc_etcd_range(c, &q, &r), VMENC_E_CONTROL_UNAVAILABLE);
    assert_null(r.kvs); /* zeroed on failure: cleanup is safe */
    assert_int_equal(r.num_kvs, 0);
    vmenc_etcd_result_cleanup(&r);
    vmenc_etcd_put_req p = {.key = S("/x"), .value = S("y")};
    assert_int_equal(vmenc_etcd_put(c, &p, NULL), VMENC_E_CONTROL_UNAVAILABLE); /* nothing sent: not "unknown" */
    assert_true(now_ms() - t0 < 1500);
    char err[256];
    vmenc_etcd_last_error(c, err, sizeof(err));
    assert_non_null(strstr(err, "127.0.0.1:1"));
    vmenc_etcd_free(c);
}

/* ---- faults (in this order; each leaves all three members running) -------------------------- */

/* a client whose first endpoint is member |first| (then the others) */
static vmenc_etcd *client_first(int first, uint32_t timeout_ms) {
    static char eps[512];
    snprintf(eps, sizeof(eps), "%s", g_cluster.urls[first]);
    for (int i = 0; i < ETCD_CLUSTER_MEMBERS; i++)
        if (i != first) {
            size_t l = strlen(eps);
            snprintf(eps + l, sizeof(eps) - l, ",%s", g_cluster.urls[i]);
        }
    vmenc_etcd_config cfg;
    etcd_cluster_config(&g_cluster, &cfg);
    cfg.endpoints = eps;
    cfg.request_timeout_ms = timeout_ms;
    vmenc_etcd *c = NULL;
    assert_int_equal(vmenc_etcd_new(&cfg, &c), VMENC_OK);
    return c;
}

static int wait_leader(vmenc_etcd *c) {
    uint64_t t0 = now_ms();
    int l;
    while ((l = etcd_cluster_leader(&g_cluster, c)) < 0 && now_ms() - t0 < 10000)
        sleep_ms(50);
    return l;
}

/* One member (a follower: the leader's loss is the tests below) killed:
 * every call goes on through the others, and a watch served by the killed
 * member resumes elsewhere without losing an event. */
static void test_fault_one_member(void **state) {
    fx *f = *state;
    vmenc_etcd *any = client_first(0, 2000);
    int leader = wait_leader(any);
    vmenc_etcd_free(any);
    assert_true(leader >= 0);
    int victim = (leader + 1) % ETCD_CLUSTER_MEMBERS;
    vmenc_etcd *c = client_first(victim, 2000);
    fx g = *f;
    g.c = c;
    put_str(&g, k(f, "m/a"), "before");
    vmenc_etcd_watch_req wr = {.key = S(k(f, "m/")), .prefix = true};
    watch_log l;
    log_init(&l, 3);
    assert_int_equal(vmenc_etcd_watch_new(c, &wr, &l.w), VMENC_OK);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, watch_thread, &l), 0);
    uint64_t t0 = now_ms();
    while (!log_created(&l) && now_ms() - t0 < 5000)
        sleep_ms(10);
    put_str(&g, k(f, "m/b"), "w1");

    assert_int_equal(etcd_cluster_kill(&g_cluster, victim), 0);
    vmenc_etcd_counters before, after;
    vmenc_etcd_counters_get(c, &before);
    put_str(&g, k(f, "m/b"), "w2");
    put_str(&g, k(f, "m/c"), "w3");
    assert_true(key_exists(&g, k(f, "m/a")));
    vmenc_etcd_compare cmp = {.target = VMENC_ETCD_CMP_CREATE, .key = S(k(f, "mnew")), .number = 0};
    vmenc_etcd_op put = {.type = VMENC_ETCD_OP_PUT, .put = {.key = S(k(f, "mnew")), .value = S("x")}};
    vmenc_etcd_txn_req t = {.compares = &cmp, .num_compares = 1, .success = &put, .num_success = 1};
    vmenc_etcd_txn_result res;
    assert_int_equal(vmenc_etcd_txn(c, &t, &res), VMENC_OK);
    assert_true(res.succeeded);
    vmenc_etcd_txn_result_cleanup(&res);
    int64_t id, ttl;
    assert_int_equal(vmenc_etcd_lease_grant(c, 10, 0, &id, &ttl), VMENC_OK);
    assert_int_equal(vmenc_etcd_lease_keepalive_once(c, id, &ttl), VMENC_OK);
    assert_int_equal(vmenc_etcd_lease_revoke(c, id), VMENC_OK);
    vmenc_etcd_counters_get(c, &after);
    assert_true(after.failovers > before.failovers); /* it did move off the dead member */
    vmenc_etcd_member_status ms;
    assert_int_equal(vmenc_etcd_status(c, 0, &ms), VMENC_E_CONTROL_UNAVAILABLE);

    /* the watch moved to another member and saw w1, w2, w3 exactly once */
    t0 = now_ms();
    while (log_num(&l) < 3 && now_ms() - t0 < 5000)
        sleep_ms(10);
    vmenc_etcd_watch_cancel(l.w);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(l.rc, VMENC_OK);
    assert_int_equal(l.num, 3);
    assert_string_equal(l.values[0], "w1");
    assert_string_equal(l.values[1], "w2");
    assert_string_equal(l.values[2], "w3");
    vmenc_etcd_watch_free(l.w);

    assert_int_equal(etcd_cluster_restart(&g_cluster, victim), 0);
    assert_int_equal(vmenc_etcd_status(c, 0, &ms), VMENC_OK);
    vmenc_etcd_free(c);
}

/* Two members killed: no quorum. Reads and writes end in bounded time with
 * the control-plane status (writes that reached the survivor: outcome
 * unknown); a serializable read still answers; the survivor says it has
 * no leader. */
static void test_fault_quorum_lost(void **state) {
    fx *f = *state;
    vmenc_etcd *c = client_first(2, 1500);
    fx g = *f;
    g.c = c;
    put_str(&g, k(f, "q"), "before");
    assert_int_equal(etcd_cluster_kill(&g_cluster, 0), 0);
    assert_int_equal(etcd_cluster_kill(&g_cluster, 1), 0);

    vmenc_etcd_range_req ser = {.key = S(k(f, "q")), .serializable = true};
    vmenc_etcd_result r;
    assert_int_equal(vmenc_etcd_range(c, &ser, &r), VMENC_OK);
    assert_memory_equal(r.kvs[0].value, "before", 6);
    vmenc_etcd_result_cleanup(&r);

    uint64_t t0 = now_ms();
    vmenc_etcd_range_req lin = {.key = S(k(f, "q"))};
    assert_int_equal(vmenc_etcd_range(c, &lin, &r), VMENC_E_CONTROL_UNAVAILABLE);
    uint64_t t_read = now_ms() - t0;
    t0 = now_ms();
    vmenc_etcd_put_req p = {.key = S(k(f, "q")), .value = S("during")};
    assert_int_equal(vmenc_etcd_put(c, &p, NULL), VMENC_E_OUTCOME_UNKNOWN);
    uint64_t t_write = now_ms() - t0;
    int64_t id, ttl;
    assert_int_equal(vmenc_etcd_lease_grant(c, 10, 0, &id, &ttl), VMENC_E_OUTCOME_UNKNOWN);
    print_message("quorum lost: read refused after %llu ms, write unknown after %llu ms (timeout 1500 ms)\n",
                  (unsigned long long)t_read, (unsigned long long)t_write);
    assert_true(t_read < 1500 * 3 + 1000);
    assert_true(t_write < 1500 + 1000);
    vmenc_etcd_member_status ms;
    assert_int_equal(vmenc_etcd_status(c, 0, &ms), VMENC_OK);
    assert_true(ms.leader == 0);
    assert_true(ms.num_errors > 0);
    assert_non_null(strstr(ms.first_error, "no leader"));

    assert_int_equal(etcd_cluster_restart(&g_cluster, 0), 0);
    assert_int_equal(etcd_cluster_restart(&g_cluster, 1), 0);
    /* back: the re-read decides what the unknown write did */
    assert_int_equal(vmenc_etcd_range(c, &lin, &r), VMENC_OK);
    assert_true(memcmp(r.kvs[0].value, "before", 6) == 0 || memcmp(r.kvs[0].value, "during", 6) == 0);
    vmenc_etcd_result_cleanup(&r);
    vmenc_etcd_free(c);
}

/* cas_increment: read the counter, CAS it +1; returns the status of the
 * CAS and the revision it compared against. */
static vmenc_status cas_increment(vmenc_etcd *c, const char *key, int *value_read, int64_t *rev_read) {
    vmenc_etcd_range_req q = {.key = S(key)};
    vmenc_etcd_result r;
    vmenc_status st = vmenc_etcd_range(c, &q, &r);
    if (st != VMENC_OK)
        return st;
    *value_read = atoi((const char *)r.kvs[0].value);
    *rev_read = r.kvs[0].mod_revision;
    vmenc_etcd_result_cleanup(&r);
    char next[16];
    snprintf(next, sizeof(next), "%d", *value_read + 1);
    vmenc_etcd_compare cmp = {.target = VMENC_ETCD_CMP_MOD, .key = S(key), .number = *rev_read};
    vmenc_etcd_op put = {.type = VMENC_ETCD_OP_PUT, .put = {.key = S(key), .value = S(next)}};
    vmenc_etcd_txn_req t = {.compares = &cmp, .num_compares = 1, .success = &put, .num_success = 1};
    vmenc_etcd_txn_result res;
    st = vmenc_etcd_txn(c, &t, &res);
    if (st == VMENC_OK && !res.succeeded)
        st = VMENC_E_CONFLICT;
    vmenc_etcd_txn_result_cleanup(&res);
    return st;
}

static int counter_value(vmenc_etcd *c, const char *key, int64_t *version) {
    vmenc_etcd_range_req q = {.key = S(key)};
    vmenc_etcd_result r;
    assert_int_equal(vmenc_etcd_range(c, &q, &r), VMENC_OK);
    int v = atoi((const char *)r.kvs[0].value);
    *version = r.kvs[0].version;
    vmenc_etcd_result_cleanup(&r);
    return v;
}

/* increment_once: the caller's side of "outcome unknown": re-read, and if
 * the counter did not move since the revision compared against, try again;
 * returns how many attempts reported VMENC_E_OUTCOME_UNKNOWN. */
static int increment_once(vmenc_etcd *c, const char *key, int start_value) {
    int unknown = 0;
    for (int attempt = 0; attempt < 20; attempt++) {
        int64_t ver;
        if (counter_value(c, key, &ver) == start_value + 1)
            return unknown; /* the unknown write did happen */
        int v;
        int64_t rev;
        vmenc_status st = cas_increment(c, key, &v, &rev);
        if (st == VMENC_OK)
            return unknown;
        if (st == VMENC_E_OUTCOME_UNKNOWN) {
            unknown++;
            /* re-read: if it happened, done */
            vmenc_etcd_range_req q = {.key = S(key)};
            vmenc_etcd_result r;
            for (int i = 0; i < 50 && vmenc_etcd_range(c, &q, &r) != VMENC_OK; i++)
                sleep_ms(100);
            int now = atoi((const char *)r.kvs[0].value);
            vmenc_etcd_result_cleanup(&r);
            if (now == start_value + 1)
                return unknown;
            continue;
        }
        if (st == VMENC_E_CONFLICT || st == VMENC_E_CONTROL_UNAVAILABLE) {
            sleep_ms(100);
            continue;
        }
        fail_msg("increment: %s", vmenc_status_name(st));
    }
    fail_msg("increment did not finish");
    return unknown;
}


/* The leader stops (SIGSTOP) while a compare-and-swap sent to it on the
 * kept connection waits unread: the client reports the outcome unknown
 * (not failed) after its timeout; after SIGCONT the stopped member may
 * still pass the request on, so a re-read decides, and the increment
 * happens exactly once (the CAS makes the retry safe). */
static void test_fault_leader_sigstop(void **state) {
    fx *f = *state;
    vmenc_etcd *any = client_first(0, 2000);
    int leader = wait_leader(any);
    assert_true(leader >= 0);
    vmenc_etcd *c = client_first(leader, 1500);
    fx g = *f;
    g.c = c;
    const char *key = k(f, "ctr-stop");
    put_str(&g, key, "0");
    vmenc_etcd_range_req q = {.key = S(key)};
    vmenc_etcd_result r;
    assert_int_equal(vmenc_etcd_range(c, &q, &r), VMENC_OK); /* the connection to the leader is up */
    int64_t rev = r.kvs[0].mod_revision;
    vmenc_etcd_result_cleanup(&r);
    assert_int_equal(etcd_cluster_signal(&g_cluster, leader, SIGSTOP), 0);
    vmenc_etcd_compare cmp = {.target = VMENC_ETCD_CMP_MOD, .key = S(key), .number = rev};
    vmenc_etcd_op put = {.type = VMENC_ETCD_OP_PUT, .put = {.key = S(key), .value = S("1")}};
    vmenc_etcd_txn_req t = {.compares = &cmp, .num_compares = 1, .success = &put, .num_success = 1};
    vmenc_etcd_txn_result res;
    uint64_t t0 = now_ms();
    vmenc_status st = vmenc_etcd_txn(c, &t, &res);
    uint64_t took = now_ms() - t0;
    assert_int_equal(etcd_cluster_signal(&g_cluster, leader, SIGCONT), 0);
    print_message("leader SIGSTOP mid-write: %s after %llu ms\n", vmenc_status_name(st), (unsigned long long)took);
    assert_int_equal(st, VMENC_E_OUTCOME_UNKNOWN);
    assert_true(took < 1500 + 1000);
    sleep_ms(300);
    increment_once(c, key, 0);
    int64_t ver;
    assert_int_equal(counter_value(any, key, &ver), 1);
    assert_int_equal(ver, 2); /* created, then written exactly once */
    vmenc_etcd_free(c);
    vmenc_etcd_free(any);
}

/* The write is sent to the leader, which is stopped and then killed before
 * it reads it: the client sees the connection die after sending -> outcome
 * unknown (deterministically), the re-read shows it did not happen, the
 * retry applies it once. */
static void test_fault_leader_sigkill(void **state) {
    fx *f = *state;
    vmenc_etcd *any = client_first(0, 2000);
    int leader = wait_leader(any);
    assert_true(leader >= 0);
    vmenc_etcd *c = client_first(leader, 5000);
    fx g = *f;
    g.c = c;
    const char *key = k(f, "ctr-kill");
    put_str(&g, key, "0");
    vmenc_etcd_range_req q = {.key = S(key)};
    vmenc_etcd_result r;
    assert_int_equal(vmenc_etcd_range(c, &q, &r), VMENC_OK);
    int64_t rev = r.kvs[0].mod_revision;
    vmenc_etcd_result_cleanup(&r);

    assert_int_equal(etcd_cluster_signal(&g_cluster, leader, SIGSTOP), 0);
    /* the kill lands while the request sits unread in the stopped leader */
    pid_t killer = fork();
    assert_true(killer >= 0);
    if (killer == 0) {
        sleep_ms(300);
        kill(g_cluster.pids[leader], SIGKILL);
        kill(g_cluster.pids[leader], SIGCONT);
        _exit(0);
    }
    vmenc_etcd_compare cmp = {.target = VMENC_ETCD_CMP_MOD, .key = S(key), .number = rev};
    vmenc_etcd_op put = {.type = VMENC_ETCD_OP_PUT, .put = {.key = S(key), .value = S("1")}};
    vmenc_etcd_txn_req t = {.compares = &cmp, .num_compares = 1, .success = &put, .num_success = 1};
    vmenc_etcd_txn_result res;
    uint64_t t0 = now_ms();
    assert_int_equal(vmenc_etcd_txn(c, &t, &res), VMENC_E_OUTCOME_UNKNOWN);
    print_message("leader SIGKILL mid-write: outcome unknown after %llu ms\n", (unsigned long long)(now_ms() - t0));
    int wst;
    assert_int_equal(waitpid(killer, &wst, 0), killer);
    assert_int_equal(etcd_cluster_kill(&g_cluster, leader), 0);
    /* the caller re-reads (through the others) and retries: exactly once */
    increment_once(c, key, 0);
    int64_t ver;
    assert_int_equal(counter_value(any, key, &ver), 1);
    assert_int_equal(ver, 2);
    assert_int_equal(etcd_cluster_restart(&g_cluster, leader), 0);
    vmenc_etcd_free(c);
    vmenc_etcd_free(any);
}

static int cluster_group_setup(void **state) {
    (void)state;
    return 0;
}

int main(void) {
    const struct CMUnitTest parser[] = {
        cmocka_unit_test(test_parse_numbers),  cmocka_unit_test(test_parse_verbatim),
        cmocka_unit_test(test_parse_refuses),  cmocka_unit_test(test_prefix_end),
        cmocka_unit_test(test_config_rules),
    };
    if (vmenc_init() != VMENC_OK)
        return 1;
    int rc = cmocka_run_group_tests_name("etcd parser", parser, NULL, NULL);
    if (rc != 0)
        return rc;
    if (etcd_cluster_start(&g_cluster) != 0)
        return 77;
    const struct CMUnitTest cluster[] = {
        cmocka_unit_test_setup_teardown(test_kv, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_txn, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_lease, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_watch_replay_and_resume, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_watch_live_cancel, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_watch_compacted, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_kept_connection, fx_setup, fx_teardown),
        cmocka_unit_test(test_tls_refused),
        cmocka_unit_test_setup_teardown(test_fault_one_member, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_fault_quorum_lost, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_fault_leader_sigstop, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_fault_leader_sigkill, fx_setup, fx_teardown),
    };
    rc = cmocka_run_group_tests_name("etcd cluster", cluster, cluster_group_setup, NULL);
    etcd_cluster_stop(&g_cluster);
    return rc;
}
