/*
 * tests/test_kms_file.c - the "file" key provider: round trips, wrong
 * passphrase, every-byte tampering and truncation, concurrent processes and
 * threads adding keys, crash safety (a crash injected at every step of the
 * atomic write, and SIGKILL at random instants), backup/export/restore,
 * passphrase change, factory options.
 *
 * Argon2id runs with tiny limits here (1 pass, 8 KiB) through the options
 * so the suite stays fast; the default limits are libsodium's MODERATE.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "keys/keys_internal.h"
#include "kms/file/keystore.h"
#include "kms/kms_internal.h"
#include "vmenc/kms_file.h"
#include "vmenc/vmenc.h"

static const uint8_t PASS[] = "correct horse battery staple";
static const uint8_t PASS2[] = "backup passphrase, kept elsewhere";

typedef struct fixture {
    char dir[64];
    char path[128];
} fixture;

static vmenc_kms_file_options fast_opts(uint32_t flags) {
    vmenc_kms_file_options o = {.struct_size = sizeof(o), .flags = flags, .kdf_opslimit = 1,
                                .kdf_memlimit_kib = 8, .max_kdf_opslimit = 4, .max_kdf_memlimit_kib = 1024};
    return o;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/vmenc-kmsfile-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/keystore", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static vmenc_kms_provider *open_ks(const char *path, const uint8_t *pass, size_t len, uint32_t flags) {
    vmenc_kms_file_options o = fast_opts(flags);
    vmenc_kms_provider *p = NULL;
    assert_int_equal(vmenc_kms_file_provider_new(path, pass, len, &o, &p), VMENC_OK);
    return p;
}

static vmenc_status try_open(const char *path, const uint8_t *pass, size_t len) {
    vmenc_kms_file_options o = fast_opts(0);
    vmenc_kms_provider *p = NULL;
    vmenc_status st = vmenc_kms_file_provider_new(path, pass, len, &o, &p);
    if (st == VMENC_OK) {
        assert_non_null(p);
        vmenc_kms_provider_free(p);
    } else {
        assert_null(p); /* failure leaves the out-parameter untouched */
    }
    return st;
}

static size_t live_keys(vmenc_kms_provider *p) {
    size_t live = 0;
    assert_int_equal(vmenc_kms_file_count(p, &live, NULL), VMENC_OK);
    return live;
}

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    uint8_t *buf = malloc(1 << 20);
    *len = fread(buf, 1, 1 << 20, fp);
    fclose(fp);
    return buf;
}

static void spit(const char *path, const uint8_t *buf, size_t len) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, len, fp), len);
    fclose(fp);
}

/* ---- round trips ------------------------------------------------------------------- */

static void test_roundtrip(void **state) {
    fixture *f = *state;
    vmenc_kms_provider *p = open_ks(f->path, PASS, sizeof(PASS) - 1, VMENC_KMS_FILE_CREATE);
    assert_string_equal(p->ops->type_name, "file");
    char ids[3][VMENC_KMS_KEY_ID_CAP];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(vmenc_kms_provider_create_kek(p, i == 0 ? NULL : "tenant-a key", 1000, ids[i],
                                                       sizeof(ids[i])),
                         VMENC_OK);
        /* A random (version 4) UUID. */
        assert_int_equal(strlen(ids[i]), 36);
        assert_int_equal(ids[i][14], '4');
        assert_true(ids[i][8] == '-' && ids[i][13] == '-' && ids[i][18] == '-' && ids[i][23] == '-');
    }
    assert_string_not_equal(ids[0], ids[1]);
    assert_int_equal(live_keys(p), 3);

    /* A second, independent provider on the same file sees the same keys. */
    vmenc_kms_provider *q = open_ks(f->path, PASS, sizeof(PASS) - 1, 0);
    for (int i = 0; i < 3; i++) {
        vmenc_kek *a = NULL, *b = NULL;
        assert_int_equal(vmenc_kms_provider_get_kek(p, ids[i], 1000, &a), VMENC_OK);
        assert_int_equal(vmenc_kms_provider_get_kek(q, ids[i], 1000, &b), VMENC_OK);
        assert_int_equal(vmenc_kek_equal(a, b), VMENC_OK);
        if (i > 0) {
            vmenc_kek *c = NULL;
            assert_int_equal(vmenc_kms_provider_get_kek(q, ids[0], 1000, &c), VMENC_OK);
            assert_int_equal(vmenc_kek_equal(a, c), VMENC_E_KEY_MISMATCH); /* keys differ */
            vmenc_kek_free(c);
        }
        vmenc_kek_free(a);
        vmenc_kek_free(b);
    }
    /* Keys added through q appear in p (p re-reads the changed file). */
    char id4[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_provider_create_kek(q, "late", 1000, id4, sizeof(id4)), VMENC_OK);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_provider_get_kek(p, id4, 1000, &k), VMENC_OK);
    vmenc_kek_free(k);

    vmenc_kek *none = NULL;
    assert_int_equal(vmenc_kms_provider_get_kek(p, "00000000-0000-4000-8000-000000000000", 1000, &none),
                     VMENC_E_KEY_NOT_FOUND);
    assert_null(none);
    assert_int_equal(vmenc_kms_provider_health(p, 1000), VMENC_OK);
    /* The file provider lets KEKs out, so remote wrap is not offered. */
    uint8_t buf[128];
    size_t n = 0;
    vmenc_kms_wrap_params wp = {.struct_size = sizeof(wp), .mech = VMENC_KMS_WRAP_AES_KWP};
    assert_int_equal(vmenc_kms_provider_wrap(p, ids[0], &wp, buf, 64, 1000, buf, sizeof(buf), &n),
                     VMENC_E_UNIMPLEMENTED);
    /* The file is private to its owner. */
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0077, 0);
    vmenc_kms_provider_free(q);
    vmenc_kms_provider_free(p);
}

