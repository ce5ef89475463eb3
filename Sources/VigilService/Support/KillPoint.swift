#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// Crash tests: named points where the process kills itself with SIGKILL when `VIGIL_TEST_KILL_AT` says so,
/// so that a test can put a real crash exactly where a partial write would do harm (between a seal and the
/// key's evolution, between a rotation's rename and the new segment). `VIGIL_TEST_KILL_AT=name` kills at the
/// first time the point is reached, `name:N` at the Nth. Unset (always, outside tests), a point costs one
/// comparison.
enum KillPoint {
    private static let target: (name: String, count: Int)? = {
        guard let spec = ProcessInfo.processInfo.environment["VIGIL_TEST_KILL_AT"], !spec.isEmpty else { return nil }
        let parts = spec.split(separator: ":", maxSplits: 1)
        return (String(parts[0]), parts.count > 1 ? Int(parts[1]) ?? 1 : 1)
    }()
    private static let hits = Atomic<Int>(0)

    static func hit(_ name: String) {
        guard let target, target.name == name else { return }
        if hits.add(1, ordering: .relaxed).newValue == target.count {
            FileHandle.standardError.write(Data("vigil: killed at \(name) (VIGIL_TEST_KILL_AT)\n".utf8))
            kill(getpid(), SIGKILL)
        }
    }
}
