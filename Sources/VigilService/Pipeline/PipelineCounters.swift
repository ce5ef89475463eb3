import Synchronization
import VigilContract
import VigilEngine

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
    /// Per-child bounds reached (`EngineStats`): entries dropped or deadlines refused at a cap, timeline folded
    /// early, state shrunk to its byte budget.
    let stateLimits = Atomic<Int>(0)
    /// Input gaps found (input deleted before it was read).
    let inputGaps = Atomic<Int>(0)
    /// Wall-clock microseconds: the first message read, and the last epoch made durable (0: none yet).
    let firstMessageAt = Atomic<Int64>(0)
    let lastDurableAt = Atomic<Int64>(0)

    init() {}

    /// Adds what an engine counted since `before`.
    func count(_ now: EngineStats, since before: EngineStats) {
        domainChanges.add(now.domainChanges - before.domainChanges, ordering: .relaxed)
        let limits = (now.overflowDrops + now.pendingRefused + now.timelineOverflow + now.stateDegraded)
            - (before.overflowDrops + before.pendingRefused + before.timelineOverflow + before.stateDegraded)
        if limits > 0 { stateLimits.add(limits, ordering: .relaxed) }
    }
}
