import CRdKafka
import Logging

let deliveryTrampoline: @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = { rk, msg, _ in
    guard let msg, let opaque = msg.pointee._private else { return }
    // The message's own reference, taken back: librdkafka is done with it (and with bytes it read in place)
    // once it reports, so they are released when this returns.
    let flight = Unmanaged<InFlight>.fromOpaque(opaque).takeRetainedValue()
    guard let b = box(rk) else { return }
    let err = msg.pointee.err
    b.onDelivery?(flight.token, err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(err, context: "delivery"))
}

/// A message from `produce` to its delivery report, as its opaque (one reference, taken back by the report):
/// its token, and the bytes librdkafka reads in place instead of copying (empty when it copied them).
final class InFlight: Sendable {
    let token: UInt64
    let payload: [UInt8]

    init(token: UInt64, payload: [UInt8] = []) {
        self.token = token
        self.payload = payload
    }
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
        try enqueue(topic: topic, partition: partition, key: key, value: value, copy: true, headers: headers, flight: InFlight(token: token))
    }

    /// Enqueues one message without copying its bytes: librdkafka reads them from `value`'s own storage,
    /// which the message keeps alive (and, being shared, unchanged) until its delivery report. A checkpoint
    /// hands over 100,000 child records at once: copied, each was allocated and written a second time.
    public func produce(topic: String, partition: Int32? = nil, key: [UInt8]?, value: [UInt8],
                        headers: [(String, [UInt8])] = [], token: UInt64) throws(KafkaError) {
        guard !value.isEmpty else {
            return try produce(topic: topic, partition: partition, key: key, value: UnsafeRawBufferPointer(start: nil, count: 0),
                               headers: headers, token: token)
        }
        let flight = InFlight(token: token, payload: value)
        // The address of the array's elements, used after this closure: a native array's elements live in
        // its storage object, which `flight.payload` holds and nothing can change in place while it does.
        let bytes = flight.payload.withUnsafeBytes { $0 }
        try enqueue(topic: topic, partition: partition, key: key, value: bytes, copy: false, headers: headers, flight: flight)
    }

    private func enqueue(topic: String, partition: Int32?, key: [UInt8]?, value: UnsafeRawBufferPointer, copy: Bool,
                         headers: [(String, [UInt8])], flight: InFlight) throws(KafkaError) {
        precondition(flight.token != 0, "delivery tokens must be non-zero")
        var attempts = 0
        while true {
            var hdrs: OpaquePointer?
            if !headers.isEmpty {
                hdrs = rd_kafka_headers_new(headers.count)
                for (name, bytes) in headers {
                    bytes.withUnsafeBytes { p in _ = rd_kafka_header_add(hdrs, name, -1, p.baseAddress, p.count) }
                }
            }
            // One reference for the message, given back by its delivery report (or below, if it is not enqueued).
            let opaque = Unmanaged.passRetained(flight).toOpaque()
            let err: rd_kafka_resp_err_t
            if let key {
                err = key.withUnsafeBytes { k in
                    vigil_produce(rk, topic, partition ?? Int32(RD_KAFKA_PARTITION_UA), k.baseAddress, k.count,
                                  value.baseAddress, value.count, hdrs, opaque, copy ? 1 : 0)
                }
            } else {
                err = vigil_produce(rk, topic, partition ?? Int32(RD_KAFKA_PARTITION_UA), nil, 0, value.baseAddress, value.count, hdrs, opaque,
                                    copy ? 1 : 0)
            }
            if err == RD_KAFKA_RESP_ERR_NO_ERROR { return }
            Unmanaged<InFlight>.fromOpaque(opaque).release()
            if let hdrs { rd_kafka_headers_destroy(hdrs) }
            guard err == RD_KAFKA_RESP_ERR__QUEUE_FULL else { throw KafkaError(err, context: "produce to \(topic)") }
            attempts += 1
            if attempts % 100 == 0 { callbacks.logger.warning("producer queue full for \(attempts / 10) s; waiting for the broker") }
            rd_kafka_poll(rk, 100)
        }
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
