import Foundation
import Synchronization
import VigilContract
import VigilEngine
import VigilRules

/// Engine state in the changelog topic, written incrementally as it changes.
///
/// Changelog partition `p` holds the state of the children whose events come from input partition `p`, one
/// record per child (compaction keeps the newest), plus a marker per checkpoint:
///
///     key child/<id>       value VC\u{2}, checkpoint c, next offset o, the pack's digest, the state (binary)
///     key checkpoint       value {"v":1,"partition":p,"checkpoint":c,"offset":o,"clock":t,"rules":"<digest>"}
///     key pack/<digest>    value the pack's manifest (`PackManifest.json`), before any state written under it
///
/// State names rules, states and windows by stable id (`PackKeys`), and each child record names the pack it
/// was derived under: a restore under another pack reads it all the same, and the child is carried to the
/// current pack (`Engine.migrate`, classified from the two manifests), so a rule change needs no reset.
///
/// Checkpoint `c` of partition `p` is taken at an epoch boundary, once every alert of earlier epochs is
/// durable: it writes the children that changed since checkpoint `c-1`, each saying it holds every event of
/// the partition before offset `o` (`next`), and only when all of them are acknowledged, the marker; and only
/// when the marker is, a tombstone (`child/<id>`, empty) for each child evicted at the checkpoint. So a
/// tombstone means "absent as of a durable marker's offset", never "absent since an earlier one".
///
/// A restore reads the partition from its start, keeps each child's newest record and the newest marker, and
/// reads the input on from the marker's offset. A child whose record is newer than the marker (a checkpoint
/// cut short by a crash) skips the events before its own `next`: they are in its state already. So no event
/// is applied twice and none is missed, whichever record a crash left last.
public enum Checkpoint {
    public struct Record: Sendable {
        public let key: String
        public let value: [UInt8]
        public init(key: String, value: [UInt8]) {
            self.key = key
            self.value = value
        }
    }

    public static let markerKey = "checkpoint"
    public static let childKeyPrefix = "child/"

    struct ChildRecord: Codable {
        var v = 1
        var checkpoint: Int64
        var next: Int64
        var rules: String
        var state: ChildState
    }

    struct Marker: Codable {
        var v = 1
        var partition: Int32
        var checkpoint: Int64
        var offset: Int64
        var clock: Int64
        var rules: String
    }

    public static let packKeyPrefix = "pack/"

    /// The digest state was written under before rule packs could change (a hash of the `id@version` list):
    /// such records name the pack's internal numbering, and are read only under that very pack.
    public static func legacyDigest(_ versions: [String]) -> String {
        String(stableHash(versions.joined(separator: "\n")), radix: 16)
    }

    /// The record describing a pack, written to each changelog partition before state written under it.
    public static func packRecord(_ pack: StatePack) -> Record {
        Record(key: packKeyPrefix + pack.digest, value: pack.manifest.json)
    }

    /// The first bytes of a binary child record (version 2); version 1 records are JSON and start with `{`.
    static let binaryMagic: [UInt8] = [0x56, 0x43, 0x02]

    /// The record of one child's state as of input offset `next`: `VC\u{2}`, the checkpoint number, the offset,
    /// the pack's digest, then the state (`ChildState.binary(keys:)`).
    public static func childRecord(_ child: ChildState, checkpoint: Int64, next: Int64, pack: StatePack) -> Record {
        let digest = Array(pack.digest.utf8)
        var header = [UInt8]()
        header.reserveCapacity(binaryMagic.count + 17 + digest.count)
        header += binaryMagic
        for x in [checkpoint, next] { for k in 0..<8 { header.append(UInt8(UInt64(bitPattern: x) >> (8 * UInt64(k)) & 255)) } }
        header.append(UInt8(digest.count))
        header += digest
        // The state written after the header in one array: a checkpoint makes one of these for every changed
        // child, and a state encoded on its own was copied once more into the record.
        return Record(key: childKeyPrefix + child.id, value: child.binary(keys: pack.keys, after: header))
    }

