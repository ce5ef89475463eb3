#if canImport(Glibc)
import Glibc
#endif
import Foundation
import VigilContract
import VigilEngine
import VigilKafka
import VigilRules

/// The engine state saved at a clean shutdown, with the input offsets and partition clocks it corresponds
/// to, so a restart resumes exactly where it stopped. Written atomically (temporary file, fsync, rename),
/// mode 0600: it holds child ids and event references.
struct PipelineState: Codable {
    var version = 1
    var ruleVersions: [String]
    /// "topic:partition" -> next offset to read.
    var offsets: [String: Int64]
    var clocks: [Int32: Int64]
    var maxEventTime: Int64
    var seq: UInt64
    var children: [ChildState]
    var stats: EngineStats

    init(rules: CompiledRuleSet, offsets: [TopicPartition: Int64], clocks: [Int32: Instant], maxEventTime: Instant,
         shards: [EngineSnapshot]) {
        ruleVersions = EngineSnapshot.versions(of: rules)
        self.offsets = Dictionary(uniqueKeysWithValues: offsets.map { ("\($0.key.topic):\($0.key.partition)", $0.value) })
        self.clocks = clocks.mapValues(\.micros)
        self.maxEventTime = maxEventTime.micros
        seq = shards.map(\.seq).max() ?? 0
        children = shards.flatMap(\.children)
        var total = EngineStats()
        for s in shards { total.add(s.stats) }
        stats = total
    }

    var topicOffsets: [TopicPartition: Int64] {
        var out: [TopicPartition: Int64] = [:]
        for (k, v) in offsets {
            guard let colon = k.lastIndex(of: ":"), let p = Int32(k[k.index(after: colon)...]) else { continue }
            out[TopicPartition(String(k[..<colon]), p)] = v
        }
        return out
    }

    var partitionClocks: [Int32: Instant] { clocks.mapValues { Instant(micros: $0) } }

    struct StateError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    /// The saved state, nil when there is none. Refuses a state saved under different rules.
    static func load(path: String, rules: CompiledRuleSet) throws -> PipelineState? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let state: PipelineState
        do { state = try JSONDecoder().decode(PipelineState.self, from: data) } catch {
            throw StateError(message: "state file \(path) is unreadable (\(error)); move it aside to start without state")
        }
        guard state.ruleVersions == EngineSnapshot.versions(of: rules) else {
            throw StateError(message: "state file \(path) was saved under different rules; restore those rules, or move the file aside to start without state (pending deadlines would be lost)")
        }
        return state
    }

    /// The engine for one shard: the children that hash to it.
    func engine(shard: Int, of n: Int, rules: CompiledRuleSet) throws -> Engine {
        let mine = children.filter { childShard($0.id, of: n) == shard }
        let snap = EngineSnapshot(ruleVersions: ruleVersions, children: mine, seq: seq, clock: Instant(micros: maxEventTime),
                                  stats: shard == 0 ? stats : EngineStats())
        return try Engine(rules: rules, restoring: snap)
    }

    func save(path: String) throws {
        let data = try JSONEncoder().encode(self)
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StateError(message: "\(tmp): \(String(cString: strerror(errno)))") }
        let ok = (try? FileDescriptor.writeAll(fd, [UInt8](data))) != nil
        let synced = fsync(fd) == 0
        close(fd)
        guard ok, synced else { throw StateError(message: "\(tmp): write failed") }
        guard rename(tmp, path) == 0 else { throw StateError(message: "rename to \(path): \(String(cString: strerror(errno)))") }
        let dir = (path as NSString).deletingLastPathComponent
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }
}
