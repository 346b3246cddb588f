/*
 * tests/test_xts_residue.c - no key material outlives an XTS call (lib/xts/
 * xts_body.h's safety rule; docs/xts.md "Keys and threads"): after each
 * call of every SIMD backend - one sector, many sectors, a data unit with
 * ciphertext stealing, both directions, both key sizes -
 *   - no vector register (zmm0-31, or ymm/xmm0-15 on smaller CPUs) holds a
 *     round key of the context's schedule or the call's encrypted tweak, and
 *   - the stack below the caller's frame (painted with a pattern first, so
 *     only what the call wrote is there) holds none either.
 * The stack check needs an optimised build (at -O0 every local lives on the
 * stack by construction) and no ASan (its frames differ): it is skipped,
 * visibly, otherwise. tests/xts_disasm.test.sh checks the same property on
 * the object code. A backend named in VMENC_TEST_XTS_REQUIRE, or a GCM
 * engine in VMENC_TEST_AEAD_REQUIRE (scripts/avx512-emu.sh sets both), that
 * cannot run here is a failure, not a skip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <immintrin.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "vmenc/vmenc.h"
#include "xts/gcm_impl.h"
#include "xts/xts_impl.h"

#if defined(__SANITIZE_ADDRESS__)
#define RESIDUE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RESIDUE_ASAN 1
#endif
#endif

static const char *const impls[] = {"vaes-avx512", "vaes-avx2", "aesni"};

/* Is |name| in the comma-separated list in the environment variable |var|? */
static bool env_lists(const char *var, const char *name) {
    const char *p = getenv(var);
    const size_t n = strlen(name);
    while (p != NULL && *p != '\0') {
        const size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p += len + (p[len] == ',');
    }
    return false;
}

/* ---- what must not be found ------------------------------------------- */
#define MAX_NEEDLES 768
static uint8_t g_needle[MAX_NEEDLES][16];
static int g_num_needles;
/* needles by first byte, so a scan of the painted stack stays fast */
static int g_by_byte[256][MAX_NEEDLES];
static int g_by_byte_n[256];

static void add_needle(const uint8_t n[16]) {
    assert_true(g_num_needles < MAX_NEEDLES);
    memcpy(g_needle[g_num_needles], n, 16);
    g_by_byte[n[0]][g_by_byte_n[n[0]]++] = g_num_needles;
    g_num_needles++;
}

/* t * alpha in GF(2^128), little-endian (IEEE 1619 5.2) */
static void mul_alpha(uint8_t t[16]) {
    uint8_t carry = 0;
    for (int i = 0; i < 16; i++) {
        uint8_t c = (uint8_t)(t[i] >> 7);
        t[i] = (uint8_t)((t[i] << 1) | carry);
        carry = c;
    }
    if (carry)
        t[0] ^= 0x87;
}

/* Every round key of the data, inverse and tweak schedules (rounds 0 and,
 * for AES-256, 1 are the raw key's bytes: the test keeps its key in static
 * memory, so they must not be on the stack either), and every tweak the
 * calls use: E_k2(sector) and its multiples by alpha^1..39 (the blocks of a
 * 512-byte sector and a group step past its end), computed with OpenSSL - so
 * a group's tweaks parked or spilled in the frame and not wiped are found,
 * not only the sector's first. */
static void collect_needles(const vmenc_xts *x, const uint8_t *key, size_t key_len,
                            const uint64_t *sectors, int num_sectors) {
    const vmenc_xts_sched *s = x->sched;
    g_num_needles = 0;
    memset(g_by_byte_n, 0, sizeof(g_by_byte_n));
    for (unsigned r = 0; r <= x->rounds; r++) {
        add_needle(s->ek[r]);
        add_needle(s->dk[r]);
        add_needle(s->tk[r]);
    }
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    assert_non_null(c);
    const EVP_CIPHER *ecb = key_len == 64 ? EVP_aes_256_ecb() : EVP_aes_128_ecb();
    assert_int_equal(EVP_EncryptInit_ex(c, ecb, NULL, key + key_len / 2, NULL), 1);
    for (int i = 0; i < num_sectors; i++) {
        uint8_t in[16] = {0}, t[16];
        int n = 0;
        memcpy(in, &sectors[i], 8);
        assert_int_equal(EVP_EncryptUpdate(c, t, &n, in, 16), 1);
        for (int j = 0; j < 40; j++) {
            add_needle(t);
            mul_alpha(t);
        }
    }
    EVP_CIPHER_CTX_free(c);
}

