/*
 * tests/support/shim/faultshim.c - an LD_PRELOAD fault injector for the
 * CLI tests (tests/tamper.test.sh): it counts the process's rename /
 * renameat / renameat2 and pwrite / pwrite64 calls and, at the Nth one,
 * kills the process with SIGKILL or fails the call with EIO. It counts
 * from the outside, through libc's symbols, so it shares nothing with the
 * library's own I/O hooks (lib/vm/io/io.h). Its one safety rule: it only
 * ever acts in a process that set VMENC_FAULT_OP; without it every call
 * goes straight to libc.
 *
 * Environment:
 *   VMENC_FAULT_OP      "rename" or "pwrite": which calls are counted
 *   VMENC_FAULT_AT      N (1-based): act at the Nth counted call; 0 = only count
 *   VMENC_FAULT_ACTION  "kill" (SIGKILL before the call takes effect) or "eio"
 *   VMENC_FAULT_MATCH   count only calls whose file name (rename: the new
 *                       name; pwrite: the descriptor's path) contains this
 *   VMENC_FAULT_LOG     append one line per counted call: "<op> <n> <name>"
 *
 * Built by CMake as a module (not part of the test-support library, whose
 * objects every test links).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static unsigned long g_count;

/* counted: is this call one of the counted kind (and matching)? Then it
 * is counted, logged, and the return says what to do: 0 go on, 1 EIO
 * (SIGKILL never returns). */
static int counted(const char *op, const char *name) {
    const char *want = getenv("VMENC_FAULT_OP");
    if (want == NULL || strcmp(want, op) != 0)
        return 0;
    const char *match = getenv("VMENC_FAULT_MATCH");
    if (match != NULL && *match != '\0' && (name == NULL || strstr(name, match) == NULL))
        return 0;
    unsigned long n = ++g_count;
    const char *logp = getenv("VMENC_FAULT_LOG");
    if (logp != NULL) {
        int fd = open(logp, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) {
            char line[600];
            int len = snprintf(line, sizeof(line), "%s %lu %s\n", op, n, name != NULL ? name : "?");
            if (len > 0 && write(fd, line, (size_t)len) < 0) {
                /* diagnostics only */
            }
            close(fd);
        }
    }
    const char *at = getenv("VMENC_FAULT_AT");
    if (at == NULL || strtoul(at, NULL, 10) != n)
        return 0;
    const char *action = getenv("VMENC_FAULT_ACTION");
    if (action != NULL && strcmp(action, "eio") == 0)
        return 1;
    kill(getpid(), SIGKILL);
    for (;;)
        pause();
}

static const char *fd_name(int fd, char *buf, size_t cap) {
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, cap - 1);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    return buf;
}

int rename(const char *old, const char *new) {
    static int (*real)(const char *, const char *);
    if (real == NULL)
        real = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    if (counted("rename", new)) {
        errno = EIO;
        return -1;
    }
    return real(old, new);
}

int renameat(int ofd, const char *old, int nfd, const char *new) {
    static int (*real)(int, const char *, int, const char *);
    if (real == NULL)
        real = (int (*)(int, const char *, int, const char *))dlsym(RTLD_NEXT, "renameat");
    if (counted("rename", new)) {
        errno = EIO;
        return -1;
    }
    return real(ofd, old, nfd, new);
}

int renameat2(int ofd, const char *old, int nfd, const char *new, unsigned int flags) {
    static int (*real)(int, const char *, int, const char *, unsigned int);
    if (real == NULL)
        real = (int (*)(int, const char *, int, const char *, unsigned int))dlsym(RTLD_NEXT, "renameat2");
    if (counted("rename", new)) {
        errno = EIO;
        return -1;
    }
    return real(ofd, old, nfd, new, flags);
}

static ssize_t pwrite_common(const char *sym, int fd, const void *buf, size_t len, off_t off) {
    static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
    static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
    ssize_t (**real)(int, const void *, size_t, off_t) = sym[6] == '6' ? &real_pwrite64 : &real_pwrite;
    if (*real == NULL)
        *real = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, sym);
    const char *op = getenv("VMENC_FAULT_OP");
    if (op != NULL && strcmp(op, "pwrite") == 0) {
        char name[512];
        if (counted("pwrite", fd_name(fd, name, sizeof(name)))) {
            errno = EIO;
            return -1;
        }
    }
    return (*real)(fd, buf, len, off);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off) { return pwrite_common("pwrite", fd, buf, len, off); }
ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off) {
    return pwrite_common("pwrite64", fd, buf, len, off);
}
