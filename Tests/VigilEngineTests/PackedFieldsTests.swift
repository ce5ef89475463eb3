import Foundation
import Testing
import VigilContract
@testable import VigilEngine

/// The packed fields of a timeline event are part of the changelog's binary record: their layout is fixed
/// (a varint of slot and tag, then the value in the fewest bytes), whatever way they are written; the layout
/// before it is still read.
@Suite struct PackedFieldsTests {
    func le(_ x: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: x >> (8 * UInt64($0))) } }
    func varint(_ x: UInt64) -> [UInt8] {
        var x = x, out: [UInt8] = []
        while x >= 0x80 { out.append(UInt8(x & 0x7F) | 0x80); x >>= 7 }
        return out + [UInt8(x)]
    }
    func zigzag(_ x: Int64) -> UInt64 { x >= 0 ? UInt64(x) * 2 : UInt64(-x) * 2 - 1 }
    func head(_ slot: UInt64, _ tag: UInt64) -> [UInt8] { varint(slot << 3 | (tag - 1)) }
    func text(_ s: String) -> [UInt8] { varint(UInt64(s.utf8.count)) + Array(s.utf8) }
    func legacyText(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count), 2) + Array(s.utf8) }

    var symbols: SymbolSet {
        var set = SymbolSet()
        set.insert(Symbol(3))
        set.insert(Symbol(200))
        return set
    }

    /// Every kind of value, with slots from one byte's worth of varint to two.
    var values: [(Int, FieldValue)] {
        [
            (7, .bool(true)), (2, .int(-5)), (9, .symbol(Symbol(258))), (1, .string("café")), (40, .date(Day(number: 19_000))),
            (5, .instant(Instant(micros: 1_700_000_000_000_000))), (6, .instant(Instant(micros: -1_500_001))), (10, .symbols(symbols)),
            (3, .strings(["a", "", "bc"])), (11, .int(Int64.min)),
        ]
    }

    func record() -> (EventRecord, [Bool]) {
        var r = EventRecord(slotCount: 42)
        for (s, v) in values { r.set(s, v) }
        r.set(41, .string("not kept"))
        var keep = [Bool](repeating: true, count: 42)
        keep[41] = false
        return (r, keep)
    }

    @Test func everyKindOfValueIsLaidOutAsTheChangelogReadsIt() {
        let (r, keep) = record()
        // Appended after what is there already, as a child's fields are.
        var bytes: [UInt8] = [9, 9]
        let n = PackedFields.append(r, keep: keep, to: &bytes)
        #expect(bytes.prefix(2) == [9, 9] && n == bytes.count - 2)
        let packed = Array(bytes.dropFirst(2))

        var expected: [UInt8] = []
        expected += head(7, 1) + [1]
        expected += head(2, 2) + varint(zigzag(-5))
        expected += head(9, 3) + varint(258)
        expected += head(1, 4) + text("café")
        expected += head(40, 5) + varint(zigzag(19_000))
        expected += head(5, 6) + varint(zigzag(1_700_000_000) << 1 | 1)  // a whole second: by its seconds
        expected += head(6, 6) + varint(zigzag(-1_500_001) << 1)  // by its microseconds
        expected += head(10, 7) + [2, 3, 200]
        expected += head(3, 8) + [3] + text("a") + text("") + text("bc")
        expected += head(11, 2) + varint(UInt64.max)
        #expect(packed == expected)
        #expect(head(40, 5).count == 2 && packed.count < 64, "a field of a slot past 15 takes two bytes to name")

        var read: [(Int, FieldValue)] = []
        PackedFields.forEach(bytes, 2..<bytes.count) { read.append(($0, $1)) }
        #expect(read.map(\.0) == values.map(\.0))
        #expect(read.map(\.1) == values.map(\.1))
        // Only some slots: the others (a string, a set and an array of strings among them) are skipped over.
        var only = [Bool](repeating: false, count: 42)
        for s in [9, 40, 3, 11] { only[s] = true }
        var some: [(Int, FieldValue)] = []
        PackedFields.forEach(bytes, 2..<bytes.count, only: only) { some.append(($0, $1)) }
        #expect(some.map(\.0) == [9, 40, 3, 11])
        #expect(some.map(\.1) == [.symbol(Symbol(258)), .date(Day(number: 19_000)), .strings(["a", "", "bc"]), .int(Int64.min)])
    }

    @Test func fieldsInTheEarlierLayoutAreRepackedToTheSameValues() {
        // The earlier layout: slot (2 bytes), tag, fixed-size values, strings with a 2-byte length.
        var old: [UInt8] = []
        old += le(7, 2) + [1, 1]
        old += le(2, 2) + [2] + le(UInt64(bitPattern: -5), 8)
        old += le(9, 2) + [3] + le(258, 2)
        old += le(1, 2) + [4] + legacyText("café")
        old += le(40, 2) + [5] + le(19_000, 8)
        old += le(5, 2) + [6] + le(1_700_000_000_000_000, 8)
        old += le(6, 2) + [6] + le(UInt64(bitPattern: -1_500_001), 8)
        old += le(10, 2) + [7] + le(symbols.w0, 8) + le(symbols.w1, 8) + le(symbols.w2, 8) + le(symbols.w3, 8)
        old += le(3, 2) + [8] + le(3, 2) + legacyText("a") + legacyText("") + legacyText("bc")
        old += le(11, 2) + [2] + le(UInt64(bitPattern: Int64.min), 8)
        let (r, keep) = record()
        var now: [UInt8] = []
        _ = PackedFields.append(r, keep: keep, to: &now)
        #expect(PackedFields.repack(legacy: [0] + old, 1..<(old.count + 1)) == now)
        #expect(PackedFields.legacy(now, 0..<now.count) == old)
    }

    @Test func aTimelineEventInJSONOfTheEarlierLayoutReadsWithItsFieldsRepacked() throws {
        let (r, keep) = record()
        var fields: [UInt8] = []
        _ = PackedFields.append(r, keep: keep, to: &fields)
        let ref = EventRef(eventId: "E1", type: Symbol(1), agency: Symbol(2), occurredAt: Instant(micros: 5))
        var w = ByteWriter()
        w.u8(1)
        w.ref(ref)
        w.u64(9)
        w.u8(1)
        w.bytes += PackedFields.legacy(fields, 0..<fields.count)
        let json = Data(("\"" + Base64.encode(w.bytes) + "\"").utf8)
        let back = try JSONDecoder().decode(TimelineEventJSON.self, from: json)
        #expect(back.ref == ref && back.arrival == 9 && back.ignored && back.fields == fields)
        // Written again, in the current layout; and read back the same.
        let again = try JSONDecoder().decode(TimelineEventJSON.self, from: JSONEncoder().encode(back))
        #expect(again.fields == fields && again.ref == ref)
    }

    @Test func aCorruptFieldStopsTheReadingWithoutATrap() {
        let (r, keep) = record()
        var fields: [UInt8] = []
        _ = PackedFields.append(r, keep: keep, to: &fields)
        // Cut anywhere, or a length past the end: whatever was whole before it is read, nothing after.
        for cut in 0..<fields.count {
            var n = 0
            PackedFields.forEach(fields, 0..<cut) { _, _ in n += 1 }
            #expect(n < values.count)
        }
        var n = 0
        PackedFields.forEach(head(1, 4) + varint(1 << 40) + [65, 66], 0..<9) { _, _ in n += 1 }
        #expect(n == 0)
    }

    @Test func aLongStringIsKeptWholeAndNothingIsKeptOfAnEmptyRecord() {
        let long = String(repeating: "x", count: 70_000)
        var r = EventRecord(slotCount: 2)
        r.set(1, .string(long))
        var packed: [UInt8] = []
        #expect(PackedFields.append(r, keep: [true, true], to: &packed) == 1 + 3 + 70_000)
        var got: FieldValue = .missing
        PackedFields.forEach(packed, 0..<packed.count) { _, v in got = v }
        #expect(got == .string(long))
        var none: [UInt8] = []
        #expect(PackedFields.append(EventRecord(slotCount: 2), keep: [true, true], to: &none) == 0 && none.isEmpty)
        #expect(PackedFields.bytes(slot: 0, .missing).isEmpty)
        #expect(PackedFields.bytes(slot: 4, .bool(false)) == [32, 0])
        // Packed in one pass into room kept from event to event: the same bytes, the room grown for the long one
        // and kept for the next, which then starts at its beginning.
        var room: [UInt8] = []
        var short = EventRecord(slotCount: 2)
        short.set(0, .int(-3))
        short.set(1, .string("ab"))
        var shortBytes: [UInt8] = []
        _ = PackedFields.append(short, keep: [true, true], to: &shortBytes)
        for (record, bytes) in [(short, shortBytes), (r, packed), (short, shortBytes), (EventRecord(slotCount: 2), [])] {
            let n = PackedFields.pack(record, keep: [true, true], into: &room)
            #expect(Array(room[..<n]) == bytes)
        }
        #expect(room.count >= 1 + 3 + 70_000)
        let onlySecond = PackedFields.pack(short, keep: [false, true], into: &room)
        #expect(Array(room[..<onlySecond]) == PackedFields.bytes(slot: 1, .string("ab")))
    }

    @Test func aChildsIdsAndFieldsStayTheirEventsWhenTheOldestGoAndTheirBytesAreReclaimed() {
        var child = ChildState(id: "C1")
        var r = EventRecord(slotCount: 3)
        var refs: [EventRef] = []
        for i in 0..<10 {
            r.reset()
            r.set(1, .int(Int64(i)))
            if i % 2 == 0 { r.set(2, .string(String(repeating: "s", count: i * 10))) }
            // Ids short enough to be held inline in a String, and one that is not.
            let id = i == 8 ? "E-" + String(repeating: "x", count: 40) : "E\(i)"
            refs.append(EventRef(eventId: id, type: Symbol(1), agency: Symbol(UInt16(i)), occurredAt: Instant(micros: Int64(i)),
                                 position: i % 3 == 0 ? nil : SourcePosition(topic: "t\(i % 2)", partition: Int32(i), offset: Int64(i) * 1_000)))
            child.append(keep(&child, refs[i], r, [false, true, true]))
        }
        let before = child.fieldBytes.count
        for _ in 0..<7 { _ = child.removeOldest() }
        child.reclaimFields()
        #expect(child.fieldBytes.count < before / 2, "the bytes of the events gone are given back")
        child.setIgnored(1, true)
        #expect(child.timeline.map(\.ignored) == [false, true, false])
        #expect(child.timeline.map { child.ref($0) } == Array(refs[7...]))
        let t = child.timeline, bytes = child.fieldBytes
        #expect(t[1].hasId(refs[8].eventId, in: bytes) && !t[1].hasId(refs[7].eventId, in: bytes))
        #expect(!t[0].sameId(as: t[1], in: bytes) && t[2].sameId(as: t[2], in: bytes))
        for (k, e) in child.timeline.enumerated() {
            let i = 7 + k
            var got: [Int: FieldValue] = [:]
            PackedFields.forEach(child.fieldBytes, e.fields(in: child.fieldBytes)) { got[$0] = $1 }
            #expect(got[1] == .int(Int64(i)) && got[2] == (i % 2 == 0 ? .string(String(repeating: "s", count: i * 10)) : nil), "event \(i)")
        }
    }

    /// A timeline's events and their bytes share one buffer (events from the front, bytes from the back): events
    /// inserted anywhere, across many growths, each read back their own position, id and fields; a copy of the
    /// child taken on the way is not changed by what is done to the child after it.
    @Test func aTimelinesEventsAndBytesShareOneBufferAndReadBackWhereverInsertedAndWhenCopied() {
        var child = ChildState(id: "C1")
        var r = EventRecord(slotCount: 3)
        var expected: [(ref: EventRef, value: Int64)] = []
        var copy: ChildState?
        var copied: [(ref: EventRef, value: Int64)] = []
        for i in 0..<300 {
            r.reset()
            r.set(1, .int(Int64(i) * 1_000_003))
            r.set(2, .string(String(repeating: "v", count: i % 37)))
            let ref = EventRef(eventId: "E\(i)-" + String(repeating: "i", count: i % 23), type: Symbol(UInt16(i % 5)), agency: Symbol(UInt16(i % 7)),
                               occurredAt: Instant(micros: Int64(i)), position: i % 4 == 0 ? nil : SourcePosition(topic: "t", partition: Int32(i % 3), offset: Int64(i) << 20))
            let e = keep(&child, ref, r, [false, true, true])
            // At the end, the front, or somewhere between.
            let at = i % 3 == 0 ? child.timeline.count : i % 3 == 1 ? 0 : child.timeline.count / 2
            child.insert(e, at: at)
            expected.insert((ref, Int64(i) * 1_000_003), at: at)
            if i == 150 { copy = child; copied = expected }
        }
        func check(_ c: ChildState, _ want: [(ref: EventRef, value: Int64)]) {
            #expect(c.timeline.count == want.count)
            #expect(c.timeline.map { c.ref($0) } == want.map(\.ref))
            for (e, w) in zip(c.timeline, want) {
                var got: [Int: FieldValue] = [:]
                PackedFields.forEach(c.fieldBytes, e.fields(in: c.fieldBytes)) { got[$0] = $1 }
                #expect(got[1] == .int(w.value) && e.type == w.ref.type && e.agency == w.ref.agency && e.at == w.ref.occurredAt)
            }
        }
        check(child, expected)
        if let copy { check(copy, copied) }
        // The oldest removed, the bytes given back, the rest as they were.
        for _ in 0..<200 { _ = child.removeOldest() }
        child.reclaimFields()
        expected.removeFirst(200)
        check(child, expected)
        #expect(child.timeline.byteCount == child.timeline.liveBytes)
    }

    /// A child's domain and its changed mark share a word: each set leaves the other as it was.
    @Test func aChildsDomainAndChangedMarkAreKeptApart() {
        var child = ChildState(id: "C1")
        child.domain = Int32.max
        #expect(!child.isChanged && child.domain == Int32.max)
        child.markChanged()
        #expect(child.isChanged && child.domain == Int32.max)
        child.domain = 7
        #expect(child.isChanged && child.domain == 7)
        child.dirty = false
        #expect(!child.isChanged && child.domain == 7)
        child.domain = -1
        #expect(child.domain == 0, "a domain is an input partition: none is negative")
    }

    /// An event's position and id are kept in its child's bytes before its fields (varints): any position, with
    /// or without one, and any id read back as they were kept, beside the same fields.
    @Test func anEventsPositionAndIdReadBackFromItsChildsBytes() {
        var child = ChildState(id: "C1")
        var r = EventRecord(slotCount: 2)
        r.set(1, .int(-7))
        let positions: [SourcePosition?] = [
            nil, SourcePosition(topic: "t", partition: 0, offset: 0), SourcePosition(topic: "t", partition: Int32.max, offset: Int64.max),
            SourcePosition(topic: "t", partition: -1, offset: -1), SourcePosition(topic: "u", partition: 127, offset: 128),
        ]
        let ids = ["", "E1", String(repeating: "é", count: 128), "🧒-" + String(repeating: "9", count: 300)]
        var refs: [EventRef] = []
        for (k, p) in positions.enumerated() {
            for (j, id) in ids.enumerated() {
                let ref = EventRef(eventId: id, type: Symbol(UInt16(k)), agency: Symbol(UInt16(j)), occurredAt: Instant(micros: Int64(k * 10 + j)), position: p)
                refs.append(ref)
                child.append(keep(&child, ref, r, [false, true]))
            }
        }
        #expect(child.timeline.map { child.ref($0) } == refs)
        #expect(child.timeline.map(\.idHash) == refs.map { TimelineEvent.idHash(stableHash($0.eventId)) })
        for e in child.timeline {
            var got: [Int: FieldValue] = [:]
            PackedFields.forEach(child.fieldBytes, e.fields(in: child.fieldBytes)) { got[$0] = $1 }
            #expect(got == [1: .int(-7)])
            let fields = e.fields(in: child.fieldBytes).count, idLength = child.ref(e).eventId.utf8.count
            #expect(e.bytes(in: child.fieldBytes).count == ChildState.headBytes(child.ref(e).position, idLength: idLength, fields: fields) + idLength + fields)
        }
        // Read back from the changelog's bytes (the same keeping, from a record) too.
        var other = ChildState(id: "C1")
        for ref in refs { other.append(other.keep(ref, fields: [], ignored: false)) }
        #expect(other.timeline.map { other.ref($0) } == refs && other.timeline.map(\.idHash) == child.timeline.map(\.idHash))
    }

    @Test func aChildHoldsItsHistoryOnlyWhileThereIsSome() {
        var child = ChildState(id: "C1")
        child.emitted.removeAll()
        child.folded.removeAll { _ in true }
        #expect(!child.holdsHistory, "looking at an empty list makes none")
        let ref = EventRef(eventId: "E1", type: Symbol(1), agency: Symbol(1), occurredAt: Instant(micros: 5))
        child.emitted.append(EmittedAlert(alertId: "a", recordId: "a", rule: 0, firedAt: ref.occurredAt, deadline: nil, trigger: ref))
        #expect(child.holdsHistory && child.emitted.count == 1 && child.base == Derivation())
        child.emitted.removeAll()
        #expect(!child.holdsHistory)
        child.base.newest = ref.occurredAt
        child.folded.append(SeenEvent(idHash: 1, at: ref.occurredAt))
        #expect(child.holdsHistory && child.base.newest == ref.occurredAt && child.folded.count == 1 && child.emitted.isEmpty)
    }

    @Test func aTimelineEventAndAReferenceToAnEventAreFixedSize() {
        // Every event of every timeline is one (its position, id and fields in its child's bytes); every window
        // entry, state and expectation holds a reference.
        #expect(MemoryLayout<TimelineEvent>.size == 18, "as a timeline's buffer holds it")
        // Every child's: what only some children hold is apart.
        #expect(MemoryLayout<ChildState>.stride == 96)
        #expect(MemoryLayout<EventRef>.stride == 48)
        // Their fields after the reference, in the bytes its layout leaves at its end; their times its time.
        #expect(MemoryLayout<WindowEntry>.stride == 72)
        #expect(MemoryLayout<PendingExpectation>.stride == 96)
        #expect(MemoryLayout<StateEntry>.stride == 104)
    }

    /// A timeline event's fields read in place (`PackedRecord`, what a re-derivation and a fold read) are what a
    /// record filled from them reads (the fields asked for, and the envelope from the event's reference), through
    /// every accessor the rules use: whole, cut short, and for a second event indexed after a first.
    @Test func aPackedRecordReadsWhatARecordFilledFromTheSameBytesReads() {
        let c = EventContract.embedded
        let envelope = [c.eventIdSlot, c.typeSlot, c.occurredAtSlot, c.agencySlot, c.childIdSlot]
        let free = (0..<c.slotCount).filter { !envelope.contains($0) }
        var first = EventRecord(slotCount: c.slotCount)
        for (k, (_, v)) in values.enumerated() { first.set(free[k], v) }
        first.set(free[values.count], .string("not asked for"))
        var second = EventRecord(slotCount: c.slotCount)
        second.set(free[2], .symbol(Symbol(7)))
        let all = [Bool](repeating: true, count: c.slotCount)
        var bytes: [UInt8] = [9]
        _ = PackedFields.append(first, keep: all, to: &bytes)
        let split = bytes.count
        _ = PackedFields.append(second, keep: all, to: &bytes)
        var only = all
        only[free[values.count]] = false
        for s in envelope { only[s] = false }
        let ref = EventRef(eventId: "E-1", type: Symbol(4), agency: Symbol(2), occurredAt: Instant(micros: 1_000_000))

        // Reading the envelope's slots too: they still read as the reference's.
        var reading = all
        reading[free[values.count]] = false
        var packed = PackedRecord(c, reading: reading)
        // The first event whole, cut short in its last field (an array of strings) and cut after its first, then the
        // second: each read as the record the old path filled (the envelope, then the fields forEach gives).
        for range in [1..<split, 1..<(split - 3), 1..<4, split..<bytes.count] {
            packed.index(bytes, range, ref: ref, child: "C-1")
            var r = EventRecord(slotCount: c.slotCount)
            r.set(c.eventIdSlot, .string("E-1"))
            r.set(c.typeSlot, .symbol(Symbol(4)))
            r.set(c.occurredAtSlot, .instant(Instant(micros: 1_000_000)))
            r.set(c.agencySlot, .symbol(Symbol(2)))
            r.set(c.childIdSlot, .string("C-1"))
            PackedFields.forEach(bytes, range, only: only) { r.set($0, $1) }
            for s in 0..<c.slotCount {
                #expect(packed[s] == r[s], "slot \(s) of \(range)")
                #expect(packed.symbol(at: s) == r.symbol(at: s) && packed.int(at: s) == r.int(at: s) && packed.bool(at: s) == r.bool(at: s))
                #expect(packed.date(at: s) == r.date(at: s) && packed.instant(at: s) == r.instant(at: s) && packed.has(s) == r.has(s))
            }
        }
        #expect(packed[free[0]] == .missing && packed[free[2]] == .symbol(Symbol(7)), "the second event's fields only")
    }
}

