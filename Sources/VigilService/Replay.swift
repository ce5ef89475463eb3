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
    /// A replay runs on one thread: the engine, modified for every event, is not checked for overlapping access
    /// at run time (with the sources' fields below, six `swift_beginAccess` calls an event, checked).
    @exclusivity(unchecked) public private(set) var engine: Engine
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

    let limits: EngineLimits

    public init(rules: CompiledRuleSet, limits: EngineLimits = EngineLimits(), maxEventBytes: Int = EventDecoder.defaultMaxBytes) {
        self.rules = rules
        self.limits = limits
        self.decoder = EventDecoder(contract: rules.contract, slots: Engine.decodedSlots(rules), maxBytes: maxEventBytes)
        self.engine = Engine(rules: rules, limits: limits)
    }

    /// One input stream during the merge.
    final class Source {
        let reader: LineReader
        let fileIndex: Int
        @exclusivity(unchecked) var record: EventRecord
        @exclusivity(unchecked) var at = Instant.distantPast
        @exclusivity(unchecked) var line = 0
        /// The latest `occurred_at` read from this file, and whether every event so far came at or after the
        /// ones before it.
        @exclusivity(unchecked) var latest = Instant.distantPast
        @exclusivity(unchecked) var sorted = true
        /// Reading, validating and decoding on a thread of its own (`readAhead`), or nil: here, by `reader`.
        var ahead: ReadAhead?
        /// For a file out of order: its valid lines sorted by (time, line), and the next to read.
        var index: [(at: Int64, line: Int32, offset: Int64)]?
        var next = 0

        init(reader: LineReader, fileIndex: Int, record: EventRecord) {
            self.reader = reader
            self.fileIndex = fileIndex
            self.record = record
        }

        /// Reads ahead on a thread of its own from now on (`reader` is then that thread's).
        func readAhead(_ decoder: EventDecoder) {
            ahead = ReadAhead(reader, decoder: decoder)
        }
    }

    /// Files read ahead on threads of their own at most (more are read on the evaluating thread): one
    /// thread decoding beside the one evaluating is what keeps two cores busy.
    static let readAheadFiles = 4

    /// Runs the replay. `onInvalid` sees each invalid line once; `onAlert` sees alerts in order.
    ///
    /// With `onRewind`, the input is read once when every file is in event-time order: the files are validated
    /// and evaluated in the same pass. When a file turns out not to be (an event earlier than one before it in
    /// the same file), evaluation stops, the rest is validated, `onRewind` is called once (every alert passed
    /// to `onAlert` until then is void: the caller discards them; an error it throws ends the run), and the
    /// events are evaluated again from the start in event-time order. Without `onRewind`, the files are always
    /// validated first and evaluated in a second pass, so that no alert is ever taken back. (Invalid lines are
    /// reported as they are read: with several files in one pass, in the order the merge reads them.)
    ///
    /// With `arrivalOrder`, events are evaluated in file order instead (files one after the other), as a
    /// live pipeline meets them: the clock is the largest `occurred_at` read so far, and an event behind its
    /// child's history is reconciled, withdrawing and raising alerts. Net of withdrawals, the alerts equal
    /// those of the sorted replay.
    public func run(files: [String], until: Instant? = nil, arrivalOrder: Bool = false, onInvalid: (InvalidLine) -> Void,
                    onAlert: (Alert) -> Void, onRewind: (() throws -> Void)? = nil) throws -> Summary {
        if arrivalOrder {
            precondition(switchTo == nil, "a rule switch is replayed in event-time order")
            return try runInArrivalOrder(files: files, until: until, onInvalid: onInvalid, onAlert: onAlert)
        }
        var summary = Summary()
        summary.files = files.count
        let sources = try files.enumerated().map { k, path in
            Source(reader: try LineReader(path: path, maxLine: decoder.maxBytes), fileIndex: k, record: decoder.makeRecord())
        }
        var sorted = true
        if let onRewind {
            // One pass: validate and evaluate together while every file is in time order.
            let initial = (rules, switchTo)
            for s in sources.prefix(Self.readAheadFiles) { s.readAhead(decoder) }
            defer { for s in sources { s.ahead?.stop() } }
            var live = sources.filter { validateNext($0, &summary, onInvalid) }
            sorted = merge(&live, &summary, onAlert) { self.validateNext($0, &$1, onInvalid) }
            if !sorted {
                // A file is out of order: validate what is left, then start again in event-time order.
                for s in live { while validateNext(s, &summary, onInvalid) {} }
                try onRewind()
                (rules, switchTo) = initial
                engine = Engine(rules: rules, limits: limits)
                summary.alertsByRule = [:]
            }
        } else {
            // Pass 1: validate every line, report the invalid ones, and find out which files are in time order.
            for s in sources {
                while validateNext(s, &summary, onInvalid) {}
                sorted = sorted && s.sorted
            }
        }
        // A file whose reading failed (a directory, an I/O error) ended early: an error, not its end.
        for s in sources { try s.reader.checkRead() }
        if !sorted || onRewind == nil {
            // Pass 2: merge by (time, file, line) and evaluate; the files out of order through an index.
            var live: [Source] = []
            var readers: [LineReader] = []
            for s in sources {
                let again = Source(reader: try LineReader(path: files[s.fileIndex], maxLine: decoder.maxBytes), fileIndex: s.fileIndex,
                                   record: decoder.makeRecord())
                if !s.sorted {
                    again.index = try buildIndex(files[s.fileIndex])
                }
                readers.append(again.reader)
                if advance(again) { live.append(again) }
            }
            _ = merge(&live, &summary, onAlert) { s, _ in self.advance(s) }
            for r in readers { try r.checkRead() }
        }
        summary.unsortedFiles = sources.count(where: { !$0.sorted })
        var alerts: [Alert] = []
        if switchTo != nil { switchRules(&summary, onAlert) }
        if let until {
            engine.advance(to: until, into: &alerts)
            for a in alerts { emit(a, &summary, onAlert) }
        }
        summary.engine = engine.stats
        return summary
    }

    /// Evaluates the sources' events merged by (time, file, line), `next` moving a source to its next event.
    /// Stops early, returning false, when a source's next event is earlier than one it gave before (only
    /// while validating: an indexed source never is).
    func merge(_ live: inout [Source], _ summary: inout Summary, _ onAlert: (Alert) -> Void, next: (Source, inout Summary) -> Bool) -> Bool {
        var alerts: [Alert] = []
        while !live.isEmpty {
            var m = 0
            for i in 1..<live.count {
                let a = live[i], b = live[m]
                if a.at < b.at || (a.at == b.at && (a.fileIndex, a.line) < (b.fileIndex, b.line)) { m = i }
            }
            let s = live[m]
            if let sw = switchTo, s.at >= sw.at { switchRules(&summary, onAlert) }
            engine.advance(to: s.at, into: &alerts)
            prefetch(after: s)
            engine.process(s.record, childHash: s.ahead?.upcoming(0), into: &alerts)
            for a in alerts { emit(a, &summary, onAlert) }
            alerts.removeAll(keepingCapacity: true)
            if !next(s, &summary) {
                live.remove(at: m)
            } else if !s.sorted {
                return false
            }
        }
        return true
    }

    /// Asks the engine to load what the source's next few events will read (`Engine.prefetch`) while it
    /// evaluates this one.
    func prefetch(after s: Source) {
        guard let ahead = s.ahead else { return }
        engine.prefetch { ahead.upcoming($0) }
    }

    /// Moves a source to its next valid event, validating and counting every line on the way and reporting the
    /// invalid ones; false at the end of the file.
    func validateNext(_ s: Source, _ summary: inout Summary, _ onInvalid: (InvalidLine) -> Void) -> Bool {
        while true {
            let outcome: LineOutcome
            let line: Int
            if let ahead = s.ahead {
                guard let item = ahead.next(into: &s.record) else { return false }
                (outcome, line) = (item.outcome, item.line)
            } else {
                guard let o = s.reader.next({ LineOutcome.of($0, decoder, &s.record) }) else { return false }
                (outcome, line) = (o, s.reader.lineNumber)
            }
            switch outcome {
            case .blank: continue
            case .valid(let at):
                summary.lines += 1
                summary.valid += 1
                summary.saw(at)
                if at < s.latest { s.sorted = false }
                s.latest = max(s.latest, at)
                s.at = at
                s.line = line
                return true
            case .invalid(let f):
                summary.lines += 1
                summary.invalid += 1
                summary.invalidByKind[f.kind.rawValue, default: 0] += 1
                onInvalid(InvalidLine(file: s.reader.path, line: line, failure: f))
            }
        }
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
        var alerts: [Alert] = []
        for (k, path) in files.enumerated() {
            let s = Source(reader: try LineReader(path: path, maxLine: decoder.maxBytes), fileIndex: k, record: decoder.makeRecord())
            s.readAhead(decoder)
            defer { s.ahead?.stop() }
            while validateNext(s, &summary, onInvalid) {
                engine.advance(to: max(engine.clock, s.at), into: &alerts)
                prefetch(after: s)
                engine.process(s.record, childHash: s.ahead?.upcoming(0), into: &alerts)
                for a in alerts { emit(a, &summary, onAlert) }
                alerts.removeAll(keepingCapacity: true)
            }
            if !s.sorted { summary.unsortedFiles = 1 }
            s.ahead?.stop()
            try s.reader.checkRead()
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
        try reader.checkRead()
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
