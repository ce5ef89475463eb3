// The condition language. A condition is a boolean expression over one event, the child's declared state
// and windows over the child's recent events.
//
//   condition   = or_expr ;
//   or_expr     = and_expr { "or" and_expr } ;
//   and_expr    = unary { "and" unary } ;
//   unary       = "not" unary | primary ;
//   primary     = "(" condition ")"
//               | "true" | "false"
//               | "exists" operand
//               | "none" "(" condition "," duration ")"
//               | "any" "(" field "," condition ")"            (* `it` is the element *)
//               | operand compare_op operand
//               | operand [ "not" ] "in" set
//               | operand "contains" operand
//               | operand "intersects" set
//               | macro_name ;
//   operand     = field | "it" | literal
//               | "age" "(" field ")"                         (* compared with a duration *)
//               | "count" "(" condition "," duration ")"
//               | "distinct" "(" field "," condition "," duration ")" ;
//   set         = "(" item { "," item } ")" | list_name ;
//   item        = literal | list_name ;
//   literal     = identifier | string | integer | duration | "true" | "false" ;
//   duration    = integer unit ;
//   unit        = "minute[s]" | "hour[s]" | "day[s]" | "week[s]" | "working day[s]" | "month[s]" ;
//   compare_op  = "=" | "==" | "!=" | "<" | "<=" | ">" | ">=" ;
//   field       = identifier { "." identifier } ;             (* type, agency, child.id, data.status, state.plan *)
//   string      = "'" chars "'" | '"' chars '"' ;
//
// A bare identifier on the right of a comparison is an enum value unless it names a field. Comparisons
// with a missing field are false (so `data.x != v` is false when the event has no `data.x`).

/// A half-open range of Unicode-scalar offsets in a condition's text.
public struct Span: Hashable, Sendable {
    public var start: Int
    public var end: Int
    public init(_ start: Int, _ end: Int) {
        self.start = start
        self.end = end
    }
    func to(_ other: Span) -> Span { Span(start, max(end, other.end)) }
}

public enum CompareOp: String, Sendable, Hashable {
    case eq = "=", ne = "!=", lt = "<", le = "<=", gt = ">", ge = ">="

    @inlinable public func holds<T: Comparable>(_ a: T, _ b: T) -> Bool {
        switch self {
        case .eq: return a == b
        case .ne: return a != b
        case .lt: return a < b
        case .le: return a <= b
        case .gt: return a > b
        case .ge: return a >= b
        }
    }
}

/// A duration literal with its span.
public struct DurationLiteral: Hashable, Sendable {
    public var duration: RuleDuration
    public var span: Span
}

/// One element of an `in (...)` set: a literal or the name of a list.
public struct SetItem: Hashable, Sendable {
    public enum Kind: Hashable, Sendable { case identifier(String), string(String), number(Int64) }
    public var kind: Kind
    public var span: Span
}

public indirect enum Operand: Hashable, Sendable {
    case path(String, Span)
    case bool(Bool, Span)
    case it(Span)
    case string(String, Span)
    case number(Int64, Span)
    case duration(DurationLiteral)
    case age(String, Span, whole: Span)
    case count(Condition, DurationLiteral, whole: Span)
    case distinct(String, Span, Condition, DurationLiteral, whole: Span)

    public var span: Span {
        switch self {
        case .path(_, let s), .bool(_, let s), .it(let s), .string(_, let s), .number(_, let s): return s
        case .duration(let d): return d.span
        case .age(_, _, let w), .count(_, _, let w), .distinct(_, _, _, _, let w): return w
        }
    }
}

/// A parsed condition.
public indirect enum Condition: Hashable, Sendable {
    case and(Condition, Condition)
    case or(Condition, Condition)
    case not(Condition, Span)
    case constant(Bool, Span)
    case macro(String, Span)
    case exists(Operand, Span)
    case compare(Operand, CompareOp, Operand, Span)
    case member(Operand, [SetItem], listName: String?, negated: Bool, Span)
    case contains(Operand, Operand, Span)
    case intersects(Operand, [SetItem], listName: String?, Span)
    case none(Condition, DurationLiteral, Span)
    case any(String, Span, Condition, Span)

    public var span: Span {
        switch self {
        case .and(let a, let b), .or(let a, let b): return a.span.to(b.span)
        case .not(_, let s), .constant(_, let s), .macro(_, let s), .exists(_, let s), .compare(_, _, _, let s),
             .member(_, _, _, _, let s), .contains(_, _, let s), .intersects(_, _, _, let s), .none(_, _, let s),
             .any(_, _, _, let s):
            return s
        }
    }
}

