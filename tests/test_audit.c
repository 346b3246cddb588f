/*
 * tests/test_audit.c - the audit record format and the verifier: event
 * validation, canonical JSON (checked against json-c), the keyed hash
 * (recomputed here with libsodium directly), time formatting, and every kind
 * of tampering (edit of every byte and every field, delete, reorder, insert,
 * duplicate, truncate at end and mid-line, rotation, wrong key) found at the
 * right first bad record.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <json-c/json.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit/record.h"
#include "core/internal.h"
#include "vmenc/vmenc.h"

static const uint8_t k_key[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                  17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

/* ---- helpers ------------------------------------------------------------------ */

typedef struct tmpdir {
    char path[256];
} tmpdir;

static void tmpdir_make(tmpdir *t) {
    const char *base = getenv("TMPDIR");
    snprintf(t->path, sizeof(t->path), "%s/vmenc-audit-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(t->path));
}

static void tmpdir_remove(tmpdir *t) {
    DIR *d = opendir(t->path);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", t->path, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(t->path);
}

static void join(char *out, size_t cap, const tmpdir *t, const char *name) {
    snprintf(out, cap, "%s/%s", t->path, name);
}

/* A log read into memory, split into lines (each with its newline). */
typedef struct lines {
    char *l[64];
    size_t n;
} lines;

static char *read_all(const char *path, size_t *out_len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *out_len = (size_t)n;
    return buf;
}

static void lines_load(lines *ls, const char *path) {
    size_t len;
    char *buf = read_all(path, &len);
    ls->n = 0;
    char *p = buf;
    while (*p) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        assert_true(ls->n < 64);
        ls->l[ls->n++] = strndup(p, (size_t)(nl - p + 1));
        p = nl + 1;
    }
    free(buf);
}

static void lines_free(lines *ls) {
    for (size_t i = 0; i < ls->n; i++)
        free(ls->l[i]);
    ls->n = 0;
}

static char *lines_join(const lines *ls, size_t *out_len) {
    size_t n = 0;
    for (size_t i = 0; i < ls->n; i++)
        n += strlen(ls->l[i]);
    char *buf = malloc(n + 1);
    assert_non_null(buf);
    buf[0] = '\0';
    size_t off = 0;
    for (size_t i = 0; i < ls->n; i++) {
        size_t k = strlen(ls->l[i]);
        memcpy(buf + off, ls->l[i], k);
        off += k;
    }
    buf[off] = '\0';
    *out_len = off;
    return buf;
}

static void lines_remove(lines *ls, size_t i) {
    free(ls->l[i]);
    memmove(&ls->l[i], &ls->l[i + 1], (ls->n - i - 1) * sizeof(char *));
    ls->n--;
}

static void lines_insert(lines *ls, size_t i, const char *s) {
    assert_true(ls->n < 64);
    memmove(&ls->l[i + 1], &ls->l[i], (ls->n - i) * sizeof(char *));
    ls->l[i] = strdup(s);
    ls->n++;
}

static void lines_replace(lines *ls, size_t i, const char *s) {
    free(ls->l[i]);
    ls->l[i] = strdup(s);
}

static vmenc_audit_verify_options vopts(uint64_t expected_last_seq) {
    vmenc_audit_verify_options o = {.struct_size = sizeof(o), .key = k_key, .key_len = sizeof(k_key),
                                    .expected_last_seq = expected_last_seq};
    return o;
}

/* verify_mem_and_file verifies |len| bytes both in memory and as a file
 * (the two read paths differ) and requires the same verdict. */
