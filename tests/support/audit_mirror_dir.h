/*
 * tests/support/audit_mirror_dir.h - a TEST DOUBLE of the cluster audit
 * mirror (lib/audit/mirror.h): each host's mirrored records in
 * <dir>/<host>.records and its head in <dir>/<host>.head, the
 * compare-and-swap under flock(<dir>/<host>.lock). It stands in for the
 * etcd mirror (helper e2's, lib/control/etcd/) to test the audit layer's
 * append order, catch-up, merge and comparison; it is not a product
 * component and offers no durability or security. Fault injection:
 * fail_appends makes the next N appends fail as an unreachable control
 * plane would.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_TESTS_AUDIT_MIRROR_DIR_H
#define VMENC_TESTS_AUDIT_MIRROR_DIR_H

#include "audit/mirror.h"

typedef struct audit_mirror_dir {
    audit_mirror base; /* first: the mirror the log is given */
    char dir[512];
    int fail_appends;  /* the next N appends fail (VMENC_E_KMS_UNAVAILABLE) */
    int appends;       /* append calls that stored something */
    int conflicts;     /* append calls refused by the compare-and-swap */
} audit_mirror_dir;

/* audit_mirror_dir_init makes |m| a mirror over the existing directory |dir|. */
void audit_mirror_dir_init(audit_mirror_dir *m, const char *dir);

#endif
