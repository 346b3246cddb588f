/*
 * lib/kms/file/keystore.c - the keystore file format (see keystore.h and
 * docs/kms.md): key table, plaintext codec, header codec, Argon2id key
 * derivation and XChaCha20-Poly1305 sealing. No I/O here: file handling
 * lives in file_provider.c, so this reads like the format's schema and is
 * what the fuzzer drives.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "kms/file/keystore.h"

static const uint8_t k_verifier_label[] = "vmenc keystore v1 passphrase verifier";
static const uint8_t k_enc_label[] = "vmenc keystore v1 encryption key";

/* ---- the key table ----------------------------------------------------- */

vmenc_status vmenc_ks_store_new(vmenc_ks_store **out) {
    VMENC_ENSURE_REF(out);
    vmenc_ks_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return VMENC_E_NOMEM;
    *out = s;
    return VMENC_OK;
}

void vmenc_ks_store_free(vmenc_ks_store *s) {
    if (s == NULL)
        return;
    vmenc_secure_free(s->entries); /* sodium_free wipes */
    free(s);
}

static vmenc_status store_reserve(vmenc_ks_store *s, size_t want) {
    if (want <= s->cap)
        return VMENC_OK;
    VMENC_ENSURE(want <= VMENC_KS_MAX_KEYS, VMENC_E_LIMIT);
    size_t cap = s->cap ? s->cap : 8;
    while (cap < want)
        cap *= 2;
    if (cap > VMENC_KS_MAX_KEYS)
        cap = VMENC_KS_MAX_KEYS;
    vmenc_ks_entry *e = vmenc_secure_alloc(cap * sizeof(*e));
    if (e == NULL)
        return VMENC_E_NOMEM;
    if (s->num > 0)
        memcpy(e, s->entries, s->num * sizeof(*e));
    vmenc_secure_free(s->entries);
    s->entries = e;
    s->cap = cap;
    return VMENC_OK;
}

vmenc_status vmenc_ks_store_dup(const vmenc_ks_store *s, vmenc_ks_store **out) {
    VMENC_ENSURE_REF(s);
    vmenc_ks_store *d = NULL;
    VMENC_GUARD(vmenc_ks_store_new(&d));
    vmenc_status st = store_reserve(d, s->num);
    if (st != VMENC_OK) {
        vmenc_ks_store_free(d);
        return st;
    }
    if (s->num > 0)
        memcpy(d->entries, s->entries, s->num * sizeof(*d->entries));
    d->num = s->num;
    *out = d;
    return VMENC_OK;
}

vmenc_ks_entry *vmenc_ks_store_find(const vmenc_ks_store *s, const char *id) {
    for (size_t i = 0; i < s->num; i++)
        if (strcmp(s->entries[i].id, id) == 0)
            return &s->entries[i];
    return NULL;
}

vmenc_status vmenc_ks_store_add(vmenc_ks_store *s, const vmenc_ks_entry *e) {
    VMENC_ENSURE(s != NULL && e != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(vmenc_ks_store_find(s, e->id) == NULL, VMENC_E_EXISTS);
    VMENC_ENSURE(s->num < VMENC_KS_MAX_KEYS, VMENC_E_LIMIT);
    VMENC_GUARD(store_reserve(s, s->num + 1));
    s->entries[s->num++] = *e;
    return VMENC_OK;
}

bool vmenc_ks_store_equal(const vmenc_ks_store *a, const vmenc_ks_store *b) {
    if (a->num != b->num)
        return false;
    for (size_t i = 0; i < a->num; i++) {
        const vmenc_ks_entry *x = &a->entries[i], *y = &b->entries[i];
        if (strcmp(x->id, y->id) != 0 || strcmp(x->name, y->name) != 0 || x->state != y->state ||
            x->created_ms != y->created_ms || !vmenc_ct_equal(x->key, y->key, sizeof(x->key)))
            return false;
    }
    return true;
}

/* ---- plaintext codec -----------------------------------------------------
 *
 *   u32 num_keys
 *   num_keys x { u8-len id (1..64, printable ASCII)
 *                u8-len name (0..255, no NUL or control bytes)
 *                u8 state (1 active, 2 revoked, 3 destroyed)
 *                u64 created_ms
 *                32 bytes key (all zero iff destroyed... zero required when destroyed) }
 */

static bool printable_id(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x21 || p[i] > 0x7e)
            return false;
    return true;
}

