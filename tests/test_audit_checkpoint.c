/*
 * tests/test_audit_checkpoint.c - the sealed checkpoint of the audit chain
 * head (lib/audit/checkpoint.c, docs/audit.md "The sealed checkpoint"): a
 * log cut short by N records, emptied, replaced by an older copy (alone
 * and written to since), a record edited, and the checkpoint itself
 * tampered with, sealed under another key or removed - each found; a
 * damaged log never moves the checkpoint and a missing one is never made
 * again without CHECKPOINT_INIT; concurrent appenders in several processes
 * keep the checkpoint monotonic and end with it on the real head; the
 * format's parser against its serialiser.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <sodium.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "audit/checkpoint.h"
#include "core/internal.h"
#include "vmenc/vmenc.h"

static const uint8_t k_key[32] = {0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
                                  0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5,
                                  0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf};
static const uint8_t k_other[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

typedef struct fixture {
    char dir[256];
    char log[300];
    char cp[320];
    char copy[320];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    const char *base = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/vmenc-auditcp-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->log, sizeof(f->log), "%s/audit.log", f->dir);
    snprintf(f->cp, sizeof(f->cp), "%s/audit.log.checkpoint", f->dir);
    snprintf(f->copy, sizeof(f->copy), "%s/copy", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[600];
        snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
        unlink(p);
    }
    if (d != NULL)
        closedir(d);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------- */

static vmenc_audit_log *open_log(const fixture *f, const uint8_t *key, uint32_t flags) {
    vmenc_audit_log_options o = {.struct_size = sizeof(o), .path = f->log, .key = key, .key_len = 32,
                                 .fsync = VMENC_AUDIT_FSYNC_NEVER,
                                 .flags = VMENC_AUDIT_LOG_SHARED | VMENC_AUDIT_LOG_RECOVER | flags,
                                 .lock_timeout_ms = 10000, .checkpoint_path = f->cp};
    vmenc_audit_log *log = NULL;
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_OK);
    return log;
}

static void append_n(vmenc_audit_log *log, const char *who, int n) {
    char target[32];
    for (int i = 0; i < n; i++) {
        snprintf(target, sizeof(target), "vm-%d", i);
        vmenc_audit_event ev = {.struct_size = sizeof(ev), .principal = who, .operation = "vm.encrypt",
                                .target = target, .outcome = VMENC_AUDIT_SUCCESS};
        assert_int_equal(vmenc_audit_log_append(log, &ev, NULL), VMENC_OK);
    }
}

/* run_command: what one CLI command does - open, append |n|, close (which seals). */
static void run_command(const fixture *f, int n, uint32_t flags) {
    /* Each command its own principal: two commands never write the same
     * record twice (same bytes, same time stamp, same chain position). */
    static int command;
    char who[32];
    snprintf(who, sizeof(who), "alice-%d", ++command);
    vmenc_audit_log *log = open_log(f, k_key, flags);
    append_n(log, who, n);
    vmenc_audit_log_free(log);
}

static vmenc_status check(const fixture *f, vmenc_audit_anchor_result *r) {
    memset(r, 0, sizeof(*r));
    r->struct_size = sizeof(*r);
    return vmenc_audit_checkpoint_check(k_key, sizeof(k_key), f->log, f->cp, r);
}

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    assert_int_equal(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const uint8_t *b, size_t len) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, len, fp), len);
    fclose(fp);
}

/* keep_lines cuts the log to its first |n| lines. */
static void keep_lines(const fixture *f, int n) {
    size_t len;
    uint8_t *b = slurp(f->log, &len);
    size_t off = 0;
    for (int i = 0; i < n && off < len; off++)
        if (b[off] == '\n')
            i++;
    assert_int_equal(truncate(f->log, (off_t)off), 0);
    free(b);
}

