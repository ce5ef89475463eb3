import CPrefetch

/// Hints for what an event coming soon will read. With many children, an event's child is rarely in cache: its
/// slot in the child index, its struct and its lists are each a cache miss, one after another, since each
/// is found through the one before. A caller that knows the child id hashes of the events ahead (a batch)
/// asks for those loads a few events early, one step an event: `prefetch(hash:step:)` with `.slot` for the
/// event three ahead, `.child` for two ahead, `.lists` for the next. Nothing here decides anything: a wrong
/// guess (an id new to the engine, two ids sharing 32 bits of hash) costs a load that was not needed.
extension Engine {
    public enum PrefetchStep: Sendable {
        /// The child's slot in the index.
        case slot
        /// The child's struct (its slot read, so loaded a step before).
        case child
        /// The heads of the child's lists (its struct read, so loaded a step before).
        case lists
    }

    /// Byte offsets in a `ChildState` of the lists an event reads or appends to.
    private static let listOffsets: [Int] = [
        \ChildState.timeline, \ChildState.fieldBytes, \ChildState.idHashes,
        \ChildState.now.entries, \ChildState.now.pending, \ChildState.now.states,
    ].compactMap { MemoryLayout<ChildState>.offset(of: $0) }

    /// `mutating` though it changes nothing: called on an engine held by a class (a shard, a replay), a
    /// non-mutating method was given a copy of the whole engine, which cost more than the loads it saves.
    public mutating func prefetch(hash: UInt64, step: PrefetchStep) {
        let h = UInt32(truncatingIfNeeded: hash)
        index.entries.withUnsafeBufferPointer { e in
            guard let base = e.baseAddress, !e.isEmpty else { return }
            let mask = e.count - 1
            var i = Int(h) & mask
            if step == .slot {
                vigil_prefetch(base + i)
                return
            }
            // The first entry whose 32 bits match: the child, unless an earlier one shares them.
            var child = -1
            while e[i].child >= 0 {
                if e[i].hash == h {
                    child = Int(e[i].child)
                    break
                }
                i = (i + 1) & mask
            }
            guard child >= 0 else { return }
            children.withUnsafeBufferPointer { kids in
                guard child < kids.count, let k = kids.baseAddress else { return }
                let raw = UnsafeRawPointer(k + child)
                if step == .child {
                    var at = 0
                    while at < MemoryLayout<ChildState>.stride {
                        vigil_prefetch(raw + at)
                        at += 64
                    }
                    return
                }
                // An array is one reference to its buffer: the buffer's head (count, capacity, the first
                // elements) is what every read or append of it touches first.
                for offset in Self.listOffsets {
                    if let buffer = UnsafeRawPointer(bitPattern: raw.load(fromByteOffset: offset, as: UInt.self)) { vigil_prefetch(buffer) }
                }
            }
        }
    }
}
