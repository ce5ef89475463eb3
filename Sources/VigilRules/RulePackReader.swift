import VigilContract
import Yams

/// A YAML scalar with where it came from.
public struct LocatedText: Sendable {
    public let text: String
    public let source: ScalarSource
    public var location: SourceLocation { source.start }
}

/// Definitions as written, before checking: the "collect" stage.
struct RawMacro { let name: LocatedText; let condition: LocatedText }
struct RawList { let name: LocatedText; let items: [LocatedText] }
struct RawState { let name: LocatedText; let condition: LocatedText; let value: LocatedText; let key: [LocatedText] }
struct RawCalendar { let name: LocatedText; let timeZone: LocatedText; let holidays: LocatedText; let weekend: [LocatedText]?; let file: String }
struct RawArm { let when: LocatedText; let within: LocatedText?; let at: LocatedText?; let location: SourceLocation }
struct RawMatch { let when: LocatedText; let lookback: LocatedText?; let location: SourceLocation }
struct RawExpect {
    let arms: [RawArm]
    let met: RawMatch?
    let cancel: RawMatch?
    let correlate: [LocatedText]
    let pending: LocatedText?
    let fireIf: LocatedText?
    let location: SourceLocation
}
struct RawRule {
    let id: LocatedText
    let title: LocatedText?
    let severity: LocatedText?
    let description: LocatedText?
    let source: LocatedText?
    let when: LocatedText?
    let expect: RawExpect?
    let suppress: LocatedText?
    let output: LocatedText?
    let calendar: LocatedText?
    let mode: LocatedText?
    let tags: [LocatedText]
    /// `labels: {key: value}`: fixed strings carried in every alert (routing, ownership).
    var labels: [(key: LocatedText, value: LocatedText)] = []
    /// `annotations: {key: template}`: rendered like `output` and carried in every alert (a runbook link).
    var annotations: [(key: LocatedText, value: LocatedText)] = []
}

struct RawPack {
    var macros: [RawMacro] = []
    var lists: [RawList] = []
    var states: [RawState] = []
    var calendars: [RawCalendar] = []
    var rules: [RawRule] = []
}

/// Helpers over Yams nodes that report problems with file positions.
struct YAMLFile {
    let path: String
    let text: String

    func location(_ node: Node) -> SourceLocation {
        let m = node.mark
        return SourceLocation(file: path, line: m?.line ?? 1, column: m?.column ?? 1)
    }

    func located(_ node: Node) -> LocatedText? {
        guard case .scalar(let s) = node else { return nil }
        let m = node.mark
        return LocatedText(text: s.string, source: ScalarSource(file: path, line: m?.line ?? 1, column: m?.column ?? 1,
                                                                 value: s.string, fileText: text))
    }

    /// Parses the file into one node; reports YAML errors.
    func compose(into diags: inout DiagnosticBag) -> Node? {
        if let (line, column) = YAMLAliases.first(in: text) {
            diags.error(.yamlSyntax, "YAML aliases (*name) are not allowed in rule files: one can expand a small file into an enormous one",
                        at: SourceLocation(file: path, line: line, column: column))
            return nil
        }
        do {
            return try Yams.compose(yaml: text)
        } catch let YamlError.duplicatedKeysInMapping(duplicates, context) {
            let key = duplicates.first ?? "?"
            diags.error(.duplicateKey, "key '\(key)' appears twice in this mapping", at: secondOccurrence(of: key, after: context.mark),
                        notes: ["first at \(path):\(context.mark.line):\(context.mark.column)"])
        } catch let e as YamlError {
            let (message, mark) = YAMLFile.describe(e)
            diags.error(.yamlSyntax, message, at: SourceLocation(file: path, line: mark?.line ?? 1, column: mark?.column ?? 1))
        } catch {
            diags.error(.yamlSyntax, "cannot parse YAML: \(error)", at: SourceLocation(file: path, line: 1, column: 1))
        }
        return nil
    }

    /// Where a key repeats: the next line, after the first key's, that starts with the key at the same column.
    func secondOccurrence(of key: String, after mark: Mark) -> SourceLocation {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (k, line) in lines.enumerated() where k + 1 > mark.line {
            let indent = line.prefix { $0 == " " }.count
            let rest = line.dropFirst(indent).drop { $0 == "-" || $0 == " " }
            let col = line.count - rest.count + 1
            guard col == mark.column, rest.hasPrefix(key) else { continue }
            let after = rest.dropFirst(key.count).drop { $0 == " " }
            if after.hasPrefix(":") { return SourceLocation(file: path, line: k + 1, column: col) }
        }
        return SourceLocation(file: path, line: mark.line, column: mark.column)
    }

