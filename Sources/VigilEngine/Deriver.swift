import VigilContract
import VigilRules

/// Applies the compiled rules to one child's derivation: an event, or the clock reaching its deadlines.
/// The same code serves the live path, folding the timeline into the base, and re-deriving a child when a
/// record arrives late. No state of its own: everything it changes is passed in.
///
/// A class: called from the engine's mutating methods, the struct it was (about 500 bytes, a retain of each
/// array in it) was copied to the stack before every call, twice an event.
final class Deriver: Sendable {
    let rules: CompiledRuleSet
    let limits: EngineLimits
    let tables: EngineTables
    let c: EventContract
    let emptyRecord: EventRecord
    /// The zone `{deadline}` is written in for a person to read: the pack's first calendar's (UTC without one).
    let displayZone: ZoneTable?
    /// Slots a timeline keeps per event: every one a rule could read (not only those this pack reads, so that a
    /// rule added later can be derived over the history), but the envelope (kept apart).
    let timelineSlot: [Bool]
    /// Slots this pack reads (`capturedSlots`): all a re-derivation takes of a timeline event's fields
    /// (`PackedRecord`).
    let readSlot: [Bool]

    init(rules: CompiledRuleSet, limits: EngineLimits) {
        self.rules = rules
        self.limits = limits
        tables = EngineTables(rules)
        displayZone = rules.calendars.first?.zone
        c = rules.contract
        emptyRecord = EventRecord(slotCount: rules.contract.slotCount)
        var keep = [Bool](repeating: false, count: rules.contract.slotCount)
        for s in Engine.decodedSlots(rules) { keep[s] = true }
        for s in [c.eventIdSlot, c.typeSlot, c.occurredAtSlot, c.agencySlot, c.childIdSlot] { keep[s] = false }
        timelineSlot = keep
        var read = [Bool](repeating: false, count: rules.contract.slotCount)
        for s in rules.capturedSlots where s >= 0 && s < read.count { read[s] = true }
        readSlot = read
    }

    /// What a derivation step needs besides the derivation: the child, the engine's arming counter and
    /// counters, and where alerts go.
    struct Context {
        var child: String
        var seq: UInt64
        var counts = Counts()
        var alerts: [Alert] = []
        var datesPlusMonths = DatesPlusMonths()
    }

    /// What a derivation step counts, added to the engine's `EngineStats` when the step is done (moving the
    /// whole `EngineStats` in and out of every step cost three copies of it each way).
    struct Counts {
        var alerts = 0
        var suppressed = 0
        var deadlinesArmed = 0
        var deadlinesMet = 0
        var deadlinesCancelled = 0
        var deadlinesFired = 0
        var overflowDrops = 0
        var pendingRefused = 0
        var suppressedByRule: [String: Int] = [:]

        /// Whether anything was counted (most steps of an event that arms nothing count nothing).
        var any: Bool {
            alerts | suppressed | deadlinesArmed | deadlinesMet | deadlinesCancelled | deadlinesFired | overflowDrops | pendingRefused != 0
        }
    }

    /// The last four instants worked out as a date plus months (`at: child.date_of_birth + 5 months`): one
    /// child's date, armed again and again as a re-derivation goes over its events.
    struct DatesPlusMonths {
        struct Entry: Equatable {
            var day: Day
            var months: Int
            var calendar: Int
            /// No entry: a calendar no pack has.
            static let none = Entry(day: Day(number: 0), months: 0, calendar: -1)
        }
        var entries: (Entry, Entry, Entry, Entry) = (.none, .none, .none, .none)
        var instants: (Instant, Instant, Instant, Instant) = (.distantPast, .distantPast, .distantPast, .distantPast)

        mutating func instant(_ day: Day, plus months: Int, in calendar: Int, _ calendars: [WorkingCalendar]) -> Instant {
            let key = Entry(day: day, months: months, calendar: calendar)
            if entries.0 == key { return instants.0 }
            if entries.1 == key { return instants.1 }
            if entries.2 == key { return instants.2 }
            if entries.3 == key { return instants.3 }
            let at = calendars[calendar].start(of: day, plusMonths: months)
            entries = (key, entries.0, entries.1, entries.2)
            instants = (at, instants.0, instants.1, instants.2)
            return at
        }
    }

