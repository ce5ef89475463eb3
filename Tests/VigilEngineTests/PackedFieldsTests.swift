import Testing
import VigilContract
@testable import VigilEngine

/// The packed fields of a timeline event are part of the changelog's binary record: their layout is fixed
/// (slot, tag, value, little-endian), whatever way they are written.
@Suite struct PackedFieldsTests {
    func le(_ x: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: x >> (8 * UInt64($0))) } }
    func text(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count), 2) + Array(s.utf8) }

    @Test func everyKindOfValueIsLaidOutAsTheChangelogReadsIt() {
        var set = SymbolSet()
        set.insert(Symbol(3))
        set.insert(Symbol(200))
        let values: [(Int, FieldValue)] = [
            (7, .bool(true)), (2, .int(-5)), (9, .symbol(Symbol(258))), (1, .string("café")), (4, .date(Day(number: 19_000))),
            (5, .instant(Instant(micros: 1_700_000_000_000_000))), (6, .symbols(set)), (3, .strings(["a", "", "bc"])),
        ]
        var r = EventRecord(slotCount: 12)
        for (s, v) in values { r.set(s, v) }
        r.set(11, .string("not kept"))
        var keep = [Bool](repeating: true, count: 12)
        keep[11] = false
        // Appended after what is there already, as a child's fields are.
        var bytes: [UInt8] = [9, 9]
        let n = PackedFields.append(r, keep: keep, to: &bytes)
        #expect(bytes.prefix(2) == [9, 9] && n == bytes.count - 2)
        let packed = Array(bytes.dropFirst(2))

        var expected: [UInt8] = []
        expected += le(7, 2) + [1, 1]
        expected += le(2, 2) + [2] + le(UInt64(bitPattern: -5), 8)
        expected += le(9, 2) + [3] + le(258, 2)
        expected += le(1, 2) + [4] + text("café")
        expected += le(4, 2) + [5] + le(19_000, 8)
        expected += le(5, 2) + [6] + le(1_700_000_000_000_000, 8)
        expected += le(6, 2) + [7] + le(set.w0, 8) + le(set.w1, 8) + le(set.w2, 8) + le(set.w3, 8)
        expected += le(3, 2) + [8] + le(3, 2) + text("a") + text("") + text("bc")
        #expect(packed == expected)

        var read: [(Int, FieldValue)] = []
        PackedFields.forEach(bytes, 2..<bytes.count) { read.append(($0, $1)) }
        #expect(read.map(\.0) == values.map(\.0))
        #expect(read.map(\.1) == values.map(\.1))
        // Only some slots: the others (a string and an array of strings among them) are skipped over.
        var only = [Bool](repeating: false, count: 12)
        for s in [9, 4, 3] { only[s] = true }
        var some: [(Int, FieldValue)] = []
        PackedFields.forEach(bytes, 2..<bytes.count, only: only) { some.append(($0, $1)) }
        #expect(some.map(\.0) == [9, 4, 3] && some.map(\.1) == [.symbol(Symbol(258)), .date(Day(number: 19_000)), .strings(["a", "", "bc"])])
    }

    @Test func aStringPastItsLengthFieldIsCutAndNothingIsKeptOfAnEmptyRecord() {
        let long = String(repeating: "x", count: 70_000)
        var r = EventRecord(slotCount: 2)
        r.set(1, .string(long))
        var packed: [UInt8] = []
        #expect(PackedFields.append(r, keep: [true, true], to: &packed) == 3 + 2 + 65_535)
        var got: FieldValue = .missing
        PackedFields.forEach(packed, 0..<packed.count) { _, v in got = v }
        #expect(got == .string(String(repeating: "x", count: 65_535)))
        var none: [UInt8] = []
        #expect(PackedFields.append(EventRecord(slotCount: 2), keep: [true, true], to: &none) == 0 && none.isEmpty)
        #expect(PackedFields.bytes(slot: 0, .missing).isEmpty)
        #expect(PackedFields.bytes(slot: 4, .bool(false)) == [4, 0, 1, 0])
    }

    @Test func aChildsFieldsStayTheirEventsWhenTheOldestGoAndTheirBytesAreReclaimed() {
        var child = ChildState(id: "C1")
        var r = EventRecord(slotCount: 3)
        for i in 0..<10 {
            r.reset()
            r.set(1, .int(Int64(i)))
            if i % 2 == 0 { r.set(2, .string(String(repeating: "s", count: i * 10))) }
            let fields = child.keepFields(r, keep: [false, true, true])
            let ref = EventRef(eventId: "E\(i)", type: Symbol(1), agency: Symbol(1), occurredAt: Instant(micros: Int64(i)))
            child.append(TimelineEvent(ref: ref, arrival: UInt64(i), fields: fields), idHash: UInt64(i))
        }
        let before = child.fieldBytes.count
        for _ in 0..<7 { _ = child.removeOldest() }
        child.reclaimFields()
        #expect(child.fieldBytes.count < before / 2, "the bytes of the events gone are given back")
        child.setIgnored(1, true)
        #expect(child.timeline.map(\.ignored) == [false, true, false] && child.timeline.map(\.arrival) == [7, 8, 9])
        for (k, e) in child.timeline.enumerated() {
            let i = 7 + k
            var got: [Int: FieldValue] = [:]
            PackedFields.forEach(child.fieldBytes, e.fields) { got[$0] = $1 }
            #expect(got[1] == .int(Int64(i)) && got[2] == (i % 2 == 0 ? .string(String(repeating: "s", count: i * 10)) : nil), "event \(i)")
        }
    }

    @Test func aTimelineEventIsOneCacheLineAndAReferenceToAnEventIsFixedSize() {
        // Every event of every timeline is one; every window entry, state and expectation holds a reference.
        #expect(MemoryLayout<TimelineEvent>.stride == 64)
        #expect(MemoryLayout<EventRef>.stride == 48)
    }
}
