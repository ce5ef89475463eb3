import Foundation
import Logging
import Synchronization
import VigilContract
import VigilEngine
import VigilKafka
import VigilRules
import VigilService
import VigilTesting

/// What a chaos run does: a generated stream on a broker, several `vigil run` processes in one consumer
/// group, SIGKILLs of random instances at random moments (each restarted after a random pause), optional
/// timed steps (an instance joins or leaves, a fault is injected), then the end check against `vigil replay`.
public struct ChaosPlan: Sendable {
    /// The `vigil` executable.
    public var vigil: String
    /// The rule pack directory.
    public var rules: String
    /// Where the stream, audit logs, stats and instance logs go.
    public var workDir: String
    public var events = 200_000
    /// Days of event time the stream covers (from 2024-01-01).
    public var days = 365
    /// Partitions of every topic (the embedded broker keeps ~5 MiB per partition: with lz4, ~25k events each).
    public var partitions = 8
    public var instances = 2
    public var kills = 10
    public var seed: UInt64 = 1
    /// Produce with random keys and run the instances with `--repartition`.
    public var randomKeys = false
    /// Static membership: instance i runs with --instance-id chaos-i, kept across its restarts.
    public var staticMembership = false
    /// Records arriving late (`vigil generate --late`): `PCT:MIN-MAX`, percent of records and days.
    public var late: String?
    /// An existing broker; nil starts `vigil broker` as a child process.
    public var brokers: String?
    public var checkpointIntervalMs = 1000
    /// The instances' `session.timeout.ms`: a killed member's partitions move once it expires. It must be
    /// longer than any broker outage in `steps` and the reconnection after it (see `ChaosPlan.validate`).
    public var sessionTimeoutMs = 6000
    /// The instances' `reconnect.backoff.max.ms`: after an outage, a client reconnects within this long.
    /// librdkafka's default (10 s) lets a client that failed to connect throughout a 10 s outage wait
    /// another 10 s after the broker is back.
    public var reconnectBackoffMaxMs = 1000
    public var batchSize = 200
    /// Seconds between kills, and from a kill to the restart.
    public var killGap: ClosedRange<Double> = 0.5...3
    public var restartDelay: ClosedRange<Double> = 0...2
    /// Give up (and fail) after this many seconds.
    public var timeout: Double = 900
    /// Steps, run in the order given (see `ChaosStep.at`).
    public var steps: [ChaosStep] = []
    /// Extra `vigil run` arguments.
    public var runArguments: [String] = []

    public init(vigil: String, rules: String, workDir: String) {
        self.vigil = vigil
        self.rules = rules
        self.workDir = workDir
    }
}

public struct ChaosStep: Sendable {
    public enum Action: Sendable {
        /// Start one more instance.
        case join
        /// Stop the lowest-numbered running instance with SIGTERM (it is not restarted).
        case leave
        /// Run a closure (fault injection on an in-process broker).
        case call(@Sendable () -> Void)
        /// A broker outage of `seconds`: `down` now, `up` that many seconds later (before any later step).
        case outage(seconds: Double, down: @Sendable () -> Void, up: @Sendable () -> Void)
    }
    /// Seconds after the previous step ran (the first: after the instances start); with `afterProgress`,
    /// seconds after that progress is reached.
    public var at: Double
    /// A fraction of the expected alerts that must be on the alerts topic first (so a step lands mid-stream
    /// however fast the stream goes).
    public var afterProgress: Double?
    public var label: String
    public var action: Action
    public init(at: Double, afterProgress: Double? = nil, _ label: String, _ action: Action) {
        self.at = at
        self.afterProgress = afterProgress
        self.label = label
        self.action = action
    }
}

