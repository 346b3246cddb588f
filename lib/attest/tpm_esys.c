/*
 * lib/attest/tpm_esys.c - the host side of attestation on a TPM 2.0 through
 * tpm2-tss (ESAPI + MU, TCTI loader): the RSA EK of the TCG EK profile, an
 * AK under it (as tpm2_createak), ActivateCredential, Quote, PCR_Read,
 * PCR_Extend. Compiled only when CMake finds tss2 (else tpm_none.c). The
 * flow is the verified recipe of ../shared/recipes/tpm (docs/attest.md).
 * Its one safety rule: there is no resource manager in front of the TPM
 * (swtpm has 3 transient slots), so every object and session a call loads
 * is flushed before it returns, on every path - each helper that loads
 * something has exactly one cleanup label that flushes it.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include "attest/attest.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "attest/attest_internal.h"

#define EK_PERSISTENT_HANDLE 0x81010001u  /* swtpm_setup / TCG: RSA EK */
#define EK_CERT_NV_INDEX 0x01c00002u      /* RSA EK certificate */
#define AK_BLOB_MAGIC 0x564d414bu         /* "VMAK" */
#define AK_BLOB_VERSION 1u
#define QUOTE_TRIES 4                     /* PCR read vs quote race */

struct attest_tpm {
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *esys;
};

bool attest_tpm_available(void) { return true; }

/* ---- errors -------------------------------------------------------------- */

static vmenc_status status_of(TSS2_RC rc) {
    if (rc == TSS2_RC_SUCCESS)
        return VMENC_OK;
    if ((rc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER) {
        TSS2_RC base = (rc & TPM2_RC_FMT1) ? (rc & (TPM2_RC_FMT1 | 0x3fu)) : (rc & 0xfffu);
        if (base == TPM2_RC_OBJECT_MEMORY || base == TPM2_RC_SESSION_MEMORY)
            return VMENC_E_LIMIT;
        return VMENC_E_KMS;
    }
    /* TCTI (connection) errors and ESYS's own */
    if ((rc & TSS2_RC_LAYER_MASK) == TSS2_TCTI_RC_LAYER)
        return VMENC_E_KMS_UNAVAILABLE;
    if ((rc & 0xffffu) == TSS2_BASE_RC_MEMORY)
        return VMENC_E_NOMEM;
    if ((rc & 0xffffu) == TSS2_BASE_RC_IO_ERROR || (rc & 0xffffu) == TSS2_BASE_RC_TRY_AGAIN)
        return VMENC_E_KMS_UNAVAILABLE;
    return VMENC_E_KMS;
}

/* ---- open / close --------------------------------------------------------- */

vmenc_status attest_tpm_open(const char *tcti, attest_tpm **out) {
    VMENC_ENSURE(tcti != NULL && *tcti != '\0' && out != NULL, VMENC_E_INVALID_ARG);
    attest_tpm *t = calloc(1, sizeof *t);
    VMENC_ENSURE(t != NULL, VMENC_E_NOMEM);
    TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti, &t->tcti);
    if (rc != TSS2_RC_SUCCESS) {
        free(t);
        return VMENC_E_KMS_UNAVAILABLE;
    }
    rc = Esys_Initialize(&t->esys, t->tcti, NULL);
    if (rc == TSS2_RC_SUCCESS) {
        /* swtpm --flags startup-clear, or a booted machine: already started */
        rc = Esys_Startup(t->esys, TPM2_SU_CLEAR);
        if (rc == TPM2_RC_INITIALIZE)
            rc = TSS2_RC_SUCCESS;
    }
    if (rc != TSS2_RC_SUCCESS) {
        vmenc_status s = status_of(rc);
        attest_tpm_close(t);
        return s;
    }
    *out = t;
    return VMENC_OK;
}

void attest_tpm_close(attest_tpm *tpm) {
    if (tpm == NULL)
        return;
    if (tpm->esys != NULL)
        Esys_Finalize(&tpm->esys);
    if (tpm->tcti != NULL)
        Tss2_TctiLdr_Finalize(&tpm->tcti);
    free(tpm);
}

