/*
 * tests/test_broker.c - the key broker (include/vmenc/broker.h) with real
 * parts: PyKMIP over mutual TLS upstream (tests/kms/pykmip.sh), a real
 * 3-member mutual-TLS etcd cluster (tests/support/etcd_cluster.h), two
 * brokers on one etcd serving hosts whose KMIP providers point at both
 * (a KMS cluster with failover), host certificates from
 * tests/broker/mkcerts.sh.
 *
 * The cluster state the broker decides on is written as the cluster code
 * writes it: the cluster document with the cluster key wrapped under a
 * KEK of the shared provider (alias "kms"), host/<id> registrations with
 * the certificate fingerprint and encryption mode, VM records under the
 * record MAC key (the etcd control store), owner/<uuid> on a live lease.
 *
 * Covered: KEK release to the owner host (bytes equal the KMS's); refused
 * for an unknown certificate, a host not in encryption mode, a host asking
 * for a VM it does not own, a KEK created for another host, a broker whose
 * etcd quorum is lost - each refusal with its reason in the cluster's
 * event list (or, without quorum, in the broker's own log); Create through
 * the broker then Get by its creator; one broker stopped mid-run while a
 * host fetches keys: every fetch succeeds through the other; a host
 * workspace that uses the brokers holds no KMS credential.
 *
 * Exits 77 (skip) when etcd or PyKMIP cannot start here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "control/control.h"
#include "control/etcd/etcd_store.h"
#include "core/fs.h"
#include "core/internal.h"
#include "etcd_cluster.h"
#include "keys/keys_internal.h"
#include "kms/pykmip_ctl.h"
#include "net/etcd.h"
#include "vmenc/broker.h"
#include "vmenc/keys.h"
#include "vmenc/kms.h"
#include "vmenc/kms_kmip.h"
#include "vmenc/workspace.h"
#include "workspace/ws_cluster.h"
#include "attest/attest.h"
#include "broker/broker_internal.h"
#include "kms/kmip/kmip_conn.h"
#include "kms/kmip/kmip_msg.h"
#include "net/tls_conn.h"
#include "tpm/swtpm_host.h"

#define T_MS 15000u
#define CLUSTER "bt"
#define VM1 "11111111-2222-4333-8444-555555555555"

static etcd_cluster g_etcd;
static pykmip_env g_kmip;
static int g_kmip_port = -1;
static char g_dir[PATH_MAX + 16];   /* temp root */
static char g_pki[PATH_MAX + 32];   /* host CA and certificates */
static char g_bws[PATH_MAX + 32];   /* the broker workspace */
static vmenc_etcd *g_client;
static vmenc_workspace *g_ws;       /* the broker workspace, opened by the test for setup */
static char g_kek1[VMENC_KMS_KEY_ID_CAP];      /* VM1's KEK */
static char g_cluster_kek[VMENC_KMS_KEY_ID_CAP];

typedef struct broker_run {
    vmenc_broker *b;
    pthread_t th;
    uint16_t port;
    bool running;
} broker_run;
static broker_run g_br[2];
static swtpm_host g_tpm_a, g_tpm_b;     /* a TPM per host (attestation cases) */

static const char k_pass[] = "broker-test-passphrase";
static const char k_record_key_domain[] = "vmenc-cluster-v1 control record key";

/* ---- setup helpers ---------------------------------------------------------------------- */

static int sh(const char *cmd) {
    char *const argv[] = {"/bin/bash", "-c", (char *)cmd, NULL};
    return pykmip_run(argv, NULL, 0);
}

