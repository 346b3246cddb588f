/*
 * integrations/control/ctl_sock.c - the control endpoint's socket plumbing
 * (see ctl_sock.h; protocol in docs/nbdkit.md, "Control endpoint"): the
 * private run directory, bind/connect through a directory descriptor, peer
 * credentials, and framed send/receive over ctl_proto.
 *
 * Safety rule: the run directory is trusted only after fstat on the
 * descriptor we will use (owner = us, mode 0700), never by path.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* struct ucred */
#endif
#include "ctl_sock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int ctl_run_dir_open(const char *workspace, int create, char *err, size_t err_cap) {
    int ws = open(workspace, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (ws < 0) {
        snprintf(err, err_cap, "workspace %s: %s", workspace, strerror(errno));
        return -1;
    }
    if (create && mkdirat(ws, CTL_RUN_DIR, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        snprintf(err, err_cap, "cannot make %s/%s: %s", workspace, CTL_RUN_DIR, strerror(e));
        close(ws);
        errno = e;
        return -1;
    }
    int fd = openat(ws, CTL_RUN_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(ws);
    if (fd < 0) {
        snprintf(err, err_cap, "%s/%s: %s", workspace, CTL_RUN_DIR, strerror(e));
        errno = e;
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
        snprintf(err, err_cap, "%s/%s must be a directory owned by uid %u with mode 0700 (it is uid %u, mode %03o)",
                 workspace, CTL_RUN_DIR, (unsigned)geteuid(), (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777));
        close(fd);
        errno = EPERM;
        return -1;
    }
    return fd;
}

int ctl_sock_name(const char *uuid, char *out, size_t cap) {
    static const int dash[] = {8, 13, 18, 23};
    if (uuid == NULL || strlen(uuid) != 36 || cap < 41) {
        errno = EINVAL;
        return -1;
    }
    for (int i = 0, d = 0; i < 36; i++) {
        char ch = uuid[i];
        if (d < 4 && i == dash[d]) {
            if (ch != '-')
                goto bad;
            d++;
        } else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F'))) {
            goto bad;
        }
    }
    snprintf(out, cap, "%s.ctl", uuid);
    return 0;
bad:
    errno = EINVAL;
    return -1;
}

/* addr_of makes the address: through /proc/self/fd for a directory
 * descriptor (short, whatever the workspace path's length, and immune to
 * a renamed path), else the absolute path itself. */
static int addr_of(int dirfd, const char *name, struct sockaddr_un *sa) {
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    int n = dirfd >= 0 ? snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", dirfd, name)
                       : snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", name);
    if (dirfd >= 0 && strchr(name, '/') != NULL) {
        errno = EINVAL;
        return -1;
    }
    if (n < 0 || (size_t)n >= sizeof(sa->sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

int ctl_connect_at(int dirfd, const char *name) {
    struct sockaddr_un sa;
    if (addr_of(dirfd, name, &sa) != 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int unlink_name(int dirfd, const char *name) {
    return dirfd >= 0 ? unlinkat(dirfd, name, 0) : unlink(name);
}

int ctl_listen_at(int dirfd, const char *name) {
    struct sockaddr_un sa;
    if (addr_of(dirfd, name, &sa) != 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            break;
        int e = errno;
        if (e != EADDRINUSE || attempt == 1) {
            close(fd);
            errno = e;
            return -1;
        }
        /* something is there: a live endpoint, or a dead plugin's socket */
        int probe = ctl_connect_at(dirfd, name);
        if (probe >= 0) {
            close(probe);
            close(fd);
            errno = EADDRINUSE;
            return -1;
        }
        if (errno != ECONNREFUSED || unlink_name(dirfd, name) != 0) {
            close(fd);
            errno = EADDRINUSE;
            return -1;
        }
    }
    /* the directory is private already; the socket is the owner's alone too */
    int r = dirfd >= 0 ? fchmodat(dirfd, name, 0600, 0) : chmod(name, 0600);
    if (r != 0 || listen(fd, 16) != 0) {
        int e = errno;
        (void)unlink_name(dirfd, name);
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int ctl_peer(int fd, uid_t *out_uid, pid_t *out_pid) {
    struct ucred cr;
    socklen_t len = sizeof(cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0 || len != sizeof(cr))
        return -1;
    *out_uid = cr.uid;
    *out_pid = cr.pid;
    return 0;
}

ctl_io ctl_send(ctl_conn *c, const ctl_msg *m) {
    uint8_t frame[CTL_MAX_FRAME];
    size_t len = 0;
    if (ctl_encode(m, frame, sizeof(frame), &len) != VMENC_OK)
        return CTL_IO_BAD;
    for (size_t off = 0; off < len;) {
        ssize_t n = send(c->fd, frame + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return errno == EPIPE || errno == ECONNRESET ? CTL_IO_CLOSED : CTL_IO_BAD;
        off += (size_t)n;
    }
    return CTL_IO_OK;
}

ctl_io ctl_recv(ctl_conn *c, ctl_msg *m, int timeout_ms, vmenc_status *why) {
    for (;;) {
        size_t used = 0;
        vmenc_status s = c->len > 0 ? ctl_decode(c->buf, c->len, m, &used) : VMENC_E_TRUNCATED;
        if (s == VMENC_OK) {
            memmove(c->buf, c->buf + used, c->len - used);
            c->len -= used;
            return CTL_IO_OK;
        }
        if (s != VMENC_E_TRUNCATED) {
            if (why != NULL)
                *why = s;
            return CTL_IO_BAD;
        }
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int r = poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            if (why != NULL)
                *why = VMENC_E_IO;
            return CTL_IO_BAD;
        }
        if (r == 0)
            return CTL_IO_TIMEOUT;
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return CTL_IO_CLOSED;
        if (n < 0) {
            if (why != NULL)
                *why = VMENC_E_IO;
            return CTL_IO_BAD;
        }
        c->len += (size_t)n;
    }
}
