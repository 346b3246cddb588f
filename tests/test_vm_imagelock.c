/*
 * tests/test_vm_imagelock.c - image locks across processes (lib/core/lock.c,
 * lib/vm/io/imagelock.c; docs/vm.md "Locks"), in the shape of QEMU's iotest
 * 153: a real second process (fork) holds a disk or state file open in one
 * mode while this one opens it in another.
 *
 *  - reader + reader, reader + writer: both open;
 *  - writer + writer: the second is refused (VMENC_E_LOCKED) with the
 *    holder named (PID, program, host, "writing") in vmenc_vm_get_lock_holder
 *    and in the audit event's reason;
 *  - a conversion against any other opener, either way round, is refused,
 *    and a refused begin leaves the disk as it was;
 *  - but status is an observer: while another process converts, the VM's
 *    info and vmenc_vm_get_convert_progress answer (no lock bytes), with the
 *    progress of the converter's last durable slot, MAC verified;
 *  - kill -9 of a holder: the next opener gets in at once (no wait, no
 *    cleanup), though the dead holder's owner record is still there;
 *  - a FIFO planted as an extent, a swap file or a state file is refused
 *    at once (VMENC_E_BAD_PATH) - under an alarm, since the old code waited
 *    forever for a writer to the FIFO.
 */
#define _GNU_SOURCE /* program_invocation_short_name */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/lock.h"
#include "vm/vm_internal.h"
#include "vm_fixture.h"

#define OK(call) assert_int_equal((call), VMENC_OK)
#define CAP (4u * 1024u * 1024u)

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

/* make_vm creates VM |name| (|policy|) with one disk, closes it, and
 * returns the disk's ID. */
static void make_vm(const char *name, const char *policy, char id[VMENC_DISK_ID_MAX + 1]) {
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", name, policy, &vm));
    OK(vmfix_add_disk(&g_f, vm, "alice", CAP, 512, id));
    vmenc_vm_free(vm);
}

static vmenc_vm *open_vm(const char *name) {
    char vmx[PATH_MAX + 64];
    vmenc_vm *vm = NULL;
    OK(vmenc_vm_open(g_f.host, "alice", vmfix_vmx_path(&g_f, name, vmx, sizeof(vmx)), &vm));
    return vm;
}

/* ---- the other process ---------------------------------------------------------- */

/* HOLD_CONVERT_STEPPED: a conversion in 1 MiB segments with one segment
 * moved (durable), then held half way, CONVERT lock and all. */
typedef enum hold { HOLD_READ, HOLD_WRITE, HOLD_CONVERT, HOLD_NVRAM_WRITE, HOLD_CONVERT_STEPPED } hold;

typedef struct holder {
    pid_t pid;
    int go; /* closing it lets the holder close and exit */
} holder;

/* holder_main runs in the child: its own key manager and host (a separate
 * process in every way but the test's memory image), opens, reports 'k' or
 * 'e', then holds until the parent closes |go|. */
static void holder_main(const char *name, const char *id, hold how, int ready, int go) {
    char vmx[PATH_MAX + 64];
    vmenc_vm *vm = NULL;
    vmenc_disk *d = NULL;
    vmenc_vm_file *f = NULL;
    char r = 'e';
    if (vmfix_new_keymgr(&g_f) == VMENC_OK && vmfix_new_host(&g_f, "esx01") == VMENC_OK &&
        vmenc_vm_open(g_f.host, "alice", vmfix_vmx_path(&g_f, name, vmx, sizeof(vmx)), &vm) == VMENC_OK) {
        vmenc_status s;
        if (how == HOLD_NVRAM_WRITE)
            s = vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_CREATE, &f);
        else
            s = vmenc_disk_open(vm, "alice", id, how == HOLD_READ ? VMENC_DISK_OPEN_READONLY : 0, &d);
        if (s == VMENC_OK && how == HOLD_CONVERT)
            s = vmenc_disk_convert_begin(d, "alice", VMENC_CONVERT_ENCRYPT, NULL);
        if (s == VMENC_OK && how == HOLD_CONVERT_STEPPED) {
            vmenc_convert_options o = {.struct_size = sizeof(o), .segment_bytes = (uint64_t)1 << 20};
            vmenc_convert_progress p = {.struct_size = sizeof(p)};
            s = vmenc_disk_convert_begin(d, "alice", VMENC_CONVERT_ENCRYPT, &o);
            if (s == VMENC_OK)
                s = vmenc_disk_convert_step(d, 1, &p); /* one segment */
            if (s == VMENC_OK && (p.segments_done != 1 || p.done))
                s = VMENC_E_INTERNAL;
        }
        if (s == VMENC_OK)
            r = 'k';
    }
    if (write(ready, &r, 1) != 1)
        _exit(3);
    char c;
    while (read(go, &c, 1) < 0 && errno == EINTR) {
    }
    vmenc_status ignored = vmenc_disk_close(d);
    ignored = vmenc_vm_file_close(f);
    (void)ignored;
    vmenc_vm_free(vm);
    _exit(0);
}

