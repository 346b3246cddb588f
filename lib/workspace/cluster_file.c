/*
 * lib/workspace/cluster_file.c - the two small JSON documents of cluster
 * mode: WORKSPACE/cluster.json (which cluster this workspace belongs to
 * and how to reach it; host-private, written by vmenc_workspace_cluster_join)
 * and the cluster document /vmenc/<cluster>/cluster in etcd (the cluster's
 * ID and its wrapped cluster key); the encryption mode of a host's
 * registration /vmenc/<cluster>/host/<id>; and the binary envelope of the sealed
 * policy document (magic, generation, MAC, the JSON), parsed with the
 * bounded cursor. All formats: docs/cluster.md.
 *
 * Safety rule: both are parsed strictly (json-c, strict mode, UTF-8
 * checked, bounded depth and size): every field typed and bounded, an
 * unknown field or a missing one refuses the document; nothing in them is
 * secret (the cluster key is stored wrapped only).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workspace/ws_cluster.h"

#define DOC_MAX (64u << 10)

void ws_cluster_file_cleanup(ws_cluster_file *f) {
    if (f == NULL)
        return;
    free(f->name);
    free(f->endpoints);
    free(f->ca_file);
    free(f->cert_file);
    free(f->key_file);
    memset(f, 0, sizeof(*f));
}

void ws_cluster_doc_cleanup(ws_cluster_doc *d) {
    if (d == NULL)
        return;
    free(d->name);
    free(d->id);
    free(d->key_provider);
    free(d->key);
    memset(d, 0, sizeof(*d));
}

static json_object *parse_strict(const uint8_t *text, size_t len) {
    if (len == 0 || len > DOC_MAX)
        return NULL;
    json_tokener *tok = json_tokener_new_ex(8);
    if (tok == NULL)
        return NULL;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, (const char *)text, (int)len);
    bool ok = o != NULL && json_tokener_get_error(tok) == json_tokener_success &&
              json_tokener_get_parse_end(tok) == len && json_object_is_type(o, json_type_object);
    json_tokener_free(tok);
    if (!ok) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* take_str copies string member |k| (1..cap bytes, no control character). */
static vmenc_status take_str(json_object *o, const char *k, size_t cap, bool required, char **out) {
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, k, &v))
        return required ? VMENC_E_PARSE : VMENC_OK;
    VMENC_ENSURE(json_object_is_type(v, json_type_string), VMENC_E_PARSE);
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    VMENC_ENSURE(n > 0 && n <= cap && strlen(s) == n, VMENC_E_PARSE);
    for (size_t i = 0; i < n; i++)
        VMENC_ENSURE((unsigned char)s[i] >= 0x20 && s[i] != 0x7f, VMENC_E_PARSE);
    *out = strdup(s);
    VMENC_ENSURE(*out != NULL, VMENC_E_NOMEM);
    return VMENC_OK;
}

static vmenc_status only_keys(json_object *o, const char *const *allowed) {
    json_object_object_foreach(o, key, val) {
        (void)val;
        bool ok = false;
        for (size_t i = 0; allowed[i] != NULL; i++)
            ok |= strcmp(key, allowed[i]) == 0;
        VMENC_ENSURE(ok, VMENC_E_PARSE);
    }
    return VMENC_OK;
}

static vmenc_status version_1(json_object *o) {
    json_object *v = NULL;
    VMENC_ENSURE(json_object_object_get_ex(o, "version", &v) && json_object_is_type(v, json_type_int) &&
                     json_object_get_int64(v) == 1,
                 VMENC_E_BAD_VERSION);
    return VMENC_OK;
}

/* str_field: one required string member of a document: its name, its
 * bound, where it goes. Both documents are read and written from such a
 * table, so a field is named once. */
typedef struct str_field {
    const char *name;
    size_t cap;
    char **slot;
} str_field;

/* parse_fields: strict parse, only |allowed| members (NULL-terminated),
 * version 1, every string of |f| present. The caller owns |*out_o| on
 * VMENC_OK (for its other members) and cleans the strings on failure. */
