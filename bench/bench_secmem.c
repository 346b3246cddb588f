/*
 * bench/bench_secmem.c - secure memory at scale: how many XTS-AES-256
 * contexts and DEKs one process holds, what each costs in resident memory,
 * and how fast they are made and freed, from the pooled allocator
 * (lib/core/secpool.c), against the same-run baseline of one sodium_malloc
 * region per key (what every key cost before the pool).
 *
 *   bench_secmem [--count N] [--rounds R]
 *
 * Prints JSON lines: "live" (N contexts + N DEKs live at once: resident
 * bytes per context and per DEK from /proc/self/statm, pool counters),
 * "churn" (create + free per second for contexts and DEKs, the median of R
 * rounds, with sodium_malloc's rate for the same 768-byte block and its
 * ratio).
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "vmenc/vmenc.h"

static size_t resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &res) != 2)
        res = 0;
    fclose(f);
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what) {
    fprintf(stderr, "bench_secmem: %s failed\n", what);
    exit(1);
}

/* Create + free |n| XTS contexts from one key, |n| at once live. */
static double churn_xts(const uint8_t *key, vmenc_xts **x, size_t n) {
    uint64_t t0 = vmenc_now_monotonic_ns();
    for (size_t i = 0; i < n; i++)
        if (vmenc_xts_new(key, 64, 4096, &x[i]) != VMENC_OK)
            die("vmenc_xts_new");
    for (size_t i = 0; i < n; i++)
        vmenc_xts_free(x[i]);
    return (double)n / ((double)(vmenc_now_monotonic_ns() - t0) / 1e9);
}

static double churn_dek(vmenc_dek **d, size_t n) {
    uint64_t t0 = vmenc_now_monotonic_ns();
    for (size_t i = 0; i < n; i++)
        if (vmenc_dek_generate(&d[i]) != VMENC_OK)
            die("vmenc_dek_generate");
    for (size_t i = 0; i < n; i++)
        vmenc_dek_free(d[i]);
    return (double)n / ((double)(vmenc_now_monotonic_ns() - t0) / 1e9);
}

/* The baseline: one sodium_malloc region per 768-byte block (what an XTS
 * context cost before), alloc + free, |n| live at once. */
static double churn_sodium(void **p, size_t n) {
    uint64_t t0 = vmenc_now_monotonic_ns();
    for (size_t i = 0; i < n; i++)
        if ((p[i] = vmenc_secure_alloc(768)) == NULL)
            die("sodium_malloc");
    for (size_t i = 0; i < n; i++)
        vmenc_secure_free(p[i]);
    return (double)n / ((double)(vmenc_now_monotonic_ns() - t0) / 1e9);
}

int main(int argc, char **argv) {
    size_t count = 250000;
    int rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = (size_t)strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--count N] [--rounds R]\n", argv[0]);
            return 2;
        }
    }
    if (count == 0 || rounds < 1 || rounds > 101 || vmenc_init() != VMENC_OK)
        return 2;
    uint8_t key[64];
    if (vmenc_random_bytes(key, sizeof(key)) != VMENC_OK)
        return 1;
    vmenc_xts **x = calloc(count, sizeof(*x));
    vmenc_dek **d = calloc(count, sizeof(*d));
    void **p = calloc(count, sizeof(*p));
    if (x == NULL || d == NULL || p == NULL)
        return 1;
    /* Warm up lazy initialisation (self-tests, the pool's reservation). */
    (void)churn_xts(key, x, 16);
    (void)churn_dek(d, 16);

    /* ---- live: N contexts, then N DEKs, resident bytes each ---- */
    size_t r0 = resident_bytes();
    for (size_t i = 0; i < count; i++)
        if (vmenc_xts_new(key, 64, 4096, &x[i]) != VMENC_OK)
            die("vmenc_xts_new (live)");
    size_t r1 = resident_bytes();
    for (size_t i = 0; i < count; i++)
        if (vmenc_dek_generate(&d[i]) != VMENC_OK)
            die("vmenc_dek_generate (live)");
    size_t r2 = resident_bytes();
    vmenc_secpool_stats st;
    vmenc_secpool_stats_get(&st);
    printf("{\"bench\":\"secmem\",\"mode\":\"live\",\"xts_contexts\":%zu,\"deks\":%zu,"
           "\"resident_bytes_per_xts_ctx\":%.0f,\"resident_bytes_per_dek\":%.0f,"
           "\"pool_slabs\":%zu,\"pool_locked_bytes\":%zu,\"pool_unlocked_bytes\":%zu,"
           "\"pool_live_slots\":%zu,\"pool_fallbacks\":%llu}\n",
           count, count, (double)(r1 - r0) / (double)count, (double)(r2 - r1) / (double)count,
           st.num_slabs, st.bytes_locked, st.bytes_unlocked, st.live_slots,
           (unsigned long long)st.num_fallbacks);
    for (size_t i = 0; i < count; i++) {
        vmenc_xts_free(x[i]);
        vmenc_dek_free(d[i]);
    }

    /* ---- churn: create + free rates, baseline in the same run ---- */
    /* sodium_malloc runs out of memory mappings at ~16k live regions: the
     * baseline keeps 10k live. */
    size_t base_n = count < 10000 ? count : 10000;
    double rx[101], rd[101], rs[101], ratio[101];
    for (int r = 0; r < rounds; r++) {
        rx[r] = churn_xts(key, x, count);
        rd[r] = churn_dek(d, count);
        rs[r] = churn_sodium(p, base_n);
        ratio[r] = rx[r] / rs[r];
    }
    printf("{\"bench\":\"secmem\",\"mode\":\"churn\",\"live\":%zu,\"xts_create_free_per_s\":%.0f,"
           "\"dek_create_free_per_s\":%.0f,\"baseline\":\"sodium_malloc_768B\",\"baseline_live\":%zu,"
           "\"baseline_per_s\":%.0f,\"xts_ratio_vs_baseline\":%.1f,\"rounds\":%d}\n",
           count, median(rx, rounds), median(rd, rounds), base_n, median(rs, rounds),
           median(ratio, rounds), rounds);
    free(x);
    free(d);
    free(p);
    return 0;
}
