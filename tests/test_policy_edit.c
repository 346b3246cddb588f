/*
 * tests/test_policy_edit.c - authorized policy edits (issue 18): the edit
 * rule of vmenc/policy.h as regression tests for each escalation found
 * (bob, a NoCryptoAdmin, granting himself Admin, defining a Cryptographer
 * role, joining a crypto group, unmasking an inherited permission, locking
 * a crypto administrator out), the recorded encryption of a VM in checks,
 * the full matrix actor role x edit verb x role, a property test over
 * random edit sequences by random principals (no one ever holds a privilege
 * that no holder of it granted; NoCryptoAdmins never reach Cryptographer.*),
 * and the workspace's audited edits and read privilege.
 *
 * VMENC_TEST_SEED replays a property run; VMENC_POLICY_EDIT_EDITS sets how
 * many random edits the property runs make (default 100000 each).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "policy/policy_commit.h"
#include "policy/policy_internal.h"
#include "vmenc/vmenc.h"

#define OK(x) assert_int_equal((x), VMENC_OK)

static vmenc_policy_decision dec(void) {
    vmenc_policy_decision d;
    memset(&d, 0, sizeof(d));
    d.struct_size = sizeof(d);
    return d;
}

static int has(vmenc_policy *p, const char *who, const char *obj, vmenc_policy_privilege priv) {
    int out = -1;
    OK(vmenc_policy_has_privilege(p, who, obj, priv, &out));
    return out;
}

/* assert_denied: |st| is a denial naming |priv| on |obj| in the decision
 * and in its sentence. */
#define assert_denied(st, d, priv, obj)                                                  \
    do {                                                                                 \
        if ((st) != VMENC_E_DENIED || (d).missing_privilege != (priv) ||                 \
            strcmp((d).missing_object, (obj)) != 0)                                      \
            fail_msg("expected denied for %s on %s, got %s: %s",                         \
                     vmenc_policy_privilege_name(priv), (obj), vmenc_status_name(st),    \
                     (d).message);                                                       \
        assert_int_equal((d).allowed, 0);                                                \
        assert_int_equal((d).status, VMENC_E_DENIED);                                    \
        assert_non_null(strstr((d).message, vmenc_policy_privilege_name(priv)));         \
        assert_non_null(strstr((d).message, (obj)));                                     \
    } while (0)

/* ---- fixture ----------------------------------------------------------------
 * root
 *   dc (datacenter)
 *     vms (folder)        vm1, vm2 (vm)
 *       secret (folder)   vm3 (vm)
 *     cl (cluster)        h1 (host)
 * alice: Admin on root; bob: NoCryptoAdmin on root; carol: Admin on vm1;
 * group cryptos (Admin on root) with no members; group inner is a member
 * of group outer (Admin on vm2); nobody: no permission. */
static vmenc_policy *fixture(void) {
    vmenc_policy *p = NULL;
    OK(vmenc_policy_new("root", &p));
    OK(vmenc_policy_add_object(p, "dc", VMENC_OBJ_DATACENTER, "root"));
    OK(vmenc_policy_add_object(p, "vms", VMENC_OBJ_FOLDER, "dc"));
    OK(vmenc_policy_add_object(p, "vm1", VMENC_OBJ_VM, "vms"));
    OK(vmenc_policy_add_object(p, "vm2", VMENC_OBJ_VM, "vms"));
    OK(vmenc_policy_add_object(p, "secret", VMENC_OBJ_FOLDER, "vms"));
    OK(vmenc_policy_add_object(p, "vm3", VMENC_OBJ_VM, "secret"));
    OK(vmenc_policy_add_object(p, "cl", VMENC_OBJ_CLUSTER, "dc"));
    OK(vmenc_policy_add_object(p, "h1", VMENC_OBJ_HOST, "cl"));
    static const char *const users[] = {"alice", "bob", "carol", "dave", "nobody"};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(users); i++)
        OK(vmenc_policy_add_user(p, users[i]));
    OK(vmenc_policy_add_group(p, "cryptos"));
    OK(vmenc_policy_add_group(p, "outer"));
    OK(vmenc_policy_add_group(p, "inner"));
    OK(vmenc_policy_add_member(p, "outer", "inner"));
    OK(vmenc_policy_grant(p, "alice", "root", VMENC_ROLE_ADMIN, 1));
    OK(vmenc_policy_grant(p, "bob", "root", VMENC_ROLE_NO_CRYPTO_ADMIN, 1));
    OK(vmenc_policy_grant(p, "carol", "vm1", VMENC_ROLE_ADMIN, 1));
    OK(vmenc_policy_grant(p, "cryptos", "root", VMENC_ROLE_ADMIN, 1));
    OK(vmenc_policy_grant(p, "outer", "vm2", VMENC_ROLE_ADMIN, 1));
    return p;
}

static char *doc_of(vmenc_policy *p) {
    uint8_t *doc = NULL;
    size_t len = 0;
    OK(vmenc_policy_save_json(p, &doc, &len));
    return (char *)doc;
}

/* ---- regression tests: each escalation found in the review ------------------ */

/* `vmenc --user bob policy grant bob Admin` used to succeed. */
static void test_bob_cannot_grant_himself_admin(void **state) {
    (void)state;
    vmenc_policy *p = fixture();
    char *before = doc_of(p);
    vmenc_policy_decision d = dec();
    vmenc_status st = vmenc_policy_grant_as(p, "bob", "bob", "root", VMENC_ROLE_ADMIN, 1, &d);
    assert_denied(st, d, VMENC_PRIV_CRYPTO_ACCESS, "root");
    assert_non_null(strstr(d.message, "bob"));
    char *after = doc_of(p);
    assert_string_equal(before, after); /* nothing changed */
    assert_int_equal(has(p, "bob", "vm1", VMENC_PRIV_CRYPTO_DECRYPT), 0);
    /* Not on a VM either, nor to someone else, nor without propagation. */
    d = dec();
    assert_denied(vmenc_policy_grant_as(p, "bob", "bob", "vm2", VMENC_ROLE_ADMIN, 0, &d), d,
                  VMENC_PRIV_CRYPTO_ACCESS, "vm2");
    d = dec();
    assert_denied(vmenc_policy_grant_as(p, "bob", "dave", "root", VMENC_ROLE_ADMIN, 1, &d), d,
                  VMENC_PRIV_CRYPTO_ACCESS, "root");
    /* What he holds he may grant. */
    d = dec();
    OK(vmenc_policy_grant_as(p, "bob", "dave", "root", VMENC_ROLE_NO_CRYPTO_ADMIN, 1, &d));
    assert_int_equal(d.allowed, 1);
    assert_int_equal(has(p, "dave", "vm1", VMENC_PRIV_VM_POWER_ON), 1);
    vmenc_policy_buffer_free((uint8_t *)before);
    vmenc_policy_buffer_free((uint8_t *)after);
    vmenc_policy_free(p);
}

