import VigilContract

/// A message that is not a valid event, on its way to the dead-letter topic: its original key, bytes and
/// headers, and headers saying why and where it came from. Nothing is quoted from the message itself.
public struct DeadLetter: Sendable {
    public let sourceTopic: String
    public let partition: Int32
    public let offset: Int64
    public let key: [UInt8]?
    public let value: [UInt8]
    public let originalHeaders: [(String, [UInt8])]
    public let failure: ValidationFailure

    public init(sourceTopic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8],
                originalHeaders: [(String, [UInt8])], failure: ValidationFailure) {
        self.sourceTopic = sourceTopic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.originalHeaders = originalHeaders
        self.failure = failure
    }

    /// The original headers, then `vigil.error.kind`, `.path`, `.reason` and `vigil.source.topic`,
    /// `.partition`, `.offset`.
    public var headers: [(String, [UInt8])] {
        originalHeaders + Self.errorHeaders(failure) + Self.sourceHeaders(topic: sourceTopic, partition: partition, offset: offset)
    }

    /// The record for the dead-letter topic.
    public var record: OutputRecord { OutputRecord(key: key, value: value, headers: headers) }

    /// Where a message came from, for a record written on its behalf (a dead letter, a repartitioned event).
    public static func sourceHeaders(topic: String, partition: Int32, offset: Int64) -> [(String, [UInt8])] {
        [("vigil.source.topic", Array(topic.utf8)), ("vigil.source.partition", Array(String(partition).utf8)),
         ("vigil.source.offset", Array(String(offset).utf8))]
    }

    static func errorHeaders(_ f: ValidationFailure) -> [(String, [UInt8])] {
        [("vigil.error.kind", Array(f.kind.rawValue.utf8)), ("vigil.error.path", Array(f.path.utf8)),
         ("vigil.error.reason", Array(f.reason.utf8))]
    }

    /// For a log line: where, which kind, and the failure (path and reason, no content).
    public var logDescription: String { "\(sourceTopic)[\(partition)]@\(offset): \(failure.kind.rawValue): \(failure)" }
}
