import VigilContract

/// What is known about a condition after compiling it: the event types on which it can be true.
/// `exact` means it is true exactly on those types (a pure test of `type`), which lets `not` complement it.
struct Analysis {
    var possible: Set<Int>
    var exact: Bool
}

/// The environment a condition is compiled in.
struct ConditionContext {
    /// Event types the condition may see here (narrowed by `type = ...` conjuncts to its left).
    var types: Set<Int>
    /// False in `fire_if`, which runs at a deadline with no event.
    var hasEvent: Bool = true
    /// Window functions are not allowed inside a window's own filter.
    var allowWindows: Bool = true
    /// Kind and allowed values of `it` inside `any(...)`.
    var it: (kind: FieldKind, allowed: SymbolSet)?
    var macroStack: [String] = []
    var source: ScalarSource
    /// Calendar for `age(...)`, resolved lazily by the rule compiler.
    var calendar: Int?
    /// Collects evidence references: set for top-level rule conditions only.
    var collectsEvidence: Bool = false
}

/// An operand after resolution.
enum Term {
    case field(ref: ValueRef, kind: FieldKind, allowed: SymbolSet, types: Set<Int>, path: String)
    case keyedState(index: Int, kind: FieldKind, allowed: SymbolSet, name: String)
    case age(slot: Int, path: String)
    case window(index: Int, micros: Int64, distinct: Bool)
    case identifier(String)
    case string(String)
    case number(Int64)
    case bool(Bool)
    case duration(RuleDuration)

    var describe: String {
        switch self {
        case .field(_, let kind, _, _, let path): return "\(path) (\(kind))"
        case .keyedState(_, _, _, let name): return "state.\(name) (one value per key)"
        case .age: return "an age"
        case .window: return "a window count"
        case .identifier(let s): return "'\(s)'"
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .duration(let d): return "a duration (\(d))"
        }
    }
}

extension PackCompiler {
    func location(_ ctx: ConditionContext, _ span: Span) -> SourceLocation { ctx.source.location(ofOffset: span.start) }

    /// Compiles `c` into `code`; reports problems; returns what it knows of the condition.
    mutating func compile(_ c: Condition, _ ctx: ConditionContext, into code: inout Code) -> Analysis {
        let start = code.count
        let a = compileNode(c, ctx, into: &code)
        // The instruction that leaves this condition's result in the register carries its source text, so
        // `vigil explain` can say which condition failed: the last one emitted, or for `any(...)` the first.
        switch c {
        case .and, .or: break
        case .macro(let name, _):
            for i in start..<code.count where !code.notes[i].isEmpty { code.notes[i] = name + ": " + code.notes[i] }
        case .any: if start < code.count { code.notes[start] = ctx.source.text(c.span) }
        default: if start < code.count { code.notes[code.count - 1] = ctx.source.text(c.span) }
        }
        return a
    }

