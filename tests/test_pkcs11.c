/*
 * tests/test_pkcs11.c - the PKCS#11 provider against a real SoftHSM2 token.
 *
 * The group setup runs tests/kms/softhsm.sh into a fresh temporary directory
 * (two tokens: "kms-test" with the recipe's pkcs11-tool KEK labelled "kek",
 * id 01, and "lock-test" for the PIN lock-out test), points SOFTHSM2_CONF at
 * it, and the teardown removes it. Besides the provider, the tests open the
 * module themselves (a second, independent PKCS#11 client) to check what the
 * provider left in the token: attributes of the KEK, that it cannot be
 * wrapped out, that no temporary objects remain, and to import known keys
 * for the known-answer and OpenSSL differential tests.
 */
#define _GNU_SOURCE 1 /* memmem, dladdr */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define CRYPTOKI_GNU 1
#include <p11-kit-1/p11-kit/pkcs11.h>

#include "core/internal.h"
#include "keys/keys_internal.h"
#include "kms/pkcs11/pkcs11_provider.h"
#include "vmenc/kms.h"
#include "vmenc/kms_pkcs11.h"

#define TOKEN "kms-test"
#define LOCK_TOKEN "lock-test"
#define PIN "1234"
#define SO_PIN "12345678"
#define DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"

static char g_dir[256];
static const char *g_module = DEFAULT_MODULE;


/* The provider's operations, called through its ops table (the KMS core's
 * guarded vmenc_kms_provider_* calls are tested with the KMS core). */
static vmenc_status prov_create_kek(vmenc_kms_provider *p, const char *name, uint32_t t, char *out, size_t cap) {
    return p->ops->create_kek(p, name, t, out, cap);
}
static vmenc_status prov_get_kek(vmenc_kms_provider *p, const char *id, uint32_t t, vmenc_kek **out) {
    return p->ops->get_kek(p, id, t, out);
}
static vmenc_status prov_wrap(vmenc_kms_provider *p, const char *id, const vmenc_kms_wrap_params *w,
                              const uint8_t *in, size_t in_len, uint32_t t, uint8_t *out, size_t cap,
                              size_t *out_len) {
    return p->ops->wrap(p, id, w, in, in_len, t, out, cap, out_len);
}
static vmenc_status prov_unwrap(vmenc_kms_provider *p, const char *id, const vmenc_kms_wrap_params *w,
                                const uint8_t *in, size_t in_len, uint32_t t, uint8_t *out, size_t cap,
                                size_t *out_len) {
    return p->ops->unwrap(p, id, w, in, in_len, t, out, cap, out_len);
}
static vmenc_status prov_revoke_kek(vmenc_kms_provider *p, const char *id, uint32_t t) {
    return p->ops->revoke_kek(p, id, t);
}
static vmenc_status prov_destroy_kek(vmenc_kms_provider *p, const char *id, uint32_t t) {
    return p->ops->destroy_kek(p, id, t);
}
static vmenc_status prov_health(vmenc_kms_provider *p, uint32_t t) { return p->ops->health(p, t); }
static void prov_free(vmenc_kms_provider *p) {
    if (p != NULL)
        p->ops->free(p);
}

/* ---- fixture ------------------------------------------------------------ */

static int run_softhsm(const char *label, int selftest) {
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "SOFTHSM_TOKEN_LABEL=%s SOFTHSM_SELFTEST=%d SOFTHSM_MODULE=%s "
             "bash %s/tests/kms/softhsm.sh %s >/dev/null",
             label, selftest, g_module, VMENC_SOURCE_DIR, g_dir);
    return system(cmd);
}

static int group_setup(void **state) {
    if (getenv("PKCS11_TEST_MODULE") != NULL)
        g_module = getenv("PKCS11_TEST_MODULE");
    snprintf(g_dir, sizeof(g_dir), "/tmp/vmenc-p11-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    if (run_softhsm(LOCK_TOKEN, 0) != 0 || run_softhsm(TOKEN, 1) != 0) {
        fprintf(stderr, "softhsm.sh failed: are softhsm2 and opensc installed?\n");
        return -1;
    }
    char conf[512];
    snprintf(conf, sizeof(conf), "%s/softhsm2.conf", g_dir);
    setenv("SOFTHSM2_CONF", conf, 1);
    return vmenc_init() == VMENC_OK ? 0 : -1;
}

static int group_teardown(void **state) {
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static vmenc_pkcs11_config base_config(void) {
    vmenc_pkcs11_config c;
    memset(&c, 0, sizeof(c));
    c.struct_size = sizeof(c);
    c.module_path = g_module;
    c.token_label = TOKEN;
    c.pin = (const uint8_t *)PIN;
    c.pin_len = strlen(PIN);
    return c;
}

static vmenc_kms_provider *new_provider(uint32_t flags, uint32_t max_sessions) {
    vmenc_pkcs11_config c = base_config();
    c.flags = flags;
    c.max_sessions = max_sessions;
    vmenc_kms_provider *p = NULL;
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_OK);
    assert_non_null(p);
    assert_int_equal(p->struct_size, sizeof(vmenc_kms_provider));
    assert_string_equal(p->ops->type_name, "pkcs11");
    return p;
}

static vmenc_kms_wrap_params params_for(vmenc_kms_wrap_mech m, const uint8_t *iv, const uint8_t *aad,
                                        size_t aad_len) {
    vmenc_kms_wrap_params w;
    memset(&w, 0, sizeof(w));
    w.struct_size = sizeof(w);
    w.mech = m;
    if (m == VMENC_KMS_WRAP_AES_GCM) {
        w.iv = iv;
        w.iv_len = 12;
        w.aad = aad;
        w.aad_len = aad_len;
    }
    return w;
}

/* ---- a second PKCS#11 client: the test's own view of the token ---------- */

typedef struct p11c {
    void *dl;
    struct ck_function_list *fl;
    ck_session_handle_t s;
    bool initialized_here;
} p11c;

static ck_slot_id_t p11c_slot(p11c *c, const char *label) {
    ck_slot_id_t slots[16];
    unsigned long n = 16;
    assert_int_equal(c->fl->C_GetSlotList(1, slots, &n), CKR_OK);
    unsigned char want[32];
    memset(want, ' ', 32);
    memcpy(want, label, strlen(label));
    for (unsigned long i = 0; i < n; i++) {
        struct ck_token_info ti;
        if (c->fl->C_GetTokenInfo(slots[i], &ti) == CKR_OK && memcmp(ti.label, want, 32) == 0)
            return slots[i];
    }
    fail_msg("token %s not found", label);
    return 0;
}

static void p11c_open_token(p11c *c, const char *token, bool login) {
    memset(c, 0, sizeof(*c));
    c->dl = dlopen(g_module, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(c->dl);
    ck_rv_t (*gfl)(struct ck_function_list **);
    void *sym = dlsym(c->dl, "C_GetFunctionList");
    memcpy(&gfl, &sym, sizeof(sym));
    assert_int_equal(gfl(&c->fl), CKR_OK);
    struct ck_c_initialize_args a;
    memset(&a, 0, sizeof(a));
    a.flags = CKF_OS_LOCKING_OK;
    ck_rv_t rv = c->fl->C_Initialize(&a);
    assert_true(rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED);
    c->initialized_here = rv == CKR_OK;
    assert_int_equal(c->fl->C_OpenSession(p11c_slot(c, token), CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                          &c->s),
                     CKR_OK);
    if (!login)
        return;
    rv = c->fl->C_Login(c->s, CKU_USER, (unsigned char *)PIN, strlen(PIN));
    assert_true(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
}

static void p11c_open(p11c *c) { p11c_open_token(c, TOKEN, true); }

/* Fault injection at the PKCS#11 boundary: SoftHSM cannot be made to lock a
 * PIN or lose its device, so the tests that need those answers patch one
 * entry of the module's own function table (the same table the provider
 * calls through) and restore it afterwards. */
static void patch_fl(struct ck_function_list *fl, void *slot_addr, const void *fn, void *saved) {
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)slot_addr & ~(uintptr_t)(pg - 1);
    assert_int_equal(mprotect((void *)a, (size_t)pg * 2, PROT_READ | PROT_WRITE), 0);
    if (saved != NULL)
        memcpy(saved, slot_addr, sizeof(void *));
    memcpy(slot_addr, fn, sizeof(void *));
}

static void p11c_close(p11c *c) {
    (void)c->fl->C_CloseSession(c->s);
    if (c->initialized_here)
        assert_int_equal(c->fl->C_Finalize(NULL), CKR_OK);
    dlclose(c->dl);
}

/* Finds objects of class secret key with |attr| = |val|; returns the count. */
static unsigned long p11c_find(p11c *c, ck_attribute_type_t attr, const void *val, size_t len,
                               ck_object_handle_t *out) {
    ck_object_class_t cls = CKO_SECRET_KEY;
    struct ck_attribute t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {attr, (void *)val, len}};
    assert_int_equal(c->fl->C_FindObjectsInit(c->s, t, attr == CKA_CLASS ? 1 : 2), CKR_OK);
    ck_object_handle_t h[64];
    unsigned long n = 0;
    assert_int_equal(c->fl->C_FindObjects(c->s, h, 64, &n), CKR_OK);
    assert_int_equal(c->fl->C_FindObjectsFinal(c->s), CKR_OK);
    if (out != NULL && n > 0)
        *out = h[0];
    return n;
}

/* Imports AES key |key| as a token object labelled |label|. */
static void p11c_import_aes(p11c *c, const char *label, const uint8_t *key, size_t len, bool extractable) {
    ck_object_class_t cls = CKO_SECRET_KEY;
    ck_key_type_t kt = CKK_AES;
    unsigned char yes = 1, no = 0, ext = extractable ? 1 : 0, sens = extractable ? 0 : 1;
    struct ck_attribute t[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)}, {CKA_TOKEN, &yes, 1},
        {CKA_PRIVATE, &yes, 1},         {CKA_SENSITIVE, &sens, 1},       {CKA_EXTRACTABLE, &ext, 1},
        {CKA_WRAP, &yes, 1},            {CKA_UNWRAP, &yes, 1},           {CKA_ENCRYPT, &yes, 1},
        {CKA_DECRYPT, &yes, 1},         {CKA_DERIVE, &no, 1},            {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_VALUE, (void *)key, len},
    };
    ck_object_handle_t h;
    assert_int_equal(c->fl->C_CreateObject(c->s, t, VMENC_ARRAY_LEN(t), &h), CKR_OK);
}

