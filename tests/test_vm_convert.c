/*
 * tests/test_vm_convert.c - in-place encrypt, decrypt and deep rekey of a
 * disk (lib/vm/convert.c, docs/reencryption.md), against a plain in-memory
 * model of the disk:
 *
 *  - each kind, offline and online (I/O threads running during the steps);
 *  - resume after the disk is closed half way, on a restarted host;
 *  - a fault layer under the disk's writes and syncs: ENOSPC and EIO stop
 *    the conversion with nothing lost; a "power cut" at a random write tears
 *    that write at a random byte and undoes, keeps or tears every write not
 *    yet made durable by a sync, then the disk is reopened and finished;
 *  - a kill campaign: a child converts (and, every other run, writes new
 *    known data through the API) until the parent SIGKILLs it at a random
 *    instant; the parent reopens, resumes, finishes, and checks every byte.
 *
 * Counts: VMENC_KILL_RUNS (default 12) kills and VMENC_POWER_CUTS (default
 * 24) power cuts; scripts/kill-test.sh runs the long campaign.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vm/vm_internal.h"
#include "vm_fixture.h"

#define OK(call) assert_int_equal((call), VMENC_OK)
#define MiB (1024u * 1024u)
#define SEG MiB
#define CAP (6u * MiB + 3u * 4096u) /* 7 segments, the last one short */

static vmfix g_f;
static uint8_t *g_model;

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static int setup(void **state) {
    (void)state;
    const char *seed = getenv("VMENC_TEST_SEED");
    if (seed != NULL)
        g_rng = strtoull(seed, NULL, 0) | 1;
    fprintf(stderr, "seed 0x%llx (VMENC_TEST_SEED to repeat)\n", (unsigned long long)g_rng);
    g_model = malloc(CAP);
    return g_model != NULL && vmfix_setup(&g_f, 0) == VMENC_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    vmfix_teardown(&g_f);
    free(g_model);
    return 0;
}

static const vmenc_convert_options k_opts = {.struct_size = sizeof(vmenc_convert_options), .segment_bytes = SEG};

/* fill writes known data over the disk, leaving one segment never written
 * (a hole), and records it in the model. */
static void fill(vmenc_disk *d) {
    memset(g_model, 0, CAP);
    for (uint64_t off = 0; off < CAP; off += 4096) {
        if (off >= 2 * SEG && off < 3 * SEG)
            continue; /* segment 2 stays a hole */
        for (size_t i = 0; i < 4096; i += 8) {
            uint64_t v = (off + i) * 0x9e3779b97f4a7c15ull ^ 0xfeed;
            memcpy(g_model + off + i, &v, 8);
        }
        OK(vmenc_disk_pwrite(d, off, g_model + off, 4096));
    }
}

static void verify(vmenc_disk *d) {
    uint8_t *all = malloc(CAP);
    OK(vmenc_disk_pread(d, 0, CAP, all));
    for (uint64_t off = 0; off < CAP; off += 512)
        if (memcmp(all + off, g_model + off, 512) != 0)
            fail_msg("sector %llu differs from the model", (unsigned long long)(off / 512));
    free(all);
}

static vmenc_status run_to_end(vmenc_disk *d) {
    vmenc_convert_progress p = {.struct_size = sizeof(p)};
    for (int guard = 0; guard < 1000; guard++) {
        vmenc_status s = vmenc_disk_convert_step(d, SEG, &p);
        if (s != VMENC_OK || p.done)
            return s;
    }
    return VMENC_E_INTERNAL;
}

/* The VM-level kill campaign runs with a control store, as a workspace's
 * host has one (the authority records, the state files' IDs): each new
 * host attaches the store in "<dir>/ctl". */
static bool g_with_control;
static vmenc_status control_on(void) {
    if (!g_with_control)
        return VMENC_OK;
    static const uint8_t mac_key[CTL_MAC_KEY_BYTES] = {4, 5, 6};
    char p[PATH_MAX + 16];
    snprintf(p, sizeof(p), "%s/ctl", g_f.dir);
    ctl_store *store = NULL;
    VMENC_GUARD(ctl_local_new(p, mac_key, sizeof(mac_key), true, &store));
    vm_host_set_control(g_f.host, store);
    return VMENC_OK;
}

static vmenc_vm *reopen(const char *name) {
    OK(vmfix_new_keymgr(&g_f));
    OK(vmfix_new_host(&g_f, "esx01"));
    OK(control_on());
    char vmx[PATH_MAX + 64];
    vmenc_vm *vm = NULL;
    OK(vmenc_vm_open(g_f.host, "alice", vmfix_vmx_path(&g_f, name, vmx, sizeof(vmx)), &vm));
    return vm;
}

static bool extent_contains_model(const char *vm, const char *extent) {
    char p[PATH_MAX + 128];
    snprintf(p, sizeof(p), "%s/%s/%s", g_f.dir, vm, extent);
    size_t len = 0;
    uint8_t *raw = vmfix_read_file(p, &len);
    bool found = raw != NULL && vmfix_contains(raw, len, g_model + 5 * SEG + 100, 64);
    free(raw);
    return found;
}

static uint64_t file_size(const char *vm, const char *file) {
    char p[PATH_MAX + 128];
    snprintf(p, sizeof(p), "%s/%s/%s", g_f.dir, vm, file);
    struct stat st;
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static int count_state_files(const char *vm) {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof(p), "%s/%s", g_f.dir, vm);
    DIR *d = opendir(p);
    int n = 0;
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL)
        n += strlen(de->d_name) > 4 && strcmp(de->d_name + strlen(de->d_name) - 4, ".cvt") == 0;
    if (d != NULL)
        closedir(d);
    return n;
}

/* make_vm: an encrypted VM home with one plain disk full of known data. */
static vmenc_vm *make_vm(const char *name, char id[VMENC_DISK_ID_MAX + 1]) {
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", name, "home-only", &vm));
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    fill(d);
    OK(vmenc_disk_close(d));
    return vm;
}

