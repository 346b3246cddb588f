/*
 * tests/test_cluster.c - the parts of cluster mode that need no etcd
 * (docs/cluster.md): the fencing deadline rule, cluster names, the two
 * JSON documents (strict: unknown, missing, mistyped or out-of-range
 * fields refused; round trip), and that a single-host workspace reports
 * itself as such and refuses the cluster-only calls. The behaviour with a
 * real etcd cluster and two hosts is tests/cluster.test.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/etcd/cluster.h"
#include "workspace/ws_cluster.h"
#include "vmenc/vmenc.h"

static void test_fence_deadline(void **state) {
    (void)state;
    /* last keepalive sent at t, TTL 5 s, margin 1 s: write until t + 4 s */
    assert_int_equal(ctl_cluster_fence_deadline(1000, 5, 1000), 5000);
    /* a margin as large as the TTL leaves nothing: fenced at once */
    assert_int_equal(ctl_cluster_fence_deadline(1000, 1, 1000), 1000);
    assert_int_equal(ctl_cluster_fence_deadline(1000, 1, 5000), 1000);
    /* no TTL (an expired lease answers without one): fenced */
    assert_int_equal(ctl_cluster_fence_deadline(1000, 0, 0), 1000);
    assert_int_equal(ctl_cluster_fence_deadline(1000, -1, 0), 1000);
    /* the deadline never precedes the send time, whatever the numbers */
    for (int64_t ttl = -2; ttl < 20; ttl++)
        for (uint32_t m = 0; m < 30000; m += 999)
            assert_true(ctl_cluster_fence_deadline(77, ttl, m) >= 77);
    /* a NULL cluster (single host) never fences */
    assert_int_equal(ctl_cluster_write_ok(NULL), VMENC_OK);
}

static void test_names(void **state) {
    (void)state;
    assert_true(ctl_cluster_name_ok("c1"));
    assert_true(ctl_cluster_name_ok("prod-eu_1.a"));
    assert_false(ctl_cluster_name_ok(""));
    assert_false(ctl_cluster_name_ok(NULL));
    assert_false(ctl_cluster_name_ok("a/b"));
    assert_false(ctl_cluster_name_ok(".."));
    assert_false(ctl_cluster_name_ok("a b"));
    char big[80];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_false(ctl_cluster_name_ok(big));
}

static vmenc_status parse_file(const char *s, ws_cluster_file *f) {
    return ws_cluster_file_parse((const uint8_t *)s, strlen(s), f);
}

