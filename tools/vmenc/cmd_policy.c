/*
 * tools/vmenc/cmd_policy.c - `vmenc policy ...` and `vmenc audit ...`.
 *
 * Policy edits go through the library's authorized edits
 * (vmenc_workspace_policy_edit: the edit rule of vmenc/policy.h, decided
 * and audited there, so every front end gets the same answer); the policy
 * and audit views need System.Read on the root (vmenc_workspace_policy_show,
 * vmenc_workspace_audit_read). The library makes every change durable.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <time.h>

#include "cli.h"
#include "plan.h"

static const struct { const char *name; vmenc_policy_op op; } k_ops[] = {
    {"encrypt_vm", VMENC_OP_ENCRYPT_VM}, {"create_vm", VMENC_OP_CREATE_VM}, {"decrypt_vm", VMENC_OP_DECRYPT_VM},
    {"clone_vm", VMENC_OP_CLONE_VM}, {"add_disk", VMENC_OP_ADD_DISK}, {"rekey_shallow", VMENC_OP_REKEY_SHALLOW},
    {"rekey_deep", VMENC_OP_REKEY_DEEP}, {"migrate_vm", VMENC_OP_MIGRATE_VM}, {"register_vm", VMENC_OP_REGISTER_VM},
    {"register_host", VMENC_OP_REGISTER_HOST}, {"enable_host_encryption", VMENC_OP_ENABLE_HOST_ENCRYPTION},
    {"console", VMENC_OP_CONSOLE}, {"export_vm", VMENC_OP_EXPORT_VM}, {"manage_keys", VMENC_OP_MANAGE_KEYS},
    {"manage_key_servers", VMENC_OP_MANAGE_KEY_SERVERS},
    {"manage_encryption_policies", VMENC_OP_MANAGE_ENCRYPTION_POLICIES},
    {"read_key_servers", VMENC_OP_READ_KEY_SERVERS}, {"power_on", VMENC_OP_POWER_ON},
    {"power_off", VMENC_OP_POWER_OFF}, {"edit_settings", VMENC_OP_EDIT_SETTINGS}, {"snapshot", VMENC_OP_SNAPSHOT},
    {"view", VMENC_OP_VIEW},
};

/* run_edit applies |e| as the acting user through the library (authorized
 * and audited there), and prints |label| (the verb's
 * operation name) and |target|. */
static int run_edit(cli *c, const vmenc_policy_edit *e, const char *label, const char *target) {
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    vmenc_status st = vmenc_workspace_policy_edit(c->ws, cli_principal(c), e, &d);
    if (st == VMENC_E_NOT_FOUND && (e->op == VMENC_EDIT_GRANT || e->op == VMENC_EDIT_REVOKE)) {
        /* "object not found": say which name is unknown (the failure was
         * audited by the library already). */
        char sug[VMENC_POLICY_NAME_MAX + 1], hint[VMENC_POLICY_NAME_MAX + 64] = "";
        if (!policy_has_name(c, "users", e->name) && !policy_has_name(c, "groups", e->name)) {
            if (policy_suggest(c, "users", e->name, sug, sizeof(sug)) ||
                policy_suggest(c, "groups", e->name, sug, sizeof(sug)))
                snprintf(hint, sizeof(hint), ": did you mean '%s'?", sug);
            return cli_fail(c, st, "%s: no user or group '%s'%s (add a user with 'vmenc policy user %s')", label,
                            e->name, hint, e->name);
        }
        if (e->object != NULL && !policy_has_name(c, "inventory", e->object)) {
            if (policy_suggest(c, "inventory", e->object, sug, sizeof(sug)))
                snprintf(hint, sizeof(hint), ": did you mean '%s'?", sug);
            return cli_fail(c, st, "%s: no inventory object '%s' (--on)%s", label, e->object, hint);
        }
        if (e->op == VMENC_EDIT_GRANT && e->role != NULL) {
            static const char *const predefined[] = {VMENC_ROLE_ADMIN, VMENC_ROLE_NO_CRYPTO_ADMIN,
                                                     VMENC_ROLE_READ_ONLY, VMENC_ROLE_NO_ACCESS};
            bool known = policy_has_name(c, "roles", e->role);
            const char *near = NULL;
            for (size_t i = 0; i < 4; i++) {
                known = known || strcmp(predefined[i], e->role) == 0;
                if (strcasecmp(predefined[i], e->role) == 0)
                    near = predefined[i];
            }
            if (near == NULL)
                near = policy_suggest(c, "roles", e->role, sug, sizeof(sug));
            if (!known)
                return cli_fail(c, st, "%s: no role '%s'%s%s%s ('vmenc policy roles' lists them)", label, e->role,
                                near ? ": did you mean '" : "", near ? near : "", near ? "'?" : "");
        }
        if (e->op == VMENC_EDIT_REVOKE)
            return cli_fail(c, st, "%s: '%s' holds no permission of its own on '%s'", label, e->name,
                            e->object ? e->object : "root");
    }
    if (st != VMENC_OK)
        return cli_fail(c, st, "%s", d.message[0] ? d.message : label);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "operation", label);
    out_str(o, "target", target);
    out_end(o);
    return EXIT_OK;
}

