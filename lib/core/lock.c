/*
 * lib/core/lock.c - whole-file advisory locks for every layer (lock.h):
 * flock with a bounded, backing-off wait. flock locks belong to the open
 * file description, so two handles in one process exclude each other as
 * two processes do, and closing the descriptor is the unlock.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "core/fs.h"
#include "core/lock.h"

static void sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000u, (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

vmenc_status vmenc_lock_fd(int fd, uint32_t timeout_ms) {
    VMENC_ENSURE(fd >= 0, VMENC_E_INVALID_ARG);
    uint64_t deadline = vmenc_now_monotonic_ms() + timeout_ms;
    unsigned wait = 1;
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return VMENC_OK;
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK)
            return VMENC_E_IO;
        uint64_t now = vmenc_now_monotonic_ms();
        if (now >= deadline)
            return VMENC_E_LOCKED;
        uint64_t left = deadline - now;
        sleep_ms((unsigned)(left < wait ? left : wait));
        if (wait < 16)
            wait *= 2;
    }
}

vmenc_status vmenc_lock_file(const char *path, uint32_t timeout_ms, int *out_fd) {
    VMENC_ENSURE(path != NULL && out_fd != NULL, VMENC_E_INVALID_ARG);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return vmenc_status_from_errno(errno);
    vmenc_status s = vmenc_lock_fd(fd, timeout_ms);
    if (s != VMENC_OK) {
        close(fd);
        return s;
    }
    *out_fd = fd;
    return VMENC_OK;
}

void vmenc_lock_release(int fd) {
    if (fd >= 0)
        close(fd); /* closing the last descriptor drops the flock */
}
