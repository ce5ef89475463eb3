/// A typed value captured from a validated JSON message.
public enum FieldValue: Hashable, Sendable, Codable {
    case missing
    case bool(Bool)
    case int(Int64)
    case symbol(Symbol)
    case string(String)
    case date(Day)
    case instant(Instant)
    /// An array of enum values.
    case symbols(SymbolSet)
    /// An array of strings.
    case strings([String])

    @inlinable public var isMissing: Bool { if case .missing = self { return true }; return false }
    @inlinable public var symbol: Symbol? { if case .symbol(let s) = self { return s }; return nil }
    @inlinable public var string: String? { if case .string(let s) = self { return s }; return nil }
    @inlinable public var instant: Instant? { if case .instant(let t) = self { return t }; return nil }
    @inlinable public var date: Day? { if case .date(let d) = self { return d }; return nil }
    @inlinable public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    @inlinable public var int: Int64? { if case .int(let i) = self { return i }; return nil }
}

/// The captured fields of one message, indexed by slot. Reused from message to message: `reset()` clears
/// only the slots the last message wrote, so a decode costs nothing for fields no rule reads.
public struct EventRecord: Sendable {
    public var values: [FieldValue]
    @usableFromInline var written: [Int32] = []

    /// The slots set since the last `reset()`, each once, in the order they were first set.
    public var writtenSlots: [Int32] { written }

    public init(slotCount: Int) {
        values = Array(repeating: .missing, count: slotCount)
        written.reserveCapacity(32)
    }

    @inlinable public subscript(slot: Int) -> FieldValue {
        values[slot]
    }

    /// The symbol in `slot`, read in place (nil when it holds something else or nothing): a condition's test
    /// of a field copied the whole value out first.
    @inlinable public func symbol(at slot: Int) -> Symbol? {
        values.withUnsafeBufferPointer { b in
            precondition(slot >= 0 && slot < b.count, "a slot out of range")
            guard case .symbol(let v) = b[slot] else { return nil }
            return v
        }
    }

    /// The integer in `slot`, read in place.
    @inlinable public func int(at slot: Int) -> Int64? {
        values.withUnsafeBufferPointer { b in
            precondition(slot >= 0 && slot < b.count, "a slot out of range")
            guard case .int(let v) = b[slot] else { return nil }
            return v
        }
    }

    /// The boolean in `slot`, read in place.
    @inlinable public func bool(at slot: Int) -> Bool? {
        values.withUnsafeBufferPointer { b in
            precondition(slot >= 0 && slot < b.count, "a slot out of range")
            guard case .bool(let v) = b[slot] else { return nil }
            return v
        }
    }

    /// Whether `slot` holds a value, read in place.
    @inlinable public func has(_ slot: Int) -> Bool {
        values.withUnsafeBufferPointer { b in
            precondition(slot >= 0 && slot < b.count, "a slot out of range")
            if case .missing = b[slot] { return false }
            return true
        }
    }

    @inlinable public mutating func set(_ slot: Int, _ v: consuming FieldValue) {
        // A slot set again (an array's items, then the array) is listed once: listed at each setting, its value
        // was packed into a child's timeline once per item. The value is swapped in (the old one is then
        // `v`): reading the slot, then assigning it through the array's subscript, made two uniqueness checks
        // and copied and destroyed the old value and the new (a late record's re-derivation, which sets
        // about nine slots an event, spent a sixth of its instructions here).
        swap(&values[slot], &v)
        if v.isMissing { written.append(Int32(slot)) }
    }

    public mutating func reset() {
        for s in written { values[Int(s)] = .missing }
        written.removeAll(keepingCapacity: true)
    }
}

/// Why a message is not a valid event: a JSON path and a reason that never quotes the message's values.
public struct ValidationFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case invalidJSON = "invalid-json"
        case invalidUTF8 = "invalid-utf8"
        case contract = "contract"
        case unsupportedSchemaVersion = "unsupported-schema-version"
        case tooLarge = "too-large"
        /// Valid JSON and contract, but a time no record can have (before 1970, in the future, or occurring
        /// after it was recorded): evaluating it would move a clock there.
        case implausibleTime = "implausible-time"
    }
    public var kind: Kind
    /// JSONPath of the offending value (`$.data.outcome`), or `$` for the whole message.
    public var path: String
    public var reason: String

    public init(kind: Kind, path: String, reason: String) {
        self.kind = kind
        self.path = path
        self.reason = reason
    }

    public var description: String { "\(path): \(reason)" }
}
