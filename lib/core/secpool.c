/*
 * lib/core/secpool.c - the pooled secure allocator behind vmenc_secure_alloc
 * for every block up to VMENC_SECPOOL_MAX_SLOT bytes (larger ones still go to
 * libsodium's sodium_malloc, see secmem.c).
 *
 * Why: sodium_malloc gives every allocation its own mapping with a guard
 * page on each side, an mlock and a canary. That is several memory mappings
 * per key, so a process hits the kernel's map limit (vm.max_map_count,
 * 65530) at about 16k live keys, after which every secure allocation fails;
 * each call also costs an mmap, mprotects and an mlock. Here keys are slots
 * in slabs instead, and every slab keeps what matters:
 *
 *  - guard pages: at start-up one range of address space is reserved with
 *    PROT_NONE and cut into 256 KiB spans; a slab makes only the inside of
 *    its span readable and writable, so its first and last pages stay
 *    inaccessible and an overrun off either end of a slab faults;
 *  - mlock: each slab's pages are locked, so keys never reach swap, where
 *    RLIMIT_MEMLOCK allows. When it does not (an unprivileged process's
 *    default is 8 MiB on Debian 12, about 10,000 XTS contexts), the slab is
 *    used unlocked rather than failing the allocation, as libsodium does,
 *    and vmenc_secpool_stats reports the unlocked bytes. Raise the limit
 *    (ulimit -l, LimitMEMLOCK= in a systemd unit) or give the process
 *    CAP_IPC_LOCK to keep every key out of swap;
 *  - MADV_DONTDUMP: nothing of the reserved range is written to a core dump;
 *  - wiped on free: a freed slot is zeroed at once (sodium_memzero), and a
 *    slab given back to the system is zeroed by the kernel (MADV_DONTNEED);
 *  - AddressSanitizer sees it: a free slot is poisoned, so a use after free
 *    or a double free of a secret is reported; a live slot is unpoisoned
 *    only for the bytes asked for, so an overrun inside the slot is too.
 *
 * What is lost against sodium_malloc: no guard page between two keys of one
 * slab, no canary, and no per-key read-only protection (vmenc_secret_readonly
 * is a no-op for pooled bytes: changing page protection per key would cost
 * the syscalls this allocator exists to avoid).
 *
 * Size classes up to 4 KiB; one mutex per class; slabs with free slots on a
 * list per class; an empty slab is given back to the system unless it is
 * the class's only spare. Freeing finds a slot's slab from its address
 * alone (span index), so vmenc_secure_free keeps taking just a pointer.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define SECPOOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SECPOOL_ASAN 1
#endif
#endif
#ifdef SECPOOL_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define SPAN_SHIFT 18u /* 256 KiB per slab, guard pages included */
#define SPAN_BYTES ((size_t)1 << SPAN_SHIFT)
/* Address space reserved (not memory: PROT_NONE, MAP_NORESERVE). 4 GiB is
 * 16384 slabs, about 5 million XTS contexts; less is tried if the process
 * has a tight RLIMIT_AS. */
#define RESERVE_MAX ((size_t)4 << 30)
#define RESERVE_MIN ((size_t)64 << 20)

static const uint32_t class_sizes[] = {32, 64, 128, 256, 512, 768, 1024, 2048, VMENC_SECPOOL_MAX_SLOT};
#define NUM_CLASSES (sizeof(class_sizes) / sizeof(class_sizes[0]))

typedef struct slab slab;
typedef struct sclass {
    pthread_mutex_t mu;
    uint32_t slot_size;
    slab *partial;     /* slabs with at least one free slot */
    unsigned num_empty; /* slabs on |partial| with every slot free */
} sclass;

struct slab {
    uint8_t *data;     /* span + page: slot 0 */
    sclass *cls;
    size_t span;       /* index in the reserved range */
    uint32_t num_slots;
    uint32_t num_free;
    uint32_t *free_idx; /* stack of free slot indices (num_free valid) */
    uint64_t *used;     /* bit per slot: handed out */
    slab *next, *prev;  /* on cls->partial */
    bool locked;        /* mlock succeeded */
};

static struct {
    pthread_once_t once;
    bool ready;
    uint8_t *base;         /* SPAN_BYTES aligned */
    size_t num_spans;
    size_t page;
    _Atomic(slab *) *spans; /* span index -> slab, NULL if none */
    pthread_mutex_t span_mu; /* guards the two below */
    size_t next_span;      /* never used before: next_span.. */
    size_t *free_spans;    /* given back, reusable */
    size_t num_free_spans;
    sclass classes[NUM_CLASSES];
    _Atomic size_t num_slabs, bytes_locked, bytes_unlocked, live_slots, live_bytes;
    _Atomic uint64_t num_fallbacks;
} g = {.once = PTHREAD_ONCE_INIT, .span_mu = PTHREAD_MUTEX_INITIALIZER};

