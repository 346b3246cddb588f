/*
 * tools/vmenc/cmd_cluster.c - `vmenc cluster ...`: make a workspace a host
 * of an etcd-backed cluster and look at it (init, join, leave, status,
 * hosts, owner, take-over), run a VM's writes as a host would (power-on:
 * the long-running writer the cluster tests kill, stop and fence), and
 * measure policy decisions per second in this mode (bench). Public
 * headers only; the semantics are the library's (include/vmenc/cluster.h,
 * docs/cluster.md).
 *
 * Safety rule: this file decides nothing: every refusal (ownership,
 * fencing, policy) comes from the library and is printed as it came.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "vmenc/cluster.h"

static int need_cluster(cli *c, vmenc_cluster_status *st) {
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    *st = (vmenc_cluster_status){.struct_size = sizeof(*st)};
    vmenc_status s = vmenc_workspace_cluster_status(c->ws, st);
    if (s != VMENC_OK)
        return cli_fail(c, s, "cluster status");
    if (!st->in_cluster)
        return cli_fail(c, VMENC_E_BAD_STATE, "this workspace is not in a cluster (vmenc cluster init / join)");
    return EXIT_OK;
}

static int do_join(cli *c, args *a, bool create) {
    vmenc_cluster_spec spec = {.struct_size = sizeof(spec), .flags = create ? VMENC_CLUSTER_CREATE : 0};
    const char *ttl = NULL;
    bool have_ep = arg_value(c, a, "--endpoints", &spec.endpoints);
    (void)arg_value(c, a, "--cacert", &spec.ca_file);
    (void)arg_value(c, a, "--cert", &spec.cert_file);
    (void)arg_value(c, a, "--key", &spec.key_file);
    (void)arg_value(c, a, "--name", &spec.name);
    if (create)
        (void)arg_value(c, a, "--key-provider", &spec.key_provider);
    if (arg_value(c, a, "--ttl", &ttl)) {
        char *end = NULL;
        unsigned long v = strtoul(ttl, &end, 10);
        if (end == NULL || *end != '\0' || v < 2 || v > 3600)
            return cli_usage(c, "--ttl takes seconds, 2 to 3600");
        spec.ttl_s = (uint32_t)v;
    }
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (!have_ep || spec.ca_file == NULL || spec.cert_file == NULL || spec.key_file == NULL)
        return cli_usage(c, "--endpoints, --cacert, --cert and --key are required");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    vmenc_status s = vmenc_workspace_cluster_join(c->ws, cli_principal(c), &spec);
    if (s != VMENC_OK)
        return cli_fail(c, s, "cannot %s cluster '%s'", create ? "initialise" : "join",
                        spec.name ? spec.name : "vmenc");
    vmenc_cluster_status st = {.struct_size = sizeof(st)};
    s = vmenc_workspace_cluster_status(c->ws, &st);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "cluster", st.name);
    out_str(o, "host", st.host);
    out_u64(o, "ttl_s", st.ttl_s);
    out_end(o);
    return s == VMENC_OK ? EXIT_OK : cli_fail(c, s, "cluster status");
}

static int cl_init(cli *c, args *a) { return do_join(c, a, true); }
static int cl_join(cli *c, args *a) { return do_join(c, a, false); }

static int cl_leave(cli *c, args *a) {
    if (!arg_done(c, a))
        return EXIT_USAGE;
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    vmenc_status s = vmenc_workspace_cluster_leave(c->ws, cli_principal(c));
    if (s != VMENC_OK)
        return cli_fail(c, s, "cannot leave the cluster");
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_end(o);
    return EXIT_OK;
}

static int cl_status(cli *c, args *a) {
    if (!arg_done(c, a))
        return EXIT_USAGE;
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    vmenc_cluster_status st = {.struct_size = sizeof(st)};
    vmenc_status s = vmenc_workspace_cluster_status(c->ws, &st);
    if (s != VMENC_OK)
        return cli_fail(c, s, "cluster status");
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_bool(o, "in_cluster", st.in_cluster);
    if (st.in_cluster) {
        out_str(o, "cluster", st.name);
        out_str(o, "host", st.host);
        char lease[24];
        snprintf(lease, sizeof(lease), "%016" PRIx64, st.lease);
        out_str(o, "lease", lease);
        out_u64(o, "ttl_s", st.ttl_s);
        out_int(o, "fence_ms_left", st.fence_ms_left);
        out_bool(o, "fenced", st.fence_ms_left <= 0);
        out_bool(o, "lease_gone", st.lease_gone);
        out_bool(o, "watch_healthy", st.watch_healthy);
        out_int(o, "policy_revision", st.policy_revision);
        out_u64(o, "endpoints", st.num_endpoints);
        out_u64(o, "endpoints_up", st.num_endpoints_up);
        out_bool(o, "quorum", st.has_leader);
    }
    out_end(o);
    return EXIT_OK;
}

typedef struct host_list {
    out_t *o;
    uint32_t n;
} host_list;

static int host_row(void *ctx, const char *host, const char *info, uint32_t sessions) {
    host_list *h = ctx;
    out_obj(h->o, NULL);
    out_str(h->o, "host", host);
    out_u64(h->o, "sessions", sessions);
    out_bool(h->o, "up", sessions > 0);
    out_raw(h->o, "registration", info);
    out_close(h->o);
    h->n++;
    return 0;
}

static int cl_hosts(cli *c, args *a) {
    if (!arg_done(c, a))
        return EXIT_USAGE;
    vmenc_cluster_status st;
    int rc = need_cluster(c, &st);
    if (rc != EXIT_OK)
        return rc;
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_arr(o, "hosts");
    host_list h = {.o = o};
    vmenc_status s = vmenc_workspace_cluster_hosts(c->ws, host_row, &h);
    out_close(o);
    out_u64(o, "count", h.n);
    out_end(o);
    return s == VMENC_OK ? EXIT_OK : cli_fail_stderr(c, s, "cannot list the cluster's hosts");
}

static int cl_owner(cli *c, args *a) {
    const char *name = arg_positional(a);
    if (name == NULL || !arg_done(c, a))
        return cli_usage(c, "usage: vmenc cluster owner VM");
    vmenc_cluster_status st;
    int rc = need_cluster(c, &st);
    if (rc != EXIT_OK)
        return rc;
    char owner[VMENC_POLICY_NAME_MAX + 1];
    vmenc_status s = vmenc_workspace_vm_owner(c->ws, name, owner, sizeof(owner));
    if (s != VMENC_OK)
        return cli_fail(c, s, "owner of VM '%s'", name);
    /* the placement: the one host that may write it (docs/cluster.md) */
    char placed[VMENC_POLICY_NAME_MAX + 1];
    s = vmenc_workspace_vm_placement(c->ws, name, placed, sizeof(placed));
    if (s != VMENC_OK)
        return cli_fail(c, s, "placement of VM '%s'", name);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "vm", name);
    out_str(o, "owner", owner);
    out_str(o, "placement", placed);
    out_end(o);
    return EXIT_OK;
}

