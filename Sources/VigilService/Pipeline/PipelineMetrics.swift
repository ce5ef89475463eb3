import CoreMetrics
import Synchronization
import VigilContract
import VigilRules

/// What `vigil run` tells a monitoring system, through swift-metrics (the backend is the caller's: Prometheus
/// for `--http`). The stages record per batch, epoch or rebalance, never per message; with no metrics (the
/// default) nothing is recorded at all.
///
/// Names follow Prometheus conventions (base units, `_total` for counters); `PrometheusExport.help`
/// (VigilOperations) has a sentence for each. Labels carry partitions, rules, severities, outcomes and reasons: never an event's content or a
/// child's id.
public final class PipelineMetrics: Sendable {
    let factory: MetricsFactory
    let events: [EventOutcome: CoreMetrics.Counter]
    let messages: CoreMetrics.Counter
    let restoredChildren: CoreMetrics.Counter
    let rebalances: CoreMetrics.Counter
    let restoreSeconds: CoreMetrics.Timer
    let epochsInFlight: Gauge
    let endToEnd: CoreMetrics.Timer
    let shardBatch: CoreMetrics.Timer
    let deliveryRetries: CoreMetrics.Counter
    let inputGaps: CoreMetrics.Counter
    let ready: Gauge
    let auditFsync: CoreMetrics.Timer
    let auditFailures: CoreMetrics.Counter
    private let severities: Mutex<[String: String]>
    private let dynamic = Mutex<[String: AnyObject]>([:])

    /// What became of a valid event, or of a message that was not one.
    public enum EventOutcome: String, CaseIterable, Sendable {
        /// Handed to the engine.
        case evaluated
        /// Its child's restored state held it already (re-read after a restore).
        case skippedRestored = "skipped_restored"
        /// Not a valid event: dead-lettered (by reason in `vigil_dead_letters_total`).
        case deadLetter = "dead_letter"
    }

    public init(factory: MetricsFactory, rules: CompiledRuleSet, rulesDigest: String, version: String) {
        self.factory = factory
        events = Dictionary(uniqueKeysWithValues: EventOutcome.allCases.map {
            ($0, CoreMetrics.Counter(label: "vigil_events_total", dimensions: [("outcome", $0.rawValue)], factory: factory))
        })
        messages = CoreMetrics.Counter(label: "vigil_messages_total", factory: factory)
        restoredChildren = CoreMetrics.Counter(label: "vigil_restored_children_total", factory: factory)
        rebalances = CoreMetrics.Counter(label: "vigil_rebalances_total", factory: factory)
        restoreSeconds = CoreMetrics.Timer(label: "vigil_restore_duration_seconds", factory: factory)
        epochsInFlight = Gauge(label: "vigil_epochs_in_flight", factory: factory)
        endToEnd = CoreMetrics.Timer(label: "vigil_end_to_end_seconds", factory: factory)
        shardBatch = CoreMetrics.Timer(label: "vigil_shard_batch_seconds", factory: factory)
        deliveryRetries = CoreMetrics.Counter(label: "vigil_delivery_retries_total", factory: factory)
        inputGaps = CoreMetrics.Counter(label: "vigil_input_gaps_total", factory: factory)
        ready = Gauge(label: "vigil_ready", factory: factory)
        auditFsync = CoreMetrics.Timer(label: "vigil_audit_fsync_seconds", factory: factory)
        auditFailures = CoreMetrics.Counter(label: "vigil_audit_failures_total", factory: factory)
        severities = Mutex(Dictionary(rules.rules.map { ($0.id, $0.severity.rawValue) }, uniquingKeysWith: { a, _ in a }))
        rulePack(digest: rulesDigest, previous: nil, rules: rules)
        for result in ["switched", "unchanged", "refused"] { _ = reloads(result: result) }
        Gauge(label: "vigil_build_info", dimensions: [("version", version)], factory: factory).record(1)
    }

    private func cached<T: AnyObject>(_ key: String, _ make: () -> T) -> T {
        dynamic.withLock { d in
            if let m = d[key] as? T { return m }
            let m = make()
            d[key] = m
            return m
        }
    }

    func alertCounter(rule: String, severity: String, status: String) -> CoreMetrics.Counter {
        cached("a|\(rule)|\(status)") {
            CoreMetrics.Counter(label: "vigil_alerts_total", dimensions: [("rule", rule), ("severity", severity), ("status", status)], factory: factory)
        }
    }

    /// An audit log fsync (with the seal before it), and whether it failed.
    func auditSynced(micros: Int64, failed: Bool) {
        auditFsync.recordMicroseconds(micros)
        if failed { auditFailures.increment() }
    }

    /// Readiness as `/readyz` answers it now (set at each scrape).
    public func recordReadiness(_ isReady: Bool) { ready.record(isReady ? 1 : 0) }

    /// An alert durable in every output.
    func alerted(_ a: RenderedAlert) {
        alertCounter(rule: a.ruleId, severity: severities.withLock { $0[a.ruleId] } ?? "unknown", status: a.alert.status.rawValue).increment()
    }

    /// Reloads of the rule pack, by result: switched, unchanged, refused.
    func reloads(result: String) -> CoreMetrics.Counter {
        cached("r|\(result)") { CoreMetrics.Counter(label: "vigil_rule_reloads_total", dimensions: [("result", result)], factory: factory) }
    }

