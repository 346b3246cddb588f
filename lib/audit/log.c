/*
 * lib/audit/log.c - the hash-chained JSON-lines log writer: open/resume,
 * torn-tail detection and explicit recovery, append (one write() per record
 * under a mutex, O_APPEND), fsync policies, rotation; and the shared mode
 * (VMENC_AUDIT_LOG_SHARED) in which many processes append to one chain.
 * The record format is docs/audit.md's.
 *
 * Safety rule: a record is chained to the file's real last record - the one
 * read under the file lock - never to a position remembered from before the
 * lock was taken.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/checkpoint.h"
#include "audit/mirror.h"
#include "audit/record.h"
#include "core/lock.h"

/*
 * Locking. |mu| guards the chain and the file: every record is built and
 * written under it, so records never interleave and the chain has one
 * order. Syncing happens outside |mu|, under |sync_mu|, so that while one
 * thread waits in fdatasync others can write theirs and the next sync
 * covers all of them (group commit): with FSYNC_EVERY an append still
 * returns only once a sync that began after its write has succeeded.
 * Lock order: sync_mu before mu. rotate and free hold both, so the fd a
 * syncing thread uses cannot be closed under it.
 */
struct vmenc_audit_log {
    pthread_mutex_t mu;
    pthread_mutex_t sync_mu;
    /* under mu */
    int fd;
    char *path;
    audit_key key;       /* immutable after open */
    vmenc_audit_fsync policy;
    uint32_t every_n;
    uint32_t unsynced;   /* records written since a sync was last due */
    uint64_t seq;        /* last record's sequence number */
    uint8_t hash[VMENC_AUDIT_HASH_BYTES];
    bool has_chain;      /* false: a chain from before chain IDs (version 1) */
    uint8_t chain[AUDIT_CHAIN_BYTES];
    uint64_t size;       /* current file size: where a failed write is cut back to */
    bool broken;         /* a write could not be undone or a sync failed: refuse appends */
    bool shared;         /* VMENC_AUDIT_LOG_SHARED: the flock is taken per append */
    bool recover;        /* VMENC_AUDIT_LOG_RECOVER */
    uint32_t lock_timeout_ms;
    char *cp_path;       /* the sealed checkpoint (NULL: none); immutable after open */
    audit_mirror *mirror;   /* the cluster mirror (NULL: none), not owned */
    char *mirror_host;      /* whose records these are, in the mirror */
    bool mirror_behind;     /* the last copy failed: catch up from the file first */
    vmenc_status mirror_rv; /* the last record's copy to the mirror */
    uint32_t mirror_backoff_ms; /* after a failed copy, no attempt for this long (0: try every append) */
    uint64_t mirror_retry_at;   /* monotonic ms before which a behind mirror is not tried */
    uint64_t mirror_failures;   /* copies that failed (the record stayed local only) */
    bool cp_init;        /* VMENC_AUDIT_LOG_CHECKPOINT_INIT */
    uint64_t records, bytes;
    /* under sync_mu */
    uint64_t synced_seq; /* every record up to this one is durable */
    bool sync_failed;    /* after a failed fsync, never trust a later one */
    uint64_t syncs;
};

/* ---- file helpers ------------------------------------------------------------ */

static vmenc_status io_status(int err) {
    switch (err) {
    case ENOMEM: return VMENC_E_NOMEM;
    case EWOULDBLOCK: return VMENC_E_LOCKED;
    default: return VMENC_E_IO;
    }
}

static vmenc_status write_all(int fd, const uint8_t *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        VMENC_ENSURE(n > 0, VMENC_E_IO);
        done += (size_t)n;
    }
    return VMENC_OK;
}

static int datasync(int fd) {
    int r;
    do
        r = fdatasync(fd);
    while (r != 0 && errno == EINTR);
    return r;
}

/* sync_dir makes a newly created file's directory entry durable. */
static vmenc_status sync_dir(const char *path) {
    char *copy = strdup(path);
    VMENC_ENSURE(copy != NULL, VMENC_E_NOMEM);
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    VMENC_ENSURE(dfd >= 0, VMENC_E_IO);
    int r = fsync(dfd);
    close(dfd);
    VMENC_ENSURE(r == 0, VMENC_E_IO);
    return VMENC_OK;
}

/* open_locked opens |path| for appending (creating it 0600), takes an
 * exclusive flock (lib/core/lock.h, no waiting) unless |lock| is false, and
 * reports whether the file was created. */
