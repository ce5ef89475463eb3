import Foundation
import VigilContract
import VigilEngine

/// What one line of an events file is.
enum LineOutcome {
    /// Empty, or only spaces and tabs: not counted.
    case blank
    /// Valid: the record holds it.
    case valid(Instant)
    case invalid(ValidationFailure)

    /// Validates and decodes `line` into `record`.
    static func of(_ line: LineReader.Line, _ decoder: EventDecoder, _ record: inout EventRecord) -> LineOutcome {
        if line.length == 0 || (!line.oversized && line.bytes.allSatisfy { $0 == 0x20 || $0 == 0x09 }) { return .blank }
        if line.oversized {
            return .invalid(ValidationFailure(kind: .tooLarge, path: "$", reason: "the line is \(line.length) bytes, over the \(decoder.maxBytes)-byte limit"))
        }
        if let failure = decoder.decode(line.bytes, into: &record) { return .invalid(failure) }
        guard let at = record[decoder.contract.occurredAtSlot].instant else {
            // A decoder of the contract always captures it; said rather than dropped if one ever does not.
            return .invalid(ValidationFailure(kind: .contract, path: "$.occurred_at", reason: "no event time was decoded"))
        }
        return .valid(at)
    }
}

/// Reads, validates and decodes a file's lines on a thread of its own, batches ahead of the one evaluating
/// them: the evaluating thread reads each event back from `PackedEvents` instead of decoding it (a replay then
/// keeps two cores busy). What it hands over is what `LineOutcome.of` says of each line, in file order.
final class ReadAhead: @unchecked Sendable {
    /// A line that is not blank: what `LineOutcome.of` says of it, its number, and for an event its child id's
    /// `stableHash` (for `Engine.prefetch`; nil for an invalid line).
    struct Item {
        let outcome: LineOutcome
        let line: Int
        var child: UInt64?
    }

    struct Batch {
        var events = PackedEvents()
        var items: [Item] = []
    }

    /// Lines a batch holds; batches queued at most.
    static let batchLines = 4096
    static let queued = 4

    private let cond = NSCondition()
    private var batches: [Batch] = []
    private var finished = false
    private var stopped = false
    private let done = DispatchSemaphore(value: 0)

    private let decoder: EventDecoder
    // Read and written by the evaluating thread only (`next`, `upcoming`), for every line: not checked for
    // overlapping access at run time (two `swift_beginAccess` calls a line, checked).
    @exclusivity(unchecked) private var current = Batch()
    @exclusivity(unchecked) private var item = 0
    @exclusivity(unchecked) private var offset = 0

    /// Starts reading `reader` (which only this reads from now on) on a thread of its own.
    init(_ reader: LineReader, decoder: EventDecoder) {
        // Handed over: nothing but the thread below reads from it from now on.
        nonisolated(unsafe) let reader = reader
        self.decoder = decoder
        let thread = Thread { [self] in
            produce(reader)
            done.signal()
        }
        thread.name = "vigil-read-ahead"
        thread.start()
    }

    deinit { stop() }

    private func produce(_ reader: LineReader) {
        var record = decoder.makeRecord()
        var batch = Batch()
        // The decoder read through `self` (a constant of this class): captured by the closure, it was copied
        // for every line (a retain and a release of each of its references).
        while let outcome = reader.next({ LineOutcome.of($0, self.decoder, &record) }) {
            var item = Item(outcome: outcome, line: reader.lineNumber)
            switch outcome {
            case .blank: continue
            case .valid:
                batch.events.append(record)
                item.child = stableHash(record[decoder.contract.childIdSlot].string ?? "")
            case .invalid: break
            }
            batch.items.append(item)
            if batch.items.count >= Self.batchLines {
                guard put(batch) else { return }
                batch = Batch()
            }
        }
        if !batch.items.isEmpty { _ = put(batch) }
        cond.lock()
        finished = true
        cond.broadcast()
        cond.unlock()
    }

    /// Queues a batch, waiting while the queue is full; false once the reader stopped.
    private func put(_ b: Batch) -> Bool {
        cond.lock()
        defer { cond.unlock() }
        while batches.count >= Self.queued && !stopped { cond.wait() }
        guard !stopped else { return false }
        batches.append(b)
        cond.broadcast()
        return true
    }

    /// The next line's outcome, a valid event read into `record`; nil after the last.
    func next(into record: inout EventRecord) -> Item? {
        while item >= current.items.count {
            cond.lock()
            while batches.isEmpty && !finished { cond.wait() }
            guard !batches.isEmpty else {
                cond.unlock()
                return nil
            }
            current = batches.removeFirst()
            cond.broadcast()
            cond.unlock()
            item = 0
            offset = 0
        }
        let x = current.items[item]
        item += 1
        if case .valid = x.outcome, !current.events.load(&offset, into: &record) {
            // Only `produce` packs these: a defect, never an outcome of the input.
            fatalError("read-ahead: an event packed by this reader did not read back")
        }
        return x
    }

    /// The child id hash of the event `distance` lines after the one `next` returned last (0: that one), if that
    /// line is an event already read.
    func upcoming(_ distance: Int) -> UInt64? {
        let i = item + distance - 1
        return i >= 0 && i < current.items.count ? current.items[i].child : nil
    }

    /// Stops reading (what is queued is dropped) and waits for the thread to end. Idempotent.
    func stop() {
        cond.lock()
        let first = !stopped
        stopped = true
        cond.broadcast()
        cond.unlock()
        if first { done.wait() }
    }
}
