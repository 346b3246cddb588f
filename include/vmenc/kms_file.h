/*
 * vmenc/kms_file.h - the "file" key provider: an encrypted local keystore,
 * the embedded default (vSphere's Native Key Provider plays this role).
 *
 * One file holds every KEK, encrypted with XChaCha20-Poly1305 under a key
 * that Argon2id derives from a passphrase; the file's header (salt, Argon2id
 * limits, nonce) is authenticated as additional data. Each change rewrites
 * the file atomically (temporary file, fsync, rename, fsync of the
 * directory) while holding an exclusive flock on "<path>.lock", after
 * re-reading the file under that lock, so several processes may add keys at
 * once and a crash at any instant leaves either the old or the new file,
 * both valid. Readers take no lock: they always see a complete file.
 *
 * Key IDs are random UUIDs. The decrypted key table lives only in secure
 * memory. A destroyed key leaves a tombstone (its ID, no key bytes), so it
 * cannot come back from a backup by accident.
 *
 * Endpoint options (vmenc_kms_endpoint_config.options) for type "file":
 *   create=1             create an empty keystore if the file is missing
 *   kdf_ops=N            Argon2id passes for files this provider writes (default 3)
 *   kdf_mem_kib=N        Argon2id memory in KiB for files it writes (default 65536)
 *   max_kdf_ops=N        largest passes accepted when opening (default 16)
 *   max_kdf_mem_kib=N    largest memory accepted when opening (default 1048576)
 * The address is the keystore path; the secret is the passphrase.
 *
 * Thread safety: a file provider may be used from many threads at once.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_KMS_FILE_H
#define VMENC_KMS_FILE_H

#include "vmenc/kms.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMENC_KMS_FILE_CREATE 0x1u /* create an empty keystore if missing */

typedef struct vmenc_kms_file_options {
    uint32_t struct_size;          /* sizeof(vmenc_kms_file_options) */
    uint32_t flags;                /* VMENC_KMS_FILE_* */
    uint32_t kdf_opslimit;         /* Argon2id passes for new files; 0 = 3 (RFC 9106 sec. 4) */
    uint32_t kdf_memlimit_kib;     /* Argon2id memory for new files; 0 = 65536 (64 MiB, RFC 9106 sec. 4) */
    uint32_t max_kdf_opslimit;     /* refuse files that ask for more; 0 = 16 */
    uint32_t max_kdf_memlimit_kib; /* refuse files that ask for more; 0 = 1048576 (1 GiB) */
} vmenc_kms_file_options;

/* vmenc_kms_file_provider_new makes a file provider for the keystore at
 * |path| with passphrase |pass| (copied into secure memory; the caller may
 * wipe its copy). |opts| may be NULL. The file is opened (and, with
 * VMENC_KMS_FILE_CREATE, created) once here, so a wrong passphrase shows at
 * once: VMENC_E_WRONG_PASSPHRASE, VMENC_E_AUTH (tampered), a parse status
 * (damaged), VMENC_E_KMS_UNAVAILABLE (missing without CREATE),
 * VMENC_E_TOO_LARGE (the file asks for more KDF work than allowed),
 * VMENC_E_IO, VMENC_E_NOMEM. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_file_provider_new(const char *path, const uint8_t *pass,
                                                                    size_t pass_len,
                                                                    const vmenc_kms_file_options *opts,
                                                                    vmenc_kms_provider **out);

/* vmenc_kms_file_create writes a new, empty keystore at |path|. Fails with
 * VMENC_E_EXISTS if a file is there already (never overwrites). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_file_create(const char *path, const uint8_t *pass,
                                                              size_t pass_len,
                                                              const vmenc_kms_file_options *opts);

/* vmenc_kms_file_count reports how many keys the keystore of file provider
 * |p| holds that are not destroyed (|out_live|) and in all, tombstones
 * included (|out_total|; may be NULL). VMENC_E_INVALID_ARG if |p| is not a
 * file provider. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_file_count(vmenc_kms_provider *p, size_t *out_live,
                                                             size_t *out_total);

/* vmenc_kms_file_export writes a backup of the keystore of |p| to
 * |backup_path|, encrypted under |backup_pass| (a different passphrase; a
 * fresh salt either way) with the KDF limits in |opts| (may be NULL). Never
 * overwrites: VMENC_E_EXISTS if |backup_path| exists. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_file_export(vmenc_kms_provider *p, const char *backup_path,
                                                              const uint8_t *backup_pass, size_t backup_pass_len,
                                                              const vmenc_kms_file_options *opts,
                                                              uint32_t timeout_ms);

typedef enum vmenc_kms_file_restore_mode {
    /* Add the backup's keys that the keystore lacks. Keys in both must have
     * the same bytes (else VMENC_E_KEY_MISMATCH and nothing changes); their
     * state stays as in the keystore (a destroyed key stays destroyed). */
    VMENC_KMS_FILE_RESTORE_MERGE = 1,
    /* Make the keystore the backup's content (states included), e.g. to
     * recover a damaged keystore. Refused with VMENC_E_KEY_MISMATCH if the
     * current keystore is readable and holds a live key the backup lacks or
     * holds with other bytes: keys are never dropped silently. */
    VMENC_KMS_FILE_RESTORE_REPLACE = 2
} vmenc_kms_file_restore_mode;

/* vmenc_kms_file_restore restores |backup_path| (passphrase |backup_pass|)
 * into the keystore of |p| per |mode|, in one atomic write under the lock.
 * |out_num_added| (may be NULL) receives how many keys were new. Fails with
 * the open failures for the backup, VMENC_E_KEY_MISMATCH, or
 * VMENC_E_KMS_TIMEOUT (lock not acquired in time). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_file_restore(vmenc_kms_provider *p, const char *backup_path,
                                                               const uint8_t *backup_pass, size_t backup_pass_len,
                                                               vmenc_kms_file_restore_mode mode,
                                                               uint32_t timeout_ms, size_t *out_num_added);

/* vmenc_kms_file_change_passphrase re-encrypts the keystore of |p| under
 * |new_pass| with a fresh salt (KDF limits from |opts|, may be NULL), and
 * makes |p| use it. Other processes need the new passphrase from then on. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_kms_file_change_passphrase(vmenc_kms_provider *p,
                                                                         const uint8_t *new_pass,
                                                                         size_t new_pass_len,
                                                                         const vmenc_kms_file_options *opts,
                                                                         uint32_t timeout_ms);

#ifdef __cplusplus
}
#endif
#endif /* VMENC_KMS_FILE_H */