/* `vmenc --user bob policy role R Cryptographer.Access` used to succeed. */
static void test_bob_cannot_define_crypto_role(void **state) {
    (void)state;
    vmenc_policy *p = fixture();
    vmenc_policy_privilege privs[] = {VMENC_PRIV_SYSTEM_READ, VMENC_PRIV_CRYPTO_DECRYPT};
    vmenc_policy_decision d = dec();
    assert_denied(vmenc_policy_add_role_as(p, "bob", "R", privs, 2, &d), d, VMENC_PRIV_CRYPTO_DECRYPT, "root");
    /* The role does not exist afterwards: granting it fails as unknown. */
    assert_int_equal(vmenc_policy_grant(p, "dave", "root", "R", 1), VMENC_E_NOT_FOUND);
    d = dec();
    OK(vmenc_policy_add_role_as(p, "bob", "R", privs, 1, &d));
    /* alice holds everything and may define any role. */
    d = dec();
    OK(vmenc_policy_add_role_as(p, "alice", "R2", privs, 2, &d));
    /* ModifyRoles is needed even for an empty role. */
    d = dec();
    assert_denied(vmenc_policy_add_role_as(p, "nobody", "R3", NULL, 0, &d), d, VMENC_PRIV_AUTH_MODIFY_ROLES,
                  "root");
    vmenc_policy_free(p);
}

/* Adding a member confers the group's permissions, including those of the
 * groups it is in. */
static void test_bob_cannot_join_crypto_groups(void **state) {
    (void)state;
    vmenc_policy *p = fixture();
    vmenc_policy_decision d = dec();
    assert_denied(vmenc_policy_add_member_as(p, "bob", "cryptos", "bob", &d), d, VMENC_PRIV_CRYPTO_ACCESS,
                  "root");
    d = dec();
    assert_denied(vmenc_policy_add_member_as(p, "bob", "inner", "dave", &d), d, VMENC_PRIV_CRYPTO_ACCESS,
                  "vm2");
    assert_int_equal(has(p, "dave", "vm2", VMENC_PRIV_CRYPTO_ACCESS), 0);
    /* A group with no crypto permission: fine. */
    OK(vmenc_policy_add_group(p, "plain"));
    OK(vmenc_policy_grant(p, "plain", "vms", VMENC_ROLE_READ_ONLY, 1));
    d = dec();
    OK(vmenc_policy_add_member_as(p, "bob", "plain", "dave", &d));
    /* A cycle is refused before anything is evaluated. */
    d = dec();
    assert_int_equal(vmenc_policy_add_member_as(p, "alice", "inner", "outer", &d), VMENC_E_CYCLE);
    d = dec();
    OK(vmenc_policy_add_member_as(p, "alice", "inner", "dave", &d));
    assert_int_equal(has(p, "dave", "vm2", VMENC_PRIV_CRYPTO_ACCESS), 1);
    vmenc_policy_free(p);
}

/* A role rule alone is not enough: revoking a NoAccess (which carries no
 * privilege) can unmask a group's or an ancestor's crypto permission. */
static void test_revoke_cannot_unmask_privileges(void **state) {
    (void)state;
    vmenc_policy *p = fixture();
    OK(vmenc_policy_add_member(p, "cryptos", "dave"));
    OK(vmenc_policy_grant(p, "dave", "root", VMENC_ROLE_NO_ACCESS, 1));
    assert_int_equal(has(p, "dave", "vm1", VMENC_PRIV_CRYPTO_DECRYPT), 0);
    vmenc_policy_decision d = dec();
    assert_denied(vmenc_policy_revoke_as(p, "bob", "dave", "root", &d), d, VMENC_PRIV_CRYPTO_ACCESS, "root");
    assert_non_null(strstr(d.message, "dave"));
    assert_int_equal(has(p, "dave", "vm1", VMENC_PRIV_CRYPTO_DECRYPT), 0);
    /* Nor by replacing the NoAccess with ReadOnly (the group still loses to
     * the user's own permission, so nothing is unmasked): allowed. */
    d = dec();
    OK(vmenc_policy_grant_as(p, "bob", "dave", "root", VMENC_ROLE_READ_ONLY, 1, &d));
    assert_int_equal(has(p, "dave", "vm1", VMENC_PRIV_CRYPTO_DECRYPT), 0);
    vmenc_policy_free(p);
}

/* Removing or weakening a permission that carries privileges the actor
 * lacks is refused: no locking crypto administrators out. */
static void test_no_lockout_of_crypto_admins(void **state) {
    (void)state;
    vmenc_policy *p = fixture();
    vmenc_policy_decision d = dec();
    assert_denied(vmenc_policy_revoke_as(p, "bob", "alice", "root", &d), d, VMENC_PRIV_CRYPTO_ACCESS, "root");
    d = dec();
    assert_denied(vmenc_policy_grant_as(p, "bob", "alice", "root", VMENC_ROLE_NO_ACCESS, 1, &d), d,
                  VMENC_PRIV_CRYPTO_ACCESS, "root");
    /* Shadowing alice's inherited Admin on a VM with an explicit permission
     * there takes her crypto privileges on it away: refused too. */
    d = dec();
    assert_denied(vmenc_policy_grant_as(p, "bob", "alice", "vm1", VMENC_ROLE_READ_ONLY, 0, &d), d,
                  VMENC_PRIV_CRYPTO_ACCESS, "vm1");
    assert_int_equal(has(p, "alice", "vm1", VMENC_PRIV_CRYPTO_DECRYPT), 1);
    /* alice may revoke carol. */
    d = dec();
    OK(vmenc_policy_revoke_as(p, "alice", "carol", "vm1", &d));
    d = dec();
    assert_int_equal(vmenc_policy_revoke_as(p, "alice", "carol", "vm1", &d), VMENC_E_NOT_FOUND);
    vmenc_policy_free(p);
}

/* A propagating grant reaches descendants where the actor is denied. */
static void test_grant_does_not_reach_past_the_actor(void **state) {
    (void)state;
    vmenc_policy *p = fixture();
    OK(vmenc_policy_grant(p, "alice", "secret", VMENC_ROLE_NO_CRYPTO_ADMIN, 1));
    vmenc_policy_decision d = dec();
    assert_denied(vmenc_policy_grant_as(p, "alice", "dave", "vms", VMENC_ROLE_ADMIN, 1, &d), d,
                  VMENC_PRIV_CRYPTO_ACCESS, "secret");
    assert_int_equal(has(p, "dave", "vms", VMENC_PRIV_CRYPTO_ACCESS), 0);
    /* Not propagating: only the folder itself, where alice holds Admin. */
    d = dec();
    OK(vmenc_policy_grant_as(p, "alice", "dave", "vms", VMENC_ROLE_ADMIN, 0, &d));
    assert_int_equal(has(p, "dave", "vms", VMENC_PRIV_CRYPTO_ACCESS), 1);
    assert_int_equal(has(p, "dave", "vm3", VMENC_PRIV_CRYPTO_ACCESS), 0);
    vmenc_policy_free(p);
}

