/*
 * tools/vmenc/plan.h - dry-run plans, confirmation summaries, the
 * authorization pre-check and the policy's names for error messages
 * (plan.c; docs/cli.md "Dry run" and "Confirmation"). Nothing declared
 * here changes anything.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_TOOLS_PLAN_H
#define VMENC_TOOLS_PLAN_H

#include "cli.h"

/* policy_names: the "name" of every object in the policy document's array
 * |section| ("users", "groups", "roles", "storage_policies", "inventory"). */
size_t policy_names(cli *c, const char *section, char names[][VMENC_POLICY_NAME_MAX + 1], size_t cap);
bool policy_has_name(cli *c, const char *section, const char *name);
/* policy_suggest: a name of |section| that |name| probably meant (another
 * case, a prefix), or NULL. */
const char *policy_suggest(cli *c, const char *section, const char *name, char *out, size_t cap);
/* policy_list: "'a', 'b'" of |section|. */
void policy_list(cli *c, const char *section, char *out, size_t cap);
/* fail_storage_policy: when |st| is NOT_FOUND because storage policy
 * |policy| does not exist, reports that with a "did you mean" and returns
 * the exit code; else -1 (not that). */
int fail_storage_policy(cli *c, vmenc_status st, const char *policy, const char *what);
/* kms_known: whether key provider |alias| is configured; |list| gets them all. */
bool kms_known(cli *c, const char *alias, char *list, size_t cap);

/* would_be_denied: the policy would refuse |op| on |vm| for --user (the
 * library then refuses and audits it; no question is asked first). */
bool would_be_denied(cli *c, vmenc_policy_op op, const char *vm, bool encrypted);
/* why_denied: ": 'bob' lacks Cryptographer.Decrypt on 'web'" for a denied
 * |op| (the policy's own answer), else "". */
const char *why_denied(cli *c, vmenc_policy_op op, const char *vm, bool encrypted, char *buf, size_t cap);

typedef struct storage_plan_t {
    vmenc_vm_info info;
    uint32_t num_disks;
    vmenc_disk_info disks[VMENC_VM_MAX_DISKS];
    char policy[VMENC_POLICY_NAME_MAX + 1];
    vmenc_policy_action actions[VMENC_POLICY_MAX_ACTIONS(VMENC_VM_MAX_DISKS)];
    size_t num_actions;
} storage_plan_t;

/* storage_plan: what applying |policy| to |vm| would do (the library's plan). */
vmenc_status storage_plan(cli *c, vmenc_vm *vm, const char *policy, storage_plan_t *p);
/* storage_plan_bytes: the bytes of the disks the plan converts (only the
 * decrypted ones when |decrypting|), how many, and whether the home is. */
uint64_t storage_plan_bytes(const storage_plan_t *p, int *out_disks, bool *out_home, bool decrypting);
void storage_plan_out(cli *c, const storage_plan_t *p, const char *vm_name);
void storage_plan_summary(const storage_plan_t *p, const char *verb, const char *vm_name, char *out, size_t cap);

#endif
