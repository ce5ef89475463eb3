import VigilContract
import VigilRules

/// A rule pack's definitions by stable id, for persisted state: rules by id, declared states by name,
/// windows by definition, each as a 64-bit hash. State names these, never the pack's internal numbering,
/// so state written under one pack reads under another (what the other lacks is dropped).
public struct PackKeys: Sendable {
    let rule: [UInt64]
    let state: [UInt64]
    let window: [UInt64]
    let ruleIndex: [UInt64: Int32]
    let stateIndex: [UInt64: UInt16]
    let windowIndex: [UInt64: UInt16]

    public init(_ set: CompiledRuleSet) {
        rule = set.rules.map { stableHash("rule:" + $0.id) }
        state = set.states.map { stableHash("state:" + $0.name) }
        window = set.windows.map { stableHash("window:" + $0.canonical) }
        ruleIndex = Dictionary(rule.enumerated().map { ($1, Int32($0)) }, uniquingKeysWith: { a, _ in a })
        stateIndex = Dictionary(state.enumerated().map { ($1, UInt16($0)) }, uniquingKeysWith: { a, _ in a })
        windowIndex = Dictionary(window.enumerated().map { ($1, UInt16($0)) }, uniquingKeysWith: { a, _ in a })
    }

    /// The stable key of rule `i` (a rule the pack does not have, -1, is 0).
    func ruleKey(_ i: Int32) -> UInt64 { i >= 0 && Int(i) < rule.count ? rule[Int(i)] : 0 }
}

/// A child's state in a compact binary layout, for the changelog: written at every checkpoint for every child
/// that changed, read at every restore. Versioned; no Foundation. (`Codable` stays for snapshots and tools.)
///
/// Version 2 names rules, states and windows by stable key (`PackKeys`); version 1 (before rule packs could
/// change) by the pack's indices, which are only meaningful under the very pack that wrote them. Version 3 is
/// version 2 with fields and values packed by `PackedFields` (before it, by `LegacyPackedFields`). Version 4 is
/// version 3 compact (`ByteWriter.compact`): integers as varints, instants on a whole second by their seconds,
/// a position's topic by its place among the record's topics; hashes (stable keys, ids folded out, distinct
/// values) keep eight bytes.
extension ChildState {
    static let binaryVersion: UInt8 = 4

    /// The state as bytes.
    public func binary(keys: PackKeys) -> [UInt8] { encoded(keys, version: Self.binaryVersion) }

    /// `prefix`, then the state as bytes, in one array (a changelog record's header and its state).
    public func binary(keys: PackKeys, after prefix: [UInt8]) -> [UInt8] { encoded(keys, version: Self.binaryVersion, prefix: prefix) }

    /// The state as an earlier Vigil wrote it, for tests of reading it: without `keys`, version 1 (by index,
    /// before rule packs could change); with them, version 2 (fields in the layout before `PackedFields`).
    func legacyBinary(keys: PackKeys? = nil) -> [UInt8] { encoded(keys, version: keys == nil ? 1 : 2) }

    /// The state in the layout of `version` (2 on), for tests of reading an earlier one.
    func binary(keys: PackKeys, version: UInt8) -> [UInt8] { encoded(keys, version: version) }

