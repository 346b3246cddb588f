/*
 * tests/test_policy_json.c - the policy document: canonical round trip,
 * agreement between a loaded and a programmatically built policy, and every
 * class of invalid document with its status and JSON path.
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

/* Forward references (members, parents, hosts listed later), nested groups,
 * every object type, every section. */
static const char k_doc[] =
    "{\"version\": 1,\n"
    " \"roles\": [{\"name\": \"EncryptNoDecrypt\", \"privileges\": [\"System.Read\",\n"
    "     \"Cryptographer.Encrypt\", \"Cryptographer.EncryptNew\", \"VirtualMachine.Config.Settings\",\n"
    "     \"Cryptographer.RegisterHost\"]},\n"
    "   {\"name\": \"Empty\", \"privileges\": []}],\n"
    " \"users\": [{\"name\": \"alice\"}, {\"name\": \"bob\"}, {\"name\": \"carol \\\"c\\\" \\\\ \\u00e9\"}],\n"
    " \"groups\": [{\"name\": \"ops\", \"members\": [\"alice\", \"sec\"]},\n"
    "   {\"name\": \"sec\", \"members\": [\"bob\"]}, {\"name\": \"nobody\"}],\n"
    " \"inventory\": [\n"
    "   {\"name\": \"vm1\", \"type\": \"vm\", \"parent\": \"vms\", \"host\": \"h1\", \"encrypted\": true},\n"
    "   {\"name\": \"vc\", \"type\": \"root\"},\n"
    "   {\"name\": \"dc\", \"type\": \"datacenter\", \"parent\": \"vc\"},\n"
    "   {\"name\": \"vms\", \"type\": \"folder\", \"parent\": \"dc\"},\n"
    "   {\"name\": \"cl\", \"type\": \"cluster\", \"parent\": \"dc\"},\n"
    "   {\"name\": \"h1\", \"type\": \"host\", \"parent\": \"cl\", \"crypto_state\": \"safe\"},\n"
    "   {\"name\": \"h2\", \"type\": \"host\", \"parent\": \"cl\"},\n"
    "   {\"name\": \"rp\", \"type\": \"resource_pool\", \"parent\": \"cl\"},\n"
    "   {\"name\": \"ds\", \"type\": \"datastore\", \"parent\": \"dc\"},\n"
    "   {\"name\": \"vm2\", \"type\": \"vm\", \"parent\": \"vms\"}],\n"
    " \"permissions\": [\n"
    "   {\"principal\": \"ops\", \"object\": \"dc\", \"role\": \"NoCryptoAdmin\"},\n"
    "   {\"principal\": \"alice\", \"object\": \"vms\", \"role\": \"EncryptNoDecrypt\", \"propagate\": true},\n"
    "   {\"principal\": \"bob\", \"object\": \"vc\", \"role\": \"Admin\", \"propagate\": false},\n"
    "   {\"principal\": \"carol \\\"c\\\" \\\\ \\u00e9\", \"object\": \"vm2\", \"role\": \"ReadOnly\"}],\n"
    " \"storage_policies\": [\n"
    "   {\"name\": \"VM Encryption Policy\", \"encrypt\": true, \"file_classes\": [\"disks\", \"vm_home\"],\n"
    "    \"key_provider\": \"kms-a\", \"migration_encryption\": \"required\"},\n"
    "   {\"name\": \"plain\", \"encrypt\": false}]\n"
    "}\n";

static vmenc_policy *load_ok(const char *doc) {
    vmenc_policy *p = NULL;
    vmenc_policy_error err = {.struct_size = sizeof(err)};
    vmenc_status st = vmenc_policy_load_json((const uint8_t *)doc, strlen(doc), &err, &p);
    if (st != VMENC_OK)
        fail_msg("load failed: %s at %s: %s", vmenc_status_name(st), err.path, err.message);
    assert_non_null(p);
    return p;
}

static void save(vmenc_policy *p, uint8_t **out, size_t *len) {
    assert_int_equal(vmenc_policy_save_json(p, out, len), VMENC_OK);
    assert_int_equal(strlen((const char *)*out), *len);
}

