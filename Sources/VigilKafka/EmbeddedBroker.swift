import CRdKafka
import Logging

/// An embedded Kafka-protocol broker: librdkafka's mock cluster, listening on loopback.
///
/// Any Kafka client can use it over TCP while this object lives, from this process or another (kcat,
/// another `vigil`). Know its limits: it does not honour transactions, keeps at most about 5 MiB or 100,000
/// message sets per partition (dropping older data silently), delays the first group join by 3 s, and holds
/// an empty fetch for `fetch.wait.max.ms`.
public final class EmbeddedBroker: @unchecked Sendable {
    let rk: OpaquePointer
    let cluster: OpaquePointer
    let callbacks: CallbackBox
    var forwarder: PortForwarder?
    /// `127.0.0.1:PORT,...`: the brokers' own listeners.
    public let brokerAddresses: String

    /// Kafka API keys for fault injection.
    public enum APIKey: Int16, Sendable {
        case produce = 0, fetch = 1, listOffsets = 2, metadata = 3, offsetCommit = 8, offsetFetch = 9
        case findCoordinator = 10, joinGroup = 11, heartbeat = 12, syncGroup = 14
    }

    public init(brokers: Int = 1, logger: Logger = Logger(label: "vigil.broker")) throws(KafkaError) {
        let b = CallbackBox(logger: logger)
        callbacks = b
        var config = KafkaConfig(bootstrapServers: "")
        config.set("log_level", "3")
        rk = try makeHandle(config, kind: RD_KAFKA_PRODUCER, box: b)
        guard let mc = rd_kafka_mock_cluster_new(rk, Int32(brokers)) else {
            rd_kafka_destroy(rk)
            throw KafkaError(code: -1, message: "cannot start the embedded broker")
        }
        cluster = mc
        brokerAddresses = String(cString: rd_kafka_mock_cluster_bootstraps(mc))
    }

    deinit {
        forwarder?.stop()
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(rk)
    }

    /// The address clients should bootstrap from: the fixed port if one was bound, else the brokers' own.
    public var bootstrapServers: String {
        if let f = forwarder { return "127.0.0.1:\(f.port)" }
        return brokerAddresses
    }

    /// Also accepts bootstrap connections on a fixed loopback port (the mock cluster itself only binds
    /// ephemeral ports); after bootstrapping, clients talk to the broker's advertised listener directly.
    public func listen(port: UInt16) throws(KafkaError) {
        guard let first = brokerAddresses.split(separator: ",").first, let colon = first.lastIndex(of: ":"),
              let target = UInt16(first[first.index(after: colon)...]) else {
            throw KafkaError(code: -1, message: "cannot parse the embedded broker address \(brokerAddresses)")
        }
        do {
            forwarder = try PortForwarder(listenPort: port, targetPort: target, logger: callbacks.logger)
        } catch {
            throw KafkaError(code: -1, message: "cannot listen on port \(port): \(error)")
        }
    }

    public func createTopic(_ name: String, partitions: Int, replicationFactor: Int = 1) throws(KafkaError) {
        let err = rd_kafka_mock_topic_create(cluster, name, Int32(partitions), Int32(replicationFactor))
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "create topic \(name)") }
    }

    /// The next `count` requests of `api` fail with `error` (a Kafka error code, e.g. 7 REQUEST_TIMED_OUT).
    public func failNextRequests(_ api: APIKey, count: Int, error: Int32) {
        vigil_mock_push_errors(cluster, api.rawValue, count, rd_kafka_resp_err_t(rawValue: error))
    }

    public func setBrokerDown(_ id: Int32) { rd_kafka_mock_broker_set_down(cluster, id) }
    public func setBrokerUp(_ id: Int32) { rd_kafka_mock_broker_set_up(cluster, id) }
    public func setRoundTripTime(broker id: Int32, ms: Int32) { rd_kafka_mock_broker_set_rtt(cluster, id, ms) }
}
