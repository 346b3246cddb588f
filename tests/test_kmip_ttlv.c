/*
 * tests/test_kmip_ttlv.c - the KMIP TTLV codec and message layer: the
 * encoding examples of the KMIP specification (§9.1.2), a real KMIP request
 * captured from a server log, every class of malformed input, limits, a
 * random round-trip property, and the mapping of KMIP result reasons.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "kms/kmip/kmip_msg.h"
#include "kms/kmip/ttlv.h"

/* ---- helpers --------------------------------------------------------------------- */

static size_t unhex(const char *hex, uint8_t *out, size_t cap) {
    size_t n = 0;
    for (const char *p = hex; *p != '\0';) {
        if (*p == ' ' || *p == '|') {
            p++;
            continue;
        }
        unsigned v;
        assert_int_equal(sscanf(p, "%2x", &v), 1);
        assert_true(n < cap);
        out[n++] = (uint8_t)v;
        p += 2;
    }
    return n;
}

/* round_trip decodes |in| and checks re-encoding gives the same bytes. */
static void round_trip(const uint8_t *in, size_t len, vmenc_ttlv_doc *doc) {
    assert_int_equal(vmenc_ttlv_decode(in, len, doc), VMENC_OK);
    vmenc_cbb cbb;
    assert_int_equal(vmenc_cbb_init(&cbb, 16), VMENC_OK);
    vmenc_ttlv_encode_node(&cbb, doc, 0);
    uint8_t *out;
    size_t out_len;
    assert_int_equal(vmenc_cbb_finish(&cbb, &out, &out_len), VMENC_OK);
    assert_int_equal(out_len, len);
    assert_memory_equal(out, in, len);
    free(out);
}

static vmenc_status decode_hex(const char *hex) {
    uint8_t buf[256];
    size_t n = unhex(hex, buf, sizeof(buf));
    vmenc_ttlv_doc doc = {0};
    vmenc_status s = vmenc_ttlv_decode(buf, n, &doc);
    vmenc_ttlv_doc_cleanup(&doc);
    return s;
}

/* builder_equals checks that what |cbb| holds equals |hex|. */
static void builder_equals(vmenc_cbb *cbb, const char *hex) {
    uint8_t want[256];
    size_t n = unhex(hex, want, sizeof(want));
    uint8_t *out;
    size_t out_len;
    assert_int_equal(vmenc_cbb_finish(cbb, &out, &out_len), VMENC_OK);
    assert_int_equal(out_len, n);
    assert_memory_equal(out, want, n);
    free(out);
}

/* ---- KMIP spec §9.1.2 examples ---------------------------------------------------- */

static const char k_int8[] = "42 00 20 | 02 | 00 00 00 04 | 00 00 00 08 00 00 00 00";
static const char k_long[] = "42 00 20 | 03 | 00 00 00 08 | 01 B6 9B 4B A5 74 92 00";
static const char k_bigint[] =
    "42 00 20 | 04 | 00 00 00 10 | 00 00 00 00 03 FD 35 EB 6B C2 DF 46 18 08 00 00";
static const char k_enum[] = "42 00 20 | 05 | 00 00 00 04 | 00 00 00 FF 00 00 00 00";
static const char k_bool[] = "42 00 20 | 06 | 00 00 00 08 | 00 00 00 00 00 00 00 01";
static const char k_text[] =
    "42 00 20 | 07 | 00 00 00 0B | 48 65 6C 6C 6F 20 57 6F 72 6C 64 00 00 00 00 00";
static const char k_bytes[] = "42 00 20 | 08 | 00 00 00 03 | 01 02 03 00 00 00 00 00";
static const char k_datetime[] = "42 00 20 | 09 | 00 00 00 08 | 00 00 00 00 47 DA 67 F8";
static const char k_interval[] = "42 00 20 | 0A | 00 00 00 04 | 00 0D 2F 00 00 00 00 00";
static const char k_struct[] = "42 00 20 | 01 | 00 00 00 20 | 42 00 04 | 05 | 00 00 00 04 | 00 00 00 FE 00 00 00 00 |"
                               " 42 00 05 | 02 | 00 00 00 04 | 00 00 00 FF 00 00 00 00";

static void decode_one(const char *hex, vmenc_ttlv_doc *doc, uint8_t *buf, size_t cap) {
    size_t n = unhex(hex, buf, cap);
    round_trip(buf, n, doc);
    assert_int_equal(doc->nodes[0].tag, 0x420020);
}