static holder spawn(const char *name, const char *id, hold how) {
    int ready[2], go[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        holder_main(name, id, how, ready[1], go[0]);
    }
    close(ready[1]);
    close(go[0]);
    char r = 0;
    assert_int_equal(read(ready[0], &r, 1), 1);
    close(ready[0]);
    assert_int_equal(r, 'k');
    return (holder){.pid = pid, .go = go[1]};
}

static void release(holder *h) {
    close(h->go);
    int st = 0;
    assert_int_equal(waitpid(h->pid, &st, 0), h->pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* expect_holder checks the last refusal of |vm| named process |pid|. */
static void expect_holder(vmenc_vm *vm, pid_t pid, const char *access, const char *conflict) {
    vmenc_lock_holder h = {.struct_size = sizeof(h)};
    OK(vmenc_vm_get_lock_holder(vm, &h));
    assert_true(h.flags & VMENC_LOCK_HOLDER_KNOWN);
    assert_int_equal(h.pid, pid);
    assert_string_equal(h.access, access);
    assert_string_equal(h.conflict, conflict);
    assert_string_equal(h.host, "esx01");
    assert_string_equal(h.program, program_invocation_short_name);
    assert_non_null(strstr(h.message, "in use by another process"));
    char p[32];
    snprintf(p, sizeof(p), "pid %d ", (int)pid);
    assert_non_null(strstr(h.message, p));
    assert_non_null(strstr(h.message, access));
}

/* ---- readers share; a writer excludes writers ---------------------------------------- */

static void test_reader_reader(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1];
    make_vm("rr", NULL, id);
    holder h = spawn("rr", id, HOLD_READ);
    vmenc_vm *vm = open_vm("rr");
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, VMENC_DISK_OPEN_READONLY, &d));
    uint8_t buf[512];
    OK(vmenc_disk_pread(d, 0, sizeof(buf), buf));
    OK(vmenc_disk_close(d));
    /* a writer beside a reader: allowed (the reader does not deny writes) */
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    OK(vmenc_disk_close(d));
    vmenc_lock_holder lh = {.struct_size = sizeof(lh)};
    assert_int_equal(vmenc_vm_get_lock_holder(vm, &lh), VMENC_E_NOT_FOUND);
    release(&h);
    vmenc_vm_free(vm);
}

