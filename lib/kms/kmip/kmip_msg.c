/*
 * lib/kms/kmip/kmip_msg.c - KMIP request builder, response parser and the
 * result-reason mapping (see kmip_msg.h).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <string.h>

#include "kms/kmip/kmip_msg.h"

const vmenc_kmip_version vmenc_kmip_supported_versions[] = {
    {2, 0}, {1, 4}, {1, 3}, {1, 2},
};
const size_t vmenc_kmip_num_supported_versions = VMENC_ARRAY_LEN(vmenc_kmip_supported_versions);

bool vmenc_kmip_version_supported(vmenc_kmip_version v) {
    for (size_t i = 0; i < vmenc_kmip_num_supported_versions; i++)
        if (vmenc_kmip_version_cmp(v, vmenc_kmip_supported_versions[i]) == 0)
            return true;
    return false;
}

static bool is_v2(const vmenc_kmip_request *req) { return req->version.major >= 2; }

/* ---- requests --------------------------------------------------------------- */

static vmenc_status request_begin(vmenc_kmip_request *req, vmenc_kmip_version version, uint32_t batch_count,
                                  bool secure) {
    VMENC_ENSURE_REF(req);
    VMENC_ENSURE(batch_count >= 1 && batch_count <= VMENC_KMIP_MAX_BATCH, VMENC_E_INVALID_ARG);
    memset(req, 0, sizeof(*req));
    req->secure = secure;
    VMENC_GUARD(secure ? vmenc_cbb_init_secure(&req->cbb, 256) : vmenc_cbb_init(&req->cbb, 256));
    vmenc_cbb_set_max(&req->cbb, VMENC_TTLV_MAX_MESSAGE);
    req->version = version;
    req->batch_count = batch_count;
    vmenc_cbb *c = &req->cbb;
    req->msg_mark = vmenc_ttlv_begin_struct(c, KMIP_TAG_REQUEST_MESSAGE);
    size_t hdr = vmenc_ttlv_begin_struct(c, KMIP_TAG_REQUEST_HEADER);
    size_t pv = vmenc_ttlv_begin_struct(c, KMIP_TAG_PROTOCOL_VERSION);
    vmenc_ttlv_add_int(c, KMIP_TAG_PROTOCOL_VERSION_MAJOR, version.major);
    vmenc_ttlv_add_int(c, KMIP_TAG_PROTOCOL_VERSION_MINOR, version.minor);
    vmenc_ttlv_end_struct(c, pv);
    /* Ask the server to refuse (Response Too Large) rather than send more
     * than we accept. No Time Stamp: it is optional, and a host whose clock
     * drifted would otherwise fail every request (PyKMIP wants it within
     * 60 s); TLS already protects the exchange against replay. */
    vmenc_ttlv_add_int(c, KMIP_TAG_MAXIMUM_RESPONSE_SIZE, (int32_t)VMENC_TTLV_MAX_MESSAGE);
    vmenc_ttlv_add_int(c, KMIP_TAG_BATCH_COUNT, (int32_t)batch_count);
    vmenc_ttlv_end_struct(c, hdr);
    return vmenc_cbb_status(c);
}

vmenc_status vmenc_kmip_request_begin(vmenc_kmip_request *req, vmenc_kmip_version version,
                                      uint32_t batch_count) {
    return request_begin(req, version, batch_count, false);
}

vmenc_status vmenc_kmip_request_begin_secure(vmenc_kmip_request *req, vmenc_kmip_version version,
                                             uint32_t batch_count) {
    return request_begin(req, version, batch_count, true);
}

void vmenc_kmip_request_item_begin(vmenc_kmip_request *req, uint32_t op) {
    vmenc_cbb *c = &req->cbb;
    req->item_mark = vmenc_ttlv_begin_struct(c, KMIP_TAG_BATCH_ITEM);
    vmenc_ttlv_add_enum(c, KMIP_TAG_OPERATION, op);
    req->num_items++;
    if (req->batch_count > 1) {
        uint8_t id = (uint8_t)req->num_items;
        vmenc_ttlv_add_bytes(c, KMIP_TAG_UNIQUE_BATCH_ITEM_ID, &id, 1);
    }
    req->payload_mark = vmenc_ttlv_begin_struct(c, KMIP_TAG_REQUEST_PAYLOAD);
}

