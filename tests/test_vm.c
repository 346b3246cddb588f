/*
 * tests/test_vm.c - the VM layer with the file key provider: lifecycle of
 * plain and encrypted VMs, disk I/O against an in-memory model, dm-crypt
 * (aes-xts-plain64) compatibility checked with OpenSSL, state files, shallow
 * rekey, clone, storage policies, register on another host, the locked-VM
 * story, policy denials and their audit events, hostile files on disk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "keys/keys_internal.h"
#include "vm_fixture.h"

#define MiB (1024u * 1024u)
#define CAP (4u * MiB)

static vmfix g_f;

static int setup(void **state) {
    (void)state;
    return vmfix_setup(&g_f, 0) == VMENC_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    vmfix_teardown(&g_f);
    return 0;
}

#define OK(call) assert_int_equal((call), VMENC_OK)

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* random_io writes |n| random extents (aligned and not) to |d| and |model|,
 * reading each back. */
static void random_io(vmenc_disk *d, uint8_t *model, uint64_t cap, int n) {
    uint8_t *buf = malloc(256 * 1024), *back = malloc(256 * 1024);
    assert_non_null(buf);
    assert_non_null(back);
    for (int i = 0; i < n; i++) {
        size_t len = (size_t)(rnd() % 3 == 0 ? (rnd() % 64 + 1) * 512 : rnd() % 20000 + 1);
        uint64_t off = rnd() % (cap - len);
        if (rnd() % 2)
            off &= ~(uint64_t)511;
        for (size_t j = 0; j < len; j++)
            buf[j] = (uint8_t)rnd();
        OK(vmenc_disk_pwrite(d, off, buf, len));
        memcpy(model + off, buf, len);
        OK(vmenc_disk_pread(d, off, len, back));
        assert_memory_equal(back, buf, len);
    }
    free(buf);
    free(back);
}

static void check_model(vmenc_disk *d, const uint8_t *model, uint64_t cap) {
    uint8_t *all = malloc(cap);
    assert_non_null(all);
    OK(vmenc_disk_pread(d, 0, cap, all));
    assert_memory_equal(all, model, cap);
    free(all);
}

static const char *extent_path(const char *vm, const char *file, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s/%s", g_f.dir, vm, file);
    return buf;
}

/* ---- lifecycle ------------------------------------------------------------------- */

static void test_plain_vm_lifecycle(void **state) {
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "bob", "plain1", NULL, &vm));
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, vm, "bob", CAP, 512, id));
    assert_string_equal(id, "scsi0:0");
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "bob", id, 0, &d));
    int enc = 1;
    OK(vmenc_disk_is_encrypted(d, &enc));
    assert_int_equal(enc, 0);
    uint8_t *model = calloc(1, CAP);
    random_io(d, model, CAP, 50);
    const uint8_t pat[] = "PLAIN-PATTERN-0123456789";
    OK(vmenc_disk_pwrite(d, 12345, pat, sizeof(pat)));
    memcpy(model + 12345, pat, sizeof(pat));
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);
    /* the extent holds the plaintext */
    char p[PATH_MAX + 64];
    size_t len = 0;
    uint8_t *raw = vmfix_read_file(extent_path("plain1", "plain1_0-flat.vmdk", p, sizeof(p)), &len);
    assert_non_null(raw);
    assert_true(vmfix_contains(raw, len, pat, sizeof(pat)));
    free(raw);
    /* and the configuration has no encryption entries */
    raw = vmfix_read_file(vmfix_vmx_path(&g_f, "plain1", p, sizeof(p)), &len);
    assert_null(strstr((char *)raw, "encryption."));
    free(raw);
    OK(vmenc_vm_open(g_f.host, "bob", p, &vm));
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    OK(vmenc_vm_get_info(vm, &info));
    assert_int_equal(info.encrypted, 0);
    assert_int_equal(info.num_disks, 1);
    OK(vmenc_disk_open(vm, "bob", id, VMENC_DISK_OPEN_READONLY, &d));
    check_model(d, model, CAP);
    assert_int_equal(vmenc_disk_pwrite(d, 0, pat, 1), VMENC_E_BAD_STATE);
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);
    free(model);
}

