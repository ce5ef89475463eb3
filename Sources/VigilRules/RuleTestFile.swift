import VigilContract
import Yams

/// One rule test: events in a compact form, an optional `until`, and the alerts expected.
///
/// ```yaml
/// - test: unchecked adult fires one working day later
///   events:
///     - plan_status: {at: 2007-03-01T10:00Z, status: started}
///     - household_member: {at: 2007-03-12T11:00Z, person_ref: P1, relationship: friend}
///   until: 2007-03-20T00:00Z
///   expect: [unchecked-adult-with-access at 2007-03-14T00:00Z]
///   expect_not: [unsuitable-explanation]
/// ```
public struct RuleTest: Sendable {
    public struct Event: Sendable {
        /// The event as contract JSON.
        public let json: String
        public let location: SourceLocation
        /// No `agency:` on the event, its test or the file's defaults: it came from the built-in default
        /// (`children_social_care`), which `vigil check --lint` warns of.
        public var impliedAgency = false
    }

    public struct Expectation: Sendable, Hashable {
        public let rule: String
        /// nil in `expect_not` means "at no time".
        public let at: Instant?
        public let location: SourceLocation
        /// The rendered summary the alert must have (`expect: [{rule: R, at: T, summary: "..."}]`).
        public var summary: String?
        /// Annotations the alert must carry, rendered (`annotations: {runbook: "..."}`); others are not checked.
        public var annotations: [String: String] = [:]
    }

    public let name: String
    public let location: SourceLocation
    public let events: [Event]
    public let until: Instant?
    /// Rules whose alerts are compared; others are ignored.
    public let scope: Set<String>
    public let expect: [Expectation]
    public let expectNot: [Expectation]
}

/// Reads rule test files, building contract-valid JSON from the compact event form.
///
/// An event is a one-key mapping `TYPE: {...}`. Inside: `at` (occurred_at, required), optional `id`,
/// `agency`, `child` (an id or a mapping), `dob`, `mobility`, `recorded_at`, `household`; every other key is
/// a `data` field, converted by the contract's kind for that field. `- defaults:` at the top of a file sets
/// `agency` and `child` for its tests; a test may set them too.
public enum RuleTestReader {
    static let testKeys = ["test", "description", "rules", "agency", "child", "events", "until", "expect", "expect_not"]
    static let reserved: Set<String> = ["at", "id", "agency", "child", "dob", "mobility", "recorded_at", "household"]

