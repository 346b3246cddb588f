/*
 * tests/test_aead.c - lib/keys/aead.c, the AES-256-GCM used by state files
 * and core dumps: the GCM specification's AES-256 test case 16 (with AAD,
 * a partial last block), agreement with an independent implementation
 * (libsodium's AES-256-GCM, where the CPU has it) over lengths around the
 * 64 KiB record size, in place and out of place, one object alternating
 * directions, and every tamper (ciphertext, tag, AAD, nonce) refused with
 * VMENC_E_AUTH and the output wiped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "keys/aead.h"
#include "vmenc/vmenc.h"

static void unhex(const char *h, uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16. */
static void test_gcm_spec_vector(void **state) {
    (void)state;
    uint8_t key[32], pt[60], aad[20], iv[12], want_ct[60], want_tag[16];
    unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", key, 32);
    unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
          "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39", pt, 60);
    unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, 20);
    unhex("cafebabefacedbaddecaf888", iv, 12);
    unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
          "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662", want_ct, 60);
    unhex("76fc6ece0f4e1768cddf8853bb2d551b", want_tag, 16);
    vmenc_aead *a = NULL;
    assert_int_equal(vmenc_aead_new(key, &a), VMENC_OK);
    uint8_t ct[60], tag[16], back[60];
    assert_int_equal(vmenc_aead_seal(a, iv, aad, sizeof(aad), pt, sizeof(pt), ct, tag), VMENC_OK);
    assert_memory_equal(ct, want_ct, sizeof(ct));
    assert_memory_equal(tag, want_tag, sizeof(tag));
    assert_int_equal(vmenc_aead_open(a, iv, aad, sizeof(aad), ct, sizeof(ct), tag, back), VMENC_OK);
    assert_memory_equal(back, pt, sizeof(pt));
    vmenc_aead_free(a);
}

/* Against libsodium's AES-256-GCM (another implementation), both ways. */
static void test_agrees_with_libsodium(void **state) {
    (void)state;
    if (!crypto_aead_aes256gcm_is_available()) {
        print_message("libsodium AES-256-GCM unavailable on this CPU: differential skipped\n");
        skip();
    }
    uint8_t key[32], nonce[12], aad[41];
    randombytes_buf(key, sizeof(key));
    randombytes_buf(aad, sizeof(aad));
    vmenc_aead *a = NULL;
    assert_int_equal(vmenc_aead_new(key, &a), VMENC_OK);
    const size_t max = 65536 + 64;
    uint8_t *pt = malloc(max), *ct = malloc(max), *ref = malloc(max), *back = malloc(max);
    assert_non_null(pt);
    assert_non_null(ct);
    assert_non_null(ref);
    assert_non_null(back);
    const size_t lens[] = {0, 1, 15, 16, 17, 255, 256, 4096, 65535, 65536, 65536 + 17};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        const size_t len = lens[i];
        randombytes_buf(pt, len);
        randombytes_buf(nonce, sizeof(nonce));
        uint8_t tag[16], ref_tag[16];
        assert_int_equal(vmenc_aead_seal(a, nonce, aad, sizeof(aad), pt, len, ct, tag), VMENC_OK);
        assert_int_equal(crypto_aead_aes256gcm_encrypt_detached(ref, ref_tag, NULL, pt, len, aad,
                                                                sizeof(aad), NULL, nonce, key),
                         0);
        if (len > 0)
            assert_memory_equal(ct, ref, len);
        assert_memory_equal(tag, ref_tag, 16);
        /* libsodium opens ours; we open libsodium's, in place */
        assert_int_equal(crypto_aead_aes256gcm_decrypt_detached(back, NULL, ct, len, tag, aad,
                                                                sizeof(aad), nonce, key),
                         0);
        if (len > 0)
            assert_memory_equal(back, pt, len);
        assert_int_equal(vmenc_aead_open(a, nonce, aad, sizeof(aad), ref, len, ref_tag, ref),
                         VMENC_OK);
        if (len > 0)
            assert_memory_equal(ref, pt, len);
        /* and seal in place, which must give the same */
        memcpy(back, pt, len);
        assert_int_equal(vmenc_aead_seal(a, nonce, aad, sizeof(aad), back, len, back, tag), VMENC_OK);
        if (len > 0)
            assert_memory_equal(back, ct, len);
    }
    free(pt);
    free(ct);
    free(ref);
    free(back);
    vmenc_aead_free(a);
}

