import VigilContract

/// Decoded events packed end to end, each its length and then its fields as `PackedFields` lays them out, in
/// the order the decoder wrote them. `vigil run`'s intake validates and decodes each message once and hands a
/// shard its events this way: reading one back into a record makes no string but the ones the record holds
/// and validates nothing again. Read back in the order appended.
public struct PackedEvents: Sendable {
    private var bytes: [UInt8] = []
    /// Events appended.
    public private(set) var count = 0

    public init() {}

    public var byteCount: Int { bytes.count }

    /// Makes room for `byteCount` bytes of events in all, so that appending up to there does not grow the
    /// storage again.
    public mutating func reserveCapacity(bytes byteCount: Int) { bytes.reserveCapacity(byteCount) }

    /// Appends every field `r` holds.
    public mutating func append(_ r: EventRecord) {
        let size = PackedFields.size(r, keep: nil)
        let start = bytes.count
        let total = PackedFields.varintSize(UInt64(size)) + size
        if bytes.capacity - start < total { bytes.reserveCapacity(max(bytes.capacity * 2, start + total, 4096)) }
        bytes.appendZeros(total)
        bytes.withUnsafeMutableBytes { b in
            guard let base = b.baseAddress else { return }
            var w = RawWriter(p: base + start)
            w.varint(UInt64(size))
            _ = PackedFields.write(r, keep: nil, to: w.p)
        }
        count += 1
    }

    /// Reads the event at `offset` into `r` (reset first) and moves `offset` past it. False at the end, or
    /// where the bytes are not an event `append` wrote (nothing that did is).
    public func load(_ offset: inout Int, into r: inout EventRecord) -> Bool {
        r.reset()
        guard offset < bytes.count else { return false }
        let start = offset
        let range: Range<Int>? = bytes.withUnsafeBytes { raw in
            var reader = RawReader(raw, start..<raw.count)
            let n = reader.length()
            return reader.failed ? nil : reader.at..<(reader.at + n)
        }
        guard let fields = range else { return false }
        let slots = r.values.count
        var ok = true
        PackedFields.forEach(bytes, fields) { slot, v in
            if slot < slots { r.set(slot, v) } else { ok = false }
        }
        offset = fields.upperBound
        return ok
    }
}
