import Foundation
import Logging
import VigilKafka
import VigilEngine
import VigilRules

/// Reads changelog partitions back for restores: each assigned partition from its beginning to its end, with
/// a consumer of its own (no group), then decodes them in parallel.
public final class KafkaChangelogStore: StateStore {
    let config: KafkaConfig
    let topic: String
    let logger: Logger

    public init(base: KafkaConfig, topic: String, logger: Logger) {
        var reader = ConsumerConfiguration(groupId: "vigil-restore-\(UUID().uuidString)")
        reader.autoCommit = false
        reader.fetchWaitMaxMs = 10
        config = reader.forcing(over: base)
        self.topic = topic
        self.logger = logger
    }

    public func restore(partitions: [Int32], rules: CompiledRuleSet) throws(PipelineError) -> (restored: [Int32: Checkpoint.Restored], timings: RestoreTimings) {
        guard !partitions.isEmpty else { return ([:], RestoreTimings()) }
        let started = Date()
        let records: [Int32: [Checkpoint.Record]]
        do { records = try read(partitions) } catch let e as PipelineError { throw e } catch {
            throw .kafka(client: "changelog reader", error as? KafkaError ?? KafkaError(code: -1, message: "\(error)"))
        }
        let readDone = Date()
        let out: [Int32: Checkpoint.Restored]
        do throws(Checkpoint.RestoreError) { out = try Checkpoint.restore(partitions: partitions, records: records, pack: StatePack(rules)) } catch {
            throw .restore(error)
        }
        return (out, RestoreTimings(records: records.values.reduce(0) { $0 + $1.count }, read: readDone.timeIntervalSince(started),
                                    decode: Date().timeIntervalSince(readDone)))
    }

    /// Every record of the partitions, in log order.
    private func read(_ partitions: [Int32]) throws -> [Int32: [Checkpoint.Record]] {
        let consumer = try KafkaConsumer(config: config, logger: logger)
        defer { consumer.close() }
        try consumer.assign(partitions.map { (TopicPartition(topic, $0), KafkaOffset.beginning) })
        var records: [Int32: [Checkpoint.Record]] = [:]
        var ended = Set<Int32>()
        var delay = RetryDelay(.reading)
        var lastProgress = Date()
        while ended.count < partitions.count {
            let batch = consumer.poll(max: 1000, timeoutMs: 200)
            for m in batch.messages {
                if m.errorCode == KafkaError.partitionEOF { ended.insert(m.partition); continue }
                if m.errorCode != 0 {
                    logger.warning("reading \(topic): \(m.errorMessage); retrying")
                    Thread.sleep(forTimeInterval: delay.failed())
                    continue
                }
                delay.succeeded()
                lastProgress = Date()
                guard let key = m.key else { continue }
                records[m.partition, default: []].append(Checkpoint.Record(key: String(decoding: key, as: UTF8.self), value: Array(m.value)))
            }
            if batch.messages.isEmpty && Date().timeIntervalSince(lastProgress) > 60 {
                throw PipelineError.stalled(topic: topic, seconds: 60)
            }
        }
        return records
    }
}
