/*
 * lib/policy/model.c - the policy model: interned names, growth of the
 * entity arrays, permissions, storage policies and the transitive group
 * closure. No locking here: callers in policy.c hold the policy's lock, and
 * the loader builds a private model before publishing it.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "policy/policy_internal.h"

/* ---- names ------------------------------------------------------------ */

/* A name is 1..VMENC_POLICY_NAME_MAX bytes of valid UTF-8 with no control
 * characters, so it can be printed in a sentence and written to JSON without
 * surprises. */
bool name_valid(const char *s) {
    if (s == NULL)
        return false;
    size_t n = strnlen(s, VMENC_POLICY_NAME_MAX + 1);
    if (n == 0 || n > VMENC_POLICY_NAME_MAX)
        return false;
    const uint8_t *p = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        if (c < 0x20 || c == 0x7f)
            return false;
        if (c < 0x80) { i++; continue; }
        size_t len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
        else return false;
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
            return false;
        i += len;
    }
    return true;
}

/* ---- strmap --------------------------------------------------------------
 * Maps a name to the dense index of the entity that carries it. Slots hold
 * index+1; the key bytes live in the entity, which map_names finds from the
 * map's place in the model. SipHash-2-4 with a per-map random key keeps
 * crafted names from degrading lookups. */

typedef const char *(*name_at_fn)(const model *m, uint32_t i);

static uint64_t str_hash(const strmap *sm, const char *key, size_t len) {
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const unsigned char *)key, len, sm->key);
    uint64_t v;
    memcpy(&v, h, sizeof(v));
    return v;
}

static vmenc_status strmap_init(strmap *sm) {
    memset(sm, 0, sizeof(*sm));
    sm->cap = 16;
    sm->slots = calloc(sm->cap, sizeof(strmap_slot));
    VMENC_ENSURE(sm->slots != NULL, VMENC_E_NOMEM);
    randombytes_buf(sm->key, sizeof(sm->key));
    return VMENC_OK;
}

static void strmap_free(strmap *sm) {
    free(sm->slots);
    sm->slots = NULL;
}

/* Each map knows the entity array it indexes through this table. */
static const char *obj_name_at(const model *m, uint32_t i) { return m->objects[i].name; }
static const char *prn_name_at(const model *m, uint32_t i) { return m->principals[i].name; }
static const char *role_name_at(const model *m, uint32_t i) { return m->roles[i].name; }
static const char *sp_name_at(const model *m, uint32_t i) { return m->spolicies[i].name; }

static name_at_fn map_names(const model *m, const strmap *sm) {
    if (sm == &m->obj_map) return obj_name_at;
    if (sm == &m->principal_map) return prn_name_at;
    if (sm == &m->role_map) return role_name_at;
    return sp_name_at;
}

/* The load factor stays at or below 1/2, so probe runs are short. Keys
 * longer than any name are never found (and never hashed past the limit). */
static const strmap_slot *strmap_find_slot(const strmap *sm, const char *key) {
    size_t len = strnlen(key, VMENC_POLICY_NAME_MAX + 1);
    if (len > VMENC_POLICY_NAME_MAX)
        return NULL;
    uint64_t h = str_hash(sm, key, len);
    uint32_t mask = sm->cap - 1, tag = (uint32_t)(h >> 32);
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        const strmap_slot *s = &sm->slots[i];
        if (s->idx1 == 0)
            return NULL;
        if (s->tag != tag)
            continue;
        if (len <= STRMAP_HEAD) {
            if (s->len == len && memcmp(s->head, key, len) == 0)
                return s;
        } else if (s->len == 0xff && strcmp(s->name, key) == 0) {
            return s;
        }
    }
}

static uint32_t strmap_find(const model *m, const strmap *sm, const char *key) {
    (void)m;
    const strmap_slot *s = strmap_find_slot(sm, key);
    return s ? s->idx1 - 1 : INDEX_NONE;
}