static void hex_to_bytes(const char *hex, uint8_t *out, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static unsigned long count_generic_secrets(p11c *c) {
    ck_key_type_t kt = CKK_GENERIC_SECRET;
    return p11c_find(c, CKA_KEY_TYPE, &kt, sizeof(kt), NULL);
}

/* ---- round trips -------------------------------------------------------- */

static const vmenc_kms_wrap_mech all_mechs[] = {VMENC_KMS_WRAP_AES_KWP, VMENC_KMS_WRAP_AES_KW,
                                                VMENC_KMS_WRAP_AES_GCM};

static void roundtrip(vmenc_kms_provider *p, const char *id, vmenc_kms_wrap_mech m, size_t n) {
    uint8_t *secret = vmenc_secure_alloc(n);
    uint8_t *back = vmenc_secure_alloc(n + 16);
    assert_non_null(secret);
    assert_non_null(back);
    assert_int_equal(vmenc_random_bytes(secret, n), VMENC_OK);
    uint8_t iv[12], aad[40];
    assert_int_equal(vmenc_random_bytes(iv, sizeof(iv)), VMENC_OK);
    assert_int_equal(vmenc_random_bytes(aad, sizeof(aad)), VMENC_OK);
    vmenc_kms_wrap_params w = params_for(m, iv, aad, sizeof(aad));
    uint8_t wrapped[256];
    size_t wl = 0, bl = 0;
    assert_int_equal(prov_wrap(p, id, &w, secret, n, 5000, wrapped, sizeof(wrapped), &wl), VMENC_OK);
    size_t expect = m == VMENC_KMS_WRAP_AES_GCM ? n + 16 : m == VMENC_KMS_WRAP_AES_KW ? n + 8 : (n + 7) / 8 * 8 + 8;
    assert_int_equal(wl, expect);
    /* the wrapped form carries no plaintext block */
    for (size_t i = 0; i + 8 <= n; i += 8)
        assert_null(memmem(wrapped, wl, secret + i, 8));
    /* output buffer exactly the plaintext size */
    vmenc_status ust = prov_unwrap(p, id, &w, wrapped, wl, 5000, back, n, &bl);
    if (ust != VMENC_OK)
        print_error("unwrap mech %d len %zu: %s\n", (int)m, n, vmenc_status_name(ust));
    assert_int_equal(ust, VMENC_OK);
    assert_int_equal(bl, n);
    assert_memory_equal(back, secret, n);
    vmenc_secure_free(secret);
    vmenc_secure_free(back);
}

static void test_create_and_roundtrip_every_mechanism(void **state) {
    vmenc_kms_provider *p = new_provider(0, 0);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(prov_create_kek(p, "rt-kek", 5000, id, sizeof(id)), VMENC_OK);
    assert_int_equal(strncmp(id, "id:", 3), 0);
    assert_int_equal(strlen(id), 3 + 32);
    char id2[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(prov_create_kek(p, NULL, 5000, id2, sizeof(id2)), VMENC_OK);
    assert_string_not_equal(id, id2);
    for (size_t m = 0; m < VMENC_ARRAY_LEN(all_mechs); m++) {
        roundtrip(p, id, all_mechs[m], 64); /* a DEK */
        roundtrip(p, id, all_mechs[m], 96); /* DEK || digest */
        roundtrip(p, id2, all_mechs[m], 32);
    }
    /* the smallest inputs each mechanism takes */
    roundtrip(p, id, VMENC_KMS_WRAP_AES_KWP, 8);
    roundtrip(p, id, VMENC_KMS_WRAP_AES_KW, 16);
    roundtrip(p, id, VMENC_KMS_WRAP_AES_GCM, 1);
    roundtrip(p, id, VMENC_KMS_WRAP_AES_GCM, 67);

    /* A blob wrapped under one KEK does not unwrap under another. */
    uint8_t dek[64], wrapped[80], back[80];
    size_t wl = 0, bl = 0;
    assert_int_equal(vmenc_random_bytes(dek, sizeof(dek)), VMENC_OK);
    assert_int_equal(prov_wrap(p, id, NULL, dek, 64, 5000, wrapped, sizeof(wrapped), &wl), VMENC_OK);
    assert_int_equal(prov_unwrap(p, id2, NULL, wrapped, wl, 5000, back, sizeof(back), &bl),
                     VMENC_E_AUTH);
    assert_int_equal(prov_destroy_kek(p, id, 5000), VMENC_OK);
    assert_int_equal(prov_destroy_kek(p, id2, 5000), VMENC_OK);
    prov_free(p);
}

static void test_tamper_is_auth_error(void **state) {
    vmenc_kms_provider *p = new_provider(0, 0);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(prov_create_kek(p, "tamper-kek", 5000, id, sizeof(id)), VMENC_OK);
    uint8_t iv[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, aad[] = "vm-uuid|disk-0|disk";
    for (size_t m = 0; m < VMENC_ARRAY_LEN(all_mechs); m++) {
        vmenc_kms_wrap_params w = params_for(all_mechs[m], iv, aad, sizeof(aad));
        uint8_t dek[96], wrapped[128], bad[128], back[128];
        size_t wl = 0, bl = 0;
        assert_int_equal(vmenc_random_bytes(dek, sizeof(dek)), VMENC_OK);
        assert_int_equal(prov_wrap(p, id, &w, dek, sizeof(dek), 5000, wrapped, sizeof(wrapped), &wl),
                         VMENC_OK);
        /* every byte position, one bit flipped */
        for (size_t i = 0; i < wl; i++) {
            memcpy(bad, wrapped, wl);
            bad[i] ^= (uint8_t)(1u << (i % 8));
            memset(back, 0xAA, sizeof(back));
            bl = 12345;
            assert_int_equal(prov_unwrap(p, id, &w, bad, wl, 5000, back, sizeof(back), &bl),
                             VMENC_E_AUTH);
            assert_int_equal(bl, 12345); /* out-length untouched */
            assert_null(memmem(back, sizeof(back), dek, 8));
        }
        /* truncated and extended blobs */
        for (size_t cut = 1; cut <= 16; cut += 7)
            assert_int_equal(prov_unwrap(p, id, &w, wrapped, wl - cut, 5000, back, sizeof(back), &bl),
                             VMENC_E_AUTH);
        memcpy(bad, wrapped, wl);
        memset(bad + wl, 0, 8);
        assert_int_equal(prov_unwrap(p, id, &w, bad, wl + 8, 5000, back, sizeof(back), &bl),
                         VMENC_E_AUTH);
        if (all_mechs[m] == VMENC_KMS_WRAP_AES_GCM) {
            /* other AAD, other IV, no AAD */
            uint8_t aad2[sizeof(aad)];
            memcpy(aad2, aad, sizeof(aad));
            aad2[3] ^= 1;
            vmenc_kms_wrap_params w2 = params_for(all_mechs[m], iv, aad2, sizeof(aad2));
            assert_int_equal(prov_unwrap(p, id, &w2, wrapped, wl, 5000, back, sizeof(back), &bl),
                             VMENC_E_AUTH);
            uint8_t iv2[12];
            memcpy(iv2, iv, 12);
            iv2[11] ^= 0x80;
            w2 = params_for(all_mechs[m], iv2, aad, sizeof(aad));
            assert_int_equal(prov_unwrap(p, id, &w2, wrapped, wl, 5000, back, sizeof(back), &bl),
                             VMENC_E_AUTH);
            w2 = params_for(all_mechs[m], iv, NULL, 0);
            assert_int_equal(prov_unwrap(p, id, &w2, wrapped, wl, 5000, back, sizeof(back), &bl),
                             VMENC_E_AUTH);
        } else {
            /* the other key-wrap variant does not accept this blob either */
            vmenc_kms_wrap_params w2 = params_for(
                all_mechs[m] == VMENC_KMS_WRAP_AES_KW ? VMENC_KMS_WRAP_AES_KWP : VMENC_KMS_WRAP_AES_KW, NULL, NULL, 0);
            assert_int_equal(prov_unwrap(p, id, &w2, wrapped, wl, 5000, back, sizeof(back), &bl),
                             VMENC_E_AUTH);
        }
        /* and the untouched blob still unwraps */
        assert_int_equal(prov_unwrap(p, id, &w, wrapped, wl, 5000, back, sizeof(back), &bl), VMENC_OK);
        assert_memory_equal(back, dek, sizeof(dek));
    }
    assert_int_equal(prov_destroy_kek(p, id, 5000), VMENC_OK);
    prov_free(p);
}

static void test_bad_arguments(void **state) {
    vmenc_kms_provider *p = new_provider(0, 0);
    uint8_t in[64] = {0}, out[128];
    size_t ol = 0;
    uint8_t iv[12] = {0};
    vmenc_kms_wrap_params w = params_for(VMENC_KMS_WRAP_AES_KW, NULL, NULL, 0);
    /* RFC 3394 needs whole 8-byte blocks, at least two */
    assert_int_equal(prov_wrap(p, "kek", &w, in, 20, 5000, out, sizeof(out), &ol), VMENC_E_BAD_LENGTH);
    assert_int_equal(prov_wrap(p, "kek", &w, in, 8, 5000, out, sizeof(out), &ol), VMENC_E_BAD_LENGTH);
    assert_int_equal(prov_wrap(p, "kek", &w, in, 0, 5000, out, sizeof(out), &ol), VMENC_E_BAD_LENGTH);
    /* KWP only whole blocks too (SoftHSM 2.6.1 would zero-pad the rest) */
    vmenc_kms_wrap_params wp = params_for(VMENC_KMS_WRAP_AES_KWP, NULL, NULL, 0);
    assert_int_equal(prov_wrap(p, "kek", &wp, in, 20, 5000, out, sizeof(out), &ol), VMENC_E_BAD_LENGTH);
    assert_int_equal(prov_wrap(p, "kek", &wp, in, 1, 5000, out, sizeof(out), &ol), VMENC_E_BAD_LENGTH);
    assert_int_equal(prov_wrap(p, "kek", &wp, in, 0, 5000, out, sizeof(out), &ol), VMENC_E_BAD_LENGTH);
    uint8_t huge[VMENC_PKCS11_MAX_PAYLOAD + 8];
    memset(huge, 1, sizeof(huge));
    assert_int_equal(prov_wrap(p, "kek", &wp, huge, sizeof(huge), 5000, huge, sizeof(huge), &ol),
                     VMENC_E_BAD_LENGTH);
    /* output too small is refused before the token is asked */
    assert_int_equal(prov_wrap(p, "kek", &w, in, 64, 5000, out, 71, &ol), VMENC_E_BUFFER_TOO_SMALL);
    /* GCM needs a 12-byte IV from the caller */
    vmenc_kms_wrap_params g = params_for(VMENC_KMS_WRAP_AES_GCM, NULL, NULL, 0);
    assert_int_equal(prov_wrap(p, "kek", &g, in, 64, 5000, out, sizeof(out), &ol), VMENC_E_INVALID_ARG);
    g = params_for(VMENC_KMS_WRAP_AES_GCM, iv, NULL, 0);
    g.iv_len = 16;
    assert_int_equal(prov_wrap(p, "kek", &g, in, 64, 5000, out, sizeof(out), &ol), VMENC_E_INVALID_ARG);
    /* an unknown mechanism, an old params struct */
    vmenc_kms_wrap_params u = params_for(VMENC_KMS_WRAP_AES_KW, NULL, NULL, 0);
    u.mech = (vmenc_kms_wrap_mech)99;
    assert_int_equal(prov_wrap(p, "kek", &u, in, 64, 5000, out, sizeof(out), &ol), VMENC_E_UNSUPPORTED);
    u = params_for(VMENC_KMS_WRAP_AES_KW, NULL, NULL, 0);
    u.struct_size = 4;
    assert_int_equal(prov_wrap(p, "kek", &u, in, 64, 5000, out, sizeof(out), &ol), VMENC_E_ABI_VERSION);
    /* unwrap output too small for what the token returns */
    size_t wl = 0, bl = 0;
    assert_int_equal(prov_wrap(p, "kek", NULL, in, 64, 5000, out, sizeof(out), &wl), VMENC_OK);
    uint8_t small[63];
    assert_int_equal(prov_unwrap(p, "kek", NULL, out, wl, 5000, small, sizeof(small), &bl),
                     VMENC_E_BUFFER_TOO_SMALL);
    /* malformed IDs */
    static const char *const bad_ids[] = {"", "id:", "id:0", "id:zz", "id:0g", "label:"};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(bad_ids); i++)
        assert_int_equal(prov_wrap(p, bad_ids[i], NULL, in, 64, 5000, out, sizeof(out), &ol),
                         VMENC_E_INVALID_ARG);
    char longid[300];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(prov_wrap(p, longid, NULL, in, 64, 5000, out, sizeof(out), &ol),
                     VMENC_E_INVALID_ARG);
    /* create: output cap, names that could not be found again */
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(prov_create_kek(p, "x", 5000, id, 35), VMENC_E_BUFFER_TOO_SMALL);
    assert_int_equal(prov_create_kek(p, "id:abcd", 5000, id, sizeof(id)), VMENC_E_INVALID_ARG);
    assert_int_equal(prov_create_kek(p, "label:x", 5000, id, sizeof(id)), VMENC_E_INVALID_ARG);
    assert_int_equal(prov_create_kek(p, "", 5000, id, sizeof(id)), VMENC_E_INVALID_ARG);
    /* the KEK never leaves the token */
    vmenc_kek *k = NULL;
    assert_int_equal(prov_get_kek(p, "kek", 5000, &k), VMENC_E_UNSUPPORTED);
    assert_null(k);
    prov_free(p);
}

/* ---- keys: not found, by label/id, ambiguous, extractable --------------- */

static void test_recipe_key_by_label_and_id(void **state) {
    vmenc_kms_provider *p = new_provider(0, 0);
    for (size_t m = 0; m < VMENC_ARRAY_LEN(all_mechs); m++) {
        roundtrip(p, "kek", all_mechs[m], 64);
        roundtrip(p, "label:kek", all_mechs[m], 96);
        roundtrip(p, "id:01", all_mechs[m], 64);
    }
    /* the three names are one key: wrap by label, unwrap by id */
    uint8_t dek[64], wrapped[80], back[64];
    size_t wl = 0, bl = 0;
    assert_int_equal(vmenc_random_bytes(dek, sizeof(dek)), VMENC_OK);
    assert_int_equal(prov_wrap(p, "kek", NULL, dek, 64, 5000, wrapped, sizeof(wrapped), &wl), VMENC_OK);
    assert_int_equal(prov_unwrap(p, "id:01", NULL, wrapped, wl, 5000, back, sizeof(back), &bl),
                     VMENC_OK);
    assert_memory_equal(back, dek, 64);
    prov_free(p);
}

static void test_key_not_found(void **state) {
    vmenc_kms_provider *p = new_provider(0, 0);
    uint8_t in[64] = {1}, out[128];
    size_t ol = 0;
    assert_int_equal(prov_wrap(p, "no-such-key", NULL, in, 64, 5000, out, sizeof(out), &ol),
                     VMENC_E_KEY_NOT_FOUND);
    assert_int_equal(prov_wrap(p, "id:deadbeef", NULL, in, 64, 5000, out, sizeof(out), &ol),
                     VMENC_E_KEY_NOT_FOUND);
    assert_int_equal(prov_unwrap(p, "id:deadbeef", NULL, out, 72, 5000, in, sizeof(in), &ol),
                     VMENC_E_KEY_NOT_FOUND);
    assert_int_equal(prov_destroy_kek(p, "no-such-key", 5000), VMENC_E_KEY_NOT_FOUND);
    assert_int_equal(prov_revoke_kek(p, "no-such-key", 5000), VMENC_E_KEY_NOT_FOUND);
    prov_free(p);
}

static void test_ambiguous_label_refused(void **state) {
    vmenc_kms_provider *p = new_provider(0, 0);
    char a[VMENC_KMS_KEY_ID_CAP], b[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(prov_create_kek(p, "twin", 5000, a, sizeof(a)), VMENC_OK);
    uint8_t in[64] = {1}, out[128];
    size_t ol = 0;
    assert_int_equal(prov_wrap(p, "twin", NULL, in, 64, 5000, out, sizeof(out), &ol), VMENC_OK);
    assert_int_equal(prov_create_kek(p, "twin", 5000, b, sizeof(b)), VMENC_OK);
    assert_int_equal(prov_wrap(p, "twin", NULL, in, 64, 5000, out, sizeof(out), &ol),
                     VMENC_E_KMS_REFUSED);
    /* the IDs stay unambiguous */
    assert_int_equal(prov_wrap(p, a, NULL, in, 64, 5000, out, sizeof(out), &ol), VMENC_OK);
    assert_int_equal(prov_destroy_kek(p, a, 5000), VMENC_OK);
    assert_int_equal(prov_destroy_kek(p, b, 5000), VMENC_OK);
    prov_free(p);
}

static void test_extractable_kek_refused(void **state) {
    p11c c;
    p11c_open(&c);
    uint8_t key[32];
    assert_int_equal(vmenc_random_bytes(key, sizeof(key)), VMENC_OK);
    p11c_import_aes(&c, "leaky", key, sizeof(key), true);
    vmenc_kms_provider *p = new_provider(0, 0);
    uint8_t in[64] = {1}, out[128];
    size_t ol = 0;
    assert_int_equal(prov_wrap(p, "leaky", NULL, in, 64, 5000, out, sizeof(out), &ol),
                     VMENC_E_KEY_STATE);
    prov_free(p);
    p = new_provider(VMENC_PKCS11_ALLOW_EXTRACTABLE_KEK, 0);
    assert_int_equal(prov_wrap(p, "leaky", NULL, in, 64, 5000, out, sizeof(out), &ol), VMENC_OK);
    assert_int_equal(prov_destroy_kek(p, "leaky", 5000), VMENC_OK);
    prov_free(p);
    p11c_close(&c);
}

/* ---- the KEK stays in the token ------------------------------------------ */

static void test_kek_not_extractable(void **state) {
    vmenc_kms_provider *p = new_provider(0, 0);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(prov_create_kek(p, "locked-in", 5000, id, sizeof(id)), VMENC_OK);
    uint8_t cka_id[16];
    hex_to_bytes(id + 3, cka_id, sizeof(cka_id));

    p11c c;
    p11c_open(&c);
    ck_object_handle_t kek = 0;
    assert_int_equal(p11c_find(&c, CKA_ID, cka_id, sizeof(cka_id), &kek), 1);
    unsigned char extractable = 1, never = 0, sensitive = 0, always = 0, token = 0, priv = 0, wrap = 0, unwrap = 0;
    unsigned long len = 0;
    ck_key_type_t kt = 0;
    struct ck_attribute q[] = {
        {CKA_EXTRACTABLE, &extractable, 1}, {CKA_NEVER_EXTRACTABLE, &never, 1}, {CKA_SENSITIVE, &sensitive, 1},
        {CKA_ALWAYS_SENSITIVE, &always, 1}, {CKA_TOKEN, &token, 1},             {CKA_PRIVATE, &priv, 1},
        {CKA_WRAP, &wrap, 1},               {CKA_UNWRAP, &unwrap, 1},           {CKA_VALUE_LEN, &len, sizeof(len)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
    };
    assert_int_equal(c.fl->C_GetAttributeValue(c.s, kek, q, VMENC_ARRAY_LEN(q)), CKR_OK);
    assert_false(extractable);
    assert_true(never);
    assert_true(sensitive);
    assert_true(always);
    assert_true(token);
    assert_true(priv);
    assert_true(wrap);
    assert_true(unwrap);
    assert_int_equal(len, 32);
    assert_int_equal(kt, CKK_AES);
    /* the value cannot be read */
    uint8_t value[32];
    struct ck_attribute v = {CKA_VALUE, value, sizeof(value)};
    assert_int_equal(c.fl->C_GetAttributeValue(c.s, kek, &v, 1), CKR_ATTRIBUTE_SENSITIVE);
    /* nor wrapped out: with itself, or with another (extractable) key */
    uint8_t wrapped[64];
    unsigned long wl = sizeof(wrapped);
    struct ck_mechanism kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    assert_int_not_equal(c.fl->C_WrapKey(c.s, &kwp, kek, kek, wrapped, &wl), CKR_OK);
    ck_object_class_t cls = CKO_SECRET_KEY;
    ck_key_type_t aes = CKK_AES;
    unsigned long vl = 32;
    unsigned char yes = 1, no = 0;
    struct ck_attribute gt[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &aes, sizeof(aes)}, {CKA_VALUE_LEN, &vl, sizeof(vl)},
        {CKA_TOKEN, &no, 1},            {CKA_WRAP, &yes, 1},               {CKA_EXTRACTABLE, &yes, 1},
    };
    struct ck_mechanism gen = {CKM_AES_KEY_GEN, NULL, 0};
    ck_object_handle_t other;
    assert_int_equal(c.fl->C_GenerateKey(c.s, &gen, gt, VMENC_ARRAY_LEN(gt), &other), CKR_OK);
    wl = sizeof(wrapped);
    assert_int_equal(c.fl->C_WrapKey(c.s, &kwp, other, kek, wrapped, &wl), CKR_KEY_UNEXTRACTABLE);
    struct ck_mechanism kw = {CKM_AES_KEY_WRAP, NULL, 0};
    wl = sizeof(wrapped);
    assert_int_equal(c.fl->C_WrapKey(c.s, &kw, other, kek, wrapped, &wl), CKR_KEY_UNEXTRACTABLE);
    /* and the flag cannot be switched back on */
    struct ck_attribute on = {CKA_EXTRACTABLE, &yes, 1};
    assert_int_not_equal(c.fl->C_SetAttributeValue(c.s, kek, &on, 1), CKR_OK);
    assert_int_equal(c.fl->C_DestroyObject(c.s, other), CKR_OK);

    /* the recipe's pkcs11-tool key has the same properties */
    ck_object_handle_t rk = 0;
    assert_int_equal(p11c_find(&c, CKA_LABEL, "kek", 3, &rk), 1);
    struct ck_attribute rq[] = {{CKA_EXTRACTABLE, &extractable, 1}, {CKA_NEVER_EXTRACTABLE, &never, 1}};
    assert_int_equal(c.fl->C_GetAttributeValue(c.s, rk, rq, 2), CKR_OK);
    assert_false(extractable);
    assert_true(never);

    /* wrap/unwrap leave no temporary objects behind (the test's session sees
     * every session object of this process) */
    assert_int_equal(count_generic_secrets(&c), 0);
    for (size_t m = 0; m < VMENC_ARRAY_LEN(all_mechs); m++)
        roundtrip(p, id, all_mechs[m], 64);
    uint8_t junk[72] = {0}, back[72];
    size_t bl;
    assert_int_equal(prov_unwrap(p, id, NULL, junk, sizeof(junk), 5000, back, sizeof(back), &bl),
                     VMENC_E_AUTH);
    assert_int_equal(count_generic_secrets(&c), 0);

    assert_int_equal(prov_destroy_kek(p, id, 5000), VMENC_OK);
    assert_int_equal(p11c_find(&c, CKA_ID, cka_id, sizeof(cka_id), NULL), 0);
    prov_free(p);
    p11c_close(&c);
}

/* ---- known answers and OpenSSL differential ----------------------------- */

static void test_known_answer_vectors(void **state) {
    p11c c;
    p11c_open(&c);
    /* RFC 3394 4.6: 256 bits of key data with a 256-bit KEK */
    uint8_t k3394[32], d3394[32], e3394[40];
    hex_to_bytes("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", k3394, 32);
    hex_to_bytes("00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f", d3394, 32);
    hex_to_bytes("28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21", e3394, 40);
    p11c_import_aes(&c, "kat-3394", k3394, 32, false);
    /* RFC 3394 4.1: 128 bits of key data with a 128-bit KEK */
    uint8_t k41[16], d41[16], e41[24];
    hex_to_bytes("000102030405060708090a0b0c0d0e0f", k41, 16);
    hex_to_bytes("00112233445566778899aabbccddeeff", d41, 16);
    hex_to_bytes("1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5", e41, 24);
    p11c_import_aes(&c, "kat-3394-128", k41, 16, false);
    /* (RFC 5649's own vectors are 20 and 7 octets, lengths this provider
     * refuses; KWP is checked against OpenSSL in the differential test.) */

    vmenc_kms_provider *p = new_provider(0, 0);
    uint8_t out[64], back[64];
    size_t ol = 0, bl = 0;
    vmenc_kms_wrap_params kw = params_for(VMENC_KMS_WRAP_AES_KW, NULL, NULL, 0);
    assert_int_equal(prov_wrap(p, "kat-3394", &kw, d3394, 32, 5000, out, sizeof(out), &ol), VMENC_OK);
    assert_int_equal(ol, 40);
    assert_memory_equal(out, e3394, 40);
    assert_int_equal(prov_unwrap(p, "kat-3394", &kw, e3394, 40, 5000, back, sizeof(back), &bl),
                     VMENC_OK);
    assert_int_equal(bl, 32);
    assert_memory_equal(back, d3394, 32);
    assert_int_equal(prov_wrap(p, "kat-3394-128", &kw, d41, 16, 5000, out, sizeof(out), &ol), VMENC_OK);
    assert_int_equal(ol, 24);
    assert_memory_equal(out, e41, 24);
    assert_int_equal(prov_unwrap(p, "kat-3394-128", &kw, e41, 24, 5000, back, sizeof(back), &bl), VMENC_OK);
    assert_int_equal(bl, 16);
    assert_memory_equal(back, d41, 16);
    /* a KAT blob with one bit flipped */
    e41[5] ^= 0x10;
    assert_int_equal(prov_unwrap(p, "kat-3394-128", &kw, e41, 24, 5000, back, sizeof(back), &bl), VMENC_E_AUTH);
    assert_int_equal(prov_destroy_kek(p, "kat-3394", 5000), VMENC_OK);
    assert_int_equal(prov_destroy_kek(p, "kat-3394-128", 5000), VMENC_OK);
    prov_free(p);
    p11c_close(&c);
}

/* OpenSSL computes what the token should: same key, same input, same bytes. */
static size_t openssl_wrap(vmenc_kms_wrap_mech m, const uint8_t key[32], const uint8_t *iv, const uint8_t *aad,
                           size_t aad_len, const uint8_t *in, size_t in_len, uint8_t *out) {
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    assert_non_null(x);
    int l1 = 0, l2 = 0;
    if (m == VMENC_KMS_WRAP_AES_GCM) {
        assert_int_equal(EVP_EncryptInit_ex(x, EVP_aes_256_gcm(), NULL, key, iv), 1);
        if (aad_len > 0)
            assert_int_equal(EVP_EncryptUpdate(x, NULL, &l1, aad, (int)aad_len), 1);
        assert_int_equal(EVP_EncryptUpdate(x, out, &l1, in, (int)in_len), 1);
        assert_int_equal(EVP_EncryptFinal_ex(x, out + l1, &l2), 1);
        assert_int_equal(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, 16, out + l1 + l2), 1);
        l2 += 16;
    } else {
        EVP_CIPHER_CTX_set_flags(x, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
        const EVP_CIPHER *c = m == VMENC_KMS_WRAP_AES_KW ? EVP_aes_256_wrap() : EVP_aes_256_wrap_pad();
        assert_int_equal(EVP_EncryptInit_ex(x, c, NULL, key, NULL), 1);
        assert_int_equal(EVP_EncryptUpdate(x, out, &l1, in, (int)in_len), 1);
        assert_int_equal(EVP_EncryptFinal_ex(x, out + l1, &l2), 1);
    }
    EVP_CIPHER_CTX_free(x);
    return (size_t)(l1 + l2);
}

static void test_differential_openssl(void **state) {
    p11c c;
    p11c_open(&c);
    uint8_t key[32];
    assert_int_equal(vmenc_random_bytes(key, sizeof(key)), VMENC_OK);
    p11c_import_aes(&c, "diff-kek", key, sizeof(key), false);
    vmenc_kms_provider *p = new_provider(0, 0);
    for (int round = 0; round < 40; round++) {
        vmenc_kms_wrap_mech m = all_mechs[round % 3];
        uint8_t lb;
        assert_int_equal(vmenc_random_bytes(&lb, 1), VMENC_OK);
        size_t n = m == VMENC_KMS_WRAP_AES_GCM ? 1 + (size_t)lb % 160
                   : m == VMENC_KMS_WRAP_AES_KW ? 16 + (size_t)(lb % 19) * 8 : 8 + (size_t)(lb % 20) * 8;
        uint8_t in[200], iv[12], aad[64], a[256], b[256];
        assert_int_equal(vmenc_random_bytes(in, n), VMENC_OK);
        assert_int_equal(vmenc_random_bytes(iv, 12), VMENC_OK);
        assert_int_equal(vmenc_random_bytes(aad, sizeof(aad)), VMENC_OK);
        size_t aad_len = (size_t)(lb % 65);
        vmenc_kms_wrap_params w = params_for(m, iv, aad, aad_len);
        size_t al = 0;
        assert_int_equal(prov_wrap(p, "diff-kek", &w, in, n, 5000, a, sizeof(a), &al), VMENC_OK);
        size_t bl = openssl_wrap(m, key, iv, aad, aad_len, in, n, b);
        assert_int_equal(al, bl);
        assert_memory_equal(a, b, al);
    }
    assert_int_equal(prov_destroy_kek(p, "diff-kek", 5000), VMENC_OK);
    sodium_memzero(key, sizeof(key));
    prov_free(p);
    p11c_close(&c);
}

/* ---- failures at creation ------------------------------------------------ */

static void test_wrong_pin(void **state) {
    vmenc_pkcs11_config c = base_config();
    c.pin = (const uint8_t *)"9999";
    c.pin_len = 4;
    vmenc_kms_provider *p = (vmenc_kms_provider *)(uintptr_t)0x1;
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_E_KMS_AUTH);
    assert_ptr_equal(p, (vmenc_kms_provider *)(uintptr_t)0x1); /* untouched */
    /* a successful login afterwards resets the token's failure count */
    p = new_provider(0, 0);
    assert_int_equal(prov_health(p, 1000), VMENC_OK);
    prov_free(p);
}

static ck_rv_t login_pin_locked(ck_session_handle_t s, ck_user_type_t u, unsigned char *pin, unsigned long len) {
    return CKR_PIN_LOCKED;
}

static ck_rv_t (*real_get_token_info)(ck_slot_id_t, struct ck_token_info *);
static ck_rv_t token_info_locked(ck_slot_id_t slot, struct ck_token_info *ti) {
    ck_rv_t rv = real_get_token_info(slot, ti);
    ti->flags |= CKF_USER_PIN_LOCKED;
    return rv;
}
static ck_rv_t token_info_removed(ck_slot_id_t slot, struct ck_token_info *ti) { return CKR_DEVICE_REMOVED; }

static void test_pin_locked(void **state) {
    /* SoftHSM 2.6.1 never locks a user PIN: every wrong PIN is "wrong", and
     * the right one still works afterwards. */
    vmenc_pkcs11_config c = base_config();
    c.token_label = LOCK_TOKEN;
    c.pin = (const uint8_t *)"0000";
    c.pin_len = 4;
    vmenc_kms_provider *p = NULL;
    for (int i = 0; i < 12; i++)
        assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_E_KMS_AUTH);
    assert_null(p);
    c.pin = (const uint8_t *)PIN;
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_OK);
    prov_free(p);
    p = NULL;

    /* A locked PIN, injected as the token's C_Login answer. */
    p11c t;
    p11c_open_token(&t, LOCK_TOKEN, false);
    ck_rv_t (*saved_login)(ck_session_handle_t, ck_user_type_t, unsigned char *, unsigned long);
    ck_rv_t (*fn)(ck_session_handle_t, ck_user_type_t, unsigned char *, unsigned long) = login_pin_locked;
    patch_fl(t.fl, &t.fl->C_Login, &fn, &saved_login);
    vmenc_status st = vmenc_pkcs11_provider_new(&c, &p);
    patch_fl(t.fl, &t.fl->C_Login, &saved_login, NULL);
    assert_int_equal(st, VMENC_E_PIN_LOCKED);
    assert_null(p);

    /* A provider already running reports the token's lock flag in health,
     * and a vanished device as unavailable (a cluster fails over on that). */
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_OK);
    assert_int_equal(prov_health(p, 1000), VMENC_OK);
    ck_rv_t (*gti)(ck_slot_id_t, struct ck_token_info *) = token_info_locked;
    patch_fl(t.fl, &t.fl->C_GetTokenInfo, &gti, &real_get_token_info);
    st = prov_health(p, 1000);
    gti = token_info_removed;
    patch_fl(t.fl, &t.fl->C_GetTokenInfo, &gti, NULL);
    vmenc_status st2 = prov_health(p, 1000);
    patch_fl(t.fl, &t.fl->C_GetTokenInfo, &real_get_token_info, NULL);
    assert_int_equal(st, VMENC_E_PIN_LOCKED);
    assert_int_equal(st2, VMENC_E_KMS_UNAVAILABLE);
    assert_int_equal(prov_health(p, 1000), VMENC_OK);
    prov_free(p);
    p11c_close(&t);
}

