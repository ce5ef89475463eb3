import ArgumentParser
import Foundation
import VigilChaos
import VigilContract
import VigilService
import VigilTesting

/// Restore time after a SIGKILL: `vigil run` works through a stream of many children, checkpoints, is killed
/// with SIGKILL, and is started again; the restarted process logs how long reading its partitions' state back
/// from the changelog took ("restored N partitions in X s: ..., K children").
struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "restore", abstract: "Restore time of state from the changelog after a SIGKILL.")
    @Option var rules = "Rules"
    @Option var vigil = ".build/release/vigil"
    @Option(help: "Children in the generated stream (those with an event in the period have state).") var children = 100_000
    @Option(help: "Days of events (about 22 events per child-year).") var days = 200
    @Option(help: "Partitions: enough that ~5 MiB per partition holds the stream and the changelog.") var partitions = 64
    func run() throws { try RestoreCommand.measure(vigil: vigil, rules: rules, children: children, days: days, partitions: partitions) }

    struct Figures { var restored = 0; var seconds = 0.0; var decodeSeconds = Double.nan
        var childrenPerDecodeSecond: Double { Double(restored) / decodeSeconds }
    }

    @discardableResult
    static func measure(vigil: String, rules: String, children: Int, days: Int, partitions: Int) throws -> Figures {
        print("== restore after SIGKILL: \(grouped(Double(children))) children over \(days) days, \(partitions) partitions; `vigil broker` in a separate process")
        let broker = try Subprocess(vigil, ["broker", "--partitions", String(partitions)])
        defer { broker.signal(SIGTERM); _ = broker.wait(timeout: 10) }
        guard Subprocess.until(timeout: 20, { !broker.stdout.isEmpty }), let address = broker.stdout.first else {
            throw ValidationError("vigil broker printed no address")
        }
        var lines: [String] = []
        // Ending today: the instance runs on the wall clock, and children idle for longer than the rules'
        // horizon would be evicted (nothing about them can matter any more) and not restored at all.
        let today = Day(number: Int32(Instant.now.micros / Instant.microsPerDay))
        var g = StreamGenerator(.init(children: children, days: days, seed: 11, start: Day(number: today.number - Int32(days))))
        g.generate { lines.append($0) }
        let bytes = lines.reduce(0) { $0 + $1.utf8.count }
        try TopicIO.produce(lines, to: "agency-events", brokers: address, keying: .childId,
                            properties: [("compression.type", "lz4"), ("linger.ms", "20")], logger: benchLogger)
        print("produced \(grouped(Double(lines.count))) events, \(bytes / 1_048_576) MiB of JSON (lz4 on the wire and in the broker, under its ~5 MiB per-partition cap)")
        lines = []
        let dir = NSTemporaryDirectory() + "vigil-bench-restore-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A short session, so the group gives the killed member's partitions to the restarted one in seconds.
        let config = dir + "/restore.yaml"
        try "kafka-consumer:\n  session.timeout.ms: 6000\n  heartbeat.interval.ms: 500\n  fetch.wait.max.ms: 10\n".write(toFile: config, atomically: true, encoding: .utf8)
        let args = ["run", "--config", config, "--brokers", address, "--group", "bench-restore", "--rules", rules,
                    "--audit-file", dir + "/audit.jsonl", "--clock", "wall", "--checkpoint-interval-ms", "15000"]

        // First run: read everything, let a checkpoint follow, then SIGKILL.
        let first = try Subprocess(vigil, args)
        let started = Date()
        guard Subprocess.until(timeout: 600, { first.stderr.contains { $0.contains("caught up with every assigned partition") } }) else {
            first.signal(SIGKILL)
            throw ValidationError("the first run did not catch up in 600 s: \(first.stderr.suffix(3))")
        }
        let caughtUp = Date().timeIntervalSince(started)
        // The embedded broker does not compact: every checkpoint adds a record per changed child, so checkpoints
        // are kept few (15 s apart) to keep the changelog under its retention; one follows the catch-up.
        Thread.sleep(forTimeInterval: 17)
        first.signal(SIGKILL)
        _ = first.wait(timeout: 10)
        print("first run caught up in \(fmt(caughtUp, 1)) s (from process start, including the 3 s group join), then SIGKILL 17 s later")
        let truncated = try TopicIO.truncatedPartitions(["agency-events", "vigil-changelog"], brokers: address, logger: benchLogger)
        guard truncated.isEmpty else { throw ValidationError("the broker's retention dropped data (\(truncated)): use more partitions") }

        // Second run: how long the restore takes.
        let second = try Subprocess(vigil, args)
        let restartedAt = Date()
        guard Subprocess.until(timeout: 600, { second.stderr.contains { $0.contains("restored ") && $0.contains(" partitions in ") } }),
              let line = second.stderr.first(where: { $0.contains("restored ") && $0.contains(" partitions in ") }) else {
            second.signal(SIGKILL)
            throw ValidationError("the second run logged no restore: \(second.stderr.suffix(3))")
        }
        let seen = Date().timeIntervalSince(restartedAt)
        second.signal(SIGTERM)
        _ = second.wait(timeout: 60)
        // "restored 32 partitions in 1.23 s: 0@123 (checkpoint 4, 3125 children), ..."
        let seconds = line.components(separatedBy: " partitions in ").last?.split(separator: " ").first.flatMap { Double($0) } ?? .nan
        var restored = 0
        for part in line.components(separatedBy: "checkpoint ").dropFirst() {
            if let n = part.split(separator: ",").dropFirst().first?.split(separator: " ").first.flatMap({ Int($0) }) { restored += n }
        }
        if let open = line.range(of: " s ("), let close = line.range(of: "):", range: open.upperBound..<line.endIndex) {
            print("vigil's breakdown: \(line[open.upperBound..<close.lowerBound])")
        }
        print("| restore after SIGKILL | children restored | seconds (vigil's log) | from restart to that log line |")
        print("|---|---:|---:|---:|")
        print("| \(partitions) changelog partitions read back, one instance | \(grouped(Double(restored))) | **\(fmt(seconds, 2))** | \(fmt(seen, 1)) s (the killed member's 6 s session expiring, the rebalance, the restore) |")
        // "(R changelog records: read A s, decoded B s)"
        let decoded = line.components(separatedBy: "decoded ").dropFirst().first?.split(separator: " ").first.flatMap { Double($0) } ?? .nan
        print("children decoded per second: \(decoded.isNaN ? "not logged" : grouped(Double(restored) / decoded))")
        print("")
        return Figures(restored: restored, seconds: seconds, decodeSeconds: decoded)
    }
}
