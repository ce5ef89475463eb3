import Foundation
import Logging
import Synchronization
import Testing
import VigilKafka

let quietLogger: Logger = {
    var l = Logger(label: "test")
    l.logLevel = .warning
    return l
}()

/// For in-memory pipelines where retries and crashes are expected: only errors are worth printing.
let silentLogger: Logger = {
    var l = Logger(label: "test")
    l.logLevel = .error
    return l
}()

/// Every message of `topic`'s partitions `0..<partitions`, read from the beginning to each one's end (within
/// 20 s).
func readToEnd(_ broker: EmbeddedBroker, topic: String, partitions: Int32) throws -> [[UInt8]] {
    let consumer = try KafkaConsumer(config: consumerConfig(broker.bootstrapServers, group: "g"), logger: quietLogger)
    defer { consumer.close() }
    try consumer.assign((0..<partitions).map { (TopicPartition(topic, $0), KafkaOffset.beginning) })
    var values: [[UInt8]] = []
    var ended = Set<Int32>()
    let deadline = Date().addingTimeInterval(20)
    while ended.count < Int(partitions), Date() < deadline {
        // Iterating a batch that is released at once: each message keeps its bytes alive.
        for m in consumer.poll(max: 1000, timeoutMs: 200).messages {
            if m.errorCode == KafkaError.partitionEOF { ended.insert(m.partition); continue }
            if m.errorCode == 0 { values.append([UInt8](m.value)) }
        }
    }
    return values
}

/// Consumer settings that suit the embedded broker (short fetch waits; see KAFKA-NOTES).
func consumerConfig(_ bootstrap: String, group: String) -> KafkaConfig {
    var c = KafkaConfig(bootstrapServers: bootstrap)
    c.set("group.id", group)
    c.set("auto.offset.reset", "earliest")
    c.set("enable.auto.offset.store", "false")
    c.set("fetch.wait.max.ms", "10")
    c.set("enable.partition.eof", "true")
    return c
}

