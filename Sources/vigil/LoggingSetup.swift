import ArgumentParser
import Foundation
import Logging
import VigilService

/// Logs go to standard error, one line each, with ids and never payloads. Bootstrapped once, by the
/// executable only.
enum LoggingSetup {
    nonisolated(unsafe) static var done = false

    static func bootstrap(level: Logger.Level, format: LogFormat = .text) -> Logger {
        if !done {
            done = true
            LoggingSystem.bootstrap { label in
                switch format {
                case .text:
                    var h = StreamLogHandler.standardError(label: label)
                    h.logLevel = level
                    return h
                case .json:
                    var h = JSONLogHandler(label: label)
                    h.logLevel = level
                    return h
                }
            }
        }
        var l = Logger(label: "vigil")
        l.logLevel = level
        return l
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension LogFormat: ExpressibleByArgument {}
