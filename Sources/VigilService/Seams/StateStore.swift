import VigilContract
import VigilRules

/// Of a restore: changelog records read, seconds reading them, seconds decoding them.
public struct RestoreTimings: Sendable {
    public var records = 0
    public var read = 0.0
    public var decode = 0.0
    public init(records: Int = 0, read: Double = 0, decode: Double = 0) {
        self.records = records
        self.read = read
        self.decode = decode
    }
}

/// Where checkpointed state is read back from when partitions are assigned (it is written through the
/// changelog output).
public protocol StateStore: AnyObject {
    /// The newest complete checkpoint of each of `partitions` that has one. Runs on the polling thread, inside
    /// a rebalance.
    func restore(partitions: [Int32], rules: CompiledRuleSet) throws(PipelineError) -> (restored: [Int32: Checkpoint.Restored], timings: RestoreTimings)
}

/// The wall clock, as the pipeline sees it: `emitted_at`, the live clock, checkpoint intervals, retries.
/// Tests drive a manual one.
public protocol PipelineClock: Sendable {
    func now() -> Instant
}

/// The system's real-time clock.
public struct SystemClock: PipelineClock {
    public init() {}
    public func now() -> Instant { .now }
}
