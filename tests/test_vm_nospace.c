/*
 * tests/test_vm_nospace.c - a datastore that fills up: an encrypted disk
 * written until ENOSPC, then configuration and descriptor updates that
 * cannot be written. Each must fail with VMENC_E_NO_SPACE, leave every file
 * as it was (no temporary left behind, the old configuration intact) and
 * lose no byte written before.
 *
 * The datastore is a small tmpfs mounted in a private mount namespace (so
 * it disappears with the process). Without the privilege to do that the
 * test is skipped, saying why.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "vm_fixture.h"

#define OK(call) assert_int_equal((call), VMENC_OK)
#define CHUNK (256u * 1024u)
#define CAP (32u * 1024u * 1024u) /* larger than the file system */

static vmfix g_f;
static char g_mnt[] = "/tmp/vmenc-nospace-XXXXXX";

static bool no_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL)
        return false;
    bool clean = true;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".tmp") != NULL)
            clean = false;
    closedir(d);
    return clean;
}

static void test_fill_the_datastore(void **state) {
    (void)state;
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", "full", "encrypted", &vm));
    char id[VMENC_DISK_ID_MAX + 1];
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    uint8_t *model = calloc(1, CAP), *buf = malloc(CHUNK);
    uint64_t off = 0;
    vmenc_status s = VMENC_OK;
    for (; off + CHUNK <= CAP; off += CHUNK) {
        for (size_t i = 0; i < CHUNK; i++)
            buf[i] = (uint8_t)(off / CHUNK * 31 + i);
        s = vmenc_disk_pwrite(d, off, buf, CHUNK);
        if (s != VMENC_OK)
            break;
        memcpy(model + off, buf, CHUNK);
    }
    assert_int_equal(s, VMENC_E_NO_SPACE);
    fprintf(stderr, "disk full after %llu KiB\n", (unsigned long long)(off / 1024));
    /* everything written before the failure reads back */
    uint8_t *back = malloc(off);
    OK(vmenc_disk_pread(d, 0, off, back));
    assert_memory_equal(back, model, off);
    free(back);
    OK(vmenc_disk_close(d));

    /* a configuration change that cannot be written: refused, old file kept */
    char vmx[PATH_MAX + 64], home[PATH_MAX + 64];
    vmfix_vmx_path(&g_f, "full", vmx, sizeof(vmx));
    snprintf(home, sizeof(home), "%s/full", g_f.dir);
    size_t before_len = 0, after_len = 0;
    uint8_t *before = vmfix_read_file(vmx, &before_len);
    char *big = malloc(4000);
    memset(big, 'x', 3999);
    big[3999] = '\0';
    s = VMENC_OK;
    /* the partly written chunk may have left a few blocks: use them up */
    for (int i = 0; i < 64 && s == VMENC_OK; i++) {
        char key[32];
        snprintf(key, sizeof(key), "filler%d", i);
        s = vmenc_vm_config_set(vm, "alice", key, big, 0);
        if (s == VMENC_OK) {
            free(before);
            before = vmfix_read_file(vmx, &before_len);
        }
    }
    assert_int_equal(s, VMENC_E_NO_SPACE);
    uint8_t *after = vmfix_read_file(vmx, &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after, before, before_len);
    assert_true(no_temporaries(home));
    /* a disk cannot be added either, and leaves nothing behind */
    vmenc_disk_create_options o = {.struct_size = sizeof(o), .capacity = CAP, .file_base = "extra"};
    s = vmenc_vm_add_disk(vm, "alice", &o, NULL, 0);
    assert_int_equal(s, VMENC_E_NO_SPACE);
    char p[PATH_MAX + 80];
    struct stat st;
    snprintf(p, sizeof(p), "%s/extra.vmdk", home);
    assert_int_not_equal(stat(p, &st), 0);
    snprintf(p, sizeof(p), "%s/extra-flat.vmdk", home);
    assert_int_not_equal(stat(p, &st), 0);
    assert_true(no_temporaries(home));
    vmenc_vm_free(vm);
    /* the VM still opens, and its data is intact */
    OK(vmenc_vm_open(g_f.host, "bob", vmx, &vm));
    OK(vmenc_disk_open(vm, "bob", id, VMENC_DISK_OPEN_READONLY, &d));
    back = malloc(off);
    OK(vmenc_disk_pread(d, 0, off, back));
    assert_memory_equal(back, model, off);
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);
    free(back);
    free(before);
    free(after);
    free(big);
    free(buf);
    free(model);
}

int main(void) {
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mkdtemp(g_mnt) == NULL || mount("tmpfs", g_mnt, "tmpfs", 0, "size=8m") != 0) {
        printf("SKIP: cannot mount a private tmpfs (%s): the ENOSPC test needs root\n", strerror(errno));
        return 0;
    }
    setenv("TMPDIR", g_mnt, 1);
    if (vmfix_setup(&g_f, 0) != VMENC_OK) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fill_the_datastore),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    vmfix_teardown(&g_f);
    umount2(g_mnt, MNT_DETACH);
    rmdir(g_mnt);
    return rc;
}
