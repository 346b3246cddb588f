/*
 * tests/test_kmip_pykmip.c - the KMIP provider against real PyKMIP servers
 * over mutual TLS, started and stopped by this test (tests/kms/pykmip.sh,
 * on free ports, in a temp dir; a watchdog stops them if the test dies).
 *
 * One server (A) serves most cases; a second server (B) on A's database
 * forms a replicated pair for the failover case. Covered: the lifecycle in
 * every KMIP version we speak, persistent connections, interop both ways
 * with PyKMIP's own client, key checks (algorithm/length/state), permission
 * by certificate CN, and refusals: untrusted server certificate, wrong
 * name, missing/foreign/unsuitable client certificate, connection refused,
 * a plaintext peer, a black-holed server (deadline), and failover when the
 * primary stops mid-run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "core/internal.h"
#include "kms/kmip/kmip_msg.h"
#include "kms/kmip/kmip_provider.h"
#include "kms/pykmip_ctl.h"
#include "vmenc/kms_kmip.h"

#define T_MS 15000u /* generous: the machine is shared; deadlines are tested separately */

static pykmip_env g_env;
static int g_port_a = -1, g_port_b = -1;
static char g_certs[PATH_MAX + 16];
static char g_other[PATH_MAX + 16]; /* an unrelated CA and its certificates */

/* ---- helpers ------------------------------------------------------------------------ */

typedef struct prov_opts {
    const char *ca, *cert, *key, *server_name, *version, *host, *extra;
    bool no_client_cert;
} prov_opts;

/* endpoint fills |cfg| (and the buffers in |b|) for the server on |port|. */
typedef struct cfg_bufs {
    char ca[PATH_MAX + 64], cert[PATH_MAX + 64], key[PATH_MAX + 64], sn[300], ver[32], addr[300];
    const char *opts[10];
} cfg_bufs;

static void endpoint(int port, const prov_opts *o, cfg_bufs *b, vmenc_kms_endpoint_config *cfg) {
    char *ca = b->ca, *cert = b->cert, *key = b->key, *sn = b->sn, *ver = b->ver, *addr = b->addr;
    const char **opts = b->opts;
    size_t n = 0;
    snprintf(ca, sizeof(b->ca), "ca=%s", o != NULL && o->ca ? o->ca : "");
    if (o == NULL || o->ca == NULL)
        snprintf(ca, sizeof(b->ca), "ca=%s/ca.crt", g_certs);
    opts[n++] = ca;
    if (o == NULL || !o->no_client_cert) {
        if (o != NULL && o->cert != NULL) {
            snprintf(cert, sizeof(b->cert), "cert=%s", o->cert);
            snprintf(key, sizeof(b->key), "key=%s", o->key);
        } else {
            snprintf(cert, sizeof(b->cert), "cert=%s/client.crt", g_certs);
            snprintf(key, sizeof(b->key), "key=%s/client.key", g_certs);
        }
        opts[n++] = cert;
        opts[n++] = key;
    }
    if (o != NULL && o->server_name != NULL) {
        snprintf(sn, sizeof(b->sn), "server_name=%s", o->server_name);
        opts[n++] = sn;
    }
    if (o != NULL && o->version != NULL) {
        snprintf(ver, sizeof(b->ver), "kmip_version=%s", o->version);
        opts[n++] = ver;
    }
    if (o != NULL && o->extra != NULL)
        opts[n++] = o->extra;
    opts[n] = NULL;
    snprintf(addr, sizeof(b->addr), "%s:%d", o != NULL && o->host ? o->host : "127.0.0.1", port);
    memset(cfg, 0, sizeof(*cfg));
    cfg->struct_size = sizeof(*cfg);
    cfg->type = "kmip";
    cfg->address = addr;
    cfg->options = opts;
}

/* make_provider goes the way an application does: the KMS core's built-in
 * provider table, which calls the KMIP factory. */
static vmenc_status make_provider(int port, const prov_opts *o, vmenc_kms_provider **out) {
    cfg_bufs b;
    vmenc_kms_endpoint_config cfg;
    endpoint(port, o, &b, &cfg);
    return vmenc_kms_provider_new_builtin(&cfg, out);
}

static vmenc_kms_provider *provider(int port) {
    vmenc_kms_provider *p = NULL;
    assert_int_equal(make_provider(port, NULL, &p), VMENC_OK);
    return p;
}

static void hex(const uint8_t *b, size_t n, char *out) {
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
    out[2 * n] = '\0';
}

static vmenc_kek *kek_from_hex(const char *h) {
    uint8_t b[32];
    assert_int_equal(strlen(h), 64);
    for (int i = 0; i < 32; i++) {
        unsigned v;
        assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
        b[i] = (uint8_t)v;
    }
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kek_new_from_bytes(b, sizeof(b), &k), VMENC_OK);
    return k;
}

/* split_words ends |s| at its first space and returns what follows. */
static char *split_words(char *s) {
    char *sp = strchr(s, ' ');
    assert_non_null(sp);
    *sp = '\0';
    return sp + 1;
}

static void unique_name(char *out, size_t cap, const char *what) {
    static unsigned counter;
    snprintf(out, cap, "vmenc-test-%s-%d-%u", what, (int)getpid(), ++counter);
}

/* ---- setup ---------------------------------------------------------------------------- */