static void test_writer_writer(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1];
    make_vm("ww", "encrypted", id);
    holder h = spawn("ww", id, HOLD_WRITE);
    vmenc_vm *vm = open_vm("ww");
    vmenc_disk *d = NULL;
    assert_int_equal(vmenc_disk_open(vm, "alice", id, 0, &d), VMENC_E_LOCKED);
    assert_null(d);
    expect_holder(vm, h.pid, "writing", "write");
    /* the refusal is audited with the holder in its reason */
    char pidtxt[32];
    snprintf(pidtxt, sizeof(pidtxt), "pid %d ", (int)h.pid);
    const char *ev[] = {"\"disk.open\"", "in use by another process", pidtxt, NULL};
    assert_true(vmfix_count_events(&g_f, ev) >= 1);
    /* an out-of-band writer (the CLI's disk write) is refused too */
    assert_int_equal(vmenc_disk_open(vm, "alice", id, VMENC_DISK_OPEN_EXPORT, &d), VMENC_E_LOCKED);
    /* a reader gets in */
    OK(vmenc_disk_open(vm, "alice", id, VMENC_DISK_OPEN_READONLY, &d));
    OK(vmenc_disk_close(d));
    release(&h);
    /* the holder is gone, and so is its owner record */
    char p[PATH_MAX + 300];
    vmenc_vm_free(vm);
    vm = open_vm("ww");
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    OK(vmenc_disk_close(d));
    DIR *dir = opendir(vmfix_path(&g_f, "ww", p, sizeof(p)));
    assert_non_null(dir);
    for (struct dirent *de; (de = readdir(dir)) != NULL;)
        assert_null(strstr(de->d_name, ".lck"));
    closedir(dir);
    vmenc_vm_free(vm);
}

/* Two handles of one VM in one process are two open file descriptions:
 * they exclude each other as two processes do. */
static void test_same_process(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1];
    make_vm("sp", NULL, id);
    vmenc_vm *a = open_vm("sp"), *b = open_vm("sp");
    vmenc_disk *da = NULL, *db = NULL;
    OK(vmenc_disk_open(a, "alice", id, 0, &da));
    assert_int_equal(vmenc_disk_open(b, "alice", id, 0, &db), VMENC_E_LOCKED);
    expect_holder(b, getpid(), "writing", "write");
    OK(vmenc_disk_close(da));
    OK(vmenc_disk_open(b, "alice", id, 0, &db));
    OK(vmenc_disk_close(db));
    vmenc_vm_free(a);
    vmenc_vm_free(b);
}

/* ---- a conversion excludes everyone ------------------------------------------------------ */

static void test_convert_excludes(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1];
    make_vm("cx", "home-only", id);
    /* the other process converts: no reader, no writer */
    holder h = spawn("cx", id, HOLD_CONVERT);
    vmenc_vm *vm = open_vm("cx");
    vmenc_disk *d = NULL;
    assert_int_equal(vmenc_disk_open(vm, "alice", id, VMENC_DISK_OPEN_READONLY, &d), VMENC_E_LOCKED);
    expect_holder(vm, h.pid, "converting", "read");
    assert_int_equal(vmenc_disk_open(vm, "alice", id, 0, &d), VMENC_E_LOCKED);
    expect_holder(vm, h.pid, "converting", "read"); /* the first permission refused */
    release(&h);
    vmenc_vm_free(vm);

    /* the conversion was left half way: whoever opens it read-write owns
     * it and excludes everyone again */
    vm = open_vm("cx");
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    vmenc_vm *other = open_vm("cx");
    vmenc_disk *d2 = NULL;
    assert_int_equal(vmenc_disk_open(other, "alice", id, VMENC_DISK_OPEN_READONLY, &d2), VMENC_E_LOCKED);
    vmenc_convert_progress p = {.struct_size = sizeof(p)};
    while (!p.done)
        OK(vmenc_disk_convert_step(d, CAP, &p));
    /* finished: back to a writer's lock, readers welcome (a VM handle
     * opened now: the old one still has the converting descriptor) */
    vmenc_vm_free(other);
    other = open_vm("cx");
    OK(vmenc_disk_open(other, "alice", id, VMENC_DISK_OPEN_READONLY, &d2));
    OK(vmenc_disk_close(d2));
    vmenc_vm_free(other);
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);
}

/* Status while another process converts (issue 21: "disk convert-status
 * and vm status answer while a conversion runs"): the observer's progress
 * read and the VM's info take no image lock, so the process holding
 * CONVERT neither refuses nor delays them. The holder is parked half way
 * and is still holding CONVERT after the reads returned (checked by a
 * refused open), so the reads ran during the conversion - no clock. Failed
 * on the old code: the only progress read was through vmenc_disk_open,
 * refused with VMENC_E_LOCKED. */