static void fingerprint(const char *crt, char out[65]) {
    FILE *f = fopen(crt, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    X509_free(x);
    uint8_t h[32];
    crypto_hash_sha256(h, der, (unsigned long long)n);
    OPENSSL_free(der);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static void put(const char *key, const char *val, int64_t lease) {
    vmenc_etcd_put_req r = {.key = (const uint8_t *)key, .key_len = strlen(key), .value = (const uint8_t *)val,
                            .value_len = strlen(val), .lease = lease};
    assert_int_equal(vmenc_etcd_put(g_client, &r, NULL), VMENC_OK);
}

static void register_host(const char *host, const char *mode) {
    char crt[PATH_MAX + 64], fp[65], key[128], doc[512];
    snprintf(crt, sizeof(crt), "%s/%s.crt", g_pki, host);
    fingerprint(crt, fp);
    snprintf(key, sizeof(key), "/vmenc/%s/host/%s", CLUSTER, host);
    snprintf(doc, sizeof(doc),
             "{\"host\":\"%s\",\"encryption_mode\":\"%s\",\"cert_sha256\":\"%s\",\"workspace\":\"w\",\"since\":\"now\"}",
             host, mode, fp);
    put(key, doc, 0);
}

/* make_cluster_doc: the cluster key under a new KEK of "kms", as
 * lib/workspace/cluster.c's make_doc writes it; returns the record MAC
 * key derived from it. */
static void make_cluster_doc(uint8_t mac_key[CTL_MAC_KEY_BYTES]) {
    vmenc_keymgr *mgr = vmenc_workspace_keymgr(g_ws);
    const char *id = "c1a55e00-0000-4000-8000-000000000001";
    assert_int_equal(vmenc_keymgr_create_kek(mgr, "kms", "bt-cluster", T_MS, g_cluster_kek, sizeof(g_cluster_kek)),
                     VMENC_OK);
    vmenc_dek *dek = NULL;
    vmenc_wrapped_key *wk = NULL;
    char *text = NULL, *doc = NULL;
    assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
    vmenc_wrap_context ctx = {.struct_size = sizeof(ctx), .vm_uuid = id, .purpose = WS_CLUSTER_KEY_PURPOSE};
    assert_int_equal(vmenc_keymgr_wrap_dek(mgr, "kms", g_cluster_kek, dek, &ctx, T_MS, &wk), VMENC_OK);
    assert_int_equal(vmenc_wrapped_key_to_text(wk, &text), VMENC_OK);
    ws_cluster_doc d = {.name = CLUSTER, .id = (char *)id, .key_provider = "kms", .key = text};
    assert_int_equal(ws_cluster_doc_serialize(&d, &doc), VMENC_OK);
    put("/vmenc/" CLUSTER "/cluster", doc, 0);
    assert_int_equal(crypto_generichash(mac_key, CTL_MAC_KEY_BYTES, (const uint8_t *)k_record_key_domain,
                                        sizeof(k_record_key_domain) - 1, vmenc_dek_bytes_internal(dek),
                                        VMENC_DEK_BYTES),
                     0);
    free(doc);
    vmenc_buffer_free(text);
    vmenc_wrapped_key_free(wk);
    vmenc_dek_free(dek);
}

static void put_vm_record(const uint8_t *mac_key, const char *uuid, const char *name, const char *kek) {
    ctl_store *st = NULL;
    assert_int_equal(ctl_etcd_new(g_client, CLUSTER, mac_key, CTL_MAC_KEY_BYTES, &st), VMENC_OK);
    ctl_vm_record rec;
    assert_int_equal(ctl_vm_record_init(&rec, uuid, name), VMENC_OK);
    rec.facts.encrypted = true;
    memset(rec.facts.key_hash, 0xab, sizeof(rec.facts.key_hash));
    snprintf(rec.facts.kek_provider, sizeof(rec.facts.kek_provider), "kms");
    snprintf(rec.facts.kek_id, sizeof(rec.facts.kek_id), "%s", kek);
    uint64_t rev = 0;
    assert_int_equal(ctl_store_put_vm(st, &rec, 0, &rev), VMENC_OK);
    ctl_store_free(st);
}

static void own(const char *uuid, const char *host) {
    int64_t lease = 0;
    assert_int_equal(vmenc_etcd_lease_grant(g_client, 120, 0, &lease, NULL), VMENC_OK);
    char key[128], val[256];
    snprintf(key, sizeof(key), "/vmenc/%s/owner/%s", CLUSTER, uuid);
    snprintf(val, sizeof(val), "%s\n%llx\nvm1", host, (unsigned long long)lease);
    put(key, val, lease);
}

static void *serve_main(void *arg) {
    broker_run *r = arg;
    vmenc_status s = vmenc_broker_serve(r->b);
    (void)s;
    return NULL;
}

static void start_broker(broker_run *r, const char *id) {
    char ca[PATH_MAX + 64], crt[PATH_MAX + 64], key[PATH_MAX + 64];
    snprintf(ca, sizeof(ca), "%s/ca.crt", g_pki);
    snprintf(crt, sizeof(crt), "%s/broker.crt", g_pki);
    snprintf(key, sizeof(key), "%s/broker.key", g_pki);
    vmenc_workspace_open_options oo = {.struct_size = sizeof(oo), .passphrase = (const uint8_t *)k_pass,
                                       .passphrase_len = strlen(k_pass), .lock_timeout_ms = 10000,
                                       .flags = VMENC_WORKSPACE_OPEN_NO_SYNC};
    vmenc_broker_config cfg = {.struct_size = sizeof(cfg),
                               .workspace_dir = g_bws,
                               .provider = "kms",
                               .broker_id = id,
                               .ca_file = ca,
                               .cert_file = crt,
                               .key_file = key,
                               .cluster = CLUSTER,
                               .etcd_endpoints = g_etcd.endpoints,
                               .etcd_ca_file = g_etcd.cacert,
                               .etcd_cert_file = g_etcd.cert,
                               .etcd_key_file = g_etcd.key,
                               .idle_timeout_ms = 30000,
                               .open_options = &oo,
                               .etcd_request_timeout_ms = 1000};
    assert_int_equal(vmenc_broker_open(&cfg, &r->b), VMENC_OK);
    vmenc_broker_status st = {.struct_size = sizeof(st)};
    assert_int_equal(vmenc_broker_get_status(r->b, &st), VMENC_OK);
    r->port = st.port;
    assert_int_equal(pthread_create(&r->th, NULL, serve_main, r), 0);
    r->running = true;
}

static void stop_broker(broker_run *r) {
    if (!r->running)
        return;
    vmenc_broker_stop(r->b);
    pthread_join(r->th, NULL);
    vmenc_broker_close(r->b);
    r->running = false;
}

/* host_kms: the host's view: a KMIP provider cluster over both brokers,
 * with host |host|'s certificate. */
static vmenc_kms_cluster *host_kms_tpm(const char *host, int first, int last, const char *tcti, const char *blob) {
    vmenc_kms_cluster_options co = {.struct_size = sizeof(co), .backoff_initial_ms = 50, .backoff_max_ms = 100,
                                     .flags = VMENC_KMS_CLUSTER_NO_JITTER};
    vmenc_kms_cluster *c = NULL;
    assert_int_equal(vmenc_kms_cluster_new("kms", &co, &c), VMENC_OK);
    for (int i = first; i <= last; i++) {
        char addr[64], ca[PATH_MAX + 64], crt[PATH_MAX + 64], key[PATH_MAX + 64];
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", g_br[i].port);
        snprintf(ca, sizeof(ca), "ca=%s/ca.crt", g_pki);
        snprintf(crt, sizeof(crt), "cert=%s/%s.crt", g_pki, host);
        snprintf(key, sizeof(key), "key=%s/%s.key", g_pki, host);
        char o_tcti[256], o_blob[PATH_MAX + 16];
        snprintf(o_tcti, sizeof(o_tcti), "tpm_tcti=%s", tcti != NULL ? tcti : "");
        snprintf(o_blob, sizeof(o_blob), "ak_blob=%s", blob != NULL ? blob : "");
        const char *opts[] = {ca, crt, key, "request_timeout_ms=8000", "connect_timeout_ms=2000",
                              tcti != NULL ? o_tcti : NULL, o_blob, NULL};
        vmenc_kms_endpoint_config ec = {.struct_size = sizeof(ec), .type = "kmip", .address = addr, .options = opts};
        assert_int_equal(vmenc_kms_cluster_add_endpoint_config(c, &ec), VMENC_OK);
    }
    return c;
}

static vmenc_kms_cluster *host_kms_of(const char *host, int first, int last) {
    return host_kms_tpm(host, first, last, NULL, NULL);
}
static vmenc_kms_cluster *host_kms(const char *host) { return host_kms_of(host, 0, 1); }

/* ---- the event list ------------------------------------------------------------------------- */

static size_t count_events(const char *must1, const char *must2) {
    const char *prefix = "/vmenc/" CLUSTER "/broker/events/";
    vmenc_etcd_range_req req = {.key = (const uint8_t *)prefix, .key_len = strlen(prefix), .prefix = true};
    vmenc_etcd_result r;
    assert_int_equal(vmenc_etcd_range(g_client, &req, &r), VMENC_OK);
    size_t n = 0;
    for (size_t i = 0; i < r.num_kvs; i++) {
        const char *v = (const char *)r.kvs[i].value;
        if ((must1 == NULL || strstr(v, must1) != NULL) && (must2 == NULL || strstr(v, must2) != NULL))
            n++;
    }
    vmenc_etcd_result_cleanup(&r);
    return n;
}

/* refused: a Get of |kek| by |host| fails with |want| and one more event
 * carrying |reason| is in the cluster's list. */
static void refused(const char *host, const char *kek, vmenc_status want, const char *reason) {
    size_t before = count_events(reason, "denied");
    vmenc_kms_cluster *c = host_kms(host);
    vmenc_kek *k = NULL;
    vmenc_status s = vmenc_kms_cluster_get_kek(c, kek, T_MS, &k, NULL);
    if (s != want)
        fprintf(stderr, "host %s kek %s: got %s want %s\n", host, kek, vmenc_status_name(s), vmenc_status_name(want));
    assert_int_equal(s, want);
    assert_null(k);
    vmenc_kms_cluster_free(c);
    assert_true(count_events(reason, "denied") > before);
}

/* ---- group setup ------------------------------------------------------------------------------ */

static int group_setup(void **state) {
    (void)state;
    uint64_t t0 = vmenc_now_monotonic_ms();
    if (etcd_cluster_start(&g_etcd) != 0)
        return -1;
    if (pykmip_env_init(&g_kmip, VMENC_SOURCE_DIR) != 0 || !pykmip_available(&g_kmip))
        return -1;
    g_kmip_port = pykmip_free_port();
    if (g_kmip_port < 0 || pykmip_start(&g_kmip, g_kmip_port, NULL) != 0)
        return -1;
    fprintf(stderr, "setup: etcd and PyKMIP up in %llu ms\n", (unsigned long long)(vmenc_now_monotonic_ms() - t0));
    snprintf(g_dir, sizeof(g_dir), "%s/broker", g_kmip.dir);
    snprintf(g_pki, sizeof(g_pki), "%s/pki", g_dir);
    snprintf(g_bws, sizeof(g_bws), "%s/bws", g_dir);
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof(cmd), "bash '%s/tests/broker/mkcerts.sh' '%s' hostA hostB hostC hostD >/dev/null 2>&1",
             VMENC_SOURCE_DIR, g_pki);
    if (sh(cmd) != 0)
        return -1;
    vmenc_etcd_config ec;
    etcd_cluster_config(&g_etcd, &ec);
    if (vmenc_etcd_new(&ec, &g_client) != VMENC_OK)
        return -1;

    /* the broker workspace: the embedded provider for its own audit key,
     * and "kms": PyKMIP with the KMS client credential */
    vmenc_workspace_create_options co = {.struct_size = sizeof(co), .passphrase = (const uint8_t *)k_pass,
                                         .passphrase_len = strlen(k_pass), .admin = "admin", .host_id = "broker",
                                         .kdf_opslimit = 1, .kdf_memlimit_kib = 8};
    if (vmenc_workspace_create(g_bws, &co, NULL) != VMENC_OK)
        return -1;
    vmenc_workspace_open_options oo = {.struct_size = sizeof(oo), .passphrase = (const uint8_t *)k_pass,
                                       .passphrase_len = strlen(k_pass), .lock_timeout_ms = 10000,
                                       .flags = VMENC_WORKSPACE_OPEN_NO_SYNC};
    if (vmenc_workspace_open(g_bws, &oo, NULL, &g_ws) != VMENC_OK)
        return -1;
    char addr[64], ca[PATH_MAX + 64], crt[PATH_MAX + 64], key[PATH_MAX + 64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", g_kmip_port);
    snprintf(ca, sizeof(ca), "ca=%s/certs/ca.crt", g_kmip.dir);
    snprintf(crt, sizeof(crt), "cert=%s/certs/client.crt", g_kmip.dir);
    snprintf(key, sizeof(key), "key=%s/certs/client.key", g_kmip.dir);
    const char *eps[] = {addr};
    const char *opts[] = {ca, crt, key, "kmip_version=1.4", NULL};
    vmenc_workspace_kms_spec ks = {.struct_size = sizeof(ks), .alias = "kms", .type = "kmip", .endpoints = eps,
                                   .num_endpoints = 1, .options = opts};
    vmenc_status s = vmenc_workspace_add_kms(g_ws, "admin", &ks);
    if (s != VMENC_OK) {
        fprintf(stderr, "add kms: %s\n", vmenc_status_name(s));
        return -1;
    }
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    stop_broker(&g_br[0]);
    stop_broker(&g_br[1]);
    swtpm_stop(&g_tpm_a);
    swtpm_stop(&g_tpm_b);
    vmenc_workspace_free(g_ws);
    vmenc_etcd_free(g_client);
    etcd_cluster_stop(&g_etcd);
    if (g_kmip_port > 0)
        (void)pykmip_kill(&g_kmip, g_kmip_port); /* at once: nothing of its state is kept */
    pykmip_env_cleanup(&g_kmip);
    return 0;
}

/* ---- cases ------------------------------------------------------------------------------------- */

static void test_setup_cluster_and_brokers(void **state) {
    (void)state;
    uint8_t mk[CTL_MAC_KEY_BYTES];
    make_cluster_doc(mk);
    vmenc_keymgr *mgr = vmenc_workspace_keymgr(g_ws);
    assert_int_equal(vmenc_keymgr_create_kek(mgr, "kms", "bt-vm1", T_MS, g_kek1, sizeof(g_kek1)), VMENC_OK);
    put_vm_record(mk, VM1, "vm1", g_kek1);
    sodium_memzero(mk, sizeof(mk));
    own(VM1, "hostA");
    register_host("hostA", "safe");
    register_host("hostB", "safe");
    register_host("hostC", "prepared");
    /* hostD has a certificate from the same CA but is not registered */
    start_broker(&g_br[0], "b1");
    start_broker(&g_br[1], "b2");
}

static void test_release_to_owner(void **state) {
    (void)state;
    size_t before = count_events("broker.kek.release", "success");
    vmenc_kms_cluster *c = host_kms("hostA");
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_cluster_get_kek(c, g_kek1, T_MS, &k, NULL), VMENC_OK);
    /* the bytes the KMS holds */
    vmenc_kek *direct = NULL;
    vmenc_keymgr *mgr = vmenc_workspace_keymgr(g_ws);
    assert_int_equal(vmenc_keymgr_forget(mgr, "kms", g_kek1), VMENC_OK);
    assert_int_equal(vmenc_keymgr_get_kek(mgr, "kms", g_kek1, T_MS, &direct), VMENC_OK);
    assert_memory_equal(vmenc_kek_bytes_internal(k), vmenc_kek_bytes_internal(direct), VMENC_KEK_BYTES);
    vmenc_kek_free(direct);
    vmenc_kek_free(k);
    /* the cluster key's KEK: any host in encryption mode */
    assert_int_equal(vmenc_kms_cluster_get_kek(c, g_cluster_kek, T_MS, &k, NULL), VMENC_OK);
    vmenc_kek_free(k);
    vmenc_kms_cluster_free(c);
    assert_true(count_events("broker.kek.release", "success") >= before + 2);
    assert_true(count_events("owns VM " VM1, "host:hostA") >= 1);
}

static void test_refused_unknown_certificate(void **state) {
    (void)state;
    refused("hostD", g_kek1, VMENC_E_KMS_PERMISSION, "is not a registered host");
}

static void test_refused_not_in_encryption_mode(void **state) {
    (void)state;
    refused("hostC", g_kek1, VMENC_E_KMS_PERMISSION, "is not in encryption mode");
}

static void test_refused_not_owner(void **state) {
    (void)state;
    refused("hostB", g_kek1, VMENC_E_KMS_PERMISSION, "does not own VM " VM1);
    /* ownership moves: after the take-over hostB gets it and hostA not */
    char key[128];
    snprintf(key, sizeof(key), "/vmenc/%s/owner/%s", CLUSTER, VM1);
    vmenc_etcd_delete_req d = {.key = (const uint8_t *)key, .key_len = strlen(key)};
    assert_int_equal(vmenc_etcd_delete_range(g_client, &d, NULL), VMENC_OK);
    own(VM1, "hostB");
    vmenc_kms_cluster *c = host_kms("hostB");
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_cluster_get_kek(c, g_kek1, T_MS, &k, NULL), VMENC_OK);
    vmenc_kek_free(k);
    vmenc_kms_cluster_free(c);
    refused("hostA", g_kek1, VMENC_E_KMS_PERMISSION, "(owner: hostB)");
    assert_int_equal(vmenc_etcd_delete_range(g_client, &d, NULL), VMENC_OK);
    own(VM1, "hostA");
}

