/*
 * tests/test_vm_authority.c - each VM's authority record (issue 20, points
 * 1, 2, 3 and the migration receiver of point 11): what a VM is comes from
 * its record in the workspace's control store, not from the datastore. An
 * attacker with write access to the VM home edits its files exactly as the
 * issue describes; the next open must refuse with VMENC_E_AUTH, audit the
 * refusal with a reason naming the file, and never let the host write
 * plaintext. The library's own writes (create, add disk, deep rekey,
 * migration) keep the record and the files in step, so honest VMs still
 * open.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vm/vm_internal.h"
#include "vmenc/vmenc.h"
#include "workspace/migrate_home.h"

#define OK(call) assert_int_equal((call), VMENC_OK)
#define PASS "correct horse battery staple"
#define ALICE "alice"
#define DISK_BYTES (256u * 1024u)
#define ENC_POLICY "VM Encryption Policy"

static char g_dir[256];
static vmenc_workspace *g_ws, *g_dst;

/* ---- fixture ------------------------------------------------------------------------ */

static vmenc_status ws_make(const char *dir, const char *host, const char *provider, vmenc_workspace **out) {
    vmenc_workspace_create_options co = {.struct_size = sizeof(co), .passphrase = (const uint8_t *)PASS,
                                         .passphrase_len = strlen(PASS), .admin = ALICE, .host_id = host,
                                         .key_provider = provider, .kdf_opslimit = 1, .kdf_memlimit_kib = 8192,
                                         .flags = VMENC_WORKSPACE_CREATE_DEFAULT_POLICY};
    vmenc_status st = vmenc_workspace_create(dir, &co, NULL);
    vmenc_workspace_open_options oo = {.struct_size = sizeof(oo), .passphrase = (const uint8_t *)PASS,
                                       .passphrase_len = strlen(PASS)};
    return st != VMENC_OK ? st : vmenc_workspace_open(dir, &oo, NULL, out);
}

static void rm_rf(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char sub[1024];
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            rm_rf(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int setup(void **state) {
    (void)state;
    if (vmenc_init() != VMENC_OK)
        return -1;
    snprintf(g_dir, sizeof(g_dir), "/tmp/vmenc-auth-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    char d1[300];
    snprintf(d1, sizeof(d1), "%s/esx01", g_dir);
    return ws_make(d1, "esx01", NULL, &g_ws) == VMENC_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    vmenc_workspace_free(g_ws);
    vmenc_workspace_free(g_dst);
    g_ws = g_dst = NULL;
    rm_rf(g_dir);
    return 0;
}

static void pattern(uint8_t *p, size_t n, uint64_t salt) {
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 131u + salt * 7u + (i >> 9)) & 0xff);
}

/* make_vm creates VM |name|, encrypted, with one disk holding a known
 * pattern, and returns it open. */
static vmenc_vm *make_vm(vmenc_workspace *ws, const char *name) {
    char home[1024];
    OK(vmenc_workspace_vm_home(ws, name, home, sizeof(home)));
    vmenc_vm_create_options vo = {.struct_size = sizeof(vo), .principal = ALICE, .home_dir = home, .name = name,
                                  .folder = vmenc_workspace_folder(ws), .storage_policy = ENC_POLICY};
    vmenc_vm *vm = NULL;
    OK(vmenc_vm_create(vmenc_workspace_host(ws), &vo, &vm));
    vmenc_disk_create_options dco = {.struct_size = sizeof(dco), .capacity = DISK_BYTES, .sector_size = 512};
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmenc_vm_add_disk(vm, ALICE, &dco, id, sizeof(id)));
    static uint8_t buf[DISK_BYTES];
    pattern(buf, sizeof(buf), 7);
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, ALICE, id, 0, &d));
    OK(vmenc_disk_pwrite(d, 0, buf, sizeof(buf)));
    OK(vmenc_disk_flush(d));
    OK(vmenc_disk_close(d));
    return vm;
}

/* ---- the attacker's tools: files of the home, as text -------------------------------- */

static char *home_file(const char *name, const char *suffix) {
    static char p[2][1600];
    static int k;
    char home[1024];
    OK(vmenc_workspace_vm_home(g_ws, name, home, sizeof(home)));
    k ^= 1;
    snprintf(p[k], sizeof(p[k]), "%s/%s", home, suffix);
    return p[k];
}

