/*
 * tests/test_attest_tpm.c - lib/attest against real software TPMs: two
 * swtpm "hosts" (A with an EK certificate from a local manufacturer CA, B a
 * bare TPM), tpm2-tools and the recipe's verify_quote.py
 * (tests/tpm/, ../shared/recipes/tpm). Enrolment (EK certificate chain,
 * AK attributes, MakeCredential by the verifier, ActivateCredential on the
 * host), the wrong TPM cannot activate, quotes verify, and each refusal by
 * name: replayed nonce, another TPM's AK, changed PCR, tampered attest
 * bytes, tampered signature, wrong selection, AK without restricted or
 * fixedTPM. Every host call leaves the TPM's transient objects and sessions
 * as they were. MakeCredential is cross-checked byte for byte against
 * `tpm2_makecredential -T none`, and the C verifier's verdicts against
 * verify_quote.py's on the same quotes. Exits 77 (skip) and says why when
 * swtpm cannot start here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "attest/attest.h"
#include "attest/attest_internal.h"
#include "tpm/swtpm_host.h"

#define SEL "sha256:0,1,16"

static char g_tmp[256];
static swtpm_host g_a, g_b;
static attest_tpm *g_ta, *g_tb;
static char g_ca[512];            /* root + intermediate of the shared local CA */
static uint8_t *g_ek_cert;        /* A's EK certificate (DER) */
static size_t g_ek_cert_len;
static uint8_t *g_ek_pub_a, *g_ek_pub_b;  /* from the TPMs */
static size_t g_ek_pub_a_len, g_ek_pub_b_len;
static uint8_t *g_ak_pub_a, *g_ak_blob_a, *g_ak_pub_b, *g_ak_blob_b;
static size_t g_ak_pub_a_len, g_ak_blob_a_len, g_ak_pub_b_len, g_ak_blob_b_len;
static bool g_have_tools;         /* tpm2_makecredential and /usr/bin/python3 with cryptography */

/* ---- helpers ------------------------------------------------------------- */

static void write_file(const char *path, const uint8_t *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    uint8_t *buf = malloc(65536);
    *len = fread(buf, 1, 65536, f);
    fclose(f);
    return buf;
}

static void hex(const uint8_t *b, size_t n, char *out) {
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
    out[2 * n] = '\0';
}

static size_t transients(attest_tpm *t) {
    size_t n = 99;
    assert_int_equal(attest_tpm_num_transients(t, &n), VMENC_OK);
    return n;
}

static void measure(const char *what, uint8_t out[32]) {
    assert_int_equal(attest_sha256((const uint8_t *)what, strlen(what), NULL, 0, out), VMENC_OK);
}

typedef struct quote {
    uint8_t nonce[32];
    uint8_t *attest, *sig, *values;
    size_t attest_len, sig_len, values_len;
} quote;

static void quote_take(attest_tpm *t, const uint8_t *blob, size_t blob_len, const char *sel, quote *q) {
    for (size_t i = 0; i < sizeof q->nonce; i++)
        q->nonce[i] = (uint8_t)rand();
    size_t before = transients(t);
    assert_int_equal(attest_tpm_quote(t, blob, blob_len, q->nonce, sizeof q->nonce, sel, &q->attest,
                                      &q->attest_len, &q->sig, &q->sig_len, &q->values, &q->values_len),
                     VMENC_OK);
    assert_int_equal(transients(t), before);
}

static void quote_free(quote *q) {
    free(q->attest);
    free(q->sig);
    free(q->values);
    memset(q, 0, sizeof *q);
}

/* verify: the C verdict (refusal) of |q| checked as the broker would. */
static attest_refusal verify(const uint8_t *ak_pub, size_t ak_pub_len, const uint8_t *attest, size_t attest_len,
                             const uint8_t *sig, size_t sig_len, const uint8_t *nonce, const char *sel,
                             const uint8_t *values, size_t values_len, const uint8_t *ek_pub, size_t ek_pub_len) {
    attest_quote_result r;
    vmenc_status s = attest_quote_verify(ak_pub, ak_pub_len, attest, attest_len, sig, sig_len, nonce, 32, sel,
                                         values, values_len, ek_pub, ek_pub_len, &r);
    assert_true(s == VMENC_OK ? r.refusal == ATTEST_ACCEPTED : (s == VMENC_E_AUTH && r.refusal != ATTEST_ACCEPTED));
    return r.refusal;
}

/* The differential: each case both() sees is written to files and listed
 * with the C verdict; test_differential then runs verify_quote.py on all of
 * them in one interpreter (runpy, as its own __main__) and compares. */
