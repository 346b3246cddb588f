/*
 * vmenc/coredump.h - encrypted host core dumps: a host key, one DEK per
 * dump, streaming writes in the authenticated chunked format, privileged
 * reads, password export for support bundles, and host-key rotation.
 *
 * A host's dumps live in one directory (a vmenc_coredump_store) that also
 * holds the host's core-dump configuration, coredump.cfg: the host ID and
 * the host key - a KEK in one of the host's key providers, kept by ID only
 * and fetched again through the key manager after a restart, like any KEK.
 * Each dump is two files (format: docs/coredump.md):
 *   <id>.vmcore      the dump, chunked AES-256-GCM (64 KiB chunks) under a
 *                    key derived from the dump's own DEK;
 *   <id>.vmcore-key  the DEK wrapped under the host key, bound to host ID +
 *                    dump ID + purpose "coredump" (replaced atomically when
 *                    the host key rotates; the dump itself never changes).
 * A truncated, edited, incomplete, swapped or foreign dump fails with
 * VMENC_E_AUTH / VMENC_E_TRUNCATED / VMENC_E_CONTEXT_MISMATCH, and nothing
 * unauthenticated is ever returned.
 *
 * Policy (authorize -> act -> audit, denied and failed attempts audited):
 *  - set or rotate the host key: VMENC_OP_ENABLE_HOST_ENCRYPTION on the
 *    host (Cryptographer.RegisterHost), as installing a host key is part of
 *    enabling host encryption mode;
 *  - read or export a dump: VMENC_OP_MANAGE_KEYS (Cryptographer.ManageKeys
 *    on the root): a host dump may hold every key the host had in memory,
 *    so only principals trusted with keys may see one in clear;
 *  - write a dump: no user privilege (the host writes its own crash data,
 *    and refusing would only lose it), but the host must be in encryption
 *    mode (safe) with a host key; |principal| names the writer in the audit
 *    event ("vmkernel", "hostd", ...).
 *
 * Thread safety: a store may be shared between threads (its calls are
 * serialised by a lock; rotation holds it throughout). A writer or reader
 * is used by one thread at a time.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_COREDUMP_H
#define VMENC_COREDUMP_H

#include "vmenc/common.h"
#include "vmenc/vm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmenc_coredump_store vmenc_coredump_store;
typedef struct vmenc_coredump_writer vmenc_coredump_writer;
typedef struct vmenc_coredump_reader vmenc_coredump_reader;

/* A dump ID is a lower-case canonical UUID (36 characters, no NUL). */
#define VMENC_COREDUMP_ID_LEN 36u
/* Longest password accepted for export, in bytes. */
#define VMENC_COREDUMP_PASSWORD_MAX 1024u
/* The weakest export vmenc_coredump_export accepts (VMENC_E_WEAK_KEY
 * below): a password of at least VMENC_COREDUMP_PASSWORD_MIN characters
 * (UTF-8 code points), and Argon2id of at least VMENC_COREDUMP_KDF_OPS_MIN
 * passes over VMENC_COREDUMP_KDF_MEM_MIN bytes. A bundle leaves the host
 * and its password is all that guards a dump that may hold every key. */
#define VMENC_COREDUMP_PASSWORD_MIN 12u
#define VMENC_COREDUMP_KDF_OPS_MIN 2u
#define VMENC_COREDUMP_KDF_MEM_MIN ((uint64_t)64 << 20)

/* vmenc_coredump_store_open opens dump directory |dir| (which must exist)
 * for |host|. Reads coredump.cfg if present: it must name this host
 * (VMENC_E_CONTEXT_MISMATCH otherwise) and be well formed (VMENC_E_PARSE,
 * VMENC_E_BAD_VERSION). No key is fetched yet. Fails also with
 * VMENC_E_INVALID_ARG, VMENC_E_NOT_FOUND / VMENC_E_BAD_PATH (|dir|),
 * VMENC_E_NOMEM. The store borrows |host|'s reference (kept alive). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_coredump_store_open(vmenc_host *host, const char *dir,
                                                                  vmenc_coredump_store **out);

/* vmenc_coredump_store_free closes the store (NULL allowed). Open writers
 * and readers stay usable. */
VMENC_API void vmenc_coredump_store_free(vmenc_coredump_store *store);

/* vmenc_coredump_set_host_key gives the host its first host key: KEK
 * |kek_id| of key provider |key_provider|, or a new KEK there when |kek_id|
 * is NULL. The KEK is fetched (proving the host can get it again) before
 * coredump.cfg is written. Policy VMENC_OP_ENABLE_HOST_ENCRYPTION (switches
 * the host to safe mode). VMENC_E_EXISTS if a host key is already set (use
 * vmenc_coredump_rotate_host_key), key-manager failures, VMENC_E_IO. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_coredump_set_host_key(vmenc_coredump_store *store,
                                                                    const char *principal,
                                                                    const char *key_provider,
                                                                    const char *kek_id);

/* vmenc_coredump_store_info: set struct_size; filled by
 * vmenc_coredump_store_get_info. */
