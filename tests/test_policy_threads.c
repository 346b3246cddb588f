/*
 * tests/test_policy_threads.c - many readers check while a writer updates:
 * every decision a reader sees must be exactly one a single-threaded run
 * gives for the state before or after a whole update, never a mixture. Run
 * under -DVMENC_TSAN=ON to let ThreadSanitizer look for races too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "vmenc/vmenc.h"

#define NUM_READERS 4

/* Document A: alice is Admin on dc (clone allowed). Document B: alice is
 * Admin on vm1 only, NoAccess on the folder (clone denied at the folder).
 * A reader that saw the folder of one and the VM of the other would get
 * a decision matching neither. */
#define INV                                                                       \
    "\"inventory\": [{\"name\": \"vc\", \"type\": \"root\"},"                     \
    "{\"name\": \"dc\", \"type\": \"datacenter\", \"parent\": \"vc\"},"           \
    "{\"name\": \"f\", \"type\": \"folder\", \"parent\": \"dc\"},"                \
    "{\"name\": \"vm1\", \"type\": \"vm\", \"parent\": \"f\"}]"
static const char k_doc_a[] =
    "{\"version\": 1, \"users\": [{\"name\": \"alice\"}], " INV ", \"permissions\": ["
    "{\"principal\": \"alice\", \"object\": \"dc\", \"role\": \"Admin\"}]}";
static const char k_doc_b[] =
    "{\"version\": 1, \"users\": [{\"name\": \"alice\"}], " INV ", \"permissions\": ["
    "{\"principal\": \"alice\", \"object\": \"vm1\", \"role\": \"Admin\"},"
    "{\"principal\": \"alice\", \"object\": \"f\", \"role\": \"NoAccess\", \"propagate\": false}]}";

typedef struct shared {
    vmenc_policy *p;
    atomic_int stop;
    vmenc_policy_decision ref[2];
    vmenc_status ref_st[2];
    atomic_long seen[2];
    atomic_int bad;
} shared;

static const vmenc_policy_request k_clone = {.struct_size = sizeof(vmenc_policy_request),
                                             .op = VMENC_OP_CLONE_VM, .vm = "vm1", .folder = "f"};

static bool same_decision(const vmenc_policy_decision *a, const vmenc_policy_decision *b) {
    return a->allowed == b->allowed && a->status == b->status &&
           a->missing_privilege == b->missing_privilege &&
           strcmp(a->missing_object, b->missing_object) == 0 &&
           strcmp(a->message, b->message) == 0;
}

/* wait_for_readers blocks until the readers have made some checks, so the
 * writer's updates really overlap reads however the scheduler orders the
 * threads on a loaded machine (no timing assumption). */
static void wait_for_readers(shared *s) {
    while (atomic_load(&s->seen[0]) + atomic_load(&s->seen[1]) + atomic_load(&s->bad) < NUM_READERS)
        sched_yield();
}

static void *reader_reload(void *arg) {
    shared *s = arg;
    while (!atomic_load(&s->stop)) {
        vmenc_policy_decision d = {.struct_size = sizeof(d)};
        vmenc_status st = vmenc_policy_check(s->p, "alice", &k_clone, &d);
        int which = -1;
        for (int i = 0; i < 2; i++)
            if (st == s->ref_st[i] && same_decision(&d, &s->ref[i]))
                which = i;
        if (which < 0)
            atomic_fetch_add(&s->bad, 1);
        else
            atomic_fetch_add(&s->seen[which], 1);
    }
    return NULL;
}

