import Dispatch
import Foundation
import Synchronization

/// SIGINT and SIGTERM: the first calls `onFirst` (a graceful stop); a second exits at once.
final class SignalTrap: Sendable {
    private let count = Atomic<Int>(0)
    nonisolated(unsafe) private var sources: [DispatchSourceSignal] = []

    init(onFirst: @escaping @Sendable () -> Void) {
        let queue = DispatchQueue(label: "vigil.signals")
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            src.setEventHandler { [self] in
                let n = self.count.add(1, ordering: .relaxed).newValue
                if n == 1 {
                    Output.error("vigil: stopping (send the signal again to exit at once)")
                    onFirst()
                } else {
                    Output.error("vigil: exiting at once")
                    exit(130)
                }
            }
            src.resume()
            sources.append(src)
        }
    }

    var triggered: Bool { count.load(ordering: .relaxed) > 0 }
}

/// SIGHUP: reload the rule pack (each signal once, in order, on a queue of its own).
final class ReloadTrap: Sendable {
    nonisolated(unsafe) private var source: DispatchSourceSignal?

    init(onSignal: @escaping @Sendable () -> Void) {
        signal(SIGHUP, SIG_IGN)
        let src = DispatchSource.makeSignalSource(signal: SIGHUP, queue: DispatchQueue(label: "vigil.reload"))
        src.setEventHandler { onSignal() }
        src.resume()
        source = src
    }
}

/// `--watch-rules`: looks at the rule directory every `interval` seconds (names, sizes and modification
/// times of its files) and calls `onChange` once it has changed and then stayed the same for one more look,
/// so that an editor's or a `git pull`'s several writes make one reload.
final class RulesWatcher: Sendable {
    nonisolated(unsafe) private var timer: DispatchSourceTimer?

    init(directory: String, interval: Double = 2, onChange: @escaping @Sendable () -> Void) {
        let queue = DispatchQueue(label: "vigil.watch-rules")
        let t = DispatchSource.makeTimerSource(queue: queue)
        nonisolated(unsafe) var seen = RulesWatcher.look(directory)
        nonisolated(unsafe) var changed: String?
        t.schedule(deadline: .now() + interval, repeating: interval)
        t.setEventHandler {
            let now = RulesWatcher.look(directory)
            if now == seen {
                changed = nil
            } else if changed == now {
                seen = now
                changed = nil
                onChange()
            } else {
                changed = now
            }
        }
        t.resume()
        timer = t
    }

    /// What a look at the directory sees: every rule, test and calendar file's path, size and mtime.
    static func look(_ directory: String) -> String {
        let fm = FileManager.default
        var out: [String] = []
        let files = (fm.enumerator(atPath: directory)?.allObjects as? [String]) ?? []
        for rel in files.sorted() where ["yaml", "yml", "csv"].contains((rel as NSString).pathExtension.lowercased()) {
            let attrs = try? fm.attributesOfItem(atPath: directory + "/" + rel)
            let size = (attrs?[.size] as? NSNumber)?.int64Value ?? -1
            let mtime = (attrs?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            out.append("\(rel) \(size) \(mtime)")
        }
        return out.joined(separator: "\n")
    }

    func cancel() { timer?.cancel() }
}
