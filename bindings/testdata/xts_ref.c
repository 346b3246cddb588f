/*
 * bindings/testdata/xts_ref.c - the reference the binding tests compare
 * against: XTS-AES ciphertext of stdin, sector by sector with tweak = sector
 * number (128-bit little endian), computed by OpenSSL (an independent
 * implementation) or by libvmenc called from C (the same library the
 * bindings wrap, reached without them).
 *
 *   xts_ref openssl|vmenc KEYHEX FIRST_SECTOR SECTOR_SIZE < plain > cipher
 *
 * Build: cc xts_ref.c -o xts_ref -lcrypto [-DWITH_VMENC $(pkg-config --cflags --libs vmenc)]
 */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef WITH_VMENC
#include <vmenc/vmenc.h>
#endif

static int hexkey(const char *h, uint8_t *out, size_t *len) {
    size_t n = strlen(h);
    if (n % 2 || n / 2 > 64)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(h + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    *len = n / 2;
    return 0;
}

int main(int argc, char **argv) {
    uint8_t key[64];
    size_t key_len;
    if (argc != 5 || hexkey(argv[2], key, &key_len) != 0) {
        fprintf(stderr, "usage: xts_ref openssl|vmenc KEYHEX FIRST_SECTOR SECTOR_SIZE\n");
        return 2;
    }
    uint64_t sector = strtoull(argv[3], NULL, 10);
    size_t ss = strtoul(argv[4], NULL, 10);
    uint8_t *in = malloc(ss), *out = malloc(ss);
    int use_vmenc = strcmp(argv[1], "vmenc") == 0;
#ifdef WITH_VMENC
    vmenc_xts *x = NULL;
    if (use_vmenc && vmenc_xts_new(key, key_len, (uint32_t)ss, &x) != VMENC_OK)
        return 1;
#else
    if (use_vmenc) {
        fprintf(stderr, "xts_ref: built without vmenc\n");
        return 2;
    }
#endif
    const EVP_CIPHER *c = key_len == 64 ? EVP_aes_256_xts() : EVP_aes_128_xts();
    while (fread(in, 1, ss, stdin) == ss) {
        if (use_vmenc) {
#ifdef WITH_VMENC
            if (vmenc_xts_encrypt(x, sector, in, out, ss) != VMENC_OK)
                return 1;
#endif
        } else {
            uint8_t iv[16] = {0};
            for (int i = 0; i < 8; i++)
                iv[i] = (uint8_t)(sector >> (8 * i));
            EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
            int n = 0;
            if (!ctx || !EVP_EncryptInit_ex(ctx, c, NULL, key, iv) ||
                !EVP_EncryptUpdate(ctx, out, &n, in, (int)ss) || (size_t)n != ss)
                return 1;
            EVP_CIPHER_CTX_free(ctx);
        }
        fwrite(out, 1, ss, stdout);
        sector++;
    }
#ifdef WITH_VMENC
    vmenc_xts_free(x);
#endif
    free(in);
    free(out);
    return 0;
}
