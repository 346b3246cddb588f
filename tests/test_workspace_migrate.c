/*
 * tests/test_workspace_migrate.c - receiving a migrated VM in one call
 * (vmenc_workspace_migrate_receive) and the inventory's undo
 * (vmenc_policy_remove_object). Two workspaces, esx01 and esx02, reach the
 * same file key provider; a VM of esx01 is streamed to esx02 through an
 * in-memory wire that the tests cut or edit after the sender wrote it. The
 * property under test: a receive ends with the VM registered on esx02, or
 * leaves nothing it created (home, inventory object) and says so in the
 * audit log.
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

#include "vmenc/vmenc.h"
#include "workspace/migrate_home.h"

#define OK(call) assert_int_equal((call), VMENC_OK)
#define PASS "correct horse battery staple"
#define ALICE "alice"
#define BOB "bob"
#define DISK_BYTES (256u * 1024u)

static char g_dir[256];
static vmenc_workspace *g_src, *g_dst;

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

static int setup(void **state) {
    (void)state;
    if (vmenc_init() != VMENC_OK)
        return -1;
    snprintf(g_dir, sizeof(g_dir), "/tmp/vmenc-wsmig-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    char d1[300], d2[300], ks[400];
    snprintf(d1, sizeof(d1), "%s/esx01", g_dir);
    snprintf(d2, sizeof(d2), "%s/esx02", g_dir);
    snprintf(ks, sizeof(ks), "%s/keystore.vks", d1);
    if (ws_make(d1, "esx01", NULL, &g_src) != VMENC_OK || ws_make(d2, "esx02", "esx02-local", &g_dst) != VMENC_OK)
        return -1;
    /* esx02 reaches esx01's key provider under the same alias */
    const char *eps[] = {ks};
    vmenc_workspace_kms_spec k = {.struct_size = sizeof(k), .alias = "native", .type = "file", .endpoints = eps,
                                  .num_endpoints = 1};
    if (vmenc_workspace_add_kms(g_dst, ALICE, &k) != VMENC_OK)
        return -1;
    if (vmenc_policy_add_object(vmenc_workspace_policy(g_src), "esx02", VMENC_OBJ_HOST, "dc") != VMENC_OK)
        return -1;
    /* bob exists on esx02 with no privilege at all */
    return vmenc_policy_add_user(vmenc_workspace_policy(g_dst), BOB) == VMENC_OK ? 0 : -1;
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

static int teardown(void **state) {
    (void)state;
    vmenc_workspace_free(g_src);
    vmenc_workspace_free(g_dst);
    rm_rf(g_dir);
    return 0;
}

static void pattern(uint8_t *p, size_t n, uint64_t salt) {
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 131u + salt * 7u + (i >> 9)) & 0xff);
}

/* source_vm creates VM |name| on esx01, encrypted ("VM Encryption
 * Policy"), with one disk holding a known pattern. */
static vmenc_vm *source_vm(const char *name) {
    char home[1024];
    OK(vmenc_workspace_vm_home(g_src, name, home, sizeof(home)));
    vmenc_vm_create_options vo = {.struct_size = sizeof(vo), .principal = ALICE, .home_dir = home, .name = name,
                                  .folder = vmenc_workspace_folder(g_src),
                                  .storage_policy = "VM Encryption Policy"};
    vmenc_vm *vm = NULL;
    OK(vmenc_vm_create(vmenc_workspace_host(g_src), &vo, &vm));
    vmenc_disk_create_options dco = {.struct_size = sizeof(dco), .capacity = DISK_BYTES, .sector_size = 512};
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmenc_vm_add_disk(vm, ALICE, &dco, id, sizeof(id)));
    static uint8_t buf[DISK_BYTES];
    pattern(buf, sizeof(buf), (uint64_t)name[strlen(name) - 1]);
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, ALICE, id, 0, &d));
    OK(vmenc_disk_pwrite(d, 0, buf, sizeof(buf)));
    OK(vmenc_disk_flush(d));
    OK(vmenc_disk_close(d));
    return vm;
}

