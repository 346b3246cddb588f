/*
 * lib/xts/xts.c - the public XTS-AES API: argument checks, key setup into
 * secure memory, and the choice of backend (stored in the context, never in
 * a global).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "xts/xts_impl.h"

/* Best first: the automatic choice is the first one the CPU can run that
 * passed its self-test. Mutable only through the test hook below. */
static const vmenc_xts_backend *const builtin[] = {
    &vmenc_xts_backend_vaes_avx512,
    &vmenc_xts_backend_vaes_avx2,
    &vmenc_xts_backend_aesni,
    &vmenc_xts_backend_portable,
};
#define NUM_BACKENDS VMENC_ARRAY_LEN(builtin)
static const vmenc_xts_backend *backends[NUM_BACKENDS] = {
    &vmenc_xts_backend_vaes_avx512,
    &vmenc_xts_backend_vaes_avx2,
    &vmenc_xts_backend_aesni,
    &vmenc_xts_backend_portable,
};

/* Self-test state per table slot: a backend is trusted only after its
 * known-answer test passed in this process. The first caller runs the test
 * under |selftest_mu|; everyone after reads the published result with one
 * acquire load. */
enum { SELFTEST_UNTESTED = 0, SELFTEST_PASSED = 1, SELFTEST_FAILED = 2 };
static _Atomic int selftest_state[NUM_BACKENDS];
static _Atomic uint64_t selftest_ns[NUM_BACKENDS];
static pthread_mutex_t selftest_mu = PTHREAD_MUTEX_INITIALIZER;

size_t vmenc_xts_keybytes_256(void) { return VMENC_XTS_KEYBYTES_256; }
size_t vmenc_xts_keybytes_128(void) { return VMENC_XTS_KEYBYTES_128; }

static bool runnable(const vmenc_xts_backend *b) {
    return (vmenc_cpu_features() & b->cpu_required) == b->cpu_required;
}

/* selftest_passed runs slot |i|'s self-test once per process (callers have
 * checked that the CPU can run it). */
static bool selftest_passed(size_t i) {
    int st = atomic_load_explicit(&selftest_state[i], memory_order_acquire);
    if (st != SELFTEST_UNTESTED)
        return st == SELFTEST_PASSED;
    pthread_mutex_lock(&selftest_mu);
    st = atomic_load_explicit(&selftest_state[i], memory_order_relaxed);
    if (st == SELFTEST_UNTESTED) {
        uint64_t t0 = vmenc_now_monotonic_ns();
        st = vmenc_xts_selftest_run(backends[i]) == VMENC_OK ? SELFTEST_PASSED : SELFTEST_FAILED;
        atomic_store_explicit(&selftest_ns[i], vmenc_now_monotonic_ns() - t0, memory_order_relaxed);
        atomic_store_explicit(&selftest_state[i], st, memory_order_release);
    }
    pthread_mutex_unlock(&selftest_mu);
    return st == SELFTEST_PASSED;
}

/* find_backend resolves |impl| (NULL = automatic) to a runnable backend that
 * passed its self-test. Automatic choice skips a failing backend; a named
 * one that fails is VMENC_E_SELFTEST, never a silent substitute. */
static vmenc_status find_backend(const char *impl, const vmenc_xts_backend **out) {
    for (size_t i = 0; i < NUM_BACKENDS; i++) {
        const vmenc_xts_backend *b = backends[i];
        if (impl == NULL) {
            if (runnable(b) && selftest_passed(i)) {
                *out = b;
                return VMENC_OK;
            }
        } else if (strcmp(impl, b->name) == 0) {
            VMENC_ENSURE(runnable(b), VMENC_E_CPU_UNSUPPORTED);
            VMENC_ENSURE(selftest_passed(i), VMENC_E_SELFTEST);
            *out = b;
            return VMENC_OK;
        }
    }
    /* Only a named lookup, or every backend failing its self-test (the
     * portable one included: OpenSSL itself is broken), gets here. */
    return impl == NULL ? VMENC_E_SELFTEST : VMENC_E_UNKNOWN_IMPL;
}

vmenc_status vmenc_xts_impl_available(const char *impl) {
    VMENC_ENSURE_REF(impl);
    VMENC_GUARD(vmenc_ensure_init());
    const vmenc_xts_backend *b = NULL;
    return find_backend(impl, &b);
}

bool vmenc_xts_test_replace_backend(const char *name, const vmenc_xts_backend *replacement) {
    for (size_t i = 0; i < NUM_BACKENDS; i++) {
        if (strcmp(builtin[i]->name, name) != 0)
            continue;
        pthread_mutex_lock(&selftest_mu);
        backends[i] = replacement != NULL ? replacement : builtin[i];
        atomic_store_explicit(&selftest_ns[i], 0, memory_order_relaxed);
        atomic_store_explicit(&selftest_state[i], SELFTEST_UNTESTED, memory_order_release);
        pthread_mutex_unlock(&selftest_mu);
        return true;
    }
    return false;
}

