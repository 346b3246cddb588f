/*
 * tests/test_vm_online.c - VMENC_APPLY_ONLINE: a VM-level conversion (deep
 * rekey, encrypt, decrypt) of a running VM, whose disk is open in this
 * process, goes through that open handle while another thread keeps
 * writing and reading it; at the end an in-memory model agrees byte for
 * byte, here and after a restarted host reopens the VM, and an encrypted
 * extent holds none of the written bytes in clear. This is the library
 * path the nbdkit plugin's control endpoint uses (docs/nbdkit.md); the
 * shell test tests/nbdkit_online.test.sh drives it through nbdkit, but
 * skips under the sanitizers, so this test is what ASan and TSan see.
 *
 * Without the flag the same calls fail with VMENC_E_BAD_STATE (a disk is
 * open), as before; with a VM state file open they still do.
 */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm_fixture.h"

#define SECTOR 512u
#define CAPACITY ((uint64_t)4 << 20) /* 4 segments of 1 MiB */
#define SEGMENT ((uint64_t)1 << 20)


static vmfix g_f;
static vmenc_disk *g_disk;
static uint8_t *g_model;
static atomic_int g_stop, g_failures, g_ops;
static atomic_int g_steps; /* progress callbacks seen */

static uint64_t next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* fill writes a recognisable run: "VMENC-ONLINE-" repeated, so the extent
 * can be searched for plaintext. */
static void fill(uint8_t *buf, size_t len, uint64_t salt) {
    static const char pat[] = "VMENC-ONLINE-";
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)pat[(i + salt) % (sizeof(pat) - 1)];
}

/* io_thread: writes (aligned and not) and read-backs against the model
 * until told to stop; it alone writes, so the model is exact. */
static void *io_thread(void *p) {
    uint64_t rng = (uint64_t)(uintptr_t)p | 1;
    uint8_t buf[3 * SECTOR], back[3 * SECTOR];
    while (!atomic_load(&g_stop) && atomic_load(&g_failures) == 0) {
        size_t len = 1 + (size_t)(next(&rng) % sizeof(buf));
        uint64_t off = next(&rng) % (CAPACITY - len);
        if (next(&rng) % 2 == 0) {
            fill(buf, len, next(&rng));
            vmenc_status s = vmenc_disk_pwrite(g_disk, off, buf, len);
            if (s != VMENC_OK) {
                fprintf(stderr, "pwrite: %s\n", vmenc_status_name(s));
                atomic_fetch_add(&g_failures, 1);
                break;
            }
            memcpy(g_model + off, buf, len);
        } else {
            vmenc_status s = vmenc_disk_pread(g_disk, off, len, back);
            if (s != VMENC_OK || memcmp(back, g_model + off, len) != 0) {
                fprintf(stderr, "pread at %llu: %s\n", (unsigned long long)off,
                        s != VMENC_OK ? vmenc_status_name(s) : "differs from the model");
                atomic_fetch_add(&g_failures, 1);
                break;
            }
        }
        atomic_fetch_add(&g_ops, 1);
    }
    return NULL;
}

/* on_progress lets I/O run between segments, so they overlap for sure. */
static int on_progress(void *ctx, const char *disk_id, const vmenc_convert_progress *pr) {
    (void)ctx;
    (void)disk_id;
    (void)pr;
    atomic_fetch_add(&g_steps, 1);
    int seen = atomic_load(&g_ops);
    while (atomic_load(&g_ops) < seen + 20 && atomic_load(&g_failures) == 0)
        ;
    return 0;
}

static void open_with_data(const char *name, const char *policy, vmenc_vm **vm, char id[VMENC_DISK_ID_MAX + 1]) {
    assert_int_equal(vmfix_create(&g_f, "alice", name, policy, vm), VMENC_OK);
    assert_int_equal(vmfix_add_disk(&g_f, *vm, "alice", CAPACITY, SECTOR, id), VMENC_OK);
    assert_int_equal(vmenc_disk_open(*vm, "alice", id, 0, &g_disk), VMENC_OK);
    memset(g_model, 0, CAPACITY);
    uint8_t *buf = malloc(CAPACITY);
    assert_non_null(buf);
    fill(buf, CAPACITY, 0);
    assert_int_equal(vmenc_disk_pwrite(g_disk, 0, buf, CAPACITY), VMENC_OK);
    memcpy(g_model, buf, CAPACITY);
    free(buf);
}

