/*
 * lib/policy/policy.c - the vmenc_policy handle: lifecycle, the lock, the
 * programmatic construction API, host encryption mode, and storage policy
 * planning.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdlib.h>
#include <string.h>

#include "policy/policy_commit.h"
#include "policy/policy_internal.h"

static vmenc_status policy_wrap(model *m, vmenc_policy **out) {
    vmenc_policy *p = calloc(1, sizeof(*p));
    VMENC_ENSURE(p != NULL, VMENC_E_NOMEM);
    pthread_rwlockattr_t attr;
    if (pthread_rwlockattr_init(&attr) != 0) {
        free(p);
        return VMENC_E_NOMEM;
    }
    /* Writers must not starve behind a steady stream of checks. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int e = pthread_rwlock_init(&p->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (e != 0) {
        free(p);
        return VMENC_E_NOMEM;
    }
    p->m = m;
    *out = p;
    return VMENC_OK;
}

vmenc_status vmenc_policy_new(const char *root_name, vmenc_policy **out) {
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(name_valid(root_name), VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());
    model *m;
    VMENC_GUARD(model_new(&m));
    uint32_t root;
    vmenc_status rv = model_add_object(m, root_name, VMENC_OBJ_ROOT, INDEX_NONE, &root);
    if (rv == VMENC_OK)
        rv = policy_wrap(m, out);
    if (rv != VMENC_OK)
        model_free(m);
    return rv;
}

void vmenc_policy_free(vmenc_policy *policy) {
    if (policy == NULL)
        return;
    free(policy->committed);
    model_free(policy->m);
    pthread_rwlock_destroy(&policy->lock);
    free(policy);
}

vmenc_status vmenc_policy_load_json(const uint8_t *json, size_t json_len, vmenc_policy_error *err,
                                    vmenc_policy **out) {
    VMENC_ENSURE_REF(out);
    VMENC_GUARD(vmenc_ensure_init());
    model *m;
    VMENC_GUARD(policy_json_parse(json, json_len, err, &m));
    vmenc_status rv = policy_wrap(m, out);
    if (rv != VMENC_OK)
        model_free(m);
    return rv;
}

vmenc_status vmenc_policy_reload_json(vmenc_policy *policy, const uint8_t *json, size_t json_len,
                                      vmenc_policy_error *err) {
    VMENC_ENSURE_REF(policy);
    model *m;
    VMENC_GUARD(policy_json_parse(json, json_len, err, &m));
    vmenc_status rv = policy_write_lock(policy);
    if (rv != VMENC_OK) {
        model_free(m);
        return rv;
    }
    model *old = policy->m;
    policy->m = m;
    rv = policy_commit_locked(policy);
    policy_write_unlock(policy);
    /* On a failed commit policy->m is the rolled-back model and |m| was
     * freed by the rollback; |old| is ours to free either way. */
    model_free(old);
    return rv;
}

/* ---- the commit hook (policy_commit.h) ------------------------------------ */

vmenc_status policy_set_commit_hook(vmenc_policy *policy, policy_commit_fn fn, void *ctx) {
    VMENC_ENSURE_REF(policy);
    uint8_t *doc = NULL;
    size_t len = 0;
    if (fn != NULL) {
        VMENC_ENSURE(pthread_rwlock_rdlock(&policy->lock) == 0, VMENC_E_INTERNAL);
        vmenc_status rv = policy_json_serialise(policy->m, &doc, &len);
        pthread_rwlock_unlock(&policy->lock);
        VMENC_GUARD(rv);
    }
    free(policy->committed);
    policy->committed = doc;
    policy->committed_len = len;
    policy->commit = fn;
    policy->commit_ctx = ctx;
    return VMENC_OK;
}

vmenc_status policy_set_refresh_hook(vmenc_policy *policy, policy_refresh_fn refresh, policy_release_fn release) {
    VMENC_ENSURE_REF(policy);
    VMENC_ENSURE((refresh == NULL) == (release == NULL), VMENC_E_INVALID_ARG);
    policy->refresh = refresh;
    policy->release = release;
    return VMENC_OK;
}

