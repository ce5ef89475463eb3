import VigilContract
import VigilRules

/// Sees which instruction last set a condition's result (for explanations); the engine's own evaluation
/// passes `NoTrace`, which compiles away.
protocol EvalTrace {
    mutating func set(_ pc: Int)
}

struct NoTrace: EvalTrace {
    @inline(__always) mutating func set(_ pc: Int) {}
}

/// The last instruction that set the result: for a false condition, the part of it that failed.
struct LastSetter: EvalTrace {
    var pc = -1
    mutating func set(_ pc: Int) { self.pc = pc }
}

extension Deriver {
    /// Runs one compiled condition over an event and a child's derivation. `now` is the event's time (windows
    /// end at it, ages are measured at it); `it` is the element bound by `any(...)`.
    @inline(__always) func eval<R: FieldReader>(_ code: ConditionCode, _ r: R, _ d: Derivation, _ now: Instant, _ it: FieldValue = .missing) -> Bool {
        var none = NoTrace()
        return eval(code, r, d, now, it, trace: &none)
    }

    func eval<R: FieldReader, T: EvalTrace>(_ code: ConditionCode, _ r: R, _ d: Derivation, _ now: Instant, _ it: FieldValue, trace: inout T) -> Bool {
        var flag = true
        var pc = code.start
        let end = code.end
        let program = tables.program
        let ops = tables.ops
        while pc < end {
            let op = ops[pc]
            switch op.kind {
            case .jumpIfFalse:
                pc += flag ? 1 : Int(op.operand)
                continue
            case .jumpIfTrue:
                pc += flag ? Int(op.operand) : 1
                continue
            case .symbolIs:
                flag = r.symbol(at: Int(op.slot))?.id == UInt16(truncatingIfNeeded: op.operand)
                trace.set(pc)
                pc += 1
                continue
            case .exists:
                flag = r.has(Int(op.slot))
                trace.set(pc)
                pc += 1
                continue
            case .boolIs:
                flag = r.bool(at: Int(op.slot)) == (op.operand != 0)
                trace.set(pc)
                pc += 1
                continue
            case .general:
                break
            }
            switch program[pc] {
            case .constant(let b):
                flag = b
            case .exists(let ref):
                if case .slot(let slot) = ref { flag = r.has(slot) } else { flag = !fetch(ref, r, d, it).isMissing }
            case .symbolIs(let ref, let s):
                if let v = symbol(ref, r, d, it) { flag = v == s } else { flag = false }
            case .symbolIn(let ref, let set):
                if let v = symbol(ref, r, d, it) { flag = set.contains(v) } else { flag = false }
            case .stringIs(let ref, let s):
                if case .string(let v) = fetch(ref, r, d, it) { flag = v == s } else { flag = false }
            case .stringIn(let ref, let set):
                if case .string(let v) = fetch(ref, r, d, it) { flag = set.contains(v) } else { flag = false }
            case .boolIs(let ref, let b):
                if let v = bool(ref, r, d, it) { flag = v == b } else { flag = false }
            case .intCompare(let ref, let op, let n):
                if let v = int(ref, r, d, it) { flag = op.holds(v, n) } else { flag = false }
            case .intIn(let ref, let set):
                if let v = int(ref, r, d, it) { flag = set.contains(v) } else { flag = false }
            case .valuesEqual(let a, let b):
                let x = fetch(a, r, d, it)
                flag = !x.isMissing && x == fetch(b, r, d, it)
            case .arrayHasSymbol(let ref, let s):
                if case .symbols(let set) = fetch(ref, r, d, it) { flag = set.contains(s) } else { flag = false }
            case .arrayHasValueOf(let ref, let other):
                switch (fetch(ref, r, d, it), fetch(other, r, d, it)) {
                case (.symbols(let set), .symbol(let s)): flag = set.contains(s)
                case (.strings(let arr), .string(let s)): flag = arr.contains(s)
                default: flag = false
                }
            case .arrayIntersects(let ref, let set):
                if case .symbols(let v) = fetch(ref, r, d, it) { flag = v.intersects(set) } else { flag = false }
            case .arrayHasString(let ref, let s):
                if case .strings(let v) = fetch(ref, r, d, it) { flag = v.contains(s) } else { flag = false }
            case .keyedHas(let state, let value):
                let s = UInt16(state)
                flag = d.states.contains { $0.state == s && $0.value == value }
            case .keyedExists(let state):
                let s = UInt16(state)
                flag = d.states.contains { $0.state == s }
            case .age(let slot, let op, let bound, let cal):
                guard let dob = r.date(at: slot) else { flag = false; break }
                flag = op.holds(now, threshold(born: dob, bound, cal, seenFrom: now))
            case .windowCount(let w, let micros, let op, let n):
                let lower = now.micros - micros
                let window = UInt16(w)
                var count = 0
                for e in d.entries where e.window == window && e.at.micros > lower && e.at <= now { count += 1 }
                flag = op.holds(count, n)
            case .windowDistinct(let w, let micros, let op, let n):
                let lower = now.micros - micros
                let window = UInt16(w)
                // The values seen in room on the stack (an array made for every evaluation cost about 500
                // instructions in allocations).
                let distinct = withUnsafeTemporaryAllocation(of: UInt64.self, capacity: max(d.entries.count, 1)) { seen in
                    var k = 0
                    for e in d.entries where e.window == window && e.at.micros > lower && e.at <= now && !seen[..<k].contains(e.distinct) {
                        seen[k] = e.distinct
                        k += 1
                    }
                    return k
                }
                flag = op.holds(distinct, n)
            case .anyElement(let ref, let n):
                let body = ConditionCode(start: pc + 1, end: pc + 1 + n)
                var found = false
                switch fetch(ref, r, d, it) {
                case .symbols(let set):
                    for s in set.members where eval(body, r, d, now, .symbol(s)) { found = true; break }
                case .strings(let arr):
                    for s in arr where eval(body, r, d, now, .string(s)) { found = true; break }
                default:
                    break
                }
                flag = found
                trace.set(pc)
                pc += n + 1
                continue
            case .not:
                flag = !flag
            case .jumpIfFalse(let k):
                pc += flag ? 1 : k
                continue
            case .jumpIfTrue(let k):
                pc += flag ? k : 1
                continue
            }
            trace.set(pc)
            pc += 1
        }
        return flag
    }