static void test_status_while_converting(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1];
    make_vm("cs", "home-only", id);
    holder h = spawn("cs", id, HOLD_CONVERT_STEPPED);
    vmenc_vm *vm = open_vm("cs"); /* VM status: opens and reads, no disk lock */
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    OK(vmenc_vm_get_info(vm, &info));
    assert_int_equal(info.num_disks, 1);
    vmenc_disk_info di = {.struct_size = sizeof(di)};
    OK(vmenc_vm_get_disk_info(vm, 0, &di));
    assert_string_equal(di.disk_id, id);
    assert_int_equal(di.state, VMENC_DISK_ENCRYPTING);
    /* convert-status: one of four segments moved, as the holder's last
     * durable slot says */
    vmenc_convert_progress p = {.struct_size = sizeof(p)};
    OK(vmenc_vm_get_convert_progress(vm, id, &p));
    assert_int_equal(p.state, VMENC_DISK_ENCRYPTING);
    assert_int_equal(p.done, 0);
    assert_int_equal(p.segments_done, 1);
    assert_int_equal(p.segments_total, CAP >> 20);
    assert_int_equal(p.bytes_done, (uint64_t)1 << 20);
    assert_int_equal(p.bytes_total, CAP);
    assert_true(p.bytes_done > 0 && p.bytes_done < p.bytes_total);
    /* read-only status took no CONVERT/WRITE bytes: a second read works,
     * and the holder still holds CONVERT (an open is refused, naming it) */
    vmenc_convert_progress p2 = {.struct_size = sizeof(p2)};
    OK(vmenc_vm_get_convert_progress(vm, id, &p2));
    assert_int_equal(p2.segments_done, p.segments_done);
    vmenc_disk *d = NULL;
    assert_int_equal(vmenc_disk_open(vm, "alice", id, VMENC_DISK_OPEN_READONLY, &d), VMENC_E_LOCKED);
    expect_holder(vm, h.pid, "converting", "read");
    assert_int_equal(vmenc_vm_get_convert_progress(vm, "scsi9:9", &p2), VMENC_E_NOT_FOUND);
    release(&h);
    vmenc_vm_free(vm);

    /* the owner's view agrees with the observer's: resumed at segment 1 */
    vm = open_vm("cs");
    vmenc_vm *stale = open_vm("cs"); /* another handle, its descriptor read now */
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    vmenc_convert_progress q = {.struct_size = sizeof(q)};
    OK(vmenc_disk_convert_get_progress(d, &q));
    assert_int_equal(q.segments_done, p.segments_done);
    assert_int_equal(q.bytes_done, p.bytes_done);
    while (!q.done)
        OK(vmenc_disk_convert_step(d, CAP, &q));
    OK(vmenc_disk_close(d));
    /* done: a handle opened before the finish still has the converting
     * descriptor, and its state file is gone; the converter's own handle
     * and a new one see the end */
    assert_int_equal(vmenc_vm_get_convert_progress(stale, id, &p2), VMENC_E_INTERRUPTED);
    vmenc_vm_free(stale);
    OK(vmenc_vm_get_convert_progress(vm, id, &p2));
    assert_int_equal(p2.done, 1);
    vmenc_vm_free(vm);
    vm = open_vm("cs");
    OK(vmenc_vm_get_convert_progress(vm, id, &p2));
    assert_int_equal(p2.done, 1);
    assert_int_equal(p2.state, VMENC_DISK_ENCRYPTED);
    assert_int_equal(p2.bytes_done, CAP);
    vmenc_vm_free(vm);
}

