import ArgumentParser
import Foundation
import VigilContract
import VigilEngine
import VigilRules
import VigilService

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Evaluate rules over event files in event-time order and print the alerts.",
        discussion: """
        Input is JSON Lines, one event per line ('-' reads standard input). Alerts go to standard output \
        (JSON Lines by default); each invalid line is reported on standard error as file:line: reason.
        Files in event-time order are read once, alerts written as they are found. If a file turns out to be \
        out of order, what was written is taken back (a regular file on standard output is truncated back) and \
        the events are evaluated again, sorted. To a pipe or a terminal, alerts are therefore held back until \
        the whole input has been read (past 64 MiB in an unlinked temporary file).
        Exit status: 0 success; 1 the rules or an input file could not be read; 65 some input lines were invalid \
        (their alerts are still printed).
        """
    )

    @Argument(help: ArgumentHelp("Event files (JSON Lines); '-' for standard input.", valueName: "FILE"))
    var files: [String]

    @OptionGroup var rulesOptions: RulesOptions

    @Option(help: ArgumentHelp("After the input, run the clock on to this instant so deadlines up to it fire.", valueName: "ISO"))
    var until: String?

    @Option(help: "Alert format: json (the alert contract, one per line) or text (one readable line).")
    var format: Format = .json

    @Option(help: ArgumentHelp("Largest accepted event, in bytes.", valueName: "BYTES"))
    var maxEventBytes: Int = EventDecoder.defaultMaxBytes

    @Flag(help: "Evaluate events in file order, as a live pipeline meets them, instead of sorting them: records behind their child's history are reconciled (withdrawn and late alerts are printed).")
    var arrivalOrder = false

    @Flag(help: "Do not print the closing summary on standard error.")
    var quiet = false

    @Option(help: ArgumentHelp("Backtest a rule change: switch to the pack in DIR before the first event at or after --at, as a live reload would (classified per rule, with backfill).", valueName: "DIR"))
    var switchTo: String?

    @Option(help: ArgumentHelp("With --switch-to: the event time of the switch.", valueName: "ISO"))
    var at: String?

    @Flag(help: "After the replay, print per rule on standard error: alerts fired, withdrawn, suppressed, distinct children, and alerts per 1,000 children a month (to judge a rule's noise).")
    var stats = false

    @Option(name: .customLong("rule"), help: ArgumentHelp("Evaluate only this rule (repeatable; with --tag, either matches).", valueName: "ID"))
    var onlyRules: [String] = []

    @Option(name: .customLong("tag"), help: ArgumentHelp("Evaluate only rules with this tag (repeatable).", valueName: "TAG"))
    var onlyTags: [String] = []

    enum Format: String, ExpressibleByArgument { case json, text }

    func validate() throws {
        if let until, RFC3339.parseDateTime(until) == nil {
            throw ValidationError("--until must be an RFC 3339 date-time such as 2007-08-03T00:00:00Z")
        }
        guard maxEventBytes > 0 else { throw ValidationError("--max-event-bytes must be positive") }
        if (switchTo == nil) != (at == nil) { throw ValidationError("--switch-to and --at go together") }
        if let at, RFC3339.parseDateTime(at) == nil { throw ValidationError("--at must be an RFC 3339 date-time such as 2007-08-03T00:00:00Z") }
        if switchTo != nil && arrivalOrder { throw ValidationError("--switch-to replays in event-time order: drop --arrival-order") }
    }

    /// Whether `--rule`/`--tag` select this rule.
    func selected(_ r: CompiledRule) -> Bool { onlyRules.contains(r.id) || !Set(onlyTags).isDisjoint(with: r.tags) }

    func run() throws {
        var set = try rulesOptions.compile()
        if !onlyRules.isEmpty || !onlyTags.isEmpty {
            let ids = Set(set.rules.map(\.id)), tags = Set(set.rules.flatMap(\.tags))
            for r in onlyRules where !ids.contains(r) { throw ValidationError("--rule \(r): no such rule in \(rulesOptions.rules)") }
            for t in onlyTags where !tags.contains(t) { throw ValidationError("--tag \(t): no rule in \(rulesOptions.rules) has it") }
            set = set.restricted(to: selected)
        }
        var paths: [String] = []
        var spooled: String?
        defer { if let spooled { try? FileManager.default.removeItem(atPath: spooled) } }
        for f in files {
            if f == "-" {
                let tmp = NSTemporaryDirectory() + "vigil-stdin-\(getpid()).jsonl"
                guard FileManager.default.createFile(atPath: tmp, contents: FileHandle.standardInput.readDataToEndOfFile(),
                                                    attributes: [.posixPermissions: 0o600]) else {
                    Output.error("vigil: cannot spool standard input to \(tmp)")
                    throw ExitCode(1)
                }
                spooled = tmp
                paths.append(tmp)
            } else {
                paths.append(f)
            }
        }
        let replay = Replay(rules: set, maxEventBytes: maxEventBytes)
        var formatter = AlertFormatter(rules: set)
        var switched = false
        if let switchTo, let at = at.flatMap(RFC3339.parseDateTime) {
            let next = try RulesOptions.compile(switchTo)
            replay.switchTo = (next, at)
            replay.onSwitch = { change in
                formatter = AlertFormatter(rules: next)
                if !quiet && !switched { Output.error(RulesDiff.table(change, title: "switch at \(at)")) }
                switched = true
            }
        }
        let color = Output.stdoutIsTerminal
        var tally = RuleTally()
        let summary: Replay.Summary
        // The input is read once when it is in event-time order; if it is not, what was written is taken back.
        // (In arrival order nothing is ever taken back.)
        if !arrivalOrder { Output.shared.beginRewindable() }
        do {
            summary = try replay.run(files: paths, until: until.flatMap(RFC3339.parseDateTime), arrivalOrder: arrivalOrder, onInvalid: { bad in
                let shown = bad.file == spooled ? "-" : bad.file
                Output.error("\(shown):\(bad.line): \(bad.failure.kind.rawValue): \(bad.failure)")
            }, onAlert: { alert in
                if stats { tally.add(alert, rule: formatter.rules.rules[alert.ruleIndex].id) }
                switch format {
                case .json: Output.shared.line(bytes: formatter.jsonBytes(alert))
                case .text:
                    let sev = formatter.rules.rules[alert.ruleIndex].severity
                    Output.shared.line(ANSI.color(TailedAlert(alert, formatter).line(in: formatter.rules.calendars.first?.zone), ANSI.severity(sev), enabled: color))
                }
            }, onRewind: {
                try Output.shared.rewind()
                tally = RuleTally()
                formatter = AlertFormatter(rules: set)
            })
            try Output.shared.commit()
        } catch {
            try? Output.shared.commit()
            Output.error("vigil: \(error)")
            throw ExitCode(1)
        }
        if !quiet {
            let e = summary.engine
            var text = "replay: \(summary.valid + summary.invalid) events in \(summary.files) file\(summary.files == 1 ? "" : "s"): "
            text += "\(summary.valid) valid, \(summary.invalid) invalid, \(e.duplicates) duplicate; \(e.alerts) alerts"
            if e.suppressed > 0 { text += " (\(e.suppressed) suppressed)" }
            if e.packSwitches > 0 { text += "; rule pack switched: \(e.rederived) children re-derived, \(e.backfilled) backfill alerts" }
            if e.lateEvents > 0 {
                text += "; \(e.lateEvents) late events re-derived: \(e.withdrawn) alerts withdrawn, \(e.raisedLate) raised late"
                if e.lateBeyondHorizon > 0 { text += ", \(e.lateBeyondHorizon) older than their child's timeline (reconciled approximately)" }
            }
            if !summary.invalidByKind.isEmpty {
                text += "; invalid by kind: " + summary.invalidByKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            }
            if e.overflowDrops > 0 || e.pendingRefused > 0 {
                text += "; state limits hit: \(e.overflowDrops) entries dropped, \(e.pendingRefused) deadlines refused"
            }
            Output.error(text)
        }
        if stats {
            let shown = set.rules.filter { onlyRules.isEmpty && onlyTags.isEmpty || selected($0) }
            Output.error(tally.table(rules: shown.map(\.id), suppressed: summary.engine.suppressedByRule, children: replay.engine.childCount,
                                     from: summary.firstEvent, to: summary.lastEvent))
        }
        if summary.invalid > 0 { throw ExitCode(65) }
    }
}

