/*
 * lib/policy/json.c - the policy document: strict loading with json-c (every
 * error names its JSONPath) and canonical saving through vmenc_cbb. Reading
 * and writing the format live together so they stay in step; the schema is
 * in docs/policy.md.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "policy/policy_internal.h"

#define PATH_MAX_ VMENC_POLICY_MESSAGE_MAX

typedef struct jctx {
    model *m;
    vmenc_policy_error *err;
} jctx;

static vmenc_status fail(jctx *c, vmenc_status st, const char *path, size_t offset,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static vmenc_status fail(jctx *c, vmenc_status st, const char *path, size_t offset,
                         const char *fmt, ...) {
    if (c->err != NULL) {
        c->err->status = st;
        c->err->offset = offset;
        snprintf(c->err->path, sizeof(c->err->path), "%s", path);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err->message, sizeof(c->err->message), fmt, ap);
        va_end(ap);
    }
    return st;
}

/* path_join writes |a| then |b| into |out| (PATH_MAX_ bytes), cutting what
 * does not fit: a path is a diagnostic, never parsed back. */
static void path_join(char *out, const char *a, const char *b) {
    /* a and b are NUL-terminated; clamp rather than bound the scan, which
     * GCC -O3 misreads as an over-read of short literals. */
    size_t la = strlen(a), lb = strlen(b);
    if (la > PATH_MAX_ - 1)
        la = PATH_MAX_ - 1;
    if (lb > PATH_MAX_ - 1 - la)
        lb = PATH_MAX_ - 1 - la;
    memmove(out, a, la);
    memcpy(out + la, b, lb);
    out[la + lb] = '\0';
}

static void path_idx(char *out, const char *parent, size_t i) {
    char tail[32];
    snprintf(tail, sizeof(tail), "[%zu]", i);
    path_join(out, parent, tail);
}

/* Keys that are identifiers print as .key, others as ["key"] with anything
 * unprintable replaced, so a path is always one safe line. */
static void path_key(char *out, const char *parent, const char *key) {
    bool ident = (key[0] != '\0');
    for (const char *p = key; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
              (p != key && ch >= '0' && ch <= '9')))
            ident = false;
    }
    if (ident) {
        char tail[PATH_MAX_];
        tail[0] = '.';
        size_t lk = strnlen(key, PATH_MAX_ - 2);
        memcpy(tail + 1, key, lk);
        tail[lk + 1] = '\0';
        path_join(out, parent, tail);
        return;
    }
    char safe[128];
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)key; *p && n < sizeof(safe) - 1; p++)
        safe[n++] = (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\') ? '?' : (char)*p;
    safe[n] = '\0';
    char tail[sizeof(safe) + 8];
    snprintf(tail, sizeof(tail), "[\"%s\"]", safe);
    path_join(out, parent, tail);
}

/* ---- field access ------------------------------------------------------ */

static vmenc_status check_keys(jctx *c, json_object *obj, const char *path,
                               const char *const *allowed, size_t num_allowed) {
    json_object_object_foreach(obj, key, val) {
        (void)val;
        bool ok = false;
        for (size_t i = 0; i < num_allowed && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok) {
            char p[PATH_MAX_];
            path_key(p, path, key);
            return fail(c, VMENC_E_POLICY_INVALID, p, 0, "unknown field");
        }
    }
    return VMENC_OK;
}

static const char *type_word(json_type t) {
    switch (t) {
    case json_type_object: return "an object";
    case json_type_array: return "an array";
    case json_type_string: return "a string";
    case json_type_boolean: return "a boolean";
    case json_type_int: return "an integer";
    default: return "a value of another type";
    }
}

/* get_field finds |key| in |obj|; missing: NULL if optional, else an error;
 * present with another type than |t|: an error. */
static vmenc_status get_field(jctx *c, json_object *obj, const char *path, const char *key,
                              json_type t, bool required, json_object **out) {
    json_object *v = NULL;
    char p[PATH_MAX_];
    path_key(p, path, key);
    if (!json_object_object_get_ex(obj, key, &v)) {
        *out = NULL;
        return required ? fail(c, VMENC_E_POLICY_INVALID, p, 0, "missing required field")
                        : VMENC_OK;
    }
    if (!json_object_is_type(v, t))
        return fail(c, VMENC_E_POLICY_INVALID, p, 0, "must be %s", type_word(t));
    *out = v;
    return VMENC_OK;
}

/* name_of checks that |v| (at |path|) is a valid name string. */
static vmenc_status name_of(jctx *c, json_object *v, const char *path, const char **out) {
    if (!json_object_is_type(v, json_type_string))
        return fail(c, VMENC_E_POLICY_INVALID, path, 0, "must be a string");
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    if (strlen(s) != len || !name_valid(s))
        return fail(c, VMENC_E_POLICY_INVALID, path, 0,
                    "a name must be 1..%d bytes of printable UTF-8", VMENC_POLICY_NAME_MAX);
    *out = s;
    return VMENC_OK;
}

static vmenc_status get_name(jctx *c, json_object *obj, const char *path, const char *key,
                             bool required, const char **out) {
    json_object *v = NULL;
    VMENC_GUARD(get_field(c, obj, path, key, json_type_string, required, &v));
    *out = NULL;
    if (v == NULL)
        return VMENC_OK;
    char p[PATH_MAX_];
    path_key(p, path, key);
    return name_of(c, v, p, out);
}

