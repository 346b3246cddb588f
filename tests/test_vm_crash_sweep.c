/*
 * tests/test_vm_crash_sweep.c - the deterministic crash sweep of the VM
 * operations (issue 20, "Crash consistency at the VM level";
 * docs/reencryption.md "Crash safety of VM operations"). Its one rule: an
 * interruption is injected only through the durable-step hook
 * (lib/core/fs.h vmenc_fs_step_hook), never by editing files.
 *
 * For each operation (encrypt, decrypt, deep rekey - the home's state
 * files and configuration re-sealed with the disks -, shallow rekey, add
 * disk, remove disk, rollback of a policy's conversion - of an encryption,
 * a decryption and a deep rekey, and the retry of a rollback of an
 * encryption and of a decryption that a crash cut short just before its
 * disk turned round -, clone, create encrypted, a state-file write
 * session; clone and create are then
 * retried and must succeed, and the clone's every byte is compared with
 * the model), on a VM with two
 * disks of known data and an NVRAM and a suspend-state file: the operation
 * is first run once with the hook counting its durable steps (every
 * rename, unlink, fsync of a file or directory), then, for each step k,
 *   - crash: a forked child runs the operation and _exits at step k (no
 *     in-memory cleanup runs); the parent opens the VM and calls
 *     vmenc_vm_resume once;
 *   - EIO: the operation runs with step k failing once with VMENC_E_IO; then
 *     vmenc_vm_resume once on the same handle;
 * and after that one resume: it returned VMENC_OK; every byte of every
 * disk and state file equals the model; the VM's recorded state (its flag,
 * each disk's state) matches what is stored (descriptors, state-file form)
 * and is the state before or after the operation; no plaintext pattern in
 * an encrypted VM's files; no temporary or .cvt file left; no pending
 * policy; and a rollback that the authority record names when the resume
 * starts is the way the VM ends (the resume follows the record). Then the host's core-dump key rotation, swept the same way over
 * a dump directory with two dumps: one call resuming the rotation returns
 * VMENC_OK, nothing is pending, every dump reads its bytes, no temporary
 * is left. It prints the number of interruption points covered.
 *
 * The suite's run is a subset that still covers every operation: every
 * rename and unlink, and every 4th fsync (the first and last step always).
 * VMENC_SWEEP_STRIDE=n takes every n-th fsync instead (1: every step);
 * VMENC_SWEEP_EVERY=n then keeps every n-th of the chosen steps (the
 * sanitizer builds set it, CMakeLists.txt: they look for memory and thread
 * errors on the same code paths; the release build proves every point);
 * VMENC_SWEEP_OPS=list (e.g. "encrypt,rollback") picks operations; the
 * suite's run keeps only every 4th or 8th chosen step of the rollback
 * variants whose path another operation sweeps in full (sweep_op
 * suite_every), and the sanitizer builds only their first and last step;
 * VMENC_SWEEP_DISK_MIB=n makes the disks n MiB (+ 8 KiB);
 * scripts/crash-sweep.sh runs every step of every operation with bigger
 * disks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fs.h"
#include "vm/vm_internal.h"
#include "vm_fixture.h"

#define MiB (1024u * 1024u)
#define SEG MiB
#define NV_BYTES 70000u    /* two chunks */
#define VMSS_BYTES 140000u /* three chunks */

static vmfix g_f;
static uint64_t g_disk_bytes = 2 * SEG + 8192; /* three segments, the last short */

/* ---- the hook ---------------------------------------------------------------------- */

enum { MODE_OFF, MODE_COUNT, MODE_CRASH, MODE_EIO, MODE_CRASH_AT_RENAME };
static int g_mode;
static unsigned g_steps, g_at;
static char g_crash_rename[64]; /* MODE_CRASH_AT_RENAME: crash at the first rename onto this name */
#define MAX_STEPS 4096
static int g_kinds[MAX_STEPS + 1]; /* the kind of each step, as counted */

static vmenc_status step_hook(int op, const char *name) {
    if (g_mode == MODE_OFF)
        return VMENC_OK;
    g_steps++;
    if (g_mode == MODE_COUNT && g_steps <= MAX_STEPS)
        g_kinds[g_steps] = op;
    if (g_mode == MODE_COUNT && getenv("VMENC_SWEEP_VERBOSE") != NULL) {
        static const char *const ops[] = {"?", "rename", "unlink", "fsync", "fsync-dir"};
        fprintf(stderr, "    step %u: %s %s\n", g_steps, ops[op >= 1 && op <= 4 ? op : 0], name ? name : "");
    }
    if (g_mode == MODE_CRASH_AT_RENAME && op == VMENC_FS_OP_RENAME && name != NULL &&
        strcmp(name, g_crash_rename) == 0)
        _exit(0);
    if (g_steps != g_at)
        return VMENC_OK;
    if (g_mode == MODE_CRASH)
        _exit(0); /* a crash: nothing more runs in this process */
    if (g_mode == MODE_EIO)
        return VMENC_E_IO;
    return VMENC_OK;
}

/* ---- models --------------------------------------------------------------------------- */

/* pattern fills |len| bytes of file |which| at |off|: unique, never zero
 * for long, so a plaintext copy is found by a search. */
static void pattern(unsigned which, uint64_t off, uint8_t *buf, size_t len) {
    for (size_t i = 0; i < len; i++) {
        uint64_t p = off + i;
        buf[i] = (uint8_t)((p * 131u + which * 29u + (p >> 9) * 7u) ^ 0xa5u);
    }
}

static const char *g_disk_ids[3];
static char g_ids[3][VMENC_DISK_ID_MAX + 1];

typedef struct expect {
    int before_enc, after_enc; /* the VM flag before / after the operation */
    bool disk_gone_ok;         /* remove: the 2nd disk may be gone */
    bool new_disk_ok;          /* add: a 3rd disk, zeros, may be there */
    int rollback_to;           /* a rollback: once the VM's record says so, the resume must end it
                                  plain (1) or encrypted (2); 0: not a rollback */
} expect;

