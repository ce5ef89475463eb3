import ArgumentParser

struct TestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "test", abstract: "Run the rule tests kept beside the rules.")
    func run() throws { throw ExitCode(1) }
}
