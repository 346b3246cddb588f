/*
 * lib/workspace/migrate_home.c - reading and writing the home stream's
 * text chunks (format: migrate_home.h, docs/migration.md). Pure: no I/O, no
 * locks, no keys; every byte is read through the bounded cursor, and
 * fuzz/migrate_home_fuzz.c checks that what parses builds back to exactly
 * the input. Safety rule: a file name that parses can only name a plain
 * file inside the home directory (no '/', no leading '.', no NUL).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdio.h>
#include <string.h>

#include "workspace/migrate_home.h"

static bool name_char(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

bool mh_file_name_ok(const char *name) {
    size_t n = strnlen(name, MH_NAME_MAX + 1);
    if (n == 0 || n > MH_NAME_MAX || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!name_char((uint8_t)name[i]))
            return false;
    return true;
}

/* get_literal consumes |lit| exactly. */
static bool get_literal(vmenc_cbs *c, const char *lit) {
    size_t n = strlen(lit);
    vmenc_cbs save = *c, got;
    if (!vmenc_cbs_get_bytes(c, &got, n) || memcmp(vmenc_cbs_data(&got), lit, n) != 0) {
        *c = save;
        return false;
    }
    return true;
}

/* get_token consumes 1..MH_NAME_MAX bytes up to (not including) |stop|,
 * each accepted by |ok|, into |out| (NUL-terminated). */
static bool get_token(vmenc_cbs *c, uint8_t stop, bool (*ok)(uint8_t), char *out) {
    const uint8_t *p = vmenc_cbs_data(c);
    size_t n = 0, len = vmenc_cbs_len(c);
    while (n < len && p[n] != stop) {
        if (n == MH_NAME_MAX || !ok(p[n]))
            return false;
        n++;
    }
    if (n == 0 || n == len)
        return false;
    if (!vmenc_cbs_copy_bytes(c, (uint8_t *)out, n))
        return false;
    out[n] = '\0';
    return vmenc_cbs_skip(c, 1);
}

static bool graph_char(uint8_t c) { return c > 0x20 && c < 0x7f; }

/* get_number consumes a canonical decimal up to |stop| (consumed too). */
static bool get_number(vmenc_cbs *c, uint8_t stop, uint64_t *out) {
    const uint8_t *p = vmenc_cbs_data(c);
    size_t len = vmenc_cbs_len(c), n = 0;
    uint64_t v = 0;
    while (n < len && p[n] >= '0' && p[n] <= '9') {
        uint64_t d = (uint64_t)(p[n] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
        n++;
    }
    if (n == 0 || n == len || p[n] != stop || (n > 1 && p[0] == '0'))
        return false;
    *out = v;
    return vmenc_cbs_skip(c, n + 1);
}

vmenc_status mh_manifest_parse(const uint8_t *text, size_t len, mh_manifest *out) {
    VMENC_ENSURE(text != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vmenc_cbs c;
    vmenc_cbs_init(&c, text, len);
    VMENC_ENSURE(len <= MH_TEXT_MAX, VMENC_E_PARSE);
    VMENC_ENSURE(get_literal(&c, "vmenc-migrate 1\nvm "), VMENC_E_PARSE);
    VMENC_ENSURE(get_token(&c, '\n', graph_char, out->vm), VMENC_E_PARSE);
    VMENC_ENSURE(get_literal(&c, "files "), VMENC_E_PARSE);
    VMENC_ENSURE(get_number(&c, '\n', &out->num_files), VMENC_E_PARSE);
    VMENC_ENSURE(get_literal(&c, "bytes "), VMENC_E_PARSE);
    VMENC_ENSURE(get_number(&c, '\n', &out->num_bytes), VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_len(&c) == 0, VMENC_E_PARSE);
    return VMENC_OK;
}

vmenc_status mh_file_parse(const uint8_t *text, size_t len, mh_file *out) {
    VMENC_ENSURE(text != NULL && out != NULL, VMENC_E_INVALID_ARG);
    vmenc_cbs c;
    vmenc_cbs_init(&c, text, len);
    VMENC_ENSURE(len <= MH_TEXT_MAX, VMENC_E_PARSE);
    VMENC_ENSURE(get_literal(&c, "file "), VMENC_E_PARSE);
    VMENC_ENSURE(get_token(&c, ' ', name_char, out->name), VMENC_E_PARSE);
    VMENC_ENSURE(out->name[0] != '.', VMENC_E_PARSE);
    VMENC_ENSURE(get_number(&c, '\n', &out->size), VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_len(&c) == 0, VMENC_E_PARSE);
    return VMENC_OK;
}

static vmenc_status put(uint8_t *out, size_t cap, size_t *out_len, int n) {
    VMENC_ENSURE(n > 0, VMENC_E_INTERNAL);
    VMENC_ENSURE((size_t)n < cap && (size_t)n <= MH_TEXT_MAX, VMENC_E_BUFFER_TOO_SMALL);
    *out_len = (size_t)n;
    return VMENC_OK;
}

vmenc_status mh_manifest_build(const mh_manifest *m, uint8_t *out, size_t cap, size_t *out_len) {
    VMENC_ENSURE(m != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    size_t n = strnlen(m->vm, sizeof(m->vm));
    VMENC_ENSURE(n > 0 && n <= MH_NAME_MAX, VMENC_E_INVALID_ARG);
    for (size_t i = 0; i < n; i++)
        VMENC_ENSURE(graph_char((uint8_t)m->vm[i]), VMENC_E_INVALID_ARG);
    /* snprintf needs room for its NUL, which is not part of the text */
    return put(out, cap, out_len,
               snprintf((char *)out, cap, "vmenc-migrate 1\nvm %s\nfiles %llu\nbytes %llu\n", m->vm,
                        (unsigned long long)m->num_files, (unsigned long long)m->num_bytes));
}

vmenc_status mh_file_build(const mh_file *f, uint8_t *out, size_t cap, size_t *out_len) {
    VMENC_ENSURE(f != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(mh_file_name_ok(f->name), VMENC_E_INVALID_ARG);
    return put(out, cap, out_len, snprintf((char *)out, cap, "file %s %llu\n", f->name, (unsigned long long)f->size));
}