/* No live owner (no host runs the VM): the host the VM is placed on - the
 * one host that may take its ownership - may open it; any other host may
 * not, until the placement moves (take-over, handover). */
static void test_placed_host_without_owner(void **state) {
    (void)state;
    char okey[128], pkey[128];
    snprintf(okey, sizeof(okey), "/vmenc/%s/owner/%s", CLUSTER, VM1);
    snprintf(pkey, sizeof(pkey), "/vmenc/%s/placement/%s", CLUSTER, VM1);
    vmenc_etcd_delete_req d = {.key = (const uint8_t *)okey, .key_len = strlen(okey)};
    assert_int_equal(vmenc_etcd_delete_range(g_client, &d, NULL), VMENC_OK);
    refused("hostB", g_kek1, VMENC_E_KMS_PERMISSION, "(owner: none)"); /* unplaced, unowned: nobody */
    put(pkey, "hostB", 0);
    vmenc_kms_cluster *c = host_kms("hostB");
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_cluster_get_kek(c, g_kek1, T_MS, &k, NULL), VMENC_OK);
    vmenc_kek_free(k);
    vmenc_kms_cluster_free(c);
    assert_true(count_events("VM " VM1 " is placed on host hostB", "host:hostB") >= 1);
    refused("hostA", g_kek1, VMENC_E_KMS_PERMISSION, "(owner: none)");
    /* a live owner decides over the placement */
    own(VM1, "hostA");
    refused("hostB", g_kek1, VMENC_E_KMS_PERMISSION, "(owner: hostA)");
    vmenc_etcd_delete_req dp = {.key = (const uint8_t *)pkey, .key_len = strlen(pkey)};
    assert_int_equal(vmenc_etcd_delete_range(g_client, &dp, NULL), VMENC_OK);
}

