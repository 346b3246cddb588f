/*
 * lib/audit/verify.c - the audit log verifier: walks one chain across one or
 * more files and reports the first defect, classified (edited, deleted,
 * reordered, inserted, duplicated, truncated, torn, wrong key).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/record.h"

const char *vmenc_audit_defect_name(vmenc_audit_defect defect) {
    switch (defect) {
    case VMENC_AUDIT_DEFECT_NONE: return "none";
    case VMENC_AUDIT_DEFECT_EDITED: return "edited";
    case VMENC_AUDIT_DEFECT_MALFORMED: return "malformed";
    case VMENC_AUDIT_DEFECT_DELETED: return "deleted";
    case VMENC_AUDIT_DEFECT_REORDERED: return "reordered";
    case VMENC_AUDIT_DEFECT_INSERTED: return "inserted";
    case VMENC_AUDIT_DEFECT_DUPLICATED: return "duplicated";
    case VMENC_AUDIT_DEFECT_TRUNCATED: return "truncated";
    case VMENC_AUDIT_DEFECT_TORN: return "torn";
    case VMENC_AUDIT_DEFECT_WRONG_KEY: return "wrong key";
    }
    return "unknown";
}

/* A position in the chain of spans. */
typedef struct cursor {
    const audit_span *spans;
    size_t num;
    size_t file;
    size_t off;   /* byte offset of the current line in spans[file] */
    uint64_t idx; /* line index in spans[file] */
} cursor;

/* next_line finds the line at |c| (skipping exhausted spans). Returns false
 * at the end of the chain. |*complete| says whether it ends in '\n'. */
static bool next_line(cursor *c, const uint8_t **line, size_t *len, bool *complete) {
    /* Move to the next span only if there is one, so that at the end the
     * cursor stays on the last span, just past its last line. */
    while (c->off >= c->spans[c->file].len && c->file + 1 < c->num) {
        c->file++;
        c->off = 0;
        c->idx = 0;
    }
    const audit_span *s = &c->spans[c->file];
    if (c->off >= s->len)
        return false;
    const uint8_t *p = s->data + c->off;
    size_t rest = s->len - c->off;
    const uint8_t *nl = memchr(p, '\n', rest);
    *line = p;
    *len = nl != NULL ? (size_t)(nl - p) : rest;
    *complete = nl != NULL;
    return true;
}

static void advance(cursor *c, size_t len, bool complete) {
    c->off += len + (complete ? 1 : 0);
    c->idx++;
}

/* check_at parses and authenticates the line at |c|. */
static vmenc_status check_at(const audit_key *k, const cursor *c, audit_record *rec, bool *found) {
    cursor t = *c;
    const uint8_t *line;
    size_t len;
    bool complete;
    *found = next_line(&t, &line, &len, &complete);
    if (!*found || !complete)
        return VMENC_E_TRUNCATED;
    return audit_check_line(k, line, len, rec);
}

static bool is_resource_error(vmenc_status s) {
    return s == VMENC_E_NOMEM || s == VMENC_E_CRYPTO || s == VMENC_E_INTERNAL ||
           s == VMENC_E_INVALID_ARG;
}

/* next_is_expected: is the line after |c| the record the chain expects
 * (so the one at |c| was inserted)? */
static vmenc_status next_is_expected(const audit_key *k, cursor c, uint64_t exp_seq,
                                     const uint8_t *exp_prev, audit_record *tmp, bool *out) {
    const uint8_t *line;
    size_t len;
    bool complete, found;
    *out = false;
    if (!next_line(&c, &line, &len, &complete) || !complete)
        return VMENC_OK;
    advance(&c, len, complete);
    vmenc_status s = check_at(k, &c, tmp, &found);
    if (is_resource_error(s))
        return s;
    *out = s == VMENC_OK && tmp->seq == exp_seq &&
           vmenc_ct_equal(tmp->prev, exp_prev, VMENC_AUDIT_HASH_BYTES);
    return VMENC_OK;
}

/* later_has_seq: does any authentic record after |c| carry |seq| (so
 * records were moved rather than removed)? */
static vmenc_status later_has_seq(const audit_key *k, cursor c, uint64_t seq, audit_record *tmp,
                                  bool *out) {
    const uint8_t *line;
    size_t len;
    bool complete;
    *out = false;
    if (!next_line(&c, &line, &len, &complete))
        return VMENC_OK;
    advance(&c, len, complete);
    while (next_line(&c, &line, &len, &complete)) {
        if (complete) {
            vmenc_status s = audit_check_line(k, line, len, tmp);
            if (is_resource_error(s))
                return s;
            if (s == VMENC_OK && tmp->seq == seq) {
                *out = true;
                return VMENC_OK;
            }
        }
        advance(&c, len, complete);
    }
    return VMENC_OK;
}

