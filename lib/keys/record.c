/*
 * lib/keys/record.c - the wrapped-key record: binary and text codecs, and
 * the additional data that binds a record to its header and context.
 * The format is specified in docs/wrapped-key-format.md:
 *
 *   "VMWK" | u8 version (1) | u8 alg | u8-len alias | u8-len KEK ID |
 *   u8-len nonce | u16-len ciphertext
 *
 * Reading and writing live together here so the two cannot drift apart.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "keys/keys_impl.h"

/* vmenc_wk_expected_lengths gives the only nonce and ciphertext lengths a
 * record of |alg| may carry (the payload is always one DEK). */
vmenc_status vmenc_wk_expected_lengths(vmenc_wrap_alg alg, size_t *nonce_len, size_t *ct_len) {
    switch (alg) {
    case VMENC_WRAP_AES256_GCM:
        *nonce_len = VMENC_WRAP_GCM_NONCE_BYTES;
        *ct_len = VMENC_WRAP_GCM_CT_BYTES;
        return VMENC_OK;
    case VMENC_WRAP_AES256_KWP:
        *nonce_len = 0;
        *ct_len = VMENC_WRAP_KWP_CT_BYTES;
        return VMENC_OK;
    }
    return VMENC_E_BAD_ALGORITHM;
}

/* name_bytes_ok: 1..max bytes, none of them a C0 control character or DEL
 * (so a name is a printable C string that cannot smuggle a NUL, newline or
 * escape into logs and config files). UTF-8 above 0x7f is allowed. */
static bool name_bytes_ok(const uint8_t *p, size_t len, size_t max) {
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (p[i] < 0x20 || p[i] == 0x7f)
            return false;
    return true;
}

vmenc_status vmenc_wk_check_name(const char *s, size_t max, size_t *out_len) {
    VMENC_ENSURE_REF(s);
    size_t len = strnlen(s, max + 1);
    VMENC_ENSURE(name_bytes_ok((const uint8_t *)s, len, max), VMENC_E_INVALID_ARG);
    *out_len = len;
    return VMENC_OK;
}

void vmenc_wk_write_header(const vmenc_wrapped_key *wk, vmenc_cbb *cbb) {
    vmenc_cbb_add_bytes(cbb, (const uint8_t *)VMENC_WK_MAGIC, 4);
    vmenc_cbb_add_u8(cbb, wk->version);
    vmenc_cbb_add_u8(cbb, (uint8_t)wk->alg);
    vmenc_cbb_add_u8(cbb, (uint8_t)wk->alias_len);
    vmenc_cbb_add_bytes(cbb, (const uint8_t *)wk->alias, wk->alias_len);
    vmenc_cbb_add_u8(cbb, (uint8_t)wk->kek_id_len);
    vmenc_cbb_add_bytes(cbb, (const uint8_t *)wk->kek_id, wk->kek_id_len);
    vmenc_cbb_add_u8(cbb, (uint8_t)wk->nonce_len);
    vmenc_cbb_add_bytes(cbb, wk->nonce, wk->nonce_len);
    vmenc_cbb_add_u16(cbb, (uint16_t)wk->ct_len);
}

static size_t ctx_field_len(const char *s) {
    return s != NULL ? strnlen(s, VMENC_WRAP_CONTEXT_FIELD_MAX + 1) : 0;
}

static void add_ctx_field(vmenc_cbb *cbb, const char *s) {
    size_t len = ctx_field_len(s);
    vmenc_cbb_add_u8(cbb, (uint8_t)len);
    vmenc_cbb_add_bytes(cbb, (const uint8_t *)s, len);
}

/* The context struct's first version ends after |purpose|. */
#define CTX_V1_SIZE (offsetof(vmenc_wrap_context, purpose) + sizeof(const char *))

vmenc_status vmenc_wk_build_aad(const vmenc_wrapped_key *wk, const vmenc_wrap_context *ctx, uint8_t *buf,
                                size_t cap, size_t *out_len) {
    VMENC_ENSURE(wk != NULL && ctx != NULL && buf != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(ctx->struct_size >= CTX_V1_SIZE, VMENC_E_ABI_VERSION);
    VMENC_ENSURE(ctx_field_len(ctx->vm_uuid) <= VMENC_WRAP_CONTEXT_FIELD_MAX &&
                     ctx_field_len(ctx->disk_id) <= VMENC_WRAP_CONTEXT_FIELD_MAX &&
                     ctx_field_len(ctx->purpose) <= VMENC_WRAP_CONTEXT_FIELD_MAX,
                 VMENC_E_INVALID_ARG);
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, buf, cap);
    vmenc_wk_write_header(wk, &cbb);
    /* A label, then each field length-prefixed: no two different contexts
     * encode to the same bytes. */
    vmenc_cbb_add_bytes(&cbb, (const uint8_t *)VMENC_WK_CTX_LABEL, sizeof(VMENC_WK_CTX_LABEL) - 1);
    add_ctx_field(&cbb, ctx->vm_uuid);
    add_ctx_field(&cbb, ctx->disk_id);
    add_ctx_field(&cbb, ctx->purpose);
    VMENC_ENSURE(vmenc_cbb_ok(&cbb), VMENC_E_BUFFER_TOO_SMALL);
    *out_len = vmenc_cbb_len(&cbb);
    return VMENC_OK;
}

