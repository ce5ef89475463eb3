import ArgumentParser
import VigilContract
import VigilEngine
import VigilRules
import VigilService

struct TestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Run the rule tests kept beside the rules (DIR/tests/*.yaml).",
        discussion: "Each test replays its events in event-time order through a fresh engine and compares the alerts. Exits 1 on any failure."
    )

    @Argument(help: ArgumentHelp("Rule pack directory.", valueName: "DIR"))
    var directory: String = "Rules"

    @Option(help: ArgumentHelp("Run only tests whose name contains this text.", valueName: "TEXT"))
    var filter: String?

    @Flag(help: "Print every test, not only failures, and the alerts each raised.")
    var verbose = false

    @Flag(help: "Print, for each rule, how many tests expect it to fire and how many say it must not.")
    var coverage = false

    @Option(help: ArgumentHelp("Fail unless every rule has at least N tests that fire and N that must not.", valueName: "N"))
    var requireCoverage: Int?

    func run() throws {
        let sources: RuleSources
        do { sources = try RuleDirectory.load(directory) } catch {
            Output.error("vigil: \(error)")
            throw ExitCode(1)
        }
        let set = try RulesOptions.compile(directory)
        let suite = RuleTestSuite.run(sources, rules: set, filter: filter)
        let color = Output.stdoutIsTerminal
        // Times for a person: local in the pack's zone with the offset, the UTC instant in brackets.
        let explainer = Explainer(rules: set)
        func when(_ t: Instant?) -> String { t.map(explainer.when) ?? "?" }
        for d in suite.diagnostics { Output.error(d.rendered(sources: sources)) }
        for r in suite.results {
            let where_ = "\(r.test.location.file):\(r.test.location.line)"
            if r.passed {
                if verbose { Output.shared.line("\(ANSI.color("PASS", "32", enabled: color))  \(where_)  \(r.test.name)") }
            } else {
                Output.shared.line("\(ANSI.color("FAIL", "1;31", enabled: color))  \(where_)  \(r.test.name)")
                for e in r.errors { Output.shared.line("        error       \(e)") }
                for m in r.missing { Output.shared.line("        missing     \(m.rule) at \(when(m.at))") }
                for u in r.unexpected { Output.shared.line("        unexpected  \(u.rule) at \(when(u.at))") }
                for f in r.forbidden { Output.shared.line("        must not    \(f.rule)\(f.at.map { " at \(when($0))" } ?? "") fired") }
                for w in r.wrongSummary {
                    Output.shared.line("        summary     \(w.expected.rule) at \(when(w.expected.at)): expected \"\(w.expected.summary ?? "")\"")
                    Output.shared.line("                    got      \"\(w.got)\"")
                }
                for w in r.wrongAnnotations {
                    for (k, v) in w.expected.annotations.sorted(by: { $0.key < $1.key }) where w.got[k] != v {
                        Output.shared.line("        annotation  \(w.expected.rule) at \(when(w.expected.at)): \(k) expected \"\(v)\"")
                        Output.shared.line("                    got      " + (w.got[k].map { "\"\($0)\"" } ?? "(none: the rule has no annotation '\(k)')"))
                    }
                }
            }
            if verbose || !r.passed {
                if r.raised.isEmpty { Output.shared.line("        (no alerts raised)") }
                for a in r.raised where verbose || !r.passed { Output.shared.line("        raised      \(a.rule) at \(when(a.at))") }
            }
            if !r.trace.isEmpty {
                Output.shared.line("        why (vigil explain over the test's events):")
                for l in r.trace { Output.shared.line("          " + l) }
            }
        }
        var coverageOK = true
        if coverage || requireCoverage != nil {
            for c in suite.coverage(of: set) {
                let short = requireCoverage.map { c.fires < $0 || c.mustNot < $0 } ?? false
                if short { coverageOK = false }
                if coverage || short {
                    Output.shared.line("\(short ? "SHORT" : "     ")  \(c.rule.padding(toLength: 36, withPad: " ", startingAt: 0))  fires \(c.fires)  must-not \(c.mustNot)")
                }
            }
        }
        Output.shared.flush()
        let failed = suite.failed.count
        Output.error("\(suite.results.count) tests: \(suite.results.count - failed) passed, \(failed) failed\(suite.diagnostics.isEmpty ? "" : "; \(suite.diagnostics.count) problems in test files")")
        if failed > 0 || suite.diagnostics.contains(where: { $0.severity == .error }) || !coverageOK { throw ExitCode(1) }
    }
}
