import Foundation
import Testing
import VigilContract
import VigilEngine
import VigilTesting
@testable import VigilService

/// `vigil replay` reads, validates and decodes a file on a thread of its own (`ReadAhead`): what the evaluating
/// thread gets must be what reading the file itself gives, line for line, over many batches.
@Suite struct ReadAheadTests {
    /// Valid events with invalid, oversized and blank lines among them, over more than two batches.
    func file() -> String {
        var lines: [String] = []
        for (k, line) in generatedLines(children: 1_000, days: 250, seed: 5).prefix(3 * ReadAhead.batchLines + 100).enumerated() {
            lines.append(line)
            if k % 997 == 0 { lines.append("{\"not\": \"an event\"}") }
            if k % 1500 == 0 { lines.append("   ") }
            if k % 2500 == 0 { lines.append(String(repeating: "x", count: 3_000)) }
        }
        let path = TestDirectory.file("read-ahead") + ".jsonl"
        precondition(FileManager.default.createFile(atPath: path, contents: Data((lines.joined(separator: "\n") + "\n").utf8)), "could not write \(path)")
        return path
    }

    struct Read: Equatable {
        var events: [[FieldValue]] = []
        var lines: [Int] = []
        var invalid: [String] = []
        var lineCount = 0, valid = 0
    }

    func read(_ path: String, ahead: Bool) throws -> Read {
        let replay = Replay(rules: pack, maxEventBytes: 2_000)
        let s = Replay.Source(reader: try LineReader(path: path, maxLine: 2_000), fileIndex: 0, record: replay.decoder.makeRecord())
        if ahead { s.readAhead(replay.decoder) }
        var summary = Replay.Summary()
        var out = Read()
        while replay.validateNext(s, &summary, { out.invalid.append($0.description) }) {
            out.events.append(s.record.writtenSlots.map { s.record[Int($0)] }.filter { !$0.isMissing })
            out.lines.append(s.line)
        }
        out.lineCount = summary.lines
        out.valid = summary.valid
        return out
    }

    @Test func readingAheadGivesWhatReadingTheFileGives() throws {
        let path = file()
        let inline = try read(path, ahead: false), ahead = try read(path, ahead: true)
        #expect(inline.events.count > 2 * ReadAhead.batchLines && inline.invalid.count > 10)
        #expect(ahead.lines == inline.lines)
        #expect(ahead.invalid == inline.invalid)
        #expect(ahead.lineCount == inline.lineCount && ahead.valid == inline.valid)
        #expect(ahead.events == inline.events)
    }

    @Test func stoppingBeforeTheEndEndsTheReader() throws {
        let replay = Replay(rules: pack)
        let ahead = ReadAhead(try LineReader(path: file()), decoder: replay.decoder)
        var record = replay.decoder.makeRecord()
        #expect(ahead.next(into: &record) != nil)
        // The reader is blocked on a full queue by now or soon: stop must wake it and wait for it.
        ahead.stop()
        ahead.stop()
    }
}
