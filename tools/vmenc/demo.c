/*
 * tools/vmenc/demo.c - `vmenc demo`: the whole story in a fresh temporary
 * workspace with the embedded file key provider, step by step, every
 * outcome checked. Only the public API (the same calls the other verbs
 * make).
 *
 * Steps that wait for later library parts slot in where marked: in-place
 * encryption of a disk that already holds data and the deep rekey (the
 * conversion engine), core dumps and migration. Until then the disk is
 * encrypted while empty, then filled with the known data.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "cli.h"

const char *const cmd_demo_help =
    "Runs in a new temporary workspace (removed afterwards unless --keep DIR is given):\n"
    "an administrator (alice) and a No cryptography administrator (bob); a VM with a disk of\n"
    "known data (--disk-mib, default 256); bob denied; alice applies 'VM Encryption Policy'\n"
    "(host encryption mode switched on automatically); bob powers the VM on but is denied\n"
    "decrypt, console and export; a shallow rekey; a host restart; every byte checked; the\n"
    "audit log verified. Ends with one line saying whether every check passed (exit 1 if not).\n";

#define SECTOR 512u
#define CHUNK (4u << 20)
#define NVRAM_BYTES (128u * 1024u)
#define DISK "scsi0:0"

typedef struct demo {
    cli *c;
    const char *dir;
    vmenc_workspace *ws;
    int checks, failures;
    uint64_t disk_bytes;
    double t0;
} demo;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void say(demo *d, const char *fmt, ...) {
    if (d->c->json || d->c->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

static void step(demo *d, const char *title) { say(d, "\n== %s", title); }

static bool check(demo *d, bool ok, const char *fmt, ...) {
    d->checks++;
    d->failures += !ok;
    if (!ok || (!d->c->json && !d->c->quiet)) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        FILE *f = d->c->json || d->c->quiet ? stderr : stdout;
        fprintf(f, "  [%s] %s\n", ok ? " ok " : "FAIL", msg);
    }
    return ok;
}

/* The guest's data: every 8 bytes name their sector and offset. */
static void pattern(uint8_t *buf, uint64_t off, size_t len, uint64_t salt) {
    for (size_t i = 0; i < len; i += 8) {
        uint64_t pos = off + i, v = (pos / SECTOR) * 0x9e3779b97f4a7c15ull ^ (pos % SECTOR) ^ salt;
        memcpy(buf + i, &v, 8);
    }
}

static const char *const ALICE = "alice", *const BOB = "bob";

static vmenc_status open_as(demo *d, const char *who, vmenc_vm **vm) {
    return vmenc_workspace_open_vm(d->ws, who, "vm01", vm);
}

/* fill writes the known data through the encrypted disk (alice powers on). */
static bool fill(demo *d, vmenc_vm *vm, uint64_t salt) {
    vmenc_disk *disk = NULL;
    vmenc_status st = vmenc_disk_open(vm, ALICE, DISK, 0, &disk);
    uint8_t *buf = malloc(CHUNK);
    progress *p = progress_start(d->c, "write", d->disk_bytes);
    for (uint64_t off = 0; st == VMENC_OK && buf && off < d->disk_bytes && !g_interrupted; off += CHUNK) {
        size_t n = d->disk_bytes - off < CHUNK ? (size_t)(d->disk_bytes - off) : CHUNK;
        pattern(buf, off, n, salt);
        st = vmenc_disk_pwrite(disk, off, buf, n);
        progress_update(p, off + n);
    }
    progress_end(p);
    free(buf);
    vmenc_status cs = vmenc_disk_close(disk);
    return check(d, st == VMENC_OK && cs == VMENC_OK && !g_interrupted, "%llu MiB of known data written by the guest",
                 (unsigned long long)(d->disk_bytes >> 20));
}

