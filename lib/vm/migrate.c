/*
 * lib/vm/migrate.c - encrypted migration (vmenc/migration.h): who may
 * migrate, which mode the stream takes, the one-time key and its handover,
 * the receiver's checks before anything streams, and the audit trail on
 * both sides. The byte formats are in format/migrate_stream.c.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vm/format/migrate_stream.h"
#include "vm/vm_internal.h"

#define SENDER_OPTIONS_V1_SIZE (offsetof(vmenc_migration_sender_options, io_ctx) + sizeof(void *))
#define RECEIVER_OPTIONS_V1_SIZE (offsetof(vmenc_migration_receiver_options, io_ctx) + sizeof(void *))
#define INFO_V1_SIZE (offsetof(vmenc_migration_info, failure) + sizeof(vmenc_migration_failure))
#define CHUNK_V1_SIZE (offsetof(vmenc_migration_chunk, len) + sizeof(size_t))
#define SENDER_FLAGS (VMENC_MIGRATION_POWERED_ON | VMENC_MIGRATION_PEER_NO_ENCRYPTION)

typedef enum { ST_PREPARED, ST_STREAMING, ST_DONE, ST_FAILED } mig_state;

/* What both ends keep for their audit events. */
typedef struct mig_audit {
    vmenc_host *host; /* retained */
    char principal[VMENC_POLICY_NAME_MAX + 1];
    const char *operation;
    char target[VMENC_AUDIT_MAX_FIELD];
    char provider[VMENC_PROVIDER_ALIAS_MAX + 1];
    char kek_id[VMENC_KEY_ID_MAX + 1];
} mig_audit;

struct vmenc_migration_sender {
    vmenc_vm *vm; /* retained */
    mig_audit audit;
    mig_handover ho;
    mig_codec codec;
    mig_state state;
    int fd;
    vmenc_migration_write_fn write_fn;
    void *io_ctx;
};

struct vmenc_migration_receiver {
    mig_audit audit;
    mig_handover ho;
    mig_codec codec;
    mig_state state;
    vmenc_migration_failure failure;
    int fd;
    vmenc_migration_read_fn read_fn;
    void *io_ctx;
};

/* ---- transport over a descriptor ---------------------------------------------------- */

static vmenc_status fd_write(void *ctx, const uint8_t *data, size_t len) {
    int fd = *(const int *)ctx;
    for (size_t done = 0; done < len;) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return vmenc_status_from_errno(errno);
        done += (size_t)n;
    }
    return VMENC_OK;
}

static vmenc_status fd_read(void *ctx, uint8_t *buf, size_t cap, size_t *out_len) {
    int fd = *(const int *)ctx;
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return vmenc_status_from_errno(errno);
        *out_len = (size_t)n;
        return VMENC_OK;
    }
}

/* ---- audit ------------------------------------------------------------------------------ */

/* audit_text formats text for audit events, where truncating a long name
 * is acceptable (vsnprintf: the compiler's truncation warning does not
 * apply to this deliberate use). */
__attribute__((format(printf, 3, 4))) static void audit_text(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(out, cap, fmt, ap);
    va_end(ap);
}

static void audit_init(mig_audit *a, vmenc_host *host, const char *principal, const char *operation,
                       const char *vm_name, const char *peer) {
    memset(a, 0, sizeof(*a));
    vm_host_retain(host);
    a->host = host;
    snprintf(a->principal, sizeof(a->principal), "%s", principal);
    a->operation = operation;
    audit_text(a->target, sizeof(a->target), "%s/%s", vm_name, peer);
}

static vmenc_status audit_emit(const mig_audit *a, vmenc_status s, const char *reason) {
    vm_op op;
    vm_op_init(&op, a->host, a->principal, a->operation, a->target);
    vm_op_add_key(&op, a->provider, a->kek_id);
    return vm_op_finish(&op, s, reason);
}

static void audit_cleanup(mig_audit *a) { vm_host_release(a->host); }

static const char *mode_name(vmenc_migration_encryption m) {
    return m == VMENC_MIGRATION_DISABLED ? "disabled" : m == VMENC_MIGRATION_REQUIRED ? "required" : "opportunistic";
}

/* ---- mode ---------------------------------------------------------------------------------- */

/* policy_mode reads the migration mode of storage policy |name| for a VM
 * whose home is (not) encrypted under |provider|. No policy: opportunistic
 * (vSphere's default). A policy that cannot be read fails closed:
 * required. */