static int g_num_cases;

static void record_case(const uint8_t *ak_pub, size_t ak_pub_len, const uint8_t *attest, size_t attest_len,
                        const uint8_t *sig, size_t sig_len, const uint8_t *nonce, const char *sel,
                        const uint8_t *values, size_t values_len, const uint8_t *ek_pub, size_t ek_pub_len,
                        bool accepted) {
    char base[300], p[400], nhex[65];
    int n = g_num_cases++;
    snprintf(base, sizeof base, "%s/case%02d", g_tmp, n);
#define W(ext, d, l) snprintf(p, sizeof p, "%s." ext, base), write_file(p, d, l)
    W("ak", ak_pub, ak_pub_len);
    W("msg", attest, attest_len);
    W("sig", sig, sig_len);
    W("pcrs", values, values_len);
    if (ek_pub != NULL)
        W("ek", ek_pub, ek_pub_len);
#undef W
    hex(nonce, 32, nhex);
    snprintf(p, sizeof p, "%s/cases.txt", g_tmp);
    FILE *f = fopen(p, "a");
    assert_non_null(f);
    fprintf(f, "%d %s --ak %s.ak --msg %s.msg --sig %s.sig --nonce %s --select %s --pcrs %s.pcrs", accepted ? 0 : 1,
            base, base, base, base, nhex, sel, base);
    if (ek_pub != NULL)
        fprintf(f, " --ek %s.ek", base);
    fprintf(f, "\n");
    fclose(f);
}

/* Both verifiers on one case; returns the C refusal (the Python verdict is
 * compared in test_differential). */
static attest_refusal both(const uint8_t *ak_pub, size_t ak_pub_len, const uint8_t *attest, size_t attest_len,
                           const uint8_t *sig, size_t sig_len, const uint8_t *nonce, const char *sel,
                           const uint8_t *values, size_t values_len, const uint8_t *ek_pub, size_t ek_pub_len) {
    attest_refusal r = verify(ak_pub, ak_pub_len, attest, attest_len, sig, sig_len, nonce, sel, values,
                              values_len, ek_pub, ek_pub_len);
    record_case(ak_pub, ak_pub_len, attest, attest_len, sig, sig_len, nonce, sel, values, values_len, ek_pub,
                ek_pub_len, r == ATTEST_ACCEPTED);
    return r;
}

static void test_differential(void **state) {
    (void)state;
    if (!g_have_tools)
        skip();
    assert_true(g_num_cases >= 10);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 - '%s/tests/tpm/verify_quote.py' '%s/cases.txt' <<'PY'\n"
             "import contextlib, io, runpy, sys\n"
             "script, cases = sys.argv[1], sys.argv[2]\n"
             "bad = 0\n"
             "for line in open(cases):\n"
             "    want, name, *args = line.split()\n"
             "    sys.argv = [script] + args\n"
             "    code = 0\n"
             "    err = io.StringIO()\n"
             "    try:\n"
             "        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):\n"
             "            runpy.run_path(script, run_name='__main__')\n"
             "    except SystemExit as e:\n"
             "        code = e.code or 0\n"
             "    if code != int(want):\n"
             "        bad += 1\n"
             "        print(f'{name}: C says {want}, verify_quote.py {code} {err.getvalue().strip()}')\n"
             "print(f'differential: {bad} disagreement(s)')\n"
             "sys.exit(1 if bad else 0)\n"
             "PY",
             VMENC_SOURCE_DIR, g_tmp);
    assert_int_equal(system(cmd), 0);
}

/* ---- enrolment ------------------------------------------------------------ */

static void test_ek_cert_chain(void **state) {
    (void)state;
    assert_non_null(g_ek_cert);
    uint8_t *ek = NULL;
    size_t ek_len = 0;
    assert_int_equal(attest_ek_cert_check(g_ek_cert, g_ek_cert_len, g_ca, &ek, &ek_len), VMENC_OK);
    /* the template rebuilt around the certificate's key is the TPM's EK, byte for byte */
    assert_int_equal(ek_len, g_ek_pub_a_len);
    assert_memory_equal(ek, g_ek_pub_a, ek_len);
    free(ek);

    /* refused: the root alone (intermediate missing), a flipped signature byte */
    char root[600];
    snprintf(root, sizeof root, "%s/ca/swtpm-localca-rootca-cert.pem", g_tmp);
    ek = NULL;
    assert_int_equal(attest_ek_cert_check(g_ek_cert, g_ek_cert_len, root, &ek, &ek_len), VMENC_E_AUTH);
    assert_null(ek);
    /* a directory of PEM files works like the file (the CA dir itself: root + issuer) */
    char cadir[600];
    snprintf(cadir, sizeof cadir, "%s/cadir", g_tmp);
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/ca/swtpm-localca-rootca-cert.pem' '%s/ca/issuercert.pem' '%s/'",
             cadir, g_tmp, g_tmp, cadir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(attest_ek_cert_check(g_ek_cert, g_ek_cert_len, cadir, &ek, &ek_len), VMENC_OK);
    free(ek);
    ek = NULL;
    uint8_t *bad = malloc(g_ek_cert_len);
    memcpy(bad, g_ek_cert, g_ek_cert_len);
    bad[g_ek_cert_len - 5] ^= 0x01;
    assert_int_equal(attest_ek_cert_check(bad, g_ek_cert_len, g_ca, &ek, &ek_len), VMENC_E_AUTH);
    assert_null(ek);
    free(bad);
}