static void slot_put(strmap_slot *slots, uint32_t cap, uint64_t h, uint32_t idx1,
                     const char *name, uint8_t aux) {
    uint32_t i = (uint32_t)h & (cap - 1);
    while (slots[i].idx1 != 0)
        i = (i + 1) & (cap - 1);
    strmap_slot *s = &slots[i];
    size_t len = strlen(name);
    s->idx1 = idx1;
    s->tag = (uint32_t)(h >> 32);
    s->name = name;
    s->aux = aux;
    memset(s->head, 0, sizeof(s->head));
    if (len <= STRMAP_HEAD) {
        memcpy(s->head, name, len);
        s->len = (uint8_t)len;
    } else {
        s->len = 0xff;
    }
}

static vmenc_status strmap_grow(const model *m, strmap *sm) {
    name_at_fn at = map_names(m, sm);
    VMENC_ENSURE(sm->cap <= UINT32_MAX / 2, VMENC_E_LIMIT);
    uint32_t ncap = sm->cap * 2;
    strmap_slot *ns = calloc(ncap, sizeof(strmap_slot));
    VMENC_ENSURE(ns != NULL, VMENC_E_NOMEM);
    for (uint32_t k = 0; k < sm->cap; k++) {
        uint32_t s = sm->slots[k].idx1;
        if (s == 0)
            continue;
        const char *name = at(m, s - 1);
        slot_put(ns, ncap, str_hash(sm, name, strlen(name)), s, name, sm->slots[k].aux);
    }
    free(sm->slots);
    sm->slots = ns;
    sm->cap = ncap;
    return VMENC_OK;
}

/* strmap_insert records that entity |idx| (whose name the entity already
 * holds) is found under |key|. The caller has checked the key is absent. */
static vmenc_status strmap_insert(const model *m, strmap *sm, const char *key, uint32_t idx,
                                  uint8_t aux) {
    if ((uint64_t)(sm->count + 1) * 2 > sm->cap)
        VMENC_GUARD(strmap_grow(m, sm));
    const char *name = map_names(m, sm)(m, idx);
    slot_put(sm->slots, sm->cap, str_hash(sm, key, strlen(key)), idx + 1, name, aux);
    sm->count++;
    return VMENC_OK;
}

/* ---- growth ---------------------------------------------------------------- */

static vmenc_status grow(void **arr, uint32_t *cap, uint32_t need, size_t elem) {
    if (need <= *cap)
        return VMENC_OK;
    uint64_t ncap = *cap ? (uint64_t)*cap * 2 : 8;
    while (ncap < need)
        ncap *= 2;
    VMENC_ENSURE(ncap <= UINT32_MAX && ncap * elem / elem == ncap, VMENC_E_NOMEM);
    void *n = realloc(*arr, (size_t)ncap * elem);
    VMENC_ENSURE(n != NULL, VMENC_E_NOMEM);
    memset((uint8_t *)n + (size_t)*cap * elem, 0, (size_t)(ncap - *cap) * elem);
    *arr = n;
    *cap = (uint32_t)ncap;
    return VMENC_OK;
}

/* ---- model ---------------------------------------------------------------- */

static vmenc_status add_predefined_roles(model *m) {
    privset all = {{0}}, nocrypto = {{0}}, ro = {{0}}, none = {{0}};
    for (int p = 0; p < VMENC_PRIV_COUNT_; p++) {
        privset_add(&all, p);
        if (!priv_is_crypto(p))
            privset_add(&nocrypto, p);
    }
    privset_add(&ro, VMENC_PRIV_SYSTEM_ANONYMOUS);
    privset_add(&ro, VMENC_PRIV_SYSTEM_VIEW);
    privset_add(&ro, VMENC_PRIV_SYSTEM_READ);
    uint32_t idx;
    VMENC_GUARD(model_add_role(m, VMENC_ROLE_ADMIN, &all, true, &idx));
    VMENC_GUARD(model_add_role(m, VMENC_ROLE_NO_CRYPTO_ADMIN, &nocrypto, true, &idx));
    VMENC_GUARD(model_add_role(m, VMENC_ROLE_READ_ONLY, &ro, true, &idx));
    VMENC_GUARD(model_add_role(m, VMENC_ROLE_NO_ACCESS, &none, true, &idx));
    return VMENC_OK;
}

