import Logging
import VigilContract
import VigilEngine
import VigilRules
import VigilService

/// `vigil run --http`: Prometheus metrics for a pipeline, and the endpoints that serve them with its health
/// and readiness.
public enum Endpoints {
    /// The version `vigil_build_info` reports.
    public static let version = "0.9.0"

    /// Gives `pipeline` metrics and serves, on `address`:
    /// - `/metrics`: every metric, Prometheus text format 0.0.4;
    /// - `/healthz`: 200 while intake and the sink loop (503 and why when one has not for 30 s);
    /// - `/readyz`: 200 once partitions are assigned and restored and the lag is under `ready-max-lag`, 503
    ///   and why before that and from the first moment of a stop.
    /// - `POST /-/reload` (when `rulesDirectory` is given): reload the rule pack from that directory, as SIGHUP
    ///   does; answers 202 at once (the outcome is logged, counted in `vigil_rule_reloads_total` and recorded
    ///   in the audit log). It takes no body: it can only re-read what is already deployed.
    /// The answers carry counts, partitions, rules and reasons: never an event's content or a child's id.
    public static func start(_ address: HTTPAddress, for pipeline: Pipeline, rulesDirectory: String? = nil, logger: Logger) throws -> OperationsServer {
        let export = PrometheusExport()
        let metrics = PipelineMetrics(factory: export, rules: pipeline.rules,
                                      rulesDigest: PackManifest(pipeline.rules).digest, version: version)
        pipeline.metrics = metrics
        let status = pipeline.status
        let server = try OperationsServer(host: address.host, port: address.port, routes: [
            "/metrics": {
                metrics.recordReadiness(status.ready.0)
                return .init(.ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: export.text())
            },
            "/healthz": { OperationsServer.Response(verdict: status.healthy(now: .now)) },
            "/readyz": { OperationsServer.Response(verdict: status.ready) },
        ], postRoutes: rulesDirectory.map { dir in
            ["/-/reload": {
                // Loading, compiling and testing happen on the pipeline's reload queue, off the event loop.
                pipeline.reload(from: dir, loadedBy: "http")
                return .init(.accepted, "reload requested: the outcome is logged, counted in vigil_rule_reloads_total and recorded in the audit log")
            }]
        } ?? [:])
        logger.info("operations endpoints on http://\(address.host.contains(":") ? "[\(address.host)]" : address.host):\(server.port): /metrics, /healthz, /readyz")
        return server
    }
}

extension OperationsServer.Response {
    /// 200 with "ok", or 503 with why not.
    init(verdict: (Bool, String)) { self.init(verdict.0 ? .ok : .serviceUnavailable, verdict.1) }
}