static vmenc_status open_locked(const char *path, bool lock, int *out_fd, bool *out_created) {
    bool created = true;
    /* O_EXCL with O_CREAT never follows a final symlink; O_NOFOLLOW makes
     * the reopen of an existing file refuse one too. */
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        created = false;
        fd = open(path, O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
    }
    VMENC_ENSURE(fd >= 0, io_status(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return VMENC_E_IO;
    }
    vmenc_status s = lock ? vmenc_lock_fd(fd, 0) : VMENC_OK; /* one try: VMENC_E_LOCKED or VMENC_E_IO */
    if (s != VMENC_OK) {
        close(fd);
        if (created)
            (void)unlink(path);
        return s;
    }
    *out_fd = fd;
    *out_created = created;
    return VMENC_OK;
}

/* ---- the tail ------------------------------------------------------------------ */

/* read_tail: audit_read_tail_at over the whole file. */
static vmenc_status read_tail(int fd, const audit_key *k, tail_info *out) {
    struct stat st;
    VMENC_ENSURE(fstat(fd, &st) == 0, VMENC_E_IO);
    return audit_read_tail_at(fd, k, (uint64_t)st.st_size, out);
}

/* ---- options ------------------------------------------------------------------- */

static vmenc_status check_options(const vmenc_audit_log_options *o) {
    VMENC_ENSURE_REF(o);
    /* The first version ends with start_hash; start_chain_id was appended. */
    VMENC_ENSURE(o->struct_size >= offsetof(vmenc_audit_log_options, start_hash) + sizeof(const uint8_t *),
                 VMENC_E_ABI_VERSION);
    VMENC_ENSURE(o->path != NULL && o->path[0] != '\0', VMENC_E_INVALID_ARG);
    VMENC_ENSURE(o->fsync == VMENC_AUDIT_FSYNC_EVERY || o->fsync == VMENC_AUDIT_FSYNC_NEVER ||
                     (o->fsync == VMENC_AUDIT_FSYNC_EVERY_N && o->fsync_every_n >= 1),
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE((o->flags & ~(VMENC_AUDIT_LOG_RECOVER | VMENC_AUDIT_LOG_VERIFY_ALL | VMENC_AUDIT_LOG_SHARED |
                                  VMENC_AUDIT_LOG_CHECKPOINT_INIT)) == 0,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(o->start_hash != NULL || o->start_seq == 0, VMENC_E_INVALID_ARG);
    return VMENC_OK;
}

/* verify_whole runs the verifier over the file, ignoring a torn tail if the
 * caller asked for recovery. */
static vmenc_status verify_whole(vmenc_audit_log *log, const vmenc_audit_log_options *o,
                                 const tail_info *t) {
    audit_src src = {.fd = log->fd, .len = t->size};
    if (o->flags & VMENC_AUDIT_LOG_RECOVER)
        src.len -= t->torn_len;
    if (src.len == 0)
        return VMENC_OK;
    vmenc_audit_verify_result res;
    memset(&res, 0, sizeof(res));
    return audit_verify_srcs(&log->key, o->start_seq, o->start_hash, 0, &src, 1, &res);
}

static vmenc_status write_record_locked(vmenc_audit_log *log, const audit_fields *f, uint64_t *out_seq,
                                        bool *out_need_sync);

/* recover cuts a torn final line off and records that it did; the record
 * still needs the sync |*out_need_sync| says. The caller holds |mu| (or
 * owns the log alone, at open) and, in shared mode, the file lock. */
static vmenc_status recover(vmenc_audit_log *log, const tail_info *t, bool *out_need_sync) {
    uint64_t keep = t->size - t->torn_len;
    VMENC_ENSURE(ftruncate(log->fd, (off_t)keep) == 0, VMENC_E_IO);
    if (log->policy != VMENC_AUDIT_FSYNC_NEVER) {
        VMENC_ENSURE(datasync(log->fd) == 0, VMENC_E_IO);
        log->syncs++;
    }
    log->size = keep;
    char reason[128];
    snprintf(reason, sizeof(reason), "discarded a torn final record of %llu bytes",
             (unsigned long long)t->torn_len);
    vmenc_audit_event ev = {
        .struct_size = sizeof(ev),
        .principal = "vmenc",
        .operation = "audit.log.recover",
        .outcome = VMENC_AUDIT_SUCCESS,
        .reason = reason,
    };
    audit_fields f;
    VMENC_GUARD(audit_fields_from_event(&ev, vmenc_now_realtime_ms(), &f));
    uint64_t seq = 0;
    return write_record_locked(log, &f, &seq, out_need_sync);
}

/* ---- the shared mode ------------------------------------------------------------ */

/* share_lock takes the log's file lock on a new open file description of
 * the log (closing it - vmenc_lock_release - is the unlock), waiting at most
 * lock_timeout_ms for another writer. */
static vmenc_status share_lock(const vmenc_audit_log *log, int *out_lfd) {
    int lfd = open(log->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    VMENC_ENSURE(lfd >= 0, io_status(errno));
    vmenc_status s = vmenc_lock_fd(lfd, log->lock_timeout_ms);
    if (s != VMENC_OK) {
        close(lfd);
        return s;
    }
    *out_lfd = lfd;
    return VMENC_OK;
}

static void adopt_tail(vmenc_audit_log *log, const tail_info *t) {
    log->seq = t->seq;
    memcpy(log->hash, t->hash, sizeof(log->hash));
    log->has_chain = t->has_chain;
    memcpy(log->chain, t->chain, sizeof(log->chain));
}

/* catch_up: under the file lock, if another writer changed the file since
 * this handle last wrote, continue from the file's real last record (and
 * cut off a torn one that writer left, if recovery is on). */
static vmenc_status catch_up(vmenc_audit_log *log, bool *out_need_sync) {
    struct stat st;
    VMENC_ENSURE(fstat(log->fd, &st) == 0, VMENC_E_IO);
    if ((uint64_t)st.st_size == log->size)
        return VMENC_OK;
    tail_info t;
    VMENC_GUARD(read_tail(log->fd, &log->key, &t));
    if (t.has_record)
        adopt_tail(log, &t);
    log->size = t.size;
    if (t.torn_len > 0) {
        VMENC_ENSURE(log->recover, VMENC_E_INTERRUPTED);
        VMENC_GUARD(recover(log, &t, out_need_sync));
    }
    return VMENC_OK;
}

static void log_destroy(vmenc_audit_log *log) {
    if (log->fd >= 0)
        close(log->fd); /* releases the flock */
    audit_key_cleanup(&log->key);
    free(log->path);
    free(log->cp_path);
    free(log->mirror_host);
    pthread_mutex_destroy(&log->mu);
    pthread_mutex_destroy(&log->sync_mu);
    sodium_memzero(log, sizeof(*log));
    free(log);
}

vmenc_status vmenc_audit_log_open(const vmenc_audit_log_options *options, vmenc_audit_log **out) {
    VMENC_GUARD(check_options(options));
    VMENC_ENSURE_REF(out);
    VMENC_GUARD(vmenc_ensure_init());
    vmenc_audit_log *log = calloc(1, sizeof(*log));
    VMENC_ENSURE(log != NULL, VMENC_E_NOMEM);
    log->fd = -1;
    if (pthread_mutex_init(&log->mu, NULL) != 0) {
        free(log);
        return VMENC_E_NOMEM;
    }
    if (pthread_mutex_init(&log->sync_mu, NULL) != 0) {
        pthread_mutex_destroy(&log->mu);
        free(log);
        return VMENC_E_NOMEM;
    }
    vmenc_status rv;
    bool created = false;
    log->policy = options->fsync;
    log->every_n = options->fsync_every_n;
    log->shared = (options->flags & VMENC_AUDIT_LOG_SHARED) != 0;
    log->recover = (options->flags & VMENC_AUDIT_LOG_RECOVER) != 0;
    if (options->struct_size >= offsetof(vmenc_audit_log_options, lock_timeout_ms) + sizeof(uint32_t))
        log->lock_timeout_ms = options->lock_timeout_ms;
    log->cp_init = (options->flags & VMENC_AUDIT_LOG_CHECKPOINT_INIT) != 0;
    int lfd = -1;
    if (options->struct_size >= offsetof(vmenc_audit_log_options, checkpoint_path) + sizeof(const char *) &&
        options->checkpoint_path != NULL) {
        VMENC_ENSURE_GOTO(rv, options->checkpoint_path[0] != '\0', VMENC_E_INVALID_ARG, fail);
        log->cp_path = strdup(options->checkpoint_path);
        VMENC_ENSURE_GOTO(rv, log->cp_path != NULL, VMENC_E_NOMEM, fail);
    }
    VMENC_GUARD_GOTO(rv, audit_key_init(&log->key, options->key, options->key_len), fail);
    log->path = strdup(options->path);
    VMENC_ENSURE_GOTO(rv, log->path != NULL, VMENC_E_NOMEM, fail);
    VMENC_GUARD_GOTO(rv, open_locked(options->path, !log->shared, &log->fd, &created), fail);
    if (log->shared) /* held while the tail is read (and a torn one cut off) */
        VMENC_GUARD_GOTO(rv, share_lock(log, &lfd), fail);

    tail_info t;
    VMENC_GUARD_GOTO(rv, read_tail(log->fd, &log->key, &t), fail);
    if (options->flags & VMENC_AUDIT_LOG_VERIFY_ALL)
        VMENC_GUARD_GOTO(rv, verify_whole(log, options, &t), fail);
    VMENC_ENSURE_GOTO(rv, t.torn_len == 0 || (options->flags & VMENC_AUDIT_LOG_RECOVER),
                      VMENC_E_INTERRUPTED, fail);
    if (t.has_record) {
        log->seq = t.seq;
        memcpy(log->hash, t.hash, sizeof(log->hash));
        log->has_chain = t.has_chain; /* a version 1 chain goes on as one */
        memcpy(log->chain, t.chain, sizeof(log->chain));
    } else {
        log->seq = options->start_seq;
        const uint8_t *cid = options->struct_size >= offsetof(vmenc_audit_log_options, start_chain_id) +
                                                          sizeof(const uint8_t *)
                                 ? options->start_chain_id
                                 : NULL;
        if (options->start_hash != NULL)
            memcpy(log->hash, options->start_hash, sizeof(log->hash));
        if (cid != NULL) {
            log->has_chain = true;
            memcpy(log->chain, cid, sizeof(log->chain));
        } else if (options->start_hash == NULL) {
            log->has_chain = true; /* a new chain: a new identity */
            randombytes_buf(log->chain, sizeof(log->chain));
        }
    }
    log->size = t.size;
    log->synced_seq = log->seq; /* what is in the file already counts as durable */
    if (created && log->policy != VMENC_AUDIT_FSYNC_NEVER)
        VMENC_GUARD_GOTO(rv, sync_dir(options->path), fail);
    if (t.torn_len > 0) {
        bool need_sync = false;
        VMENC_GUARD_GOTO(rv, recover(log, &t, &need_sync), fail);
        if (need_sync) { /* alone with the log: no group commit to join */
            VMENC_ENSURE_GOTO(rv, datasync(log->fd) == 0, VMENC_E_IO, fail);
            log->syncs++;
            log->synced_seq = log->seq;
        }
    }
    vmenc_lock_release(lfd);
    *out = log;
    return VMENC_OK;
fail:
    if (created && log->fd >= 0)
        (void)unlink(options->path); /* leave no trace of a failed open */
    vmenc_lock_release(lfd);
    log_destroy(log);
    return rv;
}

/* ---- append ------------------------------------------------------------------------ */

/* sync_through makes every record up to |target| durable: if a sync that
 * started after that record was written has already succeeded, nothing to
 * do; else fdatasync now, covering every record written so far (by any
 * thread). |force| syncs even if nothing is pending. Takes sync_mu, then mu
 * briefly; the caller holds neither. */
static vmenc_status sync_through(vmenc_audit_log *log, uint64_t target, bool force) {
    VMENC_ENSURE(pthread_mutex_lock(&log->sync_mu) == 0, VMENC_E_INTERNAL);
    vmenc_status rv = VMENC_OK;
    if (log->sync_failed) {
        rv = VMENC_E_IO;
        goto out;
    }
    if (!force && log->synced_seq >= target)
        goto out;
    pthread_mutex_lock(&log->mu);
    int fd = log->fd;
    uint64_t upto = log->seq;
    pthread_mutex_unlock(&log->mu);
    if (datasync(fd) != 0) {
        /* After a failed fsync the kernel may have dropped the dirty pages:
         * a later fsync could "succeed" without the data. Stop here. */
        log->sync_failed = true;
        pthread_mutex_lock(&log->mu);
        log->broken = true;
        pthread_mutex_unlock(&log->mu);
        rv = VMENC_E_IO;
        goto out;
    }
    log->syncs++;
    if (upto > log->synced_seq)
        log->synced_seq = upto;
out:
    pthread_mutex_unlock(&log->sync_mu);
    return rv;
}

/* mirror_record copies the record just written to the mirror (the caller
 * holds |mu| and the file lock, so records reach it in chain order). A
 * mirror that refused (it is not at seq - 1) or failed before is brought up
 * to date from the file, which includes this record. */
static void mirror_record(vmenc_audit_log *log, uint64_t seq, const uint8_t *line, size_t len,
                          const uint8_t mac[VMENC_AUDIT_HASH_BYTES]) {
    audit_mirror *m = log->mirror;
    vmenc_status ms = VMENC_E_CONFLICT;
    /* A mirror that just failed (etcd down, no quorum) is left alone for
     * the back-off: each attempt can cost a request timeout under the
     * file lock. The record is in the local log; the mirror catches up. */
    if (log->mirror_behind && log->mirror_backoff_ms != 0 && vmenc_now_monotonic_ms() < log->mirror_retry_at) {
        log->mirror_failures++;
        return;
    }
    if (!log->mirror_behind)
        ms = AUDIT_MIRROR_HAS_OP(m, append) ? m->ops->append(m, log->mirror_host, seq, seq, line, len, mac)
                                            : VMENC_E_UNIMPLEMENTED;
    if (ms == VMENC_E_CONFLICT)
        ms = audit_mirror_catch_up(m, log->mirror_host, log->fd, log->size, &log->key);
    log->mirror_behind = ms != VMENC_OK;
    log->mirror_rv = ms;
    if (ms != VMENC_OK) {
        log->mirror_failures++;
        log->mirror_retry_at = vmenc_now_monotonic_ms() + log->mirror_backoff_ms;
    }
}

/* write_record_locked chains, writes and accounts one record. The caller
 * holds |mu| and, in shared mode, the file lock. */
static vmenc_status write_record_locked(vmenc_audit_log *log, const audit_fields *f, uint64_t *out_seq,
                                        bool *out_need_sync) {
    VMENC_ENSURE(!log->broken && log->fd >= 0, VMENC_E_BAD_STATE);
    VMENC_ENSURE(log->seq < UINT64_MAX, VMENC_E_LIMIT);
    vmenc_cbb cbb;
    VMENC_GUARD(vmenc_cbb_init(&cbb, 512));
    vmenc_cbb_set_max(&cbb, VMENC_AUDIT_MAX_LINE);
    vmenc_status rv;
    uint64_t seq = log->seq + 1;
    audit_write_body(&cbb, seq, log->has_chain ? log->chain : NULL, f, log->key.kid, log->hash);
    VMENC_GUARD_GOTO(rv, vmenc_cbb_status(&cbb), out);
    uint8_t mac[VMENC_AUDIT_HASH_BYTES];
    VMENC_GUARD_GOTO(rv, audit_mac(&log->key, vmenc_cbb_data(&cbb), vmenc_cbb_len(&cbb), mac), out);
    audit_write_mac_tail(&cbb, mac);
    VMENC_GUARD_GOTO(rv, vmenc_cbb_status(&cbb), out);

    /* One write() per record (more only if the kernel writes short). */
    rv = write_all(log->fd, vmenc_cbb_data(&cbb), vmenc_cbb_len(&cbb));
    if (rv != VMENC_OK) {
        /* Cut the partial record off so the chain stays intact; if even
         * that fails, refuse further appends (reopen detects the torn tail). */
        if (ftruncate(log->fd, (off_t)log->size) != 0)
            log->broken = true;
        goto out;
    }
    log->seq = seq;
    memcpy(log->hash, mac, sizeof(mac));
    log->size += vmenc_cbb_len(&cbb);
    if (log->mirror != NULL)
        mirror_record(log, seq, vmenc_cbb_data(&cbb), vmenc_cbb_len(&cbb), mac);
    log->records++;
    log->bytes += vmenc_cbb_len(&cbb);
    if (log->policy == VMENC_AUDIT_FSYNC_EVERY) {
        *out_need_sync = true;
    } else if (log->policy == VMENC_AUDIT_FSYNC_EVERY_N && ++log->unsynced >= log->every_n) {
        *out_need_sync = true;
        log->unsynced = 0;
    }
    *out_seq = seq;
out:
    vmenc_cbb_cleanup(&cbb);
    return rv;
}

vmenc_status audit_log_append_fields(vmenc_audit_log *log, const audit_fields *f,
                                     uint64_t *out_seq) {
    vmenc_status rv;
    bool need_sync = false;
    uint64_t seq = 0;
    int lfd = -1;
    VMENC_ENSURE(pthread_mutex_lock(&log->mu) == 0, VMENC_E_INTERNAL);
    VMENC_ENSURE_GOTO(rv, !log->broken && log->fd >= 0, VMENC_E_BAD_STATE, unlock);
    if (log->shared) {
        VMENC_GUARD_GOTO(rv, share_lock(log, &lfd), unlock);
        VMENC_GUARD_GOTO(rv, catch_up(log, &need_sync), unlock);
    }
    rv = write_record_locked(log, f, &seq, &need_sync);
unlock:
    vmenc_lock_release(lfd); /* the record is in the file: the next writer chains to it */
    pthread_mutex_unlock(&log->mu);
    if (rv == VMENC_OK && need_sync)
        rv = sync_through(log, seq, false);
    if (rv == VMENC_OK && out_seq != NULL)
        *out_seq = seq;
    /* The local log is the truth: a record that is in it is recorded. A
     * mirror that could not take it (down, no quorum, or refusing because
     * the log was cut) is behind; the next append catches it up, and
     * `audit verify --cluster` shows the lag or the defect. The command
     * never fails because the mirror is down (audit_log_mirror_state). */
    return rv;
}

vmenc_status audit_log_mirror_state(vmenc_audit_log *log, audit_log_mirror_info *out) {
    VMENC_ENSURE(log != NULL && out != NULL, VMENC_E_INVALID_ARG);
    memset(out, 0, sizeof(*out));
    VMENC_ENSURE(pthread_mutex_lock(&log->mu) == 0, VMENC_E_INTERNAL);
    out->installed = log->mirror != NULL;
    out->behind = log->mirror_behind;
    out->last_rv = log->mirror_rv;
    out->failures = log->mirror_failures;
    pthread_mutex_unlock(&log->mu);
    return VMENC_OK;
}

void audit_log_set_mirror_backoff(vmenc_audit_log *log, uint32_t ms) {
    if (log == NULL || pthread_mutex_lock(&log->mu) != 0)
        return;
    log->mirror_backoff_ms = ms;
    pthread_mutex_unlock(&log->mu);
}

vmenc_status audit_log_adopt_checkpoint(vmenc_audit_log *log, vmenc_audit_verify_result *out) {
    VMENC_ENSURE(log != NULL && out != NULL, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(out->struct_size >= sizeof(*out), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(log->cp_path != NULL, VMENC_E_BAD_STATE);
    vmenc_status rv;
    int lfd = -1;
    VMENC_ENSURE(pthread_mutex_lock(&log->mu) == 0, VMENC_E_INTERNAL);
    VMENC_ENSURE_GOTO(rv, !log->broken && log->fd >= 0, VMENC_E_BAD_STATE, unlock);
    /* Under the file lock nobody appends or seals: the chain verified is
     * the chain sealed. */
    if (log->shared)
        VMENC_GUARD_GOTO(rv, share_lock(log, &lfd), unlock);
    audit_checkpoint cur;
    rv = audit_checkpoint_load(&log->key, log->cp_path, &cur);
    if (rv == VMENC_OK)
        rv = VMENC_E_EXISTS; /* adoption is for a log that never had one: never a replacement */
    if (rv != VMENC_E_NOT_FOUND) {
        if (rv != VMENC_E_EXISTS && rv != VMENC_E_IO && rv != VMENC_E_NOMEM)
            rv = VMENC_E_EXISTS; /* a checkpoint is there, bad or foreign: it stays as evidence */
        goto unlock;
    }
    struct stat st;
    VMENC_ENSURE_GOTO(rv, fstat(log->fd, &st) == 0, VMENC_E_IO, unlock);
    tail_info t;
    VMENC_GUARD_GOTO(rv, audit_read_tail_at(log->fd, &log->key, (uint64_t)st.st_size, &t), unlock);
    VMENC_ENSURE_GOTO(rv, t.torn_len == 0, VMENC_E_INTERRUPTED, unlock);
    audit_src src = {.fd = log->fd, .len = t.size};
    uint8_t zero[VMENC_AUDIT_HASH_BYTES] = {0};
    vmenc_audit_verify_result res;
    memset(&res, 0, sizeof(res));
    res.struct_size = out->struct_size;
    rv = audit_verify_srcs(&log->key, 0, zero, t.has_record ? t.seq : 0, &src, 1, &res);
    if (rv == VMENC_OK || rv == VMENC_E_AUDIT_TAMPERED || rv == VMENC_E_AUDIT_TRUNCATED || rv == VMENC_E_AUTH)
        *out = res;
    VMENC_GUARD_GOTO(rv, rv, unlock);
    rv = audit_checkpoint_advance(log->fd, &log->key, log->cp_path, true, log->policy != VMENC_AUDIT_FSYNC_NEVER);
unlock:
    vmenc_lock_release(lfd);
    pthread_mutex_unlock(&log->mu);
    return rv;
}

vmenc_status audit_log_set_mirror(vmenc_audit_log *log, audit_mirror *m, const char *host) {
    VMENC_ENSURE(log != NULL && (m == NULL || (host != NULL && host[0] != '\0' &&
                                               strlen(host) < AUDIT_MIRROR_HOST_MAX)),
                 VMENC_E_INVALID_ARG);
    char *h = m != NULL ? strdup(host) : NULL;
    VMENC_ENSURE(m == NULL || h != NULL, VMENC_E_NOMEM);
    VMENC_ENSURE(pthread_mutex_lock(&log->mu) == 0, (free(h), VMENC_E_INTERNAL));
    free(log->mirror_host);
    log->mirror_host = h;
    log->mirror = m;
    log->mirror_behind = false; /* the first append tries the mirror's CAS; a refusal catches up */
    pthread_mutex_unlock(&log->mu);
    return VMENC_OK;
}

const char *audit_log_path(const vmenc_audit_log *log) { return log != NULL ? log->path : NULL; }

vmenc_status vmenc_audit_log_append(vmenc_audit_log *log, const vmenc_audit_event *event,
                                    uint64_t *out_seq) {
    VMENC_ENSURE_REF(log);
    VMENC_ENSURE_REF(event);
    VMENC_ENSURE(event->struct_size >= AUDIT_EVENT_V1_SIZE, VMENC_E_ABI_VERSION);
    audit_fields f;
    uint64_t t = event->time_ms != 0 ? event->time_ms : vmenc_now_realtime_ms();
    VMENC_GUARD(audit_fields_from_event(event, t, &f));
    return audit_log_append_fields(log, &f, out_seq);
}

vmenc_status vmenc_audit_log_sync(vmenc_audit_log *log) {
    VMENC_ENSURE_REF(log);
    VMENC_ENSURE(pthread_mutex_lock(&log->mu) == 0, VMENC_E_INTERNAL);
    bool broken = log->broken;
    pthread_mutex_unlock(&log->mu);
    VMENC_ENSURE(!broken, VMENC_E_BAD_STATE);
    return sync_through(log, 0, true);
}

vmenc_status vmenc_audit_log_rotate(vmenc_audit_log *log, const char *new_path) {
    VMENC_ENSURE_REF(log);
    VMENC_ENSURE(new_path != NULL && new_path[0] != '\0', VMENC_E_INVALID_ARG);
    char *path = strdup(new_path);
    VMENC_ENSURE(path != NULL, VMENC_E_NOMEM);
    vmenc_status rv;
    int fd = -1;
    bool created = false;
    VMENC_ENSURE_GOTO(rv, pthread_mutex_lock(&log->sync_mu) == 0, VMENC_E_INTERNAL, out);
    pthread_mutex_lock(&log->mu);
    VMENC_ENSURE_GOTO(rv, !log->broken, VMENC_E_BAD_STATE, unlock);
    VMENC_ENSURE_GOTO(rv, !log->shared, VMENC_E_UNSUPPORTED, unlock);
    VMENC_GUARD_GOTO(rv, open_locked(path, true, &fd, &created), unlock);
    struct stat st;
    VMENC_ENSURE_GOTO(rv, fstat(fd, &st) == 0, VMENC_E_IO, unlock);
    VMENC_ENSURE_GOTO(rv, st.st_size == 0, VMENC_E_EXISTS, unlock);
    if (log->policy != VMENC_AUDIT_FSYNC_NEVER) {
        if (created)
            VMENC_GUARD_GOTO(rv, sync_dir(path), unlock);
        if (datasync(log->fd) != 0) {
            log->sync_failed = log->broken = true;
            rv = VMENC_E_IO;
            goto unlock;
        }
        log->syncs++;
    }
    log->synced_seq = log->seq; /* the old file is complete */
    close(log->fd);
    log->fd = fd;
    fd = -1;
    free(log->path);
    log->path = path;
    path = NULL;
    log->size = 0;
    log->unsynced = 0;
    rv = VMENC_OK;
unlock:
    pthread_mutex_unlock(&log->mu);
    pthread_mutex_unlock(&log->sync_mu);
out:
    if (fd >= 0) {
        close(fd);
        if (created)
            (void)unlink(new_path);
    }
    free(path);
    return rv;
}

vmenc_status vmenc_audit_log_position(vmenc_audit_log *log, uint64_t *out_seq,
                                      uint8_t *out_hash) {
    VMENC_ENSURE_REF(log);
    VMENC_ENSURE_REF(out_seq);
    VMENC_ENSURE_REF(out_hash);
    VMENC_ENSURE(pthread_mutex_lock(&log->mu) == 0, VMENC_E_INTERNAL);
    *out_seq = log->seq;
    memcpy(out_hash, log->hash, VMENC_AUDIT_HASH_BYTES);
    pthread_mutex_unlock(&log->mu);
    return VMENC_OK;
}

vmenc_status vmenc_audit_log_get_stats(vmenc_audit_log *log, vmenc_audit_log_stats *out) {
    VMENC_ENSURE_REF(log);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(out->struct_size >= sizeof(vmenc_audit_log_stats), VMENC_E_ABI_VERSION);
    VMENC_ENSURE(pthread_mutex_lock(&log->sync_mu) == 0, VMENC_E_INTERNAL);
    pthread_mutex_lock(&log->mu);
    out->records = log->records;
    out->bytes = log->bytes;
    out->syncs = log->syncs;
    pthread_mutex_unlock(&log->mu);
    pthread_mutex_unlock(&log->sync_mu);
    return VMENC_OK;
}

vmenc_status vmenc_audit_log_checkpoint(vmenc_audit_log *log) {
    VMENC_ENSURE_REF(log);
    VMENC_ENSURE(log->cp_path != NULL, VMENC_E_BAD_STATE);
    vmenc_status rv;
    int lfd = -1;
    VMENC_ENSURE(pthread_mutex_lock(&log->mu) == 0, VMENC_E_INTERNAL);
    VMENC_ENSURE_GOTO(rv, !log->broken && log->fd >= 0, VMENC_E_BAD_STATE, unlock);
    /* Under the file lock no writer appends and no other handle seals: the
     * head read is the file's real head and checkpoints only move forward. */
    if (log->shared)
        VMENC_GUARD_GOTO(rv, share_lock(log, &lfd), unlock);
    rv = audit_checkpoint_advance(log->fd, &log->key, log->cp_path, log->cp_init,
                                  log->policy != VMENC_AUDIT_FSYNC_NEVER);
unlock:
    vmenc_lock_release(lfd);
    pthread_mutex_unlock(&log->mu);
    return rv;
}

void vmenc_audit_log_free(vmenc_audit_log *log) {
    if (log == NULL)
        return;
    if (log->cp_path != NULL && !log->broken && log->fd >= 0) {
        vmenc_status cs = vmenc_audit_log_checkpoint(log); /* best effort: a refusal leaves the evidence */
        (void)cs;
    }
    if (!log->broken && log->fd >= 0 && log->policy != VMENC_AUDIT_FSYNC_NEVER &&
        log->synced_seq < log->seq)
        (void)datasync(log->fd);
    log_destroy(log);
}

/* file_tail reads and checks the last record of the log at |path|: an
 * empty file is VMENC_E_NOT_FOUND, a torn one VMENC_E_INTERRUPTED. */
static vmenc_status file_tail(const uint8_t *key, size_t key_len, const char *path, tail_info *t) {
    audit_key k;
    VMENC_GUARD(audit_key_init(&k, key, key_len));
    vmenc_status rv;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    VMENC_ENSURE_GOTO(rv, fd >= 0, VMENC_E_IO, out);
    rv = read_tail(fd, &k, t);
    close(fd);
    if (rv != VMENC_OK)
        goto out;
    VMENC_ENSURE_GOTO(rv, t->torn_len == 0, VMENC_E_INTERRUPTED, out);
    VMENC_ENSURE_GOTO(rv, t->has_record, VMENC_E_NOT_FOUND, out);
out:
    audit_key_cleanup(&k);
    return rv;
}

vmenc_status vmenc_audit_log_file_tail(const uint8_t *key, size_t key_len, const char *path,
                                       uint64_t *out_seq, uint8_t *out_hash) {
    VMENC_ENSURE_REF(path);
    VMENC_ENSURE_REF(out_seq);
    VMENC_ENSURE_REF(out_hash);
    tail_info t;
    VMENC_GUARD(file_tail(key, key_len, path, &t));
    *out_seq = t.seq;
    memcpy(out_hash, t.hash, VMENC_AUDIT_HASH_BYTES);
    return VMENC_OK;
}

vmenc_status vmenc_audit_log_file_chain_id(const uint8_t *key, size_t key_len, const char *path,
                                           uint8_t *out) {
    VMENC_ENSURE_REF(path);
    VMENC_ENSURE_REF(out);
    tail_info t;
    VMENC_GUARD(file_tail(key, key_len, path, &t));
    VMENC_ENSURE(t.has_chain, VMENC_E_UNSUPPORTED);
    memcpy(out, t.chain, AUDIT_CHAIN_BYTES);
    return VMENC_OK;
}
