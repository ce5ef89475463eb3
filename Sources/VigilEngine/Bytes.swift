import VigilContract

/// Little-endian bytes written and read back, for compact state (timeline events, packed fields).
struct ByteWriter {
    var bytes: [UInt8] = []
    /// The last topic written by number and name (a state's positions are nearly all on one topic).
    var lastTopic: (id: UInt32, name: String)?
    /// Values are written in `LegacyPackedFields`' layout (a record of an earlier version, for tests).
    var legacyFields = false
    /// Integers as varints (signed ones zigzagged), instants on a whole second by their seconds, topics by
    /// their place in the record (state version 4 on). Fixed widths otherwise.
    var compact = false
    /// With `compact`, the topics written so far, in order: a position names its topic by place, 1-based.
    var topics: [UInt32] = []

    init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    mutating func u8(_ x: UInt8) { bytes.append(x) }
    mutating func u16(_ x: UInt16) {
        if compact { varint(UInt64(x)) } else { withUnsafeBytes(of: x.littleEndian) { bytes.append(contentsOf: $0) } }
    }
    mutating func u64(_ x: UInt64) { if compact { varint(x) } else { fixed64(x) } }
    mutating func i64(_ x: Int64) { u64(compact ? PackedFields.zigzag(x) : UInt64(bitPattern: x)) }
    /// Eight bytes whatever the layout: a hash (a varint of one takes ten).
    mutating func fixed64(_ x: UInt64) { withUnsafeBytes(of: x.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func varint(_ x: UInt64) {
        if x < 0x80 { return bytes.append(UInt8(x)) }
        // Written into a word pair by packed fields' writer, then appended at once (an append a byte checks the
        // array's uniqueness each time); a varint takes at most ten bytes.
        var word: (UInt64, UInt64) = (0, 0)
        let n = withUnsafeMutableBytes(of: &word) { b -> Int in
            guard let base = b.baseAddress else { return 0 }
            var w = RawWriter(p: base)
            w.varint(x)
            return w.p - base
        }
        withUnsafeBytes(of: &word) { bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[..<n])) }
    }
    /// An instant: compact, as packed fields write one (`PackedFields.instantCode`: by its seconds when it falls
    /// on a whole one, five bytes for this century, not eight).
    mutating func instant(_ t: Instant) {
        if compact { varint(PackedFields.instantCode(t)) } else { i64(t.micros) }
    }
    /// A string of at most 65,535 bytes (longer ones are cut).
    mutating func text(_ s: String) {
        var s = s
        s.withUTF8 { text(utf8: $0) }
    }
    /// A string's UTF-8 as `text` writes it (at most 65,535 bytes of it).
    mutating func text(utf8 b: UnsafeBufferPointer<UInt8>) {
        let n = min(b.count, Int(UInt16.max))
        u16(UInt16(n))
        bytes.append(contentsOf: UnsafeBufferPointer(rebasing: b[..<n]))
    }
}

/// Reads what `ByteWriter` wrote; every read past the end yields zero and marks the reader failed.
struct ByteReader {
    let bytes: [UInt8]
    var at = 0
    private(set) var failed = false
    /// The last topic read, by name and number (a state's positions are nearly all on one topic).
    var lastTopic: (name: String, id: UInt32)?
    /// Values are in `LegacyPackedFields`' layout (a record of an earlier version).
    var legacyFields = false
    /// Written by a `compact` `ByteWriter` (state version 4 on).
    var compact = false
    /// With `compact`, the topics read so far, in order.
    var topics: [UInt32] = []

    /// Where reading stops: the end of `bytes`, or of the range given.
    let end: Int

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        end = bytes.count
    }

    /// Reads `range` of `bytes` (which must lie within them) as if it were all there is.
    init(_ bytes: [UInt8], _ range: Range<Int>) {
        self.bytes = bytes
        at = range.lowerBound
        end = range.upperBound
    }

    var atEnd: Bool { at >= end }

    mutating func u8() -> UInt8 {
        guard at < end else { failed = true; return 0 }
        defer { at += 1 }
        return bytes[at]
    }
    mutating func u16() -> UInt16 {
        if compact {
            let x = varint()
            guard x <= UInt64(UInt16.max) else { failed = true; return 0 }
            return UInt16(x)
        }
        guard at + 2 <= end else { return UInt16(u8()) | UInt16(u8()) << 8 }
        defer { at += 2 }
        return UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8
    }
    mutating func u64() -> UInt64 { compact ? varint() : fixed64() }
    mutating func i64() -> Int64 { compact ? PackedFields.unzigzag(varint()) : Int64(bitPattern: fixed64()) }
    mutating func text() -> String { String(decoding: bytes[textRange()], as: UTF8.self) }
    /// Where the next text's bytes are (what `text()` reads), skipped.
    mutating func textRange() -> Range<Int> {
        let n = Int(u16())
        guard at + n <= end else { failed = true; return at..<at }
        defer { at += n }
        return at..<(at + n)
    }
    mutating func failed_() { failed = true }

    /// What `ByteWriter.fixed64` wrote.
    mutating func fixed64() -> UInt64 {
        guard at + 8 <= end else {
            var x: UInt64 = 0
            for k in 0..<8 { x |= UInt64(u8()) << (8 * UInt64(k)) }
            return x
        }
        defer { at += 8 }
        return bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
    }

    /// A varint of at most ten bytes (a longer one, or one past 64 bits, fails the reader).
    mutating func varint() -> UInt64 {
        // Most are one byte (counts, lengths, small numbers).
        if at < end, bytes[at] < 0x80 {
            defer { at += 1 }
            return UInt64(bytes[at])
        }
        var x: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard at < end, shift < 64 else { failed = true; return 0 }
            let b = bytes[at]
            at += 1
            guard shift < 63 || b <= 1 else { failed = true; return 0 }
            x |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return x }
            shift += 7
        }
    }

    /// What `ByteWriter.instant` wrote.
    mutating func instant() -> Instant { compact ? PackedFields.instant(code: varint()) : Instant(micros: i64()) }

    /// Moves past `n` bytes (all of them there, or the reader fails).
    mutating func skip(_ n: Int) {
        guard at + n <= end else { failed = true; at = end; return }
        at += n
    }

    mutating func rest() -> [UInt8] {
        defer { at = end }
        return at < end ? Array(bytes[at..<end]) : []
    }
}

/// Zeros to append from (`appendZeros`).
private let zeroPage = [UInt8](repeating: 0, count: 4096)

extension Array where Element == UInt8 {
    /// Appends `n` zeros, a page at a time from a page of zeros: an array slice is appended by one copy, where
    /// `append(contentsOf: repeatElement(0, count: n))` took the generic path (about 330 instructions a call
    /// however few the zeros; callgrind, 2026-12-07).
    mutating func appendZeros(_ n: Int) {
        var left = n
        while left > 0 {
            let k = Swift.min(left, zeroPage.count)
            append(contentsOf: zeroPage[..<k])
            left -= k
        }
    }
}
