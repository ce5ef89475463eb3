import Foundation
import Logging
import VigilContract
import VigilEngine
import VigilKafka
import VigilRules

/// The intake stage: runs on the thread that called `Pipeline.run`, the consumer's polling thread.
final class Intake: @unchecked Sendable {
    unowned let pipeline: Pipeline
    let shards: [Shard]
    let sinkInbox: HandOff<SinkItem>
    var consumer: KafkaConsumer?
    let decoder: EventDecoder
    var record: EventRecord
    let lateness: Int64
    /// Per input partition: the clock (largest valid event time read from it, minus the allowed lateness).
    var clocks: [Int32: Instant]
    var maxEventTime: Instant
    /// Next offset per partition of everything handed out (durable once drained).
    var nextOffsets: [TopicPartition: Int64] = [:]
    let restoreOffsets: [TopicPartition: Int64]
    var assignedPartitions = Set<Int32>()
    var atEnd = Set<Int32>()
    var epoch = 0
    var messages = 0
    var validEvents = 0
    var firstMessageAt: Instant?
    var caughtUpAnnounced = false
    var lastTickAll: Instant?
    var lastWallTick = Date.distantPast
    var lastErrorLog = Date.distantPast

    init(pipeline: Pipeline, shards: [Shard], sinkInbox: HandOff<SinkItem>, state: PipelineState?) {
        self.pipeline = pipeline
        self.shards = shards
        self.sinkInbox = sinkInbox
        decoder = EventDecoder(contract: pipeline.rules.contract, slots: [], maxBytes: pipeline.config.maxEventBytes)
        record = decoder.makeRecord()
        lateness = pipeline.config.allowedLateness * Instant.microsPerSecond
        clocks = state?.partitionClocks ?? [:]
        maxEventTime = state.map { Instant(micros: $0.maxEventTime) } ?? .distantPast
        restoreOffsets = state?.topicOffsets ?? [:]
        nextOffsets = restoreOffsets
    }

    /// Rebalance: partitions assigned. Start where the saved state ends, if it covers them.
    func assigned(_ parts: [TopicPartition]) -> [TopicPartition: Int64] {
        var overrides: [TopicPartition: Int64] = [:]
        for p in parts {
            assignedPartitions.insert(p.partition)
            atEnd.remove(p.partition)
            if let o = restoreOffsets[p], nextOffsets[p] == o { overrides[p] = o }
        }
        return overrides
    }

    /// Rebalance: partitions about to be taken away. Finish everything in flight and commit first.
    func revoked(_ parts: [TopicPartition]) {
        pipeline.drain()
        do { try consumer?.commit() } catch { pipeline.logger.warning("commit on revoke: \(error)") }
        for p in parts {
            assignedPartitions.remove(p.partition)
            atEnd.remove(p.partition)
        }
    }

