/*
 * lib/vm/format/sealed.c - subkeys of the VM key, and the sealed configuration
 * entries of encryption.data ("vmsd1:" + base64(nonce || ct || tag),
 * AES-256-GCM under a subkey bound to the VM's UUID). Subkeys and
 * plaintext live only in secure memory; the base64 is strict and canonical
 * (one text per sealed value), as for vmwk1 records.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <openssl/evp.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "keys/keys_internal.h"
#include "vm/format/descriptor.h"
#include "vm/format/sealed.h"

#define SEALED_PREFIX "vmsd1:"
#define SEALED_PREFIX_LEN (sizeof(SEALED_PREFIX) - 1u)
#define SEALED_AAD "vmenc-config-v1"
#define NONCE_BYTES 12u
#define TAG_BYTES 16u
#define LABEL_MAX 64u
/* The sealed text must fit in one kv value. */
#define SEALED_TEXT_MAX ((size_t)VM_KV_VALUE_MAX)
#define SEALED_BIN_MAX (((SEALED_TEXT_MAX - SEALED_PREFIX_LEN) / 4u) * 3u)

vmenc_status vm_derive_key(const vmenc_dek *vm_key, const char *label, const uint8_t *ctx, size_t ctx_len,
                           uint8_t out[32]) {
    VMENC_ENSURE(vm_key != NULL && label != NULL && out != NULL && (ctx != NULL || ctx_len == 0),
                 VMENC_E_INVALID_ARG);
    size_t label_len = strlen(label);
    VMENC_ENSURE(label_len >= 1 && label_len <= LABEL_MAX, VMENC_E_INVALID_ARG);
    const uint8_t *k = vmenc_dek_bytes_internal(vm_key);
    VMENC_ENSURE(k != NULL, VMENC_E_INVALID_ARG);
    /* The label is NUL-terminated inside the message, so no (label, ctx)
     * pair can collide with another by moving bytes across the boundary. */
    crypto_generichash_state st;
    static const uint8_t zero = 0;
    int err = crypto_generichash_init(&st, k, VMENC_DEK_BYTES, 32);
    err |= crypto_generichash_update(&st, (const uint8_t *)"vmenc/", 6);
    err |= crypto_generichash_update(&st, (const uint8_t *)label, label_len);
    err |= crypto_generichash_update(&st, &zero, 1);
    if (ctx_len > 0)
        err |= crypto_generichash_update(&st, ctx, ctx_len);
    err |= crypto_generichash_final(&st, out, 32);
    sodium_memzero(&st, sizeof(st)); /* the state holds the keyed block */
    return err == 0 ? VMENC_OK : VMENC_E_CRYPTO;
}

/* ---- AES-256-GCM, one shot -------------------------------------------------- */

static vmenc_status gcm(bool enc, const uint8_t key[32], const uint8_t nonce[NONCE_BYTES], const uint8_t *aad,
                        size_t aad_len, const uint8_t *in, size_t in_len, uint8_t *out, uint8_t tag[TAG_BYTES]) {
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    VMENC_ENSURE(c != NULL, VMENC_E_NOMEM);
    int n = 0, ok = EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce, enc ? 1 : 0);
    ok = ok && EVP_CipherUpdate(c, NULL, &n, aad, (int)aad_len);
    ok = ok && (in_len == 0 || EVP_CipherUpdate(c, out, &n, in, (int)in_len));
    if (!enc)
        ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, tag);
    int fin = ok && EVP_CipherFinal_ex(c, out + in_len, &n);
    if (enc)
        fin = fin && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, tag);
    EVP_CIPHER_CTX_free(c);
    if (!ok)
        return VMENC_E_CRYPTO;
    return fin ? VMENC_OK : (enc ? VMENC_E_CRYPTO : VMENC_E_AUTH);
}

