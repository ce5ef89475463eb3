import Foundation
import Logging
import Synchronization
import Testing
import VigilChaos
import VigilContract
import VigilEngine
import VigilKafka
import VigilTesting
import VigilRules
@testable import VigilService

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let rulesDir = repoRoot.appendingPathComponent("Rules").path
let scenarioPath = repoRoot.appendingPathComponent("scenarios/haringey-2006-2007.jsonl").path

let pack: CompiledRuleSet = {
    do {
        guard let set = try RuleDirectory.compile(rulesDir).ruleSet else { fatalError("the rule pack does not compile") }
        return set
    } catch { fatalError("\(error)") }
}()

/// The `vigil` executable built beside this test bundle.
let vigilBinary: String = {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("vigil").path
}()

func scenarioLines() throws -> [String] {
    try String(contentsOfFile: scenarioPath, encoding: .utf8).split(separator: "\n").map(String.init)
}

func generatedLines(children: Int, days: Int, seed: UInt64) -> [String] {
    var g = StreamGenerator(.init(children: children, days: days, seed: seed))
    var lines: [String] = []
    g.generate { lines.append($0) }
    return lines
}

/// Produces lines to a topic, keyed by child id (or by `key` when given), waiting for every delivery.
func produce(_ lines: [String], to topic: String, brokers: String, key: (@Sendable (String) -> [UInt8]?)? = nil) throws {
    try TopicIO.produce(lines, to: topic, brokers: brokers, keying: key.map { .custom($0) } ?? .childId, logger: quietLogger)
}

/// Every message on a topic, read from the beginning until nothing new arrives for `quietMs`.
func readTopic(_ topic: String, brokers: String, quietMs: Int = 1500, timeout: TimeInterval = 60) throws -> [(value: [UInt8], headers: [(String, [UInt8])])] {
    try TopicIO.read(topic, brokers: brokers, quietMs: quietMs, timeout: timeout, logger: quietLogger)
}

/// The ids of the alerts that stand in alert records (JSON) once withdrawals and re-raised revisions are
/// taken into account.
func standing(_ records: [[UInt8]]) -> Set<String> {
    var net = NetAlerts()
    for r in records { if let v = try? JSONValue.parse(r) { net.apply(record: v) } }
    return net.ids
}

func alertIds(_ jsons: [[UInt8]]) -> [String] {
    jsons.compactMap { (try? JSONValue.parse($0))?["alert_id"]?.stringValue }
}

/// Alert ids `vigil replay` gives for lines (in this order).
func replayIds(_ lines: [String], rules: CompiledRuleSet = pack) throws -> [String] {
    let path = TestDirectory.file("replay") + ".jsonl"
    try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: false, encoding: .utf8)
    defer { try? FileManager.default.removeItem(atPath: path) }
    var ids: [String] = []
    _ = try Replay(rules: rules).run(files: [path], onInvalid: { _ in }, onAlert: { ids.append($0.alertId) })
    return ids
}

func auditIds(_ path: String) throws -> [String] {
    var ids: [String] = []
    let verdict = try AuditLog.verify(path: path) { if $0.isAlert { ids.append($0.alertId) } }
    if case .bad(let line, let reason) = verdict { Issue.record("audit log broken at line \(line): \(reason)") }
    return ids
}

/// Runs a pipeline in this process on its own thread until caught up.
func runPipeline(_ config: PipelineConfig) throws -> PipelineSummary {
    let pipeline = Pipeline(config: config, rules: pack, logger: quietLogger)
    pipeline.stopWhenCaughtUp = true
    return try pipeline.run()
}

func pipelineConfig(brokers: String, dir: String) -> PipelineConfig {
    var c = PipelineConfig()
    c.brokers = brokers
    c.group = "g-\(UUID().uuidString.prefix(8))"
    c.auditFile = dir + "/audit.jsonl"
    c.rules = rulesDir
    c.clock = .event
    c.shards = 2
    c.kafkaConsumer = ["fetch.wait.max.ms=10"]
    return c
}

func tempDir() throws -> String {
    TestDirectory.make("it")
}

typealias Child = Subprocess

/// A rule added after the fact, for tests of rule changes: fires at every injury observed.
func anyInjuryRule(mode: String? = nil) -> String {
    """

    - rule: any-injury
      title: Any injury
      severity: low
      description: Any injury observed (a rule added after the fact).
      source: a test
    \(mode.map { "  mode: \($0)\n" } ?? "")  when: type = injury_observed
      output: "Injury to child {child.id}"

    """
}

/// The shipped pack with a new rule (`anyInjuryRule`) and a cosmetic change (the referral summary reworded): a
/// change whose union of alerts does not depend on where in the stream it is switched to.
func newRuleAndCosmeticChange() throws -> EditedPack {
    try EditedPack(rulesDir)
        .replacing("no decision by {deadline}", with: "still no decision by {deadline}", in: "timescales.yaml")
        .appending(anyInjuryRule(), to: "injuries.yaml")
}
