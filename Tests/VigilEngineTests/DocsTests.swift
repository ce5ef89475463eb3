import Foundation
import Testing
import VigilEngine
import VigilRules
import VigilService
import VigilTesting

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

    /// The worked example of "Changing the rules" compiles beside the shipped pack and classifies as the
    /// guide's table says.
    @Test func theRuleChangeExampleClassifiesAsTheGuideSays() throws {
        let blocks = try yamlBlocks()
        let rule = try #require(blocks.first { $0.contains("- rule: several-injuries-at-hospital") })
        let text = try String(contentsOf: repoRoot.appendingPathComponent("docs/rules.md"), encoding: .utf8)
        let b = try EditedPack(rulesDir)
            .replacing("within: 45 working days", with: "within: 40 working days", in: "timescales.yaml")
            .replacing("no decision by {deadline}", with: "still no decision at {deadline}", in: "timescales.yaml")
            .appending("\n" + rule + "\n", to: "injuries.yaml").compile()
        let change = PackChange(from: PackManifest(pack), to: PackManifest(b))
        #expect(change.change(of: "several-injuries-at-hospital") == .new)
        #expect(change.change(of: "referral-decision-overdue") == .cosmetic)
        #expect(change.change(of: "assessment-overdue") == .retimed)
        #expect(b.rule(id: "several-injuries-at-hospital")?.mode == .shadow)
        for line in RulesDiff.table(change, title: "Rules -> Rules-new").split(separator: "\n").dropFirst(2).prefix(3) {
            // The rule, its class and versions as printed in the guide.
            #expect(text.contains(line.prefix(80)), "\(line)")
        }
        #expect(text.contains("rule pack \(PackManifest(pack).digest) -> \(PackManifest(b).digest)"))
    }

    /// The committed catalogue is `vigil rules doc` of the shipped pack, and every shipped rule has a title.
    @Test func theRuleCatalogueIsInStepWithThePack() throws {
        for r in pack.rules { #expect(!r.title.isEmpty, "\(r.id) has no title") }
        let committed = try String(contentsOf: repoRoot.appendingPathComponent("docs/rule-catalogue.md"), encoding: .utf8)
        #expect(committed == RuleCatalogue.markdown(pack), "regenerate it: vigil rules doc --output docs/rule-catalogue.md")
    }

    /// Every rule-file snippet in the guide that stands alone parses as YAML.
    @Test func snippetsAreValidYAML() throws {
        for block in try yamlBlocks() where block.hasPrefix("- ") {
            let c = RuleCompiler.compile(RuleSources(files: [RuleSources.File(path: "snippet.yaml", text: block)]))
            #expect(!c.diagnostics.contains { $0.code == .yamlSyntax || $0.code == .notAList }, "\(c.report)\n\(block)")
        }
    }
}