static int cl_take_over(cli *c, args *a) {
    const char *name = arg_positional(a);
    if (name == NULL || !arg_done(c, a))
        return cli_usage(c, "usage: vmenc cluster take-over VM");
    return cluster_take_over(c, name);
}

int cluster_take_over(cli *c, const char *name) {
    vmenc_cluster_status st;
    int rc = need_cluster(c, &st);
    if (rc != EXIT_OK)
        return rc;
    vmenc_vm *vm = NULL;
    vmenc_status s = vmenc_workspace_vm_take_over(c->ws, cli_principal(c), name, &vm);
    if (s != VMENC_OK) {
        char holder[VMENC_WORKSPACE_MESSAGE_MAX] = "";
        if (s == VMENC_E_LOCKED && vmenc_workspace_lock_holder(c->ws, holder, sizeof(holder)) != VMENC_OK)
            holder[0] = '\0';
        return cli_fail(c, s, "cannot take VM '%s' over%s%s", name, holder[0] ? ": " : "", holder);
    }
    vmenc_vm_free(vm); /* the ownership goes with this process: a host that runs it takes it again */
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "vm", name);
    out_str(o, "host", st.host);
    out_end(o);
    return EXIT_OK;
}

static uint64_t now_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* hand-over: the source side of a migration on a datastore both hosts
 * share (nothing to copy): offer VM to --to HOST and wait for its
 * 'cluster accept'. The placement and ownership move in one etcd
 * transaction (docs/cluster.md). */
static int cl_hand_over(cli *c, args *a) {
    const char *name = arg_positional(a), *to = NULL, *tmo = NULL;
    (void)arg_value(c, a, "--to", &to);
    (void)arg_value(c, a, "--timeout", &tmo);
    if (name == NULL || to == NULL || !arg_done(c, a))
        return cli_usage(c, "usage: vmenc cluster hand-over VM --to HOST [--timeout S]");
    long timeout = tmo ? strtol(tmo, NULL, 10) : 30;
    if (timeout < 1 || timeout > 86400)
        return cli_usage(c, "--timeout takes 1 to 86400 seconds");
    vmenc_cluster_status st;
    int rc = need_cluster(c, &st);
    if (rc != EXIT_OK)
        return rc;
    vmenc_vm *vm = NULL;
    rc = open_vm(c, name, &vm, true);
    if (rc != EXIT_OK)
        return rc;
    vmenc_status s = vmenc_workspace_cluster_handover_begin(c->ws, cli_principal(c), vm, to);
    if (s == VMENC_OK)
        s = vmenc_workspace_cluster_handover_wait(c->ws, cli_principal(c), vm, to, (uint32_t)timeout * 1000u);
    char holder[VMENC_WORKSPACE_MESSAGE_MAX] = "";
    if (s != VMENC_OK && vmenc_workspace_lock_holder(c->ws, holder, sizeof(holder)) != VMENC_OK)
        holder[0] = '\0';
    vmenc_vm_free(vm);
    if (s != VMENC_OK)
        return cli_fail(c, s, "VM '%s' was not handed over to %s (it stays here)%s%s", name, to,
                        holder[0] ? ": " : "", holder);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "vm", name);
    out_str(o, "from", st.host);
    out_str(o, "to", to);
    out_end(o);
    return EXIT_OK;
}

/* accept: the destination side: wait up to --timeout for an offer of VM
 * to this host and commit it. */
static int cl_accept(cli *c, args *a) {
    const char *name = arg_positional(a), *tmo = NULL;
    (void)arg_value(c, a, "--timeout", &tmo);
    if (name == NULL || !arg_done(c, a))
        return cli_usage(c, "usage: vmenc cluster accept VM [--timeout S]");
    long timeout = tmo ? strtol(tmo, NULL, 10) : 30;
    if (timeout < 1 || timeout > 86400)
        return cli_usage(c, "--timeout takes 1 to 86400 seconds");
    vmenc_cluster_status st;
    int rc = need_cluster(c, &st);
    if (rc != EXIT_OK)
        return rc;
    vmenc_vm *vm = NULL;
    rc = open_vm(c, name, &vm, true);
    if (rc != EXIT_OK)
        return rc;
    uint64_t until = now_mono_ms() + (uint64_t)timeout * 1000u;
    vmenc_status s;
    while ((s = vmenc_workspace_cluster_handover_commit(c->ws, cli_principal(c), vm)) == VMENC_E_NOT_FOUND &&
           now_mono_ms() < until && !g_interrupted) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    char holder[VMENC_WORKSPACE_MESSAGE_MAX] = "";
    if (s != VMENC_OK && vmenc_workspace_lock_holder(c->ws, holder, sizeof(holder)) != VMENC_OK)
        holder[0] = '\0';
    vmenc_vm_free(vm); /* the placement stays here; the owner key goes with this process */
    if (s != VMENC_OK)
        return cli_fail(c, s, "VM '%s' was not taken over%s%s", name, holder[0] ? ": " : "", holder);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "vm", name);
    out_str(o, "host", st.host);
    out_end(o);
    return EXIT_OK;
}

static uint64_t now_real_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* fence_note: after a write refused with VMENC_E_LEASE_EXPIRED, what the
 * session knows (" [...]"; "" otherwise): its renewals and whether etcd
 * said the lease is gone - renewals that came late and a lost lease give
 * the same status, and only this tells a log reader which it was. */
static void fence_note(cli *c, vmenc_status s, char *out, size_t cap) {
    out[0] = '\0';
    vmenc_cluster_status cs = {.struct_size = sizeof(cs)};
    if (s != VMENC_E_LEASE_EXPIRED || vmenc_workspace_cluster_status(c->ws, &cs) != VMENC_OK || !cs.in_cluster)
        return;
    snprintf(out, cap,
             " [session lease %016" PRIx64 " (TTL %u s): %" PRIu64 " renewals ok, %" PRIu64 " failed, %s; fencing "
             "deadline %" PRId64 " ms %s]",
             cs.lease, cs.ttl_s, cs.keepalives_ok, cs.keepalives_failed,
             cs.lease_gone ? "etcd says the lease is gone" : "the lease was not reported gone",
             cs.fence_ms_left < 0 ? -cs.fence_ms_left : cs.fence_ms_left, cs.fence_ms_left <= 0 ? "ago" : "ahead now");
}

