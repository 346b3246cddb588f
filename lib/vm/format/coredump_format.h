/*
 * lib/vm/format/coredump_format.h - the core-dump files' text formats (the
 * per-dump key file and the host's coredump.cfg): pure codecs with a fuzz
 * harness. The dump store and rotation are lib/vm/coredump.c. Formats:
 * docs/coredump.md.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_VM_FORMAT_COREDUMP_FORMAT_H
#define VMENC_LIB_VM_FORMAT_COREDUMP_FORMAT_H

#include <stdbool.h>

#include "core/internal.h"
#include "vmenc/coredump.h"
#include "vmenc/keys.h"
#include "vmenc/kms.h"
#include "vmenc/policy.h"

#define CD_SOURCE_MAX 128u
#define CD_SALT_BYTES 16u
/* nonce (XChaCha20-Poly1305, 24) || sealed DEK (64) || tag (16) */
#define CD_PW_SEALED_BYTES (24u + VMENC_DEK_BYTES + 16u)
/* Argon2id bounds a key file may ask for: a hostile file must not make the
 * reader spend more than this. */
#define CD_KDF_OPS_MAX 16u
#define CD_KDF_MEM_MIN ((uint64_t)8 << 10)
#define CD_KDF_MEM_MAX ((uint64_t)1 << 30)
#define CD_KEYFILE_MAX ((size_t)64 << 10)

/* ---- per-dump key file (<id>.vmcore-key / <id>.vmcore-pw) ------------------
 *
 *   # vmenc core dump key
 *   vmenc.version = "1"
 *   vmenc.hostId = "<host>"
 *   vmenc.dumpId = "<uuid>"
 *   vmenc.source = "<what crashed>"
 * host-key form:
 *   vmenc.keyProvider = "<alias>"
 *   vmenc.kekId = "<id>"
 *   vmenc.keySafe = "vmwk1:..."          (bound to hostId, dumpId, "coredump")
 * password form:
 *   vmenc.kdf = "argon2id13"
 *   vmenc.kdfOps = "<n>"
 *   vmenc.kdfMem = "<bytes>"
 *   vmenc.kdfSalt = "<base64, 16 bytes>"
 *   vmenc.pwKeySafe = "<base64, nonce || ct || tag>"
 * Any other key (vmenc.* or not), a missing one, or a mix of the two forms
 * is VMENC_E_PARSE. */
typedef struct cd_keyfile {
    char host_id[VMENC_POLICY_NAME_MAX + 1];
    char dump_id[VMENC_COREDUMP_ID_LEN + 1];
    char source[CD_SOURCE_MAX + 1];
    bool password_form;
    char key_provider[VMENC_PROVIDER_ALIAS_MAX + 1];
    char kek_id[VMENC_KEY_ID_MAX + 1];
    vmenc_wrapped_key *key_safe;                /* owned; host-key form */
    uint64_t kdf_ops, kdf_mem;
    uint8_t salt[CD_SALT_BYTES];
    uint8_t pw_sealed[CD_PW_SEALED_BYTES];
} cd_keyfile;

VMENC_INTERNAL vmenc_status cd_keyfile_parse(const uint8_t *text, size_t len, cd_keyfile *out);
VMENC_INTERNAL vmenc_status cd_keyfile_serialize(const cd_keyfile *k, uint8_t **out, size_t *out_len);
VMENC_INTERNAL void cd_keyfile_cleanup(cd_keyfile *k);
/* cd_source_check: 1..CD_SOURCE_MAX bytes of [A-Za-z0-9._:-]. */
VMENC_INTERNAL vmenc_status cd_source_check(const char *source);

/* ---- coredump.cfg -------------------------------------------------------------
 *
 *   vmenc.version = "1"
 *   vmenc.hostId = "<host>"
 *   vmenc.hostKey.provider = "<alias>"        (with a host key)
 *   vmenc.hostKey.kekId = "<id>"
 *   vmenc.rotation.fromProvider = "<alias>"   (while a rotation is pending)
 *   vmenc.rotation.fromKekId = "<id>"
 */
typedef struct cd_config {
    char host_id[VMENC_POLICY_NAME_MAX + 1];
    bool has_key;
    char provider[VMENC_PROVIDER_ALIAS_MAX + 1];
    char kek_id[VMENC_KEY_ID_MAX + 1];
    bool rotating;
    char old_provider[VMENC_PROVIDER_ALIAS_MAX + 1];
    char old_kek_id[VMENC_KEY_ID_MAX + 1];
} cd_config;

VMENC_INTERNAL vmenc_status cd_config_parse(const uint8_t *text, size_t len, cd_config *out);
VMENC_INTERNAL vmenc_status cd_config_serialize(const cd_config *c, uint8_t **out, size_t *out_len);

#endif /* VMENC_LIB_VM_FORMAT_COREDUMP_FORMAT_H */
