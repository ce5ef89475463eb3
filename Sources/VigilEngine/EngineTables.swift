import VigilContract
import VigilRules

/// The compiled program and dispatch lists behind stable pointers, so the per-event path reads them
/// without copying arrays (and retaining their storage) on every event. Immutable once built; freed with
/// the engine's last copy.
final class EngineTables: @unchecked Sendable {
    let program: UnsafeMutableBufferPointer<Instruction>
    /// Beside `program`, its most run instructions as 12 bytes each (`Op`): a step reads one of these, and reads the
    /// instruction itself (56 bytes, all of them loaded before its case was chosen) only for the others.
    let ops: UnsafeMutableBufferPointer<Op>
    /// Per event type, ranges into `lists`: states, windows, expectation checks, immediates, arms (rule, clause).
    let lists: UnsafeMutableBufferPointer<Int32>
    /// Per entry of `lists` (for an arm, at its rule's place, for its clause), where the condition it dispatches is
    /// entered for an event of the type it is listed under: 2 when the condition begins with a test of the event's
    /// type that such an event passes and the jump after it (`type = X and ...`, tested already by the dispatch:
    /// entered after them, the result is the same, as the test leaves the result true, the jump then falls through,
    /// and evaluation starts with a true result), else 0. Checks of expectations (two conditions) are entered at
    /// their start.
    let skips: UnsafeMutableBufferPointer<UInt8>
    let ranges: [(states: Range<Int>, windows: Range<Int>, checks: Range<Int>, immediates: Range<Int>, arms: Range<Int>)]
    /// The shortest window retention: entries younger than this are never pruned.
    let minimumRetention: Int64
    /// Per rule, its expectation's parts the per-event path reads, trivially copyable (binding
    /// `rules.rules[ri].expectation` copied the definition, retaining its arrays, at every check and arming).
    let expectations: UnsafeMutableBufferPointer<Expectation?>
    /// The arm clauses of every expectation, rule by rule (`Expectation.arms`).
    let armClauses: UnsafeMutableBufferPointer<ArmClause>
    /// Per rule, its expectation's correlation slots (empty without one).
    let correlate: [[Int]]
    /// Per rule, its immediate condition (nil for an expectation).
    let immediates: UnsafeMutableBufferPointer<ConditionCode?>
    /// Per state and per window, the parts an event reads (trivially copyable: binding `rules.states[s]` or
    /// `rules.windows[w]` copied the definition, retaining its strings and arrays, for each one an event updates).
    let states: UnsafeMutableBufferPointer<State>
    let windows: UnsafeMutableBufferPointer<Window>
    /// Per state and per window, its key slots (none for a state without a key).
    let stateKeys: [[Int]]
    let windowKeys: [[Int]]

    /// An instruction of the program the interpreter runs from its kind and two numbers; `general` for any other.
    struct Op {
        var kind: Kind
        /// A jump's offset, a symbol's id, a boolean as 0 or 1.
        var operand: Int32
        var slot: Int32
        enum Kind: UInt8 { case general, jumpIfFalse, jumpIfTrue, symbolIs, exists, boolIs }

        init(kind: Kind = .general, operand: Int32 = 0, slot: Int32 = 0) {
            self.kind = kind
            self.operand = operand
            self.slot = slot
        }

        init(_ i: Instruction) {
            switch i {
            case .jumpIfFalse(let k) where Int32(exactly: k) != nil: self.init(kind: .jumpIfFalse, operand: Int32(k))
            case .jumpIfTrue(let k) where Int32(exactly: k) != nil: self.init(kind: .jumpIfTrue, operand: Int32(k))
            case .symbolIs(.slot(let s), let v) where Int32(exactly: s) != nil: self.init(kind: .symbolIs, operand: Int32(v.id), slot: Int32(s))
            case .exists(.slot(let s)) where Int32(exactly: s) != nil: self.init(kind: .exists, slot: Int32(s))
            case .boolIs(.slot(let s), let b) where Int32(exactly: s) != nil: self.init(kind: .boolIs, operand: b ? 1 : 0, slot: Int32(s))
            default: self.init()
            }
        }
    }

    /// `code` entered as entry `k` of `lists` says (`skips`).
    @inline(__always) func entered(_ code: ConditionCode, _ k: Int) -> ConditionCode {
        ConditionCode(start: code.start + Int(skips[k]), end: code.end)
    }

    struct State {
        var condition: ConditionCode
        var valueSlot: Int
    }

    struct Window {
        var condition: ConditionCode
        var retention: Int64
        var distinctSlot: Int?
    }

    struct Expectation {
        var arms: Range<Int>
        var met: ConditionCode?
        var cancel: ConditionCode?
        var fireIf: ConditionCode?
        var single: Bool
        var lookback: (window: Int, micros: Int64)?
    }