static vmenc_status config_key(const vmenc_dek *vm_key, const char *uuid, uint8_t **out_key) {
    VMENC_ENSURE(vm_uuid_check(uuid) == VMENC_OK, VMENC_E_INVALID_ARG);
    uint8_t *key = vmenc_secure_alloc(32);
    VMENC_ENSURE(key != NULL, VMENC_E_NOMEM);
    vmenc_status rv = vm_derive_key(vm_key, "config-v1", (const uint8_t *)uuid, VMENC_VM_UUID_LEN, key);
    if (rv != VMENC_OK) {
        vmenc_secure_free(key);
        return rv;
    }
    *out_key = key;
    return VMENC_OK;
}

static void config_aad(const char *uuid, uint8_t aad[sizeof(SEALED_AAD) - 1 + VMENC_VM_UUID_LEN]) {
    memcpy(aad, SEALED_AAD, sizeof(SEALED_AAD) - 1);
    memcpy(aad + sizeof(SEALED_AAD) - 1, uuid, VMENC_VM_UUID_LEN);
}

/* ---- text form ------------------------------------------------------------------ */

/* decode_outer checks the prefix and the canonical base64 and, if |out| is
 * not NULL, returns the decoded bytes (malloc'd). */
static vmenc_status decode_outer(const char *text, size_t len, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(text != NULL || len == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(len <= SEALED_TEXT_MAX, VMENC_E_TOO_LARGE);
    VMENC_ENSURE(len >= SEALED_PREFIX_LEN && memcmp(text, SEALED_PREFIX, SEALED_PREFIX_LEN) == 0,
                 VMENC_E_BAD_MAGIC);
    const char *b64 = text + SEALED_PREFIX_LEN;
    size_t b64_len = len - SEALED_PREFIX_LEN;
    VMENC_ENSURE(b64_len % 4 == 0, VMENC_E_BAD_ENCODING);
    size_t cap = b64_len / 4 * 3 + 1;
    uint8_t *bin = malloc(cap);
    VMENC_ENSURE(bin != NULL, VMENC_E_NOMEM);
    size_t bin_len = 0;
    const char *end = NULL;
    vmenc_status rv = VMENC_OK;
    /* Strict: padded, no whitespace (ignore = NULL), all consumed, and the
     * re-encoding equal (unused low bits zero), so one value has one text. */
    if (sodium_base642bin(bin, cap, b64, b64_len, NULL, &bin_len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != b64 + b64_len ||
        sodium_base64_encoded_len(bin_len, sodium_base64_VARIANT_ORIGINAL) != b64_len + 1)
        rv = VMENC_E_BAD_ENCODING;
    if (rv == VMENC_OK) {
        char *again = malloc(b64_len + 1);
        if (again == NULL) {
            rv = VMENC_E_NOMEM;
        } else {
            sodium_bin2base64(again, b64_len + 1, bin, bin_len, sodium_base64_VARIANT_ORIGINAL);
            if (memcmp(again, b64, b64_len) != 0)
                rv = VMENC_E_BAD_ENCODING;
            free(again);
        }
    }
    if (rv == VMENC_OK && bin_len < NONCE_BYTES + TAG_BYTES)
        rv = VMENC_E_TRUNCATED;
    if (rv != VMENC_OK || out == NULL) {
        free(bin);
        return rv;
    }
    *out = bin;
    *out_len = bin_len;
    return VMENC_OK;
}

vmenc_status vm_sealed_decode_outer(const char *text, size_t len) { return decode_outer(text, len, NULL, NULL); }

static vmenc_status encode_outer(const uint8_t *bin, size_t bin_len, char **out) {
    size_t b64_cap = sodium_base64_encoded_len(bin_len, sodium_base64_VARIANT_ORIGINAL);
    VMENC_ENSURE(SEALED_PREFIX_LEN + b64_cap - 1 <= SEALED_TEXT_MAX, VMENC_E_TOO_LARGE);
    char *text = malloc(SEALED_PREFIX_LEN + b64_cap);
    VMENC_ENSURE(text != NULL, VMENC_E_NOMEM);
    memcpy(text, SEALED_PREFIX, SEALED_PREFIX_LEN);
    sodium_bin2base64(text + SEALED_PREFIX_LEN, b64_cap, bin, bin_len, sodium_base64_VARIANT_ORIGINAL);
    *out = text;
    return VMENC_OK;
}

/* ---- seal / open ------------------------------------------------------------------ */

/* plaintext_of serialises |secret| into secure memory (the heap copy the
 * kv serialiser makes is wiped at once). */
static vmenc_status plaintext_of(const vm_kv *secret, vmenc_secret **out) {
    uint8_t *text = NULL;
    size_t len = 0;
    VMENC_GUARD(vm_kv_serialize(secret, &text, &len));
    vmenc_status rv = VMENC_E_TOO_LARGE;
    if (len + NONCE_BYTES + TAG_BYTES <= SEALED_BIN_MAX)
        rv = vmenc_secret_from(text, len + 1, out); /* + NUL: never zero bytes */
    sodium_memzero(text, len);
    free(text);
    return rv;
}

static vmenc_status seal_bytes(const uint8_t *key, const char *uuid, const vmenc_secret *pt, char **out) {
    size_t pt_len = pt->len - 1;
    size_t bin_len = NONCE_BYTES + pt_len + TAG_BYTES;
    uint8_t *bin = malloc(bin_len);
    VMENC_ENSURE(bin != NULL, VMENC_E_NOMEM);
    uint8_t aad[sizeof(SEALED_AAD) - 1 + VMENC_VM_UUID_LEN];
    config_aad(uuid, aad);
    randombytes_buf(bin, NONCE_BYTES);
    vmenc_status rv = gcm(true, key, bin, aad, sizeof(aad), pt->bytes, pt_len, bin + NONCE_BYTES,
                          bin + NONCE_BYTES + pt_len);
    if (rv == VMENC_OK)
        rv = encode_outer(bin, bin_len, out);
    free(bin);
    return rv;
}

vmenc_status vm_sealed_seal(const vmenc_dek *vm_key, const char *uuid, const vm_kv *secret, char **out) {
    VMENC_ENSURE(vm_key != NULL && uuid != NULL && secret != NULL && out != NULL, VMENC_E_INVALID_ARG);
    uint8_t *key = NULL;
    vmenc_secret *pt = NULL;
    VMENC_GUARD(config_key(vm_key, uuid, &key));
    vmenc_status rv = plaintext_of(secret, &pt);
    if (rv == VMENC_OK)
        rv = seal_bytes(key, uuid, pt, out);
    vmenc_secret_free(pt);
    vmenc_secure_free(key);
    return rv;
}

static vmenc_status open_bytes(const uint8_t *key, const char *uuid, const uint8_t *bin, size_t bin_len,
                               vm_kv **out) {
    size_t ct_len = bin_len - NONCE_BYTES - TAG_BYTES;
    vmenc_secret *pt = NULL;
    VMENC_GUARD(vmenc_secret_new(ct_len + 1, &pt));
    uint8_t aad[sizeof(SEALED_AAD) - 1 + VMENC_VM_UUID_LEN];
    uint8_t tag[TAG_BYTES];
    config_aad(uuid, aad);
    memcpy(tag, bin + NONCE_BYTES + ct_len, TAG_BYTES);
    vmenc_status rv = gcm(false, key, bin, aad, sizeof(aad), bin + NONCE_BYTES, ct_len, pt->bytes, tag);
    /* Only authenticated plaintext is parsed. */
    if (rv == VMENC_OK)
        rv = vm_kv_parse(pt->bytes, ct_len, out);
    vmenc_secret_free(pt);
    return rv;
}

vmenc_status vm_sealed_open(const vmenc_dek *vm_key, const char *uuid, const char *text, vm_kv **out) {
    VMENC_ENSURE(vm_key != NULL && uuid != NULL && text != NULL && out != NULL, VMENC_E_INVALID_ARG);
    uint8_t *bin = NULL, *key = NULL;
    size_t bin_len = 0;
    VMENC_GUARD(decode_outer(text, strlen(text), &bin, &bin_len));
    vmenc_status rv = config_key(vm_key, uuid, &key);
    if (rv == VMENC_OK)
        rv = open_bytes(key, uuid, bin, bin_len, out);
    vmenc_secure_free(key);
    free(bin);
    return rv;
}