    private func encoded(_ keys: PackKeys?, version: UInt8, prefix: [UInt8] = []) -> [UInt8] {
        // Room for the timeline's fields and the derivations too: an estimate short of them grew the record two
        // or three times (a checkpoint writes one for every changed child).
        func items(_ d: Derivation) -> Int { d.states.count + d.entries.count + d.pending.count + d.fired.count }
        let baseIsNow = base == now
        let derived = items(now) + (baseIsNow ? 0 : items(base))
        // Compact (version 4), an event takes about 20 bytes besides its id and fields (`timeline.byteCount`),
        // a derived item under 64, an emitted alert under 128.
        let estimate = version >= 4
            ? 64 + id.utf8.count + timeline.count * 24 + timeline.byteCount + emitted.count * 128 + derived * 64
            : 256 + timeline.count * 96 + timeline.byteCount + emitted.count * 160 + derived * 128
        var w = ByteWriter(capacity: prefix.count + estimate)
        w.bytes += prefix
        w.u8(version)
        w.legacyFields = version < 3
        w.compact = version >= 4
        w.text(id)
        w.i64(Int64(domain))
        w.u64(nextArrival)
        w.derivation(now, keys)
        if baseIsNow { w.u8(0) } else { w.u8(1); w.derivation(base, keys) }
        w.u64(UInt64(timeline.count))
        let fieldBytes = self.fieldBytes
        fieldBytes.withUnsafeBufferPointer { raw in
            for (k, e) in timeline.enumerated() {
                let p = e.parts(in: fieldBytes)
                w.ref(id: UnsafeBufferPointer(rebasing: raw[p.id]), type: e.type, agency: e.agency, at: e.at, position: p.position)
                w.u64(UInt64(k))  // its arrival number: the timeline's order is the arrival order
                w.u8(e.ignored ? 1 : 0)
                if w.legacyFields {
                    w.blob(PackedFields.legacy(fieldBytes, p.fields))
                } else {
                    w.blob(UnsafeBufferPointer(rebasing: raw[p.fields]))
                }
            }
        }
        w.u64(UInt64(emitted.count))
        for a in emitted {
            w.text(a.alertId); w.text(a.recordId)
            w.rule(a.rule, keys); w.instant(a.firedAt)
            w.optionalInstant(a.deadline)
            w.ref(a.trigger)
            w.u8(a.withdrawn ? 1 : 0)
            w.i64(Int64(a.revision))
        }
        w.u64(UInt64(folded.count))
        for s in folded { w.fixed64(s.idHash); w.instant(s.at) }
        // A record outlives the checkpoint (held until the broker has it, 100,000 of them at once): one that
        // took much less than its estimate is copied to its size.
        guard w.bytes.capacity > w.bytes.count + w.bytes.count / 2 else { return w.bytes }
        return [UInt8](unsafeUninitializedCapacity: w.bytes.count) { out, n in
            n = w.bytes.withUnsafeBufferPointer { UnsafeMutableBufferPointer(rebasing: out[...]).initialize(fromContentsOf: $0) }
        }
    }

    public struct BinaryError: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// Reads `binary(keys:)`'s bytes under the pack of `keys`: what names a rule, state or window it lacks is
    /// dropped (an alert emitted under such a rule is kept, as history, for its id). A version 1 record is
    /// read as it was written (the caller knows it was written under this very pack) and marked changed, so
    /// that the next checkpoint rewrites it by stable key. A record of version 1 or 2 has its fields repacked
    /// (and is marked changed, to be written again in the current layout).
    public init(binary bytes: [UInt8], keys: PackKeys) throws(BinaryError) { try self.init(binary: bytes, from: 0, keys: keys) }

    /// The state written from offset `start` of `bytes` to their end (a changelog record's, after its header).
    public init(binary bytes: [UInt8], from start: Int, keys: PackKeys) throws(BinaryError) {
        guard start <= bytes.count else { throw BinaryError(description: "the state is cut short or has trailing bytes") }
        var r = ByteReader(bytes, start..<bytes.count)
        let version = r.u8()
        guard (1...4).contains(version) else { throw BinaryError(description: "unknown state version \(version)") }
        let k: PackKeys? = version == 1 ? nil : keys
        r.legacyFields = version < 3
        r.compact = version >= 4
        self.init(id: r.text())
        domain = Int32(truncatingIfNeeded: r.i64())
        _ = r.u64()  // the next arrival number: the timeline's count says it
        now = r.derivation(k)
        base = r.u8() == 1 ? r.derivation(k) : now
        // The events first, each with its fields' range in the record; then their ids and fields, copied into
        // an array of their exact size (one allocation, not one growth per event).
        // Nothing in them is reference-counted: the ids stay where they are in the record until kept.
        var events: [(event: (id: Range<Int>, type: Symbol, agency: Symbol, at: Instant, position: SourcePosition?), ignored: Bool, fields: Range<Int>)] = []
        var size = 0
        let n = r.count()
        events.reserveCapacity(n)
        for _ in 0..<n {
            let event = r.event()
            _ = r.u64()  // its arrival number: its place in the timeline says it
            let ignored = r.u8() != 0
            let fields = r.blobRange()
            size += Self.headBytes(event.position, idLength: event.id.count, fields: fields.count) + event.id.count + fields.count
            events.append((event, ignored, fields))
        }
        reserveTimeline(n, bytes: size)
        for e in events {
            // An earlier layout's fields are repacked (fewer bytes than reserved).
            let fields = r.legacyFields ? PackedFields.repack(legacy: r.bytes, e.fields)[...] : r.bytes[e.fields]
            let x = e.event
            let id = r.bytes[x.id]
            if id.allSatisfy({ $0 < 0x80 }) {
                // ASCII (every id Vigil wrote, in practice): its bytes are its text, kept and hashed as they are.
                append(keep(id: id, type: x.type, agency: x.agency, at: x.at, position: x.position, fields: fields, ignored: e.ignored))
            } else {
                // Read as text (bytes that are not UTF-8 repaired), as a ref is.
                let text = String(decoding: id, as: UTF8.self)
                append(keep(id: text.utf8, type: x.type, agency: x.agency, at: x.at, position: x.position, fields: fields, ignored: e.ignored))
            }
        }
        for _ in 0..<r.count() {
            let alertId = r.text(), recordId = r.text()
            let rule = r.rule(k)
            let firedAt = r.instant()
            let deadline = r.optionalInstant()
            let trigger = r.ref()
            let withdrawn = r.u8() != 0
            let revision = Int32(truncatingIfNeeded: r.i64())
            emitted.append(EmittedAlert(alertId: alertId, recordId: recordId, rule: rule ?? -1, firedAt: firedAt, deadline: deadline, trigger: trigger,
                                        withdrawn: withdrawn, revision: revision))
        }
        for _ in 0..<r.count() { folded.append(SeenEvent(idHash: r.fixed64(), at: r.instant())) }
        guard !r.failed, r.atEnd else { throw BinaryError(description: "the state is cut short or has trailing bytes") }
        dirty = version < Self.binaryVersion
    }
}

