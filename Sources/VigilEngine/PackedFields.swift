import VigilContract

/// The captured fields of a timeline event, packed: per field one varint holding its slot and a tag
/// (`slot << 3 | tag - 1`), then the value in the fewest bytes it takes: integers, dates, symbols and
/// lengths as varints (signed ones zigzagged), an instant on a whole second by its seconds, a set of symbols
/// by its members. A child keeps its events' fields end to end in one array (`ChildState.fieldBytes`), each
/// event its range; decoded only when the child is re-derived. Part of the changelog's binary record
/// (version 3 on) and of a timeline event in JSON (version 2 on); the layout before it is
/// `LegacyPackedFields`.
enum PackedFields {
    enum Tag: UInt8 { case bool = 1, int, symbol, string, date, instant, symbols, strings }

    /// Appends the fields of `r` in slots that `keep` marks and that have a value to `bytes` (a pass to size
    /// them, one to write them in place); returns how many bytes that took.
    static func append(_ r: EventRecord, keep: [Bool], to bytes: inout [UInt8]) -> Int {
        let size = Self.size(r, keep: keep)
        guard size > 0 else { return 0 }
        let start = bytes.count
        ChildState.makeRoom(&bytes, for: size)
        bytes.appendZeros(size)
        bytes.withUnsafeMutableBytes { b in
            guard let base = b.baseAddress else { return }
            _ = write(r, keep: keep, to: base + start)
        }
        return size
    }

    /// The bytes the fields of `r` in slots that `keep` marks (without it, all) take.
    static func size(_ r: EventRecord, keep: [Bool]?) -> Int {
        var size = 0
        forEachKept(r, keep) { slot, v in size += Self.size(slot: slot, v) }
        return size
    }

    /// Writes the fields of `r` in slots that `keep` marks (without it, all) at `p`, which has `size(r, keep:)`
    /// bytes; returns the byte after them.
    static func write(_ r: EventRecord, keep: [Bool]?, to p: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        var at = p
        forEachKept(r, keep) { slot, v in at = write(slot, v, to: at) }
        return at
    }

    /// Writes the fields of `r` in slots that `keep` marks at the start of `out`, in one pass (each value read
    /// once, sized and written); returns how many bytes that took. `out` is room kept from call to call (its
    /// count is the room): it doubles, and the pass starts again, when a field does not fit.
    static func pack(_ r: EventRecord, keep: [Bool], into out: inout [UInt8]) -> Int {
        while true {
            let room = out.count
            let written = out.withUnsafeMutableBytes { b -> Int? in
                guard let base = b.baseAddress else { return nil }
                var at = 0
                var fits = true
                forEachKept(r, keep) { slot, v in
                    guard fits else { return }
                    let size = Self.size(slot: slot, v)
                    guard size <= room - at else { fits = false; return }
                    _ = write(slot, v, to: base + at)
                    at += size
                }
                return fits ? at : nil
            }
            if let written { return written }
            out = [UInt8](repeating: 0, count: Swift.max(256, room * 2))
        }
    }

    /// Calls `body` with each slot of `r` that was written and that `keep` marks (without it, each), and its
    /// value read in place: through the arrays' storage, no value copied out of the record and destroyed after
    /// (what subscripting it did, twice a field, once to size and once to write).
    @inline(__always) private static func forEachKept(_ r: EventRecord, _ keep: [Bool]?, _ body: (UInt16, FieldValue) -> Void) {
        r.values.withUnsafeBufferPointer { values in
            r.writtenSlots.withUnsafeBufferPointer { written in
                for s in written {
                    let slot = Int(s)
                    if let keep, slot >= keep.count || !keep[slot] { continue }
                    body(UInt16(truncatingIfNeeded: slot), values[slot])
                }
            }
        }
    }

