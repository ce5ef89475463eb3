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
    static func record(seq: Int, prev: String, alertJSON: String) -> String {
        "{\"seq\":\(seq),\"prev\":\"\(prev)\",\"alert\":\(alertJSON)}"
    }

    /// The outcome of checking a file.
    public enum Verdict: Equatable, Sendable {
        case ok(count: Int, headSeq: Int, headHash: String)
        /// The first bad record: its 1-based line, and why.
        case bad(line: Int, reason: String)
    }

    /// One good record.
    public struct Record: Sendable {
        public let seq: Int
        public let alertId: String
        public let alert: JSONValue
        public let hash: String
    }

    /// Checks a whole audit file; calls `each` for every good record (in order) before the first bad one.
    public static func verify(path: String, each: (Record) -> Void = { _ in }) throws -> Verdict {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CocoaError(.fileReadNoSuchFile, userInfo: [NSFilePathErrorKey: path])
        }
        let bytes = [UInt8](data)
        var prev = genesis
        var seq = 0
        var ids: [String: Int] = [:]
        var start = 0
        var line = 0
        while start < bytes.count {
            line += 1
            guard let nl = bytes[start...].firstIndex(of: 0x0A) else {
                return .bad(line: line, reason: "the last record is cut short (no end of line): the file was truncated or is being written")
            }
            let lineBytes = bytes[start..<nl]
            start = nl + 1
            guard let v = try? JSONValue.parse(Array(lineBytes)), let s64 = v["seq"]?.intValue, let p = v["prev"]?.stringValue,
                  let alert = v["alert"], let id = alert["alert_id"]?.stringValue else {
                return .bad(line: line, reason: "not an audit record (not JSON, or missing seq, prev or alert.alert_id): edited or truncated")
            }
            let s = Int(s64)
            if p != prev {
                return .bad(line: line, reason: s == seq + 1
                    ? "prev does not match the SHA-256 of the record before: that record was modified, or this one's prev was edited"
                    : "prev does not match the record before: a record was deleted, inserted or reordered")
            }
            if s != seq + 1 {
                return .bad(line: line, reason: "seq is \(s), expected \(seq + 1): a record was deleted, inserted or reordered")
            }
            if let first = ids[id] {
                return .bad(line: line, reason: "alert_id \(id) already appears at line \(first)")
            }
            ids[id] = line
            seq = s
            prev = hash(lineBytes)
            each(Record(seq: s, alertId: id, alert: alert, hash: prev))
        }
        return .ok(count: seq, headSeq: seq, headHash: prev)
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

    public struct OpenError: Error, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "audit log \(path): \(reason)" }
    }

    /// Opens (creating with mode 0600) an audit log for appending. An existing file is verified first and
    /// refused if its chain is broken; a final record cut short by a crash (no end of line) is removed, as it
    /// was never acknowledged.
    public init(path: String) throws(OpenError) {
        self.path = path
        var repaired = 0
        var seq = 0
        var head = AuditLog.genesis
        var ids = Set<String>()
        if FileManager.default.fileExists(atPath: path) {
            do {
                var verdict = try AuditLog.verify(path: path) { ids.insert($0.alertId) }
                if case .bad(_, let reason) = verdict, reason.hasPrefix("the last record is cut short") {
                    repaired = try AuditLogWriter.truncateTornTail(path)
                    ids = []
                    verdict = try AuditLog.verify(path: path) { ids.insert($0.alertId) }
                }
                switch verdict {
                case .ok(let count, _, let h):
                    seq = count
                    head = h
                case .bad(let line, let reason):
                    throw OpenError(path: path, reason: "refusing to append: record at line \(line) is bad: \(reason) (run vigil audit verify)")
                }
            } catch let e as OpenError {
                throw e
            } catch {
                throw OpenError(path: path, reason: "\(error)")
            }
        }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw OpenError(path: path, reason: String(cString: strerror(errno))) }
        fchmod(fd, 0o600)
        self.fd = fd
        self.seq = seq
        self.head = head
        self.ids = ids
        repairedBytes = repaired
    }

    deinit {
        fsync(fd)
        close(fd)
    }

    static func truncateTornTail(_ path: String) throws -> Int {
        guard let data = FileManager.default.contents(atPath: path) else { return 0 }
        let bytes = [UInt8](data)
        let keep = (bytes.lastIndex(of: 0x0A).map { $0 + 1 }) ?? 0
        guard truncate(path, off_t(keep)) == 0 else { throw OpenError(path: path, reason: "cannot remove a torn final record: \(String(cString: strerror(errno)))") }
        return bytes.count - keep
    }

    public func contains(_ alertId: String) -> Bool { ids.contains(alertId) }
    public var count: Int { seq }

    /// Appends one alert record unless the file already holds its id. Returns whether it was written.
    /// Durable only after `sync()`.
    @discardableResult
    public func append(alertId: String, alertJSON: String) throws -> Bool {
        guard !ids.contains(alertId) else { return false }
        let line = AuditLog.record(seq: seq + 1, prev: head, alertJSON: alertJSON)
        var bytes = Array(line.utf8)
        let h = AuditLog.hash(bytes)
        bytes.append(0x0A)
        do { try FileDescriptor.writeAll(fd, bytes) } catch {
            throw OpenError(path: path, reason: "write failed: \(error)")
        }
        seq += 1
        head = h
        ids.insert(alertId)
        unsynced += 1
        return true
    }

    /// Makes everything appended so far durable (one fsync for the batch).
    public func sync() throws {
        guard unsynced > 0 else { return }
        guard fsync(fd) == 0 else { throw OpenError(path: path, reason: "fsync failed: \(String(cString: strerror(errno)))") }
        unsynced = 0
    }
}
