/*
 * tests/test_coredump.c - encrypted host core dumps with the file key
 * provider: host key set-up, streaming write and privileged read, a dump of
 * 1 GiB written and read back with its peak RSS measured, hostile files
 * (truncated, edited, swapped, incomplete, another host's), password export
 * opened without any key provider, host-key rotation, and a rotation
 * interrupted by a simulated crash and resumed after a host restart.
 *
 * Under ASan/TSan the large dump shrinks to 64 MiB (compile-time check of
 * __SANITIZE_ADDRESS__ / __SANITIZE_THREAD__ / __has_feature): the point
 * there is the memory and thread checks, not the size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vm/format/coredump_format.h"
#include "vm/vm_internal.h"
#include "vm_fixture.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

#define MiB ((uint64_t)1 << 20)
#define LARGE_DUMP_BYTES (UNDER_SANITIZER ? 64 * MiB : 1024 * MiB)
/* Peak RSS may grow by at most this while a large dump streams through:
 * the format needs one 64 KiB chunk; the test's own buffer is 1 MiB. */
#define RSS_BOUND_KIB (16u * 1024u)

#define DIRCAP (PATH_MAX + 128)
#define PCAP (DIRCAP + 128)
#define OK(call) assert_int_equal((call), VMENC_OK)

static vmfix g_f;

static int setup(void **state) {
    (void)state;
    return vmfix_setup(&g_f, VMENC_HOST_NO_SYNC) == VMENC_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    vmfix_teardown(&g_f);
    return 0;
}

/* fill writes a position-dependent pattern, so any misplaced byte shows. */
static void fill(uint8_t *buf, size_t len, uint64_t pos) {
    for (size_t i = 0; i < len; i++) {
        uint64_t p = pos + i;
        buf[i] = (uint8_t)(p ^ (p >> 8) ^ (p >> 17) ^ 0x5a);
    }
}

static int g_dir_seq;

/* tmp_path: "<fixture dir>/<rel>" (checked, unlike a bare snprintf). */
static void tmp_path(const char *rel, char *out, size_t cap) {
    int n = snprintf(out, cap, "%s/%s", g_f.dir, rel);
    assert_true(n > 0 && (size_t)n < cap);
}

/* new_store makes an empty dump directory and opens a store on it. */
static vmenc_coredump_store *new_store(char *dir_out, size_t cap) {
    char rel[64];
    snprintf(rel, sizeof(rel), "dumps%d", g_dir_seq++);
    tmp_path(rel, dir_out, cap);
    assert_int_equal(mkdir(dir_out, 0700), 0);
    vmenc_coredump_store *st = NULL;
    OK(vmenc_coredump_store_open(g_f.host, dir_out, &st));
    return st;
}

static vmenc_coredump_store *keyed_store(char *dir_out, size_t cap) {
    vmenc_coredump_store *st = new_store(dir_out, cap);
    OK(vmenc_coredump_set_host_key(st, "alice", "kms-a", NULL));
    return st;
}

/* write_dump writes |len| pattern bytes in pieces of odd sizes. */
static void write_dump(vmenc_coredump_store *st, size_t len, char id[VMENC_COREDUMP_ID_LEN + 1]) {
    vmenc_coredump_writer *w = NULL;
    OK(vmenc_coredump_writer_new(st, "vmkernel", "vmkernel", &w));
    snprintf(id, VMENC_COREDUMP_ID_LEN + 1, "%s", vmenc_coredump_writer_id(w));
    uint8_t *buf = malloc(70001);
    assert_non_null(buf);
    for (size_t pos = 0; pos < len;) {
        size_t n = len - pos < 70001 ? len - pos : 70001 - (pos % 3);
        fill(buf, n, pos);
        OK(vmenc_coredump_write(w, buf, n));
        pos += n;
    }
    free(buf);
    OK(vmenc_coredump_writer_finish(w));
}

/* check_reader reads everything and compares with the pattern. */
static vmenc_status read_all(vmenc_coredump_reader *r, size_t expect_len) {
    uint8_t *buf = malloc(100000), *want = malloc(100000);
    assert_non_null(buf);
    assert_non_null(want);
    uint64_t size = 0, pos = 0;
    OK(vmenc_coredump_reader_get_size(r, &size));
    assert_int_equal(size, expect_len);
    vmenc_status s = VMENC_OK;
    for (;;) {
        size_t n = 0;
        s = vmenc_coredump_read(r, buf, 100000, &n);
        if (s != VMENC_OK || n == 0)
            break;
        fill(want, n, pos);
        assert_memory_equal(buf, want, n);
        pos += n;
    }
    if (s == VMENC_OK)
        assert_int_equal(pos, expect_len);
    free(buf);
    free(want);
    return s;
}