/// The child index keeps 32 bits of each id's hash: ids whose hashes share them are told apart by the id, across
/// the table's growth.
@Suite struct ChildIndexTests {
    @Test func idsWhoseHashesShareTheirLow32BitsAreToldApartAsTheTableGrows() {
        var children: [ChildState] = []
        var index = ChildIndex()
        func hash(_ k: Int) -> UInt64 { UInt64(k % 50) | UInt64(k) << 40 }  // fifty low halves, all shared
        for k in 0..<5_000 {
            children.append(ChildState(id: "C\(k)"))
            index.insert(k, hash: hash(k))
        }
        // Grown from its 1,024 slots, and at most three quarters full.
        #expect(index.slotCount * 3 >= 5_000 * 4 && MemoryLayout<ChildIndex.Entry>.stride == 8)
        for k in stride(from: 0, to: 5_000, by: 7) { #expect(index.find("C\(k)", hash: hash(k), in: children) == k) }
        #expect(index.find("C5000", hash: hash(5_000), in: children) == nil)
        #expect(index.find("C-unknown", hash: hash(1), in: children) == nil, "the 32 bits of many, the id of none")
    }
}

/// What the engine does with an event joining a child's timeline: its fields `keep` marks packed
/// (`PackedFields.pack`, into room that starts empty so that it grows), then kept with its position and id.
private func keep(_ child: inout ChildState, _ ref: EventRef, _ r: EventRecord, _ keep: [Bool]) -> TimelineEvent {
    var room: [UInt8] = []
    let n = PackedFields.pack(r, keep: keep, into: &room)
    return child.keep(ref, fields: room[..<n], idHash: stableHash(ref.eventId))
}
