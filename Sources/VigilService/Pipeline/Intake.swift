import Foundation
import Logging
import VigilContract
import VigilEngine
import VigilRules

/// The intake stage: the source's polling thread. It reads batches, validates each message against the
/// contract, keeps the partitions' clocks and positions (`PartitionTracker`), hands every shard its slice of
/// each batch and the sink its plan, and handles rebalances (they run inside `poll`): restoring assigned
/// partitions, checkpointing revoked ones.
final class Intake: PipelineStage, @unchecked Sendable {
    let name = "vigil-intake"
    private let config: PipelineConfig
    private let source: EventSource
    private let state: StateStore
    /// The rule pack in force from the next epoch on (a reload switches it at an epoch barrier).
    private var rules: CompiledRuleSet
    private var manifest: PackManifest
    private let reloads: ReloadMailbox
    private let onReload: (ReloadOutcome) -> Void
    private let shards: [Shard]
    private let sink: HandOff<SinkItem>
    private let coordinator: Coordinator
    private let counters: PipelineCounters
    private let metrics: PipelineMetrics?
    private let status: PipelineStatus
    private var lastLagUpdate = Instant.distantPast
    private let clock: PipelineClock
    private let logger: Logger
    private let upstreamCaughtUp: () -> Bool
    private let onCaughtUp: () -> Void
    /// Decodes every message once, capturing what the shards' engines read (`Engine.decodedSlots`).
    private var decoder: EventDecoder
    private let plausibility: TimePlausibility
    private var record: EventRecord
    /// Used by intake's thread alone, three or four times a message: not checked for overlapping access at run
    /// time (as `Shard.engine`).
    @exclusivity(unchecked) private var tracker: PartitionTracker
    private var epoch = 0
    private var caughtUpAnnounced = false
    private var lastCheckpoint: Instant
    private var errorLog = Throttle(seconds: 5)
    private var keyingWarning = Throttle(seconds: 60)
    private var limitsWarning = Throttle(seconds: 60)
    private var toPause: [Int32] = []
    private let closeNow = DispatchSemaphore(value: 0)
    private var thread: StageThread?

    init(config: PipelineConfig, io: PipelineIO, rules: CompiledRuleSet, reloads: ReloadMailbox, shards: [Shard], sink: HandOff<SinkItem>,
         coordinator: Coordinator, counters: PipelineCounters, metrics: PipelineMetrics?, status: PipelineStatus, logger: Logger,
         onReload: @escaping (ReloadOutcome) -> Void, onCaughtUp: @escaping () -> Void) {
        self.config = config
        source = io.source
        state = io.state
        self.rules = rules
        manifest = PackManifest(rules)
        self.reloads = reloads
        self.onReload = onReload
        self.shards = shards
        self.sink = sink
        self.coordinator = coordinator
        self.counters = counters
        self.metrics = metrics
        self.status = status
        clock = io.clock
        self.logger = logger
        upstreamCaughtUp = io.upstreamCaughtUp
        self.onCaughtUp = onCaughtUp
        decoder = EventDecoder(contract: rules.contract, slots: Engine.decodedSlots(rules), maxBytes: config.maxEventBytes)
        plausibility = TimePlausibility(maxSkewSeconds: config.maxClockSkew)
        record = decoder.makeRecord()
        tracker = PartitionTracker(lateness: Int64(config.allowedLateness) * Instant.microsPerSecond, mode: config.clock)
        lastCheckpoint = io.clock.now()
    }

