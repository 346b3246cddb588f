/*
 * lib/workspace/vm_lifecycle.c - a VM's birth and death in a workspace:
 * create with its disks as one all-or-nothing call, delete (files, control
 * record, inventory entry, and optionally its KEKs at their key provider:
 * crypto-shredding) and unregister. The API is documented in
 * include/vmenc/workspace.h; the operator's view in docs/workspace.md
 * ("Deleting a VM").
 *
 * Safety rule: everything is decided before anything is removed - every
 * privilege, whether another process has a file of the VM open, and for
 * DESTROY_KEYS whether each KEK is still named by anything else of this
 * workspace (another VM's files or authority record, the audit chain key,
 * the core-dump host key); a KEK is destroyed only when nothing else names
 * it, and a file or record that cannot be read counts as naming it.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/control.h"
#include "core/fs.h"
#include "core/internal.h"
#include "vm/format/descriptor.h"
#include "vm/format/vmx.h"
#include "vm/io/imagelock.h"
#include "vm/vm_internal.h"
#include "workspace/ws_internal.h"

#define LC_TIMEOUT_MS 10000u
#define LC_MAX_KEYS (2u * VMENC_VM_MAX_DISKS + 4u)
#define LC_MAX_FILES 1024u

/* msgf: a sentence into a message buffer, cut if it must be (paths can be
 * long; the message is for a human). */
static void msgf(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void msgf(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(out, cap, fmt, ap);
    va_end(ap);
}

/* ---- the KEKs a VM names ------------------------------------------------------ */

typedef struct lc_kek {
    char alias[VMENC_PROVIDER_ALIAS_MAX + 1];
    char id[VMENC_KEY_ID_MAX + 1];
} lc_kek;

typedef struct lc_keys {
    lc_kek v[LC_MAX_KEYS];
    size_t n;
} lc_keys;

static void keys_add(lc_keys *k, const char *alias, const char *id) {
    if (alias == NULL || id == NULL || alias[0] == '\0' || id[0] == '\0')
        return;
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->v[i].alias, alias) == 0 && strcmp(k->v[i].id, id) == 0)
            return;
    if (k->n == LC_MAX_KEYS)
        return;
    snprintf(k->v[k->n].alias, sizeof(k->v[k->n].alias), "%s", alias);
    snprintf(k->v[k->n].id, sizeof(k->v[k->n].id), "%s", id);
    k->n++;
}

static bool keys_has(const lc_keys *k, const char *alias, const char *id) {
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->v[i].alias, alias) == 0 && strcmp(k->v[i].id, id) == 0)
            return true;
    return false;
}

static void keys_add_wrapped(lc_keys *k, const vmenc_wrapped_key *wk) {
    if (wk != NULL)
        keys_add(k, vmenc_wrapped_key_provider_alias(wk), vmenc_wrapped_key_kek_id(wk));
}

static vmenc_status read_in(const char *home, const char *file, size_t max, uint8_t **out, size_t *out_len) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", home, file) >= (int)sizeof(path))
        return VMENC_E_BAD_PATH;
    return ws_read_path(path, max, out, out_len);
}

/* home_keys adds to |k| every KEK the files of VM |name| in |home| name
 * (the VM key, a pending next VM key, each disk's current and next DEK
 * records) and copies the VM's UUID to |uuid| ("" if no .vmx). These are
 * datastore hints: they decide only which keys are candidates, never that a
 * key is unused. VMENC_E_NOT_FOUND: no NAME.vmx. */
static vmenc_status home_keys(const char *home, const char *name, lc_keys *k, char uuid[VMENC_VM_UUID_LEN + 1]) {
    uuid[0] = '\0';
    char vmx_name[VMENC_VM_NAME_MAX + 8];
    snprintf(vmx_name, sizeof(vmx_name), "%s.vmx", name);
    uint8_t *text = NULL;
    size_t len = 0;
    VMENC_GUARD(read_in(home, vmx_name, VM_KV_MAX_TEXT, &text, &len));
    vm_vmx vmx;
    memset(&vmx, 0, sizeof(vmx));
    vmenc_status s = vm_vmx_parse(text, len, &vmx);
    free(text);
    if (s != VMENC_OK)
        return s;
    msgf(uuid, VMENC_VM_UUID_LEN + 1, "%s", vmx.uuid);
    keys_add_wrapped(k, vmx.key_safe);
    keys_add_wrapped(k, vmx.new_key_safe);
    for (size_t i = 0; i < vmx.num_disks && s == VMENC_OK; i++) {
        if ((s = read_in(home, vmx.disks[i].file_name, VM_KV_MAX_TEXT, &text, &len)) == VMENC_E_NOT_FOUND) {
            s = VMENC_OK; /* a disk whose descriptor is gone names no key */
            continue;
        }
        if (s != VMENC_OK)
            break;
        vm_disk_desc d;
        memset(&d, 0, sizeof(d));
        s = vm_disk_desc_parse(text, len, &d);
        free(text);
        if (s == VMENC_OK) {
            keys_add(k, d.key_provider, d.kek_id);
            keys_add(k, d.new_key_provider, d.new_kek_id);
            keys_add_wrapped(k, d.key_safe);
            keys_add_wrapped(k, d.new_key_safe);
        }
        vm_disk_desc_cleanup(&d);
    }
    vm_vmx_cleanup(&vmx);
    return s;
}

