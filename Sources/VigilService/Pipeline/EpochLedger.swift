import VigilContract

/// What intake tells the sink about an epoch (one consumed batch, or a control step): the messages to
/// dead-letter, and the checkpoint it carries, if any.
public struct EpochPlan: Sendable {
    public let epoch: Int
    public let deadLetters: [DeadLetter]
    /// Notes for the record (input gaps), as JSON.
    public let notes: [[UInt8]]
    /// A checkpoint of these partitions, taken at this epoch's barrier.
    public let checkpoint: [CheckpointPart]?
    /// When intake read the epoch's batch (set when metrics are on: end-to-end latency).
    public var readAt: Instant?
    /// The rule pack in force from this epoch on, when it says (its checkpoint markers name it).
    public var rulesDigest: String?

    public init(epoch: Int, deadLetters: [DeadLetter] = [], notes: [[UInt8]] = [], checkpoint: [CheckpointPart]? = nil, rulesDigest: String? = nil) {
        self.epoch = epoch
        self.deadLetters = deadLetters
        self.notes = notes
        self.checkpoint = checkpoint
        self.rulesDigest = rulesDigest
    }
}

/// What one shard made of its share of an epoch.
public struct ShardResult: Sendable {
    public var alerts: [RenderedAlert]
    /// Child state records for the epoch's checkpoint, with their partitions.
    public var changes: [(partition: Int32, record: Checkpoint.Record)]

    public init(alerts: [RenderedAlert] = [], changes: [(partition: Int32, record: Checkpoint.Record)] = []) {
        self.alerts = alerts
        self.changes = changes
    }
}

/// The sink's decisions: in which order epochs become durable, what each still waits for, when a
/// checkpoint's records and then its markers may be written, when offsets may be committed and a
/// checkpoint released. A value with no I/O, threads or clock: the sink feeds it what happened and performs
/// the actions it returns, in order.
///
/// The rules it keeps:
/// 1. Epochs are finalized in order, each once its plan and every shard's result are in: its alerts are
///    written to every alert output, its dead letters to every dead-letter output.
/// 2. Epochs complete in order: an epoch is durable when every record written for it is reported durable
///    and every earlier epoch is durable.
/// 3. A checkpoint epoch, once every earlier epoch is durable, writes its child records; once those are
///    durable, its markers; once those are, the tombstones of the children it evicted; once those are,
///    offsets are committed and the checkpoint released. So a durable marker implies every alert and dead
///    letter of the events before its offset is durable, and the state records it completes are too; and a
///    tombstone is only ever found after the marker of its checkpoint. (Before it, a restore would take the
///    child as never seen and apply to nothing the events of it between the earlier marker and this
///    checkpoint; after it, the child is absent as of the marker's offset, which is what eviction means.)
/// 4. A record whose write failed is written again after a backoff, under a new token; a failure no retry
///    can cure is fatal.
public struct EpochLedger: Sendable {
    /// An output, as an index into the sink's list.
    public typealias OutputID = Int

    /// Which outputs get what.
    public struct Routing: Sendable {
        public var alerts: [OutputID]
        public var deadLetters: [OutputID]
        public var changelog: OutputID
        public var notes: [OutputID]
        /// Alerts of shadow rules (instead of `alerts`).
        public var shadowAlerts: [OutputID]
        public init(alerts: [OutputID], deadLetters: [OutputID], changelog: OutputID, notes: [OutputID] = [], shadowAlerts: [OutputID] = []) {
            self.alerts = alerts
            self.deadLetters = deadLetters
            self.changelog = changelog
            self.notes = notes
            self.shadowAlerts = shadowAlerts
        }
    }

    /// What the sink must do, in order.
    public enum Action: Sendable {
        /// Hand `record` to output `output` under `token`.
        case write(output: OutputID, record: OutputRecord, token: DeliveryToken)
        /// A write failed and goes out again in `retryIn` seconds (for the log).
        case writeFailed(output: OutputID, reason: String, retryIn: Double)
        /// Commit these next offsets of the input (a checkpoint is durable).
        case commit([Int32: Int64])
        /// The checkpoint of this epoch is durable in the changelog.
        case checkpointDurable(epoch: Int, parts: [CheckpointPart])
        /// The epoch and every earlier one are durable: these alerts are out.
        case epochDurable(epoch: Int, alerts: [RenderedAlert])
        /// An output failed in a way no retry cures: stop.
        case fatal(output: OutputID, reason: String)
    }

    /// Counters.
    public struct Stats: Sendable, Equatable {
        public var alerts = 0
        public var withdrawn = 0
        public var alertsByRule: [String: Int] = [:]
        /// Of the alerts, those of shadow rules (to the shadow outputs only).
        public var shadow = 0
        public var deadLetters = 0
        public var deadLettersByKind: [String: Int] = [:]
        public var writes = 0
        public var retries = 0
        /// Partitions checkpointed.
        public var checkpoints = 0
        /// Child state records written.
        public var stateRecords = 0
    }