/* array_items: |val| must be an array of objects; returns its length. */
static vmenc_status expect_object(jctx *c, json_object *v, const char *path) {
    if (!json_object_is_type(v, json_type_object))
        return fail(c, VMENC_E_POLICY_INVALID, path, 0, "must be an object");
    return VMENC_OK;
}

/* ---- sections -------------------------------------------------------------- */

static vmenc_status load_roles(jctx *c, json_object *arr) {
    static const char *const keys[] = {"name", "privileges"};
    size_t n = arr ? json_object_array_length(arr) : 0;
    for (size_t i = 0; i < n; i++) {
        char p[PATH_MAX_], pp[PATH_MAX_], pe[PATH_MAX_];
        path_idx(p, "$.roles", i);
        json_object *o = json_object_array_get_idx(arr, i), *privs;
        const char *name;
        VMENC_GUARD(expect_object(c, o, p));
        VMENC_GUARD(check_keys(c, o, p, keys, VMENC_ARRAY_LEN(keys)));
        VMENC_GUARD(get_name(c, o, p, "name", true, &name));
        VMENC_GUARD(get_field(c, o, p, "privileges", json_type_array, true, &privs));
        path_key(pp, p, "privileges");
        privset s = {{0}};
        size_t np = json_object_array_length(privs);
        for (size_t k = 0; k < np; k++) {
            path_idx(pe, pp, k);
            json_object *pv = json_object_array_get_idx(privs, k);
            vmenc_policy_privilege priv;
            if (!json_object_is_type(pv, json_type_string))
                return fail(c, VMENC_E_POLICY_INVALID, pe, 0, "must be a string");
            const char *ps = json_object_get_string(pv);
            if (strlen(ps) != (size_t)json_object_get_string_len(pv) ||
                vmenc_policy_privilege_from_name(ps, &priv) != VMENC_OK)
                return fail(c, VMENC_E_POLICY_INVALID, pe, 0, "unknown privilege");
            if (privset_has(&s, priv))
                return fail(c, VMENC_E_EXISTS, pe, 0, "privilege listed twice");
            privset_add(&s, priv);
        }
        uint32_t idx;
        vmenc_status rv = model_add_role(c->m, name, &s, false, &idx);
        if (rv != VMENC_OK) {
            path_key(pp, p, "name");
            return fail(c, rv, pp, 0, rv == VMENC_E_EXISTS ? "role name already taken "
                                                             "(predefined or listed before)"
                                                           : "cannot add role");
        }
    }
    return VMENC_OK;
}

static vmenc_status load_principals(jctx *c, json_object *arr, const char *section,
                                    bool is_group) {
    static const char *const ukeys[] = {"name"};
    static const char *const gkeys[] = {"name", "members"};
    size_t n = arr ? json_object_array_length(arr) : 0;
    for (size_t i = 0; i < n; i++) {
        char p[PATH_MAX_], pn[PATH_MAX_];
        path_idx(p, section, i);
        json_object *o = json_object_array_get_idx(arr, i), *members;
        const char *name;
        VMENC_GUARD(expect_object(c, o, p));
        if (is_group) {
            VMENC_GUARD(check_keys(c, o, p, gkeys, VMENC_ARRAY_LEN(gkeys)));
            VMENC_GUARD(get_field(c, o, p, "members", json_type_array, false, &members));
        } else {
            VMENC_GUARD(check_keys(c, o, p, ukeys, VMENC_ARRAY_LEN(ukeys)));
        }
        VMENC_GUARD(get_name(c, o, p, "name", true, &name));
        uint32_t idx;
        vmenc_status rv = model_add_principal(c->m, name, is_group, &idx);
        if (rv != VMENC_OK) {
            path_key(pn, p, "name");
            return fail(c, rv, pn, 0,
                        rv == VMENC_E_EXISTS ? "principal name already used by a user or group"
                                             : "cannot add principal");
        }
    }
    return VMENC_OK;
}

/* Second pass over groups: members may name users or groups listed later. */
static vmenc_status load_members(jctx *c, json_object *arr, uint32_t *json_index_of) {
    size_t n = arr ? json_object_array_length(arr) : 0;
    for (size_t i = 0; i < n; i++) {
        char p[PATH_MAX_], pm[PATH_MAX_], pe[PATH_MAX_];
        path_idx(p, "$.groups", i);
        json_object *o = json_object_array_get_idx(arr, i), *members, *nv;
        json_object_object_get_ex(o, "name", &nv);
        uint32_t g = model_find_principal(c->m, json_object_get_string(nv));
        json_index_of[g] = (uint32_t)i;
        if (!json_object_object_get_ex(o, "members", &members))
            continue;
        path_key(pm, p, "members");
        size_t nm = json_object_array_length(members);
        for (size_t k = 0; k < nm; k++) {
            const char *mname;
            path_idx(pe, pm, k);
            VMENC_GUARD(name_of(c, json_object_array_get_idx(members, k), pe, &mname));
            uint32_t x = model_find_principal(c->m, mname);
            if (x == INDEX_NONE)
                return fail(c, VMENC_E_NOT_FOUND, pe, 0, "no user or group of that name");
            if (x == g)
                return fail(c, VMENC_E_CYCLE, pe, 0, "a group cannot contain itself");
            vmenc_status rv = model_add_member(c->m, g, x);
            if (rv != VMENC_OK)
                return fail(c, rv, pe, 0,
                            rv == VMENC_E_EXISTS ? "member listed twice" : "cannot add member");
        }
    }
    uint32_t cyc = INDEX_NONE;
    vmenc_status rv = model_rebuild_groups(c->m, &cyc);
    if (rv == VMENC_E_CYCLE) {
        char p[PATH_MAX_];
        path_idx(p, "$.groups", json_index_of[cyc]);
        return fail(c, rv, p, 0, "group '%s' is on a membership cycle",
                    c->m->principals[cyc].name);
    }
    if (rv != VMENC_OK)
        return fail(c, rv, "$.groups", 0,
                    rv == VMENC_E_LIMIT
                        ? "a principal is in more than 1024 groups (counting nesting), or all "
                          "memberships together exceed the limit"
                        : "cannot compute group membership");
    return VMENC_OK;
}