    // MARK: events

    /// Applies one event (of event type index `t`) to `d`.
    func apply<R: FieldReader>(_ r: R, ref: EventRef, type t: Int, to d: inout Derivation, _ x: inout Context) {
        record(r, ref: ref, type: t, in: &d, &x)
        react(to: r, ref: ref, type: t, in: &d, &x)
    }

    /// An event's first half: the states and windows it updates (what the rules then read).
    @inline(__always) func record<R: FieldReader>(_ r: R, ref: EventRef, type t: Int, in d: inout Derivation, _ x: inout Context) {
        let at = ref.occurredAt
        if at > d.newest { d.newest = at }
        if at > d.through { d.through = at }
        let ranges = tables.ranges[t]
        let lists = tables.lists
        for k in ranges.states { updateState(Int(lists[k]), entry: k, r, &d, ref, &x) }
        for k in ranges.windows { appendWindow(Int(lists[k]), entry: k, r, &d, ref, &x) }
        if let oldest = d.entries.first, oldest.at.micros < d.newest.micros - tables.minimumRetention { pruneWindows(&d) }
    }

    /// An event's second half: the rules' reactions to it (expectations met or cancelled, immediate rules,
    /// expectations armed), over the derivation `record` left.
    @inline(__always) func react<R: FieldReader>(to r: R, ref: EventRef, type t: Int, in d: inout Derivation, _ x: inout Context) {
        let at = ref.occurredAt
        let ranges = tables.ranges[t]
        let lists = tables.lists
        for k in ranges.checks { checkExpectation(Int(lists[k]), r, &d, ref, &x) }
        for k in ranges.immediates {
            let ri = Int(lists[k])
            guard let code = tables.immediates[ri], eval(tables.entered(code, k), r, d, at) else { continue }
            fire(ri, &d, at: at, deadline: nil, trigger: ref, args: nil, record: r, &x)
        }
        var lastArmed = -1
        for k in stride(from: ranges.arms.lowerBound, to: ranges.arms.upperBound, by: 2) {
            let ri = Int(lists[k]), clause = Int(lists[k + 1])
            guard ri != lastArmed, let exp = tables.expectations[ri], eval(tables.entered(tables.armClauses[exp.arms.lowerBound + clause].condition, k), r, d, at) else { continue }
            arm(ri, clause, exp, r, &d, ref, &x)
            lastArmed = ri
        }
    }

    /// Brings `d` to `t`: pops its pending expectations due at or before `t`, in (deadline, arming) order,
    /// firing those whose condition holds.
    func popDue(_ d: inout Derivation, through t: Instant, _ x: inout Context) {
        if t > d.through { d.through = t }
        while true {
            var best = -1
            for (i, p) in d.pending.enumerated() where p.deadline <= t {
                if best < 0 || p.deadline < d.pending[best].deadline || (p.deadline == d.pending[best].deadline && p.seq < d.pending[best].seq) {
                    best = i
                }
            }
            guard best >= 0 else {
                ChildState.trim(&d.pending)
                return
            }
            let p = d.pending.remove(at: best)
            let ri = Int(p.rule)
            if let fireIf = tables.expectations[ri]?.fireIf, !eval(fireIf, emptyRecord, d, p.deadline) { continue }
            x.counts.deadlinesFired += 1
            fire(ri, &d, at: p.deadline, deadline: p.deadline, trigger: p.ref, args: p.args, record: EventRecord?.none, &x)
        }
    }

    // MARK: state and windows