static int group_setup(void **state) {
    if (pykmip_env_init(&g_env, VMENC_SOURCE_DIR) != 0)
        return -1;
    if (!pykmip_available(&g_env)) {
        fprintf(stderr, "python3-pykmip is not installed: cannot run the KMIP server tests\n");
        return -1;
    }
    g_port_a = pykmip_free_port();
    if (g_port_a < 0 || pykmip_start(&g_env, g_port_a, NULL) != 0)
        return -1;
    snprintf(g_certs, sizeof(g_certs), "%s/certs", g_env.dir);
    /* An unrelated CA with a server and a client certificate (P-256:
     * quick to make) for the untrusted-peer cases. */
    snprintf(g_other, sizeof(g_other), "%s/other", g_env.dir);
    char cmd[4 * PATH_MAX];
    snprintf(cmd, sizeof(cmd),
             "set -e; exec >/dev/null 2>&1; mkdir -p '%s'; cd '%s'; cp '%s/openssl.cnf' .; "
             "k() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1.key; }; "
             "k ca; openssl req -config openssl.cnf -x509 -key ca.key -out ca.crt -days 2 "
             "-subj '/CN=Unrelated test CA' -extensions ca_ext; "
             "for who in server client; do k $who; openssl req -config openssl.cnf -new -key $who.key "
             "-out $who.csr -subj /CN=localhost; openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key "
             "-set_serial 0x$RANDOM -days 2 -sha256 -extfile openssl.cnf -extensions ${who}_ext -out $who.crt; done",
             g_other, g_other, g_certs);
    char *const argv[] = {"/bin/bash", "-c", cmd, NULL};
    return pykmip_run(argv, NULL, 0) == 0 ? 0 : -1;
}

static int group_teardown(void **state) {
    pykmip_env_cleanup(&g_env); /* stops A and B, removes the dir */
    return 0;
}

/* ---- lifecycle ------------------------------------------------------------------------- */

static void lifecycle(vmenc_kms_provider *p) {
    char name[96], id[VMENC_KMS_KEY_ID_CAP], found[VMENC_KMS_KEY_ID_CAP];
    size_t num = 0;
    unique_name(name, sizeof(name), "life");
    assert_int_equal(vmenc_kms_provider_create_kek(p, name, T_MS, id, sizeof(id)), VMENC_OK);
    assert_true(strlen(id) > 0);

    assert_int_equal(vmenc_kmip_locate(p, name, T_MS, found, sizeof(found), &num), VMENC_OK);
    assert_int_equal(num, 1);
    assert_string_equal(found, id);

    vmenc_secret *k1 = NULL, *k2 = NULL;
    assert_int_equal(vmenc_kmip_get_key_secret(p, id, T_MS, &k1), VMENC_OK);
    assert_int_equal(k1->len, 32);
    assert_int_equal(vmenc_kmip_get_key_secret(p, id, T_MS, &k2), VMENC_OK);
    assert_memory_equal(k1->bytes, k2->bytes, 32);
    static const uint8_t zero[32];
    assert_memory_not_equal(k1->bytes, zero, 32);
    vmenc_secret_free(k2);
    /* The vtable's get_kek gives the same key as a vmenc_kek. */
    vmenc_kek *kek = NULL, *same = NULL;
    assert_int_equal(vmenc_kms_provider_get_kek(p, id, T_MS, &kek), VMENC_OK);
    assert_int_equal(vmenc_kek_new_from_bytes(k1->bytes, k1->len, &same), VMENC_OK);
    assert_int_equal(vmenc_kek_equal(kek, same), VMENC_OK);
    vmenc_kek_free(kek);
    vmenc_kek_free(same);

    /* A second key is a different key. */
    char id2[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(p->ops->create_kek(p, NULL, T_MS, id2, sizeof(id2)), VMENC_OK);
    assert_string_not_equal(id, id2);
    assert_int_equal(vmenc_kmip_get_key_secret(p, id2, T_MS, &k2), VMENC_OK);
    assert_memory_not_equal(k1->bytes, k2->bytes, 32);
    vmenc_secret_free(k2);
    vmenc_secret_free(k1);

    assert_int_equal(vmenc_kms_provider_health(p, T_MS), VMENC_OK);

    /* Revoked: the key is no longer handed out. Destroyed: gone. */
    assert_int_equal(vmenc_kms_provider_revoke_kek(p, id, T_MS), VMENC_OK);
    k1 = NULL;
    assert_int_equal(vmenc_kmip_get_key_secret(p, id, T_MS, &k1), VMENC_E_KEY_STATE);
    assert_null(k1);
    kek = NULL;
    assert_int_equal(vmenc_kms_provider_get_kek(p, id, T_MS, &kek), VMENC_E_KEY_STATE);
    assert_null(kek);
    assert_int_equal(vmenc_kms_provider_revoke_kek(p, id, T_MS), VMENC_E_KEY_STATE);
    assert_int_equal(vmenc_kms_provider_destroy_kek(p, id, T_MS), VMENC_OK);
    assert_int_equal(vmenc_kmip_get_key_secret(p, id, T_MS, &k1), VMENC_E_KEY_NOT_FOUND);
    assert_int_equal(vmenc_kms_provider_get_kek(p, id, T_MS, &kek), VMENC_E_KEY_NOT_FOUND);
    assert_int_equal(vmenc_kms_provider_destroy_kek(p, id, T_MS), VMENC_E_KEY_NOT_FOUND);
    assert_int_equal(vmenc_kmip_locate(p, name, T_MS, found, sizeof(found), &num), VMENC_E_KEY_NOT_FOUND);
    /* Destroy of an Active key revokes it first. */
    assert_int_equal(p->ops->destroy_kek(p, id2, T_MS), VMENC_OK);
    assert_int_equal(vmenc_kmip_get_key_secret(p, id2, T_MS, &k1), VMENC_E_KEY_NOT_FOUND);
    assert_int_equal(vmenc_kmip_get_key_secret(p, "no-such-key-4711", T_MS, &k1), VMENC_E_KEY_NOT_FOUND);
}

static void test_lifecycle_negotiated(void **state) {
    vmenc_kms_provider *p = provider(g_port_a);
    unsigned major = 0, minor = 0;
    assert_int_equal(vmenc_kmip_protocol_version(p, T_MS, &major, &minor), VMENC_OK);
    /* PyKMIP speaks 1.0-2.0: the negotiated version is one of ours. */
    vmenc_kmip_version v = {(uint8_t)major, (uint8_t)minor};
    assert_true(vmenc_kmip_version_supported(v));
    print_message("negotiated KMIP %u.%u\n", major, minor);
    lifecycle(p);
    uint64_t ops = 0;
    assert_int_equal(vmenc_kmip_query(p, T_MS, &ops), VMENC_OK);
    const unsigned want[] = {KMIP_OP_CREATE, KMIP_OP_GET, KMIP_OP_LOCATE, KMIP_OP_ACTIVATE,
                             KMIP_OP_REVOKE, KMIP_OP_DESTROY, KMIP_OP_QUERY, KMIP_OP_DISCOVER_VERSIONS};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(want); i++)
        assert_true(ops & ((uint64_t)1 << want[i]));
    vmenc_kms_provider_free(p);
}

