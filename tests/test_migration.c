/*
 * tests/test_migration.c - encrypted migration between hosts esx01 and
 * esx02 of the VM fixture: round trips over memory and a pipe, every stream
 * attack as its own test (tampered payload and header, reordering, replay,
 * duplication, drop, truncation, a forged or foreign stream, a wrong ready
 * token), the receiver's checks before streaming (policy, key provider,
 * mode), the audit trail on both sides, and the matrix of migration modes
 * x plain/encrypted VM x peer able/unable to encrypt.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vm/format/migrate_stream.h"
#include "vm/vm_internal.h"
#include "vm_fixture.h"

#define OK(call) assert_int_equal((call), VMENC_OK)

static vmfix g_f;
static vmenc_host *g_dest; /* esx02, same key manager, policy and audit */
static int g_vm_seq;

static int setup(void **state) {
    (void)state;
    if (vmfix_setup(&g_f, VMENC_HOST_NO_SYNC) != VMENC_OK)
        return -1;
    vmenc_storage_policy_spec sp = {.struct_size = sizeof(sp), .name = "plain-disabled",
                                    .migration = VMENC_MIGRATION_DISABLED};
    if (vmenc_policy_set_storage_policy(g_f.policy, &sp) != VMENC_OK)
        return -1;
    sp.name = "plain-required";
    sp.migration = VMENC_MIGRATION_REQUIRED;
    if (vmenc_policy_set_storage_policy(g_f.policy, &sp) != VMENC_OK)
        return -1;
    vmenc_storage_policy_spec ep = {.struct_size = sizeof(ep), .name = "encrypted-disabled", .encrypt = 1,
                                    .file_classes = VMENC_FILE_VM_HOME | VMENC_FILE_DISKS,
                                    .key_provider = "kms-a", .migration = VMENC_MIGRATION_DISABLED};
    if (vmenc_policy_set_storage_policy(g_f.policy, &ep) != VMENC_OK)
        return -1;
    vmenc_host_options ho = {.struct_size = sizeof(ho), .host_id = "esx02", .keymgr = g_f.mgr,
                             .policy = g_f.policy, .audit = g_f.audit, .kms_timeout_ms = 5000,
                             .flags = VMENC_HOST_NO_SYNC};
    return vmenc_host_new(&ho, &g_dest) == VMENC_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    vmenc_host_free(g_dest);
    vmfix_teardown(&g_f);
    return 0;
}

/* ---- an in-memory transport -------------------------------------------------------- */

typedef struct wire {
    uint8_t *buf;
    size_t len, cap, pos;
} wire;

static vmenc_status wire_write(void *ctx, const uint8_t *data, size_t len) {
    wire *w = ctx;
    if (w->len + len > w->cap) {
        w->cap = (w->len + len) * 2;
        w->buf = realloc(w->buf, w->cap);
        assert_non_null(w->buf);
    }
    memcpy(w->buf + w->len, data, len);
    w->len += len;
    return VMENC_OK;
}

static vmenc_status wire_read(void *ctx, uint8_t *buf, size_t cap, size_t *out_len) {
    wire *w = ctx;
    size_t n = w->len - w->pos < cap ? w->len - w->pos : cap;
    if (n > 7)
        n = n / 2 + 1; /* short reads: the receiver must reassemble */
    memcpy(buf, w->buf + w->pos, n);
    w->pos += n;
    *out_len = n;
    return VMENC_OK;
}

/* Frames of a captured stream, to cut and splice. */
typedef struct frames {
    size_t num;
    size_t off[64], len[64];
} frames;

static void split(const wire *w, bool encrypted, frames *fr) {
    fr->num = 0;
    for (size_t pos = 0; pos < w->len;) {
        uint32_t len = vmenc_load_u32_be(w->buf + pos + 4);
        size_t n = MIG_HEADER_BYTES + len + (encrypted ? MIG_TAG_BYTES : 0);
        assert_true(fr->num < 64 && pos + n <= w->len);
        fr->off[fr->num] = pos;
        fr->len[fr->num++] = n;
        pos += n;
    }
}

/* splice builds a stream from frames of |src| in the order |order| (-1
 * ends the list). */
static void splice(const wire *src, const frames *fr, const int *order, wire *out) {
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; order[i] >= 0; i++)
        (void)wire_write(out, src->buf + fr->off[order[i]], fr->len[order[i]]);
}