/* ---- the sending side and the wire -------------------------------------------------- */

typedef enum mangle { MANGLE_NONE, MANGLE_FLIP, MANGLE_CUT, MANGLE_OTHER_VM, MANGLE_READY_FAILS } mangle;

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

typedef struct sender {
    vmenc_migration_sender *s;
    vmenc_vm *vm;
    wire w;
    mangle how;
    int ready_calls;
} sender;

/* send_home streams the VM home in the home-stream format: the manifest,
 * then each regular file (sorted by readdir order is fine: the receiver
 * takes them as announced). */
static void send_home(sender *x) {
    const char *home = vmenc_vm_home_dir(x->vm);
    struct dirent **names = NULL;
    int n = scandir(home, &names, NULL, alphasort);
    assert_true(n > 0);
    mh_file files[32];
    size_t nf = 0;
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        char p[9000];
        struct stat sb;
        snprintf(p, sizeof(p), "%s/%s", home, names[i]->d_name);
        if (names[i]->d_name[0] != '.' && lstat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
            assert_true(nf < 32);
            snprintf(files[nf].name, sizeof(files[nf].name), "%s", names[i]->d_name);
            files[nf].size = (uint64_t)sb.st_size;
            total += files[nf++].size;
        }
        free(names[i]);
    }
    free(names);
    mh_manifest m = {.num_files = nf, .num_bytes = total};
    snprintf(m.vm, sizeof(m.vm), "%s", x->how == MANGLE_OTHER_VM ? "someone-else" : vmenc_vm_name(x->vm));
    uint8_t text[MH_TEXT_MAX + 1];
    size_t tl = 0;
    OK(mh_manifest_build(&m, text, sizeof(text), &tl));
    OK(vmenc_migration_send(x->s, VMENC_MIGRATION_DEVICE_STATE, 0, text, tl));
    for (size_t i = 0; i < nf; i++) {
        OK(mh_file_build(&files[i], text, sizeof(text), &tl));
        OK(vmenc_migration_send(x->s, VMENC_MIGRATION_DEVICE_STATE, 1 + i, text, tl));
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

/* on_ready plays the source host: it checks the token, writes the whole
 * stream into the wire, then spoils it as the test asks. */
static vmenc_status on_ready(void *ctx, const uint8_t *ready, size_t ready_len) {
    sender *x = ctx;
    x->ready_calls++;
    if (x->how == MANGLE_READY_FAILS)
        return VMENC_E_IO;
    OK(vmenc_migration_sender_begin(x->s, ready, ready_len));
    send_home(x);
    if (x->how == MANGLE_FLIP)
        x->w.buf[x->w.len * 2 / 3] ^= 0x40; /* inside a DISK frame of the disk's extent */
    if (x->how == MANGLE_CUT)
        x->w.len = x->w.len * 3 / 4;
    return VMENC_OK;
}

static void sender_start(sender *x, vmenc_vm *vm, mangle how, uint8_t *ho, size_t *ho_len) {
    memset(x, 0, sizeof(*x));
    x->vm = vm;
    x->how = how;
    vmenc_migration_sender_options so = {.struct_size = sizeof(so), .principal = ALICE, .dest_host = "esx02",
                                         .fd = -1, .write_fn = wire_write, .io_ctx = &x->w};
    OK(vmenc_migration_sender_new(vm, &so, &x->s));
    OK(vmenc_migration_sender_get_handover(x->s, ho, VMENC_MIGRATION_HANDOVER_MAX, ho_len));
}

static void sender_end(sender *x) {
    vmenc_migration_sender_free(x->s);
    free(x->w.buf);
}

/* receive runs the call under test on esx02 as |who|. */
static vmenc_status receive(sender *x, const char *who, const uint8_t *ho, size_t ho_len,
                            vmenc_workspace_migrate_receive_result *res, vmenc_vm **out) {
    vmenc_workspace_migrate_receive_options ro = {.struct_size = sizeof(ro), .handover = ho, .handover_len = ho_len,
                                                  .fd = -1, .read_fn = wire_read, .io_ctx = &x->w,
                                                  .ready_fn = on_ready, .ready_ctx = x};
    res->struct_size = sizeof(*res);
    return vmenc_workspace_migrate_receive(g_dst, who, vmenc_vm_name(x->vm), &ro, res, out);
}

/* ---- what esx02 holds ------------------------------------------------------------- */

static bool home_exists(const char *name) {
    char home[1024];
    OK(vmenc_workspace_vm_home(g_dst, name, home, sizeof(home)));
    struct stat sb;
    return lstat(home, &sb) == 0;
}

static bool in_inventory(const char *name) {
    int has = 0;
    vmenc_status st = vmenc_policy_has_privilege(vmenc_workspace_policy(g_dst), ALICE, name,
                                                 VMENC_PRIV_SYSTEM_VIEW, &has);
    assert_true(st == VMENC_OK || st == VMENC_E_NOT_FOUND);
    return st == VMENC_OK;
}

/* audit_count counts esx02's audit records of |op| on |target| whose
 * outcome is |outcome| (NULL: any) and, if |principal|, by that principal. */
static size_t audit_count(const char *op, const char *target, const char *outcome, const char *principal) {
    FILE *f = fopen(vmenc_workspace_audit_log_path(g_dst), "r");
    assert_non_null(f);
    char line[8192], o[128], t[128], oc[64], pr[128];
    snprintf(o, sizeof(o), "\"op\":\"%s\"", op);
    snprintf(t, sizeof(t), "\"target\":\"%s\"", target);
    snprintf(oc, sizeof(oc), "\"outcome\":\"%s\"", outcome ? outcome : "");
    snprintf(pr, sizeof(pr), "\"principal\":\"%s\"", principal ? principal : "");
    size_t n = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, o) && strstr(line, t) && (!outcome || strstr(line, oc)) && (!principal || strstr(line, pr)))
            n++;
    fclose(f);
    return n;
}