static vmenc_migration_encryption policy_mode(vmenc_policy *policy, const char *name, bool vm_encrypted,
                                              const char *provider) {
    if (name == NULL || name[0] == '\0')
        return VMENC_MIGRATION_OPPORTUNISTIC;
    vmenc_vm_crypto_state st = {.struct_size = sizeof(st), .home_encrypted = vm_encrypted,
                                .home_provider = vm_encrypted ? provider : NULL,
                                .migration = VMENC_MIGRATION_DISABLED};
    vmenc_policy_action acts[VMENC_POLICY_MAX_ACTIONS(0)];
    size_t n = 0;
    if (vmenc_policy_plan_storage_policy(policy, name, &st, acts, VMENC_ARRAY_LEN(acts), &n) != VMENC_OK)
        return VMENC_MIGRATION_REQUIRED;
    for (size_t i = 0; i < n; i++)
        if (acts[i].type == VMENC_ACTION_SET_MIGRATION)
            return acts[i].migration;
    return VMENC_MIGRATION_DISABLED;
}

/* stream_encrypted decides: an encrypted VM always, else by mode and what
 * the peer can do. VMENC_E_UNSUPPORTED when encryption is needed and the
 * peer cannot. */
static vmenc_status stream_encrypted(bool vm_encrypted, vmenc_migration_encryption mode, bool peer_can,
                                     bool *out) {
    bool must = vm_encrypted || mode == VMENC_MIGRATION_REQUIRED;
    VMENC_ENSURE(peer_can || !must, VMENC_E_UNSUPPORTED);
    *out = must || (mode == VMENC_MIGRATION_OPPORTUNISTIC && peer_can);
    return VMENC_OK;
}

/* ---- sender ------------------------------------------------------------------------------- */

static vmenc_status sender_authorize(vmenc_vm *vm, const vmenc_migration_sender_options *o, vm_op *op) {
    bool enc = vm_is_encrypted(vm);
    if (enc)
        vm_op_add_key(op, vmenc_wrapped_key_provider_alias(vm->vmx.key_safe),
                      vmenc_wrapped_key_kek_id(vm->vmx.key_safe));
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_MIGRATE_VM, .vm = vm->vmx.name,
                               .host = o->dest_host, .pool = o->pool, .datastore = o->datastore,
                               .flags = (enc ? VMENC_REQ_VM_ENCRYPTED : 0) |
                                        ((o->flags & VMENC_MIGRATION_POWERED_ON) ? VMENC_REQ_POWERED_ON : 0)};
    return vm_op_authorize(op, &rq);
}

/* sender_setup fills the handover (fresh key, nonce base, ID) and keys the
 * codec. Runs under the VM lock (it reads the configuration). */
static vmenc_status sender_setup(vmenc_migration_sender *s, const vmenc_migration_sender_options *o) {
    vmenc_vm *vm = s->vm;
    bool vm_enc = vm_is_encrypted(vm), enc = false;
    VMENC_ENSURE(!vm_enc || (!vm->locked && vm->vm_key != NULL), VMENC_E_VM_LOCKED);
    const char *alias = vm_enc ? vmenc_wrapped_key_provider_alias(vm->vmx.key_safe) : "";
    const char *kek = vm_enc ? vmenc_wrapped_key_kek_id(vm->vmx.key_safe) : "";
    mig_handover *h = &s->ho;
    h->mode = policy_mode(vm->host->policy, vm->vmx.storage_policy, vm_enc, alias);
    VMENC_GUARD(stream_encrypted(vm_enc, h->mode, !(o->flags & VMENC_MIGRATION_PEER_NO_ENCRYPTION), &enc));
    h->flags = (uint8_t)((enc ? MIG_HO_ENCRYPTED : 0) | (vm_enc ? MIG_HO_VM_ENCRYPTED : 0) |
                         ((o->flags & VMENC_MIGRATION_POWERED_ON) ? MIG_HO_POWERED_ON : 0));
    h->key = vmenc_secure_alloc(MIG_KEY_BYTES);
    VMENC_ENSURE(h->key != NULL, VMENC_E_NOMEM);
    VMENC_GUARD(vmenc_random_bytes(h->key, MIG_KEY_BYTES));
    VMENC_GUARD(vmenc_random_bytes(h->id, sizeof(h->id)));
    VMENC_GUARD(vmenc_random_bytes(h->nonce_base, sizeof(h->nonce_base)));
    VMENC_GUARD(vm_copy_string(h->source_host, sizeof(h->source_host), vm->host->host_id));
    VMENC_GUARD(vm_copy_string(h->vm_name, sizeof(h->vm_name), vm->vmx.name));
    VMENC_GUARD(vm_copy_string(h->vm_uuid, sizeof(h->vm_uuid), vm->vmx.uuid));
    VMENC_GUARD(vm_copy_string(h->storage_policy, sizeof(h->storage_policy), vm->vmx.storage_policy));
    VMENC_GUARD(vm_copy_string(h->key_provider, sizeof(h->key_provider), alias));
    VMENC_GUARD(vm_copy_string(h->kek_id, sizeof(h->kek_id), kek));
    snprintf(s->audit.provider, sizeof(s->audit.provider), "%s", alias);
    snprintf(s->audit.kek_id, sizeof(s->audit.kek_id), "%s", kek);
    return mig_codec_init(&s->codec, enc, true, h->key, h->id, h->nonce_base);
}

