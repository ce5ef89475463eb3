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

    public init(writer: AuditLogWriter, reports: DeliveryReports) {
        self.writer = writer
        self.reports = reports
    }

    public var name: String { "audit log \(writer.path)" }

    public func write(_ record: OutputRecord, token: DeliveryToken) {
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
        guard !unsynced.isEmpty else { return }
        let tokens = unsynced
        unsynced.removeAll(keepingCapacity: true)
        do {
            try writer.sync()
            for t in tokens { reports.report(t, .durable) }
        } catch {
            for t in tokens { reports.report(t, .failed(reason: error.description, retriable: false)) }
        }
    }

    public func close(timeoutMs: Int32) -> Bool {
        flush(waitMs: 0)
        return unsynced.isEmpty
    }
}