static vmenc_status open_and_read(vmenc_coredump_store *st, const char *who, const char *id, size_t len) {
    vmenc_coredump_reader *r = NULL;
    vmenc_status s = vmenc_coredump_open(st, who, id, &r);
    if (s != VMENC_OK) {
        assert_null(r);
        return s;
    }
    s = read_all(r, len);
    vmenc_coredump_reader_free(r);
    return s;
}

static void file_path(const char *dir, const char *id, const char *suffix, char *out, size_t cap) {
    int n = snprintf(out, cap, "%s/%s%s", dir, id, suffix);
    assert_true(n > 0 && (size_t)n < cap);
}

static size_t count(const char *op, const char *outcome) {
    const char *needles[] = {op, outcome, NULL};
    return vmfix_count_events(&g_f, needles);
}

/* ---- tests ------------------------------------------------------------------------ */

static long peak_rss_kib(void) {
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_maxrss;
}

static void test_large_dump_bounded_memory(void **state) {
    (void)state;
    char dir[DIRCAP];
    vmenc_coredump_store *st = keyed_store(dir, sizeof(dir));
    const size_t piece = (size_t)MiB;
    uint8_t *buf = malloc(piece);
    assert_non_null(buf);
    fill(buf, piece, 0);
    long before = peak_rss_kib();
    vmenc_coredump_writer *w = NULL;
    OK(vmenc_coredump_writer_new(st, "vmkernel", "vmkernel", &w));
    char id[VMENC_COREDUMP_ID_LEN + 1];
    snprintf(id, sizeof(id), "%s", vmenc_coredump_writer_id(w));
    for (uint64_t pos = 0; pos < LARGE_DUMP_BYTES; pos += piece) {
        buf[0] = (uint8_t)(pos >> 20); /* every MiB differs */
        OK(vmenc_coredump_write(w, buf, piece));
    }
    OK(vmenc_coredump_writer_finish(w));
    long after_write = peak_rss_kib();

    vmenc_coredump_reader *r = NULL;
    OK(vmenc_coredump_open(st, "alice", id, &r));
    uint64_t size = 0, pos = 0;
    OK(vmenc_coredump_reader_get_size(r, &size));
    assert_int_equal(size, LARGE_DUMP_BYTES);
    uint8_t *back = malloc(piece);
    assert_non_null(back);
    for (;;) {
        size_t n = 0, got = 0;
        while (got < piece) { /* reads stop at chunk ends; fill a whole MiB */
            OK(vmenc_coredump_read(r, back + got, piece - got, &n));
            if (n == 0)
                break;
            got += n;
        }
        if (got == 0)
            break;
        assert_int_equal(got, piece);
        buf[0] = (uint8_t)(pos >> 20);
        assert_memory_equal(back, buf, piece);
        pos += got;
    }
    assert_int_equal(pos, LARGE_DUMP_BYTES);
    vmenc_coredump_reader_free(r);
    long after_read = peak_rss_kib();
    printf("# large dump: %llu MiB, peak RSS %ld KiB before, %ld after write, %ld after read\n",
           (unsigned long long)(LARGE_DUMP_BYTES / MiB), before, after_write, after_read);
    assert_true(after_write - before < (long)RSS_BOUND_KIB);
    assert_true(after_read - before < (long)RSS_BOUND_KIB);
    char p[PCAP];
    file_path(dir, id, ".vmcore", p, sizeof(p));
    assert_int_equal(unlink(p), 0);
    free(buf);
    free(back);
    vmenc_coredump_store_free(st);
}

