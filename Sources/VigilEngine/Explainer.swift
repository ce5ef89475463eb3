import VigilContract
import VigilRules

/// Why one rule did or did not fire for one child: the child's events derived in event-time order by the
/// engine's own code (`Deriver`), and at each event the rule reads, what the rule made of it: the condition
/// that held or the first part that failed (with the value it saw), the expectation armed and how its deadline
/// was computed, met, cancelled or left; then the deadlines that fell due and what is still pending.
///
/// Times read by a person are in the pack's zone with the offset (`2007-04-19T00:00:00+01:00`); alert JSON
/// stays UTC.
public struct Explainer: Sendable {
    public let rules: CompiledRuleSet
    let deriver: Deriver
    let limits: EngineLimits

    public init(rules: CompiledRuleSet, limits: EngineLimits = EngineLimits()) {
        self.rules = rules
        self.limits = limits
        deriver = Deriver(rules: rules, limits: limits)
    }

    public struct Explanation: Sendable {
        /// The trace, one line each, indented by level.
        public var lines: [String]
        /// The alerts the rule raised for the child (as the engine raises them).
        public var alerts: [Alert]
    }

    public enum Failure: Error, Sendable, CustomStringConvertible {
        case unknownRule(String, known: [String])
        public var description: String {
            switch self {
            case .unknownRule(let id, let known):
                return "no rule '\(id)' in the pack" + (suggestion(for: id, among: known).first.map { " (\($0))" } ?? "")
            }
        }
    }

    /// A time as a person reads it: local in the pack's zone, with the offset; UTC in brackets when it differs.
    public func when(_ t: Instant) -> String {
        guard let zone = deriver.displayZone else { return t.description }
        let local = zone.format(t)
        return local.hasSuffix("+00:00") ? local : "\(local) (\(t))"
    }

    /// Explains rule `ruleId` for `child` over `records` (the child's events, any order; others are ignored),
    /// with the clock run on to `through` at the end (the replay's last event time, or `--until`).
    public func explain(rule ruleId: String, child: String, records: [EventRecord], through: Instant?) throws -> Explanation {
        guard let ri = rules.rules.firstIndex(where: { $0.id == ruleId }) else {
            throw Failure.unknownRule(ruleId, known: rules.rules.map(\.id))
        }
        let c = rules.contract
        let rule = rules.rules[ri]
        var mine: [(Int, EventRecord, EventRef)] = []
        for (k, r) in records.enumerated() {
            guard case .string(let id) = r[c.childIdSlot], id == child, case .symbol(let type) = r[c.typeSlot],
                  case .instant(let at) = r[c.occurredAtSlot], case .string(let eventId) = r[c.eventIdSlot],
                  case .symbol(let agency) = r[c.agencySlot], c.eventTypeIndex(type) >= 0 else { continue }
            mine.append((k, r, EventRef(eventId: eventId, type: type, agency: agency, occurredAt: at)))
        }
        mine.sort { ($0.2.occurredAt, $0.0) < ($1.2.occurredAt, $1.0) }
        let reads = typesRead(ri)

        var out = Trace(explainer: self, rule: ri)
        out.line(0, "rule \(rule.id): \(rule.title)")
        out.line(1, "version \(rule.version), \(rule.kind), \(rule.severity.rawValue), \(rule.mode.rawValue); defined at \(rule.location)")
        let readNames = reads.sorted().map { c.eventTypes[$0] }
        out.line(1, "reads \(readNames.joined(separator: ", "))")
        out.line(0, "child \(child): \(mine.count) event\(mine.count == 1 ? "" : "s"), \(mine.filter { reads.contains(c.eventTypeIndex($0.2.type)) }.count) of a type the rule reads")

        var d = Derivation()
        var x = Deriver.Context(child: child, seq: 0)
        var seen: [(id: String, at: Instant)] = []
        for (_, r, ref) in mine {
            let t = c.eventTypeIndex(ref.type)
            out.deadlines(&d, through: ref.occurredAt, &x)
            let relevant = reads.contains(t)
            if seen.contains(where: { $0.id == ref.eventId && abs(ref.occurredAt.micros - $0.at.micros) <= limits.duplicateHorizon }) {
                if relevant { out.event(ref, ["ignored: an event with this id was applied already (a duplicate)"]) }
                continue
            }
            seen.append((ref.eventId, ref.occurredAt))
            deriver.record(r, ref: ref, type: t, in: &d, &x)
            guard relevant else {
                deriver.react(to: r, ref: ref, type: t, in: &d, &x)
                continue
            }
            out.react(r, ref, type: t, &d, &x)
        }
        let end = max(through ?? d.newest, d.newest)
        out.deadlines(&d, through: end, &x)
        let still = d.pending.filter { Int($0.rule) == ri }
        out.line(0, end == .distantPast ? "at the end (no events, no clock):" : "at the end (clock at \(when(end))):")
        if still.isEmpty { out.line(1, "nothing pending for this rule") }
        for p in still {
            out.line(1, "pending: armed by \(p.ref.eventId) at \(when(p.armedAt)), due \(when(p.deadline)), not yet due")
            out.detail(p.id)
        }
        let fired = x.alerts.filter { $0.ruleIndex == ri }
        out.line(1, "\(fired.count) alert\(fired.count == 1 ? "" : "s") raised" + (fired.isEmpty ? "" : ": " + fired.map(\.alertId).joined(separator: ", ")))
        return Explanation(lines: out.render(), alerts: fired)
    }