static void test_lifecycle_every_version(void **state) {
    static const char *versions[] = {"1.2", "1.3", "1.4", "2.0"};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(versions); i++) {
        prov_opts o = {.version = versions[i]};
        vmenc_kms_provider *p = NULL;
        assert_int_equal(make_provider(g_port_a, &o, &p), VMENC_OK);
        unsigned major, minor;
        assert_int_equal(vmenc_kmip_protocol_version(p, T_MS, &major, &minor), VMENC_OK);
        assert_int_equal(major, (unsigned)(versions[i][0] - '0'));
        assert_int_equal(minor, (unsigned)(versions[i][2] - '0'));
        lifecycle(p);
        vmenc_kms_provider_free(p);
    }
}

static void test_persistent_connection_and_reconnect(void **state) {
    vmenc_kms_provider *p = provider(g_port_a);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(p->ops->create_kek(p, NULL, T_MS, id, sizeof(id)), VMENC_OK);
    for (int i = 0; i < 10; i++) {
        vmenc_secret *k = NULL;
        assert_int_equal(vmenc_kmip_get_key_secret(p, id, T_MS, &k), VMENC_OK);
        vmenc_secret_free(k);
    }
    /* Negotiation, create and ten gets: one TLS connection. */
    assert_int_equal(vmenc_kmip_num_connects(p), 1);
    vmenc_kmip_disconnect(p);
    assert_int_equal(p->ops->health(p, T_MS), VMENC_OK);
    assert_int_equal(vmenc_kmip_num_connects(p), 2);
    assert_int_equal(p->ops->destroy_kek(p, id, T_MS), VMENC_OK);
    vmenc_kms_provider_free(p);
}

static void *hammer(void *arg) {
    vmenc_kms_provider *p = arg;
    char id[VMENC_KMS_KEY_ID_CAP];
    intptr_t bad = 0;
    if (p->ops->create_kek(p, NULL, T_MS, id, sizeof(id)) != VMENC_OK)
        return (void *)1;
    for (int i = 0; i < 5; i++) {
        vmenc_secret *k = NULL;
        if (vmenc_kmip_get_key_secret(p, id, T_MS, &k) != VMENC_OK)
            bad++;
        vmenc_secret_free(k);
    }
    if (p->ops->destroy_kek(p, id, T_MS) != VMENC_OK)
        bad++;
    return (void *)bad;
}

static void test_threads_share_a_provider(void **state) {
    vmenc_kms_provider *p = provider(g_port_a);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, p), 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        assert_int_equal(pthread_join(t[i], &r), 0);
        assert_null(r);
    }
    vmenc_kms_provider_free(p);
}

/* ---- interop with PyKMIP's own client ---------------------------------------------------- */

static void test_interop_vmenc_creates_pykmip_reads(void **state) {
    vmenc_kms_provider *p = provider(g_port_a);
    char name[96], id[VMENC_KMS_KEY_ID_CAP], theirs[200], ours[65];
    unique_name(name, sizeof(name), "interop1");
    assert_int_equal(p->ops->create_kek(p, name, T_MS, id, sizeof(id)), VMENC_OK);
    vmenc_secret *k = NULL;
    assert_int_equal(vmenc_kmip_get_key_secret(p, id, T_MS, &k), VMENC_OK);
    hex(k->bytes, k->len, ours);
    vmenc_secret_free(k);
    assert_int_equal(pykmip_client(&g_env, g_port_a, "get", id, NULL, NULL, theirs, sizeof(theirs)), 0);
    char *state_name = split_words(theirs);
    assert_string_equal(theirs, ours);
    vmenc_kek *mine = NULL, *pykmips = kek_from_hex(theirs);
    assert_int_equal(vmenc_kms_provider_get_kek(p, id, T_MS, &mine), VMENC_OK);
    assert_int_equal(vmenc_kek_equal(mine, pykmips), VMENC_OK);
    vmenc_kek_free(mine);
    vmenc_kek_free(pykmips);
    /* Create also activated it, as PyKMIP sees it. */
    assert_string_equal(state_name, "ACTIVE");
    assert_int_equal(p->ops->destroy_kek(p, id, T_MS), VMENC_OK);
    vmenc_kms_provider_free(p);
}