static void test_spec_examples_decode(void **state) {
    uint8_t buf[256];
    vmenc_ttlv_doc d;

    decode_one(k_int8, &d, buf, sizeof(buf));
    assert_int_equal(d.nodes[0].type, VMENC_TTLV_INTEGER);
    assert_int_equal(d.nodes[0].v.i32, 8);
    vmenc_ttlv_doc_cleanup(&d);

    decode_one(k_long, &d, buf, sizeof(buf));
    assert_int_equal(d.nodes[0].type, VMENC_TTLV_LONG_INTEGER);
    assert_true(d.nodes[0].v.i64 == 123456789000000000LL);
    vmenc_ttlv_doc_cleanup(&d);

    decode_one(k_bigint, &d, buf, sizeof(buf));
    assert_int_equal(d.nodes[0].type, VMENC_TTLV_BIG_INTEGER);
    assert_int_equal(d.nodes[0].len, 16);
    assert_int_equal(d.nodes[0].bytes[4], 0x03);
    vmenc_ttlv_doc_cleanup(&d);

    decode_one(k_enum, &d, buf, sizeof(buf));
    assert_int_equal(d.nodes[0].type, VMENC_TTLV_ENUMERATION);
    assert_int_equal(d.nodes[0].v.u32, 255);
    vmenc_ttlv_doc_cleanup(&d);

    decode_one(k_bool, &d, buf, sizeof(buf));
    assert_int_equal(d.nodes[0].type, VMENC_TTLV_BOOLEAN);
    assert_true(d.nodes[0].v.b);
    vmenc_ttlv_doc_cleanup(&d);

    decode_one(k_text, &d, buf, sizeof(buf));
    assert_int_equal(d.nodes[0].type, VMENC_TTLV_TEXT_STRING);
    assert_int_equal(d.nodes[0].len, 11);
    assert_memory_equal(d.nodes[0].bytes, "Hello World", 11);
    vmenc_ttlv_doc_cleanup(&d);

    decode_one(k_bytes, &d, buf, sizeof(buf));
    assert_int_equal(d.nodes[0].type, VMENC_TTLV_BYTE_STRING);
    assert_int_equal(d.nodes[0].len, 3);
    assert_memory_equal(d.nodes[0].bytes, "\x01\x02\x03", 3);
    vmenc_ttlv_doc_cleanup(&d);

    decode_one(k_datetime, &d, buf, sizeof(buf));
    assert_int_equal(d.nodes[0].type, VMENC_TTLV_DATE_TIME);
    assert_true(d.nodes[0].v.i64 == 1205495800LL); /* 2008-03-14 11:56:40 UTC */
    vmenc_ttlv_doc_cleanup(&d);

    decode_one(k_interval, &d, buf, sizeof(buf));
    assert_int_equal(d.nodes[0].type, VMENC_TTLV_INTERVAL);
    assert_int_equal(d.nodes[0].v.u32, 10u * 24 * 3600);
    vmenc_ttlv_doc_cleanup(&d);

    decode_one(k_struct, &d, buf, sizeof(buf));
    assert_int_equal(d.nodes[0].type, VMENC_TTLV_STRUCTURE);
    assert_int_equal(d.num, 3);
    uint32_t e;
    int32_t i;
    assert_int_equal(vmenc_ttlv_get_enum(&d, 0, 0x420004, &e), VMENC_OK);
    assert_int_equal(e, 254);
    assert_int_equal(vmenc_ttlv_get_int(&d, 0, 0x420005, &i), VMENC_OK);
    assert_int_equal(i, 255);
    /* A getter of the wrong type or a missing tag is a protocol error. */
    assert_int_equal(vmenc_ttlv_get_int(&d, 0, 0x420004, &i), VMENC_E_KMS_PROTOCOL);
    assert_int_equal(vmenc_ttlv_get_enum(&d, 0, 0x420006, &e), VMENC_E_KMS_PROTOCOL);
    vmenc_ttlv_doc_cleanup(&d);
}

static void test_spec_examples_encode(void **state) {
    vmenc_cbb c;
    assert_int_equal(vmenc_cbb_init(&c, 8), VMENC_OK);
    vmenc_ttlv_add_int(&c, 0x420020, 8);
    builder_equals(&c, k_int8);
    assert_int_equal(vmenc_cbb_init(&c, 8), VMENC_OK);
    vmenc_ttlv_add_long(&c, 0x420020, 123456789000000000LL);
    builder_equals(&c, k_long);
    static const uint8_t big[16] = {0, 0, 0, 0, 0x03, 0xFD, 0x35, 0xEB, 0x6B, 0xC2, 0xDF, 0x46, 0x18, 0x08, 0, 0};
    assert_int_equal(vmenc_cbb_init(&c, 8), VMENC_OK);
    vmenc_ttlv_add_bigint(&c, 0x420020, big, sizeof(big));
    builder_equals(&c, k_bigint);
    assert_int_equal(vmenc_cbb_init(&c, 8), VMENC_OK);
    vmenc_ttlv_add_enum(&c, 0x420020, 255);
    builder_equals(&c, k_enum);
    assert_int_equal(vmenc_cbb_init(&c, 8), VMENC_OK);
    vmenc_ttlv_add_bool(&c, 0x420020, true);
    builder_equals(&c, k_bool);
    assert_int_equal(vmenc_cbb_init(&c, 8), VMENC_OK);
    vmenc_ttlv_add_text(&c, 0x420020, "Hello World", 11);
    builder_equals(&c, k_text);
    assert_int_equal(vmenc_cbb_init(&c, 8), VMENC_OK);
    vmenc_ttlv_add_bytes(&c, 0x420020, (const uint8_t *)"\x01\x02\x03", 3);
    builder_equals(&c, k_bytes);
    assert_int_equal(vmenc_cbb_init(&c, 8), VMENC_OK);
    vmenc_ttlv_add_datetime(&c, 0x420020, 1205495800LL);
    builder_equals(&c, k_datetime);
    assert_int_equal(vmenc_cbb_init(&c, 8), VMENC_OK);
    vmenc_ttlv_add_interval(&c, 0x420020, 864000);
    builder_equals(&c, k_interval);
    assert_int_equal(vmenc_cbb_init(&c, 8), VMENC_OK);
    size_t m = vmenc_ttlv_begin_struct(&c, 0x420020);
    vmenc_ttlv_add_enum(&c, 0x420004, 254);
    vmenc_ttlv_add_int(&c, 0x420005, 255);
    vmenc_ttlv_end_struct(&c, m);
    builder_equals(&c, k_struct);
}