/* ---- handles ----------------------------------------------------------- */

/* A handle this file loaded (flush) or only looked up (close the ESYS
 * metadata; the TPM object stays). */
typedef struct tr {
    ESYS_TR h;
    bool flush;
} tr;

#define TR_NONE ((tr){ESYS_TR_NONE, false})

static void tr_release(attest_tpm *t, tr *x) {
    if (x->h == ESYS_TR_NONE)
        return;
    if (x->flush)
        (void)Esys_FlushContext(t->esys, x->h);
    else
        (void)Esys_TR_Close(t->esys, &x->h);
    *x = TR_NONE;
}

/* The RSA EK template of the TCG EK Credential Profile (L-1). */
static void ek_template(TPM2B_PUBLIC *p) {
    static const uint8_t policy[32] = {
        0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
        0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
    };
    memset(p, 0, sizeof *p);
    TPMT_PUBLIC *a = &p->publicArea;
    a->type = TPM2_ALG_RSA;
    a->nameAlg = TPM2_ALG_SHA256;
    a->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                          TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_ADMINWITHPOLICY |
                          TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    a->authPolicy.size = sizeof policy;
    memcpy(a->authPolicy.buffer, policy, sizeof policy);
    a->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_AES;
    a->parameters.rsaDetail.symmetric.keyBits.aes = 128;
    a->parameters.rsaDetail.symmetric.mode.aes = TPM2_ALG_CFB;
    a->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
    a->parameters.rsaDetail.keyBits = 2048;
    a->parameters.rsaDetail.exponent = 0;
    a->unique.rsa.size = 256; /* zeros */
}

/* The AK template of tpm2_createak -G rsa -g sha256 -s rsassa. */
static void ak_template(TPM2B_PUBLIC *p) {
    memset(p, 0, sizeof *p);
    TPMT_PUBLIC *a = &p->publicArea;
    a->type = TPM2_ALG_RSA;
    a->nameAlg = TPM2_ALG_SHA256;
    a->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                          TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                          TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
    a->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
    a->parameters.rsaDetail.scheme.scheme = TPM2_ALG_RSASSA;
    a->parameters.rsaDetail.scheme.details.rsassa.hashAlg = TPM2_ALG_SHA256;
    a->parameters.rsaDetail.keyBits = 2048;
    a->parameters.rsaDetail.exponent = 0;
}

/* has_handle: whether the TPM lists |handle| (a persistent object or an NV
 * index). Asking first keeps ESYS from logging an error for a handle that
 * is simply not provisioned. */
static bool has_handle(attest_tpm *t, TPM2_HANDLE handle) {
    TPMI_YES_NO more = TPM2_NO;
    TPMS_CAPABILITY_DATA *cap = NULL;
    if (Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, handle, 1,
                           &more, &cap) != TSS2_RC_SUCCESS)
        return false;
    bool found = cap->data.handles.count >= 1 && cap->data.handles.handle[0] == handle;
    Esys_Free(cap);
    return found;
}

/* ek_load: the persistent RSA EK when the TPM has one, else the same key
 * made again from the endorsement seed (CreatePrimary, to be flushed). */
static vmenc_status ek_load(attest_tpm *t, tr *ek) {
    ESYS_TR h = ESYS_TR_NONE;
    if (has_handle(t, EK_PERSISTENT_HANDLE) &&
        Esys_TR_FromTPMPublic(t->esys, EK_PERSISTENT_HANDLE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                              &h) == TSS2_RC_SUCCESS) {
        *ek = (tr){h, false};
        return VMENC_OK;
    }
    TPM2B_PUBLIC tmpl;
    ek_template(&tmpl);
    TPM2B_SENSITIVE_CREATE sens;
    memset(&sens, 0, sizeof sens);
    TPM2B_DATA outside = {.size = 0};
    TPML_PCR_SELECTION none = {.count = 0};
    TSS2_RC rc = Esys_CreatePrimary(t->esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                    ESYS_TR_NONE, &sens, &tmpl, &outside, &none, &h, NULL, NULL, NULL,
                                    NULL);
    VMENC_GUARD(status_of(rc));
    *ek = (tr){h, true};
    return VMENC_OK;
}

