/*
 * tools/vmenc/cmd_vm.c - `vmenc vm ...`, `vmenc disk ...`, `vmenc file ...`.
 *
 * Conversion verbs (vm resume, rekey --deep, encrypt of a disk holding
 * data) arrive with the conversion engine; they go into vm_verbs below.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define IO_CHUNK (1u << 20)

int open_vm(cli *c, const char *name, vmenc_vm **out, bool allow_locked) {
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    vmenc_vm *vm = NULL;
    vmenc_status st = vmenc_workspace_open_vm(c->ws, cli_principal(c), name, &vm);
    if (st == VMENC_E_VM_LOCKED && allow_locked) {
        *out = vm;
        return EXIT_OK;
    }
    if (st != VMENC_OK) {
        vmenc_vm_free(vm);
        return cli_fail(c, st, "cannot open VM '%s'", name);
    }
    *out = vm;
    return EXIT_OK;
}

static const char *disk_state_name(vmenc_disk_state s) { return s == VMENC_DISK_ENCRYPTED ? "encrypted" : "plain"; }

void out_vm_status(out_t *o, vmenc_vm *vm) {
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    if (vmenc_vm_get_info(vm, &info) != VMENC_OK)
        return;
    out_str(o, "name", info.name);
    out_str(o, "uuid", info.uuid);
    out_bool(o, "encrypted", info.encrypted);
    out_bool(o, "locked", info.locked);
    out_str(o, "key_provider", info.key_provider);
    out_str(o, "kek_id", info.kek_id);
    out_str(o, "storage_policy", info.storage_policy);
    out_arr(o, "disks");
    for (uint32_t i = 0; i < info.num_disks; i++) {
        vmenc_disk_info d = {.struct_size = sizeof(d)};
        if (vmenc_vm_get_disk_info(vm, i, &d) != VMENC_OK)
            continue;
        out_obj(o, NULL);
        out_str(o, "id", d.disk_id);
        out_str(o, "file", d.file_name);
        out_u64(o, "capacity", d.capacity);
        out_u64(o, "sector_size", d.sector_size);
        out_str(o, "state", disk_state_name(d.state));
        out_str(o, "key_provider", d.key_provider);
        out_str(o, "kek_id", d.kek_id);
        out_bool(o, "locked", d.locked);
        out_close(o);
    }
    out_close(o);
    out_arr(o, "missing_keys");
    for (uint32_t i = 0; i < info.num_missing_keys; i++) {
        char alias[VMENC_PROVIDER_ALIAS_MAX + 1], id[VMENC_KMS_KEY_ID_CAP];
        vmenc_status why = VMENC_OK;
        if (vmenc_vm_get_missing_key(vm, i, alias, sizeof(alias), id, sizeof(id), &why) != VMENC_OK)
            continue;
        out_obj(o, NULL);
        out_str(o, "key_provider", alias);
        out_str(o, "kek_id", id);
        out_str(o, "status", vmenc_status_name(why));
        out_close(o);
    }
    out_close(o);
}

/* ---- vm ------------------------------------------------------------------------- */