/* verify reads every byte back through the disk and compares. */
static bool verify(demo *d, vmenc_vm *vm, uint64_t salt, const char *when) {
    vmenc_disk *disk = NULL;
    vmenc_status st = vmenc_disk_open(vm, ALICE, DISK, VMENC_DISK_OPEN_READONLY, &disk);
    uint8_t *buf = malloc(CHUNK), *want = malloc(CHUNK);
    uint64_t bad = 0;
    progress *p = progress_start(d->c, "verify", d->disk_bytes);
    for (uint64_t off = 0; st == VMENC_OK && buf && want && off < d->disk_bytes && !g_interrupted; off += CHUNK) {
        size_t n = d->disk_bytes - off < CHUNK ? (size_t)(d->disk_bytes - off) : CHUNK;
        st = vmenc_disk_pread(disk, off, n, buf);
        pattern(want, off, n, salt);
        for (size_t s = 0; st == VMENC_OK && s < n; s += SECTOR)
            bad += memcmp(buf + s, want + s, SECTOR) != 0;
        progress_update(p, off + n);
    }
    progress_end(p);
    free(buf);
    free(want);
    vmenc_status cs = vmenc_disk_close(disk);
    return check(d, st == VMENC_OK && cs == VMENC_OK && bad == 0 && !g_interrupted,
                 "every byte of the disk reads back right %s (%llu sectors, %llu wrong)", when,
                 (unsigned long long)(d->disk_bytes / SECTOR), (unsigned long long)bad);
}

/* plaintext_on_disk counts sectors of the raw extent that hold the known data. */
static uint64_t plaintext_on_disk(demo *d, uint64_t salt) {
    char home[1024], path[1600];
    if (vmenc_workspace_vm_home(d->ws, "vm01", home, sizeof(home)) != VMENC_OK)
        return UINT64_MAX;
    vmenc_vm_info info;
    (void)info;
    snprintf(path, sizeof(path), "%s/vm01_0-flat.vmdk", home);
    int fd = open(path, O_RDONLY);
    if (fd < 0) { /* the extent name is the VM layer's business: find it */
        DIR *dd = opendir(home);
        struct dirent *e;
        while (dd && (e = readdir(dd)) != NULL)
            if (strstr(e->d_name, "-flat.vmdk")) {
                snprintf(path, sizeof(path), "%s/%s", home, e->d_name);
                break;
            }
        if (dd)
            closedir(dd);
        fd = open(path, O_RDONLY);
    }
    if (fd < 0)
        return UINT64_MAX;
    uint8_t *buf = malloc(CHUNK), *want = malloc(CHUNK);
    uint64_t plain = 0;
    ssize_t n;
    for (uint64_t off = 0; buf && want && (n = pread(fd, buf, CHUNK, (off_t)off)) > 0; off += (uint64_t)n) {
        pattern(want, off, (size_t)n, salt);
        for (ssize_t s = 0; s + (ssize_t)SECTOR <= n; s += SECTOR)
            plain += memcmp(buf + s, want + s, SECTOR) == 0;
    }
    close(fd);
    free(buf);
    free(want);
    return plain;
}

static vmenc_status decide(demo *d, const char *who, vmenc_policy_op op, const char *name, vmenc_policy_decision *dec) {
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = op, .vm = "vm01", .flags = VMENC_REQ_VM_ENCRYPTED};
    memset(dec, 0, sizeof(*dec));
    dec->struct_size = sizeof(*dec);
    vmenc_status st = vmenc_workspace_authorize(d->ws, who, &rq, name, "vm01", dec);
    if (st == VMENC_OK)
        st = vmenc_workspace_audit_result(d->ws, who, name, "vm01", NULL, NULL, VMENC_OK, NULL);
    return st;
}

static int reopen(demo *d) {
    vmenc_workspace_free(d->ws);
    d->ws = NULL;
    const char *pass = "vmenc demo passphrase (a deployment reads it from its secret store)";
    vmenc_workspace_open_options oo = {.struct_size = sizeof(oo), .passphrase = (const uint8_t *)pass,
                                       .passphrase_len = strlen(pass)};
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_status st = vmenc_workspace_open(d->dir, &oo, &err, &d->ws);
    return check(d, st == VMENC_OK, "workspace opened (%s%s%s)", vmenc_strerror(st), err.message[0] ? ": " : "",
                 err.message) ? 0 : -1;
}

