/*
 * tests/test_vm_kms.c - the VM lifecycle against real key managers: a
 * PyKMIP server over mutual TLS (KEKs fetched by ID) and a SoftHSM2 token
 * (KEKs never leave it: DEKs wrapped and unwrapped inside). Both are
 * started by the test. With KMIP, the locked-VM story end to end: the KMS
 * stops, the running VM keeps doing I/O, a restarted host opens the VM
 * locked, the KMS comes back, unlock, I/O.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/pykmip_ctl.h"
#include "vm_fixture.h"

#define CAP (2u * 1024u * 1024u)
#define OK(call) assert_int_equal((call), VMENC_OK)

static vmfix g_f;
static pykmip_env g_env;
static int g_port = -1;
static char g_hsm_dir[256];
static const char *g_module = "/usr/lib/softhsm/libsofthsm2.so";

/* add_real_clusters adds "kmip" (the PyKMIP server) and "hsm" (SoftHSM)
 * to the fixture's current key manager. */
static void add_real_clusters(void) {
    char ca[PATH_MAX + 32], cert[PATH_MAX + 32], key[PATH_MAX + 32], addr[64];
    snprintf(ca, sizeof(ca), "ca=%s/certs/ca.crt", g_env.dir);
    snprintf(cert, sizeof(cert), "cert=%s/certs/client.crt", g_env.dir);
    snprintf(key, sizeof(key), "key=%s/certs/client.key", g_env.dir);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", g_port);
    const char *kopts[] = {ca, cert, key, NULL};
    vmenc_kms_endpoint_config k = {.struct_size = sizeof(k), .type = "kmip", .address = addr, .options = kopts};
    vmenc_kms_cluster_options co = {.struct_size = sizeof(co), .backoff_initial_ms = 1, .backoff_max_ms = 1,
                                    .flags = VMENC_KMS_CLUSTER_NO_JITTER};
    OK(vmenc_keymgr_add_cluster(g_f.mgr, "kmip", &k, 1, &co));
    const char *hopts[] = {"token_label=vm-test", NULL};
    vmenc_kms_endpoint_config h = {.struct_size = sizeof(h), .type = "pkcs11", .address = g_module,
                                   .options = hopts, .secret = (const uint8_t *)"1234", .secret_len = 4};
    OK(vmenc_keymgr_add_cluster(g_f.mgr, "hsm", &h, 1, &co));
}

static void restart_host(void) {
    OK(vmfix_new_keymgr(&g_f));
    add_real_clusters();
    OK(vmfix_new_host(&g_f, "esx01"));
}

static int setup(void **state) {
    (void)state;
    if (getenv("PKCS11_TEST_MODULE") != NULL)
        g_module = getenv("PKCS11_TEST_MODULE");
    if (pykmip_env_init(&g_env, VMENC_SOURCE_DIR) != 0 || !pykmip_available(&g_env)) {
        fprintf(stderr, "python3-pykmip is not installed: cannot run the KMIP tests\n");
        return -1;
    }
    g_port = pykmip_free_port();
    if (g_port < 0 || pykmip_start(&g_env, g_port, NULL) != 0)
        return -1;
    snprintf(g_hsm_dir, sizeof(g_hsm_dir), "/tmp/vmenc-vmhsm-XXXXXX");
    if (mkdtemp(g_hsm_dir) == NULL)
        return -1;
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "SOFTHSM_TOKEN_LABEL=vm-test SOFTHSM_SELFTEST=0 SOFTHSM_MODULE=%s bash %s/tests/kms/softhsm.sh %s >/dev/null",
             g_module, VMENC_SOURCE_DIR, g_hsm_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "softhsm.sh failed: are softhsm2 and opensc installed?\n");
        return -1;
    }
    char conf[512];
    snprintf(conf, sizeof(conf), "%s/softhsm2.conf", g_hsm_dir);
    setenv("SOFTHSM2_CONF", conf, 1);
    if (vmfix_setup(&g_f, 0) != VMENC_OK)
        return -1;
    vmenc_storage_policy_spec sp = {.struct_size = sizeof(sp), .name = "kmip-enc", .encrypt = 1,
                                    .file_classes = VMENC_FILE_VM_HOME | VMENC_FILE_DISKS,
                                    .key_provider = "kmip", .migration = VMENC_MIGRATION_REQUIRED};
    if (vmenc_policy_set_storage_policy(g_f.policy, &sp) != VMENC_OK)
        return -1;
    sp.name = "hsm-enc";
    sp.key_provider = "hsm";
    if (vmenc_policy_set_storage_policy(g_f.policy, &sp) != VMENC_OK)
        return -1;
    restart_host();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    vmfix_teardown(&g_f);
    pykmip_env_cleanup(&g_env);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_hsm_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_pattern(vmenc_vm *vm, const char *id, uint8_t *model, uint32_t seed) {
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    for (size_t i = 0; i < CAP; i++)
        model[i] = (uint8_t)((i * 2654435761u) >> 13 ^ seed);
    OK(vmenc_disk_pwrite(d, 0, model, CAP));
    /* and some unaligned pieces */
    for (uint64_t off = 1000; off + 700 < CAP; off += 100003) {
        memset(model + off, (int)(off & 0xff), 700);
        OK(vmenc_disk_pwrite(d, off, model + off, 700));
    }
    OK(vmenc_disk_close(d));
}

