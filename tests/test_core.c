/*
 * tests/test_core.c - status codes, init, the cursor and writer, secrets,
 * CPU feature detection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "vmenc/vmenc.h"

static void test_strerror_every_code(void **state) {
    static const int codes[] = {
        VMENC_OK, VMENC_E_INVALID_ARG, VMENC_E_BUFFER_TOO_SMALL, VMENC_E_UNSUPPORTED,
        VMENC_E_PARSE, VMENC_E_TRUNCATED, VMENC_E_AUTH, VMENC_E_KMS_TIMEOUT,
        VMENC_E_DENIED, VMENC_E_AUDIT_TAMPERED, VMENC_E_NOMEM, VMENC_E_INTERNAL,
    };
    for (size_t i = 0; i < VMENC_ARRAY_LEN(codes); i++) {
        assert_non_null(vmenc_strerror(codes[i]));
        assert_string_not_equal(vmenc_strerror(codes[i]), "unknown vmenc status");
        assert_string_not_equal(vmenc_status_name(codes[i]), "VMENC_E_UNKNOWN");
    }
    /* Every code in each category block that has a name maps back to it. */
    for (int c = -999; c <= 0; c++) {
        const char *n = vmenc_status_name(c);
        if (strcmp(n, "VMENC_E_UNKNOWN") != 0)
            assert_string_not_equal(vmenc_strerror(c), "unknown vmenc status");
    }
    assert_string_equal(vmenc_strerror(12345), "unknown vmenc status");
    assert_string_equal(vmenc_status_name(VMENC_E_AUTH), "VMENC_E_AUTH");
}

static void test_categories(void **state) {
    assert_int_equal(vmenc_status_category_of(VMENC_OK), VMENC_CAT_OK);
    assert_int_equal(vmenc_status_category_of(VMENC_E_INVALID_ARG), VMENC_CAT_USAGE);
    assert_int_equal(vmenc_status_category_of(VMENC_E_TRUNCATED), VMENC_CAT_PARSE);
    assert_int_equal(vmenc_status_category_of(VMENC_E_AUTH), VMENC_CAT_CRYPTO);
    assert_int_equal(vmenc_status_category_of(VMENC_E_KMS_TLS), VMENC_CAT_PROVIDER);
    assert_int_equal(vmenc_status_category_of(VMENC_E_DENIED), VMENC_CAT_POLICY);
    assert_int_equal(vmenc_status_category_of(VMENC_E_AUDIT_TRUNCATED), VMENC_CAT_AUDIT);
    assert_int_equal(vmenc_status_category_of(VMENC_E_IO), VMENC_CAT_RESOURCE);
    assert_int_equal(vmenc_status_category_of(VMENC_E_INTERNAL), VMENC_CAT_INTERNAL);
    assert_int_equal(vmenc_status_category_of(7), VMENC_CAT_UNKNOWN);
    assert_int_equal(vmenc_status_category_of(-5000), VMENC_CAT_UNKNOWN);
}

static void *init_thread(void *arg) {
    *(vmenc_status *)arg = vmenc_init();
    return NULL;
}

static void test_init_idempotent_threads(void **state) {
    pthread_t t[8];
    vmenc_status st[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, init_thread, &st[i]), 0);
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(st[i], VMENC_OK);
    }
    assert_int_equal(vmenc_init(), VMENC_OK);
    assert_string_equal(vmenc_version_string(), VMENC_VERSION_STRING);
    assert_int_equal(vmenc_version_number(), VMENC_VERSION_NUMBER);
}

static void test_cpu_features(void **state) {
    uint32_t f = vmenc_cpu_features();
    /* Wide features imply their prerequisites as reported by the OS. */
    if (f & VMENC_CPU_AVX512F)
        assert_true(f & VMENC_CPU_AVX2);
    if (f & VMENC_CPU_AVX2)
        assert_true(f & VMENC_CPU_AVX);
    if (f & VMENC_CPU_VAES)
        assert_true(f & VMENC_CPU_AVX);
    assert_int_equal(f, vmenc_cpu_detect());
}

