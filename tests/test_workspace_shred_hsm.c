/*
 * tests/test_workspace_shred_hsm.c - crypto-shredding with a real PKCS#11
 * token (issue 24 item 1; docs/workspace.md "Creating and deleting a VM"):
 * a workspace whose storage policy keeps VM keys on a SoftHSM2 token
 * (tests/kms/softhsm.sh makes a throwaway one), a VM created under it, a
 * copy of its home taken, the VM deleted with
 * VMENC_WORKSPACE_DELETE_DESTROY_KEYS: the KEK object is gone from the
 * token and the copy, put back and registered, opens locked. The same
 * with PyKMIP is bindings/python/tests/test_kmip.py.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmenc/vmenc.h"

#define TOKEN "shred-test"
#define PIN "1234"
#define PASS "hsm shredding passphrase"

static char g_dir[256];
static const char *g_module = "/usr/lib/softhsm/libsofthsm2.so";

/* run: "cp -a 'A' 'B'", or with B NULL "rm -rf 'A'". */
static void run(const char *a, const char *b) {
    char cmd[2048];
    if (b != NULL)
        assert_true(snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", a, b) < (int)sizeof(cmd));
    else
        assert_true(snprintf(cmd, sizeof(cmd), "rm -rf '%s'", a) < (int)sizeof(cmd));
    assert_int_equal(system(cmd), 0);
}

static void test_destroy_keys_on_softhsm(void **state) {
    (void)state;
    if (access(g_module, R_OK) != 0)
        skip(); /* softhsm2 not installed: reported as skipped, not passed */
    snprintf(g_dir, sizeof(g_dir), "/tmp/vmenc-shredhsm-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "SOFTHSM_TOKEN_LABEL=%s SOFTHSM_SELFTEST=0 SOFTHSM_MODULE=%s bash %s/tests/kms/softhsm.sh %s/hsm >/dev/null",
             TOKEN, g_module, VMENC_SOURCE_DIR, g_dir);
    if (system(cmd) != 0)
        fail_msg("softhsm.sh failed: are softhsm2 and opensc installed?");
    char conf[512], ws_dir[300], pin_file[300];
    snprintf(conf, sizeof(conf), "%s/hsm/softhsm2.conf", g_dir);
    setenv("SOFTHSM2_CONF", conf, 1);
    snprintf(ws_dir, sizeof(ws_dir), "%s/ws", g_dir);
    snprintf(pin_file, sizeof(pin_file), "%s/pin", g_dir);
    FILE *fp = fopen(pin_file, "w");
    assert_non_null(fp);
    fputs(PIN "\n", fp);
    fclose(fp);

    vmenc_workspace_create_options co = {.struct_size = sizeof(co), .passphrase = (const uint8_t *)PASS,
                                         .passphrase_len = strlen(PASS), .admin = "alice", .host_id = "esx01",
                                         .kdf_opslimit = 1, .kdf_memlimit_kib = 8192};
    assert_int_equal(vmenc_workspace_create(ws_dir, &co, NULL), VMENC_OK);
    vmenc_workspace_open_options oo = {.struct_size = sizeof(oo), .passphrase = (const uint8_t *)PASS,
                                       .passphrase_len = strlen(PASS), .flags = VMENC_WORKSPACE_OPEN_NO_SYNC};
    vmenc_workspace *ws = NULL;
    assert_int_equal(vmenc_workspace_open(ws_dir, &oo, NULL, &ws), VMENC_OK);
    const char *eps[1] = {g_module};
    const char *opts[] = {"token_label=" TOKEN, NULL};
    vmenc_workspace_kms_spec ks = {.struct_size = sizeof(ks), .alias = "hsm", .type = "pkcs11", .endpoints = eps,
                                   .num_endpoints = 1, .options = opts, .secret_file = pin_file};
    assert_int_equal(vmenc_workspace_add_kms(ws, "alice", &ks), VMENC_OK);
    vmenc_storage_policy_spec sp = {.struct_size = sizeof(sp), .name = "HSM Policy", .encrypt = 1,
                                    .file_classes = VMENC_FILE_VM_HOME | VMENC_FILE_DISKS, .key_provider = "hsm",
                                    .migration = VMENC_MIGRATION_OPPORTUNISTIC};
    assert_int_equal(vmenc_policy_set_storage_policy(vmenc_workspace_policy(ws), &sp), VMENC_OK);
    uint64_t caps[1] = {1u << 20};
    vmenc_workspace_vm_spec spec = {.struct_size = sizeof(spec), .name = "h1", .storage_policy = "HSM Policy",
                                    .disk_capacities = caps, .num_disks = 1};
    vmenc_vm *vm = NULL;
    assert_int_equal(vmenc_workspace_create_vm(ws, "alice", &spec, NULL, &vm), VMENC_OK);
    vmenc_disk *d = NULL;
    assert_int_equal(vmenc_disk_open(vm, "alice", "scsi0:0", 0, &d), VMENC_OK);
    assert_int_equal(vmenc_disk_pwrite(d, 0, (const uint8_t *)"hsm data", 8), VMENC_OK);
    assert_int_equal(vmenc_disk_close(d), VMENC_OK);
    vmenc_vm_free(vm);

    char home[512], backup[600], vmx[600];
    assert_int_equal(vmenc_workspace_vm_home(ws, "h1", home, sizeof(home)), VMENC_OK);
    snprintf(backup, sizeof(backup), "%s/backup", g_dir);
    run(home, backup);
    vmenc_workspace_delete_result r = {.struct_size = sizeof(r)};
    assert_int_equal(vmenc_workspace_delete_vm(ws, "alice", "h1", VMENC_WORKSPACE_DELETE_DESTROY_KEYS, &r), VMENC_OK);
    assert_string_equal(r.key_provider, "hsm");
    assert_int_equal(r.num_keys_destroyed, 1);
    /* the token no longer has it: a wrap under it fails */
    vmenc_dek *dek = NULL;
    assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
    vmenc_wrap_context ctx = {sizeof(ctx), "vm-x", "disk-x", "disk"};
    vmenc_wrapped_key *wk = NULL;
    assert_int_not_equal(vmenc_keymgr_wrap_dek(vmenc_workspace_keymgr(ws), "hsm", r.kek_id, dek, &ctx, 5000, &wk),
                         VMENC_OK);
    assert_null(wk);
    vmenc_dek_free(dek);
    /* the copy made before the delete no longer opens */
    run(backup, home);
    assert_int_equal(vmenc_workspace_vm_path(ws, "h1", vmx, sizeof(vmx)), VMENC_OK);
    assert_int_equal(vmenc_vm_register(vmenc_workspace_host(ws), "alice", vmx, vmenc_workspace_folder(ws), NULL, &vm),
                     VMENC_E_VM_LOCKED);
    vmenc_vm_free(vm);
    vmenc_workspace_free(ws);
    run(g_dir, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_destroy_keys_on_softhsm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
