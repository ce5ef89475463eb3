import Crypto
import VigilContract

/// The result of compiling a rule pack: a rule set when there were no errors, and every diagnostic.
public struct RuleCompilation: Sendable {
    public let ruleSet: CompiledRuleSet?
    public let diagnostics: [Diagnostic]
    public let sources: RuleSources

    public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }

    /// All diagnostics, each with its source line and caret.
    public var report: String { diagnostics.map { $0.rendered(sources: sources) }.joined(separator: "\n") }
}

/// Rule pack compiler: read YAML -> collect definitions -> check against the event contract -> compile.
///
/// Pure: the files come in as `RuleSources`, nothing is read from disk, no clock is consulted. All problems
/// are collected in one pass.
public enum RuleCompiler {
    /// With `lint`, warnings too (`vigil check --lint`): macros, lists and states no rule uses. Warnings never
    /// stop a pack from compiling.
    public static func compile(_ sources: RuleSources, contract: EventContract = .embedded, lint: Bool = false) -> RuleCompilation {
        var reader = RulePackReader()
        for f in sources.files where isRuleFile(f.relativePath) { reader.read(f) }
        var pc = PackCompiler(contract: contract, sources: sources, diags: reader.diags)
        let set = pc.compile(reader.pack)
        if lint {
            pc.lintUnused(reader.pack)
            pc.lintRules()
            // Test events whose agency nothing states (the built-in default).
            for f in sources.files where isTestFile(f.relativePath) {
                for t in RuleTestReader.read(f, contract: contract, zone: set.calendars.first?.zone).tests {
                    for e in t.events where e.impliedAgency {
                        pc.diags.add(Diagnostic(.warning, .impliedDefault,
                                                "this event's agency is the built-in default (\(RuleTestReader.builtInAgency)): state it with agency: on the event, the test, or the file's - defaults:",
                                                at: e.location))
                    }
                }
            }
        }
        let ok = !pc.diags.hasErrors
        return RuleCompilation(ruleSet: ok ? set : nil, diagnostics: pc.diags.sorted, sources: sources)
    }

    /// Rule files are YAML files outside a `tests` directory.
    public static func isRuleFile(_ path: String) -> Bool {
        (path.hasSuffix(".yaml") || path.hasSuffix(".yml")) && !isTestFile(path)
    }

    /// Rule test files are YAML files in a `tests` directory of the pack.
    public static func isTestFile(_ path: String) -> Bool {
        (path.hasSuffix(".yaml") || path.hasSuffix(".yml")) && (path.hasPrefix("tests/") || path.contains("/tests/"))
    }
}

struct PackCompiler {
    let contract: EventContract
    let sources: RuleSources
    let allTypes: Set<Int>
    var diags: DiagnosticBag

    var macros: [String: RawMacro] = [:]
    var parsedMacros: [String: Condition?] = [:]
    var lists: [String: RawList] = [:]
    var stateIndex: [String: Int] = [:]
    /// What rules and states use (not the checks of each macro on its own), for `lintUnused`.
    var usedMacros = Set<String>(), usedLists = Set<String>(), usedStates = Set<String>()
    var trackingUse = true
    var stateInfo: [(keyed: Bool, kind: FieldKind, allowed: SymbolSet)] = []
    var states: [StateDefinition] = []
    var statePossible: [Set<Int>] = []
    var calendars: [WorkingCalendar] = []
    var calendarDigests: [String] = []
    var calendarIndex: [String: Int] = [:]

    var program: [Instruction] = []
    var notes: [String] = []
    var windows: [WindowDefinition] = []
    var windowPossible: [Set<Int>] = []
    var windowByKey: [String: Int] = [:]
    var captured = Set<Int>()

    /// Per compiled rule, what the lint compares: its conditions (arms without deadlines, met, cancel,
    /// correlation, look-back, fire_if, or its `when`), its suppression and the longest window it counts over.
    var shapes: [(id: String, location: SourceLocation, conditions: String, suppress: (micros: Int64, at: SourceLocation)?, window: Int64?)] = []

    // Per-rule scratch.
    var evidenceWindows: [(window: Int, micros: Int64)] = []
    var evidenceStates: [(state: Int, value: FieldValue?)] = []

    init(contract: EventContract, sources: RuleSources, diags: DiagnosticBag) {
        self.contract = contract
        self.sources = sources
        self.diags = diags
        self.allTypes = Set(0..<contract.eventTypes.count)
    }

    static let keywords = ConditionParser.keywords