static bool clean_name(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] == 0x7f)
            return false;
    return true;
}

static vmenc_status parse_entry(vmenc_cbs *cbs, vmenc_ks_entry *e) {
    vmenc_cbs id, name;
    VMENC_ENSURE(vmenc_cbs_get_u8_length_prefixed(cbs, &id), VMENC_E_TRUNCATED);
    VMENC_ENSURE(vmenc_cbs_len(&id) >= 1 && vmenc_cbs_len(&id) <= VMENC_KS_ID_MAX, VMENC_E_PARSE);
    VMENC_ENSURE(printable_id(vmenc_cbs_data(&id), vmenc_cbs_len(&id)), VMENC_E_BAD_ENCODING);
    VMENC_ENSURE(vmenc_cbs_get_u8_length_prefixed(cbs, &name), VMENC_E_TRUNCATED);
    VMENC_ENSURE(clean_name(vmenc_cbs_data(&name), vmenc_cbs_len(&name)), VMENC_E_BAD_ENCODING);
    uint8_t state;
    VMENC_ENSURE(vmenc_cbs_get_u8(cbs, &state), VMENC_E_TRUNCATED);
    VMENC_ENSURE(state >= VMENC_KS_ACTIVE && state <= VMENC_KS_DESTROYED, VMENC_E_PARSE);
    uint64_t created;
    VMENC_ENSURE(vmenc_cbs_get_u64(cbs, &created), VMENC_E_TRUNCATED);
    VMENC_ENSURE(vmenc_cbs_copy_bytes(cbs, e->key, VMENC_KS_KEY_BYTES), VMENC_E_TRUNCATED);
    if (state == VMENC_KS_DESTROYED)
        VMENC_ENSURE(sodium_is_zero(e->key, VMENC_KS_KEY_BYTES), VMENC_E_PARSE);
    memcpy(e->id, vmenc_cbs_data(&id), vmenc_cbs_len(&id));
    e->id[vmenc_cbs_len(&id)] = '\0';
    memcpy(e->name, vmenc_cbs_data(&name), vmenc_cbs_len(&name));
    e->name[vmenc_cbs_len(&name)] = '\0';
    e->state = state;
    e->created_ms = created;
    return VMENC_OK;
}

