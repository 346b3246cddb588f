/*
 * bench/bench_attest.c - the cost of attestation (lib/attest, docs/attest.md
 * "Benchmark"): the verifier against OpenSSL's raw signature check, and the
 * host side's quote on a swtpm against a bare TPM round trip, each ratio
 * taken in the same run.
 *
 *   bench_attest [--rounds R] [--tcti TCTI] [--quotes N]
 *
 * Verifier contenders, alternating order each round (R rounds, default 2001):
 *   vmenc-verify-rsa  attest_quote_verify on a real RSA-2048 quote
 *                     (tests/tpm/vectors): AK parse and check, key import,
 *                     signature, quote parse, nonce, selection, PCR digest
 *   openssl-rsa       EVP_DigestVerify of the same signature over the same
 *                     bytes with a key imported once: the floor
 *   vmenc-verify-ecc / openssl-ecdsa  the same with the ECC P-256 quote
 *   vmenc-makecred / openssl-oaep     attest_make_credential against one
 *                     RSA-OAEP encryption to the same EK (the part it cannot avoid)
 * Each line: median microseconds and ratio_vs_openssl = median of the
 * per-round ratios (vmenc / openssl: the parsing and checking overhead).
 * With --tcti (or SWTPM_TCTI set) and tpm2-tss built in, N quotes
 * (default 50) on that TPM with a new AK: p50/p99 milliseconds of
 * attest_tpm_quote (EK, policy session, AK load, PCR read, quote, flushes)
 * and ratio_vs_pcr_read, against PCR_Read of the same PCRs in the same
 * rounds. Its one rule: no figure without its baseline from the same run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "attest/attest.h"
#include "attest/attest_internal.h"

#define VEC VMENC_SOURCE_DIR "/tests/tpm/vectors/"
#define SEL "sha256:0,1,16"

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p) {
    qsort(v, n, sizeof *v, cmp_d);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static uint8_t *load(const char *name, size_t *len) {
    char path[512];
    snprintf(path, sizeof path, VEC "%s", name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "bench_attest: cannot read %s\n", path);
        exit(1);
    }
    uint8_t *buf = malloc(4096);
    *len = fread(buf, 1, 4096, f);
    fclose(f);
    return buf;
}

typedef struct verify_case {
    uint8_t *ak, *msg, *sig;
    size_t ak_len, msg_len, sig_len;
    const uint8_t *nonce;
    size_t nonce_len;
    const char *sel;
    size_t values_len;
    EVP_PKEY *pkey;             /* imported once for the raw check */
    unsigned char *raw_sig;     /* PKCS#1 block or DER ECDSA */
    size_t raw_sig_len;
} verify_case;

static const uint8_t k_nonce_rsa[32] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa,
                                        0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
                                        0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
static const uint8_t k_nonce_ecc[2] = {0x00, 0x11};
static const uint8_t k_zeros[128];

static EVP_PKEY *p256(const attest_public *p);

static void case_load(verify_case *c, bool ecc) {
    c->ak = load(ecc ? "akecc.tss" : "ak.tss", &c->ak_len);
    c->msg = load(ecc ? "quote-ecc.msg" : "quote.msg", &c->msg_len);
    c->sig = load(ecc ? "quote-ecc.sig" : "quote.sig", &c->sig_len);
    c->nonce = ecc ? k_nonce_ecc : k_nonce_rsa;
    c->nonce_len = ecc ? 2 : 32;
    c->sel = ecc ? "sha256:0,1,16+sha1:16" : SEL;
    c->values_len = ecc ? 116 : 96;
    attest_public p;
    attest_sig s;
    if (attest_public_parse(c->ak, c->ak_len, &p) != VMENC_OK || attest_sig_parse(c->sig, c->sig_len, &s) != VMENC_OK)
        exit(1);
    if (!ecc) {
        c->pkey = attest_rsa_pkey(p.rsa_modulus, p.rsa_modulus_len, p.rsa_exponent);
        c->raw_sig = malloc(s.rsa_sig_len);
        memcpy(c->raw_sig, s.rsa_sig, s.rsa_sig_len);
        c->raw_sig_len = s.rsa_sig_len;
    } else {
        c->pkey = p256(&p);
        ECDSA_SIG *es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, BN_bin2bn(s.ecdsa_r, (int)s.ecdsa_r_len, NULL),
                       BN_bin2bn(s.ecdsa_s, (int)s.ecdsa_s_len, NULL));
        c->raw_sig = NULL;
        c->raw_sig_len = (size_t)i2d_ECDSA_SIG(es, &c->raw_sig);
        ECDSA_SIG_free(es);
    }
    if (c->pkey == NULL)
        exit(1);
}

