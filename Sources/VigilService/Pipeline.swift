import Foundation
import Logging
import VigilContract
import VigilEngine
import VigilKafka
import VigilRules

/// A FIFO between threads. `put` never blocks (the pipeline bounds what is in flight); `take` waits.
///
/// A taken item is released at once (consumed Kafka messages must not outlive their use: librdkafka's
/// shutdown waits for every one of them).
final class HandOff<T>: @unchecked Sendable {
    private let cond = NSCondition()
    private var items: [T?] = []
    private var head = 0

    func put(_ x: T) {
        cond.lock()
        items.append(x)
        cond.signal()
        cond.unlock()
    }

    /// Returns an item just taken to the front (the next `take` gets it first).
    func putBack(_ x: T) {
        cond.lock()
        if head > 0 {
            head -= 1
            items[head] = x
        } else {
            items.insert(x, at: 0)
        }
        cond.unlock()
    }

    /// The next item, waiting at most `timeout` seconds (0: not at all); nil on timeout.
    func take(timeout: TimeInterval) -> T? {
        cond.lock()
        defer { cond.unlock() }
        if head >= items.count {
            guard timeout > 0 else { return nil }
            let deadline = Date().addingTimeInterval(timeout)
            while head >= items.count {
                if !cond.wait(until: deadline) { return nil }
            }
        }
        let x = items[head]
        items[head] = nil
        head += 1
        if head > 1024 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        return x
    }
}

/// One unit of work for a shard: a slice of one consumed batch, plus clock movements and control, in intake
/// order.
struct ShardWork: @unchecked Sendable {
    enum Item {
        case event(index: Int32, partition: Int32, clock: Instant)
        case tick(partition: Int32, clock: Instant)
        case tickAll(Instant)
        /// Write the children of these partitions changed since their last checkpoint (a checkpoint barrier).
        case checkpoint(CheckpointRequest)
        /// Forget the children of these partitions (revoked).
        case drop([Int32])
        /// Take over these children (restored from the changelog).
        case adopt([ChildState])
    }
    let epoch: Int
    let batch: KafkaMessageBatch
    var items: [Item]
}

/// An alert with its JSON, ready for the audit log and the alerts topic.
struct RenderedAlert: Sendable {
    let alertId: String
    let childId: String
    let json: String
    let alert: Alert
}

/// A checkpoint of some partitions, taken at an epoch boundary.
final class CheckpointRequest: @unchecked Sendable {
    struct Part {
        let partition: Int32
        let checkpoint: Int64
        let offset: Int64
        let clock: Instant
    }
    let parts: [Part]
    /// Signalled once the checkpoint is durable in the changelog (or abandoned at shutdown).
    let done = DispatchSemaphore(value: 0)
    init(parts: [Part]) { self.parts = parts }
}

/// What intake sends the sink for each epoch: where the epoch ends, and the messages to dead-letter.
struct EpochHeader: @unchecked Sendable {
    struct DeadLetter {
        let index: Int32
        let failure: ValidationFailure
    }
    let epoch: Int
    let batch: KafkaMessageBatch
    /// Next offset per partition once the epoch is processed (informational; restore uses checkpoints).
    let offsets: [TopicPartition: Int64]
    let deadLetters: [DeadLetter]
    let checkpoint: CheckpointRequest?
}

enum SinkItem: @unchecked Sendable {
    case header(EpochHeader)
    case result(epoch: Int, shard: Int, alerts: [RenderedAlert], changes: [(partition: Int32, record: Checkpoint.Record)], stats: EngineStats)
    case failed(String)
    case stop
}

