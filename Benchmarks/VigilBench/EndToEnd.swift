import ArgumentParser
import Foundation
import Histogram
import Logging
import Synchronization
import VigilContract
import VigilKafka
import VigilService
import VigilTesting

let benchLogger: Logger = {
    var l = Logger(label: "vigil-bench")
    l.logLevel = .error
    return l
}()

/// A child process, its standard output collected.
final class Spawned: @unchecked Sendable {
    let process = Process()
    let pipe = Pipe()
    private let lock = NSLock()
    private var text = ""

    init(_ executable: String, _ arguments: [String], stdout: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let stdout {
            _ = FileManager.default.createFile(atPath: stdout, contents: nil)
            process.standardOutput = FileHandle(forWritingAtPath: stdout)
        } else {
            process.standardOutput = pipe
            pipe.fileHandleForReading.readabilityHandler = { [weak self] h in
                let d = h.availableData
                guard !d.isEmpty else { h.readabilityHandler = nil; return }
                self?.lock.lock()
                self?.text += String(decoding: d, as: UTF8.self)
                self?.lock.unlock()
            }
        }
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
    }

    var output: String { lock.lock(); defer { lock.unlock() }; return text }

    func firstLine(timeout: TimeInterval) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let nl = output.firstIndex(of: "\n") { return String(output[..<nl]) }
            usleep(20_000)
        }
        return nil
    }

    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}

