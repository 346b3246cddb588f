/*
 * lib/workspace/ws_internal.h - the workspace's private model: the parsed
 * configuration (config.c reads and writes it; workspace.c builds the
 * objects from it), the workspace object itself, and the sealed policy
 * document (policy_seal.c: its bytes; policy_store.c: loading, the commit
 * hook that makes every policy change durable, re-sealing). Not installed;
 * not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_WORKSPACE_WS_INTERNAL_H
#define VMENC_LIB_WORKSPACE_WS_INTERNAL_H

#include <pthread.h>

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
#define WS_AUDIT_CHECKPOINT_SUFFIX ".checkpoint"

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

/* ---- the workspace object (workspace.c, policy_store.c) ------------------- */

typedef struct ws_cluster ws_cluster;

typedef struct ws_kms_state {
    uint32_t num_loaded;
    vmenc_status load_status;
    vmenc_kms_provider *file_provider; /* borrowed from the cluster: first file endpoint */
    char load_detail[VMENC_WORKSPACE_MESSAGE_MAX]; /* names the provider and the file or endpoint at fault */
} ws_kms_state;

/* What open found in the policy document (policy_store.c). */
typedef struct ws_policy_found {
    uint8_t sha256[32];      /* of the file's bytes as read */
    int sealed;              /* it carried a trailer */
    int seal_valid;          /* ... and the MAC checked out */
    uint64_t generation;     /* the trailer's generation (0 if none or malformed) */
} ws_policy_found;

struct vmenc_workspace {
    pthread_mutex_t mu;
    char *dir;
    char *config_path;
    char *datastore;
    char *policy_path;
    char *audit_path;
    char *audit_cp_path;         /* audit_path + WS_AUDIT_CHECKPOINT_SUFFIX */
    bool audit_init;             /* WS_OPEN_CREATE: seal the log's first checkpoint */
    struct audit_mirror *audit_mirror; /* cluster mode: the audit mirror (ws_audit_set_mirror); owned when
                                          installed by ws_cluster_audit_attach */
    ws_config *cfg;
    ws_kms_state *kms_state;     /* parallel to cfg->kms */
    vmenc_secret *passphrase;    /* NULL if none was given */
    vmenc_secret *audit_key;
    vmenc_secret *seal_key;      /* derived from audit_key (policy_seal.c) */
    vmenc_keymgr *keymgr;
    vmenc_policy *policy;
    vmenc_audit_log *log;
    vmenc_audit *audit;
    vmenc_host *host;
    bool sync;
    /* The generation and SHA-256 of the sealed document the policy model
     * is in sync with; written only by the refresh and commit hooks, under
     * the policy's write lock. */
    uint64_t policy_gen;
    uint8_t policy_sha[32];
    ws_policy_found policy_found;
    /* Cross-process locks (docs/workspace.md "Many processes"). */
    uint32_t lock_timeout_ms;    /* how long a writer waits for another process */
    char *policy_lock_path;      /* "<policy>.lock" */
    int policy_lock_fd;          /* held from refresh to release; -1 otherwise */
    char *config_lock_path;      /* "vmenc.conf.lock" */
    uint8_t config_sha[32];      /* of the configuration as read (or last written) */
    pthread_mutex_t holder_mu;
    char lock_holder[VMENC_WORKSPACE_MESSAGE_MAX]; /* who held the last lock we gave up on */
    struct ws_cluster *cluster;  /* cluster mode (cluster.c); NULL: single host */
};

/* How ws_open treats the policy document. */
typedef enum ws_open_mode {
    WS_OPEN_NORMAL = 0,  /* the seal must verify; every change is committed to disk */
    WS_OPEN_VOUCH,       /* re-seal: load the JSON whatever its seal; no commit hook */
    WS_OPEN_CREATE,      /* NORMAL, right after create: also seal the audit log's first checkpoint */
} ws_open_mode;

/* ws_audit_set_mirror installs the cluster's audit mirror (lib/audit/
 * mirror.h; cluster mode wires etcd's): from the next record on, the log
 * copies every record to it as records of this host (config [host] id),
 * and the --cluster audit views read it. NULL uninstalls. Not owned: it
 * must outlive the workspace or be uninstalled first. */
VMENC_INTERNAL vmenc_status ws_audit_set_mirror(vmenc_workspace *ws, struct audit_mirror *m);

/* ws_cluster_audit_attach installs the etcd audit mirror of cluster
 * |cluster| (lib/control/etcd/audit_mirror.h) on a client of its own made
 * from |etcd| with short timeouts, owned by the workspace, with the copy
 * back-off (ws_audit.c); nothing is contacted. ws_cluster_audit_detach
 * uninstalls and frees it (nothing installed: nothing to do). */
struct vmenc_etcd_config;
VMENC_INTERNAL vmenc_status ws_cluster_audit_attach(vmenc_workspace *ws, const char *cluster,
                                                    const struct vmenc_etcd_config *etcd);
VMENC_INTERNAL void ws_cluster_audit_detach(vmenc_workspace *ws);

/* ws_open is vmenc_workspace_open with a mode (after argument checks). */
VMENC_INTERNAL vmenc_status ws_open(const char *dir, const vmenc_workspace_open_options *opts, ws_open_mode mode,
                                    vmenc_workspace_error *err, vmenc_workspace **out);

