/*
 * tests/test_workspace_concurrency.c - a model-based test of many processes
 * changing one workspace at once (issue 21 "No lost updates";
 * docs/workspace.md "Many processes"). N real processes (fork, each with its
 * own vmenc_workspace_open) run random operations - create a VM, add a user,
 * grant, revoke, create a key - and log every operation the library
 * acknowledged (returned VMENC_OK). The parent then opens the workspace
 * afresh and checks it against the model built from those logs alone:
 *   - every acknowledged VM, user and key exists, and no VM or user that
 *     was refused does;
 *   - each user's permission on each VM is what the last acknowledged grant
 *     or revoke of that pair left (a pair belongs to one process, so its
 *     order is that process's order);
 *   - names every process races for ("shared-N") are created exactly once:
 *     one process is acknowledged, the others get VMENC_E_EXISTS;
 *   - the audit log verifies as one chain.
 * Nothing else is a documented outcome: any other failure fails the test.
 * Short in CI (4 processes x 30 operations); scripts/concurrency-soak.sh
 * runs it long (VMENC_CONC_PROCS, VMENC_CONC_OPS, VMENC_CONC_SEED).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmenc/vmenc.h"

#define PASS "concurrency test passphrase"
#define ADMIN "alice"
#define MAX_PROCS 64
#define MAX_OPS 100000
#define NUM_SHARED 8
#define LOCK_WAIT_MS 120000u

/* ---- helpers ------------------------------------------------------------------ */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static unsigned env_u(const char *name, unsigned dflt, unsigned max) {
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        return dflt;
    unsigned long n = strtoul(v, NULL, 10);
    return n == 0 ? dflt : n > max ? max : (unsigned)n;
}

static vmenc_status open_ws(const char *dir, vmenc_workspace **out) {
    vmenc_workspace_open_options oo = {.struct_size = sizeof(oo), .passphrase = (const uint8_t *)PASS,
                                       .passphrase_len = strlen(PASS), .lock_timeout_ms = LOCK_WAIT_MS,
                                       .flags = VMENC_WORKSPACE_OPEN_NO_SYNC};
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_status st = vmenc_workspace_open(dir, &oo, &err, out);
    if (st != VMENC_OK)
        fprintf(stderr, "open: %s: %s\n", vmenc_status_name(st), err.message);
    return st;
}

/* ---- one worker process ------------------------------------------------------------ */

typedef struct worker {
    int id;
    unsigned ops;
    unsigned seed;
    vmenc_workspace *ws;
    FILE *log;
    /* what this process made, for picking targets */
    unsigned num_vms, num_users;
    unsigned char granted[64][64]; /* [user][vm] */
} worker;

static unsigned rnd(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (*s >> 8) & 0xffffffu;
}

static vmenc_status do_create_vm(worker *w, const char *name) {
    char home[1024];
    vmenc_status st = vmenc_workspace_vm_home(w->ws, name, home, sizeof(home));
    if (st != VMENC_OK)
        return st;
    vmenc_vm_create_options o = {.struct_size = sizeof(o), .principal = ADMIN, .home_dir = home, .name = name,
                                 .folder = vmenc_workspace_folder(w->ws)};
    vmenc_vm *vm = NULL;
    st = vmenc_vm_create(vmenc_workspace_host(w->ws), &o, &vm);
    vmenc_vm_free(vm);
    return st;
}

static vmenc_status do_edit(worker *w, vmenc_policy_edit_op op, const char *name, const char *object) {
    vmenc_policy_edit e = {.struct_size = sizeof(e), .op = op, .name = name, .object = object,
                           .role = op == VMENC_EDIT_GRANT ? "ReadOnly" : NULL, .propagate = 0};
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    return vmenc_workspace_policy_edit(w->ws, ADMIN, &e, &d);
}

