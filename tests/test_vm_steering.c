/*
 * tests/test_vm_steering.c - everything that steers an operation is
 * authenticated (issue 20; DESIGN.md section 11; docs/vm-format.md
 * "Sealed steering facts", docs/reencryption.md "The state file"). Each
 * test plays the datastore attacker of the issue with plain file edits and
 * checks the host refuses (VMENC_E_AUTH), audits, and loses no data:
 *
 *  - a forged "all segments done" .cvt slot (its checksum recomputed with
 *    the old public constant) -> refused, the disk intact (point 4);
 *  - a .cvt copied from another VM's conversion -> refused;
 *  - vmenc.sectorSize edited in a descriptor -> refused (point 11b);
 *  - a forged "rekeying" descriptor naming a retired DEK record -> refused
 *    (point 3, disk half); a retired VM key record as
 *    encryption.newKeySafe -> refused (point 3, home half);
 *  - a forged vmenc.applyingPolicy -> refused (point 2);
 *  - a deleted or damaged .cvt -> the error names it, and
 *    vmenc_disk_convert_recover rebuilds it from the data (the disk then
 *    reads right, against a model) or names the segment in doubt (point 10).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vm/vm_internal.h"
#include "vm_fixture.h"

#define OK(call) assert_int_equal((call), VMENC_OK)
#define MiB (1024u * 1024u)
#define SEG MiB
#define CAP (6u * MiB + 3u * 4096u) /* 7 segments, the last one short */

static vmfix g_f;
static uint8_t *g_model;

static int setup(void **state) {
    (void)state;
    g_model = malloc(CAP);
    return g_model != NULL && vmfix_setup(&g_f, VMENC_HOST_NO_SYNC) == VMENC_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    vmfix_teardown(&g_f);
    free(g_model);
    return 0;
}

static const vmenc_convert_options k_opts = {.struct_size = sizeof(vmenc_convert_options), .segment_bytes = SEG};

/* fill writes known data over the disk, segment 2 left a hole. */
static void fill(vmenc_disk *d) {
    memset(g_model, 0, CAP);
    for (uint64_t off = 0; off < CAP; off += 4096) {
        if (off >= 2 * SEG && off < 3 * SEG)
            continue;
        for (size_t i = 0; i < 4096; i += 8) {
            uint64_t v = (off + i) * 0x9e3779b97f4a7c15ull ^ 0xbeef;
            memcpy(g_model + off + i, &v, 8);
        }
        OK(vmenc_disk_pwrite(d, off, g_model + off, 4096));
    }
}

static void verify_disk(vmenc_vm *vm, const char *id) {
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, VMENC_DISK_OPEN_READONLY, &d));
    uint8_t *all = malloc(CAP);
    OK(vmenc_disk_pread(d, 0, CAP, all));
    for (uint64_t off = 0; off < CAP; off += 512)
        if (memcmp(all + off, g_model + off, 512) != 0)
            fail_msg("sector %llu differs from the model", (unsigned long long)(off / 512));
    free(all);
    OK(vmenc_disk_close(d));
}

static vmenc_status open_vm(const char *name, vmenc_vm **out) {
    vmenc_status s = vmfix_new_keymgr(&g_f);
    if (s == VMENC_OK)
        s = vmfix_new_host(&g_f, "esx01");
    char vmx[PATH_MAX + 64];
    return s == VMENC_OK ? vmenc_vm_open(g_f.host, "alice", vmfix_vmx_path(&g_f, name, vmx, sizeof(vmx)), out) : s;
}

static vmenc_vm *reopen(const char *name) {
    vmenc_vm *vm = NULL;
    OK(open_vm(name, &vm));
    return vm;
}

/* make_vm: a VM with |policy| and one disk full of known data. */
static vmenc_vm *make_vm(const char *name, const char *policy, char id[VMENC_DISK_ID_MAX + 1]) {
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", name, policy, &vm));
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    fill(d);
    OK(vmenc_disk_close(d));
    return vm;
}

/* begin_encrypt starts encrypting the disk and moves |segs| segments. */
static void begin_encrypt(vmenc_vm *vm, const char *id, int segs) {
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    OK(vmenc_disk_convert_begin(d, "alice", VMENC_CONVERT_ENCRYPT, &k_opts));
    vmenc_convert_progress p = {.struct_size = sizeof(p)};
    for (int i = 0; i < segs; i++)
        OK(vmenc_disk_convert_step(d, 1, &p));
    assert_int_equal(p.segments_done, (uint64_t)segs);
    OK(vmenc_disk_close(d));
}