extension ByteWriter {
    mutating func blob(_ b: some Collection<UInt8>) {
        u64(UInt64(b.count))
        bytes.append(contentsOf: b)
    }

    mutating func optionalInstant(_ t: Instant?) {
        if let t { u8(1); instant(t) } else { u8(0) }
    }

    mutating func ref(_ e: EventRef) {
        var id = e.eventId
        id.withUTF8 { ref(id: $0, type: e.type, agency: e.agency, at: e.occurredAt, position: e.position) }
    }

    /// A reference from what it holds, its id as UTF-8 (a timeline event's, as kept: no string made).
    mutating func ref(id: UnsafeBufferPointer<UInt8>, type: Symbol, agency: Symbol, at: Instant, position: SourcePosition?) {
        text(utf8: id)
        u16(type.id)
        u16(agency.id)
        instant(at)
        if let p = position { u8(1); topic(p); i64(Int64(p.partition)); i64(p.offset) } else { u8(0) }
    }

    /// A position's topic: its name; compact, its place among the record's topics (1-based), or 0 and its name
    /// the first time.
    mutating func topic(_ p: SourcePosition) {
        if compact {
            if let k = topics.firstIndex(of: p.topicId) { return varint(UInt64(k + 1)) }
            topics.append(p.topicId)
            varint(0)
            return text(p.topic)
        }
        if let last = lastTopic, last.id == p.topicId {
            text(last.name)
        } else {
            let name = p.topic
            lastTopic = (p.topicId, name)
            text(name)
        }
    }

    mutating func value(_ v: FieldValue) {
        blob(legacyFields ? LegacyPackedFields.bytes(slot: 0, v) : PackedFields.bytes(slot: 0, v))
    }

    /// A rule by stable key, or (`keys` nil, version 1) by index.
    mutating func rule(_ r: Int32, _ keys: PackKeys?) {
        if let keys { fixed64(keys.ruleKey(r)) } else { i64(Int64(r)) }
    }

    mutating func definition(_ i: UInt16, _ keys: [UInt64]?) {
        if let keys { fixed64(keys[Int(i)]) } else { u16(i) }
    }

    mutating func derivation(_ d: Derivation, _ keys: PackKeys?) {
        u64(UInt64(d.states.count))
        for s in d.states { definition(s.state, keys?.state); text(s.key); value(s.value); ref(s.ref) }
        u64(UInt64(d.entries.count))
        for e in d.entries { definition(e.window, keys?.window); instant(e.at); fixed64(e.distinct); text(e.key); ref(e.ref) }
        u64(UInt64(d.pending.count))
        for p in d.pending {
            rule(p.rule, keys); i64(Int64(p.clause)); u64(UInt64(p.id)); u64(p.seq); text(p.key)
            instant(p.armedAt); instant(p.deadline); ref(p.ref)
            u64(UInt64(p.args.count))
            for a in p.args { text(a) }
        }
        u64(UInt64(d.fired.count))
        for f in d.fired { rule(f.rule, keys); instant(f.at) }
        u64(UInt64(d.nextPendingId))
        instant(d.newest)
        instant(d.through)
    }
}

