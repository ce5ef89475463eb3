import Foundation
import Testing
import VigilContract
import VigilRules
import VigilEngine
@testable import VigilService

@Suite struct TailTests {
    func tailed(_ json: String) -> TailedAlert {
        let v = (try? JSONValue.parse(json)) ?? .null
        return TailedAlert(json: v, text: json)
    }

    @Test func filtersBySeverityRuleChildAndTime() {
        let a = tailed(alertJSON("1", rule: "child-not-seen", severity: "high", child: "C-1", firedAt: "2007-02-06T00:00:00Z"))
        let b = tailed(alertJSON("2", rule: "no-access-visits", severity: "medium", child: "C-2", firedAt: "2007-03-06T00:00:00Z"))
        let c = tailed(alertJSON("3", rule: "unchecked-adult-with-access", severity: "critical", child: "C-1", firedAt: "2007-04-06T00:00:00Z"))
        let all = [a, b, c]
        func ids(_ f: AlertFilter) -> [String] { all.filter(f.accepts).map { $0.json["alert_id"]?.stringValue ?? "" } }
        #expect(ids(AlertFilter()) == ["1", "2", "3"])
        #expect(ids(AlertFilter(minimumSeverity: "high")) == ["1", "3"])
        #expect(ids(AlertFilter(minimumSeverity: "critical")) == ["3"])
        #expect(ids(AlertFilter(rules: ["no-access-visits", "child-not-seen"])) == ["1", "2"])
        #expect(ids(AlertFilter(children: ["C-1"])) == ["1", "3"])
        #expect(ids(AlertFilter(since: RFC3339.parseDateTime("2007-03-06T00:00:00Z"))) == ["2", "3"])
        #expect(ids(AlertFilter(minimumSeverity: "medium", children: ["C-2"])) == ["2"])
        #expect(a.line == "2007-02-06T00:00:00Z  high      child-not-seen  C-1  s  [evidence e1]")
        let many = #"{"alert_id":"a-1","status":"fired","rule_id":"r","severity":"low","child_id":"C-1","fired_at":"2007-02-06T00:00:00Z","summary":"s","evidence":[\#((1...7).map { #"{"event_id":"e\#($0)"}"# }.joined(separator: ","))]}"#
        #expect(tailed(many).line == "2007-02-06T00:00:00Z  low       r  C-1  s  [evidence e1, e2, e3, e4, e5 and 2 more]")
    }

    @Test func lateAndWithdrawnAlertsAreMarkedWithHowLateTheirRecordWas() {
        let late = #"{"alert_id":"a-9","status":"fired","rule_id":"child-not-seen","severity":"high","child_id":"C-1","fired_at":"2007-02-06T00:00:00Z","summary":"s","late":{"event_id":"v-7","occurred_at":"2007-02-01T10:00:00Z","recorded_at":"2007-02-15T10:00:00Z"},"evidence":[]}"#
        #expect(tailed(late).line == "2007-02-06T00:00:00Z  high      LATE child-not-seen  C-1  s  (record v-7 recorded 14 days after it occurred)")
        let withdrawn = #"{"alert_id":"a-10","status":"withdrawn","withdraws":"a-8","rule_id":"child-not-seen","severity":"high","child_id":"C-1","fired_at":"2007-02-06T00:00:00Z","summary":"w","late":{"event_id":"v-8","occurred_at":"2007-02-05T10:00:00Z"},"evidence":[]}"#
        #expect(tailed(withdrawn).line == "2007-02-06T00:00:00Z  high      WITHDRAWN child-not-seen  C-1  w  (record v-8 arrived late)")
    }

    @Test func notesOfTheAuditLogAreShownUnlessTheViewIsNarrowed() {
        let note = tailed(#"{"kind":"input-gap","topic":"agency-events","partition":3,"from":0,"to":5,"action":"stop","detected_at":"2026-11-29T10:00:00Z"}"#)
        #expect(note.isNote)
        #expect(note.line == "2026-11-29T10:00:00Z  NOTE      input-gap  agency-events[3] offsets 0 to 4 deleted before they were read (stop)")
        #expect(AlertFilter(minimumSeverity: "critical").accepts(note))
        #expect(!AlertFilter(rules: ["child-not-seen"]).accepts(note))
    }

    /// `vigil generate --late` perturbs the arrival order; `vigil replay --arrival-order` evaluates it as a
    /// pipeline would; net of withdrawals it gives the sorted replay's alerts.
    @Test func generateLateAndReplayInArrivalOrderNetToTheSortedReplay() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let gen = try Child(vigilBinary, ["generate", "--children", "200", "--days", "300", "--seed", "4", "--late", "10:1-20"])
        #expect(gen.wait(timeout: 60) == 0)
        #expect(gen.stderr.contains { $0.contains("records arriving late") })
        let path = dir + "/late.jsonl"
        try (gen.stdout.filter { !$0.isEmpty }.joined(separator: "\n") + "\n").write(toFile: path, atomically: false, encoding: .utf8)
        func alerts(_ args: [String]) throws -> [JSONValue] {
            let r = try Child(vigilBinary, ["replay", path, "--rules", rulesDir] + args)
            #expect(r.wait(timeout: 60) == 0)
            return r.stdout.filter { !$0.isEmpty }.compactMap { try? JSONValue.parse($0) }
        }
        let sorted = Set(try alerts([]).compactMap { $0["alert_id"]?.stringValue })
        let arrival = try alerts(["--arrival-order"])
        var net = NetAlerts()
        for a in arrival { net.apply(record: a) }
        #expect(arrival.contains { $0["status"]?.stringValue == "withdrawn" })
        #expect(net.ids == sorted && sorted.count > 10)
    }

