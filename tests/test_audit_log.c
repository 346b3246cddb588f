/*
 * tests/test_audit_log.c - the log writer and the dispatcher: resume on
 * reopen, refusal of a broken or torn tail, explicit recovery, locking,
 * concurrent writers (8 threads) without interleaving, the callback sink,
 * fsync policies, rotation, and that no key bytes reach the file.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "audit/record.h"
#include "core/internal.h"
#include "vmenc/vmenc.h"

static const uint8_t k_key[32] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
                                  0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
                                  0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
                                  0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf};

typedef struct fixture {
    char dir[256];
    char path[300];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    const char *base = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/vmenc-auditlog-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/audit.log", f->dir);
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

static vmenc_audit_log_options lopts(const char *path, vmenc_audit_fsync policy, uint32_t flags) {
    vmenc_audit_log_options o = {.struct_size = sizeof(o), .path = path, .key = k_key,
                                 .key_len = sizeof(k_key), .fsync = policy, .flags = flags};
    return o;
}

static vmenc_audit_log *open_ok(const char *path, vmenc_audit_fsync policy, uint32_t flags) {
    vmenc_audit_log_options o = lopts(path, policy, flags);
    vmenc_audit_log *log = NULL;
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_OK);
    assert_non_null(log);
    return log;
}

static vmenc_audit_event ev_of(const char *principal, int i) {
    static const char *ids[] = {"kek-7"};
    vmenc_audit_event ev = {.struct_size = sizeof(ev), .principal = principal,
                            .operation = "disk.encrypt", .target = "vm-1/disk-0",
                            .key_provider = "kms-a", .key_ids = ids, .num_key_ids = 1,
                            .outcome = (vmenc_audit_outcome)(i % 3),
                            .status = i % 3 ? VMENC_E_KMS_UNAVAILABLE : 0, .reason = "r"};
    return ev;
}

static void append(vmenc_audit_log *log, int n) {
    for (int i = 0; i < n; i++) {
        vmenc_audit_event ev = ev_of("alice", i);
        assert_int_equal(vmenc_audit_log_append(log, &ev, NULL), VMENC_OK);
    }
}

static vmenc_status verify(const char *path, uint64_t expected, vmenc_audit_verify_result *res) {
    vmenc_audit_verify_options o = {.struct_size = sizeof(o), .key = k_key,
                                    .key_len = sizeof(k_key), .expected_last_seq = expected};
    res->struct_size = sizeof(*res);
    const char *paths[] = {path};
    return vmenc_audit_verify_files(&o, paths, 1, res);
}

static off_t file_size(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void append_raw(const char *path, const char *bytes, size_t len) {
    FILE *fp = fopen(path, "ab");
    assert_non_null(fp);
    assert_int_equal(fwrite(bytes, 1, len, fp), len);
    fclose(fp);
}

static char *slurp(const char *path, size_t *out_len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    buf[n] = 0;
    fclose(fp);
    *out_len = (size_t)n;
    return buf;
}

/* ---- open, append, resume ------------------------------------------------------- */

static void test_open_append_resume(void **state) {
    fixture *f = *state;
    vmenc_audit_log *log = open_ok(f->path, VMENC_AUDIT_FSYNC_EVERY, 0);
    uint64_t seq = 0;
    vmenc_audit_event ev = ev_of("alice", 0);
    assert_int_equal(vmenc_audit_log_append(log, &ev, &seq), VMENC_OK);
    assert_int_equal(seq, 1);
    append(log, 2);
    uint8_t h[32], h2[32];
    assert_int_equal(vmenc_audit_log_position(log, &seq, h), VMENC_OK);
    assert_int_equal(seq, 3);
    vmenc_audit_log_free(log);
    assert_int_equal(file_size(f->path) > 0, 1);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* Reopen: the chain continues from the last record. */
    log = open_ok(f->path, VMENC_AUDIT_FSYNC_EVERY, 0);
    assert_int_equal(vmenc_audit_log_position(log, &seq, h2), VMENC_OK);
    assert_int_equal(seq, 3);
    assert_memory_equal(h, h2, 32);
    assert_int_equal(vmenc_audit_log_append(log, &ev, &seq), VMENC_OK);
    assert_int_equal(seq, 4);
    append(log, 1);
    vmenc_audit_log_free(log);

    vmenc_audit_verify_result res;
    assert_int_equal(verify(f->path, 5, &res), VMENC_OK);
    assert_int_equal(res.num_records, 5);
    uint64_t tail_seq;
    uint8_t tail_hash[32];
    assert_int_equal(vmenc_audit_log_file_tail(k_key, 32, f->path, &tail_seq, tail_hash), VMENC_OK);
    assert_int_equal(tail_seq, 5);
    assert_memory_equal(tail_hash, res.last_hash, 32);

    /* No key byte sequence (raw or hex) appears in the file. */
    size_t len;
    char *buf = slurp(f->path, &len);
    assert_null(memmem(buf, len, k_key, 8));
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", k_key[i]);
    hex[16] = 0;
    assert_null(strstr(buf, hex));
    free(buf);
}

