import ArgumentParser
import Foundation
import VigilContract
import VigilEngine
import VigilRules
import VigilService

@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigil-bench",
        abstract: "Vigil's benchmark harness: engine only, end to end against the transport limit, and latency.",
        subcommands: [EngineCommand.self, ReplayBenchCommand.self, EndToEndCommand.self, SealingCommand.self, LatencyCommand.self, RestoreCommand.self, LateCommand.self, BoundsCommand.self, ReloadCommand.self, AllCommand.self, DecodeProbe.self, RestoreProbe.self]
    )
}

func compilePack(_ dir: String) throws -> CompiledRuleSet {
    let c = try RuleDirectory.compile(dir)
    guard let set = c.ruleSet else {
        print(c.report)
        throw ExitCode(1)
    }
    return set
}

func fmt(_ x: Double, _ digits: Int = 0) -> String { String(format: "%.\(digits)f", x) }
func grouped(_ x: Double) -> String {
    let n = Int(x.rounded())
    let s = String(n)
    var out = ""
    for (k, c) in s.reversed().enumerated() {
        if k > 0 && k % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return String(out.reversed())
}

struct EngineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "engine", abstract: "The compiled pack over generated streams: one thread, N shards, by rule kind, memory.")
    @Option(help: "Rule pack.") var rules = "Rules"
    @Option(help: "Events per stream (at least 2M for the recorded figures).") var events = 2_000_000
    @Option(help: "Children per stream (comma-separated).") var children = "100000,1000000"
    @Option(help: "Shards for the parallel figure.") var shards = 2
    @Option(help: "Seed.") var seed: UInt64 = 42

    func run() throws {
        let set = try compilePack(rules)
        for n in children.split(separator: ",").compactMap({ Int($0) }) {
            try EngineCommand.measure(set: set, children: n, events: events, shards: shards, seed: seed)
        }
    }

    /// The figures the targets are stated for.
    struct Figures { var oneThread = 0.0, shards = 0.0, statePerChild = 0.0, decodedPerSecond = 0.0 }

    @discardableResult
    static func measure(set: CompiledRuleSet, children n: Int, events: Int, shards: Int, seed: UInt64) throws -> Figures {
        print("== engine only: \(grouped(Double(n))) children, generating \(grouped(Double(events))) events (seed \(seed))")
        let input = EventBuffer.generate(children: n, events: events, seed: seed)
        print("input: \(grouped(Double(input.count))) events, \(input.bytes.count / 1_048_576) MiB")
        let decode = runDecode(input, rules: set)
        let handOff = runPackAndLoad(input, rules: set)
        let baseline = currentRSS()
        var engine: Engine?
        let full = runEngine(input, rules: set, keep: &engine)
        let after = currentRSS()
        let children = engine?.childCount ?? 0
        let parts = engine?.stateBytes ?? StateBytes()
        let stateBytes = parts.total
        // What a checkpoint and a restore do per child: the changelog's binary record, written and read back.
        let states = engine?.allChildren ?? []
        engine = nil
        let keys = PackKeys(set)
        var records: [[UInt8]] = []
        records.reserveCapacity(states.count)
        let encodeSeconds = seconds { for c in states { records.append(c.binary(keys: keys)) } }
        var decoded = 0
        let decodeSeconds = seconds { for r in records { if (try? ChildState(binary: r, keys: keys)) != nil { decoded += 1 } } }
        let recordBytes = records.reduce(0) { $0 + $1.count }
        let kinds: [(String, (CompiledRule) -> Bool)] = [
            ("no rules (decode, state, windows)", { _ in false }),
            ("immediate rules only", { $0.kind == "immediate" }),
            ("absence rules only", { $0.kind == "absence" }),
            ("timer rules only", { $0.kind == "timer" }),
        ]
        var rows: [(String, EngineResult)] = []
        for (name, keep) in kinds {
            var e: Engine?
            rows.append((name, runEngine(input, rules: set.restricted(to: keep), keep: &e)))
        }
        let parallel = runShards(input, shards: shards, rules: set)
        print("| measure | events/s | ns/event |")
        print("|---|---:|---:|")
        print("| decode and validate only | \(grouped(decode.eventsPerSecond)) | \(fmt(decode.nsPerEvent)) |")
        print("| decode, validate and pack for a shard (`vigil run`'s intake) | \(grouped(handOff.pack.eventsPerSecond)) | \(fmt(handOff.pack.nsPerEvent)) |")
        print("| read a packed event back (a shard, before evaluating it) | \(grouped(handOff.load.eventsPerSecond)) | \(fmt(handOff.load.nsPerEvent)) |")
        for (name, r) in rows { print("| \(name) | \(grouped(r.eventsPerSecond)) | \(fmt(r.nsPerEvent)) |") }
        print("| **full pack, 1 thread** | **\(grouped(full.eventsPerSecond))** | \(fmt(full.nsPerEvent)) |")
        print("| **full pack, \(shards) shards** | **\(grouped(parallel.eventsPerSecond))** | \(fmt(parallel.nsPerEvent)) |")
        print("alerts: \(full.alerts) (1 thread), \(parallel.alerts) (\(shards) shards)")
        print("changelog records (binary, one thread): \(grouped(Double(states.count))) children encoded in \(fmt(encodeSeconds, 3)) s (\(grouped(Double(states.count) / encodeSeconds))/s), \(grouped(Double(decoded))) decoded in \(fmt(decodeSeconds, 3)) s (\(grouped(Double(decoded) / decodeSeconds))/s); \(grouped(Double(recordBytes / max(states.count, 1)))) B a record")
        print("children: \(grouped(Double(children))); state (engine's estimate) \(grouped(Double(stateBytes / max(children, 1)))) B/child; RSS grew \(grouped(Double((after - baseline) / max(children, 1)))) B/child (\((after - baseline) / 1_048_576) MiB); process peak RSS \(peakRSS() / 1_048_576) MiB (input buffer included)")
        print("state by part, B/child: " + parts.parts.filter { $0.bytes > 0 }.sorted { $0.bytes > $1.bytes }
            .map { "\($0.name) \(fmt(Double($0.bytes) / Double(max(children, 1))))" }.joined(separator: ", "))
        print("")
        return Figures(oneThread: full.eventsPerSecond, shards: parallel.eventsPerSecond, statePerChild: Double(stateBytes) / Double(max(children, 1)),
                       decodedPerSecond: Double(decoded) / decodeSeconds)
    }
}

