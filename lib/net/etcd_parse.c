/*
 * lib/net/etcd_parse.c - the etcd v3 JSON gateway's responses, parsed into
 * the structs of lib/net/etcd.h: unary answers (range, put, delete_range,
 * txn, lease, maintenance status), error bodies, and one line of a stream
 * (watch, lease keepalive: {"result":{...}} or {"error":{...}}). The shapes
 * are etcd 3.4's rpc.proto in proto3 JSON, listed with verbatim examples in
 * tests/support/etcd/README.md and docs/cluster.md "The etcd client".
 *
 * Safety rule: these bytes come from the network and are untrusted. The
 * parser is pure (bytes in, struct out; no I/O, no locks), bounded (input
 * length, JSON depth, key and value sizes), checks the type of every field
 * it reads, takes absent fields as zero (proto3 omits them), and parses
 * every 64-bit number from its decimal text exactly, never through a
 * double. fuzz/etcd_response_fuzz.c drives it.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <json-c/json.h>
#include <limits.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "net/etcd.h"

/* ---- numbers ---------------------------------------------------------------- */

bool vmenc_etcd_parse_u64(const char *s, size_t len, uint64_t *out) {
    if (s == NULL || len == 0 || len > 20 || (len > 1 && s[0] == '0'))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool vmenc_etcd_parse_i64(const char *s, size_t len, int64_t *out) {
    if (s == NULL || len == 0)
        return false;
    bool neg = s[0] == '-';
    uint64_t mag = 0;
    if (!vmenc_etcd_parse_u64(s + (neg ? 1 : 0), len - (neg ? 1 : 0), &mag))
        return false;
    if (neg) {
        if (mag == 0 || mag > (uint64_t)INT64_MAX + 1)
            return false; /* "-0" is not canonical */
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)mag;
    }
    return true;
}

/* ---- field access ------------------------------------------------------------- */

/* num_text: the decimal text of a number field, which the gateway writes as
 * a string ("6") and requests may write as a JSON integer. A double is
 * refused: 64-bit values never pass through one. */
static bool num_text(json_object *o, const char **s, size_t *len) {
    if (json_object_is_type(o, json_type_string)) {
        *s = json_object_get_string(o);
        *len = (size_t)json_object_get_string_len(o);
        return true;
    }
    if (json_object_is_type(o, json_type_int)) {
        *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        *len = *s != NULL ? strlen(*s) : 0;
        return *s != NULL;
    }
    return false;
}

/* get_i64 / get_u64 / get_bool / get_str: the member |name| of |obj|;
 * absent leaves the zero the caller set; present with the wrong type or an
 * inexact number is VMENC_E_PARSE. */
static vmenc_status get_i64(json_object *obj, const char *name, int64_t *out) {
    json_object *v;
    if (!json_object_object_get_ex(obj, name, &v) || v == NULL)
        return VMENC_OK;
    const char *s;
    size_t len;
    VMENC_ENSURE(num_text(v, &s, &len) && vmenc_etcd_parse_i64(s, len, out), VMENC_E_PARSE);
    return VMENC_OK;
}

static vmenc_status get_u64(json_object *obj, const char *name, uint64_t *out) {
    json_object *v;
    if (!json_object_object_get_ex(obj, name, &v) || v == NULL)
        return VMENC_OK;
    const char *s;
    size_t len;
    VMENC_ENSURE(num_text(v, &s, &len) && vmenc_etcd_parse_u64(s, len, out), VMENC_E_PARSE);
    return VMENC_OK;
}

static vmenc_status get_bool(json_object *obj, const char *name, bool *out) {
    json_object *v;
    if (!json_object_object_get_ex(obj, name, &v) || v == NULL)
        return VMENC_OK;
    VMENC_ENSURE(json_object_is_type(v, json_type_boolean), VMENC_E_PARSE);
    *out = json_object_get_boolean(v) != 0;
    return VMENC_OK;
}

/* get_str: a string member (NULL when absent). */
static vmenc_status get_str(json_object *obj, const char *name, const char **out, size_t *out_len) {
    json_object *v;
    *out = NULL;
    *out_len = 0;
    if (!json_object_object_get_ex(obj, name, &v) || v == NULL)
        return VMENC_OK;
    VMENC_ENSURE(json_object_is_type(v, json_type_string), VMENC_E_PARSE);
    *out = json_object_get_string(v);
    *out_len = (size_t)json_object_get_string_len(v);
    return VMENC_OK;
}

