/*
 * lib/kms/kmip/kmip_provider.h - the KMIP provider's internal entry points:
 * the factory the KMS core calls for type "kmip", and hooks for tests and
 * benchmarks.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_KMS_KMIP_PROVIDER_H
#define VMENC_LIB_KMS_KMIP_PROVIDER_H

#include "core/internal.h"
#include "vmenc/kms.h"
#include "vmenc/kms_kmip.h"

/* vmenc_kmip_provider_factory makes a KMIP provider from an endpoint
 * configuration (signature of vmenc_kms_provider_factory; |arg| unused).
 * |cfg->address| is "host", "host:port" or "[v6addr]:port"; options:
 * ca=, cert=, key=, server_name=, kmip_version= (1.2, 1.3, 1.4 or 2.0),
 * connect_timeout_ms=, request_timeout_ms= (see vmenc_kmip_config);
 * |cfg->secret| is the client key's passphrase, if any. Unknown options
 * give VMENC_E_INVALID_ARG. */
VMENC_INTERNAL vmenc_status vmenc_kmip_provider_factory(void *arg, const vmenc_kms_endpoint_config *cfg,
                                                        vmenc_kms_provider **out);

/* vmenc_kmip_get_key_secret is get_kek without the vmenc_kek wrapper: the
 * 32 key bytes in a vmenc_secret (tests compare them with PyKMIP's view). */
VMENC_INTERNAL vmenc_status vmenc_kmip_get_key_secret(vmenc_kms_provider *p, const char *key_id,
                                                      uint32_t timeout_ms, vmenc_secret **out);

/* Test/bench hooks: close the connection (next call reconnects), and count
 * TLS connections opened so far. */
VMENC_INTERNAL void vmenc_kmip_disconnect(vmenc_kms_provider *p);
VMENC_INTERNAL uint64_t vmenc_kmip_num_connects(vmenc_kms_provider *p);

#endif /* VMENC_LIB_KMS_KMIP_PROVIDER_H */
