#if canImport(Glibc)
import Glibc
#endif
import Foundation
import VigilContract

/// How an audit log is sealed and rotated (`vigil run --audit-*`).
public struct AuditLogOptions: Sendable {
    /// Seal once this many alerts and notes are unsealed, ...
    public var sealEvery = 10_000
    /// ... or this long after the first of them was appended (microseconds).
    public var sealIntervalMicros: Int64 = 10 * Instant.microsPerSecond
    /// Rotate when the active segment reaches this many bytes (0: never) ...
    public var maxBytes = 0
    /// ... or this age (microseconds; 0: never).
    public var maxAgeMicros: Int64 = 0
    /// Who writes the log, as anchors name it (the host and the consumer group, say).
    public var instance = ""

    public init() {}
}

/// The keys of a sealed log: the one to seal with, and when it replaces another, the previous one (which
/// signs the handover) or the operator's statement that the previous one is lost.
public struct AuditKeys {
    public var key: AuditKeyFile?
    public var previous: AuditKeyFile?
    public var previousLost = false

    public init(key: AuditKeyFile? = nil, previous: AuditKeyFile? = nil, previousLost: Bool = false) {
        self.key = key
        self.previous = previous
        self.previousLost = previousLost
    }
}

/// Where seals' heads are published besides the log: a Kafka topic, a file on another volume.
public protocol AuditAnchorSink: AnyObject {
    var name: String { get }
    /// Publishes one anchor (JSON), keyed by the writing instance. A message when it failed.
    func publish(_ anchor: [UInt8], instance: String) -> String?
    /// Waits (a little) for what was published to arrive.
    func close()
}

/// Appends to an audit log, seals it and rotates it. Not thread-safe: one writer thread (the sink).
///
/// At open, every segment present is read and its chain checked (a broken chain is refused); a final record
/// cut short by a crash (no end of line) is removed, as it was never acknowledged; a rotation a crash
/// interrupted is finished; the key is matched to the log's last seal (a crash between a seal and the key's
/// evolution is finished; a key from elsewhere is refused). Then:
/// - `append` adds alerts (at most once per id across the segments present) and notes, written to the file
///   together at the next `sync` (one write for the batch; before it if the batch grows past 1 MiB, and before
///   any record of the log's own: a seal, a segment's header, a rekey);
/// - `sealIfDue`/`seal` append a seal signed by the key, fsync, evolve the key and publish the head to the anchors;
/// - `rotateIfDue` ends the segment with a seal, renames it to its closed name, and opens the next one;
/// - `close` seals what is unsealed.
public final class AuditLogWriter {
    public let path: String
    public let segments: AuditSegments
    private var fd: Int32
    public private(set) var seq: Int
    public private(set) var head: String
    var ids: Set<String>
    var unsynced = 0
    /// Alerts and notes appended and not yet written to the file (see `writePending`).
    private var pending: [UInt8] = []
    /// A write that failed: the file may end in part of a batch, so nothing more is appended or synced.
    private var writeFailure: AuditLogError?
    /// Bytes of a torn final record removed at open (0 normally).
    public let repairedBytes: Int
    /// What open found and repaired, for the log (crash recovery, key evolution, archived segments).
    public private(set) var notices: [String] = []
    /// Called with a warning (an anchor that could not be published); defaults to none.
    public var warn: (String) -> Void = { _ in }

    let options: AuditLogOptions
    let now: () -> Instant
    private let key: AuditKeyFile?
    public let anchors: [AuditAnchorSink]
    /// The key the next seal must be signed with (nil: never sealed).
    public private(set) var expectedKey: String?
    public private(set) var lastSeal: AuditSeal?
    /// Alerts and notes since the last seal, and when the first of them was appended.
    public private(set) var unsealed = 0
    private var unsealedSince = Instant.distantPast
    private var sealNow = false
    private var active: ActiveSegment
    public private(set) var seals = 0
    public private(set) var rotations = 0
    public private(set) var anchorFailures = 0

    public var isSealed: Bool { key != nil }
    /// The sealing key's root (the log's identity) and the epoch of the next seal.
    public var keyRoot: String? { key?.root }
    public var keyEpoch: Int { key?.epoch ?? 0 }
    public func contains(_ alertId: String) -> Bool { ids.contains(alertId) }
    public var count: Int { seq }