static void test_encrypt_rekey_decrypt_offline(void **state) {
    char id[VMENC_DISK_ID_MAX + 1], ext[64];
    vmenc_vm *vm = make_vm("cv1", id);
    snprintf(ext, sizeof(ext), "cv1_0-flat.vmdk");
    assert_true(extent_contains_model("cv1", ext));
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "bob", id, 0, &d));
    assert_int_equal(vmenc_disk_convert_begin(d, "bob", VMENC_CONVERT_ENCRYPT, &k_opts), VMENC_E_DENIED);
    OK(vmenc_disk_convert_begin(d, "alice", VMENC_CONVERT_ENCRYPT, &k_opts));
    assert_int_equal(vmenc_disk_convert_begin(d, "alice", VMENC_CONVERT_ENCRYPT, &k_opts), VMENC_E_BAD_STATE);
    vmenc_disk_info di = {.struct_size = sizeof(di)};
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    assert_int_equal(di.state, VMENC_DISK_ENCRYPTING);
    assert_int_equal(vmenc_vm_rekey_shallow(vm, "alice", NULL, NULL), VMENC_E_BAD_STATE);
    OK(run_to_end(d));
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    assert_int_equal(di.state, VMENC_DISK_ENCRYPTED);
    verify(d);
    OK(vmenc_disk_close(d));
    assert_false(extent_contains_model("cv1", ext)); /* no plaintext left anywhere in the file */
    assert_int_equal(file_size("cv1", ext), CAP + SEG); /* data one shift up, the old place punched */
    assert_int_equal(count_state_files("cv1"), 0); /* the state file is gone */
    /* deep rekey on a restarted host, then decrypt */
    vmenc_vm_free(vm);
    vm = reopen("cv1");
    vmenc_disk_info before = {.struct_size = sizeof(before)};
    OK(vmenc_vm_get_disk_info(vm, 0, &before));
    OK(vmenc_vm_rekey_deep(vm, "alice", NULL));
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    assert_int_equal(di.state, VMENC_DISK_ENCRYPTED);
    assert_int_equal(file_size("cv1", ext), CAP); /* moved back down, the tail cut */
    vmenc_vm_free(vm);
    vm = reopen("cv1");
    OK(vmenc_disk_open(vm, "bob", id, 0, &d));
    verify(d);
    assert_int_equal(vmenc_disk_convert_begin(d, "bob", VMENC_CONVERT_DECRYPT, &k_opts), VMENC_E_DENIED);
    OK(vmenc_disk_convert_begin(d, "alice", VMENC_CONVERT_DECRYPT, &k_opts));
    OK(run_to_end(d));
    verify(d);
    int enc = 1;
    OK(vmenc_disk_is_encrypted(d, &enc));
    assert_int_equal(enc, 0);
    OK(vmenc_disk_close(d));
    assert_true(extent_contains_model("cv1", ext));
    const char *ev[] = {"disk.convert_end", "success", NULL};
    assert_true(vmfix_count_events(&g_f, ev) >= 3);
    vmenc_vm_free(vm);
}

/* ---- online ------------------------------------------------------------------------ */

typedef struct writer {
    vmenc_disk *d;
    atomic_int *stop;
    uint64_t seed;
    int lane; /* writes only bytes with (sector % 2) == lane, so the model needs no lock */
    int failed;
} writer;

static void *writer_main(void *p) {
    writer *w = p;
    uint8_t buf[8192], back[8192];
    while (!atomic_load(w->stop) && !w->failed) {
        w->seed ^= w->seed << 13, w->seed ^= w->seed >> 7, w->seed ^= w->seed << 17;
        uint64_t sector = (w->seed % (CAP / 512)) & ~(uint64_t)1;
        sector += (uint64_t)w->lane;
        size_t in = (size_t)(w->seed >> 20) % 512, len = 1 + (size_t)(w->seed >> 30) % (512 - in);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)(w->seed >> (i % 56));
        uint64_t off = sector * 512 + in;
        if (vmenc_disk_pwrite(w->d, off, buf, len) != VMENC_OK ||
            vmenc_disk_pread(w->d, off, len, back) != VMENC_OK || memcmp(back, buf, len) != 0) {
            w->failed = 1;
            break;
        }
        memcpy(g_model + off, buf, len);
    }
    return NULL;
}

static void online(vmenc_disk *d, vmenc_convert_kind kind) {
    atomic_int stop = 0;
    writer w[2] = {{.d = d, .stop = &stop, .seed = rnd() | 1, .lane = 0},
                   {.d = d, .stop = &stop, .seed = rnd() | 1, .lane = 1}};
    pthread_t t[2];
    OK(vmenc_disk_convert_begin(d, "alice", kind, &k_opts));
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
    vmenc_status s = run_to_end(d);
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    OK(s);
    assert_int_equal(w[0].failed + w[1].failed, 0);
    verify(d);
}

static void test_online_conversions(void **state) {
    char id[VMENC_DISK_ID_MAX + 1];
    vmenc_vm *vm = make_vm("cv2", id);
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    online(d, VMENC_CONVERT_ENCRYPT);
    online(d, VMENC_CONVERT_REKEY);
    online(d, VMENC_CONVERT_DECRYPT);
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);
    vm = reopen("cv2");
    OK(vmenc_disk_open(vm, "alice", id, VMENC_DISK_OPEN_READONLY, &d));
    verify(d);
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);
}

static void test_resume_after_close(void **state) {
    char id[VMENC_DISK_ID_MAX + 1];
    vmenc_vm *vm = make_vm("cv3", id);
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    OK(vmenc_disk_convert_begin(d, "alice", VMENC_CONVERT_ENCRYPT, &k_opts));
    vmenc_convert_progress p = {.struct_size = sizeof(p)};
    OK(vmenc_disk_convert_step(d, 1, &p)); /* one segment */
    OK(vmenc_disk_convert_step(d, 1, &p));
    assert_int_equal(p.segments_done, 2);
    assert_int_equal(p.done, 0);
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);
    /* a restarted host: the disk opens where it stopped, reads right */
    vm = reopen("cv3");
    vmenc_disk_info di = {.struct_size = sizeof(di)};
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    assert_int_equal(di.state, VMENC_DISK_ENCRYPTING);
    OK(vmenc_disk_open(vm, "alice", id, VMENC_DISK_OPEN_READONLY, &d));
    verify(d);
    assert_int_equal(vmenc_disk_convert_step(d, SEG, &p), VMENC_E_BAD_STATE); /* read-only */
    OK(vmenc_disk_close(d));
    /* bob may run the VM (and so open the half-converted disk) but may not
     * move its data on: that is encrypting it */
    assert_int_equal(vmenc_vm_resume(vm, "bob", NULL), VMENC_E_DENIED);
    const char *denied[] = {"disk.convert_step", "\"bob\"", "denied", NULL};
    assert_true(vmfix_count_events(&g_f, denied) >= 1);
    /* the VM-level call finishes it */
    OK(vmenc_vm_resume(vm, "alice", NULL));
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    assert_int_equal(di.state, VMENC_DISK_ENCRYPTED);
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    verify(d);
    OK(vmenc_disk_close(d));
    const char *ev[] = {"disk.open_convert_resume", NULL};
    assert_true(vmfix_count_events(&g_f, ev) >= 1);
    vmenc_vm_free(vm);
}