static void test_encrypted_vm_lifecycle(void **state) {
    vmenc_vm *vm = NULL;
    size_t denied_before = g_f.num_denied;
    /* no cryptographic privilege: refused, and the refusal is audited */
    assert_int_equal(vmfix_create(&g_f, "bob", "enc1", "encrypted", &vm), VMENC_E_DENIED);
    assert_int_equal(g_f.num_denied, denied_before + 1);
    const char *denied[] = {"\"bob\"", "vm.create", "denied", NULL};
    assert_true(vmfix_count_events(&g_f, denied) >= 1);
    OK(vmfix_create(&g_f, "alice", "enc1", "encrypted", &vm));
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    OK(vmenc_vm_get_info(vm, &info));
    assert_int_equal(info.encrypted, 1);
    assert_int_equal(info.locked, 0);
    assert_string_equal(info.key_provider, "kms-a");
    assert_true(strlen(info.kek_id) > 0);
    assert_string_equal(info.storage_policy, "encrypted");
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    vmenc_disk_info di = {.struct_size = sizeof(di)};
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    assert_int_equal(di.state, VMENC_DISK_ENCRYPTED);
    assert_string_equal(di.kek_id, info.kek_id);
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    /* a new disk reads as zeros */
    uint8_t *model = calloc(1, CAP);
    check_model(d, model, CAP);
    random_io(d, model, CAP, 200);
    const uint8_t pat[] = "SECRET-PATTERN-0123456789";
    OK(vmenc_disk_pwrite(d, 777777, pat, sizeof(pat)));
    memcpy(model + 777777, pat, sizeof(pat));
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);

    char p[PATH_MAX + 64], vmx[PATH_MAX + 64];
    size_t len = 0;
    uint8_t *raw = vmfix_read_file(extent_path("enc1", "enc1_0-flat.vmdk", p, sizeof(p)), &len);
    assert_non_null(raw);
    assert_int_equal(len, CAP);
    assert_false(vmfix_contains(raw, len, pat, sizeof(pat)));
    free(raw);
    raw = vmfix_read_file(vmfix_vmx_path(&g_f, "enc1", vmx, sizeof(vmx)), &len);
    assert_non_null(strstr((char *)raw, "encryption.keySafe = \"vmwk1:"));
    assert_non_null(strstr((char *)raw, "encryption.data = \"vmsd1:"));
    free(raw);
    raw = vmfix_read_file(extent_path("enc1", "enc1_0.vmdk", p, sizeof(p)), &len);
    assert_non_null(strstr((char *)raw, "vmenc.keySafe = \"vmwk1:"));
    assert_non_null(strstr((char *)raw, "aes-xts-plain64"));
    free(raw);

    /* a restarted host (fresh key manager: empty cache) fetches the KEK by
     * ID and reads every byte back; NoCryptoAdmin may power it on */
    OK(vmfix_new_keymgr(&g_f));
    OK(vmfix_new_host(&g_f, "esx01"));
    OK(vmenc_vm_open(g_f.host, "bob", vmx, &vm));
    OK(vmenc_disk_open(vm, "bob", id, 0, &d));
    check_model(d, model, CAP);
    OK(vmenc_disk_close(d));
    /* but may not read the disk out of band */
    assert_int_equal(vmenc_disk_open(vm, "bob", id, VMENC_DISK_OPEN_EXPORT, &d), VMENC_E_DENIED);
    OK(vmenc_disk_open(vm, "alice", id, VMENC_DISK_OPEN_EXPORT | VMENC_DISK_OPEN_READONLY, &d));
    OK(vmenc_disk_close(d));
    /* carol (read-only) may not power it on */
    vmenc_vm *vm2 = NULL;
    assert_int_equal(vmenc_vm_open(g_f.host, "carol", vmx, &vm2), VMENC_E_DENIED);
    /* no principal at all: refused and audited */
    size_t before = g_f.num_denied;
    assert_int_equal(vmenc_vm_open(g_f.host, NULL, vmx, &vm2), VMENC_E_INVALID_ARG);
    assert_int_equal(g_f.num_denied, before + 1);
    vmenc_vm_free(vm);
    free(model);
    /* nothing secret ever reached the audit trail */
    assert_null(strstr(g_f.log, "vmwk1:"));
    assert_null(strstr(g_f.log, "vmsd1:"));
}

/* The extent is dm-crypt aes-xts-plain64 under the disk's DEK: check every
 * written sector against OpenSSL's XTS with IV = sector number (LE). */
static void test_dm_crypt_compatible(void **state) {
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", "dmc", "encrypted", &vm));
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, vm, "alice", 64 * 4096, 4096, id));
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    uint8_t *plain = malloc(64 * 4096);
    for (size_t i = 0; i < 64 * 4096; i++)
        plain[i] = (uint8_t)(i * 7 + 3);
    OK(vmenc_disk_pwrite(d, 0, plain, 64 * 4096));
    OK(vmenc_disk_close(d));
    /* the test's own view of the DEK, through the record in the descriptor */
    char p[PATH_MAX + 64];
    size_t len = 0;
    char *desc = (char *)vmfix_read_file(extent_path("dmc", "dmc_0.vmdk", p, sizeof(p)), &len);
    char *ks = strstr(desc, "vmenc.keySafe = \"") + strlen("vmenc.keySafe = \"");
    *strchr(ks, '"') = '\0';
    vmenc_wrapped_key *wk = NULL;
    OK(vmenc_wrapped_key_parse_text(ks, strlen(ks), &wk));
    vmenc_wrap_context ctx = {sizeof(ctx), vmenc_vm_uuid(vm), "scsi0:0", "disk"};
    vmenc_dek *dek = NULL;
    OK(vmenc_keymgr_unwrap_dek(g_f.mgr, wk, &ctx, 5000, &dek));
    uint8_t *raw = vmfix_read_file(extent_path("dmc", "dmc_0-flat.vmdk", p, sizeof(p)), &len);
    assert_int_equal(len, 64 * 4096);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    uint8_t out[4096];
    for (uint64_t s = 0; s < 64; s++) {
        uint8_t iv[16] = {0};
        for (int b = 0; b < 8; b++)
            iv[b] = (uint8_t)(s >> (8 * b));
        int n = 0;
        assert_int_equal(EVP_EncryptInit_ex(c, EVP_aes_256_xts(), NULL, vmenc_dek_bytes_internal(dek), iv), 1);
        assert_int_equal(EVP_EncryptUpdate(c, out, &n, plain + s * 4096, 4096), 1);
        assert_memory_equal(out, raw + s * 4096, 4096);
    }
    EVP_CIPHER_CTX_free(c);
    vmenc_dek_free(dek);
    vmenc_wrapped_key_free(wk);
    free(raw);
    free(desc);
    free(plain);
    vmenc_vm_free(vm);
}

/* ---- hostile files ------------------------------------------------------------------- */

static void replace_in_file(const char *path, const char *from, const char *to) {
    size_t len = 0;
    char *t = (char *)vmfix_read_file(path, &len);
    assert_non_null(t);
    char *at = strstr(t, from);
    assert_non_null(at);
    size_t out_cap = len + strlen(to) + 1;
    char *o = malloc(out_cap);
    size_t pre = (size_t)(at - t);
    memcpy(o, t, pre);
    strcpy(o + pre, to);
    strcat(o, at + strlen(from));
    assert_int_equal(vmfix_write_file(path, o, strlen(o)), 0);
    free(o);
    free(t);
}

