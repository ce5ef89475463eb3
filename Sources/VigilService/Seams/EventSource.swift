/// Where a partition starts being read after it is assigned.
public enum StartOffset: Sendable, Equatable {
    case beginning
    case at(Int64)
}

/// One message of a batch: its position and bytes. The bytes belong to the batch and are valid while it lives.
public struct InputMessage: @unchecked Sendable {
    public enum Notice: Sendable, Equatable {
        /// The partition has no more messages for now.
        case partitionEnd
        /// The source reports an error in place of a message (it retries by itself).
        case error(String)
    }
    public var partition: Int32
    public var offset: Int64
    public var key: UnsafeRawBufferPointer?
    public var value: UnsafeRawBufferPointer
    /// Not a message but a notice.
    public var notice: Notice?

    public init(partition: Int32, offset: Int64, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer, notice: Notice? = nil) {
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.notice = notice
    }
}

/// What keeps a batch's bytes alive, and reads its messages' headers (only dead letters need them).
public protocol BatchStorage: AnyObject, Sendable {
    func headers(at index: Int) -> [(String, [UInt8])]
}

/// The messages of one poll, in the order read. Hand it to any thread; its bytes live as long as it does.
public final class InputBatch: @unchecked Sendable {
    public let messages: [InputMessage]
    let storage: BatchStorage?

    public init(messages: [InputMessage], storage: BatchStorage?) {
        self.messages = messages
        self.storage = storage
    }

    public func headers(at index: Int) -> [(String, [UInt8])] { storage?.headers(at: index) ?? [] }

    public static let empty = InputBatch(messages: [], storage: nil)
}

/// What the source calls, on the polling thread and inside `poll` (or `close`), when partitions come and go.
public struct RebalanceHandlers {
    /// Partitions assigned: returns where each starts.
    public var assigned: ([Int32]) -> [Int32: StartOffset]
    /// Partitions about to be taken away: finish their work before returning. `lost`: the assignment expired
    /// and another member may own them already.
    public var revoked: ([Int32], _ lost: Bool) -> Void

    public init(assigned: @escaping ([Int32]) -> [Int32: StartOffset], revoked: @escaping ([Int32], Bool) -> Void) {
        self.assigned = assigned
        self.revoked = revoked
    }
}

/// Where events come from: the partitions of one topic, consumed in a group (Kafka), or held in memory (tests).
///
/// Threading: `start`, `poll` and `close` belong to one thread, the polling thread; the rebalance handlers
/// run on it, inside `poll` and `close`. `commit` may be called from any thread.
public protocol EventSource: AnyObject {
    /// The topic read.
    var topic: String { get }
    /// Joins (subscribes) with these handlers; partitions are assigned later, inside `poll`.
    func start(_ handlers: RebalanceHandlers) throws(PipelineError)
    /// At most `max` messages and notices: what is ready at once, else waits up to `timeoutMs` for the first,
    /// then keeps collecting for up to `lingerMs`.
    func poll(max: Int, timeoutMs: Int32, lingerMs: Int32) -> InputBatch
    /// Records how far each partition is done (the next offset to read), for monitoring and resumption.
    func commit(_ offsets: [Int32: Int64]) throws(PipelineError)
    /// The first offset the source still holds for a partition (retention deletes older ones), if it can tell.
    func lowWatermark(_ partition: Int32) -> Int64?
    /// The offset the source will write next in a partition, as it last knew it without asking (for lag); nil
    /// when it does not know yet.
    func highWatermark(_ partition: Int32) -> Int64?
    /// Stops reading these partitions (on the polling thread).
    func pause(_ partitions: [Int32])
    /// Leaves: the revoke handler runs for every assigned partition first.
    func close()
}

extension EventSource {
    public func highWatermark(_ partition: Int32) -> Int64? { nil }
}
