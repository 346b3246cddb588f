/*
 * fuzz/kmip_request_fuzz.c - libFuzzer harness for the server side of
 * KMIP (lib/kms/kmip/kmip_server_msg.h): the Request Message parser the
 * key broker runs on bytes from the network. Corpus: fuzz/corpus/kmip_request
 * (requests the project's own client encoder makes: Get+GetAttributes,
 * Locate, Create, Activate, Query, DiscoverVersions, in 1.4 and 2.0).
 *
 * Oracle: an accepted request holds 1..VMENC_KMIP_MAX_BATCH items whose
 * payload nodes are Request Payload structures inside the document, and
 * re-encodes to exactly the input; a refused one gives a parse or protocol
 * status, never a crash. A response built for an accepted request (one
 * failure item per request item) parses with the client's response parser.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "kms/kmip/kmip_server_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vmenc_kmip_server_request req;
    vmenc_status s = vmenc_kmip_server_request_parse(data, size, &req);
    if (s != VMENC_OK) {
        if (s != VMENC_E_KMS_PROTOCOL && s != VMENC_E_NOMEM && vmenc_status_category_of(s) != VMENC_CAT_PARSE)
            abort();
        return 0;
    }
    if (req.num_items == 0 || req.num_items > VMENC_KMIP_MAX_BATCH)
        abort();
    for (uint32_t i = 0; i < req.num_items; i++) {
        const vmenc_kmip_request_item *it = &req.items[i];
        if (it->payload >= req.doc.num || req.doc.nodes[it->payload].tag != KMIP_TAG_REQUEST_PAYLOAD ||
            req.doc.nodes[it->payload].type != VMENC_TTLV_STRUCTURE)
            abort();
        if (it->batch_id != NULL && (it->batch_id < data || it->batch_id + it->batch_id_len > data + size))
            abort();
    }
    vmenc_cbb cbb;
    if (vmenc_cbb_init(&cbb, size) != VMENC_OK)
        abort();
    vmenc_ttlv_encode_node(&cbb, &req.doc, 0);
    uint8_t *out = NULL;
    size_t out_len = 0;
    if (vmenc_cbb_finish(&cbb, &out, &out_len) != VMENC_OK || out_len != size || memcmp(out, data, size) != 0)
        abort();
    free(out);

    vmenc_kmip_response_builder b;
    if (vmenc_kmip_response_begin(&b, req.version, 0, req.num_items, false) != VMENC_OK)
        abort();
    for (uint32_t i = 0; i < req.num_items; i++)
        vmenc_kmip_response_failure(&b, req.items[i].operation, req.items[i].batch_id, req.items[i].batch_id_len,
                                    KMIP_REASON_PERMISSION_DENIED, "refused");
    if (vmenc_kmip_response_finish(&b, &out, &out_len) != VMENC_OK)
        abort();
    vmenc_kmip_response resp;
    if (vmenc_kmip_response_parse(out, out_len, &resp) != VMENC_OK || resp.num_items != req.num_items)
        abort();
    for (uint32_t i = 0; i < resp.num_items; i++)
        if (vmenc_kmip_result_status(&resp.items[i]) != VMENC_E_KMS_PERMISSION)
            abort();
    vmenc_kmip_response_cleanup(&resp);
    free(out);
    vmenc_kmip_server_request_cleanup(&req);
    return 0;
}