/* one_op runs a random operation; returns 0, or 1 on an undocumented failure. */
static int one_op(worker *w) {
    char a[64], b[64];
    unsigned r = rnd(&w->seed) % 100;
    vmenc_status st;
    if (r < 20 || w->num_vms == 0) {
        if (w->num_vms >= 64)
            return 0;
        snprintf(a, sizeof(a), "w%d-vm%u", w->id, w->num_vms);
        if ((st = do_create_vm(w, a)) != VMENC_OK)
            goto fail;
        fprintf(w->log, "vm %s\n", a);
        w->num_vms++;
    } else if (r < 30) {
        snprintf(a, sizeof(a), "shared-%u", rnd(&w->seed) % NUM_SHARED);
        st = do_create_vm(w, a);
        if (st == VMENC_E_EXISTS)
            fprintf(w->log, "lost %s\n", a);
        else if (st == VMENC_OK)
            fprintf(w->log, "shared %s\n", a);
        else
            goto fail;
    } else if (r < 50 || w->num_users == 0) {
        if (w->num_users >= 64)
            return 0;
        snprintf(a, sizeof(a), "w%d-u%u", w->id, w->num_users);
        if ((st = do_edit(w, VMENC_EDIT_ADD_USER, a, NULL)) != VMENC_OK)
            goto fail;
        fprintf(w->log, "user %s\n", a);
        w->num_users++;
    } else if (r < 85) {
        unsigned u = rnd(&w->seed) % w->num_users, v = rnd(&w->seed) % w->num_vms;
        snprintf(a, sizeof(a), "w%d-u%u", w->id, u);
        snprintf(b, sizeof(b), "w%d-vm%u", w->id, v);
        bool revoke = w->granted[u][v] && rnd(&w->seed) % 2 == 0;
        if ((st = do_edit(w, revoke ? VMENC_EDIT_REVOKE : VMENC_EDIT_GRANT, a, b)) != VMENC_OK)
            goto fail;
        fprintf(w->log, "%s %s %s\n", revoke ? "revoke" : "grant", a, b);
        w->granted[u][v] = !revoke;
    } else {
        char id[VMENC_KMS_KEY_ID_CAP];
        snprintf(a, sizeof(a), "w%d-key", w->id);
        st = vmenc_keymgr_create_kek(vmenc_workspace_keymgr(w->ws), "native", a, LOCK_WAIT_MS, id, sizeof(id));
        if (st != VMENC_OK)
            goto fail;
        fprintf(w->log, "key %s\n", id);
    }
    fflush(w->log);
    return 0;
fail:
    fprintf(stderr, "worker %d: operation %u failed: %s\n", w->id, r, vmenc_status_name(st));
    fprintf(w->log, "error %s\n", vmenc_status_name(st));
    fflush(w->log);
    return 1;
}

static int worker_main(const char *dir, int id, unsigned ops, unsigned seed, const char *log_path) {
    worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return 2;
    w->id = id;
    w->ops = ops;
    w->seed = seed * 7919u + (unsigned)id;
    w->log = fopen(log_path, "w");
    if (w->log == NULL || open_ws(dir, &w->ws) != VMENC_OK)
        return 2;
    int bad = 0;
    for (unsigned i = 0; i < ops; i++)
        bad += one_op(w);
    fclose(w->log);
    vmenc_workspace_free(w->ws);
    free(w);
    return bad ? 1 : 0;
}

/* ---- the model and the check --------------------------------------------------------- */

typedef struct pair_state {
    char user[64], vm[64];
    int granted;
} pair_state;

