/*
 * tests/test_aead.c - lib/keys/aead.c, the AES-256-GCM used by state files
 * and core dumps: the GCM specification's AES-256 test case 16 (with AAD,
 * a partial last block), agreement with an independent implementation
 * (libsodium's AES-256-GCM, where the CPU has it) over lengths around the
 * 64 KiB record size, in place and out of place, one object alternating
 * directions, and every tamper (ciphertext, tag, AAD, nonce) refused with
 * VMENC_E_AUTH and the output wiped. Each engine (OpenSSL's EVP and, where
 * the CPU has them, vmenc's VAES GCM on 512-bit and on 256-bit registers,
 * lib/xts/gcm_vaes_avx512.c and gcm_vaes_avx2.c) is run through the GCM
 * specification's AES-256 vectors and compared with OpenSSL's EVP used
 * directly over every length from 0 to 600 bytes and lengths around 16-block
 * groups up to 1 MiB, with AAD of 0-80 bytes, in place and not, aligned and
 * at odd addresses.
 *
 * Environment (for scripts/avx512-emu.sh, where every byte costs emulation
 * time): VMENC_TEST_AEAD_REQUIRE=a,b makes an engine in that list that cannot
 * run here a failure, not a skip; VMENC_TEST_AEAD_MAX_LEN=n drops the lengths
 * above n bytes from the long sweep (lengths 0..600 always run).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "keys/aead.h"
#include "xts/gcm_impl.h"
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

/* ---- per engine ------------------------------------------------------------------ */
static const char *const engines[] = {"openssl", "vaes-avx512", "vaes-avx2"};

static bool engine_usable(const char *e) {
    return strcmp(e, "vaes-avx512") == 0 ? vmenc_gcm_vaes_avx512_usable()
           : strcmp(e, "vaes-avx2") == 0 ? vmenc_gcm_vaes_avx2_usable()
                                          : true;
}

/* The engine the library picks by itself on this CPU. */
static const char *best_engine(void) {
    return vmenc_gcm_vaes_avx512_usable() ? "vaes-avx512" : vmenc_gcm_vaes_avx2_usable() ? "vaes-avx2" : "openssl";
}

/* Is |e| in the comma-separated list in the environment variable |var|? */
static bool env_lists(const char *var, const char *e) {
    const char *p = getenv(var);
    const size_t n = strlen(e);
    while (p != NULL && *p != '\0') {
        const size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, e, n) == 0)
            return true;
        p += len + (p[len] == ',');
    }
    return false;
}

/* An engine listed in VMENC_TEST_AEAD_REQUIRE that cannot run here is a
 * failure, not a skip. */
static bool engine_runs(const char *e) {
    if (!engine_usable(e)) {
        if (env_lists("VMENC_TEST_AEAD_REQUIRE", e))
            fail_msg("engine %s is required here (VMENC_TEST_AEAD_REQUIRE) but not runnable on this CPU", e);
        print_message("%s: not runnable on this CPU, skipped\n", e);
        return false;
    }
    return true;
}

/* A name in VMENC_TEST_AEAD_REQUIRE that is no engine of this program would
 * pass untested: refuse it. */
static void test_required_engines_known(void **state) {
    (void)state;
    const char *p = getenv("VMENC_TEST_AEAD_REQUIRE");
    while (p != NULL && *p != '\0') {
        const size_t len = strcspn(p, ",");
        bool known = false;
        for (size_t e = 0; e < sizeof(engines) / sizeof(engines[0]); e++)
            known |= strlen(engines[e]) == len && strncmp(p, engines[e], len) == 0;
        if (!known)
            fail_msg("VMENC_TEST_AEAD_REQUIRE names %.*s, which this test does not run", (int)len, p);
        p += len + (p[len] == ',');
    }
}

/* OpenSSL's EVP AES-256-GCM, used directly: the reference. */
static void evp_seal(const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                     const uint8_t *pt, size_t len, uint8_t *ct, uint8_t tag[16]) {
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0;
    assert_non_null(c);
    assert_int_equal(EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce), 1);
    if (aad_len > 0)
        assert_int_equal(EVP_EncryptUpdate(c, NULL, &n, aad, (int)aad_len), 1);
    if (len > 0)
        assert_int_equal(EVP_EncryptUpdate(c, ct, &n, pt, (int)len), 1);
    assert_int_equal(EVP_EncryptFinal_ex(c, ct + len, &n), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag), 1);
    EVP_CIPHER_CTX_free(c);
}