    /// The event types rule `ri` reacts to (fires on, arms on, or checks its expectation on).
    func typesRead(_ ri: Int) -> Set<Int> {
        var types = Set<Int>()
        for (t, d) in rules.dispatch.enumerated()
        where d.immediates.contains(ri) || d.expectationChecks.contains(ri) || d.arms.contains(where: { $0.rule == ri }) {
            types.insert(t)
        }
        return types
    }

    /// The source text of the part of a condition that failed, and what it saw.
    func failure(_ code: ConditionCode, _ r: EventRecord, _ d: Derivation, _ now: Instant) -> String? {
        var trace = LastSetter()
        if deriver.eval(code, r, d, now, .missing, trace: &trace) { return nil }
        let pc = trace.pc
        guard pc >= code.start, pc < code.end else { return "the condition is false" }
        let text = rules.notes[pc].isEmpty ? "the condition" : "`\(rules.notes[pc])`"
        return "\(text) is false" + (observed(pc, r, d, now).map { " (\($0))" } ?? "")
    }

    /// What the instruction at `pc` read: a field's value, a window's count, a state's values.
    func observed(_ pc: Int, _ r: EventRecord, _ d: Derivation, _ now: Instant) -> String? {
        func name(_ ref: ValueRef) -> String {
            switch ref {
            case .slot(let s): return rules.contract.slotPaths[s]
            case .state(let i): return "state." + rules.states[i].name
            case .it: return "the element"
            }
        }
        func value(_ ref: ValueRef) -> String {
            let v = deriver.fetch(ref, r, d, .missing)
            guard let text = deriver.render(v) else { return "\(name(ref)) is absent" }
            switch v {
            case .string, .symbol: return "\(name(ref)) is '\(text)'"
            case .strings, .symbols: return "\(name(ref)) is [\(text)]"
            default: return "\(name(ref)) is \(text)"
            }
        }
        switch rules.program[pc] {
        case .exists(let ref), .symbolIs(let ref, _), .symbolIn(let ref, _), .stringIs(let ref, _), .stringIn(let ref, _),
             .boolIs(let ref, _), .intCompare(let ref, _, _), .intIn(let ref, _), .arrayHasSymbol(let ref, _),
             .arrayIntersects(let ref, _), .arrayHasString(let ref, _), .anyElement(let ref, _):
            return ref == .it ? nil : value(ref)
        case .valuesEqual(let a, let b), .arrayHasValueOf(let a, let b):
            return [a, b].filter { $0 != .it }.map(value).joined(separator: ", ")
        case .keyedHas(let s, _), .keyedExists(let s):
            let held = d.states.filter { Int($0.state) == s }.compactMap { deriver.render($0.value) }
            return "state.\(rules.states[s].name) holds " + (held.isEmpty ? "nothing" : held.joined(separator: ", "))
        case .windowCount(let w, let micros, _, _), .windowDistinct(let w, let micros, _, _):
            let lower = now.micros - micros
            let inWindow = d.entries.filter { Int($0.window) == w && $0.at.micros > lower && $0.at <= now }
            if case .windowDistinct = rules.program[pc] {
                return "\(Set(inWindow.map(\.distinct)).count) distinct in the window (\(inWindow.count) event\(inWindow.count == 1 ? "" : "s"))"
            }
            return "\(inWindow.count) in the window" + (inWindow.isEmpty ? "" : ": " + inWindow.map(\.ref.eventId).joined(separator: ", "))
        case .age(let slot, _, _, _):
            return value(.slot(slot))
        case .not:
            return pc > 0 ? observed(pc - 1, r, d, now) : nil
        case .constant, .jumpIfFalse, .jumpIfTrue:
            return nil
        }
    }

