import VigilContract
import VigilRules

/// Bounds on what the engine keeps per child. Beyond them the oldest entries are dropped (or, for the
/// timeline, folded into the base early) and counted, so one pathological child cannot exhaust memory.
public struct EngineLimits: Sendable {
    /// Events with the same id within this span are duplicates (docs/rules.md: 400 days).
    public var duplicateHorizon: Int64 = 400 * Instant.microsPerDay
    /// Events kept in a child's timeline; past it the oldest are folded into the base before they age out
    /// (`EngineStats.timelineOverflow`), and a record arriving later than them is reconciled approximately.
    public var maxTimelinePerChild = 4096
    public var maxWindowEntriesPerChild = 4096
    public var maxPendingPerChild = 512
    public var maxStatesPerChild = 512
    public var maxEvidence = 50

    public init() {}
}

/// Counters kept by an engine.
public struct EngineStats: Sendable, Codable, Equatable {
    public var events = 0
    public var duplicates = 0
    public var alerts = 0
    public var suppressed = 0
    public var deadlinesArmed = 0
    public var deadlinesMet = 0
    public var deadlinesCancelled = 0
    public var deadlinesFired = 0
    public var overflowDrops = 0
    public var pendingRefused = 0
    /// Alerts withdrawn because a record arrived late.
    public var withdrawn = 0
    /// Events for a child whose previous event came from another clock domain (input partition): the input
    /// is not keyed by child id.
    public var domainChanges = 0
    /// Events that arrived behind their child's frontier (an event of the child with a later time, or a
    /// deadline after theirs, was already applied): each re-derives its child.
    public var lateEvents = 0
    /// Of those, events older than the child's whole timeline (before its base): reconciled approximately,
    /// as the oldest event of the timeline.
    public var lateBeyondHorizon = 0
    /// Alerts raised because of a record that arrived late (their `fired_at` is in the past).
    public var raisedLate = 0
    /// Alerts withdrawn and later justified again, re-raised under a revised id.
    public var reinstated = 0
    /// Timeline events folded into the base early because a child had more than `maxTimelinePerChild`.
    public var timelineOverflow = 0
    /// Children dropped because nothing about them could matter any more (`Engine.evictIdle`).
    public var evicted = 0
    /// Steps taken to bring a child's state under its byte budget (`Engine.shrink`).
    public var stateDegraded = 0
    /// Rule packs switched to (`Engine.switched`).
    public var packSwitches = 0
    /// Children derived again from their timelines because the rule pack changed.
    public var rederived = 0
    /// Alerts raised at a rule pack change for a moment before it (marked backfill).
    public var backfilled = 0
    /// Alerts suppressed, by rule id (`suppress:`).
    public var suppressedByRule: [String: Int] = [:]

    public init() {}

    public mutating func add(_ o: EngineStats) {
        events += o.events; duplicates += o.duplicates; alerts += o.alerts; suppressed += o.suppressed
        deadlinesArmed += o.deadlinesArmed; deadlinesMet += o.deadlinesMet; deadlinesCancelled += o.deadlinesCancelled
        deadlinesFired += o.deadlinesFired; overflowDrops += o.overflowDrops; pendingRefused += o.pendingRefused
        withdrawn += o.withdrawn; domainChanges += o.domainChanges; lateEvents += o.lateEvents
        lateBeyondHorizon += o.lateBeyondHorizon; raisedLate += o.raisedLate; reinstated += o.reinstated
        timelineOverflow += o.timelineOverflow; evicted += o.evicted; stateDegraded += o.stateDegraded
        packSwitches += o.packSwitches; rederived += o.rederived; backfilled += o.backfilled
        suppressedByRule.merge(o.suppressedByRule, uniquingKeysWith: +)
    }

    /// Adds what a derivation step counted.
    mutating func add(_ n: Deriver.Counts) {
        alerts += n.alerts; suppressed += n.suppressed; deadlinesArmed += n.deadlinesArmed; deadlinesMet += n.deadlinesMet
        deadlinesCancelled += n.deadlinesCancelled; deadlinesFired += n.deadlinesFired; overflowDrops += n.overflowDrops
        pendingRefused += n.pendingRefused
        if !n.suppressedByRule.isEmpty { suppressedByRule.merge(n.suppressedByRule, uniquingKeysWith: +) }
    }
}