static void check_pattern(vmenc_vm *vm, const char *who, const char *id, const uint8_t *model) {
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, who, id, VMENC_DISK_OPEN_READONLY, &d));
    uint8_t *back = malloc(CAP);
    OK(vmenc_disk_pread(d, 0, CAP, back));
    assert_memory_equal(back, model, CAP);
    free(back);
    OK(vmenc_disk_close(d));
}

/* create -> write -> restart -> open -> read -> shallow rekey -> restart ->
 * read, with the KEKs in |provider|. */
static void lifecycle(const char *name, const char *policy, const char *provider) {
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", name, policy, &vm));
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    OK(vmenc_vm_get_info(vm, &info));
    assert_string_equal(info.key_provider, provider);
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    uint8_t *model = malloc(CAP);
    write_pattern(vm, id, model, 7);
    vmenc_vm_free(vm);
    restart_host();
    char vmx[PATH_MAX + 64];
    vmfix_vmx_path(&g_f, name, vmx, sizeof(vmx));
    OK(vmenc_vm_open(g_f.host, "bob", vmx, &vm));
    check_pattern(vm, "bob", id, model);
    OK(vmenc_vm_rekey_shallow(vm, "alice", NULL, NULL));
    vmenc_vm_info after = {.struct_size = sizeof(after)};
    OK(vmenc_vm_get_info(vm, &after));
    assert_string_not_equal(after.kek_id, info.kek_id);
    vmenc_vm_free(vm);
    restart_host();
    OK(vmenc_vm_open(g_f.host, "bob", vmx, &vm));
    check_pattern(vm, "bob", id, model);
    vmenc_vm_free(vm);
    free(model);
}

static void test_lifecycle_kmip(void **state) { lifecycle("kmip1", "kmip-enc", "kmip"); }

static void test_lifecycle_pkcs11(void **state) { lifecycle("hsm1", "hsm-enc", "hsm"); }

static void test_locked_story_kmip(void **state) {
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", "kmip-lock", "kmip-enc", &vm));
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    uint8_t *model = malloc(CAP);
    write_pattern(vm, id, model, 1);
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    /* the KMS goes away; the running VM's keys are in memory */
    assert_int_equal(pykmip_stop(&g_env, g_port), 0);
    const uint8_t more[] = "written while the KMS was down";
    OK(vmenc_disk_pwrite(d, 4097, more, sizeof(more)));
    memcpy(model + 4097, more, sizeof(more));
    uint8_t *back = malloc(CAP);
    OK(vmenc_disk_pread(d, 0, CAP, back));
    assert_memory_equal(back, model, CAP);
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);
    /* the host restarts: nothing cached, the KMS unreachable */
    restart_host();
    char vmx[PATH_MAX + 64];
    vmfix_vmx_path(&g_f, "kmip-lock", vmx, sizeof(vmx));
    vm = NULL;
    assert_int_equal(vmenc_vm_open(g_f.host, "bob", vmx, &vm), VMENC_E_VM_LOCKED);
    assert_non_null(vm);
    vmenc_vm_info li = {.struct_size = sizeof(li)};
    OK(vmenc_vm_get_info(vm, &li));
    assert_int_equal(li.locked, 1);
    char alias[64], kek[VMENC_KMS_KEY_ID_CAP];
    vmenc_status why = VMENC_OK;
    OK(vmenc_vm_get_missing_key(vm, 0, alias, sizeof(alias), kek, sizeof(kek), &why));
    assert_string_equal(alias, "kmip");
    assert_string_equal(kek, li.kek_id);
    assert_true(why == VMENC_E_KMS_UNAVAILABLE || why == VMENC_E_KMS_TIMEOUT);
    assert_int_equal(vmenc_disk_open(vm, "bob", id, 0, &d), VMENC_E_VM_LOCKED);
    /* the KMS is back (same database): unlock, I/O */
    assert_int_equal(pykmip_start(&g_env, g_port, NULL), 0);
    OK(vmenc_vm_unlock(vm, "bob"));
    check_pattern(vm, "bob", id, model);
    vmenc_vm_free(vm);
    free(back);
    free(model);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle_kmip),
        cmocka_unit_test(test_lifecycle_pkcs11),
        cmocka_unit_test(test_locked_story_kmip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