static void test_open_options(void **state) {
    fixture *f = *state;
    vmenc_audit_log *log = (vmenc_audit_log *)0x1;
    vmenc_audit_log_options o = lopts(f->path, VMENC_AUDIT_FSYNC_EVERY, 0);
    o.key_len = 8;
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_E_INVALID_ARG);
    o = lopts(f->path, VMENC_AUDIT_FSYNC_EVERY_N, 0);
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_E_INVALID_ARG); /* n = 0 */
    o = lopts(f->path, (vmenc_audit_fsync)9, 0);
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_E_INVALID_ARG);
    o = lopts(f->path, VMENC_AUDIT_FSYNC_EVERY, 1u << 7);
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_E_INVALID_ARG);
    o = lopts(f->path, VMENC_AUDIT_FSYNC_EVERY, 0);
    o.struct_size = 4;
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_E_ABI_VERSION);
    o = lopts(NULL, VMENC_AUDIT_FSYNC_EVERY, 0);
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_E_INVALID_ARG);
    char bad[400];
    snprintf(bad, sizeof(bad), "%s/no/such/dir/x.log", f->dir);
    o = lopts(bad, VMENC_AUDIT_FSYNC_EVERY, 0);
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_E_IO);
    assert_ptr_equal(log, (vmenc_audit_log *)0x1); /* untouched on failure */
    char link[400], target[400];
    snprintf(link, sizeof(link), "%s/link.log", f->dir);
    snprintf(target, sizeof(target), "%s/target.log", f->dir);
    assert_int_equal(symlink(target, link), 0);
    o = lopts(link, VMENC_AUDIT_FSYNC_EVERY, 0);
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_E_IO); /* dangling link */
    append_raw(target, "", 0);
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_E_IO); /* link to a file */
    assert_ptr_equal(log, (vmenc_audit_log *)0x1);
    unlink(link);
    unlink(target);
    assert_int_equal(access(f->path, F_OK), -1);   /* nothing created */
    vmenc_audit_log_free(NULL);

    /* Invalid events are refused before anything is written. */
    log = open_ok(f->path, VMENC_AUDIT_FSYNC_NEVER, 0);
    vmenc_audit_event ev = ev_of("alice", 0);
    ev.principal = "";
    assert_int_equal(vmenc_audit_log_append(log, &ev, NULL), VMENC_E_INVALID_ARG);
    ev = ev_of("\xc0\x80", 0);
    assert_int_equal(vmenc_audit_log_append(log, &ev, NULL), VMENC_E_BAD_ENCODING);
    ev.struct_size = 12;
    assert_int_equal(vmenc_audit_log_append(log, &ev, NULL), VMENC_E_ABI_VERSION);
    vmenc_audit_log_free(log);
    assert_int_equal(file_size(f->path), 0);
}

static void test_lock_excludes_second_writer(void **state) {
    fixture *f = *state;
    vmenc_audit_log *log = open_ok(f->path, VMENC_AUDIT_FSYNC_NEVER, 0);
    vmenc_audit_log_options o = lopts(f->path, VMENC_AUDIT_FSYNC_NEVER, 0);
    vmenc_audit_log *second = NULL;
    assert_int_equal(vmenc_audit_log_open(&o, &second), VMENC_E_LOCKED);
    assert_null(second);
    vmenc_audit_log_free(log);
    assert_int_equal(vmenc_audit_log_open(&o, &second), VMENC_OK);
    vmenc_audit_log_free(second);
}

/* ---- broken and torn tails ------------------------------------------------------------ */

static void test_refuse_tampered_tail(void **state) {
    fixture *f = *state;
    vmenc_audit_log *log = open_ok(f->path, VMENC_AUDIT_FSYNC_NEVER, 0);
    append(log, 3);
    vmenc_audit_log_free(log);
    size_t len;
    char *buf = slurp(f->path, &len);
    char *last = strrchr(buf, '\n');
    *last = 0;
    last = strrchr(buf, '\n') + 1;
    *strrchr(buf, '\0') = '\n';
    char *p = strstr(last, "\"principal\":\"alice");
    p[13] = 'A'; /* edit the last record */
    FILE *fp = fopen(f->path, "wb");
    fwrite(buf, 1, len, fp);
    fclose(fp);
    vmenc_audit_log_options o = lopts(f->path, VMENC_AUDIT_FSYNC_NEVER, 0);
    vmenc_audit_log *again = NULL;
    assert_int_equal(vmenc_audit_log_open(&o, &again), VMENC_E_AUDIT_TAMPERED);
    o.flags = VMENC_AUDIT_LOG_RECOVER; /* recovery never repairs an edit */
    assert_int_equal(vmenc_audit_log_open(&o, &again), VMENC_E_AUDIT_TAMPERED);
    assert_null(again);
    assert_int_equal(file_size(f->path), (off_t)len);
    free(buf);

    /* Garbage after the last record: not a torn record, refused. */
    append_raw(f->path, "junk\n", 5);
    assert_int_equal(vmenc_audit_log_open(&o, &again), VMENC_E_AUDIT_TAMPERED);
}

