/*
 * tests/test_control_etcd.c - the etcd backend of the control store
 * (lib/control/etcd/etcd_store.c) against a real 3-member mutual-TLS etcd
 * cluster started and stopped here: the same store contract as the local
 * backend (tests/support/ctl_contract.c: CAS, list, intent first, a stale
 * writer losing to another process, two processes racing CAS with no lost
 * update), then what is the etcd backend's own: the key layout, the MAC
 * (every byte of a stored value flipped, a value moved to another VM's or
 * another cluster's key, another MAC key), listing in pages, and the
 * statuses when etcd is out of reach. Exits 77 if etcd cannot start.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/etcd/etcd_store.h"
#include "ctl_contract.h"
#include "etcd_cluster.h"
#include "vmenc/vmenc.h"

static etcd_cluster g_cluster;

typedef struct {
    char cluster[32];
    uint8_t key[CTL_MAC_KEY_BYTES];
    vmenc_etcd *client;
    ctl_store *store;
    /* handles opened by the contract (freed with the fixture) */
    vmenc_etcd *extra_clients[8];
    size_t num_extra;
} fx;

static vmenc_etcd *new_client(void) {
    vmenc_etcd_config cfg;
    etcd_cluster_config(&g_cluster, &cfg);
    vmenc_etcd *c = NULL;
    assert_int_equal(vmenc_etcd_new(&cfg, &c), VMENC_OK);
    return c;
}

static int setup(void **state) {
    static int n;
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    /* a cluster name of its own: every test starts from an empty store */
    snprintf(f->cluster, sizeof(f->cluster), "t%d-%d", (int)getpid(), n++);
    for (size_t i = 0; i < sizeof(f->key); i++)
        f->key[i] = (uint8_t)(0xA0 + i);
    f->client = new_client();
    assert_int_equal(ctl_etcd_new(f->client, f->cluster, f->key, sizeof(f->key), &f->store), VMENC_OK);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    ctl_store_free(f->store);
    vmenc_etcd_free(f->client);
    for (size_t i = 0; i < f->num_extra; i++)
        vmenc_etcd_free(f->extra_clients[i]);
    free(f);
    return 0;
}

/* etcd_open: another handle = another client (own connections) and store.
 * In a forked child the client is simply left to the process's exit. */
static vmenc_status etcd_open(void *ctx, ctl_store **out) {
    fx *f = ctx;
    vmenc_etcd *c = new_client();
    if (f->num_extra < sizeof(f->extra_clients) / sizeof(f->extra_clients[0]))
        f->extra_clients[f->num_extra++] = c;
    return ctl_etcd_new(c, f->cluster, f->key, sizeof(f->key), out);
}

static ctl_contract_backend etcd_backend(fx *f) {
    return (ctl_contract_backend){.open = etcd_open, .ctx = f, .dense_revisions = false};
}

static void test_contract_cas(void **state) {
    fx *f = *state;
    ctl_contract_backend b = etcd_backend(f);
    ctl_contract_cas(&b, f->store);
}

static void test_contract_list(void **state) {
    fx *f = *state;
    ctl_contract_backend b = etcd_backend(f);
    ctl_contract_list(&b, f->store);
}

static void test_contract_two_processes(void **state) {
    fx *f = *state;
    ctl_contract_backend b = etcd_backend(f);
    ctl_contract_cas_two_processes(&b, f->store);
}

static void test_contract_concurrent_processes(void **state) {
    fx *f = *state;
    ctl_contract_backend b = etcd_backend(f);
    ctl_contract_cas_concurrent_processes(&b, f->store);
}

static void test_contract_begin_turn_end(void **state) {
    fx *f = *state;
    ctl_contract_backend b = etcd_backend(f);
    ctl_contract_begin_turn_end(&b, f->store);
}

/* ---- the etcd backend's own ------------------------------------------------------------- */

static void raw_get(fx *f, const char *key, uint8_t **value, size_t *len, int64_t *mod_rev) {
    vmenc_etcd_range_req q = {.key = (const uint8_t *)key, .key_len = strlen(key)};
    vmenc_etcd_result r;
    assert_int_equal(vmenc_etcd_range(f->client, &q, &r), VMENC_OK);
    assert_int_equal(r.num_kvs, 1);
    *len = r.kvs[0].value_len;
    *value = malloc(*len);
    memcpy(*value, r.kvs[0].value, *len);
    if (mod_rev != NULL)
        *mod_rev = r.kvs[0].mod_revision;
    vmenc_etcd_result_cleanup(&r);
}

