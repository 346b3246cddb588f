/*
 * tests/test_control.c - the control store (lib/control/): the authority
 * record's codec (round trip, canonical form, every truncation), the local
 * backend's MAC (every byte flipped, a record renamed to another VM, the
 * wrong key), compare-and-swap (a stale revision loses, also when the
 * winner is another real process; concurrent writers in two processes lose
 * no update), the sweep of killed writers' temporaries at open (never a
 * live writer's), the intent-first helpers and the ops-table size rule. The
 * backend contract lives in tests/support/ctl_contract.c, shared with the
 * etcd backend's tests/test_control_etcd.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control/control.h"
#include "core/fs.h"
#include "core/lock.h"
#include "ctl_contract.h"
#include "vmenc/vmenc.h"

#define k_uuid ctl_contract_uuid
#define k_uuid2 ctl_contract_uuid2

typedef struct {
    char dir[64];
    uint8_t key[CTL_MAC_KEY_BYTES];
    ctl_store *store;
} fx;

static int setup(void **state) {
    assert_int_equal(vmenc_init(), VMENC_OK);
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/vmenc-ctl-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    for (size_t i = 0; i < sizeof(f->key); i++)
        f->key[i] = (uint8_t)(0xA0 + i);
    assert_int_equal(ctl_local_new(f->dir, f->key, sizeof(f->key), true, &f->store), VMENC_OK);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    ctl_store_free(f->store);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* ---- codec ------------------------------------------------------------------------- */

static void test_codec_round_trip(void **state) {
    (void)state;
    ctl_vm_record r, back;
    ctl_contract_full_record(&r, k_uuid);
    uint8_t *bin = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    assert_int_equal(ctl_record_encode(&r, &bin, &len), VMENC_OK);
    assert_int_equal(ctl_record_decode(bin, len, &back), VMENC_OK);
    assert_string_equal(back.uuid, k_uuid);
    assert_string_equal(back.facts.name, "web-01");
    assert_true(back.facts.encrypted);
    assert_int_equal(back.facts.key_generation, 7);
    assert_memory_equal(back.facts.key_hash, r.facts.key_hash, CTL_HASH_BYTES);
    assert_string_equal(back.facts.kek_id, "kek-0001");
    assert_string_equal(back.facts.storage_policy, "VM Encryption Policy");
    assert_int_equal(back.facts.num_disks, 2);
    assert_true(back.facts.disks[0].has_dek_hash);
    assert_false(back.facts.disks[1].encrypted);
    assert_int_equal(back.op.kind, CTL_OP_REKEY_DEEP);
    assert_int_equal(back.op.direction, CTL_DIR_ROLLBACK);
    assert_int_equal(back.op.target_generation, 8);
    assert_string_equal(back.op.target_policy, "Datastore Default");
    assert_int_equal(back.op.disks[0].cvt_id, 0x0123456789abcdefULL);
    assert_true(back.op.disks[0].has_prev);
    assert_false(back.op.disks[0].prev_has_target_dek);
    assert_int_equal(back.op.disks[0].prev_cvt_id, 42);
    assert_true(back.op.has_prev_target_key);
    assert_memory_equal(back.op.prev_target_key_hash, r.op.prev_target_key_hash, CTL_HASH_BYTES);
    assert_int_equal(back.revision, 5);
    assert_int_equal(ctl_record_encode(&back, &again, &len2), VMENC_OK);
    assert_int_equal(len, len2);
    assert_memory_equal(bin, again, len);

    /* every truncation and one byte of trailing data are refused */
    ctl_vm_record tmp;
    for (size_t n = 0; n < len; n++)
        assert_int_not_equal(ctl_record_decode(bin, n, &tmp), VMENC_OK);
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, bin, len);
    longer[len] = 0;
    assert_int_equal(ctl_record_decode(longer, len + 1, &tmp), VMENC_E_TRAILING_DATA);
    free(longer);
    free(bin);
    free(again);
}

