/*
 * tests/test_audit_etcd.c - the etcd audit mirror (lib/control/etcd/
 * audit_mirror.c) against a real 3-member mutual-TLS etcd cluster started
 * and stopped here, driven through real audit logs (lib/audit/log.c) the
 * way a workspace drives it: the key layout and the compare-and-swap (a
 * stale or forked append stores nothing); two hosts' events all present,
 * each host's in order, merged by time; a host's local log cut short,
 * emptied, or replaced by an older copy and written to, found by the
 * comparison; a catch-up bigger than one transaction (chunks of <= 128
 * ops); a lost answer (VMENC_E_OUTCOME_UNKNOWN, injected through the fault
 * hook, applied or not) never duplicating or skipping a record; a follower
 * killed (every append mirrored), the leader killed (mirrored again within
 * a few appends); quorum lost (every append still succeeds, the lag is
 * visible, the mirror catches up once quorum is back). Exits 77 if etcd
 * cannot start.
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
#include <time.h>
#include <unistd.h>

#include "audit/mirror.h"
#include "control/etcd/audit_mirror.h"
#include "core/internal.h"
#include "etcd_cluster.h"
#include "vmenc/vmenc.h"

static etcd_cluster g_cluster;

static const uint8_t k_key_a[32] = {0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b,
                                    0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26,
                                    0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30};
static const uint8_t k_key_b[32] = {0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x5b,
                                    0x5c, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66,
                                    0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70};

typedef struct fixture {
    char dir[256];
    char log_a[300], log_b[300];
    char cluster[32];
    vmenc_etcd *client;
    audit_mirror *mirror;
} fixture;

static vmenc_etcd *new_client(uint32_t request_timeout_ms) {
    vmenc_etcd_config cfg;
    etcd_cluster_config(&g_cluster, &cfg);
    cfg.request_timeout_ms = request_timeout_ms;
    vmenc_etcd *c = NULL;
    assert_int_equal(vmenc_etcd_new(&cfg, &c), VMENC_OK);
    return c;
}

static int setup(void **state) {
    static int n;
    fixture *f = calloc(1, sizeof(*f));
    const char *base = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/vmenc-auditetcd-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->log_a, sizeof(f->log_a), "%s/a.log", f->dir);
    snprintf(f->log_b, sizeof(f->log_b), "%s/b.log", f->dir);
    /* a cluster name of its own: every test starts from an empty mirror */
    snprintf(f->cluster, sizeof(f->cluster), "a%d-%d", (int)getpid(), n++);
    f->client = new_client(1500);
    assert_int_equal(ctl_audit_mirror_new(f->client, false, f->cluster, &f->mirror), VMENC_OK);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    audit_mirror_free(f->mirror);
    vmenc_etcd_free(f->client);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
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
    vmenc_status s = audit_mirror_compare(f->mirror, &k, host, path, r);
    audit_key_cleanup(&k);
    return s;
}

static uint64_t mirror_head(fixture *f, const char *host) {
    uint64_t seq;
    uint8_t h[32];
    assert_int_equal(f->mirror->ops->head(f->mirror, host, &seq, h), VMENC_OK);
    return seq;
}