/* ---- helpers ---------------------------------------------------------------------------- */

static vmenc_vm *new_vm(const char *policy) {
    char name[32];
    snprintf(name, sizeof(name), "mig%d", g_vm_seq++);
    vmenc_vm *vm = NULL;
    OK(vmfix_create(&g_f, "alice", name, policy, &vm));
    return vm;
}

static vmenc_status sender_for(vmenc_vm *vm, const char *who, uint32_t flags, wire *w, vmenc_migration_sender **out) {
    vmenc_migration_sender_options so = {.struct_size = sizeof(so), .principal = who, .dest_host = "esx02",
                                         .flags = flags, .fd = -1, .write_fn = wire_write, .io_ctx = w};
    return vmenc_migration_sender_new(vm, &so, out);
}

static vmenc_status receiver_for(vmenc_host *host, const char *who, const uint8_t *ho, size_t ho_len,
                                 uint32_t flags, wire *w, vmenc_migration_receiver **out) {
    vmenc_migration_receiver_options ro = {.struct_size = sizeof(ro), .principal = who, .handover = ho,
                                           .handover_len = ho_len, .flags = flags, .fd = -1,
                                           .read_fn = wire_read, .io_ctx = w};
    return vmenc_migration_receiver_new(host, &ro, out);
}

static void chunk_data(uint8_t *buf, size_t len, unsigned i) {
    for (size_t j = 0; j < len; j++)
        buf[j] = (uint8_t)(j * 7 + i * 13 + 1);
}

#define NUM_CHUNKS 6
static const size_t k_sizes[NUM_CHUNKS] = {4096, 4096, 1, 65536, 3000, 200000};
static const vmenc_migration_kind k_kinds[NUM_CHUNKS] = {VMENC_MIGRATION_MEMORY, VMENC_MIGRATION_MEMORY,
                                                         VMENC_MIGRATION_DEVICE_STATE, VMENC_MIGRATION_DISK,
                                                         VMENC_MIGRATION_MEMORY, VMENC_MIGRATION_DISK};

/* A captured migration: the wire, the handover and the ready token. */
typedef struct capture {
    wire w;
    uint8_t ho[VMENC_MIGRATION_HANDOVER_MAX];
    size_t ho_len;
    bool encrypted;
} capture;

/* capture_stream runs a whole sender side for |vm| into |c| (frames:
 * start, NUM_CHUNKS data, end). */
static void capture_stream(vmenc_vm *vm, capture *c) {
    memset(c, 0, sizeof(*c));
    vmenc_migration_sender *s = NULL;
    OK(sender_for(vm, "alice", VMENC_MIGRATION_POWERED_ON, &c->w, &s));
    OK(vmenc_migration_sender_get_handover(s, c->ho, sizeof(c->ho), &c->ho_len));
    uint8_t ready[VMENC_MIGRATION_READY_BYTES];
    mig_handover h;
    OK(mig_handover_parse(c->ho, c->ho_len, &h));
    OK(mig_ready_token(h.key, h.id, ready));
    c->encrypted = h.flags & MIG_HO_ENCRYPTED;
    mig_handover_cleanup(&h);
    OK(vmenc_migration_sender_begin(s, ready, sizeof(ready)));
    uint8_t *buf = malloc(200000);
    for (unsigned i = 0; i < NUM_CHUNKS; i++) {
        chunk_data(buf, k_sizes[i], i);
        OK(vmenc_migration_send(s, k_kinds[i], (uint64_t)i << 12, buf, k_sizes[i]));
    }
    free(buf);
    OK(vmenc_migration_sender_finish(s));
    vmenc_migration_sender_free(s);
}

/* receive_all receives from |w| with |c|'s handover; returns the first
 * failure (or VMENC_OK at the end) and the number of good chunks. */
