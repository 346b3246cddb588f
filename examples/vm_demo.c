/*
 * examples/vm_demo.c - a VM encrypted end to end with the embedded file KMS.
 *
 *   vm_demo [WORKDIR [DISK_MIB]]
 *
 * What a hypervisor does with vmenc, in the order vSphere does it:
 *   1. host set-up: a key manager whose key provider "native-kp" is the
 *      embedded file keystore; a policy (inventory, users, roles, a storage
 *      policy "VM Encryption Policy"); a hash-chained audit log;
 *   2. bob (No cryptography administrator) asks to encrypt vm01: denied;
 *   3. alice (Administrator) encrypts vm01: the host is switched to
 *      encryption mode, a KEK is created in the KMS, a DEK is generated for
 *      the VM home and one for the disk, each is wrapped under the KEK bound
 *      to its VM, disk and purpose and written to the VM's configuration;
 *      the NVRAM file and the disk are encrypted sector by sector;
 *   4. the host "restarts": everything in memory is dropped; the VM powers
 *      on again by reading its configuration, fetching the KEK by ID from
 *      the KMS and unwrapping its DEKs, and every sector reads back right;
 *   5. attacks that must fail: the disk key moved to another disk, a
 *      tampered wrapped key, bob opening the console of the encrypted VM;
 *   6. the audit log is verified.
 * Only the public API is used. Key bytes are never printed; key IDs are.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vmenc/vmenc.h>

#define SECTOR 4096u
#define CHUNK (1u << 20)
#define NVRAM_BYTES (64u * 1024u)
#define ALIAS "native-kp"
#define TIMEOUT_MS 10000u
#define VM_UUID "564d6c3a-7b2e-4f61-9a0e-1c2d3e4f5a6b"

static const char *g_dir;
static int g_failures;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void path_of(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", g_dir, name); }

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

/* The guest's data: every sector names itself. */
static void fill_pattern(uint8_t *buf, uint64_t first_sector, size_t len, uint64_t salt) {
    for (size_t off = 0; off < len; off += 8) {
        uint64_t v = (first_sector + off / SECTOR) * 0x9e3779b97f4a7c15ull ^ (off % SECTOR) ^ salt;
        memcpy(buf + off, &v, 8);
    }
}

static int write_file(const char *path, const void *data, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    int ok = write(fd, data, len) == (ssize_t)len && fsync(fd) == 0;
    close(fd);
    return ok ? 0 : -1;
}

/* xts_file runs the XTS engine over a whole file in place, chunk by chunk.
 * Returns seconds spent in the cipher, or < 0 on failure. */
static double xts_file(const char *path, const vmenc_xts *x, int encrypt) {
    int fd = open(path, O_RDWR);
    if (fd < 0)
        return -1;
    struct stat st;
    uint8_t *buf = malloc(CHUNK);
    double secs = 0;
    int ok = buf != NULL && fstat(fd, &st) == 0;
    for (uint64_t off = 0; ok && off < (uint64_t)st.st_size; off += CHUNK) {
        size_t n = (size_t)(((uint64_t)st.st_size - off) < CHUNK ? ((uint64_t)st.st_size - off) : CHUNK);
        ok = pread(fd, buf, n, (off_t)off) == (ssize_t)n;
        double t0 = now_s();
        ok = ok && (encrypt ? vmenc_xts_encrypt(x, off / SECTOR, buf, buf, n)
                            : vmenc_xts_decrypt(x, off / SECTOR, buf, buf, n)) == VMENC_OK;
        secs += now_s() - t0;
        ok = ok && pwrite(fd, buf, n, (off_t)off) == (ssize_t)n;
    }
    ok = ok && fsync(fd) == 0;
    free(buf);
    close(fd);
    return ok ? secs : -1;
}

