// librdkafka for Swift: the public headers plus static inline wrappers for the variadic calls Swift
// cannot make. Only VigilKafka imports this module.
#ifndef VIGIL_CRDKAFKA_SHIM_H
#define VIGIL_CRDKAFKA_SHIM_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/// Produces one message, with optional key and headers (ownership of `headers` passes to librdkafka on
/// success; the caller destroys it on failure). `opaque` comes back in the delivery report. With `copy` the
/// value is copied; without it librdkafka reads it in place, so it must stay valid and unchanged until the
/// message's delivery report (the key is copied either way).
static inline rd_kafka_resp_err_t vigil_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
                                                const void *key, size_t key_len,
                                                const void *value, size_t value_len,
                                                rd_kafka_headers_t *headers, void *opaque, int copy) {
    int flags = copy ? RD_KAFKA_MSG_F_COPY : 0;
    if (headers) {
        return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                 RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
                                 RD_KAFKA_V_MSGFLAGS(flags), RD_KAFKA_V_HEADERS(headers),
                                 RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    }
    return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                             RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
                             RD_KAFKA_V_MSGFLAGS(flags), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
}

/// Pushes `count` identical errors for requests of `api_key` (the variadic form is unavailable to Swift).
static inline void vigil_mock_push_errors(rd_kafka_mock_cluster_t *mc, int16_t api_key, size_t count,
                                          rd_kafka_resp_err_t err) {
    rd_kafka_resp_err_t errs[64];
    size_t n = count > 64 ? 64 : count;
    for (size_t i = 0; i < n; i++) errs[i] = err;
    rd_kafka_mock_push_request_errors_array(mc, api_key, n, errs);
}

#endif
