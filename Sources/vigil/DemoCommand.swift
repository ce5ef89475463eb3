import ArgumentParser
import Foundation
import Logging
import Synchronization
import VigilContract
import VigilEngine
import VigilKafka
import VigilRules
import VigilService
import VigilTesting

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Everything in one command: an embedded broker, the pipeline with the shipped rules, the Haringey scenario produced to it, alerts as they arrive, and a summary.",
        discussion: "The demo's audit log is written to --dir (replaced at each run). The broker, and the state checkpointed to it, live as long as the demo."
    )

    @Option(help: "Rule pack directory.") var rules: String = ProcessInfo.processInfo.environment["VIGIL_RULES"] ?? "Rules"
    @Option(help: "The scenario to produce.") var scenario: String = "scenarios/haringey-2006-2007.jsonl"
    @Option(help: "Also produce this many generated events (vigil generate).") var generate: Int = 0
    @Option(help: "Folder for the demo's audit log and state.") var dir: String = "vigil-demo"
    @Option(help: "Partitions of the input topic.") var partitions: Int = 4
    @Option(help: "Log level.") var logLevel: Logger.Level = .warning

    func validate() throws {
        guard generate >= 0, generate <= 5_000_000 else { throw ValidationError("--generate must be between 0 and 5000000") }
        guard partitions > 0, partitions <= 256 else { throw ValidationError("--partitions must be between 1 and 256") }
    }

    func run() throws {
        let logger = LoggingSetup.bootstrap(level: logLevel)
        let set = try RulesOptions.compile(rules)
        let color = Output.stdoutIsTerminal
        let fm = FileManager.default
        // The audit log, sealed with a key of its own kept beside (not inside) the log's directory: both new at each run.
        let auditDir = dir + "/audit", keyDir = dir + "/key"
        let auditPath = auditDir + "/audit.jsonl", keyPath = keyDir + "/audit.key"
        for d in [auditDir, keyDir] {
            if fm.fileExists(atPath: d) { try fm.removeItem(atPath: d) }
            try fm.createDirectory(atPath: d, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let root: String
        do {
            root = try AuditKeyFile.generate(path: keyPath)
            try (root + "\n").write(toFile: keyPath + ".pub", atomically: true, encoding: .utf8)
        } catch {
            Output.error("vigil demo: \(error)")
            throw ExitCode(1)
        }

        // The input: the generated stream first, the scenario last, so that the scenario is the newest data.
        guard let text = try? String(contentsOfFile: scenario, encoding: .utf8) else {
            Output.error("vigil demo: cannot read \(scenario)")
            throw ExitCode(1)
        }
        var lines: [String] = []
        if generate > 0 {
            var g = StreamGenerator(.init(children: max(50, generate / 20), days: 365, seed: 1))
            var n = 0
            g.generate { line in
                if n < generate { lines.append(line); n += 1 }
            }
        }
        lines += text.split(separator: "\n").map(String.init)
        // The embedded broker keeps ~5 MiB per partition and drops older data: enough partitions that it drops none.
        let bytes = lines.reduce(0) { $0 + $1.utf8.count + 64 }
        let topicPartitions = max(partitions, (bytes + (3 << 20) - 1) / (3 << 20))

        let broker: EmbeddedBroker
        do {
            broker = try EmbeddedBroker(logger: logger)
            for t in ["agency-events", "vigil-alerts", "vigil-changelog"] { try broker.createTopic(t, partitions: topicPartitions) }
            try broker.createTopic("vigil-dead-letters", partitions: 1)
            try broker.createTopic("vigil-audit-heads", partitions: 1)
        } catch {
            Output.error("vigil demo: \(error)")
            throw ExitCode(1)
        }
        Output.error("embedded broker on \(broker.bootstrapServers); topics agency-events (\(topicPartitions) partitions), vigil-alerts, vigil-dead-letters, vigil-audit-heads")

        let delivered = Atomic<Int>(0)
        do {
            let producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: broker.bootstrapServers), logger: logger) { _, error in
                if error == nil { delivered.add(1, ordering: .relaxed) }
            }
            let decoder = EventDecoder()
            var record = decoder.makeRecord()
            for (i, line) in lines.enumerated() {
                _ = decoder.decode(line, into: &record)
                let key = record[decoder.contract.childIdSlot].string.map { Array($0.utf8) }
                try producer.produce(topic: "agency-events", key: key, value: Array(line.utf8), token: UInt64(i + 1))
                if i % 10_000 == 0 { producer.poll() }
            }
            guard producer.flush(timeoutMs: 60_000) else { throw KafkaError(code: -1, message: "could not deliver the input in 60 s") }
        } catch {
            Output.error("vigil demo: \(error)")
            throw ExitCode(1)
        }
        Output.error("produced \(delivered.load(ordering: .relaxed)) events (\(scenario)\(generate > 0 ? " + \(generate) generated" : "")); running the pipeline")

        var config = PipelineConfig()
        config.brokers = broker.bootstrapServers
        config.group = "vigil-demo"
        config.auditFile = auditPath
        config.auditKey = keyPath
        config.rules = rules
        config.clock = .event
        config.kafkaConsumer = ["fetch.wait.max.ms=10"]
        let pipeline = Pipeline(config: config, rules: set, logger: logger)
        let shown = Atomic<Int>(0)
        let limit = 60
        pipeline.onAlert = { rendered in
            let n = shown.add(1, ordering: .relaxed).newValue
            guard n <= limit else { return }
            let rule = set.rules[rendered.alert.ruleIndex]
            Output.shared.line(ANSI.color(TailedAlert(rendered.alert, AlertFormatter(rules: set)).line(in: set.calendars.first?.zone), ANSI.severity(rule.severity), enabled: color))
            if n == limit { Output.shared.line("... (more alerts in \(auditPath): vigil tail --audit \(auditPath))") }
            Output.shared.flush()
        }
        pipeline.stopWhenCaughtUp = true
        let trap = SignalTrap { pipeline.requestStop() }
        _ = trap
        let summary: PipelineSummary
        do { summary = try pipeline.run() } catch {
            Output.error("vigil demo: \(error)")
            throw ExitCode(1)
        }
        var out = "\nsummary: \(summary.messages) messages in, \(summary.events) events, \(summary.deadLetters) dead letters, \(summary.alerts) alerts\n"
        for (rule, n) in summary.alertsByRule.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }) {
            out += "  \(String(n).leftPad(6))  \(rule)\n"
        }
        // The log as evidence: its chain, its seals against the key made above, its heads as anchored on the topic.
        let anchors = try? AuditAnchorTopic.read(topic: config.auditAnchorTopic, config: KafkaConfig(bootstrapServers: broker.bootstrapServers), logger: logger)
        let report = AuditVerifier.verify(name: auditPath, files: AuditSegments(activePath: auditPath).files(), keys: [root], anchors: anchors?.anchors ?? [])
        out += report.ok
            ? "audit log \(auditPath): \(report.records) records, chain intact, \(report.seals) seals by key \(root.prefix(16))…, \(report.anchorsChecked) heads anchored on \(config.auditAnchorTopic), all held"
            : report.lines.joined(separator: "\n")
        out += """


        What a duty manager does with these: each alert is a prompt for judgement, never a decision. Open the
        child's record at the events the alert cites (evidence), check what the rule says was missing or
        wrong (an adult never police-checked, a visit where the child was not seen, an injury explained
        implausibly), and decide with the team whether to act: a strategy discussion, a visit, a check. The
        first alert above came nine months before Peter Connelly died.
        Follow the live feed: vigil tail --audit \(auditPath)
        Check the log as evidence: vigil audit verify \(auditDir) --key \(keyPath).pub
        """
        Output.shared.line(out)
        Output.shared.flush()
        withExtendedLifetime(broker) {}
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
