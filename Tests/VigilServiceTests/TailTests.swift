import Foundation
import Testing
import VigilContract
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
        #expect(a.line == "2007-02-06T00:00:00Z  high      child-not-seen  C-1  s")
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
        let tail = try Child(vigilBinary, ["tail", "--audit", path, "--severity", "high"])
        #expect(Child.until(timeout: 10) { tail.stdout.count == 2 })
        let w = try AuditLogWriter(path: path)
        try w.append(alertId: "low-1", alertJSON: alertJSON("low-1", severity: "low"))
        try w.append(alertId: "crit-1", alertJSON: alertJSON("crit-1", rule: "unchecked-adult-with-access", severity: "critical", child: "C-9"))
        try w.sync()
        #expect(Child.until(timeout: 10) { tail.stdout.count == 3 })
        #expect(tail.stdout.last == "2007-02-06T00:00:00Z  critical  unchecked-adult-with-access  C-9  s")
        #expect(!tail.stdout.contains { $0.contains("low-1") || $0.contains("  low  ") })
        tail.signal(SIGINT)
        #expect(tail.wait(timeout: 10) == 0)
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
