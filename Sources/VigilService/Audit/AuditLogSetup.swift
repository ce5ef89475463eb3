#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import VigilContract

extension AuditLogWriter {
    /// The audit log as `vigil run` configures it: its keys (checked to live outside the log's directory), its
    /// sealing and rotation, the anchor file, and `anchors` besides (the topic, made by the caller).
    public static func open(_ config: PipelineConfig, anchors extra: [AuditAnchorSink] = [],
                            now: @escaping () -> Instant = { .now }) throws(AuditLogError) -> AuditLogWriter {
        let directory = Self.realDirectory(of: config.auditFile)
        func outside(_ path: String, _ what: String) throws(AuditLogError) {
            guard !path.isEmpty else { return }
            let d = Self.realDirectory(of: path)
            if d == directory || d.hasPrefix(directory + "/") {
                throw AuditLogError(path: path, refusing: "the \(what) is inside the audit log's directory (\(directory)): whoever can rewrite the log could reach it; keep it on another path")
            }
        }
        try outside(config.auditKey, "key")
        try outside(config.auditPreviousKey, "previous key")
        try outside(config.auditAnchorFile, "anchor file")
        var keys = AuditKeys(previousLost: config.auditKeyLost)
        do {
            if !config.auditKey.isEmpty { keys.key = try AuditKeyFile(path: config.auditKey) }
            if !config.auditPreviousKey.isEmpty { keys.previous = try AuditKeyFile(path: config.auditPreviousKey) }
        } catch {
            throw AuditLogError(error)
        }
        var options = AuditLogOptions()
        options.sealEvery = config.auditSealEvery
        options.sealIntervalMicros = Int64(config.auditSealInterval) * Instant.microsPerSecond
        options.maxBytes = config.auditMaxBytes
        options.maxAgeMicros = Int64(config.auditMaxAge) * Instant.microsPerSecond
        options.instance = Self.instanceName(config)
        var anchors = extra
        if keys.key != nil && !config.auditAnchorFile.isEmpty { anchors.append(try AuditAnchorFile(path: config.auditAnchorFile)) }
        return try AuditLogWriter(path: config.auditFile, keys: keys, options: options, anchors: anchors, now: now)
    }

    /// Who writes the log, as anchors name it: the host, and the log's file name.
    static func instanceName(_ config: PipelineConfig) -> String {
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        let name = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return "\(name):\((config.auditFile as NSString).lastPathComponent)"
    }

    /// The directory a path is in, with symbolic links resolved (the directory must exist).
    static func realDirectory(of path: String) -> String {
        let dir = (path as NSString).deletingLastPathComponent
        guard let r = realpath(dir.isEmpty ? "." : dir, nil) else { return dir }
        defer { free(r) }
        return String(cString: r)
    }
}

extension AuditLogWriter {
    /// `open`, saying in the log what it found and repaired, and warning of anchors that fail.
    public static func openLogged(_ config: PipelineConfig, anchors: [AuditAnchorSink] = [], logger: Logger,
                                  now: @escaping () -> Instant = { .now }) throws(PipelineError) -> AuditLogWriter {
        let audit: AuditLogWriter
        do { audit = try open(config, anchors: anchors, now: now) } catch { throw .audit(error) }
        for n in audit.notices { logger.warning("audit log: \(n)") }
        audit.warn = { logger.warning("\($0)") }
        let sealing = audit.isSealed ? "sealed by key \(audit.keyRoot?.prefix(16) ?? "")…, next seal at epoch \(audit.keyEpoch)" : "not sealed (no --audit-key)"
        logger.info("audit log \(config.auditFile): \(audit.count) records, head \(audit.head.prefix(16))…; \(sealing)")
        return audit
    }
}
