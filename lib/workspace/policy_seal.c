/*
 * lib/workspace/policy_seal.c - the sealed policy document's bytes: the
 * canonical policy JSON followed by one trailer line that carries a
 * generation number and a MAC (format: docs/workspace.md, "The sealed
 * policy document"). Pure: bytes in, a view out; the MAC is BLAKE2b-256
 * under the workspace's policy seal key, which is derived here from the
 * audit chain key. No I/O, no locks, no key provider (the seal is verified
 * and written by policy_store.c; fuzz/policy_seal_fuzz.c drives the
 * parser).
 *
 * Safety rule: nothing of the document is trusted before the MAC over the
 * workspace ID, the generation and every byte of the JSON checks out, and
 * the comparison is constant-time.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workspace/ws_internal.h"

/* Domain separation: the seal key is a keyed hash of this constant under the
 * audit chain key (which the audit layer itself uses only with its own
 * constants, lib/audit/record.c), and the MAC input starts with its own. */
static const char k_seal_key_domain[] = "vmenc-workspace-v1 policy seal key";
static const char k_seal_mac_domain[] = "vmenc-policy-seal-v1\n";

static const char k_trailer_prefix[] = WS_SEAL_PREFIX;
static const char k_gen_field[] = " generation=";
static const char k_mac_field[] = " mac=";

static int hex_val(uint8_t c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case is not canonical */
}

/* get_literal consumes |lit| exactly. */
static bool get_literal(vmenc_cbs *c, const char *lit) {
    size_t n = strlen(lit);
    if (vmenc_cbs_len(c) < n || memcmp(vmenc_cbs_data(c), lit, n) != 0)
        return false;
    return vmenc_cbs_skip(c, n);
}

/* get_decimal consumes a canonical decimal u64 (no sign, no leading zero
 * unless the value is 0, at most 20 digits, no overflow). */
