/*
 * tests/test_core_fs.c - the core file plumbing: the errno mapping, the
 * atomic-replacement engine under the VM layer and the file key store
 * (no-replace, crash steps), and the lock module (lib/core/lock.h) with
 * two open file descriptions and with a second real process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fs.h"
#include "core/lock.h"
#include "vmenc/vmenc.h"

typedef struct {
    char dir[64];
    int dirfd;
} fx;

static int setup(void **state) {
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/vmenc-corefs-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->dirfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(f->dirfd >= 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    close(f->dirfd);
    free(f);
    return 0;
}

static void put(const fx *f, const char *name, const char *text) {
    assert_int_equal(vmenc_fs_atomic_write(f->dirfd, name, (const uint8_t *)text, strlen(text), true), VMENC_OK);
}

static void expect(const fx *f, const char *name, const char *text) {
    uint8_t *got = NULL;
    size_t len = 0;
    assert_int_equal(vmenc_fs_read_file(f->dirfd, name, 1 << 20, &got, &len), VMENC_OK);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(got, text, len);
    free(got);
}

static bool exists(const fx *f, const char *name) {
    struct stat st;
    return fstatat(f->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static void test_errno_mapping(void **state) {
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

static void test_atomic_write_replaces(void **state) {
    fx *f = *state;
    put(f, "a.txt", "one");
    put(f, "a.txt", "two, longer");
    expect(f, "a.txt", "two, longer");
    assert_int_equal(vmenc_fs_atomic_write(f->dirfd, "../a.txt", (const uint8_t *)"x", 1, true), VMENC_E_BAD_PATH);
}

static void test_replace_noreplace(void **state) {
    fx *f = *state;
    put(f, "ks", "old");
    vmenc_fs_replace r = {.dirfd = f->dirfd, .tmp = "ks.tmp", .name = "ks", .sync_dirfd = f->dirfd,
                          .sync = true, .exclusive_tmp = true, .noreplace = true};
    assert_int_equal(vmenc_fs_replace_file(&r, (const uint8_t *)"new", 3), VMENC_E_EXISTS);
    expect(f, "ks", "old");
    assert_false(exists(f, "ks.tmp"));
    r.name = "ks2";
    assert_int_equal(vmenc_fs_replace_file(&r, (const uint8_t *)"new", 3), VMENC_OK);
    expect(f, "ks2", "new");
    assert_false(exists(f, "ks.tmp"));
}

typedef struct {
    int stop_at;
    int seen;
} step_ctx;

static int stop_at(void *arg, int step) {
    step_ctx *c = arg;
    assert_int_equal(step, c->seen + 1); /* the steps come in order */
    c->seen = step;
    return step == c->stop_at;
}

/* A stop at each step is a crash there: before the rename the old file is
 * whole and the temporary is left behind; from the rename on, the new
 * file is in place. The directory is named by path (the key store's way). */
static void test_replace_crash_steps(void **state) {
    fx *f = *state;
    for (int step = VMENC_FS_STEP_TMP_OPEN; step <= VMENC_FS_STEP_DONE; step++) {
        put(f, "ks", "old contents");
        (void)unlinkat(f->dirfd, "ks.tmp", 0);
        step_ctx c = {.stop_at = step};
        vmenc_fs_replace r = {.dirfd = f->dirfd, .tmp = "ks.tmp", .name = "ks", .sync_dirfd = -1,
                              .sync_dir = f->dir, .sync = true, .step = stop_at, .step_arg = &c};
        assert_int_equal(vmenc_fs_replace_file(&r, (const uint8_t *)"new contents!", 13), VMENC_E_IO);
        assert_int_equal(c.seen, step);
        if (step < VMENC_FS_STEP_RENAMED) {
            expect(f, "ks", "old contents");
            assert_true(exists(f, "ks.tmp"));
        } else {
            expect(f, "ks", "new contents!");
            assert_false(exists(f, "ks.tmp"));
        }
    }
    step_ctx c = {.stop_at = 0};
    vmenc_fs_replace r = {.dirfd = f->dirfd, .tmp = "ks.tmp", .name = "ks", .sync_dirfd = f->dirfd,
                          .sync = true, .step = stop_at, .step_arg = &c};
    assert_int_equal(vmenc_fs_replace_file(&r, (const uint8_t *)"final", 5), VMENC_OK);
    assert_int_equal(c.seen, VMENC_FS_STEP_DONE);
    expect(f, "ks", "final");
}

static void lock_path(const fx *f, char *out, size_t cap) { snprintf(out, cap, "%s/x.lock", f->dir); }

static void test_lock_two_descriptions(void **state) {
    fx *f = *state;
    char path[128];
    lock_path(f, path, sizeof(path));
    int a = -1, b = -1;
    assert_int_equal(vmenc_lock_file(path, 0, &a), VMENC_OK);
    assert_int_equal(vmenc_lock_file(path, 0, &b), VMENC_E_LOCKED);
    assert_int_equal(b, -1);
    assert_int_equal(vmenc_lock_file(path, 30, &b), VMENC_E_LOCKED);
    vmenc_lock_release(a);
    assert_int_equal(vmenc_lock_file(path, 0, &b), VMENC_OK);
    vmenc_lock_release(b);
    vmenc_lock_release(-1);
}

static void test_lock_missing_dir(void **state) {
    fx *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/none/x.lock", f->dir);
    int fd = -1;
    assert_int_equal(vmenc_lock_file(path, 0, &fd), VMENC_E_NOT_FOUND);
    assert_int_equal(fd, -1);
    assert_int_equal(vmenc_lock_fd(-1, 0), VMENC_E_INVALID_ARG);
}

/* Another process holds the lock: a bounded wait gives up with
 * VMENC_E_LOCKED; once the holder exits, the lock is free. */
static void test_lock_other_process(void **state) {
    fx *f = *state;
    char path[128];
    lock_path(f, path, sizeof(path));
    int ready[2], go[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Only the parent keeps the write end of |go|: if it dies, the
         * read below ends and so does this child. */
        close(go[1]);
        close(ready[0]);
        int fd = -1;
        char c = vmenc_lock_file(path, 0, &fd) == VMENC_OK ? 'y' : 'n';
        if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(2);
        _exit(0);
    }
    char c = 0;
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    int fd = -1;
    assert_int_equal(vmenc_lock_file(path, 50, &fd), VMENC_E_LOCKED);
    assert_int_equal(write(go[1], "g", 1), 1);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(vmenc_lock_file(path, 0, &fd), VMENC_OK);
    vmenc_lock_release(fd);
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errno_mapping),
        cmocka_unit_test_setup_teardown(test_atomic_write_replaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_noreplace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_crash_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_two_descriptions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_missing_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_other_process, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
