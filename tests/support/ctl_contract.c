/*
 * tests/support/ctl_contract.c - the control-store contract every backend
 * passes (see ctl_contract.h; the interface: lib/control/control.h and
 * docs/control.md).
 *
 * Safety rule: only the store interface is used here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl_contract.h"

const char ctl_contract_uuid[] = "6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7";
const char ctl_contract_uuid2[] = "0a0b0c0d-0e0f-4011-8213-141516171819";

void ctl_contract_full_record(ctl_vm_record *r, const char *uuid) {
    assert_int_equal(ctl_vm_record_init(r, uuid, "web-01"), VMENC_OK);
    r->facts.encrypted = true;
    memset(r->facts.key_hash, 0x11, CTL_HASH_BYTES);
    r->facts.key_generation = 7;
    snprintf(r->facts.kek_provider, sizeof(r->facts.kek_provider), "kms-a");
    snprintf(r->facts.kek_id, sizeof(r->facts.kek_id), "kek-0001");
    snprintf(r->facts.storage_policy, sizeof(r->facts.storage_policy), "VM Encryption Policy");
    r->facts.num_disks = 2;
    snprintf(r->facts.disks[0].disk_id, sizeof(r->facts.disks[0].disk_id), "scsi0:0");
    r->facts.disks[0].encrypted = true;
    r->facts.disks[0].has_dek_hash = true;
    memset(r->facts.disks[0].dek_hash, 0x22, CTL_HASH_BYTES);
    snprintf(r->facts.disks[1].disk_id, sizeof(r->facts.disks[1].disk_id), "scsi0:1");
    r->op.kind = CTL_OP_REKEY_DEEP;
    r->op.direction = CTL_DIR_ROLLBACK;
    r->op.has_target_key = true;
    memset(r->op.target_key_hash, 0x33, CTL_HASH_BYTES);
    r->op.target_generation = 8;
    r->op.has_target_policy = true;
    snprintf(r->op.target_policy, sizeof(r->op.target_policy), "Datastore Default");
    r->op.num_disks = 1;
    snprintf(r->op.disks[0].disk_id, sizeof(r->op.disks[0].disk_id), "scsi0:0");
    r->op.disks[0].has_target_dek = true;
    memset(r->op.disks[0].target_dek_hash, 0x44, CTL_HASH_BYTES);
    r->op.disks[0].cvt_id = 0x0123456789abcdefULL;
    r->op.disks[0].has_prev = true;
    r->op.disks[0].prev_cvt_id = 42;
    r->op.has_prev_target_key = true;
    memset(r->op.prev_target_key_hash, 0x55, CTL_HASH_BYTES);
    r->revision = 5;
}

void ctl_contract_cas(const ctl_contract_backend *b, ctl_store *s) {
    const char *u1 = ctl_contract_uuid, *u2 = ctl_contract_uuid2;
    ctl_vm_record r, got;
    ctl_contract_full_record(&r, u1);
    assert_int_equal(ctl_store_get_vm(s, u1, &got), VMENC_E_NOT_FOUND);
    uint64_t rev = 0;
    /* creating needs expected revision 0 */
    assert_int_equal(ctl_store_put_vm(s, &r, 3, &rev), VMENC_E_CONFLICT);
    assert_int_equal(ctl_store_get_vm(s, u1, &got), VMENC_E_NOT_FOUND);
    assert_int_equal(ctl_store_put_vm(s, &r, 0, &rev), VMENC_OK);
    uint64_t rev1 = rev;
    assert_true(rev1 > 0);
    if (b->dense_revisions)
        assert_int_equal(rev1, 1);
    assert_int_equal(ctl_store_put_vm(s, &r, 0, &rev), VMENC_E_CONFLICT);
    assert_int_equal(ctl_store_get_vm(s, u1, &got), VMENC_OK);
    assert_int_equal(got.revision, rev1);
    assert_int_equal(got.facts.key_generation, 7);
    assert_int_equal(got.op.kind, CTL_OP_REKEY_DEEP);
    assert_int_equal(got.op.disks[0].cvt_id, 0x0123456789abcdefULL);
    got.facts.key_generation = 8;
    assert_int_equal(ctl_store_put_vm(s, &got, rev1, &rev), VMENC_OK);
    uint64_t rev2 = rev;
    assert_true(rev2 > rev1);
    if (b->dense_revisions)
        assert_int_equal(rev2, 2);
    /* the stale writer loses and changes nothing */
    r.facts.key_generation = 99;
    assert_int_equal(ctl_store_put_vm(s, &r, rev1, &rev), VMENC_E_CONFLICT);
    assert_int_equal(ctl_store_get_vm(s, u1, &got), VMENC_OK);
    assert_int_equal(got.facts.key_generation, 8);
    assert_int_equal(got.revision, rev2);

    /* delete is a CAS too */
    ctl_vm_record r2;
    assert_int_equal(ctl_vm_record_init(&r2, u2, "db-02"), VMENC_OK);
    assert_int_equal(ctl_store_put_vm(s, &r2, 0, &rev), VMENC_OK);
    assert_int_equal(ctl_store_delete_vm(s, u1, rev1), VMENC_E_CONFLICT);
    assert_int_equal(ctl_store_delete_vm(s, u1, 0), VMENC_E_CONFLICT);
    assert_int_equal(ctl_store_get_vm(s, u1, &got), VMENC_OK);
    assert_int_equal(ctl_store_delete_vm(s, u1, rev2), VMENC_OK);
    assert_int_equal(ctl_store_get_vm(s, u1, &got), VMENC_E_NOT_FOUND);
    assert_int_equal(ctl_store_delete_vm(s, u1, rev2), VMENC_E_NOT_FOUND);
    assert_int_equal(ctl_store_get_vm(s, u2, &got), VMENC_OK);
    assert_string_equal(got.facts.name, "db-02");
    /* created again after a delete: from revision 0 */
    assert_int_equal(ctl_store_put_vm(s, &r, rev2, &rev), VMENC_E_CONFLICT);
    assert_int_equal(ctl_store_put_vm(s, &r, 0, &rev), VMENC_OK);
    assert_int_equal(ctl_store_get_vm(s, u1, &got), VMENC_OK);
    assert_int_equal(got.facts.key_generation, 99);
}

