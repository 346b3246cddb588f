/*
 * lib/keys/dek_xts.c - an XTS context straight from a DEK object, so the key
 * bytes go from one secure-memory region (the DEK) to another (the XTS key
 * schedule) without a copy in caller memory.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include "keys/keys_impl.h"
#include "vmenc/xts.h"

vmenc_status vmenc_xts_new_from_dek(const vmenc_dek *dek, uint32_t sector_size, vmenc_xts **out) {
    VMENC_ENSURE(dek != NULL && out != NULL, VMENC_E_INVALID_ARG);
    return vmenc_xts_new(dek->bytes, VMENC_DEK_BYTES, sector_size, out);
}