static int check_against_model(const char *dir, const char *logdir, unsigned procs) {
    vmenc_workspace *ws = NULL;
    if (open_ws(dir, &ws) != VMENC_OK)
        return 1;
    vmenc_policy *p = vmenc_workspace_policy(ws);
    int bad = 0, vms = 0, users = 0, keys = 0, grants = 0;
    unsigned shared_won[NUM_SHARED] = {0}, shared_seen[NUM_SHARED] = {0};
    size_t np = 0, cap = 1024;
    pair_state *pairs = calloc(cap, sizeof(*pairs));
    for (unsigned i = 0; i < procs; i++) {
        char path[1200], line[512];
        snprintf(path, sizeof(path), "%s/w%u.log", logdir, i);
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            fprintf(stderr, "no log %s\n", path);
            bad++;
            continue;
        }
        while (fgets(line, sizeof(line), f) != NULL) {
            char x[64] = "", y[64] = "", z[64] = "";
            int n = sscanf(line, "%63s %63s %63s", x, y, z);
            int has = 0;
            if (n >= 2 && strcmp(x, "vm") == 0) {
                vms++;
                if (vmenc_policy_has_privilege(p, ADMIN, y, VMENC_PRIV_SYSTEM_READ, &has) != VMENC_OK || !has) {
                    fprintf(stderr, "LOST: acknowledged VM %s is not in the inventory\n", y);
                    bad++;
                }
                char vmx[1200];
                struct stat st;
                if (vmenc_workspace_vm_path(ws, y, vmx, sizeof(vmx)) != VMENC_OK || stat(vmx, &st) != 0) {
                    fprintf(stderr, "LOST: acknowledged VM %s has no .vmx\n", y);
                    bad++;
                }
            } else if (n >= 2 && (strcmp(x, "shared") == 0 || strcmp(x, "lost") == 0)) {
                unsigned k = (unsigned)strtoul(y + strlen("shared-"), NULL, 10) % NUM_SHARED;
                shared_seen[k]++;
                shared_won[k] += strcmp(x, "shared") == 0;
            } else if (n >= 2 && strcmp(x, "user") == 0) {
                users++;
                if (vmenc_policy_has_privilege(p, y, "root", VMENC_PRIV_SYSTEM_READ, &has) == VMENC_E_NOT_FOUND) {
                    fprintf(stderr, "LOST: acknowledged user %s is not in the policy\n", y);
                    bad++;
                }
            } else if (n == 3 && (strcmp(x, "grant") == 0 || strcmp(x, "revoke") == 0)) {
                size_t j = 0;
                while (j < np && !(strcmp(pairs[j].user, y) == 0 && strcmp(pairs[j].vm, z) == 0))
                    j++;
                if (j == np) {
                    if (np == cap) {
                        cap *= 2;
                        pairs = realloc(pairs, cap * sizeof(*pairs));
                    }
                    snprintf(pairs[np].user, sizeof(pairs[np].user), "%s", y);
                    snprintf(pairs[np].vm, sizeof(pairs[np].vm), "%s", z);
                    np++;
                }
                pairs[j].granted = strcmp(x, "grant") == 0;
                grants++;
            } else if (n >= 2 && strcmp(x, "key") == 0) {
                keys++;
                vmenc_kek *k = NULL;
                if (vmenc_keymgr_get_kek(vmenc_workspace_keymgr(ws), "native", y, LOCK_WAIT_MS, &k) != VMENC_OK) {
                    fprintf(stderr, "LOST: acknowledged key %s is not in the keystore\n", y);
                    bad++;
                }
                vmenc_kek_free(k);
            } else if (n >= 1 && strcmp(x, "error") == 0) {
                fprintf(stderr, "worker %u logged an undocumented failure: %s", i, line);
                bad++;
            }
        }
        fclose(f);
    }
    for (size_t j = 0; j < np; j++) {
        int has = 0;
        vmenc_status st = vmenc_policy_has_privilege(p, pairs[j].user, pairs[j].vm, VMENC_PRIV_SYSTEM_READ, &has);
        if (st != VMENC_OK || has != pairs[j].granted) {
            fprintf(stderr, "MODEL: %s on %s should be %s, is %s (%s)\n", pairs[j].user, pairs[j].vm,
                    pairs[j].granted ? "granted" : "revoked", has ? "granted" : "absent", vmenc_status_name(st));
            bad++;
        }
    }
    for (unsigned k = 0; k < NUM_SHARED; k++) {
        char name[32];
        snprintf(name, sizeof(name), "shared-%u", k);
        int has = 0;
        vmenc_status st = vmenc_policy_has_privilege(p, ADMIN, name, VMENC_PRIV_SYSTEM_READ, &has);
        bool exists = st == VMENC_OK && has;
        if (shared_won[k] > 1 || (shared_won[k] == 1) != exists) {
            fprintf(stderr, "MODEL: %s created by %u of %u tries, in the inventory: %d\n", name, shared_won[k],
                    shared_seen[k], exists);
            bad++;
        }
    }
    vmenc_audit_verify_result vr;
    memset(&vr, 0, sizeof(vr));
    vr.struct_size = sizeof(vr);
    vmenc_status vs = vmenc_workspace_audit_verify(ws, NULL, &vr);
    if (vs != VMENC_OK) {
        fprintf(stderr, "audit verify: %s\n", vmenc_status_name(vs));
        bad++;
    }
    printf("model: %d VMs, %d users, %d grants/revokes on %zu pairs, %d keys; %d mismatches\n", vms, users,
           grants, np, keys, bad);
    free(pairs);
    vmenc_workspace_free(ws);
    return bad;
}

/* ---- the test ---------------------------------------------------------------------- */

static void test_model(void **state) {
    (void)state;
    unsigned procs = env_u("VMENC_CONC_PROCS", 4, MAX_PROCS);
    unsigned ops = env_u("VMENC_CONC_OPS", 30, MAX_OPS);
    unsigned seed = env_u("VMENC_CONC_SEED", (unsigned)getpid(), UINT32_MAX);
    printf("model test: %u processes x %u operations, seed %u (VMENC_CONC_SEED to repeat)\n", procs, ops, seed);
    char tmpl[] = "/tmp/vmenc-conc-XXXXXX";
    char *root = mkdtemp(tmpl);
    assert_non_null(root);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/ws", root);
    vmenc_workspace_create_options co = {.struct_size = sizeof(co), .passphrase = (const uint8_t *)PASS,
                                         .passphrase_len = strlen(PASS), .admin = ADMIN, .host_id = "esx01",
                                         .kdf_opslimit = 1, .kdf_memlimit_kib = 8192};
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    vmenc_status st = vmenc_workspace_create(dir, &co, &err);
    if (st != VMENC_OK)
        fail_msg("create: %s: %s", vmenc_status_name(st), err.message);
    fflush(stdout);
    fflush(stderr);
    pid_t pids[MAX_PROCS];
    for (unsigned i = 0; i < procs; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char log_path[600];
            snprintf(log_path, sizeof(log_path), "%s/w%u.log", root, i);
            _exit(worker_main(dir, (int)i, ops, seed, log_path));
        }
    }
    int failed = 0;
    for (unsigned i = 0; i < procs; i++) {
        int ws = 0;
        assert_int_equal(waitpid(pids[i], &ws, 0), pids[i]);
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
            fprintf(stderr, "worker %u: %s %d\n", i, WIFEXITED(ws) ? "exit" : "signal",
                    WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
            failed++;
        }
    }
    int mismatches = check_against_model(dir, root, procs);
    if (failed == 0 && mismatches == 0)
        (void)nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    else
        fprintf(stderr, "kept %s for inspection\n", root);
    assert_int_equal(failed, 0);
    assert_int_equal(mismatches, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