    func start() {
        thread = StageThread(name: name) { [self] in
            do throws(PipelineError) {
                try source.start(RebalanceHandlers(assigned: { [weak self] in self?.assigned($0) ?? [:] },
                                                   revoked: { [weak self] in self?.revoked($0, lost: $1) }))
                // The pack this run starts with, on the record before any alert raised under it.
                let start = RulePackNote(status: .accepted, manifest: manifest, change: nil, previous: nil, loadedBy: "startup", reason: nil, at: clock.now())
                dispatch(shards.map { _ in [] }) { EpochPlan(epoch: $0, notes: [start.note], rulesDigest: self.manifest.digest) }
                logger.info("consuming \(source.topic) as group \(config.group) with \(shards.count) shard\(shards.count == 1 ? "" : "s"); alerts to \(config.alertsTopic), dead letters to \(config.deadLetterTopic), state to \(config.changelogTopic), clock \(config.clock.rawValue)")
                loop()
            } catch {
                coordinator.fail(error)
            }
            // Leave (revoking and checkpointing every partition) when the group stops this stage, so that the
            // stages started after it have stopped first. A crashed process leaves nothing behind.
            closeNow.wait()
            if !coordinator.isCrashed { source.close() }
        }
    }

    func stop() { closeNow.signal() }
    func join() { thread?.join() }

    // MARK: rebalancing

    /// Partitions assigned: restore each from its newest complete checkpoint and read on from the offset it
    /// records; a partition never checkpointed is read from its beginning, so its state is complete.
    private func assigned(_ ps: [Int32]) -> [Int32: StartOffset] {
        let started = clock.now()
        status.restoring.store(true, ordering: .relaxed)
        status.lagMessages.store(.max, ordering: .relaxed)
        defer {
            status.restoring.store(false, ordering: .relaxed)
            status.joined.store(true, ordering: .relaxed)
            metrics?.rebalances.increment()
        }
        let restored: [Int32: Checkpoint.Restored]
        let t: RestoreTimings
        do {
            (restored, t) = try state.restore(partitions: ps, rules: rules)
        } catch {
            coordinator.fail(error)
            return [:]
        }
        var starts: [Int32: StartOffset] = [:]
        var adopt = [[ChildState]](repeating: [], count: shards.count)
        var carried = [[String: PackManifest]](repeating: [:], count: shards.count)
        for p in ps {
            let r = restored[p]
            starts[p] = tracker.assign(p, restored: r.map { .init(checkpoint: $0.checkpoint, offset: $0.offset, clock: $0.clock, skipBelow: $0.skipBelow) })
            for c in r?.children ?? [] { adopt[childShard(c.id, of: shards.count)].append(c) }
            for (id, m) in r?.carried ?? [:] { carried[childShard(id, of: shards.count)][id] = m }
            // Carried to this pack, or of an older layout: written again at the next checkpoint, input or not.
            if r?.carried.isEmpty == false || r?.rewrite == true { tracker.markDirty([p]) }
            counters.restoredChildren.add(r?.children.count ?? 0, ordering: .relaxed)
        }
        let migrating = carried.reduce(0) { $0 + $1.count }
        if migrating > 0 {
            logger.info("\(migrating) restored children were checkpointed under another rule pack: carrying them to \(manifest.digest)",
                        metadata: ["children": "\(migrating)", "rules_digest": "\(manifest.digest)"])
        }
        if adopt.contains(where: { !$0.isEmpty }) {
            dispatch(adopt.indices.map { adopt[$0].isEmpty ? [] : [.adopt(adopt[$0], carried: carried[$0])] })
        }
        for p in ps.sorted() {
            let start: Int64
            if case .at(let o) = starts[p] { start = o } else { start = 0 }
            checkGap(p, from: start)
        }
        let summary = ps.sorted().map { restored[$0]?.summary(partition: $0) ?? "\($0)@beginning" }
        let seconds = Double(clock.now().micros - started.micros) / 1e6
        metrics?.restoreSeconds.recordMicroseconds(clock.now().micros - started.micros)
        let children = restored.values.reduce(0) { $0 + $1.children.count }
        metrics?.restoredChildren.increment(by: children)
        lastLagUpdate = .distantPast
        logger.info("restored \(ps.count) partition\(ps.count == 1 ? "" : "s") in \(String(format: "%.2f", seconds)) s (\(t.records) changelog records: read \(String(format: "%.2f", t.read)) s, decoded \(String(format: "%.2f", t.decode)) s): \(summary.joined(separator: ", "))", metadata: [
            "partitions": "\(ps.sorted().map(String.init).joined(separator: ","))", "seconds": "\(String(format: "%.2f", seconds))",
            "children": "\(children)",
        ])
        return starts
    }

