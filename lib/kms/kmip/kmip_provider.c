/*
 * lib/kms/kmip/kmip_provider.c - the KMIP key provider: version
 * negotiation, the KMIP operations vmenc needs (Create+Activate, Get with
 * the key's State, Locate, Revoke, Destroy, Query), a persistent connection
 * with reconnect, and the factory for endpoint configurations.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attest/attest.h"
#include "kms/kmip/kmip_conn.h"
#include "kms/kmip/kmip_msg.h"
#include "kms/kmip/kmip_provider.h"
#include "kms/kms_internal.h"
#include "vmenc/keys.h"

#define NAME_MAX_LEN 255u
#define USAGE_MASK (KMIP_USAGE_ENCRYPT | KMIP_USAGE_DECRYPT | KMIP_USAGE_WRAP_KEY | KMIP_USAGE_UNWRAP_KEY)

typedef struct kmip_provider {
    vmenc_kms_provider base; /* first: the KMS core sees only this */
    char *host;
    char *server_name;
    uint16_t port;
    uint32_t connect_timeout_ms; /* caps connect + handshake within a call's deadline */
    uint32_t request_timeout_ms; /* caps one request/response within a call's deadline */
    vmenc_kmip_version version;
    bool version_known;      /* forced by config, or negotiated */
    SSL_CTX *ctx;
    pthread_mutex_t mu;      /* one request at a time on |conn| */
    vmenc_kmip_conn conn;
    uint64_t num_connects;
    /* Key broker attestation (docs/broker.md): when set, every Get is
     * preceded on the same connection by Attest-Challenge / Attest-Quote
     * with this TPM and AK. */
    char *tpm_tcti;
    uint8_t *ak_blob;
    size_t ak_blob_len;
    /* The broker's ValidUntil of the last good quote (seconds since the
     * epoch): in its period mode one quote covers every Get until then; in
     * per-release mode it is the quote's own second, so every Get quotes. */
    int64_t attest_valid_until_s;
} kmip_provider;

static const vmenc_kms_provider_ops k_ops;

static kmip_provider *from(vmenc_kms_provider *p) {
    return p != NULL && p->ops == &k_ops ? (kmip_provider *)p : NULL;
}

static uint64_t deadline_after(uint32_t timeout_ms) { return vmenc_now_monotonic_ms() + timeout_ms; }

/* capped: the earlier of the call's deadline and |cap_ms| from now. Caps
 * let a cluster move on from a black-holed endpoint (TCP accepted, no
 * answer) while the caller's deadline still leaves time for the next. */
static uint64_t capped(uint64_t deadline, uint32_t cap_ms) {
    uint64_t c = deadline_after(cap_ms);
    return c < deadline ? c : deadline;
}

static bool id_ok(const char *id) {
    if (id == NULL)
        return false;
    size_t n = strnlen(id, VMENC_KEY_ID_MAX + 1);
    return n > 0 && n <= VMENC_KEY_ID_MAX && vmenc_utf8_valid((const uint8_t *)id, n);
}

/* ---- one exchange: request out, response in (secure memory) -------------------- */

typedef struct exchange {
    uint8_t *raw; /* secure memory: responses may carry key material */
    size_t raw_len;
    vmenc_kmip_response resp;
} exchange;

static void exchange_cleanup(exchange *ex) {
    vmenc_kmip_response_cleanup(&ex->resp);
    vmenc_secure_free(ex->raw); /* wipes */
    ex->raw = NULL;
    ex->raw_len = 0;
}

static vmenc_status ensure_connected(kmip_provider *kp, uint64_t deadline, bool *reused) {
    if (vmenc_kmip_conn_is_open(&kp->conn) && !vmenc_kmip_conn_is_stale(&kp->conn)) {
        *reused = true;
        return VMENC_OK;
    }
    vmenc_kmip_conn_close(&kp->conn);
    *reused = false;
    VMENC_GUARD(vmenc_kmip_conn_open(&kp->conn, kp->ctx, kp->host, kp->port, kp->server_name,
                                     capped(deadline, kp->connect_timeout_ms)));
    kp->num_connects++;
    return VMENC_OK;
}

static vmenc_status send_bytes(kmip_provider *kp, const uint8_t *req, size_t len, bool read_only,
                               uint64_t deadline, exchange *ex) {
    for (int attempt = 0;; attempt++) {
        bool reused = false, got = false;
        VMENC_GUARD(ensure_connected(kp, deadline, &reused));
        vmenc_status s = vmenc_kmip_conn_roundtrip(&kp->conn, req, len, capped(deadline, kp->request_timeout_ms),
                                                   &ex->raw, &ex->raw_len, &got);
        if (s == VMENC_OK)
            break;
        vmenc_kmip_conn_close(&kp->conn);
        /* A kept-alive connection the server dropped while idle fails
         * before any byte of a response. A read-only request is then sent
         * once more on a fresh connection; one that changes state (Create,
         * Activate, Revoke, Destroy) is not, since the server may have
         * executed it before the connection died. */
        if (!(read_only && reused && !got && s == VMENC_E_KMS_UNAVAILABLE && attempt == 0)) {
            /* Nor is it sent to another server of a cluster: once a
             * state-changing request has left whole, a transport failure
             * leaves its outcome unknown (a Create may have made a key),
             * and the caller, not the failover, decides (docs/kms.md). */
            if (!read_only && kp->conn.request_sent && vmenc_kms_status_fails_over(s))
                return VMENC_E_OUTCOME_UNKNOWN;
            return s;
        }
    }
    vmenc_status s = vmenc_kmip_response_parse(ex->raw, ex->raw_len, &ex->resp);
    if (s != VMENC_OK) {
        vmenc_kmip_conn_close(&kp->conn);
        exchange_cleanup(ex);
        /* a garbled answer to a state change: it reached the server */
        if (!read_only && vmenc_kms_status_fails_over(s))
            s = VMENC_E_OUTCOME_UNKNOWN;
    }
    return s;
}

/* read_only_op: may |op| run twice, here or on another server of a
 * cluster, without harm? The reads, and the broker's attestation exchange
 * (a fresh challenge just replaces the nonce; a quote answers only its own
 * nonce). */
static bool read_only_op(uint32_t op) {
    return op == KMIP_OP_GET || op == KMIP_OP_GET_ATTRIBUTES || op == KMIP_OP_LOCATE || op == KMIP_OP_QUERY ||
           op == KMIP_OP_DISCOVER_VERSIONS || op == KMIP_OP_ENCRYPT || op == KMIP_OP_DECRYPT ||
           op == 0x80000103u /* Attest-Challenge */ || op == 0x80000104u /* Attest-Quote */;
}

/* run finishes |req|, sends it and checks that the response answers each of
 * the |num_ops| operations in |ops|, in order. */
static vmenc_status run(kmip_provider *kp, vmenc_kmip_request *req, const uint32_t *ops, uint32_t num_ops,
                        uint64_t deadline, exchange *ex) {
    uint8_t *bytes = NULL;
    size_t len = 0;
    memset(ex, 0, sizeof(*ex));
    vmenc_status s = vmenc_kmip_request_finish(req, &bytes, &len);
    if (s == VMENC_E_BAD_ENCODING || s == VMENC_E_TOO_LARGE)
        return VMENC_E_INVALID_ARG;
    VMENC_GUARD(s);
    bool read_only = true;
    for (uint32_t i = 0; i < num_ops; i++)
        read_only = read_only && read_only_op(ops[i]);
    s = send_bytes(kp, bytes, len, read_only, deadline, ex);
    if (req->secure) {
        vmenc_secure_free(bytes); /* wipes */
    } else {
        sodium_memzero(bytes, len);
        free(bytes);
    }
    VMENC_GUARD(s);

    const vmenc_kmip_response *r = &ex->resp;
    for (uint32_t i = 0; i < r->num_items && i < num_ops; i++) {
        const vmenc_kmip_result *it = &r->items[i];
        bool ok = (it->operation == 0 || it->operation == ops[i]) &&
                  (num_ops == 1 || it->item_id == 0 || it->item_id == i + 1);
        if (!ok)
            s = VMENC_E_KMS_PROTOCOL;
    }
    if (s == VMENC_OK && r->num_items != num_ops) {
        /* A failed batch may stop early; a failure explains itself. */
        s = VMENC_E_KMS_PROTOCOL;
        for (uint32_t i = 0; i < r->num_items; i++)
            if (vmenc_kmip_result_status(&r->items[i]) != VMENC_OK) {
                s = vmenc_kmip_result_status(&r->items[i]);
                break;
            }
    }
    if (s != VMENC_OK)
        exchange_cleanup(ex);
    return s;
}

