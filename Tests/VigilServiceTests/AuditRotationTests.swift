import Foundation
import Testing
import VigilContract
@testable import VigilService
import VigilTesting

@Suite struct AuditRotationTests {
    /// A sealed log rotated every ~1.5 KB: 20 alerts make several segments.
    func rotated() throws -> (SealedLog, [AuditSegments.File]) {
        let log = try SealedLog()
        let w = try log.writer(sealEvery: 3, maxBytes: 1500)
        try log.append(w, 1...20)
        try w.close()
        return (log, AuditSegments(activePath: log.path).files())
    }

    func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    @Test func segmentsAreNamedBySequenceEndWithASealAndChainOn() throws {
        let (log, files) = try rotated()
        #expect(files.count >= 4, "\(files.map(\.path))")
        #expect(files.first?.path == log.dir + "/audit.000000000001.jsonl")
        #expect(files.last?.path == log.path)
        for (i, f) in files.enumerated() {
            let ls = lines(f.path)
            let first = try #require(AuditLine.parse(Array(ls[0].utf8)))
            if let n = f.first { #expect(first.seq == n) }
            if i > 0 {
                guard case .segment(let h) = first.entry else { Issue.record("\(f.path) does not open with a segment record"); continue }
                #expect(h.format == 2 && h.log == log.root)
                #expect(first.prev == AuditLog.hash(Array(lines(files[i - 1].path).last!.utf8)), "chains to the previous segment's last record")
            }
            if f.first != nil, case .seal? = AuditLine.parse(Array(ls.last!.utf8))?.entry {} else if f.first != nil {
                Issue.record("\(f.path) does not end with a seal")
            }
        }
        let r = log.verify()
        #expect(r.ok, "\(r.lines)")
        #expect(r.alerts == 20 && r.segments == files.count)
        #expect(r.anchorsChecked == r.seals)
        // The chain-only check reads every segment too, and a writer reopening sees every id.
        var ids: [String] = []
        guard case .ok = try AuditLog.verify(path: log.path, each: { if $0.isAlert { ids.append($0.alertId) } }) else { Issue.record("chain"); return }
        #expect(ids == (1...20).map { "a-\($0)" })
        let w = try log.writer()
        #expect(try w.append(alertId: "a-1", alertJSON: alertJSON("a-1")) == false)
    }

    @Test func aMissingReorderedOrReplacedSegmentIsDetected() throws {
        var (log, files) = try rotated()
        try FileManager.default.removeItem(atPath: files[1].path)
        #expect(log.verify().problems.first?.contains("the segment does not follow on from \(files[0].path)") == true, "\(log.verify().problems)")

        (log, files) = try rotated()
        // Two segments swapped by renaming.
        try FileManager.default.moveItem(atPath: files[1].path, toPath: files[1].path + ".tmp")
        try FileManager.default.moveItem(atPath: files[2].path, toPath: files[1].path)
        try FileManager.default.moveItem(atPath: files[1].path + ".tmp", toPath: files[2].path)
        #expect(log.verify().problems.first?.contains("named as the segment starting at seq") == true, "\(log.verify().problems)")

        (log, files) = try rotated()
        try FileManager.default.removeItem(atPath: files[0].path)
        #expect(log.verify().problems.first?.contains("the segments before it are missing") == true)

        // An old segment put back in place of a later one (its content replayed under the later name).
        (log, files) = try rotated()
        try FileManager.default.removeItem(atPath: files[2].path)
        try FileManager.default.copyItem(atPath: files[1].path, toPath: files[2].path)
        let replayed = log.verify(key: false, anchors: false)
        #expect(!replayed.ok && !replayed.problems.isEmpty, "\(replayed.lines)")

        // Replaced: one record dropped from segment 2, and everything after it re-chained and re-sealed with
        // another key, segment names and headers kept consistent.
        (log, files) = try rotated()
        let attacker = TestDirectory.make("attacker") + "/k"
        _ = try AuditKeyFile.generate(path: attacker)
        let key = try AuditKeyFile(path: attacker)
        var kept = lines(files[0].path)
        var later = files[1...].map { lines($0.path) }
        later[0].remove(at: 1)
        var seq = kept.count + 1
        for (k, segment) in later.enumerated() {
            let forged = try Forger.rechain(segment, firstSeq: seq, prev: AuditLog.hash(Array(kept.last!.utf8)), resealWith: key)
            try FileManager.default.removeItem(atPath: files[k + 1].path)
            let name = files[k + 1].first == nil ? log.path : AuditSegments(activePath: log.path).closedPath(first: seq)
            try rewrite(name, forged)
            seq += forged.count
            kept = forged
        }
        let r = log.verify(anchors: false)
        #expect(r.problems.first?.contains("signed by key \(key.root)") == true || r.problems.first?.contains("re-sealed") == true, "\(r.problems)")
    }

    @Test func anArchiveVerifiesWithTheLiveDirectoryAndTheWriterGoesOn() throws {
        let (log, files) = try rotated()
        let archive = TestDirectory.make("archive")
        for f in files.dropLast(2) {
            try FileManager.default.moveItem(atPath: f.path, toPath: archive + "/" + (f.path as NSString).lastPathComponent)
        }
        #expect(log.verify().problems.first?.contains("the segments before it are missing") == true)
        let both = AuditVerifier.logs(in: [archive, log.dir])
        #expect(both.problems.isEmpty && both.logs.count == 1)
        let anchors = try AuditAnchorFile.read(path: log.anchorPath).anchors
        var r = AuditVerifier.verify(name: "audit", files: both.logs[0].files, keys: [log.root], anchors: anchors)
        #expect(r.ok, "\(r.lines)")

        // The writer needs only what is live: it goes on after the archived segments.
        let w = try log.writer(sealEvery: 3, maxBytes: 1500)
        #expect(w.notices.contains { $0.contains("archived") })
        try log.append(w, 21...30)
        try w.close()
        let again = AuditVerifier.logs(in: [archive, log.dir])
        r = AuditVerifier.verify(name: "audit", files: again.logs[0].files, keys: [log.root], anchors: try AuditAnchorFile.read(path: log.anchorPath).anchors)
        #expect(r.ok && r.alerts == 30, "\(r.lines)")
        // A copy of a segment both archived and live is read once; a different file in its place is a problem.
        try FileManager.default.copyItem(atPath: archive + "/audit.000000000001.jsonl", toPath: log.dir + "/audit.000000000001.jsonl")
        #expect(AuditVerifier.logs(in: [archive, log.dir]).problems.isEmpty)
        try rewrite(log.dir + "/audit.000000000001.jsonl", ["x"])
        #expect(AuditVerifier.logs(in: [archive, log.dir]).problems.first?.contains("different files for the same segment") == true)
    }

    @Test func tailReadsEverySegmentAndFollowsARotationWithoutLosingAnAlert() throws {
        let log = try SealedLog()
        let w = try log.writer(sealEvery: 3, maxBytes: 1500)
        try log.append(w, 1...8)
        let follower = AuditFollower(path: log.path, fromEnd: false)
        var seen = follower.poll().map { $0.json["alert_id"]?.stringValue ?? "" }
        #expect(seen == (1...8).map { "a-\($0)" })
        // Appends, then rotations, between two polls: the alerts written to the old file before it was
        // renamed are read from it, then the new file from its start.
        for i in 9...20 {
            try log.append(w, i...i)
            if i % 4 == 0 { seen += follower.poll().map { $0.json["alert_id"]?.stringValue ?? "" } }
        }
        try w.close()
        seen += follower.poll().map { $0.json["alert_id"]?.stringValue ?? "" }
        #expect(seen == (1...20).map { "a-\($0)" })
        #expect(w.rotations >= 3)
    }

    @Test func rotationByAgeSkipsAnIdleSegment() throws {
        let log = try SealedLog()
        let clock = ManualClock(Instant(micros: 1_700_000_000_000_000))
        var options = AuditLogOptions()
        options.maxAgeMicros = 60 * Instant.microsPerSecond
        let w = try AuditLogWriter(path: log.path, keys: AuditKeys(key: try AuditKeyFile(path: log.keyPath)), options: options, now: { clock.now() })
        try w.append(alertId: "a-1", alertJSON: alertJSON("a-1"))
        try w.sync()
        #expect(try w.rotateIfDue() == false)
        clock.advance(seconds: 61)
        #expect(try w.rotateIfDue() == true)
        clock.advance(seconds: 3600)
        #expect(try w.rotateIfDue() == false, "nothing new in the segment: no empty segments")
    }
}

@Suite struct AuditKeyTests {
    @Test func aCrashBetweenASealAndTheKeysEvolutionIsFinishedAtOpen() throws {
        let log = try SealedLog()
        var w: AuditLogWriter? = try log.writer()
        try log.append(w!, 1...2)
        let before = TestDirectory.make("copy") + "/k"
        try FileManager.default.copyItem(atPath: log.keyPath, toPath: before)
        try log.append(w!, 3...3)
        w = nil
        // The seal is durable but the key file is as it was before it: a crash in between.
        try FileManager.default.removeItem(atPath: log.keyPath)
        try FileManager.default.copyItem(atPath: before, toPath: log.keyPath)
        let reopened = try log.writer()
        #expect(reopened.notices.contains { $0.contains("moved on to epoch 1") })
        try log.append(reopened, 4...6)
        try reopened.close()
        #expect(log.verify().ok)
    }

