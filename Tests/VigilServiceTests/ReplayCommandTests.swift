import Foundation
import Testing
import VigilChaos
import VigilContract
import VigilEngine
import VigilRules
import VigilService
import VigilTesting

/// `vigil replay --stats`, `--rule` and `--tag`: judging a rule's noise without awk.
@Suite struct ReplayCommandTests {
    @Test func statsCountEachRulesAlertsAndAFilterEvaluatesOnlyTheRulesNamed() throws {
        let scenario = repoRoot.appendingPathComponent("scenarios/haringey-2006-2007.jsonl").path
        let all = try Subprocess(vigilBinary, ["replay", scenario, "--rules", rulesDir, "--until", "2007-09-01T00:00:00Z", "--stats", "--quiet"])
        #expect(all.wait(timeout: 120) == 0)
        #expect(all.stdout.count == 29)
        let table = all.stderr
        #expect(table.first?.hasPrefix("rule ") == true && table.first?.hasSuffix("fired  withdrawn  suppressed  children  per 1,000 children a month") == true)
        func row(_ rule: String) -> [String] { table.first { $0.hasPrefix(rule + " ") }?.split(separator: " ").map(String.init) ?? [] }
        #expect(row("child-not-seen") == ["child-not-seen", "5", "0", "0", "1", "471.21"])
        #expect(row("multi-agency-concerns") == ["multi-agency-concerns", "1", "0", "2", "1", "94.24"], "suppressed by rule")
        #expect(table.last == "1 child over 323.0 days (10.6 months) of events")

        let one = try Subprocess(vigilBinary, ["replay", scenario, "--rules", rulesDir, "--until", "2007-09-01T00:00:00Z", "--rule", "child-not-seen", "--quiet"])
        #expect(one.wait(timeout: 120) == 0)
        #expect(one.stdout.count == 5)
        #expect(one.stdout.allSatisfy { (try? JSONValue.parse(Array($0.utf8)))?["rule_id"]?.stringValue == "child-not-seen" })

        let unknown = try Subprocess(vigilBinary, ["replay", scenario, "--rules", rulesDir, "--rule", "child-not-sean"])
        #expect(unknown.wait(timeout: 60) != 0 && unknown.stderr.joined().contains("--rule child-not-sean: no such rule"))
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try EditedPack(rulesDir).replacing("- rule: child-not-seen\n", with: "- rule: child-not-seen\n  tags: [visits, statutory]\n", in: "timescales.yaml")
            .write(to: dir + "/rules")
        let tagged = try Subprocess(vigilBinary, ["replay", scenario, "--rules", dir + "/rules", "--until", "2007-09-01T00:00:00Z", "--tag", "visits", "--quiet"])
        #expect(tagged.wait(timeout: 120) == 0)
        #expect(tagged.stdout.count == 5)
        let noTag = try Subprocess(vigilBinary, ["replay", scenario, "--rules", rulesDir, "--tag", "visits"])
        #expect(noTag.wait(timeout: 60) != 0 && noTag.stderr.joined().contains("--tag visits: no rule"))
    }
}

/// `vigil check`: one file in its pack's context, lint warnings that fail only with --strict.
@Suite struct CheckCommandTests {
    /// `vigil check .` inside the pack names its files `./calendars.yaml`: the holiday file it refers to is found
    /// all the same (it once was not, and every working-day rule failed with it).
    @Test func aPackNamedWithADotFindsItsHolidayFile() throws {
        let loaded = try RuleDirectory.load(rulesDir)
        let dotted = RuleSources(files: loaded.files.map { RuleSources.File(path: "./" + $0.relativePath, relativePath: $0.relativePath, text: $0.text) })
        let compiled = RuleCompiler.compile(dotted, contract: .embedded)
        #expect(compiled.errors.isEmpty, "\(compiled.report)")
        #expect(compiled.ruleSet?.calendars.first?.holidays.isEmpty == false)
    }

