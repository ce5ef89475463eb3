import Foundation
import Logging
import Synchronization
import VigilContract
import VigilKafka
import VigilTesting
import VigilService

/// Producing test streams and reading topics back, for tests and the chaos harness.
public enum TopicIO {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// How a produced event is keyed.
    public enum Keying: Sendable {
        /// By child id, as the contract asks producers to.
        case childId
        /// By a pseudo-random key (a producer that ignores the contract): a child's events spread over partitions.
        case random(seed: UInt64)
        /// By a function of the line.
        case custom(@Sendable (String) -> [UInt8]?)
    }

    /// Produces `lines` to `topic` and waits for every delivery; throws if any failed.
    public static func produce(_ lines: [String], to topic: String, brokers: String, keying: Keying = .childId,
                               properties: [(String, String)] = [], logger: Logger) throws {
        var config = KafkaConfig(bootstrapServers: brokers)
        for (k, v) in properties { config.set(k, v) }
        let failures = Mutex<Int>(0)
        let producer = try KafkaProducer(config: config, logger: logger) { _, error in
            if error != nil { failures.withLock { $0 += 1 } }
        }
        let decoder = EventDecoder()
        var record = decoder.makeRecord()
        var rng = SplitMix64(state: 0)
        if case .random(let seed) = keying { rng = SplitMix64(state: seed) }
        for (i, line) in lines.enumerated() {
            let key: [UInt8]?
            switch keying {
            case .childId:
                _ = decoder.decode(line, into: &record)
                key = record[decoder.contract.childIdSlot].string.map { Array($0.utf8) }
            case .random:
                key = Array("k\(rng.next() % 1_000_003)".utf8)
            case .custom(let f):
                key = f(line)
            }
            try producer.produce(topic: topic, key: key, value: Array(line.utf8), token: UInt64(i + 1))
            if i % 5000 == 0 { producer.poll() }
        }
        guard producer.flush(timeoutMs: 120_000) else { throw Failure(description: "producing to \(topic): not every message was delivered in 120 s") }
        let failed = failures.withLock { $0 }
        guard failed == 0 else { throw Failure(description: "producing to \(topic): \(failed) deliveries failed") }
    }

    /// A consumer of its own (a fresh group, no commits), quick to answer a fetch.
    static func reader(_ brokers: String, logger: Logger) throws -> KafkaConsumer {
        var c = KafkaConfig(bootstrapServers: brokers)
        c.set("group.id", "reader-\(UUID().uuidString)")
        c.set("enable.auto.commit", "false")
        c.set("fetch.wait.max.ms", "10")
        return try KafkaConsumer(config: c, logger: logger)
    }

    /// Every message on a topic, read from the beginning until nothing new arrives for `quietMs`.
    public static func read(_ topic: String, brokers: String, quietMs: Int = 1500, timeout: TimeInterval = 60,
                            logger: Logger) throws -> [(value: [UInt8], headers: [(String, [UInt8])])] {
        let consumer = try reader(brokers, logger: logger)
        try consumer.assign(try consumer.partitions(of: topic).map { (TopicPartition(topic, $0), KafkaOffset.beginning) })
        var out: [(value: [UInt8], headers: [(String, [UInt8])])] = []
        var lastNew = Date()
        let deadline = Date().addingTimeInterval(timeout)
        while Date().timeIntervalSince(lastNew) * 1000 < Double(quietMs), Date() < deadline {
            let batch = consumer.poll(max: 1000, timeoutMs: 100)
            for m in batch.messages where m.errorCode == 0 {
                out.append((Array(m.value), m.headers()))
                lastNew = Date()
            }
        }
        consumer.close()
        return out
    }

    /// Every message on a topic up to its end as of the call (each partition's high watermark then): unlike
    /// `read`, no quiet period to guess, so a slow first fetch cannot cut it short.
    public static func readToEnd(_ topic: String, brokers: String, timeout: TimeInterval = 60, logger: Logger) throws -> [[UInt8]] {
        let consumer = try reader(brokers, logger: logger)
        defer { consumer.close() }
        var out: [[UInt8]] = []
        try consumer.readToEnd(topic, timeoutMs: Int(timeout * 1000)) { m in
            out.append(Array(m.value))
            return true
        }
        return out
    }

    /// Partitions of `topics` whose first offset is above 0: the broker's retention dropped data from them.
    public static func truncatedPartitions(_ topics: [String], brokers: String, logger: Logger) throws -> [String] {
        var c = KafkaConfig(bootstrapServers: brokers)
        c.set("group.id", "watermarks-\(UUID().uuidString)")
        let consumer = try KafkaConsumer(config: c, logger: logger)
        defer { consumer.close() }
        var out: [String] = []
        for topic in topics {
            for p in try consumer.partitions(of: topic) {
                let w = try consumer.watermarks(TopicPartition(topic, p))
                if w.low > 0 { out.append("\(topic)[\(p)] starts at \(w.low) of \(w.high)") }
            }
        }
        return out
    }
}