static void test_create_for_host(void **state) {
    (void)state;
    vmenc_kms_cluster *c = host_kms("hostB");
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_cluster_create_kek(c, "hostB-new", T_MS, id, sizeof(id), NULL), VMENC_OK);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_cluster_get_kek(c, id, T_MS, &k, NULL), VMENC_OK);
    vmenc_kek_free(k);
    vmenc_kms_cluster_free(c);
    assert_true(count_events("broker.kek.create", "host:hostB") >= 1);
    refused("hostA", id, VMENC_E_KMS_PERMISSION, "was not created for it");
    /* revoke and destroy stay with the KMS's administrators */
    c = host_kms("hostB");
    assert_int_not_equal(vmenc_kms_cluster_destroy_kek(c, id, T_MS, NULL), VMENC_OK);
    vmenc_kms_cluster_free(c);
}

/* kmip_to_broker: a bare KMIP provider to broker |i| as |host| (for Locate). */
static vmenc_kms_provider *kmip_to_broker(const char *host, int i) {
    char ca[PATH_MAX + 64], crt[PATH_MAX + 64], key[PATH_MAX + 64];
    snprintf(ca, sizeof(ca), "%s/ca.crt", g_pki);
    snprintf(crt, sizeof(crt), "%s/%s.crt", g_pki, host);
    snprintf(key, sizeof(key), "%s/%s.key", g_pki, host);
    vmenc_kmip_config kc = {.struct_size = sizeof(kc), .host = "127.0.0.1", .port = g_br[i].port, .ca_file = ca,
                            .cert_file = crt, .key_file = key, .version_major = 1, .version_minor = 4};
    vmenc_kms_provider *p = NULL;
    assert_int_equal(vmenc_kmip_provider_new(&kc, &p), VMENC_OK);
    return p;
}

/* Locate by Name, as the host's KMIP client sends it (Object Type + Name):
 * the creator finds its key, another host finds nothing, an unknown
 * certificate is refused and audited. */
static void test_locate_by_name(void **state) {
    (void)state;
    vmenc_kms_cluster *c = host_kms("hostB");
    char id[VMENC_KMS_KEY_ID_CAP], found[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_cluster_create_kek(c, "hostB-locate", T_MS, id, sizeof(id), NULL), VMENC_OK);
    vmenc_kms_cluster_free(c);
    size_t n = 0;
    vmenc_kms_provider *p = kmip_to_broker("hostB", 1);
    assert_int_equal(vmenc_kmip_locate(p, "hostB-locate", T_MS, found, sizeof(found), &n), VMENC_OK);
    assert_int_equal(n, 1);
    assert_string_equal(found, id);
    assert_int_equal(vmenc_kmip_locate(p, "no-such-name", T_MS, found, sizeof(found), &n), VMENC_E_KEY_NOT_FOUND);
    vmenc_kms_provider_free(p);
    assert_true(count_events("broker.kek.locate", "host:hostB") >= 2);
    /* another host: its key is not visible to hostA */
    p = kmip_to_broker("hostA", 0);
    assert_int_equal(vmenc_kmip_locate(p, "hostB-locate", T_MS, found, sizeof(found), &n), VMENC_E_KEY_NOT_FOUND);
    vmenc_kms_provider_free(p);
    /* an unknown certificate: refused, audited */
    size_t before = count_events("broker.kek.locate", "is not a registered host");
    p = kmip_to_broker("hostD", 0);
    assert_int_equal(vmenc_kmip_locate(p, "hostB-locate", T_MS, found, sizeof(found), &n), VMENC_E_KMS_PERMISSION);
    vmenc_kms_provider_free(p);
    assert_true(count_events("broker.kek.locate", "is not a registered host") > before);
}

typedef struct fetch_loop {
    int n, ok;
    vmenc_status last;
} fetch_loop;

static void *fetch_main(void *arg) {
    fetch_loop *f = arg;
    vmenc_kms_cluster *c = host_kms("hostA");
    for (int i = 0; i < f->n; i++) {
        vmenc_kek *k = NULL;
        vmenc_status s = vmenc_kms_cluster_get_kek(c, g_kek1, T_MS, &k, NULL);
        if (s == VMENC_OK)
            f->ok++;
        else
            f->last = s;
        vmenc_kek_free(k);
        usleep(10000);
    }
    vmenc_kms_cluster_free(c);
    return NULL;
}

static void test_failover_one_broker_stopped(void **state) {
    (void)state;
    fetch_loop f = {.n = 16};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fetch_main, &f), 0);
    usleep(100000);
    stop_broker(&g_br[0]); /* mid-run: its connections close */
    pthread_join(th, NULL);
    if (f.ok != f.n)
        fprintf(stderr, "failover: %d of %d fetches, last %s\n", f.ok, f.n, vmenc_status_name(f.last));
    assert_int_equal(f.ok, f.n);
    vmenc_broker_status st = {.struct_size = sizeof(st)};
    assert_int_equal(vmenc_broker_get_status(g_br[1].b, &st), VMENC_OK);
    assert_true(st.releases > 0);
}

static bool log_contains(const char *needle) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/audit.log", g_bws);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char line[8192];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* Under a sanitizer (CMakeLists.txt sets VMENC_BROKER_SHORT) the cases
 * that restart etcd members or manufacture TPMs run in the release build
 * only: the sanitizers check the broker's threads and memory on the
 * others, within the suite's time. */
static bool short_run(void) { return getenv("VMENC_BROKER_SHORT") != NULL; }