/* power-on: open every disk of VM for write (taking ownership) and write a
 * tagged record every --interval-ms into sector 0 of the first disk, one
 * line per write to --log: "HOST LEASE SEQ REALTIME_MS STATUS". Stops on
 * SIGTERM/SIGINT, after --seconds, or when a write is refused (fenced). */
static int cl_power_on(cli *c, args *a) {
    const char *name = arg_positional(a);
    const char *secs_s = NULL, *ivl_s = NULL, *log_path = NULL;
    (void)arg_value(c, a, "--seconds", &secs_s);
    (void)arg_value(c, a, "--interval-ms", &ivl_s);
    (void)arg_value(c, a, "--log", &log_path);
    bool keep_going = arg_flag(a, "--keep-going");
    if (name == NULL || !arg_done(c, a))
        return cli_usage(c, "usage: vmenc cluster power-on VM [--seconds N] [--interval-ms N] [--log FILE]");
    double secs = secs_s ? strtod(secs_s, NULL) : 0;
    long ivl = ivl_s ? strtol(ivl_s, NULL, 10) : 100;
    if (ivl < 1 || ivl > 60000)
        return cli_usage(c, "--interval-ms takes 1 to 60000");
    vmenc_cluster_status st;
    int rc = need_cluster(c, &st);
    if (rc != EXIT_OK)
        return rc;
    vmenc_vm *vm = NULL;
    rc = open_vm(c, name, &vm, true);
    if (rc != EXIT_OK)
        return rc;
    vmenc_vm_info vi = {.struct_size = sizeof(vi)};
    vmenc_disk_info di = {.struct_size = sizeof(di)};
    vmenc_status s = vmenc_vm_get_info(vm, &vi);
    if (s == VMENC_OK && vi.locked) {
        /* A key broker refuses a VM's KEK to a host that does not own the VM
         * (KMIP Permission Denied, docs/broker.md): take the VM (refused while
         * a live host owns it), then fetch again. Any other missing key: the
         * VM is locked, as before. */
        char alias[VMENC_PROVIDER_ALIAS_MAX + 1], kek[VMENC_KMS_KEY_ID_CAP];
        vmenc_status ks = VMENC_E_VM_LOCKED;
        if (vmenc_vm_get_missing_key(vm, 0, alias, sizeof(alias), kek, sizeof(kek), &ks) != VMENC_OK ||
            ks != VMENC_E_KMS_PERMISSION) {
            vmenc_vm_free(vm);
            return cli_fail(c, VMENC_E_VM_LOCKED, "cannot open VM '%s': a key it needs cannot be fetched (%s)", name,
                            vmenc_status_name(ks));
        }
        vmenc_vm_free(vm);
        vm = NULL;
        s = vmenc_workspace_vm_take_over(c->ws, cli_principal(c), name, &vm);
        if (s != VMENC_OK) {
            char holder[VMENC_WORKSPACE_MESSAGE_MAX] = "";
            if (s == VMENC_E_LOCKED && vmenc_workspace_lock_holder(c->ws, holder, sizeof(holder)) != VMENC_OK)
                holder[0] = '\0';
            return cli_fail(c, s, "cannot power on VM '%s'%s%s", name, holder[0] ? ": " : "", holder);
        }
        s = vmenc_vm_unlock(vm, cli_principal(c));
        if (s != VMENC_OK) {
            vmenc_vm_free(vm);
            return cli_fail(c, s, "cannot power on VM '%s': its keys were refused (the reason is in the key "
                            "provider's events)", name);
        }
        s = vmenc_vm_get_info(vm, &vi);
    }
    if (s == VMENC_OK && vi.num_disks == 0)
        s = VMENC_E_NOT_FOUND;
    if (s == VMENC_OK)
        s = vmenc_vm_get_disk_info(vm, 0, &di);
    vmenc_disk *d = NULL;
    if (s == VMENC_OK)
        s = vmenc_disk_open(vm, cli_principal(c), di.disk_id, 0, &d);
    if (s != VMENC_OK) {
        char holder[VMENC_LOCK_MESSAGE_MAX + 4] = "", note[256];
        vmenc_lock_holder h = {.struct_size = sizeof(h)};
        if (s == VMENC_E_LOCKED && vmenc_vm_get_lock_holder(vm, &h) == VMENC_OK)
            snprintf(holder, sizeof(holder), ": %s", h.message);
        fence_note(c, s, note, sizeof(note));
        vmenc_vm_free(vm);
        return cli_fail(c, s, "cannot power on VM '%s' (write open of its disk)%s%s", name, holder, note);
    }
    FILE *log = log_path ? fopen(log_path, "ae") : NULL;
    if (log_path && log == NULL) {
        vmenc_status cs = vmenc_disk_close(d);
        (void)cs;
        vmenc_vm_free(vm);
        return cli_fail(c, VMENC_E_IO, "cannot open %s", log_path);
    }
    cli_info(c, "VM '%s' powered on at host %s (lease %016" PRIx64 ")", name, st.host, st.lease);
    if (log) {
        fprintf(log, "%s %016" PRIx64 " 0 %" PRIu64 " OPEN\n", st.host, st.lease, now_real_ms());
        fflush(log);
    }
    uint64_t t_end = secs > 0 ? now_real_ms() + (uint64_t)(secs * 1000) : 0;
    uint64_t seq = 0, refused = 0;
    vmenc_status last = VMENC_OK;
    uint8_t sector[512];
    while (!g_interrupted && (t_end == 0 || now_real_ms() < t_end)) {
        seq++;
        memset(sector, 0, sizeof(sector));
        uint64_t t = now_real_ms();
        int n = snprintf((char *)sector, sizeof(sector), "%s %016" PRIx64 " %" PRIu64 " %" PRIu64, st.host, st.lease,
                         seq, t);
        (void)n;
        s = vmenc_disk_pwrite(d, 0, sector, sizeof(sector));
        if (s == VMENC_OK)
            s = vmenc_disk_flush(d);
        if (log) {
            fprintf(log, "%s %016" PRIx64 " %" PRIu64 " %" PRIu64 " %s\n", st.host, st.lease, seq, t,
                    s == VMENC_OK ? "OK" : vmenc_status_name(s));
            fflush(log);
        }
        if (s != VMENC_OK) {
            refused++;
            if (last == VMENC_OK) {
                char note[256];
                fence_note(c, s, note, sizeof(note));
                fprintf(stderr, "vmenc: write %" PRIu64 " refused: %s%s\n", seq, vmenc_strerror(s), note);
            }
            last = s;
            if (!keep_going)
                break;
        } else {
            if (last != VMENC_OK)
                fprintf(stderr, "vmenc: writes resumed at %" PRIu64 "\n", seq);
            last = VMENC_OK;
        }
        struct timespec ts = {.tv_sec = ivl / 1000, .tv_nsec = (ivl % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (log)
        fclose(log);
    vmenc_status cs = vmenc_disk_close(d);
    (void)cs;
    vmenc_vm_free(vm);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_u64(o, "writes", seq);
    out_u64(o, "refused", refused);
    out_str(o, "last_status", vmenc_status_name(last));
    out_end(o);
    if (last != VMENC_OK)
        return cli_fail_stderr(c, last, "VM '%s' stopped writing", name);
    return EXIT_OK;
}

/* ---- bench ---------------------------------------------------------------------------------- */

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* out_lat sorts |ms| and prints its p50 and p99 as an object |key|. */
static void out_lat(out_t *o, const char *key, double *ms, size_t n) {
    qsort(ms, n, sizeof(*ms), cmp_double);
    out_obj(o, key);
    out_u64(o, "n", n);
    out_double(o, "p50_ms", n ? ms[n / 2] : 0);
    out_double(o, "p99_ms", n ? ms[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] : 0);
    out_close(o);
}

/* bench: policy decisions per second from this workspace's model (the
 * cluster's cached document in cluster mode, the local one otherwise),
 * and with --ops N the latency of N grants, N write-opens of --vm and N
 * VM creates. Run it on a cluster host and on a single-host workspace in
 * the same run: the ratio is the measure (docs/cluster.md). */
static int cl_bench(cli *c, args *a) {
    const char *n_s = NULL, *vm = NULL, *ops_s = NULL;
    (void)arg_value(c, a, "--decisions", &n_s);
    (void)arg_value(c, a, "--vm", &vm);
    (void)arg_value(c, a, "--ops", &ops_s);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    long n = n_s ? strtol(n_s, NULL, 10) : 2000000;
    long ops = ops_s ? strtol(ops_s, NULL, 10) : 0;
    if (n < 1000 || ops < 0 || ops > 100000)
        return cli_usage(c, "--decisions takes at least 1000, --ops 0 to 100000");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    vmenc_cluster_status st = {.struct_size = sizeof(st)};
    vmenc_status s = vmenc_workspace_cluster_status(c->ws, &st);
    vmenc_policy *p = vmenc_workspace_policy(c->ws);
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = vm ? VMENC_OP_POWER_ON : VMENC_OP_READ_KEY_SERVERS,
                               .vm = vm};
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    double t0 = mono_s();
    long allowed = 0;
    for (long i = 0; i < n && s == VMENC_OK; i++) {
        vmenc_status r = vmenc_policy_check(p, cli_principal(c), &rq, &d);
        if (r == VMENC_OK)
            allowed++;
        else if (r != VMENC_E_DENIED)
            s = r;
    }
    double el = mono_s() - t0;
    if (s != VMENC_OK)
        return cli_fail(c, s, "policy check");
    double *grant = ops ? calloc((size_t)ops, sizeof(double)) : NULL;
    double *wopen = ops ? calloc((size_t)ops, sizeof(double)) : NULL;
    double *create = ops ? calloc((size_t)ops, sizeof(double)) : NULL;
    if (ops && (!grant || !wopen || !create)) {
        free(grant), free(wopen), free(create);
        return cli_fail(c, VMENC_E_NOMEM, "bench");
    }
    size_t ng = 0, nw = 0, nc = 0;
    if (ops && (s = vmenc_policy_add_user(p, "bench-user")) == VMENC_E_EXISTS)
        s = VMENC_OK;
    for (long i = 0; i < ops && s == VMENC_OK; i++) {
        double a0 = mono_s();
        s = vmenc_policy_grant_as(p, cli_principal(c), "bench-user", "root", (i & 1) ? "ReadOnly" : "NoCryptoAdmin", 1,
                                  &d);
        if (s == VMENC_E_NOT_FOUND) /* role names differ: any change will do */
            s = vmenc_policy_grant_as(p, cli_principal(c), "bench-user", "root", (i & 1) ? "Admin" : "ReadOnly", 1, &d);
        grant[ng++] = (mono_s() - a0) * 1000;
    }
    for (long i = 0; vm && i < ops && s == VMENC_OK; i++) {
        double a0 = mono_s();
        vmenc_vm *v = NULL;
        vmenc_disk *dk = NULL;
        vmenc_disk_info di = {.struct_size = sizeof(di)};
        s = vmenc_workspace_open_vm(c->ws, cli_principal(c), vm, &v);
        if (s == VMENC_OK)
            s = vmenc_vm_get_disk_info(v, 0, &di);
        if (s == VMENC_OK)
            s = vmenc_disk_open(v, cli_principal(c), di.disk_id, 0, &dk);
        if (s == VMENC_OK)
            s = vmenc_disk_close(dk);
        vmenc_vm_free(v);
        wopen[nw++] = (mono_s() - a0) * 1000;
    }
    char home[VMENC_WORKSPACE_PATH_MAX];
    for (long i = 0; i < ops && s == VMENC_OK; i++) {
        char name[64];
        snprintf(name, sizeof(name), "bench-%ld-%ld", (long)getpid(), i);
        s = vmenc_workspace_vm_home(c->ws, name, home, sizeof(home));
        vmenc_vm_create_options co = {.struct_size = sizeof(co), .principal = cli_principal(c), .home_dir = home,
                                      .name = name, .folder = vmenc_workspace_folder(c->ws)};
        double a0 = mono_s();
        vmenc_vm *v = NULL;
        if (s == VMENC_OK)
            s = vmenc_vm_create(vmenc_workspace_host(c->ws), &co, &v);
        create[nc++] = (mono_s() - a0) * 1000;
        vmenc_vm_free(v);
    }
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "mode", st.in_cluster ? "cluster" : "single-host");
    out_int(o, "decisions", n);
    out_int(o, "allowed", allowed);
    out_double(o, "seconds", el);
    out_double(o, "decisions_per_second", el > 0 ? (double)n / el : 0);
    if (ops) {
        out_lat(o, "grant", grant, ng);
        if (vm)
            out_lat(o, "open_for_write", wopen, nw);
        out_lat(o, "create", create, nc);
    }
    out_end(o);
    free(grant), free(wopen), free(create);
    return s == VMENC_OK ? EXIT_OK : cli_fail_stderr(c, s, "bench operation");
}

/* ---- vmenc demo --cluster ----------------------------------------------------------------------
 * A 3-member etcd cluster (the project's start script: $VMENC_ETCD_START, else
 * tests/support/etcd/start-etcd-cluster.sh beside the build directory, one or two levels up) and two hosts, each a
 * workspace driven through this very program in its own process, so a host can be killed.
 * Every step is checked; the demo exits 1 if any check failed. */

typedef struct cdemo {
    cli *c;
    char dir[512];
    char self[1024];
    char start[1200];
    char env[2048];      /* the etcd cluster's export lines, for the shell of each step */
    int fails, checks;
} cdemo;

static bool cd_check(cdemo *d, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool cd_check(cdemo *d, bool ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "  %s ", ok ? "[ok]  " : "[FAIL]");
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
    d->checks++;
    if (!ok)
        d->fails++;
    return ok;
}

/* cd_run runs |cmd| in sh with the cluster's environment; its output
 * (stdout and stderr, up to |cap|) goes to |out|; returns the exit code. */
static int cd_run(cdemo *d, char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int cd_run(cdemo *d, char *out, size_t cap, const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(cmd, sizeof(cmd), "{ %s cd '%s' && ", d->env, d->dir);
    vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
    va_end(ap);
    strncat(cmd, "; } 2>&1", sizeof(cmd) - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    size_t got = 0;
    char buf[512];
    while (fgets(buf, sizeof(buf), p) != NULL) {
        size_t l = strlen(buf);
        if (out != NULL && got + l < cap) {
            memcpy(out + got, buf, l);
            got += l;
        }
    }
    if (out != NULL && cap > 0)
        out[got < cap ? got : cap - 1] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define H(n) "'%s' --workspace ws" #n " --passphrase-file pass "

static void cluster_story(cdemo *d) {
    char out[8192];
    printf("\n== a 3-member etcd cluster with mutual TLS\n");
    FILE *p = NULL;
    {
        char cmd[2048];
        snprintf(cmd, sizeof(cmd), "bash '%s' '%s/etcd' 2>/dev/null", d->start, d->dir);
        p = popen(cmd, "r");
    }
    size_t el = (size_t)snprintf(d->env, sizeof(d->env), "export VMENC_USER=alice; ");
    char line[1024];
    while (p != NULL && fgets(line, sizeof(line), p) != NULL)
        if (strncmp(line, "export ", 7) == 0 && el + strlen(line) + 2 < sizeof(d->env)) {
            line[strcspn(line, "\n")] = '\0';
            el += (size_t)snprintf(d->env + el, sizeof(d->env) - el, "%s; ", line);
        }
    int rc = p ? pclose(p) : -1;
    if (!cd_check(d, rc == 0 && strstr(d->env, "VMENC_ETCD_ENDPOINTS") != NULL, "etcd members m1, m2, m3 healthy"))
        return;
    /* each host its own client certificate (the cluster registers its fingerprint; the key broker
     * knows a host by it) */
    rc = cd_run(d, out, sizeof(out),
                "for h in esx01 esx02; do openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $h.key "
                "-out $h.csr -subj /CN=$h 2>/dev/null && printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=clientAuth\\n' "
                "> $h.ext && openssl x509 -req -in $h.csr -CA \"$VMENC_ETCD_DIR/certs/ca.crt\" -CAkey "
                "\"$VMENC_ETCD_DIR/certs/ca.key\" -CAcreateserial -days 2 -out $h.crt -extfile $h.ext 2>/dev/null || exit 1; "
                "done");
    if (!cd_check(d, rc == 0, "client certificates for esx01 and esx02 from the cluster's CA"))
        return;
    printf("\n== two hosts, one datastore, one shared key provider, one cluster\n");
    rc = cd_run(d, out, sizeof(out),
                "echo 'demo passphrase' > pass && echo 'demo shared' > shared.pass && "
                "'%s' init ws1 --admin alice --host esx01 --kdf-memory 8192 --kdf-passes 1 --passphrase-file pass -q && "
                "'%s' init ws2 --admin alice --host esx02 --kdf-memory 8192 --kdf-passes 1 --passphrase-file pass -q && "
                "sed -i \"s|^datastore = .*|datastore = \\\"$PWD/ws1/datastore\\\"|\" ws2/vmenc.conf && "
                H(1) "kms add shared --type file --endpoint \"$PWD/shared.vks\" --create --secret-file \"$PWD/shared.pass\" "
                "--option kdf_ops=1 --option kdf_mem_kib=8192 -q && "
                H(2) "kms add shared --type file --endpoint \"$PWD/shared.vks\" --secret-file \"$PWD/shared.pass\" "
                "--option kdf_ops=1 --option kdf_mem_kib=8192 -q",
                d->self, d->self, d->self, d->self);
    cd_check(d, rc == 0, "workspaces ws1 (esx01) and ws2 (esx02) share a datastore and key provider 'shared'");
    rc = cd_run(d, out, sizeof(out),
                H(1) "policy host-mode --enable -q && "
                H(1) "cluster init --endpoints \"$VMENC_ETCD_ENDPOINTS\" --cacert \"$VMENC_ETCD_CACERT\" "
                "--cert \"$PWD/esx01.crt\" --key \"$PWD/esx01.key\" --name demo --key-provider shared --ttl 3 -q && "
                H(1) "policy host esx02 -q && " H(1) "policy host-mode --enable --host esx02 -q && "
                H(2) "cluster join --endpoints \"$VMENC_ETCD_ENDPOINTS\" --cacert \"$VMENC_ETCD_CACERT\" "
                "--cert \"$PWD/esx02.crt\" --key \"$PWD/esx02.key\" --name demo --ttl 3 -q && " H(1) "--json cluster hosts",
                d->self, d->self, d->self, d->self, d->self, d->self);
    cd_check(d, rc == 0 && strstr(out, "\"esx01\"") && strstr(out, "\"esx02\"") && strstr(out, "\"incapable\"") == NULL,
             "esx01 initialised cluster 'demo', esx02 joined; both registered in encryption mode (lease TTL 3 s)");
    rc = cd_run(d, out, sizeof(out),
                H(2) "policy storage-policy 'Shared Enc' --encrypt --classes vm_home,disks --provider shared -q && "
                H(1) "vm create vm01 --policy 'Shared Enc' --disk 1M -q && " H(2) "vm create vm02 --policy 'Shared Enc' --disk 1M -q",
                d->self, d->self, d->self);
    cd_check(d, rc == 0, "esx02 adds storage policy 'Shared Enc'; esx01 creates vm01, esx02 vm02 under it (records in etcd)");
    printf("\n== one policy, edited on one host, enforced on the other\n");
    rc = cd_run(d, out, sizeof(out),
                H(1) "policy user bob -q && " H(2) "--user bob policy check --op power_on --on vm01 -q",
                d->self, d->self);
    cd_check(d, rc == 3, "esx02 denies bob (added on esx01) powering vm01 on (exit %d)", rc);
    rc = cd_run(d, out, sizeof(out), H(1) "policy grant bob Admin -q && " H(2) "--user bob policy check --op power_on --on vm01 -q",
                d->self, d->self);
    cd_check(d, rc == 0, "esx01 grants bob Admin: esx02 allows it at once, from its watched cache");
    printf("\n== one writer per VM\n");
    rc = cd_run(d, out, sizeof(out),
                "(exec " H(1) "cluster power-on vm01 --log h1.log --interval-ms 50 >/dev/null 2>&1 & echo $! > h1.pid) && "
                "for i in $(seq 100); do grep -q ' OK$' h1.log 2>/dev/null && break; sleep 0.05; done; grep -c ' OK$' h1.log",
                d->self);
    cd_check(d, rc == 0, "esx01 powers vm01 on (a writer process, tagged writes)");
    rc = cd_run(d, out, sizeof(out), H(2) "cluster power-on vm01 --seconds 1", d->self);
    cd_check(d, rc != 0 && strstr(out, "owned by host esx01") != NULL, "esx02's write-open is refused: %s",
             strstr(out, "VM vm01 is owned") ? "\"VM vm01 is owned by host esx01 ...\"" : out);
    printf("\n== esx01 dies; esx02 takes vm01 over once esx01's lease expired\n");
    rc = cd_run(d, out, sizeof(out),
                "kill -9 $(cat h1.pid); t0=$(date +%%s%%3N); for i in $(seq 60); do "
                H(2) "vm register vm01 --take-over -q >/dev/null 2>&1 && { echo $(( $(date +%%s%%3N) - t0 )); exit 0; }; "
                "sleep 0.2; done; exit 1",
                d->self);
    out[strcspn(out, "\n")] = '\0';
    cd_check(d, rc == 0, "esx01 SIGKILLed; vm01 taken over by esx02 %s ms later (TTL 3 s)", out);
    rc = cd_run(d, out, sizeof(out), H(2) "cluster power-on vm01 --seconds 1 --log h2.log -q >/dev/null && "
                "f=$(awk '$5==\"OK\" {print $4; exit}' h2.log) && [ -n \"$f\" ] && awk -v f=$f '$5==\"OK\" && $4>=f' h1.log | wc -l",
                d->self);
    cd_check(d, rc == 0 && out[0] >= '0' && out[0] <= '9' && atoi(out) == 0, "esx02 writes vm01; no write of esx01 is later than esx02's first");
    printf("\n== the cluster's events\n");
    rc = cd_run(d, out, sizeof(out),
                "(" H(1) "audit show; " H(2) "audit show) | grep -v denied | grep -o 'cluster\\.[a-z]*\\|vm\\.take_over' | sort | uniq -c",
                d->self, d->self);
    cd_check(d, strstr(out, "cluster.init") && strstr(out, "cluster.join") && strstr(out, "vm.take_over"),
             "both hosts' logs record cluster.init, cluster.join and vm.take_over");
    fputs(out, stdout);
    rc = cd_run(d, out, sizeof(out), H(2) "cluster status", d->self);
    fputs(out, stdout);
}

/* broker_story: the key broker (docs/broker.md) in front of the shared key provider, a swtpm per
 * host, and esx02's measurement tampered: it is refused vm02's KEK while esx01 runs vm01, and gets
 * it once the administrator approves its new measurement. Skipped, with the reason, where swtpm,
 * tpm2-tools or the TPM support of this build are missing. */
static void broker_story(cdemo *d) {
    char out[8192];
    printf("\n== the key broker: hosts get keys through the control plane, and only when attested\n");
    char tpm[1300];
    snprintf(tpm, sizeof(tpm), "%s", d->start);
    char *sl = strrchr(tpm, '/');
    if (sl != NULL)
        snprintf(sl + 1, sizeof(tpm) - (size_t)(sl + 1 - tpm), "../../tpm/start-swtpm.sh");
    if (access(tpm, R_OK) != 0 || cd_run(d, NULL, 0, "command -v swtpm && command -v swtpm_setup && "
                                                     "command -v tpm2_pcrextend") != 0) {
        printf("  skipped: swtpm, swtpm-tools or tpm2-tools missing (scripts/deps.sh demo installs them)\n");
        return;
    }
    int rc = cd_run(d, out, sizeof(out),
                    "for n in 1 2; do SWTPM_EK_CERT=0 bash '%s' tpm$n > tpm$n.env 2>/dev/null || exit 1; done && "
                    "{ echo \"T1='$(. ./tpm1.env; echo $SWTPM_TCTI)'\"; echo \"T2='$(. ./tpm2.env; echo $SWTPM_TCTI)'\"; "
                    "echo \"E='--endpoints $VMENC_ETCD_ENDPOINTS --cacert $VMENC_ETCD_CACERT --cert $VMENC_ETCD_CERT "
                    "--key $VMENC_ETCD_KEY --name demo -q'\"; } > b.env",
                    tpm);
    if (!cd_check(d, rc == 0, "a software TPM per host (swtpm): PCRs 0-7 as a clean boot leaves them"))
        return;
    rc = cd_run(d, out, sizeof(out),
                "'%s' init wsb --admin alice --host broker1 --kdf-memory 8192 --kdf-passes 1 --passphrase-file pass -q && "
                "'%s' --workspace wsb --passphrase-file pass kms add shared --type file --endpoint \"$PWD/shared.vks\" "
                "--secret-file \"$PWD/shared.pass\" --option kdf_ops=1 --option kdf_mem_kib=8192 -q && "
                "(exec '%s' --workspace wsb --passphrase-file pass broker serve --name demo --provider shared --id broker1 "
                "--listen 127.0.0.1:0 --tls-ca \"$VMENC_ETCD_CACERT\" --tls-cert \"$VMENC_ETCD_DIR/certs/server.crt\" "
                "--tls-key \"$VMENC_ETCD_DIR/certs/server.key\" --endpoints \"$VMENC_ETCD_ENDPOINTS\" --cacert "
                "\"$VMENC_ETCD_CACERT\" --cert \"$VMENC_ETCD_CERT\" --key \"$VMENC_ETCD_KEY\" > broker.out 2>&1 & "
                "echo $! > broker.pid) && for i in $(seq 100); do grep -q listening broker.out && break; sleep 0.05; done; "
                "P=$(sed -n 's/.*\"listening\":\"127.0.0.1:\\([0-9]*\\)\".*/\\1/p' broker.out); [ -n \"$P\" ] && "
                "echo \"P=$P\" >> b.env && echo $P",
                d->self, d->self, d->self);
    out[strcspn(out, "\n")] = '\0';
    if (!cd_check(d, rc == 0, "broker1 (its own workspace wsb: the only holder of the 'shared' credential) serves "
                              "cluster demo on 127.0.0.1:%s", out))
        return;
    rc = cd_run(d, out, sizeof(out),
                ". ./b.env && " H(1) "cluster measurements mode --attestation per-release $E && "
                "for n in 1 2; do T=$(. ./tpm$n.env; echo $SWTPM_TCTI); '%s' cluster host enroll --broker 127.0.0.1:$P "
                "--tls-ca \"$VMENC_ETCD_CACERT\" --tls-cert esx0$n.crt --tls-key esx0$n.key --tpm \"$T\" "
                "--ak-blob \"$PWD/esx0$n.ak\" -q && " H(1) "cluster host approve esx0$n $E || exit 1; done && "
                H(1) "cluster measurements add hv-1.0 --from-tpm \"$T1\" $E",
                d->self, d->self, d->self, d->self);
    if (!cd_check(d, rc == 0, "attestation per release; esx01 and esx02 enrol their TPMs (AK bound to the EK by "
                              "credential activation), approved; measurement hv-1.0 approved"))
        return;
    /* the hosts' 'shared' now points at the broker: their KMS credential goes (kms remove would
     * leave a cluster member without its cluster key's provider for a moment) */
    rc = cd_run(d, out, sizeof(out),
                ". ./b.env && for n in 1 2; do T=$(. ./tpm$n.env; echo $SWTPM_TCTI); f=ws$n/vmenc.conf; "
                "sed -i '/^\\[kms \"shared\"\\]/,$d' $f && printf '[kms \"shared\"]\\ntype = \"kmip\"\\nendpoint = "
                "\"127.0.0.1:%%s\"\\noption = \"ca=%%s\"\\noption = \"cert=%%s\"\\noption = \"key=%%s\"\\n"
                "option = \"tpm_tcti=%%s\"\\noption = \"ak_blob=%%s\"\\n' $P \"$VMENC_ETCD_CACERT\" \"$PWD/esx0$n.crt\" "
                "\"$PWD/esx0$n.key\" \"$T\" \"$PWD/esx0$n.ak\" >> $f || exit 1; done; ! grep -l 'shared.pass' ws1/vmenc.conf "
                "ws2/vmenc.conf");
    cd_check(d, rc == 0, "esx01 and esx02 reach 'shared' through broker1 (KMIP, mutual TLS, a quote per release); "
                         "no host workspace names the KMS credential any more");
    rc = cd_run(d, out, sizeof(out),
                ". ./tpm2.env && tpm2_pcrextend 4:sha256=$(printf 'hypervisor 6.6 (unapproved)' | sha256sum | cut -c1-64)");
    cd_check(d, rc == 0, "esx02 boots another \"hypervisor binary\": PCR 4 extended with its hash");
    rc = cd_run(d, out, sizeof(out),
                "(exec " H(1) "cluster power-on vm01 --seconds 3 --interval-ms 50 --log h1c.log >/dev/null 2>&1 & "
                "echo $! > h1c.pid) && for i in $(seq 200); do grep -q ' OK$' h1c.log 2>/dev/null && break; sleep 0.05; "
                "done; grep -q ' OK$' h1c.log",
                d->self);
    cd_check(d, rc == 0, "esx01 (attested) powers vm01 on: its KEK released by broker1 to the owner after a fresh quote");
    rc = cd_run(d, out, sizeof(out), H(2) "cluster power-on vm02 --seconds 1", d->self);
    cd_check(d, rc == 5, "esx02 is refused vm02's KEK: vm02 stays locked (exit %d)", rc);
    rc = cd_run(d, out, sizeof(out),
                "etcdctl get --prefix /vmenc/demo/broker/events/ --print-value-only | grep -o "
                "'host esx02: quote refused: measurement not approved' | head -1");
    out[strcspn(out, "\n")] = '\0';
    cd_check(d, rc == 0 && out[0] != '\0', "the cluster's event list says why: \"%s\"", out);
    rc = cd_run(d, out, sizeof(out),
                "while kill -0 $(cat h1c.pid) 2>/dev/null; do sleep 0.1; done; "
                "echo $(grep -c ' OK$' h1c.log) $(grep -vc ' OK$\\| OPEN$' h1c.log)");
    int wrote = 0, refused = -1;
    if (sscanf(out, "%d %d", &wrote, &refused) != 2)
        wrote = 0;
    cd_check(d, rc == 0 && wrote > 0 && refused == 0, "esx01 ran vm01 meanwhile: %d writes, %d refused", wrote,
             refused);
    rc = cd_run(d, out, sizeof(out),
                ". ./b.env && " H(1) "cluster measurements add hv-6.6 --from-tpm \"$T2\" $E && " H(2)
                "cluster power-on vm02 --seconds 1 --log h2c.log -q && grep -c ' OK$' h2c.log",
                d->self, d->self);
    out[strcspn(out, "\n")] = '\0';
    cd_check(d, rc == 0, "the administrator approves esx02's new measurement (hv-6.6): esx02 attests again and runs "
                         "vm02 (%s writes)", out);
    rc = cd_run(d, out, sizeof(out),
                ". ./b.env && " H(1) "policy grant bob NoCryptoAdmin -q && " H(1) "--user bob cluster measurements add "
                "evil --digest %064d $E 2>/dev/null; r=$?; " H(1) "audit show | grep -c '\"cluster\\.\\(measurement\\|host\\|"
                "attestation\\)[.a-z]*\",.*\"outcome\":\"\\(success\\|denied\\)'; exit $r",
                d->self, d->self, 0, d->self);
    out[strcspn(out, "\n")] = '\0';
    cd_check(d, rc == 3 && atoi(out) >= 6, "bob (No cryptography administrator) may not approve a measurement (exit %d); the "
                         "administrator's %s attestation edits, allowed and denied, are in esx01's audit log", rc, out);
}

int cluster_demo(cli *c, const char *keep) {
    cdemo d = {.c = c};
    ssize_t n = readlink("/proc/self/exe", d.self, sizeof(d.self) - 1);
    if (n <= 0)
        return cli_fail(c, VMENC_E_IO, "cannot find this program");
    d.self[n] = '\0';
    const char *start = getenv("VMENC_ETCD_START");
    if (start != NULL) {
        snprintf(d.start, sizeof(d.start), "%s", start);
    } else {
        char base[1024];
        snprintf(base, sizeof(base), "%s", d.self);
        char *slash = strrchr(base, '/');
        if (slash)
            *slash = '\0';
        /* build/vmenc or build/demo/vmenc (scripts/demo.sh's build) */
        snprintf(d.start, sizeof(d.start), "%s/../tests/support/etcd/start-etcd-cluster.sh", base);
        if (access(d.start, R_OK) != 0)
            snprintf(d.start, sizeof(d.start), "%s/../../tests/support/etcd/start-etcd-cluster.sh", base);
    }
    if (access(d.start, R_OK) != 0)
        return cli_fail(c, VMENC_E_NOT_FOUND, "the etcd start script %s (set VMENC_ETCD_START)", d.start);
    char tmpl[] = "/tmp/vmenc-cluster-demo-XXXXXX";
    if (keep != NULL) {
        snprintf(d.dir, sizeof(d.dir), "%s", keep);
        if (mkdir(keep, 0700) != 0 && errno != EEXIST)
            return cli_fail(c, VMENC_E_IO, "cannot make %s", keep);
    } else if (mkdtemp(tmpl) != NULL) {
        snprintf(d.dir, sizeof(d.dir), "%s", tmpl);
    } else {
        return cli_fail(c, VMENC_E_IO, "cannot make a temporary directory");
    }
    printf("vmenc %s cluster demo: two hosts, one control plane on etcd, checked step by step (in %s)\n",
           vmenc_version_string(), d.dir);
    cluster_story(&d);
    broker_story(&d);
    char stop[1300];
    snprintf(stop, sizeof(stop), "%s", d.start);
    char *sl = strrchr(stop, '/');
    char out[256];
    if (sl != NULL) {
        snprintf(sl + 1, sizeof(stop) - (size_t)(sl + 1 - stop), "stop-etcd-cluster.sh");
        (void)cd_run(&d, out, sizeof(out), "[ -f h1.pid ] && kill -9 $(cat h1.pid) 2>/dev/null; bash '%s' '%s/etcd' >/dev/null",
                     stop, d.dir);
        /* the broker act's processes: the broker, esx01's writer, the TPMs */
        (void)cd_run(&d, out, sizeof(out),
                     "for f in broker.pid h1c.pid; do [ -f $f ] && kill $(cat $f) 2>/dev/null; done; "
                     "for n in 1 2; do [ -d tpm$n ] && bash \"$(dirname '%s')/../../tpm/stop-swtpm.sh\" tpm$n 2>/dev/null; done; true",
                     stop);
    }
    if (keep == NULL)
        (void)cd_run(&d, out, sizeof(out), "cd / && rm -rf '%s'", d.dir);
    printf("\n%d of %d checks passed\n", d.checks - d.fails, d.checks);
    return d.fails == 0 ? EXIT_OK : EXIT_FAILED;
}

const verb_def cluster_verbs[] = {
    {"init", cl_init,
     "--endpoints URLS --cacert F --cert F --key F [--name C] [--key-provider ALIAS] [--ttl S]",
     "make this workspace a host of cluster C, creating the cluster's documents if absent",
     "Options:\n"
     "  --endpoints URLS      etcd client URLs, comma-separated https://HOST:PORT\n"
     "  --cacert, --cert, --key  PEM files for mutual TLS with etcd\n"
     "  --name C              the cluster (default vmenc)\n"
     "  --key-provider ALIAS  whose KEK wraps the cluster key (default: the audit key provider);\n"
     "                        every host needs this provider under this alias\n"
     "  --ttl S               lease TTL in seconds (default 5): a host fences itself this long\n"
     "                        (minus a margin) after its last renewal\n"
     "The cluster's policy starts as this workspace's. Needs Cryptographer.RegisterHost on the root.\n"},
    {"join", cl_join, "--endpoints URLS --cacert F --cert F --key F [--name C] [--ttl S]",
     "make this workspace a host of an existing cluster",
     "The cluster's policy replaces this workspace's while it is a member (the local document is kept\n"
     "for 'cluster leave'); the host is added to its inventory. Needs Cryptographer.RegisterHost.\n"},
    {"leave", cl_leave, "", "deregister this host and go back to the local policy", ""},
    {"status", cl_status, "", "this host's session: lease, fencing deadline, watch, etcd members", ""},
    {"hosts", cl_hosts, "", "the registered hosts and whether they are up (hold a live session)", ""},
    {"owner", cl_owner, "VM", "which host owns VM for write", ""},
    {"host", cluster_host_cmd, "enroll|approve|revoke ...", "a host's TPM binding with the key broker (cmd_broker.c)",
     "  enroll --broker H:P --tls-ca F --tls-cert F --tls-key F --tpm TCTI --ak-blob PATH\n"
     "  approve|revoke HOST --endpoints URLS --cacert F --cert F --key F [--name C]\n"},
    {"measurements", cluster_measurements_cmd, "add|list|remove|mode ...",
     "approved TPM measurements and the attestation mode (cmd_broker.c)",
     "  add NAME (--digest HEX | --from-tpm TCTI) [--pcrs SEL]; remove NAME; list;\n"
     "  mode --attestation off|period=S|per-release [--pcrs SEL] [--ek-ca F]\n"
     "  each with --endpoints URLS --cacert F --cert F --key F [--name C]\n"},
    {"take-over", cl_take_over, "VM", "take VM over after its owner's lease expired (HA restart)",
     "Refused (exit 7, VMENC_E_LOCKED) while the owner's lease lives. Needs Cryptographer.RegisterVM.\n"},
    {"hand-over", cl_hand_over, "VM --to HOST [--timeout S]",
     "migrate VM to another host of the cluster on a shared datastore (source side)",
     "Offers VM to HOST and waits (default 30 s) for 'vmenc cluster accept VM' there; the placement\n"
     "and ownership move in one etcd transaction. On timeout the offer is withdrawn and VM stays.\n"
     "Needs Resource.ColdMigrate (+ Cryptographer.Migrate). Between datastores: 'vmenc migrate send'.\n"},
    {"accept", cl_accept, "VM [--timeout S]", "take VM over from the host that offers it to this one",
     "Waits (default 30 s) for an offer, then commits it in one etcd transaction (refused if the\n"
     "source lost its lease or the VM changed since the offer). Needs VirtualMachine.Inventory.Register.\n"},
    {"power-on", cl_power_on, "VM [--seconds N] [--interval-ms N] [--log FILE] [--keep-going]",
     "run VM's writes as this host: open its first disk for write and write a tagged sector",
     "Each write is logged as 'HOST LEASE SEQ TIME_MS STATUS'. Stops at the first refused write\n"
     "(fenced: VMENC_E_LEASE_EXPIRED) unless --keep-going, after --seconds, or on SIGTERM.\n"},
    {"bench", cl_bench, "[--decisions N] [--vm VM] [--ops N]",
     "policy decisions per second in this workspace's mode; with --ops, p50/p99 of grant, write-open, create",
     "Creates --ops VMs named bench-PID-I. Compare a cluster host with a single-host workspace in one run.\n"},
    {NULL, NULL, NULL, NULL, NULL},
};