/* the first disk's descriptor and extent: NAME_0.vmdk, NAME_0-flat.vmdk */
static char *desc_file(const char *name) {
    char f[100];
    snprintf(f, sizeof(f), "%.60s_0.vmdk", name);
    return home_file(name, f);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *b = calloc(1, 1 << 20);
    assert_non_null(b);
    size_t n = fread(b, 1, (1 << 20) - 1, f);
    b[n] = '\0';
    fclose(f);
    return b;
}

static void spit(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    fclose(f);
}

/* drop_lines removes every line that starts with |prefix|. */
static void drop_lines(char *text, const char *prefix) {
    char *out = text, *p = text;
    while (*p != '\0') {
        char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) + 1 : strlen(p);
        if (strncmp(p, prefix, strlen(prefix)) != 0) {
            memmove(out, p, len);
            out += len;
        }
        p += len;
    }
    *out = '\0';
}

/* replace_all replaces each |from| by |to| (no longer than |from|). */
static void replace_all(char *text, const char *from, const char *to) {
    size_t fl = strlen(from), tl = strlen(to);
    assert_true(tl <= fl);
    char *p;
    while ((p = strstr(text, from)) != NULL) {
        memcpy(p, to, tl);
        memmove(p + tl, p + fl, strlen(p + fl) + 1);
    }
}

/* line_value copies the quoted value of "key = " in |text| into |out|. */
static void line_value(const char *text, const char *key, char *out, size_t cap) {
    char k[128];
    snprintf(k, sizeof(k), "\n%s = \"", key);
    const char *p = strstr(text, k);
    assert_non_null(p);
    p += strlen(k);
    const char *q = strchr(p, '"');
    assert_non_null(q);
    assert_true((size_t)(q - p) < cap);
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = '\0';
}

/* audit_has: an audit record of |op| with |outcome| whose text holds |needle|. */
static bool audit_has(vmenc_workspace *ws, const char *op, const char *outcome, const char *needle) {
    FILE *f = fopen(vmenc_workspace_audit_log_path(ws), "r");
    assert_non_null(f);
    char line[16384], o[128], oc[64];
    snprintf(o, sizeof(o), "\"op\":\"%s\"", op);
    snprintf(oc, sizeof(oc), "\"outcome\":\"%s\"", outcome);
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, o) && strstr(line, oc) && strstr(line, needle);
    fclose(f);
    return found;
}

/* extent_has_plaintext: does any 4 KiB of the pattern appear in the extent? */
static bool extent_has_plaintext(const char *name) {
    static uint8_t want[DISK_BYTES];
    pattern(want, sizeof(want), 7);
    char ext[100];
    snprintf(ext, sizeof(ext), "%.60s_0-flat.vmdk", name);
    FILE *f = fopen(home_file(name, ext), "rb");
    assert_non_null(f);
    static uint8_t got[2 * DISK_BYTES];
    size_t n = fread(got, 1, sizeof(got), f);
    fclose(f);
    for (size_t off = 0; off + 4096 <= n; off += 512)
        if (memcmp(got + off, want, 4096) == 0)
            return true;
    return false;
}

static vmenc_status open_vm(const char *name, vmenc_vm **out) {
    *out = NULL;
    return vmenc_workspace_open_vm(g_ws, ALICE, name, out);
}

/* ---- point 1: downgrade by stripping ---------------------------------------------------- */

