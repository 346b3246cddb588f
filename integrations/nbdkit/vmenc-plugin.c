/*
 * integrations/nbdkit/vmenc-plugin.c - nbdkit plugin that serves the
 * decrypted view of one virtual disk of a vmenc VM over NBD, so QEMU,
 * qemu-img, nbdcopy, nbdfuse, libvirt ... can use an encrypted disk.
 *
 *   nbdkit vmenc workspace=DIR vm=NAME [disk=N|scsiB:U] user=NAME
 *                [readonly=true] [export=true] [passphrase-file=FILE]
 *                [audit-log=NAME] [control=PATH|off]
 *
 * Public API only (the installed headers vmenc/vmenc.h and libvmenc.so), like the CLI.
 *
 * Lifetime. .config/.config_complete record and check parameters.
 * .get_ready opens the workspace, the VM and the disk, which authorizes and
 * audits as |user|: a denied user, a locked VM or a wrong passphrase fails
 * nbdkit's start-up (exit 1) with nbdkit_error lines saying why. It runs
 * before nbdkit forks (daemonizing, --run) so the error reaches the user;
 * .after_fork cannot report nicely (nbdkit's own advice), and with --run a
 * failure there leaves the command hanging on a socket nobody serves. The
 * library starts no long-lived threads, so the fork loses nothing but the
 * mlock() of key memory in the child (see docs/nbdkit.md: run with -f, as
 * systemd and libvirt do, to keep it).
 * State. vmenc allows a disk to be open once per VM at a time, so the one
 * open disk is shared by every connection: that (with the parameters) is
 * the plugin's only state, and a connection's handle needs nothing of its
 * own. A vmenc_disk allows any number of concurrent pread/pwrite/flush, so
 * the thread model is PARALLEL. Because all connections share one handle
 * whose flush is fdatasync of the one extent, a flush on any connection
 * covers writes completed on all of them: multi-conn is safe.
 *
 * Who may connect. The served socket's permissions are the boundary: NBD
 * has no authentication, and whoever connects reads (and writes) the
 * decrypted disk with |user|'s rights. So a power-on open (no export=true)
 * is for the hypervisor running the VM, on a Unix socket only it can
 * reach: readonly=true (or nbdkit -r) without export=true is refused - a
 * read-only open by a power-on user is a copy of the decrypted disk, an
 * export - and so is a network listener or client (TCP, vsock) unless
 * nbdkit was told --tls=require --tls-verify-peer (client certificates).
 * The listener is judged at start-up from nbdkit's command line
 * (/proc/self/cmdline; nbdkit gives a plugin no call for it) and every
 * connection again from its peer address (.preconnect) and TLS state
 * (.open, nbdkit_is_tls), so a misread command line fails closed.
 *
 * Control endpoint. A read-write server also listens on a Unix socket,
 * WORKSPACE/run/<VM-UUID>.ctl (or control=PATH), through which `vmenc vm
 * encrypt|decrypt|rekey --deep` converts the served VM online, through
 * this process's open disk, while guest I/O goes on (control_server.c).
 * It is made in .get_ready (errors reach the user), accepts from
 * .after_fork on, and goes in .cleanup before the disk closes (a running
 * conversion stops between segments and stays resumable).
 *
 * Commands. FUA = write then flush. WRITE_ZEROES writes zeros through
 * the cipher (reads then return zeros; nothing is deallocated, so it leaks
 * no allocation map). TRIM is not offered: punching a hole would reveal
 * which sectors the guest freed, and the public API has no discard.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmenc/vmenc.h"
#include "control_server.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

#define PASS_CAP 1025u       /* the workspace takes 1..1024 bytes */
#define ZERO_CHUNK 65536u    /* WRITE_ZEROES writes this much per call */

static struct {
    /* parameters (owned strings) */
    char *workspace;
    char *vm_name;
    char *disk_arg;
    char *user;
    char *pass_file;
    char *audit_log;
    char *control;          /* control=PATH, or "off"; NULL: WORKSPACE/run/<UUID>.ctl */
    bool readonly;
    bool export_access;
    /* read from nbdkit's command line in .get_ready (see check_listener) */
    bool tls_client_certs; /* --tls=require and --tls-verify-peer */
    /* opened in .get_ready, closed in .cleanup */
    vmenc_workspace *ws;
    vmenc_vm *vm;
    vmenc_disk *disk;
    ctl_server *ctl;        /* the control endpoint (read-write serving only) */
    char disk_id[VMENC_DISK_ID_MAX + 1];
    uint64_t size;
    uint32_t sector_size;
} g;

