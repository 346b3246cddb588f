/*
 * lib/vm/format/sealed.c - subkeys of the VM key, and the sealed configuration
 * entries of encryption.data ("vmsd1:" + base64(nonce || ct || tag),
 * AES-256-GCM under a subkey bound to the VM's UUID). Subkeys and
 * plaintext live only in secure memory; the base64 is strict and canonical
 * (one text per sealed value), as for vmwk1 records. Also the steering facts
 * kept inside the sealed entries (pending policy, next key records, disk
 * geometry: docs/vm-format.md "Sealed steering facts"), whose one rule is
 * that the plain copies are hints: they must agree or the open is refused.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys/keys_internal.h"
#include "vm/format/descriptor.h"
#include "vm/format/schema.h"
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

/* ---- steering facts ------------------------------------------------------------- */

#define KEY_APPLYING "vmenc.applyingPolicy"
#define KEY_NEXT_VM_KEY "vmenc.nextKeySafe"
#define DISK_PREFIX "vmenc.disk."
#define HEX_LEN (2 * VM_RECORD_HASH_BYTES)

vmenc_status vm_record_hash(const vmenc_wrapped_key *wk, uint8_t out[VM_RECORD_HASH_BYTES]) {
    VMENC_ENSURE(wk != NULL && out != NULL, VMENC_E_INVALID_ARG);
    uint8_t *bin = NULL;
    size_t len = 0;
    VMENC_GUARD(vmenc_wrapped_key_serialize(wk, &bin, &len));
    crypto_generichash_state st;
    int err = crypto_generichash_init(&st, NULL, 0, VM_RECORD_HASH_BYTES);
    err |= crypto_generichash_update(&st, (const uint8_t *)"vmenc-record-v1", 15);
    err |= crypto_generichash_update(&st, bin, len);
    err |= crypto_generichash_final(&st, out, VM_RECORD_HASH_BYTES);
    vmenc_buffer_free(bin);
    return err == 0 ? VMENC_OK : VMENC_E_CRYPTO;
}

static void hex_of(const uint8_t h[VM_RECORD_HASH_BYTES], char out[HEX_LEN + 1]) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < VM_RECORD_HASH_BYTES; i++) {
        out[2 * i] = digits[h[i] >> 4];
        out[2 * i + 1] = digits[h[i] & 15];
    }
    out[HEX_LEN] = '\0';
}