/* item_payload returns the status of batch item |i| and its payload. */
static vmenc_status item_payload(const exchange *ex, uint32_t i, uint32_t *payload) {
    const vmenc_kmip_result *it = &ex->resp.items[i];
    VMENC_GUARD(vmenc_kmip_result_status(it));
    VMENC_ENSURE(it->payload != VMENC_TTLV_NONE, VMENC_E_KMS_PROTOCOL);
    *payload = it->payload;
    return VMENC_OK;
}

static vmenc_status copy_uid(const vmenc_ttlv_doc *d, uint32_t node, char *out, size_t cap) {
    const char *s;
    size_t n;
    VMENC_GUARD(vmenc_ttlv_get_text(d, node, KMIP_TAG_UNIQUE_IDENTIFIER, &s, &n));
    VMENC_ENSURE(n > 0 && n <= VMENC_KEY_ID_MAX && memchr(s, 0, n) == NULL, VMENC_E_KMS_PROTOCOL);
    VMENC_ENSURE(n < cap, VMENC_E_BUFFER_TOO_SMALL);
    memcpy(out, s, n);
    out[n] = '\0';
    return VMENC_OK;
}

/* ---- version negotiation --------------------------------------------------------- */

static vmenc_status ensure_version(kmip_provider *kp, uint64_t deadline) {
    if (kp->version_known)
        return VMENC_OK;
    /* DiscoverVersions travels in a 1.2 message (our lowest version); the
     * server answers with the versions of our list it speaks, its
     * preferred first. */
    vmenc_kmip_request req;
    const vmenc_kmip_version v12 = {1, 2};
    VMENC_GUARD(vmenc_kmip_request_begin(&req, v12, 1));
    vmenc_kmip_request_item_begin(&req, KMIP_OP_DISCOVER_VERSIONS);
    for (size_t i = 0; i < vmenc_kmip_num_supported_versions; i++) {
        size_t m = vmenc_ttlv_begin_struct(&req.cbb, KMIP_TAG_PROTOCOL_VERSION);
        vmenc_ttlv_add_int(&req.cbb, KMIP_TAG_PROTOCOL_VERSION_MAJOR, vmenc_kmip_supported_versions[i].major);
        vmenc_ttlv_add_int(&req.cbb, KMIP_TAG_PROTOCOL_VERSION_MINOR, vmenc_kmip_supported_versions[i].minor);
        vmenc_ttlv_end_struct(&req.cbb, m);
    }
    vmenc_kmip_request_item_end(&req);
    exchange ex;
    const uint32_t ops[] = {KMIP_OP_DISCOVER_VERSIONS};
    VMENC_GUARD(run(kp, &req, ops, 1, deadline, &ex));
    uint32_t payload;
    vmenc_status s = item_payload(&ex, 0, &payload);
    if (s == VMENC_E_UNSUPPORTED) {
        /* A KMIP 1.0 server without DiscoverVersions: try 1.2. */
        kp->version = v12;
        kp->version_known = true;
        exchange_cleanup(&ex);
        return VMENC_OK;
    }
    if (s == VMENC_OK) {
        s = VMENC_E_UNSUPPORTED; /* no version in common */
        const vmenc_ttlv_doc *d = &ex.resp.doc;
        for (uint32_t pv = vmenc_ttlv_child(d, payload, KMIP_TAG_PROTOCOL_VERSION, VMENC_TTLV_NONE);
             pv != VMENC_TTLV_NONE; pv = vmenc_ttlv_child(d, payload, KMIP_TAG_PROTOCOL_VERSION, pv)) {
            int32_t maj, min;
            if (vmenc_ttlv_get_int(d, pv, KMIP_TAG_PROTOCOL_VERSION_MAJOR, &maj) != VMENC_OK ||
                vmenc_ttlv_get_int(d, pv, KMIP_TAG_PROTOCOL_VERSION_MINOR, &min) != VMENC_OK) {
                s = VMENC_E_KMS_PROTOCOL;
                break;
            }
            vmenc_kmip_version v = {(uint8_t)maj, (uint8_t)min};
            if (maj >= 0 && maj <= 255 && min >= 0 && min <= 255 && vmenc_kmip_version_supported(v)) {
                kp->version = v;
                kp->version_known = true;
                s = VMENC_OK;
                break;
            }
        }
    }
    exchange_cleanup(&ex);
    return s;
}

static bool v2(const kmip_provider *kp) { return kp->version.major >= 2; }

/* ---- operations (called with kp->mu held) ------------------------------------------- */

/* do_uid_op runs one request whose only payload is the object's Unique
 * Identifier (Activate, Destroy) and returns its mapped result status. */
static vmenc_status do_uid_op(kmip_provider *kp, uint32_t op, const char *key_id, uint64_t deadline) {
    vmenc_kmip_request req;
    VMENC_GUARD(vmenc_kmip_request_begin(&req, kp->version, 1));
    vmenc_kmip_request_item_begin(&req, op);
    vmenc_ttlv_add_text(&req.cbb, KMIP_TAG_UNIQUE_IDENTIFIER, key_id, strlen(key_id));
    vmenc_kmip_request_item_end(&req);
    exchange ex;
    const uint32_t ops[] = {op};
    VMENC_GUARD(run(kp, &req, ops, 1, deadline, &ex));
    vmenc_status s = vmenc_kmip_result_status(&ex.resp.items[0]);
    exchange_cleanup(&ex);
    return s;
}

static vmenc_status do_destroy_only(kmip_provider *kp, const char *key_id, uint64_t deadline) {
    return do_uid_op(kp, KMIP_OP_DESTROY, key_id, deadline);
}

static vmenc_status do_activate(kmip_provider *kp, const char *key_id, uint64_t deadline) {
    return do_uid_op(kp, KMIP_OP_ACTIVATE, key_id, deadline);
}

