/*
 * tests/test_workspace_lifecycle.c - a VM's birth and death through a
 * workspace (issue 24 item 1; include/vmenc/workspace.h, docs/workspace.md
 * "Deleting a VM"):
 *   - a create whose disk size is not a multiple of the sector says so and
 *     leaves nothing; a create that fails after the VM was made (a disk
 *     the principal may not add) leaves nothing either, and the name can be
 *     used again;
 *   - delete removes the home, the authority record and the inventory
 *     entry, durably, audited; KEEP_FILES keeps the home; DRY_RUN changes
 *     nothing; a principal without VirtualMachine.Inventory.Delete (or,
 *     for DESTROY_KEYS, Cryptographer.ManageKeys) is refused and audited;
 *   - crypto-shredding: a copy of the VM home made before a delete with
 *     DESTROY_KEYS cannot be decrypted afterwards (the file provider
 *     destroyed the KEK), while the same copy made before a plain delete
 *     opens and reads back; a KEK another VM uses is kept;
 *   - a VM whose disk another process holds open is not deleted (two real
 *     processes: the holder is a forked child);
 *   - unregister keeps files and keys: the home registers again and reads.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmenc/vmenc.h"

#define PASS "lifecycle test passphrase"
#define ENC_POLICY "VM Encryption Policy"
#define MARKER "lifecycle marker: the data of vm"

/* ---- helpers ------------------------------------------------------------------ */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_rf(const char *p) { (void)nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

typedef struct fx {
    char root[64];   /* the temporary directory */
    char dir[96];    /* the workspace */
    vmenc_workspace *ws;
} fx;

static vmenc_workspace *must_open(const char *dir) {
    vmenc_workspace_open_options oo = {.struct_size = sizeof(oo), .passphrase = (const uint8_t *)PASS,
                                       .passphrase_len = strlen(PASS), .flags = VMENC_WORKSPACE_OPEN_NO_SYNC};
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_workspace *ws = NULL;
    vmenc_status st = vmenc_workspace_open(dir, &oo, &err, &ws);
    if (st != VMENC_OK)
        fail_msg("open: %s: %s: %s", vmenc_status_name(st), err.file, err.message);
    return ws;
}

static int setup(void **state) {
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->root, sizeof(f->root), "/tmp/vmenc-lifecycle-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->dir, sizeof(f->dir), "%s/ws", f->root);
    vmenc_workspace_create_options co = {.struct_size = sizeof(co), .passphrase = (const uint8_t *)PASS,
                                         .passphrase_len = strlen(PASS), .admin = "alice", .host_id = "esx01",
                                         .kdf_opslimit = 1, .kdf_memlimit_kib = 8192,
                                         .flags = VMENC_WORKSPACE_CREATE_DEFAULT_POLICY};
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_status st = vmenc_workspace_create(f->dir, &co, &err);
    if (st != VMENC_OK)
        fail_msg("create: %s: %s", vmenc_status_name(st), err.message);
    f->ws = must_open(f->dir);
    vmenc_policy *p = vmenc_workspace_policy(f->ws);
    assert_int_equal(vmenc_policy_add_user(p, "bob"), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "bob", "root", VMENC_ROLE_NO_CRYPTO_ADMIN, 1), VMENC_OK);
    assert_int_equal(vmenc_policy_add_user(p, "carol"), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "carol", "root", VMENC_ROLE_READ_ONLY, 1), VMENC_OK);
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

static void home_of(fx *f, const char *name, char *out, size_t cap) {
    assert_int_equal(vmenc_workspace_vm_home(f->ws, name, out, cap), VMENC_OK);
}

static bool exists(const char *path) {
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static bool in_inventory(fx *f, const char *name) {
    int has = 0;
    return vmenc_policy_has_privilege(vmenc_workspace_policy(f->ws), "alice", name, VMENC_PRIV_SYSTEM_READ, &has) ==
           VMENC_OK;
}

static int count_cb(void *ctx, const char *name) {
    (void)name;
    (*(int *)ctx)++;
    return 0;
}

static int num_vms(fx *f) {
    int n = 0;
    assert_int_equal(vmenc_workspace_foreach_vm(f->ws, count_cb, &n), VMENC_OK);
    return n;
}

/* audit_has: the workspace's log holds a record with all of |a|, |b|, |c|. */
static bool audit_has(fx *f, const char *a, const char *b, const char *c) {
    FILE *fp = fopen(vmenc_workspace_audit_log_path(f->ws), "r");
    assert_non_null(fp);
    char line[8192];
    bool found = false;
    while (!found && fgets(line, sizeof(line), fp) != NULL)
        found = strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL) &&
                (c == NULL || strstr(line, c) != NULL);
    fclose(fp);
    return found;
}

