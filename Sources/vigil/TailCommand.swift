import ArgumentParser
import Foundation
import Logging
import Synchronization
import VigilContract
import VigilRules
import VigilService

struct TailCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Follow alerts from the audit log or the alerts topic: one readable line per alert, coloured by severity.",
        discussion: "Give --audit FILE, or --brokers and --topic. Keeps following until Ctrl-C (or use --no-follow). Each line: fired_at (local time with its offset in the pack's calendar zone when --rules, $VIGIL_RULES or --tz names one, so a deadline at local midnight in London summer time reads 00:00:00+01:00; UTC otherwise, as in the alert JSON), severity, LATE or WITHDRAWN when a record that arrived late caused it, rule, child, summary, the late record, and the ids of the events the alert cites."
    )

    @Option(help: ArgumentHelp("Audit log to follow: its file (its rotated segments are read first), or its directory.", valueName: "FILE|DIR")) var audit: String?
    @Option(help: "Kafka bootstrap servers (with --topic).") var brokers: String?
    @Option(help: "Alerts topic (with --brokers).") var topic: String?
    @Option(name: .customShort("X"), help: ArgumentHelp("A librdkafka property (repeatable).", valueName: "property=value")) var properties: [String] = []
    @Option(help: "Start at the start or the end of what is there.") var from: Start = .start
    @Option(help: ArgumentHelp("Only alerts that fired at or after this instant.", valueName: "ISO")) var since: String?
    @Option(help: "Minimum severity: low, medium, high, critical.") var severity: String?
    @Option(help: ArgumentHelp("Only this rule (repeatable).", valueName: "RULE")) var rule: [String] = []
    @Option(help: ArgumentHelp("Only this child (repeatable).", valueName: "ID")) var child: [String] = []
    @Option(help: "text (one readable line) or json (the alert as written).") var format: Format = .text
    @Flag(inversion: .prefixedNo, help: "Keep following as alerts arrive.") var follow = true
    @Option(help: ArgumentHelp("Time zone of the text lines' times (default: the calendar zone of the pack in --rules or $VIGIL_RULES, else UTC).", valueName: "ZONE"))
    var tz: String?
    @Option(help: ArgumentHelp("Rule pack whose calendar zone the text lines use (default $VIGIL_RULES).", valueName: "DIR"))
    var rules: String?

    /// The zone text lines are written in: `--tz`, else the pack's calendar zone, else UTC (nil).
    var zone: ZoneTable? {
        if let tz { return tz == "UTC" || tz == "Z" ? nil : ZoneTable.named(tz) }
        guard let dir = rules ?? ProcessInfo.processInfo.environment["VIGIL_RULES"] else { return nil }
        return (try? RuleDirectory.compile(dir))?.ruleSet?.calendars.first?.zone
    }

    enum Start: String, ExpressibleByArgument { case start, end }
    enum Format: String, ExpressibleByArgument { case text, json }

    func validate() throws {
        guard (audit != nil) != (brokers != nil || topic != nil) else {
            throw ValidationError("give either --audit FILE, or --brokers and --topic")
        }
        if audit == nil, brokers == nil || topic == nil { throw ValidationError("--brokers and --topic go together") }
        if let severity, !AlertFilter.isSeverity(severity) { throw ValidationError("--severity must be low, medium, high or critical") }
        if let since, RFC3339.parseDateTime(since) == nil { throw ValidationError("--since must be an RFC 3339 date-time") }
        if let tz, tz != "Z", ZoneTable.named(tz) == nil { throw ValidationError("unknown time zone '\(tz)' (an IANA name such as Europe/London, or UTC)") }
    }

    func run() throws {
        let filter = AlertFilter(minimumSeverity: severity, rules: Set(rule), children: Set(child), since: since.flatMap(RFC3339.parseDateTime))
        let stop = Atomic<Bool>(false)
        let trap = SignalTrap { stop.store(true, ordering: .relaxed) }
        _ = trap
        let color = Output.stdoutIsTerminal
        let codes = ["critical": "1;31", "high": "31", "medium": "33", "low": "36"]
        let zone = format == .text ? self.zone : nil
        func show(_ alerts: [TailedAlert]) {
            for a in alerts where filter.accepts(a) {
                switch format {
                case .json: Output.shared.line(a.text)
                case .text: Output.shared.line(ANSI.color(a.line(in: zone), a.status == "withdrawn" ? "2" : codes[a.severity] ?? "0", enabled: color))
                }
            }
            Output.shared.flush()
        }
        if var audit {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: audit, isDirectory: &isDir), isDir.boolValue {
                // A directory: the one log in it (its segments, then its active file).
                let logs = AuditSegments.logs(in: audit)
                guard logs.count == 1, let log = logs.first else {
                    Output.error("vigil tail: \(audit): \(logs.isEmpty ? "no audit log (*.jsonl) in it" : "several audit logs in it (\(logs.map { $0.stem + $0.ext }.joined(separator: ", "))): name one")")
                    throw ExitCode(1)
                }
                audit = log.activePath
            }
            guard !AuditSegments(activePath: audit).files().isEmpty || follow else {
                Output.error("vigil tail: \(audit): no such file")
                throw ExitCode(1)
            }
            let follower = AuditFollower(path: audit, fromEnd: from == .end && since == nil)
            show(follower.poll())
            while follow && !stop.load(ordering: .relaxed) {
                usleep(200_000)
                show(follower.poll())
            }
        } else if let brokers, let topic {
            let logger = LoggingSetup.bootstrap(level: .warning)
            let follower: TopicFollower
            do {
                follower = try TopicFollower(brokers: brokers, topic: topic, fromEnd: from == .end && since == nil, properties: properties, logger: logger)
            } catch {
                Output.error("vigil tail: \(error)")
                throw ExitCode(1)
            }
            var quiet = 0
            while !stop.load(ordering: .relaxed) {
                let got = follower.poll()
                show(got)
                quiet = got.isEmpty ? quiet + 1 : 0
                if !follow && quiet >= 10 { break }
            }
            follower.close()
        }
    }
}