static vmenc_status verify_mem_and_file(const vmenc_audit_verify_options *o, const char *buf,
                                        size_t len, vmenc_audit_verify_result *res) {
    memset(res, 0xee, sizeof(*res));
    res->struct_size = sizeof(*res);
    vmenc_status s = vmenc_audit_verify_buffer(o, (const uint8_t *)buf, len, res);

    const char *base = getenv("TMPDIR");
    char path[256];
    snprintf(path, sizeof(path), "%s/vmenc-audit-file-XXXXXX", base ? base : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
    vmenc_audit_verify_result fres;
    memset(&fres, 0x11, sizeof(fres));
    fres.struct_size = sizeof(fres);
    const char *paths[] = {path};
    vmenc_status fs = vmenc_audit_verify_files(o, paths, 1, &fres);
    unlink(path);
    assert_int_equal(fs, s);
    assert_memory_equal(&fres, res, sizeof(fres));
    return s;
}

static vmenc_status verify_lines(const lines *ls, uint64_t expected, vmenc_audit_verify_result *res) {
    size_t len;
    char *buf = lines_join(ls, &len);
    vmenc_audit_verify_options o = vopts(expected);
    vmenc_status s = verify_mem_and_file(&o, buf, len, res);
    free(buf);
    return s;
}

static vmenc_audit_log *open_log(const char *path, vmenc_audit_fsync policy, uint32_t flags) {
    vmenc_audit_log_options o = {.struct_size = sizeof(o), .path = path, .key = k_key,
                                 .key_len = sizeof(k_key), .fsync = policy, .flags = flags};
    vmenc_audit_log *log = NULL;
    assert_int_equal(vmenc_audit_log_open(&o, &log), VMENC_OK);
    return log;
}

/* append_n writes |n| varied events (every outcome, with and without key IDs,
 * strings that need escaping). */
static void append_n(vmenc_audit_log *log, int n, const char *tag) {
    for (int i = 0; i < n; i++) {
        char principal[64], target[64], reason[128];
        snprintf(principal, sizeof(principal), "%s-user%d@corp.example", tag, i % 3);
        snprintf(target, sizeof(target), "vm-%d/disk-%d", i, i % 2);
        snprintf(reason, sizeof(reason), "reason \"%d\"\twith\\escapes\n\x01", i);
        const char *ids[] = {"kek-0001", "dek-\xc3\xa9t\xc3\xa9"};
        vmenc_audit_event ev = {
            .struct_size = sizeof(ev),
            .time_ms = 1700000000000ull + (uint64_t)i * 1001,
            .principal = principal,
            .operation = i % 2 ? "disk.encrypt" : "vm.rekey",
            .target = target,
            .key_provider = i % 3 ? "kms-cluster-a" : NULL,
            .key_ids = ids,
            .num_key_ids = (size_t)(i % 3),
            .outcome = (vmenc_audit_outcome)(i % 3),
            .status = i % 3 ? VMENC_E_DENIED : 0,
            .reason = reason,
        };
        assert_int_equal(vmenc_audit_log_append(log, &ev, NULL), VMENC_OK);
    }
}

/* make_log writes a 10-record log to |path|. */
static void make_log(const char *path, int n) {
    vmenc_audit_log *log = open_log(path, VMENC_AUDIT_FSYNC_NEVER, 0);
    append_n(log, n, "a");
    vmenc_audit_log_free(log);
}

/* ---- event validation ------------------------------------------------------- */

static vmenc_audit_event good_event(void) {
    vmenc_audit_event ev = {.struct_size = sizeof(ev), .principal = "alice", .operation = "vm.encrypt",
                            .outcome = VMENC_AUDIT_SUCCESS};
    return ev;
}

static void test_event_check(void **state) {
    vmenc_audit_event ev = good_event();
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_OK);
    assert_int_equal(vmenc_audit_event_check(NULL), VMENC_E_INVALID_ARG);

    ev.struct_size = 8;
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_E_ABI_VERSION);
    ev = good_event();
    ev.struct_size = sizeof(ev) + 64; /* a newer, larger struct is fine */
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_OK);

    ev = good_event();
    ev.principal = NULL;
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_E_INVALID_ARG);
    ev = good_event();
    ev.operation = "";
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_E_INVALID_ARG);
    ev = good_event();
    ev.outcome = (vmenc_audit_outcome)3;
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_E_INVALID_ARG);
    ev = good_event();
    ev.status = 5;
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_E_INVALID_ARG);
    ev = good_event();
    ev.time_ms = VMENC_AUDIT_MAX_TIME_MS + 1;
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_E_INVALID_ARG);
    ev.time_ms = VMENC_AUDIT_MAX_TIME_MS;
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_OK);

    /* Bounds: exactly at the limit is fine, one byte over is not. */
    char big[VMENC_AUDIT_MAX_REASON + 2];
    memset(big, 'x', sizeof(big));
    big[VMENC_AUDIT_MAX_FIELD] = '\0';
    ev = good_event();
    ev.target = big;
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_OK);
    big[VMENC_AUDIT_MAX_FIELD] = 'x';
    big[VMENC_AUDIT_MAX_FIELD + 1] = '\0';
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_E_TOO_LARGE);
    ev = good_event();
    memset(big, 'y', sizeof(big));
    big[VMENC_AUDIT_MAX_REASON] = '\0';
    ev.reason = big;
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_OK);
    big[VMENC_AUDIT_MAX_REASON] = 'y';
    big[VMENC_AUDIT_MAX_REASON + 1] = '\0';
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_E_TOO_LARGE);

    /* Key IDs. */
    const char *ids[VMENC_AUDIT_MAX_KEY_IDS + 1];
    for (size_t i = 0; i <= VMENC_AUDIT_MAX_KEY_IDS; i++)
        ids[i] = "kek";
    ev = good_event();
    ev.key_ids = ids;
    ev.num_key_ids = VMENC_AUDIT_MAX_KEY_IDS;
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_OK);
    ev.num_key_ids++;
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_E_TOO_LARGE);
    ev.num_key_ids = 1;
    ev.key_ids = NULL;
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_E_INVALID_ARG);
    ids[0] = "";
    ev.key_ids = ids;
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_E_INVALID_ARG);

    /* UTF-8: overlong, surrogate, out of range, truncated sequence. */
    static const char *bad[] = {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ab\xe2\x82",
                                "\xff", "\x80"};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(bad); i++) {
        ev = good_event();
        ev.principal = bad[i];
        assert_int_equal(vmenc_audit_event_check(&ev), VMENC_E_BAD_ENCODING);
    }
    ev = good_event();
    ev.principal = "\xf0\x9f\x94\x91 \xc3\xa9\xe2\x82\xac"; /* key emoji, e-acute, euro */
    assert_int_equal(vmenc_audit_event_check(&ev), VMENC_OK);
}

/* ---- canonical JSON against json-c ------------------------------------------- */

static const char *jstr(json_object *o, const char *key) {
    json_object *v;
    assert_true(json_object_object_get_ex(o, key, &v));
    assert_true(json_object_is_type(v, json_type_string));
    return json_object_get_string(v);
}

static void test_json_escaping_matches_jsonc(void **state) {
    /* Every control character, quotes, backslashes, DEL, and UTF-8. */
    char nasty[64];
    size_t n = 0;
    for (int c = 1; c < 0x20; c++)
        nasty[n++] = (char)c;
    memcpy(nasty + n, "\"\\/\x7f\xc3\xa9\xf0\x9f\x94\x91", 10);
    n += 10;
    nasty[n] = '\0';
    const char *ids[] = {"kek\"1", nasty};
    vmenc_audit_event ev = {.struct_size = sizeof(ev), .time_ms = 1700000000123ull,
                            .principal = nasty, .operation = "op\n", .target = "t\\",
                            .key_provider = "p", .key_ids = ids, .num_key_ids = 2,
                            .outcome = VMENC_AUDIT_DENIED, .status = VMENC_E_DENIED,
                            .reason = nasty};
    char out[2048];
    size_t out_len;
    assert_int_equal(vmenc_audit_event_to_json(&ev, out, sizeof(out), &out_len), VMENC_OK);
    assert_int_equal(strlen(out), out_len);
    /* No raw control byte may appear in the output. */
    for (size_t i = 0; i < out_len; i++)
        assert_true((uint8_t)out[i] >= 0x20 && (uint8_t)out[i] != 0x7f);

    json_tokener *tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *o = json_tokener_parse_ex(tok, out, (int)out_len);
    assert_non_null(o);
    assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
    json_tokener_free(tok);
    assert_string_equal(jstr(o, "principal"), nasty);
    assert_string_equal(jstr(o, "reason"), nasty);
    assert_string_equal(jstr(o, "op"), "op\n");
    assert_string_equal(jstr(o, "target"), "t\\");
    assert_string_equal(jstr(o, "provider"), "p");
    assert_string_equal(jstr(o, "outcome"), "denied");
    assert_string_equal(jstr(o, "time"), "2023-11-14T22:13:20.123Z");
    json_object *v;
    assert_true(json_object_object_get_ex(o, "status", &v));
    assert_int_equal(json_object_get_int(v), VMENC_E_DENIED);
    assert_true(json_object_object_get_ex(o, "key_ids", &v));
    assert_int_equal(json_object_array_length(v), 2);
    assert_string_equal(json_object_get_string(json_object_array_get_idx(v, 0)), "kek\"1");
    assert_string_equal(json_object_get_string(json_object_array_get_idx(v, 1)), nasty);
    json_object_put(o);

    /* Too small a buffer reports the size needed. */
    size_t need;
    assert_int_equal(vmenc_audit_event_to_json(&ev, out, 10, &need), VMENC_E_BUFFER_TOO_SMALL);
    assert_int_equal(need, out_len + 1);
    assert_int_equal(vmenc_audit_event_to_json(&ev, out, need, &need), VMENC_OK);
}