static int count_lines(const char *path) {
    size_t len;
    uint8_t *b = slurp(path, &len);
    int n = 0;
    for (size_t i = 0; i < len; i++)
        n += b[i] == '\n';
    free(b);
    return n;
}

static vmenc_status verify_log(const fixture *f, uint64_t expected_last, vmenc_audit_verify_result *r) {
    vmenc_audit_verify_options vo = {.struct_size = sizeof(vo), .key = k_key, .key_len = 32,
                                     .expected_last_seq = expected_last};
    memset(r, 0, sizeof(*r));
    r->struct_size = sizeof(*r);
    const char *paths[1] = {f->log};
    return vmenc_audit_verify_files(&vo, paths, 1, r);
}

/* ---- the cases --------------------------------------------------------------------------- */

static void test_sealed_at_close(void **state) {
    fixture *f = *state;
    run_command(f, 5, VMENC_AUDIT_LOG_CHECKPOINT_INIT);
    vmenc_audit_anchor_result r;
    assert_int_equal(check(f, &r), VMENC_OK);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_OK);
    assert_int_equal(r.sealed_seq, 5);
    struct stat st;
    assert_int_equal(stat(f->log, &st), 0);
    assert_int_equal(r.sealed_offset, (uint64_t)st.st_size);
    assert_int_equal(r.log_last_seq, 5);
    assert_true(r.sealed_time_ms > 0);
    assert_int_equal(stat(f->cp, &st), 0);
    assert_int_equal(st.st_size, AUDIT_CHECKPOINT_BYTES);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Later commands (no INIT) move it forward. */
    run_command(f, 3, 0);
    assert_int_equal(check(f, &r), VMENC_OK);
    assert_int_equal(r.sealed_seq, 8);
    /* An explicit seal with nothing new is a no-op. */
    vmenc_audit_log *log = open_log(f, k_key, 0);
    assert_int_equal(vmenc_audit_log_checkpoint(log), VMENC_OK);
    vmenc_audit_log_free(log);
    assert_int_equal(check(f, &r), VMENC_OK);
    assert_int_equal(r.sealed_seq, 8);
}

static void test_cut_by_n(void **state) {
    fixture *f = *state;
    run_command(f, 8, VMENC_AUDIT_LOG_CHECKPOINT_INIT);
    size_t len;
    uint8_t *orig = slurp(f->log, &len);
    for (int n = 1; n <= 8; n++) {
        spit(f->log, orig, len);
        keep_lines(f, 8 - n);
        vmenc_audit_verify_result vr;
        /* The chain alone cannot see it: what is left is a valid chain. */
        assert_int_equal(verify_log(f, 0, &vr), VMENC_OK);
        vmenc_audit_anchor_result r;
        assert_int_equal(check(f, &r), VMENC_E_AUDIT_TRUNCATED);
        assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_CUT);
        assert_int_equal(r.sealed_seq, 8);
        assert_int_equal(r.log_last_seq, (uint64_t)(8 - n));
        assert_int_equal(r.log_chain_differs, n == 8);
        /* With the sealed sequence as expected_last_seq the verifier says truncated too. */
        assert_int_equal(verify_log(f, r.sealed_seq, &vr), VMENC_E_AUDIT_TRUNCATED);
        assert_int_equal(vr.defect, VMENC_AUDIT_DEFECT_TRUNCATED);
    }
    free(orig);
}