typedef enum { RUN_REKEY, RUN_APPLY } run_kind;

/* run_online converts with I/O going on in another thread. */
static vmenc_status run_online(vmenc_vm *vm, const char *who, run_kind k, const char *policy, uint32_t flags) {
    atomic_store(&g_stop, 0);
    atomic_store(&g_steps, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, io_thread, (void *)(uintptr_t)0x9e3779b9u), 0);
    vmenc_apply_options ao = {.struct_size = sizeof(ao), .progress = on_progress, .segment_bytes = SEGMENT,
                              .flags = flags};
    vmenc_status s = k == RUN_REKEY ? vmenc_vm_rekey_deep(vm, who, &ao)
                                    : vmenc_vm_apply_storage_policy_ex(vm, who, policy, &ao);
    /* a few more I/Os after the conversion, on the converted disk */
    int seen = atomic_load(&g_ops);
    while (atomic_load(&g_ops) < seen + 50 && atomic_load(&g_failures) == 0)
        ;
    atomic_store(&g_stop, 1);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&g_failures), 0);
    return s;
}

static void check_model(void) {
    uint8_t *all = malloc(CAPACITY);
    assert_non_null(all);
    assert_int_equal(vmenc_disk_pread(g_disk, 0, CAPACITY, all), VMENC_OK);
    assert_memory_equal(all, g_model, CAPACITY);
    free(all);
}

/* extent_has_plaintext: does the VM's first extent hold a run of fill()? */
static bool extent_has_plaintext(const char *name) {
    char path[PATH_MAX + 128];
    snprintf(path, sizeof(path), "%s/%s/%s_0-flat.vmdk", g_f.dir, name, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static uint8_t data[CAPACITY * 2 + (1 << 20)];
    size_t n = fread(data, 1, sizeof(data), f);
    fclose(f);
    static const char needle[] = "VMENC-ONLINE-VMENC-ONLINE-";
    return memmem(data, n, needle, sizeof(needle) - 1) != NULL;
}

/* reopen_check: a restarted host reads the model back through the KMS. */
static void reopen_check(const char *name, const char *id) {
    vmenc_vm *vm = NULL;
    vmenc_disk *d = NULL;
    assert_int_equal(vmfix_new_keymgr(&g_f), VMENC_OK);
    assert_int_equal(vmfix_new_host(&g_f, "esx01"), VMENC_OK);
    char vmx[PATH_MAX + 64];
    assert_int_equal(vmenc_vm_open(g_f.host, "alice", vmfix_vmx_path(&g_f, name, vmx, sizeof(vmx)), &vm), VMENC_OK);
    assert_int_equal(vmenc_disk_open(vm, "alice", id, VMENC_DISK_OPEN_READONLY, &d), VMENC_OK);
    uint8_t *all = malloc(CAPACITY);
    assert_int_equal(vmenc_disk_pread(d, 0, CAPACITY, all), VMENC_OK);
    assert_memory_equal(all, g_model, CAPACITY);
    free(all);
    assert_int_equal(vmenc_disk_close(d), VMENC_OK);
    vmenc_vm_free(vm);
}

static void test_online_rekey_deep(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    char id[VMENC_DISK_ID_MAX + 1];
    open_with_data("rk", "encrypted", &vm, id);
    /* without the flag: refused, the disk is open (the old behaviour) */
    vmenc_apply_options plain = {.struct_size = sizeof(plain)};
    assert_int_equal(vmenc_vm_rekey_deep(vm, "alice", &plain), VMENC_E_BAD_STATE);
    /* bob (no cryptography) is denied, flag or not */
    vmenc_apply_options on = {.struct_size = sizeof(on), .flags = VMENC_APPLY_ONLINE};
    assert_int_equal(vmenc_vm_rekey_deep(vm, "bob", &on), VMENC_E_DENIED);
    /* a state file open: still refused */
    vmenc_vm_file *nv = NULL;
    assert_int_equal(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_CREATE, &nv), VMENC_OK);
    assert_int_equal(vmenc_vm_rekey_deep(vm, "alice", &on), VMENC_E_BAD_STATE);
    assert_int_equal(vmenc_vm_file_close(nv), VMENC_OK);
    /* an unknown flag is still refused */
    vmenc_apply_options bad = {.struct_size = sizeof(bad), .flags = VMENC_APPLY_ONLINE << 1};
    assert_int_equal(vmenc_vm_rekey_deep(vm, "alice", &bad), VMENC_E_INVALID_ARG);

    assert_int_equal(run_online(vm, "alice", RUN_REKEY, NULL, VMENC_APPLY_ONLINE), VMENC_OK);
    assert_true(atomic_load(&g_steps) >= 4); /* every segment moved through the open handle */
    check_model();
    assert_false(extent_has_plaintext("rk"));
    assert_int_equal(vmenc_disk_close(g_disk), VMENC_OK);
    vmenc_vm_free(vm);
    reopen_check("rk", id);
}