/* make_vm creates VM |name| (encrypted when |policy| is given, under
 * |kek_id| if not NULL) with one 1 MiB disk holding MARKER at 4096. */
static void make_vm(fx *f, const char *name, const char *policy, const char *kek_id) {
    uint64_t caps[1] = {1u << 20};
    vmenc_workspace_vm_spec spec = {.struct_size = sizeof(spec), .name = name, .storage_policy = policy,
                                    .kek_id = kek_id, .disk_capacities = caps, .num_disks = 1};
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_vm *vm = NULL;
    vmenc_status st = vmenc_workspace_create_vm(f->ws, "alice", &spec, &err, &vm);
    if (st != VMENC_OK)
        fail_msg("create_vm %s: %s: %s", name, vmenc_status_name(st), err.message);
    vmenc_disk *d = NULL;
    assert_int_equal(vmenc_disk_open(vm, "alice", "scsi0:0", 0, &d), VMENC_OK);
    assert_int_equal(vmenc_disk_pwrite(d, 4096, (const uint8_t *)MARKER, sizeof(MARKER)), VMENC_OK);
    assert_int_equal(vmenc_disk_close(d), VMENC_OK);
    vmenc_vm_free(vm);
}

/* read_marker opens VM |name| as alice and reads the marker back:
 * VMENC_OK when it reads, else the first failure (VMENC_E_VM_LOCKED: the
 * KEK cannot be had). */
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
        st = vmenc_disk_pread(d, 4096, sizeof(buf), buf);
    if (st == VMENC_OK && memcmp(buf, MARKER, sizeof(buf)) != 0)
        st = VMENC_E_AUTH;
    if (d != NULL)
        assert_int_equal(vmenc_disk_close(d), VMENC_OK);
    vmenc_vm_free(vm);
    return st;
}

static void copy_tree(const char *from, const char *to) {
    char cmd[2048];
    assert_true(snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", from, to) < (int)sizeof(cmd));
    assert_int_equal(system(cmd), 0);
}

/* restore_and_register puts |backup| back as VM |name|'s home and registers
 * it on this host; returns the registration's status. */
static vmenc_status restore_and_register(fx *f, const char *name, const char *backup) {
    char home[512], vmx[600];
    home_of(f, name, home, sizeof(home));
    copy_tree(backup, home);
    assert_int_equal(vmenc_workspace_vm_path(f->ws, name, vmx, sizeof(vmx)), VMENC_OK);
    vmenc_vm *vm = NULL;
    vmenc_status st = vmenc_vm_register(vmenc_workspace_host(f->ws), "alice", vmx, vmenc_workspace_folder(f->ws),
                                        NULL, &vm);
    vmenc_vm_free(vm);
    return st;
}

static void vm_key(fx *f, const char *name, char *alias, char *kek) {
    vmenc_vm *vm = NULL;
    assert_int_equal(vmenc_workspace_open_vm(f->ws, "alice", name, &vm), VMENC_OK);
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    assert_int_equal(vmenc_vm_get_info(vm, &info), VMENC_OK);
    strcpy(alias, info.key_provider);
    strcpy(kek, info.kek_id);
    vmenc_vm_free(vm);
}

/* ---- create ------------------------------------------------------------------- */

static void test_create_bad_disk_size_leaves_nothing(void **state) {
    fx *f = *state;
    uint64_t caps[2] = {1u << 20, 1000};
    vmenc_workspace_vm_spec spec = {.struct_size = sizeof(spec), .name = "x2", .disk_capacities = caps,
                                    .num_disks = 2};
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    assert_int_equal(vmenc_workspace_create_vm(f->ws, "alice", &spec, &err, NULL), VMENC_E_INVALID_ARG);
    assert_non_null(strstr(err.message, "disk 1: 1000 bytes is not a positive multiple of the 512-byte sector"));
    char home[512];
    home_of(f, "x2", home, sizeof(home));
    assert_false(exists(home));
    assert_false(in_inventory(f, "x2"));
    spec.sector_size = 4096;
    caps[1] = 4096 + 512;
    assert_int_equal(vmenc_workspace_create_vm(f->ws, "alice", &spec, &err, NULL), VMENC_E_INVALID_ARG);
    assert_non_null(strstr(err.message, "4096-byte sector"));
    caps[1] = 8192;
    assert_int_equal(vmenc_workspace_create_vm(f->ws, "alice", &spec, &err, NULL), VMENC_OK);
    assert_true(exists(home));
}

static void test_create_failing_late_leaves_nothing(void **state) {
    fx *f = *state;
    /* dave may create a VM but not add a disk to it: the VM is made, the
     * disk refused, and the create must take the VM back. */
    vmenc_policy *p = vmenc_workspace_policy(f->ws);
    const vmenc_policy_privilege privs[] = {VMENC_PRIV_VM_CREATE, VMENC_PRIV_SYSTEM_READ};
    assert_int_equal(vmenc_policy_add_role(p, "creator", privs, 2), VMENC_OK);
    assert_int_equal(vmenc_policy_add_user(p, "dave"), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "dave", "root", "creator", 1), VMENC_OK);
    uint64_t caps[1] = {1u << 20};
    vmenc_workspace_vm_spec spec = {.struct_size = sizeof(spec), .name = "late", .disk_capacities = caps,
                                    .num_disks = 1};
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    assert_int_equal(vmenc_workspace_create_vm(f->ws, "dave", &spec, &err, NULL), VMENC_E_DENIED);
    assert_non_null(strstr(err.message, "nothing was kept"));
    char home[512];
    home_of(f, "late", home, sizeof(home));
    assert_false(exists(home));
    assert_false(in_inventory(f, "late"));
    assert_true(audit_has(f, "vm.create_rollback", "late", NULL));
    /* a retry with the same name works */
    assert_int_equal(vmenc_workspace_create_vm(f->ws, "alice", &spec, &err, NULL), VMENC_OK);
    assert_true(in_inventory(f, "late"));
}

