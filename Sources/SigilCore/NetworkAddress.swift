import Foundation

/// Questions asked of host names and client addresses (pure: no lookups).
public enum NetworkAddress {
    /// Whether `host` names this machine: `localhost`, 127.0.0.0/8 or ::1 (brackets allowed).
    public static func isLoopback(_ host: String) -> Bool {
        let bare = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if bare == "localhost" { return true }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, bare, &v6) == 1 {
            let octets = withUnsafeBytes(of: &v6) { Array($0) }
            return octets[0..<15].allSatisfy { $0 == 0 } && octets[15] == 1
        }
        let octets = bare.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// The rate-limit bucket key for a client address: an IPv4 address as it is, an IPv6 address by its /64
    /// (a host or a customer gets a whole /64, so per-address buckets would let it rotate through 2^64 of
    /// them). IPv4-mapped IPv6 addresses count as their IPv4 address.
    public static func rateLimitKey(_ address: String?) -> String {
        guard let address else { return "client unknown" }
        var bytes = in6_addr()
        guard address.contains(":"), inet_pton(AF_INET6, address, &bytes) == 1 else { return "client \(address)" }
        let octets = withUnsafeBytes(of: &bytes) { Array($0) }
        if octets[0..<10].allSatisfy({ $0 == 0 }) && octets[10] == 0xff && octets[11] == 0xff {
            return "client \(octets[12]).\(octets[13]).\(octets[14]).\(octets[15])"
        }
        let prefix = stride(from: 0, to: 8, by: 2).map {
            String(UInt16(octets[$0]) << 8 | UInt16(octets[$0 + 1]), radix: 16)
        }
        return "client \(prefix.joined(separator: ":"))::/64"
    }
}
