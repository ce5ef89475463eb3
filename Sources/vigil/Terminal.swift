#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import VigilRules
import VigilService

/// Buffered writes to stdout; stderr unbuffered. Flush before exiting.
final class Output {
    nonisolated(unsafe) static let shared = Output()
    private var buffer: [UInt8] = []

    init() { buffer.reserveCapacity(1 << 16) }

    func line(_ s: String) {
        buffer.append(contentsOf: s.utf8)
        buffer.append(0x0A)
        if buffer.count >= 1 << 16 { flush() }
    }

    /// A line already in UTF-8 (an alert's JSON), without going through a `String`.
    func line(bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
        buffer.append(0x0A)
        if buffer.count >= 1 << 16 { flush() }
    }

    func flush() {
        guard !buffer.isEmpty else { return }
        switch held {
        case .none, .file:
            Output.write(1, buffer)
        case .memoryOnly:
            return
        case .memory:
            if buffer.count < Output.heldInMemory { return }
            let fd = Output.spillFile()
            guard fd >= 0 else {
                held = .memoryOnly  // no temporary file: all of it in memory
                return
            }
            held = .spilled(fd)
            spill(to: fd)
        case .spilled(let fd):
            spill(to: fd)
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// The buffer appended to the held output's temporary file (a failure is kept for `commit` to report).
    private func spill(to fd: Int32) {
        do { try FileDescriptor.writeAll(fd, buffer) } catch { spillError = "cannot write the held output: \(error)" }
    }

    // MARK: output that may be taken back

    /// A stretch of standard output that may be taken back (`vigil replay` reading its input once): written
    /// through to a regular file, which a rewind truncates back to where the stretch began; held back otherwise
    /// (a pipe, a terminal): in memory, past 64 MiB in an unlinked temporary file (mode 0600), until committed.
    private enum Held { case none, file(start: off_t), memory, memoryOnly, spilled(Int32) }
    private var held = Held.none
    /// Set when holding output back failed: the output would be incomplete.
    private(set) var spillError: String?
    /// How much held output stays in memory before it goes to a temporary file (`VIGIL_HELD_OUTPUT_BYTES`
    /// overrides the 64 MiB, for tests of the spill).
    static let heldInMemory = ProcessInfo.processInfo.environment["VIGIL_HELD_OUTPUT_BYTES"].flatMap { Int($0) } ?? 64 << 20

    func beginRewindable() {
        flush()
        var st = stat()
        if fstat(1, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG {
            let append = fcntl(1, F_GETFL) & O_APPEND != 0
            let start = append ? st.st_size : lseek(1, 0, SEEK_CUR)
            if start >= 0 { held = .file(start: start); return }
        }
        held = .memory
    }

    /// Takes back everything written since `beginRewindable`; what follows is written through. Throws when a
    /// regular file cannot be truncated back.
    func rewind() throws {
        buffer.removeAll(keepingCapacity: true)
        defer { held = .none }
        switch held {
        case .none, .memory, .memoryOnly: break
        case .spilled(let fd): close(fd)
        case .file(let start):
            if ftruncate(1, start) != 0 || lseek(1, start, SEEK_SET) < 0 {
                throw OutputError(description: "cannot take back the output written to standard output: \(String(cString: strerror(errno)))")
            }
        }
        spillError = nil
    }

    /// Lets out what was held back; throws when some of it was lost.
    func commit() throws {
        if let spillError { throw OutputError(description: spillError) }
        let was = held
        held = .none
        if case .spilled(let fd) = was {
            defer { close(fd) }
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            guard lseek(fd, 0, SEEK_SET) == 0 else { throw OutputError(description: "cannot read the held output back: \(String(cString: strerror(errno)))") }
            while true {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw OutputError(description: "cannot read the held output back: \(String(cString: strerror(errno)))") }
                if n == 0 { break }
                Output.write(1, Array(chunk[..<n]))
            }
        }
        flush()
    }

    struct OutputError: Error, CustomStringConvertible { let description: String }

    /// An unlinked temporary file for held output, or -1.
    static func spillFile() -> Int32 {
        var template = Array((NSTemporaryDirectory() + "vigil-held-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { p in p.baseAddress.map { mkstemp($0) } ?? -1 }
        if fd >= 0 { template.withUnsafeBufferPointer { p in _ = p.baseAddress.map { unlink($0) } } }
        return fd
    }

    static func error(_ s: String) {
        write(2, Array((s + "\n").utf8))
    }

    /// Writes all bytes to a file descriptor (a closed pipe is not an error worth reporting here).
    static func write(_ fd: Int32, _ bytes: [UInt8]) {
        try? FileDescriptor.writeAll(fd, bytes)
    }

    static var stdoutIsTerminal: Bool { isatty(1) == 1 }
    static var stderrIsTerminal: Bool { isatty(2) == 1 }
}

enum ANSI {
    static func color(_ s: String, _ code: String, enabled: Bool) -> String { enabled ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }

    static func severity(_ s: Severity) -> String {
        switch s {
        case .critical: return "1;31"
        case .high: return "31"
        case .medium: return "33"
        case .low: return "36"
        }
    }
}
