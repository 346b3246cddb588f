/*
 * lib/core/internal.h - private helpers every vmenc layer uses: guard
 * macros, the bounded read cursor (vmenc_cbs), the writer with a sticky error
 * bit (vmenc_cbb), the owning secret type (vmenc_secret), clocks and CPU
 * features. Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_CORE_INTERNAL_H
#define VMENC_LIB_CORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmenc/common.h"
#include "vmenc/core.h"

/* ---- guard macros (s2n style): keep the happy path straight ---------- */

#define VMENC_GUARD(expr)                          \
    do {                                           \
        vmenc_status vmenc_guard_s_ = (expr);      \
        if (vmenc_guard_s_ != VMENC_OK)            \
            return vmenc_guard_s_;                 \
    } while (0)

#define VMENC_ENSURE(cond, err)                    \
    do {                                           \
        if (!(cond))                               \
            return (err);                          \
    } while (0)

#define VMENC_ENSURE_REF(ptr) VMENC_ENSURE((ptr) != NULL, VMENC_E_INVALID_ARG)

/* Jump-to-cleanup variants: set |rv| and goto |label|. */
#define VMENC_GUARD_GOTO(rv, expr, label)          \
    do {                                           \
        (rv) = (expr);                             \
        if ((rv) != VMENC_OK)                      \
            goto label;                            \
    } while (0)

#define VMENC_ENSURE_GOTO(rv, cond, err, label)    \
    do {                                           \
        if (!(cond)) {                             \
            (rv) = (err);                          \
            goto label;                            \
        }                                          \
    } while (0)

#define VMENC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Library-internal functions are hidden by -fvisibility=hidden already; this
 * documents intent. */
#define VMENC_INTERNAL __attribute__((visibility("hidden")))

/* ---- init ------------------------------------------------------------- */

/* vmenc_ensure_init runs vmenc_init() once; cheap after the first call. */
VMENC_INTERNAL vmenc_status vmenc_ensure_init(void);

/* ---- bounded read cursor (BoringSSL CBS style) ------------------------ */
/* A vmenc_cbs never owns its bytes. Every getter returns true on success and
 * leaves the cursor unchanged on failure. Multi-byte integers are big-endian
 * unless the name ends in _le. */
typedef struct vmenc_cbs {
    const uint8_t *data;
    size_t len;
} vmenc_cbs;

VMENC_INTERNAL void vmenc_cbs_init(vmenc_cbs *cbs, const uint8_t *data, size_t len);
VMENC_INTERNAL size_t vmenc_cbs_len(const vmenc_cbs *cbs);
VMENC_INTERNAL const uint8_t *vmenc_cbs_data(const vmenc_cbs *cbs);
VMENC_INTERNAL bool vmenc_cbs_skip(vmenc_cbs *cbs, size_t len);
VMENC_INTERNAL bool vmenc_cbs_get_u8(vmenc_cbs *cbs, uint8_t *out);
VMENC_INTERNAL bool vmenc_cbs_get_u16(vmenc_cbs *cbs, uint16_t *out);
VMENC_INTERNAL bool vmenc_cbs_get_u24(vmenc_cbs *cbs, uint32_t *out);
VMENC_INTERNAL bool vmenc_cbs_get_u32(vmenc_cbs *cbs, uint32_t *out);
VMENC_INTERNAL bool vmenc_cbs_get_u64(vmenc_cbs *cbs, uint64_t *out);
VMENC_INTERNAL bool vmenc_cbs_get_u16_le(vmenc_cbs *cbs, uint16_t *out);
VMENC_INTERNAL bool vmenc_cbs_get_u32_le(vmenc_cbs *cbs, uint32_t *out);
VMENC_INTERNAL bool vmenc_cbs_get_u64_le(vmenc_cbs *cbs, uint64_t *out);
/* vmenc_cbs_get_bytes sets |out| to a child cursor over the next |len| bytes. */
VMENC_INTERNAL bool vmenc_cbs_get_bytes(vmenc_cbs *cbs, vmenc_cbs *out, size_t len);
/* vmenc_cbs_copy_bytes copies the next |len| bytes to |out|. */
VMENC_INTERNAL bool vmenc_cbs_copy_bytes(vmenc_cbs *cbs, uint8_t *out, size_t len);
/* Length-prefixed child cursors (prefix big-endian). */
VMENC_INTERNAL bool vmenc_cbs_get_u8_length_prefixed(vmenc_cbs *cbs, vmenc_cbs *out);
VMENC_INTERNAL bool vmenc_cbs_get_u16_length_prefixed(vmenc_cbs *cbs, vmenc_cbs *out);
VMENC_INTERNAL bool vmenc_cbs_get_u32_length_prefixed(vmenc_cbs *cbs, vmenc_cbs *out);
/* vmenc_cbs_peek_u8 reads without consuming. */
VMENC_INTERNAL bool vmenc_cbs_peek_u8(const vmenc_cbs *cbs, uint8_t *out);
/* vmenc_cbs_mem_equal compares the remaining bytes in constant time. */
VMENC_INTERNAL bool vmenc_cbs_mem_equal(const vmenc_cbs *cbs, const uint8_t *data, size_t len);

