import CRdKafka
import Dispatch
import Logging

/// The librdkafka messages of one poll, destroyed when the last batch or message referring to them goes.
final class MessageOwner: @unchecked Sendable {
    let raws: [UnsafeMutablePointer<rd_kafka_message_t>]
    init(_ raws: [UnsafeMutablePointer<rd_kafka_message_t>]) { self.raws = raws }
    deinit { for m in raws { rd_kafka_message_destroy(m) } }
}

/// One consumed message. Its bytes stay owned by librdkafka while this message (or its batch) lives, so the
/// payload is read in place, never copied. Each message keeps its batch's messages alive: a message taken
/// out of `poll(...).messages` stays valid however soon the batch object itself is released.
public struct KafkaMessage: @unchecked Sendable {
    let raw: UnsafeMutablePointer<rd_kafka_message_t>
    let owner: MessageOwner

    /// 0, or the error this "message" reports (`KafkaError.partitionEOF` at the end of a partition).
    public var errorCode: Int32 { raw.pointee.err.rawValue }
    public var errorMessage: String { String(cString: rd_kafka_message_errstr(raw)) }
    public var partition: Int32 { raw.pointee.partition }
    public var offset: Int64 { raw.pointee.offset }
    public var topic: String { raw.pointee.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? "" }

    public var value: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: raw.pointee.payload, count: raw.pointee.payload == nil ? 0 : raw.pointee.len)
    }

    public var key: UnsafeRawBufferPointer? {
        guard let k = raw.pointee.key else { return nil }
        return UnsafeRawBufferPointer(start: k, count: raw.pointee.key_len)
    }

    /// Milliseconds since the epoch, if the broker gave a timestamp.
    public var timestampMs: Int64? {
        var type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let t = rd_kafka_message_timestamp(raw, &type)
        return type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : t
    }

    /// The message's headers, in order.
    public func headers() -> [(String, [UInt8])] {
        var hdrs: OpaquePointer?
        guard rd_kafka_message_headers(raw, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs else { return [] }
        var out: [(String, [UInt8])] = []
        var i = 0
        var name: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var size = 0
        while rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
            let bytes = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
            out.append((name.map { String(cString: $0) } ?? "", bytes))
            i += 1
        }
        return out
    }
}

/// A batch of consumed messages, destroyed when the last reference to it or to one of its messages goes: hand
/// it to any thread.
public final class KafkaMessageBatch: @unchecked Sendable {
    public let messages: [KafkaMessage]
    init(_ raws: [UnsafeMutablePointer<rd_kafka_message_t>]) {
        let owner = MessageOwner(raws)
        messages = raws.map { KafkaMessage(raw: $0, owner: owner) }
    }
    /// A batch with no messages.
    public static let empty = KafkaMessageBatch([])
}

let rebalanceTrampoline: @convention(c) (OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?) -> Void = { rk, err, parts, _ in
    guard let rk else { return }
    let b = box(rk)
    let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
    let items = PartitionList.read(parts).map(\.0)
    switch err {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        b?.rebalanced = true
        if let overrides = b?.onAssign?(items), let parts, let elems = parts.pointee.elems {
            for i in 0..<Int(parts.pointee.cnt) {
                let tp = TopicPartition(elems[i].topic.map { String(cString: $0) } ?? "", elems[i].partition)
                if let o = overrides[tp] { elems[i].offset = o }
            }
        }
        b?.logger.info("partitions assigned: \(items.map(\.description).joined(separator: ", "))")
        if cooperative {
            if let e = rd_kafka_incremental_assign(rk, parts) { rd_kafka_error_destroy(e) }
        } else {
            rd_kafka_assign(rk, parts)
        }
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        let lost = rd_kafka_assignment_lost(rk) != 0
        b?.onRevoke?(items, lost)
        b?.logger.info("partitions \(lost ? "lost" : "revoked"): \(items.map(\.description).joined(separator: ", "))")
        if cooperative {
            if let e = rd_kafka_incremental_unassign(rk, parts) { rd_kafka_error_destroy(e) }
        } else {
            rd_kafka_assign(rk, nil)
        }
    default:
        b?.logger.error("rebalance failed: \(String(cString: rd_kafka_err2str(err)))")
        rd_kafka_assign(rk, nil)
    }
}