/// The rule engine: per-child timelines and their derivations, windows, expectations and a deadline queue,
/// driven by an explicit event-time clock. It never reads the wall clock.
///
/// Answers never depend on arrival order: an event in order (at or after everything its child has applied)
/// is applied at once; an event that arrives late is inserted into its child's timeline, the child is
/// re-derived from its base, and the difference is emitted: a `withdrawn` alert for each alert no longer
/// justified, and each newly justified alert marked as raised late. So the alerts emitted minus those
/// withdrawn equal `vigil replay` of the same events sorted by event time.
///
/// A value type owned by one thread at a time; it is `Sendable` so it can be handed to a worker thread.
/// Per event: `advance(to:)` with the clock, then `process(_:position:into:)`.
public struct Engine: Sendable {
    public let rules: CompiledRuleSet
    public let limits: EngineLimits
    /// How far back (microseconds before a child's newest event) its timeline reaches.
    public let horizon: Int64
    /// The pack's definitions by stable id, for persisted state.
    public let keys: PackKeys
    let deriver: Deriver
    var children: [ChildState] = []
    var index = ChildIndex()
    /// One deadline queue per clock domain (an input partition; replay uses domain 0).
    var queues: [DeadlineQueue] = [DeadlineQueue()]
    var seq: UInt64 = 0
    public internal(set) var stats = EngineStats()
    /// The instant the clock was last advanced to.
    public internal(set) var clock: Instant = .distantPast
    /// The instant each clock domain was last advanced to (a switch of rule pack derives its children to it).
    var domainClock: [Instant] = []
    /// Where a timeline event's fields are read in place (a re-derivation, a fold).
    var scratch: PackedRecord
    /// Room to pack an event's fields into before its child keeps them (`PackedFields.pack`).
    var packed: [UInt8] = []
    /// The context of the live path's derivation steps (`begin(child:)`, `finish`).
    var step = Deriver.Context(child: "", seq: 0)
    let c: EventContract

    public init(rules: CompiledRuleSet, limits: EngineLimits = EngineLimits()) {
        self.rules = rules
        self.limits = limits
        deriver = Deriver(rules: rules, limits: limits)
        keys = PackKeys(rules)
        horizon = max(limits.duplicateHorizon, rules.horizonMicros)
        c = rules.contract
        scratch = PackedRecord(rules.contract, reading: deriver.readSlot)
    }

    /// The slots to decode of each event for an engine of `rules`: what the pack reads, and what any rule
    /// could read (a child's timeline keeps it, for a rule added later).
    public static func decodedSlots(_ rules: CompiledRuleSet) -> [Int] {
        Array(Set(rules.capturedSlots).union(rules.contract.ruleReadableSlots)).sorted()
    }

    public var childCount: Int { children.count }
    public var pendingDeadlines: Int { children.reduce(0) { $0 + $1.now.pending.count } }

    /// The deadlines pending over every child, and the earliest of them (one pass over the children).
    public func deadlineSummary() -> (pending: Int, earliest: Instant?) {
        var n = 0
        var earliest: Instant?
        for c in children {
            n += c.now.pending.count
            for p in c.now.pending where earliest.map({ p.deadline < $0 }) ?? true { earliest = p.deadline }
        }
        return (n, earliest)
    }

    /// The state of one child, if known (tests and tools).
    public func child(_ id: String) -> ChildState? { index.find(id, hash: stableHash(id), in: children).map { children[$0] } }

    /// Approximate bytes of per-child state (benchmarks).
    public var approximateStateBytes: Int { stateBytes.total }

    /// Approximate bytes of per-child state by part (benchmarks).
    public var stateBytes: StateBytes {
        var b = StateBytes()
        for c in children { c.count(into: &b) }
        b.add("child index", index.slotCount * MemoryLayout<ChildIndex.Entry>.stride)
        b.add("deadline queues", queues.reduce(0) { $0 + $1.count } * MemoryLayout<Timer>.stride)
        return b
    }

    public enum Outcome: Sendable, Equatable {
        case processed
        case duplicate
        /// The record lacks an envelope field: it was not decoded by a contract decoder. Nothing was applied.
        case incomplete
    }

    // MARK: clock

    /// Fires every pending deadline at or before `t` in every clock domain.
    public mutating func advance(to t: Instant, into alerts: inout [Alert]) {
        for d in queues.indices { advance(domain: d, to: t, into: &alerts) }
    }

    /// Fires the pending deadlines at or before `t` of the children whose events come from `domain`, in
    /// (deadline, arming order) order within each child.
    public mutating func advance(domain d: Int, to t: Instant, into alerts: inout [Alert]) {
        if t > clock { clock = t }
        guard d >= 0 else { return }
        while domainClock.count <= d { domainClock.append(.distantPast) }
        if t > domainClock[d] { domainClock[d] = t }
        guard d < queues.count else { return }
        while let top = queues[d].top, top.deadline <= t {
            _ = queues[d].pop()
            let ci = Int(top.child)
            // Stale entries (met, cancelled, re-derived) no longer match a pending expectation.
            guard children[ci].now.pending.contains(where: { $0.id == top.pending && $0.deadline == top.deadline }) else { continue }
            begin(child: children[ci].id)
            let armedFrom = children[ci].now.nextPendingId
            deriver.popDue(&children[ci].now, through: top.deadline, &step)
            finish(ci, armedFrom: armedFrom, into: &alerts)
        }
    }

