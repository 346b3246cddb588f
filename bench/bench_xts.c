/*
 * bench/bench_xts.c - throughput of every runnable XTS backend against
 * OpenSSL's EVP XTS used the way a block layer uses it (key set once, the
 * tweak set per sector with EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, -1),
 * then EVP_CipherUpdate).
 *
 *   bench_xts [--rounds R] [--threads [N]] [--impl NAME] [--key 256|128]
 *
 * Encrypts a 256 KiB buffer (fits in L2) at sector sizes 512, 4096 and
 * 65536. Contenders are interleaved round-robin within each round so load
 * changes hit all of them alike; each rate is the median over the rounds,
 * and ratio_vs_openssl the median of the per-round ratios (robust on a busy
 * machine).
 * Every round also times the AES units' own ceiling: AES (same key size)
 * over independent blocks of a 16 KiB buffer held in L1, with the widest
 * vector AES the CPU has (VAES on zmm, else ymm, else AES-NI on xmm), 16
 * vectors in flight; fraction_of_ceiling is a backend's rate over that one,
 * the median of the per-round fractions.
 * Prints one JSON line per (backend, sector size) and a human table. With
 * --threads, also runs N threads (default: all online CPUs) sharing one
 * context per backend and reports the aggregate rate and the scaling over
 * one thread.
 */
#include <immintrin.h>
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
#define MAX_CONTENDERS 6
#define CEILING_LEN (16u * 1024u) /* held in L1 */
#define THREAD_PASS_FACTOR 4 /* threaded samples: 4x the bytes per thread */

static const char *const impls[] = {"vaes-avx512", "vaes-avx2", "aesni", "portable"};
static const uint32_t sectors[] = {512, 4096, 65536};

typedef struct contender {
    const char *name; /* backend name, "ceiling" or "openssl" */
    vmenc_xts *x;     /* NULL for ceiling and openssl */
    bool ceiling;
} contender;

/* ---- the AES units' ceiling ------------------------------------------------ */
/* Random round keys: the cost of AES does not depend on their values. */
static uint8_t g_rk[15][16] __attribute__((aligned(64)));

#define CEIL_BODY(VEC, LOAD, STORE, XOR, ENC, LAST, BCAST)                                 \
    VEC k[15];                                                                             \
    for (unsigned r = 0; r <= rounds; r++)                                                 \
        k[r] = BCAST(g_rk[r]);                                                             \
    const size_t step = 16 * sizeof(VEC);                                                  \
    for (size_t off = 0; off + step <= len; off += step) {                                 \
        VEC d[16];                                                                         \
        _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) d[i] =                       \
            XOR(LOAD(buf + off + (size_t)i * sizeof(VEC)), k[0]);                          \
        for (unsigned r = 1; r < rounds; r++)                                              \
            _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) d[i] = ENC(d[i], k[r]);  \
        _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++)                              \
            STORE(buf + off + (size_t)i * sizeof(VEC), LAST(d[i], k[rounds]));             \
    }

__attribute__((target("avx512f,avx512bw,vaes"))) static void ceil_zmm(uint8_t *buf, size_t len,
                                                                       unsigned rounds) {
#define Z_LOAD(p) _mm512_loadu_si512((const void *)(p))
#define Z_STORE(p, v) _mm512_storeu_si512((void *)(p), (v))
#define Z_BCAST(p) _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(p)))
    CEIL_BODY(__m512i, Z_LOAD, Z_STORE, _mm512_xor_si512, _mm512_aesenc_epi128,
              _mm512_aesenclast_epi128, Z_BCAST)
}

__attribute__((target("avx2,vaes"))) static void ceil_ymm(uint8_t *buf, size_t len, unsigned rounds) {
#define Y_LOAD(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define Y_STORE(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), (v))
#define Y_BCAST(p) _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p)))
    CEIL_BODY(__m256i, Y_LOAD, Y_STORE, _mm256_xor_si256, _mm256_aesenc_epi128,
              _mm256_aesenclast_epi128, Y_BCAST)
}

__attribute__((target("aes,sse4.1"))) static void ceil_xmm(uint8_t *buf, size_t len, unsigned rounds) {
#define X_LOAD(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define X_STORE(p, v) _mm_storeu_si128((__m128i *)(void *)(p), (v))
#define X_BCAST(p) _mm_loadu_si128((const __m128i *)(p))
    CEIL_BODY(__m128i, X_LOAD, X_STORE, _mm_xor_si128, _mm_aesenc_si128, _mm_aesenclast_si128,
              X_BCAST)
}

static void (*g_ceil_fn)(uint8_t *, size_t, unsigned);
static const char *g_ceil_isa = "none";

static void pick_ceiling(void) {
    if (vmenc_xts_impl_available("vaes-avx512") == VMENC_OK) {
        g_ceil_fn = ceil_zmm;
        g_ceil_isa = "vaes-zmm";
    } else if (vmenc_xts_impl_available("vaes-avx2") == VMENC_OK) {
        g_ceil_fn = ceil_ymm;
        g_ceil_isa = "vaes-ymm";
    } else if (vmenc_xts_impl_available("aesni") == VMENC_OK) {
        g_ceil_fn = ceil_xmm;
        g_ceil_isa = "aesni-xmm";
    }
}