static int policy_show(cli *c, args *a) {
    if (!arg_done(c, a))
        return EXIT_USAGE;
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    uint8_t *doc = NULL;
    size_t len = 0;
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    vmenc_status st = vmenc_workspace_policy_show(c->ws, cli_principal(c), &doc, &len, &d);
    if (st != VMENC_OK)
        return cli_fail(c, st, "%s", d.message[0] ? d.message : "cannot serialise the policy");
    if (c->json) {
        out_t *o = out_begin(c);
        out_bool(o, "ok", true);
        out_raw(o, "policy", (const char *)doc);
        out_end(o);
    } else {
        fwrite(doc, 1, len, stdout);
        fputc('\n', stdout);
    }
    vmenc_policy_buffer_free(doc);
    return EXIT_OK;
}

static int policy_check(cli *c, args *a) {
    const char *op = NULL, *on = NULL, *host = NULL, *folder = NULL, *pool = NULL, *ds = NULL;
    (void)arg_value(c, a, "--op", &op);
    (void)arg_value(c, a, "--on", &on);
    (void)arg_value(c, a, "--host", &host);
    (void)arg_value(c, a, "--folder", &folder);
    (void)arg_value(c, a, "--pool", &pool);
    (void)arg_value(c, a, "--datastore", &ds);
    uint32_t flags = (arg_flag(a, "--encrypted") ? VMENC_REQ_VM_ENCRYPTED : 0) |
                     (arg_flag(a, "--target-encrypted") ? VMENC_REQ_TARGET_ENCRYPTED : 0) |
                     (arg_flag(a, "--powered-on") ? VMENC_REQ_POWERED_ON : 0);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    vmenc_policy_op o = 0;
    for (size_t i = 0; op && i < sizeof(k_ops) / sizeof(k_ops[0]); i++)
        if (strcmp(op, k_ops[i].name) == 0)
            o = k_ops[i].op;
    if (o == 0)
        return cli_usage(c, "policy check needs --op OP (encrypt_vm, decrypt_vm, console, export_vm, power_on, ...)");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = o, .vm = on, .folder = folder ? folder : on,
                               .host = host, .pool = pool, .datastore = ds, .flags = flags};
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    vmenc_status st = vmenc_policy_check(vmenc_workspace_policy(c->ws), cli_principal(c), &rq, &d);
    if (st != VMENC_OK && st != VMENC_E_DENIED && st != VMENC_E_HOST_MODE)
        return cli_fail(c, st, "cannot decide %s for '%s'", op, cli_principal(c));
    /* "ok" says what the exit code says: a denial is exit 3 and ok false. */
    out_t *r = out_begin(c);
    out_bool(r, "ok", st == VMENC_OK);
    out_str(r, "user", cli_principal(c));
    out_str(r, "op", op);
    out_str(r, "on", on ? on : "");
    out_bool(r, "allowed", d.allowed);
    out_str(r, "status", vmenc_status_name(st));
    out_str(r, "missing_privilege", d.missing_privilege == VMENC_PRIV_NONE ? "" : vmenc_policy_privilege_name(d.missing_privilege));
    out_str(r, "missing_on", d.missing_object);
    out_bool(r, "enable_host_encryption", d.enable_host_encryption);
    out_str(r, "reason", d.message);
    out_end(r);
    return st == VMENC_OK ? EXIT_OK : EXIT_DENIED;
}

static int policy_user(cli *c, args *a) {
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "policy user needs NAME");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    vmenc_policy_edit e = {.struct_size = sizeof(e), .op = VMENC_EDIT_ADD_USER, .name = name};
    return run_edit(c, &e, "policy.add_user", name);
}

/* policy host NAME: another host in the inventory (a migration's
 * destination). Host.Inventory.AddStandaloneHost on the parent
 * (AddHostToCluster for a cluster). */
static int policy_host(cli *c, args *a) {
    const char *parent = "dc";
    (void)arg_value(c, a, "--parent", &parent);
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "policy host needs NAME");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    vmenc_policy_edit e = {.struct_size = sizeof(e), .op = VMENC_EDIT_ADD_OBJECT, .name = name,
                           .object_type = VMENC_OBJ_HOST, .object = parent};
    return run_edit(c, &e, "policy.add_host", name);
}

/* policy group NAME [--member P]...: the group (if new), then each member;
 * a member receives the group's permissions, so each addition is decided
 * on its own (the actor must hold what the group holds, where it holds it). */
static int policy_group(cli *c, args *a) {
    const char *members[64];
    size_t nm = arg_values(c, a, "--member", members, 64);
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "policy group needs NAME");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    vmenc_policy_edit e = {.struct_size = sizeof(e), .op = VMENC_EDIT_ADD_GROUP, .name = name};
    vmenc_status st = vmenc_workspace_policy_edit(c->ws, cli_principal(c), &e, &d);
    if (st == VMENC_E_EXISTS && nm > 0)
        st = VMENC_OK; /* adding members to an existing group */
    for (size_t i = 0; st == VMENC_OK && i < nm; i++) {
        e = (vmenc_policy_edit){.struct_size = sizeof(e), .op = VMENC_EDIT_ADD_MEMBER, .name = name,
                                .member = members[i]};
        st = vmenc_workspace_policy_edit(c->ws, cli_principal(c), &e, &d);
    }
    if (st != VMENC_OK)
        return cli_fail(c, st, "%s", d.message[0] ? d.message : "policy.add_group");
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "operation", "policy.add_group");
    out_str(o, "target", name);
    out_end(o);
    return EXIT_OK;
}