static void test_refuse_wrong_key(void **state) {
    fixture *f = *state;
    vmenc_audit_log *log = open_ok(f->path, VMENC_AUDIT_FSYNC_NEVER, 0);
    append(log, 2);
    vmenc_audit_log_free(log);
    uint8_t other[32];
    memset(other, 0x55, sizeof(other));
    vmenc_audit_log_options o = lopts(f->path, VMENC_AUDIT_FSYNC_NEVER, 0);
    o.key = other;
    vmenc_audit_log *again = NULL;
    assert_int_equal(vmenc_audit_log_open(&o, &again), VMENC_E_AUTH);
    uint64_t seq;
    uint8_t h[32];
    assert_int_equal(vmenc_audit_log_file_tail(other, 32, f->path, &seq, h), VMENC_E_AUTH);
}

static void test_torn_tail_detect_and_recover(void **state) {
    fixture *f = *state;
    vmenc_audit_log *log = open_ok(f->path, VMENC_AUDIT_FSYNC_EVERY, 0);
    append(log, 4);
    vmenc_audit_log_free(log);
    off_t good = file_size(f->path);
    /* A crash half-way through writing record 5. */
    size_t len;
    char *buf = slurp(f->path, &len);
    char *first_nl = strchr(buf, '\n');
    size_t torn = (size_t)(first_nl - buf) / 2;
    append_raw(f->path, buf, torn);
    free(buf);

    vmenc_audit_verify_result res;
    assert_int_equal(verify(f->path, 0, &res), VMENC_E_AUDIT_TRUNCATED);
    assert_int_equal(res.defect, VMENC_AUDIT_DEFECT_TORN);
    assert_int_equal(res.bad_index, 4);

    /* Detected and refused, and nothing changed. */
    vmenc_audit_log_options o = lopts(f->path, VMENC_AUDIT_FSYNC_EVERY, 0);
    vmenc_audit_log *again = NULL;
    assert_int_equal(vmenc_audit_log_open(&o, &again), VMENC_E_INTERRUPTED);
    assert_int_equal(file_size(f->path), good + (off_t)torn);
    uint64_t seq;
    uint8_t h[32];
    assert_int_equal(vmenc_audit_log_file_tail(k_key, 32, f->path, &seq, h), VMENC_E_INTERRUPTED);

    /* Explicit recovery: cut the torn line, record that it happened. */
    o.flags = VMENC_AUDIT_LOG_RECOVER | VMENC_AUDIT_LOG_VERIFY_ALL;
    assert_int_equal(vmenc_audit_log_open(&o, &again), VMENC_OK);
    assert_int_equal(vmenc_audit_log_position(again, &seq, h), VMENC_OK);
    assert_int_equal(seq, 5);
    append(again, 1);
    vmenc_audit_log_free(again);
    assert_int_equal(verify(f->path, 6, &res), VMENC_OK);
    assert_int_equal(res.num_records, 6);

    buf = slurp(f->path, &len);
    assert_memory_equal(buf + good - 1, "\n{", 2); /* the first 4 records untouched */
    char *rec5 = buf + good;
    audit_record *r = malloc(sizeof(*r));
    size_t body;
    assert_int_equal(audit_record_parse((const uint8_t *)rec5, (size_t)(strchr(rec5, '\n') - rec5), r,
                                        &body), VMENC_OK);
    assert_string_equal(r->operation.s, "audit.log.recover");
    char want[80];
    snprintf(want, sizeof(want), "discarded a torn final record of %zu bytes", torn);
    assert_string_equal(r->reason, want);
    free(r);
    free(buf);
}

static void test_torn_first_record(void **state) {
    fixture *f = *state;
    append_raw(f->path, "{\"v\":1,\"seq\":1,\"ti", 18);
    vmenc_audit_log_options o = lopts(f->path, VMENC_AUDIT_FSYNC_NEVER, 0);
    vmenc_audit_log *log = NULL;
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_E_INTERRUPTED);
    o.flags = VMENC_AUDIT_LOG_RECOVER;
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_OK);
    vmenc_audit_log_free(log);
    vmenc_audit_verify_result res;
    assert_int_equal(verify(f->path, 1, &res), VMENC_OK);
    assert_int_equal(res.num_records, 1);
}