static void test_refused_without_quorum(void **state) {
    (void)state;
    if (short_run())
        skip();
    uint64_t t0 = vmenc_now_monotonic_ms();
    assert_int_equal(etcd_cluster_kill(&g_etcd, 1), 0);
    assert_int_equal(etcd_cluster_kill(&g_etcd, 2), 0);
    vmenc_kms_cluster *c = host_kms_of("hostA", 0, 0); /* one broker: the other would say the same */
    vmenc_kek *k = NULL;
    vmenc_status s = vmenc_kms_cluster_get_kek(c, g_kek1, 30000, &k, NULL);
    assert_int_not_equal(s, VMENC_OK);
    assert_null(k);
    vmenc_kms_cluster_free(c);
    assert_true(log_contains("control plane unavailable"));
    uint64_t t1 = vmenc_now_monotonic_ms();
    /* two of three members make a quorum again (member 2 stays down) */
    assert_int_equal(etcd_cluster_restart(&g_etcd, 1), 0);
    uint64_t t2 = vmenc_now_monotonic_ms();
    /* back: released again */
    c = host_kms("hostA");
    assert_int_equal(vmenc_kms_cluster_get_kek(c, g_kek1, 30000, &k, NULL), VMENC_OK);
    vmenc_kek_free(k);
    vmenc_kms_cluster_free(c);
    fprintf(stderr, "quorum: refused in %llu ms, members back in %llu ms, released in %llu ms\n",
            (unsigned long long)(t1 - t0), (unsigned long long)(t2 - t1),
            (unsigned long long)(vmenc_now_monotonic_ms() - t2));
}

/* A host workspace whose key provider is the brokers: nothing in it is a
 * KMS credential (the PyKMIP client key, its path). */
static void test_host_workspace_has_no_kms_credential(void **state) {
    (void)state;
    char hws[PATH_MAX + 64];
    snprintf(hws, sizeof(hws), "%s/hostA-ws", g_dir);
    vmenc_workspace_create_options co = {.struct_size = sizeof(co), .passphrase = (const uint8_t *)k_pass,
                                         .passphrase_len = strlen(k_pass), .admin = "admin", .host_id = "hostA",
                                         .kdf_opslimit = 1, .kdf_memlimit_kib = 8};
    assert_int_equal(vmenc_workspace_create(hws, &co, NULL), VMENC_OK);
    vmenc_workspace_open_options oo = {.struct_size = sizeof(oo), .passphrase = (const uint8_t *)k_pass,
                                       .passphrase_len = strlen(k_pass), .flags = VMENC_WORKSPACE_OPEN_NO_SYNC};
    vmenc_workspace *ws = NULL;
    assert_int_equal(vmenc_workspace_open(hws, &oo, NULL, &ws), VMENC_OK);
    char addr[64], ca[PATH_MAX + 64], crt[PATH_MAX + 64], key[PATH_MAX + 64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", g_br[1].port);
    snprintf(ca, sizeof(ca), "ca=%s/ca.crt", g_pki);
    snprintf(crt, sizeof(crt), "cert=%s/hostA.crt", g_pki);
    snprintf(key, sizeof(key), "key=%s/hostA.key", g_pki);
    const char *eps[] = {addr};
    const char *opts[] = {ca, crt, key, NULL};
    vmenc_workspace_kms_spec ks = {.struct_size = sizeof(ks), .alias = "kms", .type = "kmip", .endpoints = eps,
                                   .num_endpoints = 1, .options = opts};
    assert_int_equal(vmenc_workspace_add_kms(ws, "admin", &ks), VMENC_OK);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_keymgr_get_kek(vmenc_workspace_keymgr(ws), "kms", g_kek1, T_MS, &k), VMENC_OK);
    vmenc_kek_free(k);
    vmenc_workspace_free(ws);
    /* grep the workspace for the KMS client key (its base64 body) and its path */
    char keyfile[PATH_MAX + 32], pem[4096];
    snprintf(keyfile, sizeof(keyfile), "%s/certs/client.key", g_kmip.dir);
    FILE *f = fopen(keyfile, "r");
    assert_non_null(f);
    size_t n = fread(pem, 1, sizeof(pem) - 1, f);
    fclose(f);
    pem[n] = '\0';
    char *body = strchr(pem, '\n');
    assert_non_null(body);
    char needle[41];
    snprintf(needle, sizeof(needle), "%.40s", body + 1);
    char cmd[4 * PATH_MAX];
    snprintf(cmd, sizeof(cmd), "! grep -rqF -e '%s' -e '%s/certs' -e 'client.key' '%s'", needle, g_kmip.dir, hws);
    assert_int_equal(sh(cmd), 0);
    /* and the same grep finds the credential's path in the broker's
     * workspace (the grep can fail) */
    snprintf(cmd, sizeof(cmd), "grep -rqF -e '%s/certs/client.key' '%s'", g_kmip.dir, g_bws);
    assert_int_equal(sh(cmd), 0);
}


/* ---- attestation: swtpm per host ------------------------------------------------------------------- */

static char g_blob_a[PATH_MAX + 32], g_blob_b[PATH_MAX + 32];
static bool g_have_tpm;

static vmenc_broker_admin admin(void) {
    vmenc_broker_admin a = {.struct_size = sizeof(a), .cluster = CLUSTER, .etcd_endpoints = g_etcd.endpoints,
                            .etcd_ca_file = g_etcd.cacert, .etcd_cert_file = g_etcd.cert, .etcd_key_file = g_etcd.key};
    return a;
}

static vmenc_status enroll(const char *host, const swtpm_host *tpm, const char *blob) {
    char ca[PATH_MAX + 64], crt[PATH_MAX + 64], key[PATH_MAX + 64], addr[64];
    snprintf(ca, sizeof(ca), "%s/ca.crt", g_pki);
    snprintf(crt, sizeof(crt), "%s/%s.crt", g_pki, host);
    snprintf(key, sizeof(key), "%s/%s.key", g_pki, host);
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", g_br[1].port);
    vmenc_broker_enroll_spec es = {.struct_size = sizeof(es), .broker = addr, .ca_file = ca, .cert_file = crt,
                                   .key_file = key, .tpm_tcti = tpm->tcti, .ak_blob_path = blob};
    return vmenc_broker_host_enroll(&es);
}

/* get_with_tpm: hostA's Get of VM1's KEK through broker 2 with a TPM. */
static vmenc_status get_with_tpm(const char *host, const char *tcti, const char *blob) {
    vmenc_kms_cluster *c = host_kms_tpm(host, 1, 1, tcti, blob);
    vmenc_kek *k = NULL;
    vmenc_status s = vmenc_kms_cluster_get_kek(c, g_kek1, T_MS, &k, NULL);
    vmenc_kek_free(k);
    vmenc_kms_cluster_free(c);
    return s;
}

