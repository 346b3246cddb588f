/*
 * tools/vmenc/cmd_migrate.c - `vmenc migrate send|receive`: move a powered-off
 * VM to another host (another workspace that reaches the same key provider)
 * through an encrypted migration stream (include/vmenc/migration.h).
 *
 * The stream goes over stdin/stdout, a file or FIFO (--output/--input), or a
 * socket (--connect/--listen unix:PATH or HOST:PORT). The one-time key
 * travels in a handover file the sender writes and the receiver reads and
 * removes; the receiver answers with a ready file. Whoever reads the
 * handover file can read the stream: docs/cli.md says how to carry it.
 *
 * What the stream carries (a storage migration of the VM home): one manifest
 * chunk (DEVICE_STATE, address 0: "vmenc-migrate 1", the VM name, the number
 * of files and bytes), then per file a header chunk (DEVICE_STATE, address
 * 1 + index: "file NAME SIZE") and its contents as DISK chunks (address =
 * offset in the file; all-zero blocks are skipped and stay holes). The files
 * are sent as they are on the datastore: an encrypted VM's disks stay
 * ciphertext under their own keys, which the destination fetches by ID from
 * the shared key provider when it registers the VM (the format is
 * docs/migration.md's "home stream"; lib/workspace/migrate_home.c reads it).
 *
 * Receiving is one library call, vmenc_workspace_migrate_receive: it
 * authorizes, makes the home, receives, registers and undoes everything on
 * failure. This file only carries the bytes: the handover and ready files,
 * the socket, FIFO or standard input.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define MIG_BLOCK ((size_t)1 << 20)
#define MIG_MAX_FILES 256u

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the handover and ready files ------------------------------------------------ */

/* put_file writes |len| bytes to |path| atomically (temporary file, mode
 * 0600, rename), so the other side never reads half of it. */
static vmenc_status put_file(const char *path, const uint8_t *data, size_t len) {
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == EEXIST ? VMENC_E_EXISTS : VMENC_E_IO;
    bool ok = write(fd, data, len) == (ssize_t)len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (ok && link(tmp, path) != 0) /* link, not rename: never replace a file already there */
        ok = false;
    vmenc_status st = ok ? VMENC_OK : errno == EEXIST ? VMENC_E_EXISTS : VMENC_E_IO;
    unlink(tmp);
    return st;
}

/* take_file waits up to |timeout_s| for |path|, reads it (at most |cap|
 * bytes) and removes it: the handover holds the one-time key. */
static vmenc_status take_file(const char *path, unsigned timeout_s, uint8_t *buf, size_t cap, size_t *out_len) {
    double end = mono() + timeout_s;
    int fd;
    while ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        if (errno != ENOENT)
            return VMENC_E_IO;
        if (g_interrupted)
            return VMENC_E_INTERRUPTED;
        if (mono() > end)
            return VMENC_E_KMS_TIMEOUT;
        sleep_ms(20);
    }
    ssize_t n = read(fd, buf, cap);
    char extra;
    bool more = n >= 0 && (size_t)n == cap && read(fd, &extra, 1) == 1;
    close(fd);
    unlink(path);
    if (n <= 0 || more)
        return VMENC_E_PARSE;
    *out_len = (size_t)n;
    return VMENC_OK;
}

/* ---- transports ------------------------------------------------------------------ */

typedef struct io {
    int fd;
} io;