/* ---- writer with a sticky error bit (CBB style) ----------------------- */
/* A growable buffer (heap or, with secure = true, libsodium secure memory)
 * or a fixed caller buffer. After the first failure every add is a no-op and
 * vmenc_cbb_finish reports the error, so callers may check once at the end.
 * vmenc_cbb_cleanup wipes and frees. */
typedef struct vmenc_cbb {
    uint8_t *buf;
    size_t len;
    size_t cap;
    size_t max;      /* hard upper bound on len (VMENC_E_TOO_LARGE past it) */
    bool fixed;      /* buf belongs to the caller; cannot grow */
    bool secure;     /* buf from sodium_malloc */
    vmenc_status err;
} vmenc_cbb;

VMENC_INTERNAL vmenc_status vmenc_cbb_init(vmenc_cbb *cbb, size_t initial_cap);
VMENC_INTERNAL vmenc_status vmenc_cbb_init_secure(vmenc_cbb *cbb, size_t initial_cap);
VMENC_INTERNAL void vmenc_cbb_init_fixed(vmenc_cbb *cbb, uint8_t *buf, size_t cap);
VMENC_INTERNAL void vmenc_cbb_set_max(vmenc_cbb *cbb, size_t max);
VMENC_INTERNAL bool vmenc_cbb_ok(const vmenc_cbb *cbb);
VMENC_INTERNAL vmenc_status vmenc_cbb_status(const vmenc_cbb *cbb);
VMENC_INTERNAL void vmenc_cbb_add_u8(vmenc_cbb *cbb, uint8_t v);
VMENC_INTERNAL void vmenc_cbb_add_u16(vmenc_cbb *cbb, uint16_t v);
VMENC_INTERNAL void vmenc_cbb_add_u24(vmenc_cbb *cbb, uint32_t v);
VMENC_INTERNAL void vmenc_cbb_add_u32(vmenc_cbb *cbb, uint32_t v);
VMENC_INTERNAL void vmenc_cbb_add_u64(vmenc_cbb *cbb, uint64_t v);
VMENC_INTERNAL void vmenc_cbb_add_u16_le(vmenc_cbb *cbb, uint16_t v);
VMENC_INTERNAL void vmenc_cbb_add_u32_le(vmenc_cbb *cbb, uint32_t v);
VMENC_INTERNAL void vmenc_cbb_add_u64_le(vmenc_cbb *cbb, uint64_t v);
VMENC_INTERNAL void vmenc_cbb_add_bytes(vmenc_cbb *cbb, const uint8_t *data, size_t len);
VMENC_INTERNAL void vmenc_cbb_add_zeros(vmenc_cbb *cbb, size_t len);
/* vmenc_cbb_add_space reserves |len| bytes and returns a pointer to them in
 * |*out| (valid until the next add), or NULL after an error. */