static void test_hostile_files(void **state) {
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", "host1", "encrypted", &vm));
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    vmenc_vm_free(vm);
    char vmx[PATH_MAX + 64], desc[PATH_MAX + 64], save[PATH_MAX + 80];
    vmfix_vmx_path(&g_f, "host1", vmx, sizeof(vmx));
    extent_path("host1", "host1_0.vmdk", desc, sizeof(desc));
    size_t vlen = 0, dlen = 0;
    uint8_t *vorig = vmfix_read_file(vmx, &vlen), *dorig = vmfix_read_file(desc, &dlen);

    /* path traversal in the configuration and in the descriptor */
    replace_in_file(vmx, "fileName = \"host1_0.vmdk\"", "fileName = \"../enc1/enc1_0.vmdk\"");
    assert_int_equal(vmenc_vm_open(g_f.host, "alice", vmx, &vm), VMENC_E_BAD_PATH);
    vmfix_write_file(vmx, vorig, vlen);
    replace_in_file(desc, "\"host1_0-flat.vmdk\"", "\"/etc/passwd\"");
    assert_int_equal(vmenc_vm_open(g_f.host, "alice", vmx, &vm), VMENC_E_BAD_PATH);
    vmfix_write_file(desc, dorig, dlen);

    /* a symbolic link where the extent should be */
    char ext[PATH_MAX + 64];
    extent_path("host1", "host1_0-flat.vmdk", ext, sizeof(ext));
    snprintf(save, sizeof(save), "%s.save", ext);
    assert_int_equal(rename(ext, save), 0);
    assert_int_equal(symlink(save, ext), 0);
    OK(vmenc_vm_open(g_f.host, "alice", vmx, &vm));
    vmenc_disk *d = NULL;
    assert_int_equal(vmenc_disk_open(vm, "alice", id, 0, &d), VMENC_E_BAD_PATH);
    unlink(ext);
    /* an extent shorter than the capacity */
    assert_int_equal(rename(save, ext), 0);
    assert_int_equal(truncate(ext, CAP - 512), 0);
    assert_int_equal(vmenc_disk_open(vm, "alice", id, 0, &d), VMENC_E_TRUNCATED);
    assert_int_equal(truncate(ext, CAP), 0);
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);

    /* a descriptor bound to another VM (its UUID edited in) */
    vmenc_vm *other = NULL;
    OK(vmfix_create(&g_f, "alice", "host2", "encrypted", &other));
    char other_uuid[64];
    snprintf(other_uuid, sizeof(other_uuid), "%s", vmenc_vm_uuid(other));
    vmenc_vm_free(other);
    OK(vmenc_vm_open(g_f.host, "alice", vmx, &vm));
    char mine[64];
    snprintf(mine, sizeof(mine), "%s", vmenc_vm_uuid(vm));
    vmenc_vm_free(vm);
    replace_in_file(desc, mine, other_uuid);
    assert_int_equal(vmenc_vm_open(g_f.host, "alice", vmx, &vm), VMENC_E_CONTEXT_MISMATCH);
    vmfix_write_file(desc, dorig, dlen);

    /* a tampered wrapped VM key, a tampered sealed configuration */
    char *t = (char *)vmfix_read_file(vmx, &vlen);
    char *ks = strstr(t, "encryption.keySafe = \"vmwk1:") + strlen("encryption.keySafe = \"vmwk1:") + 40;
    *ks = *ks == 'A' ? 'B' : 'A';
    vmfix_write_file(vmx, t, vlen);
    vmenc_status s = vmenc_vm_open(g_f.host, "alice", vmx, &vm);
    assert_true(s == VMENC_E_AUTH || vmenc_status_category_of(s) == VMENC_CAT_PARSE);
    free(t);
    vmfix_write_file(vmx, vorig, vlen);
    t = (char *)vmfix_read_file(vmx, &vlen);
    char *sd = strstr(t, "encryption.data = \"vmsd1:") + strlen("encryption.data = \"vmsd1:") + 20;
    *sd = *sd == 'A' ? 'B' : 'A';
    vmfix_write_file(vmx, t, vlen);
    s = vmenc_vm_open(g_f.host, "alice", vmx, &vm);
    assert_true(s == VMENC_E_AUTH || vmenc_status_category_of(s) == VMENC_CAT_PARSE);
    free(t);
    vmfix_write_file(vmx, vorig, vlen);

    /* the encrypted disk swapped for a plain one of the same name: the
     * sealed disk list catches the downgrade */
    vmenc_vm *pv = NULL;
    OK(vmfix_create(&g_f, "alice", "host3", NULL, &pv));
    char pid[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, pv, "alice", CAP, 512, pid));
    char pdesc[PATH_MAX + 64];
    size_t plen = 0;
    char *ptext = (char *)vmfix_read_file(extent_path("host3", "host3_0.vmdk", pdesc, sizeof(pdesc)), &plen);
    vmenc_vm_free(pv);
    char *u = strstr(ptext, "vmenc.vmUuid = \"") + strlen("vmenc.vmUuid = \"");
    memcpy(u, mine, 36);
    char *ef = strstr(ptext, "host3_0-flat.vmdk");
    memcpy(ef, "host1", 5);
    vmfix_write_file(desc, ptext, plen);
    free(ptext);
    assert_int_equal(vmenc_vm_open(g_f.host, "alice", vmx, &vm), VMENC_E_AUTH);
    vmfix_write_file(desc, dorig, dlen);
    OK(vmenc_vm_open(g_f.host, "alice", vmx, &vm));
    vmenc_vm_free(vm);
    free(vorig);
    free(dorig);
}

/* ---- state files -------------------------------------------------------------------- */