void vmenc_kmip_request_item_end(vmenc_kmip_request *req) {
    vmenc_ttlv_end_struct(&req->cbb, req->payload_mark);
    vmenc_ttlv_end_struct(&req->cbb, req->item_mark);
}

vmenc_status vmenc_kmip_request_finish(vmenc_kmip_request *req, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE_REF(req);
    if (req->num_items != req->batch_count && vmenc_cbb_ok(&req->cbb))
        req->cbb.err = VMENC_E_INTERNAL;
    vmenc_ttlv_end_struct(&req->cbb, req->msg_mark);
    return vmenc_cbb_finish(&req->cbb, out, out_len);
}

void vmenc_kmip_request_cleanup(vmenc_kmip_request *req) {
    if (req != NULL)
        vmenc_cbb_cleanup(&req->cbb);
}

static size_t attr_begin(vmenc_kmip_request *req, const char *name) {
    size_t m = vmenc_ttlv_begin_struct(&req->cbb, KMIP_TAG_ATTRIBUTE);
    vmenc_ttlv_add_text(&req->cbb, KMIP_TAG_ATTRIBUTE_NAME, name, strlen(name));
    return m;
}

void vmenc_kmip_add_attr_enum(vmenc_kmip_request *req, const char *name, uint32_t tag, uint32_t v) {
    if (is_v2(req)) {
        vmenc_ttlv_add_enum(&req->cbb, tag, v);
        return;
    }
    size_t m = attr_begin(req, name);
    vmenc_ttlv_add_enum(&req->cbb, KMIP_TAG_ATTRIBUTE_VALUE, v);
    vmenc_ttlv_end_struct(&req->cbb, m);
}

void vmenc_kmip_add_attr_int(vmenc_kmip_request *req, const char *name, uint32_t tag, int32_t v) {
    if (is_v2(req)) {
        vmenc_ttlv_add_int(&req->cbb, tag, v);
        return;
    }
    size_t m = attr_begin(req, name);
    vmenc_ttlv_add_int(&req->cbb, KMIP_TAG_ATTRIBUTE_VALUE, v);
    vmenc_ttlv_end_struct(&req->cbb, m);
}

void vmenc_kmip_add_attr_name(vmenc_kmip_request *req, const char *value, size_t len) {
    vmenc_cbb *c = &req->cbb;
    size_t m = 0;
    if (!is_v2(req))
        m = attr_begin(req, "Name");
    size_t s = vmenc_ttlv_begin_struct(c, is_v2(req) ? KMIP_TAG_NAME : KMIP_TAG_ATTRIBUTE_VALUE);
    vmenc_ttlv_add_text(c, KMIP_TAG_NAME_VALUE, value, len);
    vmenc_ttlv_add_enum(c, KMIP_TAG_NAME_TYPE, KMIP_NAME_UNINTERPRETED_TEXT);
    vmenc_ttlv_end_struct(c, s);
    if (!is_v2(req))
        vmenc_ttlv_end_struct(c, m);
}

/* ---- responses ---------------------------------------------------------------- */

static vmenc_status parse_version(const vmenc_ttlv_doc *d, uint32_t parent, vmenc_kmip_version *out) {
    uint32_t pv;
    int32_t maj, min;
    VMENC_GUARD(vmenc_ttlv_get_struct(d, parent, KMIP_TAG_PROTOCOL_VERSION, &pv));
    VMENC_GUARD(vmenc_ttlv_get_int(d, pv, KMIP_TAG_PROTOCOL_VERSION_MAJOR, &maj));
    VMENC_GUARD(vmenc_ttlv_get_int(d, pv, KMIP_TAG_PROTOCOL_VERSION_MINOR, &min));
    VMENC_ENSURE(maj >= 0 && maj <= 255 && min >= 0 && min <= 255, VMENC_E_KMS_PROTOCOL);
    out->major = (uint8_t)maj;
    out->minor = (uint8_t)min;
    return VMENC_OK;
}