static void assert_nothing_left(const char *name) {
    assert_false(home_exists(name));
    assert_false(in_inventory(name));
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_receive_registers_the_vm(void **state) {
    (void)state;
    vmenc_vm *src = source_vm("wm1");
    sender x;
    uint8_t ho[VMENC_MIGRATION_HANDOVER_MAX];
    size_t ho_len = 0;
    sender_start(&x, src, MANGLE_NONE, ho, &ho_len);
    vmenc_workspace_migrate_receive_result res;
    vmenc_vm *vm = NULL;
    OK(receive(&x, ALICE, ho, ho_len, &res, &vm));
    assert_non_null(vm);
    assert_int_equal(x.ready_calls, 1);
    assert_true(res.stream_started);
    assert_true(res.migration.encrypted && res.migration.finished);
    assert_int_equal(res.migration.failure, VMENC_MIGRATION_FAIL_NONE);
    assert_true(res.num_files >= 3); /* .vmx, descriptor, extent */
    assert_string_equal(vmenc_vm_name(vm), "wm1");
    assert_true(home_exists("wm1"));
    assert_true(in_inventory("wm1"));
    /* the disk reads back on esx02, decrypted with keys fetched by ID */
    static uint8_t want[DISK_BYTES], got[DISK_BYTES];
    pattern(want, sizeof(want), '1');
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, ALICE, "scsi0:0", VMENC_DISK_OPEN_READONLY, &d));
    OK(vmenc_disk_pread(d, 0, sizeof(got), got));
    OK(vmenc_disk_close(d));
    assert_memory_equal(got, want, sizeof(want));
    assert_int_equal(audit_count("migration.receive_register", "wm1", "success", ALICE), 1);
    assert_int_equal(audit_count("migration.receive_rollback", "wm1", NULL, NULL), 0);
    vmenc_vm_free(vm);
    sender_end(&x);
    vmenc_vm_free(src);
}