static void test_strip_to_plain_refused(void **state) {
    (void)state;
    vmenc_vm *vm = make_vm(g_ws, "strip1");
    vmenc_vm_free(vm);
    char *vmx = slurp(home_file("strip1", "strip1.vmx"));
    drop_lines(vmx, "encryption.");
    spit(home_file("strip1", "strip1.vmx"), vmx);
    char *desc = slurp(desc_file("strip1"));
    replace_all(desc, "aes-xts-plain64", "none");
    replace_all(desc, "vmenc.state = \"encrypted\"", "vmenc.state = \"plain\"");
    drop_lines(desc, "vmenc.keySafe");
    drop_lines(desc, "vmenc.kekId");
    drop_lines(desc, "vmenc.kekCheck");
    drop_lines(desc, "vmenc.keyProvider");
    spit(desc_file("strip1"), desc);
    free(vmx);
    free(desc);

    vmenc_status st = open_vm("strip1", &vm);
    if (st == VMENC_OK) {
        /* today's code: the VM opens as plain and a write lands in clear */
        vmenc_disk *d = NULL;
        static uint8_t buf[DISK_BYTES];
        pattern(buf, sizeof(buf), 7);
        if (vmenc_disk_open(vm, ALICE, "scsi0:0", 0, &d) == VMENC_OK) {
            vmenc_status ws = vmenc_disk_pwrite(d, 0, buf, sizeof(buf));
            vmenc_status cs = vmenc_disk_close(d);
            (void)ws;
            (void)cs;
        }
        vmenc_vm_free(vm);
    }
    assert_int_equal(st, VMENC_E_AUTH);
    assert_null(vm);
    assert_false(extent_has_plaintext("strip1"));
    assert_true(audit_has(g_ws, "vm.open", "denied", "strip1.vmx"));
    /* the files, not the VM, are what changed: the record still says encrypted */
    assert_true(audit_has(g_ws, "vm.open", "denied", "recorded encrypted"));
}

/* Stripping only the descriptor: the disk stays encrypted in the record. */
static void test_plain_descriptor_refused(void **state) {
    (void)state;
    vmenc_vm *vm = make_vm(g_ws, "strip2");
    vmenc_vm_free(vm);
    char *desc = slurp(desc_file("strip2"));
    replace_all(desc, "aes-xts-plain64", "none");
    replace_all(desc, "vmenc.state = \"encrypted\"", "vmenc.state = \"plain\"");
    drop_lines(desc, "vmenc.keySafe");
    drop_lines(desc, "vmenc.kekId");
    drop_lines(desc, "vmenc.kekCheck");
    drop_lines(desc, "vmenc.keyProvider");
    spit(desc_file("strip2"), desc);
    free(desc);
    assert_int_equal(open_vm("strip2", &vm), VMENC_E_AUTH);
    assert_true(audit_has(g_ws, "vm.open", "denied", "_0.vmdk"));
}

/* ---- point 2: a forged pending policy ---------------------------------------------------- */

static void test_forged_applying_policy_refused(void **state) {
    (void)state;
    vmenc_vm *vm = make_vm(g_ws, "pol1");
    vmenc_vm_free(vm);
    char *vmx = slurp(home_file("pol1", "pol1.vmx"));
    char *forged = malloc(strlen(vmx) + 128);
    sprintf(forged, "%svmenc.applyingPolicy = \"Datastore Default\"\n", vmx);
    spit(home_file("pol1", "pol1.vmx"), forged);
    free(vmx);
    free(forged);

    vmenc_status st = open_vm("pol1", &vm);
    if (st == VMENC_OK) {
        /* today's code: an admin's resume decrypts the VM in place */
        vmenc_status rs = vmenc_vm_resume(vm, ALICE, NULL);
        (void)rs;
        vmenc_vm_free(vm);
    }
    assert_int_equal(st, VMENC_E_AUTH);
    assert_false(extent_has_plaintext("pol1"));
    assert_true(audit_has(g_ws, "vm.open", "denied", "vmenc.applyingPolicy"));
}

/* ---- point 3: a retired key replayed -------------------------------------------------------- */

