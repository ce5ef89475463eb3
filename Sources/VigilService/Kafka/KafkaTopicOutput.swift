import Logging
import VigilKafka

/// A Kafka topic as an output: a record is durable when the broker acknowledges it (`acks=all`). Several
/// topics share one producer (and so one `flush` serves all their acknowledgements).
public final class KafkaTopicOutput: DurableOutput {
    public let topic: String
    private let producer: KafkaProducer
    private let reports: DeliveryReports

    /// `producer` must deliver its reports to `reports` (see `KafkaTopicOutput.producer`).
    public init(topic: String, producer: KafkaProducer, reports: DeliveryReports) {
        self.topic = topic
        self.producer = producer
        self.reports = reports
    }

    /// A producer whose delivery reports go to `reports`.
    public static func producer(_ config: KafkaConfig, reports: DeliveryReports, logger: Logger) throws(KafkaError) -> KafkaProducer {
        try KafkaProducer(config: config, logger: logger) { token, error in
            reports.report(token, error.map { .failed(reason: $0.message, retriable: !$0.isPermanent) } ?? .durable)
        }
    }

    public var name: String { "topic \(topic)" }

    public func write(_ record: OutputRecord, token: DeliveryToken) {
        do {
            if record.value.isEmpty {
                // A tombstone: no payload at all (an empty one is not removed by compaction).
                try producer.produce(topic: topic, partition: record.partition, key: record.key, value: UnsafeRawBufferPointer(start: nil, count: 0),
                                     headers: record.headers, token: token)
            } else {
                try producer.produce(topic: topic, partition: record.partition, key: record.key, value: record.value,
                                     headers: record.headers, token: token)
            }
        } catch {
            reports.report(token, .failed(reason: error.message, retriable: !error.isPermanent))
        }
    }

    public func flush(waitMs: Int32) { producer.poll(timeoutMs: waitMs) }

    public func close(timeoutMs: Int32) -> Bool { producer.flush(timeoutMs: timeoutMs) }
}
