/*
 * lib/workspace/config.c - the workspace configuration file (vmenc.conf):
 * parser and canonical writer in one place, so the grammar below is the
 * whole format (docs/workspace.md explains it for operators).
 *
 *   file     = *line                     ; LF line ends; at most 1 MiB
 *   line     = *WSP [ item ] *WSP [ comment ] LF   ; at most 4096 bytes
 *   item     = section / entry
 *   section  = "[" name [ 1*WSP DQUOTE alias DQUOTE ] "]"
 *   entry    = key *WSP "=" *WSP DQUOTE value DQUOTE
 *   comment  = "#" *(printable UTF-8)
 *   key      = 1*( %x61-7A / "_" )       ; lower case and '_'
 *   value    = *( printable UTF-8 except DQUOTE )   ; no escapes
 *
 * Sections and keys (unknown ones are errors: a typo must never fall back
 * to a default silently; a key given twice is an error unless repeatable):
 *   [workspace]  version (= "1", required), id (UUID, required)
 *   [host]       id (required), datastore, folder
 *   [policy]     path
 *   [audit]      log, key_provider (required), key (required, "vmwk1:...")
 *   [kms "A"]    type (required), endpoint (repeatable, >= 1),
 *                option (repeatable, "k=v"), secret_file
 *
 * The parser walks the text with the bounded cursor, one line at a time,
 * and reports the first problem with its line number.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workspace/ws_internal.h"
#include "vmenc/keys.h"

vmenc_status ws_set_error(vmenc_workspace_error *err, vmenc_status status, const char *file, uint32_t line,
                          const char *fmt, ...) {
    if (err != NULL && err->struct_size >= sizeof(*err)) {
        err->status = status;
        snprintf(err->file, sizeof(err->file), "%s", file ? file : "");
        err->line = line;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return status;
}

/* ---- model ----------------------------------------------------------------- */

void ws_kms_cleanup(ws_kms *k) {
    if (k == NULL)
        return;
    free(k->alias);
    free(k->type);
    for (size_t i = 0; i < k->num_endpoints; i++)
        free(k->endpoints[i]);
    free(k->endpoints);
    for (size_t i = 0; i < k->num_options; i++)
        free(k->options[i]);
    free(k->options);
    free(k->secret_file);
    memset(k, 0, sizeof(*k));
}

void ws_config_free(ws_config *cfg) {
    if (cfg == NULL)
        return;
    free(cfg->id);
    free(cfg->host_id);
    free(cfg->datastore);
    free(cfg->folder);
    free(cfg->policy_path);
    free(cfg->audit_log);
    free(cfg->audit_provider);
    free(cfg->audit_key);
    for (size_t i = 0; i < cfg->num_kms; i++)
        ws_kms_cleanup(&cfg->kms[i]);
    free(cfg->kms);
    free(cfg);
}

long ws_config_find_kms(const ws_config *cfg, const char *alias) {
    for (size_t i = 0; i < cfg->num_kms; i++)
        if (strcmp(cfg->kms[i].alias, alias) == 0)
            return (long)i;
    return -1;
}

/* ---- character classes ------------------------------------------------------ */

static bool is_wsp(uint8_t c) { return c == ' ' || c == '\t'; }


