/*
 * bench/bench_xts.c - throughput of every runnable XTS backend against
 * OpenSSL's EVP XTS used the way a block layer uses it (key set once, the
 * tweak set per sector with EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, -1),
 * then EVP_CipherUpdate).
 *
 *   bench_xts [--rounds R] [--threads [N]] [--key 256|128]
 *
 * Encrypts a 256 KiB buffer (fits in L2) at sector sizes 512, 4096 and
 * 65536. Contenders are interleaved round-robin within each round so load
 * changes hit all of them alike; each rate is the median over the rounds,
 * and ratio_vs_openssl the median of the per-round ratios (robust on a busy
 * machine).
 * Prints one JSON line per (backend, sector size) and a human table. With
 * --threads, also runs N threads (default: all online CPUs) sharing one
 * context per backend and reports the aggregate rate and the scaling over
 * one thread.
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "vmenc/vmenc.h"

#define BUF_LEN (256u * 1024u)
#define MIN_BYTES_PER_SAMPLE (4u * 1024u * 1024u)
#define MAX_ROUNDS 256
#define MAX_CONTENDERS 5

static const char *const impls[] = {"vaes-avx512", "vaes-avx2", "aesni", "portable"};
static const uint32_t sectors[] = {512, 4096, 65536};

typedef struct contender {
    const char *name; /* backend name, or "openssl" */
    vmenc_xts *x;     /* NULL for openssl */
} contender;

typedef struct worker {
    const contender *c;
    const uint8_t *key;
    size_t key_len;
    uint32_t sector;
    uint8_t *buf;
    size_t passes;
    int failed;
} worker;

static uint8_t g_key[64];
static size_t g_key_len = 64;

/* One pass of OpenSSL over |buf|, sector by sector, in place. */
static int openssl_pass(EVP_CIPHER_CTX *ctx, uint8_t *buf, uint32_t sector, uint64_t first) {
    uint8_t iv[16] = {0};
    for (size_t off = 0; off < BUF_LEN; off += sector) {
        vmenc_store_u64_le(iv, first++);
        int out_len = 0;
        if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, -1) != 1 ||
            EVP_CipherUpdate(ctx, buf + off, &out_len, buf + off, (int)sector) != 1)
            return -1;
    }
    return 0;
}