static void test_missing_token(void **state) {
    vmenc_pkcs11_config c = base_config();
    c.token_label = "no-such-token";
    vmenc_kms_provider *p = NULL;
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_E_TOKEN_NOT_FOUND);
    assert_null(p);
    c.token_label = "a-label-longer-than-thirty-two-bytes";
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_E_INVALID_ARG);
    c.token_label = "";
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_E_INVALID_ARG);
    assert_null(p);
}

static void test_missing_module(void **state) {
    vmenc_pkcs11_config c = base_config();
    vmenc_kms_provider *p = NULL;
    c.module_path = "/nonexistent/libpkcs11.so";
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_E_KMS_UNAVAILABLE);
    /* a relative path would be searched for: refused */
    c.module_path = "libsofthsm2.so";
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_E_INVALID_ARG);
    /* a shared library that is no PKCS#11 module (libsodium's own file) */
    Dl_info info;
    void *fn = NULL;
    int (*sinit)(void) = sodium_init;
    memcpy(&fn, &sinit, sizeof(fn));
    assert_true(dladdr(fn, &info) != 0 && info.dli_fname != NULL && info.dli_fname[0] == '/');
    c.module_path = info.dli_fname;
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_E_KMS_PROTOCOL);
    /* not a shared library at all */
    char conf[512];
    snprintf(conf, sizeof(conf), "%s/softhsm2.conf", g_dir);
    c.module_path = conf;
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_E_KMS_UNAVAILABLE);
    assert_null(p);
}