    /// A child record's parts: checkpoint, offset, rules digest, state (read under the pack of `keys`). Reads
    /// both versions.
    static func decodeChild(_ value: [UInt8], keys: PackKeys) throws -> (checkpoint: Int64, next: Int64, rules: String, state: ChildState) {
        if value.first == UInt8(ascii: "{") {
            let r = try JSONDecoder().decode(ChildRecord.self, from: Data(value))
            var state = r.state
            state.markChanged()
            return (r.checkpoint, r.next, r.rules, state)
        }
        guard value.count > 20, Array(value.prefix(3)) == binaryMagic else { throw ChildState.BinaryError(description: "not a state record") }
        func i64(_ at: Int) -> Int64 { Int64(bitPattern: (0..<8).reduce(UInt64(0)) { $0 | UInt64(value[at + $1]) << (8 * UInt64($1)) }) }
        let n = Int(value[19])
        guard value.count >= 20 + n else { throw ChildState.BinaryError(description: "the record is cut short") }
        let rules = String(decoding: value[20..<(20 + n)], as: UTF8.self)
        return (i64(3), i64(11), rules, try ChildState(binary: value, from: 20 + n, keys: keys))
    }

    /// A child evicted (nothing about it can matter any more): an empty value, which compaction removes.
    public static func tombstone(child id: String) -> Record { Record(key: childKeyPrefix + id, value: []) }

    /// The marker that completes checkpoint `checkpoint` of partition `p`.
    public static func marker(partition p: Int32, checkpoint: Int64, offset: Int64, clock: Instant, rulesDigest: String) -> Record {
        var w = JSONWriter()
        w.raw("{\"v\":1,\"partition\":\(p),\"checkpoint\":\(checkpoint),\"offset\":\(offset),\"clock\":\(clock.micros),\"rules\":")
        w.string(rulesDigest)
        w.raw("}")
        return Record(key: markerKey, value: w.bytes)
    }

    public struct Restored: Sendable {
        /// The newest complete checkpoint's number and input offset; nil when none completed (read from the
        /// beginning).
        public let checkpoint: Int64?
        public let offset: Int64?
        public let clock: Instant
        public let children: [ChildState]
        /// Children written after the newest complete checkpoint: their events before this offset are applied.
        public let skipBelow: [String: Int64]
        /// Children written under another rule pack, with its manifest: to be carried to the current one.
        public let carried: [String: PackManifest]
        /// Some records are of the layout before rule packs could change: the next checkpoint rewrites them.
        public var rewrite: Bool { children.contains(where: \.isChanged) }
    }

    public struct RestoreError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// `restore(partition:records:pack:)` of each of `partitions`, spread over the cores (partitions decode
    /// independently); when some fail, the error of the lowest of them. Blocks: call it from a thread of the
    /// pipeline's own (a restore runs on the polling thread, inside a rebalance), never from the cooperative pool.
    public static func restore(partitions: [Int32], records: [Int32: [Record]], pack: StatePack) throws(RestoreError) -> [Int32: Restored] {
        let results = Mutex<[Int32: Result<Restored?, RestoreError>]>([:])
        DispatchQueue.concurrentPerform(iterations: partitions.count) { i in
            let p = partitions[i]
            let r: Result<Restored?, RestoreError>
            do throws(RestoreError) { r = .success(try restore(partition: p, records: records[p] ?? [], pack: pack)) } catch { r = .failure(error) }
            results.withLock { $0[p] = r }
        }
        var out: [Int32: Restored] = [:]
        for (p, r) in results.withLock({ $0 }).sorted(by: { $0.key < $1.key }) {
            switch r {
            case .success(let restored): if let restored { out[p] = restored }
            case .failure(let error): throw error
            }
        }
        return out
    }

