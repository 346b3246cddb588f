/*
 * examples/vm_demo.c - a VM encrypted end to end with the embedded file KMS,
 * written against vmenc/vm.h alone: what a hypervisor vendor calls.
 *
 *   vm_demo [WORKDIR [DISK_MIB]]
 *
 *   1. host set-up: a key manager whose key provider "native-kp" is the
 *      embedded file keystore, a policy (inventory, users, roles, storage
 *      policy "VM Encryption Policy"), a hash-chained audit log, a vmenc_host;
 *   2. bob (No cryptography administrator) creates vm01, a plain VM with a
 *      disk and an NVRAM file, and asks to encrypt it: denied;
 *   3. alice (Administrator) applies the encryption storage policy: the host
 *      switches to encryption mode, a KEK is created in the KMS, the VM key
 *      and the disk's DEK are made, wrapped and written; the NVRAM becomes
 *      an authenticated encrypted file; the guest then writes its disk
 *      through vmenc_disk_pwrite;
 *   4. the host restarts: bob powers vm01 on (KEK fetched by ID), every
 *      byte reads back, and no sector is plaintext on the datastore;
 *   5. what must fail: bob reading the disk out of band, a disk descriptor
 *      moved into another VM, a tampered wrapped key, an edited NVRAM, the
 *      host leaving encryption mode;
 *   6. a shallow rekey while the disk is open and in use;
 *   7. the audit log verifies.
 * Key bytes are never printed; key IDs are.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vmenc/vmenc.h>

#define CHUNK (1u << 20)
#define NVRAM_BYTES (128u * 1024u)
#define ALIAS "native-kp"
#define POLICY "VM Encryption Policy"

static const char *g_dir;
static int g_failures;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void step(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("\n== ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

/* check reports an expected outcome; any surprise makes the demo fail. */
static void check(int ok, const char *what) {
    printf("  [%s] %s\n", ok ? " ok " : "FAIL", what);
    if (!ok)
        g_failures++;
}

static int must(vmenc_status s, const char *what) {
    if (s != VMENC_OK) {
        fprintf(stderr, "  %s: %s (%s)\n", what, vmenc_strerror(s), vmenc_status_name(s));
        g_failures++;
        return 0;
    }
    return 1;
}

/* The guest's data: every 8 bytes name their offset. */
static void fill_pattern(uint8_t *buf, uint64_t off, size_t len, uint64_t salt) {
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = (off + i) * 0x9e3779b97f4a7c15ull ^ salt;
        memcpy(buf + i, &v, 8);
    }
}

static char *path(const char *rel) {
    static char bufs[8][1024];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", g_dir, rel);
    return b;
}