static const char *home_file(const char *vm, const char *file, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s/%s", g_f.dir, vm, file);
    return buf;
}

/* find_suffix copies the name of the one file of |vm|'s home ending in
 * |suffix|. */
static void find_suffix(const char *vm, const char *suffix, char *out, size_t cap) {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof(p), "%s/%s", g_f.dir, vm);
    DIR *d = opendir(p);
    assert_non_null(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name), sl = strlen(suffix);
        if (l > sl && strcmp(de->d_name + l - sl, suffix) == 0 && strstr(de->d_name, ".tmp") == NULL) {
            snprintf(out, cap, "%s", de->d_name);
            n++;
        }
    }
    closedir(d);
    assert_int_equal(n, 1);
}

static uint64_t be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* old_slot writes a slot the way the attacker of point 4 does: the magic
 * given, the fields, and BLAKE2b-128 keyed with the public constant of
 * slot format 1. */
static void old_slot(uint8_t out[64], const char *magic, uint64_t id, uint64_t seq, uint64_t done, uint64_t num,
                     uint64_t seg) {
    memcpy(out, magic, 8);
    put_be64(out + 8, id);
    put_be64(out + 16, seq);
    put_be64(out + 24, done);
    put_be64(out + 32, num);
    put_be64(out + 40, seg);
    crypto_generichash(out + 48, 16, out, 48, (const uint8_t *)"vmenc-cvt-slot-v1", 17);
}

/* replace_in_file replaces the first |from| in a home file by |to|. */
static void replace_in_file(const char *vm, const char *file, const char *from, const char *to) {
    char p[2 * PATH_MAX];
    size_t len = 0;
    char *t = (char *)vmfix_read_file(home_file(vm, file, p, sizeof(p)), &len);
    assert_non_null(t);
    char *at = strstr(t, from);
    assert_non_null(at);
    size_t out_len = len - strlen(from) + strlen(to);
    char *o = malloc(out_len + 1);
    size_t pre = (size_t)(at - t);
    memcpy(o, t, pre);
    memcpy(o + pre, to, strlen(to));
    memcpy(o + pre + strlen(to), at + strlen(from), len - pre - strlen(from));
    assert_int_equal(vmfix_write_file(p, o, out_len), 0);
    free(o);
    free(t);
}

static void append_to_file(const char *vm, const char *file, const char *line) {
    char p[2 * PATH_MAX];
    FILE *fp = fopen(home_file(vm, file, p, sizeof(p)), "ab");
    assert_non_null(fp);
    fputs(line, fp);
    fclose(fp);
}

/* ---- point 4: forged and foreign conversion state ------------------------------------ */

static void test_forged_done_slot_refused(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1], cvt[256], p[2 * PATH_MAX];
    vmenc_vm *vm = make_vm("st1", "home-only", id);
    begin_encrypt(vm, id, 2);
    vmenc_vm_free(vm);
    find_suffix("st1", ".cvt", cvt, sizeof(cvt));
    size_t len = 0;
    uint8_t *orig = vmfix_read_file(home_file("st1", cvt, p, sizeof(p)), &len);
    assert_non_null(orig);
    assert_true(len >= 2 * VM_CVT_SLOT_STRIDE);
    /* "all segments done", in both slots, with the public checksum */
    uint8_t *forged = malloc(len);
    memcpy(forged, orig, len);
    char magic[9];
    memcpy(magic, orig, 8);
    magic[8] = '\0';
    uint64_t cid = be64(orig + 8), num = be64(orig + 32), seg = be64(orig + 40);
    old_slot(forged, magic, cid, 99, num, num, seg);
    old_slot(forged + VM_CVT_SLOT_STRIDE, magic, cid, 98, num, num, seg);
    assert_int_equal(vmfix_write_file(p, forged, len), 0);
    vm = reopen("st1");
    /* a user without Cryptographer.Encrypt powers the VM on: not finished */
    vmenc_disk *d = NULL;
    assert_int_equal(vmenc_disk_open(vm, "bob", id, 0, &d), VMENC_E_AUTH);
    assert_int_equal(vmenc_vm_resume(vm, "alice", NULL), VMENC_E_AUTH);
    const char *ev[] = {"disk.convert_state", cvt, "failed", NULL};
    assert_true(vmfix_count_events(&g_f, ev) >= 1);
    vmenc_disk_info di = {.struct_size = sizeof(di)};
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    assert_int_equal(di.state, VMENC_DISK_ENCRYPTING);
    vmenc_vm_free(vm);
    /* nothing was destroyed: with the real state back, it finishes right */
    assert_int_equal(vmfix_write_file(p, orig, len), 0);
    vm = reopen("st1");
    OK(vmenc_vm_resume(vm, "alice", NULL));
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    assert_int_equal(di.state, VMENC_DISK_ENCRYPTED);
    verify_disk(vm, id);
    vmenc_vm_free(vm);
    free(forged);
    free(orig);
}