static void test_retired_key_in_new_key_safe_refused(void **state) {
    (void)state;
    vmenc_vm *vm = make_vm(g_ws, "rk1");
    char *before = slurp(home_file("rk1", "rk1.vmx"));
    char old_safe[8192];
    line_value(before, "encryption.keySafe", old_safe, sizeof(old_safe));
    OK(vmenc_vm_rekey_deep(vm, ALICE, NULL));
    vmenc_vm_free(vm);
    /* the honest VM opens after its deep rekey */
    OK(open_vm("rk1", &vm));
    vmenc_vm_free(vm);

    char *vmx = slurp(home_file("rk1", "rk1.vmx"));
    char cur_safe[8192];
    line_value(vmx, "encryption.keySafe", cur_safe, sizeof(cur_safe));
    assert_string_not_equal(cur_safe, old_safe);
    char *forged = malloc(strlen(vmx) + strlen(old_safe) + 64);
    sprintf(forged, "%sencryption.newKeySafe = \"%s\"\n", vmx, old_safe);
    spit(home_file("rk1", "rk1.vmx"), forged);
    vmenc_status st = open_vm("rk1", &vm);
    if (st == VMENC_OK) {
        vmenc_status rs = vmenc_vm_resume(vm, ALICE, NULL); /* today: re-seals the home under the retired key */
        (void)rs;
        vmenc_vm_free(vm);
    }
    assert_int_equal(st, VMENC_E_AUTH);
    assert_true(audit_has(g_ws, "vm.open", "denied", "encryption.newKeySafe"));

    /* the whole pre-rekey configuration replayed: an older key generation */
    spit(home_file("rk1", "rk1.vmx"), before);
    assert_int_equal(open_vm("rk1", &vm), VMENC_E_AUTH);
    assert_true(audit_has(g_ws, "vm.open", "denied", "not the VM's recorded key record"));

    /* put back, it opens again */
    spit(home_file("rk1", "rk1.vmx"), vmx);
    OK(open_vm("rk1", &vm));
    vmenc_vm_free(vm);
    free(before);
    free(vmx);
    free(forged);
}

/* The disk's pattern of point 3: a descriptor from before the deep rekey
 * names the retired DEK record. */
static void test_retired_disk_record_refused(void **state) {
    (void)state;
    vmenc_vm *vm = make_vm(g_ws, "rk2");
    char *old_desc = slurp(desc_file("rk2"));
    OK(vmenc_vm_rekey_deep(vm, ALICE, NULL));
    vmenc_vm_free(vm);
    char *new_desc = slurp(desc_file("rk2"));
    assert_string_not_equal(old_desc, new_desc);
    spit(desc_file("rk2"), old_desc);
    assert_int_equal(open_vm("rk2", &vm), VMENC_E_AUTH);
    assert_true(audit_has(g_ws, "vm.open", "denied", "_0.vmdk"));
    /* a "rekeying" descriptor naming the retired record as the next key */
    char old_safe[8192], *forged = malloc(strlen(new_desc) + 9000);
    line_value(old_desc, "vmenc.keySafe", old_safe, sizeof(old_safe));
    snprintf(forged, strlen(new_desc) + 9000, "%svmenc.newKeySafe = \"%s\"\n", new_desc, old_safe);
    replace_all(forged, "vmenc.state = \"encrypted\"", "vmenc.state = \"rekeying\"");
    spit(desc_file("rk2"), forged);
    vmenc_status st = open_vm("rk2", &vm);
    if (st == VMENC_OK)
        vmenc_vm_free(vm);
    assert_true(st != VMENC_OK); /* refused: as a forgery, or as a descriptor that does not parse */
    spit(desc_file("rk2"), new_desc);
    OK(open_vm("rk2", &vm));
    vmenc_vm_free(vm);
    free(old_desc);
    free(new_desc);
    free(forged);
}

/* A home whose UUID was rewritten to escape its record. */
static void test_uuid_swap_refused(void **state) {
    (void)state;
    vmenc_vm *vm = make_vm(g_ws, "uu1");
    char uuid[64];
    snprintf(uuid, sizeof(uuid), "%s", vmenc_vm_uuid(vm));
    vmenc_vm_free(vm);
    char *vmx = slurp(home_file("uu1", "uu1.vmx"));
    drop_lines(vmx, "encryption.");
    replace_all(vmx, uuid, "00000000-0000-4000-8000-000000000000");
    spit(home_file("uu1", "uu1.vmx"), vmx);
    char *desc = slurp(desc_file("uu1"));
    replace_all(desc, uuid, "00000000-0000-4000-8000-000000000000");
    replace_all(desc, "aes-xts-plain64", "none");
    replace_all(desc, "vmenc.state = \"encrypted\"", "vmenc.state = \"plain\"");
    drop_lines(desc, "vmenc.keySafe");
    drop_lines(desc, "vmenc.kekId");
    drop_lines(desc, "vmenc.kekCheck");
    drop_lines(desc, "vmenc.keyProvider");
    spit(desc_file("uu1"), desc);
    free(vmx);
    free(desc);
    assert_int_equal(open_vm("uu1", &vm), VMENC_E_AUTH);
    assert_true(audit_has(g_ws, "vm.open", "denied", "is recorded with UUID"));
}

