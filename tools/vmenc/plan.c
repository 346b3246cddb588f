/*
 * tools/vmenc/plan.c - what a destructive or converting verb is about to
 * do, said before it does it: the --dry-run plans of `vm encrypt|decrypt`
 * (a storage policy applied), `vm rekey` and `vm delete`, the one-line
 * summaries the confirmation question shows, the authorization pre-check
 * that lets a denied user be denied (and audited) by the library rather
 * than asked a question, and the names of the policy ("did you mean").
 * The plan of a storage policy is the library's own
 * (vmenc_policy_plan_storage_policy), so the dry run and the real run
 * agree. Plans and their JSON fields are documented in docs/cli.md
 * "Dry run". The one safety rule: nothing here changes anything - a plan
 * only reads the VM's configuration and the policy.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "plan.h"

/* ---- names in the policy document ------------------------------------------------------ */

/* policy_doc: the policy as JSON, read without an authorization (it is only
 * used to name what a failed command got wrong). NULL on failure. */
static uint8_t *policy_doc(cli *c) {
    if (c->ws == NULL)
        return NULL;
    uint8_t *doc = NULL;
    size_t len = 0;
    if (vmenc_policy_save_json(vmenc_workspace_policy(c->ws), &doc, &len) != VMENC_OK)
        return NULL;
    return doc;
}

/* next_string: the JSON string at |p| (after its opening quote) into
 * |out|, returns the position after the closing quote. */
static const char *next_string(const char *p, char *out, size_t cap) {
    size_t n = 0;
    while (*p && *p != '"') {
        char ch = *p++;
        if (ch == '\\' && *p) {
            ch = *p++;
            if (ch == 'n')
                ch = '\n';
            else if (ch == 't')
                ch = '\t';
            else if (ch == 'u') { /* names are ASCII in practice; keep a marker */
                for (int i = 0; i < 4 && *p; i++)
                    p++;
                ch = '?';
            }
        }
        if (n + 1 < cap)
            out[n++] = ch;
    }
    out[n] = '\0';
    return *p == '"' ? p + 1 : p;
}