    func loop() {
        let n = shards.count
        let config = pipeline.config
        while !pipeline.stopping {
            // Backpressure: stop fetching while too much is in flight.
            pipeline.stopLock.lock()
            while pipeline.inFlight >= config.maxInFlight && !pipeline.stopRequested {
                _ = pipeline.stopLock.wait(until: Date().addingTimeInterval(0.05))
            }
            pipeline.stopLock.unlock()
            if pipeline.stopping { break }
            guard let consumer else { return }
            // The busier the pipeline, the longer a batch collects (up to 25 times the configured linger,
            // at most 50 ms): each batch costs a few thread hand-offs, so under load batches should be big.
            pipeline.stopLock.lock()
            let busy = pipeline.inFlight
            pipeline.stopLock.unlock()
            let linger = config.batchLingerMs * min(25, max(1, busy))
            let batch = consumer.poll(max: config.batchSize, timeoutMs: 100, lingerMs: Int32(min(linger, max(config.batchLingerMs, 50))))
            var work = [[ShardWork.Item]](repeating: [], count: n)
            var offsets: [TopicPartition: Int64] = [:]
            var dead: [EpochHeader.DeadLetter] = []
            var changed = Set<Int32>()
            for (i, m) in batch.messages.enumerated() {
                if m.errorCode == KafkaError.partitionEOF {
                    atEnd.insert(m.partition)
                    continue
                }
                if m.errorCode != 0 {
                    if Date().timeIntervalSince(lastErrorLog) > 5 {
                        pipeline.logger.warning("consumer: \(m.errorMessage)")
                        lastErrorLog = Date()
                    }
                    continue
                }
                messages += 1
                if firstMessageAt == nil { firstMessageAt = .now }
                atEnd.remove(m.partition)
                let tp = TopicPartition(config.inputTopic, m.partition)
                offsets[tp] = max(offsets[tp] ?? 0, m.offset + 1)
                if let failure = decoder.decode(m.value, into: &record) {
                    dead.append(EpochHeader.DeadLetter(index: Int32(i), failure: failure))
                    continue
                }
                guard case .instant(let at) = record[decoder.contract.occurredAtSlot],
                      case .string(let child) = record[decoder.contract.childIdSlot] else { continue }
                validEvents += 1
                if at > maxEventTime { maxEventTime = at }
                let clock = max(clocks[m.partition] ?? .distantPast, at - lateness)
                clocks[m.partition] = clock
                changed.insert(m.partition)
                work[childShard(child, of: n)].append(.event(index: Int32(i), partition: m.partition, clock: clock))
            }
            // Every shard learns where the partitions' clocks now are, so idle children's deadlines fire too.
            for p in changed.sorted() {
                guard let c = clocks[p] else { continue }
                for s in 0..<n { work[s].append(.tick(partition: p, clock: c)) }
            }
            let caughtUp = !assignedPartitions.isEmpty && assignedPartitions.isSubset(of: atEnd)
            if caughtUp {
                if !caughtUpAnnounced {
                    caughtUpAnnounced = true
                    pipeline.logger.info("caught up with every assigned partition (\(validEvents) events so far)")
                    pipeline.onCaughtUp?()
                    if pipeline.stopWhenCaughtUp { pipeline.requestStop() }
                }
                switch config.clock {
                case .event:
                    if maxEventTime > .distantPast, lastTickAll != maxEventTime {
                        for s in 0..<n { work[s].append(.tickAll(maxEventTime)) }
                        lastTickAll = maxEventTime
                    }
                case .wall:
                    if Date().timeIntervalSince(lastWallTick) >= 1 {
                        lastWallTick = Date()
                        let t = Instant.now - lateness
                        for s in 0..<n { work[s].append(.tickAll(t)) }
                        for p in assignedPartitions { clocks[p] = max(clocks[p] ?? .distantPast, t) }
                    }
                }
            }
            if offsets.isEmpty && work.allSatisfy(\.isEmpty) { continue }
            pipeline.stopLock.lock()
            pipeline.inFlight += 1
            pipeline.stopLock.unlock()
            sinkInbox.put(.header(EpochHeader(epoch: epoch, batch: batch, offsets: offsets, deadLetters: dead)))
            for s in 0..<n { shards[s].inbox.put(ShardWork(epoch: epoch, batch: batch, items: work[s])) }
            for (tp, o) in offsets { nextOffsets[tp] = o }
            epoch += 1
        }
    }
}

/// The sink stage: its own thread; the only writer of the audit log and the only caller of the producer's
/// `poll`, so delivery reports arrive here.
final class Sink: @unchecked Sendable {
    unowned let pipeline: Pipeline
    let audit: AuditLogWriter
    let shardCount: Int
    let logger: Logger
    var producer: KafkaProducer?
    var consumer: KafkaConsumer?
    var headers: [Int: EpochHeader] = [:]
    var results: [Int: [(shard: Int, alerts: [RenderedAlert], stats: EngineStats)]] = [:]
    var nextToFinalize = 0

    struct OpenEpoch {
        let epoch: Int
        let offsets: [TopicPartition: Int64]
        var pending: Int
        let alerts: [RenderedAlert]
    }
    var open: [OpenEpoch] = []

    struct Outgoing {
        let epoch: Int
        let topic: String
        let key: [UInt8]?
        let value: [UInt8]
        let headers: [(String, [UInt8])]
        var attempts: Int
    }
    var outgoing: [UInt64: Outgoing] = [:]
    var retries: [(due: Date, token: UInt64)] = []
    var nextToken: UInt64 = 1
    var summary = PipelineSummary()
    let done = DispatchSemaphore(value: 0)

    init(pipeline: Pipeline, audit: AuditLogWriter, shards: Int, logger: Logger) {
        self.pipeline = pipeline
        self.audit = audit
        shardCount = shards
        self.logger = logger
    }

    func start(inbox: HandOff<SinkItem>) {
        let t = Thread { [self] in
            loop(inbox)
            done.signal()
        }
        t.name = "vigil-sink"
        t.start()
    }

    func join() { done.wait() }

    func loop(_ inbox: HandOff<SinkItem>) {
        var stopping = false
        while true {
            // Take everything waiting without blocking; block only when there is nothing to do.
            var idle = true
            while let item = inbox.take(timeout: 0) {
                idle = false
                switch item {
                case .header(let h): headers[h.epoch] = h
                case .result(let e, let s, let alerts, let stats): results[e, default: []].append((s, alerts, stats))
                case .stop: stopping = true
                }
                if headers.count + results.count > 64 { break }
            }
            finalizeReady()
            producer?.poll(timeoutMs: 0)
            retryDue()
            completeEpochs()
            if stopping && open.isEmpty && headers.isEmpty && results.isEmpty && outgoing.isEmpty { return }
            guard idle else { continue }
            if !outgoing.isEmpty {
                // Deliveries outstanding: wait briefly for their reports.
                producer?.poll(timeoutMs: 1)
            } else if let item = inbox.take(timeout: 0.01) {
                inbox.putBack(item)
            }
        }
    }