/* get_obj / get_arr: an object or array member (NULL when absent). */
static vmenc_status get_typed(json_object *obj, const char *name, json_type type, json_object **out) {
    json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(obj, name, &v) || v == NULL)
        return VMENC_OK;
    VMENC_ENSURE(json_object_is_type(v, type), VMENC_E_PARSE);
    *out = v;
    return VMENC_OK;
}

/* get_b64: a base64 member decoded into a new buffer of |*out_len| bytes
 * plus a NUL (absent: NULL, 0). At most |max| bytes decoded. */
static vmenc_status get_b64(json_object *obj, const char *name, size_t max, uint8_t **out, size_t *out_len) {
    const char *s;
    size_t len;
    *out = NULL;
    *out_len = 0;
    VMENC_GUARD(get_str(obj, name, &s, &len));
    if (s == NULL)
        return VMENC_OK;
    VMENC_ENSURE(len % 4 == 0, VMENC_E_BAD_ENCODING);
    size_t cap = len / 4 * 3;
    VMENC_ENSURE(cap <= max + 2, VMENC_E_TOO_LARGE);
    uint8_t *buf = malloc(cap + 1);
    VMENC_ENSURE(buf != NULL, VMENC_E_NOMEM);
    size_t got = 0;
    const char *end = NULL;
    if (sodium_base642bin(buf, cap, s, len, NULL, &got, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != s + len) {
        free(buf);
        return VMENC_E_BAD_ENCODING;
    }
    if (got > max) {
        free(buf);
        return VMENC_E_TOO_LARGE;
    }
    buf[got] = 0;
    *out = buf;
    *out_len = got;
    return VMENC_OK;
}

/* ---- documents ------------------------------------------------------------------ */

/* parse_doc: |body| as one JSON object (trailing whitespace allowed). */
static vmenc_status parse_doc(const uint8_t *body, size_t len, json_object **out) {
    *out = NULL;
    VMENC_ENSURE(body != NULL || len == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(len <= VMENC_ETCD_RESPONSE_MAX, VMENC_E_TOO_LARGE);
    vmenc_cbs in;
    vmenc_cbs_init(&in, body, len);
    /* drop trailing whitespace (a stream line ends in "\n") */
    size_t n = len;
    while (n > 0 && (body[n - 1] == '\n' || body[n - 1] == '\r' || body[n - 1] == ' ' || body[n - 1] == '\t'))
        n--;
    VMENC_ENSURE(n > 0, VMENC_E_TRUNCATED);
    VMENC_ENSURE(memchr(body, 0, n) == NULL, VMENC_E_BAD_ENCODING);
    json_tokener *tok = json_tokener_new_ex(VMENC_ETCD_JSON_DEPTH);
    VMENC_ENSURE(tok != NULL, VMENC_E_NOMEM);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, (const char *)vmenc_cbs_data(&in), (int)n);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    vmenc_status st = VMENC_OK;
    if (o == NULL)
        st = e == json_tokener_error_depth ? VMENC_E_DEPTH_LIMIT
             : e == json_tokener_continue  ? VMENC_E_TRUNCATED
                                           : VMENC_E_BAD_ENCODING;
    else if (end != n)
        st = VMENC_E_TRAILING_DATA;
    else if (!json_object_is_type(o, json_type_object))
        st = VMENC_E_PARSE;
    if (st != VMENC_OK) {
        json_object_put(o);
        return st;
    }
    *out = o;
    return VMENC_OK;
}

static vmenc_status parse_header(json_object *obj, vmenc_etcd_header *out) {
    json_object *h;
    VMENC_GUARD(get_typed(obj, "header", json_type_object, &h));
    if (h == NULL)
        return VMENC_OK;
    VMENC_GUARD(get_u64(h, "cluster_id", &out->cluster_id));
    VMENC_GUARD(get_u64(h, "member_id", &out->member_id));
    VMENC_GUARD(get_i64(h, "revision", &out->revision));
    VMENC_GUARD(get_u64(h, "raft_term", &out->raft_term));
    VMENC_ENSURE(out->revision >= 0, VMENC_E_PARSE);
    return VMENC_OK;
}

static void kv_cleanup(vmenc_etcd_kv *kv) {
    free(kv->key);
    free(kv->value);
    memset(kv, 0, sizeof(*kv));
}

/* parse_kv: a mvccpb.KeyValue. A key is required (etcd has no empty key);
 * revisions and versions are never negative. */
static vmenc_status parse_kv(json_object *o, vmenc_etcd_kv *out) {
    VMENC_ENSURE(json_object_is_type(o, json_type_object), VMENC_E_PARSE);
    vmenc_status st;
    VMENC_GUARD_GOTO(st, get_b64(o, "key", VMENC_ETCD_KEY_MAX, &out->key, &out->key_len), fail);
    VMENC_ENSURE_GOTO(st, out->key_len > 0, VMENC_E_PARSE, fail);
    VMENC_GUARD_GOTO(st, get_b64(o, "value", VMENC_ETCD_VALUE_MAX, &out->value, &out->value_len), fail);
    VMENC_GUARD_GOTO(st, get_i64(o, "create_revision", &out->create_revision), fail);
    VMENC_GUARD_GOTO(st, get_i64(o, "mod_revision", &out->mod_revision), fail);
    VMENC_GUARD_GOTO(st, get_i64(o, "version", &out->version), fail);
    VMENC_GUARD_GOTO(st, get_i64(o, "lease", &out->lease), fail);
    VMENC_ENSURE_GOTO(st, out->create_revision >= 0 && out->mod_revision >= 0 && out->version >= 0 &&
                              out->lease >= 0 && out->create_revision <= out->mod_revision,
                      VMENC_E_PARSE, fail);
    return VMENC_OK;
fail:
    kv_cleanup(out);
    return st;
}

/* parse_kv_array: member |name| (an array of KeyValue) into |*out|. */
static vmenc_status parse_kv_array(json_object *obj, const char *name, vmenc_etcd_kv **out, size_t *out_num) {
    json_object *arr;
    VMENC_GUARD(get_typed(obj, name, json_type_array, &arr));
    if (arr == NULL)
        return VMENC_OK;
    size_t n = json_object_array_length(arr);
    if (n == 0)
        return VMENC_OK;
    vmenc_etcd_kv *kvs = calloc(n, sizeof(*kvs));
    VMENC_ENSURE(kvs != NULL, VMENC_E_NOMEM);
    *out = kvs;
    for (size_t i = 0; i < n; i++) {
        VMENC_GUARD(parse_kv(json_object_array_get_idx(arr, i), &kvs[i]));
        *out_num = i + 1;
    }
    return VMENC_OK;
}

void vmenc_etcd_result_cleanup(vmenc_etcd_result *r) {
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->num_kvs; i++)
        kv_cleanup(&r->kvs[i]);
    free(r->kvs);
    memset(r, 0, sizeof(*r));
}