typedef struct worker {
    const contender *c;
    const uint8_t *key;
    size_t key_len;
    uint32_t sector;
    uint8_t *buf;
    size_t passes;
    int failed;
    uint64_t t0, t1; /* this worker's own start and end (threaded samples) */
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
    if (w->c->ceiling) { /* the same bytes, as passes over an L1-sized buffer */
        unsigned rounds = w->key_len == 64 ? 14 : 10;
        for (size_t p = 0; p < w->passes * (BUF_LEN / CEILING_LEN); p++)
            g_ceil_fn(w->buf, CEILING_LEN, rounds);
        EVP_CIPHER_CTX_free(ctx);
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

static pthread_barrier_t g_start;

/* Each worker reads the clock itself, right after the start barrier and
 * right after its last pass. The main thread must not time the threads: with
 * as many workers as CPUs it is itself waiting for a CPU, so it could read
 * "start" after the workers had already finished (this is what made earlier
 * runs report 632 GB/s, or a scaling of 0.97). */
static void *thread_main(void *p) {
    worker *w = p;
    pthread_barrier_wait(&g_start);
    w->t0 = vmenc_now_monotonic_ns();
    run_passes(w);
    w->t1 = vmenc_now_monotonic_ns();
    return NULL;
}

/* Aggregate GB/s of |num_threads| threads running contender |c| once. */
static double sample(const contender *c, uint32_t sector, int num_threads, uint8_t **bufs) {
    size_t passes = MIN_BYTES_PER_SAMPLE / BUF_LEN;
    worker w[64];
    if (num_threads == 1) {
        w[0] = (worker){c, g_key, g_key_len, sector, bufs[0], passes, 0, 0, 0};
        uint64_t t0 = vmenc_now_monotonic_ns();
        run_passes(&w[0]);
        uint64_t t1 = vmenc_now_monotonic_ns();
        if (w[0].failed) {
            fprintf(stderr, "bench_xts: %s failed\n", c->name);
            exit(1);
        }
        return (double)passes * BUF_LEN / (double)(t1 - t0);
    }
    /* Threads do more passes each, so that thread start-up skew is small
     * against the sample. The rate is all bytes over the span from the
     * first worker's start to the last one's end. */
    passes *= THREAD_PASS_FACTOR;
    pthread_t t[64];
    pthread_barrier_init(&g_start, NULL, (unsigned)num_threads);
    for (int i = 0; i < num_threads; i++) {
        w[i] = (worker){c, g_key, g_key_len, sector, bufs[i], passes, 0, 0, 0};
        if (pthread_create(&t[i], NULL, thread_main, &w[i]) != 0) {
            fprintf(stderr, "bench_xts: pthread_create failed\n");
            exit(1);
        }
    }
    uint64_t t0 = UINT64_MAX, t1 = 0;
    for (int i = 0; i < num_threads; i++) {
        pthread_join(t[i], NULL);
        if (w[i].failed) {
            fprintf(stderr, "bench_xts: %s failed\n", c->name);
            exit(1);
        }
        t0 = w[i].t0 < t0 ? w[i].t0 : t0;
        t1 = w[i].t1 > t1 ? w[i].t1 : t1;
    }
    pthread_barrier_destroy(&g_start);
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
                    uint8_t **bufs, double *out, double *out_ratio, int ceil_idx,
                    double *out_frac, double *out_scaling) {
    static double samples[MAX_CONTENDERS][MAX_ROUNDS], ratios[MAX_CONTENDERS][MAX_ROUNDS];
    static double fracs[MAX_CONTENDERS][MAX_ROUNDS], scalings[MAX_CONTENDERS][MAX_ROUNDS];
    for (int i = 0; i < num_cs; i++) /* warm up: caches, frequency, lazy init */
        (void)sample(&cs[i], sector, num_threads, bufs);
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < num_cs; i++) {
            samples[i][r] = sample(&cs[i], sector, num_threads, bufs);
            /* Scaling is the ratio to a one-thread sample of the same
             * contender taken right after, so both see the same load from
             * whatever else shares the machine. */
            scalings[i][r] =
                num_threads > 1 ? samples[i][r] / sample(&cs[i], sector, 1, bufs) : 1.0;
        }
        for (int i = 0; i < num_cs; i++) {
            ratios[i][r] = samples[i][r] / samples[num_cs - 1][r];
            fracs[i][r] = ceil_idx >= 0 ? samples[i][r] / samples[ceil_idx][r] : 0;
        }
    }
    for (int i = 0; i < num_cs; i++) {
        out[i] = median(samples[i], rounds);
        out_ratio[i] = median(ratios[i], rounds);
        out_frac[i] = median(fracs[i], rounds);
        out_scaling[i] = median(scalings[i], rounds);
    }
}