static bool get_decimal(vmenc_cbs *c, uint64_t *out) {
    uint64_t v = 0;
    size_t digits = 0;
    uint8_t d;
    while (vmenc_cbs_peek_u8(c, &d) && d >= '0' && d <= '9') {
        if (digits == 1 && v == 0)
            return false; /* leading zero */
        if (v > (UINT64_MAX - (uint64_t)(d - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(d - '0');
        digits++;
        (void)vmenc_cbs_skip(c, 1);
    }
    if (digits == 0)
        return false;
    *out = v;
    return true;
}

static bool get_hex(vmenc_cbs *c, uint8_t *out, size_t n) {
    vmenc_cbs h;
    if (!vmenc_cbs_get_bytes(c, &h, 2 * n))
        return false;
    const uint8_t *p = vmenc_cbs_data(&h);
    for (size_t i = 0; i < n; i++) {
        int hi = hex_val(p[2 * i]), lo = hex_val(p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

vmenc_status ws_seal_split(const uint8_t *doc, size_t len, ws_seal_view *out) {
    VMENC_ENSURE(out != NULL && (doc != NULL || len == 0), VMENC_E_INVALID_ARG);
    memset(out, 0, sizeof(*out));
    out->json = doc;
    out->json_len = len;
    /* The trailer is the last line: it starts after the last LF that is not
     * the file's final byte. */
    if (len == 0 || doc[len - 1] != '\n')
        return VMENC_OK;
    size_t start = len - 1;
    while (start > 0 && doc[start - 1] != '\n')
        start--;
    size_t plen = sizeof(k_trailer_prefix) - 1;
    if (len - start < plen || memcmp(doc + start, k_trailer_prefix, plen) != 0)
        return VMENC_OK; /* no trailer: an unsealed document */
    out->json_len = start;
    out->has_seal = 1;
    vmenc_cbs c;
    vmenc_cbs_init(&c, doc + start, len - start);
    uint8_t lf = 0;
    if (!get_literal(&c, k_trailer_prefix) || !get_literal(&c, WS_SEAL_VERSION) || !get_literal(&c, k_gen_field) ||
        !get_decimal(&c, &out->generation) || !get_literal(&c, k_mac_field) ||
        !get_hex(&c, out->mac, WS_SEAL_MAC_BYTES) || !vmenc_cbs_get_u8(&c, &lf) || lf != '\n' ||
        vmenc_cbs_len(&c) != 0)
        return VMENC_E_PARSE;
    out->well_formed = 1;
    return VMENC_OK;
}

size_t ws_seal_trailer(uint64_t generation, const uint8_t mac[WS_SEAL_MAC_BYTES], char *out, size_t out_cap) {
    char hex[2 * WS_SEAL_MAC_BYTES + 1];
    for (size_t i = 0; i < WS_SEAL_MAC_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    int n = snprintf(out, out_cap, "%s%s%s%llu%s%s\n", k_trailer_prefix, WS_SEAL_VERSION, k_gen_field,
                     (unsigned long long)generation, k_mac_field, hex);
    return n > 0 && (size_t)n < out_cap ? (size_t)n : 0;
}

vmenc_status ws_seal_derive_key(const vmenc_secret *chain_key, vmenc_secret **out) {
    VMENC_ENSURE(chain_key != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(chain_key->len >= crypto_generichash_KEYBYTES_MIN && chain_key->len <= crypto_generichash_KEYBYTES_MAX,
                 VMENC_E_INVALID_ARG);
    vmenc_secret *k = NULL;
    VMENC_GUARD(vmenc_secret_new(WS_SEAL_KEY_BYTES, &k));
    if (crypto_generichash(k->bytes, k->len, (const uint8_t *)k_seal_key_domain, sizeof(k_seal_key_domain) - 1,
                           chain_key->bytes, chain_key->len) != 0) {
        vmenc_secret_free(k);
        return VMENC_E_CRYPTO;
    }
    *out = k;
    return VMENC_OK;
}

vmenc_status ws_seal_mac(const vmenc_secret *key, const char *ws_id, uint64_t generation, const uint8_t *json,
                         size_t json_len, uint8_t out[WS_SEAL_MAC_BYTES]) {
    VMENC_ENSURE(key != NULL && ws_id != NULL && (json != NULL || json_len == 0), VMENC_E_INVALID_ARG);
    size_t id_len = strlen(ws_id);
    VMENC_ENSURE(id_len <= 255, VMENC_E_INVALID_ARG);
    uint8_t id_len8 = (uint8_t)id_len, gen[8];
    for (size_t i = 0; i < 8; i++)
        gen[i] = (uint8_t)(generation >> (8 * i));
    crypto_generichash_state st;
    vmenc_status rv = VMENC_OK;
    if (crypto_generichash_init(&st, key->bytes, key->len, WS_SEAL_MAC_BYTES) != 0 ||
        crypto_generichash_update(&st, (const uint8_t *)k_seal_mac_domain, sizeof(k_seal_mac_domain) - 1) != 0 ||
        crypto_generichash_update(&st, &id_len8, 1) != 0 ||
        crypto_generichash_update(&st, (const uint8_t *)ws_id, id_len) != 0 ||
        crypto_generichash_update(&st, gen, sizeof(gen)) != 0 ||
        crypto_generichash_update(&st, json, json_len) != 0 ||
        crypto_generichash_final(&st, out, WS_SEAL_MAC_BYTES) != 0)
        rv = VMENC_E_CRYPTO;
    sodium_memzero(&st, sizeof(st)); /* the state holds the keyed block */
    return rv;
}

vmenc_status ws_seal_verify(const vmenc_secret *key, const char *ws_id, const ws_seal_view *v) {
    VMENC_ENSURE(v != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(v->has_seal && v->well_formed, VMENC_E_AUTH);
    uint8_t mac[WS_SEAL_MAC_BYTES];
    VMENC_GUARD(ws_seal_mac(key, ws_id, v->generation, v->json, v->json_len, mac));
    return vmenc_ct_equal(mac, v->mac, sizeof(mac)) ? VMENC_OK : VMENC_E_AUTH;
}

vmenc_status ws_seal_build(const vmenc_secret *key, const char *ws_id, uint64_t generation, const uint8_t *json,
                           size_t json_len, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    /* The trailer must start a line of its own. */
    VMENC_ENSURE(json_len > 0 && json[json_len - 1] == '\n', VMENC_E_INVALID_ARG);
    uint8_t mac[WS_SEAL_MAC_BYTES];
    VMENC_GUARD(ws_seal_mac(key, ws_id, generation, json, json_len, mac));
    char trailer[WS_SEAL_TRAILER_MAX];
    size_t tlen = ws_seal_trailer(generation, mac, trailer, sizeof(trailer));
    VMENC_ENSURE(tlen > 0, VMENC_E_INTERNAL);
    uint8_t *buf = malloc(json_len + tlen + 1);
    VMENC_ENSURE(buf != NULL, VMENC_E_NOMEM);
    memcpy(buf, json, json_len);
    memcpy(buf + json_len, trailer, tlen);
    buf[json_len + tlen] = '\0';
    *out = buf;
    *out_len = json_len + tlen;
    return VMENC_OK;
}