static uint8_t *read_all(const char *p, size_t *len) {
    FILE *f = fopen(p, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len + 1);
    if (b != NULL && fread(b, 1, *len, f) != *len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

static int write_all(const char *p, const void *d, size_t len) {
    FILE *f = fopen(p, "wb");
    if (f == NULL)
        return -1;
    int ok = fwrite(d, 1, len, f) == len;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* ---- host set-up ----------------------------------------------------------- */

static vmenc_policy *make_policy(void) {
    vmenc_policy *p = NULL;
    if (!must(vmenc_policy_new("vcenter", &p), "policy"))
        return NULL;
    vmenc_storage_policy_spec sp = {.struct_size = sizeof(sp), .name = POLICY, .encrypt = 1,
                                    .file_classes = VMENC_FILE_VM_HOME | VMENC_FILE_DISKS,
                                    .key_provider = ALIAS, .migration = VMENC_MIGRATION_REQUIRED};
    int ok = must(vmenc_policy_add_object(p, "dc1", VMENC_OBJ_DATACENTER, "vcenter"), "dc") &&
             must(vmenc_policy_add_object(p, "esx01", VMENC_OBJ_HOST, "dc1"), "host") &&
             must(vmenc_policy_add_object(p, "vms", VMENC_OBJ_FOLDER, "dc1"), "folder") &&
             must(vmenc_policy_add_user(p, "alice"), "user") && must(vmenc_policy_add_user(p, "bob"), "user") &&
             must(vmenc_policy_grant(p, "alice", "vcenter", VMENC_ROLE_ADMIN, 1), "grant") &&
             must(vmenc_policy_grant(p, "bob", "vcenter", VMENC_ROLE_NO_CRYPTO_ADMIN, 1), "grant") &&
             must(vmenc_policy_set_storage_policy(p, &sp), "storage policy");
    if (!ok) {
        vmenc_policy_free(p);
        return NULL;
    }
    return p;
}

static vmenc_keymgr *open_keymgr(const char *keystore) {
    static const char *const options[] = {"create=1", NULL};
    /* A demo passphrase. A deployment takes it from its secret store, never
     * from a command line. */
    const char *pass = "vmenc demo keystore passphrase";
    vmenc_kms_endpoint_config cfg = {.struct_size = sizeof(cfg), .type = "file", .address = keystore,
                                     .options = options, .secret = (const uint8_t *)pass,
                                     .secret_len = strlen(pass)};
    vmenc_keymgr *mgr = NULL;
    if (!must(vmenc_keymgr_new(NULL, &mgr), "key manager"))
        return NULL;
    if (!must(vmenc_keymgr_add_cluster(mgr, ALIAS, &cfg, 1, NULL), "key provider")) {
        vmenc_keymgr_free(mgr);
        return NULL;
    }
    return mgr;
}

static vmenc_host *new_host(vmenc_keymgr *mgr, vmenc_policy *policy, vmenc_audit *audit) {
    vmenc_host_options ho = {.struct_size = sizeof(ho), .host_id = "esx01", .keymgr = mgr, .policy = policy,
                             .audit = audit};
    vmenc_host *h = NULL;
    return must(vmenc_host_new(&ho, &h), "host") ? h : NULL;
}

/* write_disk writes the guest's pattern over the whole disk; seconds. */
static double write_disk(vmenc_disk *d, uint64_t size, uint64_t salt) {
    uint8_t *buf = malloc(CHUNK);
    double t0 = now_s();
    for (uint64_t off = 0; buf != NULL && off < size; off += CHUNK) {
        fill_pattern(buf, off, CHUNK, salt);
        if (!must(vmenc_disk_pwrite(d, off, buf, CHUNK), "disk write"))
            break;
    }
    double dt = now_s() - t0;
    free(buf);
    return dt;
}

/* verify_disk reads the whole disk back; returns mismatching chunks. */
static uint64_t verify_disk(vmenc_disk *d, uint64_t size, uint64_t salt, double *secs) {
    uint8_t *buf = malloc(CHUNK), *want = malloc(CHUNK);
    uint64_t bad = 0;
    double t0 = now_s();
    for (uint64_t off = 0; off < size; off += CHUNK) {
        fill_pattern(want, off, CHUNK, salt);
        if (vmenc_disk_pread(d, off, CHUNK, buf) != VMENC_OK || memcmp(buf, want, CHUNK) != 0)
            bad++;
    }
    *secs = now_s() - t0;
    free(buf);
    free(want);
    return bad;
}

/* plain_chunks counts chunks of the extent that hold the guest's plaintext. */
static uint64_t plain_chunks(const char *extent, uint64_t size, uint64_t salt) {
    FILE *f = fopen(extent, "rb");
    uint8_t *buf = malloc(CHUNK), *want = malloc(CHUNK);
    uint64_t n = 0;
    for (uint64_t off = 0; f != NULL && off < size; off += CHUNK) {
        fill_pattern(want, off, CHUNK, salt);
        if (fread(buf, 1, CHUNK, f) != CHUNK || memcmp(buf, want, 64) == 0)
            n++;
    }
    if (f != NULL)
        fclose(f);
    free(buf);
    free(want);
    return f != NULL ? n : size / CHUNK;
}

int main(int argc, char **argv) {
    char tmpl[] = "/tmp/vmenc-demo-XXXXXX";
    g_dir = argc > 1 ? argv[1] : mkdtemp(tmpl);
    uint64_t disk_mib = argc > 2 ? strtoull(argv[2], NULL, 10) : 256;
    if (g_dir == NULL || (argc > 1 && mkdir(g_dir, 0700) != 0 && errno != EEXIST) || disk_mib == 0) {
        fprintf(stderr, "usage: vm_demo [WORKDIR [DISK_MIB]]\n");
        return 1;
    }
    if (!must(vmenc_init(), "vmenc_init"))
        return 1;
    const uint64_t size = disk_mib << 20, salt = 0x5eed;
    printf("vmenc %s: a VM encrypted end to end, through vmenc/vm.h only\nwork dir: %s\n",
           vmenc_version_string(), g_dir);

    /* ---- 1 ---- */
    step("1. host set-up: key provider '%s' (file keystore), policy, audit log, host esx01", ALIAS);
    uint8_t audit_key[VMENC_AUDIT_KEY_BYTES];
    vmenc_audit_log *log = NULL;
    vmenc_audit *audit = NULL;
    vmenc_policy *policy = make_policy();
    vmenc_keymgr *mgr = open_keymgr(path("native-kp.keystore"));
    if (!policy || !mgr || !must(vmenc_random_bytes(audit_key, sizeof(audit_key)), "audit key"))
        return 1;
    vmenc_audit_log_options lo = {.struct_size = sizeof(lo), .path = path("audit.log"), .key = audit_key,
                                  .key_len = sizeof(audit_key), .fsync = VMENC_AUDIT_FSYNC_EVERY};
    if (!must(vmenc_audit_log_open(&lo, &log), "audit log") || !must(vmenc_audit_new(&audit), "audit") ||
        !must(vmenc_audit_add_log(audit, log), "audit sink"))
        return 1;
    vmenc_host *host = new_host(mgr, policy, audit);
    if (host == NULL)
        return 1;

    /* ---- 2 ---- */
    step("2. bob (No cryptography administrator) creates vm01 and asks to encrypt it");
    vmenc_vm *vm = NULL;
    vmenc_vm_create_options co = {.struct_size = sizeof(co), .principal = "bob", .home_dir = path("vm01"),
                                  .name = "vm01", .folder = "vms"};
    if (!must(vmenc_vm_create(host, &co, &vm), "create vm01"))
        return 1;
    char disk_id[VMENC_DISK_ID_MAX + 1];
    vmenc_disk_create_options dopt = {.struct_size = sizeof(dopt), .capacity = size, .sector_size = 4096};
    if (!must(vmenc_vm_add_disk(vm, "bob", &dopt, disk_id, sizeof(disk_id)), "add disk"))
        return 1;
    uint8_t *nv = malloc(NVRAM_BYTES);
    fill_pattern(nv, 0, NVRAM_BYTES, salt ^ 1);
    vmenc_vm_file *f = NULL;
    if (!must(vmenc_vm_file_open(vm, "bob", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_CREATE, &f), "nvram") ||
        !must(vmenc_vm_file_pwrite(f, 0, nv, NVRAM_BYTES), "nvram write") ||
        !must(vmenc_vm_file_close(f), "nvram close"))
        return 1;
    printf("  vm01: %llu MiB disk %s (4 KiB sectors), %u KiB NVRAM, plain\n", (unsigned long long)disk_mib,
           disk_id, NVRAM_BYTES / 1024);
    vmenc_status s = vmenc_vm_apply_storage_policy(vm, "bob", POLICY);
    check(s == VMENC_E_DENIED, "bob may not apply an encryption policy (denied, and audited)");

    /* ---- 3 ---- */
    step("3. alice (Administrator) applies '%s' to vm01", POLICY);
    double t0 = now_s();
    s = vmenc_vm_apply_storage_policy(vm, "alice", POLICY);
    check(s == VMENC_OK, "policy applied: VM home and disk encrypted");
    vmenc_host_crypto_state hs = VMENC_HOST_INCAPABLE;
    check(vmenc_policy_get_host_state(policy, "esx01", &hs) == VMENC_OK && hs == VMENC_HOST_SAFE,
          "host esx01 switched to encryption mode on the way (alice holds Cryptographer.RegisterHost)");
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    if (!must(vmenc_vm_get_info(vm, &info), "info"))
        return 1;
    printf("  KEK %s/%s created in the KMS; VM key and disk DEK wrapped under it (%.0f ms)\n", info.key_provider,
           info.kek_id, (now_s() - t0) * 1e3);
    vmenc_disk *d = NULL;
    if (!must(vmenc_disk_open(vm, "alice", disk_id, 0, &d), "open disk"))
        return 1;
    double wt = write_disk(d, size, salt);
    printf("  the guest writes its disk through vmenc_disk_pwrite: %.2f GB/s\n", (double)size / wt / 1e9);
    if (!must(vmenc_disk_close(d), "close disk"))
        return 1;
    vmenc_vm_free(vm);

    /* ---- 4 ---- */
    step("4. host restart: every key dropped from memory; bob powers vm01 on");
    vmenc_host_free(host);
    vmenc_keymgr_free(mgr);
    mgr = open_keymgr(path("native-kp.keystore"));
    host = mgr ? new_host(mgr, policy, audit) : NULL;
    if (host == NULL)
        return 1;
    t0 = now_s();
    s = vmenc_vm_open(host, "bob", path("vm01/vm01.vmx"), &vm);
    check(s == VMENC_OK, "vm01 opened: KEK fetched from the KMS by the ID in its record, keys unwrapped");
    if (s != VMENC_OK)
        return 1;
    printf("  open took %.1f ms\n", (now_s() - t0) * 1e3);
    double rt = 0;
    if (!must(vmenc_disk_open(vm, "bob", disk_id, 0, &d), "open disk"))
        return 1;
    check(verify_disk(d, size, salt, &rt) == 0, "every byte of the disk reads back as the guest wrote it");
    printf("  read back at %.2f GB/s\n", (double)size / rt / 1e9);
    char extent[VMENC_VM_NAME_MAX + 32];
    snprintf(extent, sizeof(extent), "vm01/vm01_0-flat.vmdk");
    check(plain_chunks(path(extent), size, salt) == 0, "no chunk of the extent on the datastore is plaintext");
    uint8_t *back = malloc(NVRAM_BYTES);
    size_t got = 0;
    check(vmenc_vm_file_open(vm, "bob", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_READONLY, &f) == VMENC_OK &&
              vmenc_vm_file_pread(f, 0, NVRAM_BYTES, back, &got) == VMENC_OK && got == NVRAM_BYTES &&
              memcmp(back, nv, NVRAM_BYTES) == 0 && vmenc_vm_file_close(f) == VMENC_OK,
          "the NVRAM reads back (authenticated: AES-256-GCM per 64 KiB chunk)");

    /* ---- 5 ---- */
    step("5. what must fail");
    vmenc_disk *raw = NULL;
    check(vmenc_disk_open(vm, "bob", disk_id, VMENC_DISK_OPEN_EXPORT, &raw) == VMENC_E_DENIED,
          "bob may run vm01 but not read its disk out of band (Cryptographer.Access)");
    size_t nlen = 0;
    uint8_t *nvfile = read_all(path("vm01/vm01.nvram"), &nlen);
    if (nvfile != NULL && nlen > 1000) {
        nvfile[1000] ^= 0x20;
        write_all(path("vm01/vm01.nvram"), nvfile, nlen);
        s = vmenc_vm_file_open(vm, "bob", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_READONLY, &f);
        if (s == VMENC_OK) {
            s = vmenc_vm_file_pread(f, 0, NVRAM_BYTES, back, &got);
            vmenc_status cs = vmenc_vm_file_close(f);
            (void)cs;
        }
        check(s == VMENC_E_AUTH, "one bit of the NVRAM flipped on the datastore: detected, nothing returned");
        nvfile[1000] ^= 0x20;
        write_all(path("vm01/vm01.nvram"), nvfile, nlen);
    }
    free(nvfile);
    size_t vlen = 0;
    uint8_t *vmx = read_all(path("vm01/vm01.vmx"), &vlen);
    char *ks = vmx ? strstr((char *)vmx, "encryption.keySafe = \"vmwk1:") : NULL;
    if (ks != NULL) {
        char orig = ks[40];
        ks[40] = orig == 'A' ? 'B' : 'A';
        write_all(path("vm01/vm01.vmx"), vmx, vlen);
        vmenc_vm *evil = NULL;
        s = vmenc_vm_open(host, "bob", path("vm01/vm01.vmx"), &evil);
        check(s != VMENC_OK && s != VMENC_E_VM_LOCKED, "one character of the wrapped VM key changed: refused");
        printf("    (%s)\n", vmenc_strerror(s));
        ks[40] = orig;
        write_all(path("vm01/vm01.vmx"), vmx, vlen);
    }
    free(vmx);
    /* vm02's disk descriptor copied into vm01's place */
    vmenc_vm *vm2 = NULL;
    co.principal = "alice";
    co.home_dir = path("vm02");
    co.name = "vm02";
    co.storage_policy = POLICY;
    dopt.capacity = 1 << 20;
    char id2[VMENC_DISK_ID_MAX + 1];
    if (must(vmenc_vm_create(host, &co, &vm2), "create vm02") &&
        must(vmenc_vm_add_disk(vm2, "alice", &dopt, id2, sizeof(id2)), "vm02 disk")) {
        size_t l1 = 0, l2 = 0;
        uint8_t *mine = read_all(path("vm01/vm01_0.vmdk"), &l1), *theirs = read_all(path("vm02/vm02_0.vmdk"), &l2);
        if (mine != NULL && theirs != NULL) {
            write_all(path("vm01/vm01_0.vmdk"), theirs, l2);
            vmenc_vm *evil = NULL;
            s = vmenc_vm_open(host, "alice", path("vm01/vm01.vmx"), &evil);
            check(s == VMENC_E_CONTEXT_MISMATCH || s == VMENC_E_AUTH,
                  "vm02's disk descriptor put in vm01's home: refused (keys are bound to VM and disk)");
            vmenc_vm_free(evil);
            write_all(path("vm01/vm01_0.vmdk"), mine, l1);
        }
        free(mine);
        free(theirs);
    }
    vmenc_vm_free(vm2);
    check(vmenc_policy_set_host_state(policy, "esx01", VMENC_HOST_PENDING_INCAPABLE) == VMENC_E_HOST_MODE,
          "esx01 cannot leave encryption mode while it holds an encrypted VM");

    /* ---- 6 ---- */
    step("6. shallow rekey while the disk is open and in use");
    char old_kek[VMENC_KEY_ID_MAX + 1];
    snprintf(old_kek, sizeof(old_kek), "%s", info.kek_id);
    uint8_t *buf = malloc(CHUNK);
    fill_pattern(buf, 0, CHUNK, salt);
    s = vmenc_vm_rekey_shallow(vm, "bob", NULL, NULL);
    check(s == VMENC_E_DENIED, "bob may not rekey (Cryptographer.Recrypt)");
    s = vmenc_vm_rekey_shallow(vm, "alice", NULL, NULL);
    int io_ok = vmenc_disk_pwrite(d, 0, buf, CHUNK) == VMENC_OK;
    check(s == VMENC_OK && io_ok && vmenc_vm_get_info(vm, &info) == VMENC_OK && strcmp(old_kek, info.kek_id) != 0,
          "every record re-wrapped under a new KEK; the data was not touched and I/O went on");
    printf("  KEK %s -> %s\n", old_kek, info.kek_id);
    check(verify_disk(d, size, salt, &rt) == 0, "every byte still reads back");
    must(vmenc_disk_close(d), "close disk");
    vmenc_vm_free(vm);
    free(buf);
    free(back);
    free(nv);

    /* ---- 7 ---- */
    step("7. the audit trail");
    uint64_t last_seq = 0;
    uint8_t last_hash[VMENC_AUDIT_HASH_BYTES];
    must(vmenc_audit_log_position(log, &last_seq, last_hash), "position");
    vmenc_host_free(host);
    vmenc_audit_free(audit);
    vmenc_audit_log_free(log);
    vmenc_audit_verify_options vo = {.struct_size = sizeof(vo), .key = audit_key, .key_len = sizeof(audit_key),
                                     .expected_last_seq = last_seq};
    vmenc_audit_verify_result vr = {.struct_size = sizeof(vr)};
    const char *paths[1] = {path("audit.log")};
    check(vmenc_audit_verify_files(&vo, paths, 1, &vr) == VMENC_OK,
          "audit log verifies: every record present, in order, unedited");
    printf("  %llu records (denied and failed attempts included), e.g.:\n", (unsigned long long)vr.num_records);
    FILE *lf = fopen(paths[0], "r");
    char line[2048];
    for (int i = 0; lf && i < 3 && fgets(line, sizeof(line), lf); i++)
        printf("    %.160s...\n", line);
    if (lf)
        fclose(lf);
    vmenc_memzero(audit_key, sizeof(audit_key));
    printf("\n{\"demo\":\"vm\",\"disk_mib\":%llu,\"write_gbps\":%.3f,\"read_gbps\":%.3f,\"audit_records\":%llu,"
           "\"failures\":%d}\n",
           (unsigned long long)disk_mib, (double)size / wt / 1e9, (double)size / rt / 1e9,
           (unsigned long long)vr.num_records, g_failures);
    vmenc_keymgr_free(mgr);
    vmenc_policy_free(policy);
    if (argc <= 1) {
        char cmd[1200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", g_dir);
    }
    printf("%s\n", g_failures ? "DEMO FAILED" : "demo complete: every check passed");
    return g_failures ? 1 : 0;
}