typedef struct chain {
    uint64_t seq;
    uint8_t hash[VMENC_AUDIT_HASH_BYTES];
    uint64_t num_records;
} chain;

static vmenc_status report(const chain *ch, const cursor *c, vmenc_audit_defect defect,
                           vmenc_audit_verify_result *out) {
    out->defect = defect;
    out->num_records = ch->num_records;
    out->bad_file = c->file;
    out->bad_index = c->idx;
    out->bad_offset = c->off;
    out->bad_seq = ch->seq + 1;
    out->last_seq = ch->seq;
    memcpy(out->last_hash, ch->hash, VMENC_AUDIT_HASH_BYTES);
    if (defect == VMENC_AUDIT_DEFECT_NONE)
        out->bad_file = out->bad_index = out->bad_offset = out->bad_seq = 0;
    switch (defect) {
    case VMENC_AUDIT_DEFECT_NONE: return VMENC_OK;
    case VMENC_AUDIT_DEFECT_TRUNCATED:
    case VMENC_AUDIT_DEFECT_TORN: return VMENC_E_AUDIT_TRUNCATED;
    case VMENC_AUDIT_DEFECT_WRONG_KEY: return VMENC_E_AUTH;
    default: return VMENC_E_AUDIT_TAMPERED;
    }
}

/* classify decides what kind of defect the line at |c| is, given the
 * status of its check |s| and (if authentic) its record. */
static vmenc_status classify(const audit_key *k, const chain *ch, const cursor *c, vmenc_status s,
                             const audit_record *rec, audit_record *tmp,
                             vmenc_audit_defect *out) {
    uint64_t exp_seq = ch->seq + 1;
    bool yes;
    if (s != VMENC_OK) {
        /* Not an authentic record. Inserted if the expected one follows. */
        VMENC_GUARD(next_is_expected(k, *c, exp_seq, ch->hash, tmp, &yes));
        if (yes)
            *out = VMENC_AUDIT_DEFECT_INSERTED;
        else if (s == VMENC_E_AUTH && ch->num_records == 0)
            *out = VMENC_AUDIT_DEFECT_WRONG_KEY;
        else if (s == VMENC_E_AUTH || s == VMENC_E_AUDIT_TAMPERED)
            *out = VMENC_AUDIT_DEFECT_EDITED;
        else
            *out = VMENC_AUDIT_DEFECT_MALFORMED;
        return VMENC_OK;
    }
    /* Authentic, but not where it belongs. */
    if (ch->num_records > 0 && rec->seq == ch->seq &&
        vmenc_ct_equal(rec->mac, ch->hash, VMENC_AUDIT_HASH_BYTES)) {
        *out = VMENC_AUDIT_DEFECT_DUPLICATED;
    } else if (rec->seq < exp_seq) {
        *out = VMENC_AUDIT_DEFECT_REORDERED;
    } else if (rec->seq > exp_seq) {
        VMENC_GUARD(later_has_seq(k, *c, exp_seq, tmp, &yes));
        *out = yes ? VMENC_AUDIT_DEFECT_REORDERED : VMENC_AUDIT_DEFECT_DELETED;
    } else {
        /* Right number, wrong predecessor: a record of another chain made
         * under the same key. */
        *out = VMENC_AUDIT_DEFECT_INSERTED;
    }
    return VMENC_OK;
}

vmenc_status audit_verify_spans(const audit_key *k, uint64_t start_seq,
                                const uint8_t start_hash[VMENC_AUDIT_HASH_BYTES],
                                uint64_t expected_last_seq, const audit_span *spans, size_t num,
                                vmenc_audit_verify_result *out) {
    VMENC_ENSURE(num > 0 && spans != NULL, VMENC_E_INVALID_ARG);
    audit_record *rec = malloc(2 * sizeof(*rec));
    VMENC_ENSURE(rec != NULL, VMENC_E_NOMEM);
    audit_record *tmp = rec + 1;
    chain ch = {.seq = start_seq, .num_records = 0};
    if (start_hash != NULL)
        memcpy(ch.hash, start_hash, VMENC_AUDIT_HASH_BYTES);
    else
        memset(ch.hash, 0, sizeof(ch.hash));
    cursor c = {.spans = spans, .num = num};
    const uint8_t *line;
    size_t len;
    bool complete;
    vmenc_status rv;
    vmenc_audit_defect defect = VMENC_AUDIT_DEFECT_NONE;

    while (next_line(&c, &line, &len, &complete)) {
        if (!complete) {
            defect = VMENC_AUDIT_DEFECT_TORN;
            goto done;
        }
        vmenc_status s = audit_check_line(k, line, len, rec);
        if (is_resource_error(s)) {
            rv = s;
            goto out;
        }
        if (s == VMENC_OK && rec->seq == ch.seq + 1 &&
            vmenc_ct_equal(rec->prev, ch.hash, VMENC_AUDIT_HASH_BYTES)) {
            ch.seq = rec->seq;
            memcpy(ch.hash, rec->mac, VMENC_AUDIT_HASH_BYTES);
            ch.num_records++;
            advance(&c, len, complete);
            continue;
        }
        VMENC_GUARD_GOTO(rv, classify(k, &ch, &c, s, rec, tmp, &defect), out);
        goto done;
    }
    if (expected_last_seq != 0 && ch.seq < expected_last_seq)
        defect = VMENC_AUDIT_DEFECT_TRUNCATED;
done:
    rv = report(&ch, &c, defect, out);
out:
    sodium_memzero(rec, 2 * sizeof(*rec));
    free(rec);
    return rv;
}

