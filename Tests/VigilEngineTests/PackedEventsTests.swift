import Foundation
import Testing
import VigilContract
@testable import VigilEngine

/// `vigil run` decodes each message once, in intake, and hands its shards the records packed: what a shard
/// reads back must be the record intake decoded, field for field and in the order written.
@Suite struct PackedEventsTests {
    func written(_ r: EventRecord) -> [(Int32, FieldValue)] {
        r.writtenSlots.map { ($0, r[Int($0)]) }.filter { !$0.1.isMissing }
    }

    @Test func everyKindOfValueReadsBackAsWritten() {
        var set = SymbolSet()
        set.insert(Symbol(3))
        set.insert(Symbol(200))
        let values: [(Int, FieldValue)] = [
            (7, .bool(false)), (2, .int(Int64.min)), (9, .symbol(Symbol(258))), (1, .string("café")), (40, .date(Day(number: -3))),
            (5, .instant(Instant(micros: 1_700_000_000_000_001))), (10, .symbols(set)), (3, .strings(["a", "", "bc"])), (11, .string("")),
        ]
        var r = EventRecord(slotCount: 42)
        for (s, v) in values { r.set(s, v) }
        var packed = PackedEvents()
        packed.append(r)
        packed.append(EventRecord(slotCount: 42))
        packed.append(r)
        #expect(packed.count == 3)
        var back = EventRecord(slotCount: 42)
        var at = 0
        for expected in [r, EventRecord(slotCount: 42), r] {
            #expect(packed.load(&at, into: &back))
            #expect(written(back).map(\.0) == written(expected).map(\.0))
            #expect(written(back).map(\.1) == written(expected).map(\.1))
        }
        #expect(at == packed.byteCount)
        #expect(!packed.load(&at, into: &back), "nothing after the last")
    }

    @Test func theScenarioEvaluatesTheSameFromPackedRecordsAsFromTheDecoder() throws {
        let decoder = EventDecoder(contract: pack.contract, slots: Engine.decodedSlots(pack))
        var decoded = decoder.makeRecord()
        var packed = PackedEvents()
        var direct = Engine(rules: pack), viaPacked = Engine(rules: pack)
        var alerts: [Alert] = []
        var lines = 0
        for line in try scenarioLines() where !line.isEmpty {
            let failure = Array(line.utf8).withUnsafeBytes { decoder.decode($0, into: &decoded) }
            try #require(failure == nil)
            if let at = decoded[pack.contract.occurredAtSlot].instant { direct.advance(to: at, into: &alerts) }
            direct.process(decoded, into: &alerts)
            packed.append(decoded)
            lines += 1
        }
        var fromPacked: [Alert] = []
        var record = EventRecord(slotCount: pack.contract.slotCount)
        var at = 0
        var read = 0
        while packed.load(&at, into: &record) {
            if let t = record[pack.contract.occurredAtSlot].instant { viaPacked.advance(to: t, into: &fromPacked) }
            viaPacked.process(record, into: &fromPacked)
            read += 1
        }
        #expect(read == lines && lines > 0)
        #expect(fromPacked.map(\.alertId) == alerts.map(\.alertId) && !alerts.isEmpty)
        let keys = PackKeys(pack)
        #expect(direct.allChildren.count == viaPacked.allChildren.count)
        for a in direct.allChildren {
            let b = try #require(viaPacked.child(a.id))
            #expect(a.binary(keys: keys) == b.binary(keys: keys), "child \(a.id)")
        }
    }
}