static vmenc_status parse_item(const vmenc_ttlv_doc *d, uint32_t item, vmenc_kmip_result *r) {
    memset(r, 0, sizeof(*r));
    r->payload = VMENC_TTLV_NONE;
    if (vmenc_ttlv_child(d, item, KMIP_TAG_OPERATION, VMENC_TTLV_NONE) != VMENC_TTLV_NONE)
        VMENC_GUARD(vmenc_ttlv_get_enum(d, item, KMIP_TAG_OPERATION, &r->operation));
    VMENC_GUARD(vmenc_ttlv_get_enum(d, item, KMIP_TAG_RESULT_STATUS, &r->status));
    if (vmenc_ttlv_child(d, item, KMIP_TAG_RESULT_REASON, VMENC_TTLV_NONE) != VMENC_TTLV_NONE)
        VMENC_GUARD(vmenc_ttlv_get_enum(d, item, KMIP_TAG_RESULT_REASON, &r->reason));
    if (vmenc_ttlv_child(d, item, KMIP_TAG_RESULT_MESSAGE, VMENC_TTLV_NONE) != VMENC_TTLV_NONE)
        VMENC_GUARD(vmenc_ttlv_get_text(d, item, KMIP_TAG_RESULT_MESSAGE, &r->message, &r->message_len));
    if (vmenc_ttlv_child(d, item, KMIP_TAG_UNIQUE_BATCH_ITEM_ID, VMENC_TTLV_NONE) != VMENC_TTLV_NONE) {
        const uint8_t *id;
        size_t id_len;
        VMENC_GUARD(vmenc_ttlv_get_bytes(d, item, KMIP_TAG_UNIQUE_BATCH_ITEM_ID, &id, &id_len));
        VMENC_ENSURE(id_len >= 1 && id_len <= 3, VMENC_E_KMS_PROTOCOL);
        for (size_t i = 0; i < id_len; i++)
            r->item_id = (r->item_id << 8) | id[i];
    }
    uint32_t p = vmenc_ttlv_child(d, item, KMIP_TAG_RESPONSE_PAYLOAD, VMENC_TTLV_NONE);
    if (p != VMENC_TTLV_NONE) {
        VMENC_ENSURE(d->nodes[p].type == VMENC_TTLV_STRUCTURE, VMENC_E_KMS_PROTOCOL);
        r->payload = p;
    }
    return VMENC_OK;
}

static vmenc_status parse_message(const vmenc_ttlv_doc *d, vmenc_kmip_response *out) {
    const uint32_t root = 0;
    VMENC_ENSURE(d->nodes[root].tag == KMIP_TAG_RESPONSE_MESSAGE && d->nodes[root].type == VMENC_TTLV_STRUCTURE,
                 VMENC_E_KMS_PROTOCOL);
    uint32_t hdr;
    int32_t batch_count;
    VMENC_GUARD(vmenc_ttlv_get_struct(d, root, KMIP_TAG_RESPONSE_HEADER, &hdr));
    VMENC_GUARD(parse_version(d, hdr, &out->version));
    VMENC_GUARD(vmenc_ttlv_get_int(d, hdr, KMIP_TAG_BATCH_COUNT, &batch_count));
    uint32_t n = vmenc_ttlv_count(d, root, KMIP_TAG_BATCH_ITEM);
    VMENC_ENSURE(batch_count >= 1 && (uint32_t)batch_count == n && n <= VMENC_KMIP_MAX_BATCH,
                 VMENC_E_KMS_PROTOCOL);
    uint32_t it = VMENC_TTLV_NONE;
    for (uint32_t i = 0; i < n; i++) {
        it = vmenc_ttlv_child(d, root, KMIP_TAG_BATCH_ITEM, it);
        VMENC_ENSURE(d->nodes[it].type == VMENC_TTLV_STRUCTURE, VMENC_E_KMS_PROTOCOL);
        VMENC_GUARD(parse_item(d, it, &out->items[i]));
    }
    out->num_items = n;
    return VMENC_OK;
}