/* A slot that does not verify is not believed by the observer either. */
static void test_status_forged_slot(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1];
    make_vm("cf", "home-only", id);
    holder h = spawn("cf", id, HOLD_CONVERT_STEPPED);
    vmenc_vm *vm = open_vm("cf");
    /* flip a MAC byte in both slots of the state file */
    char home[PATH_MAX + 64];
    vmfix_vmx_path(&g_f, "cf", home, sizeof(home));
    *strrchr(home, '/') = '\0';
    DIR *dir = opendir(home);
    assert_non_null(dir);
    int flipped = 0;
    for (struct dirent *de; (de = readdir(dir)) != NULL;) {
        size_t n = strlen(de->d_name);
        if (n < 4 || strcmp(de->d_name + n - 4, ".cvt") != 0)
            continue;
        char path[PATH_MAX + 400];
        snprintf(path, sizeof(path), "%s/%s", home, de->d_name);
        int fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        for (off_t off = 0; off <= 4096; off += 4096) {
            unsigned char b = 0;
            assert_int_equal(pread(fd, &b, 1, off + 63), 1);
            b ^= 0x5a;
            assert_int_equal(pwrite(fd, &b, 1, off + 63), 1);
        }
        close(fd);
        flipped++;
    }
    closedir(dir);
    assert_int_equal(flipped, 1);
    vmenc_convert_progress p = {.struct_size = sizeof(p)};
    assert_int_equal(vmenc_vm_get_convert_progress(vm, id, &p), VMENC_E_AUTH);
    release(&h);
    vmenc_vm_free(vm);
}

static void test_convert_refused_by_reader(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1];
    make_vm("cr", "encrypted", id);
    holder h = spawn("cr", id, HOLD_READ);
    vmenc_vm *vm = open_vm("cr");
    vmenc_disk *d = NULL;
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    assert_int_equal(vmenc_disk_convert_begin(d, "alice", VMENC_CONVERT_REKEY, NULL), VMENC_E_LOCKED);
    /* the record beside the extent is now our own (a writer's record
     * replaces a reader's), so the lock alone speaks: someone reads */
    vmenc_lock_holder lh = {.struct_size = sizeof(lh)};
    OK(vmenc_vm_get_lock_holder(vm, &lh));
    assert_false(lh.flags & VMENC_LOCK_HOLDER_KNOWN);
    assert_string_equal(lh.conflict, "read");
    assert_non_null(strstr(lh.message, "in use by another process (another process is reading it;"));
    assert_non_null(strstr(lh.message, "shared \"read\" lock"));
    const char *ev[] = {"\"disk.convert_begin\"", "in use by another process", NULL};
    assert_true(vmfix_count_events(&g_f, ev) >= 1);
    /* nothing began */
    vmenc_convert_progress p = {.struct_size = sizeof(p)};
    OK(vmenc_disk_convert_get_progress(d, &p));
    assert_int_equal(p.state, VMENC_DISK_ENCRYPTED);
    assert_int_equal(p.done, 1);
    release(&h);
    OK(vmenc_disk_convert_begin(d, "alice", VMENC_CONVERT_REKEY, NULL));
    while (!p.done)
        OK(vmenc_disk_convert_step(d, CAP, &p));
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);
}

/* The high-level deep rekey (what `vmenc vm rekey --deep` calls) is refused
 * while another process serves the disk, and says who. */
static void test_rekey_deep_of_served_disk(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1];
    make_vm("rd", "encrypted", id);
    holder h = spawn("rd", id, HOLD_WRITE);
    vmenc_vm *vm = open_vm("rd");
    vmenc_status s = vmenc_vm_rekey_deep(vm, "alice", NULL);
    assert_int_equal(s, VMENC_E_LOCKED);
    expect_holder(vm, h.pid, "writing", "write");
    /* nor is a served disk removed from under its server */
    assert_int_equal(vmenc_vm_remove_disk(vm, "alice", id, VMENC_VM_REMOVE_DELETE_FILES), VMENC_E_LOCKED);
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    OK(vmenc_vm_get_info(vm, &info));
    assert_int_equal(info.num_disks, 1);
    release(&h);
    vmenc_vm_free(vm);
}

/* ---- kill -9 -------------------------------------------------------------------------------- */

