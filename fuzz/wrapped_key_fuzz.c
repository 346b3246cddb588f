/*
 * fuzz/wrapped_key_fuzz.c - the wrapped-key record parsers (binary and
 * text) with a round-trip oracle: anything that parses must serialise back
 * to exactly the input (both forms are canonical), and re-parse to the same
 * record. Parsed records are also unwrapped under a fixed KEK to drive the
 * AAD/binding code; that must never crash and must only ever succeed with a
 * DEK whose halves differ.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keys/keys_internal.h"

/* The corpus's valid records were made with this KEK and context. */
static const uint8_t k_kek[32] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
                                  0xcc, 0xdd, 0xee, 0xf0, 0x01, 0x12, 0x23, 0x34, 0x45, 0x56, 0x67,
                                  0x78, 0x89, 0x9a, 0xab, 0xbc, 0xcd, 0xde, 0xef, 0xf1, 0x02};
static const vmenc_wrap_context k_ctx = {sizeof(vmenc_wrap_context), "vm-1", "disk-0", "disk"};

static void check_unwrap(const vmenc_wrapped_key *wk) {
    static vmenc_kek *kek;
    if (kek == NULL && vmenc_kek_new_from_bytes(k_kek, sizeof(k_kek), &kek) != VMENC_OK)
        abort();
    vmenc_dek *dek = NULL;
    if (vmenc_wrapped_key_unwrap(wk, kek, &k_ctx, &dek) == VMENC_OK) {
        const uint8_t *b = vmenc_dek_bytes_internal(dek);
        if (b == NULL || memcmp(b, b + 32, 32) == 0)
            abort();
        vmenc_dek_free(dek);
    } else if (dek != NULL) {
        abort(); /* failure must leave the out-parameter alone */
    }
}

static void binary_round_trip(const uint8_t *data, size_t size) {
    vmenc_wrapped_key *wk = NULL, *again = NULL;
    if (vmenc_wrapped_key_parse(data, size, &wk) != VMENC_OK) {
        if (wk != NULL)
            abort();
        return;
    }
    uint8_t *out = NULL, *out2 = NULL;
    size_t out_len = 0, out2_len = 0;
    if (vmenc_wrapped_key_serialize(wk, &out, &out_len) != VMENC_OK)
        abort();
    if (out_len != size || memcmp(out, data, size) != 0)
        abort();
    if (vmenc_wrapped_key_parse(out, out_len, &again) != VMENC_OK ||
        vmenc_wrapped_key_serialize(again, &out2, &out2_len) != VMENC_OK)
        abort();
    if (out2_len != out_len || memcmp(out, out2, out_len) != 0 ||
        vmenc_wrapped_key_alg(wk) != vmenc_wrapped_key_alg(again) ||
        strcmp(vmenc_wrapped_key_kek_id(wk), vmenc_wrapped_key_kek_id(again)) != 0 ||
        strcmp(vmenc_wrapped_key_provider_alias(wk), vmenc_wrapped_key_provider_alias(again)) != 0)
        abort();
    /* The text form of a parsed record parses back to the same bytes. */
    char *text = NULL;
    vmenc_wrapped_key *from_text = NULL;
    uint8_t *out3 = NULL;
    size_t out3_len = 0;
    if (vmenc_wrapped_key_to_text(wk, &text) != VMENC_OK ||
        vmenc_wrapped_key_parse_text(text, strlen(text), &from_text) != VMENC_OK ||
        vmenc_wrapped_key_serialize(from_text, &out3, &out3_len) != VMENC_OK || out3_len != size ||
        memcmp(out3, data, size) != 0)
        abort();
    check_unwrap(wk);
    vmenc_buffer_free(out);
    vmenc_buffer_free(out2);
    vmenc_buffer_free(out3);
    vmenc_buffer_free(text);
    vmenc_wrapped_key_free(wk);
    vmenc_wrapped_key_free(again);
    vmenc_wrapped_key_free(from_text);
}

static void text_round_trip(const uint8_t *data, size_t size) {
    vmenc_wrapped_key *wk = NULL;
    if (vmenc_wrapped_key_parse_text((const char *)data, size, &wk) != VMENC_OK) {
        if (wk != NULL)
            abort();
        return;
    }
    char *text = NULL;
    if (vmenc_wrapped_key_to_text(wk, &text) != VMENC_OK)
        abort();
    if (strlen(text) != size || memcmp(text, data, size) != 0)
        abort(); /* strict parsing: only the canonical text is accepted */
    check_unwrap(wk);
    vmenc_buffer_free(text);
    vmenc_wrapped_key_free(wk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    binary_round_trip(data, size);
    text_round_trip(data, size);
    return 0;
}