    static func describe(_ e: YamlError) -> (String, Mark?) {
        switch e {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let ctx = context.map { " \($0.text)" } ?? ""
            return ("YAML: \(problem)\(ctx)", mark)
        case .reader(let problem, _, _, _):
            return ("YAML: \(problem)", nil)
        default:
            return ("YAML: \(e)", nil)
        }
    }

    /// A mapping's entries with string keys; reports non-string and duplicate keys.
    func entries(_ node: Node, into diags: inout DiagnosticBag) -> [(key: LocatedText, value: Node)]? {
        guard case .mapping(let m) = node else { return nil }
        var out: [(LocatedText, Node)] = []
        var seen: [String: SourceLocation] = [:]
        for (k, v) in m {
            guard let key = located(k) else {
                diags.error(.badValue, "mapping keys must be plain words", at: location(k))
                continue
            }
            if let first = seen[key.text] {
                diags.error(.duplicateKey, "key '\(key.text)' appears twice in this mapping", at: key.location,
                            notes: ["first at \(first)"])
                continue
            }
            seen[key.text] = key.location
            out.append((key, v))
        }
        return out
    }

    /// A scalar, or a list of scalars (`[a, b]` or block sequence); a single scalar becomes a one-item list.
    func scalars(_ node: Node, what: String, into diags: inout DiagnosticBag) -> [LocatedText]? {
        if let one = located(node) { return [one] }
        guard case .sequence(let seq) = node else {
            diags.error(.badValue, "\(what) must be a value or a list of values", at: location(node))
            return nil
        }
        var out: [LocatedText] = []
        for item in seq {
            guard let t = located(item) else {
                diags.error(.badValue, "each item of \(what) must be a single value", at: location(item))
                continue
            }
            out.append(t)
        }
        return out
    }
}

/// Reads rule files into raw definitions, reporting structural problems.
struct RulePackReader {
    var diags = DiagnosticBag()
    var pack = RawPack()

    static let kinds = ["rule", "macro", "list", "state", "calendar"]
    static let ruleKeys = ["rule", "title", "severity", "description", "source", "when", "expect", "suppress", "output", "calendar", "tags", "mode",
                           "labels", "annotations"]
    static let expectKeys = ["arm", "met_by", "cancel_by", "correlate", "pending", "fire_if"]
    static let armKeys = ["when", "within", "at"]
    static let matchKeys = ["when", "lookback"]

    mutating func read(_ file: RuleSources.File) {
        let y = YAMLFile(path: file.path, text: file.text)
        var composing = DiagnosticBag()
        guard let root = y.compose(into: &composing) else {
            // A YAML error stops the parser: read the file item by item (each line that starts with "- " at the
            // margin begins one), so that a broken item hides nothing of the others.
            let items = Self.topLevelItems(file.text)
            guard items.count > 1 else {
                for d in composing.items { diags.add(d) }
                return
            }
            for (line, text) in items {
                // Blank lines before it keep every line number.
                let iy = YAMLFile(path: file.path, text: String(repeating: "\n", count: line - 1) + text)
                guard let node = iy.compose(into: &diags), case .sequence(let parsed) = node else { continue }
                for item in parsed { readItem(item, iy) }
            }
            return
        }
        guard case .sequence(let items) = root else {
            if case .scalar(let s) = root, s.string.isEmpty { return }
            diags.error(.notAList, "a rule file is a YAML list of items (- rule:, - macro:, - list:, - state:, - calendar:)", at: y.location(root))
            return
        }
        for item in items { readItem(item, y) }
    }

    /// The top-level items of a rule file's text: the 1-based line each starts on, and its lines.
    static func topLevelItems(_ text: String) -> [(line: Int, text: String)] {
        var out: [(line: Int, text: String)] = []
        var current: (line: Int, lines: [Substring])?
        for (k, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.hasPrefix("- ") || line == "-" {
                if let c = current { out.append((c.line, c.lines.joined(separator: "\n") + "\n")) }
                current = (k + 1, [line])
            } else if current != nil {
                current?.lines.append(line)
            }
        }
        if let c = current { out.append((c.line, c.lines.joined(separator: "\n") + "\n")) }
        return out
    }

