import VigilContract

/// Times no record can have. A record that claims one is a dead letter (`implausible-time`), never
/// evaluated: one event dated 2090 would otherwise move its partition's clock there and fire every pending
/// deadline at once, and the clock would stay there through restarts.
public struct TimePlausibility: Sendable {
    /// How far `occurred_at` may be ahead of the wall clock, or of the record's own `recorded_at`.
    public let maxSkew: Int64
    /// Nothing about a child at risk today happened before this.
    public static let earliest = Instant(micros: 0)

    /// - Parameter maxSkewSeconds: tolerated clock difference between Vigil and the agencies' systems.
    public init(maxSkewSeconds: Int) {
        maxSkew = Int64(maxSkewSeconds) * Instant.microsPerSecond
    }

    /// What is wrong with the times of a valid record, if anything; `now` is the wall clock.
    public func check(_ r: EventRecord, contract: EventContract, now: Instant) -> ValidationFailure? {
        guard let at = r[contract.occurredAtSlot].instant else { return nil }
        if at < Self.earliest {
            return ValidationFailure(kind: .implausibleTime, path: "$.occurred_at", reason: "before 1970")
        }
        if at.micros > now.micros + maxSkew {
            return ValidationFailure(kind: .implausibleTime, path: "$.occurred_at",
                                     reason: "more than \(maxSkew / Instant.microsPerSecond) s ahead of the wall clock")
        }
        if let slot = contract.recordedAtSlot, let recorded = r[slot].instant, at.micros > recorded.micros + maxSkew {
            return ValidationFailure(kind: .implausibleTime, path: "$.occurred_at",
                                     reason: "more than \(maxSkew / Instant.microsPerSecond) s after recorded_at")
        }
        return nil
    }
}
