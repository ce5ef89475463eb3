import Foundation
import VigilContract
import Yams

/// How the engine's clocks move.
public enum ClockMode: String, Sendable, CaseIterable {
    /// Live: each partition's clock is its largest event time minus the allowed lateness; once caught up,
    /// clocks follow the wall clock minus the allowed lateness, so deadlines fire when nothing arrives.
    case wall
    /// Backtests, demos, tests: once caught up, every clock moves to the largest event time seen, so a
    /// caught-up pipeline agrees with `vigil replay` on the same input.
    case event
}

/// Everything `vigil run` needs. Each setting also has a `--flag` and a key in the YAML `--config` file
/// (the same name, with dashes).
public struct PipelineConfig: Sendable {
    public var brokers = "localhost:9092"
    public var group = "vigil"
    public var inputTopic = "agency-events"
    public var alertsTopic = "vigil-alerts"
    public var deadLetterTopic = "vigil-dead-letters"
    public var auditFile = "vigil-audit.jsonl"
    /// Engine state, checkpointed per input partition (same partition count as the input, compacted).
    public var changelogTopic = "vigil-changelog"
    /// How often (ms) the state of partitions that changed is checkpointed.
    public var checkpointIntervalMs = 10_000
    /// Read the input through an internal topic keyed by child id (for producers that key by something else).
    public var repartition = false
    public var repartitionTopic = "vigil-repartition"
    public var rules = "Rules"
    /// Worker threads evaluating rules; 0 means one per core.
    public var shards = 0
    public var clock = ClockMode.wall
    /// Allowed lateness, in seconds: clocks trail the largest event time (or the wall clock) by this much.
    public var allowedLateness: Int64 = 0
    public var maxEventBytes = EventDecoder.defaultMaxBytes
    /// Messages taken from Kafka per poll (one epoch).
    public var batchSize = 1000
    /// Once a batch has its first message, how long (ms) to keep collecting before processing it.
    public var batchLingerMs = 2
    /// Epochs in flight before intake stops fetching (backpressure): at most this many batches are held.
    public var maxInFlight = 32
    /// `key=value` librdkafka properties for every client (TLS, SASL, tuning).
    public var kafka: [String] = []
    /// Properties for the consumer only, and for the producer only (applied after `kafka`).
    public var kafkaConsumer: [String] = []
    public var kafkaProducer: [String] = []

    public init() {}

    public var effectiveShards: Int { shards > 0 ? shards : max(1, ProcessInfo.processInfo.activeProcessorCount) }
    /// The topic the engines read: the input, or the repartition topic.
    public var processingTopic: String { repartition ? repartitionTopic : inputTopic }

    public struct ConfigError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    public static let keys = ["brokers", "group", "input-topic", "alerts-topic", "dead-letter-topic", "audit-file", "changelog-topic",
                              "checkpoint-interval-ms", "repartition", "repartition-topic",
                              "rules", "shards", "clock", "allowed-lateness", "max-event-bytes", "batch-size", "batch-linger-ms", "max-in-flight", "kafka",
                              "kafka-consumer", "kafka-producer"]

    /// Reads settings from a YAML mapping; keys as the flags (`input-topic: ...`); `kafka` is a mapping of
    /// librdkafka properties.
    public mutating func load(yaml text: String, path: String) throws(ConfigError) {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch { throw ConfigError(message: "\(path): not valid YAML: \(error)") }
        guard case .mapping(let m)? = node else { throw ConfigError(message: "\(path): expected a mapping of settings") }
        for (k, v) in m {
            guard let key = k.string else { continue }
            let line = k.mark?.line ?? 0
            func str() throws(ConfigError) -> String {
                guard let s = v.string else { throw ConfigError(message: "\(path):\(line): \(key) must be a single value") }
                return s
            }
            func int() throws(ConfigError) -> Int {
                guard let s = v.string, let i = Int(s) else { throw ConfigError(message: "\(path):\(line): \(key) must be a whole number") }
                return i
            }
            switch key {
            case "brokers": brokers = try str()
            case "group": group = try str()
            case "input-topic": inputTopic = try str()
            case "alerts-topic": alertsTopic = try str()
            case "dead-letter-topic": deadLetterTopic = try str()
            case "audit-file": auditFile = try str()
            case "changelog-topic": changelogTopic = try str()
            case "checkpoint-interval-ms": checkpointIntervalMs = try int()
            case "repartition":
                switch try str() {
                case "true", "yes": repartition = true
                case "false", "no": repartition = false
                default: throw ConfigError(message: "\(path):\(line): repartition must be true or false")
                }
            case "repartition-topic": repartitionTopic = try str()
            case "rules": rules = try str()
            case "shards": shards = try int()
            case "clock":
                guard let c = ClockMode(rawValue: try str()) else { throw ConfigError(message: "\(path):\(line): clock must be wall or event") }
                clock = c
            case "allowed-lateness": allowedLateness = Int64(try int())
            case "max-event-bytes": maxEventBytes = try int()
            case "batch-size": batchSize = try int()
            case "batch-linger-ms": batchLingerMs = try int()
            case "max-in-flight": maxInFlight = try int()
            case "kafka", "kafka-consumer", "kafka-producer":
                guard case .mapping(let props) = v else { throw ConfigError(message: "\(path):\(line): \(key) must be a mapping of librdkafka properties") }
                var list: [String] = []
                for (pk, pv) in props {
                    guard let name = pk.string, let value = pv.string else { continue }
                    list.append("\(name)=\(value)")
                }
                if key == "kafka" { kafka += list } else if key == "kafka-consumer" { kafkaConsumer += list } else { kafkaProducer += list }
            default:
                throw ConfigError(message: "\(path):\(line): unknown setting '\(key)' (known: \(PipelineConfig.keys.joined(separator: ", ")))")
            }
        }
    }