/* parse_result_obj: a RangeResponse, PutResponse or DeleteRangeResponse. */
static vmenc_status parse_result_obj(vmenc_etcd_op_type type, json_object *o, vmenc_etcd_result *out) {
    memset(out, 0, sizeof(*out));
    out->type = type;
    vmenc_status st;
    VMENC_GUARD_GOTO(st, parse_header(o, &out->header), fail);
    switch (type) {
    case VMENC_ETCD_OP_RANGE:
        VMENC_GUARD_GOTO(st, parse_kv_array(o, "kvs", &out->kvs, &out->num_kvs), fail);
        VMENC_GUARD_GOTO(st, get_i64(o, "count", &out->count), fail);
        VMENC_GUARD_GOTO(st, get_bool(o, "more", &out->more), fail);
        VMENC_ENSURE_GOTO(st, out->count >= 0 && (out->num_kvs == 0 || (uint64_t)out->count >= out->num_kvs),
                          VMENC_E_PARSE, fail);
        break;
    case VMENC_ETCD_OP_PUT: {
        json_object *prev;
        VMENC_GUARD_GOTO(st, get_typed(o, "prev_kv", json_type_object, &prev), fail);
        if (prev != NULL) {
            out->kvs = calloc(1, sizeof(*out->kvs));
            VMENC_ENSURE_GOTO(st, out->kvs != NULL, VMENC_E_NOMEM, fail);
            VMENC_GUARD_GOTO(st, parse_kv(prev, &out->kvs[0]), fail);
            out->num_kvs = 1;
        }
        break;
    }
    case VMENC_ETCD_OP_DELETE:
        VMENC_GUARD_GOTO(st, get_i64(o, "deleted", &out->deleted), fail);
        VMENC_GUARD_GOTO(st, parse_kv_array(o, "prev_kvs", &out->kvs, &out->num_kvs), fail);
        VMENC_ENSURE_GOTO(st, out->deleted >= 0 && (uint64_t)out->deleted >= out->num_kvs, VMENC_E_PARSE, fail);
        break;
    default:
        st = VMENC_E_INVALID_ARG;
        goto fail;
    }
    return VMENC_OK;
fail:
    vmenc_etcd_result_cleanup(out);
    return st;
}

