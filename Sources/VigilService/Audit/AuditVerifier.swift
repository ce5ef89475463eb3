import Foundation
import VigilContract

/// Checks a whole audit log, every segment in chain order, as evidence:
/// - the hash chain (an edited, deleted, inserted or reordered record, a segment missing, reordered or
///   replaced, a file cut short);
/// - every seal's signature, each by the key the seal before it named, from a root key the verifier was given
///   (`--key`): records dropped and the chain recomputed, a log re-sealed with another key;
/// - every anchored head (`--anchors`): the log must hold each anchored seal, byte for byte; a log shorter than
///   an anchor was cut (the tail removed, or an older copy put back);
/// - the rule packs on the record: each `rule-pack` note readable, and every alert's `rule_id` and
///   `rule_version` those of a pack accepted before it (once the log records packs).
public enum AuditVerifier {
    public struct Report: Sendable {
        public var name: String
        /// What fails the log, in the order found; empty when it verifies.
        public var problems: [String] = []
        /// What does not fail it but must be said (no key given, an anchor that is not signed).
        public var warnings: [String] = []
        public var records = 0
        public var alerts = 0
        public var notes = 0
        public var seals = 0
        public var segments = 0
        public var headSeq = 0
        public var headHash = AuditLog.genesis
        /// The root keys that sealed the log, in order (more than one after a change of key).
        public var roots: [String] = []
        public var lastSeal: AuditSeal?
        public var firstSealReason: String?
        /// Records before the first seal (a log begun before sealing was turned on), and after the last.
        public var unsealedBefore = 0
        public var unsealedAfter = 0
        public var anchorsChecked = 0
        public var anchorsOtherLogs = 0
        /// The rule packs accepted, in order: digest, how loaded, when, the one before.
        public var packs: [(digest: String, loadedBy: String, at: String, previous: String?)] = []
        public var packsRefused = 0
        /// Alerts before the first pack on the record (a log begun by a Vigil that did not record packs).
        public var alertsBeforePacks = 0
        public var ok: Bool { problems.isEmpty }

        /// The lines `vigil audit verify` prints.
        public var lines: [String] {
            var out: [String] = []
            let what = "\(records) records (\(alerts) alerts, \(notes) notes, \(seals) seals) in \(segments) segment\(segments == 1 ? "" : "s"); head seq \(headSeq) sha256 \(headHash)"
            out.append(ok ? "\(name): OK \(what)" : "\(name): FAILED")
            out += problems.map { "  problem: \($0)" }
            if ok {
                if let s = lastSeal {
                    out.append("  sealed by \(roots.map { "key \($0)" }.joined(separator: ", then ")): last seal at seq \(s.seq), epoch \(s.epoch), \(s.sealedAt)")
                    if unsealedBefore > 0 && firstSealReason == "restart" {
                        out.append("  the first \(unsealedBefore) records were written before the log was sealed (a log begun without a key, or a crash before its first seal): the first seal covers them from then on")
                    }
                    if unsealedAfter > 0 { out.append("  \(unsealedAfter) records after the last seal are not sealed yet (a running writer, or a crash: the next start seals them)") }
                } else {
                    out.append("  not sealed: the chain shows edits, not a rewrite by someone who recomputes it (see vigil run --audit-key)")
                }
                if anchorsChecked > 0 { out.append("  anchors: \(anchorsChecked) heads checked, all held by the log") }
                if !packs.isEmpty || packsRefused > 0 {
                    let list = packs.map { "\($0.digest) (\($0.loadedBy), \($0.at))" }.joined(separator: ", ")
                    out.append("  rule packs: \(packs.count) accepted\(list.isEmpty ? "" : ": \(list)")\(packsRefused > 0 ? "; \(packsRefused) refused" : ""); every alert after the first names a rule version of a pack accepted before it")
                }
                if alertsBeforePacks > 0 { out.append("  \(alertsBeforePacks) alerts were written before the log recorded rule packs (an earlier Vigil)") }
            }
            out += warnings.map { "  warning: \($0)" }
            return out
        }
    }