uint64_t vmenc_xts_selftest_cost_ns(const char *name) {
    for (size_t i = 0; i < NUM_BACKENDS; i++)
        if (strcmp(builtin[i]->name, name) == 0)
            return atomic_load_explicit(&selftest_ns[i], memory_order_relaxed);
    return 0;
}

static bool valid_sector_size(uint32_t s) {
    return s >= VMENC_XTS_MIN_SECTOR && s <= VMENC_XTS_MAX_SECTOR && (s & (s - 1)) == 0;
}

vmenc_status vmenc_xts_setup(vmenc_xts_block *blk, const vmenc_xts_backend *backend,
                             const uint8_t *key, size_t key_len, uint32_t sector_size) {
    vmenc_xts *x = &blk->x;
    vmenc_xts_sched *s = &blk->sched;
    const size_t half = key_len / 2;
    x->backend = backend;
    x->sector_size = sector_size;
    x->sector_shift = (uint32_t)__builtin_ctz(sector_size); /* a power of two */
    x->key_len = (uint32_t)key_len;
    x->rounds = key_len == VMENC_XTS_KEYBYTES_256 ? 14 : 10;
    x->sched = s;
    if (backend->cpu_required == 0) { /* portable: OpenSSL expands the raw key */
        memcpy(s->raw, key, key_len);
        return vmenc_xts_portable_init(x);
    }
    vmenc_aesni_expand_key(key, half, s->ek);
    vmenc_aesni_invert_key(s->ek, x->rounds, s->dk);
    vmenc_aesni_expand_key(key + half, half, s->tk);
    return VMENC_OK;
}

void vmenc_xts_teardown(vmenc_xts_block *blk) {
    if (blk->x.evp_cipher != NULL)
        vmenc_xts_portable_cleanup(&blk->x);
    vmenc_memzero(blk, sizeof(*blk));
}

void vmenc_xts_free(vmenc_xts *x) {
    if (x == NULL)
        return;
    vmenc_xts_teardown((vmenc_xts_block *)x);
    vmenc_secure_free(x); /* wipes the slot again and returns it to the pool */
}

