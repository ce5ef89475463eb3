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
    let state = StatePack(pack)

    func apply(_ engine: inout Engine, child: String, id: String, at: String, offset: Int64) {
        var r = decoder.makeRecord()
        let json = #"{"schema_version":1,"event_id":"\#(id)","type":"home_visit","occurred_at":"\#(at)","agency":"children_social_care","child":{"id":"\#(child)"},"data":{"announced":true,"access":"granted","child_seen":true,"child_seen_alone":false}}"#
        #expect(decoder.decode(json, into: &r) == nil)
        var alerts: [Alert] = []
        engine.process(r, position: SourcePosition(topic: "t", partition: 0, offset: offset), domain: 0, into: &alerts)
    }

    func records(_ engine: inout Engine, checkpoint: Int64, next: Int64) throws -> [Checkpoint.Record] {
        engine.takeChanged(inDomains: [0]).map {
            Checkpoint.childRecord($0, checkpoint: checkpoint, next: next, pack: state)
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
        log.append(Checkpoint.marker(partition: 0, checkpoint: 0, offset: 2, clock: Instant(micros: 5), rulesDigest: state.digest))
        // Checkpoint 1 was cut short by a crash: C-2's record landed, its marker did not.
        apply(&engine, child: "C-2", id: "e3", at: "2024-01-02T11:00:00Z", offset: 2)
        apply(&engine, child: "C-1", id: "e4", at: "2024-01-02T12:00:00Z", offset: 3)
        let changed = try records(&engine, checkpoint: 1, next: 4)
        log += changed.filter { $0.key == "child/C-2" }

        let r = try #require(try Checkpoint.restore(partition: 0, records: log, pack: state))
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
        let r = try #require(try Checkpoint.restore(partition: 0, records: try records(&engine, checkpoint: 0, next: 1), pack: state))
        #expect(r.offset == nil)
        #expect(r.skipBelow == ["C-1": 1])
        #expect(try Checkpoint.restore(partition: 0, records: [], pack: state).map(\.children.count) == nil)
    }

    @Test func stateWrittenUnderAnUndescribedPackOrUnreadableIsRefused() throws {
        var engine = Engine(rules: pack)
        apply(&engine, child: "C-1", id: "e1", at: "2024-01-01T10:00:00Z", offset: 0)
        // Written under a pack the changelog has no manifest of (as by a Vigil before rule packs could change,
        // under other rules): refused, with the way out.
        var log = try records(&engine, checkpoint: 0, next: 1)
        log = log.map { r in
            var v = r.value
            let n = Int(v[19])
            v.replaceSubrange(20..<(20 + n), with: Array("0123456789abcdef".utf8.prefix(n)))
            return Checkpoint.Record(key: r.key, value: v)
        }
        do {
            _ = try Checkpoint.restore(partition: 0, records: log, pack: state)
            Issue.record("state under an undescribed pack was accepted")
        } catch {
            #expect(error.message.contains("earlier Vigil under different rules"))
        }
        let garbage = Checkpoint.Record(key: "child/C-9", value: Array("{\"v\":1".utf8))
        do {
            _ = try Checkpoint.restore(partition: 3, records: [garbage], pack: state)
            Issue.record("an unreadable record was accepted")
        } catch {
            #expect(error.message.contains("changelog partition 3: the record child/C-9 is unreadable"))
        }
        let badPack = Checkpoint.Record(key: "pack/0000", value: Array("{}".utf8))
        #expect(throws: Checkpoint.RestoreError.self) { try Checkpoint.restore(partition: 0, records: [badPack], pack: state) }
        // Several partitions restored together, some unreadable: the lowest of those is named, every time.
        for _ in 0..<20 {
            do {
                _ = try Checkpoint.restore(partitions: Array(0..<16), records: [9: [garbage], 4: [garbage], 12: [garbage]], pack: state)
                Issue.record("unreadable partitions were accepted")
            } catch {
                #expect(error.message.hasPrefix("changelog partition 4:"), "\(error.message)")
            }
        }
    }

    /// State checkpointed under another pack (described in the changelog) restores under this one, listed
    /// as carried, with that pack's manifest.
    @Test func stateWrittenUnderAnotherDescribedPackIsCarried() throws {
        let other = try EditedPack(rulesDir).replacing("within: 45 working days", with: "within: 20 working days", in: "timescales.yaml").compile()
        let otherState = StatePack(other)
        var engine = Engine(rules: other)
        apply(&engine, child: "C-1", id: "e1", at: "2024-01-01T10:00:00Z", offset: 0)
        let log = [Checkpoint.packRecord(otherState)] + engine.takeChanged(inDomains: [0]).map {
            Checkpoint.childRecord($0, checkpoint: 0, next: 1, pack: otherState)
        } + [Checkpoint.marker(partition: 0, checkpoint: 0, offset: 1, clock: Instant(micros: 5), rulesDigest: otherState.digest)]
        let r = try #require(try Checkpoint.restore(partition: 0, records: log, pack: state))
        #expect(r.children.map(\.id) == ["C-1"])
        #expect(r.carried["C-1"] == otherState.manifest)
        #expect(r.summary(partition: 0).contains("1 under another rule pack"))
        // Under its own pack: nothing to carry.
        #expect(try #require(try Checkpoint.restore(partition: 0, records: log, pack: otherState)).carried.isEmpty)
    }

    /// A record of the layout before rule packs could change (indices, version 1) restores under the pack
    /// that wrote it, and is marked to be written again at the next checkpoint.
    @Test func aRecordOfTheEarlierLayoutRestoresUnderItsPackAndIsRewritten() throws {
        var engine = Engine(rules: pack)
        apply(&engine, child: "C-1", id: "e1", at: "2024-01-01T10:00:00Z", offset: 0)
        let child = try #require(engine.child("C-1"))
        let legacy = Checkpoint.Record(key: "child/C-1", value: Checkpoint.binaryMagic + [UInt8](repeating: 0, count: 16)
            + [UInt8(state.legacyDigest.utf8.count)] + Array(state.legacyDigest.utf8) + child.legacyBinary())
        let r = try #require(try Checkpoint.restore(partition: 0, records: [legacy], pack: state))
        #expect(r.carried.isEmpty)
        var restored = Engine(rules: pack)
        restored.adopt(r.children)
        #expect(restored.takeChanged(inDomains: [0]).map(\.id) == ["C-1"])
        #expect(restored.child("C-1")?.footprint(of: "child-not-seen", in: pack) == child.footprint(of: "child-not-seen", in: pack))
        #expect(restored.child("C-1")?.timeline.count == child.timeline.count)
    }
}