static vmenc_status do_create(kmip_provider *kp, const char *name, uint64_t deadline, char *out_id,
                              size_t out_id_cap) {
    VMENC_GUARD(ensure_version(kp, deadline));
    vmenc_kmip_request req;
    VMENC_GUARD(vmenc_kmip_request_begin(&req, kp->version, 1));
    vmenc_kmip_request_item_begin(&req, KMIP_OP_CREATE);
    vmenc_ttlv_add_enum(&req.cbb, KMIP_TAG_OBJECT_TYPE, KMIP_OBJECT_SYMMETRIC_KEY);
    size_t m = vmenc_ttlv_begin_struct(&req.cbb, v2(kp) ? KMIP_TAG_ATTRIBUTES : KMIP_TAG_TEMPLATE_ATTRIBUTE);
    vmenc_kmip_add_attr_enum(&req, "Cryptographic Algorithm", KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, KMIP_ALG_AES);
    vmenc_kmip_add_attr_int(&req, "Cryptographic Length", KMIP_TAG_CRYPTOGRAPHIC_LENGTH, 256);
    vmenc_kmip_add_attr_int(&req, "Cryptographic Usage Mask", KMIP_TAG_CRYPTOGRAPHIC_USAGE_MASK, USAGE_MASK);
    if (name != NULL)
        vmenc_kmip_add_attr_name(&req, name, strlen(name));
    vmenc_ttlv_end_struct(&req.cbb, m);
    vmenc_kmip_request_item_end(&req);

    exchange ex;
    const uint32_t ops[] = {KMIP_OP_CREATE};
    VMENC_GUARD(run(kp, &req, ops, 1, deadline, &ex));
    char id[VMENC_KMS_KEY_ID_CAP];
    uint32_t payload;
    vmenc_status s = item_payload(&ex, 0, &payload);
    /* One new object, one identifier: with two, which key was made? */
    if (s == VMENC_OK && vmenc_ttlv_count(&ex.resp.doc, payload, KMIP_TAG_UNIQUE_IDENTIFIER) != 1)
        s = VMENC_E_KMS_PROTOCOL;
    if (s == VMENC_OK)
        s = copy_uid(&ex.resp.doc, payload, id, sizeof(id));
    exchange_cleanup(&ex);
    VMENC_GUARD(s);
    /* Activate as a second request rather than in the same batch through
     * the ID placeholder: PyKMIP (0.10) cannot parse an Activate without a
     * Unique Identifier. */
    s = strlen(id) < out_id_cap ? do_activate(kp, id, deadline) : VMENC_E_BUFFER_TOO_SMALL;
    if (s != VMENC_OK) {
        /* Do not leave an orphan Pre-Active key behind (best effort:
         * Pre-Active keys can be destroyed without a Revoke). */
        (void)do_destroy_only(kp, id, deadline);
        return s;
    }
    memcpy(out_id, id, strlen(id) + 1);
    return VMENC_OK;
}

/* parse_key checks a Get payload names |key_id|, holds an unwrapped AES-256
 * symmetric key, and points |*mat| at its 32 bytes (inside the response). */
static vmenc_status parse_key(const vmenc_ttlv_doc *d, uint32_t payload, const char *key_id,
                              const uint8_t **mat, size_t *mat_len) {
    uint32_t ot, fmt, alg, kb, sk, kv;
    int32_t bits;
    const char *uid;
    size_t uid_len;
    /* One of each: with two, the checks would read the first and a server
     * could slip another object's material in beside it. */
    VMENC_ENSURE(vmenc_ttlv_count(d, payload, KMIP_TAG_UNIQUE_IDENTIFIER) == 1 &&
                     vmenc_ttlv_count(d, payload, KMIP_TAG_OBJECT_TYPE) == 1 &&
                     vmenc_ttlv_count(d, payload, KMIP_TAG_SYMMETRIC_KEY) == 1,
                 VMENC_E_KMS_PROTOCOL);
    VMENC_GUARD(vmenc_ttlv_get_enum(d, payload, KMIP_TAG_OBJECT_TYPE, &ot));
    VMENC_GUARD(vmenc_ttlv_get_text(d, payload, KMIP_TAG_UNIQUE_IDENTIFIER, &uid, &uid_len));
    VMENC_ENSURE(uid_len == strlen(key_id) && memcmp(uid, key_id, uid_len) == 0, VMENC_E_KMS_WRONG_KEY);
    VMENC_ENSURE(ot == KMIP_OBJECT_SYMMETRIC_KEY, VMENC_E_KMS_WRONG_KEY);
    VMENC_GUARD(vmenc_ttlv_get_struct(d, payload, KMIP_TAG_SYMMETRIC_KEY, &sk));
    VMENC_GUARD(vmenc_ttlv_get_struct(d, sk, KMIP_TAG_KEY_BLOCK, &kb));
    VMENC_GUARD(vmenc_ttlv_get_enum(d, kb, KMIP_TAG_KEY_FORMAT_TYPE, &fmt));
    /* We never ask for wrapping or compression; refuse what we cannot read. */
    VMENC_ENSURE(vmenc_ttlv_child(d, kb, KMIP_TAG_KEY_WRAPPING_DATA, VMENC_TTLV_NONE) == VMENC_TTLV_NONE &&
                     vmenc_ttlv_child(d, kb, KMIP_TAG_KEY_COMPRESSION_TYPE, VMENC_TTLV_NONE) == VMENC_TTLV_NONE,
                 VMENC_E_UNSUPPORTED);
    VMENC_ENSURE(vmenc_ttlv_get_enum(d, kb, KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, &alg) == VMENC_OK &&
                     alg == KMIP_ALG_AES,
                 VMENC_E_KMS_WRONG_KEY);
    VMENC_ENSURE(vmenc_ttlv_get_int(d, kb, KMIP_TAG_CRYPTOGRAPHIC_LENGTH, &bits) == VMENC_OK && bits == 256,
                 VMENC_E_KMS_WRONG_KEY);
    VMENC_GUARD(vmenc_ttlv_get_struct(d, kb, KMIP_TAG_KEY_VALUE, &kv));
    if (fmt == KMIP_KEY_FORMAT_RAW) {
        VMENC_GUARD(vmenc_ttlv_get_bytes(d, kv, KMIP_TAG_KEY_MATERIAL, mat, mat_len));
    } else if (fmt == KMIP_KEY_FORMAT_TRANSPARENT_SYMMETRIC) {
        uint32_t km;
        VMENC_GUARD(vmenc_ttlv_get_struct(d, kv, KMIP_TAG_KEY_MATERIAL, &km));
        VMENC_GUARD(vmenc_ttlv_get_bytes(d, km, KMIP_TAG_KEY, mat, mat_len));
    } else {
        return VMENC_E_UNSUPPORTED;
    }
    VMENC_ENSURE(*mat_len == VMENC_KEK_BYTES, VMENC_E_KMS_WRONG_KEY);
    return VMENC_OK;
}

/* parse_state reads State from a GetAttributes payload (1.x: Attribute
 * {Name "State", Value}; 2.0: Attributes {State}). The reply must be about
 * |key_id| and carry exactly one State: otherwise a buggy or hostile server
 * could pair a revoked key's bytes with another object's Active state, or
 * add an Active State before the real one, and defeat the revoked-key
 * check. Both are VMENC_E_KMS_PROTOCOL. */
static vmenc_status parse_state(const kmip_provider *kp, const vmenc_ttlv_doc *d, uint32_t payload,
                                const char *key_id, uint32_t *state) {
    const char *uid;
    size_t uid_len;
    VMENC_ENSURE(vmenc_ttlv_count(d, payload, KMIP_TAG_UNIQUE_IDENTIFIER) == 1, VMENC_E_KMS_PROTOCOL);
    VMENC_ENSURE(vmenc_ttlv_get_text(d, payload, KMIP_TAG_UNIQUE_IDENTIFIER, &uid, &uid_len) == VMENC_OK,
                 VMENC_E_KMS_PROTOCOL);
    VMENC_ENSURE(uid_len == strlen(key_id) && memcmp(uid, key_id, uid_len) == 0, VMENC_E_KMS_PROTOCOL);
    if (v2(kp)) {
        uint32_t attrs;
        VMENC_ENSURE(vmenc_ttlv_count(d, payload, KMIP_TAG_ATTRIBUTES) == 1, VMENC_E_KMS_PROTOCOL);
        VMENC_GUARD(vmenc_ttlv_get_struct(d, payload, KMIP_TAG_ATTRIBUTES, &attrs));
        VMENC_ENSURE(vmenc_ttlv_count(d, attrs, KMIP_TAG_STATE) == 1, VMENC_E_KMS_PROTOCOL);
        return vmenc_ttlv_get_enum(d, attrs, KMIP_TAG_STATE, state);
    }
    uint32_t found = VMENC_TTLV_NONE;
    for (uint32_t a = vmenc_ttlv_child(d, payload, KMIP_TAG_ATTRIBUTE, VMENC_TTLV_NONE); a != VMENC_TTLV_NONE;
         a = vmenc_ttlv_child(d, payload, KMIP_TAG_ATTRIBUTE, a)) {
        const char *n;
        size_t n_len;
        if (vmenc_ttlv_get_text(d, a, KMIP_TAG_ATTRIBUTE_NAME, &n, &n_len) == VMENC_OK && n_len == 5 &&
            memcmp(n, "State", 5) == 0) {
            VMENC_ENSURE(found == VMENC_TTLV_NONE, VMENC_E_KMS_PROTOCOL); /* a second State */
            found = a;
        }
    }
    VMENC_ENSURE(found != VMENC_TTLV_NONE, VMENC_E_KMS_PROTOCOL);
    VMENC_ENSURE(vmenc_ttlv_count(d, found, KMIP_TAG_ATTRIBUTE_VALUE) == 1, VMENC_E_KMS_PROTOCOL);
    return vmenc_ttlv_get_enum(d, found, KMIP_TAG_ATTRIBUTE_VALUE, state);
}

