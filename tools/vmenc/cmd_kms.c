/*
 * tools/vmenc/cmd_kms.c - `vmenc init` and `vmenc kms ...`.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "plan.h"

#define KMS_TIMEOUT_MS 10000u

const char *const cmd_init_help =
    "Creates DIR (or --workspace) with vmenc.conf, the embedded file keystore (keystore.vks),\n"
    "policy.json (ADMIN holds the Admin role on the root), audit.log and datastore/.\n"
    "The keystore passphrase comes from --passphrase-file, $VMENC_PASSPHRASE or a prompt;\n"
    "it is never stored.\n\n"
    "Options:\n"
    "  --admin NAME           the first administrator (required)\n"
    "  --host ID              the host's inventory name (default host1)\n"
    "  --key-provider ALIAS   alias of the embedded file provider (default native)\n"
    "  --folder NAME          inventory folder for new VMs (default vms)\n"
    "  --no-default-policies  do not add 'VM Encryption Policy' and 'Datastore Default'\n"
    "  --kdf-memory KIB, --kdf-passes N   Argon2id cost of the keystore (weaker: tests only)\n";

static bool parse_u32(const char *s, uint32_t *out) {
    uint64_t v;
    if (!parse_size(s, &v) || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

int cmd_init(cli *c, args *a) {
    const char *admin = NULL, *host = NULL, *alias = NULL, *folder = NULL, *mem = NULL, *passes = NULL;
    (void)arg_value(c, a, "--admin", &admin);
    (void)arg_value(c, a, "--host", &host);
    (void)arg_value(c, a, "--key-provider", &alias);
    (void)arg_value(c, a, "--folder", &folder);
    (void)arg_value(c, a, "--kdf-memory", &mem);
    (void)arg_value(c, a, "--kdf-passes", &passes);
    bool no_policies = arg_flag(a, "--no-default-policies");
    const char *dir = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (dir == NULL)
        dir = c->workspace;
    if (dir == NULL)
        return cli_usage(c, "init needs a directory (or --workspace)");
    if (admin == NULL)
        return cli_usage(c, "init needs --admin NAME");
    vmenc_workspace_create_options o = {.struct_size = sizeof(o), .admin = admin, .host_id = host,
                                        .key_provider = alias, .folder = folder,
                                        .flags = no_policies ? 0 : VMENC_WORKSPACE_CREATE_DEFAULT_POLICY};
    if ((mem && !parse_u32(mem, &o.kdf_memlimit_kib)) || (passes && !parse_u32(passes, &o.kdf_opslimit)))
        return cli_usage(c, "--kdf-memory and --kdf-passes take numbers");
    char pass[1024];
    size_t pass_len = 0;
    if (!cli_passphrase(c, "New keystore passphrase: ", c->passphrase_file, "VMENC_PASSPHRASE", true, pass,
                        sizeof(pass), &pass_len))
        return EXIT_USAGE;
    o.passphrase = (const uint8_t *)pass;
    o.passphrase_len = pass_len;
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_status st = vmenc_workspace_create(dir, &o, &err);
    vmenc_memzero(pass, sizeof(pass));
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot create workspace %s: %s%s%s", dir, err.file, err.file[0] ? ": " : "",
                        err.message);
    out_t *r = out_begin(c);
    out_bool(r, "ok", true);
    out_str(r, "workspace", dir);
    out_str(r, "admin", admin);
    out_str(r, "host", host ? host : "host1");
    out_str(r, "key_provider", alias ? alias : "native");
    out_end(r);
    return EXIT_OK;
}

/* ---- kms ------------------------------------------------------------------------- */

static int authorize(cli *c, vmenc_policy_op op, const char *operation, const char *target) {
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = op};
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    vmenc_status st = vmenc_workspace_authorize(c->ws, cli_principal(c), &rq, operation, target, &d);
    if (st == VMENC_OK)
        return EXIT_OK;
    if (st == VMENC_E_DENIED || st == VMENC_E_HOST_MODE)
        return cli_fail(c, st, "%s", d.message);
    return cli_fail(c, st, "%s", operation);
}