    mutating func compileNode(_ c: Condition, _ ctx: ConditionContext, into code: inout Code) -> Analysis {
        switch c {
        case .constant(let b, _):
            code.append(.constant(b))
            return Analysis(possible: b ? ctx.types : [], exact: true)

        case .and(let a, let b):
            let ra = compile(a, ctx, into: &code)
            let jump = code.count
            code.append(.jumpIfFalse(0))
            var narrowed = ctx
            narrowed.types = ra.possible
            let rb = compile(b, narrowed, into: &code)
            code[jump] = .jumpIfFalse(code.count - jump)
            return Analysis(possible: ra.possible.intersection(rb.possible), exact: ra.exact && rb.exact)

        case .or(let a, let b):
            let ra = compile(a, ctx, into: &code)
            let jump = code.count
            code.append(.jumpIfTrue(0))
            let rb = compile(b, ctx, into: &code)
            code[jump] = .jumpIfTrue(code.count - jump)
            return Analysis(possible: ra.possible.union(rb.possible), exact: ra.exact && rb.exact)

        case .not(let a, _):
            let ra = compile(a, ctx, into: &code)
            code.append(.not)
            return ra.exact ? Analysis(possible: ctx.types.subtracting(ra.possible), exact: true)
                            : Analysis(possible: ctx.types, exact: false)

        case .macro(let name, let span):
            return expandMacro(name, span, ctx, into: &code)

        case .exists(let op, let span):
            guard let t = resolve(op, ctx) else { return failed(ctx, &code) }
            switch t {
            case .field(let ref, _, _, let types, _):
                code.append(.exists(ref))
                return Analysis(possible: ctx.types.intersection(types), exact: false)
            case .keyedState(let i, _, _, _):
                code.append(.keyedExists(state: i))
                return Analysis(possible: ctx.types, exact: false)
            default:
                diags.error(.typeMismatch, "exists takes a field, found \(t.describe)", at: location(ctx, span))
                return failed(ctx, &code)
            }

        case .compare(let l, let op, let r, let span):
            return compare(l, op, r, span, ctx, into: &code)

        case .member(let l, let items, let listName, let negated, let span):
            return member(l, items, listName: listName, negated: negated, span, ctx, into: &code)

        case .contains(let l, let r, let span):
            return contains(l, r, span, ctx, into: &code)

        case .intersects(let l, let items, let listName, let span):
            guard let lt = resolve(l, ctx) else { return failed(ctx, &code) }
            guard case .field(let ref, .symbolArray, let allowed, let types, let path) = lt else {
                diags.error(.typeMismatch, "intersects needs an array of enum values on the left, found \(lt.describe)", at: location(ctx, span))
                return failed(ctx, &code)
            }
            guard let set = symbolSet(items, listName: listName, allowed: allowed, path: path, types: types, ctx) else { return failed(ctx, &code) }
            code.append(.arrayIntersects(ref, set))
            return Analysis(possible: ctx.types.intersection(types), exact: false)

        case .none(let filter, let d, let span):
            guard let (w, micros) = window(filter, d, distinct: nil, span, ctx) else { return failed(ctx, &code) }
            code.append(.windowCount(window: w, micros: micros, .eq, 0))
            return Analysis(possible: ctx.types, exact: false)

        case .any(let path, let pathSpan, let body, let span):
            guard let t = resolve(.path(path, pathSpan), ctx) else { return failed(ctx, &code) }
            guard case .field(let ref, let kind, let allowed, let types, _) = t, kind == .symbolArray || kind == .stringArray else {
                diags.error(.typeMismatch, "any(...) iterates an array field, found \(t.describe)", at: location(ctx, pathSpan))
                return failed(ctx, &code)
            }
            if ctx.it != nil {
                diags.error(.badContext, "any(...) cannot be nested inside another any(...)", at: location(ctx, span))
                return failed(ctx, &code)
            }
            var inner = ctx
            inner.types = ctx.types.intersection(types)
            inner.it = (kind == .symbolArray ? .symbol : .string(freeText: false), allowed)
            inner.collectsEvidence = false
            let start = code.count
            code.append(.anyElement(ref, bodyLength: 0))
            _ = compile(body, inner, into: &code)
            code[start] = .anyElement(ref, bodyLength: code.count - start - 1)
            return Analysis(possible: inner.types, exact: false)
        }
    }

    /// After an error: emit `false` but keep the types, so one mistake does not cascade into "never matches".
    func failed(_ ctx: ConditionContext, _ code: inout Code) -> Analysis {
        code.append(.constant(false))
        return Analysis(possible: ctx.types, exact: false)
    }

    mutating func expandMacro(_ name: String, _ span: Span, _ ctx: ConditionContext, into code: inout Code) -> Analysis {
        guard let m = macros[name] else {
            let hint = lists[name] != nil ? ["'\(name)' is a list; use it as: FIELD in \(name)"] : suggestion(for: name, among: macros.keys)
            let fieldHint = contract.field(name) != nil ? ["'\(name)' is a field; compare it, e.g. \(name) = VALUE"] : []
            diags.error(.unknownMacro, "unknown macro '\(name)'", at: location(ctx, span), notes: hint + fieldHint)
            return failed(ctx, &code)
        }
        if trackingUse { usedMacros.insert(name) }
        if ctx.macroStack.count >= 32 {
            diags.error(.macroCycle, "macros are nested more than 32 deep: \(ctx.macroStack.joined(separator: " -> "))", at: location(ctx, span))
            return failed(ctx, &code)
        }
        if ctx.macroStack.contains(name) {
            diags.error(.macroCycle, "macro '\(name)' refers to itself: \((ctx.macroStack + [name]).joined(separator: " -> "))",
                        at: m.condition.location)
            return failed(ctx, &code)
        }
        guard let parsed = parsedMacro(name) else { return failed(ctx, &code) }
        var inner = ctx
        inner.macroStack.append(name)
        inner.source = m.condition.source
        return compile(parsed, inner, into: &code)
    }

