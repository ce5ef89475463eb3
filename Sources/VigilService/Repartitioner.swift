import Foundation
import Logging
import VigilContract
import VigilKafka

/// Reads the input topic in its own consumer group and writes each valid event to the repartition topic,
/// keyed by child id, so every event of a child reaches the same partition (and engine) whatever key the
/// producer used, as Kafka Streams does. Invalid messages go to the dead-letter topic here. At least once:
/// after a crash a message may be written twice, and the engine drops the second copy (same event id).
final class Repartitioner: @unchecked Sendable {
    unowned let pipeline: Pipeline
    let consumer: KafkaConsumer
    let producer: KafkaProducer
    let decoder: EventDecoder
    let stopped = NSCondition()
    var stopFlag = false
    var finished = false

    init(pipeline: Pipeline, base: KafkaConfig, producerConfig: KafkaConfig, partitions: Int) throws {
        self.pipeline = pipeline
        var c = base
        c.set("group.id", pipeline.config.group + "-repartition")
        c.set("enable.auto.offset.store", "false")
        c.set("enable.auto.commit", "true")
        c.set("auto.offset.reset", "earliest")
        c.set("partition.assignment.strategy", "cooperative-sticky")
        if base.value("fetch.wait.max.ms") == nil { c.set("fetch.wait.max.ms", "100") }
        try c.apply(passThrough: pipeline.config.kafkaConsumer)
        consumer = try KafkaConsumer(config: c, logger: pipeline.logger)
        let box = FailureBox()
        producer = try KafkaProducer(config: producerConfig, logger: pipeline.logger) { token, error in
            if let error { box.record(token, error) }
        }
        decoder = EventDecoder(contract: pipeline.rules.contract, slots: [], maxBytes: pipeline.config.maxEventBytes)
        self.box = box
    }

    final class FailureBox: @unchecked Sendable {
        let lock = NSLock()
        var failed: [UInt64: KafkaError] = [:]
        func record(_ t: UInt64, _ e: KafkaError) { lock.lock(); failed[t] = e; lock.unlock() }
        func take() -> [UInt64: KafkaError] { lock.lock(); defer { failed = [:]; lock.unlock() }; return failed }
    }
    let box: FailureBox

    func start() {
        let t = Thread { [self] in
            do { try consumer.subscribe([pipeline.config.inputTopic]) } catch { pipeline.fail("repartition: \(error)") }
            loop()
            stopped.lock()
            finished = true
            stopped.broadcast()
            stopped.unlock()
        }
        t.name = "vigil-repartition"
        t.start()
    }

    func stop() {
        stopped.lock()
        stopFlag = true
        while !finished { _ = stopped.wait(until: Date().addingTimeInterval(0.1)) }
        stopped.unlock()
        consumer.close()
    }

    var shouldStop: Bool {
        stopped.lock()
        defer { stopped.unlock() }
        return stopFlag
    }

    func loop() {
        let config = pipeline.config
        var record = decoder.makeRecord()
        var token: UInt64 = 1
        while !shouldStop {
            let batch = consumer.poll(max: config.batchSize, timeoutMs: 100, lingerMs: Int32(config.batchLingerMs))
            var offsets: [TopicPartition: Int64] = [:]
            var sent: [UInt64: (topic: String, key: [UInt8]?, value: [UInt8], headers: [(String, [UInt8])])] = [:]
            for m in batch.messages where m.errorCode == 0 {
                offsets[TopicPartition(config.inputTopic, m.partition)] = m.offset + 1
                var headers = m.headers()
                headers.append(("vigil.source.topic", Array(config.inputTopic.utf8)))
                headers.append(("vigil.source.partition", Array(String(m.partition).utf8)))
                headers.append(("vigil.source.offset", Array(String(m.offset).utf8)))
                let out: (topic: String, key: [UInt8]?, value: [UInt8], headers: [(String, [UInt8])])
                if let failure = decoder.decode(m.value, into: &record) {
                    headers.append(("vigil.error.kind", Array(failure.kind.rawValue.utf8)))
                    headers.append(("vigil.error.path", Array(failure.path.utf8)))
                    headers.append(("vigil.error.reason", Array(failure.reason.utf8)))
                    pipeline.logger.warning("dead letter: \(config.inputTopic)[\(m.partition)]@\(m.offset): \(failure.kind.rawValue): \(failure)")
                    out = (config.deadLetterTopic, m.key.map { Array($0) }, Array(m.value), headers)
                } else {
                    let child = record[decoder.contract.childIdSlot].string ?? ""
                    out = (config.repartitionTopic, Array(child.utf8), Array(m.value), headers)
                }
                sent[token] = out
                produce(out, token: token)
                token += 1
            }
            // Everything of this batch is acknowledged before its offsets are stored: at least once.
            var delay = 0.1
            while !sent.isEmpty {
                _ = producer.flush(timeoutMs: 10_000)
                let failed = box.take()
                for t in sent.keys where failed[t] == nil { sent[t] = nil }
                if sent.isEmpty { break }
                pipeline.logger.warning("repartition: \(sent.count) deliveries failed; retrying in \(delay) s")
                Thread.sleep(forTimeInterval: delay)
                delay = min(delay * 2, 5)
                var again: [UInt64: (topic: String, key: [UInt8]?, value: [UInt8], headers: [(String, [UInt8])])] = [:]
                for (_, o) in sent {
                    again[token] = o
                    produce(o, token: token)
                    token += 1
                }
                sent = again
                if shouldStop && delay >= 5 { break }
            }
            do { try consumer.storeOffsets(offsets) } catch { pipeline.logger.warning("repartition: storing offsets: \(error)") }
        }
    }

    func produce(_ o: (topic: String, key: [UInt8]?, value: [UInt8], headers: [(String, [UInt8])]), token: UInt64) {
        do {
            try producer.produce(topic: o.topic, key: o.key, value: o.value, headers: o.headers, token: token)
        } catch {
            box.record(token, error)
        }
    }
}
