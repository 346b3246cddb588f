/*
 * tests/test_vm_export.c - out-of-band access to a VM's state files and
 * disks is an export (read) or an upload (write), never a power-on.
 *
 * The whitepaper's promise is that a NoCryptoAdmin cannot download an
 * encrypted VM - disk or any state file. A hypervisor opening the NVRAM or
 * suspend file to run the VM is a power-on; a tool copying the decrypted
 * bytes out (or writing new ones in) is VMENC_OP_EXPORT_VM /
 * VMENC_OP_UPLOAD_FILES, both needing Cryptographer.Access on an encrypted
 * VM. These tests check every state-file class for bob (NoCryptoAdmin),
 * alice (Admin), a plain VM, and custom roles holding only one of
 * GetVmFiles / PutVmFiles, and that every refusal is audited.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm_fixture.h"

#define OK(call) assert_int_equal((call), VMENC_OK)

static vmfix g_f;

static const uint8_t k_secret[] = "GUEST-MEMORY-SECRET-0123456789abcdef";
static const uint8_t k_other[] = "UPLOADED-BY-SOMEONE-ELSE-9876543210!";

/* The state-file classes a tool might copy out, each with its index. */
static const struct {
    vmenc_vm_file_class cls;
    uint32_t index;
    const char *suffix; /* in the audit target */
} k_classes[] = {
    {VMENC_VM_FILE_NVRAM, 0, ".nvram"},
    {VMENC_VM_FILE_VMSS, 0, ".vmss"},
    {VMENC_VM_FILE_VMSN, 1, "-Snapshot1.vmsn"},
    {VMENC_VM_FILE_VMEM, 1, "-Snapshot1.vmem"},
    {VMENC_VM_FILE_VSWP, 0, ".vswp"},
};
#define NUM_CLASSES (sizeof(k_classes) / sizeof(k_classes[0]))

static int setup(void **state) {
    (void)state;
    if (vmfix_setup(&g_f, VMENC_HOST_NO_SYNC) != VMENC_OK)
        return -1;
    /* dave may download files (GetVmFiles + Cryptographer.Access) but not
     * upload them; erin the other way round. */
    const vmenc_policy_privilege getter[] = {VMENC_PRIV_VM_GET_FILES, VMENC_PRIV_CRYPTO_ACCESS};
    const vmenc_policy_privilege putter[] = {VMENC_PRIV_VM_PUT_FILES, VMENC_PRIV_CRYPTO_ACCESS};
    if (vmenc_policy_add_role(g_f.policy, "FileGetter", getter, 2) != VMENC_OK ||
        vmenc_policy_add_role(g_f.policy, "FilePutter", putter, 2) != VMENC_OK ||
        vmenc_policy_add_user(g_f.policy, "dave") != VMENC_OK ||
        vmenc_policy_add_user(g_f.policy, "erin") != VMENC_OK ||
        vmenc_policy_grant(g_f.policy, "dave", "vcenter", "FileGetter", 1) != VMENC_OK ||
        vmenc_policy_grant(g_f.policy, "erin", "vcenter", "FilePutter", 1) != VMENC_OK)
        return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    vmfix_teardown(&g_f);
    return 0;
}

/* put writes |data| at offset 4097 of a state file through the hypervisor's
 * own path (no flag: a power-on). */
static void put(vmenc_vm *vm, const char *who, size_t i, const uint8_t *data, size_t len) {
    vmenc_vm_file *f = NULL;
    OK(vmenc_vm_file_open(vm, who, k_classes[i].cls, k_classes[i].index, VMENC_VM_FILE_CREATE, &f));
    OK(vmenc_vm_file_pwrite(f, 4097, data, len));
    OK(vmenc_vm_file_close(f));
}

/* get reads the bytes at 4097 with |flags| and compares them with |want|. */
static void get(vmenc_vm *vm, const char *who, size_t i, uint32_t flags, const uint8_t *want, size_t len) {
    vmenc_vm_file *f = NULL;
    OK(vmenc_vm_file_open(vm, who, k_classes[i].cls, k_classes[i].index, flags, &f));
    uint8_t back[64] = {0};
    size_t got = 0;
    OK(vmenc_vm_file_pread(f, 4097, len, back, &got));
    assert_int_equal(got, len);
    assert_memory_equal(back, want, len);
    OK(vmenc_vm_file_close(f));
}

