/*
 * lib/policy/policy_internal.h - the policy model shared by the policy
 * sources: interned names in hash maps, objects with parent links and their
 * permission lists, principals with their (transitive) group sets, roles as
 * privilege bitsets. Not installed.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_POLICY_INTERNAL_H
#define VMENC_LIB_POLICY_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/internal.h"
#include "vmenc/policy.h"

#define PRIV_WORDS 2
_Static_assert(VMENC_PRIV_COUNT_ <= 64 * PRIV_WORDS, "privilege bitset too small");

typedef struct privset {
    uint64_t w[PRIV_WORDS];
} privset;

static inline void privset_add(privset *s, int p) { s->w[p >> 6] |= (uint64_t)1 << (p & 63); }
static inline bool privset_has(const privset *s, int p) {
    return (s->w[p >> 6] >> (p & 63)) & 1;
}
static inline void privset_union(privset *d, const privset *s) {
    for (int i = 0; i < PRIV_WORDS; i++) d->w[i] |= s->w[i];
}

/* ---- string -> index map (open addressing, SipHash with a random key) -- */
/* 32 bytes: two slots per cache line, and a short name is compared in the
 * slot itself, so a lookup usually touches one line. */
#define STRMAP_HEAD 14
typedef struct strmap_slot {
    uint32_t idx1;     /* index+1, 0 = empty */
    uint32_t tag;      /* high hash bits: most mismatches skip the compare */
    const char *name;  /* the entity's name (owned by the entity) */
    char head[STRMAP_HEAD]; /* the name, NUL-padded, if it is that short */
    uint8_t len;       /* its length if <= STRMAP_HEAD, else 0xff */
    uint8_t aux;       /* objects: the type, so a lookup needs no other line */
} strmap_slot;

typedef struct strmap {
    strmap_slot *slots;
    uint32_t cap;      /* power of two */
    uint32_t count;
    uint8_t key[16];
} strmap;

#define INDEX_NONE UINT32_MAX

/* ---- the model ---------------------------------------------------------- */
typedef struct perm {
    uint32_t principal;
    uint32_t role;
    bool propagate;
} perm;

/* What a check reads of an object, kept in its own dense array (16 bytes
 * an object) so the walk towards the root stays in cache. */
typedef struct objhot {
    perm *perms;             /* permissions set on this object */
    uint32_t num_perms;
    uint32_t up;             /* nearest strict ancestor with a propagating
                                permission, or INDEX_NONE: checks skip the
                                ancestors that cannot matter */
} objhot;

typedef struct object {
    char *name;
    vmenc_policy_object_type type;
    uint32_t parent;         /* INDEX_NONE for the root */
    uint32_t depth;          /* 0 for the root */
    uint32_t cap_perms;
    uint32_t num_prop;       /* how many permissions here propagate */
    /* VMs */
    uint32_t host;           /* INDEX_NONE: not registered on a host */
    bool encrypted;
    /* hosts */
    vmenc_host_crypto_state crypto_state;
} object;

typedef struct principal {
    char *name;
    bool is_group;
    uint32_t *members;       /* groups: direct members (principal indexes) */
    uint32_t num_members, cap_members;
} principal;

/* Every group a principal belongs to, transitively, sorted: a slice of the
 * model's group pool (dense, so checks stay in cache). */
typedef struct prnhot {
    uint32_t off, num;
} prnhot;

typedef struct role {
    char *name;
    privset privs;
    bool predefined;
} role;

typedef struct storage_policy {
    char *name;
    bool encrypt;
    uint32_t file_classes;
    char *key_provider;      /* NULL when !encrypt */
    vmenc_migration_encryption migration;
} storage_policy;

typedef struct model {
    object *objects;
    objhot *hot;             /* parallel to objects */
    uint32_t num_objects, cap_objects, cap_hot;
    principal *principals;
    prnhot *prn_hot;         /* parallel to principals */
    uint32_t *group_pool;
    uint32_t num_principals, cap_principals, cap_prn_hot;
    role *roles;
    uint32_t num_roles, cap_roles;
    storage_policy *spolicies;
    uint32_t num_spolicies, cap_spolicies;
    uint32_t num_perms_total;
    uint32_t num_members_total;
    uint32_t root;
    bool defer_up;           /* loading: |up| links are built once at the end */
    strmap obj_map, principal_map, role_map, sp_map;
} model;

struct vmenc_policy {
    pthread_rwlock_t lock;
    model *m;
    /* policy_commit.h: the storage owner's hook and the document it last
     * accepted (what a failed commit rolls back to). */
    vmenc_status (*commit)(void *ctx, const uint8_t *json, size_t json_len);
    void *commit_ctx;
    uint8_t *committed;
    size_t committed_len;
    /* policy_commit.h: the refresh/release pair of the compare-and-swap. */
    vmenc_status (*refresh)(void *ctx, uint8_t **out_json, size_t *out_len);
    void (*release)(void *ctx);
    vmenc_status refresh_failed; /* a refreshed document did not parse: writes fail so */
};

/* Number of predefined roles; they occupy role indexes 0..3. */
#define ROLE_ADMIN 0
#define ROLE_NO_CRYPTO_ADMIN 1
#define ROLE_READ_ONLY 2
#define ROLE_NO_ACCESS 3
#define NUM_PREDEFINED_ROLES 4