    /// Verifies the log made of `files` (in chain order). `keys`: the root public keys the verifier trusts
    /// (none: seals are checked against the key the log names, which proves nothing about who sealed it).
    public static func verify(name: String, files: [AuditSegments.File], keys: [String], anchors: [AuditAnchor]?) -> Report {
        var report = Report(name: name)
        var chain = AuditChain()
        var expected: String?
        var root: String?
        var sealHashes: [Int: String] = [:]
        var warnedNoKey = false
        var versions = Set<String>()
        walk: for (index, file) in files.enumerated() {
            guard let data = FileManager.default.contents(atPath: file.path) else {
                report.problems.append("\(file.path): cannot be read")
                break
            }
            report.segments += 1
            var line = 0
            for (slice, complete) in AuditLog.lines([UInt8](data)) {
                line += 1
                let at = "\(file.path):\(line)"
                guard complete else {
                    report.problems.append("\(at): \(AuditLog.ChainProblem.cutShort)")
                    break walk
                }
                if index == 0 && line == 1, let r = AuditLine.parse(slice), r.seq > 1 {
                    report.problems.append("\(at): the log starts at seq \(r.seq): the segments before it are missing (give the directory that holds them too)")
                    break walk
                }
                if line == 1, let first = file.first, let r = AuditLine.parse(slice), first != r.seq {
                    report.problems.append("\(at): the file is named as the segment starting at seq \(first), but starts at seq \(r.seq): renamed or replaced")
                    break walk
                }
                let record: AuditLine, hash: String
                switch chain.next(slice) {
                case .failure(let problem):
                    if line == 1 && index > 0 {
                        report.problems.append("\(at): the segment does not follow on from \(files[index - 1].path) (\(problem)): a segment is missing, reordered or replaced")
                    } else {
                        report.problems.append("\(at): \(problem)")
                    }
                    break walk
                case .success(let (r, h)): (record, hash) = (r, h)
                }
                report.records += 1
                switch record.entry {
                case .alert(let id, let body):
                    report.alerts += 1
                    if report.seals == 0 { report.unsealedBefore += 1 } else { report.unsealedAfter += 1 }
                    if report.packs.isEmpty {
                        report.alertsBeforePacks += 1
                    } else if let rule = body["rule_id"]?.stringValue, let version = body["rule_version"]?.stringValue, !versions.contains(rule + "@" + version) {
                        report.problems.append("\(at): alert \(id) names rule \(rule) version \(version), which no rule pack accepted before it has")
                        break walk
                    }
                case .note(let kind, let body):
                    report.notes += 1
                    if report.seals == 0 { report.unsealedBefore += 1 } else { report.unsealedAfter += 1 }
                    if kind == "rule-pack" {
                        if let problem = rulePack(body, versions: &versions, report: &report) {
                            report.problems.append("\(at): \(problem)")
                            break walk
                        }
                    }
                case .seal(let s):
                    if let problem = check(s, expected: expected, root: root, keys: keys) {
                        report.problems.append("\(at): \(problem)")
                        break walk
                    }
                    if keys.isEmpty && !warnedNoKey {
                        warnedNoKey = true
                        report.warnings.append("no --key given: the seals were checked against the key the log itself names (\(s.log)); give the log's public key to know it was sealed by you")
                    }
                    if s.log != root { report.roots.append(s.log) }
                    expected = s.next
                    root = s.log
                    report.seals += 1
                    report.lastSeal = s
                    if report.firstSealReason == nil { report.firstSealReason = s.reason }
                    report.unsealedAfter = 0
                    sealHashes[s.seq] = hash
                case .segment(let h):
                    if let expected, !h.next.isEmpty, h.next != expected {
                        report.problems.append("\(at): the segment names key \(h.next) for the next seal, but the last seal named \(expected): replaced")
                        break walk
                    }
                case .rekey(let r):
                    guard keys.contains(r.log) || keys.isEmpty else {
                        report.problems.append("\(at): the key changes here to \(r.log) without the previous key's signature (\(r.reason)); if that change was yours, give --key \(r.log) too")
                        break walk
                    }
                    if keys.isEmpty { report.warnings.append("\(at): the key changes to \(r.log) without the previous key's signature (\(r.reason))") }
                    expected = r.log
                }
            }
        }
        report.headSeq = chain.seq
        report.headHash = chain.head
        if let anchors { checkAnchors(anchors, sealHashes: sealHashes, keys: keys, report: &report) }
        return report
    }

    /// Takes a `rule-pack` note: an accepted pack's rule versions join those alerts may name. What is wrong
    /// with it, if anything.
    static func rulePack(_ body: JSONValue, versions: inout Set<String>, report: inout Report) -> String? {
        switch body["status"]?.stringValue {
        case "refused":
            report.packsRefused += 1
            return nil
        case "accepted":
            guard let digest = body["digest"]?.stringValue, let rules = body["rules"]?.arrayValue,
                  let loadedBy = body["loaded_by"]?.stringValue else {
                return "a rule-pack note without its digest, rules or how it was loaded"
            }
            for r in rules {
                guard let id = r["id"]?.stringValue, let v = r["version"]?.stringValue else { return "rule pack \(digest) lists a rule without id or version" }
                versions.insert(id + "@" + v)
            }
            let previous = body["previous"]?.stringValue
            if let previous, let last = report.packs.last?.digest, previous != last {
                report.warnings.append("rule pack \(digest) says it replaced \(previous), but the pack on the record before it is \(last)")
            }
            report.packs.append((digest, loadedBy, body["detected_at"]?.stringValue ?? "?", previous))
            return nil
        default:
            return "a rule-pack note of unknown status"
        }
    }