static void test_ak_attributes_and_name(void **state) {
    (void)state;
    uint8_t name[ATTEST_NAME_BYTES];
    attest_refusal r;
    assert_int_equal(attest_ak_check(g_ak_pub_a, g_ak_pub_a_len, name, &r), VMENC_OK);
    assert_int_equal(r, ATTEST_ACCEPTED);
    assert_int_equal(name[0], 0x00);
    assert_int_equal(name[1], 0x0b);
    /* the blob carries the same public */
    const uint8_t *p;
    size_t p_len;
    assert_int_equal(attest_ak_blob_public(g_ak_blob_a, g_ak_blob_a_len, &p, &p_len), VMENC_OK);
    assert_int_equal(p_len, g_ak_pub_a_len);
    assert_memory_equal(p, g_ak_pub_a, p_len);
    /* tpm2_createak's attributes: 0x00050072 at offset 2+2+2 */
    assert_int_equal(g_ak_pub_a[6], 0x00);
    assert_int_equal(g_ak_pub_a[7], 0x05);
    assert_int_equal(g_ak_pub_a[8], 0x00);
    assert_int_equal(g_ak_pub_a[9], 0x72);
    /* the EK is no AK: decrypt, not sign */
    assert_int_equal(attest_ak_check(g_ek_pub_a, g_ek_pub_a_len, name, &r), VMENC_E_AUTH);
    assert_int_equal(r, ATTEST_REFUSED_AK_ATTRIBUTES);
}

