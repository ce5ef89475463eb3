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
