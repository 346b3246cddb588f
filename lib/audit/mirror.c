/*
 * lib/audit/mirror.c - what the audit layer does with a cluster mirror
 * (lib/audit/mirror.h; docs/audit.md "The cluster mirror"): bring a
 * host's mirrored copy up to date from its local log, list every host's
 * events by time, and compare a host's local log with its mirrored copy.
 * The mirror itself (etcd in cluster mode) is an implementation of
 * audit_mirror_ops that the control layer installs.
 *
 * Safety rule: records go to the mirror only from the local log, in chain
 * order, under the log's file lock, and only on top of a mirrored head the
 * local log still holds; a mirror ahead of the log or disagreeing with it
 * is reported, never overwritten.
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

#include "audit/mirror.h"

#define HAS_OP AUDIT_MIRROR_HAS_OP

void audit_mirror_free(audit_mirror *m) {
    if (HAS_OP(m, destroy))
        m->ops->destroy(m);
}

/* ---- reading a local log line by line -------------------------------------------------- */

#define SCAN_CHUNK (1u << 20)

typedef int (*line_fn)(void *ctx, const uint8_t *line, size_t len);

/* scan_lines calls |fn| for every complete line in the first |size| bytes
 * of |fd| (a final line without newline is not passed: it is torn).
 * Lines longer than any record are passed cut to VMENC_AUDIT_MAX_LINE
 * (they fail to parse). */
static vmenc_status scan_lines(int fd, uint64_t size, line_fn fn, void *ctx) {
    size_t cap = SCAN_CHUNK + VMENC_AUDIT_MAX_LINE;
    uint8_t *buf = malloc(cap);
    VMENC_ENSURE(buf != NULL, VMENC_E_NOMEM);
    uint64_t off = 0;
    size_t have = 0;
    bool skipping = false; /* inside an oversize line */
    vmenc_status rv = VMENC_OK;
    while (off < size || have > 0) {
        if (off < size) {
            size_t want = cap - have;
            if (want > size - off)
                want = (size_t)(size - off);
            ssize_t n = pread(fd, buf + have, want, (off_t)off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                rv = n < 0 ? VMENC_E_IO : VMENC_OK; /* shrank under us: what we have is all */
                size = off;
                if (n < 0)
                    break;
            } else {
                off += (uint64_t)n;
                have += (size_t)n;
            }
        }
        size_t start = 0;
        for (;;) {
            uint8_t *nl = memchr(buf + start, '\n', have - start);
            if (nl == NULL)
                break;
            size_t len = (size_t)(nl - (buf + start));
            if (!skipping && fn(ctx, buf + start, len) != 0) {
                free(buf);
                return VMENC_OK;
            }
            skipping = false;
            start += len + 1;
        }
        memmove(buf, buf + start, have - start);
        have -= start;
        if (have >= VMENC_AUDIT_MAX_LINE) { /* no record is this long: pass a stub, skip the rest */
            if (!skipping && fn(ctx, buf, VMENC_AUDIT_MAX_LINE) != 0)
                break;
            skipping = true;
            have = 0;
        }
        if (off >= size)
            break; /* whatever is left has no newline: torn */
    }
    free(buf);
    return rv;
}

/* ---- catching a mirror up ------------------------------------------------------------------ */

typedef struct catch_ctx {
    uint64_t after;                       /* the mirror's head */
    uint8_t after_hash[VMENC_AUDIT_HASH_BYTES];
    bool head_seen, head_matches;
    vmenc_cbb out;                        /* the lines to send */
    uint64_t first, last;
    uint8_t last_hash[VMENC_AUDIT_HASH_BYTES];
    audit_record *rec;
    vmenc_status err;
} catch_ctx;

static int catch_line(void *vctx, const uint8_t *line, size_t len) {
    catch_ctx *c = vctx;
    size_t body;
    if (audit_record_parse(line, len, c->rec, &body) != VMENC_OK)
        return 0; /* not a record: the verifier's business; the mirror gets records only */
    if (c->rec->seq == c->after) {
        c->head_seen = true;
        c->head_matches = vmenc_ct_equal(c->rec->mac, c->after_hash, VMENC_AUDIT_HASH_BYTES);
    }
    if (c->rec->seq <= c->after)
        return 0;
    if (c->first == 0)
        c->first = c->rec->seq;
    else if (c->rec->seq != c->last + 1) {
        c->err = VMENC_E_AUDIT_TAMPERED; /* the local chain has a gap: do not mirror around it */
        return 1;
    }
    c->last = c->rec->seq;
    memcpy(c->last_hash, c->rec->mac, VMENC_AUDIT_HASH_BYTES);
    vmenc_cbb_add_bytes(&c->out, line, len);
    vmenc_cbb_add_u8(&c->out, '\n');
    return 0;
}

