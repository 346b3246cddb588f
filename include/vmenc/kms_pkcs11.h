/*
 * vmenc/kms_pkcs11.h - the PKCS#11 key provider: the KEK is a non-extractable
 * AES key inside a token (an HSM, or SoftHSM2 for tests) and DEKs are wrapped
 * and unwrapped *inside* the token. The KEK never enters host memory, so
 * get_kek is not offered (VMENC_E_UNSUPPORTED); the key manager uses the
 * provider's remote wrap/unwrap instead.
 *
 * KEK IDs. create_kek returns "id:<hex>", the hex of a random 16-byte CKA_ID
 * the token object carries. Other ID strings are accepted too:
 *   "id:<hex>"       the AES secret key whose CKA_ID is these bytes (1..64);
 *   "label:<text>"   the AES secret key whose CKA_LABEL is <text>;
 *   "<text>"         anything else is a CKA_LABEL as well (so a key an HSM
 *                    administrator made, e.g. with pkcs11-tool --label kek,
 *                    is simply "kek").
 * The ID must name exactly one key: none gives VMENC_E_KEY_NOT_FOUND, two or
 * more VMENC_E_KMS_REFUSED (an ambiguous label is never resolved by guessing).
 * Unless VMENC_PKCS11_ALLOW_EXTRACTABLE_KEK is set, a key that is extractable
 * or not sensitive is refused with VMENC_E_KEY_STATE.
 *
 * Errors: module missing or not loadable VMENC_E_KMS_UNAVAILABLE; a file that
 * is no PKCS#11 module VMENC_E_KMS_PROTOCOL; no token with the label
 * VMENC_E_TOKEN_NOT_FOUND; wrong PIN VMENC_E_KMS_AUTH; PIN locked
 * VMENC_E_PIN_LOCKED; a tampered or foreign wrapped blob VMENC_E_AUTH; a key
 * whose use for the operation is switched off (see revoke_kek) VMENC_E_KEY_STATE.
 *
 * Thread safety: a provider may be used from many threads at once (not from
 * a fork()ed child: there every operation fails with VMENC_E_BAD_STATE). It keeps
 * a pool of token sessions (max_sessions) plus one session that holds the
 * login; each operation borrows a session. |timeout_ms| bounds the wait for a
 * free session (VMENC_E_KMS_TIMEOUT); a PKCS#11 call already running cannot
 * be interrupted.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_KMS_PKCS11_H
#define VMENC_KMS_PKCS11_H

#include "vmenc/common.h"
#include "vmenc/kms.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMENC_PKCS11_TOKEN_LABEL_MAX 32u   /* bytes; PKCS#11 pads labels to 32 */
#define VMENC_PKCS11_KEY_ID_BYTES 16u      /* CKA_ID of a KEK made by create_kek */
#define VMENC_PKCS11_DEFAULT_SESSIONS 4u
#define VMENC_PKCS11_MAX_SESSIONS 64u
#define VMENC_PKCS11_MAX_PAYLOAD 4096u     /* largest secret wrap/unwrap accepts */

/* Flags for vmenc_pkcs11_config.flags. */
/* Wipe the PIN right after the first login instead of keeping it (in secure
 * memory, no-access protected while unused) for re-login after the token
 * drops our sessions. Without it a lost login makes every call fail with
 * VMENC_E_KMS_AUTH until the provider is re-created. */
#define VMENC_PKCS11_FORGET_PIN (1u << 0)
/* Accept KEKs that are extractable or not sensitive (only for migration from
 * a legacy token; such a key may have left the token). */
#define VMENC_PKCS11_ALLOW_EXTRACTABLE_KEK (1u << 1)

typedef struct vmenc_pkcs11_config {
    uint32_t struct_size;           /* sizeof(vmenc_pkcs11_config) */
    const char *module_path;        /* absolute path of the PKCS#11 module (.so) */
    const char *token_label;        /* token label, 1..32 bytes (trailing blanks ignored) */
    const uint8_t *pin;             /* user PIN (copied to secure memory) */
    size_t pin_len;
    vmenc_kms_wrap_mech mechanism;  /* used when wrap params are NULL or mech 0; 0 = KWP */
    const char *key_label;          /* CKA_LABEL of KEKs created without a name; NULL = "vmenc-kek" */
    uint32_t max_sessions;          /* operation sessions; 0 = VMENC_PKCS11_DEFAULT_SESSIONS */
    uint32_t flags;                 /* VMENC_PKCS11_* flags */
} vmenc_pkcs11_config;

/*
 * vmenc_pkcs11_provider_new loads the module |cfg->module_path| (dlopen,
 * C_GetFunctionList, C_Initialize with CKF_OS_LOCKING_OK; a module the
 * process already initialised is shared, and finalised only by whoever
 * initialised it), finds the token by label, opens a session and logs in as
 * the user with |cfg->pin|. The caller may wipe its PIN copy on return.
 * Fails with VMENC_E_INVALID_ARG (bad config), VMENC_E_KMS_UNAVAILABLE,
 * VMENC_E_KMS_PROTOCOL, VMENC_E_TOKEN_NOT_FOUND, VMENC_E_KMS_AUTH,
 * VMENC_E_PIN_LOCKED or VMENC_E_NOMEM; |*out| is untouched then. Release the
 * provider with vmenc_kms_provider_free (closes sessions, logs out when no
 * other vmenc provider shares the module, finalises the module if this
 * provider initialised it, unloads it, wipes the PIN).
 */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_pkcs11_provider_new(const vmenc_pkcs11_config *cfg,
                                                                  vmenc_kms_provider **out);

/*
 * vmenc_pkcs11_provider_new_from_endpoint makes a provider from a generic
 * endpoint configuration: |cfg->address| is the module path, |cfg->secret|
 * the PIN, and |cfg->options| (NULL-terminated "key=value" strings):
 *   token_label=LABEL            required
 *   mechanism=kwp|kw|gcm         default mechanism (kwp)
 *   key_label=LABEL              label of KEKs created without a name
 *   max_sessions=N               1..VMENC_PKCS11_MAX_SESSIONS
 *   forget_pin=0|1               VMENC_PKCS11_FORGET_PIN
 *   allow_extractable_kek=0|1    VMENC_PKCS11_ALLOW_EXTRACTABLE_KEK
 * Unknown or repeated keys fail with VMENC_E_INVALID_ARG (a typo must not
 * silently fall back to a default). Otherwise as vmenc_pkcs11_provider_new.
 */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_pkcs11_provider_new_from_endpoint(
    const vmenc_kms_endpoint_config *cfg, vmenc_kms_provider **out);

/*
 * vmenc_pkcs11_provider_mechanism writes the mechanism |p| uses when wrap
 * params name none. VMENC_E_INVALID_ARG if |p| is not a PKCS#11 provider.
 */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_pkcs11_provider_mechanism(const vmenc_kms_provider *p,
                                                                        vmenc_kms_wrap_mech *out);

#ifdef __cplusplus
}
#endif
#endif /* VMENC_KMS_PKCS11_H */
