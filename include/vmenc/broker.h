/*
 * vmenc/broker.h - the key broker (issue 23): a daemon's library half that
 * alone holds the key-provider configuration and credentials (its own vmenc
 * workspace: `vmenc kms add ...` there) and serves the hosts of a cluster
 * over KMIP 1.4 on mutual TLS, so a host's KMIP provider points at the
 * brokers as a KMS cluster with failover and no host holds a KMS
 * credential. Each request is authorized against the cluster's etcd, read
 * fresh (linearizable) for every request: the client certificate is a
 * registered host, the host is in encryption mode ("safe"), and a Get of a
 * VM's KEK comes from the host that owns the VM (owner/<uuid> bound to its
 * live lease). Every release and every refusal is audited, with its
 * reason, in the broker workspace's log and in the cluster's etcd
 * (/vmenc/<cluster>/broker/events/...). The broker keeps no state of its
 * own: run several on one etcd cluster. Trust model, protocol and the
 * etcd keys: docs/broker.md.
 *
 * Safety rule: a key leaves the broker only in the response to a request
 * whose every check passed on etcd state read for that request; any error
 * reading that state (quorum lost, a record whose MAC fails) is a refusal.
 *
 * Thread safety: vmenc_broker_serve runs on one thread (it starts a thread
 * per connection); vmenc_broker_stop and vmenc_broker_get_status may be
 * called from any thread while it runs; vmenc_broker_close after serve
 * returned.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_BROKER_H
#define VMENC_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "vmenc/common.h"
#include "vmenc/workspace.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmenc_broker vmenc_broker;

/* vmenc_broker_config (set struct_size). Strings are copied by open. */
typedef struct vmenc_broker_config {
    uint32_t struct_size;         /* sizeof(vmenc_broker_config) */
    const char *workspace_dir;    /* the broker's own workspace: key providers, audit log */
    const char *provider;         /* the alias there that serves hosts' KEKs (NULL: the only one) */
    const char *broker_id;        /* this broker's name in events (NULL: "broker") */
    const char *listen_host;      /* address to bind (NULL: "127.0.0.1") */
    uint16_t listen_port;         /* 0: an ephemeral port (see vmenc_broker_get_status) */
    const char *ca_file;          /* PEM CA(s) that sign host client certificates */
    const char *cert_file;        /* the broker's TLS server certificate (PEM) */
    const char *key_file;         /* its key (PEM, unencrypted) */
    const char *cluster;          /* the cluster name (etcd prefix /vmenc/<cluster>/) */
    const char *etcd_endpoints;   /* "https://HOST:PORT,..." */
    const char *etcd_ca_file;
    const char *etcd_cert_file;
    const char *etcd_key_file;
    uint32_t idle_timeout_ms;     /* a connection idle this long is closed (0: 60000) */
    uint32_t max_connections;     /* concurrent connections (0: 64); more are closed at once */
    uint32_t max_request_bytes;   /* one request (0: 65536) */
    const vmenc_workspace_open_options *open_options; /* the workspace's passphrase etc. (may be NULL) */
    uint32_t etcd_request_timeout_ms; /* one etcd request per endpoint (0: 2000): how soon a broker
                                         without quorum refuses */
} vmenc_broker_config;

/* vmenc_broker_open opens the workspace, connects to etcd (nothing read
 * yet), and binds the listening socket. Fails with VMENC_E_INVALID_ARG (a
 * missing field), VMENC_E_ABI_VERSION, the workspace's open statuses,
 * VMENC_E_NOT_FOUND (no such provider alias), VMENC_E_KMS_TLS (certificate
 * or key unreadable), VMENC_E_IO (bind failed), VMENC_E_NOMEM. |*out|
 * untouched on failure. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_broker_open(const vmenc_broker_config *cfg, vmenc_broker **out);

/* vmenc_broker_serve accepts and serves connections until
 * vmenc_broker_stop; returns VMENC_OK then (VMENC_E_BAD_STATE if called
 * twice at once). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_broker_serve(vmenc_broker *b);

/* vmenc_broker_stop makes serve return soon: it stops accepting, closes
 * every connection and waits for their threads. NULL-safe; idempotent. */
VMENC_API void vmenc_broker_stop(vmenc_broker *b);

/* vmenc_broker_close frees the broker (after serve returned). NULL-safe. */
VMENC_API void vmenc_broker_close(vmenc_broker *b);

/* vmenc_broker_status: counters since open. */
typedef struct vmenc_broker_status {
    uint32_t struct_size;         /* sizeof(vmenc_broker_status) */
    uint16_t port;                /* the port listened on */
    uint64_t connections;         /* accepted (TLS handshake done) */
    uint64_t requests;            /* KMIP requests read */
    uint64_t releases;            /* keys released (Get answered with key material) */
    uint64_t refusals;            /* operations refused (audited) */
    uint64_t errors;              /* malformed requests, failed handshakes */
} vmenc_broker_status;

/* vmenc_broker_get_status fills |out| (VMENC_E_INVALID_ARG / ABI_VERSION). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_broker_get_status(vmenc_broker *b, vmenc_broker_status *out);

#ifdef __cplusplus
}
#endif

#endif /* VMENC_BROKER_H */