static void sender_release(vmenc_migration_sender *s) {
    mig_codec_cleanup(&s->codec);
    mig_handover_cleanup(&s->ho);
    audit_cleanup(&s->audit);
    vm_release(s->vm);
    free(s);
}

static vmenc_status sender_options_check(const vmenc_migration_sender_options *o) {
    VMENC_ENSURE(o->dest_host != NULL && (o->flags & ~SENDER_FLAGS) == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(o->write_fn != NULL || o->fd >= 0, VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

vmenc_status vmenc_migration_sender_new(vmenc_vm *vm, const vmenc_migration_sender_options *opts,
                                        vmenc_migration_sender **out) {
    VMENC_ENSURE(vm != NULL && opts != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(opts->struct_size >= SENDER_OPTIONS_V1_SIZE, VMENC_E_ABI_VERSION);
    vm_op op;
    vm_op_init(&op, vm->host, opts->principal, "migration.send", vm->vmx.name);
    vmenc_status st = sender_options_check(opts);
    if (st != VMENC_OK)
        return vm_op_finish(&op, st, "bad migration options");
    VMENC_GUARD(sender_authorize(vm, opts, &op));
    vmenc_migration_sender *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return vm_op_finish(&op, VMENC_E_NOMEM, NULL);
    vm_retain(vm);
    s->vm = vm;
    audit_init(&s->audit, vm->host, opts->principal, "migration.send", vm->vmx.name, opts->dest_host);
    s->fd = opts->fd;
    s->write_fn = opts->write_fn != NULL ? opts->write_fn : fd_write;
    s->io_ctx = opts->write_fn != NULL ? opts->io_ctx : &s->fd;
    pthread_mutex_lock(&vm->lock);
    st = sender_setup(s, opts);
    pthread_mutex_unlock(&vm->lock);
    char why[160];
    snprintf(why, sizeof(why), "%s", st == VMENC_E_UNSUPPORTED
                                         ? "encryption is required and the destination cannot do it"
                                         : "could not prepare the migration");
    if (st == VMENC_OK)
        snprintf(why, sizeof(why), "started to %s: stream %s, policy mode %s", opts->dest_host,
                 (s->ho.flags & MIG_HO_ENCRYPTED) ? "encrypted" : "plain", mode_name(s->ho.mode));
    st = vm_op_finish(&op, st, why);
    if (st != VMENC_OK) {
        sender_release(s); /* the failure is audited above */
        return st;
    }
    *out = s;
    return VMENC_OK;
}

vmenc_status vmenc_migration_sender_get_handover(vmenc_migration_sender *s, uint8_t *out, size_t cap,
                                                 size_t *out_len) {
    VMENC_ENSURE(s != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    return mig_handover_build(&s->ho, out, cap, out_len);
}

/* sender_fail audits the failure once and stops the sender. */
static vmenc_status sender_fail(vmenc_migration_sender *s, vmenc_status st, const char *why) {
    if (s->state != ST_FAILED) {
        s->state = ST_FAILED;
        (void)audit_emit(&s->audit, st, why);
    }
    return st;
}

static vmenc_status sender_frame(vmenc_migration_sender *s, uint8_t type, uint8_t kind, uint64_t address,
                                 const uint8_t *data, size_t len) {
    size_t n = 0;
    vmenc_status st = mig_codec_seal(&s->codec, type, kind, address, data, len, &n);
    if (st == VMENC_OK)
        st = s->write_fn(s->io_ctx, s->codec.buf, n);
    return st == VMENC_OK ? VMENC_OK : sender_fail(s, st, "could not send a frame");
}

vmenc_status vmenc_migration_sender_begin(vmenc_migration_sender *s, const uint8_t *ready, size_t ready_len) {
    VMENC_ENSURE(s != NULL && (ready != NULL || ready_len == 0), VMENC_E_INVALID_ARG);
    VMENC_ENSURE(s->state == ST_PREPARED, VMENC_E_BAD_STATE);
    uint8_t want[VMENC_MIGRATION_READY_BYTES];
    VMENC_GUARD(mig_ready_token(s->ho.key, s->ho.id, want));
    if (ready_len != sizeof(want) || !vmenc_ct_equal(want, ready, sizeof(want)))
        return sender_fail(s, VMENC_E_AUTH, "the receiver's ready token is not this migration's");
    VMENC_GUARD(sender_frame(s, MIG_FRAME_START, 0, 0, NULL, 0));
    s->state = ST_STREAMING;
    return VMENC_OK;
}

vmenc_status vmenc_migration_send(vmenc_migration_sender *s, vmenc_migration_kind kind, uint64_t address,
                                  const uint8_t *data, size_t len) {
    VMENC_ENSURE(s != NULL && data != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(len >= 1 && len <= VMENC_MIGRATION_CHUNK_MAX, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(kind >= VMENC_MIGRATION_MEMORY && kind <= VMENC_MIGRATION_DISK, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(s->state == ST_STREAMING, VMENC_E_BAD_STATE);
    return sender_frame(s, MIG_FRAME_DATA, (uint8_t)kind, address, data, len);
}

vmenc_status vmenc_migration_sender_finish(vmenc_migration_sender *s) {
    VMENC_ENSURE(s != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(s->state == ST_STREAMING, VMENC_E_BAD_STATE);
    uint8_t counts[MIG_END_PAYLOAD];
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, counts, sizeof(counts));
    vmenc_cbb_add_u64(&cbb, s->codec.num_chunks);
    vmenc_cbb_add_u64(&cbb, s->codec.num_bytes);
    VMENC_GUARD(sender_frame(s, MIG_FRAME_END, 0, 0, counts, sizeof(counts)));
    s->state = ST_DONE;
    /* the VM lives on the destination now: its authority record goes there (issue 20) */
    pthread_mutex_lock(&s->vm->lock);
    (void)vm_authority_forget(s->vm);
    pthread_mutex_unlock(&s->vm->lock);
    char why[96];
    snprintf(why, sizeof(why), "completed: %llu chunks, %llu bytes", (unsigned long long)s->codec.num_chunks,
             (unsigned long long)s->codec.num_bytes);
    return audit_emit(&s->audit, VMENC_OK, why);
}

void vmenc_migration_sender_free(vmenc_migration_sender *s) {
    if (s == NULL)
        return;
    if (s->state == ST_PREPARED || s->state == ST_STREAMING)
        (void)sender_fail(s, VMENC_E_INTERRUPTED, "abandoned before the end of the stream");
    sender_release(s);
}

static void fill_info(const mig_handover *h, const mig_codec *c, bool finished, vmenc_migration_failure f,
                      vmenc_migration_info *out) {
    memcpy(out->migration_id, h->id, sizeof(out->migration_id));
    out->encrypted = (h->flags & MIG_HO_ENCRYPTED) != 0;
    out->vm_encrypted = (h->flags & MIG_HO_VM_ENCRYPTED) != 0;
    out->mode = h->mode;
    out->num_chunks = c->num_chunks;
    out->num_bytes = c->num_bytes;
    out->finished = finished;
    out->failure = f;
}

vmenc_status vmenc_migration_sender_get_info(const vmenc_migration_sender *s, vmenc_migration_info *out) {
    VMENC_ENSURE(s != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= INFO_V1_SIZE, VMENC_E_ABI_VERSION);
    fill_info(&s->ho, &s->codec, s->state == ST_DONE, VMENC_MIGRATION_FAIL_NONE, out);
    return VMENC_OK;
}

/* ---- receiver --------------------------------------------------------------------------- */

/* receiver_mode_check: the stream the sender chose must be one this host
 * and the VM's policy accept. */
static vmenc_status receiver_mode_check(vmenc_host *host, const mig_handover *h, uint32_t flags, const char **why) {
    bool enc = h->flags & MIG_HO_ENCRYPTED, vm_enc = h->flags & MIG_HO_VM_ENCRYPTED;
    if (enc && (flags & VMENC_MIGRATION_NO_ENCRYPTION)) {
        *why = "this host cannot receive an encrypted migration";
        return VMENC_E_UNSUPPORTED;
    }
    vmenc_migration_encryption mode = policy_mode(host->policy, h->storage_policy, vm_enc, h->key_provider);
    if (!enc && (vm_enc || mode == VMENC_MIGRATION_REQUIRED)) {
        *why = "the VM must migrate encrypted: refusing a plain stream";
        return VMENC_E_DENIED;
    }
    return VMENC_OK;
}

/* receiver_can_open: this host reaches the VM's key provider and gets its
 * KEK, so the VM will open here once moved. */
static vmenc_status receiver_can_open(vmenc_host *host, const mig_handover *h) {
    if (!(h->flags & MIG_HO_VM_ENCRYPTED))
        return VMENC_OK;
    vmenc_kek *kek = NULL;
    VMENC_GUARD(vmenc_keymgr_get_kek(host->keymgr, h->key_provider, h->kek_id, host->timeout_ms, &kek));
    vmenc_kek_free(kek);
    return VMENC_OK;
}

static vmenc_status receiver_checks(vmenc_host *host, const vmenc_migration_receiver_options *o,
                                    vmenc_migration_receiver *r, vm_op *op) {
    mig_handover *h = &r->ho;
    vm_op_add_key(op, h->key_provider, h->kek_id);
    bool vm_enc = h->flags & MIG_HO_VM_ENCRYPTED;
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_MIGRATE_VM, .vm = h->vm_name,
                               .host = host->host_id,
                               .flags = (vm_enc ? VMENC_REQ_VM_ENCRYPTED : 0) |
                                        ((h->flags & MIG_HO_POWERED_ON) ? VMENC_REQ_POWERED_ON : 0)};
    VMENC_GUARD(vm_op_authorize(op, &rq));
    const char *why = NULL;
    vmenc_status s = receiver_mode_check(host, h, o->flags, &why);
    if (s == VMENC_E_DENIED)
        return vm_op_deny(op, s, why);
    if (s != VMENC_OK)
        return vm_op_finish(op, s, why);
    s = receiver_can_open(host, h);
    if (s != VMENC_OK)
        return vm_op_finish(op, s, "this host cannot get the VM's key");
    s = mig_codec_init(&r->codec, (h->flags & MIG_HO_ENCRYPTED) != 0, false, h->key, h->id, h->nonce_base);
    if (s != VMENC_OK)
        return vm_op_finish(op, s, NULL);
    char msg[160];
    audit_text(msg, sizeof(msg), "ready to receive from %s: stream %s, policy mode %s", h->source_host,
             (h->flags & MIG_HO_ENCRYPTED) ? "encrypted" : "plain", mode_name(h->mode));
    return vm_op_finish(op, VMENC_OK, msg);
}

static void receiver_release(vmenc_migration_receiver *r) {
    mig_codec_cleanup(&r->codec);
    mig_handover_cleanup(&r->ho);
    if (r->audit.host != NULL)
        audit_cleanup(&r->audit);
    free(r);
}

vmenc_status vmenc_migration_receiver_new(vmenc_host *host, const vmenc_migration_receiver_options *opts,
                                          vmenc_migration_receiver **out) {
    VMENC_ENSURE(host != NULL && opts != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(opts->struct_size >= RECEIVER_OPTIONS_V1_SIZE, VMENC_E_ABI_VERSION);
    vm_op op;
    vm_op_init(&op, host, opts->principal, "migration.receive", NULL);
    if ((opts->flags & ~VMENC_MIGRATION_NO_ENCRYPTION) != 0 || (opts->read_fn == NULL && opts->fd < 0) ||
        opts->handover == NULL)
        return vm_op_finish(&op, VMENC_E_INVALID_ARG, "bad migration options");
    vmenc_migration_receiver *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return vm_op_finish(&op, VMENC_E_NOMEM, NULL);
    vmenc_status s = mig_handover_parse(opts->handover, opts->handover_len, &r->ho);
    if (s != VMENC_OK) {
        free(r);
        return vm_op_finish(&op, s, "malformed handover");
    }
    audit_text(op.target, sizeof(op.target), "%s/%s", r->ho.vm_name, r->ho.source_host);
    s = receiver_checks(host, opts, r, &op);
    if (s != VMENC_OK) {
        receiver_release(r);
        return s;
    }
    audit_init(&r->audit, host, opts->principal, "migration.receive", r->ho.vm_name, r->ho.source_host);
    snprintf(r->audit.provider, sizeof(r->audit.provider), "%s", r->ho.key_provider);
    snprintf(r->audit.kek_id, sizeof(r->audit.kek_id), "%s", r->ho.kek_id);
    r->fd = opts->fd;
    r->read_fn = opts->read_fn != NULL ? opts->read_fn : fd_read;
    r->io_ctx = opts->read_fn != NULL ? opts->io_ctx : &r->fd;
    *out = r;
    return VMENC_OK;
}

vmenc_status vmenc_migration_receiver_get_ready(vmenc_migration_receiver *r, uint8_t *out, size_t cap) {
    VMENC_ENSURE(r != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(cap >= VMENC_MIGRATION_READY_BYTES, VMENC_E_BUFFER_TOO_SMALL);
    return mig_ready_token(r->ho.key, r->ho.id, out);
}

static const char *failure_text(vmenc_migration_failure f) {
    switch (f) {
    case VMENC_MIGRATION_FAIL_TAMPERED: return "a frame did not authenticate (tampered or foreign)";
    case VMENC_MIGRATION_FAIL_REPLAYED: return "a frame was replayed or duplicated";
    case VMENC_MIGRATION_FAIL_GAP: return "a frame is missing or out of order";
    case VMENC_MIGRATION_FAIL_TRUNCATED: return "the stream ended before its end frame";
    case VMENC_MIGRATION_FAIL_MALFORMED: return "a malformed frame";
    case VMENC_MIGRATION_FAIL_COUNTS: return "the end frame's counts disagree with the stream";
    case VMENC_MIGRATION_FAIL_TRANSPORT: return "the transport failed";
    default: return "failed";
    }
}

vmenc_status vmenc_migration_receive(vmenc_migration_receiver *r, vmenc_migration_chunk *out) {
    VMENC_ENSURE(r != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= CHUNK_V1_SIZE, VMENC_E_ABI_VERSION);
    VMENC_ENSURE(r->state == ST_PREPARED || r->state == ST_STREAMING, VMENC_E_BAD_STATE);
    for (;;) {
        mig_frame_header h;
        vmenc_migration_failure why = VMENC_MIGRATION_FAIL_NONE;
        vmenc_status s = mig_codec_next(&r->codec, r->read_fn, r->io_ctx, &h, &why);
        if (s != VMENC_OK) {
            r->state = ST_FAILED;
            r->failure = why;
            (void)audit_emit(&r->audit, s, failure_text(why));
            return s;
        }
        if (h.type == MIG_FRAME_START) {
            r->state = ST_STREAMING;
            continue;
        }
        out->end = h.type == MIG_FRAME_END;
        out->kind = out->end ? 0 : (vmenc_migration_kind)h.kind;
        out->address = h.address;
        out->data = out->end ? NULL : r->codec.buf + MIG_HEADER_BYTES;
        out->len = out->end ? 0 : h.len;
        if (!out->end)
            return VMENC_OK;
        r->state = ST_DONE;
        char msg[96];
        snprintf(msg, sizeof(msg), "completed: %llu chunks, %llu bytes", (unsigned long long)r->codec.num_chunks,
                 (unsigned long long)r->codec.num_bytes);
        return audit_emit(&r->audit, VMENC_OK, msg);
    }
}

vmenc_status vmenc_migration_receiver_get_info(const vmenc_migration_receiver *r, vmenc_migration_info *out) {
    VMENC_ENSURE(r != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= INFO_V1_SIZE, VMENC_E_ABI_VERSION);
    fill_info(&r->ho, &r->codec, r->state == ST_DONE, r->failure, out);
    return VMENC_OK;
}

void vmenc_migration_receiver_free(vmenc_migration_receiver *r) {
    if (r == NULL)
        return;
    if (r->state == ST_PREPARED || r->state == ST_STREAMING)
        (void)audit_emit(&r->audit, VMENC_E_INTERRUPTED, "abandoned before the end of the stream");
    receiver_release(r);
}
