/*
 * lib/vm/format/coredump_format.c - the core-dump key file and coredump.cfg:
 * the `key = "value"` text of vm_kv with a strict schema on top (layouts in
 * coredump_format.h and docs/coredump.md). Both files are read from the
 * datastore, so both are hostile input: every field is checked, nothing
 * unknown is kept, and serialise(parse(x)) is the canonical form of x.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm/format/coredump_format.h"
#include "vm/format/descriptor.h"
#include "vm/format/kv.h"
#include "vm/format/schema.h"

#define CD_VERSION "1"
#define CD_KDF_NAME "argon2id13"

/* ---- field helpers ----------------------------------------------------------- */

static vmenc_status copy_field(const vm_kv *kv, const char *key, char *out, size_t cap, bool required) {
    const char *v = vm_kv_get(kv, key);
    if (v == NULL) {
        out[0] = '\0';
        return required ? VMENC_E_PARSE : VMENC_OK;
    }
    size_t n = strlen(v);
    VMENC_ENSURE(n > 0 && n < cap, VMENC_E_PARSE);
    memcpy(out, v, n + 1);
    return VMENC_OK;
}

/* parse_u64 accepts canonical decimal only (no sign, no leading zero). */
static vmenc_status parse_u64(const char *s, uint64_t *out) {
    VMENC_ENSURE(s != NULL && s[0] != '\0', VMENC_E_PARSE);
    VMENC_ENSURE(s[0] != '0' || s[1] == '\0', VMENC_E_PARSE);
    uint64_t v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        VMENC_ENSURE(*p >= '0' && *p <= '9', VMENC_E_PARSE);
        VMENC_ENSURE(v <= (UINT64_MAX - (uint64_t)(*p - '0')) / 10, VMENC_E_PARSE);
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return VMENC_OK;
}

/* b64_exact decodes canonical, padded standard base64 of exactly |len|
 * bytes. */
static vmenc_status b64_exact(const char *s, uint8_t *out, size_t len) {
    VMENC_ENSURE(s != NULL, VMENC_E_PARSE);
    size_t s_len = strlen(s), got = 0;
    const char *end = NULL;
    VMENC_ENSURE(s_len + 1 == sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL),
                 VMENC_E_BAD_ENCODING);
    VMENC_ENSURE(sodium_base642bin(out, len, s, s_len, NULL, &got, &end, sodium_base64_VARIANT_ORIGINAL) == 0 &&
                     got == len && end == s + s_len,
                 VMENC_E_BAD_ENCODING);
    /* Non-canonical trailing bits: re-encode and compare. */
    char again[256];
    VMENC_ENSURE(s_len < sizeof(again), VMENC_E_BAD_ENCODING);
    sodium_bin2base64(again, sizeof(again), out, len, sodium_base64_VARIANT_ORIGINAL);
    VMENC_ENSURE(strcmp(again, s) == 0, VMENC_E_BAD_ENCODING);
    return VMENC_OK;
}

static vmenc_status kv_set_b64(vm_kv *kv, const char *key, const uint8_t *data, size_t len) {
    char b64[256];
    VMENC_ENSURE(sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL) <= sizeof(b64), VMENC_E_INTERNAL);
    sodium_bin2base64(b64, sizeof(b64), data, len, sodium_base64_VARIANT_ORIGINAL);
    return vm_kv_set(kv, key, b64);
}

static vmenc_status kv_set_u64(vm_kv *kv, const char *key, uint64_t v) {
    char buf[24];
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
    return vm_kv_set(kv, key, buf);
}

/* only_keys: every entry is one of |allowed| (NULL-terminated), and the kv
 * holds no extent. */
static vmenc_status only_keys(const vm_kv *kv, const char *const *allowed) {
    VMENC_ENSURE(vm_kv_num_extents(kv) == 0, VMENC_E_PARSE);
    for (size_t i = 0; i < vm_kv_num_entries(kv); i++) {
        const char *k = NULL, *v = NULL;
        vm_kv_entry(kv, i, &k, &v);
        bool ok = false;
        for (size_t j = 0; allowed[j] != NULL && !ok; j++)
            ok = strcmp(k, allowed[j]) == 0;
        VMENC_ENSURE(ok, VMENC_E_PARSE);
    }
    return VMENC_OK;
}

