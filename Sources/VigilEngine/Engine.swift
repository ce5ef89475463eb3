import VigilContract
import VigilRules

/// Bounds on what the engine keeps per child. Beyond them the oldest entries are dropped and counted
/// in `EngineStats.overflowDrops`, so one pathological child cannot exhaust memory.
public struct EngineLimits: Sendable {
    /// Events with the same id within this span are duplicates (RULES.md: 400 days).
    public var duplicateHorizon: Int64 = 400 * Instant.microsPerDay
    public var maxSeenPerChild = 4096
    public var maxWindowEntriesPerChild = 4096
    public var maxPendingPerChild = 1024
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
    public var withdrawn = 0
    /// Events for a child whose previous event came from another clock domain (input partition): the input
    /// is not keyed by child id.
    public var domainChanges = 0

    public init() {}

    public mutating func add(_ o: EngineStats) {
        events += o.events; duplicates += o.duplicates; alerts += o.alerts; suppressed += o.suppressed
        deadlinesArmed += o.deadlinesArmed; deadlinesMet += o.deadlinesMet; deadlinesCancelled += o.deadlinesCancelled
        deadlinesFired += o.deadlinesFired; overflowDrops += o.overflowDrops; pendingRefused += o.pendingRefused
        withdrawn += o.withdrawn; domainChanges += o.domainChanges
    }
}

/// The rule engine: per-child state, windows, expectations and a deadline queue, driven by an explicit
/// event-time clock. It never reads the wall clock.
///
/// A value type owned by one thread at a time; it is `Sendable` so it can be handed to a worker thread.
/// Per event: `advance(to:)` with the clock, then `process(_:position:into:)`.
public struct Engine: Sendable {
    public let rules: CompiledRuleSet
    public let limits: EngineLimits
    let formatter: AlertFormatter
    var children: [ChildState] = []
    var index = ChildIndex()
    let tables: EngineTables
    /// One deadline queue per clock domain (an input partition; replay uses domain 0).
    var queues: [DeadlineQueue] = [DeadlineQueue()]
    var seq: UInt64 = 0
    public internal(set) var stats = EngineStats()
    /// The instant the clock was last advanced to.
    public internal(set) var clock: Instant = .distantPast
    let emptyRecord: EventRecord
    let c: EventContract

    public init(rules: CompiledRuleSet, limits: EngineLimits = EngineLimits()) {
        self.rules = rules
        self.limits = limits
        self.formatter = AlertFormatter(rules: rules)
        self.tables = EngineTables(rules)
        self.c = rules.contract
        self.emptyRecord = EventRecord(slotCount: rules.contract.slotCount)
    }

    public var childCount: Int { children.count }
    public var pendingDeadlines: Int { children.reduce(0) { $0 + $1.pending.count } }

    /// The state of one child, if known (tests and tools).
    public func child(_ id: String) -> ChildState? { index.find(id, hash: stableHash(id), in: children).map { children[$0] } }

    /// Approximate bytes of per-child state (benchmarks).
    public var approximateStateBytes: Int {
        children.reduce(0) { $0 + $1.approximateBytes } + index.slotCount * 16 + queues.reduce(0) { $0 + $1.count } * MemoryLayout<Timer>.stride
    }

    public enum Outcome: Sendable, Equatable {
        case processed
        case duplicate
        /// The record lacks an envelope field: it was not decoded by a contract decoder. Nothing was applied.
        case incomplete
    }

    // MARK: clock

    /// Fires every pending deadline at or before `t` in every clock domain, in (deadline, arming order) order
    /// within a domain.
    public mutating func advance(to t: Instant, into alerts: inout [Alert]) {
        for d in queues.indices { advance(domain: d, to: t, into: &alerts) }
    }