vmenc_status vmenc_etcd_parse_result(vmenc_etcd_op_type type, const uint8_t *body, size_t len,
                                     vmenc_etcd_result *out) {
    VMENC_ENSURE_REF(out);
    memset(out, 0, sizeof(*out));
    json_object *o;
    VMENC_GUARD(parse_doc(body, len, &o));
    vmenc_status st = parse_result_obj(type, o, out);
    json_object_put(o);
    return st;
}

void vmenc_etcd_txn_result_cleanup(vmenc_etcd_txn_result *r) {
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->num_responses; i++)
        vmenc_etcd_result_cleanup(&r->responses[i]);
    free(r->responses);
    memset(r, 0, sizeof(*r));
}

/* parse_response_op: one ResponseOp, exactly one of response_range,
 * response_put, response_delete_range (a nested txn is never sent). */
static vmenc_status parse_response_op(json_object *o, vmenc_etcd_result *out) {
    VMENC_ENSURE(json_object_is_type(o, json_type_object), VMENC_E_PARSE);
    static const struct {
        const char *name;
        vmenc_etcd_op_type type;
    } k_kinds[] = {{"response_range", VMENC_ETCD_OP_RANGE},
                   {"response_put", VMENC_ETCD_OP_PUT},
                   {"response_delete_range", VMENC_ETCD_OP_DELETE}};
    json_object *found = NULL;
    vmenc_etcd_op_type type = VMENC_ETCD_OP_RANGE;
    for (size_t i = 0; i < VMENC_ARRAY_LEN(k_kinds); i++) {
        json_object *v;
        VMENC_GUARD(get_typed(o, k_kinds[i].name, json_type_object, &v));
        if (v != NULL) {
            VMENC_ENSURE(found == NULL, VMENC_E_PARSE);
            found = v;
            type = k_kinds[i].type;
        }
    }
    VMENC_ENSURE(found != NULL, VMENC_E_PARSE);
    return parse_result_obj(type, found, out);
}

vmenc_status vmenc_etcd_parse_txn(const uint8_t *body, size_t len, vmenc_etcd_txn_result *out) {
    VMENC_ENSURE_REF(out);
    memset(out, 0, sizeof(*out));
    json_object *o;
    VMENC_GUARD(parse_doc(body, len, &o));
    vmenc_status st;
    json_object *arr;
    VMENC_GUARD_GOTO(st, parse_header(o, &out->header), fail);
    VMENC_GUARD_GOTO(st, get_bool(o, "succeeded", &out->succeeded), fail);
    VMENC_GUARD_GOTO(st, get_typed(o, "responses", json_type_array, &arr), fail);
    size_t n = arr != NULL ? json_object_array_length(arr) : 0;
    if (n > 0) {
        out->responses = calloc(n, sizeof(*out->responses));
        VMENC_ENSURE_GOTO(st, out->responses != NULL, VMENC_E_NOMEM, fail);
        for (size_t i = 0; i < n; i++) {
            VMENC_GUARD_GOTO(st, parse_response_op(json_object_array_get_idx(arr, i), &out->responses[i]), fail);
            out->num_responses = i + 1;
        }
    }
    json_object_put(o);
    return VMENC_OK;
fail:
    json_object_put(o);
    vmenc_etcd_txn_result_cleanup(out);
    return st;
}

/* unwrap_stream: the object under "result" of a stream line; a stream
 * error line ({"error":{...}}) is VMENC_E_CONTROL_UNAVAILABLE. */
static vmenc_status unwrap_stream(json_object *o, json_object **out) {
    json_object *err, *res;
    VMENC_ENSURE(!json_object_object_get_ex(o, "error", &err), VMENC_E_CONTROL_UNAVAILABLE);
    VMENC_GUARD(get_typed(o, "result", json_type_object, &res));
    VMENC_ENSURE(res != NULL, VMENC_E_PARSE);
    *out = res;
    return VMENC_OK;
}