static void test_file_holds_no_plaintext_key(void **state) {
    fixture *f = *state;
    vmenc_kms_provider *p = open_ks(f->path, PASS, sizeof(PASS) - 1, VMENC_KMS_FILE_CREATE);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_provider_create_kek(p, "visible-name", 1000, id, sizeof(id)), VMENC_OK);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_provider_get_kek(p, id, 1000, &k), VMENC_OK);
    size_t len = 0;
    uint8_t *buf = slurp(f->path, &len);
    const uint8_t *kb = vmenc_kek_bytes_internal(k);
    assert_null(memmem(buf, len, kb, 8));
    assert_null(memmem(buf, len, id, strlen(id)));           /* IDs are encrypted too */
    assert_null(memmem(buf, len, "visible-name", 12));
    assert_null(memmem(buf, len, PASS, 8));
    free(buf);
    vmenc_kek_free(k);
    vmenc_kms_provider_free(p);
}

/* ---- wrong passphrase, missing file, limits -------------------------------------------- */

static void test_wrong_passphrase_and_missing(void **state) {
    fixture *f = *state;
    assert_int_equal(try_open(f->path, PASS, sizeof(PASS) - 1), VMENC_E_KMS_UNAVAILABLE);
    vmenc_kms_file_options o = fast_opts(0);
    assert_int_equal(vmenc_kms_file_create(f->path, PASS, sizeof(PASS) - 1, &o), VMENC_OK);
    assert_int_equal(vmenc_kms_file_create(f->path, PASS, sizeof(PASS) - 1, &o), VMENC_E_EXISTS);
    assert_int_equal(try_open(f->path, PASS, sizeof(PASS) - 1), VMENC_OK);
    assert_int_equal(try_open(f->path, PASS, sizeof(PASS) - 2), VMENC_E_WRONG_PASSPHRASE);
    assert_int_equal(try_open(f->path, PASS2, sizeof(PASS2) - 1), VMENC_E_WRONG_PASSPHRASE);
    /* Empty passphrases and bad arguments are refused. */
    vmenc_kms_provider *p = NULL;
    assert_int_equal(vmenc_kms_file_provider_new(f->path, PASS, 0, &o, &p), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_kms_file_provider_new(NULL, PASS, 4, &o, &p), VMENC_E_INVALID_ARG);
    vmenc_kms_file_options bad = o;
    bad.kdf_opslimit = 1000;
    assert_int_equal(vmenc_kms_file_provider_new(f->path, PASS, 4, &bad, &p), VMENC_E_INVALID_ARG);
    bad = o;
    bad.struct_size = 4;
    assert_int_equal(vmenc_kms_file_provider_new(f->path, PASS, 4, &bad, &p), VMENC_E_INVALID_ARG);
    assert_null(p);
}

static void test_kdf_limits_enforced_on_open(void **state) {
    fixture *f = *state;
    /* A file that asks for more Argon2id work than the opener allows is
     * refused before any derivation (the header is not yet authenticated). */
    vmenc_kms_file_options o = fast_opts(0);
    o.kdf_opslimit = 3;
    o.kdf_memlimit_kib = 64;
    assert_int_equal(vmenc_kms_file_create(f->path, PASS, sizeof(PASS) - 1, &o), VMENC_OK);
    vmenc_kms_file_options strict = fast_opts(0);
    strict.max_kdf_opslimit = 2;
    vmenc_kms_provider *p = NULL;
    assert_int_equal(vmenc_kms_file_provider_new(f->path, PASS, sizeof(PASS) - 1, &strict, &p), VMENC_E_TOO_LARGE);
    strict = fast_opts(0);
    strict.max_kdf_memlimit_kib = 32;
    assert_int_equal(vmenc_kms_file_provider_new(f->path, PASS, sizeof(PASS) - 1, &strict, &p), VMENC_E_TOO_LARGE);
    assert_int_equal(try_open(f->path, PASS, sizeof(PASS) - 1), VMENC_OK);
}