static void test_enrol_activate(void **state) {
    (void)state;
    uint8_t name[ATTEST_NAME_BYTES], secret[32];
    assert_int_equal(attest_ak_check(g_ak_pub_a, g_ak_pub_a_len, name, NULL), VMENC_OK);
    for (size_t i = 0; i < sizeof secret; i++)
        secret[i] = (uint8_t)(0xa0 + i);
    uint8_t *ek = NULL, *cred = NULL, *enc = NULL;
    size_t ek_len, cred_len, enc_len;
    /* the verifier encrypts to the EK of the *certificate* */
    assert_int_equal(attest_ek_cert_check(g_ek_cert, g_ek_cert_len, g_ca, &ek, &ek_len), VMENC_OK);
    assert_int_equal(attest_make_credential(ek, ek_len, name, sizeof name, secret, sizeof secret, &cred, &cred_len,
                                            &enc, &enc_len),
                     VMENC_OK);
    size_t before = transients(g_ta);
    vmenc_secret *got = NULL;
    assert_int_equal(attest_tpm_activate(g_ta, g_ak_blob_a, g_ak_blob_a_len, cred, cred_len, enc, enc_len, &got),
                     VMENC_OK);
    assert_int_equal(transients(g_ta), before);
    assert_int_equal(got->len, sizeof secret);
    assert_memory_equal(got->bytes, secret, sizeof secret);
    vmenc_secret_free(got);

    /* the wrong TPM (B, another EK) holding its own AK cannot activate it */
    got = NULL;
    before = transients(g_tb);
    assert_int_equal(attest_tpm_activate(g_tb, g_ak_blob_b, g_ak_blob_b_len, cred, cred_len, enc, enc_len, &got),
                     VMENC_E_AUTH);
    assert_null(got);
    assert_int_equal(transients(g_tb), before);

    /* the same through the one-call enrolment of the broker */
    attest_enrollment en;
    assert_int_equal(attest_enroll_begin(g_ek_cert, g_ek_cert_len, g_ek_pub_a, g_ek_pub_a_len, g_ca, g_ak_pub_a,
                                         g_ak_pub_a_len, &en),
                     VMENC_OK);
    assert_int_equal(en.refusal, ATTEST_ACCEPTED);
    assert_memory_equal(en.ak_name, name, sizeof name);
    assert_int_equal(attest_tpm_activate(g_ta, g_ak_blob_a, g_ak_blob_a_len, en.cred_blob, en.cred_blob_len,
                                         en.enc_secret, en.enc_secret_len, &got),
                     VMENC_OK);
    assert_int_equal(attest_enroll_finish(en.secret_sha256, got->bytes, got->len), VMENC_OK);
    got->bytes[0] ^= 1;
    assert_int_equal(attest_enroll_finish(en.secret_sha256, got->bytes, got->len), VMENC_E_AUTH);
    vmenc_secret_free(got);
    got = NULL;
    attest_enrollment_cleanup(&en);
    /* refused: B's EK public claimed with A's certificate; the EK as the AK; an uncertified EK is
     * the caller's choice and works */
    assert_int_equal(attest_enroll_begin(g_ek_cert, g_ek_cert_len, g_ek_pub_b, g_ek_pub_b_len, g_ca, g_ak_pub_a,
                                         g_ak_pub_a_len, &en),
                     VMENC_E_AUTH);
    assert_int_equal(en.refusal, ATTEST_REFUSED_SIGNER);
    assert_null(en.cred_blob);
    assert_int_equal(attest_enroll_begin(g_ek_cert, g_ek_cert_len, NULL, 0, g_ca, g_ek_pub_a, g_ek_pub_a_len, &en),
                     VMENC_E_AUTH);
    assert_int_equal(en.refusal, ATTEST_REFUSED_AK_ATTRIBUTES);
    assert_int_equal(attest_enroll_begin(NULL, 0, g_ek_pub_b, g_ek_pub_b_len, NULL, g_ak_pub_b, g_ak_pub_b_len, &en),
                     VMENC_OK);
    assert_int_equal(attest_tpm_activate(g_tb, g_ak_blob_b, g_ak_blob_b_len, en.cred_blob, en.cred_blob_len,
                                         en.enc_secret, en.enc_secret_len, &got),
                     VMENC_OK);
    assert_int_equal(attest_enroll_finish(en.secret_sha256, got->bytes, got->len), VMENC_OK);
    vmenc_secret_free(got);
    got = NULL;
    attest_enrollment_cleanup(&en);

    /* the right TPM with another AK (the name is not the one bound) cannot either */
    uint8_t *pub2 = NULL, *blob2 = NULL;
    size_t pub2_len, blob2_len;
    assert_int_equal(attest_tpm_ak_create(g_ta, &pub2, &pub2_len, &blob2, &blob2_len), VMENC_OK);
    before = transients(g_ta);
    assert_int_equal(attest_tpm_activate(g_ta, blob2, blob2_len, cred, cred_len, enc, enc_len, &got), VMENC_E_AUTH);
    assert_null(got);
    assert_int_equal(transients(g_ta), before);
    free(pub2);
    free(blob2);
    free(ek);
    free(cred);
    free(enc);
}

/* MakeCredential against tpm2_makecredential -T none: with a software "EK"
 * whose private key the test holds, the seed tpm2-tools chose is recovered
 * from its encrypted secret and our identity object must equal its own. */
