import Foundation
import VigilContract

/// How the engine's clocks move.
public enum ClockMode: String, Sendable, CaseIterable {
    /// Live: each partition's clock is its largest event time minus the allowed lateness; once caught up,
    /// clocks follow the wall clock minus the allowed lateness, so deadlines fire when nothing arrives.
    case wall
    /// Backtests, demos, tests: once caught up, every clock moves to the largest event time seen, so a
    /// caught-up pipeline agrees with `vigil replay` on the same input.
    case event
}

/// What to do when input was deleted before it was read (retention, a long outage).
public enum InputGapPolicy: String, Sendable, CaseIterable {
    /// Stop the partition (the others go on): a person decides (restart with record-and-continue to accept it).
    case stop
    /// Record the gap (log, audit log, counter) and read on from what the broker still holds.
    case recordAndContinue = "record-and-continue"
}

/// Everything `vigil run` needs. Each setting is described once, in `PipelineConfig.settings` (name, help,
/// validation), which drives the `--config` YAML file, the command line, `--help`, `--print-config` and
/// `validate()`; its default is the property's initial value here.
public struct PipelineConfig: Sendable {
    public var brokers = "localhost:9092"
    public var group = "vigil"
    public var inputTopic = "agency-events"
    public var alertsTopic = "vigil-alerts"
    public var deadLetterTopic = "vigil-dead-letters"
    public var shadowAlertsTopic = "vigil-alerts-shadow"
    public var auditFile = "vigil-audit.jsonl"
    public var auditKey = ""
    public var auditPreviousKey = ""
    public var auditKeyLost = false
    public var auditSealEvery = 10_000
    public var auditSealInterval = 10
    public var auditMaxBytes = 1 << 30
    public var auditMaxAge = 0
    public var auditAnchorTopic = "vigil-audit-heads"
    public var auditAnchorFile = ""
    public var changelogTopic = "vigil-changelog"
    public var checkpointIntervalMs = 10_000
    public var repartition = false
    public var repartitionTopic = "vigil-repartition"
    public var rules = "Rules"
    public var shards = 0
    public var clock = ClockMode.wall
    public var allowedLateness = 0
    public var maxEventBytes = EventDecoder.defaultMaxBytes
    public var deadLetterMaxBytes = DeadLetter.defaultMaxBytes
    public var maxClockSkew = 86_400
    public var stateMaxBytes = 512 * 1024
    public var onInputGap = InputGapPolicy.stop
    public var batchSize = 1000
    public var batchLingerMs = 2
    public var maxInFlight = 32
    public var instanceId = ""
    public var http = ""
    public var readyMaxLag = 1000
    public var kafka: [String] = []
    public var kafkaConsumer: [String] = []
    public var kafkaProducer: [String] = []

    public init() {}

    /// `group.instance.id`: `instance-id`, with `hostname` standing for this host's name; nil when empty.
    public var effectiveInstanceId: String? {
        if instanceId.isEmpty { return nil }
        return instanceId == "hostname" ? ProcessInfo.processInfo.hostName : instanceId
    }

    public var effectiveShards: Int { shards > 0 ? shards : max(1, ProcessInfo.processInfo.activeProcessorCount) }
    /// Whether seals' heads go to a topic (only a sealed log has heads).
    public var isAnchoringToTopic: Bool { !auditKey.isEmpty && !auditAnchorTopic.isEmpty }
    /// The topic the engines read: the input, or the repartition topic.
    public var processingTopic: String { repartition ? repartitionTopic : inputTopic }

    public struct ConfigError: Error, CustomStringConvertible, Sendable {
        public let message: String
        public init(_ message: String) { self.message = message }
        public var description: String { message }
    }

