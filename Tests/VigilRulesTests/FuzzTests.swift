import Foundation
import Testing
@testable import VigilRules

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// SplitMix64: a small deterministic generator, so a failing mutation can be replayed from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func loadPack() throws -> RuleSources {
    let dir = repoRoot.appendingPathComponent("Rules")
    var files: [RuleSources.File] = []
    let fm = FileManager.default
    for rel in (fm.enumerator(atPath: dir.path)?.allObjects as? [String] ?? []).sorted()
    where rel.hasSuffix(".yaml") || rel.hasSuffix(".csv") {
        let text = try String(contentsOf: dir.appendingPathComponent(rel), encoding: .utf8)
        files.append(RuleSources.File(path: "Rules/" + rel, relativePath: rel, text: text))
    }
    return RuleSources(files: files)
}

enum Mutator {
    static let fragments = [":", "- ", "{", "}", "[", "]", "'", "\"", "|", ">", "#", "\n", "  ", "\t", "(", ")", ",", "=", "!=",
                            " and ", " or ", " not ", " in ", " contains ", "count(", "distinct(", "none(", "any(", "age(",
                            "it", "state.", "data.", "child.", "0", "-1", "99999999999999999999", " days", " working days",
                            " months", "{deadline}", "{data.explanation}", "&a", "*a", "!!str", "\u{0}", "é", "🙂", "%"]

    static func mutate(_ text: String, _ rng: inout SplitMix64) -> String {
        var s = Array(text.unicodeScalars)
        let n = Int.random(in: 1...4, using: &rng)
        for _ in 0..<n where !s.isEmpty {
            let at = Int.random(in: 0..<s.count, using: &rng)
            switch Int.random(in: 0..<7, using: &rng) {
            case 0: s.remove(at: at)
            case 1: s.removeSubrange(at..<min(s.count, at + Int.random(in: 1...40, using: &rng)))
            case 2:
                let f = fragments.randomElement(using: &rng) ?? ":"
                s.insert(contentsOf: f.unicodeScalars, at: at)
            case 3:
                let lines = String(String.UnicodeScalarView(s)).split(separator: "\n", omittingEmptySubsequences: false)
                var l = lines.map(String.init)
                if l.count > 2 {
                    let a = Int.random(in: 0..<l.count, using: &rng), b = Int.random(in: 0..<l.count, using: &rng)
                    l.swapAt(a, b)
                }
                s = Array(l.joined(separator: "\n").unicodeScalars)
            case 4:
                let lines = String(String.UnicodeScalarView(s)).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                var l = lines
                if let dup = lines.randomElement(using: &rng) { l.insert(dup, at: Int.random(in: 0...l.count, using: &rng)) }
                s = Array(l.joined(separator: "\n").unicodeScalars)
            case 5:
                // Replace a word with another word from the file.
                let words = String(String.UnicodeScalarView(s)).split(whereSeparator: { !$0.isLetter && $0 != "_" && $0 != "." }).map(String.init)
                if let w = words.randomElement(using: &rng), let r = words.randomElement(using: &rng) {
                    let t = String(String.UnicodeScalarView(s))
                    if let range = t.range(of: w) { s = Array(t.replacingCharacters(in: range, with: r).unicodeScalars) }
                }
            default:
                s[at] = Unicode.Scalar(UInt8.random(in: 0x20...0x7E, using: &rng))
            }
        }
        return String(String.UnicodeScalarView(s))
    }
}

@Suite struct FuzzTests {
    /// 10,000 randomly mutated rule files: the compiler must report, never crash, and every diagnostic
    /// must point inside a file.
    @Test func tenThousandMutatedRuleFilesCrashNothing() throws {
        let pack = try loadPack()
        let ruleFiles = pack.files.filter { RuleCompiler.isRuleFile($0.relativePath) }
        let testFiles = pack.files.filter { RuleCompiler.isTestFile($0.relativePath) }
        var rng = SplitMix64(state: 0x5EED_0F_F022)
        var compiled = 0, rejected = 0
        for i in 0..<10_000 {
            let target = ruleFiles[i % ruleFiles.count]
            let mutated = RuleSources.File(path: target.path, relativePath: target.relativePath, text: Mutator.mutate(target.text, &rng))
            // The mutated file with what it may depend on: shared definitions and the calendar.
            let files = pack.files.filter {
                $0.path != target.path && ($0.relativePath.hasPrefix("calendars") || $0.relativePath == "definitions.yaml")
            } + [mutated]
            let result = RuleCompiler.compile(RuleSources(files: files))
            if result.ruleSet == nil { rejected += 1 } else { compiled += 1 }
            for d in result.diagnostics {
                #expect(d.location.line >= 1 && d.location.column >= 1, "mutation \(i): \(d)")
            }
            _ = result.report
            if i % 10 == 0 {
                let t = testFiles[(i / 10) % testFiles.count]
                _ = RuleTestReader.read(RuleSources.File(path: t.path, relativePath: t.relativePath, text: Mutator.mutate(t.text, &rng)))
            }
        }
        // Both outcomes must occur, or the mutations are not exercising anything.
        #expect(compiled > 100, "\(compiled) compiled")
        #expect(rejected > 1000, "\(rejected) rejected")
    }
}

