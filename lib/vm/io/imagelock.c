/*
 * lib/vm/io/imagelock.c - image locks on extents and state files (see
 * imagelock.h; the bytes, the modes, the owner record and NFS behaviour are
 * documented in docs/vm.md "Locks"). The byte-range OFD locks themselves
 * are lib/core/lock.c; this file maps an opener's mode to permission bits,
 * keeps the owner record FILE.lck beside the locked file, and words the
 * refusal ("in use by another process: nbdkit pid 1234 on host h1 writing
 * since ...", as QEMU's "Failed to get "write" lock").
 *
 * Safety rule: the lock is the truth and the record only a hint - nothing
 * read from a record ever grants access (a stale record with no lock is a
 * free file); records are written best effort and parsed by the bounded,
 * fuzzed kv codec (lib/vm/format/kv.c).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "core/fs.h"
#include "core/lock.h"
#include "vm/format/kv.h"
#include "vm/io/imagelock.h"

#define RECORD_MAX 4096u
#define RECORD_SUFFIX ".lck"

struct vm_imagelock {
    int fd;       /* the locked file (not owned) */
    int dirfd;    /* a duplicate of its directory */
    char name[256];
    char record[256]; /* "" when the name is too long for a record */
    vm_lock_mode mode;
    char host[VMENC_LOCK_FIELD_MAX];
    char operation[VMENC_LOCK_FIELD_MAX];
    uint64_t since_ms;
    bool wrote_record;
};

/* ---- modes -> permission bytes ------------------------------------------------ */

static void mode_bits(vm_lock_mode mode, uint32_t *uses, uint32_t *denies) {
    switch (mode) {
    case VM_LOCK_READ:
        *uses = VMENC_LOCK_PERM_READ;
        *denies = VMENC_LOCK_PERM_CONVERT;
        return;
    case VM_LOCK_WRITE:
        *uses = VMENC_LOCK_PERM_READ | VMENC_LOCK_PERM_WRITE;
        *denies = VMENC_LOCK_PERM_WRITE | VMENC_LOCK_PERM_CONVERT;
        return;
    case VM_LOCK_CONVERT:
        *uses = VMENC_LOCK_PERM_ALL;
        *denies = VMENC_LOCK_PERM_ALL;
        return;
    case VM_LOCK_NONE:
        break;
    }
    *uses = *denies = 0;
}

static const char *mode_access(vm_lock_mode mode) {
    return mode == VM_LOCK_CONVERT ? "converting" : mode == VM_LOCK_WRITE ? "writing" : "reading";
}

/* ---- opening a datastore file ---------------------------------------------------- */

vmenc_status vm_imagelock_openat(int dirfd, const char *name, int oflags, mode_t mode, int *out_fd) {
    VMENC_ENSURE(name != NULL && out_fd != NULL, VMENC_E_INVALID_ARG);
    bool trunc = (oflags & O_TRUNC) != 0;
    int fd = openat(dirfd, name, (oflags & ~O_TRUNC) | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, mode);
    if (fd < 0)
        return vmenc_status_from_errno(errno);
    struct stat st;
    vmenc_status s = VMENC_OK;
    if (fstat(fd, &st) != 0)
        s = vmenc_status_from_errno(errno);
    else if (!S_ISREG(st.st_mode))
        s = VMENC_E_BAD_PATH; /* a FIFO, device, socket or directory where a file belongs */
    else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)
        s = vmenc_status_from_errno(errno);
    else if (trunc && ftruncate(fd, 0) != 0)
        s = vmenc_status_from_errno(errno);
    if (s != VMENC_OK) {
        close(fd);
        return s;
    }
    *out_fd = fd;
    return VMENC_OK;
}

/* ---- the owner record --------------------------------------------------------------- */

typedef struct record {
    char host[VMENC_LOCK_FIELD_MAX];
    char node[VMENC_LOCK_FIELD_MAX];
    char program[VMENC_LOCK_FIELD_MAX];
    char operation[VMENC_LOCK_FIELD_MAX];
    char access[16];
    int64_t pid;
    uint64_t since_ms;
} record;

