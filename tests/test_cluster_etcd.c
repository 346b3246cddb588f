/*
 * tests/test_cluster_etcd.c - cluster semantics against a real 3-member
 * mutual-TLS etcd cluster (tests/support/etcd_cluster.h), at the control
 * layer (lib/control/etcd/cluster.h; docs/cluster.md "Placement and the
 * migration handover" and "Transactions"):
 *   - the migration handover with either side SIGKILLed around the one
 *     transaction (each side a real process: the victim is a forked child
 *     with its own session, killed at a chosen step): afterwards exactly
 *     one host may write the VM - the placement names it, the other host's
 *     acquire is refused - and the commit's answer agrees with it;
 *   - the etcd leader SIGKILLed while a tight loop of state changes runs
 *     (policy edits under the lock + CAS, ownership take/release, VM
 *     record CAS writes): every change happened once or not at all, and
 *     every answer was a success, a clean refusal, or an unknown outcome
 *     that a re-read resolved;
 *   - a slow control plane (answers late, through
 *     tests/support/latency_proxy.h): a session whose renewals all succeed
 *     is never fenced; a commit between the source's two reads of its
 *     wait is seen as the commit it is.
 * Exits 77 (skip) when etcd cannot start here. VMENC_LEADER_ROUNDS sets
 * the leader kills (default 2).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "control/etcd/cluster.h"
#include "etcd_cluster.h"
#include "latency_proxy.h"
#include "vmenc/vmenc.h"

static etcd_cluster g_cluster;
static char g_name[32];
static int g_case;

static void sleep_ms(unsigned ms) {
    struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static vmenc_status open_host(const char *host, uint32_t ttl_s, ctl_cluster **out) {
    vmenc_etcd_config ec;
    etcd_cluster_config(&g_cluster, &ec);
    ec.request_timeout_ms = 1500;
    ctl_cluster_config cc = {.name = g_name, .host_id = host, .etcd = &ec, .ttl_s = ttl_s};
    return ctl_cluster_open(&cc, out);
}

static void new_uuid(char out[40]) {
    snprintf(out, 40, "00000000-0000-4000-8000-%012d", ++g_case);
}

/* put_record writes a stand-in for the VM's authority record (the handover
 * compares only its mod_revision) and returns that revision. */
static int64_t put_record(ctl_cluster *c, const char *uuid, const char *value) {
    char key[256];
    snprintf(key, sizeof(key), "/vmenc/%s/vm/%s", g_name, uuid);
    vmenc_etcd_put_req p = {.key = (const uint8_t *)key, .key_len = strlen(key), .value = (const uint8_t *)value,
                            .value_len = strlen(value)};
    vmenc_etcd_result r = {0};
    assert_int_equal(vmenc_etcd_put(ctl_cluster_etcd(c), &p, &r), VMENC_OK);
    int64_t rev = r.header.revision;
    vmenc_etcd_result_cleanup(&r);
    return rev;
}

static int64_t record_rev(ctl_cluster *c, const char *uuid) {
    char key[256];
    snprintf(key, sizeof(key), "/vmenc/%s/vm/%s", g_name, uuid);
    vmenc_etcd_range_req q = {.key = (const uint8_t *)key, .key_len = strlen(key)};
    vmenc_etcd_result r = {0};
    assert_int_equal(vmenc_etcd_range(ctl_cluster_etcd(c), &q, &r), VMENC_OK);
    int64_t rev = r.num_kvs > 0 ? r.kvs[0].mod_revision : 0;
    vmenc_etcd_result_cleanup(&r);
    return rev;
}

static void expect_placement(ctl_cluster *c, const char *uuid, const char *host) {
    char at[CTL_CLUSTER_HOST_MAX + 1];
    assert_int_equal(ctl_cluster_placement(c, uuid, at, sizeof(at)), VMENC_OK);
    assert_string_equal(at, host);
}

/* wait_owner_gone: the leased owner key of a killed process goes with its
 * lease (TTL 2 s, checked by etcd about every 0.5 s). */
static void wait_owner_gone(ctl_cluster *c, const char *uuid) {
    char who[CTL_CLUSTER_HOST_MAX + 1] = "?";
    uint64_t until = now_ms() + 8000;
    while (now_ms() < until) {
        assert_int_equal(ctl_cluster_owner(c, uuid, who, sizeof(who)), VMENC_OK);
        if (who[0] == '\0')
            return;
        sleep_ms(100);
    }
    fail_msg("owner key of %s still held by %s", uuid, who);
}

/* exactly_one: after the dust settles only |winner| may take the VM: the
 * other host's acquire is refused naming the placement, the winner's new
 * process takes it. */