/* ---- key broker attestation (extension operations, docs/broker.md) ------------------------ */

#define OP_ATTEST_CHALLENGE 0x80000103u
#define OP_ATTEST_QUOTE 0x80000104u
#define TAG_NONCE 0x540001u
#define TAG_QUOTE_ATTEST 0x540002u
#define TAG_QUOTE_SIGNATURE 0x540003u
#define TAG_PCR_VALUES 0x540004u
#define TAG_PCR_SELECTION 0x54000Du
#define TAG_VALID_UNTIL 0x54000Au
#define ATTEST_MARGIN_S 2 /* quote again this long before the broker's ValidUntil (clock skew) */

/* do_attest asks the broker for a nonce, quotes the PCRs it names over it
 * with the host's TPM and AK, and sends the quote, on kp->conn. */
static vmenc_status do_attest(kmip_provider *kp, uint64_t deadline) {
    vmenc_kmip_request req;
    VMENC_GUARD(vmenc_kmip_request_begin(&req, kp->version, 1));
    vmenc_kmip_request_item_begin(&req, OP_ATTEST_CHALLENGE);
    vmenc_kmip_request_item_end(&req);
    exchange ex;
    const uint32_t op1[] = {OP_ATTEST_CHALLENGE};
    VMENC_GUARD(run(kp, &req, op1, 1, deadline, &ex));
    uint32_t payload;
    const uint8_t *nonce = NULL;
    size_t nonce_len = 0;
    const char *sel = NULL;
    size_t sel_len = 0;
    char selbuf[128];
    vmenc_status s = item_payload(&ex, 0, &payload);
    if (s == VMENC_OK)
        s = vmenc_ttlv_get_bytes(&ex.resp.doc, payload, TAG_NONCE, &nonce, &nonce_len);
    if (s == VMENC_OK)
        s = vmenc_ttlv_get_text(&ex.resp.doc, payload, TAG_PCR_SELECTION, &sel, &sel_len);
    if (s == VMENC_OK && (nonce_len == 0 || nonce_len > ATTEST_NONCE_MAX || sel_len == 0 || sel_len >= sizeof(selbuf)))
        s = VMENC_E_KMS_PROTOCOL;
    uint8_t nb[ATTEST_NONCE_MAX];
    if (s == VMENC_OK) {
        memcpy(nb, nonce, nonce_len);
        memcpy(selbuf, sel, sel_len);
        selbuf[sel_len] = '\0';
    }
    exchange_cleanup(&ex);
    VMENC_GUARD(s);
    attest_tpm *tpm = NULL;
    uint8_t *att = NULL, *sig = NULL, *pcr = NULL;
    size_t att_len = 0, sig_len = 0, pcr_len = 0;
    s = attest_tpm_open(kp->tpm_tcti, &tpm);
    if (s == VMENC_OK)
        s = attest_tpm_quote(tpm, kp->ak_blob, kp->ak_blob_len, nb, nonce_len, selbuf, &att, &att_len, &sig, &sig_len,
                             &pcr, &pcr_len);
    attest_tpm_close(tpm);
    if (s == VMENC_OK) {
        s = vmenc_kmip_request_begin(&req, kp->version, 1);
        if (s == VMENC_OK) {
            vmenc_kmip_request_item_begin(&req, OP_ATTEST_QUOTE);
            vmenc_ttlv_add_bytes(&req.cbb, TAG_NONCE, nb, nonce_len);
            vmenc_ttlv_add_bytes(&req.cbb, TAG_QUOTE_ATTEST, att, att_len);
            vmenc_ttlv_add_bytes(&req.cbb, TAG_QUOTE_SIGNATURE, sig, sig_len);
            vmenc_ttlv_add_bytes(&req.cbb, TAG_PCR_VALUES, pcr, pcr_len);
            vmenc_kmip_request_item_end(&req);
            const uint32_t op2[] = {OP_ATTEST_QUOTE};
            s = run(kp, &req, op2, 1, deadline, &ex);
            if (s == VMENC_OK) {
                s = vmenc_kmip_result_status(&ex.resp.items[0]);
                uint32_t vu = s == VMENC_OK && ex.resp.items[0].payload != VMENC_TTLV_NONE
                                  ? vmenc_ttlv_child(&ex.resp.doc, ex.resp.items[0].payload, TAG_VALID_UNTIL,
                                                     VMENC_TTLV_NONE)
                                  : VMENC_TTLV_NONE;
                kp->attest_valid_until_s = vu != VMENC_TTLV_NONE && ex.resp.doc.nodes[vu].type == VMENC_TTLV_DATE_TIME
                                               ? ex.resp.doc.nodes[vu].v.i64
                                               : 0;
                exchange_cleanup(&ex);
            }
        }
    }
    free(att);
    free(sig);
    free(pcr);
    return s;
}

static vmenc_status do_get_once(kmip_provider *kp, const char *key_id, uint64_t deadline, vmenc_secret **out);

/* do_get: with a TPM, a quote first unless the last one still covers this
 * Get (the broker's period mode); a Get refused for attestation after a
 * skipped quote is tried once more with a fresh quote. */
static vmenc_status do_get(kmip_provider *kp, const char *key_id, uint64_t deadline, vmenc_secret **out) {
    VMENC_GUARD(ensure_version(kp, deadline));
    bool quoted = false;
    if (kp->tpm_tcti != NULL &&
        (int64_t)(vmenc_now_realtime_ms() / 1000) + ATTEST_MARGIN_S >= kp->attest_valid_until_s) {
        kp->attest_valid_until_s = 0;
        vmenc_status as = do_attest(kp, deadline);
        /* A refused quote does not end the Get: the broker decides, and its
         * refusal names the reason (a KEK that needs no quote is released). */
        if (as != VMENC_OK && as != VMENC_E_KMS_AUTH && as != VMENC_E_KMS_PERMISSION)
            return as;
        quoted = true;
    }
    vmenc_status s = do_get_once(kp, key_id, deadline, out);
    if (s == VMENC_E_KMS_AUTH && kp->tpm_tcti != NULL && !quoted) {
        kp->attest_valid_until_s = 0;
        VMENC_GUARD(do_attest(kp, deadline));
        s = do_get_once(kp, key_id, deadline, out);
    }
    return s;
}

