import CoreMetrics
import Prometheus

/// swift-metrics' backend for `vigil run --http`: a Prometheus registry whose metrics each carry a `# HELP`
/// line (from `help`) and, for histograms, buckets that fit what they measure. `/metrics` is its text.
public struct PrometheusExport: MetricsFactory, Sendable {
    public let registry = PrometheusCollectorRegistry()

    public init() {}

    /// What every metric means (README "Operating Vigil" lists the same).
    public static let help: [String: String] = [
        "vigil_messages_total": "Messages read from the assigned input partitions, valid or not.",
        "vigil_events_total": "Messages by what became of them: evaluated, skipped_restored (already in a restored child's state), dead_letter.",
        "vigil_dead_letters_total": "Messages dead-lettered, by reason (the vigil.error.kind header).",
        "vigil_alerts_total": "Alerts durable in every output, by rule, severity and status (fired, withdrawn).",
        "vigil_consumer_lag_messages": "Messages behind the end of an assigned partition (0 at its end).",
        "vigil_consumer_lag_seconds": "How far an assigned partition's event-time clock trails the wall clock.",
        "vigil_deadlines_pending": "Deadlines pending in a shard, at its last checkpoint.",
        "vigil_next_deadline_timestamp_seconds": "The earliest pending deadline of a shard (Unix seconds; 0 when none), at its last checkpoint.",
        "vigil_epochs_in_flight": "Batches read and not yet durable in every output.",
        "vigil_end_to_end_seconds": "From reading a batch to its alerts and dead letters being durable in every output.",
        "vigil_shard_batch_seconds": "Time a shard takes to evaluate its share of a batch.",
        "vigil_delivery_retries_total": "Writes to an output that failed and were retried.",
        "vigil_delivery_errors_total": "Failed writes, by output: those retried and the one no retry cures (which stops the pipeline).",
        "vigil_rebalances_total": "Partition assignments received from the consumer group.",
        "vigil_restore_duration_seconds": "Time to restore the state of newly assigned partitions.",
        "vigil_restored_children_total": "Children restored from the changelog.",
        "vigil_last_checkpoint_timestamp_seconds": "When an assigned partition's last checkpoint became durable (Unix seconds).",
        "vigil_input_gaps_total": "Input deleted before it was read (lag beyond retention), found on assignment or while reading.",
        "vigil_rule_pack_info": "The rule pack by digest: 1 for the one running, 0 for one switched away from.",
        "vigil_rules": "Rules in the pack running.",
        "vigil_rule_reloads_total": "Rule pack reloads, by result: switched, unchanged, or refused (failed to compile or its rule tests; the running pack kept going).",
        "vigil_rule_pack_switched_timestamp_seconds": "When the running pack was switched to by a reload (Unix seconds; 0 when it is the one started with).",
        "vigil_build_info": "The vigil version (value 1).",
        "vigil_audit_fsync_seconds": "Audit log fsyncs (with the seal written before one), by duration.",
        "vigil_audit_failures_total": "Audit log seals or fsyncs that failed (each stops the pipeline: alerts are held until the log can take them).",
        "vigil_ready": "1 when /readyz answers ready (partitions assigned and restored, lag under ready-max-lag, not stopping), else 0.",
    ]

    static let secondsBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
    ]

    static let batchBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1),
    ]

    func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: Self.help[label] ?? "")
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(descriptor: descriptor(label), labels: dimensions) }
        return registry.makeValueHistogram(descriptor: descriptor(label), labels: dimensions, buckets: [1, 10, 100, 1000, 10_000])
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        let buckets = ["vigil_shard_batch_seconds", "vigil_audit_fsync_seconds"].contains(label) ? Self.batchBuckets : Self.secondsBuckets
        return registry.makeDurationHistogram(descriptor: descriptor(label), labels: dimensions, buckets: buckets)
    }

    public func destroyCounter(_ handler: any CounterHandler) {
        if let c = handler as? Prometheus.Counter { registry.unregisterCounter(c) }
    }

    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let c = handler as? Prometheus.Counter { registry.unregisterCounter(c) }
    }

    public func destroyRecorder(_ handler: any RecorderHandler) {
        if let g = handler as? Prometheus.Gauge { registry.unregisterGauge(g) }
        if let h = handler as? ValueHistogram { registry.unregisterValueHistogram(h) }
    }

    public func destroyMeter(_ handler: any MeterHandler) {
        if let g = handler as? Prometheus.Gauge { registry.unregisterGauge(g) }
    }

    public func destroyTimer(_ handler: any TimerHandler) {
        if let h = handler as? DurationHistogram { registry.unregisterDurationHistogram(h) }
    }

    /// The Prometheus text format of every metric.
    public func text() -> [UInt8] { registry.emitToBuffer() }
}