/* check_failure runs a receive of a fresh VM whose wire is spoiled by
 * |how| and checks it fails with |want| and leaves nothing behind. */
static void check_failure(const char *name, mangle how, vmenc_status want, vmenc_migration_failure why) {
    vmenc_vm *src = source_vm(name);
    sender x;
    uint8_t ho[VMENC_MIGRATION_HANDOVER_MAX];
    size_t ho_len = 0;
    sender_start(&x, src, how, ho, &ho_len);
    vmenc_workspace_migrate_receive_result res;
    vmenc_vm *vm = NULL;
    assert_int_equal(receive(&x, ALICE, ho, ho_len, &res, &vm), want);
    assert_null(vm);
    assert_int_equal(res.migration.failure, why);
    assert_nothing_left(name);
    /* the object was added (and audited) and then taken out again */
    assert_int_equal(audit_count("migration.receive_register", name, "success", ALICE), 1);
    assert_int_equal(audit_count("migration.receive_rollback", name, "success", ALICE), 1);
    /* the stream itself was audited as failed by the receiver (target VM/source host) */
    char target[64];
    snprintf(target, sizeof(target), "%s/esx01", name);
    assert_int_equal(audit_count("migration.receive", target, "failed", NULL), 1);
    sender_end(&x);
    vmenc_vm_free(src);
}

static void test_tampered_stream_leaves_nothing(void **state) {
    (void)state;
    check_failure("wm2", MANGLE_FLIP, VMENC_E_AUTH, VMENC_MIGRATION_FAIL_TAMPERED);
}

static void test_truncated_stream_leaves_nothing(void **state) {
    (void)state;
    check_failure("wm3", MANGLE_CUT, VMENC_E_TRUNCATED, VMENC_MIGRATION_FAIL_TRUNCATED);
}

static void test_stream_of_another_vm_leaves_nothing(void **state) {
    (void)state;
    /* authenticated, but its home stream names another VM */
    check_failure("wm4", MANGLE_OTHER_VM, VMENC_E_CONTEXT_MISMATCH, VMENC_MIGRATION_FAIL_NONE);
}

static void test_ready_failure_leaves_nothing(void **state) {
    (void)state;
    /* the token could not be handed over: nothing streamed */
    vmenc_vm *src = source_vm("wm5");
    sender x;
    uint8_t ho[VMENC_MIGRATION_HANDOVER_MAX];
    size_t ho_len = 0;
    sender_start(&x, src, MANGLE_READY_FAILS, ho, &ho_len);
    vmenc_workspace_migrate_receive_result res;
    vmenc_vm *vm = NULL;
    assert_int_equal(receive(&x, ALICE, ho, ho_len, &res, &vm), VMENC_E_IO);
    assert_false(res.stream_started);
    assert_nothing_left("wm5");
    assert_int_equal(audit_count("migration.receive_rollback", "wm5", "success", ALICE), 1);
    sender_end(&x);
    vmenc_vm_free(src);
}

typedef struct late_handover {
    const uint8_t *blob;   /* NULL: no handover comes */
    size_t len;
    bool home_was_there;   /* the home existed when the blob was asked for */
} late_handover;

static vmenc_status take_handover(void *ctx, uint8_t *buf, size_t cap, size_t *out_len) {
    late_handover *h = ctx;
    h->home_was_there = home_exists("wm9") || home_exists("wm10");
    if (h->blob == NULL)
        return VMENC_E_KMS_TIMEOUT;
    assert_true(h->len <= cap);
    memcpy(buf, h->blob, h->len);
    *out_len = h->len;
    return VMENC_OK;
}