/* A torn line after a broken record: recovery refuses to touch anything. */
static void test_recover_needs_good_record_before(void **state) {
    fixture *f = *state;
    vmenc_audit_log *log = open_ok(f->path, VMENC_AUDIT_FSYNC_NEVER, 0);
    append(log, 2);
    vmenc_audit_log_free(log);
    size_t len;
    char *buf = slurp(f->path, &len);
    buf[len - 10] ^= 1; /* inside the last record's mac */
    FILE *fp = fopen(f->path, "wb");
    fwrite(buf, 1, len, fp);
    fwrite(buf, 1, 30, fp); /* and a torn line */
    fclose(fp);
    free(buf);
    vmenc_audit_log_options o = lopts(f->path, VMENC_AUDIT_FSYNC_NEVER, VMENC_AUDIT_LOG_RECOVER);
    vmenc_audit_log *again = NULL;
    assert_int_equal(vmenc_audit_log_open(&o, &again), VMENC_E_AUDIT_TAMPERED);
    assert_int_equal(file_size(f->path), (off_t)len + 30);
}

static void test_verify_all_on_open(void **state) {
    fixture *f = *state;
    vmenc_audit_log *log = open_ok(f->path, VMENC_AUDIT_FSYNC_NEVER, 0);
    append(log, 5);
    vmenc_audit_log_free(log);
    size_t len;
    char *buf = slurp(f->path, &len);
    char *p = strstr(buf, "\"target\":\"vm-1");
    p[11] = 'X'; /* edit record 1 */
    FILE *fp = fopen(f->path, "wb");
    fwrite(buf, 1, len, fp);
    fclose(fp);
    free(buf);
    /* Only the tail is checked by default... */
    log = open_ok(f->path, VMENC_AUDIT_FSYNC_NEVER, 0);
    vmenc_audit_log_free(log);
    /* ...the whole file on request. */
    vmenc_audit_log_options o = lopts(f->path, VMENC_AUDIT_FSYNC_NEVER, VMENC_AUDIT_LOG_VERIFY_ALL);
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_E_AUDIT_TAMPERED);
}

/* ---- concurrency ----------------------------------------------------------------------- */

#define THREADS 8
#define PER_THREAD 400

typedef struct worker {
    vmenc_audit_log *log;
    vmenc_audit *audit; /* if set, go through the dispatcher */
    int id;
    int count; /* records to write; 0 means PER_THREAD */
    vmenc_status status;
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    char principal[32];
    snprintf(principal, sizeof(principal), "thread-%d", w->id);
    w->status = VMENC_OK;
    int count = w->count ? w->count : PER_THREAD;
    for (int i = 0; i < count && w->status == VMENC_OK; i++) {
        char reason[64];
        snprintf(reason, sizeof(reason), "t%d-i%d-padding-padding-padding", w->id, i);
        vmenc_audit_event ev = ev_of(principal, i);
        ev.reason = reason;
        w->status = w->audit != NULL ? vmenc_audit_emit(w->audit, &ev)
                                     : vmenc_audit_log_append(w->log, &ev, NULL);
    }
    return NULL;
}

static void check_threads_log_n(const char *path, int per_thread) {
    vmenc_audit_verify_result res;
    assert_int_equal(verify(path, (uint64_t)(THREADS * per_thread), &res), VMENC_OK);
    assert_int_equal(res.num_records, THREADS * per_thread);
    /* Each thread's records are all there, whole, in its own order. */
    size_t len;
    char *buf = slurp(path, &len);
    int next[THREADS] = {0};
    audit_record *r = malloc(sizeof(*r));
    char *p = buf;
    while (*p) {
        char *nl = strchr(p, '\n');
        size_t body;
        assert_int_equal(audit_record_parse((const uint8_t *)p, (size_t)(nl - p), r, &body), VMENC_OK);
        int t, i;
        assert_int_equal(sscanf(r->reason, "t%d-i%d", &t, &i), 2);
        assert_true(t >= 0 && t < THREADS);
        assert_int_equal(i, next[t]);
        next[t]++;
        char want[32];
        snprintf(want, sizeof(want), "thread-%d", t);
        assert_string_equal(r->principal.s, want);
        p = nl + 1;
    }
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(next[t], per_thread);
    free(r);
    free(buf);
}

static void check_threads_log(const char *path) { check_threads_log_n(path, PER_THREAD); }

static void test_concurrent_writers(void **state) {
    fixture *f = *state;
    vmenc_audit_log *log = NULL;
    vmenc_audit_log_options o = lopts(f->path, VMENC_AUDIT_FSYNC_EVERY_N, 0);
    o.fsync_every_n = 64;
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_OK);
    pthread_t th[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.log = log, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].status, VMENC_OK);
    }
    vmenc_audit_log_stats st = {.struct_size = sizeof(st)};
    assert_int_equal(vmenc_audit_log_get_stats(log, &st), VMENC_OK);
    assert_int_equal(st.records, THREADS * PER_THREAD);
    /* A due sync is skipped when another thread's sync already covered
     * the record (group commit), so at most one per 64 records. */
    assert_true(st.syncs >= 1 && st.syncs <= THREADS * PER_THREAD / 64);
    assert_int_equal(st.bytes, (uint64_t)file_size(f->path));
    vmenc_audit_log_free(log);
    check_threads_log(f->path);
}

