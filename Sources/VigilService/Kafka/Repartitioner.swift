import Foundation
import Logging
import Synchronization
import VigilContract
import VigilKafka
import VigilRules

/// Reads the input topic in its own consumer group and writes each valid event to the repartition topic,
/// keyed by child id, so every event of a child reaches the same partition (and engine) whatever key the
/// producer used, as Kafka Streams does. Invalid messages go to the dead-letter topic here.
///
/// Order: a producer that keys by something else spreads one child's events over several partitions, whose
/// relative order Kafka does not keep. Like a Kafka Streams task, the repartitioner merges the partitions it
/// is assigned by event time: it always writes the earliest buffered event, and waits while an assigned
/// partition that has not reached its end has nothing buffered (its lag is unknown or positive, so an
/// earlier event may be on its way). A partition with `perPartitionBuffer` events buffered is paused, so the
/// fetcher turns to the partitions the merge waits for. So a single instance rebuilds event-time order
/// exactly; with several instances each merges its share, and the shares interleave by arrival (an event
/// that lands behind its partition's clock is applied as a late event).
///
/// At least once: offsets are stored only for events acknowledged downstream; after a crash an event may be
/// written twice, and the engine drops the second copy (same event id).
final class Repartitioner: PipelineStage, @unchecked Sendable {
    let name = "vigil-repartition"
    let config: PipelineConfig
    let logger: Logger
    let coordinator: Coordinator
    let consumer: KafkaConsumer
    let producer: KafkaProducer
    let decoder: EventDecoder
    let plausibility: TimePlausibility
    let stopped = NSCondition()
    /// True while the whole input topic has been repartitioned: every partition this instance reads is at
    /// its end with nothing buffered or unacknowledged, and the group's committed offsets reach the end of
    /// every other partition. Until then the engine is not caught up, whatever its own partitions say.
    let upstreamCaughtUp = Atomic<Bool>(false)
    var stopFlag = false
    var thread: StageThread?
    let box = FailureBox()

    init(config: PipelineConfig, rules: CompiledRuleSet, base: KafkaConfig, producerConfig: KafkaConfig,
         coordinator: Coordinator, logger: Logger) throws(KafkaError) {
        self.config = config
        self.logger = logger
        self.coordinator = coordinator
        var consumerConfig = ConsumerConfiguration(groupId: config.group + "-repartition")
        consumerConfig.instanceId = config.effectiveInstanceId
        consumer = try KafkaConsumer(config: try consumerConfig.kafkaConfig(base: base, passThrough: config.kafkaConsumer), logger: logger)
        producer = try KafkaProducer(config: producerConfig, logger: logger) { [box] token, error in
            if let error { box.record(token, error) }
        }
        decoder = EventDecoder(contract: rules.contract, slots: [], maxBytes: config.maxEventBytes)
        plausibility = TimePlausibility(maxSkewSeconds: config.maxClockSkew)
    }

    final class FailureBox: @unchecked Sendable {
        let lock = NSLock()
        var failed: [UInt64: KafkaError] = [:]
        func record(_ t: UInt64, _ e: KafkaError) { lock.lock(); failed[t] = e; lock.unlock() }
        func take() -> [UInt64: KafkaError] { lock.lock(); defer { failed = [:]; lock.unlock() }; return failed }
    }

    func start() {
        thread = StageThread(name: name) { [self] in
            do throws(KafkaError) { try consumer.subscribe([config.inputTopic]) } catch { coordinator.fail(.kafka(client: "repartition consumer", error)) }
            loop()
            consumer.close()
        }
    }

    func stop() {
        stopped.lock()
        stopFlag = true
        stopped.unlock()
    }

    func join() { thread?.join() }

    var shouldStop: Bool {
        stopped.lock()
        defer { stopped.unlock() }
        return stopFlag || coordinator.isAborting
    }

    typealias Out = (topic: String, key: [UInt8]?, value: [UInt8], headers: [(String, [UInt8])])

    /// Events buffered per input partition before it is paused.
    static let perPartitionBuffer = 2000
    /// How often a merge that keeps waiting for a partition says so.
    static let waitWarningSeconds = 30.0