static vmenc_status io_write(void *ctx, const uint8_t *data, size_t len) {
    io *x = ctx;
    while (len > 0) {
        ssize_t n = write(x->fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return VMENC_E_IO;
        data += n;
        len -= (size_t)n;
    }
    return VMENC_OK;
}

static vmenc_status io_read(void *ctx, uint8_t *buf, size_t cap, size_t *out_len) {
    io *x = ctx;
    for (;;) {
        ssize_t n = read(x->fd, buf, cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return VMENC_E_IO;
        *out_len = (size_t)n;
        return VMENC_OK;
    }
}

/* sock_addr resolves "unix:PATH" or "HOST:PORT". */
static int sock_open(const char *addr, bool listen_side, unsigned timeout_s) {
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        if (strlen(addr + 5) >= sizeof(un.sun_path))
            return -1;
        strcpy(un.sun_path, addr + 5);
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0)
            return -1;
        if (listen_side) {
            if (bind(s, (struct sockaddr *)&un, sizeof(un)) != 0 || listen(s, 1) != 0) {
                close(s);
                return -1;
            }
            return s;
        }
        double end = mono() + timeout_s;
        while (connect(s, (struct sockaddr *)&un, sizeof(un)) != 0) {
            if ((errno != ENOENT && errno != ECONNREFUSED) || mono() > end || g_interrupted) {
                close(s);
                return -1;
            }
            sleep_ms(20);
        }
        return s;
    }
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host))
        return -1;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = listen_side ? AI_PASSIVE : 0}, *res = NULL;
    if (getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res) != 0)
        return -1;
    int s = -1;
    double end = mono() + timeout_s;
    for (struct addrinfo *ai = res; ai != NULL && s < 0; ai = ai->ai_next) {
        s = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (s < 0)
            continue;
        if (listen_side) {
            int one = 1;
            (void)setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            if (bind(s, ai->ai_addr, ai->ai_addrlen) != 0 || listen(s, 1) != 0) {
                close(s);
                s = -1;
            }
            continue;
        }
        while (connect(s, ai->ai_addr, ai->ai_addrlen) != 0) {
            if (errno != ECONNREFUSED || mono() > end || g_interrupted) {
                close(s);
                s = -1;
                break;
            }
            sleep_ms(20);
        }
    }
    freeaddrinfo(res);
    return s;
}

/* in_cluster: the workspace is a host of a cluster (docs/cluster.md): a
 * migration between two of its hosts hands the VM's placement and
 * ownership over in one etcd transaction instead of unregistering it. */
static bool in_cluster(cli *c) {
    vmenc_cluster_status st = {.struct_size = sizeof(st)};
    return vmenc_workspace_cluster_status(c->ws, &st) == VMENC_OK && st.in_cluster;
}

/* remove_received deletes the regular files of a home this process just
 * received, and the home (the handover did not commit: the copy is not
 * this host's). The cluster's record and inventory are left alone. */
static void remove_received(const char *home) {
    DIR *d = opendir(home);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[4200];
        struct stat sb;
        if (snprintf(p, sizeof(p), "%s/%s", home, e->d_name) < (int)sizeof(p) && lstat(p, &sb) == 0 &&
            S_ISREG(sb.st_mode))
            unlink(p);
    }
    closedir(d);
    rmdir(home);
}

/* ---- send ------------------------------------------------------------------------- */

typedef struct mig_file {
    char name[256];
    uint64_t size;
} mig_file;

static int cmp_file(const void *a, const void *b) { return strcmp(((const mig_file *)a)->name, ((const mig_file *)b)->name); }