/* ---- one VM home ----------------------------------------------------------------------- */

static void home_path(const char *kind, const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s/%s", g_f.dir, kind, name);
}

static void vmx_of(const char *kind, const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s/%s/%s.vmx", g_f.dir, kind, name, name);
}

static void run_cmd(const char *cmd) {
    if (system(cmd) != 0)
        fail_msg("%s failed", cmd);
}

static vmenc_vm *open_vm(const char *kind, const char *name, vmenc_status *out) {
    char p[PATH_MAX + 128];
    vmx_of(kind, name, p, sizeof(p));
    vmenc_vm *vm = NULL;
    *out = vmenc_vm_open(g_f.host, "alice", p, &vm);
    if (*out != VMENC_OK) {
        vmenc_vm_free(vm);
        return NULL;
    }
    return vm;
}

static void write_disk(vmenc_vm *vm, const char *id, unsigned which) {
    vmenc_disk *d = NULL;
    assert_int_equal(vmenc_disk_open(vm, "alice", id, 0, &d), VMENC_OK);
    uint8_t *buf = malloc(g_disk_bytes);
    pattern(which, 0, buf, g_disk_bytes);
    /* the 2nd segment of disk 0 stays a hole */
    for (uint64_t off = 0; off < g_disk_bytes; off += 65536) {
        size_t n = g_disk_bytes - off < 65536 ? (size_t)(g_disk_bytes - off) : 65536;
        if (which == 0 && off >= SEG && off < 2 * SEG) {
            memset(buf + off, 0, n);
            continue;
        }
        assert_int_equal(vmenc_disk_pwrite(d, off, buf + off, n), VMENC_OK);
    }
    free(buf);
    assert_int_equal(vmenc_disk_close(d), VMENC_OK);
}

static void write_sf(vmenc_vm *vm, vmenc_vm_file_class cls, unsigned which, size_t len) {
    vmenc_vm_file *f = NULL;
    uint8_t *buf = malloc(len);
    pattern(which, 0, buf, len);
    assert_int_equal(vmenc_vm_file_open(vm, "alice", cls, 0, VMENC_VM_FILE_CREATE | VMENC_VM_FILE_TRUNCATE, &f),
                     VMENC_OK);
    assert_int_equal(vmenc_vm_file_pwrite(f, 0, buf, len), VMENC_OK);
    assert_int_equal(vmenc_vm_file_close(f), VMENC_OK);
    free(buf);
}

/* make_template creates VM |name| in "<dir>/tpl/<name>" with |policy|, two
 * disks of known data and NVRAM + suspend state. */
static void make_template(const char *name, const char *policy) {
    char home[PATH_MAX + 128];
    home_path("tpl", name, home, sizeof(home));
    vmenc_vm_create_options o = {.struct_size = sizeof(o), .principal = "alice", .home_dir = home, .name = name,
                                 .folder = "vms", .storage_policy = policy, .memory_bytes = 1 << 20};
    vmenc_vm *vm = NULL;
    assert_int_equal(vmenc_vm_create(g_f.host, &o, &vm), VMENC_OK);
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(vmfix_add_disk(&g_f, vm, "alice", g_disk_bytes, 512, g_ids[i]), VMENC_OK);
        g_disk_ids[i] = g_ids[i];
        write_disk(vm, g_ids[i], i);
    }
    write_sf(vm, VMENC_VM_FILE_NVRAM, 10, NV_BYTES);
    write_sf(vm, VMENC_VM_FILE_VMSS, 11, VMSS_BYTES);
    vmenc_vm_free(vm);
}

/* ---- the operations -------------------------------------------------------------------- */

typedef struct sweep_op {
    const char *name;
    const char *policy;           /* of the template */
    expect ex;
    vmenc_status (*run)(vmenc_vm *vm);
    void (*prepare)(const char *name); /* optional: more set-up on the template */
    bool retry; /* after the one resume, the operation is run again and must succeed */
    unsigned suite_every; /* the suite's run (no VMENC_SWEEP_STRIDE) keeps every n-th chosen step
                             of this operation (0, 1: all): variants of a path swept in full */
} sweep_op;

static const vmenc_apply_options k_apply = {.struct_size = sizeof(vmenc_apply_options), .segment_bytes = SEG};

static vmenc_status op_encrypt(vmenc_vm *vm) { return vmenc_vm_apply_storage_policy_ex(vm, "alice", "encrypted", &k_apply); }
static vmenc_status op_decrypt(vmenc_vm *vm) { return vmenc_vm_apply_storage_policy_ex(vm, "alice", "plain", &k_apply); }
static vmenc_status op_rekey_deep(vmenc_vm *vm) { return vmenc_vm_rekey_deep(vm, "alice", &k_apply); }
static vmenc_status op_rekey_shallow(vmenc_vm *vm) { return vmenc_vm_rekey_shallow(vm, "alice", NULL, NULL); }
static vmenc_status op_add_disk(vmenc_vm *vm) {
    vmenc_disk_create_options o = {.struct_size = sizeof(o), .capacity = g_disk_bytes, .sector_size = 512};
    char id[VMENC_DISK_ID_MAX + 1];
    return vmenc_vm_add_disk(vm, "alice", &o, id, sizeof(id));
}
static vmenc_status op_remove_disk(vmenc_vm *vm) {
    return vmenc_vm_remove_disk(vm, "alice", g_disk_ids[1], VMENC_VM_REMOVE_DELETE_FILES);
}

/* clone: into a new home for each case (a new name: the inventory keeps
 * the names of finished clones; g_case counts the cases, in the parent,
 * so a crashed child and the retry after it use the same name and home).
 * The source is checked after the resume; then the clone is made again
 * into the same home (the retry): a crash leaves a half-built home that
 * holds the clone's intent, which the retry empties and builds again
 * (docs/vm.md "Clone"). |g_clone_made|: this process made the clone. */