    /// Input deleted before it was read: the partition's low watermark is past where it is to be read from.
    /// Logged at critical, counted, written to the audit log, then the partition stops or reads on
    /// (`on-input-gap`).
    private func checkGap(_ p: Int32, from expected: Int64) {
        guard tracker.partitions[p]?.stopped == false, let low = source.lowWatermark(p), low > expected else { return }
        let gap = InputGap(topic: source.topic, partition: p, from: expected, to: low, stop: config.onInputGap == .stop, detectedAt: clock.now())
        counters.inputGaps.add(1, ordering: .relaxed)
        metrics?.inputGaps.increment()
        logger.critical("\(gap.logLine)", metadata: ["partition": "\(p)", "from_offset": "\(expected)", "to_offset": "\(low)"])
        tracker.gap(p, stop: gap.stop, resumeAt: low)
        // Paused from the loop: inside a rebalance the partition is not assigned yet.
        if gap.stop { toPause.append(p) }
        let note = gap.note
        dispatch(shards.map { _ in [] }) { EpochPlan(epoch: $0, notes: [note]) }
    }

    /// Partitions revoked: finish what is in flight, checkpoint them, then forget their children. A lost
    /// assignment (the session expired) is not checkpointed: another member may own and write them already.
    /// Nor is anything after a fatal error: what is not durable by now never will be.
    private func revoked(_ ps: [Int32], lost: Bool) {
        let owned = tracker.owned(ps)
        guard !owned.isEmpty else { return }
        let drained = coordinator.drain()
        if lost {
            logger.warning("assignment lost for partitions \(owned): dropping their state without a checkpoint",
                           metadata: ["partitions": "\(owned.map(String.init).joined(separator: ","))"])
        } else if drained, let e = checkpoint(owned.filter { tracker.dirty.contains($0) }) {
            if !coordinator.waitForDurable(epoch: e, timeout: 120) && !coordinator.isAborting {
                logger.error("checkpoint of revoked partitions \(owned) not confirmed in 120 s; the next owner restores an earlier one")
            }
        }
        dispatch(shards.map { _ in [.drop(owned)] })
        coordinator.drain()
        tracker.forget(owned)
        metrics?.unassigned(owned)
    }

    /// Sends a checkpoint barrier for `partitions` through every shard; returns its epoch, or nil when there is
    /// nothing to checkpoint.
    @discardableResult
    private func checkpoint(_ partitions: [Int32]) -> Int? {
        let parts = tracker.checkpoint(partitions)
        lastCheckpoint = clock.now()
        guard !parts.isEmpty else { return nil }
        let digest = manifest.digest
        return dispatch(shards.map { _ in [.checkpoint(parts)] }, plan: { EpochPlan(epoch: $0, checkpoint: parts, rulesDigest: digest) })
    }

    // MARK: rule packs