static int policy_role(cli *c, args *a) {
    const char *name = arg_positional(a);
    const char *privs_s[VMENC_PRIV_COUNT_];
    size_t np = 0;
    const char *s;
    while (np < VMENC_PRIV_COUNT_ && (s = arg_positional(a)) != NULL)
        privs_s[np++] = s;
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "policy role needs NAME and privileges (e.g. Cryptographer.Encrypt System.Read)");
    vmenc_policy_privilege privs[VMENC_PRIV_COUNT_];
    for (size_t i = 0; i < np; i++)
        if (vmenc_policy_privilege_from_name(privs_s[i], &privs[i]) != VMENC_OK)
            return cli_usage(c, "unknown privilege '%s'", privs_s[i]);
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    vmenc_policy_edit e = {.struct_size = sizeof(e), .op = VMENC_EDIT_ADD_ROLE, .name = name, .privs = privs,
                           .num_privs = np};
    return run_edit(c, &e, "policy.add_role", name);
}

static int policy_grant(cli *c, args *a) {
    const char *on = "root";
    (void)arg_value(c, a, "--on", &on);
    bool nopro = arg_flag(a, "--no-propagate");
    const char *who = arg_positional(a), *role = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (who == NULL || role == NULL)
        return cli_usage(c, "policy grant needs PRINCIPAL and ROLE (Admin, NoCryptoAdmin, ReadOnly, NoAccess, custom)");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    vmenc_policy_edit e = {.struct_size = sizeof(e), .op = VMENC_EDIT_GRANT, .name = who, .object = on,
                           .role = role, .propagate = !nopro};
    return run_edit(c, &e, "policy.grant", who);
}

static int policy_revoke(cli *c, args *a) {
    const char *on = "root";
    (void)arg_value(c, a, "--on", &on);
    const char *who = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (who == NULL)
        return cli_usage(c, "policy revoke needs PRINCIPAL");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    /* Ask only someone who may revoke there (the library refuses and
     * audits the others, with the missing privilege). */
    int may = 0;
    bool exists = policy_has_name(c, "users", who) || policy_has_name(c, "groups", who);
    if (exists && vmenc_policy_has_privilege(vmenc_workspace_policy(c->ws), cli_principal(c), on,
                                             VMENC_PRIV_AUTH_MODIFY_PERMISSIONS, &may) == VMENC_OK && may) {
        char what[600];
        snprintf(what, sizeof(what), "policy revoke: '%s' loses its permission on '%s' (and what it propagates to)",
                 who, on);
        rc = cli_confirm(c, what);
        if (rc != EXIT_OK)
            return rc;
    }
    vmenc_policy_edit e = {.struct_size = sizeof(e), .op = VMENC_EDIT_REVOKE, .name = who, .object = on};
    return run_edit(c, &e, "policy.revoke", who);
}

/* live_sessions counts the processes that hold a cluster session for one
 * host (vmenc_workspace_cluster_hosts). */
typedef struct live_count {
    const char *host;
    uint32_t n;
    bool registered;
} live_count;

static int live_cb(void *ctx, const char *host, const char *info, uint32_t n) {
    (void)info;
    live_count *lc = ctx;
    if (strcmp(host, lc->host) == 0) {
        lc->n = n;
        lc->registered = true;
    }
    return 0;
}

/* host_rebooted completes a disable (pendingIncapable -> incapable, the
 * reboot of vSphere's HostCryptoState): Cryptographer.RegisterHost on the
 * host, and in a cluster no process of the host left that may still hold
 * a key (no live session but this command's own). Audited as
 * host.complete_disable, allowed or not. */
static vmenc_status host_rebooted(cli *c, const char *host, char *why, size_t cap) {
    vmenc_policy *p = vmenc_workspace_policy(c->ws);
    int may = 0;
    vmenc_status st = vmenc_policy_has_privilege(p, cli_principal(c), host, VMENC_PRIV_CRYPTO_REGISTER_HOST, &may);
    why[0] = '\0';
    if (st == VMENC_OK && !may) {
        st = VMENC_E_DENIED;
        snprintf(why, cap, "'%s' lacks Cryptographer.RegisterHost on host '%s'", cli_principal(c), host);
    }
    vmenc_cluster_status cs = {.struct_size = sizeof(cs)};
    if (st == VMENC_OK && vmenc_workspace_cluster_status(c->ws, &cs) == VMENC_OK && cs.in_cluster) {
        live_count lc = {.host = host};
        st = vmenc_workspace_cluster_hosts(c->ws, live_cb, &lc);
        uint32_t own = strcmp(host, cs.host) == 0 ? 1u : 0u;
        if (st == VMENC_OK && lc.n > own) {
            st = VMENC_E_BAD_STATE;
            snprintf(why, cap, "host '%s' still runs %u process%s with a cluster session: one may hold keys; "
                     "end them (the reboot) first", host, lc.n - own, lc.n - own == 1 ? "" : "es");
        }
    }
    if (st == VMENC_OK) {
        st = vmenc_policy_set_host_state(p, host, VMENC_HOST_INCAPABLE);
        if (st == VMENC_E_ILLEGAL_TRANSITION)
            snprintf(why, cap, "host '%s' is in encryption mode: --disable it first", host);
    }
    if (st != VMENC_OK && why[0] == '\0')
        snprintf(why, cap, "cannot complete the disable of host '%s': %s", host, vmenc_strerror(st));
    vmenc_status as = vmenc_workspace_audit_result(c->ws, cli_principal(c), "host.complete_disable", host, NULL, NULL,
                                                   st, st == VMENC_OK ? "pendingIncapable -> incapable" : why);
    return st != VMENC_OK ? st : as;
}

