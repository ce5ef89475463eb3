import Foundation
import Logging
import VigilKafka

extension PipelineIO {
    /// `vigil run`'s I/O: the audit log; the alerts, dead-letter and changelog topics through one producer;
    /// the input (or repartition) topic through a group consumer; restores from the changelog. Checks first
    /// that every topic exists and that the changelog is partitioned like the input, waiting out a broker
    /// that is not reachable yet.
    public static func kafka(_ context: PipelineContext) throws(PipelineError) -> PipelineIO {
        let config = context.config
        let logger = context.logger
        let coordinator = context.coordinator
        var base = KafkaConfig(bootstrapServers: config.brokers)
        let producer: KafkaProducer
        let producerConfig: KafkaConfig
        let consumerConfig: KafkaConfig
        do {
            try base.apply(passThrough: config.kafka)
            producerConfig = try ProducerConfiguration().kafkaConfig(base: base, passThrough: config.kafkaProducer)
            var consumer = ConsumerConfiguration(groupId: config.group)
            consumer.instanceId = config.effectiveInstanceId
            consumerConfig = try consumer.kafkaConfig(base: base, passThrough: config.kafkaConsumer)
            producer = try KafkaTopicOutput.producer(producerConfig, reports: context.reports, logger: logger)
        } catch {
            throw .kafka(client: "configuration", error)
        }
        try checkTopics(config, producer, shadow: context.rules.rules.contains { $0.mode == .shadow }, coordinator: coordinator, logger: logger)
        var anchors: [AuditAnchorSink] = []
        if config.isAnchoringToTopic {
            do { anchors.append(try AuditAnchorTopic(topic: config.auditAnchorTopic, config: producerConfig, logger: logger)) } catch {
                throw .kafka(client: "audit anchors", error)
            }
        }
        let audit = try AuditLogWriter.openLogged(config, anchors: anchors, logger: logger)
        let auditOutput = AuditLogOutput(writer: audit, reports: context.reports)
        let outputs = PipelineOutputs(
            alerts: [auditOutput, KafkaTopicOutput(topic: config.alertsTopic, producer: producer, reports: context.reports)],
            deadLetters: [KafkaTopicOutput(topic: config.deadLetterTopic, producer: producer, reports: context.reports)],
            changelog: KafkaTopicOutput(topic: config.changelogTopic, producer: producer, reports: context.reports),
            notes: [auditOutput],
            shadowAlerts: [auditOutput, KafkaTopicOutput(topic: config.shadowAlertsTopic, producer: producer, reports: context.reports)])
        let source = KafkaEventSource(topic: config.processingTopic, config: consumerConfig, logger: logger) { [weak coordinator] error, fatal in
            if fatal { coordinator?.fail(.kafka(client: "consumer", error)) } else { logger.warning("Kafka: \(error.message)") }
        }
        var io = PipelineIO(source: source, outputs: outputs, state: KafkaChangelogStore(base: base, topic: config.changelogTopic, logger: logger),
                            reports: context.reports, audit: auditOutput)
        if config.repartition {
            let r: Repartitioner
            do {
                r = try Repartitioner(config: config, rules: context.rules, base: base, producerConfig: producerConfig,
                                      coordinator: coordinator, logger: logger)
            } catch {
                throw .kafka(client: "repartitioner", error)
            }
            io.stages.append(r)
            io.upstreamCaughtUp = { r.upstreamCaughtUp.load(ordering: .acquiring) }
        }
        return io
    }

    /// The output topics and the changelog must exist, and the changelog must have as many partitions as the
    /// topic the engines read. Broker outages are waited out with backoff; a missing topic is an error.
    /// Returns that partition count.
    @discardableResult
    static func checkTopics(_ config: PipelineConfig, _ producer: KafkaProducer, shadow: Bool = false, coordinator: Coordinator, logger: Logger) throws(PipelineError) -> Int {
        func partitions(_ topic: String) throws(PipelineError) -> Int {
            var delay = RetryDelay(.broker)
            while true {
                do {
                    return try producer.partitions(of: topic, timeoutMs: 10_000).count
                } catch {
                    if !error.isRetriable || coordinator.isStopping { throw .topicUnavailable(topic: topic, error) }
                    let wait = delay.failed()
                    logger.warning("topic \(topic): \(error.message); retrying in \(wait) s")
                    Thread.sleep(forTimeInterval: wait)
                }
            }
        }
        let processing = try partitions(config.processingTopic)
        if config.repartition { _ = try partitions(config.inputTopic) }
        for topic in [config.alertsTopic, config.deadLetterTopic] + (config.isAnchoringToTopic ? [config.auditAnchorTopic] : [])
            + (shadow ? [config.shadowAlertsTopic] : []) {
            let count = try partitions(topic)
            logger.info("output topic \(topic): \(count) partitions")
        }
        let changelog = try partitions(config.changelogTopic)
        guard changelog == processing else {
            throw .changelogPartitions(changelog: config.changelogTopic, count: changelog, input: config.processingTopic, inputCount: processing)
        }
        return processing
    }
}