vmenc_status vmenc_ks_plain_parse(const uint8_t *data, size_t len, vmenc_ks_store **out) {
    VMENC_ENSURE(data != NULL || len == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE_REF(out);
    vmenc_cbs cbs;
    vmenc_cbs_init(&cbs, data, len);
    uint32_t num;
    VMENC_ENSURE(vmenc_cbs_get_u32(&cbs, &num), VMENC_E_TRUNCATED);
    VMENC_ENSURE(num <= VMENC_KS_MAX_KEYS, VMENC_E_TOO_LARGE);
    /* Each entry takes at least 1+1+1+1+8+32 bytes: reject impossible counts
     * before allocating for them. */
    VMENC_ENSURE((uint64_t)num * 44u <= vmenc_cbs_len(&cbs), VMENC_E_TRUNCATED);
    vmenc_ks_store *s = NULL;
    VMENC_GUARD(vmenc_ks_store_new(&s));
    vmenc_status st = store_reserve(s, num);
    vmenc_ks_entry *e = vmenc_secure_alloc(sizeof(*e));
    if (e == NULL && st == VMENC_OK)
        st = VMENC_E_NOMEM;
    for (uint32_t i = 0; st == VMENC_OK && i < num; i++) {
        memset(e, 0, sizeof(*e));
        st = parse_entry(&cbs, e);
        if (st == VMENC_OK) {
            st = vmenc_ks_store_add(s, e);
            if (st == VMENC_E_EXISTS)
                st = VMENC_E_PARSE; /* duplicate ID */
        }
    }
    vmenc_secure_free(e);
    if (st == VMENC_OK && vmenc_cbs_len(&cbs) != 0)
        st = VMENC_E_TRAILING_DATA;
    if (st != VMENC_OK) {
        vmenc_ks_store_free(s);
        return st;
    }
    *out = s;
    return VMENC_OK;
}

vmenc_status vmenc_ks_plain_serialize(const vmenc_ks_store *s, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(s != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(s->num <= VMENC_KS_MAX_KEYS, VMENC_E_LIMIT);
    vmenc_cbb cbb;
    VMENC_GUARD(vmenc_cbb_init_secure(&cbb, 4 + s->num * 128));
    vmenc_cbb_set_max(&cbb, VMENC_KS_MAX_CT - VMENC_KS_TAG_BYTES);
    vmenc_cbb_add_u32(&cbb, (uint32_t)s->num);
    for (size_t i = 0; i < s->num; i++) {
        const vmenc_ks_entry *e = &s->entries[i];
        size_t idn = strlen(e->id), nn = strlen(e->name);
        if (idn == 0 || idn > VMENC_KS_ID_MAX || nn > VMENC_KS_NAME_MAX || e->state < VMENC_KS_ACTIVE ||
            e->state > VMENC_KS_DESTROYED) {
            vmenc_cbb_cleanup(&cbb);
            return VMENC_E_INTERNAL;
        }
        vmenc_cbb_add_u8(&cbb, (uint8_t)idn);
        vmenc_cbb_add_bytes(&cbb, (const uint8_t *)e->id, idn);
        vmenc_cbb_add_u8(&cbb, (uint8_t)nn);
        vmenc_cbb_add_bytes(&cbb, (const uint8_t *)e->name, nn);
        vmenc_cbb_add_u8(&cbb, e->state);
        vmenc_cbb_add_u64(&cbb, e->created_ms);
        vmenc_cbb_add_bytes(&cbb, e->key, VMENC_KS_KEY_BYTES);
    }
    return vmenc_cbb_finish(&cbb, out, out_len);
}

/* ---- header codec -----------------------------------------------------------
 *
 *   "VMKS" | u8 version (1) | u8 kdf (1 = Argon2id v1.3) | u8 aead
 *   (1 = XChaCha20-Poly1305-IETF) | u8 flags (0) | u32 opslimit |
 *   u32 memlimit_kib | 16 salt | 16 verifier | 24 nonce | u32 ct_len
 *   followed by exactly ct_len bytes of ciphertext+tag. All big-endian.
 */

vmenc_status vmenc_ks_header_parse(vmenc_cbs *cbs, vmenc_ks_header *out) {
    VMENC_ENSURE(cbs != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vmenc_cbs c = *cbs;
    vmenc_ks_header h;
    vmenc_cbs magic;
    VMENC_ENSURE(vmenc_cbs_get_bytes(&c, &magic, 4), VMENC_E_TRUNCATED);
    VMENC_ENSURE(memcmp(vmenc_cbs_data(&magic), VMENC_KS_MAGIC, 4) == 0, VMENC_E_BAD_MAGIC);
    VMENC_ENSURE(vmenc_cbs_get_u8(&c, &h.version), VMENC_E_TRUNCATED);
    VMENC_ENSURE(h.version == VMENC_KS_VERSION, VMENC_E_BAD_VERSION);
    VMENC_ENSURE(vmenc_cbs_get_u8(&c, &h.kdf) && vmenc_cbs_get_u8(&c, &h.aead) && vmenc_cbs_get_u8(&c, &h.flags),
                 VMENC_E_TRUNCATED);
    VMENC_ENSURE(h.kdf == VMENC_KS_KDF_ARGON2ID13 && h.aead == VMENC_KS_AEAD_XCHACHA20POLY1305,
                 VMENC_E_BAD_ALGORITHM);
    VMENC_ENSURE(h.flags == 0, VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_get_u32(&c, &h.opslimit) && vmenc_cbs_get_u32(&c, &h.memlimit_kib), VMENC_E_TRUNCATED);
    VMENC_ENSURE(h.opslimit >= VMENC_KS_OPS_MIN && h.opslimit <= VMENC_KS_OPS_MAX, VMENC_E_TOO_LARGE);
    VMENC_ENSURE(h.memlimit_kib >= VMENC_KS_MEM_KIB_MIN && h.memlimit_kib <= VMENC_KS_MEM_KIB_MAX,
                 VMENC_E_TOO_LARGE);
    VMENC_ENSURE(vmenc_cbs_copy_bytes(&c, h.salt, sizeof(h.salt)) &&
                     vmenc_cbs_copy_bytes(&c, h.verifier, sizeof(h.verifier)) &&
                     vmenc_cbs_copy_bytes(&c, h.nonce, sizeof(h.nonce)) && vmenc_cbs_get_u32(&c, &h.ct_len),
                 VMENC_E_TRUNCATED);
    VMENC_ENSURE(h.ct_len >= VMENC_KS_TAG_BYTES + 4 && h.ct_len <= VMENC_KS_MAX_CT, VMENC_E_TOO_LARGE);
    VMENC_ENSURE(vmenc_cbs_len(&c) >= h.ct_len, VMENC_E_TRUNCATED);
    VMENC_ENSURE(vmenc_cbs_len(&c) == h.ct_len, VMENC_E_TRAILING_DATA);
    *out = h;
    *cbs = c;
    return VMENC_OK;
}

void vmenc_ks_header_write(vmenc_cbb *cbb, const vmenc_ks_header *h) {
    vmenc_cbb_add_bytes(cbb, (const uint8_t *)VMENC_KS_MAGIC, 4);
    vmenc_cbb_add_u8(cbb, h->version);
    vmenc_cbb_add_u8(cbb, h->kdf);
    vmenc_cbb_add_u8(cbb, h->aead);
    vmenc_cbb_add_u8(cbb, h->flags);
    vmenc_cbb_add_u32(cbb, h->opslimit);
    vmenc_cbb_add_u32(cbb, h->memlimit_kib);
    vmenc_cbb_add_bytes(cbb, h->salt, sizeof(h->salt));
    vmenc_cbb_add_bytes(cbb, h->verifier, sizeof(h->verifier));
    vmenc_cbb_add_bytes(cbb, h->nonce, sizeof(h->nonce));
    vmenc_cbb_add_u32(cbb, h->ct_len);
}

/* ---- key derivation and sealing ------------------------------------------- */

vmenc_status vmenc_ks_derive(const vmenc_secret *pass, const vmenc_ks_header *h, vmenc_secret **out) {
    VMENC_ENSURE(pass != NULL && h != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(h->opslimit >= VMENC_KS_OPS_MIN && h->opslimit <= VMENC_KS_OPS_MAX, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(h->memlimit_kib >= VMENC_KS_MEM_KIB_MIN && h->memlimit_kib <= VMENC_KS_MEM_KIB_MAX,
                 VMENC_E_INVALID_ARG);
    vmenc_secret *k = NULL;
    VMENC_GUARD(vmenc_secret_new(VMENC_KS_KEY_BYTES, &k));
    if (crypto_pwhash(k->bytes, k->len, (const char *)pass->bytes, pass->len, h->salt, h->opslimit,
                      (size_t)h->memlimit_kib * 1024u, crypto_pwhash_ALG_ARGON2ID13) != 0) {
        vmenc_secret_free(k);
        return VMENC_E_NOMEM; /* libsodium fails only when it cannot get the memory */
    }
    *out = k;
    return VMENC_OK;
}

static void compute_verifier(const vmenc_secret *master, uint8_t out[VMENC_KS_VERIFIER_BYTES]) {
    crypto_generichash(out, VMENC_KS_VERIFIER_BYTES, k_verifier_label, sizeof(k_verifier_label) - 1,
                       master->bytes, master->len);
}

static vmenc_status enc_key(const vmenc_secret *master, vmenc_secret **out) {
    vmenc_secret *k = NULL;
    VMENC_GUARD(vmenc_secret_new(crypto_aead_xchacha20poly1305_ietf_KEYBYTES, &k));
    crypto_generichash(k->bytes, k->len, k_enc_label, sizeof(k_enc_label) - 1, master->bytes, master->len);
    *out = k;
    return VMENC_OK;
}

vmenc_status vmenc_ks_seal(const vmenc_ks_store *s, const vmenc_secret *master, const vmenc_ks_header *hin,
                           uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(s != NULL && master != NULL && hin != NULL && out != NULL && out_len != NULL,
                 VMENC_E_INVALID_ARG);
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    VMENC_GUARD(vmenc_ks_plain_serialize(s, &pt, &pt_len));
    vmenc_ks_header h = *hin;
    h.version = VMENC_KS_VERSION;
    h.kdf = VMENC_KS_KDF_ARGON2ID13;
    h.aead = VMENC_KS_AEAD_XCHACHA20POLY1305;
    h.flags = 0;
    randombytes_buf(h.nonce, sizeof(h.nonce));
    compute_verifier(master, h.verifier);
    h.ct_len = (uint32_t)(pt_len + VMENC_KS_TAG_BYTES);

    vmenc_secret *k = NULL;
    vmenc_cbb cbb;
    vmenc_status st = enc_key(master, &k);
    if (st == VMENC_OK)
        st = vmenc_cbb_init(&cbb, VMENC_KS_HEADER_BYTES + h.ct_len);
    if (st != VMENC_OK) {
        vmenc_secret_free(k);
        vmenc_secure_free(pt);
        return st;
    }
    vmenc_ks_header_write(&cbb, &h);
    uint8_t *ct = NULL;
    vmenc_cbb_add_space(&cbb, &ct, h.ct_len);
    if (ct != NULL) {
        /* AAD: every header byte, so no field can be changed unnoticed. */
        unsigned long long clen = 0;
        crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &clen, pt, pt_len, vmenc_cbb_data(&cbb),
                                                   VMENC_KS_HEADER_BYTES, NULL, h.nonce, k->bytes);
    }
    vmenc_secret_free(k);
    vmenc_secure_free(pt);
    return vmenc_cbb_finish(&cbb, out, out_len);
}

vmenc_status vmenc_ks_open(const uint8_t *file, size_t file_len, const vmenc_ks_header *h,
                           const vmenc_secret *master, vmenc_ks_store **out) {
    VMENC_ENSURE(file != NULL && h != NULL && master != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(file_len == VMENC_KS_HEADER_BYTES + (size_t)h->ct_len, VMENC_E_INVALID_ARG);
    uint8_t ver[VMENC_KS_VERIFIER_BYTES];
    compute_verifier(master, ver);
    bool ok = vmenc_ct_equal(ver, h->verifier, sizeof(ver));
    sodium_memzero(ver, sizeof(ver));
    VMENC_ENSURE(ok, VMENC_E_WRONG_PASSPHRASE);

    size_t pt_cap = h->ct_len - VMENC_KS_TAG_BYTES;
    uint8_t *pt = vmenc_secure_alloc(pt_cap);
    if (pt == NULL)
        return VMENC_E_NOMEM;
    vmenc_secret *k = NULL;
    vmenc_status st = enc_key(master, &k);
    if (st == VMENC_OK) {
        unsigned long long plen = 0;
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &plen, NULL, file + VMENC_KS_HEADER_BYTES, h->ct_len,
                                                       file, VMENC_KS_HEADER_BYTES, h->nonce, k->bytes) != 0 ||
            plen != pt_cap)
            st = VMENC_E_AUTH;
    }
    vmenc_secret_free(k);
    if (st == VMENC_OK)
        st = vmenc_ks_plain_parse(pt, pt_cap, out);
    vmenc_secure_free(pt);
    return st;
}

vmenc_status vmenc_ks_new_uuid(char out[37]) {
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    VMENC_GUARD(vmenc_random_bytes(b, sizeof(b)));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
    return VMENC_OK;
}