static int policy_host_mode(cli *c, args *a) {
    bool enable = arg_flag(a, "--enable"), disable = arg_flag(a, "--disable"), rebooted = arg_flag(a, "--rebooted");
    const char *host = NULL;
    (void)arg_value(c, a, "--host", &host);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if ((int)enable + (int)disable + (int)rebooted > 1)
        return cli_usage(c, "policy host-mode takes one of --enable, --disable, --rebooted");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    vmenc_policy *p = vmenc_workspace_policy(c->ws);
    if (host == NULL)
        host = vmenc_host_id(vmenc_workspace_host(c->ws));
    vmenc_status st = VMENC_OK;
    if (enable) {
        vmenc_policy_decision d = {.struct_size = sizeof(d)};
        st = vmenc_policy_enable_host_encryption(p, cli_principal(c), host, &d);
        vmenc_status as = vmenc_workspace_audit_result(c->ws, cli_principal(c), "host.enable_encryption", host, NULL,
                                                       NULL, st, st == VMENC_OK ? NULL : d.message);
        (void)as;
        if (st != VMENC_OK)
            return cli_fail(c, st, "%s", d.message);
    } else if (disable) {
        /* Cryptographer.RegisterHost on the host, decided and audited by
         * the library (policy.disable_host_encryption). */
        vmenc_policy_decision d = {.struct_size = sizeof(d)};
        vmenc_policy_edit e = {.struct_size = sizeof(e), .op = VMENC_EDIT_DISABLE_HOST_ENCRYPTION, .name = host};
        st = vmenc_workspace_policy_edit(c->ws, cli_principal(c), &e, &d);
        if (st != VMENC_OK)
            return cli_fail(c, st, "%s", d.message[0] ? d.message : "cannot leave encryption mode");
    } else if (rebooted) {
        char why[512];
        st = host_rebooted(c, host, why, sizeof(why));
        if (st != VMENC_OK)
            return cli_fail(c, st, "%s", why[0] ? why : "cannot complete the disable");
    }
    vmenc_host_crypto_state s;
    st = vmenc_policy_get_host_state(p, host, &s);
    if (st != VMENC_OK)
        return cli_fail(c, st, "host '%s'", host);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "host", host);
    out_str(o, "crypto_state", vmenc_host_crypto_state_name(s));
    out_end(o);
    return EXIT_OK;
}

static int policy_storage(cli *c, args *a) {
    const char *classes = NULL, *provider = NULL, *mig = NULL;
    bool enc = arg_flag(a, "--encrypt");
    (void)arg_value(c, a, "--classes", &classes);
    (void)arg_value(c, a, "--provider", &provider);
    (void)arg_value(c, a, "--migration", &mig);
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "policy storage-policy needs NAME");
    vmenc_storage_policy_spec sp = {.struct_size = sizeof(sp), .name = name, .encrypt = enc,
                                    .key_provider = provider, .migration = VMENC_MIGRATION_OPPORTUNISTIC};
    if (enc) {
        char buf[128];
        snprintf(buf, sizeof(buf), "%s", classes ? classes : "vm_home,disks");
        for (char *t = strtok(buf, ","); t; t = strtok(NULL, ","))
            sp.file_classes |= strcmp(t, "vm_home") == 0 ? VMENC_FILE_VM_HOME
                               : strcmp(t, "disks") == 0 ? VMENC_FILE_DISKS
                               : strcmp(t, "core_dumps") == 0 ? VMENC_FILE_CORE_DUMPS
                                                               : 0x80000000u;
    }
    if (mig)
        sp.migration = strcmp(mig, "disabled") == 0 ? VMENC_MIGRATION_DISABLED
                       : strcmp(mig, "required") == 0 ? VMENC_MIGRATION_REQUIRED
                                                      : VMENC_MIGRATION_OPPORTUNISTIC;
    if (enc && provider == NULL)
        return cli_usage(c, "an encrypting storage policy needs --provider ALIAS: the key provider its keys come from "
                         "('vmenc kms list' shows them)");
    if (!enc && provider != NULL)
        return cli_usage(c, "--provider is for an encrypting storage policy (add --encrypt)");
    if (enc && (sp.file_classes & 0x80000000u))
        return cli_usage(c, "--classes takes vm_home, disks and core_dumps, separated by commas");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    char known[1024];
    if (provider != NULL && !kms_known(c, provider, known, sizeof(known)))
        return cli_fail(c, VMENC_E_NO_SUCH_PROVIDER, "storage policy '%s': no key provider '%s' (configured: %s)", name,
                        provider, known[0] ? known : "none");
    vmenc_policy_edit e = {.struct_size = sizeof(e), .op = VMENC_EDIT_SET_STORAGE_POLICY, .storage_policy = &sp};
    return run_edit(c, &e, "policy.set_storage_policy", name);
}

