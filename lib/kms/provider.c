/*
 * lib/kms/provider.c - guarded calls into a KMS provider's vtable, the
 * built-in factory dispatch, and small helpers for provider configuration.
 *
 * The vtable rules (kms.h): a member is called only if it lies entirely
 * within ops->struct_size and is non-NULL; a provider's answers are checked
 * before they reach the caller (IDs NUL-terminated within bounds, output
 * lengths within capacity, objects non-NULL), and a provider that breaks the
 * contract gets VMENC_E_KMS_PROTOCOL, which a cluster treats as an endpoint
 * fault. Out-parameters are written only on success: providers write into
 * scratch buffers first (secure memory where the output is secret).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdlib.h>
#include <string.h>

#include "kms/kmip/kmip_provider.h"
#include "kms/kms_internal.h"
#include "kms/pkcs11/pkcs11_provider.h"
#include "vmenc/kms.h"

/* The size of the first published ops table: every member up to free. */
#define OPS_V1_SIZE (offsetof(vmenc_kms_provider_ops, free) + sizeof(void (*)(vmenc_kms_provider *)))

#define HAS_OP(ops, member)                                                                     \
    ((offsetof(vmenc_kms_provider_ops, member) + sizeof((ops)->member) <= (ops)->struct_size) && \
     (ops)->member != NULL)