static const char *find_needle(const uint8_t *p, size_t len, size_t *at) {
    static char what[32];
    for (size_t off = 0; off + 16 <= len; off++)
        for (int j = 0; j < g_by_byte_n[p[off]]; j++) {
            const int k = g_by_byte[p[off]][j];
            if (memcmp(p + off, g_needle[k], 16) == 0) {
                *at = off;
                snprintf(what, sizeof(what), "needle %d", k);
                return what;
            }
        }
    return NULL;
}

/* ---- registers ------------------------------------------------------------ */
static uint8_t g_regs[32 * 64] __attribute__((aligned(64)));
static size_t g_regs_len, g_reg_bytes;

__attribute__((noinline, target("avx512f"))) static void dump_zmm(void) {
    __asm__ __volatile__(
        "vmovdqu64 %%zmm0, 0(%0)\n\tvmovdqu64 %%zmm1, 64(%0)\n\tvmovdqu64 %%zmm2, 128(%0)\n\t"
        "vmovdqu64 %%zmm3, 192(%0)\n\tvmovdqu64 %%zmm4, 256(%0)\n\tvmovdqu64 %%zmm5, 320(%0)\n\t"
        "vmovdqu64 %%zmm6, 384(%0)\n\tvmovdqu64 %%zmm7, 448(%0)\n\tvmovdqu64 %%zmm8, 512(%0)\n\t"
        "vmovdqu64 %%zmm9, 576(%0)\n\tvmovdqu64 %%zmm10, 640(%0)\n\tvmovdqu64 %%zmm11, 704(%0)\n\t"
        "vmovdqu64 %%zmm12, 768(%0)\n\tvmovdqu64 %%zmm13, 832(%0)\n\tvmovdqu64 %%zmm14, 896(%0)\n\t"
        "vmovdqu64 %%zmm15, 960(%0)\n\tvmovdqu64 %%zmm16, 1024(%0)\n\tvmovdqu64 %%zmm17, 1088(%0)\n\t"
        "vmovdqu64 %%zmm18, 1152(%0)\n\tvmovdqu64 %%zmm19, 1216(%0)\n\tvmovdqu64 %%zmm20, 1280(%0)\n\t"
        "vmovdqu64 %%zmm21, 1344(%0)\n\tvmovdqu64 %%zmm22, 1408(%0)\n\tvmovdqu64 %%zmm23, 1472(%0)\n\t"
        "vmovdqu64 %%zmm24, 1536(%0)\n\tvmovdqu64 %%zmm25, 1600(%0)\n\tvmovdqu64 %%zmm26, 1664(%0)\n\t"
        "vmovdqu64 %%zmm27, 1728(%0)\n\tvmovdqu64 %%zmm28, 1792(%0)\n\tvmovdqu64 %%zmm29, 1856(%0)\n\t"
        "vmovdqu64 %%zmm30, 1920(%0)\n\tvmovdqu64 %%zmm31, 1984(%0)"
        :
        : "r"(g_regs)
        : "memory");
    g_regs_len = 32 * 64;
    g_reg_bytes = 64;
}

__attribute__((noinline, target("avx"))) static void dump_ymm(void) {
    __asm__ __volatile__(
        "vmovdqu %%ymm0, 0(%0)\n\tvmovdqu %%ymm1, 32(%0)\n\tvmovdqu %%ymm2, 64(%0)\n\t"
        "vmovdqu %%ymm3, 96(%0)\n\tvmovdqu %%ymm4, 128(%0)\n\tvmovdqu %%ymm5, 160(%0)\n\t"
        "vmovdqu %%ymm6, 192(%0)\n\tvmovdqu %%ymm7, 224(%0)\n\tvmovdqu %%ymm8, 256(%0)\n\t"
        "vmovdqu %%ymm9, 288(%0)\n\tvmovdqu %%ymm10, 320(%0)\n\tvmovdqu %%ymm11, 352(%0)\n\t"
        "vmovdqu %%ymm12, 384(%0)\n\tvmovdqu %%ymm13, 416(%0)\n\tvmovdqu %%ymm14, 448(%0)\n\t"
        "vmovdqu %%ymm15, 480(%0)"
        :
        : "r"(g_regs)
        : "memory");
    g_regs_len = 16 * 32;
    g_reg_bytes = 32;
}

