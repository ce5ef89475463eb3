import CRdKafka
import Logging

let deliveryTrampoline: @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = { rk, msg, _ in
    guard let msg, let b = box(rk) else { return }
    let token = UInt64(UInt(bitPattern: msg.pointee._private))
    let err = msg.pointee.err
    b.onDelivery?(token, err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(err, context: "delivery"))
}

/// A Kafka producer with delivery reports.
///
/// Each message carries a non-zero `token`; `onDelivery(token, error)` is called once per message from
/// inside `poll` or `flush`, on the calling thread. `produce` may be called from any thread.
public final class KafkaProducer: @unchecked Sendable {
    let rk: OpaquePointer
    let callbacks: CallbackBox

    public init(config: KafkaConfig, logger: Logger, onDelivery: @escaping @Sendable (UInt64, KafkaError?) -> Void) throws(KafkaError) {
        let b = CallbackBox(logger: logger)
        b.onDelivery = onDelivery
        callbacks = b
        rk = try makeHandle(config, kind: RD_KAFKA_PRODUCER, box: b) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf, deliveryTrampoline)
        }
    }

    deinit {
        rd_kafka_flush(rk, 5000)
        rd_kafka_destroy(rk)
    }

    /// Enqueues one message (the bytes are copied). When the local queue is full it serves delivery
    /// reports and retries, so it blocks rather than drop; other errors are thrown.
    public func produce(topic: String, partition: Int32? = nil, key: [UInt8]?, value: UnsafeRawBufferPointer,
                        headers: [(String, [UInt8])] = [], token: UInt64) throws(KafkaError) {
        precondition(token != 0, "delivery tokens must be non-zero")
        var attempts = 0
        while true {
            var hdrs: OpaquePointer?
            if !headers.isEmpty {
                hdrs = rd_kafka_headers_new(headers.count)
                for (name, bytes) in headers {
                    bytes.withUnsafeBytes { p in _ = rd_kafka_header_add(hdrs, name, -1, p.baseAddress, p.count) }
                }
            }
            let opaque = UnsafeMutableRawPointer(bitPattern: UInt(token))
            let err: rd_kafka_resp_err_t
            if let key {
                err = key.withUnsafeBytes { k in
                    vigil_produce(rk, topic, partition ?? Int32(RD_KAFKA_PARTITION_UA), k.baseAddress, k.count,
                                  value.baseAddress, value.count, hdrs, opaque)
                }
            } else {
                err = vigil_produce(rk, topic, partition ?? Int32(RD_KAFKA_PARTITION_UA), nil, 0, value.baseAddress, value.count, hdrs, opaque)
            }
            if err == RD_KAFKA_RESP_ERR_NO_ERROR { return }
            if let hdrs { rd_kafka_headers_destroy(hdrs) }
            guard err == RD_KAFKA_RESP_ERR__QUEUE_FULL else { throw KafkaError(err, context: "produce to \(topic)") }
            attempts += 1
            if attempts % 100 == 0 { callbacks.logger.warning("producer queue full for \(attempts / 10) s; waiting for the broker") }
            rd_kafka_poll(rk, 100)
        }
    }

    public func produce(topic: String, partition: Int32? = nil, key: [UInt8]?, value: [UInt8],
                        headers: [(String, [UInt8])] = [], token: UInt64) throws(KafkaError) {
        var failure: KafkaError?
        value.withUnsafeBytes { v in
            do throws(KafkaError) {
                try produce(topic: topic, partition: partition, key: key, value: v, headers: headers, token: token)
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
    }

    /// Serves delivery reports; returns how many events were served.
    @discardableResult
    public func poll(timeoutMs: Int32 = 0) -> Int { Int(rd_kafka_poll(rk, timeoutMs)) }

    /// Waits until every message is delivered (or failed). False on timeout.
    public func flush(timeoutMs: Int32) -> Bool { rd_kafka_flush(rk, timeoutMs) == RD_KAFKA_RESP_ERR_NO_ERROR }

    /// Messages and requests not yet delivered.
    public var outstanding: Int { Int(rd_kafka_outq_len(rk)) }

    /// The partitions of `topic`, from the cluster's metadata.
    public func partitions(of topic: String, timeoutMs: Int32 = 10_000) throws(KafkaError) -> [Int32] {
        try metadataPartitions(rk, topic: topic, timeoutMs: timeoutMs)
    }
}