vmenc_status model_new(model **out) {
    model *m = calloc(1, sizeof(*m));
    VMENC_ENSURE(m != NULL, VMENC_E_NOMEM);
    m->root = INDEX_NONE;
    vmenc_status rv;
    VMENC_GUARD_GOTO(rv, strmap_init(&m->obj_map), fail);
    VMENC_GUARD_GOTO(rv, strmap_init(&m->principal_map), fail);
    VMENC_GUARD_GOTO(rv, strmap_init(&m->role_map), fail);
    VMENC_GUARD_GOTO(rv, strmap_init(&m->sp_map), fail);
    VMENC_GUARD_GOTO(rv, add_predefined_roles(m), fail);
    *out = m;
    return VMENC_OK;
fail:
    model_free(m);
    return rv;
}

void model_free(model *m) {
    if (m == NULL)
        return;
    for (uint32_t i = 0; i < m->num_objects; i++) {
        free(m->objects[i].name);
        free(m->hot[i].perms);
    }
    for (uint32_t i = 0; i < m->num_principals; i++) {
        free(m->principals[i].name);
        free(m->principals[i].members);
    }
    for (uint32_t i = 0; i < m->num_roles; i++)
        free(m->roles[i].name);
    for (uint32_t i = 0; i < m->num_spolicies; i++) {
        free(m->spolicies[i].name);
        free(m->spolicies[i].key_provider);
    }
    free(m->objects);
    free(m->hot);
    free(m->principals);
    free(m->prn_hot);
    free(m->group_pool);
    free(m->roles);
    free(m->spolicies);
    strmap_free(&m->obj_map);
    strmap_free(&m->principal_map);
    strmap_free(&m->role_map);
    strmap_free(&m->sp_map);
    free(m);
}

uint32_t model_find_object(const model *m, const char *name) {
    return strmap_find(m, &m->obj_map, name);
}
uint32_t model_find_object_typed(const model *m, const char *name,
                                 vmenc_policy_object_type *type) {
    const strmap_slot *s = strmap_find_slot(&m->obj_map, name);
    if (s == NULL)
        return INDEX_NONE;
    *type = (vmenc_policy_object_type)s->aux;
    return s->idx1 - 1;
}
uint32_t model_find_principal(const model *m, const char *name) {
    return strmap_find(m, &m->principal_map, name);
}
uint32_t model_find_role(const model *m, const char *name) {
    return strmap_find(m, &m->role_map, name);
}
uint32_t model_find_spolicy(const model *m, const char *name) {
    return strmap_find(m, &m->sp_map, name);
}

