/*
 * tests/test_vm_statefile_anchor.c - a sealed state file's ID anchored in
 * the VM's authority record (issue 20; docs/control.md "State files",
 * docs/vm-format.md "State files"): a whole older copy of NAME.nvram is
 * refused after a write session that did not truncate (the tamper matrix,
 * tests/test_vm_tamper.c, covers truncating ones); a write session
 * interrupted at each of its durable steps (a crash in a child process, or
 * one EIO) leaves the old or the new file, which the next open settles so
 * the record names exactly the ID on disk; and the GCM nonce budget (point
 * 11a) renews the file ID during a long session - shown with the budget
 * lowered through the host's internal knob - with every byte right after.
 *
 * Its one rule: interruptions come only through the durable-step hook
 * (lib/core/fs.h vmenc_fs_step_hook); files are edited only to replay an
 * older copy, as a datastore attacker would.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fs.h"
#include "vm/vm_internal.h"
#include "vm_fixture.h"

#define NV_BYTES 150000u /* three chunks */

static vmfix g_f;
static ctl_store *g_store;

static void nv_path(const char *vm, char *out, size_t cap) { snprintf(out, cap, "%s/%s/%s.nvram", g_f.dir, vm, vm); }

static void fill(uint8_t *buf, size_t len, unsigned seed) {
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((i * 131u + seed * 17u + (i >> 9)) ^ 0x5a);
}

static vmenc_vm *open_vm(const char *name) {
    char p[PATH_MAX + 128];
    vmfix_vmx_path(&g_f, name, p, sizeof(p));
    vmenc_vm *vm = NULL;
    assert_int_equal(vmenc_vm_open(g_f.host, "alice", p, &vm), VMENC_OK);
    return vm;
}

static void write_nv(vmenc_vm *vm, uint32_t flags, uint64_t off, const uint8_t *data, size_t len) {
    vmenc_vm_file *f = NULL;
    assert_int_equal(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, flags, &f), VMENC_OK);
    assert_int_equal(vmenc_vm_file_pwrite(f, off, data, len), VMENC_OK);
    assert_int_equal(vmenc_vm_file_close(f), VMENC_OK);
}

/* read_nv reads the whole NVRAM (|len| bytes expected) into |out|. */
static vmenc_status read_nv(vmenc_vm *vm, uint8_t *out, size_t len) {
    vmenc_vm_file *f = NULL;
    VMENC_GUARD(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_READONLY, &f));
    size_t n = 0;
    vmenc_status s = vmenc_vm_file_pread(f, 0, len + 1, out, &n);
    vmenc_status cs = vmenc_vm_file_close(f);
    if (s == VMENC_OK && n != len)
        s = VMENC_E_TRUNCATED;
    return s != VMENC_OK ? s : cs;
}

/* disk_id: the file ID in NAME.nvram's header now. */
static void disk_id(const char *vm, uint8_t out[VM_SF_FILE_ID_BYTES]) {
    char home[PATH_MAX + 64], name[96];
    snprintf(home, sizeof(home), "%s/%s", g_f.dir, vm);
    snprintf(name, sizeof(name), "%s.nvram", vm);
    int dfd = open(home, O_RDONLY | O_DIRECTORY);
    assert_true(dfd >= 0);
    bool sealed = false;
    assert_int_equal(vm_sf_read_file_id(dfd, name, &sealed, out), VMENC_OK);
    assert_true(sealed);
    close(dfd);
}

/* recorded: the NVRAM's entry of the VM's record as stored. */
static ctl_file_fact recorded(vmenc_vm *vm) {
    ctl_vm_record *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    assert_int_equal(ctl_store_get_vm(g_store, vm->vmx.uuid, r), VMENC_OK);
    assert_true(r->facts.files_anchored);
    int i = ctl_vm_facts_find_file(&r->facts, VMENC_VM_FILE_NVRAM, 0);
    assert_true(i >= 0);
    ctl_file_fact e = r->facts.files[i];
    free(r);
    return e;
}

static uint8_t *slurp(const char *p, size_t *len) { return vmfix_read_file(p, len); }

