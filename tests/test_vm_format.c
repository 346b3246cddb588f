/*
 * tests/test_vm_format.c - the VM layer's file formats (lib/vm/format/, lib/vm/io/statefile.h):
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
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/internal.h"
#include "keys/keys_internal.h"
#include "core/fs.h"
#include "vm/format/descriptor.h"
#include "vm/format/sealed.h"
#include "vm/format/vmx.h"
#include "vm/io/io.h"
#include "vm/io/statefile.h"
#include "vmenc/vmenc.h"

/* ---- helpers -------------------------------------------------------------- */

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static uint64_t rnd(void) {
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
    assert_int_equal(vmenc_fs_read_file(t->fd, name, (size_t)1 << 30, &buf, out_len), VMENC_OK);
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

static vmenc_dek *make_dek(uint8_t seed) {
    uint8_t b[64];
    for (size_t i = 0; i < sizeof(b); i++)
        b[i] = (uint8_t)(seed * 31 + i * 7 + 1);
    vmenc_dek *dek = NULL;
    assert_int_equal(vmenc_dek_new_from_bytes(b, sizeof(b), &dek), VMENC_OK);
    return dek;
}

/* ---- core/fs ---------------------------------------------------------------- */

static void test_errno_map(void **state) {
    (void)state;
    assert_int_equal(vmenc_status_from_errno(ENOSPC), VMENC_E_NO_SPACE);
    assert_int_equal(vmenc_status_from_errno(EDQUOT), VMENC_E_NO_SPACE);
    assert_int_equal(vmenc_status_from_errno(ENOENT), VMENC_E_NOT_FOUND);
    assert_int_equal(vmenc_status_from_errno(EEXIST), VMENC_E_EXISTS);
    assert_int_equal(vmenc_status_from_errno(ENOTEMPTY), VMENC_E_EXISTS);
    assert_int_equal(vmenc_status_from_errno(ENOMEM), VMENC_E_NOMEM);
    assert_int_equal(vmenc_status_from_errno(ELOOP), VMENC_E_BAD_PATH);
    assert_int_equal(vmenc_status_from_errno(EIO), VMENC_E_IO);
    assert_int_equal(vmenc_status_from_errno(EACCES), VMENC_E_IO);
}

static void test_file_name_check(void **state) {
    (void)state;
    const char *good[] = {"a", "vm1.vmx", "My_VM-2.vmdk", "x-flat.vmdk", "A.b.c"};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(good); i++)
        assert_int_equal(vmenc_fs_name_check(good[i]), VMENC_OK);
    const char *bad[] = {"", ".", "..", "../x", "/etc/passwd", "a/b", ".hidden", "-rf", "a b", "a\nb",
                         "a\\b", "caf\xc3\xa9", "x\x01"};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(bad); i++)
        assert_int_equal(vmenc_fs_name_check(bad[i]), VMENC_E_BAD_PATH);
    assert_int_equal(vmenc_fs_name_check(NULL), VMENC_E_BAD_PATH);
    char name[257];
    memset(name, 'a', sizeof(name));
    name[255] = '\0';
    assert_int_equal(vmenc_fs_name_check(name), VMENC_OK);
    name[255] = 'a';
    name[256] = '\0';
    assert_int_equal(vmenc_fs_name_check(name), VMENC_E_BAD_PATH);
}

