/*
 * tools/vmenc/cmd_vm.c - `vmenc vm ...`, `vmenc disk ...`, `vmenc file ...`.
 *
 * Disks that hold data are converted in place by the library
 * (vmenc_vm_apply_storage_policy_ex, vmenc_vm_rekey_deep, vmenc_vm_resume);
 * the progress callback draws the bar and stops the conversion cleanly on
 * Ctrl-C (the conversion stays resumable).
 *
 * A VM whose disk a running process serves (the nbdkit plugin) is not
 * converted here: `vm encrypt|decrypt|rekey --deep` first look for its
 * control endpoint, WORKSPACE/run/<VM-UUID>.ctl, and if one answers, ask
 * that process to convert online and stream its progress
 * (integrations/control, docs/nbdkit.md "Control endpoint"). --offline
 * skips the endpoint.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ctl_sock.h"
#include "plan.h"

#define IO_CHUNK (1u << 20)

/* lock_why: ": <who holds it>" when |st| is an image-lock refusal of |vm|
 * (docs/vm.md "Locks"); ": <the file and what recovers it>" when a file of
 * the home (a lost or damaged .cvt) made an open or resume fail
 * (vmenc_vm_get_error_detail); else "". Call before freeing |vm|. */
static const char *lock_why(vmenc_vm *vm, vmenc_status st, char *buf, size_t cap) {
    vmenc_lock_holder h = {.struct_size = sizeof(h)};
    char detail[640];
    buf[0] = '\0';
    if (st == VMENC_E_LOCKED && vm != NULL && vmenc_vm_get_lock_holder(vm, &h) == VMENC_OK)
        snprintf(buf, cap, ": %s", h.message);
    else if ((st == VMENC_E_AUTH || st == VMENC_E_INTERRUPTED || st == VMENC_E_BAD_VERSION) && vm != NULL &&
             vmenc_vm_get_error_detail(vm, detail, sizeof(detail)) == VMENC_OK)
        snprintf(buf, cap, ": %s", detail);
    return buf;
}

int open_vm(cli *c, const char *name, vmenc_vm **out, bool allow_locked) {
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    vmenc_vm *vm = NULL;
    vmenc_status st = vmenc_workspace_open_vm(c->ws, cli_principal(c), name, &vm);
    if (st == VMENC_E_VM_LOCKED && allow_locked) {
        *out = vm;
        return EXIT_OK;
    }
    if (st != VMENC_OK) {
        char why[VMENC_LOCK_MESSAGE_MAX + 2];
        lock_why(vm, st, why, sizeof(why));
        vmenc_vm_free(vm);
        char home[1024];
        struct stat sb;
        if (st == VMENC_E_NOT_FOUND && vmenc_workspace_vm_home(c->ws, name, home, sizeof(home)) == VMENC_OK &&
            stat(home, &sb) == 0 && S_ISDIR(sb.st_mode))
            return cli_fail(c, st, "cannot open VM '%s': it is not registered on this host (its home %s is in the "
                            "datastore: 'vmenc vm register %s' adds it)", name, home, name);
        if (st == VMENC_E_NOT_FOUND)
            return cli_fail(c, st, "cannot open VM '%s': no such VM here ('vmenc vm list' shows them)", name);
        if (st == VMENC_E_DENIED)
            return cli_fail(c, st, "cannot open VM '%s'%s", name, why_denied(c, VMENC_OP_POWER_ON, name, false, why,
                                                                             sizeof(why)));
        return cli_fail(c, st, "cannot open VM '%s'%s", name, why);
    }
    *out = vm;
    return EXIT_OK;
}

const char *disk_state_name(vmenc_disk_state s) {
    switch (s) {
    case VMENC_DISK_ENCRYPTED: return "encrypted";
    case VMENC_DISK_ENCRYPTING: return "encrypting";
    case VMENC_DISK_DECRYPTING: return "decrypting";
    case VMENC_DISK_REKEYING: return "rekeying";
    default: return "plain";
    }
}

/* ---- in-place conversions: progress, Ctrl-C, JSON ------------------------------------ */

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void conv_init(conv_ctx *x, cli *c, const char *what) {
    memset(x, 0, sizeof(*x));
    x->c = c;
    x->what = what;
    x->t_last = mono_s();
    const char *d = getenv("VMENC_TEST_PROGRESS_DELAY_MS"); /* tests only: a slow conversion to interrupt */
    x->delay_ms = d ? (unsigned)strtoul(d, NULL, 10) : 0;
}

static const char *conv_verb(vmenc_disk_state s, const char *fallback) {
    switch (s) {
    case VMENC_DISK_ENCRYPTING: return "encrypt";
    case VMENC_DISK_DECRYPTING: return "decrypt";
    case VMENC_DISK_REKEYING: return "rekey";
    default: return fallback;
    }
}

/* conv_progress is the library's progress callback: one bar per disk; a
 * nonzero return (after Ctrl-C) stops the conversion between steps. */
