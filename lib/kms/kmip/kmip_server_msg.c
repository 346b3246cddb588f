/*
 * lib/kms/kmip/kmip_server_msg.c - the server side of KMIP messages: the
 * strict Request Message parser and the Response Message builder (see
 * kmip_server_msg.h for the accepted shape; KMIP 1.4 §7 for the layout).
 *
 * Safety rule: nothing of a request is believed before the bounded TTLV
 * decoder accepted the bytes and the parser checked the message's shape;
 * every value handed out points into the caller's buffer.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <string.h>

#include "kms/kmip/kmip_server_msg.h"

/* ---- requests ------------------------------------------------------------------------ */

static vmenc_status parse_version(const vmenc_ttlv_doc *d, uint32_t hdr, vmenc_kmip_version *out) {
    uint32_t pv;
    int32_t maj, min;
    VMENC_ENSURE(vmenc_ttlv_count(d, hdr, KMIP_TAG_PROTOCOL_VERSION) == 1, VMENC_E_KMS_PROTOCOL);
    VMENC_GUARD(vmenc_ttlv_get_struct(d, hdr, KMIP_TAG_PROTOCOL_VERSION, &pv));
    VMENC_ENSURE(vmenc_ttlv_count(d, pv, KMIP_TAG_PROTOCOL_VERSION_MAJOR) == 1 &&
                     vmenc_ttlv_count(d, pv, KMIP_TAG_PROTOCOL_VERSION_MINOR) == 1,
                 VMENC_E_KMS_PROTOCOL);
    VMENC_GUARD(vmenc_ttlv_get_int(d, pv, KMIP_TAG_PROTOCOL_VERSION_MAJOR, &maj));
    VMENC_GUARD(vmenc_ttlv_get_int(d, pv, KMIP_TAG_PROTOCOL_VERSION_MINOR, &min));
    VMENC_ENSURE(maj >= 1 && maj <= 255 && min >= 0 && min <= 255, VMENC_E_KMS_PROTOCOL);
    out->major = (uint8_t)maj;
    out->minor = (uint8_t)min;
    return VMENC_OK;
}

static vmenc_status parse_item(const vmenc_ttlv_doc *d, uint32_t item, bool need_id, vmenc_kmip_request_item *r) {
    memset(r, 0, sizeof(*r));
    VMENC_ENSURE(d->nodes[item].type == VMENC_TTLV_STRUCTURE, VMENC_E_KMS_PROTOCOL);
    VMENC_ENSURE(vmenc_ttlv_count(d, item, KMIP_TAG_OPERATION) == 1, VMENC_E_KMS_PROTOCOL);
    VMENC_GUARD(vmenc_ttlv_get_enum(d, item, KMIP_TAG_OPERATION, &r->operation));
    uint32_t n_id = vmenc_ttlv_count(d, item, KMIP_TAG_UNIQUE_BATCH_ITEM_ID);
    VMENC_ENSURE(n_id <= 1 && (!need_id || n_id == 1), VMENC_E_KMS_PROTOCOL);
    if (n_id == 1) {
        VMENC_GUARD(vmenc_ttlv_get_bytes(d, item, KMIP_TAG_UNIQUE_BATCH_ITEM_ID, &r->batch_id, &r->batch_id_len));
        VMENC_ENSURE(r->batch_id_len >= 1 && r->batch_id_len <= VMENC_KMIP_BATCH_ID_MAX, VMENC_E_KMS_PROTOCOL);
    }
    VMENC_ENSURE(vmenc_ttlv_count(d, item, KMIP_TAG_REQUEST_PAYLOAD) == 1, VMENC_E_KMS_PROTOCOL);
    VMENC_GUARD(vmenc_ttlv_get_struct(d, item, KMIP_TAG_REQUEST_PAYLOAD, &r->payload));
    return VMENC_OK;
}