    // MARK: events

    /// Applies one validated event (decoded with a decoder that captures `Engine.decodedSlots(rules)`).
    ///
    /// `domain` is the clock domain (input partition) the event came from; the child's future deadlines are
    /// kept in that domain's queue. `childHash`, when the caller has it already (intake, to pick the shard; a
    /// replay's read-ahead, to prefetch), is `stableHash` of the record's child id: it is not worked out again.
    @discardableResult
    public mutating func process(_ r: EventRecord, position: SourcePosition? = nil, domain: Int = 0, childHash: UInt64? = nil,
                                 into alerts: inout [Alert]) -> Outcome {
        guard case .symbol(let typeSym) = r[c.typeSlot], case .string(let childId) = r[c.childIdSlot],
              case .instant(let at) = r[c.occurredAtSlot], case .string(let eventId) = r[c.eventIdSlot],
              case .symbol(let agency) = r[c.agencySlot] else {
            return .incomplete
        }
        let t = c.eventTypeIndex(typeSym)
        guard t >= 0 else { return .incomplete }
        assert(childHash == nil || childHash == stableHash(childId), "a child id hash given that is not its id's")
        let ci = childIndex(childId, hash: childHash ?? stableHash(childId))
        stats.events += 1
        children[ci].dirty = true
        if domain >= 0 {
            if children[ci].domain != Int32(domain) && children[ci].hasEvents { stats.domainChanges += 1 }
            children[ci].domain = Int32(domain)
            while queues.count <= domain { queues.append(DeadlineQueue()) }
        }
        let h = stableHash(eventId)
        if children[ci].isDuplicate(hash: h, id: eventId, at: at, horizon: limits.duplicateHorizon) {
            stats.duplicates += 1
            return .duplicate
        }
        let ref = EventRef(eventId: eventId, type: typeSym, agency: agency, occurredAt: at, position: position)
        let packedBytes = PackedFields.pack(r, keep: deriver.timelineSlot, into: &packed)
        let event = children[ci].keep(ref, fields: packed[..<packedBytes], idHash: h)
        if at >= children[ci].now.frontier {
            // In order: today's fast path.
            begin(child: childId)
            let armedFrom = children[ci].now.nextPendingId
            deriver.popDue(&children[ci].now, through: at, &step)
            deriver.apply(r, ref: ref, type: t, to: &children[ci].now, &step)
            children[ci].append(event)
            finish(ci, armedFrom: armedFrom, into: &alerts)
        } else {
            reconcile(ci, late: event, ref: ref, recordedAt: c.recordedAtSlot.flatMap { r[$0].instant }, into: &alerts)
        }
        fold(ci)
        return .processed
    }

    /// Starts a derivation step for a child in `step`: the engine's arming counter, counts from zero, no alerts.
    /// The context is the engine's, kept from step to step (made and destroyed for every event, it cost about
    /// 160 instructions an event), and with it the dates it worked out.
    mutating func begin(child: String) {
        step.child = child
        step.seq = seq
    }

    /// Takes the step's arming counter back and adds its counts, queues the deadlines it armed (pending ids
    /// from `armedFrom` on), and remembers the alerts fired; the step's counts and alerts are then cleared.
    mutating func finish(_ ci: Int, armedFrom: UInt32, into alerts: inout [Alert]) {
        seq = step.seq
        if step.counts.any {
            stats.add(step.counts)
            step.counts = Deriver.Counts()
        }
        children[ci].dirty = true
        // Pending ids are handed out in order (`Derivation.nextPendingId`): where it has not moved, nothing was armed.
        if children[ci].now.nextPendingId != armedFrom {
            let domain = Int(max(children[ci].domain, 0))
            for p in children[ci].now.pending where p.id >= armedFrom {
                queues[domain].push(Timer(deadline: p.deadline, seq: p.seq, child: Int32(ci), pending: p.id))
            }
        }
        // Most steps fire nothing.
        guard !step.alerts.isEmpty else { return }
        for a in step.alerts where a.status == .fired {
            children[ci].emitted.append(EmittedAlert(alertId: a.alertId, recordId: a.alertId, rule: Int32(a.ruleIndex), firedAt: a.firedAt,
                                                     deadline: a.deadline, trigger: a.evidence[0]))
        }
        alerts += step.alerts
        step.alerts.removeAll(keepingCapacity: true)
    }

    mutating func childIndex(_ id: String, hash: UInt64) -> Int {
        if let i = index.find(id, hash: hash, in: children) { return i }
        let i = children.count
        children.append(ChildState(id: id))
        index.insert(i, hash: hash)
        return i
    }
}