static void test_state_from_another_vm_refused(void **state) {
    (void)state;
    char ida[VMENC_DISK_ID_MAX + 1], idb[VMENC_DISK_ID_MAX + 1], cvta[256], cvtb[256], desc[256];
    vmenc_vm *a = make_vm("st2a", "home-only", ida);
    begin_encrypt(a, ida, 4);
    vmenc_vm_free(a);
    vmenc_vm *b = make_vm("st2b", "home-only", idb);
    begin_encrypt(b, idb, 1);
    vmenc_vm_free(b);
    find_suffix("st2a", ".cvt", cvta, sizeof(cvta));
    find_suffix("st2b", ".cvt", cvtb, sizeof(cvtb));
    find_suffix("st2b", "_0.vmdk", desc, sizeof(desc));
    /* A's state file (4 moved) under B's extent name, and B's descriptor
     * edited to name A's conversion ID */
    char ida_num[32], idb_num[32], pa[2 * PATH_MAX], pb[2 * PATH_MAX], from[64], to[64];
    /* the ID is the last dotted field before ".cvt" */
    {
        char tmp[256];
        snprintf(tmp, sizeof(tmp), "%s", cvta);
        *strrchr(tmp, '.') = '\0';
        snprintf(ida_num, sizeof(ida_num), "%s", strrchr(tmp, '.') + 1);
        snprintf(tmp, sizeof(tmp), "%s", cvtb);
        *strrchr(tmp, '.') = '\0';
        snprintf(idb_num, sizeof(idb_num), "%s", strrchr(tmp, '.') + 1);
    }
    size_t len = 0;
    uint8_t *sa = vmfix_read_file(home_file("st2a", cvta, pa, sizeof(pa)), &len);
    assert_non_null(sa);
    char newname[300];
    snprintf(newname, sizeof(newname), "st2b_0-flat.vmdk.%s.cvt", ida_num);
    assert_int_equal(vmfix_write_file(home_file("st2b", newname, pb, sizeof(pb)), sa, len), 0);
    snprintf(from, sizeof(from), "vmenc.convert.id = \"%s\"", idb_num);
    snprintf(to, sizeof(to), "vmenc.convert.id = \"%s\"", ida_num);
    replace_in_file("st2b", desc, from, to);
    b = reopen("st2b");
    vmenc_disk *d = NULL;
    assert_int_equal(vmenc_disk_open(b, "alice", idb, VMENC_DISK_OPEN_READONLY, &d), VMENC_E_AUTH);
    vmenc_vm_free(b);
    /* B's own descriptor back: B resumes from its own state, data intact */
    replace_in_file("st2b", desc, to, from);
    b = reopen("st2b");
    OK(vmenc_vm_resume(b, "alice", NULL));
    verify_disk(b, idb);
    vmenc_vm_free(b);
    free(sa);
}

/* ---- point 11b: geometry ---------------------------------------------------------------- */

static void test_sector_size_edit_refused(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1], desc[256];
    vmenc_vm *vm = make_vm("st3", "encrypted", id);
    vmenc_vm_free(vm);
    find_suffix("st3", "_0.vmdk", desc, sizeof(desc));
    replace_in_file("st3", desc, "vmenc.sectorSize = \"512\"", "vmenc.sectorSize = \"4096\"");
    vm = NULL;
    assert_int_equal(open_vm("st3", &vm), VMENC_E_AUTH);
    assert_null(vm);
    replace_in_file("st3", desc, "vmenc.sectorSize = \"4096\"", "vmenc.sectorSize = \"512\"");
    vm = reopen("st3");
    verify_disk(vm, id);
    vmenc_vm_free(vm);
}