/// A Kafka consumer in a consumer group (or with a manual assignment).
///
/// Threading: `poll`, `subscribe`, `assign` and `close` belong to one thread, the polling thread; the
/// rebalance handlers run on it, inside `poll`. `storeOffsets` and `commit` may be called from any thread.
public final class KafkaConsumer: @unchecked Sendable {
    let rk: OpaquePointer
    let queue: OpaquePointer
    let callbacks: CallbackBox
    var closed = false
    var subscribed = false
    var buffer: UnsafeMutablePointer<UnsafeMutablePointer<rd_kafka_message_t>?>
    let bufferSize = 4096

    /// - Parameters:
    ///   - onAssign: called with newly assigned partitions; may return start offsets that override the
    ///     committed ones.
    ///   - onRevoke: called before partitions are taken away; finish their work and commit before returning.
    ///     The flag says the assignment was lost (the session expired): another member may own them already.
    public init(config: KafkaConfig, logger: Logger,
                onAssign: (([TopicPartition]) -> [TopicPartition: Int64])? = nil,
                onRevoke: (([TopicPartition], Bool) -> Void)? = nil,
                onError: (@Sendable (KafkaError, Bool) -> Void)? = nil) throws(KafkaError) {
        let b = CallbackBox(logger: logger)
        b.onAssign = onAssign
        b.onRevoke = onRevoke
        b.onError = onError
        callbacks = b
        let handle = try makeHandle(config, kind: RD_KAFKA_CONSUMER, box: b) { conf in
            rd_kafka_conf_set_rebalance_cb(conf, rebalanceTrampoline)
        }
        rk = handle
        rd_kafka_poll_set_consumer(handle)
        guard let q = rd_kafka_queue_get_consumer(handle) else {
            rd_kafka_destroy(handle)
            throw KafkaError(code: -1, message: "the consumer has no queue (is group.id set?)")
        }
        queue = q
        buffer = .allocate(capacity: bufferSize)
    }

    deinit {
        close()
        rd_kafka_queue_destroy(queue)
        buffer.deallocate()
        // librdkafka before 2.3.0 aborts (assertion `assignor_state`, librdkafka issue #4312) when a
        // cooperative-sticky group consumer is destroyed before its first rebalance, e.g. when a process is
        // stopped while the broker is unreachable. Such a handle is left to the process exit instead.
        if subscribed && !callbacks.rebalanced && rd_kafka_version() < 0x0203_00FF {
            callbacks.logger.debug("consumer stopped before joining its group: handle left to the process exit (librdkafka #4312)")
            // Its threads may still log through the callbacks: keep them alive with it.
            _ = Unmanaged.passRetained(callbacks)
            return
        }
        rd_kafka_destroy(rk)
    }

