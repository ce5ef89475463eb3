import Testing
import VigilContract
import VigilEngine
@testable import VigilService
import VigilTesting

/// The sink's decisions, driven without I/O: every transition, and what is durable at every crash point.
@Suite struct EpochLedgerTests {
    // Outputs: 0 the audit log, 1 the alerts topic, 2 the dead-letter topic, 3 the changelog.
    static let routing = EpochLedger.Routing(alerts: [0, 1], deadLetters: [2], changelog: 3)

    func ledger(shards: Int = 2) -> EpochLedger {
        EpochLedger(routing: Self.routing, shards: shards, rulesDigest: "d", backoff: Backoff(initial: 1, maximum: 4))
    }

    static func alert(_ id: String) -> RenderedAlert {
        RenderedAlert(alert: Alert(alertId: id, status: .fired, withdraws: nil, ruleIndex: 0, childId: "C-1",
                                   firedAt: Instant(micros: 0), deadline: nil, summary: "s", evidence: []),
                      ruleId: "r", json: Array("{\"alert_id\":\"\(id)\"}".utf8))
    }

    static let deadLetter = DeadLetter(sourceTopic: "in", partition: 0, offset: 7, key: [UInt8]?.none, value: [UInt8]([1, 2]), originalHeaders: [],
                                       failure: ValidationFailure(kind: .invalidJSON, path: "$", reason: "not JSON"))

    static func change(_ child: String, partition: Int32 = 0) -> (partition: Int32, record: Checkpoint.Record) {
        (partition, Checkpoint.Record(key: "child/" + child, value: [0]))
    }

    static let t0 = Instant(micros: 1_000_000_000)

    func writes(_ actions: [EpochLedger.Action]) -> [(output: Int, key: String, token: DeliveryToken)] {
        actions.compactMap {
            if case .write(let o, let r, let t) = $0 { return (o, String(decoding: r.key ?? [], as: UTF8.self), t) }
            return nil
        }
    }

    func durableEpochs(_ actions: [EpochLedger.Action]) -> [Int] {
        actions.compactMap { if case .epochDurable(let e, _) = $0 { return e } else { return nil } }
    }

    @Test func anEpochIsFinalizedOnlyWithItsPlanAndEveryShardsResultAndInOrder() {
        var l = ledger()
        #expect(l.finished(epoch: 1, shard: 0, ShardResult(alerts: [Self.alert("b")])).isEmpty)
        #expect(l.planned(EpochPlan(epoch: 1)).isEmpty)
        #expect(l.finished(epoch: 1, shard: 1, ShardResult()).isEmpty, "epoch 0 comes first")
        #expect(l.finished(epoch: 0, shard: 1, ShardResult(alerts: [Self.alert("a")])).isEmpty)
        #expect(l.planned(EpochPlan(epoch: 0, deadLetters: [Self.deadLetter])).isEmpty, "shard 0 of epoch 0 is missing")
        let actions = l.finished(epoch: 0, shard: 0, ShardResult())
        // Epoch 0: its alert to the audit log and the topic, its dead letter; then epoch 1's alert.
        #expect(writes(actions).map(\.output) == [0, 1, 2, 0, 1])
        #expect(l.openEpochs == 2)
        #expect(l.stats.alerts == 2 && l.stats.deadLetters == 1)
    }