/* Every line of a log parses with json-c to the values our parser reads. */
static void test_log_lines_are_json(void **state) {
    tmpdir t;
    tmpdir_make(&t);
    char path[512];
    join(path, sizeof(path), &t, "a.log");
    make_log(path, 10);
    lines ls;
    lines_load(&ls, path);
    assert_int_equal(ls.n, 10);
    audit_record *r = malloc(sizeof(*r));
    assert_non_null(r);
    for (size_t i = 0; i < ls.n; i++) {
        size_t len = strlen(ls.l[i]) - 1, body;
        assert_int_equal(audit_record_parse((const uint8_t *)ls.l[i], len, r, &body), VMENC_OK);
        json_object *o = json_tokener_parse(ls.l[i]);
        assert_non_null(o);
        json_object *v;
        assert_true(json_object_object_get_ex(o, "seq", &v));
        assert_int_equal(json_object_get_int64(v), (int64_t)(i + 1));
        assert_int_equal(r->seq, i + 1);
        assert_string_equal(jstr(o, "principal"), r->principal.s);
        assert_string_equal(jstr(o, "reason"), r->reason);
        assert_string_equal(jstr(o, "op"), r->operation.s);
        assert_string_equal(jstr(o, "outcome"), vmenc_audit_outcome_name(r->outcome));
        assert_true(json_object_object_get_ex(o, "key_ids", &v));
        assert_int_equal(json_object_array_length(v), r->num_key_ids);
        for (size_t k = 0; k < r->num_key_ids; k++)
            assert_string_equal(json_object_get_string(json_object_array_get_idx(v, k)),
                                r->key_ids[k].s);
        /* The field carrying the chain hash is the lowercase hex of mac. */
        char hex[2 * VMENC_AUDIT_HASH_BYTES + 1];
        sodium_bin2hex(hex, sizeof(hex), r->mac, sizeof(r->mac));
        assert_string_equal(jstr(o, "mac"), hex);
        json_object_put(o);
    }
    free(r);
    lines_free(&ls);
    tmpdir_remove(&t);
}

/* The exact bytes of a record and its hash, recomputed independently. */
static void test_golden_record(void **state) {
    tmpdir t;
    tmpdir_make(&t);
    char path[512];
    join(path, sizeof(path), &t, "g.log");
    /* Version 1 (no chain ID), as written before chain IDs and still
     * written when a chain is continued without one (start_hash only). */
    static const uint8_t zero_hash[32];
    vmenc_audit_log_options lo = {.struct_size = sizeof(lo), .path = path, .key = k_key,
                                  .key_len = sizeof(k_key), .fsync = VMENC_AUDIT_FSYNC_NEVER,
                                  .start_hash = zero_hash};
    vmenc_audit_log *log = NULL;
    assert_int_equal(vmenc_audit_log_open(&lo, &log), VMENC_OK);
    const char *ids[] = {"kek-1", "dek-2"};
    vmenc_audit_event ev = {.struct_size = sizeof(ev), .time_ms = 1700000000123ull,
                            .principal = "alice", .operation = "vm.encrypt", .target = "vm-42",
                            .key_provider = "kmsA", .key_ids = ids, .num_key_ids = 2,
                            .outcome = VMENC_AUDIT_SUCCESS, .status = 0, .reason = "ok"};
    uint64_t seq = 0;
    assert_int_equal(vmenc_audit_log_append(log, &ev, &seq), VMENC_OK);
    assert_int_equal(seq, 1);
    uint8_t pos_hash[32];
    assert_int_equal(vmenc_audit_log_position(log, &seq, pos_hash), VMENC_OK);
    assert_int_equal(seq, 1);
    vmenc_audit_log_free(log);

    /* Key check value: BLAKE2b-128(key, constant), first 8 bytes. */
    uint8_t kcv[16];
    static const char kid_domain[] = "vmenc-audit-v1 key check";
    assert_int_equal(crypto_generichash(kcv, 16, (const uint8_t *)kid_domain,
                                        sizeof(kid_domain) - 1, k_key, sizeof(k_key)), 0);
    char kid_hex[17];
    sodium_bin2hex(kid_hex, sizeof(kid_hex), kcv, 8);
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"v\":1,\"seq\":1,\"time\":\"2023-11-14T22:13:20.123Z\",\"principal\":\"alice\","
             "\"op\":\"vm.encrypt\",\"target\":\"vm-42\",\"provider\":\"kmsA\",\"key_ids\":"
             "[\"kek-1\",\"dek-2\"],\"outcome\":\"success\",\"status\":0,\"reason\":\"ok\","
             "\"kid\":\"%s\",\"prev\":\"%064d\"",
             kid_hex, 0);
    static const char mac_domain[] = "vmenc-audit-v1 record\n";
    crypto_generichash_state st;
    uint8_t mac[32];
    crypto_generichash_init(&st, k_key, sizeof(k_key), 32);
    crypto_generichash_update(&st, (const uint8_t *)mac_domain, sizeof(mac_domain) - 1);
    crypto_generichash_update(&st, (const uint8_t *)body, strlen(body));
    crypto_generichash_final(&st, mac, 32);
    assert_memory_equal(mac, pos_hash, 32);
    char mac_hex[65], expect[1200];
    sodium_bin2hex(mac_hex, sizeof(mac_hex), mac, 32);
    /* Known answers from an independent BLAKE2b (CPython's hashlib:
     * blake2b(data, key=bytes(range(1, 33)), digest_size=...)). */
    assert_string_equal(kid_hex, "38d6fda6cca87c60");
    assert_string_equal(mac_hex, "07fd8f9f9179724f4f97c5919ad4bf434946029932cc8133732ef44e63aa225e");
    snprintf(expect, sizeof(expect), "%s,\"mac\":\"%s\"}\n", body, mac_hex);
    size_t len;
    char *got = read_all(path, &len);
    assert_string_equal(got, expect);
    free(got);
    tmpdir_remove(&t);
}

