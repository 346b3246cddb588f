/*
 * tests/support/fault_provider.c - see fault_provider.h.
 */
#include "fault_provider.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keys/keys_internal.h"
#include "vmenc/core.h"
#include "vmenc/keys.h"

#define MAX_KEYS 4096

typedef struct stored_key {
    char id[40];
    uint8_t key[32];
    int state; /* 1 active, 2 revoked, 3 destroyed */
} stored_key;

struct fault_store {
    pthread_mutex_t mu;
    stored_key keys[MAX_KEYS];
    size_t num;
    uint64_t next_id;
};

struct fault_provider {
    vmenc_kms_provider base;
    pthread_mutex_t mu;
    fault_store *store;
    bool remote;
    fault_mode mode;
    uint32_t delay_ms;
    fault_counts counts;
    vmenc_kms_provider *inner;   /* proxy mode: forward to this provider */
    vmenc_kms_provider_ops proxy_ops;
};

fault_store *fault_store_new(void) {
    fault_store *s = calloc(1, sizeof(*s));
    if (s != NULL)
        pthread_mutex_init(&s->mu, NULL);
    return s;
}

void fault_store_free(fault_store *s) {
    if (s == NULL)
        return;
    vmenc_memzero(s->keys, sizeof(s->keys));
    pthread_mutex_destroy(&s->mu);
    free(s);
}

