/*
 * tests/test_xts_selftest.c - the XTS backends' known-answer self-test:
 * a faulty backend (the real one with one kind of fault injected through
 * the internal test hook) is never chosen automatically, is reported by
 * vmenc_xts_impl_available as VMENC_E_SELFTEST, cannot be forced, and every
 * part of the self-test (each key size, each direction, multi-sector calls,
 * the 2^64 wrap, ciphertext stealing) catches its own kind of fault. Also:
 * the self-test runs once per process and is thread-safe.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "vmenc/vmenc.h"
#include "xts/xts_impl.h"

static const char *const impls[] = {"vaes-avx512", "vaes-avx2", "aesni", "portable"};

typedef enum fault {
    FAULT_NONE,
    FAULT_ENC_SECTORS,  /* a flipped bit in encrypted sectors */
    FAULT_DEC_SECTORS,  /* ... in decrypted sectors */
    FAULT_ENC_UNIT,     /* ... in an encrypted data unit */
    FAULT_DEC_UNIT,     /* ... in a decrypted data unit */
    FAULT_CTS,          /* the stolen tail of a partial-block unit */
    FAULT_MULTI,        /* the last sector of a multi-sector call */
    FAULT_WRAP,         /* a call whose sector numbers wrap past 2^64-1 */
    FAULT_KEY128,       /* only XTS-AES-128 */
    FAULT_KEY256,       /* only XTS-AES-256 */
    FAULT_ONE_SECTOR,   /* only one-sector calls (their own fast path) */
} fault;

static fault g_fault;
static const vmenc_xts_backend *g_real;

static void flip(uint8_t *p) { p[0] ^= 0x01; }

static bool key_matches(const struct vmenc_xts *x) {
    return !((g_fault == FAULT_KEY128 && x->rounds != 10) ||
             (g_fault == FAULT_KEY256 && x->rounds != 14));
}

static vmenc_status faulty_sectors(const struct vmenc_xts *x, bool enc, uint64_t first,
                                   const uint8_t *in, uint8_t *out, size_t num_sectors) {
    VMENC_GUARD(g_real->sectors(x, enc, first, in, out, num_sectors));
    size_t len = num_sectors * x->sector_size;
    switch (g_fault) {
    case FAULT_ENC_SECTORS:
        if (enc)
            flip(out + len / 2);
        break;
    case FAULT_DEC_SECTORS:
        if (!enc)
            flip(out + 17);
        break;
    case FAULT_MULTI:
        if (num_sectors > 1)
            flip(out + len - 1);
        break;
    case FAULT_ONE_SECTOR:
        if (num_sectors == 1)
            flip(out + 100);
        break;
    case FAULT_WRAP:
        if (first + (num_sectors - 1) < first)
            flip(out + len - 16);
        break;
    case FAULT_KEY128:
    case FAULT_KEY256:
        if (key_matches(x))
            flip(out);
        break;
    default:
        break;
    }
    return VMENC_OK;
}

static vmenc_status faulty_unit(const struct vmenc_xts *x, bool enc, const uint8_t tweak[16],
                                const uint8_t *in, uint8_t *out, size_t len) {
    VMENC_GUARD(g_real->unit(x, enc, tweak, in, out, len));
    switch (g_fault) {
    case FAULT_ENC_UNIT:
        if (enc)
            flip(out + 3);
        break;
    case FAULT_DEC_UNIT:
        if (!enc)
            flip(out + len - 20);
        break;
    case FAULT_CTS:
        if (len % 16 != 0)
            flip(out + len - 1);
        break;
    case FAULT_KEY128:
    case FAULT_KEY256:
        if (key_matches(x))
            flip(out + len - 1);
        break;
    default:
        break;
    }
    return VMENC_OK;
}

static vmenc_xts_backend g_faulty;

/* The backend vmenc_xts_new picks here with every backend healthy. */
static const char *best_impl(void) {
    for (size_t i = 0; i < VMENC_ARRAY_LEN(impls); i++)
        if (vmenc_xts_impl_available(impls[i]) == VMENC_OK)
            return impls[i];
    return NULL;
}

/* inject replaces backend |name| with itself plus |f|. */
static void inject(const char *name, fault f) {
    /* The real backend's table entry, through a context made with it. */
    uint8_t key[64];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(i * 7 + 1);
    vmenc_xts *x = NULL;
    assert_true(vmenc_xts_test_replace_backend(name, NULL));
    assert_int_equal(vmenc_xts_new_impl(key, 64, 512, name, &x), VMENC_OK);
    g_real = x->backend;
    vmenc_xts_free(x);
    g_faulty = *g_real; /* same name and CPU needs */
    g_faulty.sectors = faulty_sectors;
    g_faulty.unit = faulty_unit;
    g_fault = f;
    assert_true(vmenc_xts_test_replace_backend(name, &g_faulty));
}

static void restore_all(void) {
    for (size_t i = 0; i < VMENC_ARRAY_LEN(impls); i++)
        assert_true(vmenc_xts_test_replace_backend(impls[i], NULL));
    g_fault = FAULT_NONE;
}

