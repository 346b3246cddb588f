/*
 * vmenc/xts.h - the XTS-AES sector engine (IEEE 1619-2007).
 *
 * A vmenc_xts context holds an expanded XTS-AES-256 (64-byte key) or
 * XTS-AES-128 (32-byte key) key and a sector size. Sector n is encrypted with
 * the tweak n as a 128-bit little-endian integer (dm-crypt's "plain64").
 * A context is immutable after vmenc_xts_new and may be shared by any number
 * of threads without locking. The key schedule lives in libsodium secure
 * memory and is wiped by vmenc_xts_free.
 *
 * XTS gives confidentiality only: it does not detect modification of
 * ciphertext (a flipped ciphertext bit garbles one 16-byte block of
 * plaintext, undetected).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_XTS_H
#define VMENC_XTS_H

#include "vmenc/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMENC_XTS_KEYBYTES_256 64u
#define VMENC_XTS_KEYBYTES_128 32u
#define VMENC_XTS_TWEAKBYTES 16u
#define VMENC_XTS_MIN_SECTOR 512u
#define VMENC_XTS_MAX_SECTOR 65536u

VMENC_API size_t vmenc_xts_keybytes_256(void);
VMENC_API size_t vmenc_xts_keybytes_128(void);

/* vmenc_xts_new expands |key| (|key_len| 64 for XTS-AES-256 or 32 for
 * XTS-AES-128; first half = data key, second half = tweak key) for sectors of
 * |sector_size| bytes (a power of two, 512..65536) and picks the fastest
 * backend the CPU and OS support, unless the environment variable
 * VMENC_XTS_IMPL names one ("vaes-avx512", "vaes-avx2", "aesni", "portable").
 * Fails with VMENC_E_INVALID_ARG (NULL pointer or bad key length),
 * VMENC_E_BAD_SECTOR_SIZE, VMENC_E_WEAK_KEY (both halves equal),
 * VMENC_E_UNKNOWN_IMPL / VMENC_E_CPU_UNSUPPORTED (forced backend unknown or not
 * runnable here; there is no silent fallback) or VMENC_E_NOMEM. On failure
 * |*out| is left untouched. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_xts_new(const uint8_t *key, size_t key_len,
                                                      uint32_t sector_size, vmenc_xts **out);

/* vmenc_xts_new_impl is vmenc_xts_new with the backend named explicitly
 * (NULL = automatic choice, ignoring the environment). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_xts_new_impl(const uint8_t *key, size_t key_len,
                                                           uint32_t sector_size, const char *impl,
                                                           vmenc_xts **out);

/* vmenc_xts_encrypt encrypts |len| bytes (a whole number of sectors, >= 1)
 * from |in| to |out|, the first sector numbered |first_sector|; sector numbers
 * count up and wrap modulo 2^64. |in| == |out| (in place) and unaligned
 * buffers are allowed; partial overlap is not. Fails with VMENC_E_INVALID_ARG
 * (NULL pointer, partly overlapping buffers) or VMENC_E_BAD_LENGTH, checked
 * before anything is written; the "portable" backend can also fail with
 * VMENC_E_NOMEM or VMENC_E_CRYPTO if OpenSSL does, and |out| is then
 * unspecified, but |in| is untouched unless in == out. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_xts_encrypt(const vmenc_xts *x, uint64_t first_sector,
                                                          const uint8_t *in, uint8_t *out, size_t len);

/* vmenc_xts_decrypt is the inverse of vmenc_xts_encrypt. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_xts_decrypt(const vmenc_xts *x, uint64_t first_sector,
                                                          const uint8_t *in, uint8_t *out, size_t len);

/* vmenc_xts_encrypt_unit encrypts one data unit of any |len| >= 16 (up to
 * 2^24 bytes) with the raw 16-byte |tweak|, using ciphertext stealing when
 * |len| is not a multiple of 16. Fails with VMENC_E_BAD_LENGTH otherwise,
 * and like vmenc_xts_encrypt for NULL pointers or overlap. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_xts_encrypt_unit(const vmenc_xts *x, const uint8_t tweak[16],
                                                               const uint8_t *in, uint8_t *out, size_t len);

/* vmenc_xts_decrypt_unit is the inverse of vmenc_xts_encrypt_unit. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_xts_decrypt_unit(const vmenc_xts *x, const uint8_t tweak[16],
                                                               const uint8_t *in, uint8_t *out, size_t len);

/* vmenc_xts_impl_name names the backend the context runs: "vaes-avx512",
 * "vaes-avx2", "aesni" or "portable". Static lifetime; "none" for NULL. */
VMENC_API const char *vmenc_xts_impl_name(const vmenc_xts *x);

/* vmenc_xts_sector_size returns the context's sector size (0 for NULL). */
VMENC_API uint32_t vmenc_xts_sector_size(const vmenc_xts *x);

/* vmenc_xts_impl_available reports whether backend |impl| can run on this
 * CPU/OS: VMENC_OK, VMENC_E_CPU_UNSUPPORTED or VMENC_E_UNKNOWN_IMPL
 * (VMENC_E_INVALID_ARG for NULL). */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_xts_impl_available(const char *impl);

/* vmenc_xts_free wipes and frees |x|. NULL is allowed. */
VMENC_API void vmenc_xts_free(vmenc_xts *x);

/* vmenc_xts_iov is one entry of a vectored call: |len| bytes (a whole number
 * of sectors) from |in| to |out|, the first sector numbered |first_sector|,
 * exactly as the arguments of one vmenc_xts_encrypt call. */
typedef struct vmenc_xts_iov {
    uint64_t first_sector;
    const uint8_t *in;
    uint8_t *out;
    size_t len;
} vmenc_xts_iov;

/* vmenc_xts_encrypt_iov encrypts |num_iov| independent runs of sectors in
 * one call (an I/O vector, as a block layer submits it): the same as calling
 * vmenc_xts_encrypt(x, iov[i].first_sector, iov[i].in, iov[i].out,
 * iov[i].len) for i = 0, 1, ... in order, so where one entry's |out|
 * overlaps a later entry's |in| the later entry sees the earlier one's
 * output. |num_iov| == 0 does nothing and returns VMENC_OK (|iov| may then be
 * NULL). Every entry is checked before anything is written: a NULL |x|, a
 * NULL |iov| with |num_iov| > 0, or any entry vmenc_xts_encrypt would refuse
 * (NULL |in|/|out|, partly overlapping |in| and |out|: VMENC_E_INVALID_ARG;
 * |len| 0 or not a whole number of sectors: VMENC_E_BAD_LENGTH) fails the
 * whole call with that status and no output written. Only the "portable"
 * backend can fail after that (VMENC_E_NOMEM or VMENC_E_CRYPTO from
 * OpenSSL): entries before the failing one are then complete, the failing
 * entry's |out| is unspecified, later entries are untouched. The library
 * keeps no pointer from |iov| after the call returns. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_xts_encrypt_iov(const vmenc_xts *x,
                                                              const vmenc_xts_iov *iov,
                                                              size_t num_iov);

/* vmenc_xts_decrypt_iov is the inverse of vmenc_xts_encrypt_iov, with the
 * same checks and failure semantics. */
VMENC_API VMENC_MUST_CHECK vmenc_status vmenc_xts_decrypt_iov(const vmenc_xts *x,
                                                              const vmenc_xts_iov *iov,
                                                              size_t num_iov);

#ifdef __cplusplus
}
#endif
#endif /* VMENC_XTS_H */
