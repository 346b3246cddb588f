/*
 * vmenc/common.h - status codes, export macros and opaque type declarations
 * shared by every vmenc layer.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#ifndef VMENC_COMMON_H
#define VMENC_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* VMENC_API marks an exported symbol. The library is built with
 * -fvisibility=hidden and a linker version script; only symbols carrying
 * this attribute *and* matching `vmenc_*` are exported. */
#if defined(VMENC_BUILDING_LIBRARY) && defined(__GNUC__)
#define VMENC_API __attribute__((visibility("default")))
#else
#define VMENC_API
#endif

/* VMENC_MUST_CHECK marks every function that returns a status. */
#if defined(__GNUC__)
#define VMENC_MUST_CHECK __attribute__((warn_unused_result))
#else
#define VMENC_MUST_CHECK
#endif

/*
 * vmenc_status: 0 is success, every error is negative. Values are stable
 * forever once released. Errors are grouped by category in blocks of 100 so a
 * caller can branch on the kind (vmenc_status_category) without knowing every
 * code. New codes are only ever appended inside their block.
 */
typedef enum vmenc_status {
    VMENC_OK = 0,

    /* usage: the caller passed something the API does not accept (-100..-199) */
    VMENC_E_INVALID_ARG = -100,      /* NULL pointer, bad length, bad flag */
    VMENC_E_BUFFER_TOO_SMALL = -101, /* output capacity too small */
    VMENC_E_UNSUPPORTED = -102,      /* valid request this build or provider does not support */
    VMENC_E_NOT_INITIALIZED = -103,  /* vmenc_init() failed or was not called */
    VMENC_E_UNIMPLEMENTED = -104,    /* provider vtable member missing or outside struct_size */
    VMENC_E_BAD_STATE = -105,        /* object not in a state that allows the call */
    VMENC_E_CPU_UNSUPPORTED = -106,  /* forced implementation the CPU/OS cannot run */
    VMENC_E_WEAK_KEY = -107,         /* e.g. XTS key halves equal */
    VMENC_E_BAD_SECTOR_SIZE = -108,  /* sector size not a power of two in 512..65536 */
    VMENC_E_BAD_LENGTH = -109,       /* data length not acceptable for the operation */
    VMENC_E_UNKNOWN_IMPL = -110,     /* VMENC_XTS_IMPL names no implementation */
    VMENC_E_ABI_VERSION = -111,      /* vtable/struct older than the first supported version */

    /* parse: input bytes are malformed (-200..-299) */
    VMENC_E_PARSE = -200,            /* generic malformed input */
    VMENC_E_TRUNCATED = -201,        /* input ended early */
    VMENC_E_BAD_VERSION = -202,      /* unknown format version */
    VMENC_E_TOO_LARGE = -203,        /* a length exceeds a hard limit */
    VMENC_E_TRAILING_DATA = -204,    /* bytes left after a complete object */
    VMENC_E_BAD_ENCODING = -205,     /* bad base64/JSON/UTF-8 */
    VMENC_E_DEPTH_LIMIT = -206,      /* nesting too deep */
    VMENC_E_BAD_ALGORITHM = -207,    /* unknown algorithm identifier */
    VMENC_E_BAD_MAGIC = -208,        /* file or record magic does not match */
    VMENC_E_BAD_PATH = -209,         /* a file name escapes its directory or is not allowed */

    /* crypto / authentication (-300..-399) */
    VMENC_E_AUTH = -300,             /* authentication tag / integrity check failed */
    VMENC_E_CRYPTO = -301,           /* a crypto primitive failed unexpectedly */
    VMENC_E_RANDOM = -302,           /* randomness unavailable */
    VMENC_E_WRONG_PASSPHRASE = -303, /* keystore passphrase wrong (or file tampered) */
    VMENC_E_KEY_MISMATCH = -304,     /* key is not the one the record names */
    VMENC_E_CONTEXT_MISMATCH = -305, /* wrapped key bound to another VM/disk/purpose */
    VMENC_E_SELFTEST = -306,         /* an implementation failed its known-answer self-test */
    VMENC_E_ROUNDTRIP = -307,        /* a fresh wrap did not unwrap again with a freshly fetched KEK */

    /* key manager / provider (-400..-499) */
    VMENC_E_KMS = -400,              /* generic provider failure */
    VMENC_E_KMS_UNAVAILABLE = -401,  /* cannot connect / every endpoint down */
    VMENC_E_KMS_TIMEOUT = -402,      /* deadline passed */
    VMENC_E_KMS_TLS = -403,          /* TLS handshake or protocol failure */
    VMENC_E_KMS_CERT_VERIFY = -404,  /* peer certificate chain not trusted */
    VMENC_E_KMS_NAME_MISMATCH = -405,/* peer certificate does not name the endpoint */
    VMENC_E_KMS_AUTH = -406,         /* KMS refused our credentials (client cert, PIN) */
    VMENC_E_KEY_NOT_FOUND = -407,    /* no key with that ID */
    VMENC_E_KMS_PROTOCOL = -408,     /* peer answered something that violates the protocol */
    VMENC_E_KMS_REFUSED = -409,      /* peer understood and refused the operation */
    VMENC_E_KEY_STATE = -410,        /* key revoked / destroyed / not active */
    VMENC_E_TOKEN_NOT_FOUND = -411,  /* PKCS#11 token/slot not found */
    VMENC_E_PROVIDER_EXISTS = -412,  /* provider type or cluster alias already registered */
    VMENC_E_NO_SUCH_PROVIDER = -413, /* provider type or cluster alias unknown */
    VMENC_E_KMS_PERMISSION = -414,   /* authenticated but not allowed to use the object */
    VMENC_E_PIN_LOCKED = -415,       /* token PIN locked */
    VMENC_E_KMS_WRONG_KEY = -416,    /* provider returned a key other than the one asked for */
    VMENC_E_VM_LOCKED = -417,        /* VM locked: a KEK it needs cannot be fetched (yet) */

    /* policy (-500..-599) */
    VMENC_E_DENIED = -500,           /* principal lacks a privilege */
    VMENC_E_HOST_MODE = -501,        /* host not in (or cannot leave) encryption mode */
    VMENC_E_POLICY_INVALID = -502,   /* policy document invalid */
    VMENC_E_NOT_FOUND = -503,        /* named object (role, user, inventory object) unknown */
    VMENC_E_EXISTS = -504,           /* named object already exists */
    VMENC_E_CYCLE = -505,            /* inventory or group graph has a cycle */
    VMENC_E_ILLEGAL_TRANSITION = -506, /* state transition not allowed */

    /* audit (-600..-699) */
    VMENC_E_AUDIT_TAMPERED = -600,   /* a record was edited, deleted, reordered or inserted */
    VMENC_E_AUDIT_TRUNCATED = -601,  /* the log ends before the last known sequence */
    VMENC_E_AUDIT_SINK = -602,       /* a sink failed to record an event */

    /* resource / environment (-700..-799) */
    VMENC_E_NOMEM = -700,            /* allocation (or secure allocation / mlock) failed */
    VMENC_E_IO = -701,               /* read/write/fsync/rename failed */
    VMENC_E_LOCKED = -702,           /* file lock held by another process */
    VMENC_E_LIMIT = -703,            /* a configured bound (cache size, count) reached */
    VMENC_E_INTERRUPTED = -704,      /* a previous operation was interrupted; recovery needed */
    VMENC_E_NO_SPACE = -705,         /* the file system is full (ENOSPC, EDQUOT) */
    VMENC_E_CONFLICT = -706,         /* the document changed since it was read (compare-and-swap lost) */
    VMENC_E_CONTROL_UNAVAILABLE = -707, /* the control plane (etcd) cannot be reached or has no quorum */
    VMENC_E_OUTCOME_UNKNOWN = -708,  /* a write was sent but not answered: re-read to learn whether it happened */
    VMENC_E_LEASE_EXPIRED = -709,    /* the control-plane lease (host ownership) is gone */

    /* internal (-900..-999) */
    VMENC_E_INTERNAL = -900          /* a bug in vmenc: please report */
} vmenc_status;