static void test_time_format_parse(void **state) {
    static const struct {
        uint64_t ms;
        const char *s;
    } v[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {951782400000ull, "2000-02-29T00:00:00.000Z"},
        {1700000000123ull, "2023-11-14T22:13:20.123Z"},
        {4107542399999ull, "2100-02-28T23:59:59.999Z"},
        {4107542400000ull, "2100-03-01T00:00:00.000Z"},
        {VMENC_AUDIT_MAX_TIME_MS, "9999-12-31T23:59:59.999Z"},
    };
    for (size_t i = 0; i < VMENC_ARRAY_LEN(v); i++) {
        char s[25];
        uint64_t ms;
        audit_format_time(v[i].ms, s);
        assert_string_equal(s, v[i].s);
        assert_true(audit_parse_time(v[i].s, 24, &ms));
        assert_int_equal(ms, v[i].ms);
    }
    /* Round trip against gmtime_r over a spread of instants. */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t ms = x % (VMENC_AUDIT_MAX_TIME_MS + 1);
        char s[25], ref[96];
        audit_format_time(ms, s);
        time_t secs = (time_t)(ms / 1000);
        struct tm tm;
        assert_non_null(gmtime_r(&secs, &tm));
        snprintf(ref, sizeof(ref), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (unsigned)(ms % 1000));
        assert_string_equal(s, ref);
        uint64_t back;
        assert_true(audit_parse_time(s, 24, &back));
        assert_int_equal(back, ms);
    }
    static const char *bad[] = {"2023-02-29T00:00:00.000Z", "2100-02-29T00:00:00.000Z",
                                "2023-13-01T00:00:00.000Z", "2023-00-01T00:00:00.000Z",
                                "2023-04-31T00:00:00.000Z", "2023-01-01T24:00:00.000Z",
                                "2023-01-01T00:60:00.000Z", "2023-01-01T00:00:60.000Z",
                                "1969-12-31T23:59:59.999Z", "2023-01-01 00:00:00.000Z",
                                "2023-01-01T00:00:00.000+", "2023-01-01T00:00:00.00Z",
                                "2023-01-0aT00:00:00.000Z"};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(bad); i++) {
        uint64_t ms;
        assert_false(audit_parse_time(bad[i], strlen(bad[i]), &ms));
    }
}

/* The parser accepts only the canonical form. */
static void test_parser_rejects_noncanonical(void **state) {
    tmpdir t;
    tmpdir_make(&t);
    char path[512];
    join(path, sizeof(path), &t, "c.log");
    make_log(path, 1);
    lines ls;
    lines_load(&ls, path);
    const char *good = ls.l[0];
    size_t len = strlen(good) - 1, body;
    audit_record *r = malloc(sizeof(*r));
    assert_int_equal(audit_record_parse((const uint8_t *)good, len, r, &body), VMENC_OK);
    /* serialise(parse(line)) == line */
    vmenc_cbb cbb;
    assert_int_equal(vmenc_cbb_init(&cbb, 64), VMENC_OK);
    audit_record_serialise(&cbb, r);
    assert_int_equal(vmenc_cbb_len(&cbb), len + 1);
    assert_memory_equal(vmenc_cbb_data(&cbb), good, len + 1);
    vmenc_cbb_cleanup(&cbb);

    static const struct {
        const char *from, *to;
        vmenc_status want;
    } edits[] = {
        {"{\"v\":2,", "{\"v\":3,", VMENC_E_BAD_VERSION},
        {"{\"v\":2,", "{\"v\":1,", VMENC_E_PARSE}, /* version 1 has no chain ID */
        {"{\"v\":2,", "{ \"v\":2,", VMENC_E_PARSE},
        {"\"chain\":\"", "\"chain\":\"0", VMENC_E_PARSE},
        {"\"chain\":\"", "\"chainid\":\"", VMENC_E_PARSE},
        {"\"seq\":1,", "\"seq\":01,", VMENC_E_PARSE},
        {"\"seq\":1,", "\"seq\":0,", VMENC_E_PARSE},
        {"\"seq\":1,", "\"seq\":99999999999999999999,", VMENC_E_PARSE},
        {"\\t", "\\u0009", VMENC_E_BAD_ENCODING},
        {"\\u0001", "\\u0041", VMENC_E_BAD_ENCODING},
        {"\\u0001", "\\U0001", VMENC_E_BAD_ENCODING},
        {"\\u0001", "\\u0000", VMENC_E_BAD_ENCODING},
        {"\\u0001", "\x01", VMENC_E_BAD_ENCODING},
        {"\\\\", "\\/", VMENC_E_BAD_ENCODING},
        {"\"op\":", "\"OP\":", VMENC_E_PARSE},
        {"\"outcome\":\"success\"", "\"outcome\":\"ok\"", VMENC_E_PARSE},
        {"\"status\":0", "\"status\":-0", VMENC_E_PARSE},
        {"\"status\":0", "\"status\":1", VMENC_E_PARSE},
        {"\"status\":0", "\"status\":-2147483649", VMENC_E_PARSE},
        {"\"prev\":\"0", "\"prev\":\"A", VMENC_E_PARSE},
        {"\"}", "\"} ", VMENC_E_TRAILING_DATA},
        {"Z\"", "z\"", VMENC_E_PARSE},
    };
    for (size_t i = 0; i < VMENC_ARRAY_LEN(edits); i++) {
        const char *at = strstr(good, edits[i].from);
        assert_non_null(at);
        char *bad = malloc(len + 64);
        size_t pre = (size_t)(at - good);
        memcpy(bad, good, pre);
        strcpy(bad + pre, edits[i].to);
        strcat(bad, at + strlen(edits[i].from));
        size_t blen = strlen(bad);
        if (bad[blen - 1] == '\n')
            blen--;
        vmenc_status s = audit_record_parse((const uint8_t *)bad, blen, r, &body);
        if (s != edits[i].want)
            print_error("edit %zu: %s -> %s gave %d\n", i, edits[i].from, edits[i].to, s);
        assert_int_equal(s, edits[i].want);
        free(bad);
    }
    /* Every strict prefix is rejected. */
    for (size_t k = 0; k < len; k++)
        assert_int_not_equal(audit_record_parse((const uint8_t *)good, k, r, &body), VMENC_OK);
    free(r);
    lines_free(&ls);
    tmpdir_remove(&t);
}

/* ---- the verifier: every kind of tampering ----------------------------------- */

typedef struct fixture {
    tmpdir t;
    char path[512];
    lines ls;
} fixture;

static int setup_log(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    tmpdir_make(&f->t);
    join(f->path, sizeof(f->path), &f->t, "audit.log");
    make_log(f->path, 10);
    lines_load(&f->ls, f->path);
    assert_int_equal(f->ls.n, 10);
    *state = f;
    return 0;
}

