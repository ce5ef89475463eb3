import Foundation
import Testing
import VigilContract
import VigilEngine
import VigilKafka
@testable import VigilService

/// Integration tests: the project's Kafka module against the embedded broker over TCP, and the `vigil`
/// binary in separate processes. Streams are sized well under the embedded broker's ~5 MiB per-partition
/// retention, so nothing a test relies on is dropped.
@Suite(.serialized) struct PipelineTests {
    @Test func theScenarioThroughKafkaGivesExactlyTheReplayAlertsOnTheTopicAndInTheAuditLog() throws {
        let broker = try EmbeddedBroker()
        for t in ["agency-events", "vigil-alerts", "vigil-dead-letters", "vigil-changelog"] { try broker.createTopic(t, partitions: 4) }
        // The scenario, plus a generated stream (~9,000 events, < 1 MiB per partition) so that several
        // children, partitions and shards are involved.
        let lines = try scenarioLines() + generatedLines(children: 300, days: 180, seed: 5)
        try produce(lines, to: "agency-events", brokers: broker.bootstrapServers)
        let dir = try tempDir()
        let summary = try runPipeline(pipelineConfig(brokers: broker.bootstrapServers, dir: dir))
        let expected = try replayIds(lines)
        #expect(expected.count > 40)
        #expect(summary.events == lines.count)
        let topic = alertIds(try readTopic("vigil-alerts", brokers: broker.bootstrapServers).map(\.value))
        #expect(Set(topic) == Set(expected))
        #expect(topic.count == expected.count)
        let audit = try auditIds(dir + "/audit.jsonl")
        #expect(Set(audit) == Set(expected))
        #expect(audit.count == expected.count)
        // The Haringey child's alerts are exactly those of RULES.md.
        let scenarioOnly = try replayIds(try scenarioLines())
        #expect(Set(scenarioOnly).isSubset(of: Set(topic)))
        #expect(scenarioOnly.count == 28)
    }