static void test_builder_rejects_bad_items(void **state) {
    vmenc_cbb c;
    uint8_t *out = NULL;
    size_t len;
    assert_int_equal(vmenc_cbb_init(&c, 8), VMENC_OK);
    vmenc_ttlv_add_int(&c, 0x430001, 1); /* not a KMIP tag */
    assert_int_equal(vmenc_cbb_finish(&c, &out, &len), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_cbb_init(&c, 8), VMENC_OK);
    vmenc_ttlv_add_bigint(&c, 0x420020, (const uint8_t *)"abc", 3);
    assert_int_equal(vmenc_cbb_finish(&c, &out, &len), VMENC_E_INVALID_ARG);
    assert_int_equal(vmenc_cbb_init(&c, 8), VMENC_OK);
    vmenc_ttlv_add_text(&c, 0x420020, "\xC0\x80", 2);
    assert_int_equal(vmenc_cbb_finish(&c, &out, &len), VMENC_E_BAD_ENCODING);
    assert_null(out);
    /* Extension tags (0x54xxxx) are KMIP too. */
    assert_int_equal(vmenc_cbb_init(&c, 8), VMENC_OK);
    vmenc_ttlv_add_int(&c, 0x540001, 1);
    assert_int_equal(vmenc_cbb_finish(&c, &out, &len), VMENC_OK);
    free(out);
}

/* A Get request as a KMS logged it (public DecodeTTLV example): header
 * with Authentication/Credential, one batch item, Get by a 64-char UID. */
static const char k_real_get[] =
    "42007801000001084200770100000088420069010000002042006a0200000004000000010000000042006b0200000004000000"
    "000000000042000c01000000484200230100000040420024050000000400000001000000004200250100000028420099070000"
    "000d69647261632d4c4844343436310000004200a1070000000864656c6c3132333442000d0200000004000000010000000042"
    "000f010000007042005c05000000040000000a00000000420079010000005842009407000000403939463430383239373839"
    "433138394536373637393942454146353430333535323732333033324642444336414234384537434442394546373542363142"
    "334142004205000000040000000100000000";

static void test_real_request_round_trip(void **state) {
    uint8_t buf[512];
    size_t n = unhex(k_real_get, buf, sizeof(buf));
    assert_int_equal(n, 0x108 + 8);
    vmenc_ttlv_doc d;
    round_trip(buf, n, &d);
    assert_int_equal(d.nodes[0].tag, KMIP_TAG_REQUEST_MESSAGE);
    uint32_t hdr, item, pv, payload, op;
    int32_t major, count;
    assert_int_equal(vmenc_ttlv_get_struct(&d, 0, KMIP_TAG_REQUEST_HEADER, &hdr), VMENC_OK);
    assert_int_equal(vmenc_ttlv_get_struct(&d, hdr, KMIP_TAG_PROTOCOL_VERSION, &pv), VMENC_OK);
    assert_int_equal(vmenc_ttlv_get_int(&d, pv, KMIP_TAG_PROTOCOL_VERSION_MAJOR, &major), VMENC_OK);
    assert_int_equal(major, 1);
    assert_int_equal(vmenc_ttlv_get_int(&d, hdr, KMIP_TAG_BATCH_COUNT, &count), VMENC_OK);
    assert_int_equal(count, 1);
    assert_int_equal(vmenc_ttlv_get_struct(&d, 0, KMIP_TAG_BATCH_ITEM, &item), VMENC_OK);
    assert_int_equal(vmenc_ttlv_get_enum(&d, item, KMIP_TAG_OPERATION, &op), VMENC_OK);
    assert_int_equal(op, KMIP_OP_GET);
    assert_int_equal(vmenc_ttlv_get_struct(&d, item, KMIP_TAG_REQUEST_PAYLOAD, &payload), VMENC_OK);
    const char *uid;
    size_t uid_len;
    assert_int_equal(vmenc_ttlv_get_text(&d, payload, KMIP_TAG_UNIQUE_IDENTIFIER, &uid, &uid_len), VMENC_OK);
    assert_int_equal(uid_len, 64);
    assert_memory_equal(uid, "99F40829789C189E676799BEAF540355272303", 38);
    vmenc_ttlv_doc_cleanup(&d);
}