static void test_make_credential_vs_tpm2_tools(void **state) {
    (void)state;
    if (!g_have_tools)
        skip();
    EVP_PKEY *key = EVP_RSA_gen(2048);
    assert_non_null(key);
    char pem[300], sec[300], out[300], cmd[2048], nhex[2 * ATTEST_NAME_BYTES + 1];
    snprintf(pem, sizeof pem, "%s/sw-ek.pem", g_tmp);
    snprintf(sec, sizeof sec, "%s/secret.bin", g_tmp);
    snprintf(out, sizeof out, "%s/cred.blob", g_tmp);
    FILE *f = fopen(pem, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PUBKEY(f, key), 1);
    fclose(f);
    uint8_t secret[32], name[ATTEST_NAME_BYTES];
    for (size_t i = 0; i < sizeof secret; i++)
        secret[i] = (uint8_t)(i * 7 + 1);
    write_file(sec, secret, sizeof secret);
    assert_int_equal(attest_ak_check(g_ak_pub_a, g_ak_pub_a_len, name, NULL), VMENC_OK);
    hex(name, sizeof name, nhex);
    snprintf(cmd, sizeof cmd, "tpm2_makecredential -T none -u %s -G rsa -s %s -n %s -o %s >/dev/null 2>&1", pem, sec,
             nhex, out);
    assert_int_equal(system(cmd), 0);
    size_t blob_len = 0;
    uint8_t *blob = read_file(out, &blob_len);
    assert_non_null(blob);
    /* badcc0de 00000001 TPM2B_ID_OBJECT TPM2B_ENCRYPTED_SECRET */
    assert_true(blob_len > 12);
    assert_int_equal(vmenc_load_u32_be(blob), 0xbadcc0deu);
    assert_int_equal(vmenc_load_u32_be(blob + 4), 1);
    size_t id_len = 2u + ((size_t)blob[8] << 8 | blob[9]);
    const uint8_t *id = blob + 8;
    const uint8_t *es = id + id_len;
    size_t es_body = (size_t)es[0] << 8 | es[1];
    assert_int_equal(8 + id_len + 2 + es_body, blob_len);
    /* recover the seed with the private key */
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    unsigned char *label = OPENSSL_malloc(9);
    memcpy(label, "IDENTITY", 9);
    uint8_t seed[512];
    size_t seed_len = sizeof seed;
    assert_int_equal(EVP_PKEY_decrypt_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()), 1);
    assert_int_equal(EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, label, 9), 1);
    assert_int_equal(EVP_PKEY_decrypt(ctx, seed, &seed_len, es + 2, es_body), 1);
    EVP_PKEY_CTX_free(ctx);
    uint8_t *mine = NULL;
    size_t mine_len = 0;
    assert_int_equal(attest_make_credential_seeded(seed, seed_len, name, sizeof name, secret, sizeof secret, &mine,
                                                   &mine_len),
                     VMENC_OK);
    assert_int_equal(mine_len, id_len);
    assert_memory_equal(mine, id, id_len);
    free(mine);

    /* and ours decrypts with the same key the same way (OAEP, label, seed size) */
    BIGNUM *n = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    uint8_t nb[256];
    assert_int_equal(BN_bn2binpad(n, nb, sizeof nb), 256);
    BN_free(n);
    uint8_t *ekp = NULL, *cred = NULL, *enc = NULL;
    size_t ekp_len, cred_len, enc_len;
    assert_int_equal(attest_ek_public_from_modulus(nb, sizeof nb, &ekp, &ekp_len), VMENC_OK);
    assert_int_equal(attest_make_credential(ekp, ekp_len, name, sizeof name, secret, sizeof secret, &cred, &cred_len,
                                            &enc, &enc_len),
                     VMENC_OK);
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    label = OPENSSL_malloc(9);
    memcpy(label, "IDENTITY", 9);
    seed_len = sizeof seed;
    assert_int_equal(enc_len, 2 + 256);
    assert_int_equal(EVP_PKEY_decrypt_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()), 1);
    assert_int_equal(EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, label, 9), 1);
    assert_int_equal(EVP_PKEY_decrypt(ctx, seed, &seed_len, enc + 2, 256), 1);
    assert_int_equal(seed_len, 32);
    EVP_PKEY_CTX_free(ctx);
    assert_int_equal(attest_make_credential_seeded(seed, seed_len, name, sizeof name, secret, sizeof secret, &mine,
                                                   &mine_len),
                     VMENC_OK);
    assert_int_equal(mine_len, cred_len);
    assert_memory_equal(mine, cred, cred_len);
    free(mine);
    free(ekp);
    free(cred);
    free(enc);
    free(blob);
    EVP_PKEY_free(key);
}

/* ---- quotes ------------------------------------------------------------- */

