/*
 * lib/workspace/policy_store.c - the workspace as the owner of the policy's
 * storage: the sealed policy document is verified at open, every change to
 * the policy is sealed and written atomically before the writer returns
 * (the commit hook of lib/policy/policy_commit.h), and an administrator can
 * re-seal a document he vouches for (vmenc_workspace_reseal_policy). The
 * bytes of the sealed document are policy_seal.c's; docs/workspace.md
 * describes the format, the key and the recovery.
 *
 * Every change is a compare-and-swap across processes (docs/workspace.md
 * "Many processes"): the refresh hook takes "<policy>.lock", re-reads the
 * document and hands a newer one (its seal verified, its generation higher)
 * to the policy, which decides and applies the change on it; the commit
 * hook writes the next generation; the release hook unlocks.
 *
 * Safety rule: the policy that decides anything is built only from a
 * document whose seal verified, or from one an administrator of that very
 * document vouched for (re-seal, audited with the old and new hashes).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_commit.h"
#include "policy/policy_internal.h"
#include "workspace/ws_internal.h"

/* The recovery sentence every refusal ends with. */
#define RESEAL_HINT                                                                                                \
    "; if you vouch for its content, an administrator re-seals it: vmenc policy reseal --user ADMIN "            \
    "(vmenc_workspace_reseal_policy)"