size_t fault_store_num_keys(fault_store *s) {
    pthread_mutex_lock(&s->mu);
    size_t n = 0;
    for (size_t i = 0; i < s->num; i++)
        n += s->keys[i].state != 3;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static const vmenc_kms_provider_ops k_fault_ops;
static const vmenc_kms_provider_ops k_fault_remote_ops;

static vmenc_status f_health(vmenc_kms_provider *p, uint32_t t);

fault_provider *as_fault(vmenc_kms_provider *p) {
    if (p == NULL || p->ops == NULL || p->ops->health != f_health)
        return NULL;
    return (fault_provider *)p;
}

vmenc_kms_provider *fault_base(fault_provider *f) { return &f->base; }

void fault_set_mode(fault_provider *f, fault_mode mode) {
    pthread_mutex_lock(&f->mu);
    f->mode = mode;
    pthread_mutex_unlock(&f->mu);
}

void fault_set_delay_ms(fault_provider *f, uint32_t ms) {
    pthread_mutex_lock(&f->mu);
    f->delay_ms = ms;
    pthread_mutex_unlock(&f->mu);
}

void fault_get_counts(fault_provider *f, fault_counts *out) {
    pthread_mutex_lock(&f->mu);
    *out = f->counts;
    pthread_mutex_unlock(&f->mu);
}

void fault_reset_counts(fault_provider *f) {
    pthread_mutex_lock(&f->mu);
    memset(&f->counts, 0, sizeof(f->counts));
    pthread_mutex_unlock(&f->mu);
}

static void sleep_ms(uint32_t ms) {
    struct timespec ts = {ms / 1000u, (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* enter counts the call and applies the generic faults. Returns VMENC_OK
 * to go on, or the status to return; |*mode| gets the mode in force. */
static vmenc_status enter(fault_provider *f, uint64_t *counter, uint32_t timeout_ms, fault_mode *mode) {
    pthread_mutex_lock(&f->mu);
    (*counter)++;
    uint64_t n = ++f->counts.total;
    fault_mode m = f->mode;
    uint32_t delay = f->delay_ms;
    pthread_mutex_unlock(&f->mu);
    *mode = m;
    switch (m) {
    case FAULT_DOWN:
        return VMENC_E_KMS_UNAVAILABLE;
    case FAULT_TIMEOUT:
        return VMENC_E_KMS_TIMEOUT;
    case FAULT_REFUSE:
        return VMENC_E_KMS_REFUSED;
    case FAULT_FLAPPING:
        return (n % 2 == 1) ? VMENC_E_KMS_UNAVAILABLE : VMENC_OK;
    case FAULT_SLOW:
        if (delay > timeout_ms) {
            sleep_ms(timeout_ms);
            return VMENC_E_KMS_TIMEOUT;
        }
        sleep_ms(delay);
        return VMENC_OK;
    default:
        return VMENC_OK;
    }
}

static stored_key *find(fault_store *s, const char *id) {
    for (size_t i = 0; i < s->num; i++)
        if (strcmp(s->keys[i].id, id) == 0)
            return &s->keys[i];
    return NULL;
}

static vmenc_status f_create(vmenc_kms_provider *p, const char *name, uint32_t t, char *out_id, size_t cap) {
    fault_provider *f = as_fault(p);
    fault_mode m;
    vmenc_status st = enter(f, &f->counts.create, t, &m);
    if (st != VMENC_OK)
        return st;
    if (m == FAULT_CORRUPT) {
        memset(out_id, 'x', cap); /* no terminator */
        return VMENC_OK;
    }
    if (f->inner != NULL)
        return vmenc_kms_provider_create_kek(f->inner, name, t, out_id, cap);
    fault_store *s = f->store;
    pthread_mutex_lock(&s->mu);
    if (s->num == MAX_KEYS) {
        pthread_mutex_unlock(&s->mu);
        return VMENC_E_LIMIT;
    }
    stored_key *k = &s->keys[s->num++];
    snprintf(k->id, sizeof(k->id), "fault-key-%llu", (unsigned long long)++s->next_id);
    if (vmenc_random_bytes(k->key, sizeof(k->key)) != VMENC_OK) {
        s->num--;
        pthread_mutex_unlock(&s->mu);
        return VMENC_E_RANDOM;
    }
    k->state = 1;
    if (strlen(k->id) + 1 > cap) {
        pthread_mutex_unlock(&s->mu);
        return VMENC_E_BUFFER_TOO_SMALL;
    }
    memcpy(out_id, k->id, strlen(k->id) + 1);
    pthread_mutex_unlock(&s->mu);
    return VMENC_OK;
}

/* key_bytes copies the active key |id| out of the store. */
static vmenc_status key_bytes(fault_store *s, const char *id, uint8_t out[32]) {
    pthread_mutex_lock(&s->mu);
    stored_key *k = find(s, id);
    vmenc_status st = VMENC_OK;
    if (k == NULL)
        st = VMENC_E_KEY_NOT_FOUND;
    else if (k->state != 1)
        st = VMENC_E_KEY_STATE;
    else
        memcpy(out, k->key, 32);
    pthread_mutex_unlock(&s->mu);
    return st;
}

static vmenc_status f_get(vmenc_kms_provider *p, const char *id, uint32_t t, vmenc_kek **out) {
    fault_provider *f = as_fault(p);
    fault_mode m;
    vmenc_status st = enter(f, &f->counts.get, t, &m);
    if (st != VMENC_OK)
        return st;
    if (m == FAULT_CORRUPT)
        return VMENC_OK; /* claims success, hands out nothing */
    uint8_t key[32];
    if (f->inner != NULL) {
        vmenc_kek *k = NULL;
        st = vmenc_kms_provider_get_kek(f->inner, id, t, &k);
        if (st != VMENC_OK || m != FAULT_WRONG_KEY) {
            if (st == VMENC_OK)
                *out = k;
            return st;
        }
        memcpy(key, vmenc_kek_bytes_internal(k), sizeof(key));
        vmenc_kek_free(k);
    } else {
        st = key_bytes(f->store, id, key);
    }
    if (st == VMENC_OK) {
        if (m == FAULT_WRONG_KEY)
            key[0] ^= 0x01;
        st = vmenc_kek_new_from_bytes(key, sizeof(key), out);
    }
    vmenc_memzero(key, sizeof(key));
    return st;
}

static vmenc_status gcm(bool enc, const uint8_t key[32], const vmenc_kms_wrap_params *pr, const uint8_t *in,
                        size_t in_len, uint8_t *out, size_t cap, size_t *out_len) {
    if (!enc && in_len < 16)
        return VMENC_E_AUTH;
    size_t n = enc ? in_len + 16 : in_len - 16;
    if (cap < n)
        return VMENC_E_BUFFER_TOO_SMALL;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, ok = c != NULL;
    ok = ok && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, pr->iv, enc ? 1 : 0);
    if (pr->aad_len)
        ok = ok && EVP_CipherUpdate(c, NULL, &len, pr->aad, (int)pr->aad_len);
    ok = ok && EVP_CipherUpdate(c, out, &len, in, (int)(enc ? in_len : in_len - 16));
    if (!enc)
        ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)(in + in_len - 16));
    ok = ok && EVP_CipherFinal_ex(c, out + len, &len);
    if (enc)
        ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out + in_len);
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        vmenc_memzero(out, cap);
        return enc ? VMENC_E_CRYPTO : VMENC_E_AUTH;
    }
    *out_len = n;
    return VMENC_OK;
}