/* count_denied counts denied audit events by |who| for |operation| whose
 * target names the file of class |i|. */
static size_t count_denied(const char *who, const char *operation, size_t i) {
    char p[64], op[64];
    snprintf(p, sizeof(p), "\"%s\"", who);
    snprintf(op, sizeof(op), "\"%s\"", operation);
    const char *needles[] = {p, op, "denied", k_classes[i].suffix, NULL};
    return vmfix_count_events(&g_f, needles);
}

static void test_nocryptoadmin_cannot_export_state_files(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", "enc", "encrypted", &vm));
    for (size_t i = 0; i < NUM_CLASSES; i++) {
        put(vm, "alice", i, k_secret, sizeof(k_secret));
        vmenc_vm_file *f = NULL;
        size_t denied = g_f.num_denied;
        size_t audited = count_denied("bob", "vm.file_export", i);
        assert_int_equal(vmenc_vm_file_open(vm, "bob", k_classes[i].cls, k_classes[i].index,
                                            VMENC_VM_FILE_EXPORT | VMENC_VM_FILE_READONLY, &f),
                         VMENC_E_DENIED);
        assert_null(f);
        assert_int_equal(g_f.num_denied, denied + 1);
        assert_int_equal(count_denied("bob", "vm.file_export", i), audited + 1);
        /* the hypervisor's own path is still a power-on: bob may run it */
        get(vm, "bob", i, VMENC_VM_FILE_READONLY, k_secret, sizeof(k_secret));
        /* alice (Admin) may download it */
        get(vm, "alice", i, VMENC_VM_FILE_EXPORT | VMENC_VM_FILE_READONLY, k_secret, sizeof(k_secret));
    }
    vmenc_vm_free(vm);
}

static void test_nocryptoadmin_cannot_upload_state_files(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", "encw", "encrypted", &vm));
    const uint32_t writes[] = {VMENC_VM_FILE_EXPORT, VMENC_VM_FILE_EXPORT | VMENC_VM_FILE_CREATE,
                               VMENC_VM_FILE_EXPORT | VMENC_VM_FILE_CREATE | VMENC_VM_FILE_TRUNCATE};
    for (size_t i = 0; i < NUM_CLASSES; i++) {
        put(vm, "alice", i, k_secret, sizeof(k_secret));
        for (size_t w = 0; w < sizeof(writes) / sizeof(writes[0]); w++) {
            if (k_classes[i].cls == VMENC_VM_FILE_VSWP && (writes[w] & VMENC_VM_FILE_TRUNCATE))
                continue; /* not for the swap file, whoever asks */
            vmenc_vm_file *f = NULL;
            size_t audited = count_denied("bob", "vm.file_upload", i);
            assert_int_equal(vmenc_vm_file_open(vm, "bob", k_classes[i].cls, k_classes[i].index, writes[w], &f),
                             VMENC_E_DENIED);
            assert_null(f);
            assert_int_equal(count_denied("bob", "vm.file_upload", i), audited + 1);
        }
        /* nothing was truncated or replaced */
        get(vm, "alice", i, VMENC_VM_FILE_READONLY, k_secret, sizeof(k_secret));
        /* alice may upload: her bytes land encrypted and read back */
        vmenc_vm_file *f = NULL;
        OK(vmenc_vm_file_open(vm, "alice", k_classes[i].cls, k_classes[i].index, VMENC_VM_FILE_EXPORT, &f));
        OK(vmenc_vm_file_pwrite(f, 4097, k_other, sizeof(k_other)));
        OK(vmenc_vm_file_close(f));
        get(vm, "bob", i, VMENC_VM_FILE_READONLY, k_other, sizeof(k_other));
    }
    vmenc_vm_free(vm);
}

/* GetVmFiles alone does not upload, PutVmFiles alone does not download; a
 * read-write out-of-band handle can do both, so it needs both. */