/* ---- binary ---------------------------------------------------------------- */

/* parse_name copies a u8-length-prefixed name into |dst| (NUL-terminated). */
static vmenc_status parse_name(vmenc_cbs *cbs, size_t max, char *dst, size_t *out_len) {
    vmenc_cbs name;
    VMENC_ENSURE(vmenc_cbs_get_u8_length_prefixed(cbs, &name), VMENC_E_TRUNCATED);
    size_t len = vmenc_cbs_len(&name);
    VMENC_ENSURE(len <= max, VMENC_E_TOO_LARGE);
    VMENC_ENSURE(name_bytes_ok(vmenc_cbs_data(&name), len, max), VMENC_E_PARSE);
    memcpy(dst, vmenc_cbs_data(&name), len);
    dst[len] = '\0';
    *out_len = len;
    return VMENC_OK;
}

static vmenc_status parse_record(const uint8_t *data, size_t len, vmenc_wrapped_key *wk) {
    vmenc_cbs cbs, magic, nonce, ct;
    vmenc_cbs_init(&cbs, data, len);
    uint8_t version, alg;
    VMENC_ENSURE(vmenc_cbs_get_bytes(&cbs, &magic, 4), VMENC_E_TRUNCATED);
    /* Public bytes: a plain comparison is fine. */
    VMENC_ENSURE(memcmp(vmenc_cbs_data(&magic), VMENC_WK_MAGIC, 4) == 0, VMENC_E_BAD_MAGIC);
    VMENC_ENSURE(vmenc_cbs_get_u8(&cbs, &version), VMENC_E_TRUNCATED);
    VMENC_ENSURE(version == VMENC_WK_VERSION, VMENC_E_BAD_VERSION);
    VMENC_ENSURE(vmenc_cbs_get_u8(&cbs, &alg), VMENC_E_TRUNCATED);
    size_t want_nonce, want_ct;
    VMENC_GUARD(vmenc_wk_expected_lengths((vmenc_wrap_alg)alg, &want_nonce, &want_ct));
    wk->version = version;
    wk->alg = (vmenc_wrap_alg)alg;
    VMENC_GUARD(parse_name(&cbs, VMENC_PROVIDER_ALIAS_MAX, wk->alias, &wk->alias_len));
    VMENC_GUARD(parse_name(&cbs, VMENC_KEY_ID_MAX, wk->kek_id, &wk->kek_id_len));
    VMENC_ENSURE(vmenc_cbs_get_u8_length_prefixed(&cbs, &nonce), VMENC_E_TRUNCATED);
    VMENC_ENSURE(vmenc_cbs_len(&nonce) == want_nonce, VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_get_u16_length_prefixed(&cbs, &ct), VMENC_E_TRUNCATED);
    VMENC_ENSURE(vmenc_cbs_len(&ct) == want_ct, VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_len(&cbs) == 0, VMENC_E_TRAILING_DATA);
    wk->nonce_len = want_nonce;
    wk->ct_len = want_ct;
    if (want_nonce > 0)
        memcpy(wk->nonce, vmenc_cbs_data(&nonce), want_nonce);
    memcpy(wk->ct, vmenc_cbs_data(&ct), want_ct);
    return VMENC_OK;
}