/// A syntax error at an offset of the condition text.
public struct ConditionSyntaxError: Error, Sendable {
    public var message: String
    public var offset: Int
}

struct Token: Sendable {
    enum Kind: Equatable, Sendable {
        case word(String)
        case number(Int64)
        case string(String)
        case symbol(String)
        case end
    }
    var kind: Kind
    var span: Span
}

enum ConditionLexer {
    static func tokens(_ text: String) -> Result<[Token], ConditionSyntaxError> {
        let s = Array(text.unicodeScalars)
        var out: [Token] = []
        var i = 0
        func isWordStart(_ c: Unicode.Scalar) -> Bool { c == "_" || (c.value < 128 && c.properties.isAlphabetic) }
        func isWord(_ c: Unicode.Scalar) -> Bool { isWordStart(c) || ("0"..."9").contains(c) || c == "." || c == "-" }
        while i < s.count {
            let c = s[i]
            if c == " " || c == "\n" || c == "\t" || c == "\r" { i += 1; continue }
            let start = i
            if isWordStart(c) {
                while i < s.count, isWord(s[i]) { i += 1 }
                // A trailing '-' or '.' belongs to no word.
                while i > start + 1, s[i - 1] == "-" || s[i - 1] == "." { i -= 1 }
                out.append(Token(kind: .word(String(String.UnicodeScalarView(s[start..<i]))), span: Span(start, i)))
            } else if ("0"..."9").contains(c) {
                while i < s.count, ("0"..."9").contains(s[i]) { i += 1 }
                if i < s.count, isWordStart(s[i]) {
                    return .failure(ConditionSyntaxError(message: "a number must be followed by a space before a unit or word", offset: i))
                }
                let digits = String(String.UnicodeScalarView(s[start..<i]))
                guard let v = Int64(digits) else { return .failure(ConditionSyntaxError(message: "number too large", offset: start)) }
                out.append(Token(kind: .number(v), span: Span(start, i)))
            } else if c == "'" || c == "\"" {
                i += 1
                var value = String.UnicodeScalarView()
                while i < s.count, s[i] != c {
                    if s[i] == "\\", i + 1 < s.count { i += 1 }
                    value.append(s[i])
                    i += 1
                }
                guard i < s.count else { return .failure(ConditionSyntaxError(message: "unterminated string", offset: start)) }
                i += 1
                out.append(Token(kind: .string(String(value)), span: Span(start, i)))
            } else {
                let two = i + 1 < s.count ? String(String.UnicodeScalarView([c, s[i + 1]])) : ""
                if ["==", "!=", "<=", ">="].contains(two) {
                    out.append(Token(kind: .symbol(two == "==" ? "=" : two), span: Span(i, i + 2)))
                    i += 2
                } else if "=<>(),+".unicodeScalars.contains(c) {
                    out.append(Token(kind: .symbol(String(c)), span: Span(i, i + 1)))
                    i += 1
                } else {
                    return .failure(ConditionSyntaxError(message: "unexpected character '\(c)'", offset: i))
                }
            }
        }
        out.append(Token(kind: .end, span: Span(s.count, s.count)))
        return .success(out)
    }
}

/// Recursive-descent parser for the grammar above.
public struct ConditionParser {
    var tokens: [Token]
    var i = 0
    var depth = 0

    /// Deeper nesting than this is refused rather than risk the stack.
    public static let maxDepth = 64

    static let keywords: Set<String> = ["and", "or", "not", "in", "contains", "intersects", "exists", "any", "none",
                                        "count", "distinct", "age", "it", "true", "false"]

    public static func parse(_ text: String) -> Result<Condition, ConditionSyntaxError> {
        switch ConditionLexer.tokens(text) {
        case .failure(let e): return .failure(e)
        case .success(let toks):
            var p = ConditionParser(tokens: toks)
            do throws(ConditionSyntaxError) {
                let c = try p.condition()
                guard case .end = p.peek.kind else { throw p.error("unexpected \(p.describe(p.peek)) after a complete condition") }
                return .success(c)
            } catch {
                return .failure(error)
            }
        }
    }

    /// Parses `FIELD + DURATION` (used by `at:`).
    public static func parseFieldPlusDuration(_ text: String) -> Result<(field: String, fieldSpan: Span, duration: DurationLiteral), ConditionSyntaxError> {
        switch ConditionLexer.tokens(text) {
        case .failure(let e): return .failure(e)
        case .success(let toks):
            var p = ConditionParser(tokens: toks)
            do throws(ConditionSyntaxError) {
                guard case .word(let w) = p.peek.kind, !keywords.contains(w) else { throw p.error("expected a date field, e.g. child.date_of_birth + 5 months") }
                let fs = p.next().span
                guard p.accept("+") else { throw p.error("expected '+' and a duration after the field") }
                let d = try p.duration()
                guard case .end = p.peek.kind else { throw p.error("unexpected \(p.describe(p.peek))") }
                return .success((w, fs, d))
            } catch {
                return .failure(error)
            }
        }
    }

