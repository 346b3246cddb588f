/*
 * lib/vm/vm_format.h - the VM layer's file formats and file-system helpers:
 * the `key = "value"` text of .vmx and .vmdk descriptors (vm_kv), the .vmx
 * and descriptor schemas on top of it, the sealed configuration entries
 * (encryption.data), the chunked AEAD state-file format (vm_sf), and atomic
 * writes. Every parser takes the bounded cursor; each has a fuzz harness.
 * Formats are documented in docs/vm-format.md.
 *
 * Not installed; not part of the ABI.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_LIB_VM_VM_FORMAT_H
#define VMENC_LIB_VM_VM_FORMAT_H

#include <stdbool.h>

#include "core/internal.h"
#include "vmenc/keys.h"
#include "vmenc/kms.h"
#include "vmenc/vm.h"

/* ---- file-system helpers (fsutil.c) ------------------------------------ */

/* vm_status_from_errno maps an errno: ENOSPC/EDQUOT -> VMENC_E_NO_SPACE,
 * ENOENT -> VMENC_E_NOT_FOUND, EEXIST/ENOTEMPTY -> VMENC_E_EXISTS,
 * ENOMEM -> VMENC_E_NOMEM, ELOOP (O_NOFOLLOW on a link) -> VMENC_E_BAD_PATH,
 * anything else -> VMENC_E_IO. */
VMENC_INTERNAL vmenc_status vm_status_from_errno(int err);

/* vm_file_name_check accepts a file name that stays inside its directory:
 * 1..255 bytes of [A-Za-z0-9._-], not starting with '.' or '-', no '/'.
 * Else VMENC_E_BAD_PATH ("..", "/etc/passwd", "a/b", "", control bytes). */
VMENC_INTERNAL vmenc_status vm_file_name_check(const char *name);

/* vm_atomic_write replaces file |name| in directory |dirfd| with |len|
 * bytes: write a temporary "<name>.tmp-<random>" (O_CREAT|O_EXCL|O_NOFOLLOW,
 * mode 0600), fsync it, renameat over |name|, fsync the directory (the
 * fsyncs are skipped when |sync| is false). On any failure the temporary is
 * unlinked and |name| is untouched. Errors via vm_status_from_errno. */
VMENC_INTERNAL vmenc_status vm_atomic_write(int dirfd, const char *name, const uint8_t *data, size_t len,
                                            bool sync);

/* vm_read_file reads the whole regular file |name| in |dirfd| (O_NOFOLLOW:
 * a symbolic link is VMENC_E_BAD_PATH) into a new malloc'd buffer (a NUL
 * is appended, not counted). VMENC_E_TOO_LARGE above |max| bytes,
 * VMENC_E_NOT_FOUND, VMENC_E_IO. */
VMENC_INTERNAL vmenc_status vm_read_file(int dirfd, const char *name, size_t max, uint8_t **out,
                                         size_t *out_len);

/* vm_fsync_dir fsyncs a directory descriptor (VMENC_E_IO on failure). */
VMENC_INTERNAL vmenc_status vm_fsync_dir(int dirfd);

/* Test hooks: when set, every data write and data sync of an extent, a
 * state file and a conversion state file goes through them (a fault
 * injector for torn writes, lost fsyncs, ENOSPC and EIO). NULL in the
 * product. */
typedef struct vm_io_hooks {
    vmenc_status (*pwrite)(int fd, const uint8_t *buf, size_t len, uint64_t off);
    vmenc_status (*sync)(int fd);
} vm_io_hooks;
extern const vm_io_hooks *vm_io_hook;
/* vm_io_pwrite_all writes every byte at |off| (EINTR and short writes
 * retried; a write of 0 bytes is VMENC_E_IO); vm_io_sync is fdatasync.
 * Both go through the hooks when set. */
VMENC_INTERNAL vmenc_status vm_io_pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t off);
VMENC_INTERNAL vmenc_status vm_io_sync(int fd);

