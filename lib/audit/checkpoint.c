/*
 * lib/audit/checkpoint.c - the sealed checkpoint of an audit chain's head:
 * reading the last record of a log (shared with the writer), the
 * checkpoint's binary format (lib/audit/checkpoint.h, docs/audit.md "The
 * sealed checkpoint"), its forward-only advance, and the check a verifier
 * runs to find a log cut short, emptied or replaced below the sealed head.
 *
 * Safety rule: a checkpoint is replaced only by one for a later head of the
 * same chain, proven by verifying the records between the two under the
 * log's file lock; a missing one is not recreated unless the caller says
 * this is the chain's start (init), so a removal stays visible.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/checkpoint.h"
#include "core/fs.h"

static const char k_cp_domain[] = "vmenc-audit-v1 checkpoint\n";

/* ---- the log's last record ------------------------------------------------------ */

static vmenc_status pread_exact(int fd, uint8_t *buf, size_t len, uint64_t off) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        VMENC_ENSURE(n > 0, VMENC_E_IO); /* 0: the file shrank under us */
        done += (size_t)n;
    }
    return VMENC_OK;
}

vmenc_status audit_read_tail_at(int fd, const audit_key *k, uint64_t size, tail_info *out) {
    tail_info t;
    memset(&t, 0, sizeof(t));
    t.size = size;
    if (t.size == 0) {
        *out = t;
        return VMENC_OK;
    }
    /* Records are shorter than VMENC_AUDIT_MAX_LINE, so the last two lines
     * lie in the final 2 * VMENC_AUDIT_MAX_LINE bytes; anything else is not
     * a log we wrote. */
    size_t want = 2 * (size_t)VMENC_AUDIT_MAX_LINE;
    size_t n = t.size < want ? (size_t)t.size : want;
    uint64_t base = t.size - n;
    uint8_t *buf = malloc(n);
    VMENC_ENSURE(buf != NULL, VMENC_E_NOMEM);
    audit_record *rec = NULL;
    vmenc_status rv;
    VMENC_GUARD_GOTO(rv, pread_exact(fd, buf, n, base), out);

    /* The last newline ends the last complete line. */
    size_t end = n;
    while (end > 0 && buf[end - 1] != '\n')
        end--;
    t.torn_len = n - end;
    if (end == 0) {
        /* No newline at all in the window: only a torn first line fits. */
        VMENC_ENSURE_GOTO(rv, base == 0 && t.torn_len < VMENC_AUDIT_MAX_LINE, VMENC_E_AUDIT_TAMPERED, out);
        rv = VMENC_OK;
        goto done;
    }
    VMENC_ENSURE_GOTO(rv, t.torn_len < VMENC_AUDIT_MAX_LINE, VMENC_E_AUDIT_TAMPERED, out);
    size_t start = end - 1;
    while (start > 0 && buf[start - 1] != '\n')
        start--;
    /* A line that starts before the window is too long to be a record. */
    VMENC_ENSURE_GOTO(rv, start > 0 || base == 0, VMENC_E_AUDIT_TAMPERED, out);
    rec = malloc(sizeof(*rec));
    VMENC_ENSURE_GOTO(rv, rec != NULL, VMENC_E_NOMEM, out);
    rv = audit_check_line(k, buf + start, end - 1 - start, rec);
    if (rv == VMENC_E_PARSE || rv == VMENC_E_TOO_LARGE || rv == VMENC_E_BAD_ENCODING || rv == VMENC_E_BAD_VERSION ||
        rv == VMENC_E_TRAILING_DATA)
        rv = VMENC_E_AUDIT_TAMPERED;
    if (rv != VMENC_OK)
        goto out;
    t.has_record = true;
    t.seq = rec->seq;
    memcpy(t.hash, rec->mac, VMENC_AUDIT_HASH_BYTES);
    t.has_chain = rec->has_chain;
    memcpy(t.chain, rec->chain, AUDIT_CHAIN_BYTES);
done:
    *out = t;
out:
    free(rec);
    free(buf);
    return rv;
}

/* ---- the format ------------------------------------------------------------------- */