static void test_emptied_never_moves_the_checkpoint(void **state) {
    fixture *f = *state;
    run_command(f, 4, VMENC_AUDIT_LOG_CHECKPOINT_INIT);
    size_t cp_len;
    uint8_t *cp0 = slurp(f->cp, &cp_len);
    assert_int_equal(truncate(f->log, 0), 0);
    vmenc_audit_anchor_result r;
    assert_int_equal(check(f, &r), VMENC_E_AUDIT_TRUNCATED);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_CUT);
    assert_int_equal(r.log_bytes, 0);
    assert_int_equal(r.log_last_seq, 0);
    assert_true(r.log_chain_differs);
    /* Commands go on writing (a new chain), more than there was: the seal
     * is refused every time and the checkpoint stays as it was. */
    vmenc_audit_log *log = open_log(f, k_key, 0);
    append_n(log, "mallory", 10);
    assert_int_not_equal(vmenc_audit_log_checkpoint(log), VMENC_OK);
    vmenc_audit_log_free(log);
    size_t cp_len2;
    uint8_t *cp1 = slurp(f->cp, &cp_len2);
    assert_int_equal(cp_len, cp_len2);
    assert_memory_equal(cp0, cp1, cp_len);
    assert_int_not_equal(check(f, &r), VMENC_OK);
    assert_true(r.state == VMENC_AUDIT_ANCHOR_CUT || r.state == VMENC_AUDIT_ANCHOR_DIVERGED);
    assert_true(r.log_chain_differs);
    /* Even with INIT a bad log does not move an existing checkpoint. */
    log = open_log(f, k_key, VMENC_AUDIT_LOG_CHECKPOINT_INIT);
    assert_int_not_equal(vmenc_audit_log_checkpoint(log), VMENC_OK);
    vmenc_audit_log_free(log);
    free(cp1);
    cp1 = slurp(f->cp, &cp_len2);
    assert_memory_equal(cp0, cp1, cp_len);
    free(cp0);
    free(cp1);
    /* A log file that is gone reads as empty. */
    assert_int_equal(unlink(f->log), 0);
    assert_int_equal(check(f, &r), VMENC_E_AUDIT_TRUNCATED);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_CUT);
}

static void test_older_copy(void **state) {
    fixture *f = *state;
    run_command(f, 3, VMENC_AUDIT_LOG_CHECKPOINT_INIT);
    size_t old_len;
    uint8_t *old = slurp(f->log, &old_len);
    run_command(f, 3, 0);
    size_t new_len, cp_len;
    uint8_t *newer = slurp(f->log, &new_len);
    uint8_t *cp = slurp(f->cp, &cp_len);
    /* The older copy alone: shorter than what was sealed. */
    spit(f->log, old, old_len);
    vmenc_audit_anchor_result r;
    assert_int_equal(check(f, &r), VMENC_E_AUDIT_TRUNCATED);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_CUT);
    assert_int_equal(r.sealed_seq, 6);
    assert_int_equal(r.log_last_seq, 3);
    assert_false(r.log_chain_differs);
    /* Written to since (a valid chain under the right key, longer than the
     * sealed head): another record stands where the sealed one ended. */
    run_command(f, 5, 0);
    vmenc_audit_verify_result vr;
    assert_int_equal(verify_log(f, 6, &vr), VMENC_OK); /* the chain and the count look fine */
    assert_int_equal(check(f, &r), VMENC_E_AUDIT_TAMPERED);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_DIVERGED);
    assert_int_equal(r.log_last_seq, 8);
    size_t cp2_len;
    uint8_t *cp2 = slurp(f->cp, &cp2_len);
    assert_memory_equal(cp, cp2, cp_len); /* not moved */
    /* The newer log back: intact, and sealing goes on. */
    spit(f->log, newer, new_len);
    assert_int_equal(check(f, &r), VMENC_OK);
    run_command(f, 1, 0);
    assert_int_equal(check(f, &r), VMENC_OK);
    assert_int_equal(r.sealed_seq, 7);
    free(old);
    free(newer);
    free(cp);
    free(cp2);
}

