/*
 * lib/control/etcd/etcd_store.c - the etcd backend of the control store
 * (lib/control/control.h): one etcd key per VM, /vmenc/<cluster>/vm/<uuid>,
 * whose value is the record's canonical bytes (record.c, its revision
 * field holding the revision the write was made against) followed by a
 * BLAKE2b-256 MAC under the store's key over a domain label, the cluster
 * name and the UUID. The record's revision is the key's etcd
 * mod_revision. Layout and transactions: docs/cluster.md "The etcd client".
 *
 * Safety rule: a put or delete is one transaction whose compare is the
 * revision the caller read (mod_revision, or create_revision 0 for a new
 * record), so a lost race changes nothing and no update is lost between
 * hosts; nothing read is believed before its MAC checks out in constant
 * time.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/etcd/etcd_store.h"

#define ETCD_STORE_KEY_MAX 160u

static const char k_mac_domain[] = "vmenc-control-v1 etcd record\n";

typedef struct ctl_etcd {
    ctl_store base;              /* first: the store handle is this */
    vmenc_etcd *client;          /* borrowed */
    char cluster[CTL_ETCD_CLUSTER_NAME_MAX + 1];
    char prefix[ETCD_STORE_KEY_MAX];   /* /vmenc/<cluster>/vm/ */
    size_t prefix_len;
    vmenc_secret *key;
} ctl_etcd;

static const ctl_store_ops k_ops;

static ctl_etcd *etcd_of(ctl_store *s) { return (ctl_etcd *)s; }

static bool cluster_name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > CTL_ETCD_CLUSTER_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* uuid_ok: the record-name rule of ctl_vm_record_init (36 characters of
 * hex digits and dashes), checked before a UUID becomes part of a key. */
static bool uuid_ok(const char *uuid) {
    if (uuid == NULL || strlen(uuid) != CTL_UUID_LEN)
        return false;
    for (size_t i = 0; i < CTL_UUID_LEN; i++) {
        char ch = uuid[i];
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? ch != '-' : !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')))
            return false;
    }
    return true;
}

vmenc_status ctl_etcd_vm_key(const char *cluster, const char *uuid, char *buf, size_t cap) {
    VMENC_ENSURE(cluster != NULL && uuid != NULL && buf != NULL, VMENC_E_INVALID_ARG);
    int n = snprintf(buf, cap, "/vmenc/%s/vm/%s", cluster, uuid);
    VMENC_ENSURE(n > 0 && (size_t)n < cap, VMENC_E_BUFFER_TOO_SMALL);
    return VMENC_OK;
}

static vmenc_status record_mac(const ctl_etcd *e, const char *uuid, const uint8_t *body, size_t len,
                               uint8_t out[CTL_HASH_BYTES]) {
    crypto_generichash_state st;
    uint8_t clen = (uint8_t)strlen(e->cluster), ulen = (uint8_t)strlen(uuid);
    int rc = crypto_generichash_init(&st, e->key->bytes, e->key->len, CTL_HASH_BYTES);
    rc |= crypto_generichash_update(&st, (const uint8_t *)k_mac_domain, sizeof(k_mac_domain) - 1);
    rc |= crypto_generichash_update(&st, &clen, 1);
    rc |= crypto_generichash_update(&st, (const uint8_t *)e->cluster, clen);
    rc |= crypto_generichash_update(&st, &ulen, 1);
    rc |= crypto_generichash_update(&st, (const uint8_t *)uuid, ulen);
    rc |= crypto_generichash_update(&st, body, len);
    rc |= crypto_generichash_final(&st, out, CTL_HASH_BYTES);
    return rc == 0 ? VMENC_OK : VMENC_E_CRYPTO;
}

/* open_value: the record in a stored key-value of |uuid|, checked (MAC,
 * canonical bytes, UUID, written against an earlier revision); its
 * revision becomes the key's mod_revision. Anything else: VMENC_E_AUTH. */
static vmenc_status open_value(const ctl_etcd *e, const char *uuid, const vmenc_etcd_kv *kv, ctl_vm_record *out) {
    VMENC_ENSURE(kv->value_len > CTL_HASH_BYTES, VMENC_E_AUTH);
    size_t body = kv->value_len - CTL_HASH_BYTES;
    uint8_t mac[CTL_HASH_BYTES];
    VMENC_GUARD(record_mac(e, uuid, kv->value, body, mac));
    VMENC_ENSURE(vmenc_ct_equal(mac, kv->value + body, CTL_HASH_BYTES), VMENC_E_AUTH);
    VMENC_ENSURE(ctl_record_decode(kv->value, body, out) == VMENC_OK, VMENC_E_AUTH);
    VMENC_ENSURE(strcmp(out->uuid, uuid) == 0, VMENC_E_AUTH);
    VMENC_ENSURE(kv->mod_revision > 0 && out->revision < (uint64_t)kv->mod_revision, VMENC_E_AUTH);
    out->revision = (uint64_t)kv->mod_revision;
    return VMENC_OK;
}

