/*
 * examples/embed/block_layer.c - vmenc embedded as a hypervisor's block
 * layer, built against the *installed* library (find_package(vmenc) or
 * pkg-config vmenc; see CMakeLists.txt and tests/examples_embed.test.sh).
 *
 *   block_layer WORKDIR
 *
 * Creates a workspace (embedded keystore, policy, audit log), an encrypted
 * VM with one disk, opens the disk through the host/VM objects, and serves a
 * queue of guest read/write requests against it, checking every read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmenc/vmenc.h>

#define DISK_BYTES (8u << 20)

struct request { int write; uint64_t offset; size_t len; uint8_t fill; };

static int fail(const char *what, vmenc_status s) {
    fprintf(stderr, "block_layer: %s: %s (%s)\n", what, vmenc_strerror(s), vmenc_status_name(s));
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: block_layer WORKDIR\n");
        return 2;
    }
    vmenc_status s;
    if ((s = vmenc_init()) != VMENC_OK)
        return fail("init", s);
    /* A demo passphrase; a host takes it from its secret store. */
    static const char pass[] = "block layer demo passphrase";
    vmenc_workspace_create_options co = {.struct_size = sizeof(co), .passphrase = (const uint8_t *)pass,
                                         .passphrase_len = strlen(pass), .admin = "admin",
                                         .kdf_opslimit = 1, .kdf_memlimit_kib = 8,
                                         .flags = VMENC_WORKSPACE_CREATE_DEFAULT_POLICY};
    if ((s = vmenc_workspace_create(argv[1], &co, NULL)) != VMENC_OK)
        return fail("workspace create", s);
    vmenc_workspace_open_options oo = {.struct_size = sizeof(oo), .passphrase = (const uint8_t *)pass,
                                       .passphrase_len = strlen(pass), .flags = VMENC_WORKSPACE_OPEN_NO_SYNC};
    vmenc_workspace *ws = NULL;
    if ((s = vmenc_workspace_open(argv[1], &oo, NULL, &ws)) != VMENC_OK)
        return fail("workspace open", s);
    char home[4096];
    if ((s = vmenc_workspace_vm_home(ws, "guest01", home, sizeof(home))) != VMENC_OK)
        return fail("vm home", s);
    vmenc_vm_create_options vo = {.struct_size = sizeof(vo), .principal = "admin", .home_dir = home,
                                  .name = "guest01", .folder = vmenc_workspace_folder(ws),
                                  .storage_policy = "VM Encryption Policy"};
    vmenc_vm *vm = NULL;
    if ((s = vmenc_vm_create(vmenc_workspace_host(ws), &vo, &vm)) != VMENC_OK)
        return fail("vm create", s);
    char disk_id[VMENC_DISK_ID_MAX + 1];
    vmenc_disk_create_options dopt = {.struct_size = sizeof(dopt), .capacity = DISK_BYTES, .sector_size = 4096};
    if ((s = vmenc_vm_add_disk(vm, "admin", &dopt, disk_id, sizeof(disk_id))) != VMENC_OK)
        return fail("add disk", s);
    vmenc_disk *disk = NULL;
    if ((s = vmenc_disk_open(vm, "admin", disk_id, 0, &disk)) != VMENC_OK)
        return fail("disk open", s);

    /* The guest's request queue: writes, then reads that must see them. */
    static const struct request q[] = {
        {1, 0, 4096, 0xa1}, {1, 1 << 20, 65536, 0xb2}, {1, 12345, 100, 0xc3},
        {0, 0, 4096, 0xa1}, {0, 1 << 20, 65536, 0xb2}, {0, 12345, 100, 0xc3},
    };
    uint8_t *buf = malloc(65536), *want = malloc(65536);
    int bad = 0;
    for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
        memset(want, q[i].fill, q[i].len);
        if (q[i].write) {
            s = vmenc_disk_pwrite(disk, q[i].offset, want, q[i].len);
        } else {
            s = vmenc_disk_pread(disk, q[i].offset, q[i].len, buf);
            if (s == VMENC_OK && memcmp(buf, want, q[i].len) != 0)
                bad++;
        }
        if (s != VMENC_OK)
            return fail(q[i].write ? "write" : "read", s);
    }
    if ((s = vmenc_disk_flush(disk)) != VMENC_OK)
        return fail("flush", s);
    int enc = 0;
    s = vmenc_disk_is_encrypted(disk, &enc);
    printf("block_layer: vmenc %s, disk %s of %s: %zu requests served, encrypted=%d, mismatches=%d\n",
           vmenc_version_string(), disk_id, vmenc_vm_name(vm), sizeof(q) / sizeof(q[0]), enc, bad);
    vmenc_status closed = vmenc_disk_close(disk); /* flushes */
    vmenc_vm_free(vm);
    vmenc_workspace_free(ws);
    free(buf);
    free(want);
    if (closed != VMENC_OK)
        return fail("disk close", closed);
    return bad || s != VMENC_OK || !enc;
}