static vmenc_status parse_message(const vmenc_ttlv_doc *d, vmenc_kmip_server_request *out) {
    const uint32_t root = 0;
    VMENC_ENSURE(d->nodes[root].tag == KMIP_TAG_REQUEST_MESSAGE && d->nodes[root].type == VMENC_TTLV_STRUCTURE,
                 VMENC_E_KMS_PROTOCOL);
    uint32_t hdr;
    int32_t batch_count;
    VMENC_ENSURE(vmenc_ttlv_count(d, root, KMIP_TAG_REQUEST_HEADER) == 1, VMENC_E_KMS_PROTOCOL);
    VMENC_GUARD(vmenc_ttlv_get_struct(d, root, KMIP_TAG_REQUEST_HEADER, &hdr));
    VMENC_GUARD(parse_version(d, hdr, &out->version));
    VMENC_ENSURE(vmenc_ttlv_count(d, hdr, KMIP_TAG_BATCH_COUNT) == 1, VMENC_E_KMS_PROTOCOL);
    VMENC_GUARD(vmenc_ttlv_get_int(d, hdr, KMIP_TAG_BATCH_COUNT, &batch_count));
    uint32_t n_max = vmenc_ttlv_count(d, hdr, KMIP_TAG_MAXIMUM_RESPONSE_SIZE);
    VMENC_ENSURE(n_max <= 1, VMENC_E_KMS_PROTOCOL);
    if (n_max == 1) {
        VMENC_GUARD(vmenc_ttlv_get_int(d, hdr, KMIP_TAG_MAXIMUM_RESPONSE_SIZE, &out->max_response_size));
        VMENC_ENSURE(out->max_response_size > 0, VMENC_E_KMS_PROTOCOL);
    }
    /* The root holds the header and the items, nothing else. */
    uint32_t n = vmenc_ttlv_count(d, root, KMIP_TAG_BATCH_ITEM);
    uint32_t all = 0;
    for (uint32_t c = d->nodes[root].first_child; c != VMENC_TTLV_NONE; c = d->nodes[c].next)
        all++;
    VMENC_ENSURE(all == n + 1, VMENC_E_KMS_PROTOCOL);
    VMENC_ENSURE(batch_count >= 1 && (uint32_t)batch_count == n && n <= VMENC_KMIP_MAX_BATCH, VMENC_E_KMS_PROTOCOL);
    uint32_t it = VMENC_TTLV_NONE;
    for (uint32_t i = 0; i < n; i++) {
        it = vmenc_ttlv_child(d, root, KMIP_TAG_BATCH_ITEM, it);
        VMENC_GUARD(parse_item(d, it, n > 1, &out->items[i]));
    }
    out->num_items = n;
    return VMENC_OK;
}

vmenc_status vmenc_kmip_server_request_parse(const uint8_t *data, size_t len, vmenc_kmip_server_request *out) {
    VMENC_ENSURE_REF(out);
    memset(out, 0, sizeof(*out));
    vmenc_kmip_server_request r;
    memset(&r, 0, sizeof(r));
    VMENC_GUARD(vmenc_ttlv_decode(data, len, &r.doc));
    vmenc_status s = parse_message(&r.doc, &r);
    if (s != VMENC_OK) {
        vmenc_ttlv_doc_cleanup(&r.doc);
        return s == VMENC_E_NOMEM ? s : VMENC_E_KMS_PROTOCOL;
    }
    *out = r;
    return VMENC_OK;
}

void vmenc_kmip_server_request_cleanup(vmenc_kmip_server_request *req) {
    if (req == NULL)
        return;
    vmenc_ttlv_doc_cleanup(&req->doc);
    memset(req, 0, sizeof(*req));
}

/* ---- responses ------------------------------------------------------------------------ */

