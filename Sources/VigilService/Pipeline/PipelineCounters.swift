import Synchronization
import VigilContract

/// Live counters the stages add to (per batch, never per message); read for the summary and, later, for
/// metrics. A new counter is one line here and one where it happens.
final class PipelineCounters: Sendable {
    /// Messages read from assigned partitions (valid or not).
    let messages = Atomic<Int>(0)
    /// Valid events.
    let events = Atomic<Int>(0)
    let restoredChildren = Atomic<Int>(0)
    /// Events skipped on restore because a child's state already held them.
    let skippedRestored = Atomic<Int>(0)
    /// Events for children last seen on another input partition (input not keyed by child id).
    let domainChanges = Atomic<Int>(0)
    /// Wall-clock microseconds: the first message read, and the last epoch made durable (0: none yet).
    let firstMessageAt = Atomic<Int64>(0)
    let lastDurableAt = Atomic<Int64>(0)

    init() {}
}
