import VigilContract
import VigilRules

/// An event folded into a child's base, remembered to recognise duplicates (a 64-bit hash of its id).
struct SeenEvent: Sendable, Codable, Hashable, Equatable {
    var idHash: UInt64
    var at: Instant
}

// A derived item holds its event's reference first: the fields after it take the four bytes the reference's
// layout leaves at its end (a reference is 44 bytes in a stride of 48).

/// The latest value of a declared state (one per key for keyed states), with the event that set it.
struct StateEntry: Sendable, Codable, Hashable {
    var ref: EventRef
    var state: UInt16
    /// Correlation key for keyed states; empty for unkeyed ones.
    var key: String
    var value: FieldValue

    init(state: UInt16, key: String, value: FieldValue, ref: EventRef) {
        self.ref = ref
        self.state = state
        self.key = key
        self.value = value
    }
}

/// One event kept in a window (or a look-back) for a child.
struct WindowEntry: Sendable, Hashable {
    var ref: EventRef
    var window: UInt16
    /// The value `distinct(...)` counts (a symbol id or a hash).
    var distinct: UInt64
    /// The look-back correlation key, if the window has one.
    var key: String

    /// When its event happened.
    var at: Instant { ref.occurredAt }

    init(window: UInt16, distinct: UInt64, key: String, ref: EventRef) {
        self.ref = ref
        self.window = window
        self.distinct = distinct
        self.key = key
    }
}

extension WindowEntry: Codable {
    // `at` is written as before (a reader before it was its reference's time needs it) and not read.
    enum CodingKeys: String, CodingKey { case window, at, distinct, key, ref }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(window: try c.decode(UInt16.self, forKey: .window), distinct: try c.decode(UInt64.self, forKey: .distinct),
                  key: try c.decode(String.self, forKey: .key), ref: try c.decode(EventRef.self, forKey: .ref))
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(window, forKey: .window)
        try c.encode(at, forKey: .at)
        try c.encode(distinct, forKey: .distinct)
        try c.encode(key, forKey: .key)
        try c.encode(ref, forKey: .ref)
    }
}

/// An armed expectation waiting for its deadline.
public struct PendingExpectation: Sendable, Hashable {
    /// The event that armed it.
    public var ref: EventRef
    public var clause: Int16
    public var rule: Int32
    /// Unique within the child; the deadline queue refers to it.
    public var id: UInt32
    /// Engine-wide arming order: deadlines at the same instant fire in this order.
    public var seq: UInt64
    public var key: String
    public var deadline: Instant
    /// Template values captured at arming.
    public var args: [String]

    /// When it was armed: when the event that armed it happened.
    public var armedAt: Instant { ref.occurredAt }

    init(rule: Int32, clause: Int16, id: UInt32, seq: UInt64, key: String, deadline: Instant, ref: EventRef, args: [String]) {
        self.ref = ref
        self.clause = clause
        self.rule = rule
        self.id = id
        self.seq = seq
        self.key = key
        self.deadline = deadline
        self.args = args
    }
}

extension PendingExpectation: Codable {
    // `armedAt` is written as before (a reader before it was its reference's time needs it) and not read.
    enum CodingKeys: String, CodingKey { case rule, clause, id, seq, key, armedAt, deadline, ref, args }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(rule: try c.decode(Int32.self, forKey: .rule), clause: try c.decode(Int16.self, forKey: .clause), id: try c.decode(UInt32.self, forKey: .id),
                  seq: try c.decode(UInt64.self, forKey: .seq), key: try c.decode(String.self, forKey: .key),
                  deadline: try c.decode(Instant.self, forKey: .deadline), ref: try c.decode(EventRef.self, forKey: .ref),
                  args: try c.decode([String].self, forKey: .args))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(rule, forKey: .rule)
        try c.encode(clause, forKey: .clause)
        try c.encode(id, forKey: .id)
        try c.encode(seq, forKey: .seq)
        try c.encode(key, forKey: .key)
        try c.encode(armedAt, forKey: .armedAt)
        try c.encode(deadline, forKey: .deadline)
        try c.encode(ref, forKey: .ref)
        try c.encode(args, forKey: .args)
    }
}