/* carol is Admin of vm1 only: she may delegate there, nowhere else. */
static void test_carol_scoped_to_her_vm(void **state) {
    (void)state;
    vmenc_policy *p = fixture();
    vmenc_policy_decision d = dec();
    OK(vmenc_policy_grant_as(p, "carol", "dave", "vm1", VMENC_ROLE_ADMIN, 1, &d));
    d = dec();
    assert_denied(vmenc_policy_grant_as(p, "carol", "dave", "vm2", VMENC_ROLE_READ_ONLY, 1, &d), d,
                  VMENC_PRIV_AUTH_MODIFY_PERMISSIONS, "vm2");
    d = dec();
    assert_denied(vmenc_policy_add_user_as(p, "carol", "eve", &d), d, VMENC_PRIV_AUTH_MODIFY_PERMISSIONS, "root");
    d = dec();
    assert_denied(vmenc_policy_add_object_as(p, "carol", "h9", VMENC_OBJ_HOST, "dc", &d), d,
                  VMENC_PRIV_HOST_ADD_STANDALONE, "dc");
    d = dec();
    OK(vmenc_policy_add_object_as(p, "bob", "h9", VMENC_OBJ_HOST, "dc", &d));
    d = dec();
    OK(vmenc_policy_add_object_as(p, "bob", "h10", VMENC_OBJ_HOST, "cl", &d));
    d = dec();
    OK(vmenc_policy_add_object_as(p, "bob", "vm9", VMENC_OBJ_VM, "vms", &d));
    d = dec();
    assert_denied(vmenc_policy_add_object_as(p, "nobody", "f9", VMENC_OBJ_FOLDER, "dc", &d), d,
                  VMENC_PRIV_AUTH_MODIFY_PERMISSIONS, "dc");
    /* An actor the policy does not know holds nothing. */
    d = dec();
    assert_denied(vmenc_policy_add_user_as(p, "mallory", "eve", &d), d, VMENC_PRIV_AUTH_MODIFY_PERMISSIONS,
                  "root");
    vmenc_policy_free(p);
}

static void test_storage_policy_and_host_mode(void **state) {
    (void)state;
    vmenc_policy *p = fixture();
    vmenc_storage_policy_spec sp = {.struct_size = sizeof(sp), .name = "plain",
                                    .migration = VMENC_MIGRATION_OPPORTUNISTIC};
    vmenc_policy_decision d = dec();
    assert_denied(vmenc_policy_set_storage_policy_as(p, "bob", &sp, &d), d,
                  VMENC_PRIV_CRYPTO_MANAGE_ENCRYPTION_POLICY, "root");
    d = dec();
    OK(vmenc_policy_set_storage_policy_as(p, "alice", &sp, &d));
    OK(vmenc_policy_set_host_state(p, "h1", VMENC_HOST_PREPARED));
    OK(vmenc_policy_set_host_state(p, "h1", VMENC_HOST_SAFE));
    d = dec();
    assert_denied(vmenc_policy_disable_host_encryption_as(p, "bob", "h1", &d), d, VMENC_PRIV_CRYPTO_REGISTER_HOST,
                  "h1");
    vmenc_host_crypto_state s;
    OK(vmenc_policy_get_host_state(p, "h1", &s));
    assert_int_equal(s, VMENC_HOST_SAFE);
    /* Refused while an encrypted VM runs there, even for alice. */
    OK(vmenc_policy_set_vm_state(p, "vm1", "h1", 1));
    d = dec();
    assert_int_equal(vmenc_policy_disable_host_encryption_as(p, "alice", "h1", &d), VMENC_E_HOST_MODE);
    OK(vmenc_policy_set_vm_state(p, "vm1", "h1", 0));
    d = dec();
    OK(vmenc_policy_disable_host_encryption_as(p, "alice", "h1", &d));
    OK(vmenc_policy_get_host_state(p, "h1", &s));
    assert_int_equal(s, VMENC_HOST_PENDING_INCAPABLE);
    vmenc_policy_free(p);
}

/* `policy check --op export_vm --on ENCRYPTED_VM` for bob answered
 * "allowed" unless the caller said the VM was encrypted. */
static void test_check_uses_recorded_encryption(void **state) {
    (void)state;
    vmenc_policy *p = fixture();
    OK(vmenc_policy_set_host_state(p, "h1", VMENC_HOST_PREPARED));
    OK(vmenc_policy_set_host_state(p, "h1", VMENC_HOST_SAFE));
    OK(vmenc_policy_set_vm_state(p, "vm1", "h1", 1));
    static const vmenc_policy_op ops[] = {VMENC_OP_EXPORT_VM, VMENC_OP_CONSOLE, VMENC_OP_UPLOAD_FILES};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(ops); i++) {
        vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = ops[i], .vm = "vm1"};
        vmenc_policy_decision d = dec();
        assert_denied(vmenc_policy_check(p, "bob", &rq, &d), d, VMENC_PRIV_CRYPTO_ACCESS, "vm1");
        d = dec();
        OK(vmenc_policy_check(p, "alice", &rq, &d));
        /* A plain VM stays plain. */
        rq.vm = "vm2";
        d = dec();
        OK(vmenc_policy_check(p, "bob", &rq, &d));
    }
    /* Decrypting a VM recorded encrypted needs its host in safe mode (key
     * host) whether or not the flag is given. */
    vmenc_policy_request rq = {.struct_size = sizeof(rq), .op = VMENC_OP_SNAPSHOT, .vm = "vm1", .host = "h1"};
    vmenc_policy_decision d = dec();
    OK(vmenc_policy_check(p, "bob", &rq, &d));
    assert_string_equal(d.host, "h1");
    vmenc_policy_free(p);
}

/* The commit hook sees applied edits only. */
static int g_commits;
static vmenc_status count_commit(void *ctx, const uint8_t *json, size_t json_len) {
    (void)ctx;
    (void)json;
    (void)json_len;
    g_commits++;
    return VMENC_OK;
}
static vmenc_status fail_commit(void *ctx, const uint8_t *json, size_t json_len) {
    (void)ctx;
    (void)json;
    (void)json_len;
    return VMENC_E_NO_SPACE;
}

static void test_commit_hook(void **state) {
    (void)state;
    vmenc_policy *p = fixture();
    OK(policy_set_commit_hook(p, count_commit, NULL));
    g_commits = 0;
    vmenc_policy_decision d = dec();
    assert_int_equal(vmenc_policy_grant_as(p, "bob", "bob", "root", VMENC_ROLE_ADMIN, 1, &d), VMENC_E_DENIED);
    assert_int_equal(g_commits, 0);
    OK(vmenc_policy_grant_as(p, "alice", "dave", "vm2", VMENC_ROLE_READ_ONLY, 1, &d));
    assert_int_equal(g_commits, 1);
    /* A failed commit: the edit is undone and reported. */
    OK(policy_set_commit_hook(p, fail_commit, NULL));
    d = dec();
    assert_int_equal(vmenc_policy_add_user_as(p, "alice", "eve", &d), VMENC_E_NO_SPACE);
    assert_int_equal(d.allowed, 0);
    assert_int_equal(d.status, VMENC_E_NO_SPACE);
    OK(policy_set_commit_hook(p, NULL, NULL));
    d = dec();
    OK(vmenc_policy_add_user_as(p, "alice", "eve", &d)); /* eve did not exist */
    vmenc_policy_free(p);
}