/* ws_lock_take takes the exclusive lock file |path| (lib/core/lock.h),
 * waiting at most ws->lock_timeout_ms, and writes the holder record into
 * it: host, PID, program, |what|, since when. VMENC_E_LOCKED when another
 * process holds it past the deadline; its holder record is then kept for
 * vmenc_workspace_lock_holder. ws_lock_drop empties the record and
 * unlocks (negative: nothing). */
VMENC_INTERNAL vmenc_status ws_lock_take(vmenc_workspace *ws, const char *path, const char *what, int *out_fd);
VMENC_INTERNAL void ws_lock_drop(int fd);

/* ws_read_path / ws_write_path: a whole file by path (vmenc_fs_read_file;
 * vmenc_fs_atomic_write: temporary, fsync, rename, fsync of the directory, the
 * fsyncs only when |sync|). */
VMENC_INTERNAL vmenc_status ws_read_path(const char *path, size_t max, uint8_t **out, size_t *out_len);
VMENC_INTERNAL vmenc_status ws_write_path(const char *path, const uint8_t *data, size_t len, bool sync);

/* ---- the sealed policy document (policy_seal.c; docs/workspace.md) -------- */

#define WS_SEAL_PREFIX "#vmenc-seal "
#define WS_SEAL_VERSION "v1"
#define WS_SEAL_KEY_BYTES 32u
#define WS_SEAL_MAC_BYTES 32u
/* The longest trailer line, LF and a NUL included. */
#define WS_SEAL_TRAILER_MAX 160u

/* A document split into its JSON and its trailer (pointers into the
 * caller's bytes). */
typedef struct ws_seal_view {
    const uint8_t *json;     /* everything before the trailer (all of it if none) */
    size_t json_len;
    int has_seal;            /* the last line starts with WS_SEAL_PREFIX */
    int well_formed;         /* ... and parsed */
    uint64_t generation;
    uint8_t mac[WS_SEAL_MAC_BYTES];
} ws_seal_view;

/* ws_seal_split finds the trailer. VMENC_OK with has_seal = 0 for a document
 * without one; VMENC_E_PARSE for a trailer that is not canonical (json and
 * json_len are still set, to the part before it). Pure. */
VMENC_INTERNAL vmenc_status ws_seal_split(const uint8_t *doc, size_t len, ws_seal_view *out);
/* ws_seal_trailer writes the canonical trailer line (LF included, NUL
 * appended) and returns its length, 0 if |out_cap| is too small. */
VMENC_INTERNAL size_t ws_seal_trailer(uint64_t generation, const uint8_t mac[WS_SEAL_MAC_BYTES], char *out,
                                      size_t out_cap);
/* ws_seal_derive_key derives the policy seal key from the audit chain key
 * into secure memory. */
VMENC_INTERNAL vmenc_status ws_seal_derive_key(const vmenc_secret *chain_key, vmenc_secret **out);
/* ws_seal_mac: BLAKE2b-256 under |key| of the domain, the workspace ID, the
 * generation (u64 LE) and the JSON. */
VMENC_INTERNAL vmenc_status ws_seal_mac(const vmenc_secret *key, const char *ws_id, uint64_t generation,
                                        const uint8_t *json, size_t json_len, uint8_t out[WS_SEAL_MAC_BYTES]);
/* ws_seal_verify: VMENC_OK if |v| carries a well-formed trailer whose MAC
 * matches, else VMENC_E_AUTH (constant-time comparison). */
VMENC_INTERNAL vmenc_status ws_seal_verify(const vmenc_secret *key, const char *ws_id, const ws_seal_view *v);
/* ws_seal_build returns |json| (which must end in LF) followed by its
 * trailer, in a new malloc'd buffer (NUL appended, not counted). */
VMENC_INTERNAL vmenc_status ws_seal_build(const vmenc_secret *key, const char *ws_id, uint64_t generation,
                                          const uint8_t *json, size_t json_len, uint8_t **out, size_t *out_len);

/* ---- the policy document on disk (policy_store.c) -------------------------- */

/* ws_policy_load reads the document, records what it found in
 * ws->policy_found, and (WS_OPEN_NORMAL) refuses it with VMENC_E_AUTH unless
 * its seal verifies under ws->seal_key; then builds ws->policy. |err| names
 * the file and says how to recover. */
VMENC_INTERNAL vmenc_status ws_policy_load(vmenc_workspace *ws, ws_open_mode mode, vmenc_workspace_error *err);
/* ws_policy_attach installs the commit hook: from now on every change of
 * ws->policy is sealed and written before the writer returns. */
VMENC_INTERNAL vmenc_status ws_policy_attach(vmenc_workspace *ws);

/* ws_control_attach opens WORKSPACE/control (control_local.c) and gives it
 * to ws->host: from then on every VM follows its authority record. */
VMENC_INTERNAL vmenc_status ws_control_attach(vmenc_workspace *ws, vmenc_workspace_error *err);

/* ws_set_error fills |err| (may be NULL) and returns |status|. */
VMENC_INTERNAL vmenc_status ws_set_error(vmenc_workspace_error *err, vmenc_status status, const char *file,
                                         uint32_t line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#endif /* VMENC_LIB_WORKSPACE_WS_INTERNAL_H */