static const uint8_t zeros[ZERO_CHUNK];

/* ---- errors ------------------------------------------------------------- */

static int status_errno(vmenc_status st) {
    switch (st) {
    case VMENC_E_INVALID_ARG: return EINVAL;
    case VMENC_E_NOMEM: return ENOMEM;
    case VMENC_E_NO_SPACE: return ENOSPC;
    case VMENC_E_BAD_STATE: return EROFS;
    case VMENC_E_DENIED:
    case VMENC_E_HOST_MODE:
    case VMENC_E_VM_LOCKED: return EACCES;
    default: return EIO;
    }
}

/* io_fail reports a failed I/O call through nbdkit and returns -1. */
static int io_fail(const char *what, uint64_t offset, uint32_t count, vmenc_status st) {
    nbdkit_error("vmenc: %s of %" PRIu32 " bytes at %" PRIu64 " on disk %s of VM '%s' failed: %s", what, count,
                 offset, g.disk_id, g.vm_name, vmenc_strerror(st));
    nbdkit_set_error(status_errno(st));
    return -1;
}

/* ---- configuration -------------------------------------------------------- */

static int set_string(char **slot, const char *key, const char *value, bool path) {
    if (*slot != NULL) {
        nbdkit_error("vmenc: '%s' given twice", key);
        return -1;
    }
    *slot = path ? nbdkit_absolute_path(value) : strdup(value);
    if (*slot == NULL) {
        if (!path)
            nbdkit_error("vmenc: strdup: %m");
        return -1;
    }
    return 0;
}

static int set_bool(bool *slot, const char *value) {
    int r = nbdkit_parse_bool(value);
    if (r < 0)
        return -1;
    *slot = r != 0;
    return 0;
}

static int vmenc_config(const char *key, const char *value) {
    if (strcmp(key, "workspace") == 0)
        return set_string(&g.workspace, key, value, true);
    if (strcmp(key, "vm") == 0)
        return set_string(&g.vm_name, key, value, false);
    if (strcmp(key, "disk") == 0)
        return set_string(&g.disk_arg, key, value, false);
    if (strcmp(key, "user") == 0)
        return set_string(&g.user, key, value, false);
    if (strcmp(key, "passphrase-file") == 0)
        return set_string(&g.pass_file, key, value, true);
    if (strcmp(key, "audit-log") == 0)
        return set_string(&g.audit_log, key, value, false);
    if (strcmp(key, "control") == 0)
        return set_string(&g.control, key, value, strcmp(value, "off") != 0);
    if (strcmp(key, "readonly") == 0)
        return set_bool(&g.readonly, value);
    if (strcmp(key, "export") == 0)
        return set_bool(&g.export_access, value);
    if (strcmp(key, "passphrase") == 0 || strcmp(key, "password") == 0) {
        /* never echo |value| */
        nbdkit_error("vmenc: a passphrase is never taken from the command line (it would show in ps and shell "
                     "history): use passphrase-file=FILE or the environment variable VMENC_PASSPHRASE");
        return -1;
    }
    nbdkit_error("vmenc: unknown parameter '%s' (see nbdkit vmenc --help)", key);
    return -1;
}

/* default_audit_log makes "nbdkit-VM-DISK.audit.log" (':' of a disk ID
 * becomes '_'), so two nbdkit processes serving different disks of one
 * workspace do not contend for one log. */
static char *default_audit_log(void) {
    const char *d = g.disk_arg ? g.disk_arg : "0";
    size_t n = strlen("nbdkit--.audit.log") + strlen(g.vm_name) + strlen(d) + 1;
    char *s = malloc(n);
    if (s == NULL)
        return NULL;
    snprintf(s, n, "nbdkit-%s-%s.audit.log", g.vm_name, d);
    for (char *p = s; *p; p++)
        if (*p == ':' || *p == '/')
            *p = '_';
    return s;
}

