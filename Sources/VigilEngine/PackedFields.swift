import VigilContract

/// The captured fields of a timeline event, packed in one allocation: per field its slot (2 bytes), a tag
/// (1 byte) and the value (fixed size, or a length and bytes). Decoded only when the child is re-derived.
/// In JSON, base64.
struct PackedFields: Sendable, Codable {
    var bytes: [UInt8] = []

    enum Tag: UInt8 { case bool = 1, int, symbol, string, date, instant, symbols, strings }

    init(bytes: [UInt8] = []) { self.bytes = bytes }

    /// The fields of `r` in slots that `keep` marks and that have a value.
    init(_ r: EventRecord, keep: [Bool]) {
        for s in r.writtenSlots where keep[Int(s)] {
            let v = r[Int(s)]
            guard !v.isMissing else { continue }
            append(UInt16(s), v)
        }
    }

    mutating func append(_ slot: UInt16, _ v: FieldValue) {
        // The bytes move into the writer and back (a copy would be copied again on its first append).
        var w = ByteWriter()
        swap(&w.bytes, &bytes)
        defer { swap(&w.bytes, &bytes) }
        switch v {
        case .missing: return
        case .bool(let b): w.u16(slot); w.u8(Tag.bool.rawValue); w.u8(b ? 1 : 0)
        case .int(let i): w.u16(slot); w.u8(Tag.int.rawValue); w.i64(i)
        case .symbol(let s): w.u16(slot); w.u8(Tag.symbol.rawValue); w.u16(s.id)
        case .string(let s): w.u16(slot); w.u8(Tag.string.rawValue); w.text(s)
        case .date(let d): w.u16(slot); w.u8(Tag.date.rawValue); w.i64(Int64(d.number))
        case .instant(let t): w.u16(slot); w.u8(Tag.instant.rawValue); w.i64(t.micros)
        case .symbols(let set): w.u16(slot); w.u8(Tag.symbols.rawValue); w.u64(set.w0); w.u64(set.w1); w.u64(set.w2); w.u64(set.w3)
        case .strings(let a):
            w.u16(slot); w.u8(Tag.strings.rawValue)
            w.u16(UInt16(min(a.count, Int(UInt16.max))))
            for s in a.prefix(Int(UInt16.max)) { w.text(s) }
        }
    }

    /// Calls `body` with each slot and value, in the order written.
    func forEach(_ body: (Int, FieldValue) -> Void) {
        var r = ByteReader(bytes)
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

    init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let b = Base64.decode(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "timeline fields are not base64"))
        }
        bytes = b
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(Base64.encode(bytes))
    }
}