VMENC_INTERNAL void vmenc_cbb_add_space(vmenc_cbb *cbb, uint8_t **out, size_t len);
/* Length prefixes: begin reserves a big-endian prefix of |width| (1, 2, 3 or
 * 4) bytes and returns its offset; end fills it with the bytes written
 * since (VMENC_E_TOO_LARGE if they do not fit). */
VMENC_INTERNAL size_t vmenc_cbb_begin_prefix(vmenc_cbb *cbb, unsigned width);
VMENC_INTERNAL void vmenc_cbb_end_prefix(vmenc_cbb *cbb, size_t mark, unsigned width);
/* Patch |len| bytes already written at |offset|. */
VMENC_INTERNAL void vmenc_cbb_patch(vmenc_cbb *cbb, size_t offset, const uint8_t *data, size_t len);
VMENC_INTERNAL size_t vmenc_cbb_len(const vmenc_cbb *cbb);
VMENC_INTERNAL const uint8_t *vmenc_cbb_data(const vmenc_cbb *cbb);
/* vmenc_cbb_finish hands the buffer to the caller (|*out| to be released
 * with free(), or vmenc_secure_free() for a secure cbb; a fixed cbb returns
 * its own buffer). On error returns the sticky status and cleans up. */
VMENC_INTERNAL vmenc_status vmenc_cbb_finish(vmenc_cbb *cbb, uint8_t **out, size_t *out_len);
VMENC_INTERNAL void vmenc_cbb_cleanup(vmenc_cbb *cbb);

/* ---- secure memory ---------------------------------------------------- */
/* vmenc_secure_alloc: zeroed libsodium sodium_malloc region (guard pages,
 * canary, mlock, MADV_DONTDUMP; sodium_mprotect_* work on it).
 * vmenc_secure_free wipes and frees it, or a block from
 * vmenc_secure_alloc_pooled; NULL is fine. */
VMENC_INTERNAL void *vmenc_secure_alloc(size_t len);
VMENC_INTERNAL void vmenc_secure_free(void *p);

/* vmenc_secret: the one owning type for secret bytes. */
typedef struct vmenc_secret {
    uint8_t *bytes;  /* sodium_malloc'd, len bytes */
    size_t len;
} vmenc_secret;

/* vmenc_secret_new allocates |len| zeroed secure bytes (len > 0). */
VMENC_INTERNAL vmenc_status vmenc_secret_new(size_t len, vmenc_secret **out);
/* vmenc_secret_from copies |len| bytes into a new secret. */
VMENC_INTERNAL vmenc_status vmenc_secret_from(const uint8_t *data, size_t len, vmenc_secret **out);
VMENC_INTERNAL vmenc_status vmenc_secret_dup(const vmenc_secret *s, vmenc_secret **out);
/* Make the bytes read-only / writable (sodium_mprotect_*) */
VMENC_INTERNAL void vmenc_secret_readonly(vmenc_secret *s);
VMENC_INTERNAL void vmenc_secret_free(vmenc_secret *s);

/* Constant-time comparison: true if equal. */
VMENC_INTERNAL bool vmenc_ct_equal(const void *a, const void *b, size_t len);

/* ---- clocks ------------------------------------------------------------ */
VMENC_INTERNAL uint64_t vmenc_now_monotonic_ns(void);
VMENC_INTERNAL uint64_t vmenc_now_monotonic_ms(void);
/* Milliseconds since the Unix epoch, UTC. */
VMENC_INTERNAL uint64_t vmenc_now_realtime_ms(void);

/* ---- CPU features -------------------------------------------------------- */
/* vmenc_cpu_detect runs CPUID/XGETBV; vmenc_cpu_features() caches it. */
VMENC_INTERNAL uint32_t vmenc_cpu_detect(void);

/* ---- UTF-8 (utf8.c) -------------------------------------------------------- */
/* vmenc_utf8_seq_len returns the length (1..4) of the well-formed UTF-8
 * sequence at |p| (at most |len| bytes), or 0: strict RFC 3629, no overlong
 * forms, no surrogates, nothing above U+10FFFF. */
