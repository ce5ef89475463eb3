import VigilContract

/// The repartitioner's decisions: which buffered event to write next so that the partitions it reads are
/// merged in event-time order, and which partitions to pause while their buffers are full. A value with no
/// I/O; `Repartitioner` feeds it what the consumer reads and does what it answers.
///
/// Like a Kafka Streams task, it always takes the earliest buffered event, and waits while an assigned
/// partition that has not reached its end has nothing buffered (an earlier event may be on its way).
struct EventTimeMerge<Item: Sendable>: Sendable {
    struct Buffered: Sendable {
        let at: Instant
        let offset: Int64
        let item: Item
    }

    /// Events buffered per partition before it is paused; it resumes once the merge has taken half.
    let perPartition: Int
    private(set) var assigned = Set<Int32>()
    private var queues: [Int32: [Buffered]] = [:]
    private var heads: [Int32: Int] = [:]
    private var atEnd = Set<Int32>()
    private(set) var paused = Set<Int32>()
    /// Set by `next()` when it stops for a partition that has nothing buffered and is not at its end.
    private(set) var waitingFor: Int32?

    init(perPartition: Int) { self.perPartition = perPartition }

    /// Events buffered and not yet taken.
    var buffered: Int { queues.reduce(0) { $0 + $1.value.count - heads[$1.key, default: 0] } }

    /// The assignment now. A partition gone loses its buffered events (its next owner reads them again: their
    /// offsets were never stored); returns those of them that were paused, to resume (so that a partition
    /// coming back is not still paused).
    mutating func assign(_ now: Set<Int32>) -> [Int32] {
        let gone = assigned.subtracting(now)
        for p in gone {
            queues[p] = nil
            heads[p] = nil
            atEnd.remove(p)
        }
        let unpause = paused.intersection(gone)
        paused.subtract(unpause)
        assigned = now
        return unpause.sorted()
    }

    /// An event read from `p`; false when `p` is not assigned (revoked since: dropped).
    mutating func add(_ p: Int32, offset: Int64, at: Instant, _ item: Item) -> Bool {
        guard assigned.contains(p) else { return false }
        atEnd.remove(p)
        queues[p, default: []].append(Buffered(at: at, offset: offset, item: item))
        return true
    }

    /// A message that is not an event (a dead letter) keeps its place among `p`'s offsets, at the time of the
    /// event before it.
    mutating func addInPlace(_ p: Int32, offset: Int64, _ item: Item) -> Bool {
        add(p, offset: offset, at: queues[p]?.last?.at ?? .distantPast, item)
    }

    mutating func reachedEnd(_ p: Int32) {
        if assigned.contains(p) { atEnd.insert(p) }
    }

    /// The earliest buffered event, while every assigned partition has one buffered or is at its end.
    mutating func next() -> (partition: Int32, Buffered)? {
        var best: (p: Int32, at: Instant)?
        waitingFor = nil
        for p in assigned.sorted() {
            let h = heads[p, default: 0]
            if let q = queues[p], h < q.count {
                if let current = best, current.at <= q[h].at { continue }
                best = (p, q[h].at)
            } else if !atEnd.contains(p) {
                waitingFor = p
                return nil
            }
        }
        guard let b = best, let item = queues[b.p]?[heads[b.p, default: 0]] else { return nil }
        heads[b.p, default: 0] += 1
        return (b.p, item)
    }

    /// Drops what was taken, and says which partitions to pause (a full buffer) and resume (half taken).
    mutating func flowControl() -> (pause: [Int32], resume: [Int32]) {
        for (p, h) in heads where h > 0 {
            queues[p]?.removeFirst(h)
            heads[p] = 0
        }
        var pause: [Int32] = [], resume: [Int32] = []
        for p in assigned.sorted() {
            let count = queues[p]?.count ?? 0
            if count >= perPartition, !paused.contains(p) {
                paused.insert(p)
                pause.append(p)
            } else if count <= perPartition / 2, paused.contains(p) {
                paused.remove(p)
                resume.append(p)
            }
        }
        return (pause, resume)
    }

    /// Every assigned partition is at its end with nothing buffered.
    var drained: Bool { !assigned.isEmpty && assigned.isSubset(of: atEnd) && buffered == 0 }
}
