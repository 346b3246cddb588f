/*
 * lib/kms/pkcs11/config.c - the PKCS#11 provider from a generic endpoint
 * configuration ("key=value" options), and the factory the KMS core calls.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/pkcs11/pkcs11_provider.h"
#include "vmenc/kms_pkcs11.h"

#define MAX_OPTIONS 64

/* The value of option |key| if |opt| is "key=value", else NULL. */
static const char *option_value(const char *opt, const char *key) {
    vmenc_cbs c;
    vmenc_cbs_init(&c, (const uint8_t *)opt, strlen(opt));
    size_t n = strlen(key);
    uint8_t eq;
    if (vmenc_cbs_len(&c) <= n || memcmp(vmenc_cbs_data(&c), key, n) != 0)
        return NULL;
    if (!vmenc_cbs_skip(&c, n) || !vmenc_cbs_get_u8(&c, &eq) || eq != '=')
        return NULL;
    return (const char *)vmenc_cbs_data(&c);
}

static vmenc_status parse_bool(const char *v, bool *out) {
    if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0) {
        *out = true;
        return VMENC_OK;
    }
    if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0 || strcmp(v, "no") == 0) {
        *out = false;
        return VMENC_OK;
    }
    return VMENC_E_INVALID_ARG;
}

static const struct {
    vmenc_kms_wrap_mech mech;
    const char *name;
} k_mechs[] = {
    {VMENC_KMS_WRAP_AES_KWP, "kwp"},
    {VMENC_KMS_WRAP_AES_KW, "kw"},
    {VMENC_KMS_WRAP_AES_GCM, "gcm"},
};

static vmenc_status parse_mech(const char *v, vmenc_kms_wrap_mech *out) {
    for (size_t i = 0; i < VMENC_ARRAY_LEN(k_mechs); i++) {
        if (strcmp(v, k_mechs[i].name) == 0) {
            *out = k_mechs[i].mech;
            return VMENC_OK;
        }
    }
    return VMENC_E_INVALID_ARG;
}

static vmenc_status parse_sessions(const char *v, uint32_t *out) {
    VMENC_ENSURE(v[0] >= '1' && v[0] <= '9', VMENC_E_INVALID_ARG);
    uint32_t n = 0;
    for (const char *c = v; *c != '\0'; c++) {
        VMENC_ENSURE(*c >= '0' && *c <= '9', VMENC_E_INVALID_ARG);
        n = n * 10u + (uint32_t)(*c - '0');
        VMENC_ENSURE(n <= VMENC_PKCS11_MAX_SESSIONS, VMENC_E_INVALID_ARG);
    }
    *out = n;
    return VMENC_OK;
}

enum { OPT_TOKEN, OPT_MECH, OPT_KEY_LABEL, OPT_SESSIONS, OPT_FORGET, OPT_EXTRACTABLE, OPT_COUNT };
static const char *const option_names[OPT_COUNT] = {
    "token_label", "mechanism", "key_label", "max_sessions", "forget_pin", "allow_extractable_kek",
};

vmenc_status vmenc_p11_parse_options(const char *const *options, vmenc_pkcs11_config *out) {
    VMENC_ENSURE_REF(out);
    vmenc_pkcs11_config pc = *out;
    pc.token_label = NULL;
    pc.mechanism = 0;
    pc.key_label = NULL;
    pc.max_sessions = 0;
    pc.flags = 0;
    bool seen[OPT_COUNT] = {false};
    for (size_t i = 0; options != NULL && options[i] != NULL; i++) {
        VMENC_ENSURE(i < MAX_OPTIONS, VMENC_E_INVALID_ARG);
        const char *opt = options[i];
        const char *v = NULL;
        int which = -1;
        for (int k = 0; k < OPT_COUNT && v == NULL; k++) {
            v = option_value(opt, option_names[k]);
            which = k;
        }
        VMENC_ENSURE(v != NULL, VMENC_E_INVALID_ARG); /* unknown option */
        VMENC_ENSURE(!seen[which], VMENC_E_INVALID_ARG);
        seen[which] = true;
        bool b = false;
        switch (which) {
        case OPT_TOKEN:
            pc.token_label = v;
            break;
        case OPT_MECH:
            VMENC_GUARD(parse_mech(v, &pc.mechanism));
            break;
        case OPT_KEY_LABEL:
            pc.key_label = v;
            break;
        case OPT_SESSIONS:
            VMENC_GUARD(parse_sessions(v, &pc.max_sessions));
            break;
        case OPT_FORGET:
            VMENC_GUARD(parse_bool(v, &b));
            if (b)
                pc.flags |= VMENC_PKCS11_FORGET_PIN;
            break;
        case OPT_EXTRACTABLE:
            VMENC_GUARD(parse_bool(v, &b));
            if (b)
                pc.flags |= VMENC_PKCS11_ALLOW_EXTRACTABLE_KEK;
            break;
        default:
            return VMENC_E_INTERNAL;
        }
    }
    VMENC_ENSURE(seen[OPT_TOKEN], VMENC_E_INVALID_ARG);
    *out = pc;
    return VMENC_OK;
}

static void add_option(vmenc_cbb *out, const char *key, const char *value) {
    vmenc_cbb_add_bytes(out, (const uint8_t *)key, strlen(key));
    vmenc_cbb_add_u8(out, '=');
    vmenc_cbb_add_bytes(out, (const uint8_t *)value, strlen(value));
    vmenc_cbb_add_u8(out, 0);
}

void vmenc_p11_format_options(const vmenc_pkcs11_config *pc, vmenc_cbb *out) {
    if (pc->token_label != NULL)
        add_option(out, option_names[OPT_TOKEN], pc->token_label);
    for (size_t i = 0; i < VMENC_ARRAY_LEN(k_mechs); i++)
        if (pc->mechanism == k_mechs[i].mech)
            add_option(out, option_names[OPT_MECH], k_mechs[i].name);
    if (pc->key_label != NULL)
        add_option(out, option_names[OPT_KEY_LABEL], pc->key_label);
    if (pc->max_sessions != 0) {
        char n[16];
        snprintf(n, sizeof(n), "%u", (unsigned)pc->max_sessions);
        add_option(out, option_names[OPT_SESSIONS], n);
    }
    if (pc->flags & VMENC_PKCS11_FORGET_PIN)
        add_option(out, option_names[OPT_FORGET], "1");
    if (pc->flags & VMENC_PKCS11_ALLOW_EXTRACTABLE_KEK)
        add_option(out, option_names[OPT_EXTRACTABLE], "1");
}

vmenc_status vmenc_pkcs11_provider_new_from_endpoint(const vmenc_kms_endpoint_config *cfg,
                                                     vmenc_kms_provider **out) {
    VMENC_ENSURE_REF(cfg);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(cfg->struct_size >= sizeof(vmenc_kms_endpoint_config), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(cfg->type == NULL || strcmp(cfg->type, "pkcs11") == 0, VMENC_E_INVALID_ARG);
    vmenc_pkcs11_config pc;
    memset(&pc, 0, sizeof(pc));
    pc.struct_size = sizeof(pc);
    pc.module_path = cfg->address;
    pc.pin = cfg->secret;
    pc.pin_len = cfg->secret_len;
    VMENC_GUARD(vmenc_p11_parse_options(cfg->options, &pc));
    return vmenc_pkcs11_provider_new(&pc, out);
}

vmenc_status vmenc_pkcs11_provider_factory(void *arg, const vmenc_kms_endpoint_config *cfg,
                                           vmenc_kms_provider **out) {
    return vmenc_pkcs11_provider_new_from_endpoint(cfg, out);
}