    /// `zone` reads times written without an offset (`2007-04-05T16:00`) as local time there: the pack's
    /// calendar zone. Without one such a time is an error.
    public static func read(_ file: RuleSources.File, contract: EventContract = .embedded, zone: ZoneTable? = nil)
        -> (tests: [RuleTest], diagnostics: [Diagnostic]) {
        var diags = DiagnosticBag()
        let y = YAMLFile(path: file.path, text: file.text)
        guard let root = y.compose(into: &diags) else { return ([], diags.sorted) }
        guard case .sequence(let items) = root else {
            diags.error(.notAList, "a rule test file is a YAML list of - test: items", at: y.location(root))
            return ([], diags.sorted)
        }
        var defaultAgency: String?
        var defaultChild: Node?
        var tests: [RuleTest] = []
        var names = Set<String>()
        for item in items {
            guard let entries = y.entries(item, into: &diags) else {
                diags.error(.badTest, "each item must be a mapping starting with test: (or defaults:)", at: y.location(item))
                continue
            }
            var fields: [String: (key: LocatedText, value: Node)] = [:]
            for e in entries { fields[e.key.text] = e }
            if let d = fields["defaults"] {
                guard let inner = y.entries(d.value, into: &diags) else {
                    diags.error(.badTest, "defaults: takes a mapping with agency: and child:", at: d.key.location)
                    continue
                }
                for (k, v) in inner {
                    switch k.text {
                    case "agency": defaultAgency = y.located(v)?.text
                    case "child": defaultChild = v
                    default: diags.error(.unknownKey, "unknown key '\(k.text)' in defaults (agency, child)", at: k.location)
                    }
                }
                continue
            }
            guard let nameNode = fields["test"], let name = y.located(nameNode.value), !name.text.isEmpty else {
                diags.error(.badTest, "a test needs a name: - test: NAME", at: y.location(item))
                continue
            }
            if !names.insert(name.text).inserted {
                diags.error(.duplicate, "two tests are named '\(name.text)' in this file", at: name.location)
            }
            for e in entries where !testKeys.contains(e.key.text) {
                diags.error(.unknownKey, "unknown key '\(e.key.text)' in a test", at: e.key.location,
                            notes: suggestion(for: e.key.text, among: testKeys) + ["allowed keys: \(testKeys.joined(separator: ", "))"])
            }
            let agency = fields["agency"].flatMap { y.located($0.value)?.text } ?? defaultAgency
            let child = fields["child"]?.value ?? defaultChild
            var events: [RuleTest.Event] = []
            if let ev = fields["events"] {
                guard case .sequence(let seq) = ev.value else {
                    diags.error(.badTest, "events: is a list of - TYPE: {at: ..., ...}", at: ev.key.location)
                    continue
                }
                for (k, node) in seq.enumerated() {
                    if let e = event(node, index: k + 1, agency: agency, child: child, zone: zone, y, contract, &diags) { events.append(e) }
                }
            } else {
                diags.error(.badTest, "test '\(name.text)' has no events:", at: name.location)
            }
            var until: Instant?
            if let u = fields["until"] {
                if let t = y.located(u.value), let v = instant(t.text, zone: zone) { until = v } else {
                    diags.error(.badTest, "until: must be a date-time such as 2007-03-20T00:00Z" + localHint(zone), at: y.location(u.value))
                }
            }
            let expect = expectations(fields["expect"], requireTime: true, zone: zone, y, &diags)
            let expectNot = expectations(fields["expect_not"], requireTime: false, zone: zone, y, &diags)
            if expect.isEmpty && expectNot.isEmpty {
                diags.error(.badTest, "test '\(name.text)' checks nothing: give expect: and/or expect_not:", at: name.location)
            }
            var scope = Set(expect.map(\.rule)).union(expectNot.map(\.rule))
            if let r = fields["rules"], let list = y.scalars(r.value, what: "rules", into: &diags) {
                scope.formUnion(list.map(\.text))
            }
            tests.append(RuleTest(name: name.text, location: name.location, events: events, until: until, scope: scope,
                                  expect: expect, expectNot: expectNot))
        }
        return (tests, diags.sorted)
    }

    /// Accepts RFC 3339, and also the seconds left out (`2007-03-14T00:00Z`).
    /// How a time may be written, for an error message.
    static func localHint(_ zone: ZoneTable?) -> String {
        zone.map { " (UTC with Z, an offset, or local time in \($0.identifier) without one: 2007-03-20T00:00)" } ?? " (with Z or an offset: the pack has no calendar to give local time)"
    }

    /// A time in a test: RFC 3339 (seconds and fraction optional) with `Z` or an offset; or, given `zone`, local
    /// time there without one (`2007-04-05T16:00`, seconds optional).
    public static func instant(_ s: String, zone: ZoneTable?) -> Instant? {
        if let t = instant(s) { return t }
        guard let zone, s.utf8.count == 16 || s.utf8.count == 19, s.contains("T") else { return nil }
        return zone.instant(localDateTime: s)
    }

    public static func instant(_ s: String) -> Instant? {
        if let t = RFC3339.parseDateTime(s) { return t }
        let u = Array(s.utf8)
        if u.count >= 17, u[10] == UInt8(ascii: "T"), u[13] == UInt8(ascii: ":"), u.count == 17 || u[16] == UInt8(ascii: "+") || u[16] == UInt8(ascii: "-") || u[16] == UInt8(ascii: "Z") {
            var t = s
            t.insert(contentsOf: ":00", at: t.index(t.startIndex, offsetBy: 16))
            return RFC3339.parseDateTime(t)
        }
        return nil
    }