static void spit(const char *p, const uint8_t *b, size_t len) {
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* ---- replay after a session that did not truncate ------------------------------ */

static void test_replay_refused(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    assert_int_equal(vmfix_create(&g_f, "alice", "rp", "encrypted", &vm), VMENC_OK);
    uint8_t *a = malloc(NV_BYTES), *b = malloc(NV_BYTES), *got = malloc(NV_BYTES + 1);
    fill(a, NV_BYTES, 1);
    memcpy(b, a, NV_BYTES);
    memset(b + 70000, 'B', 100);
    write_nv(vm, VMENC_VM_FILE_CREATE | VMENC_VM_FILE_TRUNCATE, 0, a, NV_BYTES);
    char p[PATH_MAX + 128];
    nv_path("rp", p, sizeof(p));
    size_t old_len = 0;
    uint8_t *old = slurp(p, &old_len);
    assert_non_null(old);
    /* a session that rewrites 100 bytes in place: a new file ID */
    uint8_t id0[VM_SF_FILE_ID_BYTES], id1[VM_SF_FILE_ID_BYTES];
    disk_id("rp", id0);
    write_nv(vm, 0, 70000, b + 70000, 100);
    disk_id("rp", id1);
    assert_memory_not_equal(id0, id1, VM_SF_FILE_ID_BYTES);
    ctl_file_fact e = recorded(vm);
    assert_true(e.has_id && !e.has_next);
    assert_memory_equal(e.file_id, id1, VM_SF_FILE_ID_BYTES);
    size_t cur_len = 0;
    uint8_t *cur = slurp(p, &cur_len);
    /* the older copy under the same key: refused, audited naming the file */
    spit(p, old, old_len);
    size_t before = g_f.num_failed + g_f.num_denied;
    assert_int_equal(read_nv(vm, got, NV_BYTES), VMENC_E_AUTH);
    assert_true(g_f.num_failed + g_f.num_denied > before);
    assert_non_null(strstr(g_f.log, "rp.nvram: its file ID is not the one"));
    /* ... also after a restart of the host's view (a fresh open) */
    vmenc_vm_free(vm);
    vm = open_vm("rp");
    assert_int_equal(read_nv(vm, got, NV_BYTES), VMENC_E_AUTH);
    /* and a write session cannot bless it either */
    vmenc_vm_file *f = NULL;
    assert_int_equal(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, 0, &f), VMENC_E_AUTH);
    /* the current file opens and reads the second version */
    spit(p, cur, cur_len);
    assert_int_equal(read_nv(vm, got, NV_BYTES), VMENC_OK);
    assert_memory_equal(got, b, NV_BYTES);
    vmenc_vm_free(vm);
    free(old);
    free(cur);
    free(a);
    free(b);
    free(got);
}

/* ---- a write session interrupted at each durable step --------------------------- */

enum { MODE_OFF, MODE_COUNT, MODE_CRASH, MODE_EIO };
static int g_mode;
static unsigned g_steps, g_at;

static vmenc_status step_hook(int op, const char *name) {
    (void)op, (void)name;
    if (g_mode == MODE_OFF)
        return VMENC_OK;
    g_steps++;
    if (g_steps != g_at)
        return VMENC_OK;
    if (g_mode == MODE_CRASH)
        _exit(0);
    return g_mode == MODE_EIO ? VMENC_E_IO : VMENC_OK;
}

/* session: open NAME.nvram for write (no truncation), change 100 bytes,
 * close - what the step hook counts and interrupts. */
static void session(vmenc_vm *vm, const uint8_t *b) {
    vmenc_vm_file *f = NULL;
    if (vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, 0, &f) != VMENC_OK)
        return;
    if (vmenc_vm_file_pwrite(f, 70000, b + 70000, 100) != VMENC_OK) {
        vmenc_status ignored = vmenc_vm_file_close(f);
        (void)ignored;
        return;
    }
    vmenc_status ignored = vmenc_vm_file_close(f);
    (void)ignored;
}

/* settled_ok: after the one open + resume, the NVRAM reads the old or the
 * new version, the record names exactly the ID on disk with nothing
 * pending, and the next session works. */
