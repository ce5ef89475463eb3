#if canImport(Glibc)
import Glibc
#endif
import Crypto
import Foundation
import VigilContract

/// Why an audit key cannot be used.
public struct AuditKeyError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String
    public init(path: String, _ message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "audit key \(path): \(message)" }
}

/// The signing key of one audit log, forward-secure: it evolves at every seal and the previous one is erased.
///
/// The file holds a 32-byte Ed25519 seed and its epoch. Seal *e* is signed with the key of seed *e* and names
/// the public key of seed *e+1*, which is SHA-256 of a fixed label and seed *e*; once the seal is durable, the
/// file is rewritten with seed *e+1* and seed *e* is overwritten with zeros. Someone who takes the host (and
/// the file) later holds only the current seed: SHA-256 cannot be run backwards, so they cannot sign anything
/// in place of an earlier seal. A verifier needs only the root public key (epoch 0, printed by
/// `vigil audit keygen`): each seal names the next key, so the chain of seals is a chain of keys.
///
/// This is the scheme of journald's Forward Secure Sealing with an ordinary signature instead of FSPRG: a
/// verifier walks the seals from the first (it cannot jump to epoch *e*), which the hash chain makes it do
/// anyway.
///
/// Layout: two 128-byte slots, written alternately, so that a crash while rewriting leaves the other intact:
/// `VIGILKEY`, version 1, 7 zero bytes, the epoch (UInt64, little-endian), the seed, the root public key, and
/// the SHA-256 of those 88 bytes. A slot of zeros is empty. File mode 0600, refused when group or others
/// may read it. On a copy-on-write file system (btrfs, ZFS) or SSD, overwritten bytes may survive in free
/// blocks: keep the key on a file system that overwrites in place, or accept that residue.
public final class AuditKeyFile {
    public let path: String
    let fd: Int32
    public private(set) var epoch: Int
    private var seed: [UInt8]
    /// The slot holding the current seed (0 or 1).
    private var slot: Int
    /// The root public key (epoch 0), which identifies the log.
    public let root: String

    static let magic = Array("VIGILKEY".utf8)
    static let slotSize = 128
    static let label = Array("vigil-audit-key-evolution/1".utf8)

