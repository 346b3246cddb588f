/*
 * bench/bench_kmip.c - KMIP provider latencies against a real PyKMIP server
 * it starts itself (tests/kms/pykmip.sh, free ports, temp dir):
 *
 *   get_cold        KEK fetch on a new connection (TCP + TLS 1.2 handshake
 *                   with client certificate + Get/GetAttributes)
 *   get_warm        KEK fetch on the persistent connection
 *   keymgr_hit      KEK through the key manager's in-memory cache
 *   keymgr_miss     KEK through the key manager after forgetting the cache
 *   failover_refused  cluster call whose primary refuses connections
 *                     (the second endpoint answers on a warm connection)
 *   failover_blackhole  cluster call whose primary accepts TCP and never
 *                     answers: its connect timeout (200 ms here) decides
 *
 * Usage: bench_kmip [ITERATIONS]  (default 50 for network cases, capped
 * at 1000). Prints one JSON line per case
 *   {"bench":"kmip","case":"get_warm","n":50,"median_us":...,"p90_us":...,"min_us":...,"max_us":...}
 * then a human-readable table. Exit 77 if PyKMIP is not installed.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tests/kms/pykmip_ctl.h"
#include "core/internal.h"
#include "kms/kmip/kmip_provider.h"
#include "vmenc/vmenc.h"

#define T_MS 20000u

typedef struct result {
    const char *name;
    size_t n;
    double median, p90, min, max; /* microseconds */
} result;

static result g_results[8];
static size_t g_num_results;
static pykmip_env g_env;

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void report(const char *name, uint64_t *ns, size_t n) {
    qsort(ns, n, sizeof(*ns), cmp_u64);
    result r = {name, n, ns[n / 2] / 1e3, ns[(n * 9) / 10] / 1e3, ns[0] / 1e3, ns[n - 1] / 1e3};
    printf("{\"bench\":\"kmip\",\"case\":\"%s\",\"n\":%zu,\"median_us\":%.1f,\"p90_us\":%.1f,"
           "\"min_us\":%.1f,\"max_us\":%.1f}\n",
           r.name, r.n, r.median, r.p90, r.min, r.max);
    fflush(stdout);
    if (g_num_results < VMENC_ARRAY_LEN(g_results))
        g_results[g_num_results++] = r;
}

static void die(const char *what, vmenc_status s) {
    fprintf(stderr, "bench_kmip: %s: %s (%s)\n", what, vmenc_strerror(s), vmenc_status_name(s));
    pykmip_env_cleanup(&g_env);
    exit(1);
}

#define CHECK(what, expr)                      \
    do {                                       \
        vmenc_status s_ = (expr);              \
        if (s_ != VMENC_OK)                    \
            die(what, s_);                     \
    } while (0)

typedef struct cfg_bufs {
    char addr[64], ca[PATH_MAX + 32], cert[PATH_MAX + 32], key[PATH_MAX + 32];
    const char *opts[6];
} cfg_bufs;

static vmenc_kms_endpoint_config endpoint(int port, const char *extra, cfg_bufs *b) {
    snprintf(b->addr, sizeof(b->addr), "127.0.0.1:%d", port);
    snprintf(b->ca, sizeof(b->ca), "ca=%s/certs/ca.crt", g_env.dir);
    snprintf(b->cert, sizeof(b->cert), "cert=%s/certs/client.crt", g_env.dir);
    snprintf(b->key, sizeof(b->key), "key=%s/certs/client.key", g_env.dir);
    size_t n = 0;
    b->opts[n++] = b->ca;
    b->opts[n++] = b->cert;
    b->opts[n++] = b->key;
    if (extra != NULL)
        b->opts[n++] = extra;
    b->opts[n] = NULL;
    vmenc_kms_endpoint_config c = {.struct_size = sizeof(c), .type = "kmip", .address = b->addr,
                                   .options = b->opts};
    return c;
}