/* FSYNC_EVERY from many threads: each append returns only after a sync, and
 * one sync may cover several threads' records (group commit). */
static void test_concurrent_writers_fsync_every(void **state) {
    fixture *f = *state;
    const int per = 40;
    vmenc_audit_log *log = open_ok(f->path, VMENC_AUDIT_FSYNC_EVERY, 0);
    pthread_t th[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.log = log, .id = i, .count = per};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].status, VMENC_OK);
    }
    vmenc_audit_log_stats st = {.struct_size = sizeof(st)};
    assert_int_equal(vmenc_audit_log_get_stats(log, &st), VMENC_OK);
    assert_int_equal(st.records, THREADS * per);
    assert_true(st.syncs >= 1 && st.syncs <= (uint64_t)(THREADS * per));
    vmenc_audit_log_free(log);
    check_threads_log_n(f->path, per);
}

/* ---- the dispatcher and the callback sink -------------------------------------------- */

typedef struct counter {
    pthread_mutex_t mu;
    int calls;
    int bad_json;
    int fail_every; /* fail every n-th call, 0 never */
} counter;

static vmenc_status count_cb(void *ctx, const vmenc_audit_event *ev, const char *json,
                             size_t json_len) {
    counter *c = ctx;
    pthread_mutex_lock(&c->mu);
    int n = ++c->calls;
    /* The JSON is the event, NUL terminated, parseable. */
    json_object *o = json_tokener_parse(json);
    json_object *v;
    if (o == NULL || strlen(json) != json_len || ev->time_ms == 0 ||
        !json_object_object_get_ex(o, "principal", &v) ||
        strcmp(json_object_get_string(v), ev->principal) != 0)
        c->bad_json++;
    json_object_put(o);
    pthread_mutex_unlock(&c->mu);
    return c->fail_every && n % c->fail_every == 0 ? VMENC_E_IO : VMENC_OK;
}

static void test_dispatcher_callback_and_log(void **state) {
    fixture *f = *state;
    vmenc_audit *a = NULL;
    assert_int_equal(vmenc_audit_new(&a), VMENC_OK);
    vmenc_audit_event ev = ev_of("bob", 0);
    assert_int_equal(vmenc_audit_emit(a, &ev), VMENC_E_BAD_STATE); /* nowhere to go */
    counter c = {.mu = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(vmenc_audit_add_callback(a, count_cb, &c), VMENC_OK);
    vmenc_audit_log *log = open_ok(f->path, VMENC_AUDIT_FSYNC_NEVER, 0);
    assert_int_equal(vmenc_audit_add_log(a, log), VMENC_OK);
    assert_int_equal(vmenc_audit_add_callback(a, NULL, NULL), VMENC_E_INVALID_ARG);

    /* Threads through the dispatcher: every event reaches both sinks. */
    pthread_t th[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.audit = a, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].status, VMENC_OK);
    }
    assert_int_equal(c.calls, THREADS * PER_THREAD);
    assert_int_equal(c.bad_json, 0);
    check_threads_log(f->path);

    /* An invalid event reaches no sink. */
    ev.principal = NULL;
    assert_int_equal(vmenc_audit_emit(a, &ev), VMENC_E_INVALID_ARG);
    assert_int_equal(c.calls, THREADS * PER_THREAD);

    /* A failing sink is reported, and the others still get the event. */
    c.fail_every = 1;
    ev = ev_of("carol", 1);
    assert_int_equal(vmenc_audit_emit(a, &ev), VMENC_E_AUDIT_SINK);
    uint64_t seq;
    uint8_t h[32];
    assert_int_equal(vmenc_audit_log_position(log, &seq, h), VMENC_OK);
    assert_int_equal(seq, THREADS * PER_THREAD + 1);
    vmenc_audit_free(a);
    vmenc_audit_free(NULL);
    vmenc_audit_log_free(log);

    /* Sink limit. */
    assert_int_equal(vmenc_audit_new(&a), VMENC_OK);
    for (int i = 0; i < 16; i++)
        assert_int_equal(vmenc_audit_add_callback(a, count_cb, &c), VMENC_OK);
    assert_int_equal(vmenc_audit_add_callback(a, count_cb, &c), VMENC_E_LIMIT);
    vmenc_audit_free(a);
}

/* ---- fsync policies ---------------------------------------------------------------------- */

static uint64_t syncs_after(const char *path, vmenc_audit_fsync policy, uint32_t n, int records) {
    vmenc_audit_log_options o = lopts(path, policy, 0);
    o.fsync_every_n = n;
    vmenc_audit_log *log = NULL;
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_OK);
    append(log, records);
    vmenc_audit_log_stats st = {.struct_size = sizeof(st)};
    assert_int_equal(vmenc_audit_log_get_stats(log, &st), VMENC_OK);
    assert_int_equal(st.records, (uint64_t)records);
    vmenc_audit_log_free(log);
    return st.syncs;
}

