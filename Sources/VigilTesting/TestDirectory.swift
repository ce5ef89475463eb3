import Foundation

/// Where tests write: one private directory (mode 0700) per test process, removed when the process exits,
/// so that a test run leaves nothing behind in the temporary directory. `VIGIL_KEEP_TEST_FILES=1` keeps it
/// (to read the logs of a failed run).
public enum TestDirectory {
    /// The process's directory, created on first use.
    public static let root: String = {
        let path = NSTemporaryDirectory() + "vigil-tests-\(getpid())-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        rootForCleanup = path
        if ProcessInfo.processInfo.environment["VIGIL_KEEP_TEST_FILES"] == nil {
            atexit { if let p = TestDirectory.rootForCleanup { try? FileManager.default.removeItem(atPath: p) } }
        }
        return path
    }()

    nonisolated(unsafe) static var rootForCleanup: String?

    /// A new directory inside the root.
    public static func make(_ name: String = "dir") -> String {
        let path = root + "/\(name)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return path
    }

    /// A path for a new file inside the root (not created).
    public static func file(_ name: String) -> String { root + "/\(name)-\(UUID().uuidString.prefix(8))" }
}