/* ---- the fault layer ------------------------------------------------------------------ */

typedef struct undo {
    int fd;
    uint64_t off;
    size_t len;
    uint8_t *old; /* the bytes before the write */
} undo;

static struct {
    undo *log;
    size_t n, cap;
    uint64_t writes, cut_at; /* power cut at this write (0 = never) */
    uint64_t fail_at;        /* return |fail_with| at this write */
    vmenc_status fail_with;
    bool dead;
} g_fl;

static void undo_clear(int fd) {
    size_t k = 0;
    for (size_t i = 0; i < g_fl.n; i++) {
        if (g_fl.log[i].fd == fd) {
            free(g_fl.log[i].old);
            continue;
        }
        g_fl.log[k++] = g_fl.log[i];
    }
    g_fl.n = k;
}

static void raw_pwrite(int fd, const uint8_t *buf, size_t len, uint64_t off) {
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n <= 0)
            return;
        buf += n, len -= (size_t)n, off += (uint64_t)n;
    }
}

/* power_cut: every write since its file's last sync is kept, undone, or
 * torn at a random byte (newest first, so older contents come back). */
static void power_cut(void) {
    for (size_t i = g_fl.n; i-- > 0;) {
        undo *u = &g_fl.log[i];
        switch (rnd() % 3) {
        case 0: break; /* reached the disk */
        case 1: raw_pwrite(u->fd, u->old, u->len, u->off); break;
        default: {
            size_t cut = (size_t)(rnd() % u->len);
            raw_pwrite(u->fd, u->old + cut, u->len - cut, u->off + cut);
        }
        }
    }
    for (size_t i = 0; i < g_fl.n; i++)
        free(g_fl.log[i].old);
    g_fl.n = 0;
    g_fl.dead = true;
}

static vmenc_status fl_pwrite(int fd, const uint8_t *buf, size_t len, uint64_t off) {
    if (g_fl.dead)
        return VMENC_E_IO;
    g_fl.writes++;
    if (g_fl.fail_at != 0 && g_fl.writes == g_fl.fail_at)
        return g_fl.fail_with;
    if (g_fl.cut_at != 0 && g_fl.writes == g_fl.cut_at) {
        raw_pwrite(fd, buf, (size_t)(rnd() % (len + 1)), off); /* the write in flight tears */
        power_cut();
        return VMENC_E_IO;
    }
    if (g_fl.n == g_fl.cap) {
        g_fl.cap = g_fl.cap ? 2 * g_fl.cap : 64;
        g_fl.log = realloc(g_fl.log, g_fl.cap * sizeof(*g_fl.log));
    }
    undo *u = &g_fl.log[g_fl.n++];
    u->fd = fd, u->off = off, u->len = len, u->old = malloc(len);
    ssize_t got = pread(fd, u->old, len, (off_t)off);
    if (got < (ssize_t)len)
        memset(u->old + (got > 0 ? got : 0), 0, len - (size_t)(got > 0 ? got : 0));
    raw_pwrite(fd, buf, len, off);
    return VMENC_OK;
}

static vmenc_status fl_sync(int fd) {
    if (g_fl.dead)
        return VMENC_E_IO;
    undo_clear(fd);
    return fdatasync(fd) == 0 ? VMENC_OK : VMENC_E_IO;
}

static const vm_io_hooks k_fault_hooks = {.pwrite = fl_pwrite, .sync = fl_sync};

static void faults_on(uint64_t cut_at, uint64_t fail_at, vmenc_status fail_with) {
    memset(&g_fl, 0, sizeof(g_fl));
    g_fl.cut_at = cut_at, g_fl.fail_at = fail_at, g_fl.fail_with = fail_with;
    vm_io_hook = &k_fault_hooks;
}

static void faults_off(void) {
    vm_io_hook = NULL;
    for (size_t i = 0; i < g_fl.n; i++)
        free(g_fl.log[i].old);
    free(g_fl.log);
    memset(&g_fl, 0, sizeof(g_fl));
}

static void test_enospc_and_eio_resume(void **state) {
    char id[VMENC_DISK_ID_MAX + 1];
    vmenc_vm *vm = make_vm("cv4", id);
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    OK(vmenc_disk_convert_begin(d, "alice", VMENC_CONVERT_ENCRYPT, &k_opts));
    vmenc_status kinds[2] = {VMENC_E_NO_SPACE, VMENC_E_IO};
    for (int k = 0; k < 2; k++) {
        faults_on(0, 3 + (uint64_t)k, kinds[k]);
        vmenc_status s = run_to_end(d);
        faults_off();
        assert_int_equal(s, kinds[k]); /* stopped with a clear status */
        verify(d);                      /* nothing lost, still readable */
    }
    OK(run_to_end(d)); /* and it goes on */
    verify(d);
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);
}

/* power_cuts: convert with a power cut at a random write, reopen on a
 * "rebooted" host, finish, check every byte; repeat across the kinds. */
static void test_power_cuts(void **state) {
    const char *env = getenv("VMENC_POWER_CUTS");
    int runs = env != NULL ? atoi(env) : 24;
    char id[VMENC_DISK_ID_MAX + 1];
    vmenc_vm *vm = make_vm("cv5", id);
    vmenc_convert_kind seq[3] = {VMENC_CONVERT_ENCRYPT, VMENC_CONVERT_REKEY, VMENC_CONVERT_DECRYPT};
    int cuts = 0;
    for (int r = 0; r < runs; r++) {
        vmenc_convert_kind kind = seq[r % 3];
        vmenc_disk *d = NULL;
        OK(vmenc_disk_open(vm, "alice", id, 0, &d));
        OK(vmenc_disk_convert_begin(d, "alice", kind, &k_opts));
        /* 7 segments: each a data write and a slot write */
        faults_on(1 + rnd() % 15, 0, VMENC_OK);
        vmenc_status s = run_to_end(d);
        cuts += g_fl.dead;
        faults_off();
        vmenc_status cs = vmenc_disk_close(d); /* after the "crash": any status */
        (void)cs;
        (void)s;
        vmenc_vm_free(vm);
        vm = reopen("cv5");
        OK(vmenc_vm_resume(vm, "alice", NULL));
        OK(vmenc_disk_open(vm, "alice", id, 0, &d));
        verify(d);
        OK(vmenc_disk_close(d));
    }
    fprintf(stderr, "%d power cuts during conversions: no sector lost or wrong\n", cuts);
    assert_true(cuts > runs / 2);
    vmenc_vm_free(vm);
}