/* ---- point 3: retired key records -------------------------------------------------------- */

static vm_disk_desc read_desc(const char *vm, const char *file) {
    char p[2 * PATH_MAX];
    size_t len = 0;
    uint8_t *t = vmfix_read_file(home_file(vm, file, p, sizeof(p)), &len);
    assert_non_null(t);
    vm_disk_desc d;
    OK(vm_disk_desc_parse(t, len, &d));
    free(t);
    return d;
}

static void test_forged_rekeying_descriptor_refused(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1], desc[256], p[2 * PATH_MAX];
    vmenc_vm *vm = make_vm("st4", "encrypted", id);
    find_suffix("st4", "_0.vmdk", desc, sizeof(desc));
    vm_disk_desc retired = read_desc("st4", desc);
    vmenc_apply_options ao = {.struct_size = sizeof(ao), .segment_bytes = SEG};
    OK(vmenc_vm_rekey_deep(vm, "alice", &ao));
    vmenc_vm_free(vm);
    /* "rekeying" from the current DEK to the retired one, with a state file
     * that says nothing moved yet (checksum with the public constant) */
    vm_disk_desc f = read_desc("st4", desc);
    f.state = VMENC_DISK_REKEYING;
    f.new_key_safe = retired.key_safe;
    retired.key_safe = NULL;
    memcpy(f.new_key_provider, retired.key_provider, sizeof(f.new_key_provider));
    memcpy(f.new_kek_id, retired.kek_id, sizeof(f.new_kek_id));
    f.has_new_kek_check = false;
    f.cvt_id = 4242;
    f.cvt_segment = SEG;
    f.cvt_target_offset = f.data_offset == 0 ? SEG : 0;
    uint8_t *text = NULL;
    size_t len = 0;
    OK(vm_disk_desc_serialize(&f, &text, &len));
    assert_int_equal(vmfix_write_file(home_file("st4", desc, p, sizeof(p)), text, len), 0);
    free(text);
    uint8_t st[2 * VM_CVT_SLOT_STRIDE];
    memset(st, 0, sizeof(st));
    old_slot(st, "VMENCCV1", 4242, 1, 0, (CAP + SEG - 1) / SEG, SEG);
    char cvt[300];
    snprintf(cvt, sizeof(cvt), "%s.4242.cvt", f.extent_file);
    assert_int_equal(vmfix_write_file(home_file("st4", cvt, p, sizeof(p)), st, sizeof(st)), 0);
    vm_disk_desc_cleanup(&f);
    vm_disk_desc_cleanup(&retired);
    vm = NULL;
    assert_int_equal(open_vm("st4", &vm), VMENC_E_AUTH);
    assert_null(vm);
}

static void test_retired_vm_key_as_next_refused(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1], vmx[64], p[2 * PATH_MAX];
    vmenc_vm *vm = make_vm("st5", "encrypted", id);
    snprintf(vmx, sizeof(vmx), "st5.vmx");
    size_t len = 0;
    char *t = (char *)vmfix_read_file(home_file("st5", vmx, p, sizeof(p)), &len);
    assert_non_null(t);
    char *k = strstr(t, "encryption.keySafe = \"");
    assert_non_null(k);
    k += strlen("encryption.keySafe = \"");
    *strchr(k, '"') = '\0';
    char line[4096];
    snprintf(line, sizeof(line), "encryption.newKeySafe = \"%s\"\n", k);
    free(t);
    OK(vmenc_vm_rekey_deep(vm, "alice", NULL));
    vmenc_vm_free(vm);
    append_to_file("st5", vmx, line);
    vm = NULL;
    assert_int_equal(open_vm("st5", &vm), VMENC_E_AUTH);
    assert_null(vm);
}

/* ---- point 2: the pending policy ----------------------------------------------------------- */

static void test_forged_applying_policy_refused(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1];
    vmenc_vm *vm = make_vm("st6", "encrypted", id);
    vmenc_vm_free(vm);
    append_to_file("st6", "st6.vmx", "vmenc.applyingPolicy = \"plain\"\n");
    vm = NULL;
    assert_int_equal(open_vm("st6", &vm), VMENC_E_AUTH);
    assert_null(vm);
}

