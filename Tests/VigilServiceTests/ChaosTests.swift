import Foundation
import Synchronization
import Testing
import VigilChaos
import VigilContract
import VigilKafka
import VigilTesting
@testable import VigilService

/// Crash safety and scale-out, end to end: `vigil run` processes in one consumer group, killed, joined,
/// stopped and cut off from the broker, then checked against `vigil replay` on the same stream (the check
/// `scripts/chaos` runs at full size).
///
/// Sizes: each stream is 20,000 generated events (~6.5 MB of JSON, ~1.3 MB lz4-compressed as the harness
/// produces it) over 4 partitions, so under 0.5 MB per partition of the input, changelog, repartition and
/// alerts topics, far below the embedded broker's ~5 MiB per-partition retention. The harness also checks the
/// low watermarks at the end and fails the run if the broker dropped anything.
@Suite(.serialized) struct ChaosTests {
    func plan(_ name: String) throws -> ChaosPlan {
        var p = ChaosPlan(vigil: vigilBinary, rules: rulesDir, workDir: try tempDir() + "/" + name)
        p.events = 20_000
        p.partitions = 4
        p.timeout = 300
        return p
    }

    func run(_ plan: ChaosPlan) throws -> ChaosReport {
        let report = try Chaos.run(plan) { _ in }
        #expect(report.passed, "\(report.text)\n(instance logs in \(plan.workDir))")
        #expect(report.expected > 300 && report.expectedDeadline > 200, "the stream should raise enough alerts to mean something")
        return report
    }

    /// With static membership (`--instance-id`, kept across each instance's restarts), as deployments should run.
    @Test func sigkillsOfRandomInstancesAtRandomMomentsLoseAndDuplicateNothing() throws {
        var p = try plan("kills")
        p.staticMembership = true
        p.instances = 2
        p.kills = 6
        p.killGap = 0.5...2.5
        let report = try run(p)
        #expect(report.kills == 6)
        #expect(report.restarts == 6)
        #expect(report.audits.count == 2)
    }

    @Test func brokerRequestErrorsAndABrokerDownForTenSecondsLoseAndDuplicateNothing() throws {
        let broker = try EmbeddedBroker(logger: quietLogger)
        var p = try plan("faults")
        for t in ["agency-events", "vigil-alerts", "vigil-dead-letters", "vigil-changelog", "vigil-repartition"] {
            try broker.createTopic(t, partitions: p.partitions)
        }
        p.brokers = broker.bootstrapServers
        p.instances = 2
        p.kills = 2
        p.killGap = 8...12
        // Longer than the outage and the reconnection after it (ChaosPlan.validate says why).
        p.sessionTimeoutMs = 16_500
        // Retriable errors: 6 NOT_LEADER_OR_FOLLOWER, 7 REQUEST_TIMED_OUT, 15 COORDINATOR_NOT_AVAILABLE.
        p.steps = [
            ChaosStep(at: 0, afterProgress: 0.05, "Produce, Fetch and OffsetCommit requests fail", .call {
                broker.failNextRequests(.produce, count: 10, error: 7)
                broker.failNextRequests(.fetch, count: 10, error: 6)
                broker.failNextRequests(.offsetCommit, count: 5, error: 15)
            }),
            ChaosStep(at: 0, afterProgress: 0.2, "broker down", .outage(seconds: 10, down: { broker.setBrokerDown(1) }, up: { broker.setBrokerUp(1) })),
            ChaosStep(at: 2, "Produce requests fail again", .call { broker.failNextRequests(.produce, count: 10, error: 6) }),
        ]
        let report = try run(p)
        #expect(report.stepsDone.count == 4)
    }

    /// The embedded broker aborted the test process (`rd_kafka_mock_cgrp_member_add: Assertion '!member->resp'`)
    /// when an outage, or the clients' reconnection after it, outlasted the members' sessions: such a plan is
    /// refused before anything starts.
    @Test func aBrokerOutageLongerThanTheSessionsIsRefused() throws {
        var p = ChaosPlan(vigil: vigilBinary, rules: rulesDir, workDir: "/nonexistent")
        p.sessionTimeoutMs = 6000
        p.steps = [ChaosStep(at: 0, "broker down", .outage(seconds: 10, down: {}, up: {}))]
        #expect(throws: Chaos.Failure.self) { try p.validate() }
        do { _ = try Chaos.run(p) { _ in } } catch {
            #expect("\(error)".contains("needs session-timeout-ms of at least 16500"))
        }
        // 15 s (what the fault test used when it aborted): the outage plus librdkafka's default reconnect
        // backoff, or plus 1 s with jitter and a margin, do not fit.
        p.sessionTimeoutMs = 15_000
        #expect(throws: Chaos.Failure.self) { try p.validate() }
        p.reconnectBackoffMaxMs = 10_000
        p.sessionTimeoutMs = 25_000
        #expect(throws: Chaos.Failure.self) { try p.validate() }
        p.reconnectBackoffMaxMs = 1000
        p.sessionTimeoutMs = 16_500
        try p.validate()
    }

