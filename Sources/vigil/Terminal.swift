#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
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

    func flush() {
        guard !buffer.isEmpty else { return }
        Output.write(1, buffer)
        buffer.removeAll(keepingCapacity: true)
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
