import Dispatch
import Foundation

/// `--watch-rules`: looks at the rule directory every `interval` seconds (names, sizes and modification
/// times of its files) and calls `onChange` once it has changed and then stayed the same for one more look,
/// so that an editor's or a `git pull`'s several writes make one reload.
public final class RulesWatcher: Sendable {
    nonisolated(unsafe) private var timer: DispatchSourceTimer?

    public init(directory: String, interval: Double = 2, onChange: @escaping @Sendable () -> Void) {
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
        for rel in files.sorted() where RuleDirectory.extensions.contains((rel as NSString).pathExtension.lowercased()) {
            let attrs = try? fm.attributesOfItem(atPath: directory + "/" + rel)
            let size = (attrs?[.size] as? NSNumber)?.int64Value ?? -1
            let mtime = (attrs?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            out.append("\(rel) \(size) \(mtime)")
        }
        return out.joined(separator: "\n")
    }

    public func cancel() { timer?.cancel() }
}
