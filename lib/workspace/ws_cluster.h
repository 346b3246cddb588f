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

/* ws_cluster_attach: if WORKSPACE/cluster.json exists, connect and switch
 * the open workspace to cluster mode (nothing to do otherwise). Called by
 * ws_open last. |err| names the file and the reason. */
VMENC_INTERNAL vmenc_status ws_cluster_attach(vmenc_workspace *ws, vmenc_workspace_error *err);
/* ws_cluster_detach ends this process's session (NULL-safe). Called by
 * vmenc_workspace_free first. */
VMENC_INTERNAL void ws_cluster_detach(vmenc_workspace *ws);

#endif /* VMENC_LIB_WORKSPACE_WS_CLUSTER_H */