/// What a chaos run found. `passed` is the end check.
public struct ChaosReport: Sendable {
    public struct Audit: Sendable {
        public var file: String
        public var records = 0
        public var duplicateIds = 0
        /// nil when the hash chain verifies.
        public var problem: String?
    }
    public var events = 0
    public var partitions = 0
    public var kills = 0
    public var restarts = 0
    public var joins = 0
    public var leaves = 0
    public var stepsDone: [String] = []
    public var seconds = 0.0
    public var timedOut = false
    public var expected = 0
    public var expectedDeadline = 0
    public var expectedWithdrawn = 0
    public var topicRecords = 0
    public var topicDistinct = 0
    /// Withdrawal records on the topic (records that arrived late).
    public var topicWithdrawals = 0
    public var topicMissing: [String] = []
    public var topicUnexpected: [String] = []
    public var topicDeadlineDistinct = 0
    public var audits: [Audit] = []
    public var auditDistinct = 0
    public var auditMissing: [String] = []
    public var auditUnexpected: [String] = []
    public var auditDeadlineDistinct = 0
    /// Processes that exited when not told to, or with a failure status when told to stop.
    public var badExits: [String] = []
    /// Partitions the broker's retention truncated (the run is then inconclusive).
    public var truncated: [String] = []

    public var passed: Bool {
        !timedOut && expected > 0 && topicMissing.isEmpty && topicUnexpected.isEmpty && auditMissing.isEmpty && auditUnexpected.isEmpty
            && audits.allSatisfy { $0.duplicateIds == 0 && $0.problem == nil } && badExits.isEmpty && truncated.isEmpty
            && topicDeadlineDistinct == expectedDeadline && auditDeadlineDistinct == expectedDeadline
    }

    public var text: String {
        func sample(_ ids: [String]) -> String { ids.isEmpty ? "0" : "\(ids.count) (e.g. \(ids.prefix(3).joined(separator: ", ")))" }
        var lines: [String] = []
        lines.append("chaos: \(events) events, \(partitions) partitions, \(kills) SIGKILLs, \(restarts) restarts, \(joins) joins, \(leaves) leaves in \(String(format: "%.1f", seconds)) s\(timedOut ? " (TIMED OUT)" : "")")
        if !stepsDone.isEmpty { lines.append("steps: \(stepsDone.joined(separator: "; "))") }
        lines.append("expected (vigil replay): \(expected) alert ids, \(expectedDeadline) of them deadlines, \(expectedWithdrawn) withdrawals")
        lines.append("alerts topic: \(topicRecords) records, \(topicDistinct) distinct ids (\(topicRecords - topicDistinct) re-emitted after crashes, same ids), \(topicWithdrawals) withdrawals; net of them: missing \(sample(topicMissing)), unexpected \(sample(topicUnexpected)), deadlines \(topicDeadlineDistinct)")
        for a in audits {
            lines.append("audit \(a.file): \(a.records) records, \(a.duplicateIds) ids twice, chain \(a.problem ?? "verified")")
        }
        lines.append("audit logs together, net of withdrawals: \(auditDistinct) alerts, missing \(sample(auditMissing)), unexpected \(sample(auditUnexpected)), deadlines \(auditDeadlineDistinct)")
        if !badExits.isEmpty { lines.append("bad exits: \(badExits.joined(separator: "; "))") }
        if !truncated.isEmpty { lines.append("broker retention dropped data (inconclusive): \(truncated.joined(separator: ", "))") }
        lines.append(passed ? "PASS: every expected alert id is on the topic and in the audit logs, none unexpected, no audit log holds an id twice, every deadline fired" : "FAIL")
        return lines.joined(separator: "\n")
    }
}

extension ChaosPlan {
    /// Refuses plans the embedded broker cannot run without aborting.
    ///
    /// librdkafka 2.0.2's mock group coordinator names a member by the address of its struct, expires members
    /// that send nothing for `session.timeout.ms` (a broker outage does that to every live member), and frees
    /// them. A member joining next can get the same address, so the same id; when the expired member's client
    /// then rejoins with its old id while the new member's join is pending, the mock aborts the process
    /// (`rd_kafka_mock_cgrp_member_add: Assertion '!member->resp' failed`). Seen with a 10 s outage and 6 s
    /// sessions: every run expired both live members and one reused an id. So an outage must end, and the
    /// clients reconnect, with a margin for a busy machine, before any live member's session can expire.
    ///
    /// The reconnection counts: a client's reconnect backoff doubles at each refused attempt (100 ms, 200 ms,
    /// ... up to `reconnect.backoff.max.ms`, 10 s by default, with jitter up to +50%), so after a 10 s outage
    /// a client could stay silent until ~20 s. With 15 s sessions that aborted the test process in the first
    /// of ten runs on a busy machine (2026-11-29, killed and restarted instances joining meanwhile).
    public func validate() throws(Chaos.Failure) {
        for step in steps {
            guard case .outage(let seconds, _, _) = step.action else { continue }
            let needed = Int(seconds * 1000) + reconnectBackoffMaxMs * 3 / 2 + Self.outageMarginMs
            if sessionTimeoutMs < needed {
                throw Chaos.Failure(description: "step '\(step.label)': a \(seconds) s broker outage, and a reconnection within \(reconnectBackoffMaxMs * 3 / 2) ms (reconnect.backoff.max.ms \(reconnectBackoffMaxMs) with jitter), needs session-timeout-ms of at least \(needed) (it is \(sessionTimeoutMs)): the embedded broker expires live members during an outage, and can then abort when one rejoins with an id it has given to another member")
            }
        }
    }

