import Foundation
import Testing
import VigilContract
import VigilKafka
@testable import VigilService
import VigilTesting

/// `vigil run` killed with SIGKILL in the middle of a seal and of a rotation (at points named by
/// `VIGIL_TEST_KILL_AT`), then restarted: after every crash the log verifies with its key and anchors, and
/// at the end it holds every alert of the replay exactly once.
@Suite(.serialized) struct AuditCrashTests {
    @Test func sigkillDuringASealOrARotationLosesAndRepeatsNothing() throws {
        let broker = try EmbeddedBroker()
        for t in ["agency-events", "vigil-changelog"] { try broker.createTopic(t, partitions: 4) }
        for t in ["vigil-alerts", "vigil-dead-letters", "vigil-audit-heads"] { try broker.createTopic(t, partitions: 1) }
        let lines = generatedLines(children: 1000, days: 365, seed: 21)
        try produce(lines, to: "agency-events", brokers: broker.bootstrapServers)
        let expected = try replayIds(lines)
        // The five runs below need ~60 new alerts between them (measured: 58); a margin so that none runs out.
        #expect(expected.count > 90, "enough alerts for several seals and rotations (\(expected.count))")

        let dir = try tempDir()
        let keyPath = try tempDir() + "/audit.key"
        let root = try AuditKeyFile.generate(path: keyPath)
        let anchorPath = try tempDir() + "/heads.jsonl"
        let audit = dir + "/audit.jsonl"
        // A group per run: a killed member is not waited out (its session), and each run starts from the
        // changelog's state and the first offset, re-raising alerts the log holds already.
        func args(_ run: Int) -> [String] { ["run", "--brokers", broker.bootstrapServers, "--group", "sealing-\(run)", "--audit-file", audit, "--rules", rulesDir,
                    "--audit-key", keyPath, "--audit-seal-every", "4", "--audit-max-bytes", "12000", "--audit-anchor-file", anchorPath,
                    "--clock", "event", "--shards", "2", "--batch-size", "100", "--max-in-flight", "2", "--log-level", "warning",
                    "--exit-when-caught-up", "-X", "fetch.wait.max.ms=10", "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"] }

        func verify(_ when: String) -> AuditVerifier.Report {
            let anchors = (try? AuditAnchorFile.read(path: anchorPath))?.anchors ?? []
            let r = AuditVerifier.verify(name: "audit", files: AuditSegments(activePath: audit).files(), keys: [root], anchors: anchors)
            #expect(r.ok, "\(when): \(r.lines)")
            return r
        }

        // Each run is killed at one point, on its Nth passage; the next run recovers and goes on.
        let points = ["seal-written:2", "key-written:3", "rotate-renamed:1", "rotate-created:1", "seal-synced:5"]
        for (i, point) in points.enumerated() {
            let run = try Child(vigilBinary, args(i), environment: ["VIGIL_TEST_KILL_AT": point])
            let status = run.wait(timeout: 120)
            let name = String(point.split(separator: ":")[0])
            #expect(run.stderr.contains { $0.contains("killed at \(name)") }, "\(point) was not reached: \(run.stderr.suffix(8))")
            #expect(status == SIGKILL, "\(point): exit status \(String(describing: status))")
            _ = verify("after a kill at \(point)")
        }
        let last = try Child(vigilBinary, args(points.count))
        #expect(last.wait(timeout: 120) == 0, "\(last.stderr.suffix(10))")
        let report = verify("at the end")
        #expect(report.segments >= 3 && report.seals >= 10, "\(report.lines)")
        #expect(report.unsealedAfter == 0, "a clean shutdown seals what it wrote")
        // The heads went to the topic too (those produced just before a kill may not have): verify reads them there.
        let fromTopic = try Child(vigilBinary, ["audit", "verify", dir, "--key", root, "--anchors", "vigil-audit-heads", "--brokers", broker.bootstrapServers])
        #expect(fromTopic.wait(timeout: 60) == 0, "\(fromTopic.stdout) \(fromTopic.stderr.suffix(5))")
        #expect(fromTopic.stdout.contains { $0.contains("heads checked, all held by the log") }, "\(fromTopic.stdout)")
        // vigil tail reads the directory: every segment, each alert once.
        let tail = try Child(vigilBinary, ["tail", "--audit", dir, "--no-follow", "--format", "json"])
        #expect(tail.wait(timeout: 30) == 0)
        #expect(alertIds(tail.stdout.map { Array($0.utf8) }).count == expected.count)
        let ids = try auditIds(audit)
        #expect(Set(ids) == Set(expected))
        #expect(ids.count == expected.count, "no alert twice, none lost")
    }
}