/// Counters reported at shutdown (and periodically in the log).
public struct PipelineSummary: Sendable {
    public var messages = 0
    public var events = 0
    public var deadLetters = 0
    public var deadLettersByKind: [String: Int] = [:]
    public var alerts = 0
    public var alertsByRule: [String: Int] = [:]
    public var withdrawn = 0
    public var auditWritten = 0
    public var auditSkippedDuplicates = 0
    public var deliveryRetries = 0
    public var checkpoints = 0
    /// Child state records written to the changelog.
    public var stateRecords = 0
    public var restoredChildren = 0
    /// Events skipped on restore because a child's state already held them.
    public var skippedRestored = 0
    /// Events for children last seen on another input partition (input not keyed by child id).
    public var domainChanges = 0
    public var engine = EngineStats()
    public var auditHead: (seq: Int, hash: String) = (0, AuditLog.genesis)
    /// Wall-clock times: the first message consumed, and the last batch made durable.
    public var firstMessageAt: Instant?
    public var lastDurableAt: Instant?

    /// The counters as JSON (`vigil run --stats-file`).
    public var json: String {
        var w = JSONWriter()
        w.raw("{")
        w.key("messages"); w.int(Int64(messages))
        w.raw(","); w.key("events"); w.int(Int64(events))
        w.raw(","); w.key("dead_letters"); w.int(Int64(deadLetters))
        w.raw(","); w.key("alerts"); w.int(Int64(alerts))
        w.raw(","); w.key("withdrawn"); w.int(Int64(withdrawn))
        w.raw(","); w.key("audit_written"); w.int(Int64(auditWritten))
        w.raw(","); w.key("duplicates"); w.int(Int64(engine.duplicates))
        w.raw(","); w.key("delivery_retries"); w.int(Int64(deliveryRetries))
        w.raw(","); w.key("checkpoints"); w.int(Int64(checkpoints))
        w.raw(","); w.key("state_records"); w.int(Int64(stateRecords))
        w.raw(","); w.key("restored_children"); w.int(Int64(restoredChildren))
        w.raw(","); w.key("skipped_restored"); w.int(Int64(skippedRestored))
        if let t = firstMessageAt { w.raw(","); w.key("first_message_at_us"); w.int(t.micros) }
        if let t = lastDurableAt { w.raw(","); w.key("last_durable_at_us"); w.int(t.micros) }
        w.raw("}")
        return w.text
    }
}

/// `vigil run`: Kafka in, alerts out.
///
/// Threads: intake (the caller of `run`) polls Kafka in batches, validates each message against the
/// contract, keeps one event-time clock per input partition and hands each shard its slice of the batch
/// with the clock as of every event. Shards (one thread each) own an `Engine` for the children hashed to
/// them. The sink (one thread) writes alerts to the audit log (one fsync per batch) and produces alerts,
/// dead letters and checkpoints. Nothing is handed between threads per message.
///
/// State is checkpointed per input partition to the changelog topic at epoch boundaries (a barrier passes
/// through every shard's queue), and only once every earlier epoch's alerts are acknowledged and fsynced.
/// A partition assigned to this instance is restored from its newest complete checkpoint and read from the
/// offset recorded with it, so events are applied to state exactly once and re-emitted alerts carry the
/// same ids.
public final class Pipeline: @unchecked Sendable {
    public let config: PipelineConfig
    let rules: CompiledRuleSet
    let logger: Logger
    let formatter: AlertFormatter
    let stopLock = NSCondition()
    var stopRequested = false
    var inFlight = 0
    var fatal: String?
    /// Called on the sink thread for each alert once it is durable (audit fsynced, broker acknowledged).
    public var onAlert: (@Sendable (Alert, String) -> Void)?
    /// Called once when intake first catches up with every assigned partition.
    public var onCaughtUp: (@Sendable () -> Void)?
    /// Stop once caught up with every assigned partition (after the catch-up clock move): backtests.
    public var stopWhenCaughtUp = false

    public init(config: PipelineConfig, rules: CompiledRuleSet, logger: Logger) {
        self.config = config
        self.rules = rules
        self.logger = logger
        formatter = AlertFormatter(rules: rules)
    }

    /// Asks the pipeline to stop: intake stops, in-flight work drains, state is checkpointed, then everything
    /// is flushed. Safe from any thread (a signal handler's queue included).
    public func requestStop() {
        stopLock.lock()
        stopRequested = true
        stopLock.broadcast()
        stopLock.unlock()
    }