    mutating func readItem(_ node: Node, _ y: YAMLFile) {
        guard let entries = y.entries(node, into: &diags) else {
            diags.error(.unknownItem, "each item must be a mapping that starts with one of: \(RulePackReader.kinds.joined(separator: ", "))", at: y.location(node))
            return
        }
        let kinds = entries.filter { RulePackReader.kinds.contains($0.key.text) }
        guard let kindEntry = kinds.first else {
            let first = entries.first?.key
            diags.error(.unknownItem, "item has none of the keys \(RulePackReader.kinds.joined(separator: ", ")) to say what it defines",
                        at: first?.location ?? y.location(node), notes: first.map { suggestion(for: $0.text, among: RulePackReader.kinds) } ?? [])
            return
        }
        // `calendar` is also a rule key; an item is a rule when it has `rule`.
        let kind = kinds.contains { $0.key.text == "rule" } ? "rule" : kindEntry.key.text
        guard let name = y.located(entries.first { $0.key.text == kind }?.value ?? node), !name.text.isEmpty else {
            diags.error(.badValue, "'\(kind):' must be followed by a name", at: kindEntry.key.location)
            return
        }
        var fields: [String: (key: LocatedText, value: Node)] = [:]
        for e in entries { fields[e.key.text] = e }
        let allowed: [String]
        switch kind {
        case "rule": allowed = RulePackReader.ruleKeys
        case "macro": allowed = ["macro", "condition", "description"]
        case "list": allowed = ["list", "items", "description"]
        case "state": allowed = ["state", "when", "value", "key", "description"]
        default: allowed = ["calendar", "time_zone", "holidays", "weekend", "description"]
        }
        for e in entries where !allowed.contains(e.key.text) {
            diags.error(.unknownKey, "unknown key '\(e.key.text)' in a \(kind)", at: e.key.location,
                        notes: suggestion(for: e.key.text, among: allowed) + ["allowed keys: \(allowed.joined(separator: ", "))"])
        }
        func text(_ key: String, required: Bool) -> LocatedText? {
            guard let f = fields[key] else {
                if required { diags.error(.missingKey, "\(kind) '\(name.text)' needs '\(key):'", at: name.location) }
                return nil
            }
            guard let t = y.located(f.value) else {
                diags.error(.badValue, "'\(key):' must be a single value (use a YAML string)", at: y.location(f.value))
                return nil
            }
            return t
        }
        switch kind {
        case "macro":
            if let c = text("condition", required: true) { pack.macros.append(RawMacro(name: name, condition: c)) }
        case "list":
            guard let f = fields["items"] else { diags.error(.missingKey, "list '\(name.text)' needs 'items:'", at: name.location); return }
            if let items = y.scalars(f.value, what: "items", into: &diags) { pack.lists.append(RawList(name: name, items: items)) }
        case "state":
            let c = text("when", required: true)
            let v = text("value", required: true)
            var key: [LocatedText] = []
            if let k = fields["key"] { key = y.scalars(k.value, what: "key", into: &diags) ?? [] }
            if let c, let v { pack.states.append(RawState(name: name, condition: c, value: v, key: key)) }
        case "calendar":
            let tz = text("time_zone", required: true)
            let h = text("holidays", required: true)
            var weekend: [LocatedText]?
            if let w = fields["weekend"] { weekend = y.scalars(w.value, what: "weekend", into: &diags) }
            if let tz, let h { pack.calendars.append(RawCalendar(name: name, timeZone: tz, holidays: h, weekend: weekend, file: y.path)) }
        default:
            var expect: RawExpect?
            if let e = fields["expect"] { expect = readExpect(e.value, y, rule: name.text) }
            /// A mapping of names to single values.
            func pairs(_ key: String) -> [(key: LocatedText, value: LocatedText)] {
                guard let f = fields[key] else { return [] }
                guard case .mapping = f.value, let items = y.entries(f.value, into: &diags) else {
                    diags.error(.badValue, "'\(key):' must be a mapping of names to values ({team: safeguarding})", at: y.location(f.value))
                    return []
                }
                var out: [(key: LocatedText, value: LocatedText)] = []
                for item in items {
                    guard let v = y.located(item.value) else {
                        diags.error(.badValue, "\(key) '\(item.key.text)' must be a single value (use a YAML string)", at: y.location(item.value))
                        continue
                    }
                    out.append((item.key, v))
                }
                return out
            }
            var rule = RawRule(id: name, title: text("title", required: true), severity: text("severity", required: true),
                               description: text("description", required: true), source: text("source", required: true),
                               when: text("when", required: false), expect: expect, suppress: text("suppress", required: false),
                               output: text("output", required: true), calendar: text("calendar", required: false),
                               mode: text("mode", required: false),
                               tags: fields["tags"].flatMap { y.scalars($0.value, what: "tags", into: &diags) } ?? [])
            rule.labels = pairs("labels")
            rule.annotations = pairs("annotations")
            if rule.when == nil && fields["expect"] == nil {
                diags.error(.missingKey, "rule '\(name.text)' needs 'when:' (fires at an event) or 'expect:' (fires at a deadline)", at: name.location)
            }
            pack.rules.append(rule)
        }
    }