    /// The instant a child born on `dob` reaches age `bound` (00:00 local on the day, in calendar `cal`'s zone),
    /// or, when `now` is clearly on one side of it, an instant on that same side: every comparison of `now`
    /// with either then agrees. N months after a day are 28N-3 to 31N days after it (months are 28 to 31 days;
    /// a day clamped to a shorter month loses at most 3), and a local midnight is within the zone's widest
    /// offset of the UTC one; most ages are years from their threshold, and the calendar is not consulted.
    @inline(__always) func threshold(born dob: Day, _ bound: AgeBound, _ cal: Int, seenFrom now: Instant) -> Instant {
        let calendar = rules.calendars[cal]
        let day = Instant.microsPerDay
        // The span from the day's UTC midnight: at least `low`, at most `high` (far from overflow: days within
        // 27,000 years of 1970, spans under 83,000 years; otherwise exactly).
        var low: Int64 = 0, high: Int64 = 0, bounded = abs(dob.number) < 10_000_000
        switch bound {
        case .months(let n):
            bounded = bounded && n >= 0 && n < 1_000_000
            (low, high) = (Int64(28 * n - 3) * day, Int64(31 * n) * day)
        case .micros(let m):
            bounded = bounded && abs(m) < 1 << 61
            (low, high) = (m, m)
        }
        if bounded {
            let midnight = Int64(dob.number) * day
            let slack = calendar.zone.widestOffset * Instant.microsPerSecond + day
            if now.micros < midnight + low - slack { return Instant(micros: midnight + low - slack) }
            if now.micros > midnight + high + slack { return Instant(micros: midnight + high + slack) }
        }
        switch bound {
        case .months(let n): return calendar.start(of: dob, plusMonths: n)
        case .micros(let m): return calendar.zone.startOfDay(dob) + m
        }
    }

    /// `fetch` of a symbol: a field's read in place.
    @inline(__always) func symbol<R: FieldReader>(_ ref: ValueRef, _ r: R, _ d: Derivation, _ it: FieldValue) -> Symbol? {
        if case .slot(let slot) = ref { return r.symbol(at: slot) }
        if case .symbol(let v) = fetch(ref, r, d, it) { return v }
        return nil
    }

    /// `fetch` of an integer: a field's read in place.
    @inline(__always) func int<R: FieldReader>(_ ref: ValueRef, _ r: R, _ d: Derivation, _ it: FieldValue) -> Int64? {
        if case .slot(let slot) = ref { return r.int(at: slot) }
        if case .int(let v) = fetch(ref, r, d, it) { return v }
        return nil
    }

    /// `fetch` of a boolean: a field's read in place.
    @inline(__always) func bool<R: FieldReader>(_ ref: ValueRef, _ r: R, _ d: Derivation, _ it: FieldValue) -> Bool? {
        if case .slot(let slot) = ref { return r.bool(at: slot) }
        if case .bool(let v) = fetch(ref, r, d, it) { return v }
        return nil
    }

    @inline(__always) func fetch<R: FieldReader>(_ ref: ValueRef, _ r: R, _ d: Derivation, _ it: FieldValue) -> FieldValue {
        switch ref {
        case .slot(let s): return r[s]
        case .it: return it
        case .state(let i):
            let s = UInt16(i)
            for e in d.states where e.state == s { return e.value }
            return .missing
        }
    }
}