const verb_def policy_verbs[] = {
    {"show", policy_show, "", "print the policy document (canonical JSON)", "Needs System.Read on the root.\n"},
    {"check", policy_check, "--op OP [--on VM] [--host H] [--folder F] [--encrypted] [--target-encrypted]",
     "decide whether --user may do OP, and say why",
     "OP: encrypt_vm create_vm decrypt_vm clone_vm add_disk rekey_shallow rekey_deep migrate_vm\n"
     "register_vm register_host enable_host_encryption console export_vm manage_keys\n"
     "manage_key_servers manage_encryption_policies read_key_servers power_on power_off\n"
     "edit_settings snapshot view. Exit 3 when denied.\n"},
    {"roles", policy_roles, "", "list the roles: the predefined ones and the custom ones with their privileges",
     "Admin, NoCryptoAdmin, ReadOnly, NoAccess, then every role 'policy role' added.\n"
     "Needs System.Read on the root.\n"},
    {"user", policy_user, "NAME", "add a user", "Needs Authorization.ModifyPermissions on the root.\n"},
    {"host", policy_host, "NAME [--parent OBJECT]", "add a host to the inventory (e.g. a migration's destination)",
     "Under OBJECT (default the datacenter 'dc'). Needs Host.Inventory.AddStandaloneHost on OBJECT\n"
     "(AddHostToCluster if OBJECT is a cluster).\n"},
    {"group", policy_group, "NAME [--member P]...", "add a group or members to it",
     "Needs Authorization.ModifyPermissions on the root and, for each member, every privilege of\n"
     "every permission the group (and the groups it is in) holds, on that permission's object.\n"},
    {"role", policy_role, "NAME PRIVILEGE...", "add a custom role",
     "Needs Authorization.ModifyRoles and every privilege of the role, on the root.\n"},
    {"grant", policy_grant, "PRINCIPAL ROLE [--on OBJECT] [--no-propagate]", "give a principal a role on an object (default root)",
     "Needs Authorization.ModifyPermissions and every privilege of ROLE (and of the role it replaces)\n"
     "on OBJECT; refused if anyone would gain or lose a privilege the acting user lacks somewhere.\n"},
    {"revoke", policy_revoke, "PRINCIPAL [--on OBJECT] [--yes]", "remove a principal's permission on an object",
     "Asks for YES on a terminal; from a script pass --yes (refused on a pipe without it).\n"
     "Needs Authorization.ModifyPermissions and every privilege of the removed role on OBJECT.\n"},
    {"host-mode", policy_host_mode, "[--enable | --disable | --rebooted] [--host H]", "show or change host encryption mode",
     "--enable, --disable and --rebooted need Cryptographer.RegisterHost on the host. --disable\n"
     "(safe -> pendingIncapable) is refused while encrypted VMs are on the host; --rebooted completes\n"
     "it (-> incapable; in a cluster, refused while a process of the host other than this one has a\n"
     "session), after which --enable may switch the host on again. In a cluster every change also\n"
     "rewrites the host's registration (host/<id>, which the key broker authorizes by) in the same\n"
     "etcd transaction: if that cannot be written, nothing changes.\n"},
    {"storage-policy", policy_storage, "NAME [--encrypt [--classes vm_home,disks,core_dumps] --provider ALIAS] [--migration M]",
     "add or replace a storage policy", "Needs Cryptographer.ManageEncryptionPolicy and StorageProfile.Update.\n"},
    {"reseal", policy_reseal, "", "re-seal a policy document you vouch for (after an edit outside vmenc)", "Needs every privilege on the document's root (Admin); audited with the old and new SHA-256.\n"},
    {NULL, NULL, NULL, NULL, NULL},
};

/* ---- audit ------------------------------------------------------------------------- */

/* audit_allowed: reading the log needs System.Read on the root; the
 * library decides and audits the read (or its denial). */
static int audit_allowed(cli *c, const char *operation) {
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    vmenc_status st = vmenc_workspace_audit_read(c->ws, cli_principal(c), operation, &d);
    return st == VMENC_OK ? EXIT_OK : cli_fail(c, st, "%s", d.message[0] ? d.message : operation);
}

/* fmt_time_ms writes |ms| (Unix epoch, UTC) as ISO 8601. */
static void fmt_time_ms(uint64_t ms, char *out, size_t cap) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        snprintf(out, cap, "?");
    else
        snprintf(out + strlen(out), cap - strlen(out), ".%03uZ", (unsigned)(ms % 1000));
}

/* anchor_message explains a checkpoint that does not vouch for the log. */
static void anchor_message(const vmenc_audit_anchor_result *r, const char *cp_path, char *msg, size_t cap) {
    char when[40];
    fmt_time_ms(r->sealed_time_ms, when, sizeof(when));
    unsigned long long sealed = (unsigned long long)r->sealed_seq, has = (unsigned long long)r->log_last_seq;
    switch (r->state) {
    case VMENC_AUDIT_ANCHOR_CUT:
        if (r->log_last_seq == 0 || r->log_chain_differs)
            snprintf(msg, cap,
                     "the audit log was emptied: the checkpoint sealed record %llu (%s, %llu bytes of log), "
                     "the log holds no record of that chain (%llu bytes%s%llu)",
                     sealed, when, (unsigned long long)r->sealed_offset, (unsigned long long)r->log_bytes,
                     r->log_last_seq ? ", a new chain up to record " : ", last record ", has);
        else
            snprintf(msg, cap,
                     "the audit log was cut short: the checkpoint sealed record %llu (%s) at byte %llu, "
                     "the log has %llu bytes and ends at record %llu",
                     sealed, when, (unsigned long long)r->sealed_offset, (unsigned long long)r->log_bytes, has);
        break;
    case VMENC_AUDIT_ANCHOR_DIVERGED:
        snprintf(msg, cap,
                 "the audit log diverged from its checkpoint: the checkpoint sealed record %llu (%s) ending at "
                 "byte %llu, the log has another record there and ends at record %llu; it was cut short or "
                 "replaced by an older copy, then written to",
                 sealed, when, (unsigned long long)r->sealed_offset, has);
        break;
    case VMENC_AUDIT_ANCHOR_MISSING:
        snprintf(msg, cap,
                 "the audit checkpoint %s is missing, so the log (last record %llu) cannot be checked for "
                 "records cut off its end: the workspace seals one at every command, so it was removed - or the "
                 "workspace was created before checkpoints existed; then an administrator who trusts the log "
                 "as it stands adopts one: vmenc audit checkpoint --adopt",
                 cp_path, has);
        break;
    case VMENC_AUDIT_ANCHOR_BAD_SEAL:
        snprintf(msg, cap, "the audit checkpoint %s does not verify: it was edited or replaced", cp_path);
        break;
    case VMENC_AUDIT_ANCHOR_WRONG_KEY:
        snprintf(msg, cap, "the audit checkpoint %s was sealed under another key", cp_path);
        break;
    default:
        snprintf(msg, cap, "the audit checkpoint vouches for the log");
    }
}