static vmenc_status receive_all(const capture *c, wire *w, size_t *out_good, vmenc_migration_failure *why) {
    vmenc_migration_receiver *r = NULL;
    w->pos = 0;
    OK(receiver_for(g_dest, "alice", c->ho, c->ho_len, 0, w, &r));
    uint8_t *want = malloc(200000);
    vmenc_status s = VMENC_OK;
    size_t good = 0;
    for (;;) {
        vmenc_migration_chunk ch = {.struct_size = sizeof(ch)};
        s = vmenc_migration_receive(r, &ch);
        if (s != VMENC_OK || ch.end)
            break;
        assert_true(good < NUM_CHUNKS);
        assert_int_equal(ch.kind, k_kinds[good]);
        assert_int_equal(ch.address, (uint64_t)good << 12);
        assert_int_equal(ch.len, k_sizes[good]);
        chunk_data(want, ch.len, (unsigned)good);
        assert_memory_equal(ch.data, want, ch.len);
        good++;
    }
    free(want);
    vmenc_migration_info info = {.struct_size = sizeof(info)};
    OK(vmenc_migration_receiver_get_info(r, &info));
    if (why != NULL)
        *why = info.failure;
    if (s == VMENC_OK) {
        assert_true(info.finished);
        assert_int_equal(good, NUM_CHUNKS);
    }
    vmenc_migration_receiver_free(r);
    *out_good = good;
    return s;
}

static size_t count(const char *op, const char *outcome) {
    const char *needles[] = {op, outcome, NULL};
    return vmfix_count_events(&g_f, needles);
}

/* attack runs a captured encrypted stream rearranged by |order| and
 * expects |status| with |why| after |good| chunks. */
static void attack(const int *order, vmenc_status status, vmenc_migration_failure why, size_t good) {
    vmenc_vm *vm = new_vm("encrypted");
    capture c;
    capture_stream(vm, &c);
    assert_true(c.encrypted);
    frames fr;
    split(&c.w, true, &fr);
    assert_int_equal(fr.num, NUM_CHUNKS + 2);
    wire w;
    splice(&c.w, &fr, order, &w);
    size_t f0 = count("migration.receive", "failed"), got = 0;
    vmenc_migration_failure f = VMENC_MIGRATION_FAIL_NONE;
    assert_int_equal(receive_all(&c, &w, &got, &f), status);
    assert_int_equal(f, why);
    assert_int_equal(got, good);
    assert_int_equal(count("migration.receive", "failed") - f0, 1);
    free(w.buf);
    free(c.w.buf);
    vmenc_vm_free(vm);
}

/* ---- round trips ---------------------------------------------------------------------------- */

static void test_encrypted_round_trip(void **state) {
    (void)state;
    vmenc_vm *vm = new_vm("encrypted");
    size_t s0 = count("migration.send", "success"), r0 = count("migration.receive", "success");
    capture c;
    capture_stream(vm, &c);
    assert_true(c.encrypted);
    /* No chunk's plaintext is on the wire. */
    uint8_t probe[64];
    chunk_data(probe, sizeof(probe), 3);
    assert_false(vmfix_contains(c.w.buf, c.w.len, probe, sizeof(probe)));
    size_t good = 0;
    OK(receive_all(&c, &c.w, &good, NULL));
    /* start + end on each side */
    assert_int_equal(count("migration.send", "success") - s0, 2);
    assert_int_equal(count("migration.receive", "success") - r0, 2);
    free(c.w.buf);
    vmenc_vm_free(vm);
}

typedef struct pipe_job {
    vmenc_migration_sender *s;
    vmenc_status status;
} pipe_job;

static void *pipe_sender(void *arg) {
    pipe_job *j = arg;
    uint8_t *page = malloc(65536);
    vmenc_status s = VMENC_OK;
    for (unsigned i = 0; i < 64 && s == VMENC_OK; i++) {
        chunk_data(page, 65536, i);
        s = vmenc_migration_send(j->s, VMENC_MIGRATION_MEMORY, (uint64_t)i * 65536, page, 65536);
    }
    if (s == VMENC_OK)
        s = vmenc_migration_sender_finish(j->s);
    free(page);
    j->status = s;
    return NULL;
}

