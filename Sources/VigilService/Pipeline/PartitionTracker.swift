import VigilContract

/// What intake knows of each assigned input partition: its event-time clock, how far it is read, which
/// checkpoint is next, whether it changed since the last one, and which restored children must skip events
/// their state already holds. A value with no I/O, no threads and no clock of its own: intake feeds it what
/// the source says and does what it answers.
///
/// Clocks: a partition's clock is the largest valid `occurred_at` read from it, minus the allowed lateness.
/// Once every assigned partition is at its end, the clocks move on by themselves: to the largest event time
/// seen (`ClockMode.event`), or with the wall clock, at most once a second (`ClockMode.wall`).
public struct PartitionTracker: Sendable {
    /// What the tracker keeps per partition.
    public struct Partition: Sendable, Equatable {
        /// The largest valid event time read, minus the lateness; nil before the first.
        public var clock: Instant?
        /// The offset after the last message handed out; nil before the first.
        public var nextOffset: Int64?
        /// The number the next checkpoint of this partition gets.
        public var nextCheckpoint: Int64 = 0
        /// Read since its last checkpoint (or never checkpointed).
        public var dirty = false
        /// At its end (no message since the source said so).
        public var atEnd = false
        /// Children restored from a checkpoint cut short: their events below this offset are in their state.
        public var skipBelow: [String: Int64] = [:]
        /// The largest of `skipBelow`: from there on nothing is skipped.
        public var skipUntil: Int64?
        /// Stopped after an input gap: nothing more is read from it until a restart decides.
        public var stopped = false
    }

    /// A restored partition: where its newest complete checkpoint left it.
    public struct Restored: Sendable, Equatable {
        public var checkpoint: Int64?
        public var offset: Int64?
        public var clock: Instant
        public var skipBelow: [String: Int64]

        public init(checkpoint: Int64?, offset: Int64?, clock: Instant, skipBelow: [String: Int64] = [:]) {
            self.checkpoint = checkpoint
            self.offset = offset
            self.clock = clock
            self.skipBelow = skipBelow
        }
    }

    /// What to do with a valid event.
    public enum Decision: Sendable, Equatable {
        /// Evaluate it with the partition's clock as it now is.
        case process(clock: Instant)
        /// Its child's restored state holds it already.
        case skip
    }

    public let lateness: Int64
    public let mode: ClockMode
    public private(set) var partitions: [Int32: Partition] = [:]
    /// The largest valid event time read from any partition (or restored).
    public private(set) var maxEventTime = Instant.distantPast
    /// Partitions whose clock moved since `takeMovedClocks`.
    private var moved = Set<Int32>()
    /// The partition last added to `moved` (a fast path for runs of one partition's events).
    private var lastMoved: Int32?
    private var lastTickAll: Instant?
    private var lastWallTick: Instant?
    private var caughtUpAnnounced = false

    /// - Parameter lateness: how far (microseconds) clocks trail the largest event time or the wall clock.
    public init(lateness: Int64, mode: ClockMode) {
        self.lateness = lateness
        self.mode = mode
    }

    public var assigned: Set<Int32> { Set(partitions.keys) }
    public func isAssigned(_ p: Int32) -> Bool { partitions[p] != nil }

    // MARK: assignment

    /// A partition assigned, with its restored checkpoint if it has one; returns where to read from. A
    /// partition with no complete checkpoint is read from its beginning and is dirty (so it gets one).
    public mutating func assign(_ p: Int32, restored: Restored?) -> StartOffset {
        var s = Partition()
        s.dirty = true
        if let r = restored {
            s.clock = r.offset == nil ? nil : r.clock
            if r.clock > maxEventTime { maxEventTime = r.clock }
            s.nextCheckpoint = (r.checkpoint ?? -1) + 1
            s.nextOffset = r.offset
            s.dirty = r.offset == nil
            if !r.skipBelow.isEmpty {
                s.skipBelow = r.skipBelow
                s.skipUntil = r.skipBelow.values.max()
            }
        }
        partitions[p] = s
        moved.remove(p)
        if lastMoved == p { lastMoved = nil }
        return s.nextOffset.map { .at($0) } ?? .beginning
    }

    /// Of `ps`, those assigned here (a revocation may name partitions never assigned).
    public func owned(_ ps: [Int32]) -> [Int32] { ps.filter { partitions[$0] != nil } }

    /// Forgets revoked partitions.
    public mutating func forget(_ ps: [Int32]) {
        for p in ps {
            partitions[p] = nil
            moved.remove(p)
            if lastMoved == p { lastMoved = nil }
        }
    }

    // MARK: reading

    /// The source reached the end of a partition.
    public mutating func reachedEnd(_ p: Int32) { partitions[p]?.atEnd = true }

    /// A message (valid or not) was read at `offset`. False when the partition is not assigned here (a
    /// message of a partition revoked since) or is stopped: drop it.
    public mutating func read(_ p: Int32, offset: Int64) -> Bool {
        // Per message: one lookup, and the partition changed where it is (not copied out and back).
        guard let i = partitions.index(forKey: p), !partitions.values[i].stopped else { return false }
        partitions.values[i].atEnd = false
        partitions.values[i].dirty = true
        partitions.values[i].nextOffset = offset + 1
        return true
    }

