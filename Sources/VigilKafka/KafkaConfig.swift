import CRdKafka

/// A librdkafka error, with the library's own name and message.
public struct KafkaError: Error, CustomStringConvertible, Sendable, Equatable {
    public let code: Int32
    public let message: String

    public init(code: Int32, message: String) {
        self.code = code
        self.message = message
    }

    init(_ err: rd_kafka_resp_err_t, context: String = "") {
        code = err.rawValue
        let text = String(cString: rd_kafka_err2str(err))
        message = context.isEmpty ? text : "\(context): \(text)"
    }

    public var description: String { message }

    /// True for errors a retry may cure (the broker is down, a request timed out, a queue is full).
    public var isRetriable: Bool {
        let e = rd_kafka_resp_err_t(rawValue: code)
        return e == RD_KAFKA_RESP_ERR__TRANSPORT || e == RD_KAFKA_RESP_ERR__TIMED_OUT || e == RD_KAFKA_RESP_ERR__QUEUE_FULL
            || e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || e == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT
            || e == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION || e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE
            || e == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT || e == RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS
    }

    /// True for errors no retry can cure: the record is too large for the broker or the client, the
    /// broker refuses it as invalid, or this client is not authorised. Waiting for such a record stalls.
    public var isPermanent: Bool {
        let e = rd_kafka_resp_err_t(rawValue: code)
        return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE
            || e == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE || e == RD_KAFKA_RESP_ERR_INVALID_RECORD
            || e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED || e == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED
            || e == RD_KAFKA_RESP_ERR__INVALID_ARG
    }

    public static let partitionEOF = Int32(RD_KAFKA_RESP_ERR__PARTITION_EOF.rawValue)
}

/// librdkafka configuration: the typed options Vigil uses, each documented with its native property
/// name, plus any other property passed straight through (`-X key=value`, as kcat does), so TLS and SASL
/// need no new code.
public struct KafkaConfig: Sendable {
    /// Properties in the order set; later settings of the same name win.
    public private(set) var properties: [(String, String)] = []

    public init(bootstrapServers: String) {
        set("bootstrap.servers", bootstrapServers)
    }

    public mutating func set(_ name: String, _ value: String) {
        properties.removeAll { $0.0 == name }
        properties.append((name, value))
    }

    public func value(_ name: String) -> String? { properties.last { $0.0 == name }?.1 }

    /// `client.id`
    public var clientId: String? {
        get { value("client.id") }
        set { if let newValue { set("client.id", newValue) } }
    }

    /// Parses `key=value` pass-through properties.
    public mutating func apply(passThrough: [String]) throws(KafkaError) {
        for p in passThrough {
            guard let eq = p.firstIndex(of: "="), eq != p.startIndex else {
                throw KafkaError(code: -1, message: "-X expects property=value, got '\(p)'")
            }
            set(String(p[..<eq]), String(p[p.index(after: eq)...]))
        }
    }

    /// Builds a native configuration, checking every property with librdkafka.
    func make() throws(KafkaError) -> OpaquePointer {
        guard let conf = rd_kafka_conf_new() else { throw KafkaError(code: -1, message: "cannot allocate a librdkafka configuration") }
        var errstr = [CChar](repeating: 0, count: 512)
        for (k, v) in properties {
            let r = rd_kafka_conf_set(conf, k, v, &errstr, errstr.count)
            if r != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                let reason = cString(errstr)
                throw KafkaError(code: -1, message: "Kafka property \(k): \(reason.isEmpty ? "rejected" : reason)")
            }
        }
        return conf
    }
}

/// The text of a NUL-terminated C buffer.
func cString(_ buffer: [CChar]) -> String {
    buffer.withUnsafeBufferPointer { b in
        guard let base = b.baseAddress else { return "" }
        return String(cString: base)
    }
}