static void test_config_validation(void **state) {
    vmenc_kms_provider *p = NULL;
    vmenc_pkcs11_config c = base_config();
    c.struct_size = 8;
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_E_ABI_VERSION);
    c = base_config();
    c.pin_len = 0;
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_E_INVALID_ARG);
    c = base_config();
    c.max_sessions = VMENC_PKCS11_MAX_SESSIONS + 1;
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_E_INVALID_ARG);
    c = base_config();
    c.flags = 1u << 7;
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_E_INVALID_ARG);
    c = base_config();
    c.mechanism = (vmenc_kms_wrap_mech)42;
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_E_INVALID_ARG);
    c = base_config();
    c.key_label = "id:01";
    assert_int_equal(vmenc_pkcs11_provider_new(&c, &p), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_pkcs11_provider_new(NULL, &p), VMENC_E_INVALID_ARG);
    assert_null(p);
}

static void test_endpoint_options(void **state) {
    vmenc_kms_endpoint_config e;
    memset(&e, 0, sizeof(e));
    e.struct_size = sizeof(e);
    e.type = "pkcs11";
    e.address = g_module;
    e.secret = (const uint8_t *)PIN;
    e.secret_len = strlen(PIN);
    vmenc_kms_provider *p = NULL;

    const char *const ok[] = {"token_label=" TOKEN, "mechanism=kw", "key_label=ep-kek", "max_sessions=2",
                              "forget_pin=0", NULL};
    e.options = ok;
    assert_int_equal(vmenc_pkcs11_provider_factory(NULL, &e, &p), VMENC_OK);
    vmenc_kms_wrap_mech m = 0;
    assert_int_equal(vmenc_pkcs11_provider_mechanism(p, &m), VMENC_OK);
    assert_int_equal(m, VMENC_KMS_WRAP_AES_KW);
    /* NULL params use the configured mechanism: KW refuses 8 bytes, KWP takes them */
    uint8_t in[64] = {7}, out[96];
    size_t ol = 0;
    assert_int_equal(prov_wrap(p, "kek", NULL, in, 8, 5000, out, sizeof(out), &ol), VMENC_E_BAD_LENGTH);
    vmenc_kms_wrap_params kwp = params_for(VMENC_KMS_WRAP_AES_KWP, NULL, NULL, 0);
    assert_int_equal(prov_wrap(p, "kek", &kwp, in, 8, 5000, out, sizeof(out), &ol), VMENC_OK);
    assert_int_equal(ol, 16);
    /* key_label names KEKs created without a name */
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(prov_create_kek(p, NULL, 5000, id, sizeof(id)), VMENC_OK);
    assert_int_equal(prov_wrap(p, "ep-kek", NULL, in, 64, 5000, out, sizeof(out), &ol), VMENC_OK);
    assert_int_equal(prov_destroy_kek(p, id, 5000), VMENC_OK);
    prov_free(p);
    p = NULL;

    const char *const gcm[] = {"mechanism=gcm", "token_label=" TOKEN, NULL};
    e.options = gcm;
    assert_int_equal(vmenc_pkcs11_provider_new_from_endpoint(&e, &p), VMENC_OK);
    assert_int_equal(vmenc_pkcs11_provider_mechanism(p, &m), VMENC_OK);
    assert_int_equal(m, VMENC_KMS_WRAP_AES_GCM);
    /* GCM with no params has no IV: refused, never a made-up IV */
    assert_int_equal(prov_wrap(p, "kek", NULL, in, 64, 5000, out, sizeof(out), &ol),
                     VMENC_E_INVALID_ARG);
    prov_free(p);
    p = NULL;

    const char *const *const bad[] = {
        (const char *const[]){"token_label=" TOKEN, "mechanism=aes", NULL},
        (const char *const[]){"token_label=" TOKEN, "tokenlabel=x", NULL},
        (const char *const[]){"token_label=" TOKEN, "token_label=" TOKEN, NULL},
        (const char *const[]){"mechanism=kwp", NULL},
        (const char *const[]){"token_label=" TOKEN, "max_sessions=0", NULL},
        (const char *const[]){"token_label=" TOKEN, "max_sessions=65", NULL},
        (const char *const[]){"token_label=" TOKEN, "max_sessions=2x", NULL},
        (const char *const[]){"token_label=" TOKEN, "forget_pin=maybe", NULL},
        (const char *const[]){"token_label", NULL},
        NULL,
    };
    for (size_t i = 0; bad[i] != NULL; i++) {
        e.options = bad[i];
        assert_int_equal(vmenc_pkcs11_provider_factory(NULL, &e, &p), VMENC_E_INVALID_ARG);
        assert_null(p);
    }
    e.options = ok;
    e.type = "kmip";
    assert_int_equal(vmenc_pkcs11_provider_factory(NULL, &e, &p), VMENC_E_INVALID_ARG);
    e.type = "pkcs11";
    e.secret = (const uint8_t *)"4321";
    assert_int_equal(vmenc_pkcs11_provider_factory(NULL, &e, &p), VMENC_E_KMS_AUTH);
    assert_null(p);
    /* not our provider */
    vmenc_kms_provider other = {sizeof(other), NULL};
    assert_int_equal(vmenc_pkcs11_provider_mechanism(&other, &m), VMENC_E_INVALID_ARG);
}