/* audit_verify_cluster holds this host's log against its copy in the
 * cluster's audit mirror. */
static int audit_verify_cluster(cli *c) {
    vmenc_audit_cluster_result r = {.struct_size = sizeof(r)};
    vmenc_status st = vmenc_workspace_audit_cluster_verify(c->ws, &r);
    if (st == VMENC_E_UNSUPPORTED)
        return cli_fail(c, st, "this workspace is not in cluster mode: it has no audit mirror");
    if (st != VMENC_OK && st != VMENC_E_NOT_FOUND && st != VMENC_E_AUDIT_TAMPERED && st != VMENC_E_AUDIT_TRUNCATED)
        return cli_fail(c, st, "cannot compare the audit log with the cluster's copy");
    /* Behind is not wrong: records the mirror lacks are still in the local
     * log (the control plane was down) and go out with the next record. */
    uint64_t lag = r.state == VMENC_AUDIT_ANCHOR_OK && r.log_last_seq > r.mirror_seq ? r.log_last_seq - r.mirror_seq : 0;
    out_t *o = out_begin(c);
    out_bool(o, "ok", st == VMENC_OK);
    out_bool(o, "in_sync", st == VMENC_OK && lag == 0);
    out_str(o, "log", vmenc_workspace_audit_log_path(c->ws));
    out_str(o, "state", vmenc_audit_anchor_name(r.state));
    out_u64(o, "not_mirrored", lag);
    out_u64(o, "mirror_seq", r.mirror_seq);
    out_u64(o, "log_last_seq", r.log_last_seq);
    out_u64(o, "diverged_seq", r.diverged_seq);
    out_u64(o, "hosts", r.num_hosts);
    out_u64(o, "mirrored_records", r.num_records);
    out_u64(o, "broken_hosts", r.broken_hosts);
    out_end(o);
    switch (r.state) {
    case VMENC_AUDIT_ANCHOR_OK:
        if (st == VMENC_OK) {
            if (lag > 0 && !c->quiet)
                fprintf(stderr, "vmenc: %llu record(s) not mirrored yet (the cluster holds up to %llu, the log ends "
                                "at %llu); they are sent with the next record once etcd answers\n",
                        (unsigned long long)lag, (unsigned long long)r.mirror_seq, (unsigned long long)r.log_last_seq);
            return EXIT_OK;
        }
        return cli_fail_stderr(c, st, "%llu host(s) have mirrored records that do not form one chain",
                               (unsigned long long)r.broken_hosts);
    case VMENC_AUDIT_ANCHOR_CUT:
        return cli_fail_stderr(c, st,
                               "the audit log was %s: the cluster holds this host's records up to %llu, the log "
                               "ends at record %llu",
                               r.log_last_seq == 0 ? "emptied" : "cut short", (unsigned long long)r.mirror_seq,
                               (unsigned long long)r.log_last_seq);
    case VMENC_AUDIT_ANCHOR_DIVERGED:
        return cli_fail_stderr(c, st,
                               "the audit log diverged from the cluster's copy at record %llu (the cluster holds "
                               "up to %llu, the log ends at %llu)",
                               (unsigned long long)r.diverged_seq, (unsigned long long)r.mirror_seq,
                               (unsigned long long)r.log_last_seq);
    default:
        return cli_fail_stderr(c, VMENC_E_AUDIT_TAMPERED,
                               "the cluster holds no audit record of this host (the log ends at record %llu)",
                               (unsigned long long)r.log_last_seq);
    }
}

