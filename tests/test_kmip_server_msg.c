/*
 * tests/test_kmip_server_msg.c - the server side of KMIP messages
 * (lib/kms/kmip/kmip_server_msg.h): every request the project's own client
 * encoder makes (kmip_msg.h, built here exactly as kmip_provider.c builds
 * them) parses on the server side with its operations, batch IDs and
 * payload fields; malformed shapes are refused; a response built by the
 * server side parses with the client's parser and maps to the statuses the
 * provider acts on.
 *
 * With VMENC_WRITE_CORPUS=DIR set it also writes each request to DIR (the
 * seed corpus of fuzz/kmip_request_fuzz.c).
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
#include "kms/kmip/kmip_server_msg.h"

static const vmenc_kmip_version V14 = {1, 4}, V20 = {2, 0};

static void maybe_write(const char *name, const uint8_t *b, size_t len) {
    const char *dir = getenv("VMENC_WRITE_CORPUS");
    if (dir == NULL)
        return;
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
}

/* The requests of kmip_provider.c. */
static void build_get(vmenc_kmip_version v, const char *id, uint8_t **out, size_t *out_len) {
    vmenc_kmip_request req;
    assert_int_equal(vmenc_kmip_request_begin(&req, v, 2), VMENC_OK);
    vmenc_kmip_request_item_begin(&req, KMIP_OP_GET);
    vmenc_ttlv_add_text(&req.cbb, KMIP_TAG_UNIQUE_IDENTIFIER, id, strlen(id));
    vmenc_kmip_request_item_end(&req);
    vmenc_kmip_request_item_begin(&req, KMIP_OP_GET_ATTRIBUTES);
    vmenc_ttlv_add_text(&req.cbb, KMIP_TAG_UNIQUE_IDENTIFIER, id, strlen(id));
    if (v.major >= 2)
        vmenc_ttlv_add_enum(&req.cbb, KMIP_TAG_ATTRIBUTE_REFERENCE, KMIP_TAG_STATE);
    else
        vmenc_ttlv_add_text(&req.cbb, KMIP_TAG_ATTRIBUTE_NAME, "State", 5);
    vmenc_kmip_request_item_end(&req);
    assert_int_equal(vmenc_kmip_request_finish(&req, out, out_len), VMENC_OK);
}

static void build_locate(vmenc_kmip_version v, const char *name, uint8_t **out, size_t *out_len) {
    vmenc_kmip_request req;
    assert_int_equal(vmenc_kmip_request_begin(&req, v, 1), VMENC_OK);
    vmenc_kmip_request_item_begin(&req, KMIP_OP_LOCATE);
    size_t m = v.major >= 2 ? vmenc_ttlv_begin_struct(&req.cbb, KMIP_TAG_ATTRIBUTES) : 0;
    vmenc_kmip_add_attr_enum(&req, "Object Type", KMIP_TAG_OBJECT_TYPE, KMIP_OBJECT_SYMMETRIC_KEY);
    vmenc_kmip_add_attr_name(&req, name, strlen(name));
    if (v.major >= 2)
        vmenc_ttlv_end_struct(&req.cbb, m);
    vmenc_kmip_request_item_end(&req);
    assert_int_equal(vmenc_kmip_request_finish(&req, out, out_len), VMENC_OK);
}

static void build_create(vmenc_kmip_version v, const char *name, uint8_t **out, size_t *out_len) {
    vmenc_kmip_request req;
    assert_int_equal(vmenc_kmip_request_begin(&req, v, 1), VMENC_OK);
    vmenc_kmip_request_item_begin(&req, KMIP_OP_CREATE);
    vmenc_ttlv_add_enum(&req.cbb, KMIP_TAG_OBJECT_TYPE, KMIP_OBJECT_SYMMETRIC_KEY);
    size_t m = vmenc_ttlv_begin_struct(&req.cbb, v.major >= 2 ? KMIP_TAG_ATTRIBUTES : KMIP_TAG_TEMPLATE_ATTRIBUTE);
    vmenc_kmip_add_attr_enum(&req, "Cryptographic Algorithm", KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, KMIP_ALG_AES);
    vmenc_kmip_add_attr_int(&req, "Cryptographic Length", KMIP_TAG_CRYPTOGRAPHIC_LENGTH, 256);
    vmenc_kmip_add_attr_name(&req, name, strlen(name));
    vmenc_ttlv_end_struct(&req.cbb, m);
    vmenc_kmip_request_item_end(&req);
    assert_int_equal(vmenc_kmip_request_finish(&req, out, out_len), VMENC_OK);
}