    enum Phase: Sendable { case none, waiting, children, markers, tombstones }

    struct OpenEpoch: Sendable {
        let epoch: Int
        var pending = 0
        let alerts: [RenderedAlert]
        let checkpoint: [CheckpointPart]?
        /// Child records (state), written first.
        let changes: [(partition: Int32, record: Checkpoint.Record)]
        /// Tombstones of evicted children, written once the markers are durable.
        let tombstones: [(partition: Int32, record: Checkpoint.Record)]
        var phase: Phase
        /// The rule pack its markers name.
        let rulesDigest: String
    }

    struct Pending: Sendable {
        let epoch: Int
        let output: OutputID
        let record: OutputRecord
        var failures: Int
    }

    public let routing: Routing
    public let shards: Int
    /// The rule pack in force as of the last epoch finalized (a plan may switch it).
    public private(set) var rulesDigest: String
    public let backoff: Backoff
    public private(set) var stats = Stats()
    private var plans: [Int: EpochPlan] = [:]
    private var results: [Int: [Int: ShardResult]] = [:]
    private var nextToFinalize = 0
    private var open: [OpenEpoch] = []
    private var outstanding: [DeliveryToken: Pending] = [:]
    private var retries: [(due: Instant, token: DeliveryToken)] = []
    private var nextToken: DeliveryToken = 1
    /// Per output, its records written and not yet reported durable.
    private var waiting: [Int]

    public init(routing: Routing, shards: Int, rulesDigest: String, backoff: Backoff = .delivery) {
        self.routing = routing
        self.shards = shards
        self.rulesDigest = rulesDigest
        self.backoff = backoff
        waiting = Array(repeating: 0, count: ([routing.changelog] + routing.alerts + routing.deadLetters + routing.notes + routing.shadowAlerts).max().map { $0 + 1 } ?? 0)
    }

    /// Nothing waiting: no epoch open, no record outstanding.
    public var isIdle: Bool { plans.isEmpty && results.isEmpty && open.isEmpty && outstanding.isEmpty }
    /// Records written and not yet reported (or waiting to be written again).
    public var outstandingWrites: Int { outstanding.count }
    /// The first output with records not yet reported durable.
    public var firstOutputWaiting: OutputID? { waiting.firstIndex { $0 > 0 } }
    /// When the earliest retry is due.
    public var nextRetry: Instant? { retries.map(\.due).min() }
    /// The epochs finalized and not yet durable.
    public var openEpochs: Int { open.count }

    // MARK: events

    /// Intake's plan for an epoch arrived.
    public mutating func planned(_ plan: EpochPlan) -> [Action] {
        plans[plan.epoch] = plan
        var actions: [Action] = []
        finalizeReady(into: &actions)
        return actions
    }

    /// A shard's result for an epoch arrived.
    public mutating func finished(epoch: Int, shard: Int, _ result: ShardResult) -> [Action] {
        results[epoch, default: [:]][shard] = result
        var actions: [Action] = []
        finalizeReady(into: &actions)
        return actions
    }

    /// An output reported on a token. Tokens not outstanding (superseded by a retry) are ignored.
    public mutating func reported(_ token: DeliveryToken, _ outcome: DeliveryOutcome, now: Instant) -> [Action] {
        guard var p = outstanding[token] else { return [] }
        switch outcome {
        case .durable:
            outstanding[token] = nil
            waiting[p.output] -= 1
            if let i = open.firstIndex(where: { $0.epoch == p.epoch }) { open[i].pending -= 1 }
            var actions: [Action] = []
            completeEpochs(into: &actions)
            return actions
        case .failed(let reason, let retriable):
            guard retriable else { return [.fatal(output: p.output, reason: reason)] }
            p.failures += 1
            outstanding[token] = p
            let delay = backoff.delay(afterFailures: p.failures)
            retries.append((now + Int64(delay * Double(Instant.microsPerSecond)), token))
            stats.retries += 1
            return [.writeFailed(output: p.output, reason: reason, retryIn: delay)]
        }
    }

    /// Writes again the records whose retry is due.
    public mutating func retryDue(now: Instant) -> [Action] {
        guard !retries.isEmpty else { return [] }
        var actions: [Action] = []
        var later: [(due: Instant, token: DeliveryToken)] = []
        for r in retries {
            guard r.due <= now else { later.append(r); continue }
            guard let p = outstanding.removeValue(forKey: r.token) else { continue }
            actions.append(write(p.record, to: p.output, epoch: p.epoch, failures: p.failures))
        }
        retries = later
        return actions
    }

    // MARK: internals

    private mutating func write(_ record: OutputRecord, to output: OutputID, epoch: Int, failures: Int = 0) -> Action {
        let token = nextToken
        nextToken += 1
        outstanding[token] = Pending(epoch: epoch, output: output, record: record, failures: failures)
        if failures == 0 { waiting[output] += 1 }
        stats.writes += 1
        return .write(output: output, record: record, token: token)
    }

