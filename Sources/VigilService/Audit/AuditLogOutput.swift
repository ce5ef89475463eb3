/// The audit log as an alert output: each alert appended at most once (by id), durable at the next fsync.
///
/// `write` appends; `flush` fsyncs once for everything appended since, then reports it all durable. A write
/// or fsync failure (a full disk, a permission taken away) is reported as a failure no retry cures.
public final class AuditLogOutput: DurableOutput {
    public let writer: AuditLogWriter
    private let reports: DeliveryReports
    private var unsynced: [DeliveryToken] = []
    /// Alerts appended, and alerts the log already held (re-raised after a restart).
    public private(set) var written = 0
    public private(set) var skippedDuplicates = 0
    /// Notes appended (input gaps).
    public private(set) var notes = 0

    /// Told of every fsync (with the seal before it): its duration in microseconds, and whether it failed.
    public var syncObserver: ((_ micros: Int64, _ failed: Bool) -> Void)?

    public init(writer: AuditLogWriter, reports: DeliveryReports) {
        self.writer = writer
        self.reports = reports
    }

    public var name: String { "audit log \(writer.path)" }

    public func write(_ record: OutputRecord, token: DeliveryToken) {
        if let failure {
            reports.report(token, .failed(reason: failure.description, retriable: false))
            return
        }
        do {
            if record.isNote {
                try writer.appendNote(record.value)
                notes += 1
            } else if try writer.append(alertId: record.alertId ?? "", alertJSON: record.value) { written += 1 } else { skippedDuplicates += 1 }
            unsynced.append(token)
        } catch {
            reports.report(token, .failed(reason: error.description, retriable: false))
        }
    }

    public func flush(waitMs: Int32) {
        // Cheap when there is nothing to do: the sink calls this every few milliseconds.
        let now = writer.now()
        let sealReason = writer.sealDue(at: now)
        guard !unsynced.isEmpty || sealReason != nil || writer.rotationDue(at: now) else { return }
        let tokens = unsynced
        unsynced.removeAll(keepingCapacity: true)
        let started: ContinuousClock.Instant? = syncObserver == nil ? nil : .now
        do {
            // The seal goes in before the fsync, which then covers both; the key evolves once it is durable.
            if let sealReason { try writer.seal(reason: sealReason) }
            try writer.sync()
            observe(since: started, failed: false)
        } catch {
            observe(since: started, failed: true)
            for t in tokens { reports.report(t, .failed(reason: error.description, retriable: false)) }
            if tokens.isEmpty { fail(error) }
            return
        }
        for t in tokens { reports.report(t, .durable) }
        // A rotation starts the next file; the records before it are durable whatever happens to it.
        do { try writer.rotateIfDue() } catch { fail(error) }
    }

    private func observe(since started: ContinuousClock.Instant?, failed: Bool) {
        guard let syncObserver, let started else { return }
        let d = ContinuousClock.now - started
        syncObserver(d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000, failed)
    }

    private func fail(_ error: AuditLogError) {
        failure = error
        writer.warn("\(error): the next alert fails with it")
    }

    /// A seal or rotation that failed with nothing waiting to be reported: the next write fails with it.
    private var failure: AuditLogError?

    public func close(timeoutMs: Int32) -> Bool {
        flush(waitMs: 0)
        do { try writer.close() } catch {
            writer.warn("\(error)")
            return false
        }
        return unsynced.isEmpty
    }
}