/* count_plain_sectors: how many sectors of |path| still hold plaintext. */
static uint64_t count_plain_sectors(const char *path, uint64_t salt, uint64_t *out_total) {
    int fd = open(path, O_RDONLY);
    uint8_t *buf = malloc(CHUNK), *plain = malloc(CHUNK);
    uint64_t plain_count = 0, total = 0;
    ssize_t n;
    for (uint64_t off = 0; fd >= 0 && buf && plain && (n = pread(fd, buf, CHUNK, (off_t)off)) > 0; off += (uint64_t)n) {
        fill_pattern(plain, off / SECTOR, (size_t)n, salt);
        for (ssize_t so = 0; so + (ssize_t)SECTOR <= n; so += SECTOR, total++)
            plain_count += memcmp(buf + so, plain + so, SECTOR) == 0;
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    free(plain);
    *out_total = total;
    return plain_count;
}

/* ---- audit ------------------------------------------------------------- */

static vmenc_audit *g_audit;

static void audit(const char *principal, const char *op, const char *target, const char *kek_id,
                  vmenc_audit_outcome outcome, vmenc_status st, const char *reason) {
    const char *ids[1] = {kek_id};
    vmenc_audit_event ev = {
        .struct_size = sizeof(ev),
        .principal = principal,
        .operation = op,
        .target = target,
        .key_provider = kek_id ? ALIAS : NULL,
        .key_ids = kek_id ? ids : NULL,
        .num_key_ids = kek_id ? 1 : 0,
        .outcome = outcome,
        .status = st,
        .reason = reason,
    };
    must(vmenc_audit_emit(g_audit, &ev), "audit");
}

/* ---- policy ------------------------------------------------------------ */

static vmenc_policy *make_policy(void) {
    vmenc_policy *p = NULL;
    if (!must(vmenc_policy_new("vcenter", &p), "policy"))
        return NULL;
    int ok = must(vmenc_policy_add_object(p, "dc1", VMENC_OBJ_DATACENTER, "vcenter"), "dc") &&
             must(vmenc_policy_add_object(p, "esx01", VMENC_OBJ_HOST, "dc1"), "host") &&
             must(vmenc_policy_add_object(p, "vms", VMENC_OBJ_FOLDER, "dc1"), "folder") &&
             must(vmenc_policy_add_object(p, "vm01", VMENC_OBJ_VM, "vms"), "vm") &&
             must(vmenc_policy_set_vm_state(p, "vm01", "esx01", 0), "vm state") &&
             must(vmenc_policy_add_user(p, "alice"), "user") && must(vmenc_policy_add_user(p, "bob"), "user") &&
             must(vmenc_policy_grant(p, "alice", "vcenter", VMENC_ROLE_ADMIN, 1), "grant") &&
             must(vmenc_policy_grant(p, "bob", "vcenter", VMENC_ROLE_NO_CRYPTO_ADMIN, 1), "grant");
    vmenc_storage_policy_spec sp = {
        .struct_size = sizeof(sp),
        .name = "VM Encryption Policy",
        .encrypt = 1,
        .file_classes = VMENC_FILE_VM_HOME | VMENC_FILE_DISKS,
        .key_provider = ALIAS,
        .migration = VMENC_MIGRATION_REQUIRED,
    };
    ok = ok && must(vmenc_policy_set_storage_policy(p, &sp), "storage policy");
    if (!ok) {
        vmenc_policy_free(p);
        return NULL;
    }
    return p;
}

static vmenc_status decide(vmenc_policy *p, const char *who, vmenc_policy_op op, uint32_t flags,
                           vmenc_policy_decision *d) {
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = op, .vm = "vm01", .host = "esx01", .flags = flags};
    memset(d, 0, sizeof(*d));
    d->struct_size = sizeof(*d);
    return vmenc_policy_check(p, who, &rq, d);
}

/* ---- the key manager --------------------------------------------------- */