static void test_atomic_write_and_read(void **state) {
    (void)state;
    tmpdir t;
    tmpdir_make(&t);
    const char *text = "hello = \"world\"\n";
    assert_int_equal(vmenc_fs_atomic_write(t.fd, "a.vmx", (const uint8_t *)text, strlen(text), true), VMENC_OK);
    size_t len = 0;
    uint8_t *buf = get_file(&t, "a.vmx", &len);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(buf, text, len);
    assert_int_equal(buf[len], 0);
    free(buf);
    /* Replace: the old content is gone, no temporary is left. */
    assert_int_equal(vmenc_fs_atomic_write(t.fd, "a.vmx", (const uint8_t *)"x", 1, false), VMENC_OK);
    buf = get_file(&t, "a.vmx", &len);
    assert_int_equal(len, 1);
    free(buf);
    assert_int_equal(count_entries(&t), 1);
    struct stat st;
    assert_int_equal(fstatat(t.fd, "a.vmx", &st, 0), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Empty content, bad names. */
    assert_int_equal(vmenc_fs_atomic_write(t.fd, "empty", NULL, 0, true), VMENC_OK);
    buf = get_file(&t, "empty", &len);
    assert_int_equal(len, 0);
    free(buf);
    assert_int_equal(vmenc_fs_atomic_write(t.fd, "../x", (const uint8_t *)"x", 1, true), VMENC_E_BAD_PATH);
    assert_int_equal(vmenc_fs_atomic_write(t.fd, "/etc/passwd", (const uint8_t *)"x", 1, true), VMENC_E_BAD_PATH);
    /* A directory in the way: rename fails, nothing is left behind. */
    assert_int_equal(mkdirat(t.fd, "dir", 0700), 0);
    assert_int_not_equal(vmenc_fs_atomic_write(t.fd, "dir", (const uint8_t *)"x", 1, true), VMENC_OK);
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
    assert_int_equal(vmenc_fs_read_file(t.fd, "big", 9, &buf, &len), VMENC_E_TOO_LARGE);
    assert_int_equal(vmenc_fs_read_file(t.fd, "big", 10, &buf, &len), VMENC_OK);
    free(buf);
    assert_int_equal(vmenc_fs_read_file(t.fd, "missing", 10, &buf, &len), VMENC_E_NOT_FOUND);
    assert_int_equal(vmenc_fs_read_file(t.fd, "../big", 10, &buf, &len), VMENC_E_BAD_PATH);
    assert_int_equal(vmenc_fs_read_file(t.fd, "/etc/passwd", 1 << 20, &buf, &len), VMENC_E_BAD_PATH);
    /* A symbolic link, even to a file in the same directory, is refused. */
    assert_int_equal(symlinkat("/etc/passwd", t.fd, "link-flat.vmdk"), 0);
    assert_int_equal(vmenc_fs_read_file(t.fd, "link-flat.vmdk", 1 << 20, &buf, &len), VMENC_E_BAD_PATH);
    assert_int_equal(symlinkat("big", t.fd, "link2"), 0);
    assert_int_equal(vmenc_fs_read_file(t.fd, "link2", 1 << 20, &buf, &len), VMENC_E_BAD_PATH);
    /* Not a regular file. */
    assert_int_equal(mkfifoat(t.fd, "fifo", 0600), 0);
    assert_int_equal(vmenc_fs_read_file(t.fd, "fifo", 10, &buf, &len), VMENC_E_BAD_PATH);
    assert_int_equal(mkdirat(t.fd, "d", 0700), 0);
    assert_int_equal(vmenc_fs_read_file(t.fd, "d", 10, &buf, &len), VMENC_E_BAD_PATH);
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


/* ---- disk descriptor ---------------------------------------------------------- */

#define UUID1 "0f8fad5b-d9cb-469f-a165-70867728950e"
#define UUID2 "7c9e6679-7425-40de-944b-e07fc1f90ae7"

static char *make_key_safe(const char *alias, const char *kek_id) {
    uint8_t kb[32];
    for (size_t i = 0; i < sizeof(kb); i++)
        kb[i] = (uint8_t)(i + 1);
    vmenc_kek *kek = NULL;
    assert_int_equal(vmenc_kek_new_from_bytes(kb, sizeof(kb), &kek), VMENC_OK);
    vmenc_dek *dek = make_dek(9);
    vmenc_wrap_context ctx = {sizeof(ctx), UUID1, "scsi0:0", "disk"};
    vmenc_wrapped_key *wk = NULL;
    assert_int_equal(vmenc_dek_wrap(dek, kek, VMENC_WRAP_AES256_GCM, alias, kek_id, &ctx, &wk), VMENC_OK);
    char *text = NULL;
    assert_int_equal(vmenc_wrapped_key_to_text(wk, &text), VMENC_OK);
    char *copy = strdup(text);
    vmenc_buffer_free(text);
    vmenc_wrapped_key_free(wk);
    vmenc_dek_free(dek);
    vmenc_kek_free(kek);
    return copy;
}

static char *desc_text(const char *extra, const char *key_safe) {
    char *buf = malloc(8192);
    snprintf(buf, 8192,
             "# Disk DescriptorFile\n"
             "version = \"1\"\n"
             "encoding = \"UTF-8\"\n"
             "createType = \"vmenc-flat\"\n"
             "# Extent description\n"
             "RW 2048 FLAT \"disk-flat.vmdk\" 0\n"
             "# vmenc\n"
             "vmenc.version = \"1\"\n"
             "vmenc.diskId = \"scsi0:0\"\n"
             "vmenc.vmUuid = \"" UUID1 "\"\n"
             "vmenc.capacity = \"1048576\"\n"
             "vmenc.sectorSize = \"512\"\n"
             "vmenc.cipher = \"aes-xts-plain64\"\n"
             "vmenc.state = \"encrypted\"\n"
             "vmenc.keyProvider = \"kms1\"\n"
             "vmenc.kekId = \"kek-1\"\n"
             "vmenc.keySafe = \"%s\"\n%s",
             key_safe, extra);
    return buf;
}

static vmenc_status desc_parse_str(const char *text, vm_disk_desc *d) {
    return vm_disk_desc_parse((const uint8_t *)text, strlen(text), d);
}

/* replace returns |text| with the first |from| replaced by |to| (malloc'd). */
static char *replace(const char *text, const char *from, const char *to) {
    const char *at = strstr(text, from);
    assert_non_null(at);
    size_t a = (size_t)(at - text), fl = strlen(from), tl = strlen(to), rest = strlen(at + fl);
    char *out = malloc(a + tl + rest + 1);
    memcpy(out, text, a);
    memcpy(out + a, to, tl);
    memcpy(out + a + tl, at + fl, rest + 1);
    return out;
}

static void test_descriptor_round_trip(void **state) {
    (void)state;
    char *ks = make_key_safe("kms1", "kek-1");
    char *text = desc_text("", ks);
    vm_disk_desc d;
    assert_int_equal(desc_parse_str(text, &d), VMENC_OK);
    assert_string_equal(d.disk_id, "scsi0:0");
    assert_string_equal(d.vm_uuid, UUID1);
    assert_int_equal(d.capacity, 1048576);
    assert_int_equal(d.sector_size, 512);
    assert_int_equal(d.encrypted, 1);
    assert_int_equal(d.state, VMENC_DISK_ENCRYPTED);
    assert_string_equal(d.extent_file, "disk-flat.vmdk");
    assert_string_equal(d.key_provider, "kms1");
    assert_string_equal(d.kek_id, "kek-1");
    assert_non_null(d.key_safe);
    uint8_t *out = NULL;
    size_t len = 0;
    assert_int_equal(vm_disk_desc_serialize(&d, &out, &len), VMENC_OK);
    /* The text above is already canonical: byte-exact round trip. */
    assert_int_equal(len, strlen(text));
    assert_memory_equal(out, text, len);
    free(out);
    vm_disk_desc_cleanup(&d);
    assert_null(d.key_safe);

    /* A plain disk with 4096-byte sectors and a foreign key kept on parse. */
    char *plain = replace(text, "vmenc.cipher = \"aes-xts-plain64\"\nvmenc.state = \"encrypted\"\n"
                                "vmenc.keyProvider = \"kms1\"\nvmenc.kekId = \"kek-1\"\n",
                          "vmenc.cipher = \"none\"\nvmenc.state = \"plain\"\n");
    char *p2 = replace(plain, "vmenc.keySafe", "ddb.adapterType");
    char *p3 = replace(p2, "vmenc.sectorSize = \"512\"", "vmenc.sectorSize = \"4096\"");
    assert_int_equal(desc_parse_str(p3, &d), VMENC_OK);
    assert_int_equal(d.encrypted, 0);
    assert_int_equal(d.state, VMENC_DISK_PLAIN);
    assert_int_equal(d.sector_size, 4096);
    assert_null(d.key_safe);
    assert_int_equal(vm_disk_desc_serialize(&d, &out, &len), VMENC_OK);
    vm_disk_desc d2;
    assert_int_equal(vm_disk_desc_parse(out, len, &d2), VMENC_OK);
    assert_int_equal(d2.capacity, d.capacity);
    assert_int_equal(d2.sector_size, 4096);
    free(out);
    vm_disk_desc_cleanup(&d);
    vm_disk_desc_cleanup(&d2);
    free(plain);
    free(p2);
    free(p3);
    free(text);
    free(ks);
}

static void desc_rejects(const char *text, const char *from, const char *to, vmenc_status want) {
    char *bad = replace(text, from, to);
    vm_disk_desc d;
    memset(&d, 0xa5, sizeof(d));
    vm_disk_desc before = d;
    assert_int_equal(desc_parse_str(bad, &d), want);
    if (want == VMENC_OK)
        vm_disk_desc_cleanup(&d);
    else
        assert_memory_equal(&d, &before, sizeof(d)); /* untouched on failure */
    free(bad);
}

static void test_descriptor_rejects(void **state) {
    (void)state;
    char *ks = make_key_safe("kms1", "kek-1");
    char *text = desc_text("", ks);
    desc_rejects(text, "\"disk-flat.vmdk\"", "\"../x\"", VMENC_E_BAD_PATH);
    desc_rejects(text, "\"disk-flat.vmdk\"", "\"/etc/passwd\"", VMENC_E_BAD_PATH);
    desc_rejects(text, "\"disk-flat.vmdk\" 0", "\"disk-flat.vmdk\" 1", VMENC_E_PARSE);
    desc_rejects(text, "RW 2048", "RW 2047", VMENC_E_PARSE);
    desc_rejects(text, "RW 2048", "RDONLY 2048", VMENC_E_PARSE);
    desc_rejects(text, "RW 2048 FLAT \"disk-flat.vmdk\" 0\n", "", VMENC_E_PARSE);
    desc_rejects(text, "# vmenc\n", "RW 8 FLAT \"b\" 0\n", VMENC_E_PARSE);
    desc_rejects(text, "\"1048576\"", "\"1048577\"", VMENC_E_PARSE);
    desc_rejects(text, "\"1048576\"", "\"01048576\"", VMENC_E_PARSE);
    desc_rejects(text, "\"1048576\"", "\"0\"", VMENC_E_PARSE);
    desc_rejects(text, "vmenc.sectorSize = \"512\"", "vmenc.sectorSize = \"1024\"", VMENC_E_PARSE);
    desc_rejects(text, "vmenc.version = \"1\"", "vmenc.version = \"2\"", VMENC_E_BAD_VERSION);
    desc_rejects(text, "# vmenc\n", "vmenc.future = \"x\"\n", VMENC_E_PARSE);
    desc_rejects(text, "# vmenc\n", "vmenc.Version = \"1\"\n", VMENC_E_PARSE);
    desc_rejects(text, "\"scsi0:0\"", "\"scsi4:0\"", VMENC_E_PARSE);
    desc_rejects(text, "\"scsi0:0\"", "\"scsi0:16\"", VMENC_E_PARSE);
    desc_rejects(text, "\"scsi0:0\"", "\"scsi0:01\"", VMENC_E_PARSE);
    desc_rejects(text, UUID1, "0F8FAD5B-D9CB-469F-A165-70867728950E", VMENC_E_PARSE);
    desc_rejects(text, UUID1, "0f8fad5bd9cb469fa16570867728950e", VMENC_E_PARSE);
    desc_rejects(text, "createType = \"vmenc-flat\"", "createType = \"monolithicFlat\"", VMENC_E_PARSE);
    desc_rejects(text, "vmenc.state = \"encrypted\"", "vmenc.state = \"plain\"", VMENC_E_PARSE);
    desc_rejects(text, "vmenc.cipher = \"aes-xts-plain64\"", "vmenc.cipher = \"aes-cbc\"", VMENC_E_PARSE);
    /* keySafe names another provider or KEK than the descriptor says. */
    desc_rejects(text, "vmenc.keyProvider = \"kms1\"", "vmenc.keyProvider = \"kms2\"", VMENC_E_KEY_MISMATCH);
    desc_rejects(text, "vmenc.kekId = \"kek-1\"", "vmenc.kekId = \"kek-2\"", VMENC_E_KEY_MISMATCH);
    desc_rejects(text, "vmenc.kekId = \"kek-1\"\n", "", VMENC_E_PARSE);
    desc_rejects(text, "vmenc.keySafe = \"vmwk1:", "vmenc.keySafe = \"vmwk2:", VMENC_E_BAD_MAGIC);
    desc_rejects(text, "vmenc.keySafe = \"vmwk1:", "vmenc.keySafe = \"vmwk1: ", VMENC_E_BAD_ENCODING);
    /* Plain disk carrying key entries. */
    desc_rejects(text, "vmenc.cipher = \"aes-xts-plain64\"\nvmenc.state = \"encrypted\"",
                 "vmenc.cipher = \"none\"\nvmenc.state = \"plain\"", VMENC_E_PARSE);
    /* Capacity above the maximum, and a disk of 4096-byte sectors whose
     * capacity is not a multiple of 4096. */
    desc_rejects(text, "vmenc.sectorSize = \"512\"", "vmenc.sectorSize = \"4096\"", VMENC_OK);
    char *odd = replace(text, "\"1048576\"", "\"1049088\"");
    desc_rejects(odd, "RW 2048", "RW 2049", VMENC_OK);
    char *odd4k = replace(odd, "RW 2048", "RW 2049");
    desc_rejects(odd4k, "vmenc.sectorSize = \"512\"", "vmenc.sectorSize = \"4096\"", VMENC_E_PARSE);
    free(odd);
    free(odd4k);

    /* The serialiser validates too. */
    vm_disk_desc d;
    assert_int_equal(desc_parse_str(text, &d), VMENC_OK);
    uint8_t *out = NULL;
    size_t len = 0;
    vm_disk_desc bad = d;
    strcpy(bad.extent_file, "../x");
    assert_int_equal(vm_disk_desc_serialize(&bad, &out, &len), VMENC_E_BAD_PATH);
    bad = d;
    bad.capacity = 1000;
    assert_int_equal(vm_disk_desc_serialize(&bad, &out, &len), VMENC_E_INVALID_ARG);
    bad = d;
    strcpy(bad.kek_id, "kek-9");
    assert_int_equal(vm_disk_desc_serialize(&bad, &out, &len), VMENC_E_KEY_MISMATCH);
    bad = d;
    bad.encrypted = 0;
    assert_int_equal(vm_disk_desc_serialize(&bad, &out, &len), VMENC_E_INVALID_ARG);
    vm_disk_desc_cleanup(&d);
    free(text);
    free(ks);
}

static void test_ids(void **state) {
    (void)state;
    const char *good[] = {"scsi0:0", "scsi3:15", "scsi1:9", "scsi2:10"};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(good); i++)
        assert_int_equal(vm_disk_id_check(good[i]), VMENC_OK);
    const char *bad[] = {"", "scsi", "scsi0", "scsi0:", "scsi4:0", "scsi0:16", "scsi0:00", "scsi0:1x",
                         "ide0:0", "SCSI0:0", "scsi0:0 ", "scsi-1:0", "scsi0:20"};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(bad); i++)
        assert_int_equal(vm_disk_id_check(bad[i]), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_uuid_check(UUID1), VMENC_OK);
    assert_int_equal(vm_uuid_check(UUID1 "0"), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_uuid_check("0f8fad5b-d9cb-469f-a165-70867728950"), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_uuid_check("0f8fad5b-d9cb-469f-a165-70867728950g"), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_uuid_check("0f8fad5b-d9cb-469f-a165+70867728950e"), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_uuid_check(NULL), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_vm_name_check("vm1"), VMENC_OK);
    char name[80];
    memset(name, 'n', sizeof(name));
    name[VMENC_VM_NAME_MAX] = '\0';
    assert_int_equal(vm_vm_name_check(name), VMENC_OK);
    name[VMENC_VM_NAME_MAX] = 'n';
    name[VMENC_VM_NAME_MAX + 1] = '\0';
    assert_int_equal(vm_vm_name_check(name), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_vm_name_check("../vm"), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_vm_name_check(".vm"), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_vm_name_check(""), VMENC_E_INVALID_ARG);
}

