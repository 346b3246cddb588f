/*
 * lib/workspace/create.c - vmenc_workspace_create: a new workspace
 * directory with its keystore, sealed policy document, configuration,
 * audit log and datastore, ready for vmenc_workspace_open. The audit chain
 * key exists in clear only inside wrap_audit_key, which also seals the
 * first policy document under the key derived from it (policy_seal.c).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fs.h"
#include "keys/keys_internal.h"
#include "vmenc/kms_file.h"
#include "workspace/ws_internal.h"

#define KMS_TIMEOUT_MS 10000u

static void make_uuid(char out[37]) {
    uint8_t b[16];
    if (vmenc_random_bytes(b, sizeof(b)) != VMENC_OK)
        memset(b, 0, sizeof(b));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
             b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static bool dir_empty(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL)
        return false;
    struct dirent *e;
    bool empty = true;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            empty = false;
    closedir(d);
    return empty;
}

static vmenc_status build_policy(const vmenc_workspace_create_options *o, const char *host, const char *folder,
                                 const char *alias, uint8_t **out, size_t *out_len) {
    vmenc_policy *p = NULL;
    VMENC_GUARD(vmenc_policy_new("root", &p));
    vmenc_status rv = vmenc_policy_add_object(p, "dc", VMENC_OBJ_DATACENTER, "root");
    if (rv == VMENC_OK)
        rv = vmenc_policy_add_object(p, host, VMENC_OBJ_HOST, "dc");
    if (rv == VMENC_OK)
        rv = vmenc_policy_add_object(p, folder, VMENC_OBJ_FOLDER, "dc");
    if (rv == VMENC_OK)
        rv = vmenc_policy_add_user(p, o->admin);
    if (rv == VMENC_OK)
        rv = vmenc_policy_grant(p, o->admin, "root", VMENC_ROLE_ADMIN, 1);
    if (rv == VMENC_OK && (o->flags & VMENC_WORKSPACE_CREATE_DEFAULT_POLICY)) {
        vmenc_storage_policy_spec sp = {
            .struct_size = sizeof(sp),
            .name = "VM Encryption Policy",
            .encrypt = 1,
            .file_classes = VMENC_FILE_VM_HOME | VMENC_FILE_DISKS,
            .key_provider = alias,
            .migration = VMENC_MIGRATION_REQUIRED,
        };
        rv = vmenc_policy_set_storage_policy(p, &sp);
        vmenc_storage_policy_spec plain = {.struct_size = sizeof(plain), .name = "Datastore Default",
                                           .migration = VMENC_MIGRATION_OPPORTUNISTIC};
        if (rv == VMENC_OK)
            rv = vmenc_policy_set_storage_policy(p, &plain);
    }
    if (rv == VMENC_OK)
        rv = vmenc_policy_save_json(p, out, out_len);
    vmenc_policy_free(p);
    return rv;
}

/* wrap_audit_key makes the audit chain key and returns only its wrapped
 * text and the policy document |doc| sealed under the key derived from it
 * (generation 1): the key itself never leaves this function. */
static vmenc_status wrap_audit_key(const char *keystore, const vmenc_workspace_create_options *o,
                                   const char *const *kopts, const char *alias, const char *ws_id, const uint8_t *doc,
                                   size_t doc_len, char **out_text, uint8_t **out_sealed, size_t *out_sealed_len) {
    vmenc_kms_endpoint_config ec = {
        .struct_size = sizeof(ec),
        .type = "file",
        .address = keystore,
        .options = kopts,
        .secret = o->passphrase,
        .secret_len = o->passphrase_len,
    };
    vmenc_keymgr *mgr = NULL;
    vmenc_dek *key = NULL;
    vmenc_wrapped_key *wk = NULL;
    char kek_id[VMENC_KMS_KEY_ID_CAP];
    vmenc_wrap_context ctx = {.struct_size = sizeof(ctx), .vm_uuid = ws_id, .purpose = WS_AUDIT_PURPOSE};
    vmenc_status rv = vmenc_keymgr_new(NULL, &mgr);
    if (rv == VMENC_OK)
        rv = vmenc_keymgr_add_cluster(mgr, alias, &ec, 1, NULL);
    if (rv == VMENC_OK)
        rv = vmenc_keymgr_create_kek(mgr, alias, "vmenc-audit-chain", KMS_TIMEOUT_MS, kek_id, sizeof(kek_id));
    if (rv == VMENC_OK)
        rv = vmenc_dek_generate(&key);
    if (rv == VMENC_OK)
        rv = vmenc_keymgr_wrap_dek(mgr, alias, kek_id, key, &ctx, KMS_TIMEOUT_MS, &wk);
    char *text = NULL;
    vmenc_secret *chain = NULL, *seal = NULL;
    if (rv == VMENC_OK)
        rv = vmenc_secret_from(vmenc_dek_bytes_internal(key), VMENC_DEK_BYTES, &chain);
    if (rv == VMENC_OK)
        rv = ws_seal_derive_key(chain, &seal);
    if (rv == VMENC_OK)
        rv = ws_seal_build(seal, ws_id, 1, doc, doc_len, out_sealed, out_sealed_len);
    if (rv == VMENC_OK)
        rv = vmenc_wrapped_key_to_text(wk, &text);
    if (rv == VMENC_OK) {
        *out_text = strdup(text);
        rv = *out_text ? VMENC_OK : VMENC_E_NOMEM;
    }
    if (rv != VMENC_OK && *out_sealed != NULL) {
        free(*out_sealed);
        *out_sealed = NULL;
    }
    vmenc_secret_free(seal);
    vmenc_secret_free(chain);
    vmenc_buffer_free(text);
    vmenc_wrapped_key_free(wk);
    vmenc_dek_free(key);
    vmenc_keymgr_free(mgr);
    return rv;
}