/// When a rule last fired for the child (for suppression).
struct FiredMark: Sendable, Codable, Hashable {
    var rule: Int32
    var at: Instant
}

/// One event of a child's timeline: what the rules read of it. No free text: the envelope, and the fields the
/// compiled pack captures. Its position, id and packed fields are in its child's timeline buffer
/// (`Timeline.buffer`, `parts(in:)`, `ChildState.ref(_:)`, `ChildState.eventId(_:)`); its place in the timeline
/// is its arrival order among events at the same time.
public struct TimelineEvent: Sendable {
    // 18 bytes in a timeline's buffer (`MemoryLayout.size`): what the duplicate check and the re-derivation's
    // ordering read, and where the rest is. The rest (read to make a reference or apply the event) is in the
    // bytes, end to end: the length of what follows as a varint, its position (the topic's number as a
    // varint, 0 without a position; then the partition and the offset as varints), the id's length as a
    // varint, the id, the packed fields.
    public let at: Instant
    /// Where its bytes are in its child's timeline buffer (their start's distance from the buffer's end, below
    /// 2^31: `Timeline.maxBytes`), and in the top bit `ignored`.
    private var fromEndAndIgnored: UInt32
    public let type: Symbol
    public let agency: Symbol
    /// The low 16 bits of its id's `stableHash`: the duplicate check compares ids only where these match (one
    /// pair of other ids in 65,536).
    let idHash: UInt16

    /// Its bytes' start's distance from the end of its child's timeline buffer.
    var fromEnd: Int { Int(fromEndAndIgnored & 0x7FFF_FFFF) }

    /// A duplicate of an event before it in event-time order (found when a copy arrived late): not applied.
    var ignored: Bool {
        get { fromEndAndIgnored & 0x8000_0000 != 0 }
        set { fromEndAndIgnored = newValue ? fromEndAndIgnored | 0x8000_0000 : fromEndAndIgnored & 0x7FFF_FFFF }
    }

    /// The event at `at`, its bytes `fromEnd` bytes before the end of its child's timeline buffer
    /// (`ChildState.keep`).
    init(at: Instant, type: Symbol, agency: Symbol, fromEnd: UInt32, idHash: UInt64, ignored: Bool) {
        self.at = at
        self.type = type
        self.agency = agency
        self.idHash = Self.idHash(idHash)
        fromEndAndIgnored = fromEnd & 0x7FFF_FFFF
        self.ignored = ignored
    }

    /// The low bits of `hash` an event keeps (`idHash`).
    static func idHash(_ hash: UInt64) -> UInt16 { UInt16(truncatingIfNeeded: hash) }

    /// Its bytes in its child's timeline buffer `bytes`: length, position, id and fields.
    func bytes(in bytes: [UInt8]) -> Range<Int> {
        bytes.withUnsafeBytes { raw in
            let s = span(in: raw)
            return s.start..<s.body.upperBound
        }
    }

    /// Where its bytes start in the buffer `raw`, and what follows their length (position, id and fields).
    /// Bytes past an event's are never read, whatever its place and length say.
    private func span(in raw: UnsafeRawBufferPointer) -> (start: Int, body: Range<Int>) {
        let start = max(raw.count - fromEnd, 0)
        var r = RawReader(raw, start..<raw.count)
        let n = r.length()
        return (start, r.at..<(r.at + n))
    }

    /// What its bytes hold: its position, and where its id and its packed fields are.
    struct Parts {
        var position: SourcePosition?
        var id: Range<Int>
        var fields: Range<Int>
    }

    // Read with its child's timeline buffer passed in (the engine reads it out of the child once: a method
    // called on a child in the engine's array can copy the whole child first).