static EVP_CIPHER_CTX *openssl_ctx(void) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    const EVP_CIPHER *c = g_key_len == 64 ? EVP_aes_256_xts() : EVP_aes_128_xts();
    if (ctx == NULL || EVP_CipherInit_ex(ctx, c, NULL, g_key, NULL, 1) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Runs |w->passes| passes of one contender over w->buf. */
static void run_passes(worker *w) {
    EVP_CIPHER_CTX *ctx = NULL;
    if (w->c->x == NULL && (ctx = openssl_ctx()) == NULL) {
        w->failed = 1;
        return;
    }
    for (size_t p = 0; p < w->passes; p++) {
        uint64_t first = p * (BUF_LEN / w->sector);
        if (w->c->x != NULL) {
            if (vmenc_xts_encrypt(w->c->x, first, w->buf, w->buf, BUF_LEN) != VMENC_OK)
                w->failed = 1;
        } else if (openssl_pass(ctx, w->buf, w->sector, first) != 0) {
            w->failed = 1;
        }
    }
    EVP_CIPHER_CTX_free(ctx);
}

static pthread_barrier_t g_start, g_done;

static void *thread_main(void *p) {
    worker *w = p;
    pthread_barrier_wait(&g_start);
    run_passes(w);
    pthread_barrier_wait(&g_done);
    return NULL;
}

/* Aggregate GB/s of |num_threads| threads running contender |c| once. */
static double sample(const contender *c, uint32_t sector, int num_threads, uint8_t **bufs) {
    size_t passes = MIN_BYTES_PER_SAMPLE / BUF_LEN;
    worker w[64];
    if (num_threads == 1) {
        w[0] = (worker){c, g_key, g_key_len, sector, bufs[0], passes, 0};
        uint64_t t0 = vmenc_now_monotonic_ns();
        run_passes(&w[0]);
        uint64_t t1 = vmenc_now_monotonic_ns();
        if (w[0].failed) {
            fprintf(stderr, "bench_xts: %s failed\n", c->name);
            exit(1);
        }
        return (double)passes * BUF_LEN / (double)(t1 - t0);
    }
    pthread_t t[64];
    pthread_barrier_init(&g_start, NULL, (unsigned)num_threads + 1);
    pthread_barrier_init(&g_done, NULL, (unsigned)num_threads + 1);
    for (int i = 0; i < num_threads; i++) {
        w[i] = (worker){c, g_key, g_key_len, sector, bufs[i], passes, 0};
        if (pthread_create(&t[i], NULL, thread_main, &w[i]) != 0) {
            fprintf(stderr, "bench_xts: pthread_create failed\n");
            exit(1);
        }
    }
    pthread_barrier_wait(&g_start);
    uint64_t t0 = vmenc_now_monotonic_ns();
    pthread_barrier_wait(&g_done);
    uint64_t t1 = vmenc_now_monotonic_ns();
    for (int i = 0; i < num_threads; i++) {
        pthread_join(t[i], NULL);
        if (w[i].failed) {
            fprintf(stderr, "bench_xts: %s failed\n", c->name);
            exit(1);
        }
    }
    pthread_barrier_destroy(&g_start);
    pthread_barrier_destroy(&g_done);
    return (double)num_threads * (double)passes * BUF_LEN / (double)(t1 - t0);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Medians for every contender at one sector size, interleaved round-robin:
 * |out| gets the median GB/s, |out_ratio| the median over rounds of the
 * ratio to the last contender (OpenSSL) in the same round, which a shared,
 * busy machine disturbs much less than absolute rates. */
static void measure(contender *cs, int num_cs, uint32_t sector, int rounds, int num_threads,
                    uint8_t **bufs, double *out, double *out_ratio) {
    static double samples[MAX_CONTENDERS][MAX_ROUNDS], ratios[MAX_CONTENDERS][MAX_ROUNDS];
    for (int i = 0; i < num_cs; i++) /* warm up: caches, frequency, lazy init */
        (void)sample(&cs[i], sector, num_threads, bufs);
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < num_cs; i++)
            samples[i][r] = sample(&cs[i], sector, num_threads, bufs);
        for (int i = 0; i < num_cs; i++)
            ratios[i][r] = samples[i][r] / samples[num_cs - 1][r];
    }
    for (int i = 0; i < num_cs; i++) {
        out[i] = median(samples[i], rounds);
        out_ratio[i] = median(ratios[i], rounds);
    }
}

