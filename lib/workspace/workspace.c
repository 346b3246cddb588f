/*
 * lib/workspace/workspace.c - loading a workspace directory into a key
 * manager, a policy, an audit dispatcher with its hash-chained log, and a
 * host (include/vmenc/workspace.h); creating one; the few workspace-level
 * operations that rewrite the configuration.
 *
 * The audit chain key is a 64-byte random secret generated as a DEK and
 * wrapped by the key manager under a KEK of the audit key provider, bound to
 * the workspace ID and the purpose "audit-chain" (docs/workspace.md says
 * why: it is never in clear on disk, it follows the key provider rather
 * than a passphrase, so a KMIP- or HSM-only workspace works the same, and
 * a record copied from another workspace does not open). The policy seal
 * key is derived from it, so the chain key is unwrapped before the policy
 * document is read (policy_store.c verifies and commits the document).
 *
 * Many processes may have one workspace open (docs/workspace.md "Many
 * processes"): nothing is locked for the life of a handle. The audit log
 * is shared (locked per append), a policy change locks "<policy>.lock"
 * from its re-read to its write (policy_store.c), a configuration change
 * locks "vmenc.conf.lock" and fails with VMENC_E_CONFLICT if another
 * process changed the file since this one read it. Safety rule: no lock is
 * held across anything but the read-modify-write it protects.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <dirent.h>
#include <sodium.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fs.h"
#include "core/lock.h"
#include "keys/keys_internal.h"
#include "vmenc/kms_file.h"
#include "workspace/ws_internal.h"

#define KMS_TIMEOUT_MS 10000u
#define WS_AUDIT_MIN_WAIT_MS 2000u
#define SECRET_FILE_MAX 4096u

/* ---- small helpers ------------------------------------------------------------ */

static char *str_printf2(const char *a, const char *sep, const char *b) {
    size_t n = strlen(a) + strlen(sep) + strlen(b) + 1;
    char *s = malloc(n);
    if (s != NULL)
        snprintf(s, n, "%s%s%s", a, sep, b);
    return s;
}

/* resolve: |p| if absolute, else |dir|/|p|. */
static char *resolve(const char *dir, const char *p) { return p[0] == '/' ? strdup(p) : str_printf2(dir, "/", p); }

/* split a path into a directory fd and its last component. */
static vmenc_status open_parent(const char *path, int *out_fd, const char **out_name) {
    const char *slash = strrchr(path, '/');
    char dir[VMENC_WORKSPACE_PATH_MAX];
    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
        *out_name = path;
    } else {
        size_t n = (size_t)(slash - path);
        VMENC_ENSURE(n < sizeof(dir), VMENC_E_BAD_PATH);
        memcpy(dir, path, n);
        dir[n] = '\0';
        if (n == 0)
            snprintf(dir, sizeof(dir), "/");
        *out_name = slash + 1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return vmenc_status_from_errno(errno);
    *out_fd = fd;
    return VMENC_OK;
}

vmenc_status ws_write_path(const char *path, const uint8_t *data, size_t len, bool sync) {
    int dfd = -1;
    const char *name = NULL;
    VMENC_GUARD(open_parent(path, &dfd, &name));
    vmenc_status rv = vmenc_fs_atomic_write(dfd, name, data, len, sync);
    close(dfd);
    return rv;
}

vmenc_status ws_read_path(const char *path, size_t max, uint8_t **out, size_t *out_len) {
    int dfd = -1;
    const char *name = NULL;
    VMENC_GUARD(open_parent(path, &dfd, &name));
    vmenc_status rv = vmenc_fs_read_file(dfd, name, max, out, out_len);
    close(dfd);
    return rv;
}

/* ---- cross-process locks with a holder record ----------------------------------- */

vmenc_status ws_lock_take(vmenc_workspace *ws, const char *path, const char *what, int *out_fd) {
    int fd = -1;
    vmenc_status rv = vmenc_lock_file(path, ws->lock_timeout_ms, &fd);
    if (rv == VMENC_E_LOCKED) {
        /* Name the holder: its record, as it wrote it when it took the lock. */
        char rec[256];
        ssize_t n = -1;
        int rfd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (rfd >= 0) {
            n = pread(rfd, rec, sizeof(rec) - 1, 0);
            close(rfd);
        }
        size_t len = n > 0 ? (size_t)n : 0;
        while (len > 0 && (rec[len - 1] == '\n' || rec[len - 1] == '\0'))
            len--;
        rec[len] = '\0';
        for (size_t i = 0; i < len; i++) /* it is a file anyone on the host can write: print it safely */
            if ((unsigned char)rec[i] < 0x20 || (unsigned char)rec[i] == 0x7f)
                rec[i] = '?';
        pthread_mutex_lock(&ws->holder_mu);
        snprintf(ws->lock_holder, sizeof(ws->lock_holder), "%s (lock %.200s, waited %u ms)",
                 len > 0 ? rec : "a process that left no holder record", path, ws->lock_timeout_ms);
        pthread_mutex_unlock(&ws->holder_mu);
        return rv;
    }
    VMENC_GUARD(rv);
    char since[32] = "?";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) != NULL)
        strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
    char rec[VMENC_WORKSPACE_MESSAGE_MAX / 2];
    int n = snprintf(rec, sizeof(rec), "host %s, pid %ld (%s), %s, since %s\n", ws->cfg->host_id, (long)getpid(),
                     program_invocation_short_name, what, since);
    size_t len = n > 0 ? ((size_t)n < sizeof(rec) ? (size_t)n : sizeof(rec) - 1) : 0;
    /* Best effort: the record helps a waiter explain itself; the lock is what excludes. */
    if (ftruncate(fd, 0) == 0 && pwrite(fd, rec, len, 0) < 0)
        (void)0;
    *out_fd = fd;
    return VMENC_OK;
}

void ws_lock_drop(int fd) {
    if (fd < 0)
        return;
    if (ftruncate(fd, 0) != 0)
        (void)0; /* a stale record only misnames a holder; the lock still goes */
    vmenc_lock_release(fd);
}