/* ---- lifecycle: revoke, destroy ------------------------------------------ */

static void test_revoke_and_destroy(void **state) {
    vmenc_kms_provider *p = new_provider(0, 0);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(prov_create_kek(p, "short-lived", 5000, id, sizeof(id)), VMENC_OK);
    uint8_t iv[12] = {9}, dek[64], w1[80], w2[80], back[80];
    size_t l1 = 0, l2 = 0, bl = 0;
    assert_int_equal(vmenc_random_bytes(dek, sizeof(dek)), VMENC_OK);
    vmenc_kms_wrap_params g = params_for(VMENC_KMS_WRAP_AES_GCM, iv, NULL, 0);
    assert_int_equal(prov_wrap(p, id, NULL, dek, 64, 5000, w1, sizeof(w1), &l1), VMENC_OK);
    assert_int_equal(prov_wrap(p, id, &g, dek, 64, 5000, w2, sizeof(w2), &l2), VMENC_OK);
    assert_int_equal(prov_revoke_kek(p, id, 5000), VMENC_OK);
    /* no new wraps, by either route ... */
    assert_int_equal(prov_wrap(p, id, NULL, dek, 64, 5000, back, sizeof(back), &bl), VMENC_E_KEY_STATE);
    assert_int_equal(prov_wrap(p, id, &g, dek, 64, 5000, back, sizeof(back), &bl), VMENC_E_KEY_STATE);
    /* ... but what was wrapped still unwraps */
    assert_int_equal(prov_unwrap(p, id, NULL, w1, l1, 5000, back, sizeof(back), &bl), VMENC_OK);
    assert_memory_equal(back, dek, 64);
    assert_int_equal(prov_unwrap(p, id, &g, w2, l2, 5000, back, sizeof(back), &bl), VMENC_OK);
    assert_memory_equal(back, dek, 64);
    assert_int_equal(prov_destroy_kek(p, id, 5000), VMENC_OK);
    assert_int_equal(prov_unwrap(p, id, NULL, w1, l1, 5000, back, sizeof(back), &bl),
                     VMENC_E_KEY_NOT_FOUND);
    assert_int_equal(prov_destroy_kek(p, id, 5000), VMENC_E_KEY_NOT_FOUND);
    prov_free(p);
}