static int vmenc_config_complete(void) {
    const char *missing = g.workspace == NULL ? "workspace" : g.vm_name == NULL ? "vm" : g.user == NULL ? "user" : NULL;
    if (missing != NULL) {
        nbdkit_error("vmenc: the parameter %s=... is required (nbdkit vmenc workspace=DIR vm=NAME user=NAME ...)",
                     missing);
        return -1;
    }
    if (g.readonly && !g.export_access) {
        nbdkit_error("vmenc: readonly=true without export=true is refused: a read-only open of the decrypted disk "
                     "is a copy of it, an export (needs VirtualMachine.Provisioning.GetVmFiles, and "
                     "Cryptographer.Access on an encrypted VM); add export=true, or serve it read-write to the "
                     "hypervisor that runs the VM");
        return -1;
    }
    if (g.audit_log == NULL && (g.audit_log = default_audit_log()) == NULL) {
        nbdkit_error("vmenc: out of memory");
        return -1;
    }
    if (strchr(g.audit_log, '/') != NULL || g.audit_log[0] == '\0' || g.audit_log[0] == '.') {
        nbdkit_error("vmenc: audit-log=%s must be a plain file name inside the workspace", g.audit_log);
        return -1;
    }
    return 0;
}

#define vmenc_config_help                                                                                       \
    "workspace=DIR          (required) the vmenc workspace (docs/workspace.md)\n"                               \
    "vm=NAME                (required) the VM in the workspace's datastore\n"                                   \
    "user=NAME              (required) the acting principal: authorized and audited\n"                          \
    "disk=N|scsiB:U         the disk: index in the VM's configuration or disk ID (default 0)\n"                 \
    "readonly=true          open the disk read-only (only with export=true)\n"                                 \
    "export=true            open as an export/upload (GetVmFiles/PutVmFiles, Cryptographer.Access on an\n"     \
    "                       encrypted VM) instead of a power-on; needed for readonly=true, nbdkit -r and\n"    \
    "                       a TCP listener without --tls=require --tls-verify-peer\n"                         \
    "passphrase-file=FILE   the workspace passphrase (else $VMENC_PASSPHRASE; never a parameter)\n"             \
    "audit-log=NAME         this process's audit log in the workspace (default nbdkit-VM-DISK.audit.log)\n"    \
    "control=PATH|off       the control endpoint for online conversion (default WORKSPACE/run/<VM-UUID>.ctl)"

/* ---- opening: workspace, VM, disk ---------------------------------------- */

/* read_passphrase fills |buf| from passphrase-file (first line) or
 * VMENC_PASSPHRASE. Returns the length, 0 if there is none, -1 on error. */
static ssize_t read_passphrase(char *buf, size_t cap) {
    if (g.pass_file == NULL) {
        const char *e = getenv("VMENC_PASSPHRASE");
        size_t n = e ? strlen(e) : 0;
        if (n >= cap) {
            nbdkit_error("vmenc: VMENC_PASSPHRASE is longer than %zu bytes", cap - 1);
            return -1;
        }
        memcpy(buf, e ? e : "", n + 1);
        return (ssize_t)n;
    }
    int fd = open(g.pass_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        nbdkit_error("vmenc: passphrase-file=%s: %m", g.pass_file);
        return -1;
    }
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0) {
        nbdkit_error("vmenc: passphrase-file=%s: %m", g.pass_file);
        return -1;
    }
    size_t len = (size_t)n;
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\n' || buf[i] == '\r') {
            len = i;
            break;
        }
    buf[len] = '\0';
    return (ssize_t)len;
}