/* ---- point 10: a lost state file --------------------------------------------------------- */

#ifdef VMENC_RECOVERY_REBUILT
static vmenc_status recover(vmenc_vm *vm, const char *who, const char *id, vmenc_convert_recovery *r) {
    memset(r, 0, sizeof(*r));
    r->struct_size = sizeof(*r);
    return vmenc_disk_convert_recover(vm, who, id, r);
}
#endif

static void test_lost_state_named_and_recovered(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1], cvt[256], p[2 * PATH_MAX];
    vmenc_vm *vm = make_vm("st7", "home-only", id);
    begin_encrypt(vm, id, 3);
    vmenc_vm_free(vm);
    find_suffix("st7", ".cvt", cvt, sizeof(cvt));
    home_file("st7", cvt, p, sizeof(p));
    /* deleted: the open fails, and the audit log names the file */
    assert_int_equal(unlink(p), 0);
    vm = reopen("st7");
    vmenc_disk *d = NULL;
    assert_int_equal(vmenc_disk_open(vm, "alice", id, 0, &d), VMENC_E_INTERRUPTED);
    const char *ev[] = {"disk.convert_state", cvt, NULL};
    assert_true(vmfix_count_events(&g_f, ev) >= 1);
#ifdef VMENC_RECOVERY_REBUILT
    vmenc_convert_recovery r;
    assert_int_equal(recover(vm, "bob", id, &r), VMENC_E_DENIED);
    OK(recover(vm, "alice", id, &r));
    assert_true(r.flags & VMENC_RECOVERY_REBUILT);
    assert_int_equal(r.segments_done, 3);
    assert_int_equal(r.segments_total, 7);
    assert_string_equal(r.state_file, cvt);
    OK(recover(vm, "alice", id, &r)); /* readable now: left alone */
    assert_int_equal(r.flags, 0);
    verify_disk(vm, id);
    vmenc_vm_free(vm);
    /* damaged: both slots garbage */
    size_t len = 0;
    uint8_t *st = vmfix_read_file(p, &len);
    assert_non_null(st);
    randombytes_buf(st, 64);
    randombytes_buf(st + VM_CVT_SLOT_STRIDE, 64);
    assert_int_equal(vmfix_write_file(p, st, len), 0);
    free(st);
    vm = reopen("st7");
    assert_int_equal(vmenc_disk_open(vm, "alice", id, 0, &d), VMENC_E_AUTH);
    OK(recover(vm, "alice", id, &r));
    assert_int_equal(r.segments_done, 3);
    OK(vmenc_vm_resume(vm, "alice", NULL));
    vmenc_disk_info di = {.struct_size = sizeof(di)};
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    assert_int_equal(di.state, VMENC_DISK_ENCRYPTED);
    verify_disk(vm, id);
    const char *rev[] = {"disk.convert_recover", "success", NULL};
    assert_true(vmfix_count_events(&g_f, rev) >= 2);
    vmenc_vm_free(vm);
#else
    vmenc_vm_free(vm);
    fail_msg("no verb recovers a disk whose conversion state file is lost");
#endif
}

static void test_lost_state_unknown_segment_reported(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1], cvt[256], p[2 * PATH_MAX];
    vmenc_vm *vm = make_vm("st8", "home-only", id);
    begin_encrypt(vm, id, 3); /* moving up: segments 6, 5, 4 moved */
    vmenc_vm_free(vm);
    find_suffix("st8", ".cvt", cvt, sizeof(cvt));
    assert_int_equal(unlink(home_file("st8", cvt, p, sizeof(p))), 0);
    /* segment 4's old copy no longer matches its new one: as if segment 3
     * had begun to move over it */
    FILE *fp = fopen(home_file("st8", "st8_0-flat.vmdk", p, sizeof(p)), "r+b");
    assert_non_null(fp);
    uint8_t junk[512];
    memset(junk, 0xa5, sizeof(junk));
    assert_int_equal(fseek(fp, (long)(4 * SEG + 4096), SEEK_SET), 0);
    assert_int_equal(fwrite(junk, 1, sizeof(junk), fp), sizeof(junk));
    fclose(fp);
    vm = reopen("st8");