static void build_simple(vmenc_kmip_version v, uint32_t op, const char *id, uint8_t **out, size_t *out_len) {
    vmenc_kmip_request req;
    assert_int_equal(vmenc_kmip_request_begin(&req, v, 1), VMENC_OK);
    vmenc_kmip_request_item_begin(&req, op);
    if (op == KMIP_OP_QUERY)
        vmenc_ttlv_add_enum(&req.cbb, KMIP_TAG_QUERY_FUNCTION, KMIP_QUERY_OPERATIONS);
    else if (op == KMIP_OP_DISCOVER_VERSIONS) {
        size_t m = vmenc_ttlv_begin_struct(&req.cbb, KMIP_TAG_PROTOCOL_VERSION);
        vmenc_ttlv_add_int(&req.cbb, KMIP_TAG_PROTOCOL_VERSION_MAJOR, 1);
        vmenc_ttlv_add_int(&req.cbb, KMIP_TAG_PROTOCOL_VERSION_MINOR, 4);
        vmenc_ttlv_end_struct(&req.cbb, m);
    } else if (id != NULL)
        vmenc_ttlv_add_text(&req.cbb, KMIP_TAG_UNIQUE_IDENTIFIER, id, strlen(id));
    vmenc_kmip_request_item_end(&req);
    assert_int_equal(vmenc_kmip_request_finish(&req, out, out_len), VMENC_OK);
}

static void text_is(const vmenc_ttlv_doc *d, uint32_t parent, uint32_t tag, const char *want) {
    const char *s;
    size_t n;
    assert_int_equal(vmenc_ttlv_get_text(d, parent, tag, &s, &n), VMENC_OK);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(s, want, n);
}

static void test_client_requests_parse(void **state) {
    (void)state;
    const vmenc_kmip_version vs[] = {V14, V20};
    for (size_t k = 0; k < 2; k++) {
        vmenc_kmip_version v = vs[k];
        uint8_t *b;
        size_t len;
        char name[64];
        vmenc_kmip_server_request r;

        build_get(v, "kek-1234", &b, &len);
        snprintf(name, sizeof(name), "get-%u%u", v.major, v.minor);
        maybe_write(name, b, len);
        assert_int_equal(vmenc_kmip_server_request_parse(b, len, &r), VMENC_OK);
        assert_int_equal(r.version.major, v.major);
        assert_int_equal(r.version.minor, v.minor);
        assert_int_equal(r.max_response_size, (int32_t)VMENC_TTLV_MAX_MESSAGE);
        assert_int_equal(r.num_items, 2);
        assert_int_equal(r.items[0].operation, KMIP_OP_GET);
        assert_int_equal(r.items[1].operation, KMIP_OP_GET_ATTRIBUTES);
        assert_int_equal(r.items[0].batch_id_len, 1);
        assert_int_equal(r.items[0].batch_id[0], 1);
        assert_int_equal(r.items[1].batch_id[0], 2);
        text_is(&r.doc, r.items[0].payload, KMIP_TAG_UNIQUE_IDENTIFIER, "kek-1234");
        text_is(&r.doc, r.items[1].payload, KMIP_TAG_UNIQUE_IDENTIFIER, "kek-1234");
        vmenc_kmip_server_request_cleanup(&r);
        free(b);

        build_locate(v, "vm-kek-name", &b, &len);
        snprintf(name, sizeof(name), "locate-%u%u", v.major, v.minor);
        maybe_write(name, b, len);
        assert_int_equal(vmenc_kmip_server_request_parse(b, len, &r), VMENC_OK);
        assert_int_equal(r.num_items, 1);
        assert_int_equal(r.items[0].operation, KMIP_OP_LOCATE);
        assert_null(r.items[0].batch_id);
        vmenc_kmip_server_request_cleanup(&r);
        free(b);

        build_create(v, "new-kek", &b, &len);
        snprintf(name, sizeof(name), "create-%u%u", v.major, v.minor);
        maybe_write(name, b, len);
        assert_int_equal(vmenc_kmip_server_request_parse(b, len, &r), VMENC_OK);
        assert_int_equal(r.items[0].operation, KMIP_OP_CREATE);
        uint32_t ot;
        assert_int_equal(vmenc_ttlv_get_enum(&r.doc, r.items[0].payload, KMIP_TAG_OBJECT_TYPE, &ot), VMENC_OK);
        assert_int_equal(ot, KMIP_OBJECT_SYMMETRIC_KEY);
        vmenc_kmip_server_request_cleanup(&r);
        free(b);

        const uint32_t ops[] = {KMIP_OP_QUERY, KMIP_OP_DISCOVER_VERSIONS, KMIP_OP_ACTIVATE, 0x80000103u};
        for (size_t i = 0; i < 4; i++) {
            build_simple(v, ops[i], "kek-9", &b, &len);
            snprintf(name, sizeof(name), "op%x-%u%u", ops[i], v.major, v.minor);
            maybe_write(name, b, len);
            assert_int_equal(vmenc_kmip_server_request_parse(b, len, &r), VMENC_OK);
            assert_int_equal(r.items[0].operation, ops[i]);
            vmenc_kmip_server_request_cleanup(&r);
            free(b);
        }
    }
}