static int vm_create(cli *c, args *a) {
    const char *policy = NULL, *folder = NULL, *kek = NULL, *mem = NULL, *sector = NULL, *sizes[VMENC_VM_MAX_DISKS];
    (void)arg_value(c, a, "--policy", &policy);
    (void)arg_value(c, a, "--folder", &folder);
    (void)arg_value(c, a, "--kek", &kek);
    (void)arg_value(c, a, "--memory", &mem);
    (void)arg_value(c, a, "--sector", &sector);
    size_t nd = arg_values(c, a, "--disk", sizes, VMENC_VM_MAX_DISKS);
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "vm create needs NAME");
    uint64_t memory = 0, ss = 0, caps[VMENC_VM_MAX_DISKS];
    if ((mem && !parse_size(mem, &memory)) || (sector && !parse_size(sector, &ss)))
        return cli_usage(c, "bad --memory or --sector");
    for (size_t i = 0; i < nd; i++)
        if (!parse_size(sizes[i], &caps[i]) || caps[i] == 0)
            return cli_usage(c, "bad --disk size '%s' (e.g. 256M, 10G)", sizes[i]);
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    char home[1024];
    vmenc_status st = vmenc_workspace_vm_home(c->ws, name, home, sizeof(home));
    if (st != VMENC_OK)
        return cli_fail(c, st, "bad VM name '%s'", name);
    vmenc_vm_create_options o = {.struct_size = sizeof(o), .principal = cli_principal(c), .home_dir = home,
                                 .name = name, .folder = folder ? folder : vmenc_workspace_folder(c->ws),
                                 .storage_policy = policy, .kek_id = kek, .memory_bytes = memory};
    vmenc_vm *vm = NULL;
    st = vmenc_vm_create(vmenc_workspace_host(c->ws), &o, &vm);
    /* The inventory changed (and maybe the host mode) even if a later step fails. */
    rc = cli_save_policy(c);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot create VM '%s'", name);
    for (size_t i = 0; rc == EXIT_OK && i < nd; i++) {
        vmenc_disk_create_options d = {.struct_size = sizeof(d), .capacity = caps[i], .sector_size = (uint32_t)ss};
        st = vmenc_vm_add_disk(vm, cli_principal(c), &d, NULL, 0);
        if (st != VMENC_OK)
            rc = cli_fail(c, st, "cannot add disk %zu (%s) to '%s'", i, sizes[i], name);
    }
    if (rc == EXIT_OK) {
        out_t *r = out_begin(c);
        out_bool(r, "ok", true);
        out_vm_status(r, vm);
        out_end(r);
    }
    vmenc_vm_free(vm);
    return rc;
}

typedef struct list_ctx {
    cli *c;
    out_t *o;
    int locked, denied;
} list_ctx;

static int list_one(void *ctx, const char *name) {
    list_ctx *l = ctx;
    vmenc_vm *vm = NULL;
    vmenc_status st = vmenc_workspace_open_vm(l->c->ws, cli_principal(l->c), name, &vm);
    out_obj(l->o, NULL);
    if (vm != NULL && (st == VMENC_OK || st == VMENC_E_VM_LOCKED)) {
        vmenc_vm_info info = {.struct_size = sizeof(info)};
        if (vmenc_vm_get_info(vm, &info) == VMENC_OK) {
            out_str(l->o, "name", info.name);
            out_str(l->o, "uuid", info.uuid);
            out_bool(l->o, "encrypted", info.encrypted);
            out_bool(l->o, "locked", info.locked);
            out_u64(l->o, "disks", info.num_disks);
            out_str(l->o, "storage_policy", info.storage_policy);
        }
        l->locked += st == VMENC_E_VM_LOCKED;
    } else {
        out_str(l->o, "name", name);
        out_str(l->o, "error", vmenc_status_name(st));
        l->denied++;
    }
    out_close(l->o);
    vmenc_vm_free(vm);
    return 0;
}

static int vm_list(cli *c, args *a) {
    if (!arg_done(c, a))
        return EXIT_USAGE;
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    list_ctx l = {.c = c, .o = out_begin(c)};
    out_bool(l.o, "ok", true);
    out_arr(l.o, "vms");
    vmenc_status st = vmenc_workspace_foreach_vm(c->ws, list_one, &l);
    out_close(l.o);
    out_end(l.o);
    return st == VMENC_OK ? EXIT_OK : cli_fail(c, st, "cannot list the datastore");
}

static int vm_status(cli *c, args *a) {
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "vm status needs NAME");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, true);
    if (rc != EXIT_OK)
        return rc;
    vmenc_vm_info info = {.struct_size = sizeof(info)};
    bool locked = vmenc_vm_get_info(vm, &info) == VMENC_OK && info.locked;
    out_t *o = out_begin(c);
    out_bool(o, "ok", !locked);
    out_vm_status(o, vm);
    out_end(o);
    vmenc_vm_free(vm);
    if (locked)
        fprintf(stderr, "vmenc: VM '%s' is locked: %u key(s) cannot be fetched (VMENC_E_VM_LOCKED)\n", name,
                info.num_missing_keys);
    return locked ? EXIT_UNAVAILABLE : EXIT_OK;
}