static void test_cluster_file(void **state) {
    (void)state;
    ws_cluster_file f;
    const char *good = "{\"version\":1,\"name\":\"c1\",\"endpoints\":\"https://127.0.0.1:1\",\"cacert\":\"/a\","
                       "\"cert\":\"/b\",\"key\":\"/c\",\"ttl_s\":7}";
    assert_int_equal(parse_file(good, &f), VMENC_OK);
    assert_string_equal(f.name, "c1");
    assert_int_equal(f.ttl_s, 7);
    char *text = NULL;
    assert_int_equal(ws_cluster_file_serialize(&f, &text), VMENC_OK);
    ws_cluster_file g;
    assert_int_equal(parse_file(text, &g), VMENC_OK);
    assert_string_equal(g.endpoints, f.endpoints);
    assert_string_equal(g.key_file, "/c");
    free(text);
    ws_cluster_file_cleanup(&g);
    /* the default TTL (0) is not written, and reads back as the default */
    f.ttl_s = 0;
    assert_int_equal(ws_cluster_file_serialize(&f, &text), VMENC_OK);
    assert_int_equal(parse_file(text, &g), VMENC_OK);
    assert_int_equal(g.ttl_s, 0);
    free(text);
    ws_cluster_file_cleanup(&g);
    ws_cluster_file_cleanup(&f);
    static const char *const bad[] = {
        "{\"version\":1,\"name\":\"c1\",\"endpoints\":\"e\",\"cacert\":\"a\",\"cert\":\"b\"}", /* key missing */
        "{\"version\":2,\"name\":\"c1\",\"endpoints\":\"e\",\"cacert\":\"a\",\"cert\":\"b\",\"key\":\"c\"}",
        "{\"version\":1,\"name\":\"c1\",\"endpoints\":\"e\",\"cacert\":\"a\",\"cert\":\"b\",\"key\":\"c\",\"x\":1}",
        "{\"version\":1,\"name\":1,\"endpoints\":\"e\",\"cacert\":\"a\",\"cert\":\"b\",\"key\":\"c\"}",
        "{\"version\":1,\"name\":\"c1\",\"endpoints\":\"e\",\"cacert\":\"a\",\"cert\":\"b\",\"key\":\"c\",\"ttl_s\":1}",
        "{\"version\":1,\"name\":\"c1\",\"endpoints\":\"e\",\"cacert\":\"a\",\"cert\":\"b\",\"key\":\"c\"} trailing",
        "{\"version\":1,\"name\":\"\",\"endpoints\":\"e\",\"cacert\":\"a\",\"cert\":\"b\",\"key\":\"c\"}",
        "{\"version\":1,\"name\":\"a\\nb\",\"endpoints\":\"e\",\"cacert\":\"a\",\"cert\":\"b\",\"key\":\"c\"}",
        "[]", "", "{",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        vmenc_status s = parse_file(bad[i], &f);
        if (s == VMENC_OK)
            fail_msg("accepted bad cluster.json #%zu", i);
        assert_null(f.name); /* zeroed on failure */
    }
}

static void test_cluster_doc(void **state) {
    (void)state;
    const char *good = "{\"version\":1,\"name\":\"c1\",\"id\":\"6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7\","
                       "\"key_provider\":\"shared\",\"key\":\"vmwk1:AAAA\"}";
    ws_cluster_doc d;
    assert_int_equal(ws_cluster_doc_parse((const uint8_t *)good, strlen(good), &d), VMENC_OK);
    assert_string_equal(d.key_provider, "shared");
    char *t = NULL;
    assert_int_equal(ws_cluster_doc_serialize(&d, &t), VMENC_OK);
    assert_string_equal(t, good);
    free(t);
    ws_cluster_doc_cleanup(&d);
    const char *noid = "{\"version\":1,\"name\":\"c1\",\"key_provider\":\"shared\",\"key\":\"vmwk1:AAAA\"}";
    assert_int_not_equal(ws_cluster_doc_parse((const uint8_t *)noid, strlen(noid), &d), VMENC_OK);
}

static void test_single_host_workspace(void **state) {
    (void)state;
    char dir[] = "/tmp/vmenc-test-cluster-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char ws_dir[128];
    snprintf(ws_dir, sizeof(ws_dir), "%s/ws", dir);
    static const uint8_t pass[] = "test passphrase";
    vmenc_workspace_create_options co = {.struct_size = sizeof(co), .admin = "alice", .host_id = "esx01",
                                         .passphrase = pass, .passphrase_len = sizeof(pass) - 1,
                                         .kdf_opslimit = 1, .kdf_memlimit_kib = 8192};
    assert_int_equal(vmenc_workspace_create(ws_dir, &co, NULL), VMENC_OK);
    vmenc_workspace_open_options oo = {.struct_size = sizeof(oo), .passphrase = pass,
                                       .passphrase_len = sizeof(pass) - 1, .flags = VMENC_WORKSPACE_OPEN_NO_SYNC};
    vmenc_workspace *ws = NULL;
    assert_int_equal(vmenc_workspace_open(ws_dir, &oo, NULL, &ws), VMENC_OK);
    vmenc_cluster_status st = {.struct_size = sizeof(st)};
    assert_int_equal(vmenc_workspace_cluster_status(ws, &st), VMENC_OK);
    assert_int_equal(st.in_cluster, 0);
    char owner[64];
    assert_int_equal(vmenc_workspace_vm_owner(ws, "vm1", owner, sizeof(owner)), VMENC_E_BAD_STATE);
    assert_int_equal(vmenc_workspace_cluster_leave(ws, "alice"), VMENC_E_BAD_STATE);
    vmenc_cluster_status small = {.struct_size = 4};
    assert_int_equal(vmenc_workspace_cluster_status(ws, &small), VMENC_E_ABI_VERSION);
    /* a join without a reachable etcd writes nothing into the workspace */
    vmenc_cluster_spec spec = {.struct_size = sizeof(spec), .endpoints = "https://127.0.0.1:1",
                               .ca_file = "/nonexistent", .cert_file = "/nonexistent", .key_file = "/nonexistent"};
    assert_int_not_equal(vmenc_workspace_cluster_join(ws, "alice", &spec), VMENC_OK);
    char path[256];
    snprintf(path, sizeof(path), "%s/cluster.json", ws_dir);
    assert_int_not_equal(access(path, F_OK), 0);
    vmenc_workspace_free(ws);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* The sealed policy document's envelope (the MAC itself is checked with
 * the cluster key in tests/cluster.test.sh): exact layout, every short or
 * wrong input refused with |out| zeroed, round trip. */