static void test_kill9_frees_at_once(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1];
    make_vm("k9", "encrypted", id);
    holder h = spawn("k9", id, HOLD_WRITE);
    vmenc_vm *vm = open_vm("k9");
    vmenc_disk *d = NULL;
    assert_int_equal(vmenc_disk_open(vm, "alice", id, 0, &d), VMENC_E_LOCKED);
    assert_int_equal(kill(h.pid, SIGKILL), 0);
    int st = 0;
    assert_int_equal(waitpid(h.pid, &st, 0), h.pid);
    assert_true(WIFSIGNALED(st));
    close(h.go);
    /* the dead holder's record is still there, and means nothing */
    char p[PATH_MAX + 300];
    DIR *dir = opendir(vmfix_path(&g_f, "k9", p, sizeof(p)));
    bool stale = false;
    for (struct dirent *de; (de = readdir(dir)) != NULL;)
        stale = stale || strstr(de->d_name, ".lck") != NULL;
    closedir(dir);
    assert_true(stale);
    OK(vmenc_disk_open(vm, "alice", id, 0, &d)); /* at once: one try, no wait */
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);
}

/* ---- the owner record is a hint ------------------------------------------------------------- */

/* write_record replaces the extent's owner record of VM |name| with |text|
 * (NULL: removes it). */
static void write_record(const char *name, const char *text) {
    char home[PATH_MAX + 300], p[PATH_MAX + 600];
    vmfix_path(&g_f, name, home, sizeof(home));
    DIR *d = opendir(home);
    assert_non_null(d);
    char rec[300] = "";
    for (struct dirent *de; (de = readdir(d)) != NULL;)
        if (strstr(de->d_name, "-flat.vmdk.lck") != NULL)
            snprintf(rec, sizeof(rec), "%s", de->d_name);
    closedir(d);
    assert_true(rec[0] != '\0');
    snprintf(p, sizeof(p), "%s/%s", home, rec);
    if (text == NULL)
        assert_int_equal(unlink(p), 0);
    else
        assert_int_equal(vmfix_write_file(p, text, strlen(text)), 0);
}

/* Whatever the record says - garbage, a forged name, nothing - the lock
 * decides; the record only changes the words of the refusal. */
static void test_record_is_only_a_hint(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1];
    make_vm("rh", NULL, id);
    holder h = spawn("rh", id, HOLD_WRITE);
    vmenc_vm *vm = open_vm("rh");
    vmenc_disk *d = NULL;
    vmenc_lock_holder lh = {.struct_size = sizeof(lh)};
    write_record("rh", "\x01\x02 not a record \"\n");
    assert_int_equal(vmenc_disk_open(vm, "alice", id, 0, &d), VMENC_E_LOCKED);
    OK(vmenc_vm_get_lock_holder(vm, &lh));
    assert_false(lh.flags & VMENC_LOCK_HOLDER_KNOWN);
    assert_non_null(strstr(lh.message, "in use by another process (another process does not let others write it;"));
    /* a forged holder on another machine is shown, and changes nothing */
    write_record("rh", "lock.host = \"h9\"\nlock.node = \"elsewhere\"\nlock.pid = \"4242\"\n"
                       "lock.program = \"forged\"\nlock.operation = \"x\"\nlock.access = \"writing\"\n"
                       "lock.since = \"0\"\n");
    assert_int_equal(vmenc_disk_open(vm, "alice", id, 0, &d), VMENC_E_LOCKED);
    OK(vmenc_vm_get_lock_holder(vm, &lh));
    assert_int_equal(lh.pid, 4242);
    assert_string_equal(lh.program, "forged");
    /* a record naming a process gone from this machine is ignored */
    char node[256];
    struct utsname u;
    assert_int_equal(uname(&u), 0);
    snprintf(node, sizeof(node), "lock.host = \"h9\"\nlock.node = \"%s\"\nlock.pid = \"2147483646\"\n"
                                 "lock.since = \"0\"\n", u.nodename);
    write_record("rh", node);
    assert_int_equal(vmenc_disk_open(vm, "alice", id, 0, &d), VMENC_E_LOCKED);
    OK(vmenc_vm_get_lock_holder(vm, &lh));
    assert_false(lh.flags & VMENC_LOCK_HOLDER_KNOWN);
    /* no record: still refused */
    write_record("rh", NULL);
    assert_int_equal(vmenc_disk_open(vm, "alice", id, 0, &d), VMENC_E_LOCKED);
    release(&h);
    /* and a record naming a live process (this one) frees nothing... nor
     * locks anything: the holder is gone, the open goes through */
    snprintf(node, sizeof(node), "lock.host = \"h9\"\nlock.node = \"%s\"\nlock.pid = \"%d\"\n"
                                 "lock.since = \"0\"\nlock.access = \"writing\"\n", u.nodename, (int)getpid());
    char home[PATH_MAX + 300], p[PATH_MAX + 600];
    DIR *dir = opendir(vmfix_path(&g_f, "rh", home, sizeof(home)));
    for (struct dirent *de; (de = readdir(dir)) != NULL;)
        if (strstr(de->d_name, "-flat.vmdk") != NULL && strstr(de->d_name, ".lck") == NULL) {
            snprintf(p, sizeof(p), "%s/%s.lck", home, de->d_name);
            assert_int_equal(vmfix_write_file(p, node, strlen(node)), 0);
        }
    closedir(dir);
    OK(vmenc_disk_open(vm, "alice", id, 0, &d));
    OK(vmenc_disk_close(d));
    vmenc_vm_free(vm);
}

