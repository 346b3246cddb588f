/*
 * lib/kms/kmip/kmip_msg.h - KMIP request/response messages on top of the
 * TTLV codec: tag and enumeration values (KMIP 1.0-2.0 spec §9.1.3), the
 * request builder, the response parser and the mapping of KMIP result
 * reasons to vmenc statuses.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_KMS_KMIP_MSG_H
#define VMENC_LIB_KMS_KMIP_MSG_H

#include "kms/kmip/ttlv.h"

/* Tags. */
enum {
    KMIP_TAG_ATTRIBUTE = 0x420008,
    KMIP_TAG_ATTRIBUTE_NAME = 0x42000A,
    KMIP_TAG_ATTRIBUTE_VALUE = 0x42000B,
    KMIP_TAG_BATCH_COUNT = 0x42000D,
    KMIP_TAG_BATCH_ITEM = 0x42000F,
    KMIP_TAG_BLOCK_CIPHER_MODE = 0x420011,
    KMIP_TAG_COMPROMISE_OCCURRENCE_DATE = 0x420021,
    KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM = 0x420028,
    KMIP_TAG_CRYPTOGRAPHIC_LENGTH = 0x42002A,
    KMIP_TAG_CRYPTOGRAPHIC_PARAMETERS = 0x42002B,
    KMIP_TAG_CRYPTOGRAPHIC_USAGE_MASK = 0x42002C,
    KMIP_TAG_IV_COUNTER_NONCE = 0x42003D,
    KMIP_TAG_KEY = 0x42003F,
    KMIP_TAG_KEY_BLOCK = 0x420040,
    KMIP_TAG_KEY_COMPRESSION_TYPE = 0x420041,
    KMIP_TAG_KEY_FORMAT_TYPE = 0x420042,
    KMIP_TAG_KEY_MATERIAL = 0x420043,
    KMIP_TAG_KEY_VALUE = 0x420045,
    KMIP_TAG_KEY_WRAPPING_DATA = 0x420046,
    KMIP_TAG_MAXIMUM_ITEMS = 0x42004F,
    KMIP_TAG_MAXIMUM_RESPONSE_SIZE = 0x420050,
    KMIP_TAG_NAME = 0x420053,
    KMIP_TAG_NAME_TYPE = 0x420054,
    KMIP_TAG_NAME_VALUE = 0x420055,
    KMIP_TAG_OBJECT_TYPE = 0x420057,
    KMIP_TAG_OPERATION = 0x42005C,
    KMIP_TAG_PROTOCOL_VERSION = 0x420069,
    KMIP_TAG_PROTOCOL_VERSION_MAJOR = 0x42006A,
    KMIP_TAG_PROTOCOL_VERSION_MINOR = 0x42006B,
    KMIP_TAG_QUERY_FUNCTION = 0x420074,
    KMIP_TAG_REQUEST_HEADER = 0x420077,
    KMIP_TAG_REQUEST_MESSAGE = 0x420078,
    KMIP_TAG_REQUEST_PAYLOAD = 0x420079,
    KMIP_TAG_RESPONSE_HEADER = 0x42007A,
    KMIP_TAG_RESPONSE_MESSAGE = 0x42007B,
    KMIP_TAG_RESPONSE_PAYLOAD = 0x42007C,
    KMIP_TAG_RESULT_MESSAGE = 0x42007D,
    KMIP_TAG_RESULT_REASON = 0x42007E,
    KMIP_TAG_RESULT_STATUS = 0x42007F,
    KMIP_TAG_REVOCATION_MESSAGE = 0x420080,
    KMIP_TAG_REVOCATION_REASON = 0x420081,
    KMIP_TAG_REVOCATION_REASON_CODE = 0x420082,
    KMIP_TAG_STATE = 0x42008D,
    KMIP_TAG_SYMMETRIC_KEY = 0x42008F,
    KMIP_TAG_TEMPLATE_ATTRIBUTE = 0x420091,
    KMIP_TAG_TIME_STAMP = 0x420092,
    KMIP_TAG_UNIQUE_BATCH_ITEM_ID = 0x420093,
    KMIP_TAG_UNIQUE_IDENTIFIER = 0x420094,
    KMIP_TAG_VENDOR_IDENTIFICATION = 0x42009D,
    KMIP_TAG_DATA = 0x4200C2,
    KMIP_TAG_TAG_LENGTH = 0x4200CE,
    KMIP_TAG_AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA = 0x4200FE,
    KMIP_TAG_AUTHENTICATED_ENCRYPTION_TAG = 0x4200FF,
    KMIP_TAG_ATTRIBUTES = 0x420125,         /* KMIP 2.0 */
    KMIP_TAG_ATTRIBUTE_REFERENCE = 0x42013B /* KMIP 2.0 */
};