static int kms_list(cli *c, args *a) {
    if (!arg_done(c, a))
        return EXIT_USAGE;
    int rc = cli_open(c);
    if (rc == EXIT_OK)
        rc = authorize(c, VMENC_OP_READ_KEY_SERVERS, "kms.list", NULL);
    if (rc != EXIT_OK)
        return rc;
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_arr(o, "providers");
    for (size_t i = 0; i < vmenc_workspace_num_kms(c->ws); i++) {
        vmenc_workspace_kms_info info = {.struct_size = sizeof(info)};
        if (vmenc_workspace_get_kms_info(c->ws, i, &info) != VMENC_OK)
            continue;
        out_obj(o, NULL);
        out_str(o, "alias", info.alias);
        out_str(o, "type", info.type);
        out_bool(o, "embedded", info.embedded);
        out_bool(o, "audit_key", info.audit_key);
        out_u64(o, "endpoints_loaded", info.num_loaded);
        out_str(o, "load_status", vmenc_status_name(info.load_status));
        out_str(o, "load_detail", info.load_detail); /* why it could not be loaded, naming the file */
        if (info.load_status != VMENC_OK)
            cli_info(c, "warning: key provider '%s' is not loaded: %s%s(VMs whose keys it holds open locked; "
                     "'vmenc kms remove %s' or fix it)", info.alias, info.load_detail, info.load_detail[0] ? " " : "",
                     info.alias);
        out_arr(o, "endpoints");
        for (size_t e = 0; e < info.num_endpoints; e++) {
            char addr[1024];
            if (vmenc_workspace_kms_endpoint(c->ws, i, e, addr, sizeof(addr)) == VMENC_OK)
                out_str(o, NULL, addr);
        }
        out_close(o);
        out_close(o);
    }
    out_end(o);
    vmenc_status as = vmenc_workspace_audit_result(c->ws, cli_principal(c), "kms.list", NULL, NULL, NULL, VMENC_OK, NULL);
    return as == VMENC_OK ? EXIT_OK : cli_fail(c, as, "audit");
}

static int kms_add(cli *c, args *a) {
    const char *type = NULL, *secret = NULL, *eps[VMENC_WORKSPACE_MAX_ENDPOINTS], *opts[VMENC_WORKSPACE_MAX_OPTIONS + 1];
    (void)arg_value(c, a, "--type", &type);
    (void)arg_value(c, a, "--secret-file", &secret);
    size_t ne = arg_values(c, a, "--endpoint", eps, VMENC_WORKSPACE_MAX_ENDPOINTS);
    size_t no = arg_values(c, a, "--option", opts, VMENC_WORKSPACE_MAX_OPTIONS);
    opts[no] = NULL;
    bool create = arg_flag(a, "--create");
    const char *alias = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (alias == NULL || type == NULL || ne == 0)
        return cli_usage(c, "kms add needs ALIAS, --type and at least one --endpoint");
    if (secret != NULL && secret[0] != '/')
        return cli_usage(c, "--secret-file '%s' is a relative path: it is read again at every open, from whatever "
                         "directory vmenc runs in, so give it absolutely (e.g. --secret-file \"$PWD/%s\")", secret,
                         secret);
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    vmenc_workspace_kms_spec spec = {.struct_size = sizeof(spec), .alias = alias, .type = type, .endpoints = eps,
                                     .num_endpoints = ne, .options = opts, .secret_file = secret,
                                     .flags = create ? VMENC_WORKSPACE_KMS_CREATE : 0};
    vmenc_status st = vmenc_workspace_add_kms(c->ws, cli_principal(c), &spec);
    if (st != VMENC_OK) {
        char why[1200];
        if (secret != NULL && path_problem(secret, why, sizeof(why)) != NULL)
            return cli_fail(c, st, "cannot add key provider '%s': --secret-file %s", alias, why);
        for (size_t i = 0; strcmp(type, "kmip") != 0 && i < ne; i++)
            if (path_problem(eps[i], why, sizeof(why)) != NULL)
                return cli_fail(c, st, "cannot add key provider '%s': --endpoint %s", alias, why);
        return cli_fail(c, st, "cannot add key provider '%s'", alias);
    }
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "alias", alias);
    out_str(o, "type", type);
    out_u64(o, "endpoints", ne);
    out_end(o);
    return EXIT_OK;
}