vmenc_status model_add_role(model *m, const char *name, const privset *privs, bool predefined,
                            uint32_t *out) {
    VMENC_ENSURE(name_valid(name), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(model_find_role(m, name) == INDEX_NONE, VMENC_E_EXISTS);
    VMENC_ENSURE(m->num_roles < VMENC_POLICY_MAX_ROLES, VMENC_E_LIMIT);
    VMENC_GUARD(grow((void **)&m->roles, &m->cap_roles, m->num_roles + 1, sizeof(role)));
    role *r = &m->roles[m->num_roles];
    r->name = strdup(name);
    VMENC_ENSURE(r->name != NULL, VMENC_E_NOMEM);
    r->privs = *privs;
    r->predefined = predefined;
    vmenc_status rv = strmap_insert(m, &m->role_map, name, m->num_roles, 0);
    if (rv != VMENC_OK) {
        free(r->name);
        memset(r, 0, sizeof(*r));
        return rv;
    }
    *out = m->num_roles++;
    return VMENC_OK;
}

vmenc_status model_add_principal(model *m, const char *name, bool is_group, uint32_t *out) {
    VMENC_ENSURE(name_valid(name), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(model_find_principal(m, name) == INDEX_NONE, VMENC_E_EXISTS);
    VMENC_ENSURE(m->num_principals < VMENC_POLICY_MAX_PRINCIPALS, VMENC_E_LIMIT);
    VMENC_GUARD(grow((void **)&m->principals, &m->cap_principals, m->num_principals + 1,
                     sizeof(principal)));
    VMENC_GUARD(grow((void **)&m->prn_hot, &m->cap_prn_hot, m->num_principals + 1,
                     sizeof(prnhot)));
    m->prn_hot[m->num_principals] = (prnhot){0, 0}; /* in no group yet */
    principal *p = &m->principals[m->num_principals];
    p->name = strdup(name);
    VMENC_ENSURE(p->name != NULL, VMENC_E_NOMEM);
    p->is_group = is_group;
    vmenc_status rv = strmap_insert(m, &m->principal_map, name, m->num_principals, 0);
    if (rv != VMENC_OK) {
        free(p->name);
        memset(p, 0, sizeof(*p));
        return rv;
    }
    *out = m->num_principals++;
    return VMENC_OK;
}

vmenc_status model_add_member(model *m, uint32_t group, uint32_t member) {
    principal *g = &m->principals[group];
    VMENC_ENSURE(g->is_group, VMENC_E_INVALID_ARG);
    for (uint32_t i = 0; i < g->num_members; i++)
        VMENC_ENSURE(g->members[i] != member, VMENC_E_EXISTS);
    VMENC_ENSURE(m->num_members_total < VMENC_POLICY_MAX_GROUP_MEMBERS, VMENC_E_LIMIT);
    VMENC_GUARD(grow((void **)&g->members, &g->cap_members, g->num_members + 1, sizeof(uint32_t)));
    g->members[g->num_members++] = member;
    m->num_members_total++;
    return VMENC_OK;
}

vmenc_status model_add_object(model *m, const char *name, vmenc_policy_object_type type,
                              uint32_t parent, uint32_t *out) {
    VMENC_ENSURE(name_valid(name), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(object_type_name((int)type) != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(model_find_object(m, name) == INDEX_NONE, VMENC_E_EXISTS);
    VMENC_ENSURE(m->num_objects < VMENC_POLICY_MAX_OBJECTS, VMENC_E_LIMIT);
    uint32_t depth = parent == INDEX_NONE ? 0 : m->objects[parent].depth + 1;
    VMENC_ENSURE(depth <= VMENC_POLICY_MAX_DEPTH, VMENC_E_LIMIT);
    VMENC_GUARD(grow((void **)&m->objects, &m->cap_objects, m->num_objects + 1, sizeof(object)));
    VMENC_GUARD(grow((void **)&m->hot, &m->cap_hot, m->num_objects + 1, sizeof(objhot)));
    object *o = &m->objects[m->num_objects];
    o->name = strdup(name);
    VMENC_ENSURE(o->name != NULL, VMENC_E_NOMEM);
    o->type = type;
    o->parent = parent;
    o->depth = depth;
    objhot *oh = &m->hot[m->num_objects];
    memset(oh, 0, sizeof(*oh));
    oh->up = parent == INDEX_NONE ? INDEX_NONE
             : m->objects[parent].num_prop ? parent : m->hot[parent].up;
    o->host = INDEX_NONE;
    o->encrypted = false;
    o->crypto_state = VMENC_HOST_INCAPABLE;
    vmenc_status rv = strmap_insert(m, &m->obj_map, name, m->num_objects, (uint8_t)type);
    if (rv != VMENC_OK) {
        free(o->name);
        memset(o, 0, sizeof(*o));
        return rv;
    }
    if (type == VMENC_OBJ_ROOT)
        m->root = m->num_objects;
    *out = m->num_objects++;
    return VMENC_OK;
}

vmenc_status model_set_perm(model *m, uint32_t obj, uint32_t principal_idx, uint32_t role_idx,
                            bool propagate, bool replace) {
    object *o = &m->objects[obj];
    objhot *oh = &m->hot[obj];
    const uint32_t prop_before = o->num_prop;
    perm *e = NULL;
    perm saved;
    for (uint32_t i = 0; i < oh->num_perms; i++) {
        if (oh->perms[i].principal == principal_idx) {
            VMENC_ENSURE(replace, VMENC_E_EXISTS);
            e = &oh->perms[i];
            saved = *e;
            o->num_prop -= e->propagate;
            break;
        }
    }
    if (e == NULL) {
        VMENC_ENSURE(m->num_perms_total < VMENC_POLICY_MAX_PERMISSIONS, VMENC_E_LIMIT);
        VMENC_GUARD(grow((void **)&oh->perms, &o->cap_perms, oh->num_perms + 1, sizeof(perm)));
        e = &oh->perms[oh->num_perms++];
        m->num_perms_total++;
        saved = (perm){.principal = INDEX_NONE};
    }
    *e = (perm){.principal = principal_idx, .role = role_idx, .propagate = propagate};
    o->num_prop += propagate;
    if (!m->defer_up && (prop_before == 0) != (o->num_prop == 0)) {
        vmenc_status rv = model_rebuild_up(m);
        if (rv != VMENC_OK) {
            /* Undo, so the links and the permissions stay consistent. */
            o->num_prop = prop_before;
            if (saved.principal == INDEX_NONE) {
                oh->num_perms--;
                m->num_perms_total--;
            } else {
                *e = saved;
            }
            return rv;
        }
    }
    return VMENC_OK;
}

vmenc_status model_rebuild_up(model *m) {
    uint32_t n = m->num_objects;
    uint8_t *done = calloc(n ? n : 1, 1);
    uint32_t *stack = malloc((size_t)(n ? n : 1) * sizeof(uint32_t));
    if (done == NULL || stack == NULL) {
        free(done);
        free(stack);
        return VMENC_E_NOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = 0, x = i;
        while (x != INDEX_NONE && !done[x]) {
            stack[len++] = x;
            x = m->objects[x].parent;
        }
        while (len > 0) { /* parents before children */
            uint32_t x2 = stack[--len];
            uint32_t p = m->objects[x2].parent;
            m->hot[x2].up = p == INDEX_NONE ? INDEX_NONE
                            : m->objects[p].num_prop ? p : m->hot[p].up;
            done[x2] = 1;
        }
    }
    free(done);
    free(stack);
    return VMENC_OK;
}

vmenc_status model_validate_spec(const vmenc_storage_policy_spec *spec) {
    VMENC_ENSURE(name_valid(spec->name), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(migration_name((int)spec->migration) != NULL, VMENC_E_POLICY_INVALID);
    VMENC_ENSURE((spec->file_classes & ~VMENC_FILE_ALL_) == 0, VMENC_E_POLICY_INVALID);
    if (spec->encrypt) {
        VMENC_ENSURE(spec->file_classes != 0, VMENC_E_POLICY_INVALID);
        VMENC_ENSURE(name_valid(spec->key_provider), VMENC_E_POLICY_INVALID);
        /* vSphere encrypts a disk only of a VM whose home is encrypted. */
        if (spec->file_classes & VMENC_FILE_DISKS)
            VMENC_ENSURE(spec->file_classes & VMENC_FILE_VM_HOME, VMENC_E_POLICY_INVALID);
    } else {
        VMENC_ENSURE(spec->file_classes == 0 && spec->key_provider == NULL,
                     VMENC_E_POLICY_INVALID);
    }
    return VMENC_OK;
}

vmenc_status model_set_spolicy(model *m, const vmenc_storage_policy_spec *spec) {
    VMENC_GUARD(model_validate_spec(spec));
    char *prov = NULL;
    if (spec->encrypt) {
        prov = strdup(spec->key_provider);
        VMENC_ENSURE(prov != NULL, VMENC_E_NOMEM);
    }
    uint32_t idx = model_find_spolicy(m, spec->name);
    if (idx == INDEX_NONE) {
        vmenc_status rv = VMENC_E_LIMIT;
        if (m->num_spolicies >= VMENC_POLICY_MAX_STORAGE_POLICIES ||
            (rv = grow((void **)&m->spolicies, &m->cap_spolicies, m->num_spolicies + 1,
                       sizeof(storage_policy))) != VMENC_OK) {
            free(prov);
            return rv;
        }
        storage_policy *sp = &m->spolicies[m->num_spolicies];
        sp->name = strdup(spec->name);
        if (sp->name == NULL) {
            free(prov);
            return VMENC_E_NOMEM;
        }
        rv = strmap_insert(m, &m->sp_map, spec->name, m->num_spolicies, 0);
        if (rv != VMENC_OK) {
            free(sp->name);
            sp->name = NULL;
            free(prov);
            return rv;
        }
        idx = m->num_spolicies++;
    }
    storage_policy *sp = &m->spolicies[idx];
    free(sp->key_provider);
    sp->key_provider = prov;
    sp->encrypt = spec->encrypt != 0;
    sp->file_classes = spec->file_classes;
    sp->migration = spec->migration;
    return VMENC_OK;
}

uint32_t model_encrypted_vms_on(const model *m, uint32_t host) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->num_objects; i++) {
        const object *o = &m->objects[i];
        if (o->type == VMENC_OBJ_VM && o->encrypted && o->host == host)
            n++;
    }
    return n;
}

/* ---- group closure -----------------------------------------------------
 * ancestors(g) = {g} U ancestors(every group that has g as a direct member);
 * groups(x) = U ancestors(every group that has x as a direct member).
 * Computed by a depth-first walk with colours, which also finds cycles. */

typedef struct closure_ctx {
    model *m;
    uint32_t *parent_off;    /* CSR: direct parents of each principal */
    uint32_t *parent_list;
    uint8_t *colour;         /* 0 white, 1 grey (on stack), 2 black */
    uint32_t **anc;          /* per group: sorted ancestors incl. itself */
    uint32_t *num_anc;
} closure_ctx;

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static uint32_t sort_unique(uint32_t *v, uint32_t n) {
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(uint32_t), cmp_u32);
    uint32_t k = 1;
    for (uint32_t i = 1; i < n; i++)
        if (v[i] != v[k - 1])
            v[k++] = v[i];
    return k;
}

/* union_parents gathers the ancestors of every direct parent of |x| (and |x|
 * itself if |self|) into a fresh sorted array. Parents must be computed. */
static vmenc_status union_parents(closure_ctx *c, uint32_t x, bool self, uint32_t **out,
                                  uint32_t *out_n) {
    /* Bounded work: each direct parent is a group x is in, and each parent's
     * set is already bounded, so the scratch is at most MAX * (MAX + 1). */
    VMENC_ENSURE(c->parent_off[x + 1] - c->parent_off[x] <= VMENC_POLICY_MAX_GROUPS_PER_PRINCIPAL,
                 VMENC_E_LIMIT);
    uint64_t total = self ? 1 : 0;
    for (uint32_t k = c->parent_off[x]; k < c->parent_off[x + 1]; k++)
        total += c->num_anc[c->parent_list[k]];
    uint32_t *v = malloc((size_t)(total ? total : 1) * sizeof(uint32_t));
    VMENC_ENSURE(v != NULL, VMENC_E_NOMEM);
    uint32_t n = 0;
    if (self)
        v[n++] = x;
    for (uint32_t k = c->parent_off[x]; k < c->parent_off[x + 1]; k++) {
        uint32_t p = c->parent_list[k];
        memcpy(v + n, c->anc[p], c->num_anc[p] * sizeof(uint32_t));
        n += c->num_anc[p];
    }
    n = sort_unique(v, n);
    if (n > VMENC_POLICY_MAX_GROUPS_PER_PRINCIPAL + (self ? 1u : 0u)) {
        free(v);
        return VMENC_E_LIMIT;
    }
    *out_n = n;
    *out = v;
    return VMENC_OK;
}

/* Iterative DFS over "is a direct member of" edges from group |g|. */
static vmenc_status visit(closure_ctx *c, uint32_t g, uint32_t *stack, uint32_t *iter,
                          uint32_t *cycle_group) {
    uint32_t sp = 0;
    stack[sp] = g;
    iter[sp] = c->parent_off[g];
    c->colour[g] = 1;
    sp++;
    while (sp > 0) {
        uint32_t x = stack[sp - 1];
        if (iter[sp - 1] < c->parent_off[x + 1]) {
            uint32_t p = c->parent_list[iter[sp - 1]++];
            if (c->colour[p] == 1) {
                *cycle_group = p;
                return VMENC_E_CYCLE;
            }
            if (c->colour[p] == 0) {
                c->colour[p] = 1;
                stack[sp] = p;
                iter[sp] = c->parent_off[p];
                sp++;
            }
            continue;
        }
        VMENC_GUARD(union_parents(c, x, true, &c->anc[x], &c->num_anc[x]));
        c->colour[x] = 2;
        sp--;
    }
    return VMENC_OK;
}

vmenc_status model_rebuild_groups(model *m, uint32_t *cycle_group) {
    uint32_t n = m->num_principals;
    closure_ctx c = {.m = m};
    vmenc_status rv = VMENC_E_NOMEM;
    uint32_t *stack = NULL, *iter = NULL, *fill = NULL;
    c.parent_off = calloc((size_t)n + 1, sizeof(uint32_t));
    c.parent_list = malloc((size_t)(m->num_members_total ? m->num_members_total : 1) *
                           sizeof(uint32_t));
    c.colour = calloc(n ? n : 1, 1);
    c.anc = calloc(n ? n : 1, sizeof(uint32_t *));
    c.num_anc = calloc(n ? n : 1, sizeof(uint32_t));
    stack = malloc((size_t)(n ? n : 1) * sizeof(uint32_t));
    iter = malloc((size_t)(n ? n : 1) * sizeof(uint32_t));
    fill = calloc(n ? n : 1, sizeof(uint32_t));
    if (!c.parent_off || !c.parent_list || !c.colour || !c.anc || !c.num_anc || !stack || !iter ||
        !fill)
        goto out;
    /* CSR of direct parents: count, prefix-sum, fill. */
    for (uint32_t g = 0; g < n; g++)
        for (uint32_t k = 0; k < m->principals[g].num_members; k++)
            c.parent_off[m->principals[g].members[k] + 1]++;
    for (uint32_t i = 0; i < n; i++)
        c.parent_off[i + 1] += c.parent_off[i];
    for (uint32_t g = 0; g < n; g++)
        for (uint32_t k = 0; k < m->principals[g].num_members; k++) {
            uint32_t x = m->principals[g].members[k];
            c.parent_list[c.parent_off[x] + fill[x]++] = g;
        }
    for (uint32_t g = 0; g < n; g++) {
        if (m->principals[g].is_group && c.colour[g] == 0) {
            rv = visit(&c, g, stack, iter, cycle_group);
            if (rv != VMENC_OK)
                goto out;
        }
    }
    /* Publish every principal's set of groups (strict ancestors), packed
     * into one new pool; swap only when all of it is built. */
    uint64_t total = 0;
    uint32_t **sets = calloc(n ? n : 1, sizeof(uint32_t *));
    uint32_t *nums = calloc(n ? n : 1, sizeof(uint32_t));
    uint32_t *pool = NULL;
    rv = (sets && nums) ? VMENC_OK : VMENC_E_NOMEM;
    for (uint32_t x = 0; x < n && rv == VMENC_OK && total <= VMENC_POLICY_MAX_GROUP_CLOSURE; x++) {
        rv = union_parents(&c, x, false, &sets[x], &nums[x]);
        total += nums[x];
    }
    if (rv == VMENC_OK && total > VMENC_POLICY_MAX_GROUP_CLOSURE)
        rv = VMENC_E_LIMIT;
    if (rv == VMENC_OK && (pool = malloc((size_t)(total ? total : 1) * sizeof(uint32_t))) == NULL)
        rv = VMENC_E_NOMEM;
    if (rv == VMENC_OK) {
        uint32_t off = 0;
        for (uint32_t x = 0; x < n; x++) {
            memcpy(pool + off, sets[x], nums[x] * sizeof(uint32_t));
            m->prn_hot[x] = (prnhot){off, nums[x]};
            off += nums[x];
        }
        free(m->group_pool);
        m->group_pool = pool;
    }
    for (uint32_t x = 0; sets && x < n; x++)
        free(sets[x]);
    free(sets);
    free(nums);
    if (rv != VMENC_OK)
        goto out;
    rv = VMENC_OK;
out:
    if (c.anc)
        for (uint32_t i = 0; i < n; i++)
            free(c.anc[i]);
    free(c.anc);
    free(c.num_anc);
    free(c.colour);
    free(c.parent_off);
    free(c.parent_list);
    free(stack);
    free(iter);
    free(fill);
    return rv;
}