static int open_workspace(void) {
    char pass[PASS_CAP];
    ssize_t pass_len = read_passphrase(pass, sizeof(pass));
    if (pass_len < 0)
        return -1;
    vmenc_workspace_open_options oo = {.struct_size = sizeof(oo),
                                       .passphrase = pass_len > 0 ? (const uint8_t *)pass : NULL,
                                       .passphrase_len = (size_t)pass_len,
                                       .audit_log = g.audit_log,
                                       .lock_timeout_ms = 0};
    if (getenv("VMENC_NO_SYNC") != NULL)
        oo.flags |= VMENC_WORKSPACE_OPEN_NO_SYNC;
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_status st = vmenc_workspace_open(g.workspace, &oo, &err, &g.ws);
    vmenc_memzero(pass, sizeof(pass));
    if (st == VMENC_OK)
        return 0;
    if (st == VMENC_E_LOCKED)
        nbdkit_error("vmenc: workspace %s: a workspace file (the audit log '%s' or the policy) is locked by "
                     "another process: %s",
                     g.workspace, g.audit_log, err.message[0] ? err.message : "retry");
    else if (err.line > 0)
        nbdkit_error("vmenc: workspace %s:%u: %s (%s)", err.file, err.line, err.message, vmenc_strerror(st));
    else
        nbdkit_error("vmenc: cannot open workspace %s: %s%s%s (%s)%s", g.workspace, err.file,
                     err.file[0] && err.message[0] ? ": " : "", err.message, vmenc_strerror(st),
                     st == VMENC_E_WRONG_PASSPHRASE && pass_len == 0
                         ? "; no passphrase was given: use passphrase-file=FILE or VMENC_PASSPHRASE"
                         : "");
    return -1;
}

/* explain_denial says which privilege |g.user| lacks for |op| (the check
 * itself is not audited; the refused operation already was). A writable
 * export is an upload and a download: the first one refused is named. */
static void explain_denial(vmenc_policy_op op, bool encrypted, vmenc_status st) {
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = op, .vm = g.vm_name,
                               .host = vmenc_host_id(vmenc_workspace_host(g.ws)),
                               .flags = encrypted ? VMENC_REQ_VM_ENCRYPTED : 0};
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    vmenc_status cs = vmenc_policy_check(vmenc_workspace_policy(g.ws), g.user, &rq, &d);
    if (cs == VMENC_OK && op == VMENC_OP_UPLOAD_FILES) {
        explain_denial(VMENC_OP_EXPORT_VM, encrypted, st);
        return;
    }
    nbdkit_error("vmenc: user '%s' may not %s VM '%s': %s%s%s", g.user,
                 op == VMENC_OP_EXPORT_VM     ? "export the disks of"
                 : op == VMENC_OP_UPLOAD_FILES ? "upload to (export=true without readonly=true) the disks of"
                                               : "power on",
                 g.vm_name, vmenc_strerror(st), (cs == VMENC_E_DENIED || cs == VMENC_E_HOST_MODE) && d.message[0] ? ": " : "",
                 (cs == VMENC_E_DENIED || cs == VMENC_E_HOST_MODE) ? d.message : "");
}

static void explain_locked(void) {
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    if (vmenc_vm_get_info(g.vm, &info) != VMENC_OK)
        info.num_missing_keys = 0;
    nbdkit_error("vmenc: VM '%s' is locked: %u key(s) could not be fetched from their key provider",
                 g.vm_name, info.num_missing_keys);
    for (uint32_t i = 0; i < info.num_missing_keys; i++) {
        char alias[VMENC_PROVIDER_ALIAS_MAX + 1], kek[VMENC_KMS_KEY_ID_CAP];
        vmenc_status why = VMENC_OK;
        if (vmenc_vm_get_missing_key(g.vm, i, alias, sizeof(alias), kek, sizeof(kek), &why) == VMENC_OK)
            nbdkit_error("vmenc:   key provider '%s', KEK ID %s: %s", alias, kek, vmenc_strerror(why));
    }
}

/* resolve_disk turns disk=N (index) or a disk ID into the disk ID. */
static int resolve_disk(void) {
    const char *arg = g.disk_arg ? g.disk_arg : "0";
    if (strchr(arg, ':') != NULL) {
        if (strlen(arg) > VMENC_DISK_ID_MAX) {
            nbdkit_error("vmenc: disk=%s is not a disk ID", arg);
            return -1;
        }
        strcpy(g.disk_id, arg);
        return 0;
    }
    uint32_t index;
    if (nbdkit_parse_uint32_t("disk", arg, &index) < 0)
        return -1;
    vmenc_disk_info di = {.struct_size = sizeof(di)};
    if (vmenc_vm_get_disk_info(g.vm, index, &di) != VMENC_OK) {
        vmenc_vm_info info = {.struct_size = sizeof(info)};
        if (vmenc_vm_get_info(g.vm, &info) != VMENC_OK)
            info.num_disks = 0;
        nbdkit_error("vmenc: disk=%s: VM '%s' has %u disk(s)", arg, g.vm_name, info.num_disks);
        return -1;
    }
    memcpy(g.disk_id, di.disk_id, sizeof(g.disk_id));
    return 0;
}

