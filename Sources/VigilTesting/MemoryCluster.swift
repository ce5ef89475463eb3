import Foundation
import VigilContract
import VigilEngine
import VigilRules
import VigilService

/// The topics of one deployment, in memory, and an audit log on disk: what `vigil run` uses, with no broker.
/// `io` builds a pipeline's I/O over them; after a crash, a new pipeline on the same cluster restarts from
/// what was durable (the changelog's acknowledged records, the audit log's fsynced lines).
public final class MemoryCluster: @unchecked Sendable {
    public let input: MemoryTopic
    public let alerts: MemoryTopic
    public let shadowAlerts: MemoryTopic
    public let deadLetters: MemoryTopic
    public let changelog: MemoryTopic
    public let auditPath: String

    public init(partitions: Int, auditPath: String) {
        input = MemoryTopic("agency-events", partitions: partitions)
        alerts = MemoryTopic("vigil-alerts", partitions: partitions)
        shadowAlerts = MemoryTopic("vigil-alerts-shadow", partitions: partitions)
        deadLetters = MemoryTopic("vigil-dead-letters", partitions: 1)
        changelog = MemoryTopic("vigil-changelog", partitions: partitions)
        self.auditPath = auditPath
    }

    /// The I/O of one pipeline run over these topics, owning every input partition or `partitions`.
    /// `crashAfter` sees each action the sink performs and may crash the run right after it.
    public func io(clock: PipelineClock = SystemClock(), retryBackoff: Backoff = Backoff(initial: 0.001, maximum: 0.01),
                   partitions: [Int32]? = nil, crashAfter: ((EpochLedger.Action) -> Bool)? = nil) -> PipelineIO.Factory {
        { [self] context throws(PipelineError) in
            var config = context.config
            config.auditFile = auditPath
            let writer = try AuditLogWriter.openLogged(config, logger: context.logger, now: { clock.now() })
            let audit = AuditLogOutput(writer: writer, reports: context.reports)
            let outputs = PipelineOutputs(alerts: [audit, alerts.output(reports: context.reports)],
                                          deadLetters: [deadLetters.output(reports: context.reports)],
                                          changelog: changelog.output(reports: context.reports), notes: [audit],
                                          shadowAlerts: [audit, shadowAlerts.output(reports: context.reports)])
            var io = PipelineIO(source: MemorySource(input, group: context.config.group, partitions: partitions), outputs: outputs,
                                state: MemoryChangelog(changelog), reports: context.reports, clock: clock, audit: audit)
            io.retryBackoff = retryBackoff
            io.crashAfter = crashAfter
            return io
        }
    }

    /// The alert ids on the alerts topic, in order (with re-emissions).
    public var alertIdsOnTopic: [String] {
        alerts.allMessages.compactMap { (try? JSONValue.parse($0.value))?["alert_id"]?.stringValue }
    }
}

/// Restores from a changelog `MemoryTopic`: every record acknowledged to it.
public final class MemoryChangelog: StateStore {
    let topic: MemoryTopic

    public init(_ topic: MemoryTopic) { self.topic = topic }

    public func restore(partitions: [Int32], rules: CompiledRuleSet) throws(PipelineError) -> (restored: [Int32: Checkpoint.Restored], timings: RestoreTimings) {
        let pack = StatePack(rules)
        var out: [Int32: Checkpoint.Restored] = [:]
        var count = 0
        for p in partitions {
            let records = topic.messages(partition: p).compactMap { m in
                m.key.map { Checkpoint.Record(key: String(decoding: $0, as: UTF8.self), value: m.value) }
            }
            count += records.count
            do throws(Checkpoint.RestoreError) {
                if let r = try Checkpoint.restore(partition: p, records: records, pack: pack) { out[p] = r }
            } catch {
                throw .restore(error)
            }
        }
        return (out, RestoreTimings(records: count))
    }
}