static void test_codec_rules(void **state) {
    (void)state;
    ctl_vm_record r;
    uint8_t *bin = NULL;
    size_t len = 0;
    /* a plain VM has no key hash and no KEK */
    assert_int_equal(ctl_vm_record_init(&r, k_uuid, "plain"), VMENC_OK);
    r.facts.key_hash[0] = 1;
    assert_int_equal(ctl_record_encode(&r, &bin, &len), VMENC_E_INVALID_ARG);
    /* an encrypted one names its KEK */
    r.facts.encrypted = true;
    assert_int_equal(ctl_record_encode(&r, &bin, &len), VMENC_E_INVALID_ARG);
    /* no operation: no direction (targets alone are a write in flight) */
    assert_int_equal(ctl_vm_record_init(&r, k_uuid, "plain"), VMENC_OK);
    r.op.direction = CTL_DIR_ROLLBACK;
    assert_int_equal(ctl_record_encode(&r, &bin, &len), VMENC_E_INVALID_ARG);
    r.op.direction = CTL_DIR_FORWARD;
    r.op.has_target_key = true;
    assert_int_equal(ctl_record_encode(&r, &bin, &len), VMENC_OK);
    free(bin);
    /* a target generation without a target key */
    r.op.has_target_key = false;
    r.op.target_generation = 1;
    assert_int_equal(ctl_record_encode(&r, &bin, &len), VMENC_E_INVALID_ARG);
    /* a previous target hash without its flag */
    ctl_contract_full_record(&r, k_uuid);
    r.op.disks[0].prev_target_dek_hash[3] = 1;
    assert_int_equal(ctl_record_encode(&r, &bin, &len), VMENC_E_INVALID_ARG);
    /* duplicate disks */
    ctl_contract_full_record(&r, k_uuid);
    snprintf(r.facts.disks[1].disk_id, sizeof(r.facts.disks[1].disk_id), "scsi0:0");
    assert_int_equal(ctl_record_encode(&r, &bin, &len), VMENC_E_INVALID_ARG);
    /* bad UUID and name */
    assert_int_equal(ctl_vm_record_init(&r, "not-a-uuid", "x"), VMENC_E_INVALID_ARG);
    assert_int_equal(ctl_vm_record_init(&r, k_uuid, ""), VMENC_E_INVALID_ARG);
    assert_int_equal(ctl_vm_record_init(&r, k_uuid, "a\nb"), VMENC_E_INVALID_ARG);

    /* an unknown flag bit in stored bytes is refused */
    ctl_contract_full_record(&r, k_uuid);
    assert_int_equal(ctl_record_encode(&r, &bin, &len), VMENC_OK);
    size_t flags_at = 4 + 1 + 1 + CTL_UUID_LEN + 8 + 1 + strlen("web-01");
    assert_int_equal(bin[flags_at], 1);
    bin[flags_at] = 3;
    ctl_vm_record tmp;
    assert_int_equal(ctl_record_decode(bin, len, &tmp), VMENC_E_PARSE);
    bin[flags_at] = 1;
    bin[0] = 'X';
    assert_int_equal(ctl_record_decode(bin, len, &tmp), VMENC_E_BAD_MAGIC);
    bin[0] = 'V';
    bin[4] = 3;
    assert_int_equal(ctl_record_decode(bin, len, &tmp), VMENC_E_BAD_VERSION);
    /* a record without state files is version 1: labelled 2, it lacks the list */
    bin[4] = 2;
    assert_int_not_equal(ctl_record_decode(bin, len, &tmp), VMENC_OK);
    free(bin);
}

/* Version 2: the state files' IDs. A record without them stays version 1
 * byte for byte (old records read and write back unchanged); one with
 * them is version 2 and round-trips; the list's field rules hold. */