static bool all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* A changed ciphertext, tag, AAD or nonce fails as VMENC_E_AUTH, and the
 * output holds nothing of the would-be plaintext. */
static void test_tamper_refused_and_wiped(void **state) {
    (void)state;
    uint8_t key[32], nonce[12], aad[41], pt[1000], ct[1000], tag[16], out[1000];
    randombytes_buf(key, sizeof(key));
    randombytes_buf(nonce, sizeof(nonce));
    randombytes_buf(aad, sizeof(aad));
    randombytes_buf(pt, sizeof(pt));
    vmenc_aead *a = NULL;
    assert_int_equal(vmenc_aead_new(key, &a), VMENC_OK);
    assert_int_equal(vmenc_aead_seal(a, nonce, aad, sizeof(aad), pt, sizeof(pt), ct, tag), VMENC_OK);
    for (int what = 0; what < 4; what++) {
        uint8_t *p = what == 0 ? ct + 500 : what == 1 ? tag + 7 : what == 2 ? aad + 40 : nonce + 11;
        *p ^= 0x10;
        memset(out, 0xee, sizeof(out));
        assert_int_equal(vmenc_aead_open(a, nonce, aad, sizeof(aad), ct, sizeof(ct), tag, out),
                         VMENC_E_AUTH);
        assert_true(all_zero(out, sizeof(out)));
        *p ^= 0x10;
    }
    assert_int_equal(vmenc_aead_open(a, nonce, aad, sizeof(aad), ct, sizeof(ct), tag, out), VMENC_OK);
    assert_memory_equal(out, pt, sizeof(pt));
    vmenc_aead_free(a);
}

static void test_bad_args(void **state) {
    (void)state;
    uint8_t key[32] = {1}, nonce[12] = {0}, buf[16] = {0}, tag[16];
    vmenc_aead *a = NULL;
    assert_int_equal(vmenc_aead_new(NULL, &a), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_aead_new(key, NULL), VMENC_E_INVALID_ARG);
    assert_null(a);
    assert_int_equal(vmenc_aead_new(key, &a), VMENC_OK);
    assert_int_equal(vmenc_aead_seal(NULL, nonce, NULL, 0, buf, 16, buf, tag), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_aead_seal(a, NULL, NULL, 0, buf, 16, buf, tag), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_aead_seal(a, nonce, NULL, 5, buf, 16, buf, tag), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_aead_seal(a, nonce, NULL, 0, NULL, 16, buf, tag), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_aead_seal(a, nonce, NULL, 0, buf, VMENC_AEAD_MAX_BYTES + 1, buf, tag),
                     VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_aead_open(a, nonce, NULL, 0, buf, 16, NULL, buf), VMENC_E_INVALID_ARG);
    /* empty message, empty AAD: a tag over nothing */
    assert_int_equal(vmenc_aead_seal(a, nonce, NULL, 0, NULL, 0, NULL, tag), VMENC_OK);
    assert_int_equal(vmenc_aead_open(a, nonce, NULL, 0, NULL, 0, tag, NULL), VMENC_OK);
    tag[0] ^= 1;
    assert_int_equal(vmenc_aead_open(a, nonce, NULL, 0, NULL, 0, tag, NULL), VMENC_E_AUTH);
    vmenc_aead_free(a);
    vmenc_aead_free(NULL);
}

int main(void) {
    if (vmenc_init() != VMENC_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gcm_spec_vector),
        cmocka_unit_test(test_agrees_with_libsodium),
        cmocka_unit_test(test_tamper_refused_and_wiped),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
