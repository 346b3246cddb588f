/*
 * fuzz/policy_fuzz.c - libFuzzer harness for the policy document loader.
 * Oracle: load -> save -> load -> save; the second load must succeed and the
 * two saves must be byte-identical (save is canonical). A loaded policy is
 * also asked a few questions so the evaluator runs over fuzzed models.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmenc/vmenc.h"

static void ask(vmenc_policy *p) {
    static const char *const names[] = {"vc", "root", "vm1", "vm2", "dc", "h1", "h2", "vms"};
    static const char *const who[] = {"alice", "bob", "ops", "nobody"};
    for (size_t w = 0; w < sizeof(who) / sizeof(who[0]); w++) {
        for (int op = 1; op < VMENC_OP_COUNT_; op++) {
            vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = (vmenc_policy_op)op,
                                       .vm = names[(op + w) % 8], .folder = names[op % 8],
                                       .host = names[5 + (op & 1)], .flags = (uint32_t)op & 7};
            vmenc_policy_decision d = {.struct_size = sizeof(d)};
            vmenc_status st = vmenc_policy_check(p, who[w], &rq, &d);
            if ((st == VMENC_OK) != (st == VMENC_OK && d.allowed == 1))
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vmenc_policy *p1 = NULL, *p2 = NULL;
    vmenc_policy_error err = {.struct_size = sizeof(err)};
    if (vmenc_policy_load_json(data, size, &err, &p1) != VMENC_OK) {
        if (err.path[0] != '$' || err.status == VMENC_OK)
            abort(); /* every rejection names a path */
        return 0;
    }
    uint8_t *s1 = NULL, *s2 = NULL;
    size_t l1 = 0, l2 = 0;
    if (vmenc_policy_save_json(p1, &s1, &l1) != VMENC_OK)
        abort();
    if (vmenc_policy_load_json(s1, l1, &err, &p2) != VMENC_OK)
        abort(); /* what we save we must load */
    if (vmenc_policy_save_json(p2, &s2, &l2) != VMENC_OK)
        abort();
    if (l1 != l2 || memcmp(s1, s2, l1) != 0)
        abort(); /* save is not canonical */
    ask(p2);
    vmenc_policy_buffer_free(s1);
    vmenc_policy_buffer_free(s2);
    vmenc_policy_free(p1);
    vmenc_policy_free(p2);
    return 0;
}
