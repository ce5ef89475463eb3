import VigilContract

/// The fields of one event as the rules read them: a decoded `EventRecord` (the live path, the explainer), or a
/// timeline event's packed fields read where they are (`PackedRecord`: a re-derivation and a fold).
protocol FieldReader {
    subscript(slot: Int) -> FieldValue { get }
    /// The symbol in `slot` (nil when it holds something else or nothing).
    func symbol(at slot: Int) -> Symbol?
    func int(at slot: Int) -> Int64?
    func bool(at slot: Int) -> Bool?
    func date(at slot: Int) -> Day?
    func instant(at slot: Int) -> Instant?
    /// Whether `slot` holds a value.
    func has(_ slot: Int) -> Bool
}

extension EventRecord: FieldReader {
    func date(at slot: Int) -> Day? { self[slot].date }
    func instant(at slot: Int) -> Instant? { self[slot].instant }
}

/// A timeline event's fields, read from its child's timeline buffer: one pass over the packed fields
/// (`PackedFields`) that keeps, per slot this pack reads, a number value as a word and where any other value is, and
/// the event's envelope from its reference. A string is made only when a rule reads it.
///
/// What it replaces: an `EventRecord` rebuilt for every event of a re-derivation, each read field decoded into a
/// `FieldValue` (a string made for every string field) and swapped into the record, the slots cleared again for
/// the next event. That was about a quarter of a late record's instructions (callgrind, `vigil-bench late`).
struct PackedRecord: FieldReader {
    /// A slot's value: its tag (`PackedFields.Tag`'s raw value; 0 for none), and a number value itself (a bool as
    /// 0 or 1, a symbol's id, a date's day number, an instant's microseconds) or where another value starts in
    /// `bytes` (the envelope's two strings: `Cell.eventId`, `Cell.childId`). And whether the slot is one whose
    /// fields are kept (what the pack reads; the envelope's never, its cells are the reference's): in the cell's
    /// padding, not in an array beside it that every copy of the record would retain.
    struct Cell {
        var word: Int64 = 0
        var tag: UInt8 = 0
        var kept = false
        static let eventId: Int64 = -1
        static let childId: Int64 = -2
    }
    private var cells: [Cell]
    /// The slots of fields `cells` holds, each once: the first `indexedCount`.
    private var indexed: [Int32]
    private var indexedCount = 0
    /// The buffer the event's fields are in, and where they end.
    private var bytes: [UInt8] = []
    private var end = 0
    /// The event's id and its child (the envelope's strings).
    private var eventId = ""
    private var child = ""
    private let typeSlot: Int, agencySlot: Int, occurredAtSlot: Int

    /// A record for events of contract `c` that keeps the fields in the slots `reading` marks (the others are
    /// skipped over).
    init(_ c: EventContract, reading: [Bool]) {
        cells = (0..<c.slotCount).map { Cell(kept: $0 < reading.count && reading[$0]) }
        for s in [c.typeSlot, c.occurredAtSlot, c.agencySlot] { cells[s].kept = false }
        indexed = [Int32](repeating: 0, count: c.slotCount)
        typeSlot = c.typeSlot
        agencySlot = c.agencySlot
        occurredAtSlot = c.occurredAtSlot
        cells[c.eventIdSlot] = Cell(word: Cell.eventId, tag: PackedFields.Tag.string.rawValue)
        cells[c.childIdSlot] = Cell(word: Cell.childId, tag: PackedFields.Tag.string.rawValue)
    }

