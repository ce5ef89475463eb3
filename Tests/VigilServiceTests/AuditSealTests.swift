import Foundation
import Testing
import VigilContract
@testable import VigilService
import VigilTesting

/// A sealed log in a directory of its own, its key in another, and an anchor file in a third.
struct SealedLog {
    let dir: String
    let path: String
    let keyPath: String
    let root: String
    let anchorPath: String

    init(name: String = "audit.jsonl") throws {
        dir = TestDirectory.make("log")
        path = dir + "/" + name
        let keys = TestDirectory.make("keys")
        keyPath = keys + "/audit.key"
        root = try AuditKeyFile.generate(path: keyPath)
        anchorPath = TestDirectory.make("anchors") + "/heads.jsonl"
    }

    func writer(sealEvery: Int = 3, maxBytes: Int = 0, key: String? = nil, previous: String? = nil, lost: Bool = false,
                anchors: Bool = true, now: @escaping () -> Instant = { .now }) throws -> AuditLogWriter {
        var options = AuditLogOptions()
        options.sealEvery = sealEvery
        options.sealIntervalMicros = 3600 * Instant.microsPerSecond
        options.maxBytes = maxBytes
        options.instance = "test"
        let keys = AuditKeys(key: try AuditKeyFile(path: key ?? keyPath), previous: try previous.map { try AuditKeyFile(path: $0) }, previousLost: lost)
        return try AuditLogWriter(path: path, keys: keys, options: options, anchors: anchors ? [try AuditAnchorFile(path: anchorPath)] : [], now: now)
    }

    /// Appends alerts `from...to`, sealing as a running pipeline does (when due, after each batch of one).
    func append(_ w: AuditLogWriter, _ range: ClosedRange<Int>) throws {
        for i in range {
            try w.append(alertId: "a-\(i)", alertJSON: alertJSON("a-\(i)"))
            try w.sealIfDue()
            try w.sync()
            try w.rotateIfDue()
        }
    }

    /// A log of `n` alerts sealed every 3, closed (a shutdown seal at the end).
    static func written(_ n: Int, sealEvery: Int = 3, maxBytes: Int = 0) throws -> SealedLog {
        let log = try SealedLog()
        let w = try log.writer(sealEvery: sealEvery, maxBytes: maxBytes)
        try log.append(w, 1...n)
        try w.close()
        return log
    }

