/*
 * tests/test_audit_mirror.c - the cluster audit mirror interface
 * (lib/audit/mirror.h) against its directory-backed test double
 * (tests/support/audit_mirror_dir.c): each host's records reach the mirror
 * in chain order with the chain head, also from several handles of one
 * shared log and after an outage (catch-up from the local file); the
 * cluster-wide list is ordered by time and keeps each host's own order;
 * a local log compared with its mirrored copy is found intact, cut short,
 * emptied or diverged; a mirror ahead of the log is never written to; a
 * host whose mirrored records do not chain is counted.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit_mirror_dir.h"
#include "core/internal.h"
#include "vmenc/vmenc.h"

static const uint8_t k_key_a[32] = {0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b,
                                    0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26,
                                    0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30};
static const uint8_t k_key_b[32] = {0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x5b,
                                    0x5c, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66,
                                    0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70};

typedef struct fixture {
    char dir[256];
    char mdir[300];
    char log_a[300];
    char log_b[300];
    audit_mirror_dir mirror;
} fixture;

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[700];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    if (d != NULL)
        closedir(d);
    rmdir(dir);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    const char *base = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/vmenc-mirror-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->mdir, sizeof(f->mdir), "%s/mirror", f->dir);
    assert_int_equal(mkdir(f->mdir, 0700), 0);
    snprintf(f->log_a, sizeof(f->log_a), "%s/a.log", f->dir);
    snprintf(f->log_b, sizeof(f->log_b), "%s/b.log", f->dir);
    audit_mirror_dir_init(&f->mirror, f->mdir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    rm_tree(f->dir);
    free(f);
    return 0;
}

static vmenc_audit_log *open_log(const char *path, const uint8_t *key, uint32_t flags) {
    vmenc_audit_log_options o = {.struct_size = sizeof(o), .path = path, .key = key, .key_len = 32,
                                 .fsync = VMENC_AUDIT_FSYNC_NEVER, .flags = flags, .lock_timeout_ms = 5000};
    vmenc_audit_log *log = NULL;
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_OK);
    return log;
}

static vmenc_status emit(vmenc_audit_log *log, const char *who, uint64_t t) {
    vmenc_audit_event ev = {.struct_size = sizeof(ev), .time_ms = t, .principal = who, .operation = "vm.encrypt",
                            .outcome = VMENC_AUDIT_SUCCESS};
    return vmenc_audit_log_append(log, &ev, NULL);
}

static vmenc_status compare(fixture *f, const char *host, const char *path, const uint8_t *key,
                            vmenc_audit_cluster_result *r) {
    audit_key k;
    assert_int_equal(audit_key_init(&k, key, 32), VMENC_OK);
    memset(r, 0, sizeof(*r));
    r->struct_size = sizeof(*r);
    vmenc_status s = audit_mirror_compare(&f->mirror.base, &k, host, path, r);
    audit_key_cleanup(&k);
    return s;
}

static uint64_t mirror_head(fixture *f, const char *host) {
    uint64_t seq;
    uint8_t h[32];
    assert_int_equal(f->mirror.base.ops->head(&f->mirror.base, host, &seq, h), VMENC_OK);
    return seq;
}

static void keep_lines(const char *path, int n) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    int c, lines = 0;
    long off = 0;
    while (lines < n && (c = fgetc(fp)) != EOF) {
        off++;
        if (c == '\n')
            lines++;
    }
    fclose(fp);
    assert_int_equal(truncate(path, off), 0);
}

/* ---- the merge ------------------------------------------------------------------------- */

typedef struct seen {
    char host[16][8];
    uint64_t seq[16];
    uint64_t time[16];
    int n;
} seen;

static int collect(void *ctx, const audit_cluster_event *ev) {
    seen *s = ctx;
    assert_true(s->n < 16);
    snprintf(s->host[s->n], sizeof(s->host[0]), "%s", ev->host);
    s->seq[s->n] = ev->seq;
    s->time[s->n] = ev->time_ms;
    assert_non_null(memmem(ev->line, ev->len, "\"op\":\"vm.encrypt\"", 17));
    s->n++;
    return 0;
}