/* ---- vmx ---------------------------------------------------------------------- */

static char *vmx_text(const char *key_safe, const char *data) {
    char *buf = malloc(16384);
    snprintf(buf, 16384,
             ".encoding = \"UTF-8\"\n"
             "config.version = \"8\"\n"
             "displayName = \"vm1\"\n"
             "vmenc.version = \"1\"\n"
             "vmenc.uuid = \"" UUID1 "\"\n"
             "memSize = \"1024\"\n"
             "vmenc.storagePolicy = \"VM Encryption Policy\"\n"
             "scsi0.virtualDev = \"lsilogic\"\n"
             "scsi0:0.present = \"TRUE\"\n"
             "scsi0:0.fileName = \"vm1.vmdk\"\n"
             "scsi0:0.deviceType = \"scsi-hardDisk\"\n"
             "scsi0:1.present = \"FALSE\"\n"
             "scsi0:1.fileName = \"../old.vmdk\"\n"
             "scsi1:2.present = \"true\"\n"
             "scsi1:2.fileName = \"vm1_1.vmdk\"\n"
             "guestOS = \"other-64\"\n"
             "%s%s%s%s%s%s",
             key_safe ? "encryption.keySafe = \"" : "", key_safe ? key_safe : "", key_safe ? "\"\n" : "",
             data ? "encryption.data = \"" : "", data ? data : "", data ? "\"\n" : "");
    return buf;
}

static vmenc_status vmx_parse_str(const char *text, vm_vmx *v) {
    return vm_vmx_parse((const uint8_t *)text, strlen(text), v);
}

static char *vmx_serialize(const vm_vmx *v) {
    uint8_t *out = NULL;
    size_t len = 0;
    assert_int_equal(vm_kv_serialize(v->kv, &out, &len), VMENC_OK);
    return (char *)out;
}

static char *sealed_example(const vmenc_dek *key, const char *uuid) {
    vm_kv *secret = kv_parse_ok("guestinfo.password = \"hunter2\"\n");
    char *sealed = NULL;
    assert_int_equal(vm_sealed_seal(key, uuid, secret, &sealed), VMENC_OK);
    vm_kv_free(secret);
    return sealed;
}