static void settled_ok(const uint8_t *a, const uint8_t *b, unsigned k, const char *mode) {
    vmenc_vm *vm = open_vm("cs");
    assert_int_equal(vmenc_vm_resume(vm, "alice", NULL), VMENC_OK);
    uint8_t *got = malloc(NV_BYTES + 1);
    vmenc_status s = read_nv(vm, got, NV_BYTES);
    if (s != VMENC_OK || (memcmp(got, a, NV_BYTES) != 0 && memcmp(got, b, NV_BYTES) != 0))
        fail_msg("%s at step %u: the NVRAM reads %s, neither version", mode, k, vmenc_status_name(s));
    ctl_file_fact e = recorded(vm);
    uint8_t on_disk[VM_SF_FILE_ID_BYTES];
    disk_id("cs", on_disk);
    if (!e.has_id || e.has_next || memcmp(e.file_id, on_disk, VM_SF_FILE_ID_BYTES) != 0)
        fail_msg("%s at step %u: the record does not name the file on disk alone (has_next %d)", mode, k,
                 e.has_next);
    char home[PATH_MAX + 64];
    snprintf(home, sizeof(home), "%s/cs", g_f.dir);
    char cmd[PATH_MAX + 128];
    snprintf(cmd, sizeof(cmd), "ls '%s' | grep -q 'tmp-'", home);
    if (system(cmd) == 0)
        fail_msg("%s at step %u: a temporary file is left", mode, k);
    /* back to version a for the next case, through a full session */
    write_nv(vm, VMENC_VM_FILE_CREATE | VMENC_VM_FILE_TRUNCATE, 0, a, NV_BYTES);
    vmenc_vm_free(vm);
    free(got);
}

static void test_session_interrupted(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    assert_int_equal(vmfix_create(&g_f, "alice", "cs", "encrypted", &vm), VMENC_OK);
    uint8_t *a = malloc(NV_BYTES), *b = malloc(NV_BYTES);
    fill(a, NV_BYTES, 2);
    memcpy(b, a, NV_BYTES);
    memset(b + 70000, 'B', 100);
    write_nv(vm, VMENC_VM_FILE_CREATE | VMENC_VM_FILE_TRUNCATE, 0, a, NV_BYTES);
    vmenc_fs_step_hook = step_hook;
    g_steps = 0;
    g_mode = MODE_COUNT;
    session(vm, b);
    g_mode = MODE_OFF;
    unsigned n = g_steps;
    vmenc_vm_free(vm);
    /* announce (record), temporary fsync, rename, directory fsync, settle
     * (record), close's fsync at least */
    assert_true(n >= 6);
    settled_ok(a, b, 0, "clean");
    for (unsigned k = 1; k <= n; k++) {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            vmenc_vm *c = open_vm("cs");
            g_steps = 0;
            g_at = k;
            g_mode = MODE_CRASH;
            session(c, b);
            _exit(2);
        }
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        settled_ok(a, b, k, "crash");

        vm = open_vm("cs");
        g_steps = 0;
        g_at = k;
        g_mode = MODE_EIO;
        session(vm, b);
        g_mode = MODE_OFF;
        vmenc_vm_free(vm);
        settled_ok(a, b, k, "eio");
    }
    vmenc_fs_step_hook = NULL;
    printf("  write session: %u durable steps, %u interruptions\n", n, 2 * n);
    free(a);
    free(b);
}

/* ---- the nonce budget (point 11a) ---------------------------------------------------- */