static void test_merge_by_time(void **state) {
    fixture *f = *state;
    vmenc_audit_log *a = open_log(f->log_a, k_key_a, 0);
    vmenc_audit_log *b = open_log(f->log_b, k_key_b, 0);
    assert_int_equal(audit_log_set_mirror(a, &f->mirror.base, "esx01"), VMENC_OK);
    assert_int_equal(audit_log_set_mirror(b, &f->mirror.base, "esx02"), VMENC_OK);
    /* Interleaved in time; esx01's clock steps back once (7000 then 6000). */
    assert_int_equal(emit(a, "alice", 1000), VMENC_OK);
    assert_int_equal(emit(b, "bob", 2000), VMENC_OK);
    assert_int_equal(emit(a, "alice", 3000), VMENC_OK);
    assert_int_equal(emit(b, "bob", 3000), VMENC_OK);
    assert_int_equal(emit(a, "alice", 7000), VMENC_OK);
    assert_int_equal(emit(a, "alice", 6000), VMENC_OK);
    assert_int_equal(emit(b, "bob", 6500), VMENC_OK);
    vmenc_audit_log_free(a);
    vmenc_audit_log_free(b);
    assert_int_equal(mirror_head(f, "esx01"), 4);
    assert_int_equal(mirror_head(f, "esx02"), 3);
    seen s = {0};
    uint64_t skipped = 99;
    assert_int_equal(audit_mirror_merge(&f->mirror.base, collect, &s, &skipped), VMENC_OK);
    assert_int_equal(skipped, 0);
    assert_int_equal(s.n, 7);
    const char *want_host[7] = {"esx01", "esx02", "esx01", "esx02", "esx02", "esx01", "esx01"};
    const uint64_t want_seq[7] = {1, 1, 2, 2, 3, 3, 4};
    for (int i = 0; i < 7; i++) {
        assert_string_equal(s.host[i], want_host[i]);
        assert_int_equal(s.seq[i], want_seq[i]);
    }
    /* A line in the mirror that is not a record is skipped and counted. */
    char p[400];
    snprintf(p, sizeof(p), "%s/esx03.records", f->mdir);
    FILE *fp = fopen(p, "w");
    fputs("{\"seq\":1,\"not\":\"a record\"}\n", fp);
    fclose(fp);
    seen s2 = {0};
    assert_int_equal(audit_mirror_merge(&f->mirror.base, collect, &s2, &skipped), VMENC_OK);
    assert_int_equal(s2.n, 7);
    assert_int_equal(skipped, 1);
}

/* ---- compare ------------------------------------------------------------------------------- */

static void write_six(fixture *f) {
    vmenc_audit_log *a = open_log(f->log_a, k_key_a, 0);
    assert_int_equal(audit_log_set_mirror(a, &f->mirror.base, "esx01"), VMENC_OK);
    for (int i = 0; i < 6; i++)
        assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    vmenc_audit_log_free(a);
}

static void test_compare(void **state) {
    fixture *f = *state;
    write_six(f);
    vmenc_audit_cluster_result r;
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_OK);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_OK);
    assert_int_equal(r.mirror_seq, 6);
    assert_int_equal(r.log_last_seq, 6);
    assert_int_equal(r.num_hosts, 1);
    assert_int_equal(r.num_records, 6);
    assert_int_equal(r.broken_hosts, 0);
    /* Nothing mirrored for a host: missing. */
    assert_int_equal(compare(f, "esx09", f->log_a, k_key_a, &r), VMENC_E_NOT_FOUND);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_MISSING);
    char orig[400];
    snprintf(orig, sizeof(orig), "%s/a.orig", f->dir);
    char cmd[1000];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", f->log_a, orig);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", orig, f->log_a);
    /* Cut short by N. */
    for (int n = 1; n <= 6; n++) {
        assert_int_equal(system(cmd), 0);
        keep_lines(f->log_a, 6 - n);
        assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_E_AUDIT_TRUNCATED);
        assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_CUT);
        assert_int_equal(r.log_last_seq, (uint64_t)(6 - n));
        assert_int_equal(r.mirror_seq, 6);
    }
    /* Gone altogether. */
    assert_int_equal(unlink(f->log_a), 0);
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_E_AUDIT_TRUNCATED);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_CUT);
    /* A record edited: diverged there. */
    assert_int_equal(system(cmd), 0);
    FILE *fp = fopen(f->log_a, "r+b");
    char buf[8192];
    size_t len = fread(buf, 1, sizeof(buf), fp);
    char *third = buf;
    for (int i = 0; i < 2; i++)
        third = strchr(third, '\n') + 1;
    char *al = memmem(third, len - (size_t)(third - buf), "alice", 5);
    assert_non_null(al);
    al[0] = 'A';
    fseek(fp, 0, SEEK_SET);
    fwrite(buf, 1, len, fp);
    fclose(fp);
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_E_AUDIT_TAMPERED);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_DIVERGED);
    assert_int_equal(r.diverged_seq, 3);
    /* Replaced by an older copy and written to since (without the mirror):
     * as long as the local chain, but not the mirrored records. */
    assert_int_equal(system(cmd), 0);
    keep_lines(f->log_a, 2);
    vmenc_audit_log *a = open_log(f->log_a, k_key_a, 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(emit(a, "mallory", 0), VMENC_OK);
    vmenc_audit_log_free(a);
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_E_AUDIT_TAMPERED);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_DIVERGED);
    assert_int_equal(r.diverged_seq, 3);
    assert_int_equal(r.log_last_seq, 8);
}

