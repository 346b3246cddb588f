/*
 * lib/policy/check.c - authorization decisions: effective privileges of a
 * principal on an inventory object (vSphere's resolution rules), the
 * privileges each operation needs and where, the host encryption mode
 * precondition, and the decision with its reason.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdio.h>
#include <string.h>

#include "policy/policy_commit.h"
#include "policy/policy_internal.h"

bool policy_sorted_has(const uint32_t *v, uint32_t n, uint32_t x) {
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else if (v[mid] > x)
            hi = mid;
        else
            return true;
    }
    return false;
}

/* The first object on the way from |obj| to the root that carries a
 * permission applying to the principal decides: its own permission if it has
 * one there, else the union of its groups' permissions there. Permissions on
 * ancestors apply only when they propagate. */
void model_effective(const model *m, uint32_t u, uint32_t obj, privset *out) {
    const uint32_t *groups = NULL;
    uint32_t num_groups = 0;
    if (u != INDEX_NONE && m->prn_hot[u].num != 0) {
        groups = m->group_pool + m->prn_hot[u].off;
        num_groups = m->prn_hot[u].num;
    }
    bool self = true;
    /* After the object itself, jump straight to the ancestors that carry a
     * propagating permission: the others cannot decide. */
    for (uint32_t o = obj; o != INDEX_NONE; o = m->hot[o].up, self = false) {
        const objhot *ob = &m->hot[o];
        bool user_hit = false, group_hit = false;
        privset user_set = {{0}}, group_set = {{0}};
        for (uint32_t i = 0; i < ob->num_perms; i++) {
            const perm *e = &ob->perms[i];
            if (!self && !e->propagate)
                continue;
            if (e->principal == u) {
                user_hit = true;
                user_set = m->roles[e->role].privs;
            } else if (num_groups != 0 && policy_sorted_has(groups, num_groups, e->principal)) {
                group_hit = true;
                privset_union(&group_set, &m->roles[e->role].privs);
            }
        }
        if (user_hit) {
            *out = user_set;
            return;
        }
        if (group_hit) {
            *out = group_set;
            return;
        }
    }
    memset(out, 0, sizeof(*out));
}

/* ---- what each operation needs ------------------------------------------ */

typedef struct need {
    int priv;
    uint32_t obj;
} need;

typedef struct needs {
    need items[12];
    int n;
    uint32_t key_host;   /* host that must be in safe mode, or INDEX_NONE */
} needs;

static void add(needs *r, int priv, uint32_t obj) {
    r->items[r->n++] = (need){priv, obj};
}

/* The objects a request names, with their types and the caller's strings
 * for them (equal to the stored names, and already in cache). When a field
 * names an object of a type it may not name, |bad_field| says which (else
 * -1) and |bad_type| what it named. */
typedef struct resolved {
    uint32_t vm, folder, host, pool, datastore;
    uint32_t flags;      /* the request's flags, plus VMENC_REQ_VM_ENCRYPTED
                            when the inventory records |vm| as encrypted */
    uint8_t type[5];
    const char *name[5];
    int bad_field;
    uint8_t bad_type;
} resolved;

enum { FIELD_VM = 0, FIELD_FOLDER, FIELD_HOST, FIELD_POOL, FIELD_DATASTORE, NUM_FIELDS };

static const char *const k_field_names[NUM_FIELDS] = {"vm", "folder", "host", "pool", "datastore"};

#define TBIT(t) (1u << (t))
/* Where a VM or a standalone host is put: vSphere's VM folders, whose
 * ancestors the datacenter and the root folder are folders too. */
#define TYPES_FOLDER (TBIT(VMENC_OBJ_ROOT) | TBIT(VMENC_OBJ_DATACENTER) | TBIT(VMENC_OBJ_FOLDER))
/* Where a VM takes its resources from: a resource pool, or a compute
 * resource (a cluster, or a standalone host) whose root pool it is. */
#define TYPES_VM_POOL (TBIT(VMENC_OBJ_RESOURCE_POOL) | TBIT(VMENC_OBJ_CLUSTER) | TBIT(VMENC_OBJ_HOST))
/* A host joins a cluster (Host.Inventory.AddHostToCluster); nothing else. */
#define TYPES_HOST_POOL TBIT(VMENC_OBJ_CLUSTER)

/* field_types gives the object types request field |field| may name for
 * |op|. Every field has a type set: the privileges an operation needs are
 * granted per object, so a field that accepted any object would let a
 * principal holding privileges on one object (a VM it administers) stand it
 * in for the folder or pool the rules name. */
