#if canImport(Glibc)
import Glibc
#endif
import Foundation
import VigilContract

// What `AuditLogWriter` does at open: read and check the segments present, match the key to the log.

/// What reading an audit log's segments at open found: where its chain is, its key, what is unsealed,
/// and the active segment. Reading refuses a broken chain and removes a torn final record.
struct AuditLogScan {
    var chain = AuditChain()
    var started = false
    var archivedBefore: Int?
    var expectedKey: String?
    var root: String?
    var lastSeal: AuditSeal?
    var unsealed = 0
    var activeFirst: Int?
    var activeBytes = 0
    var activeRecords = 0
    var activeOpenedAt: Instant?
    /// Bytes of a torn final record removed from the active file.
    var repaired = 0

    /// Reads and checks every segment present, in order: the closed ones (regular files owned by this
    /// user), then the active file through `fd`. One segment is in memory at a time.
    static func read(_ segments: AuditSegments, activeFD fd: Int32) throws(AuditLogError) -> AuditLogScan {
        let closed = segments.closed()
        var st = stat()
        for f in closed {
            guard lstat(f.path, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_uid == geteuid() else {
                throw AuditLogError(path: f.path, refusing: "a segment of this log that is not a regular file owned by this user")
            }
        }
        var scan = AuditLogScan()
        for f in closed {
            guard let data = FileManager.default.contents(atPath: f.path) else { throw AuditLogError(path: f.path, operation: .read, code: EACCES) }
            scan.repaired += try scan.read([UInt8](data), path: f.path, active: false, namedFirst: f.first, fd: fd)
        }
        let active = try AuditSegments.readAll(fd, path: segments.activePath)
        scan.repaired += try scan.read(active, path: segments.activePath, active: true, namedFirst: nil, fd: fd)
        return scan
    }

    mutating func read(_ bytes: [UInt8], path: String, active: Bool, namedFirst: Int?, fd: Int32) throws(AuditLogError) -> Int {
        var line = 0
        var repaired = 0
        var kept = 0
        for (slice, complete) in AuditLog.lines(bytes) {
            line += 1
            guard complete else {
                guard active else { throw AuditLogError(path: path, line: line, problem: .cutShort) }
                guard ftruncate(fd, off_t(slice.startIndex)) == 0 else { throw AuditLogError(path: path, operation: .truncate, code: errno) }
                repaired = slice.count
                break
            }
            if !started, let r = AuditLine.parse(slice), r.seq > 1, case .segment = r.entry {
                // The first segment present follows segments archived elsewhere.
                chain = AuditChain(after: r.seq - 1, head: r.prev)
                archivedBefore = r.seq
            }
            started = true
            let record: AuditLine
            switch chain.next(slice) {
            case .failure(let problem): throw AuditLogError(path: path, line: line, problem: problem)
            case .success(let (r, _)): record = r
            }
            if line == 1, let namedFirst, namedFirst != record.seq {
                throw AuditLogError(path: path, refusing: "named as the segment starting at seq \(namedFirst), but its first record is seq \(record.seq): renamed")
            }
            if active && line == 1 { activeFirst = record.seq }
            if active { activeRecords += 1 }
            switch record.entry {
            case .alert, .note:
                unsealed += 1
            case .seal(let s):
                lastSeal = s
                expectedKey = s.next
                root = s.log
                unsealed = 0
            case .segment(let h):
                if !h.next.isEmpty {
                    expectedKey = h.next
                    root = h.log
                }
                if active {
                    activeOpenedAt = RFC3339.parseDateTime(h.openedAt)
                    activeRecords = 0
                }
            case .rekey(let r):
                expectedKey = r.log
                root = r.log
            }
            kept = slice.endIndex + 1
        }
        if active { activeBytes = kept }
        return repaired
    }
}

/// How the key changes at open: not at all, a handover signed by the previous key, or an unsigned change.
enum AuditKeyChange {
    case none, handover(AuditKeyFile), lost

    /// Matches the key to the log: the key the log's last seal named, or one epoch behind it (a crash between a
    /// seal and the key's evolution, finished here), or a new key to hand over to. Writes nothing to the log.
    static func match(_ keys: AuditKeys, expected: String?, root: String?, log path: String,
                      notices: inout [String]) throws(AuditLogError) -> AuditKeyChange {
        guard let expected else {
            if let key = keys.key, key.epoch > 0 {
                throw AuditLogError(key: key, "has sealed \(key.epoch) times already, but this log (\(path)) has no seal: it is another log's key, or the log's seals were removed")
            }
            if keys.previous != nil || keys.previousLost {
                throw AuditLogError(path: path, refusing: "a previous key was given, but the log was never sealed: start it with --audit-key alone")
            }
            return .none
        }
        guard let key = keys.key else {
            throw AuditLogError(path: path, refusing: "it is sealed (by key \(root ?? "?")), but no --audit-key was given: sealing cannot stop silently; give the key (or start a new log)")
        }
        if try advance(key, to: expected, notices: &notices) {
            if keys.previous != nil || keys.previousLost {
                throw AuditLogError(key: key, "is already this log's key: drop --audit-previous-key and --audit-key-lost")
            }
            return .none
        }
        let described = "the log's next seal must be signed by key \(expected.prefix(16))… (log \(root?.prefix(16) ?? "?")…), but \(key.path) holds log \(key.root.prefix(16))… at epoch \(key.epoch)"
        guard key.root != root else {
            throw AuditLogError(key: key, "\(described): a seal was removed from the log, or an old copy of the key file was restored")
        }
        guard key.epoch == 0 else { throw AuditLogError(key: key, "\(described), which has sealed another log already") }
        if let previous = keys.previous {
            guard try advance(previous, to: expected, notices: &notices) else {
                throw AuditLogError(key: previous, "is not this log's current key either (\(described))")
            }
            return .handover(previous)
        }
        if keys.previousLost { return .lost }
        throw AuditLogError(key: key, "\(described): to change keys give --audit-previous-key with the old key, or --audit-key-lost if it is gone")
    }

    /// Whether `k` is at `expected`, moving it one epoch on first when it is one behind.
    static func advance(_ k: AuditKeyFile, to expected: String, notices: inout [String]) throws(AuditLogError) -> Bool {
        if k.publicKey == expected { return true }
        guard k.publicKey(ahead: 1) == expected else { return false }
        do { try k.evolve() } catch { throw AuditLogError(error) }
        notices.append("audit key \(k.path) moved on to epoch \(k.epoch): a crash came between the last seal and the key's evolution")
        return true
    }
}

extension AuditSegments {
    /// Opens the active file for appending (created mode 0600), refusing a link, a non-file, another's file.
    static func openActive(_ path: String) throws(AuditLogError) -> Int32 {
        let fd = Glibc.open(path, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            if errno == ELOOP { throw AuditLogError(path: path, refusing: "it is a symbolic link") }
            throw AuditLogError(path: path, operation: .open, code: errno)
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else { Glibc.close(fd); throw AuditLogError(path: path, operation: .open, code: errno) }
        guard st.st_mode & S_IFMT == S_IFREG else { Glibc.close(fd); throw AuditLogError(path: path, refusing: "it is not a regular file") }
        guard st.st_uid == geteuid() else { Glibc.close(fd); throw AuditLogError(path: path, refusing: "it belongs to another user") }
        return fd
    }

    /// The whole file behind `fd`.
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
}
