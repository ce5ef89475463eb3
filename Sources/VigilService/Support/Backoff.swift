/// Exponential backoff: how long to wait before attempt `n` of something that failed. A value, so the same
/// policy serves a retry loop on a thread and a state machine that only computes when to try again.
public struct Backoff: Sendable, Equatable {
    /// The first delay, in seconds.
    public var initial: Double
    /// The largest delay, in seconds.
    public var maximum: Double
    public var factor: Double

    public init(initial: Double = 0.1, maximum: Double = 5, factor: Double = 2) {
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
    }

    /// Seconds to wait after `failures` consecutive failures (1: the first delay).
    public func delay(afterFailures failures: Int) -> Double {
        guard failures > 1 else { return min(initial, maximum) }
        var d = initial
        for _ in 1..<min(failures, 64) {
            d *= factor
            if d >= maximum { return maximum }
        }
        return d
    }

    /// Delivery retries: 0.2 s, 0.4 s, ... up to 5 s.
    public static let delivery = Backoff(initial: 0.2, maximum: 5)
    /// Re-reading after a consumer error: 0.1 s, 0.2 s, ... up to 5 s.
    public static let reading = Backoff(initial: 0.1, maximum: 5)
    /// Waiting for a broker or a topic: 0.5 s, 1 s, ... up to 30 s.
    public static let broker = Backoff(initial: 0.5, maximum: 30)
}

/// A retry loop on the calling thread: the delay grows with each failure and resets on `succeeded()`.
public struct RetryDelay: Sendable {
    public let policy: Backoff
    public private(set) var failures = 0

    public init(_ policy: Backoff) { self.policy = policy }

    /// Records a failure and returns how long to wait before the next attempt.
    public mutating func failed() -> Double {
        failures += 1
        return policy.delay(afterFailures: failures)
    }

    public mutating func succeeded() { failures = 0 }
}
