/*
 * lib/control/etcd/audit_mirror.c - the cluster audit mirror on etcd
 * (audit_mirror.h; lib/audit/mirror.h is the contract): each host's
 * records under /vmenc/<c>/audit/rec/<host>/<seq, 20 digits> and its
 * mirrored chain head under /vmenc/<c>/audit/head/<host>. Layout,
 * transactions and lag: docs/cluster.md "Events".
 *
 * Safety rule: an append is a compare-and-swap on the host's head value
 * ("<seq> <mac hex>\n", or absent before the first record) that puts the
 * records and the new head in the same transaction, in chunks of at most
 * CTL_AUDIT_MAX_TXN_OPS operations, each chunk continuing the head the
 * previous one wrote - so the mirror is always a prefix of the host's chain;
 * a lost answer is decided by re-reading the head (ours: it happened; the
 * one compared: it did not, send again; anything else: another writer won).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/etcd/audit_mirror.h"

#define KEY_MAX 512u
#define HEAD_VALUE_MAX CTL_AUDIT_HEAD_VALUE_MAX
#define SEQ_DIGITS CTL_AUDIT_SEQ_DIGITS
#define UNKNOWN_RETRIES 2

typedef struct etcd_mirror {
    audit_mirror base; /* first: the mirror handle is this */
    vmenc_etcd *client;
    bool own_client;
    char prefix[128]; /* /vmenc/<cluster>/audit/ */
    ctl_audit_fault_fn fault;
    void *fault_ctx;
    ctl_audit_mirror_stats stats;
} etcd_mirror;

static const audit_mirror_ops k_ops;

static etcd_mirror *mirror_of(audit_mirror *m) { return (etcd_mirror *)m; }

static bool cluster_name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > 64 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* host_ok: a host ID that is one key segment. */
static bool host_ok(const char *host) {
    if (host == NULL)
        return false;
    size_t n = strlen(host);
    if (n == 0 || n >= AUDIT_MIRROR_HOST_MAX || strcmp(host, ".") == 0 || strcmp(host, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)host[i] < 0x20 || host[i] == 0x7f || host[i] == '/')
            return false;
    return true;
}

static vmenc_status head_key(const etcd_mirror *e, const char *host, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "%shead/%s", e->prefix, host);
    VMENC_ENSURE(n > 0 && (size_t)n < cap, VMENC_E_BUFFER_TOO_SMALL);
    return VMENC_OK;
}

/* rec_key: the key of record |seq| of |host|; seq 0 with |prefix_only| the
 * prefix of all of them. */
static vmenc_status rec_key(const etcd_mirror *e, const char *host, uint64_t seq, bool prefix_only, char *buf,
                            size_t cap) {
    int n = prefix_only ? snprintf(buf, cap, "%srec/%s/", e->prefix, host)
                        : snprintf(buf, cap, "%srec/%s/%020" PRIu64, e->prefix, host, seq);
    VMENC_ENSURE(n > 0 && (size_t)n < cap, VMENC_E_BUFFER_TOO_SMALL);
    return VMENC_OK;
}

/* get_head reads the head key: |*exists|, its value (|val|, |*val_len|). */
static vmenc_status get_head_raw(etcd_mirror *e, const char *key, bool *exists, uint8_t *val, size_t *val_len) {
    vmenc_etcd_range_req req = {.key = (const uint8_t *)key, .key_len = strlen(key)};
    vmenc_etcd_result r;
    VMENC_GUARD(vmenc_etcd_range(e->client, &req, &r));
    vmenc_status st = VMENC_OK;
    *exists = r.num_kvs > 0;
    *val_len = 0;
    if (*exists) {
        if (r.kvs[0].value_len > HEAD_VALUE_MAX)
            st = VMENC_E_PARSE;
        else {
            memcpy(val, r.kvs[0].value, r.kvs[0].value_len);
            *val_len = r.kvs[0].value_len;
        }
    }
    vmenc_etcd_result_cleanup(&r);
    return st;
}