struct AllCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "all", abstract: "Every benchmark in one run.")
    @Option(help: "Rule pack.") var rules = "Rules"
    @Option(help: "The vigil binary for the end-to-end and latency runs.") var vigil = ".build/release/vigil"

    func run() throws {
        let set = try compilePack(rules)
        print("vigil-bench \(Date()) on \(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory / 1_073_741_824) GiB\n")
        var card = Scorecard()
        let dense = try EngineCommand.measure(set: set, children: 100_000, events: 2_000_000, shards: 2, seed: 42)
        let wide = try EngineCommand.measure(set: set, children: 1_000_000, events: 2_000_000, shards: 2, seed: 42)
        card.add("engine, full pack, 100k children, 1 thread", dense.oneThread, atLeast: 1_000_000, unit: "events/s")
        card.add("engine, full pack, 100k children, 2 shards", dense.shards, atLeast: 1_800_000, unit: "events/s")
        card.add("state per child, 1M-children stream", wide.statePerChild, atMost: 512, unit: "B")
        card.add("state per child, dense 100k-children stream", dense.statePerChild, atMost: 2048, unit: "B")
        card.add("vigil replay, 100k children (170 days)", try ReplayBenchCommand.measure(vigil: vigil, rules: rules, children: 100_000, days: 170, seed: 42),
                 atLeast: 700_000, unit: "events/s")
        let e2e = try EndToEndCommand.measure(vigil: vigil, rules: rules, events: 1_000_000, partitions: 128)
        card.add("end to end, share of kcat", 100 * e2e, atLeast: 50, unit: "%")
        let e2eDense = try EndToEndCommand.measure(vigil: vigil, rules: rules, events: 1_000_000, partitions: 128, dense: true)
        card.add("end to end, alert-dense stream, share of kcat", 100 * e2eDense, atLeast: 35, unit: "%")
        let late = try LateCommand.measure(rules: set, children: 2000, lengths: [50])
        if let l = late[50] { card.add("a late record's re-derivation, 50-event timeline", l, atMost: 20, unit: "µs") }
        try LatencyCommand.measure(vigil: vigil, rules: rules, rate: 20_000, seconds: 20, fetchWait: 10)
        try LatencyCommand.measure(vigil: vigil, rules: rules, rate: 1_000, seconds: 15, fetchWait: 2)
        let restore = try RestoreCommand.measure(vigil: vigil, rules: rules, children: 100_000, days: 200, partitions: 64)
        card.add("restore, children decoded per second", restore.childrenPerDecodeSecond, atLeast: 200_000, unit: "children/s")
        card.print()
    }
}

