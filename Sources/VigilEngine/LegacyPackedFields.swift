import VigilContract

/// The first layout of packed fields (changelog records of versions 1 and 2, timeline events in JSON of
/// version 1): per field its slot (2 bytes), a tag (1 byte) and the value (fixed size, or a 2-byte length
/// and bytes). Read to migrate state written by an earlier Vigil (`PackedFields.repack`); written only for
/// tests of that migration.
enum LegacyPackedFields {
    typealias Tag = PackedFields.Tag

    /// The bytes of one field.
    static func bytes(slot: UInt16, _ v: FieldValue) -> [UInt8] {
        let size = Self.size(v)
        guard size > 0 else { return [] }
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            guard let base = buffer.baseAddress else { return }
            _ = Self.write(slot, v, to: UnsafeMutableRawPointer(base))
            count = size
        }
    }

    /// The bytes `write` takes for a field with value `v` (none for a missing value).
    static func size(_ v: FieldValue) -> Int {
        switch v {
        case .missing: return 0
        case .bool: return 4
        case .symbol: return 5
        case .int, .date, .instant: return 11
        case .string(let s): return 5 + min(s.utf8.count, Int(UInt16.max))
        case .symbols: return 35
        case .strings(let a):
            var n = 5
            for s in a.prefix(Int(UInt16.max)) { n += 2 + min(s.utf8.count, Int(UInt16.max)) }
            return n
        }
    }

    /// Writes a field (its slot, a tag, the value; little-endian, a string as a 2-byte length and its UTF-8 cut
    /// at 65,535 bytes, at most 65,535 strings) at `p`, which has `size(v)` bytes; returns the byte after it.
    static func write(_ slot: UInt16, _ v: FieldValue, to p: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        var p = p
        func u8(_ x: UInt8) { p.storeBytes(of: x, as: UInt8.self); p += 1 }
        func u16(_ x: UInt16) { p.storeBytes(of: x.littleEndian, as: UInt16.self); p += 2 }
        func u64(_ x: UInt64) { p.storeBytes(of: x.littleEndian, as: UInt64.self); p += 8 }
        func text(_ s: String) {
            var s = s
            s.withUTF8 { b in
                let n = min(b.count, Int(UInt16.max))
                u16(UInt16(n))
                if n > 0, let from = b.baseAddress { p.copyMemory(from: from, byteCount: n) }
                p += n
            }
        }
        func head(_ tag: Tag) { u16(slot); u8(tag.rawValue) }
        switch v {
        case .missing: break
        case .bool(let b): head(.bool); u8(b ? 1 : 0)
        case .int(let i): head(.int); u64(UInt64(bitPattern: i))
        case .symbol(let s): head(.symbol); u16(s.id)
        case .string(let s): head(.string); text(s)
        case .date(let d): head(.date); u64(UInt64(bitPattern: Int64(d.number)))
        case .instant(let t): head(.instant); u64(UInt64(bitPattern: t.micros))
        case .symbols(let set): head(.symbols); u64(set.w0); u64(set.w1); u64(set.w2); u64(set.w3)
        case .strings(let a):
            head(.strings)
            u16(UInt16(min(a.count, Int(UInt16.max))))
            for s in a.prefix(Int(UInt16.max)) { text(s) }
        }
        return p
    }

    /// Calls `body` with each slot and value of the fields in `range` of `bytes`, in the order written.
    static func forEach(_ bytes: [UInt8], _ range: Range<Int>, _ body: (Int, FieldValue) -> Void) {
        var r = ByteReader(bytes, range)
        while !r.atEnd {
            let slot = Int(r.u16())
            guard let tag = Tag(rawValue: r.u8()), !r.failed else { return }
            let v: FieldValue
            switch tag {
            case .bool: v = .bool(r.u8() != 0)
            case .int: v = .int(r.i64())
            case .symbol: v = .symbol(Symbol(r.u16()))
            case .string: v = .string(r.text())
            case .date: v = .date(Day(number: Int32(truncatingIfNeeded: r.i64())))
            case .instant: v = .instant(Instant(micros: r.i64()))
            case .symbols:
                var set = SymbolSet()
                set.w0 = r.u64(); set.w1 = r.u64(); set.w2 = r.u64(); set.w3 = r.u64()
                v = .symbols(set)
            case .strings:
                let n = Int(r.u16())
                v = .strings((0..<n).map { _ in r.text() })
            }
            guard !r.failed else { return }
            body(slot, v)
        }
    }
}