/* hand-built malformed requests */
static void bad(void (*fill)(vmenc_cbb *c)) {
    vmenc_cbb c;
    assert_int_equal(vmenc_cbb_init(&c, 128), VMENC_OK);
    fill(&c);
    uint8_t *b;
    size_t len;
    assert_int_equal(vmenc_cbb_finish(&c, &b, &len), VMENC_OK);
    vmenc_kmip_server_request r;
    assert_int_equal(vmenc_kmip_server_request_parse(b, len, &r), VMENC_E_KMS_PROTOCOL);
    assert_int_equal(r.num_items, 0);
    vmenc_kmip_server_request_cleanup(&r);
    free(b);
}

static void header(vmenc_cbb *c, int batch) {
    size_t h = vmenc_ttlv_begin_struct(c, KMIP_TAG_REQUEST_HEADER);
    size_t pv = vmenc_ttlv_begin_struct(c, KMIP_TAG_PROTOCOL_VERSION);
    vmenc_ttlv_add_int(c, KMIP_TAG_PROTOCOL_VERSION_MAJOR, 1);
    vmenc_ttlv_add_int(c, KMIP_TAG_PROTOCOL_VERSION_MINOR, 4);
    vmenc_ttlv_end_struct(c, pv);
    vmenc_ttlv_add_int(c, KMIP_TAG_BATCH_COUNT, batch);
    vmenc_ttlv_end_struct(c, h);
}

static void item(vmenc_cbb *c, bool with_op, bool with_payload, int ids) {
    size_t it = vmenc_ttlv_begin_struct(c, KMIP_TAG_BATCH_ITEM);
    if (with_op)
        vmenc_ttlv_add_enum(c, KMIP_TAG_OPERATION, KMIP_OP_GET);
    for (int i = 0; i < ids; i++) {
        uint8_t id = (uint8_t)(i + 1);
        vmenc_ttlv_add_bytes(c, KMIP_TAG_UNIQUE_BATCH_ITEM_ID, &id, 1);
    }
    if (with_payload) {
        size_t p = vmenc_ttlv_begin_struct(c, KMIP_TAG_REQUEST_PAYLOAD);
        vmenc_ttlv_add_text(c, KMIP_TAG_UNIQUE_IDENTIFIER, "k", 1);
        vmenc_ttlv_end_struct(c, p);
    }
    vmenc_ttlv_end_struct(c, it);
}

