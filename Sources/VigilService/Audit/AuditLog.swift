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
    public enum ChainProblem: Equatable, Sendable, CustomStringConvertible {
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
        /// The alert id was already recorded.
        case duplicateId(String, firstLine: Int)

        public var description: String {
            switch self {
            case .cutShort: return "the last record is cut short (no end of line): the file was truncated or is being written"
            case .notARecord: return "not an audit record (not JSON, or missing seq, prev, or alert.alert_id or note.kind): edited or truncated"
            case .modified: return "prev does not match the SHA-256 of the record before: that record was modified, or this one's prev was edited"
            case .moved: return "prev does not match the record before: a record was deleted, inserted or reordered"
            case .sequence(let found, let expected): return "seq is \(found), expected \(expected): a record was deleted, inserted or reordered"
            case .duplicateId(let id, let first): return "alert_id \(id) already appears at line \(first)"
            }
        }
    }

    /// The outcome of checking a file.
    public enum Verdict: Equatable, Sendable {
        case ok(count: Int, headSeq: Int, headHash: String)
        /// The first bad record: its 1-based line, and what is wrong with it.
        case bad(line: Int, problem: ChainProblem)
    }

    /// One good record: an alert, or a note (an input gap, ...) that the chain records beside them.
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
    }

    /// Checks a whole audit file; calls `each` for every good record (in order) before the first bad one.
    public static func verify(path: String, each: (Record) -> Void = { _ in }) throws(AuditLogError) -> Verdict {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw AuditLogError(path: path, operation: .read, code: FileManager.default.fileExists(atPath: path) ? EACCES : ENOENT)
        }
        return verify(bytes: [UInt8](data), each: each)
    }

    /// Checks an audit log's bytes (see `verify(path:each:)`).
    public static func verify(bytes: [UInt8], each: (Record) -> Void = { _ in }) -> Verdict {
        var prev = genesis
        var seq = 0
        var ids: [String: Int] = [:]
        var start = 0
        var line = 0
        while start < bytes.count {
            line += 1
            guard let nl = bytes[start...].firstIndex(of: 0x0A) else {
                return .bad(line: line, problem: .cutShort)
            }
            let lineBytes = bytes[start..<nl]
            start = nl + 1
            guard let v = try? JSONValue.parse(Array(lineBytes)), let s64 = v["seq"]?.intValue, let p = v["prev"]?.stringValue else {
                return .bad(line: line, problem: .notARecord)
            }
            let kind: String, id: String, body: JSONValue
            if let alert = v["alert"], let alertId = alert["alert_id"]?.stringValue {
                (kind, id, body) = ("alert", alertId, alert)
            } else if let note = v["note"], let k = note["kind"]?.stringValue {
                (kind, id, body) = (k, "", note)
            } else {
                return .bad(line: line, problem: .notARecord)
            }
            let s = Int(s64)
            if p != prev {
                return .bad(line: line, problem: s == seq + 1 ? .modified : .moved)
            }
            if s != seq + 1 {
                return .bad(line: line, problem: .sequence(found: s, expected: seq + 1))
            }
            if !id.isEmpty {
                if let first = ids[id] { return .bad(line: line, problem: .duplicateId(id, firstLine: first)) }
                ids[id] = line
            }
            seq = s
            prev = hash(lineBytes)
            each(Record(seq: s, alertId: id, alert: body, kind: kind, hash: prev))
        }
        return .ok(count: seq, headSeq: seq, headHash: prev)
    }
}

/// Why an audit log cannot be used: which file, which operation, the system's error, the first bad
/// record, or why the file or its directory is refused.
public struct AuditLogError: Error, CustomStringConvertible, Sendable {
    public enum Operation: String, Sendable {
        case read, open, write, fsync, truncate, refuse
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

    public var description: String {
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
        case .refuse: return "audit log \(path): refused"
        }
    }
}

/// Appends alerts to an audit log. Not thread-safe: one writer thread.
public final class AuditLogWriter {
    public let path: String
    let fd: Int32
    public private(set) var seq: Int
    public private(set) var head: String
    var ids: Set<String>
    var unsynced = 0
    /// Bytes of a torn final record removed at open (0 normally).
    public let repairedBytes: Int