    var peek: Token { tokens[min(i, tokens.count - 1)] }

    mutating func next() -> Token {
        let t = peek
        if i < tokens.count - 1 { i += 1 }
        return t
    }

    func error(_ message: String, at offset: Int? = nil) -> ConditionSyntaxError {
        ConditionSyntaxError(message: message, offset: offset ?? peek.span.start)
    }

    func describe(_ t: Token) -> String {
        switch t.kind {
        case .word(let w): return "'\(w)'"
        case .number(let n): return "'\(n)'"
        case .string: return "a string"
        case .symbol(let s): return "'\(s)'"
        case .end: return "end of condition"
        }
    }

    func isWord(_ w: String) -> Bool { if case .word(w) = peek.kind { return true }; return false }

    mutating func accept(_ symbol: String) -> Bool {
        if case .symbol(symbol) = peek.kind { _ = next(); return true }
        return false
    }

    mutating func acceptWord(_ w: String) -> Bool {
        if isWord(w) { _ = next(); return true }
        return false
    }

    mutating func expect(_ symbol: String, _ what: String) throws(ConditionSyntaxError) -> Span {
        guard case .symbol(symbol) = peek.kind else { throw error("expected \(what), found \(describe(peek))") }
        return next().span
    }

    mutating func condition() throws(ConditionSyntaxError) -> Condition {
        depth += 1
        defer { depth -= 1 }
        guard depth <= ConditionParser.maxDepth else { throw error("the condition is nested more than \(ConditionParser.maxDepth) levels deep") }
        var left = try andExpr()
        while acceptWord("or") { left = .or(left, try andExpr()) }
        return left
    }

    mutating func andExpr() throws(ConditionSyntaxError) -> Condition {
        var left = try unary()
        while acceptWord("and") { left = .and(left, try unary()) }
        return left
    }

    mutating func unary() throws(ConditionSyntaxError) -> Condition {
        if isWord("not") {
            let s = next().span
            depth += 1
            defer { depth -= 1 }
            guard depth <= ConditionParser.maxDepth else { throw error("the condition is nested more than \(ConditionParser.maxDepth) levels deep") }
            let inner = try unary()
            return .not(inner, s.to(inner.span))
        }
        return try primary()
    }

    mutating func field(_ what: String) throws(ConditionSyntaxError) -> (String, Span) {
        guard case .word(let w) = peek.kind, !ConditionParser.keywords.contains(w) || w == "it" else {
            throw error("expected \(what), found \(describe(peek))")
        }
        return (w, next().span)
    }

    mutating func primary() throws(ConditionSyntaxError) -> Condition {
        let start = peek.span
        if accept("(") {
            let inner = try condition()
            _ = try expect(")", "')' to close '('")
            return inner
        }
        if case .word(let w) = peek.kind {
            switch w {
            case "true", "false":
                _ = next()
                return .constant(w == "true", start)
            case "exists":
                _ = next()
                let op = try operand()
                return .exists(op, start.to(op.span))
            case "none":
                _ = next()
                _ = try expect("(", "'(' after none")
                let filter = try condition()
                _ = try expect(",", "',' and a duration in none(condition, duration)")
                let d = try duration()
                let close = try expect(")", "')' to close none(...)")
                return .none(filter, d, start.to(close))
            case "any":
                _ = next()
                _ = try expect("(", "'(' after any")
                let (f, fs) = try field("an array field")
                _ = try expect(",", "',' and a condition in any(field, condition)")
                let body = try condition()
                let close = try expect(")", "')' to close any(...)")
                return .any(f, fs, body, start.to(close))
            default:
                break
            }
        }
        let left = try operand()
        if case .symbol(let s) = peek.kind, let op = CompareOp(rawValue: s) {
            _ = next()
            let right = try operand()
            return .compare(left, op, right, start.to(right.span))
        }
        if isWord("in") || (isWord("not") && i + 1 < tokens.count && tokens[i + 1].kind == .word("in")) {
            let negated = acceptWord("not")
            _ = next()
            let (items, list, end) = try set()
            return .member(left, items, listName: list, negated: negated, start.to(end))
        }
        if acceptWord("contains") {
            let right = try operand()
            return .contains(left, right, start.to(right.span))
        }
        if acceptWord("intersects") {
            let (items, list, end) = try set()
            return .intersects(left, items, listName: list, start.to(end))
        }
        switch left {
        case .path(let name, let span) where !name.contains("."):
            return .macro(name, span)
        case .path(let name, let span):
            throw ConditionSyntaxError(message: "'\(name)' alone is not a condition: compare it (e.g. \(name) = true) or test it with exists", offset: span.start)
        case .count, .distinct:
            throw ConditionSyntaxError(message: "compare the window with a number, e.g. count(...) >= 2", offset: peek.span.start)
        default:
            throw error("expected an operator (=, !=, <, <=, >, >=, in, contains, intersects) after the operand, found \(describe(peek))")
        }
    }