static void test_codec_state_files(void **state) {
    (void)state;
    ctl_vm_record r, back;
    uint8_t *bin = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    ctl_contract_full_record(&r, k_uuid);
    assert_int_equal(ctl_record_encode(&r, &bin, &len), VMENC_OK);
    assert_int_equal(bin[4], 1);
    size_t v1_len = len;
    free(bin);
    r.facts.files_anchored = true;
    r.facts.num_files = 2;
    r.facts.files[0].cls = 1; /* NVRAM */
    r.facts.files[0].has_id = true;
    memset(r.facts.files[0].file_id, 0x66, CTL_FILE_ID_BYTES);
    r.facts.files[1].cls = 3; /* a snapshot's state, being made */
    r.facts.files[1].index = 7;
    r.facts.files[1].has_next = true;
    memset(r.facts.files[1].next_id, 0x77, CTL_FILE_ID_BYTES);
    assert_int_equal(ctl_record_encode(&r, &bin, &len), VMENC_OK);
    assert_int_equal(bin[4], 2);
    assert_int_equal(len, v1_len + 2 + 2 * (1 + 4 + 1 + 2 * CTL_FILE_ID_BYTES));
    assert_int_equal(ctl_record_decode(bin, len, &back), VMENC_OK);
    assert_true(back.facts.files_anchored);
    assert_int_equal(back.facts.num_files, 2);
    assert_int_equal(back.facts.files[1].index, 7);
    assert_true(back.facts.files[1].has_next && !back.facts.files[1].has_id);
    assert_memory_equal(back.facts.files[0].file_id, r.facts.files[0].file_id, CTL_FILE_ID_BYTES);
    assert_int_equal(ctl_record_encode(&back, &again, &len2), VMENC_OK);
    assert_int_equal(len2, len);
    assert_memory_equal(again, bin, len);
    free(again);
    /* cut short, or a trailing byte */
    assert_int_not_equal(ctl_record_decode(bin, len - 1, &back), VMENC_OK);
    free(bin);
    /* rules: an entry with neither ID, an ID without its flag, a class
     * that is not a sealed state file, the same file twice */
    ctl_vm_record bad = r;
    bad.facts.files[1].has_next = false;
    assert_int_equal(ctl_record_encode(&bad, &bin, &len), VMENC_E_INVALID_ARG);
    bad = r;
    bad.facts.files[1].file_id[0] = 1;
    assert_int_equal(ctl_record_encode(&bad, &bin, &len), VMENC_E_INVALID_ARG);
    bad = r;
    bad.facts.files[0].cls = 5;
    assert_int_equal(ctl_record_encode(&bad, &bin, &len), VMENC_E_INVALID_ARG);
    bad = r;
    bad.facts.files[1].cls = 1;
    bad.facts.files[1].index = 0;
    assert_int_equal(ctl_record_encode(&bad, &bin, &len), VMENC_E_INVALID_ARG);
    /* version 2 with an empty list and not anchored is version 1's record
     * in another encoding: refused (one encoding per record) */
    bad = r;
    bad.facts.num_files = 0;
    assert_int_equal(ctl_record_encode(&bad, &bin, &len), VMENC_OK);
    assert_int_equal(bin[4], 2);
    bin[len - 2] = 0; /* the anchored flag: 0, count 0 */
    assert_int_equal(ctl_record_decode(bin, len, &back), VMENC_E_PARSE);
    free(bin);
}

static void test_key_record_hash(void **state) {
    (void)state;
    uint8_t kek_bytes[32], h1[CTL_HASH_BYTES], h2[CTL_HASH_BYTES], h3[CTL_HASH_BYTES];
    memset(kek_bytes, 7, sizeof(kek_bytes));
    vmenc_kek *kek = NULL;
    vmenc_dek *dek = NULL;
    assert_int_equal(vmenc_kek_new_from_bytes(kek_bytes, sizeof(kek_bytes), &kek), VMENC_OK);
    assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
    vmenc_wrap_context ctx = {.struct_size = sizeof(ctx), .vm_uuid = k_uuid, .disk_id = "", .purpose = "vm-home"};
    vmenc_wrapped_key *a = NULL, *b = NULL;
    assert_int_equal(vmenc_dek_wrap(dek, kek, VMENC_WRAP_AES256_GCM, "p", "k1", &ctx, &a), VMENC_OK);
    assert_int_equal(vmenc_dek_wrap(dek, kek, VMENC_WRAP_AES256_GCM, "p", "k1", &ctx, &b), VMENC_OK);
    assert_int_equal(ctl_key_record_hash(a, h1), VMENC_OK);
    assert_int_equal(ctl_key_record_hash(a, h2), VMENC_OK);
    assert_int_equal(ctl_key_record_hash(b, h3), VMENC_OK);
    assert_memory_equal(h1, h2, CTL_HASH_BYTES);
    /* the same key wrapped again (new nonce) is another record */
    assert_memory_not_equal(h1, h3, CTL_HASH_BYTES);
    vmenc_wrapped_key_free(a);
    vmenc_wrapped_key_free(b);
    vmenc_dek_free(dek);
    vmenc_kek_free(kek);
}

/* ---- the local backend ------------------------------------------------------------------ */

/* The backend contract (tests/support/ctl_contract.c), on the local
 * backend: another handle is another ctl_local_new on the directory. */
static vmenc_status local_open(void *ctx, ctl_store **out) {
    fx *f = ctx;
    return ctl_local_new(f->dir, f->key, sizeof(f->key), false, out);
}

static ctl_contract_backend local_backend(fx *f) {
    return (ctl_contract_backend){.open = local_open, .ctx = f, .dense_revisions = true};
}

static void test_local_cas(void **state) {
    fx *f = *state;
    ctl_contract_backend b = local_backend(f);
    ctl_contract_cas(&b, f->store);
}