vmenc_status vmenc_etcd_parse_lease(const uint8_t *body, size_t len, bool stream, vmenc_etcd_lease_info *out) {
    VMENC_ENSURE_REF(out);
    memset(out, 0, sizeof(*out));
    json_object *doc, *o;
    VMENC_GUARD(parse_doc(body, len, &doc));
    vmenc_status st = VMENC_OK;
    o = doc;
    if (stream)
        st = unwrap_stream(doc, &o);
    if (st == VMENC_OK)
        st = parse_header(o, &out->header);
    if (st == VMENC_OK)
        st = get_i64(o, "ID", &out->id);
    if (st == VMENC_OK)
        st = get_i64(o, "TTL", &out->ttl);
    if (st == VMENC_OK)
        st = get_i64(o, "grantedTTL", &out->granted_ttl);
    json_object_put(doc);
    if (st != VMENC_OK)
        memset(out, 0, sizeof(*out));
    return st;
}

/* copy_text: a string into a fixed buffer, truncated, NUL-terminated,
 * control characters replaced (this text may end up in a log line). */
static void copy_text(char *dst, size_t cap, const char *s, size_t len) {
    if (dst == NULL || cap == 0)
        return;
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    dst[n] = '\0';
}

vmenc_status vmenc_etcd_parse_status(const uint8_t *body, size_t len, vmenc_etcd_member_status *out) {
    VMENC_ENSURE_REF(out);
    memset(out, 0, sizeof(*out));
    json_object *o;
    VMENC_GUARD(parse_doc(body, len, &o));
    vmenc_status st;
    const char *ver;
    size_t ver_len;
    json_object *errs;
    VMENC_GUARD_GOTO(st, parse_header(o, &out->header), fail);
    VMENC_GUARD_GOTO(st, get_u64(o, "leader", &out->leader), fail);
    VMENC_GUARD_GOTO(st, get_i64(o, "dbSize", &out->db_size), fail);
    VMENC_GUARD_GOTO(st, get_u64(o, "raftIndex", &out->raft_index), fail);
    VMENC_GUARD_GOTO(st, get_u64(o, "raftTerm", &out->raft_term), fail);
    VMENC_GUARD_GOTO(st, get_str(o, "version", &ver, &ver_len), fail);
    if (ver != NULL)
        copy_text(out->version, sizeof(out->version), ver, ver_len);
    VMENC_GUARD_GOTO(st, get_typed(o, "errors", json_type_array, &errs), fail);
    if (errs != NULL) {
        out->num_errors = json_object_array_length(errs);
        for (size_t i = 0; i < out->num_errors; i++) {
            json_object *e = json_object_array_get_idx(errs, i);
            VMENC_ENSURE_GOTO(st, json_object_is_type(e, json_type_string), VMENC_E_PARSE, fail);
            if (i == 0)
                copy_text(out->first_error, sizeof(out->first_error), json_object_get_string(e),
                          (size_t)json_object_get_string_len(e));
        }
    }
    out->is_leader = out->leader != 0 && out->leader == out->header.member_id;
    json_object_put(o);
    return VMENC_OK;
fail:
    json_object_put(o);
    memset(out, 0, sizeof(*out));
    return st;
}

void vmenc_etcd_watch_msg_cleanup(vmenc_etcd_watch_msg *m) {
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->num_events; i++) {
        kv_cleanup(&m->events[i].kv);
        kv_cleanup(&m->events[i].prev_kv);
    }
    free(m->events);
    memset(m, 0, sizeof(*m));
}

static vmenc_status parse_event(json_object *o, vmenc_etcd_event *out) {
    VMENC_ENSURE(json_object_is_type(o, json_type_object), VMENC_E_PARSE);
    const char *type;
    size_t type_len;
    VMENC_GUARD(get_str(o, "type", &type, &type_len));
    if (type == NULL || (type_len == 3 && memcmp(type, "PUT", 3) == 0))
        out->type = VMENC_ETCD_EVENT_PUT;
    else if (type_len == 6 && memcmp(type, "DELETE", 6) == 0)
        out->type = VMENC_ETCD_EVENT_DELETE;
    else
        return VMENC_E_PARSE;
    json_object *kv, *prev;
    VMENC_GUARD(get_typed(o, "kv", json_type_object, &kv));
    VMENC_GUARD(get_typed(o, "prev_kv", json_type_object, &prev));
    VMENC_ENSURE(kv != NULL, VMENC_E_PARSE);
    VMENC_GUARD(parse_kv(kv, &out->kv));
    if (prev != NULL) {
        VMENC_GUARD(parse_kv(prev, &out->prev_kv));
        out->has_prev_kv = true;
    }
    /* every event happened at a revision */
    VMENC_ENSURE(out->kv.mod_revision > 0, VMENC_E_PARSE);
    return VMENC_OK;
}