    /// What an outage must leave of a session: heartbeats resume, and a busy machine may be slow to send them.
    public static let outageMarginMs = 5000
}

public enum Chaos {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Runs `plan` and returns what it found; `say` gets progress lines.
    public static func run(_ plan: ChaosPlan, say: @escaping @Sendable (String) -> Void = { print($0) }) throws -> ChaosReport {
        try plan.validate()
        try FileManager.default.createDirectory(atPath: plan.workDir, withIntermediateDirectories: true)
        var logger = Logger(label: "vigil.chaos")
        logger.logLevel = .error
        var report = ChaosReport()
        report.partitions = plan.partitions
        let started = Date()

        // The broker.
        var broker: Subprocess?
        let brokers: String
        if let b = plan.brokers {
            brokers = b
        } else {
            let b = try Subprocess(plan.vigil, ["broker", "--partitions", String(plan.partitions)])
            guard Subprocess.until(timeout: 30, { !b.stdout.isEmpty }), let address = b.stdout.first else {
                b.signal(SIGKILL)
                throw Failure(description: "vigil broker did not start: \(b.stderr.suffix(5).joined(separator: " / "))")
            }
            broker = b
            brokers = address
        }
        defer {
            broker?.signal(SIGTERM)
            _ = broker?.wait(timeout: 10)
        }
        say("broker \(brokers)")

        // The stream and what replay makes of it.
        var lines = generate(events: plan.events, days: plan.days, seed: plan.seed)
        if let spec = plan.late {
            guard var perturb = LateArrivals(spec: spec, seed: plan.seed) else { throw Failure(description: "late must be PCT:MIN-MAX, got \(spec)") }
            var arrived: [String] = []
            for l in lines { perturb.add(l) { arrived.append($0) } }
            perturb.finish { arrived.append($0) }
            lines = arrived
            say("\(perturb.delayed) records arrive late (\(spec))")
        }
        report.events = lines.count
        let streamPath = plan.workDir + "/events.jsonl"
        try (lines.joined(separator: "\n") + "\n").write(toFile: streamPath, atomically: true, encoding: .utf8)
        guard let rules = try RuleDirectory.compile(plan.rules).ruleSet else { throw Failure(description: "the rules in \(plan.rules) do not compile") }
        let until = Instant.now
        var expected = Set<String>()
        var expectedDeadline = Set<String>()
        _ = try Replay(rules: rules).run(files: [streamPath], until: until, onInvalid: { _ in }, onAlert: { a in
            expected.insert(a.alertId)
            if a.deadline != nil && a.status == .fired { expectedDeadline.insert(a.alertId) }
            if a.status == .withdrawn { report.expectedWithdrawn += 1 }
        }, onRewind: {
            expected = []
            expectedDeadline = []
            report.expectedWithdrawn = 0
        })
        report.expected = expected.count
        report.expectedDeadline = expectedDeadline.count
        say("stream: \(lines.count) events; vigil replay --until now: \(expected.count) alerts (\(expectedDeadline.count) deadlines)")
        try TopicIO.produce(lines, to: "agency-events", brokers: brokers, keying: plan.randomKeys ? .random(seed: plan.seed) : .childId,
                            properties: [("compression.type", "lz4"), ("linger.ms", "20")], logger: logger)
        say("produced to agency-events\(plan.randomKeys ? " with random keys" : " keyed by child id")")

        // Watch the alerts topic throughout.
        let watcher = try AlertWatcher(brokers: brokers, logger: logger)
        watcher.start()
        defer { watcher.stop() }

        // The instances.
        var rng = SplitMix64(state: plan.seed &* 0x2545_F491_4F6C_DD1D &+ 7)
        // Consumer-only properties go in a config file (-X would hand them to the producers too). A killed
        // member's partitions move once its session expires: keep that short.
        let configPath = plan.workDir + "/chaos.yaml"
        let yaml = "kafka:\n  reconnect.backoff.max.ms: \(plan.reconnectBackoffMaxMs)\n"
            + "kafka-consumer:\n  session.timeout.ms: \(plan.sessionTimeoutMs)\n  heartbeat.interval.ms: 500\n  fetch.wait.max.ms: 10\n"

        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
        var fleet = Fleet(plan: plan, brokers: brokers, config: configPath, say: say)
        for _ in 0..<plan.instances { try fleet.start(new: true) }
        let t0 = Date()
        // Half the kills come at random points of progress (a random fraction of the expected alerts is out),
        // so they land mid-stream however fast it goes; the rest at random moments, spaced by killGap.
        var progressKills = (0..<(plan.kills / 2)).map { _ in Double.random(in: 0.05...0.95, using: &rng) }.sorted()
        var timedKills = plan.kills - progressKills.count
        var nextKill = t0.addingTimeInterval(Double.random(in: plan.killGap, using: &rng))
        var restarts: [(at: Date, index: Int)] = []
        // Steps run in the order given; each waits for its progress or the previous step, then its delay.
        var steps = plan.steps
        var previousStep = t0
        var progressReachedAt: Date?
        var settledSince: Date?
        let deadline = started.addingTimeInterval(plan.timeout)
        while true {
            let now = Date()
            if now > deadline { report.timedOut = true; break }
            fleet.reapUnexpectedExits(into: &report)
            let progress = expected.isEmpty ? 1 : Double(watcher.ids.intersection(expected).count) / Double(expected.count)
            var killNow = false
            if let f = progressKills.first, progress >= f {
                progressKills.removeFirst()
                killNow = true
            } else if timedKills > 0, now >= nextKill {
                timedKills -= 1
                killNow = true
                nextKill = now.addingTimeInterval(Double.random(in: plan.killGap, using: &rng))
            }
            if killNow {
                if let i = fleet.running.randomElement(using: &rng) {
                    fleet.kill(i, at: now.timeIntervalSince(t0), progress: progress)
                    report.kills += 1
                    restarts.append((now.addingTimeInterval(Double.random(in: plan.restartDelay, using: &rng)), i))
                } else {
                    timedKills += 1  // nobody to kill now: try again later
                }
            }
            for r in restarts where r.at <= now {
                try fleet.start(index: r.index)
                report.restarts += 1
            }
            restarts.removeAll { $0.at <= now }
            while let step = steps.first {
                var base = previousStep
                if let f = step.afterProgress {
                    if progress < f { break }
                    let reached = progressReachedAt ?? now
                    progressReachedAt = reached
                    base = reached
                }
                if now.timeIntervalSince(base) < step.at { break }
                steps.removeFirst()
                previousStep = now
                progressReachedAt = nil
                say(String(format: "%6.1f s: %@", now.timeIntervalSince(t0), step.label))
                report.stepsDone.append(step.label)
                switch step.action {
                case .join:
                    try fleet.start(new: true)
                    report.joins += 1
                case .leave:
                    if let i = fleet.running.min() {
                        if let bad = fleet.stop(i) { report.badExits.append(bad) }
                        report.leaves += 1
                    }
                case .call(let f):
                    f()
                case .outage(let seconds, let down, let up):
                    down()
                    steps.insert(ChaosStep(at: seconds, "\(step.label): over after \(seconds) s", .call(up)), at: 0)
                }
            }
            let allDone = progressKills.isEmpty && timedKills == 0 && restarts.isEmpty && steps.isEmpty
            if allDone && watcher.ids.isSuperset(of: expected) {
                // Everything expected is out; wait a little longer for anything unexpected.
                if settledSince == nil { settledSince = now }
                if now.timeIntervalSince(settledSince ?? now) >= 3 { break }
            } else {
                settledSince = nil
            }
            usleep(100_000)
        }
        for i in fleet.running.sorted() {
            if let bad = fleet.stop(i) { report.badExits.append(bad) }
        }
        report.seconds = Date().timeIntervalSince(started)

        // The end check.
        // Alerts that stand, net of withdrawals, whatever order the records are read in (`NetAlerts`).
        let topic = try TopicIO.read("vigil-alerts", brokers: brokers, logger: logger)
        var topicRecords = Set<String>()
        var topicNet = NetAlerts()
        for m in topic {
            guard let v = try? JSONValue.parse(m.value), let id = v["alert_id"]?.stringValue else {
                report.topicUnexpected.append("<unreadable record>")
                continue
            }
            topicRecords.insert(id)
            topicNet.apply(record: v)
        }
        let topicIds = topicNet.ids
        report.topicRecords = topic.count
        report.topicDistinct = topicRecords.count
        report.topicWithdrawals = topicNet.withdrawals
        report.topicMissing = expected.subtracting(topicIds).sorted()
        report.topicUnexpected += topicIds.subtracting(expected).sorted()
        report.topicDeadlineDistinct = topicIds.intersection(expectedDeadline).count
        var auditNet = NetAlerts()
        for file in fleet.auditFiles {
            var a = ChaosReport.Audit(file: (file as NSString).lastPathComponent)
            var ids = Set<String>()
            if FileManager.default.fileExists(atPath: file) {
                let verdict = try AuditLog.verify(path: file) { r in
                    // Notes (rule packs, input gaps) are on the record too; only alerts are counted here.
                    guard r.isAlert else { return }
                    a.records += 1
                    if !ids.insert(r.alertId).inserted { a.duplicateIds += 1 }
                    auditNet.apply(record: r.alert)
                }
                if case .bad(let line, let reason) = verdict { a.problem = "broken at line \(line): \(reason)" }
            }
            report.audits.append(a)
        }
        let union = auditNet.ids
        report.auditDistinct = union.count
        report.auditMissing = expected.subtracting(union).sorted()
        report.auditUnexpected = union.subtracting(expected).sorted()
        report.auditDeadlineDistinct = union.intersection(expectedDeadline).count
        var checked = ["agency-events", "vigil-alerts", "vigil-changelog"]
        if plan.randomKeys { checked.append("vigil-repartition") }
        report.truncated = try TopicIO.truncatedPartitions(checked, brokers: brokers, logger: logger)
        return report
    }