/* ---- tampering and truncation ------------------------------------------------------------ */

static bool acceptable_damage_status(vmenc_status st) {
    return st == VMENC_E_WRONG_PASSPHRASE || st == VMENC_E_AUTH ||
           vmenc_status_category_of(st) == VMENC_CAT_PARSE;
}

static void test_every_byte_tamper_and_truncation(void **state) {
    fixture *f = *state;
    vmenc_kms_provider *p = open_ks(f->path, PASS, sizeof(PASS) - 1, VMENC_KMS_FILE_CREATE);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_provider_create_kek(p, "a", 1000, id, sizeof(id)), VMENC_OK);
    assert_int_equal(vmenc_kms_provider_create_kek(p, "b", 1000, id, sizeof(id)), VMENC_OK);
    vmenc_kms_provider_free(p);

    size_t len = 0;
    uint8_t *orig = slurp(f->path, &len);
    assert_true(len > VMENC_KS_HEADER_BYTES + 16);
    char copy[160];
    snprintf(copy, sizeof(copy), "%s/tampered", f->dir);
    uint8_t *buf = malloc(len + 1);
    int by_status[4] = {0};
    static const uint8_t flips[] = {0x01, 0x80};
    for (size_t i = 0; i < len; i++) {
        for (size_t b = 0; b < sizeof(flips); b++) {
            memcpy(buf, orig, len);
            buf[i] ^= flips[b];
            spit(copy, buf, len);
            vmenc_status st = try_open(copy, PASS, sizeof(PASS) - 1);
            if (!acceptable_damage_status(st))
                fail_msg("byte %zu ^ 0x%02x: status %s", i, flips[b], vmenc_status_name(st));
            by_status[st == VMENC_E_WRONG_PASSPHRASE ? 0 : st == VMENC_E_AUTH ? 1 : 2]++;
        }
    }
    /* Each kind of damage was actually exercised. */
    assert_true(by_status[0] > 0 && by_status[1] > 0 && by_status[2] > 0);
    for (size_t n = 0; n < len; n++) {
        spit(copy, orig, n);
        vmenc_status st = try_open(copy, PASS, sizeof(PASS) - 1);
        if (vmenc_status_category_of(st) != VMENC_CAT_PARSE)
            fail_msg("truncated to %zu: status %s", n, vmenc_status_name(st));
    }
    memcpy(buf, orig, len);
    buf[len] = 0;
    spit(copy, buf, len + 1);
    assert_int_equal(try_open(copy, PASS, sizeof(PASS) - 1), VMENC_E_TRAILING_DATA);
    /* The original still opens: the test did not damage it by accident. */
    spit(copy, orig, len);
    assert_int_equal(try_open(copy, PASS, sizeof(PASS) - 1), VMENC_OK);
    free(buf);
    free(orig);
}

/* ---- revoke, destroy, count ------------------------------------------------------------------ */

static void test_revoke_destroy(void **state) {
    fixture *f = *state;
    vmenc_kms_provider *p = open_ks(f->path, PASS, sizeof(PASS) - 1, VMENC_KMS_FILE_CREATE);
    char a[VMENC_KMS_KEY_ID_CAP], b[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_provider_create_kek(p, NULL, 1000, a, sizeof(a)), VMENC_OK);
    assert_int_equal(vmenc_kms_provider_create_kek(p, NULL, 1000, b, sizeof(b)), VMENC_OK);
    assert_int_equal(vmenc_kms_provider_revoke_kek(p, a, 1000), VMENC_OK);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_provider_get_kek(p, a, 1000, &k), VMENC_E_KEY_STATE);
    assert_int_equal(vmenc_kms_provider_destroy_kek(p, b, 1000), VMENC_OK);
    assert_int_equal(vmenc_kms_provider_get_kek(p, b, 1000, &k), VMENC_E_KEY_STATE);
    assert_int_equal(vmenc_kms_provider_revoke_kek(p, b, 1000), VMENC_E_KEY_STATE);
    assert_int_equal(vmenc_kms_provider_destroy_kek(p, "no-such-key", 1000), VMENC_E_KEY_NOT_FOUND);
    assert_null(k);
    size_t live = 0, total = 0;
    assert_int_equal(vmenc_kms_file_count(p, &live, &total), VMENC_OK);
    assert_int_equal(live, 1);
    assert_int_equal(total, 2);
    /* The destroyed key's bytes are gone from the file: re-open and check. */
    vmenc_kms_provider_free(p);
    p = open_ks(f->path, PASS, sizeof(PASS) - 1, 0);
    assert_int_equal(vmenc_kms_provider_get_kek(p, b, 1000, &k), VMENC_E_KEY_STATE);
    vmenc_kms_provider_free(p);
}

/* ---- concurrency: processes and threads ---------------------------------------------------- */

#define CHILDREN 6
#define KEYS_PER_CHILD 5

