/*
 * tests/kms/pykmip_ctl.h - start and stop real PyKMIP servers (through
 * tests/kms/pykmip.sh) from a C test or benchmark, in a private temp dir,
 * on free ports; run PyKMIP's own client (kmip_interop.py).
 *
 * Servers are stopped by pykmip_env_cleanup, and also if the process dies
 * first (crash, failed assertion, ctest timeout): a watchdog process in its
 * own session waits for the end of a pipe only this process holds, then
 * stops every server left in the dir and removes the dir.
 *
 * Header-only (static functions) so the test and the benchmark share it.
 */
#ifndef VMENC_TESTS_KMS_PYKMIP_CTL_H
#define VMENC_TESTS_KMS_PYKMIP_CTL_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct pykmip_env {
    char dir[PATH_MAX];      /* temp dir: certs/, server logs, DBs */
    char script[PATH_MAX];   /* tests/kms/pykmip.sh */
    char interop[PATH_MAX];  /* tests/kms/kmip_interop.py */
    const char *python;      /* /usr/bin/python3 or $PYKMIP_PYTHON */
    int watchdog_fd;         /* write end of the watchdog pipe */
    pid_t watchdog;
} pykmip_env;

/* pykmip_run runs |argv| and waits; stdout goes to |out| (|cap| bytes,
 * NUL-terminated, trailing newline removed) or /dev/null. Returns the exit
 * status, or -1. */
__attribute__((unused)) static int pykmip_run(char *const argv[], char *out, size_t cap) {
    int fds[2] = {-1, -1};
    if (out != NULL && pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(out != NULL ? fds[1] : null, 1);
        if (out != NULL) {
            close(fds[0]);
            close(fds[1]);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    size_t len = 0;
    if (out != NULL) {
        close(fds[1]);
        ssize_t n;
        while (len < cap - 1 && (n = read(fds[0], out + len, cap - 1 - len)) > 0)
            len += (size_t)n;
        char sink[256];
        while (read(fds[0], sink, sizeof(sink)) > 0) {
        }
        close(fds[0]);
        out[len] = '\0';
        while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r'))
            out[--len] = '\0';
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* pykmip_available: the interpreter can import kmip. */
__attribute__((unused)) static int pykmip_available(const pykmip_env *e) {
    char *const argv[] = {(char *)e->python, "-c", "import kmip", NULL};
    return pykmip_run(argv, NULL, 0) == 0;
}

/* pykmip_free_port asks the kernel for a free TCP port on 127.0.0.1. */
__attribute__((unused)) static int pykmip_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

__attribute__((unused)) static void pykmip_start_watchdog(pykmip_env *e) {
    int fds[2];
    if (pipe(fds) != 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        setsid(); /* not killed with our process group (Ctrl-C, ctest) */
        dup2(fds[0], 0);
        close(fds[0]);
        close(fds[1]);
        char cmd[6 * PATH_MAX];
        snprintf(cmd, sizeof(cmd),
                 "cat >/dev/null; for f in '%s'/server-*.pid; do [ -f \"$f\" ] || continue; "
                 "p=${f##*/server-}; bash '%s' --stop '%s' \"${p%%.pid}\" 2>/dev/null & done; wait; rm -rf '%s'",
                 e->dir, e->script, e->dir, e->dir);
        execl("/bin/bash", "bash", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    if (pid < 0) {
        close(fds[1]);
        return;
    }
    fcntl(fds[1], F_SETFD, FD_CLOEXEC); /* children must not keep it open */
    e->watchdog_fd = fds[1];
    e->watchdog = pid;
}

/* pykmip_env_init makes the temp dir and the watchdog. |src| is the source
 * tree (VMENC_SOURCE_DIR). Returns 0 on success. */
__attribute__((unused)) static int pykmip_env_init(pykmip_env *e, const char *src) {
    memset(e, 0, sizeof(*e));
    e->watchdog_fd = -1;
    e->python = getenv("PYKMIP_PYTHON") != NULL ? getenv("PYKMIP_PYTHON") : "/usr/bin/python3";
    snprintf(e->script, sizeof(e->script), "%s/tests/kms/pykmip.sh", src);
    snprintf(e->interop, sizeof(e->interop), "%s/tests/kms/kmip_interop.py", src);
    const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    snprintf(e->dir, sizeof(e->dir), "%s/vmenc-kmip-XXXXXX", tmp);
    if (mkdtemp(e->dir) == NULL)
        return -1;
    pykmip_start_watchdog(e);
    return 0;
}

/* pykmip_start starts a server on |port| (with the database |db|, NULL for
 * its own) and waits until it completes TLS handshakes. 0 on success. */
__attribute__((unused)) static int pykmip_start(pykmip_env *e, int port, const char *db) {
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    char *const argv[] = {"/bin/bash", e->script, e->dir, p, (char *)db, NULL};
    char pid[64];
    return pykmip_run(argv, pid, sizeof(pid));
}

__attribute__((unused)) static int pykmip_stop(pykmip_env *e, int port) {
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    char *const argv[] = {"/bin/bash", e->script, "--stop", e->dir, p, NULL};
    return pykmip_run(argv, NULL, 0);
}

/* pykmip_kill kills the server on |port| and its helpers at once
 * (SIGKILL to its process group): a KMS that crashes mid-run. */
__attribute__((unused)) static int pykmip_kill(pykmip_env *e, int port) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/server-%d.pid", e->dir, port);
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (f == NULL)
        return -1;
    if (fscanf(f, "%d", &pid) != 1 || pid <= 1) {
        fclose(f);
        return -1;
    }
    fclose(f);
    unlink(path);
    if (kill(-pid, SIGKILL) != 0)
        return -1;
    /* Dead means its sockets are closed: wait until the group is gone. */
    for (int i = 0; i < 500 && kill(-pid, 0) == 0; i++)
        usleep(10000);
    return 0;
}

/* pykmip_client runs kmip_interop.py against the server on |port|. */
__attribute__((unused)) static int pykmip_client(pykmip_env *e, int port, const char *cmd, const char *arg1, const char *arg2,
                         const char *arg3, char *out, size_t cap) {
    char conf[PATH_MAX + 32];
    snprintf(conf, sizeof(conf), "%s/client-%d.conf", e->dir, port);
    char *const argv[] = {(char *)e->python, e->interop, conf, (char *)cmd,
                          (char *)arg1, (char *)arg2, (char *)arg3, NULL};
    return pykmip_run(argv, out, cap);
}

/* pykmip_env_cleanup stops every server (through the watchdog, which also
 * removes the dir) and waits for it. */
__attribute__((unused)) static void pykmip_env_cleanup(pykmip_env *e) {
    if (e->watchdog_fd >= 0) {
        close(e->watchdog_fd);
        e->watchdog_fd = -1;
        int st;
        while (waitpid(e->watchdog, &st, 0) < 0 && errno == EINTR) {
        }
    }
}

#endif /* VMENC_TESTS_KMS_PYKMIP_CTL_H */