vmenc_status policy_write_lock(vmenc_policy *policy) {
    VMENC_ENSURE_REF(policy);
    VMENC_ENSURE(pthread_rwlock_wrlock(&policy->lock) == 0, VMENC_E_INTERNAL);
    if (policy->refresh == NULL)
        return VMENC_OK;
    if (policy->refresh_failed != VMENC_OK) {
        pthread_rwlock_unlock(&policy->lock);
        return policy->refresh_failed;
    }
    uint8_t *json = NULL;
    size_t len = 0;
    vmenc_status rv = policy->refresh(policy->commit_ctx, &json, &len);
    if (rv != VMENC_OK) {
        pthread_rwlock_unlock(&policy->lock);
        return rv;
    }
    if (json != NULL) {
        /* Another process committed since: decide and apply on its document. */
        model *m = NULL;
        rv = policy_json_parse(json, len, NULL, &m);
        if (rv == VMENC_OK) {
            model_free(policy->m);
            policy->m = m;
            free(policy->committed);
            policy->committed = json;
            policy->committed_len = len;
            json = NULL;
        }
        free(json);
        if (rv != VMENC_OK) {
            /* The owner now believes the model is in sync with a document
             * this model could not take: no later write may commit. */
            policy->refresh_failed = rv;
            policy->release(policy->commit_ctx);
            pthread_rwlock_unlock(&policy->lock);
            return rv;
        }
    }
    return VMENC_OK;
}

void policy_write_unlock(vmenc_policy *policy) {
    if (policy->release != NULL)
        policy->release(policy->commit_ctx);
    pthread_rwlock_unlock(&policy->lock);
}

vmenc_status policy_commit_locked(vmenc_policy *policy) {
    if (policy->commit == NULL)
        return VMENC_OK;
    uint8_t *doc = NULL;
    size_t len = 0;
    vmenc_status rv = policy_json_serialise(policy->m, &doc, &len);
    if (rv == VMENC_OK)
        rv = policy->commit(policy->commit_ctx, doc, len);
    if (rv == VMENC_OK) {
        free(policy->committed);
        policy->committed = doc;
        policy->committed_len = len;
        return VMENC_OK;
    }
    free(doc);
    /* Back to what is on disk: the change never happened. The committed
     * document was produced by this code, so it parses; if memory runs out
     * here the change stays in memory only and the status says so. */
    model *back;
    if (policy_json_parse(policy->committed, policy->committed_len, NULL, &back) == VMENC_OK) {
        model_free(policy->m);
        policy->m = back;
    }
    return rv;
}

/* ---- writers ------------------------------------------------------------- */

#define WRITE_LOCKED(policy, body)                                            \
    do {                                                                      \
        VMENC_ENSURE_REF(policy);                                             \
        VMENC_GUARD(policy_write_lock(policy));                               \
        vmenc_status wl_rv_ = (body);                                         \
        if (wl_rv_ == VMENC_OK)                                               \
            wl_rv_ = policy_commit_locked(policy);                            \
        policy_write_unlock(policy);                                          \
        return wl_rv_;                                                        \
    } while (0)

vmenc_status policy_do_add_role(model *m, const char *name, const vmenc_policy_privilege *privs,
                                size_t num_privs) {
    privset s = {{0}};
    VMENC_ENSURE(privs != NULL || num_privs == 0, VMENC_E_INVALID_ARG);
    for (size_t i = 0; i < num_privs; i++) {
        VMENC_ENSURE((int)privs[i] >= 0 && (int)privs[i] < VMENC_PRIV_COUNT_,
                     VMENC_E_INVALID_ARG);
        privset_add(&s, privs[i]);
    }
    uint32_t idx;
    return model_add_role(m, name, &s, false, &idx);
}

vmenc_status vmenc_policy_add_role(vmenc_policy *policy, const char *name,
                                   const vmenc_policy_privilege *privs, size_t num_privs) {
    WRITE_LOCKED(policy, policy_do_add_role(policy->m, name, privs, num_privs));
}

