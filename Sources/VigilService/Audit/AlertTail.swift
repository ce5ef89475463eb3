#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import VigilContract
import VigilEngine
import VigilKafka
import VigilRules

/// An alert as read back from the audit log or the alerts topic.
public struct TailedAlert: Sendable {
    public let json: JSONValue
    public let text: String

    public init(json: JSONValue, text: String) {
        self.json = json
        self.text = text
    }

    public var ruleId: String { json["rule_id"]?.stringValue ?? "?" }
    public var severity: String { json["severity"]?.stringValue ?? "?" }
    public var childId: String { json["child_id"]?.stringValue ?? "?" }
    public var firedAt: String { json["fired_at"]?.stringValue ?? "?" }
    public var status: String { json["status"]?.stringValue ?? "fired" }
    public var summary: String { json["summary"]?.stringValue ?? "" }

    /// For an alert a late record caused (raised with `fired_at` in the past, or withdrawn): that record's id,
    /// and how late it was recorded (`recorded_at` against `occurred_at`) when it says.
    public var late: (eventId: String, seconds: Int64?)? {
        guard let l = json["late"], let id = l["event_id"]?.stringValue else { return nil }
        guard let o = l["occurred_at"]?.stringValue.flatMap(RFC3339.parseDateTime),
              let r = l["recorded_at"]?.stringValue.flatMap(RFC3339.parseDateTime) else { return (id, nil) }
        return (id, (r.micros - o.micros) / Instant.microsPerSecond)
    }

    /// The ids of the events the alert cites, in its order.
    public var evidenceIds: [String] {
        guard case .array(let items)? = json["evidence"] else { return [] }
        return items.compactMap { $0["event_id"]?.stringValue }
    }

    /// A note of the audit log (an input gap), not an alert.
    public var isNote: Bool { json["kind"] != nil && json["alert_id"] == nil }

    /// `fired_at  severity  [WITHDRAWN|LATE|BACKFILL] rule  child  summary  [(record E recorded N days late)]  [evidence
    /// E1, E2]` (times UTC, as in the alert; at most 5 evidence ids, then how many more), or for
    /// a note `detected_at  NOTE      input-gap  topic[partition] offsets from..to deleted before read (action)`
    /// or `detected_at  NOTE      rule-pack  <digest> accepted (sighup; previous <digest>): 23 rules, 1 new`.
    public var line: String { line(in: nil) }

    /// `line` with `fired_at` in `zone`, with its offset (`2007-04-12T00:00:00+01:00`), as a person reads it;
    /// UTC without a zone.
    public func line(in zone: ZoneTable?) -> String {
        if isNote {
            let j = json
            let detail: String
            switch j["kind"]?.stringValue {
            case "input-gap":
                detail = "\(j["topic"]?.stringValue ?? "?")[\(j["partition"]?.intValue ?? -1)] offsets \(j["from"]?.intValue ?? 0) to \((j["to"]?.intValue ?? 1) - 1) deleted before they were read (\(j["action"]?.stringValue ?? "?"))"
            case "rule-pack":
                let by = j["loaded_by"]?.stringValue ?? "?"
                if j["status"]?.stringValue == "refused" {
                    detail = "refused (\(by)): \(j["reason"]?.stringValue ?? "?"); still running \(j["previous"]?.stringValue ?? "?")"
                } else {
                    var counts: [String: Int] = [:]
                    for r in j["rules"]?.arrayValue ?? [] { counts[r["change"]?.stringValue ?? "", default: 0] += 1 }
                    let removed = j["removed"]?.arrayValue?.count ?? 0
                    if removed > 0 { counts["removed"] = removed }
                    let classes = ["cosmetic", "retimed", "changed", "new", "removed"].compactMap { c in counts[c].map { "\($0) \(c)" } }
                    let rules = j["rules"]?.arrayValue?.count ?? 0
                    detail = "\(j["digest"]?.stringValue ?? "?") accepted (\(by)\(j["previous"]?.stringValue.map { "; previous \($0)" } ?? "")): \(rules) rules"
                        + (classes.isEmpty ? "" : ", " + classes.joined(separator: ", "))
                }
            default:
                detail = j.jsonText
            }
            return "\(j["detected_at"]?.stringValue ?? "?")  NOTE      \(j["kind"]?.stringValue ?? "?")  \(detail)".escapingControlCharacters
        }
        let sev = severity.count >= 8 ? severity : severity + String(repeating: " ", count: 8 - severity.count)
        let mark = status == "withdrawn" ? "WITHDRAWN " : late != nil ? "LATE " : json["backfill"]?.boolValue == true ? "BACKFILL " : ""
        var why = ""
        if let l = late {
            let delay = l.seconds.map { " recorded \(Self.duration($0)) after it occurred" } ?? " arrived late"
            why = "  (record \(l.eventId)\(delay))"
        }
        let ids = evidenceIds
        let evidence = ids.isEmpty ? "" : "  [evidence \(ids.prefix(5).joined(separator: ", "))\(ids.count > 5 ? " and \(ids.count - 5) more" : "")]"
        // Everything here came from a record: a control character must not reach the terminal.
        let when = zone.flatMap { z in RFC3339.parseDateTime(firedAt).map(z.format) } ?? firedAt
        return "\(when)  \(sev)  \(mark)\(ruleId)  \(childId)  \(summary)\(why)\(evidence)".escapingControlCharacters
    }