/* ---- sessions: loss, re-login, sharing the module ----------------------- */

static void test_session_loss_relogin(void **state) {
    vmenc_kms_provider *p = new_provider(0, 0);
    vmenc_kms_provider *forgetful = new_provider(VMENC_PKCS11_FORGET_PIN, 0);
    roundtrip(p, "kek", VMENC_KMS_WRAP_AES_KWP, 64);
    roundtrip(forgetful, "kek", VMENC_KMS_WRAP_AES_KWP, 64);
    p11c c;
    p11c_open(&c);
    ck_slot_id_t slot = p11c_slot(&c, TOKEN);
    /* Drop every session of this process with the token, and so the login. */
    assert_int_equal(c.fl->C_CloseAllSessions(slot), CKR_OK);
    /* The provider that kept its PIN logs in again and carries on. */
    roundtrip(p, "kek", VMENC_KMS_WRAP_AES_GCM, 96);
    assert_int_equal(prov_health(p, 1000), VMENC_OK);
    /* The one that forgot its PIN cannot: a clear auth error, not "not found".
     * (p's new login is the process's, so drop it again first.) */
    assert_int_equal(c.fl->C_CloseAllSessions(slot), CKR_OK);
    uint8_t in[64] = {3}, out[96];
    size_t ol = 0;
    assert_int_equal(prov_wrap(forgetful, "kek", NULL, in, 64, 5000, out, sizeof(out), &ol),
                     VMENC_E_KMS_AUTH);
    assert_int_equal(prov_health(forgetful, 1000), VMENC_E_KMS_AUTH);
    /* health of the other one recovers the login for the whole process */
    assert_int_equal(prov_health(p, 1000), VMENC_OK);
    roundtrip(forgetful, "kek", VMENC_KMS_WRAP_AES_KW, 64);
    /* (our own session died with C_CloseAllSessions; closing it is a no-op) */
    p11c_close(&c);
    prov_free(forgetful);
    prov_free(p);
}

static int g_login_calls;
static ck_rv_t (*real_login)(ck_session_handle_t, ck_user_type_t, unsigned char *, unsigned long);
static ck_rv_t counting_login(ck_session_handle_t s, ck_user_type_t u, unsigned char *pin, unsigned long len) {
    g_login_calls++;
    return real_login(s, u, pin, len);
}

static void test_changed_pin_is_not_retried(void **state) {
    /* An administrator changes the PIN while the provider runs, and the
     * login is lost: the provider tries its old PIN once, then stops, so it
     * cannot count a real HSM down to a lock-out. */
    vmenc_pkcs11_config cfg = base_config();
    cfg.token_label = LOCK_TOKEN;
    vmenc_kms_provider *p = NULL;
    assert_int_equal(vmenc_pkcs11_provider_new(&cfg, &p), VMENC_OK);
    p11c t;
    p11c_open_token(&t, LOCK_TOKEN, true);
    assert_int_equal(t.fl->C_SetPIN(t.s, (unsigned char *)PIN, 4, (unsigned char *)"5678", 4), CKR_OK);
    ck_slot_id_t slot = p11c_slot(&t, LOCK_TOKEN);
    assert_int_equal(t.fl->C_CloseAllSessions(slot), CKR_OK);
    ck_rv_t (*fn)(ck_session_handle_t, ck_user_type_t, unsigned char *, unsigned long) = counting_login;
    g_login_calls = 0;
    patch_fl(t.fl, &t.fl->C_Login, &fn, &real_login);
    uint8_t in[64] = {5}, out[80];
    size_t ol = 0;
    vmenc_status s1 = prov_health(p, 1000);
    vmenc_status s2 = prov_wrap(p, "anything", NULL, in, 64, 5000, out, sizeof(out), &ol);
    vmenc_status s3 = prov_health(p, 1000);
    int calls = g_login_calls;
    patch_fl(t.fl, &t.fl->C_Login, &real_login, NULL);
    assert_int_equal(s1, VMENC_E_KMS_AUTH);
    assert_int_equal(s2, VMENC_E_KMS_AUTH);
    assert_int_equal(s3, VMENC_E_KMS_AUTH);
    assert_int_equal(calls, 1);
    /* put the PIN back for the other tests (before the provider finalises
     * the module it initialised) */
    assert_int_equal(t.fl->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &t.s), CKR_OK);
    assert_int_equal(t.fl->C_Login(t.s, CKU_USER, (unsigned char *)"5678", 4), CKR_OK);
    assert_int_equal(t.fl->C_SetPIN(t.s, (unsigned char *)"5678", 4, (unsigned char *)PIN, 4), CKR_OK);
    /* the process is logged in again (by our session): the provider works,
     * though its own PIN is gone */
    assert_int_equal(prov_health(p, 1000), VMENC_OK);
    p11c_close(&t);
    prov_free(p);
}

static void test_shared_module(void **state) {
    /* Two providers on one module: freeing one leaves the other working. */
    vmenc_kms_provider *a = new_provider(0, 0);
    vmenc_kms_provider *b = new_provider(0, 0);
    roundtrip(a, "kek", VMENC_KMS_WRAP_AES_KWP, 64);
    prov_free(a);
    roundtrip(b, "kek", VMENC_KMS_WRAP_AES_KW, 64);
    assert_int_equal(prov_health(b, 1000), VMENC_OK);
    prov_free(b);

    /* A module the application initialised first is not finalised by us. */
    p11c c;
    p11c_open(&c);
    assert_true(c.initialized_here);
    vmenc_kms_provider *p = new_provider(0, 0);
    roundtrip(p, "kek", VMENC_KMS_WRAP_AES_GCM, 64);
    prov_free(p);
    struct ck_session_info si;
    assert_int_equal(c.fl->C_GetSessionInfo(c.s, &si), CKR_OK);
    assert_int_equal(si.state, CKS_RW_USER_FUNCTIONS);
    p11c_close(&c);

    /* And one we initialised is finalised when we go: the application can
     * initialise it afresh. */
    p = new_provider(0, 0);
    prov_free(p);
    p11c_open(&c);
    assert_true(c.initialized_here);
    p11c_close(&c);
}

/* ---- fork ------------------------------------------------------------------ */

/* Runs in the child: plain checks and exit codes, no cmocka. */
static int child_after_fork(vmenc_kms_provider *inherited) {
    uint8_t in[64] = {9}, out[80], back[80];
    size_t ol = 0, bl = 0;
    /* the parent's sessions are not ours */
    if (prov_wrap(inherited, "kek", NULL, in, 64, 1000, out, sizeof(out), &ol) != VMENC_E_BAD_STATE)
        return 10;
    if (prov_health(inherited, 1000) != VMENC_E_BAD_STATE)
        return 11;
    prov_free(inherited); /* memory only: leaves the parent's token state alone */
    /* a provider made in the child initialises the module for the child */
    vmenc_pkcs11_config c = base_config();
    vmenc_kms_provider *p = NULL;
    if (vmenc_pkcs11_provider_new(&c, &p) != VMENC_OK)
        return 12;
    if (prov_wrap(p, "kek", NULL, in, 64, 5000, out, sizeof(out), &ol) != VMENC_OK ||
        prov_unwrap(p, "kek", NULL, out, ol, 5000, back, sizeof(back), &bl) != VMENC_OK || bl != 64 ||
        memcmp(back, in, 64) != 0)
        return 13;
    prov_free(p);
    return 0;
}

static void test_fork_child_cannot_use_parent_provider(void **state) {
    vmenc_kms_provider *p = new_provider(0, 0);
    roundtrip(p, "kek", VMENC_KMS_WRAP_AES_KWP, 64);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_after_fork(p));
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* and the parent carries on with its sessions */
    roundtrip(p, "kek", VMENC_KMS_WRAP_AES_GCM, 64);
    assert_int_equal(prov_health(p, 1000), VMENC_OK);
    prov_free(p);
}

/* ---- concurrency ----------------------------------------------------------- */

typedef struct worker {
    vmenc_kms_provider *p;
    const char *id;
    int index;
    int failures;
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    for (int i = 0; i < 40; i++) {
        vmenc_kms_wrap_mech m = all_mechs[(i + w->index) % 3];
        uint8_t dek[96], iv[12], aad[16], wrapped[128], back[128];
        size_t wl = 0, bl = 0;
        if (vmenc_random_bytes(dek, sizeof(dek)) != VMENC_OK || vmenc_random_bytes(iv, sizeof(iv)) != VMENC_OK) {
            w->failures++;
            continue;
        }
        memset(aad, w->index, sizeof(aad));
        vmenc_kms_wrap_params prm = params_for(m, iv, aad, sizeof(aad));
        size_t n = (i % 2) ? 96 : 64;
        if (prov_wrap(w->p, w->id, &prm, dek, n, 60000, wrapped, sizeof(wrapped), &wl) != VMENC_OK ||
            prov_unwrap(w->p, w->id, &prm, wrapped, wl, 60000, back, sizeof(back), &bl) != VMENC_OK ||
            bl != n || memcmp(back, dek, n) != 0)
            w->failures++;
    }
    return NULL;
}