    init(_ rules: CompiledRuleSet) {
        minimumRetention = rules.windows.map(\.retention).min() ?? 0
        program = .allocate(capacity: max(rules.program.count, 1))
        _ = program.initialize(from: rules.program)
        ops = .allocate(capacity: max(rules.program.count, 1))
        _ = ops.initialize(from: rules.program.map(Op.init))
        var flat: [Int32] = []
        var ranges: [(states: Range<Int>, windows: Range<Int>, checks: Range<Int>, immediates: Range<Int>, arms: Range<Int>)] = []
        func add(_ xs: [Int]) -> Range<Int> {
            let start = flat.count
            flat += xs.map(Int32.init)
            return start..<flat.count
        }
        // Disabled rules are compiled and tested, never evaluated: they are not dispatched to.
        let on = rules.evaluated
        for d in rules.dispatch {
            let s = add(d.states), w = add(d.windows), c = add(d.expectationChecks.filter(on.contains)), i = add(d.immediates.filter(on.contains))
            let start = flat.count
            for (r, clause) in d.arms where on.contains(r) { flat.append(Int32(r)); flat.append(Int32(clause)) }
            ranges.append((s, w, c, i, start..<flat.count))
        }
        lists = .allocate(capacity: max(flat.count, 1))
        _ = lists.initialize(from: flat)
        self.ranges = ranges
        skips = .allocate(capacity: max(flat.count, 1))
        skips.initialize(repeating: 0)
        let typeSlot = rules.contract.typeSlot
        let program = rules.program
        func skip(_ code: ConditionCode?, forType t: Int) -> UInt8 {
            guard let code, code.end - code.start >= 2, code.start >= 0, code.end <= program.count,
                  case .jumpIfFalse = program[code.start + 1] else { return 0 }
            switch program[code.start] {
            case .symbolIs(.slot(typeSlot), let s): return rules.contract.eventTypeIndex(s) == t ? 2 : 0
            case .symbolIn(.slot(typeSlot), let set):
                return set.members.contains { rules.contract.eventTypeIndex($0) == t } ? 2 : 0
            default: return 0
            }
        }
        for (t, r) in ranges.enumerated() {
            for k in r.states { skips[k] = skip(rules.states[Int(flat[k])].condition, forType: t) }
            for k in r.windows { skips[k] = skip(rules.windows[Int(flat[k])].condition, forType: t) }
            for k in r.immediates { skips[k] = skip(rules.rules[Int(flat[k])].immediate, forType: t) }
            for k in stride(from: r.arms.lowerBound, to: r.arms.upperBound, by: 2) {
                skips[k] = skip(rules.rules[Int(flat[k])].expectation?.arms[Int(flat[k + 1])].condition, forType: t)
            }
        }
        var clauses: [ArmClause] = []
        var facts: [Expectation?] = []
        correlate = rules.rules.map { $0.expectation?.correlateSlots ?? [] }
        for r in rules.rules {
            guard let e = r.expectation else { facts.append(nil); continue }
            let start = clauses.count
            clauses += e.arms
            facts.append(Expectation(arms: start..<clauses.count, met: e.met, cancel: e.cancel, fireIf: e.fireIf, single: e.single, lookback: e.lookback))
        }
        expectations = .allocate(capacity: max(facts.count, 1))
        _ = expectations.initialize(from: facts)
        armClauses = .allocate(capacity: max(clauses.count, 1))
        _ = armClauses.initialize(from: clauses)
        immediates = .allocate(capacity: max(rules.rules.count, 1))
        _ = immediates.initialize(from: rules.rules.map(\.immediate))
        states = .allocate(capacity: max(rules.states.count, 1))
        _ = states.initialize(from: rules.states.map { State(condition: $0.condition, valueSlot: $0.valueSlot) })
        windows = .allocate(capacity: max(rules.windows.count, 1))
        _ = windows.initialize(from: rules.windows.map { Window(condition: $0.condition, retention: $0.retention, distinctSlot: $0.distinctSlot) })
        stateKeys = rules.states.map(\.keySlots)
        windowKeys = rules.windows.map(\.keySlots)
    }

    deinit {
        program.baseAddress?.deinitialize(count: program.count)
        program.deallocate()
        ops.deallocate()
        lists.deallocate()
        skips.deallocate()
        expectations.deallocate()
        armClauses.deallocate()
        immediates.deallocate()
        states.deallocate()
        windows.deallocate()
    }
}

/// Children by id: open addressing on a stable 64-bit hash of the id (computed once per event), so finding a
/// child costs no `Hasher` run and, almost always, one string comparison. An entry is 8 bytes, the hash's low
/// 32 bits (where the child is placed, and a filter before the ids are compared) and the child's index: with
/// many children the lookup is a cache miss, so there is only one, and the table is half the size a whole hash
/// would make it. Children in one probe run share the hash's low bits up to the table's size, so the filter
/// keeps 32 - log2(slots) bits (11 at two million slots): fewer than one lookup in a thousand compares an id more.
struct ChildIndex: Sendable {
    struct Entry: Sendable {
        var hash: UInt32
        var child: Int32
    }
    var entries: [Entry] = Array(repeating: Entry(hash: 0, child: -1), count: 1024)
    var count = 0

    var slotCount: Int { entries.count }

    func find(_ id: String, hash: UInt64, in children: [ChildState]) -> Int? {
        // Through buffer pointers, so only the id is read (subscripting the array would copy the whole child).
        children.withUnsafeBufferPointer { kids in
            entries.withUnsafeBufferPointer { e in
                let mask = e.count - 1
                let h = UInt32(truncatingIfNeeded: hash)
                var i = Int(h) & mask
                while true {
                    let s = e[i].child
                    if s < 0 { return nil }
                    if e[i].hash == h, kids[Int(s)].id == id { return Int(s) }
                    i = (i + 1) & mask
                }
            }
        }
    }

    mutating func insert(_ child: Int, hash: UInt64) {
        // At most three quarters full (as Swift's own dictionaries): a probe of 8-byte entries stays within a
        // cache line or two, and the table takes 11 bytes a child at its fullest rather than 16 at half.
        if (count + 1) * 4 > entries.count * 3 { grow() }
        place(Entry(hash: UInt32(truncatingIfNeeded: hash), child: Int32(child)))
        count += 1
    }

    private mutating func place(_ entry: Entry) {
        let mask = entries.count - 1
        var i = Int(entry.hash) & mask
        while entries[i].child >= 0 { i = (i + 1) & mask }
        entries[i] = entry
    }

    private mutating func grow() {
        let old = entries.filter { $0.child >= 0 }
        entries = Array(repeating: Entry(hash: 0, child: -1), count: entries.count * 2)
        for e in old { place(e) }
    }
}