    var stopping: Bool {
        stopLock.lock()
        defer { stopLock.unlock() }
        return stopRequested
    }

    func fail(_ reason: String) {
        stopLock.lock()
        if fatal == nil { fatal = reason }
        stopRequested = true
        stopLock.broadcast()
        stopLock.unlock()
    }

    func epochDone() {
        stopLock.lock()
        inFlight -= 1
        stopLock.broadcast()
        stopLock.unlock()
    }

    /// Blocks until every epoch handed out is durable.
    func drain() {
        stopLock.lock()
        while inFlight > 0 { _ = stopLock.wait(until: Date().addingTimeInterval(0.05)) }
        stopLock.unlock()
    }

    public struct RunError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// Runs until `requestStop()`; returns the counters. Throws when it cannot start, or on a fatal error.
    public func run() throws -> PipelineSummary {
        do { try config.validate() } catch { throw RunError(message: "\(error)") }
        let audit: AuditLogWriter
        do { audit = try AuditLogWriter(path: config.auditFile) } catch { throw RunError(message: "\(error)") }
        if audit.repairedBytes > 0 {
            logger.warning("audit log: removed a torn final record (\(audit.repairedBytes) bytes) left by a crash; it was never acknowledged")
        }
        logger.info("audit log \(config.auditFile): \(audit.count) records, head \(audit.head.prefix(16))…")

        var base = KafkaConfig(bootstrapServers: config.brokers)
        do { try base.apply(passThrough: config.kafka) } catch { throw RunError(message: "\(error)") }
        var producerConfig = base
        // At least once, with stable alert ids: a retried send may duplicate (consumers and the audit log
        // dedupe by id), and nothing may be lost. The idempotent producer of librdkafka 2.0 acknowledged
        // alerts that never reached the log when Produce requests failed (ChaosTests, with the embedded
        // broker's fault injection; none lost without it), so it is off unless kafka-producer turns it on.
        // Changelog order does not depend on it: a checkpoint's records go out only after the previous
        // checkpoint's marker is acknowledged, and each child has one record per checkpoint.
        producerConfig.set("enable.idempotence", "false")
        producerConfig.set("acks", "all")
        if base.value("linger.ms") == nil { producerConfig.set("linger.ms", "5") }
        // State records and alerts are repetitive JSON: lz4 shrinks them several times over, cheaply.
        if base.value("compression.type") == nil { producerConfig.set("compression.type", "lz4") }
        for (k, v) in base.properties { producerConfig.set(k, v) }
        do { try producerConfig.apply(passThrough: config.kafkaProducer) } catch { throw RunError(message: "\(error)") }

        let n = config.effectiveShards
        let sinkInbox = HandOff<SinkItem>()
        var shards: [Shard] = []
        for i in 0..<n {
            shards.append(Shard(index: i, engine: Engine(rules: rules), rules: rules, topic: config.processingTopic,
                                maxBytes: config.maxEventBytes, formatter: formatter, sink: sinkInbox))
        }
        let sink = Sink(pipeline: self, audit: audit, shards: n, logger: logger)
        let producer: KafkaProducer
        do {
            producer = try KafkaProducer(config: producerConfig, logger: logger) { [sink] token, error in sink.delivered(token, error) }
        } catch { throw RunError(message: "\(error)") }
        sink.producer = producer
        let partitions = try checkTopics(producer)

        var consumerConfig = base
        consumerConfig.set("group.id", config.group)
        consumerConfig.set("enable.auto.offset.store", "false")
        consumerConfig.set("enable.partition.eof", "true")
        if base.value("enable.auto.commit") == nil { consumerConfig.set("enable.auto.commit", "true") }
        if base.value("auto.offset.reset") == nil { consumerConfig.set("auto.offset.reset", "earliest") }
        if base.value("partition.assignment.strategy") == nil { consumerConfig.set("partition.assignment.strategy", "cooperative-sticky") }
        if base.value("fetch.wait.max.ms") == nil { consumerConfig.set("fetch.wait.max.ms", "100") }
        for (k, v) in base.properties { consumerConfig.set(k, v) }
        do { try consumerConfig.apply(passThrough: config.kafkaConsumer) } catch { throw RunError(message: "\(error)") }

        let restorer = ChangelogReader(config: base, topic: config.changelogTopic, logger: logger)
        let intake = Intake(pipeline: self, shards: shards, sinkInbox: sinkInbox, restorer: restorer)
        let consumer: KafkaConsumer
        do {
            consumer = try KafkaConsumer(config: consumerConfig, logger: logger,
                                         onAssign: { [intake] parts in intake.assigned(parts) },
                                         onRevoke: { [intake] parts, lost in intake.revoked(parts, lost: lost) },
                                         onError: { [weak self] error, isFatal in
                                             if isFatal { self?.fail("Kafka: \(error.message)") } else { self?.logger.warning("Kafka: \(error.message)") }
                                         })
        } catch { throw RunError(message: "\(error)") }
        sink.consumer = consumer
        intake.consumer = consumer

        var repartitioner: Repartitioner?
        if config.repartition {
            do {
                repartitioner = try Repartitioner(pipeline: self, base: base, producerConfig: producerConfig, partitions: partitions)
            } catch { throw RunError(message: "\(error)") }
            intake.upstream = repartitioner
        }

        for s in shards { s.start() }
        sink.start(inbox: sinkInbox)
        repartitioner?.start()
        do { try consumer.subscribe([config.processingTopic]) } catch { throw RunError(message: "\(error)") }
        logger.info("consuming \(config.processingTopic)\(config.repartition ? " (repartitioned from \(config.inputTopic))" : "") as group \(config.group) with \(n) shard\(n == 1 ? "" : "s"); alerts to \(config.alertsTopic), dead letters to \(config.deadLetterTopic), state to \(config.changelogTopic), clock \(config.clock.rawValue)")

        intake.loop()

        // Shutdown: intake has stopped. Leaving the group revokes every partition: each is drained and
        // checkpointed (see Intake.revoked) while the shards and the sink still run. Then they stop.
        logger.info("stopping: checkpointing and leaving the group")
        repartitioner?.stop()
        consumer.close()
        drain()
        for s in shards { s.stop() }
        sinkInbox.put(.stop)
        sink.join()
        for s in shards { s.join() }
        if !producer.flush(timeoutMs: 30_000) { logger.error("producer: undelivered messages remain after 30 s") }
        do { try audit.sync() } catch { logger.error("\(error)") }
        var summary = sink.summary
        summary.messages = intake.messages
        summary.events = intake.validEvents
        summary.firstMessageAt = intake.firstMessageAt
        summary.restoredChildren = intake.restoredChildren
        summary.skippedRestored = intake.skippedRestored
        for s in shards { summary.engine.add(s.engine.stats) }
        // The clients' callbacks hold the stages and the stages hold the clients: break the cycles so both
        // are destroyed (and their librdkafka threads stopped) before returning.
        sink.producer = nil
        sink.consumer = nil
        intake.consumer = nil
        summary.auditHead = (audit.seq, audit.head)
        logger.info("audit head: seq \(audit.seq) sha256 \(audit.head)")
        if let fatal { throw RunError(message: fatal) }
        return summary
    }