static int count_cb(void *arg, const ctl_vm_record *rec) {
    (void)rec;
    (*(int *)arg)++;
    return 0;
}

static int stop_cb(void *arg, const ctl_vm_record *rec) {
    (void)rec;
    (*(int *)arg)++;
    return 1;
}

void ctl_contract_list(const ctl_contract_backend *b, ctl_store *s) {
    (void)b;
    int n = 0;
    assert_int_equal(ctl_store_list_vms(s, count_cb, &n), VMENC_OK);
    assert_int_equal(n, 0);
    ctl_vm_record r;
    uint64_t rev;
    ctl_contract_full_record(&r, ctl_contract_uuid);
    assert_int_equal(ctl_store_put_vm(s, &r, 0, &rev), VMENC_OK);
    ctl_contract_full_record(&r, ctl_contract_uuid2);
    assert_int_equal(ctl_store_put_vm(s, &r, 0, &rev), VMENC_OK);
    assert_int_equal(ctl_store_list_vms(s, count_cb, &n), VMENC_OK);
    assert_int_equal(n, 2);
    /* a callback that stops the walk */
    n = 0;
    assert_int_equal(ctl_store_list_vms(s, stop_cb, &n), VMENC_E_INTERRUPTED);
    assert_int_equal(n, 1);
}

/* A stale writer loses against another real process. */
void ctl_contract_cas_two_processes(const ctl_contract_backend *b, ctl_store *s) {
    const char *u1 = ctl_contract_uuid;
    ctl_vm_record r, mine;
    uint64_t rev;
    ctl_contract_full_record(&r, u1);
    assert_int_equal(ctl_store_put_vm(s, &r, 0, &rev), VMENC_OK);
    assert_int_equal(ctl_store_get_vm(s, u1, &mine), VMENC_OK);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ctl_store *cs = NULL;
        ctl_vm_record c;
        uint64_t rv;
        int ok = b->open(b->ctx, &cs) == VMENC_OK && ctl_store_get_vm(cs, u1, &c) == VMENC_OK;
        c.facts.key_generation = 100;
        ok = ok && ctl_store_put_vm(cs, &c, c.revision, &rv) == VMENC_OK;
        ctl_store_free(cs);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    mine.facts.key_generation = 8;
    assert_int_equal(ctl_vm_end_op(s, &mine, NULL), VMENC_E_CONFLICT);
    ctl_vm_record got;
    assert_int_equal(ctl_store_get_vm(s, u1, &got), VMENC_OK);
    assert_int_equal(got.facts.key_generation, 100);
    assert_true(got.revision > rev);
    if (b->dense_revisions)
        assert_int_equal(got.revision, 2);
}

/* Two processes increment one counter with get + CAS, retrying on
 * conflict: no update is lost. */