/* ---- key = "value" text (kv.c) ------------------------------------------------
 *
 * Grammar (one item per line, LF line ends; a final line without LF is
 * accepted; CR, NUL and other control bytes except TAB are errors):
 *   blank       = *WSP
 *   comment     = *WSP "#" *any-printable
 *   entry       = *WSP key *WSP "=" *WSP DQUOTE value DQUOTE *WSP
 *   extent      = access SP sectors SP type SP DQUOTE file DQUOTE [SP offset]
 *                 access = "RW" / "RDONLY" / "NOACCESS"; type = "FLAT"
 *                 (vmenc's only extent type); sectors, offset decimal u64
 * key: 1..VM_KV_KEY_MAX bytes of [A-Za-z0-9._:-]; value: 0..VM_KV_VALUE_MAX
 * bytes of UTF-8 (validated) without '"', '\\' or control bytes. Keys are
 * case-sensitive; a duplicate key is VMENC_E_PARSE. At most VM_KV_MAX_ITEMS
 * lines and VM_KV_MAX_TEXT bytes (VMENC_E_TOO_LARGE). Comments, blank lines,
 * entries and extents keep their order, so serialise(parse(x)) is the
 * canonical form of x (whitespace normalised to `key = "value"`).
 */
#define VM_KV_KEY_MAX 128u
#define VM_KV_VALUE_MAX 65536u
#define VM_KV_MAX_ITEMS 8192u
#define VM_KV_MAX_TEXT ((size_t)4 << 20)

typedef struct vm_kv vm_kv;

typedef struct vm_kv_extent {
    char access[9];      /* "RW", "RDONLY", "NOACCESS" */
    uint64_t sectors;    /* in 512-byte units, as VMware descriptors count */
    char type[9];        /* "FLAT" */
    char file[256];      /* checked with vm_file_name_check */
    uint64_t offset;
} vm_kv_extent;

VMENC_INTERNAL vmenc_status vm_kv_new(vm_kv **out);
/* vm_kv_parse: failures VMENC_E_PARSE (with no partial result),
 * VMENC_E_BAD_ENCODING (bad UTF-8 / control byte), VMENC_E_TOO_LARGE,
 * VMENC_E_BAD_PATH (an extent file name), VMENC_E_NOMEM. */
VMENC_INTERNAL vmenc_status vm_kv_parse(const uint8_t *text, size_t len, vm_kv **out);
VMENC_INTERNAL void vm_kv_free(vm_kv *kv);
/* vm_kv_get returns the value of |key| (lives until the entry changes or
 * the kv is freed) or NULL. */
VMENC_INTERNAL const char *vm_kv_get(const vm_kv *kv, const char *key);
/* vm_kv_set replaces the value in place or appends the entry; validates
 * key and value (VMENC_E_INVALID_ARG). */
VMENC_INTERNAL vmenc_status vm_kv_set(vm_kv *kv, const char *key, const char *value);
/* vm_kv_remove deletes |key| (VMENC_E_NOT_FOUND if absent). */
VMENC_INTERNAL vmenc_status vm_kv_remove(vm_kv *kv, const char *key);
/* Iteration over entries only (comments and extents skipped), in order. */
VMENC_INTERNAL size_t vm_kv_num_entries(const vm_kv *kv);
VMENC_INTERNAL void vm_kv_entry(const vm_kv *kv, size_t i, const char **out_key, const char **out_value);
/* Extents, in order. vm_kv_add_extent validates like the parser. */
VMENC_INTERNAL size_t vm_kv_num_extents(const vm_kv *kv);
VMENC_INTERNAL const vm_kv_extent *vm_kv_get_extent(const vm_kv *kv, size_t i);
VMENC_INTERNAL vmenc_status vm_kv_add_extent(vm_kv *kv, const vm_kv_extent *e);
/* vm_kv_add_comment appends "# text" (text printable, no newline). */
VMENC_INTERNAL vmenc_status vm_kv_add_comment(vm_kv *kv, const char *text);
/* vm_kv_serialize writes the canonical text (malloc'd, NUL appended, not
 * counted). */