    /// Correlation/state key: field values joined; a missing value is `\0` so it only matches a missing value.
    func key<R: FieldReader>(_ slots: [Int], _ r: R) -> String {
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

    /// Updates state `s` for the event `r`, dispatched as entry `k` of the tables' lists.
    func updateState<R: FieldReader>(_ s: Int, entry k: Int, _ r: R, _ d: inout Derivation, _ ref: EventRef, _ x: inout Context) {
        let def = tables.states[s]
        guard eval(tables.entered(def.condition, k), r, d, ref.occurredAt) else { return }
        let k = key(tables.stateKeys[s], r)  // "" for a state without a key
        let value = r[def.valueSlot]
        let existing = d.states.firstIndex { $0.state == UInt16(s) && $0.key == k }
        if value.isMissing {
            if let existing { d.states.remove(at: existing) }
            return
        }
        let entry = StateEntry(state: UInt16(s), key: k, value: value, ref: ref)
        if let existing {
            d.states[existing] = entry
        } else {
            if d.states.count >= limits.maxStatesPerChild {
                d.states.removeFirst()
                x.counts.overflowDrops += 1
            }
            ChildState.makeRoom(&d.states, for: 1)
            d.states.append(entry)
        }
    }

    /// Adds the event `r`, dispatched as entry `k` of the tables' lists, to window `w`.
    func appendWindow<R: FieldReader>(_ w: Int, entry k: Int, _ r: R, _ d: inout Derivation, _ ref: EventRef, _ x: inout Context) {
        let def = tables.windows[w]
        guard eval(tables.entered(def.condition, k), r, d, ref.occurredAt) else { return }
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
        if d.entries.count >= limits.maxWindowEntriesPerChild {
            d.entries.removeFirst()
            x.counts.overflowDrops += 1
        }
        ChildState.makeRoom(&d.entries, for: 1)
        d.entries.append(WindowEntry(window: UInt16(w), distinct: distinct, key: key(tables.windowKeys[w], r), ref: ref))
    }

    func pruneWindows(_ d: inout Derivation) {
        let newest = d.newest.micros
        let windows = tables.windows
        d.entries.removeAll { e in e.at.micros < newest - windows[Int(e.window)].retention }
        ChildState.trim(&d.entries)
    }

    // MARK: expectations

    func checkExpectation<R: FieldReader>(_ ri: Int, _ r: R, _ d: inout Derivation, _ ref: EventRef, _ x: inout Context) {
        let rule = Int32(ri)
        guard let exp = tables.expectations[ri], d.pending.contains(where: { $0.rule == rule }) else { return }
        let at = ref.occurredAt
        let met = exp.met.map { eval($0, r, d, at) } ?? false
        let cancel = !met && (exp.cancel.map { eval($0, r, d, at) } ?? false)
        guard met || cancel else { return }
        let k = key(tables.correlate[ri], r)
        let lookback = exp.lookback?.micros
        let before = d.pending.count
        d.pending.removeAll { p in
            p.rule == rule && p.key == k && at < p.deadline && (!met || lookback.map { at.micros >= p.armedAt.micros - $0 } ?? true)
        }
        let removed = before - d.pending.count
        ChildState.trim(&d.pending)
        if met { x.counts.deadlinesMet += removed } else { x.counts.deadlinesCancelled += removed }
    }

    /// When an expectation armed by `r` at `at` falls due under `rule` (nil when the field it needs is missing).
    func deadline(_ rule: DeadlineRule, _ r: EventRecord, _ at: Instant) -> Instant? {
        var memo = DatesPlusMonths()
        return deadline(rule, r, at, &memo)
    }

    /// The same, a date plus months looked up in `memo` first.
    func deadline<R: FieldReader>(_ rule: DeadlineRule, _ r: R, _ at: Instant, _ memo: inout DatesPlusMonths) -> Instant? {
        switch rule {
        case .exact(let m): return at + m
        case .workingDays(let n, let cal): return rules.calendars[cal].deadline(workingDays: n, after: at)
        case .months(let n, let cal): return rules.calendars[cal].deadline(months: n, after: at)
        case .dateFieldPlusMonths(let slot, let n, let cal):
            guard let d = r.date(at: slot) else { return nil }
            return memo.instant(d, plus: n, in: cal, rules.calendars)
        case .dateFieldPlusDays(let slot, let n, let cal):
            guard let d = r.date(at: slot) else { return nil }
            return rules.calendars[cal].zone.startOfDay(d.adding(days: n))
        case .instantFieldPlus(let slot, let m):
            guard let t = r.instant(at: slot) else { return nil }
            return t + m
        }
    }

    func arm<R: FieldReader>(_ ri: Int, _ clause: Int, _ exp: EngineTables.Expectation, _ r: R, _ d: inout Derivation, _ ref: EventRef, _ x: inout Context) {
        guard let due = deadline(tables.armClauses[exp.arms.lowerBound + clause].deadline, r, ref.occurredAt, &x.datesPlusMonths) else { return }
        let k = key(tables.correlate[ri], r)
        if let lb = exp.lookback {
            // An event applied before this one (not this one itself) that occurred in [armed - lookback, deadline) meets it already.
            let from = ref.occurredAt.micros - lb.micros
            let satisfied = d.entries.contains { e in
                Int(e.window) == lb.window && e.key == k && e.at.micros >= from && e.at < due
                    && !(e.ref.eventId == ref.eventId && e.at == ref.occurredAt)
            }
            if satisfied {
                x.counts.deadlinesMet += 1
                return
            }
        }
        if exp.single, let existing = d.pending.firstIndex(where: { $0.rule == Int32(ri) && $0.key == k }) {
            if d.pending[existing].deadline == due { return }
            d.pending.remove(at: existing)
        }
        guard d.pending.count < limits.maxPendingPerChild else {
            x.counts.pendingRefused += 1
            return
        }
        let args = rules.rules[ri].templateSlots.map { render(r[$0]) ?? "unknown" }
        let id = d.nextPendingId
        d.nextPendingId &+= 1
        x.seq += 1
        ChildState.makeRoom(&d.pending, for: 1)
        d.pending.append(PendingExpectation(rule: Int32(ri), clause: Int16(clause), id: id, seq: x.seq, key: k,
                                            deadline: due, ref: ref, args: args))
        x.counts.deadlinesArmed += 1
    }

    // MARK: alerts

    func fire<R: FieldReader>(_ ri: Int, _ d: inout Derivation, at firedAt: Instant, deadline: Instant?, trigger: EventRef, args: [String]?,
              record: R?, _ x: inout Context) {
        let rule = rules.rules[ri]
        if let window = rule.suppressMicros {
            if let mark = d.fired.first(where: { $0.rule == Int32(ri) }),
               window == Int64.max || mark.at.micros > firedAt.micros - window {
                x.counts.suppressed += 1
                x.counts.suppressedByRule[rule.id, default: 0] += 1
                return
            }
            d.fired.removeAll { $0.rule == Int32(ri) }
            d.fired.append(FiredMark(rule: Int32(ri), at: firedAt))
        }
        var cited: [EventRef] = []
        if record != nil {
            for (w, micros) in rule.evidenceWindows {
                let lower = firedAt.micros - micros
                for e in d.entries where Int(e.window) == w && e.at.micros > lower && e.at <= firedAt {
                    cited.append(e.ref)
                }
            }
        }
        for (s, value) in rule.evidenceStates {
            for e in d.states where Int(e.state) == s && (value == nil || e.value == value) { cited.append(e.ref) }
        }
        cited.sort { ($0.occurredAt, $0.eventId) < ($1.occurredAt, $1.eventId) }
        var evidence = [trigger]
        for e in cited where !evidence.contains(where: { $0.eventId == e.eventId && $0.occurredAt == e.occurredAt }) {
            if evidence.count >= limits.maxEvidence { break }
            evidence.append(e)
        }
        var argIndex = 0
        func render(_ template: [TemplatePart]) -> String {
            var text = ""
            for part in template {
                switch part {
                case .text(let t): text += t
                case .field(let slot):
                    if let args {
                        text += argIndex < args.count ? args[argIndex] : "unknown"
                    } else if let record {
                        text += self.render(record[slot]) ?? "unknown"
                    }
                    argIndex += 1
                case .deadline: text += deadline.map { displayZone?.format($0) ?? $0.description } ?? "-"
                case .firedAt: text += firedAt.description
                case .childId: text += x.child
                case .ruleId: text += rule.id
                case .severity: text += rule.severity.rawValue
                }
            }
            return text
        }
        let summary = render(rule.template)
        let id = Alert.identity(ruleId: rule.id, childId: x.child, firedAt: firedAt, eventIds: evidence.map(\.eventId))
        x.counts.alerts += 1
        var alert = Alert(alertId: id, status: .fired, withdraws: nil, ruleIndex: ri, childId: x.child, firedAt: firedAt,
                          deadline: deadline, summary: summary, evidence: evidence)
        if !rule.annotations.isEmpty { alert.annotations = rule.annotations.map { render($0.template) } }
        x.alerts.append(alert)
    }
}
