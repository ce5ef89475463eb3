import ArgumentParser
import Foundation
import VigilContract
import VigilEngine
import VigilRules
import VigilService
import VigilTesting

/// `vigil-bench reload`: a rule pack reload with many children in state, in the two steps `vigil run` takes:
/// from the signal to the switch (load the directory, compile, run the pack's rule tests: `RulePackCandidate`;
/// then the switch waits for the next epoch barrier, at most one batch), and from the switch to the last
/// re-derivation (every shard carries its children across, `Engine.switched`, in parallel). Two changes of the
/// 22-rule pack: a cosmetic one (a summary reworded) and a changed deadline (assessments due in 40 working days
/// instead of 45).
struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "reload", abstract: "Rule pack reload with many children in state.")

    @Option var rules = "Rules"
    @Option var children = 100_000
    @Option var events = 2_000_000
    @Option var shards = 2
    @Option var seed: UInt64 = 1

    /// The pack's assessment tests pin dates 45 working days on: a pack due in 40 drops them (a real change
    /// would rewrite them), so that it passes its checks.
    func withoutAssessmentTests(_ p: EditedPack) throws -> EditedPack {
        var p = p
        guard let text = p.files["tests/timescales.yaml"], let a = text.range(of: "# --- assessment-overdue"),
              let b = text.range(of: "# --- initial-conference-overdue") else { throw ValidationError("the timescale tests moved") }
        p.files["tests/timescales.yaml"] = String(text[..<a.lowerBound]) + String(text[b.lowerBound...])
        return p
    }

    func run() throws {
        let old = try compilePack(rules)
        let dir = NSTemporaryDirectory() + "vigil-bench-reload-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = try EditedPack(rules)
        let changes: [(String, EditedPack)] = [
            ("cosmetic (a summary reworded)", try base.replacing("no decision by {deadline}", with: "still no decision by {deadline}", in: "timescales.yaml")),
            ("changed deadline (assessment 45 -> 40 working days)", try withoutAssessmentTests(base.replacing("within: 45 working days", with: "within: 40 working days", in: "timescales.yaml"))),
        ]
        print("== rule pack reload: \(grouped(Double(children))) children, \(grouped(Double(events))) events, \(shards) shards")
        let input = EventBuffer.generate(children: children, events: events, seed: seed)
        var parts = [[Int]](repeating: [], count: shards)
        for i in 0..<input.count { parts[Int(input.childHash[i] % UInt64(shards))].append(i) }
        var engines: [Engine] = []
        for s in 0..<shards {
            var keep: Engine?
            _ = runEngine(input, indices: parts[s], rules: old, keep: &keep)
            if let e = keep { engines.append(e) }
        }
        let inState = engines.reduce(0) { $0 + $1.childCount }
        print("state: \(grouped(Double(inState))) children, \(grouped(Double(engines.reduce(0) { $0 + $1.approximateStateBytes }) / 1e6)) MB (engine estimate)")
        for (name, pack) in changes {
            let path = dir + "/" + String(name.prefix { $0 != " " })
            try pack.write(to: path)
            var accepted: CompiledRuleSet?
            let load = seconds {
                if case .accepted(let set) = RulePackCandidate.load(path) { accepted = set }
            }
            guard let new = accepted else { throw ValidationError("the \(name) pack was refused") }
            let change = PackChange(from: PackManifest(old), to: PackManifest(new))
            final class Box: @unchecked Sendable {
                var times = [Double](repeating: 0, count: 0)
                var stats: [EngineStats] = []
                let lock = NSLock()
            }
            let box = Box()
            box.times = [Double](repeating: 0, count: engines.count)
            box.stats = [EngineStats](repeating: EngineStats(), count: engines.count)
            let snapshot = engines
            let wall = seconds {
                DispatchQueue.concurrentPerform(iterations: snapshot.count) { s in
                    var alerts: [Alert] = []
                    var switched: Engine?
                    let t = seconds { switched = snapshot[s].switched(to: new, change: change, into: &alerts) }
                    box.lock.lock()
                    box.times[s] = t
                    box.stats[s] = switched?.stats ?? EngineStats()
                    box.lock.unlock()
                }
            }
            var rederived = 0, backfilled = 0
            for (s, st) in box.stats.enumerated() {
                rederived += st.rederived - snapshot[s].stats.rederived
                backfilled += st.backfilled - snapshot[s].stats.backfilled
            }
            print("\(name): signal to switch \(String(format: "%.2f", load)) s (load, compile, \(RuleTestSuite.run(try RuleDirectory.load(path), rules: new).results.count) rule tests); "
                  + "switch to last re-derivation \(String(format: "%.2f", wall)) s (shards \(box.times.map { String(format: "%.2f", $0) }.joined(separator: ", ")) s); "
                  + "\(grouped(Double(rederived))) children re-derived, \(backfilled) backfill alerts")
        }
    }
}
