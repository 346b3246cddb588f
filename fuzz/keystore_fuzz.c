/*
 * fuzz/keystore_fuzz.c - the file provider's keystore parsers, with a
 * round-trip oracle. The first input byte picks the target:
 *
 *   even: the sealed file (header + ciphertext). Parse the header, write it
 *         back with the ciphertext: the bytes must be identical. When the
 *         header asks for the minimum KDF cost (1 pass, 8 KiB), also try to
 *         open it with the passphrase "fuzz" (seeds are made with it); a
 *         file that opens is re-sealed and re-opened, and both key tables
 *         must be equal.
 *   odd:  the decrypted key table. Parse, serialise: identical bytes; parse
 *         again: equal tables.
 *
 * abort() on any mismatch.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "kms/file/keystore.h"

static void check_file(const uint8_t *data, size_t size) {
    vmenc_cbs cbs;
    vmenc_cbs_init(&cbs, data, size);
    vmenc_ks_header h;
    if (vmenc_ks_header_parse(&cbs, &h) != VMENC_OK)
        return;
    vmenc_cbb cbb;
    if (vmenc_cbb_init(&cbb, size) != VMENC_OK)
        return;
    vmenc_ks_header_write(&cbb, &h);
    vmenc_cbb_add_bytes(&cbb, vmenc_cbs_data(&cbs), vmenc_cbs_len(&cbs));
    uint8_t *out = NULL;
    size_t out_len = 0;
    if (vmenc_cbb_finish(&cbb, &out, &out_len) != VMENC_OK)
        abort();
    if (out_len != size || memcmp(out, data, size) != 0)
        abort();
    free(out);

    if (h.opslimit != 1 || h.memlimit_kib != 8)
        return; /* keep each run cheap */
    vmenc_secret *pass = NULL, *master = NULL;
    if (vmenc_secret_from((const uint8_t *)"fuzz", 4, &pass) != VMENC_OK)
        return;
    vmenc_ks_store *s = NULL, *s2 = NULL;
    if (vmenc_ks_derive(pass, &h, &master) == VMENC_OK && vmenc_ks_open(data, size, &h, master, &s) == VMENC_OK) {
        uint8_t *file = NULL;
        size_t file_len = 0;
        if (vmenc_ks_seal(s, master, &h, &file, &file_len) != VMENC_OK)
            abort();
        vmenc_cbs_init(&cbs, file, file_len);
        vmenc_ks_header h2;
        if (vmenc_ks_header_parse(&cbs, &h2) != VMENC_OK || vmenc_ks_open(file, file_len, &h2, master, &s2) != VMENC_OK)
            abort();
        if (!vmenc_ks_store_equal(s, s2))
            abort();
        free(file);
    }
    vmenc_ks_store_free(s);
    vmenc_ks_store_free(s2);
    vmenc_secret_free(master);
    vmenc_secret_free(pass);
}

static void check_plain(const uint8_t *data, size_t size) {
    vmenc_ks_store *s = NULL, *s2 = NULL;
    if (vmenc_ks_plain_parse(data, size, &s) != VMENC_OK)
        return;
    uint8_t *out = NULL;
    size_t out_len = 0;
    if (vmenc_ks_plain_serialize(s, &out, &out_len) != VMENC_OK)
        abort();
    if (out_len != size || memcmp(out, data, size) != 0)
        abort();
    if (vmenc_ks_plain_parse(out, out_len, &s2) != VMENC_OK || !vmenc_ks_store_equal(s, s2))
        abort();
    vmenc_secure_free(out);
    vmenc_ks_store_free(s);
    vmenc_ks_store_free(s2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0 || vmenc_init() != VMENC_OK)
        return 0;
    if (data[0] & 1)
        check_plain(data + 1, size - 1);
    else
        check_file(data + 1, size - 1);
    return 0;
}