static void test_policy_seal_envelope(void **state) {
    (void)state;
    uint8_t v[WS_POLICY_SEAL_HEADER + 4];
    memcpy(v, "VMENCPS1", 8);
    for (int i = 0; i < 8; i++)
        v[8 + i] = (uint8_t)(i == 7 ? 5 : 0); /* generation 5 */
    for (int i = 0; i < 32; i++)
        v[16 + i] = (uint8_t)i;
    memcpy(v + WS_POLICY_SEAL_HEADER, "{}\n ", 4);
    ws_policy_seal sl;
    assert_int_equal(ws_policy_seal_parse(v, sizeof(v), &sl), VMENC_OK);
    assert_int_equal(sl.gen, 5);
    assert_int_equal(sl.json_len, 4);
    assert_ptr_equal(sl.json, v + WS_POLICY_SEAL_HEADER);
    assert_int_equal(sl.mac[31], 31);
    uint8_t *out = NULL;
    size_t out_len = 0;
    assert_int_equal(ws_policy_seal_serialize(&sl, &out, &out_len), VMENC_OK);
    assert_int_equal(out_len, sizeof(v));
    assert_memory_equal(out, v, sizeof(v));
    free(out);
    /* every truncation is refused */
    for (size_t n = 0; n < sizeof(v) - 4; n++) {
        assert_int_not_equal(ws_policy_seal_parse(v, n, &sl), VMENC_OK);
        assert_null(sl.json);
    }
    /* a plain JSON document (what a forger writes) is not an envelope */
    assert_int_equal(ws_policy_seal_parse((const uint8_t *)"{\"version\": 1}", 14, &sl), VMENC_E_BAD_MAGIC);
    uint8_t w[sizeof(v)];
    memcpy(w, v, sizeof(v));
    w[0] = 'X';
    assert_int_equal(ws_policy_seal_parse(w, sizeof(w), &sl), VMENC_E_BAD_MAGIC);
    memcpy(w, v, sizeof(v));
    w[15] = 0; /* generation 0 */
    assert_int_equal(ws_policy_seal_parse(w, sizeof(w), &sl), VMENC_E_PARSE);
    assert_int_equal(ws_policy_seal_parse(v, WS_POLICY_SEAL_HEADER, &sl), VMENC_E_PARSE); /* no JSON */
    ws_policy_seal z = {.gen = 0, .json = v, .json_len = 1};
    assert_int_equal(ws_policy_seal_serialize(&z, &out, &out_len), VMENC_E_INVALID_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fence_deadline),
        cmocka_unit_test(test_policy_seal_envelope),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_cluster_file),
        cmocka_unit_test(test_cluster_doc),
        cmocka_unit_test(test_single_host_workspace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
