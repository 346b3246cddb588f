/*
 * tests/test_xts.c - the XTS-AES engine: IEEE 1619-2007 Annex B vectors,
 * differential tests against OpenSSL's EVP XTS, properties (multi-sector ==
 * sector by sector, round trips, in place, unaligned), threads sharing one
 * context, bad arguments, and backend selection. Every backend the machine
 * can run is tested; the others are reported as skipped.
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
#include "vectors/xts_ieee1619.h"
#include "vmenc/vmenc.h"
#include "xts/xts_impl.h"

static const char *const impls[] = {"vaes-avx512", "vaes-avx2", "aesni", "portable"};
static const uint32_t sector_sizes[] = {512, 1024, 2048, 4096, 8192, 16384, 32768, 65536};


/* ---- the vaes-avx512 logic, run here ---------------------------------------
 * This CPU has no AVX-512, so the vaes-avx512 backend cannot execute. Its code
 * is lib/xts/xts_body.h instantiated with 4 blocks per vector and 4 vectors
 * per group. The same body is instantiated here once more with exactly that
 * geometry, a "512-bit vector" emulated as two ymm halves, so the lane
 * handling, tweak steps (x^4, x^8, x^12, x^16) and tails of the avx512
 * instantiation are tested; only its intrinsic mapping is not. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("aes,pclmul,sse4.1,ssse3,avx,avx2,vaes,vpclmulqdq"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("aes,pclmul,sse4.1,ssse3,avx,avx2,vaes,vpclmulqdq")
#endif
#include <cpuid.h>
#include <immintrin.h>

typedef struct emu512 {
    __m256i lo, hi; /* lanes 0-1, lanes 2-3 */
} emu512;

#define EMU_INLINE static inline __attribute__((always_inline))
EMU_INLINE emu512 emu_loadu(const void *p) {
    return (emu512){_mm256_loadu_si256((const __m256i *)p),
                    _mm256_loadu_si256((const __m256i *)((const uint8_t *)p + 32))};
}
EMU_INLINE void emu_storeu(void *p, emu512 v) {
    _mm256_storeu_si256((__m256i *)p, v.lo);
    _mm256_storeu_si256((__m256i *)((uint8_t *)p + 32), v.hi);
}
#define EMU_BINOP(name, op)                                 \
    EMU_INLINE emu512 name(emu512 a, emu512 b) {            \
        return (emu512){op(a.lo, b.lo), op(a.hi, b.hi)};    \
    }
EMU_BINOP(emu_xor, _mm256_xor_si256)
EMU_BINOP(emu_aesenc, _mm256_aesenc_epi128)
EMU_BINOP(emu_aesenclast, _mm256_aesenclast_epi128)
EMU_BINOP(emu_aesdec, _mm256_aesdec_epi128)
EMU_BINOP(emu_aesdeclast, _mm256_aesdeclast_epi128)
EMU_INLINE emu512 emu_bcast(const void *p) {
    __m256i k = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return (emu512){k, k};
}
EMU_INLINE emu512 emu_slli64(emu512 v, int n) {
    return (emu512){_mm256_slli_epi64(v.lo, n), _mm256_slli_epi64(v.hi, n)};
}
EMU_INLINE emu512 emu_srli64(emu512 v, int n) {
    return (emu512){_mm256_srli_epi64(v.lo, n), _mm256_srli_epi64(v.hi, n)};
}
/* Byte shifts and clmul selectors need immediates: macros. */
#define EMU_BSLLI8(v) ((emu512){_mm256_bslli_epi128((v).lo, 8), _mm256_bslli_epi128((v).hi, 8)})
#define EMU_CLMUL(a, b, imm)                                   \
    ((emu512){_mm256_clmulepi64_epi128((a).lo, (b).lo, imm),   \
              _mm256_clmulepi64_epi128((a).hi, (b).hi, imm)})
EMU_INLINE emu512 emu_poly(void) {
    __m256i p = _mm256_set_epi64x(0, 0x87, 0, 0x87);
    return (emu512){p, p};
}

#define XB_VEC emu512
#define XB_LANES 4
#define XB_NV 4
#define XB_LOADU(p) emu_loadu(p)
#define XB_STOREU(p, v) emu_storeu((p), (v))
#define XB_XOR(a, b) emu_xor((a), (b))
#define XB_AESENC(v, k) emu_aesenc((v), (k))
#define XB_AESENCLAST(v, k) emu_aesenclast((v), (k))
#define XB_AESDEC(v, k) emu_aesdec((v), (k))
#define XB_AESDECLAST(v, k) emu_aesdeclast((v), (k))
#define XB_BCAST(p) emu_bcast(p)
#define XB_SLLI64(v, n) emu_slli64((v), (n))
#define XB_SRLI64(v, n) emu_srli64((v), (n))
#define XB_BSLLI8(v) EMU_BSLLI8(v)
#define XB_CLMUL01(a, b) EMU_CLMUL((a), (b), 0x01)
#define XB_VECTOR_TWEAKS 1 /* as vaes_avx512.c */
#define XB_KEYS_IN_REGS 1  /* as vaes_avx512.c */
#define XB_OPAQUE(v) __asm__("" : "+x"((v).lo), "+x"((v).hi))
#define XB_BSLLI(v, n) ((emu512){_mm256_bslli_epi128((v).lo, n), _mm256_bslli_epi128((v).hi, n)})
#define XB_BSRLI(v, n) ((emu512){_mm256_bsrli_epi128((v).lo, n), _mm256_bsrli_epi128((v).hi, n)})
#define XB_CLMUL00(a, b) EMU_CLMUL((a), (b), 0x00)
#define XB_POLY() emu_poly()
#define XB_FROM_TWEAK(t) emu_from_tweak(t)
#define XB_LANE0(v) _mm256_castsi256_si128((v).lo)
#define XB_NAME "vaes-avx512"
#define XB_BACKEND test_backend_avx512_logic
#define XB_CPU_REQUIRED \
    (VMENC_CPU_AESNI | VMENC_CPU_PCLMULQDQ | VMENC_CPU_AVX2 | VMENC_CPU_VAES | VMENC_CPU_VPCLMULQDQ)