vmenc_status vmenc_workspace_lock_holder(vmenc_workspace *ws, char *out, size_t out_cap) {
    VMENC_ENSURE(ws != NULL && out != NULL && out_cap > 0, VMENC_E_INVALID_ARG);
    pthread_mutex_lock(&ws->holder_mu);
    size_t n = strlen(ws->lock_holder);
    vmenc_status rv = n == 0 ? VMENC_E_NOT_FOUND : n < out_cap ? VMENC_OK : VMENC_E_BUFFER_TOO_SMALL;
    if (rv == VMENC_OK)
        memcpy(out, ws->lock_holder, n + 1);
    pthread_mutex_unlock(&ws->holder_mu);
    return rv;
}

/* read_secret_file reads a one-line secret into secure memory (a final LF
 * or CRLF is not part of it). */
static vmenc_status read_secret_file(const char *path, vmenc_secret **out) {
    uint8_t *buf = NULL;
    size_t len = 0;
    VMENC_GUARD(ws_read_path(path, SECRET_FILE_MAX, &buf, &len));
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    vmenc_status rv = len > 0 ? vmenc_secret_from(buf, len, out) : VMENC_E_INVALID_ARG;
    vmenc_memzero(buf, len);
    free(buf);
    return rv;
}

static vmenc_wrap_context audit_ctx(const char *ws_id) {
    vmenc_wrap_context c = {.struct_size = sizeof(c), .vm_uuid = ws_id, .disk_id = NULL, .purpose = WS_AUDIT_PURPOSE};
    return c;
}

/* ---- building clusters ------------------------------------------------------------ */

/* build_cluster makes the cluster of section |k|. Endpoints that cannot be
 * built are skipped (recorded in |st|) unless |strict|. */
static vmenc_status build_cluster(vmenc_workspace *ws, const ws_kms *k, const char *const *extra_opts, bool strict,
                                  ws_kms_state *st, vmenc_workspace_error *err) {
    vmenc_secret *secret = NULL;
    vmenc_status rv = VMENC_OK;
    memset(st, 0, sizeof(*st));
    if (k->secret_file != NULL) {
        char *p = resolve(ws->dir, k->secret_file);
        rv = p ? read_secret_file(p, &secret) : VMENC_E_NOMEM;
        if (rv != VMENC_OK && rv != VMENC_E_NOMEM && !strict) {
            /* One provider's missing secret is that provider's problem
             * (issue 24 item 3): it is left out - an empty cluster, so its
             * alias is known and its VMs open locked - and reported. */
            st->load_status = rv;
            (void)snprintf(st->load_detail, sizeof(st->load_detail),
                           "key provider \"%s\" left out: cannot read its secret_file %s: %s; its VMs open locked",
                           k->alias, p, vmenc_strerror(rv));
            free(p);
            vmenc_kms_cluster *c = NULL;
            rv = vmenc_kms_cluster_new(k->alias, NULL, &c);
            if (rv == VMENC_OK && (rv = vmenc_keymgr_take_cluster(ws->keymgr, c)) != VMENC_OK)
                vmenc_kms_cluster_free(c);
            if (rv != VMENC_OK)
                return ws_set_error(err, rv, ws->config_path, k->line, "key provider \"%s\": %s", k->alias,
                                    vmenc_strerror(rv));
            return VMENC_OK;
        }
        free(p);
        if (rv != VMENC_OK)
            return ws_set_error(err, rv, ws->config_path, k->line, "key provider \"%s\": cannot read secret_file '%s': %s",
                                k->alias, k->secret_file, vmenc_strerror(rv));
    } else if (strcmp(k->type, "file") == 0) {
        if (ws->passphrase == NULL)
            return ws_set_error(err, VMENC_E_INVALID_ARG, ws->config_path, k->line,
                                "key provider \"%s\" is a keystore and needs the workspace passphrase", k->alias);
    }
    const vmenc_secret *use = secret != NULL ? secret : (strcmp(k->type, "file") == 0 ? ws->passphrase : NULL);

    const char *opts[VMENC_WORKSPACE_MAX_OPTIONS + 4];
    size_t no = 0;
    for (size_t i = 0; i < k->num_options; i++)
        opts[no++] = k->options[i];
    for (size_t i = 0; extra_opts != NULL && extra_opts[i] != NULL; i++)
        opts[no++] = extra_opts[i];
    opts[no] = NULL;

    vmenc_kms_cluster *c = NULL;
    rv = vmenc_kms_cluster_new(k->alias, NULL, &c);
    for (size_t i = 0; rv == VMENC_OK && i < k->num_endpoints; i++) {
        char *addr = strcmp(k->type, "file") == 0 ? resolve(ws->dir, k->endpoints[i]) : strdup(k->endpoints[i]);
        if (addr == NULL) {
            rv = VMENC_E_NOMEM;
            break;
        }
        vmenc_kms_endpoint_config ec = {
            .struct_size = sizeof(ec),
            .type = k->type,
            .address = addr,
            .options = opts,
            .secret = use ? use->bytes : NULL,
            .secret_len = use ? use->len : 0,
        };
        vmenc_kms_provider *p = NULL;
        vmenc_status ps = vmenc_keymgr_new_provider(ws->keymgr, &ec, &p);
        if (ps == VMENC_OK) {
            ps = vmenc_kms_cluster_take_endpoint(c, k->endpoints[i], p);
            if (ps != VMENC_OK)
                vmenc_kms_provider_free(p);
            else if (st->file_provider == NULL && strcmp(k->type, "file") == 0)
                st->file_provider = p;
        }
        free(addr);
        if (ps == VMENC_OK) {
            st->num_loaded++;
        } else {
            if (st->load_status == VMENC_OK) {
                st->load_status = ps;
                (void)snprintf(st->load_detail, sizeof(st->load_detail),
                               "key provider \"%s\", endpoint %s: %s; its VMs open locked", k->alias,
                               k->endpoints[i], vmenc_strerror(ps));
            }
            /* A provider that is down or absent (a keystore file gone) is an
             * operational state (its VMs open locked); a wrong passphrase or
             * a malformed option is a configuration error and always
             * fails. */
            bool soft = (vmenc_status_category_of(ps) == VMENC_CAT_PROVIDER && ps != VMENC_E_KMS_AUTH &&
                         ps != VMENC_E_NO_SUCH_PROVIDER) ||
                        ps == VMENC_E_NOT_FOUND;
            if (strict || !soft)
                rv = ws_set_error(err, ps, ws->config_path, k->line, "key provider \"%s\", endpoint '%s': %s",
                                  k->alias, k->endpoints[i], vmenc_strerror(ps));
        }
    }
    vmenc_secret_free(secret);
    if (rv == VMENC_OK) {
        rv = vmenc_keymgr_take_cluster(ws->keymgr, c);
        if (rv != VMENC_OK)
            ws_set_error(err, rv, ws->config_path, k->line, "key provider \"%s\": %s", k->alias, vmenc_strerror(rv));
        else
            c = NULL;
    } else if (err != NULL && err->status == VMENC_OK) {
        ws_set_error(err, rv, ws->config_path, k->line, "key provider \"%s\": %s", k->alias, vmenc_strerror(rv));
    }
    vmenc_kms_cluster_free(c);
    if (rv != VMENC_OK)
        st->file_provider = NULL;
    return rv;
}