static void test_bad_arguments(void **state) {
    (void)state;
    vmenc_policy *p = fixture();
    vmenc_policy_decision d = dec();
    vmenc_policy_edit e = {.struct_size = sizeof(e), .op = VMENC_EDIT_ADD_USER, .name = "x"};
    assert_int_equal(vmenc_policy_edit_as(NULL, "alice", &e, &d), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_edit_as(p, "alice", NULL, &d), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_edit_as(p, "alice", &e, NULL), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_edit_as(p, NULL, &e, &d), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_edit_as(p, "", &e, &d), VMENC_E_INVALID_ARG);
    e.struct_size = 4;
    assert_int_equal(vmenc_policy_edit_as(p, "alice", &e, &d), VMENC_E_ABI_VERSION);
    e.struct_size = sizeof(e);
    e.op = (vmenc_policy_edit_op)0;
    assert_int_equal(vmenc_policy_edit_as(p, "alice", &e, &d), VMENC_E_INVALID_ARG);
    e.op = VMENC_EDIT_COUNT_;
    assert_int_equal(vmenc_policy_edit_as(p, "alice", &e, &d), VMENC_E_INVALID_ARG);
    assert_null(vmenc_policy_edit_op_name(0));
    assert_null(vmenc_policy_edit_op_name(VMENC_EDIT_COUNT_));
    assert_string_equal(vmenc_policy_edit_op_name(VMENC_EDIT_GRANT), "grant");
    for (int op = 1; op < VMENC_EDIT_COUNT_; op++)
        assert_non_null(vmenc_policy_edit_op_name(op));
    assert_string_equal(vmenc_policy_op_name(VMENC_OP_READ_POLICY), "read_policy");
    d = dec();
    assert_int_equal(vmenc_policy_grant_as(p, "alice", "ghost", "root", "Admin", 1, &d), VMENC_E_NOT_FOUND);
    assert_int_equal(vmenc_policy_grant_as(p, "alice", "dave", "root", "Nope", 1, &d), VMENC_E_NOT_FOUND);
    assert_int_equal(vmenc_policy_add_user_as(p, "alice", "bob", &d), VMENC_E_EXISTS);
    assert_int_equal(d.status, VMENC_E_EXISTS);
    assert_int_equal(vmenc_policy_add_member_as(p, "alice", "bob", "dave", &d), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_add_object_as(p, "alice", "r2", VMENC_OBJ_ROOT, "root", &d),
                     VMENC_E_INVALID_ARG);
    vmenc_policy_free(p);
}

/* ---- the matrix: actor role x edit verb x role ------------------------------
 * One fresh policy per cell: root > dc > vms > vm1; "actor" holds the
 * predefined role A on the root (propagating); "t" is a user; group "g"
 * holds the role R on the root. Verbs that carry a role R:
 *   grant    actor grants R to t on vm1
 *   replace  t holds R on vm1; actor grants ReadOnly over it
 *   revoke   t holds R on vm1; actor revokes it
 *   member   actor adds t to g (R on the root)
 *   role     actor defines a role with R's privileges
 * The expectation is written out, not computed: Admin may do all; NoCrypto
 * Admin all but where R carries a Cryptographer privilege (the first of
 * them is missing); ReadOnly and NoAccess lack the Authorization privilege.
 * Custom roles: Crypt = {Cryptographer.Decrypt, System.Read}; Ops =
 * {VirtualMachine.Interact.PowerOn, System.Read}. */
enum { VERB_GRANT, VERB_REPLACE, VERB_REVOKE, VERB_MEMBER, VERB_ROLE, NUM_ROLE_VERBS };
static const char *const k_verb_names[] = {"grant", "replace", "revoke", "member", "role"};
static const char *const k_actor_roles[] = {VMENC_ROLE_ADMIN, VMENC_ROLE_NO_CRYPTO_ADMIN, VMENC_ROLE_READ_ONLY,
                                            VMENC_ROLE_NO_ACCESS};
static const char *const k_granted[] = {VMENC_ROLE_ADMIN, VMENC_ROLE_NO_CRYPTO_ADMIN, VMENC_ROLE_READ_ONLY,
                                        VMENC_ROLE_NO_ACCESS, "Crypt", "Ops"};
#define ALLOW (-1)
#define MP VMENC_PRIV_AUTH_MODIFY_PERMISSIONS
#define MR VMENC_PRIV_AUTH_MODIFY_ROLES
#define CA VMENC_PRIV_CRYPTO_ACCESS
#define CD VMENC_PRIV_CRYPTO_DECRYPT
/* [actor role][verb][granted role] = ALLOW or the missing privilege. */
static const int k_expect[4][NUM_ROLE_VERBS][6] = {
    /* Admin */
    {{ALLOW, ALLOW, ALLOW, ALLOW, ALLOW, ALLOW},
     {ALLOW, ALLOW, ALLOW, ALLOW, ALLOW, ALLOW},
     {ALLOW, ALLOW, ALLOW, ALLOW, ALLOW, ALLOW},
     {ALLOW, ALLOW, ALLOW, ALLOW, ALLOW, ALLOW},
     {ALLOW, ALLOW, ALLOW, ALLOW, ALLOW, ALLOW}},
    /* NoCryptoAdmin */
    {{CA, ALLOW, ALLOW, ALLOW, CD, ALLOW},
     {CA, ALLOW, ALLOW, ALLOW, CD, ALLOW},
     {CA, ALLOW, ALLOW, ALLOW, CD, ALLOW},
     {CA, ALLOW, ALLOW, ALLOW, CD, ALLOW},
     {CA, ALLOW, ALLOW, ALLOW, CD, ALLOW}},
    /* ReadOnly */
    {{MP, MP, MP, MP, MP, MP},
     {MP, MP, MP, MP, MP, MP},
     {MP, MP, MP, MP, MP, MP},
     {MP, MP, MP, MP, MP, MP},
     {MR, MR, MR, MR, MR, MR}},
    /* NoAccess */
    {{MP, MP, MP, MP, MP, MP},
     {MP, MP, MP, MP, MP, MP},
     {MP, MP, MP, MP, MP, MP},
     {MP, MP, MP, MP, MP, MP},
     {MR, MR, MR, MR, MR, MR}},
};

/* The verbs without a role: [actor role][verb]. */
enum { V_USER, V_GROUP, V_HOST, V_VM, V_FOLDER, V_STORAGE, V_HOST_OFF, NUM_PLAIN_VERBS };
static const char *const k_plain_names[] = {"add_user", "add_group", "add_host", "add_vm", "add_folder",
                                            "storage_policy", "disable_host"};
static const int k_expect_plain[4][NUM_PLAIN_VERBS] = {
    {ALLOW, ALLOW, ALLOW, ALLOW, ALLOW, ALLOW, ALLOW},
    {ALLOW, ALLOW, ALLOW, ALLOW, ALLOW, VMENC_PRIV_CRYPTO_MANAGE_ENCRYPTION_POLICY,
     VMENC_PRIV_CRYPTO_REGISTER_HOST},
    {MP, MP, VMENC_PRIV_HOST_ADD_STANDALONE, VMENC_PRIV_VM_CREATE, MP, VMENC_PRIV_STORAGE_PROFILE_UPDATE,
     VMENC_PRIV_CRYPTO_REGISTER_HOST},
    {MP, MP, VMENC_PRIV_HOST_ADD_STANDALONE, VMENC_PRIV_VM_CREATE, MP, VMENC_PRIV_STORAGE_PROFILE_UPDATE,
     VMENC_PRIV_CRYPTO_REGISTER_HOST},
};

