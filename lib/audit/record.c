/*
 * lib/audit/record.c - the audit record format: event validation, the
 * canonical JSON writer and the strict parser (both directions in one file,
 * so the parser reads like the writer's schema), the chain key and MAC.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "audit/record.h"

static const char k_mac_domain[] = "vmenc-audit-v1 record\n";
static const char k_kid_domain[] = "vmenc-audit-v1 key check";

/* ---- UTF-8 ----------------------------------------------------------------- */


/* ---- event validation -------------------------------------------------------- */

static vmenc_status check_str(const char *s, size_t max, bool required, audit_strv *out) {
    if (s == NULL) {
        VMENC_ENSURE(!required, VMENC_E_INVALID_ARG);
        out->p = "";
        out->len = 0;
        return VMENC_OK;
    }
    size_t len = strnlen(s, max + 1);
    VMENC_ENSURE(len <= max, VMENC_E_TOO_LARGE);
    VMENC_ENSURE(!required || len > 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(vmenc_utf8_valid((const uint8_t *)s, len), VMENC_E_BAD_ENCODING);
    out->p = s;
    out->len = len;
    return VMENC_OK;
}

vmenc_status audit_fields_from_event(const vmenc_audit_event *ev, uint64_t time_ms,
                                     audit_fields *out) {
    VMENC_ENSURE_REF(ev);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE(ev->struct_size >= AUDIT_EVENT_V1_SIZE, VMENC_E_ABI_VERSION);
    VMENC_ENSURE(time_ms <= VMENC_AUDIT_MAX_TIME_MS, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(ev->outcome == VMENC_AUDIT_SUCCESS || ev->outcome == VMENC_AUDIT_DENIED ||
                     ev->outcome == VMENC_AUDIT_FAILED,
                 VMENC_E_INVALID_ARG);
    VMENC_ENSURE(ev->status <= 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE(ev->num_key_ids <= VMENC_AUDIT_MAX_KEY_IDS, VMENC_E_TOO_LARGE);
    VMENC_ENSURE(ev->num_key_ids == 0 || ev->key_ids != NULL, VMENC_E_INVALID_ARG);

    audit_fields f;
    memset(&f, 0, sizeof(f));
    f.time_ms = time_ms;
    VMENC_GUARD(check_str(ev->principal, VMENC_AUDIT_MAX_FIELD, true, &f.principal));
    VMENC_GUARD(check_str(ev->operation, VMENC_AUDIT_MAX_FIELD, true, &f.operation));
    VMENC_GUARD(check_str(ev->target, VMENC_AUDIT_MAX_FIELD, false, &f.target));
    VMENC_GUARD(check_str(ev->key_provider, VMENC_AUDIT_MAX_FIELD, false, &f.provider));
    for (size_t i = 0; i < ev->num_key_ids; i++)
        VMENC_GUARD(check_str(ev->key_ids[i], VMENC_AUDIT_MAX_FIELD, true, &f.key_ids[i]));
    f.num_key_ids = ev->num_key_ids;
    f.outcome = ev->outcome;
    f.status = ev->status;
    VMENC_GUARD(check_str(ev->reason, VMENC_AUDIT_MAX_REASON, false, &f.reason));
    *out = f;
    return VMENC_OK;
}

static audit_strv strv_of(const char *s, size_t len) {
    audit_strv v = {s, len};
    return v;
}

void audit_fields_of_record(const audit_record *r, audit_fields *out) {
    memset(out, 0, sizeof(*out));
    out->time_ms = r->time_ms;
    out->principal = strv_of(r->principal.s, r->principal.len);
    out->operation = strv_of(r->operation.s, r->operation.len);
    out->target = strv_of(r->target.s, r->target.len);
    out->provider = strv_of(r->provider.s, r->provider.len);
    for (size_t i = 0; i < r->num_key_ids; i++)
        out->key_ids[i] = strv_of(r->key_ids[i].s, r->key_ids[i].len);
    out->num_key_ids = r->num_key_ids;
    out->outcome = r->outcome;
    out->status = r->status;
    out->reason = strv_of(r->reason, r->reason_len);
}

/* ---- time ------------------------------------------------------------------ */

/* Days since 1970-01-01 of a civil date, and back (H. Hinnant's algorithms,
 * restricted to years 1970..9999 so everything stays non-negative). */
static uint64_t days_from_civil(unsigned y, unsigned m, unsigned d) {
    y -= m <= 2;
    unsigned era = y / 400, yoe = y - era * 400;
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (uint64_t)era * 146097 + doe - 719468;
}

static void civil_from_days(uint64_t z, unsigned *y, unsigned *m, unsigned *d) {
    z += 719468;
    uint64_t era = z / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (unsigned)(yoe + era * 400) + (*m <= 2);
}

static void put_digits(char *p, unsigned v, int n) {
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

void audit_format_time(uint64_t ms, char out[25]) {
    if (ms > VMENC_AUDIT_MAX_TIME_MS)
        ms = VMENC_AUDIT_MAX_TIME_MS;
    uint64_t secs = ms / 1000, days = secs / 86400;
    unsigned sod = (unsigned)(secs % 86400), y, m, d;
    civil_from_days(days, &y, &m, &d);
    memcpy(out, "0000-00-00T00:00:00.000Z", 25);
    put_digits(out, y, 4);
    put_digits(out + 5, m, 2);
    put_digits(out + 8, d, 2);
    put_digits(out + 11, sod / 3600, 2);
    put_digits(out + 14, sod / 60 % 60, 2);
    put_digits(out + 17, sod % 60, 2);
    put_digits(out + 20, (unsigned)(ms % 1000), 3);
}

static bool get_digits(const char *p, int n, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    *out = v;
    return true;
}

bool audit_parse_time(const char *s, size_t len, uint64_t *out_ms) {
    static const unsigned mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    unsigned y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0, ms = 0;
    if (len != 24 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || s[19] != '.' || s[23] != 'Z')
        return false;
    if (!get_digits(s, 4, &y) || !get_digits(s + 5, 2, &mo) || !get_digits(s + 8, 2, &d) ||
        !get_digits(s + 11, 2, &h) || !get_digits(s + 14, 2, &mi) ||
        !get_digits(s + 17, 2, &se) || !get_digits(s + 20, 3, &ms))
        return false;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 59)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    unsigned dim = mdays[mo - 1] + (mo == 2 && leap);
    if (d > dim)
        return false;
    uint64_t days = days_from_civil(y, mo, d);
    *out_ms = ((days * 86400 + h * 3600u + mi * 60u + se) * 1000) + ms;
    return true;
}

/* ---- writer ----------------------------------------------------------------- */

static void add_lit(vmenc_cbb *cbb, const char *s) {
    vmenc_cbb_add_bytes(cbb, (const uint8_t *)s, strlen(s));
}

static void add_u64(vmenc_cbb *cbb, uint64_t v) {
    char buf[20];
    int n = 0;
    do {
        buf[sizeof(buf) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    vmenc_cbb_add_bytes(cbb, (const uint8_t *)buf + sizeof(buf) - n, (size_t)n);
}

static void add_i32(vmenc_cbb *cbb, int32_t v) {
    if (v < 0) {
        vmenc_cbb_add_u8(cbb, '-');
        add_u64(cbb, (uint64_t)(-(int64_t)v));
    } else {
        add_u64(cbb, (uint64_t)v);
    }
}

static const char k_hex[] = "0123456789abcdef";

static void add_hex(vmenc_cbb *cbb, const uint8_t *b, size_t n) {
    vmenc_cbb_add_u8(cbb, '"');
    for (size_t i = 0; i < n; i++) {
        vmenc_cbb_add_u8(cbb, (uint8_t)k_hex[b[i] >> 4]);
        vmenc_cbb_add_u8(cbb, (uint8_t)k_hex[b[i] & 15]);
    }
    vmenc_cbb_add_u8(cbb, '"');
}

/* short_escape gives the two-character escape of |c|, or 0 if it has none. */
static char short_escape(uint8_t c) {
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return 0;
    }
}

static bool needs_u_escape(uint8_t c) { return c < 0x20 || c == 0x7f; }

/* add_str writes |v| as a JSON string: the canonical escaping is the short
 * form where JSON has one, \u00xx (lowercase) for other control characters
 * and DEL, and every other byte (UTF-8 included) as is. */
static void add_str(vmenc_cbb *cbb, audit_strv v) {
    vmenc_cbb_add_u8(cbb, '"');
    size_t run = 0;
    const uint8_t *p = (const uint8_t *)v.p;
    for (size_t i = 0; i < v.len; i++) {
        uint8_t c = p[i];
        char e = short_escape(c);
        if (e == 0 && !needs_u_escape(c))
            continue;
        vmenc_cbb_add_bytes(cbb, p + run, i - run);
        run = i + 1;
        vmenc_cbb_add_u8(cbb, '\\');
        if (e != 0) {
            vmenc_cbb_add_u8(cbb, (uint8_t)e);
        } else {
            add_lit(cbb, "u00");
            vmenc_cbb_add_u8(cbb, (uint8_t)k_hex[c >> 4]);
            vmenc_cbb_add_u8(cbb, (uint8_t)k_hex[c & 15]);
        }
    }
    vmenc_cbb_add_bytes(cbb, p + run, v.len - run);
    vmenc_cbb_add_u8(cbb, '"');
}

static const char *const k_outcome[] = {"success", "denied", "failed"};

void audit_write_fields(vmenc_cbb *cbb, const audit_fields *f) {
    char ts[25];
    audit_format_time(f->time_ms, ts);
    add_lit(cbb, "\"time\":\"");
    vmenc_cbb_add_bytes(cbb, (const uint8_t *)ts, 24);
    add_lit(cbb, "\",\"principal\":");
    add_str(cbb, f->principal);
    add_lit(cbb, ",\"op\":");
    add_str(cbb, f->operation);
    add_lit(cbb, ",\"target\":");
    add_str(cbb, f->target);
    add_lit(cbb, ",\"provider\":");
    add_str(cbb, f->provider);
    add_lit(cbb, ",\"key_ids\":[");
    for (size_t i = 0; i < f->num_key_ids; i++) {
        if (i > 0)
            vmenc_cbb_add_u8(cbb, ',');
        add_str(cbb, f->key_ids[i]);
    }
    add_lit(cbb, "],\"outcome\":\"");
    add_lit(cbb, k_outcome[(unsigned)f->outcome < 3 ? f->outcome : VMENC_AUDIT_FAILED]);
    add_lit(cbb, "\",\"status\":");
    add_i32(cbb, f->status);
    add_lit(cbb, ",\"reason\":");
    add_str(cbb, f->reason);
}

void audit_write_body(vmenc_cbb *cbb, uint64_t seq, const uint8_t *chain, const audit_fields *f,
                      const uint8_t kid[AUDIT_KID_BYTES],
                      const uint8_t prev[VMENC_AUDIT_HASH_BYTES]) {
    add_lit(cbb, chain != NULL ? "{\"v\":2,\"seq\":" : "{\"v\":1,\"seq\":");
    add_u64(cbb, seq);
    if (chain != NULL) {
        add_lit(cbb, ",\"chain\":");
        add_hex(cbb, chain, AUDIT_CHAIN_BYTES);
    }
    vmenc_cbb_add_u8(cbb, ',');
    audit_write_fields(cbb, f);
    add_lit(cbb, ",\"kid\":");
    add_hex(cbb, kid, AUDIT_KID_BYTES);
    add_lit(cbb, ",\"prev\":");
    add_hex(cbb, prev, VMENC_AUDIT_HASH_BYTES);
}

void audit_write_mac_tail(vmenc_cbb *cbb, const uint8_t mac[VMENC_AUDIT_HASH_BYTES]) {
    add_lit(cbb, ",\"mac\":");
    add_hex(cbb, mac, VMENC_AUDIT_HASH_BYTES);
    add_lit(cbb, "}\n");
}

void audit_record_serialise(vmenc_cbb *cbb, const audit_record *r) {
    audit_fields f;
    audit_fields_of_record(r, &f);
    audit_write_body(cbb, r->seq, r->has_chain ? r->chain : NULL, &f, r->kid, r->prev);
    audit_write_mac_tail(cbb, r->mac);
}

/* ---- parser ----------------------------------------------------------------- */
/* Every getter consumes only on success. Each accepts exactly what the
 * writer above produces. */

static bool get_lit(vmenc_cbs *cbs, const char *lit) {
    size_t n = strlen(lit);
    vmenc_cbs saved = *cbs;
    vmenc_cbs got;
    if (!vmenc_cbs_get_bytes(cbs, &got, n) || memcmp(vmenc_cbs_data(&got), lit, n) != 0) {
        *cbs = saved;
        return false;
    }
    return true;
}

static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

/* get_u64: 0 or [1-9][0-9]*, no overflow. */
static bool get_u64(vmenc_cbs *cbs, uint64_t *out) {
    vmenc_cbs saved = *cbs;
    uint8_t c;
    uint64_t v = 0;
    size_t n = 0;
    while (vmenc_cbs_peek_u8(cbs, &c) && is_digit(c)) {
        if (n > 0 && v == 0)
            goto fail; /* leading zero */
        unsigned dgt = (unsigned)(c - '0');
        if (v > (UINT64_MAX - dgt) / 10)
            goto fail;
        v = v * 10 + dgt;
        n++;
        (void)vmenc_cbs_skip(cbs, 1);
    }
    if (n == 0)
        goto fail;
    *out = v;
    return true;
fail:
    *cbs = saved;
    return false;
}

/* get_status: 0 or -[1-9][0-9]* within int32. */
static bool get_status(vmenc_cbs *cbs, int32_t *out) {
    vmenc_cbs saved = *cbs;
    uint64_t v;
    if (get_lit(cbs, "0")) {
        *out = 0;
        return true;
    }
    if (!get_lit(cbs, "-") || !get_u64(cbs, &v) || v == 0 || v > (uint64_t)INT32_MAX + 1) {
        *cbs = saved;
        return false;
    }
    *out = (int32_t)(-(int64_t)v);
    return true;
}

/* Lowercase hex digit values, -1 for anything else. (Record hashes are
 * public, so a table lookup indexed by them leaks nothing.) */
static const int8_t k_hex_val[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

static int hex_val(uint8_t c) { return k_hex_val[c] - 1; }

/* get_hex: "<2n lowercase hex digits>". */
static bool get_hex(vmenc_cbs *cbs, uint8_t *out, size_t n) {
    vmenc_cbs saved = *cbs, body;
    if (!get_lit(cbs, "\"") || !vmenc_cbs_get_bytes(cbs, &body, 2 * n) || !get_lit(cbs, "\""))
        goto fail;
    const uint8_t *p = vmenc_cbs_data(&body);
    for (size_t i = 0; i < n; i++) {
        int hi = hex_val(p[2 * i]), lo = hex_val(p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            goto fail;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
fail:
    *cbs = saved;
    return false;
}

/* get_str parses a canonical JSON string into |out| (at most |max| bytes,
 * NUL added). Returns VMENC_OK or the reason it is not one. */
static vmenc_status get_str(vmenc_cbs *cbs, char *out, size_t max, size_t *out_len) {
    vmenc_cbs saved = *cbs;
    vmenc_status rv = VMENC_E_PARSE;
    size_t n = 0;
    uint8_t c;
    if (!get_lit(cbs, "\""))
        goto fail;
    for (;;) {
        /* Fast path: a run of bytes that stand for themselves. */
        const uint8_t *run = vmenc_cbs_data(cbs);
        size_t avail = vmenc_cbs_len(cbs), k = 0;
        while (k < avail && run[k] != '"' && run[k] != '\\' && !needs_u_escape(run[k]))
            k++;
        if (k > 0) {
            if (k > max - n) {
                rv = VMENC_E_TOO_LARGE;
                goto fail;
            }
            memcpy(out + n, run, k);
            n += k;
            (void)vmenc_cbs_skip(cbs, k);
        }
        if (!vmenc_cbs_get_u8(cbs, &c)) {
            rv = VMENC_E_PARSE;
            goto fail;
        }
        if (c == '"')
            break;
        if (c == '\\') {
            uint8_t e;
            if (!vmenc_cbs_get_u8(cbs, &e))
                goto fail;
            switch (e) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': {
                uint8_t h[4];
                if (!vmenc_cbs_copy_bytes(cbs, h, 4) || h[0] != '0' || h[1] != '0')
                    goto fail;
                int hi = hex_val(h[2]), lo = hex_val(h[3]);
                if (hi < 0 || lo < 0)
                    goto fail;
                c = (uint8_t)(hi << 4 | lo);
                /* Canonical only: \u00xx for controls without a short form. */
                if (!needs_u_escape(c) || short_escape(c) != 0 || c == 0) {
                    rv = VMENC_E_BAD_ENCODING;
                    goto fail;
                }
                break;
            }
            default:
                rv = VMENC_E_BAD_ENCODING;
                goto fail;
            }
        } else if (needs_u_escape(c)) {
            rv = VMENC_E_BAD_ENCODING; /* raw control character */
            goto fail;
        }
        if (n >= max) {
            rv = VMENC_E_TOO_LARGE;
            goto fail;
        }
        out[n++] = (char)c;
    }
    if (!vmenc_utf8_valid((const uint8_t *)out, n)) {
        rv = VMENC_E_BAD_ENCODING;
        goto fail;
    }
    out[n] = '\0';
    *out_len = n;
    return VMENC_OK;
fail:
    *cbs = saved;
    return rv;
}

static vmenc_status get_field(vmenc_cbs *cbs, const char *key, audit_field_buf *f, bool required) {
    VMENC_ENSURE(get_lit(cbs, key), VMENC_E_PARSE);
    VMENC_GUARD(get_str(cbs, f->s, VMENC_AUDIT_MAX_FIELD, &f->len));
    VMENC_ENSURE(!required || f->len > 0, VMENC_E_PARSE);
    return VMENC_OK;
}

static vmenc_status get_outcome(vmenc_cbs *cbs, vmenc_audit_outcome *out) {
    for (unsigned i = 0; i < VMENC_ARRAY_LEN(k_outcome); i++) {
        vmenc_cbs saved = *cbs;
        if (get_lit(cbs, "\"") && get_lit(cbs, k_outcome[i]) && get_lit(cbs, "\"")) {
            *out = (vmenc_audit_outcome)i;
            return VMENC_OK;
        }
        *cbs = saved;
    }
    return VMENC_E_PARSE;
}

vmenc_status audit_record_parse(const uint8_t *line, size_t len, audit_record *out,
                                size_t *out_body_len) {
    VMENC_ENSURE(line != NULL || len == 0, VMENC_E_INVALID_ARG);
    VMENC_ENSURE_REF(out);
    VMENC_ENSURE_REF(out_body_len);
    VMENC_ENSURE(len < VMENC_AUDIT_MAX_LINE, VMENC_E_TOO_LARGE);
    vmenc_cbs cbs;
    vmenc_cbs_init(&cbs, line, len);
    /* Parsed straight into |out| (internal: on failure its contents are
     * unspecified); records hold no secrets, and the verifier calls this
     * once per line, so no temporary copy. */
    audit_record *r = out;
    r->num_key_ids = 0;
    vmenc_status rv = VMENC_E_PARSE;
    uint64_t v;
    char ts[25];
    size_t ts_len;

    VMENC_ENSURE_GOTO(rv, get_lit(&cbs, "{\"v\":") && get_u64(&cbs, &v), VMENC_E_PARSE, out);
    VMENC_ENSURE_GOTO(rv, v == AUDIT_FORMAT_VERSION || v == AUDIT_FORMAT_VERSION_CHAIN,
                      VMENC_E_BAD_VERSION, out);
    VMENC_ENSURE_GOTO(rv, get_lit(&cbs, ",\"seq\":") && get_u64(&cbs, &r->seq) && r->seq > 0,
                      VMENC_E_PARSE, out);
    r->has_chain = v == AUDIT_FORMAT_VERSION_CHAIN;
    memset(r->chain, 0, sizeof(r->chain));
    if (r->has_chain)
        VMENC_ENSURE_GOTO(rv, get_lit(&cbs, ",\"chain\":") && get_hex(&cbs, r->chain, AUDIT_CHAIN_BYTES),
                          VMENC_E_PARSE, out);
    VMENC_ENSURE_GOTO(rv, get_lit(&cbs, ",\"time\":"), VMENC_E_PARSE, out);
    VMENC_GUARD_GOTO(rv, get_str(&cbs, ts, 24, &ts_len), out);
    VMENC_ENSURE_GOTO(rv, audit_parse_time(ts, ts_len, &r->time_ms), VMENC_E_PARSE, out);
    VMENC_GUARD_GOTO(rv, get_field(&cbs, ",\"principal\":", &r->principal, true), out);
    VMENC_GUARD_GOTO(rv, get_field(&cbs, ",\"op\":", &r->operation, true), out);
    VMENC_GUARD_GOTO(rv, get_field(&cbs, ",\"target\":", &r->target, false), out);
    VMENC_GUARD_GOTO(rv, get_field(&cbs, ",\"provider\":", &r->provider, false), out);
    VMENC_ENSURE_GOTO(rv, get_lit(&cbs, ",\"key_ids\":["), VMENC_E_PARSE, out);
    if (!get_lit(&cbs, "]")) {
        do {
            VMENC_ENSURE_GOTO(rv, r->num_key_ids < VMENC_AUDIT_MAX_KEY_IDS, VMENC_E_TOO_LARGE, out);
            audit_field_buf *k = &r->key_ids[r->num_key_ids++];
            VMENC_GUARD_GOTO(rv, get_str(&cbs, k->s, VMENC_AUDIT_MAX_FIELD, &k->len), out);
            VMENC_ENSURE_GOTO(rv, k->len > 0, VMENC_E_PARSE, out);
        } while (get_lit(&cbs, ","));
        VMENC_ENSURE_GOTO(rv, get_lit(&cbs, "]"), VMENC_E_PARSE, out);
    }
    VMENC_ENSURE_GOTO(rv, get_lit(&cbs, ",\"outcome\":"), VMENC_E_PARSE, out);
    VMENC_GUARD_GOTO(rv, get_outcome(&cbs, &r->outcome), out);
    VMENC_ENSURE_GOTO(rv, get_lit(&cbs, ",\"status\":") && get_status(&cbs, &r->status),
                      VMENC_E_PARSE, out);
    VMENC_ENSURE_GOTO(rv, get_lit(&cbs, ",\"reason\":"), VMENC_E_PARSE, out);
    VMENC_GUARD_GOTO(rv, get_str(&cbs, r->reason, VMENC_AUDIT_MAX_REASON, &r->reason_len), out);
    VMENC_ENSURE_GOTO(rv, get_lit(&cbs, ",\"kid\":") && get_hex(&cbs, r->kid, AUDIT_KID_BYTES),
                      VMENC_E_PARSE, out);
    VMENC_ENSURE_GOTO(rv,
                      get_lit(&cbs, ",\"prev\":") && get_hex(&cbs, r->prev, VMENC_AUDIT_HASH_BYTES),
                      VMENC_E_PARSE, out);
    size_t body_len = len - vmenc_cbs_len(&cbs);
    VMENC_ENSURE_GOTO(rv, get_lit(&cbs, ",\"mac\":") && get_hex(&cbs, r->mac, VMENC_AUDIT_HASH_BYTES),
                      VMENC_E_PARSE, out);
    VMENC_ENSURE_GOTO(rv, get_lit(&cbs, "}"), VMENC_E_PARSE, out);
    VMENC_ENSURE_GOTO(rv, vmenc_cbs_len(&cbs) == 0, VMENC_E_TRAILING_DATA, out);

    *out_body_len = body_len;
    rv = VMENC_OK;
out:
    return rv;
}

static bool field_eq(const audit_field_buf *a, const audit_field_buf *b) {
    return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
}

bool audit_record_equal(const audit_record *a, const audit_record *b) {
    if (a->seq != b->seq || a->time_ms != b->time_ms || a->outcome != b->outcome ||
        a->status != b->status || a->num_key_ids != b->num_key_ids ||
        a->reason_len != b->reason_len || memcmp(a->reason, b->reason, a->reason_len) != 0 ||
        !field_eq(&a->principal, &b->principal) || !field_eq(&a->operation, &b->operation) ||
        !field_eq(&a->target, &b->target) || !field_eq(&a->provider, &b->provider) ||
        a->has_chain != b->has_chain || memcmp(a->chain, b->chain, sizeof(a->chain)) != 0 ||
        memcmp(a->kid, b->kid, sizeof(a->kid)) != 0 ||
        memcmp(a->prev, b->prev, sizeof(a->prev)) != 0 ||
        memcmp(a->mac, b->mac, sizeof(a->mac)) != 0)
        return false;
    for (size_t i = 0; i < a->num_key_ids; i++)
        if (!field_eq(&a->key_ids[i], &b->key_ids[i]))
            return false;
    return true;
}

/* ---- the chain key ---------------------------------------------------------- */

vmenc_status audit_key_init(audit_key *k, const uint8_t *key, size_t key_len) {
    VMENC_ENSURE_REF(k);
    VMENC_ENSURE_REF(key);
    VMENC_ENSURE(key_len >= VMENC_AUDIT_KEY_MIN_BYTES && key_len <= VMENC_AUDIT_KEY_MAX_BYTES,
                 VMENC_E_INVALID_ARG);
    VMENC_GUARD(vmenc_ensure_init());
    vmenc_secret *s = NULL;
    VMENC_GUARD(vmenc_secret_from(key, key_len, &s));
    /* The key check value is a keyed hash of a constant: it tells a verifier
     * "wrong key" apart from "edited" and reveals nothing about the key. */
    uint8_t kcv[crypto_generichash_BYTES_MIN];
    if (crypto_generichash(kcv, sizeof(kcv), (const uint8_t *)k_kid_domain,
                           sizeof(k_kid_domain) - 1, s->bytes, s->len) != 0) {
        vmenc_secret_free(s);
        return VMENC_E_CRYPTO;
    }
    vmenc_secret_readonly(s);
    k->secret = s;
    memcpy(k->kid, kcv, AUDIT_KID_BYTES);
    return VMENC_OK;
}

void audit_key_cleanup(audit_key *k) {
    if (k == NULL)
        return;
    vmenc_secret_free(k->secret);
    k->secret = NULL;
}

vmenc_status audit_mac(const audit_key *k, const uint8_t *body, size_t body_len,
                       uint8_t out[VMENC_AUDIT_HASH_BYTES]) {
    crypto_generichash_state st;
    if (crypto_generichash_init(&st, k->secret->bytes, k->secret->len, VMENC_AUDIT_HASH_BYTES) != 0 ||
        crypto_generichash_update(&st, (const uint8_t *)k_mac_domain, sizeof(k_mac_domain) - 1) != 0 ||
        crypto_generichash_update(&st, body, body_len) != 0 ||
        crypto_generichash_final(&st, out, VMENC_AUDIT_HASH_BYTES) != 0) {
        sodium_memzero(&st, sizeof(st));
        return VMENC_E_CRYPTO;
    }
    sodium_memzero(&st, sizeof(st)); /* the state holds the keyed block */
    return VMENC_OK;
}

vmenc_status audit_check_line(const audit_key *k, const uint8_t *line, size_t len,
                              audit_record *rec) {
    size_t body_len;
    VMENC_GUARD(audit_record_parse(line, len, rec, &body_len));
    VMENC_ENSURE(sodium_memcmp(rec->kid, k->kid, AUDIT_KID_BYTES) == 0, VMENC_E_AUTH);
    uint8_t mac[VMENC_AUDIT_HASH_BYTES];
    VMENC_GUARD(audit_mac(k, line, body_len, mac));
    VMENC_ENSURE(vmenc_ct_equal(mac, rec->mac, sizeof(mac)), VMENC_E_AUDIT_TAMPERED);
    return VMENC_OK;
}
