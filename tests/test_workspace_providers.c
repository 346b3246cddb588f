/*
 * tests/test_workspace_providers.c - key providers of a workspace as an
 * operator meets them (issue 24 items 3 and 4; docs/workspace.md):
 *   - one provider whose secret_file (or keystore file) is gone no longer
 *     breaks the workspace: it opens, that provider is left out with a
 *     detail naming it and the file, its VMs open locked, the others work,
 *     and the provider can be listed and removed; once the file is back
 *     its VMs open again;
 *   - no silent provider drift: after a shallow rekey to a provider other
 *     than the one the VM's storage policy names, the VM no longer claims
 *     that policy (audited with the reason), nothing re-keys it back on
 *     resume, and recording a policy that names the new provider re-keys
 *     nothing.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmenc/vmenc.h"

#define PASS "providers test passphrase"
#define MARKER "providers marker"

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_rf(const char *p) { (void)nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

typedef struct fx {
    char root[64];
    char dir[96];
    char secret[128];   /* the tenant provider's secret_file */
    char keystore[128]; /* its keystore */
    vmenc_workspace *ws;
} fx;

static vmenc_status open_ws(fx *f, vmenc_workspace_error *err) {
    vmenc_workspace_open_options oo = {.struct_size = sizeof(oo), .passphrase = (const uint8_t *)PASS,
                                       .passphrase_len = strlen(PASS), .flags = VMENC_WORKSPACE_OPEN_NO_SYNC};
    f->ws = NULL;
    return vmenc_workspace_open(f->dir, &oo, err, &f->ws);
}

static void must_open(fx *f) {
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_status st = open_ws(f, &err);
    if (st != VMENC_OK)
        fail_msg("open: %s: %s: %s", vmenc_status_name(st), err.file, err.message);
}