static void test_readers_during_reload(void **state) {
    shared s = {.stop = 0, .bad = 0};
    const char *docs[2] = {k_doc_a, k_doc_b};
    /* Reference decisions, single-threaded. */
    for (int i = 0; i < 2; i++) {
        vmenc_policy *q = NULL;
        assert_int_equal(vmenc_policy_load_json((const uint8_t *)docs[i], strlen(docs[i]), NULL, &q),
                         VMENC_OK);
        s.ref[i].struct_size = sizeof(s.ref[i]);
        s.ref_st[i] = vmenc_policy_check(q, "alice", &k_clone, &s.ref[i]);
        vmenc_policy_free(q);
    }
    assert_int_equal(s.ref_st[0], VMENC_OK);
    assert_int_equal(s.ref_st[1], VMENC_E_DENIED);
    assert_string_equal(s.ref[1].missing_object, "f");

    assert_int_equal(vmenc_policy_load_json((const uint8_t *)k_doc_a, strlen(k_doc_a), NULL, &s.p),
                     VMENC_OK);
    pthread_t t[NUM_READERS];
    for (int i = 0; i < NUM_READERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, reader_reload, &s), 0);
    wait_for_readers(&s);
    for (int k = 0; k < 400; k++) {
        const char *d = docs[(k + 1) & 1];
        assert_int_equal(vmenc_policy_reload_json(s.p, (const uint8_t *)d, strlen(d), NULL),
                         VMENC_OK);
    }
    atomic_store(&s.stop, 1);
    for (int i = 0; i < NUM_READERS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&s.bad), 0);
    /* Readers did run (the writer ended on document A after B). */
    assert_true(atomic_load(&s.seen[0]) + atomic_load(&s.seen[1]) > 0);
    vmenc_policy_free(s.p);
}

/* Fine-grained writer: each call is atomic. The writer grows the inventory
 * and principal tables (reallocations), rebuilds group closures, and flips
 * one permission. A reader's decision must be one of the two it can be, and
 * its fields and sentence must agree. */
static void *reader_grants(void *arg) {
    shared *s = arg;
    vmenc_policy_request on = {.struct_size = sizeof(on), .op = VMENC_OP_POWER_ON, .vm = "vm1"};
    while (!atomic_load(&s->stop)) {
        vmenc_policy_decision d = {.struct_size = sizeof(d)};
        vmenc_status st = vmenc_policy_check(s->p, "bob", &on, &d);
        bool ok = false;
        if (st == VMENC_OK)
            ok = d.allowed == 1 && d.missing_privilege == VMENC_PRIV_NONE;
        else if (st == VMENC_E_DENIED)
            ok = d.allowed == 0 && d.missing_privilege == VMENC_PRIV_VM_POWER_ON &&
                 strcmp(d.missing_object, "vm1") == 0 &&
                 strstr(d.message, "VirtualMachine.Interact.PowerOn") != NULL;
        if (!ok)
            atomic_fetch_add(&s->bad, 1);
        else
            atomic_fetch_add(&s->seen[st == VMENC_OK ? 0 : 1], 1);
        int v;
        if (vmenc_policy_has_privilege(s->p, "bob", "vc", VMENC_PRIV_SYSTEM_READ, &v) != VMENC_OK)
            atomic_fetch_add(&s->bad, 1);
    }
    return NULL;
}

static void test_readers_during_grants(void **state) {
    shared s = {.stop = 0, .bad = 0};
    assert_int_equal(vmenc_policy_load_json((const uint8_t *)k_doc_a, strlen(k_doc_a), NULL, &s.p),
                     VMENC_OK);
    assert_int_equal(vmenc_policy_add_user(s.p, "bob"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_group(s.p, "g"), VMENC_OK);
    assert_int_equal(vmenc_policy_add_member(s.p, "g", "bob"), VMENC_OK);
    pthread_t t[NUM_READERS];
    for (int i = 0; i < NUM_READERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, reader_grants, &s), 0);
    wait_for_readers(&s);
    char name[64];
    for (int k = 0; k < 1500; k++) {
        snprintf(name, sizeof(name), "obj%d", k);
        assert_int_equal(vmenc_policy_add_object(s.p, name, VMENC_OBJ_FOLDER, "dc"), VMENC_OK);
        snprintf(name, sizeof(name), "user%d", k);
        assert_int_equal(vmenc_policy_add_user(s.p, name), VMENC_OK);
        assert_int_equal(vmenc_policy_add_member(s.p, "g", name), VMENC_OK);
        if (k & 1)
            assert_int_equal(vmenc_policy_grant(s.p, "g", "vm1", VMENC_ROLE_ADMIN, 1), VMENC_OK);
        else
            assert_int_equal(vmenc_policy_revoke(s.p, "g", "vm1"),
                             k == 0 ? VMENC_E_NOT_FOUND : VMENC_OK);
    }
    atomic_store(&s.stop, 1);
    for (int i = 0; i < NUM_READERS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&s.bad), 0);
    vmenc_policy_free(s.p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readers_during_reload),
        cmocka_unit_test(test_readers_during_grants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