    /// Creates a key file (mode 0600; refused if it exists) with a fresh random seed; returns the root public key.
    public static func generate(path: String) throws(AuditKeyError) -> String {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw AuditKeyError(path: path, errno == EEXIST ? "already exists (a key is never overwritten)" : String(cString: strerror(errno))) }
        defer { close(fd) }
        let seed = Array(Curve25519.Signing.PrivateKey().rawRepresentation)
        let root = publicKey(seed)
        var bytes = slotBytes(epoch: 0, seed: seed, root: root)
        bytes += [UInt8](repeating: 0, count: slotSize)
        do { try FileDescriptor.writeAll(fd, bytes) } catch { throw AuditKeyError(path: path, "write failed: \(error)") }
        guard fsync(fd) == 0 else { throw AuditKeyError(path: path, "fsync failed: \(String(cString: strerror(errno)))") }
        return root.hexString
    }

    /// Opens a key file for sealing: a regular file owned by this user that neither group nor others may
    /// read or write. A stale second slot (a crash while evolving) is erased.
    public init(path: String) throws(AuditKeyError) {
        self.path = path
        let fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            throw AuditKeyError(path: path, errno == ELOOP ? "is a symbolic link" : String(cString: strerror(errno)))
        }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { close(fd); throw AuditKeyError(path: path, "is not a regular file") }
        guard st.st_uid == geteuid() else { close(fd); throw AuditKeyError(path: path, "belongs to another user") }
        guard st.st_mode & 0o077 == 0 else {
            close(fd)
            throw AuditKeyError(path: path, "group or others may read or write it (mode \(String(st.st_mode & 0o777, radix: 8))); chmod 600 it, and consider it exposed")
        }
        var buf = [UInt8](repeating: 0, count: 2 * Self.slotSize)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        let slots = (0..<2).compactMap { i -> (slot: Int, epoch: Int, seed: [UInt8], root: [UInt8])? in
            guard n >= (i + 1) * Self.slotSize else { return nil }
            return Self.parse(Array(buf[(i * Self.slotSize)..<((i + 1) * Self.slotSize)])).map { (i, $0.epoch, $0.seed, $0.root) }
        }
        guard let best = slots.max(by: { $0.epoch < $1.epoch }) else {
            close(fd)
            throw AuditKeyError(path: path, "not a Vigil audit key, or damaged (no valid slot); create one with vigil audit keygen")
        }
        guard slots.allSatisfy({ $0.root == best.root }) else { close(fd); throw AuditKeyError(path: path, "its two slots hold different keys: damaged") }
        self.fd = fd
        epoch = best.epoch
        seed = best.seed
        slot = best.slot
        root = best.root.hexString
        if slots.count == 2 { try erase(slot: 1 - best.slot) }
    }

    deinit { close(fd) }

    /// This epoch's public key.
    public var publicKey: String { Self.publicKey(seed).hexString }
    /// The next epoch's public key (the one a seal names).
    public var nextPublicKey: String { Self.publicKey(Self.evolve(seed)).hexString }

    /// The public key `steps` epochs ahead (to recognise a log one seal ahead of the file after a crash).
    public func publicKey(ahead steps: Int) -> String {
        var s = seed
        for _ in 0..<steps { s = Self.evolve(s) }
        return Self.publicKey(s).hexString
    }

    /// Signs with this epoch's key.
    public func sign(_ message: [UInt8]) throws(AuditKeyError) -> [UInt8] {
        do {
            let key = try Curve25519.Signing.PrivateKey(rawRepresentation: seed)
            return Array(try key.signature(for: message))
        } catch {
            throw AuditKeyError(path: path, "signing failed: \(error)")
        }
    }

    /// Moves to the next epoch: writes it to the other slot, makes that durable, then erases this one.
    public func evolve(hook: (String) -> Void = { _ in }) throws(AuditKeyError) {
        let next = Self.evolve(seed)
        let other = 1 - slot
        try write(Self.slotBytes(epoch: epoch + 1, seed: next, root: AuditHex.decode(root) ?? []), slot: other)
        hook("key-written")
        try erase(slot: slot)
        for i in seed.indices { seed[i] = 0 }
        seed = next
        slot = other
        epoch += 1
    }

    /// Erases the key for good (after handing over to a new key): both slots become zeros.
    public func retire() throws(AuditKeyError) {
        try erase(slot: 0)
        try erase(slot: 1)
        for i in seed.indices { seed[i] = 0 }
    }

    private func erase(slot s: Int) throws(AuditKeyError) {
        try write([UInt8](repeating: 0, count: Self.slotSize), slot: s)
    }

    private func write(_ bytes: [UInt8], slot s: Int) throws(AuditKeyError) {
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(s * Self.slotSize)) }
        guard n == bytes.count else { throw AuditKeyError(path: path, "write failed: \(String(cString: strerror(errno)))") }
        guard fsync(fd) == 0 else { throw AuditKeyError(path: path, "fsync failed: \(String(cString: strerror(errno)))") }
    }

    static func evolve(_ seed: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: label + seed)) }

    static func publicKey(_ seed: [UInt8]) -> [UInt8] {
        // A 32-byte seed is always a valid Ed25519 private key.
        guard let k = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed) else { return [] }
        return Array(k.publicKey.rawRepresentation)
    }

    static func slotBytes(epoch: Int, seed: [UInt8], root: [UInt8]) -> [UInt8] {
        var b = magic + [1] + [UInt8](repeating: 0, count: 7)
        withUnsafeBytes(of: UInt64(epoch).littleEndian) { b += $0 }
        b += seed + root
        b += Array(SHA256.hash(data: b))
        b += [UInt8](repeating: 0, count: slotSize - b.count)
        return b
    }

    static func parse(_ b: [UInt8]) -> (epoch: Int, seed: [UInt8], root: [UInt8])? {
        guard b.count == slotSize, Array(b[0..<8]) == magic, b[8] == 1 else { return nil }
        guard Array(SHA256.hash(data: b[0..<88])) == Array(b[88..<120]) else { return nil }
        var e: UInt64 = 0
        for i in (0..<8).reversed() { e = e << 8 | UInt64(b[16 + i]) }
        guard e < UInt64(Int.max) else { return nil }
        return (Int(e), Array(b[24..<56]), Array(b[56..<88]))
    }
}