static vmenc_status do_get_once(kmip_provider *kp, const char *key_id, uint64_t deadline, vmenc_secret **out) {
    vmenc_kmip_request req;
    size_t id_len = strlen(key_id);
    VMENC_GUARD(vmenc_kmip_request_begin(&req, kp->version, 2));
    vmenc_kmip_request_item_begin(&req, KMIP_OP_GET);
    vmenc_ttlv_add_text(&req.cbb, KMIP_TAG_UNIQUE_IDENTIFIER, key_id, id_len);
    vmenc_kmip_request_item_end(&req);
    /* The key's State in the same round trip: KMIP servers (PyKMIP among
     * them) hand out the bytes of revoked keys, and vmenc must not wrap
     * with a key that is no longer Active. */
    vmenc_kmip_request_item_begin(&req, KMIP_OP_GET_ATTRIBUTES);
    vmenc_ttlv_add_text(&req.cbb, KMIP_TAG_UNIQUE_IDENTIFIER, key_id, id_len);
    if (v2(kp))
        vmenc_ttlv_add_enum(&req.cbb, KMIP_TAG_ATTRIBUTE_REFERENCE, KMIP_TAG_STATE);
    else
        vmenc_ttlv_add_text(&req.cbb, KMIP_TAG_ATTRIBUTE_NAME, "State", 5);
    vmenc_kmip_request_item_end(&req);

    exchange ex;
    const uint32_t ops[] = {KMIP_OP_GET, KMIP_OP_GET_ATTRIBUTES};
    VMENC_GUARD(run(kp, &req, ops, 2, deadline, &ex));
    const uint8_t *mat = NULL;
    size_t mat_len = 0;
    uint32_t payload, state = 0;
    vmenc_status s = item_payload(&ex, 0, &payload);
    if (s == VMENC_OK)
        s = parse_key(&ex.resp.doc, payload, key_id, &mat, &mat_len);
    if (s == VMENC_OK)
        s = item_payload(&ex, 1, &payload);
    if (s == VMENC_OK)
        s = parse_state(kp, &ex.resp.doc, payload, key_id, &state);
    if (s == VMENC_OK && state != KMIP_STATE_ACTIVE)
        s = VMENC_E_KEY_STATE;
    if (s == VMENC_OK)
        s = vmenc_secret_from(mat, mat_len, out);
    exchange_cleanup(&ex); /* wipes the response, key bytes included */
    return s;
}

static vmenc_status do_revoke(kmip_provider *kp, const char *key_id, uint64_t deadline) {
    VMENC_GUARD(ensure_version(kp, deadline));
    vmenc_kmip_request req;
    VMENC_GUARD(vmenc_kmip_request_begin(&req, kp->version, 1));
    vmenc_kmip_request_item_begin(&req, KMIP_OP_REVOKE);
    vmenc_ttlv_add_text(&req.cbb, KMIP_TAG_UNIQUE_IDENTIFIER, key_id, strlen(key_id));
    size_t m = vmenc_ttlv_begin_struct(&req.cbb, KMIP_TAG_REVOCATION_REASON);
    vmenc_ttlv_add_enum(&req.cbb, KMIP_TAG_REVOCATION_REASON_CODE, KMIP_REVOKE_CESSATION_OF_OPERATION);
    vmenc_ttlv_end_struct(&req.cbb, m);
    vmenc_kmip_request_item_end(&req);
    exchange ex;
    const uint32_t ops[] = {KMIP_OP_REVOKE};
    VMENC_GUARD(run(kp, &req, ops, 1, deadline, &ex));
    vmenc_status s = vmenc_kmip_result_status(&ex.resp.items[0]);
    exchange_cleanup(&ex);
    return s;
}

static vmenc_status do_destroy(kmip_provider *kp, const char *key_id, uint64_t deadline) {
    /* KMIP refuses to destroy an Active key: revoke first. A key that is
     * not Active (Pre-Active, already revoked) answers Illegal Operation
     * (VMENC_E_KEY_STATE) and can be destroyed as it is. */
    vmenc_status s = do_revoke(kp, key_id, deadline);
    if (s != VMENC_OK && s != VMENC_E_KEY_STATE)
        return s;
    return do_destroy_only(kp, key_id, deadline);
}

static vmenc_status do_query(kmip_provider *kp, uint64_t deadline, uint64_t *out_ops) {
    VMENC_GUARD(ensure_version(kp, deadline));
    vmenc_kmip_request req;
    VMENC_GUARD(vmenc_kmip_request_begin(&req, kp->version, 1));
    vmenc_kmip_request_item_begin(&req, KMIP_OP_QUERY);
    vmenc_ttlv_add_enum(&req.cbb, KMIP_TAG_QUERY_FUNCTION, KMIP_QUERY_OPERATIONS);
    vmenc_kmip_request_item_end(&req);
    exchange ex;
    const uint32_t ops[] = {KMIP_OP_QUERY};
    VMENC_GUARD(run(kp, &req, ops, 1, deadline, &ex));
    uint32_t payload;
    vmenc_status s = item_payload(&ex, 0, &payload);
    uint64_t mask = 0;
    const vmenc_ttlv_doc *d = &ex.resp.doc;
    for (uint32_t o = s == VMENC_OK ? vmenc_ttlv_child(d, payload, KMIP_TAG_OPERATION, VMENC_TTLV_NONE)
                                    : VMENC_TTLV_NONE;
         o != VMENC_TTLV_NONE; o = vmenc_ttlv_child(d, payload, KMIP_TAG_OPERATION, o)) {
        if (d->nodes[o].type != VMENC_TTLV_ENUMERATION) {
            s = VMENC_E_KMS_PROTOCOL;
            break;
        }
        if (d->nodes[o].v.u32 < 64)
            mask |= (uint64_t)1 << d->nodes[o].v.u32;
    }
    exchange_cleanup(&ex);
    if (s == VMENC_OK && out_ops != NULL)
        *out_ops = mask;
    return s;
}

static vmenc_status do_locate(kmip_provider *kp, const char *name, uint64_t deadline, char *out_id,
                              size_t out_id_cap, size_t *out_num) {
    VMENC_GUARD(ensure_version(kp, deadline));
    vmenc_kmip_request req;
    VMENC_GUARD(vmenc_kmip_request_begin(&req, kp->version, 1));
    vmenc_kmip_request_item_begin(&req, KMIP_OP_LOCATE);
    size_t m = v2(kp) ? vmenc_ttlv_begin_struct(&req.cbb, KMIP_TAG_ATTRIBUTES) : 0;
    vmenc_kmip_add_attr_enum(&req, "Object Type", KMIP_TAG_OBJECT_TYPE, KMIP_OBJECT_SYMMETRIC_KEY);
    vmenc_kmip_add_attr_name(&req, name, strlen(name));
    if (v2(kp))
        vmenc_ttlv_end_struct(&req.cbb, m);
    vmenc_kmip_request_item_end(&req);
    exchange ex;
    const uint32_t ops[] = {KMIP_OP_LOCATE};
    VMENC_GUARD(run(kp, &req, ops, 1, deadline, &ex));
    uint32_t payload;
    vmenc_status s = item_payload(&ex, 0, &payload);
    size_t num = 0;
    char id[VMENC_KMS_KEY_ID_CAP];
    if (s == VMENC_OK) {
        num = vmenc_ttlv_count(&ex.resp.doc, payload, KMIP_TAG_UNIQUE_IDENTIFIER);
        s = num == 0 ? VMENC_E_KEY_NOT_FOUND : copy_uid(&ex.resp.doc, payload, id, sizeof(id));
    }
    exchange_cleanup(&ex);
    VMENC_GUARD(s);
    VMENC_ENSURE(strlen(id) < out_id_cap, VMENC_E_BUFFER_TOO_SMALL);
    memcpy(out_id, id, strlen(id) + 1);
    *out_num = num;
    return VMENC_OK;
}

/* ---- remote wrap: KMIP Encrypt / Decrypt with AES-256-GCM ------------------------------ */

#define GCM_IV_BYTES 12u
#define GCM_TAG_BYTES 16u