static unsigned field_types(vmenc_policy_op op, int field) {
    switch (field) {
    case FIELD_VM: return TBIT(VMENC_OBJ_VM);
    case FIELD_FOLDER: return TYPES_FOLDER;
    case FIELD_HOST: return TBIT(VMENC_OBJ_HOST);
    case FIELD_POOL: return op == VMENC_OP_REGISTER_HOST ? TYPES_HOST_POOL : TYPES_VM_POOL;
    case FIELD_DATASTORE: return TBIT(VMENC_OBJ_DATASTORE);
    default: return 0;
    }
}

/* resolve_one looks a request field up; NULL stays INDEX_NONE. The object
 * it names must have one of the types in |allowed|. */
static vmenc_status resolve_one(const model *m, const char *name, unsigned allowed, uint32_t *out,
                                uint8_t *out_type, bool *wrong_type) {
    *out = INDEX_NONE;
    *wrong_type = false;
    if (name == NULL)
        return VMENC_OK;
    /* Every stored name is valid, so a found name needs no validation; an
     * unknown one is reported as malformed or as absent. */
    vmenc_policy_object_type type;
    *out = model_find_object_typed(m, name, &type);
    if (*out == INDEX_NONE)
        return name_valid(name) ? VMENC_E_NOT_FOUND : VMENC_E_INVALID_ARG;
    *out_type = (uint8_t)type;
    if ((allowed & TBIT(type)) == 0) {
        *wrong_type = true;
        return VMENC_E_INVALID_ARG;
    }
    return VMENC_OK;
}

/* object_label finds the name and type of object |idx| for a sentence:
 * from the request when it named it, else from the model (the root). */
static const char *object_label(const model *m, const resolved *o, uint32_t idx, int *type) {
    const uint32_t ids[5] = {o->vm, o->folder, o->host, o->pool, o->datastore};
    for (int i = 0; i < 5; i++) {
        if (ids[i] == idx) {
            *type = o->type[i];
            return o->name[i];
        }
    }
    *type = (int)m->objects[idx].type;
    return m->objects[idx].name;
}

enum { F_VM = 1, F_FOLDER = 2, F_HOST = 4, F_POOL = 8, F_DS = 16 };

/* fields_for says which request fields an operation reads, so a check looks
 * up only those (the others are ignored, documented in docs/policy.md). The
 * host matters only when the operation needs keys there. */
static unsigned fields_for(vmenc_policy_op op, uint32_t flags) {
    const bool enc = flags & VMENC_REQ_VM_ENCRYPTED, tgt = flags & VMENC_REQ_TARGET_ENCRYPTED;
    switch (op) {
    case VMENC_OP_ENCRYPT_VM:
    case VMENC_OP_DECRYPT_VM:
    case VMENC_OP_REKEY_SHALLOW:
    case VMENC_OP_REKEY_DEEP: return F_VM | F_HOST;
    case VMENC_OP_CREATE_VM: return F_FOLDER | F_POOL | F_DS | (tgt ? F_HOST : 0);
    case VMENC_OP_CLONE_VM: return F_VM | F_FOLDER | F_POOL | F_DS | (enc || tgt ? F_HOST : 0);
    case VMENC_OP_ADD_DISK: return F_VM | F_DS | (enc ? F_HOST : 0);
    case VMENC_OP_MIGRATE_VM: return F_VM | F_POOL | F_DS | (enc ? F_HOST : 0);
    case VMENC_OP_REGISTER_VM: return F_FOLDER | F_POOL | (enc ? F_HOST : 0);
    case VMENC_OP_REGISTER_HOST: return F_POOL | F_FOLDER;
    case VMENC_OP_ENABLE_HOST_ENCRYPTION: return F_HOST;
    case VMENC_OP_POWER_ON:
    case VMENC_OP_SNAPSHOT: return F_VM | (enc ? F_HOST : 0);
    case VMENC_OP_CONSOLE:
    case VMENC_OP_EXPORT_VM:
    case VMENC_OP_UPLOAD_FILES:
    case VMENC_OP_POWER_OFF:
    case VMENC_OP_EDIT_SETTINGS:
    case VMENC_OP_VIEW: return F_VM;
    default: return 0;
    }
}