static void test_concurrent_processes(void **state) {
    fixture *f = *state;
    vmenc_kms_file_options o = fast_opts(0);
    assert_int_equal(vmenc_kms_file_create(f->path, PASS, sizeof(PASS) - 1, &o), VMENC_OK);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pids[CHILDREN];
    for (int c = 0; c < CHILDREN; c++) {
        pids[c] = fork();
        assert_true(pids[c] >= 0);
        if (pids[c] == 0) {
            close(fds[0]);
            vmenc_kms_provider *p = NULL;
            if (vmenc_kms_file_provider_new(f->path, PASS, sizeof(PASS) - 1, &o, &p) != VMENC_OK)
                _exit(10);
            for (int i = 0; i < KEYS_PER_CHILD; i++) {
                char id[VMENC_KMS_KEY_ID_CAP];
                if (vmenc_kms_provider_create_kek(p, "child", 60000, id, sizeof(id)) != VMENC_OK)
                    _exit(11);
                char line[40];
                memcpy(line, id, 36);
                line[36] = '\n';
                if (write(fds[1], line, 37) != 37)
                    _exit(12);
            }
            vmenc_kms_provider_free(p);
            _exit(0);
        }
    }
    close(fds[1]);
    char all[CHILDREN * KEYS_PER_CHILD * 37 + 1];
    size_t got = 0;
    ssize_t n;
    while ((n = read(fds[0], all + got, sizeof(all) - 1 - got)) > 0)
        got += (size_t)n;
    close(fds[0]);
    for (int c = 0; c < CHILDREN; c++) {
        int ws = 0;
        assert_int_equal(waitpid(pids[c], &ws, 0), pids[c]);
        assert_true(WIFEXITED(ws));
        assert_int_equal(WEXITSTATUS(ws), 0);
    }
    assert_int_equal(got, (size_t)CHILDREN * KEYS_PER_CHILD * 37);
    vmenc_kms_provider *p = open_ks(f->path, PASS, sizeof(PASS) - 1, 0);
    assert_int_equal(live_keys(p), CHILDREN * KEYS_PER_CHILD);
    for (size_t i = 0; i < got; i += 37) {
        char id[37];
        memcpy(id, all + i, 36);
        id[36] = 0;
        vmenc_kek *k = NULL;
        assert_int_equal(vmenc_kms_provider_get_kek(p, id, 1000, &k), VMENC_OK);
        vmenc_kek_free(k);
    }
    vmenc_kms_provider_free(p);
}

static void test_concurrent_create(void **state) {
    fixture *f = *state;
    /* Several processes create the same keystore at once, each with its own
     * passphrase: exactly one wins, the others see VMENC_E_EXISTS, and the
     * file is whole and opens with the winner's passphrase only. */
    enum { N = 6 };
    pid_t pids[N];
    for (int c = 0; c < N; c++) {
        pids[c] = fork();
        assert_true(pids[c] >= 0);
        if (pids[c] == 0) {
            char pass[16];
            snprintf(pass, sizeof(pass), "pass-%d", c);
            vmenc_kms_file_options o = fast_opts(0);
            vmenc_status st = vmenc_kms_file_create(f->path, (const uint8_t *)pass, strlen(pass), &o);
            _exit(st == VMENC_OK ? 0 : st == VMENC_E_EXISTS ? 1 : 2);
        }
    }
    int winners = 0, winner = -1;
    for (int c = 0; c < N; c++) {
        int ws = 0;
        assert_int_equal(waitpid(pids[c], &ws, 0), pids[c]);
        assert_true(WIFEXITED(ws));
        assert_true(WEXITSTATUS(ws) <= 1);
        if (WEXITSTATUS(ws) == 0) {
            winners++;
            winner = c;
        }
    }
    assert_int_equal(winners, 1);
    for (int c = 0; c < N; c++) {
        char pass[16];
        snprintf(pass, sizeof(pass), "pass-%d", c);
        assert_int_equal(try_open(f->path, (const uint8_t *)pass, strlen(pass)),
                         c == winner ? VMENC_OK : VMENC_E_WRONG_PASSPHRASE);
    }
}

typedef struct thread_arg {
    const char *path;
    vmenc_kms_provider *shared;
    vmenc_status st;
} thread_arg;

static void *thread_add(void *varg) {
    thread_arg *a = varg;
    vmenc_kms_file_options o = fast_opts(0);
    vmenc_kms_provider *own = NULL;
    a->st = vmenc_kms_file_provider_new(a->path, PASS, sizeof(PASS) - 1, &o, &own);
    for (int i = 0; a->st == VMENC_OK && i < 4; i++) {
        char id[VMENC_KMS_KEY_ID_CAP];
        /* Alternate between the shared provider and this thread's own. */
        a->st = vmenc_kms_provider_create_kek(i % 2 ? a->shared : own, NULL, 60000, id, sizeof(id));
        vmenc_kek *k = NULL;
        if (a->st == VMENC_OK)
            a->st = vmenc_kms_provider_get_kek(a->shared, id, 1000, &k);
        vmenc_kek_free(k);
    }
    vmenc_kms_provider_free(own);
    return NULL;
}