static int teardown_log(void **state) {
    fixture *f = *state;
    lines_free(&f->ls);
    tmpdir_remove(&f->t);
    free(f);
    return 0;
}

static void expect_defect(const lines *ls, uint64_t expected_last, vmenc_status want_status,
                          vmenc_audit_defect want, uint64_t want_index, uint64_t want_seq) {
    vmenc_audit_verify_result res;
    vmenc_status s = verify_lines(ls, expected_last, &res);
    if (s != want_status || res.defect != want || res.bad_index != want_index)
        print_error("got status %d defect %s index %llu seq %llu\n", s,
                    vmenc_audit_defect_name(res.defect), (unsigned long long)res.bad_index,
                    (unsigned long long)res.bad_seq);
    assert_int_equal(s, want_status);
    assert_int_equal(res.defect, want);
    assert_int_equal(res.bad_index, want_index);
    /* For an intact chain want_seq is the next one; bad_* are zero. */
    assert_int_equal(res.bad_seq, want == VMENC_AUDIT_DEFECT_NONE ? 0 : want_seq);
    assert_int_equal(res.bad_file, 0);
    assert_int_equal(res.num_records, want_seq - 1);
    assert_int_equal(res.last_seq, want_seq - 1);
}

static void test_verify_intact(void **state) {
    fixture *f = *state;
    vmenc_audit_verify_result res;
    assert_int_equal(verify_lines(&f->ls, 10, &res), VMENC_OK);
    assert_int_equal(res.defect, VMENC_AUDIT_DEFECT_NONE);
    assert_int_equal(res.num_records, 10);
    assert_int_equal(res.last_seq, 10);
    assert_int_equal(verify_lines(&f->ls, 0, &res), VMENC_OK);
    assert_int_equal(verify_lines(&f->ls, 9, &res), VMENC_OK); /* the log grew: fine */
    /* The result's last hash is the mac of the last line. */
    audit_record *r = malloc(sizeof(*r));
    size_t body;
    assert_int_equal(audit_record_parse((const uint8_t *)f->ls.l[9], strlen(f->ls.l[9]) - 1, r,
                                        &body), VMENC_OK);
    assert_memory_equal(res.last_hash, r->mac, 32);
    free(r);
    /* The same through the file API. */
    const char *paths[] = {f->path};
    vmenc_audit_verify_options o = vopts(10);
    memset(&res, 0, sizeof(res));
    res.struct_size = sizeof(res);
    assert_int_equal(vmenc_audit_verify_files(&o, paths, 1, &res), VMENC_OK);
    assert_int_equal(res.num_records, 10);
}

/* Every single-byte change anywhere in a record is caught at that record. */
static void test_edit_every_byte(void **state) {
    fixture *f = *state;
    const size_t victim = 4;
    char *orig = strdup(f->ls.l[victim]);
    size_t len = strlen(orig) - 1; /* keep the newline */
    audit_record *r = malloc(sizeof(*r));
    for (size_t i = 0; i < len; i++) {
        char *mod = strdup(orig);
        char c = mod[i];
        if (c >= '0' && c <= '9')
            mod[i] = (char)('0' + (c - '0' + 1) % 10);
        else if (c >= 'a' && c <= 'z')
            mod[i] = (char)('a' + (c - 'a' + 1) % 26);
        else
            mod[i] = (char)(c ^ 0x01);
        if (mod[i] == '\n')
            mod[i] = ' ';
        size_t body;
        bool parses = audit_record_parse((const uint8_t *)mod, len, r, &body) == VMENC_OK;
        lines_replace(&f->ls, victim, mod);
        expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED,
                      parses ? VMENC_AUDIT_DEFECT_EDITED : VMENC_AUDIT_DEFECT_MALFORMED, victim,
                      victim + 1);
        free(mod);
    }
    lines_replace(&f->ls, victim, orig);
    expect_defect(&f->ls, 0, VMENC_OK, VMENC_AUDIT_DEFECT_NONE, 0, 11);
    free(orig);
    free(r);
}

/* Each field changed to another valid value, re-serialised canonically. */
static void test_edit_every_field(void **state) {
    fixture *f = *state;
    const size_t victim = 5; /* has a provider, one key ID, outcome denied */
    audit_record *r = malloc(sizeof(*r));
    size_t body;
    for (int field = 0; field < 14; field++) {
        assert_int_equal(audit_record_parse((const uint8_t *)f->ls.l[victim],
                                            strlen(f->ls.l[victim]) - 1, r, &body), VMENC_OK);
        char *orig = strdup(f->ls.l[victim]);
        switch (field) {
        case 0: r->seq += 1; break;
        case 1: r->time_ms += 1; break;
        case 2: r->principal.s[0] ^= 1; break;
        case 3: r->operation.s[0] ^= 1; break;
        case 4: r->target.s[0] ^= 1; break;
        case 5: r->provider.s[0] ^= 1; break;
        case 6: r->key_ids[0].s[0] ^= 1; break;
        case 7: r->num_key_ids = 0; break;
        case 8: r->outcome = VMENC_AUDIT_SUCCESS; break;
        case 9: r->status = VMENC_E_AUTH; break;
        case 10: r->reason[0] ^= 1; break;
        case 11: r->kid[0] ^= 1; break;
        case 12: r->prev[31] ^= 1; break;
        case 13: r->mac[0] ^= 1; break;
        }
        vmenc_cbb cbb;
        assert_int_equal(vmenc_cbb_init(&cbb, 64), VMENC_OK);
        audit_record_serialise(&cbb, r);
        vmenc_cbb_add_u8(&cbb, 0);
        assert_int_equal(vmenc_cbb_status(&cbb), VMENC_OK);
        lines_replace(&f->ls, victim, (const char *)vmenc_cbb_data(&cbb));
        vmenc_cbb_cleanup(&cbb);
        expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_EDITED, victim,
                      victim + 1);
        lines_replace(&f->ls, victim, orig);
        free(orig);
    }
    free(r);
}

static void test_delete(void **state) {
    fixture *f = *state;
    lines_remove(&f->ls, 4);
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_DELETED, 4, 5);
    lines_remove(&f->ls, 0);
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_DELETED, 0, 1);
}

static void test_delete_several(void **state) {
    fixture *f = *state;
    lines_remove(&f->ls, 6);
    lines_remove(&f->ls, 6);
    lines_remove(&f->ls, 6);
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_DELETED, 6, 7);
}

