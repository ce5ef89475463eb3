import Foundation
import VigilContract
import VigilEngine
import VigilRules

/// One worker thread and the engine it owns: evaluates its children's events and clock movements, in intake
/// order, and hands each epoch's alerts and checkpoint records to the sink.
final class Shard: PipelineStage, @unchecked Sendable {
    let index: Int
    let name: String
    /// Read by the pipeline only after `join`.
    private(set) var engine: Engine
    private let decoder: EventDecoder
    private var record: EventRecord
    private let topic: String
    private let formatter: AlertFormatter
    private let rulesDigest: String
    private let inbox = HandOff<ShardWork?>()
    private let sink: HandOff<SinkItem>
    private let coordinator: Coordinator
    private let counters: PipelineCounters
    private let clock: PipelineClock
    private let encoder = JSONEncoder()
    private var thread: StageThread?

    init(index: Int, rules: CompiledRuleSet, topic: String, maxEventBytes: Int, sink: HandOff<SinkItem>,
         coordinator: Coordinator, counters: PipelineCounters, clock: PipelineClock) {
        self.index = index
        name = "vigil-shard-\(index)"
        engine = Engine(rules: rules)
        decoder = EventDecoder(contract: rules.contract, slots: rules.capturedSlots, maxBytes: maxEventBytes)
        record = decoder.makeRecord()
        self.topic = topic
        formatter = AlertFormatter(rules: rules)
        rulesDigest = Checkpoint.rulesDigest(EngineSnapshot.versions(of: rules))
        self.sink = sink
        self.coordinator = coordinator
        self.counters = counters
        self.clock = clock
    }

    func submit(_ work: ShardWork) { inbox.put(work) }

    func start() { thread = StageThread(name: name) { [self] in run() } }
    func stop() { inbox.put(nil) }
    func join() { thread?.join() }

    private func run() {
        var alerts: [Alert] = []
        while true {
            guard let next = inbox.take(timeout: 3600) else { continue }
            guard let work = next else { return }
            // After a crash nothing more is evaluated; the work is dropped as a dead process would.
            if coordinator.isCrashed { continue }
            let moved = engine.stats.domainChanges
            var changes: [(partition: Int32, record: Checkpoint.Record)] = []
            for item in work.items {
                switch item {
                case .event(let i, let partition, let clock):
                    let m = work.batch.messages[Int(i)]
                    engine.advance(domain: Int(partition), to: clock, into: &alerts)
                    if decoder.decode(m.value, into: &record) == nil {
                        engine.process(record, position: SourcePosition(topic: topic, partition: partition, offset: m.offset),
                                       domain: Int(partition), into: &alerts)
                    }
                case .tick(let partition, let clock):
                    engine.advance(domain: Int(partition), to: clock, into: &alerts)
                case .tickAll(let t):
                    engine.advance(to: t, into: &alerts)
                case .checkpoint(let parts):
                    for part in parts {
                        for child in engine.takeChanged(inDomains: [Int(part.partition)]) {
                            do {
                                changes.append((part.partition, try Checkpoint.childRecord(child, checkpoint: part.checkpoint, next: part.offset,
                                                                                           rulesDigest: rulesDigest, encoder: encoder)))
                            } catch {
                                sink.put(.failed(.stateEncoding(partition: part.partition, reason: "\(error)")))
                            }
                        }
                    }
                case .drop(let partitions):
                    engine.remove(domains: Set(partitions.map(Int.init)))
                case .adopt(let children):
                    engine.adopt(children)
                }
            }
            let now = clock.now()
            let rendered = alerts.map { a in
                RenderedAlert(alert: a, ruleId: formatter.rules.rules[a.ruleIndex].id, json: formatter.jsonBytes(a, emittedAt: now))
            }
            alerts.removeAll(keepingCapacity: true)
            counters.domainChanges.add(engine.stats.domainChanges - moved, ordering: .relaxed)
            sink.put(.result(epoch: work.epoch, shard: index, ShardResult(alerts: rendered, changes: changes)))
        }
    }
}