/* ---- malformed input, one class at a time ------------------------------------------- */

static void test_malformed_classes(void **state) {
    vmenc_ttlv_doc d = {0};
    assert_int_equal(vmenc_ttlv_decode(NULL, 0, &d), VMENC_E_TRUNCATED);
    assert_int_equal(decode_hex("42 00 20 02 00 00 00"), VMENC_E_TRUNCATED);                 /* short header */
    assert_int_equal(decode_hex("42 00 20 02 00 00 00 04 00 00 00 08"), VMENC_E_TRUNCATED);  /* no padding */
    assert_int_equal(decode_hex("42 00 20 07 FF FF FF FF 41"), VMENC_E_TRUNCATED);           /* huge length */
    assert_int_equal(decode_hex("43 00 20 02 00 00 00 04 00 00 00 08 00 00 00 00"), VMENC_E_PARSE); /* tag */
    assert_int_equal(decode_hex("42 00 20 00 00 00 00 00"), VMENC_E_PARSE);                  /* type 0 */
    assert_int_equal(decode_hex("42 00 20 0B 00 00 00 08 00 00 00 00 00 00 00 00"), VMENC_E_PARSE); /* type 0x0B */
    assert_int_equal(decode_hex("42 00 20 FF 00 00 00 00"), VMENC_E_PARSE);
    /* Lengths that disagree with the type. */
    assert_int_equal(decode_hex("42 00 20 02 00 00 00 08 00 00 00 08 00 00 00 00"), VMENC_E_PARSE);
    assert_int_equal(decode_hex("42 00 20 05 00 00 00 03 00 00 FF 00 00 00 00 00"), VMENC_E_PARSE);
    assert_int_equal(decode_hex("42 00 20 0A 00 00 00 08 00 00 00 00 00 00 00 01"), VMENC_E_PARSE);
    assert_int_equal(decode_hex("42 00 20 03 00 00 00 04 00 00 00 08 00 00 00 00"), VMENC_E_PARSE);
    assert_int_equal(decode_hex("42 00 20 09 00 00 00 04 00 00 00 08 00 00 00 00"), VMENC_E_PARSE);
    assert_int_equal(decode_hex("42 00 20 06 00 00 00 04 00 00 00 01 00 00 00 00"), VMENC_E_PARSE);
    assert_int_equal(decode_hex("42 00 20 04 00 00 00 00"), VMENC_E_PARSE);                  /* empty bigint */
    assert_int_equal(decode_hex("42 00 20 04 00 00 00 0C 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00"),
                     VMENC_E_PARSE);
    /* Boolean other than 0/1. */
    assert_int_equal(decode_hex("42 00 20 06 00 00 00 08 00 00 00 00 00 00 00 02"), VMENC_E_PARSE);
    /* Non-zero padding. */
    assert_int_equal(decode_hex("42 00 20 02 00 00 00 04 00 00 00 08 00 00 00 01"), VMENC_E_PARSE);
    assert_int_equal(decode_hex("42 00 20 08 00 00 00 03 01 02 03 00 00 00 80 00"), VMENC_E_PARSE);
    /* Structures: length not a multiple of 8, shorter than the child,
     * longer than the input. */
    assert_int_equal(decode_hex("42 00 20 01 00 00 00 0C 42 00 04 02 00 00 00 04 00 00 00 01 00 00 00 00"),
                     VMENC_E_PARSE);
    assert_int_equal(decode_hex("42 00 20 01 00 00 00 08 42 00 04 02 00 00 00 04 00 00 00 01 00 00 00 00"),
                     VMENC_E_PARSE);
    assert_int_equal(decode_hex("42 00 20 01 00 00 00 18 42 00 04 02 00 00 00 04 00 00 00 01 00 00 00 00"),
                     VMENC_E_TRUNCATED);
    /* A child that is itself bad inside a good structure. */
    assert_int_equal(decode_hex("42 00 20 01 00 00 00 10 42 00 04 06 00 00 00 08 00 00 00 00 00 00 00 07"),
                     VMENC_E_PARSE);
    /* Trailing bytes after the one top-level item. */
    assert_int_equal(decode_hex("42 00 20 02 00 00 00 04 00 00 00 08 00 00 00 00 42"), VMENC_E_TRAILING_DATA);
    assert_int_equal(decode_hex("42 00 20 02 00 00 00 04 00 00 00 08 00 00 00 00 "
                                "42 00 20 02 00 00 00 04 00 00 00 08 00 00 00 00"),
                     VMENC_E_TRAILING_DATA);
    /* Text Strings must be UTF-8: overlong, surrogate, lone continuation,
     * beyond U+10FFFF, truncated sequence. */
    assert_int_equal(decode_hex("42 00 20 07 00 00 00 02 C0 80 00 00 00 00 00 00"), VMENC_E_BAD_ENCODING);
    assert_int_equal(decode_hex("42 00 20 07 00 00 00 03 ED A0 80 00 00 00 00 00"), VMENC_E_BAD_ENCODING);
    assert_int_equal(decode_hex("42 00 20 07 00 00 00 01 80 00 00 00 00 00 00 00"), VMENC_E_BAD_ENCODING);
    assert_int_equal(decode_hex("42 00 20 07 00 00 00 04 F4 90 80 80 00 00 00 00"), VMENC_E_BAD_ENCODING);
    assert_int_equal(decode_hex("42 00 20 07 00 00 00 02 E2 82 00 00 00 00 00 00"), VMENC_E_BAD_ENCODING);
    /* ...while valid multi-byte UTF-8 and any Byte String are fine. */
    assert_int_equal(decode_hex("42 00 20 07 00 00 00 07 E2 82 AC F0 9F 94 91 00"), VMENC_OK);
    assert_int_equal(decode_hex("42 00 20 08 00 00 00 02 C0 80 00 00 00 00 00 00"), VMENC_OK);
    /* Empty strings and an empty structure are legal. */
    assert_int_equal(decode_hex("42 00 20 07 00 00 00 00"), VMENC_OK);
    assert_int_equal(decode_hex("42 00 20 01 00 00 00 00"), VMENC_OK);
}

