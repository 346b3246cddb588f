/*
 * tests/test_secpool.c - the pooled secure allocator (lib/core/secpool.c)
 * and what is built on it: slots are zeroed, aligned, wiped and reused;
 * foreign pointers are left alone; threads allocate and free concurrently;
 * and a quarter of a million live XTS contexts plus as many DEKs fit in one
 * process, each context still encrypting correctly (against OpenSSL).
 * Under ASan/TSan the scale test is smaller: the sanitizers multiply the
 * cost per key, and the point there is the checks, not the count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "keys/keys_internal.h"
#include "vmenc/vmenc.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifdef SANITIZED
#define SCALE_COUNT 20000u
#else
#define SCALE_COUNT 250000u
#endif

static bool all_zero(const uint8_t *p, size_t n) {
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

static void test_alloc_basics(void **state) {
    (void)state;
    static const size_t sizes[] = {1, 16, 31, 32, 33, 64, 100, 128, 720, 768, 769, 1024, 2048, 4096};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(sizes); i++) {
        uint8_t *p = vmenc_secure_alloc_pooled(sizes[i]);
        assert_non_null(p);
        assert_true(vmenc_secpool_owns(p));
        assert_true(all_zero(p, sizes[i]));
        assert_int_equal((uintptr_t)p % 16, 0);
        if (sizes[i] >= 64)
            assert_int_equal((uintptr_t)p % 64, 0);
        memset(p, 0xa5, sizes[i]);
        vmenc_secure_free(p);
    }
    /* Larger than a slot: a sodium_malloc region, freed the same way. */
    uint8_t *big = vmenc_secure_alloc_pooled(VMENC_SECPOOL_MAX_SLOT + 1);
    assert_non_null(big);
    assert_false(vmenc_secpool_owns(big));
    vmenc_secure_free(big);
    assert_null(vmenc_secure_alloc_pooled(0));
    assert_null(vmenc_secpool_alloc(VMENC_SECPOOL_MAX_SLOT + 1));
    /* Pointers that are not pool slots are not the pool's to free. */
    uint8_t stack_buf[16];
    assert_false(vmenc_secpool_owns(stack_buf));
    assert_false(vmenc_secpool_free(stack_buf));
    assert_false(vmenc_secpool_free(NULL));
    void *heap = malloc(64);
    assert_false(vmenc_secpool_free(heap));
    free(heap);
    vmenc_secure_free(NULL);
}

/* A freed slot is wiped: the next allocation of its class gets zeroes even
 * where the previous owner wrote a key. (With ASan a freed slot is
 * poisoned, so the test reads it back only through a new allocation.) */
static void test_wiped_and_reused(void **state) {
    (void)state;
    enum { N = 1000 };
    uint8_t *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = vmenc_secure_alloc_pooled(128);
        assert_non_null(p[i]);
        memset(p[i], 0x5c, 128);
    }
    for (int i = 0; i < N; i++)
        vmenc_secure_free(p[i]);
    for (int i = 0; i < N; i++) {
        p[i] = vmenc_secure_alloc_pooled(128);
        assert_non_null(p[i]);
        assert_true(all_zero(p[i], 128));
    }
    for (int i = 0; i < N; i++)
        vmenc_secure_free(p[i]);
}

static void test_pooled_secret_and_stats(void **state) {
    (void)state;
    vmenc_secpool_stats before, during, after;
    vmenc_secpool_stats_get(&before);
    vmenc_secret *s = NULL;
    assert_int_equal(vmenc_secret_new_pooled(64, &s), VMENC_OK);
    assert_true(vmenc_secpool_owns(s->bytes));
    assert_int_equal(s->len, 64);
    vmenc_secret_readonly(s); /* a no-op for pooled bytes, must not fault */
    s->bytes[0] = 1;
    vmenc_secpool_stats_get(&during);
    assert_int_equal(during.live_slots, before.live_slots + 1);
    assert_true(during.num_slabs >= 1);
    assert_true(during.reserved_bytes > 0);
    assert_true(during.bytes_locked + during.bytes_unlocked >= during.slab_bytes);
    print_message("pool: %zu slabs, %zu bytes locked, %zu unlocked, reserved %zu MiB\n",
                  during.num_slabs, during.bytes_locked, during.bytes_unlocked,
                  during.reserved_bytes >> 20);
    vmenc_secret_free(s);
    vmenc_secpool_stats_get(&after);
    assert_int_equal(after.live_slots, before.live_slots);
    /* The ordinary kind stays a sodium_malloc region (lib/kms mprotects it). */
    assert_int_equal(vmenc_secret_new(32, &s), VMENC_OK);
    assert_false(vmenc_secpool_owns(s->bytes));
    vmenc_secret_free(s);
}

/* Keys made by the keys layer live in the pool, whichever way they came in. */
static void test_keys_are_pooled(void **state) {
    (void)state;
    vmenc_dek *d = NULL;
    assert_int_equal(vmenc_dek_generate(&d), VMENC_OK);
    assert_true(vmenc_secpool_owns(vmenc_dek_bytes_internal(d)));
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kek_generate(&k), VMENC_OK);
    assert_true(vmenc_secpool_owns(vmenc_kek_bytes_internal(k)));
    /* A secret from elsewhere (sodium_malloc) moves into the pool. */
    vmenc_secret *s = NULL;
    assert_int_equal(vmenc_secret_from(vmenc_dek_bytes_internal(d), 64, &s), VMENC_OK);
    vmenc_dek *d2 = NULL;
    assert_int_equal(vmenc_dek_new_take_secret(&s, &d2), VMENC_OK);
    assert_null(s);
    assert_true(vmenc_secpool_owns(vmenc_dek_bytes_internal(d2)));
    assert_int_equal(vmenc_dek_equal(d, d2), VMENC_OK);
    vmenc_dek_free(d2);
    vmenc_dek_free(d);
    vmenc_kek_free(k);
}