static void test_interop_pykmip_creates_vmenc_reads(void **state) {
    vmenc_kms_provider *p = provider(g_port_a);
    char name[96], id[VMENC_KMS_KEY_ID_CAP], theirs[200], ours[65], found[VMENC_KMS_KEY_ID_CAP];
    unique_name(name, sizeof(name), "interop2");
    char out[400];
    assert_int_equal(pykmip_client(&g_env, g_port_a, "create", name, NULL, NULL, out, sizeof(out)), 0);
    char *hex_part = split_words(out);
    assert_int_equal(strlen(hex_part), 64);
    memcpy(theirs, hex_part, 65);
    assert_true(strlen(out) < sizeof(id));
    memcpy(id, out, strlen(out) + 1);
    size_t num = 0;
    assert_int_equal(vmenc_kmip_locate(p, name, T_MS, found, sizeof(found), &num), VMENC_OK);
    assert_string_equal(found, id);
    vmenc_secret *k = NULL;
    assert_int_equal(vmenc_kmip_get_key_secret(p, id, T_MS, &k), VMENC_OK);
    hex(k->bytes, k->len, ours);
    vmenc_secret_free(k);
    assert_string_equal(ours, theirs);
    vmenc_kek *mine = NULL, *pykmips = kek_from_hex(theirs);
    assert_int_equal(vmenc_kms_provider_get_kek(p, id, T_MS, &mine), VMENC_OK);
    assert_int_equal(vmenc_kek_equal(mine, pykmips), VMENC_OK);
    vmenc_kek_free(mine);
    vmenc_kek_free(pykmips);
    assert_int_equal(p->ops->destroy_kek(p, id, T_MS), VMENC_OK);
    vmenc_kms_provider_free(p);
}

static void test_wrong_key_length_and_state(void **state) {
    vmenc_kms_provider *p = provider(g_port_a);
    char name[96], id[VMENC_KMS_KEY_ID_CAP];
    vmenc_secret *k = NULL;
    /* An AES-128 key is not a KEK. */
    unique_name(name, sizeof(name), "aes128");
    assert_int_equal(pykmip_client(&g_env, g_port_a, "create", name, "128", NULL, id, sizeof(id)), 0);
    (void)split_words(id);
    assert_int_equal(vmenc_kmip_get_key_secret(p, id, T_MS, &k), VMENC_E_KMS_WRONG_KEY);
    assert_null(k);
    assert_int_equal(p->ops->destroy_kek(p, id, T_MS), VMENC_OK);
    /* A Pre-Active key is not handed out; destroy needs no revoke for it. */
    unique_name(name, sizeof(name), "preactive");
    assert_int_equal(pykmip_client(&g_env, g_port_a, "create", name, "256", "noactivate", id, sizeof(id)), 0);
    (void)split_words(id);
    assert_int_equal(vmenc_kmip_get_key_secret(p, id, T_MS, &k), VMENC_E_KEY_STATE);
    assert_int_equal(p->ops->destroy_kek(p, id, T_MS), VMENC_OK);
    vmenc_kms_provider_free(p);
}

/* A client certificate with another CN (same CA) is another KMIP identity:
 * it may not read our keys. */
static void test_other_identity_gets_permission_denied(void **state) {
    char cmd[6 * PATH_MAX];
    snprintf(cmd, sizeof(cmd),
             "set -e; cd '%s'; openssl req -new -newkey rsa:2048 -nodes -keyout other-id.key -out other-id.csr "
             "-subj /CN=vmenc-other-identity >/dev/null 2>&1; openssl x509 -req -in other-id.csr -CA ca.crt "
             "-CAkey ca.key -set_serial 0x4711 -days 1 -sha256 -extfile openssl.cnf -extensions client_ext "
             "-out other-id.crt >/dev/null 2>&1",
             g_certs);
    char *const argv[] = {"/bin/bash", "-c", cmd, NULL};
    assert_int_equal(pykmip_run(argv, NULL, 0), 0);

    vmenc_kms_provider *p = provider(g_port_a), *q = NULL;
    char id[VMENC_KMS_KEY_ID_CAP], cert[PATH_MAX + 32], key[PATH_MAX + 32];
    assert_int_equal(p->ops->create_kek(p, NULL, T_MS, id, sizeof(id)), VMENC_OK);
    snprintf(cert, sizeof(cert), "%s/other-id.crt", g_certs);
    snprintf(key, sizeof(key), "%s/other-id.key", g_certs);
    prov_opts o = {.cert = cert, .key = key};
    assert_int_equal(make_provider(g_port_a, &o, &q), VMENC_OK);
    vmenc_secret *k = NULL;
    assert_int_equal(vmenc_kmip_get_key_secret(q, id, T_MS, &k), VMENC_E_KMS_PERMISSION);
    assert_null(k);
    assert_int_equal(p->ops->destroy_kek(p, id, T_MS), VMENC_OK);
    vmenc_kms_provider_free(q);
    vmenc_kms_provider_free(p);
}

/* ---- remote wrap (KMIP Encrypt/Decrypt, AES-256-GCM) ------------------------------------ */