static void hex_of(const uint8_t *b, size_t n, char *out) {
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* ---- load at open ------------------------------------------------------------ */

vmenc_status ws_policy_load(vmenc_workspace *ws, ws_open_mode mode, vmenc_workspace_error *err) {
    uint8_t *doc = NULL;
    size_t len = 0;
    /* Room for the trailer beside the largest document the policy accepts. */
    vmenc_status rv = ws_read_path(ws->policy_path, VMENC_POLICY_MAX_DOCUMENT + WS_SEAL_TRAILER_MAX, &doc, &len);
    if (rv != VMENC_OK)
        return ws_set_error(err, rv, ws->policy_path, 0, "cannot read the policy document: %s", vmenc_strerror(rv));
    ws_policy_found *f = &ws->policy_found;
    crypto_hash_sha256(f->sha256, doc, len);
    ws_seal_view v;
    vmenc_status ps = ws_seal_split(doc, len, &v);
    f->sealed = v.has_seal;
    f->generation = ps == VMENC_OK ? v.generation : 0;
    f->seal_valid = ps == VMENC_OK && ws_seal_verify(ws->seal_key, ws->cfg->id, &v) == VMENC_OK;
    if (mode == WS_OPEN_NORMAL && !f->seal_valid) {
        free(doc);
        if (!v.has_seal)
            return ws_set_error(err, VMENC_E_AUTH, ws->policy_path, 0,
                                "the policy document is not sealed (written outside vmenc, or by a version "
                                "before sealing), so it is not trusted" RESEAL_HINT);
        return ws_set_error(err, VMENC_E_AUTH, ws->policy_path, 0,
                            "the policy document's seal does not match (it was changed outside vmenc, or comes "
                            "from another workspace); restore the last good copy" RESEAL_HINT);
    }
    vmenc_policy_error pe = {.struct_size = sizeof(pe)};
    rv = vmenc_policy_load_json(v.json, v.json_len, &pe, &ws->policy);
    free(doc);
    if (rv != VMENC_OK)
        return ws_set_error(err, rv, ws->policy_path, 0, "%s: %s", pe.path, pe.message);
    ws->policy_gen = f->generation;
    memcpy(ws->policy_sha, f->sha256, sizeof(ws->policy_sha));
    return VMENC_OK;
}

/* ---- the commit hook ---------------------------------------------------------- */

/* commit_document seals |json| at the next generation and replaces the
 * document. Runs under the policy's write lock (policy_commit.h), which
 * also serialises policy_gen. */
static vmenc_status commit_document(void *ctx, const uint8_t *json, size_t json_len) {
    vmenc_workspace *ws = ctx;
    uint64_t gen = ws->policy_gen + 1;
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    VMENC_GUARD(ws_seal_build(ws->seal_key, ws->cfg->id, gen, json, json_len, &sealed, &sealed_len));
    vmenc_status rv = ws_write_path(ws->policy_path, sealed, sealed_len, ws->sync);
    if (rv == VMENC_OK) {
        ws->policy_gen = gen;
        crypto_hash_sha256(ws->policy_sha, sealed, sealed_len);
    }
    free(sealed);
    return rv;
}

/* take_newer checks a document another process wrote since this model was
 * synchronised and returns a copy of its JSON: its seal must verify and its
 * generation must be higher (a lower one is an old copy put back). */
static vmenc_status take_newer(vmenc_workspace *ws, const uint8_t *doc, size_t len, const uint8_t sha[32],
                               uint8_t **out_json, size_t *out_len) {
    ws_seal_view v;
    VMENC_ENSURE(ws_seal_split(doc, len, &v) == VMENC_OK && v.has_seal, VMENC_E_AUTH);
    VMENC_GUARD(ws_seal_verify(ws->seal_key, ws->cfg->id, &v));
    VMENC_ENSURE(v.generation > ws->policy_gen, VMENC_E_AUTH);
    uint8_t *json = malloc(v.json_len ? v.json_len : 1);
    VMENC_ENSURE(json != NULL, VMENC_E_NOMEM);
    memcpy(json, v.json, v.json_len);
    ws->policy_gen = v.generation;
    memcpy(ws->policy_sha, sha, sizeof(ws->policy_sha));
    *out_json = json;
    *out_len = v.json_len;
    return VMENC_OK;
}

/* refresh_document: the first half of the compare-and-swap
 * (policy_commit.h). Runs under the policy's write lock. */
static vmenc_status refresh_document(void *ctx, uint8_t **out_json, size_t *out_len) {
    vmenc_workspace *ws = ctx;
    *out_json = NULL;
    *out_len = 0;
    int fd = -1;
    VMENC_GUARD(ws_lock_take(ws, ws->policy_lock_path, "policy change", &fd));
    uint8_t *doc = NULL;
    size_t len = 0;
    vmenc_status rv = ws_read_path(ws->policy_path, VMENC_POLICY_MAX_DOCUMENT + WS_SEAL_TRAILER_MAX, &doc, &len);
    if (rv == VMENC_OK) {
        uint8_t sha[32];
        crypto_hash_sha256(sha, doc, len);
        if (sodium_memcmp(sha, ws->policy_sha, sizeof(sha)) != 0)
            rv = take_newer(ws, doc, len, sha, out_json, out_len);
    }
    free(doc);
    if (rv != VMENC_OK) {
        ws_lock_drop(fd);
        return rv;
    }
    ws->policy_lock_fd = fd;
    return VMENC_OK;
}

static void release_document(void *ctx) {
    vmenc_workspace *ws = ctx;
    ws_lock_drop(ws->policy_lock_fd);
    ws->policy_lock_fd = -1;
}

vmenc_status ws_policy_attach(vmenc_workspace *ws) {
    VMENC_GUARD(policy_set_commit_hook(ws->policy, commit_document, ws));
    return policy_set_refresh_hook(ws->policy, refresh_document, release_document);
}

vmenc_status vmenc_workspace_save_policy(vmenc_workspace *ws) {
    VMENC_ENSURE_REF(ws);
    /* Every change was written when it was made (the commit hook); writing
     * a snapshot here could only race with a newer commit. */
    return VMENC_OK;
}

/* ---- re-seal ----------------------------------------------------------------- */

/* root_name copies the name of the policy's root object. */
static vmenc_status root_name(vmenc_policy *p, char *out, size_t cap) {
    VMENC_ENSURE(pthread_rwlock_rdlock(&p->lock) == 0, VMENC_E_INTERNAL);
    const model *m = p->m;
    vmenc_status rv = VMENC_E_INTERNAL;
    if (m->root < m->num_objects && strlen(m->objects[m->root].name) < cap) {
        snprintf(out, cap, "%s", m->objects[m->root].name);
        rv = VMENC_OK;
    }
    pthread_rwlock_unlock(&p->lock);
    return rv;
}

/* first_missing: the first privilege |who| lacks on |root|, or
 * VMENC_PRIV_NONE if it holds all of them. */
static vmenc_status first_missing(vmenc_policy *p, const char *who, const char *root, int *out) {
    *out = VMENC_PRIV_NONE;
    for (int i = 0; i < (int)vmenc_policy_privilege_count(); i++) {
        int has = 0;
        vmenc_status rv = vmenc_policy_has_privilege(p, who, root, (vmenc_policy_privilege)i, &has);
        if (rv == VMENC_E_NOT_FOUND) /* not a principal of this document */
            has = 0;
        else if (rv != VMENC_OK)
            return rv;
        if (!has) {
            *out = i;
            return VMENC_OK;
        }
    }
    return VMENC_OK;
}

static const char *seal_state(const ws_policy_found *f) {
    return !f->sealed ? "none" : f->seal_valid ? "valid" : "invalid";
}

static vmenc_status reseal(vmenc_workspace *ws, const char *who, vmenc_workspace_error *err,
                           vmenc_workspace_reseal_result *res) {
    const ws_policy_found *f = &ws->policy_found;
    char old_hex[65], new_hex[65];
    hex_of(f->sha256, sizeof(f->sha256), old_hex);
    char root[VMENC_POLICY_NAME_MAX + 1];
    int missing = VMENC_PRIV_NONE;
    char reason[VMENC_WORKSPACE_MESSAGE_MAX];
    vmenc_status rv = root_name(ws->policy, root, sizeof(root));
    if (rv == VMENC_OK)
        rv = first_missing(ws->policy, who, root, &missing);
    if (rv == VMENC_OK && missing != VMENC_PRIV_NONE) {
        snprintf(reason, sizeof(reason),
                 "denied: '%s' lacks %s on '%s' in the vouched document (sha256 %s); only a principal holding "
                 "every privilege on the root may re-seal it",
                 who, vmenc_policy_privilege_name(missing), root, old_hex);
        vmenc_audit_event ev = {.struct_size = sizeof(ev), .principal = who, .operation = "policy.reseal",
                                .target = ws->policy_path, .outcome = VMENC_AUDIT_DENIED,
                                .status = VMENC_E_DENIED, .reason = reason};
        vmenc_status as = vmenc_audit_emit(ws->audit, &ev);
        (void)as; /* the denial is what the caller must see */
        return ws_set_error(err, VMENC_E_DENIED, ws->policy_path, 0, "%s", reason);
    }
    uint8_t *json = NULL, *sealed = NULL;
    size_t json_len = 0, sealed_len = 0;
    uint64_t gen = f->generation + 1;
    if (rv == VMENC_OK)
        rv = vmenc_policy_save_json(ws->policy, &json, &json_len);
    if (rv == VMENC_OK)
        rv = ws_seal_build(ws->seal_key, ws->cfg->id, gen, json, json_len, &sealed, &sealed_len);
    vmenc_policy_buffer_free(json);
    /* Re-seal what was vouched for, and only that: under the policy lock,
     * and only if no other process changed the document since. */
    int lk = -1;
    if (rv == VMENC_OK)
        rv = ws_lock_take(ws, ws->policy_lock_path, "policy re-seal", &lk);
    uint8_t *cur = NULL;
    size_t cur_len = 0;
    if (rv == VMENC_OK)
        rv = ws_read_path(ws->policy_path, VMENC_POLICY_MAX_DOCUMENT + WS_SEAL_TRAILER_MAX, &cur, &cur_len);
    if (rv == VMENC_OK) {
        uint8_t sha[32];
        crypto_hash_sha256(sha, cur, cur_len);
        if (sodium_memcmp(sha, f->sha256, sizeof(sha)) != 0)
            rv = VMENC_E_CONFLICT;
    }
    free(cur);
    if (rv == VMENC_OK)
        rv = ws_write_path(ws->policy_path, sealed, sealed_len, ws->sync);
    ws_lock_drop(lk);
    uint8_t new_hash[32];
    if (rv == VMENC_OK) {
        crypto_hash_sha256(new_hash, sealed, sealed_len);
        hex_of(new_hash, sizeof(new_hash), new_hex);
        snprintf(reason, sizeof(reason), "re-sealed: old sha256 %s (seal %s), new sha256 %s, generation %llu",
                 old_hex, seal_state(f), new_hex, (unsigned long long)gen);
    } else {
        snprintf(reason, sizeof(reason), "re-seal of the document with sha256 %s failed: %s", old_hex,
                 vmenc_strerror(rv));
    }
    free(sealed);
    vmenc_status as = vmenc_workspace_audit_result(ws, who, "policy.reseal", ws->policy_path, NULL, NULL, rv,
                                                   reason);
    if (rv != VMENC_OK)
        return ws_set_error(err, rv, ws->policy_path, 0, "%s", reason);
    if (res != NULL) {
        uint32_t sz = res->struct_size;
        memset(res, 0, sizeof(*res));
        res->struct_size = sz;
        memcpy(res->old_sha256, old_hex, sizeof(old_hex));
        memcpy(res->new_sha256, new_hex, sizeof(new_hex));
        res->generation = gen;
        res->was_sealed = f->sealed;
        res->seal_was_valid = f->seal_valid;
    }
    if (as != VMENC_OK) /* written, but the record of it is missing: say so */
        return ws_set_error(err, as, ws->audit_path, 0, "the policy document was re-sealed but not audited: %s",
                            vmenc_strerror(as));
    return VMENC_OK;
}

vmenc_status vmenc_workspace_reseal_policy(const char *dir, const vmenc_workspace_open_options *opts,
                                           const char *who, vmenc_workspace_error *err,
                                           vmenc_workspace_reseal_result *out) {
    VMENC_ENSURE(dir != NULL && dir[0] != '\0', VMENC_E_INVALID_ARG);
    VMENC_ENSURE(who != NULL && who[0] != '\0', VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out == NULL || out->struct_size >= sizeof(*out), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(err == NULL || err->struct_size >= sizeof(*err), VMENC_E_ABI_VERSION);
    vmenc_workspace *ws = NULL;
    VMENC_GUARD(ws_open(dir, opts, WS_OPEN_VOUCH, err, &ws));
    vmenc_status rv = reseal(ws, who, err, out);
    vmenc_workspace_free(ws);
    return rv;
}
