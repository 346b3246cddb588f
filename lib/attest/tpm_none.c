/*
 * lib/attest/tpm_none.c - the host side of lib/attest/attest.h in a build
 * without tpm2-tss (CMake found no tss2-esys): every call says
 * VMENC_E_UNSUPPORTED, so a broker or verifier-only build still links. The
 * protocol is in docs/attest.md. Its one safety rule: never pretend, never
 * return data.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include "attest/attest.h"

bool attest_tpm_available(void) { return false; }

vmenc_status attest_tpm_open(const char *tcti, attest_tpm **out) {
    (void)tcti; (void)out;
    return VMENC_E_UNSUPPORTED;
}

void attest_tpm_close(attest_tpm *tpm) { (void)tpm; }

vmenc_status attest_tpm_ek(attest_tpm *tpm, uint8_t **out_ek_cert_der, size_t *out_ek_cert_len,
                           uint8_t **out_ek_public, size_t *out_ek_public_len) {
    (void)tpm; (void)out_ek_cert_der; (void)out_ek_cert_len; (void)out_ek_public;
    (void)out_ek_public_len;
    return VMENC_E_UNSUPPORTED;
}

vmenc_status attest_tpm_ak_create(attest_tpm *tpm, uint8_t **out_ak_public, size_t *out_ak_public_len,
                                  uint8_t **out_ak_blob, size_t *out_ak_blob_len) {
    (void)tpm; (void)out_ak_public; (void)out_ak_public_len; (void)out_ak_blob; (void)out_ak_blob_len;
    return VMENC_E_UNSUPPORTED;
}

vmenc_status attest_tpm_activate(attest_tpm *tpm, const uint8_t *ak_blob, size_t ak_blob_len,
                                 const uint8_t *cred_blob, size_t cred_blob_len,
                                 const uint8_t *enc_secret, size_t enc_secret_len,
                                 vmenc_secret **out_secret) {
    (void)tpm; (void)ak_blob; (void)ak_blob_len; (void)cred_blob; (void)cred_blob_len;
    (void)enc_secret; (void)enc_secret_len; (void)out_secret;
    return VMENC_E_UNSUPPORTED;
}

vmenc_status attest_tpm_quote(attest_tpm *tpm, const uint8_t *ak_blob, size_t ak_blob_len,
                              const uint8_t *nonce, size_t nonce_len, const char *pcr_sel,
                              uint8_t **out_attest, size_t *out_attest_len, uint8_t **out_sig,
                              size_t *out_sig_len, uint8_t **out_pcr_values,
                              size_t *out_pcr_values_len) {
    (void)tpm; (void)ak_blob; (void)ak_blob_len; (void)nonce; (void)nonce_len; (void)pcr_sel;
    (void)out_attest; (void)out_attest_len; (void)out_sig; (void)out_sig_len;
    (void)out_pcr_values; (void)out_pcr_values_len;
    return VMENC_E_UNSUPPORTED;
}

vmenc_status attest_tpm_pcr_read(attest_tpm *tpm, const char *pcr_sel, uint8_t **out_values,
                                 size_t *out_values_len) {
    (void)tpm; (void)pcr_sel; (void)out_values; (void)out_values_len;
    return VMENC_E_UNSUPPORTED;
}

vmenc_status attest_tpm_pcr_extend(attest_tpm *tpm, unsigned pcr,
                                   const uint8_t digest[ATTEST_DIGEST_BYTES]) {
    (void)tpm; (void)pcr; (void)digest;
    return VMENC_E_UNSUPPORTED;
}

vmenc_status attest_tpm_num_transients(attest_tpm *tpm, size_t *out_num) {
    (void)tpm; (void)out_num;
    return VMENC_E_UNSUPPORTED;
}
