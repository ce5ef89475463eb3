import ArgumentParser
import Foundation
import VigilContract
import VigilService
import VigilTesting

/// The cost of sealing the audit log, end to end, on an alert-dense stream: `vigil run` unsealed, sealed with
/// the defaults, and sealed every 100 records, taking turns on the same preloaded topic.
struct SealingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sealing", abstract: "vigil run with and without a sealed audit log, on an alert-dense stream.")
    @Option var rules = "Rules"
    @Option var vigil = ".build/release/vigil"
    @Option var events = 1_000_000
    @Option(help: "One event in this many is an injury with an implausible explanation (an immediate alert).") var alertEvery = 10
    @Option var partitions = 128
    @Option var rounds = 3
    func run() throws { try Self.measure(vigil: vigil, rules: rules, events: events, alertEvery: alertEvery, partitions: partitions, rounds: rounds) }

    /// A generated stream with one event in `every` replaced by an implausibly explained injury of the same
    /// child at the same instant (so the stream stays in event-time order).
    static func alertDense(events: Int, every: Int) -> [String] {
        var lines: [String] = []
        var g = StreamGenerator(.init(children: max(1000, events / 20), days: 400, seed: 7))
        g.generate { line in
            guard lines.count < events else { return }
            if lines.count % every == every - 1, let v = try? JSONValue.parse(line), let child = v["child"]?["id"]?.stringValue,
               let at = v["occurred_at"]?.stringValue {
                lines.append(#"{"schema_version":1,"event_id":"dense-\#(lines.count)","type":"injury_observed","occurred_at":"\#(at)","agency":"gp","child":{"id":"\#(child)","mobility":"mobile"},"data":{"injury":"bruise","sites":["arm"],"count":1,"explanation_assessment":"implausible"}}"#)
            } else {
                lines.append(line)
            }
        }
        return lines
    }

    static func measure(vigil: String, rules: String, events: Int, alertEvery: Int, partitions: Int, rounds: Int) throws {
        let variants: [(name: String, args: [String])] = [
            ("unsealed", []),
            ("sealed (defaults: every 10,000 records or 10 s; heads to a topic and a file)", ["--audit-seal-every", "10000"]),
            ("sealed every 100 records", ["--audit-seal-every", "100"]),
        ]
        print("== sealing: \(grouped(Double(events))) events, 1 in \(alertEvery) an immediate alert, over \(partitions) partitions; `vigil broker` in a separate process")
        let changelogs = (0..<(rounds * variants.count)).map { "changelog-\($0)" }
        let topics = ["agency-events", "vigil-alerts", "vigil-dead-letters", "vigil-audit-heads"] + changelogs
        let broker = try Spawned(vigil, ["broker", "--partitions", String(partitions)] + topics.flatMap { ["--topic", $0] })
        defer { broker.stop() }
        guard let address = broker.firstLine(timeout: 20) else { throw ValidationError("vigil broker printed no address") }
        var lines = alertDense(events: events, every: alertEvery)
        let produced = try preload(lines, topic: "agency-events", brokers: address)
        lines = []
        var seconds = Array(repeating: [Double](), count: variants.count)
        var alerts = 0
        var seals = Array(repeating: 0, count: variants.count)
        var run = 0
        for _ in 0..<rounds {
            for (v, variant) in variants.enumerated() {
                let dir = NSTemporaryDirectory() + "vigil-bench-\(UUID().uuidString)"
                let keys = dir + "-key"
                for d in [dir, keys] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]) }
                defer { for d in [dir, keys] { try? FileManager.default.removeItem(atPath: d) } }
                var args = ["run", "--brokers", address, "--group", "seal-\(run)-\(UUID().uuidString)", "--rules", rules,
                            "--changelog-topic", changelogs[run], "--audit-file", dir + "/audit.jsonl", "--clock", "event",
                            "--exit-when-caught-up", "--stats-file", dir + "/stats.json", "--log-level", "error", "-X", "fetch.wait.max.ms=10"]
                if !variant.args.isEmpty {
                    _ = try AuditKeyFile.generate(path: keys + "/audit.key")
                    args += ["--audit-key", keys + "/audit.key", "--audit-anchor-file", keys + "/heads.jsonl"] + variant.args
                }
                run += 1
                let p = try Spawned(vigil, args, stdout: "/dev/null")
                p.process.waitUntilExit()
                guard let data = FileManager.default.contents(atPath: dir + "/stats.json"), let s = try? JSONValue.parse([UInt8](data)),
                      let a = s["first_message_at_us"]?.intValue, let b = s["last_durable_at_us"]?.intValue, let ev = s["events"]?.intValue,
                      Int(ev) == produced else {
                    throw ValidationError("\(variant.name): vigil run (exit \(p.process.terminationStatus)) wrote no usable stats")
                }
                seconds[v].append(Double(b - a) / 1e6)
                alerts = Int(s["alerts"]?.intValue ?? 0)
                seals[v] = Int(s["audit_seals"]?.intValue ?? 0)
            }
        }
        let base = Double(produced) / median(seconds[0])
        print("| vigil run (median of \(rounds), variants taking turns) | seconds | events/s | seals | vs unsealed |")
        print("|---|---:|---:|---:|---:|")
        for (v, variant) in variants.enumerated() {
            let r = Double(produced) / median(seconds[v])
            print("| \(variant.name) | \(fmt(median(seconds[v]), 2)) | \(grouped(r)) | \(seals[v]) | \(fmt(100 * r / base - 100, 1))% |")
        }
        print("\(grouped(Double(alerts))) alerts per run (each appended to the audit log and produced to the alerts topic)")
        print("")
    }
}
