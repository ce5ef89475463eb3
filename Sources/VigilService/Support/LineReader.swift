#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a file line by line through a fixed buffer, handing out each line's bytes without copying.
/// Lines end at `\n` (a preceding `\r` is dropped); a last line without a newline is still a line.
/// A line longer than `maxLine` is skipped and reported as oversized, with its length but not its bytes.
///
/// One thread reads a reader at a time (replay's read-ahead thread owns its own), so the properties read for
/// every line are not checked for overlapping access at run time: checked, they were three or four
/// `swift_beginAccess` calls a line, about 380 instructions (BENCHMARKS.md, 2026-12-07, evening).
public final class LineReader {
    public let path: String
    let fd: Int32
    @exclusivity(unchecked) var buffer: [UInt8]
    @exclusivity(unchecked) var start = 0
    @exclusivity(unchecked) var end = 0
    @exclusivity(unchecked) var eof = false
    /// 1-based number of the line last returned.
    @exclusivity(unchecked) public private(set) var lineNumber = 0
    /// Byte offset in the file of the line last returned.
    @exclusivity(unchecked) public private(set) var lineOffset: Int64 = 0
    /// Why reading stopped before the end of the file (an `errno`: a directory, an I/O error), if it did.
    public private(set) var readError: Int32?
    /// File offset of `buffer[start]`.
    @exclusivity(unchecked) var position: Int64 = 0
    public let maxLine: Int

    public struct OpenError: Error, CustomStringConvertible {
        public let path: String
        public let code: Int32
        public var description: String { "\(path): \(String(cString: strerror(code)))" }
    }

    /// Throws what stopped the reading before the end of the file, if anything did.
    public func checkRead() throws(OpenError) {
        if let readError { throw OpenError(path: path, code: readError) }
    }

    /// One line: its bytes (empty when oversized) and its full length.
    public struct Line {
        public let bytes: UnsafeRawBufferPointer
        public let length: Int
        public var oversized: Bool { bytes.count < length }
    }

    public init(path: String, maxLine: Int = 1 << 20) throws(OpenError) {
        self.path = path
        self.maxLine = maxLine
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw OpenError(path: path, code: errno) }
        self.fd = fd
        buffer = [UInt8](repeating: 0, count: max(1 << 16, maxLine + 1))
    }

    deinit { close(fd) }

    /// Moves to a byte offset that starts line number `line` (for index-driven reads).
    public func seek(to offset: Int64, line: Int) {
        lseek(fd, off_t(offset), SEEK_SET)
        start = 0
        end = 0
        eof = false
        position = offset
        lineNumber = line - 1
    }

    /// Calls `body` with the next line; returns nil at the end of the file.
    public func next<R>(_ body: (Line) -> R) -> R? {
        while true {
            if let nl = find(0x0A, from: start) {
                var stop = nl
                if stop > start, buffer[stop - 1] == 0x0D { stop -= 1 }
                return emit(start, stop, length: stop - start, consumed: nl + 1 - start, body)
            }
            if end - start >= maxLine { return skipOversized(body) }
            if eof {
                guard end > start else { return nil }
                return emit(start, end, length: end - start, consumed: end - start, body)
            }
            fill()
        }
    }

    func emit<R>(_ a: Int, _ b: Int, length: Int, consumed: Int, _ body: (Line) -> R) -> R {
        lineNumber += 1
        lineOffset = position
        let r = buffer.withUnsafeBytes { body(Line(bytes: UnsafeRawBufferPointer(rebasing: $0[a..<b]), length: length)) }
        start += consumed
        position += Int64(consumed)
        return r
    }

    func skipOversized<R>(_ body: (Line) -> R) -> R {
        lineNumber += 1
        lineOffset = position
        var length = 0
        while true {
            if let nl = find(0x0A, from: start) {
                length += nl - start
                position += Int64(nl + 1 - start)
                start = nl + 1
                break
            }
            length += end - start
            position += Int64(end - start)
            start = end
            if eof { break }
            fill()
        }
        return body(Line(bytes: UnsafeRawBufferPointer(start: nil, count: 0), length: max(length, maxLine + 1)))
    }

    /// The index of the first `byte` in `buffer[i..<end]`, by `memchr` (a loop over the class's array read a
    /// byte at a time, bounds-checked: about 15 instructions a byte, a quarter of what replay's read-ahead
    /// thread did; BENCHMARKS.md, 2026-12-07, evening).
    func find(_ byte: UInt8, from i: Int) -> Int? {
        let end = self.end
        guard i >= 0, i < end else { return nil }
        return buffer.withUnsafeBytes { p -> Int? in
            guard let base = p.baseAddress, end <= p.count, let hit = memchr(base + i, Int32(byte), end - i) else { return nil }
            return base.distance(to: UnsafeRawPointer(hit))
        }
    }

    func fill() {
        if start > 0 {
            let n = end - start
            if n > 0 {
                let from = start
                buffer.withUnsafeMutableBytes { p in
                    if let base = p.baseAddress { _ = memmove(base, base + from, n) }
                }
            }
            start = 0
            end = n
        }
        while true {
            let got = buffer.withUnsafeMutableBytes { p -> Int in
                guard let base = p.baseAddress, p.count > end else { return 0 }
                return read(fd, base + end, p.count - end)
            }
            if got > 0 {
                end += got
            } else if got < 0 && errno == EINTR {
                continue
            } else {
                // A failed read ends the file here, and says so: the caller must not take it for the end.
                if got < 0 { readError = errno }
                eof = true
            }
            return
        }
    }
}
