import Foundation

/// What the stages share, and nothing else: whether to stop, the first fatal error, and how many epochs
/// are in flight (handed out by intake, not yet durable). Stages talk to it and to their queues, never to
/// each other's fields. Thread-safe.
public final class Coordinator: @unchecked Sendable {
    private let cond = NSCondition()
    private var stopRequested = false
    private var crashed = false
    private var fatal: PipelineError?
    private var inFlight = 0
    /// Epochs become durable in order: every epoch up to this one is.
    private var durableThrough = -1

    public init() {}

    /// Asks every stage to stop gracefully: intake stops, in-flight work drains, state is checkpointed,
    /// outputs are flushed. Safe from any thread (a signal handler's queue included).
    public func requestStop() {
        cond.lock()
        stopRequested = true
        cond.broadcast()
        cond.unlock()
    }

    /// Records a fatal error (the first one wins) and stops. Waits on in-flight work end at once: what is
    /// not durable by now never will be, and the next start re-does it from the last checkpoint.
    public func fail(_ error: PipelineError) {
        cond.lock()
        if fatal == nil { fatal = error }
        stopRequested = true
        cond.broadcast()
        cond.unlock()
    }

    /// Stops at once as a crash would (tests): no stage drains, checkpoints or flushes any more.
    public func crash() {
        cond.lock()
        crashed = true
        stopRequested = true
        cond.broadcast()
        cond.unlock()
    }

    public var isStopping: Bool { locked { stopRequested } }
    public var isCrashed: Bool { locked { crashed } }
    public var fatalError: PipelineError? { locked { fatal } }
    /// Whether stopping must skip the graceful steps (a fatal error or a crash).
    public var isAborting: Bool { locked { crashed || fatal != nil } }
    public var epochsInFlight: Int { locked { inFlight } }

    /// Waits until fewer than `limit` epochs are in flight (backpressure). Returns how many are, or nil when
    /// stopping.
    func waitForCapacity(limit: Int) -> Int? {
        cond.lock()
        defer { cond.unlock() }
        while inFlight >= limit && !stopRequested { _ = cond.wait(until: Date().addingTimeInterval(0.05)) }
        return stopRequested ? nil : inFlight
    }

    /// Blocks until stopping is requested.
    func waitUntilStopping() {
        cond.lock()
        while !stopRequested { cond.wait() }
        cond.unlock()
    }

    func epochStarted() { locked { inFlight += 1 } }

    /// Epoch `epoch`, and so every earlier one, is durable.
    func epochFinished(_ epoch: Int) {
        cond.lock()
        inFlight -= 1
        durableThrough = max(durableThrough, epoch)
        cond.broadcast()
        cond.unlock()
    }

    /// Waits until epoch `epoch` is durable; false on timeout, or when it cannot happen any more.
    func waitForDurable(epoch: Int, timeout: Double) -> Bool {
        let until = Date().addingTimeInterval(timeout)
        cond.lock()
        defer { cond.unlock() }
        while durableThrough < epoch && fatal == nil && !crashed {
            if !cond.wait(until: until) { break }
        }
        return durableThrough >= epoch
    }

    /// Blocks until every epoch handed out is durable. False when that cannot happen any more (a fatal error
    /// or a crash), so that nobody waits for ever.
    @discardableResult
    func drain() -> Bool {
        cond.lock()
        defer { cond.unlock() }
        while inFlight > 0 && fatal == nil && !crashed { _ = cond.wait(until: Date().addingTimeInterval(0.05)) }
        return inFlight == 0
    }

    private func locked<T>(_ body: () -> T) -> T {
        cond.lock()
        defer { cond.unlock() }
        return body()
    }
}
