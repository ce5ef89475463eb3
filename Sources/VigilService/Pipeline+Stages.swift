import Foundation
import Synchronization
import Logging
import VigilContract
import VigilEngine
import VigilKafka
import VigilRules

/// The intake stage: runs on the thread that called `Pipeline.run`, the consumer's polling thread. It also
/// handles rebalances (they run inside `poll`): restoring assigned partitions, checkpointing revoked ones.
final class Intake: @unchecked Sendable {
    unowned let pipeline: Pipeline
    let shards: [Shard]
    let sinkInbox: HandOff<SinkItem>
    let restorer: ChangelogReader
    var consumer: KafkaConsumer?
    /// With --repartition: the stage feeding the processing topic, which must be caught up too.
    var upstream: Repartitioner?
    let decoder: EventDecoder
    var record: EventRecord
    let lateness: Int64
    let topic: String
    /// Per partition: the clock (largest valid event time read from it, minus the allowed lateness).
    var clocks: [Int32: Instant] = [:]
    var maxEventTime = Instant.distantPast
    /// Next offset per partition of everything handed out.
    var nextOffsets: [Int32: Int64] = [:]
    /// Next checkpoint number per partition.
    var nextCheckpoint: [Int32: Int64] = [:]
    /// Partitions with events since their last checkpoint.
    var dirty = Set<Int32>()
    /// Per partition, children restored from a checkpoint cut short: their events below this offset are in
    /// their state already and are skipped. Emptied as the partition reads past them.
    var skipBelow: [Int32: [String: Int64]] = [:]
    var skipUntil: [Int32: Int64] = [:]
    var assignedPartitions = Set<Int32>()
    var atEnd = Set<Int32>()
    var epoch = 0
    var messages = 0
    var validEvents = 0
    var restoredChildren = 0
    var skippedRestored = 0
    var firstMessageAt: Instant?
    var caughtUpAnnounced = false
    var lastTickAll: Instant?
    var lastWallTick = Date.distantPast
    var lastCheckpoint = Date()
    var lastErrorLog = Date.distantPast

    init(pipeline: Pipeline, shards: [Shard], sinkInbox: HandOff<SinkItem>, restorer: ChangelogReader) {
        self.pipeline = pipeline
        self.shards = shards
        self.sinkInbox = sinkInbox
        self.restorer = restorer
        decoder = EventDecoder(contract: pipeline.rules.contract, slots: [], maxBytes: pipeline.config.maxEventBytes)
        record = decoder.makeRecord()
        lateness = pipeline.config.allowedLateness * Instant.microsPerSecond
        topic = pipeline.config.processingTopic
    }

    // MARK: rebalancing

    /// Partitions assigned: restore each from its newest complete checkpoint and read on from the offset it
    /// records; a partition never checkpointed is read from its beginning, so its state is complete.
    func assigned(_ parts: [TopicPartition]) -> [TopicPartition: Int64] {
        let ps = parts.map(\.partition)
        var overrides: [TopicPartition: Int64] = [:]
        let started = Date()
        var restored: [Int32: Checkpoint.Restored] = [:]
        var t = ChangelogReader.Timings()
        do {
            (restored, t) = try restorer.restore(partitions: ps, rules: pipeline.rules)
        } catch {
            pipeline.fail("restoring state: \(error)")
            return [:]
        }
        var adopt = [[ChildState]](repeating: [], count: shards.count)
        for tp in parts {
            let p = tp.partition
            assignedPartitions.insert(p)
            atEnd.remove(p)
            dirty.remove(p)
            skipBelow[p] = nil
            skipUntil[p] = nil
            if let r = restored[p] {
                clocks[p] = r.offset == nil ? nil : r.clock
                if r.clock > maxEventTime { maxEventTime = r.clock }
                nextCheckpoint[p] = (r.checkpoint ?? -1) + 1
                nextOffsets[p] = r.offset
                overrides[tp] = r.offset ?? KafkaOffset.beginning.nativeValue
                for c in r.children { adopt[childShard(c.id, of: shards.count)].append(c) }
                restoredChildren += r.children.count
                if !r.skipBelow.isEmpty {
                    skipBelow[p] = r.skipBelow
                    skipUntil[p] = r.skipBelow.values.max()
                }
                if r.offset == nil { dirty.insert(p) }
            } else {
                clocks[p] = nil
                nextCheckpoint[p] = 0
                nextOffsets[p] = nil
                overrides[tp] = KafkaOffset.beginning.nativeValue
                dirty.insert(p)
            }
        }
        if adopt.contains(where: { !$0.isEmpty }) {
            dispatch(items: adopt.map { $0.isEmpty ? [] : [.adopt($0)] })
        }
        let summary = ps.sorted().map { p in
            guard let r = restored[p] else { return "\(p)@beginning" }
            let at = r.offset.map { "\(p)@\($0) (checkpoint \(r.checkpoint ?? 0)" } ?? "\(p)@beginning (no complete checkpoint"
            return at + ", \(r.children.count) children" + (r.skipBelow.isEmpty ? ")" : ", \(r.skipBelow.count) ahead of it)")
        }
        pipeline.logger.info("restored \(ps.count) partition\(ps.count == 1 ? "" : "s") in \(String(format: "%.2f", Date().timeIntervalSince(started))) s (\(t.records) changelog records: read \(String(format: "%.2f", t.read)) s, decoded \(String(format: "%.2f", t.decode)) s): \(summary.joined(separator: ", "))")
        return overrides
    }

