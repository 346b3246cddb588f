/*
 * lib/workspace/ws_internal.h - the workspace's private model: the parsed
 * configuration (config.c reads and writes it; workspace.c builds the
 * objects from it). Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_WORKSPACE_WS_INTERNAL_H
#define VMENC_LIB_WORKSPACE_WS_INTERNAL_H

#include "core/internal.h"
#include "vmenc/workspace.h"

/* One [kms "alias"] section. */
typedef struct ws_kms {
    char *alias;
    char *type;
    char **endpoints;
    size_t num_endpoints;
    char **options;
    size_t num_options;
    char *secret_file;     /* NULL: the workspace passphrase (file type) or none */
    uint32_t line;         /* line of the section header, 0 if added at run time */
} ws_kms;

/* The whole configuration. Every string is malloc'd and owned. */
typedef struct ws_config {
    char *id;              /* [workspace] id (UUID) */
    char *host_id;         /* [host] id */
    char *datastore;       /* [host] datastore */
    char *folder;          /* [host] folder */
    char *policy_path;     /* [policy] path */
    char *audit_log;       /* [audit] log */
    char *audit_provider;  /* [audit] key_provider */
    char *audit_key;       /* [audit] key: wrapped-key text "vmwk1:..." */
    uint32_t audit_provider_line;
    uint32_t audit_key_line;
    ws_kms *kms;
    size_t num_kms;
} ws_config;

/* Defaults written into a canonical configuration. */
#define WS_DEFAULT_DATASTORE "datastore"
#define WS_DEFAULT_FOLDER "vms"
#define WS_DEFAULT_POLICY "policy.json"
#define WS_DEFAULT_AUDIT_LOG "audit.log"
#define WS_KEYSTORE_NAME "keystore.vks"
#define WS_AUDIT_PURPOSE "audit-chain"

/* ws_config_parse parses |len| bytes into a new config; on failure fills
 * |err| (line, message; may be NULL) and returns the status. */
VMENC_INTERNAL vmenc_status ws_config_parse(const uint8_t *text, size_t len, vmenc_workspace_error *err,
                                            ws_config **out);
/* ws_config_serialize writes the canonical text (malloc'd, NUL appended,
 * not counted). */
VMENC_INTERNAL vmenc_status ws_config_serialize(const ws_config *cfg, char **out, size_t *out_len);
VMENC_INTERNAL void ws_config_free(ws_config *cfg);
/* ws_kms_cleanup frees the members of one section. */
VMENC_INTERNAL void ws_kms_cleanup(ws_kms *k);
/* ws_config_find_kms returns the index of |alias| or -1. */
VMENC_INTERNAL long ws_config_find_kms(const ws_config *cfg, const char *alias);
/* ws_config_check_kms validates one section (alias, type, endpoints,
 * options) as the parser does; |msg| receives the reason. */
VMENC_INTERNAL vmenc_status ws_config_check_kms(const ws_kms *k, char *msg, size_t msg_cap);
/* ws_value_ok: a value the grammar can carry (printable UTF-8, no '"'). */
VMENC_INTERNAL bool ws_value_ok(const char *v);

/* ws_set_error fills |err| (may be NULL) and returns |status|. */
VMENC_INTERNAL vmenc_status ws_set_error(vmenc_workspace_error *err, vmenc_status status, const char *file,
                                         uint32_t line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#endif /* VMENC_LIB_WORKSPACE_WS_INTERNAL_H */
