/*
 * lib/broker/enroll.c - the two other parties of the broker's attestation
 * (include/vmenc/broker.h, docs/broker.md; TPM byte formats docs/attest.md):
 * a host enrolling its TPM through a broker (Enroll-Begin / Enroll-Finish,
 * KMIP extension operations 0x80000101/0x80000102 over the same mutual TLS
 * as its key requests), and the administrator's etcd writes: approve or
 * revoke a binding, the attestation mode, the approved measurements.
 *
 * Safety rule: the host sends only public TPM data (AK public, EK public or
 * certificate) and the credential the TPM activated; the AK's private part
 * leaves the TPM only wrapped by it (the AK blob), and the secret the TPM
 * recovers lives in secure memory until it is sent.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attest/attest.h"
#include "broker/broker_internal.h"
#include "control/etcd/cluster.h"
#include "core/fs.h"
#include "kms/kmip/kmip_conn.h"
#include "kms/kmip/kmip_msg.h"
#include "net/etcd.h"
#include "net/tls_conn.h"
#include "vmenc/broker.h"
#include "vmenc/policy.h"
#include "vmenc/workspace.h"

#define DEFAULT_TIMEOUT_MS 30000u

/* ---- the host's enrolment ------------------------------------------------------------------ */

static vmenc_status roundtrip(vmenc_kmip_conn *conn, vmenc_kmip_request *req, uint32_t op, uint64_t deadline,
                              uint8_t **raw, size_t *raw_len, vmenc_kmip_response *resp, uint32_t *payload) {
    uint8_t *bytes = NULL;
    size_t len = 0;
    bool got = false;
    VMENC_GUARD(vmenc_kmip_request_finish(req, &bytes, &len));
    vmenc_status s = vmenc_kmip_conn_roundtrip(conn, bytes, len, deadline, raw, raw_len, &got);
    free(bytes);
    VMENC_GUARD(s);
    s = vmenc_kmip_response_parse(*raw, *raw_len, resp);
    if (s == VMENC_OK && (resp->num_items != 1 || (resp->items[0].operation != 0 && resp->items[0].operation != op)))
        s = VMENC_E_KMS_PROTOCOL;
    if (s == VMENC_OK)
        s = vmenc_kmip_result_status(&resp->items[0]);
    if (s == VMENC_OK && resp->items[0].payload == VMENC_TTLV_NONE)
        s = VMENC_E_KMS_PROTOCOL;
    if (s == VMENC_OK)
        *payload = resp->items[0].payload;
    else
        vmenc_kmip_response_cleanup(resp);
    if (s != VMENC_OK) {
        vmenc_secure_free(*raw);
        *raw = NULL;
    }
    return s;
}

static vmenc_status split_addr(const char *addr, char *host, size_t cap, uint16_t *port) {
    const char *colon = strrchr(addr, ':');
    VMENC_ENSURE(colon != NULL && (size_t)(colon - addr) < cap && colon > addr, VMENC_E_INVALID_ARG);
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *end = NULL;
    unsigned long p = strtoul(colon + 1, &end, 10);
    VMENC_ENSURE(end != NULL && *end == '\0' && p > 0 && p <= 65535, VMENC_E_INVALID_ARG);
    *port = (uint16_t)p;
    return VMENC_OK;
}

static vmenc_status write_new_file(const char *path, const uint8_t *data, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return vmenc_status_from_errno(errno);
    bool ok = write(fd, data, len) == (ssize_t)len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        unlink(path);
        return VMENC_E_IO;
    }
    return VMENC_OK;
}