static vmenc_status m_head(audit_mirror *m, const char *host, uint64_t *out_seq,
                           uint8_t out_hash[VMENC_AUDIT_HASH_BYTES]) {
    etcd_mirror *e = mirror_of(m);
    VMENC_ENSURE(host_ok(host) && out_seq != NULL && out_hash != NULL, VMENC_E_INVALID_ARG);
    char key[KEY_MAX];
    VMENC_GUARD(head_key(e, host, key, sizeof(key)));
    uint8_t val[HEAD_VALUE_MAX];
    size_t len = 0;
    bool exists = false;
    VMENC_GUARD(get_head_raw(e, key, &exists, val, &len));
    uint64_t seq = 0;
    uint8_t hash[VMENC_AUDIT_HASH_BYTES] = {0};
    if (exists)
        VMENC_GUARD(ctl_audit_head_parse(val, len, &seq, hash));
    *out_seq = seq;
    memcpy(out_hash, hash, VMENC_AUDIT_HASH_BYTES);
    return VMENC_OK;
}

/* ---- append ---------------------------------------------------------------------------- */

typedef struct span {
    const uint8_t *p;
    size_t len; /* without the newline */
} span;

/* chunk_txn sends one chunk: records |lines[0..n)| (first seq |first|),
 * comparing the head with |expect| (NULL: absent) and putting |next|. */
static vmenc_status chunk_txn(etcd_mirror *e, const char *host, const char *hkey, uint64_t first, const span *lines,
                              size_t n, const char *expect, size_t expect_len, const char *next, size_t next_len,
                              bool *out_succeeded) {
    vmenc_etcd_op *ops = calloc(n + 1, sizeof(*ops));
    char (*keys)[KEY_MAX] = calloc(n, sizeof(*keys));
    vmenc_status st = ops != NULL && keys != NULL ? VMENC_OK : VMENC_E_NOMEM;
    for (size_t i = 0; st == VMENC_OK && i < n; i++) {
        st = rec_key(e, host, first + i, false, keys[i], sizeof(keys[i]));
        ops[i].type = VMENC_ETCD_OP_PUT;
        ops[i].put = (vmenc_etcd_put_req){.key = (const uint8_t *)keys[i], .key_len = strlen(keys[i]),
                                          .value = lines[i].p, .value_len = lines[i].len};
    }
    if (st == VMENC_OK) {
        ops[n].type = VMENC_ETCD_OP_PUT;
        ops[n].put = (vmenc_etcd_put_req){.key = (const uint8_t *)hkey, .key_len = strlen(hkey),
                                          .value = (const uint8_t *)next, .value_len = next_len};
        vmenc_etcd_compare cmp = {.result = VMENC_ETCD_CMP_EQUAL, .key = (const uint8_t *)hkey,
                                  .key_len = strlen(hkey)};
        if (expect == NULL) {
            cmp.target = VMENC_ETCD_CMP_CREATE;
            cmp.number = 0;
        } else {
            cmp.target = VMENC_ETCD_CMP_VALUE;
            cmp.value = (const uint8_t *)expect;
            cmp.value_len = expect_len;
        }
        vmenc_etcd_txn_req txn = {.compares = &cmp, .num_compares = 1, .success = ops, .num_success = n + 1};
        if (e->fault != NULL)
            st = e->fault(e->fault_ctx, CTL_AUDIT_FAULT_BEFORE, VMENC_OK);
        if (st == VMENC_OK) {
            vmenc_etcd_txn_result res;
            st = vmenc_etcd_txn(e->client, &txn, &res);
            if (st == VMENC_OK) {
                *out_succeeded = res.succeeded;
                vmenc_etcd_txn_result_cleanup(&res);
            }
            if (e->fault != NULL)
                st = e->fault(e->fault_ctx, CTL_AUDIT_FAULT_AFTER, st);
        }
    }
    free(keys);
    free(ops);
    return st;
}

