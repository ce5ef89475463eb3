/// A forward scanner over the UTF-8 bytes of one JSON text (RFC 8259).
///
/// It validates as it goes: UTF-8 in strings, escapes, control characters, number syntax and nesting
/// depth. It never allocates on the happy path; strings come back as byte ranges with a flag saying
/// whether they contain escapes. Not thread-safe; one per message.
public struct JSONScanner {
    public let base: UnsafePointer<UInt8>
    public let end: Int
    public var pos: Int = 0
    /// Set on the first syntax problem; scanning stops there.
    public var failure: JSONSyntaxError?

    public static let maxDepth = 64

    public init(base: UnsafePointer<UInt8>, count: Int) {
        self.base = base
        self.end = count
    }

    /// A string token: the bytes between the quotes.
    public struct StringToken {
        public var start: Int
        public var end: Int
        public var hasEscapes: Bool
        /// Unicode scalar count of the decoded string (JSON Schema's string length).
        public var scalarCount: Int
        /// Whether its raw bytes hold DEL or a C1 control character (a C0 one is a syntax error unescaped;
        /// escaped ones are found by decoding: `hasControlCharacters`).
        public var hasRawControl: Bool = false
    }

    /// A number token. `integer` is set when the value is a whole number that fits in Int64.
    public struct NumberToken {
        public var integer: Int64?
        public var double: Double
        public var isIntegerLiteral: Bool
    }

    @inline(__always) public var atEnd: Bool { pos >= end }

    @inline(__always) public func peek() -> UInt8 { pos < end ? base[pos] : 0 }

    @inline(__always) public mutating func skipWhitespace() {
        while pos < end {
            let c = base[pos]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { pos += 1 } else { return }
        }
    }

    public mutating func fail(_ reason: String, at offset: Int? = nil) {
        if failure == nil { failure = JSONSyntaxError(offset: offset ?? pos, reason: reason) }
    }

    /// Consumes `c` after optional whitespace.
    @inline(__always) public mutating func consume(_ c: UInt8) -> Bool {
        skipWhitespace()
        if pos < end, base[pos] == c { pos += 1; return true }
        return false
    }

    /// Scans a string; `pos` must be at the opening quote.
    public mutating func scanString() -> StringToken? {
        pos += 1
        let start = pos
        var escapes = false
        var control = false
        var scalars = 0
        while true {
            // Eight plain ASCII bytes at a time: no quote, backslash, control character (DEL included) or high
            // bit. Where a word holds one, the lowest flagged byte is the first such byte (a borrow or carry
            // only flags bytes above one that is flagged itself), so the plain bytes before it are skipped.
            while pos + 8 <= end {
                let w = UnsafeRawPointer(base + pos).loadUnaligned(as: UInt64.self)
                let high: UInt64 = 0x8080_8080_8080_8080
                let ones: UInt64 = 0x0101_0101_0101_0101
                let quote = w ^ 0x2222_2222_2222_2222
                let slash = w ^ 0x5C5C_5C5C_5C5C_5C5C
                let special = (((quote &- ones) & ~quote) | ((slash &- ones) & ~slash) | (w &- 0x2020_2020_2020_2020) | (w &+ ones) | w) & high
                if special != 0 {
                    let plain = special.trailingZeroBitCount >> 3
                    pos += plain
                    scalars += plain
                    break
                }
                pos += 8
                scalars += 8
            }
            guard pos < end else { fail("unexpected end of input inside a string (truncated?)"); return nil }
            let c = base[pos]
            if c == 0x22 {  // "
                let tok = StringToken(start: start, end: pos, hasEscapes: escapes, scalarCount: scalars, hasRawControl: control)
                pos += 1
                return tok
            }
            if c == 0x5C {  // backslash
                escapes = true
                guard pos + 1 < end else { fail("unexpected end of input inside a string (truncated?)"); return nil }
                let e = base[pos + 1]
                switch e {
                case 0x22, 0x5C, 0x2F, 0x62, 0x66, 0x6E, 0x72, 0x74:
                    pos += 2
                case 0x75:  // u
                    guard let u = hex4(pos + 2) else { fail("invalid \\u escape in a string"); return nil }
                    pos += 6
                    if u >= 0xD800 && u <= 0xDBFF {
                        guard pos + 6 <= end, base[pos] == 0x5C, base[pos + 1] == 0x75, let lo = hex4(pos + 2),
                              lo >= 0xDC00 && lo <= 0xDFFF else {
                            fail("unpaired UTF-16 surrogate in a \\u escape"); return nil
                        }
                        pos += 6
                    } else if u >= 0xDC00 && u <= 0xDFFF {
                        fail("unpaired UTF-16 surrogate in a \\u escape"); return nil
                    }
                default:
                    fail("invalid escape sequence in a string"); return nil
                }
                scalars += 1
                continue
            }
            if c < 0x20 { fail("unescaped control character in a string"); return nil }
            if c < 0x80 {
                if c == 0x7F { control = true }
                pos += 1; scalars += 1; continue
            }
            guard let n = utf8SequenceLength(at: pos) else { fail("not valid UTF-8", at: pos); return nil }
            // U+0080-U+009F (C1) are 0xC2 0x80-0x9F.
            if c == 0xC2 && base[pos + 1] < 0xA0 { control = true }
            pos += n
            scalars += 1
        }
    }

