import Crypto
import Synchronization
import VigilContract
import VigilRules

/// Where an event was read from, when it came from Kafka. The topic is held as its number in the process's
/// table of topic names (`TopicNames`: the input topics, a handful), so that a reference to an event, kept
/// for every event of every timeline and window, is of fixed size.
public struct SourcePosition: Hashable, Sendable, Codable {
    /// The topic's number in `TopicNames` (from 1).
    let topicId: UInt32
    public var partition: Int32
    public var offset: Int64

    public var topic: String { TopicNames.name(topicId) }

    public init(topic: String, partition: Int32, offset: Int64) {
        self.init(topicId: TopicNames.id(topic), partition: partition, offset: offset)
    }

    /// A position on the topic of `p` (its name not looked up again: for every message of a batch).
    public init(topicOf p: SourcePosition, partition: Int32, offset: Int64) {
        self.init(topicId: p.topicId, partition: partition, offset: offset)
    }

    init(topicId: UInt32, partition: Int32, offset: Int64) {
        self.topicId = topicId
        self.partition = partition
        self.offset = offset
    }

    enum CodingKeys: String, CodingKey { case topic, partition, offset }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(topic: try c.decode(String.self, forKey: .topic), partition: try c.decode(Int32.self, forKey: .partition),
                  offset: try c.decode(Int64.self, forKey: .offset))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(topic, forKey: .topic)
        try c.encode(partition, forKey: .partition)
        try c.encode(offset, forKey: .offset)
    }
}

/// The topic names positions refer to, numbered from 1 in the order first seen; for the life of the process.
/// Names come from configuration and from the changelog (what this process or an earlier one read from).
public enum TopicNames {
    private static let table = Mutex<(names: [String], ids: [String: UInt32])>(([], [:]))

    /// The number of `topic`, given one if it has none yet.
    static func id(_ topic: String) -> UInt32 {
        table.withLock { t in
            if let i = t.ids[topic] { return i }
            t.names.append(topic)
            let i = UInt32(t.names.count)
            t.ids[topic] = i
            return i
        }
    }

    /// The name numbered `id` (empty for a number never given, which no position holds).
    static func name(_ id: UInt32) -> String {
        table.withLock { t in id >= 1 && Int(id) <= t.names.count ? t.names[Int(id) - 1] : "" }
    }
}

/// A reference to an event, as cited in an alert's evidence. Carries no payload. Fixed-size but for its id:
/// the position is held flat (a topic number of 0 for none) rather than as an optional with a name in it.
public struct EventRef: Hashable, Sendable, Codable {
    public var eventId: String
    public var occurredAt: Instant
    private var offset: Int64 = 0
    private var partition: Int32 = 0
    /// `SourcePosition.topicId`, or 0 without a position.
    private var topicId: UInt32 = 0
    public var type: Symbol
    public var agency: Symbol

    public var position: SourcePosition? {
        get { topicId == 0 ? nil : SourcePosition(topicId: topicId, partition: partition, offset: offset) }
        set {
            topicId = newValue?.topicId ?? 0
            partition = newValue?.partition ?? 0
            offset = newValue?.offset ?? 0
        }
    }

    public init(eventId: String, type: Symbol, agency: Symbol, occurredAt: Instant, position: SourcePosition? = nil) {
        self.eventId = eventId
        self.type = type
        self.agency = agency
        self.occurredAt = occurredAt
        self.position = position
    }

    enum CodingKeys: String, CodingKey { case eventId, type, agency, occurredAt, position }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(eventId: try c.decode(String.self, forKey: .eventId), type: try c.decode(Symbol.self, forKey: .type),
                  agency: try c.decode(Symbol.self, forKey: .agency), occurredAt: try c.decode(Instant.self, forKey: .occurredAt),
                  position: try c.decodeIfPresent(SourcePosition.self, forKey: .position))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(eventId, forKey: .eventId)
        try c.encode(type, forKey: .type)
        try c.encode(agency, forKey: .agency)
        try c.encode(occurredAt, forKey: .occurredAt)
        try c.encodeIfPresent(position, forKey: .position)
    }
}

/// The record whose late arrival caused an alert (raised late, or withdrawn): how late it was is
/// `recordedAt` (or its arrival) against `occurredAt`.
public struct LateRecord: Sendable, Hashable {
    public var eventId: String
    public var occurredAt: Instant
    public var recordedAt: Instant?

    public init(eventId: String, occurredAt: Instant, recordedAt: Instant?) {
        self.eventId = eventId
        self.occurredAt = occurredAt
        self.recordedAt = recordedAt
    }
}

/// One alert, as `alert.schema.json` describes it.
public struct Alert: Sendable, Hashable {
    public enum Status: String, Sendable { case fired, withdrawn }

    public var alertId: String
    public var status: Status
    public var withdraws: String?
    public var ruleIndex: Int
    public var childId: String
    public var firedAt: Instant
    public var deadline: Instant?
    public var summary: String
    public var evidence: [EventRef]
    /// Set when a record arriving late caused this alert (raised with a `fired_at` in the past) or its
    /// withdrawal.
    public var late: LateRecord?
    /// For an alert withdrawn and later justified again: the id it had (this one is `<id>.r<revision>`).
    public var reinstates: String?
    /// Raised when the rule pack changed, for a moment before the change: the new pack's rule would have
    /// fired then (its `fired_at` is in the past).
    public var backfill = false
    /// The rule's annotations rendered for this alert, in the rule's order (`CompiledRule.annotations`).
    public var annotations: [String] = []