    /// The bytes of one field.
    static func bytes(slot: UInt16, _ v: FieldValue) -> [UInt8] {
        let size = Self.size(slot: slot, v)
        guard size > 0 else { return [] }
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            guard let base = buffer.baseAddress else { return }
            _ = Self.write(slot, v, to: UnsafeMutableRawPointer(base))
            count = size
        }
    }

    /// Fields in the layout before this one (`LegacyPackedFields`), in this one.
    static func repack(legacy bytes: [UInt8], _ range: Range<Int>) -> [UInt8] {
        var out: [UInt8] = []
        LegacyPackedFields.forEach(bytes, range) { slot, v in out += Self.bytes(slot: UInt16(slot), v) }
        return out
    }

    /// Fields in this layout, in the one before it (for tests of reading what an earlier Vigil wrote).
    static func legacy(_ bytes: [UInt8], _ range: Range<Int>) -> [UInt8] {
        var out: [UInt8] = []
        forEach(bytes, range) { slot, v in out += LegacyPackedFields.bytes(slot: UInt16(slot), v) }
        return out
    }

    // MARK: varints

    @inline(__always) static func zigzag(_ x: Int64) -> UInt64 { UInt64(bitPattern: (x << 1) ^ (x >> 63)) }
    @inline(__always) static func unzigzag(_ x: UInt64) -> Int64 { Int64(bitPattern: x >> 1) ^ -Int64(bitPattern: x & 1) }

    /// The bytes a varint of `x` takes (7 bits each).
    @inline(__always) static func varintSize(_ x: UInt64) -> Int { (70 - (x | 1).leadingZeroBitCount) / 7 }

    /// An instant as a varint: on a whole second (nearly all of them) its seconds, else its microseconds;
    /// the low bit says which.
    @inline(__always) static func instantCode(_ t: Instant) -> UInt64 {
        let (seconds, rest) = t.micros.quotientAndRemainder(dividingBy: 1_000_000)
        return rest == 0 ? zigzag(seconds) << 1 | 1 : zigzag(t.micros) << 1
    }

    @inline(__always) static func instant(code: UInt64) -> Instant {
        let v = unzigzag(code >> 1)
        return Instant(micros: code & 1 == 1 ? v.multipliedReportingOverflow(by: 1_000_000).partialValue : v)
    }

    @inline(__always) static func head(_ slot: UInt16, _ tag: Tag) -> UInt64 { UInt64(slot) << 3 | UInt64(tag.rawValue - 1) }

    /// The bytes `write` takes for a field with value `v` (none for a missing value).
    @inline(__always) static func size(slot: UInt16, _ v: FieldValue) -> Int {
        let h = varintSize(UInt64(slot) << 3)
        switch v {
        case .missing: return 0
        case .bool: return h + 1
        case .symbol(let s): return h + varintSize(UInt64(s.id))
        case .int(let i): return h + varintSize(zigzag(i))
        case .date(let d): return h + varintSize(zigzag(Int64(d.number)))
        case .instant(let t): return h + varintSize(instantCode(t))
        case .string(let s): return h + varintSize(UInt64(s.utf8.count)) + s.utf8.count
        case .symbols(let set): return h + varintSize(UInt64(set.count)) + set.count
        case .strings(let a):
            var n = h + varintSize(UInt64(a.count))
            for s in a { n += varintSize(UInt64(s.utf8.count)) + s.utf8.count }
            return n
        }
    }

    /// Writes a field at `p`, which has `size(slot:v)` bytes; returns the byte after it.
    @inline(__always) static func write(_ slot: UInt16, _ v: FieldValue, to p: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        // A cursor with mutating methods, not local functions capturing `p`: captured, `p` was boxed and every
        // write went through a dynamic exclusivity check (a third of the time packing a record took).
        var w = RawWriter(p: p)
        switch v {
        case .missing: break
        case .bool(let b): w.varint(head(slot, .bool)); w.varint(b ? 1 : 0)
        case .int(let i): w.varint(head(slot, .int)); w.varint(zigzag(i))
        case .symbol(let s): w.varint(head(slot, .symbol)); w.varint(UInt64(s.id))
        case .string(let s): w.varint(head(slot, .string)); w.text(s)
        case .date(let d): w.varint(head(slot, .date)); w.varint(zigzag(Int64(d.number)))
        case .instant(let t): w.varint(head(slot, .instant)); w.varint(instantCode(t))
        case .symbols(let set):
            // Members of a set are below 256: a byte each, in ascending order.
            w.varint(head(slot, .symbols))
            w.varint(UInt64(set.count))
            for (k, word) in [set.w0, set.w1, set.w2, set.w3].enumerated() {
                var bits = word
                while bits != 0 {
                    w.byte(UInt8(truncatingIfNeeded: k * 64 + bits.trailingZeroBitCount))
                    bits &= bits - 1
                }
            }
        case .strings(let a):
            w.varint(head(slot, .strings))
            w.varint(UInt64(a.count))
            for s in a { w.text(s) }
        }
        return w.p
    }

    /// Calls `body` with each slot and value of the fields in `range` of `bytes`, in the order written; with
    /// `only`, just for the slots it marks (the others are skipped over, their strings never made). Stops at
    /// the first field that is not whole.
    static func forEach(_ bytes: [UInt8], _ range: Range<Int>, only: [Bool]? = nil, _ body: (Int, consuming FieldValue) -> Void) {
        bytes.withUnsafeBytes { raw in
            guard range.lowerBound >= 0, range.upperBound <= raw.count else { return }
            var r = RawReader(raw, range)
            while !r.atEnd {
                let h = r.varint()
                guard !r.failed, h >> 3 < UInt64(UInt16.max), let tag = Tag(rawValue: UInt8(h & 7) + 1) else { return }
                let slot = Int(h >> 3)
                if let only, slot >= only.count || !only[slot] {
                    skip(tag, &r)
                    guard !r.failed else { return }
                    continue
                }
                let v = value(tag, &r)
                guard !r.failed else { return }
                body(slot, v)
            }
        }
    }

    /// Reads past a value tagged `tag` (its bytes not looked at, no string made).
    @inline(__always) static func skip(_ tag: Tag, _ r: inout RawReader) { skip(raw: tag.rawValue, &r) }

    /// The same, by the tag's raw value (one that is no tag's reads nothing).
    @inline(__always) static func skip(raw tag: UInt8, _ r: inout RawReader) {
        switch tag {
        case Tag.symbols.rawValue: r.skip(Int(min(r.varint(), 256)))
        case Tag.string.rawValue: r.skip(r.length())
        case Tag.strings.rawValue: for _ in 0..<r.length() { r.skip(r.length()) }
        case 1...8: _ = r.varint()
        default: break
        }
    }

    /// Reads a value tagged `tag` (what is read past the end is zeros and empty strings, and `r` is `failed`).
    @inline(__always) static func value(_ tag: Tag, _ r: inout RawReader) -> FieldValue {
        switch tag {
        case .bool: return .bool(r.varint() != 0)
        case .int: return .int(unzigzag(r.varint()))
        case .symbol: return .symbol(Symbol(UInt16(truncatingIfNeeded: r.varint())))
        case .string: return .string(r.text(r.length()))
        case .date: return .date(Day(number: Int32(truncatingIfNeeded: unzigzag(r.varint()))))
        case .instant: return .instant(instant(code: r.varint()))
        case .symbols:
            var set = SymbolSet()
            for _ in 0..<Int(min(r.varint(), 256)) { set.insert(Symbol(UInt16(r.u8()))) }
            return .symbols(set)
        case .strings:
            let n = r.length()
            return .strings((0..<n).map { _ in r.text(r.length()) })
        }
    }
}