EMU_INLINE emu512 emu_from_tweak(__m128i t);
#include "xts/xts_body.h"
EMU_INLINE emu512 emu_from_tweak(__m128i t) {
    __m128i t1 = xb_mul_alpha(t), t2 = xb_mul_alpha(t1), t3 = xb_mul_alpha(t2);
    return (emu512){_mm256_inserti128_si256(_mm256_castsi128_si256(t), t1, 1),
                    _mm256_inserti128_si256(_mm256_castsi128_si256(t2), t3, 1)};
}
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

/* The pseudo-backend name the tests use for the emulated geometry. */
#define AVX512_LOGIC "avx512-logic-on-avx2"

/* ctx_new is vmenc_xts_new_internal, except that AVX512_LOGIC builds a
 * vaes-avx2 context (same key schedule) and swaps in the emulated body. */
static vmenc_status ctx_new(const uint8_t *key, size_t key_len, uint32_t sector, const char *impl,
                            bool allow_equal_halves, vmenc_xts **out) {
    if (strcmp(impl, AVX512_LOGIC) != 0)
        return vmenc_xts_new_internal(key, key_len, sector, impl, allow_equal_halves, out);
    vmenc_status st =
        vmenc_xts_new_internal(key, key_len, sector, "vaes-avx2", allow_equal_halves, out);
    if (st == VMENC_OK)
        (*out)->backend = &test_backend_avx512_logic;
    return st;
}

/* ---- helpers ------------------------------------------------------------ */

/* The backend a context runs, naming the emulated geometry as such. */
static const char *label(const vmenc_xts *x) {
    return x->backend == &test_backend_avx512_logic ? AVX512_LOGIC : vmenc_xts_impl_name(x);
}

/* Deterministic PRNG (xorshift64*) so a failure reproduces. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}
static void rng_fill(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = rng_next();
        memcpy(p + i, &v, n - i < 8 ? n - i : 8);
    }
}
/* A random XTS key whose halves differ. */
static void random_key(uint8_t *key, size_t len) {
    do
        rng_fill(key, len);
    while (memcmp(key, key + len / 2, len / 2) == 0);
}

static size_t unhex(const char *hex, uint8_t *out, size_t cap) {
    size_t n = strlen(hex) / 2;
    assert_true(n <= cap);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n;
}

static void tweak_of(uint64_t sector, uint8_t tweak[16]) {
    memset(tweak, 0, 16);
    vmenc_store_u64_le(tweak, sector);
}

/* OpenSSL's EVP XTS, the reference: one data unit. */
static void ossl_xts(const uint8_t *key, size_t key_len, const uint8_t tweak[16], const uint8_t *in,
                     uint8_t *out, size_t len, int enc) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    assert_non_null(ctx);
    const EVP_CIPHER *c = key_len == 64 ? EVP_aes_256_xts() : EVP_aes_128_xts();
    assert_int_equal(EVP_CipherInit_ex(ctx, c, NULL, key, tweak, enc), 1);
    int out_len = 0;
    assert_int_equal(EVP_CipherUpdate(ctx, out, &out_len, in, (int)len), 1);
    assert_int_equal(out_len, (int)len);
    EVP_CIPHER_CTX_free(ctx);
}

/* Whether |impl| is named in the comma list |list|. */
static bool in_list(const char *list, const char *impl) {
    size_t n = strlen(impl);
    for (const char *p = list; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, impl, n) == 0)
            return true;
        p += len + (end != NULL);
    }
    return false;
}

/* Returns true (and reports a visible skip) if |impl| cannot run here.
 * Environment (for scripts/avx512-emu.sh, where every test costs minutes of
 * emulation): VMENC_TEST_XTS_IMPLS=a,b runs only those backends;
 * VMENC_TEST_XTS_REQUIRE=a,b makes an unavailable one a failure, not a skip. */
static bool skip_if_unavailable(const char *impl) {
    const char *only = getenv("VMENC_TEST_XTS_IMPLS");
    if (only != NULL && only[0] != '\0' && !in_list(only, impl)) {
        print_message("skipped: backend %s not in VMENC_TEST_XTS_IMPLS\n", impl);
        return true;
    }
    vmenc_status st =
        vmenc_xts_impl_available(strcmp(impl, AVX512_LOGIC) == 0 ? "vaes-avx2" : impl);
    if (st == VMENC_OK)
        return false;
    const char *req = getenv("VMENC_TEST_XTS_REQUIRE");
    if (req != NULL && in_list(req, impl))
        fail_msg("backend %s is required here (VMENC_TEST_XTS_REQUIRE) but unavailable: %s", impl,
                 vmenc_strerror(st));
    assert_int_equal(st, VMENC_E_CPU_UNSUPPORTED);
    if (strcmp(impl, "vaes-avx512") == 0)
        print_message("skipped: CPU lacks AVX-512 (backend %s not executed)\n", impl);
    else
        print_message("skipped: CPU cannot run backend %s\n", impl);
    return true;
}

static vmenc_xts *new_ctx(const uint8_t *key, size_t key_len, uint32_t sector, const char *impl) {
    vmenc_xts *x = NULL;
    assert_int_equal(ctx_new(key, key_len, sector, impl, false, &x), VMENC_OK);
    assert_non_null(x);
    assert_string_equal(vmenc_xts_impl_name(x),
                        strcmp(impl, AVX512_LOGIC) == 0 ? "vaes-avx512" : impl);
    assert_int_equal(vmenc_xts_sector_size(x), sector);
    return x;
}

#define IMPL ((const char *)*state)
#define SKIP_UNAVAILABLE()              \
    do {                                \
        if (skip_if_unavailable(IMPL))  \
            skip();                     \
    } while (0)

/* ---- IEEE 1619-2007 Annex B --------------------------------------------- */

