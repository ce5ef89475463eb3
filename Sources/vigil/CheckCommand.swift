import ArgumentParser
import Foundation
import VigilRules
import VigilService

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Compile a rule pack and report every problem (file:line:col: error[CODE]: message).",
        discussion: """
        Given one rule file, the rest of its pack (the directory it is in) is loaded for context (shared macros, \
        lists, states, calendars) and the problems of that file are reported. --lint adds warnings (macros, lists \
        and states no rule uses); warnings never fail the check unless --strict.
        Exits 0 when the pack compiles, 1 on any error (or any warning with --strict).
        """
    )

    @Argument(help: ArgumentHelp("Rule pack directory (or one rule file of a pack).", valueName: "DIR"))
    var directory: String = "Rules"

    @Flag(name: .long, help: "Print each rule's id, severity, kind, mode, version and title, then its description, tags and labels (vigil rules doc: the same as a Markdown catalogue).")
    var list = false

    @Flag(help: "Warn about macros, lists and states no rule uses.")
    var lint = false

    @Flag(help: "Fail on warnings too.")
    var strict = false

    func run() throws {
        var isDir: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: directory, isDirectory: &isDir)
        // One file of a pack: the pack is its directory; only that file's problems are reported.
        let pack = exists && !isDir.boolValue ? (directory as NSString).deletingLastPathComponent : directory
        let only = exists && !isDir.boolValue ? directory : nil
        let sources: RuleSources
        do { sources = try RuleDirectory.load(pack.isEmpty ? "." : pack) } catch {
            Output.error("vigil: \(error)")
            throw ExitCode(1)
        }
        let compilation = RuleCompiler.compile(sources, contract: .embedded, lint: lint)
        let shown = compilation.diagnostics.filter { d in only.map { samePath(d.location.file, $0) } ?? true }
        for d in shown { Output.error(d.rendered(sources: sources)) }
        let errors = shown.filter { $0.severity == .error }.count
        let warnings = shown.filter { $0.severity == .warning }.count
        let elsewhere = compilation.errors.count - errors
        guard let set = compilation.ruleSet, errors == 0 else {
            Output.error(errors == 0
                ? "vigil: \(directory) has no errors, but its pack has \(elsewhere) in other files (vigil check \(pack) shows them)"
                : "vigil: \(errors) error\(errors == 1 ? "" : "s") in \(directory)" + (elsewhere > 0 ? " (and \(elsewhere) elsewhere in the pack \(pack))" : ""))
            throw ExitCode(1)
        }
        if list {
            let width = set.rules.map(\.id.count).max() ?? 0
            for r in set.rules {
                Output.shared.line("\(r.id.padding(toLength: width, withPad: " ", startingAt: 0))  \(r.severity.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0))  \(r.kind.padding(toLength: 9, withPad: " ", startingAt: 0))  \(r.mode.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0))  \(r.version)  \(r.title)")
                let description = r.description.split(whereSeparator: \.isWhitespace).joined(separator: " ")
                if !description.isEmpty { Output.shared.line("    " + description) }
                if !r.tags.isEmpty || !r.labels.isEmpty {
                    Output.shared.line("    " + (r.tags.map { "#\($0)" } + r.labels.map { "\($0.key)=\($0.value)" }).joined(separator: " "))
                }
            }
            Output.shared.flush()
        }
        Output.error("\(directory): \(set.rules.count) rules OK (\(set.states.count) states, \(set.windows.count) windows, \(set.calendars.count) calendar\(set.calendars.count == 1 ? "" : "s"))"
                     + (warnings > 0 ? "; \(warnings) warning\(warnings == 1 ? "" : "s")" : ""))
        if strict && warnings > 0 { throw ExitCode(1) }
    }

    func samePath(_ a: String, _ b: String) -> Bool {
        (a as NSString).standardizingPath == (b as NSString).standardizingPath
    }
}