static vmenc_status f_wrap_common(vmenc_kms_provider *p, bool enc, const char *id, const vmenc_kms_wrap_params *pr,
                                  const uint8_t *in, size_t in_len, uint32_t t, uint8_t *out, size_t cap,
                                  size_t *out_len) {
    fault_provider *f = as_fault(p);
    fault_mode m;
    vmenc_status st = enter(f, enc ? &f->counts.wrap : &f->counts.unwrap, t, &m);
    if (st != VMENC_OK)
        return st;
    if (m == FAULT_CORRUPT) {
        *out_len = cap + 1; /* impossible length */
        return VMENC_OK;
    }
    if (f->inner != NULL && !(m == FAULT_WRONG_KEY && !enc))
        return enc ? vmenc_kms_provider_wrap(f->inner, id, pr, in, in_len, t, out, cap, out_len)
                   : vmenc_kms_provider_unwrap(f->inner, id, pr, in, in_len, t, out, cap, out_len);
    uint8_t key[32] = {0};
    if (f->inner == NULL) {
        st = key_bytes(f->store, id, key);
        if (st != VMENC_OK)
            return st;
    }
    if (m == FAULT_WRONG_KEY && !enc) {
        /* A lying HSM: "decrypts" to random bytes of a plausible length. */
        size_t n = pr->mech == VMENC_KMS_WRAP_AES_GCM ? in_len - 16 : in_len - 8;
        vmenc_memzero(key, sizeof(key));
        if (n > cap)
            return VMENC_E_BUFFER_TOO_SMALL;
        st = vmenc_random_bytes(out, n);
        if (st != VMENC_OK)
            return st;
        *out_len = n;
        return VMENC_OK;
    }
    if (pr->mech == VMENC_KMS_WRAP_AES_GCM)
        st = gcm(enc, key, pr, in, in_len, out, cap, out_len);
    else if (pr->mech == VMENC_KMS_WRAP_AES_KWP)
        st = enc ? vmenc_aes_kwp_wrap(key, 32, in, in_len, out, cap, out_len)
                 : vmenc_aes_kwp_unwrap(key, 32, in, in_len, out, cap, out_len);
    else
        st = VMENC_E_UNSUPPORTED;
    vmenc_memzero(key, sizeof(key));
    return st;
}

static vmenc_status f_wrap(vmenc_kms_provider *p, const char *id, const vmenc_kms_wrap_params *pr, const uint8_t *in,
                           size_t in_len, uint32_t t, uint8_t *out, size_t cap, size_t *out_len) {
    return f_wrap_common(p, true, id, pr, in, in_len, t, out, cap, out_len);
}

static vmenc_status f_unwrap(vmenc_kms_provider *p, const char *id, const vmenc_kms_wrap_params *pr,
                             const uint8_t *in, size_t in_len, uint32_t t, uint8_t *out, size_t cap,
                             size_t *out_len) {
    return f_wrap_common(p, false, id, pr, in, in_len, t, out, cap, out_len);
}

static vmenc_status set_state(fault_provider *f, uint64_t *counter, const char *id, uint32_t t, int state) {
    fault_mode m;
    vmenc_status st = enter(f, counter, t, &m);
    if (st != VMENC_OK)
        return st;
    if (f->inner != NULL)
        return state == 3 ? vmenc_kms_provider_destroy_kek(f->inner, id, t)
                          : vmenc_kms_provider_revoke_kek(f->inner, id, t);
    pthread_mutex_lock(&f->store->mu);
    stored_key *k = find(f->store, id);
    if (k == NULL) {
        st = VMENC_E_KEY_NOT_FOUND;
    } else {
        k->state = state;
        if (state == 3)
            vmenc_memzero(k->key, sizeof(k->key));
    }
    pthread_mutex_unlock(&f->store->mu);
    return st;
}