static vmenc_status load_objects(jctx *c, json_object *arr) {
    static const char *const keys[] = {"name", "type", "parent", "host", "encrypted",
                                       "crypto_state"};
    size_t n = json_object_array_length(arr);
    for (size_t i = 0; i < n; i++) {
        char p[PATH_MAX_], pf[PATH_MAX_];
        path_idx(p, "$.inventory", i);
        json_object *o = json_object_array_get_idx(arr, i), *v;
        const char *name, *type_s;
        VMENC_GUARD(expect_object(c, o, p));
        VMENC_GUARD(check_keys(c, o, p, keys, VMENC_ARRAY_LEN(keys)));
        VMENC_GUARD(get_name(c, o, p, "name", true, &name));
        VMENC_GUARD(get_name(c, o, p, "type", true, &type_s));
        vmenc_policy_object_type type;
        path_key(pf, p, "type");
        if (!object_type_from_name(type_s, &type))
            return fail(c, VMENC_E_POLICY_INVALID, pf, 0, "unknown object type");
        if (type == VMENC_OBJ_ROOT && c->m->root != INDEX_NONE)
            return fail(c, VMENC_E_POLICY_INVALID, pf, 0, "a second root object");
        /* Type-specific fields are errors on other types. */
        static const char *const vm_only[] = {"host", "encrypted"};
        for (size_t k = 0; k < 2; k++) {
            if (type != VMENC_OBJ_VM && json_object_object_get_ex(o, vm_only[k], &v)) {
                path_key(pf, p, vm_only[k]);
                return fail(c, VMENC_E_POLICY_INVALID, pf, 0, "only a vm has this field");
            }
        }
        if (type != VMENC_OBJ_HOST && json_object_object_get_ex(o, "crypto_state", &v)) {
            path_key(pf, p, "crypto_state");
            return fail(c, VMENC_E_POLICY_INVALID, pf, 0, "only a host has this field");
        }
        if (type == VMENC_OBJ_ROOT && json_object_object_get_ex(o, "parent", &v)) {
            path_key(pf, p, "parent");
            return fail(c, VMENC_E_POLICY_INVALID, pf, 0, "the root has no parent");
        }
        uint32_t idx;
        vmenc_status rv = model_add_object(c->m, name, type, INDEX_NONE, &idx);
        if (rv != VMENC_OK) {
            path_key(pf, p, "name");
            return fail(c, rv, pf, 0,
                        rv == VMENC_E_EXISTS ? "object name already used" : "cannot add object");
        }
        object *ob = &c->m->objects[idx];
        if (type == VMENC_OBJ_HOST) {
            const char *st;
            VMENC_GUARD(get_name(c, o, p, "crypto_state", false, &st));
            path_key(pf, p, "crypto_state");
            if (st != NULL && !host_state_from_name(st, &ob->crypto_state))
                return fail(c, VMENC_E_POLICY_INVALID, pf, 0, "unknown host crypto state");
        }
        if (type == VMENC_OBJ_VM) {
            VMENC_GUARD(get_field(c, o, p, "encrypted", json_type_boolean, false, &v));
            ob->encrypted = v != NULL && json_object_get_boolean(v);
        }
    }
    if (c->m->root == INDEX_NONE)
        return fail(c, VMENC_E_POLICY_INVALID, "$.inventory", 0,
                    "the inventory needs one object of type root");
    return VMENC_OK;
}

/* Second pass: parents and hosts (forward references allowed), then the
 * inventory must be a tree: no cycles. */