    static func duration(_ seconds: Int64) -> String {
        if seconds >= 2 * 86_400 { return "\(seconds / 86_400) days" }
        if seconds >= 2 * 3600 { return "\(seconds / 3600) hours" }
        return "\(seconds / 60) minutes"
    }
}

extension TailedAlert {
    /// An alert the engine raised, as its JSON (what the log and the topic hold) reads back: one text layout
    /// for `vigil tail`, `vigil replay --format text` and the demo.
    public init(_ alert: Alert, _ formatter: AlertFormatter) {
        let bytes = formatter.jsonBytes(alert)
        self.init(json: (try? JSONValue.parse(bytes)) ?? .null, text: String(decoding: bytes, as: UTF8.self))
    }
}

/// Which alerts `vigil tail` shows.
public struct AlertFilter: Sendable {
    static let ranks = ["low": 0, "medium": 1, "high": 2, "critical": 3]
    public var minimumSeverity: String?
    public var rules: Set<String> = []
    public var children: Set<String> = []
    /// Only alerts with `fired_at` at or after this instant.
    public var since: Instant?

    public init(minimumSeverity: String? = nil, rules: Set<String> = [], children: Set<String> = [], since: Instant? = nil) {
        self.minimumSeverity = minimumSeverity
        self.rules = rules
        self.children = children
        self.since = since
    }

    public func accepts(_ a: TailedAlert) -> Bool {
        // Notes (input gaps) concern every rule and child: shown unless the view is narrowed to some.
        if a.isNote { return rules.isEmpty && children.isEmpty }
        if let m = minimumSeverity, (AlertFilter.ranks[a.severity] ?? -1) < (AlertFilter.ranks[m] ?? 0) { return false }
        if !rules.isEmpty, !rules.contains(a.ruleId) { return false }
        if !children.isEmpty, !children.contains(a.childId) { return false }
        if let since, let t = RFC3339.parseDateTime(a.firedAt), t < since { return false }
        return true
    }

    public static func isSeverity(_ s: String) -> Bool { ranks[s] != nil }
}

/// Reads alerts (and notes) from an audit log, and keeps reading as it grows (like `tail -F`): from the
/// start, its closed segments first, then the active file; when the active file is rotated (renamed to a
/// closed segment, a new one opened), the rest of the old file is read through the descriptor still open on
/// it, then any segment closed since, then the new file. Partial lines are held back until complete; a
/// record already read (by `seq`) is never returned twice; a file that shrinks in place is read again.
public final class AuditFollower {
    public let path: String
    let segments: AuditSegments
    var fd: Int32 = -1
    var inode: ino_t = 0
    var offset: Int64 = 0
    var pending: [UInt8] = []
    /// The last record read, by sequence number.
    var lastSeq = 0
    /// Closed segments to read before the active file.
    var backlog: [String] = []