static void test_every_fault_is_caught(void **state) {
    (void)state;
    restore_all();
    const char *best = best_impl();
    assert_non_null(best);
    uint8_t key[64];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(0xa5 ^ (i * 13));
    static const fault faults[] = {FAULT_ENC_SECTORS, FAULT_DEC_SECTORS, FAULT_ENC_UNIT,
                                   FAULT_DEC_UNIT,    FAULT_CTS,         FAULT_MULTI,
                                   FAULT_WRAP,        FAULT_KEY128,      FAULT_KEY256,
                                   FAULT_ONE_SECTOR};
    for (size_t f = 0; f < VMENC_ARRAY_LEN(faults); f++) {
        inject(best, faults[f]);
        /* Reported, not usable by name (directly or through the environment). */
        assert_int_equal(vmenc_xts_impl_available(best), VMENC_E_SELFTEST);
        vmenc_xts *x = NULL;
        assert_int_equal(vmenc_xts_new_impl(key, 64, 4096, best, &x), VMENC_E_SELFTEST);
        assert_int_equal(setenv("VMENC_XTS_IMPL", best, 1), 0);
        assert_int_equal(vmenc_xts_new(key, 64, 4096, &x), VMENC_E_SELFTEST);
        unsetenv("VMENC_XTS_IMPL");
        assert_null(x);
        /* The automatic choice is the next healthy backend, which works. */
        assert_int_equal(vmenc_xts_new(key, 64, 4096, &x), VMENC_OK);
        assert_string_not_equal(vmenc_xts_impl_name(x), best);
        uint8_t pt[4096], ct[4096], back[4096];
        memset(pt, 0x3c, sizeof(pt));
        assert_int_equal(vmenc_xts_encrypt(x, 9, pt, ct, sizeof(pt)), VMENC_OK);
        assert_int_equal(vmenc_xts_decrypt(x, 9, ct, back, sizeof(pt)), VMENC_OK);
        assert_memory_equal(back, pt, sizeof(pt));
        vmenc_xts_free(x);
        /* Once decided, the verdict stands for the process. */
        assert_int_equal(vmenc_xts_impl_available(best), VMENC_E_SELFTEST);
    }
    restore_all();
    assert_int_equal(vmenc_xts_impl_available(best), VMENC_OK);
}

/* Every backend faulty, the portable one too: nothing is trusted. */
static void test_all_faulty(void **state) {
    (void)state;
    restore_all();
    uint8_t key[64];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(i + 1);
    /* One shared fault mode and one faulty table entry per backend: each
     * wraps the portable backend, which every CPU runs. */
    static vmenc_xts_backend faulty[4];
    inject("portable", FAULT_ENC_UNIT);
    for (size_t i = 0; i < VMENC_ARRAY_LEN(impls); i++) {
        faulty[i] = g_faulty;
        faulty[i].name = impls[i];
        faulty[i].cpu_required = 0;
        assert_true(vmenc_xts_test_replace_backend(impls[i], &faulty[i]));
    }
    vmenc_xts *x = NULL;
    assert_int_equal(vmenc_xts_new_impl(key, 64, 512, NULL, &x), VMENC_E_SELFTEST);
    assert_null(x);
    for (size_t i = 0; i < VMENC_ARRAY_LEN(impls); i++)
        assert_int_equal(vmenc_xts_impl_available(impls[i]), VMENC_E_SELFTEST);
    restore_all();
    assert_int_equal(vmenc_xts_new_impl(key, 64, 512, NULL, &x), VMENC_OK);
    vmenc_xts_free(x);
}

/* Healthy backends pass; the cost of each self-test is recorded once. */
static void test_healthy_and_cost(void **state) {
    (void)state;
    restore_all();
    for (size_t i = 0; i < VMENC_ARRAY_LEN(impls); i++) {
        vmenc_status st = vmenc_xts_impl_available(impls[i]);
        assert_true(st == VMENC_OK || st == VMENC_E_CPU_UNSUPPORTED);
        if (st != VMENC_OK) {
            assert_int_equal(vmenc_xts_selftest_cost_ns(impls[i]), 0);
            continue;
        }
        uint64_t ns = vmenc_xts_selftest_cost_ns(impls[i]);
        assert_true(ns > 0);
        print_message("self-test %s: %.1f us\n", impls[i], (double)ns / 1e3);
        /* Asking again does not run it again. */
        assert_int_equal(vmenc_xts_impl_available(impls[i]), VMENC_OK);
        assert_int_equal(vmenc_xts_selftest_cost_ns(impls[i]), ns);
    }
}

/* Many threads racing to be the first user: one self-test, one verdict. */
static void *race_main(void *arg) {
    vmenc_status *st = arg;
    uint8_t key[64];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(i * 3 + 11);
    vmenc_xts *x = NULL;
    *st = vmenc_xts_new_impl(key, 64, 512, NULL, &x);
    if (*st == VMENC_OK) {
        uint8_t buf[1024] = {0};
        *st = vmenc_xts_encrypt(x, 1, buf, buf, sizeof(buf));
    }
    vmenc_xts_free(x);
    return NULL;
}

static void test_threads_race_first_use(void **state) {
    (void)state;
    enum { N = 8 };
    for (int round = 0; round < 3; round++) {
        restore_all(); /* forget every verdict */
        pthread_t t[N];
        vmenc_status st[N];
        for (int i = 0; i < N; i++)
            assert_int_equal(pthread_create(&t[i], NULL, race_main, &st[i]), 0);
        for (int i = 0; i < N; i++) {
            assert_int_equal(pthread_join(t[i], NULL), 0);
            assert_int_equal(st[i], VMENC_OK);
        }
    }
}

int main(void) {
    if (vmenc_init() != VMENC_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthy_and_cost),
        cmocka_unit_test(test_every_fault_is_caught),
        cmocka_unit_test(test_all_faulty),
        cmocka_unit_test(test_threads_race_first_use),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