static void test_reorder(void **state) {
    fixture *f = *state;
    char *a = f->ls.l[4];
    f->ls.l[4] = f->ls.l[5];
    f->ls.l[5] = a;
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_REORDERED, 4, 5);
}

static void test_move_to_end(void **state) {
    fixture *f = *state;
    char *moved = strdup(f->ls.l[2]);
    lines_remove(&f->ls, 2);
    lines_insert(&f->ls, f->ls.n, moved);
    free(moved);
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_REORDERED, 2, 3);
}

static void test_move_earlier(void **state) {
    fixture *f = *state;
    char *moved = strdup(f->ls.l[8]);
    lines_remove(&f->ls, 8);
    lines_insert(&f->ls, 3, moved);
    free(moved);
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_REORDERED, 3, 4);
}

static void test_insert_forged(void **state) {
    fixture *f = *state;
    /* A copy of record 5 with its reason changed but its mac kept: the
     * forger has no key. */
    char *forged = strdup(f->ls.l[4]);
    char *p = strstr(forged, "\"reason\":\"reason");
    assert_non_null(p);
    p[10] = 'R';
    lines_insert(&f->ls, 5, forged);
    free(forged);
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_INSERTED, 5, 6);
}

static void test_insert_garbage_and_blank(void **state) {
    fixture *f = *state;
    lines_insert(&f->ls, 3, "\n");
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_INSERTED, 3, 4);
    lines_remove(&f->ls, 3);
    lines_insert(&f->ls, 7, "{\"v\":1,\"seq\":8}\n");
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_INSERTED, 7, 8);
}

/* Issue 9 #7: a record of another chain written under the same key is
 * "inserted" (audit.h: a record that does not belong to this chain), not
 * "reordered" (a valid record of this chain out of place), whatever its
 * sequence number: every record carries its chain's ID under the mac. */
static void test_foreign_record_is_inserted_whatever_its_seq(void **state) {
    fixture *f = *state;
    char other[600];
    join(other, sizeof(other), &f->t, "chain-b.log");
    make_log(other, 10); /* same key, same events: only the chain ID differs */
    lines o;
    lines_load(&o, other);
    /* Their seq 3 (lower than expected) and seq 9 (higher) after our seq 6. */
    static const int theirs[] = {2, 8};
    for (size_t i = 0; i < 2; i++) {
        lines_insert(&f->ls, 6, o.l[theirs[i]]);
        expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_INSERTED, 6, 7);
        lines_remove(&f->ls, 6);
    }
    /* Control: our own seq 3 there is reordered. */
    lines_insert(&f->ls, 6, f->ls.l[2]);
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_REORDERED, 6, 7);
    lines_remove(&f->ls, 6);
    lines_free(&o);

    /* The chain ID is carried into the next file of a rotated chain. */
    uint8_t id_a[VMENC_AUDIT_CHAIN_ID_BYTES], id_next[VMENC_AUDIT_CHAIN_ID_BYTES];
    assert_int_equal(vmenc_audit_log_file_chain_id(k_key, sizeof(k_key), f->path, id_a), VMENC_OK);
    char next[600];
    join(next, sizeof(next), &f->t, "audit.log.2");
    uint64_t tail_seq;
    uint8_t tail[VMENC_AUDIT_HASH_BYTES];
    assert_int_equal(vmenc_audit_log_file_tail(k_key, sizeof(k_key), f->path, &tail_seq, tail), VMENC_OK);
    vmenc_audit_log_options lo = {.struct_size = sizeof(lo), .path = next, .key = k_key,
                                  .key_len = sizeof(k_key), .fsync = VMENC_AUDIT_FSYNC_NEVER,
                                  .start_seq = tail_seq, .start_hash = tail, .start_chain_id = id_a};
    vmenc_audit_log *log = NULL;
    assert_int_equal(vmenc_audit_log_open(&lo, &log), VMENC_OK);
    append_n(log, 2, "n");
    vmenc_audit_log_free(log);
    assert_int_equal(vmenc_audit_log_file_chain_id(k_key, sizeof(k_key), next, id_next), VMENC_OK);
    assert_memory_equal(id_a, id_next, sizeof(id_a));
    vmenc_audit_verify_options vo = {.struct_size = sizeof(vo), .key = k_key, .key_len = sizeof(k_key),
                                     .expected_last_seq = 12};
    vmenc_audit_verify_result res = {.struct_size = sizeof(res)};
    const char *both[] = {f->path, next};
    assert_int_equal(vmenc_audit_verify_files(&vo, both, 2, &res), VMENC_OK);
    assert_int_equal(res.num_records, 12);
}

static void test_insert_from_other_chain(void **state) {
    fixture *f = *state;
    /* A genuine record, same key, same sequence number, other log. */
    char other[600];
    join(other, sizeof(other), &f->t, "other.log");
    make_log(other, 10);
    lines o;
    lines_load(&o, other);
    /* Different times make different chains. */
    vmenc_audit_log *log = open_log(other, VMENC_AUDIT_FSYNC_NEVER, 0);
    append_n(log, 1, "zzz");
    vmenc_audit_log_free(log);
    lines_free(&o);
    lines_load(&o, other);
    assert_int_equal(o.n, 11);
    /* Replace our record 7 (seq 7) by theirs... they are identical chains
     * up to seq 10 (same events, same key), so take their seq 11 and splice
     * it after our seq 10. */
    /* Same events and key, but another chain (its own chain ID): its
     * record 11 does not continue ours. */
    lines_insert(&f->ls, 10, o.l[10]);
    expect_defect(&f->ls, 0, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_INSERTED, 10, 11);
    lines_free(&o);

    /* Now a truly different chain: other events from the start. */
    char third[600];
    join(third, sizeof(third), &f->t, "third.log");
    log = open_log(third, VMENC_AUDIT_FSYNC_NEVER, 0);
    append_n(log, 10, "b");
    vmenc_audit_log_free(log);
    lines_load(&o, third);
    lines_remove(&f->ls, 10);
    lines_replace(&f->ls, 6, o.l[6]); /* their seq 7 in place of ours */
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_INSERTED, 6, 7);
    lines_free(&o);
}

static void test_duplicate(void **state) {
    fixture *f = *state;
    lines_insert(&f->ls, 5, f->ls.l[4]);
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_DUPLICATED, 5, 6);
}

static void test_duplicate_older(void **state) {
    fixture *f = *state;
    lines_insert(&f->ls, 7, f->ls.l[1]);
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_REORDERED, 7, 8);
}