static void f_response_tag(vmenc_cbb *c) {
    size_t m = vmenc_ttlv_begin_struct(c, KMIP_TAG_RESPONSE_MESSAGE);
    header(c, 1);
    item(c, true, true, 0);
    vmenc_ttlv_end_struct(c, m);
}
static void f_count_mismatch(vmenc_cbb *c) {
    size_t m = vmenc_ttlv_begin_struct(c, KMIP_TAG_REQUEST_MESSAGE);
    header(c, 2);
    item(c, true, true, 1);
    vmenc_ttlv_end_struct(c, m);
}
static void f_no_op(vmenc_cbb *c) {
    size_t m = vmenc_ttlv_begin_struct(c, KMIP_TAG_REQUEST_MESSAGE);
    header(c, 1);
    item(c, false, true, 0);
    vmenc_ttlv_end_struct(c, m);
}
static void f_no_payload(vmenc_cbb *c) {
    size_t m = vmenc_ttlv_begin_struct(c, KMIP_TAG_REQUEST_MESSAGE);
    header(c, 1);
    item(c, true, false, 0);
    vmenc_ttlv_end_struct(c, m);
}
static void f_two_ids(vmenc_cbb *c) {
    size_t m = vmenc_ttlv_begin_struct(c, KMIP_TAG_REQUEST_MESSAGE);
    header(c, 1);
    item(c, true, true, 2);
    vmenc_ttlv_end_struct(c, m);
}
static void f_batch_without_ids(vmenc_cbb *c) {
    size_t m = vmenc_ttlv_begin_struct(c, KMIP_TAG_REQUEST_MESSAGE);
    header(c, 2);
    item(c, true, true, 0);
    item(c, true, true, 0);
    vmenc_ttlv_end_struct(c, m);
}
static void f_too_many_items(vmenc_cbb *c) {
    size_t m = vmenc_ttlv_begin_struct(c, KMIP_TAG_REQUEST_MESSAGE);
    header(c, (int)VMENC_KMIP_MAX_BATCH + 1);
    for (unsigned i = 0; i <= VMENC_KMIP_MAX_BATCH; i++)
        item(c, true, true, 1);
    vmenc_ttlv_end_struct(c, m);
}
static void f_extra_root_child(vmenc_cbb *c) {
    size_t m = vmenc_ttlv_begin_struct(c, KMIP_TAG_REQUEST_MESSAGE);
    header(c, 1);
    item(c, true, true, 0);
    vmenc_ttlv_add_int(c, KMIP_TAG_BATCH_COUNT, 1);
    vmenc_ttlv_end_struct(c, m);
}
static void f_two_headers(vmenc_cbb *c) {
    size_t m = vmenc_ttlv_begin_struct(c, KMIP_TAG_REQUEST_MESSAGE);
    header(c, 1);
    header(c, 1);
    item(c, true, true, 0);
    vmenc_ttlv_end_struct(c, m);
}

static void test_malformed_refused(void **state) {
    (void)state;
    bad(f_response_tag);
    bad(f_count_mismatch);
    bad(f_no_op);
    bad(f_no_payload);
    bad(f_two_ids);
    bad(f_batch_without_ids);
    bad(f_too_many_items);
    bad(f_extra_root_child);
    bad(f_two_headers);
    /* not TTLV at all: the codec's own status */
    const uint8_t junk[] = {0x42, 0x00, 0x78, 0x01, 0x00, 0x00, 0x00, 0x09};
    vmenc_kmip_server_request r;
    assert_int_equal(vmenc_kmip_server_request_parse(junk, sizeof(junk), &r), VMENC_E_PARSE);
    /* every strict prefix of a good request is refused */
    uint8_t *b;
    size_t len;
    build_get(V14, "kek-1", &b, &len);
    for (size_t n = 0; n < len; n++)
        assert_int_not_equal(vmenc_kmip_server_request_parse(b, n, &r), VMENC_OK);
    free(b);
}

/* The server's responses as the client provider reads them. */
static void test_responses_parse_on_client(void **state) {
    (void)state;
    vmenc_kmip_response_builder rb;
    const uint8_t id1 = 1, id2 = 2;
    assert_int_equal(vmenc_kmip_response_begin(&rb, V14, 1700000000, 2, true), VMENC_OK);
    vmenc_kmip_response_success_begin(&rb, KMIP_OP_GET, &id1, 1);
    vmenc_ttlv_add_enum(&rb.cbb, KMIP_TAG_OBJECT_TYPE, KMIP_OBJECT_SYMMETRIC_KEY);
    vmenc_ttlv_add_text(&rb.cbb, KMIP_TAG_UNIQUE_IDENTIFIER, "kek-1", 5);
    vmenc_kmip_response_success_end(&rb);
    vmenc_kmip_response_failure(&rb, KMIP_OP_GET_ATTRIBUTES, &id2, 1, KMIP_REASON_PERMISSION_DENIED,
                                "host esx02 does not own VM 1234");
    uint8_t *out;
    size_t out_len;
    assert_int_equal(vmenc_kmip_response_finish(&rb, &out, &out_len), VMENC_OK);
    vmenc_kmip_response resp;
    assert_int_equal(vmenc_kmip_response_parse(out, out_len, &resp), VMENC_OK);
    assert_int_equal(resp.num_items, 2);
    assert_int_equal(resp.items[0].operation, KMIP_OP_GET);
    assert_int_equal(resp.items[0].item_id, 1);
    assert_int_equal(vmenc_kmip_result_status(&resp.items[0]), VMENC_OK);
    assert_int_not_equal(resp.items[0].payload, VMENC_TTLV_NONE);
    text_is(&resp.doc, resp.items[0].payload, KMIP_TAG_UNIQUE_IDENTIFIER, "kek-1");
    assert_int_equal(resp.items[1].item_id, 2);
    assert_int_equal(vmenc_kmip_result_status(&resp.items[1]), VMENC_E_KMS_PERMISSION);
    assert_int_equal(resp.items[1].message_len, strlen("host esx02 does not own VM 1234"));
    vmenc_kmip_response_cleanup(&resp);
    vmenc_secure_free(out);

    /* a builder whose item count disagrees with its batch count fails */
    assert_int_equal(vmenc_kmip_response_begin(&rb, V14, 0, 2, false), VMENC_OK);
    vmenc_kmip_response_failure(&rb, KMIP_OP_GET, NULL, 0, KMIP_REASON_ITEM_NOT_FOUND, NULL);
    assert_int_equal(vmenc_kmip_response_finish(&rb, &out, &out_len), VMENC_E_INTERNAL);
    /* an unclosed payload fails */
    assert_int_equal(vmenc_kmip_response_begin(&rb, V14, 0, 1, false), VMENC_OK);
    vmenc_kmip_response_success_begin(&rb, KMIP_OP_GET, NULL, 0);
    assert_int_equal(vmenc_kmip_response_finish(&rb, &out, &out_len), VMENC_E_INTERNAL);
}