/* ek_session: a policy session satisfying the EK's policy,
 * PolicySecret(TPM_RH_ENDORSEMENT) (the EK has adminWithPolicy and no
 * userWithAuth). Good for one command. */
static vmenc_status ek_session(attest_tpm *t, tr *s) {
    TPMT_SYM_DEF sym = {.algorithm = TPM2_ALG_NULL};
    ESYS_TR h = ESYS_TR_NONE;
    TSS2_RC rc = Esys_StartAuthSession(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                       ESYS_TR_NONE, NULL, TPM2_SE_POLICY, &sym, TPM2_ALG_SHA256, &h);
    VMENC_GUARD(status_of(rc));
    *s = (tr){h, true};
    rc = Esys_PolicySecret(t->esys, ESYS_TR_RH_ENDORSEMENT, h, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                           ESYS_TR_NONE, NULL, NULL, NULL, 0, NULL, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        tr_release(t, s);
        return status_of(rc);
    }
    return VMENC_OK;
}

/* ---- marshalling helpers ------------------------------------------------- */

static vmenc_status marshal_public(const TPM2B_PUBLIC *p, uint8_t **out, size_t *out_len) {
    uint8_t buf[sizeof(TPM2B_PUBLIC)];
    size_t off = 0;
    VMENC_ENSURE(Tss2_MU_TPM2B_PUBLIC_Marshal(p, buf, sizeof buf, &off) == TSS2_RC_SUCCESS,
                 VMENC_E_INTERNAL);
    uint8_t *o = malloc(off);
    VMENC_ENSURE(o != NULL, VMENC_E_NOMEM);
    memcpy(o, buf, off);
    *out = o;
    *out_len = off;
    return VMENC_OK;
}

/* The AK blob (docs/attest.md): "VMAK" u32, version u8, TPM2B_PUBLIC,
 * TPM2B_PRIVATE. The private part is encrypted by the TPM under the EK. */
static vmenc_status ak_blob_parse(const uint8_t *blob, size_t blob_len, TPM2B_PUBLIC *pub,
                                  TPM2B_PRIVATE *priv) {
    const uint8_t *p;
    size_t p_len;
    VMENC_GUARD(attest_ak_blob_public(blob, blob_len, &p, &p_len));
    size_t off = 0;
    memset(pub, 0, sizeof *pub);
    memset(priv, 0, sizeof *priv);
    VMENC_ENSURE(Tss2_MU_TPM2B_PUBLIC_Unmarshal(p, p_len, &off, pub) == TSS2_RC_SUCCESS && off == p_len,
                 VMENC_E_PARSE);
    const uint8_t *q = p + p_len;
    size_t q_len = blob_len - (size_t)(q - blob);
    off = 0;
    VMENC_ENSURE(Tss2_MU_TPM2B_PRIVATE_Unmarshal(q, q_len, &off, priv) == TSS2_RC_SUCCESS && off == q_len,
                 VMENC_E_PARSE);
    return VMENC_OK;
}

static vmenc_status pcr_sel_to_tss(const char *text, TPML_PCR_SELECTION *out) {
    attest_pcr_sel s;
    VMENC_ENSURE(attest_pcr_sel_parse(text, &s) == VMENC_OK, VMENC_E_INVALID_ARG);
    memset(out, 0, sizeof *out);
    VMENC_ENSURE(s.num_banks <= TPM2_NUM_PCR_BANKS, VMENC_E_INVALID_ARG);
    out->count = s.num_banks;
    for (uint32_t i = 0; i < s.num_banks; i++) {
        out->pcrSelections[i].hash = s.banks[i].hash;
        out->pcrSelections[i].sizeofSelect = s.banks[i].size_of_select;
        memcpy(out->pcrSelections[i].pcrSelect, s.banks[i].select, s.banks[i].size_of_select);
    }
    return VMENC_OK;
}