/* home_files lists the regular files of the VM home (sorted). */
static vmenc_status home_files(const char *home, mig_file *out, size_t cap, size_t *out_n, uint64_t *out_bytes) {
    DIR *d = opendir(home);
    if (d == NULL)
        return VMENC_E_IO;
    size_t n = 0;
    uint64_t bytes = 0;
    vmenc_status st = VMENC_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[1400];
        struct stat sb;
        snprintf(p, sizeof(p), "%s/%s", home, e->d_name);
        if (lstat(p, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (n == cap || strlen(e->d_name) >= sizeof(out[0].name)) {
            st = VMENC_E_LIMIT;
            break;
        }
        snprintf(out[n].name, sizeof(out[n].name), "%s", e->d_name);
        out[n].size = (uint64_t)sb.st_size;
        bytes += out[n].size;
        n++;
    }
    closedir(d);
    qsort(out, n, sizeof(out[0]), cmp_file);
    *out_n = n;
    *out_bytes = bytes;
    return st;
}

static bool all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* send_files streams the manifest and every file. */
static vmenc_status send_files(cli *c, vmenc_migration_sender *s, const char *home, const char *name,
                               const mig_file *f, size_t nf, uint64_t total) {
    char hdr[512];
    int hl = snprintf(hdr, sizeof(hdr), "vmenc-migrate 1\nvm %s\nfiles %zu\nbytes %llu\n", name, nf,
                      (unsigned long long)total);
    vmenc_status st = vmenc_migration_send(s, VMENC_MIGRATION_DEVICE_STATE, 0, (const uint8_t *)hdr, (size_t)hl);
    uint8_t *buf = malloc(MIG_BLOCK);
    if (st == VMENC_OK && buf == NULL)
        st = VMENC_E_NOMEM;
    progress *p = progress_start(c, "migrate", total);
    uint64_t done = 0;
    for (size_t i = 0; st == VMENC_OK && i < nf && !g_interrupted; i++) {
        hl = snprintf(hdr, sizeof(hdr), "file %s %llu\n", f[i].name, (unsigned long long)f[i].size);
        st = vmenc_migration_send(s, VMENC_MIGRATION_DEVICE_STATE, 1 + i, (const uint8_t *)hdr, (size_t)hl);
        char path[4096];
        if (snprintf(path, sizeof(path), "%s/%s", home, f[i].name) >= (int)sizeof(path))
            st = VMENC_E_BAD_PATH;
        int fd = st == VMENC_OK ? open(path, O_RDONLY | O_CLOEXEC) : -1;
        if (st == VMENC_OK && fd < 0)
            st = VMENC_E_IO;
        for (uint64_t off = 0; st == VMENC_OK && off < f[i].size && !g_interrupted;) {
            size_t want = f[i].size - off < MIG_BLOCK ? (size_t)(f[i].size - off) : MIG_BLOCK;
            ssize_t n = pread(fd, buf, want, (off_t)off);
            if (n <= 0) {
                st = VMENC_E_IO;
                break;
            }
            if (!all_zero(buf, (size_t)n))
                st = vmenc_migration_send(s, VMENC_MIGRATION_DISK, off, buf, (size_t)n);
            off += (uint64_t)n;
            done += (uint64_t)n;
            progress_update(p, done);
        }
        if (fd >= 0)
            close(fd);
    }
    progress_end(p);
    free(buf);
    if (st == VMENC_OK && g_interrupted)
        st = VMENC_E_INTERRUPTED;
    return st;
}

vmenc_status mig_send_home(cli *c, vmenc_migration_sender *s, vmenc_vm *vm, uint64_t *out_files) {
    static mig_file files[MIG_MAX_FILES];
    size_t nf = 0;
    uint64_t total = 0;
    vmenc_status st = home_files(vmenc_vm_home_dir(vm), files, MIG_MAX_FILES, &nf, &total);
    if (st == VMENC_OK)
        st = send_files(c, s, vmenc_vm_home_dir(vm), vmenc_vm_name(vm), files, nf, total);
    if (st == VMENC_OK)
        st = vmenc_migration_sender_finish(s);
    *out_files = nf;
    return st;
}

static const char *mode_name(vmenc_migration_encryption m) {
    return m == VMENC_MIGRATION_REQUIRED ? "required" : m == VMENC_MIGRATION_DISABLED ? "disabled" : "opportunistic";
}

static void out_info(out_t *o, const vmenc_migration_info *in) {
    char id[2 * VMENC_MIGRATION_ID_BYTES + 1];
    for (unsigned i = 0; i < VMENC_MIGRATION_ID_BYTES; i++)
        snprintf(id + 2 * i, 3, "%02x", in->migration_id[i]);
    out_str(o, "migration_id", id);
    out_bool(o, "encrypted", in->encrypted);
    out_bool(o, "vm_encrypted", in->vm_encrypted);
    out_str(o, "mode", mode_name(in->mode));
    out_u64(o, "chunks", in->num_chunks);
    out_u64(o, "bytes", in->num_bytes);
}

static int mig_send(cli *c, args *a) {
    const char *to = NULL, *handover = NULL, *ready = NULL, *output = NULL, *conn = NULL, *tmo = NULL;
    (void)arg_value(c, a, "--to", &to);
    (void)arg_value(c, a, "--handover", &handover);
    (void)arg_value(c, a, "--ready", &ready);
    (void)arg_value(c, a, "--output", &output);
    (void)arg_value(c, a, "--connect", &conn);
    (void)arg_value(c, a, "--timeout", &tmo);
    bool no_peer = arg_flag(a, "--peer-no-encryption");
    bool keep_registered = arg_flag(a, "--keep-registered");
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    uint64_t timeout = 60;
    if (name == NULL || to == NULL || handover == NULL || ready == NULL)
        return cli_usage(c, "migrate send needs NAME, --to HOST, --handover FILE and --ready FILE");
    if ((output && conn) || (tmo && (!parse_size(tmo, &timeout) || timeout == 0 || timeout > 86400)))
        return cli_usage(c, "use one of --output and --connect; --timeout takes 1..86400 seconds");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    /* a disk in the middle of a conversion needs its state file, which is
     * not part of what a destination can register: finish it first */
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    vmenc_status st = vmenc_vm_get_info(vm, &info);
    for (uint32_t i = 0; st == VMENC_OK && i < info.num_disks; i++) {
        vmenc_disk_info di = {.struct_size = sizeof(di)};
        st = vmenc_vm_get_disk_info(vm, i, &di);
        if (st == VMENC_OK && di.state != VMENC_DISK_PLAIN && di.state != VMENC_DISK_ENCRYPTED) {
            vmenc_vm_free(vm);
            return cli_fail(c, VMENC_E_BAD_STATE, "disk %s of '%s' is %s: run 'vmenc vm resume %s' first", di.disk_id,
                            name, disk_state_name(di.state), name);
        }
    }
    /* cluster mode: offer the VM to the destination host before the stream */
    bool cluster = st == VMENC_OK && in_cluster(c);
    if (cluster) {
        st = vmenc_workspace_cluster_handover_begin(c->ws, cli_principal(c), vm, to);
        if (st != VMENC_OK) {
            char holder[VMENC_WORKSPACE_MESSAGE_MAX] = "";
            if (vmenc_workspace_lock_holder(c->ws, holder, sizeof(holder)) != VMENC_OK)
                holder[0] = '\0';
            vmenc_vm_free(vm);
            return cli_fail(c, st, "cannot hand '%s' over to %s%s%s", name, to, holder[0] ? ": " : "", holder);
        }
    }
    io x = {.fd = -1};
    vmenc_migration_sender_options so = {.struct_size = sizeof(so), .principal = cli_principal(c), .dest_host = to,
                                         .flags = no_peer ? VMENC_MIGRATION_PEER_NO_ENCRYPTION : 0, .fd = -1,
                                         .write_fn = io_write, .io_ctx = &x};
    vmenc_migration_sender *s = NULL;
    if (st == VMENC_OK)
        st = vmenc_migration_sender_new(vm, &so, &s);
    if (st != VMENC_OK) {
        vmenc_vm_free(vm);
        return cli_fail(c, st, "cannot migrate '%s' to %s", name, to);
    }
    uint8_t blob[VMENC_MIGRATION_HANDOVER_MAX];
    size_t blob_len = 0;
    st = vmenc_migration_sender_get_handover(s, blob, sizeof(blob), &blob_len);
    if (st == VMENC_OK)
        st = put_file(handover, blob, blob_len);
    vmenc_memzero(blob, sizeof(blob));
    if (st != VMENC_OK) {
        vmenc_migration_sender_free(s);
        vmenc_vm_free(vm);
        return cli_fail(c, st, "cannot write the handover file %s (it must not exist)", handover);
    }
    cli_info(c, "migrate: handover in %s; waiting for the destination's ready file %s", handover, ready);
    uint8_t tok[VMENC_MIGRATION_READY_BYTES + 1];
    size_t tok_len = 0;
    st = take_file(ready, (unsigned)timeout, tok, sizeof(tok), &tok_len);
    if (st != VMENC_OK)
        unlink(handover); /* nobody took it: do not leave the key lying around */
    double t0 = mono();
    if (st == VMENC_OK) {
        if (conn != NULL) {
            x.fd = sock_open(conn, false, (unsigned)timeout);
        } else if (output != NULL && strcmp(output, "-") != 0) {
            x.fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        } else {
            /* the stream takes stdout; results go to stderr from here */
            x.fd = dup(STDOUT_FILENO);
            if (x.fd >= 0)
                (void)dup2(STDERR_FILENO, STDOUT_FILENO);
        }
        if (x.fd < 0)
            st = VMENC_E_IO;
    }
    if (st == VMENC_OK)
        st = vmenc_migration_sender_begin(s, tok, tok_len);
    uint64_t nf = 0;
    if (st == VMENC_OK)
        st = mig_send_home(c, s, vm, &nf);
    vmenc_migration_info mi = {.struct_size = sizeof(mi)};
    vmenc_status is = vmenc_migration_sender_get_info(s, &mi);
    vmenc_migration_sender_free(s);
    if (x.fd >= 0) {
        close(x.fd);
        x.fd = -1;
    }
    /* cluster mode: the VM is the destination's once it commits; keep it
     * open (and owned) until then - the commit compares that ownership */
    vmenc_status hs = VMENC_OK;
    if (cluster && st == VMENC_OK)
        hs = vmenc_workspace_cluster_handover_wait(c->ws, cli_principal(c), vm, to, (uint32_t)timeout * 1000u);
    vmenc_vm_free(vm);
    if (st == VMENC_E_INTERRUPTED)
        return cli_interrupted(c, "interrupted: the migration of '%s' was abandoned (the source VM is unchanged)", name);
    if (st == VMENC_E_KMS_TIMEOUT)
        return cli_fail(c, st, "no ready file %s from the destination within %llu s", ready, (unsigned long long)timeout);
    if (st != VMENC_OK)
        return cli_fail(c, st, "the migration of '%s' to %s failed", name, to);
    if (hs != VMENC_OK)
        return cli_fail(c, hs, "'%s' was sent, but %s did not take it over (it stays placed on this host)", name, to);
    /* The VM now runs from the destination: it leaves this host's inventory
     * (its files stay: the stream is one-way, so this side cannot know the
     * destination committed; `vm register` brings it back). */
    const char *source = cluster ? "handed over" : "kept";
    if (!keep_registered && !cluster) {
        vmenc_status us = vmenc_workspace_unregister_vm(c->ws, cli_principal(c), name);
        if (us != VMENC_OK)
            return cli_fail(c, us, "'%s' was sent to %s, but could not be unregistered here (run 'vmenc vm unregister %s')",
                            name, to, name);
        source = "unregistered";
    }
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "vm", name);
    out_str(o, "to", to);
    out_str(o, "source", source);
    out_u64(o, "files", nf);
    if (is == VMENC_OK)
        out_info(o, &mi);
    out_double(o, "seconds", mono() - t0);
    out_end(o);
    return rc;
}