VMENC_INTERNAL size_t vmenc_utf8_seq_len(const uint8_t *p, size_t len);
/* vmenc_utf8_valid: is all of |s| strict UTF-8? */
VMENC_INTERNAL bool vmenc_utf8_valid(const uint8_t *s, size_t len);

/* ---- encoding helpers ---------------------------------------------------- */
static inline void vmenc_store_u32_le(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void vmenc_store_u64_le(uint8_t *p, uint64_t v) {
    vmenc_store_u32_le(p, (uint32_t)v); vmenc_store_u32_le(p + 4, (uint32_t)(v >> 32));
}
static inline uint64_t vmenc_load_u64_le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline void vmenc_store_u32_be(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline uint32_t vmenc_load_u32_be(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* ---- pooled secure memory ---------------------------------------------------
 * For the many small long-lived secrets (XTS contexts, DEKs, KEKs): a slot
 * of the pooled allocator below when len <= VMENC_SECPOOL_MAX_SLOT, else (or
 * when the pool cannot grow) a sodium_malloc region. Free with
 * vmenc_secure_free / vmenc_secret_free. Never pass pooled bytes to
 * sodium_mprotect_*: a slot shares its pages with other keys. */
VMENC_INTERNAL void *vmenc_secure_alloc_pooled(size_t len);
/* vmenc_secret_new_pooled is vmenc_secret_new with pooled bytes;
 * vmenc_secret_readonly does nothing to them. */
VMENC_INTERNAL vmenc_status vmenc_secret_new_pooled(size_t len, vmenc_secret **out);

/* ---- pooled secure allocator (secpool.c) ---------------------------------
 * vmenc_secure_alloc takes blocks of up to VMENC_SECPOOL_MAX_SLOT bytes from
 * here: slots in mlocked (where RLIMIT_MEMLOCK allows), MADV_DONTDUMP slabs
 * with guard pages around each slab, wiped on free and poisoned for ASan
 * while free. Pooled bytes cannot be made read-only per allocation. All
 * functions are thread-safe; callers normally use vmenc_secure_alloc_pooled
 * and vmenc_secure_free, not these. */
#define VMENC_SECPOOL_MAX_SLOT 4096u

/* vmenc_secpool_alloc returns a zeroed slot of at least |len| bytes (16-byte
 * aligned; 64-byte aligned for len >= 64), or NULL if len is 0 or too large
 * or the pool cannot grow. */
VMENC_INTERNAL void *vmenc_secpool_alloc(size_t len);
/* vmenc_secpool_free wipes and releases |p| if it is pool memory and
 * returns true; returns false (doing nothing) for any other pointer. */
VMENC_INTERNAL bool vmenc_secpool_free(void *p);
/* vmenc_secpool_owns tells whether |p| lies in a slab of the pool. */
VMENC_INTERNAL bool vmenc_secpool_owns(const void *p);

typedef struct vmenc_secpool_stats {
    size_t reserved_bytes;  /* address space reserved for slabs (not memory) */
    size_t slab_bytes;      /* usable bytes per slab (guard pages excluded) */
    size_t num_slabs;       /* slabs mapped now */
    size_t bytes_locked;    /* slab bytes mlocked */
    size_t bytes_unlocked;  /* slab bytes mlock refused (RLIMIT_MEMLOCK) */
    size_t live_slots;      /* slots handed out */
    size_t live_bytes;      /* their slot sizes added up */
    uint64_t num_fallbacks; /* allocations the pool could not serve */
} vmenc_secpool_stats;

/* vmenc_secpool_stats_get fills |out| with a snapshot (counters may be
 * mutually inconsistent while other threads allocate). */
VMENC_INTERNAL void vmenc_secpool_stats_get(vmenc_secpool_stats *out);

#endif /* VMENC_LIB_CORE_INTERNAL_H */