    @Test func epochsBecomeDurableInOrderOnlyWhenEveryWriteIsDurable() {
        var l = ledger(shards: 1)
        let w0 = writes(l.planned(EpochPlan(epoch: 0)) + l.finished(epoch: 0, shard: 0, ShardResult(alerts: [Self.alert("a")])))
        let w1 = writes(l.planned(EpochPlan(epoch: 1)) + l.finished(epoch: 1, shard: 0, ShardResult(alerts: [Self.alert("b")])))
        #expect(w0.count == 2 && w1.count == 2)
        // Epoch 1 completes first: nothing is durable until epoch 0 is.
        for w in w1 { #expect(durableEpochs(l.reported(w.token, .durable, now: Self.t0)).isEmpty) }
        #expect(durableEpochs(l.reported(w0[0].token, .durable, now: Self.t0)).isEmpty, "the topic has not acknowledged epoch 0")
        #expect(durableEpochs(l.reported(w0[1].token, .durable, now: Self.t0)) == [0, 1])
        #expect(l.isIdle)
        // A report for a token no longer outstanding changes nothing.
        #expect(l.reported(w0[1].token, .durable, now: Self.t0).isEmpty)
    }

    @Test func anEpochWithNothingToWriteIsDurableAtOnce() {
        var l = ledger(shards: 1)
        #expect(durableEpochs(l.planned(EpochPlan(epoch: 0)) + l.finished(epoch: 0, shard: 0, ShardResult())) == [0])
    }

    @Test func aFailedWriteGoesOutAgainAfterTheBackoffUnderANewToken() {
        var l = ledger(shards: 1)
        let w = writes(l.planned(EpochPlan(epoch: 0)) + l.finished(epoch: 0, shard: 0, ShardResult(alerts: [Self.alert("a")])))
        let failed = l.reported(w[1].token, .failed(reason: "broker down", retriable: true), now: Self.t0)
        guard case .writeFailed(1, "broker down", let retryIn)? = failed.first else { Issue.record("\(failed)"); return }
        #expect(retryIn == 1)
        #expect(l.nextRetry == Self.t0 + Instant.microsPerSecond)
        #expect(l.retryDue(now: Self.t0 + 999_999).isEmpty)
        let again = writes(l.retryDue(now: Self.t0 + Instant.microsPerSecond))
        #expect(again.count == 1 && again[0].output == 1 && again[0].token != w[1].token)
        // A late report for the old token is ignored; the second failure waits twice as long.
        #expect(l.reported(w[1].token, .durable, now: Self.t0).isEmpty)
        guard case .writeFailed(_, _, 2)? = l.reported(again[0].token, .failed(reason: "x", retriable: true), now: Self.t0).first else {
            Issue.record("no second backoff"); return
        }
        let third = writes(l.retryDue(now: Self.t0 + 3 * Instant.microsPerSecond))
        _ = l.reported(w[0].token, .durable, now: Self.t0)
        #expect(durableEpochs(l.reported(third[0].token, .durable, now: Self.t0)) == [0])
        #expect(l.stats.retries == 2)
        #expect(l.isIdle)
    }

    @Test func aFailureNoRetryCuresIsFatal() {
        var l = ledger(shards: 1)
        let w = writes(l.planned(EpochPlan(epoch: 0)) + l.finished(epoch: 0, shard: 0, ShardResult(alerts: [Self.alert("a")])))
        let actions = l.reported(w[0].token, .failed(reason: "disk full", retriable: false), now: Self.t0)
        guard case .fatal(0, "disk full")? = actions.first else { Issue.record("\(actions)"); return }
    }

    @Test func aCheckpointWritesItsRecordsAfterEveryEarlierEpochThenItsMarkersThenCommits() {
        var l = ledger(shards: 1)
        let w0 = writes(l.planned(EpochPlan(epoch: 0)) + l.finished(epoch: 0, shard: 0, ShardResult(alerts: [Self.alert("a")])))
        let part = CheckpointPart(partition: 0, checkpoint: 3, offset: 42, clock: Self.t0)
        // The checkpoint epoch is finalized, but epoch 0 is not durable: no state record may go yet.
        let planned = l.planned(EpochPlan(epoch: 1, checkpoint: [part])) + l.finished(epoch: 1, shard: 0, ShardResult(changes: [Self.change("C-1"), Self.change("C-2")]))
        #expect(writes(planned).isEmpty)
        _ = l.reported(w0[0].token, .durable, now: Self.t0)
        let children = l.reported(w0[1].token, .durable, now: Self.t0)
        #expect(durableEpochs(children) == [0])
        let records = writes(children)
        #expect(records.map(\.output) == [3, 3] && records.map(\.key) == ["child/C-1", "child/C-2"])
        // The marker waits for both records.
        #expect(writes(l.reported(records[0].token, .durable, now: Self.t0)).isEmpty)
        let marker = writes(l.reported(records[1].token, .durable, now: Self.t0))
        #expect(marker.map(\.key) == ["checkpoint"])
        let done = l.reported(marker[0].token, .durable, now: Self.t0)
        guard done.count == 3, case .commit(let offsets) = done[0], case .checkpointDurable(1, [part]) = done[1], case .epochDurable(1, _) = done[2] else {
            Issue.record("\(done)"); return
        }
        #expect(offsets == [0: 42])
        #expect(l.stats.checkpoints == 1 && l.stats.stateRecords == 2)
    }

    /// A tombstone (a child evicted at the checkpoint) found before its checkpoint's marker would make a
    /// restore take the child as never seen and apply the events since the earlier marker to nothing: the
    /// tombstones go only once the markers are durable, and the checkpoint is released when they are.
    @Test func anEvictedChildsTombstoneIsWrittenOnlyOnceItsCheckpointsMarkerIsDurable() {
        var l = ledger(shards: 1)
        let part = CheckpointPart(partition: 0, checkpoint: 3, offset: 42, clock: Self.t0)
        let tombstone = (partition: Int32(0), record: Checkpoint.tombstone(child: "C-gone"))
        let records = writes(l.planned(EpochPlan(epoch: 0, checkpoint: [part]))
            + l.finished(epoch: 0, shard: 0, ShardResult(changes: [tombstone, Self.change("C-1")])))
        #expect(records.map(\.key) == ["child/C-1"])
        let marker = writes(l.reported(records[0].token, .durable, now: Self.t0))
        #expect(marker.map(\.key) == ["checkpoint"])
        let afterMarker = l.reported(marker[0].token, .durable, now: Self.t0)
        let tombstones = writes(afterMarker)
        #expect(tombstones.map(\.key) == ["child/C-gone"] && tombstones.map(\.output) == [3])
        #expect(durableEpochs(afterMarker).isEmpty, "the checkpoint is released when its tombstones are durable")
        let done = l.reported(tombstones[0].token, .durable, now: Self.t0)
        #expect(durableEpochs(done) == [0])
        #expect(done.contains { if case .checkpointDurable(0, [part]) = $0 { return true } else { return false } })
        #expect(l.stats.stateRecords == 2)
    }

    @Test func aCheckpointOfAnEmptyPartitionCommitsNothing() {
        var l = ledger(shards: 1)
        let part = CheckpointPart(partition: 5, checkpoint: 0, offset: 0, clock: .distantPast)
        let marker = writes(l.planned(EpochPlan(epoch: 0, checkpoint: [part])) + l.finished(epoch: 0, shard: 0, ShardResult()))
        #expect(marker.map(\.key) == ["checkpoint"])
        let done = l.reported(marker[0].token, .durable, now: Self.t0)
        #expect(!done.contains { if case .commit = $0 { return true } else { return false } })
        #expect(durableEpochs(done) == [0])
    }

    /// Random plans, results and reports (durable, failed and retried) in random order, with a crash
    /// considered after every step: what the outputs hold then must let a restart from the newest durable
    /// marker lose nothing, and offsets are committed only for what is durable.
    @Test(arguments: 1...50) func atEveryCrashPointADurableMarkerImpliesEverythingBeforeItIsDurable(seed: UInt64) {
        var rng = SplitMix64(state: seed)
        let shards = 2, epochs = 12
        var l = ledger(shards: shards)
        var now = Self.t0
        // Each record written, by what it is (output and name), with the epoch it belongs to.
        struct Record: Hashable { let output: Int; let name: String }
        var epochOf: [Record: Int] = [:]
        var durable = Set<Record>()
        var tokens: [DeliveryToken: Record] = [:]
        var outstanding: [DeliveryToken] = []
        var durableEpochs: [Int] = []
        var checkpointEpochs = Set<Int>()
        var inbox: [(epoch: Int, shard: Int?)] = []
        for e in 0..<epochs {
            inbox.append((e, nil))
            for s in 0..<shards { inbox.append((e, s)) }
            if rng.next() % 3 == 0 { checkpointEpochs.insert(e) }
        }
        inbox.shuffle(using: &rng)

        func epoch(of r: OutputRecord, output: Int) -> Int {
            if let id = r.alertId { return Int(id.dropFirst().prefix { $0 != "-" }) ?? -1 }
            let key = String(decoding: r.key ?? [], as: UTF8.self)
            if key == "checkpoint" {
                let v = try? JSONValue.parse(r.value)
                return Int(v?["checkpoint"]?.intValue ?? -1)
            }
            return Int(key.dropFirst("child/e".count).prefix { $0 != "-" }) ?? -1
        }
        func name(of r: OutputRecord) -> String { r.alertId ?? String(decoding: r.key ?? [], as: UTF8.self) + "@\(epoch(of: r, output: 0))" }
        func allDurable(through e: Int, where include: (Record) -> Bool = { _ in true }) -> Bool {
            epochOf.allSatisfy { $0.value > e || !include($0.key) || durable.contains($0.key) }
        }
        func apply(_ actions: [EpochLedger.Action]) {
            for a in actions {
                switch a {
                case .write(let o, let r, let t):
                    let rec = Record(output: o, name: name(of: r))
                    let e = epoch(of: r, output: o)
                    epochOf[rec] = e
                    tokens[t] = rec
                    outstanding.append(t)
                    if o == 3 && !rec.name.hasPrefix("checkpoint") {
                        #expect(allDurable(through: e - 1), "a state record of epoch \(e) went out before every earlier epoch was durable")
                    }
                    if rec.name.hasPrefix("checkpoint") {
                        #expect(allDurable(through: e) { $0.output == 3 && $0.name.hasPrefix("child/") && !$0.name.contains("-gone") }, "a marker before its records")
                    }
                    if rec.name.contains("-gone") {
                        #expect(allDurable(through: e) { $0.output == 3 && $0.name.hasPrefix("checkpoint") }, "a tombstone before its marker")
                    }
                case .epochDurable(let e, _):
                    durableEpochs.append(e)
                    #expect(allDurable(through: e), "epoch \(e) durable with a write pending")
                case .commit, .checkpointDurable(_, _):
                    if case .checkpointDurable(let e, _) = a { #expect(allDurable(through: e), "checkpoint \(e) released early") }
                case .writeFailed, .fatal:
                    break
                }
            }
        }
        func result(_ e: Int, _ s: Int) -> ShardResult {
            var r = ShardResult(alerts: (0..<Int(rng.next() % 3)).map { Self.alert("e\(e)-s\(s)-\($0)") })
            // A child's state, and a tombstone (a child evicted).
            if checkpointEpochs.contains(e) {
                r.changes = [(0, Checkpoint.Record(key: "child/e\(e)-s\(s)", value: [1])), (0, Checkpoint.tombstone(child: "e\(e)-s\(s)-gone"))]
            }
            return r
        }
        var steps = 0
        while !inbox.isEmpty || !outstanding.isEmpty || l.nextRetry != nil {
            steps += 1
            if outstanding.isEmpty && inbox.isEmpty, let due = l.nextRetry {
                now = due
                apply(l.retryDue(now: now))
                continue
            }
            if !outstanding.isEmpty && (inbox.isEmpty || rng.next() % 2 == 0) {
                let t = outstanding.remove(at: Int(rng.next() % UInt64(outstanding.count)))
                if rng.next() % 6 == 0 {
                    apply(l.reported(t, .failed(reason: "broker down", retriable: true), now: now))
                } else {
                    if let rec = tokens[t] { durable.insert(rec) }
                    apply(l.reported(t, .durable, now: now))
                }
                if rng.next() % 4 == 0 {
                    now = now + 2 * Instant.microsPerSecond
                    apply(l.retryDue(now: now))
                }
            } else {
                let (e, s) = inbox.removeFirst()
                if let s {
                    apply(l.finished(epoch: e, shard: s, result(e, s)))
                } else {
                    let parts = checkpointEpochs.contains(e) ? [CheckpointPart(partition: 0, checkpoint: Int64(e), offset: Int64(e + 1) * 10, clock: now)] : nil
                    apply(l.planned(EpochPlan(epoch: e, checkpoint: parts)))
                }
            }
            // A crash now: a restart reads on from the newest durable marker. Every alert of an epoch up to
            // that marker's must be durable in both alert outputs, or the restart would never raise it.
            let markers = durable.filter { $0.name.hasPrefix("checkpoint") }.compactMap { epochOf[$0] }
            if let newest = markers.max() {
                #expect(allDurable(through: newest) { $0.output != 3 }, "seed \(seed), step \(steps): marker of epoch \(newest) durable before its alerts")
            }
            if steps > 100_000 { Issue.record("no progress"); return }
        }
        #expect(durableEpochs == Array(0..<epochs), "every epoch durable, once, in order")
        #expect(l.isIdle)
    }
}
