/*
 * lib/audit/audit.c - the event dispatcher (callback and log sinks) and the
 * public event helpers.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "audit/record.h"

#define MAX_SINKS 16

typedef struct sink {
    vmenc_audit_callback callback; /* NULL for a log sink */
    void *ctx;
    vmenc_audit_log *log;
} sink;

struct vmenc_audit {
    pthread_rwlock_t lock; /* write: add a sink; read: emit */
    sink sinks[MAX_SINKS];
    size_t num_sinks;
};

const char *vmenc_audit_outcome_name(vmenc_audit_outcome outcome) {
    switch (outcome) {
    case VMENC_AUDIT_SUCCESS: return "success";
    case VMENC_AUDIT_DENIED: return "denied";
    case VMENC_AUDIT_FAILED: return "failed";
    }
    return "unknown";
}

static uint64_t event_time(const vmenc_audit_event *ev) {
    return ev->time_ms != 0 ? ev->time_ms : vmenc_now_realtime_ms();
}

vmenc_status vmenc_audit_event_check(const vmenc_audit_event *event) {
    VMENC_ENSURE_REF(event);
    VMENC_ENSURE(event->struct_size >= AUDIT_EVENT_V1_SIZE, VMENC_E_ABI_VERSION);
    audit_fields f;
    return audit_fields_from_event(event, event_time(event), &f);
}

/* write_json builds the canonical JSON object of |f|, NUL terminated. */
static vmenc_status write_json(const audit_fields *f, vmenc_cbb *cbb) {
    VMENC_GUARD(vmenc_cbb_init(cbb, 512));
    vmenc_cbb_set_max(cbb, VMENC_AUDIT_MAX_LINE);
    vmenc_cbb_add_u8(cbb, '{');
    audit_write_fields(cbb, f);
    vmenc_cbb_add_u8(cbb, '}');
    vmenc_cbb_add_u8(cbb, '\0');
    vmenc_status s = vmenc_cbb_status(cbb);
    if (s != VMENC_OK)
        vmenc_cbb_cleanup(cbb);
    return s;
}

vmenc_status vmenc_audit_event_to_json(const vmenc_audit_event *event, char *out, size_t out_cap,
                                       size_t *out_len) {
    VMENC_ENSURE_REF(event);
    VMENC_ENSURE_REF(out_len);
    VMENC_ENSURE(out != NULL || out_cap == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(event->struct_size >= AUDIT_EVENT_V1_SIZE, VMENC_E_ABI_VERSION);
    audit_fields f;
    VMENC_GUARD(audit_fields_from_event(event, event_time(event), &f));
    vmenc_cbb cbb;
    VMENC_GUARD(write_json(&f, &cbb));
    size_t n = vmenc_cbb_len(&cbb);
    vmenc_status rv = VMENC_OK;
    if (n > out_cap) {
        *out_len = n;
        rv = VMENC_E_BUFFER_TOO_SMALL;
    } else {
        memcpy(out, vmenc_cbb_data(&cbb), n);
        *out_len = n - 1;
    }
    vmenc_cbb_cleanup(&cbb);
    return rv;
}

vmenc_status vmenc_audit_new(vmenc_audit **out) {
    VMENC_ENSURE_REF(out);
    vmenc_audit *a = calloc(1, sizeof(*a));
    VMENC_ENSURE(a != NULL, VMENC_E_NOMEM);
    if (pthread_rwlock_init(&a->lock, NULL) != 0) {
        free(a);
        return VMENC_E_NOMEM;
    }
    *out = a;
    return VMENC_OK;
}

static vmenc_status add_sink(vmenc_audit *a, sink s) {
    VMENC_ENSURE(pthread_rwlock_wrlock(&a->lock) == 0, VMENC_E_INTERNAL);
    vmenc_status rv = VMENC_E_LIMIT;
    if (a->num_sinks < MAX_SINKS) {
        a->sinks[a->num_sinks++] = s;
        rv = VMENC_OK;
    }
    pthread_rwlock_unlock(&a->lock);
    return rv;
}

vmenc_status vmenc_audit_add_callback(vmenc_audit *audit, vmenc_audit_callback callback,
                                      void *ctx) {
    VMENC_ENSURE_REF(audit);
    VMENC_ENSURE_REF(callback);
    sink s = {.callback = callback, .ctx = ctx};
    return add_sink(audit, s);
}

vmenc_status vmenc_audit_add_log(vmenc_audit *audit, vmenc_audit_log *log) {
    VMENC_ENSURE_REF(audit);
    VMENC_ENSURE_REF(log);
    sink s = {.log = log};
    return add_sink(audit, s);
}

vmenc_status vmenc_audit_emit(vmenc_audit *audit, const vmenc_audit_event *event) {
    VMENC_ENSURE_REF(audit);
    VMENC_ENSURE_REF(event);
    VMENC_ENSURE(event->struct_size >= AUDIT_EVENT_V1_SIZE, VMENC_E_ABI_VERSION);
    /* A copy with the time filled in, so every sink sees the same event. */
    vmenc_audit_event ev;
    memset(&ev, 0, sizeof(ev));
    memcpy(&ev, event, AUDIT_EVENT_V1_SIZE);
    ev.struct_size = sizeof(ev);
    ev.time_ms = event_time(event);
    audit_fields f;
    VMENC_GUARD(audit_fields_from_event(&ev, ev.time_ms, &f));

    vmenc_cbb json;
    bool have_json = false;
    vmenc_status rv = VMENC_OK;
    VMENC_ENSURE(pthread_rwlock_rdlock(&audit->lock) == 0, VMENC_E_INTERNAL);
    VMENC_ENSURE_GOTO(rv, audit->num_sinks > 0, VMENC_E_BAD_STATE, unlock);
    for (size_t i = 0; i < audit->num_sinks; i++) {
        const sink *s = &audit->sinks[i];
        vmenc_status r;
        if (s->callback != NULL) {
            if (!have_json) {
                VMENC_GUARD_GOTO(rv, write_json(&f, &json), unlock);
                have_json = true;
            }
            r = s->callback(s->ctx, &ev, (const char *)vmenc_cbb_data(&json),
                            vmenc_cbb_len(&json) - 1);
        } else {
            r = audit_log_append_fields(s->log, &f, NULL);
        }
        if (r != VMENC_OK && rv == VMENC_OK)
            rv = VMENC_E_AUDIT_SINK;
    }
unlock:
    pthread_rwlock_unlock(&audit->lock);
    if (have_json)
        vmenc_cbb_cleanup(&json);
    return rv;
}

void vmenc_audit_free(vmenc_audit *audit) {
    if (audit == NULL)
        return;
    pthread_rwlock_destroy(&audit->lock);
    free(audit);
}
