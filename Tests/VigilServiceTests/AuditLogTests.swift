import Foundation
import Testing
import VigilContract
@testable import VigilService
import VigilTesting

func tempPath(_ name: String) -> String {
    TestDirectory.file(name)
}

func alertJSON(_ id: String, rule: String = "child-not-seen", severity: String = "high", child: String = "C-1",
               firedAt: String = "2007-02-06T00:00:00Z") -> String {
    #"{"schema_version":1,"alert_id":"\#(id)","status":"fired","rule_id":"\#(rule)","rule_version":"0123456789abcdef","severity":"\#(severity)","child_id":"\#(child)","fired_at":"\#(firedAt)","summary":"s","evidence":[{"event_id":"e1","type":"home_visit","agency":"gp","occurred_at":"2007-01-01T00:00:00Z"}]}"#
}

/// An audit log with `n` records, and its lines.
func writeLog(_ n: Int) throws -> (path: String, lines: [String]) {
    let path = tempPath("audit")
    let w = try AuditLogWriter(path: path)
    for i in 1...n { try w.append(alertId: "a-\(i)", alertJSON: alertJSON("a-\(i)")) }
    try w.sync()
    let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
    return (path, lines)
}

func rewrite(_ path: String, _ lines: [String], trailingNewline: Bool = true) throws {
    try (lines.joined(separator: "\n") + (trailingNewline ? "\n" : "")).write(toFile: path, atomically: false, encoding: .utf8)
}

@Suite struct AuditLogTests {
    @Test func anIntactLogVerifiesWithItsCountAndHead() throws {
        let (path, lines) = try writeLog(5)
        guard case .ok(let count, let seq, let head) = try AuditLog.verify(path: path) else { Issue.record("not ok"); return }
        #expect(count == 5 && seq == 5)
        #expect(head == AuditLog.hash(Array(lines[4].utf8)))
        #expect(lines[0].hasPrefix(#"{"seq":1,"prev":"0000000000000000000000000000000000000000000000000000000000000000","alert":{"#))
    }