static unsigned g_case;
static bool g_clone_made;
static pid_t g_sweep_pid; /* the parent's, inherited by the crashing children */
static vmenc_status op_clone(vmenc_vm *vm) {
    char name[32], home[PATH_MAX + 64];
    snprintf(name, sizeof(name), "clone%u_%d", g_case, (int)g_sweep_pid);
    snprintf(home, sizeof(home), "%s/clones/%s", g_f.dir, name);
    vmenc_vm_clone_options o = {.struct_size = sizeof(o), .principal = "alice", .home_dir = home, .name = name,
                                .folder = "vms"};
    vmenc_vm *out = NULL;
    vmenc_status s = vmenc_vm_clone(vm, &o, &out);
    vmenc_vm_free(out);
    if (s == VMENC_OK)
        g_clone_made = true;
    return s;
}

/* create encrypted: a new encrypted VM (the "encrypted" policy: a new KEK
 * and VM key, an encrypted NVRAM) beside the source, in a new home for
 * each case like a clone's; the retry creates it again. The source must
 * stay as it was (its expectation: unchanged). */
static vmenc_status op_create(vmenc_vm *vm) {
    (void)vm;
    char name[32], home[PATH_MAX + 64];
    snprintf(name, sizeof(name), "new%u_%d", g_case, (int)g_sweep_pid);
    snprintf(home, sizeof(home), "%s/clones/%s", g_f.dir, name);
    vmenc_vm_create_options o = {.struct_size = sizeof(o), .principal = "alice", .home_dir = home, .name = name,
                                 .folder = "vms", .storage_policy = "encrypted", .memory_bytes = 1 << 20};
    vmenc_vm *out = NULL;
    vmenc_status s = vmenc_vm_create(g_f.host, &o, &out);
    vmenc_vm_free(out);
    if (s == VMENC_OK)
        g_clone_made = true;
    return s;
}

/* rollback: the template is a VM whose "encrypted" policy stopped after
 * one segment of its first disk; the operation turns that conversion
 * round and runs it to the end. */
static int stop_at_once(void *ctx, const char *disk_id, const vmenc_convert_progress *p) {
    (void)ctx;
    (void)disk_id;
    return !p->done;
}
static void prepare_rollback(const char *name) {
    vmenc_status s;
    vmenc_vm *vm = open_vm("tpl", name, &s);
    assert_non_null(vm);
    vmenc_apply_options o = k_apply;
    o.progress = stop_at_once;
    assert_int_equal(vmenc_vm_apply_storage_policy_ex(vm, "alice", "encrypted", &o), VMENC_E_INTERRUPTED);
    vmenc_vm_free(vm);
}
/* rollback-decrypt, rollback-rekey: the same for a decryption ("plain" on
 * an encrypted VM) and a deep rekey stopped after one segment. Turning
 * either round gives the disk a next key record (the forward run's old
 * DEK), which the sealed configuration names before the descriptor does. */
static void prepare_stopped(const char *name, bool rekey) {
    vmenc_status s;
    vmenc_vm *vm = open_vm("tpl", name, &s);
    assert_non_null(vm);
    vmenc_apply_options o = k_apply;
    o.progress = stop_at_once;
    assert_int_equal(rekey ? vmenc_vm_rekey_deep(vm, "alice", &o) : vmenc_vm_apply_storage_policy_ex(vm, "alice", "plain", &o),
                     VMENC_E_INTERRUPTED);
    vmenc_vm_free(vm);
}
static void prepare_rollback_decrypt(const char *name) { prepare_stopped(name, false); }
static void prepare_rollback_rekey(const char *name) { prepare_stopped(name, true); }
static vmenc_status op_rollback(vmenc_vm *vm);
/* rollback-retry, rollback-retry-enc: the rollback of a stopped decryption
 * (encryption) was itself cut short by a crash just before its reversed
 * descriptor replaced the forward one (the reverse run's state file, the
 * record's intent and, for a decryption, the sealed next key are on disk);
 * the operation swept is the retried rollback. */
static void crash_first_rollback(const char *name) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        vmenc_status s;
        vmenc_vm *vm = open_vm("tpl", name, &s);
        if (vm == NULL)
            _exit(3);
        snprintf(g_crash_rename, sizeof(g_crash_rename), "%s_0.vmdk", name);
        g_mode = MODE_CRASH_AT_RENAME;
        (void)op_rollback(vm);
        _exit(2);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}
static void prepare_rollback_retry(const char *name) {
    prepare_stopped(name, false);
    crash_first_rollback(name);
}
static void prepare_rollback(const char *name);
static void prepare_rollback_retry_enc(const char *name) {
    prepare_rollback(name);
    crash_first_rollback(name);
}
static vmenc_status op_rollback(vmenc_vm *vm) {
    vmenc_disk *d = NULL;
    VMENC_GUARD(vmenc_disk_open(vm, "alice", g_disk_ids[0], 0, &d));
    vmenc_status s = vmenc_disk_convert_rollback(d, "alice");
    vmenc_convert_progress p = {.struct_size = sizeof(p)};
    for (int guard = 0; s == VMENC_OK && guard < 100; guard++) {
        s = vmenc_disk_convert_step(d, SEG, &p);
        if (s == VMENC_OK && p.done)
            break;
    }
    vmenc_status cs = vmenc_disk_close(d);
    return s != VMENC_OK ? s : cs;
}

/* sf-session: a write session on the NVRAM (an open for write, which
 * renews the file's ID - announced, renamed, settled -, a write of the
 * bytes it already holds, a close): the model does not change. */
static vmenc_status op_sf_session(vmenc_vm *vm) {
    vmenc_vm_file *f = NULL;
    VMENC_GUARD(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, 0, &f));
    uint8_t buf[4096];
    pattern(10, 65000, buf, sizeof(buf)); /* across the first chunk boundary */
    vmenc_status s = vmenc_vm_file_pwrite(f, 65000, buf, sizeof(buf));
    vmenc_status cs = vmenc_vm_file_close(f);
    return s != VMENC_OK ? s : cs;
}

