/*
 * lib/kms/pkcs11/provider.c - the PKCS#11 provider: sessions, login, and the
 * provider operations (create, wrap, unwrap, revoke, destroy, health).
 *
 * Sessions. One "anchor" session is opened at creation and carries the login
 * (PKCS#11 logs in the application, not a session, and the login lasts while
 * the application has a session with the token). Operations borrow sessions
 * from a small pool, so threads do not queue behind each other; a session
 * that saw an unexpected token error is closed rather than returned, so no
 * half-finished operation state leaks into the next call.
 *
 * Recovery. If the token drops our sessions or our login (a token reset, an
 * HSM fail-over, another part of the process calling C_CloseAllSessions), an
 * operation sees CKR_SESSION_HANDLE_INVALID / CKR_USER_NOT_LOGGED_IN; the
 * provider then reopens the anchor, logs in again with the PIN it keeps in
 * secure memory (no-access protected while unused) and retries once. With
 * VMENC_PKCS11_FORGET_PIN there is no PIN to do that with and the call fails
 * with VMENC_E_KMS_AUTH.
 *
 * Secrets. The KEK stays in the token. A DEK to wrap goes in as the value of
 * a session-only generic-secret object that is destroyed right after
 * C_WrapKey (for GCM it is the C_Encrypt input); an unwrapped DEK is read
 * straight from its temporary session object into the caller's buffer and
 * the object destroyed. On failure the caller's output buffer is wiped.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kms/pkcs11/p11.h"
#include "kms/pkcs11/pkcs11_provider.h"
#include "vmenc/kms_pkcs11.h"

#define DEFAULT_KEY_LABEL "vmenc-kek"
#define KEY_LABEL_MAX 255u
#define GCM_IV_BYTES 12u
#define GCM_TAG_BYTES 16u
#define MAX_ATTEMPTS 2

typedef struct pkcs11_provider {
    vmenc_kms_provider base; /* first: the provider handle callers hold */
    vmenc_p11_module mod;
    struct ck_function_list *fl;
    ck_slot_id_t slot;

    vmenc_secret *pin;       /* no-access when unused; NULL with VMENC_PKCS11_FORGET_PIN
                              * or once the token refused it */
    vmenc_kms_wrap_mech mech;
    char *key_label;
    uint32_t flags;

    /* login: the anchor session and the PIN, guarded by login_mu */
    pthread_mutex_t login_mu;
    ck_session_handle_t anchor;
    bool anchor_open;

    /* the session pool, guarded by pool_mu */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    ck_session_handle_t *idle;
    size_t num_idle;
    size_t num_open;         /* operation sessions open (idle + borrowed) */
    size_t max_sessions;

    /* The process that made the provider. PKCS#11 sessions and logins do
     * not survive fork(): a child must initialise the module afresh, so in
     * a child every operation fails with VMENC_E_BAD_STATE and free only
     * releases memory, leaving the parent's token state alone. */
    pid_t pid;
} pkcs11_provider;

static const vmenc_kms_provider_ops pkcs11_ops;

/* A provider of ours, used in the process that made it. */
#define ENSURE_LIVE(pp)                                              \
    do {                                                             \
        VMENC_ENSURE_REF(pp);                                        \
        VMENC_ENSURE((pp)->pid == getpid(), VMENC_E_BAD_STATE);      \
    } while (0)

static pkcs11_provider *from_base(vmenc_kms_provider *p) {
    if (p == NULL || p->ops != &pkcs11_ops)
        return NULL;
    return (pkcs11_provider *)p;
}

/* ---- small helpers --------------------------------------------------- */

static bool is_session_lost(ck_rv_t rv) {
    return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED || rv == CKR_USER_NOT_LOGGED_IN;
}

typedef vmenc_p11_key_ref kek_ref;

static vmenc_status parse_key_id(const char *key_id, kek_ref *out) {
    VMENC_ENSURE_REF(key_id);
    return vmenc_p11_parse_key_id((const uint8_t *)key_id, strnlen(key_id, VMENC_KEY_ID_MAX + 1), out);
}

/* A label for a new KEK must be found again by that very string: it parses
 * as a label, to itself (so no "id:" or "label:" prefix). */
