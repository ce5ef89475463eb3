/// A parsed JSON document as a tree. Used off the hot path only: schemas at start-up, tests, tools.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double, integer: Int64?)
    case string(String)
    case array([JSONValue])
    /// Members in document order; duplicate names are rejected by the parser.
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x, _), .number(y, _)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members.first { $0.0 == key }?.1 }
        return nil
    }

    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var intValue: Int64? { if case .number(_, let i) = self { return i }; return nil }
    public var objectValue: [(String, JSONValue)]? { if case .object(let o) = self { return o }; return nil }

    /// Parses a complete JSON text.
    public static func parse(_ text: String) throws(JSONSyntaxError) -> JSONValue {
        try parse(Array(text.utf8))
    }

    public static func parse(_ bytes: [UInt8]) throws(JSONSyntaxError) -> JSONValue {
        let result: Result<JSONValue, JSONSyntaxError> = bytes.withUnsafeBufferPointer { buf in
            guard let base = buf.baseAddress, buf.count > 0 else {
                return .failure(JSONSyntaxError(offset: 0, reason: "empty input"))
            }
            var s = JSONScanner(base: base, count: buf.count)
            let v = parseValue(&s, depth: 0)
            if let v {
                s.skipWhitespace()
                if !s.atEnd { s.fail("unexpected data after the JSON value") } else { return .success(v) }
            }
            return .failure(s.failure ?? JSONSyntaxError(offset: s.pos, reason: "invalid JSON"))
        }
        return try result.get()
    }

    static func parseValue(_ s: inout JSONScanner, depth: Int) -> JSONValue? {
        s.skipWhitespace()
        guard !s.atEnd else { s.fail("unexpected end of input (truncated?)"); return nil }
        guard depth < JSONScanner.maxDepth else { s.fail("nesting deeper than \(JSONScanner.maxDepth) levels"); return nil }
        switch s.peek() {
        case 0x22:
            guard let t = s.scanString() else { return nil }
            return .string(s.string(t))
        case 0x7B:
            s.pos += 1
            var members: [(String, JSONValue)] = []
            var names = Set<String>()
            if s.consume(0x7D) { return .object(members) }
            while true {
                s.skipWhitespace()
                guard s.peek() == 0x22 else { s.expectedFailure("a property name in double quotes"); return nil }
                let keyAt = s.pos
                guard let k = s.scanString() else { return nil }
                let key = s.string(k)
                guard names.insert(key).inserted else { s.fail("duplicate property name", at: keyAt); return nil }
                guard s.consume(0x3A) else { s.expectedFailure("':' after a property name"); return nil }
                guard let v = parseValue(&s, depth: depth + 1) else { return nil }
                members.append((key, v))
                if s.consume(0x2C) { continue }
                if s.consume(0x7D) { return .object(members) }
                s.expectedFailure("',' or '}' in an object"); return nil
            }
        case 0x5B:
            s.pos += 1
            var items: [JSONValue] = []
            if s.consume(0x5D) { return .array(items) }
            while true {
                guard let v = parseValue(&s, depth: depth + 1) else { return nil }
                items.append(v)
                if s.consume(0x2C) { continue }
                if s.consume(0x5D) { return .array(items) }
                s.expectedFailure("',' or ']' in an array"); return nil
            }
        case 0x74: return s.scanLiteral("true") ? .bool(true) : nil
        case 0x66: return s.scanLiteral("false") ? .bool(false) : nil
        case 0x6E: return s.scanLiteral("null") ? .null : nil
        case 0x2D, 0x30...0x39:
            guard let n = s.scanNumber() else { return nil }
            return .number(n.double, integer: n.integer)
        default:
            s.fail("unexpected character"); return nil
        }
    }

    /// Compact JSON text.
    public var jsonText: String {
        var w = JSONWriter()
        write(to: &w)
        return w.text
    }

    public func write(to w: inout JSONWriter) {
        switch self {
        case .null: w.raw("null")
        case .bool(let b): w.raw(b ? "true" : "false")
        case .number(let d, let i): if let i { w.raw(String(i)) } else { w.raw(String(d)) }
        case .string(let s): w.string(s)
        case .array(let a):
            w.raw("[")
            for (k, v) in a.enumerated() { if k > 0 { w.raw(",") }; v.write(to: &w) }
            w.raw("]")
        case .object(let o):
            w.raw("{")
            for (k, (name, v)) in o.enumerated() { if k > 0 { w.raw(",") }; w.string(name); w.raw(":"); v.write(to: &w) }
            w.raw("}")
        }
    }
}

/// Builds compact JSON text by appending; escapes strings per RFC 8259.
public struct JSONWriter {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 512) { bytes.reserveCapacity(capacity) }

    public var text: String { String(decoding: bytes, as: UTF8.self) }

    public mutating func raw(_ s: String) { bytes.append(contentsOf: s.utf8) }
    public mutating func raw(_ s: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    public mutating func string(_ s: String) {
        bytes.append(0x22)
        for c in s.utf8 {
            switch c {
            case 0x22: bytes.append(0x5C); bytes.append(0x22)
            case 0x5C: bytes.append(0x5C); bytes.append(0x5C)
            case 0x0A: bytes.append(0x5C); bytes.append(0x6E)
            case 0x0D: bytes.append(0x5C); bytes.append(0x72)
            case 0x09: bytes.append(0x5C); bytes.append(0x74)
            case 0..<0x20:
                bytes.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, hexDigit(c >> 4), hexDigit(c & 15)])
            default: bytes.append(c)
            }
        }
        bytes.append(0x22)
    }

    public mutating func key(_ k: StaticString) {
        bytes.append(0x22)
        raw(k)
        bytes.append(0x22)
        bytes.append(0x3A)
    }

    public mutating func int(_ v: Int64) { raw(String(v)) }
}
