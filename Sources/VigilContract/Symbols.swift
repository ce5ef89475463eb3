/// An interned enumeration value from a contract (`injury_observed`, `police`, `started`, ...).
///
/// Every distinct enum string in the contract gets one id, so comparing two enum values anywhere in the
/// engine is an integer comparison.
public struct Symbol: Hashable, Comparable, Sendable, Codable {
    public var id: UInt16
    @inlinable public init(_ id: UInt16) { self.id = id }
    @inlinable public static func < (a: Symbol, b: Symbol) -> Bool { a.id < b.id }
}

/// A set of symbols as a 256-bit bitmap: arrays of enum values (`attending_agencies`) and literal lists.
public struct SymbolSet: Hashable, Sendable, Codable {
    public var w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0, w3: UInt64 = 0

    public static let capacity = 256

    @inlinable public init() {}

    public init<S: Sequence>(_ symbols: S) where S.Element == Symbol {
        for s in symbols { insert(s) }
    }

    @inlinable public var isEmpty: Bool { (w0 | w1 | w2 | w3) == 0 }

    @inlinable public func contains(_ s: Symbol) -> Bool {
        let bit = UInt64(1) << UInt64(s.id & 63)
        switch s.id >> 6 {
        case 0: return w0 & bit != 0
        case 1: return w1 & bit != 0
        case 2: return w2 & bit != 0
        case 3: return w3 & bit != 0
        default: return false
        }
    }

    /// Inserts `s`; returns false when it was already present.
    @inlinable @discardableResult public mutating func insert(_ s: Symbol) -> Bool {
        let bit = UInt64(1) << UInt64(s.id & 63)
        switch s.id >> 6 {
        case 0: defer { w0 |= bit }; return w0 & bit == 0
        case 1: defer { w1 |= bit }; return w1 & bit == 0
        case 2: defer { w2 |= bit }; return w2 & bit == 0
        case 3: defer { w3 |= bit }; return w3 & bit == 0
        default: return false
        }
    }

    @inlinable public func intersects(_ o: SymbolSet) -> Bool {
        (w0 & o.w0) | (w1 & o.w1) | (w2 & o.w2) | (w3 & o.w3) != 0
    }

    @inlinable public func union(_ o: SymbolSet) -> SymbolSet {
        var r = self
        r.w0 |= o.w0; r.w1 |= o.w1; r.w2 |= o.w2; r.w3 |= o.w3
        return r
    }

    @inlinable public func intersection(_ o: SymbolSet) -> SymbolSet {
        var r = self
        r.w0 &= o.w0; r.w1 &= o.w1; r.w2 &= o.w2; r.w3 &= o.w3
        return r
    }

    @inlinable public func subtracting(_ o: SymbolSet) -> SymbolSet {
        var r = self
        r.w0 &= ~o.w0; r.w1 &= ~o.w1; r.w2 &= ~o.w2; r.w3 &= ~o.w3
        return r
    }

    public var count: Int { w0.nonzeroBitCount + w1.nonzeroBitCount + w2.nonzeroBitCount + w3.nonzeroBitCount }

    /// Members in ascending id order.
    public var members: [Symbol] {
        var out: [Symbol] = []
        for (k, w) in [w0, w1, w2, w3].enumerated() {
            var v = w
            while v != 0 {
                let b = v.trailingZeroBitCount
                out.append(Symbol(UInt16(k * 64 + b)))
                v &= v - 1
            }
        }
        return out
    }
}

/// The interned strings of a contract's enumerations.
public struct SymbolTable: Sendable {
    public private(set) var names: [String] = []
    private var ids: [String: Symbol] = [:]

    public init() {}

    public func symbol(_ name: String) -> Symbol? { ids[name] }
    public func name(_ s: Symbol) -> String { Int(s.id) < names.count ? names[Int(s.id)] : "?" }
    public var count: Int { names.count }

    @discardableResult public mutating func intern(_ name: String) -> Symbol {
        if let s = ids[name] { return s }
        let s = Symbol(UInt16(names.count))
        names.append(name)
        ids[name] = s
        return s
    }
}

extension Sequence where Element == UInt8 {
    /// Lower-case hexadecimal, two digits per byte.
    public var hexString: String {
        // Every alert id and every audit record's hash goes through here: no table or output array to grow
        // per call.
        var out: [UInt8] = []
        out.reserveCapacity(Swift.max(underestimatedCount, 32) * 2)
        for b in self {
            out.append(hexDigit(b >> 4))
            out.append(hexDigit(b & 15))
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// The lower-case hexadecimal digit (ASCII) of `x`, 0 to 15.
@inline(__always) func hexDigit(_ x: UInt8) -> UInt8 { x < 10 ? 0x30 + x : 0x57 + x }

/// FNV-1a, 64 bits: a stable hash (Swift's `Hasher` is seeded per process and must never be persisted or
/// used to place data).
@inline(__always) public func stableHash(_ s: String) -> UInt64 {
    // Over the string's UTF-8 in place: the same bytes as its `utf8` view's, without the view's iterator.
    var s = s
    return s.withUTF8 { stableHash($0) }
}

/// `stableHash` of the text whose UTF-8 is `bytes`.
@inline(__always) public func stableHash(_ bytes: some Collection<UInt8>) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes {
        h ^= UInt64(b)
        h = h &* 0x0000_0100_0000_01b3
    }
    return h
}