/* effective_flags adds VMENC_REQ_VM_ENCRYPTED to the request's flags when
 * the operation reads |vm| and the inventory records that VM as encrypted:
 * the caller's flag may make a check stricter, never laxer, so a caller
 * that forgets (or omits) it cannot be told "allowed" for an encrypted VM. */
static uint32_t effective_flags(const model *m, const vmenc_policy_request *rq) {
    uint32_t flags = rq->flags;
    if ((fields_for(rq->op, flags | VMENC_REQ_VM_ENCRYPTED) & F_VM) && rq->vm != NULL) {
        vmenc_policy_object_type type;
        uint32_t v = model_find_object_typed(m, rq->vm, &type);
        if (v != INDEX_NONE && type == VMENC_OBJ_VM && m->objects[v].encrypted)
            flags |= VMENC_REQ_VM_ENCRYPTED;
    }
    return flags;
}

static vmenc_status resolve(const model *m, const vmenc_policy_request *rq, resolved *r) {
    r->flags = effective_flags(m, rq);
    unsigned f = fields_for(rq->op, r->flags);
    r->name[FIELD_VM] = f & F_VM ? rq->vm : NULL;
    r->name[FIELD_FOLDER] = f & F_FOLDER ? rq->folder : NULL;
    r->name[FIELD_HOST] = f & F_HOST ? rq->host : NULL;
    r->name[FIELD_POOL] = f & F_POOL ? rq->pool : NULL;
    r->name[FIELD_DATASTORE] = f & F_DS ? rq->datastore : NULL;
    uint32_t *const idx[NUM_FIELDS] = {&r->vm, &r->folder, &r->host, &r->pool, &r->datastore};
    r->bad_field = -1;
    for (int i = 0; i < NUM_FIELDS; i++) {
        bool wrong_type = false;
        vmenc_status st = resolve_one(m, r->name[i], field_types(rq->op, i), idx[i], &r->type[i],
                                      &wrong_type);
        if (wrong_type) {
            r->bad_field = i;
            r->bad_type = r->type[i];
        }
        VMENC_GUARD(st);
    }
    return VMENC_OK;
}

/* requirements fills |r| for the request. See docs/policy.md for the table
 * and the vSphere "Required On" column each row follows. */