static void test_quote_verifies_and_refusals(void **state) {
    (void)state;
    quote q = {0};
    quote_take(g_ta, g_ak_blob_a, g_ak_blob_a_len, SEL, &q);
    assert_int_equal(q.values_len, 3 * 32);
    /* the values are the TPM's: PCR_Read gives the same */
    uint8_t *vals = NULL;
    size_t vals_len = 0;
    assert_int_equal(attest_tpm_pcr_read(g_ta, SEL, &vals, &vals_len), VMENC_OK);
    assert_int_equal(vals_len, q.values_len);
    assert_memory_equal(vals, q.values, vals_len);
    free(vals);

    /* accepted, with and without the qualifiedSigner check */
    assert_int_equal(both(g_ak_pub_a, g_ak_pub_a_len, q.attest, q.attest_len, q.sig, q.sig_len, q.nonce, SEL,
                          q.values, q.values_len, g_ek_pub_a, g_ek_pub_a_len),
                     ATTEST_ACCEPTED);
    assert_int_equal(both(g_ak_pub_a, g_ak_pub_a_len, q.attest, q.attest_len, q.sig, q.sig_len, q.nonce, SEL,
                          q.values, q.values_len, NULL, 0),
                     ATTEST_ACCEPTED);

    /* replayed quote: the broker issued another nonce since */
    uint8_t other[32];
    memcpy(other, q.nonce, 32);
    other[0] ^= 0xff;
    assert_int_equal(both(g_ak_pub_a, g_ak_pub_a_len, q.attest, q.attest_len, q.sig, q.sig_len, other, SEL,
                          q.values, q.values_len, NULL, 0),
                     ATTEST_REFUSED_NONCE);

    /* wrong selection demanded */
    assert_int_equal(both(g_ak_pub_a, g_ak_pub_a_len, q.attest, q.attest_len, q.sig, q.sig_len, q.nonce,
                          "sha256:0,1,15", q.values, q.values_len, NULL, 0),
                     ATTEST_REFUSED_SELECTION);

    /* tampered attest bytes (a byte of the clock) and signature */
    uint8_t *t = malloc(q.attest_len);
    memcpy(t, q.attest, q.attest_len);
    t[q.attest_len - 40] ^= 0x01;
    assert_int_equal(both(g_ak_pub_a, g_ak_pub_a_len, t, q.attest_len, q.sig, q.sig_len, q.nonce, SEL, q.values,
                          q.values_len, NULL, 0),
                     ATTEST_REFUSED_SIGNATURE);
    free(t);
    t = malloc(q.sig_len);
    memcpy(t, q.sig, q.sig_len);
    t[q.sig_len - 1] ^= 0x80;
    assert_int_equal(both(g_ak_pub_a, g_ak_pub_a_len, q.attest, q.attest_len, t, q.sig_len, q.nonce, SEL, q.values,
                          q.values_len, NULL, 0),
                     ATTEST_REFUSED_SIGNATURE);
    free(t);

    /* PCR values that are not the quoted ones */
    t = malloc(q.values_len);
    memcpy(t, q.values, q.values_len);
    t[0] ^= 1;
    assert_int_equal(both(g_ak_pub_a, g_ak_pub_a_len, q.attest, q.attest_len, q.sig, q.sig_len, q.nonce, SEL, t,
                          q.values_len, NULL, 0),
                     ATTEST_REFUSED_PCR_DIGEST);
    free(t);

    /* AK without restricted, or without fixedTPM: refused before the signature */
    uint8_t *ak = malloc(g_ak_pub_a_len);
    memcpy(ak, g_ak_pub_a, g_ak_pub_a_len);
    ak[7] &= (uint8_t)~0x01; /* restricted 0x00010000 */
    assert_int_equal(verify(ak, g_ak_pub_a_len, q.attest, q.attest_len, q.sig, q.sig_len, q.nonce, SEL, q.values,
                            q.values_len, NULL, 0),
                     ATTEST_REFUSED_AK_ATTRIBUTES);
    memcpy(ak, g_ak_pub_a, g_ak_pub_a_len);
    ak[9] &= (uint8_t)~0x02; /* fixedTPM */
    assert_int_equal(verify(ak, g_ak_pub_a_len, q.attest, q.attest_len, q.sig, q.sig_len, q.nonce, SEL, q.values,
                            q.values_len, NULL, 0),
                     ATTEST_REFUSED_AK_ATTRIBUTES);
    free(ak);

    /* a quote from another TPM's AK: B's quote checked with the AK bound to A */
    quote qb = {0};
    quote_take(g_tb, g_ak_blob_b, g_ak_blob_b_len, SEL, &qb);
    assert_int_equal(both(g_ak_pub_a, g_ak_pub_a_len, qb.attest, qb.attest_len, qb.sig, qb.sig_len, qb.nonce, SEL,
                          qb.values, qb.values_len, NULL, 0),
                     ATTEST_REFUSED_SIGNATURE);
    /* B's own AK verifies, but not as the AK under A's EK */
    assert_int_equal(both(g_ak_pub_b, g_ak_pub_b_len, qb.attest, qb.attest_len, qb.sig, qb.sig_len, qb.nonce, SEL,
                          qb.values, qb.values_len, g_ek_pub_b, g_ek_pub_b_len),
                     ATTEST_ACCEPTED);
    assert_int_equal(both(g_ak_pub_b, g_ak_pub_b_len, qb.attest, qb.attest_len, qb.sig, qb.sig_len, qb.nonce, SEL,
                          qb.values, qb.values_len, g_ek_pub_a, g_ek_pub_a_len),
                     ATTEST_REFUSED_SIGNER);
    quote_free(&qb);
    quote_free(&q);
}

/* A changed "hypervisor binary": PCR 16 extended with another hash. The
 * broker's golden value (one extend of the approved image) no longer
 * matches, neither with the old values nor with the quote's own. */