static void test_nonce_budget(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    assert_int_equal(vmfix_create(&g_f, "alice", "nb", "encrypted", &vm), VMENC_OK);
    uint8_t *model = malloc(NV_BYTES), *got = malloc(NV_BYTES + 1);
    fill(model, NV_BYTES, 3);
    write_nv(vm, VMENC_VM_FILE_CREATE | VMENC_VM_FILE_TRUNCATE, 0, model, NV_BYTES);

    /* the default budget: a session of 40 one-record writes keeps its ID */
    uint8_t id[VM_SF_FILE_ID_BYTES], prev[VM_SF_FILE_ID_BYTES];
    vmenc_vm_file *f = NULL;
    assert_int_equal(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, 0, &f), VMENC_OK);
    disk_id("nb", prev);
    for (unsigned i = 0; i < 40; i++) {
        uint64_t off = (i * 7919u) % (NV_BYTES - 64);
        memset(model + off, (int)('a' + i % 26), 64);
        assert_int_equal(vmenc_vm_file_pwrite(f, off, model + off, 64), VMENC_OK);
    }
    disk_id("nb", id);
    assert_memory_equal(id, prev, VM_SF_FILE_ID_BYTES);
    assert_int_equal(vmenc_vm_file_close(f), VMENC_OK);

    /* lowered to 8 record writes per file ID: the 3-record copy of a
     * renewal plus 5 writes, then a new ID - several times in 40 writes */
    g_f.host->sf_write_budget = 8;
    assert_int_equal(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, 0, &f), VMENC_OK);
    disk_id("nb", prev);
    unsigned renewals = 0;
    for (unsigned i = 0; i < 40; i++) {
        uint64_t off = (i * 104729u) % (NV_BYTES - 64);
        memset(model + off, (int)('A' + i % 26), 64);
        assert_int_equal(vmenc_vm_file_pwrite(f, off, model + off, 64), VMENC_OK);
        disk_id("nb", id);
        if (memcmp(id, prev, sizeof(id)) != 0) {
            renewals++;
            memcpy(prev, id, sizeof(id));
            /* the record names the new ID, nothing pending */
            ctl_file_fact e = recorded(vm);
            assert_true(e.has_id && !e.has_next);
            assert_memory_equal(e.file_id, id, VM_SF_FILE_ID_BYTES);
        }
        /* reads during the session see every write */
        size_t n = 0;
        uint8_t chunk[64];
        assert_int_equal(vmenc_vm_file_pread(f, off, 64, chunk, &n), VMENC_OK);
        assert_memory_equal(chunk, model + off, 64);
    }
    assert_int_equal(vmenc_vm_file_close(f), VMENC_OK);
    g_f.host->sf_write_budget = 0;
    printf("  40 writes under a budget of 8: %u renewals of the file ID\n", renewals);
    assert_true(renewals >= 5);
    /* every byte right after a fresh open */
    vmenc_vm_free(vm);
    vm = open_vm("nb");
    assert_int_equal(read_nv(vm, got, NV_BYTES), VMENC_OK);
    assert_memory_equal(got, model, NV_BYTES);
    vmenc_vm_free(vm);
    free(model);
    free(got);
}

/* Renewals from writes on two threads sharing one handle while a third
 * opens another state file (the VM lock) - for the thread sanitizer: a
 * renewal takes the VM lock from inside a write. */
typedef struct thr_arg {
    vmenc_vm_file *f;
    vmenc_vm *vm;
    unsigned seed;
} thr_arg;

static void *thr_write(void *p) {
    thr_arg *a = p;
    uint8_t buf[512];
    for (unsigned i = 0; i < 30; i++) {
        memset(buf, (int)(a->seed + i), sizeof(buf));
        if (vmenc_vm_file_pwrite(a->f, (uint64_t)(a->seed * 70000u + (i * 997u) % 60000u), buf, sizeof(buf)) != VMENC_OK)
            return (void *)1;
    }
    return NULL;
}

static void *thr_other(void *p) {
    thr_arg *a = p;
    for (unsigned i = 0; i < 10; i++) {
        vmenc_vm_file *g = NULL;
        if (vmenc_vm_file_open(a->vm, "alice", VMENC_VM_FILE_VMSS, 0, VMENC_VM_FILE_CREATE, &g) != VMENC_OK)
            return (void *)1;
        if (vmenc_vm_file_close(g) != VMENC_OK)
            return (void *)1;
    }
    return NULL;
}

