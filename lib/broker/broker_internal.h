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

/* broker_handle answers one KMIP request from the client whose certificate
 * has SHA-256 |fp| (hex). |*out| is malloc'd, or secure memory when
 * |*out_secure| (a Get). Errors: the request parser's (the connection is
 * then closed), VMENC_E_NOMEM. */
VMENC_INTERNAL vmenc_status broker_handle(vmenc_broker *b, const char *fp, const uint8_t *in, size_t in_len,
                                          uint8_t **out, size_t *out_len, bool *out_secure);

/* broker_json_field: the string value of "name":"..." in one of the
 * cluster's flat documents; exactly one occurrence, no escapes
 * (VMENC_E_PARSE otherwise). */
VMENC_INTERNAL vmenc_status broker_json_field(const char *doc, const char *name, char *out, size_t cap);

#endif /* VMENC_LIB_BROKER_BROKER_INTERNAL_H */