static void test_edited_record(void **state) {
    fixture *f = *state;
    run_command(f, 4, VMENC_AUDIT_LOG_CHECKPOINT_INIT);
    size_t len;
    uint8_t *b = slurp(f->log, &len);
    /* An edit in the middle: the chain finds it, the anchor still holds. */
    uint8_t *p = memmem(b, len, "alice", 5);
    assert_non_null(p);
    memcpy(p, "alicE", 5);
    spit(f->log, b, len);
    vmenc_audit_verify_result vr;
    assert_int_equal(verify_log(f, 4, &vr), VMENC_E_AUDIT_TAMPERED);
    assert_int_equal(vr.defect, VMENC_AUDIT_DEFECT_EDITED);
    assert_int_equal(vr.bad_index, 0);
    memcpy(p, "alice", 5);
    /* An edit of the sealed record itself: both find it. */
    uint8_t *last = b + len - 2;
    while (last > b && last[-1] != '\n')
        last--;
    uint8_t *q = memmem(last, (size_t)(b + len - last), "alice", 5);
    assert_non_null(q);
    memcpy(q, "bobby", 5);
    spit(f->log, b, len);
    assert_int_equal(verify_log(f, 4, &vr), VMENC_E_AUDIT_TAMPERED);
    vmenc_audit_anchor_result r;
    assert_int_equal(check(f, &r), VMENC_E_AUDIT_TAMPERED);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_DIVERGED);
    free(b);
}

static void test_checkpoint_tampered(void **state) {
    fixture *f = *state;
    run_command(f, 3, VMENC_AUDIT_LOG_CHECKPOINT_INIT);
    size_t len;
    uint8_t *cp = slurp(f->cp, &len);
    assert_int_equal(len, AUDIT_CHECKPOINT_BYTES);
    vmenc_audit_anchor_result r;
    /* Every bit of every byte matters. */
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            cp[i] ^= (uint8_t)(1u << bit);
            spit(f->cp, cp, len);
            vmenc_status s = check(f, &r);
            assert_int_not_equal(s, VMENC_OK);
            assert_true(r.state == VMENC_AUDIT_ANCHOR_BAD_SEAL || r.state == VMENC_AUDIT_ANCHOR_WRONG_KEY);
            cp[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* Cut short, extended, empty. */
    spit(f->cp, cp, len - 1);
    assert_int_equal(check(f, &r), VMENC_E_AUDIT_TAMPERED);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_BAD_SEAL);
    uint8_t longer[AUDIT_CHECKPOINT_BYTES + 1];
    memcpy(longer, cp, len);
    longer[len] = 0;
    spit(f->cp, longer, sizeof(longer));
    assert_int_equal(check(f, &r), VMENC_E_AUDIT_TAMPERED);
    spit(f->cp, cp, 0);
    assert_int_equal(check(f, &r), VMENC_E_AUDIT_TAMPERED);
    /* A bad checkpoint is evidence: the writer does not overwrite it. */
    spit(f->cp, cp, len - 1);
    vmenc_audit_log *log = open_log(f, k_key, VMENC_AUDIT_LOG_CHECKPOINT_INIT);
    append_n(log, "alice", 1);
    assert_int_equal(vmenc_audit_log_checkpoint(log), VMENC_E_AUDIT_TAMPERED);
    vmenc_audit_log_free(log);
    struct stat st;
    assert_int_equal(stat(f->cp, &st), 0);
    assert_int_equal(st.st_size, len - 1);
    /* The original back: it still vouches for the log (which grew). */
    spit(f->cp, cp, len);
    assert_int_equal(check(f, &r), VMENC_OK);
    assert_int_equal(r.sealed_seq, 3);
    free(cp);
}

static void test_checkpoint_wrong_key(void **state) {
    fixture *f = *state;
    run_command(f, 2, VMENC_AUDIT_LOG_CHECKPOINT_INIT);
    /* A checkpoint sealed by a log under another key. */
    audit_key k;
    assert_int_equal(audit_key_init(&k, k_other, sizeof(k_other)), VMENC_OK);
    audit_checkpoint cp = {.seq = 2, .offset = 10, .time_ms = 1};
    assert_int_equal(audit_checkpoint_seal(&k, &cp), VMENC_OK);
    audit_key_cleanup(&k);
    uint8_t buf[AUDIT_CHECKPOINT_BYTES];
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, buf, sizeof(buf));
    audit_checkpoint_serialise(&cbb, &cp);
    assert_int_equal(vmenc_cbb_status(&cbb), VMENC_OK);
    spit(f->cp, buf, sizeof(buf));
    vmenc_audit_anchor_result r;
    assert_int_equal(check(f, &r), VMENC_E_AUTH);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_WRONG_KEY);
}

