/*
 * lib/keys/wrap.c - sealing a DEK into a wrapped-key record and opening it
 * again. One codec and one binding rule for every way of encrypting: the
 * local KEK (vmenc_dek_wrap / vmenc_wrapped_key_unwrap) and a key manager's
 * remote wrap (vmenc_wrapped_key_seal_with / _open_with) share seal_impl and
 * open_impl; only the callback differs.
 *
 * Binding: AAD = header bytes || "vmenc-wrap-ctx-v1" || u8-len vm_uuid ||
 * u8-len disk_id || u8-len purpose. GCM authenticates it directly; KWP has
 * no AAD, so it wraps DEK || SHA-256(AAD) and the digest is checked in
 * constant time after unwrapping.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "keys/keys_impl.h"

/* ---- plaintext buffers in secure memory ------------------------------------ */

/* A plaintext buffer: a slot of the KEK's slab when there is one (cheap),
 * else its own sodium_malloc region. */
typedef struct pt_buf {
    uint8_t *bytes;
    vmenc_keyslab *slab;
    vmenc_secret *secret;
} pt_buf;

/* Every buffer is VMENC_KEYSLAB_SLOT_BYTES, whichever way it was allocated. */
#define BUF_BYTES VMENC_KEYSLAB_SLOT_BYTES
_Static_assert(BUF_BYTES >= VMENC_WRAP_MAX_PT_BYTES && BUF_BYTES >= VMENC_WRAP_MAX_CT_BYTES,
               "a slot holds a KWP payload or its wrap");

static vmenc_status pt_alloc(vmenc_keyslab_pool *pool, pt_buf *pt) {
    memset(pt, 0, sizeof(*pt));
    if (pool != NULL)
        return vmenc_keyslab_alloc(pool, &pt->bytes, &pt->slab);
    VMENC_GUARD(vmenc_secret_new(BUF_BYTES, &pt->secret));
    pt->bytes = pt->secret->bytes;
    return VMENC_OK;
}

static void pt_free(pt_buf *pt) {
    if (pt->slab != NULL)
        vmenc_keyslab_release(pt->slab, pt->bytes); /* wipes */
    vmenc_secret_free(pt->secret);                  /* wipes */
    memset(pt, 0, sizeof(*pt));
}

/* pt_to_dek turns the first VMENC_DEK_BYTES of |pt| into a DEK, consuming
 * |pt| on success. */
static vmenc_status pt_to_dek(pt_buf *pt, vmenc_dek **out) {
    sodium_memzero(pt->bytes + VMENC_DEK_BYTES, BUF_BYTES - VMENC_DEK_BYTES);
    if (pt->slab != NULL) {
        VMENC_GUARD(vmenc_dek_adopt_slot(pt->slab, pt->bytes, out));
        memset(pt, 0, sizeof(*pt));
        return VMENC_OK;
    }
    /* A one-off secret is larger than a DEK: copy into an exact one. */
    VMENC_GUARD(vmenc_dek_new_from_bytes(pt->bytes, VMENC_DEK_BYTES, out));
    pt_free(pt);
    return VMENC_OK;
}

/* ---- the codec shared by local and remote wrapping --------------------------- */

static bool alg_known(vmenc_wrap_alg alg) {
    size_t a, b;
    return vmenc_wk_expected_lengths(alg, &a, &b) == VMENC_OK;
}