/* Operation. */
enum {
    KMIP_OP_CREATE = 0x01,
    KMIP_OP_LOCATE = 0x08,
    KMIP_OP_GET = 0x0A,
    KMIP_OP_GET_ATTRIBUTES = 0x0B,
    KMIP_OP_ACTIVATE = 0x12,
    KMIP_OP_REVOKE = 0x13,
    KMIP_OP_DESTROY = 0x14,
    KMIP_OP_QUERY = 0x18,
    KMIP_OP_DISCOVER_VERSIONS = 0x1E,
    KMIP_OP_ENCRYPT = 0x1F, /* KMIP 1.2 */
    KMIP_OP_DECRYPT = 0x20  /* KMIP 1.2 */
};

enum { KMIP_BLOCK_CIPHER_MODE_GCM = 0x09 };

enum { KMIP_OBJECT_SYMMETRIC_KEY = 0x02 };
enum { KMIP_ALG_AES = 0x03 };
enum { KMIP_KEY_FORMAT_RAW = 0x01, KMIP_KEY_FORMAT_TRANSPARENT_SYMMETRIC = 0x07 };
enum { KMIP_NAME_UNINTERPRETED_TEXT = 0x01 };
enum {
    KMIP_USAGE_ENCRYPT = 0x04,
    KMIP_USAGE_DECRYPT = 0x08,
    KMIP_USAGE_WRAP_KEY = 0x10,
    KMIP_USAGE_UNWRAP_KEY = 0x20
};
enum { KMIP_REVOKE_KEY_COMPROMISE = 0x02, KMIP_REVOKE_CESSATION_OF_OPERATION = 0x06 };
enum { KMIP_QUERY_OPERATIONS = 0x01, KMIP_QUERY_OBJECTS = 0x02, KMIP_QUERY_SERVER_INFORMATION = 0x03 };
enum {
    KMIP_STATE_PRE_ACTIVE = 1,
    KMIP_STATE_ACTIVE = 2,
    KMIP_STATE_DEACTIVATED = 3,
    KMIP_STATE_COMPROMISED = 4,
    KMIP_STATE_DESTROYED = 5,
    KMIP_STATE_DESTROYED_COMPROMISED = 6
};

/* Result Status. */
enum {
    KMIP_STATUS_SUCCESS = 0,
    KMIP_STATUS_OPERATION_FAILED = 1,
    KMIP_STATUS_OPERATION_PENDING = 2,
    KMIP_STATUS_OPERATION_UNDONE = 3
};

/* Result Reason. */
enum {
    KMIP_REASON_ITEM_NOT_FOUND = 0x01,
    KMIP_REASON_RESPONSE_TOO_LARGE = 0x02,
    KMIP_REASON_AUTHENTICATION_NOT_SUCCESSFUL = 0x03,
    KMIP_REASON_INVALID_MESSAGE = 0x04,
    KMIP_REASON_OPERATION_NOT_SUPPORTED = 0x05,
    KMIP_REASON_MISSING_DATA = 0x06,
    KMIP_REASON_INVALID_FIELD = 0x07,
    KMIP_REASON_FEATURE_NOT_SUPPORTED = 0x08,
    KMIP_REASON_OPERATION_CANCELED = 0x09,
    KMIP_REASON_CRYPTOGRAPHIC_FAILURE = 0x0A,
    KMIP_REASON_ILLEGAL_OPERATION = 0x0B,
    KMIP_REASON_PERMISSION_DENIED = 0x0C,
    KMIP_REASON_OBJECT_ARCHIVED = 0x0D,
    KMIP_REASON_INDEX_OUT_OF_BOUNDS = 0x0E,
    KMIP_REASON_APPLICATION_NAMESPACE_NOT_SUPPORTED = 0x0F,
    KMIP_REASON_KEY_FORMAT_TYPE_NOT_SUPPORTED = 0x10,
    KMIP_REASON_KEY_COMPRESSION_TYPE_NOT_SUPPORTED = 0x11,
    KMIP_REASON_ENCODING_OPTION_ERROR = 0x12,
    KMIP_REASON_KEY_VALUE_NOT_PRESENT = 0x13,
    KMIP_REASON_ATTESTATION_REQUIRED = 0x14,
    KMIP_REASON_ATTESTATION_FAILED = 0x15,
    KMIP_REASON_SENSITIVE = 0x16,
    KMIP_REASON_NOT_EXTRACTABLE = 0x17,
    KMIP_REASON_OBJECT_ALREADY_EXISTS = 0x18,
    KMIP_REASON_GENERAL_FAILURE = 0x100
};

/* A protocol version; ordered by (major, minor). */
typedef struct vmenc_kmip_version {
    uint8_t major;
    uint8_t minor;
} vmenc_kmip_version;