/* ---- who else names a KEK ------------------------------------------------------- */

typedef struct lc_usage {
    vmenc_workspace *ws;
    const char *name;        /* the VM being deleted */
    const char *uuid;        /* its UUID ("" if unknown) */
    lc_keys others;          /* every KEK something else names */
    char blocker[VMENC_WORKSPACE_MESSAGE_MAX]; /* something that could not be read: keep every key */
} lc_usage;

static int usage_record(void *arg, const ctl_vm_record *rec) {
    lc_usage *u = arg;
    if ((u->uuid[0] != '\0' && strcmp(rec->uuid, u->uuid) == 0) || strcmp(rec->facts.name, u->name) == 0)
        return 0;
    keys_add(&u->others, rec->facts.kek_provider, rec->facts.kek_id);
    return 0;
}

static int usage_home(void *arg, const char *vm_name) {
    lc_usage *u = arg;
    if (strcmp(vm_name, u->name) == 0)
        return 0;
    char home[PATH_MAX], uuid[VMENC_VM_UUID_LEN + 1];
    if (vmenc_workspace_vm_home(u->ws, vm_name, home, sizeof(home)) != VMENC_OK)
        return 0;
    vmenc_status s = home_keys(home, vm_name, &u->others, uuid);
    if (s != VMENC_OK && s != VMENC_E_NOT_FOUND && u->blocker[0] == '\0')
        msgf(u->blocker, sizeof(u->blocker), "the files of VM \"%s\" cannot be read (%s), so whether it uses the key is unknown",
                 vm_name, vmenc_strerror(s));
    return 0;
}

/* usage_scan fills |u->others| with every KEK that something other than
 * VM |u->name| names: the audit chain key, the core-dump host key (current
 * and one being rotated away from), every other authority record, every
 * other VM home in the datastore. */
static void usage_scan(lc_usage *u) {
    vmenc_workspace *ws = u->ws;
    vmenc_wrapped_key *wk = NULL;
    if (vmenc_wrapped_key_parse_text(ws->cfg->audit_key, strlen(ws->cfg->audit_key), &wk) == VMENC_OK)
        keys_add_wrapped(&u->others, wk);
    else
        msgf(u->blocker, sizeof(u->blocker), "the audit chain key's record cannot be read");
    vmenc_wrapped_key_free(wk);
    char cd[PATH_MAX];
    struct stat sb;
    if (snprintf(cd, sizeof(cd), "%s/coredumps", ws->dir) < (int)sizeof(cd) && stat(cd, &sb) == 0) {
        vmenc_coredump_store *store = NULL;
        vmenc_coredump_store_info info = {.struct_size = sizeof(info)};
        vmenc_status s = vmenc_coredump_store_open(ws->host, cd, &store);
        if (s == VMENC_OK)
            s = vmenc_coredump_store_get_info(store, &info);
        vmenc_coredump_store_free(store);
        if (s == VMENC_OK) {
            keys_add(&u->others, info.key_provider, info.kek_id);
            keys_add(&u->others, info.old_key_provider, info.old_kek_id);
        } else if (u->blocker[0] == '\0') {
            msgf(u->blocker, sizeof(u->blocker), "the core-dump store %s cannot be read (%s)", cd,
                     vmenc_strerror(s));
        }
    }
    if (ws->host->control != NULL) {
        vmenc_status s = ctl_store_list_vms(ws->host->control, usage_record, u);
        if (s != VMENC_OK && u->blocker[0] == '\0')
            msgf(u->blocker, sizeof(u->blocker), "the control store cannot be read (%s)", vmenc_strerror(s));
    }
    vmenc_status s = vmenc_workspace_foreach_vm(ws, usage_home, u);
    if (s != VMENC_OK && u->blocker[0] == '\0')
        msgf(u->blocker, sizeof(u->blocker), "the datastore cannot be listed (%s)", vmenc_strerror(s));
}