static void local_gcm(const uint8_t *key, const uint8_t *iv, const uint8_t *aad, size_t aad_len,
                      const uint8_t *in, size_t in_len, uint8_t *out /* in_len + 16 */) {
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int n = 0, f = 0;
    assert_non_null(x);
    assert_int_equal(EVP_EncryptInit_ex(x, EVP_aes_256_gcm(), NULL, key, iv), 1);
    assert_int_equal(EVP_EncryptUpdate(x, NULL, &n, aad, (int)aad_len), 1);
    assert_int_equal(EVP_EncryptUpdate(x, out, &n, in, (int)in_len), 1);
    assert_int_equal(EVP_EncryptFinal_ex(x, out + n, &f), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, 16, out + in_len), 1);
    EVP_CIPHER_CTX_free(x);
}

static void test_remote_wrap_gcm(void **state) {
    vmenc_kms_provider *p = provider(g_port_a);
    char id[VMENC_KMS_KEY_ID_CAP];
    assert_int_equal(vmenc_kms_provider_create_kek(p, NULL, T_MS, id, sizeof(id)), VMENC_OK);
    uint8_t dek[64], iv[12], aad[] = "vm-1/disk-0/disk", wrapped[64 + 16], local[64 + 16], back[64];
    for (size_t i = 0; i < sizeof(dek); i++)
        dek[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < sizeof(iv); i++)
        iv[i] = (uint8_t)(0xA0 + i);
    vmenc_kms_wrap_params wp = {.struct_size = sizeof(wp), .mech = VMENC_KMS_WRAP_AES_GCM, .iv = iv,
                                .iv_len = sizeof(iv), .aad = aad, .aad_len = sizeof(aad) - 1};
    size_t len = 0;
    assert_int_equal(vmenc_kms_provider_wrap(p, id, &wp, dek, sizeof(dek), T_MS, wrapped, sizeof(wrapped), &len),
                     VMENC_OK);
    assert_int_equal(len, sizeof(wrapped));
    /* Differential: the server's GCM equals OpenSSL's under the same key. */
    vmenc_secret *k = NULL;
    assert_int_equal(vmenc_kmip_get_key_secret(p, id, T_MS, &k), VMENC_OK);
    local_gcm(k->bytes, iv, aad, sizeof(aad) - 1, dek, sizeof(dek), local);
    vmenc_secret_free(k);
    assert_memory_equal(wrapped, local, sizeof(local));

    assert_int_equal(vmenc_kms_provider_unwrap(p, id, &wp, wrapped, len, T_MS, back, sizeof(back), &len), VMENC_OK);
    assert_int_equal(len, sizeof(dek));
    assert_memory_equal(back, dek, sizeof(dek));

    /* Anything inauthentic: a flipped bit in ciphertext or tag, other AAD,
     * a truncated input. */
    uint8_t bad[sizeof(wrapped)];
    for (size_t pos = 0; pos < sizeof(wrapped); pos += sizeof(wrapped) - 1) {
        memcpy(bad, wrapped, sizeof(bad));
        bad[pos] ^= 0x01;
        assert_int_equal(vmenc_kms_provider_unwrap(p, id, &wp, bad, sizeof(bad), T_MS, back, sizeof(back), &len),
                         VMENC_E_AUTH);
    }
    vmenc_kms_wrap_params other = wp;
    other.aad = (const uint8_t *)"vm-2/disk-0/disk";
    assert_int_equal(vmenc_kms_provider_unwrap(p, id, &other, wrapped, sizeof(wrapped), T_MS, back, sizeof(back),
                                               &len),
                     VMENC_E_AUTH);
    assert_int_equal(vmenc_kms_provider_unwrap(p, id, &wp, wrapped, 16, T_MS, back, sizeof(back), &len),
                     VMENC_E_AUTH);
    /* Refused before any request: key wrap mechanisms, a short IV, a
     * small output buffer. */
    vmenc_kms_wrap_params kwp = {.struct_size = sizeof(kwp), .mech = VMENC_KMS_WRAP_AES_KWP};
    assert_int_equal(vmenc_kms_provider_wrap(p, id, &kwp, dek, sizeof(dek), T_MS, wrapped, sizeof(wrapped), &len),
                     VMENC_E_UNSUPPORTED);
    other = wp;
    other.iv_len = 8;
    assert_int_equal(vmenc_kms_provider_wrap(p, id, &other, dek, sizeof(dek), T_MS, wrapped, sizeof(wrapped), &len),
                     VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_kms_provider_wrap(p, id, &wp, dek, sizeof(dek), T_MS, wrapped, sizeof(wrapped) - 1, &len),
                     VMENC_E_BUFFER_TOO_SMALL);
    /* Unknown key. */
    assert_int_equal(vmenc_kms_provider_wrap(p, "no-such-key-4711", &wp, dek, sizeof(dek), T_MS, wrapped,
                                             sizeof(wrapped), &len),
                     VMENC_E_KEY_NOT_FOUND);
    assert_int_equal(vmenc_kms_provider_destroy_kek(p, id, T_MS), VMENC_OK);
    vmenc_kms_provider_free(p);
}

/* ---- refusals ---------------------------------------------------------------------------- */

static vmenc_status health_with(int port, const prov_opts *o, uint32_t timeout_ms) {
    vmenc_kms_provider *p = NULL;
    vmenc_status s = make_provider(port, o, &p);
    if (s != VMENC_OK)
        return s;
    s = p->ops->health(p, timeout_ms);
    vmenc_kms_provider_free(p);
    return s;
}