static char *vmx_key_safe(const char *vm) {
    char p[PATH_MAX + 64];
    size_t len = 0;
    char *t = (char *)vmfix_read_file(vmfix_vmx_path(&g_f, vm, p, sizeof(p)), &len);
    char *k = t != NULL ? strstr(t, "encryption.keySafe = \"") : NULL;
    char *out = k != NULL ? strndup(k, 200) : NULL;
    free(t);
    return out;
}

static void write_state_file(vmenc_vm *vm, vmenc_vm_file_class cls, uint32_t index, const uint8_t *data,
                             size_t len) {
    vmenc_vm_file *f = NULL;
    OK(vmenc_vm_file_open(vm, "alice", cls, index, VMENC_VM_FILE_CREATE | VMENC_VM_FILE_TRUNCATE, &f));
    OK(vmenc_vm_file_pwrite(f, 0, data, len));
    OK(vmenc_vm_file_close(f));
}

static void check_state_file(vmenc_vm *vm, vmenc_vm_file_class cls, uint32_t index, const uint8_t *data,
                             size_t len) {
    vmenc_vm_file *f = NULL;
    uint8_t *back = malloc(len);
    size_t got = 0;
    OK(vmenc_vm_file_open(vm, "bob", cls, index, VMENC_VM_FILE_READONLY, &f));
    OK(vmenc_vm_file_pread(f, 0, len, back, &got));
    assert_int_equal(got, len);
    assert_memory_equal(back, data, len);
    OK(vmenc_vm_file_close(f));
    free(back);
}

/* A deep rekey renews the VM home's key too: NVRAM and snapshot files are
 * re-sealed, the sealed configuration re-sealed; interrupted half way (a
 * write fails during the second file), the VM still opens and reads every
 * file, and resuming finishes it. */
static void test_deep_rekey_of_the_home(void **state) {
    char id[VMENC_DISK_ID_MAX + 1];
    vmenc_vm *vm = make_vm("cv8", id);
    uint8_t nv[5000], sn[200000];
    for (size_t i = 0; i < sizeof(nv); i++)
        nv[i] = (uint8_t)(i * 3);
    for (size_t i = 0; i < sizeof(sn); i++)
        sn[i] = (uint8_t)(i * 7 + 1);
    write_state_file(vm, VMENC_VM_FILE_NVRAM, 0, nv, sizeof(nv));
    write_state_file(vm, VMENC_VM_FILE_VMSN, 1, sn, sizeof(sn));
    OK(vmenc_vm_config_set(vm, "alice", "guestinfo.secret", "kept across the rekey", VMENC_VM_CONFIG_SECRET));
    char *before = vmx_key_safe("cv8");
    assert_int_equal(vmenc_vm_rekey_deep(vm, "bob", NULL), VMENC_E_DENIED);
    /* interrupted: the 3rd data write of the run fails (inside the second file's conversion) */
    faults_on(0, 3, VMENC_E_IO);
    vmenc_status s = vmenc_vm_rekey_deep(vm, "alice", NULL);
    faults_off();
    assert_int_equal(s, VMENC_E_IO);
    vmenc_vm_free(vm);
    vm = reopen("cv8");
    check_state_file(vm, VMENC_VM_FILE_NVRAM, 0, nv, sizeof(nv)); /* one key or the other, authenticated */
    check_state_file(vm, VMENC_VM_FILE_VMSN, 1, sn, sizeof(sn));
    assert_int_equal(vmenc_vm_rekey_shallow(vm, "alice", NULL, NULL), VMENC_E_BAD_STATE);
    OK(vmenc_vm_resume(vm, "alice", NULL));
    char *after = vmx_key_safe("cv8");
    assert_non_null(before);
    assert_non_null(after);
    assert_string_not_equal(before, after); /* a new VM key */
    vmenc_vm_free(vm);
    vm = reopen("cv8");
    check_state_file(vm, VMENC_VM_FILE_NVRAM, 0, nv, sizeof(nv));
    check_state_file(vm, VMENC_VM_FILE_VMSN, 1, sn, sizeof(sn));
    char buf[64];
    OK(vmenc_vm_config_get(vm, "alice", "guestinfo.secret", buf, sizeof(buf), NULL));
    assert_string_equal(buf, "kept across the rekey");
    OK(vmenc_vm_rekey_shallow(vm, "alice", NULL, NULL)); /* no longer refused */
    free(before);
    free(after);
    vmenc_vm_free(vm);
}

static int stop_after_two(void *ctx, const char *disk_id, const vmenc_convert_progress *p) {
    (void)disk_id;
    int *calls = ctx;
    return ++*calls >= 2 && !p->done;
}

/* A storage policy stopped half way (the progress callback says stop): the
 * configuration records which policy was being applied, and resume finishes
 * the disk's conversion and then the rest of the policy. */
static void test_resume_finishes_the_policy(void **state) {
    char id[VMENC_DISK_ID_MAX + 1];
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", "cv9", NULL, &vm));
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    fill(d);
    OK(vmenc_disk_close(d));
    int calls = 0;
    vmenc_apply_options o = {.struct_size = sizeof(o), .progress = stop_after_two, .progress_ctx = &calls,
                             .segment_bytes = SEG};
    assert_int_equal(vmenc_vm_apply_storage_policy_ex(vm, "alice", "encrypted", &o), VMENC_E_INTERRUPTED);
    vmenc_vm_free(vm);
    vm = reopen("cv9");
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    OK(vmenc_vm_get_info(vm, &info));
    assert_string_equal(info.storage_policy, ""); /* not applied yet */
    vmenc_disk_info di = {.struct_size = sizeof(di)};
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    assert_int_equal(di.state, VMENC_DISK_ENCRYPTING);
    assert_int_equal(vmenc_vm_resume(vm, "bob", NULL), VMENC_E_DENIED);
    OK(vmenc_vm_resume(vm, "alice", NULL));
    OK(vmenc_vm_get_info(vm, &info));
    assert_string_equal(info.storage_policy, "encrypted");
    assert_int_equal(info.encrypted, 1);
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    assert_int_equal(di.state, VMENC_DISK_ENCRYPTED);
    OK(vmenc_disk_open(vm, "bob", id, VMENC_DISK_OPEN_READONLY, &d));
    verify(d);
    OK(vmenc_disk_close(d));
    char p[PATH_MAX + 64];
    size_t len = 0;
    char *t = (char *)vmfix_read_file(vmfix_vmx_path(&g_f, "cv9", p, sizeof(p)), &len);
    assert_null(strstr(t, "applyingPolicy")); /* cleared once done */
    free(t);
    OK(vmenc_vm_resume(vm, "alice", NULL)); /* nothing left: a no-op */
    vmenc_vm_free(vm);
}