static void raw_put(fx *f, const char *key, const uint8_t *value, size_t len) {
    vmenc_etcd_put_req p = {.key = (const uint8_t *)key, .key_len = strlen(key), .value = value, .value_len = len};
    assert_int_equal(vmenc_etcd_put(f->client, &p, NULL), VMENC_OK);
}

static void test_layout_and_revision(void **state) {
    fx *f = *state;
    char key[160];
    assert_int_equal(ctl_etcd_vm_key(f->cluster, ctl_contract_uuid, key, sizeof(key)), VMENC_OK);
    char want[160];
    snprintf(want, sizeof(want), "/vmenc/%s/vm/%s", f->cluster, ctl_contract_uuid);
    assert_string_equal(key, want);
    char small[20];
    assert_int_equal(ctl_etcd_vm_key(f->cluster, ctl_contract_uuid, small, sizeof(small)), VMENC_E_BUFFER_TOO_SMALL);
    ctl_vm_record r;
    uint64_t rev;
    ctl_contract_full_record(&r, ctl_contract_uuid);
    assert_int_equal(ctl_store_put_vm(f->store, &r, 0, &rev), VMENC_OK);
    /* the record's revision is the key's mod_revision */
    uint8_t *v;
    size_t len;
    int64_t mod;
    raw_get(f, key, &v, &len, &mod);
    assert_int_equal((uint64_t)mod, rev);
    /* the value is the record's canonical bytes and a MAC */
    ctl_vm_record dec;
    assert_int_equal(ctl_record_decode(v, len - CTL_HASH_BYTES, &dec), VMENC_OK);
    assert_string_equal(dec.uuid, ctl_contract_uuid);
    assert_int_equal(dec.revision, 0); /* written against "no record" */
    free(v);
    /* bad names never become keys */
    ctl_vm_record got;
    assert_int_equal(ctl_store_get_vm(f->store, "../../policy", &got), VMENC_E_INVALID_ARG);
    ctl_store *bad = NULL;
    assert_int_equal(ctl_etcd_new(f->client, "a/b", f->key, sizeof(f->key), &bad), VMENC_E_INVALID_ARG);
    assert_int_equal(ctl_etcd_new(f->client, "", f->key, sizeof(f->key), &bad), VMENC_E_INVALID_ARG);
    assert_int_equal(ctl_etcd_new(f->client, "x", f->key, 16, &bad), VMENC_E_INVALID_ARG);
}

static int count_cb(void *arg, const ctl_vm_record *rec) {
    (void)rec;
    (*(int *)arg)++;
    return 0;
}

static void test_mac_tamper(void **state) {
    fx *f = *state;
    ctl_vm_record r, got;
    uint64_t rev;
    ctl_contract_full_record(&r, ctl_contract_uuid);
    assert_int_equal(ctl_store_put_vm(f->store, &r, 0, &rev), VMENC_OK);
    char key[160], key2[160];
    assert_int_equal(ctl_etcd_vm_key(f->cluster, ctl_contract_uuid, key, sizeof(key)), VMENC_OK);
    assert_int_equal(ctl_etcd_vm_key(f->cluster, ctl_contract_uuid2, key2, sizeof(key2)), VMENC_OK);
    uint8_t *orig;
    size_t len;
    raw_get(f, key, &orig, &len, NULL);
    assert_true(len > CTL_HASH_BYTES);
    /* every byte flipped, MAC included */
    for (size_t i = 0; i < len; i++) {
        orig[i] ^= 0x01;
        raw_put(f, key, orig, len);
        assert_int_equal(ctl_store_get_vm(f->store, ctl_contract_uuid, &got), VMENC_E_AUTH);
        orig[i] ^= 0x01;
    }
    /* truncated, emptied */
    raw_put(f, key, orig, len - 1);
    assert_int_equal(ctl_store_get_vm(f->store, ctl_contract_uuid, &got), VMENC_E_AUTH);
    raw_put(f, key, orig, 0);
    assert_int_equal(ctl_store_get_vm(f->store, ctl_contract_uuid, &got), VMENC_E_AUTH);
    /* a list meets the bad record and says so */
    int n = 0;
    assert_int_equal(ctl_store_list_vms(f->store, count_cb, &n), VMENC_E_AUTH);
    raw_put(f, key, orig, len);
    assert_int_equal(ctl_store_get_vm(f->store, ctl_contract_uuid, &got), VMENC_OK);
    /* a good record under another VM's name */
    raw_put(f, key2, orig, len);
    assert_int_equal(ctl_store_get_vm(f->store, ctl_contract_uuid2, &got), VMENC_E_AUTH);
    /* the same value in another cluster (same MAC key) */
    char other_cluster[48], okey[200];
    snprintf(other_cluster, sizeof(other_cluster), "%s-b", f->cluster);
    assert_int_equal(ctl_etcd_vm_key(other_cluster, ctl_contract_uuid, okey, sizeof(okey)), VMENC_OK);
    raw_put(f, okey, orig, len);
    ctl_store *other = NULL;
    assert_int_equal(ctl_etcd_new(f->client, other_cluster, f->key, sizeof(f->key), &other), VMENC_OK);
    assert_int_equal(ctl_store_get_vm(other, ctl_contract_uuid, &got), VMENC_E_AUTH);
    ctl_store_free(other);
    /* the same key under another MAC key */
    uint8_t k2[CTL_MAC_KEY_BYTES];
    memcpy(k2, f->key, sizeof(k2));
    k2[0] ^= 1;
    assert_int_equal(ctl_etcd_new(f->client, f->cluster, k2, sizeof(k2), &other), VMENC_OK);
    assert_int_equal(ctl_store_get_vm(other, ctl_contract_uuid, &got), VMENC_E_AUTH);
    ctl_store_free(other);
    free(orig);
}

