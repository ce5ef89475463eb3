import Testing
import VigilContract
@testable import VigilEngine
import VigilRules

/// `age(...)` compares an event's time with the instant a child reaches an age. The engine takes a bound for
/// that instant when the event is clearly on one side of it: every comparison must agree with the exact one.
@Suite struct AgeThresholdTests {
    @Test func boundsAgreeWithTheExactInstantForEveryComparison() {
        let deriver = Deriver(rules: pack, limits: EngineLimits())
        let ops: [CompareOp] = [.eq, .ne, .lt, .le, .gt, .ge]
        let hour = Instant.microsPerHour, day = Instant.microsPerDay
        let nudges: [Int64] = [0, 1, -1, hour, -hour, 23 * hour, -23 * hour, day, -day, 2 * day, -2 * day, 3 * day, -3 * day,
                               5 * day, -5 * day, 40 * day, -40 * day, 400 * day, -400 * day, 20 * 365 * day, -20 * 365 * day]
        // Days of birth across the clocks' changes and month ends (31 January, 29 February, 30 April).
        var births: [Day] = stride(from: 7_000, to: 22_000, by: 97).map { Day(number: Int32($0)) }
        births += [(2004, 1, 31), (2004, 2, 29), (2005, 3, 31), (2006, 4, 30), (2007, 10, 28), (2008, 3, 30), (1999, 12, 31)]
            .compactMap { Day(year: $0.0, month: $0.1, day: $0.2) }
        var checked = 0
        for cal in pack.calendars.indices {
            let calendar = pack.calendars[cal]
            for dob in births {
                let bounds: [AgeBound] = [0, 1, 2, 5, 6, 11, 12, 13, 24, 59, 60, 216].map { .months($0) }
                    + [0, hour, day, 7 * day, 200 * day, -day].map { .micros($0) }
                for bound in bounds {
                    let exact: Instant
                    switch bound {
                    case .months(let n): exact = calendar.start(of: dob, plusMonths: n)
                    case .micros(let m): exact = calendar.zone.startOfDay(dob) + m
                    }
                    for nudge in nudges {
                        let now = exact + nudge
                        let taken = deriver.threshold(born: dob, bound, cal, seenFrom: now)
                        for op in ops where op.holds(now, taken) != op.holds(now, exact) {
                            Issue.record("born \(dob), \(bound), at \(now): \(op.rawValue) gives \(op.holds(now, taken)) against \(taken), \(op.holds(now, exact)) against \(exact)")
                        }
                        checked += 1
                    }
                }
            }
        }
        #expect(checked > 50_000)
    }

    @Test func aZoneKnowsItsWidestOffset() throws {
        let london = try #require(ZoneTable.named("Europe/London"))
        #expect(london.widestOffset == 3_600 || london.widestOffset == 7_200)  // summer time; double summer time in the 1940s
        let kiritimati = try #require(ZoneTable.named("Pacific/Kiritimati"))
        #expect(kiritimati.widestOffset == 14 * 3_600)
        #expect(try #require(ZoneTable.named("UTC")).widestOffset == 0)
    }
}