static void test_vmx_parse_and_sync(void **state) {
    (void)state;
    char *text = vmx_text(NULL, NULL);
    vm_vmx v;
    assert_int_equal(vmx_parse_str(text, &v), VMENC_OK);
    assert_string_equal(v.name, "vm1");
    assert_string_equal(v.uuid, UUID1);
    assert_int_equal(v.memory_bytes, (uint64_t)1024 << 20);
    assert_string_equal(v.storage_policy, "VM Encryption Policy");
    assert_int_equal(v.num_disks, 2);
    assert_string_equal(v.disks[0].disk_id, "scsi0:0");
    assert_string_equal(v.disks[0].file_name, "vm1.vmdk");
    assert_string_equal(v.disks[1].disk_id, "scsi1:2");
    assert_null(v.key_safe);
    assert_null(v.sealed_data);
    /* Unchanged sync is the identity. */
    assert_int_equal(vm_vmx_sync(&v, NULL), VMENC_OK);
    char *out = vmx_serialize(&v);
    assert_string_equal(out, text);
    free(out);

    /* Remove a disk, add one, rename, encrypt. */
    v.disks[0] = v.disks[1];
    strcpy(v.disks[1].disk_id, "scsi0:3");
    strcpy(v.disks[1].file_name, "vm2_3.vmdk");
    strcpy(v.name, "vm2");
    v.storage_policy[0] = '\0';
    v.memory_bytes = (uint64_t)2048 << 20;
    char *ks = make_key_safe("kms1", "kek-1");
    assert_int_equal(vmenc_wrapped_key_parse_text(ks, strlen(ks), &v.key_safe), VMENC_OK);
    vmenc_dek *key = make_dek(3);
    char *sealed = sealed_example(key, UUID1);
    assert_int_equal(vm_vmx_sync(&v, sealed), VMENC_OK);
    assert_string_equal(v.sealed_data, sealed);
    out = vmx_serialize(&v);
    assert_null(strstr(out, "scsi0:0."));
    assert_non_null(strstr(out, "scsi0:1.fileName = \"../old.vmdk\"")); /* detached: kept */
    assert_non_null(strstr(out, "scsi0:3.present = \"TRUE\"\nscsi0:3.fileName = \"vm2_3.vmdk\"\n"));
    assert_null(strstr(out, "storagePolicy"));
    assert_non_null(strstr(out, "memSize = \"2048\""));
    vm_vmx v2;
    assert_int_equal(vmx_parse_str(out, &v2), VMENC_OK);
    assert_string_equal(v2.name, "vm2");
    assert_int_equal(v2.num_disks, 2);
    assert_string_equal(v2.disks[0].disk_id, "scsi1:2");
    assert_string_equal(v2.disks[1].disk_id, "scsi0:3");
    assert_non_null(v2.key_safe);
    assert_string_equal(v2.sealed_data, sealed);
    vm_kv *opened = NULL;
    assert_int_equal(vm_sealed_open(key, v2.uuid, v2.sealed_data, &opened), VMENC_OK);
    assert_string_equal(vm_kv_get(opened, "guestinfo.password"), "hunter2");
    vm_kv_free(opened);
    /* Decrypting: drop key and data. */
    vmenc_wrapped_key_free(v2.key_safe);
    v2.key_safe = NULL;
    assert_int_equal(vm_vmx_sync(&v2, sealed), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_vmx_sync(&v2, NULL), VMENC_OK);
    assert_null(v2.sealed_data);
    char *out2 = vmx_serialize(&v2);
    assert_null(strstr(out2, "encryption."));
    free(out2);
    /* Bad fields are refused by sync. */
    strcpy(v2.name, "../x");
    assert_int_equal(vm_vmx_sync(&v2, NULL), VMENC_E_INVALID_ARG);
    strcpy(v2.name, "ok");
    v2.memory_bytes = 12345;
    assert_int_equal(vm_vmx_sync(&v2, NULL), VMENC_E_INVALID_ARG);
    v2.memory_bytes = 1 << 20;
    strcpy(v2.disks[0].file_name, "/etc/passwd");
    assert_int_equal(vm_vmx_sync(&v2, NULL), VMENC_E_BAD_PATH);
    vm_vmx_cleanup(&v2);
    vm_vmx_cleanup(&v);
    vm_vmx_cleanup(NULL);
    /* A VM built from nothing. */
    vm_vmx n;
    memset(&n, 0, sizeof(n));
    strcpy(n.name, "fresh");
    strcpy(n.uuid, UUID2);
    n.memory_bytes = 64 << 20;
    assert_int_equal(vm_vmx_sync(&n, NULL), VMENC_OK);
    out2 = vmx_serialize(&n);
    vm_vmx n2;
    assert_int_equal(vmx_parse_str(out2, &n2), VMENC_OK);
    assert_string_equal(n2.name, "fresh");
    free(out2);
    vm_vmx_cleanup(&n);
    vm_vmx_cleanup(&n2);
    free(out);
    free(sealed);
    vmenc_dek_free(key);
    free(ks);
    free(text);
}

static void vmx_rejects(const char *text, const char *from, const char *to, vmenc_status want) {
    char *bad = replace(text, from, to);
    vm_vmx v;
    memset(&v, 0x5a, sizeof(v));
    assert_int_equal(vmx_parse_str(bad, &v), want);
    if (want == VMENC_OK)
        vm_vmx_cleanup(&v);
    free(bad);
}

static void test_vmx_rejects(void **state) {
    (void)state;
    char *ks = make_key_safe("kms1", "kek-1");
    vmenc_dek *key = make_dek(3);
    char *sealed = sealed_example(key, UUID1);
    char *text = vmx_text(ks, sealed);
    vm_vmx v;
    assert_int_equal(vmx_parse_str(text, &v), VMENC_OK);
    vm_vmx_cleanup(&v);
    vmx_rejects(text, "\"vm1.vmdk\"", "\"../vm1.vmdk\"", VMENC_E_BAD_PATH);
    vmx_rejects(text, "\"vm1.vmdk\"", "\"/etc/passwd\"", VMENC_E_BAD_PATH);
    vmx_rejects(text, "scsi0:0.fileName = \"vm1.vmdk\"\n", "", VMENC_E_PARSE);
    vmx_rejects(text, "scsi0:0.present = \"TRUE\"", "scsi0:0.present = \"yes\"", VMENC_E_PARSE);
    vmx_rejects(text, "scsi1:2.", "scsi9:2.", VMENC_E_PARSE);
    vmx_rejects(text, "displayName = \"vm1\"", "displayName = \"../vm1\"", VMENC_E_PARSE);
    vmx_rejects(text, "displayName = \"vm1\"\n", "", VMENC_E_PARSE);
    vmx_rejects(text, UUID1, "nope", VMENC_E_PARSE);
    vmx_rejects(text, "vmenc.version = \"1\"", "vmenc.version = \"2\"", VMENC_E_BAD_VERSION);
    vmx_rejects(text, "guestOS", "vmenc.guestOS", VMENC_E_PARSE);
    vmx_rejects(text, "guestOS", "encryption.guestOS", VMENC_E_PARSE);
    vmx_rejects(text, "memSize = \"1024\"", "memSize = \"0\"", VMENC_E_PARSE);
    vmx_rejects(text, "memSize = \"1024\"", "memSize = \"1k\"", VMENC_E_PARSE);
    vmx_rejects(text, ".encoding = \"UTF-8\"", ".encoding = \"latin1\"", VMENC_E_PARSE);
    vmx_rejects(text, "encryption.keySafe = \"vmwk1:", "encryption.keySafe = \"vmwk9:", VMENC_E_BAD_MAGIC);
    vmx_rejects(text, "encryption.data = \"vmsd1:", "encryption.data = \"vmsd2:", VMENC_E_BAD_MAGIC);
    vmx_rejects(text, "encryption.data = \"vmsd1:", "encryption.data = \"vmsd1:A", VMENC_E_BAD_ENCODING);
    vmx_rejects(text, "encryption.keySafe", "x.keySafe", VMENC_E_PARSE); /* data without key */
    vmx_rejects(text, "displayName", "displayname = \"x\"\ndisplayName", VMENC_OK);
    vmx_rejects(text, "guestOS", "displayName", VMENC_E_PARSE); /* duplicate */
    free(text);
    free(sealed);
    vmenc_dek_free(key);
    free(ks);
}

/* ---- sealed ----------------------------------------------------------------------- */

