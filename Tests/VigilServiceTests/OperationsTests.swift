import Foundation
import Synchronization
import Testing
import VigilContract
import VigilKafka
import VigilOperations
import VigilRules
import VigilTesting
@testable import VigilService

/// `vigil run --http`: /metrics, /healthz and /readyz of a pipeline consuming from the embedded broker.
@Suite(.serialized) struct OperationsTests {
    /// One HTTP/1.0 GET over a plain socket: status code and body.
    func get(_ port: Int, _ path: String) throws -> (status: Int, body: String) { try request("GET", port, path) }

    /// One HTTP/1.0 request (no body) over a plain socket: status code and body.
    func request(_ method: String, _ port: Int, _ path: String) throws -> (status: Int, body: String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        let bytes = Array("\(method) \(path) HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n".utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            response += buffer[..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
        let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
        return (status, body)
    }

    /// A TCP port free on the loopback interface now.
    func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw POSIXError(.EADDRINUSE) }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// The value of a sample line `name{labels} value` (labels as written, "" for none).
    func sample(_ text: String, _ name: String, _ labels: String = "") -> Double? {
        let prefix = labels.isEmpty ? name + " " : "\(name){\(labels)} "
        return text.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Double($0.dropFirst(prefix.count)) }
    }

    func waitFor(_ what: String, timeout: Double = 60, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while try !condition() {
            guard Date() < deadline else { Issue.record("timed out waiting for \(what)"); return }
            usleep(50_000)
        }
    }