static vmenc_status check_key_label(const char *label) {
    kek_ref ref;
    VMENC_GUARD(parse_key_id(label, &ref));
    VMENC_ENSURE(!ref.by_id && ref.len == strlen(label) && memcmp(ref.bytes, label, ref.len) == 0,
                 VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

/* ---- login and the anchor session ------------------------------------ */

/* Called with login_mu held. Logs in on |s| with the stored PIN. */
static vmenc_status login_locked(pkcs11_provider *pp, ck_session_handle_t s) {
    if (pp->pin == NULL)
        return VMENC_E_KMS_AUTH;
    (void)sodium_mprotect_readonly(pp->pin->bytes);
    ck_rv_t rv = pp->fl->C_Login(s, CKU_USER, pp->pin->bytes, pp->pin->len);
    (void)sodium_mprotect_noaccess(pp->pin->bytes);
    /* Another provider in this process may hold the login already. */
    if (rv == CKR_USER_ALREADY_LOGGED_IN)
        rv = CKR_OK;
    vmenc_status st = vmenc_p11_status(rv, VMENC_P11_CTX_LOGIN);
    if (st == VMENC_E_KMS_AUTH || st == VMENC_E_PIN_LOCKED) {
        /* The token refused this PIN (changed by an administrator, say).
         * Trying it again on every later call would count failed logins
         * towards the token's lock-out: forget it instead. */
        (void)sodium_mprotect_readwrite(pp->pin->bytes);
        vmenc_secret_free(pp->pin);
        pp->pin = NULL;
    }
    return st;
}

static bool session_is_user(pkcs11_provider *pp, ck_session_handle_t s) {
    struct ck_session_info info;
    if (pp->fl->C_GetSessionInfo(s, &info) != CKR_OK)
        return false;
    return info.state == CKS_RW_USER_FUNCTIONS || info.state == CKS_RO_USER_FUNCTIONS;
}

/* Called with login_mu held: make sure the anchor is open and logged in.
 * Sets *relogged when it had to open a new anchor. */
static vmenc_status ensure_login_locked(pkcs11_provider *pp, bool *relogged) {
    *relogged = false;
    if (pp->anchor_open && session_is_user(pp, pp->anchor))
        return VMENC_OK;
    *relogged = true;
    if (pp->anchor_open) {
        (void)pp->fl->C_CloseSession(pp->anchor);
        pp->anchor_open = false;
    }
    ck_session_handle_t s;
    ck_rv_t rv = pp->fl->C_OpenSession(pp->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK)
        return vmenc_p11_status(rv, VMENC_P11_CTX_GENERIC);
    pp->anchor = s;
    pp->anchor_open = true;
    if (session_is_user(pp, s)) /* logged in through another session of ours or a sibling provider */
        return VMENC_OK;
    return login_locked(pp, s);
}

/* Closes every idle operation session (after a lost login they are stale). */
static void flush_idle(pkcs11_provider *pp) {
    pthread_mutex_lock(&pp->pool_mu);
    size_t n = pp->num_idle;
    ck_session_handle_t stale[VMENC_PKCS11_MAX_SESSIONS];
    memcpy(stale, pp->idle, n * sizeof(stale[0]));
    pp->num_idle = 0;
    pp->num_open -= n;
    pthread_cond_broadcast(&pp->pool_cv);
    pthread_mutex_unlock(&pp->pool_mu);
    for (size_t i = 0; i < n; i++)
        (void)pp->fl->C_CloseSession(stale[i]);
}

static vmenc_status recover(pkcs11_provider *pp) {
    bool relogged = false;
    pthread_mutex_lock(&pp->login_mu);
    vmenc_status st = ensure_login_locked(pp, &relogged);
    pthread_mutex_unlock(&pp->login_mu);
    if (relogged)
        flush_idle(pp); /* sessions from before the loss are stale */
    return st;
}

/* ---- the session pool -------------------------------------------------- */

static void deadline_from(uint32_t timeout_ms, struct timespec *ts) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000u;
    ts->tv_nsec += (long)(timeout_ms % 1000u) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static vmenc_status session_acquire(pkcs11_provider *pp, uint32_t timeout_ms, ck_session_handle_t *out) {
    struct timespec deadline;
    deadline_from(timeout_ms, &deadline);
    pthread_mutex_lock(&pp->pool_mu);
    for (;;) {
        if (pp->num_idle > 0) {
            *out = pp->idle[--pp->num_idle];
            pthread_mutex_unlock(&pp->pool_mu);
            return VMENC_OK;
        }
        if (pp->num_open < pp->max_sessions) {
            pp->num_open++;
            pthread_mutex_unlock(&pp->pool_mu);
            ck_session_handle_t s;
            ck_rv_t rv = pp->fl->C_OpenSession(pp->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
            if (rv == CKR_OK) {
                *out = s;
                return VMENC_OK;
            }
            pthread_mutex_lock(&pp->pool_mu);
            pp->num_open--;
            pthread_cond_signal(&pp->pool_cv);
            pthread_mutex_unlock(&pp->pool_mu);
            return vmenc_p11_status(rv, VMENC_P11_CTX_GENERIC);
        }
        int rc = pthread_cond_timedwait(&pp->pool_cv, &pp->pool_mu, &deadline);
        if (rc == ETIMEDOUT && pp->num_idle == 0 && pp->num_open >= pp->max_sessions) {
            pthread_mutex_unlock(&pp->pool_mu);
            return VMENC_E_KMS_TIMEOUT;
        }
    }
}

static void session_release(pkcs11_provider *pp, ck_session_handle_t s, bool discard) {
    if (discard) {
        (void)pp->fl->C_CloseSession(s);
        pthread_mutex_lock(&pp->pool_mu);
        pp->num_open--;
    } else {
        pthread_mutex_lock(&pp->pool_mu);
        pp->idle[pp->num_idle++] = s;
    }
    pthread_cond_signal(&pp->pool_cv);
    pthread_mutex_unlock(&pp->pool_mu);
}

/* An operation on a borrowed session. It returns its status and sets *rv to
 * the last PKCS#11 value it saw (CKR_OK if the failure was our own check). */
typedef vmenc_status (*session_op)(pkcs11_provider *pp, ck_session_handle_t s, void *arg, ck_rv_t *rv);

static vmenc_status run_op(pkcs11_provider *pp, uint32_t timeout_ms, session_op op, void *arg) {
    vmenc_status st = VMENC_E_INTERNAL;
    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        ck_session_handle_t s = 0;
        VMENC_GUARD(session_acquire(pp, timeout_ms, &s));
        ck_rv_t rv = CKR_OK;
        st = op(pp, s, arg, &rv);
        session_release(pp, s, rv != CKR_OK);
        if (!is_session_lost(rv))
            return st;
        /* The token dropped our session or login: log in again, retry once. */
        vmenc_status rs = recover(pp);
        if (rs != VMENC_OK)
            return rs;
    }
    return st;
}

/* ---- finding a KEK --------------------------------------------------- */

static vmenc_status find_kek(pkcs11_provider *pp, ck_session_handle_t s, const kek_ref *ref, bool check_props,
                             ck_object_handle_t *out, ck_rv_t *rv) {
    ck_object_class_t cls = CKO_SECRET_KEY;
    ck_key_type_t kt = CKK_AES;
    struct ck_attribute tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {ref->by_id ? CKA_ID : CKA_LABEL, (void *)ref->bytes, ref->len},
    };
    *rv = pp->fl->C_FindObjectsInit(s, tmpl, VMENC_ARRAY_LEN(tmpl));
    if (*rv != CKR_OK)
        return vmenc_p11_status(*rv, VMENC_P11_CTX_GENERIC);
    ck_object_handle_t found[2];
    unsigned long num = 0;
    *rv = pp->fl->C_FindObjects(s, found, 2, &num);
    ck_rv_t frv = pp->fl->C_FindObjectsFinal(s);
    if (*rv == CKR_OK)
        *rv = frv;
    if (*rv != CKR_OK)
        return vmenc_p11_status(*rv, VMENC_P11_CTX_GENERIC);
    if (num == 0) {
        /* Private objects are invisible to a session that is not logged in:
         * "not found" might only mean we lost the login. */
        if (!session_is_user(pp, s)) {
            *rv = CKR_USER_NOT_LOGGED_IN;
            return VMENC_E_KMS_AUTH;
        }
        return VMENC_E_KEY_NOT_FOUND;
    }
    if (num > 1)
        return VMENC_E_KMS_REFUSED; /* ambiguous: never guess which key */
    if (check_props && !(pp->flags & VMENC_PKCS11_ALLOW_EXTRACTABLE_KEK)) {
        unsigned char extractable = 1, sensitive = 0;
        struct ck_attribute q[] = {
            {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
            {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
        };
        *rv = pp->fl->C_GetAttributeValue(s, found[0], q, VMENC_ARRAY_LEN(q));
        if (*rv != CKR_OK)
            return vmenc_p11_status(*rv, VMENC_P11_CTX_GENERIC);
        if (extractable || !sensitive)
            return VMENC_E_KEY_STATE; /* this key may exist outside the token */
    }
    *out = found[0];
    return VMENC_OK;
}

/* ---- create ------------------------------------------------------------ */

typedef struct create_arg {
    const char *label;
    uint8_t id[VMENC_PKCS11_KEY_ID_BYTES];
} create_arg;

static vmenc_status op_create(pkcs11_provider *pp, ck_session_handle_t s, void *varg, ck_rv_t *rv) {
    create_arg *a = varg;
    ck_object_class_t cls = CKO_SECRET_KEY;
    ck_key_type_t kt = CKK_AES;
    unsigned long value_len = VMENC_KEK_BYTES;
    unsigned char yes = 1, no = 0;
    struct ck_attribute tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE_LEN, &value_len, sizeof(value_len)},
        {CKA_TOKEN, &yes, 1},
        {CKA_PRIVATE, &yes, 1},
        {CKA_SENSITIVE, &yes, 1},
        {CKA_EXTRACTABLE, &no, 1},
        {CKA_WRAP, &yes, 1},
        {CKA_UNWRAP, &yes, 1},
        {CKA_ENCRYPT, &yes, 1},
        {CKA_DECRYPT, &yes, 1},
        {CKA_SIGN, &no, 1},
        {CKA_VERIFY, &no, 1},
        {CKA_DERIVE, &no, 1},
        {CKA_LABEL, (void *)a->label, strlen(a->label)},
        {CKA_ID, a->id, sizeof(a->id)},
    };
    struct ck_mechanism mech = {CKM_AES_KEY_GEN, NULL, 0};
    ck_object_handle_t h;
    *rv = pp->fl->C_GenerateKey(s, &mech, tmpl, VMENC_ARRAY_LEN(tmpl), &h);
    return vmenc_p11_status(*rv, VMENC_P11_CTX_GENERIC);
}

static vmenc_status pkcs11_create_kek(vmenc_kms_provider *p, const char *name, uint32_t timeout_ms,
                                      char *out_id, size_t out_id_cap) {
    pkcs11_provider *pp = from_base(p);
    ENSURE_LIVE(pp);
    VMENC_ENSURE_REF(out_id);
    const size_t id_chars = 3 + 2 * VMENC_PKCS11_KEY_ID_BYTES; /* "id:" + hex */
    VMENC_ENSURE(out_id_cap > id_chars, VMENC_E_BUFFER_TOO_SMALL);
    create_arg a;
    a.label = name != NULL ? name : pp->key_label;
    VMENC_GUARD(check_key_label(a.label));
    VMENC_GUARD(vmenc_random_bytes(a.id, sizeof(a.id)));
    VMENC_GUARD(run_op(pp, timeout_ms, op_create, &a));

    kek_ref ref;
    memset(&ref, 0, sizeof(ref));
    ref.by_id = true;
    memcpy(ref.bytes, a.id, sizeof(a.id));
    ref.len = sizeof(a.id);
    char id[64];
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, (uint8_t *)id, sizeof(id));
    vmenc_p11_format_key_id(&ref, &cbb);
    vmenc_cbb_add_u8(&cbb, 0);
    VMENC_ENSURE(vmenc_cbb_ok(&cbb) && cbb.len == id_chars + 1, VMENC_E_INTERNAL);
    memcpy(out_id, id, id_chars + 1);
    return VMENC_OK;
}