/* text_ok: printable UTF-8 (no control bytes), optionally without '"'. */
static bool text_ok(const uint8_t *p, size_t len, bool allow_quote) {
    for (size_t i = 0; i < len;) {
        if (p[i] < 0x20 || p[i] == 0x7f || (!allow_quote && p[i] == '"'))
            return false;
        size_t n = vmenc_utf8_seq_len(p + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

bool ws_value_ok(const char *v) { return v != NULL && text_ok((const uint8_t *)v, strlen(v), false); }

/* ---- schema ---------------------------------------------------------------- */

typedef enum { SEC_NONE, SEC_WORKSPACE, SEC_HOST, SEC_POLICY, SEC_AUDIT, SEC_KMS } section_id;

static const char *const section_names[] = {"", "workspace", "host", "policy", "audit", "kms"};

/* parse state: which sections and keys were seen. */
typedef struct parse_state {
    ws_config *cfg;
    vmenc_workspace_error *err;
    uint32_t line;
    section_id sec;
    bool seen_sec[6];
    bool seen_version;
    uint32_t section_line[6];
    uint32_t seen_keys; /* bits of keys seen in the current non-kms section */
} parse_state;

#define FAIL(st, status, ...) ws_set_error((st)->err, (status), NULL, (st)->line, __VA_ARGS__)

static vmenc_status dup_value(const uint8_t *p, size_t len, char **out) {
    char *s = malloc(len + 1);
    VMENC_ENSURE(s != NULL, VMENC_E_NOMEM);
    memcpy(s, p, len);
    s[len] = '\0';
    *out = s;
    return VMENC_OK;
}

static bool is_uuid(const char *s) {
    if (strlen(s) != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        char c = s[i];
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

static bool type_ok(const char *t) {
    size_t n = strlen(t);
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= '0' && t[i] <= '9') || t[i] == '_' || t[i] == '-'))
            return false;
    return true;
}

static bool alias_ok(const char *a) {
    size_t n = strlen(a);
    if (n == 0 || n > VMENC_PROVIDER_ALIAS_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (a[i] < 0x21 || a[i] > 0x7e || a[i] == '"')
            return false;
    return true;
}

vmenc_status ws_config_check_kms(const ws_kms *k, char *msg, size_t msg_cap) {
    if (k->alias == NULL || !alias_ok(k->alias)) {
        snprintf(msg, msg_cap, "a key provider alias is 1..63 printable ASCII characters without '\"' or space");
        return VMENC_E_PARSE;
    }
    if (k->type == NULL || !type_ok(k->type)) {
        snprintf(msg, msg_cap, "key provider '%s' needs a type (file, kmip, pkcs11)", k->alias);
        return VMENC_E_PARSE;
    }
    if (k->num_endpoints == 0) {
        snprintf(msg, msg_cap, "key provider '%s' needs at least one endpoint", k->alias);
        return VMENC_E_PARSE;
    }
    if (k->num_endpoints > VMENC_WORKSPACE_MAX_ENDPOINTS || k->num_options > VMENC_WORKSPACE_MAX_OPTIONS) {
        snprintf(msg, msg_cap, "key provider '%s' has too many endpoints or options", k->alias);
        return VMENC_E_LIMIT;
    }
    for (size_t i = 0; i < k->num_endpoints; i++) {
        if (!ws_value_ok(k->endpoints[i]) || k->endpoints[i][0] == '\0') {
            snprintf(msg, msg_cap, "key provider '%s': an endpoint is empty or not printable", k->alias);
            return VMENC_E_PARSE;
        }
    }
    for (size_t i = 0; i < k->num_options; i++) {
        const char *o = k->options[i];
        const char *eq = ws_value_ok(o) ? strchr(o, '=') : NULL;
        if (eq == NULL || eq == o) {
            snprintf(msg, msg_cap, "key provider '%s': an option must read \"key=value\"", k->alias);
            return VMENC_E_PARSE;
        }
    }
    if (k->secret_file != NULL && (k->secret_file[0] == '\0' || !ws_value_ok(k->secret_file))) {
        snprintf(msg, msg_cap, "key provider '%s': secret_file is empty", k->alias);
        return VMENC_E_PARSE;
    }
    return VMENC_OK;
}

static vmenc_status push_str(char ***arr, size_t *num, size_t limit, char *s) {
    if (*num >= limit) {
        free(s);
        return VMENC_E_LIMIT;
    }
    char **n = realloc(*arr, (*num + 1) * sizeof(*n));
    if (n == NULL) {
        free(s);
        return VMENC_E_NOMEM;
    }
    n[(*num)++] = s;
    *arr = n;
    return VMENC_OK;
}

/* set_once stores |val| in |*slot| unless the key was already given. */
static vmenc_status set_once(parse_state *st, char **slot, const char *key, char *val) {
    if (*slot != NULL) {
        free(val);
        return FAIL(st, VMENC_E_EXISTS, "'%s' is given twice in [%s]", key, section_names[st->sec]);
    }
    *slot = val;
    return VMENC_OK;
}

static vmenc_status entry_kms(parse_state *st, const char *key, char *val) {
    ws_kms *k = &st->cfg->kms[st->cfg->num_kms - 1];
    if (strcmp(key, "type") == 0)
        return set_once(st, &k->type, key, val);
    if (strcmp(key, "secret_file") == 0)
        return set_once(st, &k->secret_file, key, val);
    vmenc_status rv;
    if (strcmp(key, "endpoint") == 0)
        rv = push_str(&k->endpoints, &k->num_endpoints, VMENC_WORKSPACE_MAX_ENDPOINTS, val);
    else if (strcmp(key, "option") == 0)
        rv = push_str(&k->options, &k->num_options, VMENC_WORKSPACE_MAX_OPTIONS, val);
    else {
        free(val);
        return FAIL(st, VMENC_E_PARSE, "unknown key '%s' in [kms \"%s\"] (type, endpoint, option, secret_file)",
                    key, k->alias);
    }
    if (rv != VMENC_OK)
        return FAIL(st, rv, "too many '%s' entries in [kms \"%s\"]", key, k->alias);
    return VMENC_OK;
}

static vmenc_status entry(parse_state *st, const char *key, char *val) {
    ws_config *c = st->cfg;
    switch (st->sec) {
    case SEC_NONE:
        free(val);
        return FAIL(st, VMENC_E_PARSE, "'%s' outside any section: start with [workspace]", key);
    case SEC_WORKSPACE:
        if (strcmp(key, "version") == 0) {
            bool dup = st->seen_version, ok = strcmp(val, "1") == 0;
            st->seen_version = true;
            free(val);
            if (dup)
                return FAIL(st, VMENC_E_EXISTS, "'version' is given twice in [workspace]");
            return ok ? VMENC_OK : FAIL(st, VMENC_E_BAD_VERSION, "unsupported configuration version (this vmenc reads \"1\")");
        }
        if (strcmp(key, "id") == 0) {
            if (!is_uuid(val)) {
                free(val);
                return FAIL(st, VMENC_E_PARSE, "the workspace id must be a lower-case UUID");
            }
            return set_once(st, &c->id, key, val);
        }
        break;
    case SEC_HOST:
        if (strcmp(key, "id") == 0)
            return set_once(st, &c->host_id, key, val);
        if (strcmp(key, "datastore") == 0)
            return set_once(st, &c->datastore, key, val);
        if (strcmp(key, "folder") == 0)
            return set_once(st, &c->folder, key, val);
        break;
    case SEC_POLICY:
        if (strcmp(key, "path") == 0)
            return set_once(st, &c->policy_path, key, val);
        break;
    case SEC_AUDIT:
        if (strcmp(key, "log") == 0)
            return set_once(st, &c->audit_log, key, val);
        if (strcmp(key, "key_provider") == 0) {
            c->audit_provider_line = st->line;
            return set_once(st, &c->audit_provider, key, val);
        }
        if (strcmp(key, "key") == 0) {
            vmenc_wrapped_key *wk = NULL;
            vmenc_status rv = vmenc_wrapped_key_parse_text(val, strlen(val), &wk);
            vmenc_wrapped_key_free(wk);
            if (rv != VMENC_OK) {
                free(val);
                return FAIL(st, VMENC_E_PARSE, "the audit key is not a wrapped-key record (%s)", vmenc_strerror(rv));
            }
            c->audit_key_line = st->line;
            return set_once(st, &c->audit_key, key, val);
        }
        break;
    case SEC_KMS:
        return entry_kms(st, key, val);
    }
    free(val);
    return FAIL(st, VMENC_E_PARSE, "unknown key '%s' in [%s]", key, section_names[st->sec]);
}

/* ---- one line --------------------------------------------------------------- */

static void skip_wsp(vmenc_cbs *cbs) {
    uint8_t c;
    while (vmenc_cbs_peek_u8(cbs, &c) && is_wsp(c))
        (void)vmenc_cbs_skip(cbs, 1);
}

/* get_quoted reads DQUOTE value DQUOTE into a new string. */
static vmenc_status get_quoted(parse_state *st, vmenc_cbs *cbs, char **out) {
    uint8_t c;
    if (!vmenc_cbs_get_u8(cbs, &c) || c != '"')
        return FAIL(st, VMENC_E_PARSE, "expected a value in double quotes");
    const uint8_t *start = vmenc_cbs_data(cbs);
    size_t n = 0;
    while (vmenc_cbs_peek_u8(cbs, &c) && c != '"') {
        (void)vmenc_cbs_skip(cbs, 1);
        n++;
    }
    if (!vmenc_cbs_get_u8(cbs, &c))
        return FAIL(st, VMENC_E_PARSE, "the value has no closing double quote");
    if (!text_ok(start, n, false))
        return FAIL(st, VMENC_E_BAD_ENCODING, "the value holds a control character or invalid UTF-8");
    vmenc_status rv = dup_value(start, n, out);
    return rv == VMENC_OK ? rv : FAIL(st, rv, "out of memory");
}

/* rest_ok: after an item only blanks and an optional comment may follow. */
static vmenc_status rest_ok(parse_state *st, vmenc_cbs *cbs) {
    skip_wsp(cbs);
    uint8_t c;
    if (!vmenc_cbs_peek_u8(cbs, &c))
        return VMENC_OK;
    if (c != '#')
        return FAIL(st, VMENC_E_PARSE, "unexpected text after the item (comments start with '#')");
    return text_ok(vmenc_cbs_data(cbs), vmenc_cbs_len(cbs), true)
               ? VMENC_OK
               : FAIL(st, VMENC_E_BAD_ENCODING, "the comment holds a control character or invalid UTF-8");
}

static vmenc_status open_section(parse_state *st, const char *name, char *alias) {
    section_id id = SEC_NONE;
    for (size_t i = 1; i < VMENC_ARRAY_LEN(section_names); i++)
        if (strcmp(name, section_names[i]) == 0)
            id = (section_id)i;
    if (id == SEC_NONE) {
        free(alias);
        return FAIL(st, VMENC_E_PARSE, "unknown section [%s] (workspace, host, policy, audit, kms)", name);
    }
    if ((id == SEC_KMS) != (alias != NULL)) {
        free(alias);
        return FAIL(st, VMENC_E_PARSE, id == SEC_KMS ? "a [kms] section names its alias: [kms \"ALIAS\"]"
                                                     : "only [kms] sections carry a name");
    }
    if (id != SEC_KMS && st->seen_sec[id])
        return FAIL(st, VMENC_E_EXISTS, "section [%s] appears twice", name);
    if (id == SEC_WORKSPACE ? st->cfg->num_kms > 0 || st->seen_sec[SEC_HOST] || st->seen_sec[SEC_POLICY] ||
                                  st->seen_sec[SEC_AUDIT]
                            : !st->seen_sec[SEC_WORKSPACE]) {
        free(alias);
        return FAIL(st, VMENC_E_PARSE, "the file must start with the [workspace] section");
    }
    st->seen_sec[id] = true;
    st->section_line[id] = st->line;
    st->sec = id;
    if (id != SEC_KMS)
        return VMENC_OK;
    if (!alias_ok(alias)) {
        free(alias);
        return FAIL(st, VMENC_E_PARSE, "a key provider alias is 1..63 printable ASCII characters without '\"' or space");
    }
    if (ws_config_find_kms(st->cfg, alias) >= 0) {
        vmenc_status rv = FAIL(st, VMENC_E_EXISTS, "key provider \"%s\" is defined twice", alias);
        free(alias);
        return rv;
    }
    if (st->cfg->num_kms >= VMENC_WORKSPACE_MAX_KMS) {
        free(alias);
        return FAIL(st, VMENC_E_LIMIT, "more than %u key providers", VMENC_WORKSPACE_MAX_KMS);
    }
    ws_kms *n = realloc(st->cfg->kms, (st->cfg->num_kms + 1) * sizeof(*n));
    if (n == NULL) {
        free(alias);
        return FAIL(st, VMENC_E_NOMEM, "out of memory");
    }
    st->cfg->kms = n;
    memset(&n[st->cfg->num_kms], 0, sizeof(*n));
    n[st->cfg->num_kms].alias = alias;
    n[st->cfg->num_kms].line = st->line;
    st->cfg->num_kms++;
    return VMENC_OK;
}

static vmenc_status parse_section(parse_state *st, vmenc_cbs *cbs) {
    (void)vmenc_cbs_skip(cbs, 1); /* '[' */
    char name[16];
    size_t n = 0;
    uint8_t c;
    while (vmenc_cbs_peek_u8(cbs, &c) && c >= 'a' && c <= 'z') {
        if (n + 1 >= sizeof(name))
            return FAIL(st, VMENC_E_PARSE, "unknown section name");
        name[n++] = (char)c;
        (void)vmenc_cbs_skip(cbs, 1);
    }
    name[n] = '\0';
    char *alias = NULL;
    if (vmenc_cbs_peek_u8(cbs, &c) && is_wsp(c)) {
        skip_wsp(cbs);
        VMENC_GUARD(get_quoted(st, cbs, &alias));
    }
    if (!vmenc_cbs_get_u8(cbs, &c) || c != ']') {
        free(alias);
        return FAIL(st, VMENC_E_PARSE, "a section header reads [name] or [kms \"ALIAS\"]");
    }
    VMENC_GUARD(open_section(st, name, alias));
    return rest_ok(st, cbs);
}

static vmenc_status parse_entry(parse_state *st, vmenc_cbs *cbs) {
    char key[32];
    size_t n = 0;
    uint8_t c;
    while (vmenc_cbs_peek_u8(cbs, &c) && ((c >= 'a' && c <= 'z') || c == '_')) {
        if (n + 1 >= sizeof(key))
            return FAIL(st, VMENC_E_PARSE, "key too long");
        key[n++] = (char)c;
        (void)vmenc_cbs_skip(cbs, 1);
    }
    key[n] = '\0';
    if (n == 0)
        return FAIL(st, VMENC_E_PARSE, "expected a section header, a key = \"value\" entry or a comment");
    skip_wsp(cbs);
    if (!vmenc_cbs_get_u8(cbs, &c) || c != '=')
        return FAIL(st, VMENC_E_PARSE, "expected '=' after '%s'", key);
    skip_wsp(cbs);
    char *val = NULL;
    VMENC_GUARD(get_quoted(st, cbs, &val));
    vmenc_status rv = rest_ok(st, cbs);
    if (rv != VMENC_OK) {
        free(val);
        return rv;
    }
    return entry(st, key, val);
}

static vmenc_status parse_line(parse_state *st, vmenc_cbs *line) {
    skip_wsp(line);
    uint8_t c;
    if (!vmenc_cbs_peek_u8(line, &c))
        return VMENC_OK;
    if (c == '#')
        return rest_ok(st, line);
    if (c == '[')
        return parse_section(st, line);
    return parse_entry(st, line);
}

/* ---- whole file --------------------------------------------------------------- */

static vmenc_status finish(parse_state *st) {
    ws_config *c = st->cfg;
    st->line = 0;
    if (!st->seen_sec[SEC_WORKSPACE] || !st->seen_version || c->id == NULL)
        return FAIL(st, VMENC_E_PARSE, "[workspace] with version = \"1\" and id is required");
    st->line = st->section_line[SEC_HOST];
    if (!st->seen_sec[SEC_HOST] || c->host_id == NULL)
        return FAIL(st, VMENC_E_PARSE, "[host] with an id is required");
    st->line = st->section_line[SEC_AUDIT];
    if (!st->seen_sec[SEC_AUDIT] || c->audit_provider == NULL || c->audit_key == NULL)
        return FAIL(st, VMENC_E_PARSE, "[audit] with key_provider and key is required");
    for (size_t i = 0; i < c->num_kms; i++) {
        char msg[VMENC_WORKSPACE_MESSAGE_MAX];
        st->line = c->kms[i].line;
        vmenc_status rv = ws_config_check_kms(&c->kms[i], msg, sizeof(msg));
        if (rv != VMENC_OK)
            return FAIL(st, rv, "%s", msg);
    }
    st->line = c->audit_provider_line;
    if (ws_config_find_kms(c, c->audit_provider) < 0)
        return FAIL(st, VMENC_E_NOT_FOUND, "the audit key provider \"%s\" has no [kms] section",
                    c->audit_provider);
    char *const *paths[] = {&c->datastore, &c->folder, &c->policy_path, &c->audit_log};
    const char *const defaults[] = {WS_DEFAULT_DATASTORE, WS_DEFAULT_FOLDER, WS_DEFAULT_POLICY, WS_DEFAULT_AUDIT_LOG};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(paths); i++) {
        char **slot = (char **)paths[i];
        if (*slot == NULL && dup_value((const uint8_t *)defaults[i], strlen(defaults[i]), slot) != VMENC_OK)
            return FAIL(st, VMENC_E_NOMEM, "out of memory");
        if ((*slot)[0] == '\0')
            return FAIL(st, VMENC_E_PARSE, "datastore, folder, policy path and audit log may not be empty");
    }
    if (c->host_id[0] == '\0')
        return FAIL(st, VMENC_E_PARSE, "the host id may not be empty");
    return VMENC_OK;
}

vmenc_status ws_config_parse(const uint8_t *text, size_t len, vmenc_workspace_error *err, ws_config **out) {
    VMENC_ENSURE((text != NULL || len == 0) && out != NULL, VMENC_E_INVALID_ARG);
    parse_state st = {.err = err};
    if (len > VMENC_WORKSPACE_MAX_CONFIG)
        return FAIL(&st, VMENC_E_TOO_LARGE, "the configuration is larger than 1 MiB");
    st.cfg = calloc(1, sizeof(*st.cfg));
    VMENC_ENSURE(st.cfg != NULL, VMENC_E_NOMEM);
    vmenc_cbs cbs;
    vmenc_cbs_init(&cbs, text, len);
    vmenc_status rv = VMENC_OK;
    while (rv == VMENC_OK && vmenc_cbs_len(&cbs) > 0) {
        st.line++;
        const uint8_t *p = vmenc_cbs_data(&cbs);
        const uint8_t *nl = memchr(p, '\n', vmenc_cbs_len(&cbs));
        size_t n = nl ? (size_t)(nl - p) : vmenc_cbs_len(&cbs);
        vmenc_cbs line;
        (void)vmenc_cbs_get_bytes(&cbs, &line, n);
        if (nl != NULL)
            (void)vmenc_cbs_skip(&cbs, 1);
        if (n > VMENC_WORKSPACE_MAX_LINE)
            rv = FAIL(&st, VMENC_E_TOO_LARGE, "line longer than %u bytes", VMENC_WORKSPACE_MAX_LINE);
        else if (memchr(p, '\0', n) != NULL)
            rv = FAIL(&st, VMENC_E_BAD_ENCODING, "NUL byte in the configuration");
        else
            rv = parse_line(&st, &line);
    }
    if (rv == VMENC_OK)
        rv = finish(&st);
    if (rv != VMENC_OK) {
        ws_config_free(st.cfg);
        return rv;
    }
    *out = st.cfg;
    return VMENC_OK;
}

/* ---- canonical writer --------------------------------------------------------- */

static void put(vmenc_cbb *b, const char *s) { vmenc_cbb_add_bytes(b, (const uint8_t *)s, strlen(s)); }

static void put_entry(vmenc_cbb *b, const char *key, const char *val) {
    put(b, key);
    put(b, " = \"");
    put(b, val);
    put(b, "\"\n");
}

vmenc_status ws_config_serialize(const ws_config *c, char **out, size_t *out_len) {
    VMENC_ENSURE(c != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    vmenc_cbb b;
    VMENC_GUARD(vmenc_cbb_init(&b, 1024));
    vmenc_cbb_set_max(&b, VMENC_WORKSPACE_MAX_CONFIG);
    put(&b, "# vmenc workspace configuration (docs/workspace.md). No secrets here:\n"
            "# passphrases and PINs come from the caller or from secret_file.\n");
    put(&b, "[workspace]\n");
    put_entry(&b, "version", "1");
    put_entry(&b, "id", c->id);
    put(&b, "\n[host]\n");
    put_entry(&b, "id", c->host_id);
    put_entry(&b, "datastore", c->datastore);
    put_entry(&b, "folder", c->folder);
    put(&b, "\n[policy]\n");
    put_entry(&b, "path", c->policy_path);
    put(&b, "\n[audit]\n");
    put_entry(&b, "log", c->audit_log);
    put_entry(&b, "key_provider", c->audit_provider);
    put_entry(&b, "key", c->audit_key);
    for (size_t i = 0; i < c->num_kms; i++) {
        const ws_kms *k = &c->kms[i];
        put(&b, "\n[kms \"");
        put(&b, k->alias);
        put(&b, "\"]\n");
        put_entry(&b, "type", k->type);
        for (size_t j = 0; j < k->num_endpoints; j++)
            put_entry(&b, "endpoint", k->endpoints[j]);
        for (size_t j = 0; j < k->num_options; j++)
            put_entry(&b, "option", k->options[j]);
        if (k->secret_file != NULL)
            put_entry(&b, "secret_file", k->secret_file);
    }
    vmenc_cbb_add_u8(&b, 0);
    uint8_t *buf = NULL;
    size_t len = 0;
    VMENC_GUARD(vmenc_cbb_finish(&b, &buf, &len));
    *out = (char *)buf;
    *out_len = len - 1;
    return VMENC_OK;
}
