import ArgumentParser

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "generate", abstract: "Generate a synthetic event stream.")
    func run() throws { throw ExitCode(1) }
}