static void test_state_files(void **state) {
    vmenc_vm *vm = NULL, *pv = NULL;
    OK(vmfix_create(&g_f, "alice", "sf1", "encrypted", &vm));
    OK(vmfix_create(&g_f, "alice", "sf2", NULL, &pv));
    const uint8_t secret[] = "UEFI-SECURE-BOOT-VARIABLES-0123456789";
    uint8_t *big = malloc(300000), *back = malloc(300000);
    for (size_t i = 0; i < 300000; i++)
        big[i] = (uint8_t)(i * 13);
    memcpy(big + 100000, secret, sizeof(secret));
    vmenc_vm *both[2] = {vm, pv};
    for (int k = 0; k < 2; k++) {
        vmenc_vm_file *f = NULL;
        OK(vmenc_vm_file_open(both[k], "bob", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_CREATE, &f));
        OK(vmenc_vm_file_pwrite(f, 0, big, 300000));
        uint64_t size = 0;
        OK(vmenc_vm_file_get_size(f, &size));
        assert_int_equal(size, 300000);
        OK(vmenc_vm_file_close(f));
        OK(vmenc_vm_file_open(both[k], "bob", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_READONLY, &f));
        size_t got = 0;
        OK(vmenc_vm_file_pread(f, 0, 300000, back, &got));
        assert_int_equal(got, 300000);
        assert_memory_equal(back, big, 300000);
        OK(vmenc_vm_file_close(f));
        /* swap: XTS, fixed size */
        OK(vmenc_vm_file_open(both[k], "bob", VMENC_VM_FILE_VSWP, 0, VMENC_VM_FILE_CREATE, &f));
        OK(vmenc_vm_file_pwrite(f, 4097, secret, sizeof(secret)));
        OK(vmenc_vm_file_pread(f, 4097, sizeof(secret), back, &got));
        assert_memory_equal(back, secret, sizeof(secret));
        OK(vmenc_vm_file_close(f));
    }
    char p[PATH_MAX + 64];
    size_t len = 0;
    uint8_t *raw = vmfix_read_file(extent_path("sf1", "sf1.nvram", p, sizeof(p)), &len);
    assert_false(vmfix_contains(raw, len, secret, sizeof(secret)));
    assert_memory_equal(raw, "VMENCSF1", 8);
    free(raw);
    raw = vmfix_read_file(extent_path("sf1", "sf1.vswp", p, sizeof(p)), &len);
    assert_false(vmfix_contains(raw, len, secret, sizeof(secret)));
    free(raw);
    raw = vmfix_read_file(extent_path("sf2", "sf2.nvram", p, sizeof(p)), &len);
    assert_true(vmfix_contains(raw, len, secret, sizeof(secret))); /* a plain VM's files are plain */
    free(raw);

    /* a flipped byte in the NVRAM: detected, nothing returned */
    raw = vmfix_read_file(extent_path("sf1", "sf1.nvram", p, sizeof(p)), &len);
    raw[64 + 12 + 70000 % 65536] ^= 1;
    vmfix_write_file(p, raw, len);
    vmenc_vm_file *f = NULL;
    OK(vmenc_vm_file_open(vm, "bob", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_READONLY, &f));
    size_t got = 0;
    assert_int_equal(vmenc_vm_file_pread(f, 0, 1000, back, &got), VMENC_E_AUTH);
    OK(vmenc_vm_file_close(f));
    raw[64 + 12 + 70000 % 65536] ^= 1;
    vmfix_write_file(p, raw, len);
    /* truncated: refused at open */
    assert_int_equal(truncate(p, (off_t)(len - 100)), 0);
    assert_true(vmenc_vm_file_open(vm, "bob", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_READONLY, &f) != VMENC_OK);
    vmfix_write_file(p, raw, len);
    /* another VM's NVRAM copied in: refused */
    OK(vmenc_vm_file_open(pv, "bob", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_READONLY, &f));
    OK(vmenc_vm_file_close(f));
    vmenc_vm *third = NULL;
    OK(vmfix_create(&g_f, "alice", "sf3", "encrypted", &third));
    OK(vmenc_vm_file_open(third, "bob", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_CREATE, &f));
    OK(vmenc_vm_file_pwrite(f, 0, big, 1000));
    OK(vmenc_vm_file_close(f));
    char p3[PATH_MAX + 64];
    size_t len3 = 0;
    uint8_t *raw3 = vmfix_read_file(extent_path("sf3", "sf3.nvram", p3, sizeof(p3)), &len3);
    vmfix_write_file(p, raw3, len3);
    assert_true(vmenc_vm_file_open(vm, "bob", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_READONLY, &f) != VMENC_OK);
    vmfix_write_file(p, raw, len);
    /* the suspend file is not the NVRAM: same VM, other class */
    char pss[PATH_MAX + 64];
    vmfix_write_file(extent_path("sf1", "sf1.vmss", pss, sizeof(pss)), raw, len);
    assert_true(vmenc_vm_file_open(vm, "bob", VMENC_VM_FILE_VMSS, 0, VMENC_VM_FILE_READONLY, &f) != VMENC_OK);
    unlink(pss);
    free(raw3);
    free(raw);
    free(big);
    free(back);
    vmenc_vm_free(third);
    vmenc_vm_free(vm);
    vmenc_vm_free(pv);
}

/* ---- shallow rekey, clone, register, policies ------------------------------------------ */

static void fill_disk(vmenc_vm *vm, const char *id, uint8_t *model, uint64_t cap) {
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    random_io(d, model, cap, 40);
    OK(vmenc_disk_close(d));
}

static void verify_disk(vmenc_vm *vm, const char *who, const char *id, const uint8_t *model, uint64_t cap) {
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, who, id, VMENC_DISK_OPEN_READONLY, &d));
    check_model(d, model, cap);
    OK(vmenc_disk_close(d));
}

