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