/* privileges.c */
VMENC_INTERNAL bool priv_is_crypto(int p);
VMENC_INTERNAL const char *object_type_name(int t);
VMENC_INTERNAL bool object_type_from_name(const char *s, vmenc_policy_object_type *out);
VMENC_INTERNAL bool host_state_from_name(const char *s, vmenc_host_crypto_state *out);
VMENC_INTERNAL const char *migration_name(int m);
VMENC_INTERNAL bool migration_from_name(const char *s, vmenc_migration_encryption *out);
VMENC_INTERNAL vmenc_status host_transition_ok(vmenc_host_crypto_state from, vmenc_host_crypto_state to);

/* model.c */
VMENC_INTERNAL bool name_valid(const char *s);
VMENC_INTERNAL uint32_t model_find_object(const model *m, const char *name);
/* model_find_object_typed also gives the type, from the hash slot. */
VMENC_INTERNAL uint32_t model_find_object_typed(const model *m, const char *name,
                                                vmenc_policy_object_type *type);
VMENC_INTERNAL uint32_t model_find_principal(const model *m, const char *name);
VMENC_INTERNAL uint32_t model_find_role(const model *m, const char *name);
VMENC_INTERNAL uint32_t model_find_spolicy(const model *m, const char *name);
VMENC_INTERNAL vmenc_status model_new(model **out);
VMENC_INTERNAL void model_free(model *m);
VMENC_INTERNAL vmenc_status model_add_role(model *m, const char *name, const privset *privs,
                                           bool predefined, uint32_t *out);
VMENC_INTERNAL vmenc_status model_add_principal(model *m, const char *name, bool is_group,
                                                uint32_t *out);
VMENC_INTERNAL vmenc_status model_add_member(model *m, uint32_t group, uint32_t member);
/* model_add_object: |parent| may be INDEX_NONE only for the root, or while
 * loading (set later with the loader's second pass). */
VMENC_INTERNAL vmenc_status model_add_object(model *m, const char *name,
                                             vmenc_policy_object_type type, uint32_t parent,
                                             uint32_t *out);
VMENC_INTERNAL vmenc_status model_set_perm(model *m, uint32_t object, uint32_t principal,
                                           uint32_t role, bool propagate, bool replace);
VMENC_INTERNAL vmenc_status model_set_spolicy(model *m, const vmenc_storage_policy_spec *spec);
/* model_validate_spec checks a storage policy spec's consistency. */
VMENC_INTERNAL vmenc_status model_validate_spec(const vmenc_storage_policy_spec *spec);
/* model_rebuild_groups recomputes every principal's transitive group set;
 * VMENC_E_CYCLE if the group graph has a cycle (the closure is then stale
 * and the model must not be used for checks). |*cycle_group| names a group
 * on the cycle. */
VMENC_INTERNAL vmenc_status model_rebuild_groups(model *m, uint32_t *cycle_group);
VMENC_INTERNAL uint32_t model_encrypted_vms_on(const model *m, uint32_t host);
/* model_rebuild_up recomputes every object's |up| link; the parent links
 * must be acyclic. VMENC_E_NOMEM leaves the links as they were. */
VMENC_INTERNAL vmenc_status model_rebuild_up(model *m);

/* check.c */
/* policy_sorted_has: is |x| in the ascending array |v| of |n| entries. */
VMENC_INTERNAL bool policy_sorted_has(const uint32_t *v, uint32_t n, uint32_t x);
VMENC_INTERNAL void model_effective(const model *m, uint32_t principal, uint32_t object,
                                    privset *out);

/* policy.c: the unchecked edits, on the model, with the write lock held
 * (vmenc_policy_add_role etc. and the authorized edits in edit.c both call
 * them, then policy_commit_locked). A failed one changes nothing. */
VMENC_INTERNAL vmenc_status policy_do_add_role(model *m, const char *name,
                                               const vmenc_policy_privilege *privs, size_t num_privs);
VMENC_INTERNAL vmenc_status policy_do_add_principal(model *m, const char *name, bool is_group);
VMENC_INTERNAL vmenc_status policy_do_add_member(model *m, const char *group, const char *member);
VMENC_INTERNAL vmenc_status policy_do_add_object(model *m, const char *name,
                                                 vmenc_policy_object_type type, const char *parent);
VMENC_INTERNAL vmenc_status policy_do_grant(model *m, const char *principal, const char *object,
                                            const char *role, int propagate);
VMENC_INTERNAL vmenc_status policy_do_revoke(model *m, const char *principal, const char *object);
VMENC_INTERNAL vmenc_status policy_do_set_host_state(model *m, const char *host,
                                                     vmenc_host_crypto_state to);
VMENC_INTERNAL vmenc_status policy_do_set_spolicy(model *m, const vmenc_storage_policy_spec *spec);

/* json.c */
VMENC_INTERNAL vmenc_status policy_json_parse(const uint8_t *json, size_t json_len,
                                              vmenc_policy_error *err, model **out);
/* policy_json_serialise writes the canonical document of |m| (no NUL) to a
 * new heap buffer. VMENC_E_NOMEM. */
VMENC_INTERNAL vmenc_status policy_json_serialise(const model *m, uint8_t **out, size_t *out_len);

#endif /* VMENC_LIB_POLICY_INTERNAL_H */