static vmenc_policy *matrix_policy(const char *actor_role) {
    vmenc_policy *p = NULL;
    OK(vmenc_policy_new("root", &p));
    OK(vmenc_policy_add_object(p, "dc", VMENC_OBJ_DATACENTER, "root"));
    OK(vmenc_policy_add_object(p, "vms", VMENC_OBJ_FOLDER, "dc"));
    OK(vmenc_policy_add_object(p, "vm1", VMENC_OBJ_VM, "vms"));
    OK(vmenc_policy_add_object(p, "h1", VMENC_OBJ_HOST, "dc"));
    OK(vmenc_policy_set_host_state(p, "h1", VMENC_HOST_PREPARED));
    vmenc_policy_privilege crypt[] = {VMENC_PRIV_CRYPTO_DECRYPT, VMENC_PRIV_SYSTEM_READ};
    vmenc_policy_privilege ops[] = {VMENC_PRIV_VM_POWER_ON, VMENC_PRIV_SYSTEM_READ};
    OK(vmenc_policy_add_role(p, "Crypt", crypt, 2));
    OK(vmenc_policy_add_role(p, "Ops", ops, 2));
    OK(vmenc_policy_add_user(p, "actor"));
    OK(vmenc_policy_add_user(p, "t"));
    OK(vmenc_policy_add_group(p, "g"));
    OK(vmenc_policy_grant(p, "actor", "root", actor_role, 1));
    return p;
}

static void check_cell(vmenc_status st, const vmenc_policy_decision *d, int want, const char *what) {
    if (want == ALLOW) {
        if (st != VMENC_OK || d->allowed != 1)
            fail_msg("%s: expected allowed, got %s: %s", what, vmenc_status_name(st), d->message);
    } else if (st != VMENC_E_DENIED || (int)d->missing_privilege != want || d->allowed != 0) {
        fail_msg("%s: expected denied for %s, got %s (%s): %s", what, vmenc_policy_privilege_name(want),
                 vmenc_status_name(st), vmenc_policy_privilege_name(d->missing_privilege) ?: "-", d->message);
    }
}

static void test_matrix(void **state) {
    (void)state;
    size_t cells = 0;
    for (int a = 0; a < 4; a++) {
        for (int v = 0; v < NUM_ROLE_VERBS; v++) {
            for (int r = 0; r < 6; r++) {
                vmenc_policy *p = matrix_policy(k_actor_roles[a]);
                const char *R = k_granted[r];
                vmenc_policy_decision d = dec();
                vmenc_status st;
                switch (v) {
                case VERB_GRANT: st = vmenc_policy_grant_as(p, "actor", "t", "vm1", R, 1, &d); break;
                case VERB_REPLACE:
                    OK(vmenc_policy_grant(p, "t", "vm1", R, 1));
                    st = vmenc_policy_grant_as(p, "actor", "t", "vm1", VMENC_ROLE_READ_ONLY, 1, &d);
                    break;
                case VERB_REVOKE:
                    OK(vmenc_policy_grant(p, "t", "vm1", R, 1));
                    st = vmenc_policy_revoke_as(p, "actor", "t", "vm1", &d);
                    break;
                case VERB_MEMBER:
                    OK(vmenc_policy_grant(p, "g", "root", R, 1));
                    st = vmenc_policy_add_member_as(p, "actor", "g", "t", &d);
                    break;
                default: {
                    /* The privileges of R, listed. */
                    vmenc_policy_privilege privs[VMENC_PRIV_COUNT_];
                    size_t n = 0;
                    OK(vmenc_policy_add_user(p, "probe"));
                    OK(vmenc_policy_grant(p, "probe", "root", R, 1));
                    for (int pv = 0; pv < VMENC_PRIV_COUNT_; pv++)
                        if (has(p, "probe", "root", (vmenc_policy_privilege)pv))
                            privs[n++] = (vmenc_policy_privilege)pv;
                    st = vmenc_policy_add_role_as(p, "actor", "NewRole", privs, n, &d);
                    break;
                }
                }
                char what[160];
                snprintf(what, sizeof(what), "actor %s, %s %s", k_actor_roles[a], k_verb_names[v], R);
                check_cell(st, &d, k_expect[a][v][r], what);
                cells++;
                vmenc_policy_free(p);
            }
        }
        for (int v = 0; v < NUM_PLAIN_VERBS; v++) {
            vmenc_policy *p = matrix_policy(k_actor_roles[a]);
            vmenc_policy_decision d = dec();
            vmenc_storage_policy_spec sp = {.struct_size = sizeof(sp), .name = "sp",
                                            .migration = VMENC_MIGRATION_OPPORTUNISTIC};
            vmenc_status st;
            switch (v) {
            case V_USER: st = vmenc_policy_add_user_as(p, "actor", "u2", &d); break;
            case V_GROUP: st = vmenc_policy_add_group_as(p, "actor", "g2", &d); break;
            case V_HOST: st = vmenc_policy_add_object_as(p, "actor", "h2", VMENC_OBJ_HOST, "dc", &d); break;
            case V_VM: st = vmenc_policy_add_object_as(p, "actor", "vm2", VMENC_OBJ_VM, "vms", &d); break;
            case V_FOLDER: st = vmenc_policy_add_object_as(p, "actor", "f2", VMENC_OBJ_FOLDER, "dc", &d); break;
            case V_STORAGE: st = vmenc_policy_set_storage_policy_as(p, "actor", &sp, &d); break;
            default: st = vmenc_policy_disable_host_encryption_as(p, "actor", "h1", &d); break;
            }
            char what[160];
            snprintf(what, sizeof(what), "actor %s, %s", k_actor_roles[a], k_plain_names[v]);
            check_cell(st, &d, k_expect_plain[a][v], what);
            cells++;
            vmenc_policy_free(p);
        }
    }
    print_message("edit matrix: %zu cells\n", cells);
}

/* ---- the property -------------------------------------------------------------- */

static uint64_t g_rng;
static uint32_t rnd(uint32_t n) { /* xorshift64*, reproducible from the seed */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (uint32_t)((g_rng * 2685821657736338717ull) >> 33) % n;
}

static uint64_t seed_from_env(void) {
    const char *env = getenv("VMENC_TEST_SEED");
    return env ? strtoull(env, NULL, 0) : 0x2545f4914f6cdd1dull;
}

static size_t edits_from_env(size_t dflt) {
    const char *env = getenv("VMENC_POLICY_EDIT_EDITS");
    return env ? (size_t)strtoull(env, NULL, 0) : dflt;
}