static void exactly_one(const char *uuid, const char *winner, const char *loser) {
    ctl_cluster *w = NULL, *l = NULL;
    assert_int_equal(open_host(winner, 2, &w), VMENC_OK);
    assert_int_equal(open_host(loser, 2, &l), VMENC_OK);
    wait_owner_gone(w, uuid);
    expect_placement(w, uuid, winner);
    char why[CTL_CLUSTER_WHY_MAX] = "";
    assert_int_equal(ctl_cluster_acquire(l, uuid, "vm", why, sizeof(why)), VMENC_E_LOCKED);
    assert_non_null(strstr(why, winner));
    assert_int_equal(ctl_cluster_acquire(w, uuid, "vm", why, sizeof(why)), VMENC_OK);
    ctl_cluster_release(w, uuid);
    ctl_cluster_close(l);
    ctl_cluster_close(w);
}

/* ---- a victim process ---------------------------------------------------------------------------- */

typedef enum {
    SRC_ACQUIRE,        /* source: own the VM, then die */
    SRC_OFFER,          /* source: own and offer it, then die */
    DST_READ,           /* destination: read the offer, then die before committing */
    DST_COMMIT,         /* destination: commit, report, then die */
} victim_step;

typedef struct victim {
    pid_t pid;
    int to_child, from_child;
} victim;

/* child_main runs one side up to |step| and kills itself (never returns).
 * Writes one byte per stage to |out| ('!' for a failure). */
static void child_main(victim_step step, const char *uuid, int in, int out) {
    ctl_cluster *c = NULL;
    const char *host = step == SRC_ACQUIRE || step == SRC_OFFER ? "src" : "dst";
    char ok = 'k', bad = '!', go = 0;
    if (open_host(host, 2, &c) != VMENC_OK)
        goto fail;
    if (step == SRC_ACQUIRE || step == SRC_OFFER) {
        char why[CTL_CLUSTER_WHY_MAX];
        if (ctl_cluster_acquire(c, uuid, "vm", why, sizeof(why)) != VMENC_OK)
            goto fail;
        if (step == SRC_OFFER && ctl_cluster_handover_begin(c, uuid, "dst", "state-1", why, sizeof(why)) != VMENC_OK)
            goto fail;
    } else {
        if (read(in, &go, 1) != 1) /* the parent has offered the VM */
            goto fail;
        ctl_cluster_handover h;
        if (ctl_cluster_handover_read(c, uuid, &h) != VMENC_OK)
            goto fail;
        if (step == DST_COMMIT) {
            char why[CTL_CLUSTER_WHY_MAX];
            vmenc_status s = ctl_cluster_handover_commit(c, uuid, "vm", &h, record_rev(c, uuid), why, sizeof(why));
            char r = s == VMENC_OK ? 'C' : 'N';
            if (write(out, &r, 1) != 1)
                goto fail;
        }
    }
    if (write(out, &ok, 1) != 1)
        goto fail;
    raise(SIGKILL); /* no close: the lease must expire on its own */
fail:
    if (write(out, &bad, 1) != 1) {
    }
    _exit(3);
}

static void victim_start(victim *v, victim_step step, const char *uuid) {
    int a[2], b[2];
    assert_int_equal(pipe(a), 0);
    assert_int_equal(pipe(b), 0);
    fflush(NULL);
    v->pid = fork();
    assert_true(v->pid >= 0);
    if (v->pid == 0) {
        close(a[1]);
        close(b[0]);
        child_main(step, uuid, a[0], b[1]);
    }
    close(a[0]);
    close(b[1]);
    v->to_child = a[1];
    v->from_child = b[0];
}

static char victim_read(victim *v) {
    char ch = 0;
    assert_int_equal(read(v->from_child, &ch, 1), 1);
    assert_int_not_equal(ch, '!');
    return ch;
}