static vmenc_status version_check(const vm_kv *kv) {
    const char *v = vm_kv_get(kv, "vmenc.version");
    VMENC_ENSURE(v != NULL, VMENC_E_PARSE);
    VMENC_ENSURE(strcmp(v, CD_VERSION) == 0, VMENC_E_BAD_VERSION);
    return VMENC_OK;
}

vmenc_status cd_source_check(const char *source) {
    VMENC_ENSURE(source != NULL, VMENC_E_INVALID_ARG);
    size_t n = strlen(source);
    VMENC_ENSURE(n >= 1 && n <= CD_SOURCE_MAX, VMENC_E_INVALID_ARG);
    for (size_t i = 0; i < n; i++) {
        char c = source[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '_' || c == ':' || c == '-';
        VMENC_ENSURE(ok, VMENC_E_INVALID_ARG);
    }
    return VMENC_OK;
}

/* ---- key file ----------------------------------------------------------------- */

static const char *const k_host_form[] = {"vmenc.version", "vmenc.hostId", "vmenc.dumpId", "vmenc.source",
                                          "vmenc.keyProvider", "vmenc.kekId", "vmenc.keySafe", NULL};
static const char *const k_pw_form[] = {"vmenc.version", "vmenc.hostId", "vmenc.dumpId", "vmenc.source",
                                        "vmenc.kdf", "vmenc.kdfOps", "vmenc.kdfMem", "vmenc.kdfSalt",
                                        "vmenc.pwKeySafe", NULL};

static vmenc_status parse_host_form(const vm_kv *kv, cd_keyfile *k) {
    VMENC_GUARD(only_keys(kv, k_host_form));
    VMENC_GUARD(copy_field(kv, "vmenc.keyProvider", k->key_provider, sizeof(k->key_provider), true));
    VMENC_GUARD(copy_field(kv, "vmenc.kekId", k->kek_id, sizeof(k->kek_id), true));
    const char *safe = vm_kv_get(kv, "vmenc.keySafe");
    VMENC_ENSURE(safe != NULL, VMENC_E_PARSE);
    VMENC_GUARD(vmenc_wrapped_key_parse_text(safe, strlen(safe), &k->key_safe));
    /* The record names its KEK; the plain fields must say the same. */
    VMENC_ENSURE(strcmp(vmenc_wrapped_key_provider_alias(k->key_safe), k->key_provider) == 0 &&
                     strcmp(vmenc_wrapped_key_kek_id(k->key_safe), k->kek_id) == 0,
                 VMENC_E_PARSE);
    return VMENC_OK;
}

static vmenc_status parse_pw_form(const vm_kv *kv, cd_keyfile *k) {
    VMENC_GUARD(only_keys(kv, k_pw_form));
    const char *kdf = vm_kv_get(kv, "vmenc.kdf");
    VMENC_ENSURE(kdf != NULL, VMENC_E_PARSE);
    VMENC_ENSURE(strcmp(kdf, CD_KDF_NAME) == 0, VMENC_E_BAD_ALGORITHM);
    VMENC_GUARD(parse_u64(vm_kv_get(kv, "vmenc.kdfOps"), &k->kdf_ops));
    VMENC_GUARD(parse_u64(vm_kv_get(kv, "vmenc.kdfMem"), &k->kdf_mem));
    VMENC_ENSURE(k->kdf_ops >= 1 && k->kdf_ops <= CD_KDF_OPS_MAX, VMENC_E_PARSE);
    VMENC_ENSURE(k->kdf_mem >= CD_KDF_MEM_MIN && k->kdf_mem <= CD_KDF_MEM_MAX, VMENC_E_PARSE);
    VMENC_GUARD(b64_exact(vm_kv_get(kv, "vmenc.kdfSalt"), k->salt, sizeof(k->salt)));
    VMENC_GUARD(b64_exact(vm_kv_get(kv, "vmenc.pwKeySafe"), k->pw_sealed, sizeof(k->pw_sealed)));
    k->password_form = true;
    return VMENC_OK;
}

static vmenc_status keyfile_from_kv(const vm_kv *kv, cd_keyfile *k) {
    VMENC_GUARD(version_check(kv));
    VMENC_GUARD(copy_field(kv, "vmenc.hostId", k->host_id, sizeof(k->host_id), true));
    VMENC_GUARD(copy_field(kv, "vmenc.dumpId", k->dump_id, sizeof(k->dump_id), true));
    VMENC_ENSURE(vm_uuid_check(k->dump_id) == VMENC_OK, VMENC_E_PARSE);
    VMENC_GUARD(copy_field(kv, "vmenc.source", k->source, sizeof(k->source), true));
    VMENC_ENSURE(cd_source_check(k->source) == VMENC_OK, VMENC_E_PARSE);
    if (vm_kv_get(kv, "vmenc.kdf") != NULL || vm_kv_get(kv, "vmenc.pwKeySafe") != NULL)
        return parse_pw_form(kv, k);
    return parse_host_form(kv, k);
}

vmenc_status cd_keyfile_parse(const uint8_t *text, size_t len, cd_keyfile *out) {
    VMENC_ENSURE(out != NULL && (text != NULL || len == 0), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(len <= CD_KEYFILE_MAX, VMENC_E_TOO_LARGE);
    vm_kv *kv = NULL;
    VMENC_GUARD(vm_kv_parse(text, len, &kv));
    cd_keyfile k;
    memset(&k, 0, sizeof(k));
    vmenc_status s = keyfile_from_kv(kv, &k);
    vm_kv_free(kv);
    if (s != VMENC_OK) {
        cd_keyfile_cleanup(&k);
        return s;
    }
    *out = k;
    return VMENC_OK;
}

static vmenc_status keyfile_to_kv(const cd_keyfile *k, vm_kv *kv) {
    VMENC_GUARD(vm_kv_add_comment(kv, "vmenc core dump key"));
    VMENC_GUARD(vm_kv_set(kv, "vmenc.version", CD_VERSION));
    VMENC_GUARD(vm_kv_set(kv, "vmenc.hostId", k->host_id));
    VMENC_GUARD(vm_kv_set(kv, "vmenc.dumpId", k->dump_id));
    VMENC_GUARD(vm_kv_set(kv, "vmenc.source", k->source));
    if (k->password_form) {
        VMENC_GUARD(vm_kv_set(kv, "vmenc.kdf", CD_KDF_NAME));
        VMENC_GUARD(kv_set_u64(kv, "vmenc.kdfOps", k->kdf_ops));
        VMENC_GUARD(kv_set_u64(kv, "vmenc.kdfMem", k->kdf_mem));
        VMENC_GUARD(kv_set_b64(kv, "vmenc.kdfSalt", k->salt, sizeof(k->salt)));
        return kv_set_b64(kv, "vmenc.pwKeySafe", k->pw_sealed, sizeof(k->pw_sealed));
    }
    VMENC_ENSURE(k->key_safe != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vm_kv_set(kv, "vmenc.keyProvider", k->key_provider));
    VMENC_GUARD(vm_kv_set(kv, "vmenc.kekId", k->kek_id));
    char *text = NULL;
    VMENC_GUARD(vmenc_wrapped_key_to_text(k->key_safe, &text));
    vmenc_status s = vm_kv_set(kv, "vmenc.keySafe", text);
    vmenc_buffer_free(text);
    return s;
}

vmenc_status cd_keyfile_serialize(const cd_keyfile *k, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(k != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    vm_kv *kv = NULL;
    VMENC_GUARD(vm_kv_new(&kv));
    vmenc_status s = keyfile_to_kv(k, kv);
    if (s == VMENC_OK)
        s = vm_kv_serialize(kv, out, out_len);
    vm_kv_free(kv);
    return s;
}

void cd_keyfile_cleanup(cd_keyfile *k) {
    if (k == NULL)
        return;
    vmenc_wrapped_key_free(k->key_safe);
    sodium_memzero(k, sizeof(*k));
}

/* ---- coredump.cfg ---------------------------------------------------------------- */

static const char *const k_cfg_keys[] = {"vmenc.version",          "vmenc.hostId",
                                         "vmenc.hostKey.provider", "vmenc.hostKey.kekId",
                                         "vmenc.rotation.fromProvider", "vmenc.rotation.fromKekId", NULL};

static vmenc_status config_from_kv(const vm_kv *kv, cd_config *c) {
    VMENC_GUARD(only_keys(kv, k_cfg_keys));
    VMENC_GUARD(version_check(kv));
    VMENC_GUARD(copy_field(kv, "vmenc.hostId", c->host_id, sizeof(c->host_id), true));
    VMENC_GUARD(copy_field(kv, "vmenc.hostKey.provider", c->provider, sizeof(c->provider), false));
    VMENC_GUARD(copy_field(kv, "vmenc.hostKey.kekId", c->kek_id, sizeof(c->kek_id), false));
    VMENC_GUARD(copy_field(kv, "vmenc.rotation.fromProvider", c->old_provider, sizeof(c->old_provider), false));
    VMENC_GUARD(copy_field(kv, "vmenc.rotation.fromKekId", c->old_kek_id, sizeof(c->old_kek_id), false));
    c->has_key = c->provider[0] != '\0';
    c->rotating = c->old_provider[0] != '\0';
    /* Both fields of a key or neither; a rotation needs a current key. */
    VMENC_ENSURE(c->has_key == (c->kek_id[0] != '\0'), VMENC_E_PARSE);
    VMENC_ENSURE(c->rotating == (c->old_kek_id[0] != '\0'), VMENC_E_PARSE);
    VMENC_ENSURE(!c->rotating || c->has_key, VMENC_E_PARSE);
    return VMENC_OK;
}

vmenc_status cd_config_parse(const uint8_t *text, size_t len, cd_config *out) {
    VMENC_ENSURE(out != NULL && (text != NULL || len == 0), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(len <= CD_KEYFILE_MAX, VMENC_E_TOO_LARGE);
    vm_kv *kv = NULL;
    VMENC_GUARD(vm_kv_parse(text, len, &kv));
    cd_config c;
    memset(&c, 0, sizeof(c));
    vmenc_status s = config_from_kv(kv, &c);
    vm_kv_free(kv);
    VMENC_GUARD(s);
    *out = c;
    return VMENC_OK;
}

static vmenc_status config_to_kv(const cd_config *c, vm_kv *kv) {
    VMENC_GUARD(vm_kv_add_comment(kv, "vmenc host core-dump configuration"));
    VMENC_GUARD(vm_kv_set(kv, "vmenc.version", CD_VERSION));
    VMENC_GUARD(vm_kv_set(kv, "vmenc.hostId", c->host_id));
    if (c->has_key) {
        VMENC_GUARD(vm_kv_set(kv, "vmenc.hostKey.provider", c->provider));
        VMENC_GUARD(vm_kv_set(kv, "vmenc.hostKey.kekId", c->kek_id));
    }
    if (c->rotating) {
        VMENC_GUARD(vm_kv_set(kv, "vmenc.rotation.fromProvider", c->old_provider));
        VMENC_GUARD(vm_kv_set(kv, "vmenc.rotation.fromKekId", c->old_kek_id));
    }
    return VMENC_OK;
}

vmenc_status cd_config_serialize(const cd_config *c, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(c != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    vm_kv *kv = NULL;
    VMENC_GUARD(vm_kv_new(&kv));
    vmenc_status s = config_to_kv(c, kv);
    if (s == VMENC_OK)
        s = vm_kv_serialize(kv, out, out_len);
    vm_kv_free(kv);
    return s;
}