static void test_write_read_and_audit(void **state) {
    (void)state;
    char dir[DIRCAP];
    vmenc_coredump_store *st = keyed_store(dir, sizeof(dir));
    vmenc_coredump_store_info info = {.struct_size = sizeof(info)};
    OK(vmenc_coredump_store_get_info(st, &info));
    assert_true(info.has_host_key);
    assert_string_equal(info.key_provider, "kms-a");
    size_t sizes[] = {0, 1, 65535, 65536, 65537, 3 * 65536, 300000};
    char ids[7][VMENC_COREDUMP_ID_LEN + 1];
    size_t w0 = count("coredump.write", "success");
    for (size_t i = 0; i < 7; i++)
        write_dump(st, sizes[i], ids[i]);
    assert_int_equal(count("coredump.write", "success") - w0, 7);
    OK(vmenc_coredump_store_get_info(st, &info));
    assert_int_equal(info.num_dumps, 7);
    for (size_t i = 0; i < 7; i++)
        OK(open_and_read(st, "alice", ids[i], sizes[i]));
    char listed[VMENC_COREDUMP_ID_LEN + 1];
    OK(vmenc_coredump_list(st, 6, listed, sizeof(listed)));
    assert_int_equal(vmenc_coredump_list(st, 7, listed, sizeof(listed)), VMENC_E_NOT_FOUND);
    /* The dump's key file names the host key; the data holds no plaintext. */
    char p[PCAP];
    file_path(dir, ids[6], ".vmcore-key", p, sizeof(p));
    size_t len = 0;
    uint8_t *text = vmfix_read_file(p, &len);
    assert_non_null(text);
    assert_non_null(strstr((char *)text, info.kek_id));
    assert_non_null(strstr((char *)text, "vmenc.hostId = \"esx01\""));
    free(text);
    file_path(dir, ids[6], ".vmcore", p, sizeof(p));
    uint8_t *data = vmfix_read_file(p, &len);
    uint8_t needle[64];
    fill(needle, sizeof(needle), 4096);
    assert_false(vmfix_contains(data, len, needle, sizeof(needle)));
    free(data);
    assert_true(count("coredump.read", "success") >= 7);
    vmenc_coredump_store_free(st);
}

static void test_read_denied_and_audited(void **state) {
    (void)state;
    char dir[DIRCAP], id[VMENC_COREDUMP_ID_LEN + 1];
    vmenc_coredump_store *st = keyed_store(dir, sizeof(dir));
    write_dump(st, 1000, id);
    size_t d0 = count("coredump.read", "denied");
    vmenc_coredump_reader *r = NULL;
    assert_int_equal(vmenc_coredump_open(st, "bob", id, &r), VMENC_E_DENIED);   /* NoCryptoAdmin */
    assert_int_equal(vmenc_coredump_open(st, "carol", id, &r), VMENC_E_DENIED); /* ReadOnly */
    assert_int_equal(vmenc_coredump_open(st, NULL, id, &r), VMENC_E_INVALID_ARG);
    assert_null(r);
    assert_int_equal(count("coredump.read", "denied") - d0, 3);
    vmenc_coredump_export_options eo = {.struct_size = sizeof(eo), .principal = "bob", .dump_id = id,
                                        .out_dir = dir, .password = (const uint8_t *)"pw", .password_len = 2};
    assert_int_equal(vmenc_coredump_export(st, &eo), VMENC_E_DENIED);
    assert_int_equal(count("coredump.export", "denied"), 1);
    /* Setting and rotating the host key need Cryptographer.RegisterHost. */
    assert_int_equal(vmenc_coredump_rotate_host_key(st, "bob", NULL, NULL, NULL), VMENC_E_DENIED);
    char dir2[DIRCAP];
    vmenc_coredump_store *st2 = new_store(dir2, sizeof(dir2));
    assert_int_equal(vmenc_coredump_set_host_key(st2, "bob", "kms-a", NULL), VMENC_E_DENIED);
    vmenc_coredump_writer *w = NULL;
    assert_int_equal(vmenc_coredump_writer_new(st2, "vmkernel", "vmkernel", &w), VMENC_E_BAD_STATE);
    assert_int_equal(vmenc_coredump_set_host_key(st, "alice", "kms-a", NULL), VMENC_E_EXISTS);
    vmenc_coredump_store_free(st2);
    vmenc_coredump_store_free(st);
}