    /// Its position, and where its id and fields are, read from its child's timeline buffer `bytes`.
    func parts(in bytes: [UInt8]) -> Parts {
        bytes.withUnsafeBytes { raw in
            var r = RawReader(raw, span(in: raw).body)
            var position: SourcePosition?
            let topic = UInt32(truncatingIfNeeded: r.varint())
            if topic != 0 {
                let partition = Int32(bitPattern: UInt32(truncatingIfNeeded: r.varint()))
                position = SourcePosition(topicId: topic, partition: partition, offset: Int64(bitPattern: r.varint()))
            }
            let idLength = r.length()
            return Parts(position: position, id: r.at..<(r.at + idLength), fields: (r.at + idLength)..<r.end)
        }
    }

    /// Its reference, read from its child's `bytes`.
    func ref(in bytes: [UInt8]) -> EventRef { ref(parts(in: bytes), in: bytes) }

    /// Its reference, its `parts` read already.
    func ref(_ p: Parts, in bytes: [UInt8]) -> EventRef {
        EventRef(eventId: String(decoding: bytes[p.id], as: UTF8.self), type: type, agency: agency, occurredAt: at, position: p.position)
    }

    func eventId(in bytes: [UInt8]) -> String { String(decoding: bytes[parts(in: bytes).id], as: UTF8.self) }

    /// Where its packed fields are in its child's `bytes`.
    func fields(in bytes: [UInt8]) -> Range<Int> { parts(in: bytes).fields }

    /// Whether its id is `id` (compared as bytes, no string made).
    func hasId(_ id: String, in bytes: [UInt8]) -> Bool {
        var id = id
        let mine = parts(in: bytes).id
        return id.withUTF8 { a in bytes.withUnsafeBufferPointer { b in a.elementsEqual(b[mine]) } }
    }

    /// Whether it has the same id as `o`.
    func sameId(as o: TimelineEvent, in bytes: [UInt8]) -> Bool {
        let a = parts(in: bytes).id, b = o.parts(in: bytes).id
        return a.count == b.count && bytes.withUnsafeBufferPointer { $0[a].elementsEqual($0[b]) }
    }

    /// The same event, its bytes moved to `fromEnd` bytes before the end of the buffer.
    func moved(toDistanceFromEnd fromEnd: UInt32) -> TimelineEvent {
        var e = self
        e.fromEndAndIgnored = fromEnd & 0x7FFF_FFFF | (ignored ? 0x8000_0000 : 0)
        return e
    }
}

/// A timeline event in JSON (snapshots, tools): one base64 string of a compact binary layout holding its
/// fields too (a checkpoint writes every event of the timeline). Version 2: its fields packed by
/// `PackedFields`; version 1, by `LegacyPackedFields` (repacked when read). The arrival number it holds is the
/// event's place in the timeline (read, not kept: the timeline's order is the arrival order).
struct TimelineEventJSON: Codable {
    var ref: EventRef
    var arrival: UInt64
    var ignored: Bool
    var fields: [UInt8]

    init(ref: EventRef, arrival: Int, ignored: Bool, fields: [UInt8]) {
        self.ref = ref
        self.arrival = UInt64(arrival)
        self.ignored = ignored
        self.fields = fields
    }

    init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let bytes = Base64.decode(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "a timeline event is not base64"))
        }
        var r = ByteReader(bytes)
        let version = r.u8()
        ref = r.ref()
        arrival = r.u64()
        ignored = r.u8() != 0
        // Version 1 has its fields in `LegacyPackedFields`' layout.
        fields = version == 1 ? PackedFields.repack(legacy: r.bytes, r.at..<r.end) : r.rest()
        guard version == 1 || version == 2, !r.failed else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "a timeline event is cut short or of an unknown version"))
        }
    }

    func encode(to encoder: Encoder) throws {
        var w = ByteWriter()
        w.u8(2)
        w.ref(ref)
        w.u64(arrival)
        w.u8(ignored ? 1 : 0)
        w.bytes += fields
        var c = encoder.singleValueContainer()
        try c.encode(Base64.encode(w.bytes))
    }
}

