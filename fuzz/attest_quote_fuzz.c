/*
 * fuzz/attest_quote_fuzz.c - the parsers of what a host sends with a quote
 * (lib/attest/tpm_codec.c; layouts in docs/attest.md): TPMS_ATTEST and
 * TPMT_SIGNATURE, each with a round-trip oracle (parse, marshal, the same
 * bytes), and the text form of a PCR selection (what parses selects at
 * least one PCR of a known bank, equals itself, and its values length is a
 * whole number of digests). The full verifier runs on the input as attest
 * bytes with a fixed AK: it must refuse (the signature cannot verify), never
 * crash.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attest/attest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An ECC P-256 AK as tpm2_createak makes it (fuzz/corpus/attest_public/ak-ecc). */
static const uint8_t k_ak[] = {
    0x00, 0x58, 0x00, 0x23, 0x00, 0x0b, 0x00, 0x05, 0x00, 0x72, 0x00, 0x00, 0x00, 0x10, 0x00, 0x18,
    0x00, 0x0b, 0x00, 0x03, 0x00, 0x10, 0x00, 0x20, 0x38, 0xf2, 0xf4, 0x31, 0x56, 0x17, 0xd2, 0xeb,
    0x18, 0xaa, 0xd6, 0x2e, 0x96, 0x72, 0x4a, 0xf1, 0x4e, 0xf6, 0x12, 0x5e, 0x4a, 0x3d, 0xfa, 0xd5,
    0xf9, 0x99, 0x8c, 0xdc, 0xb4, 0xae, 0x3a, 0x56, 0x00, 0x20, 0x42, 0x73, 0x16, 0xbe, 0x2c, 0xad,
    0xfa, 0x60, 0x4f, 0xc9, 0xe2, 0x43, 0x08, 0x7b, 0x9c, 0xa0, 0x7c, 0x5f, 0x60, 0x0c, 0x43, 0x06,
    0xec, 0x44, 0xdf, 0x65, 0xcc, 0x5c, 0x5b, 0x80, 0xab, 0x57,
};

static void quote_round_trip(const uint8_t *data, size_t size) {
    attest_quote q;
    if (attest_quote_parse(data, size, &q) != VMENC_OK)
        return;
    uint8_t *out = NULL;
    size_t out_len = 0;
    if (attest_quote_marshal(&q, &out, &out_len) != VMENC_OK || out_len != size || memcmp(out, data, size) != 0)
        abort();
    free(out);
    if (q.extra_data_len > ATTEST_NONCE_MAX || q.pcr_select.num_banks > ATTEST_PCR_BANKS_MAX)
        abort();
}

static void sig_round_trip(const uint8_t *data, size_t size) {
    attest_sig s;
    if (attest_sig_parse(data, size, &s) != VMENC_OK)
        return;
    uint8_t *out = NULL;
    size_t out_len = 0;
    if (attest_sig_marshal(&s, &out, &out_len) != VMENC_OK || out_len != size || memcmp(out, data, size) != 0)
        abort();
    free(out);
}

static void sel_text(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (text == NULL)
        return;
    memcpy(text, data, size);
    text[size] = '\0';
    attest_pcr_sel sel;
    if (attest_pcr_sel_parse(text, &sel) == VMENC_OK) {
        size_t n = attest_pcr_sel_values_len(&sel);
        if (n == 0 || n > (size_t)ATTEST_PCR_BANKS_MAX * ATTEST_PCR_MAX * 64u)
            abort();
        if (!attest_pcr_sel_equal(&sel, &sel))
            abort();
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    quote_round_trip(data, size);
    sig_round_trip(data, size);
    sel_text(data, size);
    static const uint8_t sig[] = {0x00, 0x18, 0x00, 0x0b, 0x00, 0x01, 0x01, 0x00, 0x01, 0x01};
    static const uint8_t nonce[2] = {0x00, 0x11};
    uint8_t zeros[96] = {0};
    attest_quote_result r;
    if (attest_quote_verify(k_ak, sizeof k_ak, data, size, sig, sizeof sig, nonce, sizeof nonce, "sha256:0,1,16",
                            zeros, sizeof zeros, NULL, 0, &r) == VMENC_OK)
        abort();
    return 0;
}