/* hex_parse reads exactly 64 lower-case hex digits. */
static vmenc_status hex_parse(const char *s, size_t len, uint8_t out[VM_RECORD_HASH_BYTES]) {
    VMENC_ENSURE(s != NULL && len == HEX_LEN, VMENC_E_PARSE);
    for (size_t i = 0; i < VM_RECORD_HASH_BYTES; i++) {
        unsigned v = 0;
        for (size_t j = 0; j < 2; j++) {
            char c = s[2 * i + j];
            VMENC_ENSURE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'), VMENC_E_PARSE);
            v = v * 16u + (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
        }
        out[i] = (uint8_t)v;
    }
    return VMENC_OK;
}

vmenc_status vm_sealed_disk_format(const vm_sealed_disk *d, char *out, size_t cap) {
    VMENC_ENSURE(d != NULL && out != NULL, VMENC_E_INVALID_ARG);
    int n;
    if (!d->has_geometry) {
        n = snprintf(out, cap, "%s %s", d->desc_name, d->encrypted ? "encrypted" : "plain");
    } else {
        char next[6 + HEX_LEN + 1] = "";
        if (d->has_next) {
            memcpy(next, " next=", 6);
            hex_of(d->next_record, next + 6);
        }
        n = snprintf(out, cap, "%s %s %u %llu%s", d->desc_name, d->encrypted ? "encrypted" : "plain",
                     (unsigned)d->sector_size, (unsigned long long)d->capacity, next);
    }
    VMENC_ENSURE(n > 0 && (size_t)n < cap, VMENC_E_BUFFER_TOO_SMALL);
    return VMENC_OK;
}

vmenc_status vm_sealed_disk_value(const char *desc_name, const vm_disk_desc *d, bool encrypted, char *out,
                                  size_t cap) {
    VMENC_ENSURE(desc_name != NULL && d != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vm_sealed_disk v;
    memset(&v, 0, sizeof(v));
    VMENC_ENSURE(strlen(desc_name) < sizeof(v.desc_name) && strchr(desc_name, ' ') == NULL, VMENC_E_INVALID_ARG);
    memcpy(v.desc_name, desc_name, strlen(desc_name) + 1);
    v.encrypted = encrypted;
    v.has_geometry = true;
    v.sector_size = d->sector_size;
    v.capacity = d->capacity;
    if (d->new_key_safe != NULL) {
        VMENC_GUARD(vm_record_hash(d->new_key_safe, v.next_record));
        v.has_next = true;
    }
    return vm_sealed_disk_format(&v, out, cap);
}

/* next_field splits off the next space-separated field of |*p|. */
static bool next_field(const char **p, const char **out, size_t *out_len) {
    const char *s = *p;
    if (*s == '\0')
        return false;
    const char *sp = strchr(s, ' ');
    size_t len = sp != NULL ? (size_t)(sp - s) : strlen(s);
    *out = s;
    *out_len = len;
    *p = sp != NULL ? sp + 1 : s + len;
    return len > 0;
}

static vmenc_status field_u64(const char *s, size_t len, uint64_t *out) {
    char buf[21];
    VMENC_ENSURE(len > 0 && len < sizeof(buf), VMENC_E_PARSE);
    memcpy(buf, s, len);
    buf[len] = '\0';
    return vm_parse_dec_u64(buf, out);
}

vmenc_status vm_sealed_disk_parse(const char *value, vm_sealed_disk *out) {
    VMENC_ENSURE(value != NULL && out != NULL, VMENC_E_INVALID_ARG);
    size_t len = strlen(value);
    /* one spelling per value: single spaces between fields, none around */
    VMENC_ENSURE(len > 0 && value[0] != ' ' && value[len - 1] != ' ' && strstr(value, "  ") == NULL, VMENC_E_PARSE);
    vm_sealed_disk d;
    memset(&d, 0, sizeof(d));
    const char *p = value, *f = NULL;
    size_t n = 0;
    VMENC_ENSURE(next_field(&p, &f, &n) && n < sizeof(d.desc_name), VMENC_E_PARSE);
    memcpy(d.desc_name, f, n);
    VMENC_ENSURE(next_field(&p, &f, &n), VMENC_E_PARSE);
    if (n == 9 && memcmp(f, "encrypted", 9) == 0)
        d.encrypted = true;
    else
        VMENC_ENSURE(n == 5 && memcmp(f, "plain", 5) == 0, VMENC_E_PARSE);
    if (*p != '\0') {
        uint64_t ss = 0;
        VMENC_ENSURE(next_field(&p, &f, &n), VMENC_E_PARSE);
        VMENC_GUARD(field_u64(f, n, &ss));
        VMENC_ENSURE(ss == 512 || ss == 4096, VMENC_E_PARSE);
        d.sector_size = (uint32_t)ss;
        VMENC_ENSURE(next_field(&p, &f, &n), VMENC_E_PARSE);
        VMENC_GUARD(field_u64(f, n, &d.capacity));
        d.has_geometry = true;
        if (*p != '\0') {
            VMENC_ENSURE(next_field(&p, &f, &n) && n > 5 && memcmp(f, "next=", 5) == 0, VMENC_E_PARSE);
            VMENC_GUARD(hex_parse(f + 5, n - 5, d.next_record));
            d.has_next = true;
        }
        VMENC_ENSURE(*p == '\0', VMENC_E_PARSE);
    }
    *out = d;
    return VMENC_OK;
}

static const char *disk_entry(const vm_kv *secret, const char *disk_id) {
    char key[sizeof(DISK_PREFIX) + VMENC_DISK_ID_MAX];
    if (secret == NULL || disk_id == NULL || strlen(disk_id) > VMENC_DISK_ID_MAX)
        return NULL;
    snprintf(key, sizeof(key), DISK_PREFIX "%s", disk_id);
    return vm_kv_get(secret, key);
}

vmenc_status vm_sealed_disk_geometry(const vm_kv *secret, const char *disk_id, uint32_t *out_sector_size,
                                     uint64_t *out_capacity) {
    VMENC_ENSURE(out_sector_size != NULL && out_capacity != NULL, VMENC_E_INVALID_ARG);
    const char *v = disk_entry(secret, disk_id);
    VMENC_ENSURE(v != NULL, VMENC_E_NOT_FOUND);
    vm_sealed_disk d;
    VMENC_GUARD(vm_sealed_disk_parse(v, &d));
    VMENC_ENSURE(d.has_geometry, VMENC_E_NOT_FOUND);
    *out_sector_size = d.sector_size;
    *out_capacity = d.capacity;
    return VMENC_OK;
}

/* record_is: does |wk| hash to |h|? */
static bool record_is(const vmenc_wrapped_key *wk, const uint8_t h[VM_RECORD_HASH_BYTES]) {
    uint8_t got[VM_RECORD_HASH_BYTES];
    return wk != NULL && vm_record_hash(wk, got) == VMENC_OK && vmenc_ct_equal(got, h, sizeof(got));
}

vmenc_status vm_sealed_disk_check(const char *sealed_value, const char *desc_name, const vm_disk_desc *d) {
    VMENC_ENSURE(desc_name != NULL && d != NULL, VMENC_E_INVALID_ARG);
    vm_sealed_disk s;
    VMENC_ENSURE(sealed_value != NULL && vm_sealed_disk_parse(sealed_value, &s) == VMENC_OK, VMENC_E_AUTH);
    VMENC_ENSURE(strcmp(s.desc_name, desc_name) == 0, VMENC_E_AUTH);
    /* A disk sealed as encrypted must still be encrypted (a plain
     * descriptor put in its place is a downgrade). One sealed as plain may
     * have been encrypted since: a disk is encrypted (descriptor first)
     * before the configuration says so, and the configuration says "plain"
     * before a disk is decrypted. */
    if (s.encrypted)
        VMENC_ENSURE(d->state == VMENC_DISK_ENCRYPTED || d->state == VMENC_DISK_REKEYING, VMENC_E_AUTH);
    if (s.has_geometry)
        VMENC_ENSURE(s.sector_size == d->sector_size && s.capacity == d->capacity, VMENC_E_AUTH);
    /* A conversion to a new key is sealed before its descriptor names it;
     * after it, the record is the descriptor's current one, and a rollback
     * swaps the two. Any other next record is not this VM's intent. */
    if (d->new_key_safe != NULL)
        VMENC_ENSURE(s.has_next && (record_is(d->new_key_safe, s.next_record) ||
                                    record_is(d->key_safe, s.next_record)),
                     VMENC_E_AUTH);
    return VMENC_OK;
}

vmenc_status vm_sealed_disk_next_is(const vm_kv *secret, const char *disk_id, const vm_disk_desc *d) {
    VMENC_ENSURE(d != NULL, VMENC_E_INVALID_ARG);
    if (d->new_key_safe == NULL)
        return VMENC_OK;
    vm_sealed_disk s;
    const char *v = disk_entry(secret, disk_id);
    VMENC_ENSURE(v != NULL && vm_sealed_disk_parse(v, &s) == VMENC_OK, VMENC_E_AUTH);
    VMENC_ENSURE(s.has_next && record_is(d->new_key_safe, s.next_record), VMENC_E_AUTH);
    return VMENC_OK;
}

static vmenc_status set_or_remove(vm_kv *kv, const char *key, const char *value) {
    if (value != NULL)
        return vm_kv_set(kv, key, value);
    vmenc_status s = vm_kv_remove(kv, key);
    return s == VMENC_E_NOT_FOUND ? VMENC_OK : s;
}

vmenc_status vm_sealed_put_steering(vm_kv *secret, const char *applying_policy,
                                    const vmenc_wrapped_key *next_vm_key) {
    VMENC_ENSURE(secret != NULL, VMENC_E_INVALID_ARG);
    bool applying = applying_policy != NULL && applying_policy[0] != '\0';
    VMENC_GUARD(set_or_remove(secret, KEY_APPLYING, applying ? applying_policy : NULL));
    char hex[HEX_LEN + 1];
    if (next_vm_key != NULL) {
        uint8_t h[VM_RECORD_HASH_BYTES];
        VMENC_GUARD(vm_record_hash(next_vm_key, h));
        hex_of(h, hex);
    }
    return set_or_remove(secret, KEY_NEXT_VM_KEY, next_vm_key != NULL ? hex : NULL);
}

vmenc_status vm_sealed_pending_policy(const vm_kv *secret, char *out, size_t cap) {
    VMENC_ENSURE(secret != NULL && out != NULL && cap > 0, VMENC_E_INVALID_ARG);
    const char *v = vm_kv_get(secret, KEY_APPLYING);
    if (v == NULL)
        v = "";
    size_t len = strlen(v);
    if (len >= cap) {
        out[0] = '\0';
        return VMENC_E_BUFFER_TOO_SMALL;
    }
    memcpy(out, v, len + 1);
    return VMENC_OK;
}

vmenc_status vm_sealed_next_key_hash(const vm_kv *secret, bool *out_has, uint8_t out[VM_RECORD_HASH_BYTES]) {
    VMENC_ENSURE(secret != NULL && out_has != NULL && out != NULL, VMENC_E_INVALID_ARG);
    const char *v = vm_kv_get(secret, KEY_NEXT_VM_KEY);
    *out_has = false;
    if (v == NULL)
        return VMENC_OK;
    VMENC_GUARD(hex_parse(v, strlen(v), out));
    *out_has = true;
    return VMENC_OK;
}

vmenc_status vm_sealed_check_steering(const vm_kv *secret, const char *applying_policy,
                                      const vmenc_wrapped_key *next_vm_key) {
    VMENC_ENSURE(secret != NULL, VMENC_E_INVALID_ARG);
    const char *sealed_policy = vm_kv_get(secret, KEY_APPLYING);
    const char *plain_policy = applying_policy != NULL && applying_policy[0] != '\0' ? applying_policy : NULL;
    VMENC_ENSURE((sealed_policy == NULL) == (plain_policy == NULL), VMENC_E_AUTH);
    VMENC_ENSURE(sealed_policy == NULL || strcmp(sealed_policy, plain_policy) == 0, VMENC_E_AUTH);
    bool has = false;
    uint8_t h[VM_RECORD_HASH_BYTES];
    VMENC_ENSURE(vm_sealed_next_key_hash(secret, &has, h) == VMENC_OK, VMENC_E_AUTH);
    VMENC_ENSURE(has == (next_vm_key != NULL), VMENC_E_AUTH);
    VMENC_ENSURE(!has || record_is(next_vm_key, h), VMENC_E_AUTH);
    return VMENC_OK;
}