/// An alert emitted for a child, remembered while a record arriving late could still change it.
struct EmittedAlert: Sendable, Codable {
    /// The alert's id as replay gives it.
    var alertId: String
    /// The id of the record that raised it: `alertId`, or `alertId.rN` when re-raised after a withdrawal.
    var recordId: String
    var rule: Int32
    var firedAt: Instant
    var deadline: Instant?
    var trigger: EventRef
    var withdrawn = false
    var revision: Int32 = 0
}

/// What the rules derive for a child from its events in event-time order: declared states, window
/// entries, pending expectations, suppression marks, and how far the derivation has gone.
public struct Derivation: Sendable, Codable, Equatable {
    var states: [StateEntry] = []
    var entries: [WindowEntry] = []
    public internal(set) var pending: [PendingExpectation] = []
    var fired: [FiredMark] = []
    /// The newest `occurred_at` applied.
    public internal(set) var newest: Instant = .distantPast
    /// The latest instant the derivation was brought to (its events, and the deadlines popped).
    public internal(set) var through: Instant = .distantPast
    // Last, so that a field after a derivation can take the bytes after it.
    var nextPendingId: UInt32 = 1

    /// Everything applied happened before this: an event at or after it is in order.
    var frontier: Instant { max(newest, through) }
}

/// Everything the engine keeps about one child: its timeline (its events within the pack's horizon, in
/// event-time order), the derivation of them (`now`), the derivation of what came before the timeline
/// (`base`), and the alerts emitted that a late record could still change. Bounded: the timeline is folded
/// into the base as it ages past the horizon, every list is pruned by time and capped.
public struct ChildState: Sendable, Codable {
    // Laid out small: a child's struct is held for every child (96 bytes). What only some children hold is
    // apart, in `history`.
    public var id: String
    /// The derivation of every event applied, up to the clock.
    public internal(set) var now = Derivation()
    /// `domain`, and in the top bit `dirty`.
    private var domainAndDirty: UInt32 = 0
    /// The timeline's events, and their ids and captured fields (each event holds where its are): one
    /// allocation per child, not one per event. The bytes of events folded out are reclaimed once they are
    /// most of them.
    public private(set) var timeline = Timeline()
    /// The base, the alerts remembered and the ids folded, when any of them holds something (none for a child
    /// whose events are all in its timeline and that raised no alert): one element, or none.
    private var history: [History] = []

    /// The clock domain (input partition) of the child's latest event (0 to 2^31 - 1; what is outside is 0).
    public var domain: Int32 {
        get { Int32(bitPattern: domainAndDirty & 0x7FFF_FFFF) }
        set { domainAndDirty = domainAndDirty & 0x8000_0000 | UInt32(bitPattern: max(newValue, 0)) }
    }

    /// Changed since its state was last written to the changelog (not persisted).
    var dirty: Bool {
        get { domainAndDirty & 0x8000_0000 != 0 }
        set { domainAndDirty = newValue ? domainAndDirty | 0x8000_0000 : domainAndDirty & 0x7FFF_FFFF }
    }

    /// Whether it has had an event: one in its timeline, or folded into its base.
    var hasEvents: Bool { !timeline.isEmpty || holdsHistory }

    /// The next arrival number, as written for an earlier Vigil (one that numbered a timeline's events in
    /// arrival order): the timeline's order is the arrival order, and its count is the next number.
    var nextArrival: UInt64 { UInt64(timeline.count) }

    /// The timeline's buffer: its events' positions, ids and fields are read from it (`TimelineEvent.parts(in:)`).
    var fieldBytes: [UInt8] { timeline.buffer }

    /// What a child holds once events fold out of its timeline or it raises an alert.
    struct History: Sendable {
        var base = Derivation()
        var emitted: [EmittedAlert] = []
        var folded: [SeenEvent] = []

        var isEmpty: Bool { emitted.isEmpty && folded.isEmpty && base == Derivation() }
    }

    /// Whether the child holds a base, remembered alerts or folded ids.
    var holdsHistory: Bool { !history.isEmpty }

    /// The derivation of the events folded out of the timeline.
    var base: Derivation {
        get { history.first?.base ?? Derivation() }
        _modify { yield &self[history: \.base] }
    }