vmenc_status vmenc_wrapped_key_parse(const uint8_t *data, size_t len, vmenc_wrapped_key **out) {
    VMENC_ENSURE(out != NULL && (data != NULL || len == 0), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(len <= VMENC_WK_MAX_BYTES, VMENC_E_TOO_LARGE);
    vmenc_wrapped_key *wk = calloc(1, sizeof(*wk));
    if (wk == NULL)
        return VMENC_E_NOMEM;
    vmenc_status rv = parse_record(data, len, wk);
    if (rv != VMENC_OK) {
        free(wk);
        return rv;
    }
    *out = wk;
    return VMENC_OK;
}

/* write_record appends the whole binary record to |cbb|. */
static void write_record(const vmenc_wrapped_key *wk, vmenc_cbb *cbb) {
    vmenc_wk_write_header(wk, cbb);
    vmenc_cbb_add_bytes(cbb, wk->ct, wk->ct_len);
}

vmenc_status vmenc_wrapped_key_serialize(const vmenc_wrapped_key *wk, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(wk != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    uint8_t tmp[VMENC_WK_MAX_BYTES];
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, tmp, sizeof(tmp));
    write_record(wk, &cbb);
    VMENC_ENSURE(vmenc_cbb_ok(&cbb), VMENC_E_INTERNAL);
    size_t len = vmenc_cbb_len(&cbb);
    uint8_t *buf = vmenc_buffer_alloc_internal(len);
    if (buf == NULL)
        return VMENC_E_NOMEM;
    memcpy(buf, tmp, len);
    *out = buf;
    *out_len = len;
    return VMENC_OK;
}

/* ---- text: "vmwk1:" || base64 (original alphabet, padded) ---------------- */

#define PREFIX_LEN (sizeof(VMENC_WK_TEXT_PREFIX) - 1u)
#define B64_MAX (((VMENC_WK_MAX_BYTES + 2u) / 3u) * 4u)
#define TEXT_MAX (PREFIX_LEN + B64_MAX)

vmenc_status vmenc_wrapped_key_to_text(const vmenc_wrapped_key *wk, char **out) {
    VMENC_ENSURE(wk != NULL && out != NULL, VMENC_E_INVALID_ARG);
    uint8_t bin[VMENC_WK_MAX_BYTES];
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, bin, sizeof(bin));
    write_record(wk, &cbb);
    VMENC_ENSURE(vmenc_cbb_ok(&cbb), VMENC_E_INTERNAL);
    size_t bin_len = vmenc_cbb_len(&cbb);
    size_t b64_cap = sodium_base64_encoded_len(bin_len, sodium_base64_VARIANT_ORIGINAL); /* incl. NUL */
    char *text = vmenc_buffer_alloc_internal(PREFIX_LEN + b64_cap);
    if (text == NULL)
        return VMENC_E_NOMEM;
    memcpy(text, VMENC_WK_TEXT_PREFIX, PREFIX_LEN);
    sodium_bin2base64(text + PREFIX_LEN, b64_cap, bin, bin_len, sodium_base64_VARIANT_ORIGINAL);
    *out = text;
    return VMENC_OK;
}

vmenc_status vmenc_wrapped_key_parse_text(const char *text, size_t len, vmenc_wrapped_key **out) {
    VMENC_ENSURE(out != NULL && (text != NULL || len == 0), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(len <= TEXT_MAX, VMENC_E_TOO_LARGE);
    vmenc_cbs cbs, prefix;
    vmenc_cbs_init(&cbs, (const uint8_t *)text, len);
    VMENC_ENSURE(vmenc_cbs_get_bytes(&cbs, &prefix, PREFIX_LEN), VMENC_E_TRUNCATED);
    VMENC_ENSURE(memcmp(vmenc_cbs_data(&prefix), VMENC_WK_TEXT_PREFIX, PREFIX_LEN) == 0, VMENC_E_BAD_MAGIC);
    const char *b64 = (const char *)vmenc_cbs_data(&cbs);
    size_t b64_len = vmenc_cbs_len(&cbs);
    /* Strict: padded, no whitespace or other characters (ignore = NULL),
     * every character consumed, and canonical (re-encoding gives the same
     * text, so unused low bits of the last character must be zero). */
    VMENC_ENSURE(b64_len > 0 && b64_len % 4 == 0, VMENC_E_BAD_ENCODING);
    uint8_t bin[VMENC_WK_MAX_BYTES + 2];
    size_t bin_len = 0;
    const char *end = NULL;
    if (sodium_base642bin(bin, sizeof(bin), b64, b64_len, NULL, &bin_len, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != b64 + b64_len)
        return VMENC_E_BAD_ENCODING;
    char again[B64_MAX + 1];
    VMENC_ENSURE(sodium_base64_encoded_len(bin_len, sodium_base64_VARIANT_ORIGINAL) == b64_len + 1,
                 VMENC_E_BAD_ENCODING);
    sodium_bin2base64(again, sizeof(again), bin, bin_len, sodium_base64_VARIANT_ORIGINAL);
    VMENC_ENSURE(memcmp(again, b64, b64_len) == 0, VMENC_E_BAD_ENCODING);
    return vmenc_wrapped_key_parse(bin, bin_len, out);
}

/* ---- accessors -------------------------------------------------------------- */

vmenc_wrap_alg vmenc_wrapped_key_alg(const vmenc_wrapped_key *wk) {
    return wk != NULL ? wk->alg : (vmenc_wrap_alg)0;
}

const char *vmenc_wrapped_key_provider_alias(const vmenc_wrapped_key *wk) {
    return wk != NULL ? wk->alias : NULL;
}

const char *vmenc_wrapped_key_kek_id(const vmenc_wrapped_key *wk) { return wk != NULL ? wk->kek_id : NULL; }

void vmenc_wrapped_key_ciphertext_internal(const vmenc_wrapped_key *wk, const uint8_t **nonce,
                                           size_t *nonce_len, const uint8_t **ct, size_t *ct_len) {
    if (wk == NULL)
        return;
    if (nonce != NULL)
        *nonce = wk->nonce;
    if (nonce_len != NULL)
        *nonce_len = wk->nonce_len;
    if (ct != NULL)
        *ct = wk->ct;
    if (ct_len != NULL)
        *ct_len = wk->ct_len;
}

void vmenc_wrapped_key_free(vmenc_wrapped_key *wk) {
    if (wk == NULL)
        return;
    sodium_memzero(wk, sizeof(*wk));
    free(wk);
}