    /// Fires the pending deadlines at or before `t` of the children whose events come from `domain`.
    public mutating func advance(domain d: Int, to t: Instant, into alerts: inout [Alert]) {
        if t > clock { clock = t }
        guard d >= 0, d < queues.count else { return }
        while let top = queues[d].top, top.deadline <= t {
            _ = queues[d].pop()
            let ci = Int(top.child)
            guard let pi = children[ci].pending.firstIndex(where: { $0.id == top.pending }),
                  children[ci].pending[pi].deadline == top.deadline else { continue }
            let p = children[ci].pending.remove(at: pi)
            children[ci].dirty = true
            let ri = Int(p.rule)
            let rule = rules.rules[ri]
            if let fireIf = rule.expectation?.fireIf, !eval(fireIf, emptyRecord, ci, p.deadline) { continue }
            stats.deadlinesFired += 1
            let before = alerts.count
            fire(ri, ci, at: p.deadline, deadline: p.deadline, trigger: p.ref, args: p.args, record: nil, into: &alerts)
            if alerts.count > before, let fired = alerts.last {
                // Remember it: an event that arrives late and would have met it withdraws it.
                let horizon = limits.duplicateHorizon
                children[ci].firedExpectations.removeAll { $0.deadline.micros < p.deadline.micros - horizon }
                if children[ci].firedExpectations.count >= limits.maxPendingPerChild {
                    children[ci].firedExpectations.removeFirst()
                    stats.overflowDrops += 1
                }
                children[ci].firedExpectations.append(FiredExpectation(rule: p.rule, key: p.key, armedAt: p.armedAt, deadline: p.deadline,
                                                                       alertId: fired.alertId, armRef: p.ref))
            }
        }
    }

    // MARK: events

    /// Applies one validated event (decoded with a decoder that captures `rules.capturedSlots`).
    ///
    /// `domain` is the clock domain (input partition) the event came from; the child's future deadlines are
    /// kept in that domain's queue.
    @discardableResult
    public mutating func process(_ r: EventRecord, position: SourcePosition? = nil, domain: Int = 0, into alerts: inout [Alert]) -> Outcome {
        guard case .symbol(let typeSym) = r[c.typeSlot], case .string(let childId) = r[c.childIdSlot],
              case .instant(let at) = r[c.occurredAtSlot], case .string(let eventId) = r[c.eventIdSlot],
              case .symbol(let agency) = r[c.agencySlot], c.eventTypeIndex(typeSym) >= 0 else {
            return .incomplete
        }
        let t = c.eventTypeIndex(typeSym)
        let ci = childIndex(childId, hash: stableHash(childId))
        stats.events += 1
        children[ci].dirty = true
        if domain >= 0 {
            if children[ci].domain != Int32(domain) && children[ci].newest != .distantPast { stats.domainChanges += 1 }
            children[ci].domain = Int32(domain)
            while queues.count <= domain { queues.append(DeadlineQueue()) }
        }

        // Duplicates: same event id for the same child within the horizon.
        let h = stableHash(eventId)
        let horizon = limits.duplicateHorizon
        if children[ci].seen.contains(where: { $0.idHash == h && abs($0.at.micros - at.micros) <= horizon }) {
            stats.duplicates += 1
            return .duplicate
        }
        if at > children[ci].newest { children[ci].newest = at }
        let newest = children[ci].newest
        if let oldest = children[ci].seen.first, oldest.at.micros < newest.micros - horizon {
            children[ci].seen.removeAll { $0.at.micros < newest.micros - horizon }
        }
        if children[ci].seen.count >= limits.maxSeenPerChild {
            children[ci].seen.removeFirst()
            stats.overflowDrops += 1
        }
        children[ci].seen.append(SeenEvent(idHash: h, at: at))

        let ref = EventRef(eventId: eventId, type: typeSym, agency: agency, occurredAt: at, position: position)
        let d = tables.ranges[t]
        let lists = tables.lists
        for k in d.states { updateState(Int(lists[k]), r, ci, ref) }
        for k in d.windows { appendWindow(Int(lists[k]), r, ci, ref) }
        if let oldest = children[ci].entries.first, oldest.at.micros < newest.micros - tables.minimumRetention { pruneWindows(ci) }
        for k in d.checks { checkExpectation(Int(lists[k]), r, ci, ref, into: &alerts) }
        for k in d.immediates {
            let ri = Int(lists[k])
            guard let code = rules.rules[ri].immediate, eval(code, r, ci, at) else { continue }
            fire(ri, ci, at: at, deadline: nil, trigger: ref, args: nil, record: r, into: &alerts)
        }
        var lastArmed = -1
        for k in stride(from: d.arms.lowerBound, to: d.arms.upperBound, by: 2) {
            let ri = Int(lists[k]), clause = Int(lists[k + 1])
            guard ri != lastArmed, let exp = rules.rules[ri].expectation, eval(exp.arms[clause].condition, r, ci, at) else { continue }
            arm(ri, clause, exp, r, ci, ref)
            lastArmed = ri
        }
        return .processed
    }