    /// The deadline `rule` gives for an arming at `armedAt` (by `record`, for deadlines read from a field).
    public func deadline(_ rule: DeadlineRule, armedAt: Instant, record: EventRecord? = nil) -> Instant? {
        deriver.deadline(rule, record ?? deriver.emptyRecord, armedAt)
    }

    /// How deadline rule `rule` gives `due` for an arming at `at`: one line per step.
    public func arithmetic(_ rule: DeadlineRule, _ r: EventRecord?, armedAt at: Instant, due: Instant) -> [String] {
        var lines: [String] = []
        let zoneFor: ZoneTable?
        switch rule {
        case .exact(let m):
            zoneFor = deriver.displayZone
            lines.append("exactly \(RuleDuration.describe(micros: m)) after \(when(at))")
        case .instantFieldPlus(let slot, let m):
            zoneFor = deriver.displayZone
            lines.append("\(rules.contract.slotPaths[slot]) \(r.flatMap { deriver.render($0[slot]) } ?? "?") plus exactly \(RuleDuration.describe(micros: m))")
        case .workingDays(let n, let ci):
            let cal = rules.calendars[ci]
            zoneFor = cal.zone
            let from = cal.zone.localDay(at)
            lines.append("\(n) working day\(n == 1 ? "" : "s") after \(from.weekdayName) \(from), counted in calendar \(cal.name) (\(cal.zone.identifier)):")
            let steps = cal.countWorkingDays(n, after: at)
            for step in steps {
                if let k = step.counted {
                    lines.append("  \(k < 10 ? " " : "")\(k)       \(step.day.weekdayName) \(step.day)")
                } else {
                    lines.append("  skip     \(step.day.weekdayName) \(step.day)  \(step.skipped ?? "")")
                }
            }
            let last = steps.last?.day ?? from
            lines.append("due at the end of working day \(n) (\(last.weekdayName) \(last)): local midnight, \(when(due))")
        case .months(let n, let ci):
            let cal = rules.calendars[ci]
            zoneFor = cal.zone
            let from = cal.zone.localDay(at)
            let on = from.adding(months: n)
            lines.append("\(n) month\(n == 1 ? "" : "s") after \(from.weekdayName) \(from) is \(on.weekdayName) \(on) in \(cal.zone.identifier); due at its end: \(when(due))")
        case .dateFieldPlusMonths(let slot, let n, let ci), .dateFieldPlusDays(let slot, let n, let ci):
            let cal = rules.calendars[ci]
            zoneFor = cal.zone
            let unit: String
            if case .dateFieldPlusMonths = rule { unit = "month" } else { unit = "day" }
            lines.append("\(rules.contract.slotPaths[slot]) \(r.flatMap { deriver.render($0[slot]) } ?? "?") plus \(n) \(unit)\(n == 1 ? "" : "s"): local midnight starting \(when(due))")
        }
        if let zone = zoneFor {
            for change in zone.changes(after: at, through: due) {
                lines.append("clock change in between: \(zone.identifier) goes from \(ZoneTable.offsetText(change.from)) to \(ZoneTable.offsetText(change.to)) at \(change.at)")
            }
        }
        return lines
    }
}

/// The trace being written: lines with indent levels, deadline arithmetic kept per pending expectation and
/// shown only for those that fired or are left pending (the others were met, and their arithmetic is noise).
struct Trace {
    let explainer: Explainer
    let rule: Int
    var lines: [(level: Int, text: String)] = []
    /// Per pending id: where its arithmetic goes and the lines.
    var arithmetic: [UInt32: (at: Int, lines: [String])] = [:]
    var shown = Set<UInt32>()

    init(explainer: Explainer, rule: Int) {
        self.explainer = explainer
        self.rule = rule
    }

    var rules: CompiledRuleSet { explainer.rules }
    var deriver: Deriver { explainer.deriver }

    mutating func line(_ level: Int, _ text: String) { lines.append((level, text)) }