static const sweep_op k_ops[] = {
    {"encrypt", NULL, {0, 1, false, false, 0}, op_encrypt, NULL, false, 0},
    {"decrypt", "encrypted", {1, 0, false, false, 0}, op_decrypt, NULL, false, 0},
    {"rekey-deep", "encrypted", {1, 1, false, false, 0}, op_rekey_deep, NULL, false, 0},
    {"rekey-shallow", "encrypted", {1, 1, false, false, 0}, op_rekey_shallow, NULL, false, 0},
    {"add-disk", "encrypted", {1, 1, false, true, 0}, op_add_disk, NULL, false, 0},
    {"remove-disk", "encrypted", {1, 1, true, false, 0}, op_remove_disk, NULL, false, 0},
    {"rollback", NULL, {1, 0, false, false, 1}, op_rollback, prepare_rollback, false, 0},
    {"rollback-decrypt", "encrypted", {0, 1, false, false, 2}, op_rollback, prepare_rollback_decrypt, false, 0},
    {"rollback-rekey", "encrypted", {1, 1, false, false, 2}, op_rollback, prepare_rollback_rekey, false, 8},
    {"rollback-retry", "encrypted", {1, 1, false, false, 2}, op_rollback, prepare_rollback_retry, false, 4},
    {"rollback-retry-enc", NULL, {1, 0, false, false, 1}, op_rollback, prepare_rollback_retry_enc, false, 8},
    {"clone", "encrypted", {1, 1, false, false, 0}, op_clone, NULL, true, 0},
    {"create", "encrypted", {1, 1, false, false, 0}, op_create, NULL, true, 0},
    {"sf-session", "encrypted", {1, 1, false, false, 0}, op_sf_session, NULL, false, 0},
};

/* ---- the checks ---------------------------------------------------------------------------- */

static size_t g_failures;

#define CHECK(cond, ...)                                                                                  \
    do {                                                                                                  \
        if (!(cond)) {                                                                                    \
            fprintf(stderr, "  FAIL %s k=%u %s: ", opname, k, modename);                                  \
            fprintf(stderr, __VA_ARGS__);                                                                 \
            fprintf(stderr, "\n");                                                                        \
            g_failures++;                                                                                 \
            return false;                                                                                 \
        }                                                                                                 \
    } while (0)

static bool file_has(const char *path, const uint8_t *needle, size_t n) {
    size_t len = 0;
    uint8_t *raw = vmfix_read_file(path, &len);
    bool yes = raw != NULL && vmfix_contains(raw, len, needle, n);
    free(raw);
    return yes;
}

static bool check_disk(vmenc_vm *vm, uint32_t i, unsigned which, bool zeros, const char *opname, unsigned k,
                       const char *modename) {
    vmenc_disk_info di = {.struct_size = sizeof(di)};
    CHECK(vmenc_vm_get_disk_info(vm, i, &di) == VMENC_OK, "disk info %u", i);
    vmenc_disk *d = NULL;
    vmenc_status s = vmenc_disk_open(vm, "alice", di.disk_id, VMENC_DISK_OPEN_READONLY, &d);
    CHECK(s == VMENC_OK, "open disk %s: %s", di.disk_id, vmenc_strerror(s));
    uint8_t *got = malloc(g_disk_bytes), *want = malloc(g_disk_bytes);
    s = vmenc_disk_pread(d, 0, g_disk_bytes, got);
    pattern(which, 0, want, g_disk_bytes);
    if (zeros)
        memset(want, 0, g_disk_bytes);
    else if (which == 0)
        memset(want + SEG, 0, SEG);
    bool same = s == VMENC_OK && memcmp(got, want, g_disk_bytes) == 0;
    uint64_t bad = 0;
    for (uint64_t o = 0; !same && o < g_disk_bytes; o += 512)
        if (memcmp(got + o, want + o, 512) != 0) {
            bad = o / 512;
            break;
        }
    free(got);
    free(want);
    vmenc_status cs = vmenc_disk_close(d);
    CHECK(cs == VMENC_OK, "close");
    CHECK(same, "disk %s differs from the model (sector %llu, %s)", di.disk_id, (unsigned long long)bad,
          vmenc_strerror(s));
    return true;
}

static bool check_sf(vmenc_vm *vm, const char *home, const char *file, vmenc_vm_file_class cls, unsigned which,
                     size_t len, bool enc, const char *opname, unsigned k, const char *modename) {
    vmenc_vm_file *f = NULL;
    vmenc_status s = vmenc_vm_file_open(vm, "alice", cls, 0, VMENC_VM_FILE_READONLY, &f);
    CHECK(s == VMENC_OK, "open %s: %s", file, vmenc_strerror(s));
    uint8_t *got = malloc(len + 1), *want = malloc(len);
    size_t n = 0;
    s = vmenc_vm_file_pread(f, 0, len + 1, got, &n);
    vmenc_status cs = vmenc_vm_file_close(f);
    CHECK(cs == VMENC_OK, "close");
    pattern(which, 0, want, len);
    bool same = s == VMENC_OK && n == len && memcmp(got, want, len) == 0;
    free(got);
    free(want);
    CHECK(same, "%s differs from the model (%s, %zu bytes)", file, vmenc_strerror(s), n);
    char p[2 * PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", home, file);
    size_t rl = 0;
    uint8_t *raw = vmfix_read_file(p, &rl);
    bool aead = raw != NULL && rl >= 8 && memcmp(raw, "VMENCSF1", 8) == 0;
    free(raw);
    CHECK(aead == enc, "%s is %s in a%s VM", file, aead ? "sealed" : "plain", enc ? "n encrypted" : " plain");
    return true;
}

/* check_home: the debris rule and the plaintext rule over every file. */
static bool check_home(const char *home, bool enc, const char *opname, unsigned k, const char *modename) {
    DIR *d = opendir(home);
    CHECK(d != NULL, "no home");
    struct dirent *de;
    uint8_t needles[4][64];
    pattern(0, 4096, needles[0], 64);
    pattern(1, 4096, needles[1], 64);
    pattern(10, 4096, needles[2], 64);
    pattern(11, 4096, needles[3], 64);
    bool ok = true;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (strstr(de->d_name, ".tmp-") != NULL || strstr(de->d_name, ".cvt") != NULL) {
            fprintf(stderr, "  FAIL %s k=%u %s: debris %s left\n", opname, k, modename, de->d_name);
            ok = false;
        }
        if (!enc)
            continue;
        char p[2 * PATH_MAX];
        snprintf(p, sizeof(p), "%s/%s", home, de->d_name);
        for (int i = 0; i < 4; i++)
            if (file_has(p, needles[i], 64)) {
                fprintf(stderr, "  FAIL %s k=%u %s: plaintext of model %d in %s\n", opname, k, modename, i,
                        de->d_name);
                ok = false;
            }
    }
    closedir(d);
    if (!ok)
        g_failures++;
    return ok;
}

