import VigilContract

/// Where an instruction reads a value.
public enum ValueRef: Hashable, Sendable {
    /// A field of the current event, by contract slot.
    case slot(Int)
    /// A declared (unkeyed) state of the child.
    case state(Int)
    /// The element bound by `any(...)`.
    case it
}

/// Age bounds: calendar months (local midnight on the date plus N months) or an exact length.
public enum AgeBound: Hashable, Sendable {
    case months(Int)
    case micros(Int64)
}

/// One step of a compiled condition. A condition is a contiguous run of instructions that leaves its result
/// in a single boolean register; `and`/`or` compile to relative jumps, so evaluation is one linear pass with
/// short-circuiting and never looks a field up by name.
public enum Instruction: Sendable, Hashable {
    case constant(Bool)
    case exists(ValueRef)
    case symbolIs(ValueRef, Symbol)
    case symbolIn(ValueRef, SymbolSet)
    case stringIs(ValueRef, String)
    case stringIn(ValueRef, Set<String>)
    case boolIs(ValueRef, Bool)
    case intCompare(ValueRef, CompareOp, Int64)
    case intIn(ValueRef, Set<Int64>)
    /// Both present and equal.
    case valuesEqual(ValueRef, ValueRef)
    case arrayHasSymbol(ValueRef, Symbol)
    case arrayHasValueOf(ValueRef, ValueRef)
    case arrayIntersects(ValueRef, SymbolSet)
    case arrayHasString(ValueRef, String)
    /// Some key of a keyed state holds this value.
    case keyedHas(state: Int, FieldValue)
    case keyedExists(state: Int)
    /// The current event's time against local midnight of a date field plus a bound.
    case age(slot: Int, CompareOp, AgeBound, calendar: Int)
    case windowCount(window: Int, micros: Int64, CompareOp, Int)
    case windowDistinct(window: Int, micros: Int64, CompareOp, Int)
    /// Runs the next `bodyLength` instructions once per element with `it` bound; true if any run is true.
    case anyElement(ValueRef, bodyLength: Int)
    case not
    case jumpIfFalse(Int)
    case jumpIfTrue(Int)
}

/// A condition: a range of `CompiledRuleSet.program`.
public struct ConditionCode: Hashable, Sendable {
    public var start: Int
    public var end: Int
    public init(start: Int, end: Int) {
        self.start = start
        self.end = end
    }
    public static let alwaysTrue = ConditionCode(start: 0, end: 0)
    public var isTrivial: Bool { start == end }
}

/// "The latest value of a field", optionally one per key, declared with `- state:`.
public struct StateDefinition: Sendable {
    public let name: String
    public let condition: ConditionCode
    public let valueSlot: Int
    public let keySlots: [Int]
    public var isKeyed: Bool { !keySlots.isEmpty }
    public let canonical: String
}

/// Per-child history kept for window functions and look-backs.
public struct WindowDefinition: Sendable {
    public let condition: ConditionCode
    /// How far back entries are kept, in microseconds (the longest use).
    public let retention: Int64
    /// Slot whose value `distinct(...)` counts, if any.
    public let distinctSlot: Int?
    /// Slots whose values correlate an expectation's look-back, if any.
    public let keySlots: [Int]
    public let canonical: String
}

/// When an armed expectation falls due.
public enum DeadlineRule: Hashable, Sendable {
    case exact(micros: Int64)
    case workingDays(Int, calendar: Int)
    case months(Int, calendar: Int)
    /// Local midnight on a date field's value plus months/days (`at: child.date_of_birth + 5 months`).
    case dateFieldPlusMonths(slot: Int, months: Int, calendar: Int)
    case dateFieldPlusDays(slot: Int, days: Int, calendar: Int)
    case instantFieldPlus(slot: Int, micros: Int64)
}

public struct ArmClause: Sendable {
    public let condition: ConditionCode
    public let deadline: DeadlineRule
}

