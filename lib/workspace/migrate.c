/*
 * lib/workspace/migrate.c - receiving a migrated VM into this workspace in
 * one call (vmenc_workspace_migrate_receive, include/vmenc/workspace.h;
 * docs/migration.md "Receiving a VM"). It coordinates: the policy decides
 * (vmenc_workspace_authorize, then the receiver's own MIGRATE_VM check),
 * the migration receiver authenticates the stream (lib/vm/migrate.c), the
 * home stream codec reads its text chunks (migrate_home.c), and
 * vmenc_vm_register puts the VM on this host. Front ends (the CLI, the
 * demo, the bindings) only carry bytes: the handover, the ready token and
 * the stream.
 *
 * Safety rule: a receive either ends with the VM registered here or leaves
 * nothing it created - no file, no home directory, no inventory object -
 * and says so in the audit log. Everything written lands inside the new
 * home through its directory descriptor, with O_EXCL and O_NOFOLLOW, under
 * names the codec has checked; a file's bytes stay within its announced
 * size.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <dirent.h>
#include <stdlib.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fs.h"
#include "core/internal.h"
#include "vm/format/migrate_stream.h"
#include "vm/format/vmx.h"
#include "vmenc/workspace.h"
#include "workspace/migrate_home.h"

#define OP_REGISTER "migration.receive_register"
#define OP_ROLLBACK "migration.receive_rollback"

static vmenc_status errno_status(int e) {
    return e == ENOSPC || e == EDQUOT ? VMENC_E_NO_SPACE : e == EEXIST ? VMENC_E_EXISTS : VMENC_E_IO;
}

/* ---- writing the home stream into the home ------------------------------------ */

typedef struct home_rx {
    int dirfd;             /* the new home */
    const char *vm_name;
    bool manifest;
    mh_manifest m;
    int fd;                /* the file being written, -1 between files */
    uint64_t size;         /* its announced size */
    uint64_t files;        /* files announced so far */
    uint64_t announced;    /* sum of their sizes */
} home_rx;

/* close_file gives the current file its announced size (holes stay holes)
 * and makes it durable. */
static vmenc_status close_file(home_rx *r) {
    if (r->fd < 0)
        return VMENC_OK;
    vmenc_status st = VMENC_OK;
    if (ftruncate(r->fd, (off_t)r->size) != 0 || fsync(r->fd) != 0)
        st = errno_status(errno);
    if (close(r->fd) != 0 && st == VMENC_OK)
        st = VMENC_E_IO;
    r->fd = -1;
    return st;
}