    @Test func aKeyFromAnotherLogOrTooFarBehindOrNoKeyIsRefused() throws {
        let log = try SealedLog.written(9)
        let other = TestDirectory.make("other") + "/k"
        _ = try AuditKeyFile.generate(path: other)
        let otherKey = try AuditKeyFile(path: other)
        try otherKey.evolve()
        #expect(throws: AuditLogError.self) { try log.writer(key: other) }
        #expect(throws: AuditLogError.self) { try AuditLogWriter(path: log.path) }
        do { _ = try AuditLogWriter(path: log.path) } catch {
            #expect(error.description.contains("no --audit-key was given"))
        }
        // A fresh key of another log, without --audit-previous-key or --audit-key-lost.
        let fresh = TestDirectory.make("fresh") + "/k"
        _ = try AuditKeyFile.generate(path: fresh)
        do { _ = try log.writer(key: fresh) } catch {
            #expect("\(error)".contains("to change keys give --audit-previous-key"))
        }
        // A key already used by another log, on a log never sealed.
        let plain = tempPath("plain")
        _ = try AuditLogWriter(path: plain)
        do {
            _ = try AuditLogWriter(path: plain, keys: AuditKeys(key: otherKey))
            Issue.record("not refused")
        } catch {
            #expect(error.description.contains("has sealed 1 times already"))
        }
    }