/* ---- threads ------------------------------------------------------------------ */

typedef struct churn_arg {
    unsigned seed;
    bool ok;
} churn_arg;

static void *churn_main(void *p) {
    churn_arg *a = p;
    enum { LIVE = 256, ROUNDS = 20000 };
    uint8_t *live[LIVE] = {0};
    size_t lens[LIVE] = {0};
    unsigned x = a->seed;
    a->ok = true;
    for (int r = 0; r < ROUNDS; r++) {
        x = x * 1103515245u + 12345u;
        unsigned i = (x >> 8) % LIVE;
        if (live[i] != NULL) {
            /* Still holding what this thread wrote. */
            for (size_t j = 0; j < lens[i]; j++)
                if (live[i][j] != (uint8_t)(i ^ a->seed))
                    a->ok = false;
            vmenc_secure_free(live[i]);
            live[i] = NULL;
        } else {
            lens[i] = 1 + (x >> 16) % 1024;
            live[i] = vmenc_secure_alloc_pooled(lens[i]);
            if (live[i] == NULL) {
                a->ok = false;
                break;
            }
            memset(live[i], (uint8_t)(i ^ a->seed), lens[i]);
        }
    }
    for (int i = 0; i < LIVE; i++)
        vmenc_secure_free(live[i]);
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    enum { T = 4 };
    pthread_t t[T];
    churn_arg a[T];
    for (int i = 0; i < T; i++) {
        a[i].seed = 0x1234u * (unsigned)(i + 1);
        assert_int_equal(pthread_create(&t[i], NULL, churn_main, &a[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_true(a[i].ok);
    }
}

/* ---- scale ------------------------------------------------------------------------ */

static void test_many_contexts_and_deks(void **state) {
    (void)state;
    const size_t n = SCALE_COUNT;
    vmenc_dek **deks = calloc(n, sizeof(*deks));
    vmenc_xts **ctxs = calloc(n, sizeof(*ctxs));
    assert_true(deks != NULL && ctxs != NULL);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(vmenc_dek_generate(&deks[i]), VMENC_OK);
        vmenc_status st = vmenc_xts_new_from_dek(deks[i], 512, &ctxs[i]);
        if (st != VMENC_OK)
            fail_msg("context %zu of %zu: %s", i, n, vmenc_strerror(st));
    }
    vmenc_secpool_stats st;
    vmenc_secpool_stats_get(&st);
    assert_true(st.live_slots >= 2 * n);
    assert_int_equal(st.num_fallbacks, 0);
    /* Each one still encrypts correctly: one sector, against OpenSSL with
     * the DEK's bytes, and back. */
    EVP_CIPHER_CTX *ref = EVP_CIPHER_CTX_new();
    assert_non_null(ref);
    uint8_t pt[512], ct[512], want[512];
    for (size_t j = 0; j < sizeof(pt); j++)
        pt[j] = (uint8_t)(j * 7);
    for (size_t i = 0; i < n; i++) {
        uint64_t sector = i * 0x9e3779b97f4a7c15ull;
        assert_int_equal(vmenc_xts_encrypt(ctxs[i], sector, pt, ct, sizeof(pt)), VMENC_OK);
        uint8_t tweak[16] = {0};
        vmenc_store_u64_le(tweak, sector);
        int len = 0;
        assert_int_equal(EVP_CipherInit_ex(ref, EVP_aes_256_xts(), NULL,
                                           vmenc_dek_bytes_internal(deks[i]), tweak, 1),
                         1);
        assert_int_equal(EVP_CipherUpdate(ref, want, &len, pt, (int)sizeof(pt)), 1);
        if (memcmp(ct, want, sizeof(ct)) != 0)
            fail_msg("context %zu encrypts wrongly", i);
        assert_int_equal(vmenc_xts_decrypt(ctxs[i], sector, ct, ct, sizeof(ct)), VMENC_OK);
        assert_memory_equal(ct, pt, sizeof(pt));
    }
    EVP_CIPHER_CTX_free(ref);
    print_message("%zu live XTS-AES-256 contexts + %zu DEKs: %zu slabs, %zu MiB locked, %zu MiB "
                  "unlocked\n",
                  n, n, st.num_slabs, st.bytes_locked >> 20, st.bytes_unlocked >> 20);
    for (size_t i = 0; i < n; i++) {
        vmenc_xts_free(ctxs[i]);
        vmenc_dek_free(deks[i]);
    }
    free(ctxs);
    free(deks);
    vmenc_secpool_stats after;
    vmenc_secpool_stats_get(&after);
    /* Empty slabs went back to the system (one spare per size class stays). */
    assert_true(after.num_slabs < st.num_slabs);
}

int main(void) {
    if (vmenc_init() != VMENC_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_basics),
        cmocka_unit_test(test_wiped_and_reused),
        cmocka_unit_test(test_pooled_secret_and_stats),
        cmocka_unit_test(test_keys_are_pooled),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_many_contexts_and_deks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
