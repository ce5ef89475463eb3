import Foundation
import Logging
import VigilContract
import VigilEngine
import VigilKafka
import VigilRules

/// What `vigil explain` reads: one child's events from event files, and an alert by id from an audit log or a
/// file of alerts (JSON Lines, as `vigil replay` writes them or `kcat -C -e` reads them off the topic).
public enum ExplainInput {
    public struct Events: Sendable {
        /// The child's valid events, in file order.
        public var records: [EventRecord] = []
        /// The latest `occurred_at` of any valid event read (the replay's clock at the end).
        public var clock: Instant?
        public var invalid = 0
    }

    /// Reads `files`, keeping the valid events of `child`.
    public static func events(_ files: [String], child: String, rules: CompiledRuleSet) throws -> Events {
        let decoder = EventDecoder(contract: rules.contract, slots: Engine.decodedSlots(rules))
        let c = rules.contract
        var out = Events()
        for path in files {
            let reader = try LineReader(path: path == "-" ? "/dev/stdin" : path, maxLine: decoder.maxBytes)
            var record = decoder.makeRecord()
            while let _ = reader.next({ line -> Bool in
                if line.bytes.isEmpty && line.length == 0 { return true }
                guard !line.oversized, decoder.decode(line.bytes, into: &record) == nil else {
                    out.invalid += 1
                    return true
                }
                if case .instant(let at) = record[c.occurredAtSlot], out.clock.map({ at > $0 }) ?? true { out.clock = at }
                if case .string(let id) = record[c.childIdSlot], id == child { out.records.append(record) }
                return true
            }) {}
            try reader.checkRead()
        }
        return out
    }

    public enum AlertLookup: Error, CustomStringConvertible {
        case notFound(String, in: String)
        public var description: String {
            switch self {
            case .notFound(let id, let source): return "no alert '\(id)' in \(source)"
            }
        }
    }

    /// The alert with this id (or the withdrawal of it, if that is all there is) from an audit log (its file or
    /// directory; rotated segments read too).
    public static func alert(_ id: String, audit: String) throws -> TailedAlert {
        var path = audit
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: audit, isDirectory: &isDir), isDir.boolValue,
           let log = AuditSegments.logs(in: audit).first {
            path = log.activePath
        }
        let all = AuditFollower(path: path, fromEnd: false).poll()
        guard let a = all.first(where: { $0.json["alert_id"]?.stringValue == id }) else { throw AlertLookup.notFound(id, in: audit) }
        return a
    }

    /// The alert with this id from the alerts topic, read from the beginning to its end (never committing).
    public static func alert(_ id: String, brokers: String, topic: String, properties: [String], logger: Logger) throws -> TailedAlert {
        let consumer = try TopicFollower.reader(brokers: brokers, properties: properties, group: "vigil-explain-\(getpid())", logger: logger)
        defer { consumer.close() }
        let needle = Array(("\"" + id + "\"").utf8)
        var found: TailedAlert?
        try consumer.readToEnd(topic) { m in
            let bytes = Array(m.value)
            guard bytes.firstRange(of: needle) != nil, let json = try? JSONValue.parse(bytes), json["alert_id"]?.stringValue == id else { return true }
            found = TailedAlert(json: json, text: json.jsonText)
            return false
        }
        guard let found else { throw AlertLookup.notFound(id, in: "topic \(topic)") }
        return found
    }

    /// The alert with this id from a file of alerts, one JSON object per line.
    public static func alert(_ id: String, alertsFile: String) throws -> TailedAlert {
        let text = try String(contentsOfFile: alertsFile, encoding: .utf8)
        for line in text.split(separator: "\n") {
            guard line.contains(id), let json = try? JSONValue.parse(String(line)),
                  json["alert_id"]?.stringValue == id else { continue }
            return TailedAlert(json: json, text: String(line))
        }
        throw AlertLookup.notFound(id, in: alertsFile)
    }
}

/// What an alert says, for a person: its rule (and whether the pack at hand is the version that raised it),
/// its times in the pack's zone, its evidence, and, for a deadline, how the deadline was computed from the
/// event that armed it (the first evidence).
public struct AlertExplanation {
    public let alert: TailedAlert
    public let rules: CompiledRuleSet
    let explainer: Explainer

    public init(alert: TailedAlert, rules: CompiledRuleSet) {
        self.alert = alert
        self.rules = rules
        explainer = Explainer(rules: rules)
    }

    func time(_ key: String, in json: JSONValue) -> String {
        guard let s = json[key]?.stringValue else { return "-" }
        return RFC3339.parseDateTime(s).map(explainer.when) ?? s
    }

    public var lines: [String] {
        let j = alert.json
        var out: [String] = []
        out.append("alert \(j["alert_id"]?.stringValue ?? "?") (\(alert.status)\(j["backfill"]?.boolValue == true ? ", backfill" : "")\(j["late"] != nil ? ", raised by a late record" : ""))")
        let ruleId = alert.ruleId
        let version = j["rule_version"]?.stringValue ?? "?"
        let rule = rules.rule(id: ruleId)
        out.append("  rule      \(ruleId) version \(version)" + (rule.map { ": \($0.title)" } ?? ""))
        if let rule {
            if rule.version != version {
                out.append("            the pack given has version \(rule.version) of this rule: what follows is today's rule, not the one that fired")
            }
        } else {
            out.append("            the pack given has no rule '\(ruleId)': pass the pack that raised it with --rules")
        }
        out.append("  child     \(alert.childId)")
        out.append("  fired at  \(time("fired_at", in: j))")
        if j["deadline"] != nil { out.append("  deadline  \(time("deadline", in: j))") }
        out.append("  summary   \(alert.summary)")
        if case .array(let evidence)? = j["evidence"] {
            out.append("  evidence")
            for (k, e) in evidence.enumerated() {
                let role = k == 0 ? (j["deadline"] != nil ? "armed it" : "triggered it") : "cited"
                out.append("    \(e["event_id"]?.stringValue ?? "?")  \(e["type"]?.stringValue ?? "?") by \(e["agency"]?.stringValue ?? "?") at \(time("occurred_at", in: e))  (\(role))")
            }
        }
        if let rule, let exp = rule.expectation,
           let due = j["deadline"]?.stringValue.flatMap(RFC3339.parseDateTime),
           case .array(let evidence)? = j["evidence"], let armedAt = evidence.first?["occurred_at"]?.stringValue.flatMap(RFC3339.parseDateTime) {
            let empty = EventRecord(slotCount: rules.contract.slotCount)
            let matching = exp.arms.filter { arm in
                switch arm.deadline {
                case .dateFieldPlusDays, .dateFieldPlusMonths, .instantFieldPlus: return false
                default: return explainer.deadline(arm.deadline, armedAt: armedAt) == due
                }
            }
            if let arm = matching.first {
                out.append("  how the deadline was computed (from the arming event's time)")
                out += explainer.arithmetic(arm.deadline, empty, armedAt: armedAt, due: due).map { "    " + $0 }
            } else if !exp.arms.isEmpty {
                out.append("  the deadline comes from a field of the arming event (or another pack): give --events to see it computed")
            }
        }
        return out
    }
}
