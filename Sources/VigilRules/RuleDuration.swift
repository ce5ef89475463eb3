import VigilContract

/// A duration as written in a rule: `90 days`, `1 working day`, `3 months`, `24 hours`.
///
/// Minutes, hours, days and weeks are exact (a day is 24 hours). Working days and months are calendar
/// arithmetic that ends at a local midnight, so they need a calendar.
public struct RuleDuration: Hashable, Sendable, CustomStringConvertible {
    public enum Unit: String, Sendable, CaseIterable {
        case minutes, hours, days, weeks, workingDays = "working days", months
    }
    public var amount: Int
    public var unit: Unit

    public init(_ amount: Int, _ unit: Unit) {
        self.amount = amount
        self.unit = unit
    }

    /// Exact length in microseconds, or nil for working days and months.
    public var exactMicros: Int64? {
        let a = Int64(amount)
        switch unit {
        case .minutes: return a * Instant.microsPerMinute
        case .hours: return a * Instant.microsPerHour
        case .days: return a * Instant.microsPerDay
        case .weeks: return a * 7 * Instant.microsPerDay
        case .workingDays, .months: return nil
        }
    }

    public var description: String {
        let singular: String
        switch unit {
        case .minutes: singular = "minute"
        case .hours: singular = "hour"
        case .days: singular = "day"
        case .weeks: singular = "week"
        case .workingDays: singular = "working day"
        case .months: singular = "month"
        }
        return amount == 1 ? "1 \(singular)" : "\(amount) \(unit.rawValue)"
    }

    /// An exact length in the largest unit that divides it (`48 hours` is `2 days`), for people.
    public static func describe(micros: Int64) -> String {
        let units: [(Unit, Int64)] = [(.weeks, 7 * Instant.microsPerDay), (.days, Instant.microsPerDay),
                                      (.hours, Instant.microsPerHour), (.minutes, Instant.microsPerMinute)]
        for (u, size) in units where micros != 0 && micros % size == 0 { return RuleDuration(Int(micros / size), u).description }
        return "\(micros / 1_000_000) seconds"
    }

    /// Parses `N unit` (`1 day`, `10 working days`, `3 months`). The error says what was wrong.
    public static func parse(_ text: String) -> Result<RuleDuration, DurationError> {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).map(String.init)
        guard let first = words.first else { return .failure(DurationError(message: "empty duration; write it as a number and a unit, e.g. '10 working days'")) }
        guard let n = Int(first) else {
            return .failure(DurationError(message: "'\(first)' is not a whole number; write a duration as a number and a unit, e.g. '10 working days'"))
        }
        guard n > 0 else { return .failure(DurationError(message: "a duration must be positive")) }
        let unitText = words.dropFirst().joined(separator: " ")
        guard let unit = unit(unitText) else {
            return .failure(DurationError(message: unitText.isEmpty ? "missing unit (minutes, hours, days, weeks, working days, months)"
                                                             : "unknown unit '\(unitText)' (minutes, hours, days, weeks, working days, months)"))
        }
        let limit = unit.tenYears
        guard n <= limit else {
            return .failure(DurationError(message: "\(n) \(unit.rawValue) is longer than ten years (at most \(limit) \(unit.rawValue)): nothing in a childhood waits that long"))
        }
        return .success(RuleDuration(n, unit))
    }

    static func unit(_ s: String) -> Unit? {
        Unit.named(s)
    }
}

extension RuleDuration.Unit {
    /// Ten years in this unit (the longest duration a rule may use).
    var tenYears: Int {
        switch self {
        case .minutes: return 3653 * 24 * 60
        case .hours: return 3653 * 24
        case .days: return 3653
        case .weeks: return 522
        case .workingDays: return 2610
        case .months: return 120
        }
    }

    static func named(_ s: String) -> RuleDuration.Unit? {
        switch s {
        case "minute", "minutes": return .minutes
        case "hour", "hours": return .hours
        case "day", "days": return .days
        case "week", "weeks": return .weeks
        case "working day", "working days": return .workingDays
        case "month", "months": return .months
        default: return nil
        }
    }
}

/// Why a duration does not parse.
public struct DurationError: Error, Sendable {
    public var message: String
}
