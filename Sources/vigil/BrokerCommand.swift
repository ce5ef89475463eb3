import ArgumentParser
import Foundation
import Logging
import VigilKafka

struct BrokerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "Run the embedded Kafka-protocol broker (librdkafka's mock cluster) and print its bootstrap address.",
        discussion: """
        For vigil run, kcat and tests on one machine. It keeps at most ~5 MiB or 100,000 message sets per partition \
        (older data is dropped), does not honour transactions, and delays the first group join by 3 s. \
        Stop it with SIGINT or SIGTERM.
        """
    )

    @Option(help: "Fixed bootstrap port on 127.0.0.1 (default: an ephemeral port).") var port: UInt16?
    @Option(help: "Partitions of each topic created.") var partitions: Int = 4
    @Option(help: ArgumentHelp("Topics to create (repeatable).", valueName: "TOPIC"))
    var topic: [String] = ["agency-events", "vigil-alerts", "vigil-dead-letters", "vigil-changelog", "vigil-repartition"]

    func validate() throws {
        guard partitions > 0, partitions <= 1000 else { throw ValidationError("--partitions must be between 1 and 1000") }
    }

    func run() throws {
        let logger = LoggingSetup.bootstrap(level: .warning)
        do {
            let broker = try EmbeddedBroker(logger: logger)
            if let port { try broker.listen(port: port) }
            for t in topic { try broker.createTopic(t, partitions: partitions) }
            Output.shared.line(broker.bootstrapServers)
            Output.shared.flush()
            Output.error("vigil broker: listening on \(broker.bootstrapServers) (brokers \(broker.brokerAddresses)); topics \(topic.joined(separator: ", ")) with \(partitions) partitions; Ctrl-C stops it")
            let stop = DispatchSemaphore(value: 0)
            let trap = SignalTrap { stop.signal() }
            stop.wait()
            _ = trap
            withExtendedLifetime(broker) {}
        } catch {
            Output.error("vigil broker: \(error)")
            throw ExitCode(1)
        }
    }
}