static void test_write_needs_host_mode(void **state) {
    (void)state;
    char dir[DIRCAP];
    vmenc_coredump_store *st = keyed_store(dir, sizeof(dir));
    OK(vmenc_policy_set_host_state(g_f.policy, "esx01", VMENC_HOST_PENDING_INCAPABLE));
    vmenc_coredump_writer *w = NULL;
    size_t d0 = count("coredump.write", "denied");
    assert_int_equal(vmenc_coredump_writer_new(st, "vmkernel", "vmkernel", &w), VMENC_E_HOST_MODE);
    assert_int_equal(count("coredump.write", "denied") - d0, 1);
    OK(vmenc_policy_set_host_state(g_f.policy, "esx01", VMENC_HOST_INCAPABLE));
    OK(vmenc_policy_set_host_state(g_f.policy, "esx01", VMENC_HOST_PREPARED));
    OK(vmenc_policy_set_host_state(g_f.policy, "esx01", VMENC_HOST_SAFE));
    /* An abandoned dump leaves nothing behind and is audited. */
    size_t f0 = count("coredump.write", "failed");
    OK(vmenc_coredump_writer_new(st, "vmkernel", "hostd", &w));
    OK(vmenc_coredump_write(w, (const uint8_t *)"abc", 3));
    vmenc_coredump_writer_free(w);
    assert_int_equal(count("coredump.write", "failed") - f0, 1);
    vmenc_coredump_store_info info = {.struct_size = sizeof(info)};
    OK(vmenc_coredump_store_get_info(st, &info));
    assert_int_equal(info.num_dumps, 0);
    assert_int_equal(vmenc_coredump_writer_new(st, "vmkernel", "bad/source", &w), VMENC_E_INVALID_ARG);
    vmenc_coredump_store_free(st);
}

/* corrupt_at flips one byte of a file. */
static void corrupt_at(const char *path, long off) {
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, off, off < 0 ? SEEK_END : SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, -1, SEEK_CUR);
    fputc(c ^ 0x01, fp);
    fclose(fp);
}

static void copy_file(const char *from, const char *to) {
    size_t len = 0;
    uint8_t *b = vmfix_read_file(from, &len);
    assert_non_null(b);
    assert_int_equal(vmfix_write_file(to, b, len), 0);
    free(b);
}

static void test_edited_dump_detected(void **state) {
    (void)state;
    char dir[DIRCAP], id[VMENC_COREDUMP_ID_LEN + 1], p[PCAP];
    vmenc_coredump_store *st = keyed_store(dir, sizeof(dir));
    write_dump(st, 200000, id);
    file_path(dir, id, ".vmcore", p, sizeof(p));
    corrupt_at(p, 64 + 12 + 100); /* inside the first record's ciphertext */
    vmenc_coredump_reader *r = NULL;
    OK(vmenc_coredump_open(st, "alice", id, &r)); /* header and last record are fine */
    uint8_t buf[1000];
    size_t n = 99;
    assert_int_equal(vmenc_coredump_read(r, buf, sizeof(buf), &n), VMENC_E_AUTH);
    assert_int_equal(n, 0);
    vmenc_coredump_reader_free(r);
    corrupt_at(p, 64 + 12 + 100); /* restore */
    OK(open_and_read(st, "alice", id, 200000));
    corrupt_at(p, 20); /* header (file ID) */
    assert_int_equal(open_and_read(st, "alice", id, 200000), VMENC_E_AUTH);
    corrupt_at(p, 20);
    corrupt_at(p, 0); /* magic */
    assert_int_equal(open_and_read(st, "alice", id, 200000), VMENC_E_BAD_MAGIC);
    vmenc_coredump_store_free(st);
}

static void test_truncated_dump_detected(void **state) {
    (void)state;
    char dir[DIRCAP], id[VMENC_COREDUMP_ID_LEN + 1], p[PCAP];
    vmenc_coredump_store *st = keyed_store(dir, sizeof(dir));
    write_dump(st, 3 * 65536 + 10, id);
    file_path(dir, id, ".vmcore", p, sizeof(p));
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    /* Cut inside the last record, then exactly at a record boundary (the
     * previous record was sealed as "not last"), then to the header. */
    assert_int_equal(truncate(p, sb.st_size - 5), 0);
    vmenc_status s = open_and_read(st, "alice", id, 3 * 65536 + 10);
    assert_true(s == VMENC_E_AUTH || s == VMENC_E_TRUNCATED);
    assert_int_equal(truncate(p, 64 + 3 * (65536 + 28)), 0);
    assert_int_equal(open_and_read(st, "alice", id, 3 * 65536), VMENC_E_AUTH);
    assert_int_equal(truncate(p, 64), 0);
    assert_int_equal(open_and_read(st, "alice", id, 0), VMENC_E_TRUNCATED);
    assert_int_equal(truncate(p, 0), 0);
    assert_int_equal(open_and_read(st, "alice", id, 0), VMENC_E_TRUNCATED);
    vmenc_coredump_store_free(st);
}