static void test_derive_key(void **state) {
    (void)state;
    vmenc_dek *k1 = make_dek(1), *k2 = make_dek(2);
    uint8_t *a = vmenc_secure_alloc(32), *b = vmenc_secure_alloc(32);
    assert_int_equal(vm_derive_key(k1, "config-v1", (const uint8_t *)UUID1, 36, a), VMENC_OK);
    assert_int_equal(vm_derive_key(k1, "config-v1", (const uint8_t *)UUID1, 36, b), VMENC_OK);
    assert_memory_equal(a, b, 32);
    /* Independent BLAKE2b computation of the documented construction. */
    uint8_t msg[6 + 9 + 1 + 36], want[32];
    memcpy(msg, "vmenc/config-v1", 15);
    msg[15] = 0;
    memcpy(msg + 16, UUID1, 36);
    assert_int_equal(crypto_generichash(want, 32, msg, sizeof(msg), vmenc_dek_bytes_internal(k1), 64), 0);
    assert_memory_equal(a, want, 32);
    assert_int_equal(vm_derive_key(k2, "config-v1", (const uint8_t *)UUID1, 36, b), VMENC_OK);
    assert_memory_not_equal(a, b, 32);
    assert_int_equal(vm_derive_key(k1, "statefile-v1", (const uint8_t *)UUID1, 36, b), VMENC_OK);
    assert_memory_not_equal(a, b, 32);
    assert_int_equal(vm_derive_key(k1, "config-v1", (const uint8_t *)UUID2, 36, b), VMENC_OK);
    assert_memory_not_equal(a, b, 32);
    assert_int_equal(vm_derive_key(k1, "config-v1", NULL, 0, b), VMENC_OK);
    assert_int_equal(vm_derive_key(NULL, "config-v1", NULL, 0, b), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_derive_key(k1, "", NULL, 0, b), VMENC_E_INVALID_ARG);
    vmenc_secure_free(a);
    vmenc_secure_free(b);
    vmenc_dek_free(k1);
    vmenc_dek_free(k2);
}

static void test_sealed(void **state) {
    (void)state;
    vmenc_dek *k1 = make_dek(1), *k2 = make_dek(2);
    char *sealed = sealed_example(k1, UUID1);
    assert_int_equal(vm_sealed_decode_outer(sealed, strlen(sealed)), VMENC_OK);
    vm_kv *kv = NULL;
    assert_int_equal(vm_sealed_open(k1, UUID1, sealed, &kv), VMENC_OK);
    assert_string_equal(vm_kv_get(kv, "guestinfo.password"), "hunter2");
    vm_kv_free(kv);
    /* Two seals of the same entries differ (random nonce). */
    char *again = sealed_example(k1, UUID1);
    assert_string_not_equal(sealed, again);
    free(again);
    /* Other VM, other key. */
    kv = NULL;
    assert_int_equal(vm_sealed_open(k1, UUID2, sealed, &kv), VMENC_E_AUTH);
    assert_int_equal(vm_sealed_open(k2, UUID1, sealed, &kv), VMENC_E_AUTH);
    assert_null(kv);
    /* Every character changed to another base64 character: never opens. */
    size_t len = strlen(sealed);
    for (size_t i = 6; i < len; i++) {
        if (sealed[i] == '=')
            continue;
        char *t = strdup(sealed);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        vmenc_status rv = vm_sealed_open(k1, UUID1, t, &kv);
        assert_true(rv == VMENC_E_AUTH || rv == VMENC_E_BAD_ENCODING);
        assert_null(kv);
        free(t);
    }
    /* Truncations. */
    for (size_t cut = 0; cut < len; cut++) {
        char *t = strndup(sealed, cut);
        assert_int_not_equal(vm_sealed_open(k1, UUID1, t, &kv), VMENC_OK);
        free(t);
    }
    assert_int_equal(vm_sealed_decode_outer("vmsd1:", 6), VMENC_E_TRUNCATED);
    assert_int_equal(vm_sealed_decode_outer("vmsd1:AAAA", 10), VMENC_E_TRUNCATED);
    assert_int_equal(vm_sealed_decode_outer("vmsd", 4), VMENC_E_BAD_MAGIC);
    assert_int_equal(vm_sealed_decode_outer("vmwk1:AAAA", 10), VMENC_E_BAD_MAGIC);
    assert_int_equal(vm_sealed_decode_outer("vmsd1:AAB=", 10), VMENC_E_BAD_ENCODING); /* non-canonical */
    assert_int_equal(vm_sealed_decode_outer("vmsd1:AA==\n", 11), VMENC_E_BAD_ENCODING);
    assert_int_equal(vm_sealed_decode_outer("vmsd1:A-_A", 10), VMENC_E_BAD_ENCODING);
    /* Empty secret set. */
    vm_kv *empty = NULL;
    assert_int_equal(vm_kv_new(&empty), VMENC_OK);
    char *s2 = NULL;
    assert_int_equal(vm_sealed_seal(k1, UUID1, empty, &s2), VMENC_OK);
    assert_int_equal(vm_sealed_open(k1, UUID1, s2, &kv), VMENC_OK);
    assert_int_equal(vm_kv_num_entries(kv), 0);
    vm_kv_free(kv);
    free(s2);
    /* Too large for one value. */
    char *big = malloc(60000);
    memset(big, 'x', 59999);
    big[59999] = '\0';
    assert_int_equal(vm_kv_set(empty, "big", big), VMENC_OK);
    assert_int_equal(vm_sealed_seal(k1, UUID1, empty, &s2), VMENC_E_TOO_LARGE);
    assert_int_equal(vm_sealed_seal(k1, "not-a-uuid", empty, &s2), VMENC_E_INVALID_ARG);
    free(big);
    vm_kv_free(empty);
    free(sealed);
    vmenc_dek_free(k1);
    vmenc_dek_free(k2);
}


/* ---- state files ------------------------------------------------------------------ */

#define CH 65536u
#define REC (CH + 28u)

typedef struct sf_env {
    tmpdir t;
    vmenc_dek *key;
    vmenc_dek *other_key;
} sf_env;

static void sf_env_make(sf_env *e) {
    tmpdir_make(&e->t);
    e->key = make_dek(5);
    e->other_key = make_dek(6);
}

static void sf_env_free(sf_env *e) {
    vmenc_dek_free(e->key);
    vmenc_dek_free(e->other_key);
    tmpdir_remove(&e->t);
}

static vm_sf *sf_open_ok(sf_env *e, const char *name, uint8_t cls, uint32_t index, uint32_t flags) {
    vm_sf *f = NULL;
    assert_int_equal(vm_sf_open(e->t.fd, name, cls, index, UUID1, e->key, flags, false, &f), VMENC_OK);
    return f;
}

static vmenc_status sf_try_open(sf_env *e, const char *name, uint8_t cls, uint32_t index, const char *uuid,
                                const vmenc_dek *key) {
    vm_sf *f = (vm_sf *)0x1;
    vmenc_status rv = vm_sf_open(e->t.fd, name, cls, index, uuid, key, 0, false, &f);
    if (rv == VMENC_OK)
        assert_int_equal(vm_sf_close(f), VMENC_OK);
    else
        assert_ptr_equal(f, (vm_sf *)0x1);
    return rv;
}

static void fill_random(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
}

static void sf_check_content(vm_sf *f, const uint8_t *model, size_t size) {
    uint64_t got_size = 0;
    assert_int_equal(vm_sf_size(f, &got_size), VMENC_OK);
    assert_int_equal(got_size, size);
    uint8_t *buf = malloc(size + 100);
    size_t n = 0;
    assert_int_equal(vm_sf_pread(f, 0, size + 100, buf, &n), VMENC_OK);
    assert_int_equal(n, size);
    if (size > 0)
        assert_memory_equal(buf, model, size);
    free(buf);
}

