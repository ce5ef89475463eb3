import Logging
import Testing
import VigilContract
@testable import VigilService

@Suite struct LoggingTests {
    @Test func aJSONLogLineIsOneObjectWithTheEventsFieldsAndMetadata() throws {
        let bytes = JSONLogHandler.line(at: Instant(micros: 1_700_000_000_123_456), level: .warning, label: "vigil", source: "VigilService",
                                        message: "dead letter: \"quoted\"\nsecond line",
                                        metadata: ["partition": "3", "offset": "42", "level": "not-the-level"])
        #expect(bytes.last == 0x0A && bytes.dropLast().allSatisfy { $0 != 0x0A }, "one line")
        let v = try JSONValue.parse(Array(bytes.dropLast()))
        #expect(v["ts"]?.stringValue == "2023-11-14T22:13:20.123456Z")
        #expect(v["level"]?.stringValue == "warning")
        #expect(v["logger"]?.stringValue == "vigil" && v["source"]?.stringValue == "VigilService")
        #expect(v["message"]?.stringValue == "dead letter: \"quoted\"\nsecond line")
        #expect(v["partition"]?.stringValue == "3" && v["offset"]?.stringValue == "42")
    }

    @Test func theHTTPAddressAndInstanceIdSettingsAreChecked() throws {
        #expect(HTTPAddress("127.0.0.1:9464") == HTTPAddress("127.0.0.1:9464"))
        #expect(HTTPAddress("[::1]:0")?.host == "::1")
        #expect(HTTPAddress("localhost") == nil && HTTPAddress(":80") == nil && HTTPAddress("h:70000") == nil)
        var c = PipelineConfig()
        c.http = "nonsense"
        #expect(throws: PipelineConfig.ConfigError.self) { try c.validate() }
        c.http = "0.0.0.0:9464"
        try c.validate()
        #expect(c.effectiveInstanceId == nil)
        c.instanceId = "vigil-1"
        #expect(c.effectiveInstanceId == "vigil-1")
        c.instanceId = "hostname"
        #expect(c.effectiveInstanceId?.isEmpty == false && c.effectiveInstanceId != "hostname")
        var consumer = ConsumerConfiguration(groupId: "g")
        consumer.instanceId = "vigil-1"
        #expect(consumer.properties.contains { $0 == ("group.instance.id", "vigil-1") })
    }
}