    @Test func aThirdInstanceJoiningMidStreamThenOneLeavingMovesPartitionsStateAndDeadlines() throws {
        var p = try plan("rebalance")
        p.instances = 2
        p.kills = 0
        p.steps = [
            ChaosStep(at: 0, afterProgress: 0.1, "a third instance joins", .join),
            ChaosStep(at: 4, "instance 0 leaves (SIGTERM)", .leave),
        ]
        let report = try run(p)
        #expect(report.joins == 1)
        #expect(report.leaves == 1)
        #expect(report.audits.count == 3)
    }

    @Test func inputKeyedAtRandomIsRepartitionedByChildAndSurvivesSigkills() throws {
        var p = try plan("repartition")
        p.instances = 1
        p.kills = 3
        p.randomKeys = true
        p.killGap = 1...3
        let report = try run(p)
        #expect(report.kills == 3)
    }

    /// One record in ten arrives 1 to 20 days after it occurred: net of the withdrawals, the alerts on the
    /// topic and in the audit logs are exactly those of the sorted replay, through SIGKILLs of two instances.
    @Test func recordsArrivingLateNetToTheSortedReplayThroughSigkills() throws {
        var p = try plan("late")
        p.instances = 2
        p.kills = 4
        p.late = "10:1-20"
        p.killGap = 1...3
        let report = try run(p)
        #expect(report.kills == 4)
        #expect(report.topicWithdrawals > 10, "late records withdrew alerts")
    }

    @Test func inputKeyedAtRandomWithoutRepartitioningIsReported() throws {
        let broker = try EmbeddedBroker()
        for t in ["agency-events", "vigil-alerts", "vigil-dead-letters", "vigil-changelog"] { try broker.createTopic(t, partitions: 4) }
        let lines = generatedLines(children: 100, days: 120, seed: 3)
        let keys = Mutex<SplitMix64>(SplitMix64(state: 11))
        try produce(lines, to: "agency-events", brokers: broker.bootstrapServers) { _ in
            Array("k\(keys.withLock { $0.next() })".utf8)
        }
        let summary = try runPipeline(pipelineConfig(brokers: broker.bootstrapServers, dir: try tempDir()))
        #expect(summary.events == lines.count)
        // A child's ~7 events spread over 4 partitions, read a partition's run at a time: about 2 moves each.
        #expect(summary.domainChanges > 100, "events for children whose previous event came from another partition are counted")
    }

    @Test func aLateEventThroughKafkaWithdrawsTheAlertItsDeadlineFired() throws {
        let broker = try EmbeddedBroker()
        for t in ["agency-events", "vigil-alerts", "vigil-dead-letters", "vigil-changelog"] { try broker.createTopic(t, partitions: 1) }
        func event(_ id: String, _ type: String, _ at: String, _ data: String) -> String {
            #"{"schema_version":1,"event_id":"\#(id)","type":"\#(type)","occurred_at":"\#(at)","agency":"children_social_care","child":{"id":"C-LATE"},"data":\#(data)}"#
        }
        let lines = [
            event("e1", "plan_status", "2007-03-01T10:00:00Z", #"{"status":"started"}"#),
            event("e2", "household_member", "2007-03-12T11:00:00Z", #"{"person_ref":"P-1","relationship":"friend"}"#),
            // Moves the clock past the police check deadline (2007-03-14T00:00Z): the alert fires.
            event("e3", "appointment", "2007-03-15T10:00:00Z", #"{"service":"gp","outcome":"attended"}"#),
            // Recorded late: the check was done before the deadline.
            event("e4", "background_check", "2007-03-13T10:00:00Z", #"{"person_ref":"P-1","check":"police_national","result":"no_trace"}"#),
        ]
        try produce(lines, to: "agency-events", brokers: broker.bootstrapServers)
        let dir = try tempDir()
        var config = pipelineConfig(brokers: broker.bootstrapServers, dir: dir)
        config.allowedLateness = 0
        let summary = try runPipeline(config)
        #expect(summary.withdrawn == 1)
        let topic = try readTopic("vigil-alerts", brokers: broker.bootstrapServers).map(\.value)
        let parsed = topic.compactMap { try? JSONValue.parse($0) }
        let unchecked = parsed.filter { $0["rule_id"]?.stringValue == "unchecked-adult-with-access" }
        let fired = try #require(unchecked.first { $0["status"]?.stringValue == "fired" })
        let withdrawn = try #require(unchecked.first { $0["status"]?.stringValue == "withdrawn" })
        #expect(withdrawn["withdraws"]?.stringValue == fired["alert_id"]?.stringValue)
        for json in topic { #expect(AlertSchema.failure(json) == nil, "\(String(decoding: json, as: UTF8.self))") }
        let audit = try auditIds(dir + "/audit.jsonl")
        #expect(audit.contains(try #require(withdrawn["alert_id"]?.stringValue)))
        #expect(audit.contains(try #require(fired["alert_id"]?.stringValue)))
        #expect(Set(audit) == Set(alertIds(topic)))
    }
}