    /// Every setting of `vigil run`, in the order `--help` and `--print-config` show them.
    public static let settings: [Setting] = [
        .text("brokers", \.brokers, value: "host:port,...", help: "Kafka bootstrap servers."),
        .text("group", \.group, help: "Consumer group id; instances in one group share the partitions."),
        .text("input-topic", \.inputTopic, value: "topic", help: "Agency events (JSON, events.schema.json)."),
        .text("alerts-topic", \.alertsTopic, value: "topic", help: "Alerts (JSON, alert.schema.json), keyed by child id."),
        .text("dead-letter-topic", \.deadLetterTopic, value: "topic", help: "Invalid messages: original bytes, reason in headers."),
        .text("shadow-alerts-topic", \.shadowAlertsTopic, value: "topic", help: "Alerts of rules in shadow mode (marked shadow; never on alerts-topic). Must exist when the pack has shadow rules."),
        .text("audit-file", \.auditFile, value: "file", help: "The audit log (JSON Lines, hash-chained, mode 0600), one per instance; rotated segments go beside it."),
        .text("audit-key", \.auditKey, value: "file",
              help: "Seal the audit log with this key (vigil audit keygen; mode 0600, outside the log's directory, one per log). Empty: not sealed."),
        .number("audit-seal-every", \.auditSealEvery, range: 1...10_000_000, value: "records",
                help: "Seal once this many alerts and notes are unsealed (also at shutdown and at rotation)."),
        .number("audit-seal-interval", \.auditSealInterval, range: 1...86_400, value: "seconds",
                help: "Seal at the latest this long after the first unsealed record: the most a compromise of the host could rewrite."),
        .text("audit-anchor-topic", \.auditAnchorTopic, value: "topic",
              help: "Every seal's head is produced here (keyed by instance), off the host. Empty: none."),
        .text("audit-anchor-file", \.auditAnchorFile, value: "file",
              help: "Every seal's head is appended here too: another volume, an append-only or write-once mount. Empty: none."),
        .text("audit-previous-key", \.auditPreviousKey, value: "file",
              help: "Changing keys: the log's current key, which signs the handover to --audit-key and is then erased."),
        .flag("audit-key-lost", \.auditKeyLost,
              help: "Changing keys when the current key is lost: the change is recorded unsigned, and verifiers must be given the new key too."),
        .number("audit-max-bytes", \.auditMaxBytes, range: 0...(1 << 50), value: "bytes",
                help: "Rotate the audit file at this size (0: never): it is sealed, renamed <name>.<first seq>.jsonl, and a new one chains on."),
        .number("audit-max-age", \.auditMaxAge, range: 0...(3650 * 86_400), value: "seconds", help: "Rotate the audit file at this age (0: never)."),
        .text("changelog-topic", \.changelogTopic, value: "topic", help: "Engine state (compacted; as many partitions as the input)."),
        .number("checkpoint-interval-ms", \.checkpointIntervalMs, range: 100...86_400_000,
                help: "How often the partitions that changed are checkpointed (less re-processing after a crash, more writes)."),
        .flag("repartition", \.repartition, help: "Read the input through the repartition topic, keyed by child id (for producers that key by something else)."),
        .text("repartition-topic", \.repartitionTopic, value: "topic", help: "The internal topic for --repartition."),
        .text("rules", \.rules, value: "dir", help: "Rule pack directory (default also from $VIGIL_RULES)."),
        .number("shards", \.shards, range: 0...256, help: "Worker threads evaluating rules; children are sharded by a hash of their id (0: one per core).",
                note: { "effective: \($0.effectiveShards)" }),
        .choice("clock", \.clock, help: "wall (live) or event (backtests, demos: agrees with vigil replay once caught up)."),
        .choice("on-input-gap", \.onInputGap,
                help: "When input was deleted before it was read (lag beyond retention): stop the partition, or record the gap and read on. Either way it is logged at critical, counted, and written to the audit log."),
        .number("allowed-lateness", \.allowedLateness, range: 0...Int(Int32.max), value: "seconds",
                help: "Seconds the clocks trail the newest event time (or the wall clock)."),
        .number("max-event-bytes", \.maxEventBytes, range: 1...(64 << 20), value: "bytes", help: "Larger messages are dead letters (too-large)."),
        .number("dead-letter-max-bytes", \.deadLetterMaxBytes, range: 1024...(16 << 20), value: "bytes",
                help: "A dead letter keeps at most this much of its message (the rest is cut; its size and SHA-256 go in headers). Keep it under the dead-letter topic's max.message.bytes."),
        .number("max-clock-skew", \.maxClockSkew, range: 0...(366 * 86_400), value: "seconds",
                help: "An event whose occurred_at is this far ahead of the wall clock or of its recorded_at, or before 1970, is a dead letter (implausible-time)."),
        .number("state-max-bytes", \.stateMaxBytes, range: 16 * 1024...(16 << 20), value: "bytes",
                help: "A child's checkpointed state is kept under this size (oldest history folded first, then older entries; never pending deadlines). Keep it under the changelog topic's max.message.bytes."),
        .number("batch-size", \.batchSize, range: 1...100_000, help: "Messages per poll; one batch is the unit of commit."),
        .number("batch-linger-ms", \.batchLingerMs, range: 0...1000,
                help: "Once a batch has its first message, how long to keep collecting (longer, up to 50 ms, while earlier batches are in flight)."),
        .number("max-in-flight", \.maxInFlight, range: 1...1000, help: "Batches in flight before intake stops fetching (backpressure)."),
        .text("instance-id", \.instanceId, value: "id",
              help: "Static group membership (group.instance.id): an instance restarted with the same id within the session timeout gets its partitions back without a rebalance. Unique per instance and stable across its restarts; hostname: this host's name (a StatefulSet pod's, a container's). Empty: dynamic membership."),
        .text("http", \.http, value: "host:port",
              help: "Serve /metrics (Prometheus), /healthz and /readyz on this address (off when empty). Bind to localhost or a private network: the endpoints carry no event content, but no authentication either."),
        .number("ready-max-lag", \.readyMaxLag, range: 0...Int(Int32.max), value: "messages",
                help: "/readyz answers ready once partitions are assigned and restored and the lag behind their ends is at most this."),
        .properties("kafka", \.kafka, short: "X", help: "A librdkafka property for every client (TLS, SASL, tuning); repeatable."),
        .properties("kafka-consumer", \.kafkaConsumer, help: "A librdkafka property for the consumers only; repeatable."),
        .properties("kafka-producer", \.kafkaProducer, help: "A librdkafka property for the producers only; repeatable."),
    ]