    // MARK: operands

    mutating func resolve(_ op: Operand, _ ctx: ConditionContext) -> Term? {
        switch op {
        case .string(let s, _): return .string(s)
        case .number(let n, _): return .number(n)
        case .bool(let b, _): return .bool(b)
        case .duration(let d): return .duration(d.duration)
        case .it(let span):
            guard let it = ctx.it else {
                diags.error(.badContext, "'it' names the element inside any(field, ...) and is not defined here", at: location(ctx, span))
                return nil
            }
            return .field(ref: .it, kind: it.kind, allowed: it.allowed, types: ctx.types, path: "it")
        case .path(let name, let span):
            return resolvePath(name, span, ctx)
        case .age(let path, let span, let whole):
            guard let t = resolvePath(path, span, ctx) else { return nil }
            guard case .field(.slot(let slot), .date, _, _, _) = t else {
                diags.error(.typeMismatch, "age(...) takes a date field such as child.date_of_birth, found \(t.describe)", at: location(ctx, span))
                return nil
            }
            guard ctx.hasEvent else {
                diags.error(.badContext, "age(...) is measured at an event, and there is none here", at: location(ctx, whole))
                return nil
            }
            return .age(slot: slot, path: path)
        case .count(let filter, let d, let whole):
            guard let (w, micros) = window(filter, d, distinct: nil, whole, ctx) else { return nil }
            return .window(index: w, micros: micros, distinct: false)
        case .distinct(let path, let span, let filter, let d, let whole):
            guard let ft = resolvePath(path, span, ContextWithAllTypes(ctx)) else { return nil }
            guard case .field(.slot(let slot), let kind, _, _, _) = ft, kind == .symbol || kind == .string(freeText: false) || kind == .bool || kind == .int else {
                diags.error(.typeMismatch, "distinct(...) counts the values of an enum, identifier, boolean or integer field, found \(ft.describe)", at: location(ctx, span))
                return nil
            }
            guard let (w, micros) = window(filter, d, distinct: slot, whole, ctx) else { return nil }
            return .window(index: w, micros: micros, distinct: true)
        }
    }

    func ContextWithAllTypes(_ ctx: ConditionContext) -> ConditionContext {
        var c = ctx
        c.types = allTypes
        return c
    }

    static let fieldRoots: Set<String> = ["data", "child", "state"]

    mutating func resolvePath(_ name: String, _ span: Span, _ ctx: ConditionContext) -> Term? {
        if name.hasPrefix("state.") {
            let stateName = String(name.dropFirst("state.".count))
            if trackingUse { usedStates.insert(stateName) }
            guard let i = stateIndex[stateName] else {
                diags.error(.unknownState, "unknown state '\(stateName)'", at: location(ctx, span),
                            notes: suggestion(for: stateName, among: stateIndex.keys) + (stateIndex.isEmpty ? ["declare it with - state: \(stateName)"] : []))
                return nil
            }
            let s = stateInfo[i]
            if s.keyed { return .keyedState(index: i, kind: s.kind, allowed: s.allowed, name: stateName) }
            return .field(ref: .state(i), kind: s.kind, allowed: s.allowed, types: ctx.types, path: name)
        }
        if let f = contract.field(name) {
            guard ctx.hasEvent else {
                diags.error(.badContext, "fire_if is evaluated at the deadline, when there is no event: only state.* is available, not \(name)", at: location(ctx, span))
                return nil
            }
            let on = f.eventTypes.intersection(ctx.types)
            if on.isEmpty {
                let here = ctx.types.sorted().prefix(4).map { contract.eventTypes[$0] }.joined(separator: ", ")
                let there = f.eventTypes.sorted().map { contract.eventTypes[$0] }.joined(separator: ", ")
                diags.error(.fieldNotOnType, "\(name) is not a field of \(here)\(ctx.types.count > 4 ? ", ..." : "") events", at: location(ctx, span),
                            notes: ["\(name) exists on: \(there)"])
                return nil
            }
            captured.insert(f.slot)
            return .field(ref: .slot(f.slot), kind: f.kind, allowed: f.allowedValues(on: on), types: f.eventTypes, path: name)
        }
        let root = name.split(separator: ".").first.map(String.init) ?? name
        if name.contains(".") || PackCompiler.fieldRoots.contains(root) {
            diags.error(.unknownField, "unknown field '\(name)'", at: location(ctx, span),
                        notes: suggestion(for: name, among: contract.fields.keys))
            return nil
        }
        return .identifier(name)
    }