#ifdef VMENC_RECOVERY_REBUILT
    vmenc_convert_recovery r;
    assert_int_equal(recover(vm, "alice", id, &r), VMENC_E_INTERRUPTED);
    assert_int_equal(r.unknown_first, 4);
    assert_int_equal(r.unknown_count, 1);
    assert_int_equal(r.unknown_offset, 4 * SEG);
    assert_int_equal(r.unknown_bytes, SEG);
    assert_int_equal(r.flags, 0);
    const char *ev[] = {"disk.convert_recover", "segments 4..4", NULL};
    assert_true(vmfix_count_events(&g_f, ev) >= 1);
    vmenc_disk *d = NULL;
    assert_int_equal(vmenc_disk_open(vm, "alice", id, 0, &d), VMENC_E_INTERRUPTED); /* nothing written */
#else
    fail_msg("no verb reports which segments of a lost conversion state are unknown");
#endif
    vmenc_vm_free(vm);
}

/* A segment write torn in half by a failing device: the segment is in
 * flight when the state file is then lost. */
static bool g_tear_armed;

static vmenc_status write_all(int fd, const uint8_t *buf, size_t len, uint64_t off) {
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n <= 0)
            return VMENC_E_IO;
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return VMENC_OK;
}

static vmenc_status tear_pwrite(int fd, const uint8_t *buf, size_t len, uint64_t off) {
    if (g_tear_armed && len == SEG) {
        g_tear_armed = false;
        (void)write_all(fd, buf, len / 2, off);
        return VMENC_E_IO;
    }
    return write_all(fd, buf, len, off);
}

static vmenc_status plain_sync(int fd) { return fdatasync(fd) == 0 ? VMENC_OK : VMENC_E_IO; }

static const vm_io_hooks k_tear_hooks = {.pwrite = tear_pwrite, .sync = plain_sync};

static void test_lost_state_with_segment_in_flight_recovered(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1], cvt[256], p[2 * PATH_MAX];
    vmenc_vm *vm = make_vm("st9", "home-only", id);
    begin_encrypt(vm, id, 3); /* moving up: segments 6, 5, 4 moved */
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    vmenc_convert_progress pr = {.struct_size = sizeof(pr)};
    g_tear_armed = true;
    vm_io_hook = &k_tear_hooks;
    vmenc_status s = vmenc_disk_convert_step(d, 1, &pr); /* segment 3: half its new copy written over 4's old */
    vm_io_hook = NULL;
    assert_int_equal(s, VMENC_E_IO);
    assert_false(g_tear_armed);
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);
    find_suffix("st9", ".cvt", cvt, sizeof(cvt));
    assert_int_equal(unlink(home_file("st9", cvt, p, sizeof(p))), 0);
    vm = reopen("st9");
#ifdef VMENC_RECOVERY_REBUILT
    vmenc_convert_recovery r;
    OK(recover(vm, "alice", id, &r));
    assert_int_equal(r.segments_done, 3);
    OK(vmenc_vm_resume(vm, "alice", NULL));
    verify_disk(vm, id);
#else
    fail_msg("no verb recovers a disk whose conversion state file is lost");
#endif
    vmenc_vm_free(vm);
}

/* ---- the codecs on their own ------------------------------------------------------------ */

/* (New functions: compiled only where the recovery verb exists, so this file
 * still builds against a library without them and its attacker tests can
 * be seen failing there.) */
#ifdef VMENC_RECOVERY_REBUILT