    public init(path: String, fromEnd: Bool) {
        self.path = path
        segments = AuditSegments(activePath: path)
        if fromEnd {
            if openActive() { offset = Int64(lseek(fd, 0, SEEK_END)) }
            lastSeq = Int.max
        } else {
            backlog = segments.closed().map(\.path)
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    private func openActive() -> Bool {
        let f = open(path, O_RDONLY | O_CLOEXEC)
        guard f >= 0 else { return false }
        var st = stat()
        fstat(f, &st)
        fd = f
        inode = st.st_ino
        offset = 0
        pending = []
        return true
    }

    /// Alerts and notes appended since the last call (complete lines only).
    public func poll() -> [TailedAlert] {
        var out: [TailedAlert] = []
        while let next = backlog.first {
            backlog.removeFirst()
            if let data = FileManager.default.contents(atPath: next) { take([UInt8](data), into: &out, complete: true) }
        }
        if fd < 0 && !openActive() { return out }
        readActive(into: &out)
        var st = stat()
        if stat(path, &st) != 0 || st.st_ino != inode {
            // Rotated: what was written to the old file before the rename is still readable through `fd`.
            readActive(into: &out)
            close(fd)
            fd = -1
            let after = lastSeq
            for f in segments.closed() where (f.first ?? 0) > after {
                if let data = FileManager.default.contents(atPath: f.path) { take([UInt8](data), into: &out, complete: true) }
            }
            if openActive() { readActive(into: &out) }
        }
        return out
    }

    private func readActive(into out: inout [TailedAlert]) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return }
        if Int64(st.st_size) < offset {
            // Shrunk in place: read it again; `seq` keeps out what was shown (unless it starts over at 1).
            offset = 0
            pending = []
        }
        guard Int64(st.st_size) > offset else { return }
        var buf = [UInt8](repeating: 0, count: Int(Int64(st.st_size) - offset))
        let got = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
        guard got > 0 else { return }
        offset += Int64(got)
        take(Array(buf[0..<got]), into: &out, complete: false)
    }

    private func take(_ bytes: [UInt8], into out: inout [TailedAlert], complete: Bool) {
        let buffer = complete ? bytes : pending + bytes
        var start = buffer.startIndex
        defer { if !complete { pending = Array(buffer[start...]) } }
        // One pass: a closed segment can be a gigabyte.
        while let nl = buffer[start...].firstIndex(of: 0x0A) {
            let line = Array(buffer[start..<nl])
            start = nl + 1
            guard let v = try? JSONValue.parse(line) else { continue }
            let seq = v["seq"]?.intValue.map(Int.init) ?? 0
            if seq == 1 && lastSeq != Int.max { lastSeq = 0 }
            if lastSeq != Int.max && seq <= lastSeq { continue }
            if lastSeq != Int.max || seq > 0 { lastSeq = seq }
            if let entry = v["alert"] ?? v["note"] { out.append(TailedAlert(json: entry, text: entry.jsonText)) }
        }
    }
}

/// Reads alerts from the alerts topic, every partition, from the beginning or the end. Never commits.
public final class TopicFollower {
    let consumer: KafkaConsumer

    public init(brokers: String, topic: String, fromEnd: Bool, properties: [String], logger: Logger) throws {
        consumer = try Self.reader(brokers: brokers, properties: properties, group: "vigil-tail-\(getpid())-\(Int(Date().timeIntervalSince1970))", logger: logger)
        let partitions = try consumer.partitions(of: topic)
        try consumer.assign(partitions.map { (TopicPartition(topic, $0), fromEnd ? KafkaOffset.end : .beginning) })
    }

    /// A consumer that only reads the alerts topic: its own group, never committing or storing an offset.
    /// `properties` are librdkafka settings passed through (`-X`, e.g. TLS).
    static func reader(brokers: String, properties: [String], group: String, logger: Logger) throws -> KafkaConsumer {
        var c = KafkaConfig(bootstrapServers: brokers)
        try c.apply(passThrough: properties)
        c.set("group.id", group)
        c.set("enable.auto.commit", "false")
        c.set("enable.auto.offset.store", "false")
        c.set("fetch.wait.max.ms", "50")
        return try KafkaConsumer(config: c, logger: logger)
    }

    /// Alerts received within `timeoutMs`.
    public func poll(timeoutMs: Int32 = 200) -> [TailedAlert] {
        let batch = consumer.poll(max: 500, timeoutMs: timeoutMs)
        var out: [TailedAlert] = []
        for m in batch.messages where m.errorCode == 0 {
            if let v = try? JSONValue.parse(Array(m.value)) { out.append(TailedAlert(json: v, text: v.jsonText)) }
        }
        return out
    }

    public func close() { consumer.close() }
}