static uint64_t file_size(const tmpdir *t, const char *name) {
    struct stat st;
    assert_int_equal(fstatat(t->fd, name, &st, AT_SYMLINK_NOFOLLOW), 0);
    return (uint64_t)st.st_size;
}

static void test_sf_model(void **state) {
    (void)state;
    sf_env e;
    sf_env_make(&e);
    const size_t cap = 5 * CH + 1000;
    uint8_t *model = calloc(1, cap), *buf = malloc(cap), *data = malloc(cap);
    size_t size = 0;
    vm_sf *f = sf_open_ok(&e, "vm1.nvram", 1, 0, VMENC_VM_FILE_CREATE);
    for (int op = 0; op < 300; op++) {
        uint64_t r = rnd();
        size_t off = (size_t)(rnd() % (4 * CH));
        size_t len = (r & 3) == 0 ? (size_t)(rnd() % (2 * CH + 5)) : (size_t)(rnd() % 5000);
        if (off + len > cap)
            len = cap - off;
        if ((r >> 8) % 3 != 0) {
            fill_random(data, len);
            assert_int_equal(vm_sf_pwrite(f, off, data, len), VMENC_OK);
            memcpy(model + off, data, len);
            if (len > 0 && off + len > size)
                size = off + len;
        } else {
            size_t n = 0;
            assert_int_equal(vm_sf_pread(f, off, len, buf, &n), VMENC_OK);
            size_t want = off >= size ? 0 : (size - off < len ? size - off : len);
            assert_int_equal(n, want);
            if (n > 0)
                assert_memory_equal(buf, model + off, n);
        }
        if (op % 50 == 49) { /* reopen: everything came from disk */
            assert_int_equal(vm_sf_close(f), VMENC_OK);
            f = sf_open_ok(&e, "vm1.nvram", 1, 0, 0);
            sf_check_content(f, model, size);
        }
    }
    sf_check_content(f, model, size);
    assert_int_equal(vm_sf_close(f), VMENC_OK);
    /* On disk: header + records exactly as documented. */
    uint64_t n = size == 0 ? 1 : (size + CH - 1) / CH;
    assert_int_equal(file_size(&e.t, "vm1.nvram"), 64 + (n - 1) * REC + 28 + (size - (n - 1) * CH));
    free(model);
    free(buf);
    free(data);
    sf_env_free(&e);
}

static void test_sf_empty_and_exact_chunks(void **state) {
    (void)state;
    sf_env e;
    sf_env_make(&e);
    vm_sf *f = sf_open_ok(&e, "e.vmss", 2, 0, VMENC_VM_FILE_CREATE);
    uint8_t buf[16];
    size_t n = 99;
    assert_int_equal(vm_sf_pread(f, 0, sizeof(buf), buf, &n), VMENC_OK);
    assert_int_equal(n, 0);
    assert_int_equal(vm_sf_pwrite(f, 1000, buf, 0), VMENC_OK); /* no-op: does not extend */
    assert_int_equal(vm_sf_close(f), VMENC_OK);
    assert_int_equal(file_size(&e.t, "e.vmss"), 64 + 28);
    f = sf_open_ok(&e, "e.vmss", 2, 0, 0);
    uint64_t size = 1;
    assert_int_equal(vm_sf_size(f, &size), VMENC_OK);
    assert_int_equal(size, 0);
    /* Exactly three chunks: the last record is full, no empty record follows. */
    uint8_t *data = malloc(3 * CH);
    fill_random(data, 3 * CH);
    assert_int_equal(vm_sf_pwrite(f, 0, data, 3 * CH), VMENC_OK);
    assert_int_equal(vm_sf_close(f), VMENC_OK);
    assert_int_equal(file_size(&e.t, "e.vmss"), 64 + 3 * (uint64_t)REC);
    f = sf_open_ok(&e, "e.vmss", 2, 0, 0);
    sf_check_content(f, data, 3 * CH);
    /* A gap reads as zeros. */
    assert_int_equal(vm_sf_pwrite(f, 5 * CH + 7, data, 1), VMENC_OK);
    uint8_t *all = calloc(1, 5 * CH + 8);
    memcpy(all, data, 3 * CH);
    all[5 * CH + 7] = data[0];
    sf_check_content(f, all, 5 * CH + 8);
    assert_int_equal(vm_sf_close(f), VMENC_OK);
    /* TRUNCATE starts empty with a new file ID. */
    f = sf_open_ok(&e, "e.vmss", 2, 0, VMENC_VM_FILE_TRUNCATE);
    sf_check_content(f, NULL, 0);
    assert_int_equal(vm_sf_close(f), VMENC_OK);
    free(all);
    free(data);
    sf_env_free(&e);
}

/* make_file writes |size| random bytes into a new AEAD file and returns them. */
static uint8_t *make_file(sf_env *e, const char *name, uint8_t cls, uint32_t index, size_t size) {
    uint8_t *data = malloc(size + 1);
    fill_random(data, size);
    vm_sf *f = sf_open_ok(e, name, cls, index, VMENC_VM_FILE_CREATE);
    assert_int_equal(vm_sf_pwrite(f, 0, data, size), VMENC_OK);
    assert_int_equal(vm_sf_close(f), VMENC_OK);
    return data;
}

static void truncate_to(sf_env *e, const char *name, uint64_t len) {
    int fd = openat(e->t.fd, name, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)len), 0);
    close(fd);
}

static void copy_file(sf_env *e, const char *from, const char *to) {
    size_t len = 0;
    uint8_t *b = get_file(&e->t, from, &len);
    put_file(&e->t, to, b, len);
    free(b);
}

static void test_sf_truncation(void **state) {
    (void)state;
    sf_env e;
    sf_env_make(&e);
    const size_t size = 3 * CH + 500;
    uint8_t *data = make_file(&e, "a.nvram", 1, 0, size);
    struct {
        uint64_t len;
        vmenc_status want;
    } cuts[] = {
        {0, VMENC_E_TRUNCATED},
        {63, VMENC_E_TRUNCATED},
        {64, VMENC_E_TRUNCATED},
        {64 + 27, VMENC_E_TRUNCATED},
        {64 + 28, VMENC_E_AUTH},                   /* record 0 read as an empty last record */
        {64 + REC, VMENC_E_AUTH},                  /* at a boundary: record 0 is not the last */
        {64 + 2 * (uint64_t)REC, VMENC_E_AUTH},
        {64 + 3 * (uint64_t)REC, VMENC_E_AUTH},
        {64 + 3 * (uint64_t)REC + 10, VMENC_E_TRUNCATED}, /* inside a nonce */
        {64 + 3 * (uint64_t)REC + 28, VMENC_E_TRUNCATED},
        {64 + 3 * (uint64_t)REC + 28 + 499, VMENC_E_AUTH}, /* one byte short */
        {64 + REC + 100, VMENC_E_AUTH},
    };
    for (size_t i = 0; i < VMENC_ARRAY_LEN(cuts); i++) {
        copy_file(&e, "a.nvram", "b.nvram");
        truncate_to(&e, "b.nvram", cuts[i].len);
        assert_int_equal(sf_try_open(&e, "b.nvram", 1, 0, UUID1, e.key), cuts[i].want);
    }
    /* An appended record, or a byte appended. */
    copy_file(&e, "a.nvram", "b.nvram");
    int fd = openat(e.t.fd, "b.nvram", O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, "x", 1), 1);
    close(fd);
    assert_int_equal(sf_try_open(&e, "b.nvram", 1, 0, UUID1, e.key), VMENC_E_AUTH);
    /* An existing empty file is a truncation even with CREATE. */
    put_file(&e.t, "z.nvram", "", 0);
    vm_sf *f = NULL;
    assert_int_equal(vm_sf_open(e.t.fd, "z.nvram", 1, 0, UUID1, e.key, VMENC_VM_FILE_CREATE, false, &f),
                     VMENC_E_TRUNCATED);
    assert_int_equal(vm_sf_open(e.t.fd, "none.nvram", 1, 0, UUID1, e.key, 0, false, &f), VMENC_E_NOT_FOUND);
    free(data);
    sf_env_free(&e);
}

