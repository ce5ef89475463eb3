import Crypto
import Foundation
import VigilContract

/// The records of an audit log besides alerts and notes: seals, segment openings and key changes.
///
/// Every record is one line, `{"seq":N,"prev":"<SHA-256 hex of the line before>",<kind>:{...}}`. Alerts and
/// notes have been written this way since the first Vigil (format 1). Format 2 adds three kinds, each carrying
/// `"format":2`, so that a reader knows what it is reading and a newer format is refused, not misread:
///
///     {"seq":9,"prev":"…","seal":{"format":2,"log":"<root key>","epoch":0,"key":"<this key>","next":"<next key>",
///                                 "sealed_at":"…","reason":"interval","sig":"<Ed25519 signature>"}}
///     {"seq":10,"prev":"<hash of the seal>","segment":{"format":2,"opened_at":"…","log":"<root key>","next":"<next key>"}}
///     {"seq":11,"prev":"…","rekey":{"format":2,"log":"<new root key>","at":"…","reason":"previous key unavailable"}}
///
/// Keys are Ed25519 public keys in lower-case hex (64 digits); signatures 128 digits.
public enum AuditFormat {
    /// The newest format this Vigil reads and writes.
    public static let current = 2
}

/// A seal: a signature over the chain up to the record before it (its `prev`), by the log's key of the
/// current epoch, naming the key of the next seal. Keys evolve (see `AuditKeyFile`), so each seal is signed
/// by a key that no longer exists once the seal is durable.
public struct AuditSeal: Sendable, Equatable {
    public var format = AuditFormat.current
    /// The root public key: the one `vigil audit keygen` printed, which identifies the log.
    public var log: String
    /// The seal's own place in the chain, and the hash of the record before it (what it seals).
    public var seq: Int
    public var prev: String
    public var epoch: Int
    /// The public key of this epoch, which signed; and the one the next seal must be signed with.
    public var key: String
    public var next: String
    public var sealedAt: String
    /// Why now: `interval`, `records`, `shutdown`, `restart`, `rotation`, `rekey`.
    public var reason: String
    public var signature: String

    /// The bytes signed: every field but the signature, one per line, under a fixed label.
    public var message: [UInt8] {
        Array("vigil-audit-seal/\(format)\n\(log)\n\(seq)\n\(prev)\n\(epoch)\n\(key)\n\(next)\n\(sealedAt)\n\(reason)".utf8)
    }

    /// Whether `signature` is `key`'s signature of `message`.
    public var isSignatureValid: Bool {
        guard let k = AuditPublicKey(hex: key), let sig = AuditHex.decode(signature), sig.count == 64 else { return false }
        return k.isValidSignature(sig, for: message)
    }

    /// The body (`"seal":` value) as written.
    var bodyJSON: [UInt8] {
        Array(("{\"format\":\(format),\"log\":\"\(log)\",\"epoch\":\(epoch),\"key\":\"\(key)\",\"next\":\"\(next)\","
            + "\"sealed_at\":\"\(sealedAt)\",\"reason\":\"\(reason)\",\"sig\":\"\(signature)\"}").utf8)
    }

    init(log: String, seq: Int, prev: String, epoch: Int, key: String, next: String, sealedAt: String, reason: String, signature: String = "") {
        self.log = log
        self.seq = seq
        self.prev = prev
        self.epoch = epoch
        self.key = key
        self.next = next
        self.sealedAt = sealedAt
        self.reason = reason
        self.signature = signature
    }

    init?(seq: Int, prev: String, body: JSONValue) {
        guard let f = body["format"]?.intValue, let log = body["log"]?.stringValue, let e = body["epoch"]?.intValue,
              let key = body["key"]?.stringValue, let next = body["next"]?.stringValue, let at = body["sealed_at"]?.stringValue,
              let reason = body["reason"]?.stringValue, let sig = body["sig"]?.stringValue else { return nil }
        self.init(log: log, seq: seq, prev: prev, epoch: Int(e), key: key, next: next, sealedAt: at, reason: reason, signature: sig)
        format = Int(f)
    }

    /// What is published to the anchors: the seal's signed fields, its line's hash, and who wrote it.
    public func anchor(hash: String, instance: String, segment: String) -> [UInt8] {
        var w = JSONWriter(capacity: 600)
        w.raw("{\"log\":\"\(log)\",\"instance\":")
        w.string(instance)
        w.raw(",\"segment\":")
        w.string(segment)
        w.raw(",\"seq\":\(seq),\"hash\":\"\(hash)\",\"prev\":\"\(prev)\",\"epoch\":\(epoch),\"key\":\"\(key)\",\"next\":\"\(next)\",")
        w.raw("\"sealed_at\":\"\(sealedAt)\",\"reason\":\"\(reason)\",\"format\":\(format),\"sig\":\"\(signature)\"}")
        return w.bytes
    }
}

/// An anchored head: a seal as published beside the log, and the hash of its line.
public struct AuditAnchor: Sendable, Equatable {
    public var seal: AuditSeal
    public var hash: String
    public var instance: String
    /// Where it was read (the file and line, or the topic, partition and offset), for messages.
    public var source: String

    public init?(json: JSONValue, source: String) {
        guard let seq = json["seq"]?.intValue, let prev = json["prev"]?.stringValue, let hash = json["hash"]?.stringValue,
              let seal = AuditSeal(seq: Int(seq), prev: prev, body: json) else { return nil }
        self.seal = seal
        self.hash = hash
        instance = json["instance"]?.stringValue ?? ""
        self.source = source
    }
}

