import Foundation
import Testing
import VigilContract
@testable import VigilEngine
import VigilRules
@testable import VigilService
import VigilTesting

/// How a changelog partition's records fold back into state (no broker needed).
@Suite struct CheckpointTests {
    let decoder = EventDecoder(contract: pack.contract, slots: pack.capturedSlots)
    let digest = Checkpoint.rulesDigest(EngineSnapshot.versions(of: pack))

    func apply(_ engine: inout Engine, child: String, id: String, at: String, offset: Int64) {
        var r = decoder.makeRecord()
        let json = #"{"schema_version":1,"event_id":"\#(id)","type":"home_visit","occurred_at":"\#(at)","agency":"children_social_care","child":{"id":"\#(child)"},"data":{"announced":true,"access":"granted","child_seen":true,"child_seen_alone":false}}"#
        #expect(decoder.decode(json, into: &r) == nil)
        var alerts: [Alert] = []
        engine.process(r, position: SourcePosition(topic: "t", partition: 0, offset: offset), domain: 0, into: &alerts)
    }

    func records(_ engine: inout Engine, checkpoint: Int64, next: Int64) throws -> [Checkpoint.Record] {
        engine.takeChanged(inDomains: [0]).map {
            Checkpoint.childRecord($0, checkpoint: checkpoint, next: next, rulesDigest: digest)
        }
    }

    @Test func onlyChildrenChangedSinceTheLastCheckpointAreWritten() throws {
        var engine = Engine(rules: pack)
        apply(&engine, child: "C-1", id: "e1", at: "2024-01-01T10:00:00Z", offset: 0)
        apply(&engine, child: "C-2", id: "e2", at: "2024-01-01T11:00:00Z", offset: 1)
        #expect(try records(&engine, checkpoint: 0, next: 2).map(\.key) == ["child/C-1", "child/C-2"])
        #expect(try records(&engine, checkpoint: 1, next: 2).isEmpty)
        apply(&engine, child: "C-2", id: "e3", at: "2024-01-02T11:00:00Z", offset: 2)
        #expect(try records(&engine, checkpoint: 2, next: 3).map(\.key) == ["child/C-2"])
        // Adopted children match the changelog already: nothing to write until they change.
        var other = Engine(rules: pack)
        other.adopt(engine.children(inDomains: [0]))
        #expect(other.takeChanged(inDomains: [0]).isEmpty)
    }

    @Test func aRestoreTakesTheNewestRecordPerChildAndSkipsWhatARecordAheadOfTheMarkerHolds() throws {
        var engine = Engine(rules: pack)
        apply(&engine, child: "C-1", id: "e1", at: "2024-01-01T10:00:00Z", offset: 0)
        apply(&engine, child: "C-2", id: "e2", at: "2024-01-01T11:00:00Z", offset: 1)
        var log = try records(&engine, checkpoint: 0, next: 2)
        log.append(Checkpoint.marker(partition: 0, checkpoint: 0, offset: 2, clock: Instant(micros: 5), rulesDigest: digest))
        // Checkpoint 1 was cut short by a crash: C-2's record landed, its marker did not.
        apply(&engine, child: "C-2", id: "e3", at: "2024-01-02T11:00:00Z", offset: 2)
        apply(&engine, child: "C-1", id: "e4", at: "2024-01-02T12:00:00Z", offset: 3)
        let changed = try records(&engine, checkpoint: 1, next: 4)
        log += changed.filter { $0.key == "child/C-2" }

        let r = try #require(try Checkpoint.restore(partition: 0, records: log, rulesDigest: digest))
        #expect(r.checkpoint == 0)
        #expect(r.offset == 2)
        #expect(r.clock == Instant(micros: 5))
        #expect(r.children.map(\.id) == ["C-1", "C-2"])
        #expect(r.children.map(\.newest) == [RFC3339.parseDateTime("2024-01-01T10:00:00Z"), RFC3339.parseDateTime("2024-01-02T11:00:00Z")])
        // Reading on from offset 2, C-2 skips offsets 2 and 3 (its state holds them); C-1 skips nothing.
        #expect(r.skipBelow == ["C-2": 4])
    }