static void flip_byte(sf_env *e, const char *name, uint64_t off) {
    int fd = openat(e->t.fd, name, O_RDWR);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x01;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

/* read_chunk_status reads chunk |i| of an opened file; on failure the
 * buffer must hold no file data. */
static vmenc_status read_chunk_status(sf_env *e, const char *name, uint64_t i) {
    vm_sf *f = sf_open_ok(e, name, 1, 0, VMENC_VM_FILE_READONLY);
    uint8_t *buf = malloc(CH);
    memset(buf, 0xee, CH);
    size_t n = 7;
    vmenc_status rv = vm_sf_pread(f, i * CH, CH, buf, &n);
    if (rv != VMENC_OK) {
        assert_int_equal(n, 0);
        for (size_t j = 0; j < CH; j++)
            assert_int_equal(buf[j], 0);
    }
    assert_int_equal(vm_sf_close(f), VMENC_OK);
    free(buf);
    return rv;
}

static void test_sf_tamper(void **state) {
    (void)state;
    sf_env e;
    sf_env_make(&e);
    const size_t size = 3 * CH + 500;
    uint8_t *data = make_file(&e, "a.nvram", 1, 0, size);
    /* Header. */
    struct {
        uint64_t off;
        vmenc_status want;
    } hdr[] = {{0, VMENC_E_BAD_MAGIC}, {9, VMENC_E_BAD_VERSION}, {10, VMENC_E_PARSE}, {11, VMENC_E_PARSE},
               {14, VMENC_E_PARSE},    {19, VMENC_E_PARSE},      {20, VMENC_E_AUTH},  {35, VMENC_E_AUTH},
               {36, VMENC_E_PARSE},    {63, VMENC_E_PARSE}};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(hdr); i++) {
        copy_file(&e, "a.nvram", "b.nvram");
        flip_byte(&e, "b.nvram", hdr[i].off);
        assert_int_equal(sf_try_open(&e, "b.nvram", 1, 0, UUID1, e.key), hdr[i].want);
    }
    /* Nonce, ciphertext and tag of a middle record: open works (the last
     * record is intact), reading that chunk fails, its neighbours read. */
    uint64_t rec1 = 64 + REC;
    uint64_t offs[] = {rec1, rec1 + 11, rec1 + 12, rec1 + 12 + CH / 2, rec1 + 12 + CH - 1, rec1 + 12 + CH,
                       rec1 + REC - 1};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(offs); i++) {
        copy_file(&e, "a.nvram", "b.nvram");
        flip_byte(&e, "b.nvram", offs[i]);
        assert_int_equal(read_chunk_status(&e, "b.nvram", 1), VMENC_E_AUTH);
        assert_int_equal(read_chunk_status(&e, "b.nvram", 0), VMENC_OK);
        assert_int_equal(read_chunk_status(&e, "b.nvram", 2), VMENC_OK);
    }
    /* The last record: open fails. */
    copy_file(&e, "a.nvram", "b.nvram");
    flip_byte(&e, "b.nvram", 64 + 3 * (uint64_t)REC + 20);
    assert_int_equal(sf_try_open(&e, "b.nvram", 1, 0, UUID1, e.key), VMENC_E_AUTH);
    /* Two records swapped. */
    copy_file(&e, "a.nvram", "b.nvram");
    {
        int fd = openat(e.t.fd, "b.nvram", O_RDWR);
        uint8_t *r0 = malloc(REC), *r1 = malloc(REC);
        assert_int_equal(pread(fd, r0, REC, 64), REC);
        assert_int_equal(pread(fd, r1, REC, 64 + REC), REC);
        assert_int_equal(pwrite(fd, r1, REC, 64), REC);
        assert_int_equal(pwrite(fd, r0, REC, 64 + REC), REC);
        close(fd);
        free(r0);
        free(r1);
    }
    assert_int_equal(read_chunk_status(&e, "b.nvram", 0), VMENC_E_AUTH);
    assert_int_equal(read_chunk_status(&e, "b.nvram", 1), VMENC_E_AUTH);
    assert_int_equal(read_chunk_status(&e, "b.nvram", 2), VMENC_OK);
    /* A record copied from another file of the same VM, same class and
     * position (different file ID). */
    uint8_t *other = make_file(&e, "o.nvram", 1, 0, size);
    copy_file(&e, "a.nvram", "b.nvram");
    {
        int src = openat(e.t.fd, "o.nvram", O_RDONLY), dst = openat(e.t.fd, "b.nvram", O_RDWR);
        uint8_t *r = malloc(REC);
        assert_int_equal(pread(src, r, REC, 64 + REC), REC);
        assert_int_equal(pwrite(dst, r, REC, 64 + REC), REC);
        close(src);
        close(dst);
        free(r);
    }
    assert_int_equal(read_chunk_status(&e, "b.nvram", 1), VMENC_E_AUTH);
    /* Even with the other file's header too: then the other records fail. */
    {
        int src = openat(e.t.fd, "o.nvram", O_RDONLY), dst = openat(e.t.fd, "b.nvram", O_RDWR);
        uint8_t h[64];
        assert_int_equal(pread(src, h, 64, 0), 64);
        assert_int_equal(pwrite(dst, h, 64, 0), 64);
        close(src);
        close(dst);
    }
    assert_int_equal(sf_try_open(&e, "b.nvram", 1, 0, UUID1, e.key), VMENC_E_AUTH);
    /* A whole file under another class, index, VM or key. */
    copy_file(&e, "a.nvram", "a.vmss");
    assert_int_equal(sf_try_open(&e, "a.vmss", 2, 0, UUID1, e.key), VMENC_E_PARSE);
    assert_int_equal(sf_try_open(&e, "a.vmss", 1, 1, UUID1, e.key), VMENC_E_PARSE);
    assert_int_equal(sf_try_open(&e, "a.vmss", 1, 0, UUID2, e.key), VMENC_E_AUTH);
    assert_int_equal(sf_try_open(&e, "a.vmss", 1, 0, UUID1, e.other_key), VMENC_E_AUTH);
    assert_int_equal(sf_try_open(&e, "a.vmss", 1, 0, UUID1, e.key), VMENC_OK); /* a copy is a copy */
    /* The original was never harmed. */
    vm_sf *f = sf_open_ok(&e, "a.nvram", 1, 0, VMENC_VM_FILE_READONLY);
    sf_check_content(f, data, size);
    assert_int_equal(vm_sf_pwrite(f, 0, data, 1), VMENC_E_BAD_STATE);
    assert_int_equal(vm_sf_close(f), VMENC_OK);
    free(other);
    free(data);
    sf_env_free(&e);
}

