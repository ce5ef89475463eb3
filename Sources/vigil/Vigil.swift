import ArgumentParser

@main
struct Vigil: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigil",
        abstract: "Multi-agency child-protection alerting: rules over agency events, alerts when a child may be in danger or a statutory step is overdue.",
        discussion: "Rules are YAML files (see docs/rules.md). Alerts are prompts for human judgement, never decisions.",
        subcommands: [RunCommand.self, DemoCommand.self, TailCommand.self, CheckCommand.self, TestCommand.self, ReplayCommand.self,
                      GenerateCommand.self, BrokerCommand.self, AuditCommand.self, RulesCommand.self, CalendarCommand.self, ExplainCommand.self]
    )
}