static vmenc_status receive_late(sender *x, late_handover *h, vmenc_vm **out) {
    vmenc_workspace_migrate_receive_options ro = {.struct_size = sizeof(ro), .handover_fn = take_handover,
                                                  .handover_ctx = h, .fd = -1, .read_fn = wire_read,
                                                  .io_ctx = &x->w, .ready_fn = on_ready, .ready_ctx = x};
    return vmenc_workspace_migrate_receive(g_dst, ALICE, vmenc_vm_name(x->vm), &ro, NULL, out);
}

static void test_handover_asked_for_after_the_home(void **state) {
    (void)state;
    vmenc_vm *src = source_vm("wm9");
    sender x;
    uint8_t ho[VMENC_MIGRATION_HANDOVER_MAX];
    size_t ho_len = 0;
    sender_start(&x, src, MANGLE_NONE, ho, &ho_len);
    late_handover h = {.blob = ho, .len = ho_len};
    vmenc_vm *vm = NULL;
    OK(receive_late(&x, &h, &vm));
    assert_true(h.home_was_there);
    assert_string_equal(vmenc_vm_name(vm), "wm9");
    vmenc_vm_free(vm);
    sender_end(&x);
    vmenc_vm_free(src);
}

static void test_no_handover_leaves_nothing(void **state) {
    (void)state;
    vmenc_vm *src = source_vm("wm10");
    sender x;
    uint8_t ho[VMENC_MIGRATION_HANDOVER_MAX];
    size_t ho_len = 0;
    sender_start(&x, src, MANGLE_NONE, ho, &ho_len);
    late_handover h = {.blob = NULL};
    assert_int_equal(receive_late(&x, &h, NULL), VMENC_E_KMS_TIMEOUT);
    assert_true(h.home_was_there);
    assert_int_equal(x.ready_calls, 0);
    assert_nothing_left("wm10");
    assert_int_equal(audit_count("migration.receive_rollback", "wm10", "success", ALICE), 1);
    sender_end(&x);
    vmenc_vm_free(src);
}

static void test_denied_principal_creates_nothing(void **state) {
    (void)state;
    vmenc_vm *src = source_vm("wm6");
    sender x;
    uint8_t ho[VMENC_MIGRATION_HANDOVER_MAX];
    size_t ho_len = 0;
    sender_start(&x, src, MANGLE_NONE, ho, &ho_len);
    vmenc_workspace_migrate_receive_result res;
    vmenc_vm *vm = NULL;
    assert_int_equal(receive(&x, BOB, ho, ho_len, &res, &vm), VMENC_E_DENIED);
    assert_null(vm);
    assert_int_equal(x.ready_calls, 0); /* the sender never got a token */
    assert_nothing_left("wm6");
    assert_int_equal(audit_count("migration.receive_register", "wm6", "denied", BOB), 1);
    assert_int_equal(audit_count("migration.receive_rollback", "wm6", NULL, NULL), 0);
    sender_end(&x);
    vmenc_vm_free(src);
}

static void test_existing_home_is_not_touched(void **state) {
    (void)state;
    /* a home already on esx02's datastore is refused and kept; the
     * inventory object this receive added is removed again */
    vmenc_vm *src = source_vm("wm7");
    char home[1024], keep[1100];
    OK(vmenc_workspace_vm_home(g_dst, "wm7", home, sizeof(home)));
    assert_int_equal(mkdir(home, 0700), 0);
    snprintf(keep, sizeof(keep), "%s/precious", home);
    FILE *f = fopen(keep, "w");
    assert_non_null(f);
    fclose(f);
    sender x;
    uint8_t ho[VMENC_MIGRATION_HANDOVER_MAX];
    size_t ho_len = 0;
    sender_start(&x, src, MANGLE_NONE, ho, &ho_len);
    vmenc_workspace_migrate_receive_result res;
    assert_int_equal(receive(&x, ALICE, ho, ho_len, &res, NULL), VMENC_E_EXISTS);
    assert_int_equal(x.ready_calls, 0);
    assert_int_equal(access(keep, F_OK), 0);
    assert_false(in_inventory("wm7"));
    unlink(keep);
    rmdir(home);
    sender_end(&x);
    vmenc_vm_free(src);
}

