/*
 * fuzz/cluster_doc_fuzz.c - the two JSON documents of cluster mode
 * (lib/workspace/cluster_file.c, docs/cluster.md): the cluster document
 * read from etcd and WORKSPACE/cluster.json; the sealed policy
 * document's envelope (ws_policy_seal_parse); and the rewrite of a host
 * registration's encryption mode (ws_cluster_host_doc_set_mode). Round-trip
 * oracle: whatever parses serialises to a document that parses to the same
 * fields and serialises to the same bytes again.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "workspace/ws_cluster.h"

static void same(const char *a, const char *b) {
    if ((a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0))
        abort();
}

static void doc_round_trip(const uint8_t *data, size_t size) {
    ws_cluster_doc d, d2;
    if (ws_cluster_doc_parse(data, size, &d) != VMENC_OK) {
        if (d.name != NULL || d.key != NULL)
            abort(); /* zeroed on failure */
        return;
    }
    char *t1 = NULL, *t2 = NULL;
    if (ws_cluster_doc_serialize(&d, &t1) != VMENC_OK)
        abort();
    if (ws_cluster_doc_parse((const uint8_t *)t1, strlen(t1), &d2) != VMENC_OK)
        abort();
    same(d.name, d2.name);
    same(d.id, d2.id);
    same(d.key_provider, d2.key_provider);
    same(d.key, d2.key);
    if (ws_cluster_doc_serialize(&d2, &t2) != VMENC_OK || strcmp(t1, t2) != 0)
        abort();
    free(t1);
    free(t2);
    ws_cluster_doc_cleanup(&d);
    ws_cluster_doc_cleanup(&d2);
}

static void file_round_trip(const uint8_t *data, size_t size) {
    ws_cluster_file f, f2;
    if (ws_cluster_file_parse(data, size, &f) != VMENC_OK) {
        if (f.name != NULL || f.endpoints != NULL)
            abort();
        return;
    }
    char *t1 = NULL, *t2 = NULL;
    if (ws_cluster_file_serialize(&f, &t1) != VMENC_OK)
        abort();
    if (ws_cluster_file_parse((const uint8_t *)t1, strlen(t1), &f2) != VMENC_OK)
        abort();
    same(f.name, f2.name);
    same(f.endpoints, f2.endpoints);
    same(f.ca_file, f2.ca_file);
    same(f.cert_file, f2.cert_file);
    same(f.key_file, f2.key_file);
    if (f.ttl_s != f2.ttl_s)
        abort();
    if (ws_cluster_file_serialize(&f2, &t2) != VMENC_OK || strcmp(t1, t2) != 0)
        abort();
    free(t1);
    free(t2);
    ws_cluster_file_cleanup(&f);
    ws_cluster_file_cleanup(&f2);
}

/* seal_round_trip: an envelope that parses serialises to the same bytes. */
static void seal_round_trip(const uint8_t *data, size_t size) {
    ws_policy_seal sl;
    if (ws_policy_seal_parse(data, size, &sl) != VMENC_OK) {
        if (sl.json != NULL || sl.gen != 0)
            abort(); /* zeroed on failure */
        return;
    }
    if (sl.gen == 0 || sl.json_len == 0 || sl.json != data + WS_POLICY_SEAL_HEADER ||
        sl.json_len != size - WS_POLICY_SEAL_HEADER)
        abort();
    uint8_t *out = NULL;
    size_t out_len = 0;
    if (ws_policy_seal_serialize(&sl, &out, &out_len) != VMENC_OK || out_len != size || memcmp(out, data, size) != 0)
        abort();
    free(out);
}

/* host_mode_round_trip: a registration that takes a mode takes another
 * and the first again, byte for byte; the output always parses. */
static void host_mode_round_trip(const uint8_t *data, size_t size) {
    char *t1 = NULL, *t2 = NULL, *t3 = NULL;
    if (ws_cluster_host_doc_set_mode(data, size, "safe", &t1) != VMENC_OK) {
        if (t1 != NULL)
            abort();
        return;
    }
    if (ws_cluster_host_doc_set_mode((const uint8_t *)t1, strlen(t1), "pendingIncapable", &t2) != VMENC_OK ||
        ws_cluster_host_doc_set_mode((const uint8_t *)t2, strlen(t2), "safe", &t3) != VMENC_OK || strcmp(t1, t3) != 0 ||
        strstr(t2, "\"encryption_mode\":\"pendingIncapable\"") == NULL)
        abort();
    free(t1);
    free(t2);
    free(t3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    doc_round_trip(data, size);
    file_round_trip(data, size);
    seal_round_trip(data, size);
    host_mode_round_trip(data, size);
    return 0;
}