/* Name pools: the property's edits draw from these (existing or not). */
static const char *const k_objs[] = {"root", "dc", "vms", "vm1", "vm2", "secret", "vm3", "cl", "h1",
                                     "n0", "n1", "n2", "n3", "n4", "n5"};
static const char *const k_prns[] = {"alice", "bob", "carol", "dave", "nobody", "cryptos", "outer", "inner",
                                     "p0", "p1", "p2", "p3", "mallory"};
static const char *const k_roles[] = {VMENC_ROLE_ADMIN, VMENC_ROLE_NO_CRYPTO_ADMIN, VMENC_ROLE_READ_ONLY,
                                      VMENC_ROLE_NO_ACCESS, "r0", "r1", "r2", "r3"};
static const vmenc_policy_object_type k_new_types[] = {VMENC_OBJ_FOLDER, VMENC_OBJ_VM, VMENC_OBJ_HOST,
                                                       VMENC_OBJ_RESOURCE_POOL};
#define NPRIV VMENC_PRIV_COUNT_

/* A random edit; |privs| is the storage for a role's privileges. With
 * |p|, revokes and half the grants aim at a permission that exists, so
 * most of them reach the decision rather than failing on a name. */
static vmenc_policy_edit random_edit(vmenc_policy *p, vmenc_policy_privilege *privs,
                                     vmenc_storage_policy_spec *sp) {
    vmenc_policy_edit e = {.struct_size = sizeof(e)};
    e.op = (vmenc_policy_edit_op)(1 + rnd(VMENC_EDIT_COUNT_ - 1));
    /* Grants, revokes and members are what can escalate: draw them more. */
    if (rnd(2))
        e.op = (vmenc_policy_edit_op[]){VMENC_EDIT_GRANT, VMENC_EDIT_REVOKE, VMENC_EDIT_ADD_MEMBER}[rnd(3)];
    switch (e.op) {
    case VMENC_EDIT_ADD_ROLE: {
        e.name = k_roles[4 + rnd(4)];
        size_t n = 0;
        uint32_t density = 1 + rnd(8); /* from a few privileges to almost all */
        for (int pv = 0; pv < NPRIV; pv++)
            if (rnd(8) < density)
                privs[n++] = (vmenc_policy_privilege)pv;
        e.privs = privs;
        e.num_privs = n;
        break;
    }
    case VMENC_EDIT_ADD_USER:
    case VMENC_EDIT_ADD_GROUP: e.name = k_prns[8 + rnd(4)]; break;
    case VMENC_EDIT_ADD_MEMBER:
        /* Mostly a group: cryptos, outer, inner or a new one. */
        e.name = rnd(4) ? k_prns[5 + rnd(3)] : k_prns[rnd(VMENC_ARRAY_LEN(k_prns))];
        e.member = k_prns[rnd(VMENC_ARRAY_LEN(k_prns))];
        break;
    case VMENC_EDIT_ADD_OBJECT:
        e.name = k_objs[9 + rnd(6)];
        e.object = k_objs[rnd(VMENC_ARRAY_LEN(k_objs))];
        e.object_type = k_new_types[rnd(4)];
        break;
    case VMENC_EDIT_GRANT:
        e.role = k_roles[rnd(VMENC_ARRAY_LEN(k_roles))];
        e.propagate = (int)rnd(2);
        /* fall through */
    case VMENC_EDIT_REVOKE:
        e.name = k_prns[rnd(VMENC_ARRAY_LEN(k_prns))];
        e.object = k_objs[rnd(VMENC_ARRAY_LEN(k_objs))];
        if (p != NULL && (e.op == VMENC_EDIT_REVOKE || rnd(2))) {
            const model *m = p->m;
            uint32_t o = rnd(m->num_objects);
            if (m->hot[o].num_perms != 0) {
                const perm *pm = &m->hot[o].perms[rnd(m->hot[o].num_perms)];
                e.name = m->principals[pm->principal].name;
                e.object = m->objects[o].name;
            }
        }
        break;
    case VMENC_EDIT_SET_STORAGE_POLICY:
        *sp = (vmenc_storage_policy_spec){.struct_size = sizeof(*sp), .name = "sp",
                                          .migration = VMENC_MIGRATION_OPPORTUNISTIC};
        e.storage_policy = sp;
        break;
    default: e.name = "h1"; break;
    }
    return e;
}

/* The effective privileges of every principal on every object. */
typedef struct snapshot {
    uint32_t np, no;
    privset *eff; /* [principal * no + object] */
} snapshot;

static void snap(vmenc_policy *p, snapshot *s) {
    const model *m = p->m;
    s->np = m->num_principals;
    s->no = m->num_objects;
    s->eff = realloc(s->eff, (size_t)s->np * s->no * sizeof(privset) + 1);
    assert_non_null(s->eff);
    for (uint32_t u = 0; u < s->np; u++)
        for (uint32_t o = 0; o < s->no; o++)
            model_effective(m, u, o, &s->eff[(size_t)u * s->no + o]);
}

static bool any_crypto(const privset *s) {
    for (int pv = 0; pv < NPRIV; pv++)
        if (privset_has(s, pv) && strncmp(vmenc_policy_privilege_name(pv), "Cryptographer.", 14) == 0)
            return true;
    return false;
}

typedef struct prop_stats {
    size_t applied, denied, failed;
} prop_stats;

/* run_property makes |num_edits| random edits in rounds from a fresh
 * fixture; actors are drawn from |actors| (NULL: any pool name). After every
 * edit: a refused edit changed nothing; for every principal and object that
 * existed before, every privilege gained or lost is one the actor held
 * there before; a new principal holds nothing; a denial names a privilege
 * the actor really lacked on the object it names. With |crypto_holders|,
 * no one else ever holds a Cryptographer privilege anywhere. */
