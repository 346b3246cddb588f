/*
 * tests/test_kmip_config.c - KMIP provider configuration and argument
 * checks that need no server: endpoint options and addresses, certificate
 * and key files (missing, mismatched, passphrase-protected), the C config
 * struct, and input validation before any network I/O.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/internal.h"
#include "kms/kmip/kmip_provider.h"
#include "vmenc/kms_kmip.h"

static char g_dir[PATH_MAX];
static char g_ca[PATH_MAX + 16], g_cert[PATH_MAX + 16], g_key[PATH_MAX + 16], g_other_key[PATH_MAX + 16],
    g_enc_key[PATH_MAX + 16];

static int setup(void **state) {
    snprintf(g_dir, sizeof(g_dir), "%s/vmenc-kmipcfg-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    char cmd[4 * PATH_MAX];
    /* A CA, a client certificate and key, an unrelated key, and the client
     * key encrypted under the passphrase "correct horse". */
    snprintf(cmd, sizeof(cmd),
             "set -e; exec >/dev/null 2>&1; cd '%s'; "
             "k() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1; }; "
             "k ca.key; openssl req -x509 -key ca.key -out ca.crt -days 1 -subj /CN=cfg-ca; "
             "k client.key; openssl req -new -key client.key -out client.csr -subj /CN=cfg-client; "
             "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -set_serial 7 -days 1 -out client.crt; "
             "k other.key; openssl pkey -in client.key -aes256 -passout 'pass:correct horse' -out enc.key",
             g_dir);
    if (system(cmd) != 0)
        return -1;
    snprintf(g_ca, sizeof(g_ca), "%s/ca.crt", g_dir);
    snprintf(g_cert, sizeof(g_cert), "%s/client.crt", g_dir);
    snprintf(g_key, sizeof(g_key), "%s/client.key", g_dir);
    snprintf(g_other_key, sizeof(g_other_key), "%s/other.key", g_dir);
    snprintf(g_enc_key, sizeof(g_enc_key), "%s/enc.key", g_dir);
    return 0;
}

static int teardown(void **state) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static vmenc_status factory(const char *address, const char *const *opts, const uint8_t *secret,
                            size_t secret_len, vmenc_kms_provider **out) {
    vmenc_kms_endpoint_config cfg = {.struct_size = sizeof(cfg), .type = "kmip", .address = address,
                                     .options = opts, .secret = secret, .secret_len = secret_len};
    return vmenc_kms_provider_new_builtin(&cfg, out);
}

static vmenc_status try_address(const char *address) {
    const char *opts[] = {NULL};
    vmenc_kms_provider *p = NULL;
    vmenc_status s = factory(address, opts, NULL, 0, &p);
    vmenc_kms_provider_free(p);
    return s;
}

static void test_addresses(void **state) {
    assert_int_equal(try_address("127.0.0.1:5696"), VMENC_OK);
    assert_int_equal(try_address("kms.example.com"), VMENC_OK); /* default port */
    assert_int_equal(try_address("[::1]:5696"), VMENC_OK);
    assert_int_equal(try_address("[::1]"), VMENC_OK);
    const char *bad[] = {"", ":5696", "host:", "host:0", "host:65536", "host:12ab", "::1:5696",
                         "[::1", "[::1]x", "[]:5696", "host:-1"};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(bad); i++)
        assert_int_equal(try_address(bad[i]), VMENC_E_INVALID_ARG);
}

static vmenc_status try_opts(const char *const *opts, const uint8_t *secret, size_t secret_len) {
    vmenc_kms_provider *p = NULL;
    vmenc_status s = factory("127.0.0.1:1", opts, secret, secret_len, &p);
    if (s == VMENC_OK)
        assert_non_null(p);
    else
        assert_null(p);
    vmenc_kms_provider_free(p);
    return s;
}