vmenc_status vmenc_kms_provider_check(const vmenc_kms_provider *p) {
    VMENC_ENSURE_REF(p);
    VMENC_ENSURE_REF(p->ops);
    VMENC_ENSURE(p->struct_size >= sizeof(vmenc_kms_provider), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(p->ops->struct_size >= OPS_V1_SIZE, VMENC_E_ABI_VERSION);
    VMENC_ENSURE(p->ops->abi_version != 0, VMENC_E_ABI_VERSION);
    return VMENC_OK;
}

/* A provider may only return VMENC_OK or a negative status. */
static vmenc_status sane_status(vmenc_status st) {
    return (int)st > 0 ? VMENC_E_KMS_PROTOCOL : st;
}

static vmenc_status check_key_id(const char *key_id) {
    VMENC_ENSURE_REF(key_id);
    size_t n = strnlen(key_id, VMENC_KEY_ID_MAX + 1);
    VMENC_ENSURE(n > 0 && n <= VMENC_KEY_ID_MAX, VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

vmenc_status vmenc_kms_provider_create_kek(vmenc_kms_provider *p, const char *name, uint32_t timeout_ms,
                                          char *out_id, size_t out_id_cap) {
    VMENC_GUARD(vmenc_kms_provider_check(p));
    VMENC_ENSURE_REF(out_id);
    VMENC_ENSURE(out_id_cap > 0, VMENC_E_BUFFER_TOO_SMALL);
    VMENC_ENSURE(HAS_OP(p->ops, create_kek), VMENC_E_UNIMPLEMENTED);
    char id[VMENC_KMS_KEY_ID_CAP + 1];
    memset(id, 0, sizeof(id));
    /* The provider sees one byte less than the scratch buffer, so a missing
     * terminator is caught. */
    vmenc_status st = sane_status(p->ops->create_kek(p, name, timeout_ms, id, VMENC_KMS_KEY_ID_CAP));
    if (st != VMENC_OK)
        return st;
    size_t n = strnlen(id, VMENC_KMS_KEY_ID_CAP);
    VMENC_ENSURE(n > 0 && n <= VMENC_KEY_ID_MAX, VMENC_E_KMS_PROTOCOL);
    for (size_t i = 0; i < n; i++)
        VMENC_ENSURE((unsigned char)id[i] >= 0x20 && id[i] != 0x7f, VMENC_E_KMS_PROTOCOL);
    VMENC_ENSURE(n < out_id_cap, VMENC_E_BUFFER_TOO_SMALL);
    memcpy(out_id, id, n + 1);
    return VMENC_OK;
}

vmenc_status vmenc_kms_provider_get_kek(vmenc_kms_provider *p, const char *key_id, uint32_t timeout_ms,
                                       vmenc_kek **out) {
    VMENC_GUARD(vmenc_kms_provider_check(p));
    VMENC_GUARD(check_key_id(key_id));
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(HAS_OP(p->ops, get_kek), VMENC_E_UNIMPLEMENTED);
    vmenc_kek *kek = NULL;
    vmenc_status st = sane_status(p->ops->get_kek(p, key_id, timeout_ms, &kek));
    if (st != VMENC_OK) {
        vmenc_kek_free(kek); /* a provider that failed must not hand anything out */
        return st;
    }
    VMENC_ENSURE(kek != NULL, VMENC_E_KMS_PROTOCOL);
    *out = kek;
    return VMENC_OK;
}

static vmenc_status check_wrap_args(vmenc_kms_provider *p, const char *key_id,
                                    const vmenc_kms_wrap_params *params, const uint8_t *in, size_t in_len,
                                    const uint8_t *out, size_t *out_len) {
    VMENC_GUARD(vmenc_kms_provider_check(p));
    VMENC_GUARD(check_key_id(key_id));
    VMENC_ENSURE_REF(params);
    VMENC_ENSURE(params->struct_size >= offsetof(vmenc_kms_wrap_params, aad_len) + sizeof(size_t),
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(in != NULL && in_len > 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    switch (params->mech) {
    case VMENC_KMS_WRAP_AES_KWP:
        break;
    case VMENC_KMS_WRAP_AES_KW:
        VMENC_ENSURE(in_len % 8 == 0, VMENC_E_BAD_LENGTH);
        break;
    case VMENC_KMS_WRAP_AES_GCM:
        VMENC_ENSURE(params->iv != NULL && params->iv_len == 12, VMENC_E_INVALID_ARG);
        VMENC_ENSURE(params->aad != NULL || params->aad_len == 0, VMENC_E_INVALID_ARG);
        break;
    default:
        return VMENC_E_BAD_ALGORITHM;
    }
    return VMENC_OK;
}

vmenc_status vmenc_kms_provider_wrap(vmenc_kms_provider *p, const char *key_id,
                                     const vmenc_kms_wrap_params *params, const uint8_t *in, size_t in_len,
                                     uint32_t timeout_ms, uint8_t *out, size_t out_cap, size_t *out_len) {
    VMENC_GUARD(check_wrap_args(p, key_id, params, in, in_len, out, out_len));
    VMENC_ENSURE(HAS_OP(p->ops, wrap), VMENC_E_UNIMPLEMENTED);
    VMENC_ENSURE(out_cap > 0, VMENC_E_BUFFER_TOO_SMALL);
    uint8_t *tmp = malloc(out_cap);
    if (tmp == NULL)
        return VMENC_E_NOMEM;
    size_t n = SIZE_MAX;
    vmenc_status st = sane_status(p->ops->wrap(p, key_id, params, in, in_len, timeout_ms, tmp, out_cap, &n));
    if (st == VMENC_OK && (n == 0 || n > out_cap))
        st = VMENC_E_KMS_PROTOCOL;
    if (st == VMENC_OK) {
        memcpy(out, tmp, n);
        *out_len = n;
    }
    vmenc_memzero(tmp, out_cap);
    free(tmp);
    return st;
}

vmenc_status vmenc_kms_provider_unwrap(vmenc_kms_provider *p, const char *key_id,
                                       const vmenc_kms_wrap_params *params, const uint8_t *in, size_t in_len,
                                       uint32_t timeout_ms, uint8_t *out, size_t out_cap, size_t *out_len) {
    VMENC_GUARD(check_wrap_args(p, key_id, params, in, in_len, out, out_len));
    VMENC_ENSURE(HAS_OP(p->ops, unwrap), VMENC_E_UNIMPLEMENTED);
    VMENC_ENSURE(out_cap > 0, VMENC_E_BUFFER_TOO_SMALL);
    /* The plaintext is a secret: the scratch buffer is secure memory. */
    uint8_t *tmp = vmenc_secure_alloc(out_cap);
    if (tmp == NULL)
        return VMENC_E_NOMEM;
    size_t n = SIZE_MAX;
    vmenc_status st = sane_status(p->ops->unwrap(p, key_id, params, in, in_len, timeout_ms, tmp, out_cap, &n));
    if (st == VMENC_OK && (n == 0 || n > out_cap))
        st = VMENC_E_KMS_PROTOCOL;
    if (st == VMENC_OK) {
        memcpy(out, tmp, n);
        *out_len = n;
    }
    vmenc_secure_free(tmp);
    return st;
}

vmenc_status vmenc_kms_provider_revoke_kek(vmenc_kms_provider *p, const char *key_id, uint32_t timeout_ms) {
    VMENC_GUARD(vmenc_kms_provider_check(p));
    VMENC_GUARD(check_key_id(key_id));
    VMENC_ENSURE(HAS_OP(p->ops, revoke_kek), VMENC_E_UNIMPLEMENTED);
    return sane_status(p->ops->revoke_kek(p, key_id, timeout_ms));
}

vmenc_status vmenc_kms_provider_destroy_kek(vmenc_kms_provider *p, const char *key_id, uint32_t timeout_ms) {
    VMENC_GUARD(vmenc_kms_provider_check(p));
    VMENC_GUARD(check_key_id(key_id));
    VMENC_ENSURE(HAS_OP(p->ops, destroy_kek), VMENC_E_UNIMPLEMENTED);
    return sane_status(p->ops->destroy_kek(p, key_id, timeout_ms));
}

vmenc_status vmenc_kms_provider_health(vmenc_kms_provider *p, uint32_t timeout_ms) {
    VMENC_GUARD(vmenc_kms_provider_check(p));
    VMENC_ENSURE(HAS_OP(p->ops, health), VMENC_E_UNIMPLEMENTED);
    return sane_status(p->ops->health(p, timeout_ms));
}

void vmenc_kms_provider_free(vmenc_kms_provider *p) {
    if (p == NULL || vmenc_kms_provider_check(p) != VMENC_OK)
        return;
    if (HAS_OP(p->ops, free))
        p->ops->free(p);
}

/* ---- built-in types ------------------------------------------------------ */

typedef struct builtin_type {
    const char *name;
    vmenc_kms_provider_factory factory;
} builtin_type;

static const builtin_type k_builtins[] = {
    {"file", vmenc_file_provider_factory},
    {"kmip", vmenc_kmip_provider_factory},
    {"pkcs11", vmenc_pkcs11_provider_factory},
};

bool vmenc_kms_builtin_type_name(const char *name) {
    for (size_t i = 0; i < VMENC_ARRAY_LEN(k_builtins); i++)
        if (strcmp(k_builtins[i].name, name) == 0)
            return true;
    return false;
}

vmenc_status vmenc_kms_provider_new_builtin(const vmenc_kms_endpoint_config *cfg, vmenc_kms_provider **out) {
    VMENC_ENSURE_REF(cfg);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(cfg->struct_size >= offsetof(vmenc_kms_endpoint_config, secret_len) + sizeof(size_t),
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE_REF(cfg->type);
    VMENC_ENSURE(cfg->secret != NULL || cfg->secret_len == 0, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());
    for (size_t i = 0; i < VMENC_ARRAY_LEN(k_builtins); i++) {
        if (strcmp(k_builtins[i].name, cfg->type) != 0)
            continue;
        vmenc_kms_provider *p = NULL;
        vmenc_status st = k_builtins[i].factory(NULL, cfg, &p);
        if (st != VMENC_OK)
            return sane_status(st);
        if (vmenc_kms_provider_check(p) != VMENC_OK)
            return VMENC_E_INTERNAL;
        *out = p;
        return VMENC_OK;
    }
    return VMENC_E_NO_SUCH_PROVIDER;
}

/* ---- helpers --------------------------------------------------------------- */

bool vmenc_kms_status_fails_over(vmenc_status st) {
    switch (st) {
    case VMENC_E_KMS:              /* generic: the endpoint could not serve */
    case VMENC_E_KMS_UNAVAILABLE:
    case VMENC_E_KMS_TIMEOUT:
    case VMENC_E_KMS_TLS:
    case VMENC_E_KMS_CERT_VERIFY:  /* this endpoint's identity is wrong; another may be right */
    case VMENC_E_KMS_NAME_MISMATCH:
    case VMENC_E_KMS_PROTOCOL:     /* garbled answer */
    case VMENC_E_KMS_WRONG_KEY:    /* answer contradicts the known key check value */
    case VMENC_E_TOKEN_NOT_FOUND:
    case VMENC_E_IO:
    case VMENC_E_LOCKED:
    case VMENC_E_INTERRUPTED:
        return true;
    default:
        return false;
    }
}

const char *vmenc_kms_config_option(const char *const *options, const char *key) {
    if (options == NULL || key == NULL)
        return NULL;
    size_t klen = strlen(key);
    for (size_t i = 0; options[i] != NULL; i++) {
        if (strncmp(options[i], key, klen) == 0 && options[i][klen] == '=')
            return options[i] + klen + 1;
    }
    return NULL;
}

bool vmenc_kms_parse_u64(const char *s, uint64_t *out) {
    if (s == NULL || *s == '\0')
        return false;
    uint64_t v = 0;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}