static void test_checkpoint_removed(void **state) {
    fixture *f = *state;
    run_command(f, 3, VMENC_AUDIT_LOG_CHECKPOINT_INIT);
    assert_int_equal(unlink(f->cp), 0);
    vmenc_audit_anchor_result r;
    assert_int_equal(check(f, &r), VMENC_E_NOT_FOUND);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_MISSING);
    assert_int_equal(r.log_last_seq, 3);
    /* Later commands do not make it again: the removal stays visible. */
    run_command(f, 2, 0);
    vmenc_audit_log *log = open_log(f, k_key, 0);
    assert_int_equal(vmenc_audit_log_checkpoint(log), VMENC_E_NOT_FOUND);
    vmenc_audit_log_free(log);
    assert_int_equal(check(f, &r), VMENC_E_NOT_FOUND);
    assert_int_equal(access(f->cp, F_OK), -1);
    /* Removing both the log and the checkpoint does not make a fresh start. */
    assert_int_equal(unlink(f->log), 0);
    run_command(f, 1, 0);
    assert_int_equal(check(f, &r), VMENC_E_NOT_FOUND);
    /* Only an explicit INIT adopts a log. */
    run_command(f, 1, VMENC_AUDIT_LOG_CHECKPOINT_INIT);
    assert_int_equal(check(f, &r), VMENC_OK);
    assert_int_equal(r.sealed_seq, 2);
}

static void test_no_checkpoint_path(void **state) {
    fixture *f = *state;
    /* An older caller's options (without checkpoint_path) still open. */
    vmenc_audit_log_options o = {.struct_size = offsetof(vmenc_audit_log_options, checkpoint_path),
                                 .path = f->log, .key = k_key, .key_len = 32,
                                 .fsync = VMENC_AUDIT_FSYNC_NEVER};
    vmenc_audit_log *log = NULL;
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_OK);
    append_n(log, "alice", 1);
    assert_int_equal(vmenc_audit_log_checkpoint(log), VMENC_E_BAD_STATE);
    vmenc_audit_log_free(log);
    assert_int_equal(access(f->cp, F_OK), -1);
    o.struct_size = sizeof(o);
    o.checkpoint_path = "";
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_E_INVALID_ARG);
}

/* Several processes append and seal at once; the parent watches the
 * checkpoint: it never goes back, and ends on the real head. */