    /// `events` lines of a generated stream (event-time order), for enough children to reach that count.
    static func generate(events: Int, days: Int, seed: UInt64) -> [String] {
        // The generator averages about 22 events per child-year; ask for a little more and cut.
        let children = max(20, Int(Double(events) / 22.0 * 365.0 / Double(max(days, 1)) * 1.15))
        var g = StreamGenerator(.init(children: children, days: days, seed: seed))
        var lines: [String] = []
        lines.reserveCapacity(events)
        g.generate { if lines.count < events { lines.append($0) } }
        return lines
    }
}

/// The `vigil run` processes.
struct Fleet {
    let plan: ChaosPlan
    let brokers: String
    let config: String
    let say: @Sendable (String) -> Void
    var processes: [Int: Subprocess] = [:]
    var runs: [Int: Int] = [:]
    var expectedExit = Set<Int>()
    var count = 0
    var auditFiles: [String] { (0..<count).map { plan.workDir + "/audit-\($0).jsonl" } }
    var running: [Int] { processes.filter { $0.value.isRunning }.map(\.key).sorted() }

    init(plan: ChaosPlan, brokers: String, config: String, say: @escaping @Sendable (String) -> Void) {
        self.plan = plan
        self.brokers = brokers
        self.config = config
        self.say = say
    }

