/*
 * integrations/nbdkit/control_server.c - the plugin's control endpoint
 * (control_server.h; protocol in docs/nbdkit.md, "Control endpoint").
 *
 * Threads: one acceptor (started in .after_fork: nbdkit may fork before
 * that, and a fork keeps no thread), one short-lived thread per connection,
 * and at most one worker that runs the conversion through the library with
 * VMENC_APPLY_ONLINE on the VM and disk the plugin already has open. Guest
 * I/O never waits for any of them: the library's engine holds a segment
 * only while it moves, and nothing here takes a lock that pread/pwrite
 * take. |mu| guards the job record; no library call is made under it.
 *
 * Safety rule: SO_PEERCRED admits this process's user and root only; the
 * principal a caller names is then authorized and audited by the library
 * (the conversion's own policy check and events, in this process's audit
 * log), so the endpoint grants nothing a local call would not.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, pipe2 */
#endif
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "control_server.h"
#include "ctl_sock.h"

#define REQUEST_TIMEOUT_MS 5000 /* a connected caller must say what it wants within this */
#define WAKE_MS 200             /* how often a streaming connection looks at its socket */

struct ctl_server {
    vmenc_workspace *ws;
    vmenc_vm *vm;
    char vm_name[CTL_NAME_CAP];
    char uuid[CTL_UUID_CAP];
    int dirfd;                  /* WORKSPACE/run, or -1 for control=PATH */
    char name[4096];            /* the socket's name in dirfd, or its path */
    int listen_fd;
    pid_t owner;                /* only this process removes the socket */
    int stop_pipe[2];
    pthread_t acceptor;
    bool acceptor_up;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int conns;                  /* connection threads alive */
    bool stopping;
    /* the job: at most one conversion at a time */
    bool running, worker_joinable, cancel;
    pthread_t worker;
    ctl_msg req;                /* what runs (CONVERT) */
    uint64_t job;               /* increments when one starts */
    uint64_t gen;               /* increments at every change below */
    ctl_msg progress;           /* last PROGRESS */
    bool has_result;
    int32_t result;
    char message[CTL_MESSAGE_CAP];
    unsigned delay_ms;          /* tests only: VMENC_TEST_PROGRESS_DELAY_MS, a slow conversion */
};

/* ---- the worker ---------------------------------------------------------------- */