vmenc_status audit_mirror_catch_up(audit_mirror *m, const char *host, int fd, uint64_t size, const audit_key *k) {
    VMENC_ENSURE(HAS_OP(m, append) && HAS_OP(m, head), VMENC_E_UNIMPLEMENTED);
    catch_ctx c;
    memset(&c, 0, sizeof(c));
    VMENC_GUARD(m->ops->head(m, host, &c.after, c.after_hash));
    tail_info t;
    VMENC_GUARD(audit_read_tail_at(fd, k, size, &t));
    uint64_t local = t.has_record ? t.seq : 0;
    VMENC_ENSURE(c.after <= local, VMENC_E_AUDIT_TRUNCATED); /* the mirror has what the log lost */
    if (c.after == local) {
        VMENC_ENSURE(local == 0 || vmenc_ct_equal(t.hash, c.after_hash, VMENC_AUDIT_HASH_BYTES),
                     VMENC_E_AUDIT_TAMPERED);
        return VMENC_OK;
    }
    c.rec = malloc(sizeof(*c.rec));
    VMENC_ENSURE(c.rec != NULL, VMENC_E_NOMEM);
    vmenc_status rv = vmenc_cbb_init(&c.out, 4096);
    if (rv == VMENC_OK)
        rv = scan_lines(fd, size - t.torn_len, catch_line, &c);
    if (rv == VMENC_OK)
        rv = c.err;
    if (rv == VMENC_OK)
        rv = vmenc_cbb_status(&c.out);
    /* The mirror's head must be a record the log still has, and the lines
     * must start right after it and end at the log's head. */
    if (rv == VMENC_OK && c.after > 0 && !(c.head_seen && c.head_matches))
        rv = VMENC_E_AUDIT_TAMPERED;
    if (rv == VMENC_OK && (c.first != c.after + 1 || c.last != local))
        rv = VMENC_E_AUDIT_TAMPERED;
    if (rv == VMENC_OK)
        rv = m->ops->append(m, host, c.first, c.last, vmenc_cbb_data(&c.out), vmenc_cbb_len(&c.out), c.last_hash);
    vmenc_cbb_cleanup(&c.out);
    sodium_memzero(c.rec, sizeof(*c.rec));
    free(c.rec);
    return rv;
}

/* ---- reading a host's mirrored records ------------------------------------------------------- */

typedef struct mline {
    uint64_t seq;
    uint64_t time_ms;
    uint8_t *line;
    size_t len;
    bool parsed;
    uint8_t prev[VMENC_AUDIT_HASH_BYTES];
    uint8_t mac[VMENC_AUDIT_HASH_BYTES];
} mline;

typedef struct mhost {
    char *host;
    mline *lines;
    size_t num, cap;
    size_t pos; /* merge cursor */
} mhost;

typedef struct mset {
    mhost *hosts;
    size_t num, cap;
    audit_record *rec;
    vmenc_status err;
} mset;

static int add_host(void *vctx, const char *host) {
    mset *s = vctx;
    if (s->num == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        mhost *n = realloc(s->hosts, cap * sizeof(*n));
        if (n == NULL) {
            s->err = VMENC_E_NOMEM;
            return 1;
        }
        s->hosts = n;
        s->cap = cap;
    }
    mhost *h = &s->hosts[s->num];
    memset(h, 0, sizeof(*h));
    h->host = strdup(host);
    if (h->host == NULL) {
        s->err = VMENC_E_NOMEM;
        return 1;
    }
    s->num++;
    return 0;
}

typedef struct line_ctx {
    mhost *h;
    audit_record *rec;
    vmenc_status err;
} line_ctx;

