import VigilContract

/// A child's state in a compact binary layout, for the changelog: written at every checkpoint for every child
/// that changed, read at every restore. Versioned; no Foundation. (`Codable` stays for snapshots and tools.)
extension ChildState {
    static let binaryVersion: UInt8 = 1

    /// The state as bytes.
    public func binary() -> [UInt8] {
        var w = ByteWriter()
        w.u8(Self.binaryVersion)
        w.text(id)
        w.i64(Int64(domain))
        w.u64(arrivals)
        w.derivation(now)
        if base == now { w.u8(0) } else { w.u8(1); w.derivation(base) }
        w.u64(UInt64(timeline.count))
        for e in timeline {
            w.ref(e.ref)
            w.u64(e.arrival)
            w.u8(e.ignored ? 1 : 0)
            w.blob(e.fields.bytes)
        }
        w.u64(UInt64(emitted.count))
        for a in emitted {
            w.text(a.alertId); w.text(a.recordId)
            w.i64(Int64(a.rule)); w.i64(a.firedAt.micros)
            w.optionalInstant(a.deadline)
            w.ref(a.trigger)
            w.u8(a.withdrawn ? 1 : 0)
            w.i64(Int64(a.revision))
        }
        w.u64(UInt64(folded.count))
        for s in folded { w.u64(s.idHash); w.i64(s.at.micros) }
        return w.bytes
    }

    public struct BinaryError: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// Reads `binary()`'s bytes.
    public init(binary bytes: [UInt8]) throws(BinaryError) {
        var r = ByteReader(bytes)
        guard r.u8() == Self.binaryVersion else { throw BinaryError(description: "unknown state version") }
        self.init(id: r.text())
        domain = Int32(truncatingIfNeeded: r.i64())
        arrivals = r.u64()
        now = r.derivation()
        base = r.u8() == 1 ? r.derivation() : now
        for _ in 0..<r.count() {
            let ref = r.ref()
            let arrival = r.u64()
            let ignored = r.u8() != 0
            append(TimelineEvent(ref: ref, idHash: stableHash(ref.eventId), arrival: arrival, fields: PackedFields(bytes: r.blob()), ignored: ignored))
        }
        for _ in 0..<r.count() {
            let alertId = r.text(), recordId = r.text()
            let rule = Int32(truncatingIfNeeded: r.i64())
            let firedAt = Instant(micros: r.i64())
            let deadline = r.optionalInstant()
            let trigger = r.ref()
            let withdrawn = r.u8() != 0
            let revision = Int32(truncatingIfNeeded: r.i64())
            emitted.append(EmittedAlert(alertId: alertId, recordId: recordId, rule: rule, firedAt: firedAt, deadline: deadline, trigger: trigger,
                                        withdrawn: withdrawn, revision: revision))
        }
        for _ in 0..<r.count() { folded.append(SeenEvent(idHash: r.u64(), at: Instant(micros: r.i64()))) }
        guard !r.failed, r.atEnd else { throw BinaryError(description: "the state is cut short or has trailing bytes") }
    }
}

extension ByteWriter {
    mutating func blob(_ b: [UInt8]) {
        u64(UInt64(b.count))
        bytes += b
    }

    mutating func optionalInstant(_ t: Instant?) {
        if let t { u8(1); i64(t.micros) } else { u8(0) }
    }

    mutating func ref(_ e: EventRef) {
        text(e.eventId)
        u16(e.type.id)
        u16(e.agency.id)
        i64(e.occurredAt.micros)
        if let p = e.position { u8(1); text(p.topic); i64(Int64(p.partition)); i64(p.offset) } else { u8(0) }
    }

    mutating func value(_ v: FieldValue) {
        var f = PackedFields()
        f.append(0, v)
        blob(f.bytes)
    }

    mutating func derivation(_ d: Derivation) {
        u64(UInt64(d.states.count))
        for s in d.states { u16(s.state); text(s.key); value(s.value); ref(s.ref) }
        u64(UInt64(d.entries.count))
        for e in d.entries { u16(e.window); i64(e.at.micros); u64(e.distinct); text(e.key); ref(e.ref) }
        u64(UInt64(d.pending.count))
        for p in d.pending {
            i64(Int64(p.rule)); i64(Int64(p.clause)); u64(UInt64(p.id)); u64(p.seq); text(p.key)
            i64(p.armedAt.micros); i64(p.deadline.micros); ref(p.ref)
            u64(UInt64(p.args.count))
            for a in p.args { text(a) }
        }
        u64(UInt64(d.fired.count))
        for f in d.fired { i64(Int64(f.rule)); i64(f.at.micros) }
        u64(UInt64(d.nextPendingId))
        i64(d.newest.micros)
        i64(d.through.micros)
    }
}

extension ByteReader {
    /// A count, bounded by what the bytes left could hold (a corrupt count cannot allocate without end).
    mutating func count() -> Int {
        let n = u64()
        guard n <= UInt64(bytes.count - min(at, bytes.count)) else { failed_(); return 0 }
        return Int(n)
    }

    mutating func blob() -> [UInt8] {
        let n = count()
        guard at + n <= bytes.count else { failed_(); return [] }
        defer { at += n }
        return Array(bytes[at..<(at + n)])
    }

    mutating func optionalInstant() -> Instant? { u8() == 1 ? Instant(micros: i64()) : nil }

    mutating func ref() -> EventRef {
        let id = text()
        let type = Symbol(u16()), agency = Symbol(u16())
        let at = Instant(micros: i64())
        var position: SourcePosition?
        if u8() == 1 {
            let topic = text()
            let partition = Int32(truncatingIfNeeded: i64())
            position = SourcePosition(topic: topic, partition: partition, offset: i64())
        }
        return EventRef(eventId: id, type: type, agency: agency, occurredAt: at, position: position)
    }

    mutating func value() -> FieldValue {
        var v = FieldValue.missing
        PackedFields(bytes: blob()).forEach { _, x in v = x }
        return v
    }

    mutating func derivation() -> Derivation {
        var d = Derivation()
        for _ in 0..<count() {
            let state = u16(), key = text(), v = value(), r = ref()
            d.states.append(StateEntry(state: state, key: key, value: v, ref: r))
        }
        for _ in 0..<count() {
            let window = u16(), at = Instant(micros: i64()), distinct = u64(), key = text(), r = ref()
            d.entries.append(WindowEntry(window: window, at: at, distinct: distinct, key: key, ref: r))
        }
        for _ in 0..<count() {
            let rule = Int32(truncatingIfNeeded: i64()), clause = Int16(truncatingIfNeeded: i64())
            let id = UInt32(truncatingIfNeeded: u64()), seq = u64(), key = text()
            let armedAt = Instant(micros: i64()), deadline = Instant(micros: i64()), r = ref()
            let args = (0..<count()).map { _ in text() }
            d.pending.append(PendingExpectation(rule: rule, clause: clause, id: id, seq: seq, key: key, armedAt: armedAt, deadline: deadline, ref: r, args: args))
        }
        for _ in 0..<count() {
            let rule = Int32(truncatingIfNeeded: i64())
            d.fired.append(FiredMark(rule: rule, at: Instant(micros: i64())))
        }
        d.nextPendingId = UInt32(truncatingIfNeeded: u64())
        d.newest = Instant(micros: i64())
        d.through = Instant(micros: i64())
        return d
    }
}
