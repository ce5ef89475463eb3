import Testing
import VigilContract
@testable import VigilService

/// The repartitioner's merge, driven without Kafka.
@Suite struct EventTimeMergeTests {
    func t(_ s: Int64) -> Instant { Instant(micros: s * Instant.microsPerSecond) }

    func drain(_ m: inout EventTimeMerge<String>) -> [String] {
        var out: [String] = []
        while let (_, b) = m.next() { out.append(b.item) }
        return out
    }

    @Test func partitionsAreMergedByEventTimeAndTheMergeWaitsForAPartitionNotAtItsEnd() {
        var m = EventTimeMerge<String>(perPartition: 100)
        _ = m.assign([0, 1])
        _ = m.add(0, offset: 0, at: t(1), "a1")
        _ = m.add(0, offset: 1, at: t(5), "a5")
        let none = drain(&m)
        #expect(none.isEmpty, "partition 1 may still hold something earlier")
        #expect(m.waitingFor == 1)
        _ = m.add(1, offset: 0, at: t(3), "b3")
        let first = drain(&m)
        #expect(first == ["a1", "b3"], "then partition 1 is empty again and not at its end")
        m.reachedEnd(1)
        let rest = drain(&m)
        #expect(rest == ["a5"])
        m.reachedEnd(0)
        _ = m.flowControl()
        #expect(m.drained)
    }

    @Test func aDeadLetterKeepsItsPlaceAmongItsPartitionsOffsets() {
        var m = EventTimeMerge<String>(perPartition: 100)
        _ = m.assign([0])
        _ = m.add(0, offset: 0, at: t(2), "e0")
        _ = m.addInPlace(0, offset: 1, "dead")
        _ = m.add(0, offset: 2, at: t(1), "e2")
        m.reachedEnd(0)
        let all = drain(&m)
        #expect(all == ["e0", "dead", "e2"])
    }

    @Test func aFullPartitionIsPausedAndResumedOnceHalfIsTaken() {
        var m = EventTimeMerge<String>(perPartition: 4)
        _ = m.assign([0, 1])
        for k in 0..<4 { _ = m.add(0, offset: Int64(k), at: t(Int64(k)), "x") }
        let none = drain(&m)
        #expect(none.isEmpty)
        let full = m.flowControl()
        #expect(full.pause == [0])
        _ = m.add(1, offset: 0, at: t(2), "y")
        let some = drain(&m)
        #expect(some == ["x", "x", "x", "y"], "partition 0 up to partition 1's event time (ties in partition order), then y")
        let flow = m.flowControl()
        #expect(flow.resume == [0] && flow.pause.isEmpty)
    }

    @Test func aRevokedPartitionLosesItsBufferAndIsResumedIfPaused() {
        var m = EventTimeMerge<String>(perPartition: 1)
        _ = m.assign([0, 1])
        _ = m.add(1, offset: 0, at: t(1), "z")
        let full = m.flowControl()
        #expect(full.pause == [1])
        let resume = m.assign([0])
        #expect(resume == [1])
        #expect(m.buffered == 0)
        let added = m.add(1, offset: 1, at: t(2), "late")
        #expect(!added, "a message of a revoked partition is dropped")
    }
}