static void test_fsync_policies(void **state) {
    fixture *f = *state;
    char p[400];
    snprintf(p, sizeof(p), "%s/every.log", f->dir);
    assert_int_equal(syncs_after(p, VMENC_AUDIT_FSYNC_EVERY, 0, 10), 10);
    snprintf(p, sizeof(p), "%s/every4.log", f->dir);
    assert_int_equal(syncs_after(p, VMENC_AUDIT_FSYNC_EVERY_N, 4, 10), 2);
    snprintf(p, sizeof(p), "%s/every1.log", f->dir);
    assert_int_equal(syncs_after(p, VMENC_AUDIT_FSYNC_EVERY_N, 1, 7), 7);
    snprintf(p, sizeof(p), "%s/never.log", f->dir);
    assert_int_equal(syncs_after(p, VMENC_AUDIT_FSYNC_NEVER, 0, 10), 0);
    vmenc_audit_verify_result res;
    assert_int_equal(verify(p, 10, &res), VMENC_OK);

    /* An explicit sync is counted whatever the policy. */
    vmenc_audit_log *log = open_ok(p, VMENC_AUDIT_FSYNC_NEVER, 0);
    assert_int_equal(vmenc_audit_log_sync(log), VMENC_OK);
    vmenc_audit_log_stats st = {.struct_size = sizeof(st)};
    assert_int_equal(vmenc_audit_log_get_stats(log, &st), VMENC_OK);
    assert_int_equal(st.syncs, 1);
    st.struct_size = 3;
    assert_int_equal(vmenc_audit_log_get_stats(log, &st), VMENC_E_ABI_VERSION);
    vmenc_audit_log_free(log);
}

/* ---- rotation ------------------------------------------------------------------------------ */

static void test_rotate(void **state) {
    fixture *f = *state;
    char p2[400], p3[400];
    snprintf(p2, sizeof(p2), "%s/audit.log.2", f->dir);
    snprintf(p3, sizeof(p3), "%s/audit.log.3", f->dir);
    vmenc_audit_log *log = open_ok(f->path, VMENC_AUDIT_FSYNC_EVERY, 0);
    append(log, 3);
    /* The new file must be new or empty. */
    append_raw(p3, "x\n", 2);
    assert_int_equal(vmenc_audit_log_rotate(log, p3), VMENC_E_EXISTS);
    assert_int_equal(vmenc_audit_log_rotate(log, NULL), VMENC_E_INVALID_ARG);
    append(log, 1); /* still appending to the first file */
    assert_int_equal(vmenc_audit_log_rotate(log, p2), VMENC_OK);
    append(log, 2);
    uint64_t seq;
    uint8_t h[32];
    assert_int_equal(vmenc_audit_log_position(log, &seq, h), VMENC_OK);
    assert_int_equal(seq, 6);
    vmenc_audit_log_free(log);

    /* After a restart, the new (empty) file continues the old chain. */
    unlink(p3);
    uint64_t tail_seq;
    uint8_t tail[32];
    assert_int_equal(vmenc_audit_log_file_tail(k_key, 32, p2, &tail_seq, tail), VMENC_OK);
    assert_int_equal(tail_seq, 6);
    vmenc_audit_log_options o = lopts(p3, VMENC_AUDIT_FSYNC_EVERY, 0);
    o.start_seq = tail_seq;
    o.start_hash = tail;
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_OK);
    append(log, 2);
    vmenc_audit_log_free(log);

    vmenc_audit_verify_options vo = {.struct_size = sizeof(vo), .key = k_key, .key_len = 32,
                                     .expected_last_seq = 8};
    vmenc_audit_verify_result res = {.struct_size = sizeof(res)};
    const char *all[] = {f->path, p2, p3};
    assert_int_equal(vmenc_audit_verify_files(&vo, all, 3, &res), VMENC_OK);
    assert_int_equal(res.num_records, 8);
    uint64_t empty_seq;
    char empty[400];
    snprintf(empty, sizeof(empty), "%s/empty.log", f->dir);
    append_raw(empty, "", 0);
    assert_int_equal(vmenc_audit_log_file_tail(k_key, 32, empty, &empty_seq, tail),
                     VMENC_E_NOT_FOUND);
}

/* ---- failures while writing ------------------------------------------------------------ */

/* A write that fails part-way (here: the file size limit, which makes the
 * kernel write short and then refuse) leaves no partial record behind and
 * the chain intact; the next append continues it. */
static void test_failed_write_leaves_no_partial_record(void **state) {
    fixture *f = *state;
    vmenc_audit_log *log = open_ok(f->path, VMENC_AUDIT_FSYNC_EVERY, 0);
    append(log, 3);
    off_t size = file_size(f->path);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = (rlim_t)size + 100; /* room for part of one record only */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    vmenc_audit_event ev = ev_of("alice", 0);
    uint64_t seq = 99;
    assert_int_equal(vmenc_audit_log_append(log, &ev, &seq), VMENC_E_IO);
    assert_int_equal(seq, 99); /* untouched on failure */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(file_size(f->path), size);
    assert_int_equal(vmenc_audit_log_append(log, &ev, &seq), VMENC_OK);
    assert_int_equal(seq, 4);
    vmenc_audit_log_free(log);
    vmenc_audit_verify_result res;
    assert_int_equal(verify(f->path, 4, &res), VMENC_OK);
}

