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
        let packed = PackedFields(r, keep: keep)

        var expected: [UInt8] = []
        expected += le(7, 2) + [1, 1]
        expected += le(2, 2) + [2] + le(UInt64(bitPattern: -5), 8)
        expected += le(9, 2) + [3] + le(258, 2)
        expected += le(1, 2) + [4] + text("café")
        expected += le(4, 2) + [5] + le(19_000, 8)
        expected += le(5, 2) + [6] + le(1_700_000_000_000_000, 8)
        expected += le(6, 2) + [7] + le(set.w0, 8) + le(set.w1, 8) + le(set.w2, 8) + le(set.w3, 8)
        expected += le(3, 2) + [8] + le(3, 2) + text("a") + text("") + text("bc")
        #expect(packed.bytes == expected)

        var read: [(Int, FieldValue)] = []
        packed.forEach { read.append(($0, $1)) }
        #expect(read.map(\.0) == values.map(\.0))
        #expect(read.map(\.1) == values.map(\.1))
    }

    @Test func aStringPastItsLengthFieldIsCutAndNothingIsKeptOfAnEmptyRecord() {
        let long = String(repeating: "x", count: 70_000)
        var r = EventRecord(slotCount: 2)
        r.set(1, .string(long))
        let packed = PackedFields(r, keep: [true, true])
        #expect(packed.bytes.count == 3 + 2 + 65_535)
        var got: FieldValue = .missing
        packed.forEach { _, v in got = v }
        #expect(got == .string(String(repeating: "x", count: 65_535)))
        #expect(PackedFields(EventRecord(slotCount: 2), keep: [true, true]).bytes.isEmpty)
        #expect(PackedFields(slot: 0, .missing).bytes.isEmpty)
        #expect(PackedFields(slot: 4, .bool(false)).bytes == [4, 0, 1, 0])
    }
}