typedef enum vmenc_status_category {
    VMENC_CAT_OK = 0,
    VMENC_CAT_USAGE = 1,
    VMENC_CAT_PARSE = 2,
    VMENC_CAT_CRYPTO = 3,
    VMENC_CAT_PROVIDER = 4,
    VMENC_CAT_POLICY = 5,
    VMENC_CAT_AUDIT = 6,
    VMENC_CAT_RESOURCE = 7,
    VMENC_CAT_INTERNAL = 9,
    VMENC_CAT_UNKNOWN = 10
} vmenc_status_category;

/* vmenc_strerror returns a short constant English string naming |status|.
 * Unknown values give "unknown vmenc status". Never NULL; static lifetime. */
VMENC_API const char *vmenc_strerror(int status);

/* vmenc_status_name returns the enumerator name ("VMENC_E_AUTH"), or
 * "VMENC_E_UNKNOWN". Static lifetime. */
VMENC_API const char *vmenc_status_name(int status);

/* vmenc_status_category returns the category block |status| falls in. */
VMENC_API vmenc_status_category vmenc_status_category_of(int status);

/* Opaque handles (layouts are private). */
typedef struct vmenc_xts vmenc_xts;
typedef struct vmenc_dek vmenc_dek;
typedef struct vmenc_kek vmenc_kek;

#ifdef __cplusplus
}
#endif
#endif /* VMENC_COMMON_H */