static vmenc_status rx_text(home_rx *r, const vmenc_migration_chunk *ch) {
    if (ch->address == 0) {
        VMENC_ENSURE(!r->manifest, VMENC_E_PARSE);
        VMENC_GUARD(mh_manifest_parse(ch->data, ch->len, &r->m));
        VMENC_ENSURE(strcmp(r->m.vm, r->vm_name) == 0, VMENC_E_CONTEXT_MISMATCH); /* another VM's stream */
        r->manifest = true;
        return VMENC_OK;
    }
    mh_file f;
    VMENC_ENSURE(r->manifest && r->files < r->m.num_files && ch->address == 1 + r->files, VMENC_E_PARSE);
    VMENC_GUARD(mh_file_parse(ch->data, ch->len, &f));
    VMENC_ENSURE(f.size <= r->m.num_bytes - r->announced && f.size <= (uint64_t)INT64_MAX, VMENC_E_PARSE);
    VMENC_GUARD(close_file(r));
    r->fd = openat(r->dirfd, f.name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (r->fd < 0)
        return errno == EEXIST ? VMENC_E_PARSE : errno_status(errno); /* the same name twice */
    r->size = f.size;
    r->announced += f.size;
    r->files++;
    return VMENC_OK;
}

/* rx_chunk applies one received chunk to the home. */
static vmenc_status rx_chunk(home_rx *r, const vmenc_migration_chunk *ch) {
    if (ch->kind == VMENC_MIGRATION_DEVICE_STATE)
        return rx_text(r, ch);
    VMENC_ENSURE(ch->kind == VMENC_MIGRATION_DISK && r->fd >= 0, VMENC_E_PARSE);
    VMENC_ENSURE(ch->address <= r->size && ch->len <= r->size - ch->address, VMENC_E_PARSE);
    size_t done = 0;
    while (done < ch->len) {
        ssize_t n = pwrite(r->fd, ch->data + done, ch->len - done, (off_t)(ch->address + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? errno_status(errno) : VMENC_E_IO;
        done += (size_t)n;
    }
    return VMENC_OK;
}

/* receive_home reads the stream to its end into the home. */
static vmenc_status receive_home(vmenc_migration_receiver *recv, home_rx *r) {
    vmenc_status st = VMENC_OK;
    for (;;) {
        vmenc_migration_chunk ch = {.struct_size = sizeof(ch)};
        st = vmenc_migration_receive(recv, &ch);
        if (st != VMENC_OK || ch.end)
            break;
        st = rx_chunk(r, &ch);
        if (st != VMENC_OK)
            break;
    }
    /* an authenticated end with files missing is a stream cut short by its sender */
    if (st == VMENC_OK && (!r->manifest || r->files != r->m.num_files))
        st = VMENC_E_TRUNCATED;
    vmenc_status cs = close_file(r);
    if (st == VMENC_OK)
        st = cs;
    if (st == VMENC_OK && fsync(r->dirfd) != 0)
        st = errno_status(errno);
    return st;
}

/* ---- undo ------------------------------------------------------------------------ */

/* remove_home deletes every entry of the home we made (only plain files
 * were ever written there) and the home itself. */
static vmenc_status remove_home(int dirfd, const char *home) {
    vmenc_status st = VMENC_OK;
    int dup_fd = dup(dirfd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (d == NULL) {
        if (dup_fd >= 0)
            close(dup_fd);
        st = VMENC_E_IO;
    }
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd, e->d_name, 0) != 0 && st == VMENC_OK)
            st = VMENC_E_IO;
    }
    if (d != NULL)
        closedir(d);
    if (rmdir(home) != 0 && st == VMENC_OK)
        st = VMENC_E_IO;
    return st;
}

/* ---- the sequence ------------------------------------------------------------------ */

typedef struct receive {
    vmenc_workspace *ws;
    const char *principal, *name, *folder;
    const vmenc_workspace_migrate_receive_options *o;
    vmenc_workspace_migrate_receive_result *res;
    char home[4096];
    bool added_object;     /* the inventory object is ours to remove */
    int dirfd;             /* >= 0: the home is ours to remove */
    /* What the handover says the VM is (point 11 of issue 20): the
     * stream's NAME.vmx must agree before the VM is registered. */
    bool have_handover;
    bool ho_vm_encrypted;
    char ho_uuid[VMENC_VM_UUID_LEN + 1];
    char ho_name[VMENC_VM_NAME_MAX + 1];
    char ho_provider[VMENC_PROVIDER_ALIAS_MAX + 1];
    char ho_kek_id[VMENC_KEY_ID_MAX + 1];
} receive;

static vmenc_status enter_inventory(receive *x) {
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_REGISTER_VM, .folder = x->folder,
                               .pool = x->o->pool};
    vmenc_policy_decision dec = {.struct_size = sizeof(dec)};
    /* a denial is audited by the call itself */
    VMENC_GUARD(vmenc_workspace_authorize(x->ws, x->principal, &rq, OP_REGISTER, x->name, &dec));
    vmenc_status st = vmenc_policy_add_object(vmenc_workspace_policy(x->ws), x->name, VMENC_OBJ_VM, x->folder);
    x->added_object = st == VMENC_OK;
    if (st == VMENC_E_EXISTS)
        st = VMENC_OK; /* the inventory knew the VM before it moved, like a vCenter does */
    vmenc_status as = vmenc_workspace_audit_result(x->ws, x->principal, OP_REGISTER, x->name, NULL, NULL, st, NULL);
    return st != VMENC_OK ? st : as;
}