/* clean copies |src| keeping only bytes a record value may hold. */
static void clean(char *dst, size_t cap, const char *src) {
    size_t n = 0;
    for (; src != NULL && *src != '\0' && n + 1 < cap; src++) {
        unsigned char c = (unsigned char)*src;
        dst[n++] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '_';
    }
    dst[n] = '\0';
}

static void my_node(char *out, size_t cap) {
    struct utsname u;
    clean(out, cap, uname(&u) == 0 ? u.nodename : "");
}

static bool parse_u64(const char *s, uint64_t *out) {
    if (s == NULL || *s == '\0' || strlen(s) > 19)
        return false;
    uint64_t v = 0;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

/* record_parse reads a record's text (untrusted: any datastore writer can
 * forge one; it is only ever shown). */
static bool record_parse(const uint8_t *text, size_t len, record *r) {
    vm_kv *kv = NULL;
    if (vm_kv_parse(text, len, &kv) != VMENC_OK)
        return false;
    uint64_t pid = 0, since = 0;
    bool ok = parse_u64(vm_kv_get(kv, "lock.pid"), &pid) && pid > 0 && pid < ((uint64_t)1 << 31) &&
              parse_u64(vm_kv_get(kv, "lock.since"), &since);
    if (ok) {
        memset(r, 0, sizeof(*r));
        r->pid = (int64_t)pid;
        r->since_ms = since;
        clean(r->host, sizeof(r->host), vm_kv_get(kv, "lock.host"));
        clean(r->node, sizeof(r->node), vm_kv_get(kv, "lock.node"));
        clean(r->program, sizeof(r->program), vm_kv_get(kv, "lock.program"));
        clean(r->operation, sizeof(r->operation), vm_kv_get(kv, "lock.operation"));
        clean(r->access, sizeof(r->access), vm_kv_get(kv, "lock.access"));
    }
    vm_kv_free(kv);
    return ok;
}

static bool record_read(int dirfd, const char *rec_name, record *r) {
    if (rec_name[0] == '\0')
        return false;
    int fd = -1;
    if (vm_imagelock_openat(dirfd, rec_name, O_RDONLY, 0, &fd) != VMENC_OK)
        return false;
    uint8_t buf[RECORD_MAX];
    size_t len = 0;
    while (len < sizeof(buf)) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    return len < sizeof(buf) && record_parse(buf, len, r);
}

/* record_live: could the record's process still hold a lock? On this
 * machine we can ask the kernel; elsewhere we must assume so. */
static bool record_live(const record *r) {
    char node[VMENC_LOCK_FIELD_MAX];
    my_node(node, sizeof(node));
    if (strcmp(node, r->node) != 0)
        return true;
    return kill((pid_t)r->pid, 0) == 0 || errno == EPERM;
}

static void record_write(vm_imagelock *l) {
    if (l->record[0] == '\0')
        return;
    vm_kv *kv = NULL;
    if (vm_kv_new(&kv) != VMENC_OK)
        return;
    char pid[24], since[24], node[VMENC_LOCK_FIELD_MAX], prog[VMENC_LOCK_FIELD_MAX];
    snprintf(pid, sizeof(pid), "%lld", (long long)getpid());
    snprintf(since, sizeof(since), "%llu", (unsigned long long)l->since_ms);
    my_node(node, sizeof(node));
    clean(prog, sizeof(prog), program_invocation_short_name);
    vmenc_status s = vm_kv_add_comment(kv, "vmenc image lock owner record: a hint, the lock is the truth");
    if (s == VMENC_OK)
        s = vm_kv_set(kv, "lock.host", l->host);
    if (s == VMENC_OK)
        s = vm_kv_set(kv, "lock.node", node);
    if (s == VMENC_OK)
        s = vm_kv_set(kv, "lock.pid", pid);
    if (s == VMENC_OK)
        s = vm_kv_set(kv, "lock.program", prog);
    if (s == VMENC_OK)
        s = vm_kv_set(kv, "lock.operation", l->operation);
    if (s == VMENC_OK)
        s = vm_kv_set(kv, "lock.access", mode_access(l->mode));
    if (s == VMENC_OK)
        s = vm_kv_set(kv, "lock.since", since);
    uint8_t *text = NULL;
    size_t len = 0;
    if (s == VMENC_OK)
        s = vm_kv_serialize(kv, &text, &len);
    vm_kv_free(kv);
    /* a hint: not synced, and a read-only datastore simply has none */
    if (s == VMENC_OK && vmenc_fs_atomic_write(l->dirfd, l->record, text, len, false) == VMENC_OK)
        l->wrote_record = true;
    free(text);
}

/* record_is_mine: does the record still name this holder? */
static bool record_is_mine(const vm_imagelock *l) {
    record r;
    char node[VMENC_LOCK_FIELD_MAX];
    my_node(node, sizeof(node));
    return record_read(l->dirfd, l->record, &r) && r.pid == (int64_t)getpid() && r.since_ms == l->since_ms &&
           strcmp(r.node, node) == 0;
}

/* ---- refusals ------------------------------------------------------------------------ */

static void copy_field(char *dst, size_t cap, const char *src) { snprintf(dst, cap, "%s", src); }

/* A message cut at VMENC_LOCK_MESSAGE_MAX is still a message: the fields
 * are bounded but their sum is not worth a bigger public buffer. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-truncation"
void vm_imagelock_describe(int dirfd, const char *name, uint32_t perm, bool other_uses, uint64_t self_since,
                           vmenc_lock_holder *h) {
    if (h == NULL)
        return;
    uint32_t size = h->struct_size;
    memset(h, 0, sizeof(*h));
    h->struct_size = size;
    copy_field(h->file, sizeof(h->file), name);
    copy_field(h->conflict, sizeof(h->conflict), vmenc_lock_perm_name(perm));
    char rec_name[256] = "";
    if (strlen(name) + strlen(RECORD_SUFFIX) < sizeof(rec_name))
        snprintf(rec_name, sizeof(rec_name), "%s%s", name, RECORD_SUFFIX);
    record r;
    /* QEMU's wording: we need |perm| and another holder will not share it,
     * or we would not share |perm| and another holder uses it */
    char what[160];
    snprintf(what, sizeof(what), "cannot get the %s\"%s\" lock of %s", other_uses ? "shared " : "",
             vmenc_lock_perm_name(perm), name);
    /* our own record (a writer asking to convert, refused by a reader) names
     * nobody else: say only what the lock says */
    bool known = record_read(dirfd, rec_name, &r) && record_live(&r) &&
                 !(self_since != 0 && r.pid == (int64_t)getpid() && r.since_ms == self_since);
    if (known) {
        h->flags |= VMENC_LOCK_HOLDER_KNOWN;
        h->pid = r.pid;
        h->since_ms = r.since_ms;
        copy_field(h->access, sizeof(h->access), r.access);
        copy_field(h->host, sizeof(h->host), r.host);
        copy_field(h->node, sizeof(h->node), r.node);
        copy_field(h->program, sizeof(h->program), r.program);
        copy_field(h->operation, sizeof(h->operation), r.operation);
        char when[32] = "?";
        time_t t = (time_t)(r.since_ms / 1000u);
        struct tm tm;
        if (gmtime_r(&t, &tm) != NULL)
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(h->message, sizeof(h->message),
                 "in use by another process: %s pid %lld on host %s (%s) %s since %s (%s); %s",
                 r.program[0] ? r.program : "?", (long long)r.pid, r.host[0] ? r.host : "?",
                 r.node[0] ? r.node : "?", r.access[0] ? r.access : "holding it", when,
                 r.operation[0] ? r.operation : "?", what);
    } else {
        char who[96];
        if (other_uses)
            snprintf(who, sizeof(who), "another process is %s it",
                     perm == VMENC_LOCK_PERM_READ ? "reading" : "writing or converting");
        else
            snprintf(who, sizeof(who), "another process does not let others %s it", vmenc_lock_perm_name(perm));
        snprintf(h->message, sizeof(h->message), "in use by another process (%s; no owner record names it); %s",
                 who, what);
    }
}