static int audit_verify(cli *c, args *a) {
    bool cluster = arg_flag(a, "--cluster");
    const char *file = arg_positional(a);
    if (!arg_done(c, a) || (cluster && file != NULL))
        return cli_usage(c, "audit verify [FILE | --cluster]");
    int rc = cli_open(c);
    if (rc == EXIT_OK)
        rc = audit_allowed(c, "audit.verify");
    if (rc != EXIT_OK)
        return rc;
    if (cluster)
        return audit_verify_cluster(c);
    vmenc_audit_verify_result r = {.struct_size = sizeof(r)};
    vmenc_status st = vmenc_workspace_audit_verify(c->ws, file, &r);
    if (st != VMENC_OK && st != VMENC_E_AUDIT_TAMPERED && st != VMENC_E_AUDIT_TRUNCATED && st != VMENC_E_AUTH)
        return cli_fail(c, st, "cannot verify the audit log");
    /* The workspace's own log is also held against its sealed checkpoint;
     * another file named on the command line has none. */
    const char *own = vmenc_workspace_audit_log_path(c->ws);
    bool anchored = file == NULL || strcmp(file, own) == 0;
    vmenc_audit_anchor_result ar = {.struct_size = sizeof(ar)};
    vmenc_status as = VMENC_OK;
    char cp_path[4096];
    snprintf(cp_path, sizeof(cp_path), "%s.checkpoint", own);
    if (anchored) {
        as = vmenc_workspace_audit_anchor(c->ws, &ar);
        if (as != VMENC_OK && as != VMENC_E_NOT_FOUND && as != VMENC_E_AUDIT_TAMPERED &&
            as != VMENC_E_AUDIT_TRUNCATED && as != VMENC_E_AUTH)
            return cli_fail(c, as, "cannot check the audit checkpoint");
    }
    bool intact = st == VMENC_OK && as == VMENC_OK;
    out_t *o = out_begin(c);
    out_bool(o, "ok", intact);
    out_str(o, "log", file ? file : own);
    out_bool(o, "intact", intact);
    out_u64(o, "records", r.num_records);
    out_u64(o, "last_seq", r.last_seq);
    out_str(o, "defect", vmenc_audit_defect_name(r.defect));
    if (st != VMENC_OK) {
        out_u64(o, "bad_line", r.bad_index + 1);
        out_u64(o, "bad_offset", r.bad_offset);
        out_u64(o, "bad_seq", r.bad_seq);
    }
    if (anchored) {
        char when[40];
        fmt_time_ms(ar.sealed_time_ms, when, sizeof(when));
        out_obj(o, "checkpoint");
        out_str(o, "path", cp_path);
        out_str(o, "state", vmenc_audit_anchor_name(ar.state));
        out_u64(o, "sealed_seq", ar.sealed_seq);
        out_str(o, "sealed_time", ar.sealed_time_ms ? when : "");
        out_u64(o, "sealed_offset", ar.sealed_offset);
        out_u64(o, "log_bytes", ar.log_bytes);
        out_u64(o, "log_last_seq", ar.log_last_seq);
        out_bool(o, "log_chain_differs", ar.log_chain_differs);
        out_close(o);
    }
    out_end(o);
    if (st != VMENC_OK)
        return cli_fail_stderr(c, st, "the audit log is not intact: %s at line %llu", vmenc_audit_defect_name(r.defect),
                        (unsigned long long)r.bad_index + 1);
    if (as != VMENC_OK) {
        char msg[8192];
        anchor_message(&ar, cp_path, msg, sizeof(msg));
        /* A missing checkpoint is tampering with the workspace, not an object the user named. */
        return cli_fail_stderr(c, as == VMENC_E_NOT_FOUND ? VMENC_E_AUDIT_TAMPERED : as, "%s", msg);
    }
    return EXIT_OK;
}

/* show_records prints the last |limit| lines (0 = all) of the log. */
static int show_records(cli *c, uint64_t limit) {
    FILE *f = fopen(vmenc_workspace_audit_log_path(c->ws), "r");
    if (f == NULL)
        return cli_fail(c, VMENC_E_IO, "cannot read the audit log");
    char **lines = NULL;
    size_t n = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, f)) > 0) {
        if (line[len - 1] == '\n')
            line[len - 1] = '\0';
        if (limit && n == limit) {
            free(lines[0]);
            memmove(lines, lines + 1, (n - 1) * sizeof(*lines));
            n--;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            lines = realloc(lines, cap * sizeof(*lines));
        }
        lines[n++] = strdup(line);
    }
    free(line);
    fclose(f);
    for (size_t i = 0; i < n; i++) {
        if (c->json)
            printf("%s\n", lines[i]); /* each record is already one JSON object */
        else if (!c->quiet)
            printf("%s\n", lines[i]);
        free(lines[i]);
    }
    free(lines);
    return EXIT_OK;
}

typedef struct cluster_show {
    cli *c;
    uint64_t n;
} cluster_show;

static int show_cluster_event(void *ctx, const char *host, uint64_t seq, const char *line, size_t len) {
    cluster_show *s = ctx;
    char *rec = strndup(line, len);
    if (rec == NULL)
        return 1;
    if (s->c->json) { /* the record is one JSON object: wrap it with its host */
        out_t *o = out_begin(s->c);
        out_str(o, "host", host);
        out_u64(o, "seq", seq);
        out_raw(o, "record", rec);
        out_end(o);
    } else if (!s->c->quiet) {
        /* Host IDs come from the cluster store: print them inert. */
        char h[80];
        size_t i = 0;
        for (; host[i] != '\0' && i + 1 < sizeof(h); i++)
            h[i] = (unsigned char)host[i] < 0x20 || host[i] == 0x7f ? '?' : host[i];
        h[i] = '\0';
        printf("%s %s\n", h, rec);
    }
    free(rec);
    s->n++;
    return 0;
}

