#if canImport(Glibc)
import Glibc
#endif
import Foundation
import VigilContract

/// Anchors in a file: one JSON line per seal, appended and fsynced. Put it where whoever could rewrite the
/// log cannot rewrite it: another volume, an append-only file (`chattr +a`), a write-once mount.
public final class AuditAnchorFile: AuditAnchorSink {
    public let path: String
    private let fd: Int32

    public init(path: String) throws(AuditLogError) {
        self.path = path
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            if errno == ELOOP { throw AuditLogError(path: path, refusing: "the anchor file is a symbolic link") }
            throw AuditLogError(path: path, operation: .open, code: errno)
        }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            Glibc.close(fd)
            throw AuditLogError(path: path, refusing: "the anchor file is not a regular file")
        }
        self.fd = fd
    }

    deinit { Glibc.close(fd) }

    public var name: String { "file \(path)" }

    public func publish(_ anchor: [UInt8], instance: String) -> String? {
        do { try FileDescriptor.writeAll(fd, anchor + [0x0A]) } catch { return "write failed: \(error)" }
        guard fsync(fd) == 0 else { return "fsync failed: \(String(cString: strerror(errno)))" }
        return nil
    }

    public func close() {}

    /// The anchors in a file, and how many lines were not anchors (each a problem to report, never skipped
    /// silently).
    public static func read(path: String) throws(AuditLogError) -> (anchors: [AuditAnchor], unreadable: [String]) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw AuditLogError(path: path, operation: .read, code: FileManager.default.fileExists(atPath: path) ? EACCES : ENOENT)
        }
        var anchors: [AuditAnchor] = []
        var unreadable: [String] = []
        var line = 0
        for (slice, complete) in AuditLog.lines([UInt8](data)) {
            line += 1
            if let v = try? JSONValue.parse(Array(slice)), let a = AuditAnchor(json: v, source: "\(path):\(line)") {
                anchors.append(a)
            } else {
                unreadable.append("\(path):\(line): \(complete ? "not an anchor" : "cut short")")
            }
        }
        return (anchors, unreadable)
    }
}