    /// The alerts emitted that a record arriving late could still change.
    var emitted: [EmittedAlert] {
        get { history.first?.emitted ?? [] }
        _modify { yield &self[history: \.emitted] }
    }

    /// Ids of the events folded out of the timeline, within the duplicate horizon.
    var folded: [SeenEvent] {
        get { history.first?.folded ?? [] }
        _modify { yield &self[history: \.folded] }
    }

    /// A part of `history` being changed: the history is made for it when there is none, and dropped when it
    /// holds nothing again.
    private subscript<Part>(history part: WritableKeyPath<History, Part>) -> Part {
        get { (history.first ?? History())[keyPath: part] }
        _modify {
            if history.isEmpty { history.append(History()) }
            yield &history[0][keyPath: part]
            if history[0].isEmpty { history = [] }
        }
    }

    public var newest: Instant { now.newest }
    public var pending: [PendingExpectation] { now.pending }

    enum CodingKeys: String, CodingKey {
        case id, domain, now, base, timeline, emitted, folded, arrivals
    }

    /// The layout before timelines: one derivation, no history.
    enum LegacyKeys: String, CodingKey {
        case newest, seen, states, entries, pending, fired, nextPendingId
    }

    init(id: String) { self.id = id }

    /// What the child holds of one rule: its pending deadlines, and how many of its alerts stand.
    public struct RuleFootprint: Sendable, Equatable {
        public var pending: [Instant] = []
        public var emitted = 0
        public init() {}
    }

    /// What the child holds of rule `ruleId` of `rules` (empty when the pack lacks it).
    public func footprint(of ruleId: String, in rules: CompiledRuleSet) -> RuleFootprint {
        var f = RuleFootprint()
        guard let i = rules.rules.firstIndex(where: { $0.id == ruleId }) else { return f }
        let r = Int32(i)
        f.pending = now.pending.filter { $0.rule == r }.map(\.deadline).sorted()
        f.emitted = emitted.filter { $0.rule == r && !$0.withdrawn }.count
        return f
    }

    /// Marks the state changed: the next checkpoint writes it (a state read from an older layout).
    public mutating func markChanged() { dirty = true }

    /// Changed since last written (or read from an older layout: to be written again).
    public var isChanged: Bool { dirty }

    /// Appends `e` (kept by `keep`) to the timeline.
    mutating func append(_ e: TimelineEvent) { timeline.append(e) }

    mutating func insert(_ e: TimelineEvent, at i: Int) { timeline.insert(e, at: i) }

    /// Room for `extra` more elements, growing by a quarter rather than doubling: a child's arrays (its states,
    /// window entries and expectations; its timeline's buffer likewise) grow an item at a time and live long,
    /// and the slack doubling leaves (a quarter on average; growing by half, a sixth) is memory held for
    /// nothing. The extra growths cost little (`vigil-bench engine`, A/B: within the VM's spread; BENCHMARKS.md).
    static func makeRoom<T>(_ a: inout [T], for extra: Int) {
        let need = a.count + extra
        guard need > a.capacity else { return }
        a.reserveCapacity(max(need, a.count + a.count / 4))
    }

    /// Gives back the room of an array that uses a quarter of it or less: all of it once it is empty, else what
    /// it does not use (one copy). A child's expectations and window entries come and go, and an array keeps its
    /// room when emptied (a child's met expectations held 11 bytes a child on the 1M-children benchmark:
    /// BENCHMARKS.md, 2026-12-01). At a half (before 2026-12-07) an array that lost one of two entries gave back
    /// its room and took it again at the next (about 5% of the engine's instructions went to that churn); at a
    /// quarter, the dense stream holds 35 B a child more (BENCHMARKS.md, 2026-12-07, evening).
    static func trim<T>(_ a: inout [T]) {
        guard a.capacity > 0, a.count * 4 <= a.capacity else { return }
        guard !a.isEmpty else { a = []; return }
        var kept: [T] = []
        kept.reserveCapacity(a.count)
        kept.append(contentsOf: a)
        a = kept
    }