static void test_shallow_rekey(void **state) {
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", "rk1", "encrypted", &vm));
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    uint8_t *model = calloc(1, CAP);
    fill_disk(vm, id, model, CAP);
    vmenc_vm_info before = {.struct_size = sizeof(before)}, after = {.struct_size = sizeof(after)};
    OK(vmenc_vm_get_info(vm, &before));
    assert_int_equal(vmenc_vm_rekey_shallow(vm, "bob", NULL, NULL), VMENC_E_DENIED);
    char p[PATH_MAX + 64];
    size_t len = 0;
    uint8_t *ext_before = vmfix_read_file(extent_path("rk1", "rk1_0-flat.vmdk", p, sizeof(p)), &len);
    OK(vmenc_vm_rekey_shallow(vm, "alice", NULL, NULL));
    OK(vmenc_vm_get_info(vm, &after));
    assert_string_not_equal(before.kek_id, after.kek_id);
    vmenc_disk_info di = {.struct_size = sizeof(di)};
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    assert_string_equal(di.kek_id, after.kek_id);
    /* shallow: the data was not re-encrypted */
    uint8_t *ext_after = vmfix_read_file(p, &len);
    assert_memory_equal(ext_before, ext_after, CAP);
    free(ext_before);
    free(ext_after);
    /* to another key provider, then reopened by a restarted host */
    OK(vmenc_vm_rekey_shallow(vm, "alice", "kms-b", NULL));
    OK(vmenc_vm_get_info(vm, &after));
    assert_string_equal(after.key_provider, "kms-b");
    vmenc_vm_free(vm);
    OK(vmfix_new_keymgr(&g_f));
    OK(vmfix_new_host(&g_f, "esx01"));
    char vmx[PATH_MAX + 64];
    OK(vmenc_vm_open(g_f.host, "bob", vmfix_vmx_path(&g_f, "rk1", vmx, sizeof(vmx)), &vm));
    verify_disk(vm, "bob", id, model, CAP);
    /* the events name old and new key IDs */
    const char *ev[] = {"vm.rekey_shallow", "success", before.kek_id, NULL};
    assert_true(vmfix_count_events(&g_f, ev) >= 1);
    vmenc_vm_free(vm);
    free(model);
}

static void test_clone(void **state) {
    vmenc_vm *vm = NULL, *c1 = NULL, *c2 = NULL, *c3 = NULL;
    OK(vmfix_create(&g_f, "alice", "cl0", "encrypted", &vm));
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    uint8_t *model = calloc(1, CAP);
    fill_disk(vm, id, model, CAP);
    OK(vmenc_vm_config_set(vm, "alice", "guestinfo.token", "s3cr3t-value", VMENC_VM_CONFIG_SECRET));
    vmenc_vm_file *f = NULL;
    OK(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_CREATE, &f));
    OK(vmenc_vm_file_pwrite(f, 0, model, 5000));
    OK(vmenc_vm_file_close(f));
    char home[PATH_MAX + 64];
    vmenc_vm_clone_options o = {.struct_size = sizeof(o), .principal = "bob", .home_dir = home, .name = "cl1",
                                .folder = "vms"};
    snprintf(home, sizeof(home), "%s/cl1", g_f.dir);
    assert_int_equal(vmenc_vm_clone(vm, &o, &c1), VMENC_E_DENIED); /* Cryptographer.Clone */
    struct stat st;
    assert_int_not_equal(stat(home, &st), 0); /* nothing left behind */
    o.principal = "alice";
    OK(vmenc_vm_clone(vm, &o, &c1));
    verify_disk(c1, "alice", id, model, CAP);
    char buf[64];
    OK(vmenc_vm_config_get(c1, "alice", "guestinfo.token", buf, sizeof(buf), NULL));
    assert_string_equal(buf, "s3cr3t-value");
    assert_int_equal(vmenc_vm_config_get(c1, "bob", "guestinfo.token", buf, sizeof(buf), NULL), VMENC_E_DENIED);
    OK(vmenc_vm_file_open(c1, "alice", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_READONLY, &f));
    uint8_t nv[5000];
    size_t got = 0;
    OK(vmenc_vm_file_pread(f, 0, sizeof(nv), nv, &got));
    assert_int_equal(got, 5000);
    assert_memory_equal(nv, model, 5000);
    OK(vmenc_vm_file_close(f));
    /* new keys: different KEK and different ciphertext */
    vmenc_vm_info a = {.struct_size = sizeof(a)}, b = {.struct_size = sizeof(b)};
    OK(vmenc_vm_get_info(vm, &a));
    OK(vmenc_vm_get_info(c1, &b));
    assert_string_not_equal(a.kek_id, b.kek_id);
    assert_string_not_equal(a.uuid, b.uuid);
    char p0[PATH_MAX + 64], p1[PATH_MAX + 64];
    size_t l0 = 0, l1 = 0;
    uint8_t *e0 = vmfix_read_file(extent_path("cl0", "cl0_0-flat.vmdk", p0, sizeof(p0)), &l0);
    uint8_t *e1 = vmfix_read_file(extent_path("cl1", "cl1_0-flat.vmdk", p1, sizeof(p1)), &l1);
    assert_int_equal(l0, l1);
    assert_true(memcmp(e0, e1, l0) != 0);
    free(e1);
    /* keep_keys: the same ciphertext, re-bound to the clone */
    snprintf(home, sizeof(home), "%s/cl2", g_f.dir);
    o.name = "cl2";
    o.flags = VMENC_VM_CLONE_KEEP_KEYS;
    OK(vmenc_vm_clone(vm, &o, &c2));
    verify_disk(c2, "alice", id, model, CAP);
    e1 = vmfix_read_file(extent_path("cl2", "cl2_0-flat.vmdk", p1, sizeof(p1)), &l1);
    assert_memory_equal(e0, e1, l0);
    free(e1);
    /* to a plain clone: the data is decrypted */
    snprintf(home, sizeof(home), "%s/cl3", g_f.dir);
    o.name = "cl3";
    o.flags = 0;
    o.storage_policy = "";
    OK(vmenc_vm_clone(vm, &o, &c3));
    OK(vmenc_vm_get_info(c3, &b));
    assert_int_equal(b.encrypted, 0);
    verify_disk(c3, "bob", id, model, CAP);
    e1 = vmfix_read_file(extent_path("cl3", "cl3_0-flat.vmdk", p1, sizeof(p1)), &l1);
    assert_memory_equal(e1, model, CAP);
    OK(vmenc_vm_config_get(c3, "bob", "guestinfo.token", buf, sizeof(buf), NULL)); /* now a clear entry */
    free(e1);
    free(e0);
    vmenc_vm_free(c1);
    vmenc_vm_free(c2);
    vmenc_vm_free(c3);
    vmenc_vm_free(vm);
    free(model);
}