static void test_online_encrypt_then_decrypt(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    char id[VMENC_DISK_ID_MAX + 1];
    open_with_data("pl", NULL, &vm, id);
    assert_true(extent_has_plaintext("pl")); /* the check sees plaintext when it is there */
    assert_int_equal(run_online(vm, "alice", RUN_APPLY, "encrypted", VMENC_APPLY_ONLINE), VMENC_OK);
    int enc = 0;
    assert_int_equal(vmenc_disk_is_encrypted(g_disk, &enc), VMENC_OK);
    assert_int_equal(enc, 1);
    check_model();
    assert_false(extent_has_plaintext("pl"));

    assert_int_equal(run_online(vm, "alice", RUN_APPLY, "plain", VMENC_APPLY_ONLINE), VMENC_OK);
    assert_int_equal(vmenc_disk_is_encrypted(g_disk, &enc), VMENC_OK);
    assert_int_equal(enc, 0);
    check_model();
    assert_int_equal(vmenc_disk_close(g_disk), VMENC_OK);
    vmenc_vm_free(vm);
    reopen_check("pl", id);
}

/* An open disk that holds no data is converted through its handle too: the
 * no-data shortcut (switching the descriptor) would leave the open extent
 * writing clear text under a descriptor that says "encrypted". */
static void test_online_encrypt_empty_open_disk(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    char id[VMENC_DISK_ID_MAX + 1];
    assert_int_equal(vmfix_create(&g_f, "alice", "em", NULL, &vm), VMENC_OK);
    assert_int_equal(vmfix_add_disk(&g_f, vm, "alice", CAPACITY, SECTOR, id), VMENC_OK);
    assert_int_equal(vmenc_disk_open(vm, "alice", id, 0, &g_disk), VMENC_OK);
    memset(g_model, 0, CAPACITY);
    vmenc_apply_options on = {.struct_size = sizeof(on), .segment_bytes = SEGMENT, .flags = VMENC_APPLY_ONLINE};
    assert_int_equal(vmenc_vm_apply_storage_policy_ex(vm, "alice", "encrypted", &on), VMENC_OK);
    uint8_t buf[4096];
    fill(buf, sizeof(buf), 3);
    assert_int_equal(vmenc_disk_pwrite(g_disk, 8192, buf, sizeof(buf)), VMENC_OK);
    memcpy(g_model + 8192, buf, sizeof(buf));
    check_model();
    assert_int_equal(vmenc_disk_close(g_disk), VMENC_OK);
    assert_false(extent_has_plaintext("em"));
    vmenc_vm_free(vm);
    reopen_check("em", id);
}

static int setup(void **state) {
    (void)state;
    g_model = calloc(1, CAPACITY);
    return g_model != NULL && vmfix_setup(&g_f, VMENC_HOST_NO_SYNC) == VMENC_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    vmfix_teardown(&g_f);
    free(g_model);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_online_rekey_deep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_online_encrypt_then_decrypt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_online_encrypt_empty_open_disk, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