    /// The lint's other warnings: a rule that copies another's conditions, a suppression shorter than the window
    /// the rule counts over, a test event whose agency nothing states. Warnings, never errors.
    @Test func lintWarnsOfACopiedRuleAShortSuppressionAndAnImpliedAgency() throws {
        let edited = try EditedPack(rulesDir)
            .appending("""

                - rule: second-injury-on-plan
                  title: A copy under another name
                  severity: high
                  description: The same as repeated-injury.
                  source: Test
                  when: injury and on_plan and count(injury, 90 days) >= 2
                  output: "Child {child.id}: another injury"

                """, to: "injuries.yaml")
            .replacing("  suppress: 30 days\n", with: "  suppress: 7 days\n", in: "multi-agency.yaml")
            .appending("""

                - test: an event without an agency
                  events:
                    - referral: {at: 2007-03-12T15:00Z, referral_ref: R-9, referrer_agency: school, decision: pending}
                  expect: [referral-decision-overdue at 2007-03-14T00:00Z]

                """, to: "tests/other.yaml")
        let c = RuleCompiler.compile(edited.sources, contract: .embedded, lint: true)
        #expect(c.ruleSet != nil && c.errors.isEmpty, "warnings never fail a build")
        let warnings = c.diagnostics.filter { $0.severity == .warning }
        #expect(warnings.map(\.code) == [.duplicateRule, .shortSuppression, .impliedDefault], "\(c.report)")
        #expect(warnings.contains { $0.message == "rule 'second-injury-on-plan' has the same conditions as rule 'repeated-injury': both fire for the same events" })
        #expect(warnings.contains { $0.message.hasPrefix("suppression of 1 week is shorter than the window the rule counts over (30 days)") })
        #expect(warnings.contains { $0.location.file == "tests/other.yaml" && $0.location.line == 4 && $0.message.contains("built-in default (children_social_care)") })
        // Without --lint, none of them.
        #expect(RuleCompiler.compile(edited.sources, contract: .embedded).diagnostics.isEmpty)
    }

    @Test func oneFileIsCheckedWithItsPackAndLintIsCleanOnTheShippedPack() throws {
        let lint = try Subprocess(vigilBinary, ["check", "--lint", "--strict", rulesDir])
        #expect(lint.wait(timeout: 60) == 0, "\(lint.stderr)")
        #expect(lint.stderr.last?.hasSuffix("22 rules OK (4 states, 6 windows, 1 calendar)") == true)
        let list = try Subprocess(vigilBinary, ["check", "--list", rulesDir])
        #expect(list.wait(timeout: 60) == 0)
        let at = try #require(list.stdout.firstIndex { $0.hasPrefix("investigation-drift ") })
        #expect(list.stdout[at].hasSuffix("  high      absence    live      92632be81ce5d16f  Police investigation drifting"), "\(list.stdout[at])")
        #expect(list.stdout[at + 1] == "    No further activity on a police investigation within 20 working days of it being opened, worked on or reassigned. Every such event starts the clock again; closing the investigation stops it.")
        // timescales.yaml alone uses the pack's calendar: checked in its pack, it compiles.
        let one = try Subprocess(vigilBinary, ["check", rulesDir + "/timescales.yaml"])
        #expect(one.wait(timeout: 60) == 0, "\(one.stderr)")

        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try EditedPack(rulesDir).appending("\n- macro: never_used\n  condition: type = referral\n", to: "definitions.yaml")
            .replacing("  severity: high\n  description: Legal advice", with: "  severity: mediocre\n  description: Legal advice", in: "investigations.yaml")
            .write(to: dir + "/rules")
        // The problem of another file is not this file's: it is counted, not shown.
        let other = try Subprocess(vigilBinary, ["check", dir + "/rules/timescales.yaml"])
        #expect(other.wait(timeout: 60) == 1)
        #expect(other.stderr.joined(separator: "\n").contains("\(dir)/rules/timescales.yaml has no errors, but its pack has 1 in other files"))
        let bad = try Subprocess(vigilBinary, ["check", "--lint", dir + "/rules/investigations.yaml"])
        #expect(bad.wait(timeout: 60) == 1)
        #expect(bad.stderr.contains { $0.contains("error[bad-severity]") })
        try EditedPack(rulesDir).appending("\n- macro: never_used\n  condition: type = referral\n", to: "definitions.yaml").write(to: dir + "/warned")
        let warned = try Subprocess(vigilBinary, ["check", "--lint", dir + "/warned"])
        #expect(warned.wait(timeout: 60) == 0, "warnings do not fail")
        #expect(warned.stderr.contains { $0.contains("warning[unused]: macro 'never_used' is used by no rule") }, "\(warned.stderr)")
        let strict = try Subprocess(vigilBinary, ["check", "--lint", "--strict", dir + "/warned"])
        #expect(strict.wait(timeout: 60) == 1)
    }
}