    /// Whether an event with this id (hashing to `h`), at `at`, is a duplicate (docs/rules.md): an event with the
    /// same id that comes before it in event-time order, within `horizon`, was accepted already. Mutating only so
    /// that a call on a child in the engine's array reads it in place (a non-mutating call copied the child, and
    /// one on the engine copied the whole engine).
    mutating func isDuplicate(hash h: UInt64, id: String, at: Instant, horizon: Int64) -> Bool {
        let low = TimelineEvent.idHash(h)
        let bytes = timeline.buffer
        for e in timeline where e.idHash == low {
            if !e.ignored && e.at <= at && at.micros - e.at.micros <= horizon && e.hasId(id, in: bytes) { return true }
        }
        guard holdsHistory else { return false }
        return folded.contains { $0.idHash == h && abs($0.at.micros - at.micros) <= horizon }
    }

    /// Removes the timeline's first event. Its id and fields stay readable until the next `reclaimFields()`.
    mutating func removeOldest() -> TimelineEvent { timeline.removeFirst() }

    /// The reference to timeline event `e` (its id read from `fieldBytes`).
    public func ref(_ e: TimelineEvent) -> EventRef { e.ref(in: fieldBytes) }

    /// The id of timeline event `e`.
    public func eventId(_ e: TimelineEvent) -> String { e.eventId(in: fieldBytes) }

    /// Keeps the position and id of `ref` and its packed fields `fields` (`PackedFields.pack`) for an event about
    /// to join the timeline; its id hashes to `idHash`.
    mutating func keep(_ ref: EventRef, fields: ArraySlice<UInt8>, idHash: UInt64) -> TimelineEvent {
        var id = ref.eventId
        let fromEnd = id.withUTF8 { keepBytes(ref.position, id: $0, fields: fields) }
        return TimelineEvent(at: ref.occurredAt, type: ref.type, agency: ref.agency, fromEnd: fromEnd, idHash: idHash, ignored: false)
    }

    /// Keeps the position and id of `ref` and its packed fields read back (from the changelog, or JSON) for an
    /// event about to join the timeline.
    mutating func keep(_ ref: EventRef, fields: ArraySlice<UInt8>, ignored: Bool) -> TimelineEvent {
        var id = ref.eventId
        return id.withUTF8 { keep(id: $0, type: ref.type, agency: ref.agency, at: ref.occurredAt, position: ref.position, fields: fields, ignored: ignored) }
    }

    /// `keep(_:fields:ignored:)` of an event whose id's UTF-8 is `id` (a changelog record's bytes, as they are);
    /// the id hashed as bytes (`stableHash`).
    mutating func keep(id: some Collection<UInt8>, type: Symbol, agency: Symbol, at: Instant, position: SourcePosition?,
                       fields: ArraySlice<UInt8>, ignored: Bool) -> TimelineEvent {
        let fromEnd = keepBytes(position, id: id, fields: fields)
        // The id is hashed as it was kept (`maxIdBytes` of it).
        let hash = timeline.buffer.withUnsafeBufferPointer { b in
            let id = TimelineEvent(at: at, type: type, agency: agency, fromEnd: fromEnd, idHash: 0, ignored: false).parts(in: timeline.buffer).id
            return stableHash(UnsafeBufferPointer(rebasing: b[id]))
        }
        return TimelineEvent(at: at, type: type, agency: agency, fromEnd: fromEnd, idHash: hash, ignored: ignored)
    }

    /// The most bytes of an event's id kept (the contract allows 128 characters, at most 512 bytes).
    static let maxIdBytes = Int(UInt16.max)

