/*
 * bench/bench_pkcs11.c - wraps and unwraps per second inside a PKCS#11 token,
 * per mechanism, as JSON lines.
 *
 * Usage: bench_pkcs11 [SECONDS_PER_CASE [THREADS]]
 *   Without PKCS11_TEST_MODULE/PKCS11_TOKEN_LABEL in the environment it
 *   makes a throwaway SoftHSM2 token with tests/kms/softhsm.sh in a temp dir
 *   (removed at the end). With PKCS11_MODULE, PKCS11_TOKEN_LABEL,
 *   PKCS11_USER_PIN and PKCS11_KEY_LABEL set (as softhsm.sh's env.sh does) it
 *   uses that token and key instead.
 *
 * Each line: {"bench":"pkcs11","mech":"kwp","op":"wrap","payload_bytes":96,
 * "threads":1,"ops":N,"seconds":S,"ops_per_sec":R}. Payloads are what the
 * key layer sends: 96 bytes (DEK || binding digest) for the key-wrap
 * mechanisms, 64 bytes (the DEK) for GCM.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"
#include "vmenc/kms.h"
#include "vmenc/kms_pkcs11.h"

typedef struct bench_case {
    vmenc_kms_provider *p;
    const char *key;
    vmenc_kms_wrap_mech mech;
    bool unwrap;
    double seconds;
    uint64_t ops;
    int failures;
} bench_case;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run_case(void *arg) {
    bench_case *c = arg;
    uint8_t in[96], iv[12], aad[48], wrapped[128], back[128];
    size_t n = c->mech == VMENC_KMS_WRAP_AES_GCM ? 64 : 96, wl = 0, bl = 0;
    if (vmenc_random_bytes(in, sizeof(in)) != VMENC_OK || vmenc_random_bytes(iv, sizeof(iv)) != VMENC_OK) {
        c->failures++;
        return NULL;
    }
    memset(aad, 0x5a, sizeof(aad));
    vmenc_kms_wrap_params w = {sizeof(w), c->mech, NULL, 0, NULL, 0};
    if (c->mech == VMENC_KMS_WRAP_AES_GCM) {
        w.iv = iv;
        w.iv_len = sizeof(iv);
        w.aad = aad;
        w.aad_len = sizeof(aad);
    }
    if (c->p->ops->wrap(c->p, c->key, &w, in, n, 60000, wrapped, sizeof(wrapped), &wl) != VMENC_OK) {
        c->failures++;
        return NULL;
    }
    double start = now_s(), end = start + c->seconds;
    uint64_t ops = 0;
    while (now_s() < end) {
        for (int i = 0; i < 16; i++) {
            vmenc_status st =
                c->unwrap ? c->p->ops->unwrap(c->p, c->key, &w, wrapped, wl, 60000, back, sizeof(back), &bl)
                          : c->p->ops->wrap(c->p, c->key, &w, in, n, 60000, wrapped, sizeof(wrapped), &wl);
            if (st != VMENC_OK)
                c->failures++;
            ops++;
        }
    }
    c->seconds = now_s() - start;
    c->ops = ops;
    vmenc_memzero(back, sizeof(back));
    return NULL;
}

static int bench(vmenc_kms_provider *p, const char *key, vmenc_kms_wrap_mech mech, const char *mech_name,
                 bool unwrap, double seconds, int threads) {
    bench_case cases[16];
    pthread_t t[16];
    for (int i = 0; i < threads; i++) {
        cases[i] = (bench_case){p, key, mech, unwrap, seconds, 0, 0};
        if (pthread_create(&t[i], NULL, run_case, &cases[i]) != 0)
            return 1;
    }
    uint64_t ops = 0;
    double secs = 0;
    int failures = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        ops += cases[i].ops;
        failures += cases[i].failures;
        if (cases[i].seconds > secs)
            secs = cases[i].seconds;
    }
    if (failures != 0) {
        fprintf(stderr, "bench_pkcs11: %d failed operations (%s %s)\n", failures, mech_name,
                unwrap ? "unwrap" : "wrap");
        return 1;
    }
    printf("{\"bench\":\"pkcs11\",\"mech\":\"%s\",\"op\":\"%s\",\"payload_bytes\":%d,\"threads\":%d,"
           "\"ops\":%llu,\"seconds\":%.3f,\"ops_per_sec\":%.0f}\n",
           mech_name, unwrap ? "unwrap" : "wrap", mech == VMENC_KMS_WRAP_AES_GCM ? 64 : 96, threads,
           (unsigned long long)ops, secs, secs > 0 ? (double)ops / secs : 0.0);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    int threads = argc > 2 ? atoi(argv[2]) : 4;
    if (seconds <= 0 || threads < 1 || threads > 16) {
        fprintf(stderr, "usage: %s [SECONDS_PER_CASE [THREADS 1..16]]\n", argv[0]);
        return 2;
    }
    if (vmenc_init() != VMENC_OK)
        return 1;

    char dir[64] = "";
    const char *module = getenv("PKCS11_MODULE");
    const char *token = getenv("PKCS11_TOKEN_LABEL");
    const char *pin = getenv("PKCS11_USER_PIN");
    const char *key = getenv("PKCS11_KEY_LABEL");
    if (module == NULL || token == NULL || pin == NULL || key == NULL) {
        snprintf(dir, sizeof(dir), "/tmp/vmenc-p11-bench-XXXXXX");
        if (mkdtemp(dir) == NULL)
            return 1;
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "bash %s/tests/kms/softhsm.sh %s >/dev/null 2>&1", VMENC_SOURCE_DIR, dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "bench_pkcs11: softhsm.sh failed (softhsm2 and opensc installed?)\n");
            return 1;
        }
        char conf[256];
        snprintf(conf, sizeof(conf), "%s/softhsm2.conf", dir);
        setenv("SOFTHSM2_CONF", conf, 1);
        module = "/usr/lib/softhsm/libsofthsm2.so";
        token = "kms-test";
        pin = "1234";
        key = "kek";
    }

    vmenc_pkcs11_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.struct_size = sizeof(cfg);
    cfg.module_path = module;
    cfg.token_label = token;
    cfg.pin = (const uint8_t *)pin;
    cfg.pin_len = strlen(pin);
    cfg.max_sessions = (uint32_t)threads;
    vmenc_kms_provider *p = NULL;
    vmenc_status st = vmenc_pkcs11_provider_new(&cfg, &p);
    int rc = 0;
    if (st != VMENC_OK) {
        fprintf(stderr, "bench_pkcs11: provider: %s\n", vmenc_strerror(st));
        rc = 1;
    } else {
        static const struct {
            vmenc_kms_wrap_mech m;
            const char *name;
        } mechs[] = {{VMENC_KMS_WRAP_AES_KWP, "kwp"}, {VMENC_KMS_WRAP_AES_KW, "kw"}, {VMENC_KMS_WRAP_AES_GCM, "gcm"}};
        for (size_t i = 0; i < VMENC_ARRAY_LEN(mechs) && rc == 0; i++) {
            rc |= bench(p, key, mechs[i].m, mechs[i].name, false, seconds, 1);
            rc |= bench(p, key, mechs[i].m, mechs[i].name, true, seconds, 1);
            if (threads > 1) {
                rc |= bench(p, key, mechs[i].m, mechs[i].name, false, seconds, threads);
                rc |= bench(p, key, mechs[i].m, mechs[i].name, true, seconds, threads);
            }
        }
        p->ops->free(p);
    }
    if (dir[0] != '\0') {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            rc = 1;
    }
    return rc;
}
