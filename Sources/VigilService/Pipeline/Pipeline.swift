#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import VigilContract
import VigilEngine
import VigilRules

/// `vigil run`: events in, alerts out, through three kinds of stage on their own threads.
///
/// - **Intake** (one): polls the source in batches, validates each message against the contract, keeps the
///   partitions' clocks and positions (`PartitionTracker`), hands each shard its slice of the batch and the
///   sink the epoch's plan; restores assigned partitions and checkpoints revoked ones.
/// - **Shards** (one per core): each owns an `Engine` for the children hashed to it and evaluates its slice in
///   intake order.
/// - **Sink** (one): decides with the `EpochLedger` what goes to which output and when an epoch, a checkpoint
///   and an offset are durable, and performs it through the outputs (`DurableOutput`).
///
/// The stages share only the `Coordinator` (stop, fatal error, epochs in flight) and their queues; nothing is
/// handed between threads per message. They start in that order's reverse and stop in it (`StageGroup`):
/// intake leaves first (checkpointing its partitions), the sink stops last, once everything is durable.
public final class Pipeline: @unchecked Sendable {
    public let config: PipelineConfig
    public let rules: CompiledRuleSet
    public let logger: Logger
    public let coordinator = Coordinator()
    private let makeIO: PipelineIO.Factory
    /// Called on the sink thread for each alert once it is durable in every output.
    public var onAlert: (@Sendable (RenderedAlert) -> Void)?
    /// Called once when intake first catches up with every assigned partition.
    public var onCaughtUp: (@Sendable () -> Void)?
    /// Stop once caught up with every assigned partition (after the catch-up clock move): backtests.
    public var stopWhenCaughtUp = false
    /// Where the stages record their metrics (`--http`); nil records nothing.
    public var metrics: PipelineMetrics?
    /// Liveness and readiness, for `/healthz` and `/readyz`.
    public let status: PipelineStatus
    /// Called on the intake thread when a reload was acted on (switched at an epoch barrier, unchanged, or
    /// refused and recorded).
    public var onReload: (@Sendable (ReloadOutcome) -> Void)?
    let reloads = ReloadMailbox()
    /// Reloads from a directory are loaded, compiled and tested here, one at a time, in the order asked.
    private let reloadQueue = DispatchQueue(label: "vigil.reload")

    public init(config: PipelineConfig, rules: CompiledRuleSet, logger: Logger, io: @escaping PipelineIO.Factory = PipelineIO.kafka) {
        self.config = config
        self.rules = rules
        self.logger = logger
        makeIO = io
        status = PipelineStatus(readyMaxLag: Int64(config.readyMaxLag))
    }

    /// Asks the pipeline to stop: intake stops, in-flight work drains, state is checkpointed, then everything
    /// is flushed. Safe from any thread (a signal handler's queue included).
    public func requestStop() {
        // Not ready from the first moment of a stop: load balancers and probes look elsewhere first.
        status.stopping.store(true, ordering: .relaxed)
        coordinator.requestStop()
    }

    /// Switches to `rules` at the next epoch barrier, on every shard at once: each child is carried to the new
    /// pack, re-derived from its timeline where the change needs it, with the backfill of new and changed
    /// rules (see `Engine.switched`). The pack must have passed its checks (`RulePackCandidate`). Safe from any
    /// thread; the outcome goes to `onReload`.
    public func reload(to rules: CompiledRuleSet, loadedBy: String) {
        reloads.put(.accepted(rules, loadedBy: loadedBy))
    }

    /// Records a reload that was refused (the pack failed to compile or its tests): logged, counted and
    /// written to the audit log; the running pack keeps going.
    public func refuseReload(reason: String, loadedBy: String) {
        reloads.put(.refused(reason: reason, loadedBy: loadedBy))
    }

    /// Loads the pack in `directory`, checks it (`RulePackCandidate`), and switches to it or records the
    /// refusal: on a queue of its own (it reads files and runs the pack's tests), one reload at a time in the
    /// order asked. Returns at once; the outcome goes to `onReload`.
    public func reload(from directory: String, loadedBy: String) {
        reloadQueue.async { [self] in
            switch RulePackCandidate.load(directory) {
            case .accepted(let set): reload(to: set, loadedBy: loadedBy)
            case .refused(let reason): refuseReload(reason: reason, loadedBy: loadedBy)
            }
        }
    }

    /// Runs until `requestStop()`; returns the counters. Throws when it cannot start, or on a fatal error.
    public func run() throws(PipelineError) -> PipelineSummary {
        do { try config.validate() } catch { throw .config(error) }
        let io = try makeIO(PipelineContext(config: config, rules: rules, logger: logger, coordinator: coordinator, reports: DeliveryReports()))
        if let metrics, let audit = io.audit {
            audit.syncObserver = { micros, failed in metrics.auditSynced(micros: micros, failed: failed) }
        }
        let counters = PipelineCounters()
        let inbox = HandOff<SinkItem>()
        let shards = (0..<config.effectiveShards).map {
            Shard(index: $0, rules: rules, topic: io.source.topic, config: config, sink: inbox,
                  coordinator: coordinator, counters: counters, metrics: metrics, clock: io.clock, logger: logger)
        }
        let onAlert = self.onAlert
        let sink = Sink(io: io, inbox: inbox, shards: shards.count, rulesDigest: PackManifest(rules).digest,
                        coordinator: coordinator, counters: counters, metrics: metrics, status: status, logger: logger, onAlert: { a in onAlert?(a) })
        let intake = Intake(config: config, io: io, rules: rules, reloads: reloads, shards: shards, sink: inbox, coordinator: coordinator,
                            counters: counters, metrics: metrics, status: status, logger: logger, onReload: { [self] in onReload?($0) }) { [self] in
            onCaughtUp?()
            if stopWhenCaughtUp { requestStop() }
        }
        let group = StageGroup(stages: [sink] + shards + [intake] + io.stages)
        group.start()
        coordinator.waitUntilStopping()
        status.stopping.store(true, ordering: .relaxed)
        if !coordinator.isAborting { logger.info("stopping: checkpointing and leaving the group") }
        group.shutdown()
        if coordinator.isCrashed {
            // A crashed process leaves nothing behind: its audit records not yet written never will be.
            io.audit?.writer.abandon()
        } else {
            // After a fatal error what is not out by now is re-done from the last checkpoint: do not wait long.
            let timeout: Int32 = coordinator.isAborting ? 2000 : 30_000
            for o in io.outputs.all where !o.close(timeoutMs: timeout) {
                logger.error("\(o.name): records still unacknowledged after \(timeout / 1000) s")
            }
        }
        let summary = PipelineSummary(counters: counters, ledger: sink.ledger.stats, audit: io.audit, engines: shards.map(\.engine.stats))
        if io.audit != nil { logger.info("audit head: seq \(summary.auditHead.seq) sha256 \(summary.auditHead.hash)") }
        if let fatal = coordinator.fatalError { throw fatal }
        return summary
    }
}

extension Instant {
    /// The wall clock. Only the service edge reads it; the engine never does.
    public static var now: Instant {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Instant(micros: Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000)
    }
}