static bool mirror_behind(vmenc_audit_log *log) {
    audit_log_mirror_info mi;
    assert_int_equal(audit_log_mirror_state(log, &mi), VMENC_OK);
    return mi.behind;
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

/* Every mirrored record of |host|: seq 1..n exactly once, in order. */
typedef struct seqs {
    uint64_t next;
    int bad;
} seqs;

static int check_seq(void *ctx, uint64_t seq, const uint8_t *line, size_t len) {
    seqs *s = ctx;
    (void)line;
    if (seq != s->next || len == 0)
        s->bad++;
    s->next = seq + 1;
    return 0;
}

static uint64_t mirrored_in_order(fixture *f, const char *host) {
    seqs s = {.next = 1};
    assert_int_equal(f->mirror->ops->read(f->mirror, host, 1, check_seq, &s), VMENC_OK);
    assert_int_equal(s.bad, 0);
    return s.next - 1;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void wait_leader(fixture *f) {
    for (int i = 0; i < 100; i++) {
        if (etcd_cluster_leader(&g_cluster, f->client) >= 0)
            return;
        sleep_ms(100);
    }
    fail_msg("no etcd leader after 10 s");
}

/* ---- the layout and the compare-and-swap --------------------------------------------------- */

static void test_layout_and_cas(void **state) {
    fixture *f = *state;
    vmenc_audit_log *a = open_log(f->log_a, k_key_a, 0);
    assert_int_equal(audit_log_set_mirror(a, f->mirror, "esx01"), VMENC_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    assert_false(mirror_behind(a));
    /* The keys, as docs/cluster.md "Events" lays them out. */
    char key[200];
    snprintf(key, sizeof(key), "/vmenc/%s/audit/head/esx01", f->cluster);
    vmenc_etcd_range_req rq = {.key = (const uint8_t *)key, .key_len = strlen(key)};
    vmenc_etcd_result r;
    assert_int_equal(vmenc_etcd_range(f->client, &rq, &r), VMENC_OK);
    assert_int_equal(r.num_kvs, 1);
    assert_int_equal(r.kvs[0].value_len, 2 + 64 + 1);
    assert_memory_equal(r.kvs[0].value, "3 ", 2);
    vmenc_etcd_result_cleanup(&r);
    snprintf(key, sizeof(key), "/vmenc/%s/audit/rec/esx01/00000000000000000002", f->cluster);
    rq.key_len = strlen(key);
    assert_int_equal(vmenc_etcd_range(f->client, &rq, &r), VMENC_OK);
    assert_int_equal(r.num_kvs, 1);
    assert_non_null(memmem(r.kvs[0].value, r.kvs[0].value_len, "\"seq\":2,", 8));
    assert_int_not_equal(r.kvs[0].value[r.kvs[0].value_len - 1], '\n');
    vmenc_etcd_result_cleanup(&r);

    /* Read the log's lines to replay them as a stale or forked writer. */
    FILE *fp = fopen(f->log_a, "rb");
    assert_non_null(fp);
    char *lines[3] = {0};
    size_t caps[3] = {0};
    for (int i = 0; i < 3; i++)
        assert_true(getline(&lines[i], &caps[i], fp) > 0);
    fclose(fp);
    uint8_t h[32] = {0};
    /* record 1 again: the head exists, the create-compare fails */
    assert_int_equal(f->mirror->ops->append(f->mirror, "esx01", 1, 1, (const uint8_t *)lines[0], strlen(lines[0]), h),
                     VMENC_E_CONFLICT);
    /* record 3 again on top of 2: the head is at 3 */
    assert_int_equal(f->mirror->ops->append(f->mirror, "esx01", 3, 3, (const uint8_t *)lines[2], strlen(lines[2]), h),
                     VMENC_E_CONFLICT);
    /* record 2 as record 4's first line: not a record 4 - refused before sending */
    assert_int_equal(f->mirror->ops->append(f->mirror, "esx01", 4, 4, (const uint8_t *)lines[1], strlen(lines[1]), h),
                     VMENC_E_INVALID_ARG);
    assert_int_equal(f->mirror->ops->append(f->mirror, "a/b", 1, 1, (const uint8_t *)lines[0], strlen(lines[0]), h),
                     VMENC_E_INVALID_ARG);
    for (int i = 0; i < 3; i++)
        free(lines[i]);
    assert_int_equal(mirror_head(f, "esx01"), 3);
    assert_int_equal(mirrored_in_order(f, "esx01"), 3);
    /* A record of another chain whose prev does not match the head: the
     * value compare fails, nothing stored. */
    vmenc_audit_log *b = open_log(f->log_b, k_key_b, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(emit(b, "bob", 0), VMENC_OK);
    vmenc_audit_log_free(b);
    fp = fopen(f->log_b, "rb");
    char *line = NULL;
    size_t cap = 0;
    for (int i = 0; i < 4; i++)
        assert_true(getline(&line, &cap, fp) > 0);
    fclose(fp);
    assert_int_equal(f->mirror->ops->append(f->mirror, "esx01", 4, 4, (const uint8_t *)line, strlen(line), h),
                     VMENC_E_CONFLICT);
    free(line);
    assert_int_equal(mirror_head(f, "esx01"), 3);
    vmenc_audit_log_free(a);
    vmenc_audit_cluster_result cr;
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &cr), VMENC_OK);
    assert_int_equal(cr.mirror_seq, 3);
}

/* ---- two hosts, merged by time -------------------------------------------------------------- */

typedef struct merged {
    int n;
    int order_bad;
    uint64_t last_time;
    uint64_t last_seq[2];
} merged;

static int on_event(void *ctx, const audit_cluster_event *ev) {
    merged *m = ctx;
    int h = strcmp(ev->host, "esx01") == 0 ? 0 : 1;
    if (ev->seq != m->last_seq[h] + 1 || ev->time_ms < m->last_time)
        m->order_bad++;
    m->last_seq[h] = ev->seq;
    m->last_time = ev->time_ms;
    m->n++;
    return 0;
}

static void test_two_hosts_in_order(void **state) {
    fixture *f = *state;
    vmenc_audit_log *a = open_log(f->log_a, k_key_a, 0);
    vmenc_audit_log *b = open_log(f->log_b, k_key_b, 0);
    assert_int_equal(audit_log_set_mirror(a, f->mirror, "esx01"), VMENC_OK);
    /* host b uses a mirror of its own (its own client), as another host would */
    vmenc_etcd *cb = new_client(1500);
    audit_mirror *mb = NULL;
    assert_int_equal(ctl_audit_mirror_new(cb, true, f->cluster, &mb), VMENC_OK);
    assert_int_equal(audit_log_set_mirror(b, mb, "esx02"), VMENC_OK);
    uint64_t t0 = 1700000000000ull;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(emit(a, "alice", t0 + 10 * (uint64_t)i), VMENC_OK);
        assert_int_equal(emit(b, "bob", t0 + 10 * (uint64_t)i + 5), VMENC_OK);
    }
    vmenc_audit_log_free(a);
    vmenc_audit_log_free(b);
    audit_mirror_free(mb);
    merged m = {0};
    uint64_t skipped = 99;
    assert_int_equal(audit_mirror_merge(f->mirror, on_event, &m, &skipped), VMENC_OK);
    assert_int_equal(m.n, 20);
    assert_int_equal(m.order_bad, 0);
    assert_int_equal(skipped, 0);
    vmenc_audit_cluster_result r;
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_OK);
    assert_int_equal(r.num_hosts, 2);
    assert_int_equal(r.num_records, 20);
    assert_int_equal(r.broken_hosts, 0);
    assert_int_equal(compare(f, "esx02", f->log_b, k_key_b, &r), VMENC_OK);
    assert_int_equal(r.mirror_seq, 10);
    assert_int_equal(r.log_last_seq, 10);
}