static void test_fd_transport(void **state) {
    (void)state;
    vmenc_vm *vm = new_vm("encrypted");
    int p[2];
    assert_int_equal(pipe(p), 0);
    vmenc_migration_sender_options so = {.struct_size = sizeof(so), .principal = "alice", .dest_host = "esx02",
                                         .fd = p[1]};
    vmenc_migration_sender *s = NULL;
    OK(vmenc_migration_sender_new(vm, &so, &s));
    uint8_t ho[VMENC_MIGRATION_HANDOVER_MAX], ready[VMENC_MIGRATION_READY_BYTES];
    size_t ho_len = 0;
    OK(vmenc_migration_sender_get_handover(s, ho, sizeof(ho), &ho_len));
    vmenc_migration_receiver_options ro = {.struct_size = sizeof(ro), .principal = "alice", .handover = ho,
                                           .handover_len = ho_len, .fd = p[0]};
    vmenc_migration_receiver *r = NULL;
    OK(vmenc_migration_receiver_new(g_dest, &ro, &r));
    OK(vmenc_migration_receiver_get_ready(r, ready, sizeof(ready)));
    OK(vmenc_migration_sender_begin(s, ready, sizeof(ready)));
    pipe_job job = {.s = s};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, pipe_sender, &job), 0);
    uint8_t *want = malloc(65536);
    unsigned n = 0;
    for (;;) {
        vmenc_migration_chunk ch = {.struct_size = sizeof(ch)};
        OK(vmenc_migration_receive(r, &ch));
        if (ch.end)
            break;
        chunk_data(want, 65536, n);
        assert_int_equal(ch.len, 65536);
        assert_memory_equal(ch.data, want, 65536);
        n++;
    }
    pthread_join(t, NULL);
    OK(job.status);
    assert_int_equal(n, 64);
    vmenc_migration_info si = {.struct_size = sizeof(si)}, ri = {.struct_size = sizeof(ri)};
    OK(vmenc_migration_sender_get_info(s, &si));
    OK(vmenc_migration_receiver_get_info(r, &ri));
    assert_memory_equal(si.migration_id, ri.migration_id, VMENC_MIGRATION_ID_BYTES);
    assert_int_equal(si.num_bytes, ri.num_bytes);
    assert_true(si.finished && ri.finished && ri.encrypted && ri.vm_encrypted);
    free(want);
    vmenc_migration_sender_free(s);
    vmenc_migration_receiver_free(r);
    close(p[0]);
    close(p[1]);
    vmenc_vm_free(vm);
}

/* ---- stream attacks (frames: 0 start, 1..6 data, 7 end) ---------------------------------------- */

static void test_attack_tampered_payload(void **state) {
    (void)state;
    vmenc_vm *vm = new_vm("encrypted");
    capture c;
    capture_stream(vm, &c);
    frames fr;
    split(&c.w, true, &fr);
    c.w.buf[fr.off[3] + MIG_HEADER_BYTES + 10] ^= 0x01;
    size_t good = 0;
    vmenc_migration_failure f;
    assert_int_equal(receive_all(&c, &c.w, &good, &f), VMENC_E_AUTH);
    assert_int_equal(f, VMENC_MIGRATION_FAIL_TAMPERED);
    assert_int_equal(good, 2);
    free(c.w.buf);
    vmenc_vm_free(vm);
}

static void test_attack_tampered_header(void **state) {
    (void)state;
    vmenc_vm *vm = new_vm("encrypted");
    capture c;
    capture_stream(vm, &c);
    frames fr;
    split(&c.w, true, &fr);
    c.w.buf[fr.off[2] + 23] ^= 0x10; /* the address: a page moved elsewhere */
    size_t good = 0;
    vmenc_migration_failure f;
    assert_int_equal(receive_all(&c, &c.w, &good, &f), VMENC_E_AUTH);
    assert_int_equal(f, VMENC_MIGRATION_FAIL_TAMPERED);
    assert_int_equal(good, 1);
    free(c.w.buf);
    vmenc_vm_free(vm);
}

static void test_attack_tampered_sequence(void **state) {
    (void)state;
    vmenc_vm *vm = new_vm("encrypted");
    capture c;
    capture_stream(vm, &c);
    frames fr;
    split(&c.w, true, &fr);
    c.w.buf[fr.off[2] + 15] ^= 0x03; /* seq 2 -> 1: a relabelled frame */
    size_t good = 0;
    vmenc_migration_failure f;
    assert_int_equal(receive_all(&c, &c.w, &good, &f), VMENC_E_AUTH);
    assert_int_equal(f, VMENC_MIGRATION_FAIL_TAMPERED);
    free(c.w.buf);
    vmenc_vm_free(vm);
}

static void test_attack_reordered(void **state) {
    (void)state;
    const int order[] = {0, 1, 3, 2, 4, 5, 6, 7, -1};
    attack(order, VMENC_E_AUTH, VMENC_MIGRATION_FAIL_GAP, 1);
}