/* check_vm checks an open VM after its one resume. */
static bool check_vm(vmenc_vm *vm, const char *name, const sweep_op *op, unsigned k, const char *modename) {
    const char *opname = op->name;
    char home[PATH_MAX + 128];
    home_path("case", name, home, sizeof(home));
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    CHECK(vmenc_vm_get_info(vm, &info) == VMENC_OK, "info");
    CHECK(info.encrypted == op->ex.before_enc || info.encrypted == op->ex.after_enc, "VM flag %d", info.encrypted);
    uint32_t want_disks = 2;
    if (op->ex.disk_gone_ok && info.num_disks == 1)
        want_disks = 1;
    if (op->ex.new_disk_ok && info.num_disks == 3)
        want_disks = 3;
    CHECK(info.num_disks == want_disks, "%u disks", info.num_disks);
    for (uint32_t i = 0; i < info.num_disks; i++) {
        vmenc_disk_info di = {.struct_size = sizeof(di)};
        CHECK(vmenc_vm_get_disk_info(vm, i, &di) == VMENC_OK, "disk info");
        vmenc_disk_state want = info.encrypted ? VMENC_DISK_ENCRYPTED : VMENC_DISK_PLAIN;
        CHECK(di.state == want, "disk %s in state %d, VM flag %d", di.disk_id, di.state, info.encrypted);
        if (!check_disk(vm, i, i, i == 2, opname, k, modename))
            return false;
    }
    if (!check_sf(vm, home, strcat(strcpy((char[300]){0}, name), ".nvram"), VMENC_VM_FILE_NVRAM, 10, NV_BYTES,
                  info.encrypted, opname, k, modename) ||
        !check_sf(vm, home, strcat(strcpy((char[300]){0}, name), ".vmss"), VMENC_VM_FILE_VMSS, 11, VMSS_BYTES,
                  info.encrypted, opname, k, modename))
        return false;
    char p[PATH_MAX + 128];
    vmx_of("case", name, p, sizeof(p));
    size_t len = 0;
    char *t = (char *)vmfix_read_file(p, &len);
    bool pending = t != NULL && strstr(t, "applyingPolicy") != NULL;
    free(t);
    CHECK(!pending, "a pending policy is left in the .vmx");
    return check_home(home, info.encrypted, opname, k, modename);
}

/* check_clone: the clone this case made (clone<case>_<pid> in "clones")
 * holds every byte of the source's model, in the form its flag says, and
 * no debris or plaintext. */
static bool check_clone(const sweep_op *op, unsigned k, const char *modename) {
    const char *opname = op->name;
    char name[32], home[PATH_MAX + 64], vmx[PATH_MAX + 128];
    snprintf(name, sizeof(name), "clone%u_%d", g_case, (int)g_sweep_pid);
    snprintf(home, sizeof(home), "%s/clones/%s", g_f.dir, name);
    snprintf(vmx, sizeof(vmx), "%s/%s.vmx", home, name);
    vmenc_vm *vm = NULL;
    vmenc_status s = vmenc_vm_open(g_f.host, "alice", vmx, &vm);
    if (s != VMENC_OK)
        vmenc_vm_free(vm);
    CHECK(s == VMENC_OK, "open the clone: %s", vmenc_strerror(s));
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    bool ok = vmenc_vm_get_info(vm, &info) == VMENC_OK && info.num_disks == 2;
    for (uint32_t i = 0; ok && i < info.num_disks; i++)
        ok = check_disk(vm, i, i, false, opname, k, modename);
    char file[300];
    if (ok) {
        snprintf(file, sizeof(file), "%s.nvram", name);
        ok = check_sf(vm, home, file, VMENC_VM_FILE_NVRAM, 10, NV_BYTES, info.encrypted, opname, k, modename);
    }
    if (ok) {
        snprintf(file, sizeof(file), "%s.vmss", name);
        ok = check_sf(vm, home, file, VMENC_VM_FILE_VMSS, 11, VMSS_BYTES, info.encrypted, opname, k, modename);
    }
    vmenc_vm_free(vm);
    CHECK(ok, "the clone differs from the model (%u disks)", info.num_disks);
    return check_home(home, info.encrypted, opname, k, strcmp(modename, "crash") == 0 ? "crash (clone)" : strcmp(modename, "eio") == 0 ? "eio (clone)" : "clone");
}

/* ---- the sweep ------------------------------------------------------------------------------------ */

/* The host's control store (DESIGN.md §11) lives in "<dir>/ctl"; each
 * case starts from the records as they were when its template was made
 * ("<dir>/ctl-<name>"), as the VM's home does. */
static void snapshot_control(const char *name) {
    char cmd[5 * PATH_MAX];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/ctl-%s' && cp -a '%s/ctl' '%s/ctl-%s'", g_f.dir, name, g_f.dir, g_f.dir,
             name);
    run_cmd(cmd);
}