/* ---- delete ------------------------------------------------------------------- */

static void test_delete_removes_everything(void **state) {
    fx *f = *state;
    make_vm(f, "web01", ENC_POLICY, NULL);
    make_vm(f, "web02", NULL, NULL);
    char home[512];
    home_of(f, "web01", home, sizeof(home));
    assert_int_equal(num_vms(f), 2);
    /* dry run: the plan, nothing changed */
    vmenc_workspace_delete_result r = {.struct_size = sizeof(r)};
    assert_int_equal(vmenc_workspace_delete_vm(f->ws, "alice", "web01",
                                               VMENC_WORKSPACE_DELETE_DRY_RUN | VMENC_WORKSPACE_DELETE_DESTROY_KEYS,
                                               &r),
                     VMENC_OK);
    assert_true(r.num_files >= 3); /* .vmx, descriptor, extent */
    assert_true(r.num_bytes > 0);
    assert_int_equal(r.num_keys, 1);
    assert_int_equal(r.num_keys_destroyed, 1);
    assert_string_equal(r.key_provider, "native");
    assert_true(exists(home));
    assert_int_equal(read_marker(f, "web01"), VMENC_OK);
    /* the delete */
    memset(&r, 0, sizeof(r));
    r.struct_size = sizeof(r);
    assert_int_equal(vmenc_workspace_delete_vm(f->ws, "alice", "web01", 0, &r), VMENC_OK);
    assert_int_equal(r.num_keys_destroyed, 0);
    assert_int_equal(r.num_keys_kept, 1);
    assert_false(exists(home));
    assert_false(in_inventory(f, "web01"));
    assert_int_equal(num_vms(f), 1);
    assert_true(audit_has(f, "\"vm.delete\"", "web01", "success"));
    assert_int_equal(vmenc_workspace_delete_vm(f->ws, "alice", "web01", 0, NULL), VMENC_E_NOT_FOUND);
    /* durable: another handle (as another process would) sees it gone */
    vmenc_workspace *again = must_open(f->dir);
    int has = 0;
    assert_int_equal(vmenc_policy_has_privilege(vmenc_workspace_policy(again), "alice", "web01",
                                                VMENC_PRIV_SYSTEM_READ, &has),
                     VMENC_E_NOT_FOUND);
    vmenc_workspace_free(again);
    /* the name is free again */
    make_vm(f, "web01", ENC_POLICY, NULL);
    assert_int_equal(read_marker(f, "web01"), VMENC_OK);
    /* KEEP_FILES: out of the inventory, files stay */
    assert_int_equal(vmenc_workspace_delete_vm(f->ws, "alice", "web02", VMENC_WORKSPACE_DELETE_KEEP_FILES, NULL),
                     VMENC_OK);
    home_of(f, "web02", home, sizeof(home));
    assert_true(exists(home));
    assert_false(in_inventory(f, "web02"));
}