static void test_changed_pcr(void **state) {
    (void)state;
    uint8_t good[32], evil[32];
    measure("vmenc-host-image-v1", good);
    /* B starts fresh: PCR 16 = 0; extend with the approved image */
    assert_int_equal(attest_tpm_pcr_extend(g_tb, 16, good), VMENC_OK);
    quote q = {0};
    quote_take(g_tb, g_ak_blob_b, g_ak_blob_b_len, SEL, &q);
    uint8_t golden16[32];
    attest_pcr_fold((const uint8_t(*)[32])good, 1, golden16);
    assert_memory_equal(q.values + 64, golden16, 32);
    attest_quote_result r;
    assert_int_equal(attest_quote_verify(g_ak_pub_b, g_ak_pub_b_len, q.attest, q.attest_len, q.sig, q.sig_len,
                                         q.nonce, 32, SEL, q.values, q.values_len, NULL, 0, &r),
                     VMENC_OK);
    uint8_t approved[32];
    assert_int_equal(attest_pcr_digest(SEL, q.values, q.values_len, approved), VMENC_OK);
    assert_memory_equal(r.pcr_digest, approved, 32);
    uint8_t *golden_values = malloc(q.values_len);
    memcpy(golden_values, q.values, q.values_len);
    quote_free(&q);

    /* the host now runs another binary */
    measure("vmenc-host-image-EVIL", evil);
    assert_int_equal(attest_tpm_pcr_extend(g_tb, 16, evil), VMENC_OK);
    quote_take(g_tb, g_ak_blob_b, g_ak_blob_b_len, SEL, &q);
    /* sent with the golden values: refused on the digest */
    assert_int_equal(both(g_ak_pub_b, g_ak_pub_b_len, q.attest, q.attest_len, q.sig, q.sig_len, q.nonce, SEL,
                          golden_values, q.values_len, NULL, 0),
                     ATTEST_REFUSED_PCR_DIGEST);
    /* sent with its true values: a valid quote, of a measurement that is not approved */
    assert_int_equal(attest_quote_verify(g_ak_pub_b, g_ak_pub_b_len, q.attest, q.attest_len, q.sig, q.sig_len,
                                         q.nonce, 32, SEL, q.values, q.values_len, NULL, 0, &r),
                     VMENC_OK);
    assert_memory_not_equal(r.pcr_digest, approved, 32);
    free(golden_values);
    quote_free(&q);
}

static void test_host_args_and_flush(void **state) {
    (void)state;
    size_t before = transients(g_ta);
    uint8_t nonce[65] = {0};
    uint8_t *a = NULL, *s = NULL, *v = NULL;
    size_t al, sl, vl;
    /* refused before the TPM: nonce too long, bad selection, bad blob */
    assert_int_equal(attest_tpm_quote(g_ta, g_ak_blob_a, g_ak_blob_a_len, nonce, 65, SEL, &a, &al, &s, &sl, &v, &vl),
                     VMENC_E_INVALID_ARG);
    assert_int_equal(attest_tpm_quote(g_ta, g_ak_blob_a, g_ak_blob_a_len, nonce, 32, "sha256:0,99", &a, &al, &s, &sl,
                                      &v, &vl),
                     VMENC_E_INVALID_ARG);
    uint8_t *blob = malloc(g_ak_blob_a_len);
    memcpy(blob, g_ak_blob_a, g_ak_blob_a_len);
    blob[0] ^= 1;
    assert_int_equal(attest_tpm_quote(g_ta, blob, g_ak_blob_a_len, nonce, 32, SEL, &a, &al, &s, &sl, &v, &vl),
                     VMENC_E_BAD_MAGIC);
    /* a private part the TPM rejects (integrity): error path after the EK is loaded */
    memcpy(blob, g_ak_blob_a, g_ak_blob_a_len);
    blob[g_ak_blob_a_len - 3] ^= 0x55;
    assert_int_not_equal(attest_tpm_quote(g_ta, blob, g_ak_blob_a_len, nonce, 32, SEL, &a, &al, &s, &sl, &v, &vl),
                         VMENC_OK);
    assert_null(a);
    free(blob);
    /* an inactive bank is not read */
    assert_int_equal(attest_tpm_pcr_read(g_ta, "sha1:16", &v, &vl), VMENC_E_UNSUPPORTED);
    assert_int_equal(transients(g_ta), before);
    /* many quotes in a row: nothing accumulates in the 3 slots */
    for (int i = 0; i < 5; i++) {
        quote q = {0};
        quote_take(g_ta, g_ak_blob_a, g_ak_blob_a_len, SEL, &q);
        quote_free(&q);
    }
    assert_int_equal(transients(g_ta), before);
    /* an unreachable TPM */
    attest_tpm *t = NULL;
    assert_int_equal(attest_tpm_open("swtpm:host=127.0.0.1,port=1", &t), VMENC_E_KMS_UNAVAILABLE);
    assert_null(t);
}