static void test_ieee1619_vectors(void **state) {
    SKIP_UNAVAILABLE();
    static uint8_t key[64], pt[512], ct[512], got[512], ref[512];
    int checked = 0;
    for (size_t v = 0; v < VMENC_ARRAY_LEN(xts_ieee1619_kats); v++) {
        const xts_kat *kat = &xts_ieee1619_kats[v];
        size_t key_len = unhex(kat->key, key, sizeof(key));
        size_t len;
        if (kat->pt == NULL) {
            for (size_t i = 0; i < 512; i++)
                pt[i] = (uint8_t)i;
            len = 512;
        } else {
            len = unhex(kat->pt, pt, sizeof(pt));
        }
        assert_int_equal(unhex(kat->ct, ct, sizeof(ct)), len);
        uint8_t tweak[16];
        tweak_of(kat->dusn, tweak);

        vmenc_xts *x = NULL;
        bool equal_halves = memcmp(key, key + key_len / 2, key_len / 2) == 0;
        if (equal_halves) {
            /* Vector 1 has key1 == key2 == 0: the public API refuses it (and
             * so does OpenSSL); the internal constructor still lets us check
             * the backend's arithmetic against it. */
            assert_int_equal(ctx_new(key, key_len, 512, IMPL, false, &x), VMENC_E_WEAK_KEY);
            assert_null(x);
            assert_int_equal(ctx_new(key, key_len, 512, IMPL, true, &x), VMENC_OK);
            if (strcmp(IMPL, "portable") == 0) {
                /* OpenSSL itself refuses duplicated XTS keys: the portable
                 * backend reports a crypto error instead of an answer. */
                assert_int_equal(vmenc_xts_encrypt_unit(x, tweak, pt, got, len), VMENC_E_CRYPTO);
                print_message("vector %d (equal key halves) not applicable to OpenSSL EVP\n",
                              kat->number);
                vmenc_xts_free(x);
                continue;
            }
        } else {
            x = new_ctx(key, key_len, 512, IMPL);
            /* The vector also checks OpenSSL, our reference elsewhere. */
            ossl_xts(key, key_len, tweak, pt, ref, len, 1);
            assert_memory_equal(ref, ct, len);
        }

        assert_int_equal(vmenc_xts_encrypt_unit(x, tweak, pt, got, len), VMENC_OK);
        if (memcmp(got, ct, len) != 0)
            fail_msg("IEEE 1619 vector %d: encrypt mismatch (%s)", kat->number, IMPL);
        assert_int_equal(vmenc_xts_decrypt_unit(x, tweak, ct, got, len), VMENC_OK);
        if (memcmp(got, pt, len) != 0)
            fail_msg("IEEE 1619 vector %d: decrypt mismatch (%s)", kat->number, IMPL);
        /* In place. */
        memcpy(got, pt, len);
        assert_int_equal(vmenc_xts_encrypt_unit(x, tweak, got, got, len), VMENC_OK);
        assert_memory_equal(got, ct, len);
        assert_int_equal(vmenc_xts_decrypt_unit(x, tweak, got, got, len), VMENC_OK);
        assert_memory_equal(got, pt, len);
        /* 512-byte vectors through the sector API: the data unit sequence
         * number is the sector number (plain64). */
        if (len == 512) {
            assert_int_equal(vmenc_xts_encrypt(x, kat->dusn, pt, got, len), VMENC_OK);
            assert_memory_equal(got, ct, len);
            assert_int_equal(vmenc_xts_decrypt(x, kat->dusn, ct, got, len), VMENC_OK);
            assert_memory_equal(got, pt, len);
        }
        vmenc_xts_free(x);
        checked++;
    }
    assert_int_equal(checked, strcmp(IMPL, "portable") == 0 ? 18 : 19);
}

/* ---- differential against OpenSSL --------------------------------------- */

static void diff_sectors(const char *impl, size_t key_len, uint32_t sector, uint64_t first,
                         size_t num) {
    uint8_t key[64];
    random_key(key, key_len);
    vmenc_xts *x = new_ctx(key, key_len, sector, impl);
    size_t len = (size_t)sector * num;
    uint8_t *pt = malloc(len), *ct = malloc(len), *ref = malloc(len), *back = malloc(len);
    assert_true(pt && ct && ref && back);
    rng_fill(pt, len);
    for (size_t i = 0; i < num; i++) {
        uint8_t tweak[16];
        tweak_of(first + (uint64_t)i, tweak); /* wraps mod 2^64 */
        ossl_xts(key, key_len, tweak, pt + i * sector, ref + i * sector, sector, 1);
    }
    assert_int_equal(vmenc_xts_encrypt(x, first, pt, ct, len), VMENC_OK);
    if (memcmp(ct, ref, len) != 0)
        fail_msg("%s: %zu-byte key, sector %u, first %llu x %zu differs from OpenSSL", impl,
                 key_len, sector, (unsigned long long)first, num);
    assert_int_equal(vmenc_xts_decrypt(x, first, ct, back, len), VMENC_OK);
    assert_memory_equal(back, pt, len);
    /* Sector by sector gives the same bytes as one multi-sector call. */
    for (size_t i = 0; i < num; i++) {
        assert_int_equal(vmenc_xts_encrypt(x, first + (uint64_t)i, pt + i * sector, back + i * sector,
                                           sector),
                         VMENC_OK);
    }
    assert_memory_equal(back, ct, len);
    /* In place. */
    memcpy(back, pt, len);
    assert_int_equal(vmenc_xts_encrypt(x, first, back, back, len), VMENC_OK);
    assert_memory_equal(back, ct, len);
    assert_int_equal(vmenc_xts_decrypt(x, first, back, back, len), VMENC_OK);
    assert_memory_equal(back, pt, len);
    free(pt);
    free(ct);
    free(ref);
    free(back);
    vmenc_xts_free(x);
}