/* ---- wrap / unwrap ------------------------------------------------------ */

typedef struct xfer_arg {
    kek_ref ref;
    vmenc_kms_wrap_mech mech;
    const uint8_t *iv;
    const uint8_t *aad;
    size_t aad_len;
    const uint8_t *in;
    size_t in_len;
    uint8_t *out;
    size_t out_cap;
    size_t out_len;     /* result */
    bool touched;       /* the token may have written to out */
} xfer_arg;

static ck_mechanism_type_t kw_mechanism(vmenc_kms_wrap_mech m) {
    return m == VMENC_KMS_WRAP_AES_KW ? CKM_AES_KEY_WRAP : CKM_AES_KEY_WRAP_PAD;
}

static void gcm_params(const xfer_arg *a, struct ck_gcm_params *g) {
    memset(g, 0, sizeof(*g));
    g->iv_ptr = (unsigned char *)a->iv;
    g->iv_len = GCM_IV_BYTES;
    g->iv_bits = GCM_IV_BYTES * 8;
    g->aad_ptr = (unsigned char *)a->aad;
    g->aad_len = a->aad_len;
    g->tag_bits = GCM_TAG_BYTES * 8;
}

/* The exact output length of a wrap of |in_len| bytes with |m|. */
static size_t wrapped_len(vmenc_kms_wrap_mech m, size_t in_len) {
    switch (m) {
    case VMENC_KMS_WRAP_AES_KW:
        return in_len + 8;
    case VMENC_KMS_WRAP_AES_KWP:
        return (in_len + 7) / 8 * 8 + 8;
    default:
        return in_len + GCM_TAG_BYTES;
    }
}