static void test_attest_enroll_approve_release(void **state) {
    (void)state;
    const char *why = NULL;
    if (short_run())
        skip();
    char d[400];
    snprintf(d, sizeof(d), "%.300s/tpm-a", g_dir);
    char ca1[400];
    snprintf(ca1, sizeof(ca1), "%.300s/tpm-ca", g_dir);
    if (!swtpm_available(&why) || !attest_tpm_available() || !swtpm_start(&g_tpm_a, d, true, ca1)) {
        fprintf(stderr, "attestation cases skipped: %s\n", why != NULL ? why : "swtpm or tss2 unavailable");
        skip();
    }
    snprintf(d, sizeof(d), "%.300s/tpm-b", g_dir);
    assert_true(swtpm_start(&g_tpm_b, d, false, NULL));
    g_have_tpm = true;
    snprintf(g_blob_a, sizeof(g_blob_a), "%s/hostA.ak", g_dir);
    snprintf(g_blob_b, sizeof(g_blob_b), "%s/hostB.ak", g_dir);
    vmenc_broker_admin a = admin();
    const char *pcrs = "sha256:0,1,2,3,4,5,6,7";
    assert_int_equal(vmenc_broker_set_attestation(&a, "per-release", pcrs, NULL), VMENC_OK);
    /* the owner without a quote: refused */
    size_t before = count_events("attestation required", "denied");
    assert_int_equal(get_with_tpm("hostA", NULL, NULL), VMENC_E_KMS_AUTH);
    assert_true(count_events("attestation required", "denied") > before);
    /* TPM A has an EK certificate. Checked against another CA (the hosts' TLS CA): refused, audited */
    char other_ca[PATH_MAX + 64], cadir[PATH_MAX + 64], cmd[3 * PATH_MAX];
    snprintf(other_ca, sizeof(other_ca), "%s/ca.crt", g_pki);
    assert_int_equal(vmenc_broker_set_attestation(&a, "per-release", pcrs, other_ca), VMENC_OK);
    before = count_events("EK certificate does not chain", "denied");
    assert_int_equal(enroll("hostA", &g_tpm_a, g_blob_a), VMENC_E_KMS_AUTH);
    assert_true(count_events("EK certificate does not chain", "denied") > before);
    assert_int_equal(access(g_blob_a, F_OK), -1); /* no AK blob kept from a refused enrolment */
    /* against the TPM manufacturer's CA (root + issuer): accepted */
    snprintf(cadir, sizeof(cadir), "%s/ek-ca", g_dir);
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && cp '%s/swtpm-localca-rootca-cert.pem' '%s/issuercert.pem' '%s/'",
             cadir, ca1, ca1, cadir);
    assert_int_equal(sh(cmd), 0);
    assert_int_equal(vmenc_broker_set_attestation(&a, "per-release", pcrs, cadir), VMENC_OK);
    /* enrolled (through its EK certificate), not yet approved: refused */
    assert_int_equal(enroll("hostA", &g_tpm_a, g_blob_a), VMENC_OK);
    assert_true(count_events("awaiting approval", "host:hostA") >= 1);
    assert_int_equal(get_with_tpm("hostA", g_tpm_a.tcti, g_blob_a), VMENC_E_KMS_AUTH);
    assert_true(count_events("no approved TPM binding", "denied") >= 1);
    /* approved, measurement approved: released */
    assert_int_equal(vmenc_broker_host_approve(&a, "hostA"), VMENC_OK);
    char golden[65];
    assert_int_equal(vmenc_broker_measurement_from_tpm(g_tpm_a.tcti, pcrs, golden), VMENC_OK);
    assert_int_equal(vmenc_broker_measurement_add(&a, "hv-1.0", pcrs, golden, "admin"), VMENC_OK);
    assert_int_equal(get_with_tpm("hostA", g_tpm_a.tcti, g_blob_a), VMENC_OK);
    assert_true(count_events("attested: measurement", "host:hostA") >= 1);
}

/* Period mode on the host side: one quote covers every Get of the period
 * (the broker's ValidUntil); per-release mode quotes before each Get. */
static void test_attest_period_one_quote(void **state) {
    (void)state;
    if (!g_have_tpm)
        skip();
    vmenc_broker_admin a = admin();
    const char *pcrs = "sha256:0,1,2,3,4,5,6,7";
    assert_int_equal(vmenc_broker_set_attestation(&a, "period=300", pcrs, NULL), VMENC_OK);
    size_t before = count_events("attested: measurement", "host:hostA");
    vmenc_kms_cluster *c = host_kms_tpm("hostA", 1, 1, g_tpm_a.tcti, g_blob_a);
    for (int i = 0; i < 4; i++) {
        vmenc_kek *k = NULL;
        assert_int_equal(vmenc_kms_cluster_get_kek(c, g_kek1, T_MS, &k, NULL), VMENC_OK);
        vmenc_kek_free(k);
    }
    size_t quotes = count_events("attested: measurement", "host:hostA") - before;
    /* per-release: a client quotes before each Get */
    vmenc_kms_cluster_free(c);
    assert_int_equal(vmenc_broker_set_attestation(&a, "per-release", pcrs, NULL), VMENC_OK);
    c = host_kms_tpm("hostA", 1, 1, g_tpm_a.tcti, g_blob_a);
    for (int i = 0; i < 2; i++) {
        vmenc_kek *k = NULL;
        assert_int_equal(vmenc_kms_cluster_get_kek(c, g_kek1, T_MS, &k, NULL), VMENC_OK);
        vmenc_kek_free(k);
    }
    vmenc_kms_cluster_free(c);
    size_t per = count_events("attested: measurement", "host:hostA") - before - quotes;
    fprintf(stderr, "period mode: %zu quote(s) for 4 Gets; per-release: %zu for 2\n", quotes, per);
    assert_int_equal(quotes, 1);
    assert_int_equal(per, 2);
}

/* raw_conn: a KMIP connection to broker 2 as |host|. */
static void raw_conn(const char *host, SSL_CTX **ctx, vmenc_kmip_conn *c) {
    char ca[PATH_MAX + 64], crt[PATH_MAX + 64], key[PATH_MAX + 64];
    snprintf(ca, sizeof(ca), "%s/ca.crt", g_pki);
    snprintf(crt, sizeof(crt), "%s/%s.crt", g_pki, host);
    snprintf(key, sizeof(key), "%s/%s.key", g_pki, host);
    assert_int_equal(vmenc_tls_ctx_new(ca, crt, key, NULL, 0, ctx), VMENC_OK);
    vmenc_kmip_conn_init(c);
    assert_int_equal(vmenc_kmip_conn_open(c, *ctx, "127.0.0.1", g_br[1].port, "127.0.0.1",
                                          vmenc_now_monotonic_ms() + T_MS),
                     VMENC_OK);
}

/* one extension request; returns the item's mapped status, the payload's
 * byte field |tag| copied to |out| when asked. */