/* ---- receive ------------------------------------------------------------------------- */

/* What the library asks the CLI for while it receives: the handover file
 * (once the VM's home is made), then - with the ready token - the ready
 * file and the stream's descriptor. The sequence itself is
 * vmenc_workspace_migrate_receive. */
typedef struct rx_plumbing {
    cli *c;
    const char *handover, *ready, *input;
    unsigned timeout;
    int lfd;        /* listening socket, or -1 */
    io x;           /* the stream */
    bool waited;    /* the handover wait ran out */
} rx_plumbing;

static vmenc_status rx_handover(void *ctx, uint8_t *buf, size_t cap, size_t *out_len) {
    rx_plumbing *p = ctx;
    cli_info(p->c, "migrate: waiting for the handover file %s", p->handover);
    vmenc_status st = take_file(p->handover, p->timeout, buf, cap, out_len);
    p->waited = st == VMENC_E_KMS_TIMEOUT;
    return st;
}

static vmenc_status rx_ready(void *ctx, const uint8_t *tok, size_t tok_len) {
    rx_plumbing *p = ctx;
    vmenc_status st = put_file(p->ready, tok, tok_len);
    if (st != VMENC_OK)
        return st;
    if (p->lfd >= 0)
        p->x.fd = accept(p->lfd, NULL, NULL);
    else if (p->input != NULL && strcmp(p->input, "-") != 0)
        p->x.fd = open(p->input, O_RDONLY | O_CLOEXEC);
    else
        p->x.fd = dup(STDIN_FILENO);
    return p->x.fd < 0 ? VMENC_E_IO : VMENC_OK;
}

