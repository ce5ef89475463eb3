#if canImport(Glibc)
import Glibc
#endif
import Crypto
import Foundation
import VigilContract

/// The audit log: JSON Lines, one record per alert, each record carrying the SHA-256 of the previous
/// record's line, from a fixed genesis value:
///
///     {"seq":1,"prev":"000...000","alert":{...}}
///     {"seq":2,"prev":"<sha256 hex of line 1>","alert":{...}}
///
/// Any record modified, deleted, inserted, reordered or cut short breaks the chain at the first record
/// after it (or fails to parse). A deleted *last* record leaves a valid shorter chain; compare the head
/// (`seq` and hash, which `vigil run` logs at every shutdown and `vigil audit verify` prints) with a copy
/// kept elsewhere to catch that.
public enum AuditLog {
    public static let genesis = String(repeating: "0", count: 64)

    public static func hash(_ line: some Sequence<UInt8>) -> String {
        SHA256.hash(data: Array(line)).hexString
    }

    /// The record line for an alert (without the newline).
    static func record(seq: Int, prev: String, alertJSON: some Collection<UInt8>) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(alertJSON.count + 110)
        bytes += Array("{\"seq\":\(seq),\"prev\":\"\(prev)\",\"alert\":".utf8)
        bytes += alertJSON
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }

    /// The record line for a note (without the newline).
    static func noteRecord(seq: Int, prev: String, noteJSON: some Collection<UInt8>) -> [UInt8] {
        var bytes = Array("{\"seq\":\(seq),\"prev\":\"\(prev)\",\"note\":".utf8)
        bytes += noteJSON
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }

    static func record(seq: Int, prev: String, alertJSON: String) -> String {
        String(decoding: record(seq: seq, prev: prev, alertJSON: Array(alertJSON.utf8)), as: UTF8.self)
    }

    /// What is wrong with the first bad record of an audit log.
    public enum ChainProblem: Error, Equatable, Sendable, CustomStringConvertible {
        /// The last record has no end of line.
        case cutShort
        /// Not JSON, or missing `seq`, `prev` or `alert.alert_id`.
        case notARecord
        /// `prev` is not the hash of the record before, and `seq` follows on: that record was modified.
        case modified
        /// `prev` is not the hash of the record before, and `seq` does not follow on.
        case moved
        /// `prev` matches but `seq` does not follow on.
        case sequence(found: Int, expected: Int)
        /// The alert id was already recorded, at that sequence number.
        case duplicateId(String, firstSeq: Int)
        /// A record of a format newer than this Vigil reads.
        case unknownFormat(Int)

        public var description: String {
            switch self {
            case .cutShort: return "the last record is cut short (no end of line): the file was truncated or is being written"
            case .notARecord: return "not an audit record (not JSON, or missing seq, prev, or alert.alert_id or note.kind): edited or truncated"
            case .modified: return "prev does not match the SHA-256 of the record before: that record was modified, or this one's prev was edited"
            case .moved: return "prev does not match the record before: a record was deleted, inserted or reordered"
            case .sequence(let found, let expected): return "seq is \(found), expected \(expected): a record was deleted, inserted or reordered"
            case .duplicateId(let id, let first): return "alert_id \(id) already appears at seq \(first)"
            case .unknownFormat(let f): return "a record of format \(f), newer than this Vigil reads (\(AuditFormat.current)): verify it with a newer vigil"
            }
        }
    }

    /// The outcome of checking a file.
    public enum Verdict: Equatable, Sendable {
        case ok(count: Int, headSeq: Int, headHash: String)
        /// The first bad record: its 1-based line, and what is wrong with it.
        case bad(line: Int, problem: ChainProblem)
    }

    /// One good alert or note (an input gap, ...) that the chain records beside them.
    public struct Record: Sendable {
        public let seq: Int
        /// The alert's id; empty for a note.
        public let alertId: String
        /// The alert, or the note.
        public let alert: JSONValue
        /// `alert`, or the note's `kind`.
        public let kind: String
        public let hash: String
        public var isAlert: Bool { kind == "alert" }

        init?(_ line: AuditLine, hash: String) {
            switch line.entry {
            case .alert(let id, let body): (alertId, alert, kind) = (id, body, "alert")
            case .note(let k, let body): (alertId, alert, kind) = ("", body, k)
            case .seal, .segment, .rekey: return nil
            }
            seq = line.seq
            self.hash = hash
        }
    }

    /// Checks the whole log `path` belongs to (its closed segments, then the file; see `AuditSegments`) as a
    /// hash chain, without keys or anchors (`AuditVerifier` does those); calls `each` for every good alert and
    /// note before the first bad record. A bad record's line is counted across the segments, in order.
    public static func verify(path: String, each: (Record) -> Void = { _ in }) throws(AuditLogError) -> Verdict {
        let files = AuditSegments(activePath: path).files()
        if files.isEmpty { throw AuditLogError(path: path, operation: .read, code: ENOENT) }
        var bytes: [UInt8] = []
        for f in files {
            guard let data = FileManager.default.contents(atPath: f.path) else {
                throw AuditLogError(path: f.path, operation: .read, code: FileManager.default.fileExists(atPath: f.path) ? EACCES : ENOENT)
            }
            bytes += data
        }
        return verify(bytes: bytes, each: each)
    }

    /// Checks an audit log's bytes (see `verify(path:each:)`).
    public static func verify(bytes: [UInt8], each: (Record) -> Void = { _ in }) -> Verdict {
        var chain = AuditChain()
        var line = 0
        for (slice, complete) in lines(bytes) {
            line += 1
            guard complete else { return .bad(line: line, problem: .cutShort) }
            switch chain.next(slice) {
            case .failure(let problem): return .bad(line: line, problem: problem)
            case .success(let (record, hash)): if let r = Record(record, hash: hash) { each(r) }
            }
        }
        return .ok(count: chain.seq, headSeq: chain.seq, headHash: chain.head)
    }

    /// The lines of a log's bytes (without their newlines), and whether each ends with one.
    static func lines(_ bytes: [UInt8]) -> [(ArraySlice<UInt8>, complete: Bool)] {
        var out: [(ArraySlice<UInt8>, complete: Bool)] = []
        var start = 0
        while start < bytes.count {
            guard let nl = bytes[start...].firstIndex(of: 0x0A) else {
                out.append((bytes[start...], false))
                break
            }
            out.append((bytes[start..<nl], true))
            start = nl + 1
        }
        return out
    }
}