static vmenc_status ext(vmenc_kmip_conn *c, uint32_t op, const uint8_t *const *vals, const size_t *lens,
                        const uint32_t *tags, size_t n, uint32_t tag, uint8_t *out, size_t *out_len) {
    vmenc_kmip_request req;
    const vmenc_kmip_version v = {1, 4};
    assert_int_equal(vmenc_kmip_request_begin(&req, v, 1), VMENC_OK);
    vmenc_kmip_request_item_begin(&req, op);
    for (size_t i = 0; i < n; i++)
        vmenc_ttlv_add_bytes(&req.cbb, tags[i], vals[i], lens[i]);
    vmenc_kmip_request_item_end(&req);
    uint8_t *bytes, *raw = NULL;
    size_t len, raw_len;
    bool got;
    assert_int_equal(vmenc_kmip_request_finish(&req, &bytes, &len), VMENC_OK);
    assert_int_equal(vmenc_kmip_conn_roundtrip(c, bytes, len, vmenc_now_monotonic_ms() + T_MS, &raw, &raw_len, &got),
                     VMENC_OK);
    free(bytes);
    vmenc_kmip_response resp;
    assert_int_equal(vmenc_kmip_response_parse(raw, raw_len, &resp), VMENC_OK);
    vmenc_status s = vmenc_kmip_result_status(&resp.items[0]);
    if (s == VMENC_OK && out != NULL) {
        const uint8_t *b;
        size_t bl;
        assert_int_equal(vmenc_ttlv_get_bytes(&resp.doc, resp.items[0].payload, tag, &b, &bl), VMENC_OK);
        memcpy(out, b, bl);
        *out_len = bl;
    }
    vmenc_kmip_response_cleanup(&resp);
    vmenc_secure_free(raw);
    return s;
}


/* ---- benchmark (VMENC_BROKER_BENCH=N; scripts/broker-bench.sh): KEK release latency through a
 * broker against direct KMIP to the same PyKMIP in the same run, with and without a quote per
 * release, and releases/s of one broker with 4 hosts' threads. Skipped in the suite. ---------- */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

typedef struct lat {
    double p50_ms, p99_ms, mean_ms;
} lat;

static lat summarize(uint64_t *us, int n) {
    qsort(us, (size_t)n, sizeof(us[0]), cmp_u64);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += (double)us[i];
    lat l = {.p50_ms = (double)us[n / 2] / 1000.0, .p99_ms = (double)us[(n * 99) / 100] / 1000.0,
             .mean_ms = sum / n / 1000.0};
    return l;
}

static lat bench_direct(int n, uint64_t *us) {
    vmenc_keymgr *mgr = vmenc_workspace_keymgr(g_ws);
    for (int i = 0; i < n; i++) {
        uint64_t t0 = vmenc_now_monotonic_ns();
        assert_int_equal(vmenc_keymgr_forget(mgr, "kms", g_kek1), VMENC_OK);
        vmenc_kek *k = NULL;
        assert_int_equal(vmenc_keymgr_get_kek(mgr, "kms", g_kek1, T_MS, &k), VMENC_OK);
        vmenc_kek_free(k);
        us[i] = (vmenc_now_monotonic_ns() - t0) / 1000;
    }
    return summarize(us, n);
}

static lat bench_broker(int n, uint64_t *us, const char *tcti, const char *blob) {
    vmenc_kms_cluster *c = host_kms_tpm("hostA", 1, 1, tcti, blob);
    for (int i = 0; i < n; i++) {
        uint64_t t0 = vmenc_now_monotonic_ns();
        vmenc_kek *k = NULL;
        assert_int_equal(vmenc_kms_cluster_get_kek(c, g_kek1, T_MS, &k, NULL), VMENC_OK);
        vmenc_kek_free(k);
        us[i] = (vmenc_now_monotonic_ns() - t0) / 1000;
    }
    vmenc_kms_cluster_free(c);
    return summarize(us, n);
}

typedef struct par {
    int n;
    int ok;
} par;

static void *par_main(void *arg) {
    par *p = arg;
    vmenc_kms_cluster *c = host_kms_of("hostA", 1, 1);
    for (int i = 0; i < p->n; i++) {
        vmenc_kek *k = NULL;
        if (vmenc_kms_cluster_get_kek(c, g_kek1, T_MS, &k, NULL) == VMENC_OK)
            p->ok++;
        vmenc_kek_free(k);
    }
    vmenc_kms_cluster_free(c);
    return NULL;
}

