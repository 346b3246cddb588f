/*
 * lib/xts/xts.c - the public XTS-AES API: argument checks, key setup into
 * secure memory, and the choice of backend (stored in the context, never in
 * a global).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdlib.h>
#include <string.h>

#include "xts/xts_impl.h"

/* Best first: the automatic choice is the first one the CPU can run. */
static const vmenc_xts_backend *const backends[] = {
    &vmenc_xts_backend_vaes_avx512,
    &vmenc_xts_backend_vaes_avx2,
    &vmenc_xts_backend_aesni,
    &vmenc_xts_backend_portable,
};

size_t vmenc_xts_keybytes_256(void) { return VMENC_XTS_KEYBYTES_256; }
size_t vmenc_xts_keybytes_128(void) { return VMENC_XTS_KEYBYTES_128; }

static bool runnable(const vmenc_xts_backend *b) {
    return (vmenc_cpu_features() & b->cpu_required) == b->cpu_required;
}

/* find_backend resolves |impl| (NULL = automatic) to a runnable backend. */
static vmenc_status find_backend(const char *impl, const vmenc_xts_backend **out) {
    for (size_t i = 0; i < VMENC_ARRAY_LEN(backends); i++) {
        const vmenc_xts_backend *b = backends[i];
        if (impl == NULL) {
            if (runnable(b)) {
                *out = b;
                return VMENC_OK;
            }
        } else if (strcmp(impl, b->name) == 0) {
            VMENC_ENSURE(runnable(b), VMENC_E_CPU_UNSUPPORTED);
            *out = b;
            return VMENC_OK;
        }
    }
    /* The portable backend always runs, so only a named lookup gets here. */
    return VMENC_E_UNKNOWN_IMPL;
}

vmenc_status vmenc_xts_impl_available(const char *impl) {
    VMENC_ENSURE_REF(impl);
    const vmenc_xts_backend *b = NULL;
    return find_backend(impl, &b);
}

static bool valid_sector_size(uint32_t s) {
    return s >= VMENC_XTS_MIN_SECTOR && s <= VMENC_XTS_MAX_SECTOR && (s & (s - 1)) == 0;
}

void vmenc_xts_free(vmenc_xts *x) {
    if (x == NULL)
        return;
    if (x->evp_cipher != NULL)
        vmenc_xts_portable_cleanup(x);
    vmenc_secret_free(x->secret); /* wipes the round keys */
    vmenc_memzero(x, sizeof(*x));
    free(x);
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

    vmenc_xts *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return VMENC_E_NOMEM;
    x->backend = backend;
    x->sector_size = sector_size;
    x->key_len = (uint32_t)key_len;
    x->rounds = key_len == VMENC_XTS_KEYBYTES_256 ? 14 : 10;
    vmenc_status rv = vmenc_secret_new(sizeof(vmenc_xts_sched), &x->secret);
    if (rv != VMENC_OK) {
        free(x);
        return rv;
    }
    vmenc_xts_sched *s = (vmenc_xts_sched *)x->secret->bytes;
    /* The aesni backend uses the round keys in place as aligned 16-byte
     * vectors. sodium_malloc ends the block at a page boundary, so a size
     * that is a multiple of 16 gives a 16-byte aligned block. */
    _Static_assert(sizeof(vmenc_xts_sched) % 16 == 0, "schedule size must keep 16-byte alignment");
    if (((uintptr_t)s & 15u) != 0) {
        vmenc_xts_free(x);
        return VMENC_E_INTERNAL;
    }
    if (backend == &vmenc_xts_backend_portable) {
        memcpy(s->raw, key, key_len);
        rv = vmenc_xts_portable_init(x);
    } else {
        vmenc_aesni_expand_key(key, half, s->ek);
        vmenc_aesni_invert_key(s->ek, x->rounds, s->dk);
        vmenc_aesni_expand_key(key + half, half, s->tk);
    }
    if (rv != VMENC_OK) {
        vmenc_xts_free(x);
        return rv;
    }
    /* From here on nobody writes the key schedule: a stray write faults. */
    vmenc_secret_readonly(x->secret);
    x->sched = s;
    *out = x;
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

static vmenc_status crypt_sectors(const vmenc_xts *x, bool enc, uint64_t first_sector,
                                  const uint8_t *in, uint8_t *out, size_t len) {
    VMENC_ENSURE_REF(x);
    VMENC_ENSURE_REF(in);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(len > 0 && len % x->sector_size == 0, VMENC_E_BAD_LENGTH);
    VMENC_ENSURE(!bad_overlap(in, out, len), VMENC_E_INVALID_ARG);
    return x->backend->sectors(x, enc, first_sector, in, out, len / x->sector_size);
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