__attribute__((noinline)) static void dump_xmm(void) {
    __asm__ __volatile__(
        "movdqu %%xmm0, 0(%0)\n\tmovdqu %%xmm1, 16(%0)\n\tmovdqu %%xmm2, 32(%0)\n\t"
        "movdqu %%xmm3, 48(%0)\n\tmovdqu %%xmm4, 64(%0)\n\tmovdqu %%xmm5, 80(%0)\n\t"
        "movdqu %%xmm6, 96(%0)\n\tmovdqu %%xmm7, 112(%0)\n\tmovdqu %%xmm8, 128(%0)\n\t"
        "movdqu %%xmm9, 144(%0)\n\tmovdqu %%xmm10, 160(%0)\n\tmovdqu %%xmm11, 176(%0)\n\t"
        "movdqu %%xmm12, 192(%0)\n\tmovdqu %%xmm13, 208(%0)\n\tmovdqu %%xmm14, 224(%0)\n\t"
        "movdqu %%xmm15, 240(%0)"
        :
        : "r"(g_regs)
        : "memory");
    g_regs_len = 16 * 16;
    g_reg_bytes = 16;
}

static void (*g_dump)(void);

/* ---- the stack below the caller ------------------------------------------- */
#define PAINT_BYTES (48u * 1024u)
#define PAINT 0xa5

/* paint fills PAINT_BYTES below the caller's frame with the pattern. */
__attribute__((noinline)) static void paint(void) {
    volatile uint8_t area[PAINT_BYTES];
    for (size_t i = 0; i < sizeof(area); i++)
        area[i] = PAINT;
}

/* scan reads the PAINT_BYTES - 1 KiB below |top| (the caller's frame
 * address): the caller's own locals, then what the call left below them.
 * A read of stack the process owns but no live object spans: not for the
 * sanitizers. */
__attribute__((noinline, no_sanitize_address)) static const char *scan(uintptr_t top, size_t *at,
                                                                      size_t *used) {
    static uint8_t copy[PAINT_BYTES];
    const size_t span = PAINT_BYTES - 1024; /* stay inside what paint() owned */
    uintptr_t base = top - span;
    __asm__("" : "+r"(base)); /* an address, not an object the compiler knows */
    const volatile uint8_t *low = (const volatile uint8_t *)base;
    for (size_t i = 0; i < span; i++)
        copy[i] = low[i];
    *used = 0;
    for (size_t i = 0; i < span; i++)
        if (copy[i] != PAINT)
            (*used)++;
    return find_needle(copy, span, at);
}

/* ---- one call, checked ------------------------------------------------------ */
typedef enum call_kind { ONE_SECTOR, MANY_SECTORS, UNIT_CTS } call_kind;

static uint8_t g_in[16 * 512], g_out[16 * 512];

__attribute__((noinline)) static vmenc_status do_call(const vmenc_xts *x, call_kind k, bool enc,
                                                      uint64_t sector) {
    switch (k) {
    case ONE_SECTOR:
        return enc ? vmenc_xts_encrypt(x, sector, g_in, g_out, 512)
                   : vmenc_xts_decrypt(x, sector, g_in, g_out, 512);
    case MANY_SECTORS:
        return enc ? vmenc_xts_encrypt(x, sector, g_in, g_out, sizeof(g_in))
                   : vmenc_xts_decrypt(x, sector, g_in, g_out, sizeof(g_in));
    case UNIT_CTS: {
        uint8_t tweak[16] = {0};
        memcpy(tweak, &sector, 8);
        return enc ? vmenc_xts_encrypt_unit(x, tweak, g_in, g_out, 1000)
                   : vmenc_xts_decrypt_unit(x, tweak, g_in, g_out, 1000);
    }
    }
    return VMENC_E_INTERNAL;
}

static bool g_check_stack;

