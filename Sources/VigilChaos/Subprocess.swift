import Foundation

/// A child process whose standard output and error are collected line by line.
public final class Subprocess: @unchecked Sendable {
    public let process = Process()
    private let lock = NSLock()
    private var out: [String] = []
    private var err: [String] = []
    private var partial = ["", ""]
    /// Each stream has reached its end (the process closed it): everything it wrote has been collected.
    private var ended = [false, false]

    /// Starts `executable`; `environment` is added to this process's environment.
    public init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let o = Pipe(), e = Pipe()
        process.standardOutput = o
        process.standardError = e
        try process.run()
        // A thread per stream reads until the process closes it, so that `wait` can tell when all is in. It
        // reads the descriptor itself: FileHandle.availableData traps on a failed read (EINTR included).
        for (pipe, k) in [(o, 0), (e, 1)] {
            Thread.detachNewThread { [self] in
                let fd = pipe.fileHandleForReading.fileDescriptor
                var buffer = [UInt8](repeating: 0, count: 65_536)
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n > 0 {
                        received(buffer[..<n], stream: k)
                    } else if n < 0 && errno == EINTR {
                        continue
                    } else {
                        break
                    }
                }
                // The pipe (and so its descriptor) lives until here.
                withExtendedLifetime(pipe) {}
                end(k)
            }
        }
    }

    private var pendingBytes: [[UInt8]] = [[], []]

    private func received(_ data: ArraySlice<UInt8>, stream k: Int) {
        lock.lock()
        defer { lock.unlock() }
        // Decode whole lines only, so that a character split between two reads is not mangled.
        pendingBytes[k] += data
        guard let last = pendingBytes[k].lastIndex(of: 0x0A) else { return }
        let text = String(decoding: pendingBytes[k][...last], as: UTF8.self)
        pendingBytes[k].removeFirst(last + 1)
        partial[k] += text
        var lines = partial[k].split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        partial[k] = lines.removeLast()
        if k == 0 { out += lines } else { err += lines }
    }

    private func end(_ k: Int) {
        lock.lock()
        ended[k] = true
        lock.unlock()
    }

    public var stdout: [String] { lock.lock(); defer { lock.unlock() }; return out }
    public var stderr: [String] { lock.lock(); defer { lock.unlock() }; return err }
    public var isRunning: Bool { process.isRunning }

    public func signal(_ s: Int32) { kill(process.processIdentifier, s) }

    /// Waits for exit; returns the status, or nil on timeout (the process is then killed).
    public func wait(timeout: TimeInterval) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        // The output is read on other threads: wait for both streams to end, so that nothing written is missed.
        _ = Subprocess.until(timeout: 30) { lock.lock(); defer { lock.unlock() }; return ended == [true, true] }
        return process.terminationStatus
    }

    /// Waits until `condition` holds, polling; false on timeout.
    public static func until(timeout: TimeInterval, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }
}