/* ---- EK ------------------------------------------------------------------- */

static vmenc_status read_ek_cert(attest_tpm *t, uint8_t **out, size_t *out_len) {
    ESYS_TR nv = ESYS_TR_NONE;
    if (!has_handle(t, EK_CERT_NV_INDEX) ||
        Esys_TR_FromTPMPublic(t->esys, EK_CERT_NV_INDEX, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                              &nv) != TSS2_RC_SUCCESS) {
        *out = NULL; /* no certificate provisioned (swtpm without --create-ek-cert) */
        *out_len = 0;
        return VMENC_OK;
    }
    tr h = {nv, false};
    TPM2B_NV_PUBLIC *npub = NULL;
    uint8_t *buf = NULL;
    vmenc_status rv = status_of(Esys_NV_ReadPublic(t->esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                                    &npub, NULL));
    if (rv != VMENC_OK)
        goto out;
    size_t size = npub->nvPublic.dataSize;
    VMENC_ENSURE_GOTO(rv, size > 0 && size <= 8192, VMENC_E_KMS_PROTOCOL, out);
    buf = malloc(size);
    VMENC_ENSURE_GOTO(rv, buf != NULL, VMENC_E_NOMEM, out);
    for (size_t off = 0; off < size;) {
        UINT16 chunk = (UINT16)(size - off > 512 ? 512 : size - off);
        TPM2B_MAX_NV_BUFFER *data = NULL;
        rv = status_of(Esys_NV_Read(t->esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                    ESYS_TR_NONE, chunk, (UINT16)off, &data));
        if (rv == VMENC_OK && data->size != chunk)
            rv = VMENC_E_KMS_PROTOCOL;
        if (rv == VMENC_OK)
            memcpy(buf + off, data->buffer, chunk);
        Esys_Free(data);
        if (rv != VMENC_OK)
            goto out;
        off += chunk;
    }
    /* NV may be larger than the DER: cut at the outer SEQUENCE's length */
    size_t der_len = size;
    if (size >= 4 && buf[0] == 0x30 && buf[1] == 0x82)
        der_len = 4u + ((size_t)buf[2] << 8 | buf[3]);
    VMENC_ENSURE_GOTO(rv, der_len <= size, VMENC_E_KMS_PROTOCOL, out);
    *out = buf;
    *out_len = der_len;
    buf = NULL;
out:
    free(buf);
    Esys_Free(npub);
    tr_release(t, &h);
    return rv;
}

