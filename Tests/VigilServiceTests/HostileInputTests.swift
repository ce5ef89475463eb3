import Foundation
import Logging
import Synchronization
import Testing
import VigilContract
import VigilEngine
import VigilChaos
import VigilKafka
import VigilRules
@testable import VigilService
import VigilTesting

/// Input an attacker or a clumsy producer sends: after each, the Haringey scenario still raises exactly its
/// alerts, every bad message is a dead letter with a reason or a documented policy outcome, and nothing
/// stalls (every case ends within its bound).
@Suite struct HostileInputTests {
    let capture = LogCapture()

    func run(_ c: MemoryCluster, _ config: PipelineConfig = HostileInputTests.config()) throws -> PipelineSummary {
        let p = Pipeline(config: config, rules: pack, logger: capture.logger(level: .info), io: c.io(clock: SystemClock()))
        p.stopWhenCaughtUp = true
        return try p.run()
    }

    static func config() -> PipelineConfig {
        var c = PipelineConfig()
        c.clock = .event
        c.shards = 2
        return c
    }

    func cluster(partitions: Int = 2) -> MemoryCluster {
        MemoryCluster(partitions: partitions, auditPath: TestDirectory.make("hostile") + "/audit.jsonl")
    }

    func scenario(_ c: MemoryCluster) throws -> [String] {
        let lines = try scenarioLines()
        c.input.produce(events: lines)
        return try replayIds(lines)
    }

    func deadLetterKinds(_ c: MemoryCluster) -> [String] {
        c.deadLetters.allMessages.map { m in
            m.headers.first { $0.0 == "vigil.error.kind" }.map { String(decoding: $0.1, as: UTF8.self) } ?? "?"
        }
    }

    func event(_ id: String, _ type: String = "appointment", at: String = "2007-01-10T10:00:00Z", child: String = "C-X",
               extra: String = "", data: String = #"{"service":"gp","outcome":"attended"}"#) -> String {
        #"{"schema_version":1,"event_id":"\#(id)","type":"\#(type)","occurred_at":"\#(at)",\#(extra)"agency":"gp","child":{"id":"\#(child)"},"data":\#(data)}"#
    }

    // 1. A message over ~1 MB stalled the instance (its dead letter was over the producer's limit).
    @Test func aMessageOverAMegabyteIsADeadLetterCutToItsBudgetWithItsSizeAndHash() throws {
        let c = cluster()
        let huge = [UInt8](repeating: 0x20, count: 1_010_000) + [UInt8(ascii: "{")]
        c.input.append(key: Array("k".utf8), value: huge, partition: 0)
        let expected = try scenario(c)
        let s = try run(c)
        #expect(s.deadLetters == 1)
        #expect(Set(c.alertIdsOnTopic) == Set(expected) && expected.count == 28)
        let dead = try #require(c.deadLetters.allMessages.first)
        let h = Dictionary(dead.headers.map { ($0.0, String(decoding: $0.1, as: UTF8.self)) }, uniquingKeysWith: { a, _ in a })
        #expect(dead.value.count == DeadLetter.defaultMaxBytes)
        #expect(h["vigil.error.kind"] == "too-large")
        #expect(h["vigil.original.bytes"] == "1010001")
        #expect(h["vigil.original.sha256"]?.count == 64)
        #expect(h["vigil.source.offset"] == "0")
    }

    /// Through the embedded broker, a record the broker refuses as too large is a failure no retry cures:
    /// the run stops with an error naming it, instead of retrying for ever.
    @Test func aRecordTheBrokerRefusesAsTooLargeStopsTheRunWithAnError() throws {
        let broker = try EmbeddedBroker()
        for t in ["agency-events", "vigil-alerts", "vigil-dead-letters", "vigil-changelog"] { try broker.createTopic(t, partitions: 1) }
        try produce(try scenarioLines(), to: "agency-events", brokers: broker.bootstrapServers)
        var config = pipelineConfig(brokers: broker.bootstrapServers, dir: try tempDir())
        // Alerts bigger than the producer may send (as a broker with a small max.message.bytes would refuse).
        config.kafkaProducer = ["message.max.bytes=1000"]
        #expect(throws: PipelineError.self) { _ = try runPipeline(config) }
        do { _ = try runPipeline(config) } catch {
            #expect("\(error)".contains("topic vigil-alerts") && "\(error)".contains("too large"))
        }
    }