/* rollback: each kind turned around half way (once after a reopen), then
 * a rollback interrupted by a power cut; the disk ends as it began. */
static void test_rollback(void **state) {
    char id[VMENC_DISK_ID_MAX + 1];
    vmenc_vm *vm = make_vm("cv7", id);
    vmenc_convert_kind kinds[3] = {VMENC_CONVERT_ENCRYPT, VMENC_CONVERT_REKEY, VMENC_CONVERT_DECRYPT};
    vmenc_disk_state ends[3] = {VMENC_DISK_PLAIN, VMENC_DISK_ENCRYPTED, VMENC_DISK_ENCRYPTED};
    for (int k = 0; k < 3; k++) {
        vmenc_disk *d = NULL;
        OK(vmenc_disk_open(vm, "alice", id, 0, &d));
        vmenc_disk_info before = {.struct_size = sizeof(before)}, after = {.struct_size = sizeof(after)};
        OK(vmenc_vm_get_disk_info(vm, 0, &before));
        OK(vmenc_disk_convert_begin(d, "alice", kinds[k], &k_opts));
        vmenc_convert_progress p = {.struct_size = sizeof(p)};
        for (int i = 0; i < 3; i++)
            OK(vmenc_disk_convert_step(d, 1, &p));
        if (k == 1) { /* across a reopen */
            OK(vmenc_disk_close(d));
            vmenc_vm_free(vm);
            vm = reopen("cv7");
            OK(vmenc_disk_open(vm, "alice", id, 0, &d));
        }
        assert_int_equal(vmenc_disk_convert_rollback(d, "bob"), VMENC_E_DENIED);
        OK(vmenc_disk_convert_rollback(d, "alice"));
        verify(d);
        if (k == 2) { /* a power cut during the rollback itself */
            faults_on(2, 0, VMENC_OK);
            vmenc_status s = run_to_end(d);
            (void)s;
            faults_off();
            vmenc_status cs = vmenc_disk_close(d);
            (void)cs;
            vmenc_vm_free(vm);
            vm = reopen("cv7");
            OK(vmenc_vm_resume(vm, "alice", NULL));
            OK(vmenc_disk_open(vm, "alice", id, 0, &d));
        } else {
            OK(run_to_end(d));
        }
        verify(d);
        OK(vmenc_vm_get_disk_info(vm, 0, &after));
        assert_int_equal(after.state, ends[k]);
        if (k == 1)
            assert_string_equal(after.kek_id, before.kek_id); /* the old DEK's record is back */
        OK(vmenc_disk_close(d));
        if (k == 0) { /* encrypt it for real for the next rounds */
            OK(vmenc_disk_open(vm, "alice", id, 0, &d));
            OK(vmenc_disk_convert_begin(d, "alice", VMENC_CONVERT_ENCRYPT, &k_opts));
            OK(run_to_end(d));
            OK(vmenc_disk_close(d));
        }
    }
    const char *ev[] = {"disk.convert_rollback", "success", NULL};
    assert_true(vmfix_count_events(&g_f, ev) >= 3);
    vmenc_vm_free(vm);
}

/* ---- the kill campaign ----------------------------------------------------------------- */

#define LOG_MAX 200000

typedef struct wlog_entry {
    uint64_t off;
    uint32_t len;
    uint32_t done; /* 0 = in flight, 1 = completed */
    uint64_t seed;
} wlog_entry;

typedef struct wlog {
    atomic_uint_fast64_t n;
    wlog_entry e[LOG_MAX];
} wlog;

static void data_for(uint64_t seed, uint8_t *buf, size_t len) {
    for (size_t i = 0; i < len; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        buf[i] = (uint8_t)seed;
    }
}

typedef struct child_writer {
    vmenc_disk *d;
    wlog *log;
    uint64_t seed;
} child_writer;

