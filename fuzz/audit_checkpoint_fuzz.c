/*
 * fuzz/audit_checkpoint_fuzz.c - libFuzzer harness for the sealed audit
 * checkpoint (lib/audit/checkpoint.h; the format is in docs/audit.md "The
 * sealed checkpoint").
 *
 * Oracle 1 (round trip): input that parses is serialised again and must be
 * the input byte for byte (the parser accepts one encoding per
 * checkpoint). Oracle 2: opening it under the harness key succeeds exactly
 * when it parses, carries this key's check value and its mac recomputed by
 * sealing a copy matches; never any other status. The corpus holds
 * checkpoints sealed under that key, so mutations reach the mac check.
 * Safety rule of the harness: abort() on any disagreement.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdlib.h>
#include <string.h>

#include "audit/checkpoint.h"
#include "core/internal.h"

/* The key the corpus was sealed with: bytes 0x00..0x1f (as audit_log_fuzz). */
static const uint8_t k_key[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                  16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static audit_key key;
    static int have_key;
    if (!have_key) {
        if (audit_key_init(&key, k_key, sizeof(k_key)) != VMENC_OK)
            abort();
        have_key = 1;
    }
    audit_checkpoint cp;
    vmenc_status ps = audit_checkpoint_parse(size ? data : NULL, size, &cp);
    vmenc_status os = audit_checkpoint_open(&key, size ? data : NULL, size, &cp);
    if (ps != VMENC_OK) {
        if (os != ps || (ps != VMENC_E_TRUNCATED && ps != VMENC_E_BAD_MAGIC && ps != VMENC_E_BAD_VERSION &&
                         ps != VMENC_E_PARSE && ps != VMENC_E_TRAILING_DATA))
            abort();
        return 0;
    }
    if (size != AUDIT_CHECKPOINT_BYTES)
        abort();
    uint8_t out[AUDIT_CHECKPOINT_BYTES];
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, out, sizeof(out));
    audit_checkpoint_serialise(&cbb, &cp);
    if (vmenc_cbb_status(&cbb) != VMENC_OK || vmenc_cbb_len(&cbb) != size || memcmp(out, data, size) != 0)
        abort();
    /* Re-seal a copy under the key: equal bytes iff open accepted it. */
    audit_checkpoint resealed = cp;
    if (audit_checkpoint_seal(&key, &resealed) != VMENC_OK)
        abort();
    bool same = memcmp(resealed.kid, cp.kid, sizeof(cp.kid)) == 0 && memcmp(resealed.mac, cp.mac, sizeof(cp.mac)) == 0;
    if (same != (os == VMENC_OK))
        abort();
    if (os != VMENC_OK && os != VMENC_E_AUTH && os != VMENC_E_AUDIT_TAMPERED)
        abort();
    if (os == VMENC_E_AUTH && memcmp(resealed.kid, cp.kid, sizeof(cp.kid)) == 0)
        abort();
    return 0;
}
