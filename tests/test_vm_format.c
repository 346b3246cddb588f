/*
 * tests/test_vm_format.c - the VM layer's file formats (lib/vm/vm_format.h):
 * file-system helpers, the key = "value" grammar, disk descriptor and .vmx
 * schemas, sealed configuration entries and chunked AEAD state files.
 *
 * Order per module: accepted inputs and round trips first, then every
 * rejection beside them. State files are checked against an in-memory model
 * at random offsets and lengths, then attacked (truncation, flips, swaps,
 * copies between files, classes and VMs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/internal.h"
#include "keys/keys_internal.h"
#include "vm/vm_format.h"
#include "vmenc/vmenc.h"

/* ---- helpers -------------------------------------------------------------- */

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static __attribute__((unused)) uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

typedef struct tmpdir {
    char path[128];
    int fd;
} tmpdir;

static void tmpdir_make(tmpdir *t) {
    snprintf(t->path, sizeof(t->path), "/tmp/vmenc-vmfmt-XXXXXX");
    assert_non_null(mkdtemp(t->path));
    t->fd = open(t->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(t->fd >= 0);
}

static void tmpdir_remove(tmpdir *t) {
    char cmd[256];
    close(t->fd);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->path);
    assert_int_equal(system(cmd), 0);
}

static void put_file(const tmpdir *t, const char *name, const void *data, size_t len) {
    int fd = openat(t->fd, name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static uint8_t *get_file(const tmpdir *t, const char *name, size_t *out_len) {
    uint8_t *buf = NULL;
    assert_int_equal(vm_read_file(t->fd, name, (size_t)1 << 30, &buf, out_len), VMENC_OK);
    return buf;
}

static int count_entries(const tmpdir *t) {
    char cmd[256];
    int n = -1;
    snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", t->path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

static __attribute__((unused)) vmenc_dek *make_dek(uint8_t seed) {
    uint8_t b[64];
    for (size_t i = 0; i < sizeof(b); i++)
        b[i] = (uint8_t)(seed * 31 + i * 7 + 1);
    vmenc_dek *dek = NULL;
    assert_int_equal(vmenc_dek_new_from_bytes(b, sizeof(b), &dek), VMENC_OK);
    return dek;
}

/* ---- fsutil --------------------------------------------------------------- */

static void test_errno_map(void **state) {
    (void)state;
    assert_int_equal(vm_status_from_errno(ENOSPC), VMENC_E_NO_SPACE);
    assert_int_equal(vm_status_from_errno(EDQUOT), VMENC_E_NO_SPACE);
    assert_int_equal(vm_status_from_errno(ENOENT), VMENC_E_NOT_FOUND);
    assert_int_equal(vm_status_from_errno(EEXIST), VMENC_E_EXISTS);
    assert_int_equal(vm_status_from_errno(ENOTEMPTY), VMENC_E_EXISTS);
    assert_int_equal(vm_status_from_errno(ENOMEM), VMENC_E_NOMEM);
    assert_int_equal(vm_status_from_errno(ELOOP), VMENC_E_BAD_PATH);
    assert_int_equal(vm_status_from_errno(EIO), VMENC_E_IO);
    assert_int_equal(vm_status_from_errno(EACCES), VMENC_E_IO);
}

static void test_file_name_check(void **state) {
    (void)state;
    const char *good[] = {"a", "vm1.vmx", "My_VM-2.vmdk", "x-flat.vmdk", "A.b.c"};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(good); i++)
        assert_int_equal(vm_file_name_check(good[i]), VMENC_OK);
    const char *bad[] = {"", ".", "..", "../x", "/etc/passwd", "a/b", ".hidden", "-rf", "a b", "a\nb",
                         "a\\b", "caf\xc3\xa9", "x\x01"};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(bad); i++)
        assert_int_equal(vm_file_name_check(bad[i]), VMENC_E_BAD_PATH);
    assert_int_equal(vm_file_name_check(NULL), VMENC_E_BAD_PATH);
    char name[257];
    memset(name, 'a', sizeof(name));
    name[255] = '\0';
    assert_int_equal(vm_file_name_check(name), VMENC_OK);
    name[255] = 'a';
    name[256] = '\0';
    assert_int_equal(vm_file_name_check(name), VMENC_E_BAD_PATH);
}

static void test_atomic_write_and_read(void **state) {
    (void)state;
    tmpdir t;
    tmpdir_make(&t);
    const char *text = "hello = \"world\"\n";
    assert_int_equal(vm_atomic_write(t.fd, "a.vmx", (const uint8_t *)text, strlen(text), true), VMENC_OK);
    size_t len = 0;
    uint8_t *buf = get_file(&t, "a.vmx", &len);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(buf, text, len);
    assert_int_equal(buf[len], 0);
    free(buf);
    /* Replace: the old content is gone, no temporary is left. */
    assert_int_equal(vm_atomic_write(t.fd, "a.vmx", (const uint8_t *)"x", 1, false), VMENC_OK);
    buf = get_file(&t, "a.vmx", &len);
    assert_int_equal(len, 1);
    free(buf);
    assert_int_equal(count_entries(&t), 1);
    struct stat st;
    assert_int_equal(fstatat(t.fd, "a.vmx", &st, 0), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Empty content, bad names. */
    assert_int_equal(vm_atomic_write(t.fd, "empty", NULL, 0, true), VMENC_OK);
    buf = get_file(&t, "empty", &len);
    assert_int_equal(len, 0);
    free(buf);
    assert_int_equal(vm_atomic_write(t.fd, "../x", (const uint8_t *)"x", 1, true), VMENC_E_BAD_PATH);
    assert_int_equal(vm_atomic_write(t.fd, "/etc/passwd", (const uint8_t *)"x", 1, true), VMENC_E_BAD_PATH);
    /* A directory in the way: rename fails, nothing is left behind. */
    assert_int_equal(mkdirat(t.fd, "dir", 0700), 0);
    assert_int_not_equal(vm_atomic_write(t.fd, "dir", (const uint8_t *)"x", 1, true), VMENC_OK);
    assert_int_equal(count_entries(&t), 3);
    tmpdir_remove(&t);
}

static void test_read_file_rejects(void **state) {
    (void)state;
    tmpdir t;
    tmpdir_make(&t);
    uint8_t *buf = NULL;
    size_t len = 0;
    put_file(&t, "big", "0123456789", 10);
    assert_int_equal(vm_read_file(t.fd, "big", 9, &buf, &len), VMENC_E_TOO_LARGE);
    assert_int_equal(vm_read_file(t.fd, "big", 10, &buf, &len), VMENC_OK);
    free(buf);
    assert_int_equal(vm_read_file(t.fd, "missing", 10, &buf, &len), VMENC_E_NOT_FOUND);
    assert_int_equal(vm_read_file(t.fd, "../big", 10, &buf, &len), VMENC_E_BAD_PATH);
    assert_int_equal(vm_read_file(t.fd, "/etc/passwd", 1 << 20, &buf, &len), VMENC_E_BAD_PATH);
    /* A symbolic link, even to a file in the same directory, is refused. */
    assert_int_equal(symlinkat("/etc/passwd", t.fd, "link-flat.vmdk"), 0);
    assert_int_equal(vm_read_file(t.fd, "link-flat.vmdk", 1 << 20, &buf, &len), VMENC_E_BAD_PATH);
    assert_int_equal(symlinkat("big", t.fd, "link2"), 0);
    assert_int_equal(vm_read_file(t.fd, "link2", 1 << 20, &buf, &len), VMENC_E_BAD_PATH);
    /* Not a regular file. */
    assert_int_equal(mkfifoat(t.fd, "fifo", 0600), 0);
    assert_int_equal(vm_read_file(t.fd, "fifo", 10, &buf, &len), VMENC_E_BAD_PATH);
    assert_int_equal(mkdirat(t.fd, "d", 0700), 0);
    assert_int_equal(vm_read_file(t.fd, "d", 10, &buf, &len), VMENC_E_BAD_PATH);
    tmpdir_remove(&t);
}

/* ---- kv ------------------------------------------------------------------- */

static vm_kv *kv_parse_ok(const char *text) {
    vm_kv *kv = NULL;
    assert_int_equal(vm_kv_parse((const uint8_t *)text, strlen(text), &kv), VMENC_OK);
    return kv;
}

static void assert_canonical(const char *in, const char *want) {
    vm_kv *kv = kv_parse_ok(in);
    uint8_t *out = NULL;
    size_t len = 0;
    assert_int_equal(vm_kv_serialize(kv, &out, &len), VMENC_OK);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(out, want, len);
    /* Canonical is a fixed point. */
    vm_kv *again = kv_parse_ok((const char *)out);
    uint8_t *out2 = NULL;
    size_t len2 = 0;
    assert_int_equal(vm_kv_serialize(again, &out2, &len2), VMENC_OK);
    assert_int_equal(len2, len);
    assert_memory_equal(out2, out, len);
    free(out);
    free(out2);
    vm_kv_free(kv);
    vm_kv_free(again);
}

static void test_kv_grammar_accepts(void **state) {
    (void)state;
    assert_canonical("", "");
    assert_canonical("\n", "\n");
    assert_canonical("a = \"b\"", "a = \"b\"\n");
    assert_canonical("  a\t=\t\"b\"  \t\n", "a = \"b\"\n");
    assert_canonical("a=\"\"\n", "a = \"\"\n");
    assert_canonical("   # comment \"x\"\t\n\t \n", "# comment \"x\"\t\n\n");
    assert_canonical("scsi0:0.fileName = \"disk-1.vmdk\"\n", "scsi0:0.fileName = \"disk-1.vmdk\"\n");
    assert_canonical("RW 2048 FLAT \"d-flat.vmdk\"\n", "RW 2048 FLAT \"d-flat.vmdk\" 0\n");
    assert_canonical("RDONLY 0 FLAT \"d-flat.vmdk\" 18446744073709551615\n",
                     "RDONLY 0 FLAT \"d-flat.vmdk\" 18446744073709551615\n");
    assert_canonical("RW = \"key named RW\"\n", "RW = \"key named RW\"\n");
    assert_canonical("u = \"caf\xc3\xa9 \xf0\x9f\x94\x92\"\n", "u = \"caf\xc3\xa9 \xf0\x9f\x94\x92\"\n");

    vm_kv *kv = kv_parse_ok("# head\nb = \"2\"\na = \"1\"\nNOACCESS 8 FLAT \"x\" 4\n");
    assert_int_equal(vm_kv_num_entries(kv), 2);
    const char *k, *v;
    vm_kv_entry(kv, 0, &k, &v);
    assert_string_equal(k, "b");
    assert_string_equal(v, "2");
    vm_kv_entry(kv, 1, &k, &v);
    assert_string_equal(k, "a");
    vm_kv_entry(kv, 2, &k, &v);
    assert_null(k);
    assert_string_equal(vm_kv_get(kv, "a"), "1");
    assert_null(vm_kv_get(kv, "A")); /* case-sensitive */
    assert_int_equal(vm_kv_num_extents(kv), 1);
    const vm_kv_extent *e = vm_kv_get_extent(kv, 0);
    assert_string_equal(e->access, "NOACCESS");
    assert_int_equal(e->sectors, 8);
    assert_string_equal(e->file, "x");
    assert_int_equal(e->offset, 4);
    assert_null(vm_kv_get_extent(kv, 1));
    vm_kv_free(kv);
}

static void assert_kv_rejects(const char *text, size_t len, vmenc_status want) {
    vm_kv *kv = (vm_kv *)0x1;
    assert_int_equal(vm_kv_parse((const uint8_t *)text, len, &kv), want);
    assert_ptr_equal(kv, (vm_kv *)0x1);
}
#define REJECTS(text, want) assert_kv_rejects(text, sizeof(text) - 1, want)

static void test_kv_grammar_rejects(void **state) {
    (void)state;
    REJECTS("a = \"b\"\r\n", VMENC_E_BAD_ENCODING);
    REJECTS("a = \"b\0\"\n", VMENC_E_BAD_ENCODING);
    REJECTS("a = \"\x01\"\n", VMENC_E_BAD_ENCODING);
    REJECTS("a = \"\x7f\"\n", VMENC_E_BAD_ENCODING);
    REJECTS("a = \"\t\"\n", VMENC_E_BAD_ENCODING);
    REJECTS("# \x1b[31m\n", VMENC_E_BAD_ENCODING);
    REJECTS("a = \"\xc0\xaf\"\n", VMENC_E_BAD_ENCODING);     /* overlong */
    REJECTS("a = \"\xed\xa0\x80\"\n", VMENC_E_BAD_ENCODING); /* surrogate */
    REJECTS("a = \"\xf4\x90\x80\x80\"\n", VMENC_E_BAD_ENCODING);
    REJECTS("a = \"\xe2\x82\"\n", VMENC_E_BAD_ENCODING);     /* cut */
    REJECTS("a = \"\xff\"\n", VMENC_E_BAD_ENCODING);
    REJECTS("a = b\n", VMENC_E_PARSE);
    REJECTS("a = \"b\n", VMENC_E_PARSE);
    REJECTS("a = \"b\" c\n", VMENC_E_PARSE);
    REJECTS("a = \"b\"\"\n", VMENC_E_PARSE);
    REJECTS("a = \"b\\\"\n", VMENC_E_PARSE);
    REJECTS("a \"b\"\n", VMENC_E_PARSE);
    REJECTS("= \"b\"\n", VMENC_E_PARSE);
    REJECTS("a/b = \"b\"\n", VMENC_E_PARSE);
    REJECTS("a b = \"b\"\n", VMENC_E_PARSE);
    REJECTS("a = \"1\"\na = \"2\"\n", VMENC_E_PARSE);
    REJECTS("z = \"1\"\nb = \"1\"\nz = \"2\"\n", VMENC_E_PARSE);
    REJECTS("just words\n", VMENC_E_PARSE);
    /* Extents. */
    REJECTS("RW 10 FLAT \"../x\" 0\n", VMENC_E_BAD_PATH);
    REJECTS("RW 10 FLAT \"/etc/passwd\" 0\n", VMENC_E_BAD_PATH);
    REJECTS("RW 10 FLAT \"\" 0\n", VMENC_E_BAD_PATH);
    REJECTS("RW 10 SPARSE \"x\" 0\n", VMENC_E_PARSE);
    REJECTS("RW 10 flat \"x\" 0\n", VMENC_E_PARSE);
    REJECTS("RW 010 FLAT \"x\" 0\n", VMENC_E_PARSE);
    REJECTS("RW 18446744073709551616 FLAT \"x\" 0\n", VMENC_E_PARSE);
    REJECTS("RW 10 FLAT \"x\" 00\n", VMENC_E_PARSE);
    REJECTS("RW 10 FLAT \"x\" 0 \n", VMENC_E_PARSE);
    REJECTS("RW  10 FLAT \"x\" 0\n", VMENC_E_PARSE);
    REJECTS("RW 10 FLAT x 0\n", VMENC_E_PARSE);
    REJECTS("RW 10 FLAT \"x 0\n", VMENC_E_PARSE);
    REJECTS("RW 1\n", VMENC_E_PARSE);
    /* Limits. */
    char key[VM_KV_KEY_MAX + 16];
    memset(key, 'k', VM_KV_KEY_MAX + 1);
    memcpy(key + VM_KV_KEY_MAX + 1, "=\"\"", 4);
    assert_kv_rejects(key, strlen(key), VMENC_E_PARSE);
    memmove(key + 1, key + 2, strlen(key + 2) + 1); /* exactly the maximum */
    vm_kv *kv = kv_parse_ok(key);
    vm_kv_free(kv);
    size_t big = VM_KV_VALUE_MAX + 8;
    char *text = malloc(big + 1);
    memcpy(text, "v=\"", 3);
    memset(text + 3, 'x', VM_KV_VALUE_MAX + 1);
    memcpy(text + 3 + VM_KV_VALUE_MAX + 1, "\"", 2);
    assert_kv_rejects(text, strlen(text), VMENC_E_TOO_LARGE);
    free(text);
    text = malloc(VM_KV_MAX_ITEMS + 2);
    memset(text, '\n', VM_KV_MAX_ITEMS + 1);
    assert_kv_rejects(text, VM_KV_MAX_ITEMS + 1, VMENC_E_TOO_LARGE);
    assert_int_equal(vm_kv_parse((const uint8_t *)text, VM_KV_MAX_ITEMS, &kv), VMENC_OK);
    vm_kv_free(kv);
    free(text);
    assert_int_equal(vm_kv_parse((const uint8_t *)"", VM_KV_MAX_TEXT + 1, &kv), VMENC_E_TOO_LARGE);
}

static void test_kv_edit(void **state) {
    (void)state;
    vm_kv *kv = kv_parse_ok("# c\na = \"1\"\nb = \"2\"\n");
    assert_int_equal(vm_kv_set(kv, "a", "one"), VMENC_OK);
    assert_int_equal(vm_kv_set(kv, "c", "3"), VMENC_OK);
    assert_int_equal(vm_kv_remove(kv, "b"), VMENC_OK);
    assert_int_equal(vm_kv_remove(kv, "b"), VMENC_E_NOT_FOUND);
    assert_int_equal(vm_kv_set(kv, "bad key", "x"), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_kv_set(kv, "", "x"), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_kv_set(kv, "k", "quote\""), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_kv_set(kv, "k", "back\\slash"), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_kv_set(kv, "k", "new\nline"), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_kv_set(kv, "k", "\xff"), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_kv_add_comment(kv, "tail"), VMENC_OK);
    assert_int_equal(vm_kv_add_comment(kv, "a\nb"), VMENC_E_INVALID_ARG);
    vm_kv_extent e = {.access = "RW", .sectors = 16, .type = "FLAT", .file = "d-flat.vmdk"};
    assert_int_equal(vm_kv_add_extent(kv, &e), VMENC_OK);
    vm_kv_extent bad = e;
    strcpy(bad.file, "../d");
    assert_int_equal(vm_kv_add_extent(kv, &bad), VMENC_E_BAD_PATH);
    bad = e;
    strcpy(bad.type, "SPARSE");
    assert_int_equal(vm_kv_add_extent(kv, &bad), VMENC_E_INVALID_ARG);
    uint8_t *out = NULL;
    size_t len = 0;
    assert_int_equal(vm_kv_serialize(kv, &out, &len), VMENC_OK);
    const char *want = "# c\na = \"one\"\nc = \"3\"\n# tail\nRW 16 FLAT \"d-flat.vmdk\" 0\n";
    assert_int_equal(len, strlen(want));
    assert_memory_equal(out, want, len);
    free(out);
    vm_kv_free(kv);
    vm_kv_free(NULL);
}

/* ---- main ------------------------------------------------------------------- */

int main(void) {
    if (vmenc_init() != VMENC_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errno_map),
        cmocka_unit_test(test_file_name_check),
        cmocka_unit_test(test_atomic_write_and_read),
        cmocka_unit_test(test_read_file_rejects),
        cmocka_unit_test(test_kv_grammar_accepts),
        cmocka_unit_test(test_kv_grammar_rejects),
        cmocka_unit_test(test_kv_edit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