/// `vigil replay` reads its input once when it is in event-time order and takes back what it wrote when a file
/// turns out not to be: the output is the two-pass replay's, byte for byte, to a file (truncated back), appended
/// to one, to a pipe (held back), and to a pipe with the held output spilled to a temporary file.
@Suite struct ReplayOncePassTests {
    @Test func aFileOutOfOrderIsTakenBackAndReplayedSortedWhereverTheOutputGoes() throws {
        var g = StreamGenerator(.init(children: 1000, days: 200, seed: 5))
        var lines: [String] = []
        g.generate { lines.append($0) }
        // In order but for one event from the middle moved to the end: nearly all the alerts (well over the
        // 64 KiB output buffer) are written before the disorder is met.
        var moved = lines
        moved.append(moved.remove(at: lines.count / 2))
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let inOrder = dir + "/in-order.jsonl", disordered = dir + "/disordered.jsonl"
        try (lines.joined(separator: "\n") + "\n").write(toFile: inOrder, atomically: true, encoding: .utf8)
        try (moved.joined(separator: "\n") + "\n").write(toFile: disordered, atomically: true, encoding: .utf8)
        let until = "2024-09-01T00:00:00Z"

        for input in [inOrder, disordered] {
            // The two-pass replay, through the library.
            let formatter = AlertFormatter(rules: pack)
            var expected: [String] = []
            var rewinds = 0
            let summary = try Replay(rules: pack).run(files: [input], until: RFC3339.parseDateTime(until), onInvalid: { _ in },
                                                      onAlert: { expected.append(formatter.json($0)) })
            _ = try Replay(rules: pack).run(files: [input], onInvalid: { _ in }, onAlert: { _ in }, onRewind: { rewinds += 1 })
            #expect(rewinds == (input == disordered ? 1 : 0))
            #expect(summary.unsortedFiles == (input == disordered ? 1 : 0))
            #expect(expected.count > 200, "enough alerts to fill several output buffers before the disorder")
            let shell = "'\(vigilBinary)' replay --quiet --rules '\(rulesDir)' --until \(until) '\(input)'"
            // To a regular file, and appended to one.
            let file = dir + "/alerts.jsonl"
            try "an earlier line\n".write(toFile: file + ".appended", atomically: true, encoding: .utf8)
            let toFile = try Subprocess("/bin/sh", ["-c", "\(shell) > '\(file)' && \(shell) >> '\(file).appended'"])
            #expect(toFile.wait(timeout: 120) == 0)
            #expect(try String(contentsOfFile: file, encoding: .utf8) == expected.joined(separator: "\n") + "\n")
            #expect(try String(contentsOfFile: file + ".appended", encoding: .utf8) == "an earlier line\n" + expected.joined(separator: "\n") + "\n")
            // To a pipe: held in memory, then spilled past a small limit.
            let piped = try Subprocess("/bin/sh", ["-c", "\(shell) | cat"])
            #expect(piped.wait(timeout: 120) == 0)
            #expect(piped.stdout == expected)
            let spilled = try Subprocess("/bin/sh", ["-c", "\(shell) | cat"], environment: ["VIGIL_HELD_OUTPUT_BYTES": "4096"])
            #expect(spilled.wait(timeout: 120) == 0)
            #expect(spilled.stdout == expected)
        }
    }
}
