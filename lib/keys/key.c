/*
 * lib/keys/key.c - DEK and KEK objects: their bytes live only in libsodium
 * secure memory and are wiped on free. Also vmenc_buffer_free.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "keys/keys_impl.h"

size_t vmenc_dek_bytes(void) { return VMENC_DEK_BYTES; }
size_t vmenc_kek_bytes(void) { return VMENC_KEK_BYTES; }

/* ---- DEK -------------------------------------------------------------- */

/* halves_equal compares the two 32-byte halves of a DEK in constant time.
 * Not sodium_memcmp: its byte-wise volatile loop cost ~10% of an unwrap. The
 * accumulator goes through an empty asm so the compiler cannot turn the
 * loop into an early exit. */
static bool halves_equal(const uint8_t *k) {
    uint64_t acc = 0;
    for (size_t i = 0; i < VMENC_DEK_BYTES / 2; i += 8) {
        uint64_t a, b;
        memcpy(&a, k + i, 8);
        memcpy(&b, k + VMENC_DEK_BYTES / 2 + i, 8);
        acc |= a ^ b;
    }
    __asm__ volatile("" : "+r"(acc));
    return acc == 0;
}

/* vmenc_dek_check_bytes rejects a wrong length and a DEK whose two XTS
 * halves are equal (IEEE 1619 requires distinct data and tweak keys; equal
 * halves would also make an all-zero or copied-half key pass). The
 * comparison is constant time: the key is secret. */
