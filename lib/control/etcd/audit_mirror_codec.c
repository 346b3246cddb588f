/*
 * lib/control/etcd/audit_mirror_codec.c - the bytes of the etcd audit
 * mirror (docs/cluster.md "Events"): a host's head value "<seq> <64
 * lowercase hex>\n" and the sequence number in a record key's last
 * segment (20 decimal digits). Pure: bytes in, numbers out, no I/O; fuzzed
 * by fuzz/audit_mirror_head_fuzz.c (round trip).
 *
 * Safety rule: values read from etcd are parsed through the bounded cursor
 * and accepted only in the one encoding ctl_audit_head_format writes, so a
 * head has exactly one representation and the compare-and-swap on its
 * value cannot be dodged by an equivalent spelling.
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "control/etcd/audit_mirror.h"

size_t ctl_audit_head_format(uint64_t seq, const uint8_t hash[VMENC_AUDIT_HASH_BYTES],
                             char out[CTL_AUDIT_HEAD_VALUE_MAX]) {
    static const char hex[] = "0123456789abcdef";
    int n = snprintf(out, CTL_AUDIT_HEAD_VALUE_MAX, "%" PRIu64 " ", seq);
    size_t k = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; i < VMENC_AUDIT_HASH_BYTES; i++) {
        out[k++] = hex[hash[i] >> 4];
        out[k++] = hex[hash[i] & 15];
    }
    out[k++] = '\n';
    out[k] = '\0';
    return k;
}

static int hexval(uint8_t c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* get_decimal reads 1..20 digits, no leading zero unless "0", no overflow. */
static bool get_decimal(vmenc_cbs *cbs, size_t max_digits, bool zero_ok_lead, uint64_t *out) {
    vmenc_cbs c = *cbs;
    uint64_t v = 0;
    size_t n = 0;
    uint8_t d;
    while (n < max_digits && vmenc_cbs_peek_u8(&c, &d) && d >= '0' && d <= '9') {
        if (v > (UINT64_MAX - (uint64_t)(d - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(d - '0');
        n++;
        (void)vmenc_cbs_skip(&c, 1);
    }
    if (n == 0 || (!zero_ok_lead && n > 1 && cbs->data[0] == '0'))
        return false;
    *out = v;
    *cbs = c;
    return true;
}

vmenc_status ctl_audit_head_parse(const uint8_t *v, size_t len, uint64_t *out_seq,
                                  uint8_t out_hash[VMENC_AUDIT_HASH_BYTES]) {
    VMENC_ENSURE(v != NULL || len == 0, VMENC_E_INVALID_ARG);
    vmenc_cbs cbs;
    vmenc_cbs_init(&cbs, v, len);
    uint64_t seq = 0;
    uint8_t sp = 0, nl = 0;
    uint8_t hash[VMENC_AUDIT_HASH_BYTES];
    VMENC_ENSURE(get_decimal(&cbs, 20, false, &seq), VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_get_u8(&cbs, &sp) && sp == ' ', VMENC_E_PARSE);
    for (size_t i = 0; i < VMENC_AUDIT_HASH_BYTES; i++) {
        uint8_t hi = 0, lo = 0;
        VMENC_ENSURE(vmenc_cbs_get_u8(&cbs, &hi) && vmenc_cbs_get_u8(&cbs, &lo), VMENC_E_PARSE);
        int h = hexval(hi), l = hexval(lo);
        VMENC_ENSURE(h >= 0 && l >= 0, VMENC_E_PARSE);
        hash[i] = (uint8_t)(h << 4 | l);
    }
    VMENC_ENSURE(vmenc_cbs_get_u8(&cbs, &nl) && nl == '\n', VMENC_E_PARSE);
    VMENC_ENSURE(vmenc_cbs_len(&cbs) == 0, VMENC_E_TRAILING_DATA);
    *out_seq = seq;
    memcpy(out_hash, hash, VMENC_AUDIT_HASH_BYTES);
    return VMENC_OK;
}

vmenc_status ctl_audit_seq_parse(const uint8_t *s, size_t len, uint64_t *out_seq) {
    VMENC_ENSURE(s != NULL && len == CTL_AUDIT_SEQ_DIGITS, VMENC_E_PARSE);
    vmenc_cbs cbs;
    vmenc_cbs_init(&cbs, s, len);
    uint64_t seq = 0;
    VMENC_ENSURE(get_decimal(&cbs, CTL_AUDIT_SEQ_DIGITS, true, &seq) && vmenc_cbs_len(&cbs) == 0, VMENC_E_PARSE);
    *out_seq = seq;
    return VMENC_OK;
}