typedef struct vmenc_coredump_store_info {
    uint32_t struct_size;
    int has_host_key;
    char key_provider[VMENC_PROVIDER_ALIAS_MAX + 1]; /* "" without a host key */
    char kek_id[VMENC_KEY_ID_MAX + 1];
    int rotation_pending;                            /* an interrupted rotation awaits resumption */
    char old_key_provider[VMENC_PROVIDER_ALIAS_MAX + 1]; /* the key being rotated away from */
    char old_kek_id[VMENC_KEY_ID_MAX + 1];
    uint32_t num_dumps;                              /* complete dumps in the directory */
} vmenc_coredump_store_info;

/* vmenc_coredump_store_get_info fills |out| (no policy check: it reveals key
 * IDs only, like the configuration file). VMENC_E_INVALID_ARG,
 * VMENC_E_ABI_VERSION, VMENC_E_IO. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_coredump_store_get_info(vmenc_coredump_store *store,
                                                                      vmenc_coredump_store_info *out);

/* vmenc_coredump_list writes the ID of the |index|-th dump (in ID order) to
 * |out_id| (capacity at least VMENC_COREDUMP_ID_LEN + 1).
 * VMENC_E_NOT_FOUND past the last one, VMENC_E_BUFFER_TOO_SMALL. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_coredump_list(vmenc_coredump_store *store, uint32_t index,
                                                            char *out_id, size_t out_id_cap);

/* vmenc_coredump_rotate_host_key moves the host to a new host key - KEK
 * |kek_id| of |key_provider| (NULL = the current provider), a new KEK when
 * |kek_id| is NULL - and re-wraps every existing dump's DEK under it (the
 * dumps are not re-encrypted). The new key is recorded in coredump.cfg,
 * with the old one marked "rotating", before any dump is touched; each
 * dump's key file is then replaced atomically, and the mark is removed
 * last. A crash at any point leaves every dump readable (each key file
 * names its own KEK), and the next call - with NULL |key_provider| and
 * |kek_id|, or the same new key - resumes the interrupted rotation. The old
 * KEK is not destroyed. Policy VMENC_OP_ENABLE_HOST_ENCRYPTION. Writes the
 * number of dumps re-wrapped by this call to |*out_num_rewrapped| (may be
 * NULL). VMENC_E_BAD_STATE without a host key or when a different new key
 * is asked for while a rotation is pending; key-manager failures;
 * VMENC_E_AUTH / VMENC_E_CONTEXT_MISMATCH for a dump key file that does not
 * open (the rotation stops there, pending, and says which in the audit). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_coredump_rotate_host_key(vmenc_coredump_store *store,
                                                                       const char *principal,
                                                                       const char *key_provider,
                                                                       const char *kek_id,
                                                                       uint32_t *out_num_rewrapped);

/* ---- writing ------------------------------------------------------------------ */

/* vmenc_coredump_writer_new starts a dump: a fresh DEK, wrapped under the
 * host key (the record is proven to unwrap before use) and written to
 * <id>.vmcore-key, then the dump streams into <id>.vmcore.partial, renamed
 * to <id>.vmcore by vmenc_coredump_writer_finish. |principal| is the
 * writer (audit only), |source| what crashed (e.g. "vmkernel", a VM name;
 * audit target). VMENC_E_BAD_STATE without a host key, VMENC_E_HOST_MODE if
 * the host is not in safe mode, key-manager failures, VMENC_E_IO,
 * VMENC_E_NO_SPACE. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_coredump_writer_new(vmenc_coredump_store *store,
                                                                  const char *principal, const char *source,
                                                                  vmenc_coredump_writer **out);

/* vmenc_coredump_writer_id returns the dump ID (lives as long as |w|). */
VMENC_API const char *vmenc_coredump_writer_id(const vmenc_coredump_writer *w);

/* vmenc_coredump_write appends |len| bytes. Memory use is constant (one
 * 64 KiB chunk) whatever the dump size. VMENC_E_IO / VMENC_E_NO_SPACE; after
 * a failure the writer only accepts vmenc_coredump_writer_free. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_coredump_write(vmenc_coredump_writer *w, const uint8_t *data,
                                                             size_t len);

/* vmenc_coredump_writer_finish seals the last chunk, makes the dump
 * durable and gives it its final name, audits the dump (host key ID,
 * size), and frees |w| - on failure too (the partial file is then
 * removed). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_coredump_writer_finish(vmenc_coredump_writer *w);

/* vmenc_coredump_writer_free abandons an unfinished dump (removes both of
 * its files; audited as failed) and frees |w|. NULL allowed. */