    /// Writes an event's bytes at the back of the timeline's buffer: the length of what follows, its position,
    /// its id's length, its id (at most `maxIdBytes` of it), then its packed fields `packed`. Returns where they
    /// are (their distance from the buffer's end). Past what a timeline holds (`Timeline.maxBytes` of one child's
    /// events), the fields are not kept, and then not the id either.
    private mutating func keepBytes(_ position: SourcePosition?, id: some Collection<UInt8>, fields packed: ArraySlice<UInt8>) -> UInt32 {
        let n = min(id.count, Self.maxIdBytes)
        let fields = packed.count
        // Writes exactly `headBytes(position, idLength: n, fields: fields) + n` bytes, what each call reserved;
        // `rest` is `positionBytes(position, idLength: n)`, worked out once by the caller.
        func write(_ p: UnsafeMutableRawPointer, _ position: SourcePosition?, rest: Int, idLength n: Int, fields: Int) -> UnsafeMutableRawPointer {
            var w = RawWriter(p: p)
            w.varint(UInt64(rest + n + fields))
            if let p = position {
                w.varint(UInt64(p.topicId))
                w.varint(UInt64(UInt32(bitPattern: p.partition)))
                w.varint(UInt64(bitPattern: p.offset))
            } else {
                w.varint(0)
            }
            w.varint(UInt64(n))
            var at = w.p
            for b in id.prefix(n) {
                at.storeBytes(of: b, as: UInt8.self)
                at += 1
            }
            return at
        }
        let rest = Self.positionBytes(position, idLength: n)
        let all = Self.headBytes(rest: rest, idLength: n, fields: fields) + n + fields
        if let fromEnd = timeline.appendBytes(all, { p in
            let at = write(p, position, rest: rest, idLength: n, fields: fields)
            packed.withUnsafeBytes { if let f = $0.baseAddress, !$0.isEmpty { at.copyMemory(from: f, byteCount: $0.count) } }
        }) {
            return fromEnd
        }
        if let fromEnd = timeline.appendBytes(Self.headBytes(rest: rest, idLength: n, fields: 0) + n, { _ = write($0, position, rest: rest, idLength: n, fields: 0) }) {
            return fromEnd
        }
        // Neither position nor id: the two bytes reserved (it wrote the position past them before).
        let none = Self.positionBytes(nil, idLength: 0)
        return timeline.appendBytes(Self.headBytes(rest: none, idLength: 0, fields: 0)) { _ = write($0, nil, rest: none, idLength: 0, fields: 0) } ?? 0
    }

    /// The bytes an event's length, position and id length take before its id, with `fields` bytes of fields.
    static func headBytes(_ position: SourcePosition?, idLength: Int, fields: Int) -> Int {
        headBytes(rest: positionBytes(position, idLength: idLength), idLength: idLength, fields: fields)
    }

    /// The same, its position and id length taking `rest` bytes.
    @inline(__always) private static func headBytes(rest: Int, idLength: Int, fields: Int) -> Int {
        PackedFields.varintSize(UInt64(rest + idLength + fields)) + rest
    }

    /// The bytes an event's position and id length take before its id.
    private static func positionBytes(_ position: SourcePosition?, idLength: Int) -> Int {
        let p = position.map {
            PackedFields.varintSize(UInt64($0.topicId)) + PackedFields.varintSize(UInt64(UInt32(bitPattern: $0.partition)))
                + PackedFields.varintSize(UInt64(bitPattern: $0.offset))
        } ?? 1
        return p + PackedFields.varintSize(UInt64(idLength))
    }

    /// Room for `n` more timeline events holding `bytes` bytes, exactly (a state read back knows what it holds).
    mutating func reserveTimeline(_ n: Int, bytes: Int) { timeline.makeRoom(events: n, bytes: bytes, exactly: true) }

    /// Moves the bytes of the timeline's events together once those of events gone are most of them (a pass
    /// over the events to count them: called after events were removed).
    mutating func reclaimFields() {
        let held = timeline.byteCount
        guard held > 0, (held - timeline.liveBytes) * 2 >= held else { return }
        timeline = timeline.compacted()
    }