/// An absence or timer rule's expectation: armed by some events, met or cancelled by later ones, firing at
/// its deadline otherwise.
public struct ExpectationDefinition: Sendable {
    public let arms: [ArmClause]
    public let met: ConditionCode?
    public let cancel: ConditionCode?
    /// Slots whose values must be equal on the arming event and the meeting/cancelling event.
    public let correlateSlots: [Int]
    /// A look-back window: an event read before the arming one counts as meeting it when it occurred no
    /// earlier than `micros` before the arming event.
    public let lookback: (window: Int, micros: Int64)?
    /// At most one pending per child (and correlation key): a new arming replaces it.
    public let single: Bool
    /// Evaluated against the child's state at the deadline; the alert fires only when it holds.
    public let fireIf: ConditionCode?
}

/// A piece of an output template.
public enum TemplatePart: Hashable, Sendable {
    case text(String)
    case field(slot: Int)
    case deadline
    case firedAt
    case childId
    case ruleId
    case severity
}

public enum Severity: String, Sendable, CaseIterable, Comparable {
    case low, medium, high, critical

    public var rank: Int {
        switch self {
        case .low: return 0
        case .medium: return 1
        case .high: return 2
        case .critical: return 3
        }
    }

    public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
}

/// A rule's meaning in three parts (each 16 hex digits of a content hash): what decides whether it fires
/// and on which evidence, when its deadlines fall, and how its alert reads.
public struct RuleFingerprint: Sendable, Hashable, Codable {
    public var logic: String
    public var timing: String
    public var output: String

    public init(logic: String, timing: String, output: String) {
        self.logic = logic
        self.timing = timing
        self.output = output
    }
}

/// Where a rule's alerts go: `live` to the duty managers' feed; `shadow` evaluated, its alerts to a separate
/// topic and the audit log marked shadow (to measure a new rule's noise first); `disabled` compiled and
/// tested, not evaluated.
public enum RuleMode: String, Sendable, CaseIterable, Codable {
    case live, shadow, disabled
}

public struct CompiledRule: Sendable {
    public let id: String
    public let title: String
    public let description: String
    public let source: String
    public let severity: Severity
    /// Content hash of the compiled meaning (16 hex digits).
    public let version: String
    /// The meaning in parts, to classify a change of the pack (`PackManifest`).
    public let fingerprint: RuleFingerprint
    public var mode: RuleMode
    /// Free labels to select rules by (`vigil replay --tag`).
    public let tags: [String]
    /// `immediate`, `absence` or `timer`.
    public let kind: String
    public let immediate: ConditionCode?
    public let expectation: ExpectationDefinition?
    /// Microseconds within which a second alert for the same child is suppressed; `Int64.max` is forever.
    public let suppressMicros: Int64?
    public let template: [TemplatePart]
    /// `labels:`, fixed, in the order written.
    public let labels: [RuleLabel]
    /// `annotations:`, each a template rendered like the summary, in the order written.
    public let annotations: [RuleAnnotation]
    /// Template slots, in order (the summary's, then each annotation's), captured when an expectation is armed.
    public let templateSlots: [Int]
    /// Windows whose matching entries are cited as evidence (window index, length in microseconds).
    public let evidenceWindows: [(window: Int, micros: Int64)]
    /// States whose setting events are cited as evidence when they hold the given value.
    public let evidenceStates: [(state: Int, value: FieldValue?)]
    public let location: SourceLocation
}

/// A rule's label: a fixed name and value every alert of the rule carries (`team: safeguarding`).
public struct RuleLabel: Sendable, Hashable {
    public let key: String
    public let value: String
}

/// A rule's annotation: a name and a template rendered per alert (`runbook: "https://.../{rule}"`).
public struct RuleAnnotation: Sendable, Hashable {
    public let key: String
    public let template: [TemplatePart]
}

/// What one event type triggers, precomputed so an event visits only rules that can react to it.
public struct TypeDispatch: Sendable {
    public var states: [Int] = []
    public var windows: [Int] = []
    /// Rules whose expectation may be met or cancelled by this type.
    public var expectationChecks: [Int] = []
    public var immediates: [Int] = []
    /// (rule, arm clause) pairs that this type may arm.
    public var arms: [(rule: Int, clause: Int)] = []
}

