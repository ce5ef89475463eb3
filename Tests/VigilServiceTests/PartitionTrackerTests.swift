import Testing
import VigilContract
@testable import VigilService

/// Intake's partition bookkeeping, driven without a source: every transition.
@Suite struct PartitionTrackerTests {
    static let t = Instant(micros: 1_700_000_000_000_000)
    static let s = Instant.microsPerSecond

    @Test func aPartitionWithNoCheckpointIsReadFromItsBeginningAndIsDirty() {
        var tr = PartitionTracker(lateness: 0, mode: .event)
        let start = tr.assign(3, restored: nil)
        #expect(start == .beginning)
        #expect(tr.isAssigned(3))
        #expect(tr.dirty == [3], "so that it gets a first checkpoint even if empty")
        #expect(tr.partitions[3]?.clock == nil)
        let parts = tr.checkpoint([3])
        #expect(parts == [CheckpointPart(partition: 3, checkpoint: 0, offset: 0, clock: .distantPast)])
        #expect(tr.dirty.isEmpty)
    }

    @Test func aRestoredPartitionResumesAtItsCheckpointWithItsClock() {
        var tr = PartitionTracker(lateness: 0, mode: .event)
        let start = tr.assign(1, restored: .init(checkpoint: 4, offset: 120, clock: Self.t))
        #expect(start == .at(120))
        #expect(tr.partitions[1]?.clock == Self.t)
        #expect(tr.maxEventTime == Self.t)
        #expect(tr.dirty.isEmpty)
        _ = tr.read(1, offset: 120)
        let parts = tr.checkpoint([1])
        #expect(parts == [CheckpointPart(partition: 1, checkpoint: 5, offset: 121, clock: Self.t)])
    }

    @Test func aCheckpointCutShortIsReadFromTheBeginningAndItsChildrenSkipWhatTheyHold() {
        var tr = PartitionTracker(lateness: 0, mode: .event)
        let start = tr.assign(0, restored: .init(checkpoint: nil, offset: nil, clock: .distantPast, skipBelow: ["C-1": 3, "C-2": 1]))
        #expect(start == .beginning)
        #expect(tr.dirty == [0])
        #expect(tr.partitions[0]?.clock == nil)
        var decisions: [PartitionTracker.Decision] = []
        for (offset, child) in [(0, "C-1"), (1, "C-2"), (2, "C-1"), (2, "C-2"), (3, "C-1"), (1, "C-1")] as [(Int64, String)] {
            _ = tr.read(0, offset: offset)
            decisions.append(tr.event(0, offset: offset, child: child, at: Self.t + offset * Self.s))
        }
        #expect(decisions.map { $0 == .skip } == [true, false, true, false, false, false], "past the largest skip offset nothing is skipped")
        #expect(tr.partitions[0]?.skipBelow.isEmpty == true)
    }

    @Test func readingMarksThePartitionDirtyAndNotAtItsEndAndIgnoresPartitionsNotAssigned() {
        var tr = PartitionTracker(lateness: 0, mode: .event)
        _ = tr.assign(0, restored: .init(checkpoint: 0, offset: 10, clock: Self.t))
        tr.reachedEnd(0)
        #expect(tr.caughtUp)
        let read = tr.read(0, offset: 10)
        #expect(read)
        #expect(!tr.caughtUp)
        #expect(tr.dirty == [0])
        #expect(tr.partitions[0]?.nextOffset == 11)
        let other = tr.read(7, offset: 0)
        #expect(!other, "a message of a partition revoked since is dropped")
    }

    @Test func clocksFollowTheLargestEventTimeLessTheLatenessAndNeverGoBack() {
        var tr = PartitionTracker(lateness: 10 * Self.s, mode: .event)
        _ = tr.assign(0, restored: nil)
        _ = tr.assign(1, restored: nil)
        let a = tr.event(0, offset: 0, child: "a", at: Self.t)
        let late = tr.event(0, offset: 1, child: "a", at: Self.t - 100 * Self.s)
        let b = tr.event(1, offset: 0, child: "b", at: Self.t + 5 * Self.s)
        #expect(a == .process(clock: Self.t - 10 * Self.s))
        #expect(late == .process(clock: Self.t - 10 * Self.s), "a late event does not move the clock back")
        #expect(b == .process(clock: Self.t - 5 * Self.s))
        let moved = tr.takeMovedClocks()
        #expect(moved.map(\.partition) == [0, 1])
        #expect(moved.map(\.clock) == [Self.t - 10 * Self.s, Self.t - 5 * Self.s])
        let again = tr.takeMovedClocks()
        #expect(again.isEmpty)
        #expect(tr.maxEventTime == Self.t + 5 * Self.s)
    }

