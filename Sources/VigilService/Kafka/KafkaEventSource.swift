import Logging
import VigilKafka

extension KafkaMessageBatch: BatchStorage {
    public func headers(at index: Int) -> [(String, [UInt8])] { messages[index].headers() }
}

/// A topic consumed in a consumer group: the event source of `vigil run`.
public final class KafkaEventSource: EventSource {
    public let topic: String
    private let config: KafkaConfig
    private let logger: Logger
    private let onError: @Sendable (KafkaError, _ fatal: Bool) -> Void
    private var consumer: KafkaConsumer?

    /// `onError` hears the client's errors (`fatal`: it cannot go on), from librdkafka's threads.
    public init(topic: String, config: KafkaConfig, logger: Logger, onError: @escaping @Sendable (KafkaError, Bool) -> Void) {
        self.topic = topic
        self.config = config
        self.logger = logger
        self.onError = onError
    }

    public func start(_ handlers: RebalanceHandlers) throws(PipelineError) {
        let topic = self.topic
        do {
            let c = try KafkaConsumer(config: config, logger: logger,
                                      onAssign: { parts in
                                          let starts = handlers.assigned(parts.filter { $0.topic == topic }.map(\.partition))
                                          return Dictionary(uniqueKeysWithValues: starts.map { p, s in
                                              (TopicPartition(topic, p), s.native)
                                          })
                                      },
                                      onRevoke: { parts, lost in handlers.revoked(parts.filter { $0.topic == topic }.map(\.partition), lost) },
                                      onError: onError)
            consumer = c
            try c.subscribe([topic])
        } catch {
            throw .kafka(client: "consumer", error)
        }
    }

    public func poll(max: Int, timeoutMs: Int32, lingerMs: Int32) -> InputBatch {
        guard let consumer else { return .empty }
        let batch = consumer.poll(max: max, timeoutMs: timeoutMs, lingerMs: lingerMs)
        guard !batch.messages.isEmpty else { return .empty }
        var out: [InputMessage] = []
        out.reserveCapacity(batch.messages.count)
        for m in batch.messages {
            let code = m.errorCode
            let notice: InputMessage.Notice? = code == 0 ? nil : code == KafkaError.partitionEOF ? .partitionEnd : .error(m.errorMessage)
            out.append(InputMessage(partition: m.partition, offset: m.offset, key: m.key, value: m.value, notice: notice))
        }
        return InputBatch(messages: out, storage: batch)
    }

    public func commit(_ offsets: [Int32: Int64]) throws(PipelineError) {
        do {
            try consumer?.storeOffsets(Dictionary(uniqueKeysWithValues: offsets.map { (TopicPartition(topic, $0.key), $0.value) }))
        } catch {
            throw .kafka(client: "consumer", error)
        }
    }

    public func lowWatermark(_ partition: Int32) -> Int64? {
        try? consumer?.watermarks(TopicPartition(topic, partition), timeoutMs: 2000).low
    }

    public func highWatermark(_ partition: Int32) -> Int64? { consumer?.cachedHighWatermark(TopicPartition(topic, partition)) }

    public func pause(_ partitions: [Int32]) {
        do { try consumer?.pause(partitions.map { TopicPartition(topic, $0) }) } catch { logger.warning("pausing \(topic) \(partitions): \(error)") }
    }

    public func close() { consumer?.close() }
}

extension StartOffset {
    /// librdkafka's offset: `RD_KAFKA_OFFSET_BEGINNING` (-2) or the offset.
    var native: Int64 {
        switch self {
        case .beginning: return -2
        case .at(let o): return o
        }
    }
}