/// The binary state encoding round-trips every part of a child's state, and version 1 (JSON) records still
/// restore.
@Suite struct StateEncodingTests {
    /// An engine whose children's timelines, bases, emitted alerts and folded ids all hold something.
    func engineWithHistory() -> Engine {
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
        return engine
    }

    /// Equal state: the same JSON.
    func json(_ child: ChildState) throws -> Data {
        let json = JSONEncoder()
        json.outputFormatting = .sortedKeys
        return try json.encode(child)
    }

    @Test func aChildsStateRoundTripsThroughItsBinaryEncoding() throws {
        let engine = engineWithHistory()
        let state = StatePack(pack)
        for child in engine.children(inDomains: [0]) {
            let record = Checkpoint.childRecord(child, checkpoint: 3, next: 99, pack: state)
            let back = try Checkpoint.decodeChild(record.value, keys: state.keys)
            #expect(back.checkpoint == 3 && back.next == 99 && back.rules == state.digest)
            let a = try json(child)
            #expect(try json(back.state) == a, "\(child.id)")
            #expect(back.state.timeline.map(\.idHash) == child.timeline.map(\.idHash), "\(child.id): the ids' hashes (duplicates are found by them)")
            // And the JSON (snapshots, the layout before the binary one) reads back to the same state.
            #expect(try json(JSONDecoder().decode(ChildState.self, from: a)) == a, "\(child.id)")
        }
        #expect(throws: (any Error).self) {
            try Checkpoint.decodeChild(Array(Checkpoint.childRecord(engine.children(inDomains: [0])[0], checkpoint: 0, next: 0, pack: state).value.dropLast(3)), keys: state.keys)
        }
    }

    /// Ids that are not ASCII (the contract allows any text) read back as the same text with the same hashes:
    /// ASCII ids are kept from the record's bytes as they are, others as text.
    @Test func eventIdsBeyondASCIIRoundTripWithTheirHashes() throws {
        let lines = generatedLines(children: 5, days: 300, seed: 4).enumerated().map { i, line in
            line.replacingOccurrences(of: #""event_id":""#, with: #""event_id":"\#(["é-", "визит-", "🧒", ""][i % 4])"#)
        }
        var engine = Engine(rules: pack)
        let decoder = EventDecoder(contract: pack.contract, slots: pack.capturedSlots)
        var r = decoder.makeRecord()
        var alerts: [Alert] = []
        for line in lines {
            #expect(decoder.decode(line, into: &r) == nil)
            engine.process(r, into: &alerts)
        }
        let state = StatePack(pack)
        var nonASCII = 0
        for child in engine.children(inDomains: [0]) {
            let back = try Checkpoint.decodeChild(Checkpoint.childRecord(child, checkpoint: 1, next: 1, pack: state).value, keys: state.keys).state
            #expect(try json(back) == json(child), "\(child.id)")
            #expect(back.timeline.map(\.idHash) == child.timeline.map(\.idHash), "\(child.id)")
            nonASCII += child.timeline.indices.filter { child.timeline[$0].eventId(in: child.fieldBytes).utf8.contains { $0 >= 0x80 } }.count
        }
        #expect(nonASCII > 0)
    }

    /// A record of version 2 (fields and values in the layout before `PackedFields`) reads as the same state,
    /// its fields repacked, and is marked to be written again.
    @Test func aRecordWithFieldsInTheEarlierLayoutReadsAsTheSameState() throws {
        let engine = engineWithHistory()
        let keys = PackKeys(pack)
        var fields = 0, oldBytes = 0, newBytes = 0
        for child in engine.children(inDomains: [0]) {
            let old = child.legacyBinary(keys: keys)
            let back = try ChildState(binary: old, keys: keys)
            #expect(try json(back) == json(child), "\(child.id)")
            #expect(back.isChanged, "\(child.id)")
            fields += child.timeline.filter { !$0.fields(in: child.fieldBytes).isEmpty }.count
            oldBytes += old.count
            newBytes += back.binary(keys: keys).count
        }
        #expect(fields > 0 && newBytes < oldBytes)
    }

    /// A record of version 3 (fixed-width integers, a topic's name at every position) reads as the same state,
    /// is marked to be written again, and is written again smaller.
    @Test func aVersionThreeRecordReadsAsTheSameStateAndIsWrittenAgainSmaller() throws {
        let engine = engineWithHistory()
        let keys = PackKeys(pack)
        var oldBytes = 0, newBytes = 0, children = 0
        for child in engine.children(inDomains: [0]) {
            let old = child.binary(keys: keys, version: 3)
            let back = try ChildState(binary: old, keys: keys)
            #expect(try json(back) == json(child), "\(child.id)")
            #expect(back.isChanged, "\(child.id)")
            let now = back.binary(keys: keys)
            #expect(now.first == 4)
            #expect(try json(ChildState(binary: now, keys: keys)) == json(child), "\(child.id)")
            oldBytes += old.count
            newBytes += now.count
            children += 1
        }
        #expect(children > 0 && newBytes * 3 < oldBytes * 2, "version 4 \(newBytes) B against version 3 \(oldBytes) B")
    }

    /// A damaged record (cut short anywhere, or any byte changed) is refused or read as some state; it never
    /// traps, never reads past its end, and a varint longer than 64 bits is refused.
    @Test func aDamagedRecordIsRefusedNotACrash() throws {
        let engine = engineWithHistory()
        let keys = PackKeys(pack)
        // The child with the most history, and one with little.
        let children = engine.children(inDomains: [0]).sorted { $0.timeline.count > $1.timeline.count }
        for child in [children.first, children.last].compactMap({ $0 }) {
            let good = child.binary(keys: keys)
            for n in 0..<good.count { _ = try? ChildState(binary: Array(good.prefix(n)), keys: keys) }
            // A continuation byte, or one that is all ones, in every place.
            for i in 1..<good.count {
                var bad = good
                bad[i] = i % 2 == 0 ? 0x80 : 0xFF
                _ = try? ChildState(binary: bad, keys: keys)
            }
            #expect(throws: ChildState.BinaryError.self) { try ChildState(binary: [4] + Array(repeating: 0xFF, count: 11) + [0x01], keys: keys) }
        }
    }

    @Test func aVersionOneRecordStillRestores() throws {
        let legacy = #"{"v":1,"checkpoint":4,"next":10,"rules":"d","state":{"id":"C-L","newest":{"micros":1170237600000000},"domain":0,"seen":[],"states":[],"entries":[],"pending":[],"fired":[],"firedExpectations":[],"nextPendingId":1}}"#
        let back = try Checkpoint.decodeChild(Array(legacy.utf8), keys: PackKeys(pack))
        #expect(back.checkpoint == 4 && back.next == 10 && back.rules == "d" && back.state.id == "C-L")
    }
}