func wallSeconds(_ body: () throws -> Void) rethrows -> Double {
    let t0 = Date()
    try body()
    return Date().timeIntervalSince(t0)
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

/// Generated events produced to a topic, keyed by child id; returns how many.
func preload(_ lines: [String], topic: String, brokers: String) throws -> Int {
    let delivered = Atomic<Int>(0)
    var cfg = KafkaConfig(bootstrapServers: brokers)
    cfg.set("linger.ms", "20")
    cfg.set("batch.num.messages", "10000")
    let producer = try KafkaProducer(config: cfg, logger: benchLogger) { _, e in if e == nil { delivered.add(1, ordering: .relaxed) } }
    for (i, line) in lines.enumerated() {
        let child = line.range(of: #""child":{"id":""#).flatMap { r -> String? in
            let rest = line[r.upperBound...]
            return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
        }
        try producer.produce(topic: topic, key: child.map { Array($0.utf8) }, value: Array(line.utf8), token: UInt64(i + 1))
        if i % 10_000 == 0 { producer.poll() }
    }
    _ = producer.flush(timeoutMs: 120_000)
    return delivered.load(ordering: .relaxed)
}

struct EndToEndCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "e2e", abstract: "vigil run over the embedded broker against kcat and a no-op consumer of VigilKafka.")
    @Option var rules = "Rules"
    @Option var vigil = ".build/release/vigil"
    @Option var events = 1_000_000
    @Option(help: "Partitions: enough that ~5 MiB per partition holds the stream.") var partitions = 128
    @Option(help: "Another vigil binary (an earlier build) to run alternately with --vigil on the same preloaded topic.")
    var baseline: String?
    @Flag(help: "Run --vigil alternately with --http 127.0.0.1:0 (metrics recorded and served) and without (the baseline).")
    var metrics = false
    @Flag(help: "The alert-dense stream (vigil generate --alert-dense: about one event in twelve raises an alert) instead of the usual one.")
    var dense = false
    func run() throws {
        try EndToEndCommand.measure(vigil: vigil, rules: rules, events: events, partitions: partitions, baseline: metrics ? vigil : baseline,
                                    arguments: metrics ? ["--http", "127.0.0.1:0"] : [], dense: dense)
    }

    /// `arguments` go to --vigil's runs only (not the baseline's). Returns vigil run's rate as a share of kcat's.
    @discardableResult
    static func measure(vigil: String, rules: String, events: Int, partitions: Int, baseline: String? = nil, arguments: [String] = [],
                        dense: Bool = false) throws -> Double {
        print("== end to end: \(grouped(Double(events))) events over \(partitions) partitions\(dense ? ", alert-dense stream" : ""); `vigil broker` in a separate process")
        // Each run gets a changelog of its own: a run restoring the state another run checkpointed would start
        // at the end of the input.
        let changelogs = (0..<6).map { "changelog-\($0)" }
        let topics = ["agency-events", "vigil-alerts", "vigil-dead-letters"] + changelogs
        let broker = try Spawned(vigil, ["broker", "--partitions", String(partitions)] + topics.flatMap { ["--topic", $0] })
        defer { broker.stop() }
        guard let address = broker.firstLine(timeout: 20) else { throw ValidationError("vigil broker printed no address") }
        var lines: [String] = []
        // The dense stream has fewer events a child (routine contacts at a fifth of the rate).
        var g = StreamGenerator(dense ? .alertDense(children: max(1000, events / 8), days: 400, seed: 7)
                                      : .init(children: max(1000, events / 20), days: 400, seed: 7))
        g.generate { if lines.count < events { lines.append($0) } }
        let bytes = lines.reduce(0) { $0 + $1.utf8.count }
        let produced = try preload(lines, topic: "agency-events", brokers: address)
        lines = []
        print("preloaded \(grouped(Double(produced))) events, \(bytes / 1_048_576) MiB (~\(bytes / partitions / 1024) KiB per partition, under the broker's ~5 MiB cap)")

        // kcat, raw, to /dev/null.
        var kcat: [Double] = []
        for _ in 0..<3 {
            kcat.append(try wallSeconds {
                let p = try Spawned("/usr/bin/kcat", ["-C", "-b", address, "-t", "agency-events", "-o", "beginning", "-e", "-q"], stdout: "/dev/null")
                p.process.waitUntilExit()
            })
        }
        // A no-op consumer of VigilKafka: batch poll, count, nothing else.
        var noop: [Double] = []
        var counted = 0
        for _ in 0..<3 {
            var c = KafkaConfig(bootstrapServers: address)
            c.set("group.id", "noop-\(UUID().uuidString)")
            c.set("enable.auto.commit", "false")
            c.set("fetch.wait.max.ms", "10")
            c.set("enable.partition.eof", "true")
            let consumer = try KafkaConsumer(config: c, logger: benchLogger)
            try consumer.assign((0..<Int32(partitions)).map { (TopicPartition("agency-events", $0), KafkaOffset.beginning) })
            var n = 0
            var eof = Set<Int32>()
            var first: Date?
            var last = Date()
            while eof.count < partitions {
                let batch = consumer.poll(max: 4096, timeoutMs: 100)
                for m in batch.messages {
                    if m.errorCode == KafkaError.partitionEOF { eof.insert(m.partition) } else if m.errorCode == 0 {
                        if first == nil { first = Date() }
                        n += 1
                        last = Date()
                    }
                }
            }
            counted = n
            noop.append(last.timeIntervalSince(first ?? last))
            consumer.close()
        }
        // vigil run: from its first message to its last durable batch (the 3 s group join excluded). With a
        // baseline, the two binaries take turns, so that both see the same machine.
        var runs: [Double] = []
        var baselineRuns: [Double] = []
        var alerts = 0
        func measureRun(_ binary: String, _ k: Int, _ extra: [String] = []) throws -> (seconds: Double, alerts: Int) {
            let dir = NSTemporaryDirectory() + "vigil-bench-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let stats = dir + "/stats.json"
            let p = try Spawned(binary, ["run", "--brokers", address, "--group", "bench-\(k)-\(UUID().uuidString)", "--rules", rules,
                                         "--changelog-topic", changelogs[k % changelogs.count],
                                         "--audit-file", dir + "/audit.jsonl", "--clock", "event", "--exit-when-caught-up",
                                         "--stats-file", stats, "--log-level", "error", "-X", "fetch.wait.max.ms=10"] + extra, stdout: "/dev/null")
            p.process.waitUntilExit()
            guard let data = FileManager.default.contents(atPath: stats), let v = try? JSONValue.parse([UInt8](data)),
                  let a = v["first_message_at_us"]?.intValue, let b = v["last_durable_at_us"]?.intValue,
                  let ev = v["events"]?.intValue else {
                throw ValidationError("\(binary) run (exit \(p.process.terminationStatus)) wrote no usable stats: \(FileManager.default.contents(atPath: stats).map { String(decoding: $0, as: UTF8.self) } ?? "no file")")
            }
            guard Int(ev) == produced else { throw ValidationError("\(binary) run read \(ev) events, \(produced) produced") }
            return (Double(b - a) / 1e6, Int(v["alerts"]?.intValue ?? 0))
        }
        // The two binaries take turns going first: the second run of a pair was the slower one (with the same
        // two builds, swapping --vigil and --baseline swapped which one won on the harness stream).
        for k in 0..<3 {
            let baselineFirst = k % 2 == 0
            if let baseline, baselineFirst { baselineRuns.append(try measureRun(baseline, 3 + k).seconds) }
            let r = try measureRun(vigil, k, arguments)
            runs.append(r.seconds)
            alerts = r.alerts
            if let baseline, !baselineFirst { baselineRuns.append(try measureRun(baseline, 3 + k).seconds) }
        }
        let kr = Double(produced) / median(kcat), nr = Double(counted) / median(noop), vr = Double(produced) / median(runs)
        print("| consumer (median of 3) | seconds | events/s | vs kcat |")
        print("|---|---:|---:|---:|")
        print("| kcat -C -e -o beginning > /dev/null | \(fmt(median(kcat), 2)) | \(grouped(kr)) | 100% |")
        print("| VigilKafka no-op consumer (batch poll, count) | \(fmt(median(noop), 2)) | \(grouped(nr)) | \(fmt(100 * nr / kr))% |")
        print("| **vigil run\(arguments.isEmpty ? "" : " " + arguments.joined(separator: " "))** (validate, evaluate, audit fsync, alerts acked, offsets stored) | \(fmt(median(runs), 2)) | **\(grouped(vr))** | **\(fmt(100 * vr / kr))%** |")
        if let baseline {
            let br = Double(produced) / median(baselineRuns)
            print("| vigil run, baseline \(baseline) (runs alternating with the above) | \(fmt(median(baselineRuns), 2)) | \(grouped(br)) | \(fmt(100 * br / kr))% |")
        }
        print("no-op consumer read \(grouped(Double(counted))) of \(grouped(Double(produced))) (nothing dropped by retention: \(counted == produced)); vigil raised \(alerts) alerts")
        print("")
        return vr / kr
    }
}