    /// The settings as YAML, in the `--config` format (property values are shown as given).
    public var yaml: String {
        func q(_ s: String) -> String { s.isEmpty || s.contains(where: { ": #'\"{}[],&*!|>%@`".contains($0) }) ? "'" + s.replacingOccurrences(of: "'", with: "''") + "'" : s }
        var out = ""
        out += "brokers: \(q(brokers))\n"
        out += "group: \(q(group))\n"
        out += "input-topic: \(q(inputTopic))\n"
        out += "alerts-topic: \(q(alertsTopic))\n"
        out += "dead-letter-topic: \(q(deadLetterTopic))\n"
        out += "audit-file: \(q(auditFile))\n"
        out += "changelog-topic: \(q(changelogTopic))\n"
        out += "checkpoint-interval-ms: \(checkpointIntervalMs)\n"
        out += "repartition: \(repartition)\n"
        out += "repartition-topic: \(q(repartitionTopic))\n"
        out += "rules: \(q(rules))\n"
        out += "shards: \(shards)  # effective: \(effectiveShards)\n"
        out += "clock: \(clock.rawValue)\n"
        out += "allowed-lateness: \(allowedLateness)\n"
        out += "max-event-bytes: \(maxEventBytes)\n"
        out += "batch-size: \(batchSize)\n"
        out += "batch-linger-ms: \(batchLingerMs)\n"
        out += "max-in-flight: \(maxInFlight)\n"
        for (key, list) in [("kafka", kafka), ("kafka-consumer", kafkaConsumer), ("kafka-producer", kafkaProducer)] where !list.isEmpty {
            out += "\(key):\n"
            for p in list {
                let parts = p.split(separator: "=", maxSplits: 1).map(String.init)
                let name = parts.first ?? p
                let secret = name.contains("password") || name.contains("secret") || name.hasSuffix(".key") || name.contains("jaas")
                out += "  \(name): \(secret ? "'***'" : q(parts.count > 1 ? parts[1] : ""))\n"
            }
        }
        return out
    }

    /// Checks values that have no natural type check.
    public func validate() throws(ConfigError) {
        guard shards >= 0, shards <= 256 else { throw ConfigError(message: "shards must be between 0 (one per core) and 256") }
        guard batchSize > 0, batchSize <= 100_000 else { throw ConfigError(message: "batch-size must be between 1 and 100000") }
        guard batchLingerMs >= 0, batchLingerMs <= 1000 else { throw ConfigError(message: "batch-linger-ms must be between 0 and 1000") }
        guard maxInFlight > 0, maxInFlight <= 1000 else { throw ConfigError(message: "max-in-flight must be between 1 and 1000") }
        guard allowedLateness >= 0 else { throw ConfigError(message: "allowed-lateness must not be negative") }
        guard maxEventBytes > 0 else { throw ConfigError(message: "max-event-bytes must be positive") }
        guard checkpointIntervalMs >= 100 else { throw ConfigError(message: "checkpoint-interval-ms must be at least 100") }
        let topics = [("input-topic", inputTopic), ("alerts-topic", alertsTopic), ("dead-letter-topic", deadLetterTopic),
                      ("changelog-topic", changelogTopic)] + (repartition ? [("repartition-topic", repartitionTopic)] : [])
        for (name, t) in topics where t.isEmpty { throw ConfigError(message: "\(name) must not be empty") }
        guard Set(topics.map(\.1)).count == topics.count else {
            throw ConfigError(message: "the input, alerts, dead-letter, changelog and repartition topics must all be different topics")
        }
    }
}