static void test_diff_sectors(void **state) {
    SKIP_UNAVAILABLE();
    static const uint64_t firsts[] = {0, 1, 0xfffffffeull, 0xffffffffull, 0x100000000ull,
                                      0xfffffffffffffffeull, UINT64_MAX};
    for (size_t k = 0; k < 2; k++) {
        size_t key_len = k == 0 ? 64 : 32;
        for (size_t s = 0; s < VMENC_ARRAY_LEN(sector_sizes); s++) {
            uint32_t ss = sector_sizes[s];
            /* 19 sectors: three batches of 8 tweaks, so the batch
             * encrypted ahead reuses the double buffer's first half, and
             * the last batch is partial. */
            size_t num = ss <= 4096 ? 19 : 2;
            for (size_t f = 0; f < VMENC_ARRAY_LEN(firsts); f++)
                diff_sectors(IMPL, key_len, ss, firsts[f], ss <= 4096 ? num : 2);
            diff_sectors(IMPL, key_len, ss, rng_next(), num);
        }
    }
}

/* One unit of |len| bytes at offsets |in_off|/|out_off| from 64-byte
 * alignment, against OpenSSL, both directions, and in place. */
static void diff_unit(vmenc_xts *x, const uint8_t *key, size_t key_len, size_t len, size_t in_off,
                      size_t out_off) {
    uint8_t *bin = malloc(len + 64), *bout = malloc(len + 64), *ref = malloc(len),
            *pt = malloc(len);
    assert_true(bin && bout && ref && pt);
    uint8_t tweak[16];
    rng_fill(tweak, 16);
    rng_fill(pt, len);
    uint8_t *in = bin + in_off, *out = bout + out_off;
    memcpy(in, pt, len);
    ossl_xts(key, key_len, tweak, pt, ref, len, 1);
    assert_int_equal(vmenc_xts_encrypt_unit(x, tweak, in, out, len), VMENC_OK);
    if (memcmp(out, ref, len) != 0)
        fail_msg("%s: unit len %zu (offsets %zu/%zu) differs from OpenSSL", label(x), len, in_off,
                 out_off);
    assert_memory_equal(in, pt, len); /* input untouched */
    assert_int_equal(vmenc_xts_decrypt_unit(x, tweak, out, in, len), VMENC_OK);
    assert_memory_equal(in, pt, len);
    /* In place at the input offset. */
    assert_int_equal(vmenc_xts_encrypt_unit(x, tweak, in, in, len), VMENC_OK);
    assert_memory_equal(in, ref, len);
    ossl_xts(key, key_len, tweak, ref, out, len, 0);
    assert_memory_equal(out, pt, len);
    assert_int_equal(vmenc_xts_decrypt_unit(x, tweak, in, in, len), VMENC_OK);
    assert_memory_equal(in, pt, len);
    free(bin);
    free(bout);
    free(ref);
    free(pt);
}

static void test_diff_units(void **state) {
    SKIP_UNAVAILABLE();
    for (size_t k = 0; k < 2; k++) {
        size_t key_len = k == 0 ? 64 : 32;
        uint8_t key[64];
        random_key(key, key_len);
        vmenc_xts *x = new_ctx(key, key_len, 4096, IMPL);
        for (size_t len = 16; len <= 48; len++) /* every length, CTS included */
            diff_unit(x, key, key_len, len, 0, 0);
        for (size_t len = 49; len <= 600; len += 1 + len / 16)
            diff_unit(x, key, key_len, len, 0, 0);
        static const size_t big[] = {1023, 1024, 1025, 4095, 4096, 4097, 65536 + 7, 1u << 20,
                                     VMENC_XTS_MAX_UNIT};
        for (size_t i = 0; i < VMENC_ARRAY_LEN(big); i++)
            diff_unit(x, key, key_len, big[i], 0, 0);
        for (int i = 0; i < 40; i++)
            diff_unit(x, key, key_len, 16 + (size_t)(rng_next() % (4096 - 16 + 1)), 0, 0);
        /* Unaligned buffers: every offset 1..15, whole and partial blocks. */
        for (size_t off = 1; off <= 15; off++) {
            diff_unit(x, key, key_len, 512, off, 0);
            diff_unit(x, key, key_len, 512 + off, 0, off);
            diff_unit(x, key, key_len, 4096 + 16 * off + 5, off, 16 - off);
        }
        vmenc_xts_free(x);
    }
}

static void test_unaligned_sectors(void **state) {
    SKIP_UNAVAILABLE();
    uint8_t key[64];
    random_key(key, 64);
    vmenc_xts *x = new_ctx(key, 64, 512, IMPL);
    uint8_t *buf = malloc(4 * 512 + 32), *out = malloc(4 * 512 + 32), *ref = malloc(4 * 512);
    assert_true(buf && out && ref);
    rng_fill(buf, 4 * 512 + 32);
    for (size_t i = 0; i < 4; i++) {
        uint8_t tweak[16];
        tweak_of(77 + i, tweak);
        ossl_xts(key, 64, tweak, buf + 7 + i * 512, ref + i * 512, 512, 1);
    }
    for (size_t off = 1; off <= 15; off++) {
        assert_int_equal(vmenc_xts_encrypt(x, 77, buf + 7, out + off, 4 * 512), VMENC_OK);
        assert_memory_equal(out + off, ref, 4 * 512);
    }
    free(buf);
    free(out);
    free(ref);
    vmenc_xts_free(x);
}

/* Round trips across backends: every runnable backend produces the same
 * bytes as every other one for random data. */
static void test_backends_agree(void **state) {
    uint8_t key[64];
    random_key(key, 64);
    size_t len = 8 * 4096 + 0;
    uint8_t *pt = malloc(len), *first = malloc(len), *ct = malloc(len);
    assert_true(pt && first && ct);
    rng_fill(pt, len);
    int ran = 0;
    for (size_t i = 0; i < VMENC_ARRAY_LEN(impls); i++) {
        if (vmenc_xts_impl_available(impls[i]) != VMENC_OK)
            continue;
        vmenc_xts *x = new_ctx(key, 64, 4096, impls[i]);
        assert_int_equal(vmenc_xts_encrypt(x, 123456789, pt, ct, len), VMENC_OK);
        if (ran == 0)
            memcpy(first, ct, len);
        else
            assert_memory_equal(ct, first, len);
        assert_memory_not_equal(ct, pt, len);
        vmenc_xts_free(x);
        ran++;
    }
    assert_true(ran >= 1);
    free(pt);
    free(first);
    free(ct);
}

