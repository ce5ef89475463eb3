import VigilContract

/// An event already read for a child, remembered to recognise duplicates (a 64-bit hash of its id).
struct SeenEvent: Sendable, Codable, Hashable {
    var idHash: UInt64
    var at: Instant
}

/// The latest value of a declared state (one per key for keyed states), with the event that set it.
struct StateEntry: Sendable, Codable, Hashable {
    var state: UInt16
    /// Correlation key for keyed states; empty for unkeyed ones.
    var key: String
    var value: FieldValue
    var ref: EventRef
}

/// One event kept in a window (or a look-back) for a child.
struct WindowEntry: Sendable, Codable, Hashable {
    var window: UInt16
    var at: Instant
    /// The value `distinct(...)` counts (a symbol id or a hash).
    var distinct: UInt64
    /// The look-back correlation key, if the window has one.
    var key: String
    var ref: EventRef
}

/// An armed expectation waiting for its deadline.
public struct PendingExpectation: Sendable, Codable, Hashable {
    public var rule: Int32
    public var clause: Int16
    /// Unique within the child; the deadline queue refers to it.
    public var id: UInt32
    /// Engine-wide arming order: deadlines at the same instant fire in this order.
    public var seq: UInt64
    public var key: String
    public var armedAt: Instant
    public var deadline: Instant
    public var ref: EventRef
    /// Template values captured at arming.
    public var args: [String]
}

/// When a rule last fired for the child (for suppression).
struct FiredMark: Sendable, Codable, Hashable {
    var rule: Int32
    var at: Instant
}

/// An expectation whose deadline passed and raised an alert, remembered so that an event arriving late that
/// would have met it can withdraw that alert.
struct FiredExpectation: Sendable, Codable, Hashable {
    var rule: Int32
    var key: String
    var armedAt: Instant
    var deadline: Instant
    var alertId: String
    var armRef: EventRef
}

/// Everything the engine keeps about one child. Bounded: every list is pruned by time and capped.
public struct ChildState: Sendable, Codable {
    public var id: String
    /// The newest `occurred_at` read for this child.
    public var newest: Instant = .distantPast
    /// The clock domain (input partition) of the child's latest event.
    public var domain: Int32 = 0
    var seen: [SeenEvent] = []
    var states: [StateEntry] = []
    var entries: [WindowEntry] = []
    public internal(set) var pending: [PendingExpectation] = []
    var fired: [FiredMark] = []
    var firedExpectations: [FiredExpectation] = []
    var nextPendingId: UInt32 = 1
    /// Changed since its state was last written to the changelog (not persisted).
    var dirty = false

    enum CodingKeys: String, CodingKey {
        case id, newest, domain, seen, states, entries, pending, fired, firedExpectations, nextPendingId
    }

    init(id: String) { self.id = id }

    /// Approximate heap bytes held (for benchmarks).
    public var approximateBytes: Int {
        func arr(_ count: Int, _ stride: Int) -> Int { count == 0 ? 0 : 32 + count * stride }
        var b = MemoryLayout<ChildState>.stride + (id.utf8.count > 15 ? 32 + id.utf8.count : 0)
        b += arr(seen.capacity, MemoryLayout<SeenEvent>.stride)
        b += arr(states.capacity, MemoryLayout<StateEntry>.stride)
        b += arr(entries.capacity, MemoryLayout<WindowEntry>.stride)
        b += arr(pending.capacity, MemoryLayout<PendingExpectation>.stride)
        b += arr(fired.capacity, MemoryLayout<FiredMark>.stride)
        b += arr(firedExpectations.capacity, MemoryLayout<FiredExpectation>.stride)
        return b
    }
}