vmenc_status audit_map_fd(int fd, audit_span *out) {
    struct stat st;
    VMENC_ENSURE(fstat(fd, &st) == 0, VMENC_E_IO);
    VMENC_ENSURE(S_ISREG(st.st_mode), VMENC_E_IO);
    if (st.st_size == 0) {
        out->data = NULL;
        out->len = 0;
        return VMENC_OK;
    }
    VMENC_ENSURE((uint64_t)st.st_size <= SIZE_MAX, VMENC_E_TOO_LARGE);
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    VMENC_ENSURE(p != MAP_FAILED, errno == ENOMEM ? VMENC_E_NOMEM : VMENC_E_IO);
    out->data = p;
    out->len = (size_t)st.st_size;
    return VMENC_OK;
}

void audit_unmap(audit_span *s) {
    if (s != NULL && s->data != NULL)
        munmap((void *)s->data, s->len);
    if (s != NULL) {
        s->data = NULL;
        s->len = 0;
    }
}

static vmenc_status check_verify_args(const vmenc_audit_verify_options *o,
                                      vmenc_audit_verify_result *out) {
    VMENC_ENSURE_REF(o);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(o->struct_size >= sizeof(vmenc_audit_verify_options), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(out->struct_size >= sizeof(vmenc_audit_verify_result), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(o->start_hash != NULL || o->start_seq == 0, VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

/* Fill a caller's result only when verification produced one. */
static vmenc_status finish(vmenc_status s, const vmenc_audit_verify_result *tmp,
                           vmenc_audit_verify_result *out) {
    if (s == VMENC_OK || s == VMENC_E_AUDIT_TAMPERED || s == VMENC_E_AUDIT_TRUNCATED ||
        s == VMENC_E_AUTH) {
        uint32_t size = out->struct_size;
        memcpy(out, tmp, sizeof(*tmp));
        out->struct_size = size;
    }
    return s;
}

vmenc_status vmenc_audit_verify_buffer(const vmenc_audit_verify_options *options,
                                       const uint8_t *data, size_t len,
                                       vmenc_audit_verify_result *out) {
    VMENC_GUARD(check_verify_args(options, out));
    VMENC_ENSURE(data != NULL || len == 0, VMENC_E_INVALID_ARG);
    audit_key k;
    VMENC_GUARD(audit_key_init(&k, options->key, options->key_len));
    audit_span span = {data, len};
    vmenc_audit_verify_result tmp;
    memset(&tmp, 0, sizeof(tmp));
    vmenc_status s = audit_verify_spans(&k, options->start_seq, options->start_hash,
                                        options->expected_last_seq, &span, 1, &tmp);
    audit_key_cleanup(&k);
    return finish(s, &tmp, out);
}

vmenc_status vmenc_audit_verify_files(const vmenc_audit_verify_options *options,
                                      const char *const *paths, size_t num_paths,
                                      vmenc_audit_verify_result *out) {
    VMENC_GUARD(check_verify_args(options, out));
    VMENC_ENSURE(paths != NULL && num_paths > 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(num_paths <= 1u << 20, VMENC_E_INVALID_ARG);
    for (size_t i = 0; i < num_paths; i++)
        VMENC_ENSURE_REF(paths[i]);
    audit_key k;
    VMENC_GUARD(audit_key_init(&k, options->key, options->key_len));
    audit_span *spans = calloc(num_paths, sizeof(*spans));
    vmenc_status s = VMENC_E_NOMEM;
    if (spans == NULL)
        goto out;
    for (size_t i = 0; i < num_paths; i++) {
        int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            s = VMENC_E_IO;
            goto out;
        }
        s = audit_map_fd(fd, &spans[i]);
        close(fd);
        if (s != VMENC_OK)
            goto out;
    }
    vmenc_audit_verify_result tmp;
    memset(&tmp, 0, sizeof(tmp));
    s = audit_verify_spans(&k, options->start_seq, options->start_hash,
                           options->expected_last_seq, spans, num_paths, &tmp);
    s = finish(s, &tmp, out);
out:
    if (spans != NULL) {
        for (size_t i = 0; i < num_paths; i++)
            audit_unmap(&spans[i]);
        free(spans);
    }
    audit_key_cleanup(&k);
    return s;
}
