/*
 * integrations/control/ctl_proto.h - the control endpoint's wire format:
 * the frames a `vmenc` CLI and the process that serves a VM (the nbdkit
 * plugin) exchange over the VM's control socket, so that a running VM is
 * converted online by its own process (docs/nbdkit.md, "Control
 * endpoint", has the protocol). One source file, compiled into both ends;
 * public vmenc headers only.
 *
 * Safety rule: the decoder is pure (bytes in, struct out, no I/O) and
 * trusts nothing - every length is checked against what is left and against
 * the field's bound before a byte is read, every string must be printable
 * ASCII, and a frame that does not re-encode to itself is refused. The
 * socket helpers live in ctl_sock.c.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_CTL_PROTO_H
#define VMENC_CTL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <vmenc/common.h>

/* Frame: magic "VCTL" | version u8 | type u8 | body length u16 (big
 * endian) | body. The body is the type's fields, each tag u8 | length u8 |
 * bytes, all of them, in the order below. Numbers are big endian. */
#define CTL_MAGIC "VCTL"
#define CTL_VERSION 1u
#define CTL_HEADER_BYTES 8u
#define CTL_MAX_BODY 1024u
#define CTL_MAX_FRAME (CTL_HEADER_BYTES + CTL_MAX_BODY)

#define CTL_NAME_CAP 65u    /* principal, VM name, storage policy: 64 bytes + NUL */
#define CTL_UUID_CAP 37u    /* canonical UUID text + NUL */
#define CTL_DISK_CAP 17u    /* "scsiB:U" + NUL */
#define CTL_MESSAGE_CAP 256u

typedef enum ctl_type {
    /* requests (CLI -> server) */
    CTL_CONVERT = 1,  /* kind, principal, vm, uuid, policy, segment: run a conversion, stream progress */
    CTL_STATUS = 2,   /* principal: one PROGRESS and one RESULT, then the server closes */
    CTL_CANCEL = 3,   /* principal: stop the running conversion between segments (resumable) */
    /* responses (server -> CLI) */
    CTL_PROGRESS = 16, /* running, kind, disk, bytes_done, bytes_total, rate, done */
    CTL_RESULT = 17    /* status, message: the last frame of an exchange */
} ctl_type;

typedef enum ctl_kind {
    CTL_KIND_NONE = 0,
    CTL_KIND_ENCRYPT = 1,   /* vmenc vm encrypt: apply an encrypting storage policy */
    CTL_KIND_DECRYPT = 2,   /* vmenc vm decrypt: apply a plain storage policy */
    CTL_KIND_REKEY_DEEP = 3, /* vmenc vm rekey --deep */
    CTL_KIND_RESUME = 4      /* vmenc vm resume: finish interrupted conversions (and the policy being applied) */
} ctl_kind;

/* ctl_msg: one frame, decoded. Fields a type does not carry are zero. */
typedef struct ctl_msg {
    uint8_t type;                   /* ctl_type */
    uint8_t kind;                   /* ctl_kind: CONVERT, PROGRESS (RESUME reports the kind of each disk's conversion) */
    char principal[CTL_NAME_CAP];   /* requests: the acting user (authorized and audited) */
    char vm[CTL_NAME_CAP];          /* CONVERT: the VM the caller means; the server checks it is its own */
    char uuid[CTL_UUID_CAP];        /* CONVERT: its UUID, checked the same way */
    char policy[CTL_NAME_CAP];      /* CONVERT encrypt/decrypt: the storage policy ("" = the verb's default) */
    uint64_t segment;               /* CONVERT: segment bytes (0 = default) */
    uint8_t running;                /* PROGRESS: a conversion runs */
    char disk[CTL_DISK_CAP];        /* PROGRESS: the disk being converted ("" = none yet) */
    uint64_t bytes_done, bytes_total, bytes_per_second;
    uint8_t done;                   /* PROGRESS: that disk is finished */
    int32_t status;                 /* RESULT: a vmenc_status */
    char message[CTL_MESSAGE_CAP];  /* RESULT: why, for a human */
} ctl_msg;

/* ctl_encode writes |m| as one frame into |out| (cap >= CTL_MAX_FRAME
 * always suffices) and its length to |*out_len|. VMENC_E_INVALID_ARG for an
 * unknown type or kind, a string that is too long or not printable;
 * VMENC_E_BUFFER_TOO_SMALL. */
vmenc_status ctl_encode(const ctl_msg *m, uint8_t *out, size_t cap, size_t *out_len);

/* ctl_decode reads one frame from the first |len| bytes of |in| into |*out|
 * and its length to |*out_used|. VMENC_E_TRUNCATED: |in| holds only the
 * beginning of a frame (read more and call again); VMENC_E_BAD_MAGIC,
 * VMENC_E_BAD_VERSION, VMENC_E_TOO_LARGE (body over CTL_MAX_BODY),
 * VMENC_E_PARSE (unknown type or kind, a field missing, misplaced or out of
 * bounds, a bad string), VMENC_E_TRAILING_DATA (bytes left in the body).
 * On failure |*out| is unspecified. */
vmenc_status ctl_decode(const uint8_t *in, size_t len, ctl_msg *out, size_t *out_used);

/* ctl_kind_name: "encrypt", "decrypt", "rekey-deep", "resume", or "none". */
const char *ctl_kind_name(uint8_t kind);

/* ctl_set copies |s| into a field of capacity |cap| (truncating at a
 * character boundary; non-printable bytes become '?'), so an encoder never
 * fails on a message built from library text. */
void ctl_set(char *dst, size_t cap, const char *s);

#endif /* VMENC_CTL_PROTO_H */