    /// The pack running is now `digest` (the previous one's info series goes to 0).
    func rulePack(digest: String, previous: String?, rules: CompiledRuleSet) {
        if let previous { cached("i|\(previous)") { Gauge(label: "vigil_rule_pack_info", dimensions: [("digest", previous)], factory: factory) }.record(0) }
        cached("i|\(digest)") { Gauge(label: "vigil_rule_pack_info", dimensions: [("digest", digest)], factory: factory) }.record(1)
        cached("n|rules") { Gauge(label: "vigil_rules", factory: factory) }.record(rules.rules.count)
        cached("n|switched") { Gauge(label: "vigil_rule_pack_switched_timestamp_seconds", factory: factory) }.record(previous == nil ? 0 : Double(Instant.now.micros) / 1e6)
        severities.withLock { s in for r in rules.rules { s[r.id] = r.severity.rawValue } }
        for rule in rules.rules {
            for status in ["fired", "withdrawn"] { _ = alertCounter(rule: rule.id, severity: rule.severity.rawValue, status: status) }
        }
    }

    func deadLetters(reason: String) -> CoreMetrics.Counter {
        cached("d|\(reason)") { CoreMetrics.Counter(label: "vigil_dead_letters_total", dimensions: [("reason", reason)], factory: factory) }
    }

    func deliveryErrors(output: String) -> CoreMetrics.Counter {
        cached("e|\(output)") { CoreMetrics.Counter(label: "vigil_delivery_errors_total", dimensions: [("output", output)], factory: factory) }
    }

    func partitionGauge(_ name: String, _ p: Int32) -> Gauge {
        cached("p|\(name)|\(p)") { Gauge(label: name, dimensions: [("partition", String(p))], factory: factory) }
    }

    /// A shard's pending deadlines and the earliest of them (at its checkpoints).
    func deadlines(shard: Int, pending: Int, earliest: Instant?) {
        cached("s|pending|\(shard)") { Gauge(label: "vigil_deadlines_pending", dimensions: [("shard", String(shard))], factory: factory) }.record(pending)
        let next = cached("s|next|\(shard)") { Gauge(label: "vigil_next_deadline_timestamp_seconds", dimensions: [("shard", String(shard))], factory: factory) }
        next.record(earliest.map { Double($0.micros) / 1e6 } ?? 0)
    }

    /// Lag of an assigned partition: messages behind its end, and how far its event-time clock trails the
    /// wall clock.
    func lag(partition p: Int32, messages: Int64, clock: Instant?, now: Instant) {
        partitionGauge("vigil_consumer_lag_messages", p).record(messages)
        if let clock, clock > .distantPast {
            partitionGauge("vigil_consumer_lag_seconds", p).record(Double(max(0, now.micros - clock.micros)) / 1e6)
        }
    }

    /// A partition no longer assigned here: its per-partition values go (another member reports them).
    func unassigned(_ ps: [Int32]) {
        for p in ps {
            for name in ["vigil_consumer_lag_messages", "vigil_consumer_lag_seconds", "vigil_last_checkpoint_timestamp_seconds"] {
                if let g = dynamic.withLock({ $0.removeValue(forKey: "p|\(name)|\(p)") }) as? Gauge { g.destroy() }
            }
        }
    }
}

/// Whether the process is alive and whether it is ready to be relied on, for `/healthz` and `/readyz`.
/// Written by the stages, read by whoever serves the endpoints.
public final class PipelineStatus: Sendable {
    /// Wall-clock microseconds of intake's last loop (0 before it starts).
    let intakeBeat = Atomic<Int64>(0)
    /// Wall-clock microseconds of the sink's last loop.
    let sinkBeat = Atomic<Int64>(0)
    /// The group assigned partitions at least once (possibly none).
    let joined = Atomic<Bool>(false)
    /// Intake waits for the sink to make batches durable (an output is slow or down): it is not stuck.
    let backpressured = Atomic<Bool>(false)
    /// A restore of assigned partitions is in progress.
    let restoring = Atomic<Bool>(false)
    /// Messages behind the ends of the assigned partitions, summed; `Int64.max` while not known.
    let lagMessages = Atomic<Int64>(.max)
    let stopping = Atomic<Bool>(false)
    /// Readiness needs the lag under this many messages.
    public let readyMaxLag: Int64

    public init(readyMaxLag: Int64) { self.readyMaxLag = readyMaxLag }

    /// The stage threads are alive: each looped within `seconds` (a stage blocked longer is stuck). Intake is
    /// not stuck while it restores state or waits for the sink (backpressure, an output down: the sink loops).
    public func healthy(now: Instant, seconds: Int64 = 30) -> (Bool, String) {
        let i = intakeBeat.load(ordering: .relaxed), s = sinkBeat.load(ordering: .relaxed)
        if i == 0 || s == 0 { return (true, "starting") }
        let limit = seconds * Instant.microsPerSecond
        let intakeWaits = restoring.load(ordering: .relaxed) || backpressured.load(ordering: .relaxed)
        if now.micros - i > limit && !intakeWaits { return (false, "intake has not looped for \((now.micros - i) / Instant.microsPerSecond) s") }
        if now.micros - s > limit { return (false, "sink has not looped for \((now.micros - s) / Instant.microsPerSecond) s") }
        return (true, "ok")
    }

    /// Ready: the group assigned partitions, they are restored, the lag is under `readyMaxLag`, and the
    /// process is not stopping.
    public var ready: (Bool, String) {
        if stopping.load(ordering: .relaxed) { return (false, "stopping") }
        if restoring.load(ordering: .relaxed) { return (false, "restoring state") }
        if !joined.load(ordering: .relaxed) { return (false, "waiting for the group to assign partitions") }
        let lag = lagMessages.load(ordering: .relaxed)
        if lag == .max { return (false, "lag not known yet") }
        if lag > readyMaxLag { return (false, "\(lag) messages behind (ready at \(readyMaxLag) or fewer)") }
        return (true, "ok")
    }
}
