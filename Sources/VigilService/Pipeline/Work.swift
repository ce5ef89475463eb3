import VigilContract
import VigilEngine
import VigilRules

/// An alert with its JSON, ready for the outputs.
public struct RenderedAlert: Sendable {
    public let alert: Alert
    public let ruleId: String
    /// The alert as `alert.schema.json` describes it, UTF-8.
    public let json: [UInt8]
    /// Of a rule in shadow mode: to the shadow outputs, never the alerts topic.
    public let shadow: Bool

    public init(alert: Alert, ruleId: String, json: [UInt8], shadow: Bool = false) {
        self.alert = alert
        self.ruleId = ruleId
        self.json = json
        self.shadow = shadow
    }

    public var alertId: String { alert.alertId }

    /// What every alert output gets: keyed by child id, the JSON as the value, the id for de-duplication.
    public var record: OutputRecord { OutputRecord(key: Array(alert.childId.utf8), value: json, alertId: alert.alertId) }
}

/// One unit of work for a shard: a slice of one consumed batch, plus clock movements and control, in intake
/// order.
struct ShardWork: Sendable {
    enum Item: Sendable {
        /// The batch's message `index`, decoded: the next event of `events`.
        case event(index: Int32, partition: Int32, clock: Instant)
        case tick(partition: Int32, clock: Instant)
        case tickAll(Instant)
        /// Write the children of these partitions changed since their last checkpoint (a checkpoint barrier).
        case checkpoint([CheckpointPart])
        /// Forget the children of these partitions (revoked).
        case drop([Int32])
        /// Take over these children (restored from the changelog); those written under another rule pack
        /// (by id, with its manifest) are carried to the current one.
        case adopt([ChildState], carried: [String: PackManifest])
        /// From here on, evaluate under another rule pack (every shard gets it at the same point).
        case switchRules(RuleSwitch)
    }
    let epoch: Int
    let batch: InputBatch
    var items: [Item]
    /// The events of the `.event` items, in their order, as intake decoded them (each message is decoded once).
    var events = PackedEvents()
    /// The child id hashes (`stableHash`) of the `.event` items, in their order: the shard asks its engine to
    /// load what the next few will read while it evaluates one (`Engine.prefetch`).
    var childHashes: [UInt64] = []
}

/// A switch of rule pack, as every shard applies it.
struct RuleSwitch: Sendable {
    let rules: CompiledRuleSet
    let change: PackChange
    let pack: StatePack
}

/// What the sink's inbox carries.
enum SinkItem: Sendable {
    case plan(EpochPlan)
    case result(epoch: Int, shard: Int, ShardResult)
    case failed(PipelineError)
    case stop
}
