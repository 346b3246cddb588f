/*
 * bench/bench_kms.c - KMS core latencies, as JSON lines:
 *   - opening a file keystore (one Argon2id derivation, default limits
 *     unless VMENC_BENCH_KDF=fast),
 *   - file provider create_kek (lock, re-read, decrypt, seal, write, fsync,
 *     rename, fsync dir) and get_kek (file unchanged: stat + lookup),
 *   - key manager get_kek and unwrap, cached vs uncached (forget first),
 *   - key manager wrap_dek (KEK cached) with the round-trip proof (the
 *     default: a fresh fetch + unwrap + compare) and without it
 *     (VMENC_KEYMGR_NO_ROUNDTRIP_PROOF): the proof's cost.
 *
 * usage: bench_kms [NUM_CREATES] [NUM_GETS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "vmenc/kms_file.h"
#include "vmenc/vmenc.h"

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *op, uint64_t *ns, size_t n) {
    qsort(ns, n, sizeof(*ns), cmp_u64);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += ns[i];
    printf("{\"bench\":\"kms\",\"op\":\"%s\",\"n\":%zu,\"mean_us\":%.2f,\"p50_us\":%.2f,\"p99_us\":%.2f,"
           "\"per_sec\":%.0f}\n",
           op, n, sum / 1e3 / (double)n, ns[n / 2] / 1e3, ns[(n * 99) / 100] / 1e3,
           sum ? 1e9 * (double)n / (double)sum : 0.0);
}

#define CHECK(expr)                                                                   \
    do {                                                                              \
        vmenc_status s_ = (expr);                                                     \
        if (s_ != VMENC_OK) {                                                         \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, vmenc_strerror(s_)); \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

int main(int argc, char **argv) {
    size_t num_creates = argc > 1 ? strtoul(argv[1], NULL, 10) : 50;
    size_t num_gets = argc > 2 ? strtoul(argv[2], NULL, 10) : 20000;
    if (num_creates < 2 || num_gets < 2)
        return 2;
    CHECK(vmenc_init());
    char dir[] = "/tmp/vmenc-bench-kms-XXXXXX";
    if (mkdtemp(dir) == NULL)
        return 1;
    char path[128];
    snprintf(path, sizeof(path), "%s/keystore", dir);
    const char *kdf = getenv("VMENC_BENCH_KDF");
    bool fast = kdf != NULL && strcmp(kdf, "fast") == 0;
    vmenc_kms_file_options o = {.struct_size = sizeof(o), .flags = VMENC_KMS_FILE_CREATE};
    if (fast) {
        o.kdf_opslimit = 1;
        o.kdf_memlimit_kib = 8;
    }
    static const uint8_t pass[] = "benchmark passphrase";
    uint64_t t0 = vmenc_now_monotonic_ns();
    vmenc_kms_provider *p = NULL;
    CHECK(vmenc_kms_file_provider_new(path, pass, sizeof(pass) - 1, &o, &p));
    uint64_t t1 = vmenc_now_monotonic_ns();
    printf("{\"bench\":\"kms\",\"op\":\"file_create_and_open\",\"kdf\":\"%s\",\"ms\":%.1f}\n",
           fast ? "1 pass, 8 KiB" : "Argon2id default (3 passes, 64 MiB)", (t1 - t0) / 1e6);

    uint64_t *ns = calloc(num_gets > num_creates ? num_gets : num_creates, sizeof(*ns));
    char (*ids)[VMENC_KMS_KEY_ID_CAP] = calloc(num_creates, sizeof(*ids));
    for (size_t i = 0; i < num_creates; i++) {
        uint64_t a = vmenc_now_monotonic_ns();
        CHECK(vmenc_kms_provider_create_kek(p, "bench", 10000, ids[i], sizeof(ids[i])));
        ns[i] = vmenc_now_monotonic_ns() - a;
    }
    report("file_create_kek", ns, num_creates);
    for (size_t i = 0; i < num_gets; i++) {
        vmenc_kek *k = NULL;
        uint64_t a = vmenc_now_monotonic_ns();
        CHECK(vmenc_kms_provider_get_kek(p, ids[i % num_creates], 1000, &k));
        ns[i] = vmenc_now_monotonic_ns() - a;
        vmenc_kek_free(k);
    }
    report("file_get_kek", ns, num_gets);
    vmenc_kms_provider_free(p);

    /* Key manager over the same keystore. */
    char opt_create[] = "create=1";
    const char *opts[] = {opt_create, NULL};
    vmenc_kms_endpoint_config cfg = {.struct_size = sizeof(cfg), .type = "file", .address = path,
                                     .options = opts, .secret = pass, .secret_len = sizeof(pass) - 1};
    vmenc_keymgr *m = NULL;
    CHECK(vmenc_keymgr_new(NULL, &m));
    CHECK(vmenc_keymgr_add_cluster(m, "native", &cfg, 1, NULL));
    vmenc_dek *dek = NULL;
    CHECK(vmenc_dek_generate(&dek));
    vmenc_wrap_context ctx = {sizeof(ctx), "vm-1", "disk-0", "disk"};
    vmenc_wrapped_key *wk = NULL;
    CHECK(vmenc_keymgr_wrap_dek(m, "native", ids[0], dek, &ctx, 10000, &wk));
    for (int uncached = 0; uncached <= 1; uncached++) {
        for (size_t i = 0; i < num_gets; i++) {
            if (uncached)
                CHECK(vmenc_keymgr_forget(m, "native", ids[0]));
            vmenc_kek *k = NULL;
            uint64_t a = vmenc_now_monotonic_ns();
            CHECK(vmenc_keymgr_get_kek(m, "native", ids[0], 10000, &k));
            ns[i] = vmenc_now_monotonic_ns() - a;
            vmenc_kek_free(k);
        }
        report(uncached ? "keymgr_get_kek_uncached" : "keymgr_get_kek_cached", ns, num_gets);
        for (size_t i = 0; i < num_gets; i++) {
            if (uncached)
                CHECK(vmenc_keymgr_forget(m, "native", ids[0]));
            vmenc_dek *back = NULL;
            uint64_t a = vmenc_now_monotonic_ns();
            CHECK(vmenc_keymgr_unwrap_dek(m, wk, &ctx, 10000, &back));
            ns[i] = vmenc_now_monotonic_ns() - a;
            vmenc_dek_free(back);
        }
        report(uncached ? "keymgr_unwrap_uncached" : "keymgr_unwrap_cached", ns, num_gets);
    }
    /* wrap_dek with and without the round-trip proof, KEK cached. */
    vmenc_keymgr *nop = NULL;
    vmenc_keymgr_options no_proof = {.struct_size = sizeof(no_proof), .flags = VMENC_KEYMGR_NO_ROUNDTRIP_PROOF};
    CHECK(vmenc_keymgr_new(&no_proof, &nop));
    CHECK(vmenc_keymgr_add_cluster(nop, "native", &cfg, 1, NULL));
    for (int proof = 1; proof >= 0; proof--) {
        vmenc_keymgr *w = proof ? m : nop;
        vmenc_wrapped_key *warm = NULL;
        CHECK(vmenc_keymgr_wrap_dek(w, "native", ids[0], dek, &ctx, 10000, &warm)); /* caches the KEK */
        vmenc_wrapped_key_free(warm);
        for (size_t i = 0; i < num_gets; i++) {
            vmenc_wrapped_key *x = NULL;
            uint64_t a = vmenc_now_monotonic_ns();
            CHECK(vmenc_keymgr_wrap_dek(w, "native", ids[0], dek, &ctx, 10000, &x));
            ns[i] = vmenc_now_monotonic_ns() - a;
            vmenc_wrapped_key_free(x);
        }
        report(proof ? "keymgr_wrap_dek_with_roundtrip_proof" : "keymgr_wrap_dek_no_proof", ns, num_gets);
    }
    vmenc_keymgr_free(nop);
    vmenc_keymgr_stats st = {.struct_size = sizeof(st)};
    CHECK(vmenc_keymgr_get_stats(m, &st));
    printf("{\"bench\":\"kms\",\"op\":\"keymgr_stats\",\"hits\":%llu,\"misses\":%llu,\"errors\":%llu}\n",
           (unsigned long long)st.hits, (unsigned long long)st.misses, (unsigned long long)st.errors);
    vmenc_wrapped_key_free(wk);
    vmenc_dek_free(dek);
    vmenc_keymgr_free(m);
    free(ns);
    free(ids);
    char lock[160], tmp[160];
    snprintf(lock, sizeof(lock), "%s.lock", path);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(path);
    unlink(lock);
    unlink(tmp);
    rmdir(dir);
    return 0;
}
