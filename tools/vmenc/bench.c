/*
 * tools/vmenc/bench.c - `vmenc bench`: every XTS backend this CPU runs,
 * against OpenSSL's EVP aes-256-xts on the same buffer, in one table.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "cli.h"

const char *const cmd_bench_help =
    "Encrypts and decrypts a buffer of --size MiB (default 64) in sectors of --sector bytes\n"
    "(default 4096) with each XTS-AES-256 backend and with OpenSSL, for about --seconds S\n"
    "each (default 0.5). GB/s = 10^9 bytes per second.\n";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef int (*run_fn)(void *ctx, int enc, uint8_t *buf, size_t len, uint32_t sector);

static int run_vmenc(void *ctx, int enc, uint8_t *buf, size_t len, uint32_t sector) {
    (void)sector;
    vmenc_xts *x = ctx;
    return (enc ? vmenc_xts_encrypt(x, 0, buf, buf, len) : vmenc_xts_decrypt(x, 0, buf, buf, len)) == VMENC_OK ? 0 : -1;
}

typedef struct ossl {
    EVP_CIPHER_CTX *e, *d;
} ossl;

static int run_openssl(void *ctx, int enc, uint8_t *buf, size_t len, uint32_t sector) {
    ossl *o = ctx;
    EVP_CIPHER_CTX *c = enc ? o->e : o->d;
    uint8_t iv[16] = {0};
    for (size_t off = 0; off < len; off += sector) {
        uint64_t s = off / sector;
        memcpy(iv, &s, 8); /* plain64: little-endian sector number (x86) */
        int n = 0;
        if (EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, enc) != 1 ||
            EVP_CipherUpdate(c, buf + off, &n, buf + off, (int)sector) != 1)
            return -1;
    }
    return 0;
}

static double measure(run_fn fn, void *ctx, int enc, uint8_t *buf, size_t len, uint32_t sector, double secs) {
    double t0 = now_s(), t;
    uint64_t bytes = 0;
    do {
        if (fn(ctx, enc, buf, len, sector) != 0)
            return -1;
        bytes += len;
        t = now_s();
    } while (t - t0 < secs && !g_interrupted);
    return (double)bytes / (t - t0) / 1e9;
}

int cmd_bench(cli *c, args *a) {
    const char *size_s = NULL, *sector_s = NULL, *secs_s = NULL;
    (void)arg_value(c, a, "--size", &size_s);
    (void)arg_value(c, a, "--sector", &sector_s);
    (void)arg_value(c, a, "--seconds", &secs_s);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    uint64_t mib = 64, sector = 4096;
    double secs = secs_s ? atof(secs_s) : 0.5;
    if ((size_s && !parse_size(size_s, &mib)) || (sector_s && !parse_size(sector_s, &sector)) || mib == 0 ||
        mib > 4096 || secs <= 0 || secs > 60)
        return cli_usage(c, "bad --size, --sector or --seconds");
    size_t len = (size_t)mib << 20;
    uint8_t *buf = malloc(len), key[64];
    if (buf == NULL || vmenc_random_bytes(key, sizeof(key)) != VMENC_OK || vmenc_random_bytes(buf, len) != VMENC_OK) {
        free(buf);
        return cli_fail(c, VMENC_E_NOMEM, "bench buffer");
    }
    static const char *const impls[] = {"vaes-avx512", "vaes-avx2", "aesni", "portable"};
    out_t *o = out_begin(c);
    out_u64(o, "size_mib", mib);
    out_u64(o, "sector", sector);
    out_arr(o, "results");
    if (!c->json && !c->quiet)
        fprintf(stderr, "%-12s %10s %10s %9s\n", "backend", "enc GB/s", "dec GB/s", "vs OpenSSL");
    ossl os = {EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_new()};
    double ref_e = -1, ref_d = -1;
    if (os.e && os.d && EVP_EncryptInit_ex(os.e, EVP_aes_256_xts(), NULL, key, NULL) == 1 &&
        EVP_DecryptInit_ex(os.d, EVP_aes_256_xts(), NULL, key, NULL) == 1) {
        ref_e = measure(run_openssl, &os, 1, buf, len, (uint32_t)sector, secs);
        ref_d = measure(run_openssl, &os, 0, buf, len, (uint32_t)sector, secs);
    }
    int rc = EXIT_OK;
    for (size_t i = 0; i <= sizeof(impls) / sizeof(impls[0]) && !g_interrupted; i++) {
        const char *name = i < sizeof(impls) / sizeof(impls[0]) ? impls[i] : "openssl";
        double e = ref_e, d = ref_d;
        if (i < sizeof(impls) / sizeof(impls[0])) {
            if (vmenc_xts_impl_available(name) != VMENC_OK)
                continue;
            vmenc_xts *x = NULL;
            vmenc_status st = vmenc_xts_new_impl(key, sizeof(key), (uint32_t)sector, name, &x);
            if (st != VMENC_OK) {
                rc = cli_fail_stderr(c, st, "backend %s", name); /* stdout: the one result object */
                continue;
            }
            e = measure(run_vmenc, x, 1, buf, len, (uint32_t)sector, secs);
            d = measure(run_vmenc, x, 0, buf, len, (uint32_t)sector, secs);
            vmenc_xts_free(x);
        }
        double ratio = ref_e > 0 ? e / ref_e : 0;
        out_obj(o, NULL);
        out_str(o, "backend", name);
        out_double(o, "enc_gbps", e);
        out_double(o, "dec_gbps", d);
        out_double(o, "ratio_vs_openssl", ratio);
        out_close(o);
        if (!c->json && !c->quiet)
            fprintf(stderr, "%-12s %10.2f %10.2f %8.2fx\n", name, e, d, ratio);
    }
    out_close(o);
    out_bool(o, "ok", rc == EXIT_OK && !g_interrupted && ref_e > 0);
    out_bool(o, "interrupted", g_interrupted != 0);
    EVP_CIPHER_CTX_free(os.e);
    EVP_CIPHER_CTX_free(os.d);
    free(buf);
    vmenc_memzero(key, sizeof(key));
    if (c->json)
        out_end(o);
    else {
        c->quiet = true; /* the table went to stderr already; skip the key: value dump */
        out_end(o);
    }
    return g_interrupted ? EXIT_INTERRUPTED : rc;
}
