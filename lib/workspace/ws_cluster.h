/*
 * lib/workspace/ws_cluster.h - the workspace's cluster mode (issue 22):
 * the files of cluster_file.c and the attachment of cluster.c that turns
 * an open workspace into a cluster host (policy from etcd through the
 * policy's refresh/commit hooks, fencing and ownership hooks into the VM
 * layer). docs/cluster.md. Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_WORKSPACE_WS_CLUSTER_H
#define VMENC_LIB_WORKSPACE_WS_CLUSTER_H

#include <stdint.h>

#include "core/internal.h"
#include "vmenc/workspace.h"

#define WS_CLUSTER_FILE "cluster.json"
#define WS_CLUSTER_KEY_PURPOSE "cluster-key"

/* WORKSPACE/cluster.json */
typedef struct ws_cluster_file {
    char *name;
    char *endpoints;
    char *ca_file;
    char *cert_file;
    char *key_file;
    uint32_t ttl_s;        /* 0: default */
} ws_cluster_file;

/* /vmenc/<cluster>/cluster */
typedef struct ws_cluster_doc {
    char *name;
    char *id;              /* UUID: the cluster key's wrap context */
    char *key_provider;    /* alias whose KEK wraps the cluster key */
    char *key;             /* wrapped-key text "vmwk1:..." */
} ws_cluster_doc;

/* Parse (strict; VMENC_E_PARSE / VMENC_E_BAD_VERSION; |out| zeroed on
 * failure) and write (malloc'd, NUL-terminated) the two documents. */
VMENC_INTERNAL vmenc_status ws_cluster_file_parse(const uint8_t *text, size_t len, ws_cluster_file *out);
VMENC_INTERNAL vmenc_status ws_cluster_file_serialize(const ws_cluster_file *f, char **out);
VMENC_INTERNAL void ws_cluster_file_cleanup(ws_cluster_file *f);
VMENC_INTERNAL vmenc_status ws_cluster_doc_parse(const uint8_t *text, size_t len, ws_cluster_doc *out);
VMENC_INTERNAL vmenc_status ws_cluster_doc_serialize(const ws_cluster_doc *d, char **out);
VMENC_INTERNAL void ws_cluster_doc_cleanup(ws_cluster_doc *d);

/* The sealed policy document in etcd (docs/cluster.md "The policy
 * document's seal"): "VMENCPS1" | generation (u64, big-endian, >= 1) |
 * BLAKE2b-256 MAC (32) | the policy JSON (>= 1 byte). The MAC is checked
 * by cluster.c; this is only the envelope. */
#define WS_POLICY_SEAL_MAGIC "VMENCPS1"
#define WS_POLICY_SEAL_MAGIC_LEN 8u
#define WS_POLICY_SEAL_MAC_BYTES 32u
#define WS_POLICY_SEAL_HEADER (WS_POLICY_SEAL_MAGIC_LEN + 8u + WS_POLICY_SEAL_MAC_BYTES)
typedef struct ws_policy_seal {
    uint64_t gen;
    uint8_t mac[WS_POLICY_SEAL_MAC_BYTES];
    const uint8_t *json;   /* parse: points into the input */
    size_t json_len;
} ws_policy_seal;
/* ws_policy_seal_parse: VMENC_E_TRUNCATED, VMENC_E_BAD_MAGIC,
 * VMENC_E_PARSE (generation 0, no JSON); |out| zeroed on failure.
 * ws_policy_seal_serialize: a new buffer (the caller frees it). Pure. */
VMENC_INTERNAL vmenc_status ws_policy_seal_parse(const uint8_t *v, size_t len, ws_policy_seal *out);
VMENC_INTERNAL vmenc_status ws_policy_seal_serialize(const ws_policy_seal *s, uint8_t **out, size_t *out_len);

/* ws_cluster_host_doc_set_mode: the host registration |doc| (/vmenc/<C>/host/<id>,
 * {"host","encryption_mode","cert_sha256","workspace","since"}, docs/cluster.md)
 * with its "encryption_mode" set to |mode| and every other member kept, as
 * one line of plain JSON in a new NUL-terminated buffer (the caller frees
 * it). VMENC_E_PARSE when |doc| is not a strict JSON object with a string
 * "host" (a registration nobody can read is never rewritten into one that
 * a broker could). Pure. */
VMENC_INTERNAL vmenc_status ws_cluster_host_doc_set_mode(const uint8_t *doc, size_t len, const char *mode,
                                                         char **out);

/* ws_cluster_attach: if WORKSPACE/cluster.json exists, connect and switch
 * the open workspace to cluster mode (nothing to do otherwise). Called by
 * ws_open last. |err| names the file and the reason. */
VMENC_INTERNAL vmenc_status ws_cluster_attach(vmenc_workspace *ws, vmenc_workspace_error *err);
/* ws_cluster_detach ends this process's session (NULL-safe). Called by
 * vmenc_workspace_free first. */
VMENC_INTERNAL void ws_cluster_detach(vmenc_workspace *ws);

#endif /* VMENC_LIB_WORKSPACE_WS_CLUSTER_H */
