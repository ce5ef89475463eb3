import Foundation
import Testing
import VigilContract
@testable import VigilEngine
import VigilRules
import VigilService
import VigilTesting

@Suite struct ReplayTests {
    @Test func anUnsortedFileGivesTheSameAlertsAsASortedOne() throws {
        var lines = try scenarioLines()
        var rng = SystemRandomNumberGenerator()
        lines.shuffle(using: &rng)
        let (alerts, invalid, summary) = try replay([tempFile(lines)])
        #expect(invalid.isEmpty)
        #expect(summary.unsortedFiles == 1)
        #expect(sortedPairs(pairs(alerts)) == sortedPairs(haringeyExpected))
    }

    @Test func severalFilesAreMergedInEventTimeOrder() throws {
        let lines = try scenarioLines()
        let odd = lines.enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
        let even = lines.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
        let (alerts, _, summary) = try replay([tempFile(odd), tempFile(even)])
        #expect(summary.unsortedFiles == 0)
        #expect(sortedPairs(pairs(alerts)) == sortedPairs(haringeyExpected))
        let direct = try replay([scenarioPath]).alerts.map(\.alertId)
        #expect(alerts.map(\.alertId) == direct, "same order as the single file")
    }

    @Test func tiesAreTakenInInputOrderAcrossFiles() throws {
        let plan = #"{"schema_version":1,"event_id":"p","type":"plan_status","occurred_at":"2007-02-01T10:00:00Z","agency":"children_social_care","child":{"id":"C"},"data":{"status":"started"}}"#
        let care = #"{"schema_version":1,"event_id":"u","type":"unscheduled_care","occurred_at":"2007-02-01T10:00:00Z","agency":"hospital","child":{"id":"C"},"data":{"setting":"emergency_department"}}"#
        #expect(try replay([tempFile([plan]), tempFile([care])]).alerts.count == 1, "plan read first: on a plan at the care event")
        #expect(try replay([tempFile([care]), tempFile([plan])]).alerts.isEmpty, "care read first: not yet on a plan")
    }

    @Test func untilRunsTheClockOnAndNothingFiresWithoutIt() throws {
        let lines = try scenarioLines()
        let withUntil = try replay([scenarioPath], until: RFC3339.parseDateTime("2007-08-31T00:00:00Z")).alerts
        let extra = pairs(withUntil).filter { $0.1 > "2007-08-01T10:00:00Z" }
        // The visit of 30 July re-armed child-not-seen: 10 working days later is 2007-08-13T23:00Z (BST).
        #expect(extra.map { "\($0.0) \($0.1)" } == ["child-not-seen 2007-08-13T23:00:00Z"])
        #expect(try replay([tempFile(lines)]).alerts.count == 28)
    }

    @Test func aFileThatCannotBeReadIsAnErrorNotAnEmptyFile() throws {
        // A directory opens, and every read of it fails (EISDIR): taken for the end, it replayed as empty.
        let dir = TestDirectory.make("not-a-file")
        let good = tempFile(try scenarioLines())
        for files in [[dir], [good, dir]] {
            for arrivalOrder in [false, true] {
                #expect(throws: LineReader.OpenError.self, "\(files), arrival order \(arrivalOrder)") {
                    _ = try Replay(rules: pack).run(files: files, arrivalOrder: arrivalOrder, onInvalid: { _ in }, onAlert: { _ in },
                                                    onRewind: arrivalOrder ? nil : {})
                }
            }
            #expect(throws: LineReader.OpenError.self, "\(files), validated first") {
                _ = try Replay(rules: pack).run(files: files, onInvalid: { _ in }, onAlert: { _ in })
            }
        }
    }

    @Test func invalidLinesAreReportedCountedAndSkipped() throws {
        var lines = try scenarioLines()
        lines.insert("not json", at: 3)
        lines.insert(#"{"schema_version":1}"#, at: 10)
        lines.insert("", at: 12)
        lines.insert(String(lines[5].dropLast(20)), at: 20)
        let path = tempFile(lines)
        let (alerts, invalid, summary) = try replay([path])
        #expect(summary.invalid == 3)
        #expect(summary.valid == 36)
        #expect(invalid.map(\.line) == [4, 11, 21])
        #expect(invalid.map(\.failure.kind) == [.invalidJSON, .contract, .invalidJSON])
        #expect(invalid[1].failure.reason == "missing required property 'event_id'")
        #expect(invalid[0].description.hasPrefix("\(path):4: invalid-json: $: not JSON"))
        #expect(sortedPairs(pairs(alerts)) == sortedPairs(haringeyExpected))
    }

    @Test func oversizedLinesAreReportedNotLoaded() throws {
        let big = #"{"schema_version":1,"event_id":""# + String(repeating: "x", count: 200_000) + #""}"#
        let path = tempFile([big] + (try scenarioLines()))
        let (alerts, invalid, _) = try replay([path])
        #expect(invalid.count == 1)
        #expect(invalid.first?.failure.kind == .tooLarge)
        #expect(alerts.count == 28)
    }

    @Test func duplicatesAreIgnoredAndCounted() throws {
        let lines = try scenarioLines()
        let (alerts, _, summary) = try replay([tempFile(lines + lines)])
        #expect(summary.engine.duplicates == 36)
        #expect(sortedPairs(pairs(alerts)) == sortedPairs(haringeyExpected))
    }

    @Test func anEventIdReusedMoreThan400DaysLaterIsNotADuplicate() throws {
        func injury(_ at: String) -> String {
            #"{"schema_version":1,"event_id":"same","type":"injury_observed","occurred_at":"\#(at)","agency":"gp","child":{"id":"C"},"data":{"injury":"bruise","count":1,"explanation_assessment":"implausible"}}"#
        }
        let (a1, _, s1) = try replay([tempFile([injury("2007-01-01T00:00:00Z"), injury("2008-02-05T00:00:00Z")])])
        #expect(s1.engine.duplicates == 1, "within 400 days")
        #expect(a1.count == 1)
        let (a2, _, s2) = try replay([tempFile([injury("2007-01-01T00:00:00Z"), injury("2008-02-05T00:00:01Z")])])
        #expect(s2.engine.duplicates == 0)
        #expect(a2.count == 2)
    }

    @Test func aMissingFileIsAnError() {
        #expect(throws: (any Error).self) { try replay(["/nonexistent/file.jsonl"]) }
    }
}