    /// Indexes the event `ref` of `child`, its packed fields at `range` of `bytes`: of them, those in the slots it
    /// reads. A slot packed twice reads as the later value, as it did set into a record. Stops at the first field
    /// that is not whole, the fields before it indexed.
    mutating func index(_ bytes: [UInt8], _ range: Range<Int>, ref: EventRef, child: String) {
        self.bytes = bytes
        eventId = ref.eventId
        self.child = child
        let whole = range.lowerBound >= 0 && range.upperBound <= bytes.count
        end = whole ? range.upperBound : 0
        let cleared = indexedCount
        let (typeSlot, agencySlot, occurredAtSlot) = (self.typeSlot, self.agencySlot, self.occurredAtSlot)
        // Through the arrays' storage: through their subscripts, each write checked the array unique and in range.
        indexedCount = cells.withUnsafeMutableBufferPointer { cells in
            indexed.withUnsafeMutableBufferPointer { indexed in
                for s in indexed[..<cleared] { cells[Int(s)].tag = 0 }
                cells[typeSlot] = Cell(word: Int64(ref.type.id), tag: PackedFields.Tag.symbol.rawValue)
                cells[agencySlot] = Cell(word: Int64(ref.agency.id), tag: PackedFields.Tag.symbol.rawValue)
                cells[occurredAtSlot] = Cell(word: ref.occurredAt.micros, tag: PackedFields.Tag.instant.rawValue)
                guard whole else { return 0 }
                var n = 0
                bytes.withUnsafeBytes { raw in
                    var r = RawReader(raw, range)
                    while !r.atEnd {
                        let h = r.varint()
                        // Three bits: always a tag.
                        let tag = UInt8(truncatingIfNeeded: h & 7) + 1
                        guard !r.failed, h >> 3 < UInt64(UInt16.max) else { return }
                        let slot = Int(h >> 3)
                        let word: Int64
                        switch tag {
                        case PackedFields.Tag.bool.rawValue: word = r.varint() != 0 ? 1 : 0
                        case PackedFields.Tag.int.rawValue: word = PackedFields.unzigzag(r.varint())
                        case PackedFields.Tag.symbol.rawValue: word = Int64(UInt16(truncatingIfNeeded: r.varint()))
                        case PackedFields.Tag.date.rawValue: word = Int64(Int32(truncatingIfNeeded: PackedFields.unzigzag(r.varint())))
                        case PackedFields.Tag.instant.rawValue: word = PackedFields.instant(code: r.varint()).micros
                        default:
                            word = Int64(r.at)
                            PackedFields.skip(raw: tag, &r)
                        }
                        guard !r.failed else { return }
                        guard slot < cells.count, cells[slot].kept else { continue }
                        if cells[slot].tag == 0 {
                            indexed[n] = Int32(truncatingIfNeeded: slot)
                            n += 1
                        }
                        cells[slot].word = word
                        cells[slot].tag = tag
                    }
                }
                return n
            }
        }
    }

    /// Lets go of the buffer (so that the child holding it can change it without copying it).
    mutating func release() {
        bytes = []
        end = 0
    }

    subscript(slot: Int) -> FieldValue {
        let c = cells[slot]
        switch c.tag {
        case 0: return .missing
        case PackedFields.Tag.bool.rawValue: return .bool(c.word != 0)
        case PackedFields.Tag.int.rawValue: return .int(c.word)
        case PackedFields.Tag.symbol.rawValue: return .symbol(Symbol(UInt16(truncatingIfNeeded: c.word)))
        case PackedFields.Tag.date.rawValue: return .date(Day(number: Int32(truncatingIfNeeded: c.word)))
        case PackedFields.Tag.instant.rawValue: return .instant(Instant(micros: c.word))
        default:
            if c.word == Cell.eventId { return .string(eventId) }
            if c.word == Cell.childId { return .string(child) }
            guard let tag = PackedFields.Tag(rawValue: c.tag), c.word >= 0, c.word <= end, end <= bytes.count else { return .missing }
            return bytes.withUnsafeBytes { raw in
                var r = RawReader(raw, Int(c.word)..<end)
                return PackedFields.value(tag, &r)
            }
        }
    }

    /// The word in `slot` when its value is tagged `tag`.
    @inline(__always) private func word(_ slot: Int, _ tag: PackedFields.Tag) -> Int64? {
        let c = cells[slot]
        return c.tag == tag.rawValue ? c.word : nil
    }

    func symbol(at slot: Int) -> Symbol? { word(slot, .symbol).map { Symbol(UInt16(truncatingIfNeeded: $0)) } }
    func int(at slot: Int) -> Int64? { word(slot, .int) }
    func bool(at slot: Int) -> Bool? { word(slot, .bool).map { $0 != 0 } }
    func date(at slot: Int) -> Day? { word(slot, .date).map { Day(number: Int32(truncatingIfNeeded: $0)) } }
    func instant(at slot: Int) -> Instant? { word(slot, .instant).map { Instant(micros: $0) } }
    func has(_ slot: Int) -> Bool { cells[slot].tag != 0 }
}