    mutating func start(new: Bool = false, index: Int = 0) throws {
        let i = new ? count : index
        if new { count += 1 }
        runs[i, default: 0] += 1
        var args = ["run", "--config", config, "--brokers", brokers, "--group", "vigil-chaos", "--rules", plan.rules,
                    "--audit-file", plan.workDir + "/audit-\(i).jsonl",
                    "--stats-file", plan.workDir + "/stats-\(i)-\(runs[i, default: 1]).json",
                    "--clock", "wall", "--shards", "2",
                    "--checkpoint-interval-ms", String(plan.checkpointIntervalMs), "--batch-size", String(plan.batchSize)]
        if plan.randomKeys { args.append("--repartition") }
        if plan.staticMembership { args += ["--instance-id", "chaos-\(i)"] }
        args += plan.runArguments
        processes[i] = try Subprocess(plan.vigil, args)
        expectedExit.remove(i)
    }

    mutating func kill(_ i: Int, at t: Double, progress: Double) {
        guard let p = processes[i] else { return }
        expectedExit.insert(i)
        p.signal(SIGKILL)
        _ = p.wait(timeout: 10)
        saveLog(i, p, note: "SIGKILL")
        say(String(format: "%6.1f s: SIGKILL instance %d (run %d), %.0f%% of the expected alerts out", t, i, runs[i, default: 0], progress * 100))
    }