    /// A valid event of child `child` at `at`, read at `offset` of `p` (after `read`): moves the clock and
    /// says whether to evaluate it.
    public mutating func event(_ p: Int32, offset: Int64, child: String, at: Instant) -> Decision {
        guard let i = partitions.index(forKey: p) else { return .skip }
        if at > maxEventTime { maxEventTime = at }
        let clock = max(partitions.values[i].clock ?? .distantPast, at - lateness)
        partitions.values[i].clock = clock
        // Messages come in runs of one partition: the set is touched once a run, not once an event.
        if lastMoved != p {
            moved.insert(p)
            lastMoved = p
        }
        guard let until = partitions.values[i].skipUntil else { return .process(clock: clock) }
        if offset >= until {
            partitions.values[i].skipBelow = [:]
            partitions.values[i].skipUntil = nil
        } else if let below = partitions.values[i].skipBelow[child], offset < below {
            return .skip
        }
        return .process(clock: clock)
    }

    /// The partitions whose clocks moved since the last call, in partition order, with their clocks.
    public mutating func takeMovedClocks() -> [(partition: Int32, clock: Instant)] {
        defer {
            moved.removeAll(keepingCapacity: true)
            lastMoved = nil
        }
        return moved.sorted().compactMap { p in partitions[p]?.clock.map { (p, $0) } }
    }

    // MARK: input gaps

    /// Where the partition is to be read next: the offset after the last message, or where it starts.
    public func expectedOffset(_ p: Int32) -> Int64? {
        guard let i = partitions.index(forKey: p) else { return nil }
        return partitions.values[i].nextOffset ?? 0
    }

    /// An input gap was found on `p`: stop it (nothing more read; its checkpoints keep the gap's start, so a
    /// restart finds it again), or go on from `resumeAt`.
    public mutating func gap(_ p: Int32, stop: Bool, resumeAt: Int64) {
        guard partitions[p] != nil else { return }
        if stop {
            partitions[p]?.stopped = true
        } else {
            partitions[p]?.nextOffset = resumeAt
            partitions[p]?.dirty = true
        }
    }

    // MARK: catching up

    /// Every assigned partition is at its end (and there is at least one). A stopped partition never is.
    public var caughtUp: Bool { !partitions.isEmpty && partitions.values.allSatisfy { $0.atEnd && !$0.stopped } }

    /// When caught up: the instant every clock moves to now, if it moves (see the type's description).
    /// `wall` is the wall clock.
    public mutating func catchUpTick(wall: Instant) -> Instant? {
        switch mode {
        case .event:
            guard maxEventTime > .distantPast, lastTickAll != maxEventTime else { return nil }
            lastTickAll = maxEventTime
            return maxEventTime
        case .wall:
            if let last = lastWallTick, wall.micros - last.micros < Instant.microsPerSecond { return nil }
            lastWallTick = wall
            let t = wall - lateness
            for p in Array(partitions.keys) {
                let c = partitions[p]?.clock ?? .distantPast
                partitions[p]?.clock = max(c, t)
            }
            return t
        }
    }

    /// True the first time it is called while caught up.
    public mutating func announceCaughtUp() -> Bool {
        guard caughtUp, !caughtUpAnnounced else { return false }
        caughtUpAnnounced = true
        return true
    }

    // MARK: checkpoints

    /// The assigned partitions read since their last checkpoint.
    public var dirty: [Int32] { partitions.filter(\.value.dirty).keys.sorted() }

    /// Partitions whose state changed without new input (a switch of rule pack; state carried to the pack at
    /// a restore): each needs a checkpoint. All of them when `ps` is nil.
    public mutating func markDirty(_ ps: [Int32]? = nil) {
        for p in ps ?? Array(partitions.keys) { partitions[p]?.dirty = true }
    }

    /// Plans a checkpoint of the assigned ones of `ps`: each gets its next number and is clean again.
    public mutating func checkpoint(_ ps: [Int32]) -> [CheckpointPart] {
        var parts: [CheckpointPart] = []
        for p in Set(ps).sorted() {
            guard var s = partitions[p] else { continue }
            // A partition read from its beginning with nothing in it yet checkpoints offset 0.
            parts.append(CheckpointPart(partition: p, checkpoint: s.nextCheckpoint, offset: s.nextOffset ?? 0, clock: s.clock ?? .distantPast))
            s.nextCheckpoint += 1
            s.dirty = false
            partitions[p] = s
        }
        return parts
    }
}

/// One partition's share of a checkpoint: its number, the input offset it reflects, and the clock.
public struct CheckpointPart: Sendable, Equatable {
    public let partition: Int32
    public let checkpoint: Int64
    public let offset: Int64
    public let clock: Instant

    public init(partition: Int32, checkpoint: Int64, offset: Int64, clock: Instant) {
        self.partition = partition
        self.checkpoint = checkpoint
        self.offset = offset
        self.clock = clock
    }
}
