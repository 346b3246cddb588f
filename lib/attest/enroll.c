/*
 * lib/attest/enroll.c - the broker's side of enrolment in two calls
 * (Enroll-Begin: EK, AK, MakeCredential; Enroll-Finish: the activated
 * secret), so every caller makes the checks in the order docs/attest.md
 * gives. Its one safety rule: the credential is encrypted only to an EK
 * taken from a certificate that chained (or, uncertified, to the EK the
 * caller chose to accept), and only the secret's hash outlives the call.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include "attest/attest.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "attest/attest_internal.h"

void attest_enrollment_cleanup(attest_enrollment *e) {
    if (e == NULL)
        return;
    free(e->cred_blob);
    free(e->enc_secret);
    memset(e, 0, sizeof *e);
}

vmenc_status attest_enroll_begin(const uint8_t *ek_cert_der, size_t ek_cert_len, const uint8_t *ek_public,
                                 size_t ek_public_len, const char *ca_pem, const uint8_t *ak_public,
                                 size_t ak_public_len, attest_enrollment *out) {
    VMENC_ENSURE_REF(out);
    memset(out, 0, sizeof *out);
    out->refusal = ATTEST_REFUSED_MALFORMED;
    VMENC_ENSURE(ak_public != NULL && (ek_cert_der != NULL || ek_public != NULL) &&
                     (ek_cert_der == NULL || ca_pem != NULL),
                 VMENC_E_INVALID_ARG);
    uint8_t *ek = NULL;
    size_t ek_len = 0;
    vmenc_status rv;
    if (ek_cert_der != NULL) {
        rv = attest_ek_cert_check(ek_cert_der, ek_cert_len, ca_pem, &ek, &ek_len);
        if (rv == VMENC_E_AUTH)
            out->refusal = ATTEST_REFUSED_EK_CERT;
        VMENC_GUARD(rv);
        if (ek_public != NULL && (ek_public_len != ek_len || memcmp(ek_public, ek, ek_len) != 0)) {
            free(ek);
            out->refusal = ATTEST_REFUSED_SIGNER;
            return VMENC_E_AUTH;
        }
    } else {
        attest_public p;
        VMENC_GUARD(attest_public_parse(ek_public, ek_public_len, &p));
        ek = malloc(ek_public_len);
        VMENC_ENSURE(ek != NULL, VMENC_E_NOMEM);
        memcpy(ek, ek_public, ek_public_len);
        ek_len = ek_public_len;
    }
    attest_enrollment e;
    memset(&e, 0, sizeof e);
    attest_refusal r = ATTEST_REFUSED_MALFORMED;
    uint8_t *secret = vmenc_secure_alloc_pooled(ATTEST_NONCE_BYTES);
    VMENC_ENSURE_GOTO(rv, secret != NULL, VMENC_E_NOMEM, out);
    rv = attest_ak_check(ak_public, ak_public_len, e.ak_name, &r);
    if (rv != VMENC_OK)
        goto out;
    randombytes_buf(secret, ATTEST_NONCE_BYTES);
    VMENC_GUARD_GOTO(rv, attest_sha256(secret, ATTEST_NONCE_BYTES, NULL, 0, e.secret_sha256), out);
    VMENC_GUARD_GOTO(rv, attest_sha256(ek, ek_len, NULL, 0, e.ek_public_sha256), out);
    /* an EK it cannot encrypt to (not the RSA template) is refused as malformed */
    VMENC_GUARD_GOTO(rv, attest_make_credential(ek, ek_len, e.ak_name, sizeof e.ak_name, secret,
                                                ATTEST_NONCE_BYTES, &e.cred_blob, &e.cred_blob_len,
                                                &e.enc_secret, &e.enc_secret_len),
                     out);
    e.refusal = ATTEST_ACCEPTED;
    *out = e;
out:
    if (rv != VMENC_OK)
        out->refusal = r != ATTEST_ACCEPTED ? r : ATTEST_REFUSED_MALFORMED;
    vmenc_secure_free(secret);
    free(ek);
    return rv;
}

vmenc_status attest_enroll_finish(const uint8_t secret_sha256[ATTEST_DIGEST_BYTES], const uint8_t *activated,
                                  size_t activated_len) {
    VMENC_ENSURE(secret_sha256 != NULL && (activated != NULL || activated_len == 0), VMENC_E_INVALID_ARG);
    uint8_t h[ATTEST_DIGEST_BYTES];
    VMENC_GUARD(attest_sha256(activated, activated_len, NULL, 0, h));
    return vmenc_ct_equal(h, secret_sha256, sizeof h) ? VMENC_OK : VMENC_E_AUTH;
}