    /// SIGTERM and wait; a description when it did not exit 0 in time.
    mutating func stop(_ i: Int) -> String? {
        guard let p = processes[i] else { return nil }
        expectedExit.insert(i)
        p.signal(SIGTERM)
        let status = p.wait(timeout: 120)
        saveLog(i, p, note: "SIGTERM, exit \(status.map(String.init) ?? "timeout")")
        processes[i] = nil
        guard status == 0 else {
            return "instance \(i) run \(runs[i, default: 0]) on SIGTERM: \(status.map { "exit \($0)" } ?? "no exit in 120 s"): \(p.stderr.suffix(3).joined(separator: " / "))"
        }
        return nil
    }

    /// An instance that died on its own is a failure; it is restarted so the run can finish.
    mutating func reapUnexpectedExits(into report: inout ChaosReport) {
        for (i, p) in processes where !p.isRunning && !expectedExit.contains(i) {
            report.badExits.append("instance \(i) run \(runs[i, default: 0]) exited by itself (status \(p.process.terminationStatus)): \(p.stderr.suffix(3).joined(separator: " / "))")
            saveLog(i, p, note: "exited by itself")
            try? start(index: i)
        }
    }

    func saveLog(_ i: Int, _ p: Subprocess, note: String) {
        let text = p.stderr.joined(separator: "\n") + "\n[chaos] \(note)\n"
        try? text.write(toFile: plan.workDir + "/instance-\(i)-run-\(runs[i, default: 0]).log", atomically: false, encoding: .utf8)
    }
}

/// Reads the alerts topic from the beginning on its own thread, collecting alert ids.
final class AlertWatcher: @unchecked Sendable {
    let consumer: KafkaConsumer
    private let state = Mutex<(net: NetAlerts, stop: Bool)>((NetAlerts(), false))
    private let done = DispatchSemaphore(value: 0)

    init(brokers: String, logger: Logger) throws {
        var c = KafkaConfig(bootstrapServers: brokers)
        c.set("group.id", "chaos-watch-\(UUID().uuidString)")
        c.set("enable.auto.commit", "false")
        c.set("fetch.wait.max.ms", "50")
        consumer = try KafkaConsumer(config: c, logger: logger)
        try consumer.assign(try consumer.partitions(of: "vigil-alerts").map { (TopicPartition("vigil-alerts", $0), KafkaOffset.beginning) })
    }

    /// The alerts that stand so far, net of withdrawals.
    var ids: Set<String> { state.withLock { $0.net.ids } }

    func start() {
        let t = Thread { [self] in
            while !state.withLock({ $0.stop }) {
                let batch = consumer.poll(max: 1000, timeoutMs: 100)
                var found: [JSONValue] = []
                for m in batch.messages where m.errorCode == 0 {
                    if let v = try? JSONValue.parse(Array(m.value)), v["alert_id"] != nil { found.append(v) }
                }
                if !found.isEmpty {
                    state.withLock {
                        for v in found { $0.net.apply(record: v) }
                    }
                }
            }
            consumer.close()
            done.signal()
        }
        t.name = "chaos-watch"
        t.start()
    }

    func stop() {
        let first = state.withLock { s -> Bool in
            defer { s.stop = true }
            return !s.stop
        }
        if first { done.wait() }
    }
}