int conv_progress(void *ctx, const char *disk_id, const vmenc_convert_progress *pr) {
    conv_ctx *x = ctx;
    conv_disk *d = x->n ? &x->d[x->n - 1] : NULL;
    if (d == NULL || strcmp(d->id, disk_id) != 0) {
        progress_end(x->p);
        x->p = NULL;
        if (x->n == sizeof(x->d) / sizeof(x->d[0]))
            return g_interrupted ? 1 : 0;
        d = &x->d[x->n++];
        snprintf(d->id, sizeof(d->id), "%s", disk_id);
        d->t0 = x->t_last; /* the first callback comes after the first step */
        char label[48];
        snprintf(label, sizeof(label), "%s %s", conv_verb(pr->state, x->what), disk_id);
        x->p = progress_start(x->c, label, pr->bytes_total);
    }
    d->bytes_total = pr->bytes_total;
    d->bytes_done = pr->bytes_done;
    d->done = pr->done != 0;
    x->t_last = mono_s();
    d->seconds = x->t_last - d->t0;
    snprintf(d->kind, sizeof(d->kind), "%s", conv_verb(pr->state, x->what));
    progress_set_rate(x->p, (double)pr->bytes_per_second);
    progress_update(x->p, pr->bytes_done);
    if (x->delay_ms && !pr->done && !g_interrupted) {
        struct timespec ts = {.tv_sec = x->delay_ms / 1000, .tv_nsec = (long)(x->delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL); /* a signal cuts it short */
    }
    return g_interrupted ? 1 : 0;
}

void conv_end(conv_ctx *x) {
    progress_end(x->p);
    x->p = NULL;
}

void conv_out(out_t *o, const conv_ctx *x) {
    out_arr(o, "conversions");
    for (size_t i = 0; i < x->n; i++) {
        out_obj(o, NULL);
        out_str(o, "disk", x->d[i].id);
        out_str(o, "kind", x->d[i].kind);
        out_u64(o, "bytes_done", x->d[i].bytes_done);
        out_u64(o, "bytes_total", x->d[i].bytes_total);
        out_bool(o, "done", x->d[i].done);
        out_double(o, "seconds", x->d[i].seconds);
        out_close(o);
    }
    out_close(o);
}

static bool parse_segment(cli *c, args *a, uint64_t *out) {
    const char *seg = NULL;
    *out = 0;
    if (arg_value(c, a, "--segment", &seg) && (!parse_size(seg, out) || *out == 0)) {
        cli_usage(c, "bad --segment size '%s' (a multiple of 1M, 1M..1G)", seg);
        return false;
    }
    return true;
}

void out_vm_status(out_t *o, vmenc_vm *vm) {
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    if (vmenc_vm_get_info(vm, &info) != VMENC_OK)
        return;
    out_str(o, "name", info.name);
    out_str(o, "uuid", info.uuid);
    out_bool(o, "encrypted", info.encrypted);
    out_bool(o, "locked", info.locked);
    out_str(o, "key_provider", info.key_provider);
    out_str(o, "kek_id", info.kek_id);
    out_str(o, "storage_policy", info.storage_policy);
    out_arr(o, "disks");
    for (uint32_t i = 0; i < info.num_disks; i++) {
        vmenc_disk_info d = {.struct_size = sizeof(d)};
        if (vmenc_vm_get_disk_info(vm, i, &d) != VMENC_OK)
            continue;
        out_obj(o, NULL);
        out_str(o, "id", d.disk_id);
        out_str(o, "file", d.file_name);
        out_u64(o, "capacity", d.capacity);
        out_u64(o, "sector_size", d.sector_size);
        out_str(o, "state", disk_state_name(d.state));
        out_str(o, "key_provider", d.key_provider);
        out_str(o, "kek_id", d.kek_id);
        out_bool(o, "locked", d.locked);
        out_close(o);
    }
    out_close(o);
    out_arr(o, "missing_keys");
    for (uint32_t i = 0; i < info.num_missing_keys; i++) {
        char alias[VMENC_PROVIDER_ALIAS_MAX + 1], id[VMENC_KMS_KEY_ID_CAP];
        vmenc_status why = VMENC_OK;
        if (vmenc_vm_get_missing_key(vm, i, alias, sizeof(alias), id, sizeof(id), &why) != VMENC_OK)
            continue;
        out_obj(o, NULL);
        out_str(o, "key_provider", alias);
        out_str(o, "kek_id", id);
        out_str(o, "status", vmenc_status_name(why));
        out_close(o);
    }
    out_close(o);
}

/* ---- vm ------------------------------------------------------------------------- */

static int vm_create(cli *c, args *a) {
    const char *policy = NULL, *folder = NULL, *kek = NULL, *mem = NULL, *sector = NULL, *sizes[VMENC_VM_MAX_DISKS];
    (void)arg_value(c, a, "--policy", &policy);
    (void)arg_value(c, a, "--folder", &folder);
    (void)arg_value(c, a, "--kek", &kek);
    (void)arg_value(c, a, "--memory", &mem);
    (void)arg_value(c, a, "--sector", &sector);
    size_t nd = arg_values(c, a, "--disk", sizes, VMENC_VM_MAX_DISKS);
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "vm create needs NAME");
    uint64_t memory = 0, ss = 0, caps[VMENC_VM_MAX_DISKS];
    if ((mem && !parse_size(mem, &memory)) || (sector && !parse_size(sector, &ss)))
        return cli_usage(c, "bad --memory or --sector");
    if (ss != 0 && ss != 512 && ss != 4096)
        return cli_usage(c, "--sector takes 512 or 4096");
    /* Every disk is checked before anything is created: a create that
     * fails leaves nothing behind. */
    for (size_t i = 0; i < nd; i++)
        if (!parse_size(sizes[i], &caps[i]) || caps[i] == 0 || caps[i] % (ss ? ss : 512) != 0 ||
            caps[i] > VMENC_DISK_MAX_CAPACITY)
            return cli_usage(c, "bad --disk size '%s': a positive multiple of the %llu-byte sector (e.g. 256M, 10G)",
                             sizes[i], (unsigned long long)(ss ? ss : 512));
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    /* All or nothing (the library's create with its disks): a step that
     * fails later - a denied disk, a full file system - leaves no VM behind,
     * so a retry with the same name works. */
    vmenc_workspace_vm_spec spec = {.struct_size = sizeof(spec), .name = name, .folder = folder,
                                    .storage_policy = policy, .kek_id = kek, .memory_bytes = memory,
                                    .disk_capacities = caps, .num_disks = nd, .sector_size = (uint32_t)ss};
    vmenc_workspace_error werr = {.struct_size = sizeof(werr)};
    vmenc_vm *vm = NULL;
    vmenc_status st = vmenc_workspace_create_vm(c->ws, cli_principal(c), &spec, &werr, &vm);
    if (st != VMENC_E_UNIMPLEMENTED) {
        if (st != VMENC_OK) {
            int frc = fail_storage_policy(c, st, policy, "cannot create VM");
            if (frc >= 0)
                return frc;
            return cli_fail(c, st, "cannot create VM '%s'%s%s", name, werr.message[0] ? ": " : "", werr.message);
        }
        out_t *r = out_begin(c);
        out_bool(r, "ok", true);
        out_vm_status(r, vm);
        out_end(r);
        vmenc_vm_free(vm);
        return EXIT_OK;
    }
    char home[1024];
    st = vmenc_workspace_vm_home(c->ws, name, home, sizeof(home));
    if (st != VMENC_OK)
        return cli_fail(c, st, "bad VM name '%s'", name);
    vmenc_vm_create_options o = {.struct_size = sizeof(o), .principal = cli_principal(c), .home_dir = home,
                                 .name = name, .folder = folder ? folder : vmenc_workspace_folder(c->ws),
                                 .storage_policy = policy, .kek_id = kek, .memory_bytes = memory};
    st = vmenc_vm_create(vmenc_workspace_host(c->ws), &o, &vm);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot create VM '%s'", name);
    for (size_t i = 0; rc == EXIT_OK && i < nd; i++) {
        vmenc_disk_create_options d = {.struct_size = sizeof(d), .capacity = caps[i], .sector_size = (uint32_t)ss};
        st = vmenc_vm_add_disk(vm, cli_principal(c), &d, NULL, 0);
        if (st != VMENC_OK)
            rc = cli_fail(c, st, "cannot add disk %zu (%s) to '%s'", i, sizes[i], name);
    }
    if (rc == EXIT_OK) {
        out_t *r = out_begin(c);
        out_bool(r, "ok", true);
        out_vm_status(r, vm);
        out_end(r);
    }
    vmenc_vm_free(vm);
    return rc;
}

typedef struct list_ctx {
    cli *c;
    out_t *o;
    int locked, denied;
} list_ctx;

static int list_one(void *ctx, const char *name) {
    list_ctx *l = ctx;
    vmenc_vm *vm = NULL;
    vmenc_status st = vmenc_workspace_open_vm(l->c->ws, cli_principal(l->c), name, &vm);
    out_obj(l->o, NULL);
    if (vm != NULL && (st == VMENC_OK || st == VMENC_E_VM_LOCKED)) {
        vmenc_vm_info info = {.struct_size = sizeof(info)};
        if (vmenc_vm_get_info(vm, &info) == VMENC_OK) {
            out_str(l->o, "name", info.name);
            out_str(l->o, "uuid", info.uuid);
            out_bool(l->o, "encrypted", info.encrypted);
            out_bool(l->o, "locked", info.locked);
            out_u64(l->o, "disks", info.num_disks);
            out_str(l->o, "storage_policy", info.storage_policy);
        }
        l->locked += st == VMENC_E_VM_LOCKED;
    } else {
        out_str(l->o, "name", name);
        /* a home in the datastore that is not in the inventory: unregistered
         * (or migrated away); 'vm register' adds it again */
        out_bool(l->o, "registered", st != VMENC_E_NOT_FOUND);
        out_str(l->o, "error", vmenc_status_name(st));
        l->denied++;
    }
    out_close(l->o);
    vmenc_vm_free(vm);
    return 0;
}

static int vm_list(cli *c, args *a) {
    if (!arg_done(c, a))
        return EXIT_USAGE;
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    list_ctx l = {.c = c, .o = out_begin(c)};
    out_bool(l.o, "ok", true);
    out_arr(l.o, "vms");
    vmenc_status st = vmenc_workspace_foreach_vm(c->ws, list_one, &l);
    out_close(l.o);
    out_end(l.o);
    return st == VMENC_OK ? EXIT_OK : cli_fail(c, st, "cannot list the datastore");
}

static int vm_status(cli *c, args *a) {
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "vm status needs NAME");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, true);
    if (rc != EXIT_OK)
        return rc;
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    bool locked = vmenc_vm_get_info(vm, &info) == VMENC_OK && info.locked;
    out_t *o = out_begin(c);
    out_bool(o, "ok", !locked);
    out_vm_status(o, vm);
    out_end(o);
    vmenc_vm_free(vm);
    if (locked)
        fprintf(stderr, "vmenc: VM '%s' is locked: %u key(s) cannot be fetched (VMENC_E_VM_LOCKED)\n", name,
                info.num_missing_keys);
    return locked ? EXIT_UNAVAILABLE : EXIT_OK;
}

static int vm_unlock(cli *c, args *a) {
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "vm unlock needs NAME");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, true);
    if (rc != EXIT_OK)
        return rc;
    vmenc_status st = vmenc_vm_unlock(vm, cli_principal(c));
    out_t *o = out_begin(c);
    out_bool(o, "ok", st == VMENC_OK);
    out_vm_status(o, vm);
    out_end(o);
    vmenc_vm_free(vm);
    return st == VMENC_OK ? EXIT_OK : cli_fail_stderr(c, st, "VM '%s' is still locked", name);
}

/* ---- online: through the control endpoint of the process serving the VM -------------- */

/* ctl_find connects to the live control endpoint of |vm|, if any: -1 when
 * there is none (no run directory, no socket, or a dead process's socket,
 * which is removed). The endpoint's process must run as this user or root. */