/* ---- state files ------------------------------------------------------------------------------ */

static void test_state_file_writers(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1];
    make_vm("sf", "encrypted", id);
    holder h = spawn("sf", id, HOLD_NVRAM_WRITE);
    vmenc_vm *vm = open_vm("sf");
    vmenc_vm_file *f = NULL;
    assert_int_equal(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, 0, &f), VMENC_E_LOCKED);
    expect_holder(vm, h.pid, "writing", "write");
    OK(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_READONLY, &f));
    OK(vmenc_vm_file_close(f));
    release(&h);
    OK(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, 0, &f));
    OK(vmenc_vm_file_close(f));
    vmenc_vm_free(vm);
}

/* ---- FIFOs -------------------------------------------------------------------------------------- */

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "test_vm_imagelock: an open waited on a FIFO (hang)\n";
    if (write(2, msg, sizeof(msg) - 1) < 0) {
    }
    _exit(99);
}

/* plant_fifo replaces the file ending in |suffix| in VM |name|'s home (or
 * named |exact|) with a FIFO. */
static void plant_fifo(const char *name, const char *suffix, const char *exact) {
    char home[PATH_MAX + 300], p[PATH_MAX + 600];
    vmfix_path(&g_f, name, home, sizeof(home));
    char target[300] = "";
    if (exact != NULL) {
        snprintf(target, sizeof(target), "%s", exact);
    } else {
        DIR *d = opendir(home);
        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d)) != NULL;) {
            size_t n = strlen(de->d_name), k = strlen(suffix);
            if (n > k && strcmp(de->d_name + n - k, suffix) == 0)
                snprintf(target, sizeof(target), "%s", de->d_name);
        }
        closedir(d);
    }
    assert_true(target[0] != '\0');
    snprintf(p, sizeof(p), "%s/%s", home, target);
    (void)unlink(p);
    assert_int_equal(mkfifo(p, 0600), 0);
}

static void test_fifo_extent(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1];
    make_vm("ff", "encrypted", id);
    plant_fifo("ff", "-flat.vmdk", NULL);
    signal(SIGALRM, on_alarm);
    alarm(20);
    vmenc_vm *vm = open_vm("ff");
    vmenc_disk *d = NULL;
    assert_int_equal(vmenc_disk_open(vm, "alice", id, VMENC_DISK_OPEN_READONLY, &d), VMENC_E_BAD_PATH);
    assert_int_equal(vmenc_disk_open(vm, "alice", id, 0, &d), VMENC_E_BAD_PATH);
    alarm(0);
    vmenc_vm_free(vm);
}