static void victim_reap(victim *v) {
    int st = 0;
    assert_int_equal(waitpid(v->pid, &st, 0), v->pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    close(v->to_child);
    close(v->from_child);
}

/* ---- the handover, either side killed ------------------------------------------------------------- */

/* The source dies owning the VM, before any offer: nothing to commit; the
 * VM stays placed on the source. */
static void test_handover_source_killed_before_offer(void **state) {
    (void)state;
    char uuid[40];
    new_uuid(uuid);
    victim v;
    victim_start(&v, SRC_ACQUIRE, uuid);
    victim_read(&v);
    victim_reap(&v);
    ctl_cluster *d = NULL;
    assert_int_equal(open_host("dst", 2, &d), VMENC_OK);
    ctl_cluster_handover h;
    assert_int_equal(ctl_cluster_handover_read(d, uuid, &h), VMENC_E_NOT_FOUND);
    ctl_cluster_close(d);
    exactly_one(uuid, "src", "dst");
}

/* The source dies right after offering; the destination commits while the
 * source's lease still lives: the VM is the destination's - one txn moved
 * the placement and the owner key. */
static void test_handover_source_killed_after_offer_commit(void **state) {
    (void)state;
    char uuid[40];
    new_uuid(uuid);
    victim v;
    victim_start(&v, SRC_OFFER, uuid);
    victim_read(&v);
    victim_reap(&v);
    ctl_cluster *d = NULL;
    assert_int_equal(open_host("dst", 2, &d), VMENC_OK);
    ctl_cluster_handover h;
    assert_int_equal(ctl_cluster_handover_read(d, uuid, &h), VMENC_OK);
    assert_string_equal(h.src, "src");
    assert_string_equal(h.dest, "dst");
    assert_string_equal(h.tag, "state-1");
    char why[CTL_CLUSTER_WHY_MAX] = "";
    assert_int_equal(ctl_cluster_handover_commit(d, uuid, "vm", &h, 0, why, sizeof(why)), VMENC_OK);
    char who[CTL_CLUSTER_HOST_MAX + 1];
    assert_int_equal(ctl_cluster_owner(d, uuid, who, sizeof(who)), VMENC_OK);
    assert_string_equal(who, "dst");
    assert_int_equal(ctl_cluster_handover_read(d, uuid, &h), VMENC_E_NOT_FOUND);
    ctl_cluster_close(d);
    exactly_one(uuid, "dst", "src");
}

/* The source dies after offering and its lease expires before the
 * destination commits: the offer went with the lease, a commit on the
 * stale offer loses, the VM stays the source's. */
static void test_handover_source_killed_lease_expired(void **state) {
    (void)state;
    char uuid[40];
    new_uuid(uuid);
    victim v;
    victim_start(&v, SRC_OFFER, uuid);
    victim_read(&v);
    victim_reap(&v);
    ctl_cluster *d = NULL;
    assert_int_equal(open_host("dst", 2, &d), VMENC_OK);
    ctl_cluster_handover h;
    assert_int_equal(ctl_cluster_handover_read(d, uuid, &h), VMENC_OK);
    wait_owner_gone(d, uuid);
    char why[CTL_CLUSTER_WHY_MAX] = "";
    assert_int_equal(ctl_cluster_handover_commit(d, uuid, "vm", &h, 0, why, sizeof(why)), VMENC_E_CONFLICT);
    ctl_cluster_handover h2;
    assert_int_equal(ctl_cluster_handover_read(d, uuid, &h2), VMENC_E_NOT_FOUND);
    ctl_cluster_close(d);
    exactly_one(uuid, "src", "dst");
}

/* The destination dies before committing: the source's wait runs out,
 * withdraws the offer and keeps the VM. */
static void test_handover_destination_killed_before_commit(void **state) {
    (void)state;
    char uuid[40];
    new_uuid(uuid);
    victim v;
    victim_start(&v, DST_READ, uuid);
    ctl_cluster *s = NULL;
    assert_int_equal(open_host("src", 2, &s), VMENC_OK);
    char why[CTL_CLUSTER_WHY_MAX] = "";
    assert_int_equal(ctl_cluster_acquire(s, uuid, "vm", why, sizeof(why)), VMENC_OK);
    assert_int_equal(ctl_cluster_handover_begin(s, uuid, "dst", "state-1", why, sizeof(why)), VMENC_OK);
    /* a second offer of the same VM is refused while this one stands */
    assert_int_equal(ctl_cluster_handover_begin(s, uuid, "other", "state-1", why, sizeof(why)), VMENC_E_LOCKED);
    char go = 'g';
    assert_int_equal(write(v.to_child, &go, 1), 1);
    victim_read(&v);
    victim_reap(&v);
    assert_int_equal(ctl_cluster_handover_wait(s, uuid, "dst", 800), VMENC_E_KMS_TIMEOUT);
    expect_placement(s, uuid, "src");
    ctl_cluster_handover h;
    assert_int_equal(ctl_cluster_handover_read(s, uuid, &h), VMENC_E_NOT_FOUND);
    ctl_cluster_release(s, uuid);
    ctl_cluster_close(s);
    exactly_one(uuid, "src", "dst");
}

/* The destination commits and dies at once: the source's wait sees the
 * commit; the VM is the destination's although nobody runs it now. A
 * commit against a record revision that moved since loses. */
static void test_handover_destination_killed_after_commit(void **state) {
    (void)state;
    char uuid[40];
    new_uuid(uuid);
    victim v;
    victim_start(&v, DST_COMMIT, uuid);
    ctl_cluster *s = NULL;
    assert_int_equal(open_host("src", 2, &s), VMENC_OK);
    (void)put_record(s, uuid, "record v1");
    char why[CTL_CLUSTER_WHY_MAX] = "";
    assert_int_equal(ctl_cluster_acquire(s, uuid, "vm", why, sizeof(why)), VMENC_OK);
    assert_int_equal(ctl_cluster_handover_begin(s, uuid, "dst", "state-1", why, sizeof(why)), VMENC_OK);
    char go = 'g';
    assert_int_equal(write(v.to_child, &go, 1), 1);
    assert_int_equal(victim_read(&v), 'C');
    victim_read(&v);
    victim_reap(&v);
    assert_int_equal(ctl_cluster_handover_wait(s, uuid, "dst", 5000), VMENC_OK);
    expect_placement(s, uuid, "dst");
    ctl_cluster_release(s, uuid); /* nothing of it is ours any more */
    ctl_cluster_close(s);
    exactly_one(uuid, "dst", "src");

    /* the record moved after the offer: the commit loses, the VM stays */
    new_uuid(uuid);
    assert_int_equal(open_host("src", 2, &s), VMENC_OK);
    ctl_cluster *d = NULL;
    assert_int_equal(open_host("dst", 2, &d), VMENC_OK);
    int64_t r1 = put_record(s, uuid, "record v1");
    assert_int_equal(ctl_cluster_acquire(s, uuid, "vm", why, sizeof(why)), VMENC_OK);
    assert_int_equal(ctl_cluster_handover_begin(s, uuid, "dst", "state-1", why, sizeof(why)), VMENC_OK);
    (void)put_record(s, uuid, "record v2");
    ctl_cluster_handover h;
    assert_int_equal(ctl_cluster_handover_read(d, uuid, &h), VMENC_OK);
    assert_int_equal(ctl_cluster_handover_commit(d, uuid, "vm", &h, r1, why, sizeof(why)), VMENC_E_CONFLICT);
    expect_placement(d, uuid, "src");
    /* and an offer to another host is not ours to take */
    ctl_cluster *o = NULL;
    assert_int_equal(open_host("other", 2, &o), VMENC_OK);
    assert_int_equal(ctl_cluster_handover_commit(o, uuid, "vm", &h, 0, why, sizeof(why)), VMENC_E_DENIED);
    ctl_cluster_close(o);
    ctl_cluster_close(d);
    ctl_cluster_release(s, uuid);
    ctl_cluster_close(s);
}

/* ---- a commit between the source's two reads ---------------------------------------------------- */

typedef struct waiter {
    ctl_cluster *c;
    const char *uuid;
    atomic_bool started;
    vmenc_status s;
} waiter;

static void *wait_main(void *arg) {
    waiter *w = arg;
    atomic_store(&w->started, true);
    w->s = ctl_cluster_handover_wait(w->c, w->uuid, "dst", 15000);
    return NULL;
}

/* The source's wait reads the placement, then its intent. The commit
 * moves the one and deletes the other in one transaction; if it lands
 * between the two reads the source saw "placement: here, intent: gone" -
 * which it took for an abort: 'migrate send' said "esx03 did not take it
 * over" while esx03 had (tests/cluster.test.sh under load). Here the
 * source's answers come 600 ms late (a relay in front of its member), so
 * a commit 300 ms into the wait lands between them. */
static void test_handover_commit_between_wait_reads(void **state) {
    (void)state;
    const char *colon = strrchr(g_cluster.urls[0], ':');
    assert_non_null(colon);
    latency_proxy *px = NULL;
    assert_int_equal(latency_proxy_start((uint16_t)atoi(colon + 1), 0, &px), 0);
    char url[64];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u", (unsigned)latency_proxy_port(px));
    vmenc_etcd_config ec;
    etcd_cluster_config(&g_cluster, &ec);
    ec.endpoints = url;
    ec.request_timeout_ms = 5000;
    ctl_cluster_config cc = {.name = g_name, .host_id = "src", .etcd = &ec, .ttl_s = 10};
    ctl_cluster *s = NULL, *d = NULL;
    char uuid[40], why[CTL_CLUSTER_WHY_MAX] = "";
    new_uuid(uuid);
    vmenc_status st = ctl_cluster_open(&cc, &s);
    if (st == VMENC_OK)
        st = open_host("dst", 10, &d);
    if (st != VMENC_OK) {
        ctl_cluster_close(s);
        latency_proxy_stop(px);
    }
    assert_int_equal(st, VMENC_OK);
    (void)put_record(d, uuid, "record v1");
    assert_int_equal(ctl_cluster_acquire(s, uuid, "vm", why, sizeof(why)), VMENC_OK);
    assert_int_equal(ctl_cluster_handover_begin(s, uuid, "dst", "state-1", why, sizeof(why)), VMENC_OK);
    ctl_cluster_handover h;
    assert_int_equal(ctl_cluster_handover_read(d, uuid, &h), VMENC_OK);
    latency_proxy_set_delay(px, 600);
    waiter w = {.c = s, .uuid = uuid};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_main, &w), 0);
    while (!atomic_load(&w.started))
        sleep_ms(1);
    sleep_ms(300); /* the placement read is answered at +600 ms, the intent read sent then */
    vmenc_status cs = ctl_cluster_handover_commit(d, uuid, "vm", &h, record_rev(d, uuid), why, sizeof(why));
    pthread_join(t, NULL);
    latency_proxy_set_delay(px, 0);
    ctl_cluster_release(s, uuid);
    ctl_cluster_close(s);
    latency_proxy_stop(px);
    assert_int_equal(cs, VMENC_OK);
    expect_placement(d, uuid, "dst");
    assert_int_equal(w.s, VMENC_OK); /* committed: the source must say so */
    ctl_cluster_close(d);
}

