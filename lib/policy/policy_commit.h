/*
 * lib/policy/policy_commit.h - the policy's commit hook: how the layer that
 * owns the policy's storage (the workspace today, the control store later)
 * makes every change durable at the moment it is made, whichever front end
 * made it. Not installed.
 *
 * Rule: every writer takes the write lock with policy_write_lock (which
 * also brings the model up to date with the stored document, see the
 * refresh hook below), decides and applies its change on that fresh model,
 * calls policy_commit_locked after a successful change with the write lock
 * still held, and leaves through policy_write_unlock, so the hook sees changes in the order they
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

/* policy_refresh_fn is the first half of the storage owner's
 * compare-and-swap, run by policy_write_lock under the write lock before a
 * writer decides anything: take the owner's lock on the stored document
 * (other processes' writers wait there) and, if the stored document is not
 * the one the model was last synchronised with, hand back its canonical
 * JSON in a malloc'd |*out_json| (the policy takes it), else NULL. On
 * failure nothing is held. policy_release_fn, the second half, drops the
 * owner's lock; policy_write_unlock calls it after the commit (or after a
 * writer that changed nothing). Both get the commit hook's |ctx|. */
typedef vmenc_status (*policy_refresh_fn)(void *ctx, uint8_t **out_json, size_t *out_len);
typedef void (*policy_release_fn)(void *ctx);

/* policy_set_refresh_hook installs the pair (NULL, NULL removes them); they
 * share the commit hook's context. Same rules as policy_set_commit_hook. */
VMENC_INTERNAL vmenc_status policy_set_refresh_hook(vmenc_policy *policy, policy_refresh_fn refresh,
                                                    policy_release_fn release);

/* policy_write_lock takes the write lock and runs the refresh hook; a newer
 * stored document replaces the model (and becomes the "last committed"
 * state). Fails with the hook's status (VMENC_E_LOCKED: another writer
 * held the owner's lock too long; VMENC_E_AUTH: the stored document does
 * not verify), the parser's, or VMENC_E_INTERNAL; nothing is held then. */
VMENC_INTERNAL vmenc_status policy_write_lock(vmenc_policy *policy);

/* policy_write_unlock runs the release hook and drops the write lock. */
VMENC_INTERNAL void policy_write_unlock(vmenc_policy *policy);

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
