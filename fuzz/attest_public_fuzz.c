/*
 * fuzz/attest_public_fuzz.c - the TPM2B_PUBLIC parser of lib/attest
 * (lib/attest/tpm_codec.c; layout in docs/attest.md) with a round-trip
 * oracle: anything that parses marshals back to exactly the input bytes.
 * The AK check and the name computation must not crash on what parses, a
 * key that passes the AK check has a 34-byte SHA-256 name equal to
 * attest_public_name's, and the AK blob view ("VMAK" v1) points inside the
 * input at a TPM2B_PUBLIC of the length it claims.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attest/attest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    attest_public p;
    if (attest_public_parse(data, size, &p) == VMENC_OK) {
        uint8_t *out = NULL;
        size_t out_len = 0;
        if (attest_public_marshal(&p, &out, &out_len) != VMENC_OK || out_len != size ||
            memcmp(out, data, size) != 0)
            abort();
        free(out);
        if (p.tpmt != data + 2 || p.tpmt_len + 2 != size)
            abort();
        uint8_t name[ATTEST_NAME_BYTES], name2[ATTEST_NAME_BYTES];
        attest_refusal r = ATTEST_ACCEPTED;
        vmenc_status s = attest_ak_check(data, size, name, &r);
        if ((s == VMENC_OK) != (r == ATTEST_ACCEPTED))
            abort();
        if (s == VMENC_OK && (attest_public_name(data, size, name2) != VMENC_OK ||
                              memcmp(name, name2, sizeof name) != 0))
            abort();
    }
    const uint8_t *pub = NULL;
    size_t pub_len = 0;
    if (attest_ak_blob_public(data, size, &pub, &pub_len) == VMENC_OK) {
        if (pub < data || pub_len < 2 || pub + pub_len > data + size ||
            pub_len != 2u + (((size_t)pub[0] << 8) | pub[1]))
            abort();
    }
    return 0;
}