static void test_concurrent_threads(void **state) {
    fixture *f = *state;
    vmenc_kms_provider *shared = open_ks(f->path, PASS, sizeof(PASS) - 1, VMENC_KMS_FILE_CREATE);
    pthread_t t[4];
    thread_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (thread_arg){f->path, shared, VMENC_E_INTERNAL};
        assert_int_equal(pthread_create(&t[i], NULL, thread_add, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].st, VMENC_OK);
    }
    assert_int_equal(live_keys(shared), 16);
    vmenc_kms_provider_free(shared);
}

static void test_lock_timeout(void **state) {
    fixture *f = *state;
    vmenc_kms_provider *p = open_ks(f->path, PASS, sizeof(PASS) - 1, VMENC_KMS_FILE_CREATE);
    /* Another process holds the lock: a writer gives up at its deadline. */
    char lock[160];
    snprintf(lock, sizeof(lock), "%s.lock", f->path);
    int lfd = open(lock, O_RDWR | O_CREAT, 0600);
    assert_true(lfd >= 0);
    int go[2], done[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(done), 0);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(lock, O_RDWR);
        char c = 0;
        if (fd < 0 || flock(fd, LOCK_EX) != 0 || write(go[1], "x", 1) != 1 || read(done[0], &c, 1) < 0)
            _exit(1);
        _exit(0);
    }
    char c;
    assert_int_equal(read(go[0], &c, 1), 1);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_provider_create_kek(p, NULL, 50, id, sizeof(id)), VMENC_E_KMS_TIMEOUT);
    /* Readers need no lock. */
    assert_int_equal(vmenc_kms_provider_health(p, 0), VMENC_OK);
    assert_int_equal(write(done[1], "x", 1), 1);
    int ws;
    waitpid(pid, &ws, 0);
    assert_int_equal(vmenc_kms_provider_create_kek(p, NULL, 5000, id, sizeof(id)), VMENC_OK);
    assert_int_equal(live_keys(p), 1);
    close(lfd);
    vmenc_kms_provider_free(p);
}

/* ---- crash safety ------------------------------------------------------------------------- */

static int crash_step;
static int crash_hook(void *arg, int step) {
    (void)arg;
    if (step == crash_step)
        _exit(42); /* a crash: no cleanup, no unlock other than the kernel's */
    return 0;
}

static int stop_hook(void *arg, int step) { return step == *(int *)arg; }

static void test_crash_at_every_step(void **state) {
    fixture *f = *state;
    vmenc_kms_provider *p = open_ks(f->path, PASS, sizeof(PASS) - 1, VMENC_KMS_FILE_CREATE);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_provider_create_kek(p, NULL, 1000, id, sizeof(id)), VMENC_OK);
    size_t expect = 1;
    for (int step = VMENC_KMS_FILE_STEP_TMP_OPEN; step <= VMENC_KMS_FILE_STEP_DONE; step++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            vmenc_kms_provider *c = NULL;
            vmenc_kms_file_options o = fast_opts(0);
            if (vmenc_kms_file_provider_new(f->path, PASS, sizeof(PASS) - 1, &o, &c) != VMENC_OK)
                _exit(1);
            crash_step = step;
            if (vmenc_kms_file_set_test_hook(c, crash_hook, NULL) != VMENC_OK)
                _exit(2);
            char cid[VMENC_KMS_KEY_ID_CAP];
            if (vmenc_kms_provider_create_kek(c, NULL, 1000, cid, sizeof(cid)) != VMENC_OK)
                _exit(4);
            _exit(3); /* the hook should have crashed us */
        }
        int ws = 0;
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        assert_true(WIFEXITED(ws));
        assert_int_equal(WEXITSTATUS(ws), 42);
        /* Before the rename the old file stands; from the rename on, the new. */
        if (step >= VMENC_KMS_FILE_STEP_RENAMED)
            expect++;
        vmenc_kms_provider *q = open_ks(f->path, PASS, sizeof(PASS) - 1, 0);
        assert_int_equal(live_keys(q), expect);
        vmenc_kms_provider_free(q);
        assert_int_equal(live_keys(p), expect);
    }
    /* A write abandoned without crashing reports the failure, keeps the old
     * state, and the provider keeps working afterwards (stale temp file). */
    for (int step = VMENC_KMS_FILE_STEP_TMP_OPEN; step < VMENC_KMS_FILE_STEP_RENAMED; step++) {
        int stop = step;
        assert_int_equal(vmenc_kms_file_set_test_hook(p, stop_hook, &stop), VMENC_OK);
        assert_int_equal(vmenc_kms_provider_create_kek(p, NULL, 1000, id, sizeof(id)), VMENC_E_IO);
        assert_int_equal(vmenc_kms_file_set_test_hook(p, NULL, NULL), VMENC_OK);
        assert_int_equal(live_keys(p), expect);
    }
    assert_int_equal(vmenc_kms_provider_create_kek(p, NULL, 1000, id, sizeof(id)), VMENC_OK);
    assert_int_equal(live_keys(p), expect + 1);
    vmenc_kms_provider_free(p);
}