static void test_sf_header_and_args(void **state) {
    (void)state;
    uint8_t h[64] = "VMENCSF1";
    h[9] = 1;
    h[10] = 4;
    h[13] = 0x01; /* chunk size 65536 */
    h[19] = 7;
    h[20] = 0xaa;
    uint8_t cls = 0, id[16];
    uint32_t index = 0;
    assert_int_equal(vm_sf_parse_header(h, 64, &cls, &index, id), VMENC_OK);
    assert_int_equal(cls, 4);
    assert_int_equal(index, 7);
    assert_int_equal(id[0], 0xaa);
    assert_int_equal(vm_sf_parse_header(h, 63, NULL, NULL, NULL), VMENC_E_TRUNCATED);
    h[10] = 5;
    assert_int_equal(vm_sf_parse_header(h, 64, NULL, NULL, NULL), VMENC_E_PARSE);
    h[10] = 0;
    assert_int_equal(vm_sf_parse_header(h, 64, NULL, NULL, NULL), VMENC_E_PARSE);

    sf_env e;
    sf_env_make(&e);
    vm_sf *f = NULL;
    const uint32_t C = VMENC_VM_FILE_CREATE;
    assert_int_equal(vm_sf_open(e.t.fd, "../x", 1, 0, UUID1, e.key, C, false, &f), VMENC_E_BAD_PATH);
    assert_int_equal(vm_sf_open(e.t.fd, "x", 5, 0, UUID1, e.key, C, false, &f), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_sf_open(e.t.fd, "x", 0, 0, UUID1, e.key, C, false, &f), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_sf_open(e.t.fd, "x", 1, 0, "bad", e.key, C, false, &f), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_sf_open(e.t.fd, "x", 1, 0, UUID1, e.key, 1u << 7, false, &f), VMENC_E_INVALID_ARG);
    assert_int_equal(vm_sf_open(e.t.fd, "x", 1, 0, UUID1, e.key, C | VMENC_VM_FILE_READONLY, false, &f),
                     VMENC_E_INVALID_ARG);
    assert_int_equal(symlinkat("/etc/passwd", e.t.fd, "l.nvram"), 0);
    assert_int_equal(vm_sf_open(e.t.fd, "l.nvram", 1, 0, UUID1, e.key, C, false, &f), VMENC_E_BAD_PATH);
    assert_int_equal(count_entries(&e.t), 1);
    sf_env_free(&e);
}

static void test_sf_plain_and_convert(void **state) {
    (void)state;
    sf_env e;
    sf_env_make(&e);
    const size_t size = 2 * CH + 1234;
    uint8_t *data = malloc(size);
    fill_random(data, size);
    vm_sf *f = NULL;
    assert_int_equal(vm_sf_open(e.t.fd, "p.vmem", 4, 0, NULL, NULL, VMENC_VM_FILE_CREATE, true, &f), VMENC_OK);
    assert_int_equal(vm_sf_pwrite(f, 0, data, size), VMENC_OK);
    sf_check_content(f, data, size);
    assert_int_equal(vm_sf_close(f), VMENC_OK);
    assert_int_equal(file_size(&e.t, "p.vmem"), size); /* raw bytes */

    /* plain -> AEAD */
    assert_int_equal(vm_sf_convert(e.t.fd, "p.vmem", 4, 0, NULL, NULL, UUID1, e.key, true), VMENC_OK);
    assert_int_equal(count_entries(&e.t), 1);
    assert_int_equal(file_size(&e.t, "p.vmem"), 64 + 2 * (uint64_t)REC + 28 + 1234);
    f = NULL;
    assert_int_equal(vm_sf_open(e.t.fd, "p.vmem", 4, 0, UUID1, e.key, 0, false, &f), VMENC_OK);
    sf_check_content(f, data, size);
    assert_int_equal(vm_sf_close(f), VMENC_OK);
    /* AEAD -> AEAD under another key and VM (a clone with new keys) */
    assert_int_equal(vm_sf_convert(e.t.fd, "p.vmem", 4, 0, UUID1, e.key, UUID2, e.other_key, false), VMENC_OK);
    assert_int_equal(sf_try_open(&e, "p.vmem", 4, 0, UUID1, e.key), VMENC_E_AUTH);
    assert_int_equal(vm_sf_open(e.t.fd, "p.vmem", 4, 0, UUID2, e.other_key, 0, false, &f), VMENC_OK);
    sf_check_content(f, data, size);
    assert_int_equal(vm_sf_close(f), VMENC_OK);
    /* Wrong source key: nothing changes, no temporary left. */
    assert_int_equal(vm_sf_convert(e.t.fd, "p.vmem", 4, 0, UUID1, e.key, NULL, NULL, false), VMENC_E_AUTH);
    assert_int_equal(count_entries(&e.t), 1);
    /* A tampered middle record stops the conversion; the file is kept. */
    flip_byte(&e, "p.vmem", 64 + REC + 100);
    assert_int_equal(vm_sf_convert(e.t.fd, "p.vmem", 4, 0, UUID2, e.other_key, NULL, NULL, false), VMENC_E_AUTH);
    assert_int_equal(count_entries(&e.t), 1);
    flip_byte(&e, "p.vmem", 64 + REC + 100);
    /* AEAD -> plain */
    assert_int_equal(vm_sf_convert(e.t.fd, "p.vmem", 4, 0, UUID2, e.other_key, NULL, NULL, true), VMENC_OK);
    size_t len = 0;
    uint8_t *raw = get_file(&e.t, "p.vmem", &len);
    assert_int_equal(len, size);
    assert_memory_equal(raw, data, size);
    free(raw);
    /* Empty file both ways. */
    assert_int_equal(vm_sf_open(e.t.fd, "q.nvram", 1, 0, NULL, NULL, VMENC_VM_FILE_CREATE, false, &f), VMENC_OK);
    assert_int_equal(vm_sf_close(f), VMENC_OK);
    assert_int_equal(vm_sf_convert(e.t.fd, "q.nvram", 1, 0, NULL, NULL, UUID1, e.key, false), VMENC_OK);
    assert_int_equal(file_size(&e.t, "q.nvram"), 92);
    assert_int_equal(vm_sf_convert(e.t.fd, "q.nvram", 1, 0, UUID1, e.key, NULL, NULL, false), VMENC_OK);
    assert_int_equal(file_size(&e.t, "q.nvram"), 0);
    free(data);
    sf_env_free(&e);
}

typedef struct sf_thread_arg {
    vm_sf *f;
    unsigned id;
    int failures;
} sf_thread_arg;

static void *sf_thread(void *p) {
    sf_thread_arg *a = p;
    uint8_t buf[3000], back[3000];
    uint64_t base = (uint64_t)a->id * 3 * CH / 2; /* regions share chunks with neighbours */
    for (int i = 0; i < 60; i++) {
        uint64_t off = base + (uint64_t)(i * 977) % (CH - sizeof(buf));
        for (size_t j = 0; j < sizeof(buf); j++)
            buf[j] = (uint8_t)(a->id * 31 + i + j);
        size_t n = 0;
        if (vm_sf_pwrite(a->f, off, buf, sizeof(buf)) != VMENC_OK ||
            vm_sf_pread(a->f, off, sizeof(back), back, &n) != VMENC_OK || n != sizeof(back) ||
            memcmp(buf, back, n) != 0)
            a->failures++;
    }
    return NULL;
}

static void test_sf_threads(void **state) {
    (void)state;
    sf_env e;
    sf_env_make(&e);
    vm_sf *f = sf_open_ok(&e, "t.vmem", 4, 3, VMENC_VM_FILE_CREATE);
    pthread_t th[4];
    sf_thread_arg args[4];
    for (unsigned i = 0; i < 4; i++) {
        args[i] = (sf_thread_arg){f, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, sf_thread, &args[i]), 0);
    }
    for (unsigned i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    assert_int_equal(vm_sf_close(f), VMENC_OK);
    assert_int_equal(sf_try_open(&e, "t.vmem", 4, 3, UUID1, e.key), VMENC_OK);
    sf_env_free(&e);
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
        cmocka_unit_test(test_descriptor_round_trip),
        cmocka_unit_test(test_descriptor_rejects),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_vmx_parse_and_sync),
        cmocka_unit_test(test_vmx_rejects),
        cmocka_unit_test(test_derive_key),
        cmocka_unit_test(test_sealed),
        cmocka_unit_test(test_sf_model),
        cmocka_unit_test(test_sf_empty_and_exact_chunks),
        cmocka_unit_test(test_sf_truncation),
        cmocka_unit_test(test_sf_tamper),
        cmocka_unit_test(test_sf_header_and_args),
        cmocka_unit_test(test_sf_plain_and_convert),
        cmocka_unit_test(test_sf_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