static vmenc_status requirements(const model *m, const vmenc_policy_request *rq,
                                 const resolved *o, needs *r) {
    const bool enc = o->flags & VMENC_REQ_VM_ENCRYPTED;
    const bool tgt = o->flags & VMENC_REQ_TARGET_ENCRYPTED;
    const bool on = o->flags & VMENC_REQ_POWERED_ON;
    r->n = 0;
    r->key_host = INDEX_NONE;
    VMENC_ENSURE((rq->flags & ~(uint32_t)7) == 0, VMENC_E_INVALID_ARG);

#define NEED_VM() VMENC_ENSURE(o->vm != INDEX_NONE, VMENC_E_INVALID_ARG)
#define OPTIONAL_PLACEMENT()                                                  \
    do {                                                                      \
        if (o->pool != INDEX_NONE)                                            \
            add(r, VMENC_PRIV_RESOURCE_ASSIGN_VM_TO_POOL, o->pool);           \
        if (o->datastore != INDEX_NONE)                                       \
            add(r, VMENC_PRIV_DATASTORE_ALLOCATE_SPACE, o->datastore);        \
    } while (0)

    switch (rq->op) {
    case VMENC_OP_ENCRYPT_VM:
        NEED_VM();
        add(r, VMENC_PRIV_VM_SETTINGS, o->vm);
        add(r, VMENC_PRIV_CRYPTO_ENCRYPT, o->vm);
        r->key_host = o->host;
        break;
    case VMENC_OP_CREATE_VM:
        VMENC_ENSURE(o->folder != INDEX_NONE, VMENC_E_INVALID_ARG);
        add(r, VMENC_PRIV_VM_CREATE, o->folder);
        if (tgt)
            add(r, VMENC_PRIV_CRYPTO_ENCRYPT_NEW, o->folder);
        OPTIONAL_PLACEMENT();
        if (tgt)
            r->key_host = o->host;
        break;
    case VMENC_OP_DECRYPT_VM:
        NEED_VM();
        add(r, VMENC_PRIV_VM_SETTINGS, o->vm);
        add(r, VMENC_PRIV_CRYPTO_DECRYPT, o->vm);
        r->key_host = o->host; /* reading the data needs its keys */
        break;
    case VMENC_OP_CLONE_VM:
        NEED_VM();
        VMENC_ENSURE(o->folder != INDEX_NONE, VMENC_E_INVALID_ARG);
        add(r, VMENC_PRIV_VM_CLONE, o->vm);
        if (enc)
            add(r, VMENC_PRIV_CRYPTO_CLONE, o->vm);
        if (enc && !tgt)
            add(r, VMENC_PRIV_CRYPTO_DECRYPT, o->vm);
        add(r, VMENC_PRIV_VM_CREATE, o->folder);
        if (tgt && !enc)
            add(r, VMENC_PRIV_CRYPTO_ENCRYPT_NEW, o->folder);
        OPTIONAL_PLACEMENT();
        if (enc || tgt)
            r->key_host = o->host;
        break;
    case VMENC_OP_ADD_DISK:
        NEED_VM();
        add(r, VMENC_PRIV_VM_ADD_NEW_DISK, o->vm);
        if (enc)
            add(r, VMENC_PRIV_CRYPTO_ADD_DISK, o->vm);
        if (o->datastore != INDEX_NONE)
            add(r, VMENC_PRIV_DATASTORE_ALLOCATE_SPACE, o->datastore);
        if (enc)
            r->key_host = o->host;
        break;
    case VMENC_OP_REKEY_SHALLOW:
    case VMENC_OP_REKEY_DEEP:
        NEED_VM();
        add(r, VMENC_PRIV_CRYPTO_RECRYPT, o->vm);
        r->key_host = o->host;
        break;
    case VMENC_OP_MIGRATE_VM:
        NEED_VM();
        add(r, on ? VMENC_PRIV_RESOURCE_HOT_MIGRATE : VMENC_PRIV_RESOURCE_COLD_MIGRATE, o->vm);
        if (enc)
            add(r, VMENC_PRIV_CRYPTO_MIGRATE, o->vm);
        OPTIONAL_PLACEMENT();
        if (enc)
            r->key_host = o->host;
        break;
    case VMENC_OP_REGISTER_VM:
        VMENC_ENSURE(o->folder != INDEX_NONE, VMENC_E_INVALID_ARG);
        add(r, VMENC_PRIV_VM_REGISTER, o->folder);
        if (enc)
            add(r, VMENC_PRIV_CRYPTO_REGISTER_VM, o->folder);
        if (o->pool != INDEX_NONE)
            add(r, VMENC_PRIV_RESOURCE_ASSIGN_VM_TO_POOL, o->pool);
        if (enc)
            r->key_host = o->host;
        break;
    case VMENC_OP_REGISTER_HOST: {
        /* Into a cluster (|pool|) or, standalone, into a folder. */
        uint32_t into = o->pool != INDEX_NONE ? o->pool : o->folder;
        VMENC_ENSURE(into != INDEX_NONE, VMENC_E_INVALID_ARG);
        add(r, o->pool != INDEX_NONE ? VMENC_PRIV_HOST_ADD_TO_CLUSTER
                                     : VMENC_PRIV_HOST_ADD_STANDALONE, into);
        if (tgt)
            add(r, VMENC_PRIV_CRYPTO_REGISTER_HOST, into);
        break;
    }
    case VMENC_OP_ENABLE_HOST_ENCRYPTION:
        VMENC_ENSURE(o->host != INDEX_NONE, VMENC_E_INVALID_ARG);
        add(r, VMENC_PRIV_CRYPTO_REGISTER_HOST, o->host);
        r->key_host = o->host;
        break;
    case VMENC_OP_CONSOLE:
        NEED_VM();
        add(r, VMENC_PRIV_VM_CONSOLE, o->vm);
        if (enc)
            add(r, VMENC_PRIV_CRYPTO_ACCESS, o->vm);
        break;
    case VMENC_OP_EXPORT_VM:
        NEED_VM();
        add(r, VMENC_PRIV_VM_GET_FILES, o->vm);
        if (enc)
            add(r, VMENC_PRIV_CRYPTO_ACCESS, o->vm);
        break;
    case VMENC_OP_UPLOAD_FILES:
        /* PutVmFiles: what is uploaded into an encrypted VM's home lands
         * beside its encrypted files and wrapped keys, so it needs the same
         * crypto privilege as downloading them. */
        NEED_VM();
        add(r, VMENC_PRIV_VM_PUT_FILES, o->vm);
        if (enc)
            add(r, VMENC_PRIV_CRYPTO_ACCESS, o->vm);
        break;
    case VMENC_OP_MANAGE_KEYS:
        add(r, VMENC_PRIV_CRYPTO_MANAGE_KEYS, m->root);
        break;
    case VMENC_OP_MANAGE_KEY_SERVERS:
        add(r, VMENC_PRIV_CRYPTO_MANAGE_KEY_SERVERS, m->root);
        break;
    case VMENC_OP_MANAGE_ENCRYPTION_POLICIES:
        add(r, VMENC_PRIV_STORAGE_PROFILE_UPDATE, m->root);
        add(r, VMENC_PRIV_CRYPTO_MANAGE_ENCRYPTION_POLICY, m->root);
        break;
    case VMENC_OP_READ_KEY_SERVERS:
        add(r, VMENC_PRIV_CRYPTO_READ_KEY_SERVERS_INFO, m->root);
        break;
    case VMENC_OP_POWER_ON:
        NEED_VM();
        add(r, VMENC_PRIV_VM_POWER_ON, o->vm);
        if (enc)
            r->key_host = o->host;
        break;
    case VMENC_OP_POWER_OFF:
        NEED_VM();
        add(r, VMENC_PRIV_VM_POWER_OFF, o->vm);
        break;
    case VMENC_OP_EDIT_SETTINGS:
        NEED_VM();
        add(r, VMENC_PRIV_VM_SETTINGS, o->vm);
        break;
    case VMENC_OP_SNAPSHOT:
        NEED_VM();
        add(r, VMENC_PRIV_VM_SNAPSHOT, o->vm);
        if (enc)
            r->key_host = o->host; /* snapshot memory is written encrypted */
        break;
    case VMENC_OP_VIEW:
        NEED_VM();
        add(r, VMENC_PRIV_SYSTEM_READ, o->vm);
        break;
    case VMENC_OP_READ_POLICY:
        add(r, VMENC_PRIV_SYSTEM_READ, m->root);
        break;
    default:
        return VMENC_E_INVALID_ARG;
    }
#undef NEED_VM
#undef OPTIONAL_PLACEMENT
    return VMENC_OK;
}