static void test_sigkill_at_random_instants(void **state) {
    fixture *f = *state;
    vmenc_kms_file_options o = fast_opts(0);
    assert_int_equal(vmenc_kms_file_create(f->path, PASS, sizeof(PASS) - 1, &o), VMENC_OK);
    unsigned seed = (unsigned)time(NULL);
    print_message("sigkill seed %u\n", seed);
    srand(seed);
    char *committed = calloc(1, 1 << 16);
    size_t committed_len = 0;
    for (int round = 0; round < 12; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            vmenc_kms_provider *p = NULL;
            if (vmenc_kms_file_provider_new(f->path, PASS, sizeof(PASS) - 1, &o, &p) != VMENC_OK)
                _exit(1);
            for (;;) {
                char id[VMENC_KMS_KEY_ID_CAP];
                if (vmenc_kms_provider_create_kek(p, NULL, 60000, id, sizeof(id)) != VMENC_OK)
                    _exit(2);
                id[36] = '\n';
                if (write(fds[1], id, 37) != 37)
                    _exit(3);
            }
        }
        close(fds[1]);
        struct timespec ts = {0, (long)(rand() % 40000) * 1000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int ws = 0;
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        assert_true(WIFSIGNALED(ws)); /* it was still writing when killed */
        ssize_t n;
        while (committed_len < (1 << 16) - 64 &&
               (n = read(fds[0], committed + committed_len, (1 << 16) - 64 - committed_len)) > 0)
            committed_len += (size_t)n;
        close(fds[0]);
        /* The keystore opens and holds every key whose creation returned. */
        vmenc_kms_provider *p = open_ks(f->path, PASS, sizeof(PASS) - 1, 0);
        for (size_t i = 0; i + 37 <= committed_len; i += 37) {
            char id[37];
            memcpy(id, committed + i, 36);
            id[36] = 0;
            vmenc_kek *k = NULL;
            vmenc_status st = vmenc_kms_provider_get_kek(p, id, 1000, &k);
            if (st != VMENC_OK)
                fail_msg("round %d: committed key %s lost (%s)", round, id, vmenc_status_name(st));
            vmenc_kek_free(k);
        }
        size_t live = live_keys(p);
        /* Each round may add one key more than it reported: created, then
         * killed before the report. Nothing else appears or disappears. */
        assert_true(live >= committed_len / 37 && live <= committed_len / 37 + (size_t)round + 1);
        vmenc_kms_provider_free(p);
    }
    free(committed);
}

/* ---- backup, restore, passphrase change --------------------------------------------------- */

