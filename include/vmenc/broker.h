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

#include <stdbool.h>
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


/* ---- attestation: a host's enrolment, the administrator's part ------------------------ */

/* vmenc_broker_enroll_spec (set struct_size): enrol this host's TPM
 * through a broker. */
typedef struct vmenc_broker_enroll_spec {
    uint32_t struct_size;         /* sizeof(vmenc_broker_enroll_spec) */
    const char *broker;           /* "HOST:PORT" of one broker */
    const char *server_name;      /* the broker certificate's name (NULL: HOST) */
    const char *ca_file;          /* CA of the broker's certificate */
    const char *cert_file;        /* this host's client certificate (registered in the cluster) */
    const char *key_file;
    const char *tpm_tcti;         /* "swtpm:host=127.0.0.1,port=N" or "device:/dev/tpmrm0" */
    const char *ak_blob_path;     /* where the new AK blob is written (must not exist) */
    uint32_t timeout_ms;          /* 0: 30000 */
} vmenc_broker_enroll_spec;

/* vmenc_broker_host_enroll creates an AK under the TPM's RSA EK, sends
 * Enroll-Begin (AK public, EK certificate if the TPM has one, else EK
 * public), activates the credential the broker made for that EK and AK,
 * sends Enroll-Finish, and writes the AK blob (the provider's ak_blob
 * option). The binding then waits for vmenc_broker_host_approve. Fails
 * with VMENC_E_UNSUPPORTED (built without tss2), the TPM's and the KMIP
 * connection's statuses, VMENC_E_KMS_AUTH / _PERMISSION (refused: the
 * broker's reason is in its audit), VMENC_E_EXISTS (blob file exists). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_broker_host_enroll(const vmenc_broker_enroll_spec *spec);

/* vmenc_broker_admin (set struct_size): the cluster's etcd, for the
 * administrator's calls below (whoever holds these credentials is the
 * cluster's administrator: docs/broker.md). */
typedef struct vmenc_broker_admin {
    uint32_t struct_size;         /* sizeof(vmenc_broker_admin) */
    const char *cluster;          /* NULL: "vmenc" */
    const char *etcd_endpoints;
    const char *etcd_ca_file;
    const char *etcd_cert_file;
    const char *etcd_key_file;
    /* VMENC_0.5: a workspace that is a member of the cluster, and who is
     * asking. When set, its policy decides each call below
     * (Cryptographer.ManageKeyServers on the root: a No cryptography
     * administrator is denied, VMENC_E_DENIED) and its audit log records
     * it - allowed, denied or failed - as cluster.host.approve|revoke,
     * cluster.measurement.add|remove, cluster.attestation.mode. NULL: the
     * etcd credentials alone decide and only etcd's history records it
     * (the `vmenc cluster` verbs always set it). */
    vmenc_workspace *workspace;
    const char *principal;
} vmenc_broker_admin;

/* vmenc_broker_host_approve approves host |host|'s enrolled TPM binding
 * (VMENC_E_NOT_FOUND if none); vmenc_broker_host_revoke deletes it and the
 * host's last attestation (the host gets no key where attestation is
 * required until it enrols again and is approved). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_broker_host_approve(const vmenc_broker_admin *a, const char *host);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_broker_host_revoke(const vmenc_broker_admin *a, const char *host);

/* vmenc_broker_set_attestation writes the cluster's attestation setting:
 * |mode| "off", "period=SECONDS" or "per-release"; |pcrs| the selection
 * quoted ("sha256:0,1,2,3,4,5,6,7"; NULL: that); |ek_ca| a PEM file or
 * directory of TPM manufacturer CAs on the brokers' machines (NULL: EK
 * certificates are refused and hosts enrol with their EK public key). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_broker_set_attestation(const vmenc_broker_admin *a, const char *mode,
                                                                     const char *pcrs, const char *ek_ca);

/* vmenc_broker_measurement_add approves measurement |name|: the SHA-256
 * (hex) of the PCR values of selection |pcrs|; _remove withdraws it
 * (VMENC_E_NOT_FOUND); _list calls |fn| with each (name, its JSON). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_broker_measurement_add(const vmenc_broker_admin *a, const char *name,
                                                                     const char *pcrs, const char *digest_hex,
                                                                     const char *added_by);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_broker_measurement_remove(const vmenc_broker_admin *a,
                                                                        const char *name);
typedef int (*vmenc_broker_measurement_fn)(void *arg, const char *name, const char *json);
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_broker_measurement_list(const vmenc_broker_admin *a,
                                                                      vmenc_broker_measurement_fn fn, void *arg);

/* vmenc_broker_measurement_from_tpm reads the PCRs of |pcrs| from the TPM
 * |tpm_tcti| and writes the SHA-256 of their values (64 hex digits and a
 * NUL) to |out_hex|: the digest a host in that state quotes. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_broker_measurement_from_tpm(const char *tpm_tcti, const char *pcrs,
                                                                          char out_hex[65]);

#ifdef __cplusplus
}
#endif

#endif /* VMENC_BROKER_H */
