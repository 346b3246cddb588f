/*
 * lib/control/record.c - the authority record's bytes: one canonical
 * binary form (format: docs/control.md, "The record's bytes"), written
 * with the CBB builder and read with the bounded cursor. Pure: bytes in,
 * a struct out; no I/O, no key, no lock (the backend adds and checks its
 * own MAC around these bytes; fuzz/control_record_fuzz.c drives the
 * parser with a round-trip oracle).
 *
 * Safety rule: the parser accepts only what the encoder writes -- one
 * encoding per record, every string bounded and printable, every flag bit
 * known, every field that a flag says is absent all zero -- so that a
 * record that decodes is one the library could have stored.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "control/control.h"

static const uint8_t k_magic[4] = {'V', 'M', 'C', 'R'};
/* Version 1: no state files. Version 2 appends the state-file list. The
 * encoder writes version 1 for a record without state-file facts, so one
 * record has one encoding and old records read and write back unchanged. */
#define RECORD_VERSION_1 1u
#define RECORD_VERSION 2u
#define RECORD_MAX_BYTES ((size_t)256 << 10)

#define FACT_ENCRYPTED 0x01u
#define DISK_ENCRYPTED 0x01u
#define DISK_HAS_DEK_HASH 0x02u
#define OP_HAS_TARGET_KEY 0x01u
#define OP_HAS_TARGET_POLICY 0x02u
#define OP_HAS_PREV_TARGET_KEY 0x04u
#define DOP_HAS_TARGET_DEK 0x01u
#define DOP_HAS_PREV 0x02u
#define DOP_PREV_HAS_TARGET_DEK 0x04u
#define FILES_ANCHORED 0x01u
#define FILE_HAS_ID 0x01u
#define FILE_HAS_NEXT 0x02u

static const char k_hash_domain[] = "vmenc-control-v1 key record hash\n";

/* ---- field rules (shared by the encoder and the parser) ------------------- */

static bool is_zero(const uint8_t *p, size_t n) {
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* text_ok: at most |max| bytes, strict UTF-8, no control characters. */
static bool text_ok(const char *s, size_t len, size_t max, bool may_be_empty) {
    if (len > max || (len == 0 && !may_be_empty))
        return false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return vmenc_utf8_valid((const uint8_t *)s, len);
}

static bool uuid_ok(const char *s, size_t len) {
    if (len != CTL_UUID_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return true;
}

/* disk_id_ok: 1..CTL_DISK_ID_MAX bytes of [A-Za-z0-9:_.-]. */
static bool disk_id_ok(const char *s, size_t len) {
    if (len == 0 || len > CTL_DISK_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == ':' || c == '_' ||
              c == '.' || c == '-'))
            return false;
    }
    return true;
}

static bool facts_ok(const ctl_vm_facts *f) {
    if (!text_ok(f->name, strnlen(f->name, sizeof(f->name)), CTL_VM_NAME_MAX, false) ||
        !text_ok(f->kek_provider, strnlen(f->kek_provider, sizeof(f->kek_provider)), VMENC_PROVIDER_ALIAS_MAX,
                 true) ||
        !text_ok(f->kek_id, strnlen(f->kek_id, sizeof(f->kek_id)), VMENC_KEY_ID_MAX, true) ||
        !text_ok(f->storage_policy, strnlen(f->storage_policy, sizeof(f->storage_policy)), VMENC_POLICY_NAME_MAX,
                 true))
        return false;
    if (f->encrypted) {
        if (f->kek_provider[0] == '\0' || f->kek_id[0] == '\0')
            return false;
    } else if (!is_zero(f->key_hash, CTL_HASH_BYTES) || f->kek_provider[0] != '\0' || f->kek_id[0] != '\0') {
        return false;
    }
    if (f->num_disks > CTL_MAX_DISKS)
        return false;
    for (size_t i = 0; i < f->num_disks; i++) {
        const ctl_disk_fact *d = &f->disks[i];
        if (!disk_id_ok(d->disk_id, strnlen(d->disk_id, sizeof(d->disk_id))))
            return false;
        if (!d->has_dek_hash && !is_zero(d->dek_hash, CTL_HASH_BYTES))
            return false;
        if (d->has_dek_hash && !d->encrypted)
            return false;
        for (size_t j = 0; j < i; j++)
            if (strcmp(f->disks[j].disk_id, d->disk_id) == 0)
                return false;
    }
    if (f->num_files > CTL_MAX_FILES)
        return false;
    for (size_t i = 0; i < f->num_files; i++) {
        const ctl_file_fact *e = &f->files[i];
        if (e->cls < 1 || e->cls > 4 || (!e->has_id && !e->has_next))
            return false;
        if ((!e->has_id && !is_zero(e->file_id, CTL_FILE_ID_BYTES)) ||
            (!e->has_next && !is_zero(e->next_id, CTL_FILE_ID_BYTES)))
            return false;
        for (size_t j = 0; j < i; j++)
            if (f->files[j].cls == e->cls && f->files[j].index == e->index)
                return false;
    }
    return true;
}