static int open_disk(void) {
    vmenc_status st = vmenc_workspace_open_vm(g.ws, g.user, g.vm_name, &g.vm);
    if (st == VMENC_E_VM_LOCKED) {
        explain_locked();
        return -1;
    }
    if (st == VMENC_E_DENIED || st == VMENC_E_HOST_MODE) {
        explain_denial(VMENC_OP_POWER_ON, false, st);
        return -1;
    }
    if (st != VMENC_OK) {
        nbdkit_error("vmenc: cannot open VM '%s' in %s as '%s': %s", g.vm_name, g.workspace, g.user,
                     vmenc_strerror(st));
        return -1;
    }
    if (resolve_disk() < 0)
        return -1;
    uint32_t flags = (g.readonly ? VMENC_DISK_OPEN_READONLY : 0) | (g.export_access ? VMENC_DISK_OPEN_EXPORT : 0);
    st = vmenc_disk_open(g.vm, g.user, g.disk_id, flags, &g.disk);
    if (st == VMENC_E_DENIED || st == VMENC_E_HOST_MODE) {
        vmenc_vm_info info = {.struct_size = sizeof(info)};
        explain_denial(!g.export_access ? VMENC_OP_POWER_ON : g.readonly ? VMENC_OP_EXPORT_VM : VMENC_OP_UPLOAD_FILES,
                       vmenc_vm_get_info(g.vm, &info) == VMENC_OK && info.encrypted, st);
        return -1;
    }
    if (st == VMENC_OK)
        st = vmenc_disk_get_size(g.disk, &g.size);
    if (st == VMENC_OK)
        st = vmenc_disk_get_sector_size(g.disk, &g.sector_size);
    vmenc_lock_holder holder = {.struct_size = sizeof(holder)};
    if (st == VMENC_E_LOCKED && vmenc_vm_get_lock_holder(g.vm, &holder) == VMENC_OK) {
        /* another process has the disk: say who (docs/vm.md "Locks") */
        nbdkit_error("vmenc: cannot open disk %s of VM '%s': %s", g.disk_id, g.vm_name, holder.message);
        return -1;
    }
    if (st != VMENC_OK) {
        nbdkit_error("vmenc: cannot open disk %s of VM '%s': %s", g.disk_id, g.vm_name, vmenc_strerror(st));
        return -1;
    }
    int enc = 0;
    if (vmenc_disk_is_encrypted(g.disk, &enc) != VMENC_OK)
        enc = -1;
    nbdkit_debug("vmenc: serving disk %s of VM '%s' (%s, %" PRIu64 " bytes, %" PRIu32 "-byte sectors%s) as '%s'",
                 g.disk_id, g.vm_name, enc == 1 ? "encrypted" : enc == 0 ? "plain" : "?", g.size, g.sector_size,
                 g.readonly ? ", read-only" : "", g.user);
    return 0;
}

/* check_paths fails early and plainly on a wrong workspace or passphrase
 * file, before the library is asked. */
static int check_paths(void) {
    size_t n = strlen(g.workspace) + sizeof("/" VMENC_WORKSPACE_CONFIG_NAME);
    char *conf = malloc(n);
    if (conf == NULL) {
        nbdkit_error("vmenc: out of memory");
        return -1;
    }
    snprintf(conf, n, "%s/%s", g.workspace, VMENC_WORKSPACE_CONFIG_NAME);
    int ok = access(conf, R_OK);
    free(conf);
    if (ok != 0) {
        nbdkit_error("vmenc: workspace=%s: no readable %s there: %m", g.workspace, VMENC_WORKSPACE_CONFIG_NAME);
        return -1;
    }
    if (g.pass_file != NULL && access(g.pass_file, R_OK) != 0) {
        nbdkit_error("vmenc: passphrase-file=%s: %m", g.pass_file);
        return -1;
    }
    return 0;
}