static vmenc_status op_wrap(pkcs11_provider *pp, ck_session_handle_t s, void *varg, ck_rv_t *rv) {
    xfer_arg *a = varg;
    ck_object_handle_t kek;
    VMENC_GUARD(find_kek(pp, s, &a->ref, true, &kek, rv));
    const size_t expect = wrapped_len(a->mech, a->in_len);
    unsigned long len = (unsigned long)a->out_cap;

    if (a->mech == VMENC_KMS_WRAP_AES_GCM) {
        struct ck_gcm_params g;
        gcm_params(a, &g);
        struct ck_mechanism mech = {CKM_AES_GCM, &g, sizeof(g)};
        *rv = pp->fl->C_EncryptInit(s, &mech, kek);
        if (*rv == CKR_OK)
            *rv = pp->fl->C_Encrypt(s, (unsigned char *)a->in, a->in_len, a->out, &len);
    } else {
        /* C_WrapKey wraps keys, not bytes: carry the secret in a session-only
         * generic-secret object that lives for this one call. */
        ck_object_class_t cls = CKO_SECRET_KEY;
        ck_key_type_t kt = CKK_GENERIC_SECRET;
        unsigned char yes = 1, no = 0;
        struct ck_attribute tmpl[] = {
            {CKA_CLASS, &cls, sizeof(cls)},
            {CKA_KEY_TYPE, &kt, sizeof(kt)},
            {CKA_TOKEN, &no, 1},
            {CKA_PRIVATE, &yes, 1},
            {CKA_SENSITIVE, &yes, 1},
            {CKA_EXTRACTABLE, &yes, 1},
            {CKA_VALUE, (void *)a->in, a->in_len},
        };
        ck_object_handle_t tmp;
        *rv = pp->fl->C_CreateObject(s, tmpl, VMENC_ARRAY_LEN(tmpl), &tmp);
        if (*rv != CKR_OK)
            return vmenc_p11_status(*rv, VMENC_P11_CTX_WRAP);
        struct ck_mechanism mech = {kw_mechanism(a->mech), NULL, 0};
        *rv = pp->fl->C_WrapKey(s, &mech, kek, tmp, a->out, &len);
        ck_rv_t drv = pp->fl->C_DestroyObject(s, tmp);
        if (*rv == CKR_OK && drv != CKR_OK)
            *rv = drv; /* the session is closed then, which destroys the object */
    }
    if (*rv != CKR_OK)
        return vmenc_p11_status(*rv, VMENC_P11_CTX_WRAP);
    if (len != expect) {
        *rv = CKR_GENERAL_ERROR; /* discard the session too */
        return VMENC_E_KMS_PROTOCOL;
    }
    a->out_len = len;
    return VMENC_OK;
}