    mutating func childIndex(_ id: String, hash: UInt64) -> Int {
        if let i = index.find(id, hash: hash, in: children) { return i }
        let i = children.count
        children.append(ChildState(id: id))
        index.insert(i, hash: hash)
        return i
    }



    /// Correlation/state key: field values joined; a missing value is `\0` so it only matches a missing value.
    func key(_ slots: [Int], _ r: EventRecord) -> String {
        if slots.isEmpty { return "" }
        var s = ""
        for (k, slot) in slots.enumerated() {
            if k > 0 { s += "\u{1F}" }
            s += render(r[slot]) ?? "\u{0}"
        }
        return s
    }

    /// A value as text (for keys and templates); nil when missing.
    func render(_ v: FieldValue) -> String? {
        switch v {
        case .missing: return nil
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .symbol(let s): return c.symbols.name(s)
        case .string(let s): return s
        case .date(let d): return d.description
        case .instant(let t): return t.description
        case .symbols(let set): return set.members.map { c.symbols.name($0) }.joined(separator: ",")
        case .strings(let a): return a.joined(separator: ",")
        }
    }

    mutating func updateState(_ s: Int, _ r: EventRecord, _ ci: Int, _ ref: EventRef) {
        let def = rules.states[s]
        guard eval(def.condition, r, ci, ref.occurredAt) else { return }
        let k = def.isKeyed ? key(def.keySlots, r) : ""
        let value = r[def.valueSlot]
        let existing = children[ci].states.firstIndex { $0.state == UInt16(s) && $0.key == k }
        if value.isMissing {
            if let existing { children[ci].states.remove(at: existing) }
            return
        }
        let entry = StateEntry(state: UInt16(s), key: k, value: value, ref: ref)
        if let existing {
            children[ci].states[existing] = entry
        } else {
            if children[ci].states.count >= limits.maxStatesPerChild {
                children[ci].states.removeFirst()
                stats.overflowDrops += 1
            }
            children[ci].states.append(entry)
        }
    }

    mutating func appendWindow(_ w: Int, _ r: EventRecord, _ ci: Int, _ ref: EventRef) {
        let def = rules.windows[w]
        guard eval(def.condition, r, ci, ref.occurredAt) else { return }
        var distinct: UInt64 = 0
        if let slot = def.distinctSlot {
            switch r[slot] {
            case .symbol(let s): distinct = UInt64(s.id) | (1 << 62)
            case .string(let s): distinct = stableHash(s)
            case .int(let i): distinct = UInt64(bitPattern: i)
            case .bool(let b): distinct = b ? 1 : 2
            default: return  // no value to count
            }
        }
        if children[ci].entries.count >= limits.maxWindowEntriesPerChild {
            children[ci].entries.removeFirst()
            stats.overflowDrops += 1
        }
        children[ci].entries.append(WindowEntry(window: UInt16(w), at: ref.occurredAt, distinct: distinct,
                                                key: key(def.keySlots, r), ref: ref))
    }

