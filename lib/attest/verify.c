/*
 * lib/attest/verify.c - the verifier of lib/attest/attest.h (stubs until the
 * implementation lands). Protocol in docs/attest.md. Safety rule: refuse.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include "attest/attest.h"

#define U VMENC_E_UNSUPPORTED
vmenc_status attest_public_parse(const uint8_t *in, size_t in_len, attest_public *out) { (void)in; (void)in_len; (void)out; return U; }
vmenc_status attest_public_marshal(const attest_public *pub, uint8_t **out, size_t *out_len) { (void)pub; (void)out; (void)out_len; return U; }
vmenc_status attest_quote_parse(const uint8_t *in, size_t in_len, attest_quote *out) { (void)in; (void)in_len; (void)out; return U; }
vmenc_status attest_quote_marshal(const attest_quote *q, uint8_t **out, size_t *out_len) { (void)q; (void)out; (void)out_len; return U; }
vmenc_status attest_sig_parse(const uint8_t *in, size_t in_len, attest_sig *out) { (void)in; (void)in_len; (void)out; return U; }
vmenc_status attest_sig_marshal(const attest_sig *sig, uint8_t **out, size_t *out_len) { (void)sig; (void)out; (void)out_len; return U; }
vmenc_status attest_pcr_sel_parse(const char *text, attest_pcr_sel *out) { (void)text; (void)out; return U; }
bool attest_pcr_sel_equal(const attest_pcr_sel *a, const attest_pcr_sel *b) { (void)a; (void)b; return false; }
size_t attest_pcr_sel_values_len(const attest_pcr_sel *sel) { (void)sel; return 0; }
const char *attest_refusal_str(attest_refusal r) { (void)r; return "unsupported"; }
vmenc_status attest_ak_check(const uint8_t *p, size_t l, uint8_t n[ATTEST_NAME_BYTES], attest_refusal *r) { (void)p; (void)l; (void)n; (void)r; return U; }
vmenc_status attest_public_name(const uint8_t *p, size_t l, uint8_t n[ATTEST_NAME_BYTES]) { (void)p; (void)l; (void)n; return U; }
vmenc_status attest_ek_public_from_modulus(const uint8_t *n, size_t nl, uint8_t **o, size_t *ol) { (void)n; (void)nl; (void)o; (void)ol; return U; }
vmenc_status attest_ek_cert_check(const uint8_t *d, size_t dl, const char *ca, uint8_t **o, size_t *ol) { (void)d; (void)dl; (void)ca; (void)o; (void)ol; return U; }
vmenc_status attest_make_credential(const uint8_t *e, size_t el, const uint8_t *n, size_t nl, const uint8_t *s, size_t sl, uint8_t **c, size_t *cl, uint8_t **x, size_t *xl) { (void)e; (void)el; (void)n; (void)nl; (void)s; (void)sl; (void)c; (void)cl; (void)x; (void)xl; return U; }
vmenc_status attest_make_credential_seeded(const uint8_t *sd, size_t sdl, const uint8_t *n, size_t nl, const uint8_t *s, size_t sl, uint8_t **c, size_t *cl) { (void)sd; (void)sdl; (void)n; (void)nl; (void)s; (void)sl; (void)c; (void)cl; return U; }
vmenc_status attest_quote_verify(const uint8_t *a, size_t al, const uint8_t *q, size_t ql, const uint8_t *s, size_t sl, const uint8_t *n, size_t nl, const char *sel, const uint8_t *v, size_t vl, const uint8_t *e, size_t el, attest_quote_result *out) { (void)a; (void)al; (void)q; (void)ql; (void)s; (void)sl; (void)n; (void)nl; (void)sel; (void)v; (void)vl; (void)e; (void)el; if (out) out->refusal = ATTEST_REFUSED_MALFORMED; return U; }
vmenc_status attest_pcr_digest(const char *sel, const uint8_t *v, size_t vl, uint8_t out[ATTEST_DIGEST_BYTES]) { (void)sel; (void)v; (void)vl; (void)out; return U; }
void attest_pcr_fold(const uint8_t (*m)[ATTEST_DIGEST_BYTES], size_t num, uint8_t out[ATTEST_DIGEST_BYTES]) { (void)m; (void)num; (void)out; }
vmenc_status attest_ak_blob_public(const uint8_t *b, size_t bl, const uint8_t **o, size_t *ol) { (void)b; (void)bl; (void)o; (void)ol; return U; }