/* ---- a release answered "unknown" ------------------------------------------------------------ */

/* The leader SIGKILLed just before a release: the delete meets the
 * election (an unknown outcome or "no leader"). The release is retried
 * through the election, so the VM is free again at once - not held until
 * the host's session ends (before the retry, another host could not take
 * it for the rest of the session). */
static void test_release_through_election(void **state) {
    (void)state;
    char uuid[40];
    new_uuid(uuid);
    ctl_cluster *a = NULL;
    assert_int_equal(open_host("rel", 30, &a), VMENC_OK);
    char why[CTL_CLUSTER_WHY_MAX];
    assert_int_equal(ctl_cluster_acquire(a, uuid, "vm", why, sizeof(why)), VMENC_OK);
    int leader = -1;
    for (int k = 0; k < 50 && leader < 0; k++) {
        leader = etcd_cluster_leader(&g_cluster, ctl_cluster_etcd(a));
        if (leader < 0)
            sleep_ms(100);
    }
    assert_true(leader >= 0);
    assert_int_equal(etcd_cluster_kill(&g_cluster, leader), 0);
    ctl_cluster_release(a, uuid);
    char who[CTL_CLUSTER_HOST_MAX + 1];
    vmenc_status s = VMENC_E_CONTROL_UNAVAILABLE;
    for (int k = 0; k < 100 && s != VMENC_OK; k++) {
        s = ctl_cluster_owner(a, uuid, who, sizeof(who));
        if (s != VMENC_OK)
            sleep_ms(100);
    }
    assert_int_equal(etcd_cluster_restart(&g_cluster, leader), 0);
    assert_int_equal(s, VMENC_OK);
    assert_string_equal(who, ""); /* released, while the session still lives */
    ctl_cluster_close(a);
}