static void test_attack_replayed(void **state) {
    (void)state;
    const int order[] = {0, 1, 2, 3, 1, 4, 5, 6, 7, -1};
    attack(order, VMENC_E_AUTH, VMENC_MIGRATION_FAIL_REPLAYED, 3);
}

static void test_attack_duplicated(void **state) {
    (void)state;
    const int order[] = {0, 1, 2, 2, 3, 4, 5, 6, 7, -1};
    attack(order, VMENC_E_AUTH, VMENC_MIGRATION_FAIL_REPLAYED, 2);
}

static void test_attack_dropped(void **state) {
    (void)state;
    const int order[] = {0, 1, 2, 4, 5, 6, 7, -1};
    attack(order, VMENC_E_AUTH, VMENC_MIGRATION_FAIL_GAP, 2);
}

static void test_attack_dropped_start(void **state) {
    (void)state;
    const int order[] = {1, 2, 3, 4, 5, 6, 7, -1};
    attack(order, VMENC_E_AUTH, VMENC_MIGRATION_FAIL_GAP, 0);
}

static void test_attack_truncated_before_end(void **state) {
    (void)state;
    const int order[] = {0, 1, 2, 3, 4, 5, 6, -1};
    attack(order, VMENC_E_TRUNCATED, VMENC_MIGRATION_FAIL_TRUNCATED, NUM_CHUNKS);
}

static void test_attack_truncated_mid_frame(void **state) {
    (void)state;
    vmenc_vm *vm = new_vm("encrypted");
    capture c;
    capture_stream(vm, &c);
    frames fr;
    split(&c.w, true, &fr);
    c.w.len = fr.off[4] + 100;
    size_t good = 0;
    vmenc_migration_failure f;
    assert_int_equal(receive_all(&c, &c.w, &good, &f), VMENC_E_TRUNCATED);
    assert_int_equal(f, VMENC_MIGRATION_FAIL_TRUNCATED);
    assert_int_equal(good, 3);
    free(c.w.buf);
    vmenc_vm_free(vm);
}

static void test_attack_end_moved_early(void **state) {
    (void)state;
    /* The end frame right after chunk 2: its sequence number is wrong. */
    const int order[] = {0, 1, 2, 7, -1};
    attack(order, VMENC_E_AUTH, VMENC_MIGRATION_FAIL_GAP, 2);
}

static void test_attack_foreign_stream(void **state) {
    (void)state;
    /* A second migration of the same VM: its frames under the first one's
     * handover do not authenticate, from the very first. */
    vmenc_vm *vm = new_vm("encrypted");
    capture a, b;
    capture_stream(vm, &a);
    capture_stream(vm, &b);
    size_t good = 0;
    vmenc_migration_failure f;
    assert_int_equal(receive_all(&a, &b.w, &good, &f), VMENC_E_AUTH);
    assert_int_equal(f, VMENC_MIGRATION_FAIL_TAMPERED);
    assert_int_equal(good, 0);
    /* Nor does a foreign frame spliced into a good stream. */
    frames fa, fb;
    split(&a.w, true, &fa);
    split(&b.w, true, &fb);
    wire w = {0};
    for (size_t i = 0; i < fa.num; i++) {
        const wire *src = i == 3 ? &b.w : &a.w;
        const frames *fr = i == 3 ? &fb : &fa;
        (void)wire_write(&w, src->buf + fr->off[i], fr->len[i]);
    }
    assert_int_equal(receive_all(&a, &w, &good, &f), VMENC_E_AUTH);
    assert_int_equal(f, VMENC_MIGRATION_FAIL_TAMPERED);
    assert_int_equal(good, 2);
    free(w.buf);
    free(a.w.buf);
    free(b.w.buf);
    vmenc_vm_free(vm);
}

static void test_attack_malformed_frame(void **state) {
    (void)state;
    vmenc_vm *vm = new_vm("encrypted");
    capture c;
    capture_stream(vm, &c);
    frames fr;
    split(&c.w, true, &fr);
    c.w.buf[fr.off[2]] = 9; /* unknown frame type */
    size_t good = 0;
    vmenc_migration_failure f;
    assert_int_equal(receive_all(&c, &c.w, &good, &f), VMENC_E_PARSE);
    assert_int_equal(f, VMENC_MIGRATION_FAIL_MALFORMED);
    c.w.buf[fr.off[2]] = MIG_FRAME_DATA;
    vmenc_store_u32_be(c.w.buf + fr.off[2] + 4, 0x7fffffff); /* huge length */
    assert_int_equal(receive_all(&c, &c.w, &good, &f), VMENC_E_TOO_LARGE);
    free(c.w.buf);
    vmenc_vm_free(vm);
}