static int count_cb(void *arg, const ctl_vm_record *rec) {
    (void)rec;
    (*(int *)arg)++;
    return 0;
}

static void test_local_list(void **state) {
    fx *f = *state;
    ctl_contract_backend b = local_backend(f);
    ctl_contract_list(&b, f->store);
    /* debris of an interrupted write is not a record */
    char p[128];
    snprintf(p, sizeof(p), "%s/vms/%s.tmp-123", f->dir, k_uuid);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs("junk", fp);
    fclose(fp);
    int n = 0;
    assert_int_equal(ctl_store_list_vms(f->store, count_cb, &n), VMENC_OK);
    assert_int_equal(n, 2);
}

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    uint8_t *b = malloc(1 << 16);
    *len = fread(b, 1, 1 << 16, fp);
    fclose(fp);
    return b;
}

static void write_all(const char *path, const uint8_t *b, size_t len) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, len, fp), len);
    fclose(fp);
}

static void test_local_mac_tamper(void **state) {
    fx *f = *state;
    ctl_vm_record r, got;
    uint64_t rev;
    ctl_contract_full_record(&r, k_uuid);
    assert_int_equal(ctl_store_put_vm(f->store, &r, 0, &rev), VMENC_OK);
    char path[128], path2[128];
    snprintf(path, sizeof(path), "%s/vms/%s", f->dir, k_uuid);
    snprintf(path2, sizeof(path2), "%s/vms/%s", f->dir, k_uuid2);
    size_t len = 0;
    uint8_t *orig = read_all(path, &len);
    assert_true(len > CTL_HASH_BYTES);
    /* every byte flipped, MAC included */
    for (size_t i = 0; i < len; i++) {
        orig[i] ^= 0x01;
        write_all(path, orig, len);
        assert_int_equal(ctl_store_get_vm(f->store, k_uuid, &got), VMENC_E_AUTH);
        orig[i] ^= 0x01;
    }
    /* truncated, emptied */
    write_all(path, orig, len - 1);
    assert_int_equal(ctl_store_get_vm(f->store, k_uuid, &got), VMENC_E_AUTH);
    write_all(path, orig, 0);
    assert_int_equal(ctl_store_get_vm(f->store, k_uuid, &got), VMENC_E_AUTH);
    /* a put over a tampered record does not paper over it */
    assert_int_equal(ctl_store_put_vm(f->store, &r, 1, &rev), VMENC_E_AUTH);
    write_all(path, orig, len);
    assert_int_equal(ctl_store_get_vm(f->store, k_uuid, &got), VMENC_OK);
    /* a good record under another VM's name */
    write_all(path2, orig, len);
    assert_int_equal(ctl_store_get_vm(f->store, k_uuid2, &got), VMENC_E_AUTH);
    /* the same files under another key */
    ctl_store *other = NULL;
    uint8_t k2[CTL_MAC_KEY_BYTES];
    memcpy(k2, f->key, sizeof(k2));
    k2[0] ^= 1;
    assert_int_equal(ctl_local_new(f->dir, k2, sizeof(k2), true, &other), VMENC_OK);
    assert_int_equal(ctl_store_get_vm(other, k_uuid, &got), VMENC_E_AUTH);
    ctl_store_free(other);
    free(orig);
}

static void test_cas_two_processes(void **state) {
    fx *f = *state;
    ctl_contract_backend b = local_backend(f);
    ctl_contract_cas_two_processes(&b, f->store);
}

static void test_cas_concurrent_processes(void **state) {
    fx *f = *state;
    ctl_contract_backend b = local_backend(f);
    ctl_contract_cas_concurrent_processes(&b, f->store);
}

/* A record write killed half way leaves "<uuid>.tmp-<hex>"; opening the
 * store removes it, but never the temporary of a live writer (its record
 * lock held: here another process holds it) nor a name the store did not
 * make. */
static vmenc_status die_at_rename(int op, const char *name) {
    (void)name;
    if (op == VMENC_FS_OP_RENAME)
        _exit(0);
    return VMENC_OK;
}

