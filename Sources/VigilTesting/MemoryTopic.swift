import Foundation
import VigilContract
import VigilService

/// A topic held in memory: partitions of messages, and the committed offsets of consumer groups. It outlives
/// the pipelines that use it, so a test can crash one and start another on the same topics.
public final class MemoryTopic: @unchecked Sendable {
    public struct Message: Sendable {
        public var key: [UInt8]?
        public var value: [UInt8]
        public var headers: [(String, [UInt8])]
    }

    public let name: String
    public let partitionCount: Int
    private let lock = NSLock()
    private var logs: [[Message]]
    /// Per partition, the offset of the first message held (older ones were deleted).
    private var lows: [Int64]
    private var committed: [String: [Int32: Int64]] = [:]
    private var failures = 0

    public init(_ name: String, partitions: Int) {
        self.name = name
        partitionCount = partitions
        logs = Array(repeating: [], count: partitions)
        lows = Array(repeating: 0, count: partitions)
    }

    /// Appends a message (to `partition`, or by a hash of its key); returns its partition and offset.
    @discardableResult
    public func append(key: [UInt8]?, value: [UInt8], headers: [(String, [UInt8])] = [], partition: Int32? = nil) -> (Int32, Int64) {
        let p = partition ?? Int32(key.map { Int(stableHash(String(decoding: $0, as: UTF8.self)) % UInt64(partitionCount)) } ?? 0)
        return locked {
            logs[Int(p)].append(Message(key: key, value: value, headers: headers))
            return (p, lows[Int(p)] + Int64(logs[Int(p)].count - 1))
        }
    }

    /// Appends event lines keyed by their child id, as producers should.
    public func produce(events lines: [String]) {
        let decoder = EventDecoder()
        var record = decoder.makeRecord()
        for line in lines {
            _ = decoder.decode(line, into: &record)
            append(key: record[decoder.contract.childIdSlot].string.map { Array($0.utf8) }, value: Array(line.utf8))
        }
    }

    /// The messages a partition still holds, from its low watermark on.
    public func messages(partition p: Int32) -> [Message] { locked { logs[Int(p)] } }
    public var allMessages: [Message] { locked { logs.flatMap { $0 } } }
    public func endOffset(_ p: Int32) -> Int64 { locked { lows[Int(p)] + Int64(logs[Int(p)].count) } }
    public func lowWatermark(_ p: Int32) -> Int64 { locked { lows[Int(p)] } }

    /// Deletes a partition's messages before `offset`, as retention does.
    public func deleteRecords(partition p: Int32, before offset: Int64) {
        locked {
            let n = Int(max(0, min(offset - lows[Int(p)], Int64(logs[Int(p)].count))))
            logs[Int(p)].removeFirst(n)
            lows[Int(p)] += Int64(n)
        }
    }

    /// The held messages of a partition from `offset` on (from the low watermark if it is older), with the
    /// offset of the first.
    func read(partition p: Int32, from offset: Int64) -> (first: Int64, messages: ArraySlice<Message>) {
        locked {
            let first = max(offset, lows[Int(p)])
            let i = Int(min(first - lows[Int(p)], Int64(logs[Int(p)].count)))
            return (first, logs[Int(p)][i...])
        }
    }

    public func committed(group: String) -> [Int32: Int64] { locked { committed[group] ?? [:] } }
    func commit(group: String, _ offsets: [Int32: Int64]) { locked { committed[group, default: [:]].merge(offsets) { _, new in new } } }

    /// The next `n` writes to this topic fail (retriably), as a broker outage would.
    public func failNextWrites(_ n: Int) { locked { failures += n } }

    func takeFailure() -> Bool {
        locked {
            guard failures > 0 else { return false }
            failures -= 1
            return true
        }
    }

    /// An output writing to this topic for one pipeline run.
    public func output(reports: DeliveryReports) -> DurableOutput { MemoryTopicOutput(topic: self, reports: reports) }

    func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }
}

/// A pipeline's writer to a `MemoryTopic`: a record is pending until the next `flush`, which appends it and
/// reports it durable (or reports an injected failure). What is pending when the pipeline crashes is lost,
/// as unacknowledged produce requests may be.
final class MemoryTopicOutput: DurableOutput {
    let topic: MemoryTopic
    let reports: DeliveryReports
    var pending: [(OutputRecord, DeliveryToken)] = []

    init(topic: MemoryTopic, reports: DeliveryReports) {
        self.topic = topic
        self.reports = reports
    }

    var name: String { "memory topic \(topic.name)" }

    func write(_ record: OutputRecord, token: DeliveryToken) { pending.append((record, token)) }

    func flush(waitMs: Int32) {
        let batch = pending
        pending.removeAll()
        for (r, token) in batch {
            if topic.takeFailure() {
                reports.report(token, .failed(reason: "injected failure", retriable: true))
            } else {
                topic.append(key: r.key, value: r.value, headers: r.headers, partition: r.partition)
                reports.report(token, .durable)
            }
        }
    }

    func close(timeoutMs: Int32) -> Bool {
        flush(waitMs: 0)
        return true
    }
}