static void test_delete_denied(void **state) {
    fx *f = *state;
    make_vm(f, "db01", ENC_POLICY, NULL);
    char home[512];
    home_of(f, "db01", home, sizeof(home));
    vmenc_workspace_delete_result r = {.struct_size = sizeof(r)};
    assert_int_equal(vmenc_workspace_delete_vm(f->ws, "carol", "db01", 0, &r), VMENC_E_DENIED);
    assert_non_null(strstr(r.message, "VirtualMachine.Inventory.Delete"));
    assert_true(audit_has(f, "\"vm.delete\"", "carol", "denied"));
    /* bob (no cryptography administrator) may delete, but not shred */
    assert_int_equal(vmenc_workspace_delete_vm(f->ws, "bob", "db01", VMENC_WORKSPACE_DELETE_DESTROY_KEYS, &r),
                     VMENC_E_DENIED);
    assert_non_null(strstr(r.message, "Cryptographer.ManageKeys"));
    assert_true(exists(home));
    assert_true(in_inventory(f, "db01"));
    assert_int_equal(read_marker(f, "db01"), VMENC_OK);
    assert_int_equal(vmenc_workspace_unregister_vm(f->ws, "carol", "db01"), VMENC_E_DENIED);
    assert_int_equal(vmenc_workspace_delete_vm(f->ws, "alice", "db01", 1u << 9, NULL), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_workspace_delete_vm(f->ws, "alice", "../db01", 0, NULL), VMENC_E_BAD_PATH);
    assert_int_equal(vmenc_workspace_delete_vm(f->ws, "bob", "db01", 0, NULL), VMENC_OK);
    assert_false(exists(home));
}

/* The crypto-shredding promise: a copy of the home taken before the delete
 * is useless after a delete with DESTROY_KEYS, and fine after one without. */
static void test_destroy_keys_shreds_backup(void **state) {
    fx *f = *state;
    char home[512], backup[600], alias[80], kek[300];
    for (int destroy = 0; destroy <= 1; destroy++) {
        const char *name = destroy ? "shred" : "keep";
        make_vm(f, name, ENC_POLICY, NULL);
        vm_key(f, name, alias, kek);
        home_of(f, name, home, sizeof(home));
        snprintf(backup, sizeof(backup), "%s/backup-%s", f->root, name);
        copy_tree(home, backup);
        vmenc_workspace_delete_result r = {.struct_size = sizeof(r)};
        assert_int_equal(vmenc_workspace_delete_vm(f->ws, "alice", name,
                                                   destroy ? VMENC_WORKSPACE_DELETE_DESTROY_KEYS : 0, &r),
                         VMENC_OK);
        assert_int_equal(r.num_keys_destroyed, destroy ? 1 : 0);
        assert_string_equal(r.kek_id, kek);
        assert_false(exists(home));
        vmenc_status reg = restore_and_register(f, name, backup);
        if (!destroy) {
            assert_int_equal(reg, VMENC_OK);
            assert_int_equal(read_marker(f, name), VMENC_OK);
            continue;
        }
        /* the KEK is gone at the provider: the copy opens locked */
        assert_int_equal(reg, VMENC_E_VM_LOCKED);
        assert_int_equal(read_marker(f, name), VMENC_E_VM_LOCKED);
        vmenc_kek *k = NULL;
        vmenc_status st = vmenc_keymgr_get_kek(vmenc_workspace_keymgr(f->ws), alias, kek, 1000, &k);
        assert_true(st == VMENC_E_KEY_STATE || st == VMENC_E_KEY_NOT_FOUND);
        assert_null(k);
        assert_true(audit_has(f, "kms.destroy_key", kek, "success"));
        /* and a locked VM can still be deleted */
        assert_int_equal(vmenc_workspace_delete_vm(f->ws, "alice", name, VMENC_WORKSPACE_DELETE_DESTROY_KEYS, NULL),
                         VMENC_OK);
        assert_false(exists(home));
    }
}