vmenc_status policy_do_add_principal(model *m, const char *name, bool is_group) {
    uint32_t idx;
    VMENC_GUARD(model_add_principal(m, name, is_group, &idx));
    /* A new principal belongs to no group yet; its closure is empty. */
    return VMENC_OK;
}

vmenc_status vmenc_policy_add_user(vmenc_policy *policy, const char *name) {
    WRITE_LOCKED(policy, policy_do_add_principal(policy->m, name, false));
}

vmenc_status vmenc_policy_add_group(vmenc_policy *policy, const char *name) {
    WRITE_LOCKED(policy, policy_do_add_principal(policy->m, name, true));
}

vmenc_status policy_do_add_member(model *m, const char *group, const char *member) {
    VMENC_ENSURE(name_valid(group) && name_valid(member), VMENC_E_INVALID_ARG);
    uint32_t g = model_find_principal(m, group);
    uint32_t x = model_find_principal(m, member);
    VMENC_ENSURE(g != INDEX_NONE && x != INDEX_NONE, VMENC_E_NOT_FOUND);
    VMENC_ENSURE(m->principals[g].is_group, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(g != x, VMENC_E_CYCLE);
    VMENC_GUARD(model_add_member(m, g, x));
    uint32_t cyc;
    vmenc_status rv = model_rebuild_groups(m, &cyc);
    if (rv != VMENC_OK) {
        /* Undo: drop the edge and restore the previous (valid) closure. */
        m->principals[g].num_members--;
        m->num_members_total--;
        if (model_rebuild_groups(m, &cyc) != VMENC_OK)
            return VMENC_E_INTERNAL;
    }
    return rv;
}

vmenc_status vmenc_policy_add_member(vmenc_policy *policy, const char *group, const char *member) {
    WRITE_LOCKED(policy, policy_do_add_member(policy->m, group, member));
}

vmenc_status policy_do_add_object(model *m, const char *name, vmenc_policy_object_type type,
                                  const char *parent) {
    VMENC_ENSURE(type != VMENC_OBJ_ROOT, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(name_valid(parent), VMENC_E_INVALID_ARG);
    uint32_t p = model_find_object(m, parent);
    VMENC_ENSURE(p != INDEX_NONE, VMENC_E_NOT_FOUND);
    VMENC_ENSURE(m->objects[p].type != VMENC_OBJ_VM, VMENC_E_INVALID_ARG);
    uint32_t idx;
    return model_add_object(m, name, type, p, &idx);
}

vmenc_status vmenc_policy_add_object(vmenc_policy *policy, const char *name,
                                     vmenc_policy_object_type type, const char *parent) {
    WRITE_LOCKED(policy, policy_do_add_object(policy->m, name, type, parent));
}

static vmenc_status do_set_vm_state(model *m, const char *vm, const char *host, int encrypted) {
    VMENC_ENSURE(name_valid(vm), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(host == NULL || name_valid(host), VMENC_E_INVALID_ARG);
    uint32_t v = model_find_object(m, vm);
    VMENC_ENSURE(v != INDEX_NONE, VMENC_E_NOT_FOUND);
    VMENC_ENSURE(m->objects[v].type == VMENC_OBJ_VM, VMENC_E_INVALID_ARG);
    uint32_t h = INDEX_NONE;
    if (host != NULL) {
        h = model_find_object(m, host);
        VMENC_ENSURE(h != INDEX_NONE, VMENC_E_NOT_FOUND);
        VMENC_ENSURE(m->objects[h].type == VMENC_OBJ_HOST, VMENC_E_INVALID_ARG);
        if (encrypted)
            VMENC_ENSURE(m->objects[h].crypto_state == VMENC_HOST_SAFE, VMENC_E_HOST_MODE);
    }
    m->objects[v].host = h;
    m->objects[v].encrypted = encrypted != 0;
    return VMENC_OK;
}

/* vm_state_is: the model already says so (read lock). */
static bool vm_state_is(vmenc_policy *policy, const char *vm, const char *host, int encrypted) {
    if (!name_valid(vm) || (host != NULL && !name_valid(host)) ||
        pthread_rwlock_rdlock(&policy->lock) != 0)
        return false;
    const model *m = policy->m;
    uint32_t v = model_find_object(m, vm);
    uint32_t h = host != NULL ? model_find_object(m, host) : INDEX_NONE;
    bool same = v != INDEX_NONE && m->objects[v].type == VMENC_OBJ_VM && (host == NULL || h != INDEX_NONE) &&
                m->objects[v].host == h && m->objects[v].encrypted == (encrypted != 0);
    pthread_rwlock_unlock(&policy->lock);
    return same;
}

vmenc_status vmenc_policy_set_vm_state(vmenc_policy *policy, const char *vm, const char *host,
                                       int encrypted) {
    VMENC_ENSURE_REF(policy);
    /* Every VM open places the VM on its host: when the model already says
     * so, there is nothing to write and no writer to wait for (a read-only
     * command never waits; docs/workspace.md "Many processes"). */
    if (vm_state_is(policy, vm, host, encrypted))
        return VMENC_OK;
    WRITE_LOCKED(policy, do_set_vm_state(policy->m, vm, host, encrypted));
}

vmenc_status policy_do_grant(model *m, const char *principal_name, const char *object_name,
                             const char *role_name, int propagate) {
    VMENC_ENSURE(name_valid(principal_name) && name_valid(object_name) && name_valid(role_name),
                 VMENC_E_INVALID_ARG);
    uint32_t p = model_find_principal(m, principal_name);
    uint32_t o = model_find_object(m, object_name);
    uint32_t r = model_find_role(m, role_name);
    VMENC_ENSURE(p != INDEX_NONE && o != INDEX_NONE && r != INDEX_NONE, VMENC_E_NOT_FOUND);
    return model_set_perm(m, o, p, r, propagate != 0, true);
}

vmenc_status vmenc_policy_grant(vmenc_policy *policy, const char *who, const char *obj_name,
                                const char *role_name, int propagate) {
    WRITE_LOCKED(policy, policy_do_grant(policy->m, who, obj_name, role_name, propagate));
}

vmenc_status policy_do_revoke(model *m, const char *principal_name, const char *object_name) {
    VMENC_ENSURE(name_valid(principal_name) && name_valid(object_name), VMENC_E_INVALID_ARG);
    uint32_t p = model_find_principal(m, principal_name);
    uint32_t o = model_find_object(m, object_name);
    VMENC_ENSURE(p != INDEX_NONE && o != INDEX_NONE, VMENC_E_NOT_FOUND);
    object *ob = &m->objects[o];
    objhot *oh = &m->hot[o];
    for (uint32_t i = 0; i < oh->num_perms; i++) {
        if (oh->perms[i].principal == p) {
            perm gone = oh->perms[i];
            if (gone.propagate && ob->num_prop == 1) {
                /* The last propagating permission: descendants' |up| links
                 * change. Relink first so a failure changes nothing. */
                ob->num_prop = 0;
                vmenc_status rv = model_rebuild_up(m);
                if (rv != VMENC_OK) {
                    ob->num_prop = 1;
                    return rv;
                }
            } else {
                ob->num_prop -= gone.propagate;
            }
            /* Keep the order of the others (canonical saves). */
            memmove(&oh->perms[i], &oh->perms[i + 1], (oh->num_perms - i - 1) * sizeof(perm));
            oh->num_perms--;
            m->num_perms_total--;
            return VMENC_OK;
        }
    }
    return VMENC_E_NOT_FOUND;
}

vmenc_status vmenc_policy_revoke(vmenc_policy *policy, const char *who, const char *obj_name) {
    WRITE_LOCKED(policy, policy_do_revoke(policy->m, who, obj_name));
}

static vmenc_status find_host(const model *m, const char *host, uint32_t *out) {
    VMENC_ENSURE(name_valid(host), VMENC_E_INVALID_ARG);
    uint32_t h = model_find_object(m, host);
    VMENC_ENSURE(h != INDEX_NONE, VMENC_E_NOT_FOUND);
    VMENC_ENSURE(m->objects[h].type == VMENC_OBJ_HOST, VMENC_E_INVALID_ARG);
    *out = h;
    return VMENC_OK;
}

vmenc_status policy_do_set_host_state(model *m, const char *host, vmenc_host_crypto_state to) {
    VMENC_ENSURE(vmenc_host_crypto_state_name((int)to) != NULL, VMENC_E_INVALID_ARG);
    uint32_t h;
    VMENC_GUARD(find_host(m, host, &h));
    object *o = &m->objects[h];
    VMENC_GUARD(host_transition_ok(o->crypto_state, to));
    if (o->crypto_state == VMENC_HOST_SAFE && to != VMENC_HOST_SAFE)
        VMENC_ENSURE(model_encrypted_vms_on(m, h) == 0, VMENC_E_HOST_MODE);
    o->crypto_state = to;
    return VMENC_OK;
}

vmenc_status vmenc_policy_set_host_state(vmenc_policy *policy, const char *host,
                                         vmenc_host_crypto_state state) {
    WRITE_LOCKED(policy, policy_do_set_host_state(policy->m, host, state));
}

vmenc_status vmenc_policy_get_host_state(vmenc_policy *policy, const char *host,
                                         vmenc_host_crypto_state *out) {
    VMENC_ENSURE_REF(policy);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(pthread_rwlock_rdlock(&policy->lock) == 0, VMENC_E_INTERNAL);
    uint32_t h;
    vmenc_status rv = find_host(policy->m, host, &h);
    if (rv == VMENC_OK)
        *out = policy->m->objects[h].crypto_state;
    pthread_rwlock_unlock(&policy->lock);
    return rv;
}

vmenc_status policy_do_set_spolicy(model *m, const vmenc_storage_policy_spec *spec) {
    VMENC_ENSURE_REF(spec);
    VMENC_ENSURE(spec->struct_size >= sizeof(vmenc_storage_policy_spec), VMENC_E_ABI_VERSION);
    return model_set_spolicy(m, spec);
}

vmenc_status vmenc_policy_set_storage_policy(vmenc_policy *policy,
                                             const vmenc_storage_policy_spec *spec) {
    WRITE_LOCKED(policy, policy_do_set_spolicy(policy->m, spec));
}

/* ---- storage policy planning ------------------------------------------- */

static bool same_provider(const char *a, const char *b) {
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static void emit(vmenc_policy_action *out, size_t *n, vmenc_policy_action_type t, size_t disk,
                 const char *provider) {
    vmenc_policy_action *a = &out[(*n)++];
    memset(a, 0, sizeof(*a));
    a->type = t;
    a->disk = disk;
    if (provider != NULL) {
        size_t l = strnlen(provider, VMENC_POLICY_NAME_MAX);
        memcpy(a->key_provider, provider, l);
    }
}

/* plan_class adds the action that brings one file class from (|is_enc|,
 * |cur|) to (|want|, |prov|): encrypt, decrypt, rekey to the new provider,
 * or nothing. */
static void plan_class(vmenc_policy_action *out, size_t *n, bool is_enc, const char *cur,
                       bool want, const char *prov, vmenc_policy_action_type enc_t,
                       vmenc_policy_action_type dec_t, vmenc_policy_action_type rekey_t,
                       size_t disk) {
    if (want && !is_enc)
        emit(out, n, enc_t, disk, prov);
    else if (!want && is_enc)
        emit(out, n, dec_t, disk, NULL);
    else if (want && is_enc && !same_provider(cur, prov))
        emit(out, n, rekey_t, disk, prov);
}

static vmenc_status validate_state(const vmenc_vm_crypto_state *st) {
    VMENC_ENSURE(st->struct_size >= sizeof(vmenc_vm_crypto_state), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(st->disks != NULL || st->num_disks == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(st->num_disks <= 1u << 16, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(migration_name((int)st->migration) != NULL, VMENC_E_INVALID_ARG);
    if (st->home_encrypted)
        VMENC_ENSURE(name_valid(st->home_provider), VMENC_E_INVALID_ARG);
    if (st->core_dumps_encrypted)
        VMENC_ENSURE(name_valid(st->core_dump_provider), VMENC_E_INVALID_ARG);
    for (size_t i = 0; i < st->num_disks; i++) {
        if (st->disks[i].encrypted) {
            /* An encrypted disk on a plain VM home is not a state vSphere
             * can be in; refuse rather than plan around it. */
            VMENC_ENSURE(st->home_encrypted, VMENC_E_INVALID_ARG);
            VMENC_ENSURE(name_valid(st->disks[i].key_provider), VMENC_E_INVALID_ARG);
        }
    }
    return VMENC_OK;
}

static vmenc_status plan(const model *m, const char *name, const vmenc_vm_crypto_state *st,
                         vmenc_policy_action *out, size_t out_cap, size_t *out_num) {
    VMENC_ENSURE(name_valid(name), VMENC_E_INVALID_ARG);
    VMENC_GUARD(validate_state(st));
    VMENC_ENSURE(out_cap >= VMENC_POLICY_MAX_ACTIONS(st->num_disks), VMENC_E_BUFFER_TOO_SMALL);
    uint32_t idx = model_find_spolicy(m, name);
    VMENC_ENSURE(idx != INDEX_NONE, VMENC_E_NOT_FOUND);
    const storage_policy *sp = &m->spolicies[idx];
    const char *prov = sp->key_provider;
    bool home = sp->encrypt && (sp->file_classes & VMENC_FILE_VM_HOME);
    bool disks = sp->encrypt && (sp->file_classes & VMENC_FILE_DISKS);
    bool dumps = sp->encrypt && (sp->file_classes & VMENC_FILE_CORE_DUMPS);
    size_t n = 0;

    /* Home before disks when encrypting, disks before home when decrypting:
     * a disk is never encrypted while its VM home is plain. */
    if (home)
        plan_class(out, &n, st->home_encrypted, st->home_provider, true, prov,
                   VMENC_ACTION_ENCRYPT_HOME, VMENC_ACTION_DECRYPT_HOME, VMENC_ACTION_REKEY_HOME,
                   0);
    for (size_t i = 0; i < st->num_disks; i++)
        plan_class(out, &n, st->disks[i].encrypted, st->disks[i].key_provider, disks, prov,
                   VMENC_ACTION_ENCRYPT_DISK, VMENC_ACTION_DECRYPT_DISK, VMENC_ACTION_REKEY_DISK,
                   i);
    if (!home)
        plan_class(out, &n, st->home_encrypted, st->home_provider, false, prov,
                   VMENC_ACTION_ENCRYPT_HOME, VMENC_ACTION_DECRYPT_HOME, VMENC_ACTION_REKEY_HOME,
                   0);
    plan_class(out, &n, st->core_dumps_encrypted, st->core_dump_provider, dumps, prov,
               VMENC_ACTION_ENCRYPT_CORE_DUMPS, VMENC_ACTION_DECRYPT_CORE_DUMPS,
               VMENC_ACTION_REKEY_CORE_DUMPS, 0);

    /* An encrypted VM always migrates encrypted. */
    vmenc_migration_encryption mig = home ? VMENC_MIGRATION_REQUIRED : sp->migration;
    if (mig != st->migration) {
        emit(out, &n, VMENC_ACTION_SET_MIGRATION, 0, NULL);
        out[n - 1].migration = mig;
    }
    *out_num = n;
    return VMENC_OK;
}

vmenc_status vmenc_policy_plan_storage_policy(vmenc_policy *policy, const char *name,
                                              const vmenc_vm_crypto_state *state,
                                              vmenc_policy_action *out, size_t out_cap,
                                              size_t *out_num) {
    VMENC_ENSURE_REF(policy);
    VMENC_ENSURE_REF(state);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE_REF(out_num);
    VMENC_ENSURE(pthread_rwlock_rdlock(&policy->lock) == 0, VMENC_E_INTERNAL);
    vmenc_status rv = plan(policy->m, name, state, out, out_cap, out_num);
    pthread_rwlock_unlock(&policy->lock);
    return rv;
}

void vmenc_policy_buffer_free(uint8_t *buf) { free(buf); }