static void test_random(void **state) {
    uint8_t a[32] = {0}, b[32] = {0}, z[32] = {0};
    assert_int_equal(vmenc_random_bytes(a, sizeof(a)), VMENC_OK);
    assert_int_equal(vmenc_random_bytes(b, sizeof(b)), VMENC_OK);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, z, sizeof(a));
    assert_int_equal(vmenc_random_bytes(NULL, 1), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_random_bytes(NULL, 0), VMENC_OK);
}

static void test_cbs_getters(void **state) {
    static const uint8_t d[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    vmenc_cbs c;
    vmenc_cbs_init(&c, d, sizeof(d));
    uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64;
    assert_true(vmenc_cbs_get_u8(&c, &u8)); assert_int_equal(u8, 1);
    assert_true(vmenc_cbs_get_u16(&c, &u16)); assert_int_equal(u16, 0x0203);
    assert_true(vmenc_cbs_get_u24(&c, &u32)); assert_int_equal(u32, 0x040506);
    assert_true(vmenc_cbs_get_u32_le(&c, &u32)); assert_int_equal(u32, 0x0a090807);
    assert_int_equal(vmenc_cbs_len(&c), 6);
    /* failure leaves the cursor unchanged */
    assert_false(vmenc_cbs_get_u64(&c, &u64));
    assert_int_equal(vmenc_cbs_len(&c), 6);
    assert_true(vmenc_cbs_get_u16_le(&c, &u16)); assert_int_equal(u16, 0x0c0b);
    assert_true(vmenc_cbs_get_u32(&c, &u32)); assert_int_equal(u32, 0x0d0e0f10);
    assert_int_equal(vmenc_cbs_len(&c), 0);
    assert_false(vmenc_cbs_get_u8(&c, &u8));
    assert_false(vmenc_cbs_skip(&c, 1));
    assert_true(vmenc_cbs_skip(&c, 0));
}

static void test_cbs_length_prefixed(void **state) {
    static const uint8_t d[] = {0, 3, 'a', 'b', 'c', 5, 'x'};
    vmenc_cbs c, child;
    vmenc_cbs_init(&c, d, sizeof(d));
    assert_true(vmenc_cbs_get_u16_length_prefixed(&c, &child));
    assert_true(vmenc_cbs_mem_equal(&child, (const uint8_t *)"abc", 3));
    /* claims 5 bytes, has 1: fails and leaves the cursor where it was */
    assert_false(vmenc_cbs_get_u8_length_prefixed(&c, &child));
    assert_int_equal(vmenc_cbs_len(&c), 2);
    uint8_t p;
    assert_true(vmenc_cbs_peek_u8(&c, &p));
    assert_int_equal(p, 5);
    /* every truncation of a u32-prefixed field fails cleanly */
    static const uint8_t e[] = {0, 0, 0, 4, 1, 2, 3, 4};
    for (size_t n = 0; n < sizeof(e); n++) {
        vmenc_cbs_init(&c, e, n);
        assert_false(vmenc_cbs_get_u32_length_prefixed(&c, &child));
        assert_int_equal(vmenc_cbs_len(&c), n);
    }
    vmenc_cbs_init(&c, e, sizeof(e));
    assert_true(vmenc_cbs_get_u32_length_prefixed(&c, &child));
    assert_int_equal(vmenc_cbs_len(&child), 4);
}

static void test_cbb_roundtrip(void **state) {
    vmenc_cbb b;
    assert_int_equal(vmenc_cbb_init(&b, 1), VMENC_OK);
    vmenc_cbb_add_u8(&b, 0xaa);
    vmenc_cbb_add_u16(&b, 0x1234);
    vmenc_cbb_add_u64_le(&b, 0x0102030405060708ull);
    size_t m = vmenc_cbb_begin_prefix(&b, 2);
    for (int i = 0; i < 300; i++)
        vmenc_cbb_add_u8(&b, (uint8_t)i);
    vmenc_cbb_end_prefix(&b, m, 2);
    uint8_t *out; size_t out_len;
    assert_int_equal(vmenc_cbb_finish(&b, &out, &out_len), VMENC_OK);
    assert_int_equal(out_len, 1 + 2 + 8 + 2 + 300);
    vmenc_cbs c, child;
    vmenc_cbs_init(&c, out, out_len);
    uint8_t u8; uint16_t u16; uint64_t u64;
    assert_true(vmenc_cbs_get_u8(&c, &u8)); assert_int_equal(u8, 0xaa);
    assert_true(vmenc_cbs_get_u16(&c, &u16)); assert_int_equal(u16, 0x1234);
    assert_true(vmenc_cbs_get_u64_le(&c, &u64)); assert_true(u64 == 0x0102030405060708ull);
    assert_true(vmenc_cbs_get_u16_length_prefixed(&c, &child));
    assert_int_equal(vmenc_cbs_len(&child), 300);
    assert_int_equal(vmenc_cbs_len(&c), 0);
    free(out);
}

static void test_cbb_sticky_errors(void **state) {
    uint8_t buf[4];
    vmenc_cbb b;
    vmenc_cbb_init_fixed(&b, buf, sizeof(buf));
    vmenc_cbb_add_u32(&b, 1);
    assert_true(vmenc_cbb_ok(&b));
    vmenc_cbb_add_u8(&b, 2); /* overflow: sticky */
    assert_false(vmenc_cbb_ok(&b));
    vmenc_cbb_add_u8(&b, 3);
    assert_int_equal(vmenc_cbb_status(&b), VMENC_E_BUFFER_TOO_SMALL);
    uint8_t *out; size_t out_len;
    assert_int_equal(vmenc_cbb_finish(&b, &out, &out_len), VMENC_E_BUFFER_TOO_SMALL);

    /* a 1-byte prefix cannot describe 256 bytes */
    assert_int_equal(vmenc_cbb_init(&b, 0), VMENC_OK);
    size_t m = vmenc_cbb_begin_prefix(&b, 1);
    vmenc_cbb_add_zeros(&b, 256);
    vmenc_cbb_end_prefix(&b, m, 1);
    assert_int_equal(vmenc_cbb_status(&b), VMENC_E_TOO_LARGE);
    vmenc_cbb_cleanup(&b);

    /* the hard maximum */
    assert_int_equal(vmenc_cbb_init(&b, 0), VMENC_OK);
    vmenc_cbb_set_max(&b, 10);
    vmenc_cbb_add_zeros(&b, 11);
    assert_int_equal(vmenc_cbb_status(&b), VMENC_E_TOO_LARGE);
    vmenc_cbb_cleanup(&b);
}

static void test_cbb_secure(void **state) {
    vmenc_cbb b;
    assert_int_equal(vmenc_cbb_init_secure(&b, 8), VMENC_OK);
    for (int i = 0; i < 100; i++)
        vmenc_cbb_add_u8(&b, (uint8_t)i);
    uint8_t *out; size_t out_len;
    assert_int_equal(vmenc_cbb_finish(&b, &out, &out_len), VMENC_OK);
    assert_int_equal(out_len, 100);
    assert_int_equal(out[99], 99);
    vmenc_secure_free(out);
}

static void test_secret(void **state) {
    vmenc_secret *s = NULL, *d = NULL;
    assert_int_equal(vmenc_secret_new(0, &s), VMENC_E_INVALID_ARG);
    assert_null(s);
    assert_int_equal(vmenc_secret_from((const uint8_t *)"0123456789abcdef", 16, &s), VMENC_OK);
    assert_int_equal(vmenc_secret_dup(s, &d), VMENC_OK);
    assert_memory_equal(s->bytes, d->bytes, 16);
    assert_true(vmenc_ct_equal(s->bytes, d->bytes, 16));
    d->bytes[3] ^= 1;
    assert_false(vmenc_ct_equal(s->bytes, d->bytes, 16));
    vmenc_secret_readonly(s);
    vmenc_secret_free(s);
    vmenc_secret_free(d);
    vmenc_secret_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_every_code),
        cmocka_unit_test(test_categories),
        cmocka_unit_test(test_init_idempotent_threads),
        cmocka_unit_test(test_cpu_features),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_cbs_getters),
        cmocka_unit_test(test_cbs_length_prefixed),
        cmocka_unit_test(test_cbb_roundtrip),
        cmocka_unit_test(test_cbb_sticky_errors),
        cmocka_unit_test(test_cbb_secure),
        cmocka_unit_test(test_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
