import Foundation

/// A child process whose standard output and error are collected line by line.
public final class Subprocess: @unchecked Sendable {
    public let process = Process()
    private let lock = NSLock()
    private var out: [String] = []
    private var err: [String] = []
    private var partial = ["", ""]

    public init(_ executable: String, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let o = Pipe(), e = Pipe()
        process.standardOutput = o
        process.standardError = e
        for (pipe, k) in [(o, 0), (e, 1)] {
            pipe.fileHandleForReading.readabilityHandler = { [weak self] h in
                let data = h.availableData
                guard !data.isEmpty else { h.readabilityHandler = nil; return }
                self?.received(String(decoding: data, as: UTF8.self), stream: k)
            }
        }
        try process.run()
    }

    private func received(_ text: String, stream k: Int) {
        lock.lock()
        defer { lock.unlock() }
        partial[k] += text
        var lines = partial[k].split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        partial[k] = lines.removeLast()
        if k == 0 { out += lines } else { err += lines }
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
        usleep(100_000)
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
