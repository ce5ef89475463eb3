import Foundation
import Crypto
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
    /// Set when the message was larger than a dead letter may be: its size and SHA-256 (hex), `value` then
    /// being its first bytes. The original is at the source position.
    public let truncated: (bytes: Int, sha256: String)?

    /// The default largest dead-letter body: well under Kafka's default message size limit (1 MB), so that a
    /// huge message cannot stall the pipeline on a record the broker refuses.
    public static let defaultMaxBytes = 256 * 1024

    /// - Parameter maxBytes: the largest body kept; a longer message keeps its first `maxBytes` bytes.
    public init(sourceTopic: String, partition: Int32, offset: Int64, key: (some Collection<UInt8>)?, value: some Collection<UInt8>,
                originalHeaders: [(String, [UInt8])], failure: ValidationFailure, maxBytes: Int = DeadLetter.defaultMaxBytes) {
        self.sourceTopic = sourceTopic
        self.partition = partition
        self.offset = offset
        self.key = key.map { Array($0.prefix(maxBytes)) }
        if value.count > maxBytes {
            self.value = Array(value.prefix(maxBytes))
            truncated = (value.count, SHA256.hash(data: Array(value)).hexString)
        } else {
            self.value = Array(value)
            truncated = nil
        }
        self.originalHeaders = originalHeaders
        self.failure = failure
    }

    /// The original headers, then `vigil.error.kind`, `.path`, `.reason`, `vigil.source.topic`,
    /// `.partition`, `.offset`, and for a cut body `vigil.original.bytes` and `vigil.original.sha256`.
    public var headers: [(String, [UInt8])] {
        var h = originalHeaders + Self.errorHeaders(failure) + Self.sourceHeaders(topic: sourceTopic, partition: partition, offset: offset)
        if let t = truncated {
            h.append(("vigil.original.bytes", Array(String(t.bytes).utf8)))
            h.append(("vigil.original.sha256", Array(t.sha256.utf8)))
        }
        return h
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