#define INCREMENTS 40
static int increment_loop(const ctl_contract_backend *b, int *conflicts) {
    ctl_store *s = NULL;
    if (b->open(b->ctx, &s) != VMENC_OK)
        return 1;
    int rc = 0;
    for (int i = 0; i < INCREMENTS && rc == 0; i++) {
        for (;;) {
            ctl_vm_record c;
            uint64_t rv;
            if (ctl_store_get_vm(s, ctl_contract_uuid, &c) != VMENC_OK) {
                rc = 1;
                break;
            }
            c.facts.key_generation++;
            vmenc_status st = ctl_store_put_vm(s, &c, c.revision, &rv);
            if (st == VMENC_OK)
                break;
            if (st != VMENC_E_CONFLICT) {
                rc = 1;
                break;
            }
            (*conflicts)++;
        }
    }
    ctl_store_free(s);
    return rc;
}

void ctl_contract_cas_concurrent_processes(const ctl_contract_backend *b, ctl_store *s) {
    ctl_vm_record r;
    uint64_t rev;
    ctl_contract_full_record(&r, ctl_contract_uuid);
    r.facts.key_generation = 0;
    assert_int_equal(ctl_store_put_vm(s, &r, 0, &rev), VMENC_OK);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int c = 0;
        _exit(increment_loop(b, &c));
    }
    int conflicts = 0;
    assert_int_equal(increment_loop(b, &conflicts), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ctl_vm_record got;
    assert_int_equal(ctl_store_get_vm(s, ctl_contract_uuid, &got), VMENC_OK);
    assert_int_equal(got.facts.key_generation, 2 * INCREMENTS);
    if (b->dense_revisions)
        assert_int_equal(got.revision, 1 + 2 * INCREMENTS);
}

void ctl_contract_begin_turn_end(const ctl_contract_backend *b, ctl_store *s) {
    const char *u1 = ctl_contract_uuid;
    ctl_vm_record r;
    uint64_t rev;
    assert_int_equal(ctl_vm_record_init(&r, u1, "vm1"), VMENC_OK);
    assert_int_equal(ctl_store_put_vm(s, &r, 0, &rev), VMENC_OK);
    r.revision = rev;
    ctl_vm_op op = {.kind = CTL_OP_ENCRYPT, .has_target_key = true, .target_generation = 1};
    memset(op.target_key_hash, 0x5a, CTL_HASH_BYTES);
    assert_int_equal(ctl_vm_begin_op(s, &r, &op), VMENC_OK);
    assert_true(r.revision > rev);
    if (b->dense_revisions)
        assert_int_equal(r.revision, 2);
    /* durable: another handle sees the intent */
    ctl_store *other = NULL;
    ctl_vm_record seen;
    assert_int_equal(b->open(b->ctx, &other), VMENC_OK);
    assert_int_equal(ctl_store_get_vm(other, u1, &seen), VMENC_OK);
    assert_int_equal(seen.op.kind, CTL_OP_ENCRYPT);
    assert_int_equal(seen.revision, r.revision);
    /* one operation at a time */
    ctl_vm_op other_op = {.kind = CTL_OP_DECRYPT};
    assert_int_equal(ctl_vm_begin_op(s, &r, &other_op), VMENC_E_BAD_STATE);
    assert_int_equal(ctl_vm_turn_op(s, &r, CTL_DIR_ROLLBACK), VMENC_OK);
    assert_int_equal(ctl_store_get_vm(other, u1, &seen), VMENC_OK);
    assert_int_equal(seen.op.direction, CTL_DIR_ROLLBACK);
    ctl_vm_facts facts = r.facts;
    facts.encrypted = true;
    memcpy(facts.key_hash, op.target_key_hash, CTL_HASH_BYTES);
    facts.key_generation = 1;
    snprintf(facts.kek_provider, sizeof(facts.kek_provider), "p");
    snprintf(facts.kek_id, sizeof(facts.kek_id), "k");
    assert_int_equal(ctl_vm_end_op(s, &r, &facts), VMENC_OK);
    assert_int_equal(ctl_store_get_vm(other, u1, &seen), VMENC_OK);
    assert_int_equal(seen.op.kind, CTL_OP_NONE);
    assert_true(seen.facts.encrypted);
    assert_int_equal(seen.facts.key_generation, 1);
    assert_int_equal(seen.revision, r.revision);
    assert_int_equal(ctl_vm_turn_op(s, &r, CTL_DIR_ROLLBACK), VMENC_E_BAD_STATE);
    ctl_store_free(other);
}