static int ctl_find(cli *c, vmenc_vm *vm, pid_t *out_pid) {
    char err[512], name[64];
    int dirfd = ctl_run_dir_open(vmenc_workspace_dir(c->ws), 0, err, sizeof(err));
    if (dirfd < 0) {
        if (errno != ENOENT)
            cli_info(c, "warning: control endpoints not looked for: %s", err);
        return -1;
    }
    int fd = -1;
    if (ctl_sock_name(vmenc_vm_uuid(vm), name, sizeof(name)) == 0) {
        fd = ctl_connect_at(dirfd, name);
        if (fd < 0 && errno == ECONNREFUSED)
            (void)unlinkat(dirfd, name, 0); /* its process died */
    }
    close(dirfd);
    uid_t uid = 0;
    if (fd >= 0 && (ctl_peer(fd, &uid, out_pid) != 0 || (uid != geteuid() && uid != 0))) {
        cli_info(c, "warning: ignoring the control endpoint of VM '%s': its process runs as uid %d",
                 vmenc_vm_name(vm), (int)uid);
        close(fd);
        fd = -1;
    }
    return fd;
}

/* served_hint: after a local conversion refused because nbdkit holds the
 * disk, say how to convert it through that process instead. */
static void served_hint(cli *c, vmenc_vm *vm, vmenc_status st, bool offline, const char *name) {
    vmenc_lock_holder h = {.struct_size = sizeof(h)};
    if (st != VMENC_E_LOCKED || vm == NULL || vmenc_vm_get_lock_holder(vm, &h) != VMENC_OK ||
        strcmp(h.program, "nbdkit") != 0)
        return;
    cli_info(c, "hint: VM '%s' is served by nbdkit (pid %lld); %s", name, (long long)h.pid,
             offline ? "without --offline the conversion runs online in that process, through its control endpoint"
                     : "it offers no control endpoint here (started with control=off or control=PATH?)");
}

static vmenc_disk_state converting_state(uint8_t kind) {
    return kind == CTL_KIND_RESUME    ? VMENC_DISK_PLAIN /* the bar says "resume" */
           : kind == CTL_KIND_ENCRYPT ? VMENC_DISK_ENCRYPTING
           : kind == CTL_KIND_DECRYPT ? VMENC_DISK_DECRYPTING
                                      : VMENC_DISK_REKEYING;
}

/* online_convert runs conversion |kind| of VM |name| through the process
 * that serves it, if one does. Returns -1 when none does (convert here),
 * else the exit code. |*vm| is freed and reopened for the result. */
static int online_convert(cli *c, vmenc_vm **vm, const char *name, uint8_t kind, const char *policy, uint64_t seg,
                          const char *what) {
    pid_t pid = 0;
    ctl_conn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL)
        return cli_fail(c, VMENC_E_NOMEM, "out of memory");
    conn->fd = ctl_find(c, *vm, &pid);
    if (conn->fd < 0) {
        free(conn);
        return -1;
    }
    ctl_msg rq = {.type = CTL_CONVERT, .kind = kind, .segment = seg};
    ctl_set(rq.principal, sizeof(rq.principal), cli_principal(c));
    ctl_set(rq.vm, sizeof(rq.vm), name);
    ctl_set(rq.uuid, sizeof(rq.uuid), vmenc_vm_uuid(*vm));
    ctl_set(rq.policy, sizeof(rq.policy), policy);
    cli_info(c, "vm %s: served by process %d: converting online through its control endpoint", name, (int)pid);
    conv_ctx x;
    conv_init(&x, c, what);
    ctl_msg m = {0};
    bool got = false, cancel_sent = false;
    ctl_io io = ctl_send(conn, &rq);
    while (io == CTL_IO_OK || io == CTL_IO_TIMEOUT) {
        if (g_interrupted && !cancel_sent) {
            ctl_msg cm = {.type = CTL_CANCEL};
            ctl_set(cm.principal, sizeof(cm.principal), cli_principal(c));
            cancel_sent = ctl_send(conn, &cm) == CTL_IO_OK;
        }
        io = ctl_recv(conn, &m, 200, NULL);
        if (io == CTL_IO_OK && m.type == CTL_PROGRESS && m.disk[0] != '\0') {
            vmenc_convert_progress p = {.struct_size = sizeof(p), .state = converting_state(m.kind),
                                        .bytes_done = m.bytes_done, .bytes_total = m.bytes_total,
                                        .bytes_per_second = m.bytes_per_second, .done = m.done};
            (void)conv_progress(&x, m.disk, &p);
        } else if (io == CTL_IO_OK && m.type == CTL_RESULT) {
            got = true;
            break;
        }
    }
    conv_end(&x);
    close(conn->fd);
    free(conn);
    if (!got)
        return cli_fail(c, VMENC_E_IO, "cannot %s VM '%s' online: process %d closed its control endpoint without "
                                      "a result", what, name, (int)pid);
    vmenc_status st = (vmenc_status)m.status;
    if (st == VMENC_E_INTERRUPTED && cancel_sent)
        return cli_interrupted(c, "interrupted: the online conversion of '%s' stopped cleanly and is resumable: "
                                  "'vmenc vm %s %s' again finishes it", name, what, name);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot %s VM '%s' online (process %d, which serves it): %s", what, name, (int)pid,
                        m.message);
    /* the result, as the serving process left it */
    vmenc_vm_free(*vm);
    *vm = NULL;
    vmenc_status os = vmenc_workspace_open_vm(c->ws, cli_principal(c), name, vm);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_bool(o, "online", true);
    out_int(o, "server_pid", pid);
    if (os == VMENC_OK)
        out_vm_status(o, *vm);
    conv_out(o, &x);
    out_end(o);
    return EXIT_OK;
}

static int apply_policy(cli *c, args *a, const char *def, const char *what) {
    const char *policy = NULL;
    uint64_t seg = 0;
    (void)arg_value(c, a, "--policy", &policy);
    bool offline = arg_flag(a, "--offline");
    bool dry = arg_flag(a, "--dry-run");
    if (!parse_segment(c, a, &seg))
        return EXIT_USAGE;
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "vm %s needs NAME", what);
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    /* The plan: printed by --dry-run, summarised by the confirmation of a
     * decryption, and a misspelt policy named before anything happens. */
    storage_plan_t *plan = calloc(1, sizeof(*plan));
    vmenc_status ps = plan ? storage_plan(c, vm, policy ? policy : def, plan) : VMENC_E_NOMEM;
    char msg[256];
    snprintf(msg, sizeof(msg), "cannot %s VM '%s'", what, name);
    int frc = fail_storage_policy(c, ps, policy ? policy : def, msg);
    if (frc >= 0 || (dry && ps != VMENC_OK)) {
        free(plan);
        vmenc_vm_free(vm);
        return frc >= 0 ? frc : cli_fail(c, ps, "cannot plan storage policy '%s' for VM '%s'", policy ? policy : def,
                                         name);
    }
    if (dry) {
        storage_plan_out(c, plan, name);
        free(plan);
        vmenc_vm_free(vm);
        return EXIT_OK;
    }
    if (strcmp(what, "decrypt") == 0) {
        /* Ask unless the plan says nothing would be decrypted; a plan that
         * could not be made asks too (with a plainer sentence). */
        int ndec = 0;
        bool home = false;
        if (ps == VMENC_OK)
            (void)storage_plan_bytes(plan, &ndec, &home, true);
        vmenc_vm_info vi = {.struct_size = sizeof(vi)};
        bool enc = vmenc_vm_get_info(vm, &vi) == VMENC_OK && vi.encrypted;
        if ((ps != VMENC_OK || ndec > 0 || home) && !would_be_denied(c, VMENC_OP_DECRYPT_VM, name, enc)) {
            char sum[1024];
            if (ps == VMENC_OK)
                storage_plan_summary(plan, what, name, sum, sizeof(sum));
            else
                snprintf(sum, sizeof(sum), "vm decrypt: VM '%s' gets storage policy '%s': whatever it has encrypted "
                         "will be decrypted in place, in clear on the datastore", name, policy ? policy : def);
            rc = cli_confirm(c, sum);
            if (rc != EXIT_OK) {
                free(plan);
                vmenc_vm_free(vm);
                return rc;
            }
        }
    }
    free(plan);
    if (!offline) {
        rc = online_convert(c, &vm, name, strcmp(what, "encrypt") == 0 ? CTL_KIND_ENCRYPT : CTL_KIND_DECRYPT,
                            policy, seg, what);
        if (rc >= 0) {
            vmenc_vm_free(vm);
            return rc;
        }
        rc = EXIT_OK;
    }
    conv_ctx x;
    conv_init(&x, c, what);
    vmenc_apply_options ao = {.struct_size = sizeof(ao), .progress = conv_progress, .progress_ctx = &x,
                              .segment_bytes = seg};
    vmenc_status st = vmenc_vm_apply_storage_policy_ex(vm, cli_principal(c), policy ? policy : def, &ao);
    conv_end(&x);
    if (st == VMENC_E_INTERRUPTED && g_interrupted) {
        vmenc_vm_free(vm);
        return cli_interrupted(c, "interrupted: the conversion of '%s' stopped cleanly and is resumable: "
                                  "'vmenc vm resume %s' (or 'vmenc vm %s %s' again) finishes it and the rest "
                                  "of the policy", name, name, what, name);
    }
    if (st != VMENC_OK) {
        char why[VMENC_LOCK_MESSAGE_MAX + 2];
        lock_why(vm, st, why, sizeof(why));
        served_hint(c, vm, st, offline, name);
        vmenc_vm_free(vm);
        snprintf(msg, sizeof(msg), "cannot %s VM '%s'", what, name);
        frc = fail_storage_policy(c, st, policy ? policy : def, msg);
        if (frc >= 0)
            return frc;
        if (st == VMENC_E_DENIED)
            why_denied(c, strcmp(what, "encrypt") == 0 ? VMENC_OP_ENCRYPT_VM : VMENC_OP_DECRYPT_VM, name, true, why,
                       sizeof(why));
        return cli_fail(c, st, "cannot %s VM '%s' (storage policy '%s')%s", what, name, policy ? policy : def, why);
    }
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_vm_status(o, vm);
    conv_out(o, &x);
    out_end(o);
    vmenc_vm_free(vm);
    return rc;
}