/* has_v2: does the record carry anything version 1 cannot say? */
static bool has_v2(const ctl_vm_facts *f) { return f->files_anchored || f->num_files > 0; }

static bool op_ok(const ctl_vm_op *op) {
    if ((unsigned)op->kind > CTL_OP_KIND_MAX ||
        (op->direction != CTL_DIR_FORWARD && op->direction != CTL_DIR_ROLLBACK))
        return false;
    if (!text_ok(op->target_policy, strnlen(op->target_policy, sizeof(op->target_policy)), VMENC_POLICY_NAME_MAX,
                 true))
        return false;
    if (!op->has_target_key && (!is_zero(op->target_key_hash, CTL_HASH_BYTES) || op->target_generation != 0))
        return false;
    if (!op->has_target_policy && op->target_policy[0] != '\0')
        return false;
    if (!op->has_prev_target_key && !is_zero(op->prev_target_key_hash, CTL_HASH_BYTES))
        return false;
    if (op->num_disks > CTL_MAX_DISKS)
        return false;
    /* No kind with targets is a single write in flight (the VM layer's
     * announcement before it replaces a file); it has no direction. */
    if (op->kind == CTL_OP_NONE && op->direction != CTL_DIR_FORWARD)
        return false;
    for (size_t i = 0; i < op->num_disks; i++) {
        const ctl_disk_op *d = &op->disks[i];
        if (!disk_id_ok(d->disk_id, strnlen(d->disk_id, sizeof(d->disk_id))))
            return false;
        if (!d->has_target_dek && !is_zero(d->target_dek_hash, CTL_HASH_BYTES))
            return false;
        if ((!d->has_prev || !d->prev_has_target_dek) && !is_zero(d->prev_target_dek_hash, CTL_HASH_BYTES))
            return false;
        if (!d->has_prev && (d->prev_has_target_dek || d->prev_cvt_id != 0))
            return false;
        for (size_t j = 0; j < i; j++)
            if (strcmp(op->disks[j].disk_id, d->disk_id) == 0)
                return false;
    }
    return true;
}

static bool record_ok(const ctl_vm_record *r) {
    return uuid_ok(r->uuid, strnlen(r->uuid, sizeof(r->uuid))) && facts_ok(&r->facts) && op_ok(&r->op);
}

/* ---- small helpers ---------------------------------------------------------- */