    /// Partitions revoked: finish what is in flight, checkpoint them, then forget their children. A lost
    /// assignment (the session expired) is not checkpointed: another member may own and write them already.
    func revoked(_ parts: [TopicPartition], lost: Bool) {
        let ps = parts.map(\.partition).filter { assignedPartitions.contains($0) }
        guard !ps.isEmpty else { return }
        pipeline.drain()
        if !lost {
            if let request = checkpoint(ps.filter { dirty.contains($0) }) {
                if request.done.wait(timeout: .now() + 120) == .timedOut {
                    pipeline.logger.error("checkpoint of revoked partitions \(ps) not confirmed in 120 s; the next owner restores an earlier one")
                }
            }
        } else {
            pipeline.logger.warning("assignment lost for partitions \(ps): dropping their state without a checkpoint")
        }
        dispatch(items: shards.map { _ in [.drop(ps)] })
        pipeline.drain()
        for p in ps {
            assignedPartitions.remove(p)
            atEnd.remove(p)
            dirty.remove(p)
            clocks[p] = nil
            nextOffsets[p] = nil
            skipBelow[p] = nil
            skipUntil[p] = nil
        }
    }

    /// Sends a checkpoint barrier for `partitions` through every shard; nil when there is nothing to do.
    @discardableResult
    func checkpoint(_ partitions: [Int32]) -> CheckpointRequest? {
        let ps = partitions.filter { assignedPartitions.contains($0) }.sorted()
        guard !ps.isEmpty else { return nil }
        var parts: [CheckpointRequest.Part] = []
        for p in ps {
            // A partition read from its beginning with nothing in it yet checkpoints offset 0.
            let c = nextCheckpoint[p] ?? 0
            nextCheckpoint[p] = c + 1
            parts.append(.init(partition: p, checkpoint: c, offset: nextOffsets[p] ?? 0, clock: clocks[p] ?? .distantPast))
            dirty.remove(p)
        }
        let request = CheckpointRequest(parts: parts)
        dispatch(items: shards.map { _ in [.checkpoint(request)] }, checkpoint: request)
        lastCheckpoint = Date()
        return request
    }

    /// Hands an epoch with no messages (control items only) to the shards and the sink.
    func dispatch(items: [[ShardWork.Item]], checkpoint: CheckpointRequest? = nil) {
        let empty = KafkaMessageBatch.empty
        pipeline.stopLock.lock()
        pipeline.inFlight += 1
        pipeline.stopLock.unlock()
        sinkInbox.put(.header(EpochHeader(epoch: epoch, batch: empty, offsets: [:], deadLetters: [], checkpoint: checkpoint)))
        for s in 0..<shards.count { shards[s].inbox.put(ShardWork(epoch: epoch, batch: empty, items: items[s])) }
        epoch += 1
    }

    // MARK: the loop

