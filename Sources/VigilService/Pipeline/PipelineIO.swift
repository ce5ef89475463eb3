import Logging
import VigilEngine
import VigilRules

/// What a pipeline is given to build its I/O: its settings, and where its outputs report.
public struct PipelineContext {
    public let config: PipelineConfig
    public let rules: CompiledRuleSet
    public let logger: Logger
    public let coordinator: Coordinator
    /// Every output reports here (see `DurableOutput`).
    public let reports: DeliveryReports
}

/// Everything a pipeline reads and writes, behind the seams: where events come from, where alerts, dead
/// letters and state go, where state is restored from, and the wall clock. `PipelineIO.kafka` is `vigil
/// run`'s; tests use in-memory ones (`VigilTesting`).
public struct PipelineIO {
    public var source: EventSource
    public var outputs: PipelineOutputs
    public var state: StateStore
    public var reports: DeliveryReports
    public var clock: PipelineClock
    /// The audit log among the outputs, for its head and counters.
    public var audit: AuditLogOutput?
    /// Whether whatever feeds the source is caught up too (the repartitioner); always true without one.
    public var upstreamCaughtUp: @Sendable () -> Bool = { true }
    /// How long a failed write waits before it goes out again.
    public var retryBackoff = Backoff.delivery
    /// Tests: called after each action the sink performs; true crashes the pipeline there.
    public var crashAfter: ((EpochLedger.Action) -> Bool)?
    /// Stages that run beside the pipeline's own (the repartitioner).
    var stages: [PipelineStage] = []

    public init(source: EventSource, outputs: PipelineOutputs, state: StateStore, reports: DeliveryReports,
                clock: PipelineClock = SystemClock(), audit: AuditLogOutput? = nil) {
        self.source = source
        self.outputs = outputs
        self.state = state
        self.reports = reports
        self.clock = clock
        self.audit = audit
    }

    /// Builds a pipeline's I/O.
    public typealias Factory = (PipelineContext) throws(PipelineError) -> PipelineIO
}