void audit_checkpoint_serialise(vmenc_cbb *cbb, const audit_checkpoint *cp) {
    vmenc_cbb_add_bytes(cbb, (const uint8_t *)AUDIT_CHECKPOINT_MAGIC, 8);
    vmenc_cbb_add_u8(cbb, AUDIT_CHECKPOINT_VERSION);
    vmenc_cbb_add_u8(cbb, cp->has_chain ? 1 : 0);
    vmenc_cbb_add_u64(cbb, cp->seq);
    vmenc_cbb_add_bytes(cbb, cp->hash, VMENC_AUDIT_HASH_BYTES);
    if (cp->has_chain)
        vmenc_cbb_add_bytes(cbb, cp->chain, AUDIT_CHAIN_BYTES);
    else
        vmenc_cbb_add_zeros(cbb, AUDIT_CHAIN_BYTES);
    vmenc_cbb_add_u64(cbb, cp->offset);
    vmenc_cbb_add_u64(cbb, cp->time_ms);
    vmenc_cbb_add_bytes(cbb, cp->kid, AUDIT_KID_BYTES);
    vmenc_cbb_add_bytes(cbb, cp->mac, VMENC_AUDIT_HASH_BYTES);
}

static bool all_zero(const uint8_t *p, size_t n) {
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

vmenc_status audit_checkpoint_parse(const uint8_t *data, size_t len, audit_checkpoint *out) {
    VMENC_ENSURE(data != NULL || len == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE_REF(out);
    memset(out, 0, sizeof(*out));
    vmenc_cbs cbs;
    vmenc_cbs_init(&cbs, data, len);
    uint8_t magic[8], version, flags;
    VMENC_ENSURE(vmenc_cbs_copy_bytes(&cbs, magic, sizeof(magic)), VMENC_E_TRUNCATED);
    VMENC_ENSURE(memcmp(magic, AUDIT_CHECKPOINT_MAGIC, sizeof(magic)) == 0, VMENC_E_BAD_MAGIC);
    VMENC_ENSURE(vmenc_cbs_get_u8(&cbs, &version), VMENC_E_TRUNCATED);
    VMENC_ENSURE(version == AUDIT_CHECKPOINT_VERSION, VMENC_E_BAD_VERSION);
    VMENC_ENSURE(vmenc_cbs_get_u8(&cbs, &flags), VMENC_E_TRUNCATED);
    VMENC_ENSURE((flags & ~1u) == 0, VMENC_E_PARSE);
    out->has_chain = (flags & 1u) != 0;
    VMENC_ENSURE(vmenc_cbs_get_u64(&cbs, &out->seq) &&
                     vmenc_cbs_copy_bytes(&cbs, out->hash, VMENC_AUDIT_HASH_BYTES) &&
                     vmenc_cbs_copy_bytes(&cbs, out->chain, AUDIT_CHAIN_BYTES) &&
                     vmenc_cbs_get_u64(&cbs, &out->offset) && vmenc_cbs_get_u64(&cbs, &out->time_ms) &&
                     vmenc_cbs_copy_bytes(&cbs, out->kid, AUDIT_KID_BYTES) &&
                     vmenc_cbs_copy_bytes(&cbs, out->mac, VMENC_AUDIT_HASH_BYTES),
                 VMENC_E_TRUNCATED);
    VMENC_ENSURE(vmenc_cbs_len(&cbs) == 0, VMENC_E_TRAILING_DATA);
    /* One encoding: no chain ID means zeros there. */
    VMENC_ENSURE(out->has_chain || all_zero(out->chain, AUDIT_CHAIN_BYTES), VMENC_E_PARSE);
    /* Before the first record nothing is sealed but the genesis. */
    VMENC_ENSURE(out->seq != 0 || (out->offset == 0 && all_zero(out->hash, VMENC_AUDIT_HASH_BYTES)),
                 VMENC_E_PARSE);
    return VMENC_OK;
}

static vmenc_status cp_mac(const audit_key *k, const audit_checkpoint *cp, uint8_t out[VMENC_AUDIT_HASH_BYTES]) {
    uint8_t buf[AUDIT_CHECKPOINT_BYTES];
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, buf, sizeof(buf));
    audit_checkpoint_serialise(&cbb, cp);
    VMENC_GUARD(vmenc_cbb_status(&cbb));
    crypto_generichash_state st;
    vmenc_status rv = VMENC_OK;
    if (crypto_generichash_init(&st, k->secret->bytes, k->secret->len, VMENC_AUDIT_HASH_BYTES) != 0 ||
        crypto_generichash_update(&st, (const uint8_t *)k_cp_domain, sizeof(k_cp_domain) - 1) != 0 ||
        crypto_generichash_update(&st, buf, AUDIT_CHECKPOINT_BODY_BYTES) != 0 ||
        crypto_generichash_final(&st, out, VMENC_AUDIT_HASH_BYTES) != 0)
        rv = VMENC_E_CRYPTO;
    sodium_memzero(&st, sizeof(st)); /* the state holds the keyed block */
    return rv;
}

vmenc_status audit_checkpoint_seal(const audit_key *k, audit_checkpoint *cp) {
    memcpy(cp->kid, k->kid, AUDIT_KID_BYTES);
    return cp_mac(k, cp, cp->mac);
}

vmenc_status audit_checkpoint_open(const audit_key *k, const uint8_t *data, size_t len, audit_checkpoint *out) {
    VMENC_GUARD(audit_checkpoint_parse(data, len, out));
    VMENC_ENSURE(sodium_memcmp(out->kid, k->kid, AUDIT_KID_BYTES) == 0, VMENC_E_AUTH);
    uint8_t mac[VMENC_AUDIT_HASH_BYTES];
    VMENC_GUARD(cp_mac(k, out, mac));
    VMENC_ENSURE(vmenc_ct_equal(mac, out->mac, sizeof(mac)), VMENC_E_AUDIT_TAMPERED);
    return VMENC_OK;
}

/* ---- the file ---------------------------------------------------------------------- */

/* split_path opens |path|'s directory and points |*name| at its last
 * component. */
static vmenc_status split_path(const char *path, int *out_dfd, const char **out_name) {
    const char *slash = strrchr(path, '/');
    int dfd;
    if (slash == NULL) {
        dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        *out_name = path;
    } else {
        size_t n = (size_t)(slash - path);
        char *dir = malloc(n + 2);
        VMENC_ENSURE(dir != NULL, VMENC_E_NOMEM);
        memcpy(dir, path, n);
        dir[n] = '\0';
        if (n == 0)
            memcpy(dir, "/", 2);
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        free(dir);
        *out_name = slash + 1;
    }
    VMENC_ENSURE(dfd >= 0, errno == ENOENT ? VMENC_E_NOT_FOUND : VMENC_E_IO);
    if ((*out_name)[0] == '\0') { /* "dir/": no file named */
        close(dfd);
        return VMENC_E_INVALID_ARG;
    }
    *out_dfd = dfd;
    return VMENC_OK;
}

vmenc_status audit_checkpoint_load(const audit_key *k, const char *path, audit_checkpoint *out) {
    int dfd = -1;
    const char *name = NULL;
    VMENC_GUARD(split_path(path, &dfd, &name));
    uint8_t *data = NULL;
    size_t len = 0;
    vmenc_status rv = vmenc_fs_read_file(dfd, name, AUDIT_CHECKPOINT_MAX_FILE, &data, &len);
    close(dfd);
    if (rv == VMENC_E_TOO_LARGE || rv == VMENC_E_BAD_PATH)
        return VMENC_E_AUDIT_TAMPERED; /* not a file we wrote */
    VMENC_GUARD(rv);
    rv = audit_checkpoint_open(k, data, len, out);
    free(data);
    if (rv != VMENC_OK && rv != VMENC_E_AUTH && rv != VMENC_E_AUDIT_TAMPERED && rv != VMENC_E_CRYPTO)
        rv = VMENC_E_AUDIT_TAMPERED; /* any parse error: the file is not a valid checkpoint */
    return rv;
}

static vmenc_status checkpoint_store(const audit_key *k, const char *path, audit_checkpoint *cp, bool sync) {
    VMENC_GUARD(audit_checkpoint_seal(k, cp));
    uint8_t buf[AUDIT_CHECKPOINT_BYTES];
    vmenc_cbb cbb;
    vmenc_cbb_init_fixed(&cbb, buf, sizeof(buf));
    audit_checkpoint_serialise(&cbb, cp);
    VMENC_GUARD(vmenc_cbb_status(&cbb));
    int dfd = -1;
    const char *name = NULL;
    VMENC_GUARD(split_path(path, &dfd, &name));
    vmenc_status rv = vmenc_fs_atomic_write(dfd, name, buf, sizeof(buf), sync);
    close(dfd);
    return rv;
}

static int datasync(int fd) {
    int r;
    do
        r = fdatasync(fd);
    while (r != 0 && errno == EINTR);
    return r;
}

vmenc_status audit_checkpoint_advance(int log_fd, const audit_key *k, const char *path, bool init, bool sync) {
    audit_checkpoint cur;
    bool have = true;
    vmenc_status rv = audit_checkpoint_load(k, path, &cur);
    if (rv == VMENC_E_NOT_FOUND && init)
        have = false;
    else
        VMENC_GUARD(rv); /* a bad or foreign checkpoint stays as evidence */
    struct stat st;
    VMENC_ENSURE(fstat(log_fd, &st) == 0, VMENC_E_IO);
    tail_info t;
    VMENC_GUARD(audit_read_tail_at(log_fd, k, (uint64_t)st.st_size, &t));
    uint64_t end = t.size - t.torn_len; /* a torn line is nobody's head */
    if (have) {
        VMENC_ENSURE(end >= cur.offset, VMENC_E_AUDIT_TRUNCATED);
        if (t.has_record && t.seq == cur.seq && end == cur.offset) {
            VMENC_ENSURE(vmenc_ct_equal(t.hash, cur.hash, VMENC_AUDIT_HASH_BYTES), VMENC_E_AUDIT_TAMPERED);
            return VMENC_OK; /* already sealed */
        }
        VMENC_ENSURE(t.has_record && t.seq > cur.seq, VMENC_E_AUDIT_TAMPERED);
        /* The records after the sealed head must continue it. */
        audit_src src = {.fd = log_fd, .len = end, .start = cur.offset};
        vmenc_audit_verify_result res;
        memset(&res, 0, sizeof(res));
        rv = audit_verify_srcs(k, cur.seq, cur.hash, t.seq, &src, 1, &res);
        if (rv == VMENC_E_AUTH || rv == VMENC_E_AUDIT_TRUNCATED)
            rv = VMENC_E_AUDIT_TAMPERED;
        VMENC_GUARD(rv);
        VMENC_ENSURE(res.last_seq == t.seq && vmenc_ct_equal(res.last_hash, t.hash, VMENC_AUDIT_HASH_BYTES),
                     VMENC_E_AUDIT_TAMPERED);
    }
    audit_checkpoint next;
    memset(&next, 0, sizeof(next));
    if (t.has_record) {
        next.seq = t.seq;
        memcpy(next.hash, t.hash, VMENC_AUDIT_HASH_BYTES);
        next.has_chain = t.has_chain;
        if (t.has_chain)
            memcpy(next.chain, t.chain, AUDIT_CHAIN_BYTES);
        next.offset = end;
    }
    next.time_ms = vmenc_now_realtime_ms();
    /* The log first: a durable checkpoint must never seal records a power
     * failure could still take away (that would read as a cut log). */
    if (sync)
        VMENC_ENSURE(datasync(log_fd) == 0, VMENC_E_IO);
    return checkpoint_store(k, path, &next, sync);
}

/* ---- the verifier's check ------------------------------------------------------------ */

const char *vmenc_audit_anchor_name(vmenc_audit_anchor anchor) {
    switch (anchor) {
    case VMENC_AUDIT_ANCHOR_OK: return "ok";
    case VMENC_AUDIT_ANCHOR_MISSING: return "missing";
    case VMENC_AUDIT_ANCHOR_CUT: return "cut";
    case VMENC_AUDIT_ANCHOR_DIVERGED: return "diverged";
    case VMENC_AUDIT_ANCHOR_BAD_SEAL: return "bad";
    case VMENC_AUDIT_ANCHOR_WRONG_KEY: return "wrong key";
    }
    return "unknown";
}

static vmenc_status anchor_status(vmenc_audit_anchor a) {
    switch (a) {
    case VMENC_AUDIT_ANCHOR_OK: return VMENC_OK;
    case VMENC_AUDIT_ANCHOR_MISSING: return VMENC_E_NOT_FOUND;
    case VMENC_AUDIT_ANCHOR_CUT: return VMENC_E_AUDIT_TRUNCATED;
    case VMENC_AUDIT_ANCHOR_WRONG_KEY: return VMENC_E_AUTH;
    case VMENC_AUDIT_ANCHOR_DIVERGED:
    case VMENC_AUDIT_ANCHOR_BAD_SEAL: break;
    }
    return VMENC_E_AUDIT_TAMPERED;
}

/* anchor_compare decides the state of a loaded checkpoint |cp| against the
 * log |fd| (-1: no log file) of |size| bytes, and fills |r|'s log fields. */
static vmenc_status anchor_compare(const audit_key *k, const audit_checkpoint *cp, int fd, uint64_t size,
                                   vmenc_audit_anchor_result *r) {
    tail_info t;
    r->log_bytes = size;
    if (fd >= 0 && audit_read_tail_at(fd, k, size, &t) == VMENC_OK && t.has_record) {
        r->log_last_seq = t.seq;
        r->log_chain_differs = cp->seq > 0 && (t.has_chain != cp->has_chain ||
                                               (t.has_chain && sodium_memcmp(t.chain, cp->chain, AUDIT_CHAIN_BYTES) != 0));
    } else {
        r->log_chain_differs = cp->seq > 0; /* no readable record of the sealed chain */
    }
    if (cp->seq == 0) { /* nothing sealed yet but the chain's start */
        r->state = VMENC_AUDIT_ANCHOR_OK;
        return VMENC_OK;
    }
    if (size < cp->offset) {
        r->state = VMENC_AUDIT_ANCHOR_CUT;
        return VMENC_OK;
    }
    /* The line that ends where the sealed head ended must be that record. */
    vmenc_status s = audit_read_tail_at(fd, k, cp->offset, &t);
    if (s == VMENC_E_NOMEM || s == VMENC_E_IO)
        return s;
    r->state = s == VMENC_OK && t.torn_len == 0 && t.has_record && t.seq == cp->seq &&
                       vmenc_ct_equal(t.hash, cp->hash, VMENC_AUDIT_HASH_BYTES)
                   ? VMENC_AUDIT_ANCHOR_OK
                   : VMENC_AUDIT_ANCHOR_DIVERGED;
    return VMENC_OK;
}

vmenc_status vmenc_audit_checkpoint_check(const uint8_t *key, size_t key_len, const char *log_path,
                                          const char *checkpoint_path, vmenc_audit_anchor_result *out) {
    VMENC_ENSURE(log_path != NULL && checkpoint_path != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= sizeof(*out), VMENC_E_ABI_VERSION);
    audit_key k;
    VMENC_GUARD(audit_key_init(&k, key, key_len));
    vmenc_audit_anchor_result r;
    memset(&r, 0, sizeof(r));
    r.struct_size = out->struct_size;
    int fd = open(log_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    vmenc_status rv = VMENC_OK;
    uint64_t size = 0;
    struct stat st;
    if (fd < 0 && errno != ENOENT)
        rv = VMENC_E_IO;
    else if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)))
        rv = VMENC_E_IO;
    else if (fd >= 0)
        size = (uint64_t)st.st_size;
    audit_checkpoint cp;
    if (rv == VMENC_OK) {
        rv = audit_checkpoint_load(&k, checkpoint_path, &cp);
        if (rv == VMENC_OK) {
            r.sealed_seq = cp.seq;
            r.sealed_time_ms = cp.time_ms;
            r.sealed_offset = cp.offset;
            memcpy(r.sealed_hash, cp.hash, VMENC_AUDIT_HASH_BYTES);
            rv = anchor_compare(&k, &cp, fd, size, &r);
        } else if (rv == VMENC_E_NOT_FOUND || rv == VMENC_E_AUDIT_TAMPERED || rv == VMENC_E_AUTH) {
            r.state = rv == VMENC_E_NOT_FOUND ? VMENC_AUDIT_ANCHOR_MISSING
                      : rv == VMENC_E_AUTH    ? VMENC_AUDIT_ANCHOR_WRONG_KEY
                                              : VMENC_AUDIT_ANCHOR_BAD_SEAL;
            tail_info t;
            r.log_bytes = size;
            if (fd >= 0 && audit_read_tail_at(fd, &k, size, &t) == VMENC_OK && t.has_record)
                r.log_last_seq = t.seq;
            rv = VMENC_OK;
        }
    }
    if (fd >= 0)
        close(fd);
    audit_key_cleanup(&k);
    VMENC_GUARD(rv);
    *out = r;
    return anchor_status(r.state);
}