/* ---- open ------------------------------------------------------------------- */

static vmenc_status unwrap_audit_key(vmenc_workspace *ws, vmenc_workspace_error *err) {
    const ws_config *c = ws->cfg;
    vmenc_wrapped_key *wk = NULL;
    vmenc_dek *dek = NULL;
    vmenc_wrap_context ctx = audit_ctx(c->id);
    vmenc_status rv = vmenc_wrapped_key_parse_text(c->audit_key, strlen(c->audit_key), &wk);
    if (rv == VMENC_OK && strcmp(vmenc_wrapped_key_provider_alias(wk), c->audit_provider) != 0)
        rv = VMENC_E_KEY_MISMATCH;
    if (rv == VMENC_OK)
        rv = vmenc_keymgr_unwrap_dek(ws->keymgr, wk, &ctx, KMS_TIMEOUT_MS, &dek);
    if (rv == VMENC_OK)
        rv = vmenc_secret_from(vmenc_dek_bytes_internal(dek), VMENC_DEK_BYTES, &ws->audit_key);
    vmenc_dek_free(dek);
    vmenc_wrapped_key_free(wk);
    if (rv != VMENC_OK)
        return ws_set_error(err, rv, ws->config_path, c->audit_key_line,
                            "cannot unwrap the audit chain key through key provider \"%s\": %s", c->audit_provider,
                            vmenc_strerror(rv));
    return VMENC_OK;
}