VMENC_INTERNAL vmenc_status vm_kv_serialize(const vm_kv *kv, uint8_t **out, size_t *out_len);

/* ---- disk descriptor (descriptor.c) -----------------------------------------
 *
 *   # Disk DescriptorFile
 *   version = "1"
 *   encoding = "UTF-8"
 *   createType = "vmenc-flat"
 *   # Extent description
 *   RW <capacity/512> FLAT "<base>-flat.vmdk" 0
 *   # vmenc
 *   vmenc.version = "1"
 *   vmenc.diskId = "scsi0:0"
 *   vmenc.vmUuid = "<uuid>"
 *   vmenc.capacity = "<bytes>"
 *   vmenc.sectorSize = "512"
 *   vmenc.cipher = "aes-xts-plain64" | "none"
 *   vmenc.state = "encrypted" | "plain"
 *   vmenc.keyProvider = "<alias>"      (encrypted only)
 *   vmenc.kekId = "<id>"               (encrypted only)
 *   vmenc.keySafe = "vmwk1:..."        (encrypted only)
 * During an in-place conversion (docs/reencryption.md):
 *   vmenc.state = "encrypting" | "decrypting" | "rekeying"
 *   vmenc.convert.id = "<u64>"; vmenc.convert.segment = "<bytes>";
 *   vmenc.convert.targetOffset = "<bytes>"
 *   vmenc.newKeyProvider / vmenc.newKekId / vmenc.newKeySafe (encrypting, rekeying)
 * Unknown vmenc.* keys are VMENC_E_PARSE (a newer writer: refuse rather
 * than ignore); other keys are kept. Exactly one extent, FLAT, offset 0 or
 * the conversion shift (a multiple of 1 MiB up to 1 GiB), sectors*512 ==
 * capacity. keyProvider/kekId must equal the record's. */
typedef struct vm_disk_desc {
    char disk_id[VMENC_DISK_ID_MAX + 1];
    char vm_uuid[VMENC_VM_UUID_LEN + 1];
    uint64_t capacity;
    uint32_t sector_size;                       /* 512 or 4096 */
    int encrypted;                              /* the current data key exists (state encrypted,
                                                   decrypting or rekeying): key_safe set */
    vmenc_disk_state state;
    char extent_file[256];                      /* checked name, same directory */
    char key_provider[VMENC_PROVIDER_ALIAS_MAX + 1];
    char kek_id[VMENC_KEY_ID_MAX + 1];
    vmenc_wrapped_key *key_safe;                /* owned; NULL when plain */
    /* Where sector 0 lives in the extent (bytes; the extent line's offset
     * counts 512-byte units). 0, or the conversion shift after an odd
     * number of in-place conversions (docs/reencryption.md). */
    uint64_t data_offset;
    /* In-place conversion (state encrypting, decrypting, rekeying): the
     * target layout and key. |data_offset| and |key_safe| are the old
     * layout and key; |new_key_safe| is set for encrypting and rekeying. */
    uint64_t cvt_id;                            /* random; binds the .cvt state file */
    uint64_t cvt_segment;                       /* segment = shift, bytes */
    uint64_t cvt_target_offset;                 /* 0 or cvt_segment, != data_offset */
    char new_key_provider[VMENC_PROVIDER_ALIAS_MAX + 1];
    char new_kek_id[VMENC_KEY_ID_MAX + 1];
    vmenc_wrapped_key *new_key_safe;            /* owned */
    /* Key check values of the records' KEKs (vmenc.kekCheck,
     * vmenc.newKekCheck: 32 hex digits), so a restarted host can pin them
     * and tell "the KMS served other bytes" from "the record is bad". */
    bool has_kek_check, has_new_kek_check;
    uint8_t kek_check[VMENC_KEK_CHECK_VALUE_BYTES];
    uint8_t new_kek_check[VMENC_KEK_CHECK_VALUE_BYTES];
} vm_disk_desc;