/* C_Decrypt with AES-GCM. Tokens may ask for room for the whole input
 * (SoftHSM does) although the plaintext is 16 bytes shorter; then decrypt
 * into secure memory and copy. */
static vmenc_status gcm_decrypt(pkcs11_provider *pp, ck_session_handle_t s, ck_object_handle_t kek, xfer_arg *a,
                                ck_rv_t *rv) {
    struct ck_gcm_params g;
    gcm_params(a, &g);
    struct ck_mechanism mech = {CKM_AES_GCM, &g, sizeof(g)};
    *rv = pp->fl->C_DecryptInit(s, &mech, kek);
    if (*rv != CKR_OK)
        return vmenc_p11_status(*rv, VMENC_P11_CTX_UNWRAP);
    unsigned long need = 0;
    *rv = pp->fl->C_Decrypt(s, (unsigned char *)a->in, a->in_len, NULL, &need);
    if (*rv != CKR_OK)
        return vmenc_p11_status(*rv, VMENC_P11_CTX_UNWRAP);
    if (need > VMENC_PKCS11_MAX_PAYLOAD + GCM_TAG_BYTES) {
        *rv = CKR_GENERAL_ERROR;
        return VMENC_E_KMS_PROTOCOL;
    }
    uint8_t *buf = a->out, *tmp = NULL;
    if (need > a->out_cap) {
        tmp = vmenc_secure_alloc(need);
        if (tmp == NULL) {
            *rv = CKR_HOST_MEMORY; /* the operation is still active: drop the session */
            return VMENC_E_NOMEM;
        }
        buf = tmp;
    }
    unsigned long len = need;
    a->touched = true;
    *rv = pp->fl->C_Decrypt(s, (unsigned char *)a->in, a->in_len, buf, &len);
    vmenc_status st = vmenc_p11_status(*rv, VMENC_P11_CTX_UNWRAP);
    if (st == VMENC_OK && len != a->in_len - GCM_TAG_BYTES) {
        *rv = CKR_GENERAL_ERROR;
        st = VMENC_E_KMS_PROTOCOL;
    }
    if (st == VMENC_OK) {
        if (tmp != NULL)
            memcpy(a->out, tmp, len);
        a->out_len = len;
    }
    vmenc_secure_free(tmp); /* wipes */
    return st;
}

static vmenc_status op_unwrap(pkcs11_provider *pp, ck_session_handle_t s, void *varg, ck_rv_t *rv) {
    xfer_arg *a = varg;
    ck_object_handle_t kek;
    VMENC_GUARD(find_kek(pp, s, &a->ref, true, &kek, rv));

    if (a->mech == VMENC_KMS_WRAP_AES_GCM)
        return gcm_decrypt(pp, s, kek, a, rv);

    ck_object_class_t cls = CKO_SECRET_KEY;
    ck_key_type_t kt = CKK_GENERIC_SECRET;
    unsigned char yes = 1, no = 0;
    /* No CKA_VALUE_LEN: the token derives it (SoftHSM refuses it here). */
    struct ck_attribute tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &no, 1},
        {CKA_PRIVATE, &yes, 1},
        {CKA_SENSITIVE, &no, 1},
        {CKA_EXTRACTABLE, &yes, 1},
    };
    struct ck_mechanism mech = {kw_mechanism(a->mech), NULL, 0};
    ck_object_handle_t tmp;
    *rv = pp->fl->C_UnwrapKey(s, &mech, kek, (unsigned char *)a->in, a->in_len, tmpl, VMENC_ARRAY_LEN(tmpl),
                              &tmp);
    if (*rv != CKR_OK)
        return vmenc_p11_status(*rv, VMENC_P11_CTX_UNWRAP);
    vmenc_status st = VMENC_OK;
    struct ck_attribute val = {CKA_VALUE, NULL, 0};
    *rv = pp->fl->C_GetAttributeValue(s, tmp, &val, 1);
    if (*rv != CKR_OK) {
        st = vmenc_p11_status(*rv, VMENC_P11_CTX_GENERIC);
    } else if (val.value_len == (unsigned long)-1 || val.value_len == 0 || val.value_len > a->in_len) {
        *rv = CKR_GENERAL_ERROR;
        st = VMENC_E_KMS_PROTOCOL;
    } else if (val.value_len > a->out_cap) {
        st = VMENC_E_BUFFER_TOO_SMALL;
    } else {
        val.value = a->out;
        a->touched = true;
        *rv = pp->fl->C_GetAttributeValue(s, tmp, &val, 1);
        st = vmenc_p11_status(*rv, VMENC_P11_CTX_GENERIC);
        a->out_len = val.value_len;
    }
    ck_rv_t drv = pp->fl->C_DestroyObject(s, tmp);
    if (drv != CKR_OK && *rv == CKR_OK)
        *rv = drv; /* closing the session destroys the object */
    return st;
}

