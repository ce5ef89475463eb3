import ArgumentParser
import Foundation
import Logging
import VigilRules
import VigilService

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Consume agency events from Kafka, evaluate the rules, and write alerts to a topic and an audit log.",
        discussion: """
        Settings come from defaults, then --config FILE (YAML, keys as the flags without dashes, e.g. input-topic), \
        then the flags. -X passes any librdkafka property to every client (TLS, SASL, tuning). Offsets are committed \
        only once every alert caused by the events up to them is acknowledged by the broker and fsynced to the audit \
        log. Invalid messages go to the dead-letter topic with their original bytes and the reason in headers.
        State is checkpointed per input partition to the changelog topic; a partition assigned to an instance is \
        restored from its newest complete checkpoint, so a crash loses nothing and applies nothing twice.
        SIGINT or SIGTERM: stop consuming, drain, checkpoint, flush, fsync, commit, leave the group, exit 0; a second \
        signal exits at once.
        """
    )

    @Option(help: "Kafka bootstrap servers (host:port,...).") var brokers: String?
    @Option(help: "Consumer group id.") var group: String?
    @Option(help: "Topic of agency events.") var inputTopic: String?
    @Option(help: "Topic alerts are written to (keyed by child id).") var alertsTopic: String?
    @Option(help: "Topic invalid messages are written to.") var deadLetterTopic: String?
    @Option(help: "Audit log file (JSON Lines, hash-chained, mode 0600).") var auditFile: String?
    @Option(help: "Topic the engine state is checkpointed to (compacted; as many partitions as the input).") var changelogTopic: String?
    @Option(help: "Milliseconds between checkpoints of partitions that changed.") var checkpointIntervalMs: Int?
    @Flag(help: "Read the input through an internal topic keyed by child id (for producers that key by something else).") var repartition = false
    @Option(help: "The internal topic for --repartition.") var repartitionTopic: String?
    @Option(help: "Rule pack directory.") var rules: String?
    @Option(help: ArgumentHelp("YAML file with the same settings.", valueName: "FILE")) var config: String?
    @Option(name: .customShort("X"), help: ArgumentHelp("A librdkafka property, passed straight through (repeatable).", valueName: "property=value"))
    var properties: [String] = []
    @Option(help: "Worker threads evaluating rules (0: one per core).") var shards: Int?
    @Option(help: "Clock: wall (live) or event (backtests, demos: agrees with vigil replay once caught up).") var clock: String?
    @Option(help: ArgumentHelp("Seconds the clocks trail the newest event time (or the wall clock).", valueName: "SECONDS")) var allowedLateness: Int?
    @Option(help: "Messages per poll.") var batchSize: Int?
    @Option(help: "Milliseconds to keep collecting a batch after its first message.") var batchLingerMs: Int?
    @Option(help: "Batches in flight before intake pauses.") var maxInFlight: Int?
    @Option(help: "Largest accepted event, in bytes.") var maxEventBytes: Int?
    @Flag(help: "Stop once caught up with every assigned partition (backtests): drains, saves state and commits as on SIGTERM.")
    var exitWhenCaughtUp = false
    @Flag(help: "Print the effective settings (defaults, then --config, then flags) as YAML, check the rules, and exit.")
    var printConfig = false
    @Option(help: ArgumentHelp("At exit, write the run's counters as JSON to this file.", valueName: "FILE")) var statsFile: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: Logger.Level = .info

    func settings() throws -> PipelineConfig {
        var c = PipelineConfig()
        if let config {
            guard let data = FileManager.default.contents(atPath: config), let text = String(data: data, encoding: .utf8) else {
                throw ValidationError("cannot read --config \(config)")
            }
            do { try c.load(yaml: text, path: config) } catch { throw ValidationError("\(error)") }
        } else if let env = ProcessInfo.processInfo.environment["VIGIL_RULES"] {
            c.rules = env
        }
        if let brokers { c.brokers = brokers }
        if let group { c.group = group }
        if let inputTopic { c.inputTopic = inputTopic }
        if let alertsTopic { c.alertsTopic = alertsTopic }
        if let deadLetterTopic { c.deadLetterTopic = deadLetterTopic }
        if let auditFile { c.auditFile = auditFile }
        if let changelogTopic { c.changelogTopic = changelogTopic }
        if let checkpointIntervalMs { c.checkpointIntervalMs = checkpointIntervalMs }
        if repartition { c.repartition = true }
        if let repartitionTopic { c.repartitionTopic = repartitionTopic }
        if let rules { c.rules = rules }
        if let shards { c.shards = shards }
        if let clock {
            guard let m = ClockMode(rawValue: clock) else { throw ValidationError("--clock must be wall or event") }
            c.clock = m
        }
        if let allowedLateness { c.allowedLateness = Int64(allowedLateness) }
        if let batchSize { c.batchSize = batchSize }
        if let batchLingerMs { c.batchLingerMs = batchLingerMs }
        if let maxInFlight { c.maxInFlight = maxInFlight }
        if let maxEventBytes { c.maxEventBytes = maxEventBytes }
        c.kafka += properties
        do { try c.validate() } catch { throw ValidationError("\(error)") }
        return c
    }

    func validate() throws { _ = try settings() }

    func run() throws {
        let c = try settings()
        if printConfig {
            _ = try RulesOptions.compile(c.rules)
            Output.shared.line(c.yaml)
            Output.shared.flush()
            return
        }
        let logger = LoggingSetup.bootstrap(level: logLevel)
        let set = try RulesOptions.compile(c.rules)
        let pipeline = Pipeline(config: c, rules: set, logger: logger)
        pipeline.stopWhenCaughtUp = exitWhenCaughtUp
        let trap = SignalTrap { pipeline.requestStop() }
        _ = trap
        do {
            let s = try pipeline.run()
            if let statsFile { try s.json.write(toFile: statsFile, atomically: true, encoding: .utf8) }
            logger.info("stopped: \(s.messages) messages, \(s.events) events, \(s.deadLetters) dead letters, \(s.alerts) alerts (\(s.auditWritten) new in the audit log), \(s.engine.duplicates) duplicates")
        } catch {
            Output.error("vigil: \(error)")
            throw ExitCode(1)
        }
    }
}