    public func subscribe(_ topics: [String]) throws(KafkaError) {
        guard let list = PartitionList.make(topics.map { (TopicPartition($0, Int32(RD_KAFKA_PARTITION_UA)), nil) }) else {
            throw KafkaError(code: -1, message: "cannot allocate a partition list")
        }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_subscribe(rk, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "subscribe") }
        subscribed = true
    }

    /// Consumes the given partitions from the given positions, outside any group rebalancing.
    public func assign(_ partitions: [(TopicPartition, KafkaOffset)]) throws(KafkaError) {
        guard let list = PartitionList.make(partitions.map { ($0.0, $0.1.native) }) else {
            throw KafkaError(code: -1, message: "cannot allocate a partition list")
        }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_assign(rk, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "assign") }
    }

    /// The partitions of `topic`, from the cluster's metadata.
    public func partitions(of topic: String, timeoutMs: Int32 = 10_000) throws(KafkaError) -> [Int32] {
        try metadataPartitions(rk, topic: topic, timeoutMs: timeoutMs)
    }

    /// Returns at most `max` messages: what is already queued, at once; otherwise it waits up to
    /// `timeoutMs` for the first message and takes whatever has queued behind it. (A batch call with a
    /// timeout would hold every message until the batch is full or the timeout passes.) Partition-end
    /// notices and consumer errors come back as messages with `errorCode` set.
    ///
    /// With `lingerMs`, once the first message is in hand it keeps collecting for up to that long (or until
    /// `max`), so that batches grow under load while an idle stream still costs at most `lingerMs` of latency.
    public func poll(max: Int = 1000, timeoutMs: Int32 = 100, lingerMs: Int32 = 0) -> KafkaMessageBatch {
        let limit = Swift.max(1, Swift.min(max, bufferSize))
        var n = Swift.max(rd_kafka_consume_batch_queue(queue, 0, buffer, limit), 0)
        if n == 0, let first = rd_kafka_consume_queue(queue, Int32(timeoutMs)) {
            buffer[0] = first
            n = 1
        }
        if n > 0, lingerMs > 0 {
            let until = DispatchTime.now().uptimeNanoseconds + UInt64(lingerMs) * 1_000_000
            while n < limit {
                let more = rd_kafka_consume_batch_queue(queue, 0, buffer + n, limit - n)
                if more > 0 { n += more; continue }
                let now = DispatchTime.now().uptimeNanoseconds
                guard now < until else { break }
                guard let m = rd_kafka_consume_queue(queue, Int32(Swift.max(1, (until - now) / 1_000_000))) else { break }
                buffer[n] = m
                n += 1
            }
        } else if n > 0, n < limit {
            n += Swift.max(rd_kafka_consume_batch_queue(queue, 0, buffer + n, limit - n), 0)
        }
        guard n > 0 else { return KafkaMessageBatch([]) }
        var out: [UnsafeMutablePointer<rd_kafka_message_t>] = []
        out.reserveCapacity(n)
        for i in 0..<n { if let m = buffer[i] { out.append(m) } }
        return KafkaMessageBatch(out)
    }

    /// Records the next offsets to commit (offset of the last processed message + 1).
    public func storeOffsets(_ offsets: [TopicPartition: Int64]) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        guard let list = PartitionList.make(offsets.map { ($0.key, $0.value) }) else { return }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_offsets_store(rk, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__STATE {
            throw KafkaError(err, context: "offsets store")
        }
    }

    /// Commits the stored offsets now, waiting for the broker.
    public func commit() throws(KafkaError) {
        let err = rd_kafka_commit(rk, nil, 0)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET {
            throw KafkaError(err, context: "commit")
        }
    }

    /// Committed offsets of the given partitions (-1001 where none).
    public func committed(_ partitions: [TopicPartition], timeoutMs: Int32 = 10_000) throws(KafkaError) -> [TopicPartition: Int64] {
        guard let list = PartitionList.make(partitions.map { ($0, nil) }) else { return [:] }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_committed(rk, list, timeoutMs)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "committed") }
        var out: [TopicPartition: Int64] = [:]
        for (tp, o, _) in PartitionList.read(list) { out[tp] = o }
        return out
    }

    /// The first and next offsets the broker holds for a partition (the low one rises when retention drops
    /// data).
    public func watermarks(_ tp: TopicPartition, timeoutMs: Int32 = 10_000) throws(KafkaError) -> (low: Int64, high: Int64) {
        var low: Int64 = 0, high: Int64 = 0
        let err = rd_kafka_query_watermark_offsets(rk, tp.topic, tp.partition, &low, &high, timeoutMs)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "watermarks of \(tp)") }
        return (low, high)
    }

    /// The high watermark (the next offset the broker will write) as the last fetch response for the
    /// partition reported it: no request, so cheap enough for every batch. Nil before the first fetch.
    public func cachedHighWatermark(_ tp: TopicPartition) -> Int64? {
        var low: Int64 = -1, high: Int64 = -1
        let err = rd_kafka_get_watermark_offsets(rk, tp.topic, tp.partition, &low, &high)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0 else { return nil }
        return high
    }

    /// Stops fetching `partitions` (call on the polling thread). librdkafka drops what it prefetched for them
    /// and, on `resume`, fetches again from the offset after the last message `poll` returned.
    public func pause(_ partitions: [TopicPartition]) throws(KafkaError) {
        try pauseResume(partitions, pause: true)
    }

    /// Fetches `partitions` again (call on the polling thread).
    public func resume(_ partitions: [TopicPartition]) throws(KafkaError) {
        try pauseResume(partitions, pause: false)
    }

    func pauseResume(_ partitions: [TopicPartition], pause: Bool) throws(KafkaError) {
        guard !partitions.isEmpty, let list = PartitionList.make(partitions.map { ($0, nil) }) else { return }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = pause ? rd_kafka_pause_partitions(rk, list) : rd_kafka_resume_partitions(rk, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: pause ? "pause" : "resume") }
    }

    /// Current assignment.
    public func assignment() -> [TopicPartition] {
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(rk, &list) == RD_KAFKA_RESP_ERR_NO_ERROR else { return [] }
        defer { if let list { rd_kafka_topic_partition_list_destroy(list) } }
        return PartitionList.read(list).map(\.0)
    }

    /// Leaves the group (running the revoke handler) and stops consuming. Idempotent.
    public func close() {
        guard !closed else { return }
        closed = true
        rd_kafka_consumer_close(rk)
    }
}