/* ---- a local log cut, emptied, replaced ------------------------------------------------------- */

static void test_cut_log_detected(void **state) {
    fixture *f = *state;
    vmenc_audit_log *a = open_log(f->log_a, k_key_a, 0);
    assert_int_equal(audit_log_set_mirror(a, f->mirror, "esx01"), VMENC_OK);
    for (int i = 0; i < 6; i++)
        assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    vmenc_audit_log_free(a);
    char orig[320];
    snprintf(orig, sizeof(orig), "%s.orig", f->log_a);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", f->log_a, orig);
    assert_int_equal(system(cmd), 0);
    vmenc_audit_cluster_result r;
    for (int keep = 5; keep >= 0; keep -= 2) {
        keep_lines(f->log_a, keep);
        assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_E_AUDIT_TRUNCATED);
        assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_CUT);
        assert_int_equal(r.mirror_seq, 6);
        assert_int_equal(r.log_last_seq, (uint64_t)keep);
        snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", orig, f->log_a);
        assert_int_equal(system(cmd), 0);
    }
    /* emptied */
    assert_int_equal(truncate(f->log_a, 0), 0);
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_E_AUDIT_TRUNCATED);
    assert_int_equal(r.log_last_seq, 0);
    /* an older copy (3 records) written to by a writer without the mirror:
     * records 4..7 are not the mirrored 4..6 - diverged at 4; and the
     * mirror, ahead of what the log had, was never written to */
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", orig, f->log_a);
    assert_int_equal(system(cmd), 0);
    keep_lines(f->log_a, 3);
    vmenc_audit_log *w = open_log(f->log_a, k_key_a, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(emit(w, "mallory", 0), VMENC_OK);
    vmenc_audit_log_free(w);
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_E_AUDIT_TAMPERED);
    assert_int_equal(r.state, VMENC_AUDIT_ANCHOR_DIVERGED);
    assert_int_equal(r.diverged_seq, 4);
    /* ... and a mirrored writer on it now is refused by the mirror
     * (catch-up finds the mirrored head 6 is not the log's record 6) */
    a = open_log(f->log_a, k_key_a, 0);
    assert_int_equal(audit_log_set_mirror(a, f->mirror, "esx01"), VMENC_OK);
    assert_int_equal(emit(a, "mallory", 0), VMENC_OK); /* the local log takes it */
    audit_log_mirror_info mi;
    assert_int_equal(audit_log_mirror_state(a, &mi), VMENC_OK);
    assert_true(mi.behind);
    assert_int_equal(mi.last_rv, VMENC_E_AUDIT_TAMPERED);
    vmenc_audit_log_free(a);
    assert_int_equal(mirror_head(f, "esx01"), 6);
}

/* ---- a catch-up larger than one transaction ---------------------------------------------------- */

