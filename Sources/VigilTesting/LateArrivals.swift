import Foundation
import VigilContract

/// Perturbs the arrival order of a stream in event-time order as agencies do: a fraction of records is
/// recorded, and so arrives, between `minDays` and `maxDays` after it occurred (its `recorded_at` says so).
/// A record sharing its child and instant with another keeps its place (ties follow input order).
/// Streaming: only the delayed records in flight are held.
public struct LateArrivals {
    public let fraction: Double
    public let minDays: Double
    public let maxDays: Double
    private var rng: SplitMix64
    private let decoder = EventDecoder()
    private var record: EventRecord
    /// Records held: (arrival instant, input order, line).
    private var held: [(at: Int64, order: Int, line: String)] = []
    /// The current instant's records, decided together (to find same-child ties).
    private var group: [(at: Instant, child: String, line: String)] = []
    private var order = 0
    public private(set) var delayed = 0

    public init(fraction: Double, minDays: Double, maxDays: Double, seed: UInt64) {
        self.fraction = fraction
        self.minDays = minDays
        self.maxDays = max(minDays, maxDays)
        rng = SplitMix64(state: seed &* 0x9E37_79B9_7F4A_7C15 &+ 3)
        record = decoder.makeRecord()
    }

    /// Parses `PCT:MIN-MAX` (percent of records, days): `10:1-20`.
    public init?(spec: String, seed: UInt64) {
        let parts = spec.split(separator: ":")
        guard parts.count == 2, let pct = Double(parts[0]), (0...100).contains(pct) else { return nil }
        let range = parts[1].split(separator: "-")
        guard range.count == 2, let lo = Double(range[0]), let hi = Double(range[1]), lo >= 0, hi >= lo else { return nil }
        self.init(fraction: pct / 100, minDays: lo, maxDays: hi, seed: seed)
    }

    /// Takes the next line of the sorted stream; emits whatever is due by its time.
    public mutating func add(_ line: String, emit: (String) -> Void) {
        guard decoder.decode(line, into: &record) == nil, let at = record[decoder.contract.occurredAtSlot].instant,
              let child = record[decoder.contract.childIdSlot].string else {
            flushGroup(emit: emit)
            hold(at: Int64.max, line)
            return
        }
        if let first = group.first, first.at != at { flushGroup(emit: emit) }
        group.append((at, child, line))
    }

    /// Emits everything still held, in arrival order.
    public mutating func finish(emit: (String) -> Void) {
        flushGroup(emit: emit)
        release(through: Int64.max, emit: emit)
    }

    private mutating func flushGroup(emit: (String) -> Void) {
        guard let at = group.first?.at else { return }
        var counts: [String: Int] = [:]
        for g in group { counts[g.child, default: 0] += 1 }
        for g in group {
            if counts[g.child] == 1, Double(rng.next() % 1_000_000) / 1_000_000 < fraction {
                let days = minDays + (maxDays - minDays) * Double(rng.next() % 1_000_000) / 1_000_000
                let arrival = at.micros + Int64(days * Double(Instant.microsPerDay))
                hold(at: arrival, Self.recorded(g.line, at: Instant(micros: arrival)))
                delayed += 1
            } else {
                hold(at: at.micros, g.line)
            }
        }
        group.removeAll(keepingCapacity: true)
        release(through: at.micros, emit: emit)
    }

    private mutating func hold(at: Int64, _ line: String) {
        held.append((at, order, line))
        order += 1
    }

    private mutating func release(through t: Int64, emit: (String) -> Void) {
        guard held.contains(where: { $0.at <= t }) else { return }
        held.sort { ($0.at, $0.order) < ($1.at, $1.order) }
        let n = held.firstIndex { $0.at > t } ?? held.count
        for h in held[..<n] { emit(h.line) }
        held.removeFirst(n)
    }

    /// The line with `recorded_at` set to `at` (replaced, or added after `occurred_at`).
    static func recorded(_ line: String, at: Instant) -> String {
        let value = "\"recorded_at\":\"\(at.description)\""
        if let r = line.range(of: "\"recorded_at\":\""), let end = line[r.upperBound...].firstIndex(of: "\"") {
            return line.replacingCharacters(in: r.lowerBound...end, with: value)
        }
        if let o = line.range(of: "\"occurred_at\":\""), let end = line[o.upperBound...].firstIndex(of: "\"") {
            return line.replacingCharacters(in: line.index(after: end)..<line.index(after: end), with: "," + value)
        }
        return line
    }
}