    /// A reload asked for since the last epoch: switch every shard to the new pack at this barrier (nothing
    /// before it is evaluated under the new pack, nothing after it under the old), or record the refusal.
    private func takeReloads() {
        for request in reloads.take() {
            let previous = manifest.digest
            switch request {
            case .refused(let reason, let loadedBy):
                logger.error("rule pack refused (\(loadedBy)): \(reason); still running \(previous)",
                             metadata: ["loaded_by": "\(loadedBy)", "rules_digest": "\(previous)"])
                metrics?.reloads(result: "refused").increment()
                let note = RulePackNote(status: .refused, manifest: nil, change: nil, previous: previous, loadedBy: loadedBy, reason: reason, at: clock.now())
                dispatch(shards.map { _ in [] }) { EpochPlan(epoch: $0, notes: [note.note]) }
                onReload(ReloadOutcome(result: .refused, digest: previous, previous: previous, loadedBy: loadedBy, classes: [:], reason: reason))
            case .accepted(let newRules, let loadedBy):
                let new = PackManifest(newRules)
                let change = PackChange(from: manifest, to: new)
                let classes = Dictionary(grouping: change.rules, by: { $0.change.rawValue }).mapValues(\.count)
                guard !change.isIdentity else {
                    logger.info("rule pack reloaded (\(loadedBy)): unchanged, \(previous)")
                    metrics?.reloads(result: "unchanged").increment()
                    onReload(ReloadOutcome(result: .unchanged, digest: previous, previous: previous, loadedBy: loadedBy, classes: classes, reason: nil))
                    continue
                }
                let note = RulePackNote(status: .accepted, manifest: new, change: change, previous: previous, loadedBy: loadedBy, reason: nil, at: clock.now())
                let s = RuleSwitch(rules: newRules, change: change, pack: StatePack(newRules))
                dispatch(shards.map { _ in [.switchRules(s)] }) { EpochPlan(epoch: $0, notes: [note.note], rulesDigest: new.digest) }
                rules = newRules
                manifest = new
                decoder = EventDecoder(contract: newRules.contract, slots: Engine.decodedSlots(newRules), maxBytes: config.maxEventBytes)
                record = decoder.makeRecord()
                // The children carried across are changed: the next checkpoint writes them under the new pack
                // (a restart then restores them as they are instead of carrying them again).
                tracker.markDirty()
                let summary = RuleChange.allCases.compactMap { c in classes[c.rawValue].map { "\($0) \(c.rawValue)" } }.joined(separator: ", ")
                logger.notice("rule pack switched (\(loadedBy)): \(previous) -> \(new.digest) (\(summary))",
                              metadata: ["loaded_by": "\(loadedBy)", "rules_digest": "\(new.digest)", "previous": "\(previous)"])
                metrics?.reloads(result: "switched").increment()
                metrics?.rulePack(digest: new.digest, previous: previous, rules: newRules)
                onReload(ReloadOutcome(result: .switched, digest: new.digest, previous: previous, loadedBy: loadedBy, classes: classes, reason: nil))
            }
        }
    }

    /// Hands an epoch to the sink (its plan) and the shards (their items); returns its number.
    @discardableResult
    private func dispatch(_ items: [[ShardWork.Item]], events: [PackedEvents] = [], hashes: [[UInt64]] = [], batch: InputBatch = .empty,
                          plan: (Int) -> EpochPlan = { EpochPlan(epoch: $0) }) -> Int {
        let e = epoch
        coordinator.epochStarted()
        var p = plan(e)
        if metrics != nil { p.readAt = clock.now() }
        sink.put(.plan(p))
        for (s, shard) in shards.enumerated() {
            shard.submit(ShardWork(epoch: e, batch: batch, items: items[s], events: s < events.count ? events[s] : PackedEvents(),
                                   childHashes: s < hashes.count ? hashes[s] : []))
        }
        epoch += 1
        return e
    }

    // MARK: the loop

