/*
 * integrations/control/ctl_sock.h - the control endpoint's socket: where it
 * lives (WORKSPACE/run/<VM-UUID>.ctl, a directory private to the host's
 * user), making it (the serving process), finding it (the CLI), who is at
 * the other end (SO_PEERCRED) and moving ctl_proto frames over it.
 * docs/nbdkit.md, "Control endpoint", describes the whole exchange.
 *
 * Safety rule: nothing under the datastore decides where the socket is;
 * WORKSPACE/run must be a real directory (not a symlink) owned by this user
 * with no group or other access, and it is reached through an O_NOFOLLOW
 * descriptor (/proc/self/fd/N/NAME), so a path swapped underneath cannot
 * redirect a bind or a connect.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_CTL_SOCK_H
#define VMENC_CTL_SOCK_H

#include <stddef.h>
#include <sys/types.h>

#include "ctl_proto.h"

#define CTL_RUN_DIR "run"

/* ctl_run_dir_open opens WORKSPACE/run (made 0700 first if |create|) and
 * checks it: a directory, owned by the effective user, no group/other
 * permission bits. Returns the descriptor, or -1 with errno (ENOENT when
 * absent, EPERM when the checks fail) and a reason in |err|. */
int ctl_run_dir_open(const char *workspace, int create, char *err, size_t err_cap);

/* ctl_sock_name writes "<uuid>.ctl" for a canonical VM UUID (8-4-4-4-12
 * hex). -1 (EINVAL) for anything else. */
int ctl_sock_name(const char *uuid, char *out, size_t cap);

/* ctl_listen_at binds a listening Unix socket |name| in directory |dirfd|
 * (a relative |name|) or at the absolute path |name| (dirfd -1), mode 0600.
 * A socket already there that refuses connections is stale (its process
 * died) and is replaced; one that accepts is live: -1 with EADDRINUSE. */
int ctl_listen_at(int dirfd, const char *name);

/* ctl_connect_at connects to |name| as ctl_listen_at names it. -1 with
 * errno: ENOENT (none), ECONNREFUSED (stale), ... */
int ctl_connect_at(int dirfd, const char *name);

/* ctl_peer writes the peer's uid and pid (SO_PEERCRED). -1 on failure. */
int ctl_peer(int fd, uid_t *out_uid, pid_t *out_pid);

/* A connection: the descriptor and bytes received but not yet decoded. */
typedef struct ctl_conn {
    int fd;
    size_t len;
    uint8_t buf[2 * CTL_MAX_FRAME];
} ctl_conn;

typedef enum ctl_io {
    CTL_IO_OK = 0,
    CTL_IO_CLOSED = 1,  /* the peer closed (or reset) the connection */
    CTL_IO_TIMEOUT = 2, /* nothing complete within the time */
    CTL_IO_BAD = 3      /* a malformed frame (|*why| says which way) or an I/O error */
} ctl_io;

/* ctl_send writes one frame (MSG_NOSIGNAL: a gone peer is an error, not
 * SIGPIPE). */
ctl_io ctl_send(ctl_conn *c, const ctl_msg *m);

/* ctl_recv returns the next frame, waiting up to |timeout_ms| (0: only what
 * has arrived; -1: forever). |why| (may be NULL) gets the decode status of a
 * CTL_IO_BAD frame. */
ctl_io ctl_recv(ctl_conn *c, ctl_msg *m, int timeout_ms, vmenc_status *why);

#endif /* VMENC_CTL_SOCK_H */
