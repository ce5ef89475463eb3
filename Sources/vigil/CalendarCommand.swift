import ArgumentParser
import Foundation
import VigilContract
import VigilRules
import VigilService

struct CalendarCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calendar",
        abstract: "Deadline arithmetic with a rule pack's calendar: working days, bank holidays, clock changes.",
        subcommands: [CalendarAddCommand.self, CalendarHolidaysCommand.self]
    )
}

/// The pack's calendar: `--calendar NAME`, or the only one.
struct CalendarOptions: ParsableArguments {
    @OptionGroup var rulesOptions: RulesOptions
    @Option(help: ArgumentHelp("The pack's calendar to use (needed only when it declares several).", valueName: "NAME"))
    var calendar: String?

    func load() throws -> WorkingCalendar {
        let set = try rulesOptions.compile()
        if let calendar {
            guard let c = set.calendars.first(where: { $0.name == calendar }) else {
                throw ValidationError("no calendar '\(calendar)' in \(rulesOptions.rules) (it has: \(set.calendars.map(\.name).joined(separator: ", ")))")
            }
            return c
        }
        guard set.calendars.count == 1, let only = set.calendars.first else {
            throw ValidationError(set.calendars.isEmpty ? "\(rulesOptions.rules) declares no calendar"
                                  : "\(rulesOptions.rules) declares several calendars: name one with --calendar (\(set.calendars.map(\.name).joined(separator: ", ")))")
        }
        return only
    }
}

struct CalendarAddCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "When a deadline falls: N working days, months, days or hours after an instant, as a rule computes it.",
        discussion: """
        Working days count Monday to Friday in the calendar's time zone, skipping its holidays; the deadline is \
        the end of the N-th working day after the day of --from (local midnight after it), so "within 1 working \
        day" of a Thursday is the end of Friday. Months end at the end of the same day of the month N months on. \
        Days and hours are exact time. --from is local time in the zone (2008-03-20T10:00), or an RFC 3339 time \
        with an offset or Z, or a date (its local midnight).
        Example: vigil calendar add 10 working-days --from 2008-03-20T10:00
        """
    )

    @Argument(help: "How many.") var count: Int
    @Argument(help: ArgumentHelp("working-days, months, days or hours.", valueName: "UNIT")) var unit: Unit
    @Option(help: ArgumentHelp("The instant it counts from.", valueName: "TIME")) var from: String
    @Option(help: ArgumentHelp("Time zone to read --from and print times in (default: the calendar's).", valueName: "ZONE")) var tz: String?
    @OptionGroup var calendarOptions: CalendarOptions

    enum Unit: String, ExpressibleByArgument, CaseIterable {
        case workingDays = "working-days", months, days, hours
        init?(argument: String) {
            switch argument {
            case "working-day", "working-days": self = .workingDays
            case "month", "months": self = .months
            case "day", "days": self = .days
            case "hour", "hours": self = .hours
            default: return nil
            }
        }
    }

    func validate() throws {
        guard count >= 0 else { throw ValidationError("the count must be 0 or more") }
        if let tz, ZoneTable.named(tz) == nil { throw ValidationError("unknown time zone '\(tz)'") }
    }

    func run() throws {
        let cal = try calendarOptions.load()
        let zone = tz.flatMap(ZoneTable.named) ?? cal.zone
        // Local time, or RFC 3339 read as in rule tests (seconds may be left out: 2007-03-12T15:00Z), or a date.
        guard let start = zone.instant(localDateTime: from) ?? RuleTestReader.instant(from) ?? RFC3339.parseDate(from).map(zone.startOfDay) else {
            throw ValidationError("--from must be local time (2008-03-20T10:00), RFC 3339 (2008-03-20T10:00:00Z) or a date (2008-03-20)")
        }
        let out = Output.shared
        func both(_ t: Instant) -> String { "\(zone.format(t)) (\(t))" }
        out.line("from      \(both(start)), \(cal.zone.localDay(start).weekdayName) in \(cal.zone.identifier)")
        let due: Instant
        switch unit {
        case .workingDays:
            var skipped = 0
            for step in cal.countWorkingDays(count, after: start) {
                if let counted = step.counted {
                    out.line("  \(pad(counted))      \(step.day) \(step.day.weekdayName)")
                } else {
                    skipped += 1
                    out.line("  skip    \(step.day) \(step.day.weekdayName)  \(step.skipped ?? "")")
                }
            }
            due = cal.deadline(workingDays: count, after: start)
            out.line("deadline  \(both(due)): the end of working day \(count), \(skipped) day\(skipped == 1 ? "" : "s") skipped")
        case .months:
            due = cal.deadline(months: count, after: start)
            out.line("deadline  \(both(due)): the end of the day \(count) month\(count == 1 ? "" : "s") on")
        case .days:
            due = start + Int64(count) * Instant.microsPerDay
            out.line("deadline  \(both(due)): exactly \(count) × 24 hours on")
        case .hours:
            due = start + Int64(count) * 3600 * Instant.microsPerSecond
            out.line("deadline  \(both(due))")
        }
        for change in zone.changes(after: start, through: due) {
            out.line("clock     \(zone.identifier) changes from \(ZoneTable.offsetText(change.from)) to \(ZoneTable.offsetText(change.to)) at \(change.at) in between")
        }
        out.flush()
    }

    func pad(_ n: Int) -> String { n < 10 ? " \(n)" : "\(n)" }
}

struct CalendarHolidaysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "holidays", abstract: "The calendar's holidays in a year, with their names.")

    @Argument(help: "The year.") var year: Int
    @OptionGroup var calendarOptions: CalendarOptions

    func run() throws {
        let cal = try calendarOptions.load()
        let days = cal.holidays.filter { $0.civil.year == year }.sorted()
        let out = Output.shared
        for d in days { out.line("\(d) \(d.weekdayName)  \(cal.holidayNames[d] ?? "")") }
        if days.isEmpty { Output.error("no holidays listed for \(year) in calendar \(cal.name) (it covers \(cal.coverage.map { "\($0.lowerBound.civil.year) to \($0.upperBound.civil.year)" } ?? "no year"))") }
        out.flush()
        if days.isEmpty { throw ExitCode(1) }
    }
}
