import VigilKafka

/// The librdkafka consumer properties Vigil sets, typed and documented with their native names, with Vigil's
/// defaults. Every other property passes through (`kafka:`, `kafka-consumer:`, `-X`), so TLS and SASL need
/// no code.
public struct ConsumerConfiguration: Sendable {
    /// `group.id`
    public var groupId: String
    /// `enable.auto.offset.store`: off, so that an offset is stored only once everything it caused is
    /// durable (the sink commits it).
    public var autoOffsetStore = false
    /// `enable.auto.commit`: stored offsets are committed in the background.
    public var autoCommit = true
    /// `auto.offset.reset`: a partition with no committed offset is read from its beginning.
    public var offsetReset = "earliest"
    /// `partition.assignment.strategy`: instances joining or leaving move only the partitions they must.
    public var assignmentStrategy = "cooperative-sticky"
    /// `fetch.wait.max.ms`: how long the broker may hold an empty fetch.
    public var fetchWaitMaxMs = 100
    /// `enable.partition.eof`: intake must know when a partition is caught up.
    public var partitionEOF = true
    /// `group.instance.id` (static membership, KIP-345): a member restarted with the same id within the
    /// session timeout takes its partitions back without a rebalance. Nil: dynamic membership.
    public var instanceId: String?

    public init(groupId: String) { self.groupId = groupId }

    public var properties: [(String, String)] {
        [("group.id", groupId), ("enable.auto.offset.store", String(autoOffsetStore)), ("enable.auto.commit", String(autoCommit)),
         ("auto.offset.reset", offsetReset), ("partition.assignment.strategy", assignmentStrategy),
         ("fetch.wait.max.ms", String(fetchWaitMaxMs)), ("enable.partition.eof", String(partitionEOF))]
            + (instanceId.map { [("group.instance.id", $0)] } ?? [])
    }

    /// These properties, then the ones `base` has (every client's `kafka:`), then `passThrough`
    /// (`kafka-consumer:`): the operator's settings win over Vigil's defaults.
    public func kafkaConfig(base: KafkaConfig, passThrough: [String]) throws(KafkaError) -> KafkaConfig {
        var c = base
        for (k, v) in properties where base.value(k) == nil { c.set(k, v) }
        try c.apply(passThrough: passThrough)
        return c
    }

    /// `base`, then these properties: for internal readers whose settings must hold (changelog restores).
    public func forcing(over base: KafkaConfig) -> KafkaConfig {
        var c = base
        for (k, v) in properties { c.set(k, v) }
        return c
    }
}

/// The librdkafka producer properties Vigil sets, typed, with Vigil's defaults (see `ConsumerConfiguration`).
public struct ProducerConfiguration: Sendable {
    /// `enable.idempotence`: off. With librdkafka 2.0.2 and the embedded broker's injected Produce errors,
    /// the idempotent producer acknowledged alerts that never reached the log (ChaosTests; none lost without
    /// it). Alerts are at least once with stable ids (consumers and the audit log dedupe), and changelog order
    /// does not depend on it: a checkpoint's records go out only after the previous checkpoint's marker is
    /// acknowledged, and each child has one record per checkpoint.
    public var idempotence = false
    /// `acks`: a record is durable once every in-sync replica has it.
    public var acks = "all"
    /// `linger.ms`
    public var lingerMs = 5
    /// `compression.type`: state records and alerts are repetitive JSON, which lz4 shrinks several times over.
    public var compression = "lz4"

    public init() {}

    public var properties: [(String, String)] {
        [("enable.idempotence", String(idempotence)), ("acks", acks), ("linger.ms", String(lingerMs)), ("compression.type", compression)]
    }

    /// These properties, then `base`'s, then `passThrough` (`kafka-producer:`).
    public func kafkaConfig(base: KafkaConfig, passThrough: [String]) throws(KafkaError) -> KafkaConfig {
        var c = base
        for (k, v) in properties where base.value(k) == nil { c.set(k, v) }
        try c.apply(passThrough: passThrough)
        return c
    }
}
