import ArgumentParser

struct EndToEndCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "e2e", abstract: "vigil run over the embedded broker against kcat and a no-op consumer.")
    @Option var rules = "Rules"
    @Option var vigil = ".build/release/vigil"
    @Option var events = 1_000_000
    @Option var partitions = 32
    func run() throws { try EndToEndCommand.measure(vigil: vigil, rules: rules, events: events, partitions: partitions) }
    static func measure(vigil: String, rules: String, events: Int, partitions: Int) throws {}
}

struct LatencyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "latency", abstract: "Event produced to alert consumed at a fixed offered load.")
    @Option var rules = "Rules"
    @Option var vigil = ".build/release/vigil"
    @Option var rate = 20_000
    @Option var seconds = 20
    func run() throws { try LatencyCommand.measure(vigil: vigil, rules: rules, rate: rate, seconds: seconds) }
    static func measure(vigil: String, rules: String, rate: Int, seconds: Int) throws {}
}