func metadataPartitions(_ rk: OpaquePointer, topic: String, timeoutMs: Int32) throws(KafkaError) -> [Int32] {
    guard let rkt = rd_kafka_topic_new(rk, topic, nil) else { throw KafkaError(code: -1, message: "cannot open topic \(topic)") }
    defer { rd_kafka_topic_destroy(rkt) }
    var md: UnsafePointer<rd_kafka_metadata>?
    let err = rd_kafka_metadata(rk, 0, rkt, &md, timeoutMs)
    guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let md else { throw KafkaError(err, context: "metadata for \(topic)") }
    defer { rd_kafka_metadata_destroy(md) }
    guard md.pointee.topic_cnt > 0, let t = md.pointee.topics?[0] ?? nil as rd_kafka_metadata_topic? else {
        throw KafkaError(code: -1, message: "no metadata for topic \(topic)")
    }
    if t.err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(t.err, context: "topic \(topic)") }
    var out: [Int32] = []
    for i in 0..<Int(t.partition_cnt) { if let p = t.partitions?[i] { out.append(p.id) } }
    return out.sorted()
}

extension KafkaConsumer {
    /// Reads `topic` from the beginning to its end as of the call (each partition's high watermark then), giving
    /// each message to `body` until it returns false. No quiet period to guess: a slow first fetch cannot cut it
    /// short. Throws when the end is not reached within `timeoutMs`.
    public func readToEnd(_ topic: String, timeoutMs: Int = 60_000, _ body: (KafkaMessage) -> Bool) throws(KafkaError) {
        var remaining: [Int32: Int64] = [:]
        for p in try partitions(of: topic) {
            let w = try watermarks(TopicPartition(topic, p))
            if w.high > w.low { remaining[p] = w.high }
        }
        try assign(remaining.keys.map { (TopicPartition(topic, $0), KafkaOffset.beginning) })
        let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
        while !remaining.isEmpty {
            guard ContinuousClock.now < deadline else {
                throw KafkaError(code: -185, message: "\(topic): not at its end after \(timeoutMs / 1000) s")
            }
            let batch = poll(max: 1000, timeoutMs: 100)
            for m in batch.messages where m.errorCode == 0 {
                guard let end = remaining[m.partition], m.offset < end else { continue }
                if !body(m) { return }
                if m.offset + 1 >= end { remaining[m.partition] = nil }
            }
        }
    }
}