static int vm_unlock(cli *c, args *a) {
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "vm unlock needs NAME");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, true);
    if (rc != EXIT_OK)
        return rc;
    vmenc_status st = vmenc_vm_unlock(vm, cli_principal(c));
    out_t *o = out_begin(c);
    out_bool(o, "ok", st == VMENC_OK);
    out_vm_status(o, vm);
    out_end(o);
    vmenc_vm_free(vm);
    return st == VMENC_OK ? EXIT_OK : cli_fail_stderr(c, st, "VM '%s' is still locked", name);
}

static int apply_policy(cli *c, args *a, const char *def, const char *what) {
    const char *policy = NULL;
    (void)arg_value(c, a, "--policy", &policy);
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "vm %s needs NAME", what);
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    vmenc_status st = vmenc_vm_apply_storage_policy(vm, cli_principal(c), policy ? policy : def);
    rc = cli_save_policy(c);
    if (st != VMENC_OK) {
        vmenc_vm_free(vm);
        return cli_fail(c, st, "cannot %s VM '%s' (storage policy '%s')%s", what, name, policy ? policy : def,
                        st == VMENC_E_UNSUPPORTED ? ": a disk holds data and in-place conversion is not available yet" : "");
    }
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_vm_status(o, vm);
    out_end(o);
    vmenc_vm_free(vm);
    return rc;
}

static int vm_encrypt(cli *c, args *a) { return apply_policy(c, a, "VM Encryption Policy", "encrypt"); }
static int vm_decrypt(cli *c, args *a) { return apply_policy(c, a, "Datastore Default", "decrypt"); }

static int vm_rekey(cli *c, args *a) {
    const char *provider = NULL, *kek = NULL;
    (void)arg_value(c, a, "--provider", &provider);
    (void)arg_value(c, a, "--kek", &kek);
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL)
        return cli_usage(c, "vm rekey needs NAME");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    vmenc_vm_info before = {.struct_size = sizeof(before)};
    vmenc_status st = vmenc_vm_get_info(vm, &before);
    if (st == VMENC_OK)
        st = vmenc_vm_rekey_shallow(vm, cli_principal(c), provider, kek);
    rc = cli_save_policy(c);
    if (st != VMENC_OK) {
        vmenc_vm_free(vm);
        return cli_fail(c, st, "cannot rekey VM '%s'", name);
    }
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "mode", "shallow");
    out_str(o, "old_kek_id", before.kek_id);
    out_vm_status(o, vm);
    out_end(o);
    vmenc_vm_free(vm);
    return rc;
}