#pragma GCC diagnostic pop

/* ---- take / change / release ------------------------------------------------------------- */

static vmenc_status change(vm_imagelock *l, vm_lock_mode mode, vmenc_lock_holder *holder) {
    uint32_t ou, od, nu, nd;
    mode_bits(l->mode, &ou, &od);
    mode_bits(mode, &nu, &nd);
    vmenc_lock_conflict c = {0};
    vmenc_status s = vmenc_lock_bytes_set(l->fd, ou, od, nu, nd, &c);
    if (s == VMENC_E_LOCKED)
        vm_imagelock_describe(l->dirfd, l->name, c.perm, c.other_uses, l->since_ms, holder);
    if (s == VMENC_OK)
        l->mode = mode;
    return s;
}

vmenc_status vm_imagelock_probe(int fd, int dirfd, const char *name, vm_lock_mode mode, vmenc_lock_holder *holder) {
    uint32_t uses, denies;
    mode_bits(mode, &uses, &denies);
    vmenc_lock_conflict c = {0};
    vmenc_status s = vmenc_lock_bytes_probe(fd, uses, denies, &c);
    if (s == VMENC_E_LOCKED)
        vm_imagelock_describe(dirfd, name, c.perm, c.other_uses, 0, holder);
    return s;
}

vmenc_status vm_imagelock_take(int fd, int dirfd, const char *name, vm_lock_mode mode, const vm_lock_owner *owner,
                               vmenc_lock_holder *holder, vm_imagelock **out) {
    VMENC_ENSURE(fd >= 0 && name != NULL && out != NULL && mode != VM_LOCK_NONE, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(strlen(name) < sizeof(((vm_imagelock *)0)->name), VMENC_E_BAD_PATH);
    vm_imagelock *l = calloc(1, sizeof(*l));
    VMENC_ENSURE(l != NULL, VMENC_E_NOMEM);
    l->fd = fd;
    l->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (l->dirfd < 0) {
        free(l);
        return vmenc_status_from_errno(errno);
    }
    copy_field(l->name, sizeof(l->name), name);
    if (strlen(name) + strlen(RECORD_SUFFIX) < sizeof(l->record))
        snprintf(l->record, sizeof(l->record), "%s%s", name, RECORD_SUFFIX);
    clean(l->host, sizeof(l->host), owner != NULL ? owner->host_id : NULL);
    clean(l->operation, sizeof(l->operation), owner != NULL && owner->operation != NULL ? owner->operation : "open");
    vmenc_status s = change(l, mode, holder);
    if (s != VMENC_OK) {
        close(l->dirfd);
        free(l);
        return s;
    }
    l->since_ms = vmenc_now_realtime_ms();
    record r;
    /* a reader names itself only where no live holder is named: a writer's
     * record is the one a refusal most needs */
    if (mode != VM_LOCK_READ || !record_read(l->dirfd, l->record, &r) || !record_live(&r))
        record_write(l);
    *out = l;
    return VMENC_OK;
}

vmenc_status vm_imagelock_set_mode(vm_imagelock *l, vm_lock_mode mode, const char *operation,
                                   vmenc_lock_holder *holder) {
    VMENC_ENSURE(l != NULL && mode != VM_LOCK_NONE, VMENC_E_INVALID_ARG);
    if (mode == l->mode)
        return VMENC_OK;
    VMENC_GUARD(change(l, mode, holder));
    if (operation != NULL)
        clean(l->operation, sizeof(l->operation), operation);
    if (mode != VM_LOCK_READ)
        record_write(l);
    return VMENC_OK;
}

vm_lock_mode vm_imagelock_mode(const vm_imagelock *l) { return l != NULL ? l->mode : VM_LOCK_NONE; }

void vm_imagelock_release(vm_imagelock *l) {
    if (l == NULL)
        return;
    if (l->wrote_record && record_is_mine(l))
        (void)unlinkat(l->dirfd, l->record, 0);
    close(l->dirfd);
    free(l);
}