@Suite(.serialized) struct KafkaModuleTests {
    @Test func produceWithDeliveryReportsThenConsumeInAGroup() throws {
        let broker = try EmbeddedBroker()
        try broker.createTopic("t", partitions: 2)
        let delivered = Mutex<[UInt64]>([])
        let producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: broker.bootstrapServers), logger: quietLogger) { token, error in
            if error == nil { delivered.withLock { $0.append(token) } }
        }
        for i in 1...10 {
            try producer.produce(topic: "t", key: Array("k\(i % 3)".utf8), value: Array("v\(i)".utf8), headers: [("h", [1, 2])], token: UInt64(i))
        }
        #expect(producer.flush(timeoutMs: 10_000))
        #expect(delivered.withLock { $0.sorted() } == Array(1...10))

        let consumer = try KafkaConsumer(config: consumerConfig(broker.bootstrapServers, group: "g"), logger: quietLogger)
        try consumer.subscribe(["t"])
        var values: [String] = []
        var headers: [[(String, [UInt8])]] = []
        let deadline = Date().addingTimeInterval(20)
        while values.count < 10, Date() < deadline {
            let batch = consumer.poll(max: 100, timeoutMs: 200)
            for m in batch.messages where m.errorCode == 0 {
                values.append(String(decoding: m.value, as: UTF8.self))
                headers.append(m.headers())
                #expect(m.topic == "t")
            }
        }
        #expect(Set(values) == Set((1...10).map { "v\($0)" }))
        #expect(headers.first?.first?.0 == "h")
        #expect(headers.first?.first?.1 == [1, 2])
        consumer.close()
    }

    /// What the pipeline's at-least-once rests on: a delivery report without an error means the broker
    /// holds the message, even when Produce requests fail on the way (the producer retries them), with the
    /// producer settings `vigil run` uses.
    @Test(arguments: [Int32(7), 6, 19])
    func messagesReportedDeliveredThroughProduceErrorsAreAllOnTheTopic(error: Int32) throws {
        let broker = try EmbeddedBroker()
        try broker.createTopic("t", partitions: 4)
        var config = KafkaConfig(bootstrapServers: broker.bootstrapServers)
        config.set("acks", "all")
        config.set("linger.ms", "5")
        config.set("compression.type", "lz4")
        let delivered = Mutex<Set<UInt64>>([])
        let failed = Mutex<Set<UInt64>>([])
        let producer = try KafkaProducer(config: config, logger: quietLogger) { token, error in
            if error == nil { delivered.withLock { _ = $0.insert(token) } } else { failed.withLock { _ = $0.insert(token) } }
        }
        let n = 2000
        for i in 1...n {
            if i == 200 { broker.failNextRequests(.produce, count: 10, error: error) }
            try producer.produce(topic: "t", key: Array("k\(i % 37)".utf8), value: Array("v\(i)".utf8), token: UInt64(i))
            if i % 100 == 0 { _ = producer.poll(timeoutMs: 5) }
        }
        #expect(producer.flush(timeoutMs: 30_000))
        let ok = delivered.withLock { $0 }
        #expect(ok.count + failed.withLock { $0.count } == n)
        let seen = Set(try readToEnd(broker, topic: "t", partitions: 4).compactMap { UInt64(String(decoding: $0, as: UTF8.self).dropFirst()) })
        #expect(ok.subtracting(seen).isEmpty, "reported delivered but not on the topic: \(ok.subtracting(seen).sorted().prefix(20))")
    }

    /// `produce` of an array hands librdkafka the array's own bytes (no copy): each message must hold them as
    /// they were when produced, whatever the caller does with its array afterwards, through Produce requests
    /// that fail and are retried (so that the bytes are read again) and lz4 batches.
    @Test func aProducedArraysBytesAreTheMessagesAfterTheCallerChangesAndDropsIt() throws {
        let broker = try EmbeddedBroker()
        try broker.createTopic("t", partitions: 2)
        var config = KafkaConfig(bootstrapServers: broker.bootstrapServers)
        config.set("linger.ms", "20")
        config.set("compression.type", "lz4")
        let delivered = Mutex<Set<UInt64>>([])
        let producer = try KafkaProducer(config: config, logger: quietLogger) { token, error in
            if error == nil { delivered.withLock { _ = $0.insert(token) } }
        }
        func payload(_ i: Int) -> [UInt8] { Array("m\(i):".utf8) + [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: i % 300) }
        let n = 1000
        broker.failNextRequests(.produce, count: 5, error: 6)
        for i in 1...n {
            var value = payload(i)
            try producer.produce(topic: "t", key: nil, value: value, token: UInt64(i))
            // The caller's copy changed and then dropped while the message waits to be sent.
            value[0] = UInt8(ascii: "X")
            value.append(contentsOf: [1, 2, 3])
            _ = value
        }
        #expect(producer.flush(timeoutMs: 30_000))
        #expect(delivered.withLock { $0.count } == n)
        var wrong: [Int] = []
        var seen = Set<Int>()
        for bytes in try readToEnd(broker, topic: "t", partitions: 2) {
            let head = String(decoding: bytes.prefix { $0 != UInt8(ascii: ":") }, as: UTF8.self)
            guard head.first == "m", let i = Int(head.dropFirst()), bytes == payload(i) else { wrong.append(bytes.count); continue }
            seen.insert(i)
        }
        #expect(wrong.isEmpty, "messages whose bytes are not what was produced: \(wrong.count)")
        #expect(seen.count == n)
    }

    @Test func propertiesAreCheckedByLibrdkafka() {
        var c = KafkaConfig(bootstrapServers: "127.0.0.1:1")
        c.set("no.such.property", "1")
        #expect(throws: KafkaError.self) { try KafkaProducer(config: c, logger: quietLogger) { _, _ in } }
        var d = KafkaConfig(bootstrapServers: "x")
        #expect(throws: KafkaError.self) { try d.apply(passThrough: ["novalue"]) }
        #expect(throws: Never.self) { try d.apply(passThrough: ["security.protocol=ssl", "a=b=c"]) }
        #expect(d.value("a") == "b=c")
    }

    @Test func aFixedBootstrapPortReachesTheBroker() throws {
        let broker = try EmbeddedBroker()
        try broker.listen(port: 0)
        #expect(broker.bootstrapServers.hasPrefix("127.0.0.1:"))
        #expect(broker.bootstrapServers != broker.brokerAddresses)
        try broker.createTopic("p", partitions: 1)
        let producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: broker.bootstrapServers), logger: quietLogger) { _, _ in }
        #expect(try producer.partitions(of: "p") == [0])
    }
}