/* GCM specification (McGrew & Viega) AES-256 test cases 13, 14 and 16. */
static void test_engine_vectors(void **state) {
    (void)state;
    for (size_t e = 0; e < sizeof(engines) / sizeof(engines[0]); e++) {
        if (!engine_runs(engines[e]))
            continue;
        uint8_t key[32] = {0}, iv[12] = {0}, tag[16], want[16], ct[64], want_ct[64], pt[64] = {0}, aad[20];
        vmenc_aead *a = NULL;
        /* 13: zero key, nothing to encrypt */
        assert_int_equal(vmenc_aead_new_impl(key, engines[e], &a), VMENC_OK);
        assert_string_equal(vmenc_aead_engine(a), engines[e]);
        unhex("530f8afbc74536b9a963b4f1c4cb738b", want, 16);
        assert_int_equal(vmenc_aead_seal(a, iv, NULL, 0, NULL, 0, NULL, tag), VMENC_OK);
        assert_memory_equal(tag, want, 16);
        /* 14: one zero block */
        unhex("cea7403d4d606b6e074ec5d3baf39d18", want_ct, 16);
        unhex("d0d1c8a799996bf0265b98b5d48ab919", want, 16);
        assert_int_equal(vmenc_aead_seal(a, iv, NULL, 0, pt, 16, ct, tag), VMENC_OK);
        assert_memory_equal(ct, want_ct, 16);
        assert_memory_equal(tag, want, 16);
        vmenc_aead_free(a);
        /* 16: AAD, a partial last block */
        unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", key, 32);
        unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
              "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39", pt, 60);
        unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, 20);
        unhex("cafebabefacedbaddecaf888", iv, 12);
        unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
              "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662", want_ct, 60);
        unhex("76fc6ece0f4e1768cddf8853bb2d551b", want, 16);
        assert_int_equal(vmenc_aead_new_impl(key, engines[e], &a), VMENC_OK);
        assert_int_equal(vmenc_aead_seal(a, iv, aad, sizeof(aad), pt, 60, ct, tag), VMENC_OK);
        assert_memory_equal(ct, want_ct, 60);
        assert_memory_equal(tag, want, 16);
        assert_int_equal(vmenc_aead_open(a, iv, aad, sizeof(aad), ct, 60, tag, ct), VMENC_OK);
        assert_memory_equal(ct, pt, 60);
        vmenc_aead_free(a);
    }
}

/* Every engine against EVP: all lengths 0..600 (every tail of a 16-block
 * group, on both sides of one), then lengths around multiples of 256 up to
 * 1 MiB + 16; AAD lengths cycling through 0..80; sealing in place every
 * other time; opening in place, and a flipped bit refused and wiped. */
