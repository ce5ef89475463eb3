import Foundation
import Logging
import Synchronization
import Testing
import VigilContract
import VigilEngine
@testable import VigilService
import VigilTesting

/// The whole pipeline (intake, shards, sink, ledger, checkpoints, restores) on in-memory topics: no broker,
/// no sockets. The same code `vigil run` runs, behind the seams.
@Suite struct MemoryPipelineTests {
    /// Retries and crashes are expected here: only errors are worth printing.
    let silentLogger: Logger = {
        var l = Logger(label: "test")
        l.logLevel = .error
        return l
    }()

    func config(shards: Int = 2, batchSize: Int = 1000, checkpointMs: Int = 10_000) -> PipelineConfig {
        var c = PipelineConfig()
        c.clock = .event
        c.shards = shards
        c.batchSize = batchSize
        c.checkpointIntervalMs = checkpointMs
        return c
    }

    func run(_ cluster: MemoryCluster, _ config: PipelineConfig, clock: PipelineClock = SystemClock(),
             crashAfter: ((EpochLedger.Action) -> Bool)? = nil) throws -> PipelineSummary {
        let p = Pipeline(config: config, rules: pack, logger: silentLogger, io: cluster.io(clock: clock, crashAfter: crashAfter))
        p.stopWhenCaughtUp = true
        return try p.run()
    }

    func cluster(partitions: Int) throws -> (MemoryCluster, String) {
        let dir = try tempDir()
        return (MemoryCluster(partitions: partitions, auditPath: dir + "/audit.jsonl"), dir)
    }

    @Test func theHaringeyScenarioGivesItsTwentyEightAlertsOnTheTopicAndInTheAuditLog() throws {
        let (c, dir) = try cluster(partitions: 1)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let lines = try scenarioLines()
        c.input.produce(events: lines)
        let started = ContinuousClock.now
        let summary = try run(c, config())
        let took = ContinuousClock.now - started
        let expected = try replayIds(lines)
        #expect(expected.count == 28)
        #expect(c.alertIdsOnTopic == expected, "the same alerts, in the same order")
        #expect(try auditIds(c.auditPath) == expected)
        #expect(summary.events == lines.count && summary.alerts == 28 && summary.checkpoints == 1)
        print("Haringey through the in-memory pipeline: \(took)")
    }

    @Test func aGeneratedStreamOverPartitionsAndShardsGivesTheReplayAlertsAndDeadLettersWithReasons() throws {
        let (c, dir) = try cluster(partitions: 4)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let lines = try scenarioLines() + generatedLines(children: 300, days: 180, seed: 5)
        c.input.produce(events: lines)
        c.input.append(key: Array("x".utf8), value: Array("not json".utf8), headers: [("origin", Array("test".utf8))], partition: 2)
        let summary = try run(c, config(batchSize: 200))
        let expected = try replayIds(lines)
        #expect(Set(c.alertIdsOnTopic) == Set(expected) && c.alertIdsOnTopic.count == expected.count)
        #expect(Set(try auditIds(c.auditPath)) == Set(expected))
        #expect(summary.deadLetters == 1)
        let dead = try #require(c.deadLetters.allMessages.first)
        let h = Dictionary(dead.headers.map { ($0.0, String(decoding: $0.1, as: UTF8.self)) }, uniquingKeysWith: { a, _ in a })
        #expect(dead.value == Array("not json".utf8))
        #expect(h["vigil.error.kind"] == "invalid-json" && h["vigil.source.partition"] == "2" && h["origin"] == "test")
    }

    @Test func failedWritesAreRetriedAndNothingIsLostOrDoubled() throws {
        let (c, dir) = try cluster(partitions: 2)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let lines = generatedLines(children: 200, days: 200, seed: 8)
        c.input.produce(events: lines)
        c.alerts.failNextWrites(25)
        c.changelog.failNextWrites(5)
        let summary = try run(c, config(checkpointMs: 100), clock: ManualClock(.now, step: 20_000))
        #expect(summary.deliveryRetries == 30)
        let expected = try replayIds(lines)
        #expect(Set(c.alertIdsOnTopic) == Set(expected) && c.alertIdsOnTopic.count == expected.count)
    }

    /// Where the sink can be when the process dies: after each kind of action it performs.
    enum CrashPoint: String, CaseIterable, Sendable {
        case auditWrite, alertWrite, deadLetterWrite, stateRecordWrite, markerWrite, writeFailed, commit, checkpointDurable, epochDurable

        func matches(_ a: EpochLedger.Action) -> Bool {
            switch (self, a) {
            case (.auditWrite, .write(0, _, _)), (.alertWrite, .write(1, _, _)), (.deadLetterWrite, .write(2, _, _)): return true
            case (.stateRecordWrite, .write(3, let r, _)): return r.key.map { String(decoding: $0, as: UTF8.self) } != Checkpoint.markerKey
            case (.markerWrite, .write(3, let r, _)): return r.key.map { String(decoding: $0, as: UTF8.self) } == Checkpoint.markerKey
            case (.writeFailed, .writeFailed), (.commit, .commit), (.checkpointDurable, .checkpointDurable), (.epochDurable, .epochDurable): return true
            default: return false
            }
        }
    }

    /// A crash after each kind of action, at its 2nd and 20th occurrence, then a restart on the same
    /// topics and audit log: the alerts on the topic and in the audit log are exactly replay's, the audit log
    /// holds no id twice, and every deadline fired.
    @Test(arguments: CrashPoint.allCases, [2, 20])
    func aCrashAfterAnyActionAndARestartGiveTheReplayAlertsWithNoAuditDuplicate(point: CrashPoint, occurrence: Int) throws {
        let (c, dir) = try cluster(partitions: 4)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var lines = generatedLines(children: 300, days: 300, seed: 21)
        // Invalid messages along the stream, for the dead-letter crash points.
        for k in stride(from: 50, to: lines.count, by: 100) { lines.insert("{\"schema_version\":1,\"broken\":\(k)", at: k) }
        c.input.produce(events: lines)
        if point == .writeFailed { c.alerts.failNextWrites(40) }
        let seen = Mutex(0)
        // The clock moves 20 ms at every reading, so checkpoints (every 100 ms) come every few batches.
        let clock = ManualClock(.now, step: 20_000)
        _ = try run(c, config(batchSize: 100, checkpointMs: 100), clock: clock) { action in
            point.matches(action) && seen.withLock { $0 += 1; return $0 == occurrence }
        }
        #expect(seen.withLock { $0 } >= occurrence, "the crash point was reached")
        _ = try run(c, config(batchSize: 100, checkpointMs: 100), clock: clock)

        var expected: [String] = []
        var deadlines = Set<String>()
        let path = dir + "/replay.jsonl"
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: false, encoding: .utf8)
        _ = try Replay(rules: pack).run(files: [path], onInvalid: { _ in }, onAlert: {
            expected.append($0.alertId)
            if $0.deadline != nil { deadlines.insert($0.alertId) }
        })
        let topic = c.alertIdsOnTopic
        let audit = try auditIds(c.auditPath)
        #expect(Set(topic) == Set(expected), "\(point) #\(occurrence): missing \(Set(expected).subtracting(topic).count), unexpected \(Set(topic).subtracting(expected).count)")
        #expect(Set(audit) == Set(expected))
        #expect(audit.count == Set(audit).count, "no id twice in the audit log")
        #expect(deadlines.isSubset(of: Set(topic)) && !deadlines.isEmpty, "every deadline fired")
        #expect(c.deadLetters.allMessages.count >= lines.count / 101, "every invalid message dead-lettered at least once")
    }
}