static void test_wrong_ready_token(void **state) {
    (void)state;
    vmenc_vm *vm = new_vm("encrypted");
    wire w = {0};
    vmenc_migration_sender *s = NULL;
    OK(sender_for(vm, "alice", 0, &w, &s));
    uint8_t page[16] = {1};
    assert_int_equal(vmenc_migration_send(s, VMENC_MIGRATION_MEMORY, 0, page, sizeof(page)), VMENC_E_BAD_STATE);
    uint8_t ready[VMENC_MIGRATION_READY_BYTES] = {0};
    size_t f0 = count("migration.send", "failed");
    assert_int_equal(vmenc_migration_sender_begin(s, ready, sizeof(ready)), VMENC_E_AUTH);
    assert_int_equal(w.len, 0); /* nothing was streamed */
    assert_int_equal(count("migration.send", "failed") - f0, 1);
    vmenc_migration_sender_free(s);
    vmenc_vm_free(vm);
}

/* ---- the receiver's checks before streaming --------------------------------------------------- */

static void test_receiver_checks_policy_and_keys(void **state) {
    (void)state;
    vmenc_vm *vm = new_vm("encrypted");
    wire w = {0};
    vmenc_migration_sender *s = NULL;
    /* bob (NoCryptoAdmin) may not migrate an encrypted VM. */
    assert_int_equal(sender_for(vm, "bob", 0, &w, &s), VMENC_E_DENIED);
    assert_true(count("migration.send", "denied") >= 1);
    OK(sender_for(vm, "alice", 0, &w, &s));
    uint8_t ho[VMENC_MIGRATION_HANDOVER_MAX];
    size_t ho_len = 0;
    OK(vmenc_migration_sender_get_handover(s, ho, sizeof(ho), &ho_len));
    vmenc_migration_receiver *r = NULL;
    assert_int_equal(receiver_for(g_dest, "carol", ho, ho_len, 0, &w, &r), VMENC_E_DENIED);
    assert_int_equal(receiver_for(g_dest, "alice", ho, ho_len, VMENC_MIGRATION_NO_ENCRYPTION, &w, &r),
                     VMENC_E_UNSUPPORTED);
    /* A destination whose key manager lacks the VM's key provider. */
    vmenc_keymgr *saved = g_f.mgr, *other = NULL;
    fault_provider *fp = NULL;
    OK(vmenc_keymgr_new(NULL, &other));
    g_f.mgr = other;
    OK(vmfix_add_cluster(&g_f, "kms-b", g_f.ks_b, &fp));
    g_f.mgr = saved;
    vmenc_host *h3 = NULL;
    vmenc_host_options o3 = {.struct_size = sizeof(o3), .host_id = "esx02", .keymgr = other,
                             .policy = g_f.policy, .audit = g_f.audit, .flags = VMENC_HOST_NO_SYNC};
    OK(vmenc_host_new(&o3, &h3));
    size_t f0 = count("migration.receive", "failed");
    assert_int_equal(receiver_for(h3, "alice", ho, ho_len, 0, &w, &r), VMENC_E_NO_SUCH_PROVIDER);
    assert_int_equal(count("migration.receive", "failed") - f0, 1);
    /* The key provider down: the KEK cannot be fetched, nothing streams. */
    vmenc_keymgr *m4 = NULL;
    OK(vmenc_keymgr_new(NULL, &m4));
    g_f.mgr = m4;
    OK(vmfix_add_cluster(&g_f, "kms-a", g_f.ks_a, &fp));
    g_f.mgr = saved;
    fault_set_mode(fp, FAULT_DOWN);
    vmenc_host *h4 = NULL;
    o3.keymgr = m4;
    OK(vmenc_host_new(&o3, &h4));
    assert_int_equal(receiver_for(h4, "alice", ho, ho_len, 0, &w, &r), VMENC_E_KMS_UNAVAILABLE);
    assert_null(r);
    assert_int_equal(w.len, 0);
    /* A handover that would send an encrypted VM in the clear is refused. */
    mig_handover h;
    OK(mig_handover_parse(ho, ho_len, &h));
    h.flags &= (uint8_t)~MIG_HO_ENCRYPTED;
    uint8_t forged[VMENC_MIGRATION_HANDOVER_MAX];
    size_t forged_len = 0;
    assert_int_equal(mig_handover_build(&h, forged, sizeof(forged), &forged_len), VMENC_E_PARSE);
    mig_handover_cleanup(&h);
    vmenc_host_free(h4);
    vmenc_host_free(h3);
    vmenc_keymgr_free(m4);
    vmenc_keymgr_free(other);
    vmenc_migration_sender_free(s);
    vmenc_vm_free(vm);
}

