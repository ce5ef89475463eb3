import Foundation
import Testing
import VigilEngine
import VigilRules
import VigilService

@Suite struct DocsTests {
    /// The YAML code blocks of docs/rules.md, in order.
    func yamlBlocks() throws -> [String] {
        let text = try String(contentsOf: repoRoot.appendingPathComponent("docs/rules.md"), encoding: .utf8)
        var blocks: [String] = []
        var current: [Substring]?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil, line == "```yaml" { current = [] } else if current != nil, line == "```" {
                blocks.append((current ?? []).joined(separator: "\n"))
                current = nil
            } else if current != nil { current?.append(line) }
        }
        return blocks
    }

    /// The step-by-step absence rule in the guide compiles with the shipped pack and its tests pass.
    @Test func theWorkedAbsenceRuleAndItsTestsWork() throws {
        let blocks = try yamlBlocks()
        let rule = try #require(blocks.first { $0.contains("- rule: step-down-review-overdue") })
        let tests = try #require(blocks.first { $0.contains("- test: step-down review overdue fires") })
        var sources = try RuleDirectory.load(rulesDir)
        sources.files.append(RuleSources.File(path: "Rules/local.yaml", relativePath: "local.yaml", text: rule))
        sources.files.append(RuleSources.File(path: "Rules/tests/local.yaml", relativePath: "tests/local.yaml", text: tests))
        let compilation = RuleCompiler.compile(sources)
        let set = try #require(compilation.ruleSet, "\(compilation.report)")
        #expect(set.rules.count == 23)
        let suite = RuleTestSuite.run(sources, rules: set, filter: "step-down")
        #expect(suite.results.count == 1)
        let all = RuleTestSuite.run(RuleSources(files: sources.files.filter { $0.relativePath == "tests/local.yaml" }), rules: set)
        #expect(all.results.count == 4)
        for r in all.results { #expect(r.passed, "\(r.test.name): missing \(r.missing), unexpected \(r.unexpected), raised \(r.raised)") }
    }

    /// Every rule-file snippet in the guide that stands alone parses as YAML.
    @Test func snippetsAreValidYAML() throws {
        for block in try yamlBlocks() where block.hasPrefix("- ") {
            let c = RuleCompiler.compile(RuleSources(files: [RuleSources.File(path: "snippet.yaml", text: block)]))
            #expect(!c.diagnostics.contains { $0.code == .yamlSyntax || $0.code == .notAList }, "\(c.report)\n\(block)")
        }
    }
}
