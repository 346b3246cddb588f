/*
 * fuzz/standalone_main.c - runs a libFuzzer harness without libFuzzer, as a
 * CI smoke test: replays every file of a corpus directory, then a bounded
 * number of deterministic mutations of them (bit flips, truncations,
 * duplications, random bytes). A harness signals a bug by crashing or
 * abort()ing; this driver returns 0 when every input ran.
 *
 * usage: NAME_smoke CORPUS_DIR_OR_FILE [NUM_MUTATIONS]
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    uint8_t *data;
    size_t len;
} input;

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static int read_file(const char *path, input *out) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while (buf != NULL && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (nb == NULL) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf == NULL)
        return -1;
    out->data = buf;
    out->len = len;
    return 0;
}

static void run(const uint8_t *d, size_t n) {
    /* Copy into an exact-size heap buffer so ASan sees over-reads. */
    uint8_t *copy = malloc(n ? n : 1);
    if (copy == NULL)
        return;
    if (n)
        memcpy(copy, d, n);
    LLVMFuzzerTestOneInput(copy, n);
    free(copy);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS [NUM_MUTATIONS]\n", argv[0]);
        return 2;
    }
    long mutations = argc > 2 ? strtol(argv[2], NULL, 10) : 1000;
    input *inputs = NULL;
    size_t num = 0;
    struct stat st;
    if (stat(argv[1], &st) == 0 && S_ISDIR(st.st_mode)) {
        DIR *dir = opendir(argv[1]);
        struct dirent *e;
        while (dir != NULL && (e = readdir(dir)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", argv[1], e->d_name);
            input in;
            if (read_file(path, &in) != 0)
                continue;
            input *ni = realloc(inputs, (num + 1) * sizeof(*inputs));
            if (ni == NULL) { free(in.data); break; }
            inputs = ni;
            inputs[num++] = in;
        }
        if (dir != NULL)
            closedir(dir);
    } else {
        input in;
        if (read_file(argv[1], &in) == 0) {
            inputs = malloc(sizeof(*inputs));
            if (inputs != NULL) inputs[num++] = in;
        }
    }
    run((const uint8_t *)"", 0);
    for (size_t i = 0; i < num; i++)
        run(inputs[i].data, inputs[i].len);

    uint8_t *buf = malloc(1 << 16);
    if (buf == NULL)
        return 1;
    for (long m = 0; m < mutations; m++) {
        size_t len;
        if (num == 0 || rnd() % 8 == 0) {
            len = rnd() % 512;
            for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)rnd();
        } else {
            input *src = &inputs[rnd() % num];
            len = src->len > (1 << 15) ? (1 << 15) : src->len;
            memcpy(buf, src->data, len);
            unsigned edits = 1 + rnd() % 4;
            for (unsigned k = 0; k < edits; k++) {
                switch (rnd() % 5) {
                case 0: if (len) buf[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8)); break;
                case 1: if (len) len = rnd() % len; break;
                case 2: if (len) buf[rnd() % len] = (uint8_t)rnd(); break;
                case 3: if (len && len * 2 < (1 << 16)) { memcpy(buf + len, buf, len); len *= 2; } break;
                case 4: if (len < (1 << 16) - 8) { for (int j = 0; j < 8; j++) buf[len++] = (uint8_t)rnd(); } break;
                }
            }
        }
        run(buf, len);
    }
    free(buf);
    for (size_t i = 0; i < num; i++)
        free(inputs[i].data);
    free(inputs);
    printf("%zu corpus inputs and %ld mutations ran without a crash\n", num, mutations);
    return 0;
}
