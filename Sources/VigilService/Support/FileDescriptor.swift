#if canImport(Glibc)
import Glibc
#endif

/// Small helpers over POSIX file descriptors.
public enum FileDescriptor {
    public struct WriteError: Error, CustomStringConvertible {
        public let code: Int32
        public var description: String { String(cString: strerror(code)) }
    }

    /// Writes every byte, retrying short writes and interrupted calls.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(WriteError) {
        var failure: Int32 = 0
        bytes.withUnsafeBytes { p in
            guard let base = p.baseAddress else { return }
            var done = 0
            while done < p.count {
                let n = write(fd, base + done, p.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                done += n
            }
        }
        if failure != 0 { throw WriteError(code: failure) }
    }
}