static void test_object_known_before_is_kept(void **state) {
    (void)state;
    /* an inventory object that was there before the receive is not ours to remove */
    OK(vmenc_policy_add_object(vmenc_workspace_policy(g_dst), "wm8", VMENC_OBJ_VM, vmenc_workspace_folder(g_dst)));
    vmenc_vm *src = source_vm("wm8");
    sender x;
    uint8_t ho[VMENC_MIGRATION_HANDOVER_MAX];
    size_t ho_len = 0;
    sender_start(&x, src, MANGLE_CUT, ho, &ho_len);
    vmenc_workspace_migrate_receive_result res;
    assert_int_equal(receive(&x, ALICE, ho, ho_len, &res, NULL), VMENC_E_TRUNCATED);
    assert_false(home_exists("wm8"));
    assert_true(in_inventory("wm8"));
    sender_end(&x);
    vmenc_vm_free(src);
}

static void test_bad_arguments(void **state) {
    (void)state;
    uint8_t ho[8] = {0};
    vmenc_workspace_migrate_receive_options ro = {.struct_size = sizeof(ro), .handover = ho, .handover_len = 8,
                                                  .fd = -1, .ready_fn = on_ready};
    vmenc_workspace_migrate_receive_result res = {.struct_size = sizeof(res)};
    assert_int_equal(vmenc_workspace_migrate_receive(NULL, ALICE, "x", &ro, &res, NULL), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_workspace_migrate_receive(g_dst, ALICE, "x", NULL, &res, NULL), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_workspace_migrate_receive(g_dst, ALICE, "../x", &ro, &res, NULL), VMENC_E_BAD_PATH);
    ro.ready_fn = NULL;
    assert_int_equal(vmenc_workspace_migrate_receive(g_dst, ALICE, "x", &ro, &res, NULL), VMENC_E_INVALID_ARG);
    ro.ready_fn = on_ready;
    ro.struct_size = 4;
    assert_int_equal(vmenc_workspace_migrate_receive(g_dst, ALICE, "x", &ro, &res, NULL), VMENC_E_ABI_VERSION);
    ro.struct_size = sizeof(ro);
    res.struct_size = 4;
    assert_int_equal(vmenc_workspace_migrate_receive(g_dst, ALICE, "x", &ro, &res, NULL), VMENC_E_ABI_VERSION);
    /* a handover that does not parse: the object added for it goes again */
    assert_int_not_equal(vmenc_workspace_migrate_receive(g_dst, ALICE, "x", &ro, NULL, NULL), VMENC_OK);
    assert_false(home_exists("x"));
    assert_false(in_inventory("x"));
}

/* ---- vmenc_policy_remove_object ------------------------------------------------------- */

/* build makes the same inventory with or without |skip|; names longer than
 * the name map's in-slot head exercise its out-of-line names. */
