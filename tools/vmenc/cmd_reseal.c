/*
 * tools/vmenc/cmd_reseal.c - `vmenc policy reseal`: the recovery for a
 * policy document the workspace refuses to open (its seal does not match:
 * edited by hand, copied from another workspace, written before sealing).
 * The operator vouches for the document as it is; the library checks that
 * --user holds every privilege on the document's root, writes it with a
 * new seal and audits it with the old and new hashes
 * (vmenc_workspace_reseal_policy; docs/workspace.md). It cannot use
 * cli_open: a normal open is exactly what fails.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int policy_reseal(cli *c, args *a) {
    if (!arg_done(c, a))
        return EXIT_USAGE;
    char pass[1024];
    vmenc_workspace_open_options oo;
    int rc = cli_open_options(c, pass, sizeof(pass), &oo);
    if (rc != EXIT_OK)
        return rc;
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_workspace_reseal_result r = {.struct_size = sizeof(r)};
    vmenc_status st = vmenc_workspace_reseal_policy(c->workspace, &oo, cli_principal(c), &err, &r);
    vmenc_memzero(pass, sizeof(pass));
    if (st != VMENC_OK)
        return cli_workspace_fail(c, st, "policy reseal:", &err);
    out_t *o = out_begin(c);
    out_bool(o, "ok", true);
    out_str(o, "user", cli_principal(c));
    out_str(o, "previous_seal", !r.was_sealed ? "none" : r.seal_was_valid ? "valid" : "invalid");
    out_str(o, "old_sha256", r.old_sha256);
    out_str(o, "new_sha256", r.new_sha256);
    out_u64(o, "generation", r.generation);
    out_end(o);
    return EXIT_OK;
}