/* Validates params and lengths; fills |a| (except in/out). */
static vmenc_status prepare_xfer(pkcs11_provider *pp, const char *key_id, const vmenc_kms_wrap_params *params,
                                 xfer_arg *a) {
    memset(a, 0, sizeof(*a));
    VMENC_GUARD(parse_key_id(key_id, &a->ref));
    a->mech = pp->mech;
    if (params != NULL) {
        VMENC_ENSURE(params->struct_size >= sizeof(vmenc_kms_wrap_params), VMENC_E_ABI_VERSION);
        if (params->mech != 0)
            a->mech = params->mech;
    }
    switch (a->mech) {
    case VMENC_KMS_WRAP_AES_KW:
    case VMENC_KMS_WRAP_AES_KWP:
        break;
    case VMENC_KMS_WRAP_AES_GCM:
        /* The IV must come from the caller, who owns its uniqueness. */
        VMENC_ENSURE(params != NULL && params->iv != NULL && params->iv_len == GCM_IV_BYTES,
                     VMENC_E_INVALID_ARG);
        VMENC_ENSURE(params->aad != NULL || params->aad_len == 0, VMENC_E_INVALID_ARG);
        a->iv = params->iv;
        a->aad = params->aad;
        a->aad_len = params->aad_len;
        break;
    default:
        return VMENC_E_UNSUPPORTED;
    }
    return VMENC_OK;
}

static vmenc_status pkcs11_wrap(vmenc_kms_provider *p, const char *key_id, const vmenc_kms_wrap_params *params,
                                const uint8_t *in, size_t in_len, uint32_t timeout_ms, uint8_t *out,
                                size_t out_cap, size_t *out_len) {
    pkcs11_provider *pp = from_base(p);
    ENSURE_LIVE(pp);
    VMENC_ENSURE_REF(in);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE_REF(out_len);
    xfer_arg a;
    VMENC_GUARD(prepare_xfer(pp, key_id, params, &a));
    VMENC_ENSURE(in_len > 0 && in_len <= VMENC_PKCS11_MAX_PAYLOAD, VMENC_E_BAD_LENGTH);
    /* RFC 3394 wraps whole 64-bit blocks, at least two. RFC 5649 would take
     * any length, but SoftHSM 2.6.1 zero-pads the input to a multiple of 8
     * *before* applying RFC 5649 (measured: its output for 20 bytes equals
     * RFC 5649 of those bytes plus four zeros, and a 1-byte secret unwraps
     * to 8 bytes), so an unaligned secret would come back longer than it went
     * in. Keys are whole blocks anyway; refusing other lengths keeps every
     * token's output standard RFC 5649 and every round trip exact. */
    if (a.mech == VMENC_KMS_WRAP_AES_KW)
        VMENC_ENSURE(in_len % 8 == 0 && in_len >= 16, VMENC_E_BAD_LENGTH);
    if (a.mech == VMENC_KMS_WRAP_AES_KWP)
        VMENC_ENSURE(in_len % 8 == 0, VMENC_E_BAD_LENGTH);
    VMENC_ENSURE(out_cap >= wrapped_len(a.mech, in_len), VMENC_E_BUFFER_TOO_SMALL);
    a.in = in;
    a.in_len = in_len;
    a.out = out;
    a.out_cap = out_cap;
    vmenc_status st = run_op(pp, timeout_ms, op_wrap, &a);
    if (st != VMENC_OK)
        return st;
    *out_len = a.out_len;
    return VMENC_OK;
}

static vmenc_status pkcs11_unwrap(vmenc_kms_provider *p, const char *key_id, const vmenc_kms_wrap_params *params,
                                  const uint8_t *in, size_t in_len, uint32_t timeout_ms, uint8_t *out,
                                  size_t out_cap, size_t *out_len) {
    pkcs11_provider *pp = from_base(p);
    ENSURE_LIVE(pp);
    VMENC_ENSURE_REF(in);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE_REF(out_len);
    xfer_arg a;
    VMENC_GUARD(prepare_xfer(pp, key_id, params, &a));
    VMENC_ENSURE(in_len <= VMENC_PKCS11_MAX_PAYLOAD + 16, VMENC_E_BAD_LENGTH);
    /* A blob of the wrong shape cannot be authentic. */
    if (a.mech == VMENC_KMS_WRAP_AES_GCM) {
        VMENC_ENSURE(in_len > GCM_TAG_BYTES, VMENC_E_AUTH);
        VMENC_ENSURE(out_cap >= in_len - GCM_TAG_BYTES, VMENC_E_BUFFER_TOO_SMALL);
    } else {
        VMENC_ENSURE(in_len % 8 == 0 && in_len >= (a.mech == VMENC_KMS_WRAP_AES_KW ? 24u : 16u), VMENC_E_AUTH);
    }
    a.in = in;
    a.in_len = in_len;
    a.out = out;
    a.out_cap = out_cap;
    vmenc_status st = run_op(pp, timeout_ms, op_unwrap, &a);
    if (st != VMENC_OK) {
        /* Never leave a partial or unauthenticated plaintext behind. */
        if (a.touched)
            sodium_memzero(out, out_cap < in_len ? out_cap : in_len);
        return st;
    }
    *out_len = a.out_len;
    return VMENC_OK;
}

/* ---- revoke / destroy ------------------------------------------------ */