vmenc_status vmenc_kmip_response_parse(const uint8_t *data, size_t len, vmenc_kmip_response *out) {
    VMENC_ENSURE_REF(out);
    vmenc_kmip_response r;
    memset(&r, 0, sizeof(r));
    vmenc_status s = vmenc_ttlv_decode(data, len, &r.doc);
    if (s == VMENC_E_NOMEM)
        return s;
    /* Bytes from the server that do not decode are a protocol violation;
     * the codec's exact parse status is for the fuzzer and unit tests. */
    VMENC_ENSURE(s == VMENC_OK, VMENC_E_KMS_PROTOCOL);
    s = parse_message(&r.doc, &r);
    if (s != VMENC_OK) {
        vmenc_ttlv_doc_cleanup(&r.doc);
        return s == VMENC_E_NOMEM ? s : VMENC_E_KMS_PROTOCOL;
    }
    *out = r;
    return VMENC_OK;
}

void vmenc_kmip_response_cleanup(vmenc_kmip_response *resp) {
    if (resp == NULL)
        return;
    vmenc_ttlv_doc_cleanup(&resp->doc);
    memset(resp, 0, sizeof(*resp));
}

vmenc_status vmenc_kmip_result_status(const vmenc_kmip_result *r) {
    switch (r->status) {
    case KMIP_STATUS_SUCCESS:
        return VMENC_OK;
    case KMIP_STATUS_OPERATION_FAILED:
        break;
    case KMIP_STATUS_OPERATION_PENDING:
        /* We never ask for asynchronous processing. */
        return VMENC_E_KMS_PROTOCOL;
    case KMIP_STATUS_OPERATION_UNDONE:
        return VMENC_E_KMS;
    default:
        return VMENC_E_KMS_PROTOCOL;
    }
    switch (r->reason) {
    case KMIP_REASON_ITEM_NOT_FOUND:
        return VMENC_E_KEY_NOT_FOUND;
    case KMIP_REASON_AUTHENTICATION_NOT_SUCCESSFUL:
    case KMIP_REASON_ATTESTATION_REQUIRED:
    case KMIP_REASON_ATTESTATION_FAILED:
        return VMENC_E_KMS_AUTH;
    case KMIP_REASON_PERMISSION_DENIED:
        return VMENC_E_KMS_PERMISSION;
    case KMIP_REASON_ILLEGAL_OPERATION:
    case KMIP_REASON_OBJECT_ARCHIVED:
        /* Illegal Operation: "not allowed in the object's current state". */
        return VMENC_E_KEY_STATE;
    case KMIP_REASON_INVALID_MESSAGE:
    case KMIP_REASON_MISSING_DATA:
    case KMIP_REASON_INVALID_FIELD:
    case KMIP_REASON_INDEX_OUT_OF_BOUNDS:
    case KMIP_REASON_ENCODING_OPTION_ERROR:
        return VMENC_E_KMS_PROTOCOL;
    case KMIP_REASON_OPERATION_NOT_SUPPORTED:
    case KMIP_REASON_FEATURE_NOT_SUPPORTED:
    case KMIP_REASON_APPLICATION_NAMESPACE_NOT_SUPPORTED:
    case KMIP_REASON_KEY_FORMAT_TYPE_NOT_SUPPORTED:
    case KMIP_REASON_KEY_COMPRESSION_TYPE_NOT_SUPPORTED:
        return VMENC_E_UNSUPPORTED;
    case KMIP_REASON_CRYPTOGRAPHIC_FAILURE:
        return VMENC_E_CRYPTO;
    case KMIP_REASON_SENSITIVE:
    case KMIP_REASON_NOT_EXTRACTABLE:
    case KMIP_REASON_OBJECT_ALREADY_EXISTS:
    case KMIP_REASON_OPERATION_CANCELED:
    case KMIP_REASON_KEY_VALUE_NOT_PRESENT:
        return VMENC_E_KMS_REFUSED;
    case KMIP_REASON_RESPONSE_TOO_LARGE:
    case KMIP_REASON_GENERAL_FAILURE:
        return VMENC_E_KMS;
    default:
        return VMENC_E_KMS_REFUSED;
    }
}