static int kms_remove(cli *c, args *a) {
    const char *alias = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (alias == NULL)
        return cli_usage(c, "kms remove needs ALIAS");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    char known[1024];
    if (!kms_known(c, alias, known, sizeof(known)))
        return cli_fail(c, VMENC_E_NO_SUCH_PROVIDER, "cannot remove key provider '%s': no such provider (configured: %s)",
                        alias, known[0] ? known : "none");
    if (!would_be_denied(c, VMENC_OP_MANAGE_KEY_SERVERS, NULL, false) &&
        strcmp(alias, vmenc_workspace_audit_key_provider(c->ws) ? vmenc_workspace_audit_key_provider(c->ws) : "") != 0) {
        char what[512];
        snprintf(what, sizeof(what), "kms remove: key provider '%s' will be removed from vmenc.conf; its keys stay in "
                 "it, but VMs whose keys it holds will open locked until it is added again", alias);
        rc = cli_confirm(c, what);
        if (rc != EXIT_OK)
            return rc;
    }
    vmenc_status st = vmenc_workspace_remove_kms(c->ws, cli_principal(c), alias);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot remove key provider '%s'%s", alias,
                        st == VMENC_E_BAD_STATE ? " (it holds the audit chain key's KEK)" : "");
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "alias", alias);
    out_end(o);
    return EXIT_OK;
}

static int kms_create_key(cli *c, args *a) {
    const char *name = NULL;
    (void)arg_value(c, a, "--name", &name);
    const char *alias = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (alias == NULL)
        return cli_usage(c, "kms create-key needs ALIAS");
    int rc = cli_open(c);
    if (rc == EXIT_OK)
        rc = authorize(c, VMENC_OP_MANAGE_KEYS, "kms.create_key", alias);
    if (rc != EXIT_OK)
        return rc;
    char id[VMENC_KMS_KEY_ID_CAP];
    vmenc_status st = vmenc_keymgr_create_kek(vmenc_workspace_keymgr(c->ws), alias, name, KMS_TIMEOUT_MS, id, sizeof(id));
    vmenc_status as = vmenc_workspace_audit_result(c->ws, cli_principal(c), "kms.create_key", alias, alias,
                                                   st == VMENC_OK ? id : NULL, st, NULL);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot create a key in '%s'", alias);
    if (as != VMENC_OK)
        return cli_fail(c, as, "audit");
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "alias", alias);
    out_str(o, "key_id", id);
    out_end(o);
    return EXIT_OK;
}

static int kms_health(cli *c, args *a) {
    const char *only = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    int rc = cli_open(c);
    if (rc == EXIT_OK)
        rc = authorize(c, VMENC_OP_READ_KEY_SERVERS, "kms.health", only);
    if (rc != EXIT_OK)
        return rc;
    out_t *o = out_begin(c);
    out_arr(o, "providers");
    bool all_ok = true, found = only == NULL;
    for (size_t i = 0; i < vmenc_workspace_num_kms(c->ws); i++) {
        vmenc_workspace_kms_info info = {.struct_size = sizeof(info)};
        if (vmenc_workspace_get_kms_info(c->ws, i, &info) != VMENC_OK || (only && strcmp(only, info.alias) != 0))
            continue;
        found = true;
        size_t healthy = 0;
        vmenc_status st = vmenc_keymgr_check_health(vmenc_workspace_keymgr(c->ws), info.alias, 5000, &healthy);
        all_ok = all_ok && st == VMENC_OK;
        out_obj(o, NULL);
        out_str(o, "alias", info.alias);
        out_bool(o, "healthy", st == VMENC_OK);
        out_u64(o, "endpoints", info.num_endpoints);
        out_u64(o, "endpoints_healthy", healthy);
        out_str(o, "status", vmenc_status_name(st));
        out_close(o);
    }
    out_close(o);
    out_bool(o, "ok", all_ok && found);
    out_end(o);
    if (!found)
        return cli_fail(c, VMENC_E_NO_SUCH_PROVIDER, "key provider '%s'", only);
    vmenc_status as = vmenc_workspace_audit_result(c->ws, cli_principal(c), "kms.health", only, only, NULL,
                                                   all_ok ? VMENC_OK : VMENC_E_KMS_UNAVAILABLE, NULL);
    (void)as;
    return all_ok ? EXIT_OK : EXIT_UNAVAILABLE;
}

static int kms_backup(cli *c, args *a) {
    char pass[1024];
    size_t pl = 0;
    const char *file = NULL;
    (void)arg_value(c, a, "--backup-passphrase-file", &file);
    const char *alias = arg_positional(a), *path = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (alias == NULL || path == NULL)
        return cli_usage(c, "kms backup needs ALIAS and FILE");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    if (!cli_passphrase(c, "Backup passphrase: ", file, "VMENC_BACKUP_PASSPHRASE", true, pass, sizeof(pass), &pl))
        return EXIT_USAGE;
    vmenc_status st = vmenc_workspace_kms_backup(c->ws, cli_principal(c), alias, path, (const uint8_t *)pass, pl);
    vmenc_memzero(pass, sizeof(pass));
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot back up '%s' to %s", alias, path);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "alias", alias);
    out_str(o, "backup", path);
    out_end(o);
    return EXIT_OK;
}