/* rx_read is io_read that gives up when Ctrl-C was pressed. */
static vmenc_status rx_read(void *ctx, uint8_t *buf, size_t cap, size_t *out_len) {
    if (g_interrupted)
        return VMENC_E_INTERRUPTED;
    vmenc_status st = io_read(ctx, buf, cap, out_len);
    return g_interrupted ? VMENC_E_INTERRUPTED : st;
}

static const char *failure_name(vmenc_migration_failure f) {
    static const char *const names[] = {"", "tampered", "replayed", "gap", "truncated", "malformed", "counts",
                                        "transport"};
    return (unsigned)f < sizeof(names) / sizeof(names[0]) ? names[f] : "";
}

static int mig_receive(cli *c, args *a) {
    const char *handover = NULL, *ready = NULL, *input = NULL, *lst = NULL, *tmo = NULL, *folder = NULL;
    (void)arg_value(c, a, "--handover", &handover);
    (void)arg_value(c, a, "--ready", &ready);
    (void)arg_value(c, a, "--input", &input);
    (void)arg_value(c, a, "--listen", &lst);
    (void)arg_value(c, a, "--timeout", &tmo);
    (void)arg_value(c, a, "--folder", &folder);
    bool no_enc = arg_flag(a, "--no-encryption");
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    uint64_t timeout = 60;
    if (name == NULL || handover == NULL || ready == NULL)
        return cli_usage(c, "migrate receive needs NAME, --handover FILE and --ready FILE");
    if ((input && lst) || (tmo && (!parse_size(tmo, &timeout) || timeout == 0 || timeout > 86400)))
        return cli_usage(c, "use one of --input and --listen; --timeout takes 1..86400 seconds");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    char home[1024];
    vmenc_status st = vmenc_workspace_vm_home(c->ws, name, home, sizeof(home));
    if (st != VMENC_OK)
        return cli_fail(c, st, "bad VM name '%s'", name);
    rx_plumbing p = {.c = c, .handover = handover, .ready = ready, .input = input, .timeout = (unsigned)timeout, .lfd = -1,
                     .x = {.fd = -1}};
    if (lst != NULL && (p.lfd = sock_open(lst, true, 0)) < 0)
        return cli_fail(c, VMENC_E_IO, "cannot listen on %s", lst);
    vmenc_workspace_migrate_receive_options ro = {.struct_size = sizeof(ro), .handover_fn = rx_handover,
                                                  .handover_ctx = &p, .folder = folder,
                                                  .flags = no_enc ? VMENC_MIGRATION_NO_ENCRYPTION : 0, .fd = -1,
                                                  .read_fn = rx_read, .io_ctx = &p.x, .ready_fn = rx_ready,
                                                  .ready_ctx = &p};
    vmenc_workspace_migrate_receive_result res = {.struct_size = sizeof(res)};
    vmenc_vm *vm = NULL;
    double t0 = mono();
    st = vmenc_workspace_migrate_receive(c->ws, cli_principal(c), name, &ro, &res, &vm);
    if (p.x.fd >= 0)
        close(p.x.fd);
    if (p.lfd >= 0) {
        close(p.lfd);
        if (strncmp(lst, "unix:", 5) == 0)
            unlink(lst + 5);
    }
    /* cluster mode: the VM becomes this host's in one etcd transaction;
     * if that does not happen, the copy received here is not this host's */
    if ((st == VMENC_OK || st == VMENC_E_VM_LOCKED) && in_cluster(c)) {
        vmenc_status hs = vmenc_workspace_cluster_handover_commit(c->ws, cli_principal(c), vm);
        if (hs != VMENC_OK) {
            char holder[VMENC_WORKSPACE_MESSAGE_MAX] = "";
            if (vmenc_workspace_lock_holder(c->ws, holder, sizeof(holder)) != VMENC_OK)
                holder[0] = '\0';
            vmenc_vm_free(vm);
            if (hs != VMENC_E_CONTROL_UNAVAILABLE && hs != VMENC_E_OUTCOME_UNKNOWN)
                remove_received(home);
            return cli_fail(c, hs, "received '%s', but could not take it over from its source%s%s", name,
                            holder[0] ? ": " : "", holder);
        }
    }
    if (st != VMENC_OK && st != VMENC_E_VM_LOCKED) {
        if (st == VMENC_E_INTERRUPTED)
            return cli_interrupted(c, "interrupted: nothing of '%s' was kept", name);
        if (st == VMENC_E_KMS_TIMEOUT && p.waited)
            return cli_fail(c, st, "no handover file %s within %llu s", handover, (unsigned long long)timeout);
        if (st == VMENC_E_EXISTS || st == VMENC_E_DENIED || st == VMENC_E_HOST_MODE)
            return cli_fail(c, st, "cannot receive '%s' (%s)", name, home);
        const char *why = failure_name(res.migration.failure);
        return cli_fail(c, st, "receiving '%s' failed (nothing kept)%s%s", name, why[0] ? ": stream " : "", why);
    }
    out_t *o = out_begin(c);
    out_bool(o, "ok", st == VMENC_OK);
    out_str(o, "host", vmenc_host_id(vmenc_workspace_host(c->ws)));
    out_u64(o, "files", res.num_files);
    if (res.stream_started)
        out_info(o, &res.migration);
    out_double(o, "seconds", mono() - t0);
    out_obj(o, "vm");
    out_vm_status(o, vm);
    out_close(o);
    out_end(o);
    vmenc_vm_free(vm);
    if (st == VMENC_E_VM_LOCKED)
        return cli_fail_stderr(c, st, "'%s' arrived but is locked here", name);
    return EXIT_OK;
}