vmenc_status vmenc_etcd_parse_watch_msg(const uint8_t *body, size_t len, vmenc_etcd_watch_msg *out) {
    VMENC_ENSURE_REF(out);
    memset(out, 0, sizeof(*out));
    json_object *doc, *o, *evs;
    VMENC_GUARD(parse_doc(body, len, &doc));
    vmenc_status st;
    VMENC_GUARD_GOTO(st, unwrap_stream(doc, &o), fail);
    VMENC_GUARD_GOTO(st, parse_header(o, &out->header), fail);
    VMENC_GUARD_GOTO(st, get_i64(o, "watch_id", &out->watch_id), fail);
    VMENC_GUARD_GOTO(st, get_bool(o, "created", &out->created), fail);
    VMENC_GUARD_GOTO(st, get_bool(o, "canceled", &out->canceled), fail);
    VMENC_GUARD_GOTO(st, get_i64(o, "compact_revision", &out->compact_revision), fail);
    VMENC_ENSURE_GOTO(st, out->compact_revision >= 0 && out->watch_id >= 0, VMENC_E_PARSE, fail);
    VMENC_GUARD_GOTO(st, get_typed(o, "events", json_type_array, &evs), fail);
    size_t n = evs != NULL ? json_object_array_length(evs) : 0;
    if (n > 0) {
        out->events = calloc(n, sizeof(*out->events));
        VMENC_ENSURE_GOTO(st, out->events != NULL, VMENC_E_NOMEM, fail);
        for (size_t i = 0; i < n; i++) {
            out->num_events = i + 1;
            VMENC_GUARD_GOTO(st, parse_event(json_object_array_get_idx(evs, i), &out->events[i]), fail);
            /* events come in revision order */
            VMENC_ENSURE_GOTO(st, i == 0 || out->events[i].kv.mod_revision >= out->events[i - 1].kv.mod_revision,
                              VMENC_E_PARSE, fail);
        }
    }
    json_object_put(doc);
    return VMENC_OK;
fail:
    json_object_put(doc);
    vmenc_etcd_watch_msg_cleanup(out);
    return st;
}

vmenc_status vmenc_etcd_parse_error(const uint8_t *body, size_t len, int *out_code, char *msg, size_t msg_cap) {
    VMENC_ENSURE_REF(out_code);
    *out_code = 0;
    if (msg != NULL && msg_cap > 0)
        msg[0] = '\0';
    json_object *o;
    VMENC_GUARD(parse_doc(body, len, &o));
    vmenc_status st = VMENC_OK;
    json_object *err, *code = NULL, *text = NULL;
    if (!json_object_object_get_ex(o, "error", &err) || err == NULL) {
        st = VMENC_E_PARSE;
    } else if (json_object_is_type(err, json_type_object)) {
        /* a stream's error: {"error":{"grpc_code":13,"message":...}} */
        json_object_object_get_ex(err, "grpc_code", &code);
        json_object_object_get_ex(err, "message", &text);
    } else if (json_object_is_type(err, json_type_string)) {
        json_object_object_get_ex(o, "code", &code);
        if (!json_object_object_get_ex(o, "message", &text))
            text = err;
    } else {
        st = VMENC_E_PARSE;
    }
    int64_t c = 0;
    const char *s;
    size_t slen;
    if (st == VMENC_OK && code != NULL &&
        !(num_text(code, &s, &slen) && vmenc_etcd_parse_i64(s, slen, &c) && c >= 0 && c <= 16))
        st = VMENC_E_PARSE;
    if (st == VMENC_OK && text != NULL && !json_object_is_type(text, json_type_string))
        st = VMENC_E_PARSE;
    if (st == VMENC_OK) {
        *out_code = (int)c;
        if (text != NULL)
            copy_text(msg, msg_cap, json_object_get_string(text), (size_t)json_object_get_string_len(text));
    }
    json_object_put(o);
    return st;
}

void vmenc_etcd_prefix_end(const uint8_t *key, size_t key_len, uint8_t *out, size_t *out_len) {
    size_t n = key_len;
    while (n > 0 && key[n - 1] == 0xff)
        n--;
    if (n == 0) {
        out[0] = 0;
        *out_len = 1;
        return;
    }
    memcpy(out, key, n);
    out[n - 1]++;
    *out_len = n;
}