static void fresh_case(const char *name) {
    g_case++;
    g_clone_made = false;
    char tpl[PATH_MAX + 128], cs[PATH_MAX + 128];
    home_path("tpl", name, tpl, sizeof(tpl));
    home_path("case", name, cs, sizeof(cs));
    char cmd[5 * PATH_MAX];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p \"$(dirname '%s')\" && cp -a '%s' '%s'", cs, cs, tpl, cs);
    run_cmd(cmd);
    /* (the store keeps its directories open: their contents are replaced) */
    snprintf(cmd, sizeof(cmd), "find '%s/ctl/vms' -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} + && "
             "cp -a '%s/ctl-%s/vms/.' '%s/ctl/vms/'", g_f.dir, g_f.dir, name, g_f.dir);
    run_cmd(cmd);
}

static unsigned count_steps(const sweep_op *op, const char *name) {
    fresh_case(name);
    vmenc_status s;
    vmenc_vm *vm = open_vm("case", name, &s);
    if (vm == NULL)
        fail_msg("%s: open the copy of the template: %s", op->name, vmenc_strerror(s));
    g_steps = 0;
    g_at = 0;
    g_mode = MODE_COUNT;
    s = op->run(vm);
    g_mode = MODE_OFF;
    if (s != VMENC_OK)
        fail_msg("%s without faults: %s", op->name, vmenc_strerror(s));
    unsigned n = g_steps;
    /* (a resume after a finished operation has nothing to do but sweep what
     * a crash before it left: the retried rollbacks start from one) */
    s = vmenc_vm_resume(vm, "alice", NULL);
    if (s != VMENC_OK)
        fail_msg("%s: resume after it: %s", op->name, vmenc_strerror(s));
    if (!check_vm(vm, name, op, 0, "clean") || (op->run == op_clone && !check_clone(op, 0, "clean")))
        fail_msg("%s without faults leaves a wrong VM", op->name);
    vmenc_vm_free(vm);
    return n;
}

/* record_rolls_back: does the stored authority record of |vm| say its
 * operation is being rolled back? */
static ctl_store *g_store;
static bool record_rolls_back(const vmenc_vm *vm) {
    ctl_vm_record *r = calloc(1, sizeof(*r));
    bool yes = r != NULL && ctl_store_get_vm(g_store, vm->vmx.uuid, r) == VMENC_OK && r->op.kind != CTL_OP_NONE &&
               r->op.direction == CTL_DIR_ROLLBACK;
    free(r);
    return yes;
}

static bool resume_and_check(vmenc_vm *vm, const char *name, const sweep_op *op, unsigned k, const char *mode) {
    const char *opname = op->name, *modename = mode;
    /* the resume follows the record: a rollback it names is finished */
    bool rolls_back = op->ex.rollback_to != 0 && record_rolls_back(vm);
    vmenc_status s = vmenc_vm_resume(vm, "alice", NULL);
    CHECK(s == VMENC_OK, "the one vm resume: %s", vmenc_strerror(s));
    if (rolls_back) {
        vmenc_vm_info info = {.struct_size = sizeof(info)};
        CHECK(vmenc_vm_get_info(vm, &info) == VMENC_OK, "info");
        CHECK(info.encrypted == (op->ex.rollback_to == 2), "the record said rollback; the resume went on the other way "
              "(VM flag %d)", info.encrypted);
    }
    bool ok = check_vm(vm, name, op, k, mode);
    if (ok && op->retry) { /* again: it succeeds (or finds the one it made) */
        bool made = g_clone_made;
        s = op->run(vm);
        CHECK(s == VMENC_OK || (made && s == VMENC_E_EXISTS), "the retry: %s", vmenc_strerror(s));
        ok = (s == VMENC_OK || (made && s == VMENC_E_EXISTS)) && check_vm(vm, name, op, k, mode);
        if (ok && op->run == op_clone)
            ok = check_clone(op, k, mode);
    }
    return ok;
}

static void crash_case(const sweep_op *op, const char *name, unsigned k) {
    const char *opname = op->name, *modename = "crash";
    fresh_case(name);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        vmenc_status s;
        vmenc_vm *vm = open_vm("case", name, &s);
        if (vm == NULL)
            _exit(3);
        g_steps = 0;
        g_at = k;
        g_mode = MODE_CRASH;
        (void)op->run(vm);
        _exit(2); /* never reached step k */
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "  FAIL %s k=%u %s: child status 0x%x\n", opname, k, modename, st);
        g_failures++;
        return;
    }
    vmenc_status s;
    vmenc_vm *vm = open_vm("case", name, &s);
    if (vm == NULL) {
        fprintf(stderr, "  FAIL %s k=%u %s: open after the crash: %s\n", opname, k, modename, vmenc_strerror(s));
        g_failures++;
        return;
    }
    (void)resume_and_check(vm, name, op, k, "crash");
    vmenc_vm_free(vm);
}

static void eio_case(const sweep_op *op, const char *name, unsigned k) {
    const char *opname = op->name, *modename = "eio";
    fresh_case(name);
    vmenc_status s;
    vmenc_vm *vm = open_vm("case", name, &s);
    assert_non_null(vm);
    g_steps = 0;
    g_at = k;
    g_mode = MODE_EIO;
    (void)op->run(vm);
    g_mode = MODE_OFF;
    bool ok = resume_and_check(vm, name, op, k, "eio");
    vmenc_vm_free(vm);
    if (!ok)
        return;
    /* and what is stored says the same after a restart, with no resume */
    vm = open_vm("case", name, &s);
    if (vm == NULL) {
        fprintf(stderr, "  FAIL %s k=%u %s: reopen: %s\n", opname, k, modename, vmenc_strerror(s));
        g_failures++;
        return;
    }
    (void)check_vm(vm, name, op, k, "eio-reopen");
    vmenc_vm_free(vm);
}

/* ---- core-dump host-key rotation ------------------------------------------------------- */

#define CD_DUMPS 2
static const size_t k_cd_len[CD_DUMPS] = {100000, 200003};
static char g_cd_ids[CD_DUMPS][VMENC_COREDUMP_ID_LEN + 1];