static int add_line(void *vctx, uint64_t seq, const uint8_t *line, size_t len) {
    line_ctx *c = vctx;
    mhost *h = c->h;
    if (h->num == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        mline *n = realloc(h->lines, cap * sizeof(*n));
        if (n == NULL) {
            c->err = VMENC_E_NOMEM;
            return 1;
        }
        h->lines = n;
        h->cap = cap;
    }
    mline *l = &h->lines[h->num];
    memset(l, 0, sizeof(*l));
    l->seq = seq;
    l->line = malloc(len ? len : 1);
    if (l->line == NULL) {
        c->err = VMENC_E_NOMEM;
        return 1;
    }
    memcpy(l->line, line, len);
    l->len = len;
    size_t body;
    if (len < VMENC_AUDIT_MAX_LINE && audit_record_parse(line, len, c->rec, &body) == VMENC_OK &&
        c->rec->seq == seq) {
        l->parsed = true;
        l->time_ms = c->rec->time_ms;
        memcpy(l->prev, c->rec->prev, VMENC_AUDIT_HASH_BYTES);
        memcpy(l->mac, c->rec->mac, VMENC_AUDIT_HASH_BYTES);
    }
    h->num++;
    return 0;
}

static void mset_cleanup(mset *s) {
    for (size_t i = 0; i < s->num; i++) {
        for (size_t j = 0; j < s->hosts[i].num; j++)
            free(s->hosts[i].lines[j].line);
        free(s->hosts[i].lines);
        free(s->hosts[i].host);
    }
    free(s->hosts);
    if (s->rec != NULL)
        sodium_memzero(s->rec, sizeof(*s->rec));
    free(s->rec);
    memset(s, 0, sizeof(*s));
}

/* mset_load reads every host's mirrored records (only |only| if not NULL). */
static vmenc_status mset_load(audit_mirror *m, const char *only, mset *s) {
    VMENC_ENSURE(HAS_OP(m, list_hosts) && HAS_OP(m, read), VMENC_E_UNIMPLEMENTED);
    memset(s, 0, sizeof(*s));
    s->rec = malloc(sizeof(*s->rec));
    VMENC_ENSURE(s->rec != NULL, VMENC_E_NOMEM);
    vmenc_status rv = only != NULL ? (add_host(s, only), VMENC_OK) : m->ops->list_hosts(m, add_host, s);
    if (rv == VMENC_OK)
        rv = s->err;
    for (size_t i = 0; rv == VMENC_OK && i < s->num; i++) {
        line_ctx c = {.h = &s->hosts[i], .rec = s->rec};
        rv = m->ops->read(m, s->hosts[i].host, 1, add_line, &c);
        if (rv == VMENC_OK)
            rv = c.err;
    }
    return rv;
}

/* host_chains: do a host's mirrored records form one chain? */
static bool host_chains(const mhost *h) {
    for (size_t j = 0; j < h->num; j++) {
        const mline *l = &h->lines[j];
        if (!l->parsed)
            return false;
        if (j > 0 && (l->seq != h->lines[j - 1].seq + 1 ||
                      !vmenc_ct_equal(l->prev, h->lines[j - 1].mac, VMENC_AUDIT_HASH_BYTES)))
            return false;
    }
    return true;
}

/* ---- the cluster-wide list ------------------------------------------------------------------- */

vmenc_status audit_mirror_merge(audit_mirror *m, audit_cluster_event_cb cb, void *ctx, uint64_t *out_skipped) {
    VMENC_ENSURE(cb != NULL, VMENC_E_INVALID_ARG);
    mset s;
    vmenc_status rv = mset_load(m, NULL, &s);
    uint64_t skipped = 0;
    /* Skip what does not parse, up front, so the merge compares times only. */
    for (size_t i = 0; rv == VMENC_OK && i < s.num; i++) {
        mhost *h = &s.hosts[i];
        size_t w = 0;
        for (size_t j = 0; j < h->num; j++) {
            if (h->lines[j].parsed)
                h->lines[w++] = h->lines[j];
            else {
                free(h->lines[j].line);
                skipped++;
            }
        }
        h->num = w;
    }
    while (rv == VMENC_OK) {
        mhost *best = NULL;
        for (size_t i = 0; i < s.num; i++) {
            mhost *h = &s.hosts[i];
            if (h->pos >= h->num)
                continue;
            const mline *l = &h->lines[h->pos];
            if (best == NULL) {
                best = h;
                continue;
            }
            const mline *b = &best->lines[best->pos];
            int hc = strcmp(h->host, best->host);
            if (l->time_ms < b->time_ms || (l->time_ms == b->time_ms && hc < 0))
                best = h;
        }
        if (best == NULL)
            break;
        const mline *l = &best->lines[best->pos++];
        audit_cluster_event ev = {.host = best->host, .seq = l->seq, .time_ms = l->time_ms, .line = l->line,
                                  .len = l->len};
        if (cb(ctx, &ev) != 0)
            break;
    }
    mset_cleanup(&s);
    if (rv == VMENC_OK && out_skipped != NULL)
        *out_skipped = skipped;
    return rv;
}