/* vm_disk_desc_converting: is an in-place conversion in progress? */
static inline bool vm_disk_desc_converting(const vm_disk_desc *d) {
    return d->state == VMENC_DISK_ENCRYPTING || d->state == VMENC_DISK_DECRYPTING ||
           d->state == VMENC_DISK_REKEYING;
}

/* vm_disk_id_check accepts "scsiB:U", B 0..3, U 0..15 (VMENC_E_INVALID_ARG). */
VMENC_INTERNAL vmenc_status vm_disk_id_check(const char *disk_id);
/* vm_uuid_check accepts the canonical lower-case 36-character UUID text. */
VMENC_INTERNAL vmenc_status vm_uuid_check(const char *uuid);
VMENC_INTERNAL vmenc_status vm_disk_desc_parse(const uint8_t *text, size_t len, vm_disk_desc *out);
/* vm_disk_desc_serialize validates |d| like the parser and writes the text. */
VMENC_INTERNAL vmenc_status vm_disk_desc_serialize(const vm_disk_desc *d, uint8_t **out, size_t *out_len);
/* vm_disk_desc_cleanup frees key_safe and zeroes |d|. */
VMENC_INTERNAL void vm_disk_desc_cleanup(vm_disk_desc *d);

/* ---- .vmx schema (vmx.c) -----------------------------------------------------
 *
 *   .encoding = "UTF-8"
 *   config.version = "8"
 *   displayName = "<NAME>"
 *   vmenc.version = "1"
 *   vmenc.uuid = "<uuid>"
 *   memSize = "<MiB>"                       (swap size)
 *   vmenc.storagePolicy = "<name>"          (optional)
 *   vmenc.applyingPolicy = "<name>"         (only while a policy's application is unfinished)
 *   scsiB:U.present = "TRUE"
 *   scsiB:U.fileName = "<base>.vmdk"        (checked file name)
 *   encryption.keySafe = "vmwk1:..."        (encrypted VM only)
 *   encryption.data = "vmsd1:..."           (encrypted VM only)
 *   encryption.kekCheck = "<32 hex>"         (optional: the KEK's check value)
 *   encryption.newKeySafe = "vmwk1:..."      (only during a deep rekey of the home)
 *   ... any other entries, kept as they are
 * Unknown "encryption.*" or "vmenc.*" keys are VMENC_E_PARSE. */
typedef struct vm_vmx_disk {
    char disk_id[VMENC_DISK_ID_MAX + 1];
    char file_name[256];
} vm_vmx_disk;

typedef struct vm_vmx {
    vm_kv *kv;                                  /* owned: every entry */
    char name[VMENC_VM_NAME_MAX + 1];
    char uuid[VMENC_VM_UUID_LEN + 1];
    uint64_t memory_bytes;
    char storage_policy[VMENC_POLICY_NAME_MAX + 1];
    /* vmenc.applyingPolicy: a storage policy whose application was begun and
     * not finished (vmenc_vm_resume finishes it); "" if none */
    char applying_policy[VMENC_POLICY_NAME_MAX + 1];
    size_t num_disks;                           /* present disks, in kv order */
    vm_vmx_disk disks[VMENC_VM_MAX_DISKS];
    vmenc_wrapped_key *key_safe;                /* owned; NULL for a plain VM */
    const char *sealed_data;                    /* points into kv, NULL for a plain VM */
    bool has_kek_check;                         /* encryption.kekCheck (32 hex digits) */
    uint8_t kek_check[VMENC_KEK_CHECK_VALUE_BYTES];
    /* encryption.newKeySafe: during a deep rekey of the VM home, the next
     * VM key (same binding as keySafe); owned, NULL otherwise */
    vmenc_wrapped_key *new_key_safe;
} vm_vmx;