static void cd_dir(const char *kind, char *out, size_t cap) { snprintf(out, cap, "%s/cd-%s", g_f.dir, kind); }

/* cd_template: a dump directory with a host key (kms-a) and two dumps of
 * pattern bytes. */
static void cd_template(void) {
    char dir[PATH_MAX + 32];
    cd_dir("tpl", dir, sizeof(dir));
    assert_int_equal(mkdir(dir, 0700), 0);
    vmenc_coredump_store *st = NULL;
    assert_int_equal(vmenc_coredump_store_open(g_f.host, dir, &st), VMENC_OK);
    assert_int_equal(vmenc_coredump_set_host_key(st, "alice", "kms-a", NULL), VMENC_OK);
    for (int d = 0; d < CD_DUMPS; d++) {
        vmenc_coredump_writer *w = NULL;
        assert_int_equal(vmenc_coredump_writer_new(st, "vmkernel", "vmkernel", &w), VMENC_OK);
        snprintf(g_cd_ids[d], sizeof(g_cd_ids[d]), "%s", vmenc_coredump_writer_id(w));
        uint8_t *buf = malloc(k_cd_len[d]);
        pattern(20 + (unsigned)d, 0, buf, k_cd_len[d]);
        assert_int_equal(vmenc_coredump_write(w, buf, k_cd_len[d]), VMENC_OK);
        free(buf);
        assert_int_equal(vmenc_coredump_writer_finish(w), VMENC_OK); /* (frees |w|) */
    }
    vmenc_coredump_store_free(st);
}

static vmenc_coredump_store *cd_case(void) {
    char tpl[PATH_MAX + 32], cs[PATH_MAX + 32], cmd[4 * PATH_MAX + 256];
    cd_dir("tpl", tpl, sizeof(tpl));
    cd_dir("case", cs, sizeof(cs));
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -a '%s' '%s'", cs, tpl, cs);
    run_cmd(cmd);
    vmenc_coredump_store *st = NULL;
    assert_int_equal(vmenc_coredump_store_open(g_f.host, cs, &st), VMENC_OK);
    return st;
}

static vmenc_status op_cd_rotate(vmenc_coredump_store *st) {
    return vmenc_coredump_rotate_host_key(st, "alice", "kms-b", NULL, NULL);
}

/* cd_check: after the one resuming call. */
static void cd_check(vmenc_coredump_store *st, unsigned k, const char *modename) {
    const char *opname = "coredump-rotate";
    char dir[PATH_MAX + 32];
    cd_dir("case", dir, sizeof(dir));
    vmenc_status s = vmenc_coredump_rotate_host_key(st, "alice", NULL, NULL, NULL);
    bool ok = s == VMENC_OK;
    if (!ok)
        fprintf(stderr, "  FAIL %s k=%u %s: the one resuming rotation: %s\n", opname, k, modename, vmenc_strerror(s));
    vmenc_coredump_store_info info = {.struct_size = sizeof(info)};
    if (ok && (vmenc_coredump_store_get_info(st, &info) != VMENC_OK || info.rotation_pending || !info.has_host_key ||
               info.num_dumps != CD_DUMPS)) {
        fprintf(stderr, "  FAIL %s k=%u %s: pending %d, %u dumps\n", opname, k, modename, info.rotation_pending,
                info.num_dumps);
        ok = false;
    }
    for (int d = 0; ok && d < CD_DUMPS; d++) {
        vmenc_coredump_reader *r = NULL;
        s = vmenc_coredump_open(st, "alice", g_cd_ids[d], &r);
        uint8_t *got = malloc(k_cd_len[d] + 1), *want = malloc(k_cd_len[d]);
        size_t pos = 0;
        while (s == VMENC_OK && pos <= k_cd_len[d]) {
            size_t n = 0;
            s = vmenc_coredump_read(r, got + pos, k_cd_len[d] + 1 - pos, &n);
            if (n == 0)
                break;
            pos += n;
        }
        pattern(20 + (unsigned)d, 0, want, k_cd_len[d]);
        if (s != VMENC_OK || pos != k_cd_len[d] || memcmp(got, want, k_cd_len[d]) != 0) {
            fprintf(stderr, "  FAIL %s k=%u %s: dump %d reads %zu bytes (%s), not its model\n", opname, k, modename, d,
                    pos, vmenc_strerror(s));
            ok = false;
        }
        free(got);
        free(want);
        vmenc_coredump_reader_free(r);
    }
    DIR *dd = opendir(dir);
    for (struct dirent *de; ok && dd != NULL && (de = readdir(dd)) != NULL;)
        if (strstr(de->d_name, ".tmp") != NULL) {
            fprintf(stderr, "  FAIL %s k=%u %s: debris %s left\n", opname, k, modename, de->d_name);
            ok = false;
        }
    if (dd != NULL)
        closedir(dd);
    if (!ok)
        g_failures++;
}

