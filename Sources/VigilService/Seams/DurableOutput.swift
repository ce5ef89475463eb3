/// One record for an output: a Kafka message's parts, or an alert for the audit log.
public struct OutputRecord: Sendable {
    public var key: [UInt8]?
    public var value: [UInt8]
    public var headers: [(String, [UInt8])]
    /// An explicit partition (the changelog); nil lets the output choose (by key).
    public var partition: Int32?
    /// The alert id, for outputs that keep each alert at most once (the audit log).
    public var alertId: String?
    /// A note for the record (an input gap, ...), not an alert: `value` is its JSON.
    public var isNote = false

    public init(key: [UInt8]?, value: [UInt8], headers: [(String, [UInt8])] = [], partition: Int32? = nil, alertId: String? = nil,
                isNote: Bool = false) {
        self.key = key
        self.value = value
        self.headers = headers
        self.partition = partition
        self.alertId = alertId
        self.isNote = isNote
    }
}

/// A record handed to an output, named so that its report can be matched (non-zero, never reused).
public typealias DeliveryToken = UInt64

/// What an output says of a record it was given.
public enum DeliveryOutcome: Sendable, Equatable {
    /// It survives a crash of this process (fsynced; acknowledged by the broker).
    case durable
    /// It did not get there. `retriable`: writing it again may succeed (a broker outage); otherwise it never
    /// will (a full disk, a record the broker refuses), and waiting for it would stall.
    case failed(reason: String, retriable: Bool)
}

/// The reports of the outputs of one pipeline, collected on the sink thread and read by it.
public final class DeliveryReports: @unchecked Sendable {
    private var items: [(DeliveryToken, DeliveryOutcome)] = []

    public init() {}

    /// Called by an output, on the sink thread (from `write`, `flush` or `close`).
    public func report(_ token: DeliveryToken, _ outcome: DeliveryOutcome) { items.append((token, outcome)) }

    /// Everything reported since the last call.
    public func take() -> [(DeliveryToken, DeliveryOutcome)] {
        defer { items.removeAll(keepingCapacity: true) }
        return items
    }

    public var isEmpty: Bool { items.isEmpty }
}

/// A place records must reach before the input that caused them may be considered done: the audit log,
/// the alerts topic, the dead-letter topic, the changelog, or anything added beside them.
///
/// The durability contract, the same for every output, so that the epoch ledger waits for all of them
/// alike:
/// - `write` hands over a record under a token. It is not durable yet.
/// - Every token is reported exactly once, to the `DeliveryReports` the output was made with: `.durable` once
///   the record would survive a crash of this process, or `.failed`. Reports are made on the calling
///   thread, inside `write`, `flush` or `close`, never from another thread.
/// - `flush` makes progress (fsyncs what was written, serves the broker's acknowledgements), waiting up to
///   `waitMs` when there is nothing to report yet. An output sharing a client with others may report their
///   tokens too.
/// - A record written again after a failure gets a new token; a late report for the old one is ignored.
///
/// Threading: every method is called on the sink thread only.
public protocol DurableOutput: AnyObject {
    /// For logs and errors: the topic or file.
    var name: String { get }
    func write(_ record: OutputRecord, token: DeliveryToken)
    func flush(waitMs: Int32)
    /// At shutdown: waits up to `timeoutMs` for every record written to be reported; false if some are not.
    func close(timeoutMs: Int32) -> Bool
}

/// The outputs of a pipeline, by what goes to them.
public struct PipelineOutputs {
    /// Every alert goes to each of these (in this order): the audit log, the alerts topic, ...
    public var alerts: [DurableOutput]
    /// Every invalid message goes to each of these.
    public var deadLetters: [DurableOutput]
    /// Engine state, by input partition (records carry their partition).
    public var changelog: DurableOutput
    /// Notes for the record (input gaps, rule packs): the audit log.
    public var notes: [DurableOutput]
    /// Alerts of rules in shadow mode go to each of these instead of `alerts`: the audit log (marked shadow)
    /// and the shadow topic, never the duty managers' feed.
    public var shadowAlerts: [DurableOutput]

    public init(alerts: [DurableOutput], deadLetters: [DurableOutput], changelog: DurableOutput, notes: [DurableOutput] = [],
                shadowAlerts: [DurableOutput] = []) {
        self.alerts = alerts
        self.deadLetters = deadLetters
        self.changelog = changelog
        self.notes = notes
        self.shadowAlerts = shadowAlerts
    }

    /// Every output once, in a fixed order (alerts, dead letters, changelog, notes).
    public var all: [DurableOutput] {
        var out: [DurableOutput] = []
        for o in alerts + deadLetters + [changelog] + notes + shadowAlerts where !out.contains(where: { $0 === o }) { out.append(o) }
        return out
    }
}