/* ---- who may connect --------------------------------------------------------- */

/* nbdkit's options that take a value in the next argument when not given
 * as --opt=VALUE (nbdkit 1.32, getopt_long: options may follow the plugin's
 * parameters). A value must not be mistaken for an option. */
static bool takes_value(const char *opt) {
    static const char *const longs[] = {"--debug", "--export-name", "--exportname", "--export", "--filter",
                                        "--group", "--ipaddr", "--log", "--mask-handshake", "--pidfile",
                                        "--port", "--run", "--selinux-label", "--threads", "--tls",
                                        "--tls-certificates", "--tls-psk", "--unix", "--user", NULL};
    for (size_t i = 0; longs[i] != NULL; i++)
        if (strcmp(opt, longs[i]) == 0)
            return true;
    return false;
}

typedef struct {
    bool unix_sock, single, tcp, vsock, tls_require, verify_peer;
} listen_opts;

/* note_short walks a cluster of short options ("-fU", "-p", "-U/x"):
 * returns true if the next argument is the value of the last one. */
static bool note_short(const char *arg, listen_opts *o) {
    for (const char *c = arg + 1; *c != '\0'; c++) {
        if (*c == 's')
            o->single = true;
        if (strchr("DegiPptUu", *c) != NULL) {
            if (*c == 'U')
                o->unix_sock = true;
            if (*c == 'p' || *c == 'i')
                o->tcp = true;
            return c[1] == '\0'; /* else the value is the rest of this argument */
        }
    }
    return false;
}

static void note_long(const char *arg, const char *next, listen_opts *o) {
    const char *eq = strchr(arg, '=');
    size_t n = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    const char *val = eq != NULL ? eq + 1 : next;
#define IS(name) (n == strlen(name) && strncmp(arg, name, n) == 0)
    if (IS("--unix"))
        o->unix_sock = true;
    else if (IS("--single") || IS("--stdin"))
        o->single = true;
    else if (IS("--port") || IS("--ipaddr"))
        o->tcp = true;
    else if (IS("--vsock"))
        o->vsock = true;
    else if (IS("--tls-verify-peer"))
        o->verify_peer = true;
    else if (IS("--tls") && val != NULL)
        o->tls_require = strcmp(val, "require") == 0;
#undef IS
}

/* read_cmdline parses nbdkit's own command line. -1 if it cannot be read. */
static int read_cmdline(listen_opts *o) {
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    static char buf[65536];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof(buf) - 1 && (r = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)r;
    close(fd);
    if (len == 0 || len >= sizeof(buf) - 1)
        return -1;
    buf[len] = '\0';
    const char *args[4096];
    size_t num = 0;
    for (size_t i = 0; i < len && num < sizeof(args) / sizeof(args[0]); i += strlen(buf + i) + 1)
        args[num++] = buf + i;
    for (size_t i = 1; i < num; i++) {
        const char *a = args[i], *next = i + 1 < num ? args[i + 1] : NULL;
        if (strcmp(a, "--") == 0)
            break;
        if (strncmp(a, "--", 2) == 0) {
            note_long(a, strchr(a, '=') == NULL && takes_value(a) ? next : NULL, o);
            if (strchr(a, '=') == NULL && takes_value(a))
                i++;
        } else if (a[0] == '-' && a[1] != '\0' && note_short(a, o)) {
            i++;
        }
    }
    return 0;
}

/* socket_activated_network: under systemd socket activation (LISTEN_FDS)
 * whether any passed socket is not a Unix socket. */
static bool socket_activated(bool *network) {
    const char *fds = getenv("LISTEN_FDS");
    if (fds == NULL)
        return false;
    int n = atoi(fds);
    *network = n <= 0;
    for (int fd = 3; fd < 3 + n; fd++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 || ss.ss_family != AF_UNIX)
            *network = true;
    }
    return true;
}