vmenc_status attest_tpm_ek(attest_tpm *tpm, uint8_t **out_ek_cert_der, size_t *out_ek_cert_len,
                           uint8_t **out_ek_public, size_t *out_ek_public_len) {
    VMENC_ENSURE(tpm != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE((out_ek_cert_der == NULL) == (out_ek_cert_len == NULL) &&
                     (out_ek_public == NULL) == (out_ek_public_len == NULL),
                 VMENC_E_INVALID_ARG);
    uint8_t *cert = NULL, *pub = NULL;
    size_t cert_len = 0, pub_len = 0;
    vmenc_status rv = VMENC_OK;
    if (out_ek_cert_der != NULL)
        VMENC_GUARD(read_ek_cert(tpm, &cert, &cert_len));
    if (out_ek_public != NULL) {
        tr ek = TR_NONE;
        TPM2B_PUBLIC *p = NULL;
        rv = ek_load(tpm, &ek);
        if (rv == VMENC_OK)
            rv = status_of(Esys_ReadPublic(tpm->esys, ek.h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &p,
                                           NULL, NULL));
        if (rv == VMENC_OK)
            rv = marshal_public(p, &pub, &pub_len);
        Esys_Free(p);
        tr_release(tpm, &ek);
        if (rv != VMENC_OK) {
            free(cert);
            return rv;
        }
        *out_ek_public = pub;
        *out_ek_public_len = pub_len;
    }
    if (out_ek_cert_der != NULL) {
        *out_ek_cert_der = cert;
        *out_ek_cert_len = cert_len;
    }
    return VMENC_OK;
}

/* ---- AK ------------------------------------------------------------------- */

vmenc_status attest_tpm_ak_create(attest_tpm *tpm, uint8_t **out_ak_public, size_t *out_ak_public_len,
                                  uint8_t **out_ak_blob, size_t *out_ak_blob_len) {
    VMENC_ENSURE(tpm != NULL && out_ak_public != NULL && out_ak_public_len != NULL &&
                     out_ak_blob != NULL && out_ak_blob_len != NULL,
                 VMENC_E_INVALID_ARG);
    tr ek = TR_NONE, sess = TR_NONE;
    TPM2B_PRIVATE *priv = NULL;
    TPM2B_PUBLIC *pub = NULL;
    uint8_t *pub_bytes = NULL;
    size_t pub_len = 0;
    vmenc_status rv;
    VMENC_GUARD_GOTO(rv, ek_load(tpm, &ek), out);
    VMENC_GUARD_GOTO(rv, ek_session(tpm, &sess), out);
    TPM2B_PUBLIC tmpl;
    ak_template(&tmpl);
    TPM2B_SENSITIVE_CREATE sens;
    memset(&sens, 0, sizeof sens);
    TPM2B_DATA outside = {.size = 0};
    TPML_PCR_SELECTION none = {.count = 0};
    rv = status_of(Esys_Create(tpm->esys, ek.h, sess.h, ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl, &outside,
                               &none, &priv, &pub, NULL, NULL, NULL));
    if (rv != VMENC_OK)
        goto out;
    VMENC_GUARD_GOTO(rv, marshal_public(pub, &pub_bytes, &pub_len), out);
    /* the blob */
    uint8_t buf[5 + sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE)];
    vmenc_store_u32_be(buf, AK_BLOB_MAGIC);
    buf[4] = AK_BLOB_VERSION;
    size_t off = 5;
    VMENC_ENSURE_GOTO(rv,
                      Tss2_MU_TPM2B_PUBLIC_Marshal(pub, buf, sizeof buf, &off) == TSS2_RC_SUCCESS &&
                          Tss2_MU_TPM2B_PRIVATE_Marshal(priv, buf, sizeof buf, &off) == TSS2_RC_SUCCESS,
                      VMENC_E_INTERNAL, out);
    uint8_t *blob = malloc(off);
    VMENC_ENSURE_GOTO(rv, blob != NULL, VMENC_E_NOMEM, out);
    memcpy(blob, buf, off);
    *out_ak_public = pub_bytes;
    *out_ak_public_len = pub_len;
    *out_ak_blob = blob;
    *out_ak_blob_len = off;
    pub_bytes = NULL;
out:
    free(pub_bytes);
    Esys_Free(priv);
    Esys_Free(pub);
    tr_release(tpm, &sess);
    tr_release(tpm, &ek);
    return rv;
}

/* ak_load: the AK from its blob under the EK (the caller releases |ak| and
 * |ek|; with keep_ek false the EK is released here already). */
static vmenc_status ak_load(attest_tpm *t, const uint8_t *blob, size_t blob_len, bool keep_ek, tr *ek,
                            tr *ak) {
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;
    VMENC_GUARD(ak_blob_parse(blob, blob_len, &pub, &priv));
    tr sess = TR_NONE;
    ESYS_TR h = ESYS_TR_NONE;
    vmenc_status rv;
    VMENC_GUARD_GOTO(rv, ek_load(t, ek), out);
    VMENC_GUARD_GOTO(rv, ek_session(t, &sess), out);
    rv = status_of(Esys_Load(t->esys, ek->h, sess.h, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub, &h));
    if (rv == VMENC_OK)
        *ak = (tr){h, true};
out:
    tr_release(t, &sess);
    if (rv != VMENC_OK || !keep_ek)
        tr_release(t, ek);
    return rv;
}