const verb_def migrate_verbs[] = {
    {"send", mig_send, "NAME --to HOST --handover FILE --ready FILE [--output PATH | --connect ADDR] [--keep-registered]",
     "stream a powered-off VM to another host, encrypted",
     "Writes the handover FILE (mode 0600; it holds the one-time key), waits for the\n"
     "destination's ready FILE (--timeout S, default 60), then streams the VM home to stdout,\n"
     "--output PATH (a file or FIFO) or --connect unix:PATH|HOST:PORT. With the stream on stdout\n"
     "the result goes to stderr. --peer-no-encryption: the destination cannot decrypt (a plain\n"
     "stream if the policy allows one). Needs Resource.ColdMigrate (+ Cryptographer.Migrate).\n"
     "Once sent, the VM leaves this host's inventory (Needs VirtualMachine.Inventory.Unregister);\n"
     "its files stay on this datastore ('vmenc vm register' brings it back).\n"
     "--keep-registered: keep it listed here too.\n"},
    {"receive", mig_receive, "NAME --handover FILE --ready FILE [--input PATH | --listen ADDR]",
     "receive a VM streamed by 'migrate send' and register it here",
     "Waits for the handover FILE (removes it once read), checks this host may and can run the VM\n"
     "(policy, key provider, mode), writes the ready FILE, reads the stream from stdin, --input\n"
     "PATH or --listen unix:PATH|HOST:PORT into datastore/NAME, and registers the VM (--folder).\n"
     "Nothing is kept if the stream fails. This host must reach the VM's key provider under the\n"
     "same alias. Needs Resource.ColdMigrate (+ Cryptographer.Migrate) and VirtualMachine.Inventory.Register.\n"},
    {NULL, NULL, NULL, NULL, NULL},
};