/* The broker's Locate: a request with Maximum Items and a Name (another
 * shape a KMIP 1.x client sends) parses; the answer with several Unique
 * Identifiers parses on the client, and an empty answer is a success with
 * none (the provider maps that to VMENC_E_KEY_NOT_FOUND). */
static void test_locate_shapes(void **state) {
    (void)state;
    vmenc_kmip_request req;
    assert_int_equal(vmenc_kmip_request_begin(&req, V14, 1), VMENC_OK);
    vmenc_kmip_request_item_begin(&req, KMIP_OP_LOCATE);
    vmenc_ttlv_add_int(&req.cbb, KMIP_TAG_MAXIMUM_ITEMS, 4);
    vmenc_kmip_add_attr_name(&req, "host-kek", 8);
    vmenc_kmip_request_item_end(&req);
    uint8_t *b;
    size_t len;
    assert_int_equal(vmenc_kmip_request_finish(&req, &b, &len), VMENC_OK);
    maybe_write("locate-max-items-14", b, len);
    vmenc_kmip_server_request r;
    assert_int_equal(vmenc_kmip_server_request_parse(b, len, &r), VMENC_OK);
    assert_int_equal(r.items[0].operation, KMIP_OP_LOCATE);
    assert_int_equal(vmenc_ttlv_count(&r.doc, r.items[0].payload, KMIP_TAG_ATTRIBUTE), 1);
    vmenc_kmip_server_request_cleanup(&r);
    free(b);

    vmenc_kmip_response_builder rb;
    assert_int_equal(vmenc_kmip_response_begin(&rb, V14, 1700000000, 1, false), VMENC_OK);
    vmenc_kmip_response_success_begin(&rb, KMIP_OP_LOCATE, NULL, 0);
    vmenc_ttlv_add_text(&rb.cbb, KMIP_TAG_UNIQUE_IDENTIFIER, "kek-1", 5);
    vmenc_ttlv_add_text(&rb.cbb, KMIP_TAG_UNIQUE_IDENTIFIER, "kek-2", 5);
    vmenc_kmip_response_success_end(&rb);
    uint8_t *out;
    size_t out_len;
    assert_int_equal(vmenc_kmip_response_finish(&rb, &out, &out_len), VMENC_OK);
    vmenc_kmip_response resp;
    assert_int_equal(vmenc_kmip_response_parse(out, out_len, &resp), VMENC_OK);
    assert_int_equal(vmenc_kmip_result_status(&resp.items[0]), VMENC_OK);
    assert_int_equal(vmenc_ttlv_count(&resp.doc, resp.items[0].payload, KMIP_TAG_UNIQUE_IDENTIFIER), 2);
    vmenc_kmip_response_cleanup(&resp);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_requests_parse),
        cmocka_unit_test(test_malformed_refused),
        cmocka_unit_test(test_responses_parse_on_client),
        cmocka_unit_test(test_locate_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