    /// What is wrong with a seal, given the key the seal before it named (nil for the first).
    static func check(_ s: AuditSeal, expected: String?, root: String?, keys: [String]) -> String? {
        if let expected {
            guard s.key == expected else {
                return "the seal is signed by key \(s.key), but the seal before named \(expected): re-sealed with another key, or seals were removed"
            }
            if s.log != root && (s.epoch != 0 || s.key != s.log) {
                return "the seal names log \(s.log) at epoch \(s.epoch), after seals of log \(root ?? "?"): not a handover to a new key"
            }
        } else {
            guard s.epoch == 0, s.key == s.log else {
                return "the first seal is at epoch \(s.epoch) with key \(s.key): the seals before it were removed, or it is another log's"
            }
            if !keys.isEmpty && !keys.contains(s.log) {
                return "sealed by key \(s.log), not by the key given (--key \(keys.joined(separator: ", "))): re-sealed with another key"
            }
        }
        guard s.isSignatureValid else {
            return "the seal's signature does not verify: the seal, or the records before it, were changed after it was made"
        }
        return nil
    }

    static func checkAnchors(_ anchors: [AuditAnchor], sealHashes: [Int: String], keys: [String], report: inout Report) {
        let roots = Set(report.roots + keys)
        var truncatedAt: AuditAnchor?
        for a in anchors {
            guard roots.contains(a.seal.log) else {
                report.anchorsOtherLogs += 1
                continue
            }
            guard a.seal.isSignatureValid else {
                report.warnings.append("\(a.source): an anchor not signed by the key it names: forged or damaged; ignored")
                continue
            }
            report.anchorsChecked += 1
            if a.seal.seq > report.headSeq {
                if truncatedAt.map({ a.seal.seq > $0.seal.seq }) ?? true { truncatedAt = a }
            } else if sealHashes[a.seal.seq] != a.hash {
                report.problems.append("\(a.source): the anchored seal at seq \(a.seal.seq) (sealed \(a.seal.sealedAt), hash \(a.hash.prefix(16))…) is not in the log as anchored: the log was rewritten")
            }
        }
        if let a = truncatedAt {
            report.problems.append("\(a.source): a seal at seq \(a.seal.seq) (sealed \(a.seal.sealedAt)) was anchored, but the log ends at seq \(report.headSeq): records were removed from the end, or an older copy was put back")
        }
        if report.anchorsChecked == 0 && !anchors.isEmpty {
            report.warnings.append("none of the \(anchors.count) anchors belongs to this log (\(report.roots.isEmpty ? "it is not sealed" : "keys \(report.roots.joined(separator: ", "))"))")
        }
    }

    /// The logs in `paths` (audit files, closed segments, directories; an archive and the live directory
    /// together), each with its segments in chain order. The same segment in two places is read once; two
    /// different files claiming one place are a problem.
    public static func logs(in paths: [String]) -> (logs: [(name: String, files: [AuditSegments.File])], problems: [String]) {
        var groups: [(key: String, files: [AuditSegments.File])] = []
        var problems: [String] = []
        for p in paths {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: p, isDirectory: &isDir) else {
                problems.append("\(p): no such file or directory")
                continue
            }
            let logs = isDir.boolValue ? AuditSegments.logs(in: p) : [AuditSegments(activePath: p)]
            for log in logs {
                let key = log.stem + log.ext
                let i = groups.firstIndex { $0.key == key } ?? { groups.append((key, [])); return groups.count - 1 }()
                for f in log.files() {
                    if let same = groups[i].files.first(where: { $0.first == f.first }) {
                        if FileManager.default.contentsEqual(atPath: same.path, andPath: f.path) { continue }
                        problems.append("\(same.path) and \(f.path) are different files for the same segment")
                        continue
                    }
                    groups[i].files.append(f)
                }
            }
        }
        let sorted = groups.map { g in (name: g.key, files: g.files.sorted { ($0.first ?? .max) < ($1.first ?? .max) }) }
        return (sorted, problems)
    }
}