/* A writer killed (SIGKILL) in the middle of appending: the log reopens
 * (recovering a torn line if the kill landed inside a write) and the chain
 * stays valid. */
static void test_killed_writer(void **state) {
    fixture *f = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        vmenc_audit_log_options o = lopts(f->path, VMENC_AUDIT_FSYNC_NEVER, 0);
        vmenc_audit_log *log = NULL;
        if (vmenc_audit_log_open(&o, &log) != VMENC_OK)
            _exit(3);
        for (int i = 0;; i++) {
            vmenc_audit_event ev = ev_of("child", i);
            if (vmenc_audit_log_append(log, &ev, NULL) != VMENC_OK)
                _exit(4);
        }
    }
    /* Wait until the child has written something, then kill it. */
    for (int i = 0; i < 2000; i++) {
        struct stat st;
        if (stat(f->path, &st) == 0 && st.st_size > 20000)
            break;
        usleep(1000);
    }
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    vmenc_audit_log *log = open_ok(f->path, VMENC_AUDIT_FSYNC_EVERY, VMENC_AUDIT_LOG_RECOVER);
    uint64_t seq;
    uint8_t h[32];
    assert_int_equal(vmenc_audit_log_position(log, &seq, h), VMENC_OK);
    assert_true(seq > 10);
    append(log, 1);
    vmenc_audit_log_free(log);
    vmenc_audit_verify_result res;
    assert_int_equal(verify(f->path, seq + 1, &res), VMENC_OK);
    assert_int_equal(res.num_records, seq + 1);
}

/* ---- the shared mode (many writers, one chain) ------------------------------------- */

/* Two shared handles on one file interleave into one chain; an exclusive
 * opener is refused while neither appends, and no shared append can slip
 * in while an exclusive handle is open. */
static void test_shared_two_handles(void **state) {
    fixture *f = *state;
    vmenc_audit_log *a = open_ok(f->path, VMENC_AUDIT_FSYNC_NEVER, VMENC_AUDIT_LOG_SHARED);
    vmenc_audit_log *b = open_ok(f->path, VMENC_AUDIT_FSYNC_NEVER, VMENC_AUDIT_LOG_SHARED);
    uint64_t seq = 0;
    for (int i = 0; i < 20; i++) {
        vmenc_audit_event ev = ev_of(i % 2 ? "bob" : "alice", i);
        assert_int_equal(vmenc_audit_log_append(i % 2 ? b : a, &ev, &seq), VMENC_OK);
        assert_int_equal(seq, (uint64_t)i + 1); /* chained to the other handle's record */
    }
    assert_int_equal(vmenc_audit_log_rotate(a, "x.log"), VMENC_E_UNSUPPORTED);
    vmenc_audit_log_free(a);
    vmenc_audit_log_free(b);
    vmenc_audit_verify_result res;
    assert_int_equal(verify(f->path, 20, &res), VMENC_OK);
    assert_int_equal(res.num_records, 20);

    vmenc_audit_log *x = open_ok(f->path, VMENC_AUDIT_FSYNC_NEVER, 0);
    vmenc_audit_log_options o = lopts(f->path, VMENC_AUDIT_FSYNC_NEVER, VMENC_AUDIT_LOG_SHARED);
    vmenc_audit_log *s2 = NULL;
    assert_int_equal(vmenc_audit_log_open(&o, &s2), VMENC_E_LOCKED); /* its tail check waits 0 ms */
    vmenc_audit_log_free(x);
    s2 = open_ok(f->path, VMENC_AUDIT_FSYNC_NEVER, VMENC_AUDIT_LOG_SHARED);
    append(s2, 1);
    vmenc_audit_log_free(s2);
    assert_int_equal(verify(f->path, 21, &res), VMENC_OK);
}

/* Processes appending to one shared log at once: every record present,
 * each process's in its order, one valid chain. */