#include <openssl/core_names.h>
#include <openssl/param_build.h>
static EVP_PKEY *p256(const attest_public *p) {
    uint8_t pt[65] = {0x04};
    memcpy(pt + 1 + 32 - p->ecc_x_len, p->ecc_x, p->ecc_x_len);
    memcpy(pt + 33 + 32 - p->ecc_y_len, p->ecc_y, p->ecc_y_len);
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(b);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *k = NULL;
    EVP_PKEY_fromdata_init(ctx);
    EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    return k;
}

static double time_vmenc(const verify_case *c) {
    attest_quote_result r;
    double t0 = now_us();
    vmenc_status s = attest_quote_verify(c->ak, c->ak_len, c->msg, c->msg_len, c->sig, c->sig_len, c->nonce,
                                         c->nonce_len, c->sel, k_zeros, c->values_len, NULL, 0, &r);
    double t = now_us() - t0;
    if (s != VMENC_OK) {
        fprintf(stderr, "bench_attest: the vector quote did not verify (%s)\n", attest_refusal_str(r.refusal));
        exit(1);
    }
    return t;
}

static double time_raw(const verify_case *c) {
    double t0 = now_us();
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, c->pkey) == 1 &&
             EVP_DigestVerify(ctx, c->raw_sig, c->raw_sig_len, c->msg, c->msg_len) == 1;
    EVP_MD_CTX_free(ctx);
    double t = now_us() - t0;
    if (!ok) {
        fprintf(stderr, "bench_attest: raw verify failed\n");
        exit(1);
    }
    return t;
}

static void bench_verify(const char *name, const char *base, bool ecc, int rounds) {
    verify_case c;
    case_load(&c, ecc);
    double *a = malloc(sizeof(double) * (size_t)rounds), *b = malloc(sizeof(double) * (size_t)rounds),
           *ratio = malloc(sizeof(double) * (size_t)rounds);
    for (int i = 0; i < rounds; i++) {
        if (i & 1) {
            a[i] = time_vmenc(&c);
            b[i] = time_raw(&c);
        } else {
            b[i] = time_raw(&c);
            a[i] = time_vmenc(&c);
        }
        ratio[i] = a[i] / b[i];
    }
    double r50 = pct(ratio, (size_t)rounds, 0.5), r25 = pct(ratio, (size_t)rounds, 0.25),
           r75 = pct(ratio, (size_t)rounds, 0.75);
    printf("{\"bench\":\"attest\",\"op\":\"%s\",\"baseline\":\"%s\",\"rounds\":%d,\"us_p50\":%.1f,"
           "\"baseline_us_p50\":%.1f,\"ratio_vs_openssl\":%.2f,\"ratio_iqr\":[%.2f,%.2f]}\n",
           name, base, rounds, pct(a, (size_t)rounds, 0.5), pct(b, (size_t)rounds, 0.5), r50, r25, r75);
    free(a);
    free(b);
    free(ratio);
    free(c.ak);
    free(c.msg);
    free(c.sig);
    OPENSSL_free(c.raw_sig);
    EVP_PKEY_free(c.pkey);
}

static void bench_makecred(int rounds) {
    size_t ek_len, name_len;
    uint8_t *ek = load("ek.pub", &ek_len), *name = load("ak.name", &name_len);
    attest_public p;
    if (attest_public_parse(ek, ek_len, &p) != VMENC_OK)
        exit(1);
    EVP_PKEY *pkey = attest_rsa_pkey(p.rsa_modulus, p.rsa_modulus_len, p.rsa_exponent);
    uint8_t secret[32] = {7};
    double *a = malloc(sizeof(double) * (size_t)rounds), *b = malloc(sizeof(double) * (size_t)rounds),
           *ratio = malloc(sizeof(double) * (size_t)rounds);
    for (int i = 0; i < rounds; i++) {
        for (int k = 0; k < 2; k++) {
            if ((k ^ (i & 1)) == 0) {
                uint8_t *c = NULL, *x = NULL;
                size_t cl, xl;
                double t0 = now_us();
                if (attest_make_credential(ek, ek_len, name, name_len, secret, sizeof secret, &c, &cl, &x, &xl) !=
                    VMENC_OK)
                    exit(1);
                a[i] = now_us() - t0;
                free(c);
                free(x);
            } else {
                uint8_t ct[256];
                size_t ct_len = sizeof ct;
                double t0 = now_us();
                EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
                unsigned char *label = OPENSSL_malloc(9);
                memcpy(label, "IDENTITY", 9);
                if (EVP_PKEY_encrypt_init(ctx) != 1 || EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
                    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) != 1 ||
                    EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, label, 9) != 1 ||
                    EVP_PKEY_encrypt(ctx, ct, &ct_len, secret, sizeof secret) != 1)
                    exit(1);
                EVP_PKEY_CTX_free(ctx);
                b[i] = now_us() - t0;
            }
        }
        ratio[i] = a[i] / b[i];
    }
    printf("{\"bench\":\"attest\",\"op\":\"vmenc-makecred\",\"baseline\":\"openssl-oaep\",\"rounds\":%d,"
           "\"us_p50\":%.1f,\"baseline_us_p50\":%.1f,\"ratio_vs_openssl\":%.2f}\n",
           rounds, pct(a, (size_t)rounds, 0.5), pct(b, (size_t)rounds, 0.5), pct(ratio, (size_t)rounds, 0.5));
    free(a);
    free(b);
    free(ratio);
    free(ek);
    free(name);
    EVP_PKEY_free(pkey);
}