extension ByteReader {
    /// A count, bounded by what the bytes left could hold (a corrupt count cannot allocate without end).
    mutating func count() -> Int {
        let n = u64()
        guard n <= UInt64(end - min(at, end)) else { failed_(); return 0 }
        return Int(n)
    }

    /// Where the next blob's bytes are in `bytes` (skipped over).
    mutating func blobRange() -> Range<Int> {
        let n = count()
        guard at + n <= end else { failed_(); return at..<at }
        defer { at += n }
        return at..<(at + n)
    }

    mutating func optionalInstant() -> Instant? { u8() == 1 ? instant() : nil }

    mutating func ref() -> EventRef {
        let e = event()
        return EventRef(eventId: String(decoding: bytes[e.id], as: UTF8.self), type: e.type, agency: e.agency, occurredAt: e.at, position: e.position)
    }

    /// What `ref()` reads, its id left where it is in `bytes`.
    mutating func event() -> (id: Range<Int>, type: Symbol, agency: Symbol, at: Instant, position: SourcePosition?) {
        let id = textRange()
        let type = Symbol(u16()), agency = Symbol(u16())
        let at = instant()
        var position: SourcePosition?
        if u8() == 1 {
            let topic = topic()
            let partition = Int32(truncatingIfNeeded: i64())
            position = SourcePosition(topicId: topic, partition: partition, offset: i64())
        }
        return (id, type, agency, at, position)
    }

    /// A position's topic, by its number in `TopicNames`.
    mutating func topic() -> UInt32 {
        if compact {
            let k = varint()
            guard k == 0 else {
                guard k <= UInt64(topics.count) else { failed_(); return 0 }
                return topics[Int(k) - 1]
            }
            let id = TopicNames.id(text())
            topics.append(id)
            return id
        }
        let name = text()
        if let last = lastTopic, last.name == name { return last.id }
        let id = TopicNames.id(name)
        lastTopic = (name, id)
        return id
    }

    mutating func value() -> FieldValue {
        var v = FieldValue.missing
        let range = blobRange()
        if legacyFields { LegacyPackedFields.forEach(bytes, range) { _, x in v = x } } else { PackedFields.forEach(bytes, range) { _, x in v = x } }
        return v
    }

    /// A rule: its index (version 1, `keys` nil) or its stable key; nil when the pack lacks it.
    mutating func rule(_ keys: PackKeys?) -> Int32? {
        guard let keys else { return Int32(truncatingIfNeeded: i64()) }
        return keys.ruleIndex[fixed64()]
    }

    /// A derivation, by index (version 1, `keys` nil) or by stable key: entries for what the pack lacks are dropped.
    mutating func derivation(_ keys: PackKeys?) -> Derivation {
        var d = Derivation()
        for _ in 0..<count() {
            let state = keys == nil ? u16() : keys?.stateIndex[fixed64()]
            let key = text(), v = value(), r = ref()
            if let state { d.states.append(StateEntry(state: state, key: key, value: v, ref: r)) }
        }
        for _ in 0..<count() {
            let window = keys == nil ? u16() : keys?.windowIndex[fixed64()]
            // Its time, written before the rest, is its reference's (read, not kept).
            _ = instant()
            let distinct = fixed64(), key = text(), r = ref()
            if let window { d.entries.append(WindowEntry(window: window, distinct: distinct, key: key, ref: r)) }
        }
        for _ in 0..<count() {
            let rule = rule(keys), clause = Int16(truncatingIfNeeded: i64())
            let id = UInt32(truncatingIfNeeded: u64()), seq = u64(), key = text()
            // When it was armed, written before its deadline, is its reference's time (read, not kept).
            _ = instant()
            let deadline = instant(), r = ref()
            let args = (0..<count()).map { _ in text() }
            if let rule {
                d.pending.append(PendingExpectation(rule: rule, clause: clause, id: id, seq: seq, key: key, deadline: deadline, ref: r, args: args))
            }
        }
        for _ in 0..<count() {
            let rule = rule(keys)
            let at = instant()
            if let rule { d.fired.append(FiredMark(rule: rule, at: at)) }
        }
        d.nextPendingId = UInt32(truncatingIfNeeded: u64())
        d.newest = instant()
        d.through = instant()
        return d
    }
}
