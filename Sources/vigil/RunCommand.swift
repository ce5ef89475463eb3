import ArgumentParser
import Foundation
import Logging
import VigilOperations
import VigilRules
import VigilService

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Consume agency events from Kafka, evaluate the rules, and write alerts to a topic and an audit log.",
        discussion: """
        Settings come from defaults, then --config FILE (YAML, keys as the settings' names, e.g. input-topic: ...), \
        then the command line. Offsets are committed only once every alert caused by the events up to them is \
        acknowledged by the broker and fsynced to the audit log. Invalid messages go to the dead-letter topic with \
        their original bytes and the reason in headers. State is checkpointed per input partition to the changelog \
        topic; a partition assigned to an instance is restored from its newest complete checkpoint, so a crash \
        loses nothing and applies nothing twice. SIGINT or SIGTERM: stop consuming, drain, checkpoint, flush, fsync, \
        commit, leave the group, exit 0; a second signal exits at once. SIGHUP (or POST /-/reload with --http, or a \
        change of the rules directory with --watch-rules): reload the rule pack; it must compile and pass its rule \
        tests, then every shard switches to it at one epoch barrier, each child carried across by stable id and \
        re-derived from its timeline where the change needs it (see docs/rules.md, "Changing the rules").

        SETTINGS:
        \(PipelineConfig.helpText)
        """
    )

    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("Settings, as --name value (listed below under SETTINGS).", valueName: "setting"))
    var settings: [String] = []
    @Option(help: ArgumentHelp("YAML file with the same settings.", valueName: "FILE")) var config: String?
    @Flag(help: "Stop once caught up with every assigned partition (backtests): drains, saves state and commits as on SIGTERM.")
    var exitWhenCaughtUp = false
    @Flag(help: "Print the effective settings (defaults, then --config, then the command line) as YAML, check the rules, and exit.")
    var printConfig = false
    @Option(help: ArgumentHelp("At exit, write the run's counters as JSON to this file.", valueName: "FILE")) var statsFile: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: Logger.Level = .info
    @Option(help: "Log format: text, or json (one object a line, metadata as fields, for log shippers).") var logFormat: LogFormat = .text
    @Flag(help: "Reload the rule pack when a file of the rules directory changes (as on SIGHUP: a pack that fails to compile or its tests is refused, and the running one goes on).")
    var watchRules = false

    func effectiveConfig() throws -> PipelineConfig {
        var c = PipelineConfig()
        if let env = ProcessInfo.processInfo.environment["VIGIL_RULES"] { c.rules = env }
        do {
            if let config {
                guard let data = FileManager.default.contents(atPath: config), let text = String(data: data, encoding: .utf8) else {
                    throw ValidationError("cannot read --config \(config)")
                }
                try c.load(yaml: text, path: config)
            }
            try c.parse(arguments: settings)
            try c.validate()
        } catch let e as PipelineConfig.ConfigError {
            throw ValidationError(e.message)
        }
        return c
    }

    func validate() throws { _ = try effectiveConfig() }

    func run() throws {
        let c = try effectiveConfig()
        if printConfig {
            _ = try RulesOptions.compile(c.rules)
            Output.shared.line(c.yaml)
            Output.shared.flush()
            return
        }
        let logger = LoggingSetup.bootstrap(level: logLevel, format: logFormat)
        let set = try RulesOptions.compile(c.rules)
        let pipeline = Pipeline(config: c, rules: set, logger: logger)
        pipeline.stopWhenCaughtUp = exitWhenCaughtUp
        let trap = SignalTrap { pipeline.requestStop() }
        _ = trap
        // SIGHUP (and --watch-rules): load, compile and test the pack, then switch at the next epoch barrier.
        let rulesDir = c.rules
        let hup = ReloadTrap { pipeline.reload(from: rulesDir, loadedBy: "sighup") }
        _ = hup
        let watcher = watchRules ? RulesWatcher(directory: rulesDir) { pipeline.reload(from: rulesDir, loadedBy: "watch-rules") } : nil
        defer { watcher?.cancel() }
        var server: OperationsServer?
        defer { server?.close() }
        do {
            if let address = HTTPAddress(c.http) { server = try Endpoints.start(address, for: pipeline, rulesDirectory: rulesDir, logger: logger) }
            let s = try pipeline.run()
            if let statsFile { try s.json.write(toFile: statsFile, atomically: true, encoding: .utf8) }
            logger.info("stopped: \(s.messages) messages, \(s.events) events, \(s.deadLetters) dead letters, \(s.alerts) alerts (\(s.auditWritten) new in the audit log), \(s.engine.duplicates) duplicates, \(s.engine.lateEvents) late events (\(s.withdrawn) withdrawn, \(s.engine.raisedLate) raised late)")
        } catch {
            Output.error("vigil: \(error)")
            throw ExitCode(1)
        }
    }
}