static void test_concurrent_wrap_unwrap(void **state) {
    /* Fewer sessions than threads, so threads also wait for each other. */
    vmenc_kms_provider *p = new_provider(0, 2);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(prov_create_kek(p, "busy", 5000, id, sizeof(id)), VMENC_OK);
    pthread_t t[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){p, i % 2 ? id : "kek", i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    p11c c;
    p11c_open(&c);
    assert_int_equal(count_generic_secrets(&c), 0);
    p11c_close(&c);
    assert_int_equal(prov_destroy_kek(p, id, 5000), VMENC_OK);
    prov_free(p);
}

/* ---- the key layer's wrapped-key records, sealed in the token ---------- */

typedef struct seal_arg {
    vmenc_kms_provider *p;
    const char *id;
} seal_arg;

static vmenc_status token_seal(void *arg, vmenc_wrap_alg alg, const uint8_t *nonce, size_t nonce_len,
                               const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len, uint8_t *out,
                               size_t out_cap, size_t *out_len) {
    seal_arg *a = arg;
    vmenc_kms_wrap_params w = {sizeof(w), alg == VMENC_WRAP_AES256_GCM ? VMENC_KMS_WRAP_AES_GCM : VMENC_KMS_WRAP_AES_KWP,
                               nonce, nonce_len, aad, aad_len};
    return prov_wrap(a->p, a->id, &w, in, in_len, 5000, out, out_cap, out_len);
}

static vmenc_status token_open(void *arg, vmenc_wrap_alg alg, const uint8_t *nonce, size_t nonce_len,
                               const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len, uint8_t *out,
                               size_t out_cap, size_t *out_len) {
    seal_arg *a = arg;
    vmenc_kms_wrap_params w = {sizeof(w), alg == VMENC_WRAP_AES256_GCM ? VMENC_KMS_WRAP_AES_GCM : VMENC_KMS_WRAP_AES_KWP,
                               nonce, nonce_len, aad, aad_len};
    return prov_unwrap(a->p, a->id, &w, in, in_len, 5000, out, out_cap, out_len);
}

static void test_wrapped_key_records_in_token(void **state) {
    vmenc_kms_provider *p = new_provider(0, 0);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(prov_create_kek(p, "records", 5000, id, sizeof(id)), VMENC_OK);
    seal_arg a = {p, id};
    vmenc_wrap_context ctx = {sizeof(ctx), "4c4c4544-0042-3510-8051-b4c04f4e4d32", "scsi0:0", "disk"};
    vmenc_wrap_context other = {sizeof(other), "4c4c4544-0042-3510-8051-b4c04f4e4d32", "scsi0:1", "disk"};
    static const vmenc_wrap_alg algs[] = {VMENC_WRAP_AES256_GCM, VMENC_WRAP_AES256_KWP};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(algs); i++) {
        vmenc_dek *dek = NULL, *back = NULL;
        vmenc_wrapped_key *wk = NULL, *parsed = NULL;
        assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
        assert_int_equal(vmenc_wrapped_key_seal_with(algs[i], "hsm", id, &ctx, dek, token_seal, &a, &wk), VMENC_OK);
        assert_string_equal(vmenc_wrapped_key_kek_id(wk), id);
        /* through the stored form and back */
        uint8_t *bytes = NULL;
        size_t len = 0;
        assert_int_equal(vmenc_wrapped_key_serialize(wk, &bytes, &len), VMENC_OK);
        assert_int_equal(vmenc_wrapped_key_parse(bytes, len, &parsed), VMENC_OK);
        assert_int_equal(vmenc_wrapped_key_open_with(parsed, &ctx, token_open, &a, &back), VMENC_OK);
        assert_int_equal(vmenc_dek_equal(dek, back), VMENC_OK);
        vmenc_dek_free(back);
        back = NULL;
        /* bound to its disk: another disk's context does not open it */
        assert_int_equal(vmenc_wrapped_key_open_with(parsed, &other, token_open, &a, &back), VMENC_E_AUTH);
        assert_null(back);
        vmenc_buffer_free(bytes);
        vmenc_wrapped_key_free(parsed);
        vmenc_wrapped_key_free(wk);
        vmenc_dek_free(dek);
    }
    assert_int_equal(prov_destroy_kek(p, id, 5000), VMENC_OK);
    prov_free(p);
}

/* ---- through the KMS core: built-in type, guarded calls, key manager ---- */

static void test_key_manager_with_token(void **state) {
    const char *const opts[] = {"token_label=" TOKEN, NULL};
    vmenc_kms_endpoint_config e = {sizeof(e), "pkcs11", g_module, opts, (const uint8_t *)PIN, strlen(PIN)};

    /* the built-in factory and the guarded provider calls */
    vmenc_kms_provider *p = NULL;
    assert_int_equal(vmenc_kms_provider_new_builtin(&e, &p), VMENC_OK);
    assert_int_equal(vmenc_kms_provider_check(p), VMENC_OK);
    uint8_t dek[96], wrapped[112], back[96];
    size_t wl = 0, bl = 0;
    assert_int_equal(vmenc_random_bytes(dek, sizeof(dek)), VMENC_OK);
    vmenc_kms_wrap_params w = params_for(VMENC_KMS_WRAP_AES_KWP, NULL, NULL, 0);
    assert_int_equal(vmenc_kms_provider_wrap(p, "kek", &w, dek, 96, 5000, wrapped, sizeof(wrapped), &wl), VMENC_OK);
    assert_int_equal(vmenc_kms_provider_unwrap(p, "kek", &w, wrapped, wl, 5000, back, sizeof(back), &bl), VMENC_OK);
    assert_memory_equal(back, dek, 96);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_provider_get_kek(p, "kek", 5000, &k), VMENC_E_UNSUPPORTED);
    assert_int_equal(vmenc_kms_provider_health(p, 1000), VMENC_OK);
    vmenc_kms_provider_free(p);

    /* a key manager wraps and unwraps DEKs inside the token, with each remote algorithm */
    static const vmenc_wrap_alg algs[] = {VMENC_WRAP_AES256_KWP, VMENC_WRAP_AES256_GCM};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(algs); i++) {
        vmenc_keymgr_options mo = {.struct_size = sizeof(mo), .remote_wrap_alg = (uint32_t)algs[i]};
        vmenc_keymgr *m = NULL;
        assert_int_equal(vmenc_keymgr_new(&mo, &m), VMENC_OK);
        assert_int_equal(vmenc_keymgr_add_cluster(m, "hsm", &e, 1, NULL), VMENC_OK);
        char id[VMENC_KMS_KEY_ID_CAP];
        assert_int_equal(vmenc_keymgr_create_kek(m, "hsm", "keymgr-kek", 5000, id, sizeof(id)), VMENC_OK);
        vmenc_dek *d = NULL, *d2 = NULL;
        vmenc_wrapped_key *wk = NULL;
        vmenc_wrap_context ctx = {sizeof(ctx), "vm-1", "disk-0", "disk"};
        vmenc_wrap_context other = {sizeof(other), "vm-2", "disk-0", "disk"};
        assert_int_equal(vmenc_dek_generate(&d), VMENC_OK);
        assert_int_equal(vmenc_keymgr_wrap_dek(m, "hsm", id, d, &ctx, 5000, &wk), VMENC_OK);
        assert_int_equal(vmenc_wrapped_key_alg(wk), algs[i]);
        assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk, &ctx, 5000, &d2), VMENC_OK);
        assert_int_equal(vmenc_dek_equal(d, d2), VMENC_OK);
        vmenc_dek_free(d2);
        d2 = NULL;
        assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk, &other, 5000, &d2), VMENC_E_AUTH);
        assert_null(d2);
        vmenc_keymgr_stats st;
        memset(&st, 0, sizeof(st));
        st.struct_size = sizeof(st);
        assert_int_equal(vmenc_keymgr_get_stats(m, &st), VMENC_OK);
        assert_true(st.remote_ops >= 3);
        assert_int_equal(st.cached, 0); /* nothing of the KEK is on the host */
        assert_int_equal(vmenc_keymgr_destroy_kek(m, "hsm", id, 5000), VMENC_OK);
        assert_int_not_equal(vmenc_keymgr_unwrap_dek(m, wk, &ctx, 5000, &d2), VMENC_OK);
        assert_null(d2);
        vmenc_wrapped_key_free(wk);
        vmenc_dek_free(d);
        vmenc_keymgr_free(m);
    }
}

/* ---- injected token faults ------------------------------------------------ */

static pthread_mutex_t g_gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_gate_cv = PTHREAD_COND_INITIALIZER;
static bool g_gate_entered, g_gate_open;
static ck_rv_t (*real_wrap_key)(ck_session_handle_t, struct ck_mechanism *, ck_object_handle_t, ck_object_handle_t,
                                unsigned char *, unsigned long *);

/* C_WrapKey that waits at a gate: holds the provider's only session. */
static ck_rv_t gated_wrap_key(ck_session_handle_t s, struct ck_mechanism *m, ck_object_handle_t k,
                              ck_object_handle_t o, unsigned char *out, unsigned long *len) {
    pthread_mutex_lock(&g_gate_mu);
    g_gate_entered = true;
    pthread_cond_broadcast(&g_gate_cv);
    while (!g_gate_open)
        pthread_cond_wait(&g_gate_cv, &g_gate_mu);
    pthread_mutex_unlock(&g_gate_mu);
    return real_wrap_key(s, m, k, o, out, len);
}

static ck_rv_t failing_wrap_key(ck_session_handle_t s, struct ck_mechanism *m, ck_object_handle_t k,
                                ck_object_handle_t o, unsigned char *out, unsigned long *len) {
    return CKR_DEVICE_ERROR;
}