static void *child_writer_main(void *p) {
    child_writer *w = p;
    uint8_t buf[65536];
    for (;;) {
        w->seed ^= w->seed << 13, w->seed ^= w->seed >> 7, w->seed ^= w->seed << 17;
        size_t len = 1 + (size_t)(w->seed >> 40) % (w->seed % 4 == 0 ? 65536 : 3000);
        uint64_t off = (w->seed >> 8) % (CAP - len);
        uint64_t n = atomic_load(&w->log->n);
        if (n >= LOG_MAX)
            break;
        wlog_entry *e = &w->log->e[n];
        e->off = off, e->len = (uint32_t)len, e->seed = w->seed, e->done = 0;
        atomic_store(&w->log->n, n + 1); /* intent recorded before the write */
        data_for(w->seed, buf, len);
        if (vmenc_disk_pwrite(w->d, off, buf, len) != VMENC_OK)
            _exit(3);
        __atomic_store_n(&e->done, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

/* child: open, resume or begin |kind|, convert; optionally write. */
static void child(const char *name, const char *id, vmenc_convert_kind kind, wlog *log) {
    if (vmfix_new_keymgr(&g_f) != VMENC_OK || vmfix_new_host(&g_f, "esx01") != VMENC_OK)
        _exit(2);
    char vmx[PATH_MAX + 64];
    vmenc_vm *vm = NULL;
    vmenc_disk *d = NULL;
    if (vmenc_vm_open(g_f.host, "alice", vmfix_vmx_path(&g_f, name, vmx, sizeof(vmx)), &vm) != VMENC_OK ||
        vmenc_disk_open(vm, "alice", id, 0, &d) != VMENC_OK)
        _exit(2);
    vmenc_convert_progress p = {.struct_size = sizeof(p)};
    if (vmenc_disk_convert_get_progress(d, &p) != VMENC_OK)
        _exit(2);
    if (p.done && vmenc_disk_convert_begin(d, "alice", kind, &k_opts) != VMENC_OK)
        _exit(2);
    pthread_t t;
    child_writer w = {.d = d, .log = log, .seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull | 1};
    if (log != NULL)
        pthread_create(&t, NULL, child_writer_main, &w);
    for (;;) {
        if (vmenc_disk_convert_step(d, SEG, &p) != VMENC_OK)
            _exit(4);
        if (p.done) { /* finished before the kill: start the next kind */
            kind = kind == VMENC_CONVERT_DECRYPT ? VMENC_CONVERT_ENCRYPT
                   : kind == VMENC_CONVERT_ENCRYPT ? VMENC_CONVERT_REKEY
                                                   : VMENC_CONVERT_DECRYPT;
            if (vmenc_disk_convert_begin(d, "alice", kind, &k_opts) != VMENC_OK)
                _exit(5);
        }
    }
}

/* apply_log folds the child's writes into the model; the writes still in
 * flight at the kill are returned (their sectors may hold old or new). */
static size_t apply_log(const wlog *log, wlog_entry *inflight, size_t cap) {
    size_t k = 0;
    uint8_t *buf = malloc(65536);
    uint64_t n = atomic_load(&log->n);
    for (uint64_t i = 0; i < n; i++) {
        const wlog_entry *e = &log->e[i];
        if (!e->done) {
            if (k < cap)
                inflight[k++] = *e;
            continue;
        }
        data_for(e->seed, buf, e->len);
        memcpy(g_model + e->off, buf, e->len);
    }
    free(buf);
    return k;
}

static void verify_with_inflight(vmenc_disk *d, const wlog_entry *inflight, size_t k) {
    uint8_t *all = malloc(CAP), *buf = malloc(65536);
    OK(vmenc_disk_pread(d, 0, CAP, all));
    for (uint64_t s = 0; s < CAP / 512; s++) {
        uint8_t *got = all + s * 512;
        if (memcmp(got, g_model + s * 512, 512) == 0)
            continue;
        /* a sector touched by a write in flight may hold its new bytes */
        bool ok = false;
        for (size_t j = 0; j < k && !ok; j++) {
            const wlog_entry *e = &inflight[j];
            if (e->off >= (s + 1) * 512 || e->off + e->len <= s * 512)
                continue;
            uint8_t want[512];
            memcpy(want, g_model + s * 512, 512);
            data_for(e->seed, buf, e->len);
            uint64_t lo = e->off > s * 512 ? e->off : s * 512;
            uint64_t hi = e->off + e->len < (s + 1) * 512 ? e->off + e->len : (s + 1) * 512;
            memcpy(want + (lo - s * 512), buf + (lo - e->off), hi - lo);
            ok = memcmp(got, want, 512) == 0;
        }
        if (!ok)
            fail_msg("sector %llu lost or wrong after a kill", (unsigned long long)s);
    }
    /* from now on the model is what the disk holds */
    memcpy(g_model, all, CAP);
    free(all);
    free(buf);
}

static void test_kill_campaign(void **state) {
    const char *env = getenv("VMENC_KILL_RUNS");
    int runs = env != NULL ? atoi(env) : 12;
    char id[VMENC_DISK_ID_MAX + 1];
    vmenc_vm *vm = make_vm("cv6", id);
    vmenc_vm_free(vm);
    wlog *log = mmap(NULL, sizeof(wlog), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(log != MAP_FAILED);
    vmenc_convert_kind kind = VMENC_CONVERT_ENCRYPT;
    int killed_mid = 0;
    for (int r = 0; r < runs; r++) {
        bool writes = r % 2 == 1;
        atomic_store(&log->n, 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            child("cv6", id, kind, writes ? log : NULL);
        usleep((useconds_t)(2000 + rnd() % 60000));
        kill(pid, SIGKILL);
        int st = 0;
        waitpid(pid, &st, 0);
        assert_true(WIFSIGNALED(st)); /* the child was killed, it did not fail */
        wlog_entry inflight[4];
        size_t k = apply_log(log, inflight, 4);
        vm = reopen("cv6");
        vmenc_disk *d = NULL;
        OK(vmenc_disk_open(vm, "alice", id, 0, &d));
        vmenc_convert_progress p = {.struct_size = sizeof(p)};
        OK(vmenc_disk_convert_get_progress(d, &p));
        killed_mid += !p.done;
        verify_with_inflight(d, inflight, k);
        if (!p.done && r % 3 == 2)
            OK(vmenc_disk_convert_rollback(d, "alice")); /* sometimes turn it around instead */
        if (!p.done)
            OK(run_to_end(d));
        verify(d);
        vmenc_disk_info di = {.struct_size = sizeof(di)};
        OK(vmenc_disk_close(d));
        OK(vmenc_vm_get_disk_info(vm, 0, &di));
        kind = di.state == VMENC_DISK_PLAIN ? VMENC_CONVERT_ENCRYPT
               : r % 2 ? VMENC_CONVERT_REKEY
                       : VMENC_CONVERT_DECRYPT;
        vmenc_vm_free(vm);
    }
    fprintf(stderr, "%d kills (%d during a conversion): no sector lost or wrong\n", runs, killed_mid);
    munmap(log, sizeof(wlog));
}

/* ---- the VM-level kill campaign ---------------------------------------------------------- */

#define NV_LEN 70000u
#define SS_LEN 140000u

static void sf_model(unsigned which, uint8_t *buf, size_t len) {
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((i * 31u + which * 7u + (i >> 8)) ^ 0x5au);
}

/* set by a VM-level child once its VM is open, so the kill lands in the
 * operation and not in the child's start-up */
static atomic_int *g_ready;

/* vm_child runs VM-level operations on |name| until it is killed: apply
 * "encrypted" to a plain VM, then "plain" or a deep rekey of an encrypted
 * one, in turn. A resume comes first (a run the last kill cut short). */
static void vm_child(const char *name, unsigned seed) {
    if (vmfix_new_keymgr(&g_f) != VMENC_OK || vmfix_new_host(&g_f, "esx01") != VMENC_OK || control_on() != VMENC_OK)
        _exit(2);
    char vmx[PATH_MAX + 64];
    vmenc_vm *vm = NULL;
    if (vmenc_vm_open(g_f.host, "alice", vmfix_vmx_path(&g_f, name, vmx, sizeof(vmx)), &vm) != VMENC_OK)
        _exit(2);
    vmenc_apply_options o = {.struct_size = sizeof(o), .segment_bytes = SEG};
    atomic_store(g_ready, 1);
    uint8_t *nv = malloc(NV_LEN);
    if (nv == NULL)
        _exit(2);
    sf_model(0, nv, NV_LEN);
    for (unsigned i = seed;; i++) {
        vmenc_vm_info info = {.struct_size = sizeof(info)};
        if (vmenc_vm_get_info(vm, &info) != VMENC_OK)
            _exit(3);
        /* a write session on the NVRAM (its ID renewed: temporary,
         * rename, record) rewriting bytes it holds: kills land there too */
        vmenc_vm_file *f = NULL;
        if (vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, 0, &f) == VMENC_OK) {
            if (vmenc_vm_file_pwrite(f, 30000, nv + 30000, 8000) != VMENC_OK)
                _exit(5);
            if (vmenc_vm_file_close(f) != VMENC_OK)
                _exit(5);
        }
        vmenc_status s = !info.encrypted ? vmenc_vm_apply_storage_policy_ex(vm, "alice", "encrypted", &o)
                         : i % 2           ? vmenc_vm_rekey_deep(vm, "alice", &o)
                                           : vmenc_vm_apply_storage_policy_ex(vm, "alice", "plain", &o);
        if (s != VMENC_OK)
            _exit(4);
    }
}

/* rollback_child turns the interrupted conversion of disk |id| round,
 * runs it to the end and settles the VM, then waits to be killed. */
static void rollback_child(const char *name, const char *id) {
    if (vmfix_new_keymgr(&g_f) != VMENC_OK || vmfix_new_host(&g_f, "esx01") != VMENC_OK || control_on() != VMENC_OK)
        _exit(2);
    char vmx[PATH_MAX + 64];
    vmenc_vm *vm = NULL;
    vmenc_disk *d = NULL;
    if (vmenc_vm_open(g_f.host, "alice", vmfix_vmx_path(&g_f, name, vmx, sizeof(vmx)), &vm) != VMENC_OK ||
        vmenc_disk_open(vm, "alice", id, 0, &d) != VMENC_OK || (atomic_store(g_ready, 1), false) ||
        vmenc_disk_convert_rollback(d, "alice") != VMENC_OK ||
        run_to_end(d) != VMENC_OK || vmenc_disk_close(d) != VMENC_OK || vmenc_vm_resume(vm, "alice", NULL) != VMENC_OK)
        _exit(4);
    for (;;)
        pause();
}

typedef struct vm_campaign {
    int kills, interrupted, second_resumes, wrong_bytes, plaintext, debris, wrong_direction, rollbacks;
} vm_campaign;

static int stop_after_n(void *ctx, const char *disk_id, const vmenc_convert_progress *p) {
    (void)disk_id;
    int *left = ctx;
    return --*left <= 0 && !p->done;
}

/* vm_check: after the one resume, every byte right, the VM's flag and its
 * files agreeing, no plaintext in an encrypted VM, no debris. */
static void vm_check(vmenc_vm *vm, const char *name, const char *id, vm_campaign *c) {
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    OK(vmenc_vm_get_info(vm, &info));
    vmenc_disk_info di = {.struct_size = sizeof(di)};
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    if (di.state != (info.encrypted ? VMENC_DISK_ENCRYPTED : VMENC_DISK_PLAIN)) {
        fprintf(stderr, "VM flag %d, disk state %d\n", info.encrypted, di.state);
        c->wrong_bytes++;
    }
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "bob", id, VMENC_DISK_OPEN_READONLY, &d));
    uint8_t *all = malloc(CAP);
    OK(vmenc_disk_pread(d, 0, CAP, all));
    c->wrong_bytes += memcmp(all, g_model, CAP) != 0;
    free(all);
    OK(vmenc_disk_close(d));
    uint8_t *want = malloc(SS_LEN), *got = malloc(SS_LEN);
    const vmenc_vm_file_class cls[2] = {VMENC_VM_FILE_NVRAM, VMENC_VM_FILE_VMSS};
    const size_t lens[2] = {NV_LEN, SS_LEN};
    for (int i = 0; i < 2; i++) {
        vmenc_vm_file *f = NULL;
        size_t n = 0;
        sf_model((unsigned)i, want, lens[i]);
        vmenc_status s = vmenc_vm_file_open(vm, "alice", cls[i], 0, VMENC_VM_FILE_READONLY, &f);
        if (s == VMENC_OK)
            s = vmenc_vm_file_pread(f, 0, lens[i], got, &n);
        if (f != NULL)
            OK(vmenc_vm_file_close(f));
        if (s != VMENC_OK || n != lens[i] || memcmp(got, want, lens[i]) != 0) {
            fprintf(stderr, "state file %d: %s\n", i, vmenc_strerror(s));
            c->wrong_bytes++;
        }
    }
    char home[PATH_MAX + 64];
    snprintf(home, sizeof(home), "%s/%s", g_f.dir, name);
    DIR *dir = opendir(home);
    struct dirent *de;
    uint8_t nv_needle[64];
    sf_model(0, want, NV_LEN);
    memcpy(nv_needle, want + 1000, 64);
    while (dir != NULL && (de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        c->debris += strstr(de->d_name, ".tmp-") != NULL || strstr(de->d_name, ".cvt") != NULL;
        if (!info.encrypted)
            continue;
        char p[2 * PATH_MAX];
        snprintf(p, sizeof(p), "%s/%s", home, de->d_name);
        size_t len = 0;
        uint8_t *raw = vmfix_read_file(p, &len);
        if (raw != NULL && (vmfix_contains(raw, len, g_model + 5 * SEG + 100, 64) ||
                            vmfix_contains(raw, len, nv_needle, 64))) {
            fprintf(stderr, "plaintext in %s\n", de->d_name);
            c->plaintext++;
        }
        free(raw);
    }
    if (dir != NULL)
        closedir(dir);
    if (g_with_control) { /* the control store's own temporaries (swept when a host opens it) */
        snprintf(home, sizeof(home), "%s/ctl/vms", g_f.dir);
        dir = opendir(home);
        while (dir != NULL && (de = readdir(dir)) != NULL)
            if (strstr(de->d_name, ".tmp-") != NULL) {
                fprintf(stderr, "control store debris %s\n", de->d_name);
                c->debris++;
            }
        if (dir != NULL)
            closedir(dir);
    }
    free(want);
    free(got);
}

static vmenc_vm *resume_once(const char *name, vm_campaign *c) {
    vmenc_vm *vm = reopen(name);
    if (vmenc_vm_resume(vm, "alice", NULL) != VMENC_OK) {
        c->second_resumes++;
        OK(vmenc_vm_resume(vm, "alice", NULL));
    }
    return vm;
}

/* test_vm_kill_campaign: SIGKILLs at random instants of VM-level
 * operations on a VM with a disk and NVRAM + suspend state (encrypt,
 * decrypt, deep rekey of disks and home), and of rollbacks of an
 * interrupted policy application that are then retried. After each kill,
 * one vm resume (a retried rollback first, for those) must leave every
 * byte right, no plaintext in an encrypted VM's files, no debris, and a
 * rolled-back VM exactly as it was before the policy. VMENC_VM_KILL_RUNS
 * (default 6); scripts/kill-test.sh runs the long campaign. */
static void test_vm_kill_campaign(void **state) {
    const char *env = getenv("VMENC_VM_KILL_RUNS");
    int runs = env != NULL ? atoi(env) : 6;
    char id[VMENC_DISK_ID_MAX + 1];
    vmenc_vm *vm = NULL;
    /* With the host's control store (the authority records), as every
     * workspace's host has one: the suite's short run and the long campaign
     * (scripts/kill-test.sh) alike; VMENC_VM_KILL_CONTROL=0 runs without.
     * (The rollback of a decryption killed between the sealed configuration
     * and its descriptor's announcement used to wedge the VM about 1 run in
     * 240: VMENC_TEST_SEED=0x243f6a8885a308d3 with 300 runs; the crash
     * sweep's rollback-decrypt case now covers every step of it.) */
    const char *ctl = getenv("VMENC_VM_KILL_CONTROL");
    g_with_control = ctl == NULL || strcmp(ctl, "0") != 0;
    OK(vmfix_new_keymgr(&g_f));
    OK(vmfix_new_host(&g_f, "esx01"));
    OK(control_on());
    OK(vmfix_create(&g_f, "alice", "cv10", NULL, &vm));
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    fill(d);
    OK(vmenc_disk_close(d));
    uint8_t *buf = malloc(SS_LEN);
    sf_model(0, buf, NV_LEN);
    write_state_file(vm, VMENC_VM_FILE_NVRAM, 0, buf, NV_LEN);
    sf_model(1, buf, SS_LEN);
    write_state_file(vm, VMENC_VM_FILE_VMSS, 0, buf, SS_LEN);
    free(buf);
    vmenc_vm_free(vm);
    vm_campaign c = {0};
    g_ready = mmap(NULL, sizeof(*g_ready), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(g_ready != MAP_FAILED);
    for (int r = 0; r < runs; r++) {
        bool rollback = r % 3 == 2;
        vmenc_vm_info before = {.struct_size = sizeof(before)};
        vmenc_disk_info dbefore = {.struct_size = sizeof(dbefore)};
        if (rollback) { /* a policy application stopped after 1..3 segments */
            vm = reopen("cv10");
            OK(vmenc_vm_get_info(vm, &before));
            OK(vmenc_vm_get_disk_info(vm, 0, &dbefore));
            int left = 1 + (int)(rnd() % 3);
            vmenc_apply_options o = {.struct_size = sizeof(o), .segment_bytes = SEG, .progress = stop_after_n,
                                     .progress_ctx = &left};
            vmenc_status s = vmenc_vm_apply_storage_policy_ex(vm, "alice", before.encrypted ? "plain" : "encrypted", &o);
            vmenc_vm_free(vm);
            if (s == VMENC_OK) { /* it finished before the callback could stop it: an ordinary run */
                fprintf(stderr, "run %d: the policy finished before it could be stopped (VM %d, disk %d)\n", r,
                        before.encrypted, dbefore.state);
                rollback = false;
            } else {
                assert_int_equal(s, VMENC_E_INTERRUPTED);
                c.rollbacks++;
            }
        }
        atomic_store(g_ready, 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (rollback)
                rollback_child("cv10", id);
            vm_child("cv10", (unsigned)r);
        }
        for (int w = 0; w < 20000 && !atomic_load(g_ready); w++)
            usleep(500);
        usleep((useconds_t)(rnd() % (rollback ? 40000 : 150000)));
        kill(pid, SIGKILL);
        int st = 0;
        waitpid(pid, &st, 0);
        assert_true(WIFSIGNALED(st)); /* killed, not failed */
        c.kills++;
        { /* did the kill cut an operation short? */
            char p[PATH_MAX + 64];
            size_t len = 0;
            char *t = (char *)vmfix_read_file(vmfix_vmx_path(&g_f, "cv10", p, sizeof(p)), &len);
            c.interrupted += t != NULL && (strstr(t, "applyingPolicy") != NULL || strstr(t, "newKeySafe") != NULL ||
                                           count_state_files("cv10") > 0);
            free(t);
        }
        if (rollback) { /* the rollback is retried through the disk API */
            vm = reopen("cv10");
            OK(vmenc_disk_open(vm, "alice", id, 0, &d));
            vmenc_convert_progress p = {.struct_size = sizeof(p)};
            OK(vmenc_disk_convert_get_progress(d, &p));
            if (!p.done) {
                OK(vmenc_disk_convert_rollback(d, "alice"));
                OK(run_to_end(d));
            }
            OK(vmenc_disk_close(d));
            vmenc_vm_free(vm);
        }
        vm = resume_once("cv10", &c);
        vm_check(vm, "cv10", id, &c);
        if (rollback) {
            vmenc_vm_info after = {.struct_size = sizeof(after)};
            vmenc_disk_info dafter = {.struct_size = sizeof(dafter)};
            OK(vmenc_vm_get_info(vm, &after));
            OK(vmenc_vm_get_disk_info(vm, 0, &dafter));
            if (after.encrypted != before.encrypted || dafter.state != dbefore.state) {
                fprintf(stderr, "run %d: rollback went the wrong way (VM %d -> %d, disk %d -> %d)\n", r,
                        before.encrypted, after.encrypted, dbefore.state, dafter.state);
                c.wrong_direction++;
            }
        }
        vmenc_vm_free(vm);
    }
    fprintf(stderr,
            "VM kills: %d (%d cut an operation short, %d of rollbacks then retried): %d wrong, %d plaintext, "
            "%d debris, %d wrong direction, %d second resumes needed\n",
            c.kills, c.interrupted, c.rollbacks, c.wrong_bytes, c.plaintext, c.debris, c.wrong_direction, c.second_resumes);
    munmap(g_ready, sizeof(*g_ready));
    assert_int_equal(c.wrong_bytes + c.plaintext + c.debris + c.wrong_direction + c.second_resumes, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encrypt_rekey_decrypt_offline),
        cmocka_unit_test(test_online_conversions),
        cmocka_unit_test(test_resume_after_close),
        cmocka_unit_test(test_enospc_and_eio_resume),
        cmocka_unit_test(test_power_cuts),
        cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_deep_rekey_of_the_home),
        cmocka_unit_test(test_resume_finishes_the_policy),
        cmocka_unit_test(test_kill_campaign),
        cmocka_unit_test(test_vm_kill_campaign),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