vmenc_status vmenc_kmip_response_begin(vmenc_kmip_response_builder *b, vmenc_kmip_version version, int64_t now_s,
                                       uint32_t batch_count, bool secure) {
    VMENC_ENSURE_REF(b);
    VMENC_ENSURE(batch_count >= 1 && batch_count <= VMENC_KMIP_MAX_BATCH, VMENC_E_INVALID_ARG);
    memset(b, 0, sizeof(*b));
    b->secure = secure;
    b->batch_count = batch_count;
    VMENC_GUARD(secure ? vmenc_cbb_init_secure(&b->cbb, 512) : vmenc_cbb_init(&b->cbb, 256));
    vmenc_cbb_set_max(&b->cbb, VMENC_TTLV_MAX_MESSAGE);
    vmenc_cbb *c = &b->cbb;
    b->msg_mark = vmenc_ttlv_begin_struct(c, KMIP_TAG_RESPONSE_MESSAGE);
    size_t hdr = vmenc_ttlv_begin_struct(c, KMIP_TAG_RESPONSE_HEADER);
    size_t pv = vmenc_ttlv_begin_struct(c, KMIP_TAG_PROTOCOL_VERSION);
    vmenc_ttlv_add_int(c, KMIP_TAG_PROTOCOL_VERSION_MAJOR, version.major);
    vmenc_ttlv_add_int(c, KMIP_TAG_PROTOCOL_VERSION_MINOR, version.minor);
    vmenc_ttlv_end_struct(c, pv);
    vmenc_ttlv_add_datetime(c, KMIP_TAG_TIME_STAMP, now_s);
    vmenc_ttlv_add_int(c, KMIP_TAG_BATCH_COUNT, (int32_t)batch_count);
    vmenc_ttlv_end_struct(c, hdr);
    return vmenc_cbb_status(c);
}

static void item_head(vmenc_kmip_response_builder *b, uint32_t op, const uint8_t *batch_id, size_t batch_id_len,
                      uint32_t status) {
    vmenc_cbb *c = &b->cbb;
    b->item_mark = vmenc_ttlv_begin_struct(c, KMIP_TAG_BATCH_ITEM);
    vmenc_ttlv_add_enum(c, KMIP_TAG_OPERATION, op);
    if (batch_id != NULL)
        vmenc_ttlv_add_bytes(c, KMIP_TAG_UNIQUE_BATCH_ITEM_ID, batch_id, batch_id_len);
    vmenc_ttlv_add_enum(c, KMIP_TAG_RESULT_STATUS, status);
    b->num_items++;
}

void vmenc_kmip_response_success_begin(vmenc_kmip_response_builder *b, uint32_t op, const uint8_t *batch_id,
                                       size_t batch_id_len) {
    item_head(b, op, batch_id, batch_id_len, KMIP_STATUS_SUCCESS);
    b->payload_mark = vmenc_ttlv_begin_struct(&b->cbb, KMIP_TAG_RESPONSE_PAYLOAD);
    b->in_payload = true;
}

void vmenc_kmip_response_success_end(vmenc_kmip_response_builder *b) {
    if (!b->in_payload) {
        if (b->cbb.err == VMENC_OK)
            b->cbb.err = VMENC_E_INTERNAL;
        return;
    }
    vmenc_ttlv_end_struct(&b->cbb, b->payload_mark);
    vmenc_ttlv_end_struct(&b->cbb, b->item_mark);
    b->in_payload = false;
}

void vmenc_kmip_response_failure(vmenc_kmip_response_builder *b, uint32_t op, const uint8_t *batch_id,
                                 size_t batch_id_len, uint32_t reason, const char *message) {
    item_head(b, op, batch_id, batch_id_len, KMIP_STATUS_OPERATION_FAILED);
    vmenc_ttlv_add_enum(&b->cbb, KMIP_TAG_RESULT_REASON, reason);
    if (message != NULL)
        vmenc_ttlv_add_text(&b->cbb, KMIP_TAG_RESULT_MESSAGE, message, strlen(message));
    vmenc_ttlv_end_struct(&b->cbb, b->item_mark);
}

vmenc_status vmenc_kmip_response_finish(vmenc_kmip_response_builder *b, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE_REF(b);
    if ((b->num_items != b->batch_count || b->in_payload) && b->cbb.err == VMENC_OK)
        b->cbb.err = VMENC_E_INTERNAL;
    vmenc_ttlv_end_struct(&b->cbb, b->msg_mark);
    return vmenc_cbb_finish(&b->cbb, out, out_len);
}

void vmenc_kmip_response_builder_cleanup(vmenc_kmip_response_builder *b) {
    if (b != NULL)
        vmenc_cbb_cleanup(&b->cbb);
}
