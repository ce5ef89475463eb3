import VigilContract

/// Little-endian bytes written and read back, for compact state (timeline events, packed fields).
struct ByteWriter {
    var bytes: [UInt8] = []
    /// The last topic written by number and name (a state's positions are nearly all on one topic).
    var lastTopic: (id: UInt32, name: String)?
    /// Values are written in `LegacyPackedFields`' layout (a record of an earlier version, for tests).
    var legacyFields = false

    init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    mutating func u8(_ x: UInt8) { bytes.append(x) }
    mutating func u16(_ x: UInt16) { withUnsafeBytes(of: x.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ x: UInt64) { withUnsafeBytes(of: x.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func i64(_ x: Int64) { u64(UInt64(bitPattern: x)) }
    /// A string of at most 65,535 bytes (longer ones are cut).
    mutating func text(_ s: String) {
        if let done = s.utf8.withContiguousStorageIfAvailable({ b -> Bool in
            let n = min(b.count, Int(UInt16.max))
            u16(UInt16(n))
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: b[..<n]))
            return true
        }), done { return }
        let b = Array(s.utf8.prefix(Int(UInt16.max)))
        u16(UInt16(b.count))
        bytes += b
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
        guard at + 2 <= end else { return UInt16(u8()) | UInt16(u8()) << 8 }
        defer { at += 2 }
        return UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8
    }
    mutating func u64() -> UInt64 {
        guard at + 8 <= end else {
            var x: UInt64 = 0
            for k in 0..<8 { x |= UInt64(u8()) << (8 * UInt64(k)) }
            return x
        }
        defer { at += 8 }
        return bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
    }
    mutating func i64() -> Int64 { Int64(bitPattern: u64()) }
    mutating func text() -> String {
        let n = Int(u16())
        guard at + n <= end else { failed = true; return "" }
        defer { at += n }
        return String(decoding: bytes[at..<(at + n)], as: UTF8.self)
    }
    mutating func failed_() { failed = true }

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