static void test_fifo_state_files(void **state) {
    (void)state;
    char id[VMENC_DISK_ID_MAX + 1];
    make_vm("fs", "encrypted", id);
    plant_fifo("fs", NULL, "fs.nvram");
    plant_fifo("fs", NULL, "fs.vswp");
    signal(SIGALRM, on_alarm);
    alarm(20);
    vmenc_vm *vm = open_vm("fs");
    vmenc_vm_file *f = NULL;
    assert_int_equal(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_READONLY, &f),
                     VMENC_E_BAD_PATH);
    assert_int_equal(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_NVRAM, 0, VMENC_VM_FILE_CREATE, &f),
                     VMENC_E_BAD_PATH);
    assert_int_equal(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_VSWP, 0, VMENC_VM_FILE_READONLY, &f),
                     VMENC_E_BAD_PATH);
    assert_int_equal(vmenc_vm_file_open(vm, "alice", VMENC_VM_FILE_VSWP, 0, VMENC_VM_FILE_CREATE, &f),
                     VMENC_E_BAD_PATH);
    /* operations that walk the home's state files refuse it too */
    assert_int_equal(vmenc_vm_rekey_deep(vm, "alice", NULL), VMENC_E_BAD_PATH);
    assert_int_equal(vmenc_vm_apply_storage_policy(vm, "alice", "plain"), VMENC_E_BAD_PATH);
    alarm(0);
    vmenc_vm_free(vm);
}

/* ---- the byte locks themselves ------------------------------------------------------------------ */

/* Two open file descriptions of one file in this process: the permission
 * table (use vs deny) decides, whatever the order. */
static void test_lock_bytes_table(void **state) {
    (void)state;
    char p[PATH_MAX + 32];
    vmfix_path(&g_f, "bytes", p, sizeof(p));
    int a = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600), b = open(p, O_RDONLY | O_CLOEXEC);
    assert_true(a >= 0 && b >= 0);
    const uint32_t R = VMENC_LOCK_PERM_READ, W = VMENC_LOCK_PERM_WRITE, C = VMENC_LOCK_PERM_CONVERT;
    struct { uint32_t u, d; } modes[3] = {{R, C}, {R | W, W | C}, {R | W | C, R | W | C}};
    /* reader+reader, reader+writer ok; writer+writer, anything+convert not */
    const bool ok[3][3] = {{true, true, false}, {true, false, false}, {false, false, false}};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            OK(vmenc_lock_bytes_set(a, 0, 0, modes[i].u, modes[i].d, NULL));
            vmenc_lock_conflict c = {0};
            vmenc_status s = vmenc_lock_bytes_set(b, 0, 0, modes[j].u, modes[j].d, &c);
            assert_int_equal(s, ok[i][j] ? VMENC_OK : VMENC_E_LOCKED);
            if (!ok[i][j])
                assert_true(c.perm != 0);
            OK(vmenc_lock_bytes_set(b, modes[j].u, modes[j].d, 0, 0, NULL));
            OK(vmenc_lock_bytes_set(a, modes[i].u, modes[i].d, 0, 0, NULL));
        }
    /* a refused upgrade keeps what was held */
    OK(vmenc_lock_bytes_set(a, 0, 0, R | W, W | C, NULL));
    OK(vmenc_lock_bytes_set(b, 0, 0, R, C, NULL));
    assert_int_equal(vmenc_lock_bytes_set(a, R | W, W | C, R | W | C, R | W | C, NULL), VMENC_E_LOCKED);
    assert_int_equal(vmenc_lock_bytes_probe(b, R | W, W, NULL), VMENC_E_LOCKED); /* a still writes */
    close(a);
    close(b);
    unlink(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_bytes_table),
        cmocka_unit_test(test_reader_reader),
        cmocka_unit_test(test_writer_writer),
        cmocka_unit_test(test_same_process),
        cmocka_unit_test(test_convert_excludes),
        cmocka_unit_test(test_status_while_converting),
        cmocka_unit_test(test_status_forged_slot),
        cmocka_unit_test(test_convert_refused_by_reader),
        cmocka_unit_test(test_rekey_deep_of_served_disk),
        cmocka_unit_test(test_kill9_frees_at_once),
        cmocka_unit_test(test_record_is_only_a_hint),
        cmocka_unit_test(test_state_file_writers),
        cmocka_unit_test(test_fifo_extent),
        cmocka_unit_test(test_fifo_state_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
