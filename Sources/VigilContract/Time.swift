/// An instant on the UTC time line, in microseconds since 1970-01-01T00:00:00Z.
///
/// Event time in Vigil is always an `Instant`: rules reason over `occurred_at`, never over the wall clock.
/// Sub-microsecond digits of an RFC 3339 timestamp are truncated.
public struct Instant: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var micros: Int64

    @inlinable public init(micros: Int64) { self.micros = micros }

    // Constants computed where they are read (inlinable): as `static let`s every read from another module went
    // through the global's accessor and its once-check (the engine's per-event path reads them).
    @inlinable public static var microsPerSecond: Int64 { 1_000_000 }
    @inlinable public static var microsPerMinute: Int64 { 60_000_000 }
    @inlinable public static var microsPerHour: Int64 { 3_600_000_000 }
    @inlinable public static var microsPerDay: Int64 { 86_400_000_000 }

    @inlinable public static func < (a: Instant, b: Instant) -> Bool { a.micros < b.micros }
    @inlinable public static func + (a: Instant, d: Int64) -> Instant { Instant(micros: a.micros &+ d) }
    @inlinable public static func - (a: Instant, d: Int64) -> Instant { Instant(micros: a.micros &- d) }

    @inlinable public static var distantPast: Instant { Instant(micros: Int64.min / 2) }
    @inlinable public static var distantFuture: Instant { Instant(micros: Int64.max / 2) }

    /// The UTC civil day this instant falls on.
    public var utcDay: Day { Day(number: Int32(floorDiv(micros, Instant.microsPerDay))) }

    /// RFC 3339 in UTC with a `Z`: `2007-03-14T00:00:00Z`, with fractional seconds only when non-zero.
    public var description: String { RFC3339.format(self) }
}