static void test_server_name_checks(void **state) {
    prov_opts o = {.server_name = "wrong.example"};
    assert_int_equal(health_with(g_port_a, &o, T_MS), VMENC_E_KMS_NAME_MISMATCH);
    o.server_name = "127.0.0.2"; /* an IP the certificate does not list */
    assert_int_equal(health_with(g_port_a, &o, T_MS), VMENC_E_KMS_NAME_MISMATCH);
    o.server_name = "localhost"; /* the DNS SAN */
    assert_int_equal(health_with(g_port_a, &o, T_MS), VMENC_OK);
    prov_opts by_name = {.host = "localhost"}; /* server_name defaults to the host */
    assert_int_equal(health_with(g_port_a, &by_name, T_MS), VMENC_OK);
}

static void test_untrusted_server_certificate(void **state) {
    char ca[PATH_MAX + 32];
    snprintf(ca, sizeof(ca), "%s/ca.crt", g_other);
    prov_opts o = {.ca = ca};
    assert_int_equal(health_with(g_port_a, &o, T_MS), VMENC_E_KMS_CERT_VERIFY);
}

static void test_client_certificate_refusals(void **state) {
    prov_opts none = {.no_client_cert = true};
    assert_int_equal(health_with(g_port_a, &none, T_MS), VMENC_E_KMS_AUTH);

    char cert[PATH_MAX + 32], key[PATH_MAX + 32];
    snprintf(cert, sizeof(cert), "%s/client.crt", g_other);
    snprintf(key, sizeof(key), "%s/client.key", g_other);
    prov_opts foreign = {.cert = cert, .key = key};
    assert_int_equal(health_with(g_port_a, &foreign, T_MS), VMENC_E_KMS_AUTH);

    /* A certificate without the clientAuth usage (the server's own). */
    snprintf(cert, sizeof(cert), "%s/server.crt", g_certs);
    snprintf(key, sizeof(key), "%s/server.key", g_certs);
    prov_opts server_cert = {.cert = cert, .key = key};
    assert_int_equal(health_with(g_port_a, &server_cert, T_MS), VMENC_E_KMS_AUTH);
}

static void test_connection_refused(void **state) {
    int port = pykmip_free_port(); /* nobody listens there */
    assert_int_equal(health_with(port, NULL, T_MS), VMENC_E_KMS_UNAVAILABLE);
}

typedef struct peer {
    int lfd;
    const char *reply; /* NULL: accept nothing, never answer */
    pthread_t thread;
} peer;

