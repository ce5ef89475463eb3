#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The files of one audit log. The writer appends to the active file (`--audit-file`, say `audit.jsonl`);
/// rotation renames it to a closed segment named by the sequence number of its first record,
/// `audit.000000000001.jsonl`, `audit.000000052114.jsonl`, ..., and opens a new active file whose first record
/// chains to the last record of the one before. Names sort in chain order; the chain, not the names, is what
/// verification trusts.
public struct AuditSegments: Sendable, Equatable {
    public let directory: String
    /// The active file's name without `ext`.
    public let stem: String
    /// `.jsonl`, or empty for a name without it.
    public let ext: String

    /// One file of the log.
    public struct File: Sendable, Equatable {
        public let path: String
        /// The first record's sequence number for a closed segment; nil for the active file.
        public let first: Int?
    }

    /// The log the file at `path` belongs to: its active file, or one of its closed segments.
    public init(activePath path: String) {
        let dir = (path as NSString).deletingLastPathComponent
        directory = dir.isEmpty ? "." : dir
        var name = (path as NSString).lastPathComponent
        ext = name.hasSuffix(".jsonl") ? ".jsonl" : ""
        name.removeLast(ext.count)
        if let (s, _) = Self.closedStem(name) { name = s }
        stem = name
    }

    init(directory: String, stem: String, ext: String) {
        self.directory = directory
        self.stem = stem
        self.ext = ext
    }

    public var activePath: String { directory + "/" + stem + ext }

    public func closedPath(first: Int) -> String { directory + "/" + closedName(first: first) }

    public func closedName(first: Int) -> String {
        let digits = String(first)
        return stem + "." + String(repeating: "0", count: max(0, 12 - digits.count)) + digits + ext
    }

    /// `name` (without the extension) split into a stem and a first sequence number, if it names a closed segment.
    static func closedStem(_ name: String) -> (String, Int)? {
        guard let dot = name.lastIndex(of: "."), name.distance(from: dot, to: name.endIndex) >= 13 else { return nil }
        let digits = name[name.index(after: dot)...]
        guard digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let n = Int(digits), n >= 1 else { return nil }
        return (String(name[..<dot]), n)
    }

    /// The log's files present in its directory: closed segments by first sequence number, then the active file.
    public func files() -> [File] {
        var out = closed()
        var st = stat()
        if lstat(activePath, &st) == 0 { out.append(File(path: activePath, first: nil)) }
        return out
    }

    /// The closed segments present, by first sequence number.
    public func closed() -> [File] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { n -> File? in
            guard n.hasSuffix(ext) else { return nil }
            guard let (s, first) = Self.closedStem(String(n.dropLast(ext.count))), s == stem else { return nil }
            return File(path: directory + "/" + n, first: first)
        }.sorted { ($0.first ?? 0) < ($1.first ?? 0) }
    }

    /// Every log with files in a directory: each `*.jsonl` there, active or closed, by stem.
    public static func logs(in directory: String) -> [AuditSegments] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var seen: [AuditSegments] = []
        for n in names.sorted() where n.hasSuffix(".jsonl") {
            let s = AuditSegments(activePath: directory + "/" + n)
            if !seen.contains(s) { seen.append(s) }
        }
        return seen
    }

    /// Makes a rename or a new file in `directory` durable.
    static func syncDirectory(_ directory: String) -> Int32 {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        return fsync(fd) == 0 ? 0 : errno
    }
}