static void test_shared_processes(void **state) {
    fixture *f = *state;
    enum { PROCS = 4, EACH = 200 };
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            vmenc_audit_log_options o = lopts(f->path, VMENC_AUDIT_FSYNC_NEVER,
                                              VMENC_AUDIT_LOG_SHARED | VMENC_AUDIT_LOG_RECOVER);
            o.lock_timeout_ms = 60000;
            vmenc_audit_log *log = NULL;
            if (vmenc_audit_log_open(&o, &log) != VMENC_OK)
                _exit(3);
            char who[16];
            snprintf(who, sizeof(who), "proc%d", p);
            for (int i = 0; i < EACH; i++) {
                vmenc_audit_event ev = ev_of(who, i);
                if (vmenc_audit_log_append(log, &ev, NULL) != VMENC_OK)
                    _exit(4);
            }
            vmenc_audit_log_free(log);
            _exit(0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        int st = 0;
        assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    vmenc_audit_verify_result res;
    assert_int_equal(verify(f->path, PROCS * EACH, &res), VMENC_OK);
    assert_int_equal(res.num_records, PROCS * EACH);
}

/* A torn line another writer left (it died mid-write) is cut off and
 * recorded by the next shared append with RECOVER, refused without. */
static void test_shared_recovers_torn_tail(void **state) {
    fixture *f = *state;
    vmenc_audit_log *a = open_ok(f->path, VMENC_AUDIT_FSYNC_NEVER, VMENC_AUDIT_LOG_SHARED | VMENC_AUDIT_LOG_RECOVER);
    vmenc_audit_log *b = open_ok(f->path, VMENC_AUDIT_FSYNC_NEVER, VMENC_AUDIT_LOG_SHARED);
    append(a, 3);
    append_raw(f->path, "{\"v\":2,\"seq\":4,\"tim", 20); /* another writer's torn record */
    vmenc_audit_event ev = ev_of("bob", 1);
    assert_int_equal(vmenc_audit_log_append(b, &ev, NULL), VMENC_E_INTERRUPTED);
    uint64_t seq = 0;
    assert_int_equal(vmenc_audit_log_append(a, &ev, &seq), VMENC_OK);
    assert_int_equal(seq, 5); /* 4 is the recovery record */
    assert_int_equal(vmenc_audit_log_append(b, &ev, &seq), VMENC_OK);
    assert_int_equal(seq, 6);
    vmenc_audit_log_free(a);
    vmenc_audit_log_free(b);
    vmenc_audit_verify_result res;
    assert_int_equal(verify(f->path, 6, &res), VMENC_OK);
    size_t len;
    char *buf = slurp(f->path, &len);
    assert_non_null(strstr(buf, "audit.log.recover"));
    free(buf);
}

/* ---- bounds ---------------------------------------------------------------------------------- */

/* The worst-case event (every field at its limit, every byte escaped to six)
 * fits in one line, and round-trips. */
static void test_worst_case_record(void **state) {
    fixture *f = *state;
    char field[VMENC_AUDIT_MAX_FIELD + 1], reason[VMENC_AUDIT_MAX_REASON + 1];
    memset(field, 0x01, VMENC_AUDIT_MAX_FIELD);
    field[VMENC_AUDIT_MAX_FIELD] = 0;
    memset(reason, 0x02, VMENC_AUDIT_MAX_REASON);
    reason[VMENC_AUDIT_MAX_REASON] = 0;
    const char *ids[VMENC_AUDIT_MAX_KEY_IDS];
    for (size_t i = 0; i < VMENC_AUDIT_MAX_KEY_IDS; i++)
        ids[i] = field;
    vmenc_audit_event ev = {.struct_size = sizeof(ev), .time_ms = VMENC_AUDIT_MAX_TIME_MS,
                            .principal = field, .operation = field, .target = field,
                            .key_provider = field, .key_ids = ids,
                            .num_key_ids = VMENC_AUDIT_MAX_KEY_IDS, .outcome = VMENC_AUDIT_FAILED,
                            .status = INT32_MIN, .reason = reason};
    vmenc_audit_log *log = open_ok(f->path, VMENC_AUDIT_FSYNC_NEVER, 0);
    assert_int_equal(vmenc_audit_log_append(log, &ev, NULL), VMENC_OK);
    assert_int_equal(vmenc_audit_log_append(log, &ev, NULL), VMENC_OK);
    vmenc_audit_log_free(log);
    assert_true(file_size(f->path) < 2 * (off_t)VMENC_AUDIT_MAX_LINE);
    log = open_ok(f->path, VMENC_AUDIT_FSYNC_NEVER, 0); /* the tail reader copes */
    vmenc_audit_log_free(log);
    vmenc_audit_verify_result res;
    assert_int_equal(verify(f->path, 2, &res), VMENC_OK);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_open_append_resume),
        T(test_open_options),
        T(test_lock_excludes_second_writer),
        T(test_refuse_tampered_tail),
        T(test_refuse_wrong_key),
        T(test_torn_tail_detect_and_recover),
        T(test_torn_first_record),
        T(test_recover_needs_good_record_before),
        T(test_verify_all_on_open),
        T(test_concurrent_writers),
        T(test_concurrent_writers_fsync_every),
        T(test_dispatcher_callback_and_log),
        T(test_fsync_policies),
        T(test_rotate),
        T(test_worst_case_record),
        T(test_failed_write_leaves_no_partial_record),
        T(test_killed_writer),
        T(test_shared_two_handles),
        T(test_shared_processes),
        T(test_shared_recovers_torn_tail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
