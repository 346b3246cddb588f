/*
 * fuzz/policy_seal_fuzz.c - libFuzzer harness for the sealed policy
 * document's trailer (lib/workspace/policy_seal.c). Oracles:
 *   - a trailer that parses is canonical: written back from its generation
 *     and MAC it gives the same bytes, and JSON + trailer is the input;
 *   - without a trailer the JSON part is the whole input; a malformed one
 *     is cut off all the same (the re-seal path drops it);
 *   - sealing the JSON part under a fixed key and splitting the result
 *     gives back the JSON, the generation, and a seal that verifies, and
 *     the seal does not verify for another workspace ID.
 * abort() on any mismatch. Pure: no file, no key provider.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "workspace/ws_internal.h"

static const char k_id[] = "0b5f2c58-1e7a-4c3e-9f59-0c6a1d2e3f40";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ws_seal_view v;
    vmenc_status st = ws_seal_split(data, size, &v);
    if (v.json != data || v.json_len > size)
        abort();
    if (st == VMENC_OK && v.has_seal) {
        char t[WS_SEAL_TRAILER_MAX];
        size_t n = ws_seal_trailer(v.generation, v.mac, t, sizeof(t));
        if (n == 0 || v.json_len + n != size || memcmp(data + v.json_len, t, n) != 0)
            abort(); /* the parser accepted a non-canonical trailer */
    } else if (st == VMENC_OK) {
        if (v.json_len != size)
            abort();
    } else if (st != VMENC_E_PARSE || !v.has_seal || v.json_len >= size) {
        abort();
    }

    /* Seal what came before the trailer, then read it back. */
    if (v.json_len == 0 || v.json[v.json_len - 1] != '\n' || vmenc_ensure_init() != VMENC_OK)
        return 0;
    vmenc_secret *chain = NULL, *key = NULL;
    uint8_t seed[64];
    for (size_t i = 0; i < sizeof(seed); i++)
        seed[i] = (uint8_t)i;
    if (vmenc_secret_from(seed, sizeof(seed), &chain) != VMENC_OK || ws_seal_derive_key(chain, &key) != VMENC_OK)
        abort();
    uint64_t gen = v.generation + 1;
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    if (ws_seal_build(key, k_id, gen, v.json, v.json_len, &sealed, &sealed_len) != VMENC_OK)
        abort();
    ws_seal_view w;
    if (ws_seal_split(sealed, sealed_len, &w) != VMENC_OK || !w.has_seal || !w.well_formed ||
        w.generation != gen || w.json_len != v.json_len || memcmp(w.json, v.json, v.json_len) != 0)
        abort(); /* what we write we must read */
    if (ws_seal_verify(key, k_id, &w) != VMENC_OK)
        abort();
    if (ws_seal_verify(key, "another-workspace", &w) != VMENC_E_AUTH)
        abort(); /* bound to the workspace ID */
    free(sealed);
    vmenc_secret_free(key);
    vmenc_secret_free(chain);
    return 0;
}
