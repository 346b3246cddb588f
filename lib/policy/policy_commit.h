/*
 * lib/policy/policy_commit.h - the policy's commit hook: how the layer that
 * owns the policy's storage (the workspace today, the control store later)
 * makes every change durable at the moment it is made, whichever front end
 * made it. Not installed.
 *
 * Rule: every writer calls policy_commit_locked after a successful change,
 * with the write lock still held, so the hook sees changes in the order they
 * were made and a reader never observes a change that is not yet durable
 * (readers wait for the write lock). If the hook fails, the model is put
 * back to the last committed document and the writer returns the hook's
 * status: a failed save changes nothing, in memory or on disk.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_POLICY_COMMIT_H
#define VMENC_LIB_POLICY_COMMIT_H

#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"
#include "vmenc/policy.h"

/* policy_commit_fn receives the canonical document (vmenc_policy_save_json
 * form, |json_len| bytes, not NUL-terminated) of the policy after a change
 * and makes it durable. It runs under the policy's write lock: it must not
 * call back into the policy. */
typedef vmenc_status (*policy_commit_fn)(void *ctx, const uint8_t *json, size_t json_len);

/* policy_set_commit_hook installs |fn| (NULL removes it). The current
 * state becomes the "last committed" state that a failed commit returns
 * to. VMENC_E_NOMEM. Not thread-safe against writers: call it before the
 * policy is shared. */
VMENC_INTERNAL vmenc_status policy_set_commit_hook(vmenc_policy *policy, policy_commit_fn fn, void *ctx);

/* policy_commit_locked serialises the model and calls the hook (nothing to
 * do without one). On the hook's failure the model is replaced by the last
 * committed document. Call with the write lock held, after a change. */
VMENC_INTERNAL vmenc_status policy_commit_locked(vmenc_policy *policy);

#endif /* VMENC_LIB_POLICY_COMMIT_H */