/* ---- a slow control plane ------------------------------------------------------------------------ */

/* Every answer of member 0 arrives 250 ms late (a TCP relay in front of
 * it; TLS passes through): the grant and the session key take about
 * 0.75 s, a renewal 0.25-0.5 s, well inside TTL/3 = 1 s. Every renewal
 * succeeds, so the session must never pass its fencing deadline (grant or
 * renewal *sent* + TTL - margin, here + 2 s). When the renewals were due
 * TTL/3 after the last one *ended* - the first TTL/3 after the keepalive
 * thread started, after the grant and the session key - the first renewal
 * was sent about 1.75 s after the grant and answered about 0.25 s after
 * the deadline: a host powering a VM on under load was fenced before its
 * first write (tests/cluster.test.sh under TSan in CI). */
static void test_slow_answers_no_fence(void **state) {
    (void)state;
    const char *colon = strrchr(g_cluster.urls[0], ':');
    assert_non_null(colon);
    latency_proxy *px = NULL;
    assert_int_equal(latency_proxy_start((uint16_t)atoi(colon + 1), 250, &px), 0);
    char url[64];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u", (unsigned)latency_proxy_port(px));
    vmenc_etcd_config ec;
    etcd_cluster_config(&g_cluster, &ec);
    ec.endpoints = url;
    ec.connect_timeout_ms = 2000;
    ec.request_timeout_ms = 3000;
    ctl_cluster_config cc = {.name = g_name, .host_id = "slow", .etcd = &ec, .ttl_s = 3};
    uint64_t t0 = now_ms();
    ctl_cluster *c = NULL;
    vmenc_status s = ctl_cluster_open(&cc, &c);
    if (s != VMENC_OK)
        latency_proxy_stop(px);
    assert_int_equal(s, VMENC_OK);
    uint64_t opened = now_ms() - t0, fenced_at = 0, fenced_ms = 0, last = 0;
    while (now_ms() < t0 + 4000) { /* the first deadline (+2 s) and two renewals past it */
        uint64_t t = now_ms();
        if (ctl_cluster_write_ok(c) != VMENC_OK) {
            if (fenced_at == 0)
                fenced_at = t - t0;
            fenced_ms += last ? t - last : 0;
        }
        last = t;
        sleep_ms(10);
    }
    ctl_cluster_fence_info fi;
    ctl_cluster_fence_info_get(c, &fi);
    ctl_cluster_close(c);
    latency_proxy_stop(px);
    printf("# answers 250 ms late, TTL 3 s: session open in %" PRIu64 " ms, %" PRIu64 " renewals, %" PRIu64
           " failed, fenced at +%" PRIu64 " ms for ~%" PRIu64 " ms (0: never)\n",
           opened, fi.keepalives_ok, fi.keepalives_failed, fenced_at, fenced_ms);
    assert_int_equal(fenced_at, 0);
    assert_true(fi.keepalives_ok >= 2); /* about 3 in the 4 s */
}

