import VigilContract
import VigilRules

extension Engine {
    /// This engine's children carried to an engine of `rules`, as `change` classifies the switch: each child's
    /// state is translated by stable id (what the new pack lacks is dropped), then re-derived from its base
    /// over its timeline where the change needs it (`migrate`). Alerts the new pack would have raised before
    /// the switch, under a rule it re-derives, go to `alerts` once, marked as backfill; alerts raised under
    /// the old pack stand: a rule change never withdraws them.
    ///
    /// The clock, arming counter and counters carry over; pending deadlines are those of the new derivation.
    public func switched(to rules: CompiledRuleSet, change: PackChange, into alerts: inout [Alert]) -> Engine {
        var e = Engine(rules: rules, limits: limits)
        e.seq = seq
        e.stats = stats
        e.clock = clock
        e.domainClock = domainClock
        e.children.reserveCapacity(children.count)
        for c in children {
            // Written by this pack's keys, read by the new pack's: bytes just written, which read back (the
            // state tests say so); should one ever not, the child is counted, not silently lost.
            do {
                e.children.append(try ChildState(binary: c.binary(keys: keys), keys: e.keys))
            } catch {
                e.stats.stateDegraded += 1
            }
        }
        e.rebuildIndexAndQueues()
        e.migrate(Array(e.children.indices), change: change, into: &alerts)
        e.stats.packSwitches += 1
        return e
    }

    /// Children `indices` (translated from the pack `change.old` describes) brought to this engine's pack:
    /// re-derived from their base over their timelines where the change needs it, with the backfill of the
    /// rules it re-derives. A child is marked changed either way (the next checkpoint writes it under this pack).
    public mutating func migrate(_ indices: [Int], change: PackChange, into alerts: inout [Alert]) {
        guard !change.isIdentity else { return }
        let index = Dictionary(rules.rules.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { a, _ in a })
        var rederived = Set<Int32>()
        var cosmetic = Set<Int32>()
        var changedLogic = Set<Int32>()
        for entry in change.rules {
            guard let i = index[entry.id] else { continue }
            if entry.change.rederives { rederived.insert(Int32(i)) }
            if entry.change == .cosmetic { cosmetic.insert(Int32(i)) }
            if entry.change == .changed { changedLogic.insert(Int32(i)) }
        }
        let changedStates = Set(rules.states.indices.filter { change.changedStates.contains(rules.states[$0].name) }.map(UInt16.init))
        for ci in indices {
            children[ci].dirty = true
            // A cosmetic change keeps the derivation, but a pending expectation's summary values were captured
            // under the old template: such a child is derived again (nothing it raises is new).
            guard change.needsRederivation || children[ci].now.pending.contains(where: { cosmetic.contains($0.rule) }) else { continue }
            stats.rederived += 1
            // What the base holds of a changed definition is of the old meaning: dropped (it cannot be
            // re-derived: the events are folded). A re-timed rule's pending deadlines in the base stay as armed.
            if !changedStates.isEmpty { children[ci].base.states.removeAll { changedStates.contains($0.state) } }
            if !changedLogic.isEmpty {
                children[ci].base.pending.removeAll { changedLogic.contains($0.rule) }
                children[ci].base.fired.removeAll { changedLogic.contains($0.rule) }
            }
            // Derived to where its clock domain is: a deadline of the new pack already past there fires now,
            // as backfill, not at the next tick.
            let domain = Int(max(children[ci].domain, 0))
            let (d, derived) = rederive(ci, through: max(children[ci].now.frontier, domain < domainClock.count ? domainClock[domain] : .distantPast))
            let justified = Set(derived.lazy.filter { $0.status == .fired }.map(\.alertId))
            // Alerts emitted under the old pack that the new one does not justify are history: kept for their
            // ids, never withdrawn.
            for k in children[ci].emitted.indices where !children[ci].emitted[k].withdrawn && !justified.contains(children[ci].emitted[k].alertId) {
                children[ci].emitted[k].rule = -1
            }
            var out: [Alert] = []
            for var a in derived where a.status == .fired && rederived.contains(Int32(a.ruleIndex)) && remember(&a, ci) {
                a.backfill = true
                out.append(a)
            }
            // Alerts of rules not re-derived are those already emitted (or history): remembered, not raised again.
            for var a in derived where a.status == .fired && !rederived.contains(Int32(a.ruleIndex))
                && !children[ci].emitted.contains(where: { $0.alertId == a.alertId }) {
                _ = remember(&a, ci)
            }
            stats.backfilled += out.count
            stats.alerts += out.count
            children[ci].now = d
            while queues.count <= domain { queues.append(DeadlineQueue()) }
            for p in d.pending { queues[domain].push(Timer(deadline: p.deadline, seq: p.seq, child: Int32(ci), pending: p.id)) }
            alerts += out
        }
    }
}