static void rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *dd = opendir(path);
        struct dirent *e;
        while (dd && (e = readdir(dd)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char sub[2048];
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            rm_rf(sub);
        }
        if (dd)
            closedir(dd);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void story(demo *d) {
    const uint64_t salt = 0x5eed;
    vmenc_status st;
    vmenc_policy_decision dec;

    step(d, "1. a workspace: embedded file key provider 'native', policy, audit log");
    const char *pass = "vmenc demo passphrase (a deployment reads it from its secret store)";
    vmenc_workspace_create_options co = {.struct_size = sizeof(co), .passphrase = (const uint8_t *)pass,
                                         .passphrase_len = strlen(pass), .admin = ALICE, .host_id = "esx01",
                                         .kdf_opslimit = 1, .kdf_memlimit_kib = 8192,
                                         .flags = VMENC_WORKSPACE_CREATE_DEFAULT_POLICY};
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    st = vmenc_workspace_create(d->dir, &co, &err);
    if (!check(d, st == VMENC_OK, "workspace created in %s (%s)", d->dir, st ? err.message : "ok") || reopen(d) != 0)
        return;
    vmenc_policy *p = vmenc_workspace_policy(d->ws);
    st = vmenc_policy_add_user(p, BOB);
    if (st == VMENC_OK)
        st = vmenc_policy_grant(p, BOB, "root", VMENC_ROLE_NO_CRYPTO_ADMIN, 1);
    if (st == VMENC_OK)
        st = vmenc_workspace_save_policy(d->ws);
    check(d, st == VMENC_OK, "alice is Administrator; bob is No cryptography administrator");
    say(d, "  (the audit chain key is wrapped under a KEK of 'native'; the passphrase is never stored)");

    step(d, "2. a VM with a disk of known data");
    char home[1024];
    vmenc_vm *vm = NULL;
    st = vmenc_workspace_vm_home(d->ws, "vm01", home, sizeof(home));
    vmenc_vm_create_options vo = {.struct_size = sizeof(vo), .principal = ALICE, .home_dir = home, .name = "vm01",
                                  .folder = vmenc_workspace_folder(d->ws)};
    if (st == VMENC_OK)
        st = vmenc_vm_create(vmenc_workspace_host(d->ws), &vo, &vm);
    vmenc_disk_create_options dco = {.struct_size = sizeof(dco), .capacity = d->disk_bytes, .sector_size = SECTOR};
    if (st == VMENC_OK)
        st = vmenc_vm_add_disk(vm, ALICE, &dco, NULL, 0);
    if (st == VMENC_OK)
        st = vmenc_workspace_save_policy(d->ws);
    if (!check(d, st == VMENC_OK, "vm01 created (plain) with a %llu MiB disk %s (%s)",
               (unsigned long long)(d->disk_bytes >> 20), DISK, vmenc_strerror(st)))
        return;
    vmenc_host_crypto_state hs = VMENC_HOST_SAFE;
    if (vmenc_policy_get_host_state(p, "esx01", &hs) != VMENC_OK)
        hs = VMENC_HOST_INCAPABLE;
    say(d, "  host esx01 encryption mode: %s", vmenc_host_crypto_state_name(hs));

    step(d, "3. bob (No cryptography administrator) applies 'VM Encryption Policy'");
    st = vmenc_vm_apply_storage_policy(vm, BOB, "VM Encryption Policy");
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_ENCRYPT_VM, .vm = "vm01"};
    memset(&dec, 0, sizeof(dec));
    dec.struct_size = sizeof(dec);
    if (vmenc_policy_check(p, BOB, &rq, &dec) != VMENC_OK)
        say(d, "  %s", dec.message);
    check(d, st == VMENC_E_DENIED, "bob is denied (%s)", vmenc_status_name(st));

    step(d, "4. alice applies 'VM Encryption Policy'");
    /* Here the in-place conversion engine will encrypt a disk that already
     * holds data (with progress); until it lands the policy is applied
     * while the disk is empty and the data is written afterwards. */
    double t = now_s();
    st = vmenc_vm_apply_storage_policy(vm, ALICE, "VM Encryption Policy");
    vmenc_status ss = vmenc_workspace_save_policy(d->ws);
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    if (vmenc_vm_get_info(vm, &info) != VMENC_OK)
        info.encrypted = 0;
    check(d, st == VMENC_OK && ss == VMENC_OK && info.encrypted, "vm01 encrypted under KEK %s/%s (%.0f ms)",
          info.key_provider, info.kek_id, (now_s() - t) * 1e3);
    if (vmenc_policy_get_host_state(p, "esx01", &hs) != VMENC_OK)
        hs = VMENC_HOST_INCAPABLE;
    check(d, hs == VMENC_HOST_SAFE, "host esx01 switched to encryption mode automatically (now %s)",
          vmenc_host_crypto_state_name(hs));
    t = now_s();
    if (!fill(d, vm, salt))
        return;
    say(d, "  %.0f MiB/s through XTS-AES-256", (double)(d->disk_bytes >> 20) / (now_s() - t));
    vmenc_vm_file *nv = NULL;
    uint8_t nvram[NVRAM_BYTES];
    pattern(nvram, 0, sizeof(nvram), salt ^ 1);
    st = vmenc_vm_file_open(vm, ALICE, VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_CREATE, &nv);
    if (st == VMENC_OK)
        st = vmenc_vm_file_pwrite(nv, 0, nvram, sizeof(nvram));
    vmenc_status cs = vmenc_vm_file_close(nv);
    check(d, st == VMENC_OK && cs == VMENC_OK, "NVRAM written (chunked AES-256-GCM)");
    uint64_t plain = plaintext_on_disk(d, salt);
    check(d, plain == 0, "the datastore holds no plaintext sector of the disk (%llu found)", (unsigned long long)plain);

    step(d, "5. bob powers vm01 on, then asks to decrypt it, open its console, export its disk");
    vmenc_vm *bvm = NULL;
    st = open_as(d, BOB, &bvm);
    vmenc_disk *bd = NULL;
    vmenc_status ds = st == VMENC_OK ? vmenc_disk_open(bvm, BOB, DISK, VMENC_DISK_OPEN_READONLY, &bd) : st;
    check(d, st == VMENC_OK && ds == VMENC_OK, "bob powers vm01 on (its disks open for the guest)");
    cs = vmenc_disk_close(bd);
    (void)cs;
    st = bvm ? vmenc_vm_apply_storage_policy(bvm, BOB, "Datastore Default") : VMENC_E_INTERNAL;
    check(d, st == VMENC_E_DENIED, "bob may not decrypt vm01 (%s)", vmenc_status_name(st));
    st = decide(d, BOB, VMENC_OP_CONSOLE, "vm.console", &dec);
    if (st != VMENC_OK)
        say(d, "  %s", dec.message);
    check(d, st == VMENC_E_DENIED, "bob may not open the console of the encrypted VM");
    bd = NULL;
    st = bvm ? vmenc_disk_open(bvm, BOB, DISK, VMENC_DISK_OPEN_EXPORT | VMENC_DISK_OPEN_READONLY, &bd) : VMENC_E_INTERNAL;
    cs = vmenc_disk_close(bd);
    check(d, st == VMENC_E_DENIED, "bob may not export (download) its disk (%s)", vmenc_status_name(st));
    vmenc_vm_free(bvm);

    step(d, "6. alice rekeys vm01 (shallow: new KEK, same data keys)");
    char old_kek[VMENC_KMS_KEY_ID_CAP];
    snprintf(old_kek, sizeof(old_kek), "%s", info.kek_id);
    st = vmenc_vm_rekey_shallow(vm, ALICE, NULL, NULL);
    if (vmenc_vm_get_info(vm, &info) != VMENC_OK)
        info.encrypted = 0;
    check(d, st == VMENC_OK && strcmp(old_kek, info.kek_id) != 0, "every wrapped key now names KEK %s (was %s)",
          info.kek_id, old_kek);
    /* The deep rekey (new DEKs, data re-encrypted) goes here with the
     * conversion engine; core dump and migration steps follow it. */
    vmenc_vm_free(vm);
    vm = NULL;

    step(d, "7. the host restarts: keys are dropped from memory and fetched again by ID");
    if (reopen(d) != 0)
        return;
    st = open_as(d, ALICE, &vm);
    if (!check(d, st == VMENC_OK, "vm01 opens: KEK %s fetched from 'native', keys unwrapped", info.kek_id))
        return;
    verify(d, vm, salt, "after the rekey and restart");
    nv = NULL;
    size_t got = 0;
    uint8_t back[NVRAM_BYTES];
    st = vmenc_vm_file_open(vm, ALICE, VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_READONLY, &nv);
    if (st == VMENC_OK)
        st = vmenc_vm_file_pread(nv, 0, sizeof(back), back, &got);
    cs = vmenc_vm_file_close(nv);
    check(d, st == VMENC_OK && got == sizeof(back) && memcmp(back, nvram, sizeof(back)) == 0,
          "NVRAM reads back right and authenticates");
    vmenc_vm_free(vm);

    step(d, "8. the audit trail");
    vmenc_audit_verify_result vr = {.struct_size = sizeof(vr)};
    st = vmenc_workspace_audit_verify(d->ws, NULL, &vr);
    check(d, st == VMENC_OK, "audit log verifies: %llu records, every one present, in order, unedited",
          (unsigned long long)vr.num_records);
    FILE *f = fopen(vmenc_workspace_audit_log_path(d->ws), "r");
    char line[4096];
    while (f && fgets(line, sizeof(line), f))
        if (strstr(line, "\"denied\"") && strstr(line, "\"bob\"")) {
            say(d, "  e.g. %.160s...", line);
            break;
        }
    if (f)
        fclose(f);
}