    mutating func operand() throws(ConditionSyntaxError) -> Operand {
        let t = peek
        switch t.kind {
        case .string(let s):
            _ = next()
            return .string(s, t.span)
        case .number(let n):
            if let d = try? durationIfPresent() { return .duration(d) }
            _ = next()
            return .number(n, t.span)
        case .word(let w):
            switch w {
            case "it":
                _ = next()
                return .it(t.span)
            case "true", "false":
                _ = next()
                return .bool(w == "true", t.span)
            case "age":
                _ = next()
                _ = try expect("(", "'(' after age")
                let (f, fs) = try field("a date field")
                let close = try expect(")", "')' to close age(...)")
                return .age(f, fs, whole: t.span.to(close))
            case "count":
                _ = next()
                _ = try expect("(", "'(' after count")
                let filter = try condition()
                _ = try expect(",", "',' and a duration in count(condition, duration)")
                let d = try duration()
                let close = try expect(")", "')' to close count(...)")
                return .count(filter, d, whole: t.span.to(close))
            case "distinct":
                _ = next()
                _ = try expect("(", "'(' after distinct")
                let (f, fs) = try field("the field whose distinct values are counted")
                _ = try expect(",", "',' and a condition in distinct(field, condition, duration)")
                let filter = try condition()
                _ = try expect(",", "',' and a duration in distinct(field, condition, duration)")
                let d = try duration()
                let close = try expect(")", "')' to close distinct(...)")
                return .distinct(f, fs, filter, d, whole: t.span.to(close))
            case _ where ConditionParser.keywords.contains(w):
                throw error("expected a field or value, found keyword '\(w)'")
            default:
                _ = next()
                return .path(w, t.span)
            }
        default:
            throw error("expected a field or value, found \(describe(t))")
        }
    }

    /// A number followed by a unit, if the tokens after the number form one.
    mutating func durationIfPresent() throws(ConditionSyntaxError) -> DurationLiteral? {
        guard case .number = peek.kind, i + 1 < tokens.count, case .word(let u) = tokens[i + 1].kind else { return nil }
        if RuleDuration.unit(u) != nil || u == "working" { return try duration() }
        return nil
    }

    mutating func duration() throws(ConditionSyntaxError) -> DurationLiteral {
        guard case .number(let n) = peek.kind else { throw error("expected a duration such as '30 days', found \(describe(peek))") }
        let start = next().span
        guard case .word(var unit) = peek.kind else { throw error("expected a unit (minutes, hours, days, weeks, working days, months) after \(n)") }
        var end = next().span
        if unit == "working" {
            guard case .word(let d) = peek.kind, d == "day" || d == "days" else { throw error("expected 'days' after 'working'") }
            unit += " " + d
            end = next().span
        }
        switch RuleDuration.parse("\(n) \(unit)") {
        case .success(let d): return DurationLiteral(duration: d, span: start.to(end))
        case .failure(let e): throw ConditionSyntaxError(message: e.message, offset: start.start)
        }
    }

    mutating func set() throws(ConditionSyntaxError) -> ([SetItem], String?, Span) {
        if case .word(let w) = peek.kind, !ConditionParser.keywords.contains(w) {
            let s = next().span
            return ([SetItem(kind: .identifier(w), span: s)], w, s)
        }
        _ = try expect("(", "'(' to start a list of values, or a list name")
        var items: [SetItem] = []
        while true {
            let t = next()
            switch t.kind {
            case .word(let w) where !ConditionParser.keywords.contains(w): items.append(SetItem(kind: .identifier(w), span: t.span))
            case .string(let s): items.append(SetItem(kind: .string(s), span: t.span))
            case .number(let n): items.append(SetItem(kind: .number(n), span: t.span))
            default: throw ConditionSyntaxError(message: "expected a value or list name, found \(describe(t))", offset: t.span.start)
            }
            if accept(",") { continue }
            let close = try expect(")", "',' or ')' in a list of values")
            return (items, nil, close)
        }
    }
}
