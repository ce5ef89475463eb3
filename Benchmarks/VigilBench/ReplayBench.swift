import ArgumentParser
import Foundation
import VigilTesting

/// `vigil replay` of a generated file, as a backtest user runs it: wall time of the process, alerts written to a
/// file. The same input as `Benchmarks/replay.sh` (100k children, 170 days, seed 42: about 1.03M events).
struct ReplayBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "replay", abstract: "vigil replay of a generated file (wall time, median of 3).")
    @Option(help: "Rule pack.") var rules = "Rules"
    @Option(help: "The vigil binary.") var vigil = ".build/release/vigil"
    @Option(help: "A second vigil binary run alternately with --vigil on the same file.") var baseline: String?
    @Option(help: "Children.") var children = 100_000
    @Option(help: "Days.") var days = 170
    @Option(help: "Seed.") var seed: UInt64 = 42

    func run() throws {
        try ReplayBenchCommand.measure(vigil: vigil, rules: rules, children: children, days: days, seed: seed, baseline: baseline)
    }

    /// Returns the median events/s of `vigil`.
    @discardableResult
    static func measure(vigil: String, rules: String, children: Int, days: Int, seed: UInt64, baseline: String? = nil) throws -> Double {
        print("== vigil replay: \(grouped(Double(children))) children over \(days) days (seed \(seed)), alerts to a file")
        let dir = NSTemporaryDirectory() + "vigil-bench-replay-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let input = dir + "/events.jsonl"
        guard let out = OutputStream(toFileAtPath: input, append: false) else { throw ValidationError("cannot write \(input)") }
        out.open()
        var events = 0, bytes = 0
        var g = StreamGenerator(.init(children: children, days: days, seed: seed))
        var chunk: [UInt8] = []
        chunk.reserveCapacity(1 << 20)
        func flush() {
            chunk.withUnsafeBufferPointer { b in if let base = b.baseAddress, b.count > 0 { _ = out.write(base, maxLength: b.count) } }
            chunk.removeAll(keepingCapacity: true)
        }
        g.generate { line in
            events += 1
            bytes += line.utf8.count + 1
            chunk.append(contentsOf: line.utf8)
            chunk.append(0x0A)
            if chunk.count >= 1 << 20 { flush() }
        }
        flush()
        out.close()
        print("input: \(grouped(Double(events))) events, \(bytes / 1_048_576) MiB")
        func once(_ binary: String) throws -> (seconds: Double, alerts: Int) {
            let alerts = dir + "/alerts.jsonl"
            let s = try wallSeconds {
                let p = try Spawned(binary, ["replay", "--rules", rules, "--quiet", input], stdout: alerts)
                p.process.waitUntilExit()
                guard p.process.terminationStatus == 0 else { throw ValidationError("\(binary) replay exited \(p.process.terminationStatus)") }
            }
            let n = (FileManager.default.contents(atPath: alerts) ?? Data()).reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
            return (s, n)
        }
        var runs: [Double] = [], baselineRuns: [Double] = []
        var alerts = 0, baselineAlerts = 0
        for _ in 0..<3 {
            if let baseline {
                let b = try once(baseline)
                baselineRuns.append(b.seconds)
                baselineAlerts = b.alerts
            }
            let r = try once(vigil)
            runs.append(r.seconds)
            alerts = r.alerts
        }
        let rate = Double(events) / median(runs)
        print("| replay (median of 3) | seconds | events/s | alerts |")
        print("|---|---:|---:|---:|")
        print("| **vigil replay** | \(fmt(median(runs), 2)) | **\(grouped(rate))** | \(alerts) |")
        if let baseline {
            print("| vigil replay, baseline \(baseline) (runs alternating) | \(fmt(median(baselineRuns), 2)) | \(grouped(Double(events) / median(baselineRuns))) | \(baselineAlerts) |")
        }
        print("")
        return rate
    }
}