    public init(alertId: String, status: Status, withdraws: String?, ruleIndex: Int, childId: String, firedAt: Instant,
                deadline: Instant?, summary: String, evidence: [EventRef], late: LateRecord? = nil, reinstates: String? = nil) {
        self.alertId = alertId
        self.status = status
        self.withdraws = withdraws
        self.ruleIndex = ruleIndex
        self.childId = childId
        self.firedAt = firedAt
        self.deadline = deadline
        self.summary = summary
        self.evidence = evidence
        self.late = late
        self.reinstates = reinstates
    }

    /// `alert_id` is a pure function of the rule id, the child id, `fired_at` and the evidence event ids,
    /// so replaying the same input yields the same ids.
    public static func identity(ruleId: String, childId: String, firedAt: Instant, eventIds: [String]) -> String {
        var h = SHA256()
        var bytes: [UInt8] = Array("vigil-alert-v1\u{0}\(ruleId)\u{0}\(childId)\u{0}\(firedAt.micros)".utf8)
        for e in eventIds {
            bytes.append(0)
            bytes.append(contentsOf: e.utf8)
        }
        h.update(data: bytes)
        return "a-" + h.finalize().prefix(16).hexString
    }
}

/// Renders alerts as JSON (the alert contract) or as one readable line.
public struct AlertFormatter: Sendable {
    public let rules: CompiledRuleSet

    public init(rules: CompiledRuleSet) { self.rules = rules }

    /// One JSON object, no trailing newline. `emittedAt` is the wall clock, when the caller has one.
    public func json(_ a: Alert, emittedAt: Instant? = nil) -> String {
        String(decoding: jsonBytes(a, emittedAt: emittedAt), as: UTF8.self)
    }

    /// `json(_:emittedAt:)` as UTF-8 bytes.
    public func jsonBytes(_ a: Alert, emittedAt: Instant? = nil) -> [UInt8] {
        let rule = rules.rules[a.ruleIndex]
        let symbols = rules.contract.symbols
        var w = JSONWriter(capacity: 512)
        w.raw("{")
        w.key("schema_version"); w.raw("1")
        w.raw(","); w.key("alert_id"); w.string(a.alertId)
        w.raw(","); w.key("status"); w.string(a.status.rawValue)
        if let x = a.withdraws { w.raw(","); w.key("withdraws"); w.string(x) }
        if let x = a.reinstates { w.raw(","); w.key("reinstates"); w.string(x) }
        w.raw(","); w.key("rule_id"); w.string(rule.id)
        w.raw(","); w.key("rule_version"); w.string(rule.version)
        w.raw(","); w.key("severity"); w.string(rule.severity.rawValue)
        if !rule.title.isEmpty { w.raw(","); w.key("title"); w.string(rule.title) }
        w.raw(","); w.key("child_id"); w.string(a.childId)
        w.raw(","); w.key("fired_at"); w.string(a.firedAt.description)
        if let e = emittedAt { w.raw(","); w.key("emitted_at"); w.string(e.description) }
        if let d = a.deadline { w.raw(","); w.key("deadline"); w.string(d.description) }
        if a.backfill { w.raw(","); w.key("backfill"); w.raw("true") }
        if rule.mode == .shadow { w.raw(","); w.key("shadow"); w.raw("true") }
        if let l = a.late {
            w.raw(","); w.key("late"); w.raw("{")
            w.key("event_id"); w.string(l.eventId)
            w.raw(","); w.key("occurred_at"); w.string(l.occurredAt.description)
            if let r = l.recordedAt { w.raw(","); w.key("recorded_at"); w.string(r.description) }
            w.raw("}")
        }
        w.raw(","); w.key("summary"); w.string(a.summary)
        if !rule.labels.isEmpty {
            w.raw(","); w.key("labels"); w.raw("{")
            for (k, l) in rule.labels.enumerated() {
                if k > 0 { w.raw(",") }
                w.string(l.key); w.raw(":"); w.string(l.value)
            }
            w.raw("}")
        }
        if !a.annotations.isEmpty {
            w.raw(","); w.key("annotations"); w.raw("{")
            for (k, v) in a.annotations.enumerated() where k < rule.annotations.count {
                if k > 0 { w.raw(",") }
                w.string(rule.annotations[k].key); w.raw(":"); w.string(v)
            }
            w.raw("}")
        }
        w.raw(","); w.key("evidence"); w.raw("[")
        for (k, e) in a.evidence.enumerated() {
            if k > 0 { w.raw(",") }
            w.raw("{")
            w.key("event_id"); w.string(e.eventId)
            w.raw(","); w.key("type"); w.string(symbols.name(e.type))
            w.raw(","); w.key("agency"); w.string(symbols.name(e.agency))
            w.raw(","); w.key("occurred_at"); w.string(e.occurredAt.description)
            if let p = e.position {
                w.raw(","); w.key("topic"); w.string(p.topic)
                w.raw(","); w.key("partition"); w.int(Int64(p.partition))
                w.raw(","); w.key("offset"); w.int(p.offset)
            }
            w.raw("}")
        }
        w.raw("]}")
        return w.bytes
    }

    /// `2007-03-14T00:00:00Z  critical  unchecked-adult-with-access  C-HGY-0001  summary`
}