static int audit_show(cli *c, args *a) {
    const char *lim = NULL;
    (void)arg_value(c, a, "--limit", &lim);
    bool cluster = arg_flag(a, "--cluster");
    uint64_t limit = 0;
    if ((lim && !parse_size(lim, &limit)) || !arg_done(c, a) || (cluster && lim))
        return cli_usage(c, "audit show [--limit N | --cluster]");
    int rc = cli_open(c);
    if (rc == EXIT_OK)
        rc = audit_allowed(c, "audit.show");
    if (rc != EXIT_OK || !cluster)
        return rc != EXIT_OK ? rc : show_records(c, limit);
    cluster_show s = {.c = c};
    vmenc_status st = vmenc_workspace_audit_cluster_show(c->ws, show_cluster_event, &s);
    if (st == VMENC_E_UNSUPPORTED)
        return cli_fail(c, st, "this workspace is not in cluster mode: it has no audit mirror");
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot list the cluster's audit events");
    return EXIT_OK;
}

static int audit_tail(cli *c, args *a) {
    const char *lim = "10";
    if (!arg_value(c, a, "-n", &lim))
        (void)arg_value(c, a, "--lines", &lim);
    uint64_t limit = 0;
    if (!parse_size(lim, &limit) || !arg_done(c, a))
        return cli_usage(c, "audit tail [-n N]");
    int rc = cli_open(c);
    if (rc == EXIT_OK)
        rc = audit_allowed(c, "audit.tail");
    return rc != EXIT_OK ? rc : show_records(c, limit ? limit : 1);
}

/* audit_checkpoint adopts the first checkpoint of a workspace that has none. */
static int audit_checkpoint(cli *c, args *a) {
    bool adopt = arg_flag(a, "--adopt");
    if (!arg_done(c, a) || !adopt)
        return cli_usage(c, "audit checkpoint --adopt");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    vmenc_audit_verify_result r = {.struct_size = sizeof(r)};
    vmenc_status st = vmenc_workspace_audit_adopt_checkpoint(c->ws, cli_principal(c), &r);
    const char *log = vmenc_workspace_audit_log_path(c->ws);
    if (st == VMENC_E_DENIED)
        return cli_fail(c, st, "adopting an audit checkpoint needs every privilege on the root");
    if (st == VMENC_E_EXISTS)
        return cli_fail(c, st, "%s.checkpoint exists: adoption is only for a workspace that never had one; "
                               "a checkpoint that fails verification is evidence and is never replaced", log);
    if (st == VMENC_E_AUDIT_TAMPERED || st == VMENC_E_AUDIT_TRUNCATED || st == VMENC_E_AUTH) {
        if (r.defect != VMENC_AUDIT_DEFECT_NONE)
            return cli_fail(c, st, "the audit log is not intact (%s at line %llu): nothing adopted",
                            vmenc_audit_defect_name(r.defect), (unsigned long long)r.bad_index + 1);
        return cli_fail(c, st, "the audit log disagrees with the cluster's copy (audit verify --cluster): nothing adopted");
    }
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot adopt an audit checkpoint");
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "log", log);
    out_u64(o, "records", r.num_records);
    out_u64(o, "sealed_seq", r.last_seq);
    out_str(o, "trust", "history up to sealed_seq is trusted on the hash chain alone");
    out_end(o);
    if (!c->json && !c->quiet)
        fprintf(stderr,
                "vmenc: adopted: the chain of %llu record(s) verified and its head (record %llu) is sealed.\n"
                "vmenc: history up to record %llu is trusted on the log alone: records cut off its end before\n"
                "vmenc: today cannot be found. From now on every command seals the head.\n",
                (unsigned long long)r.num_records, (unsigned long long)r.last_seq, (unsigned long long)r.last_seq);
    return EXIT_OK;
}

const verb_def audit_verbs[] = {
    {"show", audit_show, "[--limit N | --cluster]", "print the audit records (JSON lines)",
     "--cluster: every host's events from the cluster's audit mirror, by time, each line prefixed\n"
     "with its host (--json: {\"host\":H,\"record\":R}). Needs System.Read on the root.\n"},
    {"verify", audit_verify, "[FILE | --cluster]", "verify the hash chain (default: this workspace's log)",
     "Finds edited, deleted, reordered, inserted and cut-off records. The workspace's own log is\n"
     "also held against its sealed checkpoint (<log>.checkpoint, sealed at the end of every\n"
     "command): a log cut short, emptied or replaced by an older copy, and a checkpoint removed\n"
     "or edited, are reported with what was sealed and what the log has. --cluster: compare the\n"
     "log with this host's copy in the cluster's audit mirror instead (cut short, emptied,\n"
     "diverged; --json: ok, in_sync, state, mirror_seq, log_last_seq, not_mirrored, broken_hosts;\n"
     "records not mirrored yet because etcd was down are reported, not failed). Never repairs anything.\n"
     "Exit 4 if not intact. Needs System.Read on the root.\n"},
    {"tail", audit_tail, "[-n N]", "print the last N records (default 10)", "Needs System.Read on the root.\n"},
    {"checkpoint", audit_checkpoint, "--adopt", "seal the first checkpoint of a workspace created without one",
     "For a workspace created before sealed checkpoints existed, which `audit verify` reports as\n"
     "missing its checkpoint. Verifies the whole chain as it stands and, only if it is intact (and,\n"
     "in cluster mode, agrees with the cluster's copy), seals its head. History up to that record is\n"
     "then trusted on the log alone: records cut off its end before adoption cannot be found.\n"
     "Refused if a checkpoint file exists (a bad one is evidence, never replaced). Audited\n"
     "(audit.checkpoint.adopt). Needs every privilege on the root.\n"},
    {NULL, NULL, NULL, NULL, NULL},
};