static vmenc_status fail_all(void *ctx, ctl_audit_fault_phase phase, vmenc_status rv) {
    (void)ctx;
    return phase == CTL_AUDIT_FAULT_BEFORE ? VMENC_E_CONTROL_UNAVAILABLE : rv;
}

static void test_chunked_catch_up(void **state) {
    fixture *f = *state;
    vmenc_audit_log *a = open_log(f->log_a, k_key_a, 0);
    assert_int_equal(audit_log_set_mirror(a, f->mirror, "esx01"), VMENC_OK);
    assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    ctl_audit_mirror_set_fault(f->mirror, fail_all, NULL);
    for (int i = 0; i < 299; i++)
        assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    assert_true(mirror_behind(a));
    assert_int_equal(mirror_head(f, "esx01"), 1);
    ctl_audit_mirror_set_fault(f->mirror, NULL, NULL);
    ctl_audit_mirror_stats s0, s1;
    ctl_audit_mirror_stats_get(f->mirror, &s0);
    assert_int_equal(emit(a, "alice", 0), VMENC_OK); /* record 301 brings 2..301 */
    ctl_audit_mirror_stats_get(f->mirror, &s1);
    assert_false(mirror_behind(a));
    /* 300 records at <= 127 per txn (128 ops with the head) */
    assert_int_equal(s1.txns - s0.txns, 3);
    vmenc_audit_log_free(a);
    assert_int_equal(mirrored_in_order(f, "esx01"), 301);
    vmenc_audit_cluster_result r;
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_OK);
    assert_int_equal(r.num_records, 301);
}

/* ---- lost answers ---------------------------------------------------------------------------- */

typedef struct lose {
    int after_left;  /* successful txns whose answer is "lost" */
    int before_left; /* txns "lost" before they were sent */
} lose;

static vmenc_status lose_answers(void *ctx, ctl_audit_fault_phase phase, vmenc_status rv) {
    lose *l = ctx;
    if (phase == CTL_AUDIT_FAULT_BEFORE && l->before_left > 0) {
        l->before_left--;
        return VMENC_E_OUTCOME_UNKNOWN;
    }
    if (phase == CTL_AUDIT_FAULT_AFTER && rv == VMENC_OK && l->after_left > 0) {
        l->after_left--;
        return VMENC_E_OUTCOME_UNKNOWN;
    }
    return rv;
}

static void test_outcome_unknown(void **state) {
    fixture *f = *state;
    vmenc_audit_log *a = open_log(f->log_a, k_key_a, 0);
    assert_int_equal(audit_log_set_mirror(a, f->mirror, "esx01"), VMENC_OK);
    lose l = {0};
    ctl_audit_mirror_set_fault(f->mirror, lose_answers, &l);
    ctl_audit_mirror_stats st;
    for (int i = 0; i < 12; i++) {
        /* applied but answer lost (even), or lost before it was sent (odd) */
        if (i % 2 == 0)
            l.after_left = 1;
        else
            l.before_left = 1;
        assert_int_equal(emit(a, "alice", 0), VMENC_OK);
        assert_false(mirror_behind(a));
        assert_int_equal(mirror_head(f, "esx01"), (uint64_t)i + 1);
    }
    ctl_audit_mirror_stats_get(f->mirror, &st);
    assert_int_equal(st.unknown, 12);
    assert_int_equal(st.resolved_done, 6);
    assert_int_equal(st.resolved_redo, 6);
    /* Lost twice before sending: given up, behind; the next append's
     * catch-up sends both records, once. */
    l.before_left = 2;
    assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    assert_true(mirror_behind(a));
    assert_int_equal(mirror_head(f, "esx01"), 12);
    l.after_left = 1; /* and the catch-up's answer is lost too */
    assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    assert_false(mirror_behind(a));
    vmenc_audit_log_free(a);
    ctl_audit_mirror_set_fault(f->mirror, NULL, NULL);
    assert_int_equal(mirrored_in_order(f, "esx01"), 14);
    vmenc_audit_cluster_result r;
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_OK);
    assert_int_equal(r.num_records, 14);
    assert_int_equal(r.broken_hosts, 0);
}

/* ---- member faults ----------------------------------------------------------------------------- */