    /// The output topics and the changelog must exist, and the changelog must have as many partitions as the
    /// topic the engines read. Broker outages are waited out with backoff; a missing topic is an error.
    /// Returns that partition count.
    func checkTopics(_ producer: KafkaProducer) throws -> Int {
        func partitions(_ topic: String) throws -> Int {
            var delay = 0.5
            while true {
                do {
                    return try producer.partitions(of: topic, timeoutMs: 10_000).count
                } catch {
                    if !error.isRetriable || stopping {
                        throw RunError(message: "topic \(topic) is not available: \(error.message) (create it before starting vigil run)")
                    }
                    logger.warning("topic \(topic): \(error.message); retrying in \(delay) s")
                    Thread.sleep(forTimeInterval: delay)
                    delay = min(delay * 2, 30)
                }
            }
        }
        let processing = try partitions(config.processingTopic)
        if config.repartition { _ = try partitions(config.inputTopic) }
        for topic in [config.alertsTopic, config.deadLetterTopic] {
            let count = try partitions(topic)
            logger.info("output topic \(topic): \(count) partitions")
        }
        let changelog = try partitions(config.changelogTopic)
        guard changelog == processing else {
            throw RunError(message: "topic \(config.changelogTopic) has \(changelog) partitions; it must have as many as \(config.processingTopic) (\(processing))")
        }
        return processing
    }
}