    // 2. One busy child's state grew past 1 MB and its checkpoint was retried for ever.
    @Test func aBusyChildsStateStaysUnderItsByteBudgetAndTheReductionIsCounted() throws {
        let c = cluster(partitions: 1)
        var lines: [String] = []
        let start = RFC3339.parseDateTime("2007-01-01T00:00:00Z")!.micros
        for i in 0..<12_000 {
            let at = Instant(micros: start + Int64(i) * 600 * Instant.microsPerSecond).description
            lines.append(event("busy-\(i)", "police_investigation", at: at, child: "C-BUSY",
                               data: #"{"investigation_ref":"INV-\#(i)","status":"opened"}"#))
        }
        c.input.produce(events: lines)
        var config = Self.config()
        config.stateMaxBytes = 256 * 1024
        let s = try run(c, config)
        #expect(s.events == lines.count)
        let records = c.changelog.allMessages.filter { $0.key.map { String(decoding: $0, as: UTF8.self) } == "child/C-BUSY" }
        #expect(!records.isEmpty)
        #expect(records.allSatisfy { $0.value.count <= 256 * 1024 }, "largest \(records.map(\.value.count).max() ?? 0)")
        #expect(s.engine.stateDegraded > 0 && s.engine.pendingRefused > 0, "reductions and refused deadlines are counted")
        #expect(capture.contains(.warning, "over its 262144-byte budget"))
    }

    // 3. Enum and const fields accepted any non-string value.
    @Test func enumAndConstFieldsRefuseValuesOfAnotherType() throws {
        let c = cluster()
        let bad = [
            #"{"schema_version":1,"event_id":"b1","type":1,"occurred_at":"2007-01-10T10:00:00Z","agency":"gp","child":{"id":"C-X"},"data":{}}"#,
            event("b2").replacingOccurrences(of: #""agency":"gp""#, with: #""agency":true"#),
            event("b3").replacingOccurrences(of: #""schema_version":1"#, with: #""schema_version":null"#),
            event("b4", "injury_observed", data: #"{"injury":"bruise","sites":["arm"],"count":1,"explanation_assessment":null}"#),
        ]
        for (i, b) in bad.enumerated() { c.input.append(key: Array("b".utf8), value: Array(b.utf8), partition: Int32(i % 2)) }
        let expected = try scenario(c)
        let s = try run(c)
        #expect(s.deadLetters == 4 && s.events == 36)
        #expect(deadLetterKinds(c).sorted() == ["contract", "contract", "contract", "contract"])
        #expect(Set(c.alertIdsOnTopic) == Set(expected))
    }

    // 4. One far-future timestamp moved a partition's clock to 2090 and fired every deadline.
    @Test func implausibleTimesAreDeadLettersAndMoveNoClock() throws {
        let c = cluster(partitions: 1)
        let bad = [
            event("f1", at: "2090-01-01T00:00:00Z"),
            event("f2", at: "9999-12-31T00:00:00Z"),
            event("f3", at: "1900-01-01T00:00:00Z"),
            event("f4", at: "2007-06-01T00:00:00Z", extra: #""recorded_at":"2005-01-01T00:00:00Z","#),
        ]
        for b in bad { c.input.append(key: Array("C-HGY-0001".utf8), value: Array(b.utf8), partition: 0) }
        let expected = try scenario(c)
        let s = try run(c)
        #expect(s.deadLetters == 4)
        #expect(deadLetterKinds(c) == Array(repeating: "implausible-time", count: 4))
        #expect(c.alertIdsOnTopic == expected, "the same alerts, in the same order: no deadline fired early")
    }

    // 5. An audit write failure left a process that never exited.
    @Test func anAuditWriteFailureStopsTheProcessWithAnError() throws {
        let broker = try Child(vigilBinary, ["broker", "--partitions", "1"])
        defer { broker.signal(SIGTERM); _ = broker.wait(timeout: 10) }
        #expect(Child.until(timeout: 20) { !broker.stdout.isEmpty })
        guard let address = broker.stdout.first else { return }
        try produce(try scenarioLines() + generatedLines(children: 200, days: 200, seed: 3), to: "agency-events", brokers: address)
        let dir = try tempDir()
        // The audit log may grow to 8 KiB; past that, writes fail with EFBIG (SIGXFSZ ignored).
        let command = "ulimit -f 8; trap '' XFSZ; exec \(vigilBinary) run --brokers \(address) --audit-file \(dir)/audit.jsonl --rules \(rulesDir) --clock event -X fetch.wait.max.ms=10 --log-level warning"
        let run = try Child("/bin/bash", ["-c", command])
        let status = run.wait(timeout: 90)
        #expect(status != nil && status != 0, "exits, with a failure status")
        #expect(run.stderr.contains { $0.contains("audit log") && $0.contains("write failed") }, "\(run.stderr.suffix(5))")
    }

    // 6. Ids with control characters were printed raw by vigil tail.
    @Test func identifiersWithControlCharactersAreRefusedAndNothingPrintsThemRaw() throws {
        let c = cluster()
        for (i, id) in ["C-\\u001b[2J", "C-\\r\\nforged", "C-\\u009b31m"].enumerated() {
            c.input.append(key: nil, value: Array(event("ctl-\(i)", child: id).utf8), partition: 0)
        }
        let expected = try scenario(c)
        let s = try run(c)
        #expect(s.deadLetters == 3)
        #expect(Set(c.alertIdsOnTopic) == Set(expected))
        let reasons = c.deadLetters.allMessages.compactMap { m in m.headers.first { $0.0 == "vigil.error.reason" }.map { String(decoding: $0.1, as: UTF8.self) } }
        #expect(reasons.allSatisfy { $0.contains("control characters") })
        // Anything a person reads is escaped, whatever reaches it.
        let tailed = TailedAlert(json: try JSONValue.parse(Array(#"{"fired_at":"2007-01-01T00:00:00Z","severity":"high","rule_id":"r","child_id":"C\u001b[2J","summary":"s\r\nx"}"#.utf8)), text: "")
        #expect(!tailed.line.unicodeScalars.contains { $0.value < 0x20 })
        #expect(tailed.line.contains("\\u{1b}[2J") && tailed.line.contains("s\\u{d}\\u{a}x"))
    }

    // 7. The audit path followed symbolic links and ignored its directory's permissions.
    @Test func theAuditLogMustBeARegularFileInADirectoryOthersCannotWrite() throws {
        let dir = TestDirectory.make("audit-path")
        let target = dir + "/precious.txt"
        try "keep me\n".write(toFile: target, atomically: false, encoding: .utf8)
        chmod(target, 0o644)
        let link = dir + "/audit.jsonl"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        #expect(throws: AuditLogError.self) { try AuditLogWriter(path: link) }
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "keep me\n", "the link's target is untouched")
        #expect(((try FileManager.default.attributesOfItem(atPath: target))[.posixPermissions] as? Int) == 0o644)
        let open = TestDirectory.make("open-dir")
        chmod(open, 0o777)
        do { _ = try AuditLogWriter(path: open + "/audit.jsonl") } catch {
            #expect(error.description.contains("writable by others"))
        }
        #expect(!FileManager.default.fileExists(atPath: open + "/audit.jsonl"))
        let fifo = dir + "/fifo"
        mkfifo(fifo, 0o600)
        #expect(throws: AuditLogError.self) { try AuditLogWriter(path: fifo) }
    }

    // 8a, 8b. Secrets printed by --print-config; a malformed -X echoed its value.
    @Test func secretsAreMaskedAndAMalformedPropertyIsNotEchoed() throws {
        var c = PipelineConfig()
        try c.parse(arguments: ["-X", "ssl.key.pem=-----BEGIN PRIVATE KEY-----", "-X", "sasl.oauthbearer.config=principal=x secret=y"])
        #expect(!c.yaml.contains("BEGIN PRIVATE") && !c.yaml.contains("secret=y"))
        do { try c.parse(arguments: ["-X", "hunter2-no-equals"]) } catch {
            #expect(!error.message.contains("hunter2"))
        }
    }

    // 8c. An unknown JSON key (message content) was copied into a log line and the dead-letter headers.
    @Test func anUndeclaredPropertyNameIsNotCopiedAnywhere() throws {
        let c = cluster(partitions: 1)
        let secret = "Jane_Doe_lives_at_1_High_Street"
        c.input.append(key: nil, value: Array(event("u1", data: #"{"service":"gp","outcome":"attended","\#(secret)":1}"#).utf8), partition: 0)
        _ = try scenario(c)
        let s = try run(c)
        #expect(s.deadLetters == 1)
        let headers = c.deadLetters.allMessages.flatMap { $0.headers }.map { String(decoding: $0.1, as: UTF8.self) }
        #expect(!headers.contains { $0.contains(secret) })
        #expect(!capture.lines.contains { $0.message.contains(secret) })
    }

    // 8d. A YAML alias used as a mapping key took exponential time.
    @Test func yamlAliasesAreRefusedBeforeParsing() throws {
        let dir = TestDirectory.make("bomb")
        var lines = ["- list: base", "  items: &a0 [x, y, z, w, v, u, t, s, r, q]"]
        for i in 1..<10 { lines += ["- list: l\(i)", "  items: &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]"] }
        lines += ["- list: bomb", "  items: {*a9 : 1}"]
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir + "/rules.yaml", atomically: false, encoding: .utf8)
        let check = try Child(vigilBinary, ["check", dir])
        #expect(check.wait(timeout: 30) == 1, "refused, at once")
        #expect(check.stderr.contains { $0.contains("YAML aliases (*name) are not allowed") } || check.stdout.contains { $0.contains("YAML aliases") })
        var config = PipelineConfig()
        #expect(throws: PipelineConfig.ConfigError.self) { try config.load(yaml: "a: &x 1\nbrokers: *x\n", path: "v.yaml") }
    }

    // 8e. `within: 100000 working days` silently stopped at a step guard.
    @Test func durationsLongerThanTenYearsAreRefused() {
        guard case .failure(let e) = RuleDuration.parse("100000 working days") else { Issue.record("accepted"); return }
        #expect(e.message.contains("longer than ten years"))
        guard case .success = RuleDuration.parse("2610 working days") else { Issue.record("ten years refused"); return }
    }

    /// A checkpoint of several partitions evicts in one pass, each partition's children idle as of its own clock:
    /// the same as asking partition by partition, in the children's order.
    @Test func evictionOfSeveralPartitionsAtOnceUsesEachPartitionsClock() throws {
        var engine = Engine(rules: pack)
        let decoder = EventDecoder(contract: pack.contract, slots: pack.capturedSlots)
        var r = decoder.makeRecord()
        var alerts: [Alert] = []
        for (id, child, domain) in [("e1", "C-A", 0), ("e2", "C-B", 1), ("e3", "C-C", 0), ("e4", "C-D", 2)] {
            #expect(decoder.decode(event(id, child: child), into: &r) == nil)
            engine.process(r, domain: domain, into: &alerts)
        }
        let early = RFC3339.parseDateTime("2007-02-01T00:00:00Z")!, late = RFC3339.parseDateTime("2009-01-01T00:00:00Z")!
        let gone = engine.evictIdle(clocks: [0: late, 1: early])
        #expect(gone.order.map(\.id) == ["C-A", "C-C"], "partition 1's clock is within the horizon; partition 2 was not asked")
        #expect(gone.byDomain == [0: ["C-A", "C-C"]])
        #expect(engine.child("C-A") == nil && engine.child("C-C") == nil && engine.child("C-B") != nil && engine.child("C-D") != nil)
        #expect(engine.stats.evicted == 2)
        #expect(engine.evictIdle(clocks: [0: late, 1: late, 2: late]).order.map(\.id) == ["C-B", "C-D"])
    }

    // 8g. Children were never evicted: memory grew with every id ever seen.
    @Test func childrenThatCanMatterNoMoreAreEvictedAndTombstoned() throws {
        var engine = Engine(rules: pack)
        let decoder = EventDecoder(contract: pack.contract, slots: pack.capturedSlots)
        var r = decoder.makeRecord()
        var alerts: [Alert] = []
        #expect(decoder.decode(event("e1", child: "C-QUIET"), into: &r) == nil)
        engine.process(r, into: &alerts)
        #expect(decoder.decode(event("e2", "plan_status", child: "C-ON-PLAN", data: #"{"status":"started"}"#), into: &r) == nil)
        engine.process(r, into: &alerts)
        let later = RFC3339.parseDateTime("2009-01-01T00:00:00Z")!
        engine.advance(to: later, into: &alerts)
        #expect(engine.evictIdle(inDomains: [0], at: later) == ["C-QUIET"], "a child with declared state stays")
        #expect(engine.child("C-QUIET") == nil && engine.child("C-ON-PLAN") != nil && engine.stats.evicted == 1)
        // In the changelog, a tombstone removes the child on restore.
        let state = StatePack(pack)
        let kept = Checkpoint.childRecord(try #require(engine.child("C-ON-PLAN")), checkpoint: 0, next: 2, pack: state)
        let records = [Checkpoint.Record(key: "child/C-QUIET", value: kept.value), kept, Checkpoint.tombstone(child: "C-QUIET"),
                       Checkpoint.marker(partition: 0, checkpoint: 0, offset: 2, clock: later, rulesDigest: state.digest)]
        let restored = try #require(try Checkpoint.restore(partition: 0, records: records, pack: state))
        #expect(restored.children.map(\.id) == ["C-ON-PLAN"])
    }

    // 9. Input deleted before it was read was skipped without a word.
    @Test func anInputGapIsRecordedInTheAuditLogLoggedAndStopsThePartition() throws {
        let c = cluster(partitions: 2)
        let expected = try scenario(c)
        let scenarioPartition = Int32(stableHash("C-HGY-0001") % 2)
        let other = 1 - scenarioPartition
        for i in 0..<20 { c.input.append(key: nil, value: Array(event("g\(i)", child: "C-GAP").utf8), partition: other) }
        c.input.deleteRecords(partition: other, before: 5)
        let p = Pipeline(config: Self.config(), rules: pack, logger: capture.logger(), io: c.io())
        let summary = Mutex<PipelineSummary?>(nil)
        let t = Thread { summary.withLock { $0 = try? p.run() } }
        t.start()
        // A stopped partition never catches up: wait for the scenario's alerts, then stop.
        #expect(Child.until(timeout: 60) { Set(c.alertIdsOnTopic) == Set(expected) })
        p.requestStop()
        #expect(Child.until(timeout: 60) { summary.withLock { $0 } != nil })
        #expect(summary.withLock { $0?.inputGaps } == 1)
        #expect(summary.withLock { $0?.events } == 36, "nothing read from the stopped partition")
        #expect(capture.contains(.critical, "input gap: agency-events[\(other)] offsets 0 to 4 were deleted"))
        var notes: [JSONValue] = []
        _ = try AuditLog.verify(path: c.auditPath) { if !$0.isAlert && $0.kind == "input-gap" { notes.append($0.alert) } }
        #expect(notes.count == 1)
        #expect(notes.first?["kind"]?.stringValue == "input-gap" && notes.first?["from"]?.intValue == 0 && notes.first?["to"]?.intValue == 5)
        #expect(notes.first?["action"]?.stringValue == "stop")
        // With record-and-continue, the next run reads on from what is left.
        var config = Self.config()
        config.onInputGap = .recordAndContinue
        let s = try run(c, config)
        #expect(s.inputGaps == 1 && s.events == 15)
    }

    /// The same through the embedded broker: its retention (~5 MiB per partition) deletes the oldest input
    /// before Vigil reads it.
    @Test func anInputGapThroughKafkaIsFoundFromTheLowWatermark() throws {
        let broker = try EmbeddedBroker()
        for t in ["agency-events", "vigil-alerts", "vigil-dead-letters", "vigil-changelog"] { try broker.createTopic(t, partitions: 1) }
        let lines = generatedLines(children: 1000, days: 365, seed: 12)
        try TopicIO.produce(lines, to: "agency-events", brokers: broker.bootstrapServers, keying: .childId, logger: quietLogger)
        let low = try TopicIO.truncatedPartitions(["agency-events"], brokers: broker.bootstrapServers, logger: quietLogger)
        #expect(!low.isEmpty, "the stream is larger than the broker keeps: \(lines.count) events")
        let dir = try tempDir()
        var config = pipelineConfig(brokers: broker.bootstrapServers, dir: dir)
        config.onInputGap = .recordAndContinue
        let p = Pipeline(config: config, rules: pack, logger: capture.logger(), io: PipelineIO.kafka)
        p.stopWhenCaughtUp = true
        let s = try p.run()
        #expect(s.inputGaps == 1)
        #expect(s.events < lines.count && s.events > 0)
        #expect(capture.contains(.critical, "input gap: agency-events[0] offsets 0 to"))
    }
}