static int vm_encrypt(cli *c, args *a) { return apply_policy(c, a, "VM Encryption Policy", "encrypt"); }
static int vm_decrypt(cli *c, args *a) { return apply_policy(c, a, "Datastore Default", "decrypt"); }

/* rekey_plan_out: what `vm rekey [--deep]` would change (--dry-run). */
static int rekey_plan_out(cli *c, vmenc_vm *vm, const char *name, bool deep, const char *provider, const char *kek) {
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    vmenc_status st = vmenc_vm_get_info(vm, &info);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot read VM '%s'", name);
    if (!info.encrypted)
        return cli_fail(c, VMENC_E_BAD_STATE, "cannot rekey VM '%s': it is not encrypted (encrypt it first: "
                        "'vmenc vm encrypt %s')", name, name);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_bool(o, "dry_run", true);
    out_str(o, "vm", name);
    out_str(o, "mode", deep ? "deep" : "shallow");
    out_str(o, "key_provider_now", info.key_provider);
    out_str(o, "kek_id_now", info.kek_id);
    if (deep) {
        out_str(o, "key_provider", info.key_provider);
        out_str(o, "kek_id", info.kek_id);
    } else {
        out_str(o, "key_provider", provider ? provider : info.key_provider);
        out_str(o, "kek_id", kek ? kek : "(a new KEK)");
    }
    uint64_t total = 0;
    out_arr(o, "disks");
    for (uint32_t i = 0; i < info.num_disks; i++) {
        vmenc_disk_info d = {.struct_size = sizeof(d)};
        if (vmenc_vm_get_disk_info(vm, i, &d) != VMENC_OK)
            continue;
        bool enc = d.state != VMENC_DISK_PLAIN;
        out_obj(o, NULL);
        out_str(o, "disk", d.disk_id);
        out_str(o, "state", disk_state_name(d.state));
        out_str(o, "change", !enc ? "none (plain: stays plain)" : deep ? "new DEK, data re-encrypted in place"
                                                                        : "DEK re-wrapped under the new KEK");
        out_u64(o, "bytes", deep && enc ? d.capacity : 0);
        out_close(o);
        total += deep && enc ? d.capacity : 0;
    }
    out_close(o);
    out_u64(o, "bytes_to_convert", total);
    out_str(o, "note", "dry run: nothing was changed");
    out_end(o);
    return EXIT_OK;
}

/* vm info NAME: the VM's encryption at a glance, like `qemu-img info` or
 * `cryptsetup luksDump`: cipher, sector size, key IDs, providers, key
 * generation; reads the configuration only (a locked VM too). */
static int vm_info(cli *c, args *a) {
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "vm info needs NAME");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, true);
    if (rc != EXIT_OK)
        return rc;
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    vmenc_status st = vmenc_vm_get_info(vm, &info);
    if (st != VMENC_OK) {
        vmenc_vm_free(vm);
        return cli_fail(c, st, "cannot read VM '%s'", name);
    }
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "name", info.name);
    out_str(o, "uuid", info.uuid);
    out_str(o, "home", vmenc_vm_home_dir(vm));
    out_str(o, "storage_policy", info.storage_policy);
    out_bool(o, "encrypted", info.encrypted);
    out_bool(o, "locked", info.locked);
    out_obj(o, "vm_key");
    out_str(o, "cipher", info.encrypted ? "aes-256-gcm" : "none");
    out_str(o, "protects", "configuration secrets, NVRAM, suspend and snapshot state (AES-256-GCM), "
                           "swap (XTS-AES-256, derived key)");
    out_str(o, "key_provider", info.key_provider);
    out_str(o, "kek_id", info.kek_id);
    if (info.has_key_generation)
        out_u64(o, "key_generation", info.key_generation);
    out_str(o, "wrap", info.encrypted ? "vmwk1 record under the KEK (docs/wrapped-key-format.md)" : "");
    out_close(o);
    out_arr(o, "disks");
    for (uint32_t i = 0; i < info.num_disks; i++) {
        vmenc_disk_info d = {.struct_size = sizeof(d)};
        if (vmenc_vm_get_disk_info(vm, i, &d) != VMENC_OK)
            continue;
        bool enc = d.state != VMENC_DISK_PLAIN;
        out_obj(o, NULL);
        out_str(o, "id", d.disk_id);
        out_str(o, "file", d.file_name);
        out_u64(o, "virtual_size", d.capacity);
        out_u64(o, "sector_size", d.sector_size);
        out_str(o, "state", disk_state_name(d.state));
        out_str(o, "cipher", enc ? "aes-xts-plain64" : "none");
        out_u64(o, "key_bits", enc ? 512 : 0);
        out_str(o, "key_provider", d.key_provider);
        out_str(o, "kek_id", d.kek_id);
        out_bool(o, "locked", d.locked);
        if (d.state == VMENC_DISK_ENCRYPTING || d.state == VMENC_DISK_DECRYPTING || d.state == VMENC_DISK_REKEYING) {
            vmenc_convert_progress pr = {.struct_size = sizeof(pr)};
            if (vmenc_vm_get_convert_progress(vm, d.disk_id, &pr) == VMENC_OK) {
                out_u64(o, "convert_bytes_done", pr.bytes_done);
                out_u64(o, "convert_segments_done", pr.segments_done);
                out_u64(o, "convert_segments_total", pr.segments_total);
            }
        }
        out_close(o);
    }
    out_close(o);
    out_end(o);
    vmenc_vm_free(vm);
    return EXIT_OK;
}

/* vm delete NAME: from the inventory and the datastore (the library's
 * vmenc_workspace_delete_vm), asking first. */
static int vm_delete(cli *c, args *a) {
    bool keep = arg_flag(a, "--keep-files");
    bool destroy = arg_flag(a, "--destroy-keys");
    bool dry = arg_flag(a, "--dry-run");
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "vm delete needs NAME");
    if (keep && destroy)
        return cli_usage(c, "--keep-files and --destroy-keys together would keep files nobody can read: pick one");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    uint32_t flags = (keep ? VMENC_WORKSPACE_DELETE_KEEP_FILES : 0) | (destroy ? VMENC_WORKSPACE_DELETE_DESTROY_KEYS : 0);
    vmenc_workspace_delete_result r = {.struct_size = sizeof(r)};
    /* The plan first: printed by --dry-run, summarised by the question. */
    vmenc_status st = vmenc_workspace_delete_vm(c->ws, cli_principal(c), name, flags | VMENC_WORKSPACE_DELETE_DRY_RUN, &r);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot delete VM '%s'%s%s", name, r.message[0] ? ": " : "", r.message);
    if (!dry) {
        char what[1024];
        snprintf(what, sizeof(what), "vm delete: VM '%s' will be removed from the inventory%s%s", name,
                 keep ? " (its files stay in the datastore)" : "",
                 destroy ? "; its keys used nowhere else will be DESTROYED at the key provider: no copy of its "
                           "files, backups included, can be decrypted afterwards" : "");
        size_t l = strlen(what);
        if (!keep)
            snprintf(what + l, sizeof(what) - l, "; %u file(s), %llu bytes deleted from the datastore", r.num_files,
                     (unsigned long long)r.num_bytes);
        rc = cli_confirm(c, what);
        if (rc != EXIT_OK)
            return rc;
        r = (vmenc_workspace_delete_result){.struct_size = sizeof(r)};
        st = vmenc_workspace_delete_vm(c->ws, cli_principal(c), name, flags, &r);
        if (st != VMENC_OK)
            return cli_fail(c, st, "cannot delete VM '%s'%s%s", name, r.message[0] ? ": " : "", r.message);
    }
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_bool(o, "dry_run", dry);
    out_str(o, "vm", name);
    out_bool(o, "files_deleted", !keep && !dry);
    out_u64(o, "files", r.num_files);
    out_u64(o, "bytes", r.num_bytes);
    out_str(o, "key_provider", r.key_provider);
    out_str(o, "kek_id", r.kek_id);
    out_u64(o, "keys", r.num_keys);
    out_u64(o, "keys_destroyed", r.num_keys_destroyed);
    out_u64(o, "keys_kept", r.num_keys_kept);
    if (r.message[0])
        out_str(o, "note", r.message);
    out_end(o);
    return EXIT_OK;
}