static void test_failure_leaves_output_untouched(void **state) {
    vmenc_ttlv_doc d;
    memset(&d, 0xA5, sizeof(d));
    vmenc_ttlv_doc copy = d;
    uint8_t bad[] = {0x42, 0x00, 0x20, 0x02, 0, 0, 0, 4, 0, 0, 0, 8, 0, 0, 0, 9};
    assert_int_equal(vmenc_ttlv_decode(bad, sizeof(bad), &d), VMENC_E_PARSE);
    assert_memory_equal(&d, &copy, sizeof(d));
}

/* nested builds |depth| structures, each inside the previous. */
static uint8_t *nested(unsigned depth, size_t *len) {
    vmenc_cbb c;
    assert_int_equal(vmenc_cbb_init(&c, 64), VMENC_OK);
    size_t marks[64];
    for (unsigned i = 0; i < depth; i++)
        marks[i] = vmenc_ttlv_begin_struct(&c, 0x420020);
    vmenc_ttlv_add_int(&c, 0x420021, 1);
    for (unsigned i = depth; i > 0; i--)
        vmenc_ttlv_end_struct(&c, marks[i - 1]);
    uint8_t *out;
    assert_int_equal(vmenc_cbb_finish(&c, &out, len), VMENC_OK);
    return out;
}

static void test_depth_limit(void **state) {
    size_t len;
    vmenc_ttlv_doc d;
    uint8_t *ok = nested(VMENC_TTLV_MAX_DEPTH - 1, &len); /* + the Integer = MAX_DEPTH levels */
    round_trip(ok, len, &d);
    vmenc_ttlv_doc_cleanup(&d);
    free(ok);
    uint8_t *deep = nested(VMENC_TTLV_MAX_DEPTH, &len);
    assert_int_equal(vmenc_ttlv_decode(deep, len, &d), VMENC_E_DEPTH_LIMIT);
    free(deep);
}

static uint8_t *wide(unsigned children, size_t *len) {
    vmenc_cbb c;
    assert_int_equal(vmenc_cbb_init(&c, 64), VMENC_OK);
    size_t m = vmenc_ttlv_begin_struct(&c, 0x420020);
    for (unsigned i = 0; i < children; i++)
        vmenc_ttlv_add_bool(&c, 0x420021, i & 1);
    vmenc_ttlv_end_struct(&c, m);
    uint8_t *out;
    assert_int_equal(vmenc_cbb_finish(&c, &out, len), VMENC_OK);
    return out;
}