#define PROCS 4
#define ROUNDS 25
#define PER_ROUND 3
static void test_concurrent_monotonic(void **state) {
    fixture *f = *state;
    run_command(f, 1, VMENC_AUDIT_LOG_CHECKPOINT_INIT);
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            for (int i = 0; i < ROUNDS; i++) {
                vmenc_audit_log_options o = {.struct_size = sizeof(o), .path = f->log, .key = k_key,
                                             .key_len = 32, .fsync = VMENC_AUDIT_FSYNC_NEVER,
                                             .flags = VMENC_AUDIT_LOG_SHARED, .lock_timeout_ms = 30000,
                                             .checkpoint_path = f->cp};
                vmenc_audit_log *log = NULL;
                if (vmenc_audit_log_open(&o, &log) != VMENC_OK)
                    _exit(2);
                for (int j = 0; j < PER_ROUND; j++) {
                    vmenc_audit_event ev = {.struct_size = sizeof(ev), .principal = "worker",
                                            .operation = "vm.power_on", .outcome = VMENC_AUDIT_SUCCESS};
                    if (vmenc_audit_log_append(log, &ev, NULL) != VMENC_OK)
                        _exit(3);
                    if (j == 1 && vmenc_audit_log_checkpoint(log) != VMENC_OK)
                        _exit(4);
                }
                vmenc_audit_log_free(log); /* seals again */
            }
            _exit(0);
        }
    }
    audit_key k;
    assert_int_equal(audit_key_init(&k, k_key, sizeof(k_key)), VMENC_OK);
    uint64_t prev = 0, prev_off = 0, reads = 0, moves = 0;
    int running = PROCS;
    while (running > 0) {
        audit_checkpoint cp;
        vmenc_status s = audit_checkpoint_load(&k, f->cp, &cp);
        assert_int_equal(s, VMENC_OK); /* replaced atomically: never absent, never half-written */
        assert_true(cp.seq >= prev);
        assert_true(cp.offset >= prev_off);
        moves += cp.seq > prev;
        prev = cp.seq;
        prev_off = cp.offset;
        reads++;
        int st;
        pid_t w = waitpid(-1, &st, WNOHANG);
        if (w > 0) {
            assert_true(WIFEXITED(st));
            assert_int_equal(WEXITSTATUS(st), 0);
            running--;
        }
    }
    audit_key_cleanup(&k);
    print_message("# %llu checkpoint reads, %llu forward moves seen\n", (unsigned long long)reads,
                  (unsigned long long)moves);
    uint64_t total = 1 + PROCS * ROUNDS * PER_ROUND;
    assert_int_equal(count_lines(f->log), (int)total);
    vmenc_audit_anchor_result r;
    assert_int_equal(check(f, &r), VMENC_OK);
    assert_int_equal(r.sealed_seq, total); /* no lost checkpoint: the last seal is the real head */
    vmenc_audit_verify_result vr;
    assert_int_equal(verify_log(f, r.sealed_seq, &vr), VMENC_OK);
    assert_int_equal(vr.last_seq, total);
}

/* Threads of one process on two shared handles: appends and seals
 * interleave under the handles' mutexes and the file lock. */
typedef struct thread_arg {
    vmenc_audit_log *log;
    int failures;
} thread_arg;

static void *thread_main(void *p) {
    thread_arg *a = p;
    for (int i = 0; i < 40; i++) {
        vmenc_audit_event ev = {.struct_size = sizeof(ev), .principal = "thread", .operation = "vm.read",
                                .outcome = VMENC_AUDIT_SUCCESS};
        if (vmenc_audit_log_append(a->log, &ev, NULL) != VMENC_OK)
            a->failures++;
        if (i % 8 == 7 && vmenc_audit_log_checkpoint(a->log) != VMENC_OK)
            a->failures++;
    }
    return NULL;
}

static void test_threads(void **state) {
    fixture *f = *state;
    run_command(f, 1, VMENC_AUDIT_LOG_CHECKPOINT_INIT);
    vmenc_audit_log *h[2] = {open_log(f, k_key, 0), open_log(f, k_key, 0)};
    pthread_t t[4];
    thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg){.log = h[i % 2]};
        assert_int_equal(pthread_create(&t[i], NULL, thread_main, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(args[i].failures, 0);
    }
    vmenc_audit_log_free(h[0]);
    vmenc_audit_log_free(h[1]);
    vmenc_audit_anchor_result r;
    assert_int_equal(check(f, &r), VMENC_OK);
    assert_int_equal(r.sealed_seq, 1 + 4 * 40);
}

/* ---- the format ---------------------------------------------------------------------- */