static void check_backend(const char *impl, size_t key_len) {
    static uint8_t key[64];
    for (size_t i = 0; i < key_len; i++)
        key[i] = (uint8_t)(0x3c + 7 * i);
    vmenc_xts *x = NULL;
    assert_int_equal(vmenc_xts_new_impl(key, key_len, 512, impl, &x), VMENC_OK);
    const uint64_t sector = 0x1122334455667788ull;
    uint64_t secs[18];
    for (int i = 0; i < 16; i++)
        secs[i] = sector + (uint64_t)i;
    collect_needles(x, key, key_len, secs, 16);
    for (int k = ONE_SECTOR; k <= UNIT_CTS; k++)
        for (int enc = 0; enc < 2; enc++) {
            const char *what = k == ONE_SECTOR ? "one sector" : k == MANY_SECTORS ? "16 sectors" : "unit (CTS)";
            paint();
            assert_int_equal(do_call(x, (call_kind)k, enc, sector), VMENC_OK);
            g_dump();
            size_t at = 0, used = 0;
            /* the registers the backend's instruction set has: the others
             * are written only by other code (unoptimised builds call glibc's
             * memcpy, whose AVX-512 variants use zmm16-31) */
            const size_t nregs = strcmp(impl, "vaes-avx512") == 0 ? 32 : 16;
            const size_t span = nregs * g_reg_bytes < g_regs_len ? nregs * g_reg_bytes : g_regs_len;
            const char *hit = find_needle(g_regs, span, &at);
            if (hit != NULL)
                fail_msg("%s, %zu-byte key, %s %s: %s in vector register %zu after return", impl,
                         key_len, what, enc ? "encrypt" : "decrypt", hit, at / g_reg_bytes);
            if (!g_check_stack)
                continue;
            hit = scan((uintptr_t)__builtin_frame_address(0), &at, &used);
            if (hit != NULL)
                fail_msg("%s, %zu-byte key, %s %s: %s on the stack, %zu bytes below the caller's "
                         "frame region start (%zu bytes written)",
                         impl, key_len, what, enc ? "encrypt" : "decrypt", hit, at, used);
        }
    vmenc_xts_free(x);
}

static void test_no_residue(void **state) {
    (void)state;
    int ran = 0;
    for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
        vmenc_status st = vmenc_xts_impl_available(impls[i]);
        if (st == VMENC_E_CPU_UNSUPPORTED) {
            if (env_lists("VMENC_TEST_XTS_REQUIRE", impls[i]))
                fail_msg("%s is required here (VMENC_TEST_XTS_REQUIRE) but cannot run", impls[i]);
            print_message("%s: not runnable on this CPU, skipped\n", impls[i]);
            continue;
        }
        assert_int_equal(st, VMENC_OK);
        check_backend(impls[i], 64);
        check_backend(impls[i], 32);
        ran++;
    }
    print_message("residue checked on %d backend(s); registers: %zu bytes each call; stack: %s\n",
                  ran, g_regs_len, g_check_stack ? "scanned" : "skipped (unoptimised or ASan build)");
}

/* The check can fail: the same scan finds the schedule when a key is put
 * in a register and on the stack on purpose. */
__attribute__((noinline, target("avx"))) static void leak_on_purpose(const vmenc_xts *x) {
    volatile uint8_t frame[64];
    memcpy((void *)frame, x->sched->tk[3], 16);
    __m128i k = _mm_loadu_si128((const __m128i *)(const void *)x->sched->ek[5]);
    __asm__ __volatile__("vmovdqa %0, %%xmm9" : : "x"(k) : "xmm9");
}

static void test_the_check_can_fail(void **state) {
    (void)state;
    if (!__builtin_cpu_supports("avx") || vmenc_xts_impl_available("aesni") != VMENC_OK)
        skip();
    static uint8_t key[64];
    for (size_t i = 0; i < 64; i++)
        key[i] = (uint8_t)(0x3c + 7 * i);
    vmenc_xts_block blk __attribute__((aligned(64)));
    memset(&blk, 0, sizeof(blk));
    assert_int_equal(vmenc_xts_setup(&blk, &vmenc_xts_backend_aesni, key, 64, 512), VMENC_OK);
    const uint64_t sector = 1;
    collect_needles(&blk.x, key, 64, &sector, 1);
    paint();
    leak_on_purpose(&blk.x);
    g_dump();
    size_t at = 0, used = 0;
    assert_non_null(find_needle(g_regs, g_regs_len, &at));
    if (g_check_stack)
        assert_non_null(scan((uintptr_t)__builtin_frame_address(0), &at, &used));
    vmenc_xts_teardown(&blk);
}

/* ---- the AES-256-GCM engine ---------------------------------------------------- */
static vmenc_gcm_key g_gk __attribute__((aligned(64)));
static uint8_t g_gcm_in[4096 + 100], g_gcm_out[4096 + 100];

/* needles: every round key, every power of the hash key, and the tag mask
 * E(K, J0) of the nonce used, from OpenSSL */