/* vm_vm_name_check applies VMENC_VM_NAME_MAX's rule (VMENC_E_INVALID_ARG). */
VMENC_INTERNAL vmenc_status vm_vm_name_check(const char *name);
VMENC_INTERNAL vmenc_status vm_vmx_parse(const uint8_t *text, size_t len, vm_vmx *out);
/* vm_vmx_sync writes the struct's fields back into its kv (so the kv can be
 * serialised): name, uuid, memory, policy, the disks list (scsi* entries of
 * removed disks deleted), key_safe as text, sealed_data_text (NULL = remove
 * encryption.data). */
VMENC_INTERNAL vmenc_status vm_vmx_sync(vm_vmx *v, const char *sealed_data_text);
VMENC_INTERNAL void vm_vmx_cleanup(vm_vmx *v);

/* ---- key derivation and sealed config (sealed.c) ------------------------- */

/* vm_derive_key derives a 32-byte subkey of the VM key: keyed BLAKE2b-256
 * (key = the 64 DEK bytes) over "vmenc/" || label || 0x00 || ctx. |out| must
 * be secure memory. Labels in use: "statefile-v1", "config-v1". */
VMENC_INTERNAL vmenc_status vm_derive_key(const vmenc_dek *vm_key, const char *label, const uint8_t *ctx,
                                          size_t ctx_len, uint8_t out[32]);

/* vm_sealed_seal seals |secret| (its canonical serialisation) for VM
 * |uuid|: "vmsd1:" + base64(nonce[12] || ciphertext || tag[16]) under
 * AES-256-GCM with vm_derive_key("config-v1", uuid) and AAD
 * "vmenc-config-v1" || uuid. |*out| malloc'd, NUL-terminated. */
VMENC_INTERNAL vmenc_status vm_sealed_seal(const vmenc_dek *vm_key, const char *uuid, const vm_kv *secret,
                                           char **out);
/* vm_sealed_open is the inverse: VMENC_E_BAD_MAGIC, VMENC_E_BAD_ENCODING,
 * VMENC_E_TRUNCATED, VMENC_E_AUTH (any edit, other VM, other key); the
 * plaintext is parsed with vm_kv_parse. */
VMENC_INTERNAL vmenc_status vm_sealed_open(const vmenc_dek *vm_key, const char *uuid, const char *text,
                                           vm_kv **out);
/* vm_sealed_decode_outer checks the text form without a key (for fuzzing):
 * prefix, canonical base64, minimum length. */
VMENC_INTERNAL vmenc_status vm_sealed_decode_outer(const char *text, size_t len);

/* ---- chunked AEAD state files (statefile.c) -----------------------------------
 *
 * Layout: a 64-byte header, then chunk records. Header: magic "VMENCSF1",
 * u16 version (1), u8 class, u8 reserved (0), u32 chunk size (65536), u32
 * index, 16-byte random file ID, zeros to 64 bytes (all big-endian; any
 * nonzero reserved byte is VMENC_E_PARSE). Record i: nonce[12] ||
 * ciphertext[n] || tag[16], n = chunk size for every record but the last,
 * 0..chunk size for the last; a file always has at least one record (an
 * empty file has one empty last record), so the header is authenticated.
 * Key: vm_derive_key("statefile-v1", uuid || file ID). Nonce: 96 random
 * bits per record write. AAD: BLAKE2b-256(header) || u64 index || u8 last
 * (1 for the final record). Detected: any edit (header or record),
 * truncation (at or inside a record), appended or reordered records, records
 * or whole files moved between files, VMs or classes. Not detected: a
 * whole file rolled back to an older version of itself (documented).
 *
 * A plain file (|vm_key| NULL) is raw bytes with no header.
 */
#define VM_SF_HEADER_BYTES 64u
#define VM_SF_NONCE_BYTES 12u
#define VM_SF_TAG_BYTES 16u

typedef struct vm_sf vm_sf;

/* vm_sf_open opens (flags VMENC_VM_FILE_CREATE / _TRUNCATE / _READONLY)
 * file |name| in |dirfd| of class |cls| (1..4: the AEAD classes) with
 * |index|, for VM |uuid| under |vm_key| (NULL: plain). An existing AEAD file
 * has its header checked (magic, version, class, index: VMENC_E_BAD_MAGIC /
 * VMENC_E_BAD_VERSION / VMENC_E_PARSE), and its final record authenticated
 * (VMENC_E_AUTH, VMENC_E_TRUNCATED). |sync| false skips fsyncs. */
