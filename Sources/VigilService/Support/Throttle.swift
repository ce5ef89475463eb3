import VigilContract

/// At most one of something per interval (a log line repeated while a condition lasts).
struct Throttle: Sendable {
    let interval: Int64
    private var last = Instant.distantPast
    /// A count already reported (for warnings that say how many so far).
    private var reported = 0

    init(seconds: Int64) { interval = seconds * Instant.microsPerSecond }

    /// Whether it may happen now (and then it has).
    mutating func allow(_ now: Instant) -> Bool {
        guard now.micros - last.micros >= interval else { return false }
        last = now
        return true
    }

    /// Whether a count that grew since it was last reported may be reported now (and then it has).
    mutating func allow(_ now: Instant, count: Int) -> Bool {
        guard count > reported, allow(now) else { return false }
        reported = count
        return true
    }
}