/// Walks an audit log's records in order, checking each against the one before: `prev` is the SHA-256 of the
/// line before (the genesis value first), `seq` follows on, no alert id twice, no format newer than this
/// Vigil's. Keys and anchors are `AuditVerifier`'s.
public struct AuditChain: Sendable {
    public private(set) var seq: Int
    public private(set) var head: String
    /// Alert id → the seq that recorded it.
    public private(set) var ids: [String: Int] = [:]

    /// A chain from the genesis, or going on after a record (a segment whose predecessors are elsewhere).
    public init(after seq: Int = 0, head: String = AuditLog.genesis) {
        self.seq = seq
        self.head = head
    }

    /// Checks the next record (its line without the newline); on success the chain moves past it.
    public mutating func next(_ bytes: ArraySlice<UInt8>) -> Result<(AuditLine, String), AuditLog.ChainProblem> {
        guard let record = AuditLine.parse(bytes) else { return .failure(.notARecord) }
        if record.format > AuditFormat.current { return .failure(.unknownFormat(record.format)) }
        if record.prev != head { return .failure(record.seq == seq + 1 ? .modified : .moved) }
        if record.seq != seq + 1 { return .failure(.sequence(found: record.seq, expected: seq + 1)) }
        if case .alert(let id, _) = record.entry {
            if let first = ids[id] { return .failure(.duplicateId(id, firstSeq: first)) }
            ids[id] = record.seq
        }
        seq = record.seq
        head = AuditLog.hash(bytes)
        return .success((record, head))
    }
}

/// Why an audit log cannot be used: which file, which operation, the system's error, the first bad
/// record, or why the file or its directory is refused.
public struct AuditLogError: Error, CustomStringConvertible, Sendable {
    public enum Operation: String, Sendable {
        case read, open, write, fsync, truncate, rename, refuse, key
    }
    public let path: String
    public let operation: Operation
    /// The `errno` of the failed call; 0 otherwise.
    public let code: Int32
    /// The first bad record, when the chain is broken.
    public let broken: (line: Int, problem: AuditLog.ChainProblem)?
    /// Why the path is refused (`operation == .refuse`).
    public let refusal: String?

    public init(path: String, operation: Operation, code: Int32) {
        self.path = path
        self.operation = operation
        self.code = code
        broken = nil
        refusal = nil
    }

    public init(path: String, line: Int, problem: AuditLog.ChainProblem) {
        self.path = path
        operation = .read
        code = 0
        broken = (line, problem)
        refusal = nil
    }

    public init(path: String, refusing reason: String) {
        self.path = path
        operation = .refuse
        code = 0
        broken = nil
        refusal = reason
    }

    /// A problem with the log's key (`operation == .key`).
    public init(_ key: AuditKeyError) {
        path = key.path
        operation = .key
        code = 0
        broken = nil
        refusal = key.message
    }

    public var description: String {
        if operation == .key { return "audit key \(path): \(refusal ?? "unusable")" }
        if let (line, problem) = broken {
            return "audit log \(path): refusing to append: record at line \(line) is bad: \(problem) (run vigil audit verify)"
        }
        if let refusal { return "audit log \(path): refused: \(refusal)" }
        let reason = String(cString: strerror(code))
        switch operation {
        case .read: return "audit log \(path): cannot read: \(reason)"
        case .open: return "audit log \(path): \(reason)"
        case .write: return "audit log \(path): write failed: \(reason)"
        case .fsync: return "audit log \(path): fsync failed: \(reason)"
        case .truncate: return "audit log \(path): cannot remove a torn final record: \(reason)"
        case .rename: return "audit log \(path): rotation failed: \(reason)"
        case .refuse, .key: return "audit log \(path): refused"
        }
    }
}
