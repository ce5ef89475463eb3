import ArgumentParser
import Foundation
import VigilRules
import VigilService

/// `--rules DIR`, shared by the commands that evaluate rules.
struct RulesOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Rule pack directory.", valueName: "DIR"))
    var rules: String = ProcessInfo.processInfo.environment["VIGIL_RULES"] ?? "Rules"

    /// Compiles the pack, printing diagnostics; throws exit code 1 on any error.
    func compile() throws -> CompiledRuleSet {
        try RulesOptions.compile(rules)
    }

    static func compile(_ dir: String) throws -> CompiledRuleSet {
        let compilation: RuleCompilation
        do {
            compilation = try RuleDirectory.compile(dir)
        } catch {
            Output.error("vigil: \(error)")
            throw ExitCode(1)
        }
        if !compilation.diagnostics.isEmpty { Output.error(compilation.report) }
        guard let set = compilation.ruleSet else {
            Output.error("vigil: \(compilation.errors.count) error\(compilation.errors.count == 1 ? "" : "s") in \(dir)")
            throw ExitCode(1)
        }
        return set
    }
}