/* ---- evaluation -------------------------------------------------------------- */

typedef struct eff_cache {
    uint32_t obj[8];
    privset set[8];
    int n;
} eff_cache;

static const privset *effective_cached(const model *m, uint32_t u, uint32_t obj, eff_cache *c) {
    for (int i = 0; i < c->n; i++)
        if (c->obj[i] == obj)
            return &c->set[i];
    int slot = c->n < 8 ? c->n++ : 7;
    c->obj[slot] = obj;
    model_effective(m, u, obj, &c->set[slot]);
    return &c->set[slot];
}

static void copy_name(char *dst, const char *src) {
    size_t n = strnlen(src, VMENC_POLICY_NAME_MAX);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* A sentence builder: appends, cuts at the capacity, stays terminated.
 * Cheaper than snprintf on the hot path (every denial writes a sentence). */
typedef struct msg {
    char *buf;
    size_t len;
} msg;

static void say(msg *w, const char *s) {
    size_t n = strnlen(s, VMENC_POLICY_MESSAGE_MAX - 1 - w->len);
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void say_n(msg *w, const char *s, size_t n) {
    if (n > VMENC_POLICY_MESSAGE_MAX - 1 - w->len)
        n = VMENC_POLICY_MESSAGE_MAX - 1 - w->len;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}
/* String literals: length known at compile time. */
#define SAY(w, lit) say_n((w), (lit), sizeof(lit) - 1)

static void say_name(msg *w, const char *s) {
    SAY(w, "'");
    say(w, s);
    SAY(w, "'");
}

static void decision_reset(vmenc_policy_decision *d) {
    d->allowed = 0;
    d->status = VMENC_OK;
    d->missing_privilege = VMENC_PRIV_NONE;
    d->missing_object[0] = '\0';
    d->enable_host_encryption = 0;
    d->host[0] = '\0';
    d->message[0] = '\0';
}

/* prepare resolves the request and lists what it needs; every argument
 * error is found here, before the decision is touched. */
static vmenc_status prepare(const model *m, const vmenc_policy_request *rq, resolved *o,
                            needs *r) {
    VMENC_GUARD(resolve(m, rq, o));
    return requirements(m, rq, o, r);
}

static vmenc_status deny(vmenc_policy_decision *d, vmenc_status st) {
    d->allowed = 0;
    d->status = st;
    return st;
}

/* explain_wrong_type fills |d| for a request a field of which names an
 * object of a type it may not name: the status stays VMENC_E_INVALID_ARG
 * (a malformed request, not a denial), and the sentence names the field. */
static void explain_wrong_type(const vmenc_policy_request *rq, const resolved *o,
                               vmenc_policy_decision *d) {
    decision_reset(d);
    d->status = VMENC_E_INVALID_ARG;
    msg w = {d->message, 0};
    SAY(&w, "invalid: field '");
    say(&w, k_field_names[o->bad_field]);
    SAY(&w, "' names ");
    say(&w, object_type_name(o->bad_type));
    SAY(&w, " ");
    say_name(&w, o->name[o->bad_field]);
    SAY(&w, ", but for ");
    say(&w, vmenc_policy_op_name(rq->op));
    SAY(&w, " it must name a");
    unsigned allowed = field_types(rq->op, o->bad_field);
    bool first = true;
    for (int t = 0; t < 32; t++) {
        if ((allowed & TBIT(t)) == 0)
            continue;
        say(&w, first ? " " : " or ");
        say(&w, object_type_name(t));
        first = false;
    }
}

/* decide evaluates |r| for |who| with the lock held and fills |d|. */
static vmenc_status decide(const model *m, const char *who, vmenc_policy_op op,
                           const resolved *o, const needs *r, vmenc_policy_decision *d) {
    const char *opname = vmenc_policy_op_name(op);
    uint32_t u = model_find_principal(m, who);
    if (u == INDEX_NONE && !name_valid(who))
        return VMENC_E_INVALID_ARG;
    eff_cache cache;
    cache.n = 0;
    msg w = {d->message, 0};

    decision_reset(d);
    for (int i = 0; i < r->n; i++) {
        const privset *s = effective_cached(m, u, r->items[i].obj, &cache);
        if (!privset_has(s, r->items[i].priv)) {
            int type;
            const char *oname = object_label(m, o, r->items[i].obj, &type);
            d->missing_privilege = (vmenc_policy_privilege)r->items[i].priv;
            copy_name(d->missing_object, oname);
            SAY(&w, "denied: ");
            say_name(&w, who);
            SAY(&w, " lacks privilege ");
            say(&w, vmenc_policy_privilege_name(r->items[i].priv));
            SAY(&w, " on ");
            say(&w, object_type_name(type));
            SAY(&w, " ");
            say_name(&w, oname);
            SAY(&w, ", needed to ");
            say(&w, opname);
            return deny(d, VMENC_E_DENIED);
        }
    }
    if (r->key_host != INDEX_NONE) {
        const object *h = &m->objects[r->key_host];
        int htype;
        const char *hname = object_label(m, o, r->key_host, &htype);
        const char *st = vmenc_host_crypto_state_name((int)h->crypto_state);
        copy_name(d->host, hname);
        if (h->crypto_state == VMENC_HOST_PENDING_INCAPABLE) {
            SAY(&w, "denied: host ");
            say_name(&w, hname);
            SAY(&w, " is pendingIncapable (encryption being disabled) and must reboot before "
                    "it can enter encryption mode again, needed to ");
            say(&w, opname);
            return deny(d, VMENC_E_HOST_MODE);
        }
        if (h->crypto_state != VMENC_HOST_SAFE) {
            const privset *s = effective_cached(m, u, r->key_host, &cache);
            if (!privset_has(s, VMENC_PRIV_CRYPTO_REGISTER_HOST)) {
                d->missing_privilege = VMENC_PRIV_CRYPTO_REGISTER_HOST;
                copy_name(d->missing_object, hname);
                SAY(&w, "denied: host ");
                say_name(&w, hname);
                SAY(&w, " is ");
                say(&w, st);
                SAY(&w, ", not in encryption mode, and ");
                say_name(&w, who);
                SAY(&w, " lacks privilege Cryptographer.RegisterHost on it to switch it on, "
                        "needed to ");
                say(&w, opname);
                return deny(d, VMENC_E_HOST_MODE);
            }
            d->enable_host_encryption = 1;
            d->allowed = 1;
            SAY(&w, "allowed: ");
            say_name(&w, who);
            SAY(&w, " may ");
            say(&w, opname);
            SAY(&w, "; host ");
            say_name(&w, hname);
            SAY(&w, " is ");
            say(&w, st);
            SAY(&w, " and will first be switched to encryption mode (the principal holds "
                    "Cryptographer.RegisterHost on it)");
            return VMENC_OK;
        }
    }
    d->allowed = 1;
    SAY(&w, "allowed: ");
    say_name(&w, who);
    SAY(&w, " holds every privilege needed to ");
    say(&w, opname);
    return VMENC_OK;
}

vmenc_status vmenc_policy_check(vmenc_policy *policy, const char *who,
                                const vmenc_policy_request *request,
                                vmenc_policy_decision *decision) {
    VMENC_ENSURE_REF(policy);
    VMENC_ENSURE_REF(request);
    VMENC_ENSURE_REF(decision);
    VMENC_ENSURE_REF(who); /* validated on lookup (decide) */
    VMENC_ENSURE(request->struct_size >= sizeof(vmenc_policy_request), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(decision->struct_size >= sizeof(vmenc_policy_decision), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(pthread_rwlock_rdlock(&policy->lock) == 0, VMENC_E_INTERNAL);
    resolved o;
    needs r;
    vmenc_status rv = prepare(policy->m, request, &o, &r);
    if (rv == VMENC_OK)
        rv = decide(policy->m, who, request->op, &o, &r, decision);
    else if (o.bad_field >= 0)
        explain_wrong_type(request, &o, decision);
    pthread_rwlock_unlock(&policy->lock);
    return rv;
}

vmenc_status vmenc_policy_has_privilege(vmenc_policy *policy, const char *who,
                                        const char *object_name, vmenc_policy_privilege priv,
                                        int *out) {
    VMENC_ENSURE_REF(policy);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(name_valid(who) && name_valid(object_name), VMENC_E_INVALID_ARG);
    VMENC_ENSURE((int)priv >= 0 && (int)priv < VMENC_PRIV_COUNT_, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(pthread_rwlock_rdlock(&policy->lock) == 0, VMENC_E_INTERNAL);
    const model *m = policy->m;
    vmenc_status rv = VMENC_E_NOT_FOUND;
    uint32_t obj = model_find_object(m, object_name);
    if (obj != INDEX_NONE) {
        privset s;
        model_effective(m, model_find_principal(m, who), obj, &s);
        *out = privset_has(&s, priv) ? 1 : 0;
        rv = VMENC_OK;
    }
    pthread_rwlock_unlock(&policy->lock);
    return rv;
}

vmenc_status vmenc_policy_enable_host_encryption(vmenc_policy *policy, const char *who,
                                                 const char *host,
                                                 vmenc_policy_decision *decision) {
    VMENC_ENSURE_REF(policy);
    VMENC_ENSURE_REF(decision);
    VMENC_ENSURE(name_valid(who) && name_valid(host), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(decision->struct_size >= sizeof(vmenc_policy_decision), VMENC_E_ABI_VERSION);
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_ENABLE_HOST_ENCRYPTION,
                               .host = host};
    /* Decide and switch under one write lock, so no other writer can change
     * the permissions or the host state in between. */
    VMENC_GUARD(policy_write_lock(policy));
    resolved o;
    needs r;
    vmenc_status rv = prepare(policy->m, &rq, &o, &r);
    if (rv == VMENC_OK)
        rv = decide(policy->m, who, rq.op, &o, &r, decision);
    else if (o.bad_field >= 0)
        explain_wrong_type(&rq, &o, decision);
    if (rv == VMENC_OK) {
        object *h = &policy->m->objects[r.key_host];
        if (h->crypto_state != VMENC_HOST_SAFE) {
            /* incapable -> prepared -> safe, each a legal step. */
            if (h->crypto_state == VMENC_HOST_INCAPABLE)
                h->crypto_state = VMENC_HOST_PREPARED;
            h->crypto_state = VMENC_HOST_SAFE;
            msg w = {decision->message, 0};
            SAY(&w, "allowed: host ");
            say_name(&w, h->name);
            SAY(&w, " switched to encryption mode (safe) by ");
            say_name(&w, who);
            /* |h| points into the model, which a failed commit replaces. */
            rv = policy_commit_locked(policy);
            if (rv != VMENC_OK) {
                decision->allowed = 0;
                decision->status = rv;
                snprintf(decision->message, sizeof(decision->message),
                         "the switch to encryption mode could not be saved: %s", vmenc_strerror(rv));
            }
        }
        decision->enable_host_encryption = 0;
    }
    policy_write_unlock(policy);
    return rv;
}