vmenc_status vmenc_dek_check_bytes(const uint8_t *bytes, size_t len) {
    VMENC_ENSURE(bytes != NULL && len == VMENC_DEK_BYTES, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(!halves_equal(bytes), VMENC_E_WEAK_KEY);
    return VMENC_OK;
}

/* pooled_copy gives the bytes of |src| a home in the pooled secure
 * allocator: |src| itself when it is there already (*out_copy = NULL), else
 * a pooled copy in *out_copy. Callers free the copy on failure and the
 * original on success, so ownership moves only on success. DEKs and KEKs
 * (and so the key manager's cached KEKs) live in the pool because a host
 * holds hundreds of thousands of them; a sodium_malloc region each would
 * run out of memory mappings at about 16k. */
static vmenc_status pooled_copy(vmenc_secret *src, vmenc_secret **out_copy) {
    *out_copy = NULL;
    if (vmenc_secpool_owns(src->bytes))
        return VMENC_OK;
    VMENC_GUARD(vmenc_secret_new_pooled(src->len, out_copy));
    memcpy((*out_copy)->bytes, src->bytes, src->len);
    return VMENC_OK;
}

vmenc_status vmenc_dek_new_take_secret(vmenc_secret **secret, vmenc_dek **out) {
    VMENC_ENSURE(secret != NULL && *secret != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE((*secret)->len == VMENC_DEK_BYTES, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_dek_check_bytes((*secret)->bytes, (*secret)->len));
    vmenc_dek *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return VMENC_E_NOMEM;
    vmenc_secret *copy = NULL;
    vmenc_status rv = pooled_copy(*secret, &copy);
    if (rv != VMENC_OK) {
        free(d);
        return rv;
    }
    if (copy != NULL) {
        vmenc_secret_free(*secret); /* wipes the caller's region */
        *secret = copy;
    }
    d->secret = *secret;
    d->bytes = d->secret->bytes;
    vmenc_secret_readonly(d->secret); /* protects it when it is not pooled */
    *secret = NULL;
    *out = d;
    return VMENC_OK;
}

vmenc_status vmenc_dek_new_from_bytes(const uint8_t *bytes, size_t len, vmenc_dek **out) {
    VMENC_ENSURE_REF(out);
    VMENC_GUARD(vmenc_dek_check_bytes(bytes, len));
    vmenc_secret *s = NULL;
    VMENC_GUARD(vmenc_secret_new_pooled(len, &s));
    memcpy(s->bytes, bytes, len);
    vmenc_status rv = vmenc_dek_new_take_secret(&s, out);
    vmenc_secret_free(s);
    return rv;
}

vmenc_status vmenc_dek_generate(vmenc_dek **out) {
    VMENC_ENSURE_REF(out);
    VMENC_GUARD(vmenc_ensure_init());
    vmenc_secret *s = NULL;
    VMENC_GUARD(vmenc_secret_new_pooled(VMENC_DEK_BYTES, &s));
    /* Equal halves have probability 2^-256; draw again rather than ever
     * hand out a weak key. */
    vmenc_status rv = VMENC_E_RANDOM;
    for (int attempt = 0; attempt < 4 && rv != VMENC_OK; attempt++) {
        randombytes_buf(s->bytes, s->len);
        rv = vmenc_dek_new_take_secret(&s, out);
        if (rv != VMENC_OK && rv != VMENC_E_WEAK_KEY)
            break;
    }
    if (rv == VMENC_E_WEAK_KEY)
        rv = VMENC_E_RANDOM; /* four weak draws: the generator is broken */
    vmenc_secret_free(s);
    return rv;
}

vmenc_status vmenc_dek_adopt_slot(vmenc_keyslab *slab, uint8_t *slot, vmenc_dek **out) {
    VMENC_ENSURE(slab != NULL && slot != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_dek_check_bytes(slot, VMENC_DEK_BYTES));
    vmenc_dek *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return VMENC_E_NOMEM;
    d->bytes = slot;
    d->slab = slab;
    *out = d;
    return VMENC_OK;
}

vmenc_status vmenc_dek_equal(const vmenc_dek *a, const vmenc_dek *b) {
    VMENC_ENSURE(a != NULL && b != NULL, VMENC_E_INVALID_ARG);
    return vmenc_ct_equal(a->bytes, b->bytes, VMENC_DEK_BYTES) ? VMENC_OK : VMENC_E_KEY_MISMATCH;
}

const uint8_t *vmenc_dek_bytes_internal(const vmenc_dek *dek) { return dek != NULL ? dek->bytes : NULL; }

void vmenc_dek_free(vmenc_dek *dek) {
    if (dek == NULL)
        return;
    if (dek->slab != NULL)
        vmenc_keyslab_release(dek->slab, (uint8_t *)dek->bytes);
    vmenc_secret_free(dek->secret); /* wipes */
    free(dek);
}

/* ---- KEK -------------------------------------------------------------- */

/* ---- per-KEK GCM contexts (see keys_impl.h) ------------------------------- */

static vmenc_status gcm_pool_init(vmenc_gcm_pool *p, const EVP_CIPHER *gcm, const uint8_t *key, int enc) {
    if (pthread_mutex_init(&p->mu, NULL) != 0)
        return VMENC_E_NOMEM;
    p->mu_ready = true;
    p->tmpl = EVP_CIPHER_CTX_new();
    if (p->tmpl == NULL)
        return VMENC_E_NOMEM;
    return EVP_CipherInit_ex(p->tmpl, gcm, NULL, key, NULL, enc) == 1 ? VMENC_OK : VMENC_E_CRYPTO;
}

static void gcm_pool_cleanup(vmenc_gcm_pool *p) {
    for (unsigned i = 0; i < p->num_idle; i++)
        EVP_CIPHER_CTX_free(p->idle[i]); /* OpenSSL cleanses the key schedule */
    p->num_idle = 0;
    EVP_CIPHER_CTX_free(p->tmpl);
    p->tmpl = NULL;
    if (p->mu_ready)
        pthread_mutex_destroy(&p->mu);
    p->mu_ready = false;
}

EVP_CIPHER_CTX *vmenc_gcm_pool_take(const vmenc_gcm_pool *cp) {
    vmenc_gcm_pool *p = (vmenc_gcm_pool *)cp; /* only the guarded cache changes */
    EVP_CIPHER_CTX *c = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->num_idle > 0)
        c = p->idle[--p->num_idle];
    pthread_mutex_unlock(&p->mu);
    if (c != NULL)
        return c;
    c = EVP_CIPHER_CTX_new();
    if (c != NULL && EVP_CIPHER_CTX_copy(c, p->tmpl) != 1) {
        EVP_CIPHER_CTX_free(c);
        c = NULL;
    }
    return c;
}

void vmenc_gcm_pool_give(const vmenc_gcm_pool *cp, EVP_CIPHER_CTX *c) {
    vmenc_gcm_pool *p = (vmenc_gcm_pool *)cp;
    if (c == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    if (p->num_idle < VMENC_KEK_IDLE_CTX) {
        p->idle[p->num_idle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    EVP_CIPHER_CTX_free(c);
}

/* kek_prepare keys the GCM templates that wrap/unwrap use. */
static vmenc_status kek_prepare(vmenc_kek *k) {
    EVP_CIPHER *gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    if (gcm == NULL)
        return VMENC_E_CRYPTO;
    vmenc_status rv = gcm_pool_init(&k->dec, gcm, k->secret->bytes, 0);
    if (rv == VMENC_OK)
        rv = gcm_pool_init(&k->enc, gcm, k->secret->bytes, 1);
    if (rv == VMENC_OK)
        rv = vmenc_keyslab_pool_new(&k->pool);
    EVP_CIPHER_free(gcm);
    return rv;
}

static void kek_destroy(vmenc_kek *k) {
    gcm_pool_cleanup(&k->dec);
    gcm_pool_cleanup(&k->enc);
    vmenc_keyslab_pool_free(k->pool);
    vmenc_secret_free(k->secret);
    free(k);
}

vmenc_status vmenc_kek_new_take_secret(vmenc_secret **secret, vmenc_kek **out) {
    VMENC_ENSURE(secret != NULL && *secret != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE((*secret)->len == VMENC_KEK_BYTES, VMENC_E_INVALID_ARG);
    /* An all-zero KEK is an uninitialised buffer, never a key manager's key. */
    static const uint8_t zero[VMENC_KEK_BYTES];
    VMENC_ENSURE(!vmenc_ct_equal((*secret)->bytes, zero, VMENC_KEK_BYTES), VMENC_E_WEAK_KEY);
    vmenc_kek *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return VMENC_E_NOMEM;
    vmenc_secret *copy = NULL;
    vmenc_status rv = pooled_copy(*secret, &copy);
    k->secret = copy != NULL ? copy : *secret;
    if (rv == VMENC_OK)
        rv = kek_prepare(k);
    if (rv != VMENC_OK) {
        if (copy == NULL)
            k->secret = NULL; /* the caller keeps ownership on failure */
        kek_destroy(k);   /* frees the copy, if any */
        return rv;
    }
    if (copy != NULL)
        vmenc_secret_free(*secret); /* wipes the caller's region */
    vmenc_secret_readonly(k->secret);
    *secret = NULL;
    *out = k;
    return VMENC_OK;
}

vmenc_status vmenc_kek_new_from_bytes(const uint8_t *bytes, size_t len, vmenc_kek **out) {
    VMENC_ENSURE(bytes != NULL && out != NULL && len == VMENC_KEK_BYTES, VMENC_E_INVALID_ARG);
    vmenc_secret *s = NULL;
    VMENC_GUARD(vmenc_secret_new_pooled(len, &s));
    memcpy(s->bytes, bytes, len);
    vmenc_status rv = vmenc_kek_new_take_secret(&s, out);
    vmenc_secret_free(s);
    return rv;
}

vmenc_status vmenc_kek_generate(vmenc_kek **out) {
    VMENC_ENSURE_REF(out);
    VMENC_GUARD(vmenc_ensure_init());
    vmenc_secret *s = NULL;
    VMENC_GUARD(vmenc_secret_new_pooled(VMENC_KEK_BYTES, &s));
    randombytes_buf(s->bytes, s->len);
    vmenc_status rv = vmenc_kek_new_take_secret(&s, out);
    vmenc_secret_free(s);
    return rv;
}

vmenc_status vmenc_kek_equal(const vmenc_kek *a, const vmenc_kek *b) {
    VMENC_ENSURE(a != NULL && b != NULL, VMENC_E_INVALID_ARG);
    return vmenc_ct_equal(a->secret->bytes, b->secret->bytes, VMENC_KEK_BYTES) ? VMENC_OK
                                                                                : VMENC_E_KEY_MISMATCH;
}

const uint8_t *vmenc_kek_bytes_internal(const vmenc_kek *kek) {
    return kek != NULL ? kek->secret->bytes : NULL;
}

void vmenc_kek_free(vmenc_kek *kek) {
    if (kek != NULL)
        kek_destroy(kek);
}

/* ---- buffers returned to callers ---------------------------------------- */

/* A returned buffer is preceded by a 16-byte header (keeps the alignment
 * malloc gives) holding a magic and the length, so vmenc_buffer_free can
 * wipe every byte before freeing. */
#define BUFFER_HEADER 16u
static const uint64_t k_buffer_magic = 0x766d656e63627566ull; /* "vmencbuf" */

void *vmenc_buffer_alloc_internal(size_t len) {
    if (len == 0 || len > SIZE_MAX - BUFFER_HEADER)
        return NULL;
    uint8_t *p = calloc(1, BUFFER_HEADER + len);
    if (p == NULL)
        return NULL;
    uint64_t l = len;
    memcpy(p, &k_buffer_magic, 8);
    memcpy(p + 8, &l, 8);
    return p + BUFFER_HEADER;
}

void vmenc_buffer_free(void *buf) {
    if (buf == NULL)
        return;
    uint8_t *p = (uint8_t *)buf - BUFFER_HEADER;
    uint64_t magic, len;
    memcpy(&magic, p, 8);
    memcpy(&len, p + 8, 8);
    /* Not ours (or freed twice): leaking beats corrupting the heap. */
    if (magic != k_buffer_magic)
        return;
    sodium_memzero(p, BUFFER_HEADER + (size_t)len);
    free(p);
}