/* ---- comparing a local log with its mirrored copy ---------------------------------------------- */

typedef struct cmp_ctx {
    const mhost *h;       /* this host's mirrored records */
    audit_record *rec;
    uint64_t diverged;    /* first differing seq (0: none) */
    uint64_t matched;     /* mirrored records found equal in the log */
} cmp_ctx;

static int cmp_line(void *vctx, const uint8_t *line, size_t len) {
    cmp_ctx *c = vctx;
    size_t body;
    if (c->h->num == 0 || audit_record_parse(line, len, c->rec, &body) != VMENC_OK)
        return 0;
    uint64_t first = c->h->lines[0].seq;
    uint64_t seq = c->rec->seq;
    if (seq < first || seq - first >= c->h->num)
        return 0;
    const mline *l = &c->h->lines[seq - first];
    if (l->seq == seq && l->len == len && memcmp(l->line, line, len) == 0) {
        c->matched++;
        return 0;
    }
    if (c->diverged == 0 || seq < c->diverged)
        c->diverged = seq;
    return 0;
}

vmenc_status audit_mirror_compare(audit_mirror *m, const audit_key *k, const char *host, const char *log_path,
                                  vmenc_audit_cluster_result *out) {
    VMENC_ENSURE(k != NULL && host != NULL && log_path != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= sizeof(*out), VMENC_E_ABI_VERSION);
    vmenc_audit_cluster_result r;
    memset(&r, 0, sizeof(r));
    r.struct_size = out->struct_size;
    mset all;
    vmenc_status rv = mset_load(m, NULL, &all);
    const mhost *mine = NULL;
    for (size_t i = 0; rv == VMENC_OK && i < all.num; i++) {
        const mhost *h = &all.hosts[i];
        r.num_hosts += h->num > 0;
        r.num_records += h->num;
        if (!host_chains(h))
            r.broken_hosts++;
        if (strcmp(h->host, host) == 0)
            mine = h;
    }
    int fd = -1;
    if (rv == VMENC_OK) {
        fd = open(log_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno != ENOENT)
            rv = VMENC_E_IO;
    }
    uint64_t size = 0;
    tail_info t;
    memset(&t, 0, sizeof(t));
    if (rv == VMENC_OK && fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) != 0)
            rv = VMENC_E_IO;
        else
            size = (uint64_t)st.st_size;
        if (rv == VMENC_OK && audit_read_tail_at(fd, k, size, &t) == VMENC_OK && t.has_record)
            r.log_last_seq = t.seq;
    }
    if (rv == VMENC_OK) {
        if (mine == NULL || mine->num == 0) {
            r.state = VMENC_AUDIT_ANCHOR_MISSING;
        } else {
            r.mirror_seq = mine->lines[mine->num - 1].seq;
            cmp_ctx c = {.h = mine, .rec = all.rec};
            if (fd >= 0)
                rv = scan_lines(fd, size - t.torn_len, cmp_line, &c);
            if (rv == VMENC_OK) {
                r.diverged_seq = c.diverged;
                if (r.log_last_seq < r.mirror_seq)
                    r.state = VMENC_AUDIT_ANCHOR_CUT; /* mirrored records the log no longer has */
                else if (c.diverged != 0 || c.matched < mine->num)
                    r.state = VMENC_AUDIT_ANCHOR_DIVERGED;
                else
                    r.state = VMENC_AUDIT_ANCHOR_OK;
            }
        }
    }
    if (fd >= 0)
        close(fd);
    mset_cleanup(&all);
    VMENC_GUARD(rv);
    *out = r;
    switch (r.state) {
    case VMENC_AUDIT_ANCHOR_OK: return r.broken_hosts ? VMENC_E_AUDIT_TAMPERED : VMENC_OK;
    case VMENC_AUDIT_ANCHOR_MISSING: return VMENC_E_NOT_FOUND;
    case VMENC_AUDIT_ANCHOR_CUT: return VMENC_E_AUDIT_TRUNCATED;
    default: return VMENC_E_AUDIT_TAMPERED;
    }
}
