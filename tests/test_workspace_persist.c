/*
 * tests/test_workspace_persist.c - the workspace's policy document is made
 * durable by the library and is authenticated (issue 19 item 3, issue 18
 * item 4; docs/workspace.md):
 *   - a VM created, a user granted, a disk added through the C API with no
 *     save call are found by a fresh open after the process that made them
 *     exited without freeing anything (fork: the writer _exits);
 *   - a byte flipped anywhere in policy.json, a policy.json from another
 *     workspace, a plain (unsealed) JSON are refused at open with
 *     VMENC_E_AUTH naming the file, and the refusal is audited;
 *   - the re-seal is refused (and audited) for a principal that is not an
 *     administrator of the vouched document, and works (audited with the
 *     old and new hashes) for one that is;
 *   - a failed write leaves the policy in memory as it was.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmenc/vmenc.h"

#define PASS "persist test passphrase"
#define MIB (1024u * 1024u)

/* ---- helpers ------------------------------------------------------------------ */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_rf(const char *p) { (void)nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static char *fresh_dir(void) {
    char tmpl[] = "/tmp/vmenc-persist-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    char *ws = malloc(strlen(d) + 4);
    assert_non_null(ws);
    sprintf(ws, "%s/ws", d);
    return ws;
}

static void drop_dir(char *ws) {
    char *parent = strdup(ws);
    *strrchr(parent, '/') = '\0';
    rm_rf(parent);
    free(parent);
    free(ws);
}

static void create_ws(const char *dir) {
    vmenc_workspace_create_options co = {.struct_size = sizeof(co), .passphrase = (const uint8_t *)PASS,
                                         .passphrase_len = strlen(PASS), .admin = "alice", .host_id = "esx01",
                                         .kdf_opslimit = 1, .kdf_memlimit_kib = 8192,
                                         .flags = VMENC_WORKSPACE_CREATE_DEFAULT_POLICY};
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_status st = vmenc_workspace_create(dir, &co, &err);
    if (st != VMENC_OK)
        fail_msg("create: %s: %s", vmenc_status_name(st), err.message);
}

static vmenc_workspace_open_options open_opts(uint32_t flags) {
    vmenc_workspace_open_options oo = {.struct_size = sizeof(oo), .passphrase = (const uint8_t *)PASS,
                                       .passphrase_len = strlen(PASS), .flags = flags};
    return oo;
}

static vmenc_status open_ws(const char *dir, vmenc_workspace_error *err, vmenc_workspace **out) {
    vmenc_workspace_open_options oo = open_opts(0);
    return vmenc_workspace_open(dir, &oo, err, out);
}

static vmenc_workspace *must_open(const char *dir) {
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_workspace *ws = NULL;
    vmenc_status st = open_ws(dir, &err, &ws);
    if (st != VMENC_OK)
        fail_msg("open: %s: %s: %s", vmenc_status_name(st), err.file, err.message);
    return ws;
}

static char *path_in(const char *dir, const char *name) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    assert_non_null(p);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static uint8_t *slurp(const char *path, size_t *out_len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 4096;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    buf[len] = '\0';
    *out_len = len;
    return buf;
}

static void spit(const char *path, const uint8_t *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void sha256_hex(const uint8_t *data, size_t len, char out[65]) {
    uint8_t h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, data, len);
    for (size_t i = 0; i < sizeof(h); i++)
        sprintf(out + 2 * i, "%02x", h[i]);
}

/* audit_has: does the workspace's audit log hold a record with all the
 * given fragments on one line? (The log is JSON lines; the chain itself is
 * checked by vmenc_workspace_audit_verify on every open that follows.) */
static bool audit_has(const char *dir, const char *a, const char *b, const char *c) {
    char *p = path_in(dir, "audit.log");
    size_t len = 0;
    char *log = (char *)slurp(p, &len);
    free(p);
    bool found = false;
    for (char *line = strtok(log, "\n"); line != NULL && !found; line = strtok(NULL, "\n"))
        found = strstr(line, a) && (b == NULL || strstr(line, b)) && (c == NULL || strstr(line, c));
    free(log);
    return found;
}

/* expect_auth: open fails with VMENC_E_AUTH, the error names policy.json
 * and says how to recover. */
static void expect_auth(const char *dir) {
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_workspace *ws = NULL;
    vmenc_status st = open_ws(dir, &err, &ws);
    assert_int_equal(st, VMENC_E_AUTH);
    assert_null(ws);
    assert_int_equal(err.status, VMENC_E_AUTH);
    size_t fl = strlen(err.file);
    assert_true(fl >= strlen("/policy.json") && strcmp(err.file + fl - strlen("/policy.json"), "/policy.json") == 0);
    assert_non_null(strstr(err.message, "vmenc policy reseal"));
}

static vmenc_status reseal(const char *dir, const char *who, vmenc_workspace_error *err,
                           vmenc_workspace_reseal_result *r) {
    vmenc_workspace_open_options oo = open_opts(0);
    return vmenc_workspace_reseal_policy(dir, &oo, who, err, r);
}

/* ---- persistence -------------------------------------------------------------------- */

/* changes makes the changes in a child process that then exits without
 * freeing anything or saving: whatever survives was written by the calls
 * themselves. Returns 0 or the failing step. */
static int changes(const char *dir) {
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_workspace *ws = NULL;
    if (open_ws(dir, &err, &ws) != VMENC_OK)
        return 1;
    vmenc_policy *p = vmenc_workspace_policy(ws);
    if (vmenc_policy_add_user(p, "carol") != VMENC_OK)
        return 2;
    char home[1024];
    if (vmenc_workspace_vm_home(ws, "web01", home, sizeof(home)) != VMENC_OK)
        return 3;
    vmenc_vm_create_options o = {.struct_size = sizeof(o), .principal = "alice", .home_dir = home, .name = "web01",
                                 .folder = vmenc_workspace_folder(ws), .storage_policy = "VM Encryption Policy"};
    vmenc_vm *vm = NULL;
    if (vmenc_vm_create(vmenc_workspace_host(ws), &o, &vm) != VMENC_OK)
        return 4;
    if (vmenc_policy_grant(p, "carol", "web01", VMENC_ROLE_READ_ONLY, 1) != VMENC_OK)
        return 5;
    vmenc_disk_create_options d = {.struct_size = sizeof(d), .capacity = MIB, .sector_size = 512};
    if (vmenc_vm_add_disk(vm, "alice", &d, NULL, 0) != VMENC_OK)
        return 6;
    return 0; /* no save, no free: the caller _exits */
}

static void test_persist_across_processes(void **state) {
    (void)state;
    char *dir = fresh_dir();
    create_ws(dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(changes(dir));
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* A fresh open, in this process, which never opened the workspace. */
    vmenc_workspace *ws = must_open(dir);
    vmenc_policy *p = vmenc_workspace_policy(ws);
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_VIEW, .vm = "web01"};
    vmenc_policy_decision dec = {.struct_size = sizeof(dec)};
    assert_int_equal(vmenc_policy_check(p, "carol", &rq, &dec), VMENC_OK); /* user, VM and grant */
    assert_true(dec.allowed);
    vmenc_host_crypto_state hs;
    assert_int_equal(vmenc_policy_get_host_state(p, "esx01", &hs), VMENC_OK);
    assert_int_equal(hs, VMENC_HOST_SAFE); /* switched by the encrypted VM's creation */
    vmenc_vm *vm = NULL;
    assert_int_equal(vmenc_workspace_open_vm(ws, "alice", "web01", &vm), VMENC_OK);
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    assert_int_equal(vmenc_vm_get_info(vm, &info), VMENC_OK);
    assert_true(info.encrypted);
    assert_int_equal(info.num_disks, 1);
    vmenc_vm_free(vm);
    /* The save call is a no-op now, kept for compatibility. */
    assert_int_equal(vmenc_workspace_save_policy(ws), VMENC_OK);
    assert_int_equal(vmenc_workspace_save_policy(NULL), VMENC_E_INVALID_ARG);
    vmenc_workspace_free(ws);
    drop_dir(dir);
}

/* A failed write changes nothing, in memory or on disk: policy.json is
 * replaced by a non-empty directory, so the rename onto it fails. */
static void test_failed_write_rolls_back(void **state) {
    (void)state;
    char *dir = fresh_dir();
    create_ws(dir);
    vmenc_workspace *ws = must_open(dir);
    vmenc_policy *p = vmenc_workspace_policy(ws);
    assert_int_equal(vmenc_policy_add_user(p, "bob"), VMENC_OK);
    char *pol = path_in(dir, "policy.json"), *aside = path_in(dir, "policy.aside");
    size_t before_len = 0;
    uint8_t *before = slurp(pol, &before_len);
    assert_int_equal(rename(pol, aside), 0);
    assert_int_equal(mkdir(pol, 0700), 0);
    char *blocker = path_in(pol, "x");
    spit(blocker, (const uint8_t *)"x", 1);

    vmenc_status st = vmenc_policy_add_user(p, "dave");
    assert_int_not_equal(st, VMENC_OK);
    st = vmenc_policy_grant(p, "bob", "root", VMENC_ROLE_ADMIN, 1);
    assert_int_not_equal(st, VMENC_OK);
    uint8_t *now = NULL;
    size_t now_len = 0;
    assert_int_equal(vmenc_policy_save_json(p, &now, &now_len), VMENC_OK);
    assert_null(strstr((const char *)now, "dave"));
    assert_null(strstr((const char *)now, "\"principal\": \"bob\""));
    assert_non_null(strstr((const char *)now, "\"bob\""));
    vmenc_policy_buffer_free(now);

    /* Put the document back: the next change is written, and only it. */
    assert_int_equal(unlink(blocker), 0);
    assert_int_equal(rmdir(pol), 0);
    assert_int_equal(rename(aside, pol), 0);
    size_t same_len = 0;
    uint8_t *same = slurp(pol, &same_len);
    assert_int_equal(same_len, before_len);
    assert_memory_equal(same, before, before_len);
    assert_int_equal(vmenc_policy_add_user(p, "erin"), VMENC_OK);
    vmenc_workspace_free(ws);
    ws = must_open(dir);
    int has = 1;
    assert_int_equal(vmenc_policy_add_user(vmenc_workspace_policy(ws), "erin"), VMENC_E_EXISTS);
    assert_int_equal(vmenc_policy_has_privilege(vmenc_workspace_policy(ws), "bob", "root",
                                                VMENC_PRIV_CRYPTO_ACCESS, &has),
                     VMENC_OK);
    assert_false(has);
    assert_int_equal(vmenc_policy_add_user(vmenc_workspace_policy(ws), "dave"), VMENC_OK); /* was never added */
    vmenc_workspace_free(ws);
    free(before);
    free(same);
    free(blocker);
    free(pol);
    free(aside);
    drop_dir(dir);
}

/* ---- tampering ----------------------------------------------------------------------- */

/* Every single byte flipped - in the JSON, in the seal line's generation,
 * in its MAC - is refused. (Positions spread over the whole file.) */
static void test_flipped_byte_refused(void **state) {
    (void)state;
    char *dir = fresh_dir();
    create_ws(dir);
    char *pol = path_in(dir, "policy.json");
    size_t len = 0;
    uint8_t *good = slurp(pol, &len);
    const char *trailer = strstr((const char *)good, "#vmenc-seal v1 generation=");
    assert_non_null(trailer);
    size_t t = (size_t)(trailer - (const char *)good);
    size_t gen_at = t + strlen("#vmenc-seal v1 generation=");
    size_t mac_at = (size_t)(strstr(trailer, "mac=") - (const char *)good) + 4;
    size_t positions[] = {0, 20, len / 3, len / 2, t - 2, gen_at, mac_at, len - 2};
    for (size_t i = 0; i < sizeof(positions) / sizeof(positions[0]); i++) {
        uint8_t *bad = malloc(len);
        assert_non_null(bad);
        memcpy(bad, good, len);
        /* stay printable so the seal line still parses where it should */
        bad[positions[i]] = bad[positions[i]] == '1' ? '2' : (bad[positions[i]] == ' ' ? '\t' : '1');
        spit(pol, bad, len);
        expect_auth(dir);
        free(bad);
    }
    /* The refusal is in the audit log. */
    assert_true(audit_has(dir, "\"op\":\"policy.verify\"", "\"status\":-300", "policy.json"));
    spit(pol, good, len);
    vmenc_workspace_free(must_open(dir));
    free(good);
    free(pol);
    drop_dir(dir);
}

/* A sealed document from another workspace - here with the very same
 * content, since both were created alike - does not open. */
static void test_foreign_document_refused(void **state) {
    (void)state;
    char *a = fresh_dir(), *b = fresh_dir();
    create_ws(a);
    create_ws(b);
    char *pa = path_in(a, "policy.json"), *pb = path_in(b, "policy.json");
    size_t la = 0, lb = 0;
    uint8_t *da = slurp(pa, &la), *db = slurp(pb, &lb);
    /* same JSON, different seals */
    const char *ta = strstr((const char *)da, "#vmenc-seal"), *tb = strstr((const char *)db, "#vmenc-seal");
    assert_int_equal(ta - (const char *)da, tb - (const char *)db);
    assert_memory_equal(da, db, (size_t)(ta - (const char *)da));
    assert_true(strcmp(ta, tb) != 0);
    spit(pb, da, la);
    expect_auth(b);
    free(da);
    free(db);
    free(pa);
    free(pb);
    drop_dir(a);
    drop_dir(b);
}

/* A plain JSON document (what older versions wrote, or a hand-made one) is
 * refused, and says it is not sealed. */
static void test_unsealed_refused(void **state) {
    (void)state;
    char *dir = fresh_dir();
    create_ws(dir);
    char *pol = path_in(dir, "policy.json");
    size_t len = 0;
    uint8_t *doc = slurp(pol, &len);
    char *t = strstr((char *)doc, "#vmenc-seal");
    assert_non_null(t);
    spit(pol, doc, (size_t)((uint8_t *)t - doc));
    expect_auth(dir);
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_workspace *ws = NULL;
    assert_int_equal(open_ws(dir, &err, &ws), VMENC_E_AUTH);
    assert_non_null(strstr(err.message, "not sealed"));
    free(doc);
    free(pol);
    drop_dir(dir);
}

/* ---- re-seal ------------------------------------------------------------------------- */

static void test_reseal(void **state) {
    (void)state;
    char *dir = fresh_dir();
    create_ws(dir);
    vmenc_workspace *ws = must_open(dir);
    vmenc_policy *p = vmenc_workspace_policy(ws);
    assert_int_equal(vmenc_policy_add_user(p, "bob"), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "bob", "root", VMENC_ROLE_NO_CRYPTO_ADMIN, 1), VMENC_OK);
    vmenc_workspace_free(ws);

    /* The operator edits the document by hand (adds a user). */
    char *pol = path_in(dir, "policy.json");
    size_t len = 0;
    uint8_t *doc = slurp(pol, &len);
    char *users = strstr((char *)doc, "\"users\": [");
    assert_non_null(users);
    size_t at = (size_t)(users - (char *)doc) + strlen("\"users\": [");
    const char *ins = "\n    {\"name\": \"frank\"},";
    uint8_t *edited = malloc(len + strlen(ins));
    assert_non_null(edited);
    memcpy(edited, doc, at);
    memcpy(edited + at, ins, strlen(ins));
    memcpy(edited + at + strlen(ins), doc + at, len - at);
    size_t edited_len = len + strlen(ins);
    spit(pol, edited, edited_len);
    char edited_hash[65];
    sha256_hex(edited, edited_len, edited_hash);
    expect_auth(dir);

    /* Not an administrator of the document: refused, audited, nothing written. */
    const char *who[] = {"bob", "frank", "nobody"};
    for (size_t i = 0; i < 3; i++) {
        vmenc_workspace_error err = {.struct_size = sizeof(err)};
        vmenc_workspace_reseal_result r = {.struct_size = sizeof(r)};
        assert_int_equal(reseal(dir, who[i], &err, &r), VMENC_E_DENIED);
        assert_int_equal(err.status, VMENC_E_DENIED);
        assert_non_null(strstr(err.file, "policy.json"));
        char principal[64];
        snprintf(principal, sizeof(principal), "\"principal\":\"%s\"", who[i]);
        assert_true(audit_has(dir, "\"op\":\"policy.reseal\"", principal, "\"outcome\":\"denied\""));
        size_t now_len = 0;
        uint8_t *now = slurp(pol, &now_len);
        assert_int_equal(now_len, edited_len);
        assert_memory_equal(now, edited, edited_len);
        free(now);
        expect_auth(dir);
    }

    /* The administrator vouches for it. */
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_workspace_reseal_result r = {.struct_size = sizeof(r)};
    assert_int_equal(reseal(dir, "alice", &err, &r), VMENC_OK);
    assert_string_equal(r.old_sha256, edited_hash);
    assert_true(r.was_sealed);
    assert_false(r.seal_was_valid);
    assert_int_equal(r.generation, 4); /* create 1, bob 2, grant 3 */
    size_t new_len = 0;
    uint8_t *resealed = slurp(pol, &new_len);
    char new_hash[65];
    sha256_hex(resealed, new_len, new_hash);
    assert_string_equal(r.new_sha256, new_hash);
    assert_true(audit_has(dir, "\"op\":\"policy.reseal\"", "\"principal\":\"alice\"", edited_hash));
    assert_true(audit_has(dir, "\"op\":\"policy.reseal\"", "\"outcome\":\"success\"", new_hash));

    ws = must_open(dir);
    assert_int_equal(vmenc_policy_add_user(vmenc_workspace_policy(ws), "frank"), VMENC_E_EXISTS);
    vmenc_audit_verify_result vr = {.struct_size = sizeof(vr)};
    assert_int_equal(vmenc_workspace_audit_verify(ws, NULL, &vr), VMENC_OK);
    vmenc_workspace_free(ws);

    /* An unsealed document is re-sealed the same way. */
    char *t = strstr((char *)resealed, "#vmenc-seal");
    spit(pol, resealed, (size_t)((uint8_t *)t - resealed));
    expect_auth(dir);
    memset(&r, 0, sizeof(r));
    r.struct_size = sizeof(r);
    assert_int_equal(reseal(dir, "alice", &err, &r), VMENC_OK);
    assert_false(r.was_sealed);
    assert_int_equal(r.generation, 1);
    vmenc_workspace_free(must_open(dir));

    /* Re-seal cannot be used without the key provider. */
    vmenc_workspace_open_options bad = open_opts(0);
    bad.passphrase = (const uint8_t *)"wrong";
    bad.passphrase_len = 5;
    assert_int_not_equal(vmenc_workspace_reseal_policy(dir, &bad, "alice", &err, NULL), VMENC_OK);

    free(resealed);
    free(edited);
    free(doc);
    free(pol);
    drop_dir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_persist_across_processes),
        cmocka_unit_test(test_failed_write_rolls_back),
        cmocka_unit_test(test_flipped_byte_refused),
        cmocka_unit_test(test_foreign_document_refused),
        cmocka_unit_test(test_unsealed_refused),
        cmocka_unit_test(test_reseal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