/* ---- the files of a home, locked ------------------------------------------------- */

typedef struct lc_file {
    char name[NAME_MAX + 1];
    int fd;                  /* -1: not opened (an owner record, or KEEP_FILES counting) */
    vm_imagelock *lock;
    uint64_t size;
} lc_file;

typedef struct lc_home {
    char path[PATH_MAX];
    int dirfd;               /* -1: the home does not exist */
    lc_file *files;
    size_t num_files;
    uint64_t num_bytes;
} lc_home;

static bool is_owner_record(const char *n) {
    size_t l = strlen(n);
    return l > 4 && strcmp(n + l - 4, ".lck") == 0;
}

static void home_release(lc_home *h) {
    for (size_t i = 0; i < h->num_files; i++) {
        vm_imagelock_release(h->files[i].lock);
        if (h->files[i].fd >= 0)
            close(h->files[i].fd);
    }
    free(h->files);
    if (h->dirfd >= 0)
        close(h->dirfd);
    memset(h, 0, sizeof(*h));
    h->dirfd = -1;
}

/* home_scan lists the regular files of the home and sizes them. A home
 * holding anything but regular files (a directory, a link) is refused:
 * VMENC_E_BAD_PATH naming it, nothing is removed. */
static vmenc_status home_scan(lc_home *h, char *why, size_t why_cap) {
    h->dirfd = open(h->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (h->dirfd < 0)
        return errno == ENOENT ? VMENC_OK : vmenc_status_from_errno(errno);
    int dup_fd = dup(h->dirfd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (d == NULL) {
        if (dup_fd >= 0)
            close(dup_fd);
        return VMENC_E_IO;
    }
    vmenc_status s = VMENC_OK;
    struct dirent *e;
    while (s == VMENC_OK && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        struct stat sb;
        if (fstatat(h->dirfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
            s = vmenc_status_from_errno(errno);
            break;
        }
        if (!S_ISREG(sb.st_mode)) {
            msgf(why, why_cap, "%s/%s is not a regular file; the VM home is left as it is", h->path, e->d_name);
            s = VMENC_E_BAD_PATH;
            break;
        }
        if (h->num_files == LC_MAX_FILES) {
            msgf(why, why_cap, "%s holds more than %u files", h->path, LC_MAX_FILES);
            s = VMENC_E_LIMIT;
            break;
        }
        if (h->files == NULL && (h->files = calloc(LC_MAX_FILES, sizeof(*h->files))) == NULL) {
            s = VMENC_E_NOMEM;
            break;
        }
        lc_file *f = &h->files[h->num_files++];
        snprintf(f->name, sizeof(f->name), "%s", e->d_name);
        f->fd = -1;
        f->size = (uint64_t)sb.st_size;
        h->num_bytes += f->size;
    }
    closedir(d);
    return s;
}

/* home_lock takes the conversion lock (nobody else in) on every file but
 * the owner records: VMENC_E_LOCKED with |why| naming the holder if another
 * process has one open; nothing stays locked then. */
static vmenc_status home_lock(lc_home *h, const char *host_id, const char *operation, char *why, size_t why_cap) {
    vm_lock_owner owner = {.host_id = host_id, .operation = operation};
    for (size_t i = 0; i < h->num_files; i++) {
        lc_file *f = &h->files[i];
        if (is_owner_record(f->name))
            continue;
        vmenc_status s = vm_imagelock_openat(h->dirfd, f->name, O_RDWR, 0, &f->fd);
        if (s == VMENC_E_NOT_FOUND)
            continue;
        vmenc_lock_holder holder = {.struct_size = sizeof(holder)};
        if (s == VMENC_OK)
            s = vm_imagelock_take(f->fd, h->dirfd, f->name, VM_LOCK_CONVERT, &owner, &holder, &f->lock);
        if (s != VMENC_OK) {
            if (s == VMENC_E_LOCKED)
                msgf(why, why_cap, "%s/%s is in use: %s", h->path, f->name, holder.message);
            else
                msgf(why, why_cap, "cannot lock %s/%s: %s", h->path, f->name, vmenc_strerror(s));
            return s;
        }
    }
    return VMENC_OK;
}

/* home_remove unlinks every file (each while its lock is held), then the
 * owner records the locks leave, then the directory. */
static vmenc_status home_remove(lc_home *h, bool sync, char *why, size_t why_cap) {
    if (h->dirfd < 0)
        return VMENC_OK;
    for (size_t i = 0; i < h->num_files; i++) {
        lc_file *f = &h->files[i];
        if (unlinkat(h->dirfd, f->name, 0) != 0 && errno != ENOENT) {
            msgf(why, why_cap, "cannot remove %s/%s: %s", h->path, f->name, strerror(errno));
            return vmenc_status_from_errno(errno);
        }
        vm_imagelock_release(f->lock);
        f->lock = NULL;
    }
    /* The releases above may have dropped owner records we listed already
     * (gone: fine) - and nothing else may have appeared, since every file
     * was locked against other openers. */
    if (sync)
        (void)fsync(h->dirfd);
    if (rmdir(h->path) != 0) {
        msgf(why, why_cap, "cannot remove the VM home %s: %s", h->path, strerror(errno));
        return vmenc_status_from_errno(errno);
    }
    return VMENC_OK;
}

/* ---- authorization and audit ------------------------------------------------------ */

static vmenc_status audit_outcome(vmenc_workspace *ws, const char *principal, const char *operation,
                                  const char *target, const char *provider, const char *key_id,
                                  vmenc_audit_outcome outcome, vmenc_status status, const char *reason) {
    const char *ids[1] = {key_id};
    vmenc_audit_event ev = {
        .struct_size = sizeof(ev),
        .principal = principal != NULL && principal[0] != '\0' ? principal : "(none)",
        .operation = operation,
        .target = target,
        .key_provider = provider != NULL && provider[0] != '\0' ? provider : NULL,
        .key_ids = key_id != NULL && key_id[0] != '\0' ? ids : NULL,
        .num_key_ids = key_id != NULL && key_id[0] != '\0' ? 1 : 0,
        .outcome = outcome,
        .status = status,
        .reason = reason != NULL && reason[0] != '\0' ? reason
                  : status == VMENC_OK                 ? NULL
                                                       : vmenc_strerror(status),
    };
    return vmenc_audit_emit(ws->audit, &ev);
}

/* require_priv: |principal| holds |priv| on |object|, else the denial is
 * audited as |operation| and |msg| names the privilege. */
static vmenc_status require_priv(vmenc_workspace *ws, const char *principal, const char *object,
                                 vmenc_policy_privilege priv, const char *operation, const char *target, char *msg,
                                 size_t msg_cap) {
    int has = 0;
    vmenc_status s = vmenc_policy_has_privilege(ws->policy, principal, object, priv, &has);
    if (s == VMENC_E_NOT_FOUND) {
        msgf(msg, msg_cap, "there is no VM \"%s\" in the inventory", object);
        (void)audit_outcome(ws, principal, operation, target, NULL, NULL, VMENC_AUDIT_FAILED, s, msg);
        return s;
    }
    if (s == VMENC_OK && !has) {
        s = VMENC_E_DENIED;
        msgf(msg, msg_cap, "%s lacks privilege %s on %s", principal, vmenc_policy_privilege_name(priv), object);
        (void)audit_outcome(ws, principal, operation, target, NULL, NULL, VMENC_AUDIT_DENIED, s, msg);
        return s;
    }
    if (s != VMENC_OK) {
        msgf(msg, msg_cap, "the policy cannot decide: %s", vmenc_strerror(s));
        (void)audit_outcome(ws, principal, operation, target, NULL, NULL, VMENC_AUDIT_FAILED, s, msg);
    }
    return s;
}

/* forget_record deletes the authority record of |uuid| (none: fine). */
static vmenc_status forget_record(vmenc_workspace *ws, const char *uuid) {
    if (ws->host->control == NULL || uuid[0] == '\0')
        return VMENC_OK;
    ctl_vm_record rec;
    vmenc_status s = ctl_store_get_vm(ws->host->control, uuid, &rec);
    if (s == VMENC_E_NOT_FOUND)
        return VMENC_OK;
    VMENC_GUARD(s);
    s = ctl_store_delete_vm(ws->host->control, uuid, rec.revision);
    return s == VMENC_E_NOT_FOUND ? VMENC_OK : s;
}

/* ---- delete / unregister ---------------------------------------------------------- */

#define DELETE_FLAGS \
    (VMENC_WORKSPACE_DELETE_KEEP_FILES | VMENC_WORKSPACE_DELETE_DESTROY_KEYS | VMENC_WORKSPACE_DELETE_DRY_RUN)

typedef struct lc_plan {
    lc_keys vm_keys;                 /* every KEK the VM names */
    bool destroy[LC_MAX_KEYS];       /* ... and which of them go */
    char uuid[VMENC_VM_UUID_LEN + 1];
    lc_home home;
} lc_plan;

static void copy_result(vmenc_workspace_delete_result *out, const vmenc_workspace_delete_result *r) {
    if (out == NULL)
        return;
    uint32_t sz = out->struct_size;
    memcpy(out, r, sizeof(*r));
    out->struct_size = sz;
}

/* plan_keys decides, per KEK of the VM, destroy or keep; fills the counts
 * and |r->message| with the first reason to keep one. */
static void plan_keys(vmenc_workspace *ws, const char *name, lc_plan *p, bool destroy,
                      vmenc_workspace_delete_result *r) {
    r->num_keys = (uint32_t)p->vm_keys.n;
    if (!destroy) {
        r->num_keys_kept = (uint32_t)p->vm_keys.n;
        return;
    }
    lc_usage *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        r->num_keys_kept = (uint32_t)p->vm_keys.n;
        msgf(r->message, sizeof(r->message), "out of memory deciding which keys are in use: all kept");
        return;
    }
    u->ws = ws;
    u->name = name;
    u->uuid = p->uuid;
    usage_scan(u);
    for (size_t i = 0; i < p->vm_keys.n; i++) {
        const lc_kek *k = &p->vm_keys.v[i];
        if (u->blocker[0] != '\0') {
            if (r->message[0] == '\0')
                msgf(r->message, sizeof(r->message), "KEK %s of \"%s\" kept: %s", k->id, k->alias, u->blocker);
        } else if (keys_has(&u->others, k->alias, k->id)) {
            if (r->message[0] == '\0')
                msgf(r->message, sizeof(r->message),
                         "KEK %s of \"%s\" kept: another VM, record or workspace key uses it", k->id, k->alias);
        } else {
            p->destroy[i] = true;
            r->num_keys_destroyed++;
            continue;
        }
        r->num_keys_kept++;
    }
    free(u);
}

static vmenc_status delete_fail(vmenc_workspace *ws, const char *principal, const char *name,
                                vmenc_workspace_delete_result *r, vmenc_workspace_delete_result *out,
                                vmenc_status s) {
    (void)audit_outcome(ws, principal, "vm.delete", name, r->key_provider, r->kek_id, VMENC_AUDIT_FAILED, s,
                        r->message);
    copy_result(out, r);
    return s;
}

vmenc_status vmenc_workspace_delete_vm(vmenc_workspace *ws, const char *principal, const char *name, uint32_t flags,
                                       vmenc_workspace_delete_result *out_result) {
    VMENC_ENSURE(ws != NULL && name != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out_result == NULL || out_result->struct_size >= sizeof(*out_result), VMENC_E_ABI_VERSION);
    vmenc_workspace_delete_result r;
    memset(&r, 0, sizeof(r));
    r.struct_size = sizeof(r);
    vmenc_status s = VMENC_OK;
    if ((flags & ~(uint32_t)DELETE_FLAGS) != 0 || !vm_principal_ok(principal)) {
        msgf(r.message, sizeof(r.message), "%s", (flags & ~(uint32_t)DELETE_FLAGS) ? "unknown flag" : "no principal");
        return delete_fail(ws, principal, name, &r, out_result, VMENC_E_INVALID_ARG);
    }
    if ((s = vm_vm_name_check(name)) != VMENC_OK) {
        msgf(r.message, sizeof(r.message), "\"%s\" is not a VM name", name);
        return delete_fail(ws, principal, name, &r, out_result, VMENC_E_BAD_PATH);
    }
    const bool destroy = (flags & VMENC_WORKSPACE_DELETE_DESTROY_KEYS) != 0;
    const bool keep_files = (flags & VMENC_WORKSPACE_DELETE_KEEP_FILES) != 0;
    const bool dry = (flags & VMENC_WORKSPACE_DELETE_DRY_RUN) != 0;
    /* 1. every privilege, before anything else */
    if ((s = require_priv(ws, principal, name, VMENC_PRIV_VM_DELETE, "vm.delete", name, r.message,
                          sizeof(r.message))) != VMENC_OK) {
        copy_result(out_result, &r);
        return s;
    }
    if (destroy) {
        /* Cryptographer.ManageKeys on the root (the policy knows the root) */
        vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_MANAGE_KEYS};
        vmenc_policy_decision dec = {.struct_size = sizeof(dec)};
        if ((s = vmenc_workspace_authorize(ws, principal, &rq, "vm.delete", name, &dec)) != VMENC_OK) {
            msgf(r.message, sizeof(r.message), "%s", dec.message[0] ? dec.message : vmenc_strerror(s));
            copy_result(out_result, &r);
            return s;
        }
    }
    lc_plan *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return delete_fail(ws, principal, name, &r, out_result, VMENC_E_NOMEM);
    p->home.dirfd = -1;
    /* 2. what the VM is: its keys, its files */
    if ((s = vmenc_workspace_vm_home(ws, name, p->home.path, sizeof(p->home.path))) != VMENC_OK)
        goto fail;
    s = home_keys(p->home.path, name, &p->vm_keys, p->uuid);
    if (s == VMENC_E_NOT_FOUND) {
        s = VMENC_OK; /* no configuration (a half-made VM): nothing names a key */
    } else if (s != VMENC_OK) {
        msgf(r.message, sizeof(r.message), "cannot read the configuration of \"%s\": %s", name, vmenc_strerror(s));
        goto fail;
    }
    if (p->uuid[0] != '\0' && ws->host->control != NULL) {
        /* The authority record names the VM key's KEK: that is the truth. */
        ctl_vm_record rec;
        if (ctl_store_get_vm(ws->host->control, p->uuid, &rec) == VMENC_OK)
            keys_add(&p->vm_keys, rec.facts.kek_provider, rec.facts.kek_id);
    }
    if (p->vm_keys.n > 0) {
        snprintf(r.key_provider, sizeof(r.key_provider), "%s", p->vm_keys.v[0].alias);
        snprintf(r.kek_id, sizeof(r.kek_id), "%s", p->vm_keys.v[0].id);
    }
    if ((s = home_scan(&p->home, r.message, sizeof(r.message))) != VMENC_OK)
        goto fail;
    if (!keep_files) {
        r.num_files = (uint32_t)p->home.num_files;
        r.num_bytes = p->home.num_bytes;
    }
    plan_keys(ws, name, p, destroy, &r);
    if (dry) {
        (void)audit_outcome(ws, principal, "vm.delete", name, r.key_provider, r.kek_id, VMENC_AUDIT_SUCCESS,
                            VMENC_OK, "dry run: nothing changed");
        goto done;
    }
    /* 3. nobody else has a file of it open */
    if ((s = home_lock(&p->home, vmenc_host_id(ws->host), "vm.delete", r.message, sizeof(r.message))) != VMENC_OK)
        goto fail;
    /* 4. the keys first: a provider that cannot destroy fails the call
     * before any file goes */
    for (size_t i = 0; i < p->vm_keys.n; i++) {
        const lc_kek *k = &p->vm_keys.v[i];
        if (!p->destroy[i]) {
            if (destroy)
                (void)audit_outcome(ws, principal, "kms.destroy_key", name, k->alias, k->id, VMENC_AUDIT_SUCCESS,
                                    VMENC_OK, "kept: still in use");
            continue;
        }
        s = vmenc_keymgr_destroy_kek(ws->keymgr, k->alias, k->id, LC_TIMEOUT_MS);
        (void)audit_outcome(ws, principal, "kms.destroy_key", name, k->alias, k->id,
                            s == VMENC_OK ? VMENC_AUDIT_SUCCESS : VMENC_AUDIT_FAILED, s,
                            s == VMENC_OK ? "destroyed: the VM is deleted" : NULL);
        if (s != VMENC_OK) {
            msgf(r.message, sizeof(r.message), "key provider \"%s\" could not destroy KEK %s: %s%s", k->alias,
                     k->id, vmenc_strerror(s), i > 0 ? " (keys before it were destroyed)" : "");
            r.num_keys_destroyed = 0;
            for (size_t j = 0; j < i; j++)
                r.num_keys_destroyed += p->destroy[j];
            goto fail;
        }
    }
    /* 5. the files, 6. the authority record, 7. the inventory entry */
    if (!keep_files && (s = home_remove(&p->home, ws->sync, r.message, sizeof(r.message))) != VMENC_OK)
        goto fail;
    if ((s = forget_record(ws, p->uuid)) != VMENC_OK) {
        msgf(r.message, sizeof(r.message), "cannot remove the authority record of %s: %s", p->uuid,
                 vmenc_strerror(s));
        goto fail;
    }
    if ((s = vmenc_policy_remove_object(ws->policy, name)) != VMENC_OK && s != VMENC_E_NOT_FOUND) {
        msgf(r.message, sizeof(r.message), "cannot remove \"%s\" from the inventory: %s", name,
                 vmenc_strerror(s));
        goto fail;
    }
    s = audit_outcome(ws, principal, "vm.delete", name, r.key_provider, r.kek_id, VMENC_AUDIT_SUCCESS, VMENC_OK,
                      keep_files ? "files kept" : NULL);
done:
    home_release(&p->home);
    free(p);
    copy_result(out_result, &r);
    return s;
fail:
    home_release(&p->home);
    free(p);
    return delete_fail(ws, principal, name, &r, out_result, s);
}

vmenc_status vmenc_workspace_unregister_vm(vmenc_workspace *ws, const char *principal, const char *name) {
    VMENC_ENSURE(ws != NULL && name != NULL, VMENC_E_INVALID_ARG);
    char msg[VMENC_WORKSPACE_MESSAGE_MAX] = "";
    vmenc_status s = VMENC_OK;
    if (!vm_principal_ok(principal))
        s = VMENC_E_INVALID_ARG;
    else if (vm_vm_name_check(name) != VMENC_OK)
        s = VMENC_E_BAD_PATH;
    if (s != VMENC_OK) {
        (void)audit_outcome(ws, principal, "vm.unregister", name, NULL, NULL, VMENC_AUDIT_FAILED, s, NULL);
        return s;
    }
    VMENC_GUARD(require_priv(ws, principal, name, VMENC_PRIV_VM_UNREGISTER, "vm.unregister", name, msg,
                             sizeof(msg)));
    lc_plan *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return VMENC_E_NOMEM;
    p->home.dirfd = -1;
    lc_keys *k = &p->vm_keys;
    if ((s = vmenc_workspace_vm_home(ws, name, p->home.path, sizeof(p->home.path))) == VMENC_OK) {
        s = home_keys(p->home.path, name, k, p->uuid);
        if (s == VMENC_E_NOT_FOUND)
            s = VMENC_OK;
    }
    if (s == VMENC_OK)
        s = home_scan(&p->home, msg, sizeof(msg));
    if (s == VMENC_OK)
        s = home_lock(&p->home, vmenc_host_id(ws->host), "vm.unregister", msg, sizeof(msg));
    if (s == VMENC_OK)
        s = forget_record(ws, p->uuid);
    if (s == VMENC_OK && (s = vmenc_policy_remove_object(ws->policy, name)) == VMENC_E_NOT_FOUND)
        s = VMENC_OK;
    const char *prov = k->n > 0 ? k->v[0].alias : NULL, *id = k->n > 0 ? k->v[0].id : NULL;
    vmenc_status as = audit_outcome(ws, principal, "vm.unregister", name, prov, id,
                                    s == VMENC_OK ? VMENC_AUDIT_SUCCESS : VMENC_AUDIT_FAILED, s,
                                    s == VMENC_OK ? "files and keys kept" : msg);
    home_release(&p->home);
    free(p);
    return s != VMENC_OK ? s : as;
}

/* ---- create with disks ------------------------------------------------------------ */

#define VM_SPEC_V1_SIZE (offsetof(vmenc_workspace_vm_spec, flags) + sizeof(uint32_t))

static vmenc_status spec_check(const vmenc_workspace_vm_spec *spec, vmenc_workspace_error *err) {
    if (spec->flags != 0)
        return ws_set_error(err, VMENC_E_INVALID_ARG, "", 0, "unknown flags 0x%x", spec->flags);
    if (vm_vm_name_check(spec->name) != VMENC_OK)
        return ws_set_error(err, VMENC_E_BAD_PATH, "", 0, "\"%s\" is not a VM name", spec->name ? spec->name : "");
    uint32_t ss = spec->sector_size != 0 ? spec->sector_size : 512u;
    if (ss != 512u && ss != 4096u)
        return ws_set_error(err, VMENC_E_INVALID_ARG, "", 0, "sector size %u: 512 or 4096", spec->sector_size);
    if (spec->num_disks > VMENC_VM_MAX_DISKS)
        return ws_set_error(err, VMENC_E_LIMIT, "", 0, "%zu disks: at most %u", spec->num_disks,
                            (unsigned)VMENC_VM_MAX_DISKS);
    if (spec->num_disks > 0 && spec->disk_capacities == NULL)
        return ws_set_error(err, VMENC_E_INVALID_ARG, "", 0, "%zu disks but no sizes", spec->num_disks);
    for (size_t i = 0; i < spec->num_disks; i++) {
        uint64_t c = spec->disk_capacities[i];
        if (c == 0 || c % ss != 0)
            return ws_set_error(err, VMENC_E_INVALID_ARG, "", 0,
                                "disk %zu: %llu bytes is not a positive multiple of the %u-byte sector", i,
                                (unsigned long long)c, ss);
        if (c > VMENC_DISK_MAX_CAPACITY)
            return ws_set_error(err, VMENC_E_INVALID_ARG, "", 0, "disk %zu: %llu bytes is more than the %llu-byte maximum",
                                i, (unsigned long long)c, (unsigned long long)VMENC_DISK_MAX_CAPACITY);
    }
    return VMENC_OK;
}

/* undo_create removes what a failed create_vm made (the VM object is
 * freed): its files, its record, its inventory entry. */
static void undo_create(vmenc_workspace *ws, const char *principal, const char *name, const char *why) {
    lc_plan *p = calloc(1, sizeof(*p));
    vmenc_status s = VMENC_E_NOMEM;
    char msg[VMENC_WORKSPACE_MESSAGE_MAX] = "";
    if (p != NULL) {
        p->home.dirfd = -1;
        s = vmenc_workspace_vm_home(ws, name, p->home.path, sizeof(p->home.path));
        if (s == VMENC_OK && (s = home_keys(p->home.path, name, &p->vm_keys, p->uuid)) == VMENC_E_NOT_FOUND)
            s = VMENC_OK;
        if (s == VMENC_OK)
            s = home_scan(&p->home, msg, sizeof(msg));
        if (s == VMENC_OK)
            s = home_lock(&p->home, vmenc_host_id(ws->host), "vm.create_rollback", msg, sizeof(msg));
        if (s == VMENC_OK)
            s = home_remove(&p->home, ws->sync, msg, sizeof(msg));
        if (s == VMENC_OK)
            s = forget_record(ws, p->uuid);
        if (s == VMENC_OK && (s = vmenc_policy_remove_object(ws->policy, name)) == VMENC_E_NOT_FOUND)
            s = VMENC_OK;
        home_release(&p->home);
        free(p);
    }
    if (msg[0] == '\0')
        msgf(msg, sizeof(msg), "undone after: %s", why);
    (void)audit_outcome(ws, principal, "vm.create_rollback", name, NULL, NULL,
                        s == VMENC_OK ? VMENC_AUDIT_SUCCESS : VMENC_AUDIT_FAILED, s, msg);
}

vmenc_status vmenc_workspace_create_vm(vmenc_workspace *ws, const char *principal,
                                       const vmenc_workspace_vm_spec *spec, vmenc_workspace_error *err,
                                       vmenc_vm **out) {
    VMENC_ENSURE(ws != NULL && spec != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(spec->struct_size >= VM_SPEC_V1_SIZE, VMENC_E_ABI_VERSION);
    VMENC_ENSURE(err == NULL || err->struct_size >= sizeof(*err), VMENC_E_ABI_VERSION);
    VMENC_GUARD(spec_check(spec, err));
    char home[PATH_MAX];
    VMENC_GUARD(vmenc_workspace_vm_home(ws, spec->name, home, sizeof(home)));
    vmenc_vm_create_options o = {.struct_size = sizeof(o), .principal = principal, .home_dir = home,
                                 .name = spec->name,
                                 .folder = spec->folder != NULL ? spec->folder : vmenc_workspace_folder(ws),
                                 .storage_policy = spec->storage_policy, .kek_id = spec->kek_id,
                                 .memory_bytes = spec->memory_bytes};
    vmenc_vm *vm = NULL;
    vmenc_status s = vmenc_vm_create(ws->host, &o, &vm);
    if (s != VMENC_OK)
        return ws_set_error(err, s, home, 0, "cannot create VM \"%s\": %s", spec->name, vmenc_strerror(s));
    for (size_t i = 0; i < spec->num_disks; i++) {
        vmenc_disk_create_options d = {.struct_size = sizeof(d), .capacity = spec->disk_capacities[i],
                                       .sector_size = spec->sector_size};
        if ((s = vmenc_vm_add_disk(vm, principal, &d, NULL, 0)) != VMENC_OK) {
            vmenc_vm_free(vm);
            char why[160];
            msgf(why, sizeof(why), "disk %zu (%llu bytes) could not be added: %s", i,
                     (unsigned long long)spec->disk_capacities[i], vmenc_strerror(s));
            undo_create(ws, principal, spec->name, why);
            return ws_set_error(err, s, home, 0, "cannot create VM \"%s\": %s; nothing was kept", spec->name, why);
        }
    }
    if (out != NULL)
        *out = vm;
    else
        vmenc_vm_free(vm);
    return VMENC_OK;
}