static prop_stats run_property(size_t num_edits, const char *const *actors, size_t num_actors,
                               const char *const *crypto_holders, size_t num_holders) {
    prop_stats ps = {0, 0, 0};
    snapshot before = {0, 0, NULL}, after = {0, 0, NULL};
    vmenc_policy *p = NULL;
    for (size_t i = 0; i < num_edits; i++) {
        if (i % 1000 == 0) { /* a new round */
            vmenc_policy_free(p);
            p = fixture();
            OK(vmenc_policy_add_member(p, "cryptos", "alice"));
        }
        vmenc_policy_privilege privs[NPRIV];
        vmenc_storage_policy_spec sp;
        vmenc_policy_edit e = random_edit(p, privs, &sp);
        /* Without a list, alice (Admin) acts a third of the time, so many
         * edits apply and the states explored grow complex. */
        const char *actor = actors      ? actors[rnd((uint32_t)num_actors)]
                            : rnd(3) == 0 ? "alice"
                                          : k_prns[rnd(VMENC_ARRAY_LEN(k_prns))];
        snap(p, &before);
        const model *mb = p->m;
        uint32_t a = model_find_principal(mb, actor);
        /* The actor's privileges before, per object. */
        privset mine[32];
        assert_true(before.no <= VMENC_ARRAY_LEN(mine));
        for (uint32_t o = 0; o < before.no; o++)
            model_effective(mb, a, o, &mine[o]);
        /* On a sample, the whole document too. */
        char *doc_before = (i % 16) == 0 ? doc_of(p) : NULL;
        vmenc_policy_decision d = dec();
        vmenc_status st = vmenc_policy_edit_as(p, actor, &e, &d);
        if (st == VMENC_E_DENIED) {
            ps.denied++;
            /* The decision names a privilege the actor lacked there. */
            uint32_t o = model_find_object(p->m, d.missing_object);
            assert_true(o != INDEX_NONE && o < before.no);
            assert_true((int)d.missing_privilege >= 0 && d.missing_privilege < NPRIV);
            if (privset_has(&mine[o], d.missing_privilege))
                fail_msg("edit %zu: denial names %s on %s, which %s holds: %s", i,
                         vmenc_policy_privilege_name(d.missing_privilege), d.missing_object, actor, d.message);
        } else if (st == VMENC_OK) {
            ps.applied++;
            assert_int_equal(d.allowed, 1);
        } else {
            ps.failed++;
            assert_int_equal(d.allowed, 0);
        }
        if (doc_before != NULL) {
            /* A refused edit changed nothing at all (the snapshot below
             * covers every privilege on every sample). */
            char *doc_after = doc_of(p);
            if (st != VMENC_OK && strcmp(doc_before, doc_after) != 0)
                fail_msg("edit %zu (%s by %s) was refused (%s) but changed the document", i,
                         vmenc_policy_edit_op_name(e.op), actor, vmenc_status_name(st));
            vmenc_policy_buffer_free((uint8_t *)doc_before);
            vmenc_policy_buffer_free((uint8_t *)doc_after);
        }
        snap(p, &after);
        assert_true(after.np >= before.np && after.no >= before.no);
        if (st != VMENC_OK)
            assert_true(after.np == before.np && after.no == before.no);
        for (uint32_t u = 0; u < after.np; u++) {
            for (uint32_t o = 0; o < after.no; o++) {
                const privset *na = &after.eff[(size_t)u * after.no + o];
                if (crypto_holders != NULL && any_crypto(na)) {
                    bool holder = false;
                    for (size_t h = 0; h < num_holders; h++)
                        holder |= strcmp(p->m->principals[u].name, crypto_holders[h]) == 0;
                    if (!holder)
                        fail_msg("edit %zu (%s by %s): %s holds a Cryptographer privilege on %s", i,
                                 vmenc_policy_edit_op_name(e.op), actor, p->m->principals[u].name,
                                 p->m->objects[o].name);
                }
                if (u >= before.np) {
                    if (memcmp(na, &(privset){{0}}, sizeof(*na)) != 0)
                        fail_msg("edit %zu: new principal %s holds privileges on %s", i, p->m->principals[u].name,
                                 p->m->objects[o].name);
                    continue;
                }
                if (o >= before.no)
                    continue; /* a new object inherits; see docs/policy.md */
                const privset *nb = &before.eff[(size_t)u * before.no + o];
                for (int pv = 0; pv < NPRIV; pv++) {
                    bool was = privset_has(nb, pv), is = privset_has(na, pv);
                    if (was == is)
                        continue;
                    if (st != VMENC_OK)
                        fail_msg("edit %zu (%s by %s) was refused (%s) but changed %s of %s on %s", i,
                                 vmenc_policy_edit_op_name(e.op), actor, vmenc_status_name(st),
                                 vmenc_policy_privilege_name(pv), p->m->principals[u].name, p->m->objects[o].name);
                    if (!privset_has(&mine[o], pv))
                        fail_msg("edit %zu (%s by %s): %s %s %s on %s, which %s did not hold there", i,
                                 vmenc_policy_edit_op_name(e.op), actor, p->m->principals[u].name,
                                 is ? "gained" : "lost", vmenc_policy_privilege_name(pv), p->m->objects[o].name,
                                 actor);
                }
            }
        }
    }
    free(before.eff);
    free(after.eff);
    vmenc_policy_free(p);
    return ps;
}

static void test_property_no_escalation(void **state) {
    (void)state;
    uint64_t seed = seed_from_env();
    g_rng = seed;
    size_t n = edits_from_env(100000);
    print_message("property seed 0x%llx, %zu edits (VMENC_TEST_SEED, VMENC_POLICY_EDIT_EDITS)\n",
                  (unsigned long long)seed, n);
    prop_stats ps = run_property(n, NULL, 0, NULL, 0);
    print_message("property: %zu applied, %zu denied, %zu failed\n", ps.applied, ps.denied, ps.failed);
    /* Not vacuous: both outcomes occur. */
    assert_true(ps.applied > 0 && ps.denied > 0);
}

/* alice (Admin on root, in cryptos), carol (Admin on vm1) and the groups
 * cryptos, outer (Admin) and inner (in outer) hold Cryptographer privileges; everyone who
 * acts lacks them. No sequence of their edits gives anyone else one. */
static void test_property_crypto_stays_with_holders(void **state) {
    (void)state;
    uint64_t seed = seed_from_env() ^ 0x5bd1e995ull;
    g_rng = seed;
    size_t n = edits_from_env(100000);
    static const char *const actors[] = {"bob", "dave", "nobody", "p0", "p1", "mallory"};
    /* inner is a member of outer, so it holds outer's Admin on vm2. */
    static const char *const holders[] = {"alice", "carol", "cryptos", "outer", "inner"};
    print_message("property seed 0x%llx, %zu edits by principals without Cryptographer.*\n",
                  (unsigned long long)seed, n);
    prop_stats ps = run_property(n, actors, VMENC_ARRAY_LEN(actors), holders, VMENC_ARRAY_LEN(holders));
    print_message("property: %zu applied, %zu denied, %zu failed\n", ps.applied, ps.denied, ps.failed);
    assert_true(ps.applied > 0 && ps.denied > 0);
}

/* ---- the workspace: audited edits, the read privilege ------------------------- */

typedef struct audit_count {
    size_t success, denied, failed, other;
    size_t denied_named; /* denials whose reason names a privilege */
    size_t reads, read_denied;
} audit_count;

static vmenc_status count_events(void *ctx, const vmenc_audit_event *ev, const char *json, size_t json_len) {
    (void)json;
    (void)json_len;
    audit_count *c = ctx;
    if (strncmp(ev->operation, "policy.", 7) == 0 && strcmp(ev->operation, "policy.show") != 0) {
        if (ev->outcome == VMENC_AUDIT_SUCCESS)
            c->success++;
        else if (ev->outcome == VMENC_AUDIT_DENIED) {
            c->denied++;
            for (int pv = 0; pv < NPRIV; pv++)
                if (ev->reason != NULL && strstr(ev->reason, vmenc_policy_privilege_name(pv)) != NULL) {
                    c->denied_named++;
                    break;
                }
        } else
            c->failed++;
    } else if (strcmp(ev->operation, "policy.show") == 0 || strncmp(ev->operation, "audit.", 6) == 0) {
        if (ev->outcome == VMENC_AUDIT_SUCCESS)
            c->reads++;
        else
            c->read_denied++;
    } else {
        c->other++;
    }
    return VMENC_OK;
}