    static func validName(_ s: String, dashes: Bool) -> Bool {
        guard let first = s.unicodeScalars.first, ("a"..."z").contains(first) || first == "_" || (dashes && ("0"..."9").contains(first)) else { return false }
        return s.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || (dashes && $0 == "-") }
    }

    mutating func compile(_ pack: RawPack) -> CompiledRuleSet {
        indexNames(pack)
        for c in pack.calendars { compileCalendar(c) }
        for s in pack.states { compileState(s) }
        // Check every macro once on its own, so mistakes in unused macros are reported too.
        trackingUse = false
        defer { trackingUse = true }
        for m in pack.macros where macros[m.name.text]?.condition.location == m.condition.location {
            var scratch = Code()
            let ctx = ConditionContext(types: allTypes, source: m.condition.source, calendar: defaultCalendar)
            _ = expandMacro(m.name.text, Span(0, 0), ctx, into: &scratch)
        }
        trackingUse = true
        var built: [(rule: CompiledRule, immediate: Set<Int>, arms: [Set<Int>], checks: Set<Int>)] = []
        var seenIds: [String: SourceLocation] = [:]
        for r in pack.rules {
            if let first = seenIds[r.id.text] {
                diags.error(.duplicate, "rule '\(r.id.text)' is defined twice", at: r.id.location, notes: ["first defined at \(first)"])
                continue
            }
            seenIds[r.id.text] = r.id.location
            if let b = compileRule(r) { built.append(b) }
        }
        var dispatch = [TypeDispatch](repeating: TypeDispatch(), count: contract.eventTypes.count)
        for (i, p) in statePossible.enumerated() { for t in p.sorted() { dispatch[t].states.append(i) } }
        for (i, p) in windowPossible.enumerated() { for t in p.sorted() { dispatch[t].windows.append(i) } }
        for (k, b) in built.enumerated() {
            for t in b.immediate.sorted() { dispatch[t].immediates.append(k) }
            for (c, p) in b.arms.enumerated() { for t in p.sorted() { dispatch[t].arms.append((k, c)) } }
            for t in b.checks.sorted() { dispatch[t].expectationChecks.append(k) }
        }
        for s in states {
            captured.insert(s.valueSlot)
            captured.formUnion(s.keySlots)
        }
        for w in windows {
            if let d = w.distinctSlot { captured.insert(d) }
            captured.formUnion(w.keySlots)
        }
        return CompiledRuleSet(contract: contract, rules: built.map(\.rule), program: program, notes: notes, states: states,
                               windows: windows, calendars: calendars, dispatch: dispatch, capturedSlots: captured.sorted())
    }

    /// Lint warnings about the rules: two rules with the same conditions (a copy that fires twice for one
    /// thing), and a suppression shorter than the window the rule counts over (the same events raise it again
    /// once the suppression ends).
    mutating func lintRules() {
        var seen: [String: (id: String, location: SourceLocation)] = [:]
        for s in shapes {
            if let first = seen[s.conditions] {
                diags.add(Diagnostic(.warning, .duplicateRule, "rule '\(s.id)' has the same conditions as rule '\(first.id)': both fire for the same events",
                                     at: s.location, notes: ["'\(first.id)' is defined at \(first.location)"]))
            } else {
                seen[s.conditions] = (s.id, s.location)
            }
            if let sup = s.suppress, let w = s.window, sup.micros != Int64.max, sup.micros < w {
                diags.add(Diagnostic(.warning, .shortSuppression,
                                     "suppression of \(RuleDuration.describe(micros: sup.micros)) is shorter than the window the rule counts over (\(RuleDuration.describe(micros: w))): the same events can raise it again when the suppression ends",
                                     at: sup.at, notes: ["suppress for at least the window (\(RuleDuration.describe(micros: w))), or 'forever'"]))
            }
        }
    }

    /// Warnings for macros, lists and states that no rule (or state) uses.
    mutating func lintUnused(_ pack: RawPack) {
        for m in pack.macros where !usedMacros.contains(m.name.text) {
            diags.add(Diagnostic(.warning, .unused, "macro '\(m.name.text)' is used by no rule", at: m.name.location))
        }
        for l in pack.lists where !usedLists.contains(l.name.text) {
            diags.add(Diagnostic(.warning, .unused, "list '\(l.name.text)' is used by no rule", at: l.name.location))
        }
        for s in pack.states where !usedStates.contains(s.name.text) {
            diags.add(Diagnostic(.warning, .unused, "state '\(s.name.text)' is read by no rule (it is still kept per child)", at: s.name.location))
        }
    }

    // MARK: names

    mutating func indexNames(_ pack: RawPack) {
        func check(_ name: LocatedText, kind: String, dashes: Bool) -> Bool {
            guard PackCompiler.validName(name.text, dashes: dashes), !PackCompiler.keywords.contains(name.text) else {
                let shape = dashes ? "lower-case letters, digits and '-' (e.g. unchecked-adult-with-access)"
                                   : "lower-case letters, digits and '_' (e.g. on_plan), and not a keyword"
                diags.error(.badName, "\(kind) name '\(name.text)' must use \(shape)", at: name.location)
                return false
            }
            return true
        }
        for r in pack.rules { _ = check(r.id, kind: "rule", dashes: true) }
        for m in pack.macros where check(m.name, kind: "macro", dashes: false) {
            if let first = macros[m.name.text] {
                diags.error(.duplicate, "macro '\(m.name.text)' is defined twice", at: m.name.location, notes: ["first defined at \(first.name.location)"])
            } else if contract.field(m.name.text) != nil {
                diags.error(.badName, "macro name '\(m.name.text)' is the name of a field", at: m.name.location)
            } else {
                macros[m.name.text] = m
            }
        }
        for l in pack.lists where check(l.name, kind: "list", dashes: false) {
            if let first = lists[l.name.text] {
                diags.error(.duplicate, "list '\(l.name.text)' is defined twice", at: l.name.location, notes: ["first defined at \(first.name.location)"])
            } else {
                lists[l.name.text] = l
            }
        }
        for c in pack.calendars where check(c.name, kind: "calendar", dashes: true) {
            if calendarIndex[c.name.text] != nil {
                diags.error(.duplicate, "calendar '\(c.name.text)' is defined twice", at: c.name.location)
            }
        }
    }

    mutating func parsedMacro(_ name: String) -> Condition? {
        if let cached = parsedMacros[name] { return cached }
        guard let m = macros[name] else { return nil }
        let parsed = parse(m.condition)
        parsedMacros[name] = .some(parsed)
        return parsed
    }

    mutating func parse(_ text: LocatedText) -> Condition? {
        switch ConditionParser.parse(text.text) {
        case .success(let c): return c
        case .failure(let e):
            diags.error(.syntax, e.message, at: text.source.location(ofOffset: e.offset))
            return nil
        }
    }

    var defaultCalendar: Int? { calendars.count == 1 ? 0 : nil }

    // MARK: calendars

    mutating func compileCalendar(_ c: RawCalendar) {
        guard calendarIndex[c.name.text] == nil else { return }
        guard let zone = ZoneTable.named(c.timeZone.text) else {
            diags.error(.badCalendar, "unknown time zone '\(c.timeZone.text)' (an IANA name such as Europe/London)", at: c.timeZone.location)
            return
        }
        var weekend: Set<Int> = [6, 7]
        if let w = c.weekend {
            weekend = []
            let names = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
            for d in w {
                guard let i = names.firstIndex(of: d.text.lowercased()) else {
                    diags.error(.badValue, "'\(d.text)' is not a day of the week", at: d.location, notes: suggestion(for: d.text.lowercased(), among: names))
                    continue
                }
                weekend.insert(i + 1)
            }
        }
        let dir = c.file.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let path = PackCompiler.normalize(dir.isEmpty ? c.holidays.text : dir + "/" + c.holidays.text)
        guard let file = sources.file(path) else {
            diags.error(.badCalendar, "holiday file '\(c.holidays.text)' not found (looked for \(path) in the rule directory)", at: c.holidays.location)
            return
        }
        switch WorkingCalendar.parseHolidays(csv: file.text) {
        case .failure(let e):
            diags.error(.badCalendar, "bad holiday file: \(e.reason)", at: SourceLocation(file: path, line: e.line, column: 1),
                        notes: ["used by calendar '\(c.name.text)' at \(c.name.location)"])
        case .success(let days):
            calendarIndex[c.name.text] = calendars.count
            let cal = WorkingCalendar(name: c.name.text, zone: zone, weekend: weekend, holidays: days)
            calendars.append(cal)
            calendarDigests.append(SHA256.hash(data: Array(cal.fingerprint.utf8)).prefix(6).hexString)
        }
    }

    static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for p in path.split(separator: "/") {
            if p == "." { continue }
            if p == "..", !parts.isEmpty, parts.last != ".." { parts.removeLast(); continue }
            parts.append(p)
        }
        return (path.hasPrefix("/") ? "/" : "") + parts.joined(separator: "/")
    }

    // MARK: states

    mutating func compileState(_ s: RawState) {
        guard PackCompiler.validName(s.name.text, dashes: false), !PackCompiler.keywords.contains(s.name.text) else {
            diags.error(.badName, "state name '\(s.name.text)' must use lower-case letters, digits and '_'", at: s.name.location)
            return
        }
        if stateIndex[s.name.text] != nil {
            diags.error(.duplicate, "state '\(s.name.text)' is defined twice", at: s.name.location)
            return
        }
        guard let cond = parse(s.condition) else { return }
        var code = Code()
        let ctx = ConditionContext(types: allTypes, allowWindows: false, source: s.condition.source, calendar: defaultCalendar)
        let a = compile(cond, ctx, into: &code)
        if a.possible.isEmpty {
            diags.error(.neverMatches, "no event type can satisfy this condition, so the state never changes", at: s.condition.location)
            return
        }
        func field(_ t: LocatedText, role: String) -> ContractField? {
            guard let f = contract.field(t.text) else {
                diags.error(.unknownField, "unknown field '\(t.text)'", at: t.location, notes: suggestion(for: t.text, among: contract.fields.keys))
                return nil
            }
            guard !f.eventTypes.isDisjoint(with: a.possible) else {
                diags.error(.fieldNotOnType, "\(t.text) is not a field of the events that set state '\(s.name.text)'", at: t.location)
                return nil
            }
            switch f.kind {
            case .symbol, .string, .bool, .int, .date, .instant: return f
            default:
                diags.error(.typeMismatch, "a state \(role) must be a single value, not \(f.kind)", at: t.location)
                return nil
            }
        }
        guard let value = field(s.value, role: "value") else { return }
        var keys: [Int] = []
        for k in s.key {
            guard let f = field(k, role: "key") else { return }
            keys.append(f.slot)
        }
        let range = register(code)
        let canonical = "when{\(canonical(range))} value=\(s.value.text) key=\(s.key.map(\.text).joined(separator: ","))"
        stateIndex[s.name.text] = states.count
        stateInfo.append((!keys.isEmpty, value.kind, value.allowedValues(on: a.possible)))
        states.append(StateDefinition(name: s.name.text, condition: range, valueSlot: value.slot, keySlots: keys, canonical: canonical))
        statePossible.append(a.possible)
    }

    // MARK: program

    mutating func register(_ code: Code) -> ConditionCode {
        let start = program.count
        program += code.instructions
        notes += code.notes
        return ConditionCode(start: start, end: program.count)
    }

    mutating func registerWindow(code: Code, possible: Set<Int>, retention: Int64, distinctSlot: Int?, keySlots: [Int]) -> Int {
        let key = "filter{\(canonical(code.instructions[...]))} distinct=\(distinctSlot.map { contract.slotPaths[$0] } ?? "-") keys=\(keySlots.map { contract.slotPaths[$0] }.joined(separator: ","))"
        if let w = windowByKey[key] {
            let old = windows[w]
            if retention > old.retention {
                windows[w] = WindowDefinition(condition: old.condition, retention: retention, distinctSlot: old.distinctSlot,
                                              keySlots: old.keySlots, canonical: old.canonical)
            }
            return w
        }
        let range = register(code)
        windowByKey[key] = windows.count
        windows.append(WindowDefinition(condition: range, retention: retention, distinctSlot: distinctSlot, keySlots: keySlots, canonical: key))
        windowPossible.append(possible)
        return windows.count - 1
    }

    // MARK: rules

    mutating func compileRule(_ r: RawRule) -> (rule: CompiledRule, immediate: Set<Int>, arms: [Set<Int>], checks: Set<Int>)? {
        evidenceWindows = []
        evidenceStates = []
        let errorsBefore = diags.items.count
        var severity = Severity.medium
        if let s = r.severity {
            if let v = Severity(rawValue: s.text) { severity = v } else {
                diags.error(.badSeverity, "severity '\(s.text)' must be one of: low, medium, high, critical", at: s.location,
                            notes: suggestion(for: s.text, among: Severity.allCases.map(\.rawValue)))
            }
        }
        var mode = RuleMode.live
        if let m = r.mode {
            if let v = RuleMode(rawValue: m.text) { mode = v } else {
                diags.error(.badValue, "mode '\(m.text)' must be one of: live, shadow, disabled", at: m.location,
                            notes: suggestion(for: m.text, among: RuleMode.allCases.map(\.rawValue)))
            }
        }
        var calendar = defaultCalendar
        if let c = r.calendar {
            if let i = calendarIndex[c.text] { calendar = i } else {
                diags.error(.unknownCalendar, "unknown calendar '\(c.text)'", at: c.location, notes: suggestion(for: c.text, among: calendarIndex.keys))
            }
        }
        var immediate: ConditionCode?
        var immediatePossible = Set<Int>()
        if let w = r.when, let cond = parse(w) {
            var code = Code()
            let ctx = ConditionContext(types: allTypes, source: w.source, calendar: calendar, collectsEvidence: true)
            let a = compile(cond, ctx, into: &code)
            if a.possible.isEmpty {
                diags.error(.neverMatches, "no event can satisfy this condition (the event types it requires exclude each other)", at: w.location)
            }
            immediatePossible = a.possible
            immediate = register(code)
        }
        var expectation: ExpectationDefinition?
        var armPossible: [Set<Int>] = []
        var checkPossible = Set<Int>()
        var canonicalExpect = ""
        if let e = r.expect {
            if let built = compileExpect(e, rule: r.id.text, calendar: calendar) {
                expectation = built.definition
                armPossible = built.armPossible
                checkPossible = built.checkPossible
                canonicalExpect = built.canonical
            }
        }
        var suppress: Int64?
        if let s = r.suppress {
            if s.text.trimmingCharacters(in: .whitespaces) == "forever" { suppress = Int64.max } else {
                switch RuleDuration.parse(s.text) {
                case .success(let d):
                    if let m = d.exactMicros { suppress = m } else {
                        diags.error(.badDuration, "suppress takes exact time (minutes, hours, days, weeks) or 'forever'", at: s.location)
                    }
                case .failure(let err):
                    diags.error(.badDuration, err.message + " (or write 'forever')", at: s.location)
                }
            }
        }
        let triggerTypes = immediatePossible.union(armPossible.reduce(into: Set<Int>()) { $0.formUnion($1) })
        var template: [TemplatePart] = []
        if let o = r.output { template = compileTemplate(o, triggerTypes: triggerTypes, hasDeadline: r.expect != nil) }
        guard diags.items.count == errorsBefore || !diags.items[errorsBefore...].contains(where: { $0.severity == .error }) else {
            return nil
        }
        var labels: [RuleLabel] = []
        for (k, v) in r.labels {
            guard PackCompiler.validName(k.text, dashes: false) else {
                diags.error(.badName, "label name '\(k.text)' must use lower-case letters, digits and '_'", at: k.location)
                continue
            }
            if labels.contains(where: { $0.key == k.text }) {
                diags.error(.duplicate, "label '\(k.text)' is given twice", at: k.location)
                continue
            }
            if v.text.isEmpty { diags.error(.badValue, "label '\(k.text)' needs a value", at: v.location) }
            labels.append(RuleLabel(key: k.text, value: v.text))
        }
        var annotations: [RuleAnnotation] = []
        for (k, v) in r.annotations {
            guard PackCompiler.validName(k.text, dashes: false) else {
                diags.error(.badName, "annotation name '\(k.text)' must use lower-case letters, digits and '_'", at: k.location)
                continue
            }
            if annotations.contains(where: { $0.key == k.text }) || k.text == "summary" {
                diags.error(.duplicate, k.text == "summary" ? "the summary is 'output:', not an annotation" : "annotation '\(k.text)' is given twice", at: k.location)
                continue
            }
            annotations.append(RuleAnnotation(key: k.text, template: compileTemplate(v, triggerTypes: triggerTypes, hasDeadline: r.expect != nil)))
        }
        guard diags.items.count == errorsBefore || !diags.items[errorsBefore...].contains(where: { $0.severity == .error }) else {
            return nil
        }
        let templateSlots = (template + annotations.flatMap(\.template)).compactMap { if case .field(let s) = $0 { return s }; return nil }
        captured.formUnion(templateSlots)
        let hasAt = r.expect?.arms.contains { $0.at != nil } ?? false
        let kind = expectation == nil ? "immediate" : (hasAt ? "timer" : "absence")
        var canon = "severity=\(severity.rawValue)\n"
        if let immediate { canon += "when=\(canonical(immediate))\n" }
        canon += canonicalExpect
        canon += "suppress=\(suppress.map(String.init) ?? "-")\n"
        canon += "output=\(template.map { canonical($0) }.joined())\n"
        // Only when given, so that a rule without them keeps its version.
        let extras = (labels.isEmpty ? "" : "labels=\(labels.map { "\($0.key)=\($0.value)" }.joined(separator: "\u{1F}"))\n")
            + (annotations.isEmpty ? "" : "annotations=\(annotations.map { "\($0.key)=\($0.template.map { canonical($0) }.joined())" }.joined(separator: "\u{1F}"))\n")
        canon += extras
        let digest = SHA256.hash(data: Array(canon.utf8))
        let version = digest.prefix(8).hexString
        // The same meaning in three parts, for classifying a change of the pack: what decides whether and on
        // which evidence it fires (logic), when its deadlines fall (timing), and how its alert reads (output).
        var logic = "kind=\(r.expect == nil ? "immediate" : "expect")\n"
        if let immediate { logic += "when=\(canonical(immediate))\n" }
        // An arm without its deadline (" due=..." ends each arm line).
        logic += canonicalExpect.split(separator: "\n").map { line -> String in
            guard line.hasPrefix("arm="), let cut = line.ranges(of: " due=").last else { return String(line) }
            return String(line[..<cut.lowerBound])
        }.joined(separator: "\n")
        logic += "\nsuppress=\(suppress.map(String.init) ?? "-")\n"
        logic += "evidence=\(dedupe(evidenceWindows).map { "\(windows[$0.window].canonical)/\($0.micros)" }.joined(separator: ","))"
        logic += "|\(evidenceStates.map { "\(states[$0.state].name)=\($0.value.map { canonical($0) } ?? "*")" }.joined(separator: ","))\n"
        let timing = (expectation?.arms ?? []).map { canonical($0.deadline) }.joined(separator: ",")
        // Live and shadow differ in where the alerts go, not in what fires: a change between them is cosmetic.
        let output = "severity=\(severity.rawValue)\ntitle=\(r.title?.text ?? "")\noutput=\(template.map { canonical($0) }.joined())"
            + (mode == .shadow ? "\nmode=shadow" : "") + (extras.isEmpty ? "" : "\n" + extras)
        let conditions = logic.components(separatedBy: "\nsuppress=").first ?? logic
        var suppressed: (micros: Int64, at: SourceLocation)?
        if let suppress, let at = r.suppress?.location { suppressed = (suppress, at) }
        shapes.append((r.id.text, r.id.location, conditions, suppressed, dedupe(evidenceWindows).map(\.micros).max()))
        func short(_ s: String) -> String { SHA256.hash(data: Array(s.utf8)).prefix(8).hexString }
        let fingerprint = RuleFingerprint(logic: short(logic), timing: short(timing), output: short(output))
        let rule = CompiledRule(id: r.id.text, title: r.title?.text ?? "", description: r.description?.text ?? "",
                                source: r.source?.text ?? "", severity: severity, version: version, fingerprint: fingerprint, mode: mode, tags: r.tags.map(\.text), kind: kind,
                                immediate: immediate, expectation: expectation, suppressMicros: suppress, template: template,
                                labels: labels, annotations: annotations, templateSlots: templateSlots, evidenceWindows: dedupe(evidenceWindows),
                                evidenceStates: evidenceStates, location: r.id.location)
        return (rule, immediatePossible, armPossible, checkPossible)
    }

    func dedupe(_ w: [(window: Int, micros: Int64)]) -> [(window: Int, micros: Int64)] {
        var out: [(window: Int, micros: Int64)] = []
        for x in w where !out.contains(where: { $0.window == x.window && $0.micros == x.micros }) { out.append(x) }
        return out
    }

    struct BuiltExpectation {
        var definition: ExpectationDefinition
        var armPossible: [Set<Int>]
        var checkPossible: Set<Int>
        var canonical: String
    }

    mutating func compileExpect(_ e: RawExpect, rule: String, calendar: Int?) -> BuiltExpectation? {
        var arms: [ArmClause] = []
        var armPossible: [Set<Int>] = []
        var canon = ""
        for arm in e.arms {
            guard let cond = parse(arm.when) else { continue }
            var code = Code()
            let ctx = ConditionContext(types: allTypes, source: arm.when.source, calendar: calendar)
            let a = compile(cond, ctx, into: &code)
            if a.possible.isEmpty {
                diags.error(.neverMatches, "no event can satisfy this arm condition", at: arm.when.location)
            }
            guard let deadline = compileDeadline(arm, possible: a.possible, calendar: calendar) else { continue }
            let range = register(code)
            arms.append(ArmClause(condition: range, deadline: deadline))
            armPossible.append(a.possible)
            canon += "arm=\(canonical(range)) due=\(canonical(deadline))\n"
        }
        func match(_ m: RawMatch?) -> (ConditionCode, Set<Int>)? {
            guard let m, let cond = parse(m.when) else { return nil }
            var code = Code()
            let ctx = ConditionContext(types: allTypes, source: m.when.source, calendar: calendar)
            let a = compile(cond, ctx, into: &code)
            if a.possible.isEmpty { diags.error(.neverMatches, "no event can satisfy this condition", at: m.when.location) }
            return (register(code), a.possible)
        }
        let met = match(e.met)
        let cancel = match(e.cancel)
        let armTypes = armPossible.reduce(into: Set<Int>()) { $0.formUnion($1) }
        var correlate: [Int] = []
        for c in e.correlate {
            guard let f = contract.field(c.text) else {
                diags.error(.badCorrelation, "correlate names a field of the contract; '\(c.text)' is not one", at: c.location,
                            notes: suggestion(for: c.text, among: contract.fields.keys))
                continue
            }
            switch f.kind {
            case .symbol, .string, .bool, .int, .date: break
            default:
                diags.error(.badCorrelation, "cannot correlate on \(c.text) (\(f.kind)); use a single-valued field", at: c.location)
                continue
            }
            var missingOn: [String] = []
            if f.eventTypes.isDisjoint(with: armTypes) { missingOn.append("the arming events") }
            if let met, f.eventTypes.isDisjoint(with: met.1) { missingOn.append("the met_by events") }
            if let cancel, f.eventTypes.isDisjoint(with: cancel.1) { missingOn.append("the cancel_by events") }
            if !missingOn.isEmpty {
                diags.error(.badCorrelation, "\(c.text) is not a field of \(missingOn.joined(separator: " or "))", at: c.location)
                continue
            }
            correlate.append(f.slot)
            captured.insert(f.slot)
        }
        if met == nil && cancel == nil && e.arms.allSatisfy({ $0.at == nil }) && e.fireIf == nil {
            diags.error(.missingKey, "an expectation needs 'met_by:' (what satisfies it) unless it is a timer with 'at:'", at: e.location)
        }
        var lookback: (window: Int, micros: Int64)?
        if let lb = e.met?.lookback, let met {
            switch RuleDuration.parse(lb.text) {
            case .success(let d):
                if let micros = d.exactMicros {
                    let code = Code(program[met.0.start..<met.0.end], notes: notes[met.0.start..<met.0.end])
                    let w = registerWindow(code: code, possible: met.1, retention: micros, distinctSlot: nil, keySlots: correlate)
                    lookback = (w, micros)
                } else {
                    diags.error(.badDuration, "a look-back is exact time (minutes, hours, days, weeks)", at: lb.location)
                }
            case .failure(let err):
                diags.error(.badDuration, err.message, at: lb.location)
            }
        }
        var single = false
        if let p = e.pending {
            switch p.text {
            case "one": single = true
            case "each": single = false
            default: diags.error(.badValue, "pending must be 'one' (a new arming replaces the pending deadline) or 'each' (every arming has its own)", at: p.location)
            }
        }
        var fireIf: ConditionCode?
        if let f = e.fireIf, let cond = parse(f) {
            var code = Code()
            let ctx = ConditionContext(types: allTypes, hasEvent: false, allowWindows: false, source: f.source, calendar: calendar, collectsEvidence: true)
            _ = compile(cond, ctx, into: &code)
            fireIf = register(code)
        }
        if let met { canon += "met=\(canonical(met.0))\n" }
        if let cancel { canon += "cancel=\(canonical(cancel.0))\n" }
        canon += "correlate=\(correlate.map { contract.slotPaths[$0] }.joined(separator: ","))\n"
        canon += "lookback=\(lookback.map { String($0.micros) } ?? "-") single=\(single)\n"
        if let fireIf { canon += "fire_if=\(canonical(fireIf))\n" }
        let def = ExpectationDefinition(arms: arms, met: met?.0, cancel: cancel?.0, correlateSlots: correlate,
                                        lookback: lookback, single: single, fireIf: fireIf)
        return BuiltExpectation(definition: def, armPossible: armPossible,
                                checkPossible: (met?.1 ?? []).union(cancel?.1 ?? []), canonical: canon)
    }

    mutating func compileDeadline(_ arm: RawArm, possible: Set<Int>, calendar: Int?) -> DeadlineRule? {
        func needCalendar(_ loc: SourceLocation, _ what: String) -> Int? {
            if let calendar { return calendar }
            diags.error(.unknownCalendar, "\(what) need a calendar: declare one with - calendar:, or name one with calendar: on the rule", at: loc)
            return nil
        }
        if let w = arm.within {
            switch RuleDuration.parse(w.text) {
            case .failure(let err):
                diags.error(.badDuration, err.message, at: w.location)
                return nil
            case .success(let d):
                switch d.unit {
                case .workingDays: return needCalendar(w.location, "working days").map { .workingDays(d.amount, calendar: $0) }
                case .months: return needCalendar(w.location, "calendar months").map { .months(d.amount, calendar: $0) }
                default: return d.exactMicros.map { .exact(micros: $0) }
                }
            }
        }
        guard let at = arm.at else { return nil }
        switch ConditionParser.parseFieldPlusDuration(at.text) {
        case .failure(let e):
            diags.error(.syntax, e.message, at: at.source.location(ofOffset: e.offset))
            return nil
        case .success(let (path, span, d)):
            let loc = at.source.location(ofOffset: span.start)
            guard let f = contract.field(path) else {
                diags.error(.unknownField, "unknown field '\(path)'", at: loc, notes: suggestion(for: path, among: contract.fields.keys))
                return nil
            }
            guard !f.eventTypes.isDisjoint(with: possible) else {
                diags.error(.fieldNotOnType, "\(path) is not a field of the arming events", at: loc)
                return nil
            }
            captured.insert(f.slot)
            let dloc = at.source.location(ofOffset: d.span.start)
            switch (f.kind, d.duration.unit) {
            case (.date, .months): return needCalendar(dloc, "dates").map { .dateFieldPlusMonths(slot: f.slot, months: d.duration.amount, calendar: $0) }
            case (.date, .days): return needCalendar(dloc, "dates").map { .dateFieldPlusDays(slot: f.slot, days: d.duration.amount, calendar: $0) }
            case (.date, .weeks): return needCalendar(dloc, "dates").map { .dateFieldPlusDays(slot: f.slot, days: 7 * d.duration.amount, calendar: $0) }
            case (.instant, _) where d.duration.exactMicros != nil:
                return .instantFieldPlus(slot: f.slot, micros: d.duration.exactMicros ?? 0)
            case (.date, _), (.instant, _):
                diags.error(.badDuration, "\(path) (\(f.kind)) plus \(d.duration.unit.rawValue) is not supported; a date takes months, weeks or days, a date-time exact time", at: dloc)
                return nil
            default:
                diags.error(.typeMismatch, "at: needs a date or date-time field, not \(path) (\(f.kind))", at: loc)
                return nil
            }
        }
    }

    // MARK: templates

    mutating func compileTemplate(_ o: LocatedText, triggerTypes: Set<Int>, hasDeadline: Bool) -> [TemplatePart] {
        var parts: [TemplatePart] = []
        var text = ""
        let s = Array(o.text.unicodeScalars)
        var i = 0
        while i < s.count {
            let c = s[i]
            if c == "{", i + 1 < s.count, s[i + 1] == "{" { text.unicodeScalars.append("{"); i += 2; continue }
            if c == "}", i + 1 < s.count, s[i + 1] == "}" { text.unicodeScalars.append("}"); i += 2; continue }
            if c == "}" {
                diags.error(.badTemplate, "unmatched '}' in output (write '}}' for a literal brace)", at: o.source.location(ofOffset: i))
                return parts
            }
            guard c == "{" else { text.unicodeScalars.append(c); i += 1; continue }
            guard let close = s[(i + 1)...].firstIndex(of: "}") else {
                diags.error(.badTemplate, "unclosed '{' in output (write '{{' for a literal brace)", at: o.source.location(ofOffset: i))
                return parts
            }
            let name = String(String.UnicodeScalarView(s[(i + 1)..<close])).trimmingCharacters(in: .whitespaces)
            let placeholder = Located(source: o.source, offset: i + 1)
            var loc: SourceLocation { placeholder.location }
            if !text.isEmpty { parts.append(.text(text)); text = "" }
            switch name {
            case "deadline":
                if hasDeadline { parts.append(.deadline) } else {
                    diags.error(.badTemplate, "{deadline} is only defined for rules with expect:", at: loc)
                }
            case "fired_at": parts.append(.firedAt)
            case "child.id", "child_id": parts.append(.childId)
            case "rule", "rule_id": parts.append(.ruleId)
            case "severity": parts.append(.severity)
            default:
                guard let f = contract.field(name) else {
                    diags.error(.badTemplate, "unknown placeholder '{\(name)}'", at: loc,
                                notes: suggestion(for: name, among: Array(contract.fields.keys) + ["deadline", "fired_at", "rule", "severity"]))
                    i = close + 1
                    continue
                }
                switch f.kind {
                case .string(freeText: true), .stringArray:
                    diags.error(.freeTextInOutput, "\(name) is free text; alerts carry ids and coded values, never free text",
                                at: loc, notes: ["alerts are shared beyond the recording agency; see the data protection section of docs/rules.md"])
                case .object:
                    diags.error(.badTemplate, "\(name) is an object; name one of its fields", at: loc)
                default:
                    if f.eventTypes.isDisjoint(with: triggerTypes) && !triggerTypes.isEmpty {
                        diags.error(.fieldNotOnType, "\(name) is not a field of the events that trigger this rule", at: loc)
                    } else {
                        parts.append(.field(slot: f.slot))
                    }
                }
            }
            i = close + 1
        }
        if !text.isEmpty { parts.append(.text(text)) }
        return parts
    }

    // MARK: canonical text (for rule versions)

    func canonical(_ range: ConditionCode) -> String { canonical(program[range.start..<range.end]) }

    func canonical(_ code: ArraySlice<Instruction>) -> String {
        code.map { canonical($0) }.joined(separator: ";")
    }

    func canonical(_ r: ValueRef) -> String {
        switch r {
        case .slot(let s): return contract.slotPaths[s]
        case .state(let i): return "state{\(states[i].canonical)}"
        case .it: return "it"
        }
    }

    func canonical(_ set: SymbolSet) -> String { set.members.map { contract.symbols.name($0) }.joined(separator: ",") }

    func canonical(_ v: FieldValue) -> String {
        switch v {
        case .symbol(let s): return contract.symbols.name(s)
        case .string(let s): return "\"\(s)\""
        default: return "\(v)"
        }
    }

    func calendarRef(_ i: Int) -> String { "cal#" + calendarDigests[i] }

    func canonical(_ ins: Instruction) -> String {
        switch ins {
        case .constant(let b): return "\(b)"
        case .exists(let r): return "exists(\(canonical(r)))"
        case .symbolIs(let r, let s): return "\(canonical(r))=\(contract.symbols.name(s))"
        case .symbolIn(let r, let set): return "\(canonical(r))in(\(canonical(set)))"
        case .stringIs(let r, let s): return "\(canonical(r))=\"\(s)\""
        case .stringIn(let r, let set): return "\(canonical(r))in(\(set.sorted().map { "\"\($0)\"" }.joined(separator: ",")))"
        case .boolIs(let r, let b): return "\(canonical(r))=\(b)"
        case .intCompare(let r, let op, let n): return "\(canonical(r))\(op.rawValue)\(n)"
        case .intIn(let r, let set): return "\(canonical(r))in(\(set.sorted().map(String.init).joined(separator: ",")))"
        case .valuesEqual(let a, let b): return "\(canonical(a))==\(canonical(b))"
        case .arrayHasSymbol(let r, let s): return "\(canonical(r))has\(contract.symbols.name(s))"
        case .arrayHasValueOf(let r, let o): return "\(canonical(r))has(\(canonical(o)))"
        case .arrayIntersects(let r, let set): return "\(canonical(r))intersects(\(canonical(set)))"
        case .arrayHasString(let r, let s): return "\(canonical(r))has\"\(s)\""
        case .keyedHas(let i, let v): return "state{\(states[i].canonical)}has(\(canonical(v)))"
        case .keyedExists(let i): return "exists(state{\(states[i].canonical)})"
        case .age(let slot, let op, let bound, let cal): return "age(\(contract.slotPaths[slot]))\(op.rawValue)\(bound)@\(calendarRef(cal))"
        case .windowCount(let w, let micros, let op, let n): return "count(\(windows[w].canonical),\(micros))\(op.rawValue)\(n)"
        case .windowDistinct(let w, let micros, let op, let n): return "distinct(\(windows[w].canonical),\(micros))\(op.rawValue)\(n)"
        case .anyElement(let r, let n): return "any(\(canonical(r)),\(n))"
        case .not: return "not"
        case .jumpIfFalse(let k): return "jf\(k)"
        case .jumpIfTrue(let k): return "jt\(k)"
        }
    }

    func canonical(_ d: DeadlineRule) -> String {
        switch d {
        case .exact(let m): return "exact\(m)"
        case .workingDays(let n, let c): return "wd\(n)@\(calendarRef(c))"
        case .months(let n, let c): return "mo\(n)@\(calendarRef(c))"
        case .dateFieldPlusMonths(let s, let n, let c): return "\(contract.slotPaths[s])+mo\(n)@\(calendarRef(c))"
        case .dateFieldPlusDays(let s, let n, let c): return "\(contract.slotPaths[s])+d\(n)@\(calendarRef(c))"
        case .instantFieldPlus(let s, let m): return "\(contract.slotPaths[s])+\(m)"
        }
    }

    func canonical(_ p: TemplatePart) -> String {
        switch p {
        case .text(let t): return t
        case .field(let s): return "{\(contract.slotPaths[s])}"
        case .deadline: return "{deadline}"
        case .firedAt: return "{fired_at}"
        case .childId: return "{child.id}"
        case .ruleId: return "{rule}"
        case .severity: return "{severity}"
        }
    }
}