static void pool_init(void) {
    long pg = sysconf(_SC_PAGESIZE);
    g.page = pg > 0 ? (size_t)pg : 4096;
    for (size_t want = RESERVE_MAX; want >= RESERVE_MIN && g.base == NULL; want /= 2) {
        /* One span extra so the start can be aligned to a span. */
        void *p = mmap(NULL, want + SPAN_BYTES, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            continue;
        uintptr_t a = ((uintptr_t)p + SPAN_BYTES - 1) & ~(uintptr_t)(SPAN_BYTES - 1);
        size_t head = a - (uintptr_t)p;
        if (head > 0)
            munmap(p, head);
        if (SPAN_BYTES - head > 0)
            munmap((uint8_t *)a + want, SPAN_BYTES - head);
        g.num_spans = want >> SPAN_SHIFT;
        g.spans = calloc(g.num_spans, sizeof(*g.spans));
        g.free_spans = calloc(g.num_spans, sizeof(*g.free_spans));
        if (g.spans == NULL || g.free_spans == NULL) {
            munmap((void *)a, want);
            free(g.spans);
            free(g.free_spans);
            g.spans = NULL;
            g.free_spans = NULL;
            return;
        }
        g.base = (uint8_t *)a;
#ifdef MADV_DONTDUMP
        (void)madvise(g.base, want, MADV_DONTDUMP);
#endif
    }
    if (g.base == NULL)
        return;
    for (size_t i = 0; i < NUM_CLASSES; i++) {
        if (pthread_mutex_init(&g.classes[i].mu, NULL) != 0)
            return;
        g.classes[i].slot_size = class_sizes[i];
    }
    g.ready = true;
}

static bool pool_ready(void) {
    return pthread_once(&g.once, pool_init) == 0 && g.ready;
}

static sclass *class_for(size_t len) {
    for (size_t i = 0; i < NUM_CLASSES; i++)
        if (len <= class_sizes[i])
            return &g.classes[i];
    return NULL;
}

static void list_push(sclass *c, slab *s) {
    s->prev = NULL;
    s->next = c->partial;
    if (c->partial != NULL)
        c->partial->prev = s;
    c->partial = s;
}

static void list_remove(sclass *c, slab *s) {
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        c->partial = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
}

static size_t data_bytes(void) { return SPAN_BYTES - 2 * g.page; }

/* slab_new maps a fresh slab for |c| (caller holds c->mu); NULL when the
 * reserved range is used up or the system refuses memory. */
static slab *slab_new(sclass *c) {
    pthread_mutex_lock(&g.span_mu);
    size_t span;
    if (g.num_free_spans > 0)
        span = g.free_spans[--g.num_free_spans];
    else if (g.next_span < g.num_spans)
        span = g.next_span++;
    else
        span = SIZE_MAX;
    pthread_mutex_unlock(&g.span_mu);
    if (span == SIZE_MAX)
        return NULL;

    slab *s = calloc(1, sizeof(*s));
    uint32_t n = (uint32_t)(data_bytes() / c->slot_size);
    if (s != NULL) {
        s->free_idx = malloc(n * sizeof(*s->free_idx));
        s->used = calloc((n + 63) / 64, sizeof(*s->used));
    }
    uint8_t *data = g.base + (span << SPAN_SHIFT) + g.page;
    if (s == NULL || s->free_idx == NULL || s->used == NULL ||
        mprotect(data, data_bytes(), PROT_READ | PROT_WRITE) != 0)
        goto fail;
#ifdef MADV_DONTDUMP
    (void)madvise(data, data_bytes(), MADV_DONTDUMP);
#endif
    s->locked = mlock(data, data_bytes()) == 0;
    s->data = data;
    s->cls = c;
    s->span = span;
    s->num_slots = n;
    s->num_free = n;
    for (uint32_t i = 0; i < n; i++)
        s->free_idx[i] = n - 1 - i; /* slot 0 first: fills a slab front to back */
    POISON(data, data_bytes());
    atomic_fetch_add(s->locked ? &g.bytes_locked : &g.bytes_unlocked, data_bytes());
    atomic_fetch_add(&g.num_slabs, 1);
    /* Published last: from here on a free of one of its slots finds it. */
    atomic_store_explicit(&g.spans[span], s, memory_order_release);
    return s;
fail:
    if (s != NULL) {
        free(s->free_idx);
        free(s->used);
        free(s);
    }
    pthread_mutex_lock(&g.span_mu);
    g.free_spans[g.num_free_spans++] = span;
    pthread_mutex_unlock(&g.span_mu);
    return NULL;
}

/* slab_release gives an empty slab back to the system (caller holds
 * s->cls->mu; the slab is off the partial list). Its slots are wiped already;
 * MADV_DONTNEED drops the pages, so the next slab on this span starts from
 * zero pages. */
static void slab_release(slab *s) {
    atomic_store_explicit(&g.spans[s->span], NULL, memory_order_release);
    UNPOISON(s->data, data_bytes());
    if (s->locked)
        (void)munlock(s->data, data_bytes());
    (void)madvise(s->data, data_bytes(), MADV_DONTNEED);
    (void)mprotect(s->data, data_bytes(), PROT_NONE);
    atomic_fetch_sub(s->locked ? &g.bytes_locked : &g.bytes_unlocked, data_bytes());
    atomic_fetch_sub(&g.num_slabs, 1);
    pthread_mutex_lock(&g.span_mu);
    g.free_spans[g.num_free_spans++] = s->span;
    pthread_mutex_unlock(&g.span_mu);
    free(s->free_idx);
    free(s->used);
    free(s);
}

void *vmenc_secpool_alloc(size_t len) {
    if (len == 0 || len > VMENC_SECPOOL_MAX_SLOT || !pool_ready())
        return NULL;
    sclass *c = class_for(len);
    pthread_mutex_lock(&c->mu);
    slab *s = c->partial;
    if (s == NULL) {
        s = slab_new(c);
        if (s == NULL) {
            pthread_mutex_unlock(&c->mu);
            atomic_fetch_add(&g.num_fallbacks, 1);
            return NULL;
        }
        list_push(c, s);
    } else if (s->num_free == s->num_slots) {
        c->num_empty--; /* an empty spare comes back into use */
    }
    uint32_t i = s->free_idx[--s->num_free];
    s->used[i / 64] |= (uint64_t)1 << (i % 64);
    if (s->num_free == 0)
        list_remove(c, s);
    uint8_t *p = s->data + (size_t)i * c->slot_size;
    /* Only the bytes asked for: ASan reports an overrun inside the slot. */
    UNPOISON(p, len);
    pthread_mutex_unlock(&c->mu);
    atomic_fetch_add_explicit(&g.live_slots, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g.live_bytes, c->slot_size, memory_order_relaxed);
    return p;
}

/* owner returns the slab |p| lies in, or NULL if |p| is not pool memory. */
static slab *owner(const void *p) {
    if (!pool_ready() || (const uint8_t *)p < g.base)
        return NULL;
    size_t off = (size_t)((const uint8_t *)p - g.base);
    if ((off >> SPAN_SHIFT) >= g.num_spans)
        return NULL;
    return atomic_load_explicit(&g.spans[off >> SPAN_SHIFT], memory_order_acquire);
}

bool vmenc_secpool_owns(const void *p) {
    /* Pool memory exists only after pool_init ran (happens-before through
     * the allocation that produced |p|). */
    return p != NULL && owner(p) != NULL;
}

bool vmenc_secpool_free(void *p) {
    slab *s = p != NULL ? owner(p) : NULL;
    if (s == NULL)
        return false;
    sclass *c = s->cls;
    size_t off = (size_t)((uint8_t *)p - s->data);
    uint32_t i = (uint32_t)(off / c->slot_size);
    if (off % c->slot_size != 0 || i >= s->num_slots)
        return true; /* inside a slab but not a slot start: not ours to free */
    pthread_mutex_lock(&c->mu);
    uint64_t bit = (uint64_t)1 << (i % 64);
    if ((s->used[i / 64] & bit) == 0) {
        /* Double free. Under ASan the caller's own wipe of the freed slot
         * has been reported already; otherwise ignore rather than hand the
         * slot out twice. */
        pthread_mutex_unlock(&c->mu);
        return true;
    }
    s->used[i / 64] &= ~bit;
    UNPOISON(p, c->slot_size);
    sodium_memzero(p, c->slot_size);
    POISON(p, c->slot_size);
    s->free_idx[s->num_free++] = i;
    if (s->num_free == 1)
        list_push(c, s); /* was full */
    if (s->num_free == s->num_slots) {
        /* Empty: keep one spare per class (a create/free loop must not map
         * and unmap a slab each time), give the others back. */
        if (c->num_empty >= 1) {
            list_remove(c, s);
            slab_release(s);
        } else {
            c->num_empty++;
        }
    }
    pthread_mutex_unlock(&c->mu);
    atomic_fetch_sub_explicit(&g.live_slots, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&g.live_bytes, c->slot_size, memory_order_relaxed);
    return true;
}

void vmenc_secpool_stats_get(vmenc_secpool_stats *out) {
    if (out == NULL)
        return;
    memset(out, 0, sizeof(*out));
    (void)pool_ready();
    out->reserved_bytes = g.num_spans << SPAN_SHIFT;
    out->slab_bytes = g.ready ? data_bytes() : 0;
    out->num_slabs = atomic_load(&g.num_slabs);
    out->bytes_locked = atomic_load(&g.bytes_locked);
    out->bytes_unlocked = atomic_load(&g.bytes_unlocked);
    out->live_slots = atomic_load(&g.live_slots);
    out->live_bytes = atomic_load(&g.live_bytes);
    out->num_fallbacks = atomic_load(&g.num_fallbacks);
}
