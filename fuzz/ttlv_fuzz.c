/*
 * fuzz/ttlv_fuzz.c - libFuzzer harness for the KMIP TTLV codec and the
 * KMIP response parser.
 *
 * Oracle: whatever decodes must re-encode to exactly the input bytes
 * (decode -> encode -> byte-identical), and the re-encoding must decode to
 * the same tree. The response parser runs on every input and must either
 * accept or return a provider/parse status, never crash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "kms/kmip/kmip_msg.h"
#include "kms/kmip/ttlv.h"

static void check_same_tree(const vmenc_ttlv_doc *a, const vmenc_ttlv_doc *b) {
    if (a->num != b->num)
        abort();
    for (uint32_t i = 0; i < a->num; i++) {
        const vmenc_ttlv_node *x = &a->nodes[i], *y = &b->nodes[i];
        if (x->tag != y->tag || x->type != y->type || x->len != y->len || x->first_child != y->first_child ||
            x->next != y->next)
            abort();
        if (x->bytes != NULL && memcmp(x->bytes, y->bytes, x->len) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vmenc_ttlv_doc doc;
    vmenc_status s = vmenc_ttlv_decode(data, size, &doc);
    if (s == VMENC_OK) {
        vmenc_cbb cbb;
        if (vmenc_cbb_init(&cbb, size ? size : 8) != VMENC_OK)
            abort();
        vmenc_ttlv_encode_node(&cbb, &doc, 0);
        uint8_t *out = NULL;
        size_t out_len = 0;
        if (vmenc_cbb_finish(&cbb, &out, &out_len) != VMENC_OK)
            abort();
        if (out_len != size || memcmp(out, data, size) != 0)
            abort();
        vmenc_ttlv_doc again;
        if (vmenc_ttlv_decode(out, out_len, &again) != VMENC_OK)
            abort();
        check_same_tree(&doc, &again);
        vmenc_ttlv_doc_cleanup(&again);
        free(out);
        /* Every strict prefix of a valid message is refused. */
        if (size > 0 && vmenc_ttlv_decode(data, size - 1, &again) == VMENC_OK)
            abort();
        vmenc_ttlv_doc_cleanup(&doc);
    } else if (vmenc_status_category_of(s) != VMENC_CAT_PARSE && s != VMENC_E_NOMEM) {
        abort();
    }

    vmenc_kmip_response resp;
    s = vmenc_kmip_response_parse(data, size, &resp);
    if (s == VMENC_OK) {
        if (resp.num_items == 0 || resp.num_items > VMENC_KMIP_MAX_BATCH)
            abort();
        for (uint32_t i = 0; i < resp.num_items; i++)
            (void)vmenc_kmip_result_status(&resp.items[i]);
        vmenc_kmip_response_cleanup(&resp);
    } else if (s != VMENC_E_KMS_PROTOCOL && s != VMENC_E_NOMEM) {
        abort();
    }
    return 0;
}