/* check_listener refuses, at start-up, a network listener serving a
 * power-on open unless nbdkit requires TLS with client certificates. */
static int check_listener(void) {
    listen_opts o = {0};
    bool readable = read_cmdline(&o) == 0, network = false;
    g.tls_client_certs = readable && o.tls_require && o.verify_peer;
    if (g.export_access)
        return 0;
    if (!readable)
        network = true; /* cannot tell: fail closed */
    else if (!socket_activated(&network))
        network = o.tcp || o.vsock || !(o.unix_sock || o.single);
    if (!network || g.tls_client_certs)
        return 0;
    nbdkit_error("vmenc: refusing to serve VM '%s' as a power-on (no export=true) on a network listener%s: NBD "
                 "has no authentication, so whoever connects reads the decrypted disk. Serve it on a Unix socket "
                 "only the hypervisor can reach (-U PATH), or require client certificates (--tls=require "
                 "--tls-verify-peer), or, for a copy, use export=true",
                 g.vm_name, readable ? " (TCP, the default without -U, or vsock)" : " (cannot read nbdkit's command line)");
    return -1;
}

/* vmenc_preconnect: per connection, before the NBD and TLS handshakes. A
 * network peer of a power-on open is refused unless client certificates
 * are required; nbdkit -r without export=true is refused as readonly=true
 * is. nbdkit_peer_name fails only for -s (stdin: the parent process). */
