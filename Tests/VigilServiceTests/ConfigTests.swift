import Foundation
import Testing
@testable import VigilService

@Suite struct ConfigTests {
    @Test func theShippedDeploymentConfigLoads() throws {
        var c = PipelineConfig()
        let text = try String(contentsOf: repoRoot.appendingPathComponent("deploy/vigil.yaml"), encoding: .utf8)
        try c.load(yaml: text, path: "deploy/vigil.yaml")
        try c.validate()
        #expect(c.brokers == "kafka:9092")
        #expect(c.auditFile == "/var/lib/vigil/audit.jsonl")
        #expect(c.changelogTopic == "vigil-changelog")
        #expect(c.clock == .wall)
        #expect(c.kafka == ["client.id=vigil"])
    }

    @Test func settingsAreCheckedWithClearErrors() {
        var c = PipelineConfig()
        #expect(throws: PipelineConfig.ConfigError.self) { try c.load(yaml: "brokerz: x\n", path: "v.yaml") }
        #expect(throws: PipelineConfig.ConfigError.self) { try c.load(yaml: "clock: sometimes\n", path: "v.yaml") }
        #expect(throws: PipelineConfig.ConfigError.self) { try c.load(yaml: "shards: many\n", path: "v.yaml") }
        #expect(throws: PipelineConfig.ConfigError.self) { try c.load(yaml: "kafka: [a, b]\n", path: "v.yaml") }
        do { try c.load(yaml: "brokerz: x\n", path: "v.yaml") } catch {
            #expect(error.message.hasPrefix("v.yaml:1: unknown setting 'brokerz'"))
        }
        var d = PipelineConfig()
        d.alertsTopic = d.inputTopic
        #expect(throws: PipelineConfig.ConfigError.self) { try d.validate() }
        var e = PipelineConfig()
        e.batchSize = 0
        #expect(throws: PipelineConfig.ConfigError.self) { try e.validate() }
    }

    @Test func consumerAndProducerPropertiesAreSeparate() throws {
        var c = PipelineConfig()
        try c.load(yaml: "kafka-consumer:\n  fetch.wait.max.ms: 10\nkafka-producer:\n  linger.ms: 50\n", path: "v.yaml")
        #expect(c.kafkaConsumer == ["fetch.wait.max.ms=10"])
        #expect(c.kafkaProducer == ["linger.ms=50"])
    }
}

/// Each setting is declared once (`PipelineConfig.settings`); the YAML file, the command line,
/// `--print-config`, `--help` and the README all follow that declaration.
@Suite struct SettingDeclarationTests {
    /// A value different from the default, for each kind.
    func sample(_ s: Setting) -> String {
        switch s.kind {
        case .text: return "x-\(s.name)"
        case .number(let r): return String(r.upperBound)
        case .flag: return "true"
        case .choice(let names): return names.last ?? ""
        case .properties: return "client.id=\(s.name)"
        }
    }

    @Test func everySettingRoundTripsThroughTheCommandLineThePrintedYAMLAndTheLoader() throws {
        var fromFlags = PipelineConfig()
        var args: [String] = []
        for s in PipelineConfig.settings {
            args += s.kind == .flag ? ["--\(s.name)"] : ["--\(s.name)", sample(s)]
        }
        try fromFlags.parse(arguments: args)
        for s in PipelineConfig.settings {
            #expect(s.values(fromFlags) == [sample(s)], "--\(s.name)")
        }
        var fromYAML = PipelineConfig()
        try fromYAML.load(yaml: fromFlags.yaml, path: "printed.yaml")
        #expect(fromYAML.yaml == fromFlags.yaml)
        for s in PipelineConfig.settings { #expect(s.values(fromYAML) == s.values(fromFlags), "\(s.name)") }
    }

    @Test func theShortFormAndInlineValuesWork() throws {
        var c = PipelineConfig()
        try c.parse(arguments: ["-X", "a=1", "-Xb=2", "--group=g", "--repartition=false"])
        #expect(c.kafka == ["a=1", "b=2"])
        #expect(c.group == "g" && !c.repartition)
    }

    @Test func helpAndTheREADMEListEverySettingWithItsDefault() throws {
        let help = PipelineConfig.helpText
        let readme = try String(contentsOf: repoRoot.appendingPathComponent("README.md"), encoding: .utf8)
        for s in PipelineConfig.settings {
            #expect(help.contains("--\(s.name)"))
            #expect(help.split(separator: "\n").allSatisfy { $0.count <= 80 }, "short enough not to be re-wrapped")
            switch s.kind {
            case .properties:
                #expect(readme.contains("`\(s.name):`") || readme.contains("`--\(s.name)`"), "README names \(s.name)")
            case .flag:
                #expect(readme.contains("| `--\(s.name)` | off |"), "README row for --\(s.name)")
            case _ where s.defaultText.isEmpty:
                #expect(help.contains("--\(s.name) <") && help.contains("(default: none)"))
                #expect(readme.contains("| `--\(s.name)` | none |"), "README row for --\(s.name), default none")
            default:
                #expect(help.contains("(default: \(s.defaultText))"))
                #expect(readme.contains("| `--\(s.name)` | `\(s.defaultText)`") || readme.contains("| `--\(s.name)` | `$VIGIL_RULES` or `\(s.defaultText)`"),
                        "README row for --\(s.name) with its default \(s.defaultText)")
            }
        }
    }

    @Test func secretsAreNeverPrinted() throws {
        var c = PipelineConfig()
        try c.parse(arguments: ["-X", "sasl.password=hunter2", "-X", "ssl.key.password=k", "--kafka-producer", "sasl.jaas.config=j"])
        #expect(!c.yaml.contains("hunter2") && !c.yaml.contains(": k\n") && !c.yaml.contains(": j\n"))
    }
}
