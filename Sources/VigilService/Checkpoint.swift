import Foundation
import VigilContract
import VigilEngine

/// A partition's engine state in the changelog topic.
///
/// A checkpoint of input partition `p` is written to changelog partition `p` as chunks of children and a
/// marker naming the input offset and clock it corresponds to:
///
///     key p<p>/<A|B>/chunk/<i>   value {"v":1,"partition":p,"checkpoint":c,"chunk":i,"children":[...]}
///     key p<p>/<A|B>/marker      value {"v":1,"partition":p,"checkpoint":c,"chunks":n,"offset":o,"clock":t,"rules":[...]}
///
/// Checkpoints alternate between buffers A and B (by parity), so one cut short by a crash can never overwrite the
/// last complete one: with compaction keeping the newest record per key, the other buffer still holds it whole.
/// A checkpoint is complete when its marker and every one of its chunks carry the same checkpoint number.
public enum Checkpoint {
    public static let chunkBytes = 256 * 1024

    public struct Record: Sendable {
        public let key: String
        public let value: [UInt8]
    }

    public struct Restored: Sendable {
        public let checkpoint: Int64
        public let offset: Int64
        public let clock: Instant
        public let ruleVersions: [String]
        public let children: [ChildState]
    }

    static func buffer(_ c: Int64) -> String { c % 2 == 0 ? "A" : "B" }

    /// The records of one checkpoint. `children` are JSON-encoded `ChildState`s.
    public static func records(partition p: Int32, checkpoint c: Int64, offset: Int64, clock: Instant,
                               ruleVersions: [String], encodedChildren: [[UInt8]]) -> [Record] {
        let b = buffer(c)
        var out: [Record] = []
        var chunk: [UInt8] = []
        var index = 0
        func flush() {
            var v = Array("{\"v\":1,\"partition\":\(p),\"checkpoint\":\(c),\"chunk\":\(index),\"children\":[".utf8)
            v += chunk
            v += Array("]}".utf8)
            out.append(Record(key: "p\(p)/\(b)/chunk/\(index)", value: v))
            index += 1
            chunk = []
        }
        for child in encodedChildren {
            if !chunk.isEmpty && chunk.count + child.count > chunkBytes { flush() }
            if !chunk.isEmpty { chunk.append(0x2C) }
            chunk += child
        }
        if !chunk.isEmpty { flush() }
        var w = JSONWriter()
        w.raw("{\"v\":1,\"partition\":\(p),\"checkpoint\":\(c),\"chunks\":\(index),\"offset\":\(offset),\"clock\":\(clock.micros),\"rules\":[")
        for (k, r) in ruleVersions.enumerated() {
            if k > 0 { w.raw(",") }
            w.string(r)
        }
        w.raw("]}")
        out.append(Record(key: "p\(p)/\(b)/marker", value: w.bytes))
        return out
    }

    public struct RestoreError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// The newest complete checkpoint among a changelog partition's records (in log order), if any.
    public static func restore(partition p: Int32, records: [Record]) throws -> Restored? {
        struct Marker { let checkpoint: Int64; let chunks: Int; let offset: Int64; let clock: Int64; let rules: [String] }
        var markers: [String: Marker] = [:]
        var chunks: [String: (checkpoint: Int64, value: [UInt8])] = [:]
        let prefix = "p\(p)/"
        for r in records where r.key.hasPrefix(prefix) {
            guard let v = try? JSONValue.parse(r.value), let c = v["checkpoint"]?.intValue else { continue }
            if r.key.hasSuffix("/marker") {
                guard let n = v["chunks"]?.intValue, let o = v["offset"]?.intValue, let t = v["clock"]?.intValue else { continue }
                let rules = v["rules"]?.arrayValue?.compactMap(\.stringValue) ?? []
                markers[r.key] = Marker(checkpoint: c, chunks: Int(n), offset: o, clock: t, rules: rules)
            } else {
                chunks[r.key] = (c, r.value)
            }
        }
        for (key, m) in markers.sorted(by: { $0.value.checkpoint > $1.value.checkpoint }) {
            let base = String(key.dropLast("marker".count))
            var parts: [[UInt8]] = []
            var complete = true
            for i in 0..<m.chunks {
                guard let ch = chunks[base + "chunk/\(i)"], ch.checkpoint == m.checkpoint else { complete = false; break }
                parts.append(ch.value)
            }
            guard complete else { continue }
            var children: [ChildState] = []
            let decoder = JSONDecoder()
            for part in parts {
                struct Chunk: Decodable { let children: [ChildState] }
                do { children += try decoder.decode(Chunk.self, from: Data(part)).children } catch {
                    throw RestoreError(message: "changelog partition \(p): checkpoint \(m.checkpoint) is unreadable: \(error)")
                }
            }
            return Restored(checkpoint: m.checkpoint, offset: m.offset, clock: Instant(micros: m.clock), ruleVersions: m.rules, children: children)
        }
        return nil
    }
}
