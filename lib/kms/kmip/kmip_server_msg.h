/*
 * lib/kms/kmip/kmip_server_msg.h - the server side of KMIP messages, on the
 * same TTLV codec as the client (ttlv.h) and the same tags (kmip_msg.h):
 * a strict parser of Request Messages and a builder of Response Messages
 * (success with a payload; failure with Result Reason and Result Message).
 * The message layout is KMIP 1.4 §7 (Request/Response Message, Batch Item);
 * docs/broker.md says which operations the key broker serves.
 *
 * Safety rule: a request is untrusted bytes from the network. It is decoded
 * only through the bounded TTLV decoder (size, depth and item limits) and
 * accepted only when its shape is exactly a Request Message: one header with
 * one Protocol Version and one Batch Count equal to the number of Batch
 * Items (1..VMENC_KMIP_MAX_BATCH), each item with exactly one Operation and
 * one Request Payload structure and at most one Unique Batch Item ID
 * (1..16 bytes, required when there is more than one item). Values point
 * into the request buffer, which must outlive the parsed request.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_KMS_KMIP_SERVER_MSG_H
#define VMENC_LIB_KMS_KMIP_SERVER_MSG_H

#include "kms/kmip/kmip_msg.h"

#define VMENC_KMIP_BATCH_ID_MAX 16u

typedef struct vmenc_kmip_request_item {
    uint32_t operation;         /* Operation enumeration (0x8xxxxxxx: extensions) */
    const uint8_t *batch_id;    /* Unique Batch Item ID (into the request), NULL if absent */
    size_t batch_id_len;
    uint32_t payload;           /* Request Payload node */
} vmenc_kmip_request_item;

typedef struct vmenc_kmip_server_request {
    vmenc_ttlv_doc doc;
    vmenc_kmip_version version;
    int32_t max_response_size;  /* 0 when absent */
    uint32_t num_items;
    vmenc_kmip_request_item items[VMENC_KMIP_MAX_BATCH];
} vmenc_kmip_server_request;

/* vmenc_kmip_server_request_parse decodes a Request Message (rule above).
 * Errors: the TTLV decoder's parse statuses (VMENC_E_PARSE,
 * VMENC_E_TRUNCATED, VMENC_E_TRAILING_DATA, VMENC_E_TOO_LARGE, ...) for bytes
 * that are not TTLV; VMENC_E_KMS_PROTOCOL for TTLV that is not a well-formed
 * Request Message; VMENC_E_NOMEM. On failure |out| is zeroed (cleanup is
 * safe). |data| must outlive |out|. */
VMENC_INTERNAL vmenc_status vmenc_kmip_server_request_parse(const uint8_t *data, size_t len,
                                                            vmenc_kmip_server_request *out);
VMENC_INTERNAL void vmenc_kmip_server_request_cleanup(vmenc_kmip_server_request *req);

/* ---- response builder ----------------------------------------------------------- */

typedef struct vmenc_kmip_response_builder {
    vmenc_cbb cbb;
    size_t msg_mark;
    size_t item_mark;
    size_t payload_mark;
    uint32_t num_items;
    uint32_t batch_count;
    bool secure;
    bool in_payload;
} vmenc_kmip_response_builder;

/* vmenc_kmip_response_begin starts a Response Message: header with
 * |version|, Time Stamp |now_s| (seconds since the epoch) and
 * |batch_count| items. |secure|: the bytes live in secure memory (a Get
 * response carries key material; finish's buffer then goes to
 * vmenc_secure_free). */
VMENC_INTERNAL vmenc_status vmenc_kmip_response_begin(vmenc_kmip_response_builder *b, vmenc_kmip_version version,
                                                      int64_t now_s, uint32_t batch_count, bool secure);
/* vmenc_kmip_response_success_begin opens a successful Batch Item for
 * |op| (echoing |batch_id| when not NULL) and its Response Payload: the
 * caller writes payload fields into b->cbb, then calls _success_end. */
VMENC_INTERNAL void vmenc_kmip_response_success_begin(vmenc_kmip_response_builder *b, uint32_t op,
                                                      const uint8_t *batch_id, size_t batch_id_len);
VMENC_INTERNAL void vmenc_kmip_response_success_end(vmenc_kmip_response_builder *b);
/* vmenc_kmip_response_failure writes a failed Batch Item: Result Status
 * Operation Failed, |reason| and |message| (UTF-8; may be NULL). */
VMENC_INTERNAL void vmenc_kmip_response_failure(vmenc_kmip_response_builder *b, uint32_t op, const uint8_t *batch_id,
                                                size_t batch_id_len, uint32_t reason, const char *message);
/* vmenc_kmip_response_finish closes the message; |*out| is malloc'd
 * (vmenc_secure_free'd if secure). Errors: VMENC_E_INTERNAL when the
 * number of items differs from the batch count; the builder's sticky
 * error. The builder is released either way. */
VMENC_INTERNAL vmenc_status vmenc_kmip_response_finish(vmenc_kmip_response_builder *b, uint8_t **out,
                                                       size_t *out_len);
VMENC_INTERNAL void vmenc_kmip_response_builder_cleanup(vmenc_kmip_response_builder *b);

#endif /* VMENC_LIB_KMS_KMIP_SERVER_MSG_H */