static vmenc_status link_objects(jctx *c, json_object *arr) {
    size_t n = json_object_array_length(arr);
    model *m = c->m;
    for (size_t i = 0; i < n; i++) {
        char p[PATH_MAX_], pf[PATH_MAX_];
        path_idx(p, "$.inventory", i);
        json_object *o = json_object_array_get_idx(arr, i);
        object *ob = &m->objects[i];
        const char *pname, *hname;
        VMENC_GUARD(get_name(c, o, p, "parent", false, &pname));
        path_key(pf, p, "parent");
        if (ob->type != VMENC_OBJ_ROOT) {
            if (pname == NULL)
                return fail(c, VMENC_E_POLICY_INVALID, pf, 0,
                            "missing required field (only the root has no parent)");
            uint32_t par = model_find_object(m, pname);
            if (par == INDEX_NONE)
                return fail(c, VMENC_E_NOT_FOUND, pf, 0, "no inventory object of that name");
            if (m->objects[par].type == VMENC_OBJ_VM)
                return fail(c, VMENC_E_POLICY_INVALID, pf, 0, "a vm cannot be a parent");
            ob->parent = par;
        }
        if (ob->type == VMENC_OBJ_VM) {
            VMENC_GUARD(get_name(c, o, p, "host", false, &hname));
            path_key(pf, p, "host");
            if (hname != NULL) {
                uint32_t h = model_find_object(m, hname);
                if (h == INDEX_NONE)
                    return fail(c, VMENC_E_NOT_FOUND, pf, 0, "no inventory object of that name");
                if (m->objects[h].type != VMENC_OBJ_HOST)
                    return fail(c, VMENC_E_POLICY_INVALID, pf, 0, "not a host");
                ob->host = h;
            }
        }
    }
    /* Cycle detection: walk up from each object; colours 0 new, 1 on the
     * current walk, 2 known to reach the root. */
    uint8_t *colour = calloc(n ? n : 1, 1);
    uint32_t *walk = malloc((n ? n : 1) * sizeof(uint32_t));
    vmenc_status rv = VMENC_OK;
    if (colour == NULL || walk == NULL) {
        rv = fail(c, VMENC_E_NOMEM, "$.inventory", 0, "out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < n && rv == VMENC_OK; i++) {
        uint32_t len = 0, x = i;
        while (x != INDEX_NONE && colour[x] == 0) {
            colour[x] = 1;
            walk[len++] = x;
            x = m->objects[x].parent;
        }
        if (x != INDEX_NONE && colour[x] == 1) {
            char p[PATH_MAX_], pf[PATH_MAX_];
            path_idx(p, "$.inventory", x);
            path_key(pf, p, "parent");
            rv = fail(c, VMENC_E_CYCLE, pf, 0, "object '%s' is its own ancestor",
                      m->objects[x].name);
        }
        for (uint32_t k = 0; k < len; k++)
            colour[walk[k]] = 2;
    }
    /* Depths, parents first (colour 3: depth known). */
    for (uint32_t i = 0; i < n && rv == VMENC_OK; i++) {
        uint32_t len = 0, x = i;
        while (x != INDEX_NONE && colour[x] != 3) {
            walk[len++] = x;
            x = m->objects[x].parent;
        }
        while (len > 0 && rv == VMENC_OK) {
            object *o = &m->objects[walk[--len]];
            o->depth = o->parent == INDEX_NONE ? 0 : m->objects[o->parent].depth + 1;
            colour[walk[len]] = 3;
            if (o->depth > VMENC_POLICY_MAX_DEPTH) {
                char p[PATH_MAX_], pf[PATH_MAX_];
                path_idx(p, "$.inventory", walk[len]);
                path_key(pf, p, "parent");
                rv = fail(c, VMENC_E_LIMIT, pf, 0, "the inventory is deeper than %u levels",
                          VMENC_POLICY_MAX_DEPTH);
            }
        }
    }
    /* Every encrypted VM sits on a host in safe mode. */
    for (uint32_t i = 0; i < n && rv == VMENC_OK; i++) {
        const object *ob = &m->objects[i];
        if (ob->type == VMENC_OBJ_VM && ob->encrypted && ob->host != INDEX_NONE &&
            m->objects[ob->host].crypto_state != VMENC_HOST_SAFE) {
            char p[PATH_MAX_], pf[PATH_MAX_];
            path_idx(p, "$.inventory", i);
            path_key(pf, p, "host");
            rv = fail(c, VMENC_E_HOST_MODE, pf, 0,
                      "an encrypted vm on a host that is not in encryption mode (safe)");
        }
    }
out:
    free(colour);
    free(walk);
    return rv;
}

static vmenc_status load_permissions(jctx *c, json_object *arr) {
    static const char *const keys[] = {"principal", "object", "role", "propagate"};
    size_t n = arr ? json_object_array_length(arr) : 0;
    for (size_t i = 0; i < n; i++) {
        char p[PATH_MAX_], pf[PATH_MAX_];
        path_idx(p, "$.permissions", i);
        json_object *o = json_object_array_get_idx(arr, i), *prop = NULL;
        const char *pn, *on, *rn;
        VMENC_GUARD(expect_object(c, o, p));
        VMENC_GUARD(check_keys(c, o, p, keys, VMENC_ARRAY_LEN(keys)));
        VMENC_GUARD(get_name(c, o, p, "principal", true, &pn));
        VMENC_GUARD(get_name(c, o, p, "object", true, &on));
        VMENC_GUARD(get_name(c, o, p, "role", true, &rn));
        VMENC_GUARD(get_field(c, o, p, "propagate", json_type_boolean, false, &prop));
        uint32_t pi = model_find_principal(c->m, pn);
        uint32_t oi = model_find_object(c->m, on);
        uint32_t ri = model_find_role(c->m, rn);
        if (pi == INDEX_NONE) {
            path_key(pf, p, "principal");
            return fail(c, VMENC_E_NOT_FOUND, pf, 0, "no user or group of that name");
        }
        if (oi == INDEX_NONE) {
            path_key(pf, p, "object");
            return fail(c, VMENC_E_NOT_FOUND, pf, 0, "no inventory object of that name");
        }
        if (ri == INDEX_NONE) {
            path_key(pf, p, "role");
            return fail(c, VMENC_E_NOT_FOUND, pf, 0, "no role of that name");
        }
        /* vSphere's default: a permission propagates. */
        bool propagate = prop == NULL || json_object_get_boolean(prop);
        vmenc_status rv = model_set_perm(c->m, oi, pi, ri, propagate, false);
        if (rv != VMENC_OK)
            return fail(c, rv, p, 0,
                        rv == VMENC_E_EXISTS
                            ? "a second permission for this principal on this object"
                            : "cannot add permission");
    }
    return VMENC_OK;
}

static const char *const k_class_names[] = {"vm_home", "disks", "core_dumps"};

static vmenc_status load_storage_policies(jctx *c, json_object *arr) {
    static const char *const keys[] = {"name", "encrypt", "file_classes", "key_provider",
                                       "migration_encryption"};
    size_t n = arr ? json_object_array_length(arr) : 0;
    for (size_t i = 0; i < n; i++) {
        char p[PATH_MAX_], pf[PATH_MAX_], pe[PATH_MAX_];
        path_idx(p, "$.storage_policies", i);
        json_object *o = json_object_array_get_idx(arr, i), *enc = NULL, *classes = NULL;
        vmenc_storage_policy_spec spec = {.struct_size = sizeof(spec)};
        const char *mig = NULL;
        VMENC_GUARD(expect_object(c, o, p));
        VMENC_GUARD(check_keys(c, o, p, keys, VMENC_ARRAY_LEN(keys)));
        VMENC_GUARD(get_name(c, o, p, "name", true, &spec.name));
        VMENC_GUARD(get_field(c, o, p, "encrypt", json_type_boolean, true, &enc));
        VMENC_GUARD(get_field(c, o, p, "file_classes", json_type_array, false, &classes));
        VMENC_GUARD(get_name(c, o, p, "key_provider", false, &spec.key_provider));
        VMENC_GUARD(get_name(c, o, p, "migration_encryption", false, &mig));
        spec.encrypt = json_object_get_boolean(enc);
        path_key(pf, p, "file_classes");
        size_t nc = classes ? json_object_array_length(classes) : 0;
        for (size_t k = 0; k < nc; k++) {
            const char *cn;
            uint32_t bit = 0;
            path_idx(pe, pf, k);
            VMENC_GUARD(name_of(c, json_object_array_get_idx(classes, k), pe, &cn));
            for (size_t j = 0; j < VMENC_ARRAY_LEN(k_class_names); j++)
                if (strcmp(cn, k_class_names[j]) == 0)
                    bit = 1u << j;
            if (bit == 0)
                return fail(c, VMENC_E_POLICY_INVALID, pe, 0, "unknown file class");
            if (spec.file_classes & bit)
                return fail(c, VMENC_E_EXISTS, pe, 0, "file class listed twice");
            spec.file_classes |= bit;
        }
        spec.migration = VMENC_MIGRATION_OPPORTUNISTIC; /* vSphere's default */
        if (mig != NULL && !migration_from_name(mig, &spec.migration)) {
            path_key(pf, p, "migration_encryption");
            return fail(c, VMENC_E_POLICY_INVALID, pf, 0, "unknown migration encryption mode");
        }
        if (model_find_spolicy(c->m, spec.name) != INDEX_NONE) {
            path_key(pf, p, "name");
            return fail(c, VMENC_E_EXISTS, pf, 0, "storage policy name already used");
        }
        vmenc_status rv = model_set_spolicy(c->m, &spec);
        if (rv != VMENC_OK)
            return fail(c, rv, p, 0,
                        "inconsistent storage policy: encrypt needs file_classes and a "
                        "key_provider, disks need vm_home, a plain policy has neither");
    }
    return VMENC_OK;
}

/* ---- top level ----------------------------------------------------------- */

static vmenc_status load_document(jctx *c, json_object *root) {
    static const char *const keys[] = {"version", "roles", "users", "groups",
                                       "inventory", "permissions", "storage_policies"};
    json_object *ver, *roles, *users, *groups, *inv, *perms, *sps;
    VMENC_GUARD(expect_object(c, root, "$"));
    VMENC_GUARD(check_keys(c, root, "$", keys, VMENC_ARRAY_LEN(keys)));
    VMENC_GUARD(get_field(c, root, "$", "version", json_type_int, true, &ver));
    if (json_object_get_int64(ver) != 1)
        return fail(c, VMENC_E_BAD_VERSION, "$.version", 0, "unsupported version (this is 1)");
    VMENC_GUARD(get_field(c, root, "$", "roles", json_type_array, false, &roles));
    VMENC_GUARD(get_field(c, root, "$", "users", json_type_array, false, &users));
    VMENC_GUARD(get_field(c, root, "$", "groups", json_type_array, false, &groups));
    VMENC_GUARD(get_field(c, root, "$", "inventory", json_type_array, true, &inv));
    VMENC_GUARD(get_field(c, root, "$", "permissions", json_type_array, false, &perms));
    VMENC_GUARD(get_field(c, root, "$", "storage_policies", json_type_array, false, &sps));

    VMENC_GUARD(load_roles(c, roles));
    VMENC_GUARD(load_principals(c, users, "$.users", false));
    VMENC_GUARD(load_principals(c, groups, "$.groups", true));
    uint32_t *json_index_of = calloc(c->m->num_principals ? c->m->num_principals : 1,
                                     sizeof(uint32_t));
    if (json_index_of == NULL)
        return fail(c, VMENC_E_NOMEM, "$", 0, "out of memory");
    vmenc_status rv = load_members(c, groups, json_index_of);
    free(json_index_of);
    VMENC_GUARD(rv);
    VMENC_GUARD(load_objects(c, inv));
    VMENC_GUARD(link_objects(c, inv));
    VMENC_GUARD(load_permissions(c, perms));
    VMENC_GUARD(load_storage_policies(c, sps));
    /* While loading, parents came after some of their children: link the
     * permission shortcuts now that the tree is known to be acyclic. */
    vmenc_status up_rv = model_rebuild_up(c->m);
    if (up_rv != VMENC_OK)
        return fail(c, up_rv, "$", 0, "out of memory");
    return VMENC_OK;
}

static json_object *parse_prefix(const vmenc_cbs *in, size_t len, json_tokener **tok_out) {
    json_tokener *tok = json_tokener_new_ex(VMENC_POLICY_MAX_JSON_DEPTH);
    *tok_out = tok;
    if (tok == NULL)
        return NULL;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    return json_tokener_parse_ex(tok, (const char *)vmenc_cbs_data(in), (int)len);
}

/* json-c 0.16 accepts 'single-quoted' strings even in strict mode; RFC 8259
 * does not. Find a single quote outside a double-quoted string. Returns the
 * offset or SIZE_MAX. */
static size_t single_quote_at(vmenc_cbs in) {
    bool in_str = false, esc = false;
    size_t off = 0;
    uint8_t ch;
    for (; vmenc_cbs_get_u8(&in, &ch); off++) {
        if (in_str) {
            if (esc)
                esc = false;
            else if (ch == '\\')
                esc = true;
            else if (ch == '"')
                in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if (ch == '\'') {
            return off;
        }
    }
    return SIZE_MAX;
}

/* ---- duplicate keys ------------------------------------------------------
 * json-c keeps the last of two equal keys in an object, so {"role": "ReadOnly",
 * "role": "Admin"} would mean something other than what a reviewer reads
 * first. After json-c has accepted the document (so it is well-formed), this
 * scan walks it once more, finds the keys of every object and refuses
 * duplicates and escaped keys (every key of the schema is a plain word, and an
 * escape could hide a duplicate), reporting the JSON path. */

#define SCAN_MAX_KEYS 16 /* the widest object of the schema has 7 fields */

typedef struct scan_frame {
    bool is_obj;
    size_t idx;                     /* arrays: element index */
    size_t key_off[SCAN_MAX_KEYS];  /* objects: keys seen (offset, length) */
    size_t key_len[SCAN_MAX_KEYS];
    size_t num_keys;
    bool want_key;
} scan_frame;

static void scan_path(char *out, const uint8_t *d, const scan_frame *st, size_t depth) {
    char cur[PATH_MAX_], key[VMENC_POLICY_NAME_MAX + 1];
    snprintf(cur, sizeof(cur), "$");
    for (size_t i = 0; i < depth; i++) {
        if (st[i].is_obj) {
            if (st[i].num_keys == 0)
                break;
            size_t n = st[i].key_len[st[i].num_keys - 1];
            if (n > VMENC_POLICY_NAME_MAX)
                n = VMENC_POLICY_NAME_MAX;
            memcpy(key, d + st[i].key_off[st[i].num_keys - 1], n);
            key[n] = '\0';
            path_key(out, cur, key);
        } else {
            path_idx(out, cur, st[i].idx);
        }
        memcpy(cur, out, PATH_MAX_);
    }
    memcpy(out, cur, PATH_MAX_);
}

static vmenc_status scan_keys(jctx *c, vmenc_cbs in) {
    scan_frame st[VMENC_POLICY_MAX_JSON_DEPTH + 1];
    size_t depth = 0;
    const uint8_t *d = vmenc_cbs_data(&in);
    size_t len = vmenc_cbs_len(&in);
    char path[PATH_MAX_];
    for (size_t i = 0; i < len; i++) {
        uint8_t ch = d[i];
        scan_frame *top = depth ? &st[depth - 1] : NULL;
        if (ch == '{' || ch == '[') {
            if (depth == VMENC_ARRAY_LEN(st))
                return VMENC_OK; /* json-c bounds depth; never here */
            st[depth] = (scan_frame){.is_obj = ch == '{', .want_key = ch == '{'};
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (depth)
                depth--;
        } else if (ch == ',') {
            if (top && top->is_obj)
                top->want_key = true;
            else if (top)
                top->idx++;
        } else if (ch == '"') {
            size_t start = ++i;
            bool escaped = false;
            for (; i < len && d[i] != '"'; i++) {
                if (d[i] == '\\') {
                    escaped = true;
                    i++;
                }
            }
            if (!(top && top->is_obj && top->want_key))
                continue;
            top->want_key = false;
            size_t klen = i - start;
            bool dup = false;
            for (size_t k = 0; k < top->num_keys && !dup; k++)
                dup = top->key_len[k] == klen && memcmp(d + top->key_off[k], d + start, klen) == 0;
            bool full = top->num_keys == SCAN_MAX_KEYS;
            /* Record the key (a full frame reuses its last slot) so the path
             * of an error ends in it. */
            size_t slot = full ? SCAN_MAX_KEYS - 1 : top->num_keys++;
            top->key_off[slot] = start;
            top->key_len[slot] = klen;
            if (escaped || dup || full) {
                scan_path(path, d, st, depth);
                return fail(c, VMENC_E_POLICY_INVALID, path, start - 1,
                            escaped ? "escape sequence in a field name"
                            : dup   ? "field given twice"
                                    : "object with too many fields");
            }
        }
    }
    return VMENC_OK;
}

static vmenc_status syntax_error(jctx *c, const vmenc_cbs *in, json_tokener *tok,
                                 enum json_tokener_error e) {
    size_t off = json_tokener_get_parse_end(tok);
    /* In strict mode json-c reports bytes after a complete value as a syntax
     * error; tell the two apart by parsing the prefix alone. */
    if (off > 0 && off < vmenc_cbs_len(in)) {
        json_tokener *t2;
        json_object *o = parse_prefix(in, off, &t2);
        bool complete = o != NULL;
        json_object_put(o);
        json_tokener_free(t2);
        if (complete)
            return fail(c, VMENC_E_TRAILING_DATA, "$", off, "bytes after the document");
    }
    vmenc_status st = e == json_tokener_error_depth ? VMENC_E_DEPTH_LIMIT : VMENC_E_BAD_ENCODING;
    return fail(c, st, "$", off, "JSON syntax: %s at byte %zu", json_tokener_error_desc(e), off);
}

vmenc_status policy_json_parse(const uint8_t *json, size_t json_len, vmenc_policy_error *err,
                               model **out) {
    jctx c = {.m = NULL, .err = err};
    if (err != NULL) {
        VMENC_ENSURE(err->struct_size >= sizeof(vmenc_policy_error), VMENC_E_ABI_VERSION);
        uint32_t sz = err->struct_size;
        memset(err, 0, sizeof(*err));
        err->struct_size = sz;
    }
    VMENC_ENSURE(json != NULL || json_len == 0, VMENC_E_INVALID_ARG);
    /* The house rule: untrusted bytes enter through a bounded cursor. */
    vmenc_cbs in;
    vmenc_cbs_init(&in, json, json_len);
    if (vmenc_cbs_len(&in) > VMENC_POLICY_MAX_DOCUMENT)
        return fail(&c, VMENC_E_TOO_LARGE, "$", 0, "document larger than %zu bytes",
                    (size_t)VMENC_POLICY_MAX_DOCUMENT);
    const uint8_t *nul = vmenc_cbs_len(&in) ? memchr(vmenc_cbs_data(&in), 0, vmenc_cbs_len(&in))
                                            : NULL;
    if (nul != NULL)
        return fail(&c, VMENC_E_BAD_ENCODING, "$", (size_t)(nul - vmenc_cbs_data(&in)),
                    "NUL byte in the document");

    size_t quote = single_quote_at(in);
    if (quote != SIZE_MAX)
        return fail(&c, VMENC_E_BAD_ENCODING, "$", quote,
                    "JSON syntax: single-quoted string at byte %zu", quote);
    json_tokener *tok;
    json_object *root = parse_prefix(&in, vmenc_cbs_len(&in), &tok);
    if (tok == NULL)
        return fail(&c, VMENC_E_NOMEM, "$", 0, "out of memory");
    enum json_tokener_error e = json_tokener_get_error(tok);
    vmenc_status rv = VMENC_OK;
    if (root == NULL) {
        if (e == json_tokener_continue || e == json_tokener_success)
            rv = fail(&c, VMENC_E_TRUNCATED, "$", vmenc_cbs_len(&in),
                      "the document ends before its value does");
        else
            rv = syntax_error(&c, &in, tok, e);
    } else {
        /* Whitespace may follow the value; anything else is trailing data. */
        vmenc_cbs rest = in;
        (void)vmenc_cbs_skip(&rest, json_tokener_get_parse_end(tok));
        uint8_t ch;
        while (rv == VMENC_OK && vmenc_cbs_get_u8(&rest, &ch))
            if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r')
                rv = fail(&c, VMENC_E_TRAILING_DATA, "$",
                          vmenc_cbs_len(&in) - vmenc_cbs_len(&rest) - 1,
                          "bytes after the document");
    }
    json_tokener_free(tok);
    if (rv == VMENC_OK)
        rv = scan_keys(&c, in);
    if (rv == VMENC_OK) {
        rv = model_new(&c.m);
        if (rv != VMENC_OK)
            rv = fail(&c, rv, "$", 0, "out of memory");
    }
    if (rv == VMENC_OK) {
        c.m->defer_up = true;
        rv = load_document(&c, root);
        c.m->defer_up = false;
    }
    json_object_put(root);
    if (rv != VMENC_OK) {
        model_free(c.m);
        return rv;
    }
    *out = c.m;
    return VMENC_OK;
}

/* ---- canonical save ------------------------------------------------------ */

static void put(vmenc_cbb *b, const char *s) {
    vmenc_cbb_add_bytes(b, (const uint8_t *)s, strlen(s));
}

/* put_str writes a JSON string. Names are validated printable UTF-8, so only
 * '"' and '\\' need escaping; control bytes are escaped anyway. */
static void put_str(vmenc_cbb *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    vmenc_cbb_add_u8(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            vmenc_cbb_add_u8(b, '\\');
            vmenc_cbb_add_u8(b, *p);
        } else if (*p < 0x20) {
            uint8_t e[6] = {'\\', 'u', '0', '0', (uint8_t)hex[*p >> 4], (uint8_t)hex[*p & 15]};
            vmenc_cbb_add_bytes(b, e, sizeof(e));
        } else {
            vmenc_cbb_add_u8(b, *p);
        }
    }
    vmenc_cbb_add_u8(b, '"');
}

static void put_kv(vmenc_cbb *b, const char *key, const char *val, bool first) {
    if (!first)
        put(b, ", ");
    put_str(b, key);
    put(b, ": ");
    put_str(b, val);
}

/* Sections print "[]" when empty, else one entry per line. */
static void section_open(vmenc_cbb *b, const char *name, bool *first) {
    put(b, ",\n  ");
    put_str(b, name);
    put(b, ": [");
    *first = true;
}
static void entry_open(vmenc_cbb *b, bool *first) {
    put(b, *first ? "\n    {" : ",\n    {");
    *first = false;
}
static void section_close(vmenc_cbb *b, bool first) { put(b, first ? "]" : "\n  ]"); }

static void save_model(const model *m, vmenc_cbb *b) {
    bool first;
    put(b, "{\n  \"version\": 1");

    section_open(b, "roles", &first);
    for (uint32_t i = 0; i < m->num_roles; i++) {
        const role *r = &m->roles[i];
        if (r->predefined)
            continue;
        entry_open(b, &first);
        put_kv(b, "name", r->name, true);
        put(b, ", \"privileges\": [");
        bool pf = true;
        for (int p = 0; p < VMENC_PRIV_COUNT_; p++) {
            if (!privset_has(&r->privs, p))
                continue;
            if (!pf)
                put(b, ", ");
            put_str(b, vmenc_policy_privilege_name(p));
            pf = false;
        }
        put(b, "]}");
    }
    section_close(b, first);

    section_open(b, "users", &first);
    for (uint32_t i = 0; i < m->num_principals; i++) {
        if (m->principals[i].is_group)
            continue;
        entry_open(b, &first);
        put_kv(b, "name", m->principals[i].name, true);
        put(b, "}");
    }
    section_close(b, first);

    section_open(b, "groups", &first);
    for (uint32_t i = 0; i < m->num_principals; i++) {
        const principal *g = &m->principals[i];
        if (!g->is_group)
            continue;
        entry_open(b, &first);
        put_kv(b, "name", g->name, true);
        put(b, ", \"members\": [");
        for (uint32_t k = 0; k < g->num_members; k++) {
            if (k)
                put(b, ", ");
            put_str(b, m->principals[g->members[k]].name);
        }
        put(b, "]}");
    }
    section_close(b, first);

    section_open(b, "inventory", &first);
    for (uint32_t i = 0; i < m->num_objects; i++) {
        const object *o = &m->objects[i];
        entry_open(b, &first);
        put_kv(b, "name", o->name, true);
        put_kv(b, "type", object_type_name((int)o->type), false);
        if (o->parent != INDEX_NONE)
            put_kv(b, "parent", m->objects[o->parent].name, false);
        if (o->type == VMENC_OBJ_HOST)
            put_kv(b, "crypto_state", vmenc_host_crypto_state_name((int)o->crypto_state), false);
        if (o->type == VMENC_OBJ_VM) {
            if (o->host != INDEX_NONE)
                put_kv(b, "host", m->objects[o->host].name, false);
            put(b, o->encrypted ? ", \"encrypted\": true" : ", \"encrypted\": false");
        }
        put(b, "}");
    }
    section_close(b, first);

    section_open(b, "permissions", &first);
    for (uint32_t i = 0; i < m->num_objects; i++) {
        const object *o = &m->objects[i];
        for (uint32_t k = 0; k < m->hot[i].num_perms; k++) {
            const perm *e = &m->hot[i].perms[k];
            entry_open(b, &first);
            put_kv(b, "principal", m->principals[e->principal].name, true);
            put_kv(b, "object", o->name, false);
            put_kv(b, "role", m->roles[e->role].name, false);
            put(b, e->propagate ? ", \"propagate\": true}" : ", \"propagate\": false}");
        }
    }
    section_close(b, first);

    section_open(b, "storage_policies", &first);
    for (uint32_t i = 0; i < m->num_spolicies; i++) {
        const storage_policy *sp = &m->spolicies[i];
        entry_open(b, &first);
        put_kv(b, "name", sp->name, true);
        put(b, sp->encrypt ? ", \"encrypt\": true" : ", \"encrypt\": false");
        put(b, ", \"file_classes\": [");
        bool cf = true;
        for (size_t j = 0; j < VMENC_ARRAY_LEN(k_class_names); j++) {
            if (!(sp->file_classes & (1u << j)))
                continue;
            if (!cf)
                put(b, ", ");
            put_str(b, k_class_names[j]);
            cf = false;
        }
        put(b, "]");
        if (sp->key_provider != NULL)
            put_kv(b, "key_provider", sp->key_provider, false);
        put_kv(b, "migration_encryption", migration_name((int)sp->migration), false);
        put(b, "}");
    }
    section_close(b, first);
    put(b, "\n}\n");
}

vmenc_status policy_json_serialise(const model *m, uint8_t **out, size_t *out_len) {
    vmenc_cbb b;
    VMENC_GUARD(vmenc_cbb_init(&b, 4096));
    save_model(m, &b);
    vmenc_cbb_add_u8(&b, 0);
    uint8_t *buf;
    size_t len;
    VMENC_GUARD(vmenc_cbb_finish(&b, &buf, &len));
    *out = buf;
    *out_len = len - 1;
    return VMENC_OK;
}

vmenc_status vmenc_policy_save_json(vmenc_policy *policy, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE_REF(policy);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE_REF(out_len);
    vmenc_cbb b;
    VMENC_GUARD(vmenc_cbb_init(&b, 4096));
    if (pthread_rwlock_rdlock(&policy->lock) != 0) {
        vmenc_cbb_cleanup(&b);
        return VMENC_E_INTERNAL;
    }
    save_model(policy->m, &b);
    pthread_rwlock_unlock(&policy->lock);
    vmenc_cbb_add_u8(&b, 0); /* NUL for callers who print it; not counted */
    uint8_t *buf;
    size_t len;
    VMENC_GUARD(vmenc_cbb_finish(&b, &buf, &len));
    *out = buf;
    *out_len = len - 1;
    return VMENC_OK;
}