static void test_receiver_refuses_plain_against_policy(void **state) {
    (void)state;
    /* A plain VM whose policy requires encryption: a plain stream (forged
     * handover) is refused by the receiver. */
    vmenc_vm *vm = new_vm("plain-required");
    wire w = {0};
    vmenc_migration_sender *s = NULL;
    OK(sender_for(vm, "alice", 0, &w, &s));
    uint8_t ho[VMENC_MIGRATION_HANDOVER_MAX];
    size_t ho_len = 0;
    OK(vmenc_migration_sender_get_handover(s, ho, sizeof(ho), &ho_len));
    mig_handover h;
    OK(mig_handover_parse(ho, ho_len, &h));
    assert_true(h.flags & MIG_HO_ENCRYPTED);
    h.flags &= (uint8_t)~MIG_HO_ENCRYPTED;
    OK(mig_handover_build(&h, ho, sizeof(ho), &ho_len));
    mig_handover_cleanup(&h);
    vmenc_migration_receiver *r = NULL;
    size_t d0 = count("migration.receive", "denied");
    assert_int_equal(receiver_for(g_dest, "alice", ho, ho_len, 0, &w, &r), VMENC_E_DENIED);
    assert_int_equal(count("migration.receive", "denied") - d0, 1);
    vmenc_migration_sender_free(s);
    vmenc_vm_free(vm);
}

static void test_abandoned_migration_audited(void **state) {
    (void)state;
    vmenc_vm *vm = new_vm(NULL);
    wire w = {0};
    vmenc_migration_sender *s = NULL;
    OK(sender_for(vm, "bob", 0, &w, &s)); /* a plain VM needs no crypto privilege */
    size_t f0 = count("migration.send", "failed");
    vmenc_migration_sender_free(s);
    assert_int_equal(count("migration.send", "failed") - f0, 1);
    vmenc_vm_free(vm);
}

/* ---- modes x VM encryption x peer capability ------------------------------------------------------ */

typedef struct mode_case {
    const char *policy;  /* NULL: none (opportunistic) */
    bool peer_can;
    vmenc_status status; /* sender_new */
    bool encrypted;      /* the stream */
} mode_case;

static void run_mode_case(const mode_case *mc) {
    vmenc_vm *vm = new_vm(mc->policy);
    wire w = {0};
    vmenc_migration_sender *s = NULL;
    vmenc_status st = sender_for(vm, "alice", mc->peer_can ? 0 : VMENC_MIGRATION_PEER_NO_ENCRYPTION, &w, &s);
    if (st != mc->status)
        fail_msg("policy %s, peer %s: status %s, want %s", mc->policy ? mc->policy : "(none)",
                 mc->peer_can ? "can" : "cannot", vmenc_status_name(st), vmenc_status_name(mc->status));
    if (st == VMENC_OK) {
        uint8_t ho[VMENC_MIGRATION_HANDOVER_MAX], ready[VMENC_MIGRATION_READY_BYTES];
        size_t ho_len = 0;
        OK(vmenc_migration_sender_get_handover(s, ho, sizeof(ho), &ho_len));
        vmenc_migration_receiver *r = NULL;
        OK(receiver_for(g_dest, "alice", ho, ho_len, mc->peer_can ? 0 : VMENC_MIGRATION_NO_ENCRYPTION, &w, &r));
        OK(vmenc_migration_receiver_get_ready(r, ready, sizeof(ready)));
        OK(vmenc_migration_sender_begin(s, ready, sizeof(ready)));
        uint8_t page[4096];
        chunk_data(page, sizeof(page), 0);
        OK(vmenc_migration_send(s, VMENC_MIGRATION_MEMORY, 0, page, sizeof(page)));
        OK(vmenc_migration_sender_finish(s));
        assert_int_equal(vmfix_contains(w.buf, w.len, page, sizeof(page)), !mc->encrypted);
        vmenc_migration_chunk ch = {.struct_size = sizeof(ch)};
        OK(vmenc_migration_receive(r, &ch));
        assert_memory_equal(ch.data, page, sizeof(page));
        OK(vmenc_migration_receive(r, &ch));
        assert_true(ch.end);
        vmenc_migration_info info = {.struct_size = sizeof(info)};
        OK(vmenc_migration_receiver_get_info(r, &info));
        if (info.encrypted != mc->encrypted)
            fail_msg("policy %s, peer %s: stream %s", mc->policy ? mc->policy : "(none)",
                     mc->peer_can ? "can" : "cannot", info.encrypted ? "encrypted" : "plain");
        vmenc_migration_receiver_free(r);
    }
    vmenc_migration_sender_free(s);
    free(w.buf);
    vmenc_vm_free(vm);
}