static int listen_local(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void *plaintext_peer(void *arg) {
    peer *pr = arg;
    int fd = accept(pr->lfd, NULL, NULL);
    if (fd >= 0) {
        char buf[512];
        (void)!read(fd, buf, sizeof(buf));
        (void)!write(fd, pr->reply, strlen(pr->reply));
        close(fd);
    }
    return NULL;
}

static void test_plaintext_peer_is_refused(void **state) {
    peer pr = {.reply = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"};
    int port;
    pr.lfd = listen_local(&port);
    assert_int_equal(pthread_create(&pr.thread, NULL, plaintext_peer, &pr), 0);
    assert_int_equal(health_with(port, NULL, T_MS), VMENC_E_KMS_TLS);
    pthread_join(pr.thread, NULL);
    close(pr.lfd);
}

/* A server that offers nothing newer than TLS 1.1 (with the right
 * certificate) is refused: TLS 1.2 is the floor. */
typedef struct old_tls_peer {
    int lfd;
    SSL_CTX *ctx;
    int accepted; /* SSL_accept result */
} old_tls_peer;

static void *old_tls_server(void *arg) {
    old_tls_peer *o = arg;
    int fd = accept(o->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    SSL *ssl = SSL_new(o->ctx);
    SSL_set_fd(ssl, fd);
    o->accepted = SSL_accept(ssl);
    SSL_free(ssl);
    close(fd);
    return NULL;
}

/* old_tls_health runs health against a one-shot TLS server whose highest
 * version is |max_version|, and reports whether its handshake completed. */
static vmenc_status old_tls_health(int max_version, bool *handshake_ok) {
    old_tls_peer o = {.accepted = 99};
    char cert[PATH_MAX + 32], key[PATH_MAX + 32];
    snprintf(cert, sizeof(cert), "%s/server.crt", g_certs);
    snprintf(key, sizeof(key), "%s/server.key", g_certs);
    o.ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(o.ctx);
    assert_int_equal(SSL_CTX_set_cipher_list(o.ctx, "DEFAULT:@SECLEVEL=0"), 1);
    SSL_CTX_set_security_level(o.ctx, 0);
    assert_int_equal(SSL_CTX_set_min_proto_version(o.ctx, TLS1_VERSION), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(o.ctx, max_version), 1);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(o.ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(o.ctx, key, SSL_FILETYPE_PEM), 1);
    int port;
    o.lfd = listen_local(&port);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, old_tls_server, &o), 0);
    vmenc_status s = health_with(port, NULL, T_MS);
    pthread_join(t, NULL);
    *handshake_ok = o.accepted == 1;
    close(o.lfd);
    SSL_CTX_free(o.ctx);
    return s;
}

static void test_tls11_server_is_refused(void **state) {
    bool hs = true;
    assert_int_equal(old_tls_health(TLS1_1_VERSION, &hs), VMENC_E_KMS_TLS);
    assert_false(hs);
    /* Control: the same server allowed TLS 1.2 completes the handshake
     * (then hangs up without a KMIP answer). */
    assert_int_equal(old_tls_health(TLS1_2_VERSION, &hs), VMENC_E_KMS_UNAVAILABLE);
    assert_true(hs);
}

static void test_black_hole_hits_deadline(void **state) {
    /* The kernel completes the TCP handshake from the listen backlog, but
     * nobody ever accepts or reads: only the deadline ends the call. */
    int port;
    int lfd = listen_local(&port);
    const uint32_t deadline = 400;
    uint64_t t0 = vmenc_now_monotonic_ms();
    assert_int_equal(health_with(port, NULL, deadline), VMENC_E_KMS_TIMEOUT);
    uint64_t took = vmenc_now_monotonic_ms() - t0;
    assert_true(took >= deadline);
    print_message("black hole: gave up after %llu ms (deadline %u ms)\n", (unsigned long long)took, deadline);
    /* A zero budget fails at once with the same status. */
    assert_int_equal(health_with(port, NULL, 0), VMENC_E_KMS_TIMEOUT);
    close(lfd);
}

/* ---- replicated pair and failover ----------------------------------------------------------- */

static vmenc_kms_cluster *pair_cluster(const char *alias) {
    vmenc_kms_cluster_options co = {.struct_size = sizeof(co), .backoff_initial_ms = 60000,
                                    .flags = VMENC_KMS_CLUSTER_NO_JITTER};
    vmenc_kms_cluster *c = NULL;
    assert_int_equal(vmenc_kms_cluster_new(alias, &co, &c), VMENC_OK);
    const int ports[2] = {g_port_a, g_port_b};
    for (int i = 0; i < 2; i++) {
        cfg_bufs b;
        vmenc_kms_endpoint_config cfg;
        endpoint(ports[i], NULL, &b, &cfg);
        assert_int_equal(vmenc_kms_cluster_add_endpoint_config(c, &cfg), VMENC_OK);
    }
    return c;
}

/* Two servers on one database are a replicated pair. A cluster of both,
 * used directly and through the key manager, keeps every operation working
 * when the primary dies mid-run (its connection open); when it comes back,
 * a provider whose connection died reconnects. Runs last. */
static void test_replicated_cluster_failover(void **state) {
    char db[PATH_MAX + 32];
    snprintf(db, sizeof(db), "%s/pykmip-%d.db", g_env.dir, g_port_a);
    g_port_b = pykmip_free_port();
    assert_int_equal(pykmip_start(&g_env, g_port_b, db), 0);

    vmenc_kms_cluster *c = pair_cluster("kmip-pair");
    vmenc_keymgr *m = NULL;
    assert_int_equal(vmenc_keymgr_new(NULL, &m), VMENC_OK);
    assert_int_equal(vmenc_keymgr_take_cluster(m, pair_cluster("tenant-a")), VMENC_OK);

    char id[VMENC_KMS_KEY_ID_CAP], id2[VMENC_KMS_KEY_ID_CAP], mid[VMENC_KMS_KEY_ID_CAP];
    size_t ep = 99;
    assert_int_equal(vmenc_kms_cluster_create_kek(c, "pair-key", T_MS, id, sizeof(id), &ep), VMENC_OK);
    assert_int_equal(ep, 0);
    vmenc_kek *before = NULL, *after = NULL;
    assert_int_equal(vmenc_kms_cluster_get_kek(c, id, T_MS, &before, &ep), VMENC_OK);
    assert_int_equal(ep, 0);
    /* B serves the same bytes from the shared database. */
    vmenc_kms_provider *b = provider(g_port_b);
    vmenc_kek *via_b = NULL;
    assert_int_equal(vmenc_kms_provider_get_kek(b, id, T_MS, &via_b), VMENC_OK);
    assert_int_equal(vmenc_kek_equal(before, via_b), VMENC_OK);
    vmenc_kek_free(via_b);
    vmenc_kms_provider_free(b);
    /* The key manager wraps a DEK under a KEK of the same pair. */
    assert_int_equal(vmenc_keymgr_create_kek(m, "tenant-a", NULL, T_MS, mid, sizeof(mid)), VMENC_OK);
    vmenc_dek *dek = NULL, *back = NULL;
    assert_int_equal(vmenc_dek_generate(&dek), VMENC_OK);
    vmenc_wrap_context ctx = {.struct_size = sizeof(ctx), .vm_uuid = "vm-1", .disk_id = "disk-0", .purpose = "disk"};
    vmenc_wrapped_key *wk = NULL;
    assert_int_equal(vmenc_keymgr_wrap_dek(m, "tenant-a", mid, dek, &ctx, T_MS, &wk), VMENC_OK);

    /* A lone provider with an open connection to the primary. */
    vmenc_kms_provider *a = provider(g_port_a);
    assert_int_equal(vmenc_kms_provider_health(a, T_MS), VMENC_OK);
    assert_int_equal(vmenc_kmip_num_connects(a), 1);

    /* The primary dies mid-run. */
    assert_int_equal(pykmip_kill(&g_env, g_port_a), 0);
    assert_int_equal(vmenc_kms_provider_health(a, T_MS), VMENC_E_KMS_UNAVAILABLE);

    assert_int_equal(vmenc_kms_cluster_get_kek(c, id, T_MS, &after, &ep), VMENC_OK);
    assert_int_equal(ep, 1);
    assert_int_equal(vmenc_kek_equal(before, after), VMENC_OK);
    assert_true(vmenc_kms_cluster_num_failovers(c) >= 1);
    vmenc_kek_free(after);
    assert_int_equal(vmenc_kms_cluster_create_kek(c, NULL, T_MS, id2, sizeof(id2), &ep), VMENC_OK);
    assert_int_equal(ep, 1);
    assert_int_equal(vmenc_kms_cluster_get_kek(c, id2, T_MS, &after, &ep), VMENC_OK);
    vmenc_kek_free(after);
    size_t healthy = 0;
    assert_int_equal(vmenc_kms_cluster_check_health(c, T_MS, &healthy), VMENC_OK);
    assert_int_equal(healthy, 1);
    assert_int_equal(vmenc_kms_cluster_revoke_kek(c, id, T_MS, &ep), VMENC_OK);
    assert_int_equal(vmenc_kms_cluster_destroy_kek(c, id, T_MS, &ep), VMENC_OK);
    assert_int_equal(vmenc_kms_cluster_destroy_kek(c, id2, T_MS, &ep), VMENC_OK);
    /* A definite answer is not failed over: B says "not found". */
    after = NULL;
    assert_int_equal(vmenc_kms_cluster_get_kek(c, id, T_MS, &after, &ep), VMENC_E_KEY_NOT_FOUND);
    assert_null(after);

    /* The key manager, its cache dropped, fetches the KEK through B. */
    assert_int_equal(vmenc_keymgr_forget(m, NULL, NULL), VMENC_OK);
    assert_int_equal(vmenc_keymgr_unwrap_dek(m, wk, &ctx, T_MS, &back), VMENC_OK);
    assert_int_equal(vmenc_dek_equal(dek, back), VMENC_OK);
    vmenc_keymgr_stats st = {.struct_size = sizeof(st)};
    assert_int_equal(vmenc_keymgr_get_stats(m, &st), VMENC_OK);
    assert_true(st.failovers >= 1);
    assert_int_equal(vmenc_keymgr_destroy_kek(m, "tenant-a", mid, T_MS), VMENC_OK);

    /* The primary comes back on the same address: the lone provider,
     * whose connection died with the old server, reconnects by itself and
     * sees the keys made through B meanwhile. */
    assert_int_equal(pykmip_start(&g_env, g_port_a, NULL), 0);
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_provider_create_kek(a, NULL, T_MS, id, sizeof(id)), VMENC_OK);
    assert_int_equal(vmenc_kms_provider_get_kek(a, id, T_MS, &k), VMENC_OK);
    assert_int_equal(vmenc_kmip_num_connects(a), 2);
    assert_int_equal(vmenc_kms_provider_destroy_kek(a, id, T_MS), VMENC_OK);
    vmenc_kek_free(k);
    vmenc_kms_provider_free(a);

    vmenc_dek_free(back);
    vmenc_dek_free(dek);
    vmenc_wrapped_key_free(wk);
    vmenc_kek_free(before);
    vmenc_keymgr_free(m);
    vmenc_kms_cluster_free(c);
}