static void test_truncate_at_end(void **state) {
    fixture *f = *state;
    lines_remove(&f->ls, 9);
    lines_remove(&f->ls, 8);
    lines_remove(&f->ls, 7);
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TRUNCATED, VMENC_AUDIT_DEFECT_TRUNCATED, 7, 8);
    /* Without the last known sequence number, a clean cut is undetectable. */
    expect_defect(&f->ls, 0, VMENC_OK, VMENC_AUDIT_DEFECT_NONE, 0, 8);
    /* Everything cut. */
    while (f->ls.n > 0)
        lines_remove(&f->ls, 0);
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TRUNCATED, VMENC_AUDIT_DEFECT_TRUNCATED, 0, 1);
}

static void test_truncate_mid_line(void **state) {
    fixture *f = *state;
    size_t len;
    char *buf = lines_join(&f->ls, &len);
    /* Offsets of line 7's start and end. */
    size_t start = 0;
    for (size_t i = 0; i < 7; i++)
        start += strlen(f->ls.l[i]);
    size_t l7 = strlen(f->ls.l[7]);
    vmenc_audit_verify_options o = vopts(10);
    for (size_t cut = start + 1; cut < start + l7; cut += 7) {
        vmenc_audit_verify_result res;
        assert_int_equal(verify_mem_and_file(&o, buf, cut, &res), VMENC_E_AUDIT_TRUNCATED);
        assert_int_equal(res.defect, VMENC_AUDIT_DEFECT_TORN);
        assert_int_equal(res.bad_index, 7);
        assert_int_equal(res.bad_offset, start);
        assert_int_equal(res.bad_seq, 8);
        assert_int_equal(res.num_records, 7);
    }
    /* Cut exactly before the newline: still torn. */
    vmenc_audit_verify_result res;
    res.struct_size = sizeof(res);
    assert_int_equal(vmenc_audit_verify_buffer(&o, (const uint8_t *)buf, start + l7 - 1, &res),
                     VMENC_E_AUDIT_TRUNCATED);
    assert_int_equal(res.defect, VMENC_AUDIT_DEFECT_TORN);
    /* Cut right after it: a clean cut, caught by the expected sequence. */
    assert_int_equal(vmenc_audit_verify_buffer(&o, (const uint8_t *)buf, start + l7, &res),
                     VMENC_E_AUDIT_TRUNCATED);
    assert_int_equal(res.defect, VMENC_AUDIT_DEFECT_TRUNCATED);
    assert_int_equal(res.bad_index, 8);
    free(buf);
}

/* Lines longer than any record: stepped over, never parsed, in memory and
 * in files (where they exceed the reader's buffer). */
static void test_oversize_lines(void **state) {
    fixture *f = *state;
    size_t big = 3 * VMENC_AUDIT_MAX_LINE + 123;
    char *huge = malloc(big + 2);
    memset(huge, 'x', big);
    huge[big] = '\n';
    huge[big + 1] = '\0';
    lines_insert(&f->ls, 4, huge);
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_INSERTED, 4, 5);
    lines_remove(&f->ls, 4);
    char *orig = strdup(f->ls.l[4]);
    lines_replace(&f->ls, 4, huge); /* now in place of record 5 */
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_MALFORMED, 4, 5);
    lines_replace(&f->ls, 4, orig);
    free(orig);
    expect_defect(&f->ls, 10, VMENC_OK, VMENC_AUDIT_DEFECT_NONE, 0, 11);
    /* At the end without a newline: a torn line. */
    huge[big] = '\0';
    lines_insert(&f->ls, 10, huge);
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TRUNCATED, VMENC_AUDIT_DEFECT_TORN, 10, 11);
    free(huge);
}

static void test_wrong_key(void **state) {
    fixture *f = *state;
    size_t len;
    char *buf = lines_join(&f->ls, &len);
    uint8_t other[32];
    memcpy(other, k_key, 32);
    other[31] ^= 0x80;
    vmenc_audit_verify_options o = vopts(10);
    o.key = other;
    vmenc_audit_verify_result res;
    res.struct_size = sizeof(res);
    assert_int_equal(vmenc_audit_verify_buffer(&o, (const uint8_t *)buf, len, &res), VMENC_E_AUTH);
    assert_int_equal(res.defect, VMENC_AUDIT_DEFECT_WRONG_KEY);
    assert_int_equal(res.bad_index, 0);
    assert_int_equal(res.num_records, 0);
    /* Bad key lengths are a usage error and leave the result untouched. */
    o.key_len = 15;
    res.defect = (vmenc_audit_defect)77;
    assert_int_equal(vmenc_audit_verify_buffer(&o, (const uint8_t *)buf, len, &res),
                     VMENC_E_INVALID_ARG);
    assert_int_equal(res.defect, 77);
    free(buf);
}

/* A record made under another key, spliced into the middle. */
static void test_insert_other_key(void **state) {
    fixture *f = *state;
    char other[600];
    join(other, sizeof(other), &f->t, "otherkey.log");
    uint8_t key2[32];
    memset(key2, 7, sizeof(key2));
    vmenc_audit_log_options lo = {.struct_size = sizeof(lo), .path = other, .key = key2,
                                  .key_len = 32, .fsync = VMENC_AUDIT_FSYNC_NEVER};
    vmenc_audit_log *log = NULL;
    assert_int_equal(vmenc_audit_log_open(&lo, &log), VMENC_OK);
    append_n(log, 3, "a");
    vmenc_audit_log_free(log);
    lines o;
    lines_load(&o, other);
    lines_replace(&f->ls, 2, o.l[2]);
    expect_defect(&f->ls, 10, VMENC_E_AUDIT_TAMPERED, VMENC_AUDIT_DEFECT_EDITED, 2, 3);
    lines_free(&o);
}

/* ---- rotation: a chain across files ----------------------------------------------- */

