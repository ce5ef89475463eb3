import Foundation

/// A long-running part of the pipeline, on its own thread.
protocol PipelineStage: AnyObject, Sendable {
    var name: String { get }
    /// Starts the stage's thread.
    func start()
    /// Asks it to finish: it completes what it has been given (unless the coordinator is aborting).
    func stop()
    /// Waits for its thread to end.
    func join()
}

/// The stages, started in order and stopped in the reverse order, as swift-service-lifecycle's
/// `ServiceGroup` does for services: intake (started last) stops first and leaves the group, which
/// checkpoints its partitions while the shards and the sink still run; the sink (started first) stops last,
/// once everything handed to it is durable.
struct StageGroup: Sendable {
    let stages: [PipelineStage]

    func start() {
        for s in stages { s.start() }
    }

    /// Stops and joins each stage, last started first.
    func shutdown() {
        for s in stages.reversed() {
            s.stop()
            s.join()
        }
    }
}

/// A thread running `body` once, with a name, that can be joined.
final class StageThread: Sendable {
    private let done = DispatchSemaphore(value: 0)

    init(name: String, _ body: @escaping @Sendable () -> Void) {
        let t = Thread { [done] in
            body()
            done.signal()
        }
        t.name = name
        t.start()
    }

    func join() { done.wait() }
}
