/*
 * lib/kms/pkcs11/keyid.c - KEK ID strings: "id:<hex>" names a CKA_ID,
 * "label:<text>" or a bare "<text>" a CKA_LABEL. Parsed through the bounded
 * cursor; formatted canonically so parse -> format -> parse is the identity.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <string.h>

#include "kms/pkcs11/pkcs11_provider.h"

#define ID_PREFIX "id:"
#define LABEL_PREFIX "label:"

static bool has_prefix(const vmenc_cbs *c, const char *p) {
    size_t n = strlen(p);
    return vmenc_cbs_len(c) >= n && memcmp(vmenc_cbs_data(c), p, n) == 0;
}

static int hexval(uint8_t c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

vmenc_status vmenc_p11_parse_key_id(const uint8_t *s, size_t len, vmenc_p11_key_ref *out) {
    VMENC_ENSURE_REF(s);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(len > 0 && len <= VMENC_KEY_ID_MAX, VMENC_E_INVALID_ARG);
    vmenc_p11_key_ref ref;
    memset(&ref, 0, sizeof(ref));
    vmenc_cbs c;
    vmenc_cbs_init(&c, s, len);
    if (has_prefix(&c, ID_PREFIX)) {
        (void)vmenc_cbs_skip(&c, strlen(ID_PREFIX));
        size_t n = vmenc_cbs_len(&c);
        VMENC_ENSURE(n >= 2 && n % 2 == 0 && n / 2 <= VMENC_P11_CKA_ID_MAX, VMENC_E_INVALID_ARG);
        ref.by_id = true;
        uint8_t hi, lo;
        while (vmenc_cbs_get_u8(&c, &hi) && vmenc_cbs_get_u8(&c, &lo)) {
            int h = hexval(hi), l = hexval(lo);
            VMENC_ENSURE(h >= 0 && l >= 0, VMENC_E_INVALID_ARG);
            ref.bytes[ref.len++] = (uint8_t)(h << 4 | l);
        }
    } else {
        if (has_prefix(&c, LABEL_PREFIX))
            (void)vmenc_cbs_skip(&c, strlen(LABEL_PREFIX));
        ref.len = vmenc_cbs_len(&c);
        VMENC_ENSURE(ref.len > 0, VMENC_E_INVALID_ARG);
        /* No control characters (NUL included): IDs end up in records,
         * logs and audit events. */
        for (size_t i = 0; i < ref.len; i++) {
            uint8_t b = vmenc_cbs_data(&c)[i];
            VMENC_ENSURE(b >= 0x20 && b != 0x7f, VMENC_E_INVALID_ARG);
        }
        VMENC_ENSURE(vmenc_cbs_copy_bytes(&c, ref.bytes, ref.len), VMENC_E_INTERNAL);
    }
    *out = ref;
    return VMENC_OK;
}

void vmenc_p11_format_key_id(const vmenc_p11_key_ref *ref, vmenc_cbb *out) {
    static const char hex[] = "0123456789abcdef";
    if (ref->by_id) {
        vmenc_cbb_add_bytes(out, (const uint8_t *)ID_PREFIX, strlen(ID_PREFIX));
        for (size_t i = 0; i < ref->len; i++) {
            vmenc_cbb_add_u8(out, (uint8_t)hex[ref->bytes[i] >> 4]);
            vmenc_cbb_add_u8(out, (uint8_t)hex[ref->bytes[i] & 15]);
        }
        return;
    }
    vmenc_cbs c;
    vmenc_cbs_init(&c, ref->bytes, ref->len);
    /* A label that reads like a prefixed ID needs the explicit prefix. */
    if (has_prefix(&c, ID_PREFIX) || has_prefix(&c, LABEL_PREFIX))
        vmenc_cbb_add_bytes(out, (const uint8_t *)LABEL_PREFIX, strlen(LABEL_PREFIX));
    vmenc_cbb_add_bytes(out, ref->bytes, ref->len);
}
