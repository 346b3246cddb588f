/*
 * lib/xts/xts_impl.h - private interface between the XTS front end (xts.c)
 * and its backends (portable.c, aesni.c, vaes_avx2.c, vaes_avx512.c).
 *
 * A backend is a table of two functions chosen once per context. Each ISA
 * backend lives in its own translation unit compiled with its own target
 * flags; xts.c only calls into one after checking the CPU at run time.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_XTS_IMPL_H
#define VMENC_LIB_XTS_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"
#include "vmenc/xts.h"

#define VMENC_XTS_MAX_ROUNDS 14
#define VMENC_XTS_MAX_UNIT (1u << 24) /* largest data unit for the _unit calls */

/* The secret part of a context. The hardware backends use the expanded round
 * keys; the portable backend uses |raw| (OpenSSL expands it per call), which
 * shares their storage: 720 bytes either way, so a context and its schedule
 * fit one 768-byte slot of the secure pool. */
typedef struct vmenc_xts_sched {
    union {
        struct {
            uint8_t ek[VMENC_XTS_MAX_ROUNDS + 1][16]; /* data key, encryption order */
            uint8_t dk[VMENC_XTS_MAX_ROUNDS + 1][16]; /* data key, equivalent inverse cipher */
            uint8_t tk[VMENC_XTS_MAX_ROUNDS + 1][16]; /* tweak key, encryption order */
        };
        uint8_t raw[VMENC_XTS_KEYBYTES_256]; /* key1 || key2 (portable only) */
    };
} vmenc_xts_sched;

typedef struct vmenc_xts_backend {
    const char *name;
    uint32_t cpu_required; /* VMENC_CPU_* bits that must all be present */
    /* sectors en/decrypts |num_sectors| whole sectors of x->sector_size bytes
     * starting at sector number |first| (wrapping mod 2^64). Arguments are
     * validated by xts.c. */
    vmenc_status (*sectors)(const struct vmenc_xts *x, bool enc, uint64_t first, const uint8_t *in,
                            uint8_t *out, size_t num_sectors);
    /* unit en/decrypts one data unit of 16 <= len <= VMENC_XTS_MAX_UNIT bytes
     * with a raw 16-byte tweak, stealing ciphertext for a partial last block. */
    vmenc_status (*unit)(const struct vmenc_xts *x, bool enc, const uint8_t tweak[16],
                         const uint8_t *in, uint8_t *out, size_t len);
} vmenc_xts_backend;

/* A context is one block of secure memory (vmenc_secure_alloc: a slot of
 * the pooled allocator): this header, then the key schedule. Nothing in it
 * changes after vmenc_xts_new. */
struct vmenc_xts {
    const vmenc_xts_backend *backend;
    const vmenc_xts_sched *sched; /* &((vmenc_xts_block *)x)->sched */
    void *evp_cipher;             /* EVP_CIPHER * (portable backend only) */
    uint32_t sector_size;
    uint32_t rounds;              /* 10 (XTS-AES-128) or 14 (XTS-AES-256) */
    uint32_t key_len;             /* 32 or 64 */
    uint32_t sector_shift;        /* log2(sector_size): no division per call */
};

typedef struct vmenc_xts_block {
    struct vmenc_xts x;
    vmenc_xts_sched sched __attribute__((aligned(16))); /* aesni reads round keys as vectors */
} vmenc_xts_block;
_Static_assert(sizeof(vmenc_xts_block) <= 768, "a context must fit a 768-byte pool slot");

/* Backends, best first in vmenc_xts_backends[] (xts.c). */
VMENC_INTERNAL extern const vmenc_xts_backend vmenc_xts_backend_vaes_avx512;
VMENC_INTERNAL extern const vmenc_xts_backend vmenc_xts_backend_vaes_avx2;
VMENC_INTERNAL extern const vmenc_xts_backend vmenc_xts_backend_aesni;
VMENC_INTERNAL extern const vmenc_xts_backend vmenc_xts_backend_portable;

/* aes_keysched.c (AES-NI): expand a 16- or 32-byte AES key into |ek| (11 or
 * 15 round keys), and derive the decryption schedule for aesdec. */
VMENC_INTERNAL void vmenc_aesni_expand_key(const uint8_t *key, size_t key_bytes,
                                           uint8_t ek[VMENC_XTS_MAX_ROUNDS + 1][16]);
VMENC_INTERNAL void vmenc_aesni_invert_key(const uint8_t ek[VMENC_XTS_MAX_ROUNDS + 1][16],
                                           unsigned rounds,
                                           uint8_t dk[VMENC_XTS_MAX_ROUNDS + 1][16]);

/* portable.c: set up / release the OpenSSL cipher object of a context. */
VMENC_INTERNAL vmenc_status vmenc_xts_portable_init(struct vmenc_xts *x);
VMENC_INTERNAL void vmenc_xts_portable_cleanup(struct vmenc_xts *x);

/* vmenc_xts_new_internal is vmenc_xts_new_impl with the equal-halves check
 * optional. Only the tests use |allow_equal_halves| = true, to run IEEE 1619
 * vector 1 (whose key halves are both zero) through every backend. */
VMENC_INTERNAL vmenc_status vmenc_xts_new_internal(const uint8_t *key, size_t key_len,
                                                   uint32_t sector_size, const char *impl,
                                                   bool allow_equal_halves, vmenc_xts **out);

/* vmenc_xts_setup fills a caller-provided block for |backend| (no
 * argument checks, no self-test): shared by vmenc_xts_new_internal and the
 * self-test, which runs on a stack block with a public test key. Undo with
 * vmenc_xts_teardown (wipes). */
VMENC_INTERNAL vmenc_status vmenc_xts_setup(vmenc_xts_block *blk, const vmenc_xts_backend *backend,
                                            const uint8_t *key, size_t key_len,
                                            uint32_t sector_size);
VMENC_INTERNAL void vmenc_xts_teardown(vmenc_xts_block *blk);

/* ---- self-test (selftest.c) ----------------------------------------------
 * vmenc_xts_selftest_run runs the known-answer test on |backend| (both key
 * sizes, both directions, a multi-sector call across sector 2^64-1, a
 * ciphertext-stealing unit): VMENC_OK or VMENC_E_SELFTEST. */
VMENC_INTERNAL vmenc_status vmenc_xts_selftest_run(const vmenc_xts_backend *backend);

/* ---- test-only hooks (xts.c) ----------------------------------------------
 * For tests/test_xts_selftest.c, to inject a faulty backend; not thread-safe
 * against concurrent context creation, and not exported from the shared
 * library. vmenc_xts_test_replace_backend puts |replacement| in the table
 * slot of the backend named |name| (NULL restores the original) and forgets
 * that slot's self-test result; returns false for an unknown name.
 * vmenc_xts_selftest_cost_ns reports what the self-test of |name| cost in
 * this process (0 if it has not run). */
VMENC_INTERNAL bool vmenc_xts_test_replace_backend(const char *name,
                                                   const vmenc_xts_backend *replacement);
VMENC_INTERNAL uint64_t vmenc_xts_selftest_cost_ns(const char *name);

#endif /* VMENC_LIB_XTS_IMPL_H */