static void test_swapped_and_foreign_dumps_detected(void **state) {
    (void)state;
    char dir[DIRCAP], a[VMENC_COREDUMP_ID_LEN + 1], b[VMENC_COREDUMP_ID_LEN + 1];
    char pa[PCAP], pb[PCAP];
    vmenc_coredump_store *st = keyed_store(dir, sizeof(dir));
    write_dump(st, 5000, a);
    write_dump(st, 5000, b);
    /* a's data under b's name: b's DEK and ID do not open it. */
    file_path(dir, a, ".vmcore", pa, sizeof(pa));
    file_path(dir, b, ".vmcore", pb, sizeof(pb));
    copy_file(pa, pb);
    assert_int_equal(open_and_read(st, "alice", b, 5000), VMENC_E_AUTH);
    /* a's key file under b's name names another dump. */
    file_path(dir, a, ".vmcore-key", pa, sizeof(pa));
    file_path(dir, b, ".vmcore-key", pb, sizeof(pb));
    copy_file(pa, pb);
    assert_int_equal(open_and_read(st, "alice", b, 5000), VMENC_E_CONTEXT_MISMATCH);
    /* ... and with its dump ID edited to match, the binding fails. */
    size_t len = 0;
    char *text = (char *)vmfix_read_file(pb, &len);
    char *at = strstr(text, a);
    assert_non_null(at);
    memcpy(at, b, VMENC_COREDUMP_ID_LEN);
    assert_int_equal(vmfix_write_file(pb, text, len), 0);
    free(text);
    assert_int_equal(open_and_read(st, "alice", b, 5000), VMENC_E_AUTH);
    /* Another host's dump directory and dumps are refused. */
    OK(vmfix_new_host(&g_f, "esx02"));
    vmenc_coredump_store *other = NULL;
    assert_int_equal(vmenc_coredump_store_open(g_f.host, dir, &other), VMENC_E_CONTEXT_MISMATCH);
    char dir2[DIRCAP];
    vmenc_coredump_store *st2 = new_store(dir2, sizeof(dir2));
    file_path(dir, a, ".vmcore", pa, sizeof(pa));
    file_path(dir2, a, ".vmcore", pb, sizeof(pb));
    copy_file(pa, pb);
    file_path(dir, a, ".vmcore-key", pa, sizeof(pa));
    file_path(dir2, a, ".vmcore-key", pb, sizeof(pb));
    copy_file(pa, pb);
    assert_int_equal(open_and_read(st2, "alice", a, 5000), VMENC_E_CONTEXT_MISMATCH);
    vmenc_coredump_store_free(st2);
    OK(vmfix_new_host(&g_f, "esx01"));
    vmenc_coredump_store_free(st);
}