static vmenc_status f_revoke(vmenc_kms_provider *p, const char *id, uint32_t t) {
    fault_provider *f = as_fault(p);
    return set_state(f, &f->counts.revoke, id, t, 2);
}

static vmenc_status f_destroy(vmenc_kms_provider *p, const char *id, uint32_t t) {
    fault_provider *f = as_fault(p);
    return set_state(f, &f->counts.destroy, id, t, 3);
}

static vmenc_status f_health(vmenc_kms_provider *p, uint32_t t) {
    fault_provider *f = as_fault(p);
    fault_mode m;
    vmenc_status st = enter(f, &f->counts.health, t, &m);
    if (st == VMENC_OK && f->inner != NULL)
        st = vmenc_kms_provider_health(f->inner, t);
    return st;
}

static void f_free(vmenc_kms_provider *p) {
    fault_provider *f = as_fault(p);
    if (f == NULL)
        return;
    vmenc_kms_provider_free(f->inner);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static const vmenc_kms_provider_ops k_fault_ops = {
    .struct_size = sizeof(vmenc_kms_provider_ops),
    .abi_version = VMENC_KMS_PROVIDER_ABI_VERSION,
    .type_name = "fault",
    .create_kek = f_create,
    .get_kek = f_get,
    .revoke_kek = f_revoke,
    .destroy_kek = f_destroy,
    .health = f_health,
    .free = f_free,
};

static const vmenc_kms_provider_ops k_fault_remote_ops = {
    .struct_size = sizeof(vmenc_kms_provider_ops),
    .abi_version = VMENC_KMS_PROVIDER_ABI_VERSION,
    .type_name = "fault",
    .create_kek = f_create,
    .get_kek = NULL, /* the KEK never leaves */
    .wrap = f_wrap,
    .unwrap = f_unwrap,
    .revoke_kek = f_revoke,
    .destroy_kek = f_destroy,
    .health = f_health,
    .free = f_free,
};

vmenc_status fault_provider_new(fault_store *store, bool remote, vmenc_kms_provider **out) {
    if (store == NULL || out == NULL)
        return VMENC_E_INVALID_ARG;
    fault_provider *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return VMENC_E_NOMEM;
    f->base.struct_size = sizeof(f->base);
    f->base.ops = remote ? &k_fault_remote_ops : &k_fault_ops;
    pthread_mutex_init(&f->mu, NULL);
    f->store = store;
    f->remote = remote;
    *out = &f->base;
    return VMENC_OK;
}

vmenc_status fault_proxy_new(vmenc_kms_provider *inner, vmenc_kms_provider **out) {
    if (vmenc_kms_provider_check(inner) != VMENC_OK || out == NULL)
        return VMENC_E_INVALID_ARG;
    fault_provider *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return VMENC_E_NOMEM;
    /* Same type name and the same set of operations as the inner provider,
     * so it can share a cluster with unwrapped providers of that type. */
    f->proxy_ops = k_fault_remote_ops;
    f->proxy_ops.type_name = inner->ops->type_name;
    if (inner->ops->get_kek != NULL)
        f->proxy_ops.get_kek = f_get;
    if (inner->ops->wrap == NULL)
        f->proxy_ops.wrap = NULL;
    if (inner->ops->unwrap == NULL)
        f->proxy_ops.unwrap = NULL;
    f->base.struct_size = sizeof(f->base);
    f->base.ops = &f->proxy_ops;
    pthread_mutex_init(&f->mu, NULL);
    f->inner = inner;
    *out = &f->base;
    return VMENC_OK;
}

vmenc_status fault_provider_factory(void *arg, const vmenc_kms_endpoint_config *cfg, vmenc_kms_provider **out) {
    bool remote = false;
    if (cfg->options != NULL)
        for (size_t i = 0; cfg->options[i] != NULL; i++)
            if (strcmp(cfg->options[i], "remote=1") == 0)
                remote = true;
    return fault_provider_new(arg, remote, out);
}
