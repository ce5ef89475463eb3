import VigilContract

extension Engine {
    /// Replays in-memory events in event-time order (ties in the order given), advancing the clock to each
    /// event before applying it, then runs the clock on to `until` if given. Returns the alerts in order.
    public mutating func replay(_ records: [EventRecord], until: Instant? = nil) -> [Alert] {
        let slot = rules.contract.occurredAtSlot
        let order = records.indices.sorted { a, b in
            let ta = records[a][slot].instant ?? .distantPast
            let tb = records[b][slot].instant ?? .distantPast
            return ta < tb || (ta == tb && a < b)
        }
        var alerts: [Alert] = []
        for i in order {
            if let t = records[i][slot].instant { advance(to: t, into: &alerts) }
            process(records[i], into: &alerts)
        }
        if let until { advance(to: until, into: &alerts) }
        return alerts
    }
}
