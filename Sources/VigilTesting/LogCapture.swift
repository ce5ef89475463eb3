import Foundation
import Logging

/// Log lines kept in memory, for tests that check what a pipeline logged (`LogCapture.logger`).
public final class LogCapture: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [(level: Logger.Level, message: String)] = []

    public init() {}

    /// A logger writing here (and nowhere else) at `level` and above.
    public func logger(level: Logger.Level = .info) -> Logger {
        var l = Logger(label: "capture") { _ in Handler(capture: self) }
        l.logLevel = level
        return l
    }

    public var lines: [(level: Logger.Level, message: String)] { lock.lock(); defer { lock.unlock() }; return entries }

    public func contains(_ level: Logger.Level, _ fragment: String) -> Bool {
        lines.contains { $0.level == level && $0.message.contains(fragment) }
    }

    func add(_ level: Logger.Level, _ message: String) {
        lock.lock()
        entries.append((level, message))
        lock.unlock()
    }

    struct Handler: LogHandler {
        let capture: LogCapture
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            capture.add(event.level, event.message.description)
        }
    }
}