static vmenc_status check_wrap_params(const vmenc_kms_wrap_params *wp) {
    VMENC_ENSURE(wp != NULL && wp->struct_size >= offsetof(vmenc_kms_wrap_params, aad_len) + sizeof(size_t),
                 VMENC_E_INVALID_ARG);
    /* PyKMIP and most KMIP servers offer GCM through Encrypt/Decrypt; AES
     * key wrap (RFC 3394/5649) is not a KMIP Encrypt mode. */
    VMENC_ENSURE(wp->mech == VMENC_KMS_WRAP_AES_GCM, VMENC_E_UNSUPPORTED);
    VMENC_ENSURE(wp->iv != NULL && wp->iv_len == GCM_IV_BYTES, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(wp->aad != NULL || wp->aad_len == 0, VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

/* do_crypt runs Encrypt (|enc|) or Decrypt of |in| under |key_id| with
 * AES-GCM. Encrypt output: ciphertext || 16-byte tag; Decrypt takes that
 * and writes the plaintext. */
static vmenc_status do_crypt(kmip_provider *kp, bool enc, const char *key_id, const vmenc_kms_wrap_params *wp,
                             const uint8_t *in, size_t in_len, uint64_t deadline, uint8_t *out, size_t out_cap,
                             size_t *out_len) {
    size_t body = enc ? in_len : in_len - GCM_TAG_BYTES;
    size_t need = enc ? in_len + GCM_TAG_BYTES : body;
    VMENC_ENSURE(out_cap >= need, VMENC_E_BUFFER_TOO_SMALL);
    VMENC_GUARD(ensure_version(kp, deadline));
    vmenc_kmip_request req;
    uint32_t op = enc ? KMIP_OP_ENCRYPT : KMIP_OP_DECRYPT;
    VMENC_GUARD(vmenc_kmip_request_begin_secure(&req, kp->version, 1));
    vmenc_kmip_request_item_begin(&req, op);
    vmenc_cbb *c = &req.cbb;
    vmenc_ttlv_add_text(c, KMIP_TAG_UNIQUE_IDENTIFIER, key_id, strlen(key_id));
    size_t m = vmenc_ttlv_begin_struct(c, KMIP_TAG_CRYPTOGRAPHIC_PARAMETERS);
    vmenc_ttlv_add_enum(c, KMIP_TAG_BLOCK_CIPHER_MODE, KMIP_BLOCK_CIPHER_MODE_GCM);
    vmenc_ttlv_add_enum(c, KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, KMIP_ALG_AES);
    vmenc_ttlv_add_int(c, KMIP_TAG_TAG_LENGTH, GCM_TAG_BYTES);
    vmenc_ttlv_end_struct(c, m);
    vmenc_ttlv_add_bytes(c, KMIP_TAG_DATA, in, body);
    vmenc_ttlv_add_bytes(c, KMIP_TAG_IV_COUNTER_NONCE, wp->iv, wp->iv_len);
    if (wp->aad_len > 0)
        vmenc_ttlv_add_bytes(c, KMIP_TAG_AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA, wp->aad, wp->aad_len);
    if (!enc)
        vmenc_ttlv_add_bytes(c, KMIP_TAG_AUTHENTICATED_ENCRYPTION_TAG, in + body, GCM_TAG_BYTES);
    vmenc_kmip_request_item_end(&req);

    exchange ex;
    VMENC_GUARD(run(kp, &req, &op, 1, deadline, &ex));
    uint32_t payload;
    const uint8_t *data = NULL, *tag = NULL;
    size_t data_len = 0, tag_len = 0;
    const char *uid;
    size_t uid_len;
    vmenc_status s = item_payload(&ex, 0, &payload);
    /* A server says "inauthentic" in several ways (PyKMIP: a general
     * failure from the cipher's InvalidTag); none may pass as a plain KMS
     * error. */
    if (!enc && (s == VMENC_E_CRYPTO || s == VMENC_E_KMS))
        s = VMENC_E_AUTH;
    if (s == VMENC_OK && (vmenc_ttlv_count(&ex.resp.doc, payload, KMIP_TAG_UNIQUE_IDENTIFIER) != 1 ||
                          vmenc_ttlv_count(&ex.resp.doc, payload, KMIP_TAG_DATA) != 1))
        s = VMENC_E_KMS_PROTOCOL;
    if (s == VMENC_OK)
        s = vmenc_ttlv_get_text(&ex.resp.doc, payload, KMIP_TAG_UNIQUE_IDENTIFIER, &uid, &uid_len);
    if (s == VMENC_OK && (uid_len != strlen(key_id) || memcmp(uid, key_id, uid_len) != 0))
        s = VMENC_E_KMS_WRONG_KEY;
    if (s == VMENC_OK)
        s = vmenc_ttlv_get_bytes(&ex.resp.doc, payload, KMIP_TAG_DATA, &data, &data_len);
    if (s == VMENC_OK && data_len != body)
        s = VMENC_E_KMS_PROTOCOL;
    if (s == VMENC_OK && enc) {
        s = vmenc_ttlv_get_bytes(&ex.resp.doc, payload, KMIP_TAG_AUTHENTICATED_ENCRYPTION_TAG, &tag, &tag_len);
        if (s == VMENC_OK && tag_len != GCM_TAG_BYTES)
            s = VMENC_E_KMS_PROTOCOL;
    }
    if (s == VMENC_OK) {
        memcpy(out, data, data_len);
        if (enc)
            memcpy(out + data_len, tag, tag_len);
        *out_len = need;
    }
    exchange_cleanup(&ex); /* wipes the response (a plaintext on Decrypt) */
    return s;
}

static vmenc_status op_crypt(vmenc_kms_provider *p, bool enc, const char *key_id,
                             const vmenc_kms_wrap_params *params, const uint8_t *in, size_t in_len,
                             uint32_t timeout_ms, uint8_t *out, size_t out_cap, size_t *out_len) {
    kmip_provider *kp = from(p);
    VMENC_ENSURE(kp != NULL && id_ok(key_id) && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(in != NULL && in_len > 0 && in_len <= VMENC_TTLV_MAX_MESSAGE / 2, VMENC_E_INVALID_ARG);
    VMENC_GUARD(check_wrap_params(params));
    if (!enc && in_len <= GCM_TAG_BYTES)
        return VMENC_E_AUTH; /* shorter than a tag: cannot be authentic */
    uint64_t deadline = deadline_after(timeout_ms);
    pthread_mutex_lock(&kp->mu);
    vmenc_status s = do_crypt(kp, enc, key_id, params, in, in_len, deadline, out, out_cap, out_len);
    pthread_mutex_unlock(&kp->mu);
    return s;
}

static vmenc_status op_wrap(vmenc_kms_provider *p, const char *key_id, const vmenc_kms_wrap_params *params,
                            const uint8_t *in, size_t in_len, uint32_t timeout_ms, uint8_t *out, size_t out_cap,
                            size_t *out_len) {
    return op_crypt(p, true, key_id, params, in, in_len, timeout_ms, out, out_cap, out_len);
}

static vmenc_status op_unwrap(vmenc_kms_provider *p, const char *key_id, const vmenc_kms_wrap_params *params,
                              const uint8_t *in, size_t in_len, uint32_t timeout_ms, uint8_t *out,
                              size_t out_cap, size_t *out_len) {
    return op_crypt(p, false, key_id, params, in, in_len, timeout_ms, out, out_cap, out_len);
}

/* ---- vtable -------------------------------------------------------------------------- */

static vmenc_status op_create_kek(vmenc_kms_provider *p, const char *name, uint32_t timeout_ms, char *out_id,
                                  size_t out_id_cap) {
    kmip_provider *kp = from(p);
    VMENC_ENSURE(kp != NULL && out_id != NULL && out_id_cap > 0, VMENC_E_INVALID_ARG);
    if (name != NULL) {
        size_t n = strnlen(name, NAME_MAX_LEN + 1);
        VMENC_ENSURE(n > 0 && n <= NAME_MAX_LEN && vmenc_utf8_valid((const uint8_t *)name, n),
                     VMENC_E_INVALID_ARG);
    }
    uint64_t deadline = deadline_after(timeout_ms);
    pthread_mutex_lock(&kp->mu);
    vmenc_status s = do_create(kp, name, deadline, out_id, out_id_cap);
    pthread_mutex_unlock(&kp->mu);
    return s;
}

vmenc_status vmenc_kmip_get_key_secret(vmenc_kms_provider *p, const char *key_id, uint32_t timeout_ms,
                                       vmenc_secret **out) {
    kmip_provider *kp = from(p);
    VMENC_ENSURE(kp != NULL && out != NULL && id_ok(key_id), VMENC_E_INVALID_ARG);
    uint64_t deadline = deadline_after(timeout_ms);
    pthread_mutex_lock(&kp->mu);
    vmenc_status s = do_get(kp, key_id, deadline, out);
    pthread_mutex_unlock(&kp->mu);
    return s;
}

static vmenc_status op_get_kek(vmenc_kms_provider *p, const char *key_id, uint32_t timeout_ms, vmenc_kek **out) {
    VMENC_ENSURE_REF(out);
    vmenc_secret *sec = NULL;
    VMENC_GUARD(vmenc_kmip_get_key_secret(p, key_id, timeout_ms, &sec));
    vmenc_status s = vmenc_kek_new_from_bytes(sec->bytes, sec->len, out);
    vmenc_secret_free(sec);
    return s;
}

static vmenc_status op_revoke_kek(vmenc_kms_provider *p, const char *key_id, uint32_t timeout_ms) {
    kmip_provider *kp = from(p);
    VMENC_ENSURE(kp != NULL && id_ok(key_id), VMENC_E_INVALID_ARG);
    uint64_t deadline = deadline_after(timeout_ms);
    pthread_mutex_lock(&kp->mu);
    vmenc_status s = do_revoke(kp, key_id, deadline);
    pthread_mutex_unlock(&kp->mu);
    return s;
}

static vmenc_status op_destroy_kek(vmenc_kms_provider *p, const char *key_id, uint32_t timeout_ms) {
    kmip_provider *kp = from(p);
    VMENC_ENSURE(kp != NULL && id_ok(key_id), VMENC_E_INVALID_ARG);
    uint64_t deadline = deadline_after(timeout_ms);
    pthread_mutex_lock(&kp->mu);
    vmenc_status s = do_destroy(kp, key_id, deadline);
    pthread_mutex_unlock(&kp->mu);
    return s;
}

static vmenc_status op_health(vmenc_kms_provider *p, uint32_t timeout_ms) {
    kmip_provider *kp = from(p);
    VMENC_ENSURE(kp != NULL, VMENC_E_INVALID_ARG);
    uint64_t deadline = deadline_after(timeout_ms);
    pthread_mutex_lock(&kp->mu);
    /* Query proves more than DiscoverVersions: the server authenticated us
     * at the KMIP layer and processes requests. */
    vmenc_status s = do_query(kp, deadline, NULL);
    pthread_mutex_unlock(&kp->mu);
    return s;
}

static void op_free(vmenc_kms_provider *p) {
    kmip_provider *kp = from(p);
    if (kp == NULL)
        return;
    vmenc_kmip_conn_close(&kp->conn);
    SSL_CTX_free(kp->ctx);
    free(kp->tpm_tcti);
    free(kp->ak_blob);
    free(kp->host);
    free(kp->server_name);
    pthread_mutex_destroy(&kp->mu);
    sodium_memzero(kp, sizeof(*kp));
    free(kp);
}

static const vmenc_kms_provider_ops k_ops = {
    .struct_size = sizeof(vmenc_kms_provider_ops),
    .abi_version = VMENC_KMS_PROVIDER_ABI_VERSION,
    .type_name = "kmip",
    .create_kek = op_create_kek,
    .get_kek = op_get_kek,
    .wrap = op_wrap,
    .unwrap = op_unwrap,
    .revoke_kek = op_revoke_kek,
    .destroy_kek = op_destroy_kek,
    .health = op_health,
    .free = op_free,
};

/* ---- public entry points ---------------------------------------------------------------- */

vmenc_status vmenc_kmip_provider_new(const vmenc_kmip_config *cfg, vmenc_kms_provider **out) {
    VMENC_ENSURE(cfg != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(cfg->struct_size >= offsetof(vmenc_kmip_config, request_timeout_ms) + sizeof(uint32_t),
                 VMENC_E_ABI_VERSION);
    VMENC_ENSURE(cfg->host != NULL && cfg->host[0] != '\0', VMENC_E_INVALID_ARG);
    VMENC_ENSURE(cfg->server_name == NULL || cfg->server_name[0] != '\0', VMENC_E_INVALID_ARG);
    vmenc_kmip_version forced = {cfg->version_major, cfg->version_minor};
    VMENC_ENSURE(forced.major == 0 || vmenc_kmip_version_supported(forced), VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());

    kmip_provider *kp = calloc(1, sizeof(*kp));
    VMENC_ENSURE(kp != NULL, VMENC_E_NOMEM);
    vmenc_kmip_conn_init(&kp->conn);
    vmenc_status s = VMENC_E_NOMEM;
    kp->host = strdup(cfg->host);
    kp->server_name = strdup(cfg->server_name != NULL ? cfg->server_name : cfg->host);
    if (kp->host == NULL || kp->server_name == NULL || pthread_mutex_init(&kp->mu, NULL) != 0) {
        free(kp->host);
        free(kp->server_name);
        free(kp);
        return s;
    }
    s = vmenc_tls_ctx_new(cfg->ca_file, cfg->cert_file, cfg->key_file, cfg->key_passphrase,
                               cfg->key_passphrase_len, &kp->ctx);
    if (s != VMENC_OK) {
        kp->base.ops = &k_ops;
        op_free(&kp->base);
        return s;
    }
    kp->port = cfg->port != 0 ? cfg->port : VMENC_KMIP_DEFAULT_PORT;
    kp->connect_timeout_ms = cfg->connect_timeout_ms != 0 ? cfg->connect_timeout_ms : VMENC_KMIP_CONNECT_TIMEOUT_MS;
    kp->request_timeout_ms = cfg->request_timeout_ms != 0 ? cfg->request_timeout_ms : VMENC_KMIP_REQUEST_TIMEOUT_MS;
    kp->version = forced;
    kp->version_known = forced.major != 0;
    kp->base.struct_size = sizeof(vmenc_kms_provider);
    kp->base.ops = &k_ops;
    *out = &kp->base;
    return VMENC_OK;
}

vmenc_status vmenc_kmip_locate(vmenc_kms_provider *p, const char *name, uint32_t timeout_ms, char *out_id,
                               size_t out_id_cap, size_t *out_num) {
    kmip_provider *kp = from(p);
    VMENC_ENSURE(kp != NULL && name != NULL && out_id != NULL && out_num != NULL, VMENC_E_INVALID_ARG);
    size_t n = strnlen(name, NAME_MAX_LEN + 1);
    VMENC_ENSURE(n > 0 && n <= NAME_MAX_LEN && vmenc_utf8_valid((const uint8_t *)name, n), VMENC_E_INVALID_ARG);
    uint64_t deadline = deadline_after(timeout_ms);
    pthread_mutex_lock(&kp->mu);
    vmenc_status s = do_locate(kp, name, deadline, out_id, out_id_cap, out_num);
    pthread_mutex_unlock(&kp->mu);
    return s;
}

vmenc_status vmenc_kmip_query(vmenc_kms_provider *p, uint32_t timeout_ms, uint64_t *out_ops) {
    kmip_provider *kp = from(p);
    VMENC_ENSURE(kp != NULL && out_ops != NULL, VMENC_E_INVALID_ARG);
    uint64_t deadline = deadline_after(timeout_ms);
    pthread_mutex_lock(&kp->mu);
    vmenc_status s = do_query(kp, deadline, out_ops);
    pthread_mutex_unlock(&kp->mu);
    return s;
}

vmenc_status vmenc_kmip_protocol_version(vmenc_kms_provider *p, uint32_t timeout_ms, unsigned *out_major,
                                         unsigned *out_minor) {
    kmip_provider *kp = from(p);
    VMENC_ENSURE(kp != NULL && out_major != NULL && out_minor != NULL, VMENC_E_INVALID_ARG);
    uint64_t deadline = deadline_after(timeout_ms);
    pthread_mutex_lock(&kp->mu);
    vmenc_status s = ensure_version(kp, deadline);
    if (s == VMENC_OK) {
        *out_major = kp->version.major;
        *out_minor = kp->version.minor;
    }
    pthread_mutex_unlock(&kp->mu);
    return s;
}

void vmenc_kmip_disconnect(vmenc_kms_provider *p) {
    kmip_provider *kp = from(p);
    if (kp == NULL)
        return;
    pthread_mutex_lock(&kp->mu);
    vmenc_kmip_conn_close(&kp->conn);
    pthread_mutex_unlock(&kp->mu);
}

uint64_t vmenc_kmip_num_connects(vmenc_kms_provider *p) {
    kmip_provider *kp = from(p);
    if (kp == NULL)
        return 0;
    pthread_mutex_lock(&kp->mu);
    uint64_t n = kp->num_connects;
    pthread_mutex_unlock(&kp->mu);
    return n;
}

/* ---- factory: endpoint configuration -> provider ----------------------------------------- */

static vmenc_status parse_address(const char *addr, char *host, size_t host_cap, uint16_t *port) {
    const char *h = addr, *colon;
    size_t hl;
    *port = 0;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        VMENC_ENSURE(end != NULL, VMENC_E_INVALID_ARG);
        h = addr + 1;
        hl = (size_t)(end - h);
        colon = end[1] == ':' ? end + 1 : NULL;
        VMENC_ENSURE(end[1] == '\0' || colon != NULL, VMENC_E_INVALID_ARG);
    } else {
        colon = strrchr(addr, ':');
        VMENC_ENSURE(colon == NULL || strchr(addr, ':') == colon, VMENC_E_INVALID_ARG); /* bare IPv6 */
        hl = colon != NULL ? (size_t)(colon - addr) : strlen(addr);
    }
    VMENC_ENSURE(hl > 0 && hl < host_cap, VMENC_E_INVALID_ARG);
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (colon != NULL) {
        char *end;
        unsigned long v = strtoul(colon + 1, &end, 10);
        VMENC_ENSURE(colon[1] != '\0' && *end == '\0' && v > 0 && v <= 65535, VMENC_E_INVALID_ARG);
        *port = (uint16_t)v;
    }
    return VMENC_OK;
}

static vmenc_status parse_ms_opt(const char *s, uint32_t *out) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    VMENC_ENSURE(s[0] >= '0' && s[0] <= '9' && *end == '\0' && v > 0 && v <= 3600000ul, VMENC_E_INVALID_ARG);
    *out = (uint32_t)v;
    return VMENC_OK;
}

static vmenc_status parse_version_opt(const char *s, vmenc_kmip_config *c) {
    VMENC_ENSURE(strlen(s) == 3 && s[1] == '.' && s[0] >= '1' && s[0] <= '9' && s[2] >= '0' && s[2] <= '9',
                 VMENC_E_INVALID_ARG);
    c->version_major = (uint8_t)(s[0] - '0');
    c->version_minor = (uint8_t)(s[2] - '0');
    vmenc_kmip_version v = {c->version_major, c->version_minor};
    VMENC_ENSURE(vmenc_kmip_version_supported(v), VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

/* read_small_file reads the AK blob named by the ak_blob option (a path,
 * relative to the working directory or absolute; a symbolic link is
 * refused). */
static vmenc_status read_small_file(const char *path, size_t max, uint8_t **out, size_t *out_len) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return VMENC_E_NOT_FOUND;
    uint8_t *buf = malloc(max);
    size_t len = 0;
    ssize_t n = 0;
    while (buf != NULL && len < max && (n = read(fd, buf + len, max - len)) > 0)
        len += (size_t)n;
    bool full = len == max;
    close(fd);
    if (buf == NULL || n < 0 || full || len == 0) {
        free(buf);
        return buf == NULL ? VMENC_E_NOMEM : VMENC_E_INVALID_ARG;
    }
    *out = buf;
    *out_len = len;
    return VMENC_OK;
}

vmenc_status vmenc_kmip_provider_factory(void *arg, const vmenc_kms_endpoint_config *cfg,
                                         vmenc_kms_provider **out) {
    (void)arg;
    VMENC_ENSURE(cfg != NULL && out != NULL && cfg->address != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(cfg->struct_size >= offsetof(vmenc_kms_endpoint_config, secret_len) + sizeof(size_t),
                 VMENC_E_ABI_VERSION);
    char host[256];
    const char *tcti = NULL, *ak_blob = NULL;
    vmenc_kmip_config c;
    memset(&c, 0, sizeof(c));
    c.struct_size = sizeof(c);
    VMENC_GUARD(parse_address(cfg->address, host, sizeof(host), &c.port));
    c.host = host;
    for (const char *const *o = cfg->options; o != NULL && *o != NULL; o++) {
        const char *eq = strchr(*o, '=');
        VMENC_ENSURE(eq != NULL && eq[1] != '\0', VMENC_E_INVALID_ARG);
        size_t kl = (size_t)(eq - *o);
        const char *v = eq + 1;
#define KEY_IS(k) (kl == sizeof(k) - 1 && memcmp(*o, k, kl) == 0)
        if (KEY_IS("ca"))
            c.ca_file = v;
        else if (KEY_IS("cert"))
            c.cert_file = v;
        else if (KEY_IS("key"))
            c.key_file = v;
        else if (KEY_IS("server_name"))
            c.server_name = v;
        else if (KEY_IS("kmip_version"))
            VMENC_GUARD(parse_version_opt(v, &c));
        else if (KEY_IS("connect_timeout_ms"))
            VMENC_GUARD(parse_ms_opt(v, &c.connect_timeout_ms));
        else if (KEY_IS("request_timeout_ms"))
            VMENC_GUARD(parse_ms_opt(v, &c.request_timeout_ms));
        else if (KEY_IS("tpm_tcti"))
            tcti = v; /* key broker attestation (docs/broker.md) */
        else if (KEY_IS("ak_blob"))
            ak_blob = v;
        else
            return VMENC_E_INVALID_ARG; /* a typo must not silently weaken the setup */
#undef KEY_IS
    }
    c.key_passphrase = cfg->secret;
    c.key_passphrase_len = cfg->secret != NULL ? cfg->secret_len : 0;
    VMENC_ENSURE((tcti == NULL) == (ak_blob == NULL), VMENC_E_INVALID_ARG); /* both or neither */
    vmenc_kms_provider *p = NULL;
    VMENC_GUARD(vmenc_kmip_provider_new(&c, &p));
    if (tcti != NULL) {
        kmip_provider *kp = from(p);
        vmenc_status s = VMENC_E_NOMEM;
        kp->tpm_tcti = strdup(tcti);
        if (kp->tpm_tcti != NULL)
            s = read_small_file(ak_blob, 64u << 10, &kp->ak_blob, &kp->ak_blob_len);
        const uint8_t *pub;
        size_t pub_len;
        if (s == VMENC_OK)
            s = attest_ak_blob_public(kp->ak_blob, kp->ak_blob_len, &pub, &pub_len);
        if (s != VMENC_OK) {
            op_free(p);
            return s == VMENC_E_NOMEM ? s : VMENC_E_INVALID_ARG;
        }
    }
    *out = p;
    return VMENC_OK;
}
