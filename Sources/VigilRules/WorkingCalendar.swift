import Foundation
import Synchronization
import VigilContract

/// UTC offsets of one IANA time zone, precomputed as a table of transitions so that converting an instant
/// to a local day, or a local day to its midnight, is a binary search and no Foundation call.
public struct ZoneTable: Sendable, Hashable {
    public let identifier: String
    /// Transition instants (UTC seconds) and the offset in force from each one on.
    @usableFromInline let transitions: [Int64]
    @usableFromInline let offsets: [Int32]
    @usableFromInline let initialOffset: Int32
    /// For each span of 2^22 seconds (about 48 days) from `indexBase`: how many transitions come at or before
    /// its start. A lookup starts there and steps over the one or two transitions a span can hold.
    @usableFromInline let transitionsBefore: [UInt16]
    @usableFromInline let indexBase: Int64
    @usableFromInline static let spanShift: Int64 = 22
    /// The largest offset from UTC, either way, in seconds: a local midnight is within it of the UTC one.
    public let widestOffset: Int64

    private static let cache = Mutex<[String: ZoneTable]>([:])

    /// A shared table per zone (building one walks 300 years of transitions).
    public static func named(_ identifier: String) -> ZoneTable? {
        if let z = cache.withLock({ $0[identifier] }) { return z }
        guard let z = ZoneTable(identifier: identifier) else { return nil }
        cache.withLock { $0[identifier] = z }
        return z
    }

    /// The table covers 1900-2200; outside it the nearest known offset applies.
    public init?(identifier: String) {
        guard let tz = TimeZone(identifier: identifier) else { return nil }
        self.identifier = identifier
        var t = Date(timeIntervalSince1970: -2_208_988_800)  // 1900-01-01
        let stop = Date(timeIntervalSince1970: 7_258_118_400)  // 2200-01-01
        initialOffset = Int32(tz.secondsFromGMT(for: t))
        var ts: [Int64] = []
        var os: [Int32] = []
        while let next = tz.nextDaylightSavingTimeTransition(after: t), next < stop {
            ts.append(Int64(next.timeIntervalSince1970.rounded()))
            os.append(Int32(tz.secondsFromGMT(for: next)))
            t = next
        }
        transitions = ts
        offsets = os
        widestOffset = os.reduce(Int64(abs(initialOffset))) { max($0, Int64(abs($1))) }
        indexBase = ts.first ?? 0
        var before: [UInt16] = []
        if let last = ts.last, ts.count < Int(UInt16.max) {
            var k = 0
            var start = indexBase
            while start <= last {
                while k < ts.count && ts[k] <= start { k += 1 }
                before.append(UInt16(k))
                start += 1 << Self.spanShift
            }
        }
        transitionsBefore = before
    }

    /// The instants (UTC seconds) at which the offset changes, 1900-2200.
    public var transitionInstants: [Int64] { transitions }

    /// Offset from UTC, in seconds, in force at a UTC instant (seconds).
    @inlinable public func offset(atUTCSeconds s: Int64) -> Int64 {
        if s >= indexBase {
            let span = Int((s - indexBase) >> Self.spanShift)
            if span < transitionsBefore.count {
                var lo = Int(transitionsBefore[span])
                while lo < transitions.count && transitions[lo] <= s { lo += 1 }
                return Int64(lo == 0 ? initialOffset : offsets[lo - 1])
            }
        }
        return offsetBySearch(atUTCSeconds: s)
    }

