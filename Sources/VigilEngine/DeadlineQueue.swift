import VigilContract

/// A pending deadline in the queue: which child's which expectation, due when.
struct Timer: Sendable {
    var deadline: Instant
    /// Arming order; breaks ties so deadlines at the same instant fire in the order they were armed.
    var seq: UInt64
    var child: Int32
    var pending: UInt32

    @inline(__always) static func before(_ a: Timer, _ b: Timer) -> Bool {
        a.deadline < b.deadline || (a.deadline == b.deadline && a.seq < b.seq)
    }
}

/// A binary min-heap of deadlines. Cancelled expectations are not removed eagerly: their entries are
/// recognised as stale when they reach the top (the child no longer holds that pending id with that
/// deadline) and dropped then.
struct DeadlineQueue: Sendable {
    private(set) var heap: [Timer] = []

    var count: Int { heap.count }
    var top: Timer? { heap.first }

    mutating func push(_ t: Timer) {
        heap.append(t)
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard Timer.before(heap[i], heap[p]) else { break }
            heap.swapAt(i, p)
            i = p
        }
    }

    mutating func pop() -> Timer? {
        guard !heap.isEmpty else { return nil }
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            let n = heap.count
            while true {
                let l = 2 * i + 1
                let r = l + 1
                var m = i
                if l < n, Timer.before(heap[l], heap[m]) { m = l }
                if r < n, Timer.before(heap[r], heap[m]) { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return top
    }

    mutating func removeAll() { heap.removeAll() }
}