static void test_engines_agree_with_evp(void **state) {
    (void)state;
    const size_t max = ((size_t)1 << 20) + 64;
    uint8_t *pt = malloc(max), *ct = malloc(max), *ref = malloc(max), *back = malloc(max);
    assert_non_null(pt);
    assert_non_null(ct);
    assert_non_null(ref);
    assert_non_null(back);
    randombytes_buf(pt, max);
    size_t lens[700], nl = 0;
    for (size_t l = 0; l <= 600; l++)
        lens[nl++] = l;
    const size_t big[] = {1023, 1024, 1025, 4095, 4096, 4097, 65536 - 1, 65536, 65536 + 17, 262144 + 40,
                          (size_t)1 << 20, ((size_t)1 << 20) + 16};
    const char *max_env = getenv("VMENC_TEST_AEAD_MAX_LEN");
    const size_t max_len = max_env != NULL && max_env[0] != '\0' ? strtoull(max_env, NULL, 10) : max;
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
        if (big[i] <= max_len)
            lens[nl++] = big[i];
    for (size_t e = 0; e < sizeof(engines) / sizeof(engines[0]); e++) {
        if (!engine_runs(engines[e]))
            continue;
        uint8_t key[32], nonce[12], aad[80];
        randombytes_buf(key, sizeof(key));
        randombytes_buf(aad, sizeof(aad));
        vmenc_aead *a = NULL;
        assert_int_equal(vmenc_aead_new_impl(key, engines[e], &a), VMENC_OK);
        for (size_t i = 0; i < nl; i++) {
            const size_t len = lens[i], aad_len = (i * 7) % 81;
            uint8_t tag[16], ref_tag[16];
            randombytes_buf(nonce, sizeof(nonce));
            evp_seal(key, nonce, aad, aad_len, pt, len, ref, ref_tag);
            /* every third length at an odd address: no engine may need alignment */
            uint8_t *c = ct + (i % 3 == 2 ? 3 : 0);
            if (i % 2 == 0) {
                assert_int_equal(vmenc_aead_seal(a, nonce, aad, aad_len, pt, len, c, tag), VMENC_OK);
            } else {
                memcpy(c, pt, len);
                assert_int_equal(vmenc_aead_seal(a, nonce, aad, aad_len, c, len, c, tag), VMENC_OK);
            }
            if (memcmp(c, ref, len) != 0 || memcmp(tag, ref_tag, 16) != 0)
                fail_msg("%s: %zu bytes, %zu bytes of AAD: not EVP's %s", engines[e], len, aad_len,
                         memcmp(c, ref, len) != 0 ? "ciphertext" : "tag");
            memcpy(back, ref, len);
            assert_int_equal(vmenc_aead_open(a, nonce, aad, aad_len, back, len, ref_tag, back), VMENC_OK);
            if (memcmp(back, pt, len) != 0)
                fail_msg("%s: %zu bytes: opened text differs", engines[e], len);
            if (len > 0 && (i % 5 == 0 || len > 600)) {
                ref[len / 2] ^= 0x40;
                memset(back, 0xee, len);
                assert_int_equal(vmenc_aead_open(a, nonce, aad, aad_len, ref, len, ref_tag, back), VMENC_E_AUTH);
                assert_true(all_zero(back, len));
            }
        }
        vmenc_aead_free(a);
        print_message("%s: %zu lengths up to %zu bytes agree with EVP\n", engines[e], nl, lens[nl - 1]);
    }
    free(pt);
    free(ct);
    free(ref);
    free(back);
}

static void test_engine_names(void **state) {
    (void)state;
    uint8_t key[32] = {7};
    vmenc_aead *a = NULL;
    assert_int_equal(vmenc_aead_new_impl(key, "aesni-gcm", &a), VMENC_E_INVALID_ARG);
    assert_null(a);
    /* the default is the fast engine wherever it runs; VMENC_AEAD_IMPL
     * names another (an empty value is no choice, an unknown one an error) */
    const char *saved = getenv("VMENC_AEAD_IMPL");
    char *keep = saved != NULL ? strdup(saved) : NULL;
    unsetenv("VMENC_AEAD_IMPL");
    assert_int_equal(vmenc_aead_new(key, &a), VMENC_OK);
    assert_string_equal(vmenc_aead_engine(a), best_engine());
    vmenc_aead_free(a);
    setenv("VMENC_AEAD_IMPL", "", 1);
    assert_int_equal(vmenc_aead_new(key, &a), VMENC_OK);
    assert_string_equal(vmenc_aead_engine(a), best_engine());
    vmenc_aead_free(a);
    setenv("VMENC_AEAD_IMPL", "openssl", 1);
    assert_int_equal(vmenc_aead_new(key, &a), VMENC_OK);
    assert_string_equal(vmenc_aead_engine(a), "openssl");
    vmenc_aead_free(a);
    a = NULL;
    setenv("VMENC_AEAD_IMPL", "rot13", 1);
    assert_int_equal(vmenc_aead_new(key, &a), VMENC_E_INVALID_ARG);
    assert_null(a);
    if (keep != NULL)
        setenv("VMENC_AEAD_IMPL", keep, 1);
    else
        unsetenv("VMENC_AEAD_IMPL");
    free(keep);
    for (size_t e = 0; e < sizeof(engines) / sizeof(engines[0]); e++) {
        vmenc_status s = vmenc_aead_new_impl(key, engines[e], &a);
        assert_int_equal(s, engine_usable(engines[e]) ? VMENC_OK : VMENC_E_UNSUPPORTED);
        if (s == VMENC_OK)
            assert_string_equal(vmenc_aead_engine(a), engines[e]);
        vmenc_aead_free(a);
        a = NULL;
    }
}

int main(void) {
    if (vmenc_init() != VMENC_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gcm_spec_vector),
        cmocka_unit_test(test_agrees_with_libsodium),
        cmocka_unit_test(test_tamper_refused_and_wiped),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_required_engines_known),
        cmocka_unit_test(test_engine_vectors),
        cmocka_unit_test(test_engines_agree_with_evp),
        cmocka_unit_test(test_engine_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