static vmenc_status seal_impl(vmenc_wrap_alg alg, const char *alias, const char *kek_id,
                              const vmenc_wrap_context *ctx, const vmenc_dek *dek, vmenc_wrap_seal_fn seal,
                              void *arg, vmenc_keyslab_pool *pool, vmenc_wrapped_key **out) {
    VMENC_ENSURE(ctx != NULL && dek != NULL && seal != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(alg_known(alg), VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());
    vmenc_wrapped_key *wk = calloc(1, sizeof(*wk));
    if (wk == NULL)
        return VMENC_E_NOMEM;
    vmenc_status rv;
    pt_buf pt = {0}, ctb = {0};
    wk->version = VMENC_WK_VERSION;
    wk->alg = alg;
    VMENC_GUARD_GOTO(rv, vmenc_wk_check_name(alias, VMENC_PROVIDER_ALIAS_MAX, &wk->alias_len), fail);
    VMENC_GUARD_GOTO(rv, vmenc_wk_check_name(kek_id, VMENC_KEY_ID_MAX, &wk->kek_id_len), fail);
    memcpy(wk->alias, alias, wk->alias_len);
    memcpy(wk->kek_id, kek_id, wk->kek_id_len);
    VMENC_GUARD_GOTO(rv, vmenc_wk_expected_lengths(alg, &wk->nonce_len, &wk->ct_len), fail);
    if (wk->nonce_len > 0)
        randombytes_buf(wk->nonce, wk->nonce_len);

    uint8_t aad[VMENC_WK_MAX_AAD_BYTES];
    size_t aad_len = 0;
    VMENC_GUARD_GOTO(rv, vmenc_wk_build_aad(wk, ctx, aad, sizeof(aad), &aad_len), fail);

    size_t ct_len = 0;
    if (alg == VMENC_WRAP_AES256_GCM) {
        rv = seal(arg, alg, wk->nonce, wk->nonce_len, aad, aad_len, dek->bytes, VMENC_DEK_BYTES, wk->ct,
                  sizeof(wk->ct), &ct_len);
    } else {
        /* KWP works on a copy of the plaintext in its output buffer, so the
         * output is secure memory too; only the finished wrap is copied out. */
        VMENC_GUARD_GOTO(rv, pt_alloc(pool, &pt), fail);
        VMENC_GUARD_GOTO(rv, pt_alloc(pool, &ctb), fail);
        memcpy(pt.bytes, dek->bytes, VMENC_DEK_BYTES);
        crypto_hash_sha256(pt.bytes + VMENC_DEK_BYTES, aad, aad_len);
        rv = seal(arg, alg, NULL, 0, NULL, 0, pt.bytes, VMENC_WRAP_KWP_PT_BYTES, ctb.bytes, BUF_BYTES, &ct_len);
        if (rv == VMENC_OK && ct_len == wk->ct_len)
            memcpy(wk->ct, ctb.bytes, ct_len);
    }
    if (rv != VMENC_OK)
        goto fail;
    VMENC_ENSURE_GOTO(rv, ct_len == wk->ct_len, VMENC_E_KMS_PROTOCOL, fail);
    pt_free(&pt);
    pt_free(&ctb);
    *out = wk;
    return VMENC_OK;
fail:
    pt_free(&pt);
    pt_free(&ctb);
    vmenc_wrapped_key_free(wk);
    return rv;
}

static vmenc_status open_impl(const vmenc_wrapped_key *wk, const vmenc_wrap_context *ctx,
                              vmenc_wrap_open_fn open, void *arg, vmenc_keyslab_pool *pool,
                              vmenc_dek **out) {
    VMENC_ENSURE(wk != NULL && ctx != NULL && open != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());
    uint8_t aad[VMENC_WK_MAX_AAD_BYTES];
    size_t aad_len = 0;
    VMENC_GUARD(vmenc_wk_build_aad(wk, ctx, aad, sizeof(aad), &aad_len));
    pt_buf pt;
    VMENC_GUARD(pt_alloc(pool, &pt));
    size_t pt_len = 0;
    vmenc_status rv;
    if (wk->alg == VMENC_WRAP_AES256_GCM) {
        rv = open(arg, wk->alg, wk->nonce, wk->nonce_len, aad, aad_len, wk->ct, wk->ct_len, pt.bytes,
                  VMENC_WRAP_MAX_PT_BYTES, &pt_len);
        if (rv == VMENC_OK && pt_len != VMENC_DEK_BYTES)
            rv = VMENC_E_AUTH;
    } else {
        rv = open(arg, wk->alg, NULL, 0, NULL, 0, wk->ct, wk->ct_len, pt.bytes, VMENC_WRAP_MAX_PT_BYTES,
                  &pt_len);
        if (rv == VMENC_OK && pt_len != VMENC_WRAP_KWP_PT_BYTES)
            rv = VMENC_E_AUTH;
        if (rv == VMENC_OK) {
            uint8_t digest[VMENC_WRAP_KWP_BINDING_BYTES];
            crypto_hash_sha256(digest, aad, aad_len);
            if (!vmenc_ct_equal(digest, pt.bytes + VMENC_DEK_BYTES, sizeof(digest)))
                rv = VMENC_E_AUTH;
        }
    }
    if (rv == VMENC_OK)
        rv = pt_to_dek(&pt, out);
    pt_free(&pt); /* no-op when the DEK took it */
    return rv;
}

vmenc_status vmenc_wrapped_key_seal_with(vmenc_wrap_alg alg, const char *provider_alias, const char *kek_id,
                                         const vmenc_wrap_context *ctx, const vmenc_dek *dek,
                                         vmenc_wrap_seal_fn seal, void *arg, vmenc_wrapped_key **out) {
    return seal_impl(alg, provider_alias, kek_id, ctx, dek, seal, arg, NULL, out);
}

vmenc_status vmenc_wrapped_key_open_with(const vmenc_wrapped_key *wk, const vmenc_wrap_context *ctx,
                                         vmenc_wrap_open_fn open, void *arg, vmenc_dek **out) {
    return open_impl(wk, ctx, open, arg, NULL, out);
}

/* ---- local KEK: the callbacks ------------------------------------------------- */

static vmenc_status local_seal(void *arg, vmenc_wrap_alg alg, const uint8_t *nonce, size_t nonce_len,
                               const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len,
                               uint8_t *out, size_t out_cap, size_t *out_len) {
    const vmenc_kek *kek = arg;
    if (alg == VMENC_WRAP_AES256_KWP)
        return vmenc_aes_kwp_wrap(kek->secret->bytes, VMENC_KEK_BYTES, in, in_len, out, out_cap, out_len);
    VMENC_ENSURE(nonce_len == VMENC_WRAP_GCM_NONCE_BYTES && out_cap >= in_len + VMENC_WRAP_GCM_TAG_BYTES &&
                     in_len <= INT32_MAX && aad_len <= INT32_MAX,
                 VMENC_E_INTERNAL);
    EVP_CIPHER_CTX *c = vmenc_gcm_pool_take(&kek->enc);
    if (c == NULL)
        return VMENC_E_NOMEM;
    int l1 = 0, l2 = 0, l3 = 0;
    vmenc_status rv = VMENC_E_CRYPTO;
    if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, nonce) == 1 &&
        EVP_EncryptUpdate(c, NULL, &l1, aad, (int)aad_len) == 1 &&
        EVP_EncryptUpdate(c, out, &l2, in, (int)in_len) == 1 && EVP_EncryptFinal_ex(c, out + l2, &l3) == 1 &&
        (size_t)(l2 + l3) == in_len &&
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, VMENC_WRAP_GCM_TAG_BYTES, out + in_len) == 1) {
        *out_len = in_len + VMENC_WRAP_GCM_TAG_BYTES;
        rv = VMENC_OK;
    }
    vmenc_gcm_pool_give(&kek->enc, c);
    return rv;
}