    @Test func metricsHealthAndReadinessFollowAPipelineThroughTheHaringeyScenario() throws {
        let broker = try EmbeddedBroker(logger: quietLogger)
        for t in ["agency-events", "vigil-alerts", "vigil-dead-letters", "vigil-changelog"] { try broker.createTopic(t, partitions: 2) }
        let lines = try scenarioLines()
        // Two messages that are not events: dead letters.
        try produce(lines + ["not json", #"{"schema_version":1,"event_id":"x"}"#], to: "agency-events", brokers: broker.bootstrapServers)
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = pipelineConfig(brokers: broker.bootstrapServers, dir: dir)
        config.readyMaxLag = 0
        let pipeline = Pipeline(config: config, rules: pack, logger: quietLogger)
        let reloads = Mutex<[ReloadOutcome]>([])
        pipeline.onReload = { o in reloads.withLock { $0.append(o) } }
        let server = try Endpoints.start(HTTPAddress("127.0.0.1:0")!, for: pipeline, rulesDirectory: rulesDir, logger: quietLogger)
        defer { server.close() }
        // Before the pipeline runs: alive, not ready.
        #expect(try get(server.port, "/readyz").status == 503)
        #expect(try get(server.port, "/healthz").status == 200)
        #expect(try get(server.port, "/nothing").status == 404)

        let done = Mutex<Result<PipelineSummary, PipelineError>?>(nil)
        let thread = Thread { done.withLock { $0 = Result { () throws(PipelineError) in try pipeline.run() } } }
        thread.start()
        // Every alert durable (they are counted then), the lag measured at 0.
        var text = ""
        try waitFor("the scenario's 28 alerts and no lag in /metrics") {
            text = try get(server.port, "/metrics").body
            let fired = text.split(separator: "\n").filter { $0.hasPrefix("vigil_alerts_total{") && $0.contains(#"status="fired""#) }
                .compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0, +)
            return fired == 28 && (0..<2).allSatisfy { sample(text, "vigil_consumer_lag_messages", #"partition="\#($0)""#) == 0 }
        }
        #expect(sample(text, "vigil_events_total", #"outcome="evaluated""#) == Double(lines.count))
        #expect(sample(text, "vigil_events_total", #"outcome="dead_letter""#) == 2)
        #expect(sample(text, "vigil_messages_total") == Double(lines.count + 2))
        #expect(sample(text, "vigil_dead_letters_total", #"reason="invalid-json""#) == 1)
        #expect(sample(text, "vigil_dead_letters_total", #"reason="contract""#) == 1)
        #expect(text.contains(#"vigil_alerts_total{rule="core-group-overdue",severity=""#), "alerts by rule and severity")
        #expect(text.contains("# HELP vigil_consumer_lag_messages "))
        #expect(sample(try get(server.port, "/metrics").body, "vigil_ready") == 1)
        #expect(!text.contains("C-HGY-0001"), "no child id in the metrics")
        #expect(try get(server.port, "/readyz").status == 200)
        #expect(try get(server.port, "/healthz").body == "ok\n")
        // POST /-/reload: accepted at once, acted on at the next epoch barrier (the same pack: unchanged).
        #expect(try request("POST", server.port, "/-/reload").status == 202)
        #expect(try request("GET", server.port, "/-/reload").status == 405)
        #expect(try request("POST", server.port, "/metrics").status == 405)
        try waitFor("the reload's outcome") { reloads.withLock { !$0.isEmpty } }
        #expect(reloads.withLock { $0.map(\.result) } == [.unchanged])
        #expect(sample(try get(server.port, "/metrics").body, "vigil_rule_reloads_total", #"result="unchanged""#) == 1)

        // The scrape passes promtool's checks (Debian's prometheus package; scripts/deps installs it).
        let file = dir + "/metrics.txt"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let check = try Child("/bin/sh", ["-c", "promtool check metrics < '\(file)'"])
        #expect(check.wait(timeout: 60) == 0, "promtool check metrics: \(check.stdout + check.stderr)")

        // Debian's Prometheus server scrapes it, and answers a query for the lag through its HTTP API.
        let promPort = try freePort()
        let promConfig = dir + "/prometheus.yml"
        try """
        global: {scrape_interval: 1s, evaluation_interval: 1s}
        scrape_configs:
          - job_name: vigil
            static_configs: [{targets: ['127.0.0.1:\(server.port)']}]
        """.write(toFile: promConfig, atomically: true, encoding: .utf8)
        let prometheus = try Child("/usr/bin/prometheus", ["--config.file=\(promConfig)", "--storage.tsdb.path=\(dir)/tsdb",
                                                         "--web.listen-address=127.0.0.1:\(promPort)", "--log.level=warn"])
        defer { prometheus.signal(SIGKILL); _ = prometheus.wait(timeout: 10) }
        var answer = ""
        try waitFor("Prometheus to scrape vigil_consumer_lag_messages") {
            answer = (try? get(promPort, "/api/v1/query?query=vigil_consumer_lag_messages").body) ?? ""
            return answer.contains(#""partition":"0""#) && answer.contains(#""partition":"1""#)
        }
        #expect(answer.contains(#""job":"vigil""#) && answer.contains(#""status":"success""#), "\(answer)")
        prometheus.signal(SIGTERM)
        #expect(prometheus.wait(timeout: 30) != nil)

        // A stop: not ready from its first moment.
        pipeline.requestStop()
        #expect(try get(server.port, "/readyz").status == 503)
        thread.join()
        _ = try #require(done.withLock { $0 }).get()
    }
}

extension OperationsTests {
    /// A state store whose restores wait until the test lets them go.
    final class HeldStore: StateStore, @unchecked Sendable {
        let inner: StateStore
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        init(_ inner: StateStore) { self.inner = inner }
        func restore(partitions: [Int32], rules: CompiledRuleSet) throws(PipelineError) -> (restored: [Int32: Checkpoint.Restored], timings: RestoreTimings) {
            entered.signal()
            release.wait()
            return try inner.restore(partitions: partitions, rules: rules)
        }
    }

    @Test func notReadyWhileRestoringReadyWhenCaughtUpNotReadyFromTheFirstMomentOfAStop() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cluster = MemoryCluster(partitions: 2, auditPath: dir + "/audit.jsonl")
        cluster.input.produce(events: try scenarioLines())
        var held: HeldStore?
        let factory = cluster.io()
        var config = PipelineConfig()
        config.clock = .event
        config.readyMaxLag = 0
        let pipeline = Pipeline(config: config, rules: pack, logger: quietLogger) { context throws(PipelineError) in
            var io = try factory(context)
            let store = HeldStore(io.state)
            held = store
            io.state = store
            return io
        }
        let server = try Endpoints.start(HTTPAddress("127.0.0.1:0")!, for: pipeline, logger: quietLogger)
        defer { server.close() }
        let thread = Thread { _ = try? pipeline.run() }
        thread.start()
        try waitFor("the restore to start") { held != nil }
        let store = try #require(held)
        store.entered.wait()
        let restoring = try get(server.port, "/readyz")
        #expect(restoring.status == 503 && restoring.body == "restoring state\n")
        store.release.signal()
        try waitFor("ready once caught up") { try get(server.port, "/readyz").status == 200 }
        pipeline.requestStop()
        let stopping = try get(server.port, "/readyz")
        #expect(stopping.status == 503 && stopping.body == "stopping\n")
        thread.join()
    }

    /// The binary: `vigil run --http 127.0.0.1:0` logs where it listens; its /metrics counts what it read.
    @Test func vigilRunServesItsMetricsWhereItSaysItListens() throws {
        let broker = try EmbeddedBroker(logger: quietLogger)
        for t in ["agency-events", "vigil-alerts", "vigil-dead-letters", "vigil-changelog"] { try broker.createTopic(t, partitions: 1) }
        let lines = try scenarioLines()
        try produce(lines, to: "agency-events", brokers: broker.bootstrapServers)
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try Child(vigilBinary, ["run", "--brokers", broker.bootstrapServers, "--rules", rulesDir, "--audit-file", dir + "/audit.jsonl",
                                          "--clock", "event", "--http", "127.0.0.1:0", "--log-format", "json", "-X", "fetch.wait.max.ms=10"])
        var port = 0
        try waitFor("the endpoints' log line") {
            for line in run.stderr {
                guard let v = try? JSONValue.parse(Array(line.utf8)), let m = v["message"]?.stringValue, m.hasPrefix("operations endpoints on http://127.0.0.1:") else { continue }
                port = Int(m.dropFirst("operations endpoints on http://127.0.0.1:".count).prefix { $0.isNumber }) ?? 0
            }
            return port > 0
        }
        try waitFor("every event evaluated") {
            sample(try get(port, "/metrics").body, "vigil_events_total", #"outcome="evaluated""#) == Double(lines.count)
        }
        #expect(try get(port, "/healthz").status == 200)
        run.signal(SIGTERM)
        #expect(run.wait(timeout: 60) == 0)
        #expect(run.stderr.allSatisfy { (try? JSONValue.parse(Array($0.utf8))) != nil || !$0.hasPrefix("{") }, "JSON log lines parse")
    }
}

extension Thread {
    /// Waits for the thread to finish.
    func join() { while !isFinished { usleep(10_000) } }
}