static void test_item_count_and_size_limits(void **state) {
    size_t len;
    vmenc_ttlv_doc d;
    uint8_t *ok = wide(VMENC_TTLV_MAX_NODES - 1, &len);
    round_trip(ok, len, &d);
    assert_int_equal(d.num, VMENC_TTLV_MAX_NODES);
    vmenc_ttlv_doc_cleanup(&d);
    free(ok);
    uint8_t *many = wide(VMENC_TTLV_MAX_NODES, &len);
    assert_int_equal(vmenc_ttlv_decode(many, len, &d), VMENC_E_TOO_LARGE);
    free(many);

    /* A message over the size limit is refused before parsing; the header
     * check that sizes a read refuses it too. */
    size_t big = VMENC_TTLV_MAX_MESSAGE + 8;
    uint8_t *b = calloc(1, big);
    assert_non_null(b);
    b[0] = 0x42; b[1] = 0x00; b[2] = 0x20; b[3] = VMENC_TTLV_BYTE_STRING;
    vmenc_store_u32_be(b + 4, (uint32_t)(big - 8));
    assert_int_equal(vmenc_ttlv_decode(b, big, &d), VMENC_E_TOO_LARGE);
    size_t total;
    assert_int_equal(vmenc_ttlv_message_len(b, 8, VMENC_TTLV_MAX_MESSAGE, &total), VMENC_E_TOO_LARGE);
    vmenc_store_u32_be(b + 4, 13);
    assert_int_equal(vmenc_ttlv_message_len(b, 8, VMENC_TTLV_MAX_MESSAGE, &total), VMENC_OK);
    assert_int_equal(total, 8 + 16);
    assert_int_equal(vmenc_ttlv_message_len(b, 7, VMENC_TTLV_MAX_MESSAGE, &total), VMENC_E_TRUNCATED);
    b[3] = VMENC_TTLV_INTEGER; /* Integer of length 13: refused from the header alone */
    assert_int_equal(vmenc_ttlv_message_len(b, 8, VMENC_TTLV_MAX_MESSAGE, &total), VMENC_E_PARSE);
    free(b);
}

/* ---- property: random well-formed trees round-trip ---------------------------------- */

static uint64_t g_rng = 0x243F6A8885A308D3ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static void random_item(vmenc_cbb *c, unsigned depth) {
    uint32_t tag = 0x420000 | (uint32_t)(rnd() & 0xFFFF);
    unsigned type = depth < 5 ? 1 + rnd() % 10 : 2 + rnd() % 9;
    uint8_t buf[40];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)('a' + rnd() % 26);
    switch (type) {
    case 1: {
        size_t m = vmenc_ttlv_begin_struct(c, tag);
        unsigned n = rnd() % 5;
        for (unsigned i = 0; i < n; i++)
            random_item(c, depth + 1);
        vmenc_ttlv_end_struct(c, m);
        break;
    }
    case 2: vmenc_ttlv_add_int(c, tag, (int32_t)rnd()); break;
    case 3: vmenc_ttlv_add_long(c, tag, (int64_t)rnd()); break;
    case 4: vmenc_ttlv_add_bigint(c, tag, buf, 8 * (1 + rnd() % 4)); break;
    case 5: vmenc_ttlv_add_enum(c, tag, (uint32_t)rnd()); break;
    case 6: vmenc_ttlv_add_bool(c, tag, rnd() & 1); break;
    case 7: vmenc_ttlv_add_text(c, tag, (const char *)buf, rnd() % sizeof(buf)); break;
    case 8: vmenc_ttlv_add_bytes(c, tag, buf, rnd() % sizeof(buf)); break;
    case 9: vmenc_ttlv_add_datetime(c, tag, (int64_t)rnd()); break;
    default: vmenc_ttlv_add_interval(c, tag, (uint32_t)rnd()); break;
    }
}

static void test_random_trees_round_trip(void **state) {
    for (int iter = 0; iter < 500; iter++) {
        vmenc_cbb c;
        assert_int_equal(vmenc_cbb_init(&c, 64), VMENC_OK);
        size_t m = vmenc_ttlv_begin_struct(&c, KMIP_TAG_REQUEST_MESSAGE);
        random_item(&c, 1);
        random_item(&c, 1);
        vmenc_ttlv_end_struct(&c, m);
        uint8_t *msg;
        size_t len;
        assert_int_equal(vmenc_cbb_finish(&c, &msg, &len), VMENC_OK);
        assert_int_equal(len % 8, 0);
        vmenc_ttlv_doc d;
        round_trip(msg, len, &d);
        vmenc_ttlv_doc_cleanup(&d);
        /* Every truncation of a valid message is refused. */
        size_t cut = rnd() % len;
        assert_int_not_equal(vmenc_ttlv_decode(msg, cut, &d), VMENC_OK);
        free(msg);
    }
}

/* ---- messages ------------------------------------------------------------------------ */