static vmenc_kms_provider *provider(int port, const char *extra) {
    cfg_bufs b;
    vmenc_kms_endpoint_config c = endpoint(port, extra, &b);
    vmenc_kms_provider *p = NULL;
    CHECK("provider", vmenc_kms_provider_new_builtin(&c, &p));
    return p;
}

/* A cluster whose failed endpoints are retried on every call (1 ms
 * back-off), so each call measures a full failover. */
static vmenc_kms_cluster *cluster(vmenc_kms_provider *first, vmenc_kms_provider *second) {
    vmenc_kms_cluster_options o = {.struct_size = sizeof(o), .backoff_initial_ms = 1, .backoff_max_ms = 1,
                                   .flags = VMENC_KMS_CLUSTER_NO_JITTER};
    vmenc_kms_cluster *c = NULL;
    CHECK("cluster", vmenc_kms_cluster_new("bench", &o, &c));
    CHECK("endpoint", vmenc_kms_cluster_take_endpoint(c, "primary", first));
    CHECK("endpoint", vmenc_kms_cluster_take_endpoint(c, "secondary", second));
    return c;
}

static int listen_blackhole(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? strtol(argv[1], NULL, 10) : 50;
    if (iters < 5)
        iters = 5;
    if (iters > 1000)
        iters = 1000;
    size_t n = (size_t)iters;
    if (vmenc_init() != VMENC_OK || pykmip_env_init(&g_env, VMENC_SOURCE_DIR) != 0)
        return 1;
    if (!pykmip_available(&g_env)) {
        fprintf(stderr, "bench_kmip: python3-pykmip not installed\n");
        pykmip_env_cleanup(&g_env);
        return 77;
    }
    int port = pykmip_free_port();
    if (port < 0 || pykmip_start(&g_env, port, NULL) != 0) {
        fprintf(stderr, "bench_kmip: cannot start PyKMIP\n");
        pykmip_env_cleanup(&g_env);
        return 1;
    }
    uint64_t *ns = calloc(10000, sizeof(*ns));
    if (ns == NULL)
        return 1;

    vmenc_kms_provider *p = provider(port, NULL);
    char id[VMENC_KMS_KEY_ID_CAP];
    CHECK("create", vmenc_kms_provider_create_kek(p, "bench-kek", T_MS, id, sizeof(id)));
    vmenc_kek *k = NULL;

    /* cold: a new TCP connection and TLS handshake for each fetch */
    for (size_t i = 0; i < n; i++) {
        vmenc_kmip_disconnect(p);
        uint64_t t0 = vmenc_now_monotonic_ns();
        CHECK("get (cold)", vmenc_kms_provider_get_kek(p, id, T_MS, &k));
        ns[i] = vmenc_now_monotonic_ns() - t0;
        vmenc_kek_free(k);
    }
    report("get_cold", ns, n);

    /* warm: the persistent connection */
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = vmenc_now_monotonic_ns();
        CHECK("get (warm)", vmenc_kms_provider_get_kek(p, id, T_MS, &k));
        ns[i] = vmenc_now_monotonic_ns() - t0;
        vmenc_kek_free(k);
    }
    report("get_warm", ns, n);

    /* the key manager: cache hits, and misses (forget, then fetch) */
    vmenc_keymgr *m = NULL;
    CHECK("keymgr", vmenc_keymgr_new(NULL, &m));
    cfg_bufs b;
    vmenc_kms_endpoint_config ec = endpoint(port, NULL, &b);
    CHECK("keymgr cluster", vmenc_keymgr_add_cluster(m, "bench", &ec, 1, NULL));
    CHECK("keymgr get", vmenc_keymgr_get_kek(m, "bench", id, T_MS, &k));
    vmenc_kek_free(k);
    size_t hits = n * 100 > 10000 ? 10000 : n * 100;
    for (size_t i = 0; i < hits; i++) {
        uint64_t t0 = vmenc_now_monotonic_ns();
        CHECK("keymgr hit", vmenc_keymgr_get_kek(m, "bench", id, T_MS, &k));
        ns[i] = vmenc_now_monotonic_ns() - t0;
        vmenc_kek_free(k);
    }
    report("keymgr_hit", ns, hits);
    for (size_t i = 0; i < n; i++) {
        CHECK("forget", vmenc_keymgr_forget(m, "bench", id));
        uint64_t t0 = vmenc_now_monotonic_ns();
        CHECK("keymgr miss", vmenc_keymgr_get_kek(m, "bench", id, T_MS, &k));
        ns[i] = vmenc_now_monotonic_ns() - t0;
        vmenc_kek_free(k);
    }
    report("keymgr_miss", ns, n);
    vmenc_keymgr_stats st = {.struct_size = sizeof(st)};
    CHECK("stats", vmenc_keymgr_get_stats(m, &st));
    vmenc_keymgr_free(m);

    /* failover, primary refuses connections */
    int dead = pykmip_free_port();
    vmenc_kms_cluster *c = cluster(provider(dead, NULL), provider(port, NULL));
    size_t ep;
    CHECK("warm-up", vmenc_kms_cluster_get_kek(c, id, T_MS, &k, &ep));
    vmenc_kek_free(k);
    for (size_t i = 0; i < n; i++) {
        sleep_ms(2); /* let the 1 ms back-off pass: every call tries the dead primary */
        uint64_t t0 = vmenc_now_monotonic_ns();
        CHECK("failover (refused)", vmenc_kms_cluster_get_kek(c, id, T_MS, &k, &ep));
        ns[i] = vmenc_now_monotonic_ns() - t0;
        vmenc_kek_free(k);
        if (ep != 1)
            die("failover (refused) answered by the primary", VMENC_E_INTERNAL);
    }
    report("failover_refused", ns, n);
    uint64_t failovers = vmenc_kms_cluster_num_failovers(c);
    vmenc_kms_cluster_free(c);

    /* failover, primary black-holed: the connect timeout decides */
    int hole_port;
    int hole = listen_blackhole(&hole_port);
    if (hole < 0)
        die("listen", VMENC_E_IO);
    c = cluster(provider(hole_port, "connect_timeout_ms=200"), provider(port, NULL));
    size_t nb = n > 10 ? 10 : n;
    for (size_t i = 0; i < nb; i++) {
        sleep_ms(2);
        uint64_t t0 = vmenc_now_monotonic_ns();
        CHECK("failover (black hole)", vmenc_kms_cluster_get_kek(c, id, T_MS, &k, &ep));
        ns[i] = vmenc_now_monotonic_ns() - t0;
        vmenc_kek_free(k);
    }
    report("failover_blackhole", ns, nb);
    vmenc_kms_cluster_free(c);
    close(hole);

    CHECK("destroy", vmenc_kms_provider_destroy_kek(p, id, T_MS));
    vmenc_kms_provider_free(p);
    free(ns);
    pykmip_env_cleanup(&g_env);

    fprintf(stderr, "\nKMIP provider vs PyKMIP 0.10 on 127.0.0.1 (TLS 1.2, mutual auth)\n");
    fprintf(stderr, "%-20s %6s %12s %12s %12s %12s\n", "case", "n", "median us", "p90 us", "min us", "max us");
    for (size_t i = 0; i < g_num_results; i++)
        fprintf(stderr, "%-20s %6zu %12.1f %12.1f %12.1f %12.1f\n", g_results[i].name, g_results[i].n,
                g_results[i].median, g_results[i].p90, g_results[i].min, g_results[i].max);
    fprintf(stderr, "key manager: %llu hits, %llu misses; refused-primary cluster: %llu failovers\n",
            (unsigned long long)st.hits, (unsigned long long)st.misses, (unsigned long long)failovers);
    return 0;
}