static void test_storage_policy_apply(void **state) {
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", "sp1", NULL, &vm));
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    vmenc_vm_file *f = NULL;
    const uint8_t nv[] = "nvram contents before encryption";
    OK(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_CREATE, &f));
    OK(vmenc_vm_file_pwrite(f, 0, nv, sizeof(nv)));
    OK(vmenc_vm_file_close(f));
    assert_int_equal(vmenc_vm_apply_storage_policy(vm, "bob", "encrypted"), VMENC_E_DENIED);
    OK(vmenc_vm_apply_storage_policy(vm, "alice", "encrypted"));
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    OK(vmenc_vm_get_info(vm, &info));
    assert_int_equal(info.encrypted, 1);
    vmenc_disk_info di = {.struct_size = sizeof(di)};
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    assert_int_equal(di.state, VMENC_DISK_ENCRYPTED);
    char p[PATH_MAX + 64];
    size_t len = 0;
    uint8_t *raw = vmfix_read_file(extent_path("sp1", "sp1.nvram", p, sizeof(p)), &len);
    assert_memory_equal(raw, "VMENCSF1", 8);
    free(raw);
    uint8_t back[sizeof(nv)];
    size_t got = 0;
    OK(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_READONLY, &f));
    OK(vmenc_vm_file_pread(f, 0, sizeof(back), back, &got));
    assert_memory_equal(back, nv, sizeof(nv));
    OK(vmenc_vm_file_close(f));
    /* a disk with data is converted in place (tests/test_vm_convert.c has
     * the engine's own tests): decrypt, then encrypt again */
    uint8_t *model = calloc(1, CAP);
    fill_disk(vm, id, model, CAP);
    OK(vmenc_vm_apply_storage_policy(vm, "alice", "plain"));
    OK(vmenc_vm_get_info(vm, &info));
    assert_int_equal(info.encrypted, 0);
    verify_disk(vm, "alice", id, model, CAP);
    OK(vmenc_vm_apply_storage_policy(vm, "alice", "encrypted"));
    OK(vmenc_vm_get_info(vm, &info));
    assert_int_equal(info.encrypted, 1);
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    assert_int_equal(di.state, VMENC_DISK_ENCRYPTED);
    verify_disk(vm, "alice", id, model, CAP);
    /* the same policy with another provider: a shallow rekey */
    OK(vmenc_vm_apply_storage_policy(vm, "alice", "encrypted-b"));
    OK(vmenc_vm_get_info(vm, &info));
    assert_string_equal(info.key_provider, "kms-b");
    verify_disk(vm, "alice", id, model, CAP);
    /* remove the data-bearing disk; a new empty one decrypts at once */
    OK(vmenc_vm_remove_disk(vm, "alice", id, VMENC_VM_REMOVE_DELETE_FILES));
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 4096, id));
    OK(vmenc_vm_apply_storage_policy(vm, "alice", "plain"));
    OK(vmenc_vm_get_info(vm, &info));
    assert_int_equal(info.encrypted, 0);
    raw = vmfix_read_file(p, &len);
    assert_memory_equal(raw, nv, sizeof(nv));
    free(raw);
    vmenc_vm_free(vm);
    char vmx[PATH_MAX + 64];
    OK(vmenc_vm_open(g_f.host, "bob", vmfix_vmx_path(&g_f, "sp1", vmx, sizeof(vmx)), &vm));
    vmenc_vm_free(vm);
    free(model);
}

static void test_register_on_another_host(void **state) {
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", "reg1", "encrypted", &vm));
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    uint8_t *model = calloc(1, CAP);
    fill_disk(vm, id, model, CAP);
    vmenc_vm_free(vm);
    /* host esx02 with its own key manager (same KMS cluster) */
    OK(vmfix_new_keymgr(&g_f));
    OK(vmfix_new_host(&g_f, "esx02"));
    char vmx[PATH_MAX + 64];
    vmfix_vmx_path(&g_f, "reg1", vmx, sizeof(vmx));
    assert_int_equal(vmenc_vm_register(g_f.host, "bob", vmx, "other", NULL, &vm), VMENC_E_DENIED);
    OK(vmenc_vm_register(g_f.host, "alice", vmx, "other", NULL, &vm));
    vmenc_host_crypto_state hs;
    OK(vmenc_policy_get_host_state(g_f.policy, "esx02", &hs));
    assert_int_equal(hs, VMENC_HOST_SAFE); /* switched on automatically for alice */
    verify_disk(vm, "bob", id, model, CAP);
    vmenc_vm_free(vm);
    OK(vmfix_new_host(&g_f, "esx01"));
    free(model);
}

/* KMS down: a VM already open keeps working; a restarted host opens it
 * locked and lists the missing key; KMS back: unlock, I/O. */