VMENC_INTERNAL vmenc_status vm_sf_open(int dirfd, const char *name, uint8_t cls, uint32_t index,
                                       const char *uuid, const vmenc_dek *vm_key, uint32_t flags, bool sync,
                                       vm_sf **out);
/* Same contract as vmenc_vm_file_pread/_pwrite/_get_size/_flush. Calls are
 * serialised by a mutex inside. */
VMENC_INTERNAL vmenc_status vm_sf_pread(vm_sf *f, uint64_t offset, size_t len, uint8_t *out, size_t *out_read);
VMENC_INTERNAL vmenc_status vm_sf_pwrite(vm_sf *f, uint64_t offset, const uint8_t *data, size_t len);
VMENC_INTERNAL vmenc_status vm_sf_size(vm_sf *f, uint64_t *out);
VMENC_INTERNAL vmenc_status vm_sf_flush(vm_sf *f);
/* vm_sf_close flushes unless read-only, frees, returns the flush status. */
VMENC_INTERNAL vmenc_status vm_sf_close(vm_sf *f);

/* vm_sf_parse_header checks a header (fuzz entry point): |len| must be at
 * least VM_SF_HEADER_BYTES; outputs may be NULL. */
VMENC_INTERNAL vmenc_status vm_sf_parse_header(const uint8_t *data, size_t len, uint8_t *out_cls,
                                               uint32_t *out_index, uint8_t out_file_id[16]);

/* vm_sf_convert rewrites file |name| from one form to another (plain ->
 * AEAD, AEAD -> plain, AEAD under one key -> another) by streaming into a
 * temporary file and renaming it over |name| (atomic: a crash leaves the
 * old or the new file, never a mix). |from_key|/|to_key| NULL = plain. */
VMENC_INTERNAL vmenc_status vm_sf_convert(int dirfd, const char *name, uint8_t cls, uint32_t index,
                                          const char *from_uuid, const vmenc_dek *from_key,
                                          const char *to_uuid, const vmenc_dek *to_key, bool sync);

/* Class of a host core dump (lib/vm/coredump.c): the same format, |uuid|
 * being the dump ID. Not a VM file class; accepted wherever an AEAD class
 * is. */
#define VM_SF_CLASS_COREDUMP 6u

/* A streaming writer of the same AEAD format for files written once, front
 * to back (core dumps): constant memory, each record sealed once.
 * vm_sf_writer_new takes over |fd| on success (truncates it and writes the
 * header); the result opens with vm_sf_open(cls, index, uuid, key) once
 * vm_sf_writer_finish has sealed the final record (before that, the file
 * fails to open: VMENC_E_AUTH or VMENC_E_TRUNCATED). A failed write or
 * finish leaves the writer unusable (VMENC_E_BAD_STATE after).
 * vm_sf_writer_free wipes the pending chunk and closes the fd (NULL ok). */
typedef struct vm_sf_writer vm_sf_writer;
VMENC_INTERNAL vmenc_status vm_sf_writer_new(int fd, uint8_t cls, uint32_t index, const char *uuid,
                                             const vmenc_dek *key, bool sync, vm_sf_writer **out);
VMENC_INTERNAL vmenc_status vm_sf_writer_write(vm_sf_writer *w, const uint8_t *data, size_t len);
/* vm_sf_writer_finish seals the final record and fsyncs (when |sync|). */
VMENC_INTERNAL vmenc_status vm_sf_writer_finish(vm_sf_writer *w);
/* vm_sf_writer_size: plaintext bytes written so far. */
VMENC_INTERNAL uint64_t vm_sf_writer_size(const vm_sf_writer *w);
VMENC_INTERNAL void vm_sf_writer_free(vm_sf_writer *w);

#endif /* VMENC_LIB_VM_VM_FORMAT_H */