static int count_tmp(const char *dir, const char *prefix) {
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "exit $(ls -A '%s/vms' | grep -c '^%s')", dir, prefix);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_local_tmp_debris(void **state) {
    fx *f = *state;
    ctl_vm_record r, r2;
    uint64_t rev = 0;
    ctl_contract_full_record(&r, k_uuid);
    assert_int_equal(ctl_store_put_vm(f->store, &r, 0, &rev), VMENC_OK);
    ctl_contract_full_record(&r2, k_uuid2);
    assert_int_equal(ctl_store_put_vm(f->store, &r2, 0, NULL), VMENC_OK);
    /* a writer of each record killed before its rename */
    const char *uuids[2] = {k_uuid, k_uuid2};
    for (int i = 0; i < 2; i++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            ctl_vm_record w;
            ctl_contract_full_record(&w, uuids[i]);
            vmenc_fs_step_hook = die_at_rename;
            if (ctl_store_put_vm(f->store, &w, 1, NULL) != VMENC_OK)
                _exit(3);
            _exit(2);
        }
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    assert_int_equal(count_tmp(f->dir, k_uuid), 2); /* the record and its temporary */
    assert_int_equal(count_tmp(f->dir, k_uuid2), 2);
    /* names the store never makes stay */
    char p[160];
    snprintf(p, sizeof(p), "%s/vms/%s.tmp-123", f->dir, k_uuid);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(p, sizeof(p), "%s/vms/notes.tmp-0123456789abcdef", f->dir);
    fp = fopen(p, "w");
    assert_non_null(fp);
    fclose(fp);
    /* another process holds the second record's lock, as a writer does */
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t holder = fork();
    assert_true(holder >= 0);
    if (holder == 0) {
        char lp[160];
        snprintf(lp, sizeof(lp), "%s/vms.lock.%s", f->dir, k_uuid2);
        int lk = -1;
        if (vmenc_lock_file(lp, 0, &lk) != VMENC_OK)
            _exit(3);
        (void)!write(ready[1], "x", 1);
        for (;;)
            pause();
    }
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    ctl_store *again = NULL;
    vmenc_status s = ctl_local_new(f->dir, f->key, sizeof(f->key), true, &again);
    int n1 = count_tmp(f->dir, k_uuid), n2 = count_tmp(f->dir, k_uuid2), n3 = count_tmp(f->dir, "notes");
    ctl_store_free(again);
    kill(holder, SIGKILL); /* (before any assertion: it holds the test's output open) */
    assert_int_equal(waitpid(holder, NULL, 0), holder);
    close(ready[0]);
    close(ready[1]);
    assert_int_equal(s, VMENC_OK);
    assert_int_equal(n1, 2); /* the record and the foreign ".tmp-123" */
    assert_int_equal(n2, 2); /* the live writer's temporary is left */
    assert_int_equal(n3, 1);
    assert_int_equal(ctl_local_new(f->dir, f->key, sizeof(f->key), true, &again), VMENC_OK);
    assert_int_equal(count_tmp(f->dir, k_uuid2), 1); /* its writer is gone now */
    /* the records are the last ones written */
    ctl_vm_record back;
    assert_int_equal(ctl_store_get_vm(again, k_uuid, &back), VMENC_OK);
    assert_int_equal(back.revision, rev);
    ctl_store_free(again);
}

/* ---- intent first -------------------------------------------------------------------------- */

static void test_begin_turn_end(void **state) {
    fx *f = *state;
    ctl_contract_backend b = local_backend(f);
    ctl_contract_begin_turn_end(&b, f->store);
}

/* The front refuses a table older than the first version. */
static void test_ops_size_rule(void **state) {
    (void)state;
    static const ctl_store_ops small = {.struct_size = 8, .abi_version = 1, .type_name = "tiny"};
    static const ctl_store_ops zero_abi = {.struct_size = sizeof(ctl_store_ops), .abi_version = 0};
    ctl_store s = {.struct_size = sizeof(s), .ops = &small};
    ctl_vm_record r;
    assert_int_equal(ctl_store_get_vm(&s, k_uuid, &r), VMENC_E_ABI_VERSION);
    s.ops = &zero_abi;
    assert_int_equal(ctl_store_get_vm(&s, k_uuid, &r), VMENC_E_ABI_VERSION);
    static const ctl_store_ops empty = {.struct_size = sizeof(ctl_store_ops), .abi_version = 1};
    s.ops = &empty;
    assert_int_equal(ctl_store_get_vm(&s, k_uuid, &r), VMENC_E_UNIMPLEMENTED);
    ctl_store_free(&s); /* no destroy: nothing happens */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_codec_rules),
        cmocka_unit_test(test_codec_state_files),
        cmocka_unit_test(test_key_record_hash),
        cmocka_unit_test_setup_teardown(test_local_cas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_mac_tamper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cas_two_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cas_concurrent_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_tmp_debris, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_turn_end, setup, teardown),
        cmocka_unit_test(test_ops_size_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