/// A civil date (proleptic Gregorian), as a day number: days since 1970-01-01.
public struct Day: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var number: Int32
    @inlinable public init(number: Int32) { self.number = number }

    @inlinable public static func < (a: Day, b: Day) -> Bool { a.number < b.number }

    public init?(year: Int, month: Int, day: Int) {
        guard (1...12).contains(month), day >= 1, day <= Day.daysIn(year: year, month: month) else { return nil }
        self.number = Int32(Day.daysFromCivil(year, month, day))
    }

    /// Year, month and day of month.
    public var civil: (year: Int, month: Int, day: Int) { Day.civilFromDays(Int(number)) }

    /// Monday = 1 ... Sunday = 7 (ISO 8601).
    public var isoWeekday: Int {
        // 1970-01-01 was a Thursday (4).
        let w = (Int(number) % 7 + 7 + 3) % 7  // 0 = Monday
        return w + 1
    }

    /// `Mon` ... `Sun`.
    public var weekdayName: String { ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][isoWeekday - 1] }

    public func adding(days: Int) -> Day { Day(number: number + Int32(days)) }

    /// Calendar months added, the day clamped to the last day of the resulting month.
    public func adding(months: Int) -> Day {
        let c = civil
        let total = c.year * 12 + (c.month - 1) + months
        let y = floorDiv(total, 12)
        let m = total - y * 12 + 1
        let d = min(c.day, Day.daysIn(year: y, month: m))
        return Day(number: Int32(Day.daysFromCivil(y, m, d)))
    }

    public var description: String {
        let c = civil
        return "\(pad(c.year, 4))-\(pad(c.month, 2))-\(pad(c.day, 2))"
    }

    public static func isLeap(_ y: Int) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }

    public static func daysIn(year: Int, month: Int) -> Int {
        switch month {
        case 2: return isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Howard Hinnant's `days_from_civil`.
    public static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (m + 9) % 12
        let doy = (153 * mp + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    /// Howard Hinnant's `civil_from_days`.
    public static func civilFromDays(_ z0: Int) -> (year: Int, month: Int, day: Int) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}

@inlinable func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}

@inlinable func floorDiv(_ a: Int, _ b: Int) -> Int {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}

func pad(_ v: Int, _ width: Int) -> String {
    var s = String(v < 0 ? -v : v)
    while s.utf8.count < width { s = "0" + s }
    return v < 0 ? "-" + s : s
}

/// RFC 3339 timestamps and full dates, parsed straight from UTF-8 bytes.
public enum RFC3339 {
    /// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`; `T` and `Z` may be lower case.
    /// Returns nil for anything else, including out-of-range fields. A leap second (`:60`) is accepted and
    /// lands on the following second.
    public static func parseDateTime(_ p: UnsafePointer<UInt8>, _ n: Int) -> Instant? {
        guard n >= 20 else { return nil }
        guard let day = parseDate(p, 10) else { return nil }
        let t = p[10]
        guard t == UInt8(ascii: "T") || t == UInt8(ascii: "t") else { return nil }
        guard let hh = digits(p, 11, 2), p[13] == UInt8(ascii: ":"), let mi = digits(p, 14, 2),
              p[16] == UInt8(ascii: ":"), let ss = digits(p, 17, 2) else { return nil }
        guard hh <= 23, mi <= 59, ss <= 60 else { return nil }
        var i = 19
        var frac: Int64 = 0
        if i < n, p[i] == UInt8(ascii: ".") {
            i += 1
            let start = i
            var scale: Int64 = 100_000
            while i < n, p[i] >= 48, p[i] <= 57 {
                if scale > 0 { frac += Int64(p[i] - 48) * scale; scale /= 10 }
                i += 1
            }
            guard i > start else { return nil }
        }
        guard i < n else { return nil }
        var offsetSeconds = 0
        let z = p[i]
        if z == UInt8(ascii: "Z") || z == UInt8(ascii: "z") {
            i += 1
        } else if z == UInt8(ascii: "+") || z == UInt8(ascii: "-") {
            guard n - i == 6, let oh = digits(p, i + 1, 2), p[i + 3] == UInt8(ascii: ":"),
                  let om = digits(p, i + 4, 2), oh <= 23, om <= 59 else { return nil }
            offsetSeconds = (oh * 3600 + om * 60) * (z == UInt8(ascii: "+") ? 1 : -1)
            i += 6
        } else {
            return nil
        }
        guard i == n else { return nil }
        let seconds = Int64(day.number) * 86_400 + Int64(hh * 3600 + mi * 60 + ss) - Int64(offsetSeconds)
        return Instant(micros: seconds * Instant.microsPerSecond + frac)
    }

    /// Parses `YYYY-MM-DD` exactly (n must be 10).
    public static func parseDate(_ p: UnsafePointer<UInt8>, _ n: Int) -> Day? {
        guard n == 10, let y = digits(p, 0, 4), p[4] == UInt8(ascii: "-"), let m = digits(p, 5, 2),
              p[7] == UInt8(ascii: "-"), let d = digits(p, 8, 2) else { return nil }
        return Day(year: y, month: m, day: d)
    }

    public static func parseDateTime(_ s: String) -> Instant? {
        var s = s
        return s.withUTF8 { b in b.baseAddress.flatMap { parseDateTime($0, b.count) } }
    }

    public static func parseDate(_ s: String) -> Day? {
        var s = s
        return s.withUTF8 { b in b.baseAddress.flatMap { parseDate($0, b.count) } }
    }

    @inline(__always) static func digits(_ p: UnsafePointer<UInt8>, _ at: Int, _ count: Int) -> Int? {
        var v = 0
        for k in 0..<count {
            let c = p[at + k]
            guard c >= 48, c <= 57 else { return nil }
            v = v * 10 + Int(c - 48)
        }
        return v
    }

    /// Formats in UTC with `Z`; fractional seconds appear only when non-zero (trailing zeros dropped).
    public static func format(_ t: Instant) -> String {
        let secs = floorDiv(t.micros, Instant.microsPerSecond)
        let frac = t.micros - secs * Instant.microsPerSecond
        let day = Day(number: Int32(floorDiv(secs, 86_400)))
        let sod = Int(secs - Int64(day.number) * 86_400)
        var s = day.description
        s += "T" + pad(sod / 3600, 2) + ":" + pad(sod / 60 % 60, 2) + ":" + pad(sod % 60, 2)
        if frac != 0 {
            var f = pad(Int(frac), 6)
            while f.hasSuffix("0") { f.removeLast() }
            s += "." + f
        }
        return s + "Z"
    }
}