    @Test func theFollowerReturnsCompleteRecordsAsTheFileGrowsAndStartsOverWhenItShrinks() throws {
        let (path, lines) = try writeLog(3)
        let f = AuditFollower(path: path, fromEnd: false)
        #expect(f.poll().count == 3)
        #expect(f.poll().isEmpty)
        let w = try AuditLogWriter(path: path)
        try w.append(alertId: "a-4", alertJSON: alertJSON("a-4"))
        try w.sync()
        #expect(f.poll().map { $0.json["alert_id"]?.stringValue } == ["a-4"])
        // A half-written line is held back until it is complete.
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        h.seekToEndOfFile()
        let next = AuditLog.record(seq: 5, prev: w.head, alertJSON: alertJSON("a-5"))
        h.write(Data(next.prefix(50).utf8))
        #expect(f.poll().isEmpty)
        h.write(Data((String(next.dropFirst(50)) + "\n").utf8))
        try h.close()
        #expect(f.poll().map { $0.json["alert_id"]?.stringValue } == ["a-5"])
        // From the end: only what comes later.
        let tailOnly = AuditFollower(path: path, fromEnd: true)
        #expect(tailOnly.poll().isEmpty)
        // Rotated (replaced by a shorter file): read from the start again.
        try rewrite(path, Array(lines.prefix(1)))
        #expect(f.poll().count == 1)
    }

    @Test func vigilTailFollowsFiltersAndExitsCleanlyOnCtrlC() throws {
        let (path, _) = try writeLog(2)
        let tail = try Child(vigilBinary, ["tail", "--audit", path, "--severity", "high", "--tz", "UTC"])
        #expect(Child.until(timeout: 10) { tail.stdout.count == 2 })
        let w = try AuditLogWriter(path: path)
        try w.append(alertId: "low-1", alertJSON: alertJSON("low-1", severity: "low"))
        try w.append(alertId: "crit-1", alertJSON: alertJSON("crit-1", rule: "unchecked-adult-with-access", severity: "critical", child: "C-9"))
        try w.sync()
        #expect(Child.until(timeout: 10) { tail.stdout.count == 3 })
        #expect(tail.stdout.last == "2007-02-06T00:00:00Z  critical  unchecked-adult-with-access  C-9  s  [evidence e1]")
        #expect(!tail.stdout.contains { $0.contains("low-1") || $0.contains("  low  ") })
        tail.signal(SIGINT)
        #expect(tail.wait(timeout: 10) == 0)
    }

    /// Text lines read in local time: the pack's calendar zone (`--rules`, `$VIGIL_RULES`) or `--tz`; a summer
    /// deadline at London midnight reads 00:00 +01:00, not 23:00Z the day before. JSON stays UTC.
    @Test func textLinesAreInThePacksZoneOrTheOneGiven() throws {
        let path = tempPath("audit")
        let w = try AuditLogWriter(path: path)
        _ = try w.append(alertId: "a-1", alertJSON: alertJSON("a-1", firedAt: "2007-04-11T23:00:00Z"))
        try w.sync()
        let london = try #require(ZoneTable.named("Europe/London"))
        let read = AuditFollower(path: path, fromEnd: false).poll()
        #expect(read.first?.line(in: london) == "2007-04-12T00:00:00+01:00  high      child-not-seen  C-1  s  [evidence e1]")
        #expect(read.first?.line == "2007-04-11T23:00:00Z  high      child-not-seen  C-1  s  [evidence e1]")
        let byPack = try Child(vigilBinary, ["tail", "--audit", path, "--no-follow", "--rules", rulesDir])
        #expect(byPack.wait(timeout: 30) == 0)
        #expect(byPack.stdout.first == "2007-04-12T00:00:00+01:00  high      child-not-seen  C-1  s  [evidence e1]")
        let byZone = try Child(vigilBinary, ["tail", "--audit", path, "--no-follow", "--tz", "America/New_York"])
        #expect(byZone.wait(timeout: 30) == 0)
        #expect(byZone.stdout.first?.hasPrefix("2007-04-11T19:00:00-04:00  high") == true)
        let json = try Child(vigilBinary, ["tail", "--audit", path, "--no-follow", "--tz", "Europe/London", "--format", "json"])
        #expect(json.wait(timeout: 30) == 0)
        #expect(json.stdout.first?.contains(#""fired_at":"2007-04-11T23:00:00Z""#) == true)
        let bad = try Child(vigilBinary, ["tail", "--audit", path, "--no-follow", "--tz", "Europe/Londn"])
        #expect(bad.wait(timeout: 30) == 64)
        #expect(bad.stderr.joined().contains("unknown time zone 'Europe/Londn'"))
    }

    @Test func vigilTailPrintsJsonWithoutFollowing() throws {
        let (path, _) = try writeLog(3)
        let tail = try Child(vigilBinary, ["tail", "--audit", path, "--format", "json", "--no-follow", "--rule", "child-not-seen"])
        #expect(tail.wait(timeout: 10) == 0)
        #expect(tail.stdout.filter { !$0.isEmpty }.compactMap { (try? JSONValue.parse($0))?["alert_id"]?.stringValue } == ["a-1", "a-2", "a-3"])
        let bad = try Child(vigilBinary, ["tail", "--audit", path, "--severity", "urgent"])
        #expect(bad.wait(timeout: 10) != 0)
    }
}