    /// Validates one UTF-8 multi-byte sequence at `i`; returns its length.
    @inline(__always) func utf8SequenceLength(at i: Int) -> Int? {
        let c0 = base[i]
        func cont(_ k: Int) -> Bool { i + k < end && base[i + k] & 0xC0 == 0x80 }
        switch c0 {
        case 0xC2...0xDF:
            return cont(1) ? 2 : nil
        case 0xE0:
            guard i + 1 < end, (0xA0...0xBF).contains(base[i + 1]), cont(2) else { return nil }
            return 3
        case 0xE1...0xEC, 0xEE...0xEF:
            return cont(1) && cont(2) ? 3 : nil
        case 0xED:
            guard i + 1 < end, (0x80...0x9F).contains(base[i + 1]), cont(2) else { return nil }
            return 3
        case 0xF0:
            guard i + 1 < end, (0x90...0xBF).contains(base[i + 1]), cont(2), cont(3) else { return nil }
            return 4
        case 0xF1...0xF3:
            return cont(1) && cont(2) && cont(3) ? 4 : nil
        case 0xF4:
            guard i + 1 < end, (0x80...0x8F).contains(base[i + 1]), cont(2), cont(3) else { return nil }
            return 4
        default:
            return nil
        }
    }

    @inline(__always) func hex4(_ i: Int) -> UInt32? {
        guard i + 4 <= end else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = base[i + k]
            let d: UInt32
            switch c {
            case 48...57: d = UInt32(c - 48)
            case 65...70: d = UInt32(c - 55)
            case 97...102: d = UInt32(c - 87)
            default: return nil
            }
            v = v << 4 | d
        }
        return v
    }

    /// The decoded text of a string token.
    public func string(_ t: StringToken) -> String {
        if !t.hasEscapes {
            return String(decoding: UnsafeBufferPointer(start: base + t.start, count: t.end - t.start), as: UTF8.self)
        }
        var out = [UInt8]()
        out.reserveCapacity(t.end - t.start)
        decodeEscaped(t) { out.append($0) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether the token's decoded text holds a control character (C0, DEL or C1): what a terminal acts on.
    public func hasControlCharacters(_ t: StringToken) -> Bool {
        // Unescaped, the scan saw every byte (and failed on a C0 control character).
        if !t.hasEscapes { return t.hasRawControl }
        var found = false
        var previous: UInt8 = 0
        func check(_ b: UInt8) {
            if b < 0x20 || b == 0x7F || (previous == 0xC2 && (0x80...0x9F).contains(b)) { found = true }
            previous = b
        }
        if t.hasEscapes {
            decodeEscaped(t) { check($0) }
        } else {
            for i in t.start..<t.end { check(base[i]) }
        }
        return found
    }

    /// Whether the token's decoded text equals `bytes` (ASCII/UTF-8), without allocating when it has no escapes.
    @inline(__always) public func equals(_ t: StringToken, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        if !t.hasEscapes {
            let n = t.end - t.start
            guard n == bytes.count else { return false }
            guard let b = bytes.baseAddress else { return n == 0 }
            return memcmpBytes(base + t.start, b, n)
        }
        var i = 0
        var ok = true
        decodeEscaped(t) { byte in
            if i >= bytes.count || bytes[i] != byte { ok = false }
            i += 1
        }
        return ok && i == bytes.count
    }

    func decodeEscaped(_ t: StringToken, _ emit: (UInt8) -> Void) {
        var i = t.start
        func emitScalar(_ v: UInt32) {
            if v < 0x80 { emit(UInt8(v)) }
            else if v < 0x800 { emit(UInt8(0xC0 | (v >> 6))); emit(UInt8(0x80 | (v & 0x3F))) }
            else if v < 0x10000 {
                emit(UInt8(0xE0 | (v >> 12))); emit(UInt8(0x80 | ((v >> 6) & 0x3F))); emit(UInt8(0x80 | (v & 0x3F)))
            } else {
                emit(UInt8(0xF0 | (v >> 18))); emit(UInt8(0x80 | ((v >> 12) & 0x3F)))
                emit(UInt8(0x80 | ((v >> 6) & 0x3F))); emit(UInt8(0x80 | (v & 0x3F)))
            }
        }
        while i < t.end {
            let c = base[i]
            if c != 0x5C { emit(c); i += 1; continue }
            let e = base[i + 1]
            switch e {
            case 0x62: emit(0x08); i += 2
            case 0x66: emit(0x0C); i += 2
            case 0x6E: emit(0x0A); i += 2
            case 0x72: emit(0x0D); i += 2
            case 0x74: emit(0x09); i += 2
            case 0x75:
                let u = hex4(i + 2) ?? 0xFFFD
                i += 6
                if u >= 0xD800 && u <= 0xDBFF, let lo = hex4(i + 2) {
                    emitScalar(0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00))
                    i += 6
                } else {
                    emitScalar(u)
                }
            default: emit(e); i += 2
            }
        }
    }

    /// Scans a number at `pos` (RFC 8259 grammar).
    public mutating func scanNumber() -> NumberToken? {
        let start = pos
        // Fast path: a plain integer of at most 18 digits, followed by a delimiter.
        do {
            var i = pos
            let negative = i < end && base[i] == 0x2D
            if negative { i += 1 }
            let digitsStart = i
            var v: Int64 = 0
            while i < end, base[i] >= 0x30, base[i] <= 0x39, i - digitsStart < 18 {
                v = v * 10 + Int64(base[i] - 0x30)
                i += 1
            }
            let n = i - digitsStart
            let next = i < end ? base[i] : 0x20
            if n > 0, n < 18, !(n > 1 && base[digitsStart] == 0x30), next != 0x2E, next != 0x65, next != 0x45, !(next >= 0x30 && next <= 0x39) {
                pos = i
                let value = negative ? -v : v
                return NumberToken(integer: value, double: Double(value), isIntegerLiteral: true)
            }
        }
        if peek() == 0x2D { pos += 1 }
        guard pos < end else { fail("unexpected end of input in a number (truncated?)"); return nil }
        if base[pos] == 0x30 {
            pos += 1
        } else if base[pos] >= 0x31 && base[pos] <= 0x39 {
            while pos < end, base[pos] >= 0x30, base[pos] <= 0x39 { pos += 1 }
        } else {
            fail("invalid number"); return nil
        }
        var integral = true
        var fracAllZero = true
        if pos < end, base[pos] == 0x2E {
            integral = false
            pos += 1
            let fs = pos
            while pos < end, base[pos] >= 0x30, base[pos] <= 0x39 {
                if base[pos] != 0x30 { fracAllZero = false }
                pos += 1
            }
            guard pos > fs else { fail("invalid number: no digits after the decimal point"); return nil }
        }
        var hasExponent = false
        if pos < end, base[pos] == 0x65 || base[pos] == 0x45 {
            integral = false
            hasExponent = true
            pos += 1
            if pos < end, base[pos] == 0x2B || base[pos] == 0x2D { pos += 1 }
            let es = pos
            while pos < end, base[pos] >= 0x30, base[pos] <= 0x39 { pos += 1 }
            guard pos > es else { fail("invalid number: no digits in the exponent"); return nil }
        }
        let text = String(decoding: UnsafeBufferPointer(start: base + start, count: pos - start), as: UTF8.self)
        let d = Double(text) ?? .nan
        var intValue: Int64?
        if integral {
            intValue = Int64(text)
        } else if !hasExponent && fracAllZero {
            let dot = text.firstIndex(of: ".") ?? text.endIndex
            intValue = Int64(text[..<dot])
        } else if d.isFinite, d == d.rounded(), abs(d) < 9.0e15 {
            intValue = Int64(d)
        }
        return NumberToken(integer: intValue, double: d, isIntegerLiteral: integral)
    }

    /// Consumes a literal (`true`, `false`, `null`) at `pos`.
    public mutating func scanLiteral(_ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        guard pos + n <= end else { fail("unexpected end of input (truncated?)"); return false }
        let w = word.utf8Start
        for k in 0..<n where base[pos + k] != w[k] {
            fail("unexpected character"); return false
        }
        pos += n
        return true
    }

    /// Skips one value of any kind, checking its syntax.
    public mutating func skipValue(depth: Int = 0) -> Bool {
        skipWhitespace()
        guard pos < end else { fail("unexpected end of input (truncated?)"); return false }
        guard depth < JSONScanner.maxDepth else { fail("nesting deeper than \(JSONScanner.maxDepth) levels"); return false }
        switch base[pos] {
        case 0x22: return scanString() != nil
        case 0x7B:
            pos += 1
            if consume(0x7D) { return true }
            while true {
                skipWhitespace()
                guard peek() == 0x22 else { expectedFailure("a property name in double quotes"); return false }
                guard scanString() != nil else { return false }
                guard consume(0x3A) else { expectedFailure("':' after a property name"); return false }
                guard skipValue(depth: depth + 1) else { return false }
                if consume(0x2C) { continue }
                if consume(0x7D) { return true }
                expectedFailure("',' or '}' in an object"); return false
            }
        case 0x5B:
            pos += 1
            if consume(0x5D) { return true }
            while true {
                guard skipValue(depth: depth + 1) else { return false }
                if consume(0x2C) { continue }
                if consume(0x5D) { return true }
                expectedFailure("',' or ']' in an array"); return false
            }
        case 0x74: return scanLiteral("true")
        case 0x66: return scanLiteral("false")
        case 0x6E: return scanLiteral("null")
        case 0x2D, 0x30...0x39: return scanNumber() != nil
        default:
            fail("unexpected character"); return false
        }
    }

    public mutating func expectedFailure(_ what: String) {
        skipWhitespace()
        if pos >= end { fail("unexpected end of input, expected \(what) (truncated?)") } else { fail("expected \(what)") }
    }
}

/// Where and why a JSON text is not valid JSON.
public struct JSONSyntaxError: Error, Equatable, Sendable {
    public var offset: Int
    public var reason: String
}

@inline(__always) func memcmpBytes(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    var i = 0
    while i + 8 <= n {
        let x = UnsafeRawPointer(a + i).loadUnaligned(as: UInt64.self)
        let y = UnsafeRawPointer(b + i).loadUnaligned(as: UInt64.self)
        if x != y { return false }
        i += 8
    }
    while i < n {
        if a[i] != b[i] { return false }
        i += 1
    }
    return true
}