static int vm_clone(cli *c, args *a) {
    const char *policy = NULL, *folder = NULL;
    bool has_policy = arg_value(c, a, "--policy", &policy);
    (void)arg_value(c, a, "--folder", &folder);
    bool keep = arg_flag(a, "--keep-keys");
    bool plain = arg_flag(a, "--plain");
    const char *src = arg_positional(a), *dst = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (src == NULL || dst == NULL)
        return cli_usage(c, "vm clone needs SOURCE and NAME");
    vmenc_vm *vm = NULL, *out_vm = NULL;
    int rc = open_vm(c, src, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    char home[1024];
    vmenc_status st = vmenc_workspace_vm_home(c->ws, dst, home, sizeof(home));
    vmenc_vm_clone_options o = {.struct_size = sizeof(o), .principal = cli_principal(c), .home_dir = home,
                                .name = dst, .folder = folder ? folder : vmenc_workspace_folder(c->ws),
                                .storage_policy = plain ? "" : has_policy ? policy : NULL,
                                .flags = keep ? VMENC_VM_CLONE_KEEP_KEYS : 0};
    if (st == VMENC_OK)
        st = vmenc_vm_clone(vm, &o, &out_vm);
    rc = cli_save_policy(c);
    vmenc_vm_free(vm);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot clone '%s' to '%s'", src, dst);
    out_t *r = out_begin(c);
    out_bool(r, "ok", true);
    out_str(r, "source", src);
    out_vm_status(r, out_vm);
    out_end(r);
    vmenc_vm_free(out_vm);
    return rc;
}

static int vm_add_disk(cli *c, args *a) {
    const char *size = NULL, *sector = NULL, *id = NULL;
    (void)arg_value(c, a, "--size", &size);
    (void)arg_value(c, a, "--sector", &sector);
    (void)arg_value(c, a, "--id", &id);
    const char *name = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    uint64_t cap = 0, ss = 0;
    if (name == NULL || size == NULL || !parse_size(size, &cap) || (sector && !parse_size(sector, &ss)))
        return cli_usage(c, "vm add-disk needs NAME and --size SIZE");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    vmenc_disk_create_options d = {.struct_size = sizeof(d), .disk_id = id, .capacity = cap, .sector_size = (uint32_t)ss};
    char disk_id[VMENC_DISK_ID_MAX + 1] = "";
    vmenc_status st = vmenc_vm_add_disk(vm, cli_principal(c), &d, disk_id, sizeof(disk_id));
    vmenc_vm_free(vm);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot add a disk to '%s'", name);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "vm", name);
    out_str(o, "disk", disk_id);
    out_u64(o, "capacity", cap);
    out_end(o);
    return EXIT_OK;
}

static int vm_remove_disk(cli *c, args *a) {
    bool del = arg_flag(a, "--delete-files");
    const char *name = arg_positional(a), *disk = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL || disk == NULL)
        return cli_usage(c, "vm remove-disk needs NAME and DISK");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    vmenc_status st = vmenc_vm_remove_disk(vm, cli_principal(c), disk, del ? VMENC_VM_REMOVE_DELETE_FILES : 0);
    vmenc_vm_free(vm);
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot remove disk %s of '%s'", disk, name);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "vm", name);
    out_str(o, "disk", disk);
    out_bool(o, "files_deleted", del);
    out_end(o);
    return EXIT_OK;
}

static int vm_register(cli *c, args *a) {
    const char *folder = NULL;
    (void)arg_value(c, a, "--folder", &folder);
    const char *what = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (what == NULL)
        return cli_usage(c, "vm register needs NAME (a folder in the datastore) or the path of a .vmx");
    int rc = cli_open(c);
    if (rc != EXIT_OK)
        return rc;
    char path[1024];
    vmenc_status st = VMENC_OK;
    if (strchr(what, '/') != NULL)
        snprintf(path, sizeof(path), "%s", what);
    else
        st = vmenc_workspace_vm_path(c->ws, what, path, sizeof(path));
    vmenc_vm *vm = NULL;
    if (st == VMENC_OK)
        st = vmenc_vm_register(vmenc_workspace_host(c->ws), cli_principal(c), path,
                               folder ? folder : vmenc_workspace_folder(c->ws), NULL, &vm);
    rc = cli_save_policy(c);
    if (st != VMENC_OK && st != VMENC_E_VM_LOCKED) {
        vmenc_vm_free(vm);
        return cli_fail(c, st, "cannot register '%s'", what);
    }
    out_t *o = out_begin(c);
    out_bool(o, "ok", st == VMENC_OK);
    out_vm_status(o, vm);
    out_end(o);
    vmenc_vm_free(vm);
    if (st == VMENC_E_VM_LOCKED)
        return cli_fail_stderr(c, st, "registered '%s', but it is locked", what);
    return rc;
}