/* ---- setup ---------------------------------------------------------------- */

static int setup(void **state) {
    (void)state;
    size_t before;
    if (attest_tpm_open(g_a.tcti, &g_ta) != VMENC_OK || attest_tpm_open(g_b.tcti, &g_tb) != VMENC_OK)
        return -1;
    before = transients(g_ta);
    if (attest_tpm_ek(g_ta, &g_ek_cert, &g_ek_cert_len, &g_ek_pub_a, &g_ek_pub_a_len) != VMENC_OK ||
        attest_tpm_ek(g_tb, NULL, NULL, &g_ek_pub_b, &g_ek_pub_b_len) != VMENC_OK ||
        attest_tpm_ak_create(g_ta, &g_ak_pub_a, &g_ak_pub_a_len, &g_ak_blob_a, &g_ak_blob_a_len) != VMENC_OK ||
        attest_tpm_ak_create(g_tb, &g_ak_pub_b, &g_ak_pub_b_len, &g_ak_blob_b, &g_ak_blob_b_len) != VMENC_OK)
        return -1;
    if (transients(g_ta) != before)
        return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    attest_tpm_close(g_ta);
    attest_tpm_close(g_tb);
    free(g_ek_cert);
    free(g_ek_pub_a);
    free(g_ek_pub_b);
    free(g_ak_pub_a);
    free(g_ak_blob_a);
    free(g_ak_pub_b);
    free(g_ak_blob_b);
    return 0;
}

/* A sanitizer that stops the test (abort_on_error) must not leave the two
 * swtpm daemons behind: stop them, then die of the same signal. */
static void on_fatal(int sig) {
    swtpm_stop(&g_a);
    swtpm_stop(&g_b);
    signal(sig, SIG_DFL);
    raise(sig);
}

int main(void) {
    const char *why = NULL;
    if (!attest_tpm_available()) {
        printf("SKIP: built without tpm2-tss (libtss2-dev): no TPM host side\n");
        return 77;
    }
    if (!swtpm_available(&why)) {
        printf("SKIP: %s\n", why);
        return 77;
    }
    snprintf(g_tmp, sizeof g_tmp, "/tmp/vmenc-attest-XXXXXX");
    if (mkdtemp(g_tmp) == NULL)
        return 1;
    char da[300], db[300], ca[300], cmd[1200];
    snprintf(da, sizeof da, "%s/a", g_tmp);
    snprintf(db, sizeof db, "%s/b", g_tmp);
    snprintf(ca, sizeof ca, "%s/ca", g_tmp);
    if (!swtpm_start(&g_a, da, true, ca) || !swtpm_start(&g_b, db, false, NULL)) {
        printf("SKIP: swtpm did not start here (see %s/*/swtpm.log)\n", g_tmp);
        swtpm_stop(&g_a);
        swtpm_stop(&g_b);
        return 77;
    }
    signal(SIGABRT, on_fatal);
    signal(SIGTERM, on_fatal);
    snprintf(g_ca, sizeof g_ca, "%s/chain.pem", g_tmp);
    snprintf(cmd, sizeof cmd, "cat '%s/swtpm-localca-rootca-cert.pem' '%s/issuercert.pem' > '%s'", ca, ca, g_ca);
    int rc = system(cmd);
    g_have_tools = system("command -v tpm2_makecredential >/dev/null 2>&1 && "
                          "/usr/bin/python3 -c 'import cryptography' >/dev/null 2>&1") == 0;
    if (!g_have_tools)
        printf("note: tpm2-tools or /usr/bin/python3 cryptography missing: no cross-checks\n");
    srand((unsigned)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ek_cert_chain),
        cmocka_unit_test(test_ak_attributes_and_name),
        cmocka_unit_test(test_enrol_activate),
        cmocka_unit_test(test_make_credential_vs_tpm2_tools),
        cmocka_unit_test(test_quote_verifies_and_refusals),
        cmocka_unit_test(test_changed_pcr),
        cmocka_unit_test(test_host_args_and_flush),
        cmocka_unit_test(test_differential),
    };
    if (rc == 0)
        rc = cmocka_run_group_tests(tests, setup, teardown);
    swtpm_stop(&g_a);
    swtpm_stop(&g_b);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (rc == 0 && system(cmd) != 0)
        rc = 1;
    return rc;
}