/// One worker thread and the engine it owns.
final class Shard: @unchecked Sendable {
    let index: Int
    var engine: Engine
    let decoder: EventDecoder
    var record: EventRecord
    let topic: String
    let formatter: AlertFormatter
    let inbox = HandOff<ShardWork?>()
    let sink: HandOff<SinkItem>
    let done = DispatchSemaphore(value: 0)
    let encoder = JSONEncoder()
    let rulesDigest: String

    init(index: Int, engine: Engine, rules: CompiledRuleSet, topic: String, maxBytes: Int, formatter: AlertFormatter, sink: HandOff<SinkItem>) {
        self.index = index
        self.engine = engine
        decoder = EventDecoder(contract: rules.contract, slots: rules.capturedSlots, maxBytes: maxBytes)
        record = decoder.makeRecord()
        self.topic = topic
        self.formatter = formatter
        self.sink = sink
        rulesDigest = Checkpoint.rulesDigest(EngineSnapshot.versions(of: rules))
    }

    func start() {
        let t = Thread { [self] in
            run()
            done.signal()
        }
        t.name = "vigil-shard-\(index)"
        t.start()
    }

    func stop() { inbox.put(nil) }
    func join() { done.wait() }

    func run() {
        var alerts: [Alert] = []
        while true {
            guard let next = inbox.take(timeout: 3600) else { continue }
            guard let work = next else { return }
            let before = engine.stats
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
                case .checkpoint(let request):
                    for part in request.parts {
                        for child in engine.takeChanged(inDomains: [Int(part.partition)]) {
                            do {
                                changes.append((part.partition, try Checkpoint.childRecord(child, checkpoint: part.checkpoint, next: part.offset,
                                                                                           rulesDigest: rulesDigest, encoder: encoder)))
                            } catch {
                                sink.put(.failed("encoding the state of a child of partition \(part.partition): \(error)"))
                            }
                        }
                    }
                case .drop(let partitions):
                    engine.remove(domains: Set(partitions.map(Int.init)))
                case .adopt(let children):
                    engine.adopt(children)
                }
            }
            let now = Instant.now
            let rendered = alerts.map { RenderedAlert(alertId: $0.alertId, childId: $0.childId, json: formatter.json($0, emittedAt: now), alert: $0) }
            alerts.removeAll(keepingCapacity: true)
            var delta = engine.stats
            delta.subtract(before)
            sink.put(.result(epoch: work.epoch, shard: index, alerts: rendered, changes: changes, stats: delta))
        }
    }
}

extension EngineStats {
    mutating func subtract(_ o: EngineStats) {
        events -= o.events; duplicates -= o.duplicates; alerts -= o.alerts; suppressed -= o.suppressed
        deadlinesArmed -= o.deadlinesArmed; deadlinesMet -= o.deadlinesMet; deadlinesCancelled -= o.deadlinesCancelled
        deadlinesFired -= o.deadlinesFired; overflowDrops -= o.overflowDrops; pendingRefused -= o.pendingRefused
        withdrawn -= o.withdrawn; domainChanges -= o.domainChanges
    }
}

extension Instant {
    /// The wall clock. Only the service edge reads it; the engine never does.
    public static var now: Instant {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Instant(micros: Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000)
    }
}