static vmenc_policy *build(const char *skip) {
    static const char *const vms[] = {"vm-a", "a-long-virtual-machine-name-01", "vm-b",
                                      "a-long-virtual-machine-name-02", "vm-c"};
    vmenc_policy *p = NULL;
    OK(vmenc_policy_new("root", &p));
    OK(vmenc_policy_add_object(p, "dc", VMENC_OBJ_DATACENTER, "root"));
    OK(vmenc_policy_add_object(p, "vms", VMENC_OBJ_FOLDER, "dc"));
    OK(vmenc_policy_add_object(p, "cl", VMENC_OBJ_CLUSTER, "dc"));
    OK(vmenc_policy_add_user(p, "u1"));
    OK(vmenc_policy_add_user(p, "u2"));
    OK(vmenc_policy_grant(p, "u1", "vms", VMENC_ROLE_READ_ONLY, 1));
    for (size_t i = 0; i < sizeof(vms) / sizeof(vms[0]); i++) {
        if (i == 3) /* a host after some VMs, so its index moves too */
            OK(vmenc_policy_add_object(p, "esx-host-with-a-long-name", VMENC_OBJ_HOST, "cl"));
        OK(vmenc_policy_add_object(p, vms[i], VMENC_OBJ_VM, "vms"));
        OK(vmenc_policy_grant(p, "u2", vms[i], VMENC_ROLE_ADMIN, 0));
    }
    OK(vmenc_policy_add_object(p, "sub", VMENC_OBJ_FOLDER, "vms"));
    OK(vmenc_policy_add_object(p, "vm-in-sub", VMENC_OBJ_VM, "sub"));
    OK(vmenc_policy_grant(p, "u1", "sub", VMENC_ROLE_ADMIN, 1));
    OK(vmenc_policy_set_host_state(p, "esx-host-with-a-long-name", VMENC_HOST_PREPARED));
    OK(vmenc_policy_set_host_state(p, "esx-host-with-a-long-name", VMENC_HOST_SAFE));
    OK(vmenc_policy_set_vm_state(p, "vm-c", "esx-host-with-a-long-name", 1));
    OK(vmenc_policy_set_vm_state(p, "vm-in-sub", "esx-host-with-a-long-name", 0));
    if (skip != NULL)
        OK(vmenc_policy_remove_object(p, skip));
    return p;
}

static void assert_same_document(vmenc_policy *a, vmenc_policy *b) {
    uint8_t *ja = NULL, *jb = NULL;
    size_t la = 0, lb = 0;
    OK(vmenc_policy_save_json(a, &ja, &la));
    OK(vmenc_policy_save_json(b, &jb, &lb));
    assert_int_equal(la, lb);
    assert_memory_equal(ja, jb, la);
    vmenc_policy_buffer_free(ja);
    vmenc_policy_buffer_free(jb);
}

/* without_vm builds the inventory without |vm| from the start: the oracle
 * for removing it afterwards. */
static vmenc_policy *without_vm(const char *vm) {
    vmenc_policy *p = NULL;
    OK(vmenc_policy_new("root", &p));
    OK(vmenc_policy_add_object(p, "dc", VMENC_OBJ_DATACENTER, "root"));
    OK(vmenc_policy_add_object(p, "vms", VMENC_OBJ_FOLDER, "dc"));
    OK(vmenc_policy_add_object(p, "cl", VMENC_OBJ_CLUSTER, "dc"));
    OK(vmenc_policy_add_user(p, "u1"));
    OK(vmenc_policy_add_user(p, "u2"));
    OK(vmenc_policy_grant(p, "u1", "vms", VMENC_ROLE_READ_ONLY, 1));
    static const char *const vms[] = {"vm-a", "a-long-virtual-machine-name-01", "vm-b",
                                      "a-long-virtual-machine-name-02", "vm-c"};
    for (size_t i = 0; i < sizeof(vms) / sizeof(vms[0]); i++) {
        if (i == 3)
            OK(vmenc_policy_add_object(p, "esx-host-with-a-long-name", VMENC_OBJ_HOST, "cl"));
        if (strcmp(vms[i], vm) == 0)
            continue;
        OK(vmenc_policy_add_object(p, vms[i], VMENC_OBJ_VM, "vms"));
        OK(vmenc_policy_grant(p, "u2", vms[i], VMENC_ROLE_ADMIN, 0));
    }
    OK(vmenc_policy_add_object(p, "sub", VMENC_OBJ_FOLDER, "vms"));
    if (strcmp(vm, "vm-in-sub") != 0)
        OK(vmenc_policy_add_object(p, "vm-in-sub", VMENC_OBJ_VM, "sub"));
    OK(vmenc_policy_grant(p, "u1", "sub", VMENC_ROLE_ADMIN, 1));
    OK(vmenc_policy_set_host_state(p, "esx-host-with-a-long-name", VMENC_HOST_PREPARED));
    OK(vmenc_policy_set_host_state(p, "esx-host-with-a-long-name", VMENC_HOST_SAFE));
    if (strcmp(vm, "vm-c") != 0)
        OK(vmenc_policy_set_vm_state(p, "vm-c", "esx-host-with-a-long-name", 1));
    if (strcmp(vm, "vm-in-sub") != 0)
        OK(vmenc_policy_set_vm_state(p, "vm-in-sub", "esx-host-with-a-long-name", 0));
    return p;
}