    // The actions are appended to one array all the way down (an alert-dense epoch or a checkpoint makes tens
    // of thousands; arrays returned and concatenated at each level copied them, retaining their records, as
    // many times over).
    private mutating func finalizeReady(into actions: inout [Action]) {
        while let plan = plans[nextToFinalize], let parts = results[nextToFinalize], parts.count == shards {
            plans[nextToFinalize] = nil
            results[nextToFinalize] = nil
            nextToFinalize += 1
            finalize(plan, parts.sorted { $0.key < $1.key }.map(\.value), into: &actions)
        }
        completeEpochs(into: &actions)
    }

    private mutating func finalize(_ plan: EpochPlan, _ parts: [ShardResult], into actions: inout [Action]) {
        let first = actions.count
        let alerts = parts.flatMap(\.alerts)
        // Notes first: a rule pack's note precedes the alerts raised under it (its switch's backfill).
        for n in plan.notes {
            for o in routing.notes { actions.append(write(OutputRecord(key: nil, value: n, isNote: true), to: o, epoch: plan.epoch)) }
        }
        for a in alerts {
            stats.alerts += 1
            if a.alert.status == .withdrawn { stats.withdrawn += 1 }
            stats.alertsByRule[a.ruleId, default: 0] += 1
            if a.shadow { stats.shadow += 1 }
            for o in a.shadow ? routing.shadowAlerts : routing.alerts { actions.append(write(a.record, to: o, epoch: plan.epoch)) }
        }
        for d in plan.deadLetters {
            stats.deadLetters += 1
            stats.deadLettersByKind[d.failure.kind.rawValue, default: 0] += 1
            for o in routing.deadLetters { actions.append(write(d.record, to: o, epoch: plan.epoch)) }
        }
        var changes: [(partition: Int32, record: Checkpoint.Record)] = []
        var tombstones: [(partition: Int32, record: Checkpoint.Record)] = []
        for part in parts {
            for c in part.changes {
                if c.record.value.isEmpty { tombstones.append(c) } else { changes.append(c) }
            }
        }
        if let d = plan.rulesDigest { rulesDigest = d }
        open.append(OpenEpoch(epoch: plan.epoch, pending: actions.count - first, alerts: alerts, checkpoint: plan.checkpoint,
                              changes: changes, tombstones: tombstones,
                              phase: plan.checkpoint == nil ? .none : .waiting, rulesDigest: rulesDigest))
    }

    /// Writes child records (or tombstones) of the oldest open epoch to the changelog.
    private mutating func writeState(_ records: [(partition: Int32, record: Checkpoint.Record)], epoch: Int, into actions: inout [Action]) {
        open[0].pending += records.count
        stats.stateRecords += records.count
        // A checkpoint writes every changed child at once (100,000 in the end-to-end harness): the table
        // of outstanding writes grows once, not by doubling while they are added.
        outstanding.reserveCapacity(outstanding.count + records.count)
        actions.reserveCapacity(actions.count + records.count)
        for r in records {
            actions.append(write(OutputRecord(key: Array(r.record.key.utf8), value: r.record.value, partition: r.partition), to: routing.changelog, epoch: epoch))
        }
    }

    private mutating func completeEpochs(into actions: inout [Action]) {
        while let first = open.first {
            switch first.phase {
            case .waiting:
                // Every earlier epoch is durable: the checkpoint's child records may go.
                open[0].phase = .children
                writeState(first.changes, epoch: first.epoch, into: &actions)
                continue
            case .children:
                guard first.pending == 0 else { return }
                // Every child record is durable: the markers may go.
                open[0].phase = .markers
                for part in first.checkpoint ?? [] {
                    let m = Checkpoint.marker(partition: part.partition, checkpoint: part.checkpoint, offset: part.offset,
                                              clock: part.clock, rulesDigest: first.rulesDigest)
                    actions.append(write(OutputRecord(key: Array(m.key.utf8), value: m.value, partition: part.partition),
                                         to: routing.changelog, epoch: first.epoch))
                }
                open[0].pending += first.checkpoint?.count ?? 0
                continue
            case .markers where !first.tombstones.isEmpty:
                guard first.pending == 0 else { return }
                // The markers are durable: the evicted children's tombstones may go.
                open[0].phase = .tombstones
                writeState(first.tombstones, epoch: first.epoch, into: &actions)
                continue
            case .markers, .tombstones, .none:
                break
            }
            guard first.pending == 0 else { return }
            open.removeFirst()
            if let parts = first.checkpoint {
                // Committed offsets are for monitoring (lag); restores use the checkpoint.
                let offsets = Dictionary(parts.filter { $0.offset > 0 }.map { ($0.partition, $0.offset) }, uniquingKeysWith: { a, _ in a })
                if !offsets.isEmpty { actions.append(.commit(offsets)) }
                stats.checkpoints += parts.count
                actions.append(.checkpointDurable(epoch: first.epoch, parts: parts))
            }
            actions.append(.epochDurable(epoch: first.epoch, alerts: first.alerts))
        }
    }
}