static void test_options(void **state) {
    char ca[PATH_MAX + 32], cert[PATH_MAX + 32], key[PATH_MAX + 32], other[PATH_MAX + 32];
    snprintf(ca, sizeof(ca), "ca=%s", g_ca);
    snprintf(cert, sizeof(cert), "cert=%s", g_cert);
    snprintf(key, sizeof(key), "key=%s", g_key);
    snprintf(other, sizeof(other), "key=%s", g_other_key);
    const char *good[] = {ca, cert, key, "server_name=kms.example", "kmip_version=1.4",
                          "connect_timeout_ms=250", "request_timeout_ms=9000", NULL};
    assert_int_equal(try_opts(good, NULL, 0), VMENC_OK);
    /* Unknown keys (a typo must not silently weaken the setup), empty
     * values, versions we do not speak, silly timeouts. */
    const char *typo[] = {ca, "server-name=x", NULL};
    assert_int_equal(try_opts(typo, NULL, 0), VMENC_E_INVALID_ARG);
    const char *empty[] = {"ca=", NULL};
    assert_int_equal(try_opts(empty, NULL, 0), VMENC_E_INVALID_ARG);
    const char *noeq[] = {"ca", NULL};
    assert_int_equal(try_opts(noeq, NULL, 0), VMENC_E_INVALID_ARG);
    const char *versions[] = {"1.0", "1.1", "3.0", "1.22", "x.y", "12"};
    for (size_t i = 0; i < VMENC_ARRAY_LEN(versions); i++) {
        char v[32];
        snprintf(v, sizeof(v), "kmip_version=%s", versions[i]);
        const char *o[] = {ca, v, NULL};
        assert_int_equal(try_opts(o, NULL, 0), VMENC_E_INVALID_ARG);
    }
    const char *to[] = {ca, "connect_timeout_ms=0", NULL};
    assert_int_equal(try_opts(to, NULL, 0), VMENC_E_INVALID_ARG);
    const char *to2[] = {ca, "request_timeout_ms=-5", NULL};
    assert_int_equal(try_opts(to2, NULL, 0), VMENC_E_INVALID_ARG);
    /* A certificate needs its key; the key must match it. */
    const char *nokey[] = {ca, cert, NULL};
    assert_int_equal(try_opts(nokey, NULL, 0), VMENC_E_INVALID_ARG);
    const char *mismatch[] = {ca, cert, other, NULL};
    assert_int_equal(try_opts(mismatch, NULL, 0), VMENC_E_INVALID_ARG);
    /* Missing files. */
    const char *noca[] = {"ca=/nonexistent/ca.pem", NULL};
    assert_int_equal(try_opts(noca, NULL, 0), VMENC_E_IO);
    const char *nocert[] = {ca, "cert=/nonexistent/c.pem", key, NULL};
    assert_int_equal(try_opts(nocert, NULL, 0), VMENC_E_IO);
    /* A file that is not PEM. */
    char junk[PATH_MAX + 32];
    snprintf(junk, sizeof(junk), "ca=%s/client.csr", g_dir);
    const char *notca[] = {junk, NULL};
    assert_int_equal(try_opts(notca, NULL, 0), VMENC_E_IO);
}

static void test_encrypted_client_key(void **state) {
    char ca[PATH_MAX + 32], cert[PATH_MAX + 32], key[PATH_MAX + 32];
    snprintf(ca, sizeof(ca), "ca=%s", g_ca);
    snprintf(cert, sizeof(cert), "cert=%s", g_cert);
    snprintf(key, sizeof(key), "key=%s", g_enc_key);
    const char *o[] = {ca, cert, key, NULL};
    const char *pass = "correct horse";
    assert_int_equal(try_opts(o, (const uint8_t *)pass, strlen(pass)), VMENC_OK);
    assert_int_equal(try_opts(o, (const uint8_t *)"wrong", 5), VMENC_E_WRONG_PASSPHRASE);
    assert_int_equal(try_opts(o, NULL, 0), VMENC_E_WRONG_PASSPHRASE);
}

static void test_config_struct(void **state) {
    vmenc_kmip_config c = {.struct_size = sizeof(c), .host = "127.0.0.1", .ca_file = g_ca,
                           .cert_file = g_cert, .key_file = g_key};
    vmenc_kms_provider *p = NULL;
    assert_int_equal(vmenc_kmip_provider_new(&c, &p), VMENC_OK);
    assert_int_equal(vmenc_kms_provider_check(p), VMENC_OK);
    assert_string_equal(p->ops->type_name, "kmip");
    vmenc_kms_provider_free(p);
    p = NULL;

    vmenc_kmip_config small = c;
    small.struct_size = 8;
    assert_int_equal(vmenc_kmip_provider_new(&small, &p), VMENC_E_ABI_VERSION);
    vmenc_kmip_config nohost = c;
    nohost.host = NULL;
    assert_int_equal(vmenc_kmip_provider_new(&nohost, &p), VMENC_E_INVALID_ARG);
    vmenc_kmip_config v11 = c;
    v11.version_major = 1;
    v11.version_minor = 1;
    assert_int_equal(vmenc_kmip_provider_new(&v11, &p), VMENC_E_INVALID_ARG);
    vmenc_kmip_config emptyname = c;
    emptyname.server_name = "";
    assert_int_equal(vmenc_kmip_provider_new(&emptyname, &p), VMENC_E_INVALID_ARG);
    assert_null(p);
    assert_int_equal(vmenc_kmip_provider_new(NULL, &p), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_kmip_provider_new(&c, NULL), VMENC_E_INVALID_ARG);
}

