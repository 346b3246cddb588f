/*
 * tests/test_vm_threads.c - many threads on one open encrypted disk while
 * another thread rekeys the VM (shallow) over and over; at the end a plain
 * in-memory model must agree byte for byte, and so must a fresh host that
 * reopens the VM with only the KMS.
 *
 * Each I/O thread owns the sectors s with s % 8 == its number and reads
 * and writes them (whole sectors, and pieces at random offsets). To make
 * threads collide inside one sector too, every thread also writes the
 * sectors of a shared region, each only in its own 64-byte slice: the
 * per-sector lock of the read-modify-write must keep every slice.
 */
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

#define NUM_IO 8
#define SECTOR 512u
#define OWNED_SECTORS 2048u /* 1 MiB: sector s belongs to thread s % NUM_IO */
#define SHARED_SECTORS 64u  /* after the owned region: every thread writes its slice */
#define CAPACITY ((OWNED_SECTORS + SHARED_SECTORS) * SECTOR)
#define SLICE (SECTOR / NUM_IO)

static vmfix g_f;
static vmenc_disk *g_disk;
static uint8_t *g_model;
static atomic_int g_stop;
static atomic_int g_failures;
static atomic_int g_rekeys;
static vmenc_vm *g_vm;

typedef struct io_arg {
    int id;
    uint64_t rng;
    int ops;
} io_arg;

static uint64_t next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fail_once(const char *what, vmenc_status s) {
    if (atomic_fetch_add(&g_failures, 1) == 0)
        fprintf(stderr, "%s: %s\n", what, vmenc_status_name(s));
}

/* io_thread: random reads and writes of the thread's own bytes only. */
static void *io_thread(void *p) {
    io_arg *a = p;
    uint8_t buf[SECTOR * 4], back[SECTOR * 4];
    for (int op = 0; op < a->ops && atomic_load(&g_failures) == 0; op++) {
        uint64_t r = next(&a->rng);
        if (r % 3 == 0) {
            /* a slice of a shared sector: a partial-sector write that races
             * with the other threads' slices of the same sector */
            uint64_t sector = OWNED_SECTORS + next(&a->rng) % SHARED_SECTORS;
            size_t in = (size_t)(next(&a->rng) % SLICE);
            size_t len = 1 + (size_t)(next(&a->rng) % (SLICE - in));
            uint64_t off = sector * SECTOR + (uint64_t)a->id * SLICE + in;
            for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)next(&a->rng);
            vmenc_status s = vmenc_disk_pwrite(g_disk, off, buf, len);
            if (s != VMENC_OK) {
                fail_once("pwrite shared", s);
                break;
            }
            memcpy(g_model + off, buf, len);
            continue;
        }
        /* one of the thread's own sectors: whole (aligned) or a piece */
        uint64_t sector = (next(&a->rng) % (OWNED_SECTORS / NUM_IO)) * NUM_IO + (uint64_t)a->id;
        size_t in = r % 2 ? 0 : (size_t)(next(&a->rng) % SECTOR);
        size_t len = r % 2 ? SECTOR : 1 + (size_t)(next(&a->rng) % (SECTOR - in));
        uint64_t off = sector * SECTOR + in;
        if (r % 5 == 1) {
            vmenc_status s = vmenc_disk_pread(g_disk, off, len, back);
            if (s != VMENC_OK || memcmp(back, g_model + off, len) != 0) {
                fail_once("pread mismatch", s);
                break;
            }
            continue;
        }
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)next(&a->rng);
        vmenc_status s = vmenc_disk_pwrite(g_disk, off, buf, len);
        if (s != VMENC_OK) {
            fail_once("pwrite", s);
            break;
        }
        memcpy(g_model + off, buf, len);
    }
    return NULL;
}

static void *rekey_thread(void *p) {
    (void)p;
    while (!atomic_load(&g_stop) && atomic_load(&g_failures) == 0) {
        const char *provider = atomic_load(&g_rekeys) % 2 ? "kms-b" : "kms-a";
        vmenc_status s = vmenc_vm_rekey_shallow(g_vm, "alice", provider, NULL);
        if (s != VMENC_OK) {
            fail_once("rekey", s);
            break;
        }
        atomic_fetch_add(&g_rekeys, 1);
    }
    return NULL;
}

static void test_io_during_rekey(void **state) {
    (void)state;
    assert_int_equal(vmfix_setup(&g_f, VMENC_HOST_NO_SYNC), VMENC_OK);
    assert_int_equal(vmfix_create(&g_f, "alice", "mt", "encrypted", &g_vm), VMENC_OK);
    char id[VMENC_DISK_ID_MAX + 1];
    assert_int_equal(vmfix_add_disk(&g_f, g_vm, "alice", CAPACITY, SECTOR, id), VMENC_OK);
    assert_int_equal(vmenc_disk_open(g_vm, "alice", id, 0, &g_disk), VMENC_OK);
    g_model = calloc(1, CAPACITY);
    assert_non_null(g_model);

    pthread_t io[NUM_IO], rk;
    io_arg args[NUM_IO];
    const char *ops_env = getenv("VMENC_TEST_VM_THREAD_OPS");
    int ops = ops_env != NULL ? atoi(ops_env) : 20000;
    assert_int_equal(pthread_create(&rk, NULL, rekey_thread, NULL), 0);
    for (int i = 0; i < NUM_IO; i++) {
        args[i] = (io_arg){.id = i, .rng = 0x1234567ull * (uint64_t)(i + 1), .ops = ops};
        assert_int_equal(pthread_create(&io[i], NULL, io_thread, &args[i]), 0);
    }
    for (int i = 0; i < NUM_IO; i++)
        pthread_join(io[i], NULL);
    /* the rekey thread must have overlapped with I/O at least once */
    while (atomic_load(&g_rekeys) < 2 && atomic_load(&g_failures) == 0)
        ;
    atomic_store(&g_stop, 1);
    pthread_join(rk, NULL);
    assert_int_equal(atomic_load(&g_failures), 0);
    fprintf(stderr, "%d shallow rekeys ran during %d I/O operations\n", atomic_load(&g_rekeys), ops * NUM_IO);

    uint8_t *all = malloc(CAPACITY);
    assert_int_equal(vmenc_disk_pread(g_disk, 0, CAPACITY, all), VMENC_OK);
    assert_memory_equal(all, g_model, CAPACITY);
    assert_int_equal(vmenc_disk_close(g_disk), VMENC_OK);
    vmenc_vm_free(g_vm);

    /* a restarted host reads the same bytes through the KMS alone */
    assert_int_equal(vmfix_new_keymgr(&g_f), VMENC_OK);
    assert_int_equal(vmfix_new_host(&g_f, "esx01"), VMENC_OK);
    char vmx[PATH_MAX + 64];
    assert_int_equal(vmenc_vm_open(g_f.host, "bob", vmfix_vmx_path(&g_f, "mt", vmx, sizeof(vmx)), &g_vm), VMENC_OK);
    assert_int_equal(vmenc_disk_open(g_vm, "bob", id, VMENC_DISK_OPEN_READONLY, &g_disk), VMENC_OK);
    memset(all, 0, CAPACITY);
    assert_int_equal(vmenc_disk_pread(g_disk, 0, CAPACITY, all), VMENC_OK);
    assert_memory_equal(all, g_model, CAPACITY);
    assert_int_equal(vmenc_disk_close(g_disk), VMENC_OK);
    vmenc_vm_free(g_vm);
    free(all);
    free(g_model);
    vmfix_teardown(&g_f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_during_rekey),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