static vmenc_status op_revoke(pkcs11_provider *pp, ck_session_handle_t s, void *varg, ck_rv_t *rv) {
    ck_object_handle_t kek;
    VMENC_GUARD(find_kek(pp, s, varg, false, &kek, rv));
    /* PKCS#11 has no revocation; switching off wrap and encrypt leaves a
     * key that can still unwrap what it wrapped and cannot wrap anything new. */
    unsigned char no = 0;
    struct ck_attribute tmpl[] = {
        {CKA_WRAP, &no, 1},
        {CKA_ENCRYPT, &no, 1},
    };
    *rv = pp->fl->C_SetAttributeValue(s, kek, tmpl, VMENC_ARRAY_LEN(tmpl));
    return vmenc_p11_status(*rv, VMENC_P11_CTX_GENERIC);
}

static vmenc_status op_destroy(pkcs11_provider *pp, ck_session_handle_t s, void *varg, ck_rv_t *rv) {
    ck_object_handle_t kek;
    VMENC_GUARD(find_kek(pp, s, varg, false, &kek, rv));
    *rv = pp->fl->C_DestroyObject(s, kek);
    return vmenc_p11_status(*rv, VMENC_P11_CTX_GENERIC);
}

static vmenc_status pkcs11_revoke_kek(vmenc_kms_provider *p, const char *key_id, uint32_t timeout_ms) {
    pkcs11_provider *pp = from_base(p);
    ENSURE_LIVE(pp);
    kek_ref ref;
    VMENC_GUARD(parse_key_id(key_id, &ref));
    return run_op(pp, timeout_ms, op_revoke, &ref);
}

static vmenc_status pkcs11_destroy_kek(vmenc_kms_provider *p, const char *key_id, uint32_t timeout_ms) {
    pkcs11_provider *pp = from_base(p);
    ENSURE_LIVE(pp);
    kek_ref ref;
    VMENC_GUARD(parse_key_id(key_id, &ref));
    return run_op(pp, timeout_ms, op_destroy, &ref);
}

static vmenc_status pkcs11_get_kek(vmenc_kms_provider *p, const char *key_id, uint32_t timeout_ms,
                                   vmenc_kek **out) {
    return VMENC_E_UNSUPPORTED; /* the KEK never leaves the token */
}

/* ---- health ------------------------------------------------------------ */

static vmenc_status pkcs11_health(vmenc_kms_provider *p, uint32_t timeout_ms) {
    pkcs11_provider *pp = from_base(p);
    ENSURE_LIVE(pp);
    struct ck_token_info ti;
    ck_rv_t rv = pp->fl->C_GetTokenInfo(pp->slot, &ti);
    if (rv != CKR_OK)
        return vmenc_p11_status(rv, VMENC_P11_CTX_GENERIC);
    if (ti.flags & CKF_USER_PIN_LOCKED)
        return VMENC_E_PIN_LOCKED;
    vmenc_status st = recover(pp); /* checks the anchor's login; logs in again if needed */
    return st;
}

/* ---- free / new -------------------------------------------------------- */

static void pkcs11_free(vmenc_kms_provider *p) {
    pkcs11_provider *pp = from_base(p);
    if (pp == NULL)
        return;
    if (pp->fl != NULL && pp->pid == getpid()) {
        for (size_t i = 0; i < pp->num_idle; i++)
            (void)pp->fl->C_CloseSession(pp->idle[i]);
        if (pp->anchor_open) {
            /* The login belongs to the whole process: log out only when no
             * other vmenc provider shares it; otherwise closing our sessions
             * is all (the login ends with the process's last session). */
            if (vmenc_p11_module_is_sole_user(&pp->mod))
                (void)pp->fl->C_Logout(pp->anchor);
            (void)pp->fl->C_CloseSession(pp->anchor);
        }
        vmenc_p11_module_close(&pp->mod);
    }
    if (pp->pin != NULL)
        (void)sodium_mprotect_readwrite(pp->pin->bytes);
    vmenc_secret_free(pp->pin);
    pthread_cond_destroy(&pp->pool_cv);
    pthread_mutex_destroy(&pp->pool_mu);
    pthread_mutex_destroy(&pp->login_mu);
    free(pp->idle);
    free(pp->key_label);
    sodium_memzero(pp, sizeof(*pp));
    free(pp);
}

