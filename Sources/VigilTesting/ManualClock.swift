import Foundation
import VigilContract
import VigilService

/// A wall clock that moves only when told to, or by a fixed step each time it is read: pipeline tests decide
/// when checkpoint intervals pass and where the live clock stands.
public final class ManualClock: PipelineClock, @unchecked Sendable {
    private let lock = NSLock()
    private var current: Instant
    private let step: Int64

    /// `step`: microseconds the clock moves on after each reading (0: only when told).
    public init(_ start: Instant, step: Int64 = 0) {
        current = start
        self.step = step
    }

    public func now() -> Instant {
        lock.lock()
        defer { lock.unlock() }
        let t = current
        current = current + step
        return t
    }

    public func set(_ t: Instant) {
        lock.lock()
        current = t
        lock.unlock()
    }

    public func advance(seconds: Double) {
        lock.lock()
        current = current + Int64(seconds * Double(Instant.microsPerSecond))
        lock.unlock()
    }
}