/* sweep_coredump: every durable step of a rotation, crash and EIO. */
static unsigned sweep_coredump(unsigned stride, unsigned every, unsigned *out_steps) {
    cd_template();
    vmenc_coredump_store *st = cd_case();
    g_steps = 0;
    g_at = 0;
    g_mode = MODE_COUNT;
    vmenc_status s = op_cd_rotate(st);
    g_mode = MODE_OFF;
    if (s != VMENC_OK)
        fail_msg("coredump-rotate without faults: %s", vmenc_strerror(s));
    unsigned n = g_steps;
    cd_check(st, 0, "clean");
    vmenc_coredump_store_free(st);
    unsigned covered = 0, fsyncs = 0, chosen = 0;
    for (unsigned k = 1; k <= n; k++) {
        bool is_sync = k <= MAX_STEPS && (g_kinds[k] == VMENC_FS_OP_FSYNC || g_kinds[k] == VMENC_FS_OP_FSYNC_DIR);
        if (is_sync && fsyncs++ % stride != 0 && k != 1 && k != n)
            continue;
        if (chosen++ % every != 0 && k != 1 && k != n)
            continue;
        /* crash: a child rotates and dies at step k; a new store resumes */
        st = cd_case();
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            g_steps = 0;
            g_at = k;
            g_mode = MODE_CRASH;
            (void)op_cd_rotate(st);
            _exit(2);
        }
        int wst = 0;
        assert_int_equal(waitpid(pid, &wst, 0), pid);
        vmenc_coredump_store_free(st);
        if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
            fprintf(stderr, "  FAIL coredump-rotate k=%u crash: child status 0x%x\n", k, wst);
            g_failures++;
        } else {
            char dir[PATH_MAX + 32];
            cd_dir("case", dir, sizeof(dir));
            assert_int_equal(vmenc_coredump_store_open(g_f.host, dir, &st), VMENC_OK);
            cd_check(st, k, "crash");
            vmenc_coredump_store_free(st);
        }
        /* EIO: step k fails once; the same store resumes */
        st = cd_case();
        g_steps = 0;
        g_at = k;
        g_mode = MODE_EIO;
        (void)op_cd_rotate(st);
        g_mode = MODE_OFF;
        cd_check(st, k, "eio");
        vmenc_coredump_store_free(st);
        covered += 2;
    }
    *out_steps = n;
    return covered;
}

static bool op_selected(const char *name) {
    const char *list = getenv("VMENC_SWEEP_OPS");
    if (list == NULL || list[0] == '\0')
        return true;
    size_t n = strlen(name);
    for (const char *p = strstr(list, name); p != NULL; p = strstr(p + 1, name))
        if ((p == list || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
            return true;
    return false;
}

static void test_crash_sweep(void **state) {
    (void)state;
    const char *st = getenv("VMENC_SWEEP_STRIDE");
    unsigned stride = st != NULL && atoi(st) > 0 ? (unsigned)atoi(st) : 4;
    const char *ev = getenv("VMENC_SWEEP_EVERY");
    unsigned every = ev != NULL && atoi(ev) > 0 ? (unsigned)atoi(ev) : 1;
    const char *mb = getenv("VMENC_SWEEP_DISK_MIB");
    if (mb != NULL && atoi(mb) > 0)
        g_disk_bytes = (uint64_t)atoi(mb) * MiB + 8192;
    vmenc_fs_step_hook = step_hook;
    g_sweep_pid = getpid();
    unsigned points = 0, ops = 0;
    for (size_t i = 0; i < sizeof(k_ops) / sizeof(k_ops[0]); i++) {
        const sweep_op *op = &k_ops[i];
        if (!op_selected(op->name))
            continue;
        char name[32];
        snprintf(name, sizeof(name), "sw%zu", i);
        make_template(name, op->policy);
        if (op->prepare != NULL)
            op->prepare(name);
        snapshot_control(name);
        unsigned n = count_steps(op, name);
        size_t before = g_failures;
        unsigned covered = 0;
        /* step n + 1 never comes: the operation ran to the end */
        unsigned fsyncs = 0, chosen = 0;
        unsigned op_every = every * (st == NULL && op->suite_every > 1 ? op->suite_every : 1);
        /* the sanitizer builds (VMENC_SWEEP_EVERY set) run such a variant at
         * its first and last step only */
        bool ends_only = st == NULL && every > 1 && op->suite_every > 1;
        for (unsigned k = 1; k <= n; k++) {
            if (ends_only && k != 1 && k != n)
                continue;
            bool is_sync = k <= MAX_STEPS && (g_kinds[k] == VMENC_FS_OP_FSYNC || g_kinds[k] == VMENC_FS_OP_FSYNC_DIR);
            if (is_sync && fsyncs++ % stride != 0 && k != 1 && k != n)
                continue;
            if (chosen++ % op_every != 0 && k != 1 && k != n)
                continue;
            crash_case(op, name, k);
            eio_case(op, name, k);
            covered += 2;
        }
        fprintf(stderr, "%-14s %3u durable steps, %4u interruptions, %zu failures\n", op->name, n, covered,
                g_failures - before);
        points += covered;
        ops++;
    }
    if (op_selected("coredump-rotate")) {
        size_t before = g_failures;
        unsigned n = 0, covered = sweep_coredump(stride, every, &n);
        fprintf(stderr, "%-14s %3u durable steps, %4u interruptions, %zu failures\n", "coredump-rot", n, covered,
                g_failures - before);
        points += covered;
        ops++;
    }
    vmenc_fs_step_hook = NULL;
    fprintf(stderr, "crash sweep: %u operations, %u interruption points covered, %zu failures\n", ops, points,
            g_failures);
    assert_int_equal(g_failures, 0);
}

static int setup(void **state) {
    (void)state;
    /* fsync is a durable step but not the subject: on tmpfs the sweep is
     * short (VMENC_SWEEP_TMPDIR overrides, e.g. a real disk) */
    const char *tmp = getenv("VMENC_SWEEP_TMPDIR");
    struct stat st;
    if (tmp == NULL && stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
        tmp = "/dev/shm";
    if (tmp != NULL)
        setenv("TMPDIR", tmp, 1);
    if (vmfix_setup(&g_f, 0) != VMENC_OK)
        return -1;
    char p[PATH_MAX + 16];
    snprintf(p, sizeof(p), "%s/tpl", g_f.dir);
    if (mkdir(p, 0700) != 0)
        return -1;
    snprintf(p, sizeof(p), "%s/clones", g_f.dir);
    if (mkdir(p, 0700) != 0)
        return -1;
    /* a control store, as a workspace gives its host: every record write is
     * a durable step too */
    static const uint8_t mac_key[CTL_MAC_KEY_BYTES] = {1, 2, 3};
    snprintf(p, sizeof(p), "%s/ctl", g_f.dir);
    ctl_store *store = NULL;
    if (ctl_local_new(p, mac_key, sizeof(mac_key), true, &store) != VMENC_OK)
        return -1;
    vm_host_set_control(g_f.host, store);
    g_store = store;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    vmfix_teardown(&g_f);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_crash_sweep)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