    static func expectations(_ field: (key: LocatedText, value: Node)?, requireTime: Bool, zone: ZoneTable?, _ y: YAMLFile,
                             _ diags: inout DiagnosticBag) -> [RuleTest.Expectation] {
        guard let field else { return [] }
        var nodes: [Node] = []
        if case .sequence(let seq) = field.value { nodes = Array(seq) } else { nodes = [field.value] }
        var out: [RuleTest.Expectation] = []
        for n in nodes {
            if case .mapping = n, let entries = y.entries(n, into: &diags) {
                let rule = entries.first { $0.key.text == "rule" }.flatMap { y.located($0.value) }
                let at = entries.first { $0.key.text == "at" }.flatMap { y.located($0.value) }
                let summary = entries.first { $0.key.text == "summary" }.flatMap { y.located($0.value) }
                var annotations: [String: String] = [:]
                if let a = entries.first(where: { $0.key.text == "annotations" }) {
                    if case .mapping = a.value, let pairs = y.entries(a.value, into: &diags) {
                        for p in pairs {
                            if let v = y.located(p.value) { annotations[p.key.text] = v.text } else {
                                diags.error(.badTest, "annotation '\(p.key.text)' must be a single value (the rendered text)", at: y.location(p.value))
                            }
                        }
                    } else {
                        diags.error(.badTest, "annotations: must be a mapping of names to rendered text", at: y.location(a.value))
                    }
                }
                for e in entries where !["rule", "at", "summary", "annotations"].contains(e.key.text) {
                    diags.error(.badTest, "unknown key '\(e.key.text)' in an expectation (rule, at, summary, annotations)", at: e.key.location)
                }
                guard let rule else { diags.error(.badTest, "an expectation needs rule:", at: y.location(n)); continue }
                if (summary != nil || !annotations.isEmpty) && !requireTime {
                    diags.error(.badTest, "summary: and annotations: are for expected alerts (expect:), not expect_not:", at: y.location(n))
                }
                if let at, let t = instant(at.text, zone: zone) {
                    var e = RuleTest.Expectation(rule: rule.text, at: t, location: rule.location, summary: summary?.text)
                    e.annotations = annotations
                    out.append(e)
                } else if at == nil && !requireTime {
                    out.append(.init(rule: rule.text, at: nil, location: rule.location))
                } else {
                    diags.error(.badTest, "an expected alert needs at: with a date-time", at: y.location(n))
                }
                continue
            }
            guard let t = y.located(n) else { diags.error(.badTest, "write an expectation as 'RULE at TIME'", at: y.location(n)); continue }
            let words = t.text.split(separator: " ").map(String.init).filter { $0 != "at" }
            if words.count == 1, !requireTime {
                out.append(.init(rule: words[0], at: nil, location: t.location))
            } else if words.count == 2, let when = instant(words[1], zone: zone) {
                out.append(.init(rule: words[0], at: when, location: t.location))
            } else {
                diags.error(.badTest, requireTime ? "write an expected alert as 'RULE at TIME' (e.g. child-not-seen at 2007-02-06T00:00Z)"
                                                  : "write 'RULE' or 'RULE at TIME'", at: t.location)
            }
        }
        return out
    }

    /// The agency a test event has when nothing says one.
    public static let builtInAgency = "children_social_care"