const verb_def vm_verbs[] = {
    {"create", vm_create, "NAME [--policy SP] [--disk SIZE]... [options]", "create a VM (encrypted from birth with an encrypting policy)",
     "Options:\n"
     "  --policy NAME   storage policy; 'VM Encryption Policy' encrypts (default: plain)\n"
     "  --disk SIZE     add a zero-filled disk (repeat; 512, 4K, 256M, 10G)\n"
     "  --sector 512|4096, --memory SIZE (swap), --folder NAME, --kek ID (existing KEK)\n"
     "Needs VirtualMachine.Inventory.Create (+ Cryptographer.EncryptNew when encrypted).\n"},
    {"list", vm_list, "", "list the VMs of the datastore", ""},
    {"status", vm_status, "NAME", "show a VM, its disks, keys and missing keys", "Exit 5 if the VM is locked.\n"},
    {"encrypt", vm_encrypt, "NAME [--policy SP]", "apply an encrypting storage policy (default 'VM Encryption Policy')",
     "The host is switched to encryption mode when the user may. Disks that hold data need the\n"
     "in-place conversion engine (not in this version: VMENC_E_UNSUPPORTED, nothing changed).\n"},
    {"decrypt", vm_decrypt, "NAME [--policy SP]", "apply a plain storage policy (default 'Datastore Default')",
     "Needs Cryptographer.Decrypt.\n"},
    {"rekey", vm_rekey, "NAME [--provider ALIAS] [--kek ID]", "shallow rekey: re-wrap every key under a new KEK",
     "Data is not re-encrypted. Needs Cryptographer.Recrypt.\n"},
    {"clone", vm_clone, "SOURCE NAME [--policy SP | --plain] [--keep-keys]", "clone a powered-off VM",
     "Default: the source's policy, new keys. --keep-keys keeps the DEKs (ciphertext copied).\n"},
    {"add-disk", vm_add_disk, "NAME --size SIZE [--sector N] [--id scsiB:U]", "add a zero-filled disk", ""},
    {"remove-disk", vm_remove_disk, "NAME DISK [--delete-files]", "remove a disk from the configuration", ""},
    {"register", vm_register, "NAME|PATH.vmx [--folder F]", "add an existing VM home to this host's inventory",
     "Keys are fetched by ID; nothing is re-encrypted. Exit 5 if it registers locked.\n"},
    {"unlock", vm_unlock, "NAME", "retry fetching the keys of a locked VM", "Exit 5 if a key is still missing.\n"},
    {NULL, NULL, NULL, NULL, NULL},
};

/* ---- disk ----------------------------------------------------------------------- */

static bool parse_range(cli *c, args *a, uint64_t *off, uint64_t *len, bool *has_len) {
    const char *o = NULL, *l = NULL;
    (void)arg_value(c, a, "--offset", &o);
    *has_len = arg_value(c, a, "--length", &l);
    *off = 0;
    *len = 0;
    if ((o && !parse_size(o, off)) || (l && !parse_size(l, len))) {
        cli_usage(c, "bad --offset or --length");
        return false;
    }
    return true;
}

static int disk_read(cli *c, args *a) {
    uint64_t off, len;
    bool has_len;
    if (!parse_range(c, a, &off, &len, &has_len))
        return EXIT_USAGE;
    const char *name = arg_positional(a), *disk = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL || disk == NULL)
        return cli_usage(c, "disk read needs VM and DISK");
    if (c->json)
        return cli_usage(c, "disk read writes raw bytes to stdout; --json is not available");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    vmenc_disk *d = NULL;
    vmenc_status st = vmenc_disk_open(vm, cli_principal(c), disk, VMENC_DISK_OPEN_EXPORT | VMENC_DISK_OPEN_READONLY, &d);
    uint64_t cap = 0;
    if (st == VMENC_OK)
        st = vmenc_disk_get_size(d, &cap);
    if (st == VMENC_OK && off > cap)
        st = VMENC_E_INVALID_ARG;
    if (st == VMENC_OK && !has_len)
        len = cap - off;
    if (st == VMENC_OK && len > cap - off)
        st = VMENC_E_INVALID_ARG;
    uint8_t *buf = st == VMENC_OK ? malloc(IO_CHUNK) : NULL;
    progress *p = st == VMENC_OK ? progress_start(c, "read", len) : NULL;
    for (uint64_t done = 0; st == VMENC_OK && done < len && !g_interrupted;) {
        size_t n = len - done < IO_CHUNK ? (size_t)(len - done) : IO_CHUNK;
        st = buf ? vmenc_disk_pread(d, off + done, n, buf) : VMENC_E_NOMEM;
        if (st == VMENC_OK && fwrite(buf, 1, n, stdout) != n)
            st = VMENC_E_IO;
        done += n;
        progress_update(p, done);
    }
    progress_end(p);
    fflush(stdout);
    free(buf);
    vmenc_status cs = vmenc_disk_close(d);
    vmenc_vm_free(vm);
    if (st == VMENC_OK)
        st = cs;
    if (g_interrupted)
        return EXIT_INTERRUPTED;
    return st == VMENC_OK ? EXIT_OK : cli_fail(c, st, "cannot read disk %s of '%s'", disk, name);
}