    mutating func pruneWindows(_ ci: Int) {
        let newest = children[ci].newest.micros
        let windows = rules.windows
        children[ci].entries.removeAll { e in e.at.micros < newest - windows[Int(e.window)].retention }
    }

    mutating func checkExpectation(_ ri: Int, _ r: EventRecord, _ ci: Int, _ ref: EventRef, into alerts: inout [Alert]) {
        let rule = Int32(ri)
        guard let exp = rules.rules[ri].expectation,
              children[ci].pending.contains(where: { $0.rule == rule }) || children[ci].firedExpectations.contains(where: { $0.rule == rule })
        else { return }
        let at = ref.occurredAt
        let met = exp.met.map { eval($0, r, ci, at) } ?? false
        let cancel = !met && (exp.cancel.map { eval($0, r, ci, at) } ?? false)
        guard met || cancel else { return }
        let k = key(exp.correlateSlots, r)
        let lookback = exp.lookback?.micros
        func meets(_ armedAt: Instant, _ deadline: Instant) -> Bool {
            at < deadline && (!met || lookback.map { at.micros >= armedAt.micros - $0 } ?? true)
        }
        let before = children[ci].pending.count
        children[ci].pending.removeAll { p in p.rule == rule && p.key == k && meets(p.armedAt, p.deadline) }
        let removed = before - children[ci].pending.count
        if met { stats.deadlinesMet += removed } else { stats.deadlinesCancelled += removed }
        // A late event that meets an expectation whose alert already fired withdraws that alert.
        guard met, let i = children[ci].firedExpectations.firstIndex(where: { $0.rule == rule && $0.key == k && meets($0.armedAt, $0.deadline) })
        else { return }
        let f = children[ci].firedExpectations.remove(at: i)
        let childId = children[ci].id
        let rid = rules.rules[ri].id
        let id = Alert.identity(ruleId: rid, childId: childId, firedAt: f.deadline, eventIds: ["withdraws:" + f.alertId, ref.eventId])
        stats.withdrawn += 1
        stats.alerts += 1
        alerts.append(Alert(alertId: id, status: .withdrawn, withdraws: f.alertId, ruleIndex: ri, childId: childId, firedAt: f.deadline,
                            deadline: f.deadline,
                            summary: "Withdrawn: event \(ref.eventId), recorded late, meets this expectation before its deadline",
                            evidence: [ref, f.armRef]))
    }

    func deadline(_ rule: DeadlineRule, _ r: EventRecord, _ at: Instant) -> Instant? {
        switch rule {
        case .exact(let m): return at + m
        case .workingDays(let n, let cal): return rules.calendars[cal].deadline(workingDays: n, after: at)
        case .months(let n, let cal): return rules.calendars[cal].deadline(months: n, after: at)
        case .dateFieldPlusMonths(let slot, let n, let cal):
            guard case .date(let d) = r[slot] else { return nil }
            return rules.calendars[cal].start(of: d, plusMonths: n)
        case .dateFieldPlusDays(let slot, let n, let cal):
            guard case .date(let d) = r[slot] else { return nil }
            return rules.calendars[cal].zone.startOfDay(d.adding(days: n))
        case .instantFieldPlus(let slot, let m):
            guard case .instant(let t) = r[slot] else { return nil }
            return t + m
        }
    }

