import Foundation
import Testing
import VigilChaos
import VigilContract
import VigilRules
import VigilService

/// `vigil calendar`: deadline arithmetic with the pack's calendar, as the rules compute it.
@Suite struct CalendarCommandTests {
    func run(_ args: [String]) throws -> (status: Int32?, out: [String], err: [String]) {
        let c = try Subprocess(vigilBinary, ["calendar"] + args + ["--rules", rulesDir])
        let status = c.wait(timeout: 60)
        return (status, c.stdout, c.stderr)
    }

    /// Ten working days from the Thursday before Easter 2008: Good Friday and Easter Monday skipped, and the
    /// clocks going forward on 30 March: the end of Monday 7 April, local midnight at 23:00 UTC.
    @Test func workingDaysSkipHolidaysAndWeekendsAndCrossTheClockChange() throws {
        let r = try run(["add", "10", "working-days", "--from", "2008-03-20T10:00"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.first == "from      2008-03-20T10:00:00+00:00 (2008-03-20T10:00:00Z), Thu in Europe/London")
        #expect(r.out.contains("  skip    2008-03-21 Fri  holiday: Good Friday"))
        #expect(r.out.contains("  skip    2008-03-24 Mon  holiday: Easter Monday"))
        #expect(r.out.filter { $0.contains("weekend") }.count == 6)
        #expect(r.out.contains("  10      2008-04-07 Mon"))
        #expect(r.out.contains("deadline  2008-04-08T00:00:00+01:00 (2008-04-07T23:00:00Z): the end of working day 10, 8 days skipped"))
        #expect(r.out.last == "clock     Europe/London changes from +00:00 to +01:00 at 2008-03-30T01:00:00Z in between")
        // The same deadline as the engine's calendar gives.
        let set = pack
        let from = try #require(RFC3339.parseDateTime("2008-03-20T10:00:00Z"))
        #expect(set.calendars[0].deadline(workingDays: 10, after: from).description == "2008-04-07T23:00:00Z")
    }

    @Test func otherUnitsAndFormsOfTime() throws {
        let months = try run(["add", "3", "months", "--from", "2007-03-12"])
        #expect(months.out.contains("deadline  2007-06-13T00:00:00+01:00 (2007-06-12T23:00:00Z): the end of the day 3 months on"))
        let utc = try run(["add", "1", "working-day", "--from", "2007-03-12T15:00Z"])
        #expect(utc.out.contains("deadline  2007-03-14T00:00:00+00:00 (2007-03-14T00:00:00Z): the end of working day 1, 0 days skipped"))
        let hours = try run(["add", "36", "hours", "--from", "2007-03-24T12:00", "--tz", "UTC"])
        #expect(hours.out.contains("deadline  2007-03-26T00:00:00+00:00 (2007-03-26T00:00:00Z)"))
        let bad = try run(["add", "1", "fortnights", "--from", "2007-03-12"])
        #expect(bad.status != 0)
        let badFrom = try run(["add", "1", "days", "--from", "yesterday"])
        #expect(badFrom.status != 0 && badFrom.err.joined().contains("--from must be"))
    }

    @Test func holidaysOfAYearWithTheirNames() throws {
        let r = try run(["holidays", "2026"])
        #expect(r.status == 0)
        #expect(r.out.first == "2026-01-01 Thu  New Year's Day")
        #expect(r.out.contains("2026-12-28 Mon  Boxing Day (observed)"))
        #expect(r.out.count == 9)
        let none = try run(["holidays", "1850"])
        #expect(none.status == 1 && none.err.joined().contains("no holidays listed for 1850"))
    }
}