/* vm unregister NAME: out of the inventory, files and keys kept. */
static int vm_unregister(cli *c, args *a) {
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "vm unregister needs NAME");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    vmenc_status st = vmenc_workspace_unregister_vm(c->ws, cli_principal(c), name);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot unregister VM '%s'", name);
    char home[1024] = "";
    if (vmenc_workspace_vm_home(c->ws, name, home, sizeof(home)) != VMENC_OK)
        home[0] = '\0';
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "vm", name);
    out_str(o, "home", home);
    out_end(o);
    cli_info(c, "vm %s: unregistered; its files stay in %s ('vmenc vm register %s' adds it again)", name, home, name);
    return EXIT_OK;
}

static int vm_rekey(cli *c, args *a) {
    const char *provider = NULL, *kek = NULL;
    uint64_t seg = 0;
    (void)arg_value(c, a, "--provider", &provider);
    (void)arg_value(c, a, "--kek", &kek);
    bool deep = arg_flag(a, "--deep");
    bool offline = arg_flag(a, "--offline");
    bool dry = arg_flag(a, "--dry-run");
    if (!parse_segment(c, a, &seg))
        return EXIT_USAGE;
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "vm rekey needs NAME");
    if (deep && (provider || kek))
        return cli_usage(c, "vm rekey --deep keeps the KEK: --provider and --kek are for the shallow rekey");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    char known[1024];
    if (provider != NULL && !kms_known(c, provider, known, sizeof(known))) {
        vmenc_vm_free(vm);
        return cli_fail(c, VMENC_E_NO_SUCH_PROVIDER, "cannot rekey VM '%s': no key provider '%s' (configured: %s)",
                        name, provider, known);
    }
    if (dry) {
        rc = rekey_plan_out(c, vm, name, deep, provider, kek);
        vmenc_vm_free(vm);
        return rc;
    }
    if (deep && !offline) {
        rc = online_convert(c, &vm, name, CTL_KIND_REKEY_DEEP, NULL, seg, "rekey");
        if (rc >= 0) {
            vmenc_vm_free(vm);
            return rc;
        }
        rc = EXIT_OK;
    }
    vmenc_vm_info before = {.struct_size = sizeof(before)};
    conv_ctx x;
    conv_init(&x, c, "rekey");
    vmenc_apply_options ao = {.struct_size = sizeof(ao), .progress = conv_progress, .progress_ctx = &x,
                              .segment_bytes = seg};
    vmenc_status st = vmenc_vm_get_info(vm, &before);
    if (st == VMENC_OK)
        st = deep ? vmenc_vm_rekey_deep(vm, cli_principal(c), &ao) : vmenc_vm_rekey_shallow(vm, cli_principal(c), provider, kek);
    conv_end(&x);
    if (st == VMENC_E_INTERRUPTED && g_interrupted) {
        vmenc_vm_free(vm);
        return cli_interrupted(c, "interrupted: the deep rekey of '%s' stopped cleanly and is resumable "
                                  "('vmenc vm resume %s')", name, name);
    }
    if (st != VMENC_OK) {
        char why[VMENC_LOCK_MESSAGE_MAX + 2];
        lock_why(vm, st, why, sizeof(why));
        if (deep)
            served_hint(c, vm, st, offline, name);
        vmenc_vm_free(vm);
        if (st == VMENC_E_DENIED)
            why_denied(c, deep ? VMENC_OP_REKEY_DEEP : VMENC_OP_REKEY_SHALLOW, name, true, why, sizeof(why));
        return cli_fail(c, st, "cannot %s rekey VM '%s'%s", deep ? "deep" : "shallow", name, why);
    }
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "mode", deep ? "deep" : "shallow");
    out_str(o, "old_kek_id", before.kek_id);
    out_vm_status(o, vm);
    if (deep)
        conv_out(o, &x);
    out_end(o);
    vmenc_vm_free(vm);
    return rc;
}

static int vm_resume(cli *c, args *a) {
    uint64_t seg = 0;
    bool offline = arg_flag(a, "--offline");
    if (!parse_segment(c, a, &seg))
        return EXIT_USAGE;
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "vm resume needs NAME");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    if (!offline) {
        rc = online_convert(c, &vm, name, CTL_KIND_RESUME, NULL, seg, "resume");
        if (rc >= 0) {
            vmenc_vm_free(vm);
            return rc;
        }
        rc = EXIT_OK;
    }
    conv_ctx x;
    conv_init(&x, c, "resume");
    vmenc_apply_options ao = {.struct_size = sizeof(ao), .progress = conv_progress, .progress_ctx = &x,
                              .segment_bytes = seg};
    vmenc_status st = vmenc_vm_resume(vm, cli_principal(c), &ao);
    conv_end(&x);
    if (st == VMENC_E_INTERRUPTED && g_interrupted) {
        vmenc_vm_free(vm);
        return cli_interrupted(c, "interrupted again: 'vmenc vm resume %s' goes on from here", name);
    }
    if (st != VMENC_OK) {
        char why[VMENC_LOCK_MESSAGE_MAX + 2];
        lock_why(vm, st, why, sizeof(why));
        vmenc_vm_free(vm);
        return cli_fail(c, st, "cannot resume the conversions of VM '%s'%s", name, why);
    }
    if (x.n == 0)
        cli_info(c, "vm %s: no interrupted conversion", name);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_u64(o, "resumed", x.n);
    out_vm_status(o, vm);
    conv_out(o, &x);
    out_end(o);
    vmenc_vm_free(vm);
    return EXIT_OK;
}

static int vm_clone(cli *c, args *a) {
    const char *policy = NULL, *folder = NULL;
    bool has_policy = arg_value(c, a, "--policy", &policy);
    (void)arg_value(c, a, "--folder", &folder);
    bool keep = arg_flag(a, "--keep-keys");
    bool plain = arg_flag(a, "--plain");
    const char *src = arg_positional(a), *dst = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (src == NULL || dst == NULL)
        return cli_usage(c, "vm clone needs SOURCE and NAME");
    vmenc_vm *vm = NULL, *out_vm = NULL;
    int rc = open_vm(c, src, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    char home[1024];
    vmenc_status st = vmenc_workspace_vm_home(c->ws, dst, home, sizeof(home));
    vmenc_vm_clone_options o = {.struct_size = sizeof(o), .principal = cli_principal(c), .home_dir = home,
                                .name = dst, .folder = folder ? folder : vmenc_workspace_folder(c->ws),
                                .storage_policy = plain ? "" : has_policy ? policy : NULL,
                                .flags = keep ? VMENC_VM_CLONE_KEEP_KEYS : 0};
    if (st == VMENC_OK)
        st = vmenc_vm_clone(vm, &o, &out_vm);
    vmenc_vm_free(vm);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot clone '%s' to '%s'", src, dst);
    out_t *r = out_begin(c);
    out_bool(r, "ok", true);
    out_str(r, "source", src);
    out_vm_status(r, out_vm);
    out_end(r);
    vmenc_vm_free(out_vm);
    return rc;
}

static int vm_add_disk(cli *c, args *a) {
    const char *size = NULL, *sector = NULL, *id = NULL;
    (void)arg_value(c, a, "--size", &size);
    (void)arg_value(c, a, "--sector", &sector);
    (void)arg_value(c, a, "--id", &id);
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    uint64_t cap = 0, ss = 0;
    if (name == NULL || size == NULL || !parse_size(size, &cap) || (sector && !parse_size(sector, &ss)))
        return cli_usage(c, "vm add-disk needs NAME and --size SIZE");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    vmenc_disk_create_options d = {.struct_size = sizeof(d), .disk_id = id, .capacity = cap, .sector_size = (uint32_t)ss};
    char disk_id[VMENC_DISK_ID_MAX + 1] = "";
    vmenc_status st = vmenc_vm_add_disk(vm, cli_principal(c), &d, disk_id, sizeof(disk_id));
    vmenc_vm_free(vm);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot add a disk to '%s'", name);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "vm", name);
    out_str(o, "disk", disk_id);
    out_u64(o, "capacity", cap);
    out_end(o);
    return EXIT_OK;
}

static int vm_remove_disk(cli *c, args *a) {
    bool del = arg_flag(a, "--delete-files");
    const char *name = arg_positional(a), *disk = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL || disk == NULL)
        return cli_usage(c, "vm remove-disk needs NAME and DISK");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    if (del) {
        /* Deleting a disk's files cannot be undone: ask (a denied user is
         * refused and audited by the library instead). */
        vmenc_vm_info vi = {.struct_size = sizeof(vi)};
        vmenc_disk_info di = {.struct_size = sizeof(di)};
        bool found = false;
        if (vmenc_vm_get_info(vm, &vi) == VMENC_OK)
            for (uint32_t i = 0; i < vi.num_disks && !found; i++)
                found = vmenc_vm_get_disk_info(vm, i, &di) == VMENC_OK && strcmp(di.disk_id, disk) == 0;
        if (found && !would_be_denied(c, VMENC_OP_EDIT_SETTINGS, name, vi.encrypted)) {
            char what[1024];
            snprintf(what, sizeof(what), "vm remove-disk: disk %s of VM '%s' (%s, %llu bytes) will be removed and its "
                     "files deleted", disk, name, di.file_name, (unsigned long long)di.capacity);
            rc = cli_confirm(c, what);
            if (rc != EXIT_OK) {
                vmenc_vm_free(vm);
                return rc;
            }
        }
    }
    vmenc_status st = vmenc_vm_remove_disk(vm, cli_principal(c), disk, del ? VMENC_VM_REMOVE_DELETE_FILES : 0);
    vmenc_vm_free(vm);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot remove disk %s of '%s'", disk, name);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "vm", name);
    out_str(o, "disk", disk);
    out_bool(o, "files_deleted", del);
    out_end(o);
    return EXIT_OK;
}