    var lines: [String] { (try? String(contentsOfFile: path, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? [] }
    func write(_ lines: [String]) throws { try rewrite(path, lines) }

    func verify(key: Bool = true, anchors: Bool = true, keys: [String]? = nil) -> AuditVerifier.Report {
        let (logs, _) = AuditVerifier.logs(in: [dir])
        let anchored = anchors ? (try? AuditAnchorFile.read(path: anchorPath).anchors) ?? [] : nil
        return AuditVerifier.verify(name: "audit", files: logs.first?.files ?? [], keys: keys ?? (key ? [root] : []), anchors: anchored)
    }
}

/// What someone who can write the log's files (but holds no earlier key) can do to it.
enum Forger {
    /// A line's parts: its kind (`alert`, `seal`, ...) and body text.
    static func parts(_ line: String) -> (kind: String, body: String) {
        let afterPrev = line.range(of: "\",\"")!.upperBound
        let rest = line[afterPrev...]
        let colon = rest.range(of: "\":")!
        return (String(rest[..<colon.lowerBound]), String(rest[colon.upperBound...].dropLast()))
    }

    /// The lines renumbered from `firstSeq` and re-chained from `prev`; seals re-signed with `key` (evolving
    /// it) when given, or left as they were (their signatures no longer match).
    static func rechain(_ lines: [String], firstSeq: Int = 1, prev: String = AuditLog.genesis, resealWith key: AuditKeyFile? = nil) throws -> [String] {
        var prev = prev
        var out: [String] = []
        for (i, l) in lines.enumerated() {
            let seq = firstSeq + i
            var (kind, body) = parts(l)
            if kind == "seal", let key {
                var s = AuditSeal(seq: seq, prev: prev, body: try JSONValue.parse(body))!
                (s.log, s.epoch, s.key, s.next) = (key.root, key.epoch, key.publicKey, key.nextPublicKey)
                s.signature = try key.sign(s.message).hexString
                try key.evolve()
                body = String(decoding: s.bodyJSON, as: UTF8.self)
            }
            let line = "{\"seq\":\(seq),\"prev\":\"\(prev)\",\"\(kind)\":\(body)}"
            prev = AuditLog.hash(Array(line.utf8))
            out.append(line)
        }
        return out
    }
}

@Suite struct AuditSealTests {
    @Test func aSealedLogVerifiesWithItsKeyAndItsAnchors() throws {
        let log = try SealedLog.written(10)
        let r = log.verify()
        #expect(r.ok, "\(r.lines)")
        #expect(r.alerts == 10)
        #expect(r.seals == 4, "sealed after 3, 6, 9 and at shutdown")
        #expect(r.anchorsChecked == 4)
        #expect(r.unsealedAfter == 0)
        #expect(r.lastSeal?.reason == "shutdown")
        #expect(r.roots == [log.root])
        // The key moved on once per seal, and its past is gone from the file.
        let key = try AuditKeyFile(path: log.keyPath)
        #expect(key.epoch == 4)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: log.keyPath)))
        #expect(bytes.count == 256)
        #expect(bytes[0..<128].allSatisfy { $0 == 0 } || bytes[128..<256].allSatisfy { $0 == 0 }, "one slot holds the key, the other is erased")
        // The anchors and seals name the same heads.
        let anchors = try AuditAnchorFile.read(path: log.anchorPath).anchors
        #expect(anchors.map(\.seal.seq) == [4, 8, 12, 14])
        #expect(anchors.allSatisfy { $0.seal.isSignatureValid && $0.instance == "test" })
    }

    @Test func anEditIsDetectedWithOrWithoutKeyOrAnchors() throws {
        let log = try SealedLog.written(10)
        var lines = log.lines
        lines[1] = lines[1].replacingOccurrences(of: "\"severity\":\"high\"", with: "\"severity\":\"low\"")
        try log.write(lines)
        for (key, anchors) in [(true, true), (false, false)] {
            let r = log.verify(key: key, anchors: anchors)
            #expect(!r.ok)
            #expect(r.problems.first?.contains("audit.jsonl:3: prev does not match") == true, "\(r.problems)")
        }
    }

    @Test func aDeletedOrMovedRecordIsDetectedWithoutAnchors() throws {
        let log = try SealedLog.written(10)
        var deleted = log.lines
        deleted.remove(at: 4)
        try log.write(deleted)
        #expect(log.verify(key: false, anchors: false).problems.first?.contains(":5:") == true)
        let original = try SealedLog.written(10)
        var swapped = original.lines
        swapped.swapAt(1, 2)
        try original.write(swapped)
        #expect(original.verify(key: false, anchors: false).problems.first?.contains(":2:") == true)
    }

    @Test func droppingRecordsAndRecomputingTheChainBreaksTheSealsSignatures() throws {
        let log = try SealedLog.written(10)
        // Drop the alert at seq 2 (every critical alert, say), renumber, and recompute every prev.
        var lines = log.lines
        lines.remove(at: 1)
        try log.write(try Forger.rechain(lines))
        #expect(AuditLog.verify(bytes: Array(log.lines.joined(separator: "\n").utf8) + [0x0A]) == .ok(count: 13, headSeq: 13, headHash: AuditLog.hash(Array(log.lines.last!.utf8))),
                "the hash chain alone is fooled")
        for (key, anchors) in [(true, true), (true, false), (false, false)] {
            let r = log.verify(key: key, anchors: anchors)
            #expect(!r.ok)
            #expect(r.problems.first?.contains("the seal's signature does not verify") == true, "\(r.problems)")
        }
    }

    @Test func reSealingWithAnotherKeyIsDetectedWithTheKeyOrTheAnchors() throws {
        let log = try SealedLog.written(10)
        var lines = log.lines
        lines.remove(at: 1)
        let attacker = TestDirectory.make("attacker") + "/k"
        _ = try AuditKeyFile.generate(path: attacker)
        try log.write(try Forger.rechain(lines, resealWith: try AuditKeyFile(path: attacker)))
        let withKey = log.verify(key: true, anchors: false)
        #expect(withKey.problems.first?.contains("not by the key given") == true, "\(withKey.problems)")
        #expect(!log.verify(key: true, anchors: true).ok)
        // Anchors are matched to the log by its keys: without --key, the anchors of the real key look like
        // another log's, and the report says so.
        let withAnchors = log.verify(key: false, anchors: true)
        #expect(withAnchors.warnings.contains { $0.contains("none of the 4 anchors belongs to this log") }, "\(withAnchors.warnings)")
        // Neither key nor anchors: the forgery is consistent, and the report says what was not checked.
        let neither = log.verify(key: false, anchors: false)
        #expect(neither.ok)
        #expect(neither.warnings.contains { $0.contains("no --key given") })
    }

    @Test func aStolenCurrentKeyCannotReSealThePast() throws {
        let log = try SealedLog.written(9)
        // The attacker takes the host now: the key file (at epoch 3), and the log.
        let stolen = TestDirectory.make("stolen") + "/k"
        try FileManager.default.copyItem(atPath: log.keyPath, toPath: stolen)
        chmod(stolen, 0o600)
        var lines = log.lines
        lines.remove(at: 1)
        try log.write(try Forger.rechain(lines, resealWith: try AuditKeyFile(path: stolen)))
        // Found by the chain and seals alone: no --key, no anchors needed.
        let r = log.verify(key: false, anchors: false)
        #expect(!r.ok)
        #expect(r.problems.first?.contains("the first seal is at epoch 3") == true, "\(r.problems)")
        // Keeping the seals before the change and re-sealing only after it: the next seal needs epoch 2's key.
        let again = try SealedLog.written(9)
        let stolenAgain = TestDirectory.make("stolen") + "/k"
        try FileManager.default.copyItem(atPath: again.keyPath, toPath: stolenAgain)
        var tail = Array(again.lines[8...])
        tail.remove(at: 1)
        let kept = Array(again.lines[..<8])
        try again.write(kept + (try Forger.rechain(tail, firstSeq: 9, prev: AuditLog.hash(Array(kept[7].utf8)),
                                                     resealWith: try AuditKeyFile(path: stolenAgain))))
        let r2 = again.verify(key: false, anchors: false)
        #expect(r2.problems.first?.contains("but the seal before named") == true, "\(r2.problems)")
    }

    @Test func truncatingTheTailIsDetectedOnlyWithAnchors() throws {
        let log = try SealedLog.written(10)
        // Cut back to the seal at seq 8: what remains is a valid, sealed, shorter log.
        try log.write(Array(log.lines.prefix(8)))
        #expect(log.verify(key: true, anchors: false).ok, "a log cut at a seal is consistent on its own")
        let r = log.verify()
        #expect(!r.ok)
        #expect(r.problems.first?.contains("a seal at seq 14") == true && r.problems.first?.contains("the log ends at seq 8") == true, "\(r.problems)")
    }

    @Test func anOldCopyPutBackIsDetectedWithAnchors() throws {
        let log = try SealedLog()
        let w = try log.writer()
        try log.append(w, 1...6)
        let old = log.lines
        try log.append(w, 7...12)
        try w.close()
        try log.write(old)
        #expect(log.verify(anchors: false).ok)
        #expect(!log.verify().ok)
    }

    @Test func anchorsNotSignedByTheLogsKeyAreReportedNotTrusted() throws {
        let log = try SealedLog.written(4)
        var anchor = try #require(try AuditAnchorFile.read(path: log.anchorPath).anchors.last)
        anchor.seal.seq = 99
        try (String(decoding: anchor.seal.anchor(hash: anchor.hash, instance: "x", segment: "s"), as: UTF8.self) + "\nnot json\n")
            .write(toFile: log.anchorPath, atomically: false, encoding: .utf8)
        let read = try AuditAnchorFile.read(path: log.anchorPath)
        #expect(read.unreadable == ["\(log.anchorPath):2: not an anchor"])
        let r = log.verify()
        #expect(r.ok, "a forged anchor cannot fail a log, \(r.problems)")
        #expect(r.warnings.contains { $0.contains("not signed by the key it names") })
    }

    @Test func aRecordOfANewerFormatIsRefusedNotMisread() throws {
        let log = try SealedLog.written(3)
        var lines = log.lines
        lines.append(#"{"seq":\#(lines.count + 1),"prev":"\#(AuditLog.hash(Array(lines[lines.count - 1].utf8)))","segment":{"format":3,"opened_at":"2026-01-01T00:00:00Z"}}"#)
        try log.write(lines)
        #expect(log.verify().problems.first?.contains("format 3, newer than this Vigil reads") == true)
    }
}