    @Test func aKeyOthersCanReadOrInsideTheLogsDirectoryIsRefused() throws {
        let log = try SealedLog()
        chmod(log.keyPath, 0o640)
        #expect(throws: AuditKeyError.self) { try AuditKeyFile(path: log.keyPath) }
        chmod(log.keyPath, 0o600)
        var config = PipelineConfig()
        config.auditFile = log.path
        config.auditKey = log.dir + "/inside.key"
        _ = try AuditKeyFile.generate(path: config.auditKey)
        do {
            _ = try AuditLogWriter.open(config)
            Issue.record("not refused")
        } catch {
            #expect(error.description.contains("inside the audit log's directory"))
        }
        config.auditKey = log.keyPath
        config.auditAnchorFile = log.dir + "/heads.jsonl"
        #expect(throws: AuditLogError.self) { try AuditLogWriter.open(config) }
        config.auditAnchorFile = log.anchorPath
        let w = try AuditLogWriter.open(config)
        #expect(w.isSealed && w.anchors.count == 1)
    }

    @Test func changingKeysWithThePreviousKeyIsAHandoverInTheChain() throws {
        let log = try SealedLog.written(4)
        let next = TestDirectory.make("next") + "/k"
        let newRoot = try AuditKeyFile.generate(path: next)
        let w = try log.writer(key: next, previous: log.keyPath)
        #expect(w.notices.contains { $0.contains("signed the handover") })
        try log.append(w, 5...10)
        try w.close()
        // The old key is erased: nothing can seal with it again.
        #expect(throws: AuditKeyError.self) { try AuditKeyFile(path: log.keyPath) }
        let r = log.verify(keys: [log.root])
        #expect(r.ok, "\(r.lines)")
        #expect(r.roots == [log.root, newRoot])
        #expect(r.anchorsChecked == r.seals)
        let handover = try #require(log.lines.compactMap { AuditLine.parse(Array($0.utf8)) }.first {
            if case .seal(let s) = $0.entry { return s.reason == "rekey" }
            return false
        })
        guard case .seal(let s) = handover.entry else { return }
        #expect(s.log == log.root && s.next == newRoot)
    }

    @Test func changingKeysWhenThePreviousIsLostNeedsTheNewKeyToVerify() throws {
        let log = try SealedLog.written(4)
        let next = TestDirectory.make("next") + "/k"
        let newRoot = try AuditKeyFile.generate(path: next)
        let w = try log.writer(key: next, lost: true)
        try log.append(w, 5...8)
        try w.close()
        let onlyOld = log.verify(keys: [log.root])
        #expect(onlyOld.problems.first?.contains("without the previous key's signature") == true, "\(onlyOld.problems)")
        let both = log.verify(keys: [log.root, newRoot])
        #expect(both.ok, "\(both.lines)")
    }

    @Test func aLogWrittenBeforeSealingVerifiesAndGoesOnSealed() throws {
        let log = try SealedLog()
        let plain = try AuditLogWriter(path: log.path)
        for i in 1...5 { try plain.append(alertId: "a-\(i)", alertJSON: alertJSON("a-\(i)")) }
        try plain.sync()
        let w = try log.writer()
        #expect(w.sealDue(at: .now) == "restart", "what a crash or an unsealed writer left is sealed first")
        #expect(try w.sealIfDue())
        try log.append(w, 6...7)
        try w.close()
        let r = log.verify()
        #expect(r.ok && r.unsealedBefore == 5 && r.alerts == 7, "\(r.lines)")
        #expect(r.lines.contains { $0.contains("the first 5 records were written before the log was sealed") })
        #expect(log.lines.compactMap { AuditLine.parse(Array($0.utf8)) }.contains {
            if case .seal(let s) = $0.entry { return s.reason == "restart" && s.seq == 6 }
            return false
        })
    }
}
