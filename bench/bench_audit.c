/*
 * bench/bench_audit.c - audit records appended per second, with fsync after
 * every record and with no fsync, from 1 thread and from 4 threads sharing
 * one log. Each mode runs for a bounded time (default 1 s; first argument
 * overrides, in seconds, at most 30) in a fresh temporary directory, then the
 * log is verified so a fast but broken writer cannot score.
 *
 * Prints per mode one JSON line
 *   {"bench":"audit","fsync":"every","threads":1,"records_per_sec":...}
 * and one human-readable line.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "vmenc/vmenc.h"

static uint8_t g_key[VMENC_AUDIT_KEY_BYTES];

typedef struct job {
    vmenc_audit_log *log;
    uint64_t deadline_ns;
    uint64_t records;
    vmenc_status status;
    int id;
} job;

static void *run(void *arg) {
    job *j = arg;
    static const char *ids[] = {"kek-2f1c9a", "dek-77e0b4"};
    char principal[32];
    snprintf(principal, sizeof(principal), "bench-%d@vsphere.local", j->id);
    vmenc_audit_event ev = {.struct_size = sizeof(ev), .principal = principal,
                            .operation = "disk.encrypt", .target = "vm-1234/disk-0",
                            .key_provider = "kms-cluster-a", .key_ids = ids, .num_key_ids = 2,
                            .outcome = VMENC_AUDIT_SUCCESS, .reason = "policy: encrypt all"};
    j->status = VMENC_OK;
    while (vmenc_now_monotonic_ns() < j->deadline_ns) {
        j->status = vmenc_audit_log_append(j->log, &ev, NULL);
        if (j->status != VMENC_OK)
            break;
        j->records++;
    }
    return NULL;
}

static int bench(const char *dir, vmenc_audit_fsync policy, int threads, double seconds) {
    char path[512];
    snprintf(path, sizeof(path), "%s/bench-%d-%d.log", dir, (int)policy, threads);
    vmenc_audit_log_options o = {.struct_size = sizeof(o), .path = path, .key = g_key,
                                 .key_len = sizeof(g_key), .fsync = policy};
    vmenc_audit_log *log = NULL;
    vmenc_status s = vmenc_audit_log_open(&o, &log);
    if (s != VMENC_OK) {
        fprintf(stderr, "open %s: %s\n", path, vmenc_strerror(s));
        return 1;
    }
    job jobs[8];
    pthread_t th[8];
    uint64_t start = vmenc_now_monotonic_ns();
    uint64_t deadline = start + (uint64_t)(seconds * 1e9);
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job){.log = log, .deadline_ns = deadline, .id = i};
        pthread_create(&th[i], NULL, run, &jobs[i]);
    }
    uint64_t total = 0;
    int rc = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += jobs[i].records;
        if (jobs[i].status != VMENC_OK) {
            fprintf(stderr, "append: %s\n", vmenc_strerror(jobs[i].status));
            rc = 1;
        }
    }
    double elapsed = (double)(vmenc_now_monotonic_ns() - start) / 1e9;
    vmenc_audit_log_stats st = {.struct_size = sizeof(st)};
    if (vmenc_audit_log_get_stats(log, &st) != VMENC_OK)
        rc = 1;
    vmenc_audit_log_free(log);

    vmenc_audit_verify_options vo = {.struct_size = sizeof(vo), .key = g_key,
                                     .key_len = sizeof(g_key), .expected_last_seq = total};
    vmenc_audit_verify_result res = {.struct_size = sizeof(res)};
    const char *paths[] = {path};
    uint64_t v0 = vmenc_now_monotonic_ns();
    s = vmenc_audit_verify_files(&vo, paths, 1, &res);
    double vsec = (double)(vmenc_now_monotonic_ns() - v0) / 1e9;
    if (s != VMENC_OK || res.num_records != total) {
        fprintf(stderr, "verify: %s\n", vmenc_strerror(s));
        rc = 1;
    }
    unlink(path);
    const char *name = policy == VMENC_AUDIT_FSYNC_EVERY ? "every" : "never";
    double rps = (double)total / elapsed;
    printf("{\"bench\":\"audit\",\"fsync\":\"%s\",\"threads\":%d,\"records_per_sec\":%.0f,"
           "\"records\":%llu,\"seconds\":%.3f,\"bytes_per_record\":%.0f,\"syncs\":%llu,"
           "\"verify_records_per_sec\":%.0f}\n",
           name, threads, rps, (unsigned long long)total, elapsed,
           total ? (double)st.bytes / (double)total : 0.0, (unsigned long long)st.syncs,
           vsec > 0 ? (double)total / vsec : 0.0);
    printf("audit append, fsync %-5s, %d thread%s: %10.0f records/s (%llu records in %.2f s, "
           "%llu syncs); verify %.0f records/s\n",
           name, threads, threads == 1 ? " " : "s", rps, (unsigned long long)total, elapsed,
           (unsigned long long)st.syncs, vsec > 0 ? (double)total / vsec : 0.0);
    fflush(stdout);
    return rc;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    if (!(seconds > 0) || seconds > 30)
        seconds = 1.0;
    if (vmenc_init() != VMENC_OK || vmenc_random_bytes(g_key, sizeof(g_key)) != VMENC_OK)
        return 1;
    const char *base = getenv("TMPDIR");
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/vmenc-bench-audit-XXXXXX", base ? base : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    int rc = 0;
    rc |= bench(dir, VMENC_AUDIT_FSYNC_EVERY, 1, seconds);
    rc |= bench(dir, VMENC_AUDIT_FSYNC_EVERY, 4, seconds);
    rc |= bench(dir, VMENC_AUDIT_FSYNC_NEVER, 1, seconds);
    rc |= bench(dir, VMENC_AUDIT_FSYNC_NEVER, 4, seconds);
    rmdir(dir);
    return rc;
}