static vmenc_status open_audit(vmenc_workspace *ws, uint32_t lock_timeout_ms, vmenc_workspace_error *err) {
    vmenc_audit_log_options lo = {
        .struct_size = sizeof(lo),
        .path = ws->audit_path,
        .key = ws->audit_key->bytes,
        .key_len = ws->audit_key->len,
        .fsync = ws->sync ? VMENC_AUDIT_FSYNC_EVERY : VMENC_AUDIT_FSYNC_NEVER,
        .flags = VMENC_AUDIT_LOG_RECOVER | VMENC_AUDIT_LOG_SHARED,
        /* The shared log's lock is held for one append at a time: even a
         * caller that will not wait for another writer's change (0) waits
         * out someone else's record rather than fail on it. */
        .lock_timeout_ms = lock_timeout_ms > WS_AUDIT_MIN_WAIT_MS ? lock_timeout_ms : WS_AUDIT_MIN_WAIT_MS,
    };
    uint64_t deadline = vmenc_now_monotonic_ms() + lock_timeout_ms;
    vmenc_status rv;
    for (;;) {
        rv = vmenc_audit_log_open(&lo, &ws->log);
        if (rv != VMENC_E_LOCKED || vmenc_now_monotonic_ms() >= deadline)
            break;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (rv != VMENC_OK)
        return ws_set_error(err, rv, ws->audit_path, 0, "cannot open the audit log: %s", vmenc_strerror(rv));
    rv = vmenc_audit_new(&ws->audit);
    if (rv == VMENC_OK)
        rv = vmenc_audit_add_log(ws->audit, ws->log);
    if (rv != VMENC_OK)
        return ws_set_error(err, rv, ws->audit_path, 0, "audit dispatcher: %s", vmenc_strerror(rv));
    return VMENC_OK;
}

static vmenc_status read_config(vmenc_workspace *ws, vmenc_workspace_error *err) {
    uint8_t *text = NULL;
    size_t len = 0;
    vmenc_status rv = ws_read_path(ws->config_path, VMENC_WORKSPACE_MAX_CONFIG, &text, &len);
    if (rv != VMENC_OK)
        return ws_set_error(err, rv, ws->config_path, 0,
                            rv == VMENC_E_NOT_FOUND ? "no workspace here (vmenc.conf is missing)"
                                                    : "cannot read the configuration: %s",
                            vmenc_strerror(rv));
    crypto_hash_sha256(ws->config_sha, text, len);
    rv = ws_config_parse(text, len, err, &ws->cfg);
    free(text);
    if (rv != VMENC_OK && err != NULL && err->struct_size >= sizeof(*err))
        snprintf(err->file, sizeof(err->file), "%s", ws->config_path);
    return rv;
}

static vmenc_status resolve_paths(vmenc_workspace *ws, const char *audit_log) {
    ws->datastore = resolve(ws->dir, ws->cfg->datastore);
    ws->policy_path = resolve(ws->dir, ws->cfg->policy_path);
    ws->audit_path = resolve(ws->dir, audit_log != NULL ? audit_log : ws->cfg->audit_log);
    ws->kms_state = calloc(ws->cfg->num_kms ? ws->cfg->num_kms : 1, sizeof(*ws->kms_state));
    ws->policy_lock_path = ws->policy_path ? str_printf2(ws->policy_path, "", ".lock") : NULL;
    ws->config_lock_path = str_printf2(ws->config_path, "", ".lock");
    VMENC_ENSURE(ws->datastore && ws->policy_path && ws->audit_path && ws->kms_state && ws->policy_lock_path &&
                     ws->config_lock_path,
                 VMENC_E_NOMEM);
    return VMENC_OK;
}

/* audit_refusal records a policy document refused at open (best effort:
 * the refusal, not the log, is what the caller must see). The principal is
 * unknown at open. */
static void audit_refusal(vmenc_workspace *ws, uint32_t lock_timeout_ms, const vmenc_workspace_error *err) {
    if (ws->audit == NULL && open_audit(ws, lock_timeout_ms, NULL) != VMENC_OK)
        return;
    vmenc_audit_event ev = {
        .struct_size = sizeof(ev),
        .principal = "(none)",
        .operation = "policy.verify",
        .target = ws->policy_path,
        .outcome = VMENC_AUDIT_FAILED,
        .status = VMENC_E_AUTH,
        .reason = err != NULL && err->struct_size >= sizeof(*err) ? err->message : "the policy seal does not verify",
    };
    vmenc_status as = vmenc_audit_emit(ws->audit, &ev);
    (void)as;
}

vmenc_status vmenc_workspace_open(const char *dir, const vmenc_workspace_open_options *opts,
                                  vmenc_workspace_error *err, vmenc_workspace **out) {
    return ws_open(dir, opts, WS_OPEN_NORMAL, err, out);
}

vmenc_status ws_open(const char *dir, const vmenc_workspace_open_options *opts, ws_open_mode mode,
                     vmenc_workspace_error *err, vmenc_workspace **out) {
    VMENC_ENSURE(dir != NULL && dir[0] != '\0' && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(opts == NULL || opts->struct_size >= sizeof(*opts), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(opts == NULL || (opts->flags & ~VMENC_WORKSPACE_OPEN_NO_SYNC) == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(opts == NULL || opts->passphrase != NULL || opts->passphrase_len == 0, VMENC_E_INVALID_ARG);
    if (opts != NULL && opts->audit_log != NULL)
        VMENC_ENSURE(vmenc_fs_name_check(opts->audit_log) == VMENC_OK, VMENC_E_BAD_PATH);
    if (err != NULL && err->struct_size >= sizeof(*err)) {
        err->status = VMENC_OK;
        err->file[0] = err->message[0] = '\0';
        err->line = 0;
    }
    VMENC_GUARD(vmenc_ensure_init());
    vmenc_workspace *ws = calloc(1, sizeof(*ws));
    VMENC_ENSURE(ws != NULL, VMENC_E_NOMEM);
    pthread_mutex_init(&ws->mu, NULL);
    pthread_mutex_init(&ws->holder_mu, NULL);
    ws->policy_lock_fd = -1;
    ws->lock_timeout_ms = opts ? opts->lock_timeout_ms : 0;
    ws->sync = opts == NULL || (opts->flags & VMENC_WORKSPACE_OPEN_NO_SYNC) == 0;
    ws->dir = strdup(dir);
    ws->config_path = ws->dir ? resolve(dir, VMENC_WORKSPACE_CONFIG_NAME) : NULL;
    vmenc_status rv = ws->config_path ? VMENC_OK : VMENC_E_NOMEM;
    if (rv == VMENC_OK && opts != NULL && opts->passphrase_len > 0)
        rv = vmenc_secret_from(opts->passphrase, opts->passphrase_len, &ws->passphrase);
    if (rv == VMENC_OK)
        rv = read_config(ws, err);
    if (rv == VMENC_OK)
        rv = resolve_paths(ws, opts ? opts->audit_log : NULL);
    if (rv == VMENC_OK)
        rv = vmenc_keymgr_new(NULL, &ws->keymgr);
    for (size_t i = 0; rv == VMENC_OK && i < ws->cfg->num_kms; i++) {
        const ws_kms *k = &ws->cfg->kms[i];
        rv = build_cluster(ws, k, NULL, strcmp(k->alias, ws->cfg->audit_provider) == 0, &ws->kms_state[i], err);
    }
    /* The chain key first: the policy's seal key is derived from it. */
    if (rv == VMENC_OK)
        rv = unwrap_audit_key(ws, err);
    if (rv == VMENC_OK) {
        rv = ws_seal_derive_key(ws->audit_key, &ws->seal_key);
        if (rv != VMENC_OK)
            ws_set_error(err, rv, ws->config_path, ws->cfg->audit_key_line, "cannot derive the policy seal key: %s",
                         vmenc_strerror(rv));
    }
    if (rv == VMENC_OK) {
        rv = ws_policy_load(ws, mode, err);
        if (rv == VMENC_E_AUTH)
            audit_refusal(ws, opts ? opts->lock_timeout_ms : 0, err);
    }
    if (rv == VMENC_OK)
        rv = open_audit(ws, opts ? opts->lock_timeout_ms : 0, err);
    if (rv == VMENC_OK) {
        vmenc_host_options ho = {
            .struct_size = sizeof(ho),
            .host_id = ws->cfg->host_id,
            .keymgr = ws->keymgr,
            .policy = ws->policy,
            .audit = ws->audit,
            .kms_timeout_ms = KMS_TIMEOUT_MS,
            .flags = ws->sync ? 0 : VMENC_HOST_NO_SYNC,
        };
        rv = vmenc_host_new(&ho, &ws->host);
        if (rv != VMENC_OK)
            ws_set_error(err, rv, ws->policy_path, 0, "host '%s' is not a host of the policy: %s", ws->cfg->host_id,
                         vmenc_strerror(rv));
    }
    if (rv == VMENC_OK)
        rv = ws_control_attach(ws, err); /* each VM's authority record (control_local.c) */
    /* From here every change of the policy is durable when its call returns. */
    if (rv == VMENC_OK && mode == WS_OPEN_NORMAL) {
        rv = ws_policy_attach(ws);
        if (rv != VMENC_OK)
            ws_set_error(err, rv, ws->policy_path, 0, "cannot attach the policy document: %s", vmenc_strerror(rv));
    }
    if (rv != VMENC_OK) {
        if (err != NULL && err->struct_size >= sizeof(*err) && err->status == VMENC_OK)
            ws_set_error(err, rv, ws->config_path, 0, "%s", vmenc_strerror(rv));
        vmenc_workspace_free(ws);
        return rv;
    }
    *out = ws;
    return VMENC_OK;
}

void vmenc_workspace_free(vmenc_workspace *ws) {
    if (ws == NULL)
        return;
    vmenc_host_free(ws->host);
    vmenc_audit_free(ws->audit);
    vmenc_audit_log_free(ws->log);
    vmenc_policy_free(ws->policy);
    vmenc_keymgr_free(ws->keymgr);
    vmenc_secret_free(ws->seal_key);
    vmenc_secret_free(ws->audit_key);
    vmenc_secret_free(ws->passphrase);
    ws_config_free(ws->cfg);
    free(ws->kms_state);
    free(ws->dir);
    free(ws->config_path);
    free(ws->datastore);
    free(ws->policy_path);
    free(ws->audit_path);
    free(ws->policy_lock_path);
    free(ws->config_lock_path);
    pthread_mutex_destroy(&ws->holder_mu);
    pthread_mutex_destroy(&ws->mu);
    free(ws);
}

/* ---- accessors -------------------------------------------------------------------- */

vmenc_host *vmenc_workspace_host(const vmenc_workspace *ws) { return ws ? ws->host : NULL; }
vmenc_policy *vmenc_workspace_policy(const vmenc_workspace *ws) { return ws ? ws->policy : NULL; }
vmenc_keymgr *vmenc_workspace_keymgr(const vmenc_workspace *ws) { return ws ? ws->keymgr : NULL; }
vmenc_audit *vmenc_workspace_audit(const vmenc_workspace *ws) { return ws ? ws->audit : NULL; }
const char *vmenc_workspace_dir(const vmenc_workspace *ws) { return ws ? ws->dir : NULL; }
const char *vmenc_workspace_datastore_dir(const vmenc_workspace *ws) { return ws ? ws->datastore : NULL; }
const char *vmenc_workspace_folder(const vmenc_workspace *ws) { return ws ? ws->cfg->folder : NULL; }
const char *vmenc_workspace_id(const vmenc_workspace *ws) { return ws ? ws->cfg->id : NULL; }
const char *vmenc_workspace_audit_log_path(const vmenc_workspace *ws) { return ws ? ws->audit_path : NULL; }
const char *vmenc_workspace_audit_key_provider(const vmenc_workspace *ws) {
    return ws ? ws->cfg->audit_provider : NULL;
}

/* ---- VMs ------------------------------------------------------------------------ */

static vmenc_status vm_name_check(const char *name) {
    VMENC_ENSURE(name != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(strlen(name) <= VMENC_VM_NAME_MAX, VMENC_E_BAD_PATH);
    return vmenc_fs_name_check(name);
}

vmenc_status vmenc_workspace_vm_home(const vmenc_workspace *ws, const char *name, char *out, size_t out_cap) {
    VMENC_ENSURE(ws != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vm_name_check(name));
    int n = snprintf(out, out_cap, "%s/%s", ws->datastore, name);
    VMENC_ENSURE(n > 0 && (size_t)n < out_cap, VMENC_E_BUFFER_TOO_SMALL);
    return VMENC_OK;
}

vmenc_status vmenc_workspace_vm_path(const vmenc_workspace *ws, const char *name, char *out, size_t out_cap) {
    VMENC_ENSURE(ws != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(vm_name_check(name));
    int n = snprintf(out, out_cap, "%s/%s/%s.vmx", ws->datastore, name, name);
    VMENC_ENSURE(n > 0 && (size_t)n < out_cap, VMENC_E_BUFFER_TOO_SMALL);
    return VMENC_OK;
}

vmenc_status vmenc_workspace_open_vm(vmenc_workspace *ws, const char *principal, const char *name, vmenc_vm **out) {
    char path[VMENC_WORKSPACE_PATH_MAX];
    VMENC_GUARD(vmenc_workspace_vm_path(ws, name, path, sizeof(path)));
    struct stat st;
    VMENC_ENSURE(stat(path, &st) == 0, errno == ENOENT ? VMENC_E_NOT_FOUND : VMENC_E_IO);
    return vmenc_vm_open(ws->host, principal, path, out);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

vmenc_status vmenc_workspace_foreach_vm(vmenc_workspace *ws, vmenc_workspace_vm_callback cb, void *ctx) {
    VMENC_ENSURE(ws != NULL && cb != NULL, VMENC_E_INVALID_ARG);
    DIR *d = opendir(ws->datastore);
    VMENC_ENSURE(d != NULL, errno == ENOENT ? VMENC_OK : VMENC_E_IO);
    char **names = NULL;
    size_t n = 0, cap = 0;
    vmenc_status rv = VMENC_OK;
    struct dirent *e;
    while (rv == VMENC_OK && (e = readdir(d)) != NULL) {
        char path[VMENC_WORKSPACE_PATH_MAX];
        struct stat st;
        if (vm_name_check(e->d_name) != VMENC_OK ||
            vmenc_workspace_vm_path(ws, e->d_name, path, sizeof(path)) != VMENC_OK || stat(path, &st) != 0)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(names, cap * sizeof(*nn));
            if (nn == NULL) {
                rv = VMENC_E_NOMEM;
                break;
            }
            names = nn;
        }
        names[n] = strdup(e->d_name);
        if (names[n] == NULL)
            rv = VMENC_E_NOMEM;
        else
            n++;
    }
    closedir(d);
    if (rv == VMENC_OK && n > 0)
        qsort(names, n, sizeof(*names), cmp_str);
    for (size_t i = 0; rv == VMENC_OK && i < n; i++)
        if (cb(ctx, names[i]) != 0)
            break;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rv;
}

/* ---- policy ---------------------------------------------------------------------- */

vmenc_status vmenc_workspace_audit_result(vmenc_workspace *ws, const char *principal, const char *operation,
                                          const char *target, const char *key_provider, const char *key_id,
                                          vmenc_status status, const char *reason) {
    VMENC_ENSURE(ws != NULL && operation != NULL, VMENC_E_INVALID_ARG);
    const char *ids[1] = {key_id};
    vmenc_audit_event ev = {
        .struct_size = sizeof(ev),
        .principal = principal != NULL && principal[0] != '\0' ? principal : "(none)",
        .operation = operation,
        .target = target,
        .key_provider = key_provider,
        .key_ids = key_id ? ids : NULL,
        .num_key_ids = key_id ? 1 : 0,
        .outcome = status == VMENC_OK ? VMENC_AUDIT_SUCCESS : VMENC_AUDIT_FAILED,
        .status = status,
        .reason = reason != NULL ? reason : (status == VMENC_OK ? NULL : vmenc_strerror(status)),
    };
    return vmenc_audit_emit(ws->audit, &ev);
}

vmenc_status vmenc_workspace_authorize(vmenc_workspace *ws, const char *principal, const vmenc_policy_request *rq,
                                       const char *operation, const char *target, vmenc_policy_decision *decision) {
    VMENC_ENSURE(ws != NULL && rq != NULL && operation != NULL && decision != NULL, VMENC_E_INVALID_ARG);
    vmenc_status rv = VMENC_E_INVALID_ARG;
    if (principal != NULL && principal[0] != '\0')
        rv = vmenc_policy_check(ws->policy, principal, rq, decision);
    if (rv == VMENC_OK)
        return VMENC_OK;
    vmenc_audit_event ev = {
        .struct_size = sizeof(ev),
        .principal = principal != NULL && principal[0] != '\0' ? principal : "(none)",
        .operation = operation,
        .target = target,
        .outcome = (rv == VMENC_E_DENIED || rv == VMENC_E_HOST_MODE) ? VMENC_AUDIT_DENIED : VMENC_AUDIT_FAILED,
        .status = rv,
        .reason = (rv == VMENC_E_DENIED || rv == VMENC_E_HOST_MODE) ? decision->message : vmenc_strerror(rv),
    };
    vmenc_status as = vmenc_audit_emit(ws->audit, &ev);
    (void)as; /* the denial is what the caller must see */
    return rv;
}

/* authorize_root checks a root-level operation (key servers, keys). */
static vmenc_status authorize_root(vmenc_workspace *ws, const char *principal, vmenc_policy_op op,
                                   const char *operation, const char *target) {
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = op};
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    return vmenc_workspace_authorize(ws, principal, &rq, operation, target, &d);
}

/* ---- key providers ---------------------------------------------------------------- */

size_t vmenc_workspace_num_kms(const vmenc_workspace *ws) { return ws ? ws->cfg->num_kms : 0; }

/* vmenc_workspace_kms_info before issue 24 appended load_detail. */
#define KMS_INFO_V1_SIZE (offsetof(vmenc_workspace_kms_info, audit_key) + sizeof(int))

vmenc_status vmenc_workspace_get_kms_info(const vmenc_workspace *ws, size_t index, vmenc_workspace_kms_info *out) {
    VMENC_ENSURE(ws != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= KMS_INFO_V1_SIZE, VMENC_E_ABI_VERSION);
    VMENC_ENSURE(index < ws->cfg->num_kms, VMENC_E_INVALID_ARG);
    const ws_kms *k = &ws->cfg->kms[index];
    uint32_t sz = out->struct_size;
    memset(out, 0, sz < sizeof(*out) ? sz : sizeof(*out));
    out->struct_size = sz;
    if (sz >= offsetof(vmenc_workspace_kms_info, load_detail) + sizeof(out->load_detail))
        memcpy(out->load_detail, ws->kms_state[index].load_detail, sizeof(out->load_detail));
    snprintf(out->alias, sizeof(out->alias), "%s", k->alias);
    snprintf(out->type, sizeof(out->type), "%s", k->type);
    out->num_endpoints = (uint32_t)k->num_endpoints;
    out->num_loaded = ws->kms_state[index].num_loaded;
    out->load_status = ws->kms_state[index].load_status;
    out->embedded = strcmp(k->type, "file") == 0 && k->num_endpoints == 1 &&
                    strcmp(k->endpoints[0], WS_KEYSTORE_NAME) == 0;
    out->audit_key = strcmp(k->alias, ws->cfg->audit_provider) == 0;
    return VMENC_OK;
}

vmenc_status vmenc_workspace_kms_endpoint(const vmenc_workspace *ws, size_t index, size_t ep, char *out,
                                          size_t out_cap) {
    VMENC_ENSURE(ws != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(index < ws->cfg->num_kms && ep < ws->cfg->kms[index].num_endpoints, VMENC_E_INVALID_ARG);
    const char *a = ws->cfg->kms[index].endpoints[ep];
    VMENC_ENSURE(strlen(a) < out_cap, VMENC_E_BUFFER_TOO_SMALL);
    memcpy(out, a, strlen(a) + 1);
    return VMENC_OK;
}

/* write_config replaces vmenc.conf with ws->cfg, as a compare-and-swap:
 * under vmenc.conf.lock, and only if the file is still the one this handle
 * read or last wrote (else VMENC_E_CONFLICT: another process changed the
 * key providers; open the workspace again and retry). */
static vmenc_status write_config(vmenc_workspace *ws) {
    char *text = NULL;
    size_t len = 0;
    VMENC_GUARD(ws_config_serialize(ws->cfg, &text, &len));
    int lk = -1;
    vmenc_status rv = ws_lock_take(ws, ws->config_lock_path, "configuration change", &lk);
    uint8_t *cur = NULL;
    size_t cur_len = 0;
    if (rv == VMENC_OK)
        rv = ws_read_path(ws->config_path, VMENC_WORKSPACE_MAX_CONFIG, &cur, &cur_len);
    if (rv == VMENC_OK) {
        uint8_t sha[32];
        crypto_hash_sha256(sha, cur, cur_len);
        if (sodium_memcmp(sha, ws->config_sha, sizeof(sha)) != 0)
            rv = VMENC_E_CONFLICT;
    }
    free(cur);
    if (rv == VMENC_OK)
        rv = ws_write_path(ws->config_path, (const uint8_t *)text, len, ws->sync);
    if (rv == VMENC_OK)
        crypto_hash_sha256(ws->config_sha, (const uint8_t *)text, len);
    ws_lock_drop(lk);
    free(text);
    return rv;
}

static vmenc_status copy_spec(const vmenc_workspace_kms_spec *s, ws_kms *k) {
    memset(k, 0, sizeof(*k));
    k->alias = strdup(s->alias);
    k->type = strdup(s->type);
    k->secret_file = s->secret_file ? strdup(s->secret_file) : NULL;
    VMENC_ENSURE(k->alias && k->type && (k->secret_file || !s->secret_file), VMENC_E_NOMEM);
    VMENC_ENSURE(s->num_endpoints <= VMENC_WORKSPACE_MAX_ENDPOINTS, VMENC_E_LIMIT);
    k->endpoints = calloc(s->num_endpoints ? s->num_endpoints : 1, sizeof(char *));
    VMENC_ENSURE(k->endpoints != NULL, VMENC_E_NOMEM);
    for (; k->num_endpoints < s->num_endpoints; k->num_endpoints++) {
        VMENC_ENSURE(s->endpoints[k->num_endpoints] != NULL, VMENC_E_INVALID_ARG);
        k->endpoints[k->num_endpoints] = strdup(s->endpoints[k->num_endpoints]);
        VMENC_ENSURE(k->endpoints[k->num_endpoints] != NULL, VMENC_E_NOMEM);
    }
    size_t no = 0;
    while (s->options != NULL && s->options[no] != NULL)
        no++;
    VMENC_ENSURE(no <= VMENC_WORKSPACE_MAX_OPTIONS, VMENC_E_LIMIT);
    k->options = calloc(no ? no : 1, sizeof(char *));
    VMENC_ENSURE(k->options != NULL, VMENC_E_NOMEM);
    for (; k->num_options < no; k->num_options++) {
        k->options[k->num_options] = strdup(s->options[k->num_options]);
        VMENC_ENSURE(k->options[k->num_options] != NULL, VMENC_E_NOMEM);
    }
    return VMENC_OK;
}

static vmenc_status add_kms_locked(vmenc_workspace *ws, const vmenc_workspace_kms_spec *spec) {
    ws_kms k;
    vmenc_status rv = copy_spec(spec, &k);
    char msg[VMENC_WORKSPACE_MESSAGE_MAX];
    if (rv == VMENC_OK)
        rv = ws_config_check_kms(&k, msg, sizeof(msg)) == VMENC_OK ? VMENC_OK : VMENC_E_INVALID_ARG;
    if (rv == VMENC_OK && ws_config_find_kms(ws->cfg, k.alias) >= 0)
        rv = VMENC_E_PROVIDER_EXISTS;
    if (rv == VMENC_OK && ws->cfg->num_kms >= VMENC_WORKSPACE_MAX_KMS)
        rv = VMENC_E_LIMIT;
    ws_kms *nk = NULL;
    ws_kms_state *ns = NULL;
    if (rv == VMENC_OK) {
        nk = realloc(ws->cfg->kms, (ws->cfg->num_kms + 1) * sizeof(*nk));
        if (nk != NULL)
            ws->cfg->kms = nk;
        ns = realloc(ws->kms_state, (ws->cfg->num_kms + 1) * sizeof(*ns));
        if (ns != NULL)
            ws->kms_state = ns;
        if (nk == NULL || ns == NULL)
            rv = VMENC_E_NOMEM;
    }
    static const char *const create_opt[] = {"create=1", NULL};
    bool create = (spec->flags & VMENC_WORKSPACE_KMS_CREATE) && strcmp(spec->type, "file") == 0;
    ws_kms_state st;
    if (rv == VMENC_OK)
        rv = build_cluster(ws, &k, create ? create_opt : NULL, true, &st, NULL);
    if (rv != VMENC_OK) {
        ws_kms_cleanup(&k);
        return rv;
    }
    ws->cfg->kms[ws->cfg->num_kms] = k;
    ws->kms_state[ws->cfg->num_kms] = st;
    ws->cfg->num_kms++;
    rv = write_config(ws);
    if (rv != VMENC_OK) {
        ws->cfg->num_kms--;
        vmenc_status rs = vmenc_keymgr_remove_cluster(ws->keymgr, k.alias);
        (void)rs;
        ws_kms_cleanup(&ws->cfg->kms[ws->cfg->num_kms]);
    }
    return rv;
}

vmenc_status vmenc_workspace_add_kms(vmenc_workspace *ws, const char *principal,
                                     const vmenc_workspace_kms_spec *spec) {
    VMENC_ENSURE(ws != NULL && spec != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(spec->struct_size >= sizeof(*spec), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(spec->alias != NULL && spec->type != NULL && (spec->flags & ~VMENC_WORKSPACE_KMS_CREATE) == 0,
                 VMENC_E_INVALID_ARG);
    VMENC_GUARD(authorize_root(ws, principal, VMENC_OP_MANAGE_KEY_SERVERS, "kms.add", spec->alias));
    pthread_mutex_lock(&ws->mu);
    vmenc_status rv = add_kms_locked(ws, spec);
    pthread_mutex_unlock(&ws->mu);
    vmenc_status as = vmenc_workspace_audit_result(ws, principal, "kms.add", spec->alias, spec->alias, NULL, rv, NULL);
    return rv != VMENC_OK ? rv : as;
}

vmenc_status vmenc_workspace_remove_kms(vmenc_workspace *ws, const char *principal, const char *alias) {
    VMENC_ENSURE(ws != NULL && alias != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(authorize_root(ws, principal, VMENC_OP_MANAGE_KEY_SERVERS, "kms.remove", alias));
    pthread_mutex_lock(&ws->mu);
    long i = ws_config_find_kms(ws->cfg, alias);
    vmenc_status rv = i < 0 ? VMENC_E_NO_SUCH_PROVIDER : VMENC_OK;
    if (rv == VMENC_OK && strcmp(alias, ws->cfg->audit_provider) == 0)
        rv = VMENC_E_BAD_STATE;
    ws_kms removed;
    if (rv == VMENC_OK) {
        removed = ws->cfg->kms[i];
        memmove(&ws->cfg->kms[i], &ws->cfg->kms[i + 1], (ws->cfg->num_kms - (size_t)i - 1) * sizeof(ws_kms));
        memmove(&ws->kms_state[i], &ws->kms_state[i + 1],
                (ws->cfg->num_kms - (size_t)i - 1) * sizeof(ws_kms_state));
        ws->cfg->num_kms--;
        rv = write_config(ws);
        if (rv == VMENC_OK) {
            vmenc_status rs = vmenc_keymgr_remove_cluster(ws->keymgr, removed.alias);
            (void)rs;
            ws_kms_cleanup(&removed);
        } else { /* put it back at the end: the configuration on disk is unchanged */
            ws->cfg->kms[ws->cfg->num_kms] = removed;
            ws->cfg->num_kms++;
        }
    }
    pthread_mutex_unlock(&ws->mu);
    vmenc_status as = vmenc_workspace_audit_result(ws, principal, "kms.remove", alias, alias, NULL, rv, NULL);
    return rv != VMENC_OK ? rv : as;
}

static vmenc_status file_provider_of(vmenc_workspace *ws, const char *alias, vmenc_kms_provider **out) {
    long i = ws_config_find_kms(ws->cfg, alias);
    VMENC_ENSURE(i >= 0, VMENC_E_NO_SUCH_PROVIDER);
    VMENC_ENSURE(strcmp(ws->cfg->kms[i].type, "file") == 0, VMENC_E_UNSUPPORTED);
    VMENC_ENSURE(ws->kms_state[i].file_provider != NULL, VMENC_E_KMS_UNAVAILABLE);
    *out = ws->kms_state[i].file_provider;
    return VMENC_OK;
}

vmenc_status vmenc_workspace_kms_backup(vmenc_workspace *ws, const char *principal, const char *alias,
                                        const char *backup_path, const uint8_t *backup_pass, size_t backup_pass_len) {
    VMENC_ENSURE(ws != NULL && alias != NULL && backup_path != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(authorize_root(ws, principal, VMENC_OP_MANAGE_KEYS, "kms.backup", alias));
    vmenc_kms_provider *p = NULL;
    vmenc_status rv = file_provider_of(ws, alias, &p);
    if (rv == VMENC_OK)
        rv = vmenc_kms_file_export(p, backup_path, backup_pass, backup_pass_len, NULL, KMS_TIMEOUT_MS);
    vmenc_status as = vmenc_workspace_audit_result(ws, principal, "kms.backup", alias, alias, NULL, rv, NULL);
    return rv != VMENC_OK ? rv : as;
}

vmenc_status vmenc_workspace_kms_restore(vmenc_workspace *ws, const char *principal, const char *alias,
                                         const char *backup_path, const uint8_t *backup_pass,
                                         size_t backup_pass_len, vmenc_kms_file_restore_mode mode,
                                         size_t *out_num_added) {
    VMENC_ENSURE(ws != NULL && alias != NULL && backup_path != NULL, VMENC_E_INVALID_ARG);
    VMENC_GUARD(authorize_root(ws, principal, VMENC_OP_MANAGE_KEYS, "kms.restore", alias));
    vmenc_kms_provider *p = NULL;
    vmenc_status rv = file_provider_of(ws, alias, &p);
    if (rv == VMENC_OK)
        rv = vmenc_kms_file_restore(p, backup_path, backup_pass, backup_pass_len, mode, KMS_TIMEOUT_MS,
                                    out_num_added);
    vmenc_status as = vmenc_workspace_audit_result(ws, principal, "kms.restore", alias, alias, NULL, rv, NULL);
    return rv != VMENC_OK ? rv : as;
}

/* ---- audit ------------------------------------------------------------------------ */

vmenc_status vmenc_workspace_audit_verify(vmenc_workspace *ws, const char *path, vmenc_audit_verify_result *out) {
    VMENC_ENSURE(ws != NULL && out != NULL, VMENC_E_INVALID_ARG);
    uint64_t last = 0;
    uint8_t hash[VMENC_AUDIT_HASH_BYTES];
    if (path == NULL || strcmp(path, ws->audit_path) == 0) {
        path = ws->audit_path;
        VMENC_GUARD(vmenc_audit_log_position(ws->log, &last, hash));
    }
    vmenc_audit_verify_options vo = {
        .struct_size = sizeof(vo),
        .key = ws->audit_key->bytes,
        .key_len = ws->audit_key->len,
        .expected_last_seq = last,
    };
    const char *paths[1] = {path};
    return vmenc_audit_verify_files(&vo, paths, 1, out);
}

/* ---- the configuration parser, public face -------------------------------------------- */

vmenc_status vmenc_workspace_config_check(const uint8_t *text, size_t len, vmenc_workspace_error *err,
                                          char **out_canonical, size_t *out_len) {
    VMENC_ENSURE(text != NULL || len == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(err == NULL || err->struct_size >= sizeof(*err), VMENC_E_ABI_VERSION);
    if (err != NULL) {
        err->status = VMENC_OK;
        err->file[0] = err->message[0] = '\0';
        err->line = 0;
    }
    ws_config *cfg = NULL;
    VMENC_GUARD(ws_config_parse(text, len, err, &cfg));
    vmenc_status rv = VMENC_OK;
    if (out_canonical != NULL && out_len != NULL) {
        char *s = NULL;
        size_t n = 0;
        rv = ws_config_serialize(cfg, &s, &n);
        if (rv == VMENC_OK) {
            char *b = vmenc_buffer_alloc_internal(n + 1);
            if (b == NULL) {
                rv = VMENC_E_NOMEM;
            } else {
                memcpy(b, s, n + 1);
                *out_canonical = b;
                *out_len = n;
            }
            free(s);
        }
    }
    ws_config_free(cfg);
    return rv;
}