/* send_chunk sends a chunk and decides a lost answer by the head. */
static vmenc_status send_chunk(etcd_mirror *e, const char *host, const char *hkey, uint64_t first, const span *lines,
                               size_t n, const char *expect, size_t expect_len, const char *next, size_t next_len) {
    for (int attempt = 0;; attempt++) {
        bool ok = false;
        vmenc_status st = chunk_txn(e, host, hkey, first, lines, n, expect, expect_len, next, next_len, &ok);
        if (st == VMENC_OK) {
            if (ok)
                e->stats.txns++;
            else
                e->stats.conflicts++;
            return ok ? VMENC_OK : VMENC_E_CONFLICT;
        }
        if (st != VMENC_E_OUTCOME_UNKNOWN)
            return st;
        e->stats.unknown++;
        /* Did it happen? The head says: ours, the one we compared, or another. */
        uint8_t val[HEAD_VALUE_MAX];
        size_t len = 0;
        bool exists = false;
        vmenc_status rs = get_head_raw(e, hkey, &exists, val, &len);
        if (rs != VMENC_OK)
            return VMENC_E_OUTCOME_UNKNOWN; /* still unknown: the next append's catch-up decides */
        if (exists && len == next_len && memcmp(val, next, len) == 0) {
            e->stats.resolved_done++;
            return VMENC_OK; /* applied: the head is the one only this txn writes */
        }
        bool unchanged = expect == NULL ? !exists : (exists && len == expect_len && memcmp(val, expect, len) == 0);
        if (!unchanged)
            return VMENC_E_CONFLICT; /* another writer of the host moved it: catch-up decides */
        if (attempt + 1 >= UNKNOWN_RETRIES)
            return VMENC_E_OUTCOME_UNKNOWN; /* not applied; the next append sends it */
        e->stats.resolved_redo++; /* not applied: the compare makes sending again safe */
    }
}

