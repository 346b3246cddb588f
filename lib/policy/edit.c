/*
 * lib/policy/edit.c - authorized policy edits: the rule that keeps the
 * policy's own users from escalating (vSphere's "a principal grants only
 * privileges it holds there", made complete), decided and applied under one
 * write lock.
 *
 * Two checks, both on the model as it is before the edit:
 *   1. the edit's privilege and the role rule (vmenc/policy.h's table): the
 *      actor holds the edit's privilege where it applies and every privilege
 *      of each role the edit grants, replaces, removes or extends to a new
 *      member;
 *   2. the effect rule: every (principal, object) pair the edit can change
 *      is evaluated before and after - the "after" through an overlay that
 *      describes the edit without applying it - and every privilege gained
 *      or lost must be held by the actor on that object. This catches what
 *      the role rule alone misses: a propagating grant reaching an object
 *      where the actor is denied, a revoke that unmasks an inherited or a
 *      group permission, a member added to a group nested in another.
 * Only then is the edit applied (policy.c's unchecked edit) and committed.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_commit.h"
#include "policy/policy_internal.h"

static const char *const k_edit_names[VMENC_EDIT_COUNT_] = {
    [VMENC_EDIT_ADD_ROLE] = "add_role",
    [VMENC_EDIT_ADD_USER] = "add_user",
    [VMENC_EDIT_ADD_GROUP] = "add_group",
    [VMENC_EDIT_ADD_MEMBER] = "add_member",
    [VMENC_EDIT_ADD_OBJECT] = "add_object",
    [VMENC_EDIT_GRANT] = "grant",
    [VMENC_EDIT_REVOKE] = "revoke",
    [VMENC_EDIT_SET_STORAGE_POLICY] = "set_storage_policy",
    [VMENC_EDIT_DISABLE_HOST_ENCRYPTION] = "disable_host_encryption",
};

const char *vmenc_policy_edit_op_name(int op) {
    if (op <= 0 || op >= VMENC_EDIT_COUNT_)
        return NULL;
    return k_edit_names[op];
}

/* ---- effective privileges with an edit overlaid --------------------------- */

/* An edit described, not applied: the permission of |prn| on |obj| replaced
 * (|remove|: deleted; else |role|, |propagate|), and |member| added to
 * |group|. INDEX_NONE fields: that part is absent. */
typedef struct overlay {
    uint32_t obj, prn;
    bool remove;
    uint32_t role;
    bool propagate;
    uint32_t group, member;
} overlay;

static const overlay k_no_overlay = {INDEX_NONE, INDEX_NONE, false, 0, false, INDEX_NONE, INDEX_NONE};

/* in_group: is |g| one of the groups |u| belongs to (transitively)? */
static bool in_group(const model *m, uint32_t u, uint32_t g) {
    if (u == INDEX_NONE || m->prn_hot[u].num == 0)
        return false;
    return policy_sorted_has(m->group_pool + m->prn_hot[u].off, m->prn_hot[u].num, g);
}

/* in_group_after: the same, with the overlay's membership edge added. */
static bool in_group_after(const model *m, const overlay *ov, uint32_t u, uint32_t g) {
    if (in_group(m, u, g))
        return true;
    if (ov->group == INDEX_NONE || u == INDEX_NONE)
        return false;
    return (u == ov->member || in_group(m, u, ov->member)) &&
           (g == ov->group || in_group(m, ov->group, g));
}

/* effective: model_effective's rules (check.c), walking every ancestor and
 * reading permissions through |ov|. */
