/*
 * lib/core/utf8.c - strict UTF-8 (RFC 3629): no overlong forms, no
 * surrogates, nothing above U+10FFFF. One implementation for every parser
 * (KMIP text strings, audit records, the VM text formats, the workspace
 * configuration).
 *
 * Copyright 2026 The vmenc authors. Licensed under the Apache License 2.0.
 */
#include "core/internal.h"

size_t vmenc_utf8_seq_len(const uint8_t *p, size_t len) {
    if (len == 0)
        return 0;
    uint8_t c = p[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint8_t lo = 0x80, hi = 0xbf; /* the second byte's range (RFC 3629 table) */
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (len < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

bool vmenc_utf8_valid(const uint8_t *s, size_t len) {
    for (size_t i = 0; i < len;) {
        size_t n = vmenc_utf8_seq_len(s + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}