static int fail_cb(void *arg, const ctl_vm_record *rec) {
    (void)arg;
    (void)rec;
    return 0;
}

/* More records than one page: every one listed once. */
static void test_list_pages(void **state) {
    fx *f = *state;
    const int total = CTL_ETCD_LIST_PAGE + 44;
    for (int i = 0; i < total; i++) {
        char uuid[CTL_UUID_LEN + 1];
        snprintf(uuid, sizeof(uuid), "%08x-0000-4000-8000-000000000000", (unsigned)i);
        ctl_vm_record r;
        uint64_t rev;
        assert_int_equal(ctl_vm_record_init(&r, uuid, "vm"), VMENC_OK);
        assert_int_equal(ctl_store_put_vm(f->store, &r, 0, &rev), VMENC_OK);
    }
    int n = 0;
    assert_int_equal(ctl_store_list_vms(f->store, count_cb, &n), VMENC_OK);
    assert_int_equal(n, total);
    /* a tampered record in the second page stops the walk */
    char key[160];
    assert_int_equal(ctl_etcd_vm_key(f->cluster, "00000120-0000-4000-8000-000000000000", key, sizeof(key)), VMENC_OK);
    raw_put(f, key, (const uint8_t *)"garbage", 7);
    assert_int_equal(ctl_store_list_vms(f->store, fail_cb, NULL), VMENC_E_AUTH);
}

/* Nothing listening: the control-plane status, not a hang or a generic error. */
static void test_unreachable(void **state) {
    fx *f = *state;
    vmenc_etcd_config cfg;
    etcd_cluster_config(&g_cluster, &cfg);
    cfg.endpoints = "https://127.0.0.1:1,https://127.0.0.1:2";
    vmenc_etcd *c = NULL;
    assert_int_equal(vmenc_etcd_new(&cfg, &c), VMENC_OK);
    ctl_store *s = NULL;
    assert_int_equal(ctl_etcd_new(c, f->cluster, f->key, sizeof(f->key), &s), VMENC_OK);
    ctl_vm_record r;
    uint64_t rev;
    ctl_contract_full_record(&r, ctl_contract_uuid);
    assert_int_equal(ctl_store_get_vm(s, ctl_contract_uuid, &r), VMENC_E_CONTROL_UNAVAILABLE);
    ctl_contract_full_record(&r, ctl_contract_uuid);
    assert_int_equal(ctl_store_put_vm(s, &r, 0, &rev), VMENC_E_CONTROL_UNAVAILABLE);
    assert_int_equal(ctl_store_delete_vm(s, ctl_contract_uuid, 5), VMENC_E_CONTROL_UNAVAILABLE);
    int n = 0;
    assert_int_equal(ctl_store_list_vms(s, count_cb, &n), VMENC_E_CONTROL_UNAVAILABLE);
    ctl_store_free(s);
    vmenc_etcd_free(c);
}

int main(void) {
    if (vmenc_init() != VMENC_OK)
        return 1;
    if (etcd_cluster_start(&g_cluster) != 0)
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_contract_cas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_contract_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_contract_two_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_contract_concurrent_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_contract_begin_turn_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout_and_revision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mac_tamper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable, setup, teardown),
    };
    int rc = cmocka_run_group_tests_name("control store on etcd", tests, NULL, NULL);
    etcd_cluster_stop(&g_cluster);
    return rc;
}
