/*
 * fuzz/pkcs11_options_fuzz.c - the PKCS#11 provider's endpoint options
 * ("key=value" strings) with a round-trip oracle. The input is split at
 * newlines into option strings; whatever parses is formatted canonically,
 * must parse back to the same settings, and must format to the same bytes.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kms/pkcs11/pkcs11_provider.h"

#define MAX_OPTS 80

/* Splits |len| bytes at |sep| into NUL-terminated strings in |store|. */
static size_t split(const uint8_t *data, size_t len, uint8_t sep, char *store, const char **list) {
    size_t n = 0, start = 0;
    memcpy(store, data, len);
    store[len] = '\0';
    for (size_t i = 0; i <= len && n < MAX_OPTS; i++) {
        if (i == len || store[i] == (char)sep) {
            store[i] = '\0';
            list[n++] = store + start;
            start = i + 1;
        }
    }
    list[n] = NULL;
    return n;
}

static bool same_str(const char *a, const char *b) {
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void format(const vmenc_pkcs11_config *pc, uint8_t **out, size_t *out_len) {
    vmenc_cbb cbb;
    if (vmenc_cbb_init(&cbb, 64) != VMENC_OK)
        abort();
    vmenc_p11_format_options(pc, &cbb);
    if (vmenc_cbb_finish(&cbb, out, out_len) != VMENC_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096)
        return 0;
    char *store = malloc(size + 1);
    const char **list = malloc((MAX_OPTS + 1) * sizeof(*list));
    if (store == NULL || list == NULL)
        abort();
    split(data, size, '\n', store, list);
    vmenc_pkcs11_config pc, again;
    memset(&pc, 0, sizeof(pc));
    pc.struct_size = sizeof(pc);
    again = pc;
    if (vmenc_p11_parse_options(list, &pc) == VMENC_OK) {
        if (pc.token_label == NULL || pc.max_sessions > VMENC_PKCS11_MAX_SESSIONS)
            abort();
        uint8_t *f1 = NULL, *f2 = NULL;
        size_t l1 = 0, l2 = 0;
        format(&pc, &f1, &l1);
        char *store2 = malloc(l1 + 1);
        const char **list2 = malloc((MAX_OPTS + 1) * sizeof(*list2));
        if (store2 == NULL || list2 == NULL || l1 == 0 || f1[l1 - 1] != 0)
            abort();
        split(f1, l1 - 1, 0, store2, list2);
        if (vmenc_p11_parse_options(list2, &again) != VMENC_OK)
            abort();
        if (!same_str(pc.token_label, again.token_label) || !same_str(pc.key_label, again.key_label) ||
            pc.mechanism != again.mechanism || pc.max_sessions != again.max_sessions || pc.flags != again.flags)
            abort();
        format(&again, &f2, &l2);
        if (l1 != l2 || memcmp(f1, f2, l1) != 0)
            abort();
        free(f1);
        free(f2);
        free(store2);
        free(list2);
    } else if (pc.token_label != NULL || pc.flags != 0) {
        abort(); /* failure must leave the out-parameter alone */
    }
    free(store);
    free(list);
    return 0;
}
