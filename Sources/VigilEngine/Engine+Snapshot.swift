import VigilContract
import VigilRules

/// Everything an engine holds, as a value that can be encoded (it is `Codable`) and restored.
///
/// A snapshot names the rule versions it was taken under; restoring it under a different rule set is
/// refused rather than silently misapplied (rule and state indexes would not line up).
public struct EngineSnapshot: Sendable, Codable {
    public var ruleVersions: [String]
    public var children: [ChildState]
    public var seq: UInt64
    public var clock: Instant
    public var stats: EngineStats

    public init(ruleVersions: [String], children: [ChildState], seq: UInt64, clock: Instant, stats: EngineStats) {
        self.ruleVersions = ruleVersions
        self.children = children
        self.seq = seq
        self.clock = clock
        self.stats = stats
    }

    /// The version list a snapshot of an engine for `rules` carries.
    public static func versions(of rules: CompiledRuleSet) -> [String] { rules.rules.map { "\($0.id)@\($0.version)" } }
}

extension Engine {
    public func snapshot() -> EngineSnapshot {
        EngineSnapshot(ruleVersions: rules.rules.map { "\($0.id)@\($0.version)" }, children: children, seq: seq, clock: clock, stats: stats)
    }

    public struct RestoreError: Error, CustomStringConvertible {
        public let reason: String
        public var description: String { reason }
    }

    /// An engine in the state of `snapshot`, for the same rule set.
    public init(rules: CompiledRuleSet, restoring snapshot: EngineSnapshot, limits: EngineLimits = EngineLimits()) throws(RestoreError) {
        self.init(rules: rules, limits: limits)
        let versions = rules.rules.map { "\($0.id)@\($0.version)" }
        guard versions == snapshot.ruleVersions else {
            throw RestoreError(reason: "the snapshot was taken under different rules (\(snapshot.ruleVersions.count) rules, versions differ)")
        }
        children = snapshot.children
        seq = snapshot.seq
        clock = snapshot.clock
        stats = snapshot.stats
        for (i, c) in children.enumerated() {
            index.insert(i, hash: stableHash(c.id))
        }
        // Rebuild the deadline queue from the pending expectations, keeping their arming order.
        for (i, c) in children.enumerated() {
            let d = Int(max(c.domain, 0))
            while queues.count <= d { queues.append(DeadlineQueue()) }
            for p in c.now.pending { queues[d].push(Timer(deadline: p.deadline, seq: p.seq, child: Int32(i), pending: p.id)) }
        }
    }
}
