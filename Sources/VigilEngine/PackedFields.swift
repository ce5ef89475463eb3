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
        func u16(_ x: UInt16) { bytes += [UInt8(x & 255), UInt8(x >> 8)] }
        func u64(_ x: UInt64) { for k in 0..<8 { bytes.append(UInt8(x >> (8 * UInt64(k)) & 255)) } }
        func text(_ s: String) {
            let b = Array(s.utf8.prefix(Int(UInt16.max)))
            u16(UInt16(b.count))
            bytes += b
        }
        u16(slot)
        switch v {
        case .missing: bytes.removeLast(2)
        case .bool(let b): bytes += [Tag.bool.rawValue, b ? 1 : 0]
        case .int(let i): bytes.append(Tag.int.rawValue); u64(UInt64(bitPattern: i))
        case .symbol(let s): bytes.append(Tag.symbol.rawValue); u16(s.id)
        case .string(let s): bytes.append(Tag.string.rawValue); text(s)
        case .date(let d): bytes.append(Tag.date.rawValue); u64(UInt64(bitPattern: Int64(d.number)))
        case .instant(let t): bytes.append(Tag.instant.rawValue); u64(UInt64(bitPattern: t.micros))
        case .symbols(let set): bytes.append(Tag.symbols.rawValue); u64(set.w0); u64(set.w1); u64(set.w2); u64(set.w3)
        case .strings(let a):
            bytes.append(Tag.strings.rawValue)
            u16(UInt16(min(a.count, Int(UInt16.max))))
            for s in a.prefix(Int(UInt16.max)) { text(s) }
        }
    }

    /// Calls `body` with each slot and value, in the order written.
    func forEach(_ body: (Int, FieldValue) -> Void) {
        var i = 0
        let b = bytes
        func u16() -> UInt16 { defer { i += 2 }; return UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
        func u64() -> UInt64 {
            var x: UInt64 = 0
            for k in 0..<8 { x |= UInt64(b[i + k]) << (8 * UInt64(k)) }
            i += 8
            return x
        }
        func text() -> String {
            let n = Int(u16())
            defer { i += n }
            return String(decoding: b[i..<(i + n)], as: UTF8.self)
        }
        while i + 3 <= b.count {
            let slot = Int(u16())
            guard let tag = Tag(rawValue: b[i]) else { return }
            i += 1
            switch tag {
            case .bool: body(slot, .bool(b[i] != 0)); i += 1
            case .int: body(slot, .int(Int64(bitPattern: u64())))
            case .symbol: body(slot, .symbol(Symbol(u16())))
            case .string: body(slot, .string(text()))
            case .date: body(slot, .date(Day(number: Int32(truncatingIfNeeded: Int64(bitPattern: u64())))))
            case .instant: body(slot, .instant(Instant(micros: Int64(bitPattern: u64()))))
            case .symbols:
                var set = SymbolSet()
                set.w0 = u64(); set.w1 = u64(); set.w2 = u64(); set.w3 = u64()
                body(slot, .symbols(set))
            case .strings:
                let n = Int(u16())
                body(slot, .strings((0..<n).map { _ in text() }))
            }
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
