import Foundation
import Logging
import VigilContract
import VigilEngine
import VigilRules

/// One worker thread and the engine it owns: evaluates its children's events and clock movements, in intake
/// order, and hands each epoch's alerts and checkpoint records to the sink.
final class Shard: PipelineStage, @unchecked Sendable {
    let index: Int
    let name: String
    /// Read by the pipeline only after `join`. Used by the shard's thread alone before that, three times an
    /// event: not checked for overlapping access at run time (as `Replay.engine`; BENCHMARKS.md, 2026-12-07,
    /// evening).
    @exclusivity(unchecked) private(set) var engine: Engine
    /// What an event is read back into (intake decoded it: `ShardWork.events`).
    private var record: EventRecord
    /// A position on the input topic (the topic's name looked up once, not per message).
    private let input: SourcePosition
    private var formatter: AlertFormatter
    private var pack: StatePack
    /// Partitions whose changelog has this pack's manifest (written before the first state under it).
    private var packWritten = Set<Int32>()
    private let inbox = HandOff<ShardWork?>()
    private let sink: HandOff<SinkItem>
    private let coordinator: Coordinator
    private let counters: PipelineCounters
    private let metrics: PipelineMetrics?
    private let clock: PipelineClock
    private let stateMaxBytes: Int
    private let logger: Logger
    private var thread: StageThread?

    init(index: Int, rules: CompiledRuleSet, topic: String, config: PipelineConfig, sink: HandOff<SinkItem>,
         coordinator: Coordinator, counters: PipelineCounters, metrics: PipelineMetrics?, clock: PipelineClock, logger: Logger) {
        self.index = index
        name = "vigil-shard-\(index)"
        engine = Engine(rules: rules)
        stateMaxBytes = config.stateMaxBytes
        self.logger = logger
        record = EventRecord(slotCount: rules.contract.slotCount)
        input = SourcePosition(topic: topic, partition: 0, offset: 0)
        formatter = AlertFormatter(rules: rules)
        pack = StatePack(rules)
        self.sink = sink
        self.coordinator = coordinator
        self.counters = counters
        self.metrics = metrics
        self.clock = clock
    }

    func submit(_ work: ShardWork) { inbox.put(work) }

    func start() { thread = StageThread(name: name) { [self] in run() } }
    func stop() { inbox.put(nil) }
    func join() { thread?.join() }

    /// A child's checkpoint record `r`, within the byte budget: while it is over, the child's state is made
    /// smaller step by step (`Engine.shrink`, counted and logged).
    private func withinBudget(_ r: Checkpoint.Record, child id: String, _ part: CheckpointPart) -> Checkpoint.Record {
        var r = r
        var steps = 0
        while r.value.count > stateMaxBytes, engine.shrink(child: id), let smaller = engine.child(id) {
            steps += 1
            r = Checkpoint.childRecord(smaller, checkpoint: part.checkpoint, next: part.offset, pack: pack)
        }
        if steps > 0 {
            logger.warning("state of child \(id) over its \(stateMaxBytes)-byte budget: reduced in \(steps) steps to \(r.value.count) bytes (oldest history first; records arriving later than it are reconciled approximately)")
        }
        return r
    }

    /// The alerts made so far, rendered under the pack they were raised under.
    private func render(_ alerts: inout [Alert], into rendered: inout [RenderedAlert]) {
        guard !alerts.isEmpty else { return }
        let now = clock.now()
        for a in alerts {
            let rule = formatter.rules.rules[a.ruleIndex]
            rendered.append(RenderedAlert(alert: a, ruleId: rule.id, json: formatter.jsonBytes(a, emittedAt: now), shadow: rule.mode == .shadow))
        }
        alerts.removeAll(keepingCapacity: true)
    }

    /// The reusable record, taken out (no copy of its storage) for a batch; given back after it.
    private func takeRecord() -> EventRecord {
        var r = EventRecord(slotCount: 0)
        swap(&r, &record)
        return r
    }

    /// Switches to another rule pack at this point of the intake order: the engine's children are carried
    /// across (`Engine.switched`), and what follows is evaluated under the new pack only.
    private func switchRules(_ s: RuleSwitch, _ alerts: inout [Alert], _ rendered: inout [RenderedAlert]) {
        render(&alerts, into: &rendered)
        let started = clock.now()
        engine = engine.switched(to: s.rules, change: s.change, into: &alerts)
        record = EventRecord(slotCount: s.rules.contract.slotCount)
        formatter = AlertFormatter(rules: s.rules)
        pack = s.pack
        packWritten = []
        let ms = Double(clock.now().micros - started.micros) / 1000
        logger.info("shard \(index): rule pack \(s.change.old.digest) -> \(s.pack.digest): \(engine.childCount) children carried, \(alerts.count) backfill alerts, in \(String(format: "%.1f", ms)) ms")
        render(&alerts, into: &rendered)
    }

