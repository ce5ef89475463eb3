import ArgumentParser
import VigilRules
import VigilService

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Compile a rule pack and report every problem (file:line:col: error[CODE]: message).",
        discussion: "Exits 0 when the pack compiles, 1 on any error."
    )

    @Argument(help: ArgumentHelp("Rule pack directory (or a single rule file).", valueName: "DIR"))
    var directory: String = "Rules"

    @Flag(name: .long, help: "Print each rule's id, severity, kind and version.")
    var list = false

    func run() throws {
        let set = try RulesOptions.compile(directory)
        if list {
            let width = set.rules.map(\.id.count).max() ?? 0
            for r in set.rules {
                Output.shared.line("\(r.id.padding(toLength: width, withPad: " ", startingAt: 0))  \(r.severity.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0))  \(r.kind.padding(toLength: 9, withPad: " ", startingAt: 0))  \(r.version)")
            }
            Output.shared.flush()
        }
        Output.error("\(directory): \(set.rules.count) rules OK (\(set.states.count) states, \(set.windows.count) windows, \(set.calendars.count) calendar\(set.calendars.count == 1 ? "" : "s"))")
    }
}
