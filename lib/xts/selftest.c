/*
 * lib/xts/selftest.c - the known-answer test every XTS backend passes before
 * this process trusts it (the Linux crypto manager's and FIPS 140's power-on
 * self-tests are the model).
 *
 * xts.c runs it once per backend per process, the first time that backend
 * would be chosen or asked for. One run covers, for XTS-AES-256 and
 * XTS-AES-128: a 3-sector call of 512-byte sectors starting at sector
 * 2^64-2 (so it is multi-sector, crosses the 2^64 wrap and goes through the
 * batched tweak encryption and the grouped block loop), and a 345-byte data
 * unit with a raw tweak (21 whole blocks: a 16-block group, a vector's worth
 * of single blocks, then ciphertext stealing over a 9-byte tail). Both are
 * encrypted and the SHA-256 of all four outputs is compared with a constant
 * computed independently with OpenSSL's EVP XTS; each output is then
 * decrypted and must give the plaintext back, so both directions are tested.
 * A one-sector call (its own fast path) of sector 2^64-1 must match the
 * multi-sector call's middle sector, encrypting and decrypting.
 * The key is a public test pattern, so the context lives on the stack.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <sodium.h>
#include <string.h>

#include "xts/xts_impl.h"

#define KAT_SECTOR 512u
#define KAT_SECTORS 3u
#define KAT_UNIT 345u /* 21 * 16 + 9 */
#define KAT_OUT (KAT_SECTOR * KAT_SECTORS + KAT_UNIT)

/* SHA-256 over, for the 64-byte then the 32-byte key, the 1536 bytes of the
 * sector call's ciphertext followed by the 345 bytes of the unit's. */
static const uint8_t kat_digest[32] = {
    0x62, 0xc1, 0x05, 0x1c, 0x75, 0xd3, 0x04, 0xa1, 0x72, 0x28, 0x57, 0xf2, 0x32, 0xdf, 0x59, 0x84,
    0xa8, 0x1a, 0x2c, 0xfb, 0x2d, 0x9d, 0x50, 0x6c, 0x09, 0xda, 0x31, 0x01, 0x05, 0x82, 0x58, 0xfa,
};

typedef struct kat_buffers {
    uint8_t pt[KAT_SECTOR * KAT_SECTORS];
    uint8_t out[KAT_OUT];
    uint8_t back[KAT_SECTOR * KAT_SECTORS];
} kat_buffers;

/* One key size: encrypt into b->out (hashed by the caller), decrypt back. */
static vmenc_status kat_one(const vmenc_xts_backend *backend, size_t key_len, kat_buffers *b) {
    uint8_t key[VMENC_XTS_KEYBYTES_256];
    const unsigned variant = key_len == VMENC_XTS_KEYBYTES_256 ? 0 : 1;
    for (size_t i = 0; i < key_len; i++)
        key[i] = (uint8_t)(0x5a ^ (i * 29) ^ (variant * 0x33));
    uint8_t tweak[16];
    for (size_t i = 0; i < 16; i++)
        tweak[i] = (uint8_t)(0xc3 + 17 * i);

    vmenc_xts_block blk __attribute__((aligned(64)));
    memset(&blk, 0, sizeof(blk));
    vmenc_status rv = vmenc_xts_setup(&blk, backend, key, key_len, KAT_SECTOR);
    const uint64_t first = UINT64_MAX - 1;
    const size_t sectors_len = sizeof(b->pt);
    if (rv == VMENC_OK)
        rv = backend->sectors(&blk.x, true, first, b->pt, b->out, KAT_SECTORS);
    /* The one-sector call has its own code path (the per-I/O fast path):
     * sector 2^64-1 alone must match the middle sector of the run above,
     * both ways. */
    if (rv == VMENC_OK)
        rv = backend->sectors(&blk.x, true, first + 1, b->pt + KAT_SECTOR, b->back, 1);
    if (rv == VMENC_OK && memcmp(b->back, b->out + KAT_SECTOR, KAT_SECTOR) != 0)
        rv = VMENC_E_SELFTEST;
    if (rv == VMENC_OK)
        rv = backend->sectors(&blk.x, false, first + 1, b->out + KAT_SECTOR, b->back, 1);
    if (rv == VMENC_OK && memcmp(b->back, b->pt + KAT_SECTOR, KAT_SECTOR) != 0)
        rv = VMENC_E_SELFTEST;
    if (rv == VMENC_OK)
        rv = backend->unit(&blk.x, true, tweak, b->pt, b->out + sectors_len, KAT_UNIT);
    if (rv == VMENC_OK)
        rv = backend->sectors(&blk.x, false, first, b->out, b->back, KAT_SECTORS);
    if (rv == VMENC_OK && memcmp(b->back, b->pt, sectors_len) != 0)
        rv = VMENC_E_SELFTEST;
    if (rv == VMENC_OK)
        rv = backend->unit(&blk.x, false, tweak, b->out + sectors_len, b->back, KAT_UNIT);
    if (rv == VMENC_OK && memcmp(b->back, b->pt, KAT_UNIT) != 0)
        rv = VMENC_E_SELFTEST;
    vmenc_xts_teardown(&blk);
    return rv;
}

vmenc_status vmenc_xts_selftest_run(const vmenc_xts_backend *backend) {
    if (backend == NULL)
        return VMENC_E_SELFTEST;
    kat_buffers b;
    for (size_t i = 0; i < sizeof(b.pt); i++)
        b.pt[i] = (uint8_t)(i * 131 + 7);
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    vmenc_status rv = kat_one(backend, VMENC_XTS_KEYBYTES_256, &b);
    if (rv == VMENC_OK)
        crypto_hash_sha256_update(&h, b.out, sizeof(b.out));
    if (rv == VMENC_OK)
        rv = kat_one(backend, VMENC_XTS_KEYBYTES_128, &b);
    uint8_t digest[32];
    crypto_hash_sha256_update(&h, b.out, sizeof(b.out));
    crypto_hash_sha256_final(&h, digest);
    if (rv == VMENC_OK && memcmp(digest, kat_digest, sizeof(digest)) != 0)
        rv = VMENC_E_SELFTEST;
    /* Any failure, whatever its kind, means "do not trust this backend". */
    return rv == VMENC_OK ? VMENC_OK : VMENC_E_SELFTEST;
}