    @Test func malformedMessagesGoToTheDeadLetterTopicWithAReasonAndTheRestIsProcessed() throws {
        let broker = try EmbeddedBroker()
        for t in ["agency-events", "vigil-alerts", "vigil-dead-letters", "vigil-changelog"] { try broker.createTopic(t, partitions: 1) }
        let good = try scenarioLines()
        let sample = good[4]
        var notUTF8 = Array(sample.utf8)
        if let i = notUTF8.firstIndex(of: UInt8(ascii: "H")) { notUTF8[i] = 0xC3; notUTF8[i + 1] = 0x28 }
        let bad: [(kind: String, bytes: [UInt8])] = [
            ("invalid-json", Array("hello, not json".utf8)),
            ("invalid-json", Array(sample.prefix(60).utf8)),  // truncated
            ("contract", Array(sample.replacingOccurrences(of: #""count":5"#, with: #""count":"five""#).utf8)),  // wrong type
            ("contract", Array(sample.replacingOccurrences(of: "injury_observed", with: "injury_observd").utf8)),  // unknown type
            ("contract", Array(sample.replacingOccurrences(of: #""id":"C-HGY-0001","#, with: "").utf8)),  // missing child id
            ("too-large", Array((String(sample.dropLast()) + #","pad":""# + String(repeating: "x", count: 70_000) + #""}"#).utf8)),
            ("unsupported-schema-version", Array(sample.replacingOccurrences(of: #""schema_version":1"#, with: #""schema_version":2"#).utf8)),
            ("invalid-utf8", notUTF8),
            ("contract", Array("[1,2,3]".utf8)),
            ("invalid-json", []),
        ]
        // Interleave: each bad message after a good one.
        let producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: broker.bootstrapServers), logger: quietLogger) { _, _ in }
        var token: UInt64 = 1
        for (i, line) in good.enumerated() {
            try producer.produce(topic: "agency-events", key: Array("C-HGY-0001".utf8), value: Array(line.utf8), token: token)
            token += 1
            if i < bad.count {
                try producer.produce(topic: "agency-events", key: Array("bad-\(i)".utf8), value: bad[i].bytes,
                                     headers: [("origin", Array("test".utf8))], token: token)
                token += 1
            }
        }
        #expect(producer.flush(timeoutMs: 30_000))
        let dir = try tempDir()
        let summary = try runPipeline(pipelineConfig(brokers: broker.bootstrapServers, dir: dir))
        #expect(summary.deadLetters == bad.count)
        #expect(summary.events == good.count)
        let dead = try readTopic("vigil-dead-letters", brokers: broker.bootstrapServers)
        #expect(dead.count == bad.count)
        for (k, d) in dead.enumerated() where k < bad.count {
            let h = Dictionary(d.headers.map { ($0.0, String(decoding: $0.1, as: UTF8.self)) }, uniquingKeysWith: { a, _ in a })
            #expect(d.value == bad[k].bytes, "original bytes kept")
            #expect(h["vigil.error.kind"] == bad[k].kind, "message \(k): \(h)")
            #expect(!(h["vigil.error.reason"] ?? "").isEmpty)
            #expect(h["vigil.error.path"]?.hasPrefix("$") == true)
            #expect(h["vigil.source.topic"] == "agency-events")
            #expect(h["vigil.source.partition"] == "0")
            #expect(h["vigil.source.offset"] == String(2 * k + 1))
            #expect(h["origin"] == "test", "original headers kept")
        }
        let alerts = alertIds(try readTopic("vigil-alerts", brokers: broker.bootstrapServers).map(\.value))
        #expect(Set(alerts) == Set(try replayIds(good)))
    }

    @Test func sigtermMidStreamAndARestartGiveTheAlertsOfAnUninterruptedRunWithNoIdTwiceInTheAuditLog() throws {
        let broker = try EmbeddedBroker()
        try broker.createTopic("agency-events", partitions: 8)
        try broker.createTopic("vigil-alerts", partitions: 4)
        try broker.createTopic("vigil-dead-letters", partitions: 1)
        try broker.createTopic("vigil-changelog", partitions: 8)
        // ~30,000 events (~10 MB over 8 partitions, well under the retention cap).
        let lines = generatedLines(children: 1500, days: 365, seed: 9)
        try produce(lines, to: "agency-events", brokers: broker.bootstrapServers)
        let expected = Set(try replayIds(lines))
        let dir = try tempDir()
        let audit = dir + "/audit.jsonl"
        let args = ["run", "--brokers", broker.bootstrapServers, "--group", "restart", "--audit-file", audit, "--rules", rulesDir,
                    "--clock", "event", "--shards", "2", "--batch-size", "200", "--max-in-flight", "2", "--log-level", "warning",
                    "-X", "fetch.wait.max.ms=10",
                    // The embedded broker waits out a departed member's session before the next join.
                    "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"]
        let first = try Child(vigilBinary, args)
        // Interrupt once alerts are flowing.
        #expect(Child.until(timeout: 60) { (try? String(contentsOfFile: audit, encoding: .utf8))?.split(separator: "\n").count ?? 0 >= 20 })
        first.signal(SIGTERM)
        #expect(first.wait(timeout: 60) == 0, "\(first.stderr.suffix(10))")
        let firstAudit = try auditIds(audit)
        #expect(!firstAudit.isEmpty)
        #expect(firstAudit.count < expected.count, "the first run stopped mid-stream (\(firstAudit.count) of \(expected.count) alerts)")

        let second = try Child(vigilBinary, args + ["--exit-when-caught-up"])
        #expect(second.wait(timeout: 120) == 0, "\(second.stderr.suffix(10))")
        let topic = alertIds(try readTopic("vigil-alerts", brokers: broker.bootstrapServers).map(\.value))
        #expect(Set(topic) == expected)
        let all = try auditIds(audit)
        #expect(Set(all) == expected)
        #expect(all.count == expected.count, "no alert_id twice in the audit log")
        #expect(Array(all.prefix(firstAudit.count)) == firstAudit, "the second run continued the first run's chain")
    }

    @Test func kcatFromAnotherProcessConsumesTheAlertsTopicOfVigilBroker() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/kcat") else {
            Issue.record("kcat is not installed (scripts/deps installs it)")
            return
        }
        let broker = try Child(vigilBinary, ["broker", "--partitions", "2"])
        #expect(Child.until(timeout: 20) { !broker.stdout.isEmpty })
        guard let address = broker.stdout.first else { return }
        try produce(try scenarioLines(), to: "agency-events", brokers: address)
        let dir = try tempDir()
        let run = try Child(vigilBinary, ["run", "--brokers", address, "--audit-file", dir + "/audit.jsonl", "--rules", rulesDir,
                                          "--clock", "event", "--exit-when-caught-up", "--log-level", "warning"])
        #expect(run.wait(timeout: 60) == 0, "\(run.stderr.suffix(10))")
        let kcat = try Child("/usr/bin/kcat", ["-C", "-b", address, "-t", "vigil-alerts", "-o", "beginning", "-e", "-q"])
        #expect(kcat.wait(timeout: 30) == 0)
        let ids = alertIds(kcat.stdout.filter { !$0.isEmpty }.map { Array($0.utf8) })
        #expect(ids.count == 28)
        #expect(Set(ids) == Set(try replayIds(try scenarioLines())))
        // vigil tail reads the same topic, filtered.
        let tail = try Child(vigilBinary, ["tail", "--brokers", address, "--topic", "vigil-alerts", "--severity", "critical", "--no-follow"])
        #expect(tail.wait(timeout: 30) == 0)
        let critical = tail.stdout.filter { !$0.isEmpty }
        #expect(critical.count == 7, "\(critical)")
        #expect(critical.allSatisfy { $0.contains("  critical  ") })
        broker.signal(SIGTERM)
        #expect(broker.wait(timeout: 10) == 0)
    }

    /// A SIGTERM before the group is joined (the embedded broker delays a new group's join by 3 s) is a clean
    /// stop. (librdkafka before 2.3.0 can abort destroying a cooperative-sticky consumer that never had an
    /// assignment, its issue #4312; seen once in ChaosTests, not reproducible on demand, so KafkaConsumer
    /// leaves such a handle to the process exit.)
    @Test func sigtermBeforeTheGroupIsJoinedExitsCleanly() throws {
        let broker = try Child(vigilBinary, ["broker", "--partitions", "2"])
        #expect(Child.until(timeout: 20) { !broker.stdout.isEmpty })
        guard let address = broker.stdout.first else { return }
        let dir = try tempDir()
        for repartition in [false, true] {
            var args = ["run", "--brokers", address, "--group", "early-\(repartition)", "--audit-file", dir + "/audit-\(repartition).jsonl",
                        "--rules", rulesDir]
            if repartition { args.append("--repartition") }
            let run = try Child(vigilBinary, args)
            #expect(Child.until(timeout: 20) { run.stderr.contains { $0.contains("consuming ") } })
            run.signal(SIGTERM)
            #expect(run.wait(timeout: 30) == 0, "\(run.stderr.suffix(10))")
        }
        broker.signal(SIGTERM)
        #expect(broker.wait(timeout: 10) == 0)
    }
}