    mutating func event(_ ref: EventRef, _ outcomes: [String]) {
        let c = rules.contract
        line(0, "\(explainer.when(ref.occurredAt))  \(ref.eventId)  \(c.symbols.name(ref.type)) by \(c.symbols.name(ref.agency))")
        for o in outcomes { line(1, o) }
    }

    /// Asks for pending `id`'s deadline arithmetic to be shown.
    mutating func detail(_ id: UInt32) { shown.insert(id) }

    func render() -> [String] {
        var out: [String] = []
        var extra: [Int: [String]] = [:]
        for (id, a) in arithmetic where shown.contains(id) { extra[a.at, default: []] += a.lines }
        for (k, l) in lines.enumerated() {
            out.append(String(repeating: "  ", count: l.level) + l.text)
            for e in extra[k] ?? [] { out.append(String(repeating: "  ", count: l.level + 1) + e) }
        }
        return out
    }

    /// Brings `d` to `t`, saying what became of the rule's expectations that fell due.
    mutating func deadlines(_ d: inout Derivation, through t: Instant, _ x: inout Deriver.Context) {
        let due = d.pending.filter { Int($0.rule) == rule && $0.deadline <= t }.sorted { ($0.deadline, $0.seq) < ($1.deadline, $1.seq) }
        let fireIf = rules.rules[rule].expectation?.fireIf
        let fireIfFailures = due.map { p in fireIf.flatMap { explainer.failure($0, deriver.emptyRecord, d, p.deadline) } }
        let firstNew = x.alerts.count
        deriver.popDue(&d, through: t, &x)
        let raised = x.alerts[firstNew...].filter { $0.ruleIndex == rule }
        for (k, p) in due.enumerated() {
            line(0, "\(explainer.when(p.deadline))  deadline of the expectation armed by \(p.ref.eventId) at \(explainer.when(p.armedAt))")
            if let a = raised.first(where: { $0.deadline == p.deadline && $0.evidence.first == p.ref }) {
                line(1, "FIRED \(a.alertId): \(a.summary)")
                detail(p.id)
            } else if let why = fireIfFailures[k] {
                line(1, "not fired: fire_if \(why)")
            } else {
                line(1, "not fired: suppressed (an alert of this rule fired within its suppression)")
            }
        }
    }