/* Bad arguments are refused before any network I/O: the provider points
 * at a port nobody listens on, so reaching the network would give
 * VMENC_E_KMS_UNAVAILABLE instead. */
static void test_arguments_checked_before_io(void **state) {
    vmenc_kmip_config c = {.struct_size = sizeof(c), .host = "127.0.0.1", .port = 1, .ca_file = g_ca,
                           .cert_file = g_cert, .key_file = g_key};
    vmenc_kms_provider *p = NULL;
    assert_int_equal(vmenc_kmip_provider_new(&c, &p), VMENC_OK);
    char id[VMENC_KMS_KEY_ID_CAP];
    char long_id[VMENC_KEY_ID_MAX + 2];
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    vmenc_kek *k = NULL;
    assert_int_equal(vmenc_kms_provider_create_kek(p, "\xC0\x80", 1000, id, sizeof(id)), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_kms_provider_create_kek(p, "", 1000, id, sizeof(id)), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_kms_provider_get_kek(p, long_id, 1000, &k), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_kms_provider_get_kek(p, "", 1000, &k), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_kms_provider_revoke_kek(p, "\xFF", 1000), VMENC_E_INVALID_ARG);
    size_t num;
    assert_int_equal(vmenc_kmip_locate(p, NULL, 1000, id, sizeof(id), &num), VMENC_E_INVALID_ARG);
    /* The network is reached with valid arguments, and refused. */
    assert_int_equal(vmenc_kms_provider_get_kek(p, "1", 1000, &k), VMENC_E_KMS_UNAVAILABLE);
    assert_null(k);
    /* Remote wrap: only AES-GCM (KMIP Encrypt/Decrypt), with a 12-byte IV. */
    uint8_t out[64], iv[12] = {0};
    size_t out_len;
    vmenc_kms_wrap_params wp = {.struct_size = sizeof(wp), .mech = VMENC_KMS_WRAP_AES_KWP};
    assert_int_equal(vmenc_kms_provider_wrap(p, "1", &wp, out, 32, 1000, out, sizeof(out), &out_len),
                     VMENC_E_UNSUPPORTED);
    wp.mech = VMENC_KMS_WRAP_AES_GCM;
    assert_int_equal(vmenc_kms_provider_wrap(p, "1", &wp, out, 32, 1000, out, sizeof(out), &out_len),
                     VMENC_E_INVALID_ARG); /* no IV */
    wp.iv = iv;
    wp.iv_len = sizeof(iv);
    assert_int_equal(vmenc_kms_provider_unwrap(p, "1", &wp, out, 16, 1000, out, sizeof(out), &out_len),
                     VMENC_E_AUTH); /* shorter than a tag */
    assert_int_equal(vmenc_kms_provider_wrap(p, "1", &wp, out, 32, 1000, out, sizeof(out), &out_len),
                     VMENC_E_KMS_UNAVAILABLE);
    vmenc_kms_provider_free(p);
}

static vmenc_status fake_health(vmenc_kms_provider *p, uint32_t t) { return VMENC_OK; }
static void fake_free(vmenc_kms_provider *p) {}

static void test_kmip_calls_refuse_other_providers(void **state) {
    static const vmenc_kms_provider_ops ops = {.struct_size = sizeof(ops),
                                               .abi_version = VMENC_KMS_PROVIDER_ABI_VERSION,
                                               .type_name = "kmip", /* same name, not ours */
                                               .health = fake_health, .free = fake_free};
    vmenc_kms_provider fake = {.struct_size = sizeof(fake), .ops = &ops};
    char id[VMENC_KMS_KEY_ID_CAP];
    size_t num;
    uint64_t mask;
    unsigned major, minor;
    assert_int_equal(vmenc_kmip_locate(&fake, "x", 1000, id, sizeof(id), &num), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_kmip_query(&fake, 1000, &mask), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_kmip_protocol_version(&fake, 1000, &major, &minor), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_kmip_locate(NULL, "x", 1000, id, sizeof(id), &num), VMENC_E_INVALID_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_encrypted_client_key),
        cmocka_unit_test(test_config_struct),
        cmocka_unit_test(test_arguments_checked_before_io),
        cmocka_unit_test(test_kmip_calls_refuse_other_providers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