static void test_mode_matrix(void **state) {
    (void)state;
    static const mode_case cases[] = {
        /* plain VM: the policy's mode decides */
        {"plain-disabled", true, VMENC_OK, false},
        {"plain-disabled", false, VMENC_OK, false},
        {"plain", true, VMENC_OK, true}, /* opportunistic */
        {"plain", false, VMENC_OK, false},
        {NULL, true, VMENC_OK, true},    /* no policy: opportunistic */
        {NULL, false, VMENC_OK, false},
        {"plain-required", true, VMENC_OK, true},
        {"plain-required", false, VMENC_E_UNSUPPORTED, false},
        /* encrypted VM: always encrypted, whatever the policy says */
        {"encrypted-disabled", true, VMENC_OK, true},
        {"encrypted-disabled", false, VMENC_E_UNSUPPORTED, false},
        {"encrypted", true, VMENC_OK, true}, /* required */
        {"encrypted", false, VMENC_E_UNSUPPORTED, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        run_mode_case(&cases[i]);
}

static void test_bad_arguments(void **state) {
    (void)state;
    vmenc_vm *vm = new_vm(NULL);
    vmenc_migration_sender *s = NULL;
    vmenc_migration_sender_options so = {.struct_size = 4};
    assert_int_equal(vmenc_migration_sender_new(vm, &so, &s), VMENC_E_ABI_VERSION);
    so = (vmenc_migration_sender_options){.struct_size = sizeof(so), .principal = "alice", .dest_host = "esx02",
                                          .fd = -1};
    assert_int_equal(vmenc_migration_sender_new(vm, &so, &s), VMENC_E_INVALID_ARG); /* no transport */
    vmenc_migration_receiver *r = NULL;
    wire w = {0};
    uint8_t junk[40] = "VMENCMH1";
    assert_int_equal(receiver_for(g_dest, "alice", junk, sizeof(junk), 0, &w, &r), VMENC_E_BAD_VERSION);
    assert_int_equal(receiver_for(g_dest, "alice", junk, 3, 0, &w, &r), VMENC_E_BAD_MAGIC);
    assert_null(r);
    vmenc_migration_sender_free(NULL);
    vmenc_migration_receiver_free(NULL);
    vmenc_vm_free(vm);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encrypted_round_trip),
        cmocka_unit_test(test_fd_transport),
        cmocka_unit_test(test_attack_tampered_payload),
        cmocka_unit_test(test_attack_tampered_header),
        cmocka_unit_test(test_attack_tampered_sequence),
        cmocka_unit_test(test_attack_reordered),
        cmocka_unit_test(test_attack_replayed),
        cmocka_unit_test(test_attack_duplicated),
        cmocka_unit_test(test_attack_dropped),
        cmocka_unit_test(test_attack_dropped_start),
        cmocka_unit_test(test_attack_truncated_before_end),
        cmocka_unit_test(test_attack_truncated_mid_frame),
        cmocka_unit_test(test_attack_end_moved_early),
        cmocka_unit_test(test_attack_foreign_stream),
        cmocka_unit_test(test_attack_malformed_frame),
        cmocka_unit_test(test_wrong_ready_token),
        cmocka_unit_test(test_receiver_checks_policy_and_keys),
        cmocka_unit_test(test_receiver_refuses_plain_against_policy),
        cmocka_unit_test(test_abandoned_migration_audited),
        cmocka_unit_test(test_mode_matrix),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