static void effective(const model *m, const overlay *ov, uint32_t u, uint32_t obj, privset *out) {
    memset(out, 0, sizeof(*out));
    bool self = true;
    for (uint32_t o = obj; o != INDEX_NONE; o = m->objects[o].parent, self = false) {
        const objhot *oh = &m->hot[o];
        bool user_hit = false, group_hit = false;
        privset user_set = {{0}}, group_set = {{0}};
        const bool here = o == ov->obj;
        for (uint32_t i = 0; i <= oh->num_perms; i++) {
            perm e;
            if (i < oh->num_perms) {
                e = oh->perms[i];
                if (here && e.principal == ov->prn)
                    continue; /* replaced by the overlay */
            } else {
                if (!here || ov->remove)
                    break;
                e = (perm){.principal = ov->prn, .role = ov->role, .propagate = ov->propagate};
            }
            if (!self && !e.propagate)
                continue;
            if (e.principal == u) {
                user_hit = true;
                user_set = m->roles[e.role].privs;
            } else if (in_group_after(m, ov, u, e.principal)) {
                group_hit = true;
                privset_union(&group_set, &m->roles[e.role].privs);
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
}

/* ---- decisions -------------------------------------------------------------- */

typedef struct edit_ctx {
    const model *m;
    const char *actor;
    uint32_t a;                 /* the actor's index, or INDEX_NONE */
    const char *what;           /* "grant role 'Admin' to 'bob' on 'root'" */
    vmenc_policy_decision *d;
} edit_ctx;

/* say writes a sentence, cut at |cap| (a cut sentence is still one). */
__attribute__((format(printf, 3, 4))) static void say(char *dst, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
}

static void decision_clear(vmenc_policy_decision *d) {
    d->allowed = 0;
    d->status = VMENC_OK;
    d->missing_privilege = VMENC_PRIV_NONE;
    d->missing_object[0] = '\0';
    d->enable_host_encryption = 0;
    d->host[0] = '\0';
    d->message[0] = '\0';
}

static vmenc_status deny_priv(edit_ctx *c, int priv, uint32_t obj, const char *why) {
    vmenc_policy_decision *d = c->d;
    const object *o = &c->m->objects[obj];
    d->allowed = 0;
    d->status = VMENC_E_DENIED;
    d->missing_privilege = (vmenc_policy_privilege)priv;
    say(d->missing_object, sizeof(d->missing_object), "%s", o->name);
    say(d->message, sizeof(d->message), "denied: '%s' lacks privilege %s on %s '%s', needed to %s%s",
             c->actor, vmenc_policy_privilege_name(priv), object_type_name((int)o->type), o->name, c->what,
             why);
    return VMENC_E_DENIED;
}

/* need_priv: the actor holds |priv| on |obj| (before the edit). */
static vmenc_status need_priv(edit_ctx *c, int priv, uint32_t obj) {
    privset s;
    effective(c->m, &k_no_overlay, c->a, obj, &s);
    if (!privset_has(&s, priv))
        return deny_priv(c, priv, obj, "");
    return VMENC_OK;
}

/* need_role: the actor holds every privilege of |role| on |obj|. */
static vmenc_status need_role(edit_ctx *c, const privset *rs, uint32_t obj, const char *why) {
    privset s;
    effective(c->m, &k_no_overlay, c->a, obj, &s);
    for (int p = 0; p < VMENC_PRIV_COUNT_; p++)
        if (privset_has(rs, p) && !privset_has(&s, p))
            return deny_priv(c, p, obj, why);
    return VMENC_OK;
}

/* under: is |anc| |obj| or one of its ancestors? */
static bool under(const model *m, uint32_t obj, uint32_t anc) {
    for (uint32_t o = obj; o != INDEX_NONE; o = m->objects[o].parent)
        if (o == anc)
            return true;
    return false;
}

/* reached_by_groups: does a permission of |g| or of a group |g| is in apply
 * to |obj| (on it, or propagating from an ancestor)? */
static bool reached_by_groups(const model *m, uint32_t g, uint32_t obj) {
    bool self = true;
    for (uint32_t o = obj; o != INDEX_NONE; o = m->objects[o].parent, self = false) {
        const objhot *oh = &m->hot[o];
        for (uint32_t i = 0; i < oh->num_perms; i++) {
            const perm *e = &oh->perms[i];
            if ((self || e->propagate) && (e->principal == g || in_group(m, g, e->principal)))
                return true;
        }
    }
    return false;
}

/* effect_rule: for every principal in |prn_set| (u == |who| or a member of
 * it, transitively) and every object |obj_ok| accepts, the privileges
 * gained or lost under |ov| must be held by the actor there. */
typedef bool (*obj_filter)(const model *m, const overlay *ov, uint32_t obj);

static bool obj_at_perm(const model *m, const overlay *ov, uint32_t obj) {
    (void)m;
    return obj == ov->obj;
}
static bool obj_under_perm(const model *m, const overlay *ov, uint32_t obj) {
    return under(m, obj, ov->obj);
}
static bool obj_reached_by_group(const model *m, const overlay *ov, uint32_t obj) {
    return reached_by_groups(m, ov->group, obj);
}

static vmenc_status effect_rule(edit_ctx *c, const overlay *ov, uint32_t who, obj_filter filter) {
    const model *m = c->m;
    for (uint32_t obj = 0; obj < m->num_objects; obj++) {
        if (!filter(m, ov, obj))
            continue;
        privset mine;
        bool have_mine = false;
        for (uint32_t u = 0; u < m->num_principals; u++) {
            if (u != who && !in_group(m, u, who))
                continue;
            privset before, after;
            effective(m, &k_no_overlay, u, obj, &before);
            effective(m, ov, u, obj, &after);
            if (memcmp(&before, &after, sizeof(before)) == 0)
                continue;
            if (!have_mine) {
                effective(m, &k_no_overlay, c->a, obj, &mine);
                have_mine = true;
            }
            for (int p = 0; p < VMENC_PRIV_COUNT_; p++) {
                bool b = privset_has(&before, p), a = privset_has(&after, p);
                if (a != b && !privset_has(&mine, p)) {
                    char why[VMENC_POLICY_NAME_MAX + 64];
                    say(why, sizeof(why), " (the edit would %s it %s '%s' there)", a ? "give" : "take",
                             a ? "to" : "from", m->principals[u].name);
                    return deny_priv(c, p, obj, why);
                }
            }
        }
    }
    return VMENC_OK;
}

/* ---- the edits --------------------------------------------------------------- */

static bool valid_opt(const char *s) { return s != NULL && name_valid(s); }

static uint32_t find_perm(const model *m, uint32_t obj, uint32_t prn) {
    const objhot *oh = &m->hot[obj];
    for (uint32_t i = 0; i < oh->num_perms; i++)
        if (oh->perms[i].principal == prn)
            return i;
    return INDEX_NONE;
}

/* authorize decides |e| for the actor on the unchanged model: VMENC_OK to
 * apply, VMENC_E_DENIED (decision filled) or an argument error. */
static vmenc_status authorize(edit_ctx *c, const vmenc_policy_edit *e, char *what, size_t what_cap) {
    const model *m = c->m;
    const uint32_t root = m->root;
    c->what = what;
    switch (e->op) {
    case VMENC_EDIT_ADD_ROLE: {
        VMENC_ENSURE(valid_opt(e->name), VMENC_E_INVALID_ARG);
        VMENC_ENSURE(e->privs != NULL || e->num_privs == 0, VMENC_E_INVALID_ARG);
        privset s = {{0}};
        for (size_t i = 0; i < e->num_privs; i++) {
            VMENC_ENSURE((int)e->privs[i] >= 0 && (int)e->privs[i] < VMENC_PRIV_COUNT_, VMENC_E_INVALID_ARG);
            privset_add(&s, e->privs[i]);
        }
        say(what, what_cap, "define role '%s'", e->name);
        VMENC_GUARD(need_priv(c, VMENC_PRIV_AUTH_MODIFY_ROLES, root));
        return need_role(c, &s, root, " (a principal defines only roles whose privileges it holds on the root)");
    }
    case VMENC_EDIT_ADD_USER:
    case VMENC_EDIT_ADD_GROUP:
        VMENC_ENSURE(valid_opt(e->name), VMENC_E_INVALID_ARG);
        say(what, what_cap, "add %s '%s'", e->op == VMENC_EDIT_ADD_USER ? "user" : "group", e->name);
        return need_priv(c, VMENC_PRIV_AUTH_MODIFY_PERMISSIONS, root);
    case VMENC_EDIT_ADD_MEMBER: {
        VMENC_ENSURE(valid_opt(e->name) && valid_opt(e->member), VMENC_E_INVALID_ARG);
        uint32_t g = model_find_principal(m, e->name), x = model_find_principal(m, e->member);
        VMENC_ENSURE(g != INDEX_NONE && x != INDEX_NONE, VMENC_E_NOT_FOUND);
        VMENC_ENSURE(m->principals[g].is_group, VMENC_E_INVALID_ARG);
        /* A cycle would make the closure meaningless: refuse it before
         * evaluating anything under it. */
        VMENC_ENSURE(g != x && !in_group(m, g, x), VMENC_E_CYCLE);
        say(what, what_cap, "add '%s' to group '%s'", e->member, e->name);
        VMENC_GUARD(need_priv(c, VMENC_PRIV_AUTH_MODIFY_PERMISSIONS, root));
        /* The member receives every permission of the group and of the
         * groups it is in: the actor must hold each role where it is set. */
        for (uint32_t o = 0; o < m->num_objects; o++) {
            const objhot *oh = &m->hot[o];
            for (uint32_t i = 0; i < oh->num_perms; i++) {
                const perm *p = &oh->perms[i];
                if (p->principal == g || in_group(m, g, p->principal))
                    VMENC_GUARD(need_role(c, &m->roles[p->role].privs, o,
                                          " (a member receives the group's permissions)"));
            }
        }
        overlay ov = k_no_overlay;
        ov.group = g;
        ov.member = x;
        return effect_rule(c, &ov, x, obj_reached_by_group);
    }
    case VMENC_EDIT_ADD_OBJECT: {
        VMENC_ENSURE(valid_opt(e->name) && valid_opt(e->object), VMENC_E_INVALID_ARG);
        VMENC_ENSURE(object_type_name((int)e->object_type) != NULL && e->object_type != VMENC_OBJ_ROOT,
                     VMENC_E_INVALID_ARG);
        uint32_t p = model_find_object(m, e->object);
        VMENC_ENSURE(p != INDEX_NONE, VMENC_E_NOT_FOUND);
        say(what, what_cap, "add %s '%s' under '%s'", object_type_name((int)e->object_type), e->name,
                 e->object);
        int priv = e->object_type == VMENC_OBJ_VM ? VMENC_PRIV_VM_CREATE
                   : e->object_type == VMENC_OBJ_HOST
                       ? (m->objects[p].type == VMENC_OBJ_CLUSTER ? VMENC_PRIV_HOST_ADD_TO_CLUSTER
                                                                  : VMENC_PRIV_HOST_ADD_STANDALONE)
                       : VMENC_PRIV_AUTH_MODIFY_PERMISSIONS;
        return need_priv(c, priv, p);
    }
    case VMENC_EDIT_GRANT:
    case VMENC_EDIT_REVOKE: {
        const bool grant = e->op == VMENC_EDIT_GRANT;
        VMENC_ENSURE(valid_opt(e->name) && valid_opt(e->object) && (!grant || valid_opt(e->role)),
                     VMENC_E_INVALID_ARG);
        uint32_t u = model_find_principal(m, e->name), o = model_find_object(m, e->object);
        uint32_t r = grant ? model_find_role(m, e->role) : INDEX_NONE;
        VMENC_ENSURE(u != INDEX_NONE && o != INDEX_NONE && (!grant || r != INDEX_NONE), VMENC_E_NOT_FOUND);
        uint32_t old = find_perm(m, o, u);
        VMENC_ENSURE(grant || old != INDEX_NONE, VMENC_E_NOT_FOUND);
        if (grant)
            say(what, what_cap, "grant role '%s' to '%s' on '%s'", e->role, e->name, e->object);
        else
            say(what, what_cap, "revoke the permission of '%s' on '%s'", e->name, e->object);
        VMENC_GUARD(need_priv(c, VMENC_PRIV_AUTH_MODIFY_PERMISSIONS, o));
        if (grant)
            VMENC_GUARD(need_role(c, &m->roles[r].privs, o,
                                  " (a principal grants only privileges it holds there)"));
        if (old != INDEX_NONE)
            VMENC_GUARD(need_role(c, &m->roles[m->hot[o].perms[old].role].privs, o,
                                  grant ? " (the grant replaces a permission carrying it)"
                                        : " (the permission removed carries it)"));
        overlay ov = k_no_overlay;
        ov.obj = o;
        ov.prn = u;
        ov.remove = !grant;
        ov.role = r;
        ov.propagate = grant && e->propagate != 0;
        bool reaches = ov.propagate || (old != INDEX_NONE && m->hot[o].perms[old].propagate);
        return effect_rule(c, &ov, u, reaches ? obj_under_perm : obj_at_perm);
    }
    case VMENC_EDIT_SET_STORAGE_POLICY:
        VMENC_ENSURE_REF(e->storage_policy);
        VMENC_ENSURE(e->storage_policy->struct_size >= sizeof(vmenc_storage_policy_spec),
                     VMENC_E_ABI_VERSION);
        VMENC_ENSURE(valid_opt(e->storage_policy->name), VMENC_E_INVALID_ARG);
        say(what, what_cap, "set storage policy '%s'", e->storage_policy->name);
        VMENC_GUARD(need_priv(c, VMENC_PRIV_STORAGE_PROFILE_UPDATE, root));
        return need_priv(c, VMENC_PRIV_CRYPTO_MANAGE_ENCRYPTION_POLICY, root);
    case VMENC_EDIT_DISABLE_HOST_ENCRYPTION: {
        VMENC_ENSURE(valid_opt(e->name), VMENC_E_INVALID_ARG);
        uint32_t h = model_find_object(m, e->name);
        VMENC_ENSURE(h != INDEX_NONE, VMENC_E_NOT_FOUND);
        VMENC_ENSURE(m->objects[h].type == VMENC_OBJ_HOST, VMENC_E_INVALID_ARG);
        say(what, what_cap, "take host '%s' out of encryption mode", e->name);
        return need_priv(c, VMENC_PRIV_CRYPTO_REGISTER_HOST, h);
    }
    default:
        return VMENC_E_INVALID_ARG;
    }
}

/* apply makes the (authorized) edit with the unchecked writer. */
static vmenc_status apply(model *m, const vmenc_policy_edit *e) {
    switch (e->op) {
    case VMENC_EDIT_ADD_ROLE: return policy_do_add_role(m, e->name, e->privs, e->num_privs);
    case VMENC_EDIT_ADD_USER: return policy_do_add_principal(m, e->name, false);
    case VMENC_EDIT_ADD_GROUP: return policy_do_add_principal(m, e->name, true);
    case VMENC_EDIT_ADD_MEMBER: return policy_do_add_member(m, e->name, e->member);
    case VMENC_EDIT_ADD_OBJECT: return policy_do_add_object(m, e->name, e->object_type, e->object);
    case VMENC_EDIT_GRANT: return policy_do_grant(m, e->name, e->object, e->role, e->propagate);
    case VMENC_EDIT_REVOKE: return policy_do_revoke(m, e->name, e->object);
    case VMENC_EDIT_SET_STORAGE_POLICY: return policy_do_set_spolicy(m, e->storage_policy);
    case VMENC_EDIT_DISABLE_HOST_ENCRYPTION: {
        uint32_t h = model_find_object(m, e->name);
        vmenc_host_crypto_state cur = m->objects[h].crypto_state;
        vmenc_host_crypto_state to = cur == VMENC_HOST_PREPARED || cur == VMENC_HOST_INCAPABLE
                                         ? VMENC_HOST_INCAPABLE
                                         : VMENC_HOST_PENDING_INCAPABLE;
        return policy_do_set_host_state(m, e->name, to);
    }
    default: return VMENC_E_INVALID_ARG;
    }
}

vmenc_status vmenc_policy_edit_as(vmenc_policy *policy, const char *actor, const vmenc_policy_edit *edit,
                                  vmenc_policy_decision *decision) {
    VMENC_ENSURE_REF(policy);
    VMENC_ENSURE_REF(edit);
    VMENC_ENSURE_REF(decision);
    VMENC_ENSURE(edit->struct_size >= sizeof(vmenc_policy_edit), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(decision->struct_size >= sizeof(vmenc_policy_decision), VMENC_E_ABI_VERSION);
    decision_clear(decision);
    if (!valid_opt(actor)) {
        decision->status = VMENC_E_INVALID_ARG;
        say(decision->message, sizeof(decision->message), "invalid: the acting principal's name");
        return VMENC_E_INVALID_ARG;
    }
    const char *opname = vmenc_policy_edit_op_name(edit->op);
    char what[3 * VMENC_POLICY_NAME_MAX + 64];
    say(what, sizeof(what), "%s", opname ? opname : "edit the policy");
    /* Decide and apply under one write lock: nothing can change between the
     * decision and the edit it allows. */
    vmenc_status lk = policy_write_lock(policy); /* on the stored document's latest state */
    if (lk != VMENC_OK) {
        decision->status = lk;
        say(decision->message, sizeof(decision->message), "failed: %s: %s", what, vmenc_strerror(lk));
        return lk;
    }
    edit_ctx c = {.m = policy->m, .actor = actor, .a = model_find_principal(policy->m, actor), .d = decision};
    vmenc_status rv = authorize(&c, edit, what, sizeof(what));
    if (rv == VMENC_OK) {
        rv = apply(policy->m, edit);
        if (rv == VMENC_OK)
            rv = policy_commit_locked(policy);
        if (rv == VMENC_OK) {
            decision->allowed = 1;
            say(decision->message, sizeof(decision->message),
                     "allowed: '%s' may %s and holds every privilege it confers or removes", actor, what);
        } else {
            decision->status = rv;
            say(decision->message, sizeof(decision->message), "failed: %s: %s", what, vmenc_strerror(rv));
        }
    } else if (rv != VMENC_E_DENIED) {
        decision->status = rv;
        say(decision->message, sizeof(decision->message), "failed: %s: %s", what, vmenc_strerror(rv));
    }
    policy_write_unlock(policy);
    return rv;
}

/* ---- the same edits as calls ------------------------------------------------ */

#define EDIT(...)                                                              \
    do {                                                                       \
        vmenc_policy_edit e_ = {.struct_size = sizeof(e_), __VA_ARGS__};       \
        return vmenc_policy_edit_as(policy, actor, &e_, decision);             \
    } while (0)

vmenc_status vmenc_policy_add_role_as(vmenc_policy *policy, const char *actor, const char *name,
                                      const vmenc_policy_privilege *privs, size_t num_privs,
                                      vmenc_policy_decision *decision) {
    EDIT(.op = VMENC_EDIT_ADD_ROLE, .name = name, .privs = privs, .num_privs = num_privs);
}

vmenc_status vmenc_policy_add_user_as(vmenc_policy *policy, const char *actor, const char *name,
                                      vmenc_policy_decision *decision) {
    EDIT(.op = VMENC_EDIT_ADD_USER, .name = name);
}

vmenc_status vmenc_policy_add_group_as(vmenc_policy *policy, const char *actor, const char *name,
                                       vmenc_policy_decision *decision) {
    EDIT(.op = VMENC_EDIT_ADD_GROUP, .name = name);
}

vmenc_status vmenc_policy_add_member_as(vmenc_policy *policy, const char *actor, const char *group,
                                        const char *member, vmenc_policy_decision *decision) {
    EDIT(.op = VMENC_EDIT_ADD_MEMBER, .name = group, .member = member);
}

vmenc_status vmenc_policy_add_object_as(vmenc_policy *policy, const char *actor, const char *name,
                                        vmenc_policy_object_type type, const char *parent,
                                        vmenc_policy_decision *decision) {
    EDIT(.op = VMENC_EDIT_ADD_OBJECT, .name = name, .object_type = type, .object = parent);
}

vmenc_status vmenc_policy_grant_as(vmenc_policy *policy, const char *actor, const char *principal_name,
                                   const char *object_name, const char *role_name, int propagate,
                                   vmenc_policy_decision *decision) {
    EDIT(.op = VMENC_EDIT_GRANT, .name = principal_name, .object = object_name, .role = role_name,
         .propagate = propagate);
}

vmenc_status vmenc_policy_revoke_as(vmenc_policy *policy, const char *actor, const char *principal_name,
                                    const char *object_name, vmenc_policy_decision *decision) {
    EDIT(.op = VMENC_EDIT_REVOKE, .name = principal_name, .object = object_name);
}

vmenc_status vmenc_policy_set_storage_policy_as(vmenc_policy *policy, const char *actor,
                                                const vmenc_storage_policy_spec *spec,
                                                vmenc_policy_decision *decision) {
    EDIT(.op = VMENC_EDIT_SET_STORAGE_POLICY, .storage_policy = spec);
}

vmenc_status vmenc_policy_disable_host_encryption_as(vmenc_policy *policy, const char *actor,
                                                     const char *host, vmenc_policy_decision *decision) {
    EDIT(.op = VMENC_EDIT_DISABLE_HOST_ENCRYPTION, .name = host);
}