/* ---- the leader killed mid-transaction ---------------------------------------------------------- */

#define MAX_OPS 4096

typedef enum { OK_DONE = 0, REFUSED = 1, UNKNOWN_DONE = 2, UNKNOWN_NOT = 3 } outcome;

typedef struct loop {
    ctl_cluster *c;
    char uuid[40];
    atomic_bool stop;
    atomic_int num_ops;   /* read by the main thread while the loop runs */
    outcome out[MAX_OPS];
    int kind[MAX_OPS];
    int record_writes_ok; /* acknowledged or resolved-as-happened record writes */
    int64_t record_gen;   /* the generation the record holds after the last one that happened */
    int unknown;          /* answers that were an unknown outcome (resolved by a re-read) */
    int round;
} loop;

static bool doc_has(const uint8_t *doc, size_t len, const char *tok, int *count) {
    *count = 0;
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= len; i++)
        if (memcmp(doc + i, tok, tl) == 0)
            (*count)++;
    return *count > 0;
}

/* one_edit: a policy edit as cluster.c's writers make it: the lock, a
 * linearizable read, a CAS on its revision, the unlock. */
static outcome one_edit(loop *l, int i) {
    char why[CTL_CLUSTER_WHY_MAX];
    vmenc_status s = ctl_cluster_policy_lock(l->c, 3000, why, sizeof(why));
    if (s != VMENC_OK)
        return REFUSED;
    uint8_t *doc = NULL;
    size_t len = 0;
    int64_t rev = 0;
    s = ctl_cluster_policy_get(l->c, &doc, &len, &rev);
    if (s == VMENC_OK) {
        char tok[32];
        int n = snprintf(tok, sizeof(tok), "[r%d t%d]", l->round, i);
        uint8_t *nd = malloc(len + (size_t)n + 1);
        assert_non_null(nd);
        memcpy(nd, doc, len);
        memcpy(nd + len, tok, (size_t)n);
        int64_t nr = 0;
        s = ctl_cluster_policy_cas(l->c, nd, len + (size_t)n, rev, &nr);
        free(nd);
    }
    free(doc);
    ctl_cluster_policy_unlock(l->c);
    if (s == VMENC_E_OUTCOME_UNKNOWN) {
        l->unknown++;
        return UNKNOWN_NOT; /* settled against the document at the end */
    }
    return s == VMENC_OK ? OK_DONE : REFUSED;
}

/* one_record: a CAS write of the record's generation (the VM layer's
 * put_vm shape); an unknown outcome resolved by re-reading. */
static outcome one_record(loop *l) {
    char key[256], val[32];
    snprintf(key, sizeof(key), "/vmenc/%s/vm/%s", g_name, l->uuid);
    /* No assertion here: this runs on the loop's thread, and a cmocka
     * assertion that fails off the test's thread ends the process without
     * its report (exit(-1), or a longjmp into another thread's stack).
     * The read meets the leader's election: then nothing is written. */
    vmenc_etcd_range_req rq = {.key = (const uint8_t *)key, .key_len = strlen(key)};
    vmenc_etcd_result rr = {0};
    if (vmenc_etcd_range(ctl_cluster_etcd(l->c), &rq, &rr) != VMENC_OK) {
        vmenc_etcd_result_cleanup(&rr);
        return REFUSED;
    }
    int64_t rev = rr.num_kvs > 0 ? rr.kvs[0].mod_revision : 0;
    vmenc_etcd_result_cleanup(&rr);
    int64_t gen = l->record_gen + 1;
    int n = snprintf(val, sizeof(val), "gen %" PRId64, gen);
    vmenc_etcd_compare cmp = {.target = rev == 0 ? VMENC_ETCD_CMP_CREATE : VMENC_ETCD_CMP_MOD,
                              .key = (const uint8_t *)key, .key_len = strlen(key), .number = rev};
    vmenc_etcd_op put = {.type = VMENC_ETCD_OP_PUT, .put = {.key = (const uint8_t *)key, .key_len = strlen(key),
                                                            .value = (const uint8_t *)val, .value_len = (size_t)n}};
    vmenc_etcd_txn_req t = {.compares = &cmp, .num_compares = 1, .success = &put, .num_success = 1};
    vmenc_etcd_txn_result r = {0};
    vmenc_status s = vmenc_etcd_txn(ctl_cluster_etcd(l->c), &t, &r);
    bool done = s == VMENC_OK && r.succeeded;
    vmenc_etcd_txn_result_cleanup(&r);
    outcome o = done ? OK_DONE : REFUSED;
    if (s == VMENC_E_OUTCOME_UNKNOWN) {
        l->unknown++;
        /* re-read (through the election) until it answers */
        for (int k = 0; k < 50; k++) {
            vmenc_etcd_range_req q = {.key = (const uint8_t *)key, .key_len = strlen(key)};
            vmenc_etcd_result g = {0};
            if (vmenc_etcd_range(ctl_cluster_etcd(l->c), &q, &g) == VMENC_OK) {
                done = g.num_kvs > 0 && g.kvs[0].value_len == (size_t)n && memcmp(g.kvs[0].value, val, (size_t)n) == 0;
                vmenc_etcd_result_cleanup(&g);
                o = done ? UNKNOWN_DONE : UNKNOWN_NOT;
                break;
            }
            vmenc_etcd_result_cleanup(&g);
            sleep_ms(100);
        }
    }
    if (done) {
        l->record_gen = gen;
        l->record_writes_ok++;
    }
    return o;
}