    public static func setting(named name: String) -> Setting? { settings.first { $0.name == name } }

    /// Checks every setting, then the rules that tie several together.
    public func validate() throws(ConfigError) {
        for s in Self.settings {
            if let problem = s.check(self) { throw ConfigError(problem) }
        }
        let topics = [("input-topic", inputTopic), ("alerts-topic", alertsTopic), ("dead-letter-topic", deadLetterTopic),
                      ("changelog-topic", changelogTopic), ("shadow-alerts-topic", shadowAlertsTopic)] + (repartition ? [("repartition-topic", repartitionTopic)] : [])
        for (name, t) in topics where t.isEmpty { throw ConfigError("\(name) must not be empty") }
        if auditKey.isEmpty && (!auditPreviousKey.isEmpty || auditKeyLost) {
            throw ConfigError("audit-previous-key and audit-key-lost change the key to audit-key: give audit-key")
        }
        if !auditPreviousKey.isEmpty && auditKeyLost { throw ConfigError("give audit-previous-key or audit-key-lost, not both") }
        if !http.isEmpty && HTTPAddress(http) == nil { throw ConfigError("http must be HOST:PORT (a port from 0 to 65535), got \(http)") }
        if !auditKey.isEmpty && auditKey == auditPreviousKey { throw ConfigError("audit-previous-key must be another file than audit-key") }
        let all = topics + (isAnchoringToTopic ? [("audit-anchor-topic", auditAnchorTopic)] : [])
        guard Set(all.map(\.1)).count == all.count else {
            throw ConfigError("the input, alerts, dead-letter, changelog, repartition and audit anchor topics must all be different topics")
        }
    }
}

/// `--http`: where the operations endpoints listen.
public struct HTTPAddress: Sendable, Equatable {
    public let host: String
    public let port: Int

    /// Parses `HOST:PORT` (`[::1]:9464` for IPv6); nil when malformed.
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.host = host
        self.port = port
    }
}
