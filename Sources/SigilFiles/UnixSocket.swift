import Foundation

/// Unix stream sockets as files: whether one at a path is served.
public enum UnixSocket {
    /// What a connection attempt to a unix socket found.
    public enum Probe: Equatable, Sendable {
        /// Something accepts connections there.
        case accepting
        /// A socket file nobody serves (ECONNREFUSED), or no file at all (ENOENT): stale or absent.
        case unserved
        /// Any other failure (EACCES for another user's socket, a path too long, …), with errno.
        case failed(Int32)
    }

    public static func probe(_ path: String) -> Probe {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return .failed(errno) }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return .failed(ENAMETOOLONG) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if result == 0 { return .accepting }
        return errno == ECONNREFUSED || errno == ENOENT ? .unserved : .failed(errno)
    }

    /// Whether a unix stream socket at `path` accepts a connection.
    public static func accepts(_ path: String) -> Bool { probe(path) == .accepting }
}