static void test_remove_object(void **state) {
    (void)state;
    static const char *const each[] = {"vm-a", "a-long-virtual-machine-name-01", "vm-b",
                                       "a-long-virtual-machine-name-02", "vm-c", "vm-in-sub"};
    for (size_t i = 0; i < sizeof(each) / sizeof(each[0]); i++) {
        vmenc_policy *removed = build(each[i]);
        vmenc_policy *oracle = without_vm(each[i]);
        assert_same_document(removed, oracle);
        /* every other name still resolves, and decisions still walk up */
        for (size_t j = 0; j < sizeof(each) / sizeof(each[0]); j++) {
            int has = -1;
            vmenc_status st = vmenc_policy_has_privilege(removed, "u1", each[j], VMENC_PRIV_SYSTEM_VIEW, &has);
            assert_int_equal(st, i == j ? VMENC_E_NOT_FOUND : VMENC_OK);
            if (i != j)
                assert_int_equal(has, 1);
        }
        /* the name can be used again */
        OK(vmenc_policy_add_object(removed, each[i], VMENC_OBJ_VM, "vms"));
        vmenc_policy_free(removed);
        vmenc_policy_free(oracle);
    }
}

static void test_remove_object_refusals(void **state) {
    (void)state;
    vmenc_policy *p = build(NULL);
    assert_int_equal(vmenc_policy_remove_object(p, "nope"), VMENC_E_NOT_FOUND);
    assert_int_equal(vmenc_policy_remove_object(p, "sub"), VMENC_E_INVALID_ARG);   /* a folder */
    assert_int_equal(vmenc_policy_remove_object(p, "esx-host-with-a-long-name"), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_remove_object(p, "root"), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_remove_object(p, ""), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_remove_object(NULL, "vm-a"), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_remove_object(p, NULL), VMENC_E_INVALID_ARG);
    /* nothing changed */
    vmenc_policy *q = build(NULL);
    assert_same_document(p, q);
    vmenc_policy_free(p);
    vmenc_policy_free(q);
}

int main(void) {
    const struct CMUnitTest policy_tests[] = {
        cmocka_unit_test(test_remove_object),
        cmocka_unit_test(test_remove_object_refusals),
    };
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_receive_registers_the_vm),
        cmocka_unit_test(test_tampered_stream_leaves_nothing),
        cmocka_unit_test(test_truncated_stream_leaves_nothing),
        cmocka_unit_test(test_stream_of_another_vm_leaves_nothing),
        cmocka_unit_test(test_ready_failure_leaves_nothing),
        cmocka_unit_test(test_handover_asked_for_after_the_home),
        cmocka_unit_test(test_no_handover_leaves_nothing),
        cmocka_unit_test(test_denied_principal_creates_nothing),
        cmocka_unit_test(test_existing_home_is_not_touched),
        cmocka_unit_test(test_object_known_before_is_kept),
        cmocka_unit_test(test_bad_arguments),
    };
    if (vmenc_init() != VMENC_OK)
        return 1;
    int rc = cmocka_run_group_tests_name("policy_remove_object", policy_tests, NULL, NULL);
    return rc | cmocka_run_group_tests_name("workspace_migrate_receive", tests, setup, teardown);
}