static void test_backup_restore(void **state) {
    fixture *f = *state;
    char backup[160], other[160];
    snprintf(backup, sizeof(backup), "%s/backup", f->dir);
    snprintf(other, sizeof(other), "%s/other", f->dir);
    vmenc_kms_provider *p = open_ks(f->path, PASS, sizeof(PASS) - 1, VMENC_KMS_FILE_CREATE);
    char ids[3][VMENC_KMS_KEY_ID_CAP];
    for (int i = 0; i < 3; i++)
        assert_int_equal(vmenc_kms_provider_create_kek(p, "k", 1000, ids[i], sizeof(ids[i])), VMENC_OK);
    vmenc_kms_file_options o = fast_opts(0);
    assert_int_equal(vmenc_kms_file_export(p, backup, PASS2, sizeof(PASS2) - 1, &o, 1000), VMENC_OK);
    /* Never overwrites a backup. */
    assert_int_equal(vmenc_kms_file_export(p, backup, PASS2, sizeof(PASS2) - 1, &o, 1000), VMENC_E_EXISTS);
    /* The backup needs its own passphrase. */
    assert_int_equal(try_open(backup, PASS, sizeof(PASS) - 1), VMENC_E_WRONG_PASSPHRASE);
    assert_int_equal(try_open(backup, PASS2, sizeof(PASS2) - 1), VMENC_OK);
    size_t added = 99;
    assert_int_equal(vmenc_kms_file_restore(p, backup, PASS, sizeof(PASS) - 1, VMENC_KMS_FILE_RESTORE_MERGE, 1000,
                                            &added),
                     VMENC_E_WRONG_PASSPHRASE);
    assert_int_equal(added, 99);

    /* Merge into an empty keystore: every key arrives with its bytes. */
    vmenc_kms_provider *q = open_ks(other, PASS, sizeof(PASS) - 1, VMENC_KMS_FILE_CREATE);
    assert_int_equal(vmenc_kms_file_restore(q, backup, PASS2, sizeof(PASS2) - 1, VMENC_KMS_FILE_RESTORE_MERGE, 1000,
                                            &added),
                     VMENC_OK);
    assert_int_equal(added, 3);
    for (int i = 0; i < 3; i++) {
        vmenc_kek *a = NULL, *b = NULL;
        assert_int_equal(vmenc_kms_provider_get_kek(p, ids[i], 1000, &a), VMENC_OK);
        assert_int_equal(vmenc_kms_provider_get_kek(q, ids[i], 1000, &b), VMENC_OK);
        assert_int_equal(vmenc_kek_equal(a, b), VMENC_OK);
        vmenc_kek_free(a);
        vmenc_kek_free(b);
    }
    /* Merging again adds nothing. */
    assert_int_equal(vmenc_kms_file_restore(q, backup, PASS2, sizeof(PASS2) - 1, VMENC_KMS_FILE_RESTORE_MERGE, 1000,
                                            &added),
                     VMENC_OK);
    assert_int_equal(added, 0);

    /* A destroyed key stays destroyed when an older backup is merged. */
    assert_int_equal(vmenc_kms_provider_destroy_kek(p, ids[0], 1000), VMENC_OK);
    assert_int_equal(vmenc_kms_file_restore(p, backup, PASS2, sizeof(PASS2) - 1, VMENC_KMS_FILE_RESTORE_MERGE, 1000,
                                            &added),
                     VMENC_OK);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_provider_get_kek(p, ids[0], 1000, &k), VMENC_E_KEY_STATE);

    /* Replace refuses to drop a live key the backup lacks. */
    char id4[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_provider_create_kek(p, "new", 1000, id4, sizeof(id4)), VMENC_OK);
    assert_int_equal(vmenc_kms_file_restore(p, backup, PASS2, sizeof(PASS2) - 1, VMENC_KMS_FILE_RESTORE_REPLACE,
                                            1000, &added),
                     VMENC_E_KEY_MISMATCH);
    assert_int_equal(vmenc_kms_provider_get_kek(p, id4, 1000, &k), VMENC_OK);
    vmenc_kek_free(k);
    k = NULL;
    /* ...but replaces a damaged keystore entirely. */
    vmenc_kms_provider_free(q);
    uint8_t junk[300];
    memset(junk, 0xA5, sizeof(junk));
    spit(other, junk, sizeof(junk));
    vmenc_kms_file_options fo = fast_opts(0);
    assert_int_equal(vmenc_kms_file_provider_new(other, PASS, sizeof(PASS) - 1, &fo, &q), VMENC_E_BAD_MAGIC);
    vmenc_kms_provider_free(p);
    p = open_ks(f->path, PASS, sizeof(PASS) - 1, 0);
    char third[160];
    snprintf(third, sizeof(third), "%s/third", f->dir);
    q = open_ks(third, PASS, sizeof(PASS) - 1, VMENC_KMS_FILE_CREATE);
    spit(third, junk, sizeof(junk)); /* damaged after opening */
    assert_int_equal(vmenc_kms_file_restore(q, backup, PASS2, sizeof(PASS2) - 1, VMENC_KMS_FILE_RESTORE_REPLACE,
                                            1000, &added),
                     VMENC_OK);
    assert_int_equal(added, 3);
    assert_int_equal(live_keys(q), 3);
    vmenc_kms_provider_free(q);
    assert_int_equal(try_open(third, PASS, sizeof(PASS) - 1), VMENC_OK);
    vmenc_kms_provider_free(p);
}