static int disk_write(cli *c, args *a) {
    uint64_t off, len;
    bool has_len;
    if (!parse_range(c, a, &off, &len, &has_len))
        return EXIT_USAGE;
    const char *name = arg_positional(a), *disk = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    if (name == NULL || disk == NULL)
        return cli_usage(c, "disk write needs VM and DISK (data on stdin)");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    vmenc_disk *d = NULL;
    vmenc_status st = vmenc_disk_open(vm, cli_principal(c), disk, VMENC_DISK_OPEN_EXPORT, &d);
    uint64_t cap = 0, done = 0;
    if (st == VMENC_OK)
        st = vmenc_disk_get_size(d, &cap);
    if (st == VMENC_OK && off > cap)
        st = VMENC_E_INVALID_ARG;
    uint8_t *buf = st == VMENC_OK ? malloc(IO_CHUNK) : NULL;
    progress *p = st == VMENC_OK ? progress_start(c, "write", has_len ? len : cap - off) : NULL;
    while (st == VMENC_OK && !g_interrupted && (!has_len || done < len)) {
        if (buf == NULL) {
            st = VMENC_E_NOMEM;
            break;
        }
        size_t want = has_len && len - done < IO_CHUNK ? (size_t)(len - done) : IO_CHUNK;
        size_t n = fread(buf, 1, want, stdin);
        if (n == 0)
            break;
        if (n > cap - off - done) {
            st = VMENC_E_INVALID_ARG; /* past the end of the disk */
            break;
        }
        st = vmenc_disk_pwrite(d, off + done, buf, n);
        done += n;
        progress_update(p, done);
    }
    progress_end(p);
    free(buf);
    vmenc_status cs = vmenc_disk_close(d);
    vmenc_vm_free(vm);
    if (st == VMENC_OK)
        st = cs;
    if (g_interrupted)
        return EXIT_INTERRUPTED;
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot write disk %s of '%s'", disk, name);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "vm", name);
    out_str(o, "disk", disk);
    out_u64(o, "offset", off);
    out_u64(o, "bytes", done);
    out_end(o);
    return EXIT_OK;
}

const verb_def disk_verbs[] = {
    {"read", disk_read, "VM DISK [--offset N] [--length N] > FILE", "write decrypted bytes to stdout",
     "Raw access is an export: needs VirtualMachine.Provisioning.GetVmFiles, and\n"
     "Cryptographer.Access on an encrypted VM. Not with --json.\n"},
    {"write", disk_write, "VM DISK [--offset N] [--length N] < FILE", "write bytes from stdin, encrypted",
     "Same privileges as read.\n"},
    {NULL, NULL, NULL, NULL, NULL},
};

/* ---- file ------------------------------------------------------------------------ */

static bool file_class(const char *s, vmenc_vm_file_class *out) {
    static const struct { const char *n; vmenc_vm_file_class c; } t[] = {
        {"nvram", VMENC_VM_FILE_NVRAM}, {"vmss", VMENC_VM_FILE_VMSS}, {"vmsn", VMENC_VM_FILE_VMSN},
        {"vmem", VMENC_VM_FILE_VMEM}, {"vswp", VMENC_VM_FILE_VSWP}};
    for (size_t i = 0; s && i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(s, t[i].n) == 0) {
            *out = t[i].c;
            return true;
        }
    return false;
}