static vmenc_status parse_fields(const uint8_t *text, size_t len, const char *const *allowed, const str_field *f,
                                 size_t n, json_object **out_o) {
    *out_o = parse_strict(text, len);
    VMENC_ENSURE(*out_o != NULL, VMENC_E_PARSE);
    vmenc_status s = only_keys(*out_o, allowed);
    if (s == VMENC_OK)
        s = version_1(*out_o);
    for (size_t i = 0; i < n && s == VMENC_OK; i++)
        s = take_str(*out_o, f[i].name, f[i].cap, true, f[i].slot);
    if (s != VMENC_OK) {
        json_object_put(*out_o);
        *out_o = NULL;
    }
    return s;
}

/* serialize_fields: {"version":1, the strings of |f|, then |int_name|:
 * |int_val| unless |int_name| is NULL or |int_val| 0}, with a final
 * newline if |pretty|. */
static vmenc_status serialize_fields(const str_field *f, size_t n, const char *int_name, int32_t int_val, bool pretty,
                                     char **out) {
    json_object *o = json_object_new_object();
    VMENC_ENSURE(o != NULL, VMENC_E_NOMEM);
    json_object_object_add(o, "version", json_object_new_int(1));
    for (size_t i = 0; i < n; i++)
        json_object_object_add(o, f[i].name, json_object_new_string(*f[i].slot));
    if (int_name != NULL && int_val != 0)
        json_object_object_add(o, int_name, json_object_new_int(int_val));
    const char *s = json_object_to_json_string_ext(
        o, (pretty ? JSON_C_TO_STRING_PRETTY : JSON_C_TO_STRING_PLAIN) | JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t len = s ? strlen(s) : 0;
    char *b = s ? malloc(len + 2) : NULL;
    if (b != NULL) {
        memcpy(b, s, len);
        b[len] = pretty ? '\n' : '\0';
        b[len + 1] = '\0';
    }
    json_object_put(o);
    VMENC_ENSURE(b != NULL, VMENC_E_NOMEM);
    *out = b;
    return VMENC_OK;
}

#define FILE_FIELDS(f)                                                                                          \
    {                                                                                                           \
        {"name", 64, &(f)->name}, {"endpoints", 4096, &(f)->endpoints}, {"cacert", 4096, &(f)->ca_file},        \
            {"cert", 4096, &(f)->cert_file}, {"key", 4096, &(f)->key_file},                                     \
    }
#define DOC_FIELDS(d)                                                                                           \
    {                                                                                                           \
        {"name", 64, &(d)->name}, {"id", 36, &(d)->id}, {"key_provider", 64, &(d)->key_provider},               \
            {"key", 4096, &(d)->key},                                                                           \
    }

vmenc_status ws_cluster_file_parse(const uint8_t *text, size_t len, ws_cluster_file *out) {
    memset(out, 0, sizeof(*out));
    static const char *const keys[] = {"version", "name", "endpoints", "cacert", "cert", "key", "ttl_s", NULL};
    const str_field f[] = FILE_FIELDS(out);
    json_object *o = NULL;
    vmenc_status s = parse_fields(text, len, keys, f, sizeof(f) / sizeof(f[0]), &o);
    json_object *t = NULL;
    if (s == VMENC_OK && json_object_object_get_ex(o, "ttl_s", &t)) {
        int64_t v = json_object_is_type(t, json_type_int) ? json_object_get_int64(t) : -1;
        if (v < 2 || v > 3600)
            s = VMENC_E_PARSE;
        else
            out->ttl_s = (uint32_t)v;
    }
    json_object_put(o);
    if (s != VMENC_OK)
        ws_cluster_file_cleanup(out);
    return s;
}

vmenc_status ws_cluster_file_serialize(const ws_cluster_file *f, char **out) {
    ws_cluster_file *m = (ws_cluster_file *)f; /* the table points into it; only read */
    const str_field t[] = FILE_FIELDS(m);
    /* ttl_s 0: the default, not written */
    return serialize_fields(t, sizeof(t) / sizeof(t[0]), "ttl_s", (int32_t)f->ttl_s, true, out);
}

vmenc_status ws_cluster_doc_parse(const uint8_t *text, size_t len, ws_cluster_doc *out) {
    memset(out, 0, sizeof(*out));
    static const char *const keys[] = {"version", "name", "id", "key_provider", "key", NULL};
    const str_field f[] = DOC_FIELDS(out);
    json_object *o = NULL;
    vmenc_status s = parse_fields(text, len, keys, f, sizeof(f) / sizeof(f[0]), &o);
    json_object_put(o);
    if (s != VMENC_OK)
        ws_cluster_doc_cleanup(out);
    return s;
}

vmenc_status ws_cluster_doc_serialize(const ws_cluster_doc *d, char **out) {
    ws_cluster_doc *m = (ws_cluster_doc *)d; /* the table points into it; only read */
    const str_field t[] = DOC_FIELDS(m);
    return serialize_fields(t, sizeof(t) / sizeof(t[0]), NULL, 0, false, out);
}

/* ---- the sealed policy document (/vmenc/<cluster>/policy) ------------------------------------ */

vmenc_status ws_policy_seal_parse(const uint8_t *v, size_t len, ws_policy_seal *out) {
    VMENC_ENSURE(out != NULL, VMENC_E_INVALID_ARG);
    memset(out, 0, sizeof(*out));
    VMENC_ENSURE(v != NULL, VMENC_E_INVALID_ARG);
    vmenc_cbs c, magic, mac;
    vmenc_cbs_init(&c, v, len);
    uint64_t gen = 0;
    VMENC_ENSURE(vmenc_cbs_get_bytes(&c, &magic, WS_POLICY_SEAL_MAGIC_LEN), VMENC_E_TRUNCATED);
    VMENC_ENSURE(memcmp(vmenc_cbs_data(&magic), WS_POLICY_SEAL_MAGIC, WS_POLICY_SEAL_MAGIC_LEN) == 0,
                 VMENC_E_BAD_MAGIC);
    VMENC_ENSURE(vmenc_cbs_get_u64(&c, &gen) && vmenc_cbs_get_bytes(&c, &mac, WS_POLICY_SEAL_MAC_BYTES),
                 VMENC_E_TRUNCATED);
    VMENC_ENSURE(gen > 0 && vmenc_cbs_len(&c) > 0, VMENC_E_PARSE);
    out->gen = gen;
    memcpy(out->mac, vmenc_cbs_data(&mac), WS_POLICY_SEAL_MAC_BYTES);
    out->json = vmenc_cbs_data(&c);
    out->json_len = vmenc_cbs_len(&c);
    return VMENC_OK;
}

vmenc_status ws_policy_seal_serialize(const ws_policy_seal *s, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(s != NULL && s->gen > 0 && s->json != NULL && s->json_len > 0 && out != NULL && out_len != NULL,
                 VMENC_E_INVALID_ARG);
    vmenc_cbb b;
    VMENC_GUARD(vmenc_cbb_init(&b, WS_POLICY_SEAL_HEADER + s->json_len));
    vmenc_cbb_add_bytes(&b, (const uint8_t *)WS_POLICY_SEAL_MAGIC, WS_POLICY_SEAL_MAGIC_LEN);
    vmenc_cbb_add_u64(&b, s->gen);
    vmenc_cbb_add_bytes(&b, s->mac, WS_POLICY_SEAL_MAC_BYTES);
    vmenc_cbb_add_bytes(&b, s->json, s->json_len);
    return vmenc_cbb_finish(&b, out, out_len);
}

vmenc_status ws_cluster_host_doc_set_mode(const uint8_t *doc, size_t len, const char *mode, char **out) {
    VMENC_ENSURE(doc != NULL && mode != NULL && out != NULL, VMENC_E_INVALID_ARG);
    json_object *o = parse_strict(doc, len);
    VMENC_ENSURE(o != NULL, VMENC_E_PARSE);
    json_object *h = NULL;
    if (!json_object_object_get_ex(o, "host", &h) || !json_object_is_type(h, json_type_string)) {
        json_object_put(o);
        return VMENC_E_PARSE;
    }
    json_object_object_add(o, "encryption_mode", json_object_new_string(mode));
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *b = s != NULL ? strdup(s) : NULL;
    json_object_put(o);
    VMENC_ENSURE(b != NULL, VMENC_E_NOMEM);
    *out = b;
    return VMENC_OK;
}