/* Finds the slot whose token carries |label| (blank-padded to 32 bytes). */
static vmenc_status find_slot(struct ck_function_list *fl, const char *label, ck_slot_id_t *out) {
    unsigned char want[32];
    memset(want, ' ', sizeof(want));
    memcpy(want, label, strlen(label));
    unsigned long n = 0;
    ck_rv_t rv = fl->C_GetSlotList(1, NULL, &n);
    if (rv != CKR_OK)
        return vmenc_p11_status(rv, VMENC_P11_CTX_GENERIC);
    if (n == 0)
        return VMENC_E_TOKEN_NOT_FOUND;
    ck_slot_id_t *slots = calloc(n, sizeof(*slots));
    if (slots == NULL)
        return VMENC_E_NOMEM;
    rv = fl->C_GetSlotList(1, slots, &n);
    vmenc_status st = rv == CKR_OK ? VMENC_E_TOKEN_NOT_FOUND : vmenc_p11_status(rv, VMENC_P11_CTX_GENERIC);
    size_t matches = 0;
    for (unsigned long i = 0; rv == CKR_OK && i < n; i++) {
        struct ck_token_info ti;
        if (fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        if (!(ti.flags & CKF_TOKEN_INITIALIZED))
            continue;
        if (memcmp(ti.label, want, sizeof(want)) == 0) {
            if (matches++ == 0)
                *out = slots[i];
            st = VMENC_OK;
        }
    }
    free(slots);
    /* Two tokens with one label: refuse rather than pick one. */
    if (matches > 1)
        return VMENC_E_KMS_REFUSED;
    return st;
}

static vmenc_status check_token_label(const char *label) {
    VMENC_ENSURE_REF(label);
    size_t n = strnlen(label, VMENC_PKCS11_TOKEN_LABEL_MAX + 1);
    VMENC_ENSURE(n > 0 && n <= VMENC_PKCS11_TOKEN_LABEL_MAX, VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

vmenc_status vmenc_pkcs11_provider_new(const vmenc_pkcs11_config *cfg, vmenc_kms_provider **out) {
    VMENC_ENSURE_REF(cfg);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(cfg->struct_size >= sizeof(vmenc_pkcs11_config), VMENC_E_ABI_VERSION);
    VMENC_ENSURE_REF(cfg->module_path);
    VMENC_GUARD(check_token_label(cfg->token_label));
    VMENC_ENSURE(cfg->pin != NULL && cfg->pin_len > 0 && cfg->pin_len <= 256, VMENC_E_INVALID_ARG);
    vmenc_kms_wrap_mech mech = cfg->mechanism == 0 ? VMENC_KMS_WRAP_AES_KWP : cfg->mechanism;
    VMENC_ENSURE(mech == VMENC_KMS_WRAP_AES_KWP || mech == VMENC_KMS_WRAP_AES_KW || mech == VMENC_KMS_WRAP_AES_GCM,
                 VMENC_E_INVALID_ARG);
    const char *key_label = cfg->key_label != NULL ? cfg->key_label : DEFAULT_KEY_LABEL;
    VMENC_GUARD(check_key_label(key_label));
    size_t max_sessions = cfg->max_sessions == 0 ? VMENC_PKCS11_DEFAULT_SESSIONS : cfg->max_sessions;
    VMENC_ENSURE(max_sessions <= VMENC_PKCS11_MAX_SESSIONS, VMENC_E_INVALID_ARG);
    VMENC_ENSURE((cfg->flags & ~(uint32_t)(VMENC_PKCS11_FORGET_PIN | VMENC_PKCS11_ALLOW_EXTRACTABLE_KEK)) == 0,
                 VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());

    pkcs11_provider *pp = calloc(1, sizeof(*pp));
    if (pp == NULL)
        return VMENC_E_NOMEM;
    pp->base.struct_size = sizeof(pp->base);
    pp->base.ops = &pkcs11_ops;
    pthread_mutex_init(&pp->login_mu, NULL);
    pthread_mutex_init(&pp->pool_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pp->pool_cv, &ca);
    pthread_condattr_destroy(&ca);
    pp->pid = getpid();
    pp->mech = mech;
    pp->flags = cfg->flags;
    pp->max_sessions = max_sessions;
    pp->idle = calloc(max_sessions, sizeof(*pp->idle));
    pp->key_label = strdup(key_label);
    vmenc_status st = VMENC_E_NOMEM;
    if (pp->idle == NULL || pp->key_label == NULL)
        goto fail;
    VMENC_GUARD_GOTO(st, vmenc_secret_from(cfg->pin, cfg->pin_len, &pp->pin), fail);
    (void)sodium_mprotect_noaccess(pp->pin->bytes);

    VMENC_GUARD_GOTO(st, vmenc_p11_module_open(cfg->module_path, &pp->mod), fail);
    pp->fl = pp->mod.fl;
    VMENC_GUARD_GOTO(st, find_slot(pp->fl, cfg->token_label, &pp->slot), fail);
    bool relogged;
    pthread_mutex_lock(&pp->login_mu);
    st = ensure_login_locked(pp, &relogged);
    pthread_mutex_unlock(&pp->login_mu);
    if (st != VMENC_OK)
        goto fail;
    if (pp->flags & VMENC_PKCS11_FORGET_PIN) {
        (void)sodium_mprotect_readwrite(pp->pin->bytes);
        vmenc_secret_free(pp->pin);
        pp->pin = NULL;
    }
    *out = &pp->base;
    return VMENC_OK;
fail:
    pkcs11_free(&pp->base);
    return st;
}

vmenc_status vmenc_pkcs11_provider_mechanism(const vmenc_kms_provider *p, vmenc_kms_wrap_mech *out) {
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(p != NULL && p->ops == &pkcs11_ops, VMENC_E_INVALID_ARG);
    *out = ((const pkcs11_provider *)p)->mech;
    return VMENC_OK;
}

static const vmenc_kms_provider_ops pkcs11_ops = {
    .struct_size = sizeof(vmenc_kms_provider_ops),
    .abi_version = VMENC_KMS_PROVIDER_ABI_VERSION,
    .type_name = "pkcs11",
    .create_kek = pkcs11_create_kek,
    .get_kek = pkcs11_get_kek,
    .wrap = pkcs11_wrap,
    .unwrap = pkcs11_unwrap,
    .revoke_kek = pkcs11_revoke_kek,
    .destroy_kek = pkcs11_destroy_kek,
    .health = pkcs11_health,
    .free = pkcs11_free,
};
