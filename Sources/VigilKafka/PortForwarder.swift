#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging

/// Accepts TCP connections on a loopback port and relays each to another loopback port, both ways, on one
/// thread with `poll(2)`. Used to give the embedded broker a fixed bootstrap port.
final class PortForwarder: @unchecked Sendable {
    let port: UInt16
    let targetPort: UInt16
    let listener: Int32
    let logger: Logger
    let wake: (read: Int32, write: Int32)
    var thread: Thread?
    let lock = NSLock()
    var stopped = false

    struct SocketError: Error, CustomStringConvertible {
        let what: String
        let code: Int32
        var description: String { "\(what): \(String(cString: strerror(code)))" }
    }

    init(listenPort: UInt16, targetPort: UInt16, logger: Logger) throws {
        self.targetPort = targetPort
        self.logger = logger
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError(what: "socket", code: errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = listenPort.bigEndian
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0 else { let e = errno; close(fd); throw SocketError(what: "bind 127.0.0.1:\(listenPort)", code: e) }
        guard listen(fd, 64) == 0 else { let e = errno; close(fd); throw SocketError(what: "listen", code: e) }
        var actual = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = UInt16(bigEndian: actual.sin_port)
        listener = fd
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { let e = errno; close(fd); throw SocketError(what: "pipe", code: e) }
        wake = (fds[0], fds[1])
        let t = Thread { [weak self] in self?.run() }
        t.name = "vigil-port-forwarder"
        thread = t
        t.start()
    }

    func stop() {
        lock.lock()
        let already = stopped
        stopped = true
        lock.unlock()
        if already { return }
        var b: UInt8 = 1
        _ = write(wake.write, &b, 1)
    }

    func connectTarget() -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = targetPort.bigEndian
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else { close(fd); return nil }
        return fd
    }

    func run() {
        var pairs: [(Int32, Int32)] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        defer {
            for (a, b) in pairs { close(a); close(b) }
            close(listener)
            close(wake.read)
            close(wake.write)
        }
        while true {
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0), pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
            for (a, b) in pairs {
                fds.append(pollfd(fd: a, events: Int16(POLLIN), revents: 0))
                fds.append(pollfd(fd: b, events: Int16(POLLIN), revents: 0))
            }
            let n = poll(&fds, nfds_t(fds.count), 1000)
            if n < 0 && errno != EINTR { logger.error("port forwarder: poll failed: \(String(cString: strerror(errno)))"); return }
            if fds[1].revents != 0 { return }
            // Relay for the connections that were polled, then accept new ones.
            var dead = Set<Int>()
            for (k, (a, b)) in pairs.enumerated() where 3 + 2 * k < fds.count {
                for (from, to, idx) in [(a, b, 2 + 2 * k), (b, a, 3 + 2 * k)] where fds[idx].revents != 0 {
                    let got = buffer.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
                    if got <= 0 { dead.insert(k); continue }
                    var sent = 0
                    while sent < got {
                        let w = buffer.withUnsafeBytes { p -> Int in
                            guard let base = p.baseAddress else { return -1 }
                            return write(to, base + sent, got - sent)
                        }
                        if w <= 0 { dead.insert(k); break }
                        sent += w
                    }
                }
            }
            for k in dead.sorted(by: >) {
                close(pairs[k].0)
                close(pairs[k].1)
                pairs.remove(at: k)
            }
            if fds[0].revents & Int16(POLLIN) != 0 {
                let c = accept(listener, nil, nil)
                if c >= 0 {
                    if let t = connectTarget() { pairs.append((c, t)) } else { close(c) }
                }
            }
        }
    }
}