    // MARK: predicates

    mutating func compare(_ l: Operand, _ op: CompareOp, _ r: Operand, _ span: Span, _ ctx: ConditionContext,
                          into code: inout Code) -> Analysis {
        guard let lt = resolve(l, ctx) else { return failed(ctx, &code) }
        guard let rt = resolve(r, ctx) else { return failed(ctx, &code) }
        let right = Located(source: ctx.source, offset: r.span.start)
        func mismatch() -> Analysis {
            diags.error(.typeMismatch, "cannot compare \(lt.describe) with \(rt.describe) using '\(op.rawValue)'", at: location(ctx, span))
            return failed(ctx, &code)
        }
        func equality(_ ref: ValueRef, _ test: Instruction, types: Set<Int>) -> Analysis {
            guard op == .eq || op == .ne else {
                diags.error(.typeMismatch, "'\(op.rawValue)' orders numbers, ages and counts; use = or != here", at: location(ctx, span))
                return failed(ctx, &code)
            }
            if op == .eq {
                code.append(test)
            } else {
                code.append(.exists(ref))
                code.append(.jumpIfFalse(3))
                code.append(test)
                code.append(.not)
            }
            return Analysis(possible: ctx.types.intersection(types), exact: false)
        }
        switch (lt, rt) {
        case (.field(let ref, .symbol, let allowed, let types, let path), .identifier(let v)),
             (.field(let ref, .symbol, let allowed, let types, let path), .string(let v)):
            guard let sym = checkedSymbol(v, allowed: allowed, path: path, types: types, ctx, at: right.location) else { return failed(ctx, &code) }
            let result = equality(ref, .symbolIs(ref, sym), types: types)
            if path == "type" {
                let t = contract.eventTypeIndex(sym)
                let on: Set<Int> = t >= 0 ? [t] : []
                return Analysis(possible: op == .eq ? ctx.types.intersection(on) : ctx.types.subtracting(on), exact: true)
            }
            noteEvidence(ref, .symbol(sym), ctx)
            return result
        case (.field(let a, .symbol, let aa, let at, _), .field(let b, .symbol, let ba, let bt, _)):
            if !aa.intersects(ba) {
                diags.error(.typeMismatch, "\(lt.describe) and \(rt.describe) have no value in common, so they are never equal", at: location(ctx, span))
            }
            return equality(a, .valuesEqual(a, b), types: at.intersection(bt))
        case (.field(let ref, .string, _, let types, _), .identifier(let v)),
             (.field(let ref, .string, _, let types, _), .string(let v)):
            return equality(ref, .stringIs(ref, v), types: types)
        case (.field(let a, .string, _, let at, _), .field(let b, .string, _, let bt, _)):
            return equality(a, .valuesEqual(a, b), types: at.intersection(bt))
        case (.field(let ref, .bool, _, let types, _), .bool(let v)):
            return equality(ref, .boolIs(ref, v), types: types)
        case (.field(let a, .bool, _, let at, _), .field(let b, .bool, _, let bt, _)):
            return equality(a, .valuesEqual(a, b), types: at.intersection(bt))
        case (.field(let ref, .int, _, let types, _), .number(let n)):
            code.append(.intCompare(ref, op, n))
            return Analysis(possible: ctx.types.intersection(types), exact: false)
        case (.age(let slot, let path), .duration(let d)):
            guard op != .eq && op != .ne else {
                diags.error(.typeMismatch, "compare an age with <, <=, > or >=", at: location(ctx, span))
                return failed(ctx, &code)
            }
            let bound: AgeBound
            if d.unit == .months { bound = .months(d.amount) } else if let m = d.exactMicros { bound = .micros(m) } else {
                diags.error(.badDuration, "an age is measured in months, weeks, days, hours or minutes, not \(d.unit.rawValue)", at: right.location)
                return failed(ctx, &code)
            }
            guard let cal = ctx.calendar else {
                diags.error(.unknownCalendar, "age(...) needs a calendar for its time zone; declare one with - calendar:", at: location(ctx, span))
                return failed(ctx, &code)
            }
            let types = contract.field(path)?.eventTypes ?? ctx.types
            code.append(.age(slot: slot, op, bound, calendar: cal))
            return Analysis(possible: ctx.types.intersection(types), exact: false)
        case (.window(let w, let micros, let distinct), .number(let n)):
            guard n >= 0, n <= Int64(Int32.max) else {
                diags.error(.typeMismatch, "a window count is compared with a whole number", at: right.location)
                return failed(ctx, &code)
            }
            code.append(distinct ? .windowDistinct(window: w, micros: micros, op, Int(n)) : .windowCount(window: w, micros: micros, op, Int(n)))
            return Analysis(possible: ctx.types, exact: false)
        case (.identifier(let name), _):
            if let cmp = CompareOp(rawValue: op.rawValue), cmp == .eq, contract.eventTypes.contains(name) {
                diags.error(.typeMismatch, "put the field on the left: type = \(name)", at: location(ctx, l.span))
            } else {
                diags.error(.unknownField, "'\(name)' is not a field; the left side of a comparison must be a field, age(...), count(...) or distinct(...)",
                            at: location(ctx, l.span), notes: suggestion(for: name, among: contract.fields.keys))
            }
            return failed(ctx, &code)
        default:
            return mismatch()
        }
    }

