/*
 * lib/control/etcd/etcd_store.h - the etcd backend of the control store
 * (lib/control/control.h ops): VM authority records kept in etcd under
 * /vmenc/<cluster>/vm/<uuid>, each value the record's canonical bytes
 * (record.c) followed by a BLAKE2b-256 MAC under the store's key (the same
 * MAC rule as the local backend, with its own domain label); the record's
 * revision is the key's etcd mod_revision. Layout and transactions:
 * docs/cluster.md "The etcd client".
 *
 * Safety rule: every change is one etcd transaction comparing the key's
 * mod_revision with the revision the caller read (create: create_revision
 * 0), so no update is lost across hosts; nothing read is believed before
 * its MAC checks out.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_CONTROL_ETCD_ETCD_STORE_H
#define VMENC_LIB_CONTROL_ETCD_ETCD_STORE_H

#include "control/control.h"
#include "net/etcd.h"

#define CTL_ETCD_CLUSTER_NAME_MAX 64u
#define CTL_ETCD_LIST_PAGE 256          /* records per range request when listing */

/* ctl_etcd_new opens the etcd store of cluster |cluster| (1..64 of
 * [A-Za-z0-9._-]) over |client|, which it borrows (the caller frees it
 * after the store). |mac_key| (CTL_MAC_KEY_BYTES) is copied to secure
 * memory. Nothing is contacted yet. VMENC_E_INVALID_ARG, VMENC_E_NOMEM.
 *
 * Errors of the store's calls beside the contract's: those of
 * lib/net/etcd.h (VMENC_E_CONTROL_UNAVAILABLE; VMENC_E_OUTCOME_UNKNOWN for
 * a put or delete whose answer was lost -- get the record again: if it
 * shows the write, it happened). */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_etcd_new(vmenc_etcd *client, const char *cluster,
                                                          const uint8_t *mac_key, size_t key_len, ctl_store **out);

/* ctl_etcd_vm_key writes the etcd key of |uuid|'s record
 * ("/vmenc/<cluster>/vm/<uuid>") into |buf| (|cap| bytes, NUL-terminated).
 * VMENC_E_BUFFER_TOO_SMALL. */
VMENC_INTERNAL VMENC_MUST_CHECK vmenc_status ctl_etcd_vm_key(const char *cluster, const char *uuid, char *buf,
                                                             size_t cap);

#endif /* VMENC_LIB_CONTROL_ETCD_ETCD_STORE_H */
