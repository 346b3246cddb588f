/*
 * tests/support/ctl_contract.h - the control-store contract
 * (lib/control/control.h), written once and run against every backend:
 * tests/test_control.c runs it on the local backend, tests/
 * test_control_etcd.c on the etcd one. Compare-and-swap (a stale revision
 * loses and changes nothing, create needs revision 0, delete is a CAS),
 * list, the intent-first helpers, a stale writer losing against another
 * real process, and two processes incrementing one record with no lost
 * update.
 *
 * Safety rule: a contract function only uses the store interface, never a
 * backend's files or keys, so what passes here passes for any backend.
 */
#ifndef VMENC_TESTS_CTL_CONTRACT_H
#define VMENC_TESTS_CTL_CONTRACT_H

#include <stdbool.h>

#include "control/control.h"

typedef struct ctl_contract_backend {
    /* open: another handle on the same store (also called in a forked
     * child, which must not share the parent's connections). */
    vmenc_status (*open)(void *ctx, ctl_store **out);
    void *ctx;
    /* revisions go 1, 2, 3... per record (the local backend); else they
     * only grow (etcd's store-wide revision). */
    bool dense_revisions;
} ctl_contract_backend;

extern const char ctl_contract_uuid[];
extern const char ctl_contract_uuid2[];

/* ctl_contract_full_record: every field used, two disks, an operation in
 * progress. */
void ctl_contract_full_record(ctl_vm_record *r, const char *uuid);

void ctl_contract_cas(const ctl_contract_backend *b, ctl_store *s);
void ctl_contract_list(const ctl_contract_backend *b, ctl_store *s);
void ctl_contract_cas_two_processes(const ctl_contract_backend *b, ctl_store *s);
void ctl_contract_cas_concurrent_processes(const ctl_contract_backend *b, ctl_store *s);
void ctl_contract_begin_turn_end(const ctl_contract_backend *b, ctl_store *s);

#endif