static ck_rv_t (*real_unwrap_key)(ck_session_handle_t, struct ck_mechanism *, ck_object_handle_t, unsigned char *,
                                  unsigned long, struct ck_attribute *, unsigned long, ck_object_handle_t *);
static ck_rv_t failing_unwrap_key(ck_session_handle_t s, struct ck_mechanism *m, ck_object_handle_t k,
                                  unsigned char *in, unsigned long in_len, struct ck_attribute *t, unsigned long n,
                                  ck_object_handle_t *out) {
    return CKR_DEVICE_REMOVED;
}

typedef struct wrap_job {
    vmenc_kms_provider *p;
    vmenc_status st;
} wrap_job;

static void *wrap_job_main(void *arg) {
    wrap_job *j = arg;
    uint8_t in[64] = {1}, out[80];
    size_t ol = 0;
    j->st = prov_wrap(j->p, "kek", NULL, in, 64, 60000, out, sizeof(out), &ol);
    return NULL;
}

static void test_session_wait_times_out(void **state) {
    vmenc_kms_provider *p = new_provider(0, 1);
    roundtrip(p, "kek", VMENC_KMS_WRAP_AES_KWP, 64); /* opens the one session */
    p11c c;
    p11c_open(&c);
    ck_rv_t (*fn)(ck_session_handle_t, struct ck_mechanism *, ck_object_handle_t, ck_object_handle_t,
                  unsigned char *, unsigned long *) = gated_wrap_key;
    g_gate_entered = g_gate_open = false;
    patch_fl(c.fl, &c.fl->C_WrapKey, &fn, &real_wrap_key);
    wrap_job job = {p, VMENC_E_INTERNAL};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wrap_job_main, &job), 0);
    pthread_mutex_lock(&g_gate_mu);
    while (!g_gate_entered)
        pthread_cond_wait(&g_gate_cv, &g_gate_mu);
    pthread_mutex_unlock(&g_gate_mu);
    /* the only session is inside C_WrapKey: others wait until their deadline */
    uint8_t in[64] = {2}, out[80];
    size_t ol = 0;
    vmenc_status s0 = prov_wrap(p, "kek", NULL, in, 64, 0, out, sizeof(out), &ol);
    vmenc_status s1 = prov_wrap(p, "kek", NULL, in, 64, 50, out, sizeof(out), &ol);
    pthread_mutex_lock(&g_gate_mu);
    g_gate_open = true;
    pthread_cond_broadcast(&g_gate_cv);
    pthread_mutex_unlock(&g_gate_mu);
    pthread_join(t, NULL);
    patch_fl(c.fl, &c.fl->C_WrapKey, &real_wrap_key, NULL);
    assert_int_equal(s0, VMENC_E_KMS_TIMEOUT);
    assert_int_equal(s1, VMENC_E_KMS_TIMEOUT);
    assert_int_equal(job.st, VMENC_OK);
    /* and the session is back for the next caller */
    assert_int_equal(prov_wrap(p, "kek", NULL, in, 64, 0, out, sizeof(out), &ol), VMENC_OK);
    p11c_close(&c);
    prov_free(p);
}

static void test_token_failures_during_operations(void **state) {
    vmenc_kms_provider *p = new_provider(0, 0);
    p11c c;
    p11c_open(&c);
    uint8_t in[64] = {3}, out[80], back[80];
    size_t ol = 0, bl = 0;
    assert_int_equal(prov_wrap(p, "kek", NULL, in, 64, 5000, out, sizeof(out), &ol), VMENC_OK);

    ck_rv_t (*wfn)(ck_session_handle_t, struct ck_mechanism *, ck_object_handle_t, ck_object_handle_t,
                   unsigned char *, unsigned long *) = failing_wrap_key;
    patch_fl(c.fl, &c.fl->C_WrapKey, &wfn, &real_wrap_key);
    vmenc_status st = prov_wrap(p, "kek", NULL, in, 64, 5000, back, sizeof(back), &bl);
    unsigned long left = count_generic_secrets(&c); /* the temporary object went too */
    patch_fl(c.fl, &c.fl->C_WrapKey, &real_wrap_key, NULL);
    assert_int_equal(st, VMENC_E_KMS_UNAVAILABLE);
    assert_int_equal(left, 0);

    ck_rv_t (*ufn)(ck_session_handle_t, struct ck_mechanism *, ck_object_handle_t, unsigned char *, unsigned long,
                   struct ck_attribute *, unsigned long, ck_object_handle_t *) = failing_unwrap_key;
    patch_fl(c.fl, &c.fl->C_UnwrapKey, &ufn, &real_unwrap_key);
    memset(back, 0x77, sizeof(back));
    bl = 999;
    st = prov_unwrap(p, "kek", NULL, out, ol, 5000, back, sizeof(back), &bl);
    patch_fl(c.fl, &c.fl->C_UnwrapKey, &real_unwrap_key, NULL);
    assert_int_equal(st, VMENC_E_KMS_UNAVAILABLE);
    assert_int_equal(bl, 999);
    /* the token never ran: the caller's buffer is as it was */
    for (size_t i = 0; i < sizeof(back); i++)
        assert_int_equal(back[i], 0x77);
    /* and the provider works again once the token does */
    assert_int_equal(prov_unwrap(p, "kek", NULL, out, ol, 5000, back, sizeof(back), &bl), VMENC_OK);
    assert_memory_equal(back, in, 64);
    p11c_close(&c);
    prov_free(p);
}

static void test_status_mapping(void **state) {
    static const struct {
        unsigned long rv;
        vmenc_p11_ctx ctx;
        vmenc_status want;
    } m[] = {
        {CKR_OK, VMENC_P11_CTX_GENERIC, VMENC_OK},
        {CKR_PIN_INCORRECT, VMENC_P11_CTX_LOGIN, VMENC_E_KMS_AUTH},
        {CKR_PIN_LEN_RANGE, VMENC_P11_CTX_LOGIN, VMENC_E_KMS_AUTH},
        {CKR_PIN_EXPIRED, VMENC_P11_CTX_LOGIN, VMENC_E_KMS_AUTH},
        {CKR_PIN_LOCKED, VMENC_P11_CTX_LOGIN, VMENC_E_PIN_LOCKED},
        {CKR_USER_NOT_LOGGED_IN, VMENC_P11_CTX_WRAP, VMENC_E_KMS_AUTH},
        {CKR_TOKEN_NOT_PRESENT, VMENC_P11_CTX_GENERIC, VMENC_E_KMS_UNAVAILABLE},
        {CKR_DEVICE_REMOVED, VMENC_P11_CTX_UNWRAP, VMENC_E_KMS_UNAVAILABLE},
        {CKR_SESSION_HANDLE_INVALID, VMENC_P11_CTX_WRAP, VMENC_E_KMS_UNAVAILABLE},
        {CKR_KEY_HANDLE_INVALID, VMENC_P11_CTX_WRAP, VMENC_E_KEY_NOT_FOUND},
        {CKR_KEY_FUNCTION_NOT_PERMITTED, VMENC_P11_CTX_WRAP, VMENC_E_KEY_STATE},
        {CKR_KEY_UNEXTRACTABLE, VMENC_P11_CTX_WRAP, VMENC_E_KMS_PERMISSION},
        {CKR_MECHANISM_INVALID, VMENC_P11_CTX_WRAP, VMENC_E_UNSUPPORTED},
        {CKR_BUFFER_TOO_SMALL, VMENC_P11_CTX_UNWRAP, VMENC_E_BUFFER_TOO_SMALL},
        {CKR_WRAPPED_KEY_INVALID, VMENC_P11_CTX_UNWRAP, VMENC_E_AUTH},
        {CKR_ENCRYPTED_DATA_INVALID, VMENC_P11_CTX_UNWRAP, VMENC_E_AUTH},
        {CKR_GENERAL_ERROR, VMENC_P11_CTX_UNWRAP, VMENC_E_AUTH},
        /* outside unwrap a general error is the token's failure, not tampering */
        {CKR_GENERAL_ERROR, VMENC_P11_CTX_WRAP, VMENC_E_KMS},
        {CKR_GENERAL_ERROR, VMENC_P11_CTX_GENERIC, VMENC_E_KMS},
        {CKR_HOST_MEMORY, VMENC_P11_CTX_GENERIC, VMENC_E_NOMEM},
        {CKR_SESSION_COUNT, VMENC_P11_CTX_GENERIC, VMENC_E_LIMIT},
        {0x12345678UL, VMENC_P11_CTX_GENERIC, VMENC_E_KMS},
    };
    for (size_t i = 0; i < VMENC_ARRAY_LEN(m); i++) {
        if (vmenc_p11_status(m[i].rv, m[i].ctx) != m[i].want)
            fail_msg("CKR 0x%lx in context %d -> %s, want %s", m[i].rv, (int)m[i].ctx,
                     vmenc_status_name(vmenc_p11_status(m[i].rv, m[i].ctx)), vmenc_status_name(m[i].want));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_and_roundtrip_every_mechanism),
        cmocka_unit_test(test_tamper_is_auth_error),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_recipe_key_by_label_and_id),
        cmocka_unit_test(test_key_not_found),
        cmocka_unit_test(test_ambiguous_label_refused),
        cmocka_unit_test(test_extractable_kek_refused),
        cmocka_unit_test(test_kek_not_extractable),
        cmocka_unit_test(test_known_answer_vectors),
        cmocka_unit_test(test_differential_openssl),
        cmocka_unit_test(test_wrong_pin),
        cmocka_unit_test(test_pin_locked),
        cmocka_unit_test(test_missing_token),
        cmocka_unit_test(test_missing_module),
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_endpoint_options),
        cmocka_unit_test(test_revoke_and_destroy),
        cmocka_unit_test(test_session_loss_relogin),
        cmocka_unit_test(test_changed_pin_is_not_retried),
        cmocka_unit_test(test_shared_module),
        cmocka_unit_test(test_concurrent_wrap_unwrap),
        cmocka_unit_test(test_fork_child_cannot_use_parent_provider),
        cmocka_unit_test(test_wrapped_key_records_in_token),
        cmocka_unit_test(test_key_manager_with_token),
        cmocka_unit_test(test_session_wait_times_out),
        cmocka_unit_test(test_token_failures_during_operations),
        cmocka_unit_test(test_status_mapping),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