vmenc_status attest_tpm_activate(attest_tpm *tpm, const uint8_t *ak_blob, size_t ak_blob_len,
                                 const uint8_t *cred_blob, size_t cred_blob_len, const uint8_t *enc_secret,
                                 size_t enc_secret_len, vmenc_secret **out_secret) {
    VMENC_ENSURE(tpm != NULL && ak_blob != NULL && cred_blob != NULL && enc_secret != NULL &&
                     out_secret != NULL,
                 VMENC_E_INVALID_ARG);
    TPM2B_ID_OBJECT id;
    TPM2B_ENCRYPTED_SECRET es;
    size_t off = 0;
    VMENC_ENSURE(Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(cred_blob, cred_blob_len, &off, &id) == TSS2_RC_SUCCESS &&
                     off == cred_blob_len,
                 VMENC_E_PARSE);
    off = 0;
    VMENC_ENSURE(Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(enc_secret, enc_secret_len, &off, &es) ==
                         TSS2_RC_SUCCESS &&
                     off == enc_secret_len,
                 VMENC_E_PARSE);
    tr ek = TR_NONE, ak = TR_NONE, sess = TR_NONE;
    TPM2B_DIGEST *cert_info = NULL;
    vmenc_status rv;
    VMENC_GUARD_GOTO(rv, ak_load(tpm, ak_blob, ak_blob_len, true, &ek, &ak), out);
    VMENC_GUARD_GOTO(rv, ek_session(tpm, &sess), out);
    /* activateHandle = AK (ADMIN role: its empty authValue, adminWithPolicy
     * clear), keyHandle = EK (its policy session) */
    TSS2_RC rc = Esys_ActivateCredential(tpm->esys, ak.h, ek.h, ESYS_TR_PASSWORD, sess.h, ESYS_TR_NONE,
                                         &id, &es, &cert_info);
    if (rc != TSS2_RC_SUCCESS) {
        /* An error (not a warning) from the TPM itself is the TPM refusing the
         * credential: another AK name (INTEGRITY), another EK (the seed does
         * not decrypt: VALUE, or FAILURE from swtpm's RSA code). */
        bool tpm_error = (rc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER &&
                         ((rc & TPM2_RC_FMT1) || (rc & 0xf00u) == TPM2_RC_VER1);
        rv = tpm_error ? VMENC_E_AUTH : status_of(rc);
        goto out;
    }
    VMENC_ENSURE_GOTO(rv, cert_info->size > 0 && cert_info->size <= ATTEST_SECRET_MAX, VMENC_E_KMS_PROTOCOL,
                      out);
    rv = vmenc_secret_from(cert_info->buffer, cert_info->size, out_secret);
out:
    if (cert_info != NULL) {
        sodium_memzero(cert_info, sizeof *cert_info);
        Esys_Free(cert_info);
    }
    sodium_memzero(&id, sizeof id);
    tr_release(tpm, &sess);
    tr_release(tpm, &ak);
    tr_release(tpm, &ek);
    return rv;
}

/* ---- PCRs ----------------------------------------------------------------- */

static bool sel_empty(const TPML_PCR_SELECTION *s) {
    for (UINT32 i = 0; i < s->count; i++)
        for (UINT8 j = 0; j < s->pcrSelections[i].sizeofSelect; j++)
            if (s->pcrSelections[i].pcrSelect[j])
                return false;
    return true;
}

/* Read the PCRs of |want| (PCR_Read answers at most 8 per call, a prefix in
 * selection order), appending to |b|. */
static vmenc_status pcr_read_sel(attest_tpm *t, const TPML_PCR_SELECTION *want, vmenc_cbb *b) {
    TPML_PCR_SELECTION left = *want;
    while (!sel_empty(&left)) {
        TPML_PCR_SELECTION *got = NULL;
        TPML_DIGEST *vals = NULL;
        UINT32 counter = 0;
        vmenc_status rv = status_of(Esys_PCR_Read(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &left,
                                                  &counter, &got, &vals));
        if (rv == VMENC_OK && (vals->count == 0 || sel_empty(got)))
            rv = VMENC_E_UNSUPPORTED; /* a selected bank or PCR the TPM does not have */
        if (rv == VMENC_OK) {
            for (UINT32 i = 0; i < vals->count; i++)
                vmenc_cbb_add_bytes(b, vals->digests[i].buffer, vals->digests[i].size);
            /* remove what was read */
            for (UINT32 i = 0; i < got->count; i++)
                for (UINT32 k = 0; k < left.count; k++)
                    if (left.pcrSelections[k].hash == got->pcrSelections[i].hash)
                        for (UINT8 j = 0; j < got->pcrSelections[i].sizeofSelect &&
                                          j < left.pcrSelections[k].sizeofSelect;
                             j++)
                            left.pcrSelections[k].pcrSelect[j] &= (UINT8)~got->pcrSelections[i].pcrSelect[j];
        }
        Esys_Free(got);
        Esys_Free(vals);
        VMENC_GUARD(rv);
    }
    return vmenc_cbb_status(b);
}

vmenc_status attest_tpm_pcr_read(attest_tpm *tpm, const char *pcr_sel, uint8_t **out_values,
                                 size_t *out_values_len) {
    VMENC_ENSURE(tpm != NULL && pcr_sel != NULL && out_values != NULL && out_values_len != NULL,
                 VMENC_E_INVALID_ARG);
    TPML_PCR_SELECTION sel;
    VMENC_GUARD(pcr_sel_to_tss(pcr_sel, &sel));
    vmenc_cbb b;
    VMENC_GUARD(vmenc_cbb_init(&b, 32 * 8));
    vmenc_status rv = pcr_read_sel(tpm, &sel, &b);
    if (rv != VMENC_OK) {
        vmenc_cbb_cleanup(&b);
        return rv;
    }
    return vmenc_cbb_finish(&b, out_values, out_values_len);
}

vmenc_status attest_tpm_pcr_extend(attest_tpm *tpm, unsigned pcr, const uint8_t digest[ATTEST_DIGEST_BYTES]) {
    VMENC_ENSURE(tpm != NULL && digest != NULL && pcr < 24, VMENC_E_INVALID_ARG);
    TPML_DIGEST_VALUES d;
    memset(&d, 0, sizeof d);
    d.count = 1;
    d.digests[0].hashAlg = TPM2_ALG_SHA256;
    memcpy(d.digests[0].digest.sha256, digest, ATTEST_DIGEST_BYTES);
    return status_of(Esys_PCR_Extend(tpm->esys, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                     ESYS_TR_NONE, &d));
}

/* ---- Quote ----------------------------------------------------------------- */

vmenc_status attest_tpm_quote(attest_tpm *tpm, const uint8_t *ak_blob, size_t ak_blob_len,
                              const uint8_t *nonce, size_t nonce_len, const char *pcr_sel,
                              uint8_t **out_attest, size_t *out_attest_len, uint8_t **out_sig,
                              size_t *out_sig_len, uint8_t **out_pcr_values, size_t *out_pcr_values_len) {
    VMENC_ENSURE(tpm != NULL && ak_blob != NULL && nonce != NULL && nonce_len > 0 &&
                     nonce_len <= ATTEST_NONCE_MAX && pcr_sel != NULL && out_attest != NULL &&
                     out_attest_len != NULL && out_sig != NULL && out_sig_len != NULL &&
                     out_pcr_values != NULL && out_pcr_values_len != NULL,
                 VMENC_E_INVALID_ARG);
    TPML_PCR_SELECTION sel;
    VMENC_GUARD(pcr_sel_to_tss(pcr_sel, &sel));
    tr ek = TR_NONE, ak = TR_NONE;
    VMENC_GUARD(ak_load(tpm, ak_blob, ak_blob_len, false, &ek, &ak));
    TPM2B_DATA q = {.size = (UINT16)nonce_len};
    memcpy(q.buffer, nonce, nonce_len);
    TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_NULL}; /* the AK's own: RSASSA-SHA256 */
    vmenc_status rv = VMENC_E_KMS_PROTOCOL;
    uint8_t *values = NULL, *attest = NULL, *sig = NULL;
    size_t values_len = 0, attest_len = 0, sig_len = 0;
    for (int i = 0; i < QUOTE_TRIES; i++) {
        vmenc_cbb b;
        TPM2B_ATTEST *quoted = NULL;
        TPMT_SIGNATURE *signature = NULL;
        free(values);
        values = NULL;
        VMENC_GUARD_GOTO(rv, vmenc_cbb_init(&b, 32 * 8), out);
        rv = pcr_read_sel(tpm, &sel, &b);
        if (rv == VMENC_OK)
            rv = vmenc_cbb_finish(&b, &values, &values_len);
        else
            vmenc_cbb_cleanup(&b);
        if (rv == VMENC_OK)
            rv = status_of(Esys_Quote(tpm->esys, ak.h, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &q,
                                      &scheme, &sel, &quoted, &signature));
        attest_quote parsed;
        uint8_t digest[ATTEST_DIGEST_BYTES];
        bool same = false;
        if (rv == VMENC_OK && attest_quote_parse(quoted->attestationData, quoted->size, &parsed) == VMENC_OK &&
            attest_sha256(values, values_len, NULL, 0, digest) == VMENC_OK)
            same = parsed.pcr_digest_len == sizeof digest &&
                   memcmp(parsed.pcr_digest, digest, sizeof digest) == 0;
        if (rv == VMENC_OK && same) {
            uint8_t sbuf[sizeof(TPMT_SIGNATURE)];
            size_t soff = 0;
            attest = malloc(quoted->size);
            if (attest == NULL)
                rv = VMENC_E_NOMEM;
            else if (Tss2_MU_TPMT_SIGNATURE_Marshal(signature, sbuf, sizeof sbuf, &soff) != TSS2_RC_SUCCESS)
                rv = VMENC_E_INTERNAL;
            else if ((sig = malloc(soff)) == NULL)
                rv = VMENC_E_NOMEM;
            if (rv == VMENC_OK) {
                memcpy(attest, quoted->attestationData, quoted->size);
                attest_len = quoted->size;
                memcpy(sig, sbuf, soff);
                sig_len = soff;
            }
        } else if (rv == VMENC_OK) {
            rv = VMENC_E_CONFLICT; /* a PCR moved between read and quote: again */
        }
        Esys_Free(quoted);
        Esys_Free(signature);
        if (rv != VMENC_E_CONFLICT)
            break;
    }
out:
    tr_release(tpm, &ak);
    if (rv != VMENC_OK) {
        free(values);
        free(attest);
        free(sig);
        return rv;
    }
    *out_attest = attest;
    *out_attest_len = attest_len;
    *out_sig = sig;
    *out_sig_len = sig_len;
    *out_pcr_values = values;
    *out_pcr_values_len = values_len;
    return VMENC_OK;
}

