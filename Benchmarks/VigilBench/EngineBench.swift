import Foundation
import VigilContract
import VigilEngine
import VigilRules
import VigilService
import VigilTesting

/// Events held in one contiguous buffer, so the input costs no allocation per event while measuring.
struct EventBuffer {
    var bytes: [UInt8] = []
    var starts: [Int] = []
    var ends: [Int] = []
    var childHash: [UInt64] = []

    var count: Int { starts.count }

    static func generate(children: Int, events: Int, seed: UInt64) -> EventBuffer {
        var b = EventBuffer()
        b.bytes.reserveCapacity(events * 340)
        // Enough days to reach `events` at the generator's default rates (~0.06 events per child-day).
        let days = max(30, Int(Double(events) / Double(children) / 0.058) + 10)
        var g = StreamGenerator(.init(children: children, days: days, seed: seed))
        let decoder = EventDecoder(contract: .embedded, slots: [])
        var record = decoder.makeRecord()
        g.generate { line in
            guard b.count < events else { return }
            let start = b.bytes.count
            b.bytes.append(contentsOf: line.utf8)
            b.starts.append(start)
            b.ends.append(b.bytes.count)
            _ = decoder.decode(line, into: &record)
            b.childHash.append(stableHash(record[decoder.contract.childIdSlot].string ?? ""))
        }
        return b
    }

    func withEvent<R>(_ i: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        bytes.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[starts[i]..<ends[i]])) }
    }
}

/// Resident set size of this process now, in bytes (from /proc/self/statm).
func currentRSS() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

func peakRSS() -> Int {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return u.ru_maxrss * 1024
}

func seconds(_ body: () -> Void) -> Double {
    let t0 = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
}

struct EngineResult {
    var events = 0
    var seconds = 0.0
    var alerts = 0
    var stateBytes = 0
    var children = 0
    var eventsPerSecond: Double { Double(events) / seconds }
    var nsPerEvent: Double { seconds * 1e9 / Double(events) }
}

/// Decode and evaluate every event of `indices` (in order) through one engine, as a shard would.
func runEngine(_ input: EventBuffer, indices: [Int]? = nil, rules: CompiledRuleSet, keep: inout Engine?) -> EngineResult {
    let decoder = EventDecoder(contract: rules.contract, slots: Engine.decodedSlots(rules))
    var record = decoder.makeRecord()
    var engine = Engine(rules: rules)
    var alerts: [Alert] = []
    alerts.reserveCapacity(1024)
    var alertCount = 0
    let slot = rules.contract.occurredAtSlot
    let order = indices ?? Array(0..<input.count)
    let prefetch = ProcessInfo.processInfo.environment["VIGIL_BENCH_NO_PREFETCH"] == nil
    // Each event at its place on a topic of 128 partitions keyed by child, as `vigil run` gives it (a
    // timeline event keeps its position).
    let topic = SourcePosition(topic: "events", partition: 0, offset: 0)
    var offsets = [Int64](repeating: 0, count: 128)
    let t = seconds {
        for (k, i) in order.enumerated() {
            // The child id hashes of the events ahead are known (as a shard knows them from intake).
            if prefetch { engine.prefetch { d in k + d < order.count ? input.childHash[order[k + d]] : nil } }
            let failed = input.withEvent(i) { decoder.decode($0, into: &record) }
            guard failed == nil else { continue }
            if case .instant(let at) = record[slot] { engine.advance(to: at, into: &alerts) }
            let partition = Int(input.childHash[i] % 128)
            offsets[partition] += 1
            engine.process(record, position: SourcePosition(topicOf: topic, partition: Int32(partition), offset: offsets[partition]),
                           childHash: input.childHash[i], into: &alerts)
            if alerts.count > 512 {
                alertCount += alerts.count
                alerts.removeAll(keepingCapacity: true)
            }
        }
    }
    alertCount += alerts.count
    let r = EngineResult(events: order.count, seconds: t, alerts: alertCount, stateBytes: engine.approximateStateBytes, children: engine.childCount)
    keep = engine
    return r
}

/// Decode only (full contract validation, capturing the slots the pack reads).
func runDecode(_ input: EventBuffer, rules: CompiledRuleSet) -> EngineResult {
    let decoder = EventDecoder(contract: rules.contract, slots: Engine.decodedSlots(rules))
    var record = decoder.makeRecord()
    var bad = 0
    let t = seconds {
        for i in 0..<input.count where input.withEvent(i, { decoder.decode($0, into: &record) }) != nil { bad += 1 }
    }
    precondition(bad == 0, "generated events must be valid")
    return EngineResult(events: input.count, seconds: t)
}

/// What `vigil run` does to hand an event from intake to a shard: decode and pack every event (intake), then
/// read them all back (a shard). Returns both passes' figures.
func runPackAndLoad(_ input: EventBuffer, rules: CompiledRuleSet) -> (pack: EngineResult, load: EngineResult) {
    let decoder = EventDecoder(contract: rules.contract, slots: Engine.decodedSlots(rules))
    var record = decoder.makeRecord()
    var packed = PackedEvents()
    let tPack = seconds {
        for i in 0..<input.count where input.withEvent(i, { decoder.decode($0, into: &record) }) == nil { packed.append(record) }
    }
    precondition(packed.count == input.count, "generated events must be valid")
    var read = 0
    var at = 0
    let tLoad = seconds { while packed.load(&at, into: &record) { read += 1 } }
    precondition(read == input.count, "every packed event reads back")
    return (EngineResult(events: input.count, seconds: tPack), EngineResult(events: input.count, seconds: tLoad))
}

/// N engines on N threads, children split by hash: aggregate throughput over the slowest shard's wall time.
func runShards(_ input: EventBuffer, shards n: Int, rules: CompiledRuleSet) -> EngineResult {
    var parts = [[Int]](repeating: [], count: n)
    for i in 0..<input.count { parts[Int(input.childHash[i] % UInt64(n))].append(i) }
    final class Collected: @unchecked Sendable {
        let lock = NSLock()
        var results: [EngineResult] = []
        func add(_ r: EngineResult) { lock.lock(); results.append(r); lock.unlock() }
    }
    let collected = Collected()
    let group = DispatchGroup()
    let start = DispatchSemaphore(value: 0)
    var threads: [Thread] = []
    for s in 0..<n {
        group.enter()
        let mine = parts[s]
        let t = Thread {
            start.wait()
            var keep: Engine?
            collected.add(runEngine(input, indices: mine, rules: rules, keep: &keep))
            group.leave()
        }
        threads.append(t)
        t.start()
    }
    let wall = seconds {
        for _ in 0..<n { start.signal() }
        group.wait()
    }
    let per = collected.results
    return EngineResult(events: input.count, seconds: wall, alerts: per.reduce(0) { $0 + $1.alerts },
                        stateBytes: per.reduce(0) { $0 + $1.stateBytes }, children: per.reduce(0) { $0 + $1.children })
}