static inline int vmenc_kmip_version_cmp(vmenc_kmip_version a, vmenc_kmip_version b) {
    int x = a.major * 256 + a.minor, y = b.major * 256 + b.minor;
    return (x > y) - (x < y);
}

/* The versions this client speaks, most preferred first. */
extern const vmenc_kmip_version vmenc_kmip_supported_versions[];
extern const size_t vmenc_kmip_num_supported_versions;

/* vmenc_kmip_version_supported: true if we speak |v|. */
VMENC_INTERNAL bool vmenc_kmip_version_supported(vmenc_kmip_version v);

/* ---- request builder ------------------------------------------------------ */

typedef struct vmenc_kmip_request {
    vmenc_cbb cbb;
    vmenc_kmip_version version;
    size_t msg_mark;
    size_t item_mark;
    size_t payload_mark;
    uint32_t num_items;
    uint32_t batch_count;
    bool secure;       /* bytes in secure memory (the request carries a secret) */
} vmenc_kmip_request;

/* vmenc_kmip_request_begin starts a Request Message with a header naming
 * |version| and |batch_count| items. Request bytes live in ordinary heap
 * memory (requests carry no key material); cleanup wipes them anyway. */
VMENC_INTERNAL vmenc_status vmenc_kmip_request_begin(vmenc_kmip_request *req, vmenc_kmip_version version,
                                                     uint32_t batch_count);
/* vmenc_kmip_request_begin_secure: the same, with the message built in
 * secure memory (Encrypt/Decrypt carry secrets); finish's buffer is then
 * released with vmenc_secure_free. */
VMENC_INTERNAL vmenc_status vmenc_kmip_request_begin_secure(vmenc_kmip_request *req, vmenc_kmip_version version,
                                                            uint32_t batch_count);
/* vmenc_kmip_request_item_begin opens Batch Item |op| and its Request
 * Payload; the caller writes payload fields into req->cbb. With more than
 * one item, each carries Unique Batch Item ID = its 1-based index (1 byte). */
VMENC_INTERNAL void vmenc_kmip_request_item_begin(vmenc_kmip_request *req, uint32_t op);
VMENC_INTERNAL void vmenc_kmip_request_item_end(vmenc_kmip_request *req);
/* vmenc_kmip_request_finish closes the message: |*out| (free() it after
 * wiping, or use vmenc_kmip_request_cleanup before finishing on errors). */
VMENC_INTERNAL vmenc_status vmenc_kmip_request_finish(vmenc_kmip_request *req, uint8_t **out, size_t *out_len);
VMENC_INTERNAL void vmenc_kmip_request_cleanup(vmenc_kmip_request *req);

/* Attribute helpers that pick the 1.x (Attribute{Name, Value}) or 2.0
 * (attribute tag directly) form by req->version. */
VMENC_INTERNAL void vmenc_kmip_add_attr_enum(vmenc_kmip_request *req, const char *name, uint32_t tag, uint32_t v);
VMENC_INTERNAL void vmenc_kmip_add_attr_int(vmenc_kmip_request *req, const char *name, uint32_t tag, int32_t v);
VMENC_INTERNAL void vmenc_kmip_add_attr_name(vmenc_kmip_request *req, const char *value, size_t len);

/* ---- response parser -------------------------------------------------------- */

#define VMENC_KMIP_MAX_BATCH 4u

typedef struct vmenc_kmip_result {
    uint32_t operation;  /* 0 if absent */
    uint32_t status;     /* Result Status */
    uint32_t reason;     /* Result Reason, 0 if absent */
    const char *message; /* Result Message (into the response), may be NULL */
    size_t message_len;
    uint32_t item_id;    /* Unique Batch Item ID as a number, 0 if absent */
    uint32_t payload;    /* Response Payload node or VMENC_TTLV_NONE */
} vmenc_kmip_result;

typedef struct vmenc_kmip_response {
    vmenc_ttlv_doc doc;
    vmenc_kmip_version version;
    uint32_t num_items;
    vmenc_kmip_result items[VMENC_KMIP_MAX_BATCH];
} vmenc_kmip_response;

/* vmenc_kmip_response_parse decodes a Response Message. Malformed TTLV or a
 * message that is not a well-formed KMIP response gives
 * VMENC_E_KMS_PROTOCOL. |data| must outlive |out| (values point into it). */
VMENC_INTERNAL vmenc_status vmenc_kmip_response_parse(const uint8_t *data, size_t len,
                                                      vmenc_kmip_response *out);
VMENC_INTERNAL void vmenc_kmip_response_cleanup(vmenc_kmip_response *resp);

/* vmenc_kmip_result_status maps a batch item's Result Status / Reason to
 * a vmenc status (VMENC_OK for Success). */
VMENC_INTERNAL vmenc_status vmenc_kmip_result_status(const vmenc_kmip_result *r);

#endif /* VMENC_LIB_KMS_KMIP_MSG_H */
