/*
 * fuzz/audit_log_fuzz.c - libFuzzer harness for the audit record parser and
 * the log verifier.
 *
 * Oracle 1 (round trip): every line of the input that parses as a record is
 * serialised again; the bytes must be the line itself (the parser accepts
 * only the canonical form), and parsing them again must give an equal
 * record. Oracle 2: the verifier, run over the whole input as a log under a
 * fixed key, must return a verdict consistent with its own report, and the
 * same verdict reading the input from a file (memfd) as from memory: the two
 * read paths differ (a bounded pread buffer vs direct access). abort()
 * on any mismatch. The corpus holds logs made under that same key, so
 * mutations get past the hash and reach the chain checks.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "audit/record.h"
#include "core/internal.h"

/* The key the corpus was written with: bytes 0x00..0x1f. */
static const uint8_t k_key[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                  16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

static void round_trip(const uint8_t *line, size_t len, audit_record *a, audit_record *b) {
    size_t body;
    if (audit_record_parse(line, len, a, &body) != VMENC_OK)
        return;
    if (body > len)
        abort();
    vmenc_cbb cbb;
    if (vmenc_cbb_init(&cbb, len + 2) != VMENC_OK)
        abort();
    audit_record_serialise(&cbb, a);
    if (vmenc_cbb_status(&cbb) != VMENC_OK)
        abort();
    const uint8_t *out = vmenc_cbb_data(&cbb);
    size_t out_len = vmenc_cbb_len(&cbb);
    /* serialise(parse(line)) == line + '\n' */
    if (out_len != len + 1 || memcmp(out, line, len) != 0 || out[len] != '\n')
        abort();
    size_t body2;
    if (audit_record_parse(out, out_len - 1, b, &body2) != VMENC_OK || body2 != body ||
        !audit_record_equal(a, b))
        abort();
    vmenc_cbb_cleanup(&cbb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    audit_record *recs = malloc(2 * sizeof(*recs));
    if (recs == NULL)
        return 0;
    size_t lines = 0, off = 0;
    while (off < size) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t len = nl != NULL ? (size_t)(nl - (data + off)) : size - off;
        round_trip(data + off, len, &recs[0], &recs[1]);
        off += len + (nl != NULL);
        lines++;
    }
    free(recs);

    vmenc_audit_verify_options o = {.struct_size = sizeof(o), .key = k_key,
                                    .key_len = sizeof(k_key)};
    vmenc_audit_verify_result res;
    memset(&res, 0, sizeof(res));
    res.struct_size = sizeof(res);
    vmenc_status s = vmenc_audit_verify_buffer(&o, size ? data : NULL, size, &res);
    switch (s) {
    case VMENC_OK:
        if (res.defect != VMENC_AUDIT_DEFECT_NONE || res.num_records != lines ||
            res.last_seq != lines)
            abort();
        break;
    case VMENC_E_AUDIT_TAMPERED:
    case VMENC_E_AUDIT_TRUNCATED:
    case VMENC_E_AUTH:
        if (res.defect == VMENC_AUDIT_DEFECT_NONE || res.bad_index >= lines + 1 ||
            res.bad_offset > size || res.num_records > res.bad_index ||
            res.bad_seq != res.last_seq + 1)
            abort();
        break;
    default:
        abort(); /* no resource errors expected on a buffer */
    }

    /* The file path must agree. */
    int fd = memfd_create("audit_log_fuzz", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0)
            abort();
        done += (size_t)n;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    const char *paths[] = {path};
    vmenc_audit_verify_result fres;
    memset(&fres, 0, sizeof(fres));
    fres.struct_size = sizeof(fres);
    vmenc_status fs = vmenc_audit_verify_files(&o, paths, 1, &fres);
    close(fd);
    if (fs != s || memcmp(&fres, &res, sizeof(res)) != 0)
        abort();
    return 0;
}