static int vmenc_preconnect(int readonly) {
    if (g.export_access)
        return 0;
    if (readonly) {
        nbdkit_error("vmenc: nbdkit -r without export=true is refused: a read-only view of the decrypted disk is "
                     "a copy of it, an export; add export=true");
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (nbdkit_peer_name((struct sockaddr *)&ss, &sl) != 0 || ss.ss_family == AF_UNIX)
        return 0;
    if (g.tls_client_certs)
        return 0; /* .open checks the session is TLS */
    nbdkit_error("vmenc: refused a network client of VM '%s' (no export=true, and nbdkit does not require client "
                 "certificates: --tls=require --tls-verify-peer)", g.vm_name);
    return -1;
}

static int vmenc_get_ready(void) {
    if (check_listener() < 0)
        return -1;
    if (check_paths() < 0)
        return -1;
    vmenc_status st = vmenc_init();
    if (st != VMENC_OK) {
        nbdkit_error("vmenc: library initialisation failed: %s", vmenc_strerror(st));
        return -1;
    }
    if (open_workspace() < 0)
        return -1;
    if (open_disk() < 0)
        return -1;
    /* the endpoint converts through this disk: only a writable one has it */
    if (g.readonly || (g.control != NULL && strcmp(g.control, "off") == 0))
        return 0;
    return ctl_server_open(g.ws, g.vm, g.workspace, g.control, &g.ctl) < 0 ? -1 : 0;
}

/* after_fork: threads start only now (a fork before keeps none). */
static int vmenc_after_fork(void) { return ctl_server_start(g.ctl); }

/* cleanup runs after the last connection: flush and release everything. */
static void vmenc_cleanup(void) {
    ctl_server_close(g.ctl); /* first: its conversion runs on the disk */
    g.ctl = NULL;
    if (g.disk != NULL) {
        vmenc_status st = vmenc_disk_close(g.disk);
        if (st != VMENC_OK)
            nbdkit_error("vmenc: closing disk %s of VM '%s': %s", g.disk_id, g.vm_name, vmenc_strerror(st));
        g.disk = NULL;
    }
    vmenc_vm_free(g.vm);
    g.vm = NULL;
    vmenc_workspace_free(g.ws);
    g.ws = NULL;
}

static void vmenc_unload(void) {
    vmenc_cleanup(); /* in case nbdkit stopped before .cleanup */
    free(g.workspace);
    free(g.vm_name);
    free(g.disk_arg);
    free(g.user);
    free(g.pass_file);
    free(g.audit_log);
    free(g.control);
}

/* ---- connections and data ------------------------------------------------- */

static void *vmenc_open(int readonly) {
    if (g.disk == NULL) { /* cannot happen: .get_ready failed and nbdkit stopped */
        nbdkit_error("vmenc: disk not open");
        return NULL;
    }
    if (!g.export_access) {
        /* the TLS session, now that it is made: a network peer must have one */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (nbdkit_peer_name((struct sockaddr *)&ss, &sl) == 0 && ss.ss_family != AF_UNIX &&
            nbdkit_is_tls() != 1) {
            nbdkit_error("vmenc: refused a network client of VM '%s' without TLS (no export=true)", g.vm_name);
            return NULL;
        }
    }
    return NBDKIT_HANDLE_NOT_NEEDED;
}

static int64_t vmenc_get_size(void *handle) { return (int64_t)g.size; }

static int vmenc_can_write(void *handle) { return !g.readonly; }
static int vmenc_can_flush(void *handle) { return 1; }
static int vmenc_can_fua(void *handle) { return NBDKIT_FUA_NATIVE; }
static int vmenc_can_zero(void *handle) { return 1; }
static int vmenc_can_fast_zero(void *handle) { return 0; }
static int vmenc_can_multi_conn(void *handle) { return 1; }
static int vmenc_is_rotational(void *handle) { return 0; }

/* block_size: any alignment works (partial sectors are read-modify-written
 * under a per-sector lock), but whole sectors avoid that. */
static int vmenc_block_size(void *handle, uint32_t *minimum, uint32_t *preferred, uint32_t *maximum) {
    *minimum = 1;
    *preferred = g.sector_size > 4096 ? g.sector_size : 4096;
    *maximum = 0xffffffff;
    return 0;
}

static int vmenc_pread(void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags) {
    vmenc_status st = vmenc_disk_pread(g.disk, offset, count, buf);
    return st == VMENC_OK ? 0 : io_fail("read", offset, count, st);
}

static int vmenc_flush(void *handle, uint32_t flags) {
    vmenc_status st = vmenc_disk_flush(g.disk);
    return st == VMENC_OK ? 0 : io_fail("flush", 0, 0, st);
}

static int vmenc_pwrite(void *handle, const void *buf, uint32_t count, uint64_t offset, uint32_t flags) {
    vmenc_status st = vmenc_disk_pwrite(g.disk, offset, buf, count);
    if (st != VMENC_OK)
        return io_fail("write", offset, count, st);
    return (flags & NBDKIT_FLAG_FUA) ? vmenc_flush(handle, 0) : 0;
}

static int vmenc_zero(void *handle, uint32_t count, uint64_t offset, uint32_t flags) {
    for (uint32_t done = 0; done < count;) {
        uint32_t n = count - done < ZERO_CHUNK ? count - done : ZERO_CHUNK;
        vmenc_status st = vmenc_disk_pwrite(g.disk, offset + done, zeros, n);
        if (st != VMENC_OK)
            return io_fail("write zeroes", offset + done, n, st);
        done += n;
    }
    return (flags & NBDKIT_FLAG_FUA) ? vmenc_flush(handle, 0) : 0;
}

static struct nbdkit_plugin plugin = {
    .name = "vmenc",
    .longname = "vmenc encrypted VM disk",
    .version = VMENC_VERSION_STRING,
    .description = "serves the decrypted view of a disk of a vmenc (VM Encryption) VM",
    .unload = vmenc_unload,
    .config = vmenc_config,
    .config_complete = vmenc_config_complete,
    .config_help = vmenc_config_help,
    .magic_config_key = "vm",
    .get_ready = vmenc_get_ready,
    .after_fork = vmenc_after_fork,
    .cleanup = vmenc_cleanup,
    .preconnect = vmenc_preconnect,
    .open = vmenc_open,
    .get_size = vmenc_get_size,
    .block_size = vmenc_block_size,
    .can_write = vmenc_can_write,
    .can_flush = vmenc_can_flush,
    .can_fua = vmenc_can_fua,
    .can_zero = vmenc_can_zero,
    .can_fast_zero = vmenc_can_fast_zero,
    .can_multi_conn = vmenc_can_multi_conn,
    .is_rotational = vmenc_is_rotational,
    .pread = vmenc_pread,
    .pwrite = vmenc_pwrite,
    .flush = vmenc_flush,
    .zero = vmenc_zero,
    .errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN(plugin)
