import VigilKafka

/// Why `vigil run` could not start, or stopped: one case per stage, each with what a log line needs (ids,
/// partitions, topics and reasons; never a payload).
public enum PipelineError: Error, CustomStringConvertible, Sendable {
    /// A setting is wrong.
    case config(PipelineConfig.ConfigError)
    /// The audit log cannot be opened, written or synced.
    case audit(AuditLogError)
    /// A Kafka client could not be created or configured, or reported a fatal error.
    case kafka(client: String, KafkaError)
    /// A topic Vigil needs does not exist or cannot be reached.
    case topicUnavailable(topic: String, KafkaError)
    /// The changelog is not partitioned like the topic the engines read.
    case changelogPartitions(changelog: String, count: Int, input: String, inputCount: Int)
    /// A partition's state cannot be restored.
    case restore(Checkpoint.RestoreError)
    /// Reading a topic made no progress.
    case stalled(topic: String, seconds: Int)
    /// An output refused a record in a way a retry cannot cure.
    case output(name: String, reason: String)

    public var description: String {
        switch self {
        case .config(let e): return e.message
        case .audit(let e): return e.description
        case .kafka(let client, let e): return "Kafka \(client): \(e.message)"
        case .topicUnavailable(let topic, let e):
            return "topic \(topic) is not available: \(e.message) (create it before starting vigil run)"
        case .changelogPartitions(let changelog, let count, let input, let inputCount):
            return "topic \(changelog) has \(count) partitions; it must have as many as \(input) (\(inputCount))"
        case .restore(let e): return "restoring state: \(e.message)"
        case .stalled(let topic, let seconds): return "no progress reading \(topic) for \(seconds) s"
        case .output(let name, let reason): return "\(name): \(reason)"
        }
    }
}