    /// Folds a changelog partition's records (in log order) into its restored state under `pack`, or nil when
    /// it is empty. State written under another pack is read by stable id and listed in `carried` with that
    /// pack's manifest. Throws when a record is unreadable, or was written under a pack the partition does
    /// not describe (by an older Vigil under other rules: its numbering cannot be read under this pack).
    public static func restore(partition p: Int32, records: [Record], pack: StatePack) throws(RestoreError) -> Restored? {
        var latest: [String: [UInt8]] = [:]
        latest.reserveCapacity(records.count)
        var marker: [UInt8]?
        var manifests: [String: PackManifest] = [pack.digest: pack.manifest]
        for r in records {
            if r.key == markerKey {
                marker = r.value
            } else if r.key.hasPrefix(childKeyPrefix) {
                if r.value.isEmpty { latest[r.key] = nil } else { latest[r.key] = r.value }
            } else if r.key.hasPrefix(packKeyPrefix) {
                guard let m = PackManifest(json: r.value), packKeyPrefix + m.digest == r.key else {
                    throw RestoreError(message: "changelog partition \(p): the rule pack record \(r.key) is unreadable")
                }
                manifests[m.digest] = m
            }
        }
        guard marker != nil || !latest.isEmpty else { return nil }
        let decoder = JSONDecoder()
        var m: Marker?
        if let marker {
            guard let decoded = try? decoder.decode(Marker.self, from: Data(marker)), decoded.v == 1 else {
                throw RestoreError(message: "changelog partition \(p): the checkpoint marker is unreadable")
            }
            m = decoded
        }
        var children: [ChildState] = []
        children.reserveCapacity(latest.count)
        var skip: [String: Int64] = [:]
        var carried: [String: PackManifest] = [:]
        // A stable order keeps restores reproducible: by key, which is by id (`child/<id>`), sorted before
        // decoding (a child's state is large to move, its key and bytes are not).
        for (key, value) in latest.sorted(by: { $0.key < $1.key }) {
            let next: Int64, rules: String, state: ChildState
            do { (_, next, rules, state) = try decodeChild(value, keys: pack.keys) } catch {
                throw RestoreError(message: "changelog partition \(p): the record \(key) is unreadable: \(error)")
            }
            if rules != pack.digest && rules != pack.legacyDigest {
                guard let from = manifests[rules] else {
                    throw RestoreError(message: "partition \(p)'s state was written by an earlier Vigil under different rules, which it does not describe; start this version once with those rules (its first checkpoint rewrites the state so that any later pack can read it), or delete the state (the changelog topic) to rebuild it from the beginning of the input")
                }
                carried[state.id] = from
            }
            if next > (m?.offset ?? 0) { skip[state.id] = next }
            // Its last use: moved into the array, not copied (a copy retains every array the state holds).
            children.append(state)
        }
        return Restored(checkpoint: m?.checkpoint, offset: m?.offset, clock: Instant(micros: m?.clock ?? Instant.distantPast.micros),
                        children: children, skipBelow: skip, carried: carried)
    }
}

/// A rule pack as persisted state knows it: its manifest (digest and definitions by stable id) and keys.
public struct StatePack: Sendable {
    public let manifest: PackManifest
    public let keys: PackKeys
    /// The digest of records written before packs could change (see `Checkpoint.legacyDigest`).
    public let legacyDigest: String
    public var digest: String { manifest.digest }

    public init(_ rules: CompiledRuleSet) {
        manifest = PackManifest(rules)
        keys = PackKeys(rules)
        legacyDigest = Checkpoint.legacyDigest(EngineSnapshot.versions(of: rules))
    }
}

extension Checkpoint.Restored {
    /// For the restore log line: `p@offset (checkpoint c, n children[, k ahead of it])`.
    func summary(partition p: Int32) -> String {
        let at = offset.map { "\(p)@\($0) (checkpoint \(checkpoint ?? 0)" } ?? "\(p)@beginning (no complete checkpoint"
        return at + ", \(children.count) children" + (skipBelow.isEmpty ? "" : ", \(skipBelow.count) ahead of it")
            + (carried.isEmpty ? ")" : ", \(carried.count) under another rule pack)")
    }
}
