import Foundation

/// A FIFO between threads. `put` never blocks (the coordinator bounds what is in flight); `take` waits.
///
/// A taken item is released at once (consumed messages must not outlive their use: librdkafka's shutdown
/// waits for every one of them).
final class HandOff<T>: @unchecked Sendable {
    private let cond = NSCondition()
    private var items: [T?] = []
    private var head = 0

    func put(_ x: T) {
        cond.lock()
        items.append(x)
        cond.signal()
        cond.unlock()
    }

    /// Returns an item just taken to the front (the next `take` gets it first).
    func putBack(_ x: T) {
        cond.lock()
        if head > 0 {
            head -= 1
            items[head] = x
        } else {
            items.insert(x, at: 0)
        }
        cond.unlock()
    }

    /// The next item, waiting at most `timeout` seconds (0: not at all); nil on timeout.
    func take(timeout: TimeInterval) -> T? {
        cond.lock()
        defer { cond.unlock() }
        if head >= items.count {
            guard timeout > 0 else { return nil }
            let deadline = Date().addingTimeInterval(timeout)
            while head >= items.count {
                if !cond.wait(until: deadline) { return nil }
            }
        }
        let x = items[head]
        items[head] = nil
        head += 1
        if head > 1024 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        return x
    }
}