    private func run() {
        var alerts: [Alert] = []
        var rendered: [RenderedAlert] = []
        while true {
            guard let next = inbox.take(timeout: 3600) else { continue }
            guard let work = next else { return }
            // After a crash nothing more is evaluated; the work is dropped as a dead process would.
            if coordinator.isCrashed { continue }
            let before = engine.stats
            let started = metrics == nil ? 0 : clock.now().micros
            var changes: [(partition: Int32, record: Checkpoint.Record)] = []
            // The record is a local for the batch (no copy of its storage): read as a property of this class,
            // it would be accessed through the class for every event.
            var decoded = takeRecord()
            var at = 0
            var k = 0
            let hashes = work.childHashes
            for item in work.items {
                switch item {
                case .event(let i, let partition, let clock):
                    engine.prefetch { d in k + d < hashes.count ? hashes[k + d] : nil }
                    // Intake hashed the child id to pick this shard: the engine finds the child by that hash.
                    let childHash = k < hashes.count ? hashes[k] : nil
                    k += 1
                    let m = work.batch.messages[Int(i)]
                    engine.advance(domain: Int(partition), to: clock, into: &alerts)
                    if work.events.load(&at, into: &decoded) {
                        engine.process(decoded, position: SourcePosition(topicOf: input, partition: partition, offset: m.offset),
                                       domain: Int(partition), childHash: childHash, into: &alerts)
                    } else {
                        // Intake packed every event it hands over: this is a defect, said as loudly as one.
                        logger.critical("shard \(index): the event at partition \(partition) offset \(m.offset) could not be read back from intake's batch; not evaluated")
                    }
                case .tick(let partition, let clock):
                    engine.advance(domain: Int(partition), to: clock, into: &alerts)
                case .tickAll(let t):
                    engine.advance(to: t, into: &alerts)
                case .checkpoint(let parts):
                    if let metrics {
                        let d = engine.deadlineSummary()
                        metrics.deadlines(shard: index, pending: d.pending, earliest: d.earliest)
                    }
                    // One pass over the children for every partition of the checkpoint (not one a partition):
                    // the changed children first, those about to be evicted too: the ledger writes the
                    // tombstones only after the marker, and until they are durable a restore must find each
                    // child's state as of this checkpoint, not an older record.
                    // A partition's records carry its first part's checkpoint and offset; eviction, its clock.
                    var partOf: [Int: CheckpointPart] = [:]
                    for part in parts where partOf[Int(part.partition)] == nil { partOf[Int(part.partition)] = part }
                    // Each changed child encoded where it is in the engine (copying 100,000 children out of it
                    // first was a twentieth of a shard's time on an alert-dense stream); one over its budget
                    // is made smaller afterwards, when the engine can change.
                    var changed: [Int: [Checkpoint.Record]] = [:]
                    var overBudget: [(domain: Int, at: Int, id: String)] = []
                    engine.takeChanged(inDomains: Set(partOf.keys)) { child in
                        let domain = Int(child.domain)
                        guard let part = partOf[domain] else { return }
                        let r = Checkpoint.childRecord(child, checkpoint: part.checkpoint, next: part.offset, pack: pack)
                        if r.value.count > stateMaxBytes { overBudget.append((domain, changed[domain]?.count ?? 0, child.id)) }
                        changed[domain, default: []].append(r)
                    }
                    for o in overBudget {
                        guard let part = partOf[o.domain], let r = changed[o.domain]?[o.at] else { continue }
                        changed[o.domain]?[o.at] = withinBudget(r, child: o.id, part)
                    }
                    var evicted = engine.evictIdle(clocks: partOf.mapValues(\.clock)).byDomain
                    for part in parts {
                        if !packWritten.contains(part.partition) {
                            packWritten.insert(part.partition)
                            changes.append((part.partition, Checkpoint.packRecord(pack)))
                        }
                        let domain = Int(part.partition)
                        for r in changed.removeValue(forKey: domain) ?? [] { changes.append((part.partition, r)) }
                        for id in evicted.removeValue(forKey: domain) ?? [] {
                            changes.append((part.partition, Checkpoint.tombstone(child: id)))
                        }
                    }
                case .drop(let partitions):
                    engine.remove(domains: Set(partitions.map(Int.init)))
                case .adopt(let children, let carried):
                    engine.adopt(children, carried: carried, into: &alerts)
                case .switchRules(let s):
                    switchRules(s, &alerts, &rendered)
                    decoded = takeRecord()
                }
            }
            record = decoded
            render(&alerts, into: &rendered)
            defer { rendered.removeAll(keepingCapacity: true) }
            counters.count(engine.stats, since: before)
            if let metrics, !work.items.isEmpty { metrics.shardBatch.recordMicroseconds(clock.now().micros - started) }
            sink.put(.result(epoch: work.epoch, shard: index, ShardResult(alerts: rendered, changes: changes)))
        }
    }
}
