#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import VigilContract

/// `--log-format json`: one JSON object a line on standard error, for log shippers (Fluent Bit, Vector,
/// Promtail): `ts` (UTC, microseconds), `level`, `logger`, `source` (the module), `message`, then the
/// metadata as string fields (partition, offset, epoch, rule, alert_id, ...). Like the text format it carries
/// ids, never payloads: what is logged is the same, only the layout differs.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    /// One line at a time: lines from several threads never interleave.
    private static let lock = NSLock()

    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let m = event.metadata { all.merge(m) { _, new in new } }
        let line = Self.line(at: .now, level: event.level, label: label, source: event.source, message: "\(event.message)", metadata: all)
        Self.lock.lock()
        defer { Self.lock.unlock() }
        line.withUnsafeBufferPointer { b in
            var done = 0
            while done < b.count {
                let n = write(2, b.baseAddress.map { $0 + done }, b.count - done)
                if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { break }
            }
        }
    }

    /// The line (with its newline) for one event: the fields in a fixed order, then the metadata by key.
    static func line(at time: Instant, level: Logger.Level, label: String, source: String, message: String, metadata: Logger.Metadata) -> [UInt8] {
        var w = JSONWriter(capacity: 256)
        w.raw("{")
        w.key("ts"); w.string(time.description)
        w.raw(","); w.key("level"); w.string(level.rawValue)
        w.raw(","); w.key("logger"); w.string(label)
        w.raw(","); w.key("source"); w.string(source)
        w.raw(","); w.key("message"); w.string(message)
        for (k, v) in metadata.sorted(by: { $0.key < $1.key }) where !["ts", "level", "logger", "source", "message"].contains(k) {
            w.raw(",")
            w.string(k)
            w.raw(":")
            w.string("\(v)")
        }
        w.raw("}\n")
        return w.bytes
    }
}

/// How logs are written: `text` (swift-log's stream format) or `json` (`JSONLogHandler`).
public enum LogFormat: String, CaseIterable, Sendable {
    case text, json
}