static void test_mirror_ahead_is_never_written(void **state) {
    fixture *f = *state;
    write_six(f);
    keep_lines(f->log_a, 3);
    vmenc_audit_log *a = open_log(f->log_a, k_key_a, 0);
    assert_int_equal(audit_log_set_mirror(a, &f->mirror.base, "esx01"), VMENC_OK);
    /* The record goes to the local log (the command does not fail); the
     * mirror refuses (it is at 6) and the catch-up finds the mirror ahead:
     * reported in the mirror state, nothing written. */
    assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    audit_log_mirror_info mi;
    assert_int_equal(audit_log_mirror_state(a, &mi), VMENC_OK);
    assert_true(mi.installed && mi.behind);
    assert_int_equal(mi.last_rv, VMENC_E_AUDIT_TRUNCATED);
    assert_int_equal(mi.failures, 2);
    vmenc_audit_log_free(a);
    assert_int_equal(mirror_head(f, "esx01"), 6);
    vmenc_audit_cluster_result r;
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_E_AUDIT_TRUNCATED);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_CUT);
    assert_int_equal(r.log_last_seq, 5);
}

static void test_catch_up_after_outage(void **state) {
    fixture *f = *state;
    vmenc_audit_log *a = open_log(f->log_a, k_key_a, 0);
    assert_int_equal(audit_log_set_mirror(a, &f->mirror.base, "esx01"), VMENC_OK);
    assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    f->mirror.fail_appends = 2;
    /* In the local log, not (yet) in the mirror: the append succeeds (the
     * local log is the truth; a control plane that is down must not fail
     * the command) and the lag is visible. */
    assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    audit_log_mirror_info mi;
    assert_int_equal(audit_log_mirror_state(a, &mi), VMENC_OK);
    assert_true(mi.behind);
    assert_int_equal(mi.last_rv, VMENC_E_KMS_UNAVAILABLE);
    assert_int_equal(mirror_head(f, "esx01"), 1);
    vmenc_audit_cluster_result r;
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_OK); /* behind, not wrong */
    assert_int_equal(r.mirror_seq, 1);
    assert_int_equal(r.log_last_seq, 3);
    /* The next append brings it up to date, in one piece, in order. */
    assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    assert_int_equal(mirror_head(f, "esx01"), 4);
    assert_int_equal(audit_log_mirror_state(a, &mi), VMENC_OK);
    assert_false(mi.behind);
    assert_int_equal(mi.last_rv, VMENC_OK);
    assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    vmenc_audit_log_free(a);
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_OK);
    assert_int_equal(r.mirror_seq, 5);
    assert_int_equal(r.broken_hosts, 0);
}

static void test_shared_writers_one_order(void **state) {
    fixture *f = *state;
    vmenc_audit_log *h1 = open_log(f->log_a, k_key_a, VMENC_AUDIT_LOG_SHARED);
    vmenc_audit_log *h2 = open_log(f->log_a, k_key_a, VMENC_AUDIT_LOG_SHARED);
    vmenc_audit_log *h3 = open_log(f->log_a, k_key_a, VMENC_AUDIT_LOG_SHARED); /* no mirror */
    assert_int_equal(audit_log_set_mirror(h1, &f->mirror.base, "esx01"), VMENC_OK);
    assert_int_equal(audit_log_set_mirror(h2, &f->mirror.base, "esx01"), VMENC_OK);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(emit(h1, "p1", 0), VMENC_OK);
        assert_int_equal(emit(h2, "p2", 0), VMENC_OK);
        if (i % 3 == 0)
            assert_int_equal(emit(h3, "p3", 0), VMENC_OK); /* the next mirrored append carries it */
    }
    assert_int_equal(emit(h1, "p1", 0), VMENC_OK);
    vmenc_audit_log_free(h1);
    vmenc_audit_log_free(h2);
    vmenc_audit_log_free(h3);
    assert_true(f->mirror.conflicts >= 4);
    vmenc_audit_cluster_result r;
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_OK);
    assert_int_equal(r.mirror_seq, 25);
    assert_int_equal(r.log_last_seq, 25);
    assert_int_equal(r.num_records, 25);
    assert_int_equal(r.broken_hosts, 0);
}

static void test_broken_mirror_chain(void **state) {
    fixture *f = *state;
    write_six(f);
    vmenc_audit_log *b = open_log(f->log_b, k_key_b, 0);
    assert_int_equal(audit_log_set_mirror(b, &f->mirror.base, "esx02"), VMENC_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(emit(b, "bob", 0), VMENC_OK);
    vmenc_audit_log_free(b);
    /* Someone with write access to the mirror drops esx02's second record. */
    char p[400];
    snprintf(p, sizeof(p), "%s/esx02.records", f->mdir);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "sed -i 2d '%s'", p);
    assert_int_equal(system(cmd), 0);
    vmenc_audit_cluster_result r;
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_E_AUDIT_TAMPERED);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_OK); /* esx01 itself is fine */
    assert_int_equal(r.broken_hosts, 1);
    assert_int_equal(r.num_hosts, 2);
    /* And esx02's own comparison finds its local log longer than a mirror
     * that lost a record in the middle: diverged. */
    assert_int_equal(compare(f, "esx02", f->log_b, k_key_b, &r), VMENC_E_AUDIT_TAMPERED);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_DIVERGED);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_merge_by_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compare, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mirror_ahead_is_never_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_catch_up_after_outage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_writers_one_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_mirror_chain, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
