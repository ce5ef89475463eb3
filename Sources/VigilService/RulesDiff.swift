import VigilContract
import VigilEngine
import VigilRules

/// `vigil rules diff`: a change of rule pack classified per rule, and, given the state the old pack holds
/// (from an event file), how many children each rule's change touches.
public enum RulesDiff {
    /// Per rule, the children whose state or alerts the switch touches, and the backfill alerts it raises.
    public struct Footprint: Sendable {
        public var children: [String: Int] = [:]
        public var backfill: [String: Int] = [:]
        public var total = 0
    }

    /// What switching `engine` to `rules` would touch: for a rule re-derived, the children whose pending
    /// deadlines of it move, or that get a backfill alert of it, or whose alerts of it become history; for a
    /// cosmetic change, the children with a deadline of it pending (its alert will read the new way); for a
    /// removed rule, the children whose state of it is dropped.
    public static func footprint(of engine: Engine, switchingTo rules: CompiledRuleSet) -> (PackChange, Footprint) {
        let change = PackChange(from: PackManifest(engine.rules), to: PackManifest(rules))
        var backfill: [Alert] = []
        let after = engine.switched(to: rules, change: change, into: &backfill)
        var f = Footprint()
        f.total = engine.childCount
        for a in backfill { f.backfill[rules.rules[a.ruleIndex].id, default: 0] += 1 }
        let backfilled = Set(backfill.map { "\($0.childId)|\(rules.rules[$0.ruleIndex].id)" })
        for entry in change.rules where entry.change != .unchanged {
            var n = 0
            for old in engine.allChildren {
                let new = after.child(old.id)
                let before = old.footprint(of: entry.id, in: engine.rules)
                let now = new?.footprint(of: entry.id, in: rules) ?? .init()
                let touched: Bool
                switch entry.change {
                case .unchanged: touched = false
                case .cosmetic: touched = !before.pending.isEmpty
                case .removed: touched = !before.pending.isEmpty || before.emitted > 0
                case .retimed, .changed, .new:
                    touched = before.pending != now.pending || backfilled.contains("\(old.id)|\(entry.id)") || now.emitted < before.emitted
                }
                if touched { n += 1 }
            }
            f.children[entry.id] = n
        }
        return (change, f)
    }

    /// The change as a table: one line per rule that changed (every rule with `all`), then a count per class.
    public static func table(_ change: PackChange, title: String, footprint: Footprint? = nil, all: Bool = false) -> String {
        var lines = ["rule pack \(change.old.digest) -> \(change.new.digest) (\(title))"]
        let width = max(24, change.rules.map(\.id.count).max() ?? 0)
        var header = "  " + "rule".padding(toLength: width, withPad: " ", startingAt: 0) + "  change     version"
        if footprint != nil { header += "                             children  backfill" }
        lines.append(header)
        for e in change.rules where all || e.change != .unchanged {
            var line = "  " + e.id.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
            line += e.change.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0) + "  "
            let versions = "\(e.oldVersion ?? "-") -> \(e.newVersion ?? "-")"
            line += footprint == nil ? versions : versions.padding(toLength: 38, withPad: " ", startingAt: 0)
            if let f = footprint {
                let n = f.children[e.id].map(String.init) ?? "-"
                line += String(repeating: " ", count: max(0, 8 - n.count)) + n
                let b = e.change.rederives ? String(f.backfill[e.id] ?? 0) : "-"
                line += String(repeating: " ", count: max(0, 10 - b.count)) + b
            }
            lines.append(line)
        }
        let counts = RuleChange.allCases.map { c in (c, change.rules.filter { $0.change == c }.count) }.filter { $0.1 > 0 }
        var summary = "  " + counts.map { "\($0.1) \($0.0.rawValue)" }.joined(separator: ", ")
        if !change.changedStates.isEmpty { summary += "; declared states changed: \(change.changedStates.sorted().joined(separator: ", "))" }
        if let f = footprint { summary += "; \(f.total) children in state" }
        lines.append(summary)
        lines.append(change.needsRederivation
            ? "  re-derivation needed: each child is derived again from its timeline at the switch"
            : "  no re-derivation needed: state carries across as it is")
        return lines.joined(separator: "\n")
    }
}