    static func event(_ node: Node, index: Int, agency: String?, child: Node?, zone: ZoneTable?, _ y: YAMLFile, _ contract: EventContract,
                      _ diags: inout DiagnosticBag) -> RuleTest.Event? {
        guard let entries = y.entries(node, into: &diags), entries.count == 1, let (typeKey, body) = entries.first else {
            diags.error(.badTest, "an event is one mapping TYPE: {at: ..., field: value}", at: y.location(node))
            return nil
        }
        let type = typeKey.text
        guard let typeIndex = contract.eventTypeIndex(named: type) else {
            diags.error(.unknownEventType, "unknown event type '\(type)'", at: typeKey.location,
                        notes: suggestion(for: type, among: contract.eventTypes))
            return nil
        }
        guard let fields = y.entries(body, into: &diags) else {
            diags.error(.badTest, "\(type): takes a mapping such as {at: 2007-03-12T11:00Z, ...}", at: y.location(body))
            return nil
        }
        var at: Instant?
        var envelope: [(String, JSONValue)] = []
        var eventId = "t\(index)"
        var eventAgency = agency ?? builtInAgency
        var implied = agency == nil
        var childNode = child
        var dob: String?
        var mobility: String?
        var data: [(String, JSONValue)] = []
        for (k, v) in fields {
            let text = y.located(v)?.text
            switch k.text {
            case "at":
                guard let t = text.flatMap({ instant($0, zone: zone) }) else {
                    diags.error(.badTest, "at: must be a date-time such as 2007-03-12T11:00Z" + localHint(zone), at: y.location(v))
                    return nil
                }
                at = t
            case "id": eventId = text ?? eventId
            case "agency":
                eventAgency = text ?? eventAgency
                implied = false
            case "child": childNode = v
            case "dob": dob = text
            case "mobility": mobility = text
            case "recorded_at":
                if let t = text.flatMap({ instant($0, zone: zone) }) { envelope.append(("recorded_at", .string(t.description))) }
            case "household": if let text { envelope.append(("household_id", .string(text))) }
            default:
                let kind = contract.field("data." + k.text).flatMap { $0.eventTypes.contains(typeIndex) ? $0.kind : nil }
                data.append((k.text, convert(v, kind: kind, y)))
            }
        }
        guard let at else {
            diags.error(.badTest, "the event needs at: (when it occurred)", at: typeKey.location)
            return nil
        }
        var childFields: [(String, JSONValue)] = [("id", .string("C-TEST"))]
        if let childNode {
            if let id = y.located(childNode)?.text {
                childFields = [("id", .string(id))]
            } else if case .mapping = childNode, let c = y.entries(childNode, into: &diags) {
                childFields = c.map { ($0.key.text, .string(y.located($0.value)?.text ?? "")) }
                if !childFields.contains(where: { $0.0 == "id" }) { childFields.insert(("id", .string("C-TEST")), at: 0) }
            }
        }
        if let dob { childFields.removeAll { $0.0 == "date_of_birth" }; childFields.append(("date_of_birth", .string(dob))) }
        if let mobility { childFields.removeAll { $0.0 == "mobility" }; childFields.append(("mobility", .string(mobility))) }
        let doc: JSONValue = .object([
            ("schema_version", .number(1, integer: 1)),
            ("event_id", .string(eventId)),
            ("type", .string(type)),
            ("occurred_at", .string(at.description)),
            ("agency", .string(eventAgency)),
            ("child", .object(childFields)),
        ] + envelope + [("data", .object(data))])
        var e = RuleTest.Event(json: doc.jsonText, location: typeKey.location)
        e.impliedAgency = implied
        return e
    }

    static func convert(_ v: Node, kind: FieldKind?, _ y: YAMLFile) -> JSONValue {
        if case .sequence(let seq) = v { return .array(seq.map { convert($0, kind: nil, y) }) }
        let text = y.located(v)?.text ?? ""
        switch kind {
        case .bool?:
            if text == "true" { return .bool(true) }
            if text == "false" { return .bool(false) }
        case .int?:
            if let i = Int64(text) { return .number(Double(i), integer: i) }
        case .symbolArray?, .stringArray?:
            return .array([.string(text)])
        default:
            break
        }
        return .string(text)
    }
}