    mutating func arm(_ ri: Int, _ clause: Int, _ exp: ExpectationDefinition, _ r: EventRecord, _ ci: Int, _ ref: EventRef) {
        guard let due = deadline(exp.arms[clause].deadline, r, ref.occurredAt) else { return }
        let k = key(exp.correlateSlots, r)
        if let lb = exp.lookback {
            // An event read before this one (not this one itself) that occurred in [armed - lookback, deadline) meets it already.
            let from = ref.occurredAt.micros - lb.micros
            let satisfied = children[ci].entries.contains { e in
                Int(e.window) == lb.window && e.key == k && e.at.micros >= from && e.at < due
                    && !(e.ref.eventId == ref.eventId && e.at == ref.occurredAt)
            }
            if satisfied {
                stats.deadlinesMet += 1
                return
            }
        }
        if exp.single, let existing = children[ci].pending.firstIndex(where: { $0.rule == Int32(ri) && $0.key == k }) {
            if children[ci].pending[existing].deadline == due { return }
            children[ci].pending.remove(at: existing)
        }
        guard children[ci].pending.count < limits.maxPendingPerChild else {
            stats.pendingRefused += 1
            return
        }
        let rule = rules.rules[ri]
        let args = rule.templateSlots.map { render(r[$0]) ?? "unknown" }
        let id = children[ci].nextPendingId
        children[ci].nextPendingId &+= 1
        seq += 1
        children[ci].pending.append(PendingExpectation(rule: Int32(ri), clause: Int16(clause), id: id, seq: seq, key: k,
                                                       armedAt: ref.occurredAt, deadline: due, ref: ref, args: args))
        queues[Int(children[ci].domain)].push(Timer(deadline: due, seq: seq, child: Int32(ci), pending: id))
        stats.deadlinesArmed += 1
    }

    // MARK: alerts

    mutating func fire(_ ri: Int, _ ci: Int, at firedAt: Instant, deadline: Instant?, trigger: EventRef, args: [String]?,
                       record: EventRecord?, into alerts: inout [Alert]) {
        let rule = rules.rules[ri]
        if let window = rule.suppressMicros {
            if let mark = children[ci].fired.first(where: { $0.rule == Int32(ri) }),
               window == Int64.max || mark.at.micros > firedAt.micros - window {
                stats.suppressed += 1
                return
            }
            children[ci].fired.removeAll { $0.rule == Int32(ri) }
            children[ci].fired.append(FiredMark(rule: Int32(ri), at: firedAt))
        }
        var cited: [EventRef] = []
        if record != nil {
            for (w, micros) in rule.evidenceWindows {
                let lower = firedAt.micros - micros
                for e in children[ci].entries where Int(e.window) == w && e.at.micros > lower && e.at <= firedAt {
                    cited.append(e.ref)
                }
            }
        }
        for (s, value) in rule.evidenceStates {
            for e in children[ci].states where Int(e.state) == s && (value == nil || e.value == value) { cited.append(e.ref) }
        }
        cited.sort { ($0.occurredAt, $0.eventId) < ($1.occurredAt, $1.eventId) }
        var evidence = [trigger]
        for e in cited where !evidence.contains(where: { $0.eventId == e.eventId && $0.occurredAt == e.occurredAt }) {
            if evidence.count >= limits.maxEvidence { break }
            evidence.append(e)
        }
        let childId = children[ci].id
        var argIndex = 0
        var summary = ""
        for part in rule.template {
            switch part {
            case .text(let t): summary += t
            case .field(let slot):
                if let args {
                    summary += argIndex < args.count ? args[argIndex] : "unknown"
                } else if let record {
                    summary += render(record[slot]) ?? "unknown"
                }
                argIndex += 1
            case .deadline: summary += deadline?.description ?? "-"
            case .firedAt: summary += firedAt.description
            case .childId: summary += childId
            case .ruleId: summary += rule.id
            case .severity: summary += rule.severity.rawValue
            }
        }
        let id = Alert.identity(ruleId: rule.id, childId: childId, firedAt: firedAt, eventIds: evidence.map(\.eventId))
        stats.alerts += 1
        alerts.append(Alert(alertId: id, status: .fired, withdraws: nil, ruleIndex: ri, childId: childId, firedAt: firedAt,
                            deadline: deadline, summary: summary, evidence: evidence))
    }
}