    /// Opens (creating with mode 0600) an audit log for appending. Its files must be regular files owned by
    /// this user (not symbolic links), in a directory others cannot write to.
    public init(path: String, keys: AuditKeys = AuditKeys(), options: AuditLogOptions = AuditLogOptions(),
                anchors: [AuditAnchorSink] = [], now: @escaping () -> Instant = { .now }) throws(AuditLogError) {
        self.path = path
        segments = AuditSegments(activePath: path)
        self.options = options
        self.now = now
        key = keys.key
        self.anchors = anchors
        let dir = segments.directory
        var st = stat()
        guard stat(dir, &st) == 0 else { throw AuditLogError(path: path, operation: .open, code: errno) }
        if st.st_mode & S_IWOTH != 0 {
            throw AuditLogError(path: path, refusing: "its directory \(dir) is writable by others (anyone could replace the log); use a directory only its owner can write")
        }
        fd = try AuditSegments.openActive(path)
        do throws(AuditLogError) {
            let walk = try AuditLogScan.read(segments, activeFD: fd)
            seq = walk.chain.seq
            head = walk.chain.head
            ids = Set(walk.chain.ids.keys)
            repairedBytes = walk.repaired
            expectedKey = walk.expectedKey
            lastSeal = walk.lastSeal
            unsealed = walk.unsealed
            active = ActiveSegment(first: walk.activeFirst ?? seq + 1, bytes: walk.activeBytes, records: walk.activeRecords,
                                   openedAt: walk.activeOpenedAt ?? now())
            if let start = walk.archivedBefore {
                notices.append("segments before seq \(start) are not in \(dir) (archived); the log goes on from there")
            }
            if walk.repaired > 0 { notices.append("removed a torn final record (\(walk.repaired) bytes) left by a crash; it was never acknowledged") }
            fchmod(fd, 0o600)
            let change = try AuditKeyChange.match(keys, expected: expectedKey, root: walk.root, log: path, notices: &notices)
            if walk.activeBytes == 0 && seq > 0 {
                // A rotation interrupted after the rename: open the new segment now.
                notices.append("the active file was missing or empty after seq \(seq) (a crash during rotation): opened it")
                try writeHeader()
            }
            try changeKey(change, keys)
            if unsealed > 0 && key != nil { sealNow = true }
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    deinit {
        guard fd >= 0 else { return }
        _ = try? writePending()
        fsync(fd)
        Glibc.close(fd)
    }

    /// Lets the log go as a process that dies does: what was appended and not yet written is lost, and the
    /// file is closed now, so that nothing of this writer reaches it later. For a pipeline crashed in-process
    /// (tests): left to `deinit`, what is pending would be written whenever the last reference went, perhaps
    /// after the next run had opened the log and read its head, breaking the chain. Anything after this fails.
    public func abandon() {
        guard fd >= 0 else { return }
        pending.removeAll()
        writeFailure = AuditLogError(path: path, operation: .write, code: EBADF)
        Glibc.close(fd)
        fd = -1
    }

    /// Records a change of key in the chain: a seal by the previous key naming the new one (then the previous
    /// key is erased), or, when it is lost, an unsigned record naming the new one.
    private func changeKey(_ change: AuditKeyChange, _ keys: AuditKeys) throws(AuditLogError) {
        guard let key else { return }
        switch change {
        case .none:
            return
        case .handover(let previous):
            try seal(reason: "rekey", signer: previous, next: key.publicKey)
            do { try previous.retire() } catch { throw AuditLogError(error) }
            notices.append("key changed: \(previous.path) (log \(previous.root.prefix(16))…) signed the handover to \(key.path) (log \(key.root.prefix(16))…) and was erased")
        case .lost:
            let r = AuditRekey(log: key.root, at: RFC3339.format(Instant(micros: now().micros / 1_000_000 * 1_000_000)), reason: "previous key unavailable")
            try appendLine(AuditLine.build(seq: seq + 1, prev: head, kind: "rekey", body: r.bodyJSON), content: false)
            try sync()
            expectedKey = key.root
            notices.append("key changed without the previous key's signature (--audit-key-lost): verifiers must be given the new key \(key.root) too")
        }
    }

    // MARK: appending

    private func appendLine(_ line: [UInt8], content: Bool) throws(AuditLogError) {
        if let writeFailure { throw writeFailure }
        let h = AuditLog.hash(line)
        // Alerts and notes wait for the batch's write; a record of the log's own goes out at once, after them.
        if pending.isEmpty { pending.reserveCapacity(64 * 1024) }
        pending += line
        pending.append(0x0A)
        if !content || pending.count >= 1 << 20 { try writePending() }
        seq += 1
        head = h
        unsynced += 1
        active.bytes += line.count + 1
        active.records += 1
        if content {
            if unsealed == 0 { unsealedSince = now() }
            unsealed += 1
        }
    }

    /// Appends a note (not an alert: an input gap, ...) to the chain. Durable only after `sync()`.
    public func appendNote(_ noteJSON: [UInt8]) throws(AuditLogError) {
        try appendLine(AuditLog.noteRecord(seq: seq + 1, prev: head, noteJSON: noteJSON), content: true)
    }

    /// Appends one alert record unless the log already holds its id. Returns whether it was written.
    /// Durable only after `sync()`.
    @discardableResult
    public func append(alertId: String, alertJSON: some Collection<UInt8>) throws(AuditLogError) -> Bool {
        guard !ids.contains(alertId) else { return false }
        try appendLine(AuditLog.record(seq: seq + 1, prev: head, alertJSON: alertJSON), content: true)
        ids.insert(alertId)
        return true
    }

    /// Appends one alert record (see `append(alertId:alertJSON:)`).
    @discardableResult
    public func append(alertId: String, alertJSON: String) throws(AuditLogError) -> Bool {
        try append(alertId: alertId, alertJSON: Array(alertJSON.utf8))
    }

    /// Writes the alerts and notes appended since the last write, in one call. A failure is kept: the file
    /// may end in part of the batch, and whatever is appended or synced after it fails with it.
    private func writePending() throws(AuditLogError) {
        if let writeFailure { throw writeFailure }
        guard !pending.isEmpty else { return }
        do { try FileDescriptor.writeAll(fd, pending) } catch {
            let failure = AuditLogError(path: path, operation: .write, code: error.code)
            writeFailure = failure
            throw failure
        }
        pending.removeAll(keepingCapacity: pending.capacity <= 4 << 20)
    }

    /// Makes everything appended so far durable (one write and one fsync for the batch).
    public func sync() throws(AuditLogError) {
        try writePending()
        guard unsynced > 0 else { return }
        guard fsync(fd) == 0 else { throw AuditLogError(path: path, operation: .fsync, code: errno) }
        unsynced = 0
    }

    // MARK: sealing

    /// Why a seal is due now, if one is.
    public func sealDue(at t: Instant) -> String? {
        guard key != nil, unsealed > 0 else { return nil }
        if sealNow { return "restart" }
        if unsealed >= options.sealEvery { return "records" }
        if t.micros - unsealedSince.micros >= options.sealIntervalMicros { return "interval" }
        return nil
    }

    /// Seals if due (see `sealDue`). Returns whether it sealed.
    @discardableResult
    public func sealIfDue() throws(AuditLogError) -> Bool {
        guard let reason = sealDue(at: now()) else { return false }
        try seal(reason: reason)
        return true
    }

    /// Appends a seal signed by the key (when the log is sealed and something is unsealed, or `force`), makes
    /// it and everything before it durable, evolves the key, and publishes the head to the anchors.
    public func seal(reason: String, force: Bool = false) throws(AuditLogError) {
        guard let key, unsealed > 0 || force else { return }
        try seal(reason: reason, signer: key, next: key.nextPublicKey)
    }

    private func seal(reason: String, signer: AuditKeyFile, next: String) throws(AuditLogError) {
        let sealedAt = RFC3339.format(Instant(micros: now().micros / 1_000_000 * 1_000_000))
        var s = AuditSeal(log: signer.root, seq: seq + 1, prev: head, epoch: signer.epoch, key: signer.publicKey, next: next,
                          sealedAt: sealedAt, reason: reason)
        do { s.signature = try signer.sign(s.message).hexString } catch { throw AuditLogError(error) }
        try appendLine(AuditLine.build(seq: s.seq, prev: s.prev, kind: "seal", body: s.bodyJSON), content: false)
        KillPoint.hit("seal-written")
        try sync()
        KillPoint.hit("seal-synced")
        // The seal is durable: the key that signed it goes (a crash before this is finished at the next open).
        if next == signer.nextPublicKey {
            do { try signer.evolve { KillPoint.hit($0) } } catch { throw AuditLogError(error) }
        }
        KillPoint.hit("key-evolved")
        lastSeal = s
        expectedKey = next
        unsealed = 0
        sealNow = false
        seals += 1
        let anchor = s.anchor(hash: head, instance: options.instance, segment: (path as NSString).lastPathComponent)
        for a in anchors {
            if let problem = a.publish(anchor, instance: options.instance) {
                anchorFailures += 1
                warn("audit anchor \(a.name): the head at seq \(s.seq) was not published: \(problem)")
            }
        }
    }

    // MARK: rotation

    /// Whether the active segment is due to be rotated (by size or age) and holds something to rotate.
    public func rotationDue(at t: Instant) -> Bool {
        active.isDue(at: t, options)
    }

    @discardableResult
    public func rotateIfDue() throws(AuditLogError) -> Bool {
        guard rotationDue(at: now()) else { return false }
        try rotate()
        return true
    }

    /// Ends the active segment with a seal (when sealed), renames it to its closed name, and opens the next
    /// active file with a record that chains to it. A crash at any point leaves a log that the next open
    /// completes: the closed file is whole and fsynced before the rename, and an active file that is missing
    /// or empty is opened again.
    public func rotate() throws(AuditLogError) {
        if key != nil, lastSeal?.seq != seq { try seal(reason: "rotation", force: true) }
        try sync()
        let closed = segments.closedPath(first: active.first)
        guard access(closed, F_OK) != 0 else { throw AuditLogError(path: closed, refusing: "a closed segment of that name exists already") }
        guard rename(path, closed) == 0 else { throw AuditLogError(path: path, operation: .rename, code: errno) }
        KillPoint.hit("rotate-renamed")
        let e = AuditSegments.syncDirectory(segments.directory)
        guard e == 0 else { throw AuditLogError(path: segments.directory, operation: .fsync, code: e) }
        Glibc.close(fd)
        fd = -1
        fd = try AuditSegments.openActive(path)
        KillPoint.hit("rotate-created")
        try writeHeader()
        rotations += 1
    }

    /// The first record of a new active segment: chains to the last record, names the next seal's key.
    private func writeHeader() throws(AuditLogError) {
        let t = now()
        let h = AuditSegmentHeader(openedAt: RFC3339.format(Instant(micros: t.micros / 1_000_000 * 1_000_000)),
                                   log: key?.root ?? "", next: key == nil ? "" : expectedKey ?? key?.publicKey ?? "")
        active = ActiveSegment(first: seq + 1, bytes: 0, records: 0, openedAt: t)
        try appendLine(AuditLine.build(seq: seq + 1, prev: head, kind: "segment", body: h.bodyJSON), content: false)
        KillPoint.hit("rotate-opened")
        try sync()
        let e = AuditSegments.syncDirectory(segments.directory)
        guard e == 0 else { throw AuditLogError(path: segments.directory, operation: .fsync, code: e) }
        active.records = 0
    }

    /// At shutdown: seals what is unsealed and makes it durable; the anchors get a last chance to deliver.
    public func close() throws(AuditLogError) {
        defer { for a in anchors { a.close() } }
        try seal(reason: "shutdown")
        try sync()
    }
}

extension AuditLogError {
    init(key: AuditKeyFile, _ message: String) { self.init(AuditKeyError(path: key.path, message)) }
}

/// The segment being written: its first sequence number, size, records (besides its opening record) and age.
struct ActiveSegment {
    var first: Int
    var bytes: Int
    var records: Int
    var openedAt: Instant

    /// Due to be rotated (by size or age), and holding something to rotate.
    func isDue(at t: Instant, _ options: AuditLogOptions) -> Bool {
        guard records > 0 else { return false }
        if options.maxBytes > 0 && bytes >= options.maxBytes { return true }
        return options.maxAgeMicros > 0 && t.micros - openedAt.micros >= options.maxAgeMicros
    }
}