static void test_password_export(void **state) {
    (void)state;
    char dir[DIRCAP], out[PATH_MAX], id[VMENC_COREDUMP_ID_LEN + 1];
    vmenc_coredump_store *st = keyed_store(dir, sizeof(dir));
    write_dump(st, 150000, id);
    tmp_path("bundle", out, sizeof(out));
    assert_int_equal(mkdir(out, 0700), 0);
    const char *pw = "correct horse battery staple";
    vmenc_coredump_export_options eo = {.struct_size = sizeof(eo), .principal = "alice", .dump_id = id,
                                        .out_dir = out, .password = (const uint8_t *)pw,
                                        .password_len = strlen(pw), .kdf_ops = VMENC_COREDUMP_KDF_OPS_MIN,
                                        .kdf_mem_bytes = VMENC_COREDUMP_KDF_MEM_MIN};
    OK(vmenc_coredump_export(st, &eo));
    assert_int_equal(vmenc_coredump_export(st, &eo), VMENC_E_EXISTS);
    assert_int_equal(count("coredump.export", "success"), 1);
    /* The data is the same bytes: re-wrapped, not re-encrypted. */
    char p1[PCAP], p2[PCAP];
    file_path(dir, id, ".vmcore", p1, sizeof(p1));
    file_path(out, id, ".vmcore", p2, sizeof(p2));
    size_t l1 = 0, l2 = 0;
    uint8_t *d1 = vmfix_read_file(p1, &l1), *d2 = vmfix_read_file(p2, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(d1, d2, l1);
    free(d1);
    free(d2);
    /* No key provider, host or policy is needed: take everything away. */
    fault_set_mode(g_f.fault_a, FAULT_DOWN);
    vmenc_coredump_reader *r = NULL;
    OK(vmenc_coredump_open_exported(out, id, (const uint8_t *)pw, strlen(pw), &r));
    OK(read_all(r, 150000));
    vmenc_coredump_reader_free(r);
    fault_set_mode(g_f.fault_a, FAULT_NONE);
    assert_int_equal(vmenc_coredump_open_exported(out, id, (const uint8_t *)"wrong", 5, &r),
                     VMENC_E_WRONG_PASSPHRASE);
    /* The password file holds neither the password nor the DEK in clear,
     * and its KDF parameters cannot be weakened. */
    file_path(out, id, ".vmcore-pw", p2, sizeof(p2));
    char *text = (char *)vmfix_read_file(p2, &l2);
    assert_null(strstr(text, pw));
    char *ops = strstr(text, "vmenc.kdfOps = \"2\"");
    assert_non_null(ops);
    ops[strlen("vmenc.kdfOps = \"")] = '1';
    assert_int_equal(vmfix_write_file(p2, text, l2), 0);
    assert_int_equal(vmenc_coredump_open_exported(out, id, (const uint8_t *)pw, strlen(pw), &r),
                     VMENC_E_WRONG_PASSPHRASE);
    ops[strlen("vmenc.kdfOps = \"")] = '2';
    assert_int_equal(vmfix_write_file(p2, text, l2), 0);
    free(text);
    /* The exported dump is authenticated like the original. */
    corrupt_at(p1 /* original untouched */, 70);
    corrupt_at(p1, 70);
    file_path(out, id, ".vmcore", p2, sizeof(p2));
    corrupt_at(p2, 64 + 12 + 5);
    OK(vmenc_coredump_open_exported(out, id, (const uint8_t *)pw, strlen(pw), &r));
    assert_int_equal(read_all(r, 150000), VMENC_E_AUTH);
    vmenc_coredump_reader_free(r);
    vmenc_coredump_store_free(st);
}

/* A support bundle leaves the host: its password is all that protects a
 * dump that may hold every key. Too short a password or too cheap an
 * Argon2id is refused (VMENC_E_WEAK_KEY), audited, and writes nothing. */
static void test_export_strength(void **state) {
    (void)state;
    char dir[DIRCAP], out[PATH_MAX], id[VMENC_COREDUMP_ID_LEN + 1];
    vmenc_coredump_store *st = keyed_store(dir, sizeof(dir));
    write_dump(st, 5000, id);
    tmp_path("weakbundle", out, sizeof(out));
    assert_int_equal(mkdir(out, 0700), 0);
    const uint64_t ops = VMENC_COREDUMP_KDF_OPS_MIN, mem = VMENC_COREDUMP_KDF_MEM_MIN;
    assert_true(VMENC_COREDUMP_PASSWORD_MIN >= 12 && ops >= 2 && mem >= 64 * MiB);
    static const struct {
        const char *pw;
        uint64_t ops, mem;
    } weak[] = {
        {"x", 0, 0},                                 /* the one-character password of the report */
        {"x", 1, 8192},                              /* ... with 1 pass, 8 KiB */
        {"elevenchars", 0, 0},                       /* 11 characters */
        {"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 0, 0}, /* 12 bytes, 6 characters */
        {"twelve chars", 1, 64 * MiB},               /* one pass */
        {"twelve chars", 2, 64 * MiB - 1024},        /* just under 64 MiB */
        {"twelve chars", 16, 8 * MiB},               /* many passes do not buy back memory */
    };
    for (size_t i = 0; i < sizeof(weak) / sizeof(weak[0]); i++) {
        size_t failed = count("coredump.export", "failed");
        vmenc_coredump_export_options eo = {.struct_size = sizeof(eo), .principal = "alice", .dump_id = id,
                                            .out_dir = out, .password = (const uint8_t *)weak[i].pw,
                                            .password_len = strlen(weak[i].pw), .kdf_ops = weak[i].ops,
                                            .kdf_mem_bytes = weak[i].mem};
        if (vmenc_coredump_export(st, &eo) != VMENC_E_WEAK_KEY)
            fail_msg("case %zu was not refused as weak", i);
        assert_int_equal(count("coredump.export", "failed"), failed + 1);
        char p[PCAP];
        file_path(out, id, ".vmcore", p, sizeof(p));
        assert_int_equal(access(p, F_OK), -1);
        file_path(out, id, ".vmcore-pw", p, sizeof(p));
        assert_int_equal(access(p, F_OK), -1);
    }
    /* bob is refused for the privilege before anything about the password */
    vmenc_coredump_export_options eb = {.struct_size = sizeof(eb), .principal = "bob", .dump_id = id,
                                        .out_dir = out, .password = (const uint8_t *)"x", .password_len = 1};
    assert_int_equal(vmenc_coredump_export(st, &eb), VMENC_E_DENIED);
    /* exactly at the bounds: accepted, and opens */
    const char *pw = "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9twelve"; /* 12 characters */
    vmenc_coredump_export_options eo = {.struct_size = sizeof(eo), .principal = "alice", .dump_id = id,
                                        .out_dir = out, .password = (const uint8_t *)pw,
                                        .password_len = strlen(pw), .kdf_ops = ops, .kdf_mem_bytes = mem};
    OK(vmenc_coredump_export(st, &eo));
    vmenc_coredump_reader *r = NULL;
    OK(vmenc_coredump_open_exported(out, id, (const uint8_t *)pw, strlen(pw), &r));
    OK(read_all(r, 5000));
    vmenc_coredump_reader_free(r);
    vmenc_coredump_store_free(st);
}

static void key_file_names(const char *dir, const char *id, const char *kek) {
    char p[PCAP];
    size_t len = 0;
    file_path(dir, id, ".vmcore-key", p, sizeof(p));
    char *text = (char *)vmfix_read_file(p, &len);
    assert_non_null(text);
    if (strstr(text, kek) == NULL)
        fail_msg("dump %s does not name KEK %s", id, kek);
    free(text);
}

static void test_rotation(void **state) {
    (void)state;
    char dir[DIRCAP], ids[5][VMENC_COREDUMP_ID_LEN + 1];
    vmenc_coredump_store *st = keyed_store(dir, sizeof(dir));
    for (int i = 0; i < 5; i++)
        write_dump(st, 1000 + 70000 * (size_t)i, ids[i]);
    vmenc_coredump_store_info before = {.struct_size = sizeof(before)}, after = {.struct_size = sizeof(after)};
    OK(vmenc_coredump_store_get_info(st, &before));
    char p[PCAP];
    file_path(dir, ids[3], ".vmcore", p, sizeof(p));
    size_t l0 = 0, l1 = 0;
    uint8_t *data0 = vmfix_read_file(p, &l0);
    uint32_t n = 0;
    OK(vmenc_coredump_rotate_host_key(st, "alice", "kms-b", NULL, &n));
    assert_int_equal(n, 5);
    OK(vmenc_coredump_store_get_info(st, &after));
    assert_string_equal(after.key_provider, "kms-b");
    assert_string_not_equal(after.kek_id, before.kek_id);
    assert_false(after.rotation_pending);
    for (int i = 0; i < 5; i++) {
        key_file_names(dir, ids[i], after.kek_id);
        OK(open_and_read(st, "alice", ids[i], 1000 + 70000 * (size_t)i));
    }
    /* The dumps themselves were not rewritten. */
    uint8_t *data1 = vmfix_read_file(p, &l1);
    assert_int_equal(l0, l1);
    assert_memory_equal(data0, data1, l0);
    free(data0);
    free(data1);
    /* New dumps use the new key; a rotation to the same key is refused. */
    char id[VMENC_COREDUMP_ID_LEN + 1];
    write_dump(st, 10, id);
    key_file_names(dir, id, after.kek_id);
    assert_int_equal(vmenc_coredump_rotate_host_key(st, "alice", "kms-b", after.kek_id, NULL), VMENC_E_EXISTS);
    assert_true(count("coredump.rotate_host_key", "success") >= 1);
    vmenc_coredump_store_free(st);
}

static void test_rotation_crash_and_resume(void **state) {
    (void)state;
    char dir[DIRCAP], ids[6][VMENC_COREDUMP_ID_LEN + 1];
    vmenc_coredump_store *st = keyed_store(dir, sizeof(dir));
    for (int i = 0; i < 6; i++)
        write_dump(st, 5000 * (size_t)(i + 1), ids[i]);
    vmenc_coredump_store_info info = {.struct_size = sizeof(info)};
    OK(vmenc_coredump_store_get_info(st, &info));
    char old_kek[VMENC_KEY_ID_MAX + 1];
    snprintf(old_kek, sizeof(old_kek), "%s", info.kek_id);
    uint32_t n = 0;
    size_t f0 = count("coredump.rotate_host_key", "failed");
    assert_int_equal(cd_rotate(st, "alice", NULL, NULL, 3, &n), VMENC_E_INTERRUPTED);
    assert_int_equal(n, 3);
    assert_int_equal(count("coredump.rotate_host_key", "failed") - f0, 1);
    vmenc_coredump_store_free(st);

    /* The host restarts: empty KEK cache, store reopened from disk. */
    OK(vmfix_new_keymgr(&g_f));
    OK(vmfix_new_host(&g_f, "esx01"));
    OK(vmenc_coredump_store_open(g_f.host, dir, &st));
    OK(vmenc_coredump_store_get_info(st, &info));
    assert_true(info.rotation_pending);
    assert_string_equal(info.old_kek_id, old_kek);
    assert_string_not_equal(info.kek_id, old_kek);
    /* Every dump reads in the intermediate state (each names its KEK). */
    int on_new = 0;
    for (int i = 0; i < 6; i++) {
        OK(open_and_read(st, "alice", ids[i], 5000 * (size_t)(i + 1)));
        char p[PCAP];
        size_t len = 0;
        file_path(dir, ids[i], ".vmcore-key", p, sizeof(p));
        char *text = (char *)vmfix_read_file(p, &len);
        on_new += strstr(text, info.kek_id) != NULL;
        free(text);
    }
    assert_int_equal(on_new, 3);
    /* Asking for another key while one rotation is pending is refused. */
    assert_int_equal(vmenc_coredump_rotate_host_key(st, "alice", "kms-b", NULL, NULL), VMENC_E_BAD_STATE);
    OK(vmenc_coredump_rotate_host_key(st, "alice", NULL, NULL, &n));
    assert_int_equal(n, 3);
    vmenc_coredump_store_info done = {.struct_size = sizeof(done)};
    OK(vmenc_coredump_store_get_info(st, &done));
    assert_false(done.rotation_pending);
    assert_string_equal(done.kek_id, info.kek_id);
    for (int i = 0; i < 6; i++) {
        key_file_names(dir, ids[i], done.kek_id);
        OK(open_and_read(st, "alice", ids[i], 5000 * (size_t)(i + 1)));
    }
    vmenc_coredump_store_free(st);
}

static void test_bad_arguments(void **state) {
    (void)state;
    char dir[DIRCAP];
    vmenc_coredump_store *st = NULL;
    assert_int_equal(vmenc_coredump_store_open(NULL, "/tmp", &st), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_coredump_store_open(g_f.host, "/nonexistent/vmenc-dumps", &st), VMENC_E_NOT_FOUND);
    st = keyed_store(dir, sizeof(dir));
    vmenc_coredump_reader *r = NULL;
    assert_int_equal(vmenc_coredump_open(st, "alice", "../../etc/passwd", &r), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_coredump_open(st, "alice", "00000000-0000-4000-8000-000000000000", &r),
                     VMENC_E_NOT_FOUND);
    vmenc_coredump_store_info small = {.struct_size = 4};
    assert_int_equal(vmenc_coredump_store_get_info(st, &small), VMENC_E_ABI_VERSION);
    assert_int_equal(vmenc_coredump_open_exported(dir, "x", (const uint8_t *)"p", 1, &r), VMENC_E_INVALID_ARG);
    vmenc_coredump_store_free(st);
    vmenc_coredump_store_free(NULL);
    vmenc_coredump_writer_free(NULL);
    vmenc_coredump_reader_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_large_dump_bounded_memory),
        cmocka_unit_test(test_write_read_and_audit),
        cmocka_unit_test(test_read_denied_and_audited),
        cmocka_unit_test(test_write_needs_host_mode),
        cmocka_unit_test(test_edited_dump_detected),
        cmocka_unit_test(test_truncated_dump_detected),
        cmocka_unit_test(test_swapped_and_foreign_dumps_detected),
        cmocka_unit_test(test_password_export),
        cmocka_unit_test(test_export_strength),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_rotation_crash_and_resume),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