static void test_round_trip(void **state) {
    vmenc_policy *p1 = load_ok(k_doc);
    uint8_t *s1, *s2, *s3;
    size_t l1, l2, l3;
    save(p1, &s1, &l1);
    vmenc_policy *p2 = load_ok((const char *)s1);
    save(p2, &s2, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(s1, s2, l1);
    /* The canonical form is stable under another cycle too. */
    vmenc_policy *p3 = load_ok((const char *)s2);
    save(p3, &s3, &l3);
    assert_int_equal(l2, l3);
    assert_memory_equal(s2, s3, l2);
    /* Defaults were made explicit; predefined roles are not saved. */
    assert_non_null(strstr((const char *)s1, "\"crypto_state\": \"incapable\""));
    assert_non_null(strstr((const char *)s1, "\"propagate\": true"));
    assert_non_null(strstr((const char *)s1, "\"propagate\": false"));
    assert_null(strstr((const char *)s1, "\"name\": \"Admin\""));
    assert_non_null(strstr((const char *)s1, "carol \\\"c\\\" \\\\ \xc3\xa9"));

    /* The loaded policy decides as written. */
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    vmenc_policy_request enc = {.struct_size = sizeof(enc), .op = VMENC_OP_ENCRYPT_VM,
                                .vm = "vm2", .host = "h2"};
    vmenc_policy_request dec = {.struct_size = sizeof(dec), .op = VMENC_OP_DECRYPT_VM,
                                .vm = "vm1", .flags = VMENC_REQ_VM_ENCRYPTED};
    vmenc_policy_request on = {.struct_size = sizeof(on), .op = VMENC_OP_POWER_ON, .vm = "vm1",
                               .host = "h1", .flags = VMENC_REQ_VM_ENCRYPTED};
    vmenc_policy *all[] = {p1, p2, p3};
    for (int i = 0; i < 3; i++) {
        /* alice: explicit EncryptNoDecrypt on vms beats ops' NoCryptoAdmin on
         * dc, but on h2 (incapable) she has only NoCryptoAdmin via ops. */
        assert_int_equal(vmenc_policy_check(all[i], "alice", &enc, &d), VMENC_E_HOST_MODE);
        assert_int_equal(d.missing_privilege, VMENC_PRIV_CRYPTO_REGISTER_HOST);
        assert_string_equal(d.missing_object, "h2");
        enc.host = NULL;
        assert_int_equal(vmenc_policy_check(all[i], "alice", &enc, &d), VMENC_OK);
        enc.host = "h2";
        assert_int_equal(vmenc_policy_check(all[i], "alice", &dec, &d), VMENC_E_DENIED);
        assert_int_equal(d.missing_privilege, VMENC_PRIV_CRYPTO_DECRYPT);
        assert_int_equal(vmenc_policy_check(all[i], "alice", &on, &d), VMENC_E_DENIED);
        /* bob: Admin on vc does not propagate; via sec -> ops NoCryptoAdmin on dc */
        assert_int_equal(vmenc_policy_check(all[i], "bob", &on, &d), VMENC_OK);
        assert_int_equal(vmenc_policy_check(all[i], "bob", &dec, &d), VMENC_E_DENIED);
        assert_int_equal(d.missing_privilege, VMENC_PRIV_CRYPTO_DECRYPT);
        vmenc_policy_request keys = {.struct_size = sizeof(keys), .op = VMENC_OP_MANAGE_KEYS};
        assert_int_equal(vmenc_policy_check(all[i], "bob", &keys, &d), VMENC_OK);
        assert_int_equal(vmenc_policy_check(all[i], "alice", &keys, &d), VMENC_E_DENIED);
        vmenc_host_crypto_state hs;
        assert_int_equal(vmenc_policy_get_host_state(all[i], "h1", &hs), VMENC_OK);
        assert_int_equal(hs, VMENC_HOST_SAFE);
        /* h1 carries encrypted vm1: it cannot leave safe mode. */
        assert_int_equal(vmenc_policy_set_host_state(all[i], "h1", VMENC_HOST_PENDING_INCAPABLE),
                         VMENC_E_HOST_MODE);
    }
    vmenc_policy_action a[VMENC_POLICY_MAX_ACTIONS(0)];
    size_t n;
    vmenc_vm_crypto_state vs = {.struct_size = sizeof(vs)};
    assert_int_equal(vmenc_policy_plan_storage_policy(p3, "VM Encryption Policy", &vs, a,
                                                      VMENC_ARRAY_LEN(a), &n),
                     VMENC_OK);
    assert_int_equal(n, 2);
    assert_string_equal(a[0].key_provider, "kms-a");
    vmenc_policy_buffer_free(s1);
    vmenc_policy_buffer_free(s2);
    vmenc_policy_buffer_free(s3);
    vmenc_policy_free(p1);
    vmenc_policy_free(p2);
    vmenc_policy_free(p3);
}

/* A policy built through the API and the same policy saved and reloaded
 * give the same answers to every question. */
static void test_programmatic_equals_loaded(void **state) {
    vmenc_policy *p = NULL;
    assert_int_equal(vmenc_policy_new("root", &p), VMENC_OK);
    static const char *const objs[][3] = {
        {"dc", "datacenter", "root"}, {"f1", "folder", "dc"}, {"f2", "folder", "f1"},
        {"vmA", "vm", "f2"},          {"vmB", "vm", "f1"},    {"cl", "cluster", "dc"},
        {"hA", "host", "cl"},
    };
    for (size_t i = 0; i < VMENC_ARRAY_LEN(objs); i++) {
        vmenc_policy_object_type t = strcmp(objs[i][1], "vm") == 0        ? VMENC_OBJ_VM
                                     : strcmp(objs[i][1], "folder") == 0  ? VMENC_OBJ_FOLDER
                                     : strcmp(objs[i][1], "cluster") == 0 ? VMENC_OBJ_CLUSTER
                                     : strcmp(objs[i][1], "host") == 0    ? VMENC_OBJ_HOST
                                                                          : VMENC_OBJ_DATACENTER;
        assert_int_equal(vmenc_policy_add_object(p, objs[i][0], t, objs[i][2]), VMENC_OK);
    }
    vmenc_policy_privilege r1[] = {VMENC_PRIV_VM_POWER_ON, VMENC_PRIV_CRYPTO_CLONE};
    assert_int_equal(vmenc_policy_add_role(p, "R1", r1, 2), VMENC_OK);
    const char *users[] = {"u0", "u1", "u2", "u3"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(vmenc_policy_add_user(p, users[i]), VMENC_OK);
    assert_int_equal(vmenc_policy_add_group(p, "g0"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_group(p, "g1"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_member(p, "g0", "u0"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_member(p, "g0", "g1"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_member(p, "g1", "u1"), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "g0", "dc", VMENC_ROLE_NO_CRYPTO_ADMIN, 1), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "u1", "f2", "R1", 1), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "u2", "f1", VMENC_ROLE_ADMIN, 0), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "u3", "root", VMENC_ROLE_READ_ONLY, 1), VMENC_OK);
    assert_int_equal(vmenc_policy_grant(p, "g1", "vmB", VMENC_ROLE_NO_ACCESS, 1), VMENC_OK);
    assert_int_equal(vmenc_policy_set_host_state(p, "hA", VMENC_HOST_PREPARED), VMENC_OK);

    uint8_t *s;
    size_t l;
    save(p, &s, &l);
    vmenc_policy *q = load_ok((const char *)s);
    const char *who[] = {"u0", "u1", "u2", "u3", "g0", "g1", "stranger"};
    for (size_t w = 0; w < VMENC_ARRAY_LEN(who); w++)
        for (size_t o = 0; o < VMENC_ARRAY_LEN(objs); o++)
            for (int pr = 0; pr < VMENC_PRIV_COUNT_; pr++) {
                int a = -1, b = -2;
                assert_int_equal(vmenc_policy_has_privilege(p, who[w], objs[o][0], pr, &a),
                                 VMENC_OK);
                assert_int_equal(vmenc_policy_has_privilege(q, who[w], objs[o][0], pr, &b),
                                 VMENC_OK);
                assert_int_equal(a, b);
            }
    /* Spot checks that the comparison is not vacuous. */
    int v;
    assert_int_equal(vmenc_policy_has_privilege(q, "u1", "vmA", VMENC_PRIV_CRYPTO_CLONE, &v),
                     VMENC_OK);
    assert_int_equal(v, 1);
    assert_int_equal(vmenc_policy_has_privilege(q, "u1", "vmB", VMENC_PRIV_SYSTEM_READ, &v),
                     VMENC_OK);
    assert_int_equal(v, 0);
    assert_int_equal(vmenc_policy_has_privilege(q, "u0", "vmB", VMENC_PRIV_VM_POWER_ON, &v),
                     VMENC_OK);
    assert_int_equal(v, 1);
    vmenc_policy_buffer_free(s);
    vmenc_policy_free(p);
    vmenc_policy_free(q);
}

/* ---- invalid documents ----------------------------------------------------- */

#define ROOT "{\"name\": \"vc\", \"type\": \"root\"}"
#define DOC(extra) "{\"version\": 1, \"inventory\": [" ROOT "]" extra "}"
#define INV(items) "{\"version\": 1, \"inventory\": [" ROOT ", " items "]}"

typedef struct bad {
    const char *doc;
    vmenc_status status;
    const char *path;   /* exact, or a prefix when it ends in '*' */
} bad;

static const bad k_bad[] = {
    {"", VMENC_E_TRUNCATED, "$"},
    {"{\"version\": 1,", VMENC_E_TRUNCATED, "$"},
    {DOC("") "x", VMENC_E_TRAILING_DATA, "$"},
    {DOC("") " \n ", VMENC_OK, NULL},
    {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", VMENC_E_DEPTH_LIMIT, "$"},
    {"{'version': 1}", VMENC_E_BAD_ENCODING, "$"},
    {"{\"version\": 1,}", VMENC_E_BAD_ENCODING, "$"},
    {"{\"version\": 1, \"inventory\": [{\"name\": \"\xff\", \"type\": \"root\"}]}",
     VMENC_E_BAD_ENCODING, "$"},
    {"[]", VMENC_E_POLICY_INVALID, "$"},
    {"{\"version\": 2, \"inventory\": [" ROOT "]}", VMENC_E_BAD_VERSION, "$.version"},
    {"{\"version\": \"1\", \"inventory\": [" ROOT "]}", VMENC_E_POLICY_INVALID, "$.version"},
    {"{\"version\": 1.0, \"inventory\": [" ROOT "]}", VMENC_E_POLICY_INVALID, "$.version"},
    {"{\"inventory\": [" ROOT "]}", VMENC_E_POLICY_INVALID, "$.version"},
    {"{\"version\": 1}", VMENC_E_POLICY_INVALID, "$.inventory"},
    {DOC(", \"extra\": 1"), VMENC_E_POLICY_INVALID, "$.extra"},
    {DOC(", \"a\\\"b\": 1"), VMENC_E_POLICY_INVALID, "$[\"a??b\"]"},
    {DOC(", \"ver\\u0073ion\": 1"), VMENC_E_POLICY_INVALID, "$[\"ver?u0073ion\"]"},
    {DOC(", \"users\": [{\"name\": \"u\"}], \"permissions\": [{\"principal\": \"u\", "
         "\"object\": \"vc\", \"role\": \"ReadOnly\", \"role\": \"Admin\"}]"),
     VMENC_E_POLICY_INVALID, "$.permissions[0].role"},
    {"{\"version\": 1, \"inventory\": [" ROOT "], \"version\": 1}", VMENC_E_POLICY_INVALID,
     "$.version"},
    {DOC(", \"users\": [{\"name\": \"u\", \"a\": 1, \"b\": 1, \"c\": 1, \"d\": 1, \"e\": 1, "
         "\"f\": 1, \"g\": 1, \"h\": 1, \"i\": 1, \"j\": 1, \"k\": 1, \"l\": 1, \"m\": 1, "
         "\"n\": 1, \"o\": 1, \"p\": 1}]"),
     VMENC_E_POLICY_INVALID, "$.users[0].p"},
    {DOC(", \"roles\": {}"), VMENC_E_POLICY_INVALID, "$.roles"},
    {DOC(", \"roles\": [{\"name\": \"r\", \"privileges\": [], \"colour\": \"red\"}]"),
     VMENC_E_POLICY_INVALID, "$.roles[0].colour"},
    {DOC(", \"roles\": [{\"name\": \"r\", \"privileges\": [\"System.Read\", "
         "\"Cryptographer.Decrypt2\"]}]"),
     VMENC_E_POLICY_INVALID, "$.roles[0].privileges[1]"},
    {DOC(", \"roles\": [{\"name\": \"r\", \"privileges\": [\"System.Read\", \"System.Read\"]}]"),
     VMENC_E_EXISTS, "$.roles[0].privileges[1]"},
    {DOC(", \"roles\": [{\"name\": \"r\"}]"), VMENC_E_POLICY_INVALID, "$.roles[0].privileges"},
    {DOC(", \"roles\": [{\"name\": \"r\", \"privileges\": []}, {\"name\": \"r\", "
         "\"privileges\": []}]"),
     VMENC_E_EXISTS, "$.roles[1].name"},
    {DOC(", \"roles\": [{\"name\": \"Admin\", \"privileges\": []}]"), VMENC_E_EXISTS,
     "$.roles[0].name"},
    {DOC(", \"users\": [{\"name\": 5}]"), VMENC_E_POLICY_INVALID, "$.users[0].name"},
    {DOC(", \"users\": [\"alice\"]"), VMENC_E_POLICY_INVALID, "$.users[0]"},
    {DOC(", \"users\": [{\"name\": \"\"}]"), VMENC_E_POLICY_INVALID, "$.users[0].name"},
    {DOC(", \"users\": [{\"name\": \"a\\u0000b\"}]"), VMENC_E_POLICY_INVALID, "$.users[0].name"},
    {DOC(", \"users\": [{\"name\": \"tab\\there\"}]"), VMENC_E_POLICY_INVALID, "$.users[0].name"},
    {DOC(", \"users\": [{\"name\": \"a\"}], \"groups\": [{\"name\": \"a\"}]"), VMENC_E_EXISTS,
     "$.groups[0].name"},
    {DOC(", \"groups\": [{\"name\": \"g\", \"members\": [\"ghost\"]}]"), VMENC_E_NOT_FOUND,
     "$.groups[0].members[0]"},
    {DOC(", \"users\": [{\"name\": \"a\"}], \"groups\": [{\"name\": \"g\", \"members\": [\"a\", "
         "\"a\"]}]"),
     VMENC_E_EXISTS, "$.groups[0].members[1]"},
    {DOC(", \"groups\": [{\"name\": \"g\", \"members\": [\"g\"]}]"), VMENC_E_CYCLE,
     "$.groups[0].members[0]"},
    {DOC(", \"groups\": [{\"name\": \"g0\"}, {\"name\": \"g1\", \"members\": [\"g2\"]}, "
         "{\"name\": \"g2\", \"members\": [\"g1\"]}]"),
     VMENC_E_CYCLE, "$.groups[*"},
    {"{\"version\": 1, \"inventory\": [{\"name\": \"a\", \"type\": \"folder\", \"parent\": "
     "\"a\"}]}",
     VMENC_E_POLICY_INVALID, "$.inventory"},
    {INV("{\"name\": \"a\", \"type\": \"folder\", \"parent\": \"b\"}, {\"name\": \"b\", "
         "\"type\": \"folder\", \"parent\": \"a\"}"),
     VMENC_E_CYCLE, "$.inventory[*"},
    {INV("{\"name\": \"a\", \"type\": \"folder\", \"parent\": \"zz\"}"), VMENC_E_NOT_FOUND,
     "$.inventory[1].parent"},
    {INV("{\"name\": \"a\", \"type\": \"folder\"}"), VMENC_E_POLICY_INVALID,
     "$.inventory[1].parent"},
    {INV("{\"name\": \"r2\", \"type\": \"root\"}"), VMENC_E_POLICY_INVALID, "$.inventory[1].type"},
    {INV("{\"name\": \"a\", \"type\": \"planet\", \"parent\": \"vc\"}"), VMENC_E_POLICY_INVALID,
     "$.inventory[1].type"},
    {INV("{\"name\": \"vc\", \"type\": \"folder\", \"parent\": \"vc\"}"), VMENC_E_EXISTS,
     "$.inventory[1].name"},
    {INV("{\"name\": \"a\", \"type\": \"folder\", \"parent\": \"vc\", \"host\": \"h\"}"),
     VMENC_E_POLICY_INVALID, "$.inventory[1].host"},
    {INV("{\"name\": \"a\", \"type\": \"folder\", \"parent\": \"vc\", \"crypto_state\": "
         "\"safe\"}"),
     VMENC_E_POLICY_INVALID, "$.inventory[1].crypto_state"},
    {INV("{\"name\": \"h\", \"type\": \"host\", \"parent\": \"vc\", \"crypto_state\": \"on\"}"),
     VMENC_E_POLICY_INVALID, "$.inventory[1].crypto_state"},
    {INV("{\"name\": \"v\", \"type\": \"vm\", \"parent\": \"vc\"}, {\"name\": \"w\", \"type\": "
         "\"vm\", \"parent\": \"v\"}"),
     VMENC_E_POLICY_INVALID, "$.inventory[2].parent"},
    {INV("{\"name\": \"v\", \"type\": \"vm\", \"parent\": \"vc\", \"host\": \"nope\"}"),
     VMENC_E_NOT_FOUND, "$.inventory[1].host"},
    {INV("{\"name\": \"v\", \"type\": \"vm\", \"parent\": \"vc\", \"host\": \"vc\"}"),
     VMENC_E_POLICY_INVALID, "$.inventory[1].host"},
    {INV("{\"name\": \"v\", \"type\": \"vm\", \"parent\": \"vc\", \"encrypted\": 1}"),
     VMENC_E_POLICY_INVALID, "$.inventory[1].encrypted"},
    {INV("{\"name\": \"h\", \"type\": \"host\", \"parent\": \"vc\", \"crypto_state\": "
         "\"prepared\"}, {\"name\": \"v\", \"type\": \"vm\", \"parent\": \"vc\", \"host\": \"h\", "
         "\"encrypted\": true}"),
     VMENC_E_HOST_MODE, "$.inventory[2].host"},
    {DOC(", \"users\": [{\"name\": \"u\"}], \"permissions\": ["
         "{\"principal\": \"u\", \"object\": \"vc\", \"role\": \"Admin\"},"
         "{\"principal\": \"u\", \"object\": \"vc\", \"role\": \"ReadOnly\"}]"),
     VMENC_E_EXISTS, "$.permissions[1]"},
    {DOC(", \"users\": [{\"name\": \"u\"}, {\"name\": \"v\"}, {\"name\": \"w\"}, {\"name\": "
         "\"x\"}], \"permissions\": ["
         "{\"principal\": \"u\", \"object\": \"vc\", \"role\": \"Admin\"},"
         "{\"principal\": \"v\", \"object\": \"vc\", \"role\": \"Admin\"},"
         "{\"principal\": \"w\", \"object\": \"vc\", \"role\": \"Admin\"},"
         "{\"principal\": \"x\", \"object\": \"vc\", \"role\": \"Superuser\"}]"),
     VMENC_E_NOT_FOUND, "$.permissions[3].role"},
    {DOC(", \"permissions\": [{\"principal\": \"ghost\", \"object\": \"vc\", \"role\": "
         "\"Admin\"}]"),
     VMENC_E_NOT_FOUND, "$.permissions[0].principal"},
    {DOC(", \"users\": [{\"name\": \"u\"}], \"permissions\": [{\"principal\": \"u\", "
         "\"object\": \"nowhere\", \"role\": \"Admin\"}]"),
     VMENC_E_NOT_FOUND, "$.permissions[0].object"},
    {DOC(", \"users\": [{\"name\": \"u\"}], \"permissions\": [{\"principal\": \"u\", "
         "\"object\": \"vc\", \"role\": \"Admin\", \"propagate\": \"yes\"}]"),
     VMENC_E_POLICY_INVALID, "$.permissions[0].propagate"},
    {DOC(", \"users\": [{\"name\": \"u\"}], \"permissions\": [{\"principal\": \"u\", "
         "\"object\": \"vc\"}]"),
     VMENC_E_POLICY_INVALID, "$.permissions[0].role"},
    {DOC(", \"storage_policies\": [{\"name\": \"s\", \"encrypt\": true, \"file_classes\": "
         "[\"vm_home\", \"swap\"], \"key_provider\": \"k\"}]"),
     VMENC_E_POLICY_INVALID, "$.storage_policies[0].file_classes[1]"},
    {DOC(", \"storage_policies\": [{\"name\": \"s\", \"encrypt\": true, \"file_classes\": "
         "[\"vm_home\"]}]"),
     VMENC_E_POLICY_INVALID, "$.storage_policies[0]"},
    {DOC(", \"storage_policies\": [{\"name\": \"s\", \"encrypt\": true, \"file_classes\": "
         "[\"disks\"], \"key_provider\": \"k\"}]"),
     VMENC_E_POLICY_INVALID, "$.storage_policies[0]"},
    {DOC(", \"storage_policies\": [{\"name\": \"s\", \"encrypt\": false, "
         "\"migration_encryption\": \"sometimes\"}]"),
     VMENC_E_POLICY_INVALID, "$.storage_policies[0].migration_encryption"},
    {DOC(", \"storage_policies\": [{\"name\": \"s\", \"encrypt\": false}, {\"name\": \"s\", "
         "\"encrypt\": false}]"),
     VMENC_E_EXISTS, "$.storage_policies[1].name"},
    {DOC(", \"storage_policies\": [{\"name\": \"s\"}]"), VMENC_E_POLICY_INVALID,
     "$.storage_policies[0].encrypt"},
};

static void test_invalid_documents(void **state) {
    for (size_t i = 0; i < VMENC_ARRAY_LEN(k_bad); i++) {
        const bad *b = &k_bad[i];
        vmenc_policy *sentinel = (vmenc_policy *)&sentinel, *p = sentinel;
        vmenc_policy_error err = {.struct_size = sizeof(err)};
        vmenc_status st = vmenc_policy_load_json((const uint8_t *)b->doc, strlen(b->doc), &err, &p);
        if (st != b->status)
            fail_msg("case %zu: expected %s, got %s (%s: %s)", i, vmenc_status_name(b->status),
                     vmenc_status_name(st), err.path, err.message);
        if (st == VMENC_OK) {
            vmenc_policy_free(p);
            continue;
        }
        assert_ptr_equal(p, sentinel);
        assert_int_equal(err.status, st);
        assert_true(strlen(err.message) > 0);
        size_t n = strlen(b->path);
        bool ok = b->path[n - 1] == '*' ? strncmp(err.path, b->path, n - 1) == 0
                                        : strcmp(err.path, b->path) == 0;
        if (!ok)
            fail_msg("case %zu: expected path %s, got %s (%s)", i, b->path, err.path,
                     err.message);
        /* Without an error struct the status is the same. */
        assert_int_equal(vmenc_policy_load_json((const uint8_t *)b->doc, strlen(b->doc), NULL, &p),
                         st);
    }
}

static void test_limits_and_args(void **state) {
    vmenc_policy *p = NULL;
    vmenc_policy_error err = {.struct_size = sizeof(err)};
    /* A NUL byte inside the stated length. */
    static const char withnul[] = DOC("") "\0";
    assert_int_equal(vmenc_policy_load_json((const uint8_t *)withnul, sizeof(withnul), &err, &p),
                     VMENC_E_BAD_ENCODING);
    assert_int_equal(err.offset, sizeof(withnul) - 2);
    /* Only the stated length is read: a valid prefix of a longer buffer. */
    static const char longer[] = DOC("") "garbage";
    assert_int_equal(vmenc_policy_load_json((const uint8_t *)longer, strlen(DOC("")), &err, &p),
                     VMENC_OK);
    vmenc_policy_free(p);
    p = NULL;
    /* Over the maximum size. */
    size_t big = VMENC_POLICY_MAX_DOCUMENT + 1;
    uint8_t *buf = malloc(big);
    assert_non_null(buf);
    memset(buf, ' ', big);
    assert_int_equal(vmenc_policy_load_json(buf, big, &err, &p), VMENC_E_TOO_LARGE);
    free(buf);
    assert_null(p);
    /* Argument errors. */
    assert_int_equal(vmenc_policy_load_json(NULL, 5, &err, &p), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_policy_load_json((const uint8_t *)"{}", 2, &err, NULL),
                     VMENC_E_INVALID_ARG);
    vmenc_policy_error small = {.struct_size = 4};
    assert_int_equal(vmenc_policy_load_json((const uint8_t *)"{}", 2, &small, &p),
                     VMENC_E_ABI_VERSION);
    /* A too-long name. */
    char doc[1024];
    char name[VMENC_POLICY_NAME_MAX + 2];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    snprintf(doc, sizeof(doc), DOC(", \"users\": [{\"name\": \"%s\"}]"), name);
    assert_int_equal(vmenc_policy_load_json((const uint8_t *)doc, strlen(doc), &err, &p),
                     VMENC_E_POLICY_INVALID);
    assert_string_equal(err.path, "$.users[0].name");
    name[VMENC_POLICY_NAME_MAX] = '\0';
    snprintf(doc, sizeof(doc), DOC(", \"users\": [{\"name\": \"%s\"}]"), name);
    assert_int_equal(vmenc_policy_load_json((const uint8_t *)doc, strlen(doc), &err, &p),
                     VMENC_OK);
    vmenc_policy_free(p);
}

/* Appends to a growing document. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sadd(sbuf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        assert_true(n >= 0);
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)n + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
}

static void test_model_limits(void **state) {
    /* Inventory depth: programmatically... */
    vmenc_policy *p = NULL;
    assert_int_equal(vmenc_policy_new("root", &p), VMENC_OK);
    char name[32], parent[32] = "root";
    for (unsigned d = 1; d <= VMENC_POLICY_MAX_DEPTH; d++) {
        snprintf(name, sizeof(name), "f%u", d);
        assert_int_equal(vmenc_policy_add_object(p, name, VMENC_OBJ_FOLDER, parent), VMENC_OK);
        memcpy(parent, name, sizeof(name));
    }
    assert_int_equal(vmenc_policy_add_object(p, "too-deep", VMENC_OBJ_VM, parent), VMENC_E_LIMIT);
    /* ...and in a document (children listed before their parents). */
    uint8_t *doc;
    size_t len;
    save(p, &doc, &len);
    vmenc_policy *q = load_ok((const char *)doc);
    vmenc_policy_buffer_free(doc);
    vmenc_policy_free(q);
    vmenc_policy_free(p);
    sbuf b = {NULL, 0, 0};
    sadd(&b, "{\"version\": 1, \"inventory\": [");
    for (unsigned d = VMENC_POLICY_MAX_DEPTH + 1; d >= 1; d--)
        sadd(&b, "{\"name\": \"f%u\", \"type\": \"folder\", \"parent\": \"f%u\"}, ", d,
             d - 1);
    sadd(&b, "{\"name\": \"f0\", \"type\": \"root\"}]}");
    vmenc_policy_error err = {.struct_size = sizeof(err)};
    assert_int_equal(vmenc_policy_load_json((const uint8_t *)b.p, b.len, &err, &q), VMENC_E_LIMIT);
    assert_string_equal(err.path, "$.inventory[0].parent");

    /* Group nesting: a chain longer than the per-principal bound. */
    b.len = 0;
    sadd(&b, "{\"version\": 1, \"users\": [{\"name\": \"u\"}], \"groups\": [");
    unsigned chain = VMENC_POLICY_MAX_GROUPS_PER_PRINCIPAL + 1;
    for (unsigned g = 0; g < chain; g++)
        if (g == 0)
            sadd(&b, "{\"name\": \"g0\", \"members\": [\"u\"]}");
        else
            sadd(&b, ", {\"name\": \"g%u\", \"members\": [\"g%u\"]}", g, g - 1);
    sadd(&b, "], \"inventory\": [{\"name\": \"vc\", \"type\": \"root\"}]}");
    assert_int_equal(vmenc_policy_load_json((const uint8_t *)b.p, b.len, &err, &q), VMENC_E_LIMIT);
    assert_string_equal(err.path, "$.groups");
    /* One group fewer is fine, and u is then in all of them. */
    b.len = 0;
    sadd(&b, "{\"version\": 1, \"users\": [{\"name\": \"u\"}], \"groups\": [");
    for (unsigned g = 0; g < chain - 1; g++)
        if (g == 0)
            sadd(&b, "{\"name\": \"g0\", \"members\": [\"u\"]}");
        else
            sadd(&b, ", {\"name\": \"g%u\", \"members\": [\"g%u\"]}", g, g - 1);
    sadd(&b, "], \"inventory\": [{\"name\": \"vc\", \"type\": \"root\"}], "
             "\"permissions\": [{\"principal\": \"g%u\", \"object\": \"vc\", \"role\": "
             "\"ReadOnly\"}]}",
         chain - 2);
    q = NULL;
    assert_int_equal(vmenc_policy_load_json((const uint8_t *)b.p, b.len, &err, &q), VMENC_OK);
    int v = 0;
    assert_int_equal(vmenc_policy_has_privilege(q, "u", "vc", VMENC_PRIV_SYSTEM_READ, &v), VMENC_OK);
    assert_int_equal(v, 1);
    /* Programmatically the same bound holds, and a refused member changes nothing. */
    assert_int_equal(vmenc_policy_add_group(q, "top"), VMENC_OK);
    snprintf(name, sizeof(name), "g%u", chain - 2);
    assert_int_equal(vmenc_policy_add_member(q, "top", name), VMENC_E_LIMIT);
    assert_int_equal(vmenc_policy_has_privilege(q, "u", "vc", VMENC_PRIV_SYSTEM_READ, &v), VMENC_OK);
    assert_int_equal(v, 1);
    vmenc_policy_free(q);
    free(b.p);
}

static void test_reload(void **state) {
    vmenc_policy *p = load_ok(k_doc);
    vmenc_policy_error err = {.struct_size = sizeof(err)};
    vmenc_policy_request keys = {.struct_size = sizeof(keys), .op = VMENC_OP_MANAGE_KEYS};
    vmenc_policy_decision d = {.struct_size = sizeof(d)};
    assert_int_equal(vmenc_policy_check(p, "bob", &keys, &d), VMENC_OK);
    /* A bad document changes nothing. */
    static const char bad_doc[] = DOC(", \"users\": [{\"name\": \"bob\"}], \"permissions\": "
                                      "[{\"principal\": \"bob\", \"object\": \"vc\", \"role\": "
                                      "\"Nope\"}]");
    assert_int_equal(vmenc_policy_reload_json(p, (const uint8_t *)bad_doc, strlen(bad_doc), &err),
                     VMENC_E_NOT_FOUND);
    assert_string_equal(err.path, "$.permissions[0].role");
    assert_int_equal(vmenc_policy_check(p, "bob", &keys, &d), VMENC_OK);
    /* A good one replaces everything. */
    static const char good_doc[] = DOC(", \"users\": [{\"name\": \"bob\"}], \"permissions\": "
                                       "[{\"principal\": \"bob\", \"object\": \"vc\", \"role\": "
                                       "\"ReadOnly\"}]");
    assert_int_equal(
        vmenc_policy_reload_json(p, (const uint8_t *)good_doc, strlen(good_doc), &err), VMENC_OK);
    assert_int_equal(vmenc_policy_check(p, "bob", &keys, &d), VMENC_E_DENIED);
    vmenc_policy_request on = {.struct_size = sizeof(on), .op = VMENC_OP_POWER_ON, .vm = "vm1"};
    assert_int_equal(vmenc_policy_check(p, "bob", &on, &d), VMENC_E_NOT_FOUND);
    vmenc_policy_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_programmatic_equals_loaded),
        cmocka_unit_test(test_invalid_documents),
        cmocka_unit_test(test_limits_and_args),
        cmocka_unit_test(test_model_limits),
        cmocka_unit_test(test_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