/* seal_value: the stored form of |rec| written against |expected|. */
static vmenc_status seal_value(const ctl_etcd *e, const ctl_vm_record *rec, uint64_t expected, uint8_t **out,
                               size_t *out_len) {
    ctl_vm_record tmp = *rec;
    tmp.revision = expected;
    uint8_t *body = NULL;
    size_t len = 0;
    VMENC_GUARD(ctl_record_encode(&tmp, &body, &len));
    uint8_t *v = malloc(len + CTL_HASH_BYTES);
    vmenc_status st = v != NULL ? VMENC_OK : VMENC_E_NOMEM;
    if (st == VMENC_OK) {
        memcpy(v, body, len);
        st = record_mac(e, rec->uuid, body, len, v + len);
    }
    free(body);
    if (st != VMENC_OK) {
        free(v);
        return st;
    }
    *out = v;
    *out_len = len + CTL_HASH_BYTES;
    return VMENC_OK;
}

static vmenc_status etcd_get_vm(ctl_store *s, const char *uuid, ctl_vm_record *out) {
    ctl_etcd *e = etcd_of(s);
    VMENC_ENSURE(uuid_ok(uuid), VMENC_E_INVALID_ARG);
    char key[ETCD_STORE_KEY_MAX];
    VMENC_GUARD(ctl_etcd_vm_key(e->cluster, uuid, key, sizeof(key)));
    vmenc_etcd_range_req req = {.key = (const uint8_t *)key, .key_len = strlen(key)};
    vmenc_etcd_result r;
    VMENC_GUARD(vmenc_etcd_range(e->client, &req, &r));
    vmenc_status st = r.num_kvs == 0 ? VMENC_E_NOT_FOUND : open_value(e, uuid, &r.kvs[0], out);
    vmenc_etcd_result_cleanup(&r);
    return st;
}