int main(int argc, char **argv) {
    int rounds = 101, num_threads = 0;
    const char *only_impl = NULL; /* --impl: measure one backend (and the baselines) */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            rounds = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--threads") == 0) {
            num_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
            if (i + 1 < argc && argv[i + 1][0] != '-')
                num_threads = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--impl") == 0 && i + 1 < argc) {
            only_impl = argv[++i];
        } else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
            g_key_len = atoi(argv[++i]) == 128 ? 32 : 64;
        } else {
            fprintf(stderr, "usage: %s [--rounds R] [--threads [N]] [--impl NAME] [--key 256|128]\n", argv[0]);
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
    double single_frac[3][MAX_CONTENDERS], multi_frac[3][MAX_CONTENDERS];
    double single_scaling[3][MAX_CONTENDERS], multi_scaling[3][MAX_CONTENDERS];
    pick_ceiling();
    vmenc_random_bytes(&g_rk[0][0], sizeof(g_rk)) == VMENC_OK ? (void)0 : exit(1);
    int ceil_idx = -1;
    contender cs_by_sector[3][MAX_CONTENDERS];
    int num_cs = 0;
    for (size_t s = 0; s < 3; s++) {
        contender cs[MAX_CONTENDERS];
        num_cs = 0;
        for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
            vmenc_xts *x = NULL;
            if (vmenc_xts_impl_available(impls[i]) != VMENC_OK ||
                (only_impl != NULL && strcmp(only_impl, impls[i]) != 0))
                continue;
            if (vmenc_xts_new_impl(g_key, g_key_len, sectors[s], impls[i], &x) != VMENC_OK)
                return 1;
            cs[num_cs++] = (contender){impls[i], x, false};
        }
        ceil_idx = -1;
        if (g_ceil_fn != NULL) {
            ceil_idx = num_cs;
            cs[num_cs++] = (contender){"ceiling", NULL, true};
        }
        cs[num_cs++] = (contender){"openssl", NULL, false};
        measure(cs, num_cs, sectors[s], rounds, 1, bufs, single[s], single_ratio[s], ceil_idx,
                single_frac[s], single_scaling[s]);
        if (num_threads > 1)
            measure(cs, num_cs, sectors[s], rounds, num_threads, bufs, multi[s], multi_ratio[s],
                    ceil_idx, multi_frac[s], multi_scaling[s]);
        memcpy(cs_by_sector[s], cs, sizeof(cs));
    }

    for (size_t s = 0; s < 3; s++) {
        double ossl = single[s][num_cs - 1];
        for (int i = 0; i < num_cs - 1; i++)
            if (!cs_by_sector[s][i].ceiling)
            printf("{\"bench\":\"xts\",\"mode\":\"single\",\"impl\":\"%s\",\"sector\":%u,"
                   "\"gbps\":%.3f,\"openssl_gbps\":%.3f,\"ratio_vs_openssl\":%.3f,"
                   "\"ceiling_gbps\":%.3f,\"ceiling_isa\":\"%s\",\"fraction_of_ceiling\":%.3f,"
                   "\"threads\":1}\n",
                   cs_by_sector[s][i].name, sectors[s], single[s][i], ossl, single_ratio[s][i],
                   ceil_idx >= 0 ? single[s][ceil_idx] : 0.0, g_ceil_isa, single_frac[s][i]);
    }
    if (num_threads > 1) {
        for (size_t s = 0; s < 3; s++) {
            double ossl = multi[s][num_cs - 1];
            for (int i = 0; i < num_cs - 1; i++)
                if (!cs_by_sector[s][i].ceiling)
                printf("{\"bench\":\"xts\",\"mode\":\"threads\",\"impl\":\"%s\",\"sector\":%u,"
                       "\"gbps\":%.3f,\"openssl_gbps\":%.3f,\"ratio_vs_openssl\":%.3f,"
                       "\"fraction_of_ceiling\":%.3f,\"threads\":%d,\"scaling\":%.2f}\n",
                       cs_by_sector[s][i].name, sectors[s], multi[s][i], ossl, multi_ratio[s][i],
                       multi_frac[s][i], num_threads, multi_scaling[s][i]);
        }
    }

    printf("\n%-12s %7s %10s %10s %8s %8s", "impl", "sector", "GB/s", "openssl", "ratio",
           "ceiling");
    if (num_threads > 1)
        printf(" %10s %8s", "GB/s xN", "scaling");
    printf("\n");
    for (size_t s = 0; s < 3; s++)
        for (int i = 0; i < num_cs; i++) {
            printf("%-12s %7u %10.2f %10.2f %8.2f %8.2f", cs_by_sector[s][i].name, sectors[s],
                   single[s][i], single[s][num_cs - 1], single_ratio[s][i], single_frac[s][i]);
            if (num_threads > 1)
                printf(" %10.2f %8.2f", multi[s][i], multi_scaling[s][i]);
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