/* one_own: take the VM's ownership and give it back. */
static outcome one_own(loop *l) {
    char why[CTL_CLUSTER_WHY_MAX];
    vmenc_status s = ctl_cluster_acquire(l->c, l->uuid, "vm", why, sizeof(why));
    if (s != VMENC_OK)
        return REFUSED;
    ctl_cluster_release(l->c, l->uuid);
    return OK_DONE;
}

static void *loop_main(void *arg) {
    loop *l = arg;
    while (!atomic_load(&l->stop) && atomic_load(&l->num_ops) < MAX_OPS) {
        int i = atomic_load(&l->num_ops);
        l->kind[i] = i % 3;
        l->out[i] = l->kind[i] == 0 ? one_edit(l, i) : l->kind[i] == 1 ? one_record(l) : one_own(l);
        atomic_fetch_add(&l->num_ops, 1);
    }
    return NULL;
}

/* The loop of the round in progress: a failed assertion leaves the test
 * with its thread running, and the teardown stops it - a thread still
 * inside curl/OpenSSL when the process exits crashes in OpenSSL's
 * exit-time cleanup and hides the assertion's message. */
static loop *g_loop;
static pthread_t g_loop_thread;
static bool g_loop_running;

static int leader_teardown(void **state) {
    (void)state;
    if (g_loop != NULL) {
        atomic_store(&g_loop->stop, true);
        if (g_loop_running)
            pthread_join(g_loop_thread, NULL);
        g_loop_running = false;
        ctl_cluster_close(g_loop->c);
        free(g_loop);
        g_loop = NULL;
    }
    for (int i = 0; i < ETCD_CLUSTER_MEMBERS; i++) /* a member the failed round left down */
        if (etcd_cluster_signal(&g_cluster, i, 0) != 0 && etcd_cluster_restart(&g_cluster, i) != 0)
            fprintf(stderr, "warning: etcd member %d did not restart\n", i);
    return 0;
}