static void test_bench_release_latency(void **state) {
    (void)state;
    const char *env = getenv("VMENC_BROKER_BENCH");
    if (env == NULL || !g_have_tpm)
        skip();
    int n = atoi(env);
    if (n < 10)
        n = 10;
    uint64_t *us = calloc((size_t)n, sizeof(uint64_t));
    assert_non_null(us);
    vmenc_broker_admin a = admin();
    const char *pcrs = "sha256:0,1,2,3,4,5,6,7";
    lat quote = bench_broker(n, us, g_tpm_a.tcti, g_blob_a); /* mode per-release (set by the enrol case) */
    assert_int_equal(vmenc_broker_set_attestation(&a, "off", pcrs, NULL), VMENC_OK);
    lat plain = bench_broker(n, us, NULL, NULL);
    lat direct = bench_direct(n, us);
    int threads = 4, per = n;
    par ps[4];
    pthread_t th[4];
    uint64_t t0 = vmenc_now_monotonic_ns();
    for (int i = 0; i < threads; i++) {
        ps[i] = (par){.n = per};
        assert_int_equal(pthread_create(&th[i], NULL, par_main, &ps[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        ok += ps[i].ok;
    }
    double secs = (double)(vmenc_now_monotonic_ns() - t0) / 1e9;
    assert_int_equal(ok, threads * per);
    printf("broker bench (%d releases each; same PyKMIP, same etcd, same run)\n", n);
    printf("| path | p50 ms | p99 ms | mean ms | ratio to direct (p50) |\n|---|---|---|---|---|\n");
    printf("| direct KMIP (broker workspace -> PyKMIP) | %.2f | %.2f | %.2f | 1.00 |\n", direct.p50_ms, direct.p99_ms,
           direct.mean_ms);
    printf("| host -> broker -> PyKMIP, attestation off | %.2f | %.2f | %.2f | %.2f |\n", plain.p50_ms, plain.p99_ms,
           plain.mean_ms, plain.p50_ms / direct.p50_ms);
    printf("| host -> broker -> PyKMIP, quote per release (swtpm) | %.2f | %.2f | %.2f | %.2f |\n", quote.p50_ms,
           quote.p99_ms, quote.mean_ms, quote.p50_ms / direct.p50_ms);
    printf("releases/s of one broker, %d host threads, attestation off: %.1f\n", threads, ok / secs);
    assert_int_equal(vmenc_broker_set_attestation(&a, "per-release", pcrs, NULL), VMENC_OK);
    free(us);
}

static void test_attest_replayed_quote_refused(void **state) {
    (void)state;
    if (!g_have_tpm)
        skip();
    SSL_CTX *ctx = NULL;
    vmenc_kmip_conn c;
    raw_conn("hostA", &ctx, &c);
    uint8_t n1[64], n2[64];
    size_t n1_len = 0, n2_len = 0;
    assert_int_equal(ext(&c, (uint32_t)BROKER_OP_ATTEST_CHALLENGE, NULL, NULL, NULL, 0, BROKER_TAG_NONCE, n1, &n1_len),
                     VMENC_OK);
    uint8_t *blob = NULL, *att = NULL, *sig = NULL, *pcr = NULL;
    size_t blob_len = 0, att_len = 0, sig_len = 0, pcr_len = 0;
    FILE *bf = fopen(g_blob_a, "rb");
    assert_non_null(bf);
    blob = malloc(1 << 16);
    blob_len = fread(blob, 1, 1 << 16, bf);
    fclose(bf);
    assert_true(blob_len > 0);
    attest_tpm *tpm = NULL;
    assert_int_equal(attest_tpm_open(g_tpm_a.tcti, &tpm), VMENC_OK);
    assert_int_equal(attest_tpm_quote(tpm, blob, blob_len, n1, n1_len, "sha256:0,1,2,3,4,5,6,7", &att, &att_len, &sig,
                                      &sig_len, &pcr, &pcr_len),
                     VMENC_OK);
    attest_tpm_close(tpm);
    const uint8_t *vals[] = {n1, att, sig, pcr};
    const size_t lens[] = {n1_len, att_len, sig_len, pcr_len};
    const uint32_t tags[] = {BROKER_TAG_NONCE, BROKER_TAG_QUOTE_ATTEST, BROKER_TAG_QUOTE_SIGNATURE,
                             BROKER_TAG_PCR_VALUES};
    /* a good quote on the nonce issued: accepted */
    assert_int_equal(ext(&c, (uint32_t)BROKER_OP_ATTEST_QUOTE, vals, lens, tags, 4, 0, NULL, NULL), VMENC_OK);
    /* the same quote again (its nonce used), and after a new challenge (an old nonce): refused */
    size_t before = count_events("replayed, used or expired", "denied");
    assert_int_equal(ext(&c, (uint32_t)BROKER_OP_ATTEST_QUOTE, vals, lens, tags, 4, 0, NULL, NULL), VMENC_E_KMS_AUTH);
    assert_int_equal(ext(&c, (uint32_t)BROKER_OP_ATTEST_CHALLENGE, NULL, NULL, NULL, 0, BROKER_TAG_NONCE, n2, &n2_len),
                     VMENC_OK);
    assert_int_equal(ext(&c, (uint32_t)BROKER_OP_ATTEST_QUOTE, vals, lens, tags, 4, 0, NULL, NULL), VMENC_E_KMS_AUTH);
    assert_true(count_events("replayed, used or expired", "denied") >= before + 2);
    free(blob);
    free(att);
    free(sig);
    free(pcr);
    vmenc_kmip_conn_close(&c);
    SSL_CTX_free(ctx);
}

static void test_attest_other_tpm_refused(void **state) {
    (void)state;
    if (!g_have_tpm)
        skip();
    /* an AK of TPM B (TPM B has no EK certificate, and the cluster now
     * trusts EK certificates only: made on the TPM, not enrolled); hostA
     * then quotes with it: not the AK bound to hostA */
    attest_tpm *tb = NULL;
    uint8_t *pub = NULL, *blob = NULL;
    size_t pub_len = 0, blob_len = 0;
    assert_int_equal(attest_tpm_open(g_tpm_b.tcti, &tb), VMENC_OK);
    assert_int_equal(attest_tpm_ak_create(tb, &pub, &pub_len, &blob, &blob_len), VMENC_OK);
    attest_tpm_close(tb);
    FILE *f = fopen(g_blob_b, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(blob, 1, blob_len, f), blob_len);
    fclose(f);
    free(pub);
    free(blob);
    size_t before = count_events("host:hostA", "signature does not verify with the AK");
    assert_int_equal(get_with_tpm("hostA", g_tpm_b.tcti, g_blob_b), VMENC_E_KMS_AUTH);
    assert_true(count_events("host:hostA", "signature does not verify with the AK") > before);
}

static void test_attest_changed_pcr_refused_then_recovers(void **state) {
    (void)state;
    if (!g_have_tpm)
        skip();
    const char *pcrs = "sha256:0,1,2,3,4,5,6,7";
    attest_tpm *tpm = NULL;
    uint8_t hv[ATTEST_DIGEST_BYTES];
    crypto_hash_sha256(hv, (const uint8_t *)"hypervisor 1.1 (unapproved)", 27);
    assert_int_equal(attest_tpm_open(g_tpm_a.tcti, &tpm), VMENC_OK);
    assert_int_equal(attest_tpm_pcr_extend(tpm, 4, hv), VMENC_OK);
    attest_tpm_close(tpm);
    size_t before = count_events("measurement not approved", "host:hostA");
    assert_int_equal(get_with_tpm("hostA", g_tpm_a.tcti, g_blob_a), VMENC_E_KMS_AUTH);
    assert_true(count_events("measurement not approved", "host:hostA") > before);
    /* the cluster key's KEK needs no quote: the host still opens its workspace and finds its VMs locked */
    vmenc_kms_cluster *cc = host_kms_tpm("hostA", 1, 1, g_tpm_a.tcti, g_blob_a);
    vmenc_kek *ck = NULL;
    assert_int_equal(vmenc_kms_cluster_get_kek(cc, g_cluster_kek, T_MS, &ck, NULL), VMENC_OK);
    vmenc_kek_free(ck);
    vmenc_kms_cluster_free(cc);
    /* the administrator approves the new measurement: the host attests again and gets its key */
    char now[65];
    vmenc_broker_admin a = admin();
    assert_int_equal(vmenc_broker_measurement_from_tpm(g_tpm_a.tcti, pcrs, now), VMENC_OK);
    assert_int_equal(vmenc_broker_measurement_add(&a, "hv-1.1", pcrs, now, "admin"), VMENC_OK);
    assert_int_equal(get_with_tpm("hostA", g_tpm_a.tcti, g_blob_a), VMENC_OK);
    /* withdrawn again: refused; revoked binding: refused */
    assert_int_equal(vmenc_broker_measurement_remove(&a, "hv-1.1"), VMENC_OK);
    assert_int_equal(get_with_tpm("hostA", g_tpm_a.tcti, g_blob_a), VMENC_E_KMS_AUTH);
    assert_int_equal(vmenc_broker_host_revoke(&a, "hostA"), VMENC_OK);
    assert_int_equal(get_with_tpm("hostA", g_tpm_a.tcti, g_blob_a), VMENC_E_KMS_AUTH);
    assert_int_equal(vmenc_broker_set_attestation(&a, "off", pcrs, NULL), VMENC_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_setup_cluster_and_brokers),
        cmocka_unit_test(test_release_to_owner),
        cmocka_unit_test(test_refused_unknown_certificate),
        cmocka_unit_test(test_refused_not_in_encryption_mode),
        cmocka_unit_test(test_refused_not_owner),
        cmocka_unit_test(test_placed_host_without_owner),
        cmocka_unit_test(test_create_for_host),
        cmocka_unit_test(test_locate_by_name),
        cmocka_unit_test(test_refused_without_quorum),
        cmocka_unit_test(test_failover_one_broker_stopped),
        cmocka_unit_test(test_host_workspace_has_no_kms_credential),
        cmocka_unit_test(test_attest_enroll_approve_release),
        cmocka_unit_test(test_attest_period_one_quote),
        cmocka_unit_test(test_bench_release_latency),
        cmocka_unit_test(test_attest_replayed_quote_refused),
        cmocka_unit_test(test_attest_other_tpm_refused),
        cmocka_unit_test(test_attest_changed_pcr_refused_then_recovers),
    };
    if (group_setup(NULL) != 0) {
        fprintf(stderr, "SKIP: etcd, PyKMIP or openssl cannot start here\n");
        group_teardown(NULL);
        return 77;
    }
    int rc = cmocka_run_group_tests_name("key broker", tests, NULL, NULL);
    group_teardown(NULL);
    return rc;
}
