import Foundation
import Logging
import Synchronization
import VigilContract
import VigilKafka

/// Anchors on a Kafka topic (`vigil-audit-heads`), keyed by instance: a seal's head leaves the host as soon
/// as it is made, through a producer of its own (the pipeline's producer carries the ledger's records).
/// Delivery is asynchronous: a failure is reported with the next head (and at close); the head after it
/// covers everything before anyway.
public final class AuditAnchorTopic: AuditAnchorSink {
    public let topic: String
    private let producer: KafkaProducer
    private let failures = Failures()
    private let logger: Logger
    private var token: UInt64 = 0

    public init(topic: String, config: KafkaConfig, logger: Logger) throws(KafkaError) {
        self.topic = topic
        self.logger = logger
        let failures = failures
        producer = try KafkaProducer(config: config, logger: logger) { token, error in
            if let error { failures.add("head \(token): \(error.message)") }
        }
    }

    public var name: String { "topic \(topic)" }

    public func publish(_ anchor: [UInt8], instance: String) -> String? {
        token += 1
        producer.poll(timeoutMs: 0)
        let earlier = failures.take()
        do {
            try producer.produce(topic: topic, key: Array(instance.utf8), value: anchor, token: token)
        } catch {
            return error.message + (earlier.isEmpty ? "" : "; and earlier: \(earlier.joined(separator: "; "))")
        }
        return earlier.isEmpty ? nil : "an earlier head was not delivered: \(earlier.joined(separator: "; "))"
    }

    public func close() {
        if !producer.flush(timeoutMs: 10_000) { logger.warning("audit anchors: \(producer.outstanding) heads not delivered to \(topic) at shutdown") }
        for f in failures.take() { logger.warning("audit anchors: \(topic): \(f)") }
    }

    /// Delivery failures, reported on librdkafka's thread, read on the sink's.
    private final class Failures: Sendable {
        private let list = Mutex<[String]>([])
        func add(_ f: String) { list.withLock { $0.append(f) } }
        func take() -> [String] { list.withLock { l in defer { l.removeAll() }; return l } }
    }

    /// Every anchor on a topic (every partition, up to its end as it is now), and the messages that are not anchors.
    public static func read(topic: String, config base: KafkaConfig, logger: Logger, timeoutMs: Int = 60_000) throws -> (anchors: [AuditAnchor], unreadable: [String]) {
        var c = base
        c.set("group.id", "vigil-audit-verify-\(getpid())")
        c.set("enable.auto.commit", "false")
        c.set("fetch.wait.max.ms", "50")
        let consumer = try KafkaConsumer(config: c, logger: logger)
        defer { consumer.close() }
        var ends: [Int32: Int64] = [:]
        var assign: [(TopicPartition, KafkaOffset)] = []
        for p in try consumer.partitions(of: topic) {
            let w = try consumer.watermarks(TopicPartition(topic, p))
            if w.high > w.low { ends[p] = w.high }
            assign.append((TopicPartition(topic, p), .beginning))
        }
        try consumer.assign(assign)
        var anchors: [AuditAnchor] = []
        var unreadable: [String] = []
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        while !ends.isEmpty {
            guard Date() < deadline else {
                throw AuditLogError(path: topic, refusing: "could not read the anchors to the end of every partition in \(timeoutMs / 1000) s")
            }
            let batch = consumer.poll(max: 1000, timeoutMs: 100)
            for m in batch.messages {
                guard m.errorCode == 0 else { continue }
                let source = "\(topic)[\(m.partition)]@\(m.offset)"
                if let v = try? JSONValue.parse(Array(m.value)), let a = AuditAnchor(json: v, source: source) {
                    anchors.append(a)
                } else {
                    unreadable.append("\(source): not an anchor")
                }
                if let end = ends[m.partition], m.offset >= end - 1 { ends[m.partition] = nil }
            }
        }
        return (anchors, unreadable)
    }
}
