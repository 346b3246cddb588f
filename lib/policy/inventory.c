/*
 * lib/policy/inventory.c - taking an object out of the inventory
 * (vmenc_policy_remove_object, include/vmenc/policy.h). The inventory only
 * grew until now; a library operation that adds a VM's object and then
 * fails (a migration receive whose stream was cut) must be able to take it
 * out again, or every failed attempt leaves a VM that exists nowhere.
 *
 * Safety rule: nothing is changed until everything that can fail has
 * succeeded. The new name index is built first, in a scratch model; only
 * then is the object unlinked - plain moves and index fix-ups that cannot
 * fail - so VMENC_E_NOMEM leaves the policy exactly as it was. Like every
 * writer, it commits (policy_commit.h) with the write lock held.
 *
 * Object indexes live in five places (policy_internal.h): the parent links,
 * a VM's host, the |up| shortcut of each object, the root, and the name
 * map. Removing object |k| moves every later object down by one, so each of
 * them is renumbered here.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdlib.h>
#include <string.h>

#include "policy/policy_commit.h"
#include "policy/policy_internal.h"

/* renumber maps an object index after object |k| is gone. */
static uint32_t renumber(uint32_t idx, uint32_t k) { return idx != INDEX_NONE && idx > k ? idx - 1 : idx; }

/* build_name_map makes, in a scratch model, the name map the inventory
 * will need without object |k| (the map's hash and slots are private to
 * model.c, so it is built by adding the surviving objects in their new
 * order). The scratch names are not kept: the caller points the slots at
 * the model's own names. */
static vmenc_status build_name_map(const model *m, uint32_t k, model **out) {
    model *s;
    VMENC_GUARD(model_new(&s));
    s->defer_up = true;
    vmenc_status rv = VMENC_OK;
    for (uint32_t i = 0; i < m->num_objects && rv == VMENC_OK; i++) {
        if (i == k)
            continue;
        uint32_t got;
        rv = model_add_object(s, m->objects[i].name, m->objects[i].type, INDEX_NONE, &got);
        if (rv == VMENC_OK && got != renumber(i, k))
            rv = VMENC_E_INTERNAL;
    }
    if (rv != VMENC_OK) {
        model_free(s);
        return rv;
    }
    *out = s;
    return VMENC_OK;
}

static vmenc_status do_remove_object(model *m, const char *name) {
    VMENC_ENSURE(name_valid(name), VMENC_E_INVALID_ARG);
    uint32_t k = model_find_object(m, name);
    VMENC_ENSURE(k != INDEX_NONE, VMENC_E_NOT_FOUND);
    VMENC_ENSURE(m->objects[k].type == VMENC_OBJ_VM, VMENC_E_INVALID_ARG);
    for (uint32_t i = 0; i < m->num_objects; i++)
        VMENC_ENSURE(m->objects[i].parent != k, VMENC_E_BAD_STATE);

    model *scratch = NULL;
    VMENC_GUARD(build_name_map(m, k, &scratch));

    /* From here nothing fails. */
    strmap old = m->obj_map;
    m->obj_map = scratch->obj_map;
    scratch->obj_map = old; /* freed with the scratch model */

    m->num_perms_total -= m->hot[k].num_perms;
    free(m->hot[k].perms);
    free(m->objects[k].name);
    uint32_t after = m->num_objects - k - 1;
    memmove(&m->objects[k], &m->objects[k + 1], (size_t)after * sizeof(m->objects[0]));
    memmove(&m->hot[k], &m->hot[k + 1], (size_t)after * sizeof(m->hot[0]));
    m->num_objects--;
    memset(&m->objects[m->num_objects], 0, sizeof(m->objects[0]));
    memset(&m->hot[m->num_objects], 0, sizeof(m->hot[0]));
    for (uint32_t i = 0; i < m->num_objects; i++) {
        m->objects[i].parent = renumber(m->objects[i].parent, k);
        m->objects[i].host = renumber(m->objects[i].host, k);
        /* a VM with no children is nobody's ancestor: no |up| pointed at it */
        m->hot[i].up = renumber(m->hot[i].up, k);
    }
    m->root = renumber(m->root, k);
    for (uint32_t i = 0; i < m->obj_map.cap; i++) {
        strmap_slot *sl = &m->obj_map.slots[i];
        if (sl->idx1 != 0)
            sl->name = m->objects[sl->idx1 - 1].name;
    }
    model_free(scratch);
    return VMENC_OK;
}

vmenc_status vmenc_policy_remove_object(vmenc_policy *policy, const char *name) {
    VMENC_ENSURE_REF(policy);
    VMENC_ENSURE_REF(name);
    VMENC_GUARD(policy_write_lock(policy));
    vmenc_status rv = do_remove_object(policy->m, name);
    if (rv == VMENC_OK)
        rv = policy_commit_locked(policy);
    policy_write_unlock(policy);
    return rv;
}