@Suite struct PackTests {
    @Test func shippedPackHasExactlyTheRulesOfRulesMd() throws {
        let result = RuleCompiler.compile(try loadPack())
        #expect(result.errors.isEmpty, "\(result.report)")
        let ids = Set(result.ruleSet?.rules.map(\.id) ?? [])
        let expected: Set<String> = [
            "unchecked-adult-with-access", "non-mobile-infant-injury", "repeated-injury", "repeated-injury-critical",
            "unsuitable-explanation", "incomplete-medical-examination", "unscheduled-care-on-plan", "multi-agency-concerns",
            "evidence-not-shared", "investigation-handover-missing", "investigation-drift", "referral-decision-overdue",
            "assessment-overdue", "initial-conference-overdue", "core-group-overdue", "review-conference-overdue",
            "child-not-seen", "no-access-visits", "key-agencies-absent-from-conference", "legal-advice-not-acted-on",
            "six-month-change-window", "repeat-plan-missed-appointments",
        ]
        #expect(ids == expected)
        #expect(result.ruleSet?.rules.count == 22)
    }

    @Test func eventsVisitOnlyTheRulesThatCanReactToThem() throws {
        let set = try #require(RuleCompiler.compile(try loadPack()).ruleSet)
        let c = set.contract
        let byId = { (id: String) in set.rules.firstIndex { $0.id == id } ?? -1 }
        let injury = try #require(c.eventTypeIndex(named: "injury_observed"))
        let core = try #require(c.eventTypeIndex(named: "core_group"))
        #expect(set.dispatch[injury].immediates.contains(byId("unsuitable-explanation")))
        #expect(!set.dispatch[core].immediates.contains(byId("unsuitable-explanation")))
        #expect(set.dispatch[core].immediates.isEmpty)
        // A core group meets core-group-overdue; like any event with a date of birth it may cancel the
        // six-month timer; it concerns no other expectation.
        #expect(Set(set.dispatch[core].expectationChecks) == [byId("core-group-overdue"), byId("six-month-change-window")])
    }

    func versions(_ edit: (String) -> String, file: String = "injuries.yaml") throws -> (before: [String: String], after: [String: String]) {
        let pack = try loadPack()
        let edited = RuleSources(files: pack.files.map { f in
            f.relativePath == file ? RuleSources.File(path: f.path, relativePath: f.relativePath, text: edit(f.text)) : f
        })
        func v(_ s: RuleSources) -> [String: String] {
            Dictionary(uniqueKeysWithValues: (RuleCompiler.compile(s).ruleSet?.rules ?? []).map { ($0.id, $0.version) })
        }
        return (v(pack), v(edited))
    }

    @Test func ruleVersionIgnoresCommentsAndProse() throws {
        let (before, after) = try versions { text in
            "# a new comment\n" + text.replacingOccurrences(of: "title: Repeated injuries while on a plan", with: "title: Injuries, again")
                .replacingOccurrences(of: "  when: injury and on_plan and count(injury, 90 days) >= 2",
                                      with: "  when: >-\n    injury and on_plan\n    and count(injury, 90 days) >= 2  ")
        }
        #expect(before.count == 22)
        #expect(before == after)
    }

    @Test func ruleVersionChangesWithBehaviour() throws {
        let (before, after) = try versions { $0.replacingOccurrences(of: "count(injury, 90 days) >= 2", with: "count(injury, 91 days) >= 2") }
        #expect(before["repeated-injury"] != after["repeated-injury"])
        #expect(before["repeated-injury-critical"] == after["repeated-injury-critical"])
        let (b2, a2) = try versions({ $0.replacingOccurrences(of: "condition: type = injury_observed", with: "condition: type = injury_observed and data.count >= 1") },
                                    file: "definitions.yaml")
        #expect(b2["repeated-injury"] != a2["repeated-injury"], "a macro a rule uses is part of its meaning")
        #expect(b2["child-not-seen"] == a2["child-not-seen"])
        let (b3, a3) = try versions({ $0 + "2007-03-13,Extra holiday\n" }, file: "calendars/bank-holidays-england-and-wales.csv")
        #expect(b3["child-not-seen"] != a3["child-not-seen"], "the calendar a deadline counts on is part of its meaning")
        #expect(b3["unsuitable-explanation"] == a3["unsuitable-explanation"])
    }
}
