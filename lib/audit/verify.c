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

/* ---- a bounded line reader over the chain's sources ------------------------ */

/* A position in the chain, with a buffer for reading files. Copies made
 * for look-ahead get their own buffer, so the line a reader returned stays
 * valid while another reads on. */
typedef struct reader {
    const audit_src *srcs;
    size_t num;
    size_t file;
    uint64_t off; /* byte offset of the current line in srcs[file] */
    uint64_t idx; /* line index in srcs[file] */
    /* A window of an fd source: bytes [buf_off, buf_off + buf_len) of
     * srcs[buf_file]. Lines are served from it until one crosses its end. */
    uint8_t *buf;
    size_t buf_file;
    uint64_t buf_off;
    size_t buf_len;
} reader;

#define READ_CAP (2 * (size_t)VMENC_AUDIT_MAX_LINE)

typedef struct line {
    const uint8_t *p; /* the line's first bytes (all of them unless oversize) */
    uint64_t len;     /* without the newline */
    bool complete;    /* ends in '\n' */
    bool oversize;    /* longer than any record can be: not parsed */
} line;

static vmenc_status reader_init(reader *r, const audit_src *srcs, size_t num) {
    memset(r, 0, sizeof(*r));
    r->srcs = srcs;
    r->num = num;
    r->off = num > 0 ? srcs[0].start : 0;
    r->buf = malloc(READ_CAP);
    VMENC_ENSURE(r->buf != NULL, VMENC_E_NOMEM);
    return VMENC_OK;
}

static vmenc_status reader_copy(const reader *from, reader *out) {
    VMENC_GUARD(reader_init(out, from->srcs, from->num));
    out->file = from->file;
    out->off = from->off;
    out->idx = from->idx;
    return VMENC_OK;
}

static void reader_cleanup(reader *r) {
    free(r->buf);
    r->buf = NULL;
}

/* read_at reads up to |want| bytes at |off| of |src|; fewer at its end or
 * if the file shrank meanwhile (*got says how many). */