/// The first record of every segment after the first: it chains to the previous segment's last record (its
/// closing seal, when the log is sealed) and repeats the key the next seal must use, so that a writer can go on
/// when older segments have been archived elsewhere.
public struct AuditSegmentHeader: Sendable, Equatable {
    public var format: Int
    public var openedAt: String
    /// The root key and the next seal's key; empty when the log is not sealed.
    public var log: String
    public var next: String

    var bodyJSON: [UInt8] {
        Array("{\"format\":\(format),\"opened_at\":\"\(openedAt)\",\"log\":\"\(log)\",\"next\":\"\(next)\"}".utf8)
    }

    init(format: Int = AuditFormat.current, openedAt: String, log: String, next: String) {
        self.format = format
        self.openedAt = openedAt
        self.log = log
        self.next = next
    }

    init?(body: JSONValue) {
        guard let f = body["format"]?.intValue, let at = body["opened_at"]?.stringValue else { return nil }
        self.init(format: Int(f), openedAt: at, log: body["log"]?.stringValue ?? "", next: body["next"]?.stringValue ?? "")
    }
}

/// A change of key that the previous key did not sign (it was lost or compromised): the new root key, which a
/// verifier accepts only when it is given that key too.
public struct AuditRekey: Sendable, Equatable {
    public var format: Int
    public var log: String
    public var at: String
    public var reason: String

    var bodyJSON: [UInt8] {
        var w = JSONWriter(capacity: 200)
        w.raw("{\"format\":\(format),\"log\":\"\(log)\",\"at\":\"\(at)\",\"reason\":")
        w.string(reason)
        w.raw("}")
        return w.bytes
    }

    init(format: Int = AuditFormat.current, log: String, at: String, reason: String) {
        self.format = format
        self.log = log
        self.at = at
        self.reason = reason
    }

    init?(body: JSONValue) {
        guard let f = body["format"]?.intValue, let log = body["log"]?.stringValue, let at = body["at"]?.stringValue else { return nil }
        self.init(format: Int(f), log: log, at: at, reason: body["reason"]?.stringValue ?? "")
    }
}

/// One parsed audit record.
public struct AuditLine: Sendable {
    public enum Entry: Sendable {
        case alert(id: String, body: JSONValue)
        case note(kind: String, body: JSONValue)
        case seal(AuditSeal)
        case segment(AuditSegmentHeader)
        case rekey(AuditRekey)
    }

    public let seq: Int
    public let prev: String
    public let entry: Entry

    /// The `format` a format-2 record declares (1 for alerts and notes, which every format writes alike).
    public var format: Int {
        switch entry {
        case .alert, .note: return 1
        case .seal(let s): return s.format
        case .segment(let h): return h.format
        case .rekey(let r): return r.format
        }
    }

    /// Parses one line (without its newline); nil when it is not an audit record.
    public static func parse(_ bytes: some Collection<UInt8>) -> AuditLine? {
        guard let v = try? JSONValue.parse(Array(bytes)), let s = v["seq"]?.intValue, let p = v["prev"]?.stringValue else { return nil }
        let seq = Int(s)
        let entry: Entry
        if let alert = v["alert"], let id = alert["alert_id"]?.stringValue {
            entry = .alert(id: id, body: alert)
        } else if let note = v["note"], let k = note["kind"]?.stringValue {
            entry = .note(kind: k, body: note)
        } else if let body = v["seal"], let seal = AuditSeal(seq: seq, prev: p, body: body) {
            entry = .seal(seal)
        } else if let body = v["segment"], let h = AuditSegmentHeader(body: body) {
            entry = .segment(h)
        } else if let body = v["rekey"], let r = AuditRekey(body: body) {
            entry = .rekey(r)
        } else {
            return nil
        }
        return AuditLine(seq: seq, prev: p, entry: entry)
    }

    /// A record line (without the newline): `{"seq":N,"prev":"H","<kind>":<body>}`.
    static func build(seq: Int, prev: String, kind: StaticString, body: some Collection<UInt8>) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(body.count + 100)
        bytes += Array("{\"seq\":\(seq),\"prev\":\"\(prev)\",\"".utf8)
        bytes += UnsafeBufferPointer(start: kind.utf8Start, count: kind.utf8CodeUnitCount)
        bytes += Array("\":".utf8)
        bytes += body
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }
}

/// Lower-case hexadecimal of keys and signatures.
public enum AuditHex {
    public static func decode(_ hex: String) -> [UInt8]? {
        let u = Array(hex.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2)
        func digit(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            default: return nil
            }
        }
        var i = 0
        while i < u.count {
            guard let hi = digit(u[i]), let lo = digit(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}

/// An Ed25519 public key, as audit records and `--key` write it (64 hex digits).
public struct AuditPublicKey: Sendable, Equatable {
    public let raw: [UInt8]
    public var hex: String { raw.hexString }
    public var key: Curve25519.Signing.PublicKey? { try? Curve25519.Signing.PublicKey(rawRepresentation: raw) }

    public init?(hex: String) {
        guard hex.utf8.count == 64, let raw = AuditHex.decode(hex), (try? Curve25519.Signing.PublicKey(rawRepresentation: raw)) != nil else { return nil }
        self.raw = raw
    }

    /// Whether `signature` is this key's signature of `message`.
    public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        key?.isValidSignature(signature, for: message) ?? false
    }
}