vmenc_status vmenc_broker_host_enroll(const vmenc_broker_enroll_spec *spec) {
    VMENC_ENSURE(spec != NULL && spec->struct_size >= sizeof(vmenc_broker_enroll_spec), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(spec->broker != NULL && spec->ca_file != NULL && spec->cert_file != NULL && spec->key_file != NULL &&
                     spec->tpm_tcti != NULL && spec->ak_blob_path != NULL,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(attest_tpm_available(), VMENC_E_UNSUPPORTED);
    VMENC_GUARD(vmenc_ensure_init());
    struct stat st;
    VMENC_ENSURE(lstat(spec->ak_blob_path, &st) != 0, VMENC_E_EXISTS);
    char host[256];
    uint16_t port = 0;
    VMENC_GUARD(split_addr(spec->broker, host, sizeof(host), &port));
    uint64_t deadline = vmenc_now_monotonic_ms() + (spec->timeout_ms ? spec->timeout_ms : DEFAULT_TIMEOUT_MS);

    attest_tpm *tpm = NULL;
    uint8_t *ek_cert = NULL, *ek_pub = NULL, *ak_pub = NULL, *ak_blob = NULL;
    size_t ek_cert_len = 0, ek_pub_len = 0, ak_pub_len = 0, ak_blob_len = 0;
    SSL_CTX *ctx = NULL;
    vmenc_kmip_conn conn;
    vmenc_kmip_conn_init(&conn);
    vmenc_secret *secret = NULL;
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    vmenc_kmip_response resp;
    memset(&resp, 0, sizeof(resp));
    const vmenc_kmip_version v14 = {1, 4};

    vmenc_status s = attest_tpm_open(spec->tpm_tcti, &tpm);
    if (s == VMENC_OK)
        s = attest_tpm_ek(tpm, &ek_cert, &ek_cert_len, &ek_pub, &ek_pub_len);
    if (s == VMENC_OK)
        s = attest_tpm_ak_create(tpm, &ak_pub, &ak_pub_len, &ak_blob, &ak_blob_len);
    if (s == VMENC_OK)
        s = vmenc_tls_ctx_new(spec->ca_file, spec->cert_file, spec->key_file, NULL, 0, &ctx);
    if (s == VMENC_OK)
        s = vmenc_kmip_conn_open(&conn, ctx, host, port, spec->server_name ? spec->server_name : host, deadline);
    uint32_t payload = VMENC_TTLV_NONE;
    vmenc_kmip_request req;
    if (s == VMENC_OK) {
        s = vmenc_kmip_request_begin(&req, v14, 1);
        if (s == VMENC_OK) {
            vmenc_kmip_request_item_begin(&req, (uint32_t)BROKER_OP_ENROLL_BEGIN);
            vmenc_ttlv_add_bytes(&req.cbb, BROKER_TAG_AK_PUBLIC, ak_pub, ak_pub_len);
            if (ek_cert != NULL && ek_cert_len > 0)
                vmenc_ttlv_add_bytes(&req.cbb, BROKER_TAG_EK_CERTIFICATE, ek_cert, ek_cert_len);
            else
                vmenc_ttlv_add_bytes(&req.cbb, BROKER_TAG_EK_PUBLIC, ek_pub, ek_pub_len);
            vmenc_kmip_request_item_end(&req);
            s = roundtrip(&conn, &req, (uint32_t)BROKER_OP_ENROLL_BEGIN, deadline, &raw, &raw_len, &resp, &payload);
        }
    }
    if (s == VMENC_OK) {
        const uint8_t *blob, *encs;
        size_t blob_len, encs_len;
        s = vmenc_ttlv_get_bytes(&resp.doc, payload, BROKER_TAG_CREDENTIAL_BLOB, &blob, &blob_len);
        if (s == VMENC_OK)
            s = vmenc_ttlv_get_bytes(&resp.doc, payload, BROKER_TAG_ENCRYPTED_SECRET, &encs, &encs_len);
        if (s == VMENC_OK)
            s = attest_tpm_activate(tpm, ak_blob, ak_blob_len, blob, blob_len, encs, encs_len, &secret);
        vmenc_kmip_response_cleanup(&resp);
        vmenc_secure_free(raw);
        raw = NULL;
    }
    if (s == VMENC_OK) {
        s = vmenc_kmip_request_begin_secure(&req, v14, 1);
        if (s == VMENC_OK) {
            vmenc_kmip_request_item_begin(&req, (uint32_t)BROKER_OP_ENROLL_FINISH);
            vmenc_ttlv_add_bytes(&req.cbb, BROKER_TAG_ACTIVATED_CREDENTIAL, secret->bytes, secret->len);
            vmenc_kmip_request_item_end(&req);
            uint8_t *bytes = NULL;
            size_t len = 0;
            bool got = false;
            s = vmenc_kmip_request_finish(&req, &bytes, &len);
            if (s == VMENC_OK) {
                s = vmenc_kmip_conn_roundtrip(&conn, bytes, len, deadline, &raw, &raw_len, &got);
                vmenc_secure_free(bytes);
            }
            if (s == VMENC_OK)
                s = vmenc_kmip_response_parse(raw, raw_len, &resp);
            if (s == VMENC_OK) {
                s = resp.num_items == 1 ? vmenc_kmip_result_status(&resp.items[0]) : VMENC_E_KMS_PROTOCOL;
                vmenc_kmip_response_cleanup(&resp);
            }
            vmenc_secure_free(raw);
        }
    }
    if (s == VMENC_OK)
        s = write_new_file(spec->ak_blob_path, ak_blob, ak_blob_len);
    vmenc_secret_free(secret);
    vmenc_kmip_conn_close(&conn);
    SSL_CTX_free(ctx);
    attest_tpm_close(tpm);
    free(ek_cert);
    free(ek_pub);
    free(ak_pub);
    free(ak_blob);
    return s;
}

/* ---- the administrator's part: etcd writes -------------------------------------------------- */

/* has_ws: the caller set the workspace fields (a struct of this size or larger). */
static bool has_ws(const vmenc_broker_admin *a) {
    return a != NULL && a->struct_size >= offsetof(vmenc_broker_admin, principal) + sizeof(a->principal) &&
           a->workspace != NULL;
}

/* admin_authorize: with a workspace, its policy decides |op| on |target|
 * (Cryptographer.ManageKeyServers on the root); a denial is audited there. */
static vmenc_status admin_authorize(const vmenc_broker_admin *a, const char *op, const char *target) {
    if (!has_ws(a))
        return VMENC_OK;
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_MANAGE_KEY_SERVERS};
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    return vmenc_workspace_authorize(a->workspace, a->principal, &rq, op, target, &d);
}

/* admin_done audits the outcome of an authorized call: the call's status
 * wins, else the audit's (an unaudited edit is reported). */
static vmenc_status admin_done(const vmenc_broker_admin *a, const char *op, const char *target, vmenc_status s,
                               const char *reason) {
    if (!has_ws(a))
        return s;
    vmenc_status as = vmenc_workspace_audit_result(a->workspace, a->principal, op, target, NULL, NULL, s,
                                                   s == VMENC_OK ? reason : NULL);
    return s != VMENC_OK ? s : as;
}

static vmenc_status admin_client(const vmenc_broker_admin *a, vmenc_etcd **out, const char **cluster) {
    VMENC_ENSURE(a != NULL && a->struct_size >= offsetof(vmenc_broker_admin, workspace) && a->etcd_endpoints != NULL &&
                     a->etcd_ca_file != NULL && a->etcd_cert_file != NULL && a->etcd_key_file != NULL,
                 VMENC_E_INVALID_ARG);
    *cluster = a->cluster != NULL ? a->cluster : "vmenc";
    VMENC_ENSURE(ctl_cluster_name_ok(*cluster), VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());
    vmenc_etcd_config ec = {.struct_size = sizeof(ec),
                            .endpoints = a->etcd_endpoints,
                            .ca_file = a->etcd_ca_file,
                            .cert_file = a->etcd_cert_file,
                            .key_file = a->etcd_key_file};
    return vmenc_etcd_new(&ec, out);
}

/* A name that goes into an etcd key: [A-Za-z0-9._-], 1..64, not . or .. */
static bool name_ok(const char *n) { return n != NULL && ctl_cluster_name_ok(n); }

/* Values we write go into JSON without escaping: refuse what would need it. */
static bool plain(const char *s) {
    for (; s != NULL && *s != '\0'; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
            return false;
    return s != NULL;
}

static vmenc_status kv_put(vmenc_etcd *e, const char *key, const char *val) {
    vmenc_etcd_put_req r = {.key = (const uint8_t *)key, .key_len = strlen(key), .value = (const uint8_t *)val,
                            .value_len = strlen(val)};
    return vmenc_etcd_put(e, &r, NULL);
}

static vmenc_status kv_delete(vmenc_etcd *e, const char *key, int64_t *deleted) {
    vmenc_etcd_delete_req r = {.key = (const uint8_t *)key, .key_len = strlen(key)};
    vmenc_etcd_result res;
    vmenc_status s = vmenc_etcd_delete_range(e, &r, &res);
    if (s == VMENC_OK && deleted != NULL)
        *deleted = res.deleted;
    vmenc_etcd_result_cleanup(&res);
    return s;
}

static vmenc_status vmenc_broker_host_approve_do(const vmenc_broker_admin *a, const char *host) {
    VMENC_ENSURE(name_ok(host), VMENC_E_INVALID_ARG);
    vmenc_etcd *e = NULL;
    const char *cl;
    VMENC_GUARD(admin_client(a, &e, &cl));
    char key[256];
    snprintf(key, sizeof(key), "/vmenc/%s/hosts/%s/tpm", cl, host);
    vmenc_etcd_range_req rr = {.key = (const uint8_t *)key, .key_len = strlen(key)};
    vmenc_etcd_result r;
    vmenc_status s = vmenc_etcd_range(e, &rr, &r);
    if (s == VMENC_OK && r.num_kvs != 1)
        s = VMENC_E_NOT_FOUND;
    if (s == VMENC_OK) {
        const char *old = "\"status\":\"awaiting approval\"";
        char *v = (char *)r.kvs[0].value;
        char *at = strstr(v, old);
        if (at == NULL) {
            s = strstr(v, "\"status\":\"approved\"") != NULL ? VMENC_OK : VMENC_E_PARSE;
        } else {
            size_t n = r.kvs[0].value_len + 16;
            char *nv = malloc(n);
            if (nv == NULL)
                s = VMENC_E_NOMEM;
            else {
                snprintf(nv, n, "%.*s\"status\":\"approved\"%s", (int)(at - v), v, at + strlen(old));
                s = kv_put(e, key, nv);
                free(nv);
            }
        }
    }
    vmenc_etcd_result_cleanup(&r);
    vmenc_etcd_free(e);
    return s;
}

static vmenc_status vmenc_broker_host_revoke_do(const vmenc_broker_admin *a, const char *host) {
    VMENC_ENSURE(name_ok(host), VMENC_E_INVALID_ARG);
    vmenc_etcd *e = NULL;
    const char *cl;
    VMENC_GUARD(admin_client(a, &e, &cl));
    char key[256];
    int64_t n = 0, m = 0;
    snprintf(key, sizeof(key), "/vmenc/%s/hosts/%s/tpm", cl, host);
    vmenc_status s = kv_delete(e, key, &n);
    snprintf(key, sizeof(key), "/vmenc/%s/attest/%s", cl, host);
    if (s == VMENC_OK)
        s = kv_delete(e, key, &m);
    if (s == VMENC_OK && n == 0)
        s = VMENC_E_NOT_FOUND;
    vmenc_etcd_free(e);
    return s;
}

static vmenc_status vmenc_broker_set_attestation_do(const vmenc_broker_admin *a, const char *mode, const char *pcrs,
                                          const char *ek_ca) {
    VMENC_ENSURE(mode != NULL, VMENC_E_INVALID_ARG);
    bool mode_ok = strcmp(mode, "off") == 0 || strcmp(mode, "per-release") == 0;
    if (strncmp(mode, "period=", 7) == 0) {
        char *end = NULL;
        unsigned long v = strtoul(mode + 7, &end, 10);
        mode_ok = end != NULL && *end == '\0' && v >= 1 && v <= 86400;
    }
    VMENC_ENSURE(mode_ok, VMENC_E_INVALID_ARG);
    if (pcrs == NULL)
        pcrs = "sha256:0,1,2,3,4,5,6,7";
    attest_pcr_sel sel;
    VMENC_ENSURE(attest_pcr_sel_parse(pcrs, &sel) == VMENC_OK && plain(pcrs), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(ek_ca == NULL || plain(ek_ca), VMENC_E_INVALID_ARG);
    vmenc_etcd *e = NULL;
    const char *cl;
    VMENC_GUARD(admin_client(a, &e, &cl));
    char key[256], val[2048];
    snprintf(key, sizeof(key), "/vmenc/%s/broker/config", cl);
    if (ek_ca != NULL)
        snprintf(val, sizeof(val), "{\"attestation\":\"%s\",\"pcrs\":\"%s\",\"ek_ca\":\"%s\"}", mode, pcrs, ek_ca);
    else
        snprintf(val, sizeof(val), "{\"attestation\":\"%s\",\"pcrs\":\"%s\"}", mode, pcrs);
    vmenc_status s = kv_put(e, key, val);
    vmenc_etcd_free(e);
    return s;
}

static vmenc_status vmenc_broker_measurement_add_do(const vmenc_broker_admin *a, const char *name, const char *pcrs,
                                          const char *digest_hex, const char *added_by) {
    attest_pcr_sel sel;
    VMENC_ENSURE(name_ok(name) && pcrs != NULL && plain(pcrs) && attest_pcr_sel_parse(pcrs, &sel) == VMENC_OK,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(digest_hex != NULL && strlen(digest_hex) == 64 && strspn(digest_hex, "0123456789abcdef") == 64,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(added_by == NULL || plain(added_by), VMENC_E_INVALID_ARG);
    vmenc_etcd *e = NULL;
    const char *cl;
    VMENC_GUARD(admin_client(a, &e, &cl));
    char key[256], val[1024];
    snprintf(key, sizeof(key), "/vmenc/%s/measurements/%s", cl, name);
    snprintf(val, sizeof(val), "{\"pcrs\":\"%s\",\"digest\":\"%s\",\"added_by\":\"%s\",\"time_ms\":\"%llu\"}", pcrs,
             digest_hex, added_by != NULL ? added_by : "", (unsigned long long)vmenc_now_realtime_ms());
    vmenc_status s = kv_put(e, key, val);
    vmenc_etcd_free(e);
    return s;
}

static vmenc_status vmenc_broker_measurement_remove_do(const vmenc_broker_admin *a, const char *name) {
    VMENC_ENSURE(name_ok(name), VMENC_E_INVALID_ARG);
    vmenc_etcd *e = NULL;
    const char *cl;
    VMENC_GUARD(admin_client(a, &e, &cl));
    char key[256];
    int64_t n = 0;
    snprintf(key, sizeof(key), "/vmenc/%s/measurements/%s", cl, name);
    vmenc_status s = kv_delete(e, key, &n);
    if (s == VMENC_OK && n == 0)
        s = VMENC_E_NOT_FOUND;
    vmenc_etcd_free(e);
    return s;
}

vmenc_status vmenc_broker_measurement_list(const vmenc_broker_admin *a, vmenc_broker_measurement_fn fn, void *arg) {
    VMENC_ENSURE(fn != NULL, VMENC_E_INVALID_ARG);
    vmenc_etcd *e = NULL;
    const char *cl;
    VMENC_GUARD(admin_client(a, &e, &cl));
    char prefix[256];
    snprintf(prefix, sizeof(prefix), "/vmenc/%s/measurements/", cl);
    vmenc_etcd_range_req rr = {.key = (const uint8_t *)prefix, .key_len = strlen(prefix), .prefix = true};
    vmenc_etcd_result r;
    vmenc_status s = vmenc_etcd_range(e, &rr, &r);
    for (size_t i = 0; s == VMENC_OK && i < r.num_kvs; i++) {
        const char *name = (const char *)r.kvs[i].key + strlen(prefix);
        if (fn(arg, name, (const char *)r.kvs[i].value) != 0)
            break;
    }
    vmenc_etcd_result_cleanup(&r);
    vmenc_etcd_free(e);
    return s;
}

vmenc_status vmenc_broker_measurement_from_tpm(const char *tpm_tcti, const char *pcrs, char out_hex[65]) {
    VMENC_ENSURE(tpm_tcti != NULL && pcrs != NULL && out_hex != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());
    attest_tpm *tpm = NULL;
    uint8_t *vals = NULL;
    size_t vals_len = 0;
    uint8_t d[ATTEST_DIGEST_BYTES];
    vmenc_status s = attest_tpm_open(tpm_tcti, &tpm);
    if (s == VMENC_OK)
        s = attest_tpm_pcr_read(tpm, pcrs, &vals, &vals_len);
    if (s == VMENC_OK)
        s = attest_pcr_digest(pcrs, vals, vals_len, d);
    if (s == VMENC_OK)
        for (size_t i = 0; i < sizeof(d); i++)
            snprintf(out_hex + 2 * i, 3, "%02x", d[i]);
    free(vals);
    attest_tpm_close(tpm);
    return s;
}

/* ---- the administrator's calls: authorized and audited through a workspace (when given) ------- */

vmenc_status vmenc_broker_host_approve(const vmenc_broker_admin *a, const char *host) {
    const char *op = "cluster.host.approve";
    VMENC_GUARD(admin_authorize(a, op, host));
    return admin_done(a, op, host, vmenc_broker_host_approve_do(a, host), "TPM binding approved: keys may be released");
}

vmenc_status vmenc_broker_host_revoke(const vmenc_broker_admin *a, const char *host) {
    const char *op = "cluster.host.revoke";
    VMENC_GUARD(admin_authorize(a, op, host));
    return admin_done(a, op, host, vmenc_broker_host_revoke_do(a, host), "TPM binding and last attestation deleted");
}

vmenc_status vmenc_broker_set_attestation(const vmenc_broker_admin *a, const char *mode, const char *pcrs,
                                          const char *ek_ca) {
    const char *op = "cluster.attestation.mode";
    VMENC_GUARD(admin_authorize(a, op, mode));
    char reason[256];
    snprintf(reason, sizeof(reason), "attestation %s, PCRs %s, EK CA %s", mode != NULL ? mode : "?",
             pcrs != NULL ? pcrs : "sha256:0,1,2,3,4,5,6,7", ek_ca != NULL ? ek_ca : "none");
    return admin_done(a, op, mode, vmenc_broker_set_attestation_do(a, mode, pcrs, ek_ca), reason);
}

vmenc_status vmenc_broker_measurement_add(const vmenc_broker_admin *a, const char *name, const char *pcrs,
                                          const char *digest_hex, const char *added_by) {
    const char *op = "cluster.measurement.add";
    VMENC_GUARD(admin_authorize(a, op, name));
    char reason[256];
    snprintf(reason, sizeof(reason), "measurement approved: %s digest %.64s", pcrs != NULL ? pcrs : "?",
             digest_hex != NULL ? digest_hex : "?");
    return admin_done(a, op, name, vmenc_broker_measurement_add_do(a, name, pcrs, digest_hex, added_by), reason);
}

vmenc_status vmenc_broker_measurement_remove(const vmenc_broker_admin *a, const char *name) {
    const char *op = "cluster.measurement.remove";
    VMENC_GUARD(admin_authorize(a, op, name));
    return admin_done(a, op, name, vmenc_broker_measurement_remove_do(a, name), "measurement withdrawn");
}