    func loop() {
        let n = shards.count
        let config = pipeline.config
        while !pipeline.stopping {
            // Backpressure: stop fetching while too much is in flight.
            pipeline.stopLock.lock()
            while pipeline.inFlight >= config.maxInFlight && !pipeline.stopRequested {
                _ = pipeline.stopLock.wait(until: Date().addingTimeInterval(0.05))
            }
            let busy = pipeline.inFlight
            pipeline.stopLock.unlock()
            if pipeline.stopping { break }
            guard let consumer else { return }
            // The busier the pipeline, the longer a batch collects (up to 25 times the configured linger,
            // at most 50 ms): each batch costs a few thread hand-offs, so under load batches should be big.
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
                guard assignedPartitions.contains(m.partition) else { continue }
                messages += 1
                if firstMessageAt == nil { firstMessageAt = .now }
                atEnd.remove(m.partition)
                dirty.insert(m.partition)
                offsets[TopicPartition(topic, m.partition)] = m.offset + 1
                nextOffsets[m.partition] = m.offset + 1
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
                if let until = skipUntil[m.partition] {
                    if m.offset >= until {
                        skipBelow[m.partition] = nil
                        skipUntil[m.partition] = nil
                    } else if let below = skipBelow[m.partition]?[child], m.offset < below {
                        // Already in this child's restored state (written by a checkpoint a crash cut short).
                        skippedRestored += 1
                        continue
                    }
                }
                work[childShard(child, of: n)].append(.event(index: Int32(i), partition: m.partition, clock: clock))
            }
            // Every shard learns where the partitions' clocks now are, so idle children's deadlines fire too.
            for p in changed.sorted() {
                guard let c = clocks[p] else { continue }
                for s in 0..<n { work[s].append(.tick(partition: p, clock: c)) }
            }
            let caughtUp = !assignedPartitions.isEmpty && assignedPartitions.isSubset(of: atEnd)
                && (upstream?.upstreamCaughtUp.load(ordering: .acquiring) ?? true)
            if caughtUp {
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
            if !(offsets.isEmpty && work.allSatisfy(\.isEmpty)) {
                pipeline.stopLock.lock()
                pipeline.inFlight += 1
                pipeline.stopLock.unlock()
                sinkInbox.put(.header(EpochHeader(epoch: epoch, batch: batch, offsets: offsets, deadLetters: dead, checkpoint: nil)))
                for s in 0..<n { shards[s].inbox.put(ShardWork(epoch: epoch, batch: batch, items: work[s])) }
                epoch += 1
            }
            if Date().timeIntervalSince(lastCheckpoint) * 1000 >= Double(config.checkpointIntervalMs) {
                checkpoint(Array(dirty))
                lastCheckpoint = Date()
            }
            if caughtUp && !caughtUpAnnounced {
                caughtUpAnnounced = true
                pipeline.logger.info("caught up with every assigned partition (\(validEvents) events so far)")
                pipeline.onCaughtUp?()
                if pipeline.stopWhenCaughtUp { pipeline.requestStop() }
            }
        }
    }
}