static void test_request_builder(void **state) {
    vmenc_kmip_request req;
    vmenc_kmip_version v14 = {1, 4};
    assert_int_equal(vmenc_kmip_request_begin(&req, v14, 2), VMENC_OK);
    vmenc_kmip_request_item_begin(&req, KMIP_OP_GET);
    vmenc_ttlv_add_text(&req.cbb, KMIP_TAG_UNIQUE_IDENTIFIER, "42", 2);
    vmenc_kmip_request_item_end(&req);
    vmenc_kmip_request_item_begin(&req, KMIP_OP_GET_ATTRIBUTES);
    vmenc_kmip_request_item_end(&req);
    uint8_t *msg;
    size_t len;
    assert_int_equal(vmenc_kmip_request_finish(&req, &msg, &len), VMENC_OK);
    vmenc_ttlv_doc d;
    round_trip(msg, len, &d);
    uint32_t hdr, pv, item;
    int32_t v, count;
    assert_int_equal(vmenc_ttlv_get_struct(&d, 0, KMIP_TAG_REQUEST_HEADER, &hdr), VMENC_OK);
    assert_int_equal(vmenc_ttlv_get_struct(&d, hdr, KMIP_TAG_PROTOCOL_VERSION, &pv), VMENC_OK);
    assert_int_equal(vmenc_ttlv_get_int(&d, pv, KMIP_TAG_PROTOCOL_VERSION_MINOR, &v), VMENC_OK);
    assert_int_equal(v, 4);
    assert_int_equal(vmenc_ttlv_get_int(&d, hdr, KMIP_TAG_BATCH_COUNT, &count), VMENC_OK);
    assert_int_equal(count, 2);
    assert_int_equal(vmenc_ttlv_count(&d, 0, KMIP_TAG_BATCH_ITEM), 2);
    item = vmenc_ttlv_child(&d, 0, KMIP_TAG_BATCH_ITEM, VMENC_TTLV_NONE);
    const uint8_t *id;
    size_t id_len;
    assert_int_equal(vmenc_ttlv_get_bytes(&d, item, KMIP_TAG_UNIQUE_BATCH_ITEM_ID, &id, &id_len), VMENC_OK);
    assert_int_equal(id_len, 1);
    assert_int_equal(id[0], 1);
    vmenc_ttlv_doc_cleanup(&d);
    free(msg);

    /* Fewer items than announced is a bug the builder catches. */
    assert_int_equal(vmenc_kmip_request_begin(&req, v14, 2), VMENC_OK);
    vmenc_kmip_request_item_begin(&req, KMIP_OP_GET);
    vmenc_kmip_request_item_end(&req);
    assert_int_equal(vmenc_kmip_request_finish(&req, &msg, &len), VMENC_E_INTERNAL);
}

/* make_response builds a Response Message with one batch item. */
static uint8_t *make_response(int batch_count, uint32_t op, uint32_t status, int reason, size_t *len) {
    vmenc_cbb c;
    assert_int_equal(vmenc_cbb_init(&c, 64), VMENC_OK);
    size_t m = vmenc_ttlv_begin_struct(&c, KMIP_TAG_RESPONSE_MESSAGE);
    size_t h = vmenc_ttlv_begin_struct(&c, KMIP_TAG_RESPONSE_HEADER);
    size_t pv = vmenc_ttlv_begin_struct(&c, KMIP_TAG_PROTOCOL_VERSION);
    vmenc_ttlv_add_int(&c, KMIP_TAG_PROTOCOL_VERSION_MAJOR, 1);
    vmenc_ttlv_add_int(&c, KMIP_TAG_PROTOCOL_VERSION_MINOR, 2);
    vmenc_ttlv_end_struct(&c, pv);
    vmenc_ttlv_add_datetime(&c, KMIP_TAG_TIME_STAMP, 1700000000);
    vmenc_ttlv_add_int(&c, KMIP_TAG_BATCH_COUNT, batch_count);
    vmenc_ttlv_end_struct(&c, h);
    size_t it = vmenc_ttlv_begin_struct(&c, KMIP_TAG_BATCH_ITEM);
    vmenc_ttlv_add_enum(&c, KMIP_TAG_OPERATION, op);
    vmenc_ttlv_add_enum(&c, KMIP_TAG_RESULT_STATUS, status);
    if (reason >= 0)
        vmenc_ttlv_add_enum(&c, KMIP_TAG_RESULT_REASON, (uint32_t)reason);
    vmenc_ttlv_add_text(&c, KMIP_TAG_RESULT_MESSAGE, "msg", 3);
    size_t p = vmenc_ttlv_begin_struct(&c, KMIP_TAG_RESPONSE_PAYLOAD);
    vmenc_ttlv_add_text(&c, KMIP_TAG_UNIQUE_IDENTIFIER, "7", 1);
    vmenc_ttlv_end_struct(&c, p);
    vmenc_ttlv_end_struct(&c, it);
    vmenc_ttlv_end_struct(&c, m);
    uint8_t *out;
    assert_int_equal(vmenc_cbb_finish(&c, &out, len), VMENC_OK);
    return out;
}