    private func loop() {
        let n = shards.count
        let topic = source.topic
        while true {
            status.intakeBeat.store(clock.now().micros, ordering: .relaxed)
            // Backpressure: stop fetching while too much is in flight.
            status.backpressured.store(true, ordering: .relaxed)
            guard let busy = coordinator.waitForCapacity(limit: config.maxInFlight) else { return }
            status.backpressured.store(false, ordering: .relaxed)
            takeReloads()
            // The busier the pipeline, the longer a batch collects (up to 25 times the configured linger,
            // at most 50 ms): each batch costs a few thread hand-offs, so under load batches should be big.
            let linger = min(config.batchLingerMs * min(25, max(1, busy)), max(config.batchLingerMs, 50))
            if !toPause.isEmpty {
                source.pause(toPause)
                toPause = []
            }
            let batch = source.poll(max: config.batchSize, timeoutMs: 100, lingerMs: Int32(linger))
            var work = [[ShardWork.Item]](repeating: [], count: n)
            var events = [PackedEvents](repeating: PackedEvents(), count: n)
            var hashes = [[UInt64]](repeating: [], count: n)
            // Each shard's share sized once for the batch (an event packs into fewer bytes than its JSON), not
            // grown and copied several times over while it fills.
            let messages = batch.messages.count
            if messages > 0 {
                var jsonBytes = 0
                for m in batch.messages { jsonBytes += m.value.count }
                let share = messages / n + messages / (4 * n) + 16
                for s in 0..<n {
                    work[s].reserveCapacity(share)
                    hashes[s].reserveCapacity(share)
                    events[s].reserveCapacity(bytes: jsonBytes / n + jsonBytes / (4 * n))
                }
            }
            var dead: [DeadLetter] = []
            var read = 0, valid = 0, skipped = 0
            let now = clock.now()
            // The decoder and its record are locals for the batch: read through this class, the decoder was
            // copied (its references retained and released) for every message.
            let decoder = self.decoder
            var record = EventRecord(slotCount: 0)
            swap(&record, &self.record)
            defer { swap(&record, &self.record) }
            for (i, m) in batch.messages.enumerated() {
                if let notice = m.notice {
                    switch notice {
                    case .partitionEnd: tracker.reachedEnd(m.partition)
                    case .error(let message): warnRarely("consumer: \(message)")
                    }
                    continue
                }
                if let expected = tracker.expectedOffset(m.partition), m.offset > expected { checkGap(m.partition, from: expected) }
                guard tracker.read(m.partition, offset: m.offset) else { continue }
                read += 1
                if let failure = decoder.decode(m.value, into: &record) ?? plausibility.check(record, contract: decoder.contract, now: now) {
                    let d = DeadLetter(sourceTopic: topic, partition: m.partition, offset: m.offset, key: m.key, value: m.value,
                                       originalHeaders: batch.headers(at: i), failure: failure, maxBytes: config.deadLetterMaxBytes)
                    logger.warning("dead letter: \(d.logDescription)", metadata: [
                        "topic": "\(topic)", "partition": "\(m.partition)", "offset": "\(m.offset)", "reason": "\(d.failure.kind.rawValue)",
                    ])
                    metrics?.deadLetters(reason: d.failure.kind.rawValue).increment()
                    dead.append(d)
                    continue
                }
                guard case .instant(let at) = record[decoder.contract.occurredAtSlot],
                      case .string(let child) = record[decoder.contract.childIdSlot] else { continue }
                valid += 1
                switch tracker.event(m.partition, offset: m.offset, child: child, at: at) {
                case .skip: skipped += 1
                case .process(let clock):
                    let hash = stableHash(child)
                    let s = childShard(hash: hash, of: n)
                    work[s].append(.event(index: Int32(i), partition: m.partition, clock: clock))
                    events[s].append(record)
                    hashes[s].append(hash)
                }
            }
            if read > 0 { count(read: read, valid: valid, skipped: skipped) }
            if !dead.isEmpty { metrics?.events[.deadLetter]?.increment(by: dead.count) }
            // Every shard learns where the partitions' clocks now are, so idle children's deadlines fire too.
            for (p, c) in tracker.takeMovedClocks() {
                for s in 0..<n { work[s].append(.tick(partition: p, clock: c)) }
            }
            let caughtUp = tracker.caughtUp && upstreamCaughtUp()
            updateLag()
            if caughtUp, let t = tracker.catchUpTick(wall: clock.now()) {
                for s in 0..<n { work[s].append(.tickAll(t)) }
            }
            if read > 0 || work.contains(where: { !$0.isEmpty }) {
                dispatch(work, events: events, hashes: hashes, batch: batch) { EpochPlan(epoch: $0, deadLetters: dead) }
            }
            if clock.now().micros - lastCheckpoint.micros >= Int64(config.checkpointIntervalMs) * 1000 {
                checkpoint(tracker.dirty)
            }
            warnAboutKeying()
            warnAboutLimits()
            if caughtUp && !caughtUpAnnounced {
                caughtUpAnnounced = true
                let events = counters.events.load(ordering: .relaxed)
                logger.info("caught up with every assigned partition (\(events) events so far)", metadata: ["events": "\(events)"])
                onCaughtUp()
            }
            if coordinator.isStopping { return }
        }
    }