/// Reads packed fields from raw bytes: past the end, or on a length longer than what is left, it reads zeros and
/// empty strings and is `failed`.
struct RawReader {
    let raw: UnsafeRawBufferPointer
    var at: Int
    let end: Int
    private(set) var failed = false

    init(_ raw: UnsafeRawBufferPointer, _ range: Range<Int>) {
        self.raw = raw
        at = range.lowerBound
        end = range.upperBound
    }

    var atEnd: Bool { at >= end }

    @inline(__always) mutating func u8() -> UInt8 {
        guard at < end else { failed = true; return 0 }
        defer { at += 1 }
        return raw[at]
    }

    /// A varint (7 bits a byte, low first); a tenth byte ends it whatever it holds.
    @inline(__always) mutating func varint() -> UInt64 {
        // Most are one byte (slots' heads, symbols, lengths).
        if at < end, raw[at] < 0x80 {
            defer { at += 1 }
            return UInt64(raw[at])
        }
        return longVarint()
    }

    /// A varint of more than one byte (or one past the end).
    mutating func longVarint() -> UInt64 {
        var x: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = u8()
            x |= UInt64(b & 0x7F) << shift
            if b < 0x80 || shift >= 63 || failed { return x }
            shift += 7
        }
    }

    /// A length as a varint, bounded by the bytes left.
    @inline(__always) mutating func length() -> Int {
        let n = varint()
        guard n <= UInt64(end - min(at, end)) else { failed = true; return 0 }
        return Int(n)
    }

    mutating func skip(_ n: Int) {
        guard n <= end - at else { failed = true; at = end; return }
        at += n
    }

    /// The next `n` bytes as UTF-8.
    mutating func text(_ n: Int) -> String {
        guard n <= end - at else { failed = true; return "" }
        defer { at += n }
        return String(decoding: UnsafeRawBufferPointer(rebasing: raw[at..<(at + n)]), as: UTF8.self)
    }
}

/// Writes at a raw pointer the caller made room for.
struct RawWriter {
    var p: UnsafeMutableRawPointer

    @inline(__always) mutating func byte(_ b: UInt8) {
        p.storeBytes(of: b, as: UInt8.self)
        p += 1
    }

    /// A varint: 7 bits a byte, low first.
    @inline(__always) mutating func varint(_ x: UInt64) {
        var x = x
        while x >= 0x80 {
            byte(UInt8(truncatingIfNeeded: x) | 0x80)
            x >>= 7
        }
        byte(UInt8(x))
    }

    /// A string's UTF-8 after its length as a varint.
    mutating func text(_ s: String) {
        let n = s.utf8.count
        varint(UInt64(n))
        let to = p
        let copied: Void? = s.utf8.withContiguousStorageIfAvailable { b in
            if let from = b.baseAddress, n > 0 { to.copyMemory(from: from, byteCount: n) }
        }
        if copied == nil {
            var q = p
            for c in s.utf8 {
                q.storeBytes(of: c, as: UInt8.self)
                q += 1
            }
        }
        p += n
    }
}