    func loop() {
        var record = decoder.makeRecord()
        var token: UInt64 = 1
        var merge = EventTimeMerge<Out>(perPartition: Self.perPartitionBuffer)
        var waitingSince: Date?
        var lastWaitWarning = Date.distantPast
        var lastAssignmentCheck = Date.distantPast
        var lastLagCheck = Date.distantPast
        var lastErrorLog = Date.distantPast
        let topic = config.inputTopic
        func partitions(_ ps: [Int32]) -> [TopicPartition] { ps.map { TopicPartition(topic, $0) } }
        while !shouldStop {
            let batch = consumer.poll(max: config.batchSize, timeoutMs: 100, lingerMs: Int32(config.batchLingerMs))
            if Date().timeIntervalSince(lastAssignmentCheck) >= 0.2 || !batch.messages.isEmpty {
                lastAssignmentCheck = Date()
                let resume = merge.assign(Set(consumer.assignment().filter { $0.topic == topic }.map(\.partition)))
                if !resume.isEmpty { try? consumer.resume(partitions(resume)) }
            }
            var sent: [UInt64: Out] = [:]
            for m in batch.messages {
                if m.errorCode == KafkaError.partitionEOF { merge.reachedEnd(m.partition); continue }
                if m.errorCode != 0 {
                    // At most one every 5 s: librdkafka retries by itself (a broker outage repeats these).
                    if Date().timeIntervalSince(lastErrorLog) > 5 {
                        logger.warning("repartition: consumer: \(m.errorMessage)")
                        lastErrorLog = Date()
                    }
                    continue
                }
                guard merge.assigned.contains(m.partition) else { continue }
                if let failure = decoder.decode(m.value, into: &record) ?? plausibility.check(record, contract: decoder.contract, now: .now) {
                    let d = DeadLetter(sourceTopic: topic, partition: m.partition, offset: m.offset, key: m.key, value: m.value,
                                       originalHeaders: m.headers(), failure: failure, maxBytes: config.deadLetterMaxBytes)
                    logger.warning("dead letter: \(d.logDescription)")
                    _ = merge.addInPlace(m.partition, offset: m.offset, (config.deadLetterTopic, d.key, d.value, d.headers))
                } else {
                    let child = record[decoder.contract.childIdSlot].string ?? ""
                    let at = record[decoder.contract.occurredAtSlot].instant ?? .distantPast
                    let headers = m.headers() + DeadLetter.sourceHeaders(topic: topic, partition: m.partition, offset: m.offset)
                    _ = merge.add(m.partition, offset: m.offset, at: at, (config.repartitionTopic, Array(child.utf8), Array(m.value), headers))
                }
            }
            // Write in event-time order what the merge allows.
            var written: [Int32: Int64] = [:]
            while let (p, b) = merge.next() {
                sent[token] = b.item
                produce(b.item, token: token)
                token += 1
                written[p] = b.offset + 1
            }
            let flow = merge.flowControl()
            do {
                try consumer.pause(partitions(flow.pause))
                try consumer.resume(partitions(flow.resume))
            } catch {
                logger.warning("repartition: \(error)")
            }
            let buffered = merge.buffered
            if let p = merge.waitingFor, buffered > 0 {
                let since = waitingSince ?? Date()
                waitingSince = since
                if Date().timeIntervalSince(since) >= Self.waitWarningSeconds, Date().timeIntervalSince(lastWaitWarning) >= Self.waitWarningSeconds {
                    lastWaitWarning = Date()
                    logger.warning("repartition: waiting \(Int(Date().timeIntervalSince(since))) s for \(topic)[\(p)], which has not reached its end, before writing \(buffered) buffered events in event-time order")
                }
            } else {
                waitingSince = nil
            }
            if sent.isEmpty, Date().timeIntervalSince(lastLagCheck) >= 1 {
                lastLagCheck = Date()
                upstreamCaughtUp.store(merge.drained && othersCaughtUp(excluding: merge.assigned), ordering: .releasing)
            } else if !sent.isEmpty {
                upstreamCaughtUp.store(false, ordering: .releasing)
            }
            guard !sent.isEmpty else { continue }
            // Everything written is acknowledged before its offsets are stored: at least once.
            var delay = RetryDelay(.reading)
            while !sent.isEmpty {
                _ = producer.flush(timeoutMs: 10_000)
                let failed = box.take()
                for t in sent.keys where failed[t] == nil { sent[t] = nil }
                if sent.isEmpty { break }
                if shouldStop {
                    logger.warning("repartition: stopping with \(sent.count) deliveries unacknowledged; their input is read again next time")
                    return
                }
                let wait = delay.failed()
                logger.warning("repartition: \(sent.count) deliveries failed; retrying in \(wait) s")
                Thread.sleep(forTimeInterval: wait)
                var again: [UInt64: Out] = [:]
                for (_, o) in sent {
                    again[token] = o
                    produce(o, token: token)
                    token += 1
                }
                sent = again
            }
            let offsets = Dictionary(uniqueKeysWithValues: written.map { (TopicPartition(topic, $0.key), $0.value) })
            do { try consumer.storeOffsets(offsets) } catch { logger.warning("repartition: storing offsets: \(error)") }
        }
    }

    /// Whether the group's committed offsets reach the end of every input partition not assigned here.
    func othersCaughtUp(excluding mine: Set<Int32>) -> Bool {
        let topic = config.inputTopic
        do {
            let others = try consumer.partitions(of: topic, timeoutMs: 2000).filter { !mine.contains($0) }.map { TopicPartition(topic, $0) }
            guard !others.isEmpty else { return true }
            let committed = try consumer.committed(others, timeoutMs: 2000)
            for tp in others {
                let end = try consumer.watermarks(tp, timeoutMs: 2000).high
                if end > 0 && (committed[tp] ?? -1) < end { return false }
            }
            return true
        } catch {
            return false
        }
    }

    func produce(_ o: Out, token: UInt64) {
        do {
            try producer.produce(topic: o.topic, key: o.key, value: o.value, headers: o.headers, token: token)
        } catch {
            box.record(token, error)
        }
    }
}