/* ---- diagnostics ----------------------------------------------------------- */

static vmenc_status count_handles(attest_tpm *t, UINT32 first, size_t *out) {
    TPMI_YES_NO more = TPM2_NO;
    TPMS_CAPABILITY_DATA *cap = NULL;
    VMENC_GUARD(status_of(Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                             TPM2_CAP_HANDLES, first, TPM2_MAX_CAP_HANDLES, &more, &cap)));
    size_t n = 0;
    /* the TPM lists only handles of the type |first| names */
    n = cap->data.handles.count;
    Esys_Free(cap);
    *out = n;
    return VMENC_OK;
}

vmenc_status attest_tpm_num_transients(attest_tpm *tpm, size_t *out_num) {
    VMENC_ENSURE(tpm != NULL && out_num != NULL, VMENC_E_INVALID_ARG);
    size_t objects = 0, loaded = 0, saved = 0;
    VMENC_GUARD(count_handles(tpm, TPM2_TRANSIENT_FIRST, &objects));
    VMENC_GUARD(count_handles(tpm, TPM2_LOADED_SESSION_FIRST, &loaded));
    VMENC_GUARD(count_handles(tpm, TPM2_ACTIVE_SESSION_FIRST, &saved));
    *out_num = objects + loaded + saved;
    return VMENC_OK;
}
