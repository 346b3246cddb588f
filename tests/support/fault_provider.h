/*
 * tests/support/fault_provider.h - a KMS provider for tests that can be told
 * to misbehave: down, slow, flapping, serving a wrong key, answering
 * garbage, refusing; it counts every call. Several fault providers may
 * share one fault_store so they act as replicas of one cluster. With
 * |remote| set it keeps its KEKs (no get_kek) and wraps/unwraps itself
 * (AES-KWP / AES-256-GCM), like an HSM. As a proxy it puts the same faults
 * in front of a real provider. Test code only, never in the library.
 */
#ifndef VMENC_TESTS_FAULT_PROVIDER_H
#define VMENC_TESTS_FAULT_PROVIDER_H

#include <stdbool.h>
#include <stdint.h>

#include "vmenc/kms.h"

typedef enum fault_mode {
    FAULT_NONE = 0,      /* behave */
    FAULT_DOWN,          /* every call: VMENC_E_KMS_UNAVAILABLE */
    FAULT_SLOW,          /* sleep delay_ms first (VMENC_E_KMS_TIMEOUT if that exceeds the time allowed) */
    FAULT_FLAPPING,      /* odd-numbered calls fail with VMENC_E_KMS_UNAVAILABLE */
    FAULT_WRONG_KEY,     /* get_kek serves other bytes; unwrap returns random plaintext */
    FAULT_CORRUPT,       /* answers break the provider contract (bad IDs, lengths, NULL objects) */
    FAULT_REFUSE,        /* every call: VMENC_E_KMS_REFUSED (a definite answer) */
    FAULT_TIMEOUT        /* every call: VMENC_E_KMS_TIMEOUT without waiting */
} fault_mode;

typedef struct fault_store fault_store;
typedef struct fault_provider fault_provider;

/* Call counters, per operation. */
typedef struct fault_counts {
    uint64_t create, get, wrap, unwrap, revoke, destroy, health, total;
} fault_counts;

fault_store *fault_store_new(void);
void fault_store_free(fault_store *s);
/* fault_store_num_keys: keys held (destroyed ones excluded). */
size_t fault_store_num_keys(fault_store *s);

/* fault_provider_new makes a provider over |store| (which must outlive it).
 * The provider's type name is "fault". */
vmenc_status fault_provider_new(fault_store *store, bool remote, vmenc_kms_provider **out);
/* fault_proxy_new wraps |inner| (a real provider; ownership moves to the
 * proxy on success): calls pass through to it unless a fault is set, and
 * the proxy has |inner|'s type name, so it can stand in a cluster beside
 * unwrapped providers of that type (e.g. a KMIP server made to look down). */
vmenc_status fault_proxy_new(vmenc_kms_provider *inner, vmenc_kms_provider **out);
/* as_fault returns the fault provider behind |p| (NULL if not one). */
fault_provider *as_fault(vmenc_kms_provider *p);
/* fault_base returns the provider base of |f|. */
vmenc_kms_provider *fault_base(fault_provider *f);
void fault_set_mode(fault_provider *f, fault_mode mode);
void fault_set_delay_ms(fault_provider *f, uint32_t ms);
void fault_get_counts(fault_provider *f, fault_counts *out);
void fault_reset_counts(fault_provider *f);

/* The factory for vmenc_keymgr_register_provider_type: |arg| is the
 * fault_store; option "remote=1" makes a remote one. */
vmenc_status fault_provider_factory(void *arg, const vmenc_kms_endpoint_config *cfg, vmenc_kms_provider **out);

#endif /* VMENC_TESTS_FAULT_PROVIDER_H */