static void collect_gcm_needles(const uint8_t key[32], const uint8_t nonce[12]) {
    g_num_needles = 0;
    memset(g_by_byte_n, 0, sizeof(g_by_byte_n));
    for (int r = 0; r < 15; r++)
        add_needle(g_gk.rk[r]);
    for (int i = 0; i < 16; i++)
        add_needle(g_gk.hpow[i]);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    assert_non_null(c);
    assert_int_equal(EVP_EncryptInit_ex(c, EVP_aes_256_ecb(), NULL, key, NULL), 1);
    uint8_t j0[16] = {0}, ej0[16];
    int n = 0;
    memcpy(j0, nonce, 12);
    j0[15] = 1;
    assert_int_equal(EVP_EncryptUpdate(c, ej0, &n, j0, 16), 1);
    add_needle(ej0);
    EVP_CIPHER_CTX_free(c);
}

__attribute__((noinline)) static void gcm_call(const vmenc_gcm_engine *e, int what, const uint8_t *key,
                                               const uint8_t *nonce, size_t len) {
    uint8_t tag[16];
    if (what == 0)
        e->init(&g_gk, key);
    else
        e->crypt(&g_gk, what == 1, nonce, g_gcm_in, 41, g_gcm_in, g_gcm_out, len, tag);
}

/* Each engine: after key set-up, a seal and an open of a 16-block-group
 * length with a partial tail (1000 bytes) and of a longer one (every code
 * path: AAD with a partial block, the 16-block loop, whole and partial tail
 * blocks), no register and no stack byte below the caller holds a round key,
 * a power of the hash key or E(K, J0). */
static void test_gcm_no_residue(void **state) {
    (void)state;
    static uint8_t key[32];
    const uint8_t nonce[12] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0xfe, 0xff};
    for (size_t i = 0; i < 32; i++)
        key[i] = (uint8_t)(0x5a + 11 * i);
    int ran = 0;
    for (size_t e = 0; e < vmenc_gcm_num_engines; e++) {
        const vmenc_gcm_engine *eng = &vmenc_gcm_engines[e];
        if (!eng->usable()) {
            if (env_lists("VMENC_TEST_AEAD_REQUIRE", eng->name))
                fail_msg("gcm %s is required here (VMENC_TEST_AEAD_REQUIRE) but cannot run", eng->name);
            print_message("gcm %s: not runnable on this CPU, skipped\n", eng->name);
            continue;
        }
        ran++;
        eng->init(&g_gk, key);
        collect_gcm_needles(key, nonce);
        static const char *const names[] = {"key set-up", "seal", "open"};
        const size_t lens[] = {1000, sizeof(g_gcm_in)};
        for (int what = 0; what < 3; what++)
            for (size_t l = 0; l < 2; l++) {
                paint();
                gcm_call(eng, what, key, nonce, lens[l]);
                g_dump();
                size_t at = 0, used = 0;
                const char *hit = find_needle(g_regs, g_regs_len, &at);
                if (hit != NULL)
                    fail_msg("gcm %s %s (%zu bytes): %s in vector register %zu after return", eng->name,
                             names[what], lens[l], hit, at / g_reg_bytes);
                if (!g_check_stack)
                    continue;
                hit = scan((uintptr_t)__builtin_frame_address(0), &at, &used);
                if (hit != NULL)
                    fail_msg("gcm %s %s (%zu bytes): %s on the stack, %zu bytes into the scanned region (%zu "
                             "bytes written)",
                             eng->name, names[what], lens[l], hit, at, used);
            }
        vmenc_memzero(&g_gk, sizeof(g_gk));
    }
    /* printed after the loop: printf between engines (glibc's EVEX string
     * code) changes zmm16-31, which the next engine's scan reads */
    for (size_t e = 0; e < vmenc_gcm_num_engines; e++)
        if (vmenc_gcm_engines[e].usable())
            print_message("gcm %s: residue checked; registers: %zu bytes each call; stack: %s\n",
                          vmenc_gcm_engines[e].name, g_regs_len,
                          g_check_stack ? "scanned" : "skipped (unoptimised or ASan build)");
    if (ran == 0)
        skip();
}

int main(void) {
    if (vmenc_init() != VMENC_OK)
        return 1;
    g_dump = __builtin_cpu_supports("avx512f") ? dump_zmm
             : __builtin_cpu_supports("avx") ? dump_ymm
                                             : dump_xmm;
#if defined(__OPTIMIZE__) && !defined(RESIDUE_ASAN)
    g_check_stack = true;
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_residue),
        cmocka_unit_test(test_the_check_can_fail),
        cmocka_unit_test(test_gcm_no_residue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