static void test_restore_conflict(void **state) {
    fixture *f = *state;
    /* A backup that holds an ID the keystore has, with other bytes, is a
     * conflict: nothing is written. Built with the internal codec. */
    vmenc_kms_provider *p = open_ks(f->path, PASS, sizeof(PASS) - 1, VMENC_KMS_FILE_CREATE);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_provider_create_kek(p, "x", 1000, id, sizeof(id)), VMENC_OK);
    vmenc_ks_store *s = NULL;
    assert_int_equal(vmenc_ks_store_new(&s), VMENC_OK);
    vmenc_ks_entry e;
    memset(&e, 0, sizeof(e));
    memcpy(e.id, id, strlen(id) + 1);
    e.state = VMENC_KS_ACTIVE;
    memset(e.key, 0x42, sizeof(e.key));
    assert_int_equal(vmenc_ks_store_add(s, &e), VMENC_OK);
    vmenc_ks_header h;
    memset(&h, 0, sizeof(h));
    h.opslimit = 1;
    h.memlimit_kib = 8;
    assert_int_equal(vmenc_random_bytes(h.salt, sizeof(h.salt)), VMENC_OK);
    vmenc_secret *pass = NULL, *master = NULL;
    assert_int_equal(vmenc_secret_from(PASS2, sizeof(PASS2) - 1, &pass), VMENC_OK);
    assert_int_equal(vmenc_ks_derive(pass, &h, &master), VMENC_OK);
    uint8_t *file = NULL;
    size_t file_len = 0;
    assert_int_equal(vmenc_ks_seal(s, master, &h, &file, &file_len), VMENC_OK);
    char backup[160];
    snprintf(backup, sizeof(backup), "%s/conflict", f->dir);
    spit(backup, file, file_len);
    size_t added = 7;
    assert_int_equal(vmenc_kms_file_restore(p, backup, PASS2, sizeof(PASS2) - 1, VMENC_KMS_FILE_RESTORE_MERGE, 1000,
                                            &added),
                     VMENC_E_KEY_MISMATCH);
    assert_int_equal(vmenc_kms_file_restore(p, backup, PASS2, sizeof(PASS2) - 1, VMENC_KMS_FILE_RESTORE_REPLACE,
                                            1000, &added),
                     VMENC_E_KEY_MISMATCH);
    assert_int_equal(added, 7);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_provider_get_kek(p, id, 1000, &k), VMENC_OK);
    assert_true(vmenc_kek_bytes_internal(k)[0] != 0x42 || vmenc_kek_bytes_internal(k)[1] != 0x42);
    vmenc_kek_free(k);
    free(file);
    vmenc_secret_free(master);
    vmenc_secret_free(pass);
    vmenc_ks_store_free(s);
    vmenc_kms_provider_free(p);
}

static void test_change_passphrase(void **state) {
    fixture *f = *state;
    vmenc_kms_provider *p = open_ks(f->path, PASS, sizeof(PASS) - 1, VMENC_KMS_FILE_CREATE);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_provider_create_kek(p, NULL, 1000, id, sizeof(id)), VMENC_OK);
    vmenc_kek *before = NULL, *after = NULL;
    assert_int_equal(vmenc_kms_provider_get_kek(p, id, 1000, &before), VMENC_OK);
    vmenc_kms_file_options o = fast_opts(0);
    assert_int_equal(vmenc_kms_file_change_passphrase(p, PASS2, sizeof(PASS2) - 1, &o, 1000), VMENC_OK);
    assert_int_equal(try_open(f->path, PASS, sizeof(PASS) - 1), VMENC_E_WRONG_PASSPHRASE);
    vmenc_kms_provider *q = open_ks(f->path, PASS2, sizeof(PASS2) - 1, 0);
    assert_int_equal(vmenc_kms_provider_get_kek(q, id, 1000, &after), VMENC_OK);
    assert_int_equal(vmenc_kek_equal(before, after), VMENC_OK);
    /* The provider that changed it keeps working. */
    assert_int_equal(vmenc_kms_provider_create_kek(p, NULL, 1000, id, sizeof(id)), VMENC_OK);
    assert_int_equal(live_keys(q), 2);
    vmenc_kek_free(before);
    vmenc_kek_free(after);
    vmenc_kms_provider_free(q);
    vmenc_kms_provider_free(p);
}

/* ---- factory --------------------------------------------------------------------------------- */

static void test_builtin_factory(void **state) {
    fixture *f = *state;
    const char *opts[] = {"create=1", "kdf_ops=1", "kdf_mem_kib=8", NULL};
    vmenc_kms_endpoint_config cfg = {.struct_size = sizeof(cfg), .type = "file", .address = f->path,
                                     .options = opts, .secret = PASS, .secret_len = sizeof(PASS) - 1};
    vmenc_kms_provider *p = NULL;
    assert_int_equal(vmenc_kms_provider_new_builtin(&cfg, &p), VMENC_OK);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_provider_create_kek(p, NULL, 1000, id, sizeof(id)), VMENC_OK);
    vmenc_kms_provider_free(p);
    p = NULL;
    const char *typo[] = {"kdf_opz=1", NULL};
    cfg.options = typo;
    assert_int_equal(vmenc_kms_provider_new_builtin(&cfg, &p), VMENC_E_INVALID_ARG);
    const char *badnum[] = {"kdf_ops=1x", NULL};
    cfg.options = badnum;
    assert_int_equal(vmenc_kms_provider_new_builtin(&cfg, &p), VMENC_E_INVALID_ARG);
    cfg.options = NULL;
    cfg.secret = (const uint8_t *)"wrong";
    cfg.secret_len = 5;
    assert_int_equal(vmenc_kms_provider_new_builtin(&cfg, &p), VMENC_E_WRONG_PASSPHRASE);
    cfg.type = "no-such-type";
    assert_int_equal(vmenc_kms_provider_new_builtin(&cfg, &p), VMENC_E_NO_SUCH_PROVIDER);
    assert_null(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_holds_no_plaintext_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_passphrase_and_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kdf_limits_enforced_on_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_byte_tamper_and_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke_destroy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_at_every_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_at_random_instants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_passphrase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_builtin_factory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
