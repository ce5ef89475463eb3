import ArgumentParser
import Foundation
import VigilContract
import VigilEngine
import VigilRules
import VigilService

struct RulesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rules",
        abstract: "Work with rule packs as they change.",
        subcommands: [RulesDiffCommand.self, RulesDocCommand.self]
    )
}

struct RulesDiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Classify a change of rule pack per rule, as a live reload would, and count the children it touches.",
        discussion: """
        Each rule is unchanged, cosmetic (output only: summary, severity, title; nothing re-derived, nothing \
        re-fires), retimed (a deadline's length or calendar: pending deadlines move, alerts fired stay), changed \
        (what decides whether it fires: re-derived from each child's timeline), new (derived from the timelines, \
        with backfill) or removed (its state dropped; its alerts stay history).
        With --events, the old pack is replayed over the files first, and the table says how many children each \
        rule's change touches and how many backfill alerts the switch would raise.
        Exit status: 0 no re-derivation needed; 2 a re-derivation is needed (for CI in a rules repository); \
        1 a pack or an input file could not be read.
        """
    )

    @Argument(help: ArgumentHelp("The rule pack running now.", valueName: "OLD"))
    var old: String
    @Argument(help: ArgumentHelp("The rule pack to switch to.", valueName: "NEW"))
    var new: String
    @Option(name: .customLong("events"), help: ArgumentHelp("Event files (JSON Lines) to derive the old pack's state from.", valueName: "FILE"))
    var events: [String] = []
    @Flag(help: "List unchanged rules too.") var all = false

    func run() throws {
        let a = try RulesOptions.compile(old)
        let b = try RulesOptions.compile(new)
        var footprint: RulesDiff.Footprint?
        let change: PackChange
        if events.isEmpty {
            change = PackChange(from: PackManifest(a), to: PackManifest(b))
        } else {
            let replay = Replay(rules: a)
            var invalid = 0
            do {
                _ = try replay.run(files: events, onInvalid: { _ in invalid += 1 }, onAlert: { _ in }, onRewind: {})
            } catch {
                Output.error("vigil: \(error)")
                throw ExitCode(1)
            }
            if invalid > 0 { Output.error("vigil: \(invalid) invalid lines in the event files were skipped") }
            let (c, f) = RulesDiff.footprint(of: replay.engine, switchingTo: b)
            change = c
            footprint = f
        }
        Output.shared.line(RulesDiff.table(change, title: "\(old) -> \(new)", footprint: footprint, all: all))
        Output.shared.flush()
        if change.needsRederivation { throw ExitCode(2) }
    }
}

struct RulesDocCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doc",
        abstract: "Write the pack as a Markdown catalogue (each rule's title, severity, kind, mode, description, source, version).",
        discussion: "docs/rule-catalogue.md is this command's output for Rules/ (a test keeps it in step)."
    )

    @OptionGroup var rulesOptions: RulesOptions
    @Option(help: ArgumentHelp("Write to this file instead of standard output.", valueName: "FILE")) var output: String?

    func run() throws {
        let text = RuleCatalogue.markdown(try rulesOptions.compile())
        if let output {
            try text.write(toFile: output, atomically: true, encoding: .utf8)
        } else {
            Output.shared.line(text.hasSuffix("\n") ? String(text.dropLast()) : text)
            Output.shared.flush()
        }
    }
}
