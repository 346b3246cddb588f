/*
 * tests/support/audit_mirror_dir.c - the directory-backed TEST DOUBLE of
 * the cluster audit mirror (see audit_mirror_dir.h). Files:
 * <host>.records (the lines, in order), <host>.head ("<seq> <64 hex>\n").
 * Safety rule: every append is a compare-and-swap on the head under the
 * host's flock, all or nothing (records, then head).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#define _GNU_SOURCE
#include "audit_mirror_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static bool host_ok(const char *h) {
    return h != NULL && h[0] != '\0' && h[0] != '.' && strchr(h, '/') == NULL && strlen(h) < 200;
}

static void path_of(const audit_mirror_dir *d, const char *host, const char *ext, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s.%s", d->dir, host, ext);
}

static vmenc_status read_head(const audit_mirror_dir *d, const char *host, uint64_t *seq,
                              uint8_t hash[VMENC_AUDIT_HASH_BYTES]) {
    char p[768];
    path_of(d, host, "head", p, sizeof(p));
    *seq = 0;
    memset(hash, 0, VMENC_AUDIT_HASH_BYTES);
    FILE *f = fopen(p, "r");
    if (f == NULL)
        return VMENC_OK;
    unsigned long long s = 0;
    char hex[65] = {0};
    int n = fscanf(f, "%llu %64s", &s, hex);
    fclose(f);
    if (n != 2 || strlen(hex) != 64)
        return VMENC_E_PARSE;
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return VMENC_E_PARSE;
        hash[i] = (uint8_t)v;
    }
    *seq = s;
    return VMENC_OK;
}

static vmenc_status d_append(audit_mirror *m, const char *host, uint64_t first_seq, uint64_t last_seq,
                             const uint8_t *lines, size_t len, const uint8_t head[VMENC_AUDIT_HASH_BYTES]) {
    audit_mirror_dir *d = (audit_mirror_dir *)m;
    if (!host_ok(host) || first_seq == 0 || last_seq < first_seq || len == 0 || lines[len - 1] != '\n')
        return VMENC_E_INVALID_ARG;
    if (d->fail_appends > 0) {
        d->fail_appends--;
        return VMENC_E_KMS_UNAVAILABLE;
    }
    char p[768];
    path_of(d, host, "lock", p, sizeof(p));
    int lk = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lk < 0 || flock(lk, LOCK_EX) != 0) {
        if (lk >= 0)
            close(lk);
        return VMENC_E_IO;
    }
    uint64_t cur;
    uint8_t h[VMENC_AUDIT_HASH_BYTES];
    vmenc_status rv = read_head(d, host, &cur, h);
    if (rv == VMENC_OK && cur != first_seq - 1) {
        d->conflicts++;
        rv = VMENC_E_CONFLICT;
    }
    if (rv == VMENC_OK) {
        path_of(d, host, "records", p, sizeof(p));
        FILE *f = fopen(p, "ab");
        if (f == NULL || fwrite(lines, 1, len, f) != len)
            rv = VMENC_E_IO;
        if (f != NULL && fclose(f) != 0)
            rv = VMENC_E_IO;
    }
    if (rv == VMENC_OK) {
        path_of(d, host, "head", p, sizeof(p));
        char tmp[800];
        snprintf(tmp, sizeof(tmp), "%s.tmp", p);
        FILE *f = fopen(tmp, "w");
        if (f == NULL) {
            rv = VMENC_E_IO;
        } else {
            fprintf(f, "%llu ", (unsigned long long)last_seq);
            for (int i = 0; i < 32; i++)
                fprintf(f, "%02x", head[i]);
            fprintf(f, "\n");
            if (fclose(f) != 0 || rename(tmp, p) != 0)
                rv = VMENC_E_IO;
        }
    }
    if (rv == VMENC_OK)
        d->appends++;
    close(lk);
    return rv;
}

static vmenc_status d_head(audit_mirror *m, const char *host, uint64_t *out_seq,
                           uint8_t out_hash[VMENC_AUDIT_HASH_BYTES]) {
    if (!host_ok(host))
        return VMENC_E_INVALID_ARG;
    return read_head((audit_mirror_dir *)m, host, out_seq, out_hash);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static vmenc_status d_list_hosts(audit_mirror *m, audit_mirror_host_cb cb, void *ctx) {
    audit_mirror_dir *d = (audit_mirror_dir *)m;
    DIR *dir = opendir(d->dir);
    if (dir == NULL)
        return VMENC_E_IO;
    char *names[256];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL && n < 256) {
        size_t l = strlen(e->d_name);
        if (l > 8 && strcmp(e->d_name + l - 8, ".records") == 0)
            names[n++] = strndup(e->d_name, l - 8);
    }
    closedir(dir);
    qsort(names, n, sizeof(*names), cmp_str);
    bool stop = false;
    for (size_t i = 0; i < n; i++) {
        if (!stop && cb(ctx, names[i]) != 0)
            stop = true;
        free(names[i]);
    }
    return VMENC_OK;
}

static vmenc_status d_read(audit_mirror *m, const char *host, uint64_t from_seq, audit_mirror_line_cb cb,
                           void *ctx) {
    audit_mirror_dir *d = (audit_mirror_dir *)m;
    if (!host_ok(host))
        return VMENC_E_INVALID_ARG;
    char p[768];
    path_of(d, host, "records", p, sizeof(p));
    FILE *f = fopen(p, "rb");
    if (f == NULL)
        return VMENC_OK;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    /* The double stores lines only: their seq is read back from the line
     * (a mirror proper keys each record by host and seq). */
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] == '\n')
            len--;
        const char *s = strstr(line, "\"seq\":");
        unsigned long long seq = s ? strtoull(s + 6, NULL, 10) : 0;
        if (seq < from_seq)
            continue;
        if (cb(ctx, seq, (const uint8_t *)line, (size_t)len) != 0)
            break;
    }
    free(line);
    fclose(f);
    return VMENC_OK;
}

static const audit_mirror_ops k_dir_ops = {
    .struct_size = sizeof(audit_mirror_ops),
    .append = d_append,
    .head = d_head,
    .list_hosts = d_list_hosts,
    .read = d_read,
    .destroy = NULL,
};

void audit_mirror_dir_init(audit_mirror_dir *m, const char *dir) {
    memset(m, 0, sizeof(*m));
    m->base.ops = &k_dir_ops;
    snprintf(m->dir, sizeof(m->dir), "%s", dir);
}
