/*
 * fuzz/pkcs11_key_id_fuzz.c - the PKCS#11 provider's KEK ID parser
 * ("id:<hex>", "label:<text>", "<text>") with a round-trip oracle: anything
 * that parses formats canonically, the canonical form is never longer than
 * the input, parses back to the same reference, and formats to itself.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kms/pkcs11/pkcs11_provider.h"

static void format(const vmenc_p11_key_ref *ref, uint8_t *buf, size_t cap, size_t *len) {
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, buf, cap);
    vmenc_p11_format_key_id(ref, &cbb);
    if (!vmenc_cbb_ok(&cbb))
        abort();
    *len = cbb.len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vmenc_p11_key_ref ref, again;
    memset(&ref, 0xa5, sizeof(ref));
    vmenc_p11_key_ref before = ref;
    if (vmenc_p11_parse_key_id(data, size, &ref) != VMENC_OK) {
        if (memcmp(&ref, &before, sizeof(ref)) != 0)
            abort(); /* failure must leave the out-parameter alone */
        return 0;
    }
    if (ref.len == 0 || ref.len > VMENC_KEY_ID_MAX || (ref.by_id && ref.len > VMENC_P11_CKA_ID_MAX))
        abort();
    uint8_t s1[VMENC_KEY_ID_MAX], s2[VMENC_KEY_ID_MAX];
    size_t l1 = 0, l2 = 0;
    format(&ref, s1, sizeof(s1), &l1);
    if (l1 > size)
        abort();
    if (vmenc_p11_parse_key_id(s1, l1, &again) != VMENC_OK)
        abort();
    if (again.by_id != ref.by_id || again.len != ref.len || memcmp(again.bytes, ref.bytes, ref.len) != 0)
        abort();
    format(&again, s2, sizeof(s2), &l2);
    if (l2 != l1 || memcmp(s1, s2, l1) != 0)
        abort();
    return 0;
}