/* The record follows the library's own writes: a shallow rekey, a second
 * disk, a policy change, and a reopen after each. */
static void test_honest_changes_keep_opening(void **state) {
    (void)state;
    vmenc_vm *vm = make_vm(g_ws, "ok1");
    OK(vmenc_vm_rekey_shallow(vm, ALICE, NULL, NULL));
    vmenc_vm_free(vm);
    OK(open_vm("ok1", &vm));
    vmenc_disk_create_options dco = {.struct_size = sizeof(dco), .capacity = DISK_BYTES, .sector_size = 512};
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmenc_vm_add_disk(vm, ALICE, &dco, id, sizeof(id)));
    vmenc_vm_free(vm);
    OK(open_vm("ok1", &vm));
    OK(vmenc_vm_apply_storage_policy(vm, ALICE, "Datastore Default"));
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    OK(vmenc_vm_get_info(vm, &info));
    assert_false(info.encrypted);
    vmenc_vm_free(vm);
    OK(open_vm("ok1", &vm));
    OK(vmenc_vm_apply_storage_policy(vm, ALICE, ENC_POLICY));
    vmenc_vm_free(vm);
    OK(open_vm("ok1", &vm));
    OK(vmenc_vm_get_info(vm, &info));
    assert_true(info.encrypted);
    vmenc_vm_free(vm);
}

/* ---- intent first: a write cut off after its announcement ------------------------------ */

/* The record announces a descriptor write (a decryption starting) and the
 * write never happens, as after a crash between the two: the announcement
 * is durable, the old descriptor still opens, and the next write of the
 * VM drops the stale announcement. */
static void test_announced_write_cut_off_still_opens(void **state) {
    (void)state;
    vmenc_vm *vm = make_vm(g_ws, "cw1");
    pthread_mutex_lock(&vm->lock);
    vm_disk_desc d = vm->disks[0].desc; /* shallow: only state and ID change */
    d.state = VMENC_DISK_DECRYPTING;
    d.cvt_id = 4242;
    OK(vm_authority_before_descriptor(vm, &d));
    pthread_mutex_unlock(&vm->lock);
    /* durable: another handle on the store reads the announcement */
    ctl_vm_record stored;
    OK(ctl_store_get_vm(vmenc_workspace_host(g_ws)->control, vmenc_vm_uuid(vm), &stored));
    assert_int_equal(stored.op.kind, CTL_OP_NONE);
    assert_int_equal(stored.op.num_disks, 1);
    assert_int_equal(stored.op.disks[0].cvt_id, 4242);
    assert_false(stored.op.disks[0].has_target_dek); /* target: plain */
    assert_true(stored.facts.disks[0].encrypted);
    char uuid[64];
    snprintf(uuid, sizeof(uuid), "%s", vmenc_vm_uuid(vm));
    vmenc_vm_free(vm);

    /* the descriptor on disk is the old one: it opens, and the open drops
     * the announcement nothing on disk needs */
    OK(open_vm("cw1", &vm));
    OK(ctl_store_get_vm(vmenc_workspace_host(g_ws)->control, uuid, &stored));
    assert_int_equal(stored.op.num_disks, 0);
    assert_true(stored.facts.disks[0].encrypted);
    OK(vmenc_vm_rekey_shallow(vm, ALICE, NULL, NULL));
    vmenc_vm_free(vm);
    OK(open_vm("cw1", &vm));
    vmenc_vm_free(vm);
}

/* ---- point 11: the migration receiver compares the stream with the handover ------------- */

typedef struct wire {
    uint8_t *buf;
    size_t len, cap, pos;
} wire;

static vmenc_status wire_write(void *ctx, const uint8_t *data, size_t len) {
    wire *w = ctx;
    if (w->len + len > w->cap) {
        w->cap = (w->len + len) * 2;
        w->buf = realloc(w->buf, w->cap);
        assert_non_null(w->buf);
    }
    memcpy(w->buf + w->len, data, len);
    w->len += len;
    return VMENC_OK;
}