struct DecodeProbe: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "decode-probe", abstract: "Decode the same generated events repeatedly (for profiling the decoder).", shouldDisplay: false)
    @Option var rules = "Rules"
    @Option var events = 200_000
    @Option var rounds = 5
    func run() throws {
        let set = try compilePack(rules)
        let input = EventBuffer.generate(children: 10_000, events: events, seed: 1)
        var best = Double.infinity
        for _ in 0..<rounds { best = min(best, runDecode(input, rules: set).nsPerEvent) }
        print("decode: \(fmt(best)) ns/event (best of \(rounds))")
    }
}

struct RestoreProbe: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "restore-probe", abstract: "Decode changelog partitions as a restore does, in this process (for profiling a restore without a broker).", shouldDisplay: false)
    @Option var rules = "Rules"
    @Option var children = 100_000
    @Option var events = 1_000_000
    @Option var partitions = 64
    @Option var rounds = 3
    func run() throws {
        let set = try compilePack(rules)
        let input = EventBuffer.generate(children: children, events: events, seed: 1)
        var engine: Engine?
        _ = runEngine(input, rules: set, keep: &engine)
        let pack = StatePack(set)
        var records: [Int32: [Checkpoint.Record]] = [:]
        for (i, child) in (engine?.allChildren ?? []).enumerated() {
            let p = Int32(i % partitions)
            records[p, default: []].append(Checkpoint.childRecord(child, checkpoint: 1, next: 1, pack: pack))
        }
        for p in 0..<Int32(partitions) {
            records[p, default: []].append(Checkpoint.marker(partition: p, checkpoint: 1, offset: 1, clock: .now, rulesDigest: pack.digest))
        }
        engine = nil
        let all = Array(0..<Int32(partitions))
        for _ in 0..<rounds {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let restored = try Checkpoint.restore(partitions: all, records: records, pack: StatePack(set)).values.reduce(0) { $0 + $1.children.count }
            let took = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            print("restored \(grouped(Double(restored))) children in \(fmt(took, 3)) s: \(grouped(Double(restored) / took)) children/s")
        }
    }
}

/// The targets beside what this run measured. The ratio is the share of the target reached: measured/target
/// where more is better, target/measured where less is; 1.00 or more meets it.
struct Scorecard {
    struct Row { let name: String; let measured: Double; let target: Double; let higherIsBetter: Bool; let unit: String }
    var rows: [Row] = []

    mutating func add(_ name: String, _ measured: Double, atLeast target: Double, unit: String) {
        rows.append(Row(name: name, measured: measured, target: target, higherIsBetter: true, unit: unit))
    }
    mutating func add(_ name: String, _ measured: Double, atMost target: Double, unit: String) {
        rows.append(Row(name: name, measured: measured, target: target, higherIsBetter: false, unit: unit))
    }

    func print() {
        Swift.print("== against the targets (ratio: share of the target reached; 1.00 or more meets it)")
        Swift.print("| figure | measured | target | ratio | verdict |")
        Swift.print("|---|---:|---:|---:|---|")
        for r in rows {
            let ratio = r.higherIsBetter ? r.measured / r.target : r.target / r.measured
            let digits = r.measured < 100 ? 1 : 0
            let measured = digits == 0 ? grouped(r.measured) : fmt(r.measured, digits)
            let target = (r.higherIsBetter ? "≥ " : "≤ ") + (r.target < 100 ? fmt(r.target, 0) : grouped(r.target))
            let verdict = ratio.isNaN ? "not measured" : ratio >= 1 ? "met" : "missed by \(fmt(1 / ratio, 1))×"
            Swift.print("| \(r.name) | \(measured) \(r.unit) | \(target) \(r.unit) | \(fmt(ratio, 2)) | \(verdict) |")
        }
        Swift.print("")
    }
}