VMENC_API void vmenc_coredump_writer_free(vmenc_coredump_writer *w);

/* ---- reading --------------------------------------------------------------------- */

/* vmenc_coredump_open opens dump |dump_id| of |store| for reading by
 * |principal| (policy VMENC_OP_MANAGE_KEYS; audited whether allowed,
 * denied or failed). The DEK is unwrapped with the KEK its key file names;
 * the dump's header and final chunk are authenticated here. Fails with
 * VMENC_E_NOT_FOUND, VMENC_E_CONTEXT_MISMATCH (key file of another host or
 * dump), VMENC_E_AUTH (edited, swapped or incomplete), VMENC_E_TRUNCATED,
 * VMENC_E_BAD_MAGIC / VMENC_E_PARSE, VMENC_E_DENIED, key-manager failures. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_coredump_open(vmenc_coredump_store *store, const char *principal,
                                                            const char *dump_id, vmenc_coredump_reader **out);

/* vmenc_coredump_open_exported opens an exported dump in |dir| (the
 * <id>.vmcore and <id>.vmcore-pw files vmenc_coredump_export wrote) with
 * the password alone: no host, key provider or policy is involved - holding
 * the password is the authorization. VMENC_E_WRONG_PASSPHRASE for a wrong
 * password or an edited key file, otherwise as vmenc_coredump_open. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_coredump_open_exported(const char *dir, const char *dump_id,
                                                                     const uint8_t *password,
                                                                     size_t password_len,
                                                                     vmenc_coredump_reader **out);

/* vmenc_coredump_read reads the next up to |cap| bytes into |out| and
 * writes the count to |*out_read| (0 at the end). Every chunk is
 * authenticated before any byte of it is copied: VMENC_E_AUTH on tampering
 * (|*out_read| is then 0). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_coredump_read(vmenc_coredump_reader *r, uint8_t *out, size_t cap,
                                                            size_t *out_read);

/* vmenc_coredump_reader_get_size writes the dump's size in bytes. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_coredump_reader_get_size(vmenc_coredump_reader *r, uint64_t *out);

/* vmenc_coredump_reader_free closes and wipes (NULL allowed). */
VMENC_API void vmenc_coredump_reader_free(vmenc_coredump_reader *r);

/* ---- export ---------------------------------------------------------------------- */

/* vmenc_coredump_export_options: set struct_size.
 * - principal: who exports (policy VMENC_OP_MANAGE_KEYS).
 * - dump_id: the dump; out_dir: an existing directory for the bundle.
 * - password / password_len: at most VMENC_COREDUMP_PASSWORD_MAX bytes,
 *   at least VMENC_COREDUMP_PASSWORD_MIN characters (VMENC_E_WEAK_KEY).
 * - kdf_ops / kdf_mem_bytes: Argon2id cost (0 = libsodium's "moderate":
 *   3 passes, 256 MiB); at least VMENC_COREDUMP_KDF_OPS_MIN passes and
 *   VMENC_COREDUMP_KDF_MEM_MIN bytes (VMENC_E_WEAK_KEY below), at most 16
 *   passes and 1 GiB (VMENC_E_INVALID_ARG above).
 * - flags: none yet (0). */
typedef struct vmenc_coredump_export_options {
    uint32_t struct_size;
    const char *principal;
    const char *dump_id;
    const char *out_dir;
    const uint8_t *password;
    size_t password_len;
    uint64_t kdf_ops;
    uint64_t kdf_mem_bytes;
    uint32_t flags;
} vmenc_coredump_export_options;

/* vmenc_coredump_export writes a support-bundle copy of a dump to out_dir:
 * <id>.vmcore byte for byte (the data is not re-encrypted) and
 * <id>.vmcore-pw, the dump's DEK re-wrapped under a key derived from the
 * password with Argon2id (XChaCha20-Poly1305; the password is never
 * stored). The dump is authenticated in full first, so a damaged dump is
 * not exported. Audited. VMENC_E_WEAK_KEY for too short a password or
 * too cheap a KDF (checked after the privilege; nothing is written),
 * VMENC_E_EXISTS if the bundle files exist, plus vmenc_coredump_open's
 * failures. vmenc_coredump_open_exported still opens bundles made with
 * weaker settings before these bounds. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_coredump_export(vmenc_coredump_store *store,
                                                              const vmenc_coredump_export_options *opts);

#ifdef __cplusplus
}
#endif
#endif /* VMENC_COREDUMP_H */