static int vm_register(cli *c, args *a) {
    const char *folder = NULL;
    (void)arg_value(c, a, "--folder", &folder);
    bool take_over = arg_flag(a, "--take-over"); /* cluster mode: the HA restart (cmd_cluster.c) */
    const char *what = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (take_over && what != NULL)
        return cluster_take_over(c, what);
    if (what == NULL)
        return cli_usage(c, "vm register needs NAME (a folder in the datastore) or the path of a .vmx");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    char path[1024];
    vmenc_status st = VMENC_OK;
    if (strchr(what, '/') != NULL)
        snprintf(path, sizeof(path), "%s", what);
    else
        st = vmenc_workspace_vm_path(c->ws, what, path, sizeof(path));
    vmenc_vm *vm = NULL;
    if (st == VMENC_OK)
        st = vmenc_vm_register(vmenc_workspace_host(c->ws), cli_principal(c), path,
                               folder ? folder : vmenc_workspace_folder(c->ws), NULL, &vm);
    if (st != VMENC_OK && st != VMENC_E_VM_LOCKED) {
        vmenc_vm_free(vm);
        return cli_fail(c, st, "cannot register '%s'", what);
    }
    out_t *o = out_begin(c);
    out_bool(o, "ok", st == VMENC_OK);
    out_vm_status(o, vm);
    out_end(o);
    vmenc_vm_free(vm);
    if (st == VMENC_E_VM_LOCKED)
        return cli_fail_stderr(c, st, "registered '%s', but it is locked", what);
    return rc;
}

const verb_def vm_verbs[] = {
    {"create", vm_create, "NAME [--policy SP] [--disk SIZE]... [options]", "create a VM (encrypted from birth with an encrypting policy)",
     "Options:\n"
     "  --policy NAME   storage policy; 'VM Encryption Policy' encrypts (default: plain)\n"
     "  --disk SIZE     add a zero-filled disk (repeat; 512, 4K, 256M, 10G)\n"
     "  --sector 512|4096, --memory SIZE (swap), --folder NAME, --kek ID (existing KEK)\n"
     "Needs VirtualMachine.Inventory.Create (+ Cryptographer.EncryptNew when encrypted).\n"},
    {"list", vm_list, "", "list the VMs of the datastore", ""},
    {"status", vm_status, "NAME", "show a VM, its disks, keys and missing keys", "Exit 5 if the VM is locked.\n"},
    {"encrypt", vm_encrypt, "NAME [--policy SP] [--segment SIZE] [--offline] [--dry-run]", "apply an encrypting storage policy (default 'VM Encryption Policy')",
     "The host is switched to encryption mode when the user may. Disks that hold data are\n"
     "encrypted in place (VM powered off), with a progress bar; Ctrl-C stops cleanly (exit 130)\n"
     "and 'vmenc vm resume NAME' finishes. --segment: unit of the conversion (default 8M;\n"
     "a multiple of 1M, 1M..1G; a disk converted before keeps its first one).\n"
     "Online: when a process serves the VM's disk (nbdkit vmenc), the conversion runs in that\n"
     "process through its control endpoint (WORKSPACE/run/<VM-UUID>.ctl) while the guest keeps\n"
     "doing I/O; progress is streamed and Ctrl-C stops it cleanly there.\n"
     "  --offline       convert here, never through an endpoint (refused while the disk is served)\n"
     "  --dry-run       print the plan (disks, bytes, key providers, what stays plain); change nothing\n"},
    {"decrypt", vm_decrypt, "NAME [--policy SP] [--segment SIZE] [--offline] [--dry-run] [--yes]", "apply a plain storage policy (default 'Datastore Default')",
     "Needs Cryptographer.Decrypt. Disks that hold data are decrypted in place, as encrypt\n"
     "(online through the serving process's control endpoint when one serves the VM).\n"
     "Asks for YES on a terminal; from a script pass --yes (refused on a pipe without it).\n"
     "  --dry-run       print the plan (disks, bytes, what stays plain); change nothing\n"},
    {"rekey", vm_rekey, "NAME [--deep [--segment SIZE] [--offline] | --provider ALIAS] [--kek ID] [--dry-run]", "rekey: shallow (new KEK) or --deep (new data keys)",
     "Shallow (default): every wrapped key re-wrapped under a new KEK, data not re-encrypted;\n"
     "needs Cryptographer.Recrypt. --deep: every encrypted disk gets a new DEK and is re-encrypted\n"
     "in place (Cryptographer.Recrypt + host); progress, Ctrl-C, resume and online as encrypt.\n"
     "  --dry-run       print the plan (key provider and KEK before and after, disks, bytes); change nothing\n"},
    {"resume", vm_resume, "NAME [--segment SIZE] [--offline]", "finish every interrupted conversion of a VM's disks",
     "Each disk's conversion is authorized as its kind (encrypt, decrypt, deep rekey).\n"
     "A served VM's conversions are finished online by its serving process, as encrypt.\n"},
    {"clone", vm_clone, "SOURCE NAME [--policy SP | --plain] [--keep-keys]", "clone a powered-off VM",
     "Default: the source's policy, new keys. --keep-keys keeps the DEKs (ciphertext copied).\n"},
    {"add-disk", vm_add_disk, "NAME --size SIZE [--sector N] [--id scsiB:U]", "add a zero-filled disk", ""},
    {"remove-disk", vm_remove_disk, "NAME DISK [--delete-files [--yes]]", "remove a disk from the configuration",
     "  --delete-files  delete the disk's descriptor and data too: asks for YES on a terminal;\n"
     "                  from a script pass --yes (refused on a pipe without it)\n"
     "Needs VirtualMachine.Config.Settings.\n"},
    {"register", vm_register, "NAME|PATH.vmx [--folder F] [--take-over]", "add an existing VM home to this host's inventory",
     "Keys are fetched by ID; nothing is re-encrypted. Exit 5 if it registers locked.\n"
     "--take-over (cluster mode): take the VM over after its owner's lease expired (docs/cluster.md).\n"},
    {"unlock", vm_unlock, "NAME", "retry fetching the keys of a locked VM", "Exit 5 if a key is still missing.\n"},
    {"info", vm_info, "NAME", "the VM's encryption at a glance: ciphers, sector sizes, key providers, key IDs",
     "Like 'qemu-img info' or 'cryptsetup luksDump': reads the configuration only (a locked VM too).\n"
     "Needs VirtualMachine.Interact.PowerOn (opening the VM), as 'vm status'.\n"},
    {"delete", vm_delete, "NAME [--keep-files | --destroy-keys] [--dry-run] [--yes]", "delete a VM: inventory, datastore files, and with --destroy-keys its keys",
     "Removes the VM from the inventory and this host, and its home from the datastore.\n"
     "  --keep-files    keep the files (as 'vm unregister', but audited as a delete)\n"
     "  --destroy-keys  crypto-shredding: destroy at the key provider every KEK of the VM that no\n"
     "                  other VM or record uses; no copy of its files (backups too) decrypts after\n"
     "                  (needs Cryptographer.ManageKeys too)\n"
     "  --dry-run       print what would be removed and destroyed; change nothing\n"
     "Asks for YES on a terminal; from a script pass --yes (refused on a pipe without it).\n"
     "Needs VirtualMachine.Inventory.Delete on the VM.\n"},
    {"unregister", vm_unregister, "NAME", "remove a VM from the inventory, keep its files and keys",
     "The inverse of 'vm register': the home stays in the datastore and can be registered again,\n"
     "here or on another host of the same key providers. Needs VirtualMachine.Inventory.Unregister.\n"},
    {NULL, NULL, NULL, NULL, NULL},
};