extension KafkaOffset {
    var nativeValue: Int64 {
        switch self {
        case .beginning: return -2
        case .end: return -1
        case .stored: return -1000
        case .at(let o): return o
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
    var results: [Int: [ShardResult]] = [:]
    var nextToFinalize = 0
    let rulesDigest: String
    typealias ShardResult = (shard: Int, alerts: [RenderedAlert], changes: [(partition: Int32, record: Checkpoint.Record)], stats: EngineStats)

    struct OpenEpoch {
        let epoch: Int
        var pending: Int
        let alerts: [RenderedAlert]
        /// A checkpoint waits here until every earlier epoch is durable; then its child records are produced,
        /// and once they are all acknowledged, its markers.
        var checkpoint: (request: CheckpointRequest, records: [(partition: Int32, record: Checkpoint.Record)])?
        var checkpointPhase = CheckpointPhase.waiting
    }
    var open: [OpenEpoch] = []
    enum CheckpointPhase { case waiting, children, markers }

    struct Outgoing {
        let epoch: Int
        let topic: String
        let partition: Int32?
        let key: [UInt8]?
        let value: [UInt8]
        let headers: [(String, [UInt8])]
        var attempts: Int
    }
    var outgoing: [UInt64: Outgoing] = [:]
    var retries: [(due: Date, token: UInt64)] = []
    var nextToken: UInt64 = 1
    var summary = PipelineSummary()
    var lastKeyingWarning = Date.distantPast
    let done = DispatchSemaphore(value: 0)

    init(pipeline: Pipeline, audit: AuditLogWriter, shards: Int, logger: Logger) {
        self.pipeline = pipeline
        self.audit = audit
        shardCount = shards
        self.logger = logger
        rulesDigest = Checkpoint.rulesDigest(EngineSnapshot.versions(of: pipeline.rules))
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
                case .result(let e, let s, let alerts, let changes, let stats): results[e, default: []].append((s, alerts, changes, stats))
                case .failed(let reason):
                    pipeline.fail(reason)
                    logger.critical("\(reason): stopping; nothing after the last checkpoint is acknowledged")
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

    func finalize(_ header: EpochHeader, _ parts: [ShardResult]) {
        let config = pipeline.config
        let alerts = parts.flatMap(\.alerts)
        let moved = parts.reduce(0) { $0 + $1.stats.domainChanges }
        if moved > 0 {
            summary.domainChanges += moved
            if Date().timeIntervalSince(lastKeyingWarning) >= 60 {
                lastKeyingWarning = Date()
                logger.warning("\(summary.domainChanges) events so far for children whose previous event came from another partition of \(config.processingTopic): the input is not keyed by child id, so a child's state and deadlines can split across instances; run with --repartition")
            }
        }
        do {
            for a in alerts {
                if try audit.append(alertId: a.alertId, alertJSON: a.json) { summary.auditWritten += 1 } else { summary.auditSkippedDuplicates += 1 }
                summary.alerts += 1
                if a.alert.status == .withdrawn { summary.withdrawn += 1 }
                summary.alertsByRule[pipeline.rules.rules[a.alert.ruleIndex].id, default: 0] += 1
            }
            try audit.sync()
        } catch {
            pipeline.fail("\(error)")
            logger.critical("\(error): stopping; nothing after the last checkpoint is acknowledged")
            return
        }
        var count = 0
        for a in alerts {
            send(Outgoing(epoch: header.epoch, topic: config.alertsTopic, partition: nil, key: Array(a.childId.utf8),
                          value: Array(a.json.utf8), headers: [], attempts: 0))
            count += 1
        }
        for d in header.deadLetters {
            let m = header.batch.messages[Int(d.index)]
            var hdrs = m.headers()
            hdrs.append(("vigil.error.kind", Array(d.failure.kind.rawValue.utf8)))
            hdrs.append(("vigil.error.path", Array(d.failure.path.utf8)))
            hdrs.append(("vigil.error.reason", Array(d.failure.reason.utf8)))
            hdrs.append(("vigil.source.topic", Array(config.processingTopic.utf8)))
            hdrs.append(("vigil.source.partition", Array(String(m.partition).utf8)))
            hdrs.append(("vigil.source.offset", Array(String(m.offset).utf8)))
            send(Outgoing(epoch: header.epoch, topic: config.deadLetterTopic, partition: nil, key: m.key.map { Array($0) },
                          value: Array(m.value), headers: hdrs, attempts: 0))
            summary.deadLetters += 1
            summary.deadLettersByKind[d.failure.kind.rawValue, default: 0] += 1
            logger.warning("dead letter: \(config.processingTopic)[\(m.partition)]@\(m.offset): \(d.failure.kind.rawValue): \(d.failure)")
            count += 1
        }
        var epoch = OpenEpoch(epoch: header.epoch, pending: count, alerts: alerts)
        if let request = header.checkpoint {
            epoch.checkpoint = (request, parts.flatMap(\.changes))
        }
        open.append(epoch)
    }

    func sendState(epoch: Int, partition: Int32, _ r: Checkpoint.Record) {
        send(Outgoing(epoch: epoch, topic: pipeline.config.changelogTopic, partition: partition, key: Array(r.key.utf8),
                      value: r.value, headers: [], attempts: 0))
    }

    func send(_ o: Outgoing) {
        let token = nextToken
        nextToken += 1
        outgoing[token] = o
        do {
            try producer?.produce(topic: o.topic, partition: o.partition, key: o.key, value: o.value, headers: o.headers, token: token)
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
        while let first = open.first {
            // Every earlier epoch is durable: a waiting checkpoint may now write its children's states; once they
            // are acknowledged, its markers.
            if let cp = first.checkpoint {
                switch first.checkpointPhase {
                case .waiting:
                    open[0].checkpointPhase = .children
                    open[0].pending += cp.records.count
                    summary.stateRecords += cp.records.count
                    for (p, r) in cp.records { sendState(epoch: first.epoch, partition: p, r) }
                    continue
                case .children:
                    guard first.pending == 0 else { return }
                    open[0].checkpointPhase = .markers
                    open[0].pending += cp.request.parts.count
                    for part in cp.request.parts {
                        sendState(epoch: first.epoch, partition: part.partition,
                                  Checkpoint.marker(partition: part.partition, checkpoint: part.checkpoint, offset: part.offset,
                                                    clock: part.clock, rulesDigest: rulesDigest))
                    }
                    continue
                case .markers:
                    break
                }
            }
            guard first.pending == 0 else { return }
            if let cb = pipeline.onAlert { for a in first.alerts { cb(a.alert, a.json) } }
            if let cp = first.checkpoint {
                // Committed offsets are for monitoring (lag); restores use the checkpoint.
                let offsets = Dictionary(cp.request.parts.map { (TopicPartition(pipeline.config.processingTopic, $0.partition), $0.offset) },
                                         uniquingKeysWith: { a, _ in a })
                do { try consumer?.storeOffsets(offsets.filter { $0.value > 0 }) } catch { logger.warning("storing offsets: \(error)") }
                summary.checkpoints += cp.request.parts.count
                cp.request.done.signal()
            }
            summary.lastDurableAt = .now
            open.removeFirst()
            pipeline.epochDone()
        }
    }
}

/// Reads changelog partitions back, for restores.
final class ChangelogReader: @unchecked Sendable {
    let config: KafkaConfig
    let topic: String
    let logger: Logger

    init(config: KafkaConfig, topic: String, logger: Logger) {
        self.config = config
        self.topic = topic
        self.logger = logger
    }

    /// Of a restore: changelog records read, seconds reading them, seconds decoding them.
    struct Timings {
        var records = 0
        var read = 0.0
        var decode = 0.0
    }

    /// The newest complete checkpoint of each partition that has one, and what reading them took.
    func restore(partitions: [Int32], rules: CompiledRuleSet) throws -> ([Int32: Checkpoint.Restored], Timings) {
        guard !partitions.isEmpty else { return ([:], Timings()) }
        let started = Date()
        var c = config
        c.set("group.id", "vigil-restore-\(UUID().uuidString)")
        c.set("enable.auto.commit", "false")
        c.set("enable.partition.eof", "true")
        c.set("fetch.wait.max.ms", "10")
        let consumer = try KafkaConsumer(config: c, logger: logger)
        defer { consumer.close() }
        try consumer.assign(partitions.map { (TopicPartition(topic, $0), KafkaOffset.beginning) })
        var records: [Int32: [Checkpoint.Record]] = [:]
        var ended = Set<Int32>()
        var delay = 0.1
        var lastProgress = Date()
        while ended.count < partitions.count {
            let batch = consumer.poll(max: 1000, timeoutMs: 200)
            for m in batch.messages {
                if m.errorCode == KafkaError.partitionEOF { ended.insert(m.partition); continue }
                if m.errorCode != 0 {
                    logger.warning("reading \(topic): \(m.errorMessage); retrying")
                    Thread.sleep(forTimeInterval: delay)
                    delay = min(delay * 2, 5)
                    continue
                }
                lastProgress = Date()
                guard let key = m.key else { continue }
                records[m.partition, default: []].append(Checkpoint.Record(key: String(decoding: key, as: UTF8.self), value: Array(m.value)))
            }
            if batch.messages.isEmpty && Date().timeIntervalSince(lastProgress) > 60 {
                throw Pipeline.RunError(message: "no progress reading \(topic) for 60 s")
            }
        }
        let readDone = Date()
        let digest = Checkpoint.rulesDigest(EngineSnapshot.versions(of: rules))
        // Partitions decode independently: spread them over the cores (this runs on the polling thread,
        // inside a rebalance, never on the cooperative pool).
        let results = Mutex<[Int32: Result<Checkpoint.Restored?, Checkpoint.RestoreError>]>([:])
        let list = partitions
        let input = records
        DispatchQueue.concurrentPerform(iterations: list.count) { i in
            let p = list[i]
            let r: Result<Checkpoint.Restored?, Checkpoint.RestoreError>
            do throws(Checkpoint.RestoreError) {
                r = .success(try Checkpoint.restore(partition: p, records: input[p] ?? [], rulesDigest: digest))
            } catch {
                r = .failure(error)
            }
            results.withLock { $0[p] = r }
        }
        var out: [Int32: Checkpoint.Restored] = [:]
        for (p, r) in results.withLock({ $0 }) {
            switch r {
            case .success(let restored): if let restored { out[p] = restored }
            case .failure(let error): throw Pipeline.RunError(message: error.message)
            }
        }
        return (out, Timings(records: input.values.reduce(0) { $0 + $1.count }, read: readDone.timeIntervalSince(started),
                             decode: Date().timeIntervalSince(readDone)))
    }
}

/// Which shard owns a child: a stable hash of its id, so the same child always lands on the same engine.
func childShard(_ id: String, of n: Int) -> Int {
    Int(stableHash(id) % UInt64(max(n, 1)))
}
