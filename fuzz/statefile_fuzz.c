/*
 * fuzz/statefile_fuzz.c - the state-file reader on hostile files: the
 * input is written as a file in a private temporary directory and opened
 * with the class and index its header claims, under a fixed VM key and
 * UUID (the corpus's valid files were made with them). Everything that
 * opens is read whole, a write is made and read back (an oracle: the bytes
 * written must come back, the rest must not change), and the file must
 * reopen. Nothing may crash, leak or return unauthenticated bytes.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vm/io/statefile.h"

#define FUZZ_UUID "0f8fad5b-d9cb-469f-a165-70867728950e"
/* Files bigger than this are cut: the format's cost is per chunk. */
#define MAX_INPUT (4u * 65600u)

static int g_dirfd = -1;
static vmenc_dek *g_key;
static char g_path[] = "/tmp/vmenc-sf-fuzz-XXXXXX";

/* teardown leaves no temporary behind after a run. */
static void teardown(void) {
    (void)unlinkat(g_dirfd, "f.nvram", 0);
    close(g_dirfd);
    (void)rmdir(g_path);
    vmenc_dek_free(g_key);
}

static void setup(void) {
    if (g_dirfd >= 0)
        return;
    if (vmenc_init() != VMENC_OK)
        abort();
    if (mkdtemp(g_path) == NULL)
        abort();
    g_dirfd = open(g_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    uint8_t k[64];
    for (size_t i = 0; i < sizeof(k); i++)
        k[i] = (uint8_t)(i * 13 + 5);
    if (g_dirfd < 0 || vmenc_dek_new_from_bytes(k, sizeof(k), &g_key) != VMENC_OK)
        abort();
    atexit(teardown);
}

static void put(const uint8_t *data, size_t size) {
    int fd = openat(g_dirfd, "f.nvram", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (size > 0 && write(fd, data, size) != (ssize_t)size))
        abort();
    close(fd);
}

/* read_all reads the file in odd-sized pieces; returns a copy or NULL. */
static uint8_t *read_all(vm_sf *f, uint64_t *out_size) {
    uint64_t size = 0;
    if (vm_sf_size(f, &size) != VMENC_OK || size > MAX_INPUT)
        abort();
    uint8_t *buf = malloc(size + 1);
    for (uint64_t off = 0; off < size;) {
        size_t n = 0;
        if (vm_sf_pread(f, off, 7000, buf + off, &n) != VMENC_OK) {
            free(buf);
            return NULL;
        }
        if (n == 0)
            abort();
        off += n;
    }
    *out_size = size;
    return buf;
}

static void write_and_check(vm_sf *f, uint8_t *model, uint64_t size, const uint8_t *data, size_t len) {
    uint64_t off = size > 0 ? (data[0] * 257u + data[len - 1]) % (size + 1) : 0;
    size_t n = len < 100 ? len : 100;
    if (vm_sf_pwrite(f, off, data, n) != VMENC_OK)
        abort();
    uint64_t new_size = 0;
    uint8_t *back = read_all(f, &new_size);
    if (back == NULL || new_size != (off + n > size ? off + n : size) || memcmp(back + off, data, n) != 0 ||
        memcmp(back, model, off < size ? off : size) != 0)
        abort();
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    if (size > MAX_INPUT)
        size = MAX_INPUT;
    uint8_t cls = 1;
    uint32_t index = 0;
    (void)vm_sf_parse_header(data, size, &cls, &index, NULL);
    put(data, size);
    vm_sf *f = NULL;
    if (vm_sf_open(g_dirfd, "f.nvram", cls, index, FUZZ_UUID, g_key, 0, false, &f) != VMENC_OK) {
        if (f != NULL)
            abort();
        return 0;
    }
    uint64_t psize = 0;
    uint8_t *model = read_all(f, &psize);
    if (model != NULL && size > 0)
        write_and_check(f, model, psize, data, size);
    free(model);
    if (vm_sf_close(f) != VMENC_OK)
        abort();
    /* A file that opened and was written must open again. */
    if (model != NULL && size > 0) {
        if (vm_sf_open(g_dirfd, "f.nvram", cls, index, FUZZ_UUID, g_key, VMENC_VM_FILE_READONLY, false, &f) !=
            VMENC_OK)
            abort();
        if (vm_sf_close(f) != VMENC_OK)
            abort();
    }
    return 0;
}