static void test_slot_codec(void **state) {
    (void)state;
    uint8_t k1[VM_CVT_SLOT_KEY_BYTES], k2[VM_CVT_SLOT_KEY_BYTES];
    memset(k1, 1, sizeof(k1));
    memset(k2, 2, sizeof(k2));
    vm_cvt_slot a = {.id = 5, .seq = 3, .done_segs = 2, .num_segs = 7, .seg_bytes = SEG}, got;
    uint8_t img[2 * VM_CVT_SLOT_STRIDE];
    memset(img, 0, sizeof(img));
    vm_cvt_slot_serialize(k1, &a, img);
    OK(vm_cvt_slot_parse(k1, img, VM_CVT_SLOT_BYTES, &got));
    assert_int_equal(got.done_segs, 2);
    assert_int_equal(vm_cvt_slot_parse(k2, img, VM_CVT_SLOT_BYTES, &got), VMENC_E_AUTH); /* another key */
    unsigned nv = 9;
    OK(vm_cvt_slot_pick(k1, img, 64, img + VM_CVT_SLOT_STRIDE, 64, 5, &got, &nv));
    assert_int_equal(nv, 1); /* slot 1 never written: all zeros */
    assert_int_equal(vm_cvt_slot_pick(k2, img, 64, img + VM_CVT_SLOT_STRIDE, 64, 5, &got, &nv), VMENC_E_AUTH);
    assert_int_equal(vm_cvt_slot_pick(k1, img, 64, img + VM_CVT_SLOT_STRIDE, 64, 6, &got, &nv), VMENC_E_AUTH);
    uint8_t v1[64];
    old_slot(v1, "VMENCCV1", 5, 3, 7, 7, SEG);
    assert_int_equal(vm_cvt_slot_parse(k1, v1, 64, &got), VMENC_E_BAD_VERSION);
    assert_int_equal(vm_cvt_slot_pick(k1, v1, 64, NULL, 0, 5, &got, &nv), VMENC_E_BAD_VERSION);
    memset(img, 0, sizeof(img));
    assert_int_equal(vm_cvt_slot_pick(k1, img, 64, img + VM_CVT_SLOT_STRIDE, 64, 5, &got, &nv),
                     VMENC_E_INTERRUPTED);
    assert_int_equal(nv, 0);
}

static void test_sealed_disk_codec(void **state) {
    (void)state;
    vm_disk_desc d;
    memset(&d, 0, sizeof(d));
    d.state = VMENC_DISK_ENCRYPTED;
    d.sector_size = 512;
    d.capacity = CAP;
    char v[512];
    OK(vm_sealed_disk_value("x_0.vmdk", &d, true, v, sizeof(v)));
    assert_string_equal(v, "x_0.vmdk encrypted 512 6303744");
    OK(vm_sealed_disk_check(v, "x_0.vmdk", &d));
    assert_int_equal(vm_sealed_disk_check(v, "y_0.vmdk", &d), VMENC_E_AUTH);
    d.sector_size = 4096;
    assert_int_equal(vm_sealed_disk_check(v, "x_0.vmdk", &d), VMENC_E_AUTH); /* geometry */
    d.capacity = CAP + 4096;
    d.sector_size = 512;
    assert_int_equal(vm_sealed_disk_check(v, "x_0.vmdk", &d), VMENC_E_AUTH);
    d.capacity = CAP;
    d.state = VMENC_DISK_PLAIN;
    assert_int_equal(vm_sealed_disk_check(v, "x_0.vmdk", &d), VMENC_E_AUTH); /* downgrade */
    /* version 1 values still read, geometry unchecked */
    OK(vm_sealed_disk_check("x_0.vmdk plain", "x_0.vmdk", &d));
    vm_sealed_disk sd;
    OK(vm_sealed_disk_parse("x_0.vmdk plain", &sd));
    assert_false(sd.has_geometry);
    const char *bad[] = {"", "x_0.vmdk", "x_0.vmdk maybe", "x_0.vmdk plain 512", "x_0.vmdk plain 513 1",
                         "x_0.vmdk plain 512 01", "x_0.vmdk plain 512 1 next=00", "x_0.vmdk plain 512 1 ",
                         "x_0.vmdk  plain", " x_0.vmdk plain", "x_0.vmdk plain 512 1 next=" "0000000000000000000000000000000000000000000000000000000000000000 z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(vm_sealed_disk_parse(bad[i], &sd), VMENC_E_PARSE);
}

#endif /* VMENC_RECOVERY_REBUILT */

int main(void) {
    const struct CMUnitTest tests[] = {
#ifdef VMENC_RECOVERY_REBUILT
        cmocka_unit_test(test_slot_codec),
        cmocka_unit_test(test_sealed_disk_codec),
#endif
        cmocka_unit_test(test_forged_done_slot_refused),
        cmocka_unit_test(test_state_from_another_vm_refused),
        cmocka_unit_test(test_sector_size_edit_refused),
        cmocka_unit_test(test_forged_rekeying_descriptor_refused),
        cmocka_unit_test(test_retired_vm_key_as_next_refused),
        cmocka_unit_test(test_forged_applying_policy_refused),
        cmocka_unit_test(test_lost_state_named_and_recovered),
        cmocka_unit_test(test_lost_state_unknown_segment_reported),
        cmocka_unit_test(test_lost_state_with_segment_in_flight_recovered),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
