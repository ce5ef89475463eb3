/// A child's timeline: its events, in timeline order, and each event's bytes (position, id, packed fields),
/// in one buffer, so that a child holds one allocation for it rather than two (each with a 32-byte header).
///
/// Laid out as a slotted page: the events from the front (18 bytes each), free room, and the events' bytes
/// from the back (the newest lowest). An event says where its bytes are as their distance from the end of the
/// buffer, which a growth keeps (the bytes move to the end of the new buffer). The buffer's every byte is in
/// the array (its count is its size), so that copying a child copies it as any array is copied. The number of
/// events and of bytes at the back are beside the buffer (16 bytes in all, in the child's struct).
public struct Timeline: RandomAccessCollection, Sendable {
    /// The events, free room, the events' bytes.
    private(set) var buffer: [UInt8] = []
    private var events: UInt32 = 0
    /// The bytes held at the back: the events' (and those of events removed, until `compacted`).
    private var back: UInt32 = 0

    /// An event's bytes in the buffer: its size, not its stride (it is read and written unaligned).
    static let eventSize = MemoryLayout<TimelineEvent>.size

    public var startIndex: Int { 0 }
    public var endIndex: Int { Int(events) }

    public subscript(k: Int) -> TimelineEvent {
        get {
            precondition(k >= 0 && k < count, "a timeline event out of range")
            return buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: k * Self.eventSize, as: TimelineEvent.self) }
        }
        set {
            precondition(k >= 0 && k < count, "a timeline event out of range")
            buffer.withUnsafeMutableBytes { $0.storeBytes(of: newValue, toByteOffset: k * Self.eventSize, as: TimelineEvent.self) }
        }
    }

    /// The bytes held at the back: the events' bytes, and those of events removed until `compacted`.
    var byteCount: Int { Int(back) }

    /// The bytes the events' bytes take.
    var liveBytes: Int { reduce(0) { $0 + $1.bytes(in: buffer).count } }

    /// The most bytes the events' bytes take: an event's place is 31 bits (the top bit of its word is its
    /// `ignored` flag), and the events themselves (capped by `EngineLimits.maxTimelinePerChild`) take room
    /// besides.
    static let maxBytes = Int(Int32.max) - (1 << 24)

    /// The bytes of the buffer, allocated (benchmarks).
    var capacity: Int { buffer.capacity }

    /// Room for `events` more events and `bytes` more bytes: a buffer that grows by a quarter rather than by
    /// doubling (`ChildState.makeRoom`), or to exactly what it needs with `exactly`.
    mutating func makeRoom(events: Int, bytes: Int, exactly: Bool = false) {
        let n = count, back = Int(self.back)
        let need = (n + events) * Self.eventSize + back + bytes
        guard need > buffer.count else { return }
        let size = exactly ? need : Swift.max(need, buffer.count + buffer.count / 4)
        // The old buffer moved into one with room for `size` (a copy of its bytes), zeros appended for the growth,
        // then its bytes at the back moved to the new end. What they leave between the events and the bytes is
        // free room, never read.
        var grown = buffer
        buffer = []
        let old = grown.count
        grown.reserveCapacity(size)
        // What malloc gave beyond the size asked is used too.
        let total = Swift.max(grown.capacity, size)
        grown.appendZeros(total - old)
        if back > 0 {
            grown.withUnsafeMutableBytes { b in
                guard let base = b.baseAddress else { return }
                (base + total - back).copyMemory(from: base + old - back, byteCount: back)
            }
        }
        buffer = grown
    }

    /// Writes `size` bytes at the back with `write` (given where to start); returns their distance from the
    /// end, or nil when they would pass `maxBytes`. Room is made for one more event too.
    mutating func appendBytes(_ size: Int, _ write: (UnsafeMutableRawPointer) -> Void) -> UInt32? {
        guard byteCount + size <= Self.maxBytes else { return nil }
        makeRoom(events: 1, bytes: size)
        let fromEnd = byteCount + size
        buffer.withUnsafeMutableBytes { b in
            guard let base = b.baseAddress else { return }
            write(base + b.count - fromEnd)
        }
        back = UInt32(truncatingIfNeeded: fromEnd)
        return back
    }

    /// Inserts `e`, whose bytes are in the buffer already, at `k`.
    mutating func insert(_ e: TimelineEvent, at k: Int) {
        let n = count
        precondition(k >= 0 && k <= n, "a timeline event's place out of range")
        makeRoom(events: 1, bytes: 0)
        buffer.withUnsafeMutableBytes { b in
            guard let base = b.baseAddress else { return }
            let at = base + k * Self.eventSize
            if k < n { (at + Self.eventSize).copyMemory(from: at, byteCount: (n - k) * Self.eventSize) }
            at.storeBytes(of: e, as: TimelineEvent.self)
        }
        events += 1
    }

    mutating func append(_ e: TimelineEvent) { insert(e, at: count) }

    /// Removes the first event (its bytes stay until `compacted`).
    mutating func removeFirst() -> TimelineEvent {
        let n = count
        let e = self[0]
        buffer.withUnsafeMutableBytes { b in
            guard let base = b.baseAddress else { return }
            base.copyMemory(from: base + Self.eventSize, byteCount: (n - 1) * Self.eventSize)
        }
        events -= 1
        return e
    }

    /// The same events, with only their bytes, in a buffer of their exact size (the bytes of events gone are
    /// given back); empty when there are no events.
    func compacted() -> Timeline {
        var out = Timeline()
        let n = count
        guard n > 0 else { return out }
        let live = liveBytes
        out.makeRoom(events: n, bytes: live, exactly: true)
        buffer.withUnsafeBytes { old in
            for e in self {
                let from = e.bytes(in: buffer)
                guard let fromEnd = out.appendBytes(from.count, { to in
                    if let base = old.baseAddress, !from.isEmpty { to.copyMemory(from: base + from.lowerBound, byteCount: from.count) }
                }) else { continue }
                out.append(e.moved(toDistanceFromEnd: fromEnd))
            }
        }
        return out
    }
}