    @Test func aPartitionsClockIsReportedMovedAgainAfterEveryTakeAndAfterItIsAssignedAgain() {
        var tr = PartitionTracker(lateness: 0, mode: .event)
        _ = tr.assign(0, restored: nil)
        _ = tr.assign(1, restored: nil)
        _ = tr.event(0, offset: 0, child: "a", at: Self.t)
        _ = tr.event(0, offset: 1, child: "a", at: Self.t + Self.s)
        #expect(tr.takeMovedClocks().map(\.partition) == [0])
        // The same partition again, with nothing in between: moved again, not remembered as already listed.
        _ = tr.event(0, offset: 2, child: "a", at: Self.t + 2 * Self.s)
        #expect(tr.takeMovedClocks().map(\.clock) == [Self.t + 2 * Self.s])
        // Revoked and assigned again while listed: not reported for its old self, reported once it moves.
        _ = tr.event(1, offset: 0, child: "b", at: Self.t)
        tr.forget([1])
        _ = tr.assign(1, restored: nil)
        #expect(tr.takeMovedClocks().isEmpty)
        _ = tr.event(1, offset: 0, child: "b", at: Self.t + 3 * Self.s)
        #expect(tr.takeMovedClocks().map(\.partition) == [1])
        #expect(tr.partitions[1]?.clock == Self.t + 3 * Self.s)
    }

    @Test func caughtUpNeedsEveryAssignedPartitionAtItsEnd() {
        var tr = PartitionTracker(lateness: 0, mode: .event)
        #expect(!tr.caughtUp, "nothing assigned")
        _ = tr.assign(0, restored: nil)
        _ = tr.assign(1, restored: nil)
        tr.reachedEnd(0)
        #expect(!tr.caughtUp)
        tr.reachedEnd(1)
        #expect(tr.caughtUp)
    }

    @Test func onceCaughtUpEventClocksJumpToTheLargestEventTimeOncePerChange() {
        var tr = PartitionTracker(lateness: 0, mode: .event)
        _ = tr.assign(0, restored: nil)
        var ticks: [Instant?] = [tr.catchUpTick(wall: Self.t)]
        _ = tr.event(0, offset: 0, child: "a", at: Self.t)
        ticks.append(tr.catchUpTick(wall: .distantPast))
        ticks.append(tr.catchUpTick(wall: .distantPast))
        _ = tr.event(0, offset: 1, child: "a", at: Self.t + Self.s)
        ticks.append(tr.catchUpTick(wall: .distantPast))
        #expect(ticks == [nil, Self.t, nil, Self.t + Self.s], "none before an event; once per change")
    }

    @Test func onceCaughtUpWallClocksMoveAtMostOnceASecondAndCarryEveryPartition() {
        var tr = PartitionTracker(lateness: 2 * Self.s, mode: .wall)
        _ = tr.assign(0, restored: nil)
        _ = tr.assign(1, restored: .init(checkpoint: 0, offset: 5, clock: Self.t + 100 * Self.s))
        let first = tr.catchUpTick(wall: Self.t)
        #expect(first == Self.t - 2 * Self.s)
        #expect(tr.partitions[0]?.clock == Self.t - 2 * Self.s)
        #expect(tr.partitions[1]?.clock == Self.t + 100 * Self.s, "a clock ahead of the wall stays")
        let soon = tr.catchUpTick(wall: Self.t + Self.s / 2)
        let later = tr.catchUpTick(wall: Self.t + Self.s)
        #expect(soon == nil)
        #expect(later == Self.t - Self.s)
    }

    @Test func checkpointsNumberOnAndSkipPartitionsNotAssigned() {
        var tr = PartitionTracker(lateness: 0, mode: .event)
        _ = tr.assign(0, restored: nil)
        _ = tr.read(0, offset: 0)
        _ = tr.event(0, offset: 0, child: "a", at: Self.t)
        let first = tr.checkpoint([0, 9])
        #expect(first == [CheckpointPart(partition: 0, checkpoint: 0, offset: 1, clock: Self.t)])
        let again = tr.checkpoint(tr.dirty)
        #expect(again.isEmpty, "nothing read since")
        _ = tr.read(0, offset: 1)
        let next = tr.checkpoint(tr.dirty)
        #expect(next.map(\.checkpoint) == [1])
    }

    /// A revocation during a checkpoint: the planned checkpoint is in flight, more is read, then the
    /// partition is revoked. Intake checkpoints it again (the next number) before forgetting it; its next
    /// owner resumes from that one.
    @Test func aPartitionRevokedDuringACheckpointIsCheckpointedAgainThenForgotten() {
        var tr = PartitionTracker(lateness: 0, mode: .event)
        _ = tr.assign(2, restored: nil)
        _ = tr.read(2, offset: 0)
        let first = tr.checkpoint(tr.dirty)
        #expect(first.map(\.checkpoint) == [0])
        _ = tr.read(2, offset: 1)
        #expect(tr.owned([2, 5]) == [2])
        let dirty = tr.dirty
        let last = tr.checkpoint(tr.owned([2]).filter { dirty.contains($0) })
        #expect(last == [CheckpointPart(partition: 2, checkpoint: 1, offset: 2, clock: .distantPast)])
        tr.forget([2])
        #expect(!tr.isAssigned(2))
        #expect(tr.owned([2]).isEmpty)
        // The next owner (here, this tracker again) resumes from it.
        let start = tr.assign(2, restored: .init(checkpoint: 1, offset: 2, clock: .distantPast))
        #expect(start == .at(2))
        _ = tr.read(2, offset: 2)
        let resumed = tr.checkpoint([2])
        #expect(resumed.map(\.checkpoint) == [2])
    }
}