    /// The rule's reactions to one event it reads, after the event's states and windows are recorded.
    mutating func react(_ r: EventRecord, _ ref: EventRef, type t: Int, _ d: inout Derivation, _ x: inout Deriver.Context) {
        let at = ref.occurredAt
        let compiled = rules.rules[rule]
        let dispatch = rules.dispatch[t]
        var outcomes: [String] = []
        var armLines: [(clause: Int, line: String)] = []
        let before = d.pending
        let firedBefore = d.fired.first { Int($0.rule) == rule }
        let firstNew = x.alerts.count
        // What the conditions say, over the derivation the engine evaluates them on.
        var metHolds = false, cancelHolds = false
        if let exp = compiled.expectation, dispatch.expectationChecks.contains(rule) {
            let mine = before.filter { Int($0.rule) == rule }
            let metWhy = exp.met.map { explainer.failure($0, r, d, at) } ?? "there is no met_by"
            metHolds = exp.met != nil && metWhy == nil
            if !metHolds, let cancel = exp.cancel { cancelHolds = explainer.failure(cancel, r, d, at) == nil }
            let arms = dispatch.arms.contains { $0.rule == rule }
            if mine.isEmpty {
                if metHolds && !arms { outcomes.append("would meet the expectation, but none is pending") }
            } else if !metHolds && !cancelHolds {
                if exp.met != nil { outcomes.append("does not meet the \(mine.count == 1 ? "pending expectation" : "\(mine.count) pending expectations"): met_by \(metWhy ?? "")") }
            }
        }
        var immediateWhy: String?
        if let code = compiled.immediate, dispatch.immediates.contains(rule) { immediateWhy = explainer.failure(code, r, d, at) ?? "" }
        if let exp = compiled.expectation {
            for pair in dispatch.arms where pair.rule == rule {
                if let why = explainer.failure(exp.arms[pair.clause].condition, r, d, at) {
                    armLines.append((pair.clause, "does not arm" + (exp.arms.count > 1 ? " (arm clause \(pair.clause + 1))" : "") + ": \(why)"))
                } else {
                    armLines.append((pair.clause, ""))
                }
            }
        }
        deriver.react(to: r, ref: ref, type: t, in: &d, &x)
        let raised = x.alerts[firstNew...].filter { $0.ruleIndex == rule }
        // Expectations gone (none fell due here): met or cancelled when this event's correlation key is theirs,
        // else replaced by this event's arming (`pending: one`).
        let k = compiled.expectation.map { deriver.key($0.correlateSlots, r) } ?? ""
        let gone = before.filter { p in Int(p.rule) == rule && !d.pending.contains { $0.id == p.id } }
        var replaced: [PendingExpectation] = []
        for p in gone {
            if (metHolds || cancelHolds) && p.key == k {
                outcomes.append("\(metHolds ? "meets" : "cancels") the expectation armed by \(p.ref.eventId) at \(explainer.when(p.armedAt)) (due \(explainer.when(p.deadline)))")
            } else {
                replaced.append(p)
            }
        }
        if (metHolds || cancelHolds), let exp = compiled.expectation {
            for p in before where Int(p.rule) == rule && d.pending.contains(where: { $0.id == p.id }) && p.key != k {
                let names = exp.correlateSlots.map { rules.contract.slotPaths[$0] }.joined(separator: ", ")
                outcomes.append("leaves the expectation armed by \(p.ref.eventId): \(names) differ (this event: \(shown(k)); armed with: \(shown(p.key)))")
            }
        }
        if let why = immediateWhy {
            if let a = raised.first(where: { $0.deadline == nil }) {
                outcomes.append("FIRED \(a.alertId): \(a.summary)")
            } else if why.isEmpty {
                let since = firedBefore.map { " (the last fired at \(explainer.when($0.at)))" } ?? ""
                outcomes.append("condition holds, but the alert is suppressed\(since)")
            } else {
                outcomes.append("does not fire: \(why)")
            }
        }
        for (clause, why) in armLines {
            guard why.isEmpty else { outcomes.append(why); continue }
            outcomes.append(contentsOf: armed(clause, r, ref, before: before, after: d.pending, entries: d.entries))
        }
        for p in replaced {
            outcomes.append("replaces the expectation armed by \(p.ref.eventId) (due \(explainer.when(p.deadline))): one pending at a time")
        }
        if outcomes.isEmpty { outcomes.append("nothing to do for this rule") }
        event(ref, outcomes)
        // Arithmetic lines attach to the event's line; the index of the line that says "armed".
        if let p = d.pending.first(where: { Int($0.rule) == rule && $0.ref == ref }), let exp = compiled.expectation {
            let at = lines.lastIndex { $0.text.hasPrefix("armed") } ?? lines.count - 1
            arithmetic[p.id] = (at, explainer.arithmetic(exp.arms[Int(p.clause)].deadline, r, armedAt: ref.occurredAt, due: p.deadline))
        }
    }

    /// What arming clause `clause` did, its condition holding.
    func armed(_ clause: Int, _ r: EventRecord, _ ref: EventRef, before: [PendingExpectation], after: [PendingExpectation],
               entries: [WindowEntry]) -> [String] {
        guard let exp = rules.rules[rule].expectation else { return [] }
        if let p = after.first(where: { Int($0.rule) == rule && $0.ref == ref && Int($0.clause) == clause }) {
            return ["armed: due \(explainer.when(p.deadline))"]
        }
        guard let due = deriver.deadline(exp.arms[clause].deadline, r, ref.occurredAt) else {
            return ["arms nothing: the deadline's field is absent on this event"]
        }
        if let lb = exp.lookback {
            let k = deriver.key(exp.correlateSlots, r)
            let from = ref.occurredAt.micros - lb.micros
            if let e = entries.first(where: { Int($0.window) == lb.window && $0.key == k && $0.at.micros >= from && $0.at < due && $0.ref != ref }) {
                return ["met already: \(e.ref.eventId) at \(explainer.when(e.at)) is within the look-back of \(RuleDuration.describe(micros: lb.micros))"]
            }
        }
        if exp.single, let same = before.first(where: { Int($0.rule) == rule && $0.deadline == due }) {
            return ["already pending with the same deadline (armed by \(same.ref.eventId)); kept"]
        }
        return ["would arm (due \(explainer.when(due))), but the child has \(deriver.limits.maxPendingPerChild) expectations pending already (the limit)"]
    }

    func shown(_ key: String) -> String {
        key.split(separator: "\u{1F}", omittingEmptySubsequences: false).map { $0 == "\u{0}" ? "absent" : "'\($0)'" }.joined(separator: ", ")
    }
}
