import Foundation
import Logging
import Synchronization
import Testing
import VigilContract
import VigilEngine
import VigilKafka
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
func produce(_ lines: [String], to topic: String, brokers: String, key: ((String) -> [UInt8]?)? = nil) throws {
    let failures = Mutex<Int>(0)
    let producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: brokers), logger: quietLogger) { _, error in
        if error != nil { failures.withLock { $0 += 1 } }
    }
    let decoder = EventDecoder()
    var record = decoder.makeRecord()
    for (i, line) in lines.enumerated() {
        let k: [UInt8]?
        if let key { k = key(line) } else {
            _ = decoder.decode(line, into: &record)
            k = record[decoder.contract.childIdSlot].string.map { Array($0.utf8) }
        }
        try producer.produce(topic: topic, key: k, value: Array(line.utf8), token: UInt64(i + 1))
        if i % 5000 == 0 { producer.poll() }
    }
    #expect(producer.flush(timeoutMs: 60_000))
    #expect(failures.withLock { $0 } == 0)
}

/// Every message on a topic, read from the beginning until nothing new arrives for `quietMs`.
func readTopic(_ topic: String, brokers: String, quietMs: Int = 1500, timeout: TimeInterval = 60) throws -> [(value: [UInt8], headers: [(String, [UInt8])])] {
    var c = KafkaConfig(bootstrapServers: brokers)
    c.set("group.id", "reader-\(UUID().uuidString)")
    c.set("enable.auto.commit", "false")
    c.set("fetch.wait.max.ms", "10")
    let consumer = try KafkaConsumer(config: c, logger: quietLogger)
    try consumer.assign(try consumer.partitions(of: topic).map { (TopicPartition(topic, $0), KafkaOffset.beginning) })
    var out: [(value: [UInt8], headers: [(String, [UInt8])])] = []
    var lastNew = Date()
    let deadline = Date().addingTimeInterval(timeout)
    while Date().timeIntervalSince(lastNew) * 1000 < Double(quietMs), Date() < deadline {
        let batch = consumer.poll(max: 1000, timeoutMs: 100)
        for m in batch.messages where m.errorCode == 0 {
            out.append((Array(m.value), m.headers()))
            lastNew = Date()
        }
    }
    consumer.close()
    return out
}

func alertIds(_ jsons: [[UInt8]]) -> [String] {
    jsons.compactMap { (try? JSONValue.parse($0))?["alert_id"]?.stringValue }
}

/// Alert ids `vigil replay` gives for lines (in this order).
func replayIds(_ lines: [String], rules: CompiledRuleSet = pack) throws -> [String] {
    let path = NSTemporaryDirectory() + "vigil-replay-\(UUID().uuidString).jsonl"
    try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: false, encoding: .utf8)
    defer { try? FileManager.default.removeItem(atPath: path) }
    var ids: [String] = []
    _ = try Replay(rules: rules).run(files: [path], onInvalid: { _ in }, onAlert: { ids.append($0.alertId) })
    return ids
}

func auditIds(_ path: String) throws -> [String] {
    var ids: [String] = []
    let verdict = try AuditLog.verify(path: path) { ids.append($0.alertId) }
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
    let d = NSTemporaryDirectory() + "vigil-it-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

/// A child process with its output collected line by line.
final class Child: @unchecked Sendable {
    let process = Process()
    private let lock = NSLock()
    private var out: [String] = []
    private var err: [String] = []
    private var partial = ["", ""]

    init(_ executable: String, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let o = Pipe(), e = Pipe()
        process.standardOutput = o
        process.standardError = e
        for (pipe, k) in [(o, 0), (e, 1)] {
            pipe.fileHandleForReading.readabilityHandler = { [weak self] h in
                let data = h.availableData
                guard !data.isEmpty else { h.readabilityHandler = nil; return }
                self?.received(String(decoding: data, as: UTF8.self), stream: k)
            }
        }
        try process.run()
    }

    private func received(_ text: String, stream k: Int) {
        lock.lock()
        defer { lock.unlock() }
        partial[k] += text
        var lines = partial[k].split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        partial[k] = lines.removeLast()
        if k == 0 { out += lines } else { err += lines }
    }

    var stdout: [String] { lock.lock(); defer { lock.unlock() }; return out }
    var stderr: [String] { lock.lock(); defer { lock.unlock() }; return err }

    func signal(_ s: Int32) { kill(process.processIdentifier, s) }

    /// Waits for exit; returns the status, or nil on timeout (the process is then killed).
    func wait(timeout: TimeInterval) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        usleep(100_000)
        return process.terminationStatus
    }

    /// Waits until `condition` holds, polling; false on timeout.
    static func until(timeout: TimeInterval, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }
}