    /// Opens (creating with mode 0600) an audit log for appending. The path must be a regular file owned by
    /// this user (not a symbolic link), in a directory others cannot write to. An existing file is verified
    /// first and refused if its chain is broken; a final record cut short by a crash (no end of line) is
    /// removed, as it was never acknowledged.
    public init(path: String) throws(AuditLogError) {
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        var st = stat()
        guard stat(dir.isEmpty ? "." : dir, &st) == 0 else { throw AuditLogError(path: path, operation: .open, code: errno) }
        if st.st_mode & S_IWOTH != 0 {
            throw AuditLogError(path: path, refusing: "its directory \(dir.isEmpty ? "." : dir) is writable by others (anyone could replace the log); use a directory only its owner can write")
        }
        let fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            if errno == ELOOP { throw AuditLogError(path: path, refusing: "it is a symbolic link") }
            throw AuditLogError(path: path, operation: .open, code: errno)
        }
        do throws(AuditLogError) {
            guard fstat(fd, &st) == 0 else { throw AuditLogError(path: path, operation: .open, code: errno) }
            guard st.st_mode & S_IFMT == S_IFREG else { throw AuditLogError(path: path, refusing: "it is not a regular file") }
            guard st.st_uid == geteuid() else { throw AuditLogError(path: path, refusing: "it belongs to another user") }
            let bytes = try AuditLogWriter.readAll(fd, path: path)
            var ids = Set<String>()
            var verdict = AuditLog.verify(bytes: bytes) { if $0.isAlert { ids.insert($0.alertId) } }
            var repaired = 0
            if case .bad(_, .cutShort) = verdict {
                let keep = (bytes.lastIndex(of: 0x0A).map { $0 + 1 }) ?? 0
                guard ftruncate(fd, off_t(keep)) == 0 else { throw AuditLogError(path: path, operation: .truncate, code: errno) }
                repaired = bytes.count - keep
                ids = []
                verdict = AuditLog.verify(bytes: Array(bytes[..<keep])) { if $0.isAlert { ids.insert($0.alertId) } }
            }
            switch verdict {
            case .ok(let count, _, let h):
                seq = count
                head = h
            case .bad(let line, let problem):
                throw AuditLogError(path: path, line: line, problem: problem)
            }
            fchmod(fd, 0o600)
            self.fd = fd
            self.ids = ids
            repairedBytes = repaired
        } catch {
            close(fd)
            throw error
        }
    }

    deinit {
        fsync(fd)
        close(fd)
    }

    static func readAll(_ fd: Int32, path: String) throws(AuditLogError) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var offset: off_t = 0
        while true {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw AuditLogError(path: path, operation: .read, code: errno)
            }
            if n == 0 { return out }
            out += chunk[..<n]
            offset += off_t(n)
        }
    }

    /// Appends a note (not an alert: an input gap, ...) to the chain. Durable only after `sync()`.
    public func appendNote(_ noteJSON: [UInt8]) throws(AuditLogError) {
        var bytes = AuditLog.noteRecord(seq: seq + 1, prev: head, noteJSON: noteJSON)
        let h = AuditLog.hash(bytes)
        bytes.append(0x0A)
        do { try FileDescriptor.writeAll(fd, bytes) } catch {
            throw AuditLogError(path: path, operation: .write, code: error.code)
        }
        seq += 1
        head = h
        unsynced += 1
    }

    public func contains(_ alertId: String) -> Bool { ids.contains(alertId) }
    public var count: Int { seq }

    /// Appends one alert record unless the file already holds its id. Returns whether it was written.
    /// Durable only after `sync()`.
    @discardableResult
    public func append(alertId: String, alertJSON: some Collection<UInt8>) throws(AuditLogError) -> Bool {
        guard !ids.contains(alertId) else { return false }
        var bytes = AuditLog.record(seq: seq + 1, prev: head, alertJSON: alertJSON)
        let h = AuditLog.hash(bytes)
        bytes.append(0x0A)
        do { try FileDescriptor.writeAll(fd, bytes) } catch {
            throw AuditLogError(path: path, operation: .write, code: error.code)
        }
        seq += 1
        head = h
        ids.insert(alertId)
        unsynced += 1
        return true
    }

    /// Appends one alert record (see `append(alertId:alertJSON:)`).
    @discardableResult
    public func append(alertId: String, alertJSON: String) throws(AuditLogError) -> Bool {
        try append(alertId: alertId, alertJSON: Array(alertJSON.utf8))
    }

    /// Makes everything appended so far durable (one fsync for the batch).
    public func sync() throws(AuditLogError) {
        guard unsynced > 0 else { return }
        guard fsync(fd) == 0 else { throw AuditLogError(path: path, operation: .fsync, code: errno) }
        unsynced = 0
    }
}