static vmenc_status wire_read(void *ctx, uint8_t *buf, size_t cap, size_t *out_len) {
    wire *w = ctx;
    size_t n = w->len - w->pos < cap ? w->len - w->pos : cap;
    memcpy(buf, w->buf + w->pos, n);
    w->pos += n;
    *out_len = n;
    return VMENC_OK;
}

typedef enum vmx_edit { EDIT_NONE, EDIT_STRIP, EDIT_UUID } vmx_edit;

typedef struct sender {
    vmenc_migration_sender *s;
    vmenc_vm *vm;
    wire w;
    vmx_edit edit;
} sender;

/* send_home streams the home; the sending host may lie about NAME.vmx. */
static void send_home(sender *x) {
    const char *home = vmenc_vm_home_dir(x->vm);
    struct dirent **names = NULL;
    int n = scandir(home, &names, NULL, alphasort);
    assert_true(n > 0);
    mh_file files[32];
    char *bodies[32];
    size_t nf = 0;
    uint64_t total = 0;
    char vmx_name[128];
    snprintf(vmx_name, sizeof(vmx_name), "%s.vmx", vmenc_vm_name(x->vm));
    for (int i = 0; i < n; i++) {
        char p[9000];
        struct stat sb;
        snprintf(p, sizeof(p), "%s/%s", home, names[i]->d_name);
        if (names[i]->d_name[0] != '.' && lstat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
            assert_true(nf < 32);
            snprintf(files[nf].name, sizeof(files[nf].name), "%s", names[i]->d_name);
            bodies[nf] = NULL;
            files[nf].size = (uint64_t)sb.st_size;
            if (strcmp(names[i]->d_name, vmx_name) == 0 && x->edit != EDIT_NONE) {
                bodies[nf] = slurp(p);
                if (x->edit == EDIT_STRIP)
                    drop_lines(bodies[nf], "encryption.");
                else
                    replace_all(bodies[nf], vmenc_vm_uuid(x->vm), "00000000-0000-4000-8000-000000000000");
                files[nf].size = strlen(bodies[nf]);
            }
            total += files[nf++].size;
        }
        free(names[i]);
    }
    free(names);
    mh_manifest m = {.num_files = nf, .num_bytes = total};
    snprintf(m.vm, sizeof(m.vm), "%s", vmenc_vm_name(x->vm));
    uint8_t text[MH_TEXT_MAX + 1];
    size_t tl = 0;
    OK(mh_manifest_build(&m, text, sizeof(text), &tl));
    OK(vmenc_migration_send(x->s, VMENC_MIGRATION_DEVICE_STATE, 0, text, tl));
    for (size_t i = 0; i < nf; i++) {
        OK(mh_file_build(&files[i], text, sizeof(text), &tl));
        OK(vmenc_migration_send(x->s, VMENC_MIGRATION_DEVICE_STATE, 1 + i, text, tl));
        if (bodies[i] != NULL) {
            if (files[i].size > 0)
                OK(vmenc_migration_send(x->s, VMENC_MIGRATION_DISK, 0, (const uint8_t *)bodies[i], files[i].size));
            free(bodies[i]);
            continue;
        }
        char p[9000];
        snprintf(p, sizeof(p), "%s/%s", home, files[i].name);
        FILE *f = fopen(p, "rb");
        assert_non_null(f);
        static uint8_t buf[65536];
        uint64_t off = 0;
        size_t got;
        while ((got = fread(buf, 1, sizeof(buf), f)) > 0) {
            OK(vmenc_migration_send(x->s, VMENC_MIGRATION_DISK, off, buf, got));
            off += got;
        }
        fclose(f);
    }
    OK(vmenc_migration_sender_finish(x->s));
}

static vmenc_status on_ready(void *ctx, const uint8_t *ready, size_t ready_len) {
    sender *x = ctx;
    OK(vmenc_migration_sender_begin(x->s, ready, ready_len));
    send_home(x);
    return VMENC_OK;
}