static void bench_quote(const char *tcti, int n) {
    attest_tpm *t = NULL;
    if (!attest_tpm_available()) {
        printf("{\"bench\":\"attest\",\"op\":\"tpm-quote\",\"skipped\":\"built without tpm2-tss\"}\n");
        return;
    }
    if (attest_tpm_open(tcti, &t) != VMENC_OK) {
        fprintf(stderr, "bench_attest: cannot open the TPM at %s\n", tcti);
        exit(1);
    }
    uint8_t *pub = NULL, *blob = NULL;
    size_t pub_len, blob_len;
    double t0 = now_us();
    if (attest_tpm_ak_create(t, &pub, &pub_len, &blob, &blob_len) != VMENC_OK)
        exit(1);
    double ak_ms = (now_us() - t0) / 1e3;
    double *q = malloc(sizeof(double) * (size_t)n), *r = malloc(sizeof(double) * (size_t)n),
           *ratio = malloc(sizeof(double) * (size_t)n), *v = malloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < n; i++) {
        uint8_t nonce[32];
        for (size_t k = 0; k < sizeof nonce; k++)
            nonce[k] = (uint8_t)(i + (int)k);
        uint8_t *a = NULL, *s = NULL, *vals = NULL;
        size_t al, sl, vl;
        t0 = now_us();
        if (attest_tpm_quote(t, blob, blob_len, nonce, sizeof nonce, SEL, &a, &al, &s, &sl, &vals, &vl) != VMENC_OK)
            exit(1);
        q[i] = (now_us() - t0) / 1e3;
        attest_quote_result res;
        t0 = now_us();
        if (attest_quote_verify(pub, pub_len, a, al, s, sl, nonce, sizeof nonce, SEL, vals, vl, NULL, 0, &res) !=
            VMENC_OK)
            exit(1);
        v[i] = (now_us() - t0) / 1e3;
        free(a);
        free(s);
        free(vals);
        t0 = now_us();
        if (attest_tpm_pcr_read(t, SEL, &vals, &vl) != VMENC_OK)
            exit(1);
        r[i] = (now_us() - t0) / 1e3;
        free(vals);
        ratio[i] = q[i] / r[i];
    }
    double q50 = pct(q, (size_t)n, 0.5), q99 = pct(q, (size_t)n, 0.99);
    printf("{\"bench\":\"attest\",\"op\":\"tpm-quote\",\"baseline\":\"tpm-pcr-read\",\"quotes\":%d,"
           "\"ak_create_ms\":%.1f,\"quote_ms_p50\":%.2f,\"quote_ms_p99\":%.2f,\"pcr_read_ms_p50\":%.2f,"
           "\"verify_ms_p50\":%.3f,\"ratio_vs_pcr_read\":%.1f}\n",
           n, ak_ms, q50, q99, pct(r, (size_t)n, 0.5), pct(v, (size_t)n, 0.5), pct(ratio, (size_t)n, 0.5));
    free(q);
    free(r);
    free(v);
    free(ratio);
    free(pub);
    free(blob);
    attest_tpm_close(t);
}

int main(int argc, char **argv) {
    int rounds = 2001, quotes = 50;
    const char *tcti = getenv("SWTPM_TCTI");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--tcti") == 0 && i + 1 < argc)
            tcti = argv[++i];
        else if (strcmp(argv[i], "--quotes") == 0 && i + 1 < argc)
            quotes = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_attest [--rounds R] [--tcti TCTI] [--quotes N]\n");
            return 2;
        }
    }
    if (rounds < 1 || quotes < 1)
        return 2;
    bench_verify("vmenc-verify-rsa", "openssl-rsa", false, rounds);
    bench_verify("vmenc-verify-ecc", "openssl-ecdsa", true, rounds);
    bench_makecred(rounds / 4 + 1);
    if (tcti != NULL && *tcti != '\0')
        bench_quote(tcti, quotes);
    else
        printf("{\"bench\":\"attest\",\"op\":\"tpm-quote\",\"skipped\":\"no --tcti and no SWTPM_TCTI\"}\n");
    return 0;
}