    /// The same by binary search over every transition (outside the index's range, and for tests).
    @inlinable public func offsetBySearch(atUTCSeconds s: Int64) -> Int64 {
        var lo = 0, hi = transitions.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if transitions[mid] <= s { lo = mid + 1 } else { hi = mid }
        }
        return Int64(lo == 0 ? initialOffset : offsets[lo - 1])
    }

    /// The local calendar day of an instant.
    public func localDay(_ t: Instant) -> Day {
        let s = floorDivide(t.micros, Instant.microsPerSecond)
        let local = s + offset(atUTCSeconds: s)
        return Day(number: Int32(floorDivide(local, 86_400)))
    }

    /// An instant as local time with its offset: `2008-04-08T00:00:00+01:00` (seconds always; a fraction only
    /// when there is one).
    public func format(_ t: Instant) -> String {
        let s = floorDivide(t.micros, Instant.microsPerSecond)
        let offset = offset(atUTCSeconds: s)
        let local = RFC3339.format(Instant(micros: t.micros + offset * Instant.microsPerSecond))
        return String(local.dropLast()) + ZoneTable.offsetText(offset)
    }

    /// A local date and time without an offset (`2008-03-20T10:00`, seconds optional) as the instant it names
    /// in this zone. In the hour a clock change repeats, the first (earlier offset's) reading; a time the change
    /// skips is taken at the offset in force before it.
    public func instant(localDateTime text: String) -> Instant? {
        var s = text
        if s.count == 16 { s += ":00" }
        guard let naive = RFC3339.parseDateTime(s + "Z") else { return nil }
        let local = floorDivide(naive.micros, Instant.microsPerSecond)
        // The offsets in force a day either side; a reading is valid under an offset in force at the instant it
        // gives. Two valid (the hour the clocks go back): the earlier instant. None (the hour they skip): the
        // offset in force before.
        let before = offset(atUTCSeconds: local - 86_400), after = offset(atUTCSeconds: local + 86_400)
        let valid = [before, after].map { local - $0 }.filter { t in offset(atUTCSeconds: t) == local - t }
        let utc = valid.min() ?? local - before
        return Instant(micros: utc * Instant.microsPerSecond + (naive.micros - local * Instant.microsPerSecond))
    }

    /// The clock changes strictly after `a` and at or before `b`: when, and the offsets (seconds) before and after.
    public func changes(after a: Instant, through b: Instant) -> [(at: Instant, from: Int64, to: Int64)] {
        let lo = floorDivide(a.micros, Instant.microsPerSecond), hi = floorDivide(b.micros, Instant.microsPerSecond)
        var out: [(at: Instant, from: Int64, to: Int64)] = []
        for (i, t) in transitions.enumerated() where t > lo && t <= hi {
            let before = Int64(i == 0 ? initialOffset : offsets[i - 1])
            if before != Int64(offsets[i]) { out.append((Instant(micros: t * Instant.microsPerSecond), before, Int64(offsets[i]))) }
        }
        return out
    }

    /// An offset in seconds as `+01:00`.
    public static func offsetText(_ seconds: Int64) -> String {
        let m = abs(seconds) / 60
        func two(_ x: Int64) -> String { x < 10 ? "0\(x)" : "\(x)" }
        return (seconds < 0 ? "-" : "+") + two(m / 60) + ":" + two(m % 60)
    }

    /// 00:00 local time on `day`. (Zones whose transitions skip midnight itself get the instant that local
    /// midnight would have had under the offset in force just before it; Europe/London changes at 01:00 UTC.)
    public func startOfDay(_ day: Day) -> Instant {
        let localMidnight = Int64(day.number) * 86_400
        let guess = localMidnight - offset(atUTCSeconds: localMidnight - offset(atUTCSeconds: localMidnight))
        return Instant(micros: guess * Instant.microsPerSecond)
    }
}

@inlinable func floorDivide(_ a: Int64, _ b: Int64) -> Int64 {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}

/// Working days in one jurisdiction: a time zone, weekend days and a list of holidays.
///
/// Deadlines follow docs/rules.md ("How a rule is evaluated"): "within N working days of T" is 00:00 local on the day after the N-th working
/// day strictly after T's local date; "within N months of T" is 00:00 local on the day after T's local date
/// plus N calendar months (clamped to the month's end).
public struct WorkingCalendar: Sendable {
    public let name: String
    public let zone: ZoneTable
    /// ISO weekdays (1 = Monday ... 7 = Sunday) that are not working days.
    public let weekend: Set<Int>
    public let holidays: Set<Day>
    /// Each holiday's name as its file gives it ("" when it gives none).
    public let holidayNames: [Day: String]
    /// First and last holiday listed; working-day arithmetic outside this range sees weekends only.
    public let coverage: ClosedRange<Day>?
    /// Content hash input: changes when any date, the zone or the weekend changes.
    public let fingerprint: String

    public init(name: String, zone: ZoneTable, weekend: Set<Int>, holidays: [Day: String]) {
        self.name = name
        self.zone = zone
        self.weekend = weekend
        self.holidays = Set(holidays.keys)
        holidayNames = holidays
        if let lo = holidays.keys.min(), let hi = holidays.keys.max() { coverage = lo...hi } else { coverage = nil }
        fingerprint = "zone=\(zone.identifier);weekend=\(weekend.sorted());holidays=" + holidays.keys.sorted().map(\.description).joined(separator: ",")
        // The days the holidays cover and five years either side, counted once.
        let days = self.holidays, off = weekend
        index = coverage.map { c in
            WorkingDayIndex(first: c.lowerBound.number - 1830, last: c.upperBound.number + 1830) {
                WorkingCalendar.isWorkingDay($0, weekend: off, holidays: days)
            }
        }
    }

    /// Working days counted over the calendar's span (nil without holidays: then the loop below is all there is).
    let index: WorkingDayIndex?

    public func isWorkingDay(_ d: Day) -> Bool { Self.isWorkingDay(d, weekend: weekend, holidays: holidays) }

    static func isWorkingDay(_ d: Day, weekend: Set<Int>, holidays: Set<Day>) -> Bool {
        !weekend.contains(d.isoWeekday) && !holidays.contains(d)
    }

    /// The N-th working day strictly after `d` (N >= 1).
    public func workingDay(_ n: Int, after d: Day) -> Day {
        if n >= 1, let found = index?.workingDay(n, after: d) { return found }
        return walkToWorkingDay(n, after: d)
    }

