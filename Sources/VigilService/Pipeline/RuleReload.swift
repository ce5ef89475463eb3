import Foundation
import Synchronization
import VigilContract
import VigilEngine
import VigilRules

/// A rule pack read from its directory and checked as a reload requires: compiled without error, and every
/// rule test kept beside it passing. Either the pack, or why it is refused.
public enum RulePackCandidate: Sendable {
    case accepted(CompiledRuleSet)
    case refused(reason: String)

    /// Loads, compiles and tests the pack in `directory` (files read whole; nothing is kept open).
    public static func load(_ directory: String) -> RulePackCandidate {
        let sources: RuleSources
        do { sources = try RuleDirectory.load(directory) } catch { return .refused(reason: "\(error)") }
        let compilation = RuleCompiler.compile(sources, contract: .embedded)
        guard let set = compilation.ruleSet else {
            let first = compilation.errors.first.map { ": first at \($0.location.file):\($0.location.line): \($0.message)" } ?? ""
            return .refused(reason: "\(compilation.errors.count) error\(compilation.errors.count == 1 ? "" : "s") in \(directory)\(first)")
        }
        let suite = RuleTestSuite.run(sources, rules: set)
        if let problem = suite.diagnostics.first(where: { $0.severity == .error }) {
            return .refused(reason: "its rule tests do not load: \(problem.location.file):\(problem.location.line): \(problem.message)")
        }
        let failed = suite.failed
        guard failed.isEmpty else {
            let names = failed.prefix(3).map { "\($0.test.name) (\($0.test.location.file):\($0.test.location.line))" }.joined(separator: ", ")
            return .refused(reason: "\(failed.count) of its \(suite.results.count) rule tests fail: \(names)\(failed.count > 3 ? ", ..." : "")")
        }
        return .accepted(set)
    }
}

/// The audit log's record of a rule pack: accepted (at start, or a reload) or refused (a reload that failed
/// its checks). Accepted ones carry every rule's version and fingerprint, so that each alert's
/// `rule_version` resolves to a recorded pack.
///
///     {"kind":"rule-pack","status":"accepted","digest":"…","previous":"…","loaded_by":"sighup","detected_at":"…",
///      "rules":[{"id":"…","version":"…","logic":"…","timing":"…","output":"…","change":"cosmetic"},…],
///      "removed":[{"id":"…","version":"…"}]}
///     {"kind":"rule-pack","status":"refused","previous":"…","loaded_by":"sighup","detected_at":"…","reason":"…"}
struct RulePackNote: Sendable {
    enum Status: String, Sendable { case accepted, refused }
    let status: Status
    /// The pack's manifest (accepted), and the change from the previous pack, if there was one.
    let manifest: PackManifest?
    let change: PackChange?
    let previous: String?
    let loadedBy: String
    let reason: String?
    let at: Instant

    var note: [UInt8] {
        var w = JSONWriter(capacity: 256 + 160 * (manifest?.rules.count ?? 0))
        w.raw("{"); w.key("kind"); w.string("rule-pack")
        w.raw(","); w.key("status"); w.string(status.rawValue)
        if let m = manifest { w.raw(","); w.key("digest"); w.string(m.digest) }
        if let p = previous { w.raw(","); w.key("previous"); w.string(p) }
        w.raw(","); w.key("loaded_by"); w.string(loadedBy)
        w.raw(","); w.key("detected_at"); w.string(at.description)
        if let reason { w.raw(","); w.key("reason"); w.string(reason) }
        if let m = manifest {
            w.raw(","); w.key("rules"); w.raw("[")
            for (k, r) in m.rules.enumerated() {
                if k > 0 { w.raw(",") }
                w.raw("{"); w.key("id"); w.string(r.id)
                w.raw(","); w.key("version"); w.string(r.version)
                w.raw(","); w.key("logic"); w.string(r.fingerprint.logic)
                w.raw(","); w.key("timing"); w.string(r.fingerprint.timing)
                w.raw(","); w.key("output"); w.string(r.fingerprint.output)
                if let c = change?.change(of: r.id) { w.raw(","); w.key("change"); w.string(c.rawValue) }
                w.raw("}")
            }
            w.raw("]")
            let removed = change?.rules.filter { $0.change == .removed } ?? []
            if !removed.isEmpty {
                w.raw(","); w.key("removed"); w.raw("[")
                for (k, r) in removed.enumerated() {
                    if k > 0 { w.raw(",") }
                    w.raw("{"); w.key("id"); w.string(r.id)
                    w.raw(","); w.key("version"); w.string(r.oldVersion ?? "")
                    w.raw("}")
                }
                w.raw("]")
            }
        }
        w.raw("}")
        return w.bytes
    }
}

/// Reloads asked for (from a signal handler, a watcher, or the HTTP endpoint), taken by intake at its next
/// epoch barrier. Thread-safe.
final class ReloadMailbox: Sendable {
    enum Request: Sendable {
        case accepted(CompiledRuleSet, loadedBy: String)
        case refused(reason: String, loadedBy: String)
    }

    private let requests = Mutex<[Request]>([])

    func put(_ r: Request) { requests.withLock { $0.append(r) } }
    func take() -> [Request] { requests.withLock { r in defer { r = [] }; return r } }
}

/// What a reload came to, for whoever asked (the HTTP endpoint, tests).
public struct ReloadOutcome: Sendable, Equatable {
    public enum Result: String, Sendable { case switched, unchanged, refused }
    public let result: Result
    public let digest: String
    public let previous: String
    public let loadedBy: String
    /// Per class, how many rules.
    public let classes: [String: Int]
    public let reason: String?
}