    /// Resolves an enum literal against the values a field allows on the types in scope.
    mutating func checkedSymbol(_ v: String, allowed: SymbolSet, path: String, types: Set<Int>, _ ctx: ConditionContext,
                                at where_: @autoclosure () -> SourceLocation) -> Symbol? {
        if let s = contract.symbols.symbol(v), allowed.contains(s) { return s }
        let names = allowed.members.map { contract.symbols.name($0) }
        let loc = where_()
        if path == "type" {
            diags.error(.unknownEventType, "unknown event type '\(v)'", at: loc, notes: suggestion(for: v, among: contract.eventTypes))
            return nil
        }
        let scope = types.intersection(ctx.types)
        let on = scope.count <= 3 ? " on " + scope.sorted().map { contract.eventTypes[$0] }.joined(separator: ", ") + " events" : ""
        diags.error(.badEnumValue, "'\(v)' is not a value of \(path)\(on)", at: loc,
                    notes: suggestion(for: v, among: names) + ["allowed: \(names.joined(separator: ", "))"])
        return nil
    }

    /// Expands a set's items (list names included) into literal texts with their locations.
    mutating func expand(_ items: [SetItem], listName: String?, _ ctx: ConditionContext, depth: Int = 0) -> [(SetItem.Kind, Located)]? {
        if let listName, lists[listName] == nil {
            diags.error(.unknownList, "unknown list '\(listName)'", at: location(ctx, items.first?.span ?? Span(0, 0)),
                        notes: suggestion(for: listName, among: lists.keys))
            return nil
        }
        if let listName, trackingUse { usedLists.insert(listName) }
        var out: [(SetItem.Kind, Located)] = []
        for item in items {
            if case .identifier(let name) = item.kind, let list = lists[name] {
                if trackingUse { usedLists.insert(name) }
                guard depth < 8 else {
                    diags.error(.macroCycle, "list '\(name)' is nested too deeply (or refers to itself)", at: list.name.location)
                    return nil
                }
                for entry in list.items {
                    if lists[entry.text] != nil, let nested = expand([SetItem(kind: .identifier(entry.text), span: Span(0, 0))], listName: nil, ctx, depth: depth + 1) {
                        out += nested
                    } else if let n = Int64(entry.text) {
                        out.append((.number(n), Located(source: entry.source, offset: 0)))
                    } else {
                        out.append((.identifier(entry.text), Located(source: entry.source, offset: 0)))
                    }
                }
            } else {
                out.append((item.kind, Located(source: ctx.source, offset: item.span.start)))
            }
        }
        return out
    }