@Suite struct EngineTests {
    func records(_ lines: [String]) -> [EventRecord] {
        let d = EventDecoder(contract: pack.contract, slots: pack.capturedSlots)
        return lines.map { line in
            var r = d.makeRecord()
            _ = d.decode(line, into: &r)
            return r
        }
    }

    @Test func aSnapshotRestoredMidStreamContinuesExactlyAsAnUninterruptedRun() throws {
        let lines = try scenarioLines()
        var whole = Engine(rules: pack)
        let expected = whole.replay(records(lines), until: RFC3339.parseDateTime("2007-09-01T00:00:00Z"))

        var first = Engine(rules: pack)
        var got = first.replay(records(Array(lines.prefix(20))))
        let data = try JSONEncoder().encode(first.snapshot())
        var second = try Engine(rules: pack, restoring: try JSONDecoder().decode(EngineSnapshot.self, from: data))
        #expect(second.pendingDeadlines == first.pendingDeadlines)
        got += second.replay(records(Array(lines.dropFirst(20))), until: RFC3339.parseDateTime("2007-09-01T00:00:00Z"))
        #expect(got.map(\.alertId) == expected.map(\.alertId))
    }

    @Test func aSnapshotIsRefusedUnderDifferentRules() throws {
        var e = Engine(rules: pack)
        _ = e.replay(records(try scenarioLines()))
        var snap = e.snapshot()
        snap.ruleVersions[0] = "changed@0"
        #expect(throws: Engine.RestoreError.self) { try Engine(rules: pack, restoring: snap) }
    }

    @Test func perChildStateIsBounded() throws {
        var limits = EngineLimits()
        limits.maxTimelinePerChild = 8
        limits.maxWindowEntriesPerChild = 8
        limits.maxPendingPerChild = 4
        var lines: [String] = []
        for i in 0..<50 {
            let t = RFC3339.format(Instant(micros: RFC3339.parseDateTime("2007-01-01T00:00:00Z")!.micros + Int64(i) * Instant.microsPerHour))
            lines.append(#"{"schema_version":1,"event_id":"e\#(i)","type":"referral","occurred_at":"\#(t)","agency":"gp","child":{"id":"C"},"data":{"referral_ref":"R\#(i)","referrer_agency":"gp","decision":"pending"}}"#)
        }
        var e = Engine(rules: pack, limits: limits)
        _ = e.replay(records(lines))
        let child = try #require(e.child("C"))
        #expect(child.timeline.count <= 8)
        #expect(e.stats.timelineOverflow > 0, "the timeline past its cap is folded into the base, and counted")
        #expect(child.now.entries.count <= 8)
        #expect(child.pending.count <= 4)
        #expect(e.stats.overflowDrops > 0)
        #expect(e.stats.pendingRefused > 0)
    }

    @Test func anUndecodedRecordIsRefusedNotApplied() {
        var e = Engine(rules: pack)
        var alerts: [Alert] = []
        #expect(e.process(EventRecord(slotCount: pack.contract.slotCount), into: &alerts) == .incomplete)
        #expect(e.childCount == 0)
    }

    @Test func deadlinesAtTheSameInstantFireInArmingOrder() throws {
        let lines = try scenarioLines()
        var e = Engine(rules: pack)
        let alerts = e.replay(records(lines))
        let at14 = alerts.filter { $0.firedAt.description == "2007-03-14T00:00:00Z" }.map { pack.rules[$0.ruleIndex].id }
        #expect(at14 == ["evidence-not-shared", "unchecked-adult-with-access"])
    }
}
