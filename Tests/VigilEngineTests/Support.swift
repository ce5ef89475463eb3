import Foundation
import Testing
import VigilContract
@testable import VigilEngine
import VigilRules
import VigilService
import VigilTesting

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let rulesDir = repoRoot.appendingPathComponent("Rules").path
let scenarioPath = repoRoot.appendingPathComponent("scenarios/haringey-2006-2007.jsonl").path

/// The shipped pack, compiled once.
let pack: CompiledRuleSet = {
    do {
        guard let set = try RuleDirectory.compile(rulesDir).ruleSet else { fatalError("the shipped rule pack does not compile") }
        return set
    } catch {
        fatalError("\(error)")
    }
}()

/// What RULES.md says the scenario raises, (rule id, fired_at).
let haringeyExpected: [(String, String)] = [
    ("unsuitable-explanation", "2006-10-13T10:00:00Z"),
    ("unsuitable-explanation", "2006-12-11T10:00:00Z"),
    ("key-agencies-absent-from-conference", "2006-12-22T10:00:00Z"),
    ("investigation-drift", "2007-01-13T00:00:00Z"),
    ("legal-advice-not-acted-on", "2007-02-03T00:00:00Z"),
    ("child-not-seen", "2007-02-06T00:00:00Z"),
    ("child-not-seen", "2007-03-13T00:00:00Z"),
    ("evidence-not-shared", "2007-03-14T00:00:00Z"),
    ("unchecked-adult-with-access", "2007-03-14T00:00:00Z"),
    ("investigation-handover-missing", "2007-03-19T10:00:00Z"),
    ("review-conference-overdue", "2007-03-23T00:00:00Z"),
    ("unscheduled-care-on-plan", "2007-04-09T10:00:00Z"),
    ("repeated-injury-critical", "2007-04-09T11:00:00Z"),
    ("unsuitable-explanation", "2007-04-09T11:00:00Z"),
    ("child-not-seen", "2007-04-11T23:00:00Z"),
    ("investigation-drift", "2007-04-18T23:00:00Z"),
    ("child-not-seen", "2007-05-08T23:00:00Z"),
    ("repeated-injury", "2007-06-01T10:00:00Z"),
    ("repeated-injury-critical", "2007-06-01T10:00:00Z"),
    ("unsuitable-explanation", "2007-06-01T10:00:00Z"),
    ("multi-agency-concerns", "2007-06-01T14:00:00Z"),
    ("unscheduled-care-on-plan", "2007-06-01T14:00:00Z"),
    ("unchecked-adult-with-access", "2007-06-19T23:00:00Z"),
    ("key-agencies-absent-from-conference", "2007-07-02T10:00:00Z"),
    ("unchecked-adult-with-access", "2007-07-02T23:00:00Z"),
    ("investigation-drift", "2007-07-04T23:00:00Z"),
    ("incomplete-medical-examination", "2007-07-26T10:00:00Z"),
    ("incomplete-medical-examination", "2007-08-01T10:00:00Z"),
]

func sortedPairs(_ pairs: [(String, String)]) -> [String] { pairs.map { "\($0.0) \($0.1)" }.sorted() }

/// Replays files through the library (as `vigil replay` does: reading them once when they are in time order) and
/// collects alerts and invalid lines.
func replay(_ files: [String], until: Instant? = nil, rules: CompiledRuleSet = pack) throws -> (alerts: [Alert], invalid: [Replay.InvalidLine], summary: Replay.Summary) {
    var alerts: [Alert] = []
    var invalid: [Replay.InvalidLine] = []
    let summary = try Replay(rules: rules).run(files: files, until: until, onInvalid: { invalid.append($0) }, onAlert: { alerts.append($0) },
                                              onRewind: { alerts.removeAll() })
    return (alerts, invalid, summary)
}

func pairs(_ alerts: [Alert], _ rules: CompiledRuleSet = pack) -> [(String, String)] {
    alerts.map { (rules.rules[$0.ruleIndex].id, $0.firedAt.description) }
}

/// A temporary file with the given lines, removed at the end of the process.
func tempFile(_ lines: [String], name: String = UUID().uuidString) -> String {
    let path = TestDirectory.file("test-\(name)") + ".jsonl"
    precondition(FileManager.default.createFile(atPath: path, contents: Data((lines.joined(separator: "\n") + "\n").utf8)), "could not write \(path)")
    return path
}

func scenarioLines() throws -> [String] {
    try String(contentsOfFile: scenarioPath, encoding: .utf8).split(separator: "\n").map(String.init)
}

/// Why an emitted alert does not satisfy `alert.schema.json` (compiled with Vigil's own schema compiler).
func alertSchemaFailure(_ json: String) -> ValidationFailure? {
    AlertSchema.failure(Array(json.utf8))
}

/// A generated stream (event-time order), with more risk and plans than the default so that every class
/// of rule has something to say.
func generatedEventLines(children: Int, days: Int, seed: UInt64) -> [String] {
    var g = StreamGenerator(.init(children: children, days: days, seed: seed, riskRate: 0.3, planRate: 0.4))
    var lines: [String] = []
    g.generate { lines.append($0) }
    return lines
}
