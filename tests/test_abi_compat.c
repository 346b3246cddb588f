/*
 * tests/test_abi_compat.c - what an old binary gets from today's library:
 * options structs filled by a caller built against an older header (a
 * smaller struct_size, garbage where the old struct had padding) must mean
 * what they meant then. Issue 24 item 9: vmenc_keymgr_options.flags sat in
 * the first version's padding (sizeof stayed 24), so an old caller's
 * uninitialised padding could switch the round-trip proof off. The
 * symbol-level check is tests/abi.test.sh (abidiff against abi/).
 *
 * Safety rule: each case builds the old struct byte for byte in a buffer
 * larger than it, the way an old compiler laid it out, never through
 * today's type.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <string.h>

#include "fault_provider.h"
#include "vmenc/vmenc.h"

/* vmenc_keymgr_options as released at 386c2a1 (VMENC_0.1). */
typedef struct keymgr_options_v1 {
    uint32_t struct_size;
    uint32_t cache_capacity;
    uint64_t cache_ttl_ms;
    uint32_t remote_wrap_alg;
} keymgr_options_v1;

static const vmenc_wrap_context CTX = {sizeof(vmenc_wrap_context), "vm-abi", "disk-0", "disk"};

/* wrap_after_wrong_key: a KEK first seen while the KMS served wrong bytes
 * (cached since), then a wrap. With the round-trip proof the wrap is
 * refused (VMENC_E_ROUNDTRIP); without it, it "succeeds". */
static vmenc_status wrap_after_wrong_key(const void *opts) {
    fault_store *s = fault_store_new();
    vmenc_kms_provider *p = NULL;
    assert_int_equal(fault_provider_new(s, false, &p), VMENC_OK);
    fault_provider *fp = as_fault(p);
    vmenc_keymgr *m = NULL;
    assert_int_equal(vmenc_keymgr_new((const vmenc_keymgr_options *)opts, &m), VMENC_OK);
    vmenc_kms_cluster *c = NULL;
    assert_int_equal(vmenc_kms_cluster_new("t", NULL, &c), VMENC_OK);
    assert_int_equal(vmenc_kms_cluster_take_endpoint(c, "a", p), VMENC_OK);
    assert_int_equal(vmenc_keymgr_take_cluster(m, c), VMENC_OK);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_keymgr_create_kek(m, "t", NULL, 1000, id, sizeof(id)), VMENC_OK);
    assert_int_equal(vmenc_keymgr_forget(m, "t", id), VMENC_OK);
    fault_set_mode(fp, FAULT_WRONG_KEY);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_keymgr_get_kek(m, "t", id, 1000, &k), VMENC_OK);
    vmenc_kek_free(k);
    fault_set_mode(fp, FAULT_NONE);
    vmenc_dek *dek = NULL;
    assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
    vmenc_wrapped_key *wk = NULL;
    vmenc_status st = vmenc_keymgr_wrap_dek(m, "t", id, dek, &CTX, 1000, &wk);
    vmenc_wrapped_key_free(wk);
    vmenc_dek_free(dek);
    vmenc_keymgr_free(m);
    fault_store_free(s);
    return st;
}

/* An old caller's struct: struct_size 24, the padding after
 * remote_wrap_alg holding |padding|. */
static void old_options(uint8_t buf[64], uint32_t padding) {
    memset(buf, 0xA5, 64);
    keymgr_options_v1 v1 = {.struct_size = sizeof(keymgr_options_v1)};
    memcpy(buf, &v1, offsetof(keymgr_options_v1, remote_wrap_alg) + sizeof(uint32_t));
    memcpy(buf + offsetof(keymgr_options_v1, remote_wrap_alg) + sizeof(uint32_t), &padding, sizeof(padding));
}

static void test_keymgr_old_struct_padding_ignored(void **state) {
    (void)state;
    assert_int_equal(sizeof(keymgr_options_v1), 24);
    /* The padding holds exactly the flag (the worst case: the old code
     * silently switched the proof off) or any other garbage (the old code
     * refused the options with VMENC_E_INVALID_ARG). */
    const uint32_t garbage[] = {VMENC_KEYMGR_NO_ROUNDTRIP_PROOF, 0xdeadbeefu, 0xffffffffu};
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        uint8_t buf[64];
        old_options(buf, garbage[i]);
        assert_int_equal(wrap_after_wrong_key(buf), VMENC_E_ROUNDTRIP);
    }
}

static void test_keymgr_new_struct_flags_honoured(void **state) {
    (void)state;
    /* Today's caller: sizeof covers flags and reserved. */
    assert_true(sizeof(vmenc_keymgr_options) > sizeof(keymgr_options_v1));
    vmenc_keymgr_options o = {.struct_size = sizeof(o), .flags = VMENC_KEYMGR_NO_ROUNDTRIP_PROOF};
    assert_int_equal(wrap_after_wrong_key(&o), VMENC_OK);
    o.flags = 0;
    assert_int_equal(wrap_after_wrong_key(&o), VMENC_E_ROUNDTRIP);
    /* reserved must be zero; unknown flags are refused. */
    vmenc_keymgr *m = NULL;
    vmenc_keymgr_options bad = {.struct_size = sizeof(bad), .reserved = 1};
    assert_int_equal(vmenc_keymgr_new(&bad, &m), VMENC_E_INVALID_ARG);
    vmenc_keymgr_options bad2 = {.struct_size = sizeof(bad2), .flags = 1u << 7};
    assert_int_equal(vmenc_keymgr_new(&bad2, &m), VMENC_E_INVALID_ARG);
    assert_null(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keymgr_old_struct_padding_ignored),
        cmocka_unit_test(test_keymgr_new_struct_flags_honoured),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
