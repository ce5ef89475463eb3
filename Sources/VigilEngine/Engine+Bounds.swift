import VigilContract
import VigilRules

extension Engine {
    /// Whether a child can matter no more: nothing pending, no declared state, no suppression mark, and
    /// nothing of it within the horizon of `clock`. Such a child behaves as one never seen, so it can be
    /// dropped (only a record arriving more than the horizon late could tell the difference).
    func isIdle(_ c: ChildState, at clock: Instant) -> Bool {
        c.now.pending.isEmpty && c.now.states.isEmpty && c.now.fired.isEmpty
            && c.now.frontier.micros < clock.micros - horizon
    }

    /// Drops the idle children of `domains` (see `isIdle`), returning their ids: their state records become
    /// tombstones in the changelog.
    public mutating func evictIdle(inDomains domains: Set<Int>, at clock: Instant) -> [String] {
        let byDomain = evictIdle(clocks: Dictionary(uniqueKeysWithValues: domains.map { ($0, clock) }))
        // In the children's order, as one list.
        return byDomain.order.map(\.id)
    }

    /// Drops the idle children of each domain of `clocks`, idle as of that domain's clock, in one pass over the
    /// children that copies none of them (a checkpoint of many partitions asks once, not once a partition).
    /// Returns the ids by domain, and all of them in the children's order.
    public mutating func evictIdle(clocks: [Int: Instant]) -> (byDomain: [Int: [String]], order: [(id: String, domain: Int)]) {
        var order: [(id: String, domain: Int)] = []
        // The children kept move down over those evicted, in order: each child is judged once.
        var kept = 0
        for i in children.indices {
            let d = Int(children[i].domain)
            if let clock = clocks[d], isIdle(children[i], at: clock) {
                order.append((children[i].id, d))
            } else {
                if kept != i { children.swapAt(kept, i) }
                kept += 1
            }
        }
        guard !order.isEmpty else { return ([:], []) }
        children.removeLast(children.count - kept)
        rebuildIndexAndQueues()
        stats.evicted += order.count
        return (Dictionary(grouping: order, by: \.domain).mapValues { $0.map(\.id) }, order)
    }

    /// Makes a child's state smaller, one step at a time, for when its checkpoint record is over its byte
    /// budget. Returns false when nothing more can go. The order keeps answers exact as long as it can:
    /// first the oldest half of the timeline is folded into the base (records arriving later than them are
    /// then reconciled approximately), then the oldest half of the duplicate memory and of the alerts
    /// remembered for reconciliation, then the oldest half of window entries (which can change answers).
    /// Pending deadlines are never dropped. Each step is counted in `EngineStats.stateDegraded`. For a
    /// checkpoint being written: the child is not marked changed (the record being written holds it).
    public mutating func shrink(child id: String) -> Bool {
        guard let ci = index.find(id, hash: stableHash(id), in: children) else { return false }
        stats.stateDegraded += 1
        if !children[ci].timeline.isEmpty {
            fold(ci, keeping: children[ci].timeline.count / 2)
            return true
        }
        if children[ci].base != children[ci].now {
            // No history left to re-derive: the base becomes the current derivation (written once).
            children[ci].base = children[ci].now
            return true
        }
        if children[ci].folded.count > 1 {
            children[ci].folded.removeFirst(children[ci].folded.count / 2)
            return true
        }
        if children[ci].emitted.count > 1 {
            children[ci].emitted.removeFirst(children[ci].emitted.count / 2)
            return true
        }
        if children[ci].now.entries.count > 1 {
            children[ci].now.entries.removeFirst(children[ci].now.entries.count / 2)
            children[ci].base = children[ci].now
            return true
        }
        stats.stateDegraded -= 1
        return false
    }
}
