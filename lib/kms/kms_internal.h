/*
 * lib/kms/kms_internal.h - private declarations shared by the KMS core
 * (provider guards, clusters, key manager) and the built-in file provider.
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_KMS_INTERNAL_H
#define VMENC_LIB_KMS_INTERNAL_H

#include "core/internal.h"
#include "vmenc/kms.h"

/* vmenc_kms_status_fails_over says whether a provider status means "this
 * endpoint could not give a definite answer" (connection failure, timeout,
 * TLS/certificate trouble, a garbled or wrong answer, local I/O), so a
 * cluster tries the next endpoint. Definite answers (not found, refused,
 * auth, key state, usage errors) return false. */
VMENC_INTERNAL bool vmenc_kms_status_fails_over(vmenc_status st);

/* vmenc_kms_builtin_type_name says whether |name| is a built-in provider
 * type (whether or not it is compiled in). */
VMENC_INTERNAL bool vmenc_kms_builtin_type_name(const char *name);

/* vmenc_kms_alias_valid: 1..63 bytes of printable ASCII, no spaces. */
VMENC_INTERNAL bool vmenc_kms_alias_valid(const char *alias);

/* vmenc_file_provider_factory is the built-in "file" type's factory. */
VMENC_INTERNAL vmenc_status vmenc_file_provider_factory(void *arg, const vmenc_kms_endpoint_config *cfg,
                                                        vmenc_kms_provider **out);

/* vmenc_kms_cluster_run runs |op| against the endpoints of |c| with the
 * failover, back-off and deadline rules of kms.h. |op| gets the provider,
 * the time left and |arg|, and must write its outputs only on VMENC_OK.
 * |out_endpoint| and |out_failovers| (each may be NULL) receive the index of
 * the endpoint that answered and how often the call moved on. */
typedef vmenc_status (*vmenc_kms_cluster_op)(vmenc_kms_provider *p, uint32_t timeout_ms, void *arg);
VMENC_INTERNAL vmenc_status vmenc_kms_cluster_run(vmenc_kms_cluster *c, vmenc_kms_cluster_op op, void *arg,
                                                  uint32_t timeout_ms, size_t *out_endpoint,
                                                  uint32_t *out_failovers);

/* vmenc_kms_cluster_type_name returns the provider type of the cluster's
 * endpoints, or NULL while it has none. */
VMENC_INTERNAL const char *vmenc_kms_cluster_type_name(vmenc_kms_cluster *c);

/* Test hook for clusters: replaces the monotonic clock (milliseconds) of
 * one cluster so back-off tests need no sleeping. NULL restores it. */
typedef uint64_t (*vmenc_kms_clock_fn)(void *arg);
VMENC_INTERNAL void vmenc_kms_cluster_set_clock(vmenc_kms_cluster *c, vmenc_kms_clock_fn fn, void *arg);

/* vmenc_kms_config_option finds "key=value" in a NULL-terminated option list
 * and returns a pointer to the value, or NULL. */
VMENC_INTERNAL const char *vmenc_kms_config_option(const char *const *options, const char *key);

/* vmenc_kms_parse_u64 parses a decimal option value (no sign, no junk). */
VMENC_INTERNAL bool vmenc_kms_parse_u64(const char *s, uint64_t *out);

/* Test hook for the file provider: called at each step of an atomic write
 * (VMENC_KMS_FILE_STEP_*); a nonzero return abandons the write there with
 * VMENC_E_IO, as a crash would (the temporary file is left behind). A test
 * may also _exit() inside the hook to crash for real. */
enum {
    VMENC_KMS_FILE_STEP_TMP_OPEN = 1,   /* temporary file created, empty */
    VMENC_KMS_FILE_STEP_HALF_WRITTEN,   /* half of the bytes written */
    VMENC_KMS_FILE_STEP_WRITTEN,        /* all bytes written, not yet synced */
    VMENC_KMS_FILE_STEP_SYNCED,         /* fsync done, not yet renamed */
    VMENC_KMS_FILE_STEP_RENAMED,        /* renamed over the keystore, directory not synced */
    VMENC_KMS_FILE_STEP_DONE            /* directory synced */
};
typedef int (*vmenc_kms_file_hook_fn)(void *arg, int step);
VMENC_INTERNAL vmenc_status vmenc_kms_file_set_test_hook(vmenc_kms_provider *p, vmenc_kms_file_hook_fn fn,
                                                         void *arg);

#endif /* VMENC_LIB_KMS_INTERNAL_H */
