import VigilContract
import VigilEngine

/// Counters reported at shutdown (`vigil run --stats-file`, and the log).
public struct PipelineSummary: Sendable {
    public var messages = 0
    public var events = 0
    public var deadLetters = 0
    public var deadLettersByKind: [String: Int] = [:]
    public var alerts = 0
    public var alertsByRule: [String: Int] = [:]
    public var withdrawn = 0
    /// Of the alerts, those of rules in shadow mode.
    public var shadowAlerts = 0
    public var auditWritten = 0
    public var auditSkippedDuplicates = 0
    /// Seals made, rotations done, and seal heads an anchor could not take.
    public var auditSeals = 0
    public var auditRotations = 0
    public var auditAnchorFailures = 0
    public var deliveryRetries = 0
    public var checkpoints = 0
    /// Child state records written to the changelog.
    public var stateRecords = 0
    public var restoredChildren = 0
    /// Events skipped on restore because a child's state already held them.
    public var skippedRestored = 0
    /// Events for children last seen on another input partition (input not keyed by child id).
    public var domainChanges = 0
    /// Input gaps found (input deleted before it was read).
    public var inputGaps = 0
    public var engine = EngineStats()
    public var auditHead: (seq: Int, hash: String) = (0, AuditLog.genesis)
    /// Wall-clock times: the first message consumed, and the last batch made durable.
    public var firstMessageAt: Instant?
    public var lastDurableAt: Instant?

    /// The counters as JSON (`vigil run --stats-file`).
    public var json: String {
        var w = JSONWriter()
        w.raw("{")
        w.key("messages"); w.int(Int64(messages))
        w.raw(","); w.key("events"); w.int(Int64(events))
        w.raw(","); w.key("dead_letters"); w.int(Int64(deadLetters))
        w.raw(","); w.key("alerts"); w.int(Int64(alerts))
        w.raw(","); w.key("withdrawn"); w.int(Int64(withdrawn))
        w.raw(","); w.key("shadow_alerts"); w.int(Int64(shadowAlerts))
        w.raw(","); w.key("rederived"); w.int(Int64(engine.rederived))
        w.raw(","); w.key("backfilled"); w.int(Int64(engine.backfilled))
        w.raw(","); w.key("late_events"); w.int(Int64(engine.lateEvents))
        w.raw(","); w.key("raised_late"); w.int(Int64(engine.raisedLate))
        w.raw(","); w.key("late_beyond_horizon"); w.int(Int64(engine.lateBeyondHorizon))
        w.raw(","); w.key("input_gaps"); w.int(Int64(inputGaps))
        w.raw(","); w.key("evicted"); w.int(Int64(engine.evicted))
        w.raw(","); w.key("pending_refused"); w.int(Int64(engine.pendingRefused))
        w.raw(","); w.key("overflow_drops"); w.int(Int64(engine.overflowDrops))
        w.raw(","); w.key("timeline_overflow"); w.int(Int64(engine.timelineOverflow))
        w.raw(","); w.key("state_degraded"); w.int(Int64(engine.stateDegraded))
        w.raw(","); w.key("audit_written"); w.int(Int64(auditWritten))
        w.raw(","); w.key("audit_seals"); w.int(Int64(auditSeals))
        w.raw(","); w.key("audit_rotations"); w.int(Int64(auditRotations))
        w.raw(","); w.key("audit_anchor_failures"); w.int(Int64(auditAnchorFailures))
        w.raw(","); w.key("duplicates"); w.int(Int64(engine.duplicates))
        w.raw(","); w.key("delivery_retries"); w.int(Int64(deliveryRetries))
        w.raw(","); w.key("checkpoints"); w.int(Int64(checkpoints))
        w.raw(","); w.key("state_records"); w.int(Int64(stateRecords))
        w.raw(","); w.key("restored_children"); w.int(Int64(restoredChildren))
        w.raw(","); w.key("skipped_restored"); w.int(Int64(skippedRestored))
        if let t = firstMessageAt { w.raw(","); w.key("first_message_at_us"); w.int(t.micros) }
        if let t = lastDurableAt { w.raw(","); w.key("last_durable_at_us"); w.int(t.micros) }
        w.raw("}")
        return w.text
    }

    init(counters: PipelineCounters, ledger: EpochLedger.Stats, audit: AuditLogOutput?, engines: [EngineStats]) {
        messages = counters.messages.load(ordering: .relaxed)
        events = counters.events.load(ordering: .relaxed)
        restoredChildren = counters.restoredChildren.load(ordering: .relaxed)
        skippedRestored = counters.skippedRestored.load(ordering: .relaxed)
        domainChanges = counters.domainChanges.load(ordering: .relaxed)
        inputGaps = counters.inputGaps.load(ordering: .relaxed)
        let first = counters.firstMessageAt.load(ordering: .relaxed), last = counters.lastDurableAt.load(ordering: .relaxed)
        firstMessageAt = first == 0 ? nil : Instant(micros: first)
        lastDurableAt = last == 0 ? nil : Instant(micros: last)
        alerts = ledger.alerts
        withdrawn = ledger.withdrawn
        shadowAlerts = ledger.shadow
        alertsByRule = ledger.alertsByRule
        deadLetters = ledger.deadLetters
        deadLettersByKind = ledger.deadLettersByKind
        deliveryRetries = ledger.retries
        checkpoints = ledger.checkpoints
        stateRecords = ledger.stateRecords
        if let audit {
            auditWritten = audit.written
            auditSkippedDuplicates = audit.skippedDuplicates
            auditHead = (audit.writer.seq, audit.writer.head)
            auditSeals = audit.writer.seals
            auditRotations = audit.writer.rotations
            auditAnchorFailures = audit.writer.anchorFailures
        }
        for e in engines { engine.add(e) }
    }
}