static void test_locked_vm(void **state) {
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", "lk1", "encrypted", &vm));
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    uint8_t *model = calloc(1, CAP);
    random_io(d, model, CAP, 20);
    fault_set_mode(g_f.fault_a, FAULT_DOWN);
    random_io(d, model, CAP, 20); /* keys in memory: I/O goes on */
    OK(vmenc_disk_close(d));
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    OK(vmenc_vm_get_info(vm, &info));
    vmenc_vm_free(vm);
    /* the host restarts (empty cache) while the KMS is still down */
    OK(vmfix_new_keymgr(&g_f));
    fault_set_mode(g_f.fault_a, FAULT_DOWN);
    OK(vmfix_new_host(&g_f, "esx01"));
    char vmx[PATH_MAX + 64];
    vm = NULL;
    assert_int_equal(vmenc_vm_open(g_f.host, "bob", vmfix_vmx_path(&g_f, "lk1", vmx, sizeof(vmx)), &vm),
                     VMENC_E_VM_LOCKED);
    assert_non_null(vm);
    vmenc_vm_info li = {.struct_size = sizeof(li)};
    OK(vmenc_vm_get_info(vm, &li));
    assert_int_equal(li.locked, 1);
    assert_int_equal(li.num_missing_keys, 1);
    char alias[64], kek[VMENC_KMS_KEY_ID_CAP];
    vmenc_status why = VMENC_OK;
    OK(vmenc_vm_get_missing_key(vm, 0, alias, sizeof(alias), kek, sizeof(kek), &why));
    assert_string_equal(alias, "kms-a");
    assert_string_equal(kek, info.kek_id);
    assert_int_equal(vmenc_status_category_of(why), VMENC_CAT_PROVIDER);
    assert_int_equal(vmenc_disk_open(vm, "bob", id, 0, &d), VMENC_E_VM_LOCKED);
    assert_int_equal(vmenc_vm_unlock(vm, "bob"), VMENC_E_VM_LOCKED);
    const char *ev[] = {"vm.open", "failed", "locked: key provider cannot give", NULL};
    assert_true(vmfix_count_events(&g_f, ev) >= 1);
    fault_set_mode(g_f.fault_a, FAULT_NONE);
    OK(vmenc_vm_unlock(vm, "bob"));
    OK(vmenc_vm_get_info(vm, &li));
    assert_int_equal(li.locked, 0);
    OK(vmenc_disk_open(vm, "bob", id, 0, &d));
    check_model(d, model, CAP);
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);
    free(model);
}

/* A slow KMS (past the host's deadline) and one that serves the wrong
 * bytes for a KEK: the VM opens locked with the provider's status, and
 * unlocks once the KMS behaves. */
static void test_slow_and_lying_kms(void **state) {
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", "kms1", "encrypted", &vm));
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    uint8_t *model = calloc(1, CAP);
    fill_disk(vm, id, model, CAP);
    vmenc_vm_free(vm);
    char vmx[PATH_MAX + 64];
    vmfix_vmx_path(&g_f, "kms1", vmx, sizeof(vmx));
    fault_mode modes[2] = {FAULT_SLOW, FAULT_WRONG_KEY};
    for (int m = 0; m < 2; m++) {
        OK(vmfix_new_keymgr(&g_f));
        OK(vmfix_new_host(&g_f, "esx01"));
        fault_set_mode(g_f.fault_a, modes[m]);
        fault_set_delay_ms(g_f.fault_a, 8000); /* the host's deadline is 5000 ms */
        vm = NULL;
        vmenc_status s = vmenc_vm_open(g_f.host, "bob", vmx, &vm);
        fprintf(stderr, "KMS %s: open -> %s\n", m == 0 ? "slow" : "lying", vmenc_status_name(s));
        assert_int_equal(s, VMENC_E_VM_LOCKED);
        char alias[64], kek[VMENC_KMS_KEY_ID_CAP];
        vmenc_status why = VMENC_OK;
        OK(vmenc_vm_get_missing_key(vm, 0, alias, sizeof(alias), kek, sizeof(kek), &why));
        assert_int_equal(why, m == 0 ? VMENC_E_KMS_TIMEOUT : VMENC_E_KMS_WRONG_KEY);
        fault_set_mode(g_f.fault_a, FAULT_NONE);
        OK(vmenc_vm_unlock(vm, "bob"));
        verify_disk(vm, "bob", id, model, CAP);
        vmenc_vm_free(vm);
    }
    free(model);
}