static bool name_ok(const char *s) { return s != NULL && s[0] != '\0' && strlen(s) <= 255 && ws_value_ok(s); }

static vmenc_status create_in(const char *dir, const vmenc_workspace_create_options *o, vmenc_workspace_error *err) {
    const char *host = o->host_id ? o->host_id : "host1";
    const char *alias = o->key_provider ? o->key_provider : "native";
    const char *folder = o->folder ? o->folder : WS_DEFAULT_FOLDER;
    char ws_id[37];
    make_uuid(ws_id);
    char path[VMENC_WORKSPACE_PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, WS_KEYSTORE_NAME);

    /* The keystore's KDF cost goes into its options so that every later
     * rewrite of the file keeps it. */
    char ops_opt[32], mem_opt[48];
    const char *kopts[3] = {NULL, NULL, NULL};
    size_t nk = 0;
    if (o->kdf_opslimit) {
        snprintf(ops_opt, sizeof(ops_opt), "kdf_ops=%u", o->kdf_opslimit);
        kopts[nk++] = ops_opt;
    }
    if (o->kdf_memlimit_kib) {
        snprintf(mem_opt, sizeof(mem_opt), "kdf_mem_kib=%u", o->kdf_memlimit_kib);
        kopts[nk++] = mem_opt;
    }
    vmenc_kms_file_options fo = {.struct_size = sizeof(fo), .kdf_opslimit = o->kdf_opslimit,
                                 .kdf_memlimit_kib = o->kdf_memlimit_kib};
    vmenc_status rv = vmenc_kms_file_create(path, o->passphrase, o->passphrase_len, &fo);
    if (rv != VMENC_OK)
        return ws_set_error(err, rv, path, 0, "cannot create the keystore: %s", vmenc_strerror(rv));

    ws_config cfg = {0};
    ws_kms k = {0};
    char *ep[1] = {(char *)WS_KEYSTORE_NAME};
    k.alias = (char *)alias;
    k.type = (char *)"file";
    k.endpoints = ep;
    k.num_endpoints = 1;
    k.options = (char **)kopts;
    k.num_options = nk;
    cfg.id = ws_id;
    cfg.host_id = (char *)host;
    cfg.datastore = (char *)WS_DEFAULT_DATASTORE;
    cfg.folder = (char *)folder;
    cfg.policy_path = (char *)WS_DEFAULT_POLICY;
    cfg.audit_log = (char *)WS_DEFAULT_AUDIT_LOG;
    cfg.audit_provider = (char *)alias;
    cfg.kms = &k;
    cfg.num_kms = 1;
    uint8_t *doc = NULL, *sealed = NULL;
    size_t doc_len = 0, sealed_len = 0;
    rv = build_policy(o, host, folder, alias, &doc, &doc_len);
    if (rv != VMENC_OK)
        return ws_set_error(err, rv, "", 0, "cannot build the policy: %s", vmenc_strerror(rv));
    rv = wrap_audit_key(path, o, kopts, alias, ws_id, doc, doc_len, &cfg.audit_key, &sealed, &sealed_len);
    vmenc_policy_buffer_free(doc);
    if (rv != VMENC_OK)
        return ws_set_error(err, rv, path, 0, "cannot make the audit chain key: %s", vmenc_strerror(rv));

    char *text = NULL;
    size_t text_len = 0;
    int dfd = -1;
    rv = ws_config_serialize(&cfg, &text, &text_len);
    dfd = rv == VMENC_OK ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (rv == VMENC_OK && dfd < 0)
        rv = vmenc_status_from_errno(errno);
    if (rv == VMENC_OK)
        rv = vmenc_fs_atomic_write(dfd, WS_DEFAULT_POLICY, sealed, sealed_len, true);
    if (rv == VMENC_OK)
        rv = vmenc_fs_atomic_write(dfd, VMENC_WORKSPACE_CONFIG_NAME, (const uint8_t *)text, text_len, true);
    if (rv == VMENC_OK && mkdirat(dfd, WS_DEFAULT_DATASTORE, 0700) != 0)
        rv = vmenc_status_from_errno(errno);
    if (rv != VMENC_OK && (err == NULL || err->status == VMENC_OK))
        ws_set_error(err, rv, dir, 0, "cannot write the workspace: %s", vmenc_strerror(rv));
    if (dfd >= 0)
        close(dfd);
    free(sealed);
    free(text);
    free(cfg.audit_key);
    if (rv != VMENC_OK)
        return rv;

    /* The first audit record: the workspace exists. */
    vmenc_workspace_open_options oo = {.struct_size = sizeof(oo), .passphrase = o->passphrase,
                                       .passphrase_len = o->passphrase_len};
    vmenc_workspace *ws = NULL;
    rv = ws_open(dir, &oo, WS_OPEN_CREATE, err, &ws);
    if (rv == VMENC_OK)
        rv = vmenc_workspace_audit_result(ws, o->admin, "workspace.create", ws_id, alias, NULL, VMENC_OK, NULL);
    vmenc_workspace_free(ws);
    return rv;
}