static void test_destroy_keys_keeps_shared_kek(void **state) {
    fx *f = *state;
    char alias[80], kek[300];
    make_vm(f, "a1", ENC_POLICY, NULL);
    vm_key(f, "a1", alias, kek);
    make_vm(f, "a2", ENC_POLICY, kek); /* the same KEK */
    vmenc_workspace_delete_result r = {.struct_size = sizeof(r)};
    assert_int_equal(vmenc_workspace_delete_vm(f->ws, "alice", "a1", VMENC_WORKSPACE_DELETE_DESTROY_KEYS, &r),
                     VMENC_OK);
    assert_int_equal(r.num_keys_destroyed, 0);
    assert_int_equal(r.num_keys_kept, 1);
    assert_non_null(strstr(r.message, "another VM"));
    assert_int_equal(read_marker(f, "a2"), VMENC_OK);
    /* the last user: now it goes */
    assert_int_equal(vmenc_workspace_delete_vm(f->ws, "alice", "a2", VMENC_WORKSPACE_DELETE_DESTROY_KEYS, &r),
                     VMENC_OK);
    assert_int_equal(r.num_keys_destroyed, 1);
    /* the audit chain key's KEK is never a candidate: the log still verifies */
    vmenc_audit_verify_result vr = {.struct_size = sizeof(vr)};
    assert_int_equal(vmenc_workspace_audit_verify(f->ws, NULL, &vr), VMENC_OK);
}

/* Another process holds the VM's disk open for writing: delete refuses
 * and removes nothing. */
static void test_delete_refused_while_open_elsewhere(void **state) {
    fx *f = *state;
    make_vm(f, "busy", ENC_POLICY, NULL);
    int ready[2], go[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        vmenc_workspace *ws = must_open(f->dir);
        vmenc_vm *vm = NULL;
        vmenc_disk *d = NULL;
        int ok = vmenc_workspace_open_vm(ws, "alice", "busy", &vm) == VMENC_OK &&
                 vmenc_disk_open(vm, "alice", "scsi0:0", 0, &d) == VMENC_OK;
        char c = ok ? 'y' : 'n';
        (void)!write(ready[1], &c, 1);
        (void)!read(go[0], &c, 1);
        _exit(ok ? 0 : 1);
    }
    char c = 0;
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    vmenc_workspace_delete_result r = {.struct_size = sizeof(r)};
    vmenc_status st = vmenc_workspace_delete_vm(f->ws, "alice", "busy", VMENC_WORKSPACE_DELETE_DESTROY_KEYS, &r);
    assert_int_equal(write(go[1], "x", 1), 1);
    int wst = 0;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_int_equal(st, VMENC_E_LOCKED);
    assert_non_null(strstr(r.message, "in use"));
    assert_true(in_inventory(f, "busy"));
    assert_int_equal(read_marker(f, "busy"), VMENC_OK); /* files and key intact */
    assert_int_equal(vmenc_workspace_unregister_vm(f->ws, "alice", "busy"), VMENC_OK);
    close(ready[0]), close(ready[1]), close(go[0]), close(go[1]);
}

static void test_unregister_keeps_files_and_keys(void **state) {
    fx *f = *state;
    make_vm(f, "mig01", ENC_POLICY, NULL);
    char home[512], vmx[600];
    home_of(f, "mig01", home, sizeof(home));
    assert_int_equal(vmenc_workspace_unregister_vm(f->ws, "alice", "mig01"), VMENC_OK);
    assert_false(in_inventory(f, "mig01"));
    assert_true(exists(home));
    assert_true(audit_has(f, "vm.unregister", "mig01", "success"));
    assert_int_equal(vmenc_workspace_unregister_vm(f->ws, "alice", "mig01"), VMENC_E_NOT_FOUND);
    assert_int_equal(vmenc_workspace_vm_path(f->ws, "mig01", vmx, sizeof(vmx)), VMENC_OK);
    vmenc_vm *vm = NULL;
    assert_int_equal(vmenc_vm_register(vmenc_workspace_host(f->ws), "alice", vmx, vmenc_workspace_folder(f->ws),
                                       NULL, &vm),
                     VMENC_OK);
    vmenc_vm_free(vm);
    assert_int_equal(read_marker(f, "mig01"), VMENC_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_bad_disk_size_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_failing_late_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_removes_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_keys_shreds_backup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_keys_keeps_shared_kek, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_refused_while_open_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unregister_keeps_files_and_keys, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