static void test_budget_threads(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    assert_int_equal(vmfix_create(&g_f, "alice", "th", "encrypted", &vm), VMENC_OK);
    uint8_t *a = malloc(NV_BYTES);
    fill(a, NV_BYTES, 5);
    write_nv(vm, VMENC_VM_FILE_CREATE | VMENC_VM_FILE_TRUNCATE, 0, a, NV_BYTES);
    g_f.host->sf_write_budget = 8;
    vmenc_vm_file *f = NULL;
    assert_int_equal(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, 0, &f), VMENC_OK);
    thr_arg args[3] = {{f, vm, 0}, {f, vm, 1}, {NULL, vm, 2}};
    pthread_t t[3];
    assert_int_equal(pthread_create(&t[0], NULL, thr_write, &args[0]), 0);
    assert_int_equal(pthread_create(&t[1], NULL, thr_write, &args[1]), 0);
    assert_int_equal(pthread_create(&t[2], NULL, thr_other, &args[2]), 0);
    for (int i = 0; i < 3; i++) {
        void *rv = NULL;
        assert_int_equal(pthread_join(t[i], &rv), 0);
        assert_null(rv);
    }
    assert_int_equal(vmenc_vm_file_close(f), VMENC_OK);
    g_f.host->sf_write_budget = 0;
    /* the record names the file on disk */
    ctl_file_fact e = recorded(vm);
    uint8_t on_disk[VM_SF_FILE_ID_BYTES];
    disk_id("th", on_disk);
    assert_memory_equal(e.file_id, on_disk, VM_SF_FILE_ID_BYTES);
    vmenc_vm_free(vm);
    free(a);
}

/* ---- a record from before version 2 -------------------------------------------------- */

/* A record without the state-file list (what the code before version 2
 * stored) still opens the VM: its files are anchored at that open, and
 * from then on an older copy is refused. */
static void test_old_record_anchored(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    assert_int_equal(vmfix_create(&g_f, "alice", "old", "encrypted", &vm), VMENC_OK);
    uint8_t *a = malloc(NV_BYTES), *got = malloc(NV_BYTES + 1);
    fill(a, NV_BYTES, 4);
    write_nv(vm, VMENC_VM_FILE_CREATE | VMENC_VM_FILE_TRUNCATE, 0, a, NV_BYTES);
    char uuid[VMENC_VM_UUID_LEN + 1];
    snprintf(uuid, sizeof(uuid), "%s", vm->vmx.uuid);
    vmenc_vm_free(vm);
    /* strip the list: the record as version 1 wrote it */
    ctl_vm_record *r = calloc(1, sizeof(*r));
    assert_int_equal(ctl_store_get_vm(g_store, uuid, r), VMENC_OK);
    uint64_t rev = r->revision;
    r->facts.files_anchored = false;
    r->facts.num_files = 0;
    memset(r->facts.files, 0, sizeof(r->facts.files));
    uint8_t *bin = NULL;
    size_t len = 0;
    assert_int_equal(ctl_record_encode(r, &bin, &len), VMENC_OK);
    assert_int_equal(bin[4], 1);
    free(bin);
    assert_int_equal(ctl_store_put_vm(g_store, r, rev, NULL), VMENC_OK);
    vm = open_vm("old");
    assert_int_equal(read_nv(vm, got, NV_BYTES), VMENC_OK);
    assert_memory_equal(got, a, NV_BYTES);
    ctl_file_fact e = recorded(vm); /* anchored at the open */
    uint8_t on_disk[VM_SF_FILE_ID_BYTES];
    disk_id("old", on_disk);
    assert_memory_equal(e.file_id, on_disk, VM_SF_FILE_ID_BYTES);
    vmenc_vm_free(vm);
    free(r);
    free(a);
    free(got);
}

static int setup(void **state) {
    (void)state;
    const char *tmp = getenv("TMPDIR");
    struct stat st;
    if (tmp == NULL && stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
        setenv("TMPDIR", "/dev/shm", 1);
    if (vmfix_setup(&g_f, 0) != VMENC_OK)
        return -1;
    static const uint8_t mac_key[CTL_MAC_KEY_BYTES] = {9, 8, 7};
    char p[PATH_MAX + 16];
    snprintf(p, sizeof(p), "%s/ctl", g_f.dir);
    if (ctl_local_new(p, mac_key, sizeof(mac_key), true, &g_store) != VMENC_OK)
        return -1;
    vm_host_set_control(g_f.host, g_store); /* the host owns it; g_store stays valid while it lives */
    return 0;
}

static int teardown(void **state) {
    (void)state;
    vmfix_teardown(&g_f);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_refused),
        cmocka_unit_test(test_session_interrupted),
        cmocka_unit_test(test_nonce_budget),
        cmocka_unit_test(test_budget_threads),
        cmocka_unit_test(test_old_record_anchored),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