/* migrate sends VM |name| of esx01 to esx02 with the .vmx edited as asked. */
static vmenc_status migrate(const char *name, vmx_edit edit, vmenc_vm **out) {
    if (g_dst == NULL) {
        char d2[300], ks[400];
        snprintf(d2, sizeof(d2), "%s/esx02", g_dir);
        snprintf(ks, sizeof(ks), "%s/esx01/keystore.vks", g_dir);
        OK(ws_make(d2, "esx02", "esx02-local", &g_dst));
        const char *eps[] = {ks};
        vmenc_workspace_kms_spec k = {.struct_size = sizeof(k), .alias = "native", .type = "file",
                                      .endpoints = eps, .num_endpoints = 1};
        OK(vmenc_workspace_add_kms(g_dst, ALICE, &k));
        OK(vmenc_policy_add_object(vmenc_workspace_policy(g_ws), "esx02", VMENC_OBJ_HOST, "dc"));
    }
    vmenc_vm *src = make_vm(g_ws, name);
    sender x = {.vm = src, .edit = edit};
    vmenc_migration_sender_options so = {.struct_size = sizeof(so), .principal = ALICE, .dest_host = "esx02",
                                         .fd = -1, .write_fn = wire_write, .io_ctx = &x.w};
    OK(vmenc_migration_sender_new(src, &so, &x.s));
    uint8_t ho[VMENC_MIGRATION_HANDOVER_MAX];
    size_t ho_len = 0;
    OK(vmenc_migration_sender_get_handover(x.s, ho, sizeof(ho), &ho_len));
    vmenc_workspace_migrate_receive_options ro = {.struct_size = sizeof(ro), .handover = ho, .handover_len = ho_len,
                                                  .fd = -1, .read_fn = wire_read, .io_ctx = &x.w,
                                                  .ready_fn = on_ready, .ready_ctx = &x};
    vmenc_workspace_migrate_receive_result res = {.struct_size = sizeof(res)};
    vmenc_status st = vmenc_workspace_migrate_receive(g_dst, ALICE, name, &ro, &res, out);
    vmenc_migration_sender_free(x.s);
    vmenc_vm_free(src);
    free(x.w.buf);
    return st;
}

static bool dst_home_exists(const char *name) {
    char home[1024];
    OK(vmenc_workspace_vm_home(g_dst, name, home, sizeof(home)));
    struct stat sb;
    return lstat(home, &sb) == 0;
}

static void test_migration_stripped_vmx_refused(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    vmenc_status st = migrate("mig1", EDIT_STRIP, &vm);
    vmenc_vm_free(vm);
    assert_int_equal(st, VMENC_E_AUTH);
    assert_false(dst_home_exists("mig1"));
    assert_true(audit_has(g_dst, "migration.receive_register", "failed", "mig1.vmx (received)"));
}

static void test_migration_uuid_mismatch_refused(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    vmenc_status st = migrate("mig2", EDIT_UUID, &vm);
    vmenc_vm_free(vm);
    assert_int_equal(st, VMENC_E_AUTH);
    assert_false(dst_home_exists("mig2"));
    assert_true(audit_has(g_dst, "migration.receive_register", "failed", "UUID"));
}

/* An honest migration: registered on esx02 with a record there; esx01's
 * record is gone. */
static void test_migration_moves_the_record(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    OK(migrate("mig3", EDIT_NONE, &vm));
    assert_non_null(vm);
    char rec[1200];
    snprintf(rec, sizeof(rec), "%s/esx02/control/vms/%s", g_dir, vmenc_vm_uuid(vm));
    struct stat sb;
    assert_int_equal(stat(rec, &sb), 0);
    snprintf(rec, sizeof(rec), "%s/esx01/control/vms/%s", g_dir, vmenc_vm_uuid(vm));
    assert_int_not_equal(stat(rec, &sb), 0);
    vmenc_vm_free(vm);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_strip_to_plain_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_descriptor_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forged_applying_policy_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retired_key_in_new_key_safe_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retired_disk_record_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uuid_swap_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_honest_changes_keep_opening, setup, teardown),
        cmocka_unit_test_setup_teardown(test_announced_write_cut_off_still_opens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_stripped_vmx_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_uuid_mismatch_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_moves_the_record, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