/// `vigil replay --stats`: per rule, what it raised over the replay.
struct RuleTally {
    var fired: [String: Int] = [:]
    var withdrawn: [String: Int] = [:]
    var children: [String: Set<String>] = [:]

    mutating func add(_ a: Alert, rule: String) {
        if a.status == .withdrawn {
            withdrawn[rule, default: 0] += 1
        } else {
            fired[rule, default: 0] += 1
            children[rule, default: []].insert(a.childId)
        }
    }

    /// One line per rule: fired, withdrawn, suppressed, distinct children, alerts per 1,000 children a month
    /// (children: every child the replay saw; months: the span of the events' times).
    func table(rules: [String], suppressed: [String: Int], children total: Int, from: Instant?, to: Instant?) -> String {
        let days = from.flatMap { f in to.map { Double($0.micros - f.micros) / Double(Instant.microsPerDay) } } ?? 0
        let months = max(days / 30.44, 1.0 / 30.44)
        let width = max(28, rules.map(\.count).max() ?? 0)
        var lines = ["rule".padding(toLength: width, withPad: " ", startingAt: 0) + "     fired  withdrawn  suppressed  children  per 1,000 children a month"]
        func col(_ s: String, _ w: Int) -> String { String(repeating: " ", count: max(0, w - s.count)) + s }
        for r in rules {
            let f = fired[r] ?? 0
            let rate = total == 0 ? 0 : Double(f) / Double(total) * 1000 / months
            lines.append(r.padding(toLength: width, withPad: " ", startingAt: 0) + col(String(f), 10) + col(String(withdrawn[r] ?? 0), 11)
                         + col(String(suppressed[r] ?? 0), 12) + col(String(children[r]?.count ?? 0), 10) + col(String(format: "%.2f", rate), 29))
        }
        lines.append("\(total) child\(total == 1 ? "" : "ren") over \(String(format: "%.1f", days)) days (\(String(format: "%.1f", months)) months) of events")
        return lines.joined(separator: "\n")
    }
}