/* ---- disk ----------------------------------------------------------------------- */

static bool parse_range(cli *c, args *a, uint64_t *off, uint64_t *len, bool *has_len) {
    const char *o = NULL, *l = NULL;
    (void)arg_value(c, a, "--offset", &o);
    *has_len = arg_value(c, a, "--length", &l);
    *off = 0;
    *len = 0;
    if ((o && !parse_size(o, off)) || (l && !parse_size(l, len))) {
        cli_usage(c, "bad --offset or --length");
        return false;
    }
    return true;
}

static int disk_read(cli *c, args *a) {
    uint64_t off, len;
    bool has_len;
    if (!parse_range(c, a, &off, &len, &has_len))
        return EXIT_USAGE;
    const char *name = arg_positional(a), *disk = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL || disk == NULL)
        return cli_usage(c, "disk read needs VM and DISK");
    if (c->json)
        return cli_usage(c, "disk read writes raw bytes to stdout; --json is not available");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    vmenc_disk *d = NULL;
    vmenc_status st = vmenc_disk_open(vm, cli_principal(c), disk, VMENC_DISK_OPEN_EXPORT | VMENC_DISK_OPEN_READONLY, &d);
    uint64_t cap = 0;
    if (st == VMENC_OK)
        st = vmenc_disk_get_size(d, &cap);
    if (st == VMENC_OK && off > cap)
        st = VMENC_E_INVALID_ARG;
    if (st == VMENC_OK && !has_len)
        len = cap - off;
    if (st == VMENC_OK && len > cap - off)
        st = VMENC_E_INVALID_ARG;
    uint8_t *buf = st == VMENC_OK ? malloc(IO_CHUNK) : NULL;
    progress *p = st == VMENC_OK ? progress_start(c, "read", len) : NULL;
    for (uint64_t done = 0; st == VMENC_OK && done < len && !g_interrupted;) {
        size_t n = len - done < IO_CHUNK ? (size_t)(len - done) : IO_CHUNK;
        st = buf ? vmenc_disk_pread(d, off + done, n, buf) : VMENC_E_NOMEM;
        if (st == VMENC_OK && fwrite(buf, 1, n, stdout) != n)
            st = VMENC_E_IO;
        done += n;
        progress_update(p, done);
    }
    progress_end(p);
    fflush(stdout);
    free(buf);
    vmenc_status cs = vmenc_disk_close(d);
    char why[VMENC_LOCK_MESSAGE_MAX + 2];
    lock_why(vm, st, why, sizeof(why));
    vmenc_vm_free(vm);
    if (st == VMENC_OK)
        st = cs;
    if (g_interrupted)
        return EXIT_INTERRUPTED;
    return st == VMENC_OK ? EXIT_OK : cli_fail(c, st, "cannot read disk %s of '%s'%s", disk, name, why);
}

static int disk_write(cli *c, args *a) {
    uint64_t off, len;
    bool has_len;
    if (!parse_range(c, a, &off, &len, &has_len))
        return EXIT_USAGE;
    const char *name = arg_positional(a), *disk = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL || disk == NULL)
        return cli_usage(c, "disk write needs VM and DISK (data on stdin)");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    vmenc_disk *d = NULL;
    vmenc_status st = vmenc_disk_open(vm, cli_principal(c), disk, VMENC_DISK_OPEN_EXPORT, &d);
    uint64_t cap = 0, done = 0;
    if (st == VMENC_OK)
        st = vmenc_disk_get_size(d, &cap);
    if (st == VMENC_OK && off > cap)
        st = VMENC_E_INVALID_ARG;
    uint8_t *buf = st == VMENC_OK ? malloc(IO_CHUNK) : NULL;
    progress *p = st == VMENC_OK ? progress_start(c, "write", has_len ? len : cap - off) : NULL;
    while (st == VMENC_OK && !g_interrupted && (!has_len || done < len)) {
        if (buf == NULL) {
            st = VMENC_E_NOMEM;
            break;
        }
        size_t want = has_len && len - done < IO_CHUNK ? (size_t)(len - done) : IO_CHUNK;
        size_t n = fread(buf, 1, want, stdin);
        if (n == 0)
            break;
        if (n > cap - off - done) {
            st = VMENC_E_INVALID_ARG; /* past the end of the disk */
            break;
        }
        st = vmenc_disk_pwrite(d, off + done, buf, n);
        done += n;
        progress_update(p, done);
    }
    progress_end(p);
    free(buf);
    vmenc_status cs = vmenc_disk_close(d);
    char why[VMENC_LOCK_MESSAGE_MAX + 2];
    lock_why(vm, st, why, sizeof(why));
    vmenc_vm_free(vm);
    if (st == VMENC_OK)
        st = cs;
    if (g_interrupted)
        return EXIT_INTERRUPTED;
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot write disk %s of '%s'%s", disk, name, why);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "vm", name);
    out_str(o, "disk", disk);
    out_u64(o, "offset", off);
    out_u64(o, "bytes", done);
    out_end(o);
    return EXIT_OK;
}

/* disk convert-status VM [DISK]: where each conversion stands, as of its
 * last durable slot. The disk is not opened (no image lock), so a process
 * converting or serving it neither refuses nor delays this. */
static int disk_convert_status(cli *c, args *a) {
    const char *name = arg_positional(a), *only = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "disk convert-status needs VM [DISK]");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    vmenc_status st = vmenc_vm_get_info(vm, &info);
    static vmenc_disk_info di[VMENC_VM_MAX_DISKS];
    static vmenc_convert_progress pr[VMENC_VM_MAX_DISKS];
    uint32_t n = 0, converting = 0;
    for (uint32_t i = 0; st == VMENC_OK && i < info.num_disks && n < VMENC_VM_MAX_DISKS; i++) {
        di[n] = (vmenc_disk_info){.struct_size = sizeof(di[n])};
        if (vmenc_vm_get_disk_info(vm, i, &di[n]) != VMENC_OK || (only && strcmp(only, di[n].disk_id) != 0))
            continue;
        pr[n] = (vmenc_convert_progress){.struct_size = sizeof(pr[n]), .state = di[n].state,
                                         .bytes_done = di[n].capacity, .bytes_total = di[n].capacity, .done = 1};
        if (di[n].state == VMENC_DISK_ENCRYPTING || di[n].state == VMENC_DISK_DECRYPTING ||
            di[n].state == VMENC_DISK_REKEYING) {
            converting++;
            /* an observer's read: never refused by the process converting */
            st = vmenc_vm_get_convert_progress(vm, di[n].disk_id, &pr[n]);
            if (st != VMENC_OK) {
                vmenc_vm_free(vm);
                return cli_fail(c, st, "cannot read the conversion state of disk %s of '%s'", di[n].disk_id, name);
            }
        }
        n++;
    }
    vmenc_vm_free(vm);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot read VM '%s'", name);
    if (only && n == 0)
        return cli_fail(c, VMENC_E_NOT_FOUND, "VM '%s' has no disk %s", name, only);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "vm", name);
    out_u64(o, "converting", converting);
    out_arr(o, "disks");
    for (uint32_t i = 0; i < n; i++) {
        bool conv = !pr[i].done;
        out_obj(o, NULL);
        out_str(o, "id", di[i].disk_id);
        out_str(o, "state", disk_state_name(di[i].state));
        out_bool(o, "converting", conv);
        out_u64(o, "bytes_done", pr[i].bytes_done);
        out_u64(o, "bytes_total", di[i].capacity);
        out_u64(o, "segments_done", pr[i].segments_done);
        out_u64(o, "segments_total", pr[i].segments_total);
        out_close(o);
    }
    out_end(o);
    return EXIT_OK;
}

/* disk convert-rollback VM DISK: turn an interrupted conversion around and
 * drive it back to where the disk started. */