    @Test func aPartitionWithoutACompleteCheckpointIsReadFromItsBeginning() throws {
        var engine = Engine(rules: pack)
        apply(&engine, child: "C-1", id: "e1", at: "2024-01-01T10:00:00Z", offset: 0)
        let r = try #require(try Checkpoint.restore(partition: 0, records: try records(&engine, checkpoint: 0, next: 1), rulesDigest: digest))
        #expect(r.offset == nil)
        #expect(r.skipBelow == ["C-1": 1])
        #expect(try Checkpoint.restore(partition: 0, records: [], rulesDigest: digest).map(\.children.count) == nil)
    }

    @Test func stateWrittenUnderOtherRulesOrUnreadableIsRefused() throws {
        var engine = Engine(rules: pack)
        apply(&engine, child: "C-1", id: "e1", at: "2024-01-01T10:00:00Z", offset: 0)
        let log = try records(&engine, checkpoint: 0, next: 1)
        #expect(throws: Checkpoint.RestoreError.self) { try Checkpoint.restore(partition: 0, records: log, rulesDigest: "other") }
        let marker = Checkpoint.marker(partition: 0, checkpoint: 0, offset: 1, clock: Instant(micros: 0), rulesDigest: "other")
        do {
            _ = try Checkpoint.restore(partition: 0, records: [marker], rulesDigest: digest)
            Issue.record("a marker under other rules was accepted")
        } catch {
            #expect(error.message.contains("different rules"))
        }
        let garbage = Checkpoint.Record(key: "child/C-9", value: Array("{\"v\":1".utf8))
        do {
            _ = try Checkpoint.restore(partition: 3, records: [garbage], rulesDigest: digest)
            Issue.record("an unreadable record was accepted")
        } catch {
            #expect(error.message.contains("changelog partition 3: the record child/C-9 is unreadable"))
        }
    }
}

/// The binary state encoding round-trips every part of a child's state, and version 1 (JSON) records still
/// restore.
@Suite struct StateEncodingTests {
    @Test func aChildsStateRoundTripsThroughItsBinaryEncoding() throws {
        var g = StreamGenerator(.init(children: 20, days: 500, seed: 9, riskRate: 0.5, planRate: 0.5))
        var lines: [String] = []
        g.generate { lines.append($0) }
        var engine = Engine(rules: pack)
        let decoder = EventDecoder(contract: pack.contract, slots: pack.capturedSlots)
        var r = decoder.makeRecord()
        var alerts: [Alert] = []
        // Some arriving late, so that timelines, bases, emitted alerts and folded ids all hold something.
        for (i, line) in lines.enumerated() where i % 7 != 3 {
            _ = decoder.decode(line, into: &r)
            engine.advance(to: max(engine.clock, r[pack.contract.occurredAtSlot].instant ?? .distantPast), into: &alerts)
            engine.process(r, position: SourcePosition(topic: "t", partition: 1, offset: Int64(i)), into: &alerts)
        }
        for (i, line) in lines.enumerated() where i % 7 == 3 {
            _ = decoder.decode(line, into: &r)
            engine.process(r, into: &alerts)
        }
        #expect(engine.stats.lateEvents > 0)
        let digest = Checkpoint.rulesDigest(EngineSnapshot.versions(of: pack))
        for child in engine.children(inDomains: [0]) {
            let record = Checkpoint.childRecord(child, checkpoint: 3, next: 99, rulesDigest: digest)
            let back = try Checkpoint.decodeChild(record.value)
            #expect(back.checkpoint == 3 && back.next == 99 && back.rules == digest)
            // Equal state: the same JSON.
            let json = JSONEncoder()
            json.outputFormatting = .sortedKeys
            let a = try json.encode(child), b = try json.encode(back.state)
            #expect(a == b, "\(child.id)")
        }
        #expect(throws: (any Error).self) { try Checkpoint.decodeChild(Array(Checkpoint.childRecord(engine.children(inDomains: [0])[0], checkpoint: 0, next: 0, rulesDigest: digest).value.dropLast(3))) }
    }

    @Test func aVersionOneRecordStillRestores() throws {
        let legacy = #"{"v":1,"checkpoint":4,"next":10,"rules":"d","state":{"id":"C-L","newest":{"micros":1170237600000000},"domain":0,"seen":[],"states":[],"entries":[],"pending":[],"fired":[],"firedExpectations":[],"nextPendingId":1}}"#
        let back = try Checkpoint.decodeChild(Array(legacy.utf8))
        #expect(back.checkpoint == 4 && back.next == 10 && back.rules == "d" && back.state.id == "C-L")
    }
}