    mutating func symbolSet(_ items: [SetItem], listName: String?, allowed: SymbolSet, path: String, types: Set<Int>,
                            _ ctx: ConditionContext) -> SymbolSet? {
        guard let expanded = expand(items, listName: listName, ctx) else { return nil }
        var set = SymbolSet()
        var ok = true
        for (kind, loc) in expanded {
            switch kind {
            case .identifier(let v), .string(let v):
                if let s = checkedSymbol(v, allowed: allowed, path: path, types: types, ctx, at: loc.location) { set.insert(s) } else { ok = false }
            case .number:
                diags.error(.typeMismatch, "\(path) holds enum values, not numbers", at: loc.location)
                ok = false
            }
        }
        return ok ? set : nil
    }

    mutating func member(_ l: Operand, _ items: [SetItem], listName: String?, negated: Bool, _ span: Span,
                         _ ctx: ConditionContext, into code: inout Code) -> Analysis {
        guard let lt = resolve(l, ctx) else { return failed(ctx, &code) }
        var test: Instruction
        var refForExists: ValueRef
        var types: Set<Int>
        switch lt {
        case .field(let ref, .symbol, let allowed, let t, let path):
            guard let set = symbolSet(items, listName: listName, allowed: allowed, path: path, types: t, ctx) else { return failed(ctx, &code) }
            if path == "type" {
                code.append(.symbolIn(ref, set))
                if negated { code.append(.not) }
                let on = Set(set.members.map { contract.eventTypeIndex($0) }.filter { $0 >= 0 })
                return Analysis(possible: negated ? ctx.types.subtracting(on) : ctx.types.intersection(on), exact: true)
            }
            test = .symbolIn(ref, set)
            refForExists = ref
            types = t
        case .field(let ref, .string, _, let t, let path):
            guard let expanded = expand(items, listName: listName, ctx) else { return failed(ctx, &code) }
            var strings = Set<String>()
            for (kind, loc) in expanded {
                switch kind {
                case .identifier(let v), .string(let v): strings.insert(v)
                case .number: diags.error(.typeMismatch, "\(path) holds strings, not numbers", at: loc.location); return failed(ctx, &code)
                }
            }
            test = .stringIn(ref, strings)
            refForExists = ref
            types = t
        case .field(let ref, .int, _, let t, let path):
            guard let expanded = expand(items, listName: listName, ctx) else { return failed(ctx, &code) }
            var ints = Set<Int64>()
            for (kind, loc) in expanded {
                guard case .number(let n) = kind else { diags.error(.typeMismatch, "\(path) holds integers", at: loc.location); return failed(ctx, &code) }
                ints.insert(n)
            }
            test = .intIn(ref, ints)
            refForExists = ref
            types = t
        default:
            diags.error(.typeMismatch, "'in' tests an enum, identifier or integer field against a list, found \(lt.describe)", at: location(ctx, l.span),
                        notes: { if case .field(_, .symbolArray, _, _, let p) = lt { return ["for an array use: \(p) contains VALUE, or \(p) intersects (...)"] }; return [] }())
            return failed(ctx, &code)
        }
        if negated {
            code.append(.exists(refForExists))
            code.append(.jumpIfFalse(3))
            code.append(test)
            code.append(.not)
        } else {
            code.append(test)
        }
        return Analysis(possible: ctx.types.intersection(types), exact: false)
    }