struct LatencyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "latency", abstract: "Event produced to alert consumed, at a fixed offered load.")
    @Option var rules = "Rules"
    @Option var vigil = ".build/release/vigil"
    @Option(help: "Offered load, events per second.") var rate = 20_000
    @Option(help: "Measured seconds (after 3 s of warm-up).") var seconds = 20
    @Option(help: "vigil run --batch-linger-ms.") var linger = 2
    @Option(help: "fetch.wait.max.ms for vigil's consumer and the alert reader. The embedded broker holds an empty fetch this long and is not woken by new data, so this is a floor on latency; smaller values make the broker poll and burn CPU.")
    var fetchWait = 10
    func run() throws { try LatencyCommand.measure(vigil: vigil, rules: rules, rate: rate, seconds: seconds, linger: linger, fetchWait: fetchWait) }

    static func measure(vigil: String, rules: String, rate: Int, seconds: Int, linger: Int = 2, fetchWait: Int = 10) throws {
        print("== latency: \(grouped(Double(rate))) events/s offered for \(seconds) s (+3 s warm-up); 1 in 20 events raises an immediate alert; batch linger \(linger) ms, fetch.wait.max.ms \(fetchWait)")
        let broker = try Spawned(vigil, ["broker", "--partitions", "8"])
        defer { broker.stop() }
        guard let address = broker.firstLine(timeout: 20) else { throw ValidationError("vigil broker printed no address") }
        let dir = NSTemporaryDirectory() + "vigil-lat-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = """
        brokers: '\(address)'
        group: latency
        audit-file: \(dir)/audit.jsonl
        rules: \(rules)
        clock: wall
        batch-size: 1000
        batch-linger-ms: \(linger)
        kafka-consumer:
          fetch.wait.max.ms: \(fetchWait)
        kafka-producer:
          linger.ms: 1
        """
        try config.write(toFile: dir + "/vigil.yaml", atomically: true, encoding: .utf8)
        let run = try Spawned(vigil, ["run", "--config", dir + "/vigil.yaml", "--log-level", "error"], stdout: "/dev/null")
        defer {
            run.process.interrupt()
            run.process.waitUntilExit()
        }
        // Listen to the alerts topic from its end.
        var c = KafkaConfig(bootstrapServers: address)
        c.set("group.id", "latency-reader")
        c.set("enable.auto.commit", "false")
        c.set("fetch.wait.max.ms", String(fetchWait))
        let consumer = try KafkaConsumer(config: c, logger: benchLogger)
        try consumer.assign(try consumer.partitions(of: "vigil-alerts").map { (TopicPartition("vigil-alerts", $0), KafkaOffset.end) })
        let sent = Mutex<[String: UInt64]>([:])
        let measuring = Atomic<Bool>(false)
        let stop = Atomic<Bool>(false)
        // Wait for vigil to join its group (the embedded broker delays the first join by 3 s).
        usleep(5_000_000)
        let producerThread = Thread {
            do {
                // 1 ms of linger, as a real agency system's client would batch: one produce request per
                // message would saturate the embedded (single-threaded) broker on its own.
                var cfg = KafkaConfig(bootstrapServers: address)
                cfg.set("linger.ms", "1")
                let producer = try KafkaProducer(config: cfg, logger: benchLogger) { _, _ in }
                let start = DispatchTime.now().uptimeNanoseconds
                var n = 0
                let total = rate * (seconds + 3)
                while n < total && !stop.load(ordering: .relaxed) {
                    let due = start + UInt64(n) * 1_000_000_000 / UInt64(rate)
                    let now = DispatchTime.now().uptimeNanoseconds
                    if due > now { usleep(UInt32(min((due - now) / 1000, 1000))); continue }
                    let child = "L\(n % 5000)"
                    let id = "x\(n)"
                    let at = RFC3339.format(.now)
                    let alerting = n % 20 == 0
                    let data = alerting ? #""data":{"injury":"bruise","count":1,"explanation_assessment":"implausible"}"#
                                        : #""data":{"service":"gp","outcome":"attended"}"#
                    let type = alerting ? "injury_observed" : "appointment"
                    let line = #"{"schema_version":1,"event_id":"\#(id)","type":"\#(type)","occurred_at":"\#(at)","agency":"gp","child":{"id":"\#(child)","mobility":"mobile"},\#(data)}"#
                    if alerting, n >= rate * 3 { sent.withLock { $0[id] = DispatchTime.now().uptimeNanoseconds } }
                    if n == rate * 3 { measuring.store(true, ordering: .relaxed) }
                    try producer.produce(topic: "agency-events", key: Array(child.utf8), value: Array(line.utf8), token: UInt64(n + 1))
                    producer.poll()
                    n += 1
                }
                _ = producer.flush(timeoutMs: 10_000)
            } catch {
                print("producer: \(error)")
            }
        }
        producerThread.start()
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000)
        var matched = 0
        let deadline = Date().addingTimeInterval(Double(seconds + 3) + 10)
        var expected = 0
        while Date() < deadline {
            let batch = consumer.poll(max: 1000, timeoutMs: 1)
            let now = DispatchTime.now().uptimeNanoseconds
            for m in batch.messages where m.errorCode == 0 {
                let text = String(decoding: m.value, as: UTF8.self)
                guard let r = text.range(of: #""evidence":[{"event_id":""#) else { continue }
                let rest = text[r.upperBound...]
                guard let q = rest.firstIndex(of: "\"") else { continue }
                let id = String(rest[..<q])
                if let t = sent.withLock({ $0.removeValue(forKey: id) }) {
                    _ = histogram.record((now - t) / 1000)
                    matched += 1
                }
            }
            expected = rate * seconds / 20
            if measuring.load(ordering: .relaxed), matched >= expected { break }
        }
        stop.store(true, ordering: .relaxed)
        let lost = sent.withLock { $0.count }
        print("| latency, event produced to alert consumed | µs |")
        print("|---|---:|")
        for p in [50.0, 99.0, 99.9] { print("| p\(p == 99.9 ? "99.9" : String(Int(p))) | \(grouped(Double(histogram.valueAtPercentile(p)))) |") }
        print("| max | \(grouped(Double(histogram.max))) |")
        print("alerts measured: \(matched) of \(expected) expected\(lost > 0 ? "; \(lost) not seen within the run" : "")")
        print("")
        consumer.close()
    }
}