/* ---- threads -------------------------------------------------------------- */

typedef struct thread_arg {
    const vmenc_xts *x;
    const uint8_t *pt;
    uint8_t *ct;
    size_t len;
    uint64_t first;
    int rounds;
    vmenc_status st;
} thread_arg;

static void *thread_main(void *p) {
    thread_arg *a = p;
    a->st = VMENC_OK;
    for (int r = 0; r < a->rounds && a->st == VMENC_OK; r++) {
        a->st = vmenc_xts_encrypt(a->x, a->first, a->pt, a->ct, a->len);
        if (a->st == VMENC_OK)
            a->st = vmenc_xts_decrypt(a->x, a->first, a->ct, a->ct, a->len);
        if (a->st == VMENC_OK)
            a->st = vmenc_xts_encrypt(a->x, a->first, a->pt, a->ct, a->len);
    }
    return NULL;
}

static void test_threads_share_context(void **state) {
    SKIP_UNAVAILABLE();
    enum { N = 8, LEN = 16 * 4096 };
    uint8_t key[64];
    random_key(key, 64);
    vmenc_xts *x = new_ctx(key, 64, 4096, IMPL);
    uint8_t *pt = malloc(LEN), *want = malloc((size_t)N * LEN), *got = malloc((size_t)N * LEN);
    assert_true(pt && want && got);
    rng_fill(pt, LEN);
    for (int i = 0; i < N; i++)
        assert_int_equal(vmenc_xts_encrypt(x, (uint64_t)i * 1000, pt, want + (size_t)i * LEN, LEN),
                         VMENC_OK);
    pthread_t t[N];
    thread_arg a[N];
    for (int i = 0; i < N; i++) {
        a[i] = (thread_arg){x, pt, got + (size_t)i * LEN, LEN, (uint64_t)i * 1000, 10, VMENC_E_INTERNAL};
        assert_int_equal(pthread_create(&t[i], NULL, thread_main, &a[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(a[i].st, VMENC_OK);
    }
    assert_memory_equal(got, want, (size_t)N * LEN);
    free(pt);
    free(want);
    free(got);
    vmenc_xts_free(x);
}

/* ---- bad arguments ------------------------------------------------------- */

static void test_bad_new_args(void **state) {
    uint8_t key[64];
    random_key(key, 64);
    vmenc_xts *sentinel = (vmenc_xts *)(uintptr_t)0x1234;
    vmenc_xts *x = sentinel;
    assert_int_equal(vmenc_xts_new(NULL, 64, 512, &x), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_xts_new(key, 64, 512, NULL), VMENC_E_INVALID_ARG);
    static const size_t bad_lens[] = {0, 1, 16, 24, 31, 33, 48, 63, 65, 128};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(bad_lens); i++)
        assert_int_equal(vmenc_xts_new(key, bad_lens[i], 512, &x), VMENC_E_INVALID_ARG);
    static const uint32_t bad_sectors[] = {0, 1, 16, 256, 511, 513, 768, 4095, 65535, 65537,
                                           131072, UINT32_MAX};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(bad_sectors); i++)
        assert_int_equal(vmenc_xts_new(key, 64, bad_sectors[i], &x), VMENC_E_BAD_SECTOR_SIZE);
    /* Equal halves, for both key sizes, whatever the backend. */
    uint8_t weak[64];
    rng_fill(weak, 32);
    memcpy(weak + 32, weak, 32);
    assert_int_equal(vmenc_xts_new(weak, 64, 512, &x), VMENC_E_WEAK_KEY);
    memcpy(weak + 16, weak, 16);
    assert_int_equal(vmenc_xts_new(weak, 32, 512, &x), VMENC_E_WEAK_KEY);
    for (size_t i = 0; i < VMENC_ARRAY_LEN(impls); i++)
        assert_int_equal(vmenc_xts_new_impl(weak, 32, 512, impls[i], &x), VMENC_E_WEAK_KEY);
    /* Halves differing in one bit are fine. */
    weak[31] ^= 1;
    vmenc_xts *ok = NULL;
    assert_int_equal(vmenc_xts_new(weak, 32, 512, &ok), VMENC_OK);
    vmenc_xts_free(ok);
    assert_int_equal(vmenc_xts_new_impl(key, 64, 512, "no-such-impl", &x), VMENC_E_UNKNOWN_IMPL);
    assert_int_equal(vmenc_xts_new_impl(key, 64, 512, "", &x), VMENC_E_UNKNOWN_IMPL);
    assert_int_equal(vmenc_xts_new_impl(key, 64, 512, "AESNI", &x), VMENC_E_UNKNOWN_IMPL);
    assert_ptr_equal(x, sentinel); /* every failure left *out alone */
    vmenc_xts_free(NULL);
    assert_string_equal(vmenc_xts_impl_name(NULL), "none");
    assert_int_equal(vmenc_xts_sector_size(NULL), 0);
    assert_int_equal(vmenc_xts_impl_available(NULL), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_xts_impl_available("nope"), VMENC_E_UNKNOWN_IMPL);
    assert_int_equal(vmenc_xts_keybytes_256(), 64);
    assert_int_equal(vmenc_xts_keybytes_128(), 32);
}

static void test_bad_crypt_args(void **state) {
    SKIP_UNAVAILABLE();
    uint8_t key[64], tweak[16] = {0};
    random_key(key, 64);
    vmenc_xts *x = new_ctx(key, 64, 512, IMPL);
    enum { CAP = 4096 };
    uint8_t *in = malloc(CAP), *out = malloc(CAP), *orig_in = malloc(CAP), *orig_out = malloc(CAP);
    assert_true(in && out && orig_in && orig_out);
    rng_fill(in, CAP);
    rng_fill(out, CAP);
    memcpy(orig_in, in, CAP);
    memcpy(orig_out, out, CAP);
    vmenc_status (*const fns[2])(const vmenc_xts *, uint64_t, const uint8_t *, uint8_t *, size_t) = {
        vmenc_xts_encrypt, vmenc_xts_decrypt};
    vmenc_status (*const ufns[2])(const vmenc_xts *, const uint8_t *, const uint8_t *, uint8_t *,
                                  size_t) = {vmenc_xts_encrypt_unit, vmenc_xts_decrypt_unit};
    for (int d = 0; d < 2; d++) {
        assert_int_equal(fns[d](NULL, 0, in, out, 512), VMENC_E_INVALID_ARG);
        assert_int_equal(fns[d](x, 0, NULL, out, 512), VMENC_E_INVALID_ARG);
        assert_int_equal(fns[d](x, 0, in, NULL, 512), VMENC_E_INVALID_ARG);
        static const size_t bad[] = {0, 1, 16, 511, 513, 1000, 1536 + 16};
        for (size_t i = 0; i < VMENC_ARRAY_LEN(bad); i++)
            assert_int_equal(fns[d](x, 0, in, out, bad[i]), VMENC_E_BAD_LENGTH);
        /* Partly overlapping buffers are refused (in == out is fine). */
        assert_int_equal(fns[d](x, 0, in, in + 16, 1024), VMENC_E_INVALID_ARG);
        assert_int_equal(fns[d](x, 0, in + 16, in, 1024), VMENC_E_INVALID_ARG);

        assert_int_equal(ufns[d](NULL, tweak, in, out, 32), VMENC_E_INVALID_ARG);
        assert_int_equal(ufns[d](x, NULL, in, out, 32), VMENC_E_INVALID_ARG);
        assert_int_equal(ufns[d](x, tweak, NULL, out, 32), VMENC_E_INVALID_ARG);
        assert_int_equal(ufns[d](x, tweak, in, NULL, 32), VMENC_E_INVALID_ARG);
        for (size_t len = 0; len < 16; len++)
            assert_int_equal(ufns[d](x, tweak, in, out, len), VMENC_E_BAD_LENGTH);
        assert_int_equal(ufns[d](x, tweak, in, out, (size_t)VMENC_XTS_MAX_UNIT + 1),
                         VMENC_E_BAD_LENGTH);
        assert_int_equal(ufns[d](x, tweak, in, in + 1, 64), VMENC_E_INVALID_ARG);
    }
    /* Nothing was written by any failing call. */
    assert_memory_equal(in, orig_in, CAP);
    assert_memory_equal(out, orig_out, CAP);
    free(in);
    free(out);
    free(orig_in);
    free(orig_out);
    vmenc_xts_free(x);
}

/* ---- vectored calls -------------------------------------------------------- */

enum { IOV_N = 9 };

/* An I/O vector of IOV_N entries of 1..4 sectors each at scattered sector
 * numbers (two of them across the 2^64 wrap), over disjoint slices of |in|
 * and |out|, which hold IOV_N * 4 sectors. */
static void make_iov(vmenc_xts_iov *iov, uint32_t sector, const uint8_t *in, uint8_t *out) {
    static const uint64_t firsts[IOV_N] = {0, 1, 77, 4096, 1ull << 40, UINT64_MAX - 1,
                                           UINT64_MAX, 12345678901ull, 3};
    for (size_t i = 0; i < IOV_N; i++) {
        size_t off = i * 4 * (size_t)sector;
        iov[i] = (vmenc_xts_iov){firsts[i], in + off, out + off, (i % 4 + 1) * (size_t)sector};
    }
}

/* Every entry of an iov call gives the bytes of the single call with the
 * same arguments, both ways, separate and in place; bytes between the
 * entries are not touched. */
static void test_iov_equals_single_calls(void **state) {
    SKIP_UNAVAILABLE();
    static const uint32_t sectors[] = {512, 4096, 65536};
    for (size_t k = 0; k < VMENC_ARRAY_LEN(sectors); k++) {
        uint32_t sector = sectors[k];
        uint8_t key[64];
        random_key(key, 64);
        vmenc_xts *x = new_ctx(key, 64, sector, IMPL);
        size_t cap = (size_t)IOV_N * 4 * sector;
        uint8_t *pt = malloc(cap), *ct = malloc(cap), *ref = malloc(cap), *buf = malloc(cap);
        assert_true(pt && ct && ref && buf);
        rng_fill(pt, cap);
        rng_fill(ct, cap);
        memcpy(ref, ct, cap); /* the gaps between entries keep these bytes */
        vmenc_xts_iov iov[IOV_N];
        make_iov(iov, sector, pt, ref);
        for (size_t i = 0; i < IOV_N; i++)
            assert_int_equal(vmenc_xts_encrypt(x, iov[i].first_sector, iov[i].in, iov[i].out,
                                               iov[i].len),
                             VMENC_OK);
        make_iov(iov, sector, pt, ct);
        assert_int_equal(vmenc_xts_encrypt_iov(x, iov, IOV_N), VMENC_OK);
        assert_memory_equal(ct, ref, cap);
        /* Decrypt back, out of place. */
        memcpy(buf, ct, cap);
        make_iov(iov, sector, ct, buf);
        assert_int_equal(vmenc_xts_decrypt_iov(x, iov, IOV_N), VMENC_OK);
        for (size_t i = 0; i < IOV_N; i++)
            assert_memory_equal(iov[i].out, pt + (iov[i].out - buf), iov[i].len);
        /* In place, both ways. */
        memcpy(buf, pt, cap);
        make_iov(iov, sector, buf, buf);
        assert_int_equal(vmenc_xts_encrypt_iov(x, iov, IOV_N), VMENC_OK);
        for (size_t i = 0; i < IOV_N; i++)
            assert_memory_equal(iov[i].out, ref + (iov[i].out - buf), iov[i].len);
        assert_int_equal(vmenc_xts_decrypt_iov(x, iov, IOV_N), VMENC_OK);
        assert_memory_equal(buf, pt, cap);
        free(pt);
        free(ct);
        free(ref);
        free(buf);
        vmenc_xts_free(x);
    }
}

/* A bad entry anywhere in the vector fails the whole call with the status
 * the single call gives, before any entry is written; an empty vector is a
 * successful no-op. */
static void test_iov_bad_entries(void **state) {
    SKIP_UNAVAILABLE();
    uint8_t key[64];
    random_key(key, 64);
    vmenc_xts *x = new_ctx(key, 64, 512, IMPL);
    size_t cap = (size_t)IOV_N * 4 * 512;
    uint8_t *in = malloc(cap), *out = malloc(cap), *orig_in = malloc(cap), *orig_out = malloc(cap);
    assert_true(in && out && orig_in && orig_out);
    rng_fill(in, cap);
    rng_fill(out, cap);
    memcpy(orig_in, in, cap);
    memcpy(orig_out, out, cap);
    vmenc_status (*const fns[2])(const vmenc_xts *, const vmenc_xts_iov *, size_t) = {
        vmenc_xts_encrypt_iov, vmenc_xts_decrypt_iov};
    for (int d = 0; d < 2; d++) {
        vmenc_xts_iov iov[IOV_N];
        make_iov(iov, 512, in, out);
        assert_int_equal(fns[d](NULL, iov, IOV_N), VMENC_E_INVALID_ARG);
        assert_int_equal(fns[d](x, NULL, 1), VMENC_E_INVALID_ARG);
        /* Empty vectors: nothing to do, with or without an array. */
        assert_int_equal(fns[d](x, NULL, 0), VMENC_OK);
        assert_int_equal(fns[d](x, iov, 0), VMENC_OK);
        /* One bad entry, first, in the middle or last. */
        static const size_t where[] = {0, IOV_N / 2, IOV_N - 1};
        for (size_t w = 0; w < VMENC_ARRAY_LEN(where); w++) {
            size_t i = where[w];
            const vmenc_xts_iov good = iov[i];
            iov[i].in = NULL;
            assert_int_equal(fns[d](x, iov, IOV_N), VMENC_E_INVALID_ARG);
            iov[i] = good;
            iov[i].out = NULL;
            assert_int_equal(fns[d](x, iov, IOV_N), VMENC_E_INVALID_ARG);
            iov[i] = good;
            static const size_t bad[] = {0, 1, 16, 511, 513, 1000};
            for (size_t b = 0; b < VMENC_ARRAY_LEN(bad); b++) {
                iov[i].len = bad[b];
                assert_int_equal(fns[d](x, iov, IOV_N), VMENC_E_BAD_LENGTH);
            }
            iov[i] = good;
            iov[i].out = (uint8_t *)iov[i].in + 16; /* partial overlap */
            assert_int_equal(fns[d](x, iov, IOV_N), VMENC_E_INVALID_ARG);
            iov[i] = good;
        }
        /* Nothing was written by any failing call. */
        assert_memory_equal(in, orig_in, cap);
        assert_memory_equal(out, orig_out, cap);
    }
    free(in);
    free(out);
    free(orig_in);
    free(orig_out);
    vmenc_xts_free(x);
}

/* ---- backend selection ---------------------------------------------------- */

static void test_env_forces_backend(void **state) {
    SKIP_UNAVAILABLE();
    uint8_t key[64], pt[1024], a[1024], b[1024];
    random_key(key, 64);
    rng_fill(pt, sizeof(pt));
    assert_int_equal(setenv("VMENC_XTS_IMPL", IMPL, 1), 0);
    vmenc_xts *x = NULL;
    assert_int_equal(vmenc_xts_new(key, 64, 512, &x), VMENC_OK);
    unsetenv("VMENC_XTS_IMPL");
    assert_string_equal(vmenc_xts_impl_name(x), IMPL);
    assert_int_equal(vmenc_xts_encrypt(x, 5, pt, a, sizeof(pt)), VMENC_OK);
    for (size_t i = 0; i < 2; i++) {
        uint8_t tweak[16];
        tweak_of(5 + i, tweak);
        ossl_xts(key, 64, tweak, pt + 512 * i, b + 512 * i, 512, 1);
    }
    assert_memory_equal(a, b, sizeof(pt));
    /* The vectored call runs the forced backend too. */
    uint8_t c[1024];
    vmenc_xts_iov iov[2] = {{6, pt + 512, c + 512, 512}, {5, pt, c, 512}};
    assert_int_equal(vmenc_xts_encrypt_iov(x, iov, 2), VMENC_OK);
    assert_memory_equal(c, b, sizeof(pt));
    vmenc_xts_free(x);
}

static void test_env_selection_rules(void **state) {
    uint8_t key[64];
    random_key(key, 64);
    vmenc_xts *x = NULL;
    unsetenv("VMENC_XTS_IMPL");
    assert_int_equal(vmenc_xts_new(key, 64, 4096, &x), VMENC_OK);
    /* The automatic choice is the first runnable backend, best first. */
    const char *best = NULL;
    for (size_t i = 0; i < VMENC_ARRAY_LEN(impls) && best == NULL; i++)
        if (vmenc_xts_impl_available(impls[i]) == VMENC_OK)
            best = impls[i];
    assert_non_null(best);
    assert_string_equal(vmenc_xts_impl_name(x), best);
    print_message("automatic backend here: %s\n", best);
    vmenc_xts_free(x);
    x = NULL;

    assert_int_equal(setenv("VMENC_XTS_IMPL", "bogus", 1), 0);
    assert_int_equal(vmenc_xts_new(key, 64, 4096, &x), VMENC_E_UNKNOWN_IMPL);
    assert_null(x);
    /* vmenc_xts_new_impl(NULL) ignores the environment. */
    assert_int_equal(vmenc_xts_new_impl(key, 64, 4096, NULL, &x), VMENC_OK);
    assert_string_equal(vmenc_xts_impl_name(x), best);
    vmenc_xts_free(x);
    x = NULL;
    /* An empty value means unset. */
    assert_int_equal(setenv("VMENC_XTS_IMPL", "", 1), 0);
    assert_int_equal(vmenc_xts_new(key, 64, 4096, &x), VMENC_OK);
    assert_string_equal(vmenc_xts_impl_name(x), best);
    vmenc_xts_free(x);
    x = NULL;
    /* A backend the CPU cannot run is an error, not a silent fallback. */
    uint32_t f = vmenc_cpu_features();
    for (size_t i = 0; i < VMENC_ARRAY_LEN(impls); i++) {
        vmenc_status st = vmenc_xts_impl_available(impls[i]);
        assert_true(st == VMENC_OK || st == VMENC_E_CPU_UNSUPPORTED);
        if (st == VMENC_E_CPU_UNSUPPORTED) {
            assert_int_equal(setenv("VMENC_XTS_IMPL", impls[i], 1), 0);
            assert_int_equal(vmenc_xts_new(key, 64, 4096, &x), VMENC_E_CPU_UNSUPPORTED);
            assert_int_equal(vmenc_xts_new_impl(key, 64, 4096, impls[i], &x),
                             VMENC_E_CPU_UNSUPPORTED);
            assert_null(x);
        }
    }
    unsetenv("VMENC_XTS_IMPL");
    /* Availability follows the detected CPU features. */
    assert_int_equal(vmenc_xts_impl_available("portable"), VMENC_OK);
    bool avx512 = (f & (VMENC_CPU_AVX512F | VMENC_CPU_AVX512VL | VMENC_CPU_AVX512BW |
                        VMENC_CPU_VAES | VMENC_CPU_VPCLMULQDQ)) ==
                  (VMENC_CPU_AVX512F | VMENC_CPU_AVX512VL | VMENC_CPU_AVX512BW | VMENC_CPU_VAES |
                   VMENC_CPU_VPCLMULQDQ);
    if (!avx512)
        assert_int_equal(vmenc_xts_impl_available("vaes-avx512"), VMENC_E_CPU_UNSUPPORTED);
    if (!(f & VMENC_CPU_AESNI))
        assert_int_equal(vmenc_xts_impl_available("aesni"), VMENC_E_CPU_UNSUPPORTED);
}

/* ---- XTS-AES-128 vs -256 are different ciphers ---------------------------- */

static void test_key_sizes_differ(void **state) {
    SKIP_UNAVAILABLE();
    uint8_t key[64], pt[512], a[512], b[512];
    random_key(key, 64);
    rng_fill(pt, sizeof(pt));
    /* The 32-byte key is key1[0..16) || key2[0..16), not a prefix of the 64. */
    vmenc_xts *x256 = new_ctx(key, 64, 512, IMPL);
    uint8_t k128[32];
    memcpy(k128, key, 16);
    memcpy(k128 + 16, key + 32, 16);
    vmenc_xts *x128 = new_ctx(k128, 32, 512, IMPL);
    assert_int_equal(vmenc_xts_encrypt(x256, 9, pt, a, 512), VMENC_OK);
    assert_int_equal(vmenc_xts_encrypt(x128, 9, pt, b, 512), VMENC_OK);
    assert_memory_not_equal(a, b, 512);
    vmenc_xts_free(x256);
    vmenc_xts_free(x128);
}

#define PER_IMPL(fn)                                                              \
    cmocka_unit_test_prestate(fn, (void *)"vaes-avx512"),                         \
        cmocka_unit_test_prestate(fn, (void *)AVX512_LOGIC),                      \
        cmocka_unit_test_prestate(fn, (void *)"vaes-avx2"),                       \
        cmocka_unit_test_prestate(fn, (void *)"aesni"),                           \
        cmocka_unit_test_prestate(fn, (void *)"portable")
/* Backends selectable by name (the environment variable cannot name the
 * emulated geometry). */
#define PER_REAL_IMPL(fn)                                                         \
    cmocka_unit_test_prestate(fn, (void *)"vaes-avx512"),                         \
        cmocka_unit_test_prestate(fn, (void *)"vaes-avx2"),                       \
        cmocka_unit_test_prestate(fn, (void *)"aesni"),                           \
        cmocka_unit_test_prestate(fn, (void *)"portable")

/* What the CPU and the OS report, as the picker sees it: CPUID leaves 1 and
 * 7 and XCR0 (XGETBV), and the backends available. scripts/avx512-emu.sh
 * reads this line to prove that the guest really offered AVX-512. */
static void report_cpu(void) {
    unsigned a = 0, b = 0, c1 = 0, d = 0, b7 = 0, c7 = 0;
    unsigned long long xcr0 = 0;
#if defined(__x86_64__)
    __cpuid(1, a, b, c1, d);
    if (__get_cpuid_max(0, NULL) >= 7)
        __cpuid_count(7, 0, a, b7, c7, d);
    if ((c1 >> 27) & 1) { /* OSXSAVE: XGETBV is allowed */
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((unsigned long long)hi << 32) | lo;
    }
#endif
    printf("test_xts: cpuid1.ecx=%08x cpuid7.ebx=%08x cpuid7.ecx=%08x xcr0=%llx features=%08x\n",
           c1, b7, c7, xcr0, vmenc_cpu_features());
    printf("test_xts: backends available:");
    for (size_t i = 0; i < VMENC_ARRAY_LEN(impls); i++)
        printf(" %s=%s", impls[i], vmenc_xts_impl_available(impls[i]) == VMENC_OK ? "yes" : "no");
    printf("\n");
    fflush(stdout);
}

int main(void) {
    if (vmenc_init() != VMENC_OK)
        return 1;
    report_cpu();
    const struct CMUnitTest tests[] = {
        PER_IMPL(test_ieee1619_vectors),
        PER_IMPL(test_diff_sectors),
        PER_IMPL(test_diff_units),
        PER_IMPL(test_unaligned_sectors),
        PER_IMPL(test_threads_share_context),
        PER_IMPL(test_bad_crypt_args),
        PER_IMPL(test_iov_equals_single_calls),
        PER_IMPL(test_iov_bad_entries),
        PER_REAL_IMPL(test_env_forces_backend),
        PER_IMPL(test_key_sizes_differ),
        cmocka_unit_test(test_backends_agree),
        cmocka_unit_test(test_bad_new_args),
        cmocka_unit_test(test_env_selection_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
