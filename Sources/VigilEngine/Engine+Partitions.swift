import VigilContract
import VigilRules

extension Engine {
    /// Every child's state (tools).
    public var allChildren: [ChildState] { children }

    /// The children whose latest events came from any of `domains` (input partitions).
    public func children(inDomains domains: Set<Int>) -> [ChildState] {
        children.filter { domains.contains(Int($0.domain)) }
    }

    /// Each child of `domains` changed since the last call (or since it was adopted), marked clean again and
    /// handed to `body` where it is (not copied out: a checkpoint encodes every changed child).
    public mutating func takeChanged(inDomains domains: Set<Int>, _ body: (ChildState) -> Void) {
        for i in children.indices where children[i].dirty && domains.contains(Int(children[i].domain)) {
            children[i].dirty = false
            body(children[i])
        }
    }

    /// `takeChanged(inDomains:_:)` as an array (tests and tools; a checkpoint encodes each where it is).
    public mutating func takeChanged(inDomains domains: Set<Int>) -> [ChildState] {
        var out: [ChildState] = []
        takeChanged(inDomains: domains) { out.append($0) }
        return out
    }

    /// Drops the children of `domains`, with their pending deadlines (another owner has them now).
    public mutating func remove(domains: Set<Int>) {
        let keep = children.filter { !domains.contains(Int($0.domain)) }
        guard keep.count != children.count else { return }
        children = keep
        rebuildIndexAndQueues()
    }

    /// Takes over children restored from a checkpoint; a child already known is replaced. Those written under
    /// another rule pack (`carried`, by child id, with that pack's manifest) are carried to this engine's pack
    /// (`migrate`): their backfill goes to `alerts`.
    public mutating func adopt(_ restored: [ChildState], carried: [String: PackManifest], into alerts: inout [Alert]) {
        adopt(restored)
        guard !carried.isEmpty else { return }
        let current = PackManifest(rules)
        var groups: [String: (manifest: PackManifest, children: [Int])] = [:]
        for (id, m) in carried {
            guard let ci = index.find(id, hash: stableHash(id), in: children) else { continue }
            groups[m.digest, default: (m, [])].children.append(ci)
        }
        for (_, g) in groups.sorted(by: { $0.key < $1.key }) {
            migrate(g.children.sorted(), change: PackChange(from: g.manifest, to: current), into: &alerts)
        }
    }

    /// Takes over children restored from a checkpoint; a child already known is replaced. A child read from a
    /// record of an older layout stays marked changed (the next checkpoint rewrites it).
    public mutating func adopt(_ restored: [ChildState]) {
        for c in restored {
            let h = stableHash(c.id)
            if let i = index.find(c.id, hash: h, in: children) {
                children[i] = c
            } else {
                children.append(c)
                index.insert(children.count - 1, hash: h)
            }
            let ci = index.find(c.id, hash: h, in: children) ?? (children.count - 1)
            let d = Int(max(c.domain, 0))
            while queues.count <= d { queues.append(DeadlineQueue()) }
            for p in c.now.pending {
                queues[d].push(Timer(deadline: p.deadline, seq: p.seq, child: Int32(ci), pending: p.id))
                if p.seq > seq { seq = p.seq }
            }
        }
    }

    mutating func rebuildIndexAndQueues() {
        index = ChildIndex()
        for q in queues.indices { queues[q].removeAll() }
        for (i, c) in children.enumerated() {
            index.insert(i, hash: stableHash(c.id))
            let d = Int(max(c.domain, 0))
            while queues.count <= d { queues.append(DeadlineQueue()) }
            for p in c.now.pending { queues[d].push(Timer(deadline: p.deadline, seq: p.seq, child: Int32(i), pending: p.id)) }
        }
    }
}