static vmenc_keymgr *open_keymgr(const char *keystore, const char *passphrase) {
    static const char *const options[] = {"create=1", NULL};
    vmenc_kms_endpoint_config cfg = {
        .struct_size = sizeof(cfg),
        .type = "file",
        .address = keystore,
        .options = options,
        .secret = (const uint8_t *)passphrase,
        .secret_len = strlen(passphrase),
    };
    vmenc_keymgr *mgr = NULL;
    if (!must(vmenc_keymgr_new(NULL, &mgr), "key manager"))
        return NULL;
    if (!must(vmenc_keymgr_add_cluster(mgr, ALIAS, &cfg, 1, NULL), "add key provider")) {
        vmenc_keymgr_free(mgr);
        return NULL;
    }
    return mgr;
}

static vmenc_wrap_context ctx_for(const char *disk_id, const char *purpose) {
    vmenc_wrap_context c = {.struct_size = sizeof(c), .vm_uuid = VM_UUID, .disk_id = disk_id, .purpose = purpose};
    return c;
}

/* The VM configuration: plain text, like a .vmx; only the wrapped keys in it
 * are secret-bearing, and they are useless without the KMS. */
static int write_vmx(const char *path, const char *home_key, const char *disk_key) {
    char buf[8192];
    int n = snprintf(buf, sizeof(buf),
                     "displayName = \"vm01\"\n"
                     "uuid.bios = \"" VM_UUID "\"\n"
                     "encryption.keySafe = \"%s\"\n"
                     "scsi0:0.fileName = \"vm01.vmdk\"\n"
                     "scsi0:0.encryption.keySafe = \"%s\"\n"
                     "nvram = \"vm01.nvram\"\n",
                     home_key, disk_key);
    return n > 0 && (size_t)n < sizeof(buf) ? write_file(path, buf, (size_t)n) : -1;
}

/* read_vmx_key finds `KEY = "value"` in the configuration. */
static int read_vmx_key(const char *path, const char *key, char *out, size_t cap) {
    FILE *f = fopen(path, "r");
    char line[8192];
    int found = 0;
    while (f && !found && fgets(line, sizeof(line), f)) {
        size_t kl = strlen(key);
        if (strncmp(line, key, kl) == 0 && strncmp(line + kl, " = \"", 4) == 0) {
            char *v = line + kl + 4, *end = strchr(v, '"');
            if (end && (size_t)(end - v) < cap) {
                memcpy(out, v, (size_t)(end - v));
                out[end - v] = 0;
                found = 1;
            }
        }
    }
    if (f)
        fclose(f);
    return found ? 0 : -1;
}

/* unwrap_from_vmx: parse the wrapped key stored under |key| and unwrap it
 * through the key manager (KMS fetch on a cache miss). */
static vmenc_status unwrap_from_vmx(vmenc_keymgr *mgr, const char *vmx, const char *key,
                                    const vmenc_wrap_context *ctx, vmenc_dek **out, char *kek_id,
                                    size_t kek_id_cap) {
    char text[4096];
    if (read_vmx_key(vmx, key, text, sizeof(text)) != 0)
        return VMENC_E_NOT_FOUND;
    vmenc_wrapped_key *wk = NULL;
    vmenc_status s = vmenc_wrapped_key_parse_text(text, strlen(text), &wk);
    if (s == VMENC_OK) {
        if (kek_id)
            snprintf(kek_id, kek_id_cap, "%s", vmenc_wrapped_key_kek_id(wk));
        s = vmenc_keymgr_unwrap_dek(mgr, wk, ctx, TIMEOUT_MS, out);
    }
    vmenc_wrapped_key_free(wk);
    return s;
}