int main(int argc, char **argv) {
    int rounds = 101, num_threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            rounds = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--threads") == 0) {
            num_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
            if (i + 1 < argc && argv[i + 1][0] != '-')
                num_threads = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
            g_key_len = atoi(argv[++i]) == 128 ? 32 : 64;
        } else {
            fprintf(stderr, "usage: %s [--rounds R] [--threads [N]] [--key 256|128]\n", argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || num_threads < 0 || num_threads > 64) {
        fprintf(stderr, "bench_xts: rounds must be 1..256, threads 1..64\n");
        return 2;
    }
    if (vmenc_init() != VMENC_OK || vmenc_random_bytes(g_key, sizeof(g_key)) != VMENC_OK)
        return 1;

    int max_threads = num_threads > 1 ? num_threads : 1;
    uint8_t *bufs[64];
    for (int i = 0; i < max_threads; i++) {
        bufs[i] = aligned_alloc(64, BUF_LEN);
        if (bufs[i] == NULL || vmenc_random_bytes(bufs[i], BUF_LEN) != VMENC_OK)
            return 1;
    }

    printf("# bench_xts: XTS-AES-%d, %u KiB buffer, %d rounds (median), impl chosen "
           "automatically here: ",
           g_key_len == 64 ? 256 : 128, BUF_LEN / 1024, rounds);
    {
        vmenc_xts *x = NULL;
        if (vmenc_xts_new_impl(g_key, g_key_len, 512, NULL, &x) != VMENC_OK)
            return 1;
        printf("%s\n", vmenc_xts_impl_name(x));
        vmenc_xts_free(x);
    }
    for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++)
        if (vmenc_xts_impl_available(impls[i]) != VMENC_OK)
            printf("# %s: not runnable on this CPU, not measured\n", impls[i]);

    double single[3][MAX_CONTENDERS], multi[3][MAX_CONTENDERS];
    double single_ratio[3][MAX_CONTENDERS], multi_ratio[3][MAX_CONTENDERS];
    contender cs_by_sector[3][MAX_CONTENDERS];
    int num_cs = 0;
    for (size_t s = 0; s < 3; s++) {
        contender cs[MAX_CONTENDERS];
        num_cs = 0;
        for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
            vmenc_xts *x = NULL;
            if (vmenc_xts_impl_available(impls[i]) != VMENC_OK)
                continue;
            if (vmenc_xts_new_impl(g_key, g_key_len, sectors[s], impls[i], &x) != VMENC_OK)
                return 1;
            cs[num_cs++] = (contender){impls[i], x};
        }
        cs[num_cs++] = (contender){"openssl", NULL};
        measure(cs, num_cs, sectors[s], rounds, 1, bufs, single[s], single_ratio[s]);
        if (num_threads > 1)
            measure(cs, num_cs, sectors[s], rounds, num_threads, bufs, multi[s], multi_ratio[s]);
        memcpy(cs_by_sector[s], cs, sizeof(cs));
    }

    for (size_t s = 0; s < 3; s++) {
        double ossl = single[s][num_cs - 1];
        for (int i = 0; i < num_cs - 1; i++)
            printf("{\"bench\":\"xts\",\"mode\":\"single\",\"impl\":\"%s\",\"sector\":%u,"
                   "\"gbps\":%.3f,\"openssl_gbps\":%.3f,\"ratio_vs_openssl\":%.3f,\"threads\":1}\n",
                   cs_by_sector[s][i].name, sectors[s], single[s][i], ossl, single_ratio[s][i]);
    }
    if (num_threads > 1) {
        for (size_t s = 0; s < 3; s++) {
            double ossl = multi[s][num_cs - 1];
            for (int i = 0; i < num_cs - 1; i++)
                printf("{\"bench\":\"xts\",\"mode\":\"threads\",\"impl\":\"%s\",\"sector\":%u,"
                       "\"gbps\":%.3f,\"openssl_gbps\":%.3f,\"ratio_vs_openssl\":%.3f,"
                       "\"threads\":%d,\"scaling\":%.2f}\n",
                       cs_by_sector[s][i].name, sectors[s], multi[s][i], ossl, multi_ratio[s][i],
                       num_threads, multi[s][i] / single[s][i]);
        }
    }

    printf("\n%-12s %7s %10s %10s %8s", "impl", "sector", "GB/s", "openssl", "ratio");
    if (num_threads > 1)
        printf(" %10s %8s", "GB/s xN", "scaling");
    printf("\n");
    for (size_t s = 0; s < 3; s++)
        for (int i = 0; i < num_cs; i++) {
            printf("%-12s %7u %10.2f %10.2f %8.2f", cs_by_sector[s][i].name, sectors[s],
                   single[s][i], single[s][num_cs - 1], single_ratio[s][i]);
            if (num_threads > 1)
                printf(" %10.2f %8.2f", multi[s][i], multi[s][i] / single[s][i]);
            printf("\n");
        }
    if (num_threads > 1)
        printf("(threads: %d sharing one context per backend; OpenSSL one EVP_CIPHER_CTX each)\n",
               num_threads);

    for (size_t s = 0; s < 3; s++)
        for (int i = 0; i < num_cs; i++)
            vmenc_xts_free(cs_by_sector[s][i].x);
    for (int i = 0; i < max_threads; i++)
        free(bufs[i]);
    return 0;
}