/* set_tag gives the expected tag to a decrypting GCM context through the
 * provider parameter directly (EVP_CTRL_GCM_SET_TAG is translated into the
 * same parameter at a measurable cost per unwrap). */
static int set_tag(EVP_CIPHER_CTX *c, const uint8_t *tag) {
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, (void *)tag, VMENC_WRAP_GCM_TAG_BYTES),
        OSSL_PARAM_construct_end()};
    return EVP_CIPHER_CTX_set_params(c, params);
}

static vmenc_status local_open(void *arg, vmenc_wrap_alg alg, const uint8_t *nonce, size_t nonce_len,
                               const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len,
                               uint8_t *out, size_t out_cap, size_t *out_len) {
    const vmenc_kek *kek = arg;
    if (alg == VMENC_WRAP_AES256_KWP)
        return vmenc_aes_kwp_unwrap(kek->secret->bytes, VMENC_KEK_BYTES, in, in_len, out, out_cap, out_len);
    VMENC_ENSURE(nonce_len == VMENC_WRAP_GCM_NONCE_BYTES && in_len >= VMENC_WRAP_GCM_TAG_BYTES &&
                     in_len <= INT32_MAX && aad_len <= INT32_MAX,
                 VMENC_E_AUTH);
    size_t pt_len = in_len - VMENC_WRAP_GCM_TAG_BYTES;
    VMENC_ENSURE(out_cap >= pt_len, VMENC_E_INTERNAL);
    EVP_CIPHER_CTX *c = vmenc_gcm_pool_take(&kek->dec);
    if (c == NULL)
        return VMENC_E_NOMEM;
    int l1 = 0, l2 = 0, l3 = 0;
    vmenc_status rv = VMENC_E_CRYPTO;
    if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, nonce) == 1 &&
        EVP_DecryptUpdate(c, NULL, &l1, aad, (int)aad_len) == 1 &&
        EVP_DecryptUpdate(c, out, &l2, in, (int)pt_len) == 1 &&
        set_tag(c, in + pt_len) == 1) {
        /* Final is where the tag is checked: failure there is inauthentic. */
        rv = EVP_DecryptFinal_ex(c, out + l2, &l3) == 1 && (size_t)(l2 + l3) == pt_len ? VMENC_OK
                                                                                      : VMENC_E_AUTH;
    }
    vmenc_gcm_pool_give(&kek->dec, c);
    if (rv != VMENC_OK) {
        sodium_memzero(out, pt_len);
        return rv;
    }
    *out_len = pt_len;
    return VMENC_OK;
}

vmenc_status vmenc_dek_wrap(const vmenc_dek *dek, const vmenc_kek *kek, vmenc_wrap_alg alg,
                            const char *provider_alias, const char *kek_id, const vmenc_wrap_context *ctx,
                            vmenc_wrapped_key **out) {
    VMENC_ENSURE_REF(kek);
    return seal_impl(alg, provider_alias, kek_id, ctx, dek, local_seal, (void *)kek, kek->pool, out);
}

vmenc_status vmenc_wrapped_key_unwrap(const vmenc_wrapped_key *wk, const vmenc_kek *kek,
                                      const vmenc_wrap_context *ctx, vmenc_dek **out) {
    VMENC_ENSURE_REF(kek);
    return open_impl(wk, ctx, local_open, (void *)kek, kek->pool, out);
}