static vmenc_status make_home(receive *x) {
    if (mkdir(x->home, 0700) != 0)
        return errno_status(errno);
    x->dirfd = open(x->home, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (x->dirfd < 0) {
        vmenc_status st = errno_status(errno);
        (void)rmdir(x->home);
        return st;
    }
    return VMENC_OK;
}

/* note_handover keeps the VM's identity from the handover (the receiver
 * authenticates the stream against it; a malformed one fails there). */
static void note_handover(receive *x, const uint8_t *blob, size_t len) {
    mig_handover ho;
    memset(&ho, 0, sizeof(ho));
    if (mig_handover_parse(blob, len, &ho) == VMENC_OK) {
        x->have_handover = true;
        x->ho_vm_encrypted = (ho.flags & MIG_HO_VM_ENCRYPTED) != 0;
        snprintf(x->ho_uuid, sizeof(x->ho_uuid), "%s", ho.vm_uuid);
        snprintf(x->ho_name, sizeof(x->ho_name), "%s", ho.vm_name);
        snprintf(x->ho_provider, sizeof(x->ho_provider), "%s", ho.key_provider);
        snprintf(x->ho_kek_id, sizeof(x->ho_kek_id), "%s", ho.kek_id);
    }
    mig_handover_cleanup(&ho); /* wipes the one-time key */
}

static vmenc_status stream_in(receive *x) {
    const vmenc_workspace_migrate_receive_options *o = x->o;
    vmenc_migration_receiver_options ro = {.struct_size = sizeof(ro), .principal = x->principal,
                                           .handover = o->handover, .handover_len = o->handover_len,
                                           .flags = o->flags, .fd = o->fd, .read_fn = o->read_fn,
                                           .io_ctx = o->io_ctx};
    uint8_t blob[VMENC_MIGRATION_HANDOVER_MAX];
    vmenc_status st = VMENC_OK;
    if (o->handover == NULL) {
        size_t len = 0;
        st = o->handover_fn(o->handover_ctx, blob, sizeof(blob), &len);
        if (st == VMENC_OK && (len == 0 || len > sizeof(blob)))
            st = VMENC_E_PARSE;
        ro.handover = blob;
        ro.handover_len = len;
    }
    if (st == VMENC_OK)
        note_handover(x, ro.handover, ro.handover_len);
    vmenc_migration_receiver *recv = NULL;
    if (st == VMENC_OK)
        st = vmenc_migration_receiver_new(vmenc_workspace_host(x->ws), &ro, &recv);
    vmenc_memzero(blob, sizeof(blob)); /* the one-time key */
    uint8_t tok[VMENC_MIGRATION_READY_BYTES];
    if (st == VMENC_OK)
        st = vmenc_migration_receiver_get_ready(recv, tok, sizeof(tok));
    if (st == VMENC_OK) {
        st = o->ready_fn(o->ready_ctx, tok, sizeof(tok));
        x->res->stream_started = st == VMENC_OK;
    }
    home_rx r = {.dirfd = x->dirfd, .vm_name = x->name, .fd = -1};
    if (st == VMENC_OK)
        st = receive_home(recv, &r);
    x->res->num_files = r.files;
    vmenc_status is = recv != NULL ? vmenc_migration_receiver_get_info(recv, &x->res->migration) : VMENC_OK;
    (void)is; /* the result is informative; the receive's status is what counts */
    vmenc_migration_receiver_free(recv); /* a stream not completed is audited as failed */
    return st;
}

/* vmx_mismatch compares the received NAME.vmx with the handover: the
 * same VM (UUID, name), encrypted or not as announced, under the announced
 * KEK. Returns NULL when they agree, else what differs. */
static const char *vmx_mismatch(const receive *x, const vm_vmx *v) {
    if (strcmp(v->uuid, x->ho_uuid) != 0)
        return "its UUID is not the handover's";
    if (strcmp(v->name, x->ho_name) != 0)
        return "its name is not the handover's";
    if ((v->key_safe != NULL) != x->ho_vm_encrypted)
        return x->ho_vm_encrypted ? "the handover announced an encrypted VM; the configuration is plain"
                                  : "the handover announced a plain VM; the configuration carries a key";
    if (v->key_safe != NULL && (strcmp(vmenc_wrapped_key_provider_alias(v->key_safe), x->ho_provider) != 0 ||
                                strcmp(vmenc_wrapped_key_kek_id(v->key_safe), x->ho_kek_id) != 0))
        return "its key record names another KEK than the handover";
    return NULL;
}

/* check_against_handover refuses (VMENC_E_AUTH, audited) a received
 * configuration that is not the VM the handover announced. */
static vmenc_status check_against_handover(receive *x) {
    VMENC_ENSURE(x->have_handover, VMENC_E_INTERNAL);
    char file[VMENC_VM_NAME_MAX + 8];
    snprintf(file, sizeof(file), "%s.vmx", x->name);
    uint8_t *text = NULL;
    size_t len = 0;
    VMENC_GUARD(vmenc_fs_read_file(x->dirfd, file, (size_t)1 << 20, &text, &len));
    vm_vmx v;
    memset(&v, 0, sizeof(v));
    vmenc_status st = vm_vmx_parse(text, len, &v);
    free(text);
    VMENC_GUARD(st);
    const char *why = vmx_mismatch(x, &v);
    vm_vmx_cleanup(&v);
    if (why == NULL)
        return VMENC_OK;
    char reason[VMENC_AUDIT_MAX_REASON];
    snprintf(reason, sizeof(reason), "%s (received): %s", file, why);
    vmenc_status as = vmenc_workspace_audit_result(x->ws, x->principal, OP_REGISTER, x->name, x->ho_provider,
                                                   x->ho_kek_id, VMENC_E_AUTH, reason);
    (void)as; /* the refusal is what the caller must see */
    return VMENC_E_AUTH;
}

static vmenc_status register_here(receive *x, vmenc_vm **out_vm) {
    VMENC_GUARD(check_against_handover(x));
    char vmx[4096 + 8 + VMENC_VM_NAME_MAX];
    VMENC_ENSURE((size_t)snprintf(vmx, sizeof(vmx), "%s/%s.vmx", x->home, x->name) < sizeof(vmx),
                 VMENC_E_BAD_PATH);
    return vmenc_vm_register(vmenc_workspace_host(x->ws), x->principal, vmx, x->folder, x->o->pool, out_vm);
}

/* roll_back removes what this receive created and audits it. */
static void roll_back(receive *x, vmenc_status cause) {
    if (x->dirfd < 0 && !x->added_object)
        return;
    vmenc_status st = VMENC_OK;
    if (x->dirfd >= 0) {
        st = remove_home(x->dirfd, x->home);
        close(x->dirfd);
        x->dirfd = -1;
    }
    if (x->added_object) {
        vmenc_status rs = vmenc_policy_remove_object(vmenc_workspace_policy(x->ws), x->name);
        if (rs == VMENC_E_NOT_FOUND)
            rs = VMENC_OK; /* someone else removed it meanwhile */
        if (st == VMENC_OK)
            st = rs;
        x->added_object = false;
    }
    char reason[160];
    snprintf(reason, sizeof(reason), "receive failed (%s): home and inventory object %s", vmenc_status_name(cause),
             st == VMENC_OK ? "removed" : "not fully removed");
    vmenc_status as = vmenc_workspace_audit_result(x->ws, x->principal, OP_ROLLBACK, x->name, NULL, NULL, st, reason);
    (void)as; /* the receive's own failure is what the caller must see */
}

vmenc_status vmenc_workspace_migrate_receive(vmenc_workspace *ws, const char *principal, const char *name,
                                             const vmenc_workspace_migrate_receive_options *opts,
                                             vmenc_workspace_migrate_receive_result *out_result, vmenc_vm **out_vm) {
    VMENC_ENSURE(ws != NULL && principal != NULL && name != NULL && opts != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(opts->struct_size >= sizeof(*opts), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(opts->ready_fn != NULL && (opts->handover != NULL || opts->handover_fn != NULL),
                 VMENC_E_INVALID_ARG);
    vmenc_workspace_migrate_receive_result scratch = {.struct_size = sizeof(scratch)};
    if (out_result != NULL)
        VMENC_ENSURE(out_result->struct_size >= sizeof(*out_result), VMENC_E_ABI_VERSION);
    vmenc_workspace_migrate_receive_result *res = out_result != NULL ? out_result : &scratch;
    uint32_t sz = res->struct_size;
    memset(res, 0, sizeof(*res));
    res->struct_size = sz;
    res->migration.struct_size = sizeof(res->migration);

    receive x = {.ws = ws, .principal = principal, .name = name, .o = opts, .res = res, .dirfd = -1,
                 .folder = opts->folder != NULL ? opts->folder : vmenc_workspace_folder(ws)};
    VMENC_GUARD(vmenc_workspace_vm_home(ws, name, x.home, sizeof(x.home)));

    vmenc_vm *vm = NULL;
    vmenc_status st = enter_inventory(&x);
    if (st == VMENC_OK)
        st = make_home(&x);
    if (st == VMENC_OK)
        st = stream_in(&x);
    if (st == VMENC_OK)
        st = register_here(&x, &vm);
    if (st != VMENC_OK && st != VMENC_E_VM_LOCKED) {
        vmenc_vm_free(vm); /* register leaves it NULL on these failures; be sure */
        roll_back(&x, st);
        return st;
    }
    if (x.dirfd >= 0)
        close(x.dirfd);
    if (out_vm != NULL)
        *out_vm = vm;
    else
        vmenc_vm_free(vm);
    return st;
}