static vmenc_status etcd_put_vm(ctl_store *s, const ctl_vm_record *rec, uint64_t expected_revision,
                                uint64_t *out_revision) {
    ctl_etcd *e = etcd_of(s);
    VMENC_ENSURE(uuid_ok(rec->uuid), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(expected_revision <= (uint64_t)INT64_MAX, VMENC_E_LIMIT);
    char key[ETCD_STORE_KEY_MAX];
    VMENC_GUARD(ctl_etcd_vm_key(e->cluster, rec->uuid, key, sizeof(key)));
    uint8_t *value = NULL;
    size_t value_len = 0;
    VMENC_GUARD(seal_value(e, rec, expected_revision, &value, &value_len));
    vmenc_etcd_compare cmp = {
        .target = expected_revision == 0 ? VMENC_ETCD_CMP_CREATE : VMENC_ETCD_CMP_MOD,
        .result = VMENC_ETCD_CMP_EQUAL,
        .key = (const uint8_t *)key,
        .key_len = strlen(key),
        .number = (int64_t)expected_revision,
    };
    vmenc_etcd_op put = {.type = VMENC_ETCD_OP_PUT,
                         .put = {.key = cmp.key, .key_len = cmp.key_len, .value = value, .value_len = value_len}};
    vmenc_etcd_txn_req txn = {.compares = &cmp, .num_compares = 1, .success = &put, .num_success = 1};
    vmenc_etcd_txn_result res;
    vmenc_status st = vmenc_etcd_txn(e->client, &txn, &res);
    free(value);
    VMENC_GUARD(st);
    if (!res.succeeded) {
        st = VMENC_E_CONFLICT;
    } else {
        int64_t rev = res.responses[0].header.revision > 0 ? res.responses[0].header.revision : res.header.revision;
        st = rev > 0 && (uint64_t)rev > expected_revision ? VMENC_OK : VMENC_E_PARSE;
        if (st == VMENC_OK)
            *out_revision = (uint64_t)rev;
    }
    vmenc_etcd_txn_result_cleanup(&res);
    return st;
}

static vmenc_status etcd_delete_vm(ctl_store *s, const char *uuid, uint64_t expected_revision) {
    ctl_etcd *e = etcd_of(s);
    VMENC_ENSURE(uuid_ok(uuid), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(expected_revision <= (uint64_t)INT64_MAX, VMENC_E_LIMIT);
    if (expected_revision == 0) {
        /* nothing stored has revision 0: either there is no record or this is a lost race */
        ctl_vm_record cur;
        vmenc_status st = etcd_get_vm(s, uuid, &cur);
        return st == VMENC_OK ? VMENC_E_CONFLICT : st;
    }
    char key[ETCD_STORE_KEY_MAX];
    VMENC_GUARD(ctl_etcd_vm_key(e->cluster, uuid, key, sizeof(key)));
    vmenc_etcd_compare cmp = {.target = VMENC_ETCD_CMP_MOD,
                              .result = VMENC_ETCD_CMP_EQUAL,
                              .key = (const uint8_t *)key,
                              .key_len = strlen(key),
                              .number = (int64_t)expected_revision};
    vmenc_etcd_op del = {.type = VMENC_ETCD_OP_DELETE, .del = {.key = cmp.key, .key_len = cmp.key_len}};
    /* the failure branch tells a missing record from a changed one in the same round trip */
    vmenc_etcd_op look = {.type = VMENC_ETCD_OP_RANGE,
                          .range = {.key = cmp.key, .key_len = cmp.key_len, .count_only = true}};
    vmenc_etcd_txn_req txn = {
        .compares = &cmp, .num_compares = 1, .success = &del, .num_success = 1, .failure = &look, .num_failure = 1};
    vmenc_etcd_txn_result res;
    VMENC_GUARD(vmenc_etcd_txn(e->client, &txn, &res));
    vmenc_status st;
    if (res.succeeded)
        st = res.responses[0].deleted == 1 ? VMENC_OK : VMENC_E_PARSE;
    else
        st = res.responses[0].count == 0 ? VMENC_E_NOT_FOUND : VMENC_E_CONFLICT;
    vmenc_etcd_txn_result_cleanup(&res);
    return st;
}

/* etcd_list_vms reads the prefix in pages of CTL_ETCD_LIST_PAGE, all at the
 * revision of the first page, so the walk is one consistent snapshot. */
static vmenc_status etcd_list_vms(ctl_store *s, ctl_list_fn fn, void *arg) {
    ctl_etcd *e = etcd_of(s);
    uint8_t start[ETCD_STORE_KEY_MAX + 1], end[ETCD_STORE_KEY_MAX];
    size_t start_len = e->prefix_len, end_len = 0;
    memcpy(start, e->prefix, e->prefix_len);
    vmenc_etcd_prefix_end((const uint8_t *)e->prefix, e->prefix_len, end, &end_len);
    int64_t at = 0;
    vmenc_status st = VMENC_OK;
    for (;;) {
        vmenc_etcd_range_req req = {.key = start,
                                    .key_len = start_len,
                                    .range_end = end,
                                    .range_end_len = end_len,
                                    .limit = CTL_ETCD_LIST_PAGE,
                                    .revision = at};
        vmenc_etcd_result r;
        VMENC_GUARD(vmenc_etcd_range(e->client, &req, &r));
        if (at == 0)
            at = r.header.revision;
        for (size_t i = 0; st == VMENC_OK && i < r.num_kvs; i++) {
            const vmenc_etcd_kv *kv = &r.kvs[i];
            if (kv->key_len != e->prefix_len + CTL_UUID_LEN)
                continue; /* not a record name (nothing else is written here) */
            char uuid[CTL_UUID_LEN + 1];
            memcpy(uuid, kv->key + e->prefix_len, CTL_UUID_LEN);
            uuid[CTL_UUID_LEN] = '\0';
            if (!uuid_ok(uuid))
                continue;
            ctl_vm_record rec;
            st = open_value(e, uuid, kv, &rec);
            if (st == VMENC_OK && fn(arg, &rec) != 0)
                st = VMENC_E_INTERRUPTED;
        }
        bool more = r.more && r.num_kvs > 0;
        if (st == VMENC_OK && more) {
            /* the next page starts just after the last key of this one */
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

static void etcd_destroy(ctl_store *s) {
    ctl_etcd *e = etcd_of(s);
    vmenc_secret_free(e->key);
    free(e);
}

vmenc_status ctl_etcd_new(vmenc_etcd *client, const char *cluster, const uint8_t *mac_key, size_t key_len,
                          ctl_store **out) {
    VMENC_ENSURE(client != NULL && cluster != NULL && mac_key != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(key_len == CTL_MAC_KEY_BYTES && cluster_name_ok(cluster), VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());
    ctl_etcd *e = calloc(1, sizeof(*e));
    VMENC_ENSURE(e != NULL, VMENC_E_NOMEM);
    e->base.struct_size = sizeof(e->base);
    e->base.ops = &k_ops;
    e->client = client;
    snprintf(e->cluster, sizeof(e->cluster), "%s", cluster);
    int n = snprintf(e->prefix, sizeof(e->prefix), "/vmenc/%s/vm/", cluster);
    e->prefix_len = (size_t)n;
    vmenc_status st = vmenc_secret_from(mac_key, key_len, &e->key);
    if (st != VMENC_OK) {
        free(e);
        return st;
    }
    *out = &e->base;
    return VMENC_OK;
}

/* ---- registration ----------------------------------------------------------------- */

static const ctl_store_ops k_ops = {
    .struct_size = sizeof(ctl_store_ops),
    .abi_version = CTL_STORE_ABI_VERSION,
    .type_name = "etcd",
    .get_vm = etcd_get_vm,
    .put_vm = etcd_put_vm,
    .delete_vm = etcd_delete_vm,
    .list_vms = etcd_list_vms,
    .destroy = etcd_destroy,
};