static vmenc_status m_append(audit_mirror *m, const char *host, uint64_t first_seq, uint64_t last_seq,
                             const uint8_t *lines, size_t len, const uint8_t head[VMENC_AUDIT_HASH_BYTES]) {
    etcd_mirror *e = mirror_of(m);
    VMENC_ENSURE(host_ok(host) && lines != NULL && head != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(first_seq >= 1 && last_seq >= first_seq && len > 0 && lines[len - 1] == '\n', VMENC_E_INVALID_ARG);
    VMENC_ENSURE(last_seq - first_seq < (1u << 24), VMENC_E_LIMIT);
    size_t n = (size_t)(last_seq - first_seq + 1);
    span *sp = calloc(n, sizeof(*sp));
    audit_record *rec = malloc(sizeof(*rec));
    vmenc_status st = sp != NULL && rec != NULL ? VMENC_OK : VMENC_E_NOMEM;
    size_t count = 0;
    for (size_t off = 0; st == VMENC_OK && off < len;) {
        const uint8_t *nl = memchr(lines + off, '\n', len - off);
        if (count == n || nl == NULL) {
            st = VMENC_E_INVALID_ARG;
            break;
        }
        sp[count].p = lines + off;
        sp[count].len = (size_t)(nl - (lines + off));
        count++;
        off += sp[count - 1].len + 1;
    }
    if (st == VMENC_OK && count != n)
        st = VMENC_E_INVALID_ARG;
    char hkey[KEY_MAX];
    if (st == VMENC_OK)
        st = head_key(e, host, hkey, sizeof(hkey));
    /* The head the records continue: absent before record 1, else the
     * record before the first one - its seq and its mac (the first line's
     * "prev"). */
    char expect[HEAD_VALUE_MAX], next[HEAD_VALUE_MAX];
    size_t expect_len = 0, next_len = 0;
    size_t body;
    if (st == VMENC_OK && first_seq > 1) {
        if (audit_record_parse(sp[0].p, sp[0].len, rec, &body) != VMENC_OK || rec->seq != first_seq)
            st = VMENC_E_INVALID_ARG;
        else
            expect_len = ctl_audit_head_format(first_seq - 1, rec->prev, expect);
    }
    size_t i = 0;
    while (st == VMENC_OK && i < n) {
        size_t k = 0, bytes = 0;
        while (i + k < n && k + 1 < CTL_AUDIT_MAX_TXN_OPS && (k == 0 || bytes + sp[i + k].len <= CTL_AUDIT_MAX_TXN_BYTES))
            bytes += sp[i + k++].len;
        uint64_t cseq = first_seq + i + k - 1;
        if (i + k == n) {
            next_len = ctl_audit_head_format(last_seq, head, next);
        } else if (audit_record_parse(sp[i + k - 1].p, sp[i + k - 1].len, rec, &body) != VMENC_OK ||
                   rec->seq != cseq) {
            st = VMENC_E_INVALID_ARG;
            break;
        } else {
            next_len = ctl_audit_head_format(cseq, rec->mac, next);
        }
        st = send_chunk(e, host, hkey, first_seq + i, sp + i, k, expect_len ? expect : NULL, expect_len, next,
                        next_len);
        memcpy(expect, next, next_len);
        expect_len = next_len;
        i += k;
    }
    if (rec != NULL)
        sodium_memzero(rec, sizeof(*rec));
    free(rec);
    free(sp);
    return st;
}

/* ---- reading ------------------------------------------------------------------------------- */

typedef int (*kv_fn)(void *ctx, const vmenc_etcd_kv *kv);

/* walk_range reads [start, end) in pages, all at the first page's revision. */
static vmenc_status walk_range(etcd_mirror *e, const char *start_key, const uint8_t *end, size_t end_len,
                               bool keys_only, kv_fn fn, void *ctx) {
    uint8_t start[KEY_MAX + 1];
    size_t start_len = strlen(start_key);
    memcpy(start, start_key, start_len);
    int64_t at = 0;
    for (;;) {
        vmenc_etcd_range_req req = {.key = start, .key_len = start_len, .range_end = end, .range_end_len = end_len,
                                    .limit = CTL_AUDIT_READ_PAGE, .revision = at, .keys_only = keys_only};
        vmenc_etcd_result r;
        VMENC_GUARD(vmenc_etcd_range(e->client, &req, &r));
        if (at == 0)
            at = r.header.revision;
        vmenc_status st = VMENC_OK;
        bool stop = false;
        for (size_t i = 0; !stop && i < r.num_kvs; i++)
            stop = fn(ctx, &r.kvs[i]) != 0;
        bool more = !stop && r.more && r.num_kvs > 0;
        if (more) {
            const vmenc_etcd_kv *last = &r.kvs[r.num_kvs - 1];
            if (last->key_len + 1 > sizeof(start))
                st = VMENC_E_PARSE;
            else {
                memcpy(start, last->key, last->key_len);
                start[last->key_len] = 0;
                start_len = last->key_len + 1;
            }
        }
        vmenc_etcd_result_cleanup(&r);
        if (st != VMENC_OK || !more)
            return st;
    }
}

typedef struct hosts_ctx {
    size_t prefix_len;
    audit_mirror_host_cb cb;
    void *ctx;
} hosts_ctx;

static int host_kv(void *vctx, const vmenc_etcd_kv *kv) {
    hosts_ctx *c = vctx;
    if (kv->key_len <= c->prefix_len || kv->key_len - c->prefix_len >= AUDIT_MIRROR_HOST_MAX)
        return 0;
    char host[AUDIT_MIRROR_HOST_MAX];
    memcpy(host, kv->key + c->prefix_len, kv->key_len - c->prefix_len);
    host[kv->key_len - c->prefix_len] = '\0';
    if (!host_ok(host))
        return 0; /* not a key this mirror writes */
    return c->cb(c->ctx, host);
}

static vmenc_status m_list_hosts(audit_mirror *m, audit_mirror_host_cb cb, void *ctx) {
    etcd_mirror *e = mirror_of(m);
    VMENC_ENSURE(cb != NULL, VMENC_E_INVALID_ARG);
    char pfx[KEY_MAX];
    int n = snprintf(pfx, sizeof(pfx), "%shead/", e->prefix);
    VMENC_ENSURE(n > 0 && (size_t)n < sizeof(pfx), VMENC_E_BUFFER_TOO_SMALL);
    uint8_t end[KEY_MAX];
    size_t end_len = 0;
    vmenc_etcd_prefix_end((const uint8_t *)pfx, (size_t)n, end, &end_len);
    hosts_ctx c = {.prefix_len = (size_t)n, .cb = cb, .ctx = ctx};
    return walk_range(e, pfx, end, end_len, true, host_kv, &c);
}

typedef struct read_ctx {
    size_t prefix_len;
    audit_mirror_line_cb cb;
    void *ctx;
} read_ctx;

static int rec_kv(void *vctx, const vmenc_etcd_kv *kv) {
    read_ctx *c = vctx;
    uint64_t seq = 0;
    if (kv->key_len != c->prefix_len + SEQ_DIGITS ||
        ctl_audit_seq_parse(kv->key + c->prefix_len, SEQ_DIGITS, &seq) != VMENC_OK)
        return 0; /* not a key this mirror writes */
    return c->cb(c->ctx, seq, kv->value, kv->value_len);
}

static vmenc_status m_read(audit_mirror *m, const char *host, uint64_t from_seq, audit_mirror_line_cb cb,
                           void *ctx) {
    etcd_mirror *e = mirror_of(m);
    VMENC_ENSURE(host_ok(host) && cb != NULL, VMENC_E_INVALID_ARG);
    char pfx[KEY_MAX], start[KEY_MAX];
    VMENC_GUARD(rec_key(e, host, 0, true, pfx, sizeof(pfx)));
    VMENC_GUARD(rec_key(e, host, from_seq, false, start, sizeof(start)));
    uint8_t end[KEY_MAX];
    size_t end_len = 0;
    vmenc_etcd_prefix_end((const uint8_t *)pfx, strlen(pfx), end, &end_len);
    read_ctx c = {.prefix_len = strlen(pfx), .cb = cb, .ctx = ctx};
    return walk_range(e, start, end, end_len, false, rec_kv, &c);
}

/* ---- life cycle ------------------------------------------------------------------------------ */

static void m_destroy(audit_mirror *m) {
    etcd_mirror *e = mirror_of(m);
    if (e->own_client)
        vmenc_etcd_free(e->client);
    free(e);
}

vmenc_status ctl_audit_mirror_new(vmenc_etcd *client, bool own_client, const char *cluster, audit_mirror **out) {
    VMENC_ENSURE(client != NULL && cluster != NULL && out != NULL && cluster_name_ok(cluster), VMENC_E_INVALID_ARG);
    etcd_mirror *e = calloc(1, sizeof(*e));
    VMENC_ENSURE(e != NULL, VMENC_E_NOMEM);
    e->base.ops = &k_ops;
    e->client = client;
    e->own_client = own_client;
    snprintf(e->prefix, sizeof(e->prefix), "/vmenc/%s/audit/", cluster);
    *out = &e->base;
    return VMENC_OK;
}

void ctl_audit_mirror_set_fault(audit_mirror *m, ctl_audit_fault_fn fn, void *ctx) {
    if (m == NULL || m->ops != &k_ops)
        return;
    mirror_of(m)->fault = fn;
    mirror_of(m)->fault_ctx = ctx;
}

void ctl_audit_mirror_stats_get(audit_mirror *m, ctl_audit_mirror_stats *out) {
    memset(out, 0, sizeof(*out));
    if (m != NULL && m->ops == &k_ops)
        *out = mirror_of(m)->stats;
}

static const audit_mirror_ops k_ops = {
    .struct_size = sizeof(audit_mirror_ops),
    .append = m_append,
    .head = m_head,
    .list_hosts = m_list_hosts,
    .read = m_read,
    .destroy = m_destroy,
};