static void test_leader_killed_mid_transaction(void **state) {
    (void)state;
    const char *e = getenv("VMENC_LEADER_ROUNDS");
    int rounds = e != NULL ? atoi(e) : 2;
    int total_ops = 0, total_unknown = 0, total_refused = 0;
    for (int round = 0; round < rounds; round++) {
        loop *l = calloc(1, sizeof(*l));
        assert_non_null(l);
        g_loop = l;
        assert_int_equal(open_host("ha", 5, &l->c), VMENC_OK);
        new_uuid(l->uuid);
        l->round = round;
        if (round == 0) { /* the document the edits append to */
            char why[CTL_CLUSTER_WHY_MAX];
            int64_t r0 = 0;
            assert_int_equal(ctl_cluster_policy_lock(l->c, 3000, why, sizeof(why)), VMENC_OK);
            assert_int_equal(ctl_cluster_policy_cas(l->c, (const uint8_t *)"doc:", 4, 0, &r0), VMENC_OK);
            ctl_cluster_policy_unlock(l->c);
        }
        assert_int_equal(pthread_create(&g_loop_thread, NULL, loop_main, l), 0);
        g_loop_running = true;
        sleep_ms(300);
        int leader = -1;
        for (int k = 0; k < 50 && leader < 0; k++) {
            leader = etcd_cluster_leader(&g_cluster, ctl_cluster_etcd(l->c));
            if (leader < 0)
                sleep_ms(100);
        }
        assert_true(leader >= 0);
        int before = atomic_load(&l->num_ops);
        assert_int_equal(etcd_cluster_kill(&g_cluster, leader), 0);
        sleep_ms(1800); /* an election (~1 s) and operations through it */
        assert_int_equal(etcd_cluster_restart(&g_cluster, leader), 0);
        /* operations go on after the election: wait for one more (no
         * time limit of ours beyond a generous bound - a loaded machine
         * may take seconds) */
        for (int k = 0; k < 600 && atomic_load(&l->num_ops) <= before; k++)
            sleep_ms(50);
        sleep_ms(300);
        atomic_store(&l->stop, true);
        g_loop_running = false;
        assert_int_equal(pthread_join(g_loop_thread, NULL), 0);
        assert_true(before > 0 && atomic_load(&l->num_ops) > before);

        /* every edit happened once or not at all */
        uint8_t *doc = NULL;
        size_t len = 0;
        int64_t rev = 0;
        vmenc_status s = VMENC_E_CONTROL_UNAVAILABLE;
        for (int k = 0; k < 50 && s != VMENC_OK; k++) {
            s = ctl_cluster_policy_get(l->c, &doc, &len, &rev);
            if (s != VMENC_OK)
                sleep_ms(100);
        }
        assert_int_equal(s, VMENC_OK);
        for (int i = 0; i < l->num_ops; i++) {
            if (l->kind[i] != 0)
                continue;
            char tok[32];
            snprintf(tok, sizeof(tok), "[r%d t%d]", round, i);
            int count = 0;
            bool present = doc_has(doc, len, tok, &count);
            assert_true(count <= 1);                                  /* never twice */
            if (l->out[i] == OK_DONE)
                assert_true(present);                                 /* acknowledged: there */
            else if (l->out[i] == REFUSED)
                assert_false(present);                                /* a clean refusal: not there */
        }
        free(doc);
        /* the record holds the last write that happened, and nothing later */
        char key[256];
        snprintf(key, sizeof(key), "/vmenc/%s/vm/%s", g_name, l->uuid);
        vmenc_etcd_range_req q = {.key = (const uint8_t *)key, .key_len = strlen(key)};
        vmenc_etcd_result g = {0};
        assert_int_equal(vmenc_etcd_range(ctl_cluster_etcd(l->c), &q, &g), VMENC_OK);
        char want[32];
        snprintf(want, sizeof(want), "gen %" PRId64, l->record_gen);
        if (l->record_gen > 0) {
            assert_int_equal(g.num_kvs, 1);
            assert_int_equal(g.kvs[0].value_len, strlen(want));
            assert_memory_equal(g.kvs[0].value, want, strlen(want));
            assert_int_equal(g.kvs[0].version, l->record_gen); /* one put per generation: none twice */
        }
        vmenc_etcd_result_cleanup(&g);
        /* ownership: after the loop nothing of it is held */
        char who[CTL_CLUSTER_HOST_MAX + 1];
        assert_int_equal(ctl_cluster_owner(l->c, l->uuid, who, sizeof(who)), VMENC_OK);
        assert_string_equal(who, "");
        for (int i = 0; i < l->num_ops; i++)
            total_refused += l->out[i] == REFUSED;
        total_ops += l->num_ops;
        total_unknown += l->unknown;
        ctl_cluster_close(l->c);
        free(l);
        g_loop = NULL;
    }
    printf("# leader killed %d times mid-loop: %d operations, %d refused cleanly, %d unknown outcomes resolved\n",
           rounds, total_ops, total_refused, total_unknown);
}

int main(void) {
    /* cmocka reports through stdout: unbuffered, so a crash loses none of it */
    setvbuf(stdout, NULL, _IONBF, 0);
    if (vmenc_init() != VMENC_OK)
        return 1;
    snprintf(g_name, sizeof(g_name), "ce%d", (int)getpid());
    if (getenv("VMENC_TEST_FILTER") != NULL) /* one case, by name (cmocka's pattern) */
        cmocka_set_test_filter(getenv("VMENC_TEST_FILTER"));
    if (etcd_cluster_start(&g_cluster) != 0)
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handover_source_killed_before_offer),
        cmocka_unit_test(test_handover_source_killed_after_offer_commit),
        cmocka_unit_test(test_handover_source_killed_lease_expired),
        cmocka_unit_test(test_handover_destination_killed_before_commit),
        cmocka_unit_test(test_handover_destination_killed_after_commit),
        cmocka_unit_test(test_handover_commit_between_wait_reads),
        cmocka_unit_test(test_release_through_election),
        cmocka_unit_test(test_slow_answers_no_fence),
        cmocka_unit_test_teardown(test_leader_killed_mid_transaction, leader_teardown),
    };
    int rc = cmocka_run_group_tests_name("cluster semantics on etcd", tests, NULL, NULL);
    etcd_cluster_stop(&g_cluster);
    return rc;
}