static void test_member_killed(void **state) {
    fixture *f = *state;
    wait_leader(f);
    vmenc_audit_log *a = open_log(f->log_a, k_key_a, 0);
    assert_int_equal(audit_log_set_mirror(a, f->mirror, "esx01"), VMENC_OK);
    assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    /* a follower killed: every append is mirrored at once */
    int leader = etcd_cluster_leader(&g_cluster, f->client);
    assert_true(leader >= 0);
    int follower = (leader + 1) % ETCD_CLUSTER_MEMBERS;
    assert_int_equal(etcd_cluster_kill(&g_cluster, follower), 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(emit(a, "alice", 0), VMENC_OK);
        assert_false(mirror_behind(a));
    }
    assert_int_equal(etcd_cluster_restart(&g_cluster, follower), 0);
    /* the leader killed: appends succeed locally throughout; the mirror is
     * up to date again within a few appends once a new leader is elected */
    wait_leader(f);
    leader = etcd_cluster_leader(&g_cluster, f->client);
    assert_true(leader >= 0);
    assert_int_equal(etcd_cluster_kill(&g_cluster, leader), 0);
    int n = 0;
    do {
        assert_int_equal(emit(a, "alice", 0), VMENC_OK);
        n++;
        if (mirror_behind(a))
            sleep_ms(200);
    } while (mirror_behind(a) && n < 40);
    assert_false(mirror_behind(a));
    assert_int_equal(etcd_cluster_restart(&g_cluster, leader), 0);
    vmenc_audit_log_free(a);
    wait_leader(f);
    uint64_t total = 6 + (uint64_t)n;
    assert_int_equal(mirrored_in_order(f, "esx01"), total);
    vmenc_audit_cluster_result r;
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_OK);
    assert_int_equal(r.mirror_seq, total);
}

static void test_quorum_lost(void **state) {
    fixture *f = *state;
    wait_leader(f);
    vmenc_audit_log *a = open_log(f->log_a, k_key_a, 0);
    /* the writer's mirror on a client with a short request timeout: the
     * member left without quorum answers nothing until it */
    audit_mirror *wm = NULL;
    assert_int_equal(ctl_audit_mirror_new(new_client(700), true, f->cluster, &wm), VMENC_OK);
    assert_int_equal(audit_log_set_mirror(a, wm, "esx01"), VMENC_OK);
    audit_log_set_mirror_backoff(a, 600);
    assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    assert_int_equal(etcd_cluster_kill(&g_cluster, 1), 0);
    assert_int_equal(etcd_cluster_kill(&g_cluster, 2), 0);
    /* No quorum: every append succeeds (the local log is the truth); the
     * first one pays the timeout, the ones in the back-off do not try. */
    uint64_t t0 = vmenc_now_monotonic_ms();
    for (int i = 0; i < 5; i++)
        assert_int_equal(emit(a, "alice", 0), VMENC_OK);
    uint64_t took = vmenc_now_monotonic_ms() - t0;
    audit_log_mirror_info mi;
    assert_int_equal(audit_log_mirror_state(a, &mi), VMENC_OK);
    assert_true(mi.behind);
    assert_true(mi.last_rv == VMENC_E_CONTROL_UNAVAILABLE || mi.last_rv == VMENC_E_OUTCOME_UNKNOWN);
    assert_int_equal(mi.failures, 5);
    print_message("# quorum lost: 5 appends in %llu ms, mirror status %s\n", (unsigned long long)took,
                  vmenc_strerror(mi.last_rv));
    assert_int_equal(etcd_cluster_restart(&g_cluster, 1), 0);
    assert_int_equal(etcd_cluster_restart(&g_cluster, 2), 0);
    wait_leader(f);
    /* the lag is visible: the mirror holds 2 of the log's 7 records */
    vmenc_audit_cluster_result r;
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_OK);
    assert_true(r.mirror_seq <= 3); /* 3: the txn sent without quorum was applied once quorum came back */
    assert_int_equal(r.log_last_seq, 7);
    sleep_ms(650); /* the back-off */
    int n = 0;
    do {
        assert_int_equal(emit(a, "alice", 0), VMENC_OK);
        n++;
        if (mirror_behind(a))
            sleep_ms(650);
    } while (mirror_behind(a) && n < 20);
    assert_false(mirror_behind(a));
    vmenc_audit_log_free(a);
    audit_mirror_free(wm);
    uint64_t total = 7 + (uint64_t)n;
    assert_int_equal(mirrored_in_order(f, "esx01"), total);
    assert_int_equal(compare(f, "esx01", f->log_a, k_key_a, &r), VMENC_OK);
    assert_int_equal(r.mirror_seq, total);
    assert_int_equal(r.log_last_seq, total);
}

int main(void) {
    if (vmenc_init() != VMENC_OK)
        return 1;
    if (etcd_cluster_start(&g_cluster) != 0)
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_layout_and_cas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_hosts_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_log_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_catch_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outcome_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_member_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quorum_lost, setup, teardown),
    };
    int rc = cmocka_run_group_tests_name("audit mirror on etcd", tests, NULL, NULL);
    etcd_cluster_stop(&g_cluster);
    return rc;
}