    /// `workingDay(_:after:)` by walking the days (outside the index's span, and to check it).
    func walkToWorkingDay(_ n: Int, after d: Day) -> Day {
        var day = d
        var left = n
        var guardSteps = 0
        while left > 0, guardSteps < 100_000 {
            day = day.adding(days: 1)
            if isWorkingDay(day) { left -= 1 }
            guardSteps += 1
        }
        return day
    }

    /// Deadline for "within N working days of t".
    public func deadline(workingDays n: Int, after t: Instant) -> Instant {
        let w = workingDay(n, after: zone.localDay(t))
        return zone.startOfDay(w.adding(days: 1))
    }

    /// Deadline for "within N months of t".
    public func deadline(months n: Int, after t: Instant) -> Instant {
        zone.startOfDay(zone.localDay(t).adding(months: n).adding(days: 1))
    }

    /// 00:00 local on `day` plus N months (clamped): the instant a child "turns N months".
    public func start(of day: Day, plusMonths n: Int) -> Instant {
        zone.startOfDay(day.adding(months: n))
    }

    /// Parses a holiday CSV (`date,name` with a header line; the name may be left out): each date with its name.
    /// Returns the 1-based line of the first bad row on failure.
    private static let parsed = Mutex<[String: [Day: String]]>([:])

    public static func parseHolidays(csv: String) -> Result<[Day: String], HolidayFileError> {
        if let days = parsed.withLock({ $0[csv] }) { return .success(days) }
        let result = parseHolidaysUncached(csv: csv)
        if case .success(let days) = result { parsed.withLock { $0[csv] = days } }
        return result
    }

    static func parseHolidaysUncached(csv: String) -> Result<[Day: String], HolidayFileError> {
        var days: [Day: String] = [:]
        for (k, raw) in csv.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let columns = line.split(separator: ",", maxSplits: 1)
            let first = columns.first.map { String($0).trimmingCharacters(in: .whitespaces) } ?? ""
            if k == 0, first.lowercased() == "date" { continue }
            guard let d = RFC3339.parseDate(first) else {
                return .failure(HolidayFileError(line: k + 1, reason: "expected a date (YYYY-MM-DD) in the first column"))
            }
            days[d] = columns.count > 1 ? String(columns[1]).trimmingCharacters(in: .whitespaces) : ""
        }
        return .success(days)
    }

    /// One day of a working-day count: counted as working day `counted`, or skipped and why.
    public struct CountedDay: Sendable, Equatable {
        public let day: Day
        /// 1-based number of the working day, or nil when skipped.
        public let counted: Int?
        /// "weekend" or "holiday: <name>" when skipped.
        public let skipped: String?
    }

    /// The days "within N working days" of `t` walks through, in order: each counted or skipped with the reason;
    /// the deadline is local midnight after the last (`deadline(workingDays:after:)`).
    public func countWorkingDays(_ n: Int, after t: Instant) -> [CountedDay] {
        var out: [CountedDay] = []
        var day = zone.localDay(t)
        var counted = 0
        while counted < n, out.count < 100_000 {
            day = day.adding(days: 1)
            if holidays.contains(day) {
                let name = holidayNames[day].flatMap { $0.isEmpty ? nil : $0 } ?? "listed in calendar \(self.name)"
                out.append(CountedDay(day: day, counted: nil, skipped: "holiday: " + name))
            } else if weekend.contains(day.isoWeekday) {
                out.append(CountedDay(day: day, counted: nil, skipped: "weekend"))
            } else {
                counted += 1
                out.append(CountedDay(day: day, counted: counted, skipped: nil))
            }
        }
        return out
    }
}

/// A bad row in a holiday file.
public struct HolidayFileError: Error, Sendable {
    public var line: Int
    public var reason: String
}

/// Working days counted over a span of days, so that "the N-th working day strictly after D" is two array
/// lookups instead of a walk over the days between (a set lookup for each).
final class WorkingDayIndex: Sendable {
    /// The day number of the span's first day.
    let first: Int32
    /// rank[i]: working days in the span up to and including its day i.
    let rank: [Int32]
    /// nth[k]: the day number of the span's k-th working day (nth[0] is the day before the span).
    let nth: [Int32]

    init(first: Int32, last: Int32, isWorking: (Day) -> Bool) {
        self.first = first
        var rank: [Int32] = [], nth: [Int32] = [first - 1]
        rank.reserveCapacity(Int(last - first) + 1)
        var count: Int32 = 0
        for number in first...max(first, last) {
            if isWorking(Day(number: number)) {
                count += 1
                nth.append(number)
            }
            rank.append(count)
        }
        self.rank = rank
        self.nth = nth
    }

    /// The N-th working day strictly after `d` (N >= 1), or nil when `d` or the answer is outside the span.
    func workingDay(_ n: Int, after d: Day) -> Day? {
        let i = Int(d.number) - Int(first)
        guard n >= 1, i >= 0, i < rank.count else { return nil }
        let k = Int(rank[i]) + n
        guard k < nth.count else { return nil }
        return Day(number: nth[k])
    }
}