static void remove_created(const char *dir) {
    static const char *const names[] = {WS_KEYSTORE_NAME, WS_KEYSTORE_NAME ".lock", WS_DEFAULT_POLICY,
                                        VMENC_WORKSPACE_CONFIG_NAME, WS_DEFAULT_AUDIT_LOG,
                                        WS_DEFAULT_AUDIT_LOG WS_AUDIT_CHECKPOINT_SUFFIX};
    char p[VMENC_WORKSPACE_PATH_MAX];
    for (size_t i = 0; i < VMENC_ARRAY_LEN(names); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        (void)unlink(p);
    }
    snprintf(p, sizeof(p), "%s/%s", dir, WS_DEFAULT_DATASTORE);
    (void)rmdir(p);
    (void)rmdir(dir);
}

vmenc_status vmenc_workspace_create(const char *dir, const vmenc_workspace_create_options *o,
                                    vmenc_workspace_error *err) {
    VMENC_ENSURE(dir != NULL && dir[0] != '\0' && o != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(o->struct_size >= sizeof(*o), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(err == NULL || err->struct_size >= sizeof(*err), VMENC_E_ABI_VERSION);
    if (err != NULL) {
        err->status = VMENC_OK;
        err->file[0] = err->message[0] = '\0';
        err->line = 0;
    }
    VMENC_ENSURE(strlen(dir) < VMENC_WORKSPACE_PATH_MAX - 64, VMENC_E_BAD_PATH);
    if (o->passphrase == NULL || o->passphrase_len == 0 || o->passphrase_len > 1024)
        return ws_set_error(err, VMENC_E_INVALID_ARG, "", 0, "a keystore passphrase of 1..1024 bytes is required");
    if (!name_ok(o->admin))
        return ws_set_error(err, VMENC_E_INVALID_ARG, "", 0, "an administrator user name is required");
    if ((o->host_id && !name_ok(o->host_id)) || (o->folder && !name_ok(o->folder)) ||
        (o->key_provider && (!ws_value_ok(o->key_provider) || strlen(o->key_provider) > VMENC_PROVIDER_ALIAS_MAX ||
                             strchr(o->key_provider, ' ') || o->key_provider[0] == '\0')) ||
        (o->flags & ~VMENC_WORKSPACE_CREATE_DEFAULT_POLICY) != 0)
        return ws_set_error(err, VMENC_E_INVALID_ARG, "", 0, "bad host id, folder, key provider alias or flags");
    VMENC_GUARD(vmenc_init());
    bool made = false;
    if (mkdir(dir, 0700) == 0) {
        made = true;
    } else if (errno != EEXIST) {
        return ws_set_error(err, vmenc_status_from_errno(errno), dir, 0, "cannot create the directory: %s",
                            strerror(errno));
    } else if (!dir_empty(dir)) {
        return ws_set_error(err, VMENC_E_EXISTS, dir, 0, "the directory exists and is not empty");
    }
    vmenc_status rv = create_in(dir, o, err);
    if (rv != VMENC_OK)
        remove_created(dir);
    if (rv != VMENC_OK && !made)
        (void)mkdir(dir, 0700); /* it existed (empty) before: leave it there */
    return rv;
}