    mutating func readExpect(_ node: Node, _ y: YAMLFile, rule: String) -> RawExpect? {
        guard let entries = y.entries(node, into: &diags) else {
            diags.error(.badValue, "'expect:' must be a mapping with arm:, met_by:, cancel_by:, correlate:, pending:, fire_if:", at: y.location(node))
            return nil
        }
        var fields: [String: (key: LocatedText, value: Node)] = [:]
        for e in entries {
            fields[e.key.text] = e
            if !RulePackReader.expectKeys.contains(e.key.text) {
                diags.error(.unknownKey, "unknown key '\(e.key.text)' in expect", at: e.key.location,
                            notes: suggestion(for: e.key.text, among: RulePackReader.expectKeys) + ["allowed keys: \(RulePackReader.expectKeys.joined(separator: ", "))"])
            }
        }
        var arms: [RawArm] = []
        if let a = fields["arm"] {
            var nodes: [Node] = []
            if case .sequence(let seq) = a.value { nodes = Array(seq) } else { nodes = [a.value] }
            for n in nodes {
                guard let clause = readClause(n, y, keys: RulePackReader.armKeys, what: "arm") else { continue }
                let when = clause["when"].flatMap { y.located($0) }
                guard let when else { diags.error(.missingKey, "an arm clause needs 'when:'", at: y.location(n)); continue }
                let within = clause["within"].flatMap { y.located($0) }
                let at = clause["at"].flatMap { y.located($0) }
                if (within == nil) == (at == nil) {
                    diags.error(.missingKey, "an arm clause needs exactly one of 'within:' (a duration) or 'at:' (a date field plus a duration)", at: y.location(n))
                    continue
                }
                arms.append(RawArm(when: when, within: within, at: at, location: y.location(n)))
            }
        } else {
            diags.error(.missingKey, "expect needs 'arm:' (the events that start the clock)", at: y.location(node))
        }
        func match(_ key: String) -> RawMatch? {
            guard let f = fields[key] else { return nil }
            if let t = y.located(f.value) { return RawMatch(when: t, lookback: nil, location: t.location) }
            guard let clause = readClause(f.value, y, keys: key == "met_by" ? RulePackReader.matchKeys : ["when"], what: key) else { return nil }
            guard let when = clause["when"].flatMap({ y.located($0) }) else {
                diags.error(.missingKey, "'\(key):' needs 'when:'", at: y.location(f.value))
                return nil
            }
            return RawMatch(when: when, lookback: clause["lookback"].flatMap { y.located($0) }, location: y.location(f.value))
        }
        var correlate: [LocatedText] = []
        if let c = fields["correlate"] { correlate = y.scalars(c.value, what: "correlate", into: &diags) ?? [] }
        return RawExpect(arms: arms, met: match("met_by"), cancel: match("cancel_by"), correlate: correlate,
                         pending: fields["pending"].flatMap { y.located($0.value) },
                         fireIf: fields["fire_if"].flatMap { y.located($0.value) }, location: y.location(node))
    }

    mutating func readClause(_ node: Node, _ y: YAMLFile, keys: [String], what: String) -> [String: Node]? {
        guard let entries = y.entries(node, into: &diags) else {
            diags.error(.badValue, "'\(what)' must be a mapping with \(keys.joined(separator: ", "))", at: y.location(node))
            return nil
        }
        var out: [String: Node] = [:]
        for e in entries {
            if keys.contains(e.key.text) {
                out[e.key.text] = e.value
            } else {
                diags.error(.unknownKey, "unknown key '\(e.key.text)' in \(what)", at: e.key.location,
                            notes: suggestion(for: e.key.text, among: keys) + ["allowed keys: \(keys.joined(separator: ", "))"])
            }
        }
        return out
    }
}