static int on_progress(void *ctx, const char *disk_id, const vmenc_convert_progress *p) {
    ctl_server *s = ctx;
    pthread_mutex_lock(&s->mu);
    ctl_set(s->progress.disk, sizeof(s->progress.disk), disk_id);
    s->progress.bytes_done = p->bytes_done;
    s->progress.bytes_total = p->bytes_total;
    s->progress.bytes_per_second = p->bytes_per_second;
    s->progress.done = p->done ? 1 : 0;
    s->gen++;
    bool stop = s->cancel || s->stopping;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->delay_ms && !stop && !p->done) { /* as the CLI's knob of the same name: tests only */
        struct timespec ts = {.tv_sec = s->delay_ms / 1000, .tv_nsec = (long)(s->delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return stop ? 1 : 0;
}

static vmenc_policy_op op_of(uint8_t kind) {
    return kind == CTL_KIND_ENCRYPT ? VMENC_OP_ENCRYPT_VM
           : kind == CTL_KIND_DECRYPT ? VMENC_OP_DECRYPT_VM
                                      : VMENC_OP_REKEY_DEEP;
}

/* explain writes why |st| happened, for the caller: a denial names the
 * missing privilege (the check is not audited; the refusal already was). */
static void explain(ctl_server *s, const ctl_msg *r, vmenc_status st, bool cancelled, char *out, size_t cap) {
    if (st == VMENC_OK) {
        snprintf(out, cap, "%s of VM '%s' done", ctl_kind_name(r->kind), s->vm_name);
        return;
    }
    if (st == VMENC_E_INTERRUPTED && cancelled) {
        snprintf(out, cap, "stopped cleanly between segments; the conversion is resumable (ask again)");
        return;
    }
    char why[VMENC_POLICY_NAME_MAX * 2 + 256] = "";
    if ((st == VMENC_E_DENIED || st == VMENC_E_HOST_MODE) && r->kind != CTL_KIND_RESUME) {
        vmenc_vm_info info = {.struct_size = sizeof(info)};
        int enc = vmenc_vm_get_info(s->vm, &info) == VMENC_OK && info.encrypted;
        vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = op_of(r->kind), .vm = s->vm_name,
                                   .host = vmenc_host_id(vmenc_workspace_host(s->ws)),
                                   .flags = enc ? VMENC_REQ_VM_ENCRYPTED : 0};
        vmenc_policy_decision d = {.struct_size = sizeof(d)};
        if (vmenc_policy_check(vmenc_workspace_policy(s->ws), r->principal, &rq, &d) != VMENC_OK || !d.allowed)
            snprintf(why, sizeof(why), ": %s", d.message);
    }
    snprintf(out, cap, "%s of VM '%s' as '%s' failed: %s%s", ctl_kind_name(r->kind), s->vm_name, r->principal,
             vmenc_strerror(st), why);
}

static void *worker_main(void *arg) {
    ctl_server *s = arg;
    pthread_mutex_lock(&s->mu);
    ctl_msg r = s->req;
    pthread_mutex_unlock(&s->mu);
    vmenc_apply_options ao = {.struct_size = sizeof(ao), .progress = on_progress, .progress_ctx = s,
                              .segment_bytes = r.segment, .flags = VMENC_APPLY_ONLINE};
    vmenc_status st;
    switch (r.kind) {
    case CTL_KIND_ENCRYPT:
        st = vmenc_vm_apply_storage_policy_ex(s->vm, r.principal, r.policy[0] ? r.policy : "VM Encryption Policy",
                                              &ao);
        break;
    case CTL_KIND_DECRYPT:
        st = vmenc_vm_apply_storage_policy_ex(s->vm, r.principal, r.policy[0] ? r.policy : "Datastore Default", &ao);
        break;
    case CTL_KIND_REKEY_DEEP:
        st = vmenc_vm_rekey_deep(s->vm, r.principal, &ao);
        break;
    default: /* each interrupted conversion is authorized as its kind */
        st = vmenc_vm_resume(s->vm, r.principal, &ao);
        break;
    }
    pthread_mutex_lock(&s->mu);
    bool cancelled = s->cancel || s->stopping;
    pthread_mutex_unlock(&s->mu);
    char msg[CTL_MESSAGE_CAP];
    explain(s, &r, st, cancelled, msg, sizeof(msg));
    nbdkit_debug("vmenc: control: %s", msg);
    pthread_mutex_lock(&s->mu);
    s->running = false;
    s->progress.running = 0;
    s->has_result = true;
    s->result = st;
    ctl_set(s->message, sizeof(s->message), msg);
    s->gen++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- one connection ----------------------------------------------------------------- */

static void reply_result(ctl_conn *c, vmenc_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reply_result(ctl_conn *c, vmenc_status st, const char *fmt, ...) {
    ctl_msg m = {.type = CTL_RESULT, .status = st};
    char buf[CTL_MESSAGE_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    ctl_set(m.message, sizeof(m.message), buf);
    (void)ctl_send(c, &m);
}

/* start_job begins |r| if nothing runs. Lock held. */
static vmenc_status start_job(ctl_server *s, const ctl_msg *r, uint64_t *out_job) {
    if (s->stopping)
        return VMENC_E_BAD_STATE;
    if (s->running)
        return VMENC_E_LOCKED;
    if (s->worker_joinable) { /* the last one has returned: running is cleared as its last act */
        pthread_join(s->worker, NULL);
        s->worker_joinable = false;
    }
    s->req = *r;
    s->cancel = false;
    s->running = true;
    s->has_result = false;
    s->job++;
    memset(&s->progress, 0, sizeof(s->progress));
    s->progress.type = CTL_PROGRESS;
    s->progress.running = 1;
    s->progress.kind = r->kind;
    s->gen++;
    if (pthread_create(&s->worker, NULL, worker_main, s) != 0) {
        s->running = false;
        return VMENC_E_NOMEM;
    }
    s->worker_joinable = true;
    *out_job = s->job;
    return VMENC_OK;
}

/* stream sends progress of job |job| until it ends (then its result), the
 * caller goes away (the conversion goes on) or the plugin stops. A CANCEL
 * from the caller stops the conversion between segments. */
static void stream(ctl_server *s, ctl_conn *c, uint64_t job) {
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        if (s->gen == seen && s->running && !s->stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += WAKE_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            (void)pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
        bool changed = s->gen != seen, finished = s->job != job || !s->running;
        seen = s->gen;
        ctl_msg p = s->progress;
        int32_t result = s->result;
        char message[CTL_MESSAGE_CAP];
        memcpy(message, s->message, sizeof(message));
        bool mine = s->job == job && s->has_result;
        pthread_mutex_unlock(&s->mu);
        if (changed && p.disk[0] != '\0' && ctl_send(c, &p) != CTL_IO_OK)
            return;
        if (finished) {
            if (mine)
                reply_result(c, result, "%s", message);
            else
                reply_result(c, VMENC_E_INTERRUPTED, "the plugin is stopping");
            return;
        }
        ctl_msg in;
        ctl_io io = ctl_recv(c, &in, 0, NULL);
        if (io == CTL_IO_CLOSED || io == CTL_IO_BAD)
            return; /* the caller left: the conversion goes on */
        if (io == CTL_IO_OK && in.type == CTL_CANCEL) {
            pthread_mutex_lock(&s->mu);
            if (s->job == job)
                s->cancel = true;
            pthread_mutex_unlock(&s->mu);
            nbdkit_debug("vmenc: control: '%s' cancels the conversion", in.principal);
        }
    }
}

static void handle_convert(ctl_server *s, ctl_conn *c, const ctl_msg *r) {
    if (r->kind < CTL_KIND_ENCRYPT || r->kind > CTL_KIND_RESUME || r->principal[0] == '\0' ||
        (r->kind >= CTL_KIND_REKEY_DEEP && r->policy[0] != '\0')) {
        reply_result(c, VMENC_E_INVALID_ARG, "bad conversion request");
        return;
    }
    /* the caller found this socket by the VM's UUID; both must be ours */
    if (strcmp(r->vm, s->vm_name) != 0 || strcmp(r->uuid, s->uuid) != 0) {
        reply_result(c, VMENC_E_INVALID_ARG, "this endpoint serves VM '%s' (%s), not '%s' (%s)", s->vm_name,
                     s->uuid, r->vm, r->uuid);
        return;
    }
    uint64_t job = 0;
    pthread_mutex_lock(&s->mu);
    vmenc_status st = start_job(s, r, &job);
    ctl_msg running = s->req;
    pthread_mutex_unlock(&s->mu);
    if (st == VMENC_E_LOCKED) {
        reply_result(c, st, "a %s of VM '%s' asked by '%s' is running already", ctl_kind_name(running.kind),
                     s->vm_name, running.principal);
        return;
    }
    if (st != VMENC_OK) {
        reply_result(c, st, "cannot start the conversion: %s", vmenc_strerror(st));
        return;
    }
    nbdkit_debug("vmenc: control: %s of VM '%s' as '%s' begins", ctl_kind_name(r->kind), s->vm_name, r->principal);
    stream(s, c, job);
}

static void handle_status(ctl_server *s, ctl_conn *c) {
    pthread_mutex_lock(&s->mu);
    ctl_msg p = s->progress;
    p.type = CTL_PROGRESS;
    bool running = s->running, has = s->has_result;
    int32_t result = s->result;
    char message[CTL_MESSAGE_CAP];
    memcpy(message, s->message, sizeof(message));
    pthread_mutex_unlock(&s->mu);
    if (ctl_send(c, &p) != CTL_IO_OK)
        return;
    if (running)
        reply_result(c, VMENC_OK, "running");
    else if (has)
        reply_result(c, result, "last: %s", message);
    else
        reply_result(c, VMENC_OK, "idle");
}

typedef struct conn_arg {
    ctl_server *s;
    int fd;
} conn_arg;

static void *conn_main(void *arg) {
    conn_arg a = *(conn_arg *)arg;
    free(arg);
    ctl_server *s = a.s;
    ctl_conn *c = calloc(1, sizeof(*c));
    uid_t uid = (uid_t)-1;
    pid_t pid = 0;
    if (c == NULL)
        goto out;
    c->fd = a.fd;
    if (ctl_peer(a.fd, &uid, &pid) != 0 || (uid != geteuid() && uid != 0)) {
        nbdkit_error("vmenc: control endpoint of VM '%s': refused a caller running as uid %d (pid %d): only uid "
                     "%d and root may use it", s->vm_name, (int)uid, (int)pid, (int)geteuid());
        reply_result(c, VMENC_E_DENIED, "only uid %d and root may use this endpoint", (int)geteuid());
        goto out;
    }
    ctl_msg r;
    vmenc_status why = VMENC_OK;
    ctl_io io = ctl_recv(c, &r, REQUEST_TIMEOUT_MS, &why);
    if (io == CTL_IO_BAD) {
        reply_result(c, why == VMENC_E_BAD_VERSION ? VMENC_E_BAD_VERSION : VMENC_E_PARSE,
                     "malformed request (%s); this endpoint speaks version %u", vmenc_strerror(why), CTL_VERSION);
        goto out;
    }
    if (io != CTL_IO_OK)
        goto out;
    switch (r.type) {
    case CTL_CONVERT: handle_convert(s, c, &r); break;
    case CTL_STATUS: handle_status(s, c); break;
    case CTL_CANCEL: {
        pthread_mutex_lock(&s->mu);
        bool running = s->running;
        s->cancel = s->cancel || running;
        pthread_mutex_unlock(&s->mu);
        reply_result(c, running ? VMENC_OK : VMENC_E_BAD_STATE, running ? "cancel requested" : "no conversion runs");
        break;
    }
    default: reply_result(c, VMENC_E_PARSE, "not a request"); break;
    }
out:
    /* say we are done and let the caller read the reply: closing with its
     * request unread would reset the connection and lose the reply */
    (void)shutdown(a.fd, SHUT_WR);
    struct pollfd p = {.fd = a.fd, .events = POLLIN};
    char sink[512];
    while (poll(&p, 1, 200) > 0 && recv(a.fd, sink, sizeof(sink), 0) > 0) {
    }
    close(a.fd);
    free(c);
    pthread_mutex_lock(&s->mu);
    s->conns--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void *acceptor_main(void *arg) {
    ctl_server *s = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = s->listen_fd, .events = POLLIN}, {.fd = s->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            nbdkit_error("vmenc: control endpoint: poll: %m");
            return NULL;
        }
        if (p[1].revents != 0)
            return NULL;
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED)
                poll(NULL, 0, 100); /* out of descriptors or memory: do not spin */
            continue;
        }
        conn_arg *a = malloc(sizeof(*a));
        pthread_t t;
        pthread_attr_t at;
        bool ok = a != NULL && pthread_attr_init(&at) == 0;
        if (ok) {
            (void)pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
            a->s = s;
            a->fd = fd;
            pthread_mutex_lock(&s->mu);
            s->conns++;
            pthread_mutex_unlock(&s->mu);
            ok = pthread_create(&t, &at, conn_main, a) == 0;
            pthread_attr_destroy(&at);
            if (!ok) {
                pthread_mutex_lock(&s->mu);
                s->conns--;
                pthread_mutex_unlock(&s->mu);
            }
        }
        if (!ok) {
            free(a);
            close(fd);
        }
    }
}

/* ---- lifetime ---------------------------------------------------------------------- */

int ctl_server_open(vmenc_workspace *ws, vmenc_vm *vm, const char *workspace_dir, const char *path,
                    ctl_server **out) {
    ctl_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        nbdkit_error("vmenc: out of memory");
        return -1;
    }
    s->ws = ws;
    s->vm = vm;
    s->dirfd = s->listen_fd = s->stop_pipe[0] = s->stop_pipe[1] = -1;
    ctl_set(s->vm_name, sizeof(s->vm_name), vmenc_vm_name(vm));
    ctl_set(s->uuid, sizeof(s->uuid), vmenc_vm_uuid(vm));
    const char *d = getenv("VMENC_TEST_PROGRESS_DELAY_MS");
    s->delay_ms = d != NULL ? (unsigned)strtoul(d, NULL, 10) : 0;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    char err[512];
    if (path == NULL) {
        s->dirfd = ctl_run_dir_open(workspace_dir, 1, err, sizeof(err));
        if (s->dirfd < 0) {
            nbdkit_error("vmenc: control endpoint: %s", err);
            goto fail;
        }
        if (ctl_sock_name(s->uuid, s->name, sizeof(s->name)) != 0) {
            nbdkit_error("vmenc: control endpoint: VM '%s' has no canonical UUID", s->vm_name);
            goto fail;
        }
    } else if (snprintf(s->name, sizeof(s->name), "%s", path) >= (int)sizeof(s->name)) {
        nbdkit_error("vmenc: control=%s: path too long", path);
        goto fail;
    }
    s->listen_fd = ctl_listen_at(s->dirfd, s->name);
    if (s->listen_fd < 0 && errno == EADDRINUSE) {
        nbdkit_debug("vmenc: control endpoint of VM '%s' is served by another process already; none here",
                     s->vm_name);
        ctl_server_close(s);
        *out = NULL;
        return 1;
    }
    if (s->listen_fd < 0) {
        nbdkit_error("vmenc: control endpoint %s%s%s: %m", path ? "" : workspace_dir, path ? "" : "/run/", s->name);
        goto fail;
    }
    s->owner = getpid();
    if (pipe2(s->stop_pipe, O_CLOEXEC) != 0) {
        nbdkit_error("vmenc: control endpoint: pipe: %m");
        goto fail;
    }
    nbdkit_debug("vmenc: control endpoint of VM '%s': %s%s%s", s->vm_name, path ? "" : workspace_dir,
                 path ? "" : "/run/", s->name);
    *out = s;
    return 0;
fail:
    ctl_server_close(s);
    return -1;
}

int ctl_server_start(ctl_server *s) {
    if (s == NULL || s->acceptor_up)
        return 0;
    s->owner = getpid(); /* after a fork, the serving process owns the socket */
    if (pthread_create(&s->acceptor, NULL, acceptor_main, s) != 0) {
        nbdkit_error("vmenc: control endpoint: cannot start its thread");
        return -1;
    }
    s->acceptor_up = true;
    return 0;
}

void ctl_server_close(ctl_server *s) {
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    s->cancel = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->acceptor_up) {
        ssize_t w = write(s->stop_pipe[1], "x", 1);
        (void)w;
        pthread_join(s->acceptor, NULL);
    }
    if (s->worker_joinable)
        pthread_join(s->worker, NULL); /* it stops after the segment in flight */
    pthread_mutex_lock(&s->mu);
    while (s->conns > 0)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        if (s->owner == getpid())
            (void)(s->dirfd >= 0 ? unlinkat(s->dirfd, s->name, 0) : unlink(s->name));
    }
    if (s->stop_pipe[0] >= 0)
        close(s->stop_pipe[0]);
    if (s->stop_pipe[1] >= 0)
        close(s->stop_pipe[1]);
    if (s->dirfd >= 0)
        close(s->dirfd);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