static void test_rotation_chain(void **state) {
    tmpdir t;
    tmpdir_make(&t);
    char p1[512], p2[512], p3[512];
    join(p1, sizeof(p1), &t, "audit.log.1");
    join(p2, sizeof(p2), &t, "audit.log.2");
    join(p3, sizeof(p3), &t, "audit.log.3");
    vmenc_audit_log *log = open_log(p1, VMENC_AUDIT_FSYNC_NEVER, 0);
    append_n(log, 4, "a");
    assert_int_equal(vmenc_audit_log_rotate(log, p2), VMENC_OK);
    append_n(log, 3, "b");
    assert_int_equal(vmenc_audit_log_rotate(log, p3), VMENC_OK);
    append_n(log, 2, "c");
    uint64_t last;
    uint8_t last_hash[32];
    assert_int_equal(vmenc_audit_log_position(log, &last, last_hash), VMENC_OK);
    assert_int_equal(last, 9);
    vmenc_audit_log_free(log);

    vmenc_audit_verify_options o = vopts(9);
    vmenc_audit_verify_result res;
    res.struct_size = sizeof(res);
    const char *all[] = {p1, p2, p3};
    assert_int_equal(vmenc_audit_verify_files(&o, all, 3, &res), VMENC_OK);
    assert_int_equal(res.num_records, 9);
    assert_int_equal(res.last_seq, 9);
    assert_memory_equal(res.last_hash, last_hash, 32);

    /* The second file alone, given where the first one ended. */
    uint64_t seq1;
    uint8_t h1[32];
    assert_int_equal(vmenc_audit_log_file_tail(k_key, 32, p1, &seq1, h1), VMENC_OK);
    assert_int_equal(seq1, 4);
    vmenc_audit_verify_options o2 = vopts(7);
    o2.start_seq = seq1;
    o2.start_hash = h1;
    const char *second[] = {p2};
    assert_int_equal(vmenc_audit_verify_files(&o2, second, 1, &res), VMENC_OK);
    assert_int_equal(res.num_records, 3);
    /* ...and without that knowledge it looks like a chain missing its start. */
    vmenc_audit_verify_options o3 = vopts(0);
    assert_int_equal(vmenc_audit_verify_files(&o3, second, 1, &res), VMENC_E_AUDIT_TAMPERED);
    assert_int_equal(res.defect, VMENC_AUDIT_DEFECT_DELETED);
    assert_int_equal(res.bad_index, 0);
    assert_int_equal(res.bad_seq, 1);

    /* A missing middle file. */
    const char *gap[] = {p1, p3};
    assert_int_equal(vmenc_audit_verify_files(&o, gap, 2, &res), VMENC_E_AUDIT_TAMPERED);
    assert_int_equal(res.defect, VMENC_AUDIT_DEFECT_DELETED);
    assert_int_equal(res.bad_file, 1);
    assert_int_equal(res.bad_index, 0);
    assert_int_equal(res.bad_seq, 5);
    /* Files in the wrong order. */
    const char *swapped[] = {p1, p3, p2};
    assert_int_equal(vmenc_audit_verify_files(&o, swapped, 3, &res), VMENC_E_AUDIT_TAMPERED);
    assert_int_equal(res.defect, VMENC_AUDIT_DEFECT_REORDERED);
    assert_int_equal(res.bad_file, 1);
    /* The last file missing: caught by the expected sequence number. */
    const char *first_two[] = {p1, p2};
    assert_int_equal(vmenc_audit_verify_files(&o, first_two, 2, &res), VMENC_E_AUDIT_TRUNCATED);
    assert_int_equal(res.defect, VMENC_AUDIT_DEFECT_TRUNCATED);
    assert_int_equal(res.bad_file, 1);
    assert_int_equal(res.bad_index, 3);
    assert_int_equal(res.bad_seq, 8);

    /* An edit in the second file is reported there. */
    lines ls;
    lines_load(&ls, p2);
    ls.l[1][20] ^= 1;
    size_t len;
    char *buf = lines_join(&ls, &len);
    FILE *fp = fopen(p2, "wb");
    fwrite(buf, 1, len, fp);
    fclose(fp);
    free(buf);
    lines_free(&ls);
    assert_int_equal(vmenc_audit_verify_files(&o, all, 3, &res), VMENC_E_AUDIT_TAMPERED);
    assert_int_equal(res.bad_file, 1);
    assert_int_equal(res.bad_index, 1);
    assert_int_equal(res.bad_seq, 6);
    assert_int_equal(res.num_records, 5);

    /* Missing files are an I/O error, result untouched. */
    char nope[600];
    join(nope, sizeof(nope), &t, "nope");
    const char *missing[] = {nope};
    res.defect = (vmenc_audit_defect)99;
    assert_int_equal(vmenc_audit_verify_files(&o, missing, 1, &res), VMENC_E_IO);
    assert_int_equal(res.defect, 99);
    tmpdir_remove(&t);
}

static void test_verify_args(void **state) {
    vmenc_audit_verify_options o = vopts(0);
    vmenc_audit_verify_result res;
    res.struct_size = sizeof(res);
    assert_int_equal(vmenc_audit_verify_buffer(NULL, NULL, 0, &res), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_audit_verify_buffer(&o, NULL, 5, &res), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_audit_verify_buffer(&o, NULL, 0, NULL), VMENC_E_INVALID_ARG);
    res.struct_size = 4;
    assert_int_equal(vmenc_audit_verify_buffer(&o, NULL, 0, &res), VMENC_E_ABI_VERSION);
    res.struct_size = sizeof(res);
    o.start_seq = 3; /* without a start hash */
    assert_int_equal(vmenc_audit_verify_buffer(&o, NULL, 0, &res), VMENC_E_INVALID_ARG);
    o = vopts(0);
    assert_int_equal(vmenc_audit_verify_buffer(&o, NULL, 0, &res), VMENC_OK);
    assert_int_equal(res.num_records, 0);
    assert_int_equal(vmenc_audit_verify_files(&o, NULL, 1, &res), VMENC_E_INVALID_ARG);
    for (int d = 0; d <= 9; d++)
        assert_string_not_equal(vmenc_audit_defect_name((vmenc_audit_defect)d), "unknown");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup_log, teardown_log)

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_check),
        cmocka_unit_test(test_json_escaping_matches_jsonc),
        cmocka_unit_test(test_log_lines_are_json),
        cmocka_unit_test(test_golden_record),
        cmocka_unit_test(test_time_format_parse),
        cmocka_unit_test(test_parser_rejects_noncanonical),
        T(test_verify_intact),
        T(test_edit_every_byte),
        T(test_edit_every_field),
        T(test_delete),
        T(test_delete_several),
        T(test_reorder),
        T(test_move_to_end),
        T(test_move_earlier),
        T(test_insert_forged),
        T(test_insert_garbage_and_blank),
        T(test_insert_from_other_chain),
        T(test_foreign_record_is_inserted_whatever_its_seq),
        T(test_insert_other_key),
        T(test_duplicate),
        T(test_duplicate_older),
        T(test_truncate_at_end),
        T(test_truncate_mid_line),
        T(test_wrong_key),
        T(test_oversize_lines),
        cmocka_unit_test(test_rotation_chain),
        cmocka_unit_test(test_verify_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