static void test_export_and_upload_are_separate_privileges(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", "sep", "encrypted", &vm));
    put(vm, "alice", 0, k_secret, sizeof(k_secret));
    vmenc_vm_file *f = NULL;
    /* dave: download yes, upload no */
    get(vm, "dave", 0, VMENC_VM_FILE_EXPORT | VMENC_VM_FILE_READONLY, k_secret, sizeof(k_secret));
    assert_int_equal(vmenc_vm_file_open(vm, "dave", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_EXPORT, &f),
                     VMENC_E_DENIED);
    assert_int_equal(count_denied("dave", "vm.file_upload", 0), 1);
    /* erin: download no, and a read-write handle would let her read */
    assert_int_equal(vmenc_vm_file_open(vm, "erin", VMENC_VM_FILE_NVRAM, 0,
                                        VMENC_VM_FILE_EXPORT | VMENC_VM_FILE_READONLY, &f),
                     VMENC_E_DENIED);
    assert_int_equal(vmenc_vm_file_open(vm, "erin", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_EXPORT, &f),
                     VMENC_E_DENIED);
    assert_int_equal(count_denied("erin", "vm.file_upload", 0), 1);
    /* neither may power it on through the hypervisor's path */
    assert_int_equal(vmenc_vm_file_open(vm, "dave", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_READONLY, &f),
                     VMENC_E_DENIED);
    /* the same rule for a disk's read-write export handle */
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, vm, "alice", 1 << 20, 512, id));
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "dave", id, VMENC_DISK_OPEN_EXPORT | VMENC_DISK_OPEN_READONLY, &d));
    OK(vmenc_disk_close(d));
    d = NULL;
    assert_int_equal(vmenc_disk_open(vm, "dave", id, VMENC_DISK_OPEN_EXPORT, &d), VMENC_E_DENIED);
    assert_null(d);
    assert_int_equal(vmenc_disk_open(vm, "erin", id, VMENC_DISK_OPEN_EXPORT, &d), VMENC_E_DENIED);
    assert_int_equal(vmenc_disk_open(vm, "bob", id, VMENC_DISK_OPEN_EXPORT, &d), VMENC_E_DENIED);
    OK(vmenc_disk_open(vm, "alice", id, VMENC_DISK_OPEN_EXPORT, &d));
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);
}

/* A plain VM: the ordinary VM privileges are enough (bob holds GetVmFiles
 * and PutVmFiles), and carol (ReadOnly) holds neither. */
static void test_plain_vm_export_needs_only_vm_privileges(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", "plainx", NULL, &vm));
    for (size_t i = 0; i < NUM_CLASSES; i++) {
        put(vm, "bob", i, k_secret, sizeof(k_secret));
        get(vm, "bob", i, VMENC_VM_FILE_EXPORT | VMENC_VM_FILE_READONLY, k_secret, sizeof(k_secret));
        vmenc_vm_file *f = NULL;
        OK(vmenc_vm_file_open(vm, "bob", k_classes[i].cls, k_classes[i].index, VMENC_VM_FILE_EXPORT, &f));
        OK(vmenc_vm_file_pwrite(f, 4097, k_other, sizeof(k_other)));
        OK(vmenc_vm_file_close(f));
        get(vm, "bob", i, VMENC_VM_FILE_EXPORT | VMENC_VM_FILE_READONLY, k_other, sizeof(k_other));
        assert_int_equal(vmenc_vm_file_open(vm, "carol", k_classes[i].cls, k_classes[i].index,
                                            VMENC_VM_FILE_EXPORT | VMENC_VM_FILE_READONLY, &f),
                         VMENC_E_DENIED);
        assert_int_equal(count_denied("carol", "vm.file_export", i), 1);
    }
    vmenc_vm_free(vm);
}

/* Flags the open does not know are still refused, and audited. */
static void test_unknown_flags_refused(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", "flags", NULL, &vm));
    vmenc_vm_file *f = NULL;
    size_t failed = g_f.num_failed;
    assert_int_equal(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, 1u << 20, &f), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0,
                                        VMENC_VM_FILE_EXPORT | VMENC_VM_FILE_READONLY | VMENC_VM_FILE_CREATE, &f),
                     VMENC_E_INVALID_ARG);
    assert_int_equal(g_f.num_failed, failed + 2);
    vmenc_vm_free(vm);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nocryptoadmin_cannot_export_state_files),
        cmocka_unit_test(test_nocryptoadmin_cannot_upload_state_files),
        cmocka_unit_test(test_export_and_upload_are_separate_privileges),
        cmocka_unit_test(test_plain_vm_export_needs_only_vm_privileges),
        cmocka_unit_test(test_unknown_flags_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
