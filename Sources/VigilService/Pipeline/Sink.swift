import Foundation
import Logging
import VigilContract

/// The sink stage: its own thread, the only caller of the outputs. It feeds the epoch ledger what
/// intake planned, what the shards made and what the outputs report, and performs the ledger's actions.
final class Sink: PipelineStage, @unchecked Sendable {
    let name = "vigil-sink"
    /// The ledger's outputs, by `EpochLedger.OutputID`.
    let outputs: [DurableOutput]
    private(set) var ledger: EpochLedger
    private let inbox: HandOff<SinkItem>
    private let reports: DeliveryReports
    private let source: EventSource
    private let coordinator: Coordinator
    private let counters: PipelineCounters
    private let metrics: PipelineMetrics?
    private let status: PipelineStatus
    /// When each epoch's batch was read, until it is durable (metrics only).
    private var readAt: [Int: Instant] = [:]
    private let clock: PipelineClock
    private let logger: Logger
    private let onAlert: (RenderedAlert) -> Void
    /// Tests: after each action performed, whether to crash now.
    private let crashAfter: ((EpochLedger.Action) -> Bool)?
    private var thread: StageThread?

    init(io: PipelineIO, inbox: HandOff<SinkItem>, shards: Int, rulesDigest: String, coordinator: Coordinator,
         counters: PipelineCounters, metrics: PipelineMetrics?, status: PipelineStatus, logger: Logger,
         onAlert: @escaping (RenderedAlert) -> Void) {
        let o = io.outputs
        let all = o.all
        func ids(_ list: [DurableOutput]) -> [Int] { list.compactMap { x in all.firstIndex { $0 === x } } }
        outputs = all
        ledger = EpochLedger(routing: .init(alerts: ids(o.alerts), deadLetters: ids(o.deadLetters), changelog: ids([o.changelog])[0], notes: ids(o.notes),
                                            shadowAlerts: ids(o.shadowAlerts)),
                             shards: shards, rulesDigest: rulesDigest, backoff: io.retryBackoff)
        self.inbox = inbox
        reports = io.reports
        source = io.source
        self.coordinator = coordinator
        self.counters = counters
        self.metrics = metrics
        self.status = status
        clock = io.clock
        self.logger = logger
        self.onAlert = onAlert
        crashAfter = io.crashAfter
    }

    func start() { thread = StageThread(name: name) { [self] in loop() } }
    func stop() { inbox.put(.stop) }
    func join() { thread?.join() }

    private func loop() {
        var stopping = false
        while true {
            status.sinkBeat.store(clock.now().micros, ordering: .relaxed)
            // Take everything waiting without blocking; block only when there is nothing to do.
            var idle = true
            var taken = 0
            while taken < 64, let item = inbox.take(timeout: 0) {
                idle = false
                taken += 1
                switch item {
                case .plan(let p):
                    if metrics != nil, let at = p.readAt { readAt[p.epoch] = at }
                    perform(ledger.planned(p))
                case .result(let e, let s, let r): perform(ledger.finished(epoch: e, shard: s, r))
                case .failed(let error): fail(error)
                case .stop: stopping = true
                }
            }
            if coordinator.isAborting { return }
            perform(ledger.retryDue(now: clock.now()))
            for o in outputs { o.flush(waitMs: 0) }
            takeReports()
            if coordinator.isAborting { return }
            if stopping && ledger.isIdle { return }
            guard idle else { continue }
            if let o = ledger.firstOutputWaiting {
                // Writes outstanding: wait briefly for their reports.
                outputs[o].flush(waitMs: 1)
                takeReports()
            } else if let item = inbox.take(timeout: 0.01) {
                inbox.putBack(item)
            }
        }
    }

    private func takeReports() {
        let now = clock.now()
        for (token, outcome) in reports.take() { perform(ledger.reported(token, outcome, now: now)) }
    }

    private func perform(_ actions: [EpochLedger.Action]) {
        for action in actions {
            if coordinator.isCrashed { return }
            switch action {
            case .write(let output, let record, let token):
                outputs[output].write(record, token: token)
            case .writeFailed(let output, let reason, let retryIn):
                logger.warning("delivery to \(outputs[output].name) failed (\(reason)); retrying in \(String(format: "%.1f", retryIn)) s",
                               metadata: ["output": "\(outputs[output].name)", "retry_in_seconds": "\(String(format: "%.1f", retryIn))"])
                metrics?.deliveryRetries.increment()
                metrics?.deliveryErrors(output: outputs[output].name).increment()
            case .commit(let offsets):
                do { try source.commit(offsets) } catch { logger.warning("committing offsets: \(error)") }
            case .checkpointDurable(_, let parts):
                if let metrics {
                    let now = Double(clock.now().micros) / 1e6
                    for part in parts { metrics.partitionGauge("vigil_last_checkpoint_timestamp_seconds", part.partition).record(now) }
                }
            case .epochDurable(let epoch, let alerts):
                for a in alerts { onAlert(a) }
                if let metrics {
                    for a in alerts { metrics.alerted(a) }
                    if let at = readAt.removeValue(forKey: epoch) { metrics.endToEnd.recordMicroseconds(clock.now().micros - at.micros) }
                    metrics.epochsInFlight.record(ledger.openEpochs)
                }
                counters.lastDurableAt.store(clock.now().micros, ordering: .relaxed)
                coordinator.epochFinished(epoch)
            case .fatal(let output, let reason):
                metrics?.deliveryErrors(output: outputs[output].name).increment()
                fail(.output(name: outputs[output].name, reason: reason))
            }
            if let crashAfter, crashAfter(action) {
                logger.info("crashing after \(action.kind) (test)")
                coordinator.crash()
                return
            }
        }
    }

    private func fail(_ error: PipelineError) {
        logger.critical("\(error): stopping; nothing after the last checkpoint is acknowledged")
        coordinator.fail(error)
    }
}

extension EpochLedger.Action {
    /// The action's name, for logs and crash tests.
    public var kind: String {
        switch self {
        case .write(let output, _, _): return "write(\(output))"
        case .writeFailed: return "writeFailed"
        case .commit: return "commit"
        case .checkpointDurable: return "checkpointDurable"
        case .epochDurable: return "epochDurable"
        case .fatal: return "fatal"
        }
    }
}
