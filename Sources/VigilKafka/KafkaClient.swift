import CRdKafka
import Logging

/// A partition of a topic.
public struct TopicPartition: Hashable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32
    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }
    public var description: String { "\(topic)[\(partition)]" }
}

/// Start positions for an assignment.
public enum KafkaOffset: Sendable, Equatable {
    case beginning, end, stored
    case at(Int64)

    var native: Int64 {
        switch self {
        case .beginning: return Int64(RD_KAFKA_OFFSET_BEGINNING)
        case .end: return Int64(RD_KAFKA_OFFSET_END)
        case .stored: return Int64(RD_KAFKA_OFFSET_STORED)
        case .at(let o): return o
        }
    }
}

/// What C callbacks need to reach Swift: kept alive by the client that owns the handle.
final class CallbackBox: @unchecked Sendable {
    let logger: Logger
    var onDelivery: (@Sendable (UInt64, KafkaError?) -> Void)?
    var onAssign: (([TopicPartition]) -> [TopicPartition: Int64])?
    var onRevoke: (([TopicPartition], Bool) -> Void)?
    var onError: (@Sendable (KafkaError, Bool) -> Void)?
    /// A group consumer that has been given an assignment (so librdkafka holds assignor state for it).
    var rebalanced = false

    init(logger: Logger) { self.logger = logger }
}

func box(_ rk: OpaquePointer?) -> CallbackBox? {
    guard let rk, let p = rd_kafka_opaque(rk) else { return nil }
    return Unmanaged<CallbackBox>.fromOpaque(p).takeUnretainedValue()
}

let logTrampoline: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = { rk, level, fac, buf in
    guard let b = box(rk) else { return }
    let facility = fac.map { String(cString: $0) } ?? "?"
    let message = buf.map { String(cString: $0) } ?? ""
    let l: Logger.Level = level <= 3 ? .error : level == 4 ? .warning : level <= 6 ? .info : .debug
    b.logger.log(level: l, "librdkafka \(facility): \(message)")
}

let errorTrampoline: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void = { rk, err, reason, _ in
    guard let b = box(rk) else { return }
    let e = rd_kafka_resp_err_t(rawValue: err)
    let fatal = e == RD_KAFKA_RESP_ERR__FATAL
    let error = KafkaError(code: err, message: reason.map { String(cString: $0) } ?? String(cString: rd_kafka_err2str(e)))
    if let h = b.onError { h(error, fatal) } else { b.logger.warning("Kafka: \(error.message)") }
}

/// Creates a native handle of the given kind with logging and error callbacks wired to `box`.
func makeHandle(_ config: KafkaConfig, kind: rd_kafka_type_t, box: CallbackBox,
                customize: (OpaquePointer) -> Void = { _ in }) throws(KafkaError) -> OpaquePointer {
    let conf = try config.make()
    rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(box).toOpaque())
    rd_kafka_conf_set_log_cb(conf, logTrampoline)
    rd_kafka_conf_set_error_cb(conf, errorTrampoline)
    customize(conf)
    var errstr = [CChar](repeating: 0, count: 512)
    guard let rk = rd_kafka_new(kind, conf, &errstr, errstr.count) else {
        rd_kafka_conf_destroy(conf)
        throw KafkaError(code: -1, message: "cannot create a Kafka client: \(cString(errstr))")
    }
    return rk
}

/// Topic-partition lists in and out of librdkafka.
enum PartitionList {
    static func make(_ items: [(TopicPartition, Int64?)]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t>? {
        guard let list = rd_kafka_topic_partition_list_new(Int32(max(items.count, 1))) else { return nil }
        for (tp, offset) in items {
            if let p = rd_kafka_topic_partition_list_add(list, tp.topic, tp.partition), let offset { p.pointee.offset = offset }
        }
        return list
    }

    static func read(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) -> [(TopicPartition, Int64, Int32)] {
        guard let list, let elems = list.pointee.elems else { return [] }
        var out: [(TopicPartition, Int64, Int32)] = []
        for i in 0..<Int(list.pointee.cnt) {
            let e = elems[i]
            out.append((TopicPartition(e.topic.map { String(cString: $0) } ?? "", e.partition), e.offset, e.err.rawValue))
        }
        return out
    }
}