    /// At most once a second: each assigned partition's lag (messages behind its end, as the source last knew
    /// it; none at its end) and how far its clock trails the wall clock; their sum for readiness. A partition
    /// whose end the source does not know yet (no fetch answered) has no lag value, and makes the sum unknown
    /// (not ready).
    private func updateLag() {
        let now = clock.now()
        guard now.micros - lastLagUpdate.micros >= Instant.microsPerSecond else { return }
        lastLagUpdate = now
        var total: Int64 = 0
        for (p, s) in tracker.partitions {
            var lag: Int64 = 0
            if !s.atEnd {
                guard let high = source.highWatermark(p) else { total = .max; continue }
                lag = max(0, high - (s.nextOffset ?? 0))
            }
            if total != .max { total += lag }
            metrics?.lag(partition: p, messages: lag, clock: s.clock, now: now)
        }
        status.lagMessages.store(total, ordering: .relaxed)
    }

    private func count(read: Int, valid: Int, skipped: Int) {
        if let metrics {
            metrics.messages.increment(by: read)
            metrics.events[.evaluated]?.increment(by: valid - skipped)
            if skipped > 0 { metrics.events[.skippedRestored]?.increment(by: skipped) }
        }
        counters.messages.add(read, ordering: .relaxed)
        counters.events.add(valid, ordering: .relaxed)
        counters.skippedRestored.add(skipped, ordering: .relaxed)
        _ = counters.firstMessageAt.compareExchange(expected: 0, desired: clock.now().micros, ordering: .relaxed)
    }

    /// At most one every 5 s: the source retries by itself (a broker outage repeats these).
    private func warnRarely(_ message: String) {
        if errorLog.allow(clock.now()) { logger.warning("\(message)") }
    }

    /// At most once a minute: per-child bounds reached (entries dropped or deadlines refused at a cap,
    /// timelines folded early, state shrunk to its budget).
    private func warnAboutLimits() {
        let hits = counters.stateLimits.load(ordering: .relaxed)
        guard limitsWarning.allow(clock.now(), count: hits) else { return }
        logger.warning("\(hits) times so far a child's state reached a bound (entries dropped or deadlines refused at a per-child cap, history folded early, or state shrunk to its byte budget); see the summary counters")
    }

    /// At most once a minute, while events arrive for children whose previous event came from another
    /// partition.
    private func warnAboutKeying() {
        let moved = counters.domainChanges.load(ordering: .relaxed)
        guard keyingWarning.allow(clock.now(), count: moved) else { return }
        logger.warning("\(moved) events so far for children whose previous event came from another partition of \(source.topic): the input is not keyed by child id, so a child's state and deadlines can split across instances; run with --repartition")
    }
}

/// Which shard owns a child: a stable hash of its id, so the same child always lands on the same engine.
func childShard(_ id: String, of n: Int) -> Int {
    childShard(hash: stableHash(id), of: n)
}

/// The shard of the child whose id hashes (`stableHash`) to `hash`.
func childShard(hash: UInt64, of n: Int) -> Int {
    Int(hash % UInt64(max(n, 1)))
}
