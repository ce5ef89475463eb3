import ArgumentParser
import Foundation
import VigilContract
import VigilEngine
import VigilRules
import VigilService

struct ExplainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Why an alert fired, or why a rule did not fire for a child: evidence, deadline arithmetic, each event's effect.",
        discussion: """
        Two forms:
          vigil explain ALERT_ID --audit FILE|DIR   (or --alerts FILE: alerts as JSON Lines; or --brokers B --topic T)
            the alert's rule and version, its times in the pack's zone, its evidence, and how its deadline was
            computed (working days counted, weekends and holidays skipped, clock changes). With --events, the
            trace below follows too.
          vigil explain --events FILE --child ID --rule RULE
            the child's events in event-time order and, at each event the rule reads, what the rule made of it:
            fired, armed (with the deadline's arithmetic), met, cancelled, or the first part of a condition that
            failed and the value it saw; then deadlines that fell due, and what is still pending at the end.
        Times are local in the pack's calendar zone with the offset (UTC in brackets when they differ).
        Exit status: 0 explained; 1 the rules, the alert or the events could not be read.
        """
    )

    @Argument(help: ArgumentHelp("The alert to explain.", valueName: "ALERT_ID")) var alertId: String?
    @Option(help: ArgumentHelp("Audit log holding the alert: its file or directory.", valueName: "FILE|DIR")) var audit: String?
    @Option(help: ArgumentHelp("Alerts as JSON Lines (vigil replay's output, or the alerts topic read with kcat).", valueName: "FILE")) var alerts: String?
    @Option(help: "Kafka bootstrap servers: find the alert on the alerts topic (with --topic).") var brokers: String?
    @Option(help: "The alerts topic (with --brokers), read from its beginning to its end.") var topic: String?
    @Option(name: .customShort("X"), help: ArgumentHelp("A librdkafka property (repeatable).", valueName: "property=value")) var properties: [String] = []
    @Option(help: ArgumentHelp("Event files (JSON Lines) to trace the rule over (repeatable).", valueName: "FILE")) var events: [String] = []
    @Option(help: ArgumentHelp("The child (taken from the alert when one is given).", valueName: "ID")) var child: String?
    @Option(help: ArgumentHelp("The rule (taken from the alert when one is given).", valueName: "RULE")) var rule: String?
    @Option(help: ArgumentHelp("Run the clock on to this instant at the end (default: the latest event read).", valueName: "ISO")) var until: String?
    @OptionGroup var rulesOptions: RulesOptions

    func validate() throws {
        if alertId != nil {
            let sources = [audit != nil, alerts != nil, brokers != nil || topic != nil].filter { $0 }.count
            guard sources == 1 else { throw ValidationError("with an alert id, give one of --audit FILE|DIR, --alerts FILE, or --brokers and --topic") }
            if (brokers == nil) != (topic == nil) { throw ValidationError("--brokers and --topic go together") }
        } else {
            guard !events.isEmpty, child != nil, rule != nil else {
                throw ValidationError("give an alert id (with --audit or --alerts), or --events FILE with --child ID and --rule RULE")
            }
        }
        if let until, RFC3339.parseDateTime(until) == nil { throw ValidationError("--until must be an RFC 3339 date-time such as 2007-08-03T00:00:00Z") }
    }

    func run() throws {
        let rules = try rulesOptions.compile()
        let out = Output.shared
        var childId = child
        var ruleId = rule
        var alertToFind: String?
        if let alertId {
            let found: TailedAlert
            do {
                if let audit {
                    found = try ExplainInput.alert(alertId, audit: audit)
                } else if let brokers, let topic {
                    found = try ExplainInput.alert(alertId, brokers: brokers, topic: topic, properties: properties,
                                                   logger: LoggingSetup.bootstrap(level: .warning))
                } else {
                    found = try ExplainInput.alert(alertId, alertsFile: alerts ?? "")
                }
            } catch {
                Output.error("vigil explain: \(error)")
                throw ExitCode(1)
            }
            AlertExplanation(alert: found, rules: rules).lines.forEach(out.line)
            childId = childId ?? found.childId
            ruleId = ruleId ?? found.ruleId
            alertToFind = alertId
            if events.isEmpty {
                out.line("(give --events FILE to trace the rule over the child's events)")
                out.flush()
                return
            }
            out.line("")
        }
        guard let childId, let ruleId else { throw ExitCode(1) }
        let read: ExplainInput.Events
        do {
            read = try ExplainInput.events(events, child: childId, rules: rules.allLive)
        } catch {
            Output.error("vigil explain: \(error)")
            throw ExitCode(1)
        }
        if read.invalid > 0 { Output.error("vigil explain: \(read.invalid) invalid line\(read.invalid == 1 ? "" : "s") skipped (vigil replay lists them)") }
        let explanation: Explainer.Explanation
        do {
            explanation = try Explainer(rules: rules.allLive).explain(rule: ruleId, child: childId, records: read.records,
                                                                     through: until.flatMap(RFC3339.parseDateTime) ?? read.clock)
        } catch {
            Output.error("vigil explain: \(error)")
            throw ExitCode(1)
        }
        explanation.lines.forEach(out.line)
        if let alertToFind, !explanation.alerts.contains(where: { $0.alertId == alertToFind }) {
            out.line("note: these events do not raise \(alertToFind) with this pack (other events, another pack, or an alert raised by a late record under a revised id)")
        }
        out.flush()
    }
}