size_t policy_names(cli *c, const char *section, char names[][VMENC_POLICY_NAME_MAX + 1], size_t cap) {
    uint8_t *doc = policy_doc(c);
    if (doc == NULL)
        return 0;
    char key[96];
    snprintf(key, sizeof(key), "\"%s\"", section);
    const char *p = strstr((const char *)doc, key);
    size_t n = 0;
    if (p != NULL && (p = strchr(p + strlen(key), '[')) != NULL) {
        int depth = 0; /* inside the array: objects at depth 1 */
        p++;
        while (*p && n < cap) {
            if (*p == '"') {
                char s[VMENC_POLICY_NAME_MAX + 1];
                p = next_string(p + 1, s, sizeof(s));
                if (depth == 1 && strcmp(s, "name") == 0) {
                    while (*p == ' ' || *p == ':')
                        p++;
                    if (*p == '"')
                        p = next_string(p + 1, names[n++], VMENC_POLICY_NAME_MAX + 1);
                }
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if (*p == '}' || *p == ']') {
                if (depth == 0)
                    break;
                depth--;
            }
            p++;
        }
    }
    vmenc_policy_buffer_free(doc);
    return n;
}

bool policy_has_name(cli *c, const char *section, const char *name) {
    static char names[256][VMENC_POLICY_NAME_MAX + 1];
    size_t n = policy_names(c, section, names, 256);
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

const char *policy_suggest(cli *c, const char *section, const char *name, char *out, size_t cap) {
    static char names[256][VMENC_POLICY_NAME_MAX + 1];
    size_t n = policy_names(c, section, names, 256);
    out[0] = '\0';
    /* the same name in another case, then one that starts the same way */
    for (size_t i = 0; i < n && !out[0]; i++)
        if (strcasecmp(names[i], name) == 0)
            snprintf(out, cap, "%s", names[i]);
    for (size_t i = 0; i < n && !out[0] && strlen(name) >= 3; i++)
        if (strncasecmp(names[i], name, strlen(name)) == 0)
            snprintf(out, cap, "%s", names[i]);
    return out[0] ? out : NULL;
}

void policy_list(cli *c, const char *section, char *out, size_t cap) {
    static char names[256][VMENC_POLICY_NAME_MAX + 1];
    size_t n = policy_names(c, section, names, 256);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s'%s'", i ? ", " : "", names[i]);
    }
}

int fail_storage_policy(cli *c, vmenc_status st, const char *policy, const char *fmt_what) {
    char sug[VMENC_POLICY_NAME_MAX + 1], all[1024];
    if (st == VMENC_E_NOT_FOUND && policy != NULL && !policy_has_name(c, "storage_policies", policy)) {
        if (policy_suggest(c, "storage_policies", policy, sug, sizeof(sug)))
            return cli_fail(c, st, "%s: no storage policy '%s' (names are case-sensitive): did you mean '%s'?",
                            fmt_what, policy, sug);
        policy_list(c, "storage_policies", all, sizeof(all));
        return cli_fail(c, st, "%s: no storage policy '%s'; the storage policies are %s", fmt_what, policy,
                        all[0] ? all : "(none)");
    }
    return -1;
}

bool kms_known(cli *c, const char *alias, char *list, size_t cap) {
    list[0] = '\0';
    bool found = false;
    for (size_t i = 0; c->ws != NULL && i < vmenc_workspace_num_kms(c->ws); i++) {
        vmenc_workspace_kms_info info = {.struct_size = sizeof(info)};
        if (vmenc_workspace_get_kms_info(c->ws, i, &info) != VMENC_OK)
            continue;
        found = found || strcmp(info.alias, alias) == 0;
        size_t l = strlen(list);
        snprintf(list + l, cap - l, "%s'%s'", l ? ", " : "", info.alias);
    }
    return found;
}

/* ---- authorization pre-check ------------------------------------------------------------ */

bool would_be_denied(cli *c, vmenc_policy_op op, const char *vm, bool encrypted) {
    if (c->ws == NULL)
        return false;
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = op, .vm = vm,
                               .host = vmenc_host_id(vmenc_workspace_host(c->ws)),
                               .flags = encrypted ? VMENC_REQ_VM_ENCRYPTED : 0};
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    vmenc_status st = vmenc_policy_check(vmenc_workspace_policy(c->ws), cli_principal(c), &rq, &d);
    return st == VMENC_E_DENIED || st == VMENC_E_HOST_MODE;
}

const char *why_denied(cli *c, vmenc_policy_op op, const char *vm, bool encrypted, char *buf, size_t cap) {
    buf[0] = '\0';
    if (c->ws == NULL)
        return buf;
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = op, .vm = vm, .folder = vm,
                               .host = vmenc_host_id(vmenc_workspace_host(c->ws)),
                               .flags = encrypted ? VMENC_REQ_VM_ENCRYPTED : 0};
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    vmenc_status st = vmenc_policy_check(vmenc_workspace_policy(c->ws), cli_principal(c), &rq, &d);
    if ((st == VMENC_E_DENIED || st == VMENC_E_HOST_MODE) && d.missing_privilege != VMENC_PRIV_NONE)
        snprintf(buf, cap, ": '%s' lacks %s on '%s'", cli_principal(c), vmenc_policy_privilege_name(d.missing_privilege),
                 d.missing_object[0] ? d.missing_object : vm ? vm : "root");
    else if (st == VMENC_E_DENIED && d.message[0])
        snprintf(buf, cap, ": %s", d.message);
    return buf;
}

/* ---- plans -------------------------------------------------------------------------------- */