/* A black-holed primary costs one connect timeout, then the cluster moves
 * on to a live endpoint within the same call. */
static void test_cluster_fails_over_from_black_hole(void **state) {
    int hole_port;
    int lfd = listen_local(&hole_port);
    vmenc_kms_cluster *c = NULL;
    assert_int_equal(vmenc_kms_cluster_new("hole-first", NULL, &c), VMENC_OK);
    prov_opts hole = {.extra = "connect_timeout_ms=300"};
    vmenc_kms_provider *p = NULL;
    assert_int_equal(make_provider(hole_port, &hole, &p), VMENC_OK);
    assert_int_equal(vmenc_kms_cluster_take_endpoint(c, "black-hole", p), VMENC_OK);
    assert_int_equal(vmenc_kms_cluster_take_endpoint(c, "a", provider(g_port_a)), VMENC_OK);
    size_t ep = 99;
    char id[VMENC_KMS_KEY_ID_CAP];
    uint64_t t0 = vmenc_now_monotonic_ms();
    assert_int_equal(vmenc_kms_cluster_create_kek(c, NULL, T_MS, id, sizeof(id), &ep), VMENC_OK);
    print_message("black-holed primary: failed over in %llu ms\n",
                  (unsigned long long)(vmenc_now_monotonic_ms() - t0));
    assert_int_equal(ep, 1);
    vmenc_kms_endpoint_info info = {.struct_size = sizeof(info)};
    assert_int_equal(vmenc_kms_cluster_endpoint_info(c, 0, &info), VMENC_OK);
    assert_int_equal(info.last_status, VMENC_E_KMS_TIMEOUT);
    assert_int_equal(vmenc_kms_cluster_destroy_kek(c, id, T_MS, &ep), VMENC_OK);
    vmenc_kms_cluster_free(c);
    close(lfd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle_negotiated),
        cmocka_unit_test(test_lifecycle_every_version),
        cmocka_unit_test(test_persistent_connection_and_reconnect),
        cmocka_unit_test(test_threads_share_a_provider),
        cmocka_unit_test(test_interop_vmenc_creates_pykmip_reads),
        cmocka_unit_test(test_interop_pykmip_creates_vmenc_reads),
        cmocka_unit_test(test_wrong_key_length_and_state),
        cmocka_unit_test(test_other_identity_gets_permission_denied),
        cmocka_unit_test(test_remote_wrap_gcm),
        cmocka_unit_test(test_server_name_checks),
        cmocka_unit_test(test_untrusted_server_certificate),
        cmocka_unit_test(test_client_certificate_refusals),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_plaintext_peer_is_refused),
        cmocka_unit_test(test_tls11_server_is_refused),
        cmocka_unit_test(test_black_hole_hits_deadline),
        cmocka_unit_test(test_cluster_fails_over_from_black_hole),
        cmocka_unit_test(test_replicated_cluster_failover), /* last: kills and restarts A */
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