vmenc_status ctl_vm_record_init(ctl_vm_record *rec, const char *uuid, const char *name) {
    VMENC_ENSURE(rec != NULL && uuid != NULL && name != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(uuid_ok(uuid, strlen(uuid)) && text_ok(name, strlen(name), CTL_VM_NAME_MAX, false),
                 VMENC_E_INVALID_ARG);
    memset(rec, 0, sizeof(*rec));
    memcpy(rec->uuid, uuid, strlen(uuid) + 1);
    memcpy(rec->facts.name, name, strlen(name) + 1);
    return VMENC_OK;
}

vmenc_status ctl_key_record_hash(const vmenc_wrapped_key *wk, uint8_t out[CTL_HASH_BYTES]) {
    VMENC_ENSURE(wk != NULL && out != NULL, VMENC_E_INVALID_ARG);
    uint8_t *bin = NULL;
    size_t len = 0;
    VMENC_GUARD(vmenc_wrapped_key_serialize(wk, &bin, &len));
    crypto_generichash_state st;
    int rc = crypto_generichash_init(&st, NULL, 0, CTL_HASH_BYTES);
    rc |= crypto_generichash_update(&st, (const uint8_t *)k_hash_domain, sizeof(k_hash_domain) - 1);
    rc |= crypto_generichash_update(&st, bin, len);
    rc |= crypto_generichash_final(&st, out, CTL_HASH_BYTES);
    vmenc_buffer_free(bin);
    return rc == 0 ? VMENC_OK : VMENC_E_CRYPTO;
}

int ctl_vm_facts_find_disk(const ctl_vm_facts *f, const char *disk_id) {
    for (size_t i = 0; i < f->num_disks; i++)
        if (strcmp(f->disks[i].disk_id, disk_id) == 0)
            return (int)i;
    return -1;
}

int ctl_vm_facts_find_file(const ctl_vm_facts *f, uint8_t cls, uint32_t index) {
    for (size_t i = 0; i < f->num_files; i++)
        if (f->files[i].cls == cls && f->files[i].index == index)
            return (int)i;
    return -1;
}

int ctl_vm_op_find_disk(const ctl_vm_op *op, const char *disk_id) {
    for (size_t i = 0; i < op->num_disks; i++)
        if (strcmp(op->disks[i].disk_id, disk_id) == 0)
            return (int)i;
    return -1;
}

const char *ctl_op_kind_name(ctl_op_kind kind) {
    switch (kind) {
    case CTL_OP_NONE: return "none";
    case CTL_OP_CREATE: return "create";
    case CTL_OP_ENCRYPT: return "encrypt";
    case CTL_OP_DECRYPT: return "decrypt";
    case CTL_OP_REKEY_SHALLOW: return "rekey-shallow";
    case CTL_OP_REKEY_DEEP: return "rekey-deep";
    case CTL_OP_APPLY_POLICY: return "apply-policy";
    case CTL_OP_ADD_DISK: return "add-disk";
    case CTL_OP_REMOVE_DISK: return "remove-disk";
    case CTL_OP_CLONE: return "clone";
    }
    return "unknown";
}

/* ---- encoder ------------------------------------------------------------------ */

static void add_str8(vmenc_cbb *b, const char *s) {
    size_t m = vmenc_cbb_begin_prefix(b, 1);
    vmenc_cbb_add_bytes(b, (const uint8_t *)s, strlen(s));
    vmenc_cbb_end_prefix(b, m, 1);
}

static void add_str16(vmenc_cbb *b, const char *s) {
    size_t m = vmenc_cbb_begin_prefix(b, 2);
    vmenc_cbb_add_bytes(b, (const uint8_t *)s, strlen(s));
    vmenc_cbb_end_prefix(b, m, 2);
}

vmenc_status ctl_record_encode(const ctl_vm_record *rec, uint8_t **out, size_t *out_len) {
    VMENC_ENSURE(rec != NULL && out != NULL && out_len != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(record_ok(rec), VMENC_E_INVALID_ARG);
    vmenc_cbb b;
    VMENC_GUARD(vmenc_cbb_init(&b, 512));
    vmenc_cbb_set_max(&b, RECORD_MAX_BYTES);
    vmenc_cbb_add_bytes(&b, k_magic, sizeof(k_magic));
    vmenc_cbb_add_u8(&b, has_v2(&rec->facts) ? RECORD_VERSION : RECORD_VERSION_1);
    add_str8(&b, rec->uuid);
    vmenc_cbb_add_u64(&b, rec->revision);

    const ctl_vm_facts *f = &rec->facts;
    add_str8(&b, f->name);
    vmenc_cbb_add_u8(&b, f->encrypted ? FACT_ENCRYPTED : 0);
    vmenc_cbb_add_bytes(&b, f->key_hash, CTL_HASH_BYTES);
    vmenc_cbb_add_u64(&b, f->key_generation);
    add_str8(&b, f->kek_provider);
    add_str16(&b, f->kek_id);
    add_str16(&b, f->storage_policy);
    vmenc_cbb_add_u8(&b, (uint8_t)f->num_disks);
    for (size_t i = 0; i < f->num_disks; i++) {
        const ctl_disk_fact *d = &f->disks[i];
        add_str8(&b, d->disk_id);
        vmenc_cbb_add_u8(&b, (uint8_t)((d->encrypted ? DISK_ENCRYPTED : 0) | (d->has_dek_hash ? DISK_HAS_DEK_HASH : 0)));
        vmenc_cbb_add_bytes(&b, d->dek_hash, CTL_HASH_BYTES);
    }

    const ctl_vm_op *op = &rec->op;
    vmenc_cbb_add_u8(&b, (uint8_t)op->kind);
    vmenc_cbb_add_u8(&b, (uint8_t)op->direction);
    vmenc_cbb_add_u8(&b, (uint8_t)((op->has_target_key ? OP_HAS_TARGET_KEY : 0) |
                                   (op->has_target_policy ? OP_HAS_TARGET_POLICY : 0) |
                                   (op->has_prev_target_key ? OP_HAS_PREV_TARGET_KEY : 0)));
    vmenc_cbb_add_bytes(&b, op->target_key_hash, CTL_HASH_BYTES);
    vmenc_cbb_add_bytes(&b, op->prev_target_key_hash, CTL_HASH_BYTES);
    vmenc_cbb_add_u64(&b, op->target_generation);
    add_str16(&b, op->target_policy);
    vmenc_cbb_add_u8(&b, (uint8_t)op->num_disks);
    for (size_t i = 0; i < op->num_disks; i++) {
        const ctl_disk_op *d = &op->disks[i];
        add_str8(&b, d->disk_id);
        vmenc_cbb_add_u8(&b, (uint8_t)((d->has_target_dek ? DOP_HAS_TARGET_DEK : 0) | (d->has_prev ? DOP_HAS_PREV : 0) |
                                       (d->prev_has_target_dek ? DOP_PREV_HAS_TARGET_DEK : 0)));
        vmenc_cbb_add_bytes(&b, d->target_dek_hash, CTL_HASH_BYTES);
        vmenc_cbb_add_u64(&b, d->cvt_id);
        vmenc_cbb_add_bytes(&b, d->prev_target_dek_hash, CTL_HASH_BYTES);
        vmenc_cbb_add_u64(&b, d->prev_cvt_id);
    }
    if (has_v2(f)) {
        vmenc_cbb_add_u8(&b, f->files_anchored ? FILES_ANCHORED : 0);
        vmenc_cbb_add_u8(&b, (uint8_t)f->num_files);
        for (size_t i = 0; i < f->num_files; i++) {
            const ctl_file_fact *e = &f->files[i];
            vmenc_cbb_add_u8(&b, e->cls);
            vmenc_cbb_add_u32(&b, e->index);
            vmenc_cbb_add_u8(&b, (uint8_t)((e->has_id ? FILE_HAS_ID : 0) | (e->has_next ? FILE_HAS_NEXT : 0)));
            vmenc_cbb_add_bytes(&b, e->file_id, CTL_FILE_ID_BYTES);
            vmenc_cbb_add_bytes(&b, e->next_id, CTL_FILE_ID_BYTES);
        }
    }
    return vmenc_cbb_finish(&b, out, out_len);
}

/* ---- parser ------------------------------------------------------------------- */

/* get_text reads a length-prefixed (|width| 1 or 2) string into |out|
 * (capacity |cap|, NUL added) that passes text_ok with |max|. */
static bool get_text(vmenc_cbs *c, unsigned width, char *out, size_t cap, size_t max, bool may_be_empty) {
    vmenc_cbs s;
    bool ok = width == 1 ? vmenc_cbs_get_u8_length_prefixed(c, &s) : vmenc_cbs_get_u16_length_prefixed(c, &s);
    if (!ok || vmenc_cbs_len(&s) >= cap)
        return false;
    size_t n = vmenc_cbs_len(&s);
    memcpy(out, vmenc_cbs_data(&s), n);
    out[n] = '\0';
    if (memchr(out, '\0', n) != NULL)
        return false;
    return text_ok(out, n, max, may_be_empty);
}

static bool get_disk_id(vmenc_cbs *c, char out[CTL_DISK_ID_MAX + 1]) {
    vmenc_cbs s;
    if (!vmenc_cbs_get_u8_length_prefixed(c, &s) || vmenc_cbs_len(&s) > CTL_DISK_ID_MAX)
        return false;
    size_t n = vmenc_cbs_len(&s);
    memcpy(out, vmenc_cbs_data(&s), n);
    out[n] = '\0';
    return disk_id_ok(out, n);
}

static vmenc_status parse_facts(vmenc_cbs *c, ctl_vm_facts *f) {
    uint8_t flags, n;
    VMENC_ENSURE(get_text(c, 1, f->name, sizeof(f->name), CTL_VM_NAME_MAX, false), VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_get_u8(c, &flags) && (flags & ~FACT_ENCRYPTED) == 0, VMENC_E_PARSE);
    f->encrypted = (flags & FACT_ENCRYPTED) != 0;
    VMENC_ENSURE(vmenc_cbs_copy_bytes(c, f->key_hash, CTL_HASH_BYTES), VMENC_E_TRUNCATED);
    VMENC_ENSURE(vmenc_cbs_get_u64(c, &f->key_generation), VMENC_E_TRUNCATED);
    VMENC_ENSURE(get_text(c, 1, f->kek_provider, sizeof(f->kek_provider), VMENC_PROVIDER_ALIAS_MAX, true),
                 VMENC_E_PARSE);
    VMENC_ENSURE(get_text(c, 2, f->kek_id, sizeof(f->kek_id), VMENC_KEY_ID_MAX, true), VMENC_E_PARSE);
    VMENC_ENSURE(get_text(c, 2, f->storage_policy, sizeof(f->storage_policy), VMENC_POLICY_NAME_MAX, true),
                 VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_get_u8(c, &n) && n <= CTL_MAX_DISKS, VMENC_E_PARSE);
    f->num_disks = n;
    for (size_t i = 0; i < n; i++) {
        ctl_disk_fact *d = &f->disks[i];
        VMENC_ENSURE(get_disk_id(c, d->disk_id), VMENC_E_PARSE);
        VMENC_ENSURE(vmenc_cbs_get_u8(c, &flags) && (flags & ~(DISK_ENCRYPTED | DISK_HAS_DEK_HASH)) == 0,
                     VMENC_E_PARSE);
        d->encrypted = (flags & DISK_ENCRYPTED) != 0;
        d->has_dek_hash = (flags & DISK_HAS_DEK_HASH) != 0;
        VMENC_ENSURE(vmenc_cbs_copy_bytes(c, d->dek_hash, CTL_HASH_BYTES), VMENC_E_TRUNCATED);
    }
    return VMENC_OK;
}

static vmenc_status parse_op(vmenc_cbs *c, ctl_vm_op *op) {
    uint8_t kind, dir, flags, n;
    VMENC_ENSURE(vmenc_cbs_get_u8(c, &kind) && kind <= CTL_OP_KIND_MAX, VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_get_u8(c, &dir) && dir <= CTL_DIR_ROLLBACK, VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_get_u8(c, &flags) &&
                     (flags & ~(OP_HAS_TARGET_KEY | OP_HAS_TARGET_POLICY | OP_HAS_PREV_TARGET_KEY)) == 0,
                 VMENC_E_PARSE);
    op->kind = (ctl_op_kind)kind;
    op->direction = (ctl_op_dir)dir;
    op->has_target_key = (flags & OP_HAS_TARGET_KEY) != 0;
    op->has_target_policy = (flags & OP_HAS_TARGET_POLICY) != 0;
    op->has_prev_target_key = (flags & OP_HAS_PREV_TARGET_KEY) != 0;
    VMENC_ENSURE(vmenc_cbs_copy_bytes(c, op->target_key_hash, CTL_HASH_BYTES), VMENC_E_TRUNCATED);
    VMENC_ENSURE(vmenc_cbs_copy_bytes(c, op->prev_target_key_hash, CTL_HASH_BYTES), VMENC_E_TRUNCATED);
    VMENC_ENSURE(vmenc_cbs_get_u64(c, &op->target_generation), VMENC_E_TRUNCATED);
    VMENC_ENSURE(get_text(c, 2, op->target_policy, sizeof(op->target_policy), VMENC_POLICY_NAME_MAX, true),
                 VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_get_u8(c, &n) && n <= CTL_MAX_DISKS, VMENC_E_PARSE);
    op->num_disks = n;
    for (size_t i = 0; i < n; i++) {
        ctl_disk_op *d = &op->disks[i];
        VMENC_ENSURE(get_disk_id(c, d->disk_id), VMENC_E_PARSE);
        VMENC_ENSURE(vmenc_cbs_get_u8(c, &flags) &&
                         (flags & ~(DOP_HAS_TARGET_DEK | DOP_HAS_PREV | DOP_PREV_HAS_TARGET_DEK)) == 0,
                     VMENC_E_PARSE);
        d->has_target_dek = (flags & DOP_HAS_TARGET_DEK) != 0;
        d->has_prev = (flags & DOP_HAS_PREV) != 0;
        d->prev_has_target_dek = (flags & DOP_PREV_HAS_TARGET_DEK) != 0;
        VMENC_ENSURE(vmenc_cbs_copy_bytes(c, d->target_dek_hash, CTL_HASH_BYTES), VMENC_E_TRUNCATED);
        VMENC_ENSURE(vmenc_cbs_get_u64(c, &d->cvt_id), VMENC_E_TRUNCATED);
        VMENC_ENSURE(vmenc_cbs_copy_bytes(c, d->prev_target_dek_hash, CTL_HASH_BYTES), VMENC_E_TRUNCATED);
        VMENC_ENSURE(vmenc_cbs_get_u64(c, &d->prev_cvt_id), VMENC_E_TRUNCATED);
    }
    return VMENC_OK;
}

/* parse_files reads version 2's state-file list (after the operation). */
static vmenc_status parse_files(vmenc_cbs *c, ctl_vm_facts *f) {
    uint8_t flags, n;
    VMENC_ENSURE(vmenc_cbs_get_u8(c, &flags) && (flags & ~FILES_ANCHORED) == 0, VMENC_E_PARSE);
    f->files_anchored = (flags & FILES_ANCHORED) != 0;
    VMENC_ENSURE(vmenc_cbs_get_u8(c, &n) && n <= CTL_MAX_FILES, VMENC_E_PARSE);
    f->num_files = n;
    for (size_t i = 0; i < n; i++) {
        ctl_file_fact *e = &f->files[i];
        VMENC_ENSURE(vmenc_cbs_get_u8(c, &e->cls), VMENC_E_TRUNCATED);
        VMENC_ENSURE(vmenc_cbs_get_u32(c, &e->index), VMENC_E_TRUNCATED);
        VMENC_ENSURE(vmenc_cbs_get_u8(c, &flags) && (flags & ~(FILE_HAS_ID | FILE_HAS_NEXT)) == 0, VMENC_E_PARSE);
        e->has_id = (flags & FILE_HAS_ID) != 0;
        e->has_next = (flags & FILE_HAS_NEXT) != 0;
        VMENC_ENSURE(vmenc_cbs_copy_bytes(c, e->file_id, CTL_FILE_ID_BYTES), VMENC_E_TRUNCATED);
        VMENC_ENSURE(vmenc_cbs_copy_bytes(c, e->next_id, CTL_FILE_ID_BYTES), VMENC_E_TRUNCATED);
    }
    /* version 2 only for what version 1 cannot say: one encoding */
    VMENC_ENSURE(has_v2(f), VMENC_E_PARSE);
    return VMENC_OK;
}

static vmenc_status parse_record(const uint8_t *data, size_t len, ctl_vm_record *r) {
    VMENC_ENSURE(len <= RECORD_MAX_BYTES, VMENC_E_TOO_LARGE);
    vmenc_cbs c;
    vmenc_cbs_init(&c, data, len);
    uint8_t magic[sizeof(k_magic)], version;
    VMENC_ENSURE(vmenc_cbs_copy_bytes(&c, magic, sizeof(magic)), VMENC_E_TRUNCATED);
    VMENC_ENSURE(memcmp(magic, k_magic, sizeof(magic)) == 0, VMENC_E_BAD_MAGIC);
    VMENC_ENSURE(vmenc_cbs_get_u8(&c, &version), VMENC_E_TRUNCATED);
    VMENC_ENSURE(version == RECORD_VERSION || version == RECORD_VERSION_1, VMENC_E_BAD_VERSION);
    vmenc_cbs u;
    VMENC_ENSURE(vmenc_cbs_get_u8_length_prefixed(&c, &u) && vmenc_cbs_len(&u) == CTL_UUID_LEN,
                 VMENC_E_PARSE);
    memcpy(r->uuid, vmenc_cbs_data(&u), CTL_UUID_LEN);
    r->uuid[CTL_UUID_LEN] = '\0';
    VMENC_ENSURE(uuid_ok(r->uuid, CTL_UUID_LEN), VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_get_u64(&c, &r->revision), VMENC_E_TRUNCATED);
    VMENC_GUARD(parse_facts(&c, &r->facts));
    VMENC_GUARD(parse_op(&c, &r->op));
    if (version == RECORD_VERSION)
        VMENC_GUARD(parse_files(&c, &r->facts));
    VMENC_ENSURE(vmenc_cbs_len(&c) == 0, VMENC_E_TRAILING_DATA);
    /* the cross-field rules the encoder enforces */
    VMENC_ENSURE(record_ok(r), VMENC_E_PARSE);
    return VMENC_OK;
}

vmenc_status ctl_record_decode(const uint8_t *data, size_t len, ctl_vm_record *out) {
    VMENC_ENSURE(out != NULL && (data != NULL || len == 0), VMENC_E_INVALID_ARG);
    memset(out, 0, sizeof(*out));
    vmenc_status s = parse_record(data, len, out);
    if (s != VMENC_OK)
        memset(out, 0, sizeof(*out));
    return s;
}