    mutating func contains(_ l: Operand, _ r: Operand, _ span: Span, _ ctx: ConditionContext, into code: inout Code) -> Analysis {
        guard let lt = resolve(l, ctx), let rt = resolve(r, ctx) else { return failed(ctx, &code) }
        let right = Located(source: ctx.source, offset: r.span.start)
        switch (lt, rt) {
        case (.field(let ref, .symbolArray, let allowed, let types, let path), .identifier(let v)),
             (.field(let ref, .symbolArray, let allowed, let types, let path), .string(let v)):
            guard let s = checkedSymbol(v, allowed: allowed, path: path, types: types, ctx, at: right.location) else { return failed(ctx, &code) }
            code.append(.arrayHasSymbol(ref, s))
            return Analysis(possible: ctx.types.intersection(types), exact: false)
        case (.field(let ref, .symbolArray, _, let types, _), .field(let other, .symbol, _, let ot, _)):
            code.append(.arrayHasValueOf(ref, other))
            return Analysis(possible: ctx.types.intersection(types).intersection(other == .it ? types : ot), exact: false)
        case (.field(let ref, .stringArray, _, let types, _), .identifier(let v)),
             (.field(let ref, .stringArray, _, let types, _), .string(let v)):
            code.append(.arrayHasString(ref, v))
            return Analysis(possible: ctx.types.intersection(types), exact: false)
        case (.field(let ref, .stringArray, _, let types, _), .field(let other, .string, _, _, _)):
            code.append(.arrayHasValueOf(ref, other))
            return Analysis(possible: ctx.types.intersection(types), exact: false)
        case (.keyedState(let i, .symbol, let allowed, let name), .identifier(let v)),
             (.keyedState(let i, .symbol, let allowed, let name), .string(let v)):
            guard let s = checkedSymbol(v, allowed: allowed, path: "state.\(name)", types: allTypes, ctx, at: right.location) else { return failed(ctx, &code) }
            code.append(.keyedHas(state: i, .symbol(s)))
            if ctx.collectsEvidence { evidenceStates.append((i, .symbol(s))) }
            return Analysis(possible: ctx.types, exact: false)
        case (.keyedState(let i, .string, _, _), .string(let v)), (.keyedState(let i, .string, _, _), .identifier(let v)):
            code.append(.keyedHas(state: i, .string(v)))
            return Analysis(possible: ctx.types, exact: false)
        case (.keyedState(let i, .bool, _, _), .bool(let v)):
            code.append(.keyedHas(state: i, .bool(v)))
            return Analysis(possible: ctx.types, exact: false)
        default:
            diags.error(.typeMismatch, "cannot test whether \(lt.describe) contains \(rt.describe)", at: location(ctx, span))
            return failed(ctx, &code)
        }
    }

    mutating func noteEvidence(_ ref: ValueRef, _ value: FieldValue, _ ctx: ConditionContext) {
        if ctx.collectsEvidence, case .state(let i) = ref { evidenceStates.append((i, value)) }
    }

    /// Registers (or reuses) the window a window function reads.
    mutating func window(_ filter: Condition, _ d: DurationLiteral, distinct: Int?, _ span: Span, _ ctx: ConditionContext) -> (Int, Int64)? {
        guard ctx.allowWindows else {
            diags.error(.badContext, "window functions cannot be used inside a window's condition", at: location(ctx, span))
            return nil
        }
        guard ctx.hasEvent else {
            diags.error(.badContext, "windows end at an event, and fire_if has none", at: location(ctx, span))
            return nil
        }
        guard let micros = d.duration.exactMicros else {
            diags.error(.badDuration, "a window is exact time (minutes, hours, days, weeks), not \(d.duration.unit.rawValue)",
                        at: location(ctx, d.span))
            return nil
        }
        var inner = ctx
        inner.types = allTypes
        inner.allowWindows = false
        inner.it = nil
        inner.collectsEvidence = false
        var code = Code()
        let a = compile(filter, inner, into: &code)
        if a.possible.isEmpty {
            diags.error(.neverMatches, "this window's condition matches no event type, so it is always empty", at: location(ctx, filter.span))
        }
        let w = registerWindow(code: code, possible: a.possible, retention: micros, distinctSlot: distinct, keySlots: [])
        if ctx.collectsEvidence { evidenceWindows.append((w, micros)) }
        return (w, micros)
    }
}

/// Instructions being compiled, each with the source text of the condition whose result it leaves in the
/// register ("" for jumps and the parts of a condition).
struct Code {
    var instructions: [Instruction] = []
    var notes: [String] = []

    init() {}
    init(_ instructions: ArraySlice<Instruction>, notes: ArraySlice<String>) {
        self.instructions = Array(instructions)
        self.notes = Array(notes)
    }

    var count: Int { instructions.count }
    mutating func append(_ i: Instruction) {
        instructions.append(i)
        notes.append("")
    }
    subscript(i: Int) -> Instruction {
        get { instructions[i] }
        set { instructions[i] = newValue }
    }
}

/// A position in a scalar, turned into a file location only when a diagnostic needs it.
struct Located {
    let source: ScalarSource
    let offset: Int
    var location: SourceLocation { source.location(ofOffset: offset) }
}
