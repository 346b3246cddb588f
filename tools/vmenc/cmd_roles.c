/*
 * tools/vmenc/cmd_roles.c - `vmenc policy roles`: the roles a grant can
 * name - the four predefined ones (vmenc/policy.h, with what each holds in
 * a sentence) and the workspace's custom roles with their privileges, as
 * the policy document has them (docs/policy.md, docs/cli.md). The document
 * is read through vmenc_workspace_policy_show, so reading it needs
 * System.Read on the root and is audited ("policy.show") like `policy
 * show`. The one safety rule: this verb only reads.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name, *what;
} k_predefined[] = {
    {VMENC_ROLE_ADMIN, "every privilege (Administrator)"},
    {VMENC_ROLE_NO_CRYPTO_ADMIN, "every privilege except Cryptographer.* (No cryptography administrator): may "
                                 "power on and migrate an encrypted VM, may not encrypt, decrypt, open its console, "
                                 "download it or manage keys"},
    {VMENC_ROLE_READ_ONLY, "System.Anonymous, System.View, System.Read"},
    {VMENC_ROLE_NO_ACCESS, "nothing: an explicit deny that overrides inheritance"},
};

/* json_string_at: the JSON string starting at |p| (its opening quote) into
 * |out|; returns the position after it, or NULL. */
static const char *json_string_at(const char *p, char *out, size_t cap) {
    if (*p != '"')
        return NULL;
    p++;
    size_t n = 0;
    while (*p && *p != '"') {
        if (*p == '\\' && p[1])
            p++;
        if (n + 1 < cap)
            out[n++] = *p;
        p++;
    }
    out[n] = '\0';
    return *p == '"' ? p + 1 : NULL;
}

/* custom_roles prints the "roles" array of |doc|: each object's name and
 * privileges (the document is canonical: {"name": ..., "privileges": [...]}). */
static void custom_roles(out_t *o, const char *doc) {
    const char *p = strstr(doc, "\"roles\"");
    if (p == NULL || (p = strchr(p, '[')) == NULL)
        return;
    p++;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == ',' || *p == '\t' || *p == '\r')
            p++;
        if (*p != '{')
            return;
        const char *end = strchr(p, '}');
        const char *k = strstr(p, "\"name\"");
        if (end == NULL || k == NULL || k > end)
            return;
        k += 6;
        while (*k == ' ' || *k == ':')
            k++;
        char name[VMENC_POLICY_NAME_MAX + 1];
        if (json_string_at(k, name, sizeof(name)) == NULL)
            return;
        out_obj(o, NULL);
        out_str(o, "name", name);
        out_bool(o, "predefined", false);
        out_arr(o, "privileges");
        const char *pr = strstr(p, "\"privileges\"");
        if (pr != NULL && pr < end && (pr = strchr(pr, '[')) != NULL && pr < end) {
            pr++;
            for (;;) {
                while (*pr == ' ' || *pr == ',' || *pr == '\n')
                    pr++;
                char priv[128];
                const char *nx = json_string_at(pr, priv, sizeof(priv));
                if (nx == NULL)
                    break;
                out_str(o, NULL, priv);
                pr = nx;
            }
        }
        out_close(o);
        out_close(o);
        p = end + 1;
    }
}

int policy_roles(cli *c, args *a) {
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
        return cli_fail(c, st, "%s", d.message[0] ? d.message : "cannot read the policy's roles");
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_arr(o, "roles");
    for (size_t i = 0; i < sizeof(k_predefined) / sizeof(k_predefined[0]); i++) {
        out_obj(o, NULL);
        out_str(o, "name", k_predefined[i].name);
        out_bool(o, "predefined", true);
        out_str(o, "holds", k_predefined[i].what);
        out_close(o);
    }
    custom_roles(o, (const char *)doc);
    out_close(o);
    out_end(o);
    vmenc_policy_buffer_free(doc);
    return EXIT_OK;
}