static void test_format_round_trip(void **state) {
    (void)state;
    audit_key k;
    assert_int_equal(audit_key_init(&k, k_key, sizeof(k_key)), VMENC_OK);
    audit_checkpoint cp = {.seq = 0x0102030405060708ull, .has_chain = true, .offset = 4242, .time_ms = 1765000000000ull};
    memset(cp.hash, 0xab, sizeof(cp.hash));
    memset(cp.chain, 0x5c, sizeof(cp.chain));
    assert_int_equal(audit_checkpoint_seal(&k, &cp), VMENC_OK);
    uint8_t buf[AUDIT_CHECKPOINT_BYTES];
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, buf, sizeof(buf));
    audit_checkpoint_serialise(&cbb, &cp);
    assert_int_equal(vmenc_cbb_status(&cbb), VMENC_OK);
    assert_int_equal(vmenc_cbb_len(&cbb), AUDIT_CHECKPOINT_BYTES);
    assert_memory_equal(buf, "VMENCACP\x01\x01\x01\x02\x03\x04\x05\x06\x07\x08", 18);
    audit_checkpoint back;
    assert_int_equal(audit_checkpoint_open(&k, buf, sizeof(buf), &back), VMENC_OK);
    assert_memory_equal(&back.seq, &cp.seq, sizeof(cp.seq));
    assert_int_equal(back.offset, 4242);
    assert_int_equal(back.time_ms, cp.time_ms);
    assert_memory_equal(back.hash, cp.hash, 32);
    assert_memory_equal(back.chain, cp.chain, 16);
    assert_true(back.has_chain);
    /* The mac is BLAKE2b-256 under the chain key over the domain and body. */
    uint8_t mac[32];
    crypto_generichash_state st;
    crypto_generichash_init(&st, k_key, sizeof(k_key), 32);
    crypto_generichash_update(&st, (const uint8_t *)"vmenc-audit-v1 checkpoint\n", 26);
    crypto_generichash_update(&st, buf, AUDIT_CHECKPOINT_BODY_BYTES);
    crypto_generichash_final(&st, mac, 32);
    assert_memory_equal(mac, buf + AUDIT_CHECKPOINT_BODY_BYTES, 32);
    /* Rejections. */
    uint8_t bad[AUDIT_CHECKPOINT_BYTES + 1];
    memcpy(bad, buf, sizeof(buf));
    assert_int_equal(audit_checkpoint_parse(bad, 5, &back), VMENC_E_TRUNCATED);
    assert_int_equal(audit_checkpoint_parse(bad, sizeof(buf) - 1, &back), VMENC_E_TRUNCATED);
    assert_int_equal(audit_checkpoint_parse(bad, sizeof(buf) + 1, &back), VMENC_E_TRAILING_DATA);
    bad[0] = 'X';
    assert_int_equal(audit_checkpoint_parse(bad, sizeof(buf), &back), VMENC_E_BAD_MAGIC);
    memcpy(bad, buf, sizeof(buf));
    bad[8] = 2;
    assert_int_equal(audit_checkpoint_parse(bad, sizeof(buf), &back), VMENC_E_BAD_VERSION);
    memcpy(bad, buf, sizeof(buf));
    bad[9] = 3;
    assert_int_equal(audit_checkpoint_parse(bad, sizeof(buf), &back), VMENC_E_PARSE);
    memcpy(bad, buf, sizeof(buf));
    bad[9] = 0; /* no chain flag but a chain ID */
    assert_int_equal(audit_checkpoint_parse(bad, sizeof(buf), &back), VMENC_E_PARSE);
    /* seq 0 seals nothing: offset and hash must be zero. */
    audit_checkpoint z = {.seq = 0, .offset = 1};
    vmenc_cbb_init_fixed(&cbb, buf, sizeof(buf));
    audit_checkpoint_serialise(&cbb, &z);
    assert_int_equal(audit_checkpoint_parse(buf, sizeof(buf), &back), VMENC_E_PARSE);
    audit_key_cleanup(&k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sealed_at_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_by_n, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emptied_never_moves_the_checkpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_older_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edited_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_tampered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_wrong_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_checkpoint_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_monotonic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
        cmocka_unit_test(test_format_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