static vmenc_status read_at(const audit_src *src, uint64_t off, uint8_t *buf, size_t want,
                            size_t *got) {
    size_t done = 0;
    while (done < want) {
        ssize_t n = pread(src->fd, buf + done, want - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        VMENC_ENSURE(n >= 0, VMENC_E_IO);
        if (n == 0)
            break;
        done += (size_t)n;
    }
    *got = done;
    return VMENC_OK;
}

/* next_line reads the line at |r| into |out| (*found false at the end of
 * the chain). It moves to the next source only if there is one, so at the
 * end the reader stays on the last source, just past its last line. */
static vmenc_status next_line(reader *r, line *out, bool *found) {
    *found = false;
    while (r->off >= r->srcs[r->file].len && r->file + 1 < r->num) {
        r->file++;
        r->off = r->srcs[r->file].start;
        r->idx = 0;
    }
    const audit_src *s = &r->srcs[r->file];
    if (r->off >= s->len)
        return VMENC_OK;
    uint64_t rest = s->len - r->off;
    memset(out, 0, sizeof(*out));
    if (s->mem != NULL) {
        const uint8_t *p = s->mem + r->off;
        const uint8_t *nl = memchr(p, '\n', (size_t)rest);
        out->p = p;
        out->len = nl != NULL ? (uint64_t)(nl - p) : rest;
        out->complete = nl != NULL;
    } else {
        const uint8_t *p = NULL, *nl = NULL;
        size_t avail = 0, got;
        bool in_window = r->buf_len > 0 && r->buf_file == r->file && r->off >= r->buf_off &&
                         r->off - r->buf_off <= r->buf_len;
        if (in_window) {
            p = r->buf + (r->off - r->buf_off);
            avail = r->buf_len - (size_t)(r->off - r->buf_off);
            nl = memchr(p, '\n', avail < VMENC_AUDIT_MAX_LINE ? avail : VMENC_AUDIT_MAX_LINE);
        }
        if (nl == NULL && !(in_window && r->buf_off == r->off)) {
            /* Refill the window from this line's start. */
            size_t want = rest < READ_CAP ? (size_t)rest : READ_CAP;
            VMENC_GUARD(read_at(s, r->off, r->buf, want, &got));
            r->buf_file = r->file;
            r->buf_off = r->off;
            r->buf_len = got;
            p = r->buf;
            avail = got;
            nl = memchr(p, '\n', avail < VMENC_AUDIT_MAX_LINE ? avail : VMENC_AUDIT_MAX_LINE);
        }
        out->p = p;
        if (nl != NULL) {
            out->len = (uint64_t)(nl - p);
            out->complete = true;
        } else if (avail < VMENC_AUDIT_MAX_LINE) {
            /* The data ends (or the file shrank under us): a cut line. */
            out->len = avail;
        } else {
            /* No newline in a record's maximum length: find the line's end
             * to step over it, but never hand it to the parser. */
            uint64_t pos = r->off + VMENC_AUDIT_MAX_LINE;
            out->complete = false;
            while (pos < s->len) {
                size_t chunk = s->len - pos < VMENC_AUDIT_MAX_LINE ? (size_t)(s->len - pos)
                                                                    : VMENC_AUDIT_MAX_LINE;
                uint8_t *scratch = malloc(chunk);
                VMENC_ENSURE(scratch != NULL, VMENC_E_NOMEM);
                vmenc_status st = read_at(s, pos, scratch, chunk, &got);
                const uint8_t *q = st == VMENC_OK ? memchr(scratch, '\n', got) : NULL;
                uint64_t at = q != NULL ? pos + (uint64_t)(q - scratch) : 0;
                free(scratch);
                VMENC_GUARD(st);
                if (q != NULL) {
                    pos = at;
                    out->complete = true;
                    break;
                }
                pos += got;
                if (got < chunk)
                    break;
            }
            out->len = pos - r->off;
        }
    }
    out->oversize = out->len >= VMENC_AUDIT_MAX_LINE;
    *found = true;
    return VMENC_OK;
}

static void advance(reader *r, const line *l) {
    r->off += l->len + (l->complete ? 1 : 0);
    r->idx++;
}

/* check parses and authenticates a complete line. Returns VMENC_OK, the
 * parse error, VMENC_E_AUTH or VMENC_E_AUDIT_TAMPERED for a bad line. */
static vmenc_status check(const audit_key *k, const line *l, audit_record *rec) {
    if (l->oversize)
        return VMENC_E_TOO_LARGE;
    return audit_check_line(k, l->p, (size_t)l->len, rec);
}

static bool is_resource_error(vmenc_status s) {
    return s == VMENC_E_NOMEM || s == VMENC_E_CRYPTO || s == VMENC_E_INTERNAL ||
           s == VMENC_E_INVALID_ARG || s == VMENC_E_IO;
}

/* next_is_expected: is the line after the one at |at| the record the chain
 * expects (so the one at |at| was inserted)? */
static vmenc_status next_is_expected(const audit_key *k, const reader *at, uint64_t exp_seq,
                                     const uint8_t *exp_prev, audit_record *tmp, bool *out) {
    reader r;
    line l;
    bool found;
    *out = false;
    VMENC_GUARD(reader_copy(at, &r));
    vmenc_status s = next_line(&r, &l, &found);
    if (s != VMENC_OK || !found || !l.complete)
        goto done;
    advance(&r, &l);
    s = next_line(&r, &l, &found);
    if (s != VMENC_OK || !found || !l.complete)
        goto done;
    s = check(k, &l, tmp);
    if (is_resource_error(s))
        goto done;
    *out = s == VMENC_OK && tmp->seq == exp_seq &&
           vmenc_ct_equal(tmp->prev, exp_prev, VMENC_AUDIT_HASH_BYTES);
    s = VMENC_OK;
done:
    reader_cleanup(&r);
    return s;
}

/* later_has_seq: does any authentic record after the one at |at| carry
 * |seq| (so records were moved rather than removed)? */
static vmenc_status later_has_seq(const audit_key *k, const reader *at, uint64_t seq,
                                  audit_record *tmp, bool *out) {
    reader r;
    line l;
    bool found;
    *out = false;
    VMENC_GUARD(reader_copy(at, &r));
    vmenc_status s = next_line(&r, &l, &found);
    if (s != VMENC_OK || !found)
        goto done;
    advance(&r, &l);
    while ((s = next_line(&r, &l, &found)) == VMENC_OK && found) {
        if (l.complete) {
            vmenc_status c = check(k, &l, tmp);
            if (is_resource_error(c)) {
                s = c;
                goto done;
            }
            if (c == VMENC_OK && tmp->seq == seq) {
                *out = true;
                break;
            }
        }
        advance(&r, &l);
    }
done:
    reader_cleanup(&r);
    return s;
}

typedef struct chain {
    uint64_t seq;
    uint8_t hash[VMENC_AUDIT_HASH_BYTES];
    uint64_t num_records;
    bool has_chain;              /* chain ID of the last record verified */
    uint8_t id[AUDIT_CHAIN_BYTES];
} chain;

/* foreign_chain: |rec| names another chain than the records verified so
 * far. Only for classifying: a record joins the chain by its prev hash
 * alone, which a record of another chain cannot have (so a chain that went
 * on without IDs after a rotation by an older caller still verifies). */
static bool foreign_chain(const chain *ch, const audit_record *rec) {
    return ch->num_records > 0 && ch->has_chain && rec->has_chain &&
           sodium_memcmp(rec->chain, ch->id, AUDIT_CHAIN_BYTES) != 0;
}

static vmenc_status report(const chain *ch, const reader *r, vmenc_audit_defect defect,
                           vmenc_audit_verify_result *out) {
    out->defect = defect;
    out->num_records = ch->num_records;
    out->bad_file = r->file;
    out->bad_index = r->idx;
    out->bad_offset = r->off;
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

/* classify decides what kind of defect the line at |r| is, given the
 * status of its check |s| and (if authentic) its record. */
static vmenc_status classify(const audit_key *k, const chain *ch, const reader *r, vmenc_status s,
                             const audit_record *rec, audit_record *tmp,
                             vmenc_audit_defect *out) {
    uint64_t exp_seq = ch->seq + 1;
    bool yes;
    if (s != VMENC_OK) {
        /* Not an authentic record. Inserted if the expected one follows. */
        VMENC_GUARD(next_is_expected(k, r, exp_seq, ch->hash, tmp, &yes));
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
    /* Authentic, but of another chain (same key): inserted, whatever its
     * number. */
    if (foreign_chain(ch, rec)) {
        *out = VMENC_AUDIT_DEFECT_INSERTED;
        return VMENC_OK;
    }
    /* Authentic, but not where it belongs. */
    if (ch->num_records > 0 && rec->seq == ch->seq &&
        vmenc_ct_equal(rec->mac, ch->hash, VMENC_AUDIT_HASH_BYTES)) {
        *out = VMENC_AUDIT_DEFECT_DUPLICATED;
    } else if (rec->seq < exp_seq) {
        *out = VMENC_AUDIT_DEFECT_REORDERED;
    } else if (rec->seq > exp_seq) {
        VMENC_GUARD(later_has_seq(k, r, exp_seq, tmp, &yes));
        *out = yes ? VMENC_AUDIT_DEFECT_REORDERED : VMENC_AUDIT_DEFECT_DELETED;
    } else {
        /* Right number, wrong predecessor: a record of another chain made
         * under the same key. */
        *out = VMENC_AUDIT_DEFECT_INSERTED;
    }
    return VMENC_OK;
}

vmenc_status audit_verify_srcs(const audit_key *k, uint64_t start_seq,
                               const uint8_t start_hash[VMENC_AUDIT_HASH_BYTES],
                               uint64_t expected_last_seq, const audit_src *srcs, size_t num,
                               vmenc_audit_verify_result *out) {
    VMENC_ENSURE(num > 0 && srcs != NULL, VMENC_E_INVALID_ARG);
    audit_record *rec = malloc(2 * sizeof(*rec));
    VMENC_ENSURE(rec != NULL, VMENC_E_NOMEM);
    audit_record *tmp = rec + 1;
    reader r;
    vmenc_status rv = reader_init(&r, srcs, num);
    if (rv != VMENC_OK) {
        free(rec);
        return rv;
    }
    chain ch = {.seq = start_seq, .num_records = 0};
    if (start_hash != NULL)
        memcpy(ch.hash, start_hash, VMENC_AUDIT_HASH_BYTES);
    else
        memset(ch.hash, 0, sizeof(ch.hash));
    vmenc_audit_defect defect = VMENC_AUDIT_DEFECT_NONE;
    line l;
    bool found;

    for (;;) {
        VMENC_GUARD_GOTO(rv, next_line(&r, &l, &found), out);
        if (!found)
            break;
        if (!l.complete) {
            defect = VMENC_AUDIT_DEFECT_TORN;
            goto done;
        }
        vmenc_status s = check(k, &l, rec);
        VMENC_ENSURE_GOTO(rv, !is_resource_error(s), s, out);
        if (s == VMENC_OK && rec->seq == ch.seq + 1 &&
            vmenc_ct_equal(rec->prev, ch.hash, VMENC_AUDIT_HASH_BYTES)) {
            ch.has_chain = rec->has_chain;
            memcpy(ch.id, rec->chain, AUDIT_CHAIN_BYTES);
            ch.seq = rec->seq;
            memcpy(ch.hash, rec->mac, VMENC_AUDIT_HASH_BYTES);
            ch.num_records++;
            advance(&r, &l);
            continue;
        }
        VMENC_GUARD_GOTO(rv, classify(k, &ch, &r, s, rec, tmp, &defect), out);
        goto done;
    }
    if (expected_last_seq != 0 && ch.seq < expected_last_seq)
        defect = VMENC_AUDIT_DEFECT_TRUNCATED;
done:
    rv = report(&ch, &r, defect, out);
out:
    reader_cleanup(&r);
    sodium_memzero(rec, 2 * sizeof(*rec));
    free(rec);
    return rv;
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
    /* An empty buffer still needs a non-NULL source to point at. */
    audit_src src = {.mem = data != NULL ? data : (const uint8_t *)"", .fd = -1, .len = len};
    vmenc_audit_verify_result tmp;
    memset(&tmp, 0, sizeof(tmp));
    vmenc_status s = audit_verify_srcs(&k, options->start_seq, options->start_hash,
                                       options->expected_last_seq, &src, 1, &tmp);
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
    audit_src *srcs = calloc(num_paths, sizeof(*srcs));
    vmenc_status s = VMENC_E_NOMEM;
    size_t opened = 0;
    if (srcs == NULL)
        goto out;
    for (; opened < num_paths; opened++) {
        int fd = open(paths[opened], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            s = VMENC_E_IO;
            goto out;
        }
        srcs[opened].fd = fd;
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            opened++;
            s = VMENC_E_IO;
            goto out;
        }
        srcs[opened].len = (uint64_t)st.st_size;
    }
    vmenc_audit_verify_result tmp;
    memset(&tmp, 0, sizeof(tmp));
    s = audit_verify_srcs(&k, options->start_seq, options->start_hash,
                          options->expected_last_seq, srcs, num_paths, &tmp);
    s = finish(s, &tmp, out);
out:
    for (size_t i = 0; i < opened; i++)
        close(srcs[i].fd);
    free(srcs);
    audit_key_cleanup(&k);
    return s;
}