static int file_io(cli *c, args *a, bool write) {
    const char *idx = NULL;
    (void)arg_value(c, a, "--index", &idx);
    uint64_t off, len, index = 0;
    bool has_len;
    if (!parse_range(c, a, &off, &len, &has_len) || (idx && !parse_size(idx, &index)))
        return EXIT_USAGE;
    bool truncate = write && arg_flag(a, "--truncate");
    const char *name = arg_positional(a), *cls_s = arg_positional(a);
    if (!arg_done(c, a))
        return EXIT_USAGE;
    vmenc_vm_file_class cls;
    if (name == NULL || !file_class(cls_s, &cls))
        return cli_usage(c, "file %s needs VM and CLASS (nvram, vmss, vmsn, vmem, vswp)", write ? "write" : "read");
    if (!write && c->json)
        return cli_usage(c, "file read writes raw bytes to stdout; --json is not available");
    vmenc_vm *vm = NULL;
    int rc = open_vm(c, name, &vm, false);
    if (rc != EXIT_OK)
        return rc;
    vmenc_vm_file *f = NULL;
    uint32_t flags = write ? VMENC_VM_FILE_CREATE | (truncate ? VMENC_VM_FILE_TRUNCATE : 0) : VMENC_VM_FILE_READONLY;
    vmenc_status st = vmenc_vm_file_open(vm, cli_principal(c), cls, (uint32_t)index, flags, &f);
    uint8_t *buf = st == VMENC_OK ? malloc(IO_CHUNK) : NULL;
    uint64_t done = 0, size = 0;
    if (st == VMENC_OK && buf == NULL)
        st = VMENC_E_NOMEM;
    if (st == VMENC_OK && !write) {
        st = vmenc_vm_file_get_size(f, &size);
        if (!has_len)
            len = size > off ? size - off : 0;
    }
    while (st == VMENC_OK && !g_interrupted && (!has_len || done < len) && (write || done < len)) {
        size_t want = (has_len || !write) && len - done < IO_CHUNK ? (size_t)(len - done) : IO_CHUNK;
        size_t n = 0;
        if (write) {
            n = fread(buf, 1, want, stdin);
            if (n == 0)
                break;
            st = vmenc_vm_file_pwrite(f, off + done, buf, n);
        } else {
            st = vmenc_vm_file_pread(f, off + done, want, buf, &n);
            if (st == VMENC_OK && n == 0)
                break;
            if (st == VMENC_OK && fwrite(buf, 1, n, stdout) != n)
                st = VMENC_E_IO;
        }
        done += n;
    }
    fflush(stdout);
    free(buf);
    vmenc_status cs = vmenc_vm_file_close(f);
    vmenc_vm_free(vm);
    if (st == VMENC_OK)
        st = cs;
    if (st != VMENC_OK)
        return cli_fail(c, st, "cannot %s the %s file of '%s'", write ? "write" : "read", cls_s, name);
    if (write) {
        out_t *o = out_begin(c);
        out_bool(o, "ok", true);
        out_str(o, "vm", name);
        out_str(o, "class", cls_s);
        out_u64(o, "offset", off);
        out_u64(o, "bytes", done);
        out_end(o);
    }
    return EXIT_OK;
}

static int file_read(cli *c, args *a) { return file_io(c, a, false); }
static int file_write(cli *c, args *a) { return file_io(c, a, true); }

const verb_def file_verbs[] = {
    {"read", file_read, "VM CLASS [--index N] [--offset N] [--length N] > FILE", "read a state file (decrypted, authenticated)",
     "CLASS: nvram, vmss, vmsn, vmem (--index: snapshot number), vswp. Needs PowerOn.\n"},
    {"write", file_write, "VM CLASS [--index N] [--offset N] [--truncate] < FILE", "write a state file (encrypted)", ""},
    {NULL, NULL, NULL, NULL, NULL},
};
