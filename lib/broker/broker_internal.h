/*
 * lib/broker/broker_internal.h - the key broker's internals that tests
 * reach (include/vmenc/broker.h is the API; docs/broker.md the design).
 *
 * Safety rule: broker_handle is the one place a request turns into a
 * response; it releases key material only through the checks of broker.c.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_BROKER_BROKER_INTERNAL_H
#define VMENC_LIB_BROKER_BROKER_INTERNAL_H

#include <stdbool.h>

#include "core/internal.h"
#include "vmenc/broker.h"

/* The attestation state of one connection: the nonce it was issued
 * (single use, answered on this connection only) and, in per-release mode,
 * whether a good quote on it waits to be consumed by the next Get. */
typedef struct broker_conn {
    uint8_t nonce[32];
    uint64_t nonce_ms;       /* monotonic issue time */
    bool nonce_live;         /* issued and not yet used */
    bool quote_ok;           /* per-release: a verified quote not yet consumed */
} broker_conn;

/* broker_handle answers one KMIP request from the client whose certificate
 * has SHA-256 |fp| (hex), on connection |bc|. |*out| is malloc'd, or
 * secure memory when |*out_secure| (a Get). Errors: the request parser's
 * (the connection is then closed), VMENC_E_NOMEM. */
VMENC_INTERNAL vmenc_status broker_handle(vmenc_broker *b, broker_conn *bc, const char *fp, const uint8_t *in,
                                          size_t in_len, uint8_t **out, size_t *out_len, bool *out_secure);

/* Extension operations and tags (docs/broker.md, docs/attest.md). */
enum {
    BROKER_OP_ENROLL_BEGIN = (int)0x80000101u,
    BROKER_OP_ENROLL_FINISH = (int)0x80000102u,
    BROKER_OP_ATTEST_CHALLENGE = (int)0x80000103u,
    BROKER_OP_ATTEST_QUOTE = (int)0x80000104u,
};
enum {
    BROKER_TAG_NONCE = 0x540001,
    BROKER_TAG_QUOTE_ATTEST = 0x540002,
    BROKER_TAG_QUOTE_SIGNATURE = 0x540003,
    BROKER_TAG_PCR_VALUES = 0x540004,
    BROKER_TAG_AK_PUBLIC = 0x540005,
    BROKER_TAG_EK_CERTIFICATE = 0x540006,
    BROKER_TAG_CREDENTIAL_BLOB = 0x540007,
    BROKER_TAG_ENCRYPTED_SECRET = 0x540008,
    BROKER_TAG_ACTIVATED_CREDENTIAL = 0x540009,
    BROKER_TAG_VALID_UNTIL = 0x54000A,
    BROKER_TAG_REASON = 0x54000B,
    BROKER_TAG_EK_PUBLIC = 0x54000C,
    BROKER_TAG_PCR_SELECTION = 0x54000D, /* Attest-Challenge response: the selection to quote */
};

/* broker_json_field: the string value of "name":"..." in one of the
 * cluster's flat documents; exactly one occurrence, no escapes
 * (VMENC_E_PARSE otherwise). */
VMENC_INTERNAL vmenc_status broker_json_field(const char *doc, const char *name, char *out, size_t cap);

#endif /* VMENC_LIB_BROKER_BROKER_INTERNAL_H */