int main(int argc, char **argv) {
    char tmpl[] = "/tmp/vmenc-demo-XXXXXX";
    g_dir = argc > 1 ? argv[1] : mkdtemp(tmpl);
    uint64_t disk_mib = argc > 2 ? strtoull(argv[2], NULL, 10) : 256;
    if (g_dir == NULL || (argc > 1 && mkdir(g_dir, 0700) != 0 && errno != EEXIST)) {
        fprintf(stderr, "cannot make work dir\n");
        return 1;
    }
    if (!must(vmenc_init(), "vmenc_init"))
        return 1;
    char keystore[512], vmx[512], disk[512], nvram[512], disk2[512], auditlog[512];
    path_of(keystore, sizeof(keystore), "native-kp.keystore");
    path_of(vmx, sizeof(vmx), "vm01.vmx");
    path_of(disk, sizeof(disk), "vm01.vmdk");
    path_of(nvram, sizeof(nvram), "vm01.nvram");
    path_of(disk2, sizeof(disk2), "vm02.vmdk");
    path_of(auditlog, sizeof(auditlog), "audit.log");
    /* A demo passphrase. A deployment takes it from its secret store and
     * never from a command line. */
    const char *passphrase = "vmenc demo keystore passphrase";
    const uint64_t disk_salt = 0x1111, nvram_salt = 0x2222;

    printf("vmenc %s: a VM encrypted end to end with the embedded file KMS\nwork dir: %s\n",
           vmenc_version_string(), g_dir);

    /* ---- 1. host set-up ------------------------------------------------ */
    step("1. host set-up: key provider '%s' (file keystore), policy, audit log", ALIAS);
    uint8_t audit_key[VMENC_AUDIT_KEY_BYTES];
    vmenc_audit_log *log = NULL;
    vmenc_policy *policy = make_policy();
    vmenc_keymgr *mgr = open_keymgr(keystore, passphrase);
    if (!must(vmenc_random_bytes(audit_key, sizeof(audit_key)), "audit key") || !policy || !mgr)
        return 1;
    vmenc_audit_log_options lo = {.struct_size = sizeof(lo), .path = auditlog, .key = audit_key,
                                  .key_len = sizeof(audit_key), .fsync = VMENC_AUDIT_FSYNC_EVERY};
    if (!must(vmenc_audit_log_open(&lo, &log), "audit log") || !must(vmenc_audit_new(&g_audit), "audit") ||
        !must(vmenc_audit_add_log(g_audit, log), "audit sink"))
        return 1;

    /* The guest's files before encryption. */
    uint8_t *buf = malloc(CHUNK);
    int fd = open(disk, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    for (uint64_t off = 0; buf && fd >= 0 && off < (disk_mib << 20); off += CHUNK) {
        fill_pattern(buf, off / SECTOR, CHUNK, disk_salt);
        if (pwrite(fd, buf, CHUNK, (off_t)off) != CHUNK)
            return 1;
    }
    if (fd < 0)
        return 1;
    fsync(fd);
    close(fd);
    fill_pattern(buf, 0, NVRAM_BYTES, nvram_salt);
    if (write_file(nvram, buf, NVRAM_BYTES) != 0)
        return 1;
    printf("  vm01: %llu MiB disk, %u KiB NVRAM, on host esx01 (host encryption mode: incapable)\n",
           (unsigned long long)disk_mib, NVRAM_BYTES / 1024);

    /* ---- 2. no cryptography administrator ------------------------------ */
    step("2. bob (No cryptography administrator) asks to encrypt vm01");
    vmenc_policy_decision d;
    vmenc_status s = decide(policy, "bob", VMENC_OP_ENCRYPT_VM, 0, &d);
    printf("  decision: %s\n", d.message);
    check(s == VMENC_E_DENIED && !d.allowed, "denied, and the decision names the missing privilege");
    audit("bob", "encrypt_vm", "vm01", NULL, VMENC_AUDIT_DENIED, s, d.message);

    /* ---- 3. encrypt ---------------------------------------------------- */
    step("3. alice (Administrator) applies 'VM Encryption Policy' to vm01");
    s = decide(policy, "alice", VMENC_OP_ENCRYPT_VM, 0, &d);
    printf("  decision: %s\n", d.message);
    check(s == VMENC_OK && d.allowed, "allowed");
    if (s == VMENC_OK && d.enable_host_encryption) {
        vmenc_policy_decision hd = {.struct_size = sizeof(hd)};
        s = vmenc_policy_enable_host_encryption(policy, "alice", "esx01", &hd);
        check(s == VMENC_OK, "host esx01 switched to encryption mode (alice holds Cryptographer.RegisterHost)");
        audit("alice", "enable_host_encryption", "esx01", NULL, VMENC_AUDIT_SUCCESS, s, NULL);
    }
    vmenc_vm_disk_state disk_state = {.encrypted = 0};
    vmenc_vm_crypto_state vs = {.struct_size = sizeof(vs), .num_disks = 1, .disks = &disk_state};
    vmenc_policy_action actions[VMENC_POLICY_MAX_ACTIONS(1)];
    size_t num_actions = 0;
    if (must(vmenc_policy_plan_storage_policy(policy, "VM Encryption Policy", &vs, actions,
                                              VMENC_POLICY_MAX_ACTIONS(1), &num_actions), "plan"))
        printf("  storage policy plan: %zu actions (encrypt VM home, encrypt disk 0, migration required)\n",
               num_actions);

    char kek_id[VMENC_KMS_KEY_ID_CAP];
    double t0 = now_s();
    if (!must(vmenc_keymgr_create_kek(mgr, ALIAS, "vm01", TIMEOUT_MS, kek_id, sizeof(kek_id)), "create KEK"))
        return 1;
    printf("  KEK created in the KMS: %s/%s (%.0f ms, Argon2id-protected keystore)\n", ALIAS, kek_id,
           (now_s() - t0) * 1e3);

    vmenc_dek *home_dek = NULL, *disk_dek = NULL;
    vmenc_wrapped_key *home_wk = NULL, *disk_wk = NULL;
    vmenc_wrap_context home_ctx = ctx_for("", "vm-home"), disk_ctx = ctx_for("scsi0:0", "disk");
    char *home_text = NULL, *disk_text = NULL;
    if (!must(vmenc_dek_generate(&home_dek), "DEK") || !must(vmenc_dek_generate(&disk_dek), "DEK") ||
        !must(vmenc_keymgr_wrap_dek(mgr, ALIAS, kek_id, home_dek, &home_ctx, TIMEOUT_MS, &home_wk), "wrap") ||
        !must(vmenc_keymgr_wrap_dek(mgr, ALIAS, kek_id, disk_dek, &disk_ctx, TIMEOUT_MS, &disk_wk), "wrap") ||
        !must(vmenc_wrapped_key_to_text(home_wk, &home_text), "text") ||
        !must(vmenc_wrapped_key_to_text(disk_wk, &disk_text), "text") ||
        write_vmx(vmx, home_text, disk_text) != 0)
        return 1;
    printf("  DEKs generated for the VM home and the disk; wrapped (AES-256-GCM, bound to VM/disk/purpose)\n"
           "  and written to vm01.vmx, e.g. scsi0:0.encryption.keySafe = \"%.40s...\"\n", disk_text);

    vmenc_xts *home_x = NULL, *disk_x = NULL;
    if (!must(vmenc_xts_new_from_dek(home_dek, SECTOR, &home_x), "xts") ||
        !must(vmenc_xts_new_from_dek(disk_dek, SECTOR, &disk_x), "xts"))
        return 1;
    double nv_s = xts_file(nvram, home_x, 1);
    double enc_s = xts_file(disk, disk_x, 1);
    check(nv_s >= 0 && enc_s >= 0, "NVRAM and disk encrypted in place");
    printf("  XTS-AES-256 backend: %s; disk encrypted at %.2f GB/s (cipher time)\n", vmenc_xts_impl_name(disk_x),
           enc_s > 0 ? (double)(disk_mib << 20) / enc_s / 1e9 : 0.0);
    uint64_t total = 0, plain = count_plain_sectors(disk, disk_salt, &total);
    check(plain == 0, "no disk sector is left in plaintext on the datastore");
    must(vmenc_policy_set_vm_state(policy, "vm01", "esx01", 1), "vm state");
    audit("alice", "encrypt_vm", "vm01", kek_id, VMENC_AUDIT_SUCCESS, VMENC_OK, "VM Encryption Policy");
    vmenc_xts_free(home_x);
    vmenc_xts_free(disk_x);
    vmenc_dek_free(home_dek);
    vmenc_dek_free(disk_dek);
    vmenc_wrapped_key_free(home_wk);
    vmenc_wrapped_key_free(disk_wk);
    vmenc_buffer_free(home_text);

    /* ---- 4. restart and power on --------------------------------------- */
    step("4. host restart: all keys dropped from memory; vm01 powers on");
    vmenc_keymgr_free(mgr);
    mgr = open_keymgr(keystore, passphrase);
    if (mgr == NULL)
        return 1;
    s = decide(policy, "bob", VMENC_OP_POWER_ON, VMENC_REQ_VM_ENCRYPTED, &d);
    check(s == VMENC_OK, "bob (No cryptography administrator) may power on the encrypted VM");
    t0 = now_s();
    char seen_kek[VMENC_KMS_KEY_ID_CAP] = "";
    s = unwrap_from_vmx(mgr, vmx, "scsi0:0.encryption.keySafe", &disk_ctx, &disk_dek, seen_kek, sizeof(seen_kek));
    check(s == VMENC_OK && strcmp(seen_kek, kek_id) == 0,
          "disk DEK unwrapped: KEK fetched from the KMS by the ID in the wrapped key");
    printf("  first unwrap (KMS fetch) %.1f ms\n", (now_s() - t0) * 1e3);
    s = s == VMENC_OK ? unwrap_from_vmx(mgr, vmx, "encryption.keySafe", &home_ctx, &home_dek, NULL, 0) : s;
    check(s == VMENC_OK, "VM home DEK unwrapped (KEK served from the in-memory cache)");
    vmenc_keymgr_stats st = {.struct_size = sizeof(st)};
    if (must(vmenc_keymgr_get_stats(mgr, &st), "stats"))
        printf("  key manager: %llu cache hit(s), %llu miss(es)\n", (unsigned long long)st.hits,
               (unsigned long long)st.misses);
    if (s != VMENC_OK)
        return 1;
    must(vmenc_xts_new_from_dek(disk_dek, SECTOR, &disk_x), "xts");
    must(vmenc_xts_new_from_dek(home_dek, SECTOR, &home_x), "xts");
    double dec_s = xts_file(disk, disk_x, 0);
    double nv2_s = xts_file(nvram, home_x, 0);
    plain = count_plain_sectors(disk, disk_salt, &total);
    uint64_t nv_total = 0, nv_plain = count_plain_sectors(nvram, nvram_salt, &nv_total);
    check(dec_s >= 0 && nv2_s >= 0 && plain == total && nv_plain == nv_total,
          "every disk and NVRAM sector reads back as the guest wrote it");
    printf("  disk decrypted at %.2f GB/s (cipher time)\n", dec_s > 0 ? (double)(disk_mib << 20) / dec_s / 1e9 : 0.0);
    audit("alice", "power_on", "vm01", kek_id, VMENC_AUDIT_SUCCESS, VMENC_OK, NULL);

    /* ---- 5. attacks ---------------------------------------------------- */
    step("5. what must fail");
    vmenc_dek *stolen = NULL;
    vmenc_wrap_context other = {.struct_size = sizeof(other), .vm_uuid = "another-vm", .disk_id = "scsi0:0",
                                .purpose = "disk"};
    s = unwrap_from_vmx(mgr, vmx, "scsi0:0.encryption.keySafe", &other, &stolen, NULL, 0);
    check(s == VMENC_E_AUTH && stolen == NULL, "vm01's disk key copied to another VM: authentication fails");
    vmenc_wrap_context other_disk = ctx_for("scsi0:1", "disk");
    s = unwrap_from_vmx(mgr, vmx, "scsi0:0.encryption.keySafe", &other_disk, &stolen, NULL, 0);
    check(s == VMENC_E_AUTH && stolen == NULL, "moved to another disk of the same VM: authentication fails");
    size_t tl = strlen(disk_text);
    disk_text[tl / 2] = disk_text[tl / 2] == 'A' ? 'B' : 'A';
    vmenc_wrapped_key *bad = NULL;
    s = vmenc_wrapped_key_parse_text(disk_text, tl, &bad);
    if (s == VMENC_OK)
        s = vmenc_keymgr_unwrap_dek(mgr, bad, &disk_ctx, TIMEOUT_MS, &stolen);
    vmenc_wrapped_key_free(bad);
    check(s != VMENC_OK && stolen == NULL, "one character of the wrapped key changed: rejected");
    printf("    (%s)\n", vmenc_strerror(s));
    vmenc_buffer_free(disk_text);
    s = decide(policy, "bob", VMENC_OP_CONSOLE, VMENC_REQ_VM_ENCRYPTED, &d);
    printf("  decision: %s\n", d.message);
    check(s == VMENC_E_DENIED, "bob may not open the console of the encrypted VM");
    audit("bob", "console", "vm01", NULL, VMENC_AUDIT_DENIED, s, d.message);
    s = vmenc_policy_set_host_state(policy, "esx01", VMENC_HOST_PENDING_INCAPABLE);
    check(s == VMENC_E_HOST_MODE, "esx01 cannot leave encryption mode while it holds an encrypted VM");
    (void)disk2;

    /* ---- 6. audit ------------------------------------------------------ */
    step("6. the audit trail");
    uint64_t last_seq = 0;
    uint8_t last_hash[VMENC_AUDIT_HASH_BYTES];
    must(vmenc_audit_log_position(log, &last_seq, last_hash), "position");
    vmenc_audit_free(g_audit);
    vmenc_audit_log_free(log);
    vmenc_audit_verify_options vo = {.struct_size = sizeof(vo), .key = audit_key, .key_len = sizeof(audit_key),
                                     .expected_last_seq = last_seq};
    vmenc_audit_verify_result vr = {.struct_size = sizeof(vr)};
    const char *paths[1] = {auditlog};
    s = vmenc_audit_verify_files(&vo, paths, 1, &vr);
    check(s == VMENC_OK, "audit log verifies: every record present, in order, unedited");
    printf("  %llu records in %s, e.g.:\n", (unsigned long long)vr.num_records, auditlog);
    FILE *f = fopen(auditlog, "r");
    char line[2048];
    for (int i = 0; f && i < 2 && fgets(line, sizeof(line), f); i++)
        printf("    %.150s...\n", line);
    if (f)
        fclose(f);
    vmenc_memzero(audit_key, sizeof(audit_key));

    printf("\n{\"demo\":\"vm\",\"impl\":\"%s\",\"disk_mib\":%llu,\"enc_gbps\":%.3f,\"dec_gbps\":%.3f,"
           "\"audit_records\":%llu,\"failures\":%d}\n",
           vmenc_xts_impl_name(disk_x), (unsigned long long)disk_mib,
           enc_s > 0 ? (double)(disk_mib << 20) / enc_s / 1e9 : 0.0,
           dec_s > 0 ? (double)(disk_mib << 20) / dec_s / 1e9 : 0.0, (unsigned long long)vr.num_records,
           g_failures);
    vmenc_xts_free(disk_x);
    vmenc_xts_free(home_x);
    vmenc_dek_free(disk_dek);
    vmenc_dek_free(home_dek);
    vmenc_keymgr_free(mgr);
    vmenc_policy_free(policy);
    free(buf);
    if (argc <= 1) {
        unlink(keystore); unlink(vmx); unlink(disk); unlink(nvram); unlink(auditlog);
        char lock[600];
        snprintf(lock, sizeof(lock), "%s.lock", keystore);
        unlink(lock);
        rmdir(g_dir);
    }
    printf("%s\n", g_failures ? "DEMO FAILED" : "demo complete: every check passed");
    return g_failures ? 1 : 0;
}
