import Foundation
import VigilContract
import VigilEngine
import VigilRules

/// Replays files of events (JSON Lines) through the engine in event-time order, as docs/rules.md defines:
/// ties in input order (file order, then line order), the clock at the largest `occurred_at` read so far,
/// and, if asked, the clock run on to `until` at the end.
///
/// Memory stays bounded by the engine's state, not the input: files already in time order are merged as
/// streams; only a file out of order is indexed (24 bytes per event) and read back by offset.
public final class Replay {
    /// The rule pack in force (the one switched to, after a switch).
    public private(set) var rules: CompiledRuleSet
    public let decoder: EventDecoder
    public private(set) var engine: Engine
    /// A switch of rule pack to make before the first event at or after `at` (a backtest of a rule change:
    /// the oracle of a live reload). The clock is not run on to `at` first: the switch happens where the input
    /// is, as a live reload happens between two batches.
    public var switchTo: (rules: CompiledRuleSet, at: Instant)?
    /// Called at the switch, with the change as classified.
    public var onSwitch: ((PackChange) -> Void)?

    public struct Summary: Sendable {
        public var files = 0
        public var lines = 0
        public var valid = 0
        public var invalid = 0
        public var invalidByKind: [String: Int] = [:]
        public var unsortedFiles = 0
        public var engine = EngineStats()
        public var alertsByRule: [String: Int] = [:]
        /// The earliest and latest `occurred_at` of the valid events read.
        public var firstEvent: Instant?
        public var lastEvent: Instant?

        mutating func saw(_ at: Instant) {
            if firstEvent.map({ at < $0 }) ?? true { firstEvent = at }
            if lastEvent.map({ at > $0 }) ?? true { lastEvent = at }
        }
    }

    public struct InvalidLine: Sendable {
        public let file: String
        public let line: Int
        public let failure: ValidationFailure
        public var description: String { "\(file):\(line): \(failure.kind.rawValue): \(failure)" }
    }

    public init(rules: CompiledRuleSet, limits: EngineLimits = EngineLimits(), maxEventBytes: Int = EventDecoder.defaultMaxBytes) {
        self.rules = rules
        self.decoder = EventDecoder(contract: rules.contract, slots: Engine.decodedSlots(rules), maxBytes: maxEventBytes)
        self.engine = Engine(rules: rules, limits: limits)
    }

    /// One input stream during the merge.
    final class Source {
        let reader: LineReader
        let fileIndex: Int
        var record: EventRecord
        var at = Instant.distantPast
        var line = 0
        /// For a file out of order: its valid lines sorted by (time, line), and the next to read.
        var index: [(at: Int64, line: Int32, offset: Int64)]?
        var next = 0

        init(reader: LineReader, fileIndex: Int, record: EventRecord) {
            self.reader = reader
            self.fileIndex = fileIndex
            self.record = record
        }
    }

    /// Runs the replay. `onInvalid` sees each invalid line once; `onAlert` sees alerts in order.
    ///
    /// With `arrivalOrder`, events are evaluated in file order instead (files one after the other), as a
    /// live pipeline meets them: the clock is the largest `occurred_at` read so far, and an event behind its
    /// child's history is reconciled, withdrawing and raising alerts. Net of withdrawals, the alerts equal
    /// those of the sorted replay.
    public func run(files: [String], until: Instant? = nil, arrivalOrder: Bool = false, onInvalid: (InvalidLine) -> Void,
                    onAlert: (Alert) -> Void) throws -> Summary {
        if arrivalOrder {
            precondition(switchTo == nil, "a rule switch is replayed in event-time order")
            return try runInArrivalOrder(files: files, until: until, onInvalid: onInvalid, onAlert: onAlert)
        }
        var summary = Summary()
        summary.files = files.count
        var sources: [Source] = []
        // Pass 1: validate every line, report the invalid ones, and find out which files are in time order.
        let slot = rules.contract.occurredAtSlot
        for (k, path) in files.enumerated() {
            let reader = try LineReader(path: path, maxLine: decoder.maxBytes)
            var record = decoder.makeRecord()
            var last = Instant.distantPast
            var sorted = true
            var failure: ValidationFailure?
            while let outcome = reader.next({ line -> Bool? in
                if line.length == 0 || (!line.oversized && line.bytes.allSatisfy { $0 == 0x20 || $0 == 0x09 }) { return nil }
                if line.oversized {
                    failure = ValidationFailure(kind: .tooLarge, path: "$", reason: "the line is \(line.length) bytes, over the \(decoder.maxBytes)-byte limit")
                } else {
                    failure = decoder.decode(line.bytes, into: &record)
                }
                return failure == nil
            }) {
                guard let valid = outcome else { continue }  // blank line
                summary.lines += 1
                if valid, let at = record[slot].instant {
                    summary.valid += 1
                    if at < last { sorted = false }
                    last = max(last, at)
                } else if let f = failure {
                    summary.invalid += 1
                    summary.invalidByKind[f.kind.rawValue, default: 0] += 1
                    onInvalid(InvalidLine(file: path, line: reader.lineNumber, failure: f))
                }
            }
            let source = Source(reader: try LineReader(path: path, maxLine: decoder.maxBytes), fileIndex: k, record: decoder.makeRecord())
            if !sorted {
                summary.unsortedFiles += 1
                source.index = try buildIndex(path)
            }
            sources.append(source)
        }
        // Pass 2: merge by (time, file, line) and evaluate.
        var live = sources.filter { advance($0) }
        var alerts: [Alert] = []
        while !live.isEmpty {
            var m = 0
            for i in 1..<live.count {
                let a = live[i], b = live[m]
                if a.at < b.at || (a.at == b.at && (a.fileIndex, a.line) < (b.fileIndex, b.line)) { m = i }
            }
            let s = live[m]
            summary.saw(s.at)
            if let sw = switchTo, s.at >= sw.at { switchRules(&summary, onAlert) }
            engine.advance(to: s.at, into: &alerts)
            engine.process(s.record, into: &alerts)
            for a in alerts { emit(a, &summary, onAlert) }
            alerts.removeAll(keepingCapacity: true)
            if !advance(s) { live.remove(at: m) }
        }
        if switchTo != nil { switchRules(&summary, onAlert) }
        if let until {
            engine.advance(to: until, into: &alerts)
            for a in alerts { emit(a, &summary, onAlert) }
        }
        summary.engine = engine.stats
        return summary
    }

