import ArgumentParser
import Foundation
import Logging

/// Logs go to standard error, one line each, with ids and never payloads. Bootstrapped once, by the
/// executable only.
enum LoggingSetup {
    nonisolated(unsafe) static var done = false

    static func bootstrap(level: Logger.Level) -> Logger {
        if !done {
            done = true
            LoggingSystem.bootstrap { label in
                var h = StreamLogHandler.standardError(label: label)
                h.logLevel = level
                return h
            }
        }
        var l = Logger(label: "vigil")
        l.logLevel = level
        return l
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