static int disk_convert_rollback(cli *c, args *a) {
    const char *name = arg_positional(a), *disk = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL || disk == NULL)
        return cli_usage(c, "disk convert-rollback needs VM and DISK");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    vmenc_disk *d = NULL;
    vmenc_status st = vmenc_disk_open(vm, cli_principal(c), disk, 0, &d);
    if (st == VMENC_OK)
        st = vmenc_disk_convert_rollback(d, cli_principal(c));
    conv_ctx x;
    conv_init(&x, c, "rollback");
    vmenc_convert_progress pr = {.struct_size = sizeof(pr)};
    while (st == VMENC_OK) {
        st = vmenc_disk_convert_step(d, VMENC_CONVERT_DEFAULT_SEGMENT, &pr);
        if (st == VMENC_OK && conv_progress(&x, disk, &pr) != 0 && !pr.done)
            st = VMENC_E_INTERRUPTED;
        if (st == VMENC_OK && pr.done)
            break;
    }
    conv_end(&x);
    vmenc_status cs = vmenc_disk_close(d);
    if (st == VMENC_OK)
        st = cs;
    vmenc_vm_free(vm);
    if (st == VMENC_E_INTERRUPTED && g_interrupted)
        return cli_interrupted(c, "interrupted: the rollback of disk %s stopped cleanly; run it again to go on", disk);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot roll back the conversion of disk %s of '%s'", disk, name);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "vm", name);
    out_str(o, "disk", disk);
    out_str(o, "state", disk_state_name(pr.state));
    out_u64(o, "bytes_total", pr.bytes_total);
    out_end(o);
    return EXIT_OK;
}

/* disk convert-recover VM DISK: rebuild a lost or damaged conversion state
 * file from the data, or say which segments are in doubt. */
static int disk_convert_recover(cli *c, args *a) {
    const char *name = arg_positional(a), *disk = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL || disk == NULL)
        return cli_usage(c, "disk convert-recover needs VM and DISK");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    vmenc_convert_recovery r = {.struct_size = sizeof(r)};
    vmenc_status st = vmenc_disk_convert_recover(vm, cli_principal(c), disk, &r);
    vmenc_vm_free(vm);
    if (st == VMENC_E_INTERRUPTED && r.unknown_count > 0)
        return cli_fail(c, st, "%s: segments %llu..%llu (guest bytes %llu..%llu) may be in either layout; nothing changed",
                        r.state_file, (unsigned long long)r.unknown_first,
                        (unsigned long long)(r.unknown_first + r.unknown_count - 1),
                        (unsigned long long)r.unknown_offset,
                        (unsigned long long)(r.unknown_offset + r.unknown_bytes - 1));
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot recover the conversion state of disk %s of '%s'", disk, name);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "vm", name);
    out_str(o, "disk", disk);
    out_str(o, "state_file", r.state_file);
    out_bool(o, "rebuilt", (r.flags & VMENC_RECOVERY_REBUILT) != 0);
    out_u64(o, "segments_done", r.segments_done);
    out_u64(o, "segments_total", r.segments_total);
    out_end(o);
    return EXIT_OK;
}

const verb_def disk_verbs[] = {
    {"read", disk_read, "VM DISK [--offset N] [--length N] > FILE", "write decrypted bytes to stdout",
     "Raw access is an export: needs VirtualMachine.Provisioning.GetVmFiles, and\n"
     "Cryptographer.Access on an encrypted VM. Not with --json.\n"},
    {"write", disk_write, "VM DISK [--offset N] [--length N] < FILE", "write bytes from stdin, encrypted",
     "Raw writing is an upload: needs VirtualMachine.Provisioning.PutVmFiles and\n"
     "GetVmFiles (the handle reads too), and Cryptographer.Access on an encrypted VM.\n"},
    {"convert-status", disk_convert_status, "VM [DISK]", "where each disk's in-place conversion stands",
     "Opens converting disks read-only (PowerOn) to read their durable progress.\n"},
    {"convert-rollback", disk_convert_rollback, "VM DISK", "turn an interrupted conversion around, back to the start",
     "Needs the privilege of the reverse conversion. Progress and Ctrl-C as 'vm encrypt'.\n"},
    {"convert-recover", disk_convert_recover, "VM DISK", "rebuild a lost or damaged conversion state file from the data",
     "Needs the conversion's privilege. Exit 7 with the segments in doubt if the data cannot tell.\n"},
    {NULL, NULL, NULL, NULL, NULL},
};

/* ---- file ------------------------------------------------------------------------ */

static bool file_class(const char *s, vmenc_vm_file_class *out) {
    static const struct { const char *n; vmenc_vm_file_class c; } t[] = {
        {"nvram", VMENC_VM_FILE_NVRAM}, {"vmss", VMENC_VM_FILE_VMSS}, {"vmsn", VMENC_VM_FILE_VMSN},
        {"vmem", VMENC_VM_FILE_VMEM}, {"vswp", VMENC_VM_FILE_VSWP}};
    for (size_t i = 0; s && i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(s, t[i].n) == 0) {
            *out = t[i].c;
            return true;
        }
    return false;
}

static int file_io(cli *c, args *a, bool write) {
    const char *idx = NULL;
    (void)arg_value(c, a, "--index", &idx);
    uint64_t off, len, index = 0;
    bool has_len;
    if (!parse_range(c, a, &off, &len, &has_len) || (idx && !parse_size(idx, &index)))
        return EXIT_USAGE;
    bool truncate = write && arg_flag(a, "--truncate");
    const char *name = arg_positional(a), *cls_s = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    vmenc_vm_file_class cls;
    if (name == NULL || !file_class(cls_s, &cls))
        return cli_usage(c, "file %s needs VM and CLASS (nvram, vmss, vmsn, vmem, vswp)", write ? "write" : "read");
    if (!write && c->json)
        return cli_usage(c, "file read writes raw bytes to stdout; --json is not available");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    vmenc_vm_file *f = NULL;
    /* The CLI copies a state file out of the library or into it: an export
     * or an upload, never the hypervisor's power-on path. */
    uint32_t flags = VMENC_VM_FILE_EXPORT |
                     (write ? VMENC_VM_FILE_CREATE | (truncate ? VMENC_VM_FILE_TRUNCATE : 0) : VMENC_VM_FILE_READONLY);
    vmenc_status st = vmenc_vm_file_open(vm, cli_principal(c), cls, (uint32_t)index, flags, &f);
    uint8_t *buf = st == VMENC_OK ? malloc(IO_CHUNK) : NULL;
    uint64_t done = 0, size = 0;
    if (st == VMENC_OK && buf == NULL)
        st = VMENC_E_NOMEM;
    if (st == VMENC_OK && !write) {
        st = vmenc_vm_file_get_size(f, &size);
        if (!has_len)
            len = size > off ? size - off : 0;
    }
    while (st == VMENC_OK && !g_interrupted && (!has_len || done < len) && (write || done < len)) {
        size_t want = (has_len || !write) && len - done < IO_CHUNK ? (size_t)(len - done) : IO_CHUNK;
        size_t n = 0;
        if (write) {
            n = fread(buf, 1, want, stdin);
            if (n == 0)
                break;
            st = vmenc_vm_file_pwrite(f, off + done, buf, n);
        } else {
            st = vmenc_vm_file_pread(f, off + done, want, buf, &n);
            if (st == VMENC_OK && n == 0)
                break;
            if (st == VMENC_OK && fwrite(buf, 1, n, stdout) != n)
                st = VMENC_E_IO;
        }
        done += n;
    }
    fflush(stdout);
    free(buf);
    vmenc_status cs = vmenc_vm_file_close(f);
    vmenc_vm_free(vm);
    if (st == VMENC_OK)
        st = cs;
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot %s the %s file of '%s'", write ? "write" : "read", cls_s, name);
    if (write) {
        out_t *o = out_begin(c);
        out_bool(o, "ok", true);
        out_str(o, "vm", name);
        out_str(o, "class", cls_s);
        out_u64(o, "offset", off);
        out_u64(o, "bytes", done);
        out_end(o);
    }
    return EXIT_OK;
}

static int file_read(cli *c, args *a) { return file_io(c, a, false); }
static int file_write(cli *c, args *a) { return file_io(c, a, true); }

const verb_def file_verbs[] = {
    {"read", file_read, "VM CLASS [--index N] [--offset N] [--length N] > FILE", "read a state file (decrypted, authenticated)",
     "CLASS: nvram, vmss, vmsn, vmem (--index: snapshot number), vswp.\n"
     "Copying a state file out is an export: needs VirtualMachine.Provisioning.GetVmFiles,\n"
     "and Cryptographer.Access on an encrypted VM (suspend memory and NVRAM are as\n"
     "secret as the disks). Not with --json.\n"},
    {"write", file_write, "VM CLASS [--index N] [--offset N] [--truncate] < FILE", "write a state file (encrypted)",
     "Writing a state file in is an upload: needs VirtualMachine.Provisioning.PutVmFiles\n"
     "and GetVmFiles (the handle reads too), and Cryptographer.Access on an encrypted VM.\n"},
    {NULL, NULL, NULL, NULL, NULL},
};