    func finalizeReady() {
        while let header = headers[nextToFinalize], let parts = results[nextToFinalize], parts.count == shardCount {
            finalize(header, parts.sorted { $0.shard < $1.shard })
            headers[nextToFinalize] = nil
            results[nextToFinalize] = nil
            nextToFinalize += 1
        }
    }

    func finalize(_ header: EpochHeader, _ parts: [(shard: Int, alerts: [RenderedAlert], stats: EngineStats)]) {
        let config = pipeline.config
        let alerts = parts.flatMap(\.alerts)
        do {
            for a in alerts {
                if try audit.append(alertId: a.alertId, alertJSON: a.json) { summary.auditWritten += 1 } else { summary.auditSkippedDuplicates += 1 }
                summary.alerts += 1
                summary.alertsByRule[pipeline.rules.rules[a.alert.ruleIndex].id, default: 0] += 1
            }
            try audit.sync()
        } catch {
            pipeline.fail("\(error)")
            logger.critical("\(error): stopping; the epoch's offsets are not committed")
            return
        }
        var count = 0
        for a in alerts {
            send(Outgoing(epoch: header.epoch, topic: config.alertsTopic, key: Array(a.childId.utf8), value: Array(a.json.utf8), headers: [], attempts: 0))
            count += 1
        }
        for d in header.deadLetters {
            let m = header.batch.messages[Int(d.index)]
            var hdrs = m.headers()
            hdrs.append(("vigil.error.kind", Array(d.failure.kind.rawValue.utf8)))
            hdrs.append(("vigil.error.path", Array(d.failure.path.utf8)))
            hdrs.append(("vigil.error.reason", Array(d.failure.reason.utf8)))
            hdrs.append(("vigil.source.topic", Array(config.inputTopic.utf8)))
            hdrs.append(("vigil.source.partition", Array(String(m.partition).utf8)))
            hdrs.append(("vigil.source.offset", Array(String(m.offset).utf8)))
            send(Outgoing(epoch: header.epoch, topic: config.deadLetterTopic, key: m.key.map { Array($0) }, value: Array(m.value), headers: hdrs, attempts: 0))
            summary.deadLetters += 1
            summary.deadLettersByKind[d.failure.kind.rawValue, default: 0] += 1
            logger.warning("dead letter: \(config.inputTopic)[\(m.partition)]@\(m.offset): \(d.failure.kind.rawValue): \(d.failure)")
            count += 1
        }
        open.append(OpenEpoch(epoch: header.epoch, offsets: header.offsets, pending: count, alerts: alerts))
    }

    func send(_ o: Outgoing) {
        let token = nextToken
        nextToken += 1
        outgoing[token] = o
        do {
            try producer?.produce(topic: o.topic, key: o.key, value: o.value, headers: o.headers, token: token)
        } catch {
            logger.error("produce to \(o.topic) failed: \(error); retrying")
            scheduleRetry(token)
        }
    }

    func scheduleRetry(_ token: UInt64) {
        guard var o = outgoing[token] else { return }
        o.attempts += 1
        outgoing[token] = o
        let backoff = min(5.0, 0.1 * pow(2.0, Double(min(o.attempts, 10))))
        retries.append((Date().addingTimeInterval(backoff), token))
        summary.deliveryRetries += 1
    }

    func retryDue() {
        guard !retries.isEmpty else { return }
        let now = Date()
        let due = retries.filter { $0.due <= now }
        retries.removeAll { $0.due <= now }
        for (_, token) in due {
            // A retry goes out under a fresh token (a late report for the old one is then ignored).
            if let o = outgoing.removeValue(forKey: token) { send(o) }
        }
    }

    /// A delivery report (called inside `producer.poll`, on this thread).
    func delivered(_ token: UInt64, _ error: KafkaError?) {
        guard let o = outgoing[token] else { return }
        if let error {
            logger.warning("delivery to \(o.topic) failed (\(error.message)); retrying")
            scheduleRetry(token)
            return
        }
        outgoing[token] = nil
        if let i = open.firstIndex(where: { $0.epoch == o.epoch }) { open[i].pending -= 1 }
    }

    func completeEpochs() {
        while let first = open.first, first.pending == 0 {
            do { try consumer?.storeOffsets(first.offsets) } catch { logger.warning("storing offsets: \(error)") }
            if let cb = pipeline.onAlert { for a in first.alerts { cb(a.alert, a.json) } }
            if !first.offsets.isEmpty { summary.lastDurableAt = .now }
            open.removeFirst()
            pipeline.epochDone()
        }
    }
}

/// Which shard owns a child: a stable hash of its id, so the same child always lands on the same engine.
func childShard(_ id: String, of n: Int) -> Int {
    Int(stableHash(id) % UInt64(max(n, 1)))
}