/// An immutable, `Sendable` compiled rule pack: what the engine executes.
public struct CompiledRuleSet: Sendable {
    public let contract: EventContract
    public internal(set) var rules: [CompiledRule]
    public let program: [Instruction]
    /// Per instruction of `program`: the source text of the condition whose result it leaves (`data.x = y`,
    /// `not (...)`, `count(...) >= 3`), "" for jumps and parts of a condition. For explanations only.
    public let notes: [String]
    public let states: [StateDefinition]
    public let windows: [WindowDefinition]
    public let calendars: [WorkingCalendar]
    /// Indexed by event type index.
    public let dispatch: [TypeDispatch]
    /// Every slot evaluation or templates read; the decoder captures these and no others.
    public let capturedSlots: [Int]

    public func rule(id: String) -> CompiledRule? { rules.first { $0.id == id } }

    /// How far back (microseconds) a child's history must reach for the pack to re-derive it exactly: the
    /// longest window or look-back, suppression, and deadline (working days and months as their longest
    /// calendar span). Deadlines taken from a date field are not bounded by the event's time and not counted.
    public var horizonMicros: Int64 {
        let day = Instant.microsPerDay
        var h: Int64 = 0
        for w in windows { h = max(h, w.retention) }
        for r in rules {
            if let s = r.suppressMicros, s != Int64.max { h = max(h, s) }
            guard let e = r.expectation else { continue }
            if let lb = e.lookback { h = max(h, lb.micros) }
            for a in e.arms {
                switch a.deadline {
                case .exact(let m), .instantFieldPlus(_, let m): h = max(h, m)
                case .workingDays(let n, _): h = max(h, Int64(n / 5 + 1) * 7 * day + 14 * day)
                case .months(let n, _): h = max(h, Int64(n * 31 + 1) * day)
                case .dateFieldPlusMonths, .dateFieldPlusDays: break
                }
            }
        }
        return h
    }
}

extension CompiledRuleSet {
    /// A template as its author wrote it (`Referral {data.referral_ref} due {deadline}`).
    public func templateText(_ parts: [TemplatePart]) -> String {
        parts.map { part -> String in
            switch part {
            case .text(let t): return t.replacingOccurrences(of: "{", with: "{{").replacingOccurrences(of: "}", with: "}}")
            case .field(let slot): return "{\(contract.slotPaths[slot])}"
            case .deadline: return "{deadline}"
            case .firedAt: return "{fired_at}"
            case .childId: return "{child.id}"
            case .ruleId: return "{rule}"
            case .severity: return "{severity}"
            }
        }.joined()
    }

    /// The rules evaluated (not disabled).
    public var evaluated: Set<Int> { Set(rules.indices.filter { rules[$0].mode != .disabled }) }

    /// The same rule set with every rule live: what `vigil test` runs (a shadow or disabled rule is tested
    /// all the same).
    public var allLive: CompiledRuleSet {
        var copy = self
        for i in copy.rules.indices { copy.rules[i].mode = .live }
        return copy
    }

    /// The same rule set with only the rules `keep` accepts evaluated (declared state and windows are still
    /// kept). For measurements and tools; alerts of the others are simply not raised.
    public func restricted(to keep: (CompiledRule) -> Bool) -> CompiledRuleSet {
        let kept = Set(rules.indices.filter { keep(rules[$0]) })
        let dispatch = self.dispatch.map { d -> TypeDispatch in
            var d = d
            d.immediates = d.immediates.filter { kept.contains($0) }
            d.expectationChecks = d.expectationChecks.filter { kept.contains($0) }
            d.arms = d.arms.filter { kept.contains($0.rule) }
            return d
        }
        return CompiledRuleSet(contract: contract, rules: rules, program: program, notes: notes, states: states, windows: windows,
                               calendars: calendars, dispatch: dispatch, capturedSlots: capturedSlots)
    }
}