static void test_disk_add_remove_and_config(void **state) {
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", "dk1", "home-only", &vm));
    char a[VMENC_DISK_ID_MAX + 1], b[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, a));
    vmenc_disk_info di = {.struct_size = sizeof(di)};
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    assert_int_equal(di.state, VMENC_DISK_PLAIN); /* the policy encrypts the home only */
    vmenc_disk_create_options o = {.struct_size = sizeof(o), .disk_id = "scsi1:3", .capacity = CAP,
                                   .file_base = "../escape"};
    assert_int_equal(vmenc_vm_add_disk(vm, "alice", &o, b, sizeof(b)), VMENC_E_BAD_PATH);
    o.file_base = "data";
    o.capacity = 1000; /* not a whole number of sectors */
    assert_int_equal(vmenc_vm_add_disk(vm, "alice", &o, b, sizeof(b)), VMENC_E_INVALID_ARG);
    o.capacity = CAP;
    OK(vmenc_vm_add_disk(vm, "alice", &o, b, sizeof(b)));
    assert_string_equal(b, "scsi1:3");
    assert_int_equal(vmenc_vm_add_disk(vm, "alice", &o, b, sizeof(b)), VMENC_E_EXISTS);
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", "scsi1:3", 0, &d));
    vmenc_disk *d2 = NULL;
    assert_int_equal(vmenc_disk_open(vm, "alice", "scsi1:3", 0, &d2), VMENC_E_BAD_STATE);
    assert_int_equal(vmenc_vm_remove_disk(vm, "alice", "scsi1:3", 0), VMENC_E_BAD_STATE);
    OK(vmenc_disk_close(d));
    assert_int_equal(vmenc_vm_remove_disk(vm, "carol", "scsi1:3", 0), VMENC_E_DENIED);
    OK(vmenc_vm_remove_disk(vm, "alice", "scsi1:3", VMENC_VM_REMOVE_DELETE_FILES));
    assert_int_equal(vmenc_disk_open(vm, "alice", "scsi1:3", 0, &d), VMENC_E_NOT_FOUND);
    /* configuration entries, clear and sealed */
    OK(vmenc_vm_config_set(vm, "alice", "annotation", "hello", 0));
    OK(vmenc_vm_config_set(vm, "alice", "guestinfo.pw", "hunter2", VMENC_VM_CONFIG_SECRET));
    assert_int_equal(vmenc_vm_config_set(vm, "alice", "encryption.keySafe", "x", 0), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_vm_config_set(vm, "carol", "annotation", "x", 0), VMENC_E_DENIED);
    vmenc_vm_free(vm);
    char vmx[PATH_MAX + 64];
    size_t len = 0;
    char *t = (char *)vmfix_read_file(vmfix_vmx_path(&g_f, "dk1", vmx, sizeof(vmx)), &len);
    assert_non_null(strstr(t, "annotation = \"hello\""));
    assert_null(strstr(t, "hunter2"));
    free(t);
    OK(vmenc_vm_open(g_f.host, "alice", vmx, &vm));
    char buf[32];
    size_t n = 0;
    OK(vmenc_vm_config_get(vm, "alice", "guestinfo.pw", buf, sizeof(buf), &n));
    assert_string_equal(buf, "hunter2");
    assert_int_equal(vmenc_vm_config_get(vm, "alice", "guestinfo.pw", buf, 3, &n), VMENC_E_BUFFER_TOO_SMALL);
    assert_int_equal(n, 7);
    OK(vmenc_vm_config_get(vm, "carol", "annotation", buf, sizeof(buf), NULL));
    assert_int_equal(vmenc_vm_config_get(vm, "carol", "nothing", buf, sizeof(buf), NULL), VMENC_E_NOT_FOUND);
    vmenc_vm_free(vm);
}

static void test_bad_arguments(void **state) {
    vmenc_vm *vm = NULL;
    assert_int_equal(vmfix_create(&g_f, "alice", "../evil", NULL, &vm), VMENC_E_INVALID_ARG);
    assert_int_equal(vmfix_create(&g_f, "alice", "x/y", NULL, &vm), VMENC_E_INVALID_ARG);
    assert_int_equal(vmfix_create(&g_f, "alice", "ok1", "no-such-policy", &vm), VMENC_E_NOT_FOUND);
    OK(vmfix_create(&g_f, "alice", "dup1", NULL, &vm));
    vmenc_vm_free(vm);
    /* the same name again (another home): taken in the inventory */
    char home[PATH_MAX + 64];
    snprintf(home, sizeof(home), "%s/dup1-again", g_f.dir);
    vmenc_vm_create_options o = {.struct_size = sizeof(o), .principal = "alice", .home_dir = home, .name = "dup1",
                                 .folder = "vms"};
    assert_int_equal(vmenc_vm_create(g_f.host, &o, &vm), VMENC_E_EXISTS);
    struct stat st;
    assert_int_not_equal(stat(home, &st), 0);
    /* a home that is not empty */
    snprintf(home, sizeof(home), "%s/dup1", g_f.dir);
    o.name = "dup2";
    assert_int_equal(vmenc_vm_create(g_f.host, &o, &vm), VMENC_E_EXISTS);
    o.struct_size = 4;
    assert_int_equal(vmenc_vm_create(g_f.host, &o, &vm), VMENC_E_ABI_VERSION);
    assert_int_equal(vmenc_vm_open(g_f.host, "alice", "/nonexistent/x.vmx", &vm), VMENC_E_NOT_FOUND);
    assert_int_equal(vmenc_vm_open(g_f.host, "alice", "/etc/passwd", &vm), VMENC_E_BAD_PATH);
    vmenc_host_options ho = {.struct_size = sizeof(ho), .host_id = "vms", .keymgr = g_f.mgr,
                             .policy = g_f.policy, .audit = g_f.audit};
    vmenc_host *h = NULL;
    assert_int_not_equal(vmenc_host_new(&ho, &h), VMENC_OK); /* a folder is not a host */
    OK(vmfix_create(&g_f, "alice", "io1", "encrypted", &vm));
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    uint8_t b[16] = {0};
    assert_int_equal(vmenc_disk_pread(d, CAP - 8, 16, b), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_disk_pwrite(d, UINT64_MAX - 4, b, 16), VMENC_E_INVALID_ARG);
    OK(vmenc_disk_pwrite(d, CAP - 16, b, 16));
    OK(vmenc_disk_close(d));
    assert_int_equal(vmenc_vm_file_open(vm, "alice", (vmenc_vm_file_class)99, 0, 0, NULL), VMENC_E_INVALID_ARG);
    vmenc_vm_free(vm);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_vm_lifecycle),
        cmocka_unit_test(test_encrypted_vm_lifecycle),
        cmocka_unit_test(test_dm_crypt_compatible),
        cmocka_unit_test(test_hostile_files),
        cmocka_unit_test(test_state_files),
        cmocka_unit_test(test_shallow_rekey),
        cmocka_unit_test(test_clone),
        cmocka_unit_test(test_storage_policy_apply),
        cmocka_unit_test(test_register_on_another_host),
        cmocka_unit_test(test_locked_vm),
        cmocka_unit_test(test_slow_and_lying_kms),
        cmocka_unit_test(test_disk_add_remove_and_config),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