static void test_response_parse(void **state) {
    size_t len;
    uint8_t *msg = make_response(1, KMIP_OP_GET, KMIP_STATUS_OPERATION_FAILED, KMIP_REASON_ITEM_NOT_FOUND, &len);
    vmenc_kmip_response r;
    assert_int_equal(vmenc_kmip_response_parse(msg, len, &r), VMENC_OK);
    assert_int_equal(r.version.major, 1);
    assert_int_equal(r.version.minor, 2);
    assert_int_equal(r.num_items, 1);
    assert_int_equal(r.items[0].operation, KMIP_OP_GET);
    assert_int_equal(r.items[0].message_len, 3);
    assert_int_not_equal(r.items[0].payload, VMENC_TTLV_NONE);
    assert_int_equal(vmenc_kmip_result_status(&r.items[0]), VMENC_E_KEY_NOT_FOUND);
    vmenc_kmip_response_cleanup(&r);
    free(msg);

    /* Batch Count disagreeing with the items is a protocol violation, as
     * is any message that is not a Response Message or not TTLV at all. */
    msg = make_response(2, KMIP_OP_GET, KMIP_STATUS_SUCCESS, -1, &len);
    assert_int_equal(vmenc_kmip_response_parse(msg, len, &r), VMENC_E_KMS_PROTOCOL);
    msg[2] = 0x78; /* Request Message tag */
    assert_int_equal(vmenc_kmip_response_parse(msg, len, &r), VMENC_E_KMS_PROTOCOL);
    assert_int_equal(vmenc_kmip_response_parse(msg, len - 1, &r), VMENC_E_KMS_PROTOCOL);
    free(msg);
    assert_int_equal(vmenc_kmip_response_parse((const uint8_t *)"HTTP/1.1 400 Bad Request\r\n", 26, &r),
                     VMENC_E_KMS_PROTOCOL);
}

static void test_result_reason_mapping(void **state) {
    static const struct {
        uint32_t status;
        int reason;
        vmenc_status want;
    } cases[] = {
        {KMIP_STATUS_SUCCESS, -1, VMENC_OK},
        {KMIP_STATUS_OPERATION_FAILED, KMIP_REASON_ITEM_NOT_FOUND, VMENC_E_KEY_NOT_FOUND},
        {KMIP_STATUS_OPERATION_FAILED, KMIP_REASON_PERMISSION_DENIED, VMENC_E_KMS_PERMISSION},
        {KMIP_STATUS_OPERATION_FAILED, KMIP_REASON_AUTHENTICATION_NOT_SUCCESSFUL, VMENC_E_KMS_AUTH},
        {KMIP_STATUS_OPERATION_FAILED, KMIP_REASON_ILLEGAL_OPERATION, VMENC_E_KEY_STATE},
        {KMIP_STATUS_OPERATION_FAILED, KMIP_REASON_OBJECT_ARCHIVED, VMENC_E_KEY_STATE},
        {KMIP_STATUS_OPERATION_FAILED, KMIP_REASON_OPERATION_NOT_SUPPORTED, VMENC_E_UNSUPPORTED},
        {KMIP_STATUS_OPERATION_FAILED, KMIP_REASON_INVALID_MESSAGE, VMENC_E_KMS_PROTOCOL},
        {KMIP_STATUS_OPERATION_FAILED, KMIP_REASON_INVALID_FIELD, VMENC_E_KMS_PROTOCOL},
        {KMIP_STATUS_OPERATION_FAILED, KMIP_REASON_CRYPTOGRAPHIC_FAILURE, VMENC_E_CRYPTO},
        {KMIP_STATUS_OPERATION_FAILED, KMIP_REASON_NOT_EXTRACTABLE, VMENC_E_KMS_REFUSED},
        {KMIP_STATUS_OPERATION_FAILED, KMIP_REASON_GENERAL_FAILURE, VMENC_E_KMS},
        {KMIP_STATUS_OPERATION_FAILED, 0x7777, VMENC_E_KMS_REFUSED},
        {KMIP_STATUS_OPERATION_FAILED, -1, VMENC_E_KMS_REFUSED},
        {KMIP_STATUS_OPERATION_PENDING, -1, VMENC_E_KMS_PROTOCOL},
        {KMIP_STATUS_OPERATION_UNDONE, -1, VMENC_E_KMS},
        {99, -1, VMENC_E_KMS_PROTOCOL},
    };
    for (size_t i = 0; i < VMENC_ARRAY_LEN(cases); i++) {
        size_t len;
        uint8_t *msg = make_response(1, KMIP_OP_GET, cases[i].status, cases[i].reason, &len);
        vmenc_kmip_response r;
        assert_int_equal(vmenc_kmip_response_parse(msg, len, &r), VMENC_OK);
        assert_int_equal(vmenc_kmip_result_status(&r.items[0]), cases[i].want);
        /* No failure maps to "unavailable": a definite answer must never
         * make a cluster fail over. */
        assert_int_not_equal(vmenc_kmip_result_status(&r.items[0]), VMENC_E_KMS_UNAVAILABLE);
        vmenc_kmip_response_cleanup(&r);
        free(msg);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_examples_decode),
        cmocka_unit_test(test_spec_examples_encode),
        cmocka_unit_test(test_builder_rejects_bad_items),
        cmocka_unit_test(test_real_request_round_trip),
        cmocka_unit_test(test_malformed_classes),
        cmocka_unit_test(test_failure_leaves_output_untouched),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_item_count_and_size_limits),
        cmocka_unit_test(test_random_trees_round_trip),
        cmocka_unit_test(test_request_builder),
        cmocka_unit_test(test_response_parse),
        cmocka_unit_test(test_result_reason_mapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