    /// Makes the switch `switchTo` asks for: the engine's children carried to the new pack, its backfill
    /// emitted.
    func switchRules(_ summary: inout Summary, _ onAlert: (Alert) -> Void) {
        guard let sw = switchTo else { return }
        switchTo = nil
        let change = PackChange(from: PackManifest(rules), to: PackManifest(sw.rules))
        var alerts: [Alert] = []
        engine = engine.switched(to: sw.rules, change: change, into: &alerts)
        rules = sw.rules
        onSwitch?(change)
        for a in alerts { emit(a, &summary, onAlert) }
    }

    func runInArrivalOrder(files: [String], until: Instant?, onInvalid: (InvalidLine) -> Void, onAlert: (Alert) -> Void) throws -> Summary {
        var summary = Summary()
        summary.files = files.count
        let slot = rules.contract.occurredAtSlot
        var alerts: [Alert] = []
        for path in files {
            let reader = try LineReader(path: path, maxLine: decoder.maxBytes)
            var record = decoder.makeRecord()
            var failure: ValidationFailure?
            var last = Instant.distantPast
            while let outcome = reader.next({ line -> Bool? in
                if line.length == 0 || (!line.oversized && line.bytes.allSatisfy { $0 == 0x20 || $0 == 0x09 }) { return nil }
                failure = line.oversized
                    ? ValidationFailure(kind: .tooLarge, path: "$", reason: "the line is \(line.length) bytes, over the \(decoder.maxBytes)-byte limit")
                    : decoder.decode(line.bytes, into: &record)
                return failure == nil
            }) {
                guard let valid = outcome else { continue }
                summary.lines += 1
                guard valid, let at = record[slot].instant else {
                    if let f = failure {
                        summary.invalid += 1
                        summary.invalidByKind[f.kind.rawValue, default: 0] += 1
                        onInvalid(InvalidLine(file: path, line: reader.lineNumber, failure: f))
                    }
                    continue
                }
                summary.valid += 1
                summary.saw(at)
                if at < last { summary.unsortedFiles = 1 }
                last = max(last, at)
                engine.advance(to: max(engine.clock, at), into: &alerts)
                engine.process(record, into: &alerts)
                for a in alerts { emit(a, &summary, onAlert) }
                alerts.removeAll(keepingCapacity: true)
            }
        }
        if let until {
            engine.advance(to: until, into: &alerts)
            for a in alerts { emit(a, &summary, onAlert) }
        }
        summary.engine = engine.stats
        return summary
    }

    func emit(_ a: Alert, _ summary: inout Summary, _ onAlert: (Alert) -> Void) {
        summary.alertsByRule[rules.rules[a.ruleIndex].id, default: 0] += 1
        onAlert(a)
    }

    func buildIndex(_ path: String) throws -> [(at: Int64, line: Int32, offset: Int64)] {
        let reader = try LineReader(path: path, maxLine: decoder.maxBytes)
        var record = decoder.makeRecord()
        var index: [(at: Int64, line: Int32, offset: Int64)] = []
        let slot = rules.contract.occurredAtSlot
        while let entry = reader.next({ line -> (Int64, Int32, Int64)? in
            guard !line.oversized, line.length > 0, decoder.decode(line.bytes, into: &record) == nil,
                  let at = record[slot].instant else { return nil }
            return (at.micros, Int32(truncatingIfNeeded: reader.lineNumber), reader.lineOffset)
        }) {
            if let entry { index.append(entry) }
        }
        index.sort { ($0.at, $0.line) < ($1.at, $1.line) }
        return index
    }

    /// Moves a source to its next valid event; false when it has none.
    func advance(_ s: Source) -> Bool {
        let slot = rules.contract.occurredAtSlot
        if let index = s.index {
            while s.next < index.count {
                let e = index[s.next]
                s.next += 1
                s.reader.seek(to: e.offset, line: Int(e.line))
                let ok = s.reader.next { line in decoder.decode(line.bytes, into: &s.record) == nil } ?? false
                if ok, let at = s.record[slot].instant {
                    s.at = at
                    s.line = Int(e.line)
                    return true
                }
            }
            return false
        }
        while let ok = s.reader.next({ line in !line.oversized && line.length > 0 && decoder.decode(line.bytes, into: &s.record) == nil }) {
            if ok, let at = s.record[slot].instant {
                s.at = at
                s.line = s.reader.lineNumber
                return true
            }
        }
        return false
    }
}