static void write_file(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void add_policy(fx *f, const char *name, const char *provider) {
    vmenc_storage_policy_spec sp = {.struct_size = sizeof(sp), .name = name, .encrypt = 1,
                                    .file_classes = VMENC_FILE_VM_HOME | VMENC_FILE_DISKS,
                                    .key_provider = provider, .migration = VMENC_MIGRATION_OPPORTUNISTIC};
    assert_int_equal(vmenc_policy_set_storage_policy(vmenc_workspace_policy(f->ws), &sp), VMENC_OK);
}

static int setup(void **state) {
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->root, sizeof(f->root), "/tmp/vmenc-providers-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->dir, sizeof(f->dir), "%s/ws", f->root);
    snprintf(f->secret, sizeof(f->secret), "%s/tenant.secret", f->root);
    snprintf(f->keystore, sizeof(f->keystore), "%s/tenant.vks", f->root);
    vmenc_workspace_create_options co = {.struct_size = sizeof(co), .passphrase = (const uint8_t *)PASS,
                                         .passphrase_len = strlen(PASS), .admin = "alice", .host_id = "esx01",
                                         .kdf_opslimit = 1, .kdf_memlimit_kib = 8192,
                                         .flags = VMENC_WORKSPACE_CREATE_DEFAULT_POLICY};
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    assert_int_equal(vmenc_workspace_create(f->dir, &co, &err), VMENC_OK);
    must_open(f);
    write_file(f->secret, "tenant secret passphrase\n");
    const char *eps[1] = {f->keystore};
    const char *opts[] = {"kdf_ops=1", "kdf_mem_kib=8192", NULL};
    vmenc_workspace_kms_spec ks = {.struct_size = sizeof(ks), .alias = "tenant", .type = "file", .endpoints = eps,
                                   .num_endpoints = 1, .options = opts, .secret_file = f->secret,
                                   .flags = VMENC_WORKSPACE_KMS_CREATE};
    vmenc_status st = vmenc_workspace_add_kms(f->ws, "alice", &ks);
    if (st != VMENC_OK)
        fail_msg("add_kms: %s", vmenc_status_name(st));
    add_policy(f, "Tenant Policy", "tenant");
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    vmenc_workspace_free(f->ws);
    rm_rf(f->root);
    free(f);
    return 0;
}

static void make_vm(fx *f, const char *name, const char *policy) {
    uint64_t caps[1] = {1u << 20};
    vmenc_workspace_vm_spec spec = {.struct_size = sizeof(spec), .name = name, .storage_policy = policy,
                                    .disk_capacities = caps, .num_disks = 1};
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_vm *vm = NULL;
    vmenc_status st = vmenc_workspace_create_vm(f->ws, "alice", &spec, &err, &vm);
    if (st != VMENC_OK)
        fail_msg("create_vm %s: %s: %s", name, vmenc_status_name(st), err.message);
    vmenc_disk *d = NULL;
    assert_int_equal(vmenc_disk_open(vm, "alice", "scsi0:0", 0, &d), VMENC_OK);
    assert_int_equal(vmenc_disk_pwrite(d, 512, (const uint8_t *)MARKER, sizeof(MARKER)), VMENC_OK);
    assert_int_equal(vmenc_disk_close(d), VMENC_OK);
    vmenc_vm_free(vm);
}

static vmenc_status read_marker(fx *f, const char *name) {
    vmenc_vm *vm = NULL;
    vmenc_status st = vmenc_workspace_open_vm(f->ws, "alice", name, &vm);
    if (st != VMENC_OK) {
        vmenc_vm_free(vm);
        return st;
    }
    vmenc_disk *d = NULL;
    uint8_t buf[sizeof(MARKER)];
    st = vmenc_disk_open(vm, "alice", "scsi0:0", VMENC_DISK_OPEN_READONLY, &d);
    if (st == VMENC_OK)
        st = vmenc_disk_pread(d, 512, sizeof(buf), buf);
    if (st == VMENC_OK && memcmp(buf, MARKER, sizeof(buf)) != 0)
        st = VMENC_E_AUTH;
    if (d != NULL)
        assert_int_equal(vmenc_disk_close(d), VMENC_OK);
    vmenc_vm_free(vm);
    return st;
}

static long kms_index(fx *f, const char *alias) {
    for (size_t i = 0; i < vmenc_workspace_num_kms(f->ws); i++) {
        vmenc_workspace_kms_info info = {.struct_size = sizeof(info)};
        assert_int_equal(vmenc_workspace_get_kms_info(f->ws, i, &info), VMENC_OK);
        if (strcmp(info.alias, alias) == 0)
            return (long)i;
    }
    return -1;
}

/* ---- item 3 --------------------------------------------------------------------- */

static void check_left_out(fx *f, const char *file) {
    long i = kms_index(f, "tenant");
    assert_true(i >= 0);
    vmenc_workspace_kms_info info = {.struct_size = sizeof(info)};
    assert_int_equal(vmenc_workspace_get_kms_info(f->ws, (size_t)i, &info), VMENC_OK);
    assert_int_not_equal(info.load_status, VMENC_OK);
    assert_int_equal(info.num_loaded, 0);
    assert_non_null(strstr(info.load_detail, "\"tenant\""));
    assert_non_null(strstr(info.load_detail, file));
    /* a caller built before load_detail existed still gets the rest */
    vmenc_workspace_kms_info old;
    memset(&old, 0x5a, sizeof(old));
    old.struct_size = (uint32_t)offsetof(vmenc_workspace_kms_info, load_detail);
    assert_int_equal(vmenc_workspace_get_kms_info(f->ws, (size_t)i, &old), VMENC_OK);
    assert_string_equal(old.alias, "tenant");
    assert_int_equal(old.load_detail[0], 0x5a); /* not written past its struct_size */
    /* its VM opens locked, naming the provider; the others work */
    vmenc_vm *vm = NULL;
    assert_int_equal(vmenc_workspace_open_vm(f->ws, "alice", "t1", &vm), VMENC_E_VM_LOCKED);
    assert_non_null(vm);
    char alias[VMENC_PROVIDER_ALIAS_MAX + 1], kek[VMENC_KMS_KEY_ID_CAP];
    vmenc_status why = VMENC_OK;
    assert_int_equal(vmenc_vm_get_missing_key(vm, 0, alias, sizeof(alias), kek, sizeof(kek), &why), VMENC_OK);
    assert_string_equal(alias, "tenant");
    assert_int_not_equal(why, VMENC_OK);
    vmenc_vm_free(vm);
    assert_int_equal(read_marker(f, "n1"), VMENC_OK);
}

static void test_missing_secret_file_leaves_provider_out(void **state) {
    fx *f = *state;
    make_vm(f, "t1", "Tenant Policy");
    make_vm(f, "n1", "VM Encryption Policy");
    vmenc_workspace_free(f->ws);
    /* the secret file is gone: the workspace still opens */
    char moved[160];
    snprintf(moved, sizeof(moved), "%s.away", f->secret);
    assert_int_equal(rename(f->secret, moved), 0);
    must_open(f);
    check_left_out(f, f->secret);
    vmenc_workspace_free(f->ws);
    /* back: everything opens again */
    assert_int_equal(rename(moved, f->secret), 0);
    must_open(f);
    assert_int_equal(read_marker(f, "t1"), VMENC_OK);
    vmenc_workspace_free(f->ws);
    /* the keystore file is gone: the same */
    snprintf(moved, sizeof(moved), "%s.away", f->keystore);
    assert_int_equal(rename(f->keystore, moved), 0);
    must_open(f);
    check_left_out(f, f->keystore);
}

static void test_missing_secret_file_provider_removable(void **state) {
    fx *f = *state;
    make_vm(f, "t1", "Tenant Policy");
    make_vm(f, "n1", "VM Encryption Policy");
    vmenc_workspace_free(f->ws);
    assert_int_equal(unlink(f->secret), 0);
    must_open(f);
    size_t n = vmenc_workspace_num_kms(f->ws);
    assert_true(kms_index(f, "tenant") >= 0);
    assert_int_equal(vmenc_workspace_remove_kms(f->ws, "alice", "tenant"), VMENC_OK);
    assert_int_equal(vmenc_workspace_num_kms(f->ws), n - 1);
    vmenc_workspace_free(f->ws);
    must_open(f); /* and the configuration no longer names it */
    assert_int_equal(kms_index(f, "tenant"), -1);
    assert_int_equal(read_marker(f, "n1"), VMENC_OK);
}

/* The audit key's provider is not optional: without it nothing can be
 * verified, so its missing secret still fails the open, naming the file. */
static void test_audit_provider_still_required(void **state) {
    fx *f = *state;
    vmenc_workspace_free(f->ws);
    char ks[160], moved[176];
    snprintf(ks, sizeof(ks), "%s/keystore.vks", f->dir);
    snprintf(moved, sizeof(moved), "%s.away", ks);
    assert_int_equal(rename(ks, moved), 0);
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    assert_int_not_equal(open_ws(f, &err), VMENC_OK);
    assert_null(f->ws);
    assert_non_null(strstr(err.message, "native"));
    assert_int_equal(rename(moved, ks), 0);
    must_open(f);
}

/* ---- item 4 --------------------------------------------------------------------- */

static void vm_state(fx *f, const char *name, char *provider, char *policy) {
    vmenc_vm *vm = NULL;
    assert_int_equal(vmenc_workspace_open_vm(f->ws, "alice", name, &vm), VMENC_OK);
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    assert_int_equal(vmenc_vm_get_info(vm, &info), VMENC_OK);
    strcpy(provider, info.key_provider);
    strcpy(policy, info.storage_policy);
    vmenc_vm_free(vm);
}

static void test_no_provider_drift(void **state) {
    fx *f = *state;
    make_vm(f, "d1", "VM Encryption Policy");
    char prov[80], pol[300];
    vm_state(f, "d1", prov, pol);
    assert_string_equal(prov, "native");
    assert_string_equal(pol, "VM Encryption Policy");
    vmenc_vm *vm = NULL;
    assert_int_equal(vmenc_workspace_open_vm(f->ws, "alice", "d1", &vm), VMENC_OK);
    /* a rekey within the policy's provider keeps the policy */
    assert_int_equal(vmenc_vm_rekey_shallow(vm, "alice", NULL, NULL), VMENC_OK);
    assert_int_equal(vmenc_vm_rekey_shallow(vm, "alice", "native", NULL), VMENC_OK);
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    assert_int_equal(vmenc_vm_get_info(vm, &info), VMENC_OK);
    assert_string_equal(info.storage_policy, "VM Encryption Policy");
    /* a rekey to another provider: the VM's record follows - it no longer
     * claims a policy that names "native" */
    assert_int_equal(vmenc_vm_rekey_shallow(vm, "alice", "tenant", NULL), VMENC_OK);
    vmenc_vm_free(vm);
    vm_state(f, "d1", prov, pol);
    assert_string_equal(prov, "tenant");
    assert_string_equal(pol, "");
    FILE *fp = fopen(vmenc_workspace_audit_log_path(f->ws), "r");
    assert_non_null(fp);
    char line[8192];
    bool said = false;
    while (fgets(line, sizeof(line), fp) != NULL)
        said |= strstr(line, "vm.rekey_shallow") != NULL && strstr(line, "no longer follows it") != NULL;
    fclose(fp);
    assert_true(said);
    /* a restarted host resumes nothing back to "native" */
    assert_int_equal(vmenc_workspace_open_vm(f->ws, "alice", "d1", &vm), VMENC_OK);
    assert_int_equal(vmenc_vm_resume(vm, "alice", NULL), VMENC_OK);
    vmenc_vm_free(vm);
    vm_state(f, "d1", prov, pol);
    assert_string_equal(prov, "tenant");
    /* recording the new provider's policy re-keys nothing */
    char kek_before[300];
    assert_int_equal(vmenc_workspace_open_vm(f->ws, "alice", "d1", &vm), VMENC_OK);
    assert_int_equal(vmenc_vm_get_info(vm, &info), VMENC_OK);
    strcpy(kek_before, info.kek_id);
    assert_int_equal(vmenc_vm_apply_storage_policy(vm, "alice", "Tenant Policy"), VMENC_OK);
    assert_int_equal(vmenc_vm_get_info(vm, &info), VMENC_OK);
    assert_string_equal(info.kek_id, kek_before);
    assert_string_equal(info.storage_policy, "Tenant Policy");
    /* and applying it again (the next "encrypt") keeps the VM where it is */
    assert_int_equal(vmenc_vm_apply_storage_policy(vm, "alice", "Tenant Policy"), VMENC_OK);
    assert_int_equal(vmenc_vm_get_info(vm, &info), VMENC_OK);
    assert_string_equal(info.key_provider, "tenant");
    assert_string_equal(info.kek_id, kek_before);
    vmenc_vm_free(vm);
    assert_int_equal(read_marker(f, "d1"), VMENC_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_missing_secret_file_leaves_provider_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_secret_file_provider_removable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_provider_still_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_provider_drift, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