static vmenc_workspace *make_workspace(char *dir) {
    strcpy(dir, "/tmp/vmenc-policy-edit-XXXXXX");
    assert_non_null(mkdtemp(dir));
    static const char pass[] = "test passphrase";
    vmenc_workspace_create_options co = {.struct_size = sizeof(co), .passphrase = (const uint8_t *)pass,
                                         .passphrase_len = strlen(pass), .admin = "alice", .host_id = "h1",
                                         .kdf_opslimit = 1, .kdf_memlimit_kib = 8192};
    vmenc_workspace_error err = {.struct_size = sizeof(err)};
    OK(vmenc_workspace_create(dir, &co, &err));
    vmenc_workspace_open_options oo = {.struct_size = sizeof(oo), .passphrase = (const uint8_t *)pass,
                                       .passphrase_len = strlen(pass), .flags = VMENC_WORKSPACE_OPEN_NO_SYNC};
    vmenc_workspace *ws = NULL;
    OK(vmenc_workspace_open(dir, &oo, &err, &ws));
    return ws;
}

static void remove_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_workspace_edits_are_audited(void **state) {
    (void)state;
    char dir[64];
    vmenc_workspace *ws = make_workspace(dir);
    vmenc_policy *p = vmenc_workspace_policy(ws);
    /* The fixture's principals and objects, on the bootstrap path. */
    OK(vmenc_policy_add_object(p, "vm1", VMENC_OBJ_VM, "dc"));
    static const char *const users[] = {"bob", "carol", "dave", "nobody"};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(users); i++)
        OK(vmenc_policy_add_user(p, users[i]));
    OK(vmenc_policy_add_group(p, "cryptos"));
    OK(vmenc_policy_grant(p, "bob", "root", VMENC_ROLE_NO_CRYPTO_ADMIN, 1));
    OK(vmenc_policy_grant(p, "carol", "vm1", VMENC_ROLE_ADMIN, 1));
    OK(vmenc_policy_grant(p, "cryptos", "root", VMENC_ROLE_ADMIN, 1));
    audit_count c = {0};
    OK(vmenc_audit_add_callback(vmenc_workspace_audit(ws), count_events, &c));

    /* The regression through the workspace: denied and audited. */
    vmenc_policy_edit e = {.struct_size = sizeof(e), .op = VMENC_EDIT_GRANT, .name = "bob", .object = "root",
                           .role = VMENC_ROLE_ADMIN, .propagate = 1};
    vmenc_policy_decision d = dec();
    assert_denied(vmenc_workspace_policy_edit(ws, "bob", &e, &d), d, VMENC_PRIV_CRYPTO_ACCESS, "root");
    assert_int_equal(c.denied, 1);
    assert_int_equal(c.denied_named, 1);

    /* The read privilege (before the random edits change who holds what):
     * nobody holds nothing, alice everything. */
    uint8_t *doc = NULL;
    size_t len = 0;
    d = dec();
    OK(vmenc_workspace_policy_show(ws, "alice", &doc, &len, &d));
    assert_non_null(strstr((const char *)doc, "\"version\""));
    vmenc_policy_buffer_free(doc);
    doc = NULL;
    d = dec();
    assert_denied(vmenc_workspace_policy_show(ws, "nobody", &doc, &len, &d), d, VMENC_PRIV_SYSTEM_READ, "root");
    assert_null(doc);
    d = dec();
    OK(vmenc_workspace_audit_read(ws, "alice", "audit.show", &d));
    d = dec();
    assert_denied(vmenc_workspace_audit_read(ws, "nobody", "audit.verify", &d), d, VMENC_PRIV_SYSTEM_READ, "root");
    d = dec();
    assert_denied(vmenc_workspace_audit_read(ws, "mallory", "audit.tail", &d), d, VMENC_PRIV_SYSTEM_READ, "root");
    assert_int_equal(c.reads, 2);
    assert_int_equal(c.read_denied, 3);

    /* Random edits by random principals: every outcome is audited, every
     * denial with the missing privilege. */
    g_rng = seed_from_env() ^ 0xa5a5a5a5ull;
    size_t n = edits_from_env(100000) / 50 + 1;
    size_t ok = 0, denied = 1, failed = 0;
    static const char *const actors[] = {"alice", "bob", "carol", "dave", "nobody", "mallory"};
    static const char *const prns[] = {"alice", "bob", "carol", "dave", "nobody", "cryptos", "p0", "p1"};
    static const char *const objs[] = {"root", "dc", "h1", "vm1", "vms", "n0"};
    for (size_t i = 0; i < n; i++) {
        vmenc_policy_privilege privs[NPRIV];
        vmenc_storage_policy_spec sp;
        e = random_edit(NULL, privs, &sp);
        /* This workspace's names. */
        if (e.op == VMENC_EDIT_GRANT || e.op == VMENC_EDIT_REVOKE) {
            e.name = prns[rnd(VMENC_ARRAY_LEN(prns))];
            e.object = objs[rnd(VMENC_ARRAY_LEN(objs))];
        } else if (e.op == VMENC_EDIT_ADD_MEMBER) {
            e.name = rnd(2) ? "cryptos" : "p0";
            e.member = prns[rnd(VMENC_ARRAY_LEN(prns))];
        } else if (e.op == VMENC_EDIT_ADD_OBJECT) {
            e.object = objs[rnd(VMENC_ARRAY_LEN(objs))];
        } else if (e.op == VMENC_EDIT_DISABLE_HOST_ENCRYPTION) {
            e.name = "h1";
        }
        d = dec();
        vmenc_status st = vmenc_workspace_policy_edit(ws, actors[rnd(VMENC_ARRAY_LEN(actors))], &e, &d);
        if (st == VMENC_OK)
            ok++;
        else if (st == VMENC_E_DENIED)
            denied++;
        else
            failed++;
    }
    print_message("workspace: %zu edits: %zu applied, %zu denied, %zu failed\n", n, ok, denied - 1, failed);
    assert_int_equal(c.success, ok);
    assert_int_equal(c.denied, denied);
    assert_int_equal(c.denied_named, denied);
    assert_int_equal(c.failed, failed);
    assert_true(ok > 0 && denied > 1);

    vmenc_workspace_free(ws);
    remove_dir(dir);
}

int main(void) {
    OK(vmenc_init());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bob_cannot_grant_himself_admin),
        cmocka_unit_test(test_bob_cannot_define_crypto_role),
        cmocka_unit_test(test_bob_cannot_join_crypto_groups),
        cmocka_unit_test(test_revoke_cannot_unmask_privileges),
        cmocka_unit_test(test_no_lockout_of_crypto_admins),
        cmocka_unit_test(test_grant_does_not_reach_past_the_actor),
        cmocka_unit_test(test_carol_scoped_to_her_vm),
        cmocka_unit_test(test_storage_policy_and_host_mode),
        cmocka_unit_test(test_check_uses_recorded_encryption),
        cmocka_unit_test(test_commit_hook),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_matrix),
        cmocka_unit_test(test_property_no_escalation),
        cmocka_unit_test(test_property_crypto_stays_with_holders),
        cmocka_unit_test(test_workspace_edits_are_audited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