vmenc_status vmenc_xts_new_internal(const uint8_t *key, size_t key_len, uint32_t sector_size,
                                    const char *impl, bool allow_equal_halves, vmenc_xts **out) {
    VMENC_ENSURE_REF(key);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(key_len == VMENC_XTS_KEYBYTES_256 || key_len == VMENC_XTS_KEYBYTES_128,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(valid_sector_size(sector_size), VMENC_E_BAD_SECTOR_SIZE);
    const size_t half = key_len / 2;
    /* IEEE 1619-2018 and SP 800-38E require key1 != key2; equal halves
     * collapse XTS to a weaker mode. The comparison is constant-time. */
    VMENC_ENSURE(allow_equal_halves || !vmenc_ct_equal(key, key + half, half), VMENC_E_WEAK_KEY);
    VMENC_GUARD(vmenc_ensure_init());
    const vmenc_xts_backend *backend = NULL;
    VMENC_GUARD(find_backend(impl, &backend));

    /* One zeroed block of secure memory holds the context and its key
     * schedule: one pool slot, no ordinary heap. */
    vmenc_xts_block *blk = vmenc_secure_alloc_pooled(sizeof(*blk));
    if (blk == NULL)
        return VMENC_E_NOMEM;
    /* The aesni backend reads the round keys in place as aligned vectors. */
    if (((uintptr_t)&blk->sched & 15u) != 0) {
        vmenc_secure_free(blk);
        return VMENC_E_INTERNAL;
    }
    vmenc_status rv = vmenc_xts_setup(blk, backend, key, key_len, sector_size);
    if (rv != VMENC_OK) {
        vmenc_xts_free(&blk->x);
        return rv;
    }
    *out = &blk->x;
    return VMENC_OK;
}

vmenc_status vmenc_xts_new_impl(const uint8_t *key, size_t key_len, uint32_t sector_size,
                                const char *impl, vmenc_xts **out) {
    return vmenc_xts_new_internal(key, key_len, sector_size, impl, false, out);
}

vmenc_status vmenc_xts_new(const uint8_t *key, size_t key_len, uint32_t sector_size,
                           vmenc_xts **out) {
    /* secure_getenv: a setuid host does not let its caller pick the code. An
     * empty value means "not set". */
    const char *impl = secure_getenv("VMENC_XTS_IMPL");
    if (impl != NULL && impl[0] == '\0')
        impl = NULL;
    return vmenc_xts_new_internal(key, key_len, sector_size, impl, false, out);
}

/* Buffers may be the same (in place) or disjoint, never partly overlapping. */
static bool bad_overlap(const uint8_t *in, const uint8_t *out, size_t len) {
    uintptr_t a = (uintptr_t)in, b = (uintptr_t)out;
    return a != b && (a < b ? b - a < len : a - b < len);
}

/* check_sectors is every check of a sector call after |x| itself. */
static vmenc_status check_sectors(const vmenc_xts *x, const uint8_t *in, const uint8_t *out,
                                  size_t len) {
    VMENC_ENSURE_REF(in);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(len > 0 && (len & (x->sector_size - 1)) == 0, VMENC_E_BAD_LENGTH);
    VMENC_ENSURE(!bad_overlap(in, out, len), VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

static vmenc_status crypt_sectors(const vmenc_xts *x, bool enc, uint64_t first_sector,
                                  const uint8_t *in, uint8_t *out, size_t len) {
    VMENC_ENSURE_REF(x);
    VMENC_GUARD(check_sectors(x, in, out, len));
    return x->backend->sectors(x, enc, first_sector, in, out, len >> x->sector_shift);
}

/* crypt_iov checks every entry first, so a bad entry anywhere fails the call
 * before any output is written; then runs each entry through the same
 * backend call as a single vmenc_xts_encrypt/decrypt. The point of the
 * vectored call is one crossing of a language boundary (ctypes, cgo) per
 * batch of I/Os, not a different crypto path. */
static vmenc_status crypt_iov(const vmenc_xts *x, bool enc, const vmenc_xts_iov *iov,
                              size_t num_iov) {
    VMENC_ENSURE_REF(x);
    VMENC_ENSURE(iov != NULL || num_iov == 0, VMENC_E_INVALID_ARG);
    for (size_t i = 0; i < num_iov; i++)
        VMENC_GUARD(check_sectors(x, iov[i].in, iov[i].out, iov[i].len));
    for (size_t i = 0; i < num_iov; i++)
        VMENC_GUARD(x->backend->sectors(x, enc, iov[i].first_sector, iov[i].in, iov[i].out,
                                        iov[i].len >> x->sector_shift));
    return VMENC_OK;
}

vmenc_status vmenc_xts_encrypt_iov(const vmenc_xts *x, const vmenc_xts_iov *iov, size_t num_iov) {
    return crypt_iov(x, true, iov, num_iov);
}

vmenc_status vmenc_xts_decrypt_iov(const vmenc_xts *x, const vmenc_xts_iov *iov, size_t num_iov) {
    return crypt_iov(x, false, iov, num_iov);
}

vmenc_status vmenc_xts_encrypt(const vmenc_xts *x, uint64_t first_sector, const uint8_t *in,
                               uint8_t *out, size_t len) {
    return crypt_sectors(x, true, first_sector, in, out, len);
}

vmenc_status vmenc_xts_decrypt(const vmenc_xts *x, uint64_t first_sector, const uint8_t *in,
                               uint8_t *out, size_t len) {
    return crypt_sectors(x, false, first_sector, in, out, len);
}

static vmenc_status crypt_unit(const vmenc_xts *x, bool enc, const uint8_t tweak[16],
                               const uint8_t *in, uint8_t *out, size_t len) {
    VMENC_ENSURE_REF(x);
    VMENC_ENSURE_REF(tweak);
    VMENC_ENSURE_REF(in);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(len >= 16 && len <= VMENC_XTS_MAX_UNIT, VMENC_E_BAD_LENGTH);
    VMENC_ENSURE(!bad_overlap(in, out, len), VMENC_E_INVALID_ARG);
    return x->backend->unit(x, enc, tweak, in, out, len);
}

vmenc_status vmenc_xts_encrypt_unit(const vmenc_xts *x, const uint8_t tweak[16], const uint8_t *in,
                                    uint8_t *out, size_t len) {
    return crypt_unit(x, true, tweak, in, out, len);
}

vmenc_status vmenc_xts_decrypt_unit(const vmenc_xts *x, const uint8_t tweak[16], const uint8_t *in,
                                    uint8_t *out, size_t len) {
    return crypt_unit(x, false, tweak, in, out, len);
}

const char *vmenc_xts_impl_name(const vmenc_xts *x) {
    return x == NULL ? "none" : x->backend->name;
}

uint32_t vmenc_xts_sector_size(const vmenc_xts *x) { return x == NULL ? 0 : x->sector_size; }
