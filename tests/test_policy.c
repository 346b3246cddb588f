/*
 * tests/test_policy.c - the policy evaluator: the privilege matrix of every
 * operation for the predefined roles and a custom one, vSphere's permission
 * resolution rules, host encryption mode, storage policy planning.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "vmenc/vmenc.h"

/* ---- fixture ---------------------------------------------------------------
 * vc (root)
 *   dc1 (datacenter)
 *     vmfolder (folder)
 *       vm1, vm2 (vm)
 *     cl1 (cluster)
 *       h1 (host, safe)  h2 (host, incapable)
 *       rp1 (resource pool)
 *     ds1 (datastore)
 * Users admin / nocrypto / ro / custom hold Admin / NoCryptoAdmin / ReadOnly /
 * NoDecrypt (every privilege but Cryptographer.Decrypt) on vc, propagating.
 */
static vmenc_policy *make_fixture(void) {
    vmenc_policy *p = NULL;
    assert_int_equal(vmenc_policy_new("vc", &p), VMENC_OK);
    assert_int_equal(vmenc_policy_add_object(p, "dc1", VMENC_OBJ_DATACENTER, "vc"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_object(p, "vmfolder", VMENC_OBJ_FOLDER, "dc1"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_object(p, "vm1", VMENC_OBJ_VM, "vmfolder"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_object(p, "vm2", VMENC_OBJ_VM, "vmfolder"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_object(p, "cl1", VMENC_OBJ_CLUSTER, "dc1"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_object(p, "h1", VMENC_OBJ_HOST, "cl1"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_object(p, "h2", VMENC_OBJ_HOST, "cl1"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_object(p, "rp1", VMENC_OBJ_RESOURCE_POOL, "cl1"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_object(p, "ds1", VMENC_OBJ_DATASTORE, "dc1"), VMENC_OK);
    assert_int_equal(vmenc_policy_set_host_state(p, "h1", VMENC_HOST_PREPARED), VMENC_OK);
    assert_int_equal(vmenc_policy_set_host_state(p, "h1", VMENC_HOST_SAFE), VMENC_OK);

    vmenc_policy_privilege nodecrypt[VMENC_PRIV_COUNT_];
    size_t n = 0;
    for (int i = 0; i < VMENC_PRIV_COUNT_; i++)
        if (i != VMENC_PRIV_CRYPTO_DECRYPT)
            nodecrypt[n++] = (vmenc_policy_privilege)i;
    assert_int_equal(vmenc_policy_add_role(p, "NoDecrypt", nodecrypt, n), VMENC_OK);

    static const char *const users[][2] = {{"admin", VMENC_ROLE_ADMIN},
                                           {"nocrypto", VMENC_ROLE_NO_CRYPTO_ADMIN},
                                           {"ro", VMENC_ROLE_READ_ONLY},
                                           {"custom", "NoDecrypt"}};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(vmenc_policy_add_user(p, users[i][0]), VMENC_OK);
        assert_int_equal(vmenc_policy_grant(p, users[i][0], "vc", users[i][1], 1), VMENC_OK);
    }
    return p;
}

static vmenc_policy_request req(vmenc_policy_op op, uint32_t flags) {
    vmenc_policy_request r = {.struct_size = sizeof(r), .op = op, .vm = "vm1",
                              .folder = "vmfolder", .host = "h1", .pool = "rp1",
                              .datastore = "ds1", .flags = flags};
    return r;
}

/* ---- the matrix ------------------------------------------------------------ */

typedef struct expect {
    int priv;           /* VMENC_PRIV_NONE: allowed */
    const char *object; /* where it is missing */
} expect;

#define OK_ {VMENC_PRIV_NONE, NULL}
#define D(p, o) {VMENC_PRIV_##p, o}

enum { E = VMENC_REQ_VM_ENCRYPTED, T = VMENC_REQ_TARGET_ENCRYPTED, ON = VMENC_REQ_POWERED_ON };

typedef struct row {
    vmenc_policy_op op;
    uint32_t flags;
    const char *pool;   /* NULL: the default rp1 */
    expect e[4];        /* admin, nocrypto, ro, custom */
} row;

static const row k_matrix[] = {
    {VMENC_OP_ENCRYPT_VM, 0, NULL,
     {OK_, D(CRYPTO_ENCRYPT, "vm1"), D(VM_SETTINGS, "vm1"), OK_}},
    {VMENC_OP_CREATE_VM, 0, NULL, {OK_, OK_, D(VM_CREATE, "vmfolder"), OK_}},
    {VMENC_OP_CREATE_VM, T, NULL,
     {OK_, D(CRYPTO_ENCRYPT_NEW, "vmfolder"), D(VM_CREATE, "vmfolder"), OK_}},
    {VMENC_OP_DECRYPT_VM, E, NULL,
     {OK_, D(CRYPTO_DECRYPT, "vm1"), D(VM_SETTINGS, "vm1"), D(CRYPTO_DECRYPT, "vm1")}},
    {VMENC_OP_CLONE_VM, 0, NULL, {OK_, OK_, D(VM_CLONE, "vm1"), OK_}},
    {VMENC_OP_CLONE_VM, E | T, NULL,
     {OK_, D(CRYPTO_CLONE, "vm1"), D(VM_CLONE, "vm1"), OK_}},
    {VMENC_OP_CLONE_VM, E, NULL,
     {OK_, D(CRYPTO_CLONE, "vm1"), D(VM_CLONE, "vm1"), D(CRYPTO_DECRYPT, "vm1")}},
    {VMENC_OP_CLONE_VM, T, NULL,
     {OK_, D(CRYPTO_ENCRYPT_NEW, "vmfolder"), D(VM_CLONE, "vm1"), OK_}},
    {VMENC_OP_ADD_DISK, 0, NULL, {OK_, OK_, D(VM_ADD_NEW_DISK, "vm1"), OK_}},
    {VMENC_OP_ADD_DISK, E, NULL,
     {OK_, D(CRYPTO_ADD_DISK, "vm1"), D(VM_ADD_NEW_DISK, "vm1"), OK_}},
    {VMENC_OP_REKEY_SHALLOW, E, NULL,
     {OK_, D(CRYPTO_RECRYPT, "vm1"), D(CRYPTO_RECRYPT, "vm1"), OK_}},
    {VMENC_OP_REKEY_DEEP, E, NULL,
     {OK_, D(CRYPTO_RECRYPT, "vm1"), D(CRYPTO_RECRYPT, "vm1"), OK_}},
    {VMENC_OP_MIGRATE_VM, ON, NULL, {OK_, OK_, D(RESOURCE_HOT_MIGRATE, "vm1"), OK_}},
    {VMENC_OP_MIGRATE_VM, 0, NULL, {OK_, OK_, D(RESOURCE_COLD_MIGRATE, "vm1"), OK_}},
    {VMENC_OP_MIGRATE_VM, E | ON, NULL,
     {OK_, D(CRYPTO_MIGRATE, "vm1"), D(RESOURCE_HOT_MIGRATE, "vm1"), OK_}},
    {VMENC_OP_REGISTER_VM, 0, NULL, {OK_, OK_, D(VM_REGISTER, "vmfolder"), OK_}},
    {VMENC_OP_REGISTER_VM, E, NULL,
     {OK_, D(CRYPTO_REGISTER_VM, "vmfolder"), D(VM_REGISTER, "vmfolder"), OK_}},
    {VMENC_OP_REGISTER_HOST, 0, "cl1", {OK_, OK_, D(HOST_ADD_TO_CLUSTER, "cl1"), OK_}},
    {VMENC_OP_REGISTER_HOST, T, "cl1",
     {OK_, D(CRYPTO_REGISTER_HOST, "cl1"), D(HOST_ADD_TO_CLUSTER, "cl1"), OK_}},
    {VMENC_OP_ENABLE_HOST_ENCRYPTION, 0, NULL,
     {OK_, D(CRYPTO_REGISTER_HOST, "h1"), D(CRYPTO_REGISTER_HOST, "h1"), OK_}},
    {VMENC_OP_CONSOLE, 0, NULL, {OK_, OK_, D(VM_CONSOLE, "vm1"), OK_}},
    {VMENC_OP_CONSOLE, E, NULL, {OK_, D(CRYPTO_ACCESS, "vm1"), D(VM_CONSOLE, "vm1"), OK_}},
    {VMENC_OP_EXPORT_VM, 0, NULL, {OK_, OK_, D(VM_GET_FILES, "vm1"), OK_}},
    {VMENC_OP_EXPORT_VM, E, NULL, {OK_, D(CRYPTO_ACCESS, "vm1"), D(VM_GET_FILES, "vm1"), OK_}},
    {VMENC_OP_UPLOAD_FILES, 0, NULL, {OK_, OK_, D(VM_PUT_FILES, "vm1"), OK_}},
    {VMENC_OP_UPLOAD_FILES, E, NULL, {OK_, D(CRYPTO_ACCESS, "vm1"), D(VM_PUT_FILES, "vm1"), OK_}},
    {VMENC_OP_MANAGE_KEYS, 0, NULL,
     {OK_, D(CRYPTO_MANAGE_KEYS, "vc"), D(CRYPTO_MANAGE_KEYS, "vc"), OK_}},
    {VMENC_OP_MANAGE_KEY_SERVERS, 0, NULL,
     {OK_, D(CRYPTO_MANAGE_KEY_SERVERS, "vc"), D(CRYPTO_MANAGE_KEY_SERVERS, "vc"), OK_}},
    {VMENC_OP_MANAGE_ENCRYPTION_POLICIES, 0, NULL,
     {OK_, D(CRYPTO_MANAGE_ENCRYPTION_POLICY, "vc"), D(STORAGE_PROFILE_UPDATE, "vc"), OK_}},
    {VMENC_OP_READ_KEY_SERVERS, 0, NULL,
     {OK_, D(CRYPTO_READ_KEY_SERVERS_INFO, "vc"), D(CRYPTO_READ_KEY_SERVERS_INFO, "vc"), OK_}},
    {VMENC_OP_POWER_ON, 0, NULL, {OK_, OK_, D(VM_POWER_ON, "vm1"), OK_}},
    {VMENC_OP_POWER_ON, E, NULL, {OK_, OK_, D(VM_POWER_ON, "vm1"), OK_}},
    {VMENC_OP_POWER_OFF, E, NULL, {OK_, OK_, D(VM_POWER_OFF, "vm1"), OK_}},
    {VMENC_OP_EDIT_SETTINGS, E, NULL, {OK_, OK_, D(VM_SETTINGS, "vm1"), OK_}},
    {VMENC_OP_SNAPSHOT, E, NULL, {OK_, OK_, D(VM_SNAPSHOT, "vm1"), OK_}},
    {VMENC_OP_VIEW, E, NULL, {OK_, OK_, OK_, OK_}},
    /* Reading the policy or the audit log: System.Read on the root, which
     * every role of the fixture holds (test_policy_edit.c has a user
     * without it). */
    {VMENC_OP_READ_POLICY, 0, NULL, {OK_, OK_, OK_, OK_}},
};

static void test_privilege_matrix(void **state) {
    vmenc_policy *p = make_fixture();
    static const char *const who[4] = {"admin", "nocrypto", "ro", "custom"};
    bool op_seen[VMENC_OP_COUNT_] = {false};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(k_matrix); i++) {
        const row *r = &k_matrix[i];
        op_seen[r->op] = true;
        vmenc_policy_request rq = req(r->op, r->flags);
        if (r->pool != NULL)
            rq.pool = r->pool;
        for (int u = 0; u < 4; u++) {
            vmenc_policy_decision d = {.struct_size = sizeof(d)};
            vmenc_status st = vmenc_policy_check(p, who[u], &rq, &d);
            const expect *e = &r->e[u];
            if (e->priv == VMENC_PRIV_NONE) {
                if (st != VMENC_OK)
                    fail_msg("row %zu (%s) user %s: expected allowed, got %s: %s", i,
                             vmenc_policy_op_name(r->op), who[u], vmenc_status_name(st),
                             d.message);
                assert_int_equal(d.allowed, 1);
                assert_int_equal(d.missing_privilege, VMENC_PRIV_NONE);
                assert_string_equal(d.missing_object, "");
            } else {
                if (st != VMENC_E_DENIED || (int)d.missing_privilege != e->priv ||
                    strcmp(d.missing_object, e->object) != 0)
                    fail_msg("row %zu (%s) user %s: expected %s on %s, got %s %s on '%s'", i,
                             vmenc_policy_op_name(r->op), who[u],
                             vmenc_policy_privilege_name(e->priv), e->object,
                             vmenc_status_name(st),
                             vmenc_policy_privilege_name(d.missing_privilege) ?: "-",
                             d.missing_object);
                assert_int_equal(d.allowed, 0);
                assert_int_equal(d.status, VMENC_E_DENIED);
                /* The sentence names the privilege and the object. */
                assert_non_null(strstr(d.message, vmenc_policy_privilege_name(e->priv)));
                assert_non_null(strstr(d.message, e->object));
                assert_non_null(strstr(d.message, who[u]));
            }
        }
    }
    /* Every operation appears in the matrix. */
    for (int op = 1; op < VMENC_OP_COUNT_; op++)
        if (!op_seen[op])
            fail_msg("operation %s missing from the matrix", vmenc_policy_op_name(op));
    vmenc_policy_free(p);
}

/* The whitepaper's list: No cryptography administrator may power on and
 * migrate an encrypted VM but not encrypt, decrypt, open its console,
 * download it, or configure key managers. */
static void test_no_crypto_admin_whitepaper(void **state) {
    vmenc_policy *p = make_fixture();
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    vmenc_policy_request ok_ops[] = {req(VMENC_OP_POWER_ON, E), req(VMENC_OP_MIGRATE_VM, E)};
    /* Migrating an encrypted VM is vSphere's Cryptographer.Migrate; the
     * whitepaper's "migrate" is vMotion of a plain VM for this role. */
    ok_ops[1].flags = ON;
    for (size_t i = 0; i < VMENC_ARRAY_LEN(ok_ops); i++)
        assert_int_equal(vmenc_policy_check(p, "nocrypto", &ok_ops[i], &d), VMENC_OK);
    vmenc_policy_request no_ops[] = {req(VMENC_OP_ENCRYPT_VM, 0), req(VMENC_OP_DECRYPT_VM, E),
                                     req(VMENC_OP_CONSOLE, E), req(VMENC_OP_EXPORT_VM, E),
                                     req(VMENC_OP_MANAGE_KEY_SERVERS, 0)};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(no_ops); i++) {
        assert_int_equal(vmenc_policy_check(p, "nocrypto", &no_ops[i], &d), VMENC_E_DENIED);
        assert_non_null(strstr(vmenc_policy_privilege_name(d.missing_privilege),
                               "Cryptographer."));
    }
    vmenc_policy_free(p);
}

/* ---- object types of request fields ------------------------------------------
 * Every request field must name an object of a type the rules allow for it;
 * otherwise a principal holding privileges on one object could name it in
 * place of the folder or pool the rules put the privilege on. */

/* Issue 9 #1: Admin on one VM only, NoCryptoAdmin everywhere else. Naming
 * that VM as the folder or the pool must not let the principal create or
 * register an encrypted VM or add a host to an encrypting cluster. */
static void test_field_naming_a_vm_is_refused(void **state) {
    vmenc_policy *p = make_fixture();
    assert_int_equal(vmenc_policy_add_user(p, "vmowner"), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "vmowner", "vc", VMENC_ROLE_NO_CRYPTO_ADMIN, 1), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "vmowner", "vm1", VMENC_ROLE_ADMIN, 0), VMENC_OK);
    vmenc_policy_decision d = {.struct_size = sizeof(d)};

    vmenc_policy_request create = req(VMENC_OP_CREATE_VM, T);
    assert_int_equal(vmenc_policy_check(p, "vmowner", &create, &d), VMENC_E_DENIED); /* control */
    create.folder = "vm1";
    assert_int_equal(vmenc_policy_check(p, "vmowner", &create, &d), VMENC_E_INVALID_ARG);
    assert_int_equal(d.allowed, 0);
    assert_non_null(strstr(d.message, "field 'folder'"));
    assert_non_null(strstr(d.message, "it must name a root or datacenter or folder"));
    assert_int_equal(strlen(d.message), strlen(strstr(d.message, "invalid: ")));

    vmenc_policy_request reg = req(VMENC_OP_REGISTER_VM, E);
    assert_int_equal(vmenc_policy_check(p, "vmowner", &reg, &d), VMENC_E_DENIED);
    reg.folder = "vm1";
    assert_int_equal(vmenc_policy_check(p, "vmowner", &reg, &d), VMENC_E_INVALID_ARG);
    assert_non_null(strstr(d.message, "field 'folder'"));

    vmenc_policy_request host = req(VMENC_OP_REGISTER_HOST, T);
    host.pool = "cl1";
    assert_int_equal(vmenc_policy_check(p, "vmowner", &host, &d), VMENC_E_DENIED);
    host.pool = "vm1";
    assert_int_equal(vmenc_policy_check(p, "vmowner", &host, &d), VMENC_E_INVALID_ARG);
    assert_non_null(strstr(d.message, "field 'pool'"));
    /* Standalone into a folder: the same. */
    host.pool = NULL;
    host.folder = "vm1";
    assert_int_equal(vmenc_policy_check(p, "vmowner", &host, &d), VMENC_E_INVALID_ARG);
    assert_non_null(strstr(d.message, "field 'folder'"));

    vmenc_policy_request clone = req(VMENC_OP_CLONE_VM, T);
    clone.folder = "vm1";
    assert_int_equal(vmenc_policy_check(p, "vmowner", &clone, &d), VMENC_E_INVALID_ARG);
    vmenc_policy_free(p);
}

static const char *tname(vmenc_policy_object_type t) {
    static const char *const n[] = {"root", "datacenter", "folder", "cluster", "host",
                                    "resource_pool", "datastore", "vm"};
    return (unsigned)t < 8 ? n[t] : "?";
}

enum { FV = 0, FF, FH, FP, FD, NF }; /* vm, folder, host, pool, datastore */
static const char *const k_fname[NF] = {"vm", "folder", "host", "pool", "datastore"};

/* The specification, written out independently of lib/policy/check.c:
 * which fields |op| reads with flags E|T (docs/policy.md), and which object
 * types each may name. */
static unsigned spec_reads(vmenc_policy_op op) {
    const unsigned V = 1u << FV, F = 1u << FF, H = 1u << FH, P = 1u << FP, S = 1u << FD;
    switch (op) {
    case VMENC_OP_ENCRYPT_VM: case VMENC_OP_DECRYPT_VM: case VMENC_OP_REKEY_SHALLOW:
    case VMENC_OP_REKEY_DEEP: case VMENC_OP_POWER_ON: case VMENC_OP_SNAPSHOT: return V | H;
    case VMENC_OP_CREATE_VM: return F | P | S | H;
    case VMENC_OP_CLONE_VM: return V | F | P | S | H;
    case VMENC_OP_ADD_DISK: return V | S | H;
    case VMENC_OP_MIGRATE_VM: return V | P | S | H;
    case VMENC_OP_REGISTER_VM: return F | P | H;
    case VMENC_OP_REGISTER_HOST: return P | F;
    case VMENC_OP_ENABLE_HOST_ENCRYPTION: return H;
    case VMENC_OP_CONSOLE: case VMENC_OP_EXPORT_VM: case VMENC_OP_UPLOAD_FILES:
    case VMENC_OP_POWER_OFF: case VMENC_OP_EDIT_SETTINGS: case VMENC_OP_VIEW: return V;
    default: return 0;
    }
}

static bool spec_type_ok(vmenc_policy_op op, int field, vmenc_policy_object_type t) {
    switch (field) {
    case FV: return t == VMENC_OBJ_VM;
    case FH: return t == VMENC_OBJ_HOST;
    case FD: return t == VMENC_OBJ_DATASTORE;
    case FF: return t == VMENC_OBJ_ROOT || t == VMENC_OBJ_DATACENTER || t == VMENC_OBJ_FOLDER;
    case FP:
        if (op == VMENC_OP_REGISTER_HOST)
            return t == VMENC_OBJ_CLUSTER;
        return t == VMENC_OBJ_RESOURCE_POOL || t == VMENC_OBJ_CLUSTER || t == VMENC_OBJ_HOST;
    default: return false;
    }
}

static const char **field_ref(vmenc_policy_request *rq, int f) {
    switch (f) {
    case FV: return &rq->vm;
    case FF: return &rq->folder;
    case FH: return &rq->host;
    case FP: return &rq->pool;
    default: return &rq->datastore;
    }
}

/* Every operation x every field x every object type, as Admin (who holds
 * every privilege, so a type check is the only thing that can refuse). */
static void test_field_type_matrix(void **state) {
    vmenc_policy *p = make_fixture();
    static const struct { const char *name; vmenc_policy_object_type type; } objs[] = {
        {"vc", VMENC_OBJ_ROOT}, {"dc1", VMENC_OBJ_DATACENTER}, {"vmfolder", VMENC_OBJ_FOLDER},
        {"cl1", VMENC_OBJ_CLUSTER}, {"h1", VMENC_OBJ_HOST}, {"rp1", VMENC_OBJ_RESOURCE_POOL},
        {"ds1", VMENC_OBJ_DATASTORE}, {"vm1", VMENC_OBJ_VM}};
    size_t refused = 0, accepted = 0;
    for (int op = 1; op < VMENC_OP_COUNT_; op++) {
        for (int f = 0; f < NF; f++) {
            for (size_t t = 0; t < VMENC_ARRAY_LEN(objs); t++) {
                vmenc_policy_request rq = req((vmenc_policy_op)op, E | T);
                if (op == VMENC_OP_REGISTER_HOST)
                    rq.pool = "cl1";
                *field_ref(&rq, f) = objs[t].name;
                bool read = (spec_reads((vmenc_policy_op)op) >> f) & 1;
                bool ok = !read || spec_type_ok((vmenc_policy_op)op, f, objs[t].type);
                vmenc_policy_decision d = {.struct_size = sizeof(d)};
                vmenc_status st = vmenc_policy_check(p, "admin", &rq, &d);
                if (ok && st != VMENC_OK)
                    fail_msg("%s: field %s = %s '%s': expected allowed, got %s: %s",
                             vmenc_policy_op_name(op), k_fname[f],
                             tname(objs[t].type), objs[t].name,
                             vmenc_status_name(st), d.message);
                if (!ok) {
                    char want[32];
                    snprintf(want, sizeof(want), "field '%s'", k_fname[f]);
                    if (st != VMENC_E_INVALID_ARG || d.allowed != 0 || strstr(d.message, want) == NULL)
                        fail_msg("%s: field %s = %s '%s': expected refused, got %s: %s",
                                 vmenc_policy_op_name(op), k_fname[f],
                                 tname(objs[t].type), objs[t].name,
                                 vmenc_status_name(st), d.message);
                }
                ok ? accepted++ : refused++;
            }
        }
    }
    print_message("field type matrix: %zu accepted, %zu refused\n", accepted, refused);
    vmenc_policy_free(p);
}

/* ---- property: an allowed decision implies the privileges the rules name ------ */

typedef struct need_spec {
    vmenc_policy_privilege priv;
    const char *object;
} need_spec;

/* spec_needs lists what docs/policy.md's table requires of |rq| (fields not
 * read are not consulted). Returns the count. */
static int spec_needs(const vmenc_policy_request *rq, const char *root, need_spec *out) {
    const bool e = rq->flags & E, t = rq->flags & T, on = rq->flags & ON;
    int n = 0;
#define NEED(pv, obj) out[n++] = (need_spec){VMENC_PRIV_##pv, (obj)}
    switch (rq->op) {
    case VMENC_OP_ENCRYPT_VM: NEED(VM_SETTINGS, rq->vm); NEED(CRYPTO_ENCRYPT, rq->vm); break;
    case VMENC_OP_DECRYPT_VM: NEED(VM_SETTINGS, rq->vm); NEED(CRYPTO_DECRYPT, rq->vm); break;
    case VMENC_OP_CREATE_VM:
        NEED(VM_CREATE, rq->folder);
        if (t) NEED(CRYPTO_ENCRYPT_NEW, rq->folder);
        if (rq->pool) NEED(RESOURCE_ASSIGN_VM_TO_POOL, rq->pool);
        if (rq->datastore) NEED(DATASTORE_ALLOCATE_SPACE, rq->datastore);
        break;
    case VMENC_OP_CLONE_VM:
        NEED(VM_CLONE, rq->vm);
        if (e) NEED(CRYPTO_CLONE, rq->vm);
        if (e && !t) NEED(CRYPTO_DECRYPT, rq->vm);
        NEED(VM_CREATE, rq->folder);
        if (t && !e) NEED(CRYPTO_ENCRYPT_NEW, rq->folder);
        if (rq->pool) NEED(RESOURCE_ASSIGN_VM_TO_POOL, rq->pool);
        if (rq->datastore) NEED(DATASTORE_ALLOCATE_SPACE, rq->datastore);
        break;
    case VMENC_OP_ADD_DISK:
        NEED(VM_ADD_NEW_DISK, rq->vm);
        if (e) NEED(CRYPTO_ADD_DISK, rq->vm);
        if (rq->datastore) NEED(DATASTORE_ALLOCATE_SPACE, rq->datastore);
        break;
    case VMENC_OP_REKEY_SHALLOW: case VMENC_OP_REKEY_DEEP: NEED(CRYPTO_RECRYPT, rq->vm); break;
    case VMENC_OP_MIGRATE_VM:
        if (on) NEED(RESOURCE_HOT_MIGRATE, rq->vm); else NEED(RESOURCE_COLD_MIGRATE, rq->vm);
        if (e) NEED(CRYPTO_MIGRATE, rq->vm);
        if (rq->pool) NEED(RESOURCE_ASSIGN_VM_TO_POOL, rq->pool);
        if (rq->datastore) NEED(DATASTORE_ALLOCATE_SPACE, rq->datastore);
        break;
    case VMENC_OP_REGISTER_VM:
        NEED(VM_REGISTER, rq->folder);
        if (e) NEED(CRYPTO_REGISTER_VM, rq->folder);
        if (rq->pool) NEED(RESOURCE_ASSIGN_VM_TO_POOL, rq->pool);
        break;
    case VMENC_OP_REGISTER_HOST: {
        const char *into = rq->pool ? rq->pool : rq->folder;
        if (rq->pool) NEED(HOST_ADD_TO_CLUSTER, into); else NEED(HOST_ADD_STANDALONE, into);
        if (t) NEED(CRYPTO_REGISTER_HOST, into);
        break;
    }
    case VMENC_OP_ENABLE_HOST_ENCRYPTION: NEED(CRYPTO_REGISTER_HOST, rq->host); break;
    case VMENC_OP_CONSOLE: NEED(VM_CONSOLE, rq->vm); if (e) NEED(CRYPTO_ACCESS, rq->vm); break;
    case VMENC_OP_EXPORT_VM: NEED(VM_GET_FILES, rq->vm); if (e) NEED(CRYPTO_ACCESS, rq->vm); break;
    case VMENC_OP_UPLOAD_FILES: NEED(VM_PUT_FILES, rq->vm); if (e) NEED(CRYPTO_ACCESS, rq->vm); break;
    case VMENC_OP_MANAGE_KEYS: NEED(CRYPTO_MANAGE_KEYS, root); break;
    case VMENC_OP_MANAGE_KEY_SERVERS: NEED(CRYPTO_MANAGE_KEY_SERVERS, root); break;
    case VMENC_OP_MANAGE_ENCRYPTION_POLICIES:
        NEED(STORAGE_PROFILE_UPDATE, root); NEED(CRYPTO_MANAGE_ENCRYPTION_POLICY, root); break;
    case VMENC_OP_READ_KEY_SERVERS: NEED(CRYPTO_READ_KEY_SERVERS_INFO, root); break;
    case VMENC_OP_POWER_ON: NEED(VM_POWER_ON, rq->vm); break;
    case VMENC_OP_POWER_OFF: NEED(VM_POWER_OFF, rq->vm); break;
    case VMENC_OP_EDIT_SETTINGS: NEED(VM_SETTINGS, rq->vm); break;
    case VMENC_OP_SNAPSHOT: NEED(VM_SNAPSHOT, rq->vm); break;
    case VMENC_OP_VIEW: NEED(SYSTEM_READ, rq->vm); break;
    case VMENC_OP_READ_POLICY: NEED(SYSTEM_READ, root); break;
    default: break;
    }
#undef NEED
    return n;
}

static uint64_t g_rng;
static uint32_t rnd(uint32_t n) { /* xorshift64*, reproducible from the seed */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (uint32_t)((g_rng * 2685821657736338717ull) >> 33) % n;
}

/* For random inventories, roles, groups and permissions, and random
 * requests whose fields name objects of any type: every allowed decision
 * names fields of the right types and the principal holds every privilege
 * the rules name, on the object they name. */
static void test_property_allowed_implies_privileges(void **state) {
    const char *env = getenv("VMENC_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : 0x9e3779b97f4a7c15ull;
    g_rng = seed;
    print_message("property seed 0x%llx (set VMENC_TEST_SEED to replay)\n", (unsigned long long)seed);
    size_t allowed = 0, checked = 0;
    for (int round = 0; round < 40; round++) {
        vmenc_policy *p = NULL;
        assert_int_equal(vmenc_policy_new("root", &p), VMENC_OK);
        enum { NOBJ = 24, NUSR = 4, NROLE = 4 };
        char names[NOBJ][16];
        vmenc_policy_object_type types[NOBJ];
        int num = 1;
        snprintf(names[0], sizeof(names[0]), "root");
        types[0] = VMENC_OBJ_ROOT;
        for (int i = 1; i < NOBJ; i++) {
            int parent;
            do parent = (int)rnd((uint32_t)num); while (types[parent] == VMENC_OBJ_VM);
            types[num] = (vmenc_policy_object_type)(1 + rnd(7));
            snprintf(names[num], sizeof(names[num]), "o%d", num);
            assert_int_equal(vmenc_policy_add_object(p, names[num], types[num], names[parent]), VMENC_OK);
            if (types[num] == VMENC_OBJ_HOST && rnd(2)) {
                assert_int_equal(vmenc_policy_set_host_state(p, names[num], VMENC_HOST_PREPARED), VMENC_OK);
                assert_int_equal(vmenc_policy_set_host_state(p, names[num], VMENC_HOST_SAFE), VMENC_OK);
            }
            num++;
        }
        char rname[NROLE][16];
        for (int r = 0; r < NROLE; r++) {
            vmenc_policy_privilege privs[VMENC_PRIV_COUNT_];
            size_t k = 0;
            for (int pv = 0; pv < VMENC_PRIV_COUNT_; pv++)
                if (rnd(3) != 0)
                    privs[k++] = (vmenc_policy_privilege)pv;
            snprintf(rname[r], sizeof(rname[r]), "role%d", r);
            assert_int_equal(vmenc_policy_add_role(p, rname[r], privs, k), VMENC_OK);
        }
        static const char *const predefined[] = {VMENC_ROLE_ADMIN, VMENC_ROLE_NO_CRYPTO_ADMIN,
                                                  VMENC_ROLE_READ_ONLY, VMENC_ROLE_NO_ACCESS};
        char uname[NUSR][16];
        assert_int_equal(vmenc_policy_add_group(p, "grp"), VMENC_OK);
        for (int u = 0; u < NUSR; u++) {
            snprintf(uname[u], sizeof(uname[u]), "user%d", u);
            assert_int_equal(vmenc_policy_add_user(p, uname[u]), VMENC_OK);
            if (rnd(2))
                assert_int_equal(vmenc_policy_add_member(p, "grp", uname[u]), VMENC_OK);
        }
        for (int g = 0; g < 10; g++) {
            const char *who = rnd(5) == 0 ? "grp" : uname[rnd(NUSR)];
            const char *role = rnd(2) ? rname[rnd(NROLE)] : predefined[rnd(4)];
            assert_int_equal(vmenc_policy_grant(p, who, names[rnd((uint32_t)num)], role, (int)rnd(2)),
                             VMENC_OK);
        }
        for (int q = 0; q < 400; q++) {
            vmenc_policy_request rq = {.struct_size = sizeof(rq),
                                       .op = (vmenc_policy_op)(1 + rnd(VMENC_OP_COUNT_ - 1)),
                                       .flags = rnd(8)};
            for (int f = 0; f < NF; f++)
                *field_ref(&rq, f) = rnd(4) == 0 ? NULL : names[rnd((uint32_t)num)];
            const char *who = uname[rnd(NUSR)];
            vmenc_policy_decision d = {.struct_size = sizeof(d)};
            vmenc_status st = vmenc_policy_check(p, who, &rq, &d);
            checked++;
            if (st != VMENC_OK)
                continue;
            allowed++;
            assert_int_equal(d.allowed, 1);
            unsigned reads = spec_reads(rq.op);
            for (int f = 0; f < NF; f++) {
                const char *nm = *field_ref(&rq, f);
                if (nm == NULL || !((reads >> f) & 1))
                    continue;
                /* Fields read only with some flags (host) may be ignored;
                 * a field that is read must have the right type. */
                int idx = atoi(nm + 1);
                vmenc_policy_object_type ty = strcmp(nm, "root") == 0 ? VMENC_OBJ_ROOT : types[idx];
                if (f == FH && ty != VMENC_OBJ_HOST) {
                    /* allowed with a non-host only where the host is not read */
                    bool host_read = (rq.op == VMENC_OP_ENCRYPT_VM || rq.op == VMENC_OP_DECRYPT_VM ||
                                      rq.op == VMENC_OP_REKEY_SHALLOW || rq.op == VMENC_OP_REKEY_DEEP ||
                                      rq.op == VMENC_OP_ENABLE_HOST_ENCRYPTION);
                    if (host_read)
                        fail_msg("%s allowed with host = %s", vmenc_policy_op_name(rq.op), nm);
                    continue;
                }
                if (!spec_type_ok(rq.op, f, ty))
                    fail_msg("%s allowed with %s = '%s' (%s)", vmenc_policy_op_name(rq.op), k_fname[f],
                             nm, tname(ty));
            }
            need_spec needs[16];
            int n = spec_needs(&rq, "root", needs);
            for (int i = 0; i < n; i++) {
                assert_non_null(needs[i].object); /* a required field was given */
                int has_it = -1;
                assert_int_equal(vmenc_policy_has_privilege(p, who, needs[i].object, needs[i].priv, &has_it),
                                 VMENC_OK);
                if (has_it != 1)
                    fail_msg("%s allowed for %s without %s on '%s'", vmenc_policy_op_name(rq.op), who,
                             vmenc_policy_privilege_name(needs[i].priv), needs[i].object);
            }
        }
        vmenc_policy_free(p);
    }
    print_message("property: %zu decisions, %zu allowed\n", checked, allowed);
    assert_true(allowed > 0); /* the property was exercised */
}

/* Issue 9 #8: uploading into an encrypted VM's home (PutVmFiles) needs
 * Cryptographer.Access like downloading; into a plain VM it does not. */
static void test_upload_files(void **state) {
    vmenc_policy *p = make_fixture();
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    vmenc_policy_request rq = req(VMENC_OP_UPLOAD_FILES, E);
    assert_int_equal(vmenc_policy_check(p, "nocrypto", &rq, &d), VMENC_E_DENIED);
    assert_int_equal(d.missing_privilege, VMENC_PRIV_CRYPTO_ACCESS);
    assert_string_equal(d.missing_object, "vm1");
    assert_non_null(strstr(d.message, "upload_files"));
    assert_int_equal(vmenc_policy_check(p, "admin", &rq, &d), VMENC_OK);
    rq.flags = 0;
    assert_int_equal(vmenc_policy_check(p, "nocrypto", &rq, &d), VMENC_OK);
    assert_int_equal(vmenc_policy_check(p, "ro", &rq, &d), VMENC_E_DENIED);
    assert_int_equal(d.missing_privilege, VMENC_PRIV_VM_PUT_FILES);
    assert_string_equal(vmenc_policy_op_name(VMENC_OP_UPLOAD_FILES), "upload_files");
    assert_null(vmenc_policy_op_name(VMENC_OP_COUNT_));
    vmenc_policy_free(p);
}

/* ---- resolution rules ------------------------------------------------------ */

static int has(vmenc_policy *p, const char *who, const char *obj, vmenc_policy_privilege pr) {
    int v = -1;
    assert_int_equal(vmenc_policy_has_privilege(p, who, obj, pr, &v), VMENC_OK);
    return v;
}

static void test_explicit_overrides_inherited(void **state) {
    vmenc_policy *p = make_fixture();
    assert_int_equal(vmenc_policy_add_user(p, "u"), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "u", "dc1", VMENC_ROLE_ADMIN, 1), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "u", "vm1", VMENC_ROLE_READ_ONLY, 1), VMENC_OK);
    /* Less on the child wins over more on the parent... */
    assert_int_equal(has(p, "u", "vm1", VMENC_PRIV_VM_POWER_ON), 0);
    assert_int_equal(has(p, "u", "vm1", VMENC_PRIV_SYSTEM_READ), 1);
    assert_int_equal(has(p, "u", "vm2", VMENC_PRIV_VM_POWER_ON), 1);
    /* ...and more on the child wins over less on the parent. */
    assert_int_equal(vmenc_policy_grant(p, "u", "dc1", VMENC_ROLE_NO_ACCESS, 1), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "u", "vm1", VMENC_ROLE_ADMIN, 1), VMENC_OK);
    assert_int_equal(has(p, "u", "vm1", VMENC_PRIV_CRYPTO_DECRYPT), 1);
    assert_int_equal(has(p, "u", "vm2", VMENC_PRIV_SYSTEM_READ), 0);
    /* Revoking the child permission brings inheritance back. */
    assert_int_equal(vmenc_policy_revoke(p, "u", "vm1"), VMENC_OK);
    assert_int_equal(has(p, "u", "vm1", VMENC_PRIV_SYSTEM_READ), 0);
    assert_int_equal(vmenc_policy_revoke(p, "u", "vm1"), VMENC_E_NOT_FOUND);
    vmenc_policy_free(p);
}

static void test_user_overrides_group_same_object(void **state) {
    vmenc_policy *p = make_fixture();
    assert_int_equal(vmenc_policy_add_user(p, "u"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_group(p, "g"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_member(p, "g", "u"), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "g", "vm1", VMENC_ROLE_ADMIN, 1), VMENC_OK);
    assert_int_equal(has(p, "u", "vm1", VMENC_PRIV_VM_POWER_ON), 1);
    assert_int_equal(vmenc_policy_grant(p, "u", "vm1", VMENC_ROLE_READ_ONLY, 1), VMENC_OK);
    assert_int_equal(has(p, "u", "vm1", VMENC_PRIV_VM_POWER_ON), 0);
    assert_int_equal(has(p, "u", "vm1", VMENC_PRIV_SYSTEM_VIEW), 1);
    vmenc_policy_free(p);
}

static void test_group_on_child_beats_user_on_parent(void **state) {
    vmenc_policy *p = make_fixture();
    assert_int_equal(vmenc_policy_add_user(p, "u"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_group(p, "g"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_member(p, "g", "u"), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "u", "dc1", VMENC_ROLE_ADMIN, 1), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "g", "vm1", VMENC_ROLE_READ_ONLY, 1), VMENC_OK);
    assert_int_equal(has(p, "u", "vm1", VMENC_PRIV_VM_POWER_ON), 0);
    assert_int_equal(has(p, "u", "vm2", VMENC_PRIV_VM_POWER_ON), 1);
    vmenc_policy_free(p);
}

static void test_groups_union(void **state) {
    vmenc_policy *p = make_fixture();
    vmenc_policy_privilege pon[] = {VMENC_PRIV_VM_POWER_ON};
    vmenc_policy_privilege con[] = {VMENC_PRIV_VM_CONSOLE, VMENC_PRIV_CRYPTO_ACCESS};
    assert_int_equal(vmenc_policy_add_role(p, "PowerOn", pon, 1), VMENC_OK);
    assert_int_equal(vmenc_policy_add_role(p, "Console", con, 2), VMENC_OK);
    assert_int_equal(vmenc_policy_add_user(p, "both"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_user(p, "one"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_group(p, "g1"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_group(p, "g2"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_member(p, "g1", "both"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_member(p, "g2", "both"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_member(p, "g1", "one"), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "g1", "vm1", "PowerOn", 1), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "g2", "vm1", "Console", 1), VMENC_OK);
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    vmenc_policy_request on = req(VMENC_OP_POWER_ON, 0), con_rq = req(VMENC_OP_CONSOLE, E);
    assert_int_equal(vmenc_policy_check(p, "both", &on, &d), VMENC_OK);
    assert_int_equal(vmenc_policy_check(p, "both", &con_rq, &d), VMENC_OK);
    assert_int_equal(vmenc_policy_check(p, "one", &on, &d), VMENC_OK);
    assert_int_equal(vmenc_policy_check(p, "one", &con_rq, &d), VMENC_E_DENIED);
    assert_int_equal(d.missing_privilege, VMENC_PRIV_VM_CONSOLE);
    /* Nested groups: a member of a member group inherits the membership. */
    assert_int_equal(vmenc_policy_add_group(p, "inner"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_user(p, "deep"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_member(p, "inner", "deep"), VMENC_OK);
    assert_int_equal(vmenc_policy_check(p, "deep", &con_rq, &d), VMENC_E_DENIED);
    assert_int_equal(vmenc_policy_add_member(p, "g2", "inner"), VMENC_OK);
    assert_int_equal(vmenc_policy_check(p, "deep", &con_rq, &d), VMENC_OK);
    /* Cycles are refused and change nothing. */
    assert_int_equal(vmenc_policy_add_member(p, "inner", "g2"), VMENC_E_CYCLE);
    assert_int_equal(vmenc_policy_add_member(p, "inner", "inner"), VMENC_E_CYCLE);
    assert_int_equal(vmenc_policy_add_member(p, "inner", "deep"), VMENC_E_EXISTS);
    assert_int_equal(vmenc_policy_add_member(p, "deep", "one"), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_check(p, "deep", &con_rq, &d), VMENC_OK);
    vmenc_policy_free(p);
}

static void test_non_propagating(void **state) {
    vmenc_policy *p = make_fixture();
    assert_int_equal(vmenc_policy_add_user(p, "u"), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "u", "vc", VMENC_ROLE_READ_ONLY, 1), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "u", "vmfolder", VMENC_ROLE_ADMIN, 0), VMENC_OK);
    /* On the object itself: applies. */
    assert_int_equal(has(p, "u", "vmfolder", VMENC_PRIV_VM_CREATE), 1);
    /* Below it: skipped, so the propagating ReadOnly from vc applies. */
    assert_int_equal(has(p, "u", "vm1", VMENC_PRIV_VM_CREATE), 0);
    assert_int_equal(has(p, "u", "vm1", VMENC_PRIV_SYSTEM_READ), 1);
    /* Without anything above, a non-propagating grant leaves children bare. */
    assert_int_equal(vmenc_policy_revoke(p, "u", "vc"), VMENC_OK);
    assert_int_equal(has(p, "u", "vm1", VMENC_PRIV_SYSTEM_READ), 0);
    assert_int_equal(has(p, "u", "vc", VMENC_PRIV_SYSTEM_READ), 0);
    vmenc_policy_free(p);
}

static void test_unknown_and_bad_arguments(void **state) {
    vmenc_policy *p = make_fixture();
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    memset(d.message, 'x', 10);
    vmenc_policy_request rq = req(VMENC_OP_POWER_ON, 0);
    /* An unknown principal holds nothing. */
    assert_int_equal(vmenc_policy_check(p, "mallory", &rq, &d), VMENC_E_DENIED);
    assert_int_equal(d.missing_privilege, VMENC_PRIV_VM_POWER_ON);
    /* Bad requests leave the decision untouched. */
    vmenc_policy_decision before = d;
    rq.vm = "nosuchvm";
    assert_int_equal(vmenc_policy_check(p, "admin", &rq, &d), VMENC_E_NOT_FOUND);
    rq.vm = NULL;
    assert_int_equal(vmenc_policy_check(p, "admin", &rq, &d), VMENC_E_INVALID_ARG);
    rq = req((vmenc_policy_op)999, 0);
    assert_int_equal(vmenc_policy_check(p, "admin", &rq, &d), VMENC_E_INVALID_ARG);
    rq = req(VMENC_OP_POWER_ON, 1u << 7);
    assert_int_equal(vmenc_policy_check(p, "admin", &rq, &d), VMENC_E_INVALID_ARG);
    rq = req(VMENC_OP_POWER_ON, 0);
    rq.struct_size = 8;
    assert_int_equal(vmenc_policy_check(p, "admin", &rq, &d), VMENC_E_ABI_VERSION);
    rq.struct_size = sizeof(rq);
    assert_int_equal(vmenc_policy_check(p, "", &rq, &d), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_check(p, NULL, &rq, &d), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_check(NULL, "admin", &rq, &d), VMENC_E_INVALID_ARG);
    assert_memory_equal(&before, &d, sizeof(d));
    /* A field naming an object of the wrong type is a bad request too, and
     * the decision's sentence names the field. */
    rq = req(VMENC_OP_POWER_ON, 0);
    rq.vm = "h1";
    assert_int_equal(vmenc_policy_check(p, "admin", &rq, &d), VMENC_E_INVALID_ARG);
    assert_int_equal(d.allowed, 0);
    assert_int_equal(d.status, VMENC_E_INVALID_ARG);
    assert_non_null(strstr(d.message, "field 'vm'"));
    assert_non_null(strstr(d.message, "'h1'"));
    rq = req(VMENC_OP_POWER_ON, 0);
    vmenc_policy_decision small = {.struct_size = 4};
    assert_int_equal(vmenc_policy_check(p, "admin", &rq, &small), VMENC_E_ABI_VERSION);

    /* Construction errors. */
    assert_int_equal(vmenc_policy_add_user(p, "admin"), VMENC_E_EXISTS);
    assert_int_equal(vmenc_policy_add_group(p, "admin"), VMENC_E_EXISTS);
    assert_int_equal(vmenc_policy_add_role(p, VMENC_ROLE_ADMIN, NULL, 0), VMENC_E_EXISTS);
    vmenc_policy_privilege bad = (vmenc_policy_privilege)VMENC_PRIV_COUNT_;
    assert_int_equal(vmenc_policy_add_role(p, "bad", &bad, 1), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_add_object(p, "x", VMENC_OBJ_VM, "nope"), VMENC_E_NOT_FOUND);
    assert_int_equal(vmenc_policy_add_object(p, "x", VMENC_OBJ_VM, "vm1"), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_add_object(p, "x", VMENC_OBJ_ROOT, "vc"), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_add_object(p, "vm1", VMENC_OBJ_VM, "vc"), VMENC_E_EXISTS);
    assert_int_equal(vmenc_policy_add_object(p, "a\nb", VMENC_OBJ_VM, "vc"), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_add_object(p, "\xc3\x28", VMENC_OBJ_VM, "vc"),
                     VMENC_E_INVALID_ARG);
    char longname[VMENC_POLICY_NAME_MAX + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(vmenc_policy_add_user(p, longname), VMENC_E_INVALID_ARG);
    longname[VMENC_POLICY_NAME_MAX] = '\0';
    assert_int_equal(vmenc_policy_add_user(p, longname), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "admin", "vm1", "NoSuchRole", 1), VMENC_E_NOT_FOUND);
    assert_int_equal(vmenc_policy_grant(p, "nobody", "vm1", VMENC_ROLE_ADMIN, 1),
                     VMENC_E_NOT_FOUND);

    vmenc_policy_privilege pr;
    assert_int_equal(vmenc_policy_privilege_from_name("Cryptographer.Decrypt", &pr), VMENC_OK);
    assert_int_equal(pr, VMENC_PRIV_CRYPTO_DECRYPT);
    assert_int_equal(vmenc_policy_privilege_from_name("Cryptographer.decrypt", &pr),
                     VMENC_E_NOT_FOUND);
    assert_null(vmenc_policy_privilege_name(-1));
    assert_null(vmenc_policy_privilege_name(VMENC_PRIV_COUNT_));
    /* Every privilege has a distinct name that maps back to it. */
    for (int i = 0; i < VMENC_PRIV_COUNT_; i++) {
        assert_non_null(vmenc_policy_privilege_name(i));
        assert_int_equal(vmenc_policy_privilege_from_name(vmenc_policy_privilege_name(i), &pr),
                         VMENC_OK);
        assert_int_equal(pr, i);
    }
    vmenc_policy_free(p);
    vmenc_policy_free(NULL);
}

/* ---- host encryption mode ------------------------------------------------- */

static void test_host_transitions(void **state) {
    /* legal[from][to] */
    static const int legal[4][4] = {
        /* to: incapable prepared safe pending */
        /* incapable */ {1, 1, 0, 0},
        /* prepared  */ {1, 1, 1, 0},
        /* safe      */ {0, 0, 1, 1},
        /* pending   */ {1, 0, 0, 1},
    };
    /* How to reach each state from incapable. */
    static const vmenc_host_crypto_state path[4][3] = {
        {VMENC_HOST_INCAPABLE},
        {VMENC_HOST_PREPARED},
        {VMENC_HOST_PREPARED, VMENC_HOST_SAFE},
        {VMENC_HOST_PREPARED, VMENC_HOST_SAFE, VMENC_HOST_PENDING_INCAPABLE},
    };
    static const int path_len[4] = {1, 1, 2, 3};
    for (int from = 0; from < 4; from++) {
        for (int to = 0; to < 4; to++) {
            vmenc_policy *p = make_fixture();
            for (int k = 0; k < path_len[from]; k++)
                assert_int_equal(vmenc_policy_set_host_state(p, "h2", path[from][k]), VMENC_OK);
            vmenc_host_crypto_state s;
            assert_int_equal(vmenc_policy_get_host_state(p, "h2", &s), VMENC_OK);
            assert_int_equal(s, from);
            vmenc_status st = vmenc_policy_set_host_state(p, "h2", (vmenc_host_crypto_state)to);
            assert_int_equal(st, legal[from][to] ? VMENC_OK : VMENC_E_ILLEGAL_TRANSITION);
            assert_int_equal(vmenc_policy_get_host_state(p, "h2", &s), VMENC_OK);
            assert_int_equal(s, legal[from][to] ? to : from);
            vmenc_policy_free(p);
        }
    }
    vmenc_policy *p = make_fixture();
    vmenc_host_crypto_state s;
    assert_int_equal(vmenc_policy_set_host_state(p, "vm1", VMENC_HOST_PREPARED),
                     VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_set_host_state(p, "nohost", VMENC_HOST_PREPARED),
                     VMENC_E_NOT_FOUND);
    assert_int_equal(vmenc_policy_set_host_state(p, "h2", (vmenc_host_crypto_state)9),
                     VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_get_host_state(p, "vm1", &s), VMENC_E_INVALID_ARG);
    assert_string_equal(vmenc_host_crypto_state_name(VMENC_HOST_PENDING_INCAPABLE),
                        "pendingIncapable");
    vmenc_policy_free(p);
}

static void test_host_with_encrypted_vms_stays_safe(void **state) {
    vmenc_policy *p = make_fixture();
    /* Encrypted VMs only on a safe host. */
    assert_int_equal(vmenc_policy_set_vm_state(p, "vm1", "h2", 1), VMENC_E_HOST_MODE);
    assert_int_equal(vmenc_policy_set_vm_state(p, "vm1", "h1", 1), VMENC_OK);
    assert_int_equal(vmenc_policy_set_vm_state(p, "vm2", "h1", 1), VMENC_OK);
    assert_int_equal(vmenc_policy_set_host_state(p, "h1", VMENC_HOST_PENDING_INCAPABLE),
                     VMENC_E_HOST_MODE);
    assert_int_equal(vmenc_policy_set_vm_state(p, "vm1", "h1", 0), VMENC_OK);
    assert_int_equal(vmenc_policy_set_host_state(p, "h1", VMENC_HOST_PENDING_INCAPABLE),
                     VMENC_E_HOST_MODE); /* vm2 still there */
    assert_int_equal(vmenc_policy_set_vm_state(p, "vm2", NULL, 1), VMENC_OK); /* moved away */
    assert_int_equal(vmenc_policy_set_host_state(p, "h1", VMENC_HOST_PENDING_INCAPABLE),
                     VMENC_OK);
    assert_int_equal(vmenc_policy_set_vm_state(p, "h1", NULL, 0), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_set_vm_state(p, "vm1", "vm2", 0), VMENC_E_INVALID_ARG);
    vmenc_policy_free(p);
}

static void test_host_auto_enable(void **state) {
    vmenc_policy *p = make_fixture();
    /* A role that may encrypt but not switch hosts to encryption mode. */
    vmenc_policy_privilege enc[] = {VMENC_PRIV_VM_SETTINGS, VMENC_PRIV_CRYPTO_ENCRYPT};
    assert_int_equal(vmenc_policy_add_role(p, "EncryptOnly", enc, 2), VMENC_OK);
    assert_int_equal(vmenc_policy_add_user(p, "enc"), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "enc", "vc", "EncryptOnly", 1), VMENC_OK);

    vmenc_policy_request rq = req(VMENC_OP_ENCRYPT_VM, 0);
    rq.host = "h2"; /* incapable */
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    /* With RegisterHost: allowed, host to be switched on. */
    assert_int_equal(vmenc_policy_check(p, "admin", &rq, &d), VMENC_OK);
    assert_int_equal(d.allowed, 1);
    assert_int_equal(d.enable_host_encryption, 1);
    assert_string_equal(d.host, "h2");
    /* Without it: the decision says so. */
    assert_int_equal(vmenc_policy_check(p, "enc", &rq, &d), VMENC_E_HOST_MODE);
    assert_int_equal(d.allowed, 0);
    assert_int_equal(d.missing_privilege, VMENC_PRIV_CRYPTO_REGISTER_HOST);
    assert_string_equal(d.missing_object, "h2");
    assert_non_null(strstr(d.message, "Cryptographer.RegisterHost"));
    /* On a safe host no switch is needed. */
    rq.host = "h1";
    assert_int_equal(vmenc_policy_check(p, "enc", &rq, &d), VMENC_OK);
    assert_int_equal(d.enable_host_encryption, 0);
    /* Without a host in the request, nothing is said about host mode. */
    rq.host = NULL;
    assert_int_equal(vmenc_policy_check(p, "enc", &rq, &d), VMENC_OK);

    /* The checked switch. */
    assert_int_equal(vmenc_policy_enable_host_encryption(p, "enc", "h2", &d), VMENC_E_DENIED);
    vmenc_host_crypto_state s;
    assert_int_equal(vmenc_policy_get_host_state(p, "h2", &s), VMENC_OK);
    assert_int_equal(s, VMENC_HOST_INCAPABLE);
    assert_int_equal(vmenc_policy_enable_host_encryption(p, "admin", "h2", &d), VMENC_OK);
    assert_int_equal(vmenc_policy_get_host_state(p, "h2", &s), VMENC_OK);
    assert_int_equal(s, VMENC_HOST_SAFE);
    rq.host = "h2";
    assert_int_equal(vmenc_policy_check(p, "enc", &rq, &d), VMENC_OK);
    assert_int_equal(vmenc_policy_enable_host_encryption(p, "admin", "h2", &d), VMENC_OK);

    /* pendingIncapable: nobody can switch it on before the reboot. */
    assert_int_equal(vmenc_policy_set_host_state(p, "h2", VMENC_HOST_PENDING_INCAPABLE),
                     VMENC_OK);
    assert_int_equal(vmenc_policy_check(p, "admin", &rq, &d), VMENC_E_HOST_MODE);
    assert_int_equal(d.missing_privilege, VMENC_PRIV_NONE);
    assert_non_null(strstr(d.message, "pendingIncapable"));
    assert_int_equal(vmenc_policy_enable_host_encryption(p, "admin", "h2", &d), VMENC_E_HOST_MODE);
    assert_int_equal(vmenc_policy_set_host_state(p, "h2", VMENC_HOST_INCAPABLE), VMENC_OK);
    assert_int_equal(vmenc_policy_check(p, "admin", &rq, &d), VMENC_OK);
    assert_int_equal(d.enable_host_encryption, 1);
    /* Power-on of an encrypted VM and migration to a prepared host follow the
     * same rule; a plain VM does not care about the host. */
    assert_int_equal(vmenc_policy_set_host_state(p, "h2", VMENC_HOST_PREPARED), VMENC_OK);
    vmenc_policy_request on = req(VMENC_OP_POWER_ON, E);
    on.host = "h2";
    assert_int_equal(vmenc_policy_check(p, "nocrypto", &on, &d), VMENC_E_HOST_MODE);
    on.flags = 0;
    assert_int_equal(vmenc_policy_check(p, "nocrypto", &on, &d), VMENC_OK);
    assert_int_equal(d.enable_host_encryption, 0);
    vmenc_policy_request mig = req(VMENC_OP_MIGRATE_VM, E | ON);
    mig.host = "h2";
    assert_int_equal(vmenc_policy_check(p, "custom", &mig, &d), VMENC_OK);
    assert_int_equal(d.enable_host_encryption, 1);
    vmenc_policy_free(p);
}

/* ---- storage policies ----------------------------------------------------- */

static void set_sp(vmenc_policy *p, const char *name, int encrypt, uint32_t classes,
                   const char *prov, vmenc_migration_encryption mig, vmenc_status want) {
    vmenc_storage_policy_spec s = {.struct_size = sizeof(s), .name = name, .encrypt = encrypt,
                                   .file_classes = classes, .key_provider = prov,
                                   .migration = mig};
    assert_int_equal(vmenc_policy_set_storage_policy(p, &s), want);
}

static void test_storage_policy_actions(void **state) {
    vmenc_policy *p = make_fixture();
    set_sp(p, "enc-a", 1, VMENC_FILE_ALL_, "kms-a", VMENC_MIGRATION_OPPORTUNISTIC, VMENC_OK);
    set_sp(p, "enc-b-home", 1, VMENC_FILE_VM_HOME, "kms-b", VMENC_MIGRATION_DISABLED, VMENC_OK);
    set_sp(p, "plain", 0, 0, NULL, VMENC_MIGRATION_REQUIRED, VMENC_OK);
    /* Invalid specs. */
    set_sp(p, "x", 1, 0, "kms", VMENC_MIGRATION_DISABLED, VMENC_E_POLICY_INVALID);
    set_sp(p, "x", 1, VMENC_FILE_DISKS, "kms", VMENC_MIGRATION_DISABLED, VMENC_E_POLICY_INVALID);
    set_sp(p, "x", 1, VMENC_FILE_VM_HOME, NULL, VMENC_MIGRATION_DISABLED, VMENC_E_POLICY_INVALID);
    set_sp(p, "x", 0, VMENC_FILE_VM_HOME, NULL, VMENC_MIGRATION_DISABLED, VMENC_E_POLICY_INVALID);
    set_sp(p, "x", 0, 0, "kms", VMENC_MIGRATION_DISABLED, VMENC_E_POLICY_INVALID);
    set_sp(p, "x", 1, 1u << 9, "kms", VMENC_MIGRATION_DISABLED, VMENC_E_POLICY_INVALID);
    set_sp(p, "x", 0, 0, NULL, (vmenc_migration_encryption)7, VMENC_E_POLICY_INVALID);

    vmenc_vm_disk_state disks[2] = {{0, NULL}, {0, NULL}};
    vmenc_vm_crypto_state st = {.struct_size = sizeof(st), .num_disks = 2, .disks = disks,
                                .migration = VMENC_MIGRATION_OPPORTUNISTIC};
    vmenc_policy_action a[VMENC_POLICY_MAX_ACTIONS(2)];
    size_t n = 99;

    /* Plain VM -> encrypt everything: home first, then disks, dumps, and an
     * encrypted VM migrates encrypted whatever the policy says. */
    assert_int_equal(vmenc_policy_plan_storage_policy(p, "enc-a", &st, a, VMENC_ARRAY_LEN(a), &n),
                     VMENC_OK);
    assert_int_equal(n, 5);
    assert_int_equal(a[0].type, VMENC_ACTION_ENCRYPT_HOME);
    assert_string_equal(a[0].key_provider, "kms-a");
    assert_int_equal(a[1].type, VMENC_ACTION_ENCRYPT_DISK);
    assert_int_equal(a[1].disk, 0);
    assert_int_equal(a[2].type, VMENC_ACTION_ENCRYPT_DISK);
    assert_int_equal(a[2].disk, 1);
    assert_int_equal(a[3].type, VMENC_ACTION_ENCRYPT_CORE_DUMPS);
    assert_int_equal(a[4].type, VMENC_ACTION_SET_MIGRATION);
    assert_int_equal(a[4].migration, VMENC_MIGRATION_REQUIRED);

    /* Compliant VM: nothing to do. */
    disks[0] = (vmenc_vm_disk_state){1, "kms-a"};
    disks[1] = (vmenc_vm_disk_state){1, "kms-a"};
    st.home_encrypted = 1;
    st.home_provider = "kms-a";
    st.core_dumps_encrypted = 1;
    st.core_dump_provider = "kms-a";
    st.migration = VMENC_MIGRATION_REQUIRED;
    assert_int_equal(vmenc_policy_plan_storage_policy(p, "enc-a", &st, a, VMENC_ARRAY_LEN(a), &n),
                     VMENC_OK);
    assert_int_equal(n, 0);

    /* New provider, home only: rekey home, decrypt disks first... */
    assert_int_equal(
        vmenc_policy_plan_storage_policy(p, "enc-b-home", &st, a, VMENC_ARRAY_LEN(a), &n),
        VMENC_OK);
    assert_int_equal(n, 4);
    assert_int_equal(a[0].type, VMENC_ACTION_REKEY_HOME);
    assert_string_equal(a[0].key_provider, "kms-b");
    assert_int_equal(a[1].type, VMENC_ACTION_DECRYPT_DISK);
    assert_int_equal(a[2].type, VMENC_ACTION_DECRYPT_DISK);
    assert_int_equal(a[2].disk, 1);
    assert_int_equal(a[3].type, VMENC_ACTION_DECRYPT_CORE_DUMPS);
    /* (migration stays required: the VM stays encrypted) */

    /* Plain policy: disks decrypted before the home, migration per policy. */
    st.migration = VMENC_MIGRATION_OPPORTUNISTIC;
    assert_int_equal(vmenc_policy_plan_storage_policy(p, "plain", &st, a, VMENC_ARRAY_LEN(a), &n),
                     VMENC_OK);
    assert_int_equal(n, 5);
    assert_int_equal(a[0].type, VMENC_ACTION_DECRYPT_DISK);
    assert_int_equal(a[1].type, VMENC_ACTION_DECRYPT_DISK);
    assert_int_equal(a[2].type, VMENC_ACTION_DECRYPT_HOME);
    assert_int_equal(a[3].type, VMENC_ACTION_DECRYPT_CORE_DUMPS);
    assert_int_equal(a[4].type, VMENC_ACTION_SET_MIGRATION);
    assert_int_equal(a[4].migration, VMENC_MIGRATION_REQUIRED);

    /* Errors leave outputs alone. */
    n = 77;
    assert_int_equal(vmenc_policy_plan_storage_policy(p, "enc-a", &st, a, 3, &n),
                     VMENC_E_BUFFER_TOO_SMALL);
    assert_int_equal(vmenc_policy_plan_storage_policy(p, "nope", &st, a, VMENC_ARRAY_LEN(a), &n),
                     VMENC_E_NOT_FOUND);
    st.home_encrypted = 0; /* encrypted disks on a plain home */
    assert_int_equal(vmenc_policy_plan_storage_policy(p, "enc-a", &st, a, VMENC_ARRAY_LEN(a), &n),
                     VMENC_E_INVALID_ARG);
    st.home_encrypted = 1;
    st.home_provider = NULL;
    assert_int_equal(vmenc_policy_plan_storage_policy(p, "enc-a", &st, a, VMENC_ARRAY_LEN(a), &n),
                     VMENC_E_INVALID_ARG);
    st.struct_size = 4;
    assert_int_equal(vmenc_policy_plan_storage_policy(p, "enc-a", &st, a, VMENC_ARRAY_LEN(a), &n),
                     VMENC_E_ABI_VERSION);
    assert_int_equal(n, 77);

    /* Replacing a policy takes effect. */
    set_sp(p, "enc-a", 0, 0, NULL, VMENC_MIGRATION_DISABLED, VMENC_OK);
    st = (vmenc_vm_crypto_state){.struct_size = sizeof(st), .migration = VMENC_MIGRATION_DISABLED};
    assert_int_equal(vmenc_policy_plan_storage_policy(p, "enc-a", &st, a, VMENC_ARRAY_LEN(a), &n),
                     VMENC_OK);
    assert_int_equal(n, 0);
    vmenc_policy_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_privilege_matrix),
        cmocka_unit_test(test_no_crypto_admin_whitepaper),
        cmocka_unit_test(test_field_naming_a_vm_is_refused),
        cmocka_unit_test(test_field_type_matrix),
        cmocka_unit_test(test_property_allowed_implies_privileges),
        cmocka_unit_test(test_upload_files),
        cmocka_unit_test(test_explicit_overrides_inherited),
        cmocka_unit_test(test_user_overrides_group_same_object),
        cmocka_unit_test(test_group_on_child_beats_user_on_parent),
        cmocka_unit_test(test_groups_union),
        cmocka_unit_test(test_non_propagating),
        cmocka_unit_test(test_unknown_and_bad_arguments),
        cmocka_unit_test(test_host_transitions),
        cmocka_unit_test(test_host_with_encrypted_vms_stays_safe),
        cmocka_unit_test(test_host_auto_enable),
        cmocka_unit_test(test_storage_policy_actions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