static int kms_restore(cli *c, args *a) {
    char pass[1024];
    size_t pl = 0;
    bool replace = arg_flag(a, "--replace");
    const char *file = NULL;
    (void)arg_value(c, a, "--backup-passphrase-file", &file);
    const char *alias = arg_positional(a), *path = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (alias == NULL || path == NULL)
        return cli_usage(c, "kms restore needs ALIAS and FILE");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    if (replace && !would_be_denied(c, VMENC_OP_MANAGE_KEYS, NULL, false)) {
        char what[1200];
        snprintf(what, sizeof(what), "kms restore --replace: the keystore of '%s' will hold exactly the keys of %s; "
                 "keys created since that backup are deleted (a key a VM still uses is kept: refused)", alias, path);
        rc = cli_confirm(c, what);
        if (rc != EXIT_OK)
            return rc;
    }
    if (!cli_passphrase(c, "Backup passphrase: ", file, "VMENC_BACKUP_PASSPHRASE", false, pass, sizeof(pass), &pl))
        return EXIT_USAGE;
    size_t added = 0;
    vmenc_status st = vmenc_workspace_kms_restore(c->ws, cli_principal(c), alias, path, (const uint8_t *)pass, pl,
                                                  replace ? VMENC_KMS_FILE_RESTORE_REPLACE : VMENC_KMS_FILE_RESTORE_MERGE,
                                                  &added);
    vmenc_memzero(pass, sizeof(pass));
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot restore %s into '%s'", path, alias);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "alias", alias);
    out_str(o, "mode", replace ? "replace" : "merge");
    out_u64(o, "keys_added", added);
    out_end(o);
    return EXIT_OK;
}

const verb_def kms_verbs[] = {
    {"list", kms_list, "", "list the key providers and their endpoints", "Needs Cryptographer.ReadKeyServersInfo.\n"},
    {"add", kms_add, "ALIAS --type file|kmip|pkcs11 --endpoint ADDR... [options]", "add a key provider (cluster)",
     "Options:\n"
     "  --endpoint ADDR     file: keystore path; kmip: host:port; pkcs11: module path (repeat for replicas)\n"
     "  --option KEY=VALUE  a provider option (kmip: ca=, cert=, key=, server_name=; pkcs11: token_label=, ...)\n"
     "  --secret-file FILE  passphrase / PIN / client-key passphrase, read at every open\n"
     "  --create            file: create the keystore (with the workspace passphrase unless --secret-file)\n"
     "Needs Cryptographer.ManageKeyServers. Rewrites vmenc.conf.\n"},
    {"remove", kms_remove, "ALIAS [--yes]", "remove a key provider (its keys are kept)",
     "Asks for YES on a terminal; from a script pass --yes (refused on a pipe without it).\n"
     "Needs Cryptographer.ManageKeyServers.\n"},
    {"create-key", kms_create_key, "ALIAS [--name NAME]", "create a KEK in a key provider",
     "Prints the new key ID. Needs Cryptographer.ManageKeys.\n"},
    {"health", kms_health, "[ALIAS]", "probe every endpoint of every (or one) key provider",
     "Exit 5 if a provider has no healthy endpoint.\n"},
    {"backup", kms_backup, "ALIAS FILE [--backup-passphrase-file F]", "export a file keystore, encrypted",
     "The backup passphrase comes from --backup-passphrase-file, $VMENC_BACKUP_PASSPHRASE or a prompt.\n"
     "Never overwrites FILE. Needs Cryptographer.ManageKeys.\n"},
    {"restore", kms_restore, "ALIAS FILE [--replace [--yes]] [--backup-passphrase-file F]", "restore keys from a backup",
     "Default: merge (add missing keys). --replace makes the keystore the backup's content\n"
     "(refused if a live key would be lost); it asks for YES on a terminal, and from a script\n"
     "needs --yes (refused on a pipe without it). Needs Cryptographer.ManageKeys.\n"},
    {NULL, NULL, NULL, NULL, NULL},
};