static void human_size(uint64_t b, char *out, size_t cap) {
    if (b >= (1ull << 30))
        snprintf(out, cap, "%.1f GiB", (double)b / (double)(1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(out, cap, "%.1f MiB", (double)b / (double)(1ull << 20));
    else
        snprintf(out, cap, "%llu bytes", (unsigned long long)b);
}

static const char *action_name(vmenc_policy_action_type t) {
    switch (t) {
    case VMENC_ACTION_ENCRYPT_HOME: return "encrypt_home";
    case VMENC_ACTION_ENCRYPT_DISK: return "encrypt_disk";
    case VMENC_ACTION_ENCRYPT_CORE_DUMPS: return "encrypt_core_dumps";
    case VMENC_ACTION_DECRYPT_HOME: return "decrypt_home";
    case VMENC_ACTION_DECRYPT_DISK: return "decrypt_disk";
    case VMENC_ACTION_DECRYPT_CORE_DUMPS: return "decrypt_core_dumps";
    case VMENC_ACTION_REKEY_HOME: return "rekey_home";
    case VMENC_ACTION_REKEY_DISK: return "rekey_disk";
    case VMENC_ACTION_REKEY_CORE_DUMPS: return "rekey_core_dumps";
    case VMENC_ACTION_SET_MIGRATION: return "set_migration";
    }
    return "unknown";
}

static const char *migration_name(vmenc_migration_encryption m) {
    return m == VMENC_MIGRATION_DISABLED ? "disabled" : m == VMENC_MIGRATION_REQUIRED ? "required" : "opportunistic";
}

vmenc_status storage_plan(cli *c, vmenc_vm *vm, const char *policy, storage_plan_t *p) {
    memset(p, 0, sizeof(*p));
    p->info.struct_size = sizeof(p->info);
    vmenc_status st = vmenc_vm_get_info(vm, &p->info);
    if (st != VMENC_OK)
        return st;
    p->num_disks = p->info.num_disks < VMENC_VM_MAX_DISKS ? p->info.num_disks : VMENC_VM_MAX_DISKS;
    static vmenc_vm_disk_state ds[VMENC_VM_MAX_DISKS];
    for (uint32_t i = 0; i < p->num_disks; i++) {
        p->disks[i] = (vmenc_disk_info){.struct_size = sizeof(p->disks[i])};
        if ((st = vmenc_vm_get_disk_info(vm, i, &p->disks[i])) != VMENC_OK)
            return st;
        ds[i].encrypted = p->disks[i].state != VMENC_DISK_PLAIN;
        ds[i].key_provider = p->disks[i].key_provider;
    }
    vmenc_vm_crypto_state cs = {.struct_size = sizeof(cs), .home_encrypted = p->info.encrypted,
                                .home_provider = p->info.key_provider, .num_disks = p->num_disks, .disks = ds,
                                .migration = VMENC_MIGRATION_OPPORTUNISTIC};
    snprintf(p->policy, sizeof(p->policy), "%s", policy);
    return vmenc_policy_plan_storage_policy(vmenc_workspace_policy(c->ws), policy, &cs, p->actions,
                                            sizeof(p->actions) / sizeof(p->actions[0]), &p->num_actions);
}

static bool action_is_disk(vmenc_policy_action_type t) {
    return t == VMENC_ACTION_ENCRYPT_DISK || t == VMENC_ACTION_DECRYPT_DISK || t == VMENC_ACTION_REKEY_DISK;
}

uint64_t storage_plan_bytes(const storage_plan_t *p, int *out_disks, bool *out_home, bool decrypting) {
    uint64_t bytes = 0;
    int disks = 0;
    bool home = false;
    for (size_t i = 0; i < p->num_actions; i++) {
        const vmenc_policy_action *a = &p->actions[i];
        bool dec = a->type == VMENC_ACTION_DECRYPT_DISK || a->type == VMENC_ACTION_DECRYPT_HOME;
        if (decrypting && !dec)
            continue;
        if (action_is_disk(a->type) && a->disk < p->num_disks) {
            bytes += p->disks[a->disk].capacity;
            disks++;
        }
        if (a->type == VMENC_ACTION_DECRYPT_HOME || a->type == VMENC_ACTION_ENCRYPT_HOME ||
            a->type == VMENC_ACTION_REKEY_HOME)
            home = true;
    }
    if (out_disks)
        *out_disks = disks;
    if (out_home)
        *out_home = home;
    return bytes;
}

void storage_plan_out(cli *c, const storage_plan_t *p, const char *vm_name) {
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_bool(o, "dry_run", true);
    out_str(o, "vm", vm_name);
    out_str(o, "storage_policy_now", p->info.storage_policy);
    out_str(o, "storage_policy", p->policy);
    out_bool(o, "encrypted_now", p->info.encrypted);
    uint64_t total = 0;
    bool touched[VMENC_VM_MAX_DISKS] = {false}, home_touched = false, home_enc_after = p->info.encrypted != 0;
    bool disk_enc_after[VMENC_VM_MAX_DISKS];
    for (uint32_t i = 0; i < p->num_disks; i++)
        disk_enc_after[i] = p->disks[i].state != VMENC_DISK_PLAIN;
    out_arr(o, "actions");
    for (size_t i = 0; i < p->num_actions; i++) {
        const vmenc_policy_action *a = &p->actions[i];
        out_obj(o, NULL);
        out_str(o, "action", action_name(a->type));
        if (action_is_disk(a->type) && a->disk < p->num_disks) {
            const vmenc_disk_info *d = &p->disks[a->disk];
            out_str(o, "disk", d->disk_id);
            out_str(o, "file", d->file_name);
            out_u64(o, "bytes", d->capacity);
            out_str(o, "key_provider_now", d->key_provider);
            total += d->capacity;
            touched[a->disk] = true;
            disk_enc_after[a->disk] = a->type != VMENC_ACTION_DECRYPT_DISK;
        } else if (a->type == VMENC_ACTION_SET_MIGRATION) {
            out_str(o, "migration", migration_name(a->migration));
        } else {
            home_touched = true;
            if (a->type == VMENC_ACTION_DECRYPT_HOME || a->type == VMENC_ACTION_ENCRYPT_HOME)
                home_enc_after = a->type == VMENC_ACTION_ENCRYPT_HOME;
            out_str(o, "key_provider_now", p->info.key_provider);
        }
        if (a->key_provider[0])
            out_str(o, "key_provider", a->key_provider);
        out_close(o);
    }
    out_close(o);
    out_u64(o, "bytes_to_convert", total);
    (void)home_touched;
    out_arr(o, "stays_plain");
    if (!home_enc_after)
        out_str(o, NULL, "vm_home (configuration, NVRAM, suspend and snapshot state, swap)");
    for (uint32_t i = 0; i < p->num_disks; i++)
        if (!disk_enc_after[i])
            out_str(o, NULL, p->disks[i].disk_id);
    out_close(o);
    out_arr(o, "unchanged");
    for (uint32_t i = 0; i < p->num_disks; i++)
        if (!touched[i])
            out_str(o, NULL, p->disks[i].disk_id);
    out_close(o);
    out_str(o, "note", p->num_actions == 0 ? "the VM already complies: nothing would change"
                                           : "dry run: nothing was changed");
    out_end(o);
}

void storage_plan_summary(const storage_plan_t *p, const char *verb, const char *vm_name, char *out, size_t cap) {
    int disks = 0;
    bool home = false;
    uint64_t b = storage_plan_bytes(p, &disks, &home, strcmp(verb, "decrypt") == 0);
    char hs[32];
    human_size(b, hs, sizeof(hs));
    char ids[512] = "";
    bool dec = strcmp(verb, "decrypt") == 0;
    for (size_t i = 0; i < p->num_actions; i++) {
        const vmenc_policy_action *a = &p->actions[i];
        if (action_is_disk(a->type) && a->disk < p->num_disks && (!dec || a->type == VMENC_ACTION_DECRYPT_DISK)) {
            size_t l = strlen(ids);
            snprintf(ids + l, sizeof(ids) - l, "%s%s", l ? ", " : "", p->disks[a->disk].disk_id);
        }
    }
    snprintf(out, cap, "vm %s: VM '%s' gets storage policy '%s': %d disk(s)%s%s%s (%s)%s will be %s", verb, vm_name,
             p->policy, disks, ids[0] ? " [" : "", ids, ids[0] ? "]" : "", hs,
             home ? " and the VM home (configuration, NVRAM, state files)" : "",
             dec ? "decrypted in place, in clear on the datastore" : "converted in place");
}