    @Test func theFileIsCreatedReadableOnlyByItsOwner() throws {
        let (path, _) = try writeLog(1)
        let mode = (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? 0
        #expect(mode == 0o600)
    }

    @Test func aModifiedRecordIsCaught() throws {
        var (path, lines) = try writeLog(5)
        lines[2] = lines[2].replacingOccurrences(of: "\"severity\":\"high\"", with: "\"severity\":\"low\"")
        try rewrite(path, lines)
        #expect(try AuditLog.verify(path: path) == .bad(line: 4, problem: .modified))
        #expect(AuditLog.ChainProblem.modified.description == "prev does not match the SHA-256 of the record before: that record was modified, or this one's prev was edited")
    }

    @Test func aDeletedRecordIsCaught() throws {
        var (path, lines) = try writeLog(5)
        lines.remove(at: 1)
        try rewrite(path, lines)
        guard case .bad(let line, _) = try AuditLog.verify(path: path) else { Issue.record("not caught"); return }
        #expect(line == 2)
    }

    @Test func anInsertedRecordIsCaught() throws {
        var (path, lines) = try writeLog(5)
        lines.insert(AuditLog.record(seq: 3, prev: AuditLog.hash(Array(lines[1].utf8)), alertJSON: alertJSON("forged")), at: 2)
        try rewrite(path, lines)
        guard case .bad(let line, let reason) = try AuditLog.verify(path: path) else { Issue.record("not caught"); return }
        #expect(line == 4)
        #expect(reason == .moved)
        #expect(reason.description.contains("prev does not match"))
    }

    @Test func reorderedRecordsAreCaught() throws {
        var (path, lines) = try writeLog(5)
        lines.swapAt(1, 2)
        try rewrite(path, lines)
        guard case .bad(let line, _) = try AuditLog.verify(path: path) else { Issue.record("not caught"); return }
        #expect(line == 2)
    }

    @Test func aTruncatedRecordIsCaught() throws {
        var (path, lines) = try writeLog(5)
        lines[4] = String(lines[4].prefix(40))
        try rewrite(path, lines, trailingNewline: false)
        #expect(try AuditLog.verify(path: path) == .bad(line: 5, problem: .cutShort))
        try rewrite(path, Array(lines.prefix(4)) + [lines[4]])
        guard case .bad(5, let reason) = try AuditLog.verify(path: path) else { Issue.record("not caught"); return }
        #expect(reason == .notARecord)
        #expect(reason.description.hasPrefix("not an audit record"))
    }

    @Test func aRepeatedAlertIdIsCaught() throws {
        let path = tempPath("audit")
        var lines: [String] = []
        var prev = AuditLog.genesis
        for (i, id) in ["x", "y", "x"].enumerated() {
            let l = AuditLog.record(seq: i + 1, prev: prev, alertJSON: alertJSON(id))
            lines.append(l)
            prev = AuditLog.hash(Array(l.utf8))
        }
        try rewrite(path, lines)
        #expect(try AuditLog.verify(path: path) == .bad(line: 3, problem: .duplicateId("x", firstSeq: 1)))
        #expect(AuditLog.ChainProblem.duplicateId("x", firstSeq: 1).description == "alert_id x already appears at seq 1")
    }

    @Test func aRestartContinuesTheChainAndNeverWritesAnIdTwice() throws {
        let (path, _) = try writeLog(3)
        let w = try AuditLogWriter(path: path)
        #expect(w.count == 3)
        #expect(try w.append(alertId: "a-2", alertJSON: alertJSON("a-2")) == false)
        #expect(try w.append(alertId: "a-4", alertJSON: alertJSON("a-4")) == true)
        try w.sync()
        guard case .ok(let count, _, _) = try AuditLog.verify(path: path) else { Issue.record("chain broken"); return }
        #expect(count == 4)
    }

    /// A pipeline crashed in-process (the crash tests) abandons its writer as a dying process would. Left to
    /// `deinit`, the records it had appended and not written reached the file whenever its last reference
    /// went: once after the next run had opened the log, which then chained its first record to a stale head
    /// and refused every run after it (MemoryPipelineTests, seed 3, about one CI run in forty).
    @Test func anAbandonedWriterLosesWhatItHadNotWrittenAndNeverTouchesTheLogAgain() throws {
        let (path, _) = try writeLog(3)
        var crashed: AuditLogWriter? = try AuditLogWriter(path: path)
        #expect(try crashed?.append(alertId: "a-4", alertJSON: alertJSON("a-4")) == true)
        crashed?.abandon()
        #expect(throws: AuditLogError.self) { try crashed?.sync() }
        let next = try AuditLogWriter(path: path)
        #expect(next.count == 3, "a-4 was never written")
        #expect(try next.append(alertId: "a-4", alertJSON: alertJSON("a-4")) == true)
        crashed = nil
        #expect(try next.append(alertId: "a-5", alertJSON: alertJSON("a-5")) == true)
        try next.sync()
        guard case .ok(let count, _, _) = try AuditLog.verify(path: path) else { Issue.record("chain broken"); return }
        #expect(count == 5)
    }

    @Test func aTornFinalRecordIsRemovedOnOpenAndATamperedLogIsRefused() throws {
        var (path, lines) = try writeLog(3)
        try rewrite(path, Array(lines.prefix(2)) + [String(lines[2].prefix(30))], trailingNewline: false)
        let w = try AuditLogWriter(path: path)
        #expect(w.count == 2)
        #expect(w.repairedBytes == 30)
        lines[0] = lines[0].replacingOccurrences(of: "\"summary\":\"s\"", with: "\"summary\":\"t\"")
        try rewrite(path, lines)
        #expect(throws: AuditLogError.self) { try AuditLogWriter(path: path) }
    }
}

@Suite struct AuditVerifyCommandTests {
    @Test func printsOKAndTheCountOrTheFirstBadRecordWithExitStatus() throws {
        var (path, lines) = try writeLog(3)
        let name = (path as NSString).lastPathComponent
        let ok = try Child(vigilBinary, ["audit", "verify", path])
        #expect(ok.wait(timeout: 10) == 0)
        #expect(ok.stdout.first?.hasPrefix("\(name): OK 3 records (3 alerts, 0 notes, 0 seals) in 1 segment; head seq 3 sha256 ") == true, "\(ok.stdout)")
        #expect(ok.stdout.contains { $0.contains("not sealed") })
        lines.swapAt(0, 1)
        try rewrite(path, lines)
        let bad = try Child(vigilBinary, ["audit", "verify", path])
        #expect(bad.wait(timeout: 10) == 1)
        #expect(bad.stdout.first == "\(name): FAILED")
        #expect(bad.stdout.dropFirst().first?.hasPrefix("  problem: \(path):1: ") == true, "\(bad.stdout)")
        let missing = try Child(vigilBinary, ["audit", "verify", path + ".nope"])
        #expect(missing.wait(timeout: 10) == 2)
    }

    @Test func keygenVerifyWithKeyAndAnchorsFromAFile() throws {
        let log = try SealedLog.written(5)
        let keyFile = TestDirectory.make("gen") + "/k"
        let gen = try Child(vigilBinary, ["audit", "keygen", keyFile])
        #expect(gen.wait(timeout: 10) == 0)
        let pub = try String(contentsOfFile: keyFile + ".pub", encoding: .utf8)
        #expect(gen.stdout.first.map { $0 + "\n" } == pub)
        var st = stat()
        #expect(stat(keyFile, &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(try Child(vigilBinary, ["audit", "keygen", keyFile]).wait(timeout: 10) == 1, "a key is never overwritten")

        try (log.root + "\n").write(toFile: log.keyPath + ".pub", atomically: true, encoding: .utf8)
        let ok = try Child(vigilBinary, ["audit", "verify", log.dir, "--key", log.keyPath + ".pub", "--anchors", log.anchorPath])
        #expect(ok.wait(timeout: 10) == 0, "\(ok.stdout) \(ok.stderr)")
        #expect(ok.stdout.contains { $0.contains("anchors: 2 heads checked, all held by the log") }, "\(ok.stdout)")
        let wrongKey = try Child(vigilBinary, ["audit", "verify", log.path, "--key", pub.trimmingCharacters(in: .whitespacesAndNewlines)])
        #expect(wrongKey.wait(timeout: 10) == 1)
        #expect(wrongKey.stdout.contains { $0.contains("not by the key given") }, "\(wrongKey.stdout)")
        let noBrokers = try Child(vigilBinary, ["audit", "verify", log.path, "--anchors", "vigil-audit-heads"])
        #expect(noBrokers.wait(timeout: 10) == 2)
        #expect(noBrokers.stderr.joined().contains("give --brokers"))
    }
}