    mutating func setIgnored(_ k: Int, _ ignored: Bool) { timeline[k].ignored = ignored }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        domain = try c.decodeIfPresent(Int32.self, forKey: .domain) ?? 0
        if c.contains(.now) {
            now = try c.decode(Derivation.self, forKey: .now)
            // Absent when it was the same as `now` (written once).
            base = try c.decodeIfPresent(Derivation.self, forKey: .base) ?? now
            for j in try c.decode([TimelineEventJSON].self, forKey: .timeline) {
                append(keep(j.ref, fields: j.fields[...], ignored: j.ignored))
            }
            emitted = try c.decode([EmittedAlert].self, forKey: .emitted)
            folded = try c.decode([SeenEvent].self, forKey: .folded)
            _ = try c.decode(UInt64.self, forKey: .arrivals)
        } else {
            // State written before timelines existed: it becomes the base of an empty timeline, so a record
            // arriving late for such a child is reconciled only from here on.
            let l = try decoder.container(keyedBy: LegacyKeys.self)
            var d = Derivation()
            d.newest = try l.decode(Instant.self, forKey: .newest)
            d.through = d.newest
            folded = try l.decode([SeenEvent].self, forKey: .seen)
            d.states = try l.decode([StateEntry].self, forKey: .states)
            d.entries = try l.decode([WindowEntry].self, forKey: .entries)
            d.pending = try l.decode([PendingExpectation].self, forKey: .pending)
            d.fired = try l.decode([FiredMark].self, forKey: .fired)
            d.nextPendingId = try l.decode(UInt32.self, forKey: .nextPendingId)
            now = d
            base = d
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(domain, forKey: .domain)
        try c.encode(now, forKey: .now)
        if base != now { try c.encode(base, forKey: .base) }
        let fieldBytes = self.fieldBytes
        try c.encode(timeline.enumerated().map { k, e in
            let p = e.parts(in: fieldBytes)
            return TimelineEventJSON(ref: e.ref(p, in: fieldBytes), arrival: k, ignored: e.ignored, fields: Array(fieldBytes[p.fields]))
        }, forKey: .timeline)
        try c.encode(emitted, forKey: .emitted)
        try c.encode(folded, forKey: .folded)
        try c.encode(nextArrival, forKey: .arrivals)
    }

    /// Approximate heap bytes held (for benchmarks).
    public var approximateBytes: Int { var b = StateBytes(); count(into: &b); return b.total }

    /// Adds the heap bytes this child holds, by part, to `b` (an array counts its capacity and a 32-byte
    /// header; a string its bytes past the 15 held inline).
    public func count(into b: inout StateBytes) {
        func arr(_ count: Int, _ stride: Int) -> Int { count == 0 ? 0 : 32 + count * stride }
        func derivation(_ d: Derivation, _ name: String) {
            b.add("\(name).states", arr(d.states.capacity, MemoryLayout<StateEntry>.stride))
            b.add("\(name).entries", arr(d.entries.capacity, MemoryLayout<WindowEntry>.stride))
            b.add("\(name).pending", arr(d.pending.capacity, MemoryLayout<PendingExpectation>.stride))
            b.add("\(name).fired", arr(d.fired.capacity, MemoryLayout<FiredMark>.stride))
        }
        b.add("child (struct)", MemoryLayout<ChildState>.stride)
        b.add("child id", id.utf8.count > 15 ? 32 + id.utf8.count : 0)
        derivation(now, "now")
        derivation(base, "base")
        b.add("timeline (events, ids and fields)", arr(timeline.capacity, 1))
        b.add("history (base, emitted, folded)", arr(history.capacity, MemoryLayout<History>.stride))
        b.add("emitted", arr(emitted.capacity, MemoryLayout<EmittedAlert>.stride))
        b.add("folded", arr(folded.capacity, MemoryLayout<SeenEvent>.stride))
    }
}

/// Heap bytes held, by part (for benchmarks).
public struct StateBytes: Sendable {
    public private(set) var parts: [(name: String, bytes: Int)] = []
    public var total: Int { parts.reduce(0) { $0 + $1.bytes } }

    public init() {}

    /// Where the next part is expected: parts are added in the same order for every child.
    private var next = 0

    public mutating func add(_ name: String, _ bytes: Int) {
        if next >= parts.count || parts[next].name != name { next = parts.firstIndex { $0.name == name } ?? parts.count }
        if next == parts.count { parts.append((name, 0)) }
        parts[next].bytes += bytes
        next = (next + 1) % max(parts.count, 1)
    }
}
