import Crypto
import VigilContract

/// What a compiled rule pack means, by stable id and without its internal numbering: each rule's id, version
/// and fingerprint, each declared state's and window's definition. Written beside persisted state (the
/// changelog) and into the audit log, so that state written under one pack can be carried to another, and
/// a change of the pack classified rule by rule (`PackChange`).
public struct PackManifest: Sendable, Equatable, Codable {
    public struct Rule: Sendable, Equatable, Codable {
        public var id: String
        public var version: String
        public var fingerprint: RuleFingerprint
    }

    public var rules: [Rule]
    /// Declared states: name and a hash of the definition.
    public var states: [String: String]
    /// Windows (and look-backs) by a hash of their definition.
    public var windows: [String]
    /// A hash of all of the above (16 hex digits): the pack's identity.
    public var digest: String

    public init(_ set: CompiledRuleSet) {
        func short(_ s: String) -> String { SHA256.hash(data: Array(s.utf8)).prefix(8).hexString }
        // A disabled rule is not evaluated: to the state, it is not in the pack (enabling it is a new rule).
        rules = set.rules.filter { $0.mode != .disabled }.map { Rule(id: $0.id, version: $0.version, fingerprint: $0.fingerprint) }
        states = Dictionary(set.states.map { ($0.name, short($0.canonical)) }, uniquingKeysWith: { a, _ in a })
        windows = set.windows.map { short($0.canonical) }
        var text = rules.map { "\($0.id)@\($0.version)/\($0.fingerprint.logic)/\($0.fingerprint.timing)/\($0.fingerprint.output)" }
        text += states.sorted { $0.key < $1.key }.map { "state \($0.key)=\($0.value)" }
        text += windows.map { "window \($0)" }
        digest = short(text.joined(separator: "\n"))
    }

    public func rule(_ id: String) -> Rule? { rules.first { $0.id == id } }

    /// The manifest as compact JSON (for the changelog and the audit log).
    public var json: [UInt8] {
        var w = JSONWriter(capacity: 128 * rules.count + 256)
        w.raw("{\"digest\":"); w.string(digest)
        w.raw(",\"rules\":[")
        for (k, r) in rules.enumerated() {
            if k > 0 { w.raw(",") }
            w.raw("{\"id\":"); w.string(r.id)
            w.raw(",\"version\":"); w.string(r.version)
            w.raw(",\"logic\":"); w.string(r.fingerprint.logic)
            w.raw(",\"timing\":"); w.string(r.fingerprint.timing)
            w.raw(",\"output\":"); w.string(r.fingerprint.output)
            w.raw("}")
        }
        w.raw("],\"states\":{")
        for (k, s) in states.sorted(by: { $0.key < $1.key }).enumerated() {
            if k > 0 { w.raw(",") }
            w.string(s.key); w.raw(":"); w.string(s.value)
        }
        w.raw("},\"windows\":[")
        for (k, x) in windows.enumerated() {
            if k > 0 { w.raw(",") }
            w.string(x)
        }
        w.raw("]}")
        return w.bytes
    }

    /// Reads `json`; nil when it is not a manifest.
    public init?(json bytes: [UInt8]) {
        guard let v = try? JSONValue.parse(bytes), let digest = v["digest"]?.stringValue, case .array(let rs)? = v["rules"],
              case .object(let ss)? = v["states"], case .array(let ws)? = v["windows"] else { return nil }
        var rules: [Rule] = []
        for r in rs {
            guard let id = r["id"]?.stringValue, let version = r["version"]?.stringValue, let logic = r["logic"]?.stringValue,
                  let timing = r["timing"]?.stringValue, let output = r["output"]?.stringValue else { return nil }
            rules.append(Rule(id: id, version: version, fingerprint: RuleFingerprint(logic: logic, timing: timing, output: output)))
        }
        var states: [String: String] = [:]
        for (k, x) in ss {
            guard let s = x.stringValue else { return nil }
            states[k] = s
        }
        let windows = ws.compactMap(\.stringValue)
        guard windows.count == ws.count else { return nil }
        self.rules = rules
        self.states = states
        self.windows = windows
        self.digest = digest
    }
}

/// How one rule changed from one pack to the next.
public enum RuleChange: String, Sendable, CaseIterable, Comparable {
    /// Same meaning, same output.
    case unchanged
    /// Output only (summary, severity, title): nothing is re-derived, nothing re-fires.
    case cosmetic
    /// A deadline's length or calendar: pending deadlines move, alerts fired stay.
    case retimed
    /// What decides whether it fires: re-derived from each child's timeline, with backfill.
    case changed
    /// Not in the old pack: derived from each child's timeline, with backfill.
    case new
    /// Not in the new pack: its state is dropped; its alerts stay history.
    case removed

    /// Whether its rule must be re-derived from the timelines (and may backfill).
    public var rederives: Bool { self == .retimed || self == .changed || self == .new }

    private var rank: Int { Self.allCases.firstIndex(of: self) ?? 0 }
    public static func < (a: RuleChange, b: RuleChange) -> Bool { a.rank < b.rank }
}

/// A change of rule pack, classified per rule: what the switch re-derives and what it leaves.
public struct PackChange: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var id: String
        public var change: RuleChange
        public var oldVersion: String?
        public var newVersion: String?
    }

    public let old: PackManifest
    public let new: PackManifest
    /// Every rule of either pack, in the new pack's order, then the removed ones.
    public let rules: [Entry]
    /// Declared states whose definition differs (or that one pack lacks).
    public let changedStates: Set<String>

    public init(from old: PackManifest, to new: PackManifest) {
        self.old = old
        self.new = new
        var rules: [Entry] = []
        for r in new.rules {
            guard let o = old.rule(r.id) else {
                rules.append(Entry(id: r.id, change: .new, oldVersion: nil, newVersion: r.version))
                continue
            }
            let change: RuleChange
            if o.fingerprint.logic != r.fingerprint.logic {
                change = .changed
            } else if o.fingerprint.timing != r.fingerprint.timing {
                change = .retimed
            } else if o.fingerprint.output != r.fingerprint.output || o.version != r.version {
                change = .cosmetic
            } else {
                change = .unchanged
            }
            rules.append(Entry(id: r.id, change: change, oldVersion: o.version, newVersion: r.version))
        }
        for o in old.rules where new.rule(o.id) == nil {
            rules.append(Entry(id: o.id, change: .removed, oldVersion: o.version, newVersion: nil))
        }
        self.rules = rules
        changedStates = Set(old.states.keys).union(new.states.keys).filter { old.states[$0] != new.states[$0] }
    }

    public func change(of id: String) -> RuleChange? { rules.first { $0.id == id }?.change }

    /// The ids of the rules re-derived from the timelines.
    public var rederived: Set<String> { Set(rules.filter { $0.change.rederives }.map(\.id)) }

    /// Whether children must be re-derived from their timelines (a rule or state that decides or times
    /// alerts changed), rather than their state carried across as it is.
    public var needsRederivation: Bool { !rederived.isEmpty || !changedStates.isEmpty }

    /// Whether nothing changed at all.
    public var isIdentity: Bool { old.digest == new.digest }
}
