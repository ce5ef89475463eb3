import CPrefetch

/// Hints for what events coming soon will read. With many children, an event's child is rarely in cache: its
/// slot in the child index, its struct and its lists are each a cache miss, one after another, since each
/// is found through the one before. A caller that knows the child id hashes of the events ahead (a batch)
/// calls `prefetch(upcoming:)` before each event, and the engine asks for those loads a few events early,
/// one step an event. Nothing here decides anything: a wrong guess (an id new to the engine, two ids sharing
/// 32 bits of hash) costs a load that was not needed.
extension Engine {
    /// Byte offsets in a `ChildState` of the lists an event reads or appends to.
    private static let listOffsets: [Int] = [
        \ChildState.timeline,
        \ChildState.now.entries, \ChildState.now.pending, \ChildState.now.states,
    ].compactMap { MemoryLayout<ChildState>.offset(of: $0) }

    /// Before an event: `upcoming(d)` is the child id hash (`stableHash`) of the event `d` after it (1, 2 or 3),
    /// or nil if there is none or it is not known. Loads the index slot of the third, the struct of the second
    /// (its slot loaded an event ago) and the heads of the lists of the next (its struct loaded an event ago).
    ///
    /// `mutating` though it changes nothing: called on an engine held by a class (a shard, a replay), a
    /// non-mutating method was given a copy of the whole engine, which cost more than the loads it saves.
    public mutating func prefetch(upcoming: (_ distance: Int) -> UInt64?) {
        if let h = upcoming(3) { index.prefetchSlot(hash: h) }
        if let h = upcoming(2) { withChild(likely: h) { raw in
            var at = 0
            while at < MemoryLayout<ChildState>.stride {
                vigil_prefetch(raw + at)
                at += 64
            }
        } }
        if let h = upcoming(1) { withChild(likely: h) { raw in
            // An array is one reference to its buffer: the buffer's head (count, capacity, the first elements)
            // is what every read or append of it touches first.
            for offset in Self.listOffsets {
                if let buffer = UnsafeRawPointer(bitPattern: raw.load(fromByteOffset: offset, as: UInt.self)) { vigil_prefetch(buffer) }
            }
        } }
    }

    /// Calls `body` with the memory of the child the index most likely holds for `hash` (`ChildIndex.likely`).
    private func withChild(likely hash: UInt64, _ body: (UnsafeRawPointer) -> Void) {
        guard let child = index.likely(hash: hash) else { return }
        children.withUnsafeBufferPointer { kids in
            guard child < kids.count, let k = kids.baseAddress else { return }
            body(UnsafeRawPointer(k + child))
        }
    }
}

extension ChildIndex {
    /// Starts loading the slot where the probe for `hash` begins.
    func prefetchSlot(hash: UInt64) {
        entries.withUnsafeBufferPointer { e in
            guard let base = e.baseAddress, !e.isEmpty else { return }
            vigil_prefetch(base + (Int(UInt32(truncatingIfNeeded: hash)) & (e.count - 1)))
        }
    }

    /// The first child on the probe for `hash` whose 32 bits of hash match: the child with that id, unless an
    /// earlier one shares those bits (no id is compared: a guess, for prefetching).
    func likely(hash: UInt64) -> Int? {
        let h = UInt32(truncatingIfNeeded: hash)
        return entries.withUnsafeBufferPointer { e -> Int? in
            guard !e.isEmpty else { return nil }
            let mask = e.count - 1
            var i = Int(h) & mask
            while e[i].child >= 0 {
                if e[i].hash == h { return Int(e[i].child) }
                i = (i + 1) & mask
            }
            return nil
        }
    }
}