int cmd_demo(cli *c, args *a) {
    const char *mib_s = NULL, *keep = NULL;
    (void)arg_value(c, a, "--disk-mib", &mib_s);
    (void)arg_value(c, a, "--keep", &keep);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    uint64_t mib = 256;
    if (mib_s && (!parse_size(mib_s, &mib) || mib == 0 || mib > 65536))
        return cli_usage(c, "--disk-mib takes 1..65536");
    char tmpl[] = "/tmp/vmenc-demo-XXXXXX";
    char dir[1024];
    if (keep != NULL) {
        snprintf(dir, sizeof(dir), "%s", keep);
    } else {
        const char *tmp = mkdtemp(tmpl);
        if (tmp == NULL)
            return cli_fail(c, VMENC_E_IO, "cannot make a temporary directory");
        snprintf(dir, sizeof(dir), "%s/ws", tmp);
    }
    demo d = {.c = c, .dir = dir, .disk_bytes = mib << 20, .t0 = now_s()};
    say(&d, "vmenc %s demo: VM encryption with the embedded key provider, checked step by step", vmenc_version_string());
    story(&d);
    vmenc_workspace_free(d.ws);
    double secs = now_s() - d.t0;
    if (keep == NULL) {
        rm_rf(tmpl);
    }
    bool ok = d.failures == 0 && !g_interrupted && d.checks > 0;
    if (c->json) {
        out_t *o = out_begin(c);
        out_bool(o, "ok", ok);
        out_u64(o, "checks", (uint64_t)d.checks);
        out_u64(o, "failures", (uint64_t)d.failures);
        out_u64(o, "disk_mib", mib);
        out_double(o, "seconds", secs);
        out_str(o, "workspace", keep ? keep : "");
        out_end(o);
    } else {
        printf("\n%s (%d checks, %.1f s)\n", ok ? "demo complete: every check passed" : "DEMO FAILED", d.checks, secs);
    }
    if (g_interrupted)
        return EXIT_INTERRUPTED;
    return ok ? EXIT_OK : EXIT_FAILED;
}
