import Foundation
import VigilService

/// Reads a `MemoryTopic` as one member of a consumer group that owns every partition (or the ones given):
/// they are assigned at the first poll, each starts where the assign handler says, and a partition's end is reported
/// once each time it is reached. `commit` stores the group's offsets in the topic.
public final class MemorySource: EventSource {
    public let input: MemoryTopic
    public let group: String
    private var handlers: RebalanceHandlers?
    private var positions: [Int32: Int64] = [:]
    private var endReported = Set<Int32>()
    private var paused = Set<Int32>()
    private var next: Int32 = 0
    private let owned: [Int32]

    public init(_ input: MemoryTopic, group: String, partitions: [Int32]? = nil) {
        self.input = input
        self.group = group
        owned = partitions ?? (0..<Int32(input.partitionCount)).map { $0 }
    }

    public var topic: String { input.name }

    public func start(_ handlers: RebalanceHandlers) throws(PipelineError) { self.handlers = handlers }

    public func poll(max: Int, timeoutMs: Int32, lingerMs: Int32) -> InputBatch {
        guard let handlers else { return .empty }
        if positions.isEmpty {
            let starts = handlers.assigned(owned)
            for p in owned {
                if case .at(let o) = starts[p] { positions[p] = o } else { positions[p] = 0 }
            }
        }
        var picked: [(Int32, Int64, MemoryTopic.Message?)] = []
        // Round-robin over the partitions, a run of messages from each, as a fetcher would.
        for k in 0..<input.partitionCount where picked.count < max {
            let p = (next + Int32(k)) % Int32(input.partitionCount)
            guard owned.contains(p), !paused.contains(p) else { continue }
            // Reading below the low watermark resets to it, as auto.offset.reset=earliest does.
            let (first, log) = input.read(partition: p, from: positions[p] ?? 0)
            var at = first
            for m in log where picked.count < max {
                picked.append((p, at, m))
                at += 1
                endReported.remove(p)
            }
            positions[p] = at
            if at >= input.endOffset(p) && !endReported.contains(p) && picked.count < max {
                picked.append((p, at, nil))
                endReported.insert(p)
            }
        }
        next = (next + 1) % Int32(input.partitionCount)
        if picked.isEmpty {
            usleep(UInt32(Swift.min(timeoutMs, 5)) * 1000)
            return .empty
        }
        return MemoryBatch.make(picked)
    }

    public func commit(_ offsets: [Int32: Int64]) throws(PipelineError) { input.commit(group: group, offsets) }

    public func lowWatermark(_ partition: Int32) -> Int64? { input.lowWatermark(partition) }

    public func highWatermark(_ partition: Int32) -> Int64? { input.endOffset(partition) }

    public func pause(_ partitions: [Int32]) { paused.formUnion(partitions) }

    public func close() {
        let all = positions.keys.sorted()
        guard !all.isEmpty else { return }
        handlers?.revoked(all, false)
        positions = [:]
    }
}

/// The bytes of a batch read from memory, in one allocation that lives as long as the batch.
final class MemoryBatch: BatchStorage, @unchecked Sendable {
    let buffer: UnsafeMutableRawBufferPointer
    let headers: [[(String, [UInt8])]]

    private init(size: Int, headers: [[(String, [UInt8])]]) {
        buffer = .allocate(byteCount: Swift.max(size, 1), alignment: 8)
        self.headers = headers
    }

    deinit { buffer.deallocate() }

    func headers(at index: Int) -> [(String, [UInt8])] { headers[index] }

    static func make(_ picked: [(Int32, Int64, MemoryTopic.Message?)]) -> InputBatch {
        let size = picked.reduce(0) { $0 + ($1.2.map { $0.value.count + ($0.key?.count ?? 0) } ?? 0) }
        let storage = MemoryBatch(size: size, headers: picked.map { $0.2?.headers ?? [] })
        var at = 0
        func place(_ bytes: [UInt8]) -> UnsafeRawBufferPointer {
            let dest = UnsafeMutableRawBufferPointer(rebasing: storage.buffer[at..<(at + bytes.count)])
            bytes.withUnsafeBytes { src in if src.count > 0 { dest.copyMemory(from: src) } }
            at += bytes.count
            return UnsafeRawBufferPointer(dest)
        }
        var messages: [InputMessage] = []
        for (p, offset, m) in picked {
            guard let m else {
                messages.append(InputMessage(partition: p, offset: offset, key: nil, value: UnsafeRawBufferPointer(start: nil, count: 0), notice: .partitionEnd))
                continue
            }
            let key = m.key.map(place)
            messages.append(InputMessage(partition: p, offset: offset, key: key, value: place(m.value)))
        }
        return InputBatch(messages: messages, storage: storage)
    }
}
