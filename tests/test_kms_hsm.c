/*
 * tests/test_kms_hsm.c - the key manager with a real HSM: a cluster of two
 * PKCS#11 endpoints on one SoftHSM2 token (tests/kms/softhsm.sh), the first
 * behind the fault proxy. The KEK never leaves the token, so the key
 * manager wraps and unwraps DEKs remotely (AES-KWP inside the token, the
 * context bound by vmenc's digest); the proxy makes the first endpoint go
 * down or lie, and the cluster must fail over without ever yielding a wrong
 * DEK.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "fault_provider.h"
#include "vmenc/vmenc.h"

#define TOKEN "kms-test"
#define PIN "1234"

static char g_dir[256];
static const char *g_module = "/usr/lib/softhsm/libsofthsm2.so";

static int group_setup(void **state) {
    if (getenv("PKCS11_TEST_MODULE") != NULL)
        g_module = getenv("PKCS11_TEST_MODULE");
    snprintf(g_dir, sizeof(g_dir), "/tmp/vmenc-kmshsm-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "SOFTHSM_TOKEN_LABEL=%s SOFTHSM_SELFTEST=0 SOFTHSM_MODULE=%s bash %s/tests/kms/softhsm.sh %s >/dev/null",
             TOKEN, g_module, VMENC_SOURCE_DIR, g_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "softhsm.sh failed: are softhsm2 and opensc installed?\n");
        return -1;
    }
    char conf[512];
    snprintf(conf, sizeof(conf), "%s/softhsm2.conf", g_dir);
    setenv("SOFTHSM2_CONF", conf, 1);
    return vmenc_init() == VMENC_OK ? 0 : -1;
}

static int group_teardown(void **state) {
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *const k_opts[] = {"token_label=" TOKEN, NULL};

static vmenc_kms_provider *new_pkcs11(void) {
    vmenc_kms_endpoint_config cfg = {.struct_size = sizeof(cfg), .type = "pkcs11", .address = g_module,
                                     .options = k_opts, .secret = (const uint8_t *)PIN, .secret_len = strlen(PIN)};
    vmenc_kms_provider *p = NULL;
    vmenc_status st = vmenc_kms_provider_new_builtin(&cfg, &p);
    if (st != VMENC_OK)
        fail_msg("pkcs11 provider: %s", vmenc_status_name(st));
    return p;
}

static const vmenc_wrap_context CTX = {sizeof(vmenc_wrap_context), "vm-42", "disk-1", "disk"};

static void test_keymgr_remote_through_hsm_cluster(void **state) {
    vmenc_keymgr *m = NULL;
    assert_int_equal(vmenc_keymgr_new(NULL, &m), VMENC_OK);
    vmenc_kms_cluster_options co = {.struct_size = sizeof(co), .backoff_initial_ms = 1, .backoff_max_ms = 1,
                                    .flags = VMENC_KMS_CLUSTER_NO_JITTER};
    vmenc_kms_cluster *c = NULL;
    assert_int_equal(vmenc_kms_cluster_new("hsm", &co, &c), VMENC_OK);
    vmenc_kms_provider *proxy = NULL;
    assert_int_equal(fault_proxy_new(new_pkcs11(), &proxy), VMENC_OK);
    fault_provider *fp = as_fault(proxy);
    assert_int_equal(vmenc_kms_cluster_take_endpoint(c, "hsm-a", proxy), VMENC_OK);
    assert_int_equal(vmenc_kms_cluster_take_endpoint(c, "hsm-b", new_pkcs11()), VMENC_OK);
    assert_int_equal(vmenc_keymgr_take_cluster(m, c), VMENC_OK);

    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_keymgr_create_kek(m, "hsm", "tenant key", 5000, id, sizeof(id)), VMENC_OK);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_keymgr_get_kek(m, "hsm", id, 5000, &k), VMENC_E_UNSUPPORTED);
    assert_null(k);

    vmenc_dek *dek = NULL, *back = NULL;
    assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
    vmenc_wrapped_key *wk = NULL;
    assert_int_equal(vmenc_keymgr_wrap_dek(m, "hsm", id, dek, &CTX, 5000, &wk), VMENC_OK);
    assert_int_equal(vmenc_wrapped_key_alg(wk), VMENC_WRAP_AES256_KWP);
    assert_string_equal(vmenc_wrapped_key_kek_id(wk), id);
    assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk, &CTX, 5000, &back), VMENC_OK);
    assert_int_equal(vmenc_dek_equal(dek, back), VMENC_OK);
    vmenc_dek_free(back);
    back = NULL;

    /* Bound to its context, checked after the token unwrapped. */
    vmenc_wrap_context other = CTX;
    other.vm_uuid = "vm-43";
    assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk, &other, 5000, &back), VMENC_E_AUTH);
    assert_null(back);

    /* Endpoint a goes down: b answers. */
    fault_set_mode(fp, FAULT_DOWN);
    assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk, &CTX, 5000, &back), VMENC_OK);
    assert_int_equal(vmenc_dek_equal(dek, back), VMENC_OK);
    vmenc_dek_free(back);
    back = NULL;
    vmenc_keymgr_stats st = {.struct_size = sizeof(st)};
    assert_int_equal(vmenc_keymgr_get_stats(m, &st), VMENC_OK);
    assert_true(st.failovers >= 1);
    assert_int_equal(st.cached, 0); /* nothing of an HSM key is held by the host */

    /* Endpoint a lies (returns random "plaintext"): the binding digest
     * catches it; the answer is an error, never another DEK. */
    usleep(5000);
    fault_set_mode(fp, FAULT_WRONG_KEY);
    vmenc_status s = vmenc_keymgr_unwrap_dek(m, wk, &CTX, 5000, &back);
    assert_int_equal(s, VMENC_E_AUTH);
    assert_null(back);

    /* Garbled answers fail over to the honest endpoint. */
    usleep(5000);
    fault_set_mode(fp, FAULT_CORRUPT);
    assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk, &CTX, 5000, &back), VMENC_OK);
    assert_int_equal(vmenc_dek_equal(dek, back), VMENC_OK);
    vmenc_dek_free(back);
    back = NULL;

    fault_set_mode(fp, FAULT_NONE);
    size_t healthy = 0;
    assert_int_equal(vmenc_keymgr_check_health(m, "hsm", 5000, &healthy), VMENC_OK);
    assert_int_equal(healthy, 2);
    assert_int_equal(vmenc_keymgr_destroy_kek(m, "hsm", id, 5000), VMENC_OK);
    s = vmenc_keymgr_unwrap_dek(m, wk, &CTX, 5000, &back);
    assert_true(s == VMENC_E_KEY_NOT_FOUND || s == VMENC_E_KEY_STATE);
    assert_null(back);

    vmenc_wrapped_key_free(wk);
    vmenc_dek_free(dek);
    vmenc_keymgr_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keymgr_remote_through_hsm_cluster),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
