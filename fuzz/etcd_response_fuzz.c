/*
 * fuzz/etcd_response_fuzz.c - libFuzzer harness for the etcd v3 JSON
 * gateway response parser (lib/net/etcd_parse.c; the shapes:
 * tests/support/etcd/README.md and docs/cluster.md "The etcd client").
 * Every input goes through every parser (range/put/delete results, txn,
 * lease unary and stream, member status, watch stream line, error body,
 * int64/uint64 text). Oracles: a refused input leaves its output zeroed;
 * an accepted one holds what the parser promises (keys present and within
 * bounds, counts consistent, events in revision order); parsing is
 * deterministic (twice gives the same); a number that parses prints back
 * to the same text. abort() on any violation. Pure: no network.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/etcd.h"

static void check_kv(const vmenc_etcd_kv *kv) {
    if (kv->key == NULL || kv->key_len == 0 || kv->key_len > VMENC_ETCD_KEY_MAX)
        abort();
    if (kv->value_len > VMENC_ETCD_VALUE_MAX || (kv->value_len > 0 && kv->value == NULL))
        abort();
    if (kv->create_revision < 0 || kv->mod_revision < 0 || kv->version < 0 || kv->lease < 0 ||
        kv->create_revision > kv->mod_revision)
        abort();
}

static void check_result(const vmenc_etcd_result *r) {
    if ((r->num_kvs == 0) != (r->kvs == NULL))
        abort();
    for (size_t i = 0; i < r->num_kvs; i++)
        check_kv(&r->kvs[i]);
    if (r->type == VMENC_ETCD_OP_RANGE && r->num_kvs > 0 && (uint64_t)r->count < r->num_kvs)
        abort();
    if (r->type == VMENC_ETCD_OP_PUT && r->num_kvs > 1)
        abort();
}

static bool all_zero(const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

static bool same_kv(const vmenc_etcd_kv *a, const vmenc_etcd_kv *b) {
    return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0 && a->value_len == b->value_len &&
           (a->value_len == 0 || memcmp(a->value, b->value, a->value_len) == 0) &&
           a->create_revision == b->create_revision && a->mod_revision == b->mod_revision &&
           a->version == b->version && a->lease == b->lease;
}

static void results(const uint8_t *data, size_t size) {
    for (int t = VMENC_ETCD_OP_RANGE; t <= VMENC_ETCD_OP_DELETE; t++) {
        vmenc_etcd_result a, b;
        vmenc_status s1 = vmenc_etcd_parse_result((vmenc_etcd_op_type)t, data, size, &a);
        vmenc_status s2 = vmenc_etcd_parse_result((vmenc_etcd_op_type)t, data, size, &b);
        if (s1 != s2)
            abort();
        if (s1 != VMENC_OK) {
            if (!all_zero(&a, sizeof(a)))
                abort();
            continue;
        }
        check_result(&a);
        if (a.num_kvs != b.num_kvs || a.count != b.count || a.deleted != b.deleted || a.more != b.more ||
            memcmp(&a.header, &b.header, sizeof(a.header)) != 0)
            abort();
        for (size_t i = 0; i < a.num_kvs; i++)
            if (!same_kv(&a.kvs[i], &b.kvs[i]))
                abort();
        vmenc_etcd_result_cleanup(&a);
        vmenc_etcd_result_cleanup(&b);
    }
}

static void txn(const uint8_t *data, size_t size) {
    vmenc_etcd_txn_result t;
    if (vmenc_etcd_parse_txn(data, size, &t) != VMENC_OK) {
        if (!all_zero(&t, sizeof(t)))
            abort();
        return;
    }
    if ((t.num_responses == 0) != (t.responses == NULL))
        abort();
    for (size_t i = 0; i < t.num_responses; i++)
        check_result(&t.responses[i]);
    vmenc_etcd_txn_result_cleanup(&t);
}

static void watch(const uint8_t *data, size_t size) {
    vmenc_etcd_watch_msg m;
    if (vmenc_etcd_parse_watch_msg(data, size, &m) != VMENC_OK) {
        if (!all_zero(&m, sizeof(m)))
            abort();
        return;
    }
    for (size_t i = 0; i < m.num_events; i++) {
        check_kv(&m.events[i].kv);
        if (m.events[i].has_prev_kv)
            check_kv(&m.events[i].prev_kv);
        if (m.events[i].kv.mod_revision <= 0 || (i > 0 && m.events[i].kv.mod_revision < m.events[i - 1].kv.mod_revision))
            abort();
    }
    if (m.compact_revision < 0 || m.watch_id < 0)
        abort();
    vmenc_etcd_watch_msg_cleanup(&m);
}

static void misc(const uint8_t *data, size_t size) {
    vmenc_etcd_lease_info li;
    for (int stream = 0; stream < 2; stream++)
        if (vmenc_etcd_parse_lease(data, size, stream != 0, &li) != VMENC_OK && !all_zero(&li, sizeof(li)))
            abort();
    vmenc_etcd_member_status ms;
    if (vmenc_etcd_parse_status(data, size, &ms) == VMENC_OK) {
        if (memchr(ms.version, 0, sizeof(ms.version)) == NULL || memchr(ms.first_error, 0, sizeof(ms.first_error)) == NULL)
            abort();
        if (ms.is_leader != (ms.leader != 0 && ms.leader == ms.header.member_id))
            abort();
    } else if (!all_zero(&ms, sizeof(ms))) {
        abort();
    }
    int code = -1;
    char msg[64];
    if (vmenc_etcd_parse_error(data, size, &code, msg, sizeof(msg)) == VMENC_OK) {
        if (code < 0 || code > 16 || memchr(msg, 0, sizeof(msg)) == NULL)
            abort();
    } else if (code != 0) {
        abort();
    }
}

/* numbers: the text parses iff printing the value gives the text back */
static void numbers(const uint8_t *data, size_t size) {
    if (size > 24)
        return;
    char text[32], back[32];
    memcpy(text, data, size);
    text[size] = '\0';
    int64_t v;
    if (vmenc_etcd_parse_i64((const char *)data, size, &v)) {
        snprintf(back, sizeof(back), "%" PRId64, v);
        if (strlen(back) != size || memcmp(back, data, size) != 0)
            abort();
    }
    uint64_t u;
    if (vmenc_etcd_parse_u64((const char *)data, size, &u)) {
        snprintf(back, sizeof(back), "%" PRIu64, u);
        if (strlen(back) != size || memcmp(back, data, size) != 0)
            abort();
    }
    (void)text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    results(data, size);
    txn(data, size);
    watch(data, size);
    misc(data, size);
    numbers(data, size);
    return 0;
}
